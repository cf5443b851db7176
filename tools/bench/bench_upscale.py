"""Benchmark: inverse-RG generation, wall time per stage and peak resident memory per fine spin.

Runs :func:`isingcore.rg.upscale.generate` (Wolff seeds at ``--seed-size``, ``--stages`` stages,
``--refine`` Metropolis sweeps per stage, one configuration by default) in a *fresh subprocess*
and reads its peak resident set size with ``resource.getrusage(RUSAGE_SELF).ru_maxrss``, so the
number includes the interpreter, NumPy, Numba, onnxruntime and the compiled kernels. Before the
timed run the child warms up (compiles the kernels) on a tiny lattice; the RSS after the warm-up
is reported as the baseline. The peak is divided by the number of fine spins of the last stage.

Without ``--model`` a tiny test model is built with ``onnx.helper`` (a random 3x3 coarse
convolution, b = 3, ``mean`` output, A = 0.95; ``--scale 2`` gives a b = 2 logit model): the
timing is then that of the pipeline, not of a trained model.

    python tools/bench/bench_upscale.py [--seed-size 512] [--stages 3] [--refine 25] [--backend numpy|cupy]
                                        [--model PATH] [--band-rows ROWS] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed-size", type=int, default=512)
    ap.add_argument("--stages", type=int, default=3)
    ap.add_argument("--refine", type=int, default=25)
    ap.add_argument("--configs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--backend", default="numpy", choices=("numpy", "cupy"))
    ap.add_argument("--model", default=None, help="an .onnx model (default: a tiny 3x3 test model built here)")
    ap.add_argument("--scale", type=int, default=3, choices=(2, 3), help="scale of the built test model")
    ap.add_argument("--band-rows", type=int, default=None, help="coarse rows per onnxruntime call (default: automatic)")
    ap.add_argument("--thermalize", type=int, default=None, help="Wolff sweeps for the seeds (default: 20 tau)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def build_test_model(path: str, scale: int) -> str:
    """A tiny upscaler-v1 model: Conv(1 -> b*b, 3x3, no padding, no bias) + DepthToSpace(b, CRD)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rs = np.random.default_rng(0)
    weight = (rs.normal(size=(scale * scale, 1, 3, 3)) * 0.3).astype(np.float32)
    nodes = [helper.make_node("Conv", ["coarse", "weight"], ["sub"], kernel_shape=[3, 3], pads=[0, 0, 0, 0]),
             helper.make_node("DepthToSpace", ["sub"], ["field"], blocksize=scale, mode="CRD")]
    graph = helper.make_graph(
        nodes, "bench", [helper.make_tensor_value_info("coarse", TensorProto.FLOAT, ["N", 1, "H", "W"])],
        [helper.make_tensor_value_info("field", TensorProto.FLOAT, ["N", 1, "bH", "bW"])],
        initializer=[numpy_helper.from_array(weight, "weight")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 10
    kind = "mean" if scale == 3 else "logit"
    helper.set_model_props(m, {"isingcore.format": "upscaler-v1", "family": "ecmk" if scale == 3 else "minimal",
                               "name": f"bench-b{scale}-k3", "scale": str(scale), "halo": "1", "kernel_size": "3",
                               "output_kind": kind, "clamp": "0.95" if kind == "mean" else "",
                               "beta": "0.44068679350977151", "trained_on": "none (benchmark)"})
    onnx.save(m, path)
    return path


def child(args) -> dict:
    """Runs in the subprocess: warm-up, then the timed pipeline; returns the measurements."""
    import resource

    import numpy as np

    from isingcore.rg.models import load_model
    from isingcore.rg.upscale import generate

    def rss_bytes():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB

    model = load_model(args.child)
    generate(model, seed_size=min(args.seed_size, 64), stages=1, refine=1, configs=1, seed=0, backend=args.backend)
    baseline = rss_bytes()
    t0 = time.perf_counter()
    res = generate(model, seed_size=args.seed_size, stages=args.stages, refine=args.refine, configs=args.configs,
                   seed=args.seed, backend=args.backend, band_rows=args.band_rows, thermalize=args.thermalize)
    wall = time.perf_counter() - t0
    peak = rss_bytes()
    L = res.history[-1]["L"]
    fine_spins = args.configs * L * L
    out = {
        "model": model.name, "scale": model.scale, "backend": args.backend, "seed_size": args.seed_size,
        "stages": args.stages, "refine": args.refine, "configs": args.configs, "final_L": L,
        "wolff_thermalization": res.thermalization, "wall_s": wall,
        "peak_rss_bytes": peak, "baseline_rss_bytes": baseline, "fine_spins": fine_spins,
        "peak_rss_bytes_per_fine_spin": peak / fine_spins,
        "stages_detail": [{"stage": h["stage"], "L": h["L"], "seconds": h["seconds"],
                           "c10": float(np.mean(h["c10"])), "c11": float(np.mean(h["c11"])),
                           "abs_m": float(np.mean(h["abs_m"])), "raw_c10": float(np.mean(h["raw_c10"]))}
                          for h in res.history],
    }
    if args.backend == "cupy":
        import cupy

        out["gpu_pool_bytes"] = int(cupy.get_default_memory_pool().total_bytes())
    try:
        import numba

        out["numba_threads"] = numba.get_num_threads()
    except Exception:  # noqa: BLE001
        pass
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    with tempfile.TemporaryDirectory() as d:
        model = args.model or build_test_model(os.path.join(d, "bench.onnx"), args.scale)
        cmd = [sys.executable, os.path.abspath(__file__), "--child", model, "--seed-size", str(args.seed_size),
               "--stages", str(args.stages), "--refine", str(args.refine), "--configs", str(args.configs),
               "--seed", str(args.seed), "--backend", args.backend]
        if args.band_rows is not None:
            cmd += ["--band-rows", str(args.band_rows)]
        if args.thermalize is not None:
            cmd += ["--thermalize", str(args.thermalize)]
        p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stderr)
        return p.returncode
    res = json.loads(p.stdout.strip().splitlines()[-1])
    res["machine"] = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}
    print(f"{res['model']} on {res['backend']}: L0={res['seed_size']} -> {res['final_L']} in {res['stages']} stages, "
          f"refine {res['refine']}, {res['configs']} configuration(s), Numba threads {res.get('numba_threads', '?')}")
    print(f"{'stage':>5} {'L':>7} {'sample s':>9} {'refine s':>9} {'stats s':>8} {'total s':>8} {'c10 raw':>8} "
          f"{'c10':>8} {'c11':>8} {'|m|':>8}")
    for h in res["stages_detail"]:
        s = h["seconds"]
        if h["stage"] == 0:
            print(f"{0:>5} {h['L']:>7} {'(Wolff seeds, ' + str(res['wolff_thermalization']) + ' sweeps)':>37} "
                  f"{s['seed']:>8.2f} {h['raw_c10']:>8.5f} {h['c10']:>8.5f} {h['c11']:>8.5f} {h['abs_m']:>8.5f}")
            continue
        print(f"{h['stage']:>5} {h['L']:>7} {s['sample']:>9.2f} {s['refine']:>9.2f} {s['statistics']:>8.2f} "
              f"{s['total']:>8.2f} {h['raw_c10']:>8.5f} {h['c10']:>8.5f} {h['c11']:>8.5f} {h['abs_m']:>8.5f}")
    mib = 1 << 20
    print(f"wall {res['wall_s']:.2f} s; peak RSS {res['peak_rss_bytes'] / mib:.0f} MiB "
          f"(baseline after warm-up {res['baseline_rss_bytes'] / mib:.0f} MiB) = "
          f"{res['peak_rss_bytes_per_fine_spin']:.3f} bytes per fine spin ({res['fine_spins']:,} spins)")
    if "gpu_pool_bytes" in res:
        print(f"CuPy memory pool: {res['gpu_pool_bytes'] / mib:.0f} MiB")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
