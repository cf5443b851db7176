"""Fidelity of an upscaling model: upscaled ensembles against exact and cluster-MC references.

    python tools/upscale_fidelity.py --model ecmk-b3-k9 --seed-size 32 --stages 3 --configs 400 \
        --refs data --json out/fidelity_ecmk.json --markdown out/fidelity_ecmk.md

For every stage t = 1..stages the upscaled configurations (independent: every one grows from its
own equilibrated Wolff seed) give, with errors,

- the energy per site e, against Kaufman's exact value at the output size (criterion: |e/e_exact - 1|
  below 0.2 %, and no drift from stage to stage beyond the errors);
- the Binder cumulant U4 = 1 - <m^4>/(3<m^2>^2) and chi/L^(7/4) = L^(1/4) <m^2> (chi = L^2 <m^2>,
  the symmetric estimator: <m> = 0 by symmetry), against cluster-MC ensembles of the same size
  (``--refs DIR`` holds ``ref_L{L}.h5`` written by tools/make_training_data.py; criterion: within 3 %);
- c_me = L^2 (<|m||e|> - <|m|><|e|>)/<|m|> (seed 003 eq. 14), for the finite-size scaling table.

With ``--seed-size 1`` (minimal models dreamed from one spin, seed 003) the tool also reports the
exponents gamma/nu and 1/nu from the pairs (L, L/4), as in seed 003's Table II, next to the same
pairs from the cluster-MC references.

Errors: the upscaled configurations are independent (tau_int = 1/2), the references are
decorrelated Wolff chains; every error comes from the Gamma method (isingcore.measure), and a
difference is quoted with its combined error.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

from isingcore import exact
from isingcore.analysis import chain_series
from isingcore.io import open_ensemble
from isingcore.measure import binder_cumulant, derived, gamma_method, magnetization_energy_cumulant
from isingcore.measure.fss import pair_exponent

ETA_RATIO = 7.0 / 4.0  # gamma/nu of the 2D Ising model


def estimates(e, abs_m, L: int) -> dict:
    """Energy, U4, chi/L^(7/4) and c_me with Gamma-method errors from per-configuration series.

    ``e`` and ``abs_m`` are (N,) (independent configurations) or (R, N) (R chains).
    """
    e = np.asarray(e, np.float64)
    abs_m = np.asarray(abs_m, np.float64)
    m2 = abs_m ** 2
    m4 = m2 ** 2
    n_sites = L * L
    out = {
        "energy": gamma_method(e),
        "binder": binder_cumulant(m2, m4),
        "chi_scaled": derived(lambda a: a * L ** (2.0 - ETA_RATIO), m2),
        "chi": derived(lambda a: a * n_sites, m2),
        "c_me": magnetization_energy_cumulant(abs_m, e, n_sites),
    }
    return out


def reference_estimates(path: str) -> dict:
    with open_ensemble(path) as ens:
        L = ens.Lx
        s = chain_series(ens, ["energy", "magnetization"])
    return estimates(s["energy"], np.abs(s["magnetization"]), L)


def as_dict(est) -> dict:
    return {"mean": float(est.mean), "error": float(est.error), "tau_int": float(est.tau_int)}


def compare(up: dict, ref: dict | None, L: int, beta: float) -> dict:
    """Relative deviations with their errors, and the verdicts of the issue's criteria."""
    row = {"L": L, "upscaled": {k: as_dict(v) for k, v in up.items()}}
    e_exact = float(exact.kaufman_torus(beta, L, L).energy)  # log-domain sums: 0.03 s even at 41,472^2
    d = up["energy"].mean / e_exact - 1.0
    row["energy_exact"] = e_exact
    row["energy_rel_dev"] = d
    row["energy_rel_err"] = up["energy"].error / abs(e_exact)
    row["energy_ok"] = verdict(d, row["energy_rel_err"], 2e-3)
    if ref is not None:
        row["reference"] = {k: as_dict(v) for k, v in ref.items()}
        for k in ("binder", "chi_scaled"):
            r = up[k].mean / ref[k].mean - 1.0
            err = math.hypot(up[k].error / ref[k].mean, up[k].mean * ref[k].error / ref[k].mean ** 2)
            row[f"{k}_rel_dev"] = r
            row[f"{k}_rel_err"] = err
            row[f"{k}_ok"] = verdict(r, err, 0.03)
    return row


def verdict(dev: float, err: float, tol: float) -> str:
    """'pass' if the deviation is within ``tol`` and resolved (2 errors below ``tol``), 'fail' if it
    lies outside ``tol`` by more than 2 errors, else 'unresolved' (more statistics needed)."""
    if abs(dev) + 2 * err < tol:
        return "pass"
    if abs(dev) - 2 * err > tol:
        return "fail"
    return "unresolved"


MARK = {"pass": "", "fail": " ✗", "unresolved": " ?"}


def fss_table(per_L: dict, ratio: int = 4) -> list[dict]:
    """gamma/nu from chi and 1/nu from c_me for the pairs (L, L/ratio) present in ``per_L``.

    ``p = ln(Y(L)/Y(L/ratio)) / ln(ratio)`` with independent errors: :func:`isingcore.measure.fss.pair_exponent`.
    """
    rows = []
    for L in sorted(per_L):
        if L % ratio or (L // ratio) not in per_L:
            continue
        a, b = per_L[L], per_L[L // ratio]
        g = pair_exponent(a["chi"], b["chi"], ratio, sizes=(L // ratio, L))
        n = pair_exponent(a["c_me"], b["c_me"], ratio, sizes=(L // ratio, L))
        rows.append({"pair": [L, L // ratio], "gamma_over_nu": g.value, "gamma_over_nu_err": g.error,
                     "one_over_nu": n.value, "one_over_nu_err": n.error})
    return rows


def fmt(v, e, digits=2):
    from isingcore.measure import format_value_error

    return format_value_error(v, e, digits)


def markdown(result: dict) -> str:
    lines = [f"Model `{result['model']}`, seed size {result['seed_size']}, {result['configs']} configurations, "
             f"{result['refine']} refinement sweeps per stage, seed {result['seed']}.", "",
             "| stage | L | e (upscaled) | e exact (Kaufman) | dev e | U4 upscaled | U4 cluster MC | dev U4 "
             "| chi/L^(7/4) upscaled | cluster MC | dev chi |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for t, row in enumerate(result["stages"], 1):
        u = row["upscaled"]
        r = row.get("reference")
        cells = [str(t), str(row["L"]), fmt(u["energy"]["mean"], u["energy"]["error"], 2)]
        if "energy_exact" in row:
            cells += [f"{row['energy_exact']:.6f}",
                      f"{100 * row['energy_rel_dev']:+.3f}({100 * row['energy_rel_err']:.3f}) %"
                      + MARK[row["energy_ok"]]]
        else:
            cells += ["", ""]
        cells.append(fmt(u["binder"]["mean"], u["binder"]["error"]))
        if r:
            cells += [fmt(r["binder"]["mean"], r["binder"]["error"]),
                      f"{100 * row['binder_rel_dev']:+.1f}({100 * row['binder_rel_err']:.1f}) %" + MARK[row["binder_ok"]]]
        else:
            cells += ["", ""]
        cells.append(fmt(u["chi_scaled"]["mean"], u["chi_scaled"]["error"]))
        if r:
            cells += [fmt(r["chi_scaled"]["mean"], r["chi_scaled"]["error"]),
                      f"{100 * row['chi_scaled_rel_dev']:+.1f}({100 * row['chi_scaled_rel_err']:.1f}) %" + MARK[row["chi_scaled_ok"]]]
        else:
            cells += ["", ""]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "✗: outside the criterion (0.2 % for e, 3 % for U4 and chi) by more than two errors; "
              "?: not resolved by the statistics; deviations are quoted with their one-sigma errors."]
    if result.get("fss"):
        lines += ["", "| pair (L, L/4) | gamma/nu upscaled | gamma/nu cluster MC | 1/nu upscaled | 1/nu cluster MC |",
                  "|---|---|---|---|---|"]
        ref = {tuple(r["pair"]): r for r in result.get("fss_reference", [])}
        for r in result["fss"]:
            m = ref.get(tuple(r["pair"]))
            lines.append(f"| ({r['pair'][0]}, {r['pair'][1]}) | {fmt(r['gamma_over_nu'], r['gamma_over_nu_err'], 1)} | "
                         + (fmt(m["gamma_over_nu"], m["gamma_over_nu_err"], 1) if m else "") + " | "
                         + f"{fmt(r['one_over_nu'], r['one_over_nu_err'], 1)} | "
                         + (fmt(m["one_over_nu"], m["one_over_nu_err"], 1) if m else "") + " |")
        lines.append("")
        lines.append("Exact: gamma/nu = 7/4, 1/nu = 1.")
    return "\n".join(lines) + "\n"


def run(model: str, *, seed_size: int, stages: int, configs: int, refine: int, seed: int, refs: str | None,
        backend: str = "numpy", progress: bool = False, log=print) -> dict:
    from isingcore.rg import upscale
    from isingcore.rg.models import load_model

    m = load_model(model)
    t0 = time.perf_counter()
    res = upscale.generate(m, seed_size=seed_size, stages=stages, refine=refine, configs=configs, seed=seed,
                           backend=backend, progress=progress, log=log)
    wall = time.perf_counter() - t0
    result = {"model": m.name, "metadata": dict(m.metadata), "seed_size": seed_size, "stages": stages,
              "configs": configs, "refine": refine, "seed": seed, "backend": backend, "seconds": wall,
              "thermalization": res.thermalization, "stages_detail": res.summary(), "stages": []}
    per_L, per_L_ref = {}, {}
    for h in res.history:
        L = h["L"]
        if L < 2:
            continue
        e = -(h["c10x"] + h["c10y"])
        up = estimates(e, h["abs_m"], L)
        per_L[L] = up
        ref = None
        path = os.path.join(refs, f"ref_L{L}.h5") if refs else None
        if path and os.path.exists(path):
            ref = reference_estimates(path)
            per_L_ref[L] = ref
        if h["stage"] >= 1:
            result["stages"].append(compare(up, ref, L, m.beta))
    result["fss"] = fss_table(per_L)
    result["fss_reference"] = fss_table(per_L_ref)
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--seed-size", type=int, required=True)
    p.add_argument("--stages", type=int, default=3)
    p.add_argument("--configs", type=int, default=400)
    p.add_argument("--refine", type=int, default=25)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--refs", default="data", help="directory with ref_L{L}.h5 cluster-MC ensembles")
    p.add_argument("--backend", default="numpy")
    p.add_argument("--json")
    p.add_argument("--markdown")
    p.add_argument("--progress", action="store_true")
    a = p.parse_args(argv)
    result = run(a.model, seed_size=a.seed_size, stages=a.stages, configs=a.configs, refine=a.refine, seed=a.seed,
                 refs=a.refs, backend=a.backend, progress=a.progress, log=lambda s: print(s, file=sys.stderr))
    md = markdown(result)
    print(md)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1, default=float)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
