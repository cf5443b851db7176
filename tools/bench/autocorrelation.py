"""Autocorrelation study at K_c: integrated autocorrelation times of E and m^2 against L, and z.

    python tools/bench/autocorrelation.py --algorithms metropolis heatbath --sizes 16 32 64 128 256 \\
        --json tau_local.json
    python tools/bench/autocorrelation.py --table tau_local.json tau_cluster.json   # README table + z fits

For each (algorithm, L): R independent replicas (RNG streams; local updates from a random start,
cluster updates from an ordered one) are thermalised for ~20 tau and then
measured every ``k`` sweeps (k much smaller than tau); tau_int of the energy per site and of m^2 comes
from the Gamma method with the replicas combined (U. Wolff, CPC 156 (2004) 143), in sweeps (for
Wolff: sweep-equivalents, clusters until N spins have flipped). The dynamic exponent z is the
weighted least-squares slope of ln tau_int against ln L, with its error from the fit (tau errors
from the Gamma method).
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np

import isingcore
from isingcore.measure import format_value_error as fve
from isingcore.measure import gamma_method
from isingcore.simulation import tau_guess

ALGORITHMS = ("metropolis", "heatbath", "wolff", "swendsen-wang")


def measure_tau(algorithm: str, L: int, replicas: int, n_tau: float, seed: int) -> dict:
    guess = tau_guess(algorithm, L)  # rough, only to choose thermalisation, spacing and run length
    k = max(1, int(guess / 20))  # measurement spacing in sweeps
    n_meas = int(n_tau * guess / k)
    cluster = algorithm in ("wolff", "swendsen-wang")
    sim = isingcore.Simulation(L, isingcore.BETA_C, algorithm, seed=seed, replicas=replicas,
                               start="cold" if cluster else "random")
    t0 = time.perf_counter()
    sim.sweep(int(20 * guess) + 10)
    e = np.empty((replicas, n_meas))
    m2 = np.empty((replicas, n_meas))
    for t in range(n_meas):
        sim.sweep(k)
        e[:, t] = np.asarray(sim.energy())
        m2[:, t] = np.asarray(sim.magnetization()) ** 2
    wall = time.perf_counter() - t0
    ge, gm = gamma_method(e), gamma_method(m2)
    return dict(algorithm=algorithm, L=L, replicas=replicas, spacing=k, n_meas=n_meas, wall_s=wall,
                tau_E=ge.tau_int * k, tau_E_err=ge.tau_int_error * k,
                tau_m2=gm.tau_int * k, tau_m2_err=gm.tau_int_error * k,
                sweeps_per_replica=int(20 * guess) + 10 + n_meas * k)


def fit_z(rows, key, L_min=32):
    pts = [(r["L"], r[key], r[key + "_err"]) for r in rows if r["L"] >= L_min and r[key] > 0]
    if len(pts) < 2:
        return None
    x = np.log([p[0] for p in pts])
    y = np.log([p[1] for p in pts])
    s = np.array([p[2] / p[1] for p in pts])  # error of ln tau
    w = 1 / s**2
    A = np.vstack([x, np.ones_like(x)]).T
    cov = np.linalg.inv(A.T @ (A * w[:, None]))
    coef = cov @ (A.T @ (w * y))
    chi2 = float(np.sum(w * (y - A @ coef) ** 2))
    dof = max(len(pts) - 2, 1)
    err = math.sqrt(cov[0, 0] * max(1.0, chi2 / dof))  # inflate by sqrt(chi2/dof) when the fit is poor
    return dict(z=float(coef[0]), z_err=err, chi2_dof=chi2 / dof, L_min=L_min, n=len(pts))


def table(rows) -> str:
    algs = sorted({r["algorithm"] for r in rows}, key=ALGORITHMS.index)
    sizes = sorted({r["L"] for r in rows})
    out = ["| algorithm | " + " | ".join(f"L={L}" for L in sizes) + " | z (E) | z (m²) |",
           "|---|" + "---|" * (len(sizes) + 2)]
    for a in algs:
        cells = []
        for L in sizes:
            r = next((r for r in rows if r["algorithm"] == a and r["L"] == L), None)
            cells.append("" if r is None else f"{fve(r['tau_E'], r['tau_E_err'])} / {fve(r['tau_m2'], r['tau_m2_err'])}")
        zs = []
        for key in ("tau_E", "tau_m2"):
            f = fit_z([r for r in rows if r["algorithm"] == a], key)
            zs.append("" if f is None else f"{f['z']:.2f} ± {f['z_err']:.2f}")
        out.append(f"| {a} | " + " | ".join(cells) + f" | {zs[0]} | {zs[1]} |")
    out.append("\nCells: τ_int(E) / τ_int(m²) in sweeps (Γ-method error); z from a weighted fit of ln τ against ln L for L ≥ 32.")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS))
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    ap.add_argument("--replicas", type=int, default=32)
    ap.add_argument("--n-tau", type=float, default=200.0, help="measured length per replica in units of the guessed tau")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--json", help="append results to this JSON file")
    ap.add_argument("--table", nargs="+", help="only print the table and z fits of these JSON files")
    args = ap.parse_args()
    if args.table:
        rows = [r for f in args.table for r in json.load(open(f))]
        print(table(rows))
        return
    rows = []
    if args.json:
        try:
            rows = json.load(open(args.json))
        except (OSError, ValueError):
            rows = []
    for a in args.algorithms:
        for L in args.sizes:
            r = measure_tau(a, L, args.replicas, args.n_tau, args.seed)
            print(json.dumps(r), flush=True)
            rows = [x for x in rows if not (x["algorithm"] == a and x["L"] == L)] + [r]
            if args.json:
                json.dump(rows, open(args.json, "w"), indent=1)
    print(table(rows))


if __name__ == "__main__":
    main()
