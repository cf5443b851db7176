"""Inverse-RG sampling on a CUDA GPU (Numba-CUDA): the rule of :func:`isingcore.rg.upscale.sample_reference`.

Importing raises ``ImportError`` without numba-cuda or a usable device (unless the CUDA simulator
is enabled with ``NUMBA_ENABLE_CUDASIM=1``), like :mod:`isingcore.backends.cuda.local`; the
refinement uses :func:`isingcore.backends.cuda.local.checkerboard_sweeps` with ``purpose=REFINE``.

One thread per Philox block: block ``g`` of the stream ``(seed, streams[n], stage, UPSCALE)``
gives the words ``4g .. 4g+3``, i.e. those of the fine sites ``k = x * Ly + y = 4g .. 4g+3`` (which
may straddle two rows). A launch covers the fine rows ``x0 + skip .. x0 + H - 1`` of a band of
``Nc`` configurations (grid ``(blocks, configurations)``), reading the band's float32 field
``(Nc, H, Ly)`` and the whole coarse lattice, writing the int8 fine lattice. A *tile* of a larger
lattice (``offset``, ``global_ly``: :mod:`isingcore.rg.tiled`) uses the global words, whose rows are
not contiguous: there one thread handles one Philox block of one row (:func:`_sample_tile_kernel`).

The keep threshold is computed with libdevice's ``__dmul_rn``, ``__dadd_rn`` and ``__ddiv_rn``,
which NVVM never contracts into fused multiply-adds, so it equals the CPU's bit for bit
(:func:`isingcore.backends.numba_cpu.upscale.keep_threshold`, same operations in the same order).
Non-finite field values leave their site unwritten and are counted in ``bad[0]``.
"""

from __future__ import annotations

import math

import numpy as np

from ._runtime import SIMULATOR, cuda  # raises ImportError when CUDA cannot run here
from ._runtime import configure as _configure
from ._runtime import is_cupy as _is_cupy

from isingcore.rg.upscale import EXP_COEFFS, INV_LN2, LN2_HI, LN2_LO, POW2, POW2_OFFSET, TWO32_F, X_MAX  # noqa: E402
from isingcore.random import MASK32  # noqa: E402

from .philox import stream_block  # noqa: E402

KIND_LOGIT = 0
KIND_MEAN = 1
TPB = 256
MAX_GRID_Y = 65535
_C = tuple(float(c) for c in EXP_COEFFS)
_T_ONE = np.int64(1)
_T_ALL = np.int64(1 << 32)

if SIMULATOR:

    @cuda.jit(device=True)
    def _mul(a, b):
        return a * b

    @cuda.jit(device=True)
    def _add(a, b):
        return a + b

    @cuda.jit(device=True)
    def _div(a, b):
        return a / b

else:

    @cuda.jit(device=True, inline="always")
    def _mul(a, b):
        """a * b rounded to nearest, never fused into an FMA."""
        return cuda.libdevice.dmul_rn(a, b)

    @cuda.jit(device=True, inline="always")
    def _add(a, b):
        return cuda.libdevice.dadd_rn(a, b)

    @cuda.jit(device=True, inline="always")
    def _div(a, b):
        return cuda.libdevice.ddiv_rn(a, b)


@cuda.jit(device=True, inline="always")
def _exp_det(x, pow2):
    n = math.floor(_add(_mul(x, INV_LN2), 0.5))
    nf = np.float64(n)
    r = _add(_add(x, -_mul(nf, LN2_HI)), -_mul(nf, LN2_LO))
    p = _C[13]
    p = _add(_mul(p, r), _C[12])
    p = _add(_mul(p, r), _C[11])
    p = _add(_mul(p, r), _C[10])
    p = _add(_mul(p, r), _C[9])
    p = _add(_mul(p, r), _C[8])
    p = _add(_mul(p, r), _C[7])
    p = _add(_mul(p, r), _C[6])
    p = _add(_mul(p, r), _C[5])
    p = _add(_mul(p, r), _C[4])
    p = _add(_mul(p, r), _C[3])
    p = _add(_mul(p, r), _C[2])
    p = _add(_mul(p, r), _C[1])
    p = _add(_mul(p, r), _C[0])
    return _mul(p, pow2[np.int64(n) + POW2_OFFSET])


@cuda.jit(device=True, inline="always")
def _threshold(mu, v, kind, clamp, pow2):
    if kind == KIND_LOGIT:
        x = -2.0 * (np.float64(mu) * np.float64(v))  # exact: products with +-1 and -2
        if x >= X_MAX:
            return _T_ONE
        if x <= -X_MAX:
            return _T_ALL
        p = _div(1.0, _add(1.0, _exp_det(x, pow2)))
    else:
        m = np.float64(v)
        m = m if m > -clamp else -clamp
        m = m if m < clamp else clamp
        p = _mul(_add(1.0, np.float64(mu) * m), 0.5)
    return np.int64(math.ceil(p * TWO32_F))  # times a power of two: exact


@cuda.jit(device=True, inline="always")
def _site(field, coarse, fine, nl, n, k, x0, Lcx, Lcy, H, Ly, b, kind, clamp, word, pow2, bad):
    x = np.int64(np.uint64(k) // np.uint64(Ly))
    y = k - x * Ly
    v = field[np.uint64((nl * H + (x - x0)) * Ly + y)]
    if not math.isfinite(v):
        cuda.atomic.add(bad, 0, 1)
        return
    mu = np.int32(coarse[np.uint64((n * Lcx + x // b) * Lcy + y // b)])
    T = _threshold(mu, v, kind, clamp, pow2)
    fine[np.uint64(n * (b * Lcx) * Ly + k)] = np.int8(mu if np.int64(word) < T else -mu)


@cuda.jit
def _sample_kernel(field, coarse, fine, Nc, H, Ly, Lcx, Lcy, n0, x0, skip, b, kind, clamp, seed, streams, slo, shi,
                   purpose, pow2, bad):
    """field (Nc*H*Ly,) float32, coarse (N*Lcx*Lcy,) int8, fine (N*b*Lcx*Ly,) int8, all flat."""
    k_start = (x0 + skip) * Ly
    k_end = (x0 + H) * Ly
    g = (k_start >> 2) + np.int64(cuda.blockIdx.x) * np.int64(cuda.blockDim.x) + np.int64(cuda.threadIdx.x)
    if 4 * g >= k_end:
        return
    nl = np.int64(cuda.blockIdx.y)
    while nl < Nc:
        n = n0 + nl
        w0, w1, w2, w3 = stream_block(g, slo, shi, purpose, seed, streams[n])
        for q in range(4):
            k = 4 * g + q
            if k >= k_start and k < k_end:
                w = w0 if q == 0 else (w1 if q == 1 else (w2 if q == 2 else w3))
                _site(field, coarse, fine, nl, n, k, x0, Lcx, Lcy, H, Ly, b, kind, clamp, w, pow2, bad)
        nl += np.int64(cuda.gridDim.y)


@cuda.jit
def _sample_tile_kernel(field, coarse, fine, Nc, H, Ly, Lcx, Lcy, n0, x0, skip, b, kind, clamp, seed, streams, slo,
                        shi, purpose, pow2, bad, gx0, gy0, gLy, nbr):
    """:func:`_sample_kernel` for a tile: local site (x, y) takes word ``(gx0 + x) gLy + gy0 + y``.

    A tile's rows are not contiguous in the global word order, so thread ``t`` handles Philox
    block ``(first >> 2) + q`` of fine row ``x0 + skip + t // nbr`` (``q = t mod nbr``, ``first`` the
    row's first global word): ``nbr`` blocks cover a row of ``Ly`` words.
    """
    t = np.int64(cuda.blockIdx.x) * np.int64(cuda.blockDim.x) + np.int64(cuda.threadIdx.x)
    if t >= (H - skip) * nbr:
        return
    xr = np.int64(np.uint64(t) // np.uint64(nbr))
    q = t - xr * nbr
    x = x0 + skip + xr
    first = (gx0 + x) * gLy + gy0
    g = (first >> 2) + q
    if 4 * g >= first + Ly:
        return
    nl = np.int64(cuda.blockIdx.y)
    while nl < Nc:
        n = n0 + nl
        w0, w1, w2, w3 = stream_block(g, slo, shi, purpose, seed, streams[n])
        for lane in range(4):
            y = 4 * g + lane - first
            if y >= 0 and y < Ly:
                w = w0 if lane == 0 else (w1 if lane == 1 else (w2 if lane == 2 else w3))
                _site(field, coarse, fine, nl, n, x * Ly + y, x0, Lcx, Lcy, H, Ly, b, kind, clamp, w, pow2, bad)
        nl += np.int64(cuda.gridDim.y)


_POW2 = {}


def _pow2_table(like):
    """POW2 on the device of ``like`` (cached per device); NumPy under the simulator."""
    if SIMULATOR or not _is_cupy(like):
        return POW2
    import cupy

    dev = like.device.id
    if dev not in _POW2:
        with cupy.cuda.Device(dev):
            _POW2[dev] = cupy.asarray(POW2)
    return _POW2[dev]


def _threads(n):
    return min(TPB, max(1, n) if SIMULATOR else 32 * ((n + 31) // 32))


def sample_rows(field, coarse, fine, *, n0, x0, skip, b, kind, clamp, seed, streams, step, purpose, bad,
                offset=(0, 0), global_ly=None):
    """GPU counterpart of :func:`isingcore.backends.numba_cpu.upscale.sample_rows` (in place on ``fine``).

    ``field``: float32 (Nc, H, Ly) (C-contiguous rows; a view ``y[:, 0]`` of the model output is
    fine), ``coarse``: int8 (N, Lx, Ly_c), ``fine``: int8 (N, b Lx, Ly), ``streams``: uint32 (N,),
    ``bad``: int64 (1,) counter of non-finite values. CuPy arrays run on CuPy's current stream
    without host synchronisation; under the simulator NumPy arrays.
    Tiles (the semantics of the CPU kernel): ``fine`` (and ``coarse``, its parents) may be a tile of a
    larger lattice with ``global_ly`` columns whose local site (0, 0) is global site ``offset = (X0,
    Y0)`` (multiples of b); site (x, y) then uses word ``(X0 + x) global_ly + Y0 + y``, the word of
    the untiled lattice. Defaults: the untiled lattice.
    """
    Nc, H, Ly = (int(v) for v in field.shape)
    N, Lcx, Lcy = (int(v) for v in coarse.shape)
    gx0, gy0 = (int(v) for v in offset)
    gly = Ly if global_ly is None else int(global_ly)
    if gx0 < 0 or gy0 < 0 or gy0 + Ly > gly:
        raise ValueError(f"offset={tuple(offset)} with global_ly={gly} does not hold a tile of {Ly} columns")
    tiled = (gx0, gy0, gly) != (0, 0, Ly)
    if Nc == 0 or H - skip <= 0:
        return
    args_tail = (np.int64(Nc), np.int64(H), np.int64(Ly), np.int64(Lcx), np.int64(Lcy), np.int64(n0), np.int64(x0),
                 np.int64(skip), np.int64(b), np.int64(kind), np.float64(clamp), np.uint32(seed))
    if tiled:
        nbr = (Ly + 2) // 4 + 1  # Philox blocks touched by a row of Ly words, whatever its alignment
        n_threads = (H - skip) * nbr
        kernel, extra = _sample_tile_kernel, (np.int64(gx0), np.int64(gy0), np.int64(gly), np.int64(nbr))
    else:
        k_start = (x0 + skip) * Ly
        k_end = (x0 + H) * Ly
        n_threads = ((k_end - 1) >> 2) - (k_start >> 2) + 1
        kernel, extra = _sample_kernel, ()
    tpb = _threads(n_threads)
    grid = ((n_threads + tpb - 1) // tpb, min(Nc, MAX_GRID_Y))
    slo, shi = np.uint32(int(step) & MASK32), np.uint32(int(step) >> 32)
    if SIMULATOR:
        f = np.ascontiguousarray(field, dtype=np.float32).reshape(-1)
        _configure(kernel, grid, tpb, 0)(f, coarse.reshape(-1), fine.reshape(-1), *args_tail,
                                         np.ascontiguousarray(streams, dtype=np.uint32), slo, shi,
                                         np.uint32(purpose), POW2, bad, *extra)
        return
    import cupy

    with cupy.cuda.Device(fine.device.id), cuda.gpus[fine.device.id]:
        cp_stream = cupy.cuda.get_current_stream()
        stream = cuda.external_stream(cp_stream.ptr) if cp_stream.ptr else cuda.default_stream()
        f = field if field.flags.c_contiguous else cupy.ascontiguousarray(field)
        dev = [cuda.as_cuda_array(a.reshape(-1), sync=False) for a in (f, coarse, fine)]
        d_streams = cuda.as_cuda_array(streams, sync=False)
        d_bad = cuda.as_cuda_array(bad, sync=False)
        d_pow2 = cuda.as_cuda_array(_pow2_table(fine), sync=False)
        _configure(kernel, grid, tpb, stream)(*dev, *args_tail, d_streams, slo, shi, np.uint32(purpose), d_pow2, d_bad,
                                              *extra)


__all__ = ["sample_rows", "SIMULATOR"]
