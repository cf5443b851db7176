"""Tests for isingcore.exact: Onsager, Kaufman's finite torus, the magnetization transfer
matrix and brute-force enumeration, each checked against an independent computation."""

import math

import numpy as np
import pytest

from isingcore import constants, exact
from isingcore.exact import (
    BETA_C,
    BINDER_C,
    binder_cumulant_exact,
    boltzmann_weights,
    elliptic_k_e,
    enumerate_torus,
    kaufman_torus,
    magnetization_distribution,
    magnetization_moments,
    onsager_energy,
    onsager_free_energy,
    onsager_specific_heat,
    spontaneous_magnetization,
)

CATALAN = 0.915965594177219015054603514932384110774
#: Ferdinand & Fisher (1969): c(L, K_c) = A0 ln L + B0 + O(1/L) on the square torus.
FF_AMPLITUDE = 8.0 * BETA_C**2 / np.pi

TORI = [(2, 2), (2, 3), (3, 3), (3, 4), (4, 4), (3, 5), (4, 5), (2, 7), (1, 6), (5, 1)]
COUPLINGS = [0.05, 0.2, 0.4, BETA_C, 0.5, 0.6, 1.0]


def fd5(f, x, h):
    """Five-point central difference; truncation error h^4 f^(5)/30."""
    return (-f(x + 2 * h) + 8 * f(x + h) - 8 * f(x - h) + f(x - 2 * h)) / (12 * h)


def rel_err(a, b):
    return abs(a - b) / abs(b)


# --------------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------------

def test_constants_are_reexported_not_duplicated():
    assert exact.BETA_C is constants.BETA_C
    assert exact.BINDER_C is constants.BINDER_C
    assert BETA_C == pytest.approx(0.5 * math.log(1 + math.sqrt(2)), rel=1e-16)
    assert math.sinh(2 * BETA_C) == pytest.approx(1.0, rel=1e-15)


# --------------------------------------------------------------------------------------------
# Brute force: the reference everything else is compared with
# --------------------------------------------------------------------------------------------

def test_enumeration_two_by_two_closed_form():
    # 2x2 torus: 8 bonds, each pair doubled -> B = 2 * (ring of 4) in {8, 0, -8},
    # with 2, 12, 2 states: Z = 2 e^{8K} + 12 + 2 e^{-8K}.
    for K in (0.1, BETA_C, 0.9):
        z = 2 * math.exp(8 * K) + 12 + 2 * math.exp(-8 * K)
        dz = 16 * math.exp(8 * K) - 16 * math.exp(-8 * K)
        d2z = 128 * math.exp(8 * K) + 128 * math.exp(-8 * K)
        r = enumerate_torus(K, 2, 2)
        assert r.ln_z == pytest.approx(math.log(z) / 4, rel=1e-14)
        assert r.energy == pytest.approx(-dz / z / 4, rel=1e-14)
        assert r.specific_heat == pytest.approx(K**2 * (d2z / z - (dz / z) ** 2) / 4, rel=1e-12)


def test_enumeration_single_site_with_field():
    # 1x1 torus: two self-bonds, E = -2J - h s.
    beta, J, h = 0.7, 1.3, 0.4
    r = enumerate_torus(beta, 1, 1, J=J, h=h)
    assert r.ln_z == pytest.approx(2 * beta * J + math.log(2 * math.cosh(beta * h)), rel=1e-15)
    assert r.m == pytest.approx(math.tanh(beta * h), rel=1e-15)
    assert r.energy == pytest.approx(-2 * J - h * math.tanh(beta * h), rel=1e-15)
    assert r.specific_heat == pytest.approx((beta * h) ** 2 / math.cosh(beta * h) ** 2, rel=1e-13)


@pytest.mark.parametrize("shape", [(1, 1), (1, 3), (2, 2), (3, 4), (2, 5), (4, 4)])
def test_boltzmann_weights_states_and_probabilities(shape):
    beta, J, h = 0.37, 1.0, 0.15
    states, p = boltzmann_weights(beta, *shape, J=J, h=h)
    N = shape[0] * shape[1]
    assert states.dtype == np.int8 and states.shape == (2**N,) + shape
    assert p.dtype == np.float64 and p.shape == (2**N,)
    assert np.all(np.abs(states) == 1)
    assert np.all(states[0] == 1)                              # state 0 is all up
    assert len(np.unique(states.reshape(2**N, N), axis=0)) == 2**N
    # index bit x*Ly + y set <=> spin -1
    bit = 1 << (shape[1] - 1)
    assert states[bit][0, shape[1] - 1] == -1 and (states[bit] == -1).sum() == 1
    assert p.sum() == pytest.approx(1.0, rel=1e-14)
    # independent energies from the states themselves
    s = states.astype(np.int64)
    H = -J * (s * np.roll(s, -1, 1) + s * np.roll(s, -1, 2)).sum((1, 2)) - h * s.sum((1, 2))
    w = np.exp(-beta * (H - H.min()))
    np.testing.assert_allclose(p, w / w.sum(), rtol=1e-13)
    ref = enumerate_torus(beta, *shape, J=J, h=h)
    assert np.dot(p, H) / N == pytest.approx(ref.energy, rel=1e-13)
    assert np.dot(p, np.abs(s.sum((1, 2)))) / N == pytest.approx(ref.abs_m, rel=1e-13)


# --------------------------------------------------------------------------------------------
# Kaufman's finite torus
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", TORI)
def test_kaufman_matches_enumeration(shape):
    Lx, Ly = shape
    N = Lx * Ly
    for K in COUPLINGS:
        ref = enumerate_torus(K, Lx, Ly)
        got = kaufman_torus(K, Lx, Ly)
        assert rel_err(got.ln_z, ref.ln_z) < 1e-11, (shape, K)
        assert rel_err(got.energy, ref.energy) < 1e-11, (shape, K)
        assert rel_err(got.specific_heat, ref.specific_heat) < 1e-11, (shape, K)
        # Kaufman's formula is not manifestly symmetric: both orientations must be exact.
        for m, n in ((Lx, Ly), (Ly, Lx)):
            ln_z, d1, d2 = exact._kaufman_log_derivatives(K, m, n)
            assert rel_err(ln_z / N, ref.ln_z) < 1e-11, (m, n, K)
            assert rel_err(-d1 / N, ref.energy) < 1e-11, (m, n, K)
            assert rel_err(K * K * d2 / N, ref.specific_heat) < 1e-11, (m, n, K)


@pytest.mark.parametrize("shape", [(4, 4), (3, 5), (2, 7)])
def test_kaufman_low_temperature_absolute_accuracy(shape):
    # c ~ e^{-8K} is built from O(e^{-2K}) terms: documented absolute accuracy ~1e-16.
    for K in (2.0, 3.0, 5.0):
        ref = enumerate_torus(K, *shape)
        got = kaufman_torus(K, *shape)
        assert abs(got.specific_heat - ref.specific_heat) < 1e-13
        assert rel_err(got.energy, ref.energy) < 1e-13
        assert rel_err(got.ln_z, ref.ln_z) < 1e-14


def test_kaufman_design_numbers_at_kc():
    r4 = kaufman_torus(BETA_C, 4)
    assert r4.energy == pytest.approx(-1.565623787638, abs=1e-10)
    assert r4.specific_heat == pytest.approx(0.783266825929, abs=1e-10)
    r16 = kaufman_torus(BETA_C, 16)
    assert r16.energy == pytest.approx(-1.453064852813, abs=1e-10)
    assert r16.specific_heat == pytest.approx(1.498704959400, abs=1e-10)
    assert r16.ln_z == pytest.approx(0.932196314981, abs=1e-10)


@pytest.mark.parametrize("shape", [(5, 12), (7, 30), (3, 64), (16, 17), (1, 40), (2, 101)])
def test_kaufman_orientation_symmetry(shape):
    K = np.array([0.1, 0.3, BETA_C, 0.47, 0.8, 1.5])
    a = exact._kaufman_log_derivatives(K, *shape)
    b = exact._kaufman_log_derivatives(K, *shape[::-1])
    N = shape[0] * shape[1]
    np.testing.assert_allclose(a[0] / N, b[0] / N, rtol=1e-13)
    np.testing.assert_allclose(a[1] / N, b[1] / N, rtol=1e-12)
    np.testing.assert_allclose(K**2 * a[2] / N, K**2 * b[2] / N, rtol=1e-11, atol=1e-14)
    assert kaufman_torus(0.3, *shape) == kaufman_torus(0.3, *shape[::-1])


def test_kaufman_accepts_arrays():
    K = np.array([[0.2, BETA_C], [0.6, 1.0]])
    r = kaufman_torus(K, 6, 9)
    assert r.energy.shape == (2, 2)
    for i in range(2):
        for j in range(2):
            s = kaufman_torus(float(K[i, j]), 6, 9)
            assert r.ln_z[i, j] == s.ln_z and r.energy[i, j] == s.energy
            assert r.specific_heat[i, j] == s.specific_heat
    assert isinstance(kaufman_torus(0.3, 4).energy, float)


def test_kaufman_large_lattice_is_finite_and_onsager():
    for K in (0.2, BETA_C, 1.0):
        r = kaufman_torus(K, 1024)
        assert all(np.isfinite(x) for x in r)
    # Far from K_c the correlation length is ~1 lattice spacing: finite-size corrections are
    # e^{-L/xi}, invisible in double precision.  Above K_c the torus has two ordered states,
    # so ln Z/N exceeds the bulk value by exactly ln(2)/N.
    for K in (0.3, 0.6):
        r = kaufman_torus(K, 1024)
        N = 1024**2
        degeneracy = math.log(2) / N if K > BETA_C else 0.0
        assert r.energy == pytest.approx(onsager_energy(K), abs=1e-13)
        assert r.specific_heat == pytest.approx(onsager_specific_heat(K), abs=1e-13)
        assert r.ln_z - degeneracy == pytest.approx(onsager_free_energy(K), abs=1e-13)
    r = kaufman_torus(0.6, 64)
    assert r.ln_z - math.log(2) / 64**2 == pytest.approx(onsager_free_energy(0.6), abs=1e-13)


def test_kaufman_critical_finite_size_scaling():
    # Ferdinand & Fisher: c(L) = A0 ln L + B0 + O(1/L) at K_c, A0 = 8 K_c^2 / pi;
    # u(L) = -sqrt(2) + O(1/L).
    c = {L: kaufman_torus(BETA_C, L).specific_heat for L in (128, 256, 512, 1024, 2048)}
    for L in (128, 256, 512, 1024):
        deviation = c[2 * L] - c[L] - FF_AMPLITUDE * math.log(2)
        assert abs(deviation) < 0.1 / L, L
    u = {L: kaufman_torus(BETA_C, L).energy for L in (256, 512, 1024, 2048, 4096)}
    scaled = [L * (u[L] + math.sqrt(2)) for L in sorted(u)]
    steps = np.abs(np.diff(scaled))
    assert np.all(steps[1:] < steps[:-1])                     # L (u + sqrt 2) converges
    assert abs(u[4096] + math.sqrt(2)) < 2e-4


def test_kaufman_extreme_temperatures():
    # K << 1: the energy ~ -2K has an absolute accuracy of ~1e-16 (documented)
    high = kaufman_torus(1e-6, 32)
    assert high.ln_z == pytest.approx(math.log(2) + 2 * math.log(math.cosh(1e-6)), rel=1e-15)
    assert high.energy == pytest.approx(-2 * math.tanh(1e-6), abs=1e-15)
    assert high.specific_heat == pytest.approx(2e-12, rel=1e-9)
    low = kaufman_torus(50.0, 32)
    assert low.ln_z == pytest.approx(100.0 + math.log(2) / 32**2, rel=1e-15)
    assert low.energy == -2.0
    assert 0.0 <= abs(low.specific_heat) < 1e-30


# --------------------------------------------------------------------------------------------
# Onsager, infinite lattice
# --------------------------------------------------------------------------------------------

def test_elliptic_integrals_against_scipy():
    special = pytest.importorskip("scipy.special")
    k = np.array([0.0, 1e-8, 0.1, 0.5, 0.9, 0.99, 0.999999])
    kp = np.sqrt((1 - k) * (1 + k))
    kk, ee = elliptic_k_e(k, kp)
    np.testing.assert_allclose(kk, special.ellipkm1(kp**2), rtol=2e-15)   # m = k^2
    np.testing.assert_allclose(ee, special.ellipe(k**2), rtol=2e-15)
    kp = np.array([1e-3, 1e-8, 1e-12, 1e-100])
    kk, ee = elliptic_k_e(np.sqrt(1 - kp**2), kp)
    np.testing.assert_allclose(kk, special.ellipkm1(kp**2), rtol=2e-15)
    assert elliptic_k_e(1.0)[0] == np.inf and elliptic_k_e(1.0)[1] == 1.0


@pytest.mark.parametrize("K", [0.2, 0.3, BETA_C, 0.6, 1.0])
def test_onsager_free_energy_against_double_integral(K):
    integrate = pytest.importorskip("scipy.integrate")
    a, s = math.cosh(2 * K) ** 2, math.sinh(2 * K)
    val, err = integrate.dblquad(lambda t1, t2: np.log(a - s * (np.cos(t1) + np.cos(t2))),
                                 0, np.pi, 0, np.pi, epsabs=1e-13, epsrel=1e-13)
    assert err < 1e-11
    assert onsager_free_energy(K) == pytest.approx(math.log(2) + val / (2 * np.pi**2), abs=1e-12)


def test_onsager_critical_values():
    assert onsager_free_energy(BETA_C) == pytest.approx(0.5 * math.log(2) + 2 * CATALAN / np.pi,
                                                        abs=2e-16)
    assert onsager_energy(BETA_C) == pytest.approx(-math.sqrt(2), rel=1e-15)
    assert onsager_specific_heat(BETA_C) == np.inf
    assert spontaneous_magnetization(BETA_C) == 0.0


def test_onsager_energy_is_derivative_of_free_energy():
    h = 1e-4
    for K in (0.1, 0.3, 0.43, 0.45, 0.6, 1.0):
        u_fd = -fd5(onsager_free_energy, K, h)
        assert onsager_energy(K) == pytest.approx(u_fd, abs=1e-10), K
        # J scales energies, not the dimensionless free energy
        assert onsager_energy(K / 2, J=2.0) == pytest.approx(2 * onsager_energy(K), rel=1e-15)


def test_onsager_specific_heat_is_derivative_of_energy():
    h = 1e-4
    for K in (0.1, 0.3, 0.43, 0.45, 0.6, 1.0):
        c_fd = -K**2 * fd5(onsager_energy, K, h)
        assert onsager_specific_heat(K) == pytest.approx(c_fd, rel=1e-8), K


def test_onsager_specific_heat_log_divergence():
    # c = -A0 ln|1 - K/K_c| + const on either side, A0 = 8 K_c^2 / pi.
    for sign in (+1, -1):
        c1 = onsager_specific_heat(BETA_C * (1 + sign * 1e-7))
        c2 = onsager_specific_heat(BETA_C * (1 + sign * 1e-8))
        assert c2 - c1 == pytest.approx(FF_AMPLITUDE * math.log(10), rel=1e-5)


@pytest.mark.parametrize("K", [3.0, 5.0])
def test_onsager_low_temperature_series(K):
    # ln Z/N = 2K + x^4 + 2x^6 + (9/2) x^8 + O(x^10), x = e^{-2K} (one flipped spin, a flipped
    # pair, and the 8-broken-bond clusters minus the connected part of N^2 x^8 / 2).
    x = math.exp(-2 * K)
    assert onsager_free_energy(K) == pytest.approx(2 * K + x**4 + 2 * x**6 + 4.5 * x**8, rel=1e-15)
    assert onsager_energy(K) == pytest.approx(-2 + 8 * x**4 + 24 * x**6 + 72 * x**8, rel=1e-15)
    c_series = K**2 * (64 * x**4 + 288 * x**6 + 1152 * x**8)   # ~ e^{-8K}: relative check
    assert onsager_specific_heat(K) == pytest.approx(c_series, rel=1e-12)


def test_onsager_high_temperature_series():
    # ln Z/N = ln 2 + 2 ln cosh K + v^4 + 2 v^6 + (9/2) v^8 + O(v^10), v = tanh K (dual series)
    K = 0.01
    v = math.tanh(K)
    dv, d2v = 1 - v * v, -2 * v * (1 - v * v)

    def d1(n):
        return n * v ** (n - 1) * dv

    def d2(n):
        return n * v ** (n - 1) * d2v + n * (n - 1) * v ** (n - 2) * dv**2

    u_series = -(2 * v + d1(4) + 2 * d1(6) + 4.5 * d1(8))
    c_series = K**2 * (2 / math.cosh(K) ** 2 + d2(4) + 2 * d2(6) + 4.5 * d2(8))
    assert onsager_energy(K) == pytest.approx(u_series, rel=1e-13)
    assert onsager_specific_heat(K) == pytest.approx(c_series, rel=1e-12)
    assert onsager_energy(1e-8) == pytest.approx(-2e-8, rel=1e-15)
    assert onsager_specific_heat(1e-8) == pytest.approx(2e-16, rel=1e-15)


def test_onsager_limits_and_arrays():
    assert onsager_free_energy(1e-6) == pytest.approx(math.log(2) + 2 * math.log(math.cosh(1e-6)),
                                                      rel=1e-15)
    assert onsager_energy(20.0) == pytest.approx(-2.0, rel=1e-15)
    assert onsager_free_energy(20.0) == pytest.approx(40.0, rel=1e-15)
    K = np.array([0.1, 0.3, BETA_C, 0.7])
    for f in (onsager_energy, onsager_free_energy, onsager_specific_heat,
              spontaneous_magnetization):
        out = f(K)
        assert isinstance(out, np.ndarray) and out.shape == K.shape
        assert all(out[i] == f(float(K[i])) for i in range(len(K)))
        assert isinstance(f(0.3), float)


def test_spontaneous_magnetization():
    assert spontaneous_magnetization(0.3) == 0.0
    assert spontaneous_magnetization(0.6) == pytest.approx(
        (1 - math.sinh(1.2) ** -4) ** 0.125, rel=1e-15)
    # m0 ~ (const (K - K_c))^{1/8} near K_c
    d = 1e-6
    ratio = spontaneous_magnetization(BETA_C + 16 * d) / spontaneous_magnetization(BETA_C + d)
    assert ratio == pytest.approx(16**0.125, rel=1e-4)
    # finite tori approach Yang's value from below, quickly, deep in the ordered phase
    dev = [abs(magnetization_moments(0.6, L).abs_m - spontaneous_magnetization(0.6))
           for L in (4, 6, 8, 10)]
    assert all(b < a for a, b in zip(dev, dev[1:]))
    assert dev[-1] < 1e-5


# --------------------------------------------------------------------------------------------
# Magnetization transfer matrix
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (3, 3), (4, 4), (3, 4), (4, 3), (2, 5), (1, 4)])
@pytest.mark.parametrize("h", [0.0, 0.1])
def test_magnetization_moments_match_enumeration(shape, h):
    for K in (0.2, BETA_C, 0.7, 3.0):
        ref = enumerate_torus(K, *shape, h=h)
        got = magnetization_moments(K, *shape, h=h)
        for field in ("ln_z", "energy", "abs_m", "m2", "m4"):
            assert rel_err(getattr(got, field), getattr(ref, field)) < 1e-12, (field, K)
        if ref.specific_heat > 1e-10:
            assert rel_err(got.specific_heat, ref.specific_heat) < 1e-11, K
        else:
            assert abs(got.specific_heat - ref.specific_heat) < 1e-14, K
        if h == 0.0:
            assert abs(got.m) < 1e-15
        else:
            assert rel_err(got.m, ref.m) < 1e-12


@pytest.mark.parametrize("shape", [(3, 4), (4, 4), (3, 3)])
def test_magnetization_moments_antiferromagnet(shape):
    # J < 0: frustrated on odd tori; the transfer matrix handles any sign of J.
    for K in (0.3, 1.0):
        ref = enumerate_torus(K, *shape, J=-1.0, h=0.2)
        got = magnetization_moments(K, *shape, J=-1.0, h=0.2)
        for field in ("ln_z", "energy", "specific_heat", "abs_m", "m2", "m4", "m"):
            assert rel_err(getattr(got, field), getattr(ref, field)) < 1e-11, (field, K)


def test_magnetization_distribution_matches_boltzmann_weights():
    beta, h = BETA_C, 0.05
    states, p = boltzmann_weights(beta, 3, 4, h=h)
    M = states.astype(np.int64).sum((1, 2))
    ref = np.bincount(M + 12, weights=p, minlength=25)[::2]   # M = -12, -10, ..., 12
    m, q = magnetization_distribution(beta, 3, 4, h=h)
    np.testing.assert_array_equal(m, (2.0 * np.arange(13) - 12) / 12)
    np.testing.assert_allclose(q, ref, rtol=1e-12, atol=1e-17)
    assert q.sum() == pytest.approx(1.0, rel=1e-15)


@pytest.mark.parametrize("L", [6, 8, 10])
def test_magnetization_transfer_energy_matches_kaufman(L):
    for K in (0.3, BETA_C):
        tm = magnetization_moments(K, L)
        ka = kaufman_torus(K, L)
        assert rel_err(tm.energy, ka.energy) < 1e-13
        assert rel_err(tm.specific_heat, ka.specific_heat) < 1e-12
        assert rel_err(tm.ln_z, ka.ln_z) < 1e-14
    if L < 10:
        tm = magnetization_moments(BETA_C, L, L + 3)
        assert rel_err(tm.energy, kaufman_torus(BETA_C, L, L + 3).energy) < 1e-13
        assert rel_err(tm.specific_heat, kaufman_torus(BETA_C, L, L + 3).specific_heat) < 1e-12


def test_binder_cumulant_exact():
    # at K -> 0 the spins are independent: U4 = 2/(3N) exactly
    assert binder_cumulant_exact(1e-9, 4) == pytest.approx(2 / (3 * 16), rel=1e-7)
    # ordered: U4 -> 2/3, up to single-spin excitations of relative weight ~ N e^{-8K}
    ref = enumerate_torus(3.0, 4, 4)
    u_ordered = binder_cumulant_exact(3.0, 4)
    assert u_ordered == pytest.approx(1 - ref.m4 / (3 * ref.m2**2), rel=1e-12)
    assert 0 < 2 / 3 - u_ordered < 16 * math.exp(-24)
    # at K_c, U4(L) decreases towards 0.61069 (Salas & Sokal 2000)
    u = [binder_cumulant_exact(BETA_C, L) for L in (4, 6, 8, 10)]
    assert all(b < a for a, b in zip(u, u[1:]))
    assert all(x > BINDER_C for x in u)
    assert u[-1] - BINDER_C < 3e-3


# --------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("beta", [0.0, -0.3, float("nan"), float("inf"), [0.3, -1.0]])
def test_bad_beta(beta):
    for call in (lambda: kaufman_torus(beta, 4), lambda: onsager_energy(beta),
                 lambda: onsager_free_energy(beta), lambda: onsager_specific_heat(beta),
                 lambda: spontaneous_magnetization(beta)):
        with pytest.raises(ValueError, match="beta"):
            call()
    if np.ndim(beta) == 0:
        for call in (lambda: magnetization_moments(beta, 4), lambda: enumerate_torus(beta, 2, 2),
                     lambda: boltzmann_weights(beta, 2, 2)):
            with pytest.raises(ValueError, match="beta"):
                call()


def test_bad_beta_type():
    with pytest.raises(TypeError, match="beta"):
        kaufman_torus("hot", 4)
    with pytest.raises(TypeError, match="beta"):
        onsager_energy(True)
    with pytest.raises(ValueError, match="beta must be a scalar"):
        magnetization_moments([0.3, 0.4], 4)


@pytest.mark.parametrize("size", [0, -2])
def test_bad_size_value(size):
    with pytest.raises(ValueError, match="Lx"):
        kaufman_torus(0.3, size)
    with pytest.raises(ValueError, match="Ly"):
        kaufman_torus(0.3, 4, size)
    with pytest.raises(ValueError, match="L must"):
        magnetization_moments(0.3, size)
    with pytest.raises(ValueError, match="Ly"):
        enumerate_torus(0.3, 2, size)


@pytest.mark.parametrize("size", [2.5, 4.0, "4", True, None])
def test_bad_size_type(size):
    with pytest.raises(TypeError, match="Lx"):
        kaufman_torus(0.3, size)
    with pytest.raises(TypeError, match="L must"):
        binder_cumulant_exact(0.3, size)
    with pytest.raises(TypeError, match="Lx"):
        boltzmann_weights(0.3, size, 2)


def test_bad_coupling_field_and_sizes():
    with pytest.raises(ValueError, match="J must be > 0"):
        kaufman_torus(0.3, 4, J=-1.0)
    with pytest.raises(ValueError, match="J must be > 0"):
        onsager_energy(0.3, J=0.0)
    with pytest.raises(ValueError, match="J must be finite"):
        enumerate_torus(0.3, 2, 2, J=float("nan"))
    with pytest.raises(ValueError, match="h must be finite"):
        magnetization_moments(0.3, 2, h=float("inf"))
    with pytest.raises(TypeError, match="h must be a real number"):
        enumerate_torus(0.3, 2, 2, h="up")
    with pytest.raises(ValueError, match="Lx\\*Ly must be <= 20"):
        enumerate_torus(0.3, 5, 5)
    with pytest.raises(ValueError, match="Lx\\*Ly must be <= 16"):
        boltzmann_weights(0.3, 3, 6)
    with pytest.raises(ValueError, match="min\\(L, Ly\\) must be <= 10"):
        magnetization_moments(0.3, 11, 12)
    with pytest.raises(FloatingPointError, match="beta\\*J"):
        kaufman_torus(1e-200, 4)
