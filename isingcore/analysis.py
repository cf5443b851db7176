"""Ensemble analysis: observables with Gamma-method errors next to their exact values.

:func:`analyze_ensemble` reads an isingcore HDF5 ensemble, splits the per-configuration series
by chain (independent chains are replicas in the Gamma method), computes every estimator of
:func:`isingcore.measure.analyze_series`, and attaches the exact value where one exists:

* energy, specific heat, c10 (square tori): Kaufman / Ferdinand-Fisher, any size, h = 0;
* <|m|>, <m^2>, <m^4>, U4, chi: row transfer matrix, tori with N <= 100 sites, h = 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PRIMARY_FROM_M = ("abs_m", "m2", "m4")
TABLE_ORDER = ("energy", "c10x", "c10y", "c11", "abs_m", "m2", "m4", "binder", "susceptibility", "specific_heat", "c_me")


@dataclass(frozen=True)
class Row:
    name: str
    mean: float
    error: float
    tau_int: float
    exact: float | None

    @property
    def z(self) -> float | None:
        if self.exact is None or not self.error > 0:
            return None
        return (self.mean - self.exact) / self.error


#: chains shorter than this are not analysed chain by chain (the Γ-method needs a few samples each)
MIN_CHAIN = 4


def chain_series(ens, names) -> dict[str, np.ndarray]:
    """Per-chain series (C, n) of the named observables, ordered by step, truncated to a common length.

    Ensembles of independent configurations stored as one chain each (``isingcore upscale``
    writes one chain per upscaled seed) are returned as a single series (1, N) in file order:
    their configurations are independent draws, so the Γ-method then finds tau_int = 1/2.
    """
    chain = np.asarray(ens.chain)
    step = np.asarray(ens.step)
    chains = np.unique(chain)
    order = [np.flatnonzero(chain == c)[np.argsort(step[chain == c], kind="stable")] for c in chains]
    n = min(len(o) for o in order)
    if n < MIN_CHAIN and len(chain) >= MIN_CHAIN and max(len(o) for o in order) < MIN_CHAIN:
        order = [np.arange(len(chain))]
        n = len(chain)
    out = {}
    for name in names:
        full = np.asarray(ens.observables[name], dtype=np.float64)
        out[name] = np.stack([full[o[:n]] for o in order])
    return out


def exact_references(beta: float, Lx: int, Ly: int, J: float = 1.0, h: float = 0.0) -> dict[str, float]:
    """Exact values of the table's observables that are known for this lattice (h = 0 only)."""
    from . import exact

    if h != 0.0:
        return {}
    ref: dict[str, float] = {}
    t = exact.kaufman_torus(beta, Lx, Ly, J=J)
    ref["energy"] = float(t.energy)
    ref["specific_heat"] = float(t.specific_heat)
    if Lx == Ly:
        ref["c10x"] = ref["c10y"] = -float(t.energy) / (2.0 * J)
    if Lx * Ly <= 100 and Lx <= 10 and Ly <= 10:
        mm = exact.magnetization_moments(beta, Lx, Ly, J=J)
        ref["abs_m"], ref["m2"], ref["m4"] = float(mm.abs_m), float(mm.m2), float(mm.m4)
        ref["binder"] = 1.0 - ref["m4"] / (3.0 * ref["m2"] ** 2)
        ref["susceptibility"] = beta * Lx * Ly * ref["m2"]
    return ref


def analyze_ensemble(path_or_ensemble, S: float = 2.0, *, correlations: bool = True, mcrg: bool = False,
                     n_diagonal: int = 16) -> dict:
    """Analyse an ensemble file; returns a JSON-ready dict (see ``isingcore analyze --json``).

    ``correlations``: add ``correlation_diagonal`` (n = 1..``n_diagonal``); ``mcrg``: add the MCRG
    exponents (:func:`mcrg_summary`).
    """
    from .io import open_ensemble
    from .measure import analyze_series

    ens = open_ensemble(path_or_ensemble) if isinstance(path_or_ensemble, (str, bytes)) or hasattr(
        path_or_ensemble, "__fspath__") else path_or_ensemble
    a = ens.attrs
    Lx, Ly = int(a["Lx"]), int(a["Ly"])
    beta, J, h = float(a["beta"]), float(a.get("J", 1.0)), float(a.get("h", 0.0))
    names = [k for k in ("energy", "magnetization", "c10x", "c10y", "c11") if k in ens.observables]
    if "magnetization" not in names or "energy" not in names:
        raise ValueError(f"{ens!r}: the ensemble has no 'energy'/'magnetization' series to analyse")
    importance = None
    if "log_w" in ens.observables:
        # draws from a multilevel sampler q: analyse the exact independence-MH chain over them
        from .multilevel.ensemble import importance_summary

        importance, est = importance_summary(ens, S=S)
        n_chains, n_per = 1, importance["n_samples"]
    else:
        series = chain_series(ens, names)
        m = series.pop("magnetization")
        series["magnetization"] = m
        series["abs_m"], series["m2"], series["m4"] = np.abs(m), m**2, m**4
        est = analyze_series(series, beta=beta, n_sites=Lx * Ly, h=h, S=S)
        n_chains, n_per = series["energy"].shape
    ref = exact_references(beta, Lx, Ly, J, h)
    rows = {}
    for name in TABLE_ORDER:
        if name in est:
            e = est[name]
            rows[name] = Row(name, float(e.mean), float(e.error), float(e.tau_int), ref.get(name))
    out = {
        "size": Lx if Lx == Ly else [Lx, Ly],
        "beta": beta,
        "J": J,
        "h": h,
        "algorithm": a.get("algorithm"),
        "n_configs": int(n_chains * n_per),
        "n_chains": int(n_chains),
        "spacing": a.get("spacing"),
        "observables": {k: {"mean": r.mean, "error": r.error, "tau_int": r.tau_int, "exact": r.exact,
                            "z": r.z} for k, r in rows.items()},
    }
    if importance is not None:
        out["importance"] = importance
    if correlations and importance is None and min(Lx, Ly) >= 4 and n_per >= 4:
        out["correlation_diagonal"] = diagonal_correlation_summary(ens, beta, J, h, n_max=n_diagonal, S=S)
    if mcrg:
        out["mcrg"] = mcrg_summary(ens)
    return out


def diagonal_correlation_summary(ens, beta: float, J: float = 1.0, h: float = 0.0, n_max: int = 16,
                                 S: float = 2.0) -> dict:
    """``<s_{0,0} s_{n,n}>`` (sites and both diagonals averaged) with Γ-method errors, n = 1..n_max.

    ``exact``: the infinite-lattice value at K_c (McCoy & Wu, ch. XI) when the ensemble is at K_c and
    h = 0, else None; on a finite torus it differs by a finite-size correction that grows with n/L.
    """
    from .constants import K_C
    from .exact import critical_diagonal_correlation
    from .measure.correlations import correlation_function

    n_max = max(1, min(n_max, min(ens.Lx, ens.Ly) // 2))
    chain = np.asarray(ens.chain)
    if np.bincount(np.unique(chain, return_inverse=True)[1]).min() < MIN_CHAIN:
        # independent configurations, one per chain (upscaled files): one series, at most 2^27 sites read
        k = max(MIN_CHAIN, min(len(ens), (1 << 27) // (ens.Lx * ens.Ly)))
        source = ens[list(np.unique(np.linspace(0, len(ens) - 1, k).round().astype(int)))]
    else:
        source = ens
    cf = correlation_function(source, direction="diagonal", r_max=n_max, S=S)
    n = np.arange(1, n_max + 1)
    at_kc = h == 0.0 and abs(beta * J - K_C) < 1e-12
    exact = [float(v) for v in critical_diagonal_correlation(n)] if at_kc else None
    return {"n": n.tolist(), "mean": [float(v) for v in cf.mean[1:]], "error": [float(v) for v in cf.error[1:]],
            "tau_int": [float(v) for v in cf.tau_int[1:]], "exact_infinite_lattice": exact}


def mcrg_summary(ens, couplings: str = "minimal", seed: int = 0) -> dict:
    """Swendsen's MCRG exponents y_t, y_h (2x2 majority rule) of an ensemble, with jackknife errors.

    Uses the highest blocking level ``n`` with T^(n) between lattices of at least 8 sites a side
    and at most level 1 (the level the issue's criterion and seed 003 use).
    """
    from .measure.mcrg import coupling_set, mcrg_ensemble_densities, mcrg_exponents

    L = min(ens.Lx, ens.Ly)
    if L < 16:
        raise ValueError(f"--mcrg needs a lattice of at least 16x16 (two 2x2 blockings to >= 4 sites), got {ens.Lx}x{ens.Ly}")
    cs = coupling_set(couplings)
    levels = 2 if L >= 32 else 1
    dens, cs = mcrg_ensemble_densities(ens, levels=levels, couplings=cs, seed=seed)
    if dens.shape[1] < MIN_CHAIN:  # independent configurations stored one per chain: one series
        dens = dens.reshape((1, -1) + dens.shape[2:])
    level = levels - 1
    R, N = dens.shape[:2]
    res = mcrg_exponents(dens, cs, level=level, n_bins=R * max(1, min(N, -(-50 // R))))
    est = lambda e: {"mean": float(e.mean), "error": float(e.error)}  # noqa: E731
    yt = res.y_t
    yh = res.y_h
    return {"y_t": est(yt), "y_h": est(yh), "level": level, "lattices": [L >> level, L >> (level + 1)],
            "couplings": couplings, "exact": {"y_t": 1.0, "y_h": 15 / 8}}


def format_table(result: dict) -> str:
    """A plain-text table of an :func:`analyze_ensemble` result."""
    from .measure.autocorrelation import format_value_error

    head = (f"L={result['size']}  beta={result['beta']:.12g}  algorithm={result['algorithm']}  "
            f"configs={result['n_configs']} ({result['n_chains']} chain(s), spacing {result['spacing']} sweeps)")
    lines = [head, f"{'observable':<16}{'value':>22}{'tau_int':>10}{'exact':>18}{'z':>8}"]
    for name, o in result["observables"].items():
        val = format_value_error(o["mean"], o["error"]) if o["error"] > 0 else f"{o['mean']:.10g}"
        tau = "" if o["tau_int"] is None or not math.isfinite(o["tau_int"]) else f"{o['tau_int']:.2f}"
        ex = "" if o["exact"] is None else f"{o['exact']:.10f}"
        z = "" if o["z"] is None else f"{o['z']:+.2f}"
        lines.append(f"{name:<16}{val:>22}{tau:>10}{ex:>18}{z:>8}")
    imp = result.get("importance")
    if imp:
        lines.append("Draws from a multilevel sampler q: the table analyses the independence Metropolis-Hastings chain "
                     "over them (exact MCMC); tau_int in proposals.")
        lz, rw = imp["ln_z"], imp["reweighted"]
        lines.append(f"importance weights: ESS/N = {imp['ess']:.4g} (N = {imp['n_samples']}), IMH acceptance "
                     f"{imp['imh_acceptance']:.3f}")
        lines.append(f"  ln Z = {format_value_error(lz['mean'], lz['error'])}  (Kaufman exact {imp['ln_z_exact']:.6f}); "
                     f"Z_hat/Z = {format_value_error(imp['mode_dropping']['mean'], imp['mode_dropping']['error'])}")
        lines.append(f"  reweighted energy = {format_value_error(rw['energy']['mean'], rw['energy']['error'])}, "
                     f"<m^2> = {format_value_error(rw['m2']['mean'], rw['m2']['error'])}")
    else:
        lines.append("tau_int in units of the stored spacing; errors by the Gamma method (U. Wolff, CPC 156 (2004) 143).")
    cd = result.get("correlation_diagonal")
    if cd:
        lines.append("")
        lines.append(f"{'n':>4}{'<s(0,0) s(n,n)>':>22}{'infinite lattice, K_c':>24}")
        for k, n in enumerate(cd["n"][:8]):
            ex = cd["exact_infinite_lattice"]
            lines.append(f"{n:>4}{format_value_error(cd['mean'][k], cd['error'][k]):>22}"
                         + (f"{ex[k]:>24.10f}" if ex else ""))
    mc = result.get("mcrg")
    if mc:
        lines.append("")
        lines.append(f"MCRG (2x2 majority rule, {mc['couplings']} couplings, T^({mc['level']}) between "
                     f"{mc['lattices'][0]}^2 and {mc['lattices'][1]}^2): "
                     f"y_t = {format_value_error(mc['y_t']['mean'], mc['y_t']['error'])} (exact 1), "
                     f"y_h = {format_value_error(mc['y_h']['mean'], mc['y_h']['error'])} (exact 15/8)")
    return "\n".join(lines)
