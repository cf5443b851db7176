"""Inverse-RG generation: grow small equilibrated lattices stage by stage with an ONNX upscaler.

One stage (:func:`upscale`) maps a batch of ``(N, Lx, Ly)`` int8 +-1 configurations to
``(N, b Lx, b Ly)``, following ``docs/UPSCALING.md``:

1. **Field**, band by band. The coarse lattice is cut into row bands of ``band_rows`` coarse rows; each
   band is padded periodically by ``halo`` coarse sites *outside* the model (from the periodic
   lattice) and run through onnxruntime, which returns the float32 field of the band's ``b * band_rows``
   fine rows. The field never exists for the whole fine lattice. All bands of a stage have the
   same shape (the last one is moved up to end at the lattice edge; rows already done are skipped).
2. **Sampling**, straight into the int8 fine lattice: fine site ``(x, y)`` of configuration ``n``
   with parent ``mu = coarse[n, x // b, y // b]`` keeps ``mu`` iff word ``k = x * Ly_out + y`` of the
   Philox stream ``(seed, streams[n], step=stage, Purpose.UPSCALE)`` is below ``T = ceil(p 2**32)``,
   with ``p = 1 / (1 + exp(-2 mu h))`` (``logit`` models) or ``(1 + mu clip(m, -A, A)) / 2``
   (``mean``). The decision depends only on the site, never on the tiling. Flipping the coarse
   input negates the field exactly (the graph is linear without bias), so ``mu h`` and ``T`` are
   unchanged and the output flips with the same counters: exact Z2 symmetry.
3. **Refinement**: ``refine`` checkerboard Metropolis sweeps at the model's ``beta`` with the
   local-update rule of :mod:`isingcore.mcmc.local` and the words of
   ``(seed, streams[n], step=(stage << 32) + half_sweep, Purpose.REFINE)``. On the CPU they run in
   place (:mod:`isingcore.backends.numba_cpu.upscale`), without a second copy of the lattice.

:func:`generate` runs the whole pipeline: seeds from an equilibrated Wolff run at ``L0``
(configuration ``n`` is replica ``n``, stream ``n``; ``20 tau`` Wolff sweeps from an ordered start,
``tau = isingcore.simulation.tau_guess("wolff", L0)``), or for ``L0 = 1`` one spin per
configuration, ``+1`` iff word 0 of ``(seed, n, 0, Purpose.INIT)`` is below ``2**31``; then
``stages`` stages, recording per stage and configuration ``c10x``, ``c10y``, ``c10`` (their mean),
``c11`` and ``|m|`` before (``raw_*``) and after the refinement.

Deterministic thresholds
------------------------
``exp`` differs in its last bits between NumPy, LLVM's libm and CUDA, which would make a few
sites per billion differ between backends. The logit threshold is therefore evaluated with basic
IEEE-754 operations only, in this order, by every backend (:func:`keep_thresholds` is the
reference): ``x = -2 (mu h)`` in float64; ``T = 1`` if ``x >= X_MAX = 40`` (then ``0 < p < 2**-32``),
``T = 2**32`` if ``x <= -40``; else ``exp(x)`` by Cody-Waite reduction ``n = floor(x / ln 2 + 1/2)``,
``r = (x - n LN2_HI) - n LN2_LO``, the degree-13 Taylor polynomial of ``e^r`` (Horner, coefficients
``1/k!``) times ``2**n`` (exact, from a table), ``p = 1 / (1 + exp(x))``, ``T = ceil(p 2**32)``.
Its relative error is a few ulp, far below the ``2**-32`` resolution of the draw. The CUDA
kernel uses non-contractible ``__dmul_rn``/``__dadd_rn`` so that no FMA changes the rounding.
The field itself comes from onnxruntime: on the CPU (MLAS) it does not depend on the band shape;
cuDNN may choose another algorithm for another band height, so GPU runs are tiling-invariant
for a fixed ``band_rows`` and agree with the CPU up to rare last-bit differences of the field.

Memory
------
CPU, one configuration: the fine lattice (1 byte per spin), the coarse one (1/b**2), one band
of float32 field (``TILE_SITES`` fine sites by default, 8 MiB) and the interpreter, Numba and
onnxruntime (about 190 MiB): 2.5 bytes per fine spin of peak RSS at 512 -> 13,824 in three stages
with 25 refinement sweeps (``tools/bench/bench_upscale.py``, 3x3 b = 3 test model).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import time
from typing import Any

import numpy as np

from .. import random as rng

__all__ = [
    "upscale",
    "sample_stage",
    "refine_stage",
    "upscale_field",
    "generate",
    "seed_configurations",
    "stage_statistics",
    "format_stage_table",
    "keep_thresholds",
    "sample_reference",
    "seed_thermalization",
    "UpscaleResult",
    "TILE_SITES",
]

# ------------------------------------------------------------------------------------------
# deterministic exp / thresholds (shared, operation for operation, with the Numba and CUDA kernels)
# ------------------------------------------------------------------------------------------
X_MAX = 40.0
INV_LN2 = 1.4426950408889634
LN2_HI = 6.93147180369123816490e-01  # ln 2 with 21 trailing zero bits: n * LN2_HI is exact for |n| < 2**11
LN2_LO = 1.90821492927058770002e-10
EXP_COEFFS = tuple(1.0 / math.factorial(k) for k in range(14))
POW2_OFFSET = 64
POW2 = np.array([2.0 ** (k - POW2_OFFSET) for k in range(2 * POW2_OFFSET + 1)], dtype=np.float64)
TWO32_F = 4294967296.0
KINDS = {"logit": 0, "mean": 1}

#: fine sites of float32 field per onnxruntime call when ``band_rows`` is not given (8 MiB)
TILE_SITES = 1 << 21


def _exp_det(x, xp):
    n = xp.floor(x * INV_LN2 + 0.5)
    r = (x - n * LN2_HI) - n * LN2_LO
    p = xp.full(x.shape, EXP_COEFFS[13], dtype=xp.float64)
    for c in EXP_COEFFS[12::-1]:
        p = p * r + c
    idx = xp.reshape(xp.astype(n, xp.int64) + POW2_OFFSET, (-1,))
    scale = xp.reshape(xp.take(xp.asarray(POW2), idx), x.shape)
    return p * scale


def keep_thresholds(mu, v, *, kind: str, clamp: float | None = None, xp=None):
    """Integer thresholds ``T`` (int64, ``0 .. 2**32``) for keeping the parent spin: ``keep iff word < T``.

    ``mu``: parent spins (int8 +-1), ``v``: field values (float32), same shape. ``kind``:
    ``"logit"`` (``p = 1/(1 + exp(-2 mu v))``, deterministic evaluation described in the module
    docstring) or ``"mean"`` (``p = (1 + mu clip(v, -A, A))/2``, ``A = clamp``). Array-API reference.
    """
    if xp is None:
        from .._array import get_namespace

        xp = get_namespace(v)
    muf = xp.astype(mu, xp.float64)
    vf = xp.astype(v, xp.float64)
    if kind == "logit":
        x = -2.0 * (muf * vf)
        xc = xp.clip(x, -X_MAX, X_MAX)
        p = 1.0 / (1.0 + _exp_det(xc, xp))
        T = xp.astype(xp.ceil(p * TWO32_F), xp.int64)
        T = xp.where(x >= X_MAX, xp.asarray(1, dtype=xp.int64), T)
        return xp.where(x <= -X_MAX, xp.asarray(1 << 32, dtype=xp.int64), T)
    if kind == "mean":
        if clamp is None:
            raise ValueError("kind='mean' needs clamp (the bound A of the conditional mean)")
        m = xp.clip(vf, -float(clamp), float(clamp))
        p = (1.0 + muf * m) * 0.5
        return xp.astype(xp.ceil(p * TWO32_F), xp.int64)
    raise ValueError(f"kind={kind!r} is not known; allowed values: 'logit', 'mean'")


def _parents(coarse, b: int, xp):
    N, Lx, Ly = coarse.shape
    c = xp.reshape(coarse, (N, Lx, 1, Ly, 1))
    c = xp.broadcast_to(c, (N, Lx, b, Ly, b))
    return xp.reshape(c, (N, b * Lx, b * Ly))


def sample_reference(field, coarse, *, scale: int, kind: str, clamp: float | None, seed: int, streams, stage: int,
                     xp=None):
    """Array-API reference of the sampling rule on whole lattices.

    ``field``: float32 ``(N, b Lx, b Ly)``; ``coarse``: int8 ``(N, Lx, Ly)``; ``streams``: uint32 ``(N,)``.
    Returns the int8 fine lattices. Non-finite field values raise ``ValueError``.
    """
    if xp is None:
        from .._array import get_namespace

        xp = get_namespace(coarse)
    N, Lx, Ly = coarse.shape
    Lfx, Lfy = scale * Lx, scale * Ly
    if not bool(xp.all(xp.isfinite(field))):
        raise ValueError("the model produced non-finite field values")
    mu = _parents(coarse, scale, xp)
    T = keep_thresholds(mu, field, kind=kind, clamp=clamp, xp=xp)
    words = rng.random_words(Lfx * Lfy, seed=seed, stream=streams, step=stage, purpose=rng.Purpose.UPSCALE, xp=xp)
    words = xp.reshape(words, (N, Lfx, Lfy))
    keep = xp.astype(words, xp.int64) < T
    return xp.where(keep, mu, -mu)


# ------------------------------------------------------------------------------------------
# validation
# ------------------------------------------------------------------------------------------
def _check_int(value, name: str, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    v = int(value)
    if v < minimum or (maximum is not None and v > maximum):
        rng_txt = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be an integer {rng_txt}, got {v}")
    return v


def _check_backend(backend: str) -> str:
    from .._array import BACKENDS

    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not supported; allowed values: {', '.join(map(repr, BACKENDS))}")
    return backend


def _check_kernel(kernel: str) -> str:
    if kernel not in ("auto", "fast", "reference"):
        raise ValueError(f"kernel={kernel!r} is not known; allowed values: 'auto', 'fast', 'reference'")
    return kernel


def _as_batch(coarse, backend: str):
    """(array on the backend, shape (N, Lx, Ly), had a batch axis). Checks int8 and +-1."""
    from .. import _array
    from ..simulation import check_spins

    shape = tuple(getattr(coarse, "shape", np.shape(coarse)))
    if len(shape) not in (2, 3):
        raise ValueError(f"coarse must have shape (N, Lx, Ly) or (Lx, Ly), got shape {shape}")
    a = check_spins(coarse, name="coarse")
    batched = a.ndim == 3
    if not batched:
        a = a[None]
    if _array.backend_of(coarse) == backend and batched:
        x = coarse
    else:
        x = _array.from_numpy(np.ascontiguousarray(a), backend)
    if backend == "numpy":
        x = np.ascontiguousarray(x)
    return x, tuple(int(v) for v in a.shape), batched


def _streams(streams, N: int):
    if streams is None:
        return np.arange(N, dtype=np.uint32)
    from .._array import to_numpy

    s = np.asarray(streams if isinstance(streams, (list, tuple, range)) else to_numpy(streams))
    if s.dtype.kind not in "iu" or s.shape != (N,):
        raise ValueError(f"streams must be an integer array of shape ({N},) (one per configuration), got {s.dtype} {s.shape}")
    if N and (s.min() < 0 or s.max() >= 1 << 32):
        raise ValueError("streams must lie in [0, 2**32)")
    return s.astype(np.uint32)


def _plan(N: int, Lx: int, Ly: int, b: int, band_rows: int | None):
    """(configurations per call, coarse rows per band)."""
    if band_rows is None:
        per_config = b * b * Lx * Ly
        if per_config <= TILE_SITES:
            return max(1, min(N, TILE_SITES // per_config)), Lx
        return 1, max(1, min(Lx, TILE_SITES // (b * b * Ly)))
    band_rows = _check_int(band_rows, "band_rows", 1)
    rows = min(band_rows, Lx)
    return max(1, min(N, TILE_SITES // (b * b * rows * Ly))), rows


def _bands(Lx: int, rows: int):
    """(first row of the computed band, first row written) for bands of equal height ``rows``."""
    out = []
    for s in range(0, Lx, rows):
        s_in = min(s, Lx - rows)
        out.append((s_in, s))
    return out


def _padded_band(coarse, n0: int, n1: int, s_in: int, rows: int, halo: int, xp):
    """float32 (n1-n0, 1, rows + 2 halo, Ly + 2 halo): coarse rows s_in-halo .. s_in+rows+halo-1, periodic."""
    N, Lx, Ly = coarse.shape
    ri = (np.arange(s_in - halo, s_in + rows + halo) % Lx).astype(np.int64)
    ci = (np.arange(-halo, Ly + halo) % Ly).astype(np.int64)
    c = coarse[n0:n1]
    if xp is None or isinstance(c, np.ndarray):
        band = np.take(np.take(c, ri, axis=1), ci, axis=2)
        return np.ascontiguousarray(band.astype(np.float32)[:, None])
    # CuPy (xp is the cupy module): array methods, which every CuPy version has
    band = c.take(xp.asarray(ri), axis=1).take(xp.asarray(ci), axis=2).astype(xp.float32)
    return xp.ascontiguousarray(band.reshape(n1 - n0, 1, rows + 2 * halo, Ly + 2 * halo))


def _run_numpy(sess, x: np.ndarray, expect: tuple) -> np.ndarray:
    (y,) = sess.run(["field"], {"coarse": x})
    if tuple(y.shape) != expect:
        raise ValueError(f"the model returned a field of shape {tuple(y.shape)} for an input of shape {x.shape}; "
                         f"expected {expect}")
    return y


# ------------------------------------------------------------------------------------------
# one stage
# ------------------------------------------------------------------------------------------
def upscale_field(coarse, model, *, band_rows: int | None = None, backend: str = "numpy"):
    """The float32 field ``(N, b Lx, b Ly)`` of the whole fine lattice (for tests and inspection; small lattices).

    Computed band by band exactly as :func:`sample_stage` does, then assembled.
    """
    from .models import load_model

    model = load_model(model)
    backend = _check_backend(backend)
    if backend == "cupy":
        raise ValueError("upscale_field runs on the CPU; pass backend='numpy'")
    x, (N, Lx, Ly), batched = _as_batch(coarse, "numpy")
    b, halo = model.scale, model.halo
    sess = model.session("numpy")
    nc, rows = _plan(N, Lx, Ly, b, band_rows)
    out = np.empty((N, b * Lx, b * Ly), np.float32)
    for n0 in range(0, N, nc):
        n1 = min(N, n0 + nc)
        for s_in, s in _bands(Lx, rows):
            y = _run_numpy(sess, _padded_band(x, n0, n1, s_in, rows, halo, None), (n1 - n0, 1, b * rows, b * Ly))
            skip = b * (s - s_in)
            out[n0:n1, b * s:b * (s_in + rows)] = y[:, 0, skip:]
    return out if batched else out[0]


def _fast_module(backend: str, kernel: str):
    """The fused upscaling kernels for the backend, or None for the array-API reference."""
    from .._array import BackendUnavailableError

    if kernel == "reference" or backend == "array_api_strict":
        if kernel == "fast":
            raise ValueError(f"kernel='fast' is not available on backend={backend!r}")
        return None
    try:
        if backend == "numpy":
            from ..backends.numba_cpu import upscale as mod
        else:
            from ..backends.cuda import upscale as mod
    except ImportError as exc:
        if kernel == "fast" or backend == "numpy":
            raise BackendUnavailableError(f"the fused upscaling kernels for backend={backend!r} cannot run here: {exc}") from exc
        return None
    return mod


class _Sessions:
    """onnxruntime sessions, one per (model bytes, backend), reused across stages."""

    def __init__(self):
        self._cache = {}

    def get(self, model, backend: str):
        device = 0
        if backend == "cupy":
            import cupy

            device = cupy.cuda.Device().id  # the current device, where the CuPy arrays live
        key = (id(model), backend, device)
        if key not in self._cache:
            self._cache[key] = (model, model.session("cupy" if backend == "cupy" else "numpy", device_id=device))
        return self._cache[key][1]


def _bar(progress, total, desc):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", leave=False)


def sample_stage(coarse, model, *, seed: int, stage: int, streams=None, backend: str = "numpy",
                 band_rows: int | None = None, kernel: str = "auto", progress: bool = False, _sessions: _Sessions | None = None):
    """Field + sampling of one stage (no refinement): ``(N, Lx, Ly)`` -> ``(N, b Lx, b Ly)`` int8.

    See :func:`upscale` for the parameters.
    """
    from .models import load_model

    model = load_model(model)
    seed = rng.check_seed(seed)
    stage = _check_int(stage, "stage", 1, (1 << 32) - 1)
    backend = _check_backend(backend)
    kernel = _check_kernel(kernel)
    x, (N, Lx, Ly), batched = _as_batch(coarse, backend)
    b, halo = model.scale, model.halo
    Lfx, Lfy = b * Lx, b * Ly
    if Lfx * Lfy > 1 << 34:
        raise ValueError(f"the fine lattice {Lfx}x{Lfy} has more than 2**34 sites (the word index k = x*Ly + y is 34-bit)")
    st = _streams(streams, N)
    fast = _fast_module(backend, kernel)
    sessions = _sessions or _Sessions()
    sess = sessions.get(model, backend)
    nc, rows = _plan(N, Lx, Ly, b, band_rows)
    bands = _bands(Lx, rows)
    bar = _bar(progress, ((N + nc - 1) // nc) * len(bands), f"stage {stage}: field + sampling {Lfx}x{Lfy}")
    if fast is None:
        from .._array import namespace, to_numpy

        xp = namespace(backend)
        field = np.empty((N, Lfx, Lfy), np.float32)
        xn = np.ascontiguousarray(to_numpy(x))
        for n0 in range(0, N, nc):
            n1 = min(N, n0 + nc)
            for s_in, s in bands:
                y = _run_numpy(sess, _padded_band(xn, n0, n1, s_in, rows, halo, None), (n1 - n0, 1, b * rows, b * Ly))
                skip = b * (s - s_in)
                field[n0:n1, b * s:b * (s_in + rows)] = y[:, 0, skip:]
                if bar is not None:
                    bar.update(1)
        out = sample_reference(xp.asarray(field), x, scale=b, kind=model.output_kind, clamp=model.clamp, seed=seed,
                               streams=xp.asarray(st), stage=stage, xp=xp)
    elif backend == "numpy":
        out = np.empty((N, Lfx, Lfy), np.int8)
        bad = 0
        for n0 in range(0, N, nc):
            n1 = min(N, n0 + nc)
            for s_in, s in bands:
                y = _run_numpy(sess, _padded_band(x, n0, n1, s_in, rows, halo, None), (n1 - n0, 1, b * rows, b * Ly))
                bad += fast.sample_rows(y[:, 0], x, out, n0=n0, x0=b * s_in, skip=b * (s - s_in), b=b,
                                        kind=KINDS[model.output_kind], clamp=model.clamp or 0.0, seed=seed, streams=st,
                                        step=stage, purpose=int(rng.Purpose.UPSCALE))
                if bar is not None:
                    bar.update(1)
        if bad:
            raise ValueError(f"the model produced {bad} non-finite field values at stage {stage}")
    else:
        out = _sample_cupy(x, model, sess, fast, st, seed, stage, nc, rows, bands, bar)
    if bar is not None:
        bar.close()
    return out if batched else out[0]


def _sample_cupy(x, model, sess, fast, st, seed, stage, nc, rows, bands, bar):
    """CuPy path: IOBinding on CuPy buffers (zero copy), sampling with the Numba-CUDA kernel."""
    import cupy

    N, Lx, Ly = x.shape
    b, halo = model.scale, model.halo
    dev = x.device.id
    out = cupy.empty((N, b * Lx, b * Ly), cupy.int8)
    d_streams = cupy.asarray(st)
    bad = cupy.zeros(1, cupy.int64)
    stream = cupy.cuda.get_current_stream()
    for n0 in range(0, N, nc):
        n1 = min(N, n0 + nc)
        for s_in, s in bands:
            inp = _padded_band(x, n0, n1, s_in, rows, halo, cupy)
            field = cupy.empty((n1 - n0, 1, b * rows, b * Ly), cupy.float32)
            io = sess.io_binding()
            io.bind_input("coarse", "cuda", dev, np.float32, tuple(inp.shape), inp.data.ptr)
            io.bind_output("field", "cuda", dev, np.float32, tuple(field.shape), field.data.ptr)
            stream.synchronize()  # onnxruntime runs on its own stream: the input must be ready
            sess.run_with_iobinding(io)
            io.synchronize_outputs()  # the field is complete before CuPy's stream reads it
            fast.sample_rows(field[:, 0], x, out, n0=n0, x0=b * s_in, skip=b * (s - s_in), b=b,
                             kind=KINDS[model.output_kind], clamp=model.clamp or 0.0, seed=seed, streams=d_streams,
                             step=stage, purpose=int(rng.Purpose.UPSCALE), bad=bad)
            if bar is not None:
                bar.update(1)
    stream.synchronize()  # the last band's field buffer is freed only after its kernel has run
    n_bad = int(bad.get()[0])
    if n_bad:
        raise ValueError(f"the model produced {n_bad} non-finite field values at stage {stage}")
    return out


def refine_stage(fine, model, *, seed: int, stage: int, refine: int = 25, streams=None, backend: str = "numpy",
                 kernel: str = "auto", progress: bool = False):
    """``refine`` checkerboard Metropolis sweeps at ``model.beta``, RNG ``(seed, streams[n], (stage << 32) + h, REFINE)``.

    ``fine``: int8 ``(N, Lx, Ly)`` (Lx, Ly even) on ``backend``; updated in place on the fast
    paths, and returned.
    """
    from ..mcmc import local
    from .models import load_model

    model = load_model(model)
    seed = rng.check_seed(seed)
    stage = _check_int(stage, "stage", 1, (1 << 32) - 1)
    refine = _check_int(refine, "refine", 0)
    backend = _check_backend(backend)
    kernel = _check_kernel(kernel)
    if refine == 0:
        return fine
    from .. import _array

    if _array.backend_of(fine) != backend:
        raise ValueError(f"fine is a {_array.backend_of(fine)} array but backend={backend!r}")
    N, Lx, Ly = fine.shape
    if Lx % 2 or Ly % 2:
        raise ValueError(f"refinement (checkerboard Metropolis) needs even lattice sizes, got {Lx}x{Ly}; "
                         "use refine=0 or a seed size / scale that gives even sizes")
    st = _streams(streams, N)
    thr = local.flip_thresholds("metropolis", model.beta)
    step0 = stage << 32
    purpose = int(rng.Purpose.REFINE)
    fast = _fast_module(backend, kernel)
    chunk = refine if not progress else max(1, refine // 10)
    bar = _bar(progress, refine, f"stage {stage}: {refine} refinement sweeps {Lx}x{Ly}")
    done = 0
    while done < refine:
        k = min(chunk, refine - done)
        step = step0 + 2 * done
        if fast is None:
            xp = _array.namespace(backend)
            fine = local.checkerboard_sweeps(fine, 2 * k, step=step, thresholds=xp.asarray(thr), seed=seed,
                                             streams=xp.asarray(st), xp=xp, purpose=purpose)
        elif backend == "numpy":
            fast.refine_sweeps(fine, 2 * k, step=step, thresholds=thr, seed=seed, streams=st, purpose=purpose)
        else:
            from ..backends.cuda import local as cuda_local
            import cupy

            fine = cuda_local.checkerboard_sweeps(fine, 2 * k, step=step, thresholds=cupy.asarray(thr), seed=seed,
                                                  streams=cupy.asarray(st), purpose=purpose)
        done += k
        if bar is not None:
            bar.update(k)
    if bar is not None:
        bar.close()
    return fine


def upscale(coarse, model, *, seed: int, stage: int, streams=None, backend: str = "numpy", refine: int = 25,
            band_rows: int | None = None, kernel: str = "auto", progress: bool = False):
    """One inverse-RG stage: ``(N, Lx, Ly)`` int8 +-1 -> ``(N, b Lx, b Ly)``, sampled then refined.

    Parameters
    ----------
    coarse : int8 array (N, Lx, Ly) or (Lx, Ly), values +-1 (NumPy, CuPy or array-api-strict)
    model : name of a shipped model, path to an ``.onnx`` file, or :class:`~isingcore.rg.models.UpscalerModel`
    seed : Philox key word 0
    stage : the stage number t >= 1 (RNG step of the sampling; refinement steps ``(t << 32) + h``)
    streams : stream (Philox key word 1) of each configuration; default ``0 .. N-1``
    backend : "numpy" (onnxruntime CPU + Numba), "cupy" (onnxruntime CUDA + Numba-CUDA) or
        "array_api_strict" (reference only)
    refine : checkerboard Metropolis sweeps at ``model.beta`` after sampling (needs even sizes when > 0)
    band_rows : coarse rows per onnxruntime call (None: about :data:`TILE_SITES` fine sites per call);
        the result does not depend on it. (Tiles of a lattice larger than memory, processed with
        Dask: :mod:`isingcore.rg.tiled`.)
    kernel : "auto" (fused kernels where there are some), "fast" or "reference" (array API)
    progress : show tqdm progress bars

    Returns the fine configurations on ``backend`` (same number of axes as ``coarse``).
    """
    refine = _check_int(refine, "refine", 0)
    fine = sample_stage(coarse, model, seed=seed, stage=stage, streams=streams, backend=backend, band_rows=band_rows,
                        kernel=kernel, progress=progress)
    if refine == 0:
        return fine
    batched = fine.ndim == 3
    f = fine if batched else fine[None]
    f = refine_stage(f, model, seed=seed, stage=stage, refine=refine, streams=streams, backend=backend,
                     kernel=kernel, progress=progress)
    return f if batched else f[0]


# ------------------------------------------------------------------------------------------
# statistics
# ------------------------------------------------------------------------------------------
def stage_statistics(spins, *, kernel: str = "auto") -> dict:
    """Per-configuration ``c10x``, ``c10y``, ``c10 = (c10x + c10y)/2``, ``c11``, ``m`` and ``abs_m`` (NumPy float64).

    Definitions of :mod:`isingcore.measure.observables`. On NumPy the fused kernel sums in int64
    without copies of the lattice (the same numbers as the reference, bit for bit).
    """
    from .. import _array

    b = _array.backend_of(spins)
    if b == "numpy" and kernel != "reference" and spins.ndim == 3:
        from ..backends.numba_cpu.upscale import lattice_sums

        s = lattice_sums(np.ascontiguousarray(spins))
        n = float(spins.shape[1] * spins.shape[2])
        m = s[:, 0].astype(np.float64) / n
        c10x = s[:, 1].astype(np.float64) / n
        c10y = s[:, 2].astype(np.float64) / n
        c11 = s[:, 3].astype(np.float64) / (2.0 * n)
    else:
        from ..measure.observables import measure

        if b == "cupy":  # one configuration at a time: the int32 temporaries of measure are 4 bytes per spin each
            rows = [measure(spins[i]) for i in range(spins.shape[0])]
            get = {k: np.array([float(_array.to_numpy(r[k])) for r in rows]) for k in ("magnetization", "c10x", "c10y", "c11")}
        else:
            res = measure(spins)
            get = {k: np.asarray(_array.to_numpy(res[k]), dtype=np.float64).reshape(-1)
                   for k in ("magnetization", "c10x", "c10y", "c11")}
        m, c10x, c10y, c11 = get["magnetization"], get["c10x"], get["c10y"], get["c11"]
    return {"c10x": c10x, "c10y": c10y, "c10": 0.5 * (c10x + c10y), "c11": c11, "m": m, "abs_m": np.abs(m)}


# ------------------------------------------------------------------------------------------
# the pipeline
# ------------------------------------------------------------------------------------------
def seed_thermalization(L0: int) -> int:
    """Wolff sweeps (from an ordered start) before the seeds are taken: ``ceil(20 tau_guess("wolff", L0))``."""
    from ..simulation import tau_guess

    return int(math.ceil(20 * tau_guess("wolff", L0)))


def seed_configurations(L0: int, *, configs: int, seed: int, beta: float, backend: str = "numpy",
                        thermalize: int | None = None, progress: bool = False):
    """Seed lattices ``(configs, L0, L0)`` int8 on ``backend`` and the thermalisation used.

    ``L0 = 1``: ``+1`` iff word 0 of ``(seed, n, 0, Purpose.INIT)`` is below ``2**31``. ``L0 >= 2``:
    replica ``n`` of ``Simulation(size=L0, beta=beta, algorithm="wolff", replicas=configs, seed=seed)``
    after ``thermalize`` sweeps (default :func:`seed_thermalization`).
    """
    from .. import _array

    L0 = _check_int(L0, "seed_size", 1)
    configs = _check_int(configs, "configs", 1, 1 << 32)
    _array.namespace(backend)  # raises now when the backend cannot run here
    if L0 == 1:
        w = rng.random_words(1, seed=seed, stream=np.arange(configs, dtype=np.uint32), step=0,
                             purpose=rng.Purpose.INIT)
        s = np.where(w < (1 << 31), 1, -1).astype(np.int8).reshape(configs, 1, 1)
        return _array.from_numpy(s, backend), 0
    from ..simulation import Simulation

    n_therm = seed_thermalization(L0) if thermalize is None else _check_int(thermalize, "thermalize", 0)
    sim = Simulation(size=L0, beta=beta, algorithm="wolff", replicas=configs, seed=seed, backend=backend)
    sim.sweep(n_therm, progress=progress)
    spins = sim.spins
    if backend == "numpy":
        spins = np.ascontiguousarray(spins)
    return spins, n_therm


@dataclasses.dataclass
class UpscaleResult:
    """What :func:`generate` returns.

    ``spins``: the final configurations ``(configs, L, L)`` int8 on the backend; ``history``: one
    dict per stage (stage 0 = the seeds) with ``stage``, ``L``, ``seconds`` and per-configuration
    float64 arrays ``c10x``, ``c10y``, ``c10``, ``c11``, ``m``, ``abs_m`` (after refinement) and
    ``raw_c10``, ``raw_c11``, ``raw_abs_m`` (before it).
    """

    spins: Any
    history: list
    model: Any
    seed_size: int
    stages: int
    refine: int
    seed: int
    thermalization: int
    seed_algorithm: str

    def summary(self) -> list[dict]:
        """Per-stage means and standard errors (JSON-friendly)."""
        return [_stage_summary(h) for h in self.history]


def _mean_err(a) -> tuple[float, float | None]:
    a = np.asarray(a, dtype=np.float64)
    if a.size == 0:
        return float("nan"), None
    err = float(a.std(ddof=1) / math.sqrt(a.size)) if a.size > 1 else None
    return float(a.mean()), err


def _stage_summary(h: dict) -> dict:
    out = {"stage": h["stage"], "L": h["L"], "seconds": h["seconds"]}
    for k in ("c10x", "c10y", "c10", "c11", "abs_m", "raw_c10", "raw_c11", "raw_abs_m"):
        m, e = _mean_err(h[k])
        out[k] = m
        out[k + "_err"] = e
    return out


def generate(model, *, seed_size: int, stages: int, refine: int = 25, configs: int = 1, seed: int = 0,
             backend: str = "numpy", progress: bool = False, band_rows: int | None = None, kernel: str = "auto",
             thermalize: int | None = None, log=None) -> UpscaleResult:
    """Seeds at ``L0 = seed_size``, then ``stages`` stages of :func:`upscale`; returns an :class:`UpscaleResult`.

    ``configs`` configurations, configuration ``n`` on RNG stream ``n``. ``thermalize``: Wolff sweeps
    for the seeds (default :func:`seed_thermalization`). ``log``: a callable that receives one line
    per finished stage (e.g. ``print``).
    """
    from .models import load_model

    model = load_model(model)
    seed = rng.check_seed(seed)
    L0 = _check_int(seed_size, "seed_size", 1)
    stages = _check_int(stages, "stages", 1)
    refine = _check_int(refine, "refine", 0)
    configs = _check_int(configs, "configs", 1, 1 << 32)
    backend = _check_backend(backend)
    kernel = _check_kernel(kernel)
    b = model.scale
    sizes = [L0 * b**t for t in range(stages + 1)]
    if sizes[-1] ** 2 > 1 << 34:
        raise ValueError(f"{stages} stages from seed_size={L0} with scale {b} give L={sizes[-1]}: more than 2**34 sites")
    if refine > 0:
        odd = [L for L in sizes[1:] if L % 2]
        if odd:
            raise ValueError(f"refine={refine} needs even lattice sizes, but seed_size={L0} with scale {b} gives "
                             f"L={odd[0]}; use an even seed size or refine=0")
    streams = np.arange(configs, dtype=np.uint32)
    t0 = time.perf_counter()
    spins, n_therm = seed_configurations(L0, configs=configs, seed=seed, beta=model.beta, backend=backend,
                                         thermalize=thermalize, progress=progress)
    stats = stage_statistics(spins, kernel=kernel)
    history = [{"stage": 0, "L": L0, "seconds": {"seed": time.perf_counter() - t0}, **stats,
                "raw_c10": stats["c10"], "raw_c11": stats["c11"], "raw_abs_m": stats["abs_m"]}]
    if log is not None:
        log(_stage_line(history[-1]))
    sessions = _Sessions()
    for t in range(1, stages + 1):
        ta = time.perf_counter()
        fine = sample_stage(spins, model, seed=seed, stage=t, streams=streams, backend=backend, band_rows=band_rows,
                            kernel=kernel, progress=progress, _sessions=sessions)
        del spins  # the coarse lattice is no longer needed (keeps the peak memory at one fine lattice)
        tb = time.perf_counter()
        raw = stage_statistics(fine, kernel=kernel)
        tc = time.perf_counter()
        fine = refine_stage(fine, model, seed=seed, stage=t, refine=refine, streams=streams, backend=backend,
                            kernel=kernel, progress=progress)
        if backend == "cupy":
            from .._array import synchronize

            synchronize(fine)
        td = time.perf_counter()
        stats = stage_statistics(fine, kernel=kernel) if refine else raw
        te = time.perf_counter()
        history.append({"stage": t, "L": sizes[t],
                        "seconds": {"sample": tb - ta, "refine": td - tc, "statistics": (tc - tb) + (te - td),
                                    "total": te - ta},
                        **stats, "raw_c10": raw["c10"], "raw_c11": raw["c11"], "raw_abs_m": raw["abs_m"]})
        if log is not None:
            log(_stage_line(history[-1]))
        spins = fine
    return UpscaleResult(spins=spins, history=history, model=model, seed_size=L0, stages=stages, refine=refine,
                         seed=seed, thermalization=n_therm, seed_algorithm="single-spin" if L0 == 1 else "wolff")


def _stage_line(h: dict) -> str:
    s = _stage_summary(h)
    sec = h["seconds"].get("total", h["seconds"].get("seed", 0.0))
    return (f"stage {s['stage']}: L={s['L']}  c10={s['c10']:.6f}  c11={s['c11']:.6f}  |m|={s['abs_m']:.6f}  "
            f"({sec:.2f} s)")


def _fmt(m: float, e: float | None) -> str:
    if e is None or not math.isfinite(e) or e == 0:
        return f"{m:.6f}"
    from ..measure.autocorrelation import format_value_error

    return format_value_error(m, e)


def format_stage_table(result: UpscaleResult | list) -> str:
    """The per-stage table printed by ``isingcore upscale``: means (standard errors) over the configurations."""
    history = result.history if isinstance(result, UpscaleResult) else result
    head = f"{'stage':>5} {'L':>7}  {'c10 (raw)':>14} {'c10':>14} {'c10x':>14} {'c10y':>14} {'c11':>14} {'|m|':>14} {'s':>8}"
    lines = [head, "-" * len(head)]
    for h in history:
        s = _stage_summary(h)
        sec = h["seconds"].get("total", h["seconds"].get("seed", 0.0))
        lines.append(f"{s['stage']:>5} {s['L']:>7}  {_fmt(s['raw_c10'], s['raw_c10_err']):>14} "
                     f"{_fmt(s['c10'], s['c10_err']):>14} {_fmt(s['c10x'], s['c10x_err']):>14} "
                     f"{_fmt(s['c10y'], s['c10y_err']):>14} {_fmt(s['c11'], s['c11_err']):>14} "
                     f"{_fmt(s['abs_m'], s['abs_m_err']):>14} {sec:>8.2f}")
    lines.append(f"critical point, L -> infinity: c10 = 1/sqrt(2) = {1 / math.sqrt(2):.6f}, c11 = 2/pi = {2 / math.pi:.6f}")
    return "\n".join(lines)
