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
the lattice size.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import threading
import time

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


# ------------------------------------------------------------------------------------------
# sampling
# ------------------------------------------------------------------------------------------
def _sample_block(block, block_id=None, *, offsets, halo, b, Lout, sess, kind, clamp, seed, stage, stream, threads):
    from ..backends.numba_cpu import upscale as fast

    i, j = block_id
    X0, Y0 = b * offsets[0][i], b * offsets[1][j]
    hc, wc = block.shape[0] - 2 * halo, block.shape[1] - 2 * halo
    field = _run_numpy(sess, np.ascontiguousarray(block, dtype=np.float32)[None, None], (1, 1, b * hc, b * wc))
    inner = np.ascontiguousarray(block[halo:halo + hc, halo:halo + wc])[None]
    out = np.empty((1, b * hc, b * wc), np.int8)
    with _numba_threads(threads):
        bad = fast.sample_rows(field[:, 0], inner, out, n0=0, x0=0, skip=0, b=b, kind=kind, clamp=clamp, seed=seed,
                               streams=np.array([stream], np.uint32), step=stage, purpose=int(rng.Purpose.UPSCALE),
                               offset=(X0, Y0), global_ly=Lout)
    if bad:
        raise ValueError(f"the model produced {bad} non-finite field values at stage {stage} (tile at {X0}, {Y0})")
    return out[0]


def sample_stage_tiled(coarse, model, *, seed: int, stage: int, tile, stream: int = 0, threads_per_tile=None,
                       session=None):
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
    sess = session if session is not None else model.session("numpy")
    fine_chunks = tuple(tuple(b * v for v in cc) for cc in chunks)
    return c.map_overlap(_sample_block, depth=halo, boundary="periodic", trim=False, allow_rechunk=False,
                         chunks=fine_chunks, dtype=np.int8, meta=np.empty((0, 0), np.int8),
                         offsets=_offsets(chunks), halo=halo, b=b, Lout=Lout, sess=sess,
                         kind=KINDS[model.output_kind], clamp=float(model.clamp or 0.0), seed=seed, stage=stage,
                         stream=stream, threads=threads_per_tile)


# ------------------------------------------------------------------------------------------
# refinement
# ------------------------------------------------------------------------------------------
def _refine_block(block, block_id=None, *, offsets, H, gshape, sweeps, step, thr, seed, stream, threads):
    from ..backends.numba_cpu.local import checkerboard_sweeps

    i, j = block_id
    t = np.array(block, dtype=np.int8, copy=True)
    work = t[None] if t.shape[1] % 2 == 0 else t[None, :, :-1]  # an even width for the row-split kernel
    with _numba_threads(threads):
        checkerboard_sweeps(work, 2 * sweeps, step=step, thresholds=thr, seed=seed,
                            streams=np.array([stream], np.uint32), purpose=int(rng.Purpose.REFINE),
                            offset=(offsets[0][i] - H, offsets[1][j] - H), global_shape=gshape)
    return t


def default_sweeps_per_exchange(refine: int, chunks) -> int:
    """All ``refine`` sweeps in one exchange when the halo ``2k + 1`` fits in the smallest tile, else the most that fit."""
    smallest = min(min(c) for c in chunks)
    return max(1, min(refine, (smallest - 1) // 2))


def refine_stage_tiled(fine, model, *, seed: int, stage: int, refine: int = 25, stream: int = 0,
                       sweeps_per_exchange: int | None = None, threads_per_tile=None):
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
                                stream=stream, threads=threads_per_tile)
        done += n
    return fine


def upscale_tiled(coarse, model, *, seed: int, stage: int, tile, stream: int = 0, refine: int = 25,
                  sweeps_per_exchange: int | None = None, threads_per_tile=None, session=None):
    """One tiled inverse-RG stage, lazily: ``(Lx, Ly)`` -> ``dask.array`` ``(b Lx, b Ly)`` int8 in tiles of ``tile``.

    The same configuration, bit for bit, as ``upscale(coarse[None], model, seed=seed, stage=stage,
    streams=[stream], refine=refine)[0]`` (see the module docstring). ``tile``: fine tile edge (int
    or (rows, columns)), a multiple of ``b``; the last tile of a row or column may be smaller.
    """
    from .models import load_model

    model = load_model(model)
    fine = sample_stage_tiled(coarse, model, seed=seed, stage=stage, tile=tile, stream=stream,
                              threads_per_tile=threads_per_tile, session=session)
    return refine_stage_tiled(fine, model, seed=seed, stage=stage, refine=refine, stream=stream,
                              sweeps_per_exchange=sweeps_per_exchange, threads_per_tile=threads_per_tile)


# ------------------------------------------------------------------------------------------
# the out-of-core pipeline
# ------------------------------------------------------------------------------------------
def generate_tiled(model, *, seed_size: int, stages: int, out: str, tile: int, refine: int = 25, seed: int = 0,
                   stream: int = 0, workers: int = 1, sweeps_per_exchange: int | None = None,
                   thermalize: int | None = None, overwrite: bool = False, progress: bool = False, log=None,
                   extra_attrs: dict | None = None) -> dict:
    """Seed at ``L0 = seed_size``, then ``stages`` tiled stages, each written to the giant-lattice file ``out``.

    Configuration ``stream`` of :func:`isingcore.rg.upscale.generate` (seed = replica ``stream`` of the
    Wolff run, or the single spin of stream ``stream``), bit for bit. Stage ``t`` is computed from
    stage ``t - 1`` read lazily from the file, on a threaded Dask scheduler with ``workers`` threads
    (each tile's Numba kernels then run on ``max(1, cores // workers)`` threads), and written tile by
    tile into ``/stages/<t>``; ``/spins`` links the last stage. ``tile`` (fine tile edge) must be a
    multiple of 8 and of ``b``. Returns a summary dict (sizes, seconds per stage, magnetization).
    """
    import dask
    import dask.array as da
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
    threads = max(1, numba.config.NUMBA_NUM_THREADS // workers)
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
    sess = model.session("numpy")
    with giant.create_file(out, attrs, overwrite=overwrite) as f:
        grp = f.create_group("stages")
        for t in range(1, stages + 1):
            ta = time.perf_counter()
            L = sizes[t]
            ds = giant.create_lattice(grp, str(t), (L, L), tile=tile, attrs={"stage": t})
            chunks = tile_chunks((sizes[t - 1],) * 2, tile, b)
            n_tiles = len(chunks[0]) * len(chunks[1])
            bar = None
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=n_tiles, desc=f"stage {t}: {L}x{L} in {tile}x{tile} tiles", unit="tile", leave=False)
            msum = [0]
            mlock = threading.Lock()

            def on_block(block, bar=bar, msum=msum, mlock=mlock):
                # called from the store's worker threads: sum first (numpy releases the GIL), then add under a lock
                part = int(block.sum(dtype=np.int64))
                with mlock:
                    msum[0] += part
                    if bar is not None:
                        bar.update(1)

            target = giant.PackedTarget(ds, on_block=on_block)
            fine = upscale_tiled(src, model, seed=seed, stage=t, tile=tile, stream=stream, refine=refine,
                                 sweeps_per_exchange=sweeps_per_exchange, threads_per_tile=threads, session=sess)
            with dask.config.set(scheduler="threads", num_workers=workers):
                da.store(fine, target, lock=False)
            if bar is not None:
                bar.close()
            f.flush()
            src = giant.GiantLattice(f, f"stages/{t}")
            sec = time.perf_counter() - ta
            summary["stages"].append({"stage": t, "L": L, "seconds": sec, "m": msum[0] / float(L * L),
                                      "tiles": n_tiles})
            if log is not None:
                log(f"stage {t}: L={L}  {n_tiles} tiles of {tile}  m={msum[0] / float(L * L):+.6f}  ({sec:.1f} s)")
        f["spins"] = f[f"stages/{stages}"]
        f.attrs["stage_seconds"] = np.array([s["seconds"] for s in summary["stages"]], np.float64)
    summary["seconds"] = time.perf_counter() - t0
    return summary
