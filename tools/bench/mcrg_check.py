"""Monte Carlo RG check at K_c: y_h and y_t from the linearised majority-rule transformation.

    python tools/make_training_data.py --size 64 --configs 10000 --chains 16 --seed 641 \\
        --out data/mcrg_L64.h5 --purpose "MCRG exponents"
    python tools/bench/mcrg_check.py --ensembles data/mcrg_L64.h5 \\
        --json out/mcrg_check.json --markdown out/mcrg_check.md

For every ensemble (cluster-MC configurations at K_c) the configurations are blocked with the 2x2
majority rule (random ties) as often as a 4x4 coarsest lattice allows, the 36 operators of the 3x3
plaquette are measured on every level (:mod:`isingcore.measure.mcrg`), and for every ``T^(n)``
(levels n -> n+1; n = 0 is the Monte Carlo lattice) and every truncation of the coupling set the
leading even (y_t) and odd (y_h) exponents are computed, with binned-jackknife errors (64 bins,
never straddling chains). The criterion of issue 5 is checked on ``T^(1)`` (L = 64: the 32^2 and
16^2 block lattices, "the second blocking level"): |y_h - 15/8| < 0.005 and |y_t - 1| < 0.03, for
the minimal set (4 even: nn, nnn, (2,0), plaquette; 2 odd: s, three-spin corner) and for all 36.
The error plateau is checked with 32 and 128 bins.
"""

from __future__ import annotations

import argparse
import json
import time


from isingcore.io import open_ensemble
from isingcore.measure import format_value_error as fve
from isingcore.measure.mcrg import EXACT_Y_H, EXACT_Y_T, coupling_set, mcrg_ensemble_densities, mcrg_exponents

#: (n_even, n_odd) truncations of the 36 couplings (each sector ordered by locality)
TRUNCATIONS = ((1, 1), (2, 2), (3, 2), (5, 4), (6, 4), (10, 6), (15, 8), (20, 10), (25, 11))
CRITERION_LEVEL = 1
TOL_H, TOL_T = 0.005, 0.03


def est(e) -> dict:
    return {"mean": e.mean, "error": e.error}


def row(r, label: str) -> dict:
    return {"set": label, "n_even": len(r.even), "n_odd": len(r.odd), "y_t": est(r.y_t), "y_h": est(r.y_h),
            "y_even": [est(e) for e in r.y_even[:3]], "y_odd": [est(e) for e in r.y_odd[:2]],
            "lambda_t": est(r.eigenvalues_even[0]), "lambda_h": est(r.eigenvalues_odd[0]),
            "max_imag_even": r.max_imag_even}


def analyse(path: str, seed: int, n_bins: int | None, limit: int | None) -> dict:
    t0 = time.perf_counter()
    with open_ensemble(path) as ens:
        L = ens.Lx
        attrs = ens.attrs
    d, cs = mcrg_ensemble_densities(path, couplings="3x3", seed=seed, limit=limit)
    t_meas = time.perf_counter() - t0
    R, N, n_lv, _ = d.shape
    minimal = coupling_set("minimal")
    idx = [cs.index(c) for c in minimal]
    out = {"path": path, "L": L, "algorithm": attrs.get("algorithm"), "beta": attrs.get("beta"),
           "n_chains": R, "n_per_chain": N, "levels": n_lv - 1, "seed": seed, "measure_seconds": t_meas,
           "levels_detail": []}
    for n in range(n_lv - 1):
        rows = [row(mcrg_exponents(d[..., idx], minimal, level=n, n_bins=n_bins), "minimal")]
        for ne, no in TRUNCATIONS:
            rows.append(row(mcrg_exponents(d, cs, level=n, n_even=ne, n_odd=no, n_bins=n_bins), f"3x3[{ne},{no}]"))
        out["levels_detail"].append({"level": n, "sizes": [L >> n, L >> (n + 1)], "rows": rows})
    if n_lv - 1 > CRITERION_LEVEL:
        crit = []
        for label, dd, cc in (("minimal", d[..., idx], minimal), ("3x3", d, cs)):
            r = mcrg_exponents(dd, cc, level=CRITERION_LEVEL, n_bins=n_bins)
            plateau = {nb: (mcrg_exponents(dd, cc, level=CRITERION_LEVEL, n_bins=nb).y_t.error,
                            mcrg_exponents(dd, cc, level=CRITERION_LEVEL, n_bins=nb).y_h.error)
                       for nb in (R * 2, R * 4, R * 8)}
            crit.append({"set": label, "y_t": est(r.y_t), "y_h": est(r.y_h), "n_configs": r.n_configs,
                         "n_bins": r.n_bins,
                         "y_t_ok": abs(r.y_t.mean - EXACT_Y_T) < TOL_T, "y_h_ok": abs(r.y_h.mean - EXACT_Y_H) < TOL_H,
                         "error_plateau": {str(k): {"y_t": v[0], "y_h": v[1]} for k, v in plateau.items()}})
        out["criterion"] = crit
    return out


def markdown(results: list[dict]) -> str:
    lines = []
    for res in results:
        lines += [f"### L = {res['L']}: {res['n_chains']} chains x {res['n_per_chain']} configurations "
                  f"({res['algorithm']}, beta = {res['beta']:.10f}), tie seed {res['seed']}", ""]
        head = "| couplings (even, odd) | " + " | ".join(
            f"y_t T^({lv['level']}) {lv['sizes'][0]}->{lv['sizes'][1]}" for lv in res["levels_detail"]) + " | " + \
            " | ".join(f"y_h T^({lv['level']})" for lv in res["levels_detail"]) + " |"
        lines += [head, "|" + "---|" * (1 + 2 * len(res["levels_detail"]))]
        n_rows = len(res["levels_detail"][0]["rows"])
        for i in range(n_rows):
            r0 = res["levels_detail"][0]["rows"][i]
            cells = [f"{r0['set']} ({r0['n_even']}, {r0['n_odd']})"]
            cells += [fve(lv["rows"][i]["y_t"]["mean"], lv["rows"][i]["y_t"]["error"]) for lv in res["levels_detail"]]
            cells += [fve(lv["rows"][i]["y_h"]["mean"], lv["rows"][i]["y_h"]["error"]) for lv in res["levels_detail"]]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        for c in res.get("criterion", []):
            pl = ", ".join(f"{k} bins: {v['y_t']:.4f}/{v['y_h']:.5f}" for k, v in c["error_plateau"].items())
            lines.append(
                f"- T^({CRITERION_LEVEL}), {c['set']}: y_t = {fve(c['y_t']['mean'], c['y_t']['error'])} "
                f"({'pass' if c['y_t_ok'] else 'FAIL'}: |y_t - 1| < {TOL_T}), "
                f"y_h = {fve(c['y_h']['mean'], c['y_h']['error'])} "
                f"({'pass' if c['y_h_ok'] else 'FAIL'}: |y_h - 15/8| < {TOL_H}); "
                f"{c['n_configs']} configurations, {c['n_bins']} jackknife bins; errors y_t/y_h with {pl}")
        lines.append("")
    lines.append("Exact: y_t = 1/nu = 1, y_h = 15/8 = 1.875. T^(n) uses the lattices blocked n and n + 1 times "
                 "(2x2 majority rule, random ties); T = A^-1 B with A = <S^(n+1) S^(n+1)>_c, "
                 "B = <S^(n+1) S^(n)>_c.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ensembles", nargs="+", default=["data/mcrg_L64.h5"])
    ap.add_argument("--seed", type=int, default=1, help="seed of the majority rule's random tie breaks")
    ap.add_argument("--n-bins", type=int, default=None, help="jackknife bins (default: 64 for 16 chains)")
    ap.add_argument("--limit", type=int, default=None, help="use only the first LIMIT configurations")
    ap.add_argument("--json")
    ap.add_argument("--markdown")
    a = ap.parse_args(argv)
    results = [analyse(p, a.seed, a.n_bins, a.limit) for p in a.ensembles]
    md = markdown(results)
    print(md)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1, default=float)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(md)
    ok = all(c["y_t_ok"] and c["y_h_ok"] for r in results for c in r.get("criterion", []) if r["L"] == 64)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
