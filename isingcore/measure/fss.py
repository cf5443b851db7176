r"""Finite-size scaling at the critical point: exponents from several lattice sizes.

At ``K_c`` the finite-size observables of the 2D Ising model scale as (seed 003 eqs. 14-16;
e.g. D. P. Landau and K. Binder, *A Guide to Monte Carlo Simulations in Statistical Physics*,
CUP, ch. 4)

=========================================  ===================================  ==================
observable (per site, :mod:`.ensemble`)     law                                   exact exponent
=========================================  ===================================  ==================
``chi = beta N <m^2>``                      ``chi ~ L^{gamma/nu}``                ``7/4``
``c_me = N (<|m||e|> - <|m|><|e|>)/<|m|>``   ``c_me ~ L^{1/nu}``                   ``1``
``C = beta^2 N (<e^2> - <e>^2)``             ``C = a + b ln L``                    ``b = (8/pi) K_c^2``
``P_L(m)``                                  ``L^{-beta/nu} P_L(m) = P~(L^{beta/nu} m)``  ``beta/nu = 1/8``
=========================================  ===================================  ==================

The amplitude of the logarithm: for the periodic ``L x L`` torus at ``K_c``, A. E. Ferdinand and
M. E. Fisher, Phys. Rev. 185 (1969) 832, give ``C/k_B = (2/pi) (ln(1 + sqrt 2))^2 ln L + const
+ O(ln L / L)``, and ``ln(1 + sqrt 2) = 2 K_c``, so ``b = (8/pi) K_c^2 = 0.494539``
(:data:`SPECIFIC_HEAT_LOG_SLOPE`) with ``C = K^2 d^2 ln Z / dK^2 / N`` (the normalisation of
:func:`isingcore.exact.kaufman_torus` and :func:`.specific_heat`; the seed's ``c = L^2(<e^2> - <e>^2)``
omits ``K^2`` and has slope ``8/pi``). Kaufman's exact ``C(L)`` confirms it: the local slope
``(C(2L) - C(L))/ln 2`` is 0.5095, 0.4984, 0.4955, 0.4948, 0.4946 at L = 8, 32, 128, 512, 2048.

Two estimators, both from seed 003 and the usual practice:

* **pairs** ``(L, L/r)`` (seed 003 Table II, ``r = 4``): ``p = ln(Y(L)/Y(L/r)) / ln r`` and
  ``b = (C(L) - C(L/r)) / ln r``; the two ensembles are independent, so
  ``sigma_p^2 = [(sigma_Y(L)/Y(L))^2 + (sigma_Y(L/r)/Y(L/r))^2] / ln(r)^2``.
* **weighted least squares** over several sizes: ``ln Y = ln A + p ln L`` with weights
  ``(Y/sigma_Y)^2``, or ``C = a + b ln L``, optionally with correction terms
  (``Y = A L^p (1 + c L^{-omega})``; ``C = a + b ln L + c L^{-omega}``). The quoted error is the
  parameter error from the input (Γ-method) errors, multiplied by ``sqrt(chi^2/dof)`` when that
  exceeds 1 (the Particle Data Group's scale factor), so a poor fit widens the error.

Inputs: a mapping ``L -> ensemble path`` (or open :class:`isingcore.io.Ensemble`), or
``L -> {"chi": Estimate, "c_me": Estimate, "specific_heat": Estimate, ...}``
(:func:`fss_observables` turns the former into the latter), or per-quantity sequences for the fit
functions.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .autocorrelation import Estimate

__all__ = [
    "ScalingFit",
    "pair_exponent",
    "pair_log_slope",
    "power_law_fit",
    "log_law_fit",
    "fss_observables",
    "fss_exponents",
    "CollapsedHistogram",
    "magnetization_collapse",
    "plot_magnetization_collapse",
    "GAMMA_OVER_NU",
    "ONE_OVER_NU",
    "BETA_OVER_NU",
    "SPECIFIC_HEAT_LOG_SLOPE",
]

GAMMA_OVER_NU = 7.0 / 4.0
ONE_OVER_NU = 1.0
BETA_OVER_NU = 1.0 / 8.0
_K_C = 0.5 * math.log(1.0 + math.sqrt(2.0))
#: ``(8/pi) K_c^2``: slope of ``C(L)`` per site (``K^2`` included) against ``ln L`` at ``K_c``
SPECIFIC_HEAT_LOG_SLOPE = 8.0 / math.pi * _K_C**2


# ---------------------------------------------------------------------------------------------
# Result type and input handling
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScalingFit:
    """Result of a finite-size-scaling fit or of a pair ``(L, L/r)``.

    Attributes
    ----------
    model : ``"power"`` (``Y = A L^p``), ``"power+correction"`` (``Y = A L^p (1 + c L^-omega)``),
        ``"log"`` (``Y = a + b ln L``) or ``"log+correction"`` (``+ c L^-omega``).
    value : the exponent ``p`` or the log slope ``b``.
    error : its error: ``statistical_error * max(1, sqrt(chi2/dof))`` (``dof > 0``), else
        ``statistical_error``.
    statistical_error : the error propagated from the input errors alone.
    amplitude, amplitude_error : ``A`` (power laws) or ``a`` (log law), same error treatment.
    chi2, dof : goodness of fit (``dof = 0`` for a pair: exact interpolation).
    sizes : the lattice sizes used.
    params, covariance : all parameters of the model and their covariance (input errors only).
    correction_exponent : ``omega`` of the correction term, or None.
    """

    model: str
    value: float
    error: float
    statistical_error: float
    amplitude: float
    amplitude_error: float
    chi2: float
    dof: int
    sizes: tuple[int, ...]
    params: tuple[float, ...] = field(repr=False)
    covariance: np.ndarray = field(repr=False)
    correction_exponent: float | None = None

    @property
    def chi2_dof(self) -> float:
        return self.chi2 / self.dof if self.dof > 0 else float("nan")

    @property
    def scale_factor(self) -> float:
        """``max(1, sqrt(chi2/dof))`` (1 when ``dof = 0``)."""
        return max(1.0, math.sqrt(self.chi2 / self.dof)) if self.dof > 0 else 1.0

    def format(self, digits: int = 2) -> str:
        from .autocorrelation import format_value_error

        return format_value_error(self.value, self.error, digits)

    def __str__(self) -> str:
        s = f"{self.format()} ({self.model}, L = {', '.join(map(str, self.sizes))}"
        if self.dof > 0:
            s += f", chi2/dof = {self.chi2:.2f}/{self.dof}"
        return s + ")"

    def as_dict(self) -> dict:
        return {"model": self.model, "value": self.value, "error": self.error,
                "statistical_error": self.statistical_error, "amplitude": self.amplitude,
                "amplitude_error": self.amplitude_error, "chi2": self.chi2, "dof": self.dof,
                "sizes": list(self.sizes), "correction_exponent": self.correction_exponent}


def _mean_error(v: Any, what: str) -> tuple[float, float]:
    """(mean, error) of an Estimate, a (mean, error) pair or an object with .mean/.error."""
    if isinstance(v, Estimate) or (hasattr(v, "mean") and hasattr(v, "error") and not isinstance(v, np.ndarray)):
        m, e = float(v.mean), float(v.error)
    else:
        try:
            m, e = (float(t) for t in v)
        except (TypeError, ValueError):
            raise TypeError(f"{what} must be an Estimate or a (mean, error) pair; got {v!r}") from None
    if not (math.isfinite(m) and math.isfinite(e) and e >= 0):
        raise ValueError(f"{what} must have a finite mean and a finite error >= 0; got ({m}, {e})")
    return m, e


def _check_size(L: Any, what: str = "L") -> int:
    if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or L < 1:
        raise ValueError(f"{what} must be a positive integer lattice size; got {L!r}")
    return int(L)


def _check_ratio(ratio: Any) -> float:
    try:
        r = float(ratio)
    except (TypeError, ValueError):
        raise TypeError(f"ratio must be a number > 1; got {ratio!r}") from None
    if not (math.isfinite(r) and r > 1.0):
        raise ValueError(f"ratio must be a number > 1; got {ratio!r}")
    return r


def _fit_data(sizes, values, errors) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sizes = [_check_size(L, "sizes[]") for L in sizes]
    if len(set(sizes)) != len(sizes):
        raise ValueError(f"sizes must be distinct; got {sizes}")
    if errors is None:
        pairs = [_mean_error(v, f"values[{i}]") for i, v in enumerate(values)]
    else:
        v = np.asarray(values, dtype=np.float64)
        e = np.asarray(errors, dtype=np.float64)
        if v.shape != e.shape or v.ndim != 1:
            raise ValueError(f"values and errors must be 1-d of the same length; got {v.shape} and {e.shape}")
        pairs = [_mean_error((a, b), f"values[{i}]") for i, (a, b) in enumerate(zip(v, e))]
    if len(pairs) != len(sizes):
        raise ValueError(f"sizes and values must have the same length; got {len(sizes)} and {len(pairs)}")
    y = np.array([p[0] for p in pairs])
    s = np.array([p[1] for p in pairs])
    if np.any(s <= 0):
        raise ValueError("every value needs an error > 0 for a weighted fit")
    order = np.argsort(sizes)
    return np.asarray(sizes, dtype=np.float64)[order], y[order], s[order]


def _wls(X: np.ndarray, y: np.ndarray, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Weighted linear least squares: (params, covariance, chi2)."""
    Xw = X / sigma[:, None]
    yw = y / sigma
    cov = np.linalg.inv(Xw.T @ Xw)
    p = cov @ (Xw.T @ yw)
    r = yw - Xw @ p
    return p, cov, float(r @ r)


def _result(model, value_idx, amp_idx, p, cov, chi2, sizes, omega=None, amp_transform=None) -> ScalingFit:
    dof = len(sizes) - len(p)
    scale = max(1.0, math.sqrt(chi2 / dof)) if dof > 0 else 1.0
    stat = math.sqrt(cov[value_idx, value_idx])
    amp = float(p[amp_idx])
    amp_err = math.sqrt(cov[amp_idx, amp_idx])
    if amp_transform is not None:
        amp, amp_err = amp_transform(amp, amp_err)
    return ScalingFit(model=model, value=float(p[value_idx]), error=stat * scale, statistical_error=stat,
                      amplitude=amp, amplitude_error=amp_err * scale, chi2=chi2, dof=dof,
                      sizes=tuple(int(L) for L in sizes), params=tuple(float(v) for v in p), covariance=cov,
                      correction_exponent=omega)


# ---------------------------------------------------------------------------------------------
# Pairs (L, L/r)
# ---------------------------------------------------------------------------------------------


def pair_exponent(y_large: Any, y_small: Any, ratio: float = 4.0, *, sizes: tuple[int, int] | None = None) -> ScalingFit:
    r"""Exponent from two sizes: ``p = ln(Y(L)/Y(L/r)) / ln r`` (seed 003 Table II, ``r = 4``).

    ``y_large`` = ``Y(L)``, ``y_small`` = ``Y(L/r)``: Estimates or ``(mean, error)`` pairs from
    independent ensembles, so ``sigma_p = sqrt((sigma_1/Y_1)^2 + (sigma_2/Y_2)^2) / ln r``.
    ``sizes`` (optional) records ``(L/r, L)`` in the result.
    """
    r = _check_ratio(ratio)
    (a, ea), (b, eb) = _mean_error(y_large, "y_large"), _mean_error(y_small, "y_small")
    if a <= 0 or b <= 0:
        raise ValueError(f"pair_exponent needs positive values; got Y(L) = {a}, Y(L/r) = {b}")
    lr = math.log(r)
    p = math.log(a / b) / lr
    err = math.hypot(ea / a, eb / b) / lr
    amp = b / sizes[0] ** p if sizes else float("nan")
    cov = np.array([[float("nan"), float("nan")], [float("nan"), err**2]])
    return ScalingFit("power", p, err, err, amp, float("nan"), 0.0, 0, tuple(sizes) if sizes else (), (amp, p), cov)


def pair_log_slope(c_large: Any, c_small: Any, ratio: float = 4.0, *, sizes: tuple[int, int] | None = None) -> ScalingFit:
    r"""Slope of ``C = a + b ln L`` from two sizes: ``b = (C(L) - C(L/r)) / ln r``, independent errors."""
    r = _check_ratio(ratio)
    (a, ea), (c, ec) = _mean_error(c_large, "c_large"), _mean_error(c_small, "c_small")
    lr = math.log(r)
    b = (a - c) / lr
    err = math.hypot(ea, ec) / lr
    intercept = c - b * math.log(sizes[0]) if sizes else float("nan")
    cov = np.array([[float("nan"), 0.0], [0.0, err**2]])
    return ScalingFit("log", b, err, err, intercept, float("nan"), 0.0, 0, tuple(sizes) if sizes else (),
                      (intercept, b), cov)


# ---------------------------------------------------------------------------------------------
# Weighted least squares over several sizes
# ---------------------------------------------------------------------------------------------


def _golden_min(f: Callable[[float], float], a: float, b: float, tol: float = 1e-12, maxiter: int = 200) -> float:
    g = (math.sqrt(5.0) - 1.0) / 2.0
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(maxiter):
        if abs(b - a) < tol * max(1.0, abs(a) + abs(b)):
            break
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = f(d)
    return 0.5 * (a + b)


def power_law_fit(sizes: Sequence[int], values: Sequence[Any], errors: Sequence[float] | None = None, *,
                  correction_exponent: float | None = None) -> ScalingFit:
    r"""Weighted least-squares fit of ``Y(L) = A L^p`` (optionally ``A L^p (1 + c L^{-omega})``).

    Without correction: linear fit of ``ln Y = ln A + p ln L`` with ``sigma_{ln Y} = sigma_Y / Y``.
    With ``correction_exponent = omega``: ``Y = A L^p + B L^{p - omega}`` (``c = B/A``) fitted to
    ``Y`` with weights ``1/sigma_Y^2`` (variable projection: for fixed ``p`` the model is linear in
    ``A, B``; ``p`` minimises ``chi^2``), covariance from the Jacobian at the minimum.

    Parameters
    ----------
    sizes : lattice sizes ``L`` (distinct).
    values : Estimates or ``(mean, error)`` pairs, or plain numbers with ``errors``.
    errors : the errors of plain ``values``.
    correction_exponent : ``omega > 0`` of the correction term (e.g. 1 for ``c_me``, 7/4 for the
        analytic background of ``chi``), or None.

    Returns
    -------
    ScalingFit with ``value = p``, ``amplitude = A``; the error includes ``sqrt(chi^2/dof)`` when it
    exceeds 1. Needs ``len(sizes) >= 2`` (3 with the correction).
    """
    L, y, s = _fit_data(sizes, values, errors)
    if np.any(y <= 0):
        raise ValueError("power_law_fit needs positive values")
    lnL = np.log(L)
    if correction_exponent is None:
        if len(L) < 2:
            raise ValueError("power_law_fit needs at least 2 sizes")
        p, cov, chi2 = _wls(np.stack([np.ones_like(lnL), lnL], axis=1), np.log(y), s / y)
        return _result("power", 1, 0, p, cov, chi2, L,
                       amp_transform=lambda a, e: (math.exp(a), math.exp(a) * e))
    w = float(correction_exponent)
    if not (math.isfinite(w) and w > 0):
        raise ValueError(f"correction_exponent must be a number > 0 or None; got {correction_exponent!r}")
    if len(L) < 3:
        raise ValueError("power_law_fit with a correction term needs at least 3 sizes")

    def linear(pw):
        X = np.stack([L**pw, L ** (pw - w)], axis=1)
        return _wls(X, y, s)

    p0 = power_law_fit(L.astype(int).tolist(), y, s).value
    chi = lambda pw: linear(pw)[2]  # noqa: E731
    grid = np.linspace(p0 - 1.0, p0 + 1.0, 81)
    k = int(np.argmin([chi(g) for g in grid]))
    pw = _golden_min(chi, grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)])
    (A, B), _, chi2 = linear(pw)
    J = np.stack([L**pw, L ** (pw - w), (A * L**pw + B * L ** (pw - w)) * lnL], axis=1) / s[:, None]
    cov = np.linalg.inv(J.T @ J)  # parameters (A, B, p)
    return _result("power+correction", 2, 0, np.array([A, B, pw]), cov, chi2, L, omega=w)


def log_law_fit(sizes: Sequence[int], values: Sequence[Any], errors: Sequence[float] | None = None, *,
                correction_exponent: float | None = None) -> ScalingFit:
    r"""Weighted least-squares fit of ``C(L) = a + b ln L`` (optionally ``+ c L^{-omega}``).

    Linear in the parameters; weights ``1/sigma_C^2``. ``value = b``, ``amplitude = a``; the error
    includes ``sqrt(chi^2/dof)`` when it exceeds 1. For the 2D Ising specific heat at ``K_c``
    ``b = (8/pi) K_c^2`` (:data:`SPECIFIC_HEAT_LOG_SLOPE`) and the leading correction is of order
    ``ln L / L`` (Ferdinand and Fisher), well described by ``omega = 1`` over moderate ranges.
    """
    L, y, s = _fit_data(sizes, values, errors)
    cols = [np.ones_like(L), np.log(L)]
    w = None
    if correction_exponent is not None:
        w = float(correction_exponent)
        if not (math.isfinite(w) and w > 0):
            raise ValueError(f"correction_exponent must be a number > 0 or None; got {correction_exponent!r}")
        cols.append(L ** (-w))
    if len(L) < len(cols):
        raise ValueError(f"log_law_fit needs at least {len(cols)} sizes for this model")
    p, cov, chi2 = _wls(np.stack(cols, axis=1), y, s)
    return _result("log" if w is None else "log+correction", 1, 0, p, cov, chi2, L, omega=w)


# ---------------------------------------------------------------------------------------------
# Ensembles -> observables -> exponents
# ---------------------------------------------------------------------------------------------


def _ensemble_observables(path_or_ensemble, S: float) -> dict[str, Estimate]:
    from ..analysis import chain_series
    from ..io import open_ensemble
    from .ensemble import binder_cumulant, magnetization_energy_cumulant, specific_heat, susceptibility

    own = not hasattr(path_or_ensemble, "observables")
    ens = open_ensemble(path_or_ensemble) if own else path_or_ensemble
    try:
        a = ens.attrs
        Lx, Ly = int(a["Lx"]), int(a["Ly"])
        beta, h = float(a["beta"]), float(a.get("h", 0.0))
        if h != 0.0:
            raise ValueError(f"{ens!r}: finite-size scaling here needs h = 0 ensembles; got h = {h}")
        series = chain_series(ens, ["energy", "magnetization"])
    finally:
        if own:
            ens.close()
    e, m = series["energy"], series["magnetization"]
    n = Lx * Ly
    return {
        "L": Lx,
        "chi": susceptibility(None, m * m, beta, n, S=S),
        "c_me": magnetization_energy_cumulant(np.abs(m), e, n, S=S),
        "specific_heat": specific_heat(e, beta, n, S=S),
        "binder": binder_cumulant(m * m, m**4, S=S),
    }


def fss_observables(source: Mapping[int, Any], S: float = 2.0) -> dict[int, dict[str, Estimate]]:
    """``L -> {"chi", "c_me", "specific_heat", "binder": Estimate}`` (Γ-method errors, chains as replicas).

    ``source`` maps ``L`` to an ensemble path, an open :class:`isingcore.io.Ensemble`, or a mapping
    of already computed Estimates (passed through). ``chi = beta N <m^2>`` (h = 0),
    ``c_me`` and ``specific_heat`` as in :mod:`isingcore.measure.ensemble`.
    """
    if not isinstance(source, Mapping):
        raise TypeError(f"source must be a mapping L -> ensemble path or L -> Estimates; got {type(source).__name__}")
    out: dict[int, dict[str, Estimate]] = {}
    for L, v in source.items():
        L = _check_size(L, "source key L")
        if isinstance(v, Mapping):
            out[L] = dict(v)
            continue
        if not (isinstance(v, (str, bytes, os.PathLike)) or hasattr(v, "observables")):
            raise TypeError(f"source[{L}] must be an ensemble path, an Ensemble or a mapping of Estimates; got {v!r}")
        est = _ensemble_observables(v, S)
        if est.pop("L") != L:
            raise ValueError(f"source[{L}] is an ensemble of another size")
        out[L] = est
    return out


def _pairs(sizes: Sequence[int], ratio: int) -> list[tuple[int, int]]:
    have = set(sizes)
    return [(L, L // ratio) for L in sorted(have) if L % ratio == 0 and L // ratio in have]


def fss_exponents(source: Mapping[int, Any], *, ratio: int = 4, sizes: Sequence[int] | None = None,
                  L_min: int | None = None, L_max: int | None = None, S: float = 2.0,
                  chi_correction: float | None = None, c_me_correction: float | None = None,
                  specific_heat_correction: float | None = None) -> dict:
    r"""``gamma/nu`` from ``chi``, ``1/nu`` from ``c_me`` and the ``ln L`` slope of ``C``.

    Parameters
    ----------
    source : see :func:`fss_observables`.
    ratio : the pairs are ``(L, L/ratio)`` (seed 003: 4).
    sizes, L_min, L_max : which sizes enter the least-squares fits (default: all).
    chi_correction, c_me_correction, specific_heat_correction : optional correction exponents
        ``omega`` of the fits (see :func:`power_law_fit`, :func:`log_law_fit`).

    Returns
    -------
    dict with keys ``"gamma_over_nu"``, ``"one_over_nu"``, ``"specific_heat_slope"``, each
    ``{"fit": ScalingFit, "pairs": {(L, L/ratio): ScalingFit}, "exact": float}``, and
    ``"observables"`` (the output of :func:`fss_observables`).
    """
    if isinstance(ratio, bool) or not isinstance(ratio, (int, np.integer)) or ratio < 2:
        raise ValueError(f"ratio must be an integer >= 2; got {ratio!r}")
    obs = fss_observables(source, S=S)
    use = sorted(obs) if sizes is None else sorted(_check_size(L, "sizes[]") for L in sizes)
    missing = [L for L in use if L not in obs]
    if missing:
        raise ValueError(f"sizes {missing} are not in source (have {sorted(obs)})")
    use = [L for L in use if (L_min is None or L >= L_min) and (L_max is None or L <= L_max)]
    out: dict[str, Any] = {"observables": obs, "sizes": use, "ratio": int(ratio)}
    specs = (("gamma_over_nu", "chi", GAMMA_OVER_NU, chi_correction, "power"),
             ("one_over_nu", "c_me", ONE_OVER_NU, c_me_correction, "power"),
             ("specific_heat_slope", "specific_heat", SPECIFIC_HEAT_LOG_SLOPE, specific_heat_correction, "log"))
    for key, name, exact, omega, kind in specs:
        have = [L for L in use if name in obs[L]]
        entry: dict[str, Any] = {"exact": exact, "pairs": {}}
        for L, Ls in _pairs([L for L in obs if name in obs[L]], ratio):
            f = pair_exponent if kind == "power" else pair_log_slope
            entry["pairs"][(L, Ls)] = f(obs[L][name], obs[Ls][name], ratio, sizes=(Ls, L))
        need = 2 + (omega is not None)
        if len(have) >= need:
            fit = power_law_fit if kind == "power" else log_law_fit
            entry["fit"] = fit(have, [obs[L][name] for L in have], correction_exponent=omega)
        else:
            entry["fit"] = None
        out[key] = entry
    return out


# ---------------------------------------------------------------------------------------------
# P(m) and its scaling collapse
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CollapsedHistogram:
    r"""Rescaled histogram of the magnetisation of one lattice size.

    ``x = L^{beta/nu} m`` at the bin centres and ``density = L^{-beta/nu} P_L(m)``, normalised so
    that ``sum(density * width) = 1``; at criticality the curves of all ``L`` collapse onto the
    universal ``P~(x)`` (seed 003 eq. 16). ``error``: binomial error of each bin
    (``sqrt(n_k (1 - n_k/n)) / (n width)``, valid for independent configurations).
    """

    L: int
    x: np.ndarray
    density: np.ndarray
    error: np.ndarray
    width: float
    n_samples: int
    beta_over_nu: float

    def log_ratio(self) -> tuple[np.ndarray, np.ndarray]:
        """``(x, ln(P(x)/P(0)))`` as in seed 003 Figs. 8-9 (``P(0)``: the central bin)."""
        c = int(np.argmin(np.abs(self.x)))
        with np.errstate(divide="ignore"):
            return self.x, np.log(self.density / self.density[c])


def _magnetizations(v: Any, L: int) -> np.ndarray:
    if isinstance(v, (str, bytes, os.PathLike)) or hasattr(v, "observables"):
        from ..io import open_ensemble

        own = not hasattr(v, "observables")
        ens = open_ensemble(v) if own else v
        try:
            if (ens.Lx, ens.Ly) != (L, L):
                raise ValueError(f"source[{L}] is an ensemble of {ens.Lx}x{ens.Ly}, not {L}x{L}")
            return np.asarray(ens.observables["magnetization"], dtype=np.float64)
        finally:
            if own:
                ens.close()
    return np.asarray(v, dtype=np.float64).reshape(-1)


def magnetization_collapse(source: Mapping[int, Any], *, beta_over_nu: float = BETA_OVER_NU,
                           width: float = 0.05) -> dict[int, CollapsedHistogram]:
    r"""Histograms of ``m`` for several ``L``, rescaled by ``L^{beta/nu}`` (seed 003 eq. 16, Figs. 8-9).

    Parameters
    ----------
    source : ``L -> ensemble path``, open Ensemble, or an array of per-site magnetisations
        (``L x L`` lattices, ``L^2`` even).
    beta_over_nu : the exponent of the collapse (exact: 1/8).
    width : target bin width in ``x = L^{beta/nu} m``. On an ``L x L`` lattice ``m`` takes the
        values ``2k/L^2 - 1``; each bin holds an odd number ``g`` of them (``g`` nearest to
        ``width / (2 L^{beta/nu} / L^2)``, at least 1) and is centred on a value, the central bin
        on ``m = 0``, so no bin aliases the lattice of allowed values.

    Returns
    -------
    dict ``L -> CollapsedHistogram``, ordered by ``L``.
    """
    if not isinstance(source, Mapping):
        raise TypeError(f"source must be a mapping L -> ensemble path or magnetisation series; got {type(source).__name__}")
    bon = float(beta_over_nu)
    if not (math.isfinite(width) and width > 0):
        raise ValueError(f"width must be a positive number; got {width!r}")
    out = {}
    for L in sorted(source):
        Lc = _check_size(L, "source key L")
        N = Lc * Lc
        if N % 2:
            raise ValueError(f"magnetization_collapse needs an even number of sites; L = {Lc} gives {N}")
        m = _magnetizations(source[L], Lc)
        if m.size == 0:
            raise ValueError(f"source[{Lc}] has no magnetisation values")
        up = np.rint((m * N + N) / 2.0).astype(np.int64)  # number of up spins, 0..N
        if np.any(np.abs(2.0 * up - N - m * N) > 1e-6) or up.min() < 0 or up.max() > N:
            raise ValueError(f"source[{Lc}] holds values that are not magnetisations per site of {Lc}x{Lc}")
        step_x = 2.0 * Lc**bon / N
        g = max(1, int(round(width / step_x)))
        g += 1 - g % 2  # odd
        h = (g - 1) // 2
        counts = np.bincount(up, minlength=N + 1)
        jmax = (N // 2 - h) // g  # full groups on each side of the centre
        centres = N // 2 + g * np.arange(-jmax, jmax + 1)
        cs = np.concatenate([[0], np.cumsum(counts)])
        nk = cs[centres + h + 1] - cs[centres - h]
        n = m.size
        w = g * step_x
        x = (2.0 * centres / N - 1.0) * Lc**bon
        dens = nk / (n * w)
        err = np.sqrt(nk * (1.0 - nk / n)) / (n * w)
        out[Lc] = CollapsedHistogram(Lc, x, dens, err, w, int(n), bon)
    return out


def plot_magnetization_collapse(collapsed: Mapping[int, CollapsedHistogram], path: str | os.PathLike | None = None, *,
                                log_ratio: bool = True, title: str | None = None):
    r"""Plot the collapse of :func:`magnetization_collapse` (needs matplotlib: ``isingcore[plot]``).

    ``log_ratio=True`` draws ``ln(P(x)/P(0))`` against ``x = L^{beta/nu} m`` (seed 003 Fig. 8);
    otherwise ``P~(x)`` with its error band. Writes a PNG to ``path`` if given; returns the figure.
    """
    if not collapsed:
        raise ValueError("collapsed is empty: nothing to plot")
    try:
        from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend
    except ImportError as exc:  # pragma: no cover - optional dependency
        raise ImportError("plot_magnetization_collapse needs matplotlib (pip install 'isingcore[plot]')") from exc
    fig = Figure(figsize=(6.0, 4.2), dpi=120)
    ax = fig.add_subplot()
    bon = None
    for L, hst in sorted(collapsed.items()):
        bon = hst.beta_over_nu
        if log_ratio:
            x, r = hst.log_ratio()
            ok = np.isfinite(r)
            ax.plot(x[ok], r[ok], "-", lw=1.2, label=f"L = {L}")
        else:
            ax.plot(hst.x, hst.density, "-", lw=1.2, label=f"L = {L}")
            ax.fill_between(hst.x, hst.density - hst.error, hst.density + hst.error, alpha=0.25)
    ax.set_xlabel(rf"$L^{{{bon:g}}}\, m$")
    ax.set_ylabel(r"$\ln P_L(m) / P_L(0)$" if log_ratio else rf"$L^{{-{bon:g}}} P_L(m)$")
    ax.set_title(title or rf"Scaling collapse of $P_L(m)$, $\beta/\nu = {bon:g}$")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    if path is not None:
        fig.savefig(os.fspath(path))
    return fig
