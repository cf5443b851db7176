"""``isingcore sample --workers N`` / ``--scheduler ADDRESS``: the chains of one ensemble over Dask workers.

The chains ``0 .. C-1`` of ``isingcore sample --chains C`` are split into ``S`` contiguous blocks
(*shards*). Shard ``k`` runs its chains as one batch (RNG streams = their chain indices, the same
seed, thermalisation and spacing) on one Dask worker and writes its own ensemble file with
:class:`isingcore.io.EnsembleWriter` (``OUT.shard<k>-of-<S>.h5`` next to ``OUT``; ``da.to_hdf5``
does not work under a distributed client, and one file per writer keeps crash recovery per
shard). When every shard has finished, :func:`isingcore.io.join_ensembles` joins them into
``OUT`` (HDF5 virtual datasets, no copy): keep the shard files next to ``OUT``.

Same configurations as the serial run
-------------------------------------
Every random number of a chain is keyed by (seed, chain's stream, its step counter), so the
Metropolis, heat-bath and Swendsen-Wang trajectories of a chain do not depend on the other
chains of its batch. The one batch-dependent quantity is Wolff's ``clusters_per_sweep``: it is
calibrated on a pilot chain keyed by the batch's *first* stream
(:meth:`isingcore.mcmc.wolff.WolffUpdater.calibrate`), which is 0 in the serial run but the first
chain of the shard here. The driver therefore calibrates it once exactly as the serial run does
(stream 0) and hands the value to every shard, so the joined file equals the serial
``--chains C`` file configuration by configuration (same chain, step, spins and observables; only
the row order differs: shard by shard instead of interleaved).

Resume: ``--resume`` reopens each shard with :meth:`EnsembleWriter.resume` (a shard whose worker
was killed is recovered to its last committed configuration first) and continues its chains from
:meth:`EnsembleWriter.last_state`; a missing shard starts from scratch, a complete one is left as
it is. The shard layout ``S`` of existing shard files is reused, whatever the number of workers
now. With ``--scheduler`` the workers must see ``OUT``'s directory (a shared file system): the
shard paths handed to them are absolute. Choices: ``--workers N`` with ``N > C`` is an error (a worker would have no chain);
``--scheduler`` uses ``S = min(workers of the cluster, C)`` shards.

A worker that dies mid-run (killed, out of memory) loses nothing that was flushed: Dask's scheduler
re-runs its shard task on another (or the restarted) worker, and the re-run finds the shard file
of *this* run (root attribute ``extra.run``, a token per ``isingcore sample`` invocation), recovers
it to its last committed configuration and continues from there; the joined file is the serial
run's, as after ``--resume``. A shard file of another run is never continued this way.

Dask is imported only inside the functions (``import isingcore`` does not import it).
"""

from __future__ import annotations

import glob
import os
import re
import sys
import time

__all__ = ["shard_path", "split_chains", "run_shard", "sample_distributed", "existing_shards", "cluster_client",
           "local_cluster_kind"]

OBSERVABLES = ["energy", "magnetization", "c10x", "c10y", "c11"]
#: parameters that must agree between a shard file and the command that resumes it
RESUME_KEYS = ("algorithm", "beta", "J", "h", "Lx", "Ly", "seed", "thermalization", "spacing", "chains",
               "shard_chains")


def shard_path(out: str, k: int, n_shards: int) -> str:
    """File of shard ``k`` (0-based) of ``n_shards`` for the joined output ``out``."""
    stem = out[:-3] if out.endswith(".h5") else out
    return f"{stem}.shard{k}-of-{n_shards}.h5"


def existing_shards(out: str) -> dict[int, list[str]]:
    """Shard files on disk for ``out``: number of shards -> the files found."""
    stem = out[:-3] if out.endswith(".h5") else out
    found: dict[int, list[str]] = {}
    pat = re.compile(re.escape(os.path.basename(stem)) + r"\.shard(\d+)-of-(\d+)\.h5$")
    for p in glob.glob(glob.escape(stem) + ".shard*-of-*.h5"):
        m = pat.search(os.path.basename(p))
        if m:
            found.setdefault(int(m.group(2)), []).append(p)
    return found


def split_chains(chains: int, n_shards: int) -> list[range]:
    """Contiguous blocks of chain indices, sizes differing by at most one (the first ones larger)."""
    if not 1 <= n_shards <= chains:
        raise ValueError(f"need 1 <= shards <= chains, got {n_shards} shards for {chains} chains")
    q, r = divmod(chains, n_shards)
    out, a = [], 0
    for k in range(n_shards):
        b = a + q + (k < r)
        out.append(range(a, b))
        a = b
    return out


def _stored_attrs(writer) -> dict:
    """A shard file's root attributes with its ``extra`` attributes merged in."""
    stored = dict(writer.attrs)
    stored.update(stored.get("extra") or {})
    return stored


def _writer_of_run(path: str, run: str, iio):
    """The writer continuing ``path`` if it is a readable shard of run ``run``, else None (it is then overwritten)."""
    try:
        writer = iio.EnsembleWriter.resume(path)
    except (iio.EnsembleFormatError, OSError, ValueError):
        return None
    if _stored_attrs(writer).get("run") != run:
        writer.close()
        return None
    return writer


def run_shard(spec: dict) -> dict:
    """Run (or continue) one shard; executed on a worker. Returns a summary dict.

    ``spec``: ``path``, ``chains`` (first, stop), ``sim_kw`` (``Simulation`` keywords without
    replicas/stream), ``attrs`` (for a new file), ``configs``, ``spacing``, ``thermalize``,
    ``resume``, ``clusters_per_sweep`` (Wolff: the serial run's calibrated value, else None),
    ``max_new`` (optional: stop after this many new configurations per chain; tests).
    """
    import numpy as np

    from . import io as iio
    from ._array import to_numpy
    from .simulation import Simulation

    path = spec["path"]
    first, stop = spec["chains"]
    n = stop - first
    sim_kw = dict(spec["sim_kw"], replicas=n, stream=first)
    t0 = time.perf_counter()
    writer, retry = None, False
    if os.path.exists(path):
        if spec["resume"]:
            writer = iio.EnsembleWriter.resume(path)
        elif spec.get("run"):
            # The driver removed (or refused) every shard file before submitting, so a file of this run here was
            # written by an earlier attempt of this very task: Dask re-runs a task whose worker died. Continue it
            # from its last committed configuration (nothing flushed is lost or computed twice).
            writer = _writer_of_run(path, spec["run"], iio)
            retry = writer is not None
    if writer is not None:
        stored = _stored_attrs(writer)
        want = {**spec["attrs"], **spec["attrs"]["extra"]}
        for key in RESUME_KEYS:
            if key in stored and stored[key] != want[key]:
                writer.close()
                raise ValueError(f"--resume: {path} was written with {key}={stored[key]!r}, not {want[key]!r}; "
                                 "use the same parameters or another --out")
        last = writer.last_state()
    else:
        writer = iio.EnsembleWriter.create(path, spec["attrs"], OBSERVABLES, overwrite=True)
        last = {}
    with writer:
        counts = {last[c][2] if c in last else 0 for c in range(first, stop)}
        if len(counts) != 1 or set(last) - set(range(first, stop)):
            raise ValueError(f"--resume: {path} does not hold the chains {first}..{stop - 1} with equal counts")
        n_done = counts.pop()
        if n_done:
            spins = np.stack([last[c][0] for c in range(first, stop)])
            steps = np.array([last[c][1] for c in range(first, stop)], dtype=np.int64)
            sim = Simulation(**sim_kw, start=spins, step=steps)
        else:
            sim = Simulation(**sim_kw)
        if spec.get("clusters_per_sweep") is not None:
            sim.updater.clusters_per_sweep = int(spec["clusters_per_sweep"])
        if not n_done and spec["thermalize"]:
            sim.sweep(spec["thermalize"], progress=False)
        remaining = spec["configs"] - n_done
        if spec.get("max_new") is not None:
            remaining = min(remaining, spec["max_new"])
        chains = np.arange(first, stop, dtype=np.int32)
        for _ in range(max(remaining, 0)):
            sim.sweep(spec["spacing"], progress=False)
            obs = {k: to_numpy(v) for k, v in sim.measure().items() if k in OBSERVABLES}
            writer.append(sim.spins, obs, chain=chains, step=sim.steps.copy())
        total = n_done + max(remaining, 0)
    return dict(path=path, chains=(first, stop), resumed_from=n_done, new=max(remaining, 0) * n, per_chain=total,
                seconds=time.perf_counter() - t0, retried=retry)


CUDA_EXTRA_HINT = "pip install 'isingcore[cuda]' (the cuda extra brings dask-cuda)"


def local_cluster_kind(workers: int | None, scheduler: str | None, backend: str = "numpy") -> str | None:
    """Which cluster :func:`cluster_client` starts: None (connect to ``scheduler``), "LocalCluster" or "LocalCUDACluster".

    ``--backend cupy`` with ``--workers N`` needs one GPU per worker process, which is what
    ``dask_cuda.LocalCUDACluster`` arranges (each worker sees its own device as device 0); a
    missing dask-cuda is an error naming the options and the extra, never a silent CPU cluster
    whose N workers would all share GPU 0.
    """
    if scheduler is not None:
        return None
    if backend == "cupy":
        try:
            import dask_cuda  # noqa: F401
        except ImportError as exc:
            raise ValueError(f"--backend cupy with --workers {workers} runs one worker process per GPU on "
                             f"dask_cuda.LocalCUDACluster, and dask-cuda is not importable here ({exc}); "
                             f"{CUDA_EXTRA_HINT}, or drop --workers (one GPU in this process), or connect to a "
                             "cluster of GPU workers with --scheduler ADDRESS") from None
        return "LocalCUDACluster"
    return "LocalCluster"


def cluster_client(workers: int | None = None, scheduler: str | None = None, *, backend: str = "numpy"):
    """(client, cluster or None): ``scheduler``'s cluster, or a local cluster of ``workers`` single-threaded processes.

    The local cluster is a ``distributed.LocalCluster`` for the CPU backends and a
    ``dask_cuda.LocalCUDACluster`` (one GPU per worker) for ``backend="cupy"``
    (:func:`local_cluster_kind`). Create it under ``if __name__ == "__main__":`` in scripts.
    """
    import logging

    from distributed import Client

    kind = local_cluster_kind(workers, scheduler, backend)
    if kind is None:
        return Client(scheduler), None
    # silence_logs: a worker's heartbeat racing the scheduler's shutdown logs a harmless CommClosedError traceback;
    # errors of the tasks themselves reach the client as exceptions of their futures
    kw = dict(n_workers=workers, threads_per_worker=1, dashboard_address=None, silence_logs=logging.CRITICAL)
    if kind == "LocalCUDACluster":
        from dask_cuda import LocalCUDACluster

        cluster = LocalCUDACluster(**kw)
    else:
        from distributed import LocalCluster

        cluster = LocalCluster(processes=True, **kw)
    try:
        return Client(cluster), cluster
    except BaseException:
        cluster.close()
        raise


def sample_distributed(args, *, overwrite: bool, resume: bool, progress: bool, log=print) -> str:
    """``isingcore sample`` with ``args.workers`` or ``args.scheduler``: shards on Dask, then join. Returns the path."""
    from . import io as iio
    from .simulation import Simulation

    workers = getattr(args, "workers", None)
    scheduler = getattr(args, "scheduler", None)
    if workers is not None and scheduler is not None:
        raise ValueError("--workers and --scheduler exclude each other (--workers starts a local cluster)")
    if workers is not None and (isinstance(workers, bool) or workers < 1):
        raise ValueError(f"--workers must be a positive integer, got {workers!r}")
    if workers is not None and workers > args.chains:
        raise ValueError(f"--workers {workers} is more than --chains {args.chains}: every worker runs at least one "
                         "chain; use at most as many workers as chains")
    local_cluster_kind(workers, scheduler, args.backend)  # a missing dask-cuda is reported before anything starts
    out = os.fspath(args.out)
    sim_kw = dict(size=args.size, beta=args.beta, algorithm=args.algorithm, seed=args.seed, backend=args.backend,
                  J=args.J, h=args.h)
    probe = Simulation(**sim_kw, replicas=args.chains, start="cold")  # validates before any file is touched
    if os.path.exists(out) and not (overwrite or resume):
        raise SystemExit(f"isingcore sample: {out} exists; pass --resume to continue it or --overwrite to replace it")
    found = existing_shards(out)
    if found and not (overwrite or resume):
        names = sorted(p for ps in found.values() for p in ps)
        raise SystemExit(f"isingcore sample: shard files of {out} exist ({', '.join(names)}); pass --resume to "
                         "continue them or --overwrite to replace them")
    if resume and os.path.exists(out) and not found:
        raise SystemExit(f"isingcore sample --resume: {out} exists but has no shard files next to it; it was not "
                         "written with --workers/--scheduler (resume it without them)")
    if overwrite and not resume:
        for ps in found.values():
            for p in ps:
                os.unlink(p)
        found = {}
    try:
        import distributed  # noqa: F401
    except ImportError as exc:
        raise SystemExit(f"isingcore sample --workers/--scheduler needs dask.distributed "
                         f"(pip install 'isingcore[dist]'): {exc}") from None
    client, cluster = cluster_client(workers, scheduler, backend=args.backend)
    try:
        n_workers = len(client.scheduler_info(n_workers=-1)["workers"]) if scheduler is not None else workers
        if resume and found:
            if len(found) > 1:
                raise ValueError(f"--resume: shard files of {out} with different shard counts {sorted(found)} exist")
            n_shards = next(iter(found))
            if n_shards > args.chains:
                raise ValueError(f"--resume: {n_shards} shard files exist, more than --chains {args.chains}")
            log(f"resuming {n_shards} shard(s) of {out}")
        else:
            n_shards = max(1, min(n_workers or 1, args.chains))
        blocks = split_chains(args.chains, n_shards)
        c_sweep = None
        if args.algorithm == "wolff":
            # the serial run calibrates on the pilot chain of stream 0 (its first replica): do the same once here
            c_sweep = probe.updater.calibrate(probe)
        run_id = f"{os.getpid()}-{time.time_ns()}"  # marks this run's shard files (a re-run task continues them)
        base_attrs = dict(algorithm=args.algorithm, beta=probe.beta, J=probe.J, h=probe.h, Lx=probe.Lx, Ly=probe.Ly,
                          seed=args.seed, thermalization=args.thermalize, spacing=args.spacing, backend=args.backend)
        specs = []
        for k, block in enumerate(blocks):
            extra = dict(chains=args.chains, configs_per_chain=args.configs, kernel=probe.kernel,
                         shard=k, shards=n_shards, shard_chains=[block.start, block.stop],
                         clusters_per_sweep=c_sweep, command=" ".join(sys.argv[1:]) or "isingcore", run=run_id)
            specs.append(dict(path=os.path.abspath(shard_path(out, k, n_shards)), chains=(block.start, block.stop), sim_kw=sim_kw,
                              attrs=dict(base_attrs, extra=extra), configs=args.configs, spacing=args.spacing,
                              thermalize=args.thermalize, resume=resume, clusters_per_sweep=c_sweep, run=run_id,
                              max_new=getattr(args, "_max_new", None)))
        log(f"{args.chains} chain(s) in {n_shards} shard(s) on {n_workers} worker(s) "
            f"({'scheduler ' + scheduler if scheduler else 'local cluster'})")
        from distributed import as_completed

        t0 = time.perf_counter()
        futures = [client.submit(run_shard, s, key=f"isingcore-shard-{k}-of-{n_shards}-{os.getpid()}-{time.time_ns()}",
                                 pure=False) for k, s in enumerate(specs)]
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=args.chains * args.configs, unit="config", desc="sampling (per finished shard)")
        results = []
        for fut in as_completed(futures):
            r = fut.result()
            results.append(r)
            if bar is not None:
                bar.update(r["per_chain"] * (r["chains"][1] - r["chains"][0]))
            log(f"shard {os.path.basename(r['path'])}: chains {r['chains'][0]}..{r['chains'][1] - 1}, "
                f"{r['new']} new configuration(s) (resumed after {r['resumed_from']} per chain"
                f"{'; re-run after its worker died' if r.get('retried') else ''}) in {r['seconds']:.1f} s")
        if bar is not None:
            bar.close()
        dt = time.perf_counter() - t0
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    if getattr(args, "_max_new", None) is not None and any(r["per_chain"] < args.configs for r in results):
        return out  # test hook: stopped early, nothing to join
    iio.join_ensembles([s["path"] for s in specs], out, overwrite=True)
    new = sum(r["new"] for r in results)
    log(f"wrote {new} configurations in {dt:.1f} s; joined {n_shards} shard(s) into {out}")
    return out
