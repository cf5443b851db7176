"""Wolff single-cluster updates (isingcore.mcmc.wolff, isingcore.backends.numba_cpu.wolff / cuda.wolff).

* the random-number rule (Lemire seed, bond words), the reference's BFS against an independent
  connected-component computation, and the exact transition probabilities;
* the Numba kernel and the CUDA kernels (under the CUDA simulator, in a subprocess) against the
  reference, bit for bit;
* symmetry and reproducibility of the chains;
* the sampled distribution against exact Boltzmann weights (3x3, 4x4), the transition
  frequencies of one update against the exact kernel and detailed balance, and energy, specific
  heat, <m^2>, <m^4> and the improved estimator against Kaufman / transfer-matrix results.

Statistical tests use 4 sigma (Gamma-method errors where samples are autocorrelated) or
p-values of chi-square tests against 1e-4, and each has a companion that shows it can fail.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from cuda_testing import SIMULATOR_L8_PREAMBLE, compile_ptx
from statistics_testing import check, energy_magnetization_series, reject
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

import isingcore
from isingcore import _array, exact
from isingcore import random as rng
from isingcore.backends.numba_cpu import wolff as fused
from isingcore.mcmc import wolff as W
from isingcore.measure import gamma_method, specific_heat

KC = isingcore.BETA_C


def random_spins(shape, key):
    rs = np.random.default_rng(key)
    return np.where(rs.random(shape) < 0.5, 1, -1).astype(np.int8)


def state_index(spins):
    """Integer code of each lattice of (R, Lx, Ly): bit x*Ly + y set where the spin is -1 (as exact.boltzmann_weights)."""
    R = spins.shape[0]
    bits = (np.asarray(spins).reshape(R, -1) < 0).astype(np.int64)
    return bits @ (1 << np.arange(bits.shape[1], dtype=np.int64))


# ------------------------------------------------------------------------------------------
# the random-number rule
# ------------------------------------------------------------------------------------------
def lemire(words, n):
    """The documented seed rule, written out: first accepted word of the list."""
    for k, w in enumerate(words):
        m = int(w) * n
        if (m & 0xFFFFFFFF) >= (1 << 32) % n:
            return m >> 32, k
    return m >> 32, len(words)


@pytest.mark.parametrize("n", [9, 12, 1000003, 2**31 + 1])
def test_seed_site_follows_lemire_rule(n):
    """Reference and Numba seed sites follow Lemire's rule on words 0..63 of (seed, stream, step, WOLFF).

    N = 2**31 + 1 rejects about half of the words, so the rejection branch is exercised.
    """
    used = []
    for step in list(range(40)) + [2**32 - 1, 2**32, 2**40 + 3]:
        words = rng.random_words(64, seed=77, stream=5, step=step, purpose=rng.Purpose.WOLFF)
        want, k = lemire(words, n)
        used.append(k)
        assert W.seed_site(n, seed=77, stream=5, step=step) == want
        got = fused.seed_site(np.uint64(n), np.uint64(step & 0xFFFFFFFF), np.uint64(step >> 32), np.uint64(77),
                              np.uint64(5))
        assert got == want
        assert 0 <= want < n
    if n == 2**31 + 1:
        assert max(used) >= 3, "no rejection happened: the test did not reach the rejection branch"


def test_seed_site_is_uniform():
    n = 9
    sites = np.array([W.seed_site(n, seed=3, stream=1, step=t) for t in range(9000)])
    counts = np.bincount(sites, minlength=n)
    assert stats.chisquare(counts).pvalue > 1e-4
    # the same test rejects a visibly non-uniform rule (site = word % 8 on 9 sites)
    bad = np.array([rng.random_words(1, seed=3, stream=1, step=t, purpose=rng.Purpose.WOLFF)[0] % 8
                    for t in range(9000)])
    assert stats.chisquare(np.bincount(bad, minlength=n)).pvalue < 1e-6


@pytest.mark.parametrize("shape", [(3, 5), (2, 4), (4, 2)])
def test_bond_rule(shape):
    """Bond (i, j, d) is open iff the spins agree and word 64 + 2*(i*Ly + j) + d < T (Philox, written out)."""
    Lx, Ly = shape
    s = random_spins(shape, 4)
    T = W.bond_threshold(0.6)
    step, seed, stream = 2**32 + 7, 11, 3
    bonds = W.open_bonds(s, seed=seed, stream=stream, step=step, threshold=T)
    for i in range(Lx):
        for j in range(Ly):
            for d, (a, b) in enumerate((((i + 1) % Lx, j), (i, (j + 1) % Ly))):
                k = 64 + 2 * (i * Ly + j) + d
                word = rng.philox_reference_scalar((k >> 2, step & 0xFFFFFFFF, step >> 32, int(rng.Purpose.WOLFF)),
                                                   (seed, stream))[k & 3]
                assert bonds[i, j, d] == (s[i, j] == s[a, b] and word < T)


def test_bond_threshold():
    for beta in (0.1, KC, 1.0):
        p = 1.0 - np.exp(-2.0 * beta)
        assert abs(rng.bernoulli_probability(W.bond_threshold(beta)) - p) < 2**-31
    assert W.bond_threshold(0.3, J=2.0) == W.bond_threshold(0.6)
    assert W.bond_threshold(100.0) == 2**32  # p = 1 exactly: every aligned bond open


def component_of_seed(s, seed, stream, step, T):
    """Independent check of the reference BFS: scipy's connected components of the open-bond graph."""
    Lx, Ly = s.shape
    bonds = W.open_bonds(s, seed=seed, stream=stream, step=step, threshold=T)
    rows, cols = [], []
    for i in range(Lx):
        for j in range(Ly):
            x = i * Ly + j
            for d, y in enumerate((((i + 1) % Lx) * Ly + j, i * Ly + (j + 1) % Ly)):
                if bonds[i, j, d]:
                    rows.append(x)
                    cols.append(y)
    N = Lx * Ly
    g = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(N, N))
    _, labels = connected_components(g, directed=False)
    x0 = W.seed_site(N, seed=seed, stream=stream, step=step)
    return (labels == labels[x0]).reshape(Lx, Ly)


@pytest.mark.parametrize("shape", [(2, 2), (2, 5), (3, 3), (5, 4), (7, 3)])
def test_reference_cluster_is_connected_component(shape):
    for key in range(6):
        s = random_spins(shape, key)
        T = W.bond_threshold(0.3 + 0.15 * key)
        _, mask = W.wolff_cluster(s, seed=key, stream=2, step=key * 1000, threshold=T)
        np.testing.assert_array_equal(mask, component_of_seed(s, key, 2, key * 1000, T))
        new, size = W.wolff_update(s, seed=key, stream=2, step=key * 1000, threshold=T)
        np.testing.assert_array_equal(new, np.where(mask, -s, s))
        assert size == mask.sum()


def test_transition_probabilities_are_normalised_and_reversible():
    """The exact one-update kernel: rows sum to 1 (an update always flips something) and
    p(a) T(a->b) = p(b) T(b->a) for all pairs (2x3 torus, with double bonds along the side of 2)."""
    K = 0.4
    states, p = exact.boltzmann_weights(K, 2, 3)
    T = np.array([[W.transition_probability(a, b, beta=K) for b in states] for a in states])
    np.testing.assert_allclose(T.sum(axis=1), 1.0, rtol=1e-12)
    flux = p[:, None] * T
    np.testing.assert_allclose(flux, flux.T, rtol=1e-8, atol=1e-15)
    assert np.all(np.diag(T) == 0)


# ------------------------------------------------------------------------------------------
# Numba kernel == reference
# ------------------------------------------------------------------------------------------
@settings(max_examples=40)
@given(Lx=st.integers(2, 9), Ly=st.integers(2, 9), beta=st.floats(0.05, 1.5), seed=st.integers(0, 2**32 - 1),
       stream=st.integers(0, 2**32 - 4), step=st.one_of(st.integers(0, 2**40), st.integers(2**32 - 3, 2**32 + 1)),
       n=st.integers(1, 4), logw=st.integers(1, 6), key=st.integers(0, 2**16),
       method=st.sampled_from(["sites", "bits"]))
def test_numba_kernel_matches_reference(Lx, Ly, beta, seed, stream, step, n, logw, key, method):
    R = 3
    s = random_spins((R, Lx, Ly), key)
    T = W.bond_threshold(beta)
    steps = np.full(R, step, np.int64) + np.arange(R)
    streams = np.arange(stream, stream + R, dtype=np.uint32)
    want, want_steps, want_sizes = W.wolff_clusters(s, n, steps=steps, threshold=T, seed=seed, streams=streams)
    got_steps = steps.copy()
    got, got_sizes = fused.wolff_clusters(s.copy(), n, steps=got_steps, threshold=T, seed=seed, streams=streams,
                                          logw=logw, method=method)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_steps, want_steps)
    np.testing.assert_array_equal(got_sizes, want_sizes)


@pytest.mark.parametrize("method", ["sites", "bits"])
@pytest.mark.parametrize("driver", ["serial", "parallel"])
@pytest.mark.parametrize("shape", [(37, 70), (5, 63), (4, 64), (6, 65), (3, 130), (66, 2)])
def test_numba_kernel_large_lattice_matches_reference(shape, driver, method, monkeypatch):
    """Rows longer than one 64-site tile / word (and 63, 64, 65 sites: the word boundaries of the bit
    boards), at K = 0.7 from a mostly ordered start (clusters of tens to thousands of sites); serial
    and threaded."""
    monkeypatch.setattr(fused, "SERIAL_FLIPS", 0 if driver == "parallel" else 1 << 62)
    s = np.where(np.random.default_rng(shape[1]).random((2,) + shape) < 0.9, 1, -1).astype(np.int8)
    T = W.bond_threshold(0.7)
    steps = np.array([5, 2**33], np.int64)
    streams = np.array([1, 9], np.uint32)
    want, want_steps, want_sizes = W.wolff_clusters(s, 6, steps=steps, threshold=T, seed=4, streams=streams)
    assert want_sizes.max() > 90  # clusters over several words and rows
    st_ = steps.copy()
    got, got_sizes = fused.wolff_clusters(s.copy(), 6, steps=st_, threshold=T, seed=4, streams=streams, method=method)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_sizes, want_sizes)
    np.testing.assert_array_equal(st_, want_steps)


def test_bit_board_packing_round_trip():
    for Lx, Ly in ((3, 5), (2, 64), (4, 65), (2, 129)):
        s = random_spins((Lx, Ly), Ly).reshape(-1)
        W_ = (Ly + 63) // 64
        sb = np.zeros(Lx * W_, np.uint64)
        fused.pack_lattice(s, Lx, Ly, sb)
        for i in range(Lx):
            for j in range(Ly):
                assert (int(sb[i * W_ + j // 64]) >> (j % 64)) & 1 == (s[i * Ly + j] < 0)
        back = np.zeros_like(s)
        fused.unpack_lattice(sb, Lx, Ly, back)
        np.testing.assert_array_equal(back, s)


def test_simulation_kernels_agree():
    """Simulation: fused Numba, NumPy reference and array-api-strict give the same chain and statistics."""
    kw = dict(size=(5, 7), beta=0.4, algorithm="wolff", seed=21, replicas=3, stream=4)
    sims = [isingcore.Simulation(**kw, kernel="fast"), isingcore.Simulation(**kw, kernel="reference"),
            isingcore.Simulation(**kw, backend="array_api_strict")]
    assert [s.kernel for s in sims] == ["fast", "reference", "reference"]
    for s in sims:
        s.sweep(4)
        s.updater.advance_clusters(s, 3)
    ref = sims[0]
    for s in sims[1:]:
        np.testing.assert_array_equal(_array.to_numpy(s.spins), ref.spins)
        np.testing.assert_array_equal(s.steps, ref.steps)
        assert s.updater.clusters_per_sweep == ref.updater.clusters_per_sweep
        for a, b in zip(s.updater.cluster_sizes(), ref.updater.cluster_sizes()):
            np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------------
# chains: reproducibility, Z2, streams, bookkeeping
# ------------------------------------------------------------------------------------------
def test_same_seed_same_chain_and_streams_define_chains():
    kw = dict(size=(6, 5), beta=KC, algorithm="wolff", seed=8, stream=10)
    a = isingcore.Simulation(replicas=4, **kw).sweep(5)
    b = isingcore.Simulation(replicas=4, **kw).sweep(2).sweep(3)
    np.testing.assert_array_equal(a.spins, b.spins)
    assert a.step == b.step == 5 * a.updater.clusters_per_sweep
    # replica r is the chain of stream 10 + r, whatever the batch
    for r in range(4):
        one = isingcore.Simulation(replicas=1, size=(6, 5), beta=KC, algorithm="wolff", seed=8, stream=10 + r)
        one.updater.clusters_per_sweep = a.updater.clusters_per_sweep
        one.sweep(5)
        np.testing.assert_array_equal(one.spins[0], a.spins[r])
    other = isingcore.Simulation(replicas=4, size=(6, 5), beta=KC, algorithm="wolff", seed=9, stream=10).sweep(5)
    assert not np.array_equal(other.spins, a.spins)


def test_global_flip_symmetry():
    """The bond rule depends on s_i s_j only: the flipped start gives the flipped chain, same clusters."""
    start = random_spins((3, 7, 5), 2)
    kw = dict(size=(7, 5), beta=0.42, algorithm="wolff", seed=5, replicas=3)
    a = isingcore.Simulation(start=start, **kw).sweep(6)
    b = isingcore.Simulation(start=-start, **kw).sweep(6)
    np.testing.assert_array_equal(b.spins, -a.spins)
    for x, y in zip(a.updater.cluster_sizes(), b.updater.cluster_sizes()):
        np.testing.assert_array_equal(x, y)
        assert x.size > 0


def test_cluster_statistics_bookkeeping():
    sim = isingcore.Simulation((6, 6), 0.3, "wolff", seed=1, replicas=2)
    sim.updater.clusters_per_sweep = 4
    prev = sim.spins.copy()
    sizes = []
    for _ in range(10):  # one cluster at a time: its size is the number of changed spins
        sim.updater.advance_clusters(sim, 1)
        sizes.append((sim.spins != prev).reshape(2, -1).sum(axis=1))
        prev = sim.spins.copy()
    np.testing.assert_array_equal(np.array(sizes).T, np.stack(sim.updater.cluster_sizes()))
    np.testing.assert_array_equal(sim.updater.n_clusters, [10, 10])
    np.testing.assert_array_equal(sim.steps, [10, 10])
    sim.sweep(2)
    assert sim.step == 18
    np.testing.assert_array_equal(sim.updater.n_clusters, [18, 18])
    assert sim.updater.mean_cluster_size() == pytest.approx(np.concatenate(sim.updater.cluster_sizes()).mean())
    sim.updater.reset_statistics()
    assert sim.updater.n_clusters.sum() == 0 and all(c.size == 0 for c in sim.updater.cluster_sizes())
    sim.sweep(0)
    assert sim.step == 18
    # per-sweep means, also when a kernel call ends inside a sweep
    sim.updater.chunk = 3
    sim.sweep(5)
    means = sim.updater.sweep_mean_sizes()
    assert means.shape == (2, 5)
    np.testing.assert_allclose(means, np.stack(sim.updater.cluster_sizes()).reshape(2, 5, 4).mean(axis=2))
    full = sim.updater.improved_susceptibility()
    assert full.n == 2 * 20  # per cluster while every size is recorded
    # past max_recorded the sizes are no longer kept, and the estimator uses the per-sweep means
    sim.updater.max_recorded = 50
    with pytest.warns(RuntimeWarning, match="max_recorded"):
        sim.sweep(3)
    assert sim.updater.record_sizes is False
    assert sim.updater.improved_susceptibility().n == 2 * 8


def test_calibration_is_deterministic_and_independent_of_the_replicas():
    """clusters_per_sweep comes from the pilot chain: same for any start, batch or backend; about N / <|C|>."""
    kw = dict(size=16, beta=KC, algorithm="wolff", seed=3)
    a = isingcore.Simulation(replicas=2, start="cold", **kw).sweep(1)
    b = isingcore.Simulation(replicas=5, start="random", **kw).sweep(1)
    c = isingcore.Simulation(replicas=1, backend="array_api_strict", **kw).sweep(1)
    assert a.updater.clusters_per_sweep == b.updater.clusters_per_sweep == c.updater.clusters_per_sweep
    # at K_c, N<m^2> = 0.6469 N on 8x8 ... about 0.58 N on 16x16: one or two clusters per sweep
    assert 1 <= a.updater.clusters_per_sweep <= 3
    hot = isingcore.Simulation(size=16, beta=0.1, algorithm="wolff", seed=3).sweep(1)
    assert hot.updater.clusters_per_sweep > 100  # <|C|> ~ 1.5 at K = 0.1


def test_odd_and_rectangular_sizes_are_accepted():
    sim = isingcore.Simulation((3, 5), 0.5, "wolff", seed=2, replicas=2).sweep(3)
    assert sim.spins.shape == (2, 3, 5)
    assert sim.updater.n_clusters.min() >= 3


# ------------------------------------------------------------------------------------------
# the sampled distribution
# ------------------------------------------------------------------------------------------
def chi2_pvalue(observed, expected, min_expected=5.0):
    """Chi-square p-value with the bins of expected count < min_expected pooled into one."""
    observed = np.asarray(observed, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    small = expected < min_expected
    obs = np.append(observed[~small], observed[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    return stats.chisquare(obs, exp * obs.sum() / exp.sum()).pvalue


def test_exact_distribution_3x3():
    """6000 independent chains from a cold start, 25 sweeps each: the histogram of the 512 states
    matches the Boltzmann weights; compared with the weights at a 10 % different K, it does not."""
    K = 0.35
    sim = isingcore.Simulation(3, K, "wolff", seed=12, replicas=6000, start="cold").sweep(25)
    counts = np.bincount(state_index(sim.spins), minlength=512)
    _, p = exact.boltzmann_weights(K, 3, 3)
    assert chi2_pvalue(counts, p * counts.sum()) > 1e-4
    _, p_wrong = exact.boltzmann_weights(K * 1.1, 3, 3)
    assert chi2_pvalue(counts, p_wrong * counts.sum()) < 1e-6


def test_exact_distribution_4x4_energy_magnetization_classes():
    """4x4 at K_c, 20000 chains from a random start: histogram by (E, |M|) against the exact weights."""
    sim = isingcore.Simulation(4, KC, "wolff", seed=13, replicas=20000).sweep(15)
    states, p = exact.boltzmann_weights(KC, 4, 4)
    E = exact_energy_classes(states)
    M = np.abs(states.reshape(len(states), -1).sum(axis=1))
    cls = E * 100 + M
    keys, inv = np.unique(cls, return_inverse=True)
    expected = np.bincount(inv, weights=p) * sim.replicas
    s = sim.spins
    cls_s = exact_energy_classes(s) * 100 + np.abs(s.reshape(len(s), -1).sum(axis=1))
    observed = np.array([(cls_s == k).sum() for k in keys])
    assert observed.sum() == sim.replicas
    assert chi2_pvalue(observed, expected) > 1e-4
    _, p_wrong = exact.boltzmann_weights(KC * 1.05, 4, 4)
    assert chi2_pvalue(observed, np.bincount(inv, weights=p_wrong) * sim.replicas) < 1e-6


def exact_energy_classes(states):
    """Bond sum sum_<ij> s_i s_j (int) of each lattice of (n, Lx, Ly)."""
    s = np.asarray(states, dtype=np.int64)
    return (s * np.roll(s, -1, axis=1) + s * np.roll(s, -1, axis=2)).reshape(len(s), -1).sum(axis=1)


def one_update_counts(start, K, replicas, seed):
    """Outcomes of one Wolff update from the fixed state ``start``: {state code: count}."""
    sim = isingcore.Simulation(start.shape, K, "wolff", seed=seed, replicas=replicas, start=start)
    sim.updater.advance_clusters(sim, 1)
    codes, counts = np.unique(state_index(sim.spins), return_counts=True)
    return dict(zip(codes.tolist(), counts.tolist()))


def test_one_update_transition_frequencies_and_detailed_balance():
    """3x3 torus, K = 0.4: from a fixed state a, 100000 independent single updates; the frequency of
    every outcome b matches the exact T(a->b) (chi-square), and for the three most frequent outcomes
    the reverse frequencies satisfy p(a) T(a->b) = p(b) T(b->a) within 4 sigma (binomial errors)."""
    K, R = 0.4, 100_000
    states, p = exact.boltzmann_weights(K, 3, 3)
    a = np.array([[1, 1, -1], [1, -1, -1], [1, 1, 1]], dtype=np.int8)
    ia = int(state_index(a[None])[0])
    out = one_update_counts(a, K, R, seed=31)
    assert ia not in out  # an update always flips at least the seed
    codes = np.array(sorted(out))
    observed = np.array([out[c] for c in codes])
    T_exact = np.array([W.transition_probability(a, states[c], beta=K) for c in codes])
    assert np.all(T_exact > 0), "an outcome that the exact kernel forbids"
    # outcomes not observed carry the rest of the probability
    expected = np.append(T_exact, max(0.0, 1.0 - T_exact.sum())) * R
    assert chi2_pvalue(np.append(observed, 0), expected) > 1e-4
    for c in codes[np.argsort(observed)[::-1][:3]]:
        back = one_update_counts(states[c], K, R, seed=32 + int(c))
        t_ab, t_ba = out[c] / R, back.get(ia, 0) / R
        lhs, rhs = p[ia] * t_ab, p[c] * t_ba
        err = np.hypot(p[ia] * np.sqrt(t_ab * (1 - t_ab) / R), p[c] * np.sqrt(t_ba * (1 - t_ba) / R))
        assert abs(lhs - rhs) < 4 * err, (c, lhs, rhs, err)
        assert t_ba > 0


def test_transition_test_has_power():
    """The chi-square of the previous test rejects the kernel of a different temperature."""
    K, R = 0.4, 100_000
    states, _ = exact.boltzmann_weights(K, 3, 3)
    a = np.array([[1, 1, -1], [1, -1, -1], [1, 1, 1]], dtype=np.int8)
    out = one_update_counts(a, K, R, seed=31)
    codes = np.array(sorted(out))
    observed = np.array([out[c] for c in codes])
    T_wrong = np.array([W.transition_probability(a, states[c], beta=K * 1.05) for c in codes])
    expected = np.append(T_wrong, max(0.0, 1.0 - T_wrong.sum())) * R
    assert chi2_pvalue(np.append(observed, 0), expected) < 1e-6


# ------------------------------------------------------------------------------------------
# statistics against exact results
# ------------------------------------------------------------------------------------------
R_STAT = 64


def sample_series(L, K, n_therm, n_meas, seed):
    sim = isingcore.Simulation(L, K, "wolff", seed=seed, replicas=R_STAT, start="cold" if K > 0.5 else "random")
    e, m = energy_magnetization_series(sim, n_therm, n_meas, lambda s: s.updater.reset_statistics())
    return sim, e, m


STAT_CASES = [(L, K) for L in (8, 16) for K in (KC, 0.35, 0.55)] + [
    (32, KC), (32, 0.55), pytest.param(32, 0.35, marks=pytest.mark.slow)]  # K = 0.35: ~50 clusters per sweep


@pytest.mark.parametrize("L,K", STAT_CASES)
def test_energy_specific_heat_and_moments_match_exact(L, K):
    sim, e, m = sample_series(L, K, n_therm=50, n_meas=2000, seed=40 + L)
    N = L * L
    ref = exact.kaufman_torus(K, L)
    check("energy", gamma_method(e), ref.energy)
    check("specific heat", specific_heat(e, K, N), ref.specific_heat)
    chi_direct = gamma_method(K * N * m**2)
    chi_improved = sim.updater.improved_susceptibility()
    assert abs(chi_improved.mean - chi_direct.mean) < 4 * np.hypot(chi_improved.error, chi_direct.error)
    if L == 8:
        mm = exact.magnetization_moments(K, L)
        check("<m^2>", gamma_method(m**2), mm.m2)
        check("<m^4>", gamma_method(m**4), mm.m4)
        check("improved chi = beta <|C|>", chi_improved, K * N * mm.m2)


def test_improved_estimator_normalisation():
    """<|C|> = N <m^2> exactly in equilibrium: on 4x4 at K = 0.3 with many replicas, the mean cluster
    size over one update from exact Boltzmann samples equals N <m^2> (exact) within errors."""
    K, R = 0.3, 40_000
    states, p = exact.boltzmann_weights(K, 4, 4)
    start = states[np.random.default_rng(5).choice(len(states), size=R, p=p)]
    sim = isingcore.Simulation(4, K, "wolff", seed=6, replicas=R, start=start)
    sim.updater.advance_clusters(sim, 1)
    c = np.concatenate(sim.updater.cluster_sizes()).astype(np.float64)
    want = 16 * exact.enumerate_torus(K, 4, 4).m2
    assert abs(c.mean() - want) < 4 * c.std() / np.sqrt(R)
    assert abs(c.mean() - want / 2) > 20 * c.std() / np.sqrt(R)  # a factor 2 would be seen


def test_a_wrong_temperature_is_detected():
    """The energy test at a coupling off by 2 % fails by far: the statistical tests have power."""
    _, e, _ = sample_series(16, KC * 1.02, n_therm=50, n_meas=1500, seed=3)
    est = gamma_method(e)
    assert abs(est.mean - exact.kaufman_torus(KC, 16).energy) / est.error > 8


# ------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------
def test_field_is_rejected():
    with pytest.raises(ValueError, match=r"field h != 0 is not supported by the Wolff algorithm \(no ghost spin\)"):
        isingcore.Simulation(8, KC, "wolff", h=0.1)


@pytest.mark.parametrize("J", [0.0, -1.0])
def test_non_ferromagnetic_coupling_is_rejected(J):
    with pytest.raises(ValueError, match="J > 0"):
        isingcore.Simulation(8, KC, "wolff", J=J)


def test_bad_clusters_per_sweep_and_counters():
    sim = isingcore.Simulation(4, KC, "wolff")
    sim.updater.clusters_per_sweep = 0
    with pytest.raises(ValueError, match="clusters_per_sweep"):
        sim.sweep(1)
    with pytest.raises(ValueError, match="n must be"):
        sim.updater.advance_clusters(sim, -1)
    late = isingcore.Simulation(4, KC, "wolff", step=2**62 - 1)
    with pytest.raises(ValueError, match="2\\*\\*62"):
        late.updater.advance_clusters(late, 2)


def test_kernel_argument_checks():
    s = random_spins((2, 4, 4), 0)
    with pytest.raises(TypeError, match="steps"):
        fused.wolff_clusters(s, 1, steps=np.zeros(2, np.int32), threshold=2**31, seed=0, streams=np.arange(2))
    with pytest.raises(ValueError, match="streams"):
        fused.wolff_clusters(s, 1, steps=np.zeros(2, np.int64), threshold=2**31, seed=0, streams=np.arange(3))
    with pytest.raises(ValueError, match="logw"):
        fused.wolff_clusters(s, 1, steps=np.zeros(2, np.int64), threshold=2**31, seed=0, streams=np.arange(2), logw=7)


# ------------------------------------------------------------------------------------------
# CUDA kernels under the simulator (one subprocess: NUMBA_ENABLE_CUDASIM must be set before
# Numba is imported, and this process must stay unaffected)
# ------------------------------------------------------------------------------------------
SIM_SCRIPT = textwrap.dedent(
    r"""
    import json, sys, warnings
    import numpy as np
    warnings.simplefilter("ignore")  # the simulator warns about itself
    from numba.cuda.core import config
    assert config.ENABLE_CUDASIM, "the simulator is not enabled"
    from isingcore.backends.cuda import wolff as G

    job = json.load(open(sys.argv[1]))
    out = {"simulator": G.SIMULATOR, "cases": []}
    for c in job["cases"]:
        G.MAX_GRID_Y, G.MAX_BLOCKS = c.get("max_grid", (65535, 1 << 20))
        steps = np.array(c["steps"], dtype=np.int64)
        spins, sizes = G.wolff_clusters(np.array(c["spins"], dtype=np.int8), c["n"], steps=steps,
                                        threshold=c["threshold"], seed=c["seed"],
                                        streams=np.array(c["streams"], dtype=np.uint32), method=c["method"])
        out["cases"].append({"spins": spins.tolist(), "steps": steps.tolist(), "sizes": sizes.tolist()})
    print(json.dumps(out))
    """
)


def run_simulator(tmp_path_factory, cases):
    """Run the CUDA kernels on ``cases`` under the simulator in a subprocess; returns its JSON output."""
    if importlib.util.find_spec("numba_cuda") is None:
        pytest.skip("numba-cuda is not installed (pip install numba-cuda; no GPU needed for the simulator)")
    job_file = tmp_path_factory.mktemp("cudasim_wolff") / "job.json"
    job_file.write_text(json.dumps({"cases": cases}))
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-c", SIM_SCRIPT, str(job_file)], capture_output=True, text=True,
                          env=env, timeout=1800)
    if proc.returncode != 0:
        pytest.fail(f"simulator subprocess failed:\n{proc.stderr[-4000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["simulator"] is True
    return res["cases"]


CUDA_CASES = [  # (replicas, Lx, Ly), beta, method, first step
    ((2, 4, 6), 0.5, "block", 0),
    ((2, 4, 6), 0.5, "lattice", 0),
    ((1, 5, 3), KC, "block", 2**32 - 2),
    ((1, 5, 3), KC, "lattice", 2**32 - 2),
    ((3, 2, 7), 0.3, "block", 17),
    ((3, 2, 7), 0.3, "lattice", 17),
    ((1, 8, 8), 0.6, "block", 5),
    ((1, 8, 8), 0.6, "lattice", 5),
    ((5, 3, 4), 0.5, "block", 9),  # more replicas than blocks / grid rows (MAX_GRID = 2): the kernels loop
    ((5, 3, 4), 0.5, "lattice", 9),
]
LOOPING = 8  # the first case run with MAX_GRID_Y = MAX_BLOCKS = 2


def stat_case(replicas, start, n, method, K=0.3, seed=71):
    """A 2x3 torus (double bonds along the side of 2) job for the statistical simulator tests."""
    return dict(spins=start.tolist(), n=n, steps=[0] * replicas, threshold=W.bond_threshold(K), seed=seed,
                streams=list(range(replicas)), method=method)


def boltzmann_samples(K, Lx, Ly, size, key):
    states, p = exact.boltzmann_weights(K, Lx, Ly)
    return states[np.random.default_rng(key).choice(len(states), size=size, p=p)]


def energy_class_test(spins, K, Lx, Ly):
    """(p-value against the exact weights, p-value of the same counts against the weights at 1.5 K)."""
    states, p = exact.boltzmann_weights(K, Lx, Ly)
    _, p_wrong = exact.boltzmann_weights(1.5 * K, Lx, Ly)
    keys, inv = np.unique(exact_energy_classes(states), return_inverse=True)
    e = exact_energy_classes(spins)
    observed = np.array([(e == k).sum() for k in keys])
    R = len(spins)
    return (chi2_pvalue(observed, np.bincount(inv, weights=p) * R),
            chi2_pvalue(observed, np.bincount(inv, weights=p_wrong) * R))


@pytest.fixture(scope="module")
def cudasim_results(tmp_path_factory):
    cases = []
    for n, (shape, beta, method, step) in enumerate(CUDA_CASES):
        R = shape[0]
        cases.append(dict(spins=random_spins(shape, 100 + n).tolist(), n=3, steps=[step + r for r in range(R)],
                          threshold=W.bond_threshold(beta), seed=1234 + n, streams=list(range(7, 7 + R)),
                          method=method, max_grid=(2, 2) if n >= LOOPING else (65535, 1 << 20)))
    # small statistical check: 48 exact Boltzmann samples, two updates each (stationarity)
    cases.append(stat_case(48, boltzmann_samples(0.3, 2, 3, 48, 8), 2, "lattice"))
    return cases, run_simulator(tmp_path_factory, cases)


@pytest.mark.cudasim
@pytest.mark.parametrize("n", range(len(CUDA_CASES)),
                         ids=[f"{'x'.join(map(str, c[0]))}-{c[2]}" for c in CUDA_CASES])
def test_cuda_kernels_match_reference(cudasim_results, n):
    cases, res = cudasim_results
    c = cases[n]
    want, want_steps, want_sizes = W.wolff_clusters(np.array(c["spins"], np.int8), c["n"],
                                                    steps=np.array(c["steps"], np.int64), threshold=c["threshold"],
                                                    seed=c["seed"], streams=np.array(c["streams"]))
    got = res[n]
    assert want_sizes.max() > 1, "only single-site clusters: the case tests little"
    np.testing.assert_array_equal(np.array(got["spins"], np.int8), want)
    np.testing.assert_array_equal(got["steps"], want_steps)
    np.testing.assert_array_equal(got["sizes"], want_sizes)


@pytest.mark.cudasim
def test_cuda_simulator_keeps_boltzmann_distribution(cudasim_results):
    """48 exact samples of the 2x3 torus at K = 0.3, two updates each (lattice method): still Boltzmann
    by energy class (chi-square), and the chains moved (a small check; the exact tests run on the
    Numba kernel, which gives the same chains bit for bit)."""
    cases, res = cudasim_results
    start, got = np.array(cases[-1]["spins"], np.int8), np.array(res[-1]["spins"], np.int8)
    assert energy_class_test(got, 0.3, 2, 3)[0] > 1e-4
    assert np.mean(np.any(got != start, axis=(1, 2))) > 0.5


@pytest.mark.cudasim
@pytest.mark.slow
def test_cuda_simulator_distribution_from_cold_start(tmp_path_factory):
    """300 chains of the 2x3 torus from a cold start, 6 updates each, under the simulator (both
    methods): energy classes match the exact weights at K = 0.3 and not those at 1.5 K."""
    cold = np.ones((150, 2, 3), np.int8)
    res = run_simulator(tmp_path_factory, [stat_case(150, cold, 6, "lattice", seed=72),
                                           stat_case(150, cold, 6, "block", seed=73)])
    spins = np.concatenate([np.array(r["spins"], np.int8) for r in res])
    ok, wrong = energy_class_test(spins, 0.3, 2, 3)
    assert ok > 1e-4
    assert wrong < 1e-6



L8_SCRIPT = SIMULATOR_L8_PREAMBLE + textwrap.dedent(
    r"""
    from isingcore.backends.cuda import wolff as G
    from isingcore.mcmc.wolff import bond_threshold
    G.MAX_GRID_Y = G.MAX_BLOCKS = 1  # one block loops over the replicas: far fewer simulated threads
    out = {"simulator": G.SIMULATOR}
    for k, method in enumerate(sys.argv[5].split(",")):
        t0 = time.perf_counter()
        s = np.where(np.random.default_rng(10 + k).random((R, L, L)) < 0.5, 1, -1).astype(np.int8)
        steps, streams = np.zeros(R, np.int64), np.arange(R, dtype=np.uint32)
        kw = dict(steps=steps, threshold=bond_threshold(K), seed=91 + k, streams=streams, method=method)
        s, _ = G.wolff_clusters(s, n_therm, **kw)  # all replicas in one launch
        e, m, c = np.empty((R, n_meas)), np.empty((R, n_meas)), np.empty((R, n_meas))
        for t in range(n_meas):  # one cluster per measurement
            s, sizes = G.wolff_clusters(s, 1, **kw)
            c[:, t] = sizes[:, 0]
            e[:, t] = energy_per_site(s)
            m[:, t] = magnetization(s)
        assert np.all(steps == n_therm + n_meas)
        out[method] = {"e": e.tolist(), "m": m.tolist(), "c": c.tolist(), "seconds": time.perf_counter() - t0}
    print(json.dumps(out))
    """
)


@pytest.mark.cudasim
@pytest.mark.slow
def test_cuda_simulator_energy_and_m2_at_L8_match_exact():
    """The CUDA kernels (both methods) under the simulator on the 8x8 torus at K_c: 8 chains from random
    starts, 8 clusters of thermalisation, then 50 clusters, measured after each. The energy per site
    (Kaufman), <m^2> and the improved estimator <|C|>/N (transfer matrix) agree with the exact values
    within 4 sigma (Gamma method, tau_int, replicas pooled), while the exact values at 0.9 K_c and
    1.1 K_c are rejected by the same samples (|z| > 4; about 7 to 11 with these seeds)."""
    if importlib.util.find_spec("numba_cuda") is None:
        pytest.skip("numba-cuda is not installed (pip install numba-cuda; no GPU needed for the simulator)")
    L, K, R, n_therm, n_meas = 8, KC, 8, 8, 50
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-c", L8_SCRIPT, repr(K), str(R), str(n_therm), str(n_meas),
                           "lattice,block"], capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode != 0:
        pytest.fail(f"simulator subprocess failed:\n{proc.stderr[-4000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["simulator"] is True
    ref, mm = exact.kaufman_torus(K, L), exact.magnetization_moments(K, L)
    wrong = [(f, exact.kaufman_torus(f * K, L), exact.magnetization_moments(f * K, L)) for f in (0.9, 1.1)]
    for method in ("lattice", "block"):
        e, m, c = (np.array(res[method][x]) for x in "emc")
        assert e.shape == m.shape == c.shape == (R, n_meas)
        assert np.all((c >= 1) & (c <= L * L))
        est = {"energy": gamma_method(e), "<m^2>": gamma_method(m**2), "<|C|>/N": gamma_method(c / L**2)}
        want = {"energy": ref.energy, "<m^2>": mm.m2, "<|C|>/N": mm.m2}
        for name, x in est.items():
            z = check(f"{method}: {name} (simulated GPU)", x, want[name])
            print(f"{method} {name}: {x.mean:.4f} +- {x.error:.4f} (tau_int {x.tau_int:.2f}), exact {want[name]:.4f},"
                  f" z = {z:+.2f}")
        for f, w_ref, w_mm in wrong:  # the same samples reject the exact values at a coupling 10 % off
            zs = (reject(f"{method}: energy vs {f} K", est["energy"], w_ref.energy),
                  reject(f"{method}: <m^2> vs {f} K", est["<m^2>"], w_mm.m2))
            print(f"{method} against the exact values at {f} K: z(energy) = {zs[0]:+.1f}, z(<m^2>) = {zs[1]:+.1f}")
        print(f"{method}: {res[method]['seconds']:.0f} s in the simulator")


PTX_SIGS = r"""
    from isingcore.backends.cuda import wolff as G
    i8, i32, i64, u32, u8 = T.int8[::1], T.int32[::1], T.int64[::1], T.uint32[::1], T.uint8[::1]
    I64, U32 = T.int64, T.uint32
    sigs = {
        "block": (G._block_kernel, (i8, I64, I64, i64, I64, U32, u32, i32, I64, i32, i32)),
        "seed": (G._seed_kernel, (i8, I64, i64, U32, u32, i32, i64, i32)),
        "bonds": (G._bonds_kernel, (u8, I64, i64, I64, U32, u32, i32)),
        "init": (G._init_kernel, (i8, i32, I64, i32, i32)),
        "scan": (G._scan_kernel, (i32, u8, I64, I64, i32, i32)),
        "analysis": (G._analysis_kernel, (i32, I64, i32)),
        "flip": (G._flip_kernel, (i8, i32, I64, i64, i32, i64)),
        "book": (G._book_kernel, (i64, i64, i32, I64, I64)),
    }
    """


def test_cuda_kernels_compile_without_float64():
    """Lower every Wolff kernel to PTX (sm_90): it compiles, has no float64, and Philox uses mul.hi.u32."""
    res = compile_ptx(PTX_SIGS)
    for name, ptx in res.items():
        assert ".f64" not in ptx, f"{name}: float64 in the kernel"
        if name in ("block", "seed", "bonds"):
            assert ptx.count("mul.hi.u32") >= 20, f"{name}: Philox does not use 32-bit high multiplies"


# ------------------------------------------------------------------------------------------
# real GPU (skipped without CuPy and a device)
# ------------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("method", ["block", "lattice"])
@pytest.mark.parametrize("shape", [(3, 16, 12), (2, 33, 17), (1, 64, 64)])
def test_gpu_kernels_match_reference(shape, method):
    import cupy

    from isingcore.backends.cuda import wolff as G

    s = random_spins(shape, 3)
    T = W.bond_threshold(KC)
    steps = np.full(shape[0], 2**32 - 2, np.int64)
    streams = np.arange(shape[0], dtype=np.uint32)
    want, want_steps, want_sizes = W.wolff_clusters(s, 4, steps=steps, threshold=T, seed=5, streams=streams)
    got_steps = steps.copy()
    d = cupy.asarray(s)
    out, sizes = G.wolff_clusters(d, 4, steps=got_steps, threshold=T, seed=5, streams=cupy.asarray(streams),
                                  method=method)
    np.testing.assert_array_equal(out.get(), want)
    np.testing.assert_array_equal(got_steps, want_steps)
    np.testing.assert_array_equal(sizes, want_sizes)


@pytest.mark.gpu
def test_gpu_simulation_matches_numpy():
    kw = dict(size=(48, 40), beta=KC, algorithm="wolff", seed=3, replicas=4)
    gpu = isingcore.Simulation(backend="cupy", **kw)
    cpu = isingcore.Simulation(backend="numpy", **kw)
    assert gpu.kernel == "fast"
    gpu.sweep(3)
    cpu.sweep(3)
    np.testing.assert_array_equal(gpu.spins.get(), cpu.spins)
    np.testing.assert_array_equal(gpu.steps, cpu.steps)
