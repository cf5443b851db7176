"""Figures and a Markdown page for one giant configuration (streaming analysis, :mod:`isingcore.measure.streaming`).

:func:`giant_report` reads a giant-lattice file lazily and writes into ``out_dir``:

- ``giant_configuration.png``: the top-left ``4096^2`` window (block-averaged, as
  :func:`isingcore.report.figure_configuration` draws ensembles);
- ``giant_correlation.png``: ``G(r)`` along the axes for ``r = 1 .. r_max`` from all pairs, with the
  band errors, against ``A r^(-1/4)`` (``A = 0.70338``, ``L -> infinity`` at ``K_c``) and the exact
  axis values of the infinite lattice for small ``r``; lower panel ``G(r) / (A r^(-1/4))``;
- ``giant_structure_factor.png``: the averaged tile periodogram ``S_T(k)`` (map and shell average
  with the ``k^(-7/4)`` slope of the critical point);
- ``giant_report.md`` and ``giant_analysis.json``: energy per site, ``c10``, ``c11``, ``m`` with tile
  errors against the exact infinite-lattice values at ``K_c`` (``e = -sqrt 2``, ``c10 = 1/sqrt 2``,
  ``c11 = 2/pi``), ``G(r)`` at selected ``r`` and the timings.
"""

from __future__ import annotations

import json
import math
import os
import time

import numpy as np

from .report import _fmt, _plt, figure_configuration, structure_factor_map

#: exact infinite-lattice values at K_c (Onsager; Kaufman & Onsager 1949; McCoy & Wu 1973)
EXACT_KC = {"energy": -math.sqrt(2.0), "c10": 1.0 / math.sqrt(2.0), "c11": 2.0 / math.pi}


def figure_correlation(g, path: str, title: str, d=None) -> None:
    """G(r) along the axes (log-log) against A r^(-1/4) and exact small-r values; ratio panel.

    ``d``: optional :class:`~isingcore.measure.streaming.DiagonalCorrelation` (sampled rows), drawn at
    ``r = sqrt(2) n`` with the exact infinite-lattice diagonal values for ``n <= 10``.
    """
    from .exact import critical_axis_correlation, critical_correlation_asymptotic, critical_diagonal_correlation

    plt = _plt()
    fig, (ax, bx) = plt.subplots(2, 1, figsize=(6, 6), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    r = g.r[1:]
    m, e = g.mean[1:], g.error[1:]
    ax.errorbar(r, m, yerr=e, fmt=".", ms=2, lw=0.6, label=f"G(r), all axis pairs ({g.n_bands} bands for errors)")
    rr = np.geomspace(1, r.max(), 200)
    ax.plot(rr, critical_correlation_asymptotic(rr), "k--", lw=1, label=r"$A\,r^{-1/4}$, $A = 0.70338$ ($L\to\infty$, $K_c$)")
    n_ex = np.arange(1, min(10, r.max()) + 1)
    ex = np.array([float(critical_axis_correlation(int(n))) for n in n_ex])
    ax.plot(n_ex, ex, "r+", ms=7, label="exact, axis, infinite lattice")
    if d is not None:
        k = d.n > 0
        rd = math.sqrt(2.0) * d.n[k]
        ax.errorbar(rd, d.mean[k], yerr=d.error[k], fmt="s", ms=3, color="C2",
                    label=f"G(r), diagonal, {d.rows} sampled rows")
        nd = d.n[k & (d.n <= 10)]
        if nd.size:
            ax.plot(math.sqrt(2.0) * nd, [float(critical_diagonal_correlation(int(n))) for n in nd], "x", color="C3",
                    ms=6, label="exact, diagonal, infinite lattice")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylabel("G(r) = <s_0 s_r>")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    ratio = m / critical_correlation_asymptotic(r)
    bx.errorbar(r, ratio, yerr=e / critical_correlation_asymptotic(r), fmt=".", ms=2, lw=0.6)
    if d is not None:
        bx.errorbar(rd, d.mean[k] / critical_correlation_asymptotic(rd), yerr=d.error[k] / critical_correlation_asymptotic(rd),
                    fmt="s", ms=3, color="C2")
    bx.axhline(1.0, color="k", lw=0.8, ls="--")
    bx.set_xlabel("r (lattice spacings, Euclidean)")
    bx.set_ylabel(r"G / ($A r^{-1/4}$)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def figure_structure_factor(sk, path: str, title: str) -> None:
    """The averaged tile periodogram: log10 map and shell average with the k^(-7/4) slope."""
    from matplotlib.ticker import NullFormatter

    from .measure.correlations import shell_average

    plt = _plt()
    fig, axes = structure_factor_map(plt, sk.mean, "log10 S_T(k)")
    sh = shell_average(sk.mean)
    ok = (sh.count > 0) & (sh.k > 0)
    axes[1].plot(sh.k[ok], sh.mean[ok], "o", ms=2, label=f"shell average, {sk.n_tiles} tiles of {sk.tile}")
    kk = sh.k[ok]
    if kk.size > 3:
        i0 = min(3, kk.size - 1)
        axes[1].plot(kk, sh.mean[ok][i0] * (kk / kk[i0]) ** (-7 / 4), "k--", lw=1, label=r"$\propto k^{-7/4}$")
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    axes[1].xaxis.set_minor_formatter(NullFormatter())
    axes[1].set_xlabel("|k|")
    axes[1].set_ylabel("S_T(|k|)")
    axes[1].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


#: diagonal steps n for the sampled-pairs estimate (r = sqrt(2) n up to 10^4)
DIAGONAL_STEPS = (1, 2, 3, 5, 7, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 7071)


def giant_report(path: str, out_dir: str, *, r_max: int = 10_000, tile: int | None = None, sk_tile: int = 1024,
                 sk_max_tiles: int | None = 256, diag_rows: int | None = 256, progress: bool = False) -> dict:
    """Streaming analysis of the giant-lattice file ``path`` with figures; returns the JSON-friendly results."""
    from .giant import open_giant
    from .measure.streaming import analyse_giant

    os.makedirs(out_dir, exist_ok=True)
    t0 = time.perf_counter()
    with open_giant(path) as lat:
        Lx, Ly = lat.shape
        r_max = min(r_max, min(Lx, Ly) // 2)
        steps = [n for n in DIAGONAL_STEPS if math.sqrt(2.0) * n <= max(r_max, 1) * 1.0001 and n <= min(Lx, Ly) // 2]
        res = analyse_giant(lat, r_max=r_max, tile=tile, sk_tile=min(sk_tile, min(Lx, Ly)), sk_max_tiles=sk_max_tiles,
                            diag_n=steps or None, diag_rows=None if diag_rows is None or diag_rows >= Lx else diag_rows,
                            progress=progress)
        t_an = time.perf_counter() - t0
        w = min(Lx, 4096)
        name = f"{lat.attrs.get('model', '?')}: L0={lat.attrs.get('seed_size', '?')} -> {Lx}"
        figure_configuration(lat[0:w, 0:w], os.path.join(out_dir, "giant_configuration.png"),
                             f"{name} (top-left {w}^2 window)")
        attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in lat.attrs.items() if not isinstance(v, np.ndarray)}
    objs = res.pop("_objects")
    g = objs["G"]
    figure_correlation(g, os.path.join(out_dir, "giant_correlation.png"), f"{name}: G(r) along the axes and diagonals",
                       objs.get("D"))
    if "S" in objs:
        figure_structure_factor(objs["S"], os.path.join(out_dir, "giant_structure_factor.png"),
                                f"{name}: averaged periodogram of {objs['S'].n_tiles} tiles of {objs['S'].tile}")
    res["seconds_analysis"] = t_an
    res["file"] = os.path.abspath(path)
    res["attrs"] = attrs
    pick = [r for r in (1, 2, 3, 5, 10, 30, 100, 300, 1000, 3000, 10000) if r <= r_max]
    from .exact import critical_correlation_asymptotic

    res["G_selected"] = [{"r": r, "G": float(g.mean[r]), "error": float(g.error[r]),
                          "A_r^-1/4": float(critical_correlation_asymptotic(r))} for r in pick]
    lines = [f"# Giant configuration {Lx} x {Ly}", "",
             f"File `{os.path.basename(path)}`; model {attrs.get('model')}, seed size {attrs.get('seed_size')}, "
             f"{attrs.get('stages')} stages, refine {attrs.get('refine')}, seed {attrs.get('seed')}. "
             f"Streaming analysis in {t_an:.0f} s (isingcore.measure.streaming).", "",
             "| quantity | this configuration | exact, L -> infinity, K_c |", "|---|---|---|"]
    for k in ("energy", "c10", "c11", "magnetization"):
        lines.append(f"| {k} | {_fmt(res[k]['mean'], res[k]['error'])} | "
                     f"{EXACT_KC[k]:.8f} |" if k in EXACT_KC else f"| {k} | {_fmt(res[k]['mean'], res[k]['error'])} | 0 (finite torus, h = 0) |")
    lines += ["", f"Errors: standard error over {res['energy']['n_tiles']} tiles of {res['tile']}^2 (blocks).", "",
              "| r | G(r) | A r^(-1/4) |", "|---|---|---|"]
    for row in res["G_selected"]:
        lines.append(f"| {row['r']} | {_fmt(row['G'], row['error'])} | {row['A_r^-1/4']:.6f} |")
    lines += ["", f"G(r): all 2N pairs along the axes; errors over {g.n_bands} row/column bands (a lower bound at "
              f"large r, where bands are correlated).", ""]
    if "D" in objs:
        from .exact import critical_diagonal_correlation

        d = objs["D"]
        lines += [f"Diagonal, sampled pairs ({d.rows} random rows, both diagonals, all columns; errors over the rows):",
                  "", "| n | r = sqrt(2) n | D(n) | exact (n <= 10) or A r^(-1/4) |", "|---|---|---|---|"]
        for n, m, e in zip(d.n, d.mean, d.error):
            ref = float(critical_diagonal_correlation(int(n))) if n <= 10 else float(
                critical_correlation_asymptotic(math.sqrt(2.0) * n))
            lines.append(f"| {n} | {math.sqrt(2.0) * n:.1f} | {_fmt(float(m), float(e))} | {ref:.6f} |")
        lines.append("")
    lines += ["![configuration](giant_configuration.png)",
              "![G(r)](giant_correlation.png)", "![S(k)](giant_structure_factor.png)", ""]
    with open(os.path.join(out_dir, "giant_report.md"), "w") as f:
        f.write("\n".join(lines))
    with open(os.path.join(out_dir, "giant_analysis.json"), "w") as f:
        json.dump(res, f, indent=1, default=float)
    return res


__all__ = ["giant_report", "figure_correlation", "figure_structure_factor", "EXACT_KC"]
