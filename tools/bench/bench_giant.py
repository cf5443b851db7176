"""Giant lattices: tiled == untiled bit for bit, and the out-of-core 512 -> 41,472 run (wall time, peak RSS).

Two modes, results as JSON in ``tools/bench/results/``:

``identity``  (default 512 -> 4,608, two stages of the shipped ECMK b = 3 model, 25 refinement sweeps)
    runs the untiled :func:`isingcore.rg.upscale.generate` once and
    :func:`isingcore.rg.tiled.generate_tiled` once per ``--tiles`` value (giant-lattice file in a
    temporary directory), and compares every stage with ``np.array_equal``.

``project``  (``--out`` = the file of a ``giant`` run, ``--rows 2``)
    measures the *next* stage (124,416^2 from the stored 41,472^2) on its first ``--rows`` rows of
    tiles (``rows x 36`` tiles, read lazily from the file, written to a scratch giant-lattice file):
    seconds per tile and peak RSS at the real size; the stage's time is then seconds per tile x
    the stage's tiles (the sampled halo rows above and below are computed too, so this overestimates).

``analyse``  (``--out`` = the file of a ``giant`` run)
    the streaming analysis (:func:`isingcore.report_giant.giant_report`): energy per site, c10, c11,
    m with tile errors, G(r) for r = 1 .. ``--r-max`` from all axis pairs, S(k) from tiles; figures
    into ``--figures``; wall time and peak RSS.

``giant``  (default 512 -> 41,472, four stages, ``--tile 3456 --workers 2``)
    runs :func:`generate_tiled` into ``--out`` while a sampler thread records this process's resident
    set size (psutil, every 0.2 s) and ``ru_maxrss`` at the end; writes the per-stage wall times, the
    peak RSS, the file size and a projection to one more stage (124,416^2 from 41,472^2): the last
    stage's time per fine site times the new stage's sites, plus the measured earlier stages.

    python tools/bench/bench_giant.py identity [--tiles 768 960 1152 1536]
    python tools/bench/bench_giant.py identity --stages 4 --compare /tmp/giant_41472.h5   # untiled 41,472^2 vs the file
    python tools/bench/bench_giant.py giant --out /tmp/giant_41472.h5 [--tile 3456] [--workers 2]
    python tools/bench/bench_giant.py project --out /tmp/giant_41472.h5 [--rows 2]
    python tools/bench/bench_giant.py analyse --out /tmp/giant_41472.h5 --figures tools/bench/results/giant_41472

(Run it under ``/usr/bin/time -v`` as well for an independent peak-RSS reading.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=("identity", "giant", "project", "analyse"))
    ap.add_argument("--model", default="ecmk-b3-k9-mse")
    ap.add_argument("--seed-size", type=int, default=512)
    ap.add_argument("--stages", type=int, default=None, help="default: 2 (identity), 4 (giant)")
    ap.add_argument("--refine", type=int, default=25)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tiles", type=int, nargs="+", default=[768, 960, 1152, 1536])
    ap.add_argument("--tile", type=int, default=3456)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--sweeps-per-exchange", type=int, default=None)
    ap.add_argument("--out", default=None, help="giant mode: the giant-lattice file to write")
    ap.add_argument("--rows", type=int, default=2, help="project mode: tile rows of the next stage to compute")
    ap.add_argument("--r-max", type=int, default=10_000, help="analyse mode: G(r) for r = 1 .. r_max")
    ap.add_argument("--sk-tile", type=int, default=1024, help="analyse mode: tile of the averaged periodogram")
    ap.add_argument("--sk-max-tiles", type=int, default=256, help="analyse mode: tiles for S(k) (random choice)")
    ap.add_argument("--figures", default=None, help="analyse mode: directory for the figures and the Markdown page")
    ap.add_argument("--compare", default=None,
                    help="identity mode: compare the untiled result with the /spins of this giant-lattice file instead "
                         "of running the tiled path (e.g. the 41,472^2 file of a giant run, with --stages 4)")
    ap.add_argument("--json", default=None)
    return ap.parse_args(argv)


class RssSampler(threading.Thread):
    """Peak resident set size of this process, sampled every ``dt`` seconds (psutil)."""

    def __init__(self, dt=0.2):
        super().__init__(daemon=True)
        import psutil

        self.proc = psutil.Process()
        self.dt = dt
        self.peak = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.dt)


def machine():
    import numba

    return {"platform": platform.platform(), "python": sys.version.split()[0], "cpus": os.cpu_count(),
            "numba_threads": numba.config.NUMBA_NUM_THREADS}


def identity(args):
    import numpy as np

    from isingcore.giant import open_giant
    from isingcore.rg.models import load_model
    from isingcore.rg.tiled import generate_tiled
    from isingcore.rg.upscale import generate, seed_configurations, upscale

    stages = args.stages or 2
    model = load_model(args.model)
    sampler = RssSampler()
    sampler.start()
    t0 = time.perf_counter()
    res = generate(model, seed_size=args.seed_size, stages=stages, refine=args.refine, configs=1, seed=args.seed)
    t_untiled = time.perf_counter() - t0
    final = np.asarray(res.spins[0])
    if args.compare:
        with open_giant(args.compare) as g:
            same = g.shape == final.shape and all(
                np.array_equal(g[x0:x0 + g.tile, :], final[x0:x0 + g.tile]) for x0 in range(0, g.shape[0], g.tile))
            a = g.attrs
        sampler.stop.set()
        sampler.join()
        return {"mode": "identity-compare", "model": model.name, "seed_size": args.seed_size, "stages": stages,
                "refine": args.refine, "seed": args.seed, "L": final.shape[0], "untiled_seconds": t_untiled,
                "untiled_stage_seconds": [h["seconds"].get("total", h["seconds"].get("seed")) for h in res.history],
                "untiled_peak_rss_bytes_psutil": sampler.peak,
                "file": os.path.abspath(args.compare), "file_tile": int(a["tile"]), "file_seed": int(a["seed"]),
                "bit_identical_final": bool(same)}
    sampler.stop.set()
    # the intermediate stages of the untiled path, for a per-stage comparison
    seeds, _ = seed_configurations(args.seed_size, configs=1, seed=args.seed, beta=model.beta)
    inter = [seeds]
    for t in range(1, stages):
        inter.append(upscale(inter[-1], model, seed=args.seed, stage=t, refine=args.refine))
    out = {"mode": "identity", "model": model.name, "seed_size": args.seed_size, "stages": stages,
           "refine": args.refine, "seed": args.seed, "L": final.shape[0], "untiled_seconds": t_untiled, "cases": []}
    with tempfile.TemporaryDirectory() as d:
        for tile in args.tiles:
            path = os.path.join(d, f"t{tile}.h5")
            t0 = time.perf_counter()
            s = generate_tiled(model, seed_size=args.seed_size, stages=stages, out=path, tile=tile, refine=args.refine,
                               seed=args.seed, workers=args.workers, sweeps_per_exchange=args.sweeps_per_exchange)
            sec = time.perf_counter() - t0
            same = []
            with open_giant(path) as g:
                same.append(bool(np.array_equal(g[:, :], final)))
            for t in range(1, stages):
                with open_giant(path, f"stages/{t}") as g:
                    same.append(bool(np.array_equal(g[:, :], inter[t][0])))
            L = final.shape[0]
            case = {"tile": tile, "tiles_last_stage": (-(-L // tile)) ** 2, "uneven": L % tile != 0,
                    "bit_identical_final": same[0], "bit_identical_intermediate": same[1:], "seconds": sec,
                    "workers": args.workers}
            print(json.dumps(case), flush=True)
            out["cases"].append(case)
    out["all_identical"] = all(c["bit_identical_final"] and all(c["bit_identical_intermediate"]) for c in out["cases"])
    return out


def giant_run(args):
    from isingcore.rg.models import load_model
    from isingcore.rg.tiled import generate_tiled

    stages = args.stages or 4
    if not args.out:
        raise SystemExit("giant mode needs --out FILE")
    model = load_model(args.model)
    sampler = RssSampler()
    sampler.start()
    t0 = time.perf_counter()
    s = generate_tiled(model, seed_size=args.seed_size, stages=stages, out=args.out, tile=args.tile,
                       refine=args.refine, seed=args.seed, workers=args.workers, overwrite=True,
                       sweeps_per_exchange=args.sweeps_per_exchange, progress=True,
                       log=lambda line: print(line, file=sys.stderr, flush=True))
    wall = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    b = model.scale
    last = s["stages"][-1]
    per_site = last["seconds"] / float(last["L"]) ** 2
    L_next = last["L"] * b
    size = os.path.getsize(args.out)
    proj = {"L": L_next, "stages": stages + 1,
            "seconds": wall + per_site * float(L_next) ** 2,
            "method": "measured total wall time + (last stage's seconds per fine site) x (L*b)^2",
            "last_stage_ns_per_site": per_site * 1e9,
            "file_bytes": size + (size * b * b),
            "peak_rss_bytes": "as measured: bounded by tiles in flight, independent of L"}
    return {"mode": "giant", "model": model.name, "seed_size": args.seed_size, "stages": stages,
            "refine": args.refine, "seed": args.seed, "tile": args.tile, "workers": args.workers,
            "sweeps_per_exchange": args.sweeps_per_exchange, "L": last["L"], "wall_seconds": wall,
            "stage_seconds": [st["seconds"] for st in s["stages"]],
            "stage_m": [st["m"] for st in s["stages"]], "peak_rss_bytes_psutil": sampler.peak,
            "peak_rss_bytes_ru_maxrss": maxrss, "file": os.path.abspath(args.out), "file_bytes": size,
            "bits_per_spin": 8.0 * size / float(last["L"]) ** 2, "projection": proj}


def project(args):
    import dask
    import dask.array as da
    import numba

    from isingcore import giant
    from isingcore.rg.models import load_model
    from isingcore.rg.tiled import upscale_tiled

    if not args.out:
        raise SystemExit("project mode needs --out FILE (the file of a giant run)")
    sampler = RssSampler()
    sampler.start()
    with giant.open_giant(args.out) as lat:
        a = lat.attrs
        model = load_model(a["model"])
        b = model.scale
        stage = int(a["stages"]) + 1
        L = lat.shape[0] * b
        T = int(a["tile"])
        per_row = -(-L // T)
        rows = min(args.rows, per_row)
        threads = max(1, numba.config.NUMBA_NUM_THREADS // args.workers)
        fine = upscale_tiled(lat, model, seed=int(a["seed"]), stage=stage, tile=T, stream=int(a.get("stream", 0)),
                             refine=int(a["refine"]), threads_per_tile=threads)
        window = fine[0:rows * T, :]
        with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(args.out))) as d:
            with giant.create_file(os.path.join(d, "scratch.h5")) as f:
                ds = giant.create_lattice(f, "spins", (rows * T, L), tile=T)
                t0 = time.perf_counter()
                with dask.config.set(scheduler="threads", num_workers=args.workers):
                    da.store(window, giant.PackedTarget(ds), lock=False)
                sec = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    tiles = rows * per_row
    n_tiles = per_row ** 2
    return {"mode": "project", "from": os.path.abspath(args.out), "stage": stage, "L": L, "tile": T,
            "workers": args.workers, "rows_of_tiles": rows, "tiles_computed": tiles, "seconds": sec,
            "seconds_per_tile": sec / tiles, "stage_tiles": n_tiles, "projected_stage_seconds": sec / tiles * n_tiles,
            "peak_rss_bytes_psutil": sampler.peak,
            "peak_rss_bytes_ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def analyse(args):
    from isingcore.report_giant import giant_report

    if not args.out:
        raise SystemExit("analyse mode needs --out FILE (the file of a giant run)")
    figures = args.figures or os.path.join(HERE, "results", "giant")
    sampler = RssSampler()
    sampler.start()
    t0 = time.perf_counter()
    res = giant_report(args.out, figures, r_max=args.r_max, sk_tile=args.sk_tile, sk_max_tiles=args.sk_max_tiles,
                       progress=True)
    wall = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    G = res.pop("G")
    return {"mode": "analyse", "wall_seconds": wall, "peak_rss_bytes_psutil": sampler.peak,
            "peak_rss_bytes_ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "figures": os.path.relpath(figures, os.path.dirname(HERE)), **res,
            "G_r_1_to_10": [{"r": r, "G": G["mean"][r], "error": G["error"][r]} for r in range(1, min(11, len(G["mean"])))]}


def main(argv=None):
    args = parse_args(argv)
    res = {"identity": identity, "giant": giant_run, "project": project, "analyse": analyse}[args.mode](args)
    res["machine"] = machine()
    res["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    text = json.dumps(res, indent=2)
    print(text)
    name = args.mode + ("_compare" if args.mode == "identity" and args.compare else "")
    path = args.json or os.path.join(HERE, "results", f"bench_giant_{name}.json")
    with open(path, "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
