"""Benchmark: nanoseconds per site per Swendsen-Wang update (= sweep) at the critical coupling.

CPU: the fused Numba kernel on one replica, on one core by default (``NUMBA_NUM_THREADS`` is set
before Numba is imported), with and without the improved estimators (cluster sizes). Both the
wall-clock time and the CPU time of the calling thread are reported: on a shared machine the
CPU time is the steadier number (the single-replica kernel runs on the calling thread).
GPU (when CuPy and a CUDA device are usable): the Numba-CUDA kernels on the device, timed
with a device synchronisation, at the larger sizes too.

    python tools/bench/bench_swendsen_wang.py [--sizes 256 1024] [--gpu-sizes 1024 4096]
                                              [--threads 1] [--min-time 2] [--json out.json]

The chain is equilibrated first (``--therm`` updates from a random start), since cluster
structure, and so the cost, depends on the configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time


def parse():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 1024], help="CPU lattice sizes L (L x L)")
    ap.add_argument("--gpu-sizes", type=int, nargs="+", default=[1024, 4096], help="GPU lattice sizes")
    ap.add_argument("--threads", type=int, default=1, help="Numba threads (default 1: one core)")
    ap.add_argument("--replicas", type=int, default=1)
    ap.add_argument("--therm", type=int, default=20, help="updates before timing")
    ap.add_argument("--min-time", type=float, default=2.0, help="seconds per measurement (best of --repeat)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-gpu", action="store_true")
    ap.add_argument("--json", help="write the results to this file")
    return ap.parse_args()


def time_sweeps(sim, min_time, repeat, sync=lambda: None):
    """Best (wall, cpu) seconds per sweep over ``repeat`` timings of at least ``min_time`` each."""
    n = 1
    while True:  # find a sweep count that takes about min_time
        t0 = time.perf_counter()
        sim.sweep(n)
        sync()
        dt = time.perf_counter() - t0
        if dt >= 0.2 * min_time:
            break
        n *= 2
    n = max(1, int(n * min_time / max(dt, 1e-9)))
    best_wall = best_cpu = float("inf")
    for _ in range(repeat):
        c0, w0 = time.thread_time(), time.perf_counter()
        sim.sweep(n)
        sync()
        best_wall = min(best_wall, (time.perf_counter() - w0) / n)
        best_cpu = min(best_cpu, (time.thread_time() - c0) / n)
    return best_wall, best_cpu


def main() -> None:
    args = parse()
    os.environ["NUMBA_NUM_THREADS"] = str(args.threads)  # before Numba is imported
    import numba

    import isingcore

    info = dict(machine=platform.processor() or platform.machine(), python=sys.version.split()[0],
                cores=os.cpu_count(), numba_threads=numba.config.NUMBA_NUM_THREADS, numba=numba.__version__,
                isingcore=isingcore.__version__, beta=isingcore.BETA_C, replicas=args.replicas)
    print(f"# {info}")
    print(f"{'device':<7}{'L':>6}{'improved':>10}{'wall ns/site':>14}{'cpu ns/site':>13}")
    rows = []

    def report(device, L, record, wall, cpu):
        sites = args.replicas * L * L
        row = dict(device=device, L=L, replicas=args.replicas, improved=record,
                   ns_per_site_wall=wall / sites * 1e9, ns_per_site_cpu=None if cpu is None else cpu / sites * 1e9)
        rows.append(row)
        cpu_s = "-" if cpu is None else f"{row['ns_per_site_cpu']:.2f}"
        print(f"{device:<7}{L:>6}{str(record):>10}{row['ns_per_site_wall']:>14.2f}{cpu_s:>13}", flush=True)

    for L in args.sizes:
        sim = isingcore.Simulation(L, isingcore.BETA_C, "swendsen-wang", seed=1, replicas=args.replicas)
        sim.sweep(args.therm)
        for record in (True, False):
            sim.updater.record_improved = record
            sim.updater.reset()
            wall, cpu = time_sweeps(sim, args.min_time, args.repeat)
            report("cpu", L, record, wall, cpu if args.threads == 1 else None)

    if not args.no_gpu:
        from isingcore import _array

        ok, why = _array.cupy_status()
        if not ok:
            print(f"# GPU: skipped ({why})")
        else:  # pragma: no cover - needs a device
            import cupy

            def sync():
                cupy.cuda.get_current_stream().synchronize()

            for L in args.gpu_sizes:
                sim = isingcore.Simulation(L, isingcore.BETA_C, "swendsen-wang", seed=1, replicas=args.replicas,
                                           backend="cupy")
                if sim.kernel != "fast":
                    print(f"# GPU: no fused kernel ({sim.kernel}); skipped")
                    break
                sim.sweep(args.therm)
                sync()
                for record in (True, False):
                    sim.updater.record_improved = record
                    sim.updater.reset()
                    wall, _ = time_sweeps(sim, args.min_time, args.repeat, sync)
                    report("gpu", L, record, wall, None)
            info["gpu"] = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(info=info, results=rows), fh, indent=1)


if __name__ == "__main__":
    main()
