"""Monte Carlo RG (isingcore.measure.mcrg): operators, blocking, T = A^-1 B, exponents, errors."""

import math

import numpy as np
import pytest

from isingcore.measure import mcrg
from isingcore.measure.mcrg import COUPLINGS_3X3, coupling_set


def random_spins(rng, shape, p=0.5):
    return np.where(rng.random(shape) < p, 1, -1).astype(np.int8)


# ---------------------------------------------------------------------------------------------
# couplings
# ---------------------------------------------------------------------------------------------


def test_3x3_set_has_the_36_couplings_of_seed_003():
    assert len(COUPLINGS_3X3) == 36
    by_n = {k: sum(c.n_spins == k for c in COUPLINGS_3X3) for k in (1, 2, 3, 4)}
    assert by_n == {1: 1, 2: 5, 3: 10, 4: 20}
    assert sum(c.parity == "even" for c in COUPLINGS_3X3) == 25
    # even sector first, each sector ordered by number of spins then compactness
    assert [c.parity for c in COUPLINGS_3X3] == ["even"] * 25 + ["odd"] * 11
    assert [c.name for c in COUPLINGS_3X3[:6]] == ["00-01", "00-11", "00-02", "00-12", "00-22", "00-01-10-11"]
    assert [c.name for c in COUPLINGS_3X3[25:27]] == ["00", "00-01-10"]
    assert len({c.shape for c in COUPLINGS_3X3}) == 36


def test_orientations_form_a_d4_orbit():
    nn = mcrg.Coupling.from_offsets([(0, 0), (1, 0)])
    assert nn.name == "00-01" and len(nn.orientations) == 2
    assert len(mcrg.Coupling.from_offsets([(0, 0), (1, 1)]).orientations) == 2
    assert len(mcrg.Coupling.from_offsets([(0, 0), (2, 1)]).orientations) == 4
    assert len(mcrg.Coupling.from_offsets([(0, 0), (1, 0), (0, 1), (1, 1)]).orientations) == 1
    assert len(mcrg.Coupling.from_offsets([(0, 0), (1, 0), (0, 1)]).orientations) == 4
    # any image of a cluster gives the same coupling
    assert mcrg.Coupling.from_offsets([(5, 5), (4, 6)]) == mcrg.Coupling.from_offsets([(0, 0), (1, 1)])


def test_coupling_sets():
    m = coupling_set("minimal")
    assert [c.name for c in m] == ["00-01", "00-11", "00-02", "00-01-10-11", "00", "00-01-10"]
    assert coupling_set("3x3", n_even=2, n_odd=1) == (COUPLINGS_3X3[0], COUPLINGS_3X3[1], COUPLINGS_3X3[25])
    assert coupling_set(["00", [(0, 0), (0, 1)]]) == (COUPLINGS_3X3[0], COUPLINGS_3X3[25])
    with pytest.raises(ValueError, match="couplings"):
        coupling_set("nearest")
    with pytest.raises(ValueError, match="n_odd"):
        coupling_set("minimal", n_odd=3)
    with pytest.raises(ValueError, match="twice"):
        coupling_set(["00-01", [(0, 0), (1, 0)]])


# ---------------------------------------------------------------------------------------------
# operator densities
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 1, 1), (2, 2, 3), (4, 3, 5), (5, 8, 8), (2, 6, 10)])
def test_fast_kernel_matches_reference_exactly(shape):
    rng = np.random.default_rng(sum(shape))
    s = random_spins(rng, shape, 0.6)
    ref = mcrg.operator_densities(s, "3x3", kernel="reference")
    fast = mcrg.operator_densities(s, "3x3", kernel="fast")
    assert fast.shape == ref.shape == shape[:1] + (36,)
    assert np.array_equal(fast, ref)


def test_reference_runs_on_array_api_strict():
    xps = pytest.importorskip("array_api_strict")
    rng = np.random.default_rng(3)
    s = random_spins(rng, (2, 8, 8))
    got = mcrg.operator_densities(xps.asarray(s), "3x3")
    assert type(got).__module__.startswith("array_api_strict")
    assert got.dtype == xps.float64
    assert np.array_equal(np.asarray(got), mcrg.operator_densities(s, "3x3"))
    d = mcrg.mcrg_densities(xps.asarray(s), 1, "minimal", seed=4)
    assert np.array_equal(np.asarray(d), mcrg.mcrg_densities(s, 1, "minimal", seed=4))


def test_known_configurations():
    up = np.ones((8, 8), np.int8)
    assert np.all(mcrg.operator_densities(up, "3x3") == 1.0)
    x, y = np.indices((8, 8))
    neel = np.where((x + y) % 2, -1, 1).astype(np.int8)
    d = dict(zip([c.name for c in COUPLINGS_3X3], mcrg.operator_densities(neel, "3x3")))
    assert d["00-01"] == -1 and d["00-11"] == 1 and d["00-02"] == 1 and d["00-12"] == -1
    assert d["00-01-10-11"] == 1 and d["00"] == 0 and d["00-01-10"] == 0
    stripes = np.where(x % 2, -1, 1).astype(np.int8)  # alternating rows: c10x = -1, c10y = +1
    d = dict(zip([c.name for c in COUPLINGS_3X3], mcrg.operator_densities(stripes, "3x3")))
    assert d["00-01"] == 0 and d["00-11"] == -1 and d["00-02"] == 1


def test_nearest_neighbour_density_is_the_mean_bond_correlation():
    from isingcore.measure import nn_correlations

    s = random_spins(np.random.default_rng(5), (4, 10, 6), 0.7)
    c10x, c10y = nn_correlations(s)
    d = mcrg.operator_densities(s, "minimal")
    np.testing.assert_allclose(d[:, 0], (c10x + c10y) / 2, rtol=0, atol=1e-15)
    np.testing.assert_allclose(d[:, 4], s.mean(axis=(-2, -1)), rtol=0, atol=1e-15)


# ---------------------------------------------------------------------------------------------
# blocking levels
# ---------------------------------------------------------------------------------------------


def test_levels_use_majority_rule_with_level_counters():
    from isingcore.rg.coarse import majority_rule

    s = random_spins(np.random.default_rng(6), (3, 16, 16))
    lv = mcrg.block_spin_levels(s, 2, seed=9, streams=[4, 5, 6])
    assert [a.shape for a in lv] == [(3, 16, 16), (3, 8, 8), (3, 4, 4)]
    one = majority_rule(s, 2, seed=9, streams=[4, 5, 6], step=0)
    assert np.array_equal(lv[1], one)
    assert np.array_equal(lv[2], majority_rule(one, 2, seed=9, streams=[4, 5, 6], step=1))
    # batching does not matter when the streams are global indices
    part = mcrg.mcrg_densities(s[1:], 2, "3x3", seed=9, streams=[5, 6])
    assert np.array_equal(part, mcrg.mcrg_densities(s, 2, "3x3", seed=9, streams=[4, 5, 6])[1:])


def test_lattice_too_small_for_levels_names_the_parameter():
    s = np.ones((2, 16, 16), np.int8)
    with pytest.raises(ValueError, match=r"levels=3 .* use levels <= 2"):
        mcrg.mcrg_densities(s, 3)
    with pytest.raises(ValueError, match="levels"):
        mcrg.block_spin_levels(np.ones((12, 12), np.int8), 2)  # 12 -> 6 -> 3 < 4
    with pytest.raises(ValueError, match="levels"):
        mcrg.block_spin_levels(s, 0)
    with pytest.raises(ValueError, match="b "):
        mcrg.block_spin_levels(s, 1, b=1)


# ---------------------------------------------------------------------------------------------
# the linearised transformation
# ---------------------------------------------------------------------------------------------


def synthetic(rng, couplings, V, n=4000, R=4, b=2, mix=None):
    """Densities whose level-0 operators are exactly linear in the level-1 ones: x = y V^T / b^d."""
    P = len(couplings)
    if mix is None:
        mix = rng.normal(size=(P, P))
    y = rng.normal(size=(R, n, P)) @ mix.T + 0.3
    x = y @ V.T / b**2
    return np.stack([x, y], axis=2)


def test_known_T_from_exactly_linear_operators():
    rng = np.random.default_rng(7)
    cs = coupling_set("3x3", n_even=3, n_odd=2)
    lam_e = np.array([2.0, 0.6, 0.25])
    lam_o = np.array([3.668, 0.4])
    Qe, Qo = rng.normal(size=(3, 3)), rng.normal(size=(2, 2))
    V = np.zeros((5, 5))
    V[:3, :3] = Qe @ np.diag(lam_e) @ np.linalg.inv(Qe)
    V[3:, 3:] = Qo @ np.diag(lam_o) @ np.linalg.inv(Qo)
    d = synthetic(rng, cs, V)
    for z2 in (True, False):
        r = mcrg.mcrg_exponents(d, cs, level=0, z2_symmetric=z2)
        np.testing.assert_allclose(r.T_even, V[:3, :3].T, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(r.T_odd, V[3:, 3:].T, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose([e.mean for e in r.eigenvalues_even], lam_e, rtol=1e-9)
        np.testing.assert_allclose([e.mean for e in r.eigenvalues_odd], lam_o, rtol=1e-9)
        assert max(e.error for e in r.eigenvalues_even + r.eigenvalues_odd) < 1e-9  # exact in every sample
        assert r.y_t.mean == pytest.approx(1.0, abs=1e-9)
        assert r.y_h.mean == pytest.approx(math.log2(3.668), abs=1e-9)
        assert r.max_imag_even == 0.0


def test_eigenvalues_do_not_depend_on_operator_normalisation():
    rng = np.random.default_rng(8)
    s = random_spins(rng, (600, 16, 16), 0.5)
    cs = coupling_set("3x3", n_even=6, n_odd=4)
    d = mcrg.mcrg_densities(s, 2, cs, seed=1)
    r0 = mcrg.mcrg_exponents(d, cs, level=1, n_bins=20)
    c = rng.uniform(0.1, 10.0, size=len(cs)) * rng.choice([-1, 1], size=len(cs))
    r1 = mcrg.mcrg_exponents(d * c, cs, level=1, n_bins=20)  # same constant at every level
    for a, b in zip(r0.eigenvalues_even + r0.eigenvalues_odd, r1.eigenvalues_even + r1.eigenvalues_odd):
        assert b.mean == pytest.approx(a.mean, rel=1e-9, abs=1e-12)
        assert b.error == pytest.approx(a.error, rel=1e-6, abs=1e-12)
    # feeding extensive sums (density x number of sites, which shrinks by b^d per level) where
    # densities are expected counts the b^d factor twice: every eigenvalue comes out 4 times too large
    n_sites = np.array([256.0, 64.0, 16.0])[None, :, None]
    r2 = mcrg.mcrg_exponents(d * n_sites, cs, level=1, n_bins=20)
    np.testing.assert_allclose([e.mean for e in r2.eigenvalues_even], [4 * e.mean for e in r0.eigenvalues_even],
                               rtol=1e-9)


def test_z2_sectors_decouple_on_symmetric_data():
    rng = np.random.default_rng(9)
    s = random_spins(rng, (100, 16, 16), 0.7)  # strongly magnetised: not symmetric by itself
    both = np.concatenate([s, -s])
    streams = np.concatenate([np.arange(100), np.arange(100)])  # the flipped copy sees the same tie draws
    cs = coupling_set("3x3")
    d = mcrg.mcrg_densities(both, 2, cs, seed=3, streams=streams)
    odd = np.array([c.parity == "odd" for c in cs])
    assert np.array_equal(d[100:][..., odd], -d[:100][..., odd])
    assert np.array_equal(d[100:][..., ~odd], d[:100][..., ~odd])
    for level in (0, 1):
        A, B = mcrg.connected_matrices(d, level, cs, z2_symmetric=False)
        for M in (A, B):
            assert np.max(np.abs(M[np.ix_(odd, ~odd)])) < 1e-15
            assert np.max(np.abs(M[np.ix_(~odd, odd)])) < 1e-15
            assert np.max(np.abs(M[np.ix_(~odd, ~odd)])) > 1e-3
        # the symmetric estimator is exact here: <odd> = 0
        A2, B2 = mcrg.connected_matrices(d, level, cs, z2_symmetric=True)
        np.testing.assert_allclose(A2, A, atol=1e-15)
        np.testing.assert_allclose(B2, B, atol=1e-15)
    # without symmetrisation the cross blocks are not zero on this data
    A, _ = mcrg.connected_matrices(d[:100], 0, cs, z2_symmetric=False)
    assert np.max(np.abs(A[np.ix_(odd, ~odd)])) > 1e-4


def test_jackknife_error_matches_the_spread_of_independent_runs():
    """Synthetic Gaussian data with a noisy linear relation: jackknife error vs. scatter over runs."""
    rng = np.random.default_rng(10)
    cs = coupling_set("3x3", n_even=2, n_odd=0)
    V = np.array([[1.8, 0.3], [0.1, 0.5]])
    mix = np.array([[1.0, 0.4], [0.2, 0.7]])
    vals, errs = [], []
    for _ in range(40):
        d = synthetic(rng, cs, V, n=500, R=2, mix=mix)
        d[:, :, 0] += 0.05 * rng.normal(size=d[:, :, 0].shape)
        r = mcrg.mcrg_exponents(d, cs, level=0, n_bins=20)
        vals.append(r.eigenvalues_even[0].mean)
        errs.append(r.eigenvalues_even[0].error)
    ratio = np.std(vals, ddof=1) / np.mean(errs)
    assert 0.6 < ratio < 1.5


def test_bad_input_names_the_parameter():
    cs = coupling_set("minimal")
    d = np.random.default_rng(0).normal(size=(2, 50, 3, 6))
    with pytest.raises(ValueError, match="level"):
        mcrg.mcrg_exponents(d, cs, level=2)
    with pytest.raises(ValueError, match="n_bins"):
        mcrg.mcrg_exponents(d, cs, level=0, n_bins=5)
    with pytest.raises(ValueError, match="densities"):
        mcrg.mcrg_exponents(d[..., 0], cs)
    with pytest.raises(ValueError, match="couplings"):
        mcrg.mcrg_exponents(d, coupling_set("3x3"))
    with pytest.raises(ValueError, match="n_even"):
        mcrg.mcrg_exponents(d, cs, n_even=5)
    with pytest.raises(ValueError, match="kernel"):
        mcrg.operator_densities(np.ones((4, 4), np.int8), kernel="gpu")
    with pytest.raises(np.linalg.LinAlgError, match="singular"):
        const = np.ones((1, 50, 3, 6))
        mcrg.mcrg_exponents(const, cs, level=0)


def test_measure_ensemble_by_chain_and_independent_of_block(tmp_path):
    from isingcore.io import EnsembleWriter, open_ensemble

    rng = np.random.default_rng(11)
    attrs = dict(algorithm="wolff", beta=0.44068679350977151, J=1.0, h=0.0, Lx=16, Ly=16, seed=1,
                 thermalization=10, spacing=1, backend="numpy")
    spins = random_spins(rng, (12, 16, 16))
    chain = np.array([1, 0] * 6)
    step = np.repeat(np.arange(6), 2)
    with EnsembleWriter.create(tmp_path / "e.h5", attrs) as w:
        w.append(spins, None, chain, step)
    d1, cs = mcrg.mcrg_ensemble_densities(tmp_path / "e.h5", levels=2, couplings="minimal", seed=2, block=5)
    d2, _ = mcrg.mcrg_ensemble_densities(tmp_path / "e.h5", levels=2, couplings="minimal", seed=2, block=64)
    assert d1.shape == (2, 6, 3, 6) and np.array_equal(d1, d2)
    full = mcrg.mcrg_densities(spins, 2, cs, seed=2, streams=np.arange(12))
    assert np.array_equal(d1[0], full[1::2]) and np.array_equal(d1[1], full[0::2])
    with open_ensemble(tmp_path / "e.h5") as e:
        d3, _ = mcrg.mcrg_ensemble_densities(e, couplings="minimal", seed=2)
    assert d3.shape == (2, 6, 3, 6)


@pytest.mark.slow
def test_critical_wolff_ensemble_gives_ising_exponents():
    """A small Wolff ensemble at K_c, L = 32: T^(1) (16^2 -> 8^2) gives y_h and y_t near 15/8 and 1."""
    from isingcore.simulation import Simulation

    sim = Simulation(32, algorithm="wolff", replicas=8, seed=5)
    sim.sweep(50)
    confs = []
    for _ in range(300):
        sim.sweep(2)
        confs.append(np.asarray(sim.spins).copy())
    s = np.stack(confs, axis=1)  # (R, N, L, L)
    R, N = s.shape[:2]
    d = mcrg.mcrg_densities(s.reshape(R * N, 32, 32), 2, "minimal", seed=1).reshape(R, N, 3, 6)
    r = mcrg.mcrg_exponents(d, "minimal", level=1)
    assert abs(r.y_h.mean - 1.875) < max(0.01, 4 * r.y_h.error)
    assert abs(r.y_t.mean - 1.0) < max(0.08, 4 * r.y_t.error)
