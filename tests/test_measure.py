"""Tests of isingcore.measure: per-configuration observables and ensemble estimators.

Γ-method internals are tested in test_autocorrelation.py; here the observables are checked on
hand-made lattices and against direct loops, on NumPy and array-api-strict, and the ensemble
estimators against exact enumeration of the 4x4 torus (all 2^16 configurations).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from backend_testing import as_np, on

from isingcore._array import backend_of, namespace
from isingcore.constants import K_C
from isingcore.measure import (
    OBSERVABLES,
    Estimate,
    analyze_series,
    binder_cumulant,
    derived,
    diagonal_correlation,
    energy_per_site,
    gamma_method,
    magnetization,
    magnetization_energy_cumulant,
    measure,
    nn_correlations,
    specific_heat,
    susceptibility,
    susceptibility_connected,
)

# ---------------------------------------------------------------------------------------------
# Hand-made lattices
# ---------------------------------------------------------------------------------------------


def lattice(kind: str, lx: int, ly: int) -> np.ndarray:
    i, j = np.indices((lx, ly))
    if kind == "up":
        s = np.ones((lx, ly))
    elif kind == "down":
        s = -np.ones((lx, ly))
    elif kind == "checkerboard":
        s = (-1.0) ** (i + j)
    elif kind == "stripes_x":  # alternates along x (axis -2), constant along y
        s = (-1.0) ** i
    elif kind == "stripes_y":
        s = (-1.0) ** j
    elif kind == "double_stripes_x":  # ++--++-- along x
        s = np.where((i // 2) % 2 == 0, 1.0, -1.0)
    else:  # pragma: no cover
        raise ValueError(kind)
    return s.astype(np.int8)


# (m, c10x, c10y, c11) on even lattices
EXPECTED = {
    "up": (1.0, 1.0, 1.0, 1.0),
    "down": (-1.0, 1.0, 1.0, 1.0),
    "checkerboard": (0.0, -1.0, -1.0, 1.0),
    "stripes_x": (0.0, -1.0, 1.0, -1.0),
    "stripes_y": (0.0, 1.0, -1.0, -1.0),
    "double_stripes_x": (0.0, 0.0, 1.0, 0.0),
}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_hand_made_lattices(backend, kind):
    # 32 x 12: site sums up to 384 would wrap in int8; Lx != Ly catches swapped axes
    s = on(backend, lattice(kind, 32, 12))
    m, c10x, c10y, c11 = EXPECTED[kind]
    obs = measure(s)
    assert as_np(obs["magnetization"]) == m
    assert as_np(obs["c10x"]) == c10x
    assert as_np(obs["c10y"]) == c10y
    assert as_np(obs["c11"]) == c11
    assert as_np(obs["energy"]) == -(c10x + c10y)
    assert as_np(obs["abs_m"]) == abs(m) and as_np(obs["m2"]) == m**2 and as_np(obs["m4"]) == m**4
    # the single-purpose functions agree with measure()
    assert as_np(magnetization(s)) == m
    x, y = nn_correlations(s)
    assert (as_np(x), as_np(y)) == (c10x, c10y)
    assert as_np(diagonal_correlation(s)) == c11
    assert as_np(energy_per_site(s, J=0.5, h=0.25)) == -0.5 * (c10x + c10y) - 0.25 * m


def test_energy_signs_and_couplings():
    up = lattice("up", 8, 8)
    cb = lattice("checkerboard", 8, 8)
    assert energy_per_site(up) == -2.0  # ferromagnetic ground state
    assert energy_per_site(cb) == 2.0
    assert energy_per_site(cb, J=-1.0) == -2.0  # antiferromagnetic ground state
    assert energy_per_site(up, h=0.3) == pytest.approx(-2.3, abs=1e-15)
    assert energy_per_site(-up, h=0.3) == pytest.approx(-1.7, abs=1e-15)
    e = measure(lattice("double_stripes_x", 8, 8))["energy"]
    assert e == -1.0
    # no negative zero from -J * 0
    zero = measure(np.stack([lattice("stripes_x", 4, 4)]))["energy"]
    assert np.signbit(zero).sum() == 0


def direct_loop(s: np.ndarray, J: float = 1.0, h: float = 0.0) -> dict:
    """Observables of one lattice by an explicit double loop with modular indices."""
    lx, ly = s.shape
    n = lx * ly
    m = cx = cy = d1 = d2 = 0
    for i in range(lx):
        for j in range(ly):
            v = int(s[i, j])
            m += v
            cx += v * int(s[(i + 1) % lx, j])
            cy += v * int(s[i, (j + 1) % ly])
            d1 += v * int(s[(i + 1) % lx, (j + 1) % ly])
            d2 += v * int(s[(i + 1) % lx, (j - 1) % ly])
    m, cx, cy = m / n, cx / n, cy / n
    return {
        "energy": -J * (cx + cy) - h * m,
        "magnetization": m,
        "abs_m": abs(m),
        "m2": m * m,
        "m4": m**4,
        "c10x": cx,
        "c10y": cy,
        "c11": (d1 + d2) / (2 * n),
    }


@pytest.mark.parametrize("shape", [(7, 5), (2, 3, 6, 9), (4, 1, 3)])
def test_random_lattices_against_direct_loop(backend, shape):
    rng = np.random.default_rng(sum(shape))
    s = rng.choice(np.array([-1, 1], dtype=np.int8), size=shape)
    J, h = 0.7, -0.2
    obs = measure(on(backend, s), J=J, h=h)
    assert set(obs) == set(OBSERVABLES)
    batch = shape[:-2]
    flat = s.reshape((-1,) + shape[-2:])
    ref = [direct_loop(x, J, h) for x in flat]
    xp = namespace(backend)
    for key, val in obs.items():
        if backend != "numpy":
            assert backend_of(val) == backend
            assert val.dtype == xp.float64
        assert tuple(val.shape) == batch
        np.testing.assert_allclose(as_np(val).reshape(-1), [r[key] for r in ref], rtol=1e-14, atol=1e-15)


def test_numpy_and_strict_identical():
    xps = pytest.importorskip("array_api_strict")
    rng = np.random.default_rng(3)
    s = rng.choice(np.array([-1, 1], dtype=np.int8), size=(5, 16, 24))
    a = measure(s, J=1.3, h=0.1)
    b = measure(xps.asarray(s), J=1.3, h=0.1)
    for key in OBSERVABLES:
        assert type(b[key]).__module__.startswith("array_api_strict")
        np.testing.assert_array_equal(as_np(a[key]), as_np(b[key]))


def test_other_integer_dtypes():
    rng = np.random.default_rng(4)
    s = rng.choice(np.array([-1, 1], dtype=np.int8), size=(3, 6, 6))
    a = measure(s)
    for dt in (np.int16, np.int32, np.int64):
        b = measure(s.astype(dt))
        for key in OBSERVABLES:
            np.testing.assert_array_equal(a[key], b[key])


def test_bad_spins():
    with pytest.raises(ValueError, match=r"spins must have shape \(\.\.\., Lx, Ly\)"):
        measure(np.ones(5, dtype=np.int8))
    with pytest.raises(TypeError, match="spins must be an integer array"):
        measure(np.ones((4, 4)))
    with pytest.raises(TypeError, match="spins must be an integer array"):
        measure(np.ones((4, 4), dtype=bool))
    with pytest.raises(ValueError, match="non-empty lattice"):
        measure(np.ones((3, 0, 4), dtype=np.int8))
    with pytest.raises(ValueError, match="J must be finite"):
        energy_per_site(np.ones((4, 4), dtype=np.int8), J=float("inf"))
    with pytest.raises(TypeError, match="h must be a real number"):
        measure(np.ones((4, 4), dtype=np.int8), h="x")


# ---------------------------------------------------------------------------------------------
# Exact enumeration of the 4x4 torus
# ---------------------------------------------------------------------------------------------

L4 = 4


@pytest.fixture(scope="module")
def exact4():
    """Exact Boltzmann averages at K_c on the 4x4 torus from all 2^16 configurations."""
    k = np.arange(2 ** (L4 * L4), dtype=np.int64)
    bits = (k[:, None] >> np.arange(L4 * L4)) & 1
    spins = (1 - 2 * bits).astype(np.int8).reshape(-1, L4, L4)
    obs = {key: np.asarray(v) for key, v in measure(spins).items()}
    n = L4 * L4
    w = np.exp(-K_C * n * (obs["energy"] - obs["energy"].min()))
    w /= w.sum()

    def avg(x):
        return float(np.dot(w, x))

    e, am = obs["energy"], obs["abs_m"]
    m2, m4 = avg(obs["m2"]), avg(obs["m4"])
    return {
        "energy": avg(e),
        "magnetization": avg(obs["magnetization"]),
        "abs_m": avg(am),
        "m2": m2,
        "m4": m4,
        "binder": 1.0 - m4 / (3.0 * m2 * m2),
        "susceptibility": K_C * n * m2,
        "susceptibility_connected": K_C * n * (m2 - avg(am) ** 2),
        "specific_heat": K_C**2 * n * (avg(e * e) - avg(e) ** 2),
        "c_me": n * (avg(am * np.abs(e)) - avg(am) * avg(np.abs(e))) / avg(am),
        "c10x": avg(obs["c10x"]),
        "c10y": avg(obs["c10y"]),
        "c11": avg(obs["c11"]),
    }


def test_exact_enumeration_matches_ferdinand_fisher(exact4):
    """Energy normalisation and sign conventions against the exact finite-torus values (DESIGN §5)."""
    assert exact4["energy"] == pytest.approx(-1.565623787638, abs=1e-11)
    assert exact4["specific_heat"] == pytest.approx(0.783266825929, abs=1e-11)
    assert exact4["magnetization"] == pytest.approx(0.0, abs=1e-13)  # Z2 symmetry, up to round-off
    assert exact4["c10x"] == pytest.approx(exact4["c10y"], rel=1e-13)
    assert exact4["energy"] == pytest.approx(-2 * exact4["c10x"], rel=1e-13)


def heatbath_series(L: int, beta: float, n_sweeps: int, n_chains: int, seed: int, n_therm: int = 200) -> dict:
    """Checkerboard heat bath (test-local, NumPy): time series of measure() with shape (R, N)."""
    rng = np.random.default_rng(seed)
    s = rng.choice(np.array([-1, 1], dtype=np.int8), size=(n_chains, L, L))
    i, j = np.indices((L, L))
    masks = [((i + j) % 2) == c for c in (0, 1)]
    hist = np.empty((n_sweeps, n_chains, L, L), dtype=np.int8)
    for t in range(n_therm + n_sweeps):
        for mask in masks:
            s32 = s.astype(np.int32)
            nb = np.roll(s32, 1, -1) + np.roll(s32, -1, -1) + np.roll(s32, 1, -2) + np.roll(s32, -1, -2)
            p_up = 1.0 / (1.0 + np.exp(-2.0 * beta * nb))
            new = np.where(rng.random(s.shape) < p_up, 1, -1).astype(np.int8)
            s = np.where(mask, new, s)
        if t >= n_therm:
            hist[t - n_therm] = s
    return {key: np.asarray(v).T.copy() for key, v in measure(hist).items()}  # (N, R) -> (R, N)


def test_analyze_series_against_exact_enumeration(exact4):
    """Monte Carlo at K_c on 4x4 (8 chains x 4000 sweeps): every estimate within 3.5 of its
    error of the exact value (13 comparisons: family-wise false-alarm rate ~0.6 %), and the
    errors are honest, i.e. not hugely overestimated either.
    """
    series = heatbath_series(L4, K_C, n_sweeps=4000, n_chains=8, seed=1)
    res = analyze_series(series, beta=K_C, n_sites=L4 * L4)
    expected_keys = [
        "energy", "magnetization", "abs_m", "m2", "m4", "binder", "susceptibility",
        "susceptibility_connected", "specific_heat", "c_me", "c10x", "c10y", "c11",
    ]  # fmt: skip
    assert list(res) == expected_keys
    pulls = {}
    for key in expected_keys:
        est = res[key]
        assert isinstance(est, Estimate) and est.n == 32_000
        assert est.error > 0 and est.tau_int >= 0.5
        pulls[key] = (est.mean - exact4[key]) / est.error
    assert all(abs(p) < 3.5 for p in pulls.values()), pulls
    # if the errors were inflated (e.g. by a wrong normalisation) all pulls would be tiny
    assert np.sqrt(np.mean(np.square(list(pulls.values())))) > 0.3, pulls


# ---------------------------------------------------------------------------------------------
# Ensemble estimators
# ---------------------------------------------------------------------------------------------


def test_binder_limits():
    rng = np.random.default_rng(5)
    # ordered phase: |m| fixed -> U4 = 2/3 exactly, no fluctuation
    m = 0.8 * rng.choice([-1.0, 1.0], size=1000)
    est = binder_cumulant(m**2, m**4)
    assert est.mean == pytest.approx(2.0 / 3.0, rel=1e-14) and est.error == 0.0
    # disordered phase: Gaussian m -> <m^4> = 3 <m^2>^2, U4 = 0
    m = rng.standard_normal(200_000)
    est = binder_cumulant(m**2, m**4)
    assert abs(est.mean) < 4 * est.error
    # the error of U4 from linear propagation: for Gaussian m, var(U4) -> 8/(3N) (delta method)
    assert est.error == pytest.approx(math.sqrt(8.0 / (3.0 * m.size)), rel=0.1)


def test_susceptibility_formulas():
    rng = np.random.default_rng(6)
    n = 20_000
    m = 0.3 + 0.1 * rng.standard_normal(n)
    m2 = m**2
    beta, ns = 0.4, 64
    chi0 = susceptibility(m, m2, beta, ns)
    ref = gamma_method(beta * ns * m2)
    assert chi0.mean == pytest.approx(beta * ns * m2.mean(), rel=1e-14)
    assert chi0.error == pytest.approx(ref.error, rel=1e-9)
    assert susceptibility(None, m2, beta, ns).mean == chi0.mean
    chih = susceptibility(m, m2, beta, ns, h=0.1)
    assert chih.mean == pytest.approx(beta * ns * (m2.mean() - m.mean() ** 2), rel=1e-12)
    assert chih.mean == pytest.approx(beta * ns * 0.01, rel=0.05)
    con = susceptibility_connected(np.abs(m), m2, beta, ns)
    assert con.mean == pytest.approx(beta * ns * (m2.mean() - np.abs(m).mean() ** 2), rel=1e-12)
    with pytest.raises(ValueError, match=r"m \(the magnetization series\) is required when h != 0"):
        susceptibility(None, m2, beta, ns, h=0.1)
    with pytest.raises(ValueError, match="beta must be finite and >= 0"):
        susceptibility(m, m2, -1.0, ns)
    with pytest.raises(ValueError, match="n_sites must be a positive integer"):
        susceptibility(m, m2, beta, 0)
    with pytest.raises(TypeError, match="n_sites must be a positive integer"):
        specific_heat(m, beta, 64.0)


@pytest.fixture(scope="module")
def pe():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # pyerrors imports scipy.odr
        return pytest.importorskip("pyerrors")


def test_ensemble_estimators_match_pyerrors(pe):
    """Specific heat, c_me and the Binder cumulant of a realistic (correlated) chain, against
    pyerrors' automatic differentiation and Γ-method (one replica: identical conventions)."""
    series = heatbath_series(8, K_C, n_sweeps=6000, n_chains=1, seed=2, n_therm=300)
    e, am, m2, m4 = (series[k][0] for k in ("energy", "abs_m", "m2", "m4"))
    ns, beta = 64, K_C

    def obs(x):
        return pe.Obs([x], ["ens"])

    cases = [
        (specific_heat(e, beta, ns), beta**2 * ns * (obs(e * e) - obs(e) * obs(e))),
        (
            magnetization_energy_cumulant(am, e, ns),
            ns * (obs(am * np.abs(e)) - obs(am) * obs(np.abs(e))) / obs(am),
        ),
        (binder_cumulant(m2, m4), 1 - obs(m4) / (3 * obs(m2) * obs(m2))),
        (susceptibility_connected(am, m2, beta, ns), beta * ns * (obs(m2) - obs(am) * obs(am))),
    ]
    for ours, theirs in cases:
        theirs.gamma_method(S=2.0)
        assert ours.mean == pytest.approx(theirs.value, rel=1e-12)
        assert ours.window == theirs.e_windowsize["ens"]
        assert ours.error == pytest.approx(theirs.dvalue, rel=1e-8)
        assert ours.tau_int > 0.5


def test_c_me_sign_convention():
    """c_me uses |e|: the sign of the energy convention does not matter."""
    rng = np.random.default_rng(9)
    am = np.abs(0.5 + 0.1 * rng.standard_normal(5000))
    e = -1.4 - 0.2 * (am - 0.5) + 0.05 * rng.standard_normal(5000)
    a = magnetization_energy_cumulant(am, e, 16)
    b = magnetization_energy_cumulant(am, -e, 16)
    assert a.mean == b.mean and a.error == b.error
    ref = derived(lambda p, q, r: 16 * (p - q * r) / q, am * np.abs(e), am, np.abs(e))
    assert a.mean == ref.mean and a.error == ref.error
    assert a.mean == pytest.approx(16 * 0.2 * 0.01 / 0.5, rel=0.2)  # 16 cov(|m|,|e|)/<|m|>


def test_analyze_series_partial_inputs_and_errors():
    rng = np.random.default_rng(10)
    x = lambda: rng.random((2, 500))
    res = analyze_series({"m2": x(), "m4": x(), "other": "ignored"}, beta=0.4, n_sites=16)
    assert list(res) == ["m2", "m4", "binder", "susceptibility"]
    res = analyze_series({"energy": x()}, beta=0.4, n_sites=16)
    assert list(res) == ["energy", "specific_heat"]
    # h != 0 needs <m> for the susceptibility
    res = analyze_series({"m2": x()}, beta=0.4, n_sites=16, h=0.1)
    assert "susceptibility" not in res
    res = analyze_series({"m2": x(), "magnetization": x()}, beta=0.4, n_sites=16, h=0.1)
    assert "susceptibility" in res
    with pytest.raises(ValueError, match="same shape"):
        analyze_series({"m2": x(), "m4": rng.random((2, 400))}, beta=0.4, n_sites=16)
    with pytest.raises(TypeError, match="obs must be a mapping"):
        analyze_series([1, 2, 3], beta=0.4, n_sites=16)
    with pytest.raises(ValueError, match=r"obs\['energy'\] contains non-finite"):
        analyze_series({"energy": np.full(100, np.nan)}, beta=0.4, n_sites=16)


def test_analyze_series_accepts_backend_arrays():
    xps = pytest.importorskip("array_api_strict")
    rng = np.random.default_rng(11)
    e = rng.random(300)
    a = analyze_series({"energy": e}, beta=0.4, n_sites=16)
    b = analyze_series({"energy": xps.asarray(e)}, beta=0.4, n_sites=16)
    assert a["energy"] == b["energy"] and a["specific_heat"] == b["specific_heat"]
