"""Philox4x32-10: known-answer vectors, identical bits on every backend, the word-stream layout."""

import array_api_strict as xps
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from isingcore import random as rng
from isingcore.backends.numba_cpu.philox import fill_words, philox4x32_10

F = 0xFFFFFFFF
# Random123 known-answer vectors for philox4x32_10 (kat_vectors in the Random123 distribution).
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((F, F, F, F), (F, F), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("ctr,key,expected", KAT)
def test_known_answers_all_implementations(ctr, key, expected):
    assert rng.philox_reference_scalar(ctr, key) == expected
    for xp in (np, xps):
        args = [xp.asarray([v], dtype=xp.uint32) for v in (*ctr, *key)]
        out = rng.philox4x32(*args, xp=xp)
        assert tuple(int(np.asarray(o)[0]) for o in out) == expected
    out = philox4x32_10(*(np.uint64(v) for v in (*ctr, *key)))
    assert tuple(int(o) for o in out) == expected


@given(seed=st.integers(0, F), stream=st.integers(0, F), step=st.integers(0, 2**64 - 1),
       purpose=st.integers(0, 7), first=st.integers(0, 50), n=st.integers(0, 40))
def test_words_identical_on_numpy_strict_numba(seed, stream, step, purpose, first, n):
    a = rng.random_words(n, seed=seed, stream=stream, step=step, purpose=purpose, first=first)
    b = rng.random_words(n, seed=seed, stream=stream, step=step, purpose=purpose, first=first, xp=xps)
    c = np.empty(n, np.uint32)
    fill_words(c, first, np.uint64(step), purpose, seed, stream)
    assert a.dtype == np.uint32 and b.dtype == xps.uint32
    np.testing.assert_array_equal(a, np.asarray(b))
    np.testing.assert_array_equal(a, c)


def test_word_k_is_lane_k_mod_4_of_block_k_div_4():
    seed, stream, step, purpose = 7, 3, 2**33 + 5, 1
    w = rng.random_words(12, seed=seed, stream=stream, step=step, purpose=purpose)
    for k in range(12):
        block = rng.philox_reference_scalar((k >> 2, step & F, step >> 32, purpose), (seed, stream))
        assert int(w[k]) == block[k & 3]


def test_offsets_and_stream_batches_are_consistent():
    full = rng.random_words(100, seed=1, stream=9, step=4, purpose=2)
    np.testing.assert_array_equal(rng.random_words(37, seed=1, stream=9, step=4, purpose=2, first=21), full[21:58])
    streams = np.array([9, 10, 11], dtype=np.uint32)
    batch = rng.random_words(100, seed=1, stream=streams, step=4, purpose=2)
    assert batch.shape == (3, 100)
    np.testing.assert_array_equal(batch[0], full)
    np.testing.assert_array_equal(batch[2], rng.random_words(100, seed=1, stream=11, step=4, purpose=2))


def test_distinct_inputs_give_distinct_streams():
    base = dict(seed=1, stream=0, step=0, purpose=1)
    ref = rng.random_words(64, **base)
    for change in (dict(seed=2), dict(stream=1), dict(step=1), dict(step=2**32), dict(purpose=2)):
        other = rng.random_words(64, **{**base, **change})
        assert np.mean(other == ref) < 0.05, change


def test_words_are_uniform():
    # 2**20 words: chi-square of the top 8 bits (255 dof) and of the low 8 bits
    from scipy import stats

    w = rng.random_words(1 << 20, seed=12345, stream=0, step=0, purpose=0)
    for part in (w >> 24, w & 0xFF):
        counts = np.bincount(part.astype(np.int64), minlength=256)
        assert stats.chisquare(counts).pvalue > 1e-4
    u = rng.uniform(w)
    assert u.dtype == np.float64 and u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 5 * np.sqrt(1 / 12 / u.size)


def test_threshold_realises_probability_within_resolution():
    p = np.array([0.0, 1e-12, 0.25, 1 / 3, np.exp(-8 * 0.44), 0.999999, 1.0])
    t = rng.threshold(p)
    assert t[0] == 0 and t[-1] == 2**32
    assert np.all(np.abs(rng.bernoulli_probability(t) - p) < 2.0**-32)
    # event r < T over all 2**32 words has exactly T outcomes: check on the low end
    assert rng.threshold(2.0**-32) == 1
    with pytest.raises(ValueError, match="probabilities"):
        rng.threshold([1.5])


@pytest.mark.parametrize("bad", [-1, 2**32, 1.5, "1", True])
def test_seed_validation_names_parameter(bad):
    with pytest.raises((ValueError, TypeError), match="seed"):
        rng.check_seed(bad)
    with pytest.raises((ValueError, TypeError), match="seed"):
        rng.random_words(4, seed=bad, stream=0, step=0, purpose=0)


@given(seed=st.integers(0, F), step=st.integers(0, 2**64 - 1), purpose=st.integers(0, 7), n=st.integers(1, 23),
       streams=st.lists(st.integers(0, F), min_size=1, max_size=5))
def test_stream_words_kernel_equals_random_words(seed, step, purpose, n, streams):
    from isingcore.backends.numba_cpu.philox import stream_words

    s = np.asarray(streams, dtype=np.int64)
    out = np.empty((len(streams), n), dtype=np.uint32)
    stream_words(out, s, np.uint64(step), np.uint32(purpose), np.uint32(seed))
    assert np.array_equal(out, rng.random_words(n, seed=seed, stream=s, step=step, purpose=purpose))
