"""Checkerboard Metropolis and heat bath: exactness properties of the reference and fused kernels."""

import itertools

import array_api_compat.numpy as xnp
import array_api_strict as xps
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

import isingcore
from isingcore import random as rng
from isingcore.backends.numba_cpu import local as fused
from isingcore.mcmc import local

ALGS = ["metropolis", "heatbath"]
even = st.integers(1, 6).map(lambda v: 2 * v)


def spins_strategy(R, Lx, Ly):
    return st.lists(st.sampled_from([-1, 1]), min_size=R * Lx * Ly, max_size=R * Lx * Ly).map(
        lambda v: np.array(v, dtype=np.int8).reshape(R, Lx, Ly))


@st.composite
def lattice_case(draw):
    R, Lx, Ly = draw(st.integers(1, 3)), draw(even), draw(even)
    return dict(
        spins=draw(spins_strategy(R, Lx, Ly)),
        algorithm=draw(st.sampled_from(ALGS)),
        beta=draw(st.floats(0.05, 2.0)),
        h=draw(st.sampled_from([0.0, 0.3, -1.1])),
        seed=draw(st.integers(0, 2**32 - 1)),
        stream=draw(st.integers(0, 1000)),
        step=draw(st.one_of(st.integers(0, 50), st.integers(2**32 - 3, 2**32 + 3), st.integers(0, 2**64 - 20))),
        n_half=draw(st.integers(1, 5)),
    )


def run_reference(c, spins, xp, h=None):
    R = spins.shape[0]
    thr = xp.asarray(local.flip_thresholds(c["algorithm"], c["beta"], 1.0, c["h"] if h is None else h))
    streams = xp.asarray(np.arange(c["stream"], c["stream"] + R, dtype=np.uint32))
    return local.checkerboard_sweeps(xp.asarray(spins), c["n_half"], step=c["step"], thresholds=thr,
                                     seed=c["seed"], streams=streams, xp=xp)


def run_fused(c, spins, h=None):
    R = spins.shape[0]
    thr = local.flip_thresholds(c["algorithm"], c["beta"], 1.0, c["h"] if h is None else h)
    return fused.checkerboard_sweeps(spins.copy(), c["n_half"], step=c["step"], thresholds=thr, seed=c["seed"],
                                     streams=np.arange(c["stream"], c["stream"] + R, dtype=np.uint32))


@given(lattice_case())
def test_reference_strict_and_numba_identical_bits(c):
    ref = run_reference(c, c["spins"], xnp)
    strict = run_reference(c, c["spins"], xps)
    fast = run_fused(c, c["spins"])
    assert ref.dtype == np.int8 and strict.dtype == xps.int8
    np.testing.assert_array_equal(ref, np.asarray(strict))
    np.testing.assert_array_equal(ref, fast)


@pytest.mark.parametrize("driver", ["_sweeps_serial", "_sweeps_parallel_replicas", "_sweeps_parallel_rows"])
@pytest.mark.parametrize("shape", [(1, 6, 10), (3, 8, 4), (5, 2, 2)])
def test_every_threading_driver_gives_the_reference_bits(driver, shape):
    rs = np.random.default_rng(sum(shape))
    spins = rs.choice(np.array([-1, 1], np.int8), size=shape)
    for alg, h in (("metropolis", 0.0), ("heatbath", 0.25)):
        thr = local.flip_thresholds(alg, 0.5, 1.0, h)
        streams = np.arange(3, 3 + shape[0], dtype=np.uint32)
        ref = local.checkerboard_sweeps(spins, 5, step=2**32 - 2, thresholds=thr, seed=8, streams=streams, xp=xnp)
        out = spins.copy()
        fused.to_row_split(out)
        R, Lx, Ly = shape
        getattr(fused, driver)(out.reshape(R, Lx, 2, Ly // 2), thr, np.int64(8), streams, np.uint64(2**32 - 2), 5)
        fused.from_row_split(out)
        np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("alg", ALGS)
def test_fused_kernel_with_zero_thresholds_gives_the_reference_bits(alg):
    """At beta = 200 exp(-8 beta) underflows and the uphill moves have threshold 0 (never taken;
    ceil(p 2^32) >= 1 for any p > 0). The 32-bit fast path needs T >= 1, so these rows take the
    int64 loop; both must give the reference bits."""
    thr = local.flip_thresholds(alg, 200.0, 1.0, 0.0)
    assert thr.min() == 0 and thr.max() >= 2**31
    rs = np.random.default_rng(11)
    spins = rs.choice(np.array([-1, 1], np.int8), size=(2, 8, 12))
    streams = np.arange(2, dtype=np.uint32)
    ref = local.checkerboard_sweeps(spins, 6, step=5, thresholds=thr, seed=3, streams=streams, xp=xnp)
    out = fused.checkerboard_sweeps(spins.copy(), 6, step=5, thresholds=thr, seed=3, streams=streams)
    np.testing.assert_array_equal(out, ref)
    assert not np.array_equal(ref, spins)


def test_row_split_layout_and_round_trip():
    rs = np.random.default_rng(1)
    s = rs.choice(np.array([-1, 1], np.int8), size=(2, 6, 8))
    t = s.copy()
    fused.to_row_split(t)
    ab = t.reshape(2, 6, 2, 4)
    for i in range(6):
        np.testing.assert_array_equal(ab[:, i, 0], s[:, i, (i & 1)::2])
        np.testing.assert_array_equal(ab[:, i, 1], s[:, i, 1 - (i & 1)::2])
    fused.from_row_split(t)
    np.testing.assert_array_equal(t, s)


def test_fused_sweeps_accept_non_contiguous_views():
    rs = np.random.default_rng(2)
    big = rs.choice(np.array([-1, 1], np.int8), size=(2, 8, 12))
    thr = local.flip_thresholds("metropolis", 0.44, 1.0, 0.0)
    streams = np.arange(2, dtype=np.uint32)
    ref = local.checkerboard_sweeps(big[:, :, :6].copy(), 4, step=0, thresholds=thr, seed=1, streams=streams, xp=xnp)
    view = big[:, :, :6]
    assert fused.checkerboard_sweeps(view, 4, step=0, thresholds=thr, seed=1, streams=streams) is view
    np.testing.assert_array_equal(big[:, :, :6], ref)


@given(lattice_case())
def test_z2_flipped_start_gives_flipped_result(c):
    """Sweeping -s with -h gives exactly -(sweep of s) with the same counters (both kernels)."""
    s = c["spins"]
    np.testing.assert_array_equal(run_fused(c, -s, h=-c["h"]), -run_fused(c, s))
    np.testing.assert_array_equal(np.asarray(run_reference(c, -s, xnp, h=-c["h"])), -np.asarray(run_reference(c, s, xnp)))


def test_replica_batching_does_not_change_chains():
    a = isingcore.Simulation(8, 0.4, "metropolis", seed=3, replicas=4).sweep(5).spins
    b = isingcore.Simulation(8, 0.4, "metropolis", seed=3, replicas=2, stream=0).sweep(5).spins
    c = isingcore.Simulation(8, 0.4, "metropolis", seed=3, replicas=2, stream=2).sweep(5).spins
    np.testing.assert_array_equal(a, np.concatenate([b, c]))


def test_sweeps_split_across_calls_equal_one_call():
    a = isingcore.Simulation(12, 0.44, "heatbath", seed=5, replicas=2).sweep(7)
    b = isingcore.Simulation(12, 0.44, "heatbath", seed=5, replicas=2)
    for n in (3, 0, 4):
        b.sweep(n)
    np.testing.assert_array_equal(a.spins, b.spins)
    assert a.step == b.step == 14
    # a restored chain continues identically
    st_ = b.state()
    c = isingcore.Simulation(12, 0.44, "heatbath", seed=5, replicas=2, start=st_["spins"], step=st_["step"])
    np.testing.assert_array_equal(c.sweep(3).spins, a.sweep(3).spins)


def boltzmann(s, beta, h):
    s = s.astype(np.int64)
    e = -np.sum(s * np.roll(s, 1, 0)) - np.sum(s * np.roll(s, 1, 1)) - h * s.sum()
    return np.exp(-beta * e)


@given(s=spins_strategy(1, 4, 4).map(lambda a: a[0]), algorithm=st.sampled_from(ALGS), colour=st.integers(0, 1),
       beta=st.floats(0.1, 1.0), h=st.sampled_from([0.0, 0.4]))
def test_detailed_balance_of_each_half_sweep(s, algorithm, colour, beta, h):
    """p(s) T(s -> s') = p(s') T(s' -> s) for every s' reachable in one half-sweep (4x4 torus)."""
    mask = ((np.arange(4)[:, None] + np.arange(4)[None, :]) % 2) == colour
    sites = np.argwhere(mask)
    ps = boltzmann(s, beta, h)
    for flips in itertools.product([0, 1], repeat=len(sites)):
        s2 = s.copy()
        for (i, j), f in zip(sites, flips):
            if f:
                s2[i, j] = -s2[i, j]
        kw = dict(colour=colour, algorithm=algorithm, beta=beta, h=h, realised=False)
        fwd = ps * local.transition_probability(s, s2, **kw)
        bwd = boltzmann(s2, beta, h) * local.transition_probability(s2, s, **kw)
        assert fwd == pytest.approx(bwd, rel=1e-12, abs=1e-300)
    # the integer thresholds realise each flip probability within 2**-32 (the kernels' resolution)
    p = local.flip_probabilities(algorithm, beta, 1.0, h)
    assert np.all(np.abs(rng.bernoulli_probability(local.flip_thresholds(algorithm, beta, 1.0, h)).reshape(2, 5) - p)
                  < 2.0**-32)


@pytest.mark.parametrize("algorithm", ALGS)
@pytest.mark.parametrize("colour", [0, 1])
@pytest.mark.parametrize("kernel", ["fast", "reference"])
def test_observed_half_sweep_outcomes_match_transition_probabilities(algorithm, colour, kernel):
    """The real kernels' outcome frequencies of one half-sweep from a fixed 4x4 state (chi-square)."""
    beta, h, R = isingcore.BETA_C, 0.2, 40_000
    s0 = np.array([[1, -1, 1, 1], [1, 1, -1, 1], [-1, -1, 1, 1], [1, 1, 1, -1]], dtype=np.int8)
    sim = isingcore.Simulation(4, beta, algorithm, seed=99, replicas=R, h=h, start=s0, step=colour, kernel=kernel)
    sim._updater.advance_steps(sim, 1)  # exactly one half-sweep of colour `colour`
    out = np.asarray(sim.spins).reshape(R, 16)
    mask = (((np.arange(4)[:, None] + np.arange(4)[None, :]) % 2) == colour).reshape(-1)
    assert np.all(out[:, ~mask] == s0.reshape(-1)[~mask])
    flips = (out[:, mask] != s0.reshape(-1)[mask]).astype(np.int64)
    codes = flips @ (1 << np.arange(8))
    observed = np.bincount(codes, minlength=256)
    expected = np.empty(256)
    sites = np.argwhere(mask.reshape(4, 4))
    for code in range(256):
        s2 = s0.copy()
        for b, (i, j) in enumerate(sites):
            if code >> b & 1:
                s2[i, j] = -s2[i, j]
        expected[code] = R * local.transition_probability(s0, s2, colour=colour, algorithm=algorithm, beta=beta, h=h)
    assert expected.sum() == pytest.approx(R)
    keep = expected >= 5
    obs = np.append(observed[keep], observed[~keep].sum())
    exp = np.append(expected[keep], expected[~keep].sum())
    if exp[-1] < 5:  # fold the rare outcomes into the smallest kept bin
        obs, exp = obs[:-1], exp[:-1]
        obs[np.argmin(exp)] += observed[~keep].sum()
        exp[np.argmin(exp)] += expected[~keep].sum()
    assert stats.chisquare(obs, exp).pvalue > 1e-4


def test_metropolis_acceptance_table():
    p = local.flip_probabilities("metropolis", 0.5, 1.0, 0.0)
    # s=+1 with 4 up neighbours: dE = 8 -> exp(-4); s=+1 with 4 down neighbours: dE = -8 -> 1
    assert p[1, 4] == pytest.approx(np.exp(-4.0)) and p[1, 0] == 1.0 and p[0, 0] == pytest.approx(np.exp(-4.0))
    hb = local.flip_probabilities("heatbath", 0.5, 1.0, 0.0)
    assert hb[1, 4] == pytest.approx(1 / (1 + np.exp(4.0))) and hb[1, 2] == 0.5
    assert np.all(local.flip_thresholds("heatbath", 0.5)[[0, 9]] == local.flip_thresholds("heatbath", 0.5)[[9, 0]][::-1])


@pytest.mark.parametrize("kwargs,match", [
    (dict(size=7), "even"), (dict(size=(8, 5)), "even"), (dict(size=0), "size"), (dict(size=-4), "size"),
    (dict(size=2.5), "size"), (dict(beta=0.0), "beta"), (dict(beta=-1.0), "beta"), (dict(beta=float("nan")), "beta"),
    (dict(beta=float("inf")), "beta"), (dict(beta="hot"), "beta"), (dict(algorithm="glauber"), "algorithm"),
    (dict(backend="torch"), "backend"), (dict(replicas=0), "replicas"), (dict(seed=-1), "seed"),
    (dict(seed=2**32), "seed"), (dict(kernel="gpu"), "kernel"), (dict(h=float("nan")), "h"),
    (dict(start=np.ones((8, 8), dtype=np.int32)), "int8"), (dict(start=np.zeros((8, 8), dtype=np.int8)), r"\+1 and -1"),
    (dict(start=np.ones((6, 6), dtype=np.int8)), "shape"), (dict(start="warm"), "start"),
])
def test_bad_input_names_the_parameter(kwargs, match):
    args = dict(size=8, beta=0.44, algorithm="metropolis")
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        isingcore.Simulation(**args)


def test_cupy_without_gpu_is_a_clear_error():
    from isingcore._array import cupy_status

    if cupy_status()[0]:
        pytest.skip("a GPU is present")
    with pytest.raises(isingcore.BackendUnavailableError, match="cupy"):
        isingcore.Simulation(8, backend="cupy")


def test_beta_critical_string_and_random_start():
    sim = isingcore.Simulation(16, "critical", seed=1, replicas=2)
    assert sim.beta == isingcore.BETA_C
    s = np.asarray(sim.spins)
    assert s.dtype == np.int8 and set(np.unique(s)) == {-1, 1}
    assert abs(s.mean()) < 0.2 and not np.array_equal(s[0], s[1])
    w = rng.random_words(256, seed=1, stream=1, step=0, purpose=rng.Purpose.INIT)
    np.testing.assert_array_equal(s[1].reshape(-1), np.where(w < 2**31, 1, -1))
