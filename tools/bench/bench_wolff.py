"""Benchmark: nanoseconds per flipped spin of the Wolff cluster updates (Numba CPU kernel).

One replica per lattice size, at K_c by default, one thread by default (``--threads``), after
equilibration from a cold start. The cost is counted per *flipped* spin (the sum of the cluster
sizes), the usual unit for single-cluster algorithms; a Wolff sweep flips about L^2 spins.
Each size is timed in ``--repeats`` blocks of about ``--min-time / repeats`` seconds; the table
gives the best block (wall clock and CPU time of the process) and the median (wall clock).

    python tools/bench/bench_wolff.py [--sizes 64 256 1024] [--beta 0.4406868] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024])
    ap.add_argument("--beta", type=float, default=None, help="inverse temperature (default: K_c)")
    ap.add_argument("--threads", type=int, default=1, help="Numba threads (set before Numba is imported)")
    ap.add_argument("--equilibrate", type=int, default=30, help="sweeps from the cold start before timing")
    ap.add_argument("--min-time", type=float, default=3.0, help="seconds of timed work per size")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--logw", type=int, default=None, help="tile width 2**logw of the kernel (default: automatic)")
    ap.add_argument("--json")
    return ap.parse_args(argv)


def bench_size(L: int, beta: float, args) -> dict:
    import numpy as np

    import isingcore
    from isingcore.backends.numba_cpu import wolff as fused

    sim = isingcore.Simulation(L, beta, "wolff", seed=1, replicas=1, start="cold")
    up = sim.updater
    if args.logw is not None:  # fix the tile width: wrap the kernel
        kernel = fused.wolff_clusters
        up.fast = lambda *a, **kw: kernel(*a, **{**kw, "logw": args.logw, "mean_size": None})
    sim.sweep(args.equilibrate)
    up.reset_statistics()
    c = up.clusters_per_sweep
    # size the blocks from one timed sweep
    t0 = time.perf_counter()
    sim.sweep(1)
    per_sweep = max(time.perf_counter() - t0, 1e-6)
    n_block = max(1, int(args.min_time / args.repeats / per_sweep))
    walls, cpus = [], []
    for _ in range(args.repeats):
        f0 = float(up.sum_sizes.sum())
        w0, c0 = time.perf_counter(), time.process_time()
        sim.sweep(n_block)
        w1, c1 = time.perf_counter(), time.process_time()
        flips = float(up.sum_sizes.sum()) - f0
        walls.append((w1 - w0) / flips * 1e9)
        cpus.append((c1 - c0) / flips * 1e9)
    n = int(up.n_clusters.sum())
    return dict(L=L, beta=beta, clusters_per_sweep=c, mean_cluster_fraction=float(up.sum_sizes.sum()) / n / (L * L),
                flips_per_sweep_fraction=float(up.sum_sizes.sum()) / (n / c) / (L * L),
                ns_per_flip_wall_best=min(walls), ns_per_flip_wall_median=float(np.median(walls)),
                ns_per_flip_cpu_best=min(cpus), sweeps_per_block=n_block)


def philox_latency_ns(n: int = 2_000_000) -> float:
    """Calibration of the machine's state: ns per Philox4x32-10 block when each block depends on the
    previous one (pure latency: ~50 dependent integer operations). On a quiet Zen 3 core at ~3 GHz
    about 16 ns; larger values mean a slower or busy core (other jobs on the same core or its SMT
    sibling), and the timings below scale roughly with it."""
    import numpy as np
    from numba import njit

    from isingcore.backends.numba_cpu.philox import philox4x32_10

    @njit(cache=False)
    def chain(n):
        acc = np.uint64(0)
        for _ in range(n):
            a, b, c, d = philox4x32_10(acc & np.uint64(0xFFFFFFFF), np.uint64(5), np.uint64(0), np.uint64(2),
                                       np.uint64(1), np.uint64(2))
            acc = a
        return acc

    chain(10)
    best = float("inf")
    for _ in range(3):
        t0 = time.process_time()
        chain(n)
        best = min(best, (time.process_time() - t0) / n * 1e9)
    return best


def main(argv=None) -> None:
    args = parse_args(argv)
    os.environ["NUMBA_NUM_THREADS"] = str(args.threads)
    if "numba" in sys.modules:
        print("# warning: Numba was imported before NUMBA_NUM_THREADS could be set", file=sys.stderr)
    import numba

    import isingcore

    beta = isingcore.BETA_C if args.beta is None else args.beta
    info = dict(machine=platform.processor() or platform.machine(), cores=os.cpu_count(),
                numba_threads=numba.config.NUMBA_NUM_THREADS, isingcore=isingcore.__version__,
                load_average=os.getloadavg() if hasattr(os, "getloadavg") else None)
    info["philox_latency_ns"] = round(philox_latency_ns(), 2)
    print(f"# {info}")
    print(f"# Wolff, one replica, beta = {beta:.10g}, {args.equilibrate} equilibration sweeps from a cold start")
    print(f"{'L':>6}{'clusters/sweep':>16}{'<|C|>/N':>9}{'ns/flip':>9}{'(cpu)':>8}{'(median)':>10}{'Mflips/s':>10}")
    rows = []
    for L in args.sizes:
        r = bench_size(L, beta, args)
        rows.append(r)
        print(f"{L:>6}{r['clusters_per_sweep']:>16}{r['mean_cluster_fraction']:>9.3f}{r['ns_per_flip_wall_best']:>9.2f}"
              f"{r['ns_per_flip_cpu_best']:>8.2f}{r['ns_per_flip_wall_median']:>10.2f}"
              f"{1e3 / r['ns_per_flip_wall_best']:>10.1f}", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(info=info, results=rows), fh, indent=1)


if __name__ == "__main__":
    main()
