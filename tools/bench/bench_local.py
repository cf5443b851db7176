"""Benchmark: spin updates ("flips") per nanosecond of the checkerboard local updates on the CPU.

Counts attempted single-spin updates (L^2 per sweep per replica), the usual "flips/ns" of GPU
Ising codes. Compares the array-API reference path (NumPy) with the fused Numba kernel.

    python tools/bench/bench_local.py [--sizes 256 1024 4096] [--replicas 1 64] [--json out.json]

Combinations whose working set would not fit in memory are reported as skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

import isingcore


def available_bytes() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


def bench(L: int, R: int, algorithm: str, kernel: str, min_time: float) -> float:
    sim = isingcore.Simulation(L, isingcore.BETA_C, algorithm, seed=1, replicas=R, kernel=kernel)
    sim.sweep(1)  # compile / warm up
    n, dt = 1, 0.0
    while True:
        t0 = time.perf_counter()
        sim.sweep(n)
        dt = time.perf_counter() - t0
        if dt >= min_time:
            break
        n = max(n * 2, int(n * min_time / max(dt, 1e-6) * 1.2))
    return R * L * L * n / dt / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096])
    ap.add_argument("--replicas", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--algorithms", nargs="+", default=["metropolis", "heatbath"])
    ap.add_argument("--kernels", nargs="+", default=["fast", "reference"])
    ap.add_argument("--min-time", type=float, default=2.0)
    ap.add_argument("--json")
    args = ap.parse_args()
    import numba

    info = dict(machine=platform.processor() or platform.machine(), cores=os.cpu_count(),
                numba_threads=numba.config.NUMBA_NUM_THREADS, isingcore=isingcore.__version__)
    print(f"# {info}")
    print(f"{'algorithm':<11}{'kernel':<10}{'L':>6}{'replicas':>9}{'flips/ns':>10}")
    rows = []
    for alg in args.algorithms:
        for kernel in args.kernels:
            for L in args.sizes:
                for R in args.replicas:
                    # reference: int32 temporaries and uint32 words, ~40 B per site; fused: ~3 B per site
                    need = R * L * L * (40 if kernel == "reference" else 3)
                    if need > 0.6 * available_bytes():
                        print(f"{alg:<11}{kernel:<10}{L:>6}{R:>9}{'skipped (memory)':>18}")
                        rows.append(dict(algorithm=alg, kernel=kernel, L=L, replicas=R, flips_per_ns=None))
                        continue
                    f = bench(L, R, alg, kernel, args.min_time)
                    print(f"{alg:<11}{kernel:<10}{L:>6}{R:>9}{f:>10.3f}", flush=True)
                    rows.append(dict(algorithm=alg, kernel=kernel, L=L, replicas=R, flips_per_ns=f))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(info=info, results=rows), fh, indent=1)


if __name__ == "__main__":
    main()
