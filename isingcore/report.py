"""Physics report of an ensemble: is it critical Ising? (``isingcore report FILE.h5``)

Writes a self-contained Markdown page ``report.md`` and an HTML page ``report.html`` (same
content, tables coloured) with PNG figures into ``--out DIR``:

- a configuration image;
- the observables (Γ-method errors) against the exact values (Kaufman's torus; transfer-matrix
  moments on small tori) and against a reference ensemble (``--reference``), each with its
  z-score, flagged when |z| > 3 (red) or |z| > 2 (amber);
- G(r) along the axes and the diagonal on log-log axes against A r^(-1/4) and, on the
  diagonal, against the exact infinite-lattice values at K_c;
- the structure factor S(k) (2D map and radial average) with its isotropy measure;
- the magnetization distribution in the scaling variable L^(1/8) m, with the reference's;
- for upscaled ensembles (``algorithm = "irg"``), the per-stage history of c10, c11 and |m|.

Seeds 000 (Fig. 3, 4; Table I), 003 (Sec. IV) and DESIGN.md section 5 motivate each panel.
"""

from __future__ import annotations

import html
import math
import os

import numpy as np

from .analysis import analyze_ensemble
from .constants import BETA_C
from .io import open_ensemble

Z_WARN, Z_BAD = 2.0, 3.0


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - matplotlib is in the plot and test extras
        raise SystemExit(f"isingcore's figures (report, --png) need matplotlib (pip install 'isingcore[plot]'): {exc}") from None
    return plt


def _z(a, ea, b, eb) -> float | None:
    err = math.hypot(ea or 0.0, eb or 0.0)
    if err == 0 or a is None or b is None:
        return None
    return (a - b) / err


def compare_table(res: dict, ref: dict | None) -> list[dict]:
    """Rows: observable, value, error, exact and z against it, reference value and z against it."""
    rows = []
    for name, o in res["observables"].items():
        row = {"name": name, "mean": o["mean"], "error": o["error"], "tau_int": o["tau_int"], "exact": o["exact"],
               "z_exact": o["z"], "ref": None, "ref_error": None, "z_ref": None}
        if ref is not None and name in ref["observables"]:
            r = ref["observables"][name]
            row.update(ref=r["mean"], ref_error=r["error"], z_ref=_z(o["mean"], o["error"], r["mean"], r["error"]))
        rows.append(row)
    return rows


def _flag(z) -> str:
    if z is None:
        return ""
    return "bad" if abs(z) > Z_BAD else "warn" if abs(z) > Z_WARN else "ok"


def _fmt(v, e=None) -> str:
    from .measure.autocorrelation import format_value_error

    if v is None:
        return ""
    if e is not None and e > 0 and math.isfinite(e):
        return format_value_error(v, e)
    return f"{v:.10g}"


def _sample(ens, n_max: int, max_sites: int = 1 << 26) -> np.ndarray:
    """Up to ``n_max`` configurations spread over the file (fewer for very large lattices)."""
    n = len(ens)
    per = ens.Lx * ens.Ly
    k = max(1, min(n, n_max, max_sites // max(per, 1)))
    idx = np.unique(np.linspace(0, n - 1, k).round().astype(int))
    return ens[list(idx)]


def figure_configuration(spins, path: str, title: str, max_pixels: int = 1024) -> None:
    """Draw one configuration (block-averaged down to at most ``max_pixels`` per side)."""
    plt = _plt()
    s = np.asarray(spins)
    Lx, Ly = s.shape
    f = max(1, -(-max(Lx, Ly) // max_pixels))
    if f > 1:
        hx, hy = Lx // f, Ly // f
        img = s[:hx * f, :hy * f].reshape(hx, f, hy, f).mean(axis=(1, 3), dtype=np.float32)
    else:
        img = s.astype(np.float32)
    fig, ax = plt.subplots(figsize=(6, 6), dpi=max(100, min(300, img.shape[0] // 6)))
    ax.imshow(img, cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title + (f" (block means of {f}x{f})" if f > 1 else ""), fontsize=8)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def figure_magnetization(m: np.ndarray, L: int, path: str, ref_m: np.ndarray | None = None, ref_L: int | None = None):
    """Histogram of L^(1/8) m (beta/nu = 1/8): scale-invariant at K_c (seed 003 eq. 16)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    bins = np.linspace(-1.6, 1.6, 65)
    ax.hist(m * L ** 0.125, bins=bins, density=True, histtype="step", label=f"this ensemble (L={L})")
    if ref_m is not None:
        ax.hist(ref_m * ref_L ** 0.125, bins=bins, density=True, histtype="step", label=f"reference (L={ref_L})")
    ax.set_xlabel(r"$L^{1/8}\,m$")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def figure_stages(history: list, path: str) -> None:
    plt = _plt()
    L = [h["L"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(10, 3))
    for ax, key, exact, label in ((axes[0], "c10", 1 / math.sqrt(2), "c10"), (axes[1], "c11", 2 / math.pi, "c11"),
                                  (axes[2], "abs_m", None, "|m|")):
        ax.errorbar(L, [h[key] for h in history], yerr=[h.get(key + "_err") or 0 for h in history], marker="o",
                    label="after refinement")
        if "raw_" + key in history[-1]:
            ax.plot(L[1:], [h["raw_" + key] for h in history[1:]], "x--", label="raw (before refinement)")
        if exact is not None:
            ax.axhline(exact, color="k", lw=0.8, ls=":", label="L → ∞, K_c")
        ax.set_xscale("log")
        ax.set_xlabel("L")
        ax.set_title(label)
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _md_table(rows: list[dict], with_ref: bool) -> str:
    head = "| observable | value | τ_int | exact | z (exact) |" + (" reference | z (reference) |" if with_ref else "")
    sep = "|---|---|---|---|---|" + ("---|---|" if with_ref else "")
    out = [head, sep]
    mark = {"bad": " **✗**", "warn": " (!)", "ok": "", "": ""}
    for r in rows:
        cells = [r["name"], _fmt(r["mean"], r["error"]),
                 "" if r["tau_int"] is None or not math.isfinite(r["tau_int"]) else f"{r['tau_int']:.2f}",
                 _fmt(r["exact"]), "" if r["z_exact"] is None else f"{r['z_exact']:+.2f}{mark[_flag(r['z_exact'])]}"]
        if with_ref:
            cells += [_fmt(r["ref"], r["ref_error"]),
                      "" if r["z_ref"] is None else f"{r['z_ref']:+.2f}{mark[_flag(r['z_ref'])]}"]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def _html_table(rows: list[dict], with_ref: bool) -> str:
    colour = {"bad": "#f4b4b4", "warn": "#f7e0a0", "ok": "#c8ecc8", "": "transparent"}
    head = ["observable", "value", "τ_int", "exact", "z (exact)"] + (["reference", "z (reference)"] if with_ref else [])
    out = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for r in rows:
        cells = [(r["name"], ""), (_fmt(r["mean"], r["error"]), ""),
                 ("" if r["tau_int"] is None or not math.isfinite(r["tau_int"]) else f"{r['tau_int']:.2f}", ""),
                 (_fmt(r["exact"]), ""),
                 ("" if r["z_exact"] is None else f"{r['z_exact']:+.2f}", _flag(r["z_exact"]))]
        if with_ref:
            cells += [(_fmt(r["ref"], r["ref_error"]), ""),
                      ("" if r["z_ref"] is None else f"{r['z_ref']:+.2f}", _flag(r["z_ref"]))]
        out.append("<tr>" + "".join(f'<td style="background:{colour[f]}">{html.escape(str(v))}</td>' for v, f in cells)
                   + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _single_values(path: str) -> dict:
    """Observables of an ensemble too small for error analysis (e.g. one upscaled 13,824^2 lattice)."""
    from .analysis import exact_references

    with open_ensemble(path) as ens:
        a = ens.attrs
        obs = {k: np.asarray(ens.observables[k], dtype=np.float64) for k in ("energy", "magnetization", "c10x", "c10y", "c11")
               if k in ens.observables}
        n = len(ens)
    ref = exact_references(float(a["beta"]), int(a["Lx"]), int(a["Ly"]), float(a.get("J", 1.0)), float(a.get("h", 0.0)))
    table = {}
    for k, v in obs.items():
        name = "abs_m" if k == "magnetization" else k
        val = float(np.mean(np.abs(v) if k == "magnetization" else v))
        table[name] = {"mean": val, "error": 0.0, "tau_int": None, "exact": ref.get(name), "z": None}
    return {"size": a["Lx"], "beta": float(a["beta"]), "algorithm": a.get("algorithm"), "n_configs": n, "n_chains": n,
            "observables": table}


def make_report(path: str, out_dir: str, reference: str | None = None, *, max_configs: int = 200,
                sections=None) -> dict:
    """Write ``out_dir/report.md``, ``report.html`` and the figures; return a summary dict.

    ``sections``: extra callables ``f(ctx) -> list[(title, markdown, [png, ...])]`` (correlations,
    structure factor, MCRG) appended after the built-in ones; ``ctx`` has ``ens``, ``spins``
    (a sample of configurations), ``ref_ens``, ``out_dir``, ``beta``, ``L``.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such ensemble file: {path}")
    os.makedirs(out_dir, exist_ok=True)
    with open_ensemble(path) as ens:
        n_cfg = len(ens)
    if n_cfg == 0:
        raise ValueError(f"{path}: the ensemble holds no configurations")
    few = n_cfg < 4
    res = analyze_ensemble(path) if not few else _single_values(path)
    ref = analyze_ensemble(reference) if reference else None
    rows = compare_table(res, ref)
    blocks: list[tuple[str, str, list[str]]] = []
    with open_ensemble(path) as ens:
        if len(ens) == 0:
            raise ValueError(f"{path}: the ensemble holds no configurations")
        a = ens.attrs
        L = ens.Lx
        beta = float(a["beta"])
        spins = _sample(ens, max_configs)
        figure_configuration(spins[0], os.path.join(out_dir, "configuration.png"),
                             f"{os.path.basename(path)}: {a.get('algorithm')} L={L} beta={beta:.10g}")
        blocks.append(("Configuration", "", ["configuration.png"]))
        m = np.asarray(ens.observables["magnetization"], dtype=np.float64)
        ref_m = ref_L = None
        ref_ens = open_ensemble(reference) if reference else None
        try:
            if ref_ens is not None:
                ref_m = np.asarray(ref_ens.observables["magnetization"], dtype=np.float64)
                ref_L = ref_ens.Lx
            figure_magnetization(m, L, os.path.join(out_dir, "magnetization.png"), ref_m, ref_L)
            blocks.append(("Magnetization distribution",
                           "P(m) in the scaling variable L^(1/8) m: at K_c the curves of all sizes collapse "
                           "(seed 003, eq. 16).", ["magnetization.png"]))
            hist = (a.get("extra") or {}).get("stage_history")
            if a.get("algorithm") == "irg" and hist:
                figure_stages(hist, os.path.join(out_dir, "stages.png"))
                blocks.append(("Upscaling stages", "c10, c11 and |m| per stage, before and after refinement.",
                               ["stages.png"]))
            ctx = dict(ens=ens, spins=spins, ref_ens=ref_ens, out_dir=out_dir, beta=beta, L=L, result=res)
            for section in sections if sections is not None else default_sections():
                blocks.extend(section(ctx))
        finally:
            if ref_ens is not None:
                ref_ens.close()
    n_bad = sum(1 for r in rows if _flag(r["z_exact"]) == "bad" or _flag(r["z_ref"]) == "bad")
    title = f"isingcore report: {os.path.basename(path)}"
    intro = (f"L = {res['size']}, beta = {res['beta']:.12g} (K_c = {BETA_C:.12g}), algorithm {res['algorithm']}, "
             f"{res['n_configs']} configurations in {res['n_chains']} chain(s). Errors by the Gamma method; "
             f"|z| > {Z_WARN:g} marked (!) / amber, |z| > {Z_BAD:g} marked ✗ / red."
             + (f" Reference: {os.path.basename(reference)}." if reference else ""))
    verdict = ("**No observable deviates by more than 3 errors.**" if n_bad == 0 else
               f"**{n_bad} observable(s) deviate by more than 3 errors: this is not the ensemble it claims to be "
               f"(or its errors are underestimated).**")
    md = [f"# {title}", "", intro, "", verdict, "", "## Observables", "", _md_table(rows, ref is not None), ""]
    hb = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(intro)}</p>",
          f"<p><b>{html.escape(verdict.strip('*'))}</b></p>", "<h2>Observables</h2>", _html_table(rows, ref is not None)]
    for head, text, pngs in blocks:
        md += [f"## {head}", "", text, ""] + [f"![{p}]({p})" for p in pngs] + [""]
        hb += [f"<h2>{html.escape(head)}</h2>"] + ([f"<pre>{html.escape(text)}</pre>"] if text else []) + \
              [f'<img src="{p}" style="max-width:900px">' for p in pngs]
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write("\n".join(md))
    with open(os.path.join(out_dir, "report.html"), "w") as f:
        f.write("<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title) +
                "</title><style>body{font-family:sans-serif;max-width:1000px;margin:auto}"
                "td,th{padding:2px 8px;border-bottom:1px solid #ddd}</style></head><body>" + "\n".join(hb) +
                "</body></html>")
    return {"rows": rows, "n_flagged": n_bad, "files": ["report.md", "report.html"] + [p for _, _, ps in blocks for p in ps]}


def section_correlations(ctx) -> list:
    """G(r) along the axes and the diagonal (Γ-method errors over the sampled configurations)."""
    from .constants import K_C
    from .exact import critical_correlation_asymptotic, critical_diagonal_correlation
    from .measure.correlations import correlation_function

    spins, L, beta = ctx["spins"], ctx["L"], ctx["beta"]
    if spins.shape[0] < 4 or L < 8:
        return []
    axes = correlation_function(spins, direction="axes")
    diag = correlation_function(spins, direction="diagonal")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for cf, lab in ((axes, "along the axes"), (diag, "along the diagonal")):
        k = cf.r > 0
        ax.errorbar(cf.r[k], cf.mean[k], yerr=cf.error[k], fmt="o", ms=3, label=lab)
    r = np.geomspace(1, max(axes.r.max(), diag.r.max()), 50)
    ax.plot(r, critical_correlation_asymptotic(r), "k--", lw=1, label=r"$A\,r^{-1/4}$, $A = 0.70338$ ($L\to\infty$, $K_c$)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("r (Euclidean)")
    ax.set_ylabel("G(r) = <s_0 s_r>")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(ctx["out_dir"], "correlation.png"), dpi=120)
    plt.close(fig)
    at_kc = abs(beta - K_C) < 1e-12
    lines = ["| n | <s(0,0) s(n,n)> | infinite lattice, K_c | z |", "|---|---|---|---|"]
    nmax = min(8, len(diag.mean) - 1)
    for n in range(1, nmax + 1):
        ex = float(critical_diagonal_correlation(n)) if at_kc else None
        z = (diag.mean[n] - ex) / diag.error[n] if ex is not None and diag.error[n] > 0 else None
        lines.append(f"| {n} | {_fmt(diag.mean[n], diag.error[n])} | {'' if ex is None else f'{ex:.8f}'} | "
                     f"{'' if z is None else f'{z:+.1f}'} |")
    text = (f"G(r) from {spins.shape[0]} configurations. On a finite torus the correlations exceed the "
            f"infinite-lattice values by a finite-size term that grows with r/L "
            f"(tools/bench/correlation_check.py measures it), so z-scores against the L -> infinity values "
            f"grow with the statistics at fixed L; compare with a reference ensemble of the same size.\n\n" + "\n".join(lines))
    return [("Correlation function", text, ["correlation.png"])]


def structure_factor_map(plt, s_map, label: str):
    """A two-panel figure whose left panel is the log10 map of S(k) (``s_map`` unshifted, k in [-pi, pi))."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    im = axes[0].imshow(np.log10(np.maximum(np.fft.fftshift(s_map), 1e-3)), cmap="viridis", origin="lower",
                        extent=(-np.pi, np.pi, -np.pi, np.pi))
    fig.colorbar(im, ax=axes[0], label=label)
    axes[0].set_xlabel("k_y")
    axes[0].set_ylabel("k_x")
    return fig, axes


def section_structure_factor(ctx) -> list:
    """S(k): the 2D map, the shell average, and the cos 4θ anisotropy per shell."""
    from .measure.correlations import structure_factor_ensemble

    spins, L = ctx["spins"], ctx["L"]
    if spins.shape[0] < 4 or L < 8:
        return []
    sf = structure_factor_ensemble(spins)
    plt = _plt()
    fig, axes = structure_factor_map(plt, sf.s_map, "log10 S(k)")
    ok = sf.count > 0
    axes[1].errorbar(sf.k[ok], sf.mean[ok], yerr=sf.error[ok], fmt="o", ms=3, label="shell average")
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    from matplotlib.ticker import NullFormatter

    axes[1].xaxis.set_minor_formatter(NullFormatter())
    axes[1].set_xlabel("|k|")
    axes[1].set_ylabel("S(|k|)")
    kk = sf.k[ok & (sf.k > 0)]
    if kk.size:
        k0 = kk[0]
        s0 = sf.mean[ok & (sf.k > 0)][0]
        axes[1].plot(kk, s0 * (kk / k0) ** (-7 / 4), "k--", lw=1, label=r"$\propto k^{-7/4}$")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(ctx["out_dir"], "structure_factor.png"), dpi=120)
    plt.close(fig)
    a4 = sf.a4[np.isfinite(sf.a4)]
    text = (f"S(k) = |sum_r s_r e^(ik.r)|^2 / N averaged over {spins.shape[0]} configurations. Isotropy: the "
            f"cos 4θ amplitude of S over each |k| shell (0 for an isotropic S); median |a4| over the shells = "
            f"{np.median(np.abs(a4)) if a4.size else float('nan'):.3g}. Grid artefacts of an upscaler show up as "
            f"peaks at the coarse lattice's wavevectors and as large a4 (seed 000, Fig. 4).")
    return [("Structure factor", text, ["structure_factor.png"])]


def section_mcrg(ctx) -> list:
    from .analysis import mcrg_summary

    if ctx["L"] < 32 or len(ctx["ens"]) < 64:
        return []
    mc = mcrg_summary(ctx["ens"])
    text = (f"Swendsen's MCRG with the 2x2 majority rule (random ties), {mc['couplings']} couplings, T^({mc['level']}) "
            f"between {mc['lattices'][0]}² and {mc['lattices'][1]}²: y_t = {_fmt(mc['y_t']['mean'], mc['y_t']['error'])} "
            f"(exact 1), y_h = {_fmt(mc['y_h']['mean'], mc['y_h']['error'])} (exact 15/8), jackknife errors.")
    return [("Monte Carlo renormalization group", text, [])]


def default_sections():
    """Correlation function, structure factor and MCRG."""
    return [section_correlations, section_structure_factor, section_mcrg]
