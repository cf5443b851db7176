"""Tiled inverse-RG upscaling with ``dask.array``: lattices larger than memory, bit-identical to the untiled path.

One stage of :func:`isingcore.rg.upscale.upscale` (field + sampling, then refinement) is local:

* **sampling**: fine site ``(x, y)`` depends on the coarse lattice within the model's ``halo``
  around its parent ``(x // b, y // b)`` and on Philox word ``k = x Ly_out + y`` of
  ``(seed, stream, step=stage, Purpose.UPSCALE)`` (``docs/UPSCALING.md``). The coarse lattice is cut
  into tiles of ``T / b`` coarse sites, each padded periodically by ``halo`` coarse sites
  (``dask.array.map_overlap(boundary="periodic")``), run through onnxruntime and sampled with the
  tile's *global* offset (:func:`isingcore.backends.numba_cpu.upscale.sample_rows`), giving the fine
  tile of ``T x T`` sites;
* **refinement**: a checkerboard half-sweep changes a site according to its four neighbours, so
  on a tile padded by ``H`` sites and swept as if it were the lattice, the outermost layer of the
  padding is wrong after one half-sweep, two layers after two, and ``2k`` layers after ``k`` sweeps.
  With ``H = 2k + 1`` (one layer of slack, which also lets an odd-width tile drop a column to
  give the row-split kernel an even width) the tile interior is exact after ``k`` sweeps; the
  halo is then refreshed from the neighbours (the next ``map_overlap``) for the next ``k``
  sweeps. Site colours ``(x + y) % 2`` and words ``(x Ly + y) // 2`` of
  ``(seed, stream, (stage << 32) + half_sweep, Purpose.REFINE)`` are those of the global site
  (:func:`isingcore.backends.numba_cpu.local.checkerboard_sweeps` with ``offset``/``global_shape``).

Because every random decision is keyed by the global site and the field of a site does not
depend on where the tile boundaries fall (onnxruntime's CPU convolution computes each output
from its own receptive field), the tiled lattice equals the untiled one **bit for bit**, for any
tiling (tested: 16 -> 144 with tiles of 48, 36, 60 and 30 x 48; measured: 512 -> 4,608).

:func:`generate_tiled` runs the whole pipeline out of core: stage ``t`` reads stage ``t - 1``
lazily from the giant-lattice file (:mod:`isingcore.giant`), computes tiles on a threaded Dask
scheduler with ``workers`` threads, and writes each finished tile bit-packed into
``/stages/<t>`` of the same file, so the memory in use is a few tiles (int8 spins, the tile's
float32 field and onnxruntime's buffers) per worker plus Dask's pending halos, independent of
the lattice size. With a ``distributed`` client (``isingcore upscale --scheduler ADDRESS`` or
``--workers N --processes``) the tiles run in worker processes: they return bit-packed tiles and
their sums, only the driver writes, and stage ``t`` passes through a scratch file that the workers
read for stage ``t + 1`` (see :func:`generate_tiled`). The per-stage magnetisation is, on both
paths, a reduction of values returned by the tile tasks. ``backend="cupy"`` runs each tile's
field on onnxruntime's CUDA provider and its sampling and refinement with the offset-aware
Numba-CUDA kernels (``isingcore.backends.cuda``; ``--workers N --backend cupy``: one GPU per
worker process on ``dask_cuda.LocalCUDACluster``); same bits.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import threading
import time
import zlib

import numpy as np

from .. import random as rng
from .upscale import KINDS, _check_int, _run_numpy

__all__ = ["upscale_tiled", "sample_stage_tiled", "refine_stage_tiled", "generate_tiled", "tile_chunks",
           "refine_halo", "default_sweeps_per_exchange"]


def refine_halo(sweeps: int) -> int:
    """Halo (fine sites) for ``sweeps`` refinement sweeps per halo exchange: ``2 sweeps + 1``."""
    return 2 * int(sweeps) + 1


def _tile_pair(tile, name="tile"):
    if isinstance(tile, numbers.Integral) and not isinstance(tile, bool):
        tile = (int(tile), int(tile))
    if (not isinstance(tile, (tuple, list)) or len(tile) != 2
            or not all(isinstance(t, numbers.Integral) and not isinstance(t, bool) for t in tile)):
        raise TypeError(f"{name} must be a positive integer or a pair of them, got {tile!r}")
    if min(tile) < 1:
        raise ValueError(f"{name} must be positive, got {tile!r}")
    return int(tile[0]), int(tile[1])


def tile_chunks(shape, tile, scale: int):
    """Coarse chunks (tuple of tuples) for fine tiles of ``tile`` sites: ``tile / scale`` coarse sites, the last smaller.

    ``tile`` (int or (rows, columns)) must be a multiple of the model's scale ``b``.
    """
    tx, ty = _tile_pair(tile)
    if tx % scale or ty % scale:
        raise ValueError(f"tile={tile!r} must be a multiple of the model's scale b={scale} (a fine tile is the "
                         f"upscaled image of a coarse tile)")
    out = []
    for L, t in zip(shape, (tx // scale, ty // scale)):
        t = min(t, L)
        out.append(tuple([t] * (L // t) + ([L % t] if L % t else [])))
    return tuple(out)


def _offsets(chunks):
    return tuple(tuple(int(v) for v in np.concatenate([[0], np.cumsum(c)[:-1]])) for c in chunks)


@contextlib.contextmanager
def _numba_threads(n):
    """Numba's thread count for the calling thread only (Numba keeps it per thread)."""
    if n is None:
        yield
        return
    import numba

    old = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(old)


def _as_dask(coarse, chunks):
    import dask.array as da

    if isinstance(coarse, da.Array):
        return coarse.rechunk(chunks) if coarse.chunks != chunks else coarse
    if hasattr(coarse, "to_dask"):
        return coarse.to_dask(chunks=chunks)
    a = np.asarray(coarse)
    return da.from_array(a, chunks=chunks)


def _check_lattice(shape, name):
    if len(shape) != 2:
        raise ValueError(f"{name} must be one lattice of shape (Lx, Ly), got shape {tuple(shape)}")


TILE_BACKENDS = ("numpy", "cupy")


def _check_tile_backend(backend: str) -> str:
    if backend not in TILE_BACKENDS:
        raise ValueError(f"backend={backend!r} is not known for tiles; allowed values: {', '.join(TILE_BACKENDS)}")
    return backend


def _session_backend(backend: str) -> str:
    """onnxruntime's backend for tiles on ``backend`` (the CPU one under the CUDA simulator)."""
    if backend == "cupy":
        from ..backends.cuda._runtime import SIMULATOR

        return "numpy" if SIMULATOR else "cupy"
    return "numpy"


def _tile_session(model, backend: str = "numpy"):
    """A live onnxruntime session for tiles computed in this process."""
    return model.session(_session_backend(_check_tile_backend(backend)))


class _Session:
    """A picklable stand-in for an onnxruntime session: each process opens its own on first use.

    Tasks of a distributed cluster run in other processes, where a live ``InferenceSession`` cannot
    be sent; this object carries the model (its ONNX bytes) and opens one session per process and
    key, kept for the process's lifetime (the threads of one worker share it, as onnxruntime allows).
    """

    _live: dict = {}
    _lock = threading.Lock()

    def __init__(self, model, backend: str = "numpy", threads: int | None = None):
        self.model, self.backend, self.threads = model, backend, threads
        self.key = (model.name, len(model.data), zlib.crc32(model.data), backend, threads)

    def _session(self):
        s = _Session._live.get(self.key)
        if s is None:
            with _Session._lock:
                s = _Session._live.get(self.key)
                if s is None:
                    s = _Session._live[self.key] = self.model.session(self.backend, threads=self.threads)
        return s

    def run(self, names, feeds):
        return self._session().run(names, feeds)


class _FileLattice:
    """A picklable lazy reader of a packed lattice in a *closed* giant-lattice file: each read opens it.

    What the tasks of stage ``t`` read on a distributed cluster (in any process that sees the path);
    :class:`isingcore.giant.GiantLattice` holds an open ``h5py.File`` and cannot be sent.
    """

    def __init__(self, path: str, dataset: str = "spins"):
        from .. import giant

        self.path, self.dataset = os.path.abspath(path), dataset
        with giant.GiantLattice(self.path, dataset) as lat:
            self.shape = lat.shape
        self.dtype = np.dtype(np.int8)
        self.ndim = 2
        self._token = f"{self.path}-{dataset}-{os.stat(self.path).st_mtime_ns}"

    def __getitem__(self, key):
        from .. import giant

        with giant.GiantLattice(self.path, self.dataset) as lat:
            return lat[key]

    def to_dask(self, chunks):
        import dask.array as da

        return da.from_array(self, chunks=chunks, asarray=False, lock=False, name=f"giant-file-{self._token}",
                             meta=np.empty((0, 0), np.int8))


# ------------------------------------------------------------------------------------------
# sampling
# ------------------------------------------------------------------------------------------
def _device_io(backend: str):
    """(to_device, to_host, cuda kernels or None) for the tile functions: NumPy for "numpy"; CuPy and the
    Numba-CUDA kernels for "cupy" (NumPy arrays into the same kernels under the CUDA simulator)."""
    if backend == "numpy":
        return np.ascontiguousarray, (lambda a: a), False
    from ..backends.cuda._runtime import SIMULATOR

    if SIMULATOR:
        return np.ascontiguousarray, (lambda a: a), True
    import cupy

    return cupy.ascontiguousarray, (lambda a: a.get()), True


def _sample_block(block, block_id=None, *, offsets, halo, b, Lout, sess, kind, clamp, seed, stage, stream, threads,
                  backend="numpy"):
    i, j = block_id
    X0, Y0 = b * offsets[0][i], b * offsets[1][j]
    hc, wc = block.shape[0] - 2 * halo, block.shape[1] - 2 * halo
    field = _run_numpy(sess, np.ascontiguousarray(block, dtype=np.float32)[None, None], (1, 1, b * hc, b * wc))
    inner = np.ascontiguousarray(block[halo:halo + hc, halo:halo + wc])[None]
    kw = dict(n0=0, x0=0, skip=0, b=b, kind=kind, clamp=clamp, seed=seed, step=stage, purpose=int(rng.Purpose.UPSCALE),
              offset=(X0, Y0), global_ly=Lout)
    to_dev, to_host, gpu = _device_io(backend)
    if gpu:  # the Numba-CUDA kernel on the tile (global offsets), host arrays in and out of the task
        from ..backends.cuda import upscale as cu

        out = to_dev(np.empty((1, b * hc, b * wc), np.int8))
        bad = to_dev(np.zeros(1, np.int64))
        cu.sample_rows(to_dev(field[:, 0]), to_dev(inner), out, streams=to_dev(np.array([stream], np.uint32)), bad=bad,
                       **kw)
        out, bad = to_host(out), int(to_host(bad)[0])
    else:
        from ..backends.numba_cpu import upscale as fast

        out = np.empty((1, b * hc, b * wc), np.int8)
        with _numba_threads(threads):
            bad = fast.sample_rows(field[:, 0], inner, out, streams=np.array([stream], np.uint32), **kw)
    if bad:
        raise ValueError(f"the model produced {bad} non-finite field values at stage {stage} (tile at {X0}, {Y0})")
    return out[0]


def sample_stage_tiled(coarse, model, *, seed: int, stage: int, tile, stream: int = 0, threads_per_tile=None,
                       session=None, backend: str = "numpy"):
    """Field + sampling of one stage as a lazy ``dask.array`` (int8, fine tiles of ``tile`` sites).

    ``coarse``: one lattice ``(Lx, Ly)``: NumPy, ``dask.array`` or :class:`isingcore.giant.GiantLattice`.
    Equal, bit for bit, to ``sample_stage(coarse[None], model, ..., streams=[stream])[0]``.
    """
    from .models import load_model

    model = load_model(model)
    seed = rng.check_seed(seed)
    stream = rng.check_seed(stream, "stream")
    stage = _check_int(stage, "stage", 1, (1 << 32) - 1)
    shape = tuple(int(v) for v in coarse.shape)
    _check_lattice(shape, "coarse")
    b, halo = model.scale, model.halo
    chunks = tile_chunks(shape, tile, b)
    if halo > min(min(c) for c in chunks):
        raise ValueError(f"tile={tile!r} gives coarse tiles of {min(min(c) for c in chunks)} sites, fewer than the "
                         f"model's halo of {halo}; use a larger tile")
    Lout = b * shape[1]
    if b * shape[0] * Lout > 1 << 34:
        raise ValueError(f"the fine lattice {b * shape[0]}x{Lout} has more than 2**34 sites")
    c = _as_dask(coarse, chunks)
    sess = session if session is not None else _tile_session(model, backend)
    fine_chunks = tuple(tuple(b * v for v in cc) for cc in chunks)
    return c.map_overlap(_sample_block, depth=halo, boundary="periodic", trim=False, allow_rechunk=False,
                         chunks=fine_chunks, dtype=np.int8, meta=np.empty((0, 0), np.int8),
                         offsets=_offsets(chunks), halo=halo, b=b, Lout=Lout, sess=sess,
                         kind=KINDS[model.output_kind], clamp=float(model.clamp or 0.0), seed=seed, stage=stage,
                         stream=stream, threads=threads_per_tile, backend=_check_tile_backend(backend))


# ------------------------------------------------------------------------------------------
# refinement
# ------------------------------------------------------------------------------------------
def _refine_block(block, block_id=None, *, offsets, H, gshape, sweeps, step, thr, seed, stream, threads,
                  backend="numpy"):
    i, j = block_id
    t = np.array(block, dtype=np.int8, copy=True)
    work = t[None] if t.shape[1] % 2 == 0 else t[None, :, :-1]  # an even width for the row-split kernel
    kw = dict(step=step, thresholds=thr, seed=seed, purpose=int(rng.Purpose.REFINE),
              offset=(offsets[0][i] - H, offsets[1][j] - H), global_shape=gshape)
    to_dev, to_host, gpu = _device_io(backend)
    if gpu:
        from ..backends.cuda import local as cuda_local

        d = cuda_local.checkerboard_sweeps(to_dev(work), 2 * sweeps, streams=to_dev(np.array([stream], np.uint32)),
                                           **dict(kw, thresholds=to_dev(thr)))
        work[...] = to_host(d)
        return t
    from ..backends.numba_cpu.local import checkerboard_sweeps

    with _numba_threads(threads):
        checkerboard_sweeps(work, 2 * sweeps, streams=np.array([stream], np.uint32), **kw)
    return t


def default_sweeps_per_exchange(refine: int, chunks) -> int:
    """All ``refine`` sweeps in one exchange when the halo ``2k + 1`` fits in the smallest tile, else the most that fit."""
    smallest = min(min(c) for c in chunks)
    return max(1, min(refine, (smallest - 1) // 2))


def refine_stage_tiled(fine, model, *, seed: int, stage: int, refine: int = 25, stream: int = 0,
                       sweeps_per_exchange: int | None = None, threads_per_tile=None, backend: str = "numpy"):
    """``refine`` checkerboard Metropolis sweeps on a tiled fine lattice (lazy ``dask.array``, same chunks).

    ``sweeps_per_exchange`` = k sweeps between halo exchanges, halo ``2k + 1`` (at most the smallest
    tile); default :func:`default_sweeps_per_exchange`. Equal, bit for bit, to
    :func:`isingcore.rg.upscale.refine_stage` on the whole lattice.
    """
    import dask.array as da

    from ..mcmc import local
    from .models import load_model

    model = load_model(model)
    seed = rng.check_seed(seed)
    stream = rng.check_seed(stream, "stream")
    stage = _check_int(stage, "stage", 1, (1 << 32) - 1)
    refine = _check_int(refine, "refine", 0)
    if not isinstance(fine, da.Array):
        raise TypeError(f"fine must be a dask.array (from sample_stage_tiled), got {type(fine).__name__}")
    _check_lattice(fine.shape, "fine")
    Lx, Ly = (int(v) for v in fine.shape)
    if refine == 0:
        return fine
    if Lx % 2 or Ly % 2:
        raise ValueError(f"refinement (checkerboard Metropolis) needs even lattice sizes, got {Lx}x{Ly}")
    smallest = min(min(c) for c in fine.chunks)
    if sweeps_per_exchange is None:
        k = default_sweeps_per_exchange(refine, fine.chunks)
    else:
        k = _check_int(sweeps_per_exchange, "sweeps_per_exchange", 1)
    if refine_halo(min(k, refine)) > smallest:
        raise ValueError(f"sweeps_per_exchange={k} needs a halo of {refine_halo(k)} sites, more than the smallest "
                         f"tile ({smallest}); use at most {(smallest - 1) // 2} or larger tiles")
    thr = local.flip_thresholds("metropolis", model.beta)
    offsets = _offsets(fine.chunks)
    done = 0
    while done < refine:
        n = min(k, refine - done)
        H = refine_halo(n)
        fine = fine.map_overlap(_refine_block, depth=H, boundary="periodic", trim=True, allow_rechunk=False,
                                dtype=np.int8, meta=np.empty((0, 0), np.int8), offsets=offsets, H=H,
                                gshape=(Lx, Ly), sweeps=n, step=(stage << 32) + 2 * done, thr=thr, seed=seed,
                                stream=stream, threads=threads_per_tile, backend=_check_tile_backend(backend))
        done += n
    return fine


def upscale_tiled(coarse, model, *, seed: int, stage: int, tile, stream: int = 0, refine: int = 25,
                  sweeps_per_exchange: int | None = None, threads_per_tile=None, session=None, backend: str = "numpy"):
    """One tiled inverse-RG stage, lazily: ``(Lx, Ly)`` -> ``dask.array`` ``(b Lx, b Ly)`` int8 in tiles of ``tile``.

    The same configuration, bit for bit, as ``upscale(coarse[None], model, seed=seed, stage=stage,
    streams=[stream], refine=refine)[0]`` (see the module docstring). ``tile``: fine tile edge (int
    or (rows, columns)), a multiple of ``b``; the last tile of a row or column may be smaller.
    """
    from .models import load_model

    model = load_model(model)
    fine = sample_stage_tiled(coarse, model, seed=seed, stage=stage, tile=tile, stream=stream,
                              threads_per_tile=threads_per_tile, session=session, backend=backend)
    return refine_stage_tiled(fine, model, seed=seed, stage=stage, refine=refine, stream=stream,
                              sweeps_per_exchange=sweeps_per_exchange, threads_per_tile=threads_per_tile,
                              backend=backend)


# ------------------------------------------------------------------------------------------
# the out-of-core pipeline
# ------------------------------------------------------------------------------------------
def _pack_tile(block):
    """A finished tile -> (bit-packed rows as in :class:`isingcore.giant.PackedTarget`, its magnetisation sum)."""
    block = np.asarray(block)
    if not np.all((block == 1) | (block == -1)):
        raise ValueError("a tile holds spins other than +1 and -1")
    return np.packbits(block > 0, axis=-1, bitorder="big"), int(block.sum(dtype=np.int64))


def _write_tile(block, block_info=None, *, target, bar):
    """Threaded path: write one tile into the store target; return its magnetisation sum as a (1, 1) block."""
    loc = block_info[0]["array-location"]
    target[loc[0][0]:loc[0][1], loc[1][0]:loc[1][1]] = block
    if bar is not None:
        bar.update(1)  # tqdm serialises its updates
    return np.full((1, 1), block.sum(dtype=np.int64), np.int64)


def _stage_threads(fine, ds, workers: int, bar) -> int:
    """Compute the tiles on ``workers`` threads, each tile written as it is done; returns the magnetisation sum.

    The sum is a dask reduction of the per-tile sums the write tasks return (no shared counter).
    """
    import dask

    from .. import giant

    target = giant.PackedTarget(ds)
    sums = fine.map_blocks(_write_tile, chunks=tuple((1,) * len(c) for c in fine.chunks), dtype=np.int64,
                           meta=np.empty((0, 0), np.int64), target=target, bar=bar)
    with dask.config.set(scheduler="threads", num_workers=workers):
        return int(sums.sum().compute())


def _stage_distributed(client, fine, ds, bar) -> int:
    """Compute the tiles on a distributed cluster; this process writes each packed tile as it arrives.

    Workers (other processes, perhaps other machines) return ``(packed rows, sum)`` per tile
    (:func:`_pack_tile`); only this process opens the output for writing (h5py objects cannot be
    sent, and HDF5 allows one writer). Returns the magnetisation sum over the tiles.
    """
    import dask
    from distributed import as_completed

    offs = _offsets(fine.chunks)
    blocks = fine.to_delayed()
    tasks, where = [], []
    for i in range(blocks.shape[0]):
        for j in range(blocks.shape[1]):
            tasks.append(dask.delayed(_pack_tile, pure=True)(blocks[i, j]))
            where.append((offs[0][i], offs[1][j]))
    futures = client.compute(tasks)
    pos = {f.key: w for f, w in zip(futures, where)}
    done = as_completed(futures, with_results=True)
    del futures, tasks
    msum = 0
    for fut, (packed, part) in done:
        r0, c0 = pos.pop(fut.key)
        ds[r0:r0 + packed.shape[0], c0 // 8:c0 // 8 + packed.shape[1]] = packed
        msum += part
        fut.release()
        if bar is not None:
            bar.update(1)
    if pos:  # pragma: no cover - as_completed yields every future or raises
        raise RuntimeError(f"{len(pos)} tile(s) never arrived")
    return msum


def scratch_path(out: str, stage: int) -> str:
    """Distributed path: the file of stage ``stage`` while stage ``stage + 1`` reads it (removed afterwards)."""
    stem = out[:-3] if out.endswith(".h5") else out
    return f"{stem}.stage{stage}.partial.h5"


def generate_tiled(model, *, seed_size: int, stages: int, out: str, tile: int, refine: int = 25, seed: int = 0,
                   stream: int = 0, workers: int = 1, sweeps_per_exchange: int | None = None,
                   thermalize: int | None = None, overwrite: bool = False, progress: bool = False, log=None,
                   extra_attrs: dict | None = None, client=None, threads_per_tile: int | None = None,
                   backend: str = "numpy") -> dict:
    """Seed at ``L0 = seed_size``, then ``stages`` tiled stages, each written to the giant-lattice file ``out``.

    Configuration ``stream`` of :func:`isingcore.rg.upscale.generate` (seed = replica ``stream`` of the
    Wolff run, or the single spin of stream ``stream``), bit for bit. ``tile`` (fine tile edge) must
    be a multiple of 8 and of ``b``. Returns a summary dict (sizes, seconds per stage, magnetization).

    Where the tiles run:

    * ``client=None`` (default): a threaded Dask scheduler with ``workers`` threads in this process
      (each tile's Numba kernels on ``max(1, cores // workers)`` threads). Stage ``t`` reads stage
      ``t - 1`` lazily from ``out`` and its tiles are written into ``/stages/<t>`` as they finish;
    * ``client``: a ``distributed.Client`` (a ``LocalCluster`` of processes, a remote scheduler:
      :func:`isingcore.distributed.cluster_client`). Workers return bit-packed tiles and their sums,
      which this process writes; stage ``t`` is written to :func:`scratch_path` (closed when the stage
      is done, then copied into ``out``, chunks as they are) so that the workers can read it for stage
      ``t + 1`` while ``out`` stays open here for writing. Workers must see that path (a shared file
      system for a remote cluster). ``threads_per_tile``: Numba/onnxruntime threads of a tile on a
      worker (default: all of the worker's Numba threads).

    ``backend="cupy"``: each tile runs on the GPU of the process that computes it (onnxruntime's CUDA
    provider, the Numba-CUDA kernels with the tile's global offsets), host arrays in and out of
    the task; with a ``dask_cuda.LocalCUDACluster`` every worker has its own GPU. Same bits.

    The per-stage magnetisation is a reduction of values the tile tasks return, in both cases.
    """
    import numba

    from .. import giant
    from .models import load_model
    from .upscale import seed_configurations

    model = load_model(model)
    seed = rng.check_seed(seed)
    stream = rng.check_seed(stream, "stream")
    L0 = _check_int(seed_size, "seed_size", 1)
    stages = _check_int(stages, "stages", 1)
    refine = _check_int(refine, "refine", 0)
    workers = _check_int(workers, "workers", 1)
    tile = giant._check_tile(tile)
    b = model.scale
    if tile % b:
        raise ValueError(f"tile={tile} must be a multiple of the model's scale b={b}")
    sizes = [L0 * b**t for t in range(stages + 1)]
    if sizes[-1] ** 2 > 1 << 34:
        raise ValueError(f"{stages} stages from seed_size={L0} with scale {b} give L={sizes[-1]}: more than 2**34 sites")
    if refine and any(L % 2 for L in sizes[1:]):
        raise ValueError(f"refine={refine} needs even lattice sizes; seed_size={L0} with scale {b} gives odd ones")
    if client is None:
        threads = max(1, numba.config.NUMBA_NUM_THREADS // workers)
        sess = _tile_session(model, backend)
    else:
        threads = None if threads_per_tile is None else _check_int(threads_per_tile, "threads_per_tile", 1)
        sess = _Session(model, _session_backend(_check_tile_backend(backend)), threads)
    t0 = time.perf_counter()
    seeds, n_therm = seed_configurations(L0, configs=stream + 1, seed=seed, beta=model.beta, thermalize=thermalize,
                                         progress=progress)
    src = np.ascontiguousarray(seeds[stream])
    del seeds
    summary = {"sizes": sizes, "tile": tile, "workers": workers, "refine": refine, "seed": seed, "stream": stream,
               "thermalization": n_therm, "stages": [{"stage": 0, "L": L0, "seconds": time.perf_counter() - t0,
                                                     "m": float(src.mean(dtype=np.float64))}]}
    attrs = dict(algorithm="irg", beta=float(model.beta), J=1.0, h=0.0, Lx=sizes[-1], Ly=sizes[-1], seed=seed,
                 stream=stream, model=model.name, scale=b, seed_size=L0, stages=stages, refine=refine,
                 thermalization=n_therm, tile=tile, seed_algorithm="single-spin" if L0 == 1 else "wolff")
    attrs.update(extra_attrs or {})
    scratch = []  # distributed: stage files still on disk
    try:
        with giant.create_file(out, attrs, overwrite=overwrite) as f:
            grp = f.create_group("stages")
            for t in range(1, stages + 1):
                ta = time.perf_counter()
                L = sizes[t]
                chunks = tile_chunks((sizes[t - 1],) * 2, tile, b)
                n_tiles = len(chunks[0]) * len(chunks[1])
                bar = None
                if progress:
                    from tqdm.auto import tqdm

                    bar = tqdm(total=n_tiles, desc=f"stage {t}: {L}x{L} in {tile}x{tile} tiles", unit="tile",
                               leave=False)
                fine = upscale_tiled(src, model, seed=seed, stage=t, tile=tile, stream=stream, refine=refine,
                                     sweeps_per_exchange=sweeps_per_exchange, threads_per_tile=threads, session=sess,
                                     backend=backend)
                if client is None:
                    ds = giant.create_lattice(grp, str(t), (L, L), tile=tile, attrs={"stage": t})
                    msum = _stage_threads(fine, ds, workers, bar)
                    f.flush()
                    src = giant.GiantLattice(f, f"stages/{t}")
                else:
                    import h5py

                    path = scratch_path(out, t)
                    scratch.append(path)
                    with giant.create_file(path, {"stage": t, "partial_of": os.path.abspath(out)},
                                           overwrite=True) as g:
                        ds = giant.create_lattice(g, "spins", (L, L), tile=tile, attrs={"stage": t})
                        msum = _stage_distributed(client, fine, ds, bar)
                    with h5py.File(path, "r") as g:
                        f.copy(g["spins"], grp, name=str(t))  # raw chunks: no decompression
                    f.flush()
                    src = _FileLattice(path, "spins")
                    while len(scratch) > 1:  # stage t - 1 is no longer read
                        os.unlink(scratch.pop(0))
                if bar is not None:
                    bar.close()
                sec = time.perf_counter() - ta
                summary["stages"].append({"stage": t, "L": L, "seconds": sec, "m": msum / float(L * L),
                                          "tiles": n_tiles})
                if log is not None:
                    log(f"stage {t}: L={L}  {n_tiles} tiles of {tile}  m={msum / float(L * L):+.6f}  ({sec:.1f} s)")
            f["spins"] = f[f"stages/{stages}"]
            f.attrs["stage_seconds"] = np.array([s["seconds"] for s in summary["stages"]], np.float64)
    finally:
        for path in scratch:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    summary["seconds"] = time.perf_counter() - t0
    return summary
