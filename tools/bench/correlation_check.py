"""G(r) at K_c from Wolff ensembles against the exact infinite-lattice correlations.

    python tools/bench/correlation_check.py                       # data/ref_L{64,96,128,288,864}.h5
    python tools/bench/correlation_check.py --sizes 96 288 864 --r-max 8 --out out/

What it does, per ensemble (cluster Monte Carlo at K_c, decorrelated configurations, chains as
replicas of the Γ-method):

* ``G(r)`` along the diagonal (``n = 1..r_max`` steps, ``r = sqrt(2) n``) and along the axes
  (``r = 1..r_max``) with :func:`isingcore.measure.correlation_function`; ``xi_2nd`` by the
  jackknife.
* Exact references: :func:`isingcore.exact.critical_diagonal_correlation` (McCoy-Wu product),
  :func:`isingcore.exact.critical_axis_correlation` (Toeplitz determinant), and for ``r = 1``
  along the axes the exact *finite* torus value ``-u(L)/2`` (Kaufman).

Finite size. On the critical torus the leading correction at fixed ``r << L`` is ``O(r/L)``,
not ``O((r/L)^2)``: in the operator product ``s x s = 1 + eps + ...`` the energy operator has
dimension ``x_eps = 1`` and a nonzero one-point function ``<eps>_L ~ 1/L`` on the torus (the
exact energy per site is ``-sqrt 2 - 0.62/L + ...``, so ``<s_0 s_x> = 1/sqrt 2 + 0.31/L``).
Hence for each distance ``G_L(r) = G_inf(r) + a(r)/L + b(r)/L^2``. Three checks are printed:

(A) extrapolation: weighted least squares of ``G_L(r)`` in ``1/L`` over the sizes >= --fit-min
    (linear; and linear + quadratic over all sizes as a systematic check), the intercept
    against the exact ``G_inf(r)`` (z = difference / fit error);
(B) raw: each size against ``G_inf`` without correction (shows the shift);
(C) held-out: ``a(r)`` fitted (with ``G_inf`` fixed to the exact value) on all sizes except
    --holdout, then ``G_L(r)`` at the held-out size against ``G_inf + a/L`` (errors combined).

Plots (PNG, in --out): log-log ``G(r)`` against ``A r^(-1/4)`` and the exact values, and the
structure factor map + shell average + ``cos 4 theta`` amplitude of one ensemble.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import numpy as np

from isingcore import exact
from isingcore.constants import G_AMPLITUDE_C
from isingcore.io import open_ensemble
from isingcore.measure import (
    correlation_function,
    format_value_error as fve,
    second_moment_correlation_length,
    structure_factor_ensemble,
)

#: xi_2nd / L at K_c for L -> infinity on the periodic square (J. Salas and A. D. Sokal,
#: J. Stat. Phys. 98 (2000) 551: 0.9050488292(4)).
XI_OVER_L_C = 0.9050488292


def wls(x, y, sig, degree):
    """Weighted polynomial least squares; returns (coefficients low->high, covariance, chi2, dof)."""
    X = np.vander(np.asarray(x, float), degree + 1, increasing=True)
    w = 1.0 / np.asarray(sig, float) ** 2
    A = X.T @ (w[:, None] * X)
    cov = np.linalg.inv(A)
    coef = cov @ (X.T @ (w * y))
    res = y - X @ coef
    chi2 = float(np.sum(w * res**2))
    return coef, cov, chi2, len(y) - degree - 1


def measure(path: str, r_max: int) -> dict:
    ens = open_ensemble(path)
    L = ens.Lx
    t0 = time.perf_counter()
    diag = correlation_function(ens, "diagonal", r_max=r_max)
    axes = correlation_function(ens, "axes", r_max=r_max)
    xi = second_moment_correlation_length(ens)
    wall = time.perf_counter() - t0
    u = float(exact.kaufman_torus(exact.BETA_C, L, L).energy)
    return dict(L=L, path=path, n_configs=diag.n_configs, chains=diag.n_replicas, wall_s=wall,
                diag=dict(mean=diag.mean.tolist(), error=diag.error.tolist(), tau=diag.tau_int.tolist()),
                axes=dict(mean=axes.mean.tolist(), error=axes.error.tolist(), tau=axes.tau_int.tolist()),
                c10_exact_L=-u / 2.0, xi=xi.mean, xi_err=xi.error)


def analyse(rows: list[dict], r_max: int, fit_min: int, holdout: int) -> dict:
    n = np.arange(1, r_max + 1)
    exact_ref = {"diag": exact.critical_diagonal_correlation(n), "axes": exact.critical_axis_correlation(n)}
    Ls = np.array([r["L"] for r in rows], float)
    out = {}
    for key, label, rscale in (("diag", "diagonal, r = sqrt(2) n", math.sqrt(2.0)), ("axes", "axes, r = n", 1.0)):
        G = np.array([r[key]["mean"][1:] for r in rows])
        E = np.array([r[key]["error"][1:] for r in rows])
        ex = exact_ref[key]
        print(f"\n=== G(r) along the {label}; exact infinite-lattice values ===")
        head = f"{'n':>3}{'r':>7}{'exact':>12}"
        for L in Ls:
            head += f"{'L=' + str(int(L)):>16}{'z_raw':>7}"
        print(head)
        raw_z = (G - ex) / E
        for k in range(r_max):
            line = f"{n[k]:>3}{n[k] * rscale:>7.3f}{ex[k]:>12.6f}"
            for i in range(len(Ls)):
                line += f"{fve(G[i, k], E[i, k]):>16}{raw_z[i, k]:>+7.1f}"
            print(line)
        # (A) extrapolation in 1/L
        sel = Ls >= fit_min
        print(f"\n(A) extrapolation G_L = G_inf + a/L over L in {Ls[sel].astype(int).tolist()}; "
              "and G_inf + a/L + b/L^2 over all sizes")
        print(f"{'n':>3}{'G_inf (lin)':>16}{'z':>7}{'chi2/dof':>10}{'a':>12}{'a/(G r)':>9}"
              f"{'G_inf (quad)':>16}{'z':>7}{'chi2/dof':>10}{'chi2 1/L^2-only':>17}")
        A = []
        for k in range(r_max):
            c1, cov1, chi1, dof1 = wls(1.0 / Ls[sel], G[sel, k], E[sel, k], 1)
            c2, cov2, chi2, dof2 = wls(1.0 / Ls, G[:, k], E[:, k], 2)
            # the (r/L)^2-only model, for comparison: G_inf + b/L^2
            c3, cov3, chi3, dof3 = wls(1.0 / Ls[sel] ** 2, G[sel, k], E[sel, k], 1)
            z1 = (c1[0] - ex[k]) / math.sqrt(cov1[0, 0])
            z2 = (c2[0] - ex[k]) / math.sqrt(cov2[0, 0])
            kappa = c1[1] / (ex[k] * n[k] * rscale)
            A.append(dict(n=int(n[k]), G_inf=c1[0], err=math.sqrt(cov1[0, 0]), z=z1, chi2=chi1, dof=dof1,
                          a=c1[1], a_err=math.sqrt(cov1[1, 1]), kappa=kappa,
                          G_inf_quad=c2[0], err_quad=math.sqrt(cov2[0, 0]), z_quad=z2, chi2_quad=chi2, dof_quad=dof2,
                          chi2_L2_only=chi3, dof_L2_only=dof3))
            print(f"{n[k]:>3}{fve(c1[0], math.sqrt(cov1[0, 0])):>16}{z1:>+7.2f}{chi1:>6.1f}/{dof1:<3}"
                  f"{fve(c1[1], math.sqrt(cov1[1, 1])):>12}{kappa:>9.3f}"
                  f"{fve(c2[0], math.sqrt(cov2[0, 0])):>16}{z2:>+7.2f}{chi2:>6.1f}/{dof2:<3}{chi3:>11.1f}/{dof3:<3}")
        # (C) held-out size
        C = None
        if holdout in Ls:
            h = int(np.flatnonzero(Ls == holdout)[0])
            others = np.flatnonzero(Ls != holdout)
            print(f"\n(C) L={holdout} against G_inf + a/L, a fitted with G_inf = exact on "
                  f"L in {Ls[others].astype(int).tolist()}")
            print(f"{'n':>3}{'measured':>16}{'predicted':>16}{'z':>7}")
            C = []
            for k in range(r_max):
                x = 1.0 / Ls[others]
                y = G[others, k] - ex[k]
                w = 1.0 / E[others, k] ** 2
                a = float(np.sum(w * x * y) / np.sum(w * x * x))
                a_err = float(1.0 / math.sqrt(np.sum(w * x * x)))
                pred, pred_err = ex[k] + a / holdout, a_err / holdout
                z = (G[h, k] - pred) / math.hypot(E[h, k], pred_err)
                C.append(dict(n=int(n[k]), measured=G[h, k], error=E[h, k], predicted=pred, pred_err=pred_err, z=z))
                print(f"{n[k]:>3}{fve(G[h, k], E[h, k]):>16}{fve(pred, pred_err):>16}{z:>+7.2f}")
        out[key] = dict(exact=ex.tolist(), raw_z=raw_z.tolist(), extrapolation=A, holdout=C)
    print("\n=== r = 1 along the axes against the exact finite torus value -u(L)/2 (Kaufman) ===")
    for r in rows:
        g, e = r["axes"]["mean"][1], r["axes"]["error"][1]
        print(f"L={r['L']:>4}  {fve(g, e):>14}  exact {r['c10_exact_L']:.8f}  z = {(g - r['c10_exact_L']) / e:+.2f}")
    print(f"\n=== xi_2nd / L (jackknife) against {XI_OVER_L_C} (L -> inf, Salas & Sokal 2000) ===")
    for r in rows:
        print(f"L={r['L']:>4}  xi = {fve(r['xi'], r['xi_err']):>12}  xi/L = {fve(r['xi'] / r['L'], r['xi_err'] / r['L']):>12}"
              f"  z = {(r['xi'] / r['L'] - XI_OVER_L_C) / (r['xi_err'] / r['L']):+.2f}")
    return out


def tiles_check(path: str, tile: int, r_max: int) -> dict:
    """Tiled estimate (zero-padded tiles, :func:`tiled_correlation`) against the full periodic FFT.

    Both estimate the same ``G_L(r)`` from the same configurations; the per-configuration
    difference is tested with the Γ-method (chains as replicas).
    """
    from isingcore.measure import correlation_along_diagonals, gamma_method, tiled_correlation

    ens = open_ensemble(path)
    L = ens.Lx
    t0 = time.perf_counter()
    full = correlation_function(ens, "diagonal", r_max=r_max)
    tiles = correlation_function(ens, "diagonal", r_max=r_max, method="tiles", tile=tile)
    chain = np.asarray(ens.chain)
    diffs = {c: [] for c in np.unique(chain)}
    for a in range(0, len(ens), 64):
        block = ens[a : a + 64]
        d = correlation_along_diagonals(block, r_max) - tiled_correlation(block, tile, r_max, "diagonal").mean
        for c, row in zip(chain[a : a + 64], d):
            diffs[c].append(row)
    n = min(len(v) for v in diffs.values())
    D = np.stack([np.array(v[:n]) for v in diffs.values()])  # (chains, n, r_max + 1)
    print(f"\n=== tiles ({tile}x{tile}, zero-padded, {(L // tile) ** 2} per configuration) against the full FFT, "
          f"L={L}, diagonal ({time.perf_counter() - t0:.0f} s) ===")
    print(f"{'n':>3}{'full FFT':>16}{'tiles':>16}{'err ratio':>10}{'difference':>18}{'z':>7}")
    out = []
    for k in range(1, r_max + 1):
        e = gamma_method(D[:, :, k])
        z = e.mean / e.error if e.error > 0 else float("nan")
        out.append(dict(n=k, full=full.mean[k], full_err=full.error[k], tiles=tiles.mean[k], tiles_err=tiles.error[k],
                        diff=e.mean, diff_err=e.error, z=z))
        print(f"{k:>3}{fve(full.mean[k], full.error[k]):>16}{fve(tiles.mean[k], tiles.error[k]):>16}"
              f"{tiles.error[k] / full.error[k]:>10.2f}{fve(e.mean, e.error):>18}{z:>+7.2f}")
    return dict(L=L, tile=tile, rows=out)


def plot_correlations(rows, outdir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(12, 5))
    rr = np.geomspace(1, 500, 200)
    ax[0].plot(rr, G_AMPLITUDE_C * rr**-0.25, "k-", lw=1, label=r"$A r^{-1/4}$, $A = 0.70338$")
    nn = np.arange(1, 400)
    ax[1].plot(math.sqrt(2) * nn, exact.critical_diagonal_correlation(nn) / (G_AMPLITUDE_C * (math.sqrt(2) * nn) ** -0.25),
               "k:", lw=1.5, label="exact diagonal, L = inf")
    ax[1].plot(na := np.arange(1, 100), exact.critical_axis_correlation(na) / (G_AMPLITUDE_C * na**-0.25),
               "k--", lw=1, label="exact axis, L = inf")
    ax[0].plot(math.sqrt(2) * nn, exact.critical_diagonal_correlation(nn), "k:", lw=1.5, label="exact diagonal, L = inf")
    na = np.arange(1, 100)
    ax[0].plot(na, exact.critical_axis_correlation(na), "k--", lw=1, label="exact axis, L = inf")
    for r in rows:
        L = r["L"]
        d = np.array(r["diag_full"]["mean"]), np.array(r["diag_full"]["error"])
        a_ = np.array(r["axes_full"]["mean"]), np.array(r["axes_full"]["error"])
        nd = np.arange(d[0].size)
        ax[0].errorbar(math.sqrt(2) * nd[1:], d[0][1:], d[1][1:], fmt=".", ms=3, label=f"diagonal L={L}")
        ax[0].errorbar(np.arange(1, a_[0].size), a_[0][1:], a_[1][1:], fmt="x", ms=3, label=f"axes L={L}")
        ratio = d[0][1:] / (G_AMPLITUDE_C * (math.sqrt(2) * nd[1:]) ** -0.25)
        ax[1].errorbar(math.sqrt(2) * nd[1:], ratio, d[1][1:] / (G_AMPLITUDE_C * (math.sqrt(2) * nd[1:]) ** -0.25),
                       fmt=".", ms=3, label=f"diagonal L={L}")
        ratio = a_[0][1:] / (G_AMPLITUDE_C * np.arange(1, a_[0].size) ** -0.25)
        ax[1].plot(np.arange(1, a_[0].size), ratio, "x", ms=3, label=f"axes L={L}")
    ax[0].set(xscale="log", yscale="log", xlabel="r (lattice spacings, Euclidean)", ylabel="G(r)",
              title="G(r) at K_c, Wolff ensembles")
    ax[0].legend(fontsize=7)
    ax[1].axhline(1.0, color="k", lw=0.8)
    ax[1].set(xscale="log", xlabel="r (Euclidean)", ylabel=r"$G_L(r) / (A r^{-1/4})$",
              title="ratio to the asymptote: lattice effects at r ~ 1, finite size ~ r/L")
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    p = os.path.join(outdir, "correlation_loglog.png")
    fig.savefig(p, dpi=120)
    plt.close(fig)
    return p


def plot_structure_factor(sf, L, outdir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(16, 5))
    smap = np.fft.fftshift(sf.s_map)
    k = 2 * np.pi * np.fft.fftshift(np.fft.fftfreq(L))
    im = ax[0].imshow(np.log10(smap).T, origin="lower", extent=[k[0], k[-1], k[0], k[-1]], cmap="viridis")
    fig.colorbar(im, ax=ax[0], label="log10 S(k)")
    ax[0].set(xlabel="k_x", ylabel="k_y", title=f"<S(k)>, L={L}, {sf.n_configs} configs")
    sel = sf.k > 0
    ax[1].errorbar(sf.k[sel], sf.mean[sel], sf.error[sel], fmt=".", ms=3, label="shell average")
    kk = sf.k[sel]
    ax[1].plot(kk, sf.mean[sel][0] * (kk / kk[0]) ** -1.75, "k--", lw=1, label=r"$\propto k^{-7/4}$")
    ax[1].set(xscale="log", yscale="log", xlabel="|k|", ylabel="S(|k|)", title="radial average (Γ-method errors)")
    ax[1].legend()
    ok = np.isfinite(sf.a4)
    ax[2].errorbar(sf.k[ok], sf.a4[ok], sf.a4_error[ok], fmt=".", ms=3, label="a4 (cos 4θ amplitude)")
    ax[2].plot(sf.k[sel], sf.rel_spread[sel], "-", lw=0.8, label="std/mean in shell")
    ax[2].axhline(0.0, color="k", lw=0.8)
    ax[2].set(xscale="log", xlabel="|k|", ylabel="relative anisotropy", title="isotropy per |k| shell")
    ax[2].legend()
    from matplotlib.ticker import NullFormatter

    for a in ax[1:]:
        a.xaxis.set_minor_formatter(NullFormatter())
    fig.tight_layout()
    p = os.path.join(outdir, f"structure_factor_L{L}.png")
    fig.savefig(p, dpi=120)
    plt.close(fig)
    return p


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 128, 288, 864])
    ap.add_argument("--data", default="data/ref_L{L}.h5", help="ensemble path pattern")
    ap.add_argument("--r-max", type=int, default=8)
    ap.add_argument("--fit-min", type=int, default=96, help="smallest L in the linear 1/L extrapolation")
    ap.add_argument("--holdout", type=int, default=288)
    ap.add_argument("--plot-r-max", type=int, default=None, help="distances in the log-log plot (default L/2)")
    ap.add_argument("--sk-size", type=int, default=288, help="ensemble for the S(k) plot")
    ap.add_argument("--tiles-size", type=int, default=864, help="ensemble for the tiles-vs-FFT check (0: skip)")
    ap.add_argument("--tile", type=int, default=216)
    ap.add_argument("--tile-r-max", type=int, default=32)
    ap.add_argument("--out", default="out")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for L in args.sizes:
        path = args.data.format(L=L)
        row = measure(path, args.r_max)
        print(f"L={L}: {row['n_configs']} configs in {row['chains']} chains, {row['wall_s']:.1f} s")
        rows.append(row)
    res = analyse(rows, args.r_max, args.fit_min, args.holdout)
    if args.tiles_size:
        res["tiles"] = tiles_check(args.data.format(L=args.tiles_size), args.tile, args.tile_r_max)
    # long-distance curves for the plot (two sizes, to keep the run short)
    plot_rows = []
    for L in [s for s in args.sizes if s in (288, 864)] or args.sizes[-1:]:
        ens = open_ensemble(args.data.format(L=L))
        rm = args.plot_r_max or L // 2
        d = correlation_function(ens, "diagonal", r_max=min(rm, L // 2))
        a = correlation_function(ens, "axes", r_max=min(rm, L // 2))
        plot_rows.append(dict(L=L, diag_full=dict(mean=d.mean, error=d.error), axes_full=dict(mean=a.mean, error=a.error)))
    p1 = plot_correlations(plot_rows, args.out)
    t0 = time.perf_counter()
    sf = structure_factor_ensemble(args.data.format(L=args.sk_size))
    print(f"\nS(k) of L={args.sk_size}: {time.perf_counter() - t0:.1f} s; shells 1..8: "
          + ", ".join(fve(m, e) for m, e in zip(sf.mean[1:9], sf.error[1:9])))
    ok = np.isfinite(sf.a4)
    za = sf.a4[ok] / sf.a4_error[ok]
    print(f"cos4theta amplitude a4 over {ok.sum()} shells: |z| max {np.abs(za).max():.2f}, "
          f"chi2/dof {np.sum(za**2):.1f}/{ok.sum()}; at |k| > 1: mean a4 = {np.mean(sf.a4[ok & (sf.k > 1)]):+.4f}")
    p2 = plot_structure_factor(sf, args.sk_size, args.out)
    with open(os.path.join(args.out, "correlation_check.json"), "w") as f:
        json.dump(dict(rows=rows, analysis=res), f, indent=1, default=float)
    print(f"\nwrote {p1}, {p2}, {os.path.join(args.out, 'correlation_check.json')}")


if __name__ == "__main__":
    main()
