"""Seconds per independent configuration at K_c: 2 tau_int(m^2) x (wall time of one sweep).

    python tools/bench/seconds_per_config.py [--results tools/bench/results]

Reads the JSON written by autocorrelation.py (tau_local.json, tau_cluster.json) and by the
throughput benchmarks (bench_local.json, bench_wolff.json, bench_swendsen_wang.json). A sweep
costs L^2 / (flips per ns) for the local updates (fused kernel, one replica), L^2 x ns per
flipped spin x (flipped spins per sweep / L^2) for Wolff, and L^2 x ns per site for
Swendsen-Wang. Where tau_int was not measured at a size, it is extrapolated with the fitted z
(marked "extrapolated").
"""

import argparse
import json
import os

from autocorrelation import fit_z


def load(path):
    with open(path) as fh:
        return json.load(fh)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", default=os.path.join(os.path.dirname(__file__), "results"))
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    args = ap.parse_args()
    r = lambda name: load(os.path.join(args.results, name))  # noqa: E731
    taus = r("tau_local.json") + r("tau_cluster.json")
    sweep_s = {}
    for row in r("bench_local.json")["results"]:
        if row["kernel"] == "fast" and row["replicas"] == 1 and row["flips_per_ns"]:
            sweep_s[(row["algorithm"], row["L"])] = row["L"] ** 2 / row["flips_per_ns"] * 1e-9
    for row in r("bench_wolff.json")["results"]:
        sweep_s[("wolff", row["L"])] = row["L"] ** 2 * row["flips_per_sweep_fraction"] * row["ns_per_flip_wall_best"] * 1e-9
    for row in r("bench_swendsen_wang.json")["results"]:
        if row["device"] == "cpu" and row["improved"]:
            sweep_s[("swendsen-wang", row["L"])] = row["L"] ** 2 * row["ns_per_site_wall"] * 1e-9
    print("| algorithm | L | τ_int(m²) [sweeps] | wall time per sweep | seconds per independent configuration |")
    print("|---|---|---|---|---|")
    for alg in ("metropolis", "heatbath", "wolff", "swendsen-wang"):
        rows = [t for t in taus if t["algorithm"] == alg]
        for L in args.sizes:
            t = next((t for t in rows if t["L"] == L), None)
            note = ""
            if t is None:
                f = fit_z(rows, "tau_m2")
                base = max((x for x in rows), key=lambda x: x["L"], default=None)
                if f is None or base is None:
                    continue
                tau = base["tau_m2"] * (L / base["L"]) ** f["z"]
                note = f" (extrapolated from L={base['L']} with z={f['z']:.2f})"
            else:
                tau = t["tau_m2"]
            s = sweep_s.get((alg, L))
            if s is None:
                continue
            print(f"| {alg} | {L} | {tau:.3g}{note} | {s * 1e3:.3g} ms | {2 * tau * s:.3g} |")


if __name__ == "__main__":
    main()
