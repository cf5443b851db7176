"""Tests of isingcore.measure.correlations: G(r), S(k), xi_2nd, tiles, ensembles.

Known answers: brute-force loops on small (odd, even, non-square) lattices; independent random
spins (G = delta_{r0}, S = 1, no anisotropy); the ordered lattice (G = 1, S = N delta_{k0}); the
checkerboard (G = (-1)^{dx+dy}, exact for tiles of any size); exact enumeration of the 4x4 torus
at K_c (weighted averages equal the exact values; iid samples from the exact distribution give
estimates within their errors); array-api-strict agreeing with NumPy; clear errors.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from backend_testing import as_np, on

from isingcore import exact
from isingcore._array import namespace, to_numpy
from isingcore.constants import K_C
from isingcore.measure import (
    correlation_along_axes,
    correlation_along_diagonals,
    correlation_function,
    correlation_map,
    diagonal_correlation,
    magnetization,
    nn_correlations,
    second_moment_correlation_length,
    second_moment_xi,
    shell_average,
    structure_factor,
    structure_factor_ensemble,
    tiled_correlation,
    wavevectors,
)


def random_spins(rng, shape):
    return rng.choice(np.array([-1, 1], dtype=np.int8), size=shape)


# ---------------------------------------------------------------------------------------------
# Brute-force references
# ---------------------------------------------------------------------------------------------


def brute_map(s):
    """C(dx, dy) by explicit loops over sites and displacements (periodic)."""
    Lx, Ly = s.shape
    out = np.zeros((Lx, Ly))
    for dx in range(Lx):
        for dy in range(Ly):
            tot = 0
            for i in range(Lx):
                for j in range(Ly):
                    tot += int(s[i, j]) * int(s[(i + dx) % Lx, (j + dy) % Ly])
            out[dx, dy] = tot / (Lx * Ly)
    return out


def brute_structure_factor(s):
    Lx, Ly = s.shape
    out = np.zeros((Lx, Ly))
    for a in range(Lx):
        for b in range(Ly):
            amp = 0j
            for i in range(Lx):
                for j in range(Ly):
                    amp += s[i, j] * np.exp(-2j * np.pi * (a * i / Lx + b * j / Ly))
            out[a, b] = abs(amp) ** 2 / (Lx * Ly)
    return out


def brute_open_pairs(s, direction, r_max):
    """Mean of s_x s_{x+d} over pairs with both sites inside the (non-periodic) lattice."""
    Lx, Ly = s.shape
    out = []
    for n in range(r_max + 1):
        if direction == "x":
            disp = [(n, 0)]
        elif direction == "y":
            disp = [(0, n)]
        elif direction == "axes":
            disp = [(n, 0), (0, n)]
        else:
            disp = [(n, n), (n, -n)]
        vals = []
        for dx, dy in disp:
            prods = [int(s[i, j]) * int(s[i + dx, j + dy]) for i in range(Lx) for j in range(Ly)
                     if 0 <= i + dx < Lx and 0 <= j + dy < Ly]
            vals.append(np.mean(prods))
        out.append(np.mean(vals))
    return np.array(out)


@pytest.mark.parametrize("shape", [(6, 6), (5, 5), (7, 4), (4, 9), (2, 3)])
def test_map_and_structure_factor_against_loops(shape, backend):
    rng = np.random.default_rng(sum(shape))
    s = random_spins(rng, (2,) + shape)
    c = as_np(correlation_map(on(backend, s)))
    S = as_np(structure_factor(on(backend, s)))
    for b in range(2):
        np.testing.assert_array_equal(c[b], brute_map(s[b]))  # exact: pair sums are rounded integers
        np.testing.assert_allclose(S[b], brute_structure_factor(s[b]), atol=1e-12)
    Lx, Ly = shape
    cm = brute_map(s[0])
    ax = as_np(correlation_along_axes(on(backend, s[0])))
    r = np.arange(min(Lx, Ly) // 2 + 1)
    np.testing.assert_allclose(ax, 0.5 * (cm[r, 0] + cm[0, r]))
    np.testing.assert_allclose(as_np(correlation_along_axes(on(backend, s[0]), axis="x")), cm[: Lx // 2 + 1, 0])
    np.testing.assert_allclose(as_np(correlation_along_axes(on(backend, s[0]), axis="y")), cm[0, : Ly // 2 + 1])
    dg = as_np(correlation_along_diagonals(on(backend, s[0])))
    np.testing.assert_allclose(dg, 0.5 * (cm[r % Lx, r % Ly] + cm[r % Lx, (-r) % Ly]))


def test_batched_leading_axes_and_consistency_with_observables(backend):
    rng = np.random.default_rng(3)
    s = random_spins(rng, (2, 3, 8, 10))
    c = as_np(correlation_map(on(backend, s)))
    assert c.shape == (2, 3, 8, 10)
    m = as_np(magnetization(on(backend, s)))
    # C(0) = 1, sum_d C(d) = N m^2, C(1,0) = c10x, C(0,1) = c10y, D(1) = c11
    np.testing.assert_array_equal(c[..., 0, 0], 1.0)
    np.testing.assert_allclose(c.sum(axis=(-2, -1)), 80 * m**2, atol=1e-12)
    c10x, c10y = (as_np(v) for v in nn_correlations(on(backend, s)))
    np.testing.assert_allclose(c[..., 1, 0], c10x, atol=1e-15)
    np.testing.assert_allclose(c[..., 0, 1], c10y, atol=1e-15)
    d = as_np(correlation_along_diagonals(on(backend, s), n_max=2))
    assert d.shape == (2, 3, 3)
    np.testing.assert_allclose(d[..., 1], as_np(diagonal_correlation(on(backend, s))), atol=1e-15)
    # the fluctuation form subtracts m^2 per configuration and sums to zero over the torus
    f = as_np(correlation_map(on(backend, s), form="fluctuation"))
    np.testing.assert_allclose(f, c - (m**2)[..., None, None], atol=1e-15)
    np.testing.assert_allclose(f.sum(axis=(-2, -1)), 0.0, atol=1e-12)
    fa = as_np(correlation_along_axes(on(backend, s), r_max=3, form="fluctuation"))
    np.testing.assert_allclose(fa, as_np(correlation_along_axes(on(backend, s), r_max=3)) - (m**2)[..., None])
    # sum rule of S: mean over k is C(0) = 1; S(0) = N m^2
    S = as_np(structure_factor(on(backend, s)))
    np.testing.assert_allclose(S.mean(axis=(-2, -1)), 1.0, atol=1e-12)
    np.testing.assert_allclose(S[..., 0, 0], 80 * m**2, atol=1e-10)


def test_wider_integer_dtypes():
    rng = np.random.default_rng(4)
    s = random_spins(rng, (2, 6, 6))
    for dt in (np.int16, np.int32, np.int64):
        np.testing.assert_array_equal(correlation_map(s.astype(dt)), correlation_map(s))
        np.testing.assert_array_equal(tiled_correlation(s.astype(dt), 3, 2).mean, tiled_correlation(s, 3, 2).mean)


def test_array_api_strict_agrees_with_numpy():
    rng = np.random.default_rng(11)
    s = random_spins(rng, (3, 12, 9))
    xps = namespace("array_api_strict")
    for fn in (correlation_map, structure_factor, correlation_along_axes, correlation_along_diagonals):
        a = fn(s)
        b = fn(xps.asarray(s))
        assert type(b).__module__.startswith("array_api_strict")
        assert tuple(b.shape) == a.shape
        np.testing.assert_allclose(as_np(b), a, atol=1e-12)
    for direction in ("x", "y", "axes", "diagonal"):
        t_np = tiled_correlation(s, 4, 3, direction)
        t_st = tiled_correlation(xps.asarray(s), 4, 3, direction)
        np.testing.assert_allclose(as_np(t_st.mean), t_np.mean, atol=1e-12)
        np.testing.assert_allclose(as_np(t_st.tile_error), t_np.tile_error, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Known answers
# ---------------------------------------------------------------------------------------------


def test_ordered_lattice(backend):
    s = np.ones((2, 8, 6), dtype=np.int8)
    s[1] = -1
    np.testing.assert_array_equal(as_np(correlation_map(on(backend, s))), 1.0)
    np.testing.assert_array_equal(as_np(correlation_map(on(backend, s), form="fluctuation")), 0.0)
    S = as_np(structure_factor(on(backend, s)))
    expect = np.zeros((8, 6))
    expect[0, 0] = 48.0
    np.testing.assert_allclose(S, np.broadcast_to(expect, S.shape), atol=1e-10)
    t = tiled_correlation(on(backend, s), 3, 2, "diagonal")
    np.testing.assert_array_equal(as_np(t.mean), 1.0)
    np.testing.assert_array_equal(as_np(t.tile_error), 0.0)
    assert t.n_tiles == 2 * 2


def test_ordered_ensemble():
    s = np.ones((10, 8, 8), dtype=np.int8)
    s[::2] = -1
    for form in ("full", "connected", "fluctuation"):
        cf = correlation_function(s, "diagonal", form=form)
        want = {"full": 1.0, "connected": 1.0, "fluctuation": 0.0}[form]  # <m> = 0 over the +- pairs
        np.testing.assert_allclose(cf.mean, want, atol=1e-12)
        np.testing.assert_allclose(cf.error, 0.0, atol=1e-12)


def test_checkerboard_tiles_exact():
    # every pair product is (-1)^(dx+dy): tiles of any size and placement must reproduce it exactly
    i, j = np.indices((20, 22))
    s = np.where((i + j) % 2 == 0, 1, -1).astype(np.int8)
    for T in (3, 5, 8):
        for direction, sign in (("x", -1), ("y", -1), ("axes", -1), ("diagonal", 1)):
            t = tiled_correlation(s, T, T - 1, direction)
            np.testing.assert_array_equal(t.mean, sign ** np.arange(T))
    # the periodic FFT of the whole (even) lattice agrees
    np.testing.assert_array_equal(correlation_along_axes(s, 5), (-1.0) ** np.arange(6))


@pytest.mark.parametrize("direction", ["x", "y", "axes", "diagonal"])
def test_single_tile_is_open_boundary_average(direction):
    rng = np.random.default_rng(5)
    s = random_spins(rng, (9, 9))
    t = tiled_correlation(s, 9, 5, direction)
    np.testing.assert_allclose(t.mean, brute_open_pairs(s, direction, 5), atol=1e-14)
    assert t.n_tiles == 1 and np.all(np.isnan(t.tile_error))
    np.testing.assert_allclose(t.r[1], math.sqrt(2.0) if direction == "diagonal" else 1.0)


def test_tiles_average_over_tiles():
    rng = np.random.default_rng(6)
    s = random_spins(rng, (2, 13, 17))  # 3 x 4 tiles of 4, remainder unused
    t = tiled_correlation(s, 4, 2, "axes")
    assert t.n_tiles == 12
    per_tile = np.array([[brute_open_pairs(s[b, 4 * a:4 * a + 4, 4 * c:4 * c + 4], "axes", 2)
                          for a in range(3) for c in range(4)] for b in range(2)])
    np.testing.assert_allclose(t.mean, per_tile.mean(axis=1), atol=1e-14)
    np.testing.assert_allclose(t.tile_error, per_tile.std(axis=1, ddof=1) / math.sqrt(12), atol=1e-14)
    tf = tiled_correlation(s, 4, 2, "axes", form="fluctuation")
    m = magnetization(s)
    np.testing.assert_allclose(tf.mean, t.mean - (m**2)[:, None], atol=1e-14)


def test_independent_spins_ensemble():
    rng = np.random.default_rng(2024)
    s = random_spins(rng, (4, 100, 16, 16))  # 4 replicas of 100 independent configurations
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # windowing on pure noise may stop early: irrelevant here
        for direction in ("axes", "diagonal", "x"):
            cf = correlation_function(s, direction)
            assert cf.mean[0] == 1.0 and cf.error[0] == 0.0
            z = cf.mean[1:] / cf.error[1:]
            assert np.all(np.abs(z) < 4.5), z
            # naive error of a mean of N(=256) products per configuration, 400 configurations
            expect = 1.0 / math.sqrt(256 * 400 * (2 if direction != "x" else 1))
            np.testing.assert_allclose(cf.error[1:-1], expect, rtol=0.35)
            # at r = L/2 every pair is counted twice (s_i s_{i+L/2} = s_{i+L/2} s_{i+L}); along the
            # diagonal the two diagonals coincide as well
            factor = 2.0 if direction == "diagonal" else math.sqrt(2.0)
            np.testing.assert_allclose(cf.error[-1], factor * expect, rtol=0.35)
        sf = structure_factor_ensemble(s)
    assert sf.n_configs == 400 and sf.n_replicas == 4
    z = (sf.mean[1:] - 1.0) / sf.error[1:]
    assert np.all(np.abs(z) < 4.5), z
    ok = np.isfinite(sf.a4)
    assert ok.sum() > 5
    za = sf.a4[ok] / sf.a4_error[ok]
    assert np.all(np.abs(za) < 4.5), za
    # S(k) of independent spins is exponential per configuration: relative spread ~ 1/sqrt(400)
    big = sf.count > 20
    assert np.all(sf.rel_spread[big] < 0.15)
    assert np.abs(sf.s_map - 1.0).max() < 6 * sf.s_map_error.max()


# ---------------------------------------------------------------------------------------------
# Exact 4x4 torus at K_c
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def torus4():
    states, p = exact.boltzmann_weights(K_C, 4, 4)
    return states, p


def test_weighted_averages_are_exact(torus4):
    states, p = torus4
    ax = correlation_along_axes(states)
    S = structure_factor(states)
    G = p @ ax
    t = exact.kaufman_torus(K_C, 4, 4)
    assert G[1] == pytest.approx(-t.energy / 2.0, rel=1e-12)  # <s_0 s_x> from Kaufman's energy
    mm = exact.magnetization_moments(K_C, 4, 4)
    chi = p @ S[:, 0, 0]
    assert chi == pytest.approx(16 * mm.m2, rel=1e-12)


def test_iid_samples_from_exact_distribution(torus4):
    states, p = torus4
    rng = np.random.default_rng(99)
    idx = rng.choice(p.size, size=(8, 500), p=p)
    sample = states[idx]
    ax = correlation_along_axes(states)
    dg = correlation_along_diagonals(states)
    m = magnetization(states)
    for direction, exact_g in (("axes", p @ ax), ("diagonal", p @ dg)):
        for form in ("full", "connected", "fluctuation"):
            cf = correlation_function(sample, direction, form=form)
            ref = exact_g - (p @ m**2 if form == "fluctuation" else 0.0)  # <m> = 0 exactly
            z = cf.z_scores(ref)[1:]
            assert np.all(np.abs(z) < 4.5), (direction, form, z)
    S = structure_factor(states)
    chi, F = p @ S[:, 0, 0], p @ (0.5 * (S[:, 1, 0] + S[:, 0, 1]))
    xi_exact = second_moment_xi(chi, F, 4)
    for method in ("jackknife", "gamma"):
        est = second_moment_correlation_length(sample, method=method)
        assert abs(est.mean - xi_exact) < 4.5 * est.error, (method, est, xi_exact)
        assert 0 < est.error < 0.05 * xi_exact
    sf = structure_factor_ensemble(sample)
    assert sf.s_map.shape == (4, 4) and sf.n_configs == 4000
    z = (sf.s_map - (p @ S.reshape(p.size, 16)).reshape(4, 4)) / sf.s_map_error
    assert np.all(np.abs(z) < 5)
    zs = (sf.mean - shell_average((p @ S.reshape(p.size, 16)).reshape(4, 4)).mean) / sf.error
    assert np.all(np.abs(zs[1:]) < 5)


# ---------------------------------------------------------------------------------------------
# Tiles against the full FFT on a critical ensemble
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wolff_ensemble():
    from isingcore import Simulation

    sim = Simulation(48, algorithm="wolff", replicas=4, seed=17)
    sim.sweep(30)
    out = []
    for _ in range(60):
        sim.sweep(2)
        out.append(np.asarray(to_numpy(sim.spins)).copy())
    return np.stack(out, axis=1)  # (4 replicas, 60, 48, 48)


def test_tiles_agree_with_full_fft(wolff_ensemble):
    from isingcore.measure import gamma_method

    s = wolff_ensemble
    full = correlation_function(s, "diagonal", r_max=6)
    tiles = correlation_function(s, "diagonal", r_max=6, method="tiles", tile=24)
    assert tiles.method == "tiles"
    # the same configurations: test the per-configuration difference, which is far less noisy
    flat = s.reshape(-1, 48, 48)
    d = correlation_along_diagonals(flat, 6) - tiled_correlation(flat, 24, 6, "diagonal").mean
    d = d.reshape(4, 60, 7)
    for n in range(1, 7):
        e = gamma_method(d[:, :, n])
        assert abs(e.mean) < 4.5 * e.error, (n, e)
    np.testing.assert_allclose(tiles.mean, full.mean, atol=5 * tiles.error.max())
    # tiles have fewer pairs: their errors are not smaller
    assert np.all(tiles.error[1:] >= 0.9 * full.error[1:])
    # at K_c the correlation on 48^2 is near the infinite-lattice value; the finite-size shift is
    # positive, about 0.4 r/L relative (see tools/bench/correlation_check.py)
    ex = exact.critical_diagonal_correlation(np.arange(1, 7))
    dev = (full.mean[1:] - ex) / ex
    assert np.all(dev > -4 * full.error[1:] / ex)
    assert np.all(dev < 1.0 * full.r[1:] / 48 + 4 * full.error[1:] / ex), (dev, full.error)
    xi = second_moment_correlation_length(s)
    assert 0.7 * 48 < xi.mean < 1.1 * 48  # xi_2nd / L -> 0.905 at K_c


# ---------------------------------------------------------------------------------------------
# Ensemble sources
# ---------------------------------------------------------------------------------------------


def test_sources_file_array_and_chains(tmp_path):
    from isingcore.io import EnsembleWriter

    rng = np.random.default_rng(8)
    s = random_spins(rng, (3, 6, 8, 8))  # 3 chains of 6
    attrs = dict(algorithm="wolff", beta=K_C, J=1.0, h=0.0, Lx=8, Ly=8, seed=1, thermalization=0,
                 spacing=1, backend="numpy")
    path = tmp_path / "e.h5"
    # chains written interleaved and in a permuted order: the chain labels must sort them back
    with EnsembleWriter.create(path, attrs) as w:
        for k in range(6):
            w.append(s[[2, 0, 1], k], None, chain=np.array([2, 0, 1]), step=np.full(3, k + 1))
    a = correlation_function(s, "diagonal")
    b = correlation_function(str(path), "diagonal")
    labels = np.repeat(np.arange(3), 6)
    c = correlation_function(s.reshape(18, 8, 8), "diagonal", chains=labels)
    for other in (b, c):
        np.testing.assert_allclose(other.mean, a.mean, atol=1e-15)
        np.testing.assert_allclose(other.error, a.error, atol=1e-15)
        assert other.n_replicas == 3 and other.n_configs == 18
    from isingcore.io import open_ensemble

    with open_ensemble(path) as ens:
        x1 = structure_factor_ensemble(ens)
    x2 = structure_factor_ensemble(s)
    np.testing.assert_allclose(x1.mean, x2.mean, atol=1e-14)
    np.testing.assert_allclose(x1.error, x2.error, atol=1e-14)
    # one chain of 18: same mean
    d = correlation_function(s.reshape(18, 8, 8), "diagonal")
    np.testing.assert_allclose(d.mean, a.mean, atol=1e-15)
    assert d.n_replicas == 1


def test_block_size_does_not_matter():
    rng = np.random.default_rng(12)
    s = random_spins(rng, (20, 10, 10))
    a = correlation_function(s, "axes", block_size=3)
    b = correlation_function(s, "axes", block_size=64)
    np.testing.assert_array_equal(a.mean, b.mean)


# ---------------------------------------------------------------------------------------------
# Shells and xi formula
# ---------------------------------------------------------------------------------------------


def test_wavevectors():
    kx, ky = wavevectors(4, 6)
    assert kx.shape == (4, 6)
    np.testing.assert_allclose(kx[:, 0], 2 * np.pi * np.array([0, 1, -2, -1]) / 4)
    np.testing.assert_allclose(ky[0, :], 2 * np.pi * np.array([0, 1, 2, -3, -2, -1]) / 6)
    lx, _ = wavevectors(4, 6, momentum="lattice")
    np.testing.assert_allclose(lx, 2 * np.sin(kx / 2))


def test_shell_average_known_maps():
    L = 64
    kx, ky = wavevectors(L)
    k = np.hypot(kx, ky)
    theta = np.arctan2(ky, kx)
    iso = shell_average(2.0 + k)
    # isotropic map: no cos 4 theta; shell mean = 2 + mean |k| of the shell
    ok = np.isfinite(iso.a4)
    assert ok.sum() > 20 and np.all(np.abs(iso.a4[ok]) < 1e-12)
    np.testing.assert_allclose(iso.mean, 2.0 + iso.k, atol=1e-12)
    assert iso.count[0] == 1 and iso.k[0] == 0.0
    assert iso.count.sum() == np.count_nonzero(k < np.pi + np.pi / L)
    aniso = shell_average(2.0 + k + 0.3 * np.cos(4 * theta))
    ok = np.isfinite(aniso.a4)
    np.testing.assert_allclose(aniso.a4[ok], 0.3 / (2.0 + aniso.k[ok]), rtol=1e-10)
    # the first shell (axes at k_min, diagonals at sqrt 2 k_min) cannot separate the harmonic
    assert np.isnan(aniso.a4[1])
    const = shell_average(np.full((3, L, L), 5.0))
    assert const.mean.shape == (3, const.k.size)
    np.testing.assert_allclose(const.rel_spread[:, 1:], 0.0, atol=1e-12)
    # batched maps give the same shells as one by one
    maps = np.stack([2.0 + k, 2.0 + k + 0.3 * np.cos(4 * theta)])
    both = shell_average(maps)
    np.testing.assert_allclose(both.a4[1][ok], aniso.a4[ok])
    wide = shell_average(2.0 + k, bin_width=4 * 2 * np.pi / L)
    assert wide.k.size < iso.k.size and wide.edges.size == wide.k.size + 1


def test_second_moment_xi_formula():
    L, xi = 32, 7.5
    F = 2.0
    chi = F * (1.0 + (2.0 * math.sin(math.pi / L) * xi) ** 2)
    assert second_moment_xi(chi, F, L) == pytest.approx(xi, rel=1e-14)
    assert math.isnan(second_moment_xi(1.0, 2.0, L))
    np.testing.assert_allclose(second_moment_xi(np.array([chi, chi]), F, L), [xi, xi])


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


def test_bad_spins():
    with pytest.raises(ValueError, match="spins must hold only the values"):
        correlation_map(np.zeros((4, 4), dtype=np.int8))
    with pytest.raises(ValueError, match="spins must hold only the values"):
        structure_factor(np.full((4, 4), 2, dtype=np.int8))
    with pytest.raises(TypeError, match="spins must be a signed integer array"):
        correlation_map(np.ones((4, 4)))
    with pytest.raises(TypeError, match="spins must be a signed integer array"):
        correlation_map(np.ones((4, 4), dtype=bool))
    with pytest.raises(TypeError, match="spins must be a signed integer array"):
        tiled_correlation(np.ones((4, 4), dtype=np.uint8), 2)
    with pytest.raises(ValueError, match="at least 2 x 2"):
        correlation_along_axes(np.ones((1, 6), dtype=np.int8))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        structure_factor(np.ones(6, dtype=np.int8))
    with pytest.raises(TypeError, match="spins must be an array"):
        correlation_map([[1, -1], [1, 1]])


def test_bad_parameters():
    s = np.ones((2, 9, 6), dtype=np.int8)
    with pytest.raises(ValueError, match=r"r_max must be in \[0, 3\]"):
        correlation_along_axes(s, r_max=4)  # min(9, 6)//2 = 3 for both axes
    assert correlation_along_axes(s, r_max=4, axis="x").shape == (2, 5)  # 9//2 = 4 along x
    with pytest.raises(ValueError, match="n_max must be in"):
        correlation_along_diagonals(s, n_max=4)
    with pytest.raises(TypeError, match="r_max must be an integer"):
        correlation_along_axes(s, r_max=2.0)
    with pytest.raises(ValueError, match="axis='z' is not supported"):
        correlation_along_axes(s, axis="z")
    with pytest.raises(ValueError, match="form='connected' is not supported"):
        correlation_map(s, form="connected")
    with pytest.raises(ValueError, match="tile must be in"):
        tiled_correlation(s, 7)
    with pytest.raises(ValueError, match="tile must be in"):
        tiled_correlation(s, 1)
    with pytest.raises(ValueError, match="r_max must be in"):
        tiled_correlation(s, 4, r_max=4)
    with pytest.raises(ValueError, match="direction='z'"):
        tiled_correlation(s, 4, direction="z")
    with pytest.raises(ValueError, match="bin_width must be a positive"):
        shell_average(np.ones((8, 8)), bin_width=0.0)
    with pytest.raises(ValueError, match="momentum="):
        wavevectors(8, momentum="continuum")
    with pytest.raises(ValueError, match="L must be"):
        second_moment_xi(2.0, 1.0, 1)


def test_bad_ensemble_input():
    rng = np.random.default_rng(0)
    s = random_spins(rng, (10, 6, 6))
    with pytest.raises(ValueError, match="needs a square torus"):
        second_moment_correlation_length(random_spins(rng, (10, 6, 8)))
    with pytest.raises(ValueError, match="only 3 configuration"):
        correlation_function(s[:3])
    with pytest.raises(ValueError, match="chains must have one label per configuration"):
        correlation_function(s, chains=[0, 1])
    with pytest.raises(ValueError, match="shape"):
        correlation_function(s[0])
    with pytest.raises(TypeError, match="source must be"):
        correlation_function(3.0)
    with pytest.raises(ValueError, match="method='tiles' needs tile"):
        correlation_function(s, method="tiles")
    with pytest.raises(ValueError, match="tile is only used"):
        correlation_function(s, tile=3)
    with pytest.raises(ValueError, match="r_max must be in"):
        correlation_function(s, "diagonal", r_max=4)
    with pytest.raises(ValueError, match="block_size must be"):
        correlation_function(s, block_size=0)
    with pytest.raises(ValueError, match="n_bins is only used"):
        second_moment_correlation_length(np.ones((10, 6, 6), dtype=np.int8), method="gamma", n_bins=4)
    bad = s.copy()
    bad[4, 2, 2] = 0
    with pytest.raises(ValueError, match="must hold only the values"):
        correlation_function(bad)
    with pytest.raises(ValueError, match="xi_2nd is undefined"):
        # antiferromagnetic pattern: S peaked at (pi, pi), not at 0
        i, j = np.indices((6, 6))
        second_moment_correlation_length(np.broadcast_to(np.where((i + j) % 2 == 0, 1, -1).astype(np.int8), (8, 6, 6)))
