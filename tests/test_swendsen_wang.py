"""Swendsen-Wang: the random-number rule, reference vs fused kernels, and exactness of the chain.

Exactness is tested three ways: (1) on 3x3 and 4x4 tori the visited states follow the exact
Boltzmann weights (chi-square); (2) one update satisfies detailed balance, p(a) T(a->b) =
p(b) T(b->a), with measured transition frequencies, and the frequencies agree with the exact
transition probability; (3) energy, specific heat, <m^2>, <m^4> and the improved estimators agree
with Kaufman's closed form and the transfer matrix within 4 sigma (Gamma-method errors), while
a 2 % error in beta is detected.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import subprocess
import sys
import textwrap

import array_api_compat.numpy as xnp
import array_api_strict as xps
import numpy as np
import pytest
from cuda_testing import SIMULATOR_L8_PREAMBLE, assert_import_is_importerror_without_device, compile_ptx
from statistics_testing import check, energy_magnetization_series, reject
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

import isingcore
from isingcore import exact
from isingcore import random as rng
from isingcore.backends.numba_cpu import swendsen_wang as fused
from isingcore.measure import gamma_method, specific_heat
from isingcore.mcmc import swendsen_wang as sw

KC = isingcore.BETA_C


def random_spins(shape, key):
    rs = np.random.default_rng(key)
    return np.where(rs.random(shape) < 0.5, 1, -1).astype(np.int8)


def state_index(spins):
    """Index of each configuration in :func:`isingcore.exact.boltzmann_weights` (bit k set <=> s_k = -1)."""
    s = np.asarray(spins).reshape(spins.shape[0], -1)
    return ((s < 0).astype(np.int64) << np.arange(s.shape[1], dtype=np.int64)).sum(axis=1)


def scipy_roots(bonds):
    """Canonical roots from scipy's connected components (an independent labelling)."""
    R, Lx, Ly, _ = bonds.shape
    N = Lx * Ly
    out = np.empty((R, Lx, Ly), np.int64)
    i, j = np.meshgrid(np.arange(Lx), np.arange(Ly), indexing="ij")
    k = i * Ly + j
    nb = (((i + 1) % Lx) * Ly + j, i * Ly + (j + 1) % Ly)
    for r in range(R):
        rows = np.concatenate([k[bonds[r, ..., d]] for d in (0, 1)])
        cols = np.concatenate([nb[d][bonds[r, ..., d]] for d in (0, 1)])
        g = coo_matrix((np.ones(rows.size), (rows, cols)), shape=(N, N))
        _, comp = connected_components(g, directed=False)
        first = np.full(comp.max() + 1, N)
        np.minimum.at(first, comp, np.arange(N))
        out[r] = first[comp].reshape(Lx, Ly)
    return out


# ------------------------------------------------------------------------------------------
# the random-number rule and the reference
# ------------------------------------------------------------------------------------------
@st.composite
def case(draw, max_side=9):
    R = draw(st.integers(1, 3))
    Lx, Ly = draw(st.integers(2, max_side)), draw(st.integers(2, max_side))
    return dict(
        spins=random_spins((R, Lx, Ly), draw(st.integers(0, 2**32 - 1))),
        beta=draw(st.one_of(st.floats(0.05, 2.0), st.sampled_from([KC, 0.35, 0.55]))),
        seed=draw(st.integers(0, 2**32 - 1)),
        stream=draw(st.integers(0, 1000)),
        steps=draw(st.one_of(st.integers(0, 50), st.integers(2**32 - 3, 2**32 + 3), st.integers(0, 2**63 - 20),
                             st.lists(st.integers(0, 2**40), min_size=R, max_size=R))),
        n=draw(st.integers(1, 4)),
    )


def run_reference(c, spins=None, xp=xnp):
    s = c["spins"] if spins is None else spins
    R = s.shape[0]
    streams = xp.asarray(np.arange(c["stream"], c["stream"] + R, dtype=np.uint32))
    T = sw.bond_threshold(c["beta"])
    out, m2, m4 = sw.swendsen_wang_sweeps(xp.asarray(s), c["n"], steps=c["steps"], threshold=T, seed=c["seed"],
                                          streams=streams, xp=xp)
    return np.asarray(out), m2, m4


def run_fused(c, spins=None):
    s = (c["spins"] if spins is None else spins).copy()
    R = s.shape[0]
    streams = np.arange(c["stream"], c["stream"] + R, dtype=np.uint32)
    return fused.swendsen_wang_sweeps(s, c["n"], steps=c["steps"], threshold=sw.bond_threshold(c["beta"]),
                                      seed=c["seed"], streams=streams)


def test_bond_rule_by_hand():
    """Bond b = 2k + d is open iff the spins agree and word b < T (written out site by site)."""
    s = random_spins((2, 3, 5), 1)
    T = sw.bond_threshold(0.5)
    assert T == int(np.ceil(-np.expm1(-1.0) * 2.0**32))
    streams = np.array([7, 8], np.uint32)
    bonds = np.asarray(sw.open_bonds(xnp.asarray(s), step=2**33 + 1, threshold=T, seed=5, streams=streams))
    for r in range(2):
        w = rng.random_words(2 * 15, seed=5, stream=int(streams[r]), step=2**33 + 1, purpose=rng.Purpose.SWENDSEN_WANG)
        for i, j, d in itertools.product(range(3), range(5), range(2)):
            ni, nj = ((i + 1) % 3, j) if d == 0 else (i, (j + 1) % 5)
            want = s[r, i, j] == s[r, ni, nj] and int(w[2 * (i * 5 + j) + d]) < T
            assert bonds[r, i, j, d] == want
    assert 0 < bonds.sum() < bonds.size


@pytest.mark.parametrize("kernel", ["reference", "fast"])
def test_flip_rule_by_hand(kernel):
    """Coins: cluster C flips iff word 2N + min(C) < 2**31, checked in the two limits."""
    Lx, Ly, N, seed = 4, 3, 12, 11
    coin = rng.random_words(N, seed=seed, stream=0, step=3, purpose=rng.Purpose.SWENDSEN_WANG, first=2 * N)
    flips = coin < 2**31
    # beta -> large: every satisfied bond open (T = 2**32); all spins equal -> one cluster, root 0
    cold = np.ones((1, Lx, Ly), np.int8)
    sim = isingcore.Simulation((Lx, Ly), 30.0, "swendsen-wang", seed=seed, start=cold.copy(), step=3,
                               kernel=kernel)
    assert sw.bond_threshold(30.0) == 2**32
    sim.sweep(1)
    np.testing.assert_array_equal(sim.spins, -cold if flips[0] else cold)
    # rows of equal spins, alternating in sign along i (Lx even): every bond between rows is
    # unsatisfied and every bond inside a row open, so the clusters are the rows, roots i*Ly
    start = np.repeat(np.array([1, -1, 1, -1], np.int8)[:, None], Ly, axis=1)[None]
    sim = isingcore.Simulation((Lx, Ly), 30.0, "swendsen-wang", seed=seed, start=start.copy(), step=3,
                               kernel=kernel)
    sim.sweep(1)
    roots = np.arange(Lx) * Ly
    want = np.where(flips[roots][:, None], -start[0], start[0])
    np.testing.assert_array_equal(sim.spins[0], want)
    assert sim.updater.improved_series()["m2"][0, 0] == pytest.approx(Lx * Ly**2 / N**2)


@given(case())
def test_reference_labels_are_connected_components(c):
    T = sw.bond_threshold(c["beta"])
    streams = np.arange(c["stream"], c["stream"] + c["spins"].shape[0], dtype=np.uint32)
    step = c["steps"] if isinstance(c["steps"], int) else c["steps"][0]
    bonds = np.asarray(sw.open_bonds(xnp.asarray(c["spins"]), step=step, threshold=T, seed=c["seed"], streams=streams))
    np.testing.assert_array_equal(np.asarray(sw.cluster_labels(xnp.asarray(bonds))), scipy_roots(bonds))


@given(case())
def test_numba_kernel_identical_to_reference(c):
    want, m2, m4 = run_reference(c)
    got, g2, g4 = run_fused(c)
    assert got.dtype == np.int8
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(g2, m2)
    np.testing.assert_allclose(g4, m4, rtol=1e-12, atol=0)


@pytest.mark.parametrize("shape", [(2, 64, 64), (1, 37, 50), (1, 100, 3), (1, 2, 77)])
@pytest.mark.parametrize("beta", [0.3, KC, 0.47, 0.7])
def test_numba_kernel_identical_to_reference_larger_lattices(shape, beta):
    """Large clusters (many deferred merges between roots of earlier rows, periodic merges)."""
    c = dict(spins=random_spins(shape, 9), beta=beta, seed=3, stream=1, steps=11, n=3)
    want, m2, m4 = run_reference(c)
    got, g2, g4 = run_fused(c)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(g2, m2)


@settings(max_examples=10)
@given(case(max_side=6))
def test_reference_on_array_api_strict(c):
    want, m2, m4 = run_reference(c)
    got, g2, g4 = run_reference(c, xp=xps)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(g2, m2)


@given(case())
def test_z2_flipped_start_gives_flipped_chain(c):
    """Bonds depend only on s_i = s_j, coins only on the cluster: -s evolves into -(s')."""
    got, g2, g4 = run_fused(c)
    neg, n2, n4 = run_fused(c, spins=-c["spins"])
    np.testing.assert_array_equal(neg, -got)
    np.testing.assert_array_equal(n2, g2)
    ref, _, _ = run_reference(c, spins=-c["spins"])
    np.testing.assert_array_equal(ref, -got)


def test_improved_estimator_formula_by_enumerating_coins():
    """E over the coins of m^2 and m^4 equals sum n^2/N^2 and (3 (sum n^2)^2 - 2 sum n^4)/N^4."""
    s = random_spins((3, 4, 5), 2)
    T = sw.bond_threshold(0.6)
    streams = np.arange(3, dtype=np.uint32)
    labels = np.asarray(sw.cluster_labels(sw.open_bonds(xnp.asarray(s), step=4, threshold=T, seed=1, streams=streams)))
    S2, S4 = sw.cluster_size_moments(labels)
    m2, m4 = sw.improved_moments(S2, S4, 20)
    for r in range(3):
        roots, sizes = np.unique(labels[r], return_counts=True)
        assert 1 < roots.size <= 14
        signs = np.array(list(itertools.product([-1, 1], repeat=roots.size)))
        M = signs @ sizes
        assert m2[r] == pytest.approx(np.mean(M.astype(float) ** 2) / 20**2, rel=1e-13)
        assert m4[r] == pytest.approx(np.mean(M.astype(float) ** 4) / 20**4, rel=1e-13)


# ------------------------------------------------------------------------------------------
# Simulation: registration, reproducibility, improved series, bad input
# ------------------------------------------------------------------------------------------
def test_registered_and_odd_sizes_accepted():
    assert "swendsen-wang" in isingcore.ALGORITHMS
    sim = isingcore.Simulation((5, 7), KC, "swendsen-wang", seed=1, replicas=2)
    assert sim.kernel == "fast" and sim.updater.steps_per_sweep == 1
    sim.sweep(3)
    assert sim.step == 3 and sim.sweeps_done == 3.0


def test_same_seed_same_chain_and_batching():
    kw = dict(size=(6, 9), beta=0.4, algorithm="swendsen-wang", seed=3)
    a = isingcore.Simulation(replicas=4, **kw).sweep(7)
    b = isingcore.Simulation(replicas=4, **kw).sweep(3).sweep(4)
    np.testing.assert_array_equal(a.spins, b.spins)
    np.testing.assert_array_equal(a.updater.improved_series()["m2"], b.updater.improved_series()["m2"])
    c = isingcore.Simulation(replicas=2, stream=2, **kw).sweep(7)
    np.testing.assert_array_equal(a.spins[2:], c.spins)
    d = isingcore.Simulation(replicas=4, **dict(kw, seed=4)).sweep(7)
    assert not np.array_equal(a.spins, d.spins)
    ref = isingcore.Simulation(replicas=4, kernel="reference", **kw).sweep(7)
    np.testing.assert_array_equal(a.spins, ref.spins)
    strict = isingcore.Simulation(replicas=4, backend="array_api_strict", **kw).sweep(7)
    np.testing.assert_array_equal(a.spins, np.asarray(strict.spins))


def test_continuing_from_state_with_per_replica_steps():
    kw = dict(size=7, beta=KC, algorithm="swendsen-wang", seed=9, replicas=3)
    full = isingcore.Simulation(**kw).sweep(6)
    st_ = isingcore.Simulation(**kw).sweep(2).state()
    cont = isingcore.Simulation(start=st_["spins"].copy(), step=st_["step"], **kw).sweep(4)
    np.testing.assert_array_equal(cont.spins, full.spins)
    # replicas at different steps: replica r continues at its own step (fast and reference agree)
    steps = [5, 2**32, 17]
    s0 = random_spins((3, 7, 7), 4)
    f = isingcore.Simulation(start=s0.copy(), step=steps, **kw).sweep(3)
    r = isingcore.Simulation(start=s0.copy(), step=steps, kernel="reference", **kw).sweep(3)
    np.testing.assert_array_equal(f.spins, r.spins)
    np.testing.assert_array_equal(f.steps, np.array(steps) + 3)
    one = isingcore.Simulation(start=s0[1:2].copy(), step=2**32, **dict(kw, replicas=1), stream=1).sweep(3)
    np.testing.assert_array_equal(f.spins[1:2], one.spins)


def test_improved_series_and_reset():
    sim = isingcore.Simulation(8, KC, "swendsen-wang", seed=2, replicas=3)
    assert sim.updater.improved_series()["m2"].shape == (3, 0)
    sim.sweep(4).sweep(2)
    ser = sim.updater.improved_series()
    assert ser["m2"].shape == (3, 6) and ser["m4"].shape == (3, 6)
    assert np.all((ser["m2"] >= 1 / 64) & (ser["m2"] <= 1)) and np.all(ser["m4"] <= ser["m2"])
    assert np.all(ser["m4"] >= ser["m2"] ** 2 - 1e-15)  # Jensen: E[m^4] >= E[m^2]^2
    sim.updater.reset()
    assert sim.updater.improved_series()["m2"].shape == (3, 0)
    sim.updater.record_improved = False
    sim.sweep(2)
    assert sim.updater.improved_series()["m2"].shape == (3, 0)


@pytest.mark.parametrize("kw,match", [
    (dict(h=0.1), r"field h != 0 is not supported by Swendsen-Wang \(no ghost spin\)"),
    (dict(h=-1e-9), "field h != 0"),
    (dict(J=-1.0), "J must be > 0"),
    (dict(J=0.0), "J must be > 0"),
])
def test_bad_parameters(kw, match):
    with pytest.raises(ValueError, match=match):
        isingcore.Simulation(8, 0.4, "swendsen-wang", **kw)


def test_bad_kernel_and_arrays():
    with pytest.raises(ValueError, match="kernel='fast'"):
        isingcore.Simulation(4, 0.4, "swendsen-wang", backend="array_api_strict", kernel="fast")
    with pytest.raises(ValueError, match="Lx, Ly >= 2"):
        sw.open_bonds(np.ones((1, 1, 4), np.int8), step=0, threshold=1, seed=0, streams=np.zeros(1, np.uint32))
    with pytest.raises(TypeError, match="int8"):
        fused.swendsen_wang_sweeps(np.ones((1, 4, 4), np.int32), 1, steps=0, threshold=1, seed=0,
                                   streams=np.zeros(1, np.uint32))
    with pytest.raises(ValueError, match="beta"):
        sw.bond_threshold(-1.0)


# ------------------------------------------------------------------------------------------
# exact distribution and detailed balance on tiny tori
# ------------------------------------------------------------------------------------------
def chi2_bins(p, n_samples, min_expected=20.0):
    """Bins for a chi-square test: states of equal weight (an energy level) are dealt round-robin
    into as many sub-bins as keep >= ``min_expected`` counts each; levels too rare for one bin are
    pooled. Returns the bin of every state and the expected count of every bin."""
    level = np.unique(np.round(p / p.max(), 12), return_inverse=True)[1]
    bins = np.empty(p.size, np.int64)
    nb, pool = 0, []
    for lv in range(level.max() + 1):
        idx = np.flatnonzero(level == lv)
        expect = p[idx].sum() * n_samples
        k = min(int(expect // min_expected), idx.size)
        if k == 0:
            pool.append(idx)
            continue
        bins[idx] = nb + np.arange(idx.size) % k
        nb += k
    if pool:
        bins[np.concatenate(pool)] = nb
        nb += 1
    return bins, np.bincount(bins, weights=p, minlength=nb) * n_samples


def sample_states(L, beta, replicas, n_therm, seed):
    """One state per replica after ``n_therm`` updates from the random start: independent samples."""
    sim = isingcore.Simulation(L, beta, "swendsen-wang", seed=seed, replicas=replicas)
    sim.updater.record_improved = False
    sim.sweep(n_therm)
    return state_index(sim.spins)


@pytest.mark.parametrize("L,beta", [(3, KC), (3, 0.3), (3, 0.9), (4, KC), (4, 0.3)])
def test_visited_states_follow_boltzmann(L, beta):
    M = 100_000
    idx = sample_states(L, beta, M, n_therm=20, seed=100 + L)
    _, p = exact.boltzmann_weights(beta, L, L)
    bins, expected = chi2_bins(p, M)
    observed = np.bincount(bins[idx], minlength=expected.size)
    res = stats.chisquare(observed, expected)
    assert res.pvalue > 1e-4, f"chi2 = {res.statistic:.1f} for {expected.size - 1} dof"
    # the test has power: a 5 % error in beta is rejected on the same sample
    _, p_wrong = exact.boltzmann_weights(beta * 1.05, L, L)
    bins_w, expected_w = chi2_bins(p_wrong, M)
    assert stats.chisquare(np.bincount(bins_w[idx], minlength=expected_w.size), expected_w).pvalue < 1e-6


def test_exact_transition_probability_satisfies_detailed_balance():
    """The closed-form T(s -> s') (module function) is reversible w.r.t. the Boltzmann weights."""
    states, p = exact.boltzmann_weights(0.4, 2, 3)
    rs = np.random.default_rng(3)
    for a, b in rs.integers(0, len(p), size=(12, 2)):
        tab = sw.transition_probability(states[a], states[b], beta=0.4, realised=False)
        tba = sw.transition_probability(states[b], states[a], beta=0.4, realised=False)
        assert p[a] * tab == pytest.approx(p[b] * tba, rel=1e-12, abs=1e-300)
    # rows sum to one
    row = [sw.transition_probability(states[5], s, beta=0.4) for s in states]
    assert sum(row) == pytest.approx(1.0, rel=1e-12)


def one_step_counts(start, beta, M, seed):
    """Final-state histogram of one update from ``start``, over M independent streams."""
    Lx, Ly = start.shape
    sim = isingcore.Simulation((Lx, Ly), beta, "swendsen-wang", seed=seed, replicas=M, start=start)
    sim.updater.record_improved = False
    sim.sweep(1)
    return np.bincount(state_index(sim.spins), minlength=2 ** (Lx * Ly))


@pytest.mark.parametrize("beta", [0.3, KC])
def test_detailed_balance_of_one_update(beta):
    """Measured T on the 3x3 torus: p(a) T(a->b) = p(b) T(b->a) and T(a->b) equals the exact value.

    The pairs (a, b) are chosen from a pilot run with another seed (no selection bias), as the
    likeliest transitions in the rarer direction; each frequency is binomial, so the z-scores use
    the binomial variances.
    """
    states, p = exact.boltzmann_weights(beta, 3, 3)
    rs = np.random.default_rng(11)
    M = 100_000
    starts = rs.integers(0, 512, size=3)
    z_db, z_exact, n_pairs = [], [], 0
    for a in starts:
        pilot = one_step_counts(states[a], beta, 5000, seed=1)
        pilot[a] = 0
        score = pilot * np.minimum(1.0, p[a] / p)  # ~ the rarer of the two directions
        for b in np.argsort(score)[::-1][:2]:
            fab = one_step_counts(states[a], beta, M, seed=2)[b] / M
            fba = one_step_counts(states[b], beta, M, seed=3)[a] / M
            assert fab * M > 200 and fba * M > 200
            lhs, rhs = p[a] * fab, p[b] * fba
            err = np.hypot(p[a] * np.sqrt(fab * (1 - fab) / M), p[b] * np.sqrt(fba * (1 - fba) / M))
            z_db.append((lhs - rhs) / err)
            tab = sw.transition_probability(states[a], states[b], beta=beta)
            z_exact.append((fab - tab) / np.sqrt(tab * (1 - tab) / M))
            n_pairs += 1
    assert n_pairs == 6
    assert np.all(np.abs(z_db) < 4), z_db
    assert np.all(np.abs(z_exact) < 4), z_exact


# ------------------------------------------------------------------------------------------
# statistics against exact results
# ------------------------------------------------------------------------------------------
R = 32


def sample_series(L, K, n_therm, n_meas, seed):
    sim = isingcore.Simulation(L, K, "swendsen-wang", seed=seed, replicas=R)
    e, m = energy_magnetization_series(sim, n_therm, n_meas, lambda s: s.updater.reset())
    return e, m, sim.updater.improved_series()


@pytest.mark.parametrize("K", [KC, 0.35, 0.55])
@pytest.mark.parametrize("L", [8, 16, 32])
def test_energy_specific_heat_and_moments_match_exact(L, K):
    e, m, imp = sample_series(L, K, n_therm=200, n_meas=2000, seed=17 + L)
    ref = exact.kaufman_torus(K, L)
    check("energy", gamma_method(e), ref.energy)
    check("specific heat", specific_heat(e, K, L * L), ref.specific_heat)
    # improved estimators, each update's clusters (recorded before the flips of that update)
    m2_direct, m2_imp = gamma_method(m**2), gamma_method(imp["m2"])
    z = (m2_direct.mean - m2_imp.mean) / np.hypot(m2_direct.error, m2_imp.error)
    assert abs(z) < 4, f"<m^2>: direct {m2_direct} vs improved {m2_imp}"
    m4_direct, m4_imp = gamma_method(m**4), gamma_method(imp["m4"])
    z = (m4_direct.mean - m4_imp.mean) / np.hypot(m4_direct.error, m4_imp.error)
    assert abs(z) < 4, f"<m^4>: direct {m4_direct} vs improved {m4_imp}"
    assert m2_imp.error < m2_direct.error
    if L == 8:
        mm = exact.magnetization_moments(K, L)
        check("<m^2>", m2_direct, mm.m2)
        check("<m^4>", m4_direct, mm.m4)
        check("<m^2> improved", m2_imp, mm.m2)
        check("<m^4> improved", m4_imp, mm.m4)


def test_a_wrong_temperature_is_detected():
    """The same comparison at a coupling off by 2 % fails: the test has power."""
    e, m, imp = sample_series(16, KC * 1.02, n_therm=200, n_meas=2000, seed=3)
    ref = exact.kaufman_torus(KC, 16)
    assert abs(gamma_method(e).mean - ref.energy) / gamma_method(e).error > 8
    mm = exact.magnetization_moments(KC, 8)
    e8, m8, imp8 = sample_series(8, KC * 1.02, n_therm=200, n_meas=2000, seed=4)
    est = gamma_method(imp8["m2"])
    assert abs(est.mean - mm.m2) / est.error > 4


@pytest.mark.slow
@pytest.mark.parametrize("L", [64, 128])
def test_energy_at_kc_larger_lattices(L):
    e, m, imp = sample_series(L, KC, n_therm=300, n_meas=2000, seed=5 + L)
    ref = exact.kaufman_torus(KC, L)
    check("energy", gamma_method(e), ref.energy)
    check("specific heat", specific_heat(e, KC, L * L), ref.specific_heat)


# ------------------------------------------------------------------------------------------
# CUDA kernels under the simulator (one subprocess; the pattern of tests/test_cuda_kernels.py)
# ------------------------------------------------------------------------------------------
SIM_SCRIPT = textwrap.dedent(
    r"""
    import json, sys, warnings
    import numpy as np
    warnings.simplefilter("ignore")  # the simulator warns about itself
    from numba.cuda.core import config
    assert config.ENABLE_CUDASIM, "the simulator is not enabled"
    from isingcore.backends.cuda import swendsen_wang as G

    job = json.load(open(sys.argv[1]))
    out = {"simulator": G.SIMULATOR}
    for c in job["cases"]:
        spins = np.array(c["spins"], dtype=np.int8)
        G.MAX_GRID_Y = c.get("max_grid_y") or 65535
        res, m2, m4 = G.swendsen_wang_sweeps(spins, c["n"], steps=c["steps"], threshold=c["T"], seed=c["seed"],
                                             streams=np.array(c["streams"], dtype=np.uint32), tile=c["tile"])
        out[c["id"]] = {"spins": res.tolist(), "m2": m2.tolist(), "m4": m4.tolist()}
    print(json.dumps(out))
    """
)

# (replicas, Lx, Ly), tile, steps: several tiles with partial ones (odd sizes), a tile larger than
# the lattice, the default tile, 1x1 tiles (every bond crosses a tile), the replica loop of the
# kernels (grid y = 1), per-replica steps across the 2**32 boundary
SIM_CASES = {
    "8x8-tiles4x4": ((2, 8, 8), (4, 4), 0, None),
    "5x7-tiles2x4": ((1, 5, 7), (2, 4), 2**32 - 1, None),
    "3x3-tile4x4": ((2, 3, 3), (4, 4), 7, None),
    "6x8-default-tile": ((1, 6, 8), None, 3, None),
    "2x2-tiles1x1": ((2, 2, 2), (1, 1), 11, None),
    "7x6-replica-loop": ((3, 7, 6), (4, 2), [5, 2**32 - 2, 9], 1),
}
SIM_BETA = 0.42


@pytest.fixture(scope="module")
def cudasim(tmp_path_factory):
    """Run every simulator case in one subprocess; returns (cases, results)."""
    if importlib.util.find_spec("numba_cuda") is None:
        pytest.skip("numba-cuda is not installed (pip install numba-cuda; no GPU needed for the simulator)")
    cases = []
    for n, (name, (shape, tile, steps, gy)) in enumerate(SIM_CASES.items()):
        cases.append({"id": name, "spins": random_spins(shape, 50 + n).tolist(), "n": 2, "steps": steps,
                      "T": sw.bond_threshold(SIM_BETA), "seed": 1234 + n, "tile": tile, "max_grid_y": gy,
                      "streams": list(range(3, 3 + shape[0]))})
    job = tmp_path_factory.mktemp("cudasim_sw") / "job.json"
    job.write_text(json.dumps({"cases": cases}))
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-c", SIM_SCRIPT, str(job)], capture_output=True, text=True, env=env,
                          timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"simulator subprocess failed:\n{proc.stderr[-4000:]}")
    return {c["id"]: c for c in cases}, json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.cudasim
@pytest.mark.parametrize("name", list(SIM_CASES))
def test_cuda_kernels_match_reference_under_simulator(cudasim, name):
    cases, res = cudasim
    assert res["simulator"] is True
    c = cases[name]
    start = np.array(c["spins"], dtype=np.int8)
    want, m2, m4 = sw.swendsen_wang_sweeps(start.copy(), c["n"], steps=c["steps"], threshold=c["T"], seed=c["seed"],
                                           streams=np.array(c["streams"], dtype=np.uint32), xp=xnp)
    got = np.array(res[name]["spins"], dtype=np.int8)
    assert not np.array_equal(want, start), "the reference moved no spin: the case tests nothing"
    np.testing.assert_array_equal(got, np.asarray(want))
    np.testing.assert_allclose(np.array(res[name]["m2"]), m2, rtol=1e-14)
    np.testing.assert_allclose(np.array(res[name]["m4"]), m4, rtol=1e-12)


STAT_SCRIPT = textwrap.dedent(
    r"""
    import json, sys, warnings
    import numpy as np
    warnings.simplefilter("ignore")
    from isingcore.backends.cuda import swendsen_wang as G
    from isingcore.mcmc.swendsen_wang import bond_threshold
    from isingcore.measure.observables import energy_per_site
    G.MAX_GRID_Y = 1  # one block loops over the replicas: far fewer simulated threads
    R, n, beta = 4, 80, float(sys.argv[1])  # chains long enough for the Gamma-method window
    s = np.where(np.random.default_rng(0).random((R, 3, 3)) < 0.5, 1, -1).astype(np.int8)
    e = np.empty((R, n))
    for t in range(n):
        s, _, _ = G.swendsen_wang_sweeps(s, 1, steps=t, threshold=bond_threshold(beta), seed=77,
                                         streams=np.arange(R, dtype=np.uint32), tile=(2, 2))
        e[:, t] = energy_per_site(s)
    print(json.dumps(e.tolist()))
    """
)


@pytest.mark.slow
@pytest.mark.cudasim
def test_cuda_kernels_statistics_under_simulator():
    """A small statistical check of the simulated GPU chain: energy levels of the 3x3 torus (chi-square)
    and the mean energy (Gamma method) against exact enumeration."""
    if importlib.util.find_spec("numba_cuda") is None:
        pytest.skip("numba-cuda is not installed")
    beta = 0.35
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-c", STAT_SCRIPT, str(beta)], capture_output=True, text=True, env=env,
                          timeout=1200)
    if proc.returncode != 0:
        pytest.fail(proc.stderr[-4000:])
    e = np.array(json.loads(proc.stdout.strip().splitlines()[-1]))[:, 3:]  # drop 3 updates of thermalisation
    check("energy (simulated GPU)", gamma_method(e), exact.enumerate_torus(beta, 3, 3).energy)
    states, p = exact.boltzmann_weights(beta, 3, 3)
    e_states = np.asarray(isingcore.measure.energy_per_site(states))
    levels, inv = np.unique(np.round(e_states, 9), return_inverse=True)
    p_level = np.bincount(inv, weights=p)
    observed = np.array([np.sum(np.isclose(e, lv)) for lv in levels])
    keep = p_level * e.size >= 5
    expected = np.append(p_level[keep], p_level[~keep].sum()) * e.size
    observed = np.append(observed[keep], observed[~keep].sum())
    if expected[-1] == 0:
        expected, observed = expected[:-1], observed[:-1]
    assert stats.chisquare(observed, expected).pvalue > 1e-4



L8_SCRIPT = SIMULATOR_L8_PREAMBLE + textwrap.dedent(
    r"""
    from isingcore.backends.cuda import swendsen_wang as G
    from isingcore.mcmc.swendsen_wang import bond_threshold
    G.MAX_GRID_Y = 1  # one block loops over the replicas: far fewer simulated threads
    t0 = time.perf_counter()
    s = np.where(np.random.default_rng(12).random((R, L, L)) < 0.5, 1, -1).astype(np.int8)
    kw = dict(threshold=bond_threshold(K), seed=2024, streams=np.arange(R, dtype=np.uint32), tile=(4, 4))
    s, _, _ = G.swendsen_wang_sweeps(s, n_therm, steps=0, **kw)  # all replicas in one launch per kernel
    e, m, m2_imp = np.empty((R, n_meas)), np.empty((R, n_meas)), np.empty((R, n_meas))
    for t in range(n_meas):  # one update per measurement; the steps continue the chains
        s, m2, _ = G.swendsen_wang_sweeps(s, 1, steps=n_therm + t, **kw)
        m2_imp[:, t] = m2[:, 0]
        e[:, t] = energy_per_site(s)
        m[:, t] = magnetization(s)
    print(json.dumps({"simulator": G.SIMULATOR, "e": e.tolist(), "m": m.tolist(), "m2_improved": m2_imp.tolist(),
                      "seconds": time.perf_counter() - t0}))
    """
)


@pytest.mark.slow
@pytest.mark.cudasim
def test_cuda_kernels_energy_and_m2_at_L8_under_simulator():
    """The CUDA kernels under the simulator on the 8x8 torus (4x4 tiles: bonds across tiles) at K_c:
    12 chains from random starts, 4 updates of thermalisation, then 40 updates, measured after each.
    The energy per site (Kaufman), <m^2> and the improved <m^2> (transfer matrix) agree with the exact
    values within 4 sigma (Gamma method, tau_int, replicas pooled), while the exact values at 0.9 K_c
    and 1.1 K_c are rejected by the same samples (|z| > 4; about 8 to 13 with these seeds)."""
    if importlib.util.find_spec("numba_cuda") is None:
        pytest.skip("numba-cuda is not installed (pip install numba-cuda; no GPU needed for the simulator)")
    L, K, R, n_therm, n_meas = 8, KC, 12, 4, 40
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-c", L8_SCRIPT, repr(K), str(R), str(n_therm), str(n_meas)],
                          capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode != 0:
        pytest.fail(f"simulator subprocess failed:\n{proc.stderr[-4000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["simulator"] is True
    e, m, m2_imp = (np.array(res[x]) for x in ("e", "m", "m2_improved"))
    assert e.shape == m.shape == m2_imp.shape == (R, n_meas)
    ref, mm = exact.kaufman_torus(K, L), exact.magnetization_moments(K, L)
    est = {"energy": gamma_method(e), "<m^2>": gamma_method(m**2), "<m^2> improved": gamma_method(m2_imp)}
    want = {"energy": ref.energy, "<m^2>": mm.m2, "<m^2> improved": mm.m2}
    for name, x in est.items():
        z = check(f"{name} (simulated GPU)", x, want[name])
        print(f"{name}: {x.mean:.4f} +- {x.error:.4f} (tau_int {x.tau_int:.2f}), exact {want[name]:.4f}, z = {z:+.2f}")
    for f in (0.9, 1.1):  # the same samples reject the exact values at a coupling 10 % off
        w_ref, w_mm = exact.kaufman_torus(f * K, L), exact.magnetization_moments(f * K, L)
        zs = (reject(f"energy vs {f} K", est["energy"], w_ref.energy), reject(f"<m^2> vs {f} K", est["<m^2>"], w_mm.m2))
        print(f"against the exact values at {f} K: z(energy) = {zs[0]:+.1f}, z(<m^2>) = {zs[1]:+.1f}")
    print(f"{res['seconds']:.0f} s in the simulator")


def test_cuda_module_without_device_is_importerror():
    """Simulation detects a missing CUDA setup by ImportError (then uses the reference on CuPy)."""
    assert_import_is_importerror_without_device("isingcore.backends.cuda.swendsen_wang")


PTX_SIGS = r"""
    from isingcore.backends.cuda import swendsen_wang as G
    i8, u8, i32, u32a, u64a, i64, u32 = (T.int8[::1], T.uint8[::1], T.int32[::1], T.uint32[::1], T.uint64[::1],
                                         T.int64, T.uint32)
    K = G.kernels(G.TILE)
    sigs = {
        "local": (K["local"], (i8, u8, i32, i32, i64, i64, i64, i64, u32, u32a, u64a, i64)),
        "boundary": (K["boundary"], (u8, i32, i64, i64, i64, i64)),
        "roots": (G._roots_kernel, (i32, i32, i64)),
        "flip": (G._flip_kernel, (i8, i32, i32, i64, u32, u32a, u64a, i64, T.float64[:, :, ::1])),
    }
    """


def test_cuda_kernels_compile_for_sm90():
    """The kernels type-check and lower to PTX for sm_90 (the simulator does not type-check):
    Philox with 32-bit high multiplies, float64 only in the flip kernel's sums of cluster sizes."""
    res = compile_ptx(PTX_SIGS)
    for name in ("local", "boundary", "roots"):
        assert ".f64" not in res[name], f"{name}: float64 in the kernel"
    for name in ("local", "flip"):
        assert res[name].count("mul.hi.u32") >= 20, f"{name}: Philox does not use 32-bit high multiplies"
    assert "atom.shared.min" in res["local"] or "atom.min" in res["local"]
    assert res["local"].count("bar.sync") >= 4


# ------------------------------------------------------------------------------------------
# real GPU
# ------------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(2, 64, 64), (1, 130, 72), (3, 33, 47)])
def test_gpu_kernel_matches_numba(shape):
    pytest.importorskip("cupy")
    import cupy

    from isingcore.backends.cuda import swendsen_wang as G

    s = random_spins(shape, 5)
    kw = dict(steps=2**32 - 2, threshold=sw.bond_threshold(KC), seed=21,
              streams=np.arange(shape[0], dtype=np.uint32))
    want, m2, m4 = fused.swendsen_wang_sweeps(s.copy(), 4, **kw)
    got, g2, g4 = G.swendsen_wang_sweeps(cupy.asarray(s), 4, **kw)
    np.testing.assert_array_equal(got.get(), want)
    np.testing.assert_array_equal(g2, m2)
    np.testing.assert_allclose(g4, m4, rtol=1e-12)


@pytest.mark.gpu
def test_gpu_simulation_matches_numpy():
    kw = dict(size=(96, 64), beta=KC, algorithm="swendsen-wang", seed=8, replicas=3, step=2**32 - 1)
    gpu = isingcore.Simulation(backend="cupy", **kw)
    cpu = isingcore.Simulation(backend="numpy", **kw)
    assert gpu.kernel == "fast"
    for n in (1, 3):
        gpu.sweep(n)
        cpu.sweep(n)
        np.testing.assert_array_equal(gpu.spins.get(), cpu.spins)
    np.testing.assert_array_equal(gpu.updater.improved_series()["m2"], cpu.updater.improved_series()["m2"])
