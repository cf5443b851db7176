"""Coarse-graining: majority rule (random ties), decimation, block mean; array API and exact symmetries."""

import math

import numpy as np
import pytest

from isingcore import random as rng
from isingcore.rg import coarse


def random_spins(shape, seed=0):
    return np.where(np.random.default_rng(seed).random(shape) < 0.5, 1, -1).astype(np.int8)


def loop_majority(s, b):
    """Straightforward loops; ties reported as 0."""
    Lx, Ly = s.shape
    out = np.zeros((Lx // b, Ly // b), np.int8)
    for I in range(Lx // b):
        for J in range(Ly // b):
            t = int(s[b * I:b * I + b, b * J:b * J + b].astype(int).sum())
            out[I, J] = np.sign(t)
    return out


@pytest.mark.parametrize("b", [2, 3, 4])
def test_majority_matches_loops_away_from_ties(b):
    s = random_spins((3, 12, 24), seed=b)
    mu = coarse.majority_rule(s, b, seed=5)
    assert mu.dtype == np.int8 and mu.shape == (3, 12 // b, 24 // b)
    for n in range(3):
        ref = loop_majority(s[n], b)
        decided = ref != 0
        np.testing.assert_array_equal(mu[n][decided], ref[decided])
        assert set(np.unique(mu[n])) <= {-1, 1}
    if b % 2:
        assert int(coarse.tie_count(s, b).sum()) == 0


def test_tie_rule_is_the_documented_counter():
    s = random_spins((2, 8, 8), seed=1)
    mu = coarse.majority_rule(s, 2, seed=11, streams=[7, 9], step=3)
    sums = coarse.block_sums(s, 2)
    words = rng.random_words(16, seed=11, stream=np.array([7, 9]), step=3, purpose=rng.Purpose.RG_TIES)
    words = words.reshape(2, 4, 4)
    expect = np.where(words < 2**31, 1, -1) * s[:, ::2, ::2]
    ties = sums == 0
    assert ties.sum() > 0
    np.testing.assert_array_equal(mu[ties], expect[ties])


def test_ties_are_fair_coins():
    # 4096 configurations of 16x16: about 3/8 of the 2x2 blocks tie (6 of 16 patterns)
    s = random_spins((4096, 16, 16), seed=2)
    mu = coarse.majority_rule(s, 2, seed=3)
    ties = coarse.block_sums(s, 2) == 0
    n = int(ties.sum())
    assert abs(n / ties.size - 6 / 16) < 5 * math.sqrt(6 / 16 * 10 / 16 / ties.size)
    # the tie outcome relative to the corner spin is a fair coin
    agree = (mu == s[:, ::2, ::2])[ties]
    assert abs(agree.mean() - 0.5) < 5 * 0.5 / math.sqrt(n)
    # and the coarse spin itself is unbiased
    assert abs(mu[ties].astype(float).mean()) < 5 / math.sqrt(n)


def test_z2_and_reproducibility():
    s = random_spins((4, 16, 16), seed=4)
    a = coarse.majority_rule(s, 2, seed=9)
    np.testing.assert_array_equal(a, coarse.majority_rule(s, 2, seed=9))
    np.testing.assert_array_equal(coarse.majority_rule(-s, 2, seed=9), -a)
    assert not np.array_equal(a, coarse.majority_rule(s, 2, seed=10))


@pytest.mark.parametrize("k", range(4))
def test_d4_for_odd_blocks(k):
    s = random_spins((2, 18, 18), seed=k)
    mu = coarse.majority_rule(s, 3)
    np.testing.assert_array_equal(coarse.majority_rule(np.rot90(s, k, axes=(-2, -1)).copy(), 3),
                                  np.rot90(mu, k, axes=(-2, -1)))
    np.testing.assert_array_equal(coarse.majority_rule(np.ascontiguousarray(s[..., ::-1]), 3), mu[..., ::-1])


def test_batch_split_does_not_matter():
    s = random_spins((6, 8, 8), seed=6)
    whole = coarse.majority_rule(s, 2, seed=1)
    part = coarse.majority_rule(s[3:], 2, seed=1, streams=[3, 4, 5])
    np.testing.assert_array_equal(whole[3:], part)
    np.testing.assert_array_equal(coarse.majority_rule(s.reshape(2, 3, 8, 8), 2, seed=1).reshape(6, 4, 4), whole)


def test_tie_weight_and_block_mean_and_decimation():
    s = np.ones((1, 4, 4), np.int8)
    s[0, 0, 0] = s[0, 0, 1] = -1  # block (0,0) ties
    s[0, 2, 2] = -1  # block (1,1) sum 2
    assert coarse.tie_count(s, 2).tolist() == [1]
    assert coarse.log_tie_weight(s, 2).tolist() == pytest.approx([-math.log(2)])
    np.testing.assert_allclose(coarse.block_mean(s, 2)[0], [[0.0, 1.0], [1.0, 0.5]])
    np.testing.assert_array_equal(coarse.decimate(s, 2)[0], [[-1, 1], [1, -1]])
    np.testing.assert_array_equal(coarse.decimate(s, 2, offset=(1, 1))[0], [[1, 1], [1, 1]])


def test_array_api_strict_gives_the_same_bits():
    xps = pytest.importorskip("array_api_strict")
    s = random_spins((3, 8, 12), seed=8)
    ref = coarse.majority_rule(s, 2, seed=4, step=2)
    got = coarse.majority_rule(xps.asarray(s), 2, seed=4, step=2)
    np.testing.assert_array_equal(np.asarray(got._array), ref)
    np.testing.assert_allclose(np.asarray(coarse.block_mean(xps.asarray(s), 2)._array), coarse.block_mean(s, 2))
    assert np.asarray(coarse.tie_count(xps.asarray(s), 2)._array).tolist() == coarse.tie_count(s, 2).tolist()


def test_errors_name_the_parameter():
    s = random_spins((1, 6, 6))
    with pytest.raises(ValueError, match="not divisible by the block size b=4"):
        coarse.majority_rule(s, 4)
    with pytest.raises(ValueError, match="b \\(block size\\)"):
        coarse.majority_rule(s, 0)
    with pytest.raises(ValueError, match="streams"):
        coarse.majority_rule(s, 2, streams=[1, 2])
    with pytest.raises(ValueError, match="offset"):
        coarse.decimate(s, 2, offset=(2, 0))
