"""Finite-size scaling check at K_c: gamma/nu, 1/nu, the ln L slope of C, and the P(m) collapse.

    python tools/make_training_data.py --size 256 --configs 8000 --chains 16 --seed 2561 \\
        --out data/fss_L256.h5 --purpose "finite-size scaling"
    python tools/bench/fss_check.py --ensembles 8=data/ref_L8.h5 16=data/ref_L16.h5 32=data/ref_L32.h5 \\
        64=data/ref_L64.h5 128=data/ref_L128.h5 256=data/fss_L256.h5 --fit-min 16 --fit-max 256 \\
        --json out/fss_check.json --markdown out/fss_check.md --png out/fss_collapse.png

From cluster-MC ensembles at K_c (:mod:`isingcore.measure.fss`, Γ-method errors with chains as
replicas):

- chi = beta N <m^2> ~ L^(gamma/nu), gamma/nu = 7/4 (issue 5 criterion: within 0.02 from the
  weighted fit over L = 16..256);
- c_me ~ L^(1/nu), 1/nu = 1 (strong O(1/L) corrections: also fitted with a correction term);
- C = beta^2 N (<e^2> - <e>^2) = a + b ln L with b = (8/pi) K_c^2 = 0.494539 (Ferdinand-Fisher),
  next to Kaufman's exact C(L) at every size and the same fit applied to the exact values;
- the pairs (L, L/4) of seed 003 Table II;
- the collapse of L^(-1/8) P_L(m) against L^(1/8) m (PNG).

Fit errors: input errors propagated, times sqrt(chi^2/dof) when that exceeds 1.
"""

from __future__ import annotations

import argparse
import json
import math

from isingcore import exact
from isingcore.measure import format_value_error as fve
from isingcore.measure.fss import (
    BETA_OVER_NU,
    fss_exponents,
    log_law_fit,
    magnetization_collapse,
    plot_magnetization_collapse,
)

K_C = 0.5 * math.log(1.0 + math.sqrt(2.0))
DEFAULT = {8: "data/ref_L8.h5", 16: "data/ref_L16.h5", 32: "data/ref_L32.h5", 64: "data/ref_L64.h5",
           128: "data/ref_L128.h5", 256: "data/fss_L256.h5"}
TOL_GAMMA = 0.02
CORRECTIONS = {"gamma_over_nu": ("chi_correction", 7.0 / 4.0), "one_over_nu": ("c_me_correction", 1.0),
               "specific_heat_slope": ("specific_heat_correction", 1.0)}
LABELS = {"gamma_over_nu": "gamma/nu (chi)", "one_over_nu": "1/nu (c_me)", "specific_heat_slope": "C slope b"}


def fit_dict(f) -> dict | None:
    return None if f is None else f.as_dict()


def run(source: dict, fit_min: int, fit_max: int) -> dict:
    base = fss_exponents(source, L_min=fit_min, L_max=fit_max)
    obs = base["observables"]
    result = {"sizes_fit": base["sizes"], "exact": {}, "fits": {}, "pairs": {}, "observables": {}, "kaufman": {}}
    for L in sorted(obs):
        c_exact = float(exact.kaufman_torus(K_C, L).specific_heat)
        result["observables"][L] = {k: {"mean": v.mean, "error": v.error, "tau_int": v.tau_int} for k, v in obs[L].items()}
        result["kaufman"][L] = c_exact
    for key in LABELS:
        result["exact"][key] = base[key]["exact"]
        fits = {"plain": fit_dict(base[key]["fit"])}
        kw, omega = CORRECTIONS[key]
        corr = fss_exponents(obs, L_min=fit_min, L_max=fit_max, **{kw: omega})[key]["fit"]
        fits[f"correction L^-{omega:g}"] = fit_dict(corr)
        for lmin in sorted(obs):
            if fit_min < lmin <= fit_max and len([L for L in obs if lmin <= L <= fit_max]) >= 3:
                fits[f"plain, L >= {lmin}"] = fit_dict(fss_exponents(obs, L_min=lmin, L_max=fit_max)[key]["fit"])
        result["fits"][key] = fits
        result["pairs"][key] = {f"{a},{b}": {"value": p.value, "error": p.error} for (a, b), p in base[key]["pairs"].items()}
    sizes = base["sizes"]
    kc = [result["kaufman"][L] for L in sizes]
    errs = [obs[L]["specific_heat"].error for L in sizes]
    result["kaufman_fit"] = {"plain": log_law_fit(sizes, kc, errs).as_dict(),
                             "correction L^-1": log_law_fit(sizes, kc, errs, correction_exponent=1.0).as_dict()}
    g = base["gamma_over_nu"]["fit"]
    result["criterion"] = {"gamma_over_nu": g.value, "error": g.error, "tolerance": TOL_GAMMA,
                           "pass": abs(g.value - 7.0 / 4.0) < TOL_GAMMA}
    return result


def markdown(res: dict) -> str:
    lines = ["| L | chi | c_me | C (MC) | C exact (Kaufman) | U4 |", "|---|---|---|---|---|---|"]
    for L, o in res["observables"].items():
        lines.append(f"| {L} | {fve(o['chi']['mean'], o['chi']['error'])} | {fve(o['c_me']['mean'], o['c_me']['error'])} "
                     f"| {fve(o['specific_heat']['mean'], o['specific_heat']['error'])} | {res['kaufman'][L]:.5f} "
                     f"| {fve(o['binder']['mean'], o['binder']['error'])} |")
    lines += ["", "| quantity | exact | fit | chi2/dof | fit with correction | pairs (L, L/4) |", "|---|---|---|---|---|---|"]
    for key, label in LABELS.items():
        f = res["fits"][key]
        plain = f["plain"]
        corr_key = next(k for k in f if k.startswith("correction"))
        c = f[corr_key]
        pairs = ", ".join(f"({k}) {fve(v['value'], v['error'], 1)}" for k, v in res["pairs"][key].items())
        lines.append(f"| {label} | {res['exact'][key]:.4f} | {fve(plain['value'], plain['error'])} "
                     f"| {plain['chi2']:.2f}/{plain['dof']} "
                     f"| {fve(c['value'], c['error']) if c else '-'} ({corr_key}) | {pairs} |")
    lines += ["", f"Fits over L = {', '.join(map(str, res['sizes_fit']))} (weighted least squares; error = input errors "
              "propagated x max(1, sqrt(chi2/dof))). Dropping the small sizes:", ""]
    for key, label in LABELS.items():
        extra = [f"{k.split('>= ')[1]}: {fve(v['value'], v['error'])}" for k, v in res["fits"][key].items()
                 if k.startswith("plain, L >=")]
        lines.append(f"- {label}, L_min = " + "; ".join(extra))
    kf = res["kaufman_fit"]
    lines += ["", f"Same log fit on Kaufman's exact C(L) (same sizes and weights): b = {kf['plain']['value']:.4f} "
              f"(plain), {kf['correction L^-1']['value']:.4f} (with L^-1); exact b = (8/pi) K_c^2 = "
              f"{res['exact']['specific_heat_slope']:.6f}.", ""]
    c = res["criterion"]
    lines.append(f"Criterion: gamma/nu = {fve(c['gamma_over_nu'], c['error'])}, |gamma/nu - 7/4| < {c['tolerance']}: "
                 f"{'pass' if c['pass'] else 'FAIL'}.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ensembles", nargs="+", help="L=path entries (default: data/ref_L{8..128}.h5, data/fss_L256.h5)")
    ap.add_argument("--fit-min", type=int, default=16)
    ap.add_argument("--fit-max", type=int, default=256)
    ap.add_argument("--json")
    ap.add_argument("--markdown")
    ap.add_argument("--png", help="write the P(m) collapse plot here")
    a = ap.parse_args(argv)
    source = dict(DEFAULT)
    if a.ensembles:
        source = {int(s.split("=", 1)[0]): s.split("=", 1)[1] for s in a.ensembles}
    res = run(source, a.fit_min, a.fit_max)
    md = markdown(res)
    print(md)
    if a.png:
        hist = magnetization_collapse(source, beta_over_nu=BETA_OVER_NU, width=0.05)
        plot_magnetization_collapse(hist, a.png, log_ratio=False)
        print(f"wrote {a.png}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1, default=float)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(md)
    return 0 if res["criterion"]["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
