"""Tests of the Γ-method (U. Wolff, Comput. Phys. Commun. 156 (2004) 143) and the jackknife.

Reference processes: AR(1), x_t = rho x_{t-1} + eps_t with unit-variance Gaussian noise, started
in its stationary distribution. Exactly: var(x) = 1/(1 - rho^2), rho(t) = rho^|t|,
tau_int = (1 + rho) / (2 (1 - rho)), and the variance of the mean of N samples tends to
2 tau_int var(x) / N = 1 / ((1 - rho)^2 N).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.signal import lfilter

from isingcore.measure import (
    Estimate,
    GammaMethodWarning,
    normalized_autocorrelation,
    derived,
    format_value_error,
    gamma_method,
    jackknife,
)


def ar1(rho: float, n: int, rng: np.random.Generator, shape: tuple = ()) -> np.ndarray:
    """Stationary AR(1) series of unit-variance innovations, shape ``shape + (n,)``."""
    eps = rng.standard_normal(shape + (n,))
    x_prev = rng.standard_normal(shape + (1,)) / math.sqrt(1.0 - rho * rho)
    x, _ = lfilter([1.0], [1.0, -rho], eps, axis=-1, zi=rho * x_prev)
    return x


def tau_exact(rho: float) -> float:
    return (1.0 + rho) / (2.0 * (1.0 - rho))


@pytest.fixture(scope="module")
def pe():
    with warnings.catch_warnings():
        # pyerrors imports scipy.odr, deprecated in SciPy 1.17 (nothing to do with our code)
        warnings.simplefilter("ignore", DeprecationWarning)
        return pytest.importorskip("pyerrors")


def pe_gamma(pe, obs, S=2.0):
    obs.gamma_method(S=S)
    (name,) = obs.mc_names
    return obs.value, obs.dvalue, obs.e_tauint[name], obs.e_dtauint[name], obs.e_windowsize[name]


# ---------------------------------------------------------------------------------------------
# Known processes
# ---------------------------------------------------------------------------------------------


def test_iid_gaussian():
    rng = np.random.default_rng(11)
    n = 100_000
    x = 5.0 + 2.0 * rng.standard_normal(n)
    est = gamma_method(x)
    assert isinstance(est, Estimate)
    assert est.n == n
    assert est.mean == pytest.approx(x.mean(), rel=1e-15)
    # tau_int = 1/2 for uncorrelated data (clamped from below at 1/2)
    assert 0.5 <= est.tau_int < 0.5 + 3 * max(est.tau_int_error, 1e-3)
    assert est.window < 10
    # error = sigma / sqrt(N) with the true sigma = 2, within 3 errors of the error
    assert abs(est.error - 2.0 / math.sqrt(n)) < 3 * est.error_of_error
    # and it is the mean's true spread: |mean - 5| within 4 sigma
    assert abs(est.mean - 5.0) < 4 * est.error


@pytest.mark.parametrize("rho,n", [(0.5, 100_000), (0.9, 200_000), (0.99, 400_000)])
def test_ar1_tau_int_and_error(rho, n):
    """tau_int and the error of the mean against the exact AR(1) values.

    At these N an estimator that ignores autocorrelation (tau_int = 1/2, error = sigma/sqrt N)
    is excluded by many standard deviations: e.g. rho = 0.5 has tau_int = 1.5 and
    tau_int_error ~ 0.02.
    """
    rng = np.random.default_rng(int(rho * 1000))
    x = ar1(rho, n, rng)
    est = gamma_method(x)
    tau = tau_exact(rho)
    assert abs(est.tau_int - tau) < 3 * est.tau_int_error, est
    # the naive value must be far outside the band we accept
    assert abs(0.5 - tau) > 10 * est.tau_int_error
    err_exact = 1.0 / ((1.0 - rho) * math.sqrt(n))
    assert abs(est.error - err_exact) < 3 * est.error_of_error, (est, err_exact)
    naive = x.std() / math.sqrt(n)
    assert abs(naive - err_exact) > 10 * est.error_of_error
    # the window is a few tau_int (S = 2): far more than 1, far less than N/2
    assert 3 * tau < est.window < 20 * tau


def test_window_grows_with_S():
    rng = np.random.default_rng(5)
    x = ar1(0.9, 50_000, rng)
    w = [gamma_method(x, S=s).window for s in (1.0, 1.5, 2.0, 3.0)]
    assert w == sorted(w) and w[0] < w[-1]


def test_coverage_of_error_bars():
    """Across independent AR(1) chains, |mean - 0| < error in ~68.3 % and < 2 error in ~95.4 %.

    400 chains of 4000 samples at rho = 0.9 (tau_int = 9.5). Binomial sd of the 1-sigma
    fraction: 0.023, hence the band [0.61, 0.75]. A method that ignored autocorrelation would
    underestimate the error by sqrt(2 tau_int) = 4.4 and reach only ~18 % coverage.
    """
    rng = np.random.default_rng(2024)
    m = 400
    xs = ar1(0.9, 4000, rng, shape=(m,))
    ests = [gamma_method(x) for x in xs]
    pulls = np.array([abs(e.mean) / e.error for e in ests])
    assert 0.61 < np.mean(pulls < 1.0) < 0.75
    assert 0.92 < np.mean(pulls < 2.0) < 0.98
    naive = np.array([abs(x.mean()) / (x.std() / math.sqrt(x.size)) for x in xs])
    assert np.mean(naive < 1.0) < 0.35  # the same test rejects the naive error


def test_constant_series():
    for value in (0.0, 1.0, 0.1, -1234.5678):
        est = gamma_method(np.full(1000, value))
        assert est.mean == pytest.approx(value, rel=1e-15, abs=0)
        assert (est.error, est.tau_int, est.tau_int_error, est.window) == (0.0, 0.5, 0.0, 0)
    est = gamma_method(np.full((3, 50), 2.0))
    assert est.error == 0.0 and est.n == 150


def test_anticorrelated_series_is_conservative():
    # x_t = eps_t - eps_{t-1}: rho(1) = -1/2, true variance of the mean ~ 0; tau_int clamped at 1/2
    rng = np.random.default_rng(3)
    e = rng.standard_normal(10_001)
    x = np.diff(e)
    est = gamma_method(x)
    # clamped at 1/2; the bias correction then gives (1/2)(1 + 3/N)/(1 + 1/N)
    assert est.tau_int == pytest.approx(0.5 * (1 + 3 / x.size) / (1 + 1 / x.size), rel=1e-12)
    assert est.window == 1
    assert est.error == pytest.approx(x.std() / math.sqrt(x.size), rel=1e-3)


def test_normalized_autocorrelation():
    rng = np.random.default_rng(8)
    x = ar1(0.8, 200_000, rng)
    rho = normalized_autocorrelation(x, max_lag=10)
    assert rho.shape == (11,) and rho[0] == 1.0
    np.testing.assert_allclose(rho, 0.8 ** np.arange(11), atol=0.02)
    # replicas: pooled mean, lagged products only inside each chain, R (N - t) pairs per lag
    y = np.stack([x[:1000], x[1000:2000]])
    r2 = normalized_autocorrelation(y, max_lag=3)
    d = y - y.mean()
    direct = [np.sum(d[:, : 1000 - t] * d[:, t:]) / (2 * (1000 - t)) for t in range(4)]
    np.testing.assert_allclose(r2, np.array(direct) / direct[0], rtol=1e-12)
    np.testing.assert_array_equal(normalized_autocorrelation(np.ones(10)), np.eye(1, 6).ravel())


def test_replicas_pool():
    """R independent chains: the pooled estimate has the exact AR(1) error of R N samples."""
    rng = np.random.default_rng(12)
    x = ar1(0.9, 20_000, rng, shape=(4,))
    est = gamma_method(x)
    assert est.n == 80_000
    assert est.mean == pytest.approx(x.mean(), rel=1e-14)
    tau = tau_exact(0.9)
    assert abs(est.tau_int - tau) < 3 * est.tau_int_error
    assert abs(est.error - 1.0 / (0.1 * math.sqrt(80_000))) < 3 * est.error_of_error


def wolff_reference(a: np.ndarray, S: float = 2.0):
    """Plain transcription of Wolff's formulas (direct sums, no FFT), for replicas (R, N).

    Pooled mean; Gamma(t) = sum_r sum_i d_{i,r} d_{i+t,r} / (R (N - t)); first W with
    g(W) = exp(-W/tau) - tau/sqrt(W R N) < 0, tau = S / ln((2 ti + 1)/(2 ti - 1)), ti >= 1/2;
    C(W) -> C(W) (1 + (2W+1)/(RN)), Gamma(0) -> Gamma(0) + C(W)/(RN).
    Returns (mean, error, tau_int, tau_int_error, window).
    """
    a = np.atleast_2d(a)
    R, N = a.shape
    ntot = R * N
    mean = a.mean()
    d = a - mean
    gamma = [sum(float(np.dot(d[r, : N - t], d[r, t:])) for r in range(R)) / (R * (N - t)) for t in range(N // 2 + 1)]
    ti = 0.5
    window = N // 2
    for W in range(1, N // 2 + 1):
        ti = max(0.5 + sum(gamma[1 : W + 1]) / gamma[0], 0.5)
        tau = S / math.log((2 * ti + 1) / (2 * ti - 1)) if ti > 0.5 else 1e-300
        if math.exp(-W / tau) - tau / math.sqrt(W * ntot) < 0:
            window = W
            break
    C = 2 * ti * gamma[0] * (1 + (2 * window + 1) / ntot)
    g0 = gamma[0] + 2 * ti * gamma[0] / ntot
    tau_int = max(C / (2 * g0), 0.5)
    return mean, math.sqrt(C / ntot), tau_int, 2 * tau_int * math.sqrt((window + 0.5 - tau_int) / ntot), window


@pytest.mark.parametrize("shape,rho", [((3000,), 0.8), ((1, 2000), 0.0), ((4, 800), 0.9), ((7, 300), 0.5)])
def test_matches_direct_transcription_of_wolff(shape, rho):
    rng = np.random.default_rng(sum(shape) + int(10 * rho))
    x = ar1(rho, shape[-1], rng, shape=shape[:-1]) + 0.3 * rng.standard_normal(shape[:-1] + (1,))
    est = gamma_method(x)
    mean, err, tau, dtau, window = wolff_reference(x)
    assert est.window == window
    assert est.mean == pytest.approx(mean, rel=1e-14)
    assert est.error == pytest.approx(err, rel=1e-10)
    assert est.tau_int == pytest.approx(tau, rel=1e-10)
    assert est.tau_int_error == pytest.approx(dtau, rel=1e-10)


def test_chopped_chain_as_replicas():
    """One chain cut into R pieces and analysed as replicas gives the error of the whole chain.

    Pooled-mean centring (Wolff §3) keeps the spread of the segment means; centring each piece
    on its own mean would bias the error low by about (R-1)(2W+1)/(2N) (here ~9 %). Averaged
    over 8 chains we require agreement within a quarter of that.
    """
    diffs, bias = [], []
    for seed in range(8):
        rng = np.random.default_rng(300 + seed)
        x = ar1(0.9, 40_000, rng)
        whole = gamma_method(x)
        pieces = gamma_method(x.reshape(40, 1000))
        assert pieces.mean == pytest.approx(whole.mean, rel=1e-12, abs=1e-15)
        diffs.append(pieces.error / whole.error - 1)
        bias.append(39 * (2 * whole.window + 1) / (2 * 40_000))
    assert abs(np.mean(diffs)) < 0.25 * np.mean(bias)


# ---------------------------------------------------------------------------------------------
# Agreement with pyerrors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rho,n", [(0.0, 5000), (0.5, 10_000), (0.9, 20_000), (0.99, 100_000)])
def test_primary_matches_pyerrors(pe, rho, n):
    """Mean, window and error agree with pyerrors to round-off.

    tau_int and its error differ by a convention at relative order W/N (here tau_int is taken
    from the bias-corrected Gamma including t = 0, pyerrors leaves Gamma(0) uncorrected), so
    they are compared at a relative tolerance of 2(2W+1)/N, which is much smaller than
    tau_int_error / tau_int ~ sqrt(4W/N).
    """
    rng = np.random.default_rng(100 + int(100 * rho))
    x = 3.0 + ar1(rho, n, rng)
    est = gamma_method(x, S=2.0)
    value, dvalue, tau, dtau, window = pe_gamma(pe, pe.Obs([x], ["ens"]))
    assert est.window == window
    assert est.mean == pytest.approx(value, rel=1e-14)
    assert est.error == pytest.approx(dvalue, rel=1e-10)
    conv = 2 * (2 * window + 1) / n
    assert est.tau_int == pytest.approx(tau, rel=conv)
    assert est.tau_int_error == pytest.approx(dtau, rel=conv)
    assert conv * est.tau_int < 0.2 * est.tau_int_error


@pytest.mark.parametrize("S", [1.0, 1.5, 3.0])
def test_S_matches_pyerrors(pe, S):
    rng = np.random.default_rng(7)
    x = ar1(0.8, 20_000, rng)
    est = gamma_method(x, S=S)
    value, dvalue, tau, dtau, window = pe_gamma(pe, pe.Obs([x], ["ens"]), S=S)
    assert est.window == window
    assert est.error == pytest.approx(dvalue, rel=1e-10)


def test_derived_ratio_matches_pyerrors(pe):
    rng = np.random.default_rng(21)
    n = 20_000
    a = 2.0 + 0.1 * ar1(0.9, n, rng)
    b = 1.0 + 0.5 * (a - 2.0) + 0.05 * ar1(0.8, n, rng)  # correlated with a
    est = derived(lambda p, q: p / q, a, b)
    oa, ob = pe.Obs([a], ["ens"]), pe.Obs([b], ["ens"])
    value, dvalue, tau, dtau, window = pe_gamma(pe, oa / ob)
    assert est.mean == pytest.approx(value, rel=1e-14)
    assert est.window == window
    # numerical derivatives (5-point stencil) against pyerrors' automatic differentiation
    assert est.error == pytest.approx(dvalue, rel=1e-8)
    assert est.tau_int == pytest.approx(tau, rel=2 * (2 * window + 1) / n)
    # ignoring the correlation of a and b would give a very different error
    indep = math.hypot(gamma_method(a).error / b.mean(), gamma_method(b).error * a.mean() / b.mean() ** 2)
    assert abs(indep - est.error) > 0.3 * est.error


def test_derived_nonlinear_matches_pyerrors(pe):
    """A Binder-like combination of three primaries."""
    rng = np.random.default_rng(22)
    n = 30_000
    m = 0.3 * ar1(0.95, n, rng) + 0.05 * rng.standard_normal(n)
    m2, m4, am = m**2, m**4, np.abs(m)
    est = derived(lambda p, q, r: 1.0 - q / (3.0 * p * p) + np.log(r), m2, m4, am)
    o2, o4, oa = (pe.Obs([v], ["ens"]) for v in (m2, m4, am))
    value, dvalue, tau, dtau, window = pe_gamma(pe, 1.0 - o4 / (3.0 * o2 * o2) + np.log(oa))
    assert est.mean == pytest.approx(value, rel=1e-13)
    assert est.window == window
    assert est.error == pytest.approx(dvalue, rel=1e-8)


def test_replicas_match_pyerrors_when_replica_means_agree(pe):
    """With equal replica means, pooled and per-replica centring coincide: exact agreement.

    This checks the replica machinery (N - R t normalisation, no lag across chains, the window
    criterion with the total N, the bias correction with the total N).
    """
    rng = np.random.default_rng(31)
    r, n = 5, 4000
    x = ar1(0.9, n, rng, shape=(r,))
    x = x - x.mean(axis=1, keepdims=True) + 1.0
    est = gamma_method(x)
    obs = pe.Obs(list(x), [f"ens|r{i}" for i in range(r)])
    value, dvalue, tau, dtau, window = pe_gamma(pe, obs)
    assert est.n == r * n
    assert est.window == window
    assert est.mean == pytest.approx(value, rel=1e-14)
    assert est.error == pytest.approx(dvalue, rel=1e-10)
    assert est.tau_int == pytest.approx(tau, rel=2 * (2 * window + 1) / (r * n))
    # derived with replicas
    y = x**2 + 0.1 * ar1(0.5, n, rng, shape=(r,))
    y = y - y.mean(axis=1, keepdims=True) + 2.0
    est = derived(lambda p, q: q - p * p, x, y)
    ox = pe.Obs(list(x), [f"ens|r{i}" for i in range(r)])
    oy = pe.Obs(list(y), [f"ens|r{i}" for i in range(r)])
    value, dvalue, tau, dtau, window = pe_gamma(pe, oy - ox * ox)
    assert est.mean == pytest.approx(value, rel=1e-13)
    assert est.window == window
    assert est.error == pytest.approx(dvalue, rel=1e-8)


def test_replicas_close_to_pyerrors_in_general(pe):
    """Pooled-mean centring (Wolff §3) adds the spread of the replica means to Gamma(t).

    Expected difference of C_F(W): (2W+1) (R-1)/N C_F times a chi^2_{R-1}/(R-1) variable, i.e.
    a relative difference of the error of about (2W+1)(R-1)/(2N); we allow 4 times that.
    """
    rng = np.random.default_rng(32)
    r, n = 4, 10_000
    x = 1.0 + ar1(0.9, n, rng, shape=(r,))
    est = gamma_method(x)
    value, dvalue, tau, dtau, window = pe_gamma(pe, pe.Obs(list(x), [f"ens|r{i}" for i in range(r)]))
    assert est.mean == pytest.approx(value, rel=1e-14)
    bound = 4 * (2 * window + 1) * (r - 1) / (2 * r * n)
    assert abs(est.error / dvalue - 1) < bound
    assert abs(est.window - window) <= 0.1 * window


# ---------------------------------------------------------------------------------------------
# Derived quantities and jackknife
# ---------------------------------------------------------------------------------------------


def test_derived_linear_equals_primary():
    rng = np.random.default_rng(41)
    x = ar1(0.7, 10_000, rng)
    a = gamma_method(3.0 * x - 2.0)
    b = derived(lambda p: 3.0 * p - 2.0, x)
    assert b.mean == pytest.approx(a.mean, rel=1e-14)
    assert b.error == pytest.approx(a.error, rel=1e-10)
    assert b.window == a.window
    assert b.tau_int == pytest.approx(a.tau_int, rel=1e-10)


def test_derived_difference_of_identical_series_is_exact():
    rng = np.random.default_rng(42)
    x = ar1(0.5, 5000, rng)
    est = derived(lambda p, q: p - q, x, x.copy())
    assert est.mean == 0.0
    assert est.error < 1e-10 * gamma_method(x).error


def test_derived_gradient_steps_stay_in_the_linear_regime():
    """f = log(<x> - c) with c 100 naive errors below the mean (1e-4 of the mean): the
    differentiation steps must not reach the singularity, and the error is |f'| sigma."""
    rng = np.random.default_rng(43)
    x = 1.0 + 1e-4 * rng.standard_normal(10_000)  # naive error of the mean 1e-6
    c = x.mean() - 1e-4
    est = derived(lambda p: np.log(p - c), x)
    ref = gamma_method(x)
    assert est.mean == pytest.approx(math.log(1e-4), rel=1e-9)
    assert est.error == pytest.approx(ref.error / 1e-4, rel=1e-6)
    assert est.window == ref.window


def test_jackknife_of_mean_is_binned_standard_error():
    """For f = identity the jackknife error is exactly std(bin means)/sqrt(n_b) (ddof=1)."""
    rng = np.random.default_rng(51)
    x = ar1(0.9, 10_000, rng)
    est = jackknife(lambda p: p, x, n_bins=40)
    bins = x.reshape(40, 250).mean(axis=1)
    assert est.mean == pytest.approx(x.mean(), rel=1e-14)
    assert est.error == pytest.approx(bins.std(ddof=1) / math.sqrt(40), rel=1e-10)
    assert est.window == 250


def test_jackknife_agrees_with_gamma_method_for_a_ratio():
    rng = np.random.default_rng(52)
    n = 100_000
    a = 2.0 + 0.1 * ar1(0.9, n, rng)
    b = 1.0 + 0.5 * (a - 2.0) + 0.05 * ar1(0.8, n, rng)
    g = derived(lambda p, q: p / q, a, b)
    j = jackknife(lambda p, q: p / q, a, b, n_bins=100)
    assert j.mean == g.mean
    # relative error of the binned error estimate ~ 1/sqrt(2 (n_b - 1)) = 7 %
    assert abs(j.error / g.error - 1) < 3 / math.sqrt(2 * 99) + 3 * g.error_of_error / g.error
    assert abs(j.tau_int - g.tau_int) < 3 * math.hypot(j.tau_int_error, g.tau_int_error)
    # without binning (bins of length 1) the autocorrelation is missed
    j1 = jackknife(lambda p, q: p / q, a[:5000], b[:5000], n_bins=5000)
    g1 = derived(lambda p, q: p / q, a[:5000], b[:5000])
    assert j1.error < 0.6 * g1.error


def test_jackknife_replicas_and_bad_bins():
    rng = np.random.default_rng(53)
    x = ar1(0.5, 1000, rng, shape=(3,))
    est = jackknife(lambda p: p, x)  # default: smallest multiple of R >= 50, i.e. 51
    assert est.window == 1000 // 17
    with pytest.raises(ValueError, match="n_bins must be a multiple of the number of replicas R=3"):
        jackknife(lambda p: p, x, n_bins=50)
    with pytest.raises(ValueError, match="n_bins"):
        jackknife(lambda p: p, x, n_bins=1)
    with pytest.raises(ValueError, match="too many"):
        jackknife(lambda p: p, x, n_bins=3 * 1001)
    with pytest.raises(TypeError, match="n_bins must be an integer"):
        jackknife(lambda p: p, x, n_bins=2.5)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


def test_bad_input():
    x = np.arange(100.0)
    with pytest.raises(ValueError, match=r"series contains non-finite values \(NaN at replica 0, index 3\)"):
        gamma_method(np.where(np.arange(100) == 3, np.nan, x))
    with pytest.raises(ValueError, match="non-finite values .inf"):
        gamma_method(np.where(np.arange(100) == 3, np.inf, x))
    with pytest.raises(ValueError, match="series is too short: need at least 4 samples"):
        gamma_method(np.ones(3))
    with pytest.raises(ValueError, match=r"must have shape \(N,\) or \(R, N\)"):
        gamma_method(np.ones((2, 3, 10)))
    with pytest.raises(ValueError, match=r"must have shape \(N,\) or \(R, N\)"):
        gamma_method(np.float64(1.0))
    with pytest.raises(ValueError, match="S must be a positive finite number"):
        gamma_method(x, S=0.0)
    with pytest.raises(ValueError, match="S must be a positive finite number"):
        gamma_method(x, S=float("nan"))
    with pytest.raises(TypeError, match="must be real"):
        gamma_method(x + 1j)
    with pytest.raises(ValueError, match="same shape"):
        derived(lambda p, q: p / q, x, x[:50])
    with pytest.raises(ValueError, match="f must return a scalar"):
        derived(lambda p, q: np.array([p, q]), x, x)
    with pytest.raises(ValueError, match="at least one series"):
        derived(lambda: 1.0)
    with pytest.raises(ValueError, match=r"series\[1\] contains non-finite"):
        derived(lambda p, q: p / q, x, np.full(100, np.nan))
    with pytest.raises(ValueError, match="f evaluated at the means gave"):
        derived(lambda p: math.inf * p, x)


def test_windowing_failure_warns():
    """With one replica g(N/2) < 0 always holds (u exp(-u) <= 1/e < 1/sqrt 2), so the window is
    always found; with many short replicas whose means differ (unequilibrated chains) it is not.
    """
    rng = np.random.default_rng(61)
    x = rng.standard_normal((50, 1)) + 0.01 * rng.standard_normal((50, 20))
    with pytest.warns(GammaMethodWarning, match="automatic windowing did not converge"):
        est = gamma_method(x)
    assert est.window == 10


# ---------------------------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value,error,text",
    [
        (-1.45312, 0.00123, "-1.4531(12)"),
        (0.5, 0.0996, "0.50(10)"),
        (2.0, 0.5, "2.00(50)"),
        (1234.4, 12.3, "1234(12)"),
        (1.0, 0.0, "1.0(0)"),
        (0.61069, 0.000049, "0.610690(49)"),
    ],
)
def test_format(value, error, text):
    assert format_value_error(value, error) == text


def test_estimate_repr_and_format():
    est = Estimate(-1.45312, 0.00123, 3.21, 0.35, 17, 10_000)
    assert str(est) == "-1.4531(12)"
    assert f"{est}" == "-1.4531(12)"
    assert f"{est:.2f}" == "-1.45"
    assert repr(est) == "Estimate(-1.4531(12), tau_int=3.21(35), window=17, n=10000)"
    with pytest.raises(Exception):
        est.mean = 0.0  # frozen
    assert est.error_of_error == pytest.approx(0.00123 * math.sqrt(17.5 / 10_000))


# ---------------------------------------------------------------------------------------------
# Properties (Hypothesis)
# ---------------------------------------------------------------------------------------------

_series = hnp.arrays(
    np.float64,
    st.integers(8, 300),
    elements=st.integers(-1000, 1000).map(float),
)


def _quiet(fn, *args, **kw):
    """Run without letting a windowing warning (short, odd series) fail the property."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GammaMethodWarning)
        return fn(*args, **kw)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(x=_series, k=st.integers(-20, 20), sign=st.sampled_from([1.0, -1.0]))
def test_property_power_of_two_scaling_is_exact(x, k, sign):
    c = sign * 2.0**k
    a = _quiet(gamma_method, x)
    b = _quiet(gamma_method, c * x)
    assert b.mean == c * a.mean
    assert b.error == abs(c) * a.error
    assert (b.tau_int, b.tau_int_error, b.window, b.n) == (a.tau_int, a.tau_int_error, a.window, a.n)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(x=_series, shift=st.floats(-1e4, 1e4, allow_nan=False), scale=st.floats(1e-3, 1e3))
def test_property_shift_and_scale(x, shift, scale):
    a = _quiet(gamma_method, x)
    b = _quiet(gamma_method, scale * x + shift)
    assume(a.error > 0.0)
    assert b.mean == pytest.approx(scale * a.mean + shift, rel=1e-12, abs=1e-9 * scale * (1 + np.abs(x).max()))
    assert b.window == a.window
    assert b.error == pytest.approx(scale * a.error, rel=1e-7)
    assert b.tau_int == pytest.approx(a.tau_int, rel=1e-7)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(x=_series)
def test_property_time_reversal(x):
    """Gamma(t) is symmetric under reversing the chain."""
    a = _quiet(gamma_method, x)
    b = _quiet(gamma_method, x[::-1].copy())
    assert b.window == a.window
    assert b.error == pytest.approx(a.error, rel=1e-9, abs=1e-12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    x=hnp.arrays(np.float64, st.tuples(st.integers(2, 5), st.integers(8, 100)), elements=st.integers(-50, 50).map(float)),
    data=st.data(),
)
def test_property_replica_order(x, data):
    perm = data.draw(st.permutations(range(x.shape[0])))
    a = _quiet(gamma_method, x)
    b = _quiet(gamma_method, x[list(perm)])
    assert b.window == a.window
    assert b.error == pytest.approx(a.error, rel=1e-9, abs=1e-12)
    assert b.mean == pytest.approx(a.mean, rel=1e-12, abs=1e-12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(x=_series, c=st.floats(0.1, 10.0))
def test_property_derived_scale(x, c):
    """derived(c * f) has c times the error of derived(f)."""
    y = x + 3000.0  # positive, so log is smooth
    a = _quiet(derived, lambda p: np.log(p), y)
    b = _quiet(derived, lambda p: c * np.log(p), y)
    assert b.window == a.window
    assert b.error == pytest.approx(c * a.error, rel=1e-7, abs=1e-15)
