"""Throughput of the Numba-CUDA checkerboard kernel (isingcore.backends.cuda.local) on a real GPU.

Prints spin updates per nanosecond (flips/ns = replicas * L**2 * sweeps / time; every site is
visited once per sweep) for L = 1024, 4096, 8192 with 1 and 64 replicas, where memory allows.
Timing uses CUDA events on CuPy's current stream around one ``checkerboard_sweeps`` call of many
sweeps (so the sublattice split/merge of the call is included but amortised); the first call,
which compiles the kernels, is not timed.

    python tools/bench/bench_local_gpu.py                       # defaults
    python tools/bench/bench_local_gpu.py --sizes 256 1024 --replicas 1 64 256 --methods grid block

Exits with status 1 and a message when no CUDA GPU (CuPy + numba-cuda + device) is present.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def need_gpu():
    try:
        import cupy
    except ImportError as exc:
        sys.exit(f"bench_local_gpu: CuPy is not installed ({exc}); this benchmark needs a CUDA GPU.")
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001 - any CUDA failure means: no GPU here
        sys.exit(f"bench_local_gpu: no usable CUDA GPU ({type(exc).__name__}: {exc}).")
    if n < 1:
        sys.exit("bench_local_gpu: no CUDA GPU found.")
    try:
        from isingcore.backends.cuda import local
    except ImportError as exc:
        sys.exit(f"bench_local_gpu: the Numba-CUDA kernels are not usable ({exc}).")
    return cupy, local


def check_against_cpu(cupy, local):
    """One quick bit-for-bit check against the Numba CPU kernel before timing anything."""
    from isingcore.backends.numba_cpu import local as cpu
    from isingcore.mcmc.local import flip_thresholds

    rs = np.random.default_rng(0)
    for shape in [(2, 128, 128), (1, 64, 36)]:
        s = np.where(rs.random(shape) < 0.5, 1, -1).astype(np.int8)
        thr = flip_thresholds("metropolis", 0.44, 1.0, 0.0)
        streams = np.arange(shape[0], dtype=np.uint32)
        want = cpu.checkerboard_sweeps(s.copy(), 6, step=3, thresholds=thr, seed=1, streams=streams)
        for method in ("grid", "block"):
            got = local.checkerboard_sweeps(cupy.asarray(s), 6, step=3, thresholds=cupy.asarray(thr), seed=1,
                                            streams=cupy.asarray(streams), method=method)
            if not np.array_equal(got.get(), want):
                sys.exit(f"bench_local_gpu: GPU result differs from the CPU kernel for {shape}, method={method}")


def bench_one(cupy, local, L, R, method, target_s, sweeps=None):
    from isingcore.mcmc.local import flip_thresholds

    free, _total = cupy.cuda.runtime.memGetInfo()
    need = 2 * R * L * L + (64 << 20)  # spins + two sublattices (R, L, L/2) + slack
    if need > free:
        return None, f"skipped: needs {need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free"
    rs = cupy.random.default_rng(1)
    spins = cupy.where(rs.random((R, L, L)) < 0.5, 1, -1).astype(cupy.int8)
    thr = cupy.asarray(flip_thresholds("metropolis", 0.4406867935097715, 1.0, 0.0))
    streams = cupy.arange(R, dtype=cupy.uint32)
    step = 0

    def run(n_sweeps):
        nonlocal spins, step
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        spins = local.checkerboard_sweeps(spins, 2 * n_sweeps, step=step, thresholds=thr, seed=7,
                                          streams=streams, method=method)
        stop.record()
        stop.synchronize()
        step += 2 * n_sweeps
        return cupy.cuda.get_elapsed_time(start, stop) * 1e-3  # seconds

    t0 = time.perf_counter()
    run(1)  # compile + warm up
    compile_s = time.perf_counter() - t0
    if sweeps is None:
        t = run(4)
        sweeps = int(max(4, min(100000, target_s / max(t / 4, 1e-9))))
    t = run(sweeps)
    rate = R * L * L * sweeps / (t * 1e9)
    return rate, f"{sweeps} sweeps in {t * 1e3:.1f} ms (first call incl. compile {compile_s:.2f} s)"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096, 8192])
    ap.add_argument("--replicas", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--methods", nargs="+", default=["auto"], choices=["auto", "grid", "block"])
    ap.add_argument("--seconds", type=float, default=1.0, help="target time per measurement")
    ap.add_argument("--sweeps", type=int, default=None, help="fixed number of sweeps per measurement")
    ap.add_argument("--no-check", action="store_true", help="skip the correctness check against the CPU kernel")
    args = ap.parse_args(argv)

    cupy, local = need_gpu()
    import numba_cuda

    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    print(f"device: {name}, {props['multiProcessorCount']} SMs; cupy {cupy.__version__}, "
          f"numba-cuda {numba_cuda.__version__}")
    if not args.no_check:
        check_against_cpu(cupy, local)
        print("check: GPU == CPU kernel (bit for bit)")
    print(f"{'L':>6} {'replicas':>8} {'method':>6} {'flips/ns':>10}  details")
    for L in args.sizes:
        for R in args.replicas:
            for method in args.methods:
                shown = local.choose_method(L, L, R) if method == "auto" else method
                rate, info = bench_one(cupy, local, L, R, method, args.seconds, args.sweeps)
                rate_s = f"{rate:10.1f}" if rate is not None else f"{'-':>10}"
                print(f"{L:>6} {R:>8} {shown:>6} {rate_s}  {info}", flush=True)
                cupy.get_default_memory_pool().free_all_blocks()


if __name__ == "__main__":
    main()
