"""Benchmark: multilevel samplers against exact values and against Wolff (issue 6's ESS table).

For each size L and inverse temperature beta, and each sampler available:

* ``mlmc-hb``: heat-bath levels with the Maris-Kadanoff couplings (seed 001 appendix D);
* ``mlmchb-<b>-L<L>``: heat-bath levels with tuned couplings (shipped model, if present);
* ``rigcs-<b>-L<L>``: learned conditionals (shipped model, if present);
* ``mlmc-hb-split``: untrained heat-bath levels on the "split" hierarchy (sub-lattices, exact
  decimated level; :mod:`isingcore.multilevel.hierarchy`);
* ``rigcs-split-<b>-L<L>``: learned conditionals on the "split" hierarchy (shipped model, if present);

it draws N independent configurations and reports ESS/N = (sum w)^2 / (N sum w^2), ln Z_hat with
its error against Kaufman's exact ln Z (and the pull), the mode-dropping measure Z_hat/Z,
reweighted energy per site against Kaufman, the independence Metropolis-Hastings acceptance and
tau_int(E), tau_int(|m|) of that chain (in proposals), and the wall time per draw. Wolff at the
same L: wall time per sweep and tau_int(E), tau_int(|m|) in sweeps, so that the cost of one
effectively independent configuration can be compared: multilevel ``t_draw / ESS`` (importance
sampling) or ``t_draw * 2 tau_int`` (IMH chain) against Wolff ``t_sweep * 2 tau_int``.

    python tools/bench/bench_multilevel.py [--sizes 8 16 32 64] [--betas kc 0.44] [--samples 100000]
        [--json tools/bench/results/multilevel.json] [--markdown] [--samplers NAME_PREFIX ...] [--merge]

``--samplers`` runs only the samplers whose name starts with one of the prefixes (``mlmc-hb-split``,
``rigcs-split``, ...); ``--merge`` keeps the rows of the other samplers already in the ``--json``
file (the Wolff reference is measured again).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--betas", nargs="+", default=["kc", "0.44"])
    ap.add_argument("--samples", type=int, default=100_000, help="draws per sampler (fewer at large L, see --max-sites)")
    ap.add_argument("--max-sites", type=float, default=2.0e8, help="cap on N * L^2 per sampler")
    ap.add_argument("--wolff-sweeps", type=int, default=20_000, help="measured Wolff sweeps per size")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--json")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    ap.add_argument("--samplers", nargs="+", default=None, metavar="PREFIX",
                    help="only the samplers whose names start with one of these prefixes")
    ap.add_argument("--merge", action="store_true", help="keep the other samplers' rows of the existing --json file")
    return ap.parse_args(argv)


def beta_value(text: str) -> tuple[str, float]:
    from isingcore import BETA_C

    if text.lower() in ("kc", "critical"):
        return "kc", BETA_C
    b = float(text)
    return "b" + text.replace("0.", "0").replace(".", ""), b


def wolff_reference(L: int, beta: float, sweeps: int, seed: int) -> dict:
    import numpy as np

    import isingcore
    from isingcore.measure.autocorrelation import gamma_method

    sim = isingcore.Simulation(size=L, beta=beta, algorithm="wolff", seed=seed, start="cold")
    sim.sweep(200)
    t0 = time.perf_counter()
    sim.sweep(sweeps)  # timed in one call: no Python overhead per sweep
    dt = time.perf_counter() - t0
    E, M = np.empty(sweeps), np.empty(sweeps)
    for i in range(sweeps):  # the series for tau_int (measurement overhead not timed)
        sim.sweep(1)
        E[i] = float(np.asarray(sim.energy())[0])
        M[i] = abs(float(np.asarray(sim.magnetization())[0]))
    ge, gm, g2 = gamma_method(E), gamma_method(M), gamma_method(M**2)
    return {"t_sweep_s": dt / sweeps, "tau_E": ge.tau_int, "tau_absm": gm.tau_int, "energy": ge.mean,
            "energy_err": ge.error, "m2": g2.mean, "m2_err": g2.error}


def run_sampler(name: str, sampler, L: int, beta: float, n: int, seed: int) -> dict:
    import numpy as np

    from isingcore.exact import kaufman_torus, magnetization_moments
    from isingcore.measure.autocorrelation import gamma_method
    from isingcore.multilevel import (effective_sample_size, independence_metropolis, log_partition_function,
                                      mode_dropping, reweight)

    sampler.sample(min(n, 64), seed=seed + 1)  # warm-up (sessions, caches)
    t0 = time.perf_counter()
    smp = sampler.sample(n, seed=seed)
    dt = time.perf_counter() - t0
    s = np.asarray(smp.spins).astype(np.float64)
    e = -(s * (np.roll(s, 1, 1) + np.roll(s, 1, 2))).sum(axis=(1, 2)) / (L * L)
    am = np.abs(s.mean(axis=(1, 2)))
    ex = kaufman_torus(beta, L)
    lz_exact = ex.ln_z * L * L
    lz = log_partition_function(smp.log_w)
    md = mode_dropping(smp.log_w, lz_exact)
    er = reweight(e, smp.log_w)
    m2 = reweight(s.mean(axis=(1, 2)) ** 2, smp.log_w)
    ch = independence_metropolis(smp.log_w, seed=seed)
    te, tm = gamma_method(e[ch.state]), gamma_method(am[ch.state])
    return {"sampler": name, "L": L, "beta": beta, "n": n, "ess": effective_sample_size(smp.log_w),
            "ln_z": lz.mean, "ln_z_err": lz.error, "ln_z_exact": lz_exact,
            "ln_z_pull": (lz.mean - lz_exact) / lz.error if lz.error > 0 else None,
            "mode_dropping": md.mean, "mode_dropping_err": md.error,
            "energy_rw": er.mean, "energy_rw_err": er.error, "energy_exact": float(ex.energy),
            "m2_rw": m2.mean, "m2_rw_err": m2.error,
            "m2_exact": float(magnetization_moments(beta, L).m2) if L <= 10 else None,
            "imh_acceptance": ch.acceptance, "imh_tau_E": te.tau_int, "imh_tau_absm": tm.tau_int,
            "t_draw_s": dt / n}


def samplers_for(L: int, tag: str, beta: float):
    from isingcore.multilevel import MultilevelSampler
    from isingcore.multilevel.models import MultilevelModelError, load_model

    yield "mlmc-hb", MultilevelSampler(L, beta)
    yield "mlmc-hb-split", MultilevelSampler(L, beta, scheme="split")
    for family in ("mlmchb", "rigcs", "rigcs-split"):
        name = f"{family}-{tag}-L{L}"
        try:
            model = load_model(name)
        except MultilevelModelError:
            continue
        yield name, MultilevelSampler(model=model)


def fmt(v, e=None, digits=4):
    if v is None:
        return ""
    if e is None:
        return f"{v:.{digits}g}"
    from isingcore.measure.autocorrelation import format_value_error

    return format_value_error(v, e)


def main(argv=None) -> int:
    args = parse_args(argv)
    rows, wolff = [], {}
    for btxt in args.betas:
        tag, beta = beta_value(btxt)
        for L in args.sizes:
            wolff[(L, tag)] = w = wolff_reference(L, beta, args.wolff_sweeps, args.seed)
            print(f"# Wolff L={L} beta={beta:.6g}: {w['t_sweep_s'] * 1e6:.1f} us/sweep, tau_int(E) = {w['tau_E']:.2f}, "
                  f"tau_int(|m|) = {w['tau_absm']:.2f} sweeps", file=sys.stderr, flush=True)
            n = int(min(args.samples, args.max_sites / (L * L)))
            for name, sampler in samplers_for(L, tag, beta):
                if args.samplers and not any(name == p or name.startswith(p + "-") for p in args.samplers):
                    continue
                r = run_sampler(name, sampler, L, beta, n, args.seed)
                r["beta_tag"] = tag
                r["wolff_t_sweep_s"], r["wolff_tau_E"] = w["t_sweep_s"], w["tau_E"]
                rows.append(r)
                print(f"# {name:>16} L={L:<3} ESS={r['ess']:.4g} lnZ pull={r['ln_z_pull']:+.2f} "
                      f"acc={r['imh_acceptance']:.3f} tau_E={r['imh_tau_E']:.2f} t={r['t_draw_s'] * 1e6:.1f} us",
                      file=sys.stderr, flush=True)
    if args.merge and args.json and os.path.isfile(args.json):
        with open(args.json) as fh:
            old = json.load(fh)
        mine = {(r["sampler"], r["L"], r["beta_tag"]) for r in rows}
        rows = [r for r in old["rows"] if (r["sampler"], r["L"], r["beta_tag"]) not in mine] + rows
        for w in old.get("wolff", []):
            wolff.setdefault((w["L"], w["beta_tag"]), {k: v for k, v in w.items() if k not in ("L", "beta_tag")})
        order = {n: i for i, n in enumerate(("mlmc-hb", "mlmc-hb-split", "mlmchb", "rigcs", "rigcs-split"))}
        fam = lambda r: order.get(r["sampler"].rsplit("-", 2)[0] if r["sampler"][-1].isdigit() else r["sampler"], 9)
        rows.sort(key=lambda r: (r["beta_tag"] != "kc", r["beta_tag"], r["L"], fam(r)))
    head = ["beta", "L", "sampler", "N", "ESS/N", "ln Z_hat", "ln Z exact", "pull", "Z_hat/Z", "E reweighted",
            "E exact", "<m^2> reweighted", "<m^2> exact (L<=10) / Wolff", "IMH acc", "IMH tau_int(E)", "t/draw (us)", "t/draw/ESS (us)", "Wolff 2tau(E)*t/sweep (us)"]
    table = []
    for r in rows:
        w = wolff[(r["L"], r["beta_tag"])]
        table.append([f"{r['beta']:.6g}", str(r["L"]), r["sampler"], str(r["n"]), fmt(r["ess"]),
                      fmt(r["ln_z"], r["ln_z_err"]), f"{r['ln_z_exact']:.4f}",
                      "" if r["ln_z_pull"] is None else f"{r['ln_z_pull']:+.2f}",
                      fmt(r["mode_dropping"], r["mode_dropping_err"]), fmt(r["energy_rw"], r["energy_rw_err"]),
                      f"{r['energy_exact']:.5f}", fmt(r["m2_rw"], r["m2_rw_err"]),
                      f"{r['m2_exact']:.5f}" if r["m2_exact"] is not None else "W " + fmt(w["m2"], w["m2_err"]),
                      f"{r['imh_acceptance']:.3f}", f"{r['imh_tau_E']:.2f}",
                      f"{r['t_draw_s'] * 1e6:.1f}", f"{r['t_draw_s'] / max(r['ess'], 1e-300) * 1e6:.3g}",
                      f"{2 * w['tau_E'] * w['t_sweep_s'] * 1e6:.1f}"])
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for t in table:
            print("| " + " | ".join(t) + " |")
    else:
        widths = [max(len(h), *(len(t[i]) for t in table)) if table else len(h) for i, h in enumerate(head)]
        print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
        for t in table:
            print("  ".join(v.ljust(w) for v, w in zip(t, widths)))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump({"machine": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
                       "args": vars(args), "rows": rows,
                       "wolff": [{"L": k[0], "beta_tag": k[1], **v} for k, v in wolff.items()]}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
