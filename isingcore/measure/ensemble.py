r"""Ensemble estimators of the 2D Ising model with autocorrelation-aware errors.

Every estimator takes Monte Carlo time series of per-configuration observables (as produced by
:func:`isingcore.measure.measure`), each of shape ``(N,)`` (one chain) or ``(R, N)`` (``R``
independent replicas of equal length, time along the last axis), and returns an
:class:`~isingcore.measure.autocorrelation.Estimate`. The ensemble average ``<.>`` is the mean
over all samples; nonlinear combinations of averages get their error from the Γ-method of the
linearly projected fluctuations (:func:`~isingcore.measure.autocorrelation.derived`,
U. Wolff, Comput. Phys. Commun. 156 (2004) 143, §3.1), so cross-correlations between the
primary series and their autocorrelations are both accounted for.

Notation: ``N_s`` = number of lattice sites (``n_sites``), ``m`` the magnetization per site,
``e`` the energy per site, ``beta = 1/(k_B T)`` (with ``J = 1`` the coupling ``K = beta J``).
All the quantities below are intensive (per site), the usual normalisation for finite-size
scaling.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from .autocorrelation import Estimate, _as_series, _check_S, derived, gamma_method

__all__ = [
    "binder_cumulant",
    "susceptibility",
    "susceptibility_connected",
    "specific_heat",
    "magnetization_energy_cumulant",
    "analyze_series",
]


def _check_beta(beta: Any) -> float:
    try:
        b = float(beta)
    except (TypeError, ValueError):
        raise TypeError(f"beta must be a real number (inverse temperature); got {beta!r}") from None
    if not (math.isfinite(b) and b >= 0.0):
        raise ValueError(f"beta must be finite and >= 0; got {beta!r}")
    return b


def _check_n_sites(n_sites: Any) -> int:
    if isinstance(n_sites, bool) or not isinstance(n_sites, (int, np.integer)):
        raise TypeError(f"n_sites must be a positive integer (Lx * Ly); got {n_sites!r}")
    if n_sites < 1:
        raise ValueError(f"n_sites must be a positive integer (Lx * Ly); got {n_sites!r}")
    return int(n_sites)


def _check_h(h: Any) -> float:
    try:
        v = float(h)
    except (TypeError, ValueError):
        raise TypeError(f"h must be a real number; got {h!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"h must be finite; got {h!r}")
    return v


def binder_cumulant(m2: Any, m4: Any, S: float = 2.0) -> Estimate:
    r"""Binder cumulant ``U4 = 1 - <m^4> / (3 <m^2>^2)``.

    K. Binder, Z. Phys. B 43 (1981) 119. ``U4 -> 2/3`` in the ordered phase, ``-> 0`` in the
    disordered phase; at the critical point of the periodic square lattice ``U4 -> 0.61069``
    (G. Kamieniarz and H. W. J. Blöte, J. Phys. A 26 (1993) 201; J. Salas and A. D. Sokal,
    J. Stat. Phys. 98 (2000) 551); seed 003 eq. (14).

    Parameters
    ----------
    m2, m4 : time series of ``m^2`` and ``m^4`` (``m`` = magnetization per site), shape
        ``(N,)`` or ``(R, N)``, from the same configurations.
    S : windowing parameter of the Γ-method.
    """
    return derived(lambda a2, a4: 1.0 - a4 / (3.0 * a2 * a2), m2, m4, S=S)


def susceptibility(m: Any, m2: Any, beta: float, n_sites: int, h: float = 0.0, S: float = 2.0) -> Estimate:
    r"""Magnetic susceptibility per site.

    ``chi = beta N_s <m^2>``                   for ``h == 0``
    ``chi = beta N_s (<m^2> - <m>^2)``         for ``h != 0``

    (fluctuation-dissipation relation ``chi = d<m>/dh``; e.g. D. P. Landau and K. Binder,
    *A Guide to Monte Carlo Simulations in Statistical Physics*, CUP, ch. 4; seed 003
    eq. (14) with ``beta`` absorbed into ``K``.)

    At ``h = 0`` the Boltzmann weight of the finite torus is invariant under ``s -> -s``, so
    ``<m> = 0`` exactly and ``<m>^2`` is *not* subtracted: its Monte Carlo estimate is a
    positive, noisy number that only reflects how often the chain tunnelled between the two
    magnetised sectors (nothing about the model), and subtracting it would bias ``chi`` low.
    ``m`` is then not used and may be ``None``. For the "connected" susceptibility used below
    ``T_c`` see :func:`susceptibility_connected`.

    Parameters
    ----------
    m, m2 : time series of ``m`` and ``m^2`` (shape ``(N,)`` or ``(R, N)``).
    beta : inverse temperature (``J = 1``).
    n_sites : number of lattice sites ``N_s = Lx * Ly``.
    h : external field of the simulation; selects the formula.
    """
    beta = _check_beta(beta)
    n = _check_n_sites(n_sites)
    h = _check_h(h)
    if h == 0.0:
        return derived(lambda a2: beta * n * a2, m2, S=S)
    if m is None:
        raise ValueError("m (the magnetization series) is required when h != 0: chi = beta N (<m^2> - <m>^2)")
    return derived(lambda a1, a2: beta * n * (a2 - a1 * a1), m, m2, S=S)


def susceptibility_connected(abs_m: Any, m2: Any, beta: float, n_sites: int, S: float = 2.0) -> Estimate:
    r"""Connected susceptibility per site ``chi' = beta N_s (<m^2> - <|m|>^2)``.

    The finite-lattice substitute for ``beta N_s (<m^2> - <m>^2)`` in the ordered phase, where
    ``<m> = 0`` by symmetry but ``<|m|>`` estimates the spontaneous magnetization (Landau and
    Binder, *A Guide to Monte Carlo Simulations in Statistical Physics*, ch. 4). It has the same
    critical exponent ``gamma/nu = 7/4`` as ``chi`` but a different amplitude.

    Parameters
    ----------
    abs_m, m2 : time series of ``|m|`` and ``m^2``.
    beta, n_sites : as in :func:`susceptibility`.
    """
    beta = _check_beta(beta)
    n = _check_n_sites(n_sites)
    return derived(lambda a1, a2: beta * n * (a2 - a1 * a1), abs_m, m2, S=S)


def specific_heat(e: Any, beta: float, n_sites: int, S: float = 2.0) -> Estimate:
    r"""Specific heat per site ``C = beta^2 N_s (<e^2> - <e>^2)`` (``k_B = 1``).

    ``e`` is the energy per site, so ``N_s (<e^2> - <e>^2) = (<E^2> - <E>^2) / N_s``
    (fluctuation-dissipation relation ``C = d<e>/dT``). Exact values on the finite torus:
    A. E. Ferdinand and M. E. Fisher, Phys. Rev. 185 (1969) 832 (see :mod:`isingcore.exact`).

    Parameters
    ----------
    e : time series of the energy per site (shape ``(N,)`` or ``(R, N)``).
    beta, n_sites : as in :func:`susceptibility`.
    """
    beta = _check_beta(beta)
    n = _check_n_sites(n_sites)
    e_arr = _as_series(e, "e")
    return derived(lambda a1, a2: beta * beta * n * (a2 - a1 * a1), e_arr, e_arr * e_arr, S=S)


def magnetization_energy_cumulant(abs_m: Any, e: Any, n_sites: int, S: float = 2.0) -> Estimate:
    r"""Magnetization-energy cumulant ``c_me = N_s (<|m| |e|> - <|m|> <|e|>) / <|m|>``.

    Seed 003 (upscaled Ising configurations), eq. (14); at criticality ``c_me ~ L^{1/nu}`` with
    ``1/nu = 1``, a direct probe of the correlation-length exponent. Since
    ``d<A>/d beta = -N_s (<A e> - <A><e>)``, it equals ``d ln<|m|> / d beta`` whenever ``e < 0``
    on every sampled configuration (then ``|e| = -e``), as for the ferromagnet near ``T_c``.

    ``e`` is the energy per site; with ``J = 1`` and ``h = 0``, ``|e|`` is exactly the modulus of
    the seed's bond density ``L^-2 sum_<ij> s_i s_j = c10x + c10y``. ``beta`` does not enter
    (the seed's definition).

    Parameters
    ----------
    abs_m : time series of ``|m|``.
    e : time series of the energy per site (same shape).
    n_sites : number of lattice sites.
    """
    n = _check_n_sites(n_sites)
    am = _as_series(abs_m, "abs_m")
    ae = np.abs(_as_series(e, "e"))
    if am.shape != ae.shape:
        raise ValueError(f"abs_m and e must have the same shape; got {am.shape} and {ae.shape}")
    return derived(lambda p, q, r: n * (p - q * r) / q, am * ae, am, ae, S=S)


def analyze_series(
    obs: Mapping[str, Any], beta: float, n_sites: int, h: float = 0.0, S: float = 2.0
) -> dict[str, Estimate]:
    r"""Estimates with errors of every quantity that the given time series allow.

    Parameters
    ----------
    obs : mapping from observable name to its time series (shape ``(N,)`` or ``(R, N)``, time
        along the last axis; e.g. the per-configuration dict of
        :func:`isingcore.measure.measure` stacked over Monte Carlo time). Recognised keys:
        ``"energy"`` (per site), ``"magnetization"``, ``"abs_m"``, ``"m2"``, ``"m4"``,
        ``"c10x"``, ``"c10y"``, ``"c11"``; other keys are ignored.
    beta : inverse temperature of the ensemble (``J = 1``).
    n_sites : number of lattice sites ``Lx * Ly``.
    h : external field of the ensemble (selects the susceptibility formula).
    S : windowing parameter of the Γ-method.

    Returns
    -------
    dict[str, Estimate], in this order, containing each entry whose inputs are present:

    ==============================  =============================================================
    ``"energy"``                    ``<e>``                                   (needs energy)
    ``"magnetization"``             ``<m>``                                   (needs magnetization)
    ``"abs_m"``, ``"m2"``, ``"m4"`` ``<|m|>``, ``<m^2>``, ``<m^4>``
    ``"binder"``                    :func:`binder_cumulant`                   (m2, m4)
    ``"susceptibility"``            :func:`susceptibility`                    (m2; and magnetization if h != 0)
    ``"susceptibility_connected"``  :func:`susceptibility_connected`          (abs_m, m2)
    ``"specific_heat"``             :func:`specific_heat`                     (energy)
    ``"c_me"``                      :func:`magnetization_energy_cumulant`     (abs_m, energy)
    ``"c10x"``, ``"c10y"``, ``"c11"`` nearest- and next-nearest-neighbour correlations
    ==============================  =============================================================
    """
    if not isinstance(obs, Mapping):
        raise TypeError(f"obs must be a mapping from observable name to time series; got {type(obs).__name__}")
    beta = _check_beta(beta)
    n = _check_n_sites(n_sites)
    h = _check_h(h)
    S = _check_S(S)
    names = ("energy", "magnetization", "abs_m", "m2", "m4", "c10x", "c10y", "c11")
    series = {k: _as_series(obs[k], f"obs[{k!r}]") for k in names if k in obs and obs[k] is not None}
    shapes = {k: v.shape for k, v in series.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"all series in obs must have the same shape (R, N); got {shapes}")

    out: dict[str, Estimate] = {}
    for k in ("energy", "magnetization", "abs_m", "m2", "m4"):
        if k in series:
            out[k] = gamma_method(series[k], S=S)
    if "m2" in series and "m4" in series:
        out["binder"] = binder_cumulant(series["m2"], series["m4"], S=S)
    if "m2" in series and (h == 0.0 or "magnetization" in series):
        out["susceptibility"] = susceptibility(series.get("magnetization"), series["m2"], beta, n, h=h, S=S)
    if "abs_m" in series and "m2" in series:
        out["susceptibility_connected"] = susceptibility_connected(series["abs_m"], series["m2"], beta, n, S=S)
    if "energy" in series:
        out["specific_heat"] = specific_heat(series["energy"], beta, n, S=S)
    if "abs_m" in series and "energy" in series:
        out["c_me"] = magnetization_energy_cumulant(series["abs_m"], series["energy"], n, S=S)
    for k in ("c10x", "c10y", "c11"):
        if k in series:
            out[k] = gamma_method(series[k], S=S)
    return out
