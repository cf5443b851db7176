"""The ``isingcore`` command line.

Subcommands::

    isingcore run                      # the main job on its defaults: sample, write HDF5, analyse
    isingcore sample --size L --beta B --algorithm A --configs N --spacing K --thermalize T \\
                     --seed S --backend numpy --out FILE.h5 [--chains C] [--resume]
                     [--workers N | --scheduler ADDRESS]      # chains over Dask workers (isingcore.distributed)
    isingcore analyze FILE.h5 [--json]
    isingcore info
    isingcore models [--dir DIR] [--json]         # the shipped inverse-RG upscaling models
    isingcore upscale --model NAME|PATH --seed-size 512 --stages 3 --refine 25 --configs N --seed S \
                      --out FILE.h5 [--png FILE.png] [--backend numpy|cupy] [--band-rows R] [--progress]
    isingcore upscale ... --tile T [--workers N]  # tiled, out of core (isingcore.rg.tiled): a giant-lattice file
    isingcore upscale ... --tile T --workers N --processes | --scheduler ADDRESS  # tiles on a Dask cluster
    isingcore upscale ... --tile T --workers N --backend cupy  # one GPU per worker (dask_cuda.LocalCUDACluster)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time


def _beta(text: str):
    from .simulation import check_beta

    try:
        return check_beta(text if text.strip().lower() in ("critical", "c", "kc", "beta_c") else float(text))
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _int_at_least(minimum: int, what: str):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {text!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {v}")
        return v

    return parse


_positive_int = _int_at_least(1, "positive")
_nonneg_int = _int_at_least(0, "non-negative")


def _size(text: str):
    parts = text.lower().replace("x", ",").split(",")
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected L or LxxLy, got {text!r}") from None
    if len(dims) == 1:
        return dims[0]
    if len(dims) == 2:
        return tuple(dims)
    raise argparse.ArgumentTypeError(f"expected L or LxxLy, got {text!r}")


def _add_sample_args(p: argparse.ArgumentParser, defaults: dict) -> None:
    from .simulation import ALGORITHMS

    p.add_argument("--size", type=_size, default=None, help=f"linear size L (or LxxLy), even (default {defaults['size']})")
    p.add_argument("--beta", type=_beta, default=None,
                   help=f"inverse temperature, or 'critical' (default {defaults['beta']})")
    p.add_argument("--algorithm", choices=ALGORITHMS + ("multilevel",), default=defaults["algorithm"],
                   help="Markov chain algorithm, or 'multilevel': independent draws with exact log q and log w "
                        "(MLMC-HB, or a trained sampler with --model; L = 2**n)")
    p.add_argument("--model", default=None,
                   help="--algorithm multilevel: a trained multilevel model (isingcore models --multilevel) or its "
                        "directory; fixes --size and --beta (default: MLMC-HB with Maris-Kadanoff couplings)")
    p.add_argument("--configs", type=_positive_int, default=defaults["configs"], help="configurations per chain")
    p.add_argument("--spacing", type=_positive_int, default=defaults["spacing"],
                   help="sweeps between stored configurations (default: about tau_int/2 at K_c for the algorithm and size)")
    p.add_argument("--thermalize", type=_nonneg_int, default=defaults["thermalize"],
                   help="sweeps before the first configuration (default: 20 tau_int at K_c for the algorithm and size)")
    p.add_argument("--seed", type=_nonneg_int, default=defaults["seed"])
    p.add_argument("--chains", type=_positive_int, default=1, help="independent chains (RNG streams 0..C-1), run as one batch")
    p.add_argument("--backend", default="numpy", help="numpy or cupy")
    p.add_argument("--J", type=float, default=1.0, help="coupling J")
    p.add_argument("--h", type=float, default=0.0, help="field h")
    p.add_argument("--out", default=defaults["out"], help="output HDF5 file")


SAMPLE_DEFAULTS = dict(size=64, beta="critical", algorithm="wolff", configs=1000, spacing=None, thermalize=None,
                       seed=1, out="ensemble.h5")


def fill_schedule(args) -> None:
    """Default thermalisation and spacing from :func:`isingcore.simulation.tau_guess`."""
    from .simulation import tau_guess

    L = max(args.size) if isinstance(args.size, tuple) else args.size
    tau = tau_guess(args.algorithm, L)
    if args.thermalize is None:
        args.thermalize = int(math.ceil(20 * tau))
    if args.spacing is None:
        args.spacing = max(1, int(round(tau / 2)))


def _add_upscale_args(p: argparse.ArgumentParser, defaults: dict) -> None:
    """Options of ``isingcore upscale`` (and of ``run``, with other defaults)."""
    p.add_argument("--model", required=defaults["model"] is None, default=defaults["model"], help="name of a shipped model (isingcore models) or path to an .onnx file")
    p.add_argument("--seed-size", type=_positive_int, default=defaults["seed_size"], help="linear size L0 of the seed lattices (1: one spin)")
    p.add_argument("--stages", type=_positive_int, default=3, help="number of upscaling stages (final L = L0 * b**stages)")
    p.add_argument("--refine", type=_nonneg_int, default=25, help="checkerboard Metropolis sweeps after each stage")
    p.add_argument("--configs", type=_positive_int, default=defaults["configs"], help="number of configurations (RNG streams 0..N-1)")
    p.add_argument("--seed", type=_nonneg_int, default=1)
    p.add_argument("--thermalize", type=_nonneg_int, default=None,
                   help="Wolff sweeps for the seeds (default: 20 tau_int at K_c for L0, from an ordered start)")
    p.add_argument("--band-rows", type=_positive_int, default=None,
                   help="coarse rows per onnxruntime call on the untiled path (default: automatic)")
    p.add_argument("--tile", type=_positive_int, default=None, metavar="T",
                   help="tiled out-of-core path (Dask): fine tiles of T x T sites (a multiple of 8 and of the model's "
                        "scale b); --out is then a giant-lattice file (docs/FORMAT.md section 10) with one configuration")
    p.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                   help="tiled path: N Dask threads computing tiles at once (default 1; alone it implies --tile 3456); "
                        "with --processes N worker processes of a local Dask cluster, with --backend cupy one worker "
                        "process per GPU (dask_cuda.LocalCUDACluster, the cuda extra)")
    p.add_argument("--processes", action="store_true",
                   help="tiled path: --workers N are the processes of a local dask.distributed cluster, not threads")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="tiled path: compute the tiles on the workers of an existing Dask cluster (they must see --out's "
                        "directory); implies --tile 3456 unless given")
    p.add_argument("--sweeps-per-exchange", type=_positive_int, default=None, metavar="K",
                   help="tiled path: refinement sweeps between halo exchanges, halo 2K+1 (default: all that fit a tile)")
    p.add_argument("--backend", default="numpy", help="numpy or cupy")
    p.add_argument("--out", required=defaults["out"] is None, default=defaults["out"], help="output HDF5 ensemble (one configuration per seed, final size)")
    p.add_argument("--png", default=defaults["png"], help="also draw the first configuration into this PNG (needs matplotlib)")
    p.add_argument("--overwrite", action="store_true", default=defaults["overwrite"], help="replace an existing output file")
    p.add_argument("--progress", choices=("auto", "on", "off"), default="auto", help="progress bars (auto: on a terminal)")
    p.add_argument("--json", action="store_true", help="print the per-stage statistics as JSON instead of the table")


UPSCALE_DEFAULTS = dict(model=None, seed_size=512, configs=1, out=None, png=None, overwrite=False)
#: ``isingcore run``: the README's main job: seed 512^2, 3 stages of the shipped ECMK (the seed paper's loss,
#: gamma = 5000, trained by continuation from gamma = 50; models_onnx/ecmk-b3-k9.md), table and PNG.
RUN_UPSCALE_DEFAULTS = dict(model="ecmk-b3-k9", seed_size=512, configs=1, out="isingcore_run.h5",
                            png="isingcore_run.png", overwrite=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="isingcore", description="2D Ising model: sampling, ensembles and analysis")
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("run", help="the main job on its defaults: inverse-RG upscaling of a critical Wolff seed "
                                   "(512^2 -> 13,824^2 with the shipped ECMK), HDF5 + PNG + per-stage table")
    _add_upscale_args(p, RUN_UPSCALE_DEFAULTS)

    p = sub.add_parser("sample", help="sample an ensemble into an HDF5 file")
    _add_sample_args(p, SAMPLE_DEFAULTS)
    p.add_argument("--resume", action="store_true", help="continue an interrupted run of the same file and parameters")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--progress", choices=("auto", "on", "off"), default="auto")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--workers", type=_positive_int, default=None,
                   help="split the chains over a local Dask cluster of N single-threaded worker processes "
                        "(N <= --chains; one shard file per worker, joined into --out; needs isingcore[dist])")
    g.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="split the chains over the workers of an existing Dask cluster (min(workers, chains) shards)")

    p = sub.add_parser("analyze", aliases=["analyse"], help="observables with errors and exact values")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    p.add_argument("--mcrg", action="store_true", help="also Swendsen's MCRG exponents y_t, y_h (2x2 majority rule)")

    sub.add_parser("info", help="versions, backends, devices and usable onnxruntime providers")

    p = sub.add_parser("report", help="physics report (Markdown + HTML with PNG figures): is this critical Ising?")
    p.add_argument("file")
    p.add_argument("--reference", default=None, help="a reference ensemble (e.g. cluster MC at the same size)")
    p.add_argument("--out", default=None, help="output directory (default: FILE without .h5, plus _report)")
    p.add_argument("--max-configs", type=_positive_int, default=200,
                   help="configurations read for the spatial estimators (G(r), S(k))")

    p = sub.add_parser("models", help="list the shipped inverse-RG upscaling models")
    p.add_argument("--dir", default=None, help="list the .onnx models of this directory instead of the shipped ones")
    p.add_argument("--multilevel", action="store_true",
                   help="list the multilevel samplers (isingcore sample --algorithm multilevel --model NAME) instead")
    p.add_argument("--json", action="store_true", help="one JSON list instead of the table")

    p = sub.add_parser("upscale", help="inverse-RG generation: Wolff seeds, then upscaling stages with an ONNX model")
    _add_upscale_args(p, UPSCALE_DEFAULTS)
    return parser


def _progress_enabled(mode: str) -> bool:
    return mode == "on" or (mode == "auto" and sys.stderr.isatty())


def sample(args, *, overwrite: bool, resume: bool, progress: bool, log=print) -> str:
    """Run ``isingcore sample`` (also used by ``run``). Returns the output path."""
    import numpy as np

    if args.algorithm == "multilevel" and getattr(args, "model", None) is not None:
        return _sample_multilevel(args, overwrite=overwrite, resume=resume, progress=progress, log=log)
    if args.size is None:
        args.size = SAMPLE_DEFAULTS["size"]
    if args.beta is None:
        args.beta = _beta(SAMPLE_DEFAULTS["beta"])
    if args.algorithm == "multilevel":
        return _sample_multilevel(args, overwrite=overwrite, resume=resume, progress=progress, log=log)
    if getattr(args, "model", None) is not None:
        raise ValueError("--model applies to --algorithm multilevel only")
    fill_schedule(args)
    if getattr(args, "workers", None) is not None or getattr(args, "scheduler", None) is not None:
        from .distributed import sample_distributed

        return sample_distributed(args, overwrite=overwrite, resume=resume, progress=progress, log=log)
    from . import io as iio
    from ._array import to_numpy
    from .simulation import Simulation

    sim_kw = dict(size=args.size, beta=args.beta, algorithm=args.algorithm, seed=args.seed, backend=args.backend,
                  replicas=args.chains, J=args.J, h=args.h)
    probe = Simulation(**{**sim_kw, "start": "cold"})  # validates every parameter before any file is touched
    attrs = dict(algorithm=args.algorithm, beta=probe.beta, J=probe.J, h=probe.h, Lx=probe.Lx, Ly=probe.Ly,
                 seed=args.seed, thermalization=args.thermalize, spacing=args.spacing, backend=args.backend,
                 extra=dict(chains=args.chains, configs_per_chain=args.configs, kernel=probe.kernel,
                            command=" ".join(sys.argv[1:]) or "isingcore"))
    names = ["energy", "magnetization", "c10x", "c10y", "c11"]
    if resume and os.path.exists(args.out):
        writer = iio.EnsembleWriter.resume(args.out)
        stored = dict(writer.attrs)
        stored.update(stored.get("extra") or {})
        want = {**attrs, **attrs["extra"]}
        for key in ("algorithm", "beta", "J", "h", "Lx", "Ly", "seed", "thermalization", "spacing", "chains"):
            if key in stored and stored[key] != want[key]:
                writer.close()
                raise SystemExit(f"isingcore sample --resume: {args.out} was written with {key}={stored[key]!r}, "
                                 f"not {want[key]!r}; use the same parameters or another --out")
        last = writer.last_state()
    else:
        if os.path.exists(args.out) and not overwrite:
            raise SystemExit(f"isingcore sample: {args.out} exists; pass --resume to continue it or --overwrite to replace it")
        writer = iio.EnsembleWriter.create(args.out, attrs, names, overwrite=True)
        last = {}
    with writer:
        done = {c: last[c][2] for c in last}
        counts = {done.get(c, 0) for c in range(args.chains)}
        if len(counts) != 1:
            raise SystemExit(f"isingcore sample --resume: chains of {args.out} hold different numbers of configurations "
                             f"({sorted(counts)}); the file was not written by one batched run")
        n_done = counts.pop()
        if n_done:
            spins = np.stack([last[c][0] for c in range(args.chains)])
            steps = np.array([last[c][1] for c in range(args.chains)], dtype=np.int64)
            sim = Simulation(**sim_kw, start=spins, step=steps)
            log(f"resuming {args.out}: {n_done} configurations per chain already stored, step {sim.step}")
        else:
            sim = Simulation(**sim_kw)
            if args.thermalize:
                log(f"thermalizing {args.thermalize} sweeps ({args.algorithm}, L={probe.Lx}x{probe.Ly}, "
                    f"beta={probe.beta:.10g}, {args.chains} chain(s))")
                sim.sweep(args.thermalize, progress=progress)
        remaining = args.configs - n_done
        bar = None
        if progress and remaining > 0:
            from tqdm.auto import tqdm

            bar = tqdm(total=args.configs, initial=n_done, unit="config", desc="sampling")
        chains = np.arange(args.chains, dtype=np.int32)
        t0 = time.perf_counter()
        for _ in range(max(remaining, 0)):
            sim.sweep(args.spacing, progress=False)
            obs = {k: to_numpy(v) for k, v in sim.measure().items() if k in names}
            writer.append(sim.spins, obs, chain=chains, step=sim.steps.copy())
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        dt = time.perf_counter() - t0
    if remaining > 0:
        sweeps = remaining * args.spacing * args.chains
        log(f"wrote {remaining * args.chains} configurations to {args.out} in {dt:.1f} s "
            f"({sweeps * probe.n_sites / max(dt, 1e-9) / 1e9:.3f} spin updates per ns including measurements)")
    return args.out


def _sample_multilevel(args, *, overwrite: bool, resume: bool, progress: bool, log=print) -> str:
    """``isingcore sample --algorithm multilevel``: independent draws with ``log_q`` and ``log_w``."""
    from .multilevel import MultilevelSampler
    from .multilevel.ensemble import sample_ensemble

    if getattr(args, "workers", None) is not None or getattr(args, "scheduler", None) is not None:
        raise ValueError("--algorithm multilevel draws independent configurations in one process; "
                         "--workers/--scheduler are for Markov chains")
    if args.chains != 1:
        raise ValueError("--chains: multilevel draws are independent; use --configs for their number")
    if args.J != 1.0 or args.h != 0.0:
        raise ValueError("--algorithm multilevel supports J = 1 and h = 0 only")
    if args.model is not None:
        sampler = MultilevelSampler(model=args.model, backend=args.backend)
        if (args.size is not None and args.size != sampler.size) or (
                args.beta is not None and abs(args.beta - sampler.beta) > 1e-12):
            raise ValueError(f"--model {args.model} is trained for L={sampler.size}, beta={sampler.beta:.12g}; "
                             "leave --size/--beta out or give those values")
    else:
        if isinstance(args.size, tuple):
            raise ValueError("--size: multilevel sampling needs a square L x L torus")
        sampler = MultilevelSampler(args.size, args.beta, backend=args.backend)
    log(f"multilevel sampling: {sampler}")
    return sample_ensemble(args.out, sampler, args.configs, seed=args.seed, overwrite=overwrite, resume=resume,
                           progress=progress, log=log)


def cmd_info() -> int:
    import platform

    from . import __version__
    from ._array import cupy_status

    def ver(mod):
        try:
            m = __import__(mod)
            return getattr(m, "__version__", "installed")
        except Exception as exc:  # noqa: BLE001 - report anything
            return f"not available ({type(exc).__name__})"

    print(f"isingcore {__version__}  (Python {platform.python_version()}, {platform.platform()})")
    for mod in ("numpy", "numba", "h5py", "array_api_compat", "onnxruntime", "tqdm", "cupy", "dask", "torch", "matplotlib"):
        print(f"  {mod:<18}{ver(mod)}")
    print("backends:")
    print("  numpy             usable (fused kernels: Numba CPU, threads: %s)" % _numba_threads())
    ok, why = cupy_status()
    print(f"  cupy              {'usable' if ok else 'not usable'}: {why}")
    try:
        from numba import cuda

        cuda_ok = cuda.is_available()
    except Exception:  # noqa: BLE001
        cuda_ok = False
    print(f"  numba-cuda        {'CUDA device usable' if cuda_ok else 'no usable CUDA device'}")
    from .onnx_runtime import usable_providers

    prov, note = usable_providers()
    print(f"onnxruntime providers actually usable: {', '.join(prov) if prov else 'none'}{note}")
    return 0


def cmd_models(args) -> int:
    """``isingcore models``: the registry as a table (or JSON)."""
    if args.multilevel:
        return _cmd_multilevel_models(args)
    from .rg.models import list_models, models_directory

    directory = args.dir or models_directory()
    if args.dir and not os.path.isdir(args.dir):
        print(f"isingcore models: no such directory: {args.dir}", file=sys.stderr)
        return 2
    models = list_models(directory)
    if args.json:
        print(json.dumps([{k: v for k, v in m.items() if k != "metadata"} for m in models], default=str))
        return 0
    if not models:
        print(f"no upscaling models in {directory} (shipped models are added as models_onnx/*.onnx)")
        return 0
    cols = ("name", "family", "scale", "halo", "output_kind", "beta", "parameters", "loss", "train_size")
    rows = []
    for m in models:
        if "error" in m:
            rows.append((m["name"], "UNUSABLE: " + m["error"]))
            continue
        rows.append(tuple("" if m.get(c) is None else (f"{m[c]:.10g}" if isinstance(m[c], float) else str(m[c]))
                          for c in cols))
    widths = [max(len(c), *(len(r[i]) for r in rows if len(r) == len(cols))) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)) if len(r) == len(cols) else "  ".join(r))
    print(f"({len(models)} model(s) in {directory})")
    return 0


def _cmd_multilevel_models(args) -> int:
    from .multilevel.models import list_models, models_directory

    directory = args.dir or models_directory()
    models = list_models(directory)
    if args.json:
        print(json.dumps(models, default=str))
        return 0
    if not models:
        print(f"no multilevel models in {directory}")
        return 0
    print(f"{'name':<22}{'L':>5}{'beta':>14}{'levels':>8}  {'learned levels':<22}{'ESS/N':>10}")
    for m in models:
        if "error" in m:
            print(f"{m['name']:<22}UNUSABLE: {m['error']}")
            continue
        ess = "" if m.get("ess") is None else f"{m['ess']:.4g}"
        learned = ",".join(str(i) for i in m["learned_levels"]) or "none (heat bath)"
        print(f"{m['name']:<22}{m['size']:>5}{m['beta']:>14.10g}{m['levels']:>8}  {learned:<22}{ess:>10}")
    print(f"({len(models)} model(s) in {directory})")
    return 0


def _cmd_upscale_tiled(args) -> int:
    """``isingcore upscale --tile T [--workers N]``: one giant configuration, tile by tile, into a giant-lattice file."""
    from .giant import open_giant
    from .measure.streaming import lattice_observables
    from .rg.models import load_model
    from .rg.tiled import generate_tiled

    if args.configs != 1:
        raise SystemExit(f"isingcore upscale: the tiled path (--tile/--workers) makes one configuration; got --configs "
                         f"{args.configs}")
    if args.backend not in ("numpy", "cupy"):
        raise SystemExit(f"isingcore upscale: the tiled path runs on --backend numpy or cupy; got --backend {args.backend}")
    if args.workers is not None and args.scheduler is not None:
        raise SystemExit("isingcore upscale: --workers and --scheduler exclude each other (--workers starts a local "
                         "cluster or threads)")
    if args.processes and args.workers is None:
        raise SystemExit("isingcore upscale: --processes needs --workers N (the number of worker processes)")
    if args.band_rows is not None:
        raise SystemExit("isingcore upscale: --band-rows belongs to the untiled path; drop it with --tile/--workers")
    model = load_model(args.model)
    tile = 3456 if args.tile is None else args.tile
    progress = _progress_enabled(args.progress)
    log = (lambda line: print(line, file=sys.stderr, flush=True))
    # where the tiles run: threads here (default; --backend cupy without --workers: the GPU of this process), or a
    # cluster: --scheduler, --workers N --processes (LocalCluster), --workers N --backend cupy (LocalCUDACluster)
    distributed = args.scheduler is not None or (args.workers is not None and (args.processes or args.backend == "cupy"))
    client = cluster = None
    where = f"{args.workers or 1} thread(s)"
    try:
        if distributed:
            from .distributed import cluster_client, local_cluster_kind

            kind = local_cluster_kind(args.workers, args.scheduler, args.backend)
            client, cluster = cluster_client(args.workers, args.scheduler, backend=args.backend)
            where = f"scheduler {args.scheduler}" if kind is None else f"{kind} of {args.workers} process(es)"
        import numba

        n_workers = args.workers or (len(client.scheduler_info(n_workers=-1)["workers"]) if client else 1)
        tpt = max(1, numba.config.NUMBA_NUM_THREADS // n_workers) if cluster is not None else None
        summary = generate_tiled(model, seed_size=args.seed_size, stages=args.stages, out=args.out, tile=tile,
                                 refine=args.refine, seed=args.seed, workers=n_workers,
                                 sweeps_per_exchange=args.sweeps_per_exchange, thermalize=args.thermalize,
                                 overwrite=True, progress=progress, log=log, client=client, threads_per_tile=tpt,
                                 backend=args.backend,
                                 extra_attrs={"command": " ".join(sys.argv[1:]) or "isingcore upscale"})
    except ValueError as exc:
        raise SystemExit(f"isingcore upscale: {exc}") from None
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    with open_giant(args.out) as lat:
        obs = lattice_observables(lat, progress=progress)
        L = lat.shape[0]
        if args.png:
            from .report import figure_configuration

            w = min(L, 4096)
            figure_configuration(lat[0:w, 0:w], args.png,
                                 f"{model.name}: L0={args.seed_size} -> L={L} (top-left {w}^2), seed {args.seed}")
    summary["final"] = {k: obs[k].as_dict() for k in ("energy", "magnetization", "c10", "c11")}
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"model {model.name} (scale {model.scale}, {model.output_kind}, beta={model.beta:.10g}); seed: "
          f"{'wolff' if args.seed_size > 1 else 'single spin'} at L0={args.seed_size}; tiles of {tile}, "
          f"{where}; refine {args.refine}")
    print(f"{'stage':>5} {'L':>7} {'tiles':>6} {'m':>10} {'s':>9}")
    for st in summary["stages"]:
        print(f"{st['stage']:>5} {st['L']:>7} {st.get('tiles', 1):>6} {st['m']:>+10.6f} {st['seconds']:>9.1f}")
    print(f"final {L}x{L}: e = {obs['energy']}  c10 = {obs['c10']}  c11 = {obs['c11']}  m = {obs['magnetization']}  "
          f"(errors over {obs['energy'].n_tiles} tiles of {obs['tile']}); critical point, L -> infinity: "
          f"c10 = 1/sqrt(2) = 0.707107, c11 = 2/pi = 0.636620")
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 2**20:.1f} MiB) in {summary['seconds']:.1f} s")
    return 0


def cmd_upscale(args) -> int:
    """``isingcore upscale``: generate, write the ensemble with the stage history, print the table."""
    from . import io as iio
    from ._array import to_numpy
    from .rg.models import load_model
    from .rg.upscale import format_stage_table, generate

    if os.path.exists(args.out) and not args.overwrite:
        raise SystemExit(f"isingcore upscale: {args.out} exists; pass --overwrite to replace it")
    if args.tile is not None or args.workers is not None or args.scheduler is not None:
        return _cmd_upscale_tiled(args)
    if args.processes:
        raise SystemExit("isingcore upscale: --processes belongs to the tiled path; add --tile T --workers N")
    if args.sweeps_per_exchange is not None:
        raise SystemExit("isingcore upscale: --sweeps-per-exchange belongs to the tiled path; add --tile T")
    model = load_model(args.model)
    log = (lambda *a, **k: print(*a, file=sys.stderr, **k))
    progress = _progress_enabled(args.progress)
    res = generate(model, seed_size=args.seed_size, stages=args.stages, refine=args.refine, configs=args.configs,
                   seed=args.seed, backend=args.backend, progress=progress, band_rows=args.band_rows,
                   thermalize=args.thermalize, log=log if progress else None)
    L = res.history[-1]["L"]
    final = res.history[-1]
    summary = res.summary()
    attrs = dict(algorithm="irg", beta=model.beta, J=1.0, h=0.0, Lx=L, Ly=L, seed=args.seed,
                 thermalization=res.thermalization, spacing=0, backend=args.backend,
                 extra=dict(model=model.name, model_path=model.path, model_metadata=dict(model.metadata),
                            seed_size=args.seed_size, seed_algorithm=res.seed_algorithm, stages=args.stages,
                            refine=args.refine, configs=args.configs, scale=model.scale,
                            sizes=[h["L"] for h in res.history], stage_history=summary,
                            step="the number of stages (each configuration is one chain)",
                            command=" ".join(sys.argv[1:]) or "isingcore upscale"))
    names = ["energy", "magnetization", "c10x", "c10y", "c11"]
    with iio.EnsembleWriter.create(args.out, attrs, names, overwrite=True) as writer:
        for n in range(args.configs):
            obs = {"c10x": final["c10x"][n:n + 1], "c10y": final["c10y"][n:n + 1], "c11": final["c11"][n:n + 1]}
            writer.append(res.spins[n:n + 1], obs, chain=n, step=args.stages)
    if args.png:
        from .report import figure_configuration

        figure_configuration(to_numpy(res.spins[0]), args.png,
                   f"{model.name}: L0={args.seed_size} -> L={L}, {args.stages} stages, refine {args.refine}, seed {args.seed}")
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"model {model.name} (scale {model.scale}, {model.output_kind}, beta={model.beta:.10g}); seeds: "
              f"{res.seed_algorithm} at L0={args.seed_size}"
              + (f" after {res.thermalization} sweeps" if res.seed_algorithm == "wolff" else "")
              + f"; {args.configs} configuration(s); refine {args.refine}")
        print(format_stage_table(res))
        print(f"wrote {args.configs} configuration(s) of {L}x{L} to {args.out}" + (f" and {args.png}" if args.png else ""))
    return 0


def _numba_threads():
    try:
        import numba

        return numba.config.NUMBA_NUM_THREADS
    except Exception:  # noqa: BLE001
        return "?"


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "info":
        return cmd_info()
    if args.command == "models":
        return cmd_models(args)
    if args.command == "report":
        from .io import EnsembleFormatError
        from .report import make_report

        out = args.out or (os.path.splitext(args.file)[0] + "_report")
        try:
            res = make_report(args.file, out, reference=args.reference, max_configs=args.max_configs)
        except (FileNotFoundError, EnsembleFormatError, ValueError) as exc:
            print(f"isingcore report: {exc}", file=sys.stderr)
            return 2
        print(f"wrote {os.path.join(out, 'report.html')} and report.md ({len(res['files']) - 2} figures); "
              f"{res['n_flagged']} observable(s) off by more than 3 errors")
        return 0
    if args.command in ("analyze", "analyse"):
        from .analysis import analyze_ensemble, format_table
        from .io import EnsembleFormatError

        if not os.path.exists(args.file):
            print(f"isingcore analyze: no such file: {args.file}", file=sys.stderr)
            return 2
        try:
            result = analyze_ensemble(args.file, mcrg=args.mcrg)
        except (EnsembleFormatError, ValueError) as exc:
            print(f"isingcore analyze: {exc}", file=sys.stderr)
            return 2
        print(json.dumps(result) if args.json else format_table(result))
        return 0
    try:
        if args.command == "sample":
            sample(args, overwrite=args.overwrite, resume=args.resume, progress=_progress_enabled(args.progress))
            return 0
        if args.command == "upscale":
            return cmd_upscale(args)
        if args.command == "run":
            return cmd_upscale(args)
    except (ValueError, TypeError) as exc:
        print(f"isingcore {args.command}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from ._array import BackendUnavailableError

        if isinstance(exc, BackendUnavailableError):
            print(f"isingcore {args.command}: {exc}", file=sys.stderr)
            return 2
        raise
    parser.error(f"unknown command {args.command}")
    return 2
