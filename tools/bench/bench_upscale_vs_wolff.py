"""Seconds per independent configuration at K_c: inverse-RG upscaling against Wolff (seed 000, Table II).

    python tools/bench/bench_upscale_vs_wolff.py [--sizes 1536 4608] [--model ecmk-b3-k9] [--json out.json]

Wolff at L: wall time of one sweep (measured on one replica in equilibrium) times

- ``2 tau_int(E)`` sweeps: the cost of the next independent configuration of a running chain, and
- ``20 tau_int(E)`` sweeps: the cost of the first equilibrated configuration from an ordered start;

tau_int(E) is taken from the measured values in ``results/tau_cluster.json`` (Gamma method),
extrapolated to L with the fitted power law.

Upscaling to L = L0 * b^t from seeds of L0 = L / b^t (512 for b = 3 and t = 1, 2 as in seed 000):
the seed costs 2 tau_int(E) (running seed chain) or 20 tau_int(E) (from an ordered start) Wolff
sweeps at L0, plus the measured wall time of the t upscaling stages with 25 Metropolis sweeps each.
Every upscaled configuration grown from an independent seed is independent.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402



def tau_model(results: str, L_min: int = 32):
    """Weighted least-squares fit ln tau_int(E) = z ln L + c to the measured Wolff values (L >= L_min)."""
    rows = [r for r in json.load(open(os.path.join(results, "tau_cluster.json")))
            if r["algorithm"] == "wolff" and r["L"] >= L_min]
    x = np.log([r["L"] for r in rows])
    y = np.log([r["tau_E"] for r in rows])
    w = np.array([(r["tau_E"] / r["tau_E_err"]) ** 2 for r in rows])
    A = np.vstack([x, np.ones_like(x)]).T
    z, c = np.linalg.solve(A.T @ (A * w[:, None]), A.T @ (w * y))
    fit = {"z": float(z), "ln_a": float(c), "L_max_measured": int(max(r["L"] for r in rows))}
    return (lambda L: float(math.exp(c) * L ** z)), fit


def wolff_sweep_seconds(L: int, seed: int = 1, n: int = 10) -> float:
    from isingcore.simulation import Simulation

    sim = Simulation(size=L, algorithm="wolff", seed=seed)
    sim.sweep(max(5, n // 2))  # leave the ordered start behind
    t0 = time.perf_counter()
    sim.sweep(n)
    return (time.perf_counter() - t0) / n


def upscale_seconds(model, L0: int, stages: int, refine: int, seed: int = 1) -> float:
    from isingcore.rg import upscale

    rs = np.random.default_rng(seed)
    spins = np.where(rs.random((1, L0, L0)) < 0.5, 1, -1).astype(np.int8)  # timing only: any +-1 seed
    upscale.upscale(spins[:, :8, :8], model, seed=seed, stage=1, refine=1)  # compile
    t0 = time.perf_counter()
    for t in range(1, stages + 1):
        spins = upscale.upscale(spins, model, seed=seed, stage=t, refine=refine)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1536, 4608])
    ap.add_argument("--model", default="ecmk-b3-k9")
    ap.add_argument("--seed-size", type=int, default=512)
    ap.add_argument("--refine", type=int, default=25)
    ap.add_argument("--results", default=os.path.join(HERE, "results"))
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    from isingcore.rg.models import load_model

    model = load_model(a.model)
    tau, fit = tau_model(a.results)
    seed_sweep = wolff_sweep_seconds(a.seed_size)
    rows = []
    for L in a.sizes:
        stages = round(math.log(L / a.seed_size, model.scale))
        if a.seed_size * model.scale ** stages != L:
            raise SystemExit(f"L={L} is not seed size {a.seed_size} times a power of {model.scale}")
        sweep = wolff_sweep_seconds(L, n=6 if L > 3000 else 10)
        up = upscale_seconds(model, a.seed_size, stages, a.refine)
        row = {"L": L, "stages": stages, "tau_int_E_wolff": tau(L), "tau_int_E_seed": tau(a.seed_size),
               "wolff_sweep_s": sweep, "wolff_s_per_config_chain": 2 * tau(L) * sweep,
               "wolff_s_first_config": 20 * tau(L) * sweep, "seed_sweep_s": seed_sweep,
               "upscale_stages_s": up,
               "upscale_s_per_config_chain": 2 * tau(a.seed_size) * seed_sweep + up,
               "upscale_s_first_config": 20 * tau(a.seed_size) * seed_sweep + up}
        rows.append(row)
        print(f"L={L}: Wolff {row['wolff_s_per_config_chain']:.2f} s/config (running chain), "
              f"{row['wolff_s_first_config']:.1f} s first; upscaling ({stages} stage(s) from {a.seed_size}) "
              f"{row['upscale_s_per_config_chain']:.2f} s/config, {row['upscale_s_first_config']:.2f} s first",
              flush=True)
    out = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "model": model.name,
           "refine": a.refine, "tau_fit": fit, "results": rows}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
