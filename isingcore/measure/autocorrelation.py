r"""Statistical errors of Monte Carlo time series with autocorrelations: the Γ-method.

Reference: U. Wolff, "Monte Carlo errors with less errors", Comput. Phys. Commun. 156 (2004)
143, hep-lat/0306017 (below: *Wolff*). Implemented from the paper; the conventions (window
parameter ``S = 2.0`` by default, ``tau_int >= 1/2``, the error of ``tau_int``) are chosen to
agree with the ``pyerrors`` package, which implements the same method.

Notation
--------
Primary observables ``a^alpha`` are measured on ``R`` independent replicas (Markov chains with
identical parameters) of ``N_r`` configurations each, ``N = sum_r N_r`` in total (here all
``N_r`` are equal). The estimators are

* mean (all replicas pooled)       ``abar_alpha = (1/N) sum_{r,i} a^alpha_{i,r}``
* derived quantity                  ``F = f(abar_1, ..., abar_P)``
* projected fluctuations (§3.1)     ``delta_{i,r} = sum_alpha f_alpha (a^alpha_{i,r} - abar_alpha)``,
                                    ``f_alpha = df/dA_alpha`` at ``abar``
* autocorrelation function (§3)     ``Gamma_F(t) = 1/(N - R t) sum_r sum_{i=1}^{N_r - t} delta_{i,r} delta_{i+t,r}``
* summed autocorrelation            ``C_F(W) = Gamma_F(0) + 2 sum_{t=1}^{W} Gamma_F(t)``
* integrated autocorrelation time   ``tau_int(W) = C_F(W) / (2 Gamma_F(0))``  (``>= 1/2``, Madras & Sokal)
* error of ``F``                     ``sigma_F = sqrt(C_F(W) / N) = sqrt(2 tau_int Gamma_F(0) / N)``

Automatic windowing (Wolff §3.3): with ``tau(W) = S / ln[(2 tau_int(W) + 1) / (2 tau_int(W) - 1)]``
(``tau(W) -> 0`` where ``tau_int(W) <= 1/2``), the window ``W`` is the first ``W >= 1`` at which

    ``g(W) = exp(-W / tau(W)) - tau(W) / sqrt(W N)``

becomes negative; it balances the truncation bias ``~exp(-W/tau)`` of the sum against its
statistical error ``~sqrt(W/N)``. Wolff proposes ``S = 1.5``; ``pyerrors`` uses ``S = 2``.
If no ``W <= N_r / 2`` satisfies the criterion a :class:`GammaMethodWarning` is emitted and
``W = N_r // 2`` is used: the series is too short for its autocorrelation time. (With a single
replica this cannot happen, since ``g(N/2) < 0`` always holds -- ``u exp(-u) <= 1/e < 1/sqrt 2``
-- so the warning is no substitute for checking ``tau_int << N``; the error of the error,
``sigma_F sqrt((W + 1/2)/N)``, tells how far the estimate can be trusted.)

Bias of ``Gamma`` (Wolff §3.3): subtracting the estimated mean biases ``Gamma_F(t)`` by about
``-C_F/N``. After the window is chosen ``Gamma_F(t)`` is replaced by ``Gamma_F(t) + C_F(W)/N``, so
``C_F(W) -> C_F(W) (1 + (2W + 1)/N)``, and ``tau_int`` and ``sigma_F`` are computed from the
corrected function.

Error of ``tau_int`` (Wolff §3.3, after N. Madras and A. D. Sokal, J. Stat. Phys. 50 (1988) 109):

    ``sigma(tau_int) = 2 tau_int sqrt((W + 1/2 - tau_int) / N)``

and the error of the error ``sigma(sigma_F) = sigma_F sqrt((W + 1/2) / N)`` (available as
:attr:`Estimate.error_of_error`).

Replicas (Wolff §3, "replica"): all replicas share the pooled mean ``abar``; ``Gamma_F(t)`` sums
the lagged products within each replica (never across the boundary between two replicas) and
is normalised by the number of such pairs, ``N - R t``. The central value is ``F(abar)``;
Wolff's optional replica bias correction of ``F`` (from the spread of the per-replica ``F``) is
not applied, as in ``pyerrors``.

``tau_int(W)`` is clamped at ``1/2`` before ``C_F(W) = 2 tau_int(W) Gamma_F(0)`` is formed:
for anticorrelated data the automatic window stops at ``W = 1`` and the estimate then equals
the naive error of uncorrelated data (conservative).

Relation to ``pyerrors`` (checked in the tests)
-----------------------------------------------
For one replica the mean, the window and the error agree with
``pyerrors.Obs([x], ["ens"]).gamma_method(S=2.0)`` to round-off. ``tau_int`` and its error
differ at relative order ``W/N``, far below ``tau_int_error``: here both are computed from the
bias-corrected ``Gamma`` (``tau_int = C_F^corr / (2 Gamma_F^corr(0))``, as in Wolff's UWerr),
while ``pyerrors`` leaves ``Gamma(0)`` uncorrected. With several replicas ``pyerrors`` takes
the fluctuations about each replica's own mean, which drops the spread between replica means
from ``Gamma``; following Wolff §3 the pooled mean is used here. The two agree exactly when
all replica means coincide, and otherwise differ at relative order ``R W / N``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

__all__ = [
    "Estimate",
    "GammaMethodWarning",
    "gamma_method",
    "derived",
    "jackknife",
    "normalized_autocorrelation",
    "format_value_error",
]

#: Fewest samples per replica the Γ-method accepts (at least one lag must be estimable).
MIN_SAMPLES = 4


class GammaMethodWarning(RuntimeWarning):
    """The automatic windowing did not converge: the series is too short for its tau_int."""


# ---------------------------------------------------------------------------------------------
# Result type and formatting
# ---------------------------------------------------------------------------------------------


def format_value_error(value: float, error: float, digits: int = 2) -> str:
    """Format ``value`` with its ``error`` in parentheses on the last digits: ``-1.4531(12)``.

    The error is rounded to ``digits`` significant digits and the value to the same decimal
    place; errors of 10 or more are written in full (``1234(56)``). A zero error gives the
    value with ``(0)``; a non-finite error gives ``value(nan)``/``value(inf)``.
    """
    if digits < 1:
        raise ValueError(f"digits must be >= 1; got {digits!r}")
    value = float(value)
    error = float(error)
    if not math.isfinite(value):
        return f"{value}({error:g})"
    if not math.isfinite(error):
        return f"{value:.6g}({error})"
    if error == 0.0:
        return f"{value!r}(0)"
    error = abs(error)
    decimals = digits - 1 - math.floor(math.log10(error))
    if decimals > 0:
        err_units = round(error * 10.0**decimals)
        if err_units >= 10**digits:  # rounding carried into a new digit, e.g. 0.0996 -> 100
            decimals -= 1
            err_units = round(error * 10.0**decimals)
        if decimals > 0:
            return f"{value:.{decimals}f}({err_units:d})"
    return f"{value:.0f}({error:.0f})"


@dataclass(frozen=True, repr=False)
class Estimate:
    """Mean with its statistical error and the integrated autocorrelation time behind it.

    Attributes
    ----------
    mean : central value ``F(abar)``.
    error : statistical error ``sigma_F`` (autocorrelations included).
    tau_int : integrated autocorrelation time in units of the series' sampling interval
        (``1/2`` for uncorrelated data).
    tau_int_error : its statistical error, ``2 tau_int sqrt((W + 1/2 - tau_int)/N)``.
    window : summation window ``W`` of the Γ-method (for :func:`jackknife`: the bin length).
    n : total number of samples ``N`` (all replicas).

    ``str(est)`` and ``format(est)`` give ``-1.4531(12)``; ``format(est, ".4f")`` formats
    only the mean.
    """

    mean: float
    error: float
    tau_int: float
    tau_int_error: float
    window: int
    n: int

    @property
    def error_of_error(self) -> float:
        """Statistical error of :attr:`error`, ``error * sqrt((W + 1/2) / N)`` (Wolff §3.3)."""
        if self.n <= 0:
            return float("nan")
        return self.error * math.sqrt((self.window + 0.5) / self.n)

    @property
    def relative_error(self) -> float:
        """``error / |mean|`` (``inf`` for a zero mean with nonzero error)."""
        if self.mean == 0.0:
            return 0.0 if self.error == 0.0 else float("inf")
        return self.error / abs(self.mean)

    def format(self, digits: int = 2) -> str:
        """``value(error)`` with ``digits`` significant digits of the error, e.g. ``-1.4531(12)``."""
        return format_value_error(self.mean, self.error, digits)

    def __str__(self) -> str:
        return self.format()

    def __format__(self, spec: str) -> str:
        if not spec:
            return self.format()
        return format(self.mean, spec)

    def __repr__(self) -> str:
        tau = format_value_error(self.tau_int, self.tau_int_error) if self.tau_int_error > 0 else f"{self.tau_int:.4g}"
        return f"Estimate({self.format()}, tau_int={tau}, window={self.window}, n={self.n})"

    def as_tuple(self) -> tuple:
        return (self.mean, self.error, self.tau_int, self.tau_int_error, self.window, self.n)


# ---------------------------------------------------------------------------------------------
# Input handling
# ---------------------------------------------------------------------------------------------


def _as_series(x: Any, name: str, min_samples: int = MIN_SAMPLES) -> np.ndarray:
    """Validate a time series and return it as float64 of shape ``(R, N)``."""
    from .._array import to_numpy

    try:
        a = to_numpy(x) if not isinstance(x, (list, tuple)) else np.asarray(x)
    except TypeError:
        a = np.asarray(x)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
        raise TypeError(f"{name} must be a real numeric array; got dtype {a.dtype}")
    if np.iscomplexobj(a):
        raise TypeError(f"{name} must be real; got complex dtype {a.dtype}")
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[np.newaxis, :]
    elif a.ndim != 2:
        raise ValueError(
            f"{name} must have shape (N,) or (R, N) (R replicas of N samples); got shape {a.shape}"
        )
    R, N = a.shape
    if R < 1:
        raise ValueError(f"{name} must contain at least one replica; got shape {a.shape}")
    if N < min_samples:
        raise ValueError(
            f"{name} is too short: need at least {min_samples} samples per replica along the last axis; "
            f"got N={N} (shape {a.shape})"
        )
    finite = np.isfinite(a)
    if not finite.all():
        bad = np.argwhere(~finite)[0]
        kind = "NaN" if np.isnan(a[tuple(bad)]) else "inf"
        raise ValueError(
            f"{name} contains non-finite values ({kind} at replica {bad[0]}, index {bad[1]}); "
            "remove or fix them before the error analysis"
        )
    return a


def _check_S(S: float) -> float:
    try:
        S = float(S)
    except (TypeError, ValueError):
        raise TypeError(f"S must be a positive real number; got {S!r}") from None
    if not (math.isfinite(S) and S > 0.0):
        raise ValueError(f"S must be a positive finite number (Wolff proposes 1.5, pyerrors uses 2.0); got {S!r}")
    return S


def _as_series_list(series: tuple, name: str = "series", min_samples: int = MIN_SAMPLES) -> list[np.ndarray]:
    if len(series) == 0:
        raise ValueError(f"at least one {name} is needed")
    arrays = [_as_series(s, f"{name}[{k}]", min_samples) for k, s in enumerate(series)]
    shape = arrays[0].shape
    for k, a in enumerate(arrays[1:], start=1):
        if a.shape != shape:
            raise ValueError(
                f"all series must have the same shape (same replicas, same configurations); "
                f"{name}[0] has (R, N) = {shape}, {name}[{k}] has {a.shape}"
            )
    return arrays


def _scalar(v: Any, what: str) -> float:
    arr = np.asarray(v)
    if arr.size != 1:
        raise ValueError(f"{what} must return a scalar; got an array of shape {arr.shape}")
    if np.iscomplexobj(arr):
        raise ValueError(f"{what} must return a real scalar; got {arr.dtype}")
    return float(arr.reshape(()))


# ---------------------------------------------------------------------------------------------
# Core
# ---------------------------------------------------------------------------------------------


def _autocovariance(delta: np.ndarray, max_lag: int) -> np.ndarray:
    """``Gamma(t)``, ``t = 0..max_lag``, of zero-mean fluctuations ``delta`` of shape ``(R, N)``.

    Lagged products are summed within each replica and divided by the number of pairs
    ``R (N - t)``. Computed with a zero-padded FFT (no wrap-around), O(N log N).
    """
    R, N = delta.shape
    nfft = 1 << int(2 * N - 1).bit_length()
    spec = np.fft.rfft(delta, n=nfft, axis=-1)
    acf = np.fft.irfft(spec.real**2 + spec.imag**2, n=nfft, axis=-1)[:, : max_lag + 1]
    t = np.arange(max_lag + 1)
    return acf.sum(axis=0) / (R * (N - t))


def normalized_autocorrelation(series: Any, max_lag: int | None = None) -> np.ndarray:
    """Normalised autocorrelation function ``rho(t) = Gamma(t) / Gamma(0)``, ``t = 0..max_lag``.

    ``series`` has shape ``(N,)`` or ``(R, N)``; fluctuations are taken about the pooled mean
    and lagged products never straddle two replicas (see the module docstring). ``max_lag``
    defaults to ``N // 2``. No bias correction is applied. A constant series gives ``rho = 1``
    at ``t = 0`` and ``0`` elsewhere.
    """
    a = _as_series(series, "series", 2)
    R, N = a.shape
    if max_lag is None:
        max_lag = N // 2
    if not isinstance(max_lag, (int, np.integer)) or not (0 <= max_lag < N):
        raise ValueError(f"max_lag must be an integer in [0, N-1] = [0, {N - 1}]; got {max_lag!r}")
    delta = a - a.mean()
    g = _autocovariance(delta, int(max_lag))
    if g[0] <= 0.0 or _is_constant(delta, np.abs(a).max()):
        out = np.zeros(max_lag + 1)
        out[0] = 1.0
        return out
    return g / g[0]


def _is_constant(delta: np.ndarray, scale: float) -> bool:
    """Fluctuations at the level of round-off of data of magnitude ``scale`` count as zero."""
    return float(np.max(np.abs(delta))) <= 64.0 * np.finfo(np.float64).eps * scale


def _gamma_analysis(delta: np.ndarray, value: float, S: float, scale: float) -> Estimate:
    """Γ-method on projected fluctuations ``delta`` (shape ``(R, N)``, pooled mean removed)."""
    R, N = delta.shape
    n_tot = R * N
    if _is_constant(delta, scale):
        return Estimate(float(value), 0.0, 0.5, 0.0, 0, n_tot)

    w_max = N // 2
    gamma = _autocovariance(delta, w_max)
    g0 = gamma[0]
    if not g0 > 0.0:  # pragma: no cover - excluded by _is_constant
        return Estimate(float(value), 0.0, 0.5, 0.0, 0, n_tot)

    # tau_int(W) for W = 1..w_max from the uncorrected Gamma, clamped at 1/2
    W = np.arange(1, w_max + 1)
    tau_int_w = 0.5 + np.cumsum(gamma[1:]) / g0
    tau_int_w = np.maximum(tau_int_w, 0.5)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        above = tau_int_w > 0.5
        ratio = np.where(above, (2.0 * tau_int_w + 1.0) / np.where(above, 2.0 * tau_int_w - 1.0, 1.0), 2.0)
        tau_w = np.where(above, S / np.log(ratio), np.finfo(np.float64).tiny)
        g_w = np.exp(-W / tau_w) - tau_w / np.sqrt(W * float(n_tot))
    negative = np.flatnonzero(g_w < 0.0)
    if negative.size:
        window = int(W[negative[0]])
    else:
        window = int(w_max)
        warnings.warn(
            f"Gamma-method: automatic windowing did not converge up to W = N/2 = {w_max} "
            f"(tau_int(W_max) = {tau_int_w[-1]:.3g}); the series is too short for its "
            "autocorrelation time and the error is unreliable",
            GammaMethodWarning,
            stacklevel=3,
        )

    # C_F(W) = 2 tau_int(W) Gamma(0) with the clamped tau_int(W); then the bias correction of
    # Gamma (Wolff §3.3): Gamma(t) -> Gamma(t) + C_F(W)/N for every t, including t = 0.
    c_w = 2.0 * tau_int_w[window - 1] * g0
    shift = c_w / n_tot
    g0_c = g0 + shift
    c_w_c = c_w + (2 * window + 1) * shift
    tau_int = max(c_w_c / (2.0 * g0_c), 0.5)
    error = math.sqrt(2.0 * tau_int * g0_c / n_tot)
    tau_err = 2.0 * tau_int * math.sqrt(max(window + 0.5 - tau_int, 0.0) / n_tot)
    return Estimate(float(value), float(error), float(tau_int), float(tau_err), window, n_tot)


def gamma_method(series: Any, S: float = 2.0) -> Estimate:
    """Mean of a Monte Carlo time series with its autocorrelation-aware error (Wolff's Γ-method).

    Parameters
    ----------
    series : array of shape ``(N,)`` or ``(R, N)``
        One chain of ``N`` measurements, or ``R`` independent replicas of equal length.
        Any array the backend module can copy to NumPy is accepted.
    S : float, default 2.0
        Parameter of the automatic windowing, ``tau(W) = S / ln[(2 tau_int + 1)/(2 tau_int - 1)]``
        (Wolff §3.3; Wolff proposes 1.5, ``pyerrors`` uses 2.0). Larger ``S`` gives larger
        windows (less truncation bias, more noise).

    Returns
    -------
    Estimate
        ``mean`` (pooled over replicas), ``error = sqrt(2 tau_int Gamma(0) / N)``,
        ``tau_int``, ``tau_int_error``, ``window`` and ``n = R N``. A constant series has
        error 0, ``tau_int = 0.5`` and window 0.

    Raises
    ------
    ValueError
        If ``series`` has fewer than ``MIN_SAMPLES`` samples per replica, contains NaN or
        inf, or has more than two dimensions; or if ``S`` is not positive.

    See the module docstring for every formula.
    """
    S = _check_S(S)
    a = _as_series(series, "series")
    mean = float(a.mean())
    delta = a - mean
    return _gamma_analysis(delta, mean, S, float(np.abs(a).max()))


def _gradient(f: Callable, means: np.ndarray, steps: np.ndarray) -> np.ndarray:
    r"""Gradient of ``f`` at ``means`` by a five-point central difference.

    ``f'(x) = [8 (f(x+h) - f(x-h)) - (f(x+2h) - f(x-2h))] / (12 h) + O(h^4)``.

    The step of component ``alpha`` is the naive error of its mean, ``std(a_alpha) / sqrt(N)``,
    clipped to ``[1e-8, 1e-3] * |abar_alpha|`` (unclipped if ``abar_alpha = 0``). The naive error
    is the scale on which the linearisation behind the error propagation must hold anyway, so
    the steps never reach a singularity of ``f`` that lies many errors away from the mean; the
    upper clip keeps the truncation error ``(h/l)^4`` below ~1e-12 for functions that vary on the
    scale of their arguments (``l ~ |abar|``), the lower clip keeps the round-off below ~1e-8.
    Components whose series is constant get derivative 0 (they have no fluctuations to weight).
    """
    P = len(means)
    grad = np.zeros(P)

    def call(x):
        return _scalar(f(*[np.float64(v) for v in x]), "f")

    for k in range(P):
        if steps[k] == 0.0:
            continue
        h = float(steps[k])
        if means[k] != 0.0:
            h = min(max(h, 1e-8 * abs(means[k])), 1e-3 * abs(means[k]))
        h = float((means[k] + h) - means[k])  # a step that is exact in floating point
        vals = []
        for step in (h, -h, 2 * h, -2 * h):
            x = means.copy()
            x[k] += step
            vals.append(call(x))
        d = (8.0 * (vals[0] - vals[1]) - (vals[2] - vals[3])) / (12.0 * h)
        if not math.isfinite(d):
            raise ValueError(
                f"f is not differentiable at the mean of series[{k}] (derivative {d}); "
                "the linear error propagation needs a smooth function of the means"
            )
        grad[k] = d
    return grad


def _steps(arrays: list[np.ndarray]) -> np.ndarray:
    """Naive errors of the means, ``std / sqrt(N)``: the differentiation steps of :func:`_gradient`."""
    return np.array([a.std() / math.sqrt(a.size) for a in arrays])


def derived(f: Callable[..., float], *series: Any, S: float = 2.0) -> Estimate:
    """Γ-method error of a derived quantity ``F = f(<a_1>, ..., <a_P>)`` (Wolff §3.1).

    Parameters
    ----------
    f : callable
        Function of the means, called as ``f(abar_1, ..., abar_P)`` with one NumPy float64
        scalar per series, returning a real scalar. It must be smooth near the means (it is
        differentiated numerically, see below).
    *series : arrays of shape ``(N,)`` or ``(R, N)``
        Primary observables measured on the same configurations (same shape); sample ``i`` of
        every series belongs to the same configuration, so cross-correlations are kept.
    S : float, default 2.0
        Windowing parameter, as in :func:`gamma_method`.

    Returns
    -------
    Estimate
        ``mean = f(abar)`` and the error from the Γ-method applied to the projected series
        ``delta_i = sum_alpha f_alpha (a^alpha_i - abar_alpha)``.

    Notes
    -----
    Linear error propagation: the error is correct to leading order in ``1/N``; the bias of a
    nonlinear ``f`` (order ``1/N``) is not removed. The derivatives ``f_alpha`` are taken by a
    fourth-order central difference with a step of the naive error of each mean,
    ``std(a_alpha)/sqrt(N)`` (the linearisation scale), clipped to ``[1e-8, 1e-3] |abar_alpha|``.
    """
    S = _check_S(S)
    arrays = _as_series_list(series)
    means = np.array([a.mean() for a in arrays])
    value = _scalar(f(*[np.float64(m) for m in means]), "f")
    if not math.isfinite(value):
        raise ValueError(f"f evaluated at the means gave {value}; it must be finite there")
    grad = _gradient(f, means, _steps(arrays))
    delta = np.zeros_like(arrays[0])
    scale = 0.0
    for g, a, m in zip(grad, arrays, means):
        if g != 0.0:
            delta += g * (a - m)
            scale += abs(g) * float(np.abs(a).max())
    return _gamma_analysis(delta, value, S, scale)


def jackknife(f: Callable[..., float], *series: Any, n_bins: int | None = None) -> Estimate:
    r"""Binned jackknife estimate of ``F = f(<a_1>, ..., <a_P>)``, an alternative to :func:`derived`.

    Each replica is cut into ``n_bins / R`` consecutive bins of ``B`` configurations (bins never
    straddle replicas; the last ``N mod B`` configurations of each replica are not binned).
    With ``abar^(k)`` the means without bin ``k`` and ``n_b`` bins,

        ``F_k = f(abar^(k))``,  ``sigma_F^2 = (n_b - 1)/n_b sum_k (F_k - Fbar_.)^2``

    (Efron; for binned Monte Carlo data see e.g. B. Berg, *Markov Chain Monte Carlo
    Simulations and Their Statistical Analysis*, World Scientific 2004, ch. 2). Binning
    removes autocorrelations when ``B >> tau_int``: check that the error is stable when
    ``n_bins`` is halved (plateau).

    Parameters
    ----------
    f, *series : as in :func:`derived`.
    n_bins : int, optional
        Total number of bins, a multiple of the number of replicas ``R`` and at least 2. Default:
        the smallest multiple of ``R`` that is ``>= 50``.

    Returns
    -------
    Estimate
        ``mean = f(abar)`` (all data, the same central value as :func:`derived`),
        ``error = sigma_F``, ``window = B`` (the bin length), ``n = R N`` and
        ``tau_int = N sigma_F^2 / (2 Gamma_F(0))``, the ratio of the binned to the naive
        variance (``Gamma_F(0)`` of the linearised projected fluctuations), with
        ``tau_int_error = tau_int sqrt(2 / (n_b - 1))`` from the spread of a variance with
        ``n_b - 1`` degrees of freedom.
    """
    arrays = _as_series_list(series, min_samples=2)
    R, N = arrays[0].shape
    if n_bins is None:
        n_bins = R * max(1, math.ceil(50 / R))
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)):
        raise TypeError(f"n_bins must be an integer; got {n_bins!r}")
    n_bins = int(n_bins)
    if n_bins < 2 or n_bins % R != 0:
        raise ValueError(f"n_bins must be a multiple of the number of replicas R={R} and >= 2; got n_bins={n_bins}")
    per_rep = n_bins // R
    B = N // per_rep
    if B < 1:
        raise ValueError(
            f"n_bins={n_bins} is too many for {R} replica(s) of N={N} samples (need n_bins/R <= N)"
        )

    means = np.array([a.mean() for a in arrays])
    value = _scalar(f(*[np.float64(m) for m in means]), "f")
    if not math.isfinite(value):
        raise ValueError(f"f evaluated at the means gave {value}; it must be finite there")

    # bin sums: (P, n_bins)
    sums = np.stack([a[:, : per_rep * B].reshape(R, per_rep, B).sum(axis=-1).reshape(-1) for a in arrays])
    total = sums.sum(axis=1)
    n_used = n_bins * B
    loo = (total[:, None] - sums) / (n_used - B)
    fk = np.array([_scalar(f(*[np.float64(v) for v in loo[:, k]]), "f") for k in range(n_bins)])
    if not np.all(np.isfinite(fk)):
        raise ValueError("f gave a non-finite value on a jackknife sample")
    var = (n_bins - 1) / n_bins * float(np.sum((fk - fk.mean()) ** 2))
    error = math.sqrt(var)

    grad = _gradient(f, means, _steps(arrays))
    delta = np.zeros_like(arrays[0])
    for g, a, m in zip(grad, arrays, means):
        if g != 0.0:
            delta += g * (a - m)
    g0 = float(np.mean(delta**2))
    n_tot = R * N
    if g0 > 0.0 and var > 0.0:
        tau = n_tot * var / (2.0 * g0)
        tau_err = tau * math.sqrt(2.0 / (n_bins - 1))
    else:
        tau, tau_err = 0.5, 0.0
    return Estimate(float(value), error, float(tau), float(tau_err), int(B), int(n_tot))
