"""Fused checkerboard Metropolis / heat bath on a CUDA GPU (Numba-CUDA).

Same decisions, bit for bit, as :func:`isingcore.mcmc.local.checkerboard_half_sweep` (and the
Numba CPU kernel ``isingcore.backends.numba_cpu.local``). Importing this module raises
``ImportError`` when Numba-CUDA or a usable CUDA device is missing (unless the CUDA simulator is
enabled with ``NUMBA_ENABLE_CUDASIM=1``); :class:`isingcore.Simulation` relies on that.

Layout
------
Spins ``(R, Lx, Ly)`` int8 +-1 are split once per :func:`checkerboard_sweeps` call into the two
colour sublattices ``sub[c]`` of shape ``(R, Lx, Ly/2)`` (``half = Ly/2``), with

    sub[c][r, i, m] = spin at (i, j = 2m + ((i + c) & 1)).

All half-sweeps then run on these arrays on the device and the result is merged back at the end.

Random words
------------
The reference gives site (i, j) word ``k = (i*Ly + j) // 2 = i*half + m`` of the stream
``(seed, streams[r], step, Purpose.LOCAL)``: in the sublattice layout, the word index *is* the flat
index ``k`` of the site in ``sub[c][r]``. One Philox call (block ``g``) yields the words
``4g .. 4g+3``, i.e. those of the four consecutive sublattice sites ``k = 4g .. 4g+3``, so each
thread handles one such *group* of four sites. When ``half`` is not a multiple of 4 a group can
straddle two rows (and the last group of a replica can be partial): the generic kernels walk
``(i, m)`` site by site. When ``half % 4 == 0`` every group is one aligned 4-byte word of a row and
the packed kernels work on ``uint32`` views (four spins per load, SWAR neighbour counts).

Neighbours
----------
The active site ``(i, m)`` of colour ``c`` has ``j = 2m + p`` with ``p = (i + c) & 1``. Its four
neighbours lie in the other sublattice ``o``: ``o[i-1, m]`` and ``o[i+1, m]`` (the rows above and
below have the other colour at the same ``m``), ``o[i, m]``, and ``o[i, m+1]`` if ``p = 1`` or
``o[i, m-1]`` if ``p = 0``; all indices periodic.

Kernels
-------
* *grid* kernels: one launch per half-sweep, one thread per group, a 2-D grid (groups, replicas).
  Used for large lattices.
* *block* kernels: one launch for all half-sweeps; one thread block per replica loops over the
  half-sweeps with ``syncthreads`` between them. Used for small lattices (launch cost dominates).
* *tile* kernels (grid and block forms): a tile of a larger periodic lattice (``offset``,
  ``global_shape``; :mod:`isingcore.rg.tiled`). Colours and words are those of the global site, so
  the sublattice split uses the tile's colour parity, and one thread takes up to four consecutive
  active sites of a row, computing their global words (one or two Philox blocks, three at a wrap).

Indices are computed in int64 and cast to uint64 at the array access: Numba adds a negative-index
wrap-around to every signed index, and mixing uint64 with int64 arithmetic gives float64.
"""

from __future__ import annotations

import numbers

import numpy as np

from ._runtime import SIMULATOR, cuda  # raises ImportError when CUDA cannot run here
from ._runtime import check_spin_batch
from ._runtime import configure as _configure
from ._runtime import is_cupy as _is_cupy


from isingcore.random import MASK32, Purpose, check_seed  # noqa: E402

from .philox import stream_block  # noqa: E402

PURPOSE_LOCAL = int(Purpose.LOCAL)
TPB = 256  #: threads per block of the grid kernels (and of the block kernels for many replicas)
TPB_BLOCK_FEW = 512  #: threads per block of the block kernels when there are fewer replicas than SMs
BLOCK_MAX_SITES = 16384  #: method="auto" uses the block kernels up to this many sites per colour and replica
MAX_GRID_Y = 65535

_U32_LSB = np.uint32(0x01010101)  # bit 0 of every byte
_U32_BYTE = np.uint32(0xFF)
_U32_FLIP = np.uint32(0xFE)  # int8 +1 (0x01) <-> -1 (0xFF): xor with 0xFE
_U32_NINES = np.uint32(0x09090909)
_U32_5 = np.uint32(5)
_U32_7 = np.uint32(7)
_U32_8 = np.uint32(8)
_U32_24 = np.uint32(24)
_U64_1 = np.uint64(1)
_U64_32 = np.uint64(32)
_U64_MASK = np.uint64(MASK32)


# ------------------------------------------------------------------------------------------
# device functions: one group of four sublattice sites
# ------------------------------------------------------------------------------------------
@cuda.jit(device=True, inline="always")
def _load_thresholds(thr_global):
    """Copy the 10 flip thresholds into shared memory (blocks have >= 10 threads; syncs the block)."""
    thr = cuda.shared.array(10, dtype=np.int64)
    t = cuda.threadIdx.x
    if t < 10:
        thr[t] = thr_global[t]
    cuda.syncthreads()
    return thr


@cuda.jit(device=True, inline="always")
def _update_site(act, oth, base, i, m, Lx, half, colour, word, thr):
    """Decide the active site (i, m) of the replica starting at flat offset ``base`` (int8 arrays)."""
    row = base + i * half
    up = base + (i - 1 if i > 0 else Lx - 1) * half
    dn = base + (i + 1 if i + 1 < Lx else 0) * half
    if ((i + colour) & 1) == 1:  # active site at odd j = 2m+1: side neighbours o[i, m], o[i, m+1]
        ms = m + 1 if m + 1 < half else 0
    else:  # even j = 2m: side neighbours o[i, m-1], o[i, m]
        ms = m - 1 if m > 0 else half - 1
    s = np.int32(act[np.uint64(row + m)])
    nb = (np.int32(oth[np.uint64(up + m)]) + np.int32(oth[np.uint64(dn + m)])
          + np.int32(oth[np.uint64(row + m)]) + np.int32(oth[np.uint64(row + ms)]))
    T = thr[np.uint32(((s + 1) >> 1) * 5 + ((nb + 4) >> 1))]  # thresholds[5*s_index + n_index]
    if np.int64(word) < T:
        act[np.uint64(row + m)] = np.int8(-s)


@cuda.jit(device=True, inline="always")
def _group_generic(act, oth, r, g, colour, slo, shi, seed, stream, thr, purpose, geo):
    """Sites k = 4g .. 4g+3 (flat sublattice index of replica r; may straddle rows, may be partial).

    ``geo = (Lx, half)``.
    """
    Lx, half = geo
    w0, w1, w2, w3 = stream_block(g, slo, shi, purpose, seed, stream)
    base = r * Lx * half
    k = 4 * g
    i = np.int64(np.uint64(k) // np.uint64(half))  # row and column of site k (unsigned division is
    m = k - i * half  # cheaper); the next sites follow with m += 1, wrapping to the next row
    _update_site(act, oth, base, i, m, Lx, half, colour, w0, thr)
    for q in range(1, 4):
        m += 1
        if m == half:
            m = 0
            i += 1
        if i < Lx:  # else: past the last site of the replica (partial last group)
            w = w1 if q == 1 else (w2 if q == 2 else w3)
            _update_site(act, oth, base, i, m, Lx, half, colour, w, thr)


@cuda.jit(device=True, inline="always")
def _group_packed(act, oth, r, g, colour, slo, shi, seed, stream, thr, purpose, geo):
    """Word g = i*nw + j of the uint32 views (half = 4*nw, ``geo = (Lx, nw)``): sites 4g .. 4g+3 are its bytes 0..3.

    A spin byte is 0x01 (+1) or 0xFF (-1); its bit 7 is 1 for -1. Per byte q the number of -1
    neighbours ``cnt`` (0..4) is a sum of bit-7 extracts of four words, so n = 4 - 2 cnt,
    n_index = 4 - cnt and the threshold index is ``5*s_index + n_index = 9 - 5*neg - cnt``.
    """
    Lx, nw = geo
    w0, w1, w2, w3 = stream_block(g, slo, shi, purpose, seed, stream)
    base = r * Lx * nw
    i = np.int64(np.uint64(g) // np.uint64(nw))  # row i, word j of the row
    j = g - i * nw
    row = base + i * nw
    up = base + (i - 1 if i > 0 else Lx - 1) * nw
    dn = base + (i + 1 if i + 1 < Lx else 0) * nw
    a = act[np.uint64(row + j)]
    u = oth[np.uint64(up + j)]
    d = oth[np.uint64(dn + j)]
    c = oth[np.uint64(row + j)]
    # side neighbours: byte q needs o[m0+q+1] (p = 1) or o[m0+q-1] (p = 0), m0 = 4j; shift the
    # word by one byte and fill in from the adjacent word (periodic in j)
    if ((i + colour) & 1) == 1:
        jn = j + 1 if j + 1 < nw else 0
        sw = np.uint32((c >> _U32_8) | np.uint32((oth[np.uint64(row + jn)] & _U32_BYTE) << _U32_24))
    else:
        jp = j - 1 if j > 0 else nw - 1
        sw = np.uint32(np.uint32(c << _U32_8) | (oth[np.uint64(row + jp)] >> _U32_24))
    cnt = np.uint32(((u >> _U32_7) & _U32_LSB) + ((d >> _U32_7) & _U32_LSB)
                    + ((c >> _U32_7) & _U32_LSB) + ((sw >> _U32_7) & _U32_LSB))
    neg = np.uint32((a >> _U32_7) & _U32_LSB)
    # all four indices at once, byte-wise (every byte stays in 0..9, so no borrows between bytes)
    idx = np.uint32(np.uint32(_U32_NINES - np.uint32(neg * _U32_5)) - cnt)
    flip = np.uint32(0)
    for q in range(4):
        sh = np.uint32(8 * q)
        w = w0 if q == 0 else (w1 if q == 1 else (w2 if q == 2 else w3))
        if np.int64(w) < thr[np.uint32((idx >> sh) & _U32_BYTE)]:
            flip = np.uint32(flip | np.uint32(_U32_FLIP << sh))
    if flip != 0:
        act[np.uint64(row + j)] = np.uint32(a ^ flip)


# ------------------------------------------------------------------------------------------
# kernels
# ------------------------------------------------------------------------------------------
def _make_loops(group, purpose):
    """The grid and block loops over ``group`` (device functions; ``purpose``, counter word 3, is a
    compile-time constant), shared by the whole-lattice and the tile kernels.

    ``group(act, oth, r, g, colour, slo, shi, seed, stream, thr, purpose, geo)`` updates group ``g``
    of replica ``r``; ``geo`` is the tuple of geometry arguments the kernel passes through.
    """
    purpose = np.uint32(purpose)

    @cuda.jit(device=True, inline="always")
    def half_sweep(act, oth, n_groups, thresholds, seed, streams, slo, shi, colour, geo):
        """One half-sweep: thread (x, y) -> group g of replica r = y, y + gridDim.y, ..."""
        thr = _load_thresholds(thresholds)
        R = streams.shape[0]
        g = np.int64(cuda.blockIdx.x) * np.int64(cuda.blockDim.x) + np.int64(cuda.threadIdx.x)
        if g < n_groups:
            r = np.int64(cuda.blockIdx.y)
            while r < R:  # (a while loop: range() with a step computes a trip count by division)
                group(act, oth, r, g, colour, slo, shi, seed, streams[r], thr, purpose, geo)
                r += np.int64(cuda.gridDim.y)

    @cuda.jit(device=True, inline="always")
    def sweeps(a, b, n_groups, thresholds, seed, streams, step0, n_half, geo):
        """All half-sweeps: block x -> replicas x, x + gridDim.x, ...; threads loop over groups."""
        thr = _load_thresholds(thresholds)
        R = streams.shape[0]
        r = np.int64(cuda.blockIdx.x)
        while r < R:
            stream = streams[r]
            for t in range(n_half):
                st = step0 + np.uint64(t)
                slo = np.uint32(st & _U64_MASK)
                shi = np.uint32(st >> _U64_32)
                colour = np.int64(st & _U64_1)
                act = a if colour == 0 else b
                oth = b if colour == 0 else a
                g = np.int64(cuda.threadIdx.x)
                while g < n_groups:
                    group(act, oth, r, g, colour, slo, shi, seed, stream, thr, purpose, geo)
                    g += np.int64(cuda.blockDim.x)
                cuda.syncthreads()  # the next half-sweep reads what this one wrote
            r += np.int64(cuda.gridDim.x)

    return half_sweep, sweeps


def _make_kernels(group, purpose=PURPOSE_LOCAL):
    """(grid, block) kernels over ``group`` (:func:`_group_generic` or :func:`_group_packed`)."""
    half_sweep, sweeps = _make_loops(group, purpose)

    @cuda.jit
    def grid(act, oth, Lx, row_len, n_groups, thresholds, seed, streams, slo, shi, colour):
        """One half-sweep (one launch per half-sweep)."""
        half_sweep(act, oth, n_groups, thresholds, seed, streams, slo, shi, colour, (Lx, row_len))

    @cuda.jit
    def block(a, b, Lx, row_len, n_groups, thresholds, seed, streams, step0, n_half):
        """All half-sweeps (one launch)."""
        sweeps(a, b, n_groups, thresholds, seed, streams, step0, n_half, (Lx, row_len))

    return grid, block


_grid_generic, _block_generic = _make_kernels(_group_generic)
_grid_packed, _block_packed = _make_kernels(_group_packed)
_KERNELS = {PURPOSE_LOCAL: (_grid_generic, _grid_packed, _block_generic, _block_packed)}


def _kernels(purpose: int):
    """(grid generic, grid packed, block generic, block packed) for a counter word 3, compiled on first use."""
    if purpose not in _KERNELS:
        (grid_generic, block_generic), (grid_packed, block_packed) = (_make_kernels(_group_generic, purpose),
                                                                      _make_kernels(_group_packed, purpose))
        _KERNELS[purpose] = (grid_generic, grid_packed, block_generic, block_packed)
    return _KERNELS[purpose]


# ------------------------------------------------------------------------------------------
# tiles of a larger periodic lattice (isingcore.rg.tiled): global colours and words
# ------------------------------------------------------------------------------------------
@cuda.jit(device=True, inline="always")
def _update_site_p(act, oth, base, i, m, Lx, half, p, word, thr):
    """:func:`_update_site` with the row's first active column ``p`` given (tiles: ``p = (i + par + colour) & 1``)."""
    row = base + i * half
    up = base + (i - 1 if i > 0 else Lx - 1) * half
    dn = base + (i + 1 if i + 1 < Lx else 0) * half
    if p == 1:  # active site at odd local j = 2m+1: side neighbours o[i, m], o[i, m+1]
        ms = m + 1 if m + 1 < half else 0
    else:
        ms = m - 1 if m > 0 else half - 1
    s = np.int32(act[np.uint64(row + m)])
    nb = (np.int32(oth[np.uint64(up + m)]) + np.int32(oth[np.uint64(dn + m)])
          + np.int32(oth[np.uint64(row + m)]) + np.int32(oth[np.uint64(row + ms)]))
    T = thr[np.uint32(((s + 1) >> 1) * 5 + ((nb + 4) >> 1))]
    if np.int64(word) < T:
        act[np.uint64(row + m)] = np.int8(-s)


@cuda.jit(device=True, inline="always")
def _group_tile(act, oth, r, g, colour, slo, shi, seed, stream, thr, purpose, geo):
    """Active sites m = 4q .. 4q+3 (< half) of local row i of a tile, ``g = i*nq + q``;
    ``geo = (Lx, half, nq, par, gx0, gy0, gLx, gLy)``.

    Local site (i, j) is global site ``((gx0 + i) mod gLx, (gy0 + j) mod gLy)``: its colour and its
    word ``(x gLy + y) // 2`` are the global ones (as in the CPU kernel,
    ``isingcore.backends.numba_cpu.local``); neighbours wrap around the *local* array (a tile's
    halo is spoiled from its edges inwards, exactly as on the CPU). Consecutive active sites of a
    row have consecutive words except where the row wraps around the global lattice, so the four
    sites need one or two Philox blocks (three at a wrap); the last block is kept.
    """
    Lx, half, nq, par, gx0, gy0, gLx, gLy = geo
    i = np.int64(np.uint64(g) // np.uint64(nq))
    q = g - i * nq
    p = (i + par + colour) & 1  # local column of the row's first active site
    gi = (i + gx0) % gLx
    rowbase = gi * (gLy >> 1)
    base = r * Lx * half
    cur = np.int64(-1)
    w0 = w1 = w2 = w3 = np.uint32(0)
    for mm in range(4):
        m = 4 * q + mm
        if m < half:
            gj = (gy0 + 2 * m + p) % gLy
            k = rowbase + (gj >> 1)
            blk = k >> 2
            if blk != cur:
                w0, w1, w2, w3 = stream_block(blk, slo, shi, purpose, seed, stream)
                cur = blk
            lane = k & 3
            w = w0 if lane == 0 else (w1 if lane == 1 else (w2 if lane == 2 else w3))
            _update_site_p(act, oth, base, i, m, Lx, half, p, w, thr)


def _make_tile_kernels(purpose=PURPOSE_LOCAL):
    """(grid, block) tile kernels: the loops of :func:`_make_loops` over :func:`_group_tile`."""
    half_sweep, sweeps = _make_loops(_group_tile, purpose)

    @cuda.jit
    def grid(act, oth, Lx, half, nq, n_groups, thresholds, seed, streams, slo, shi, colour, par, gx0, gy0, gLx, gLy):
        """One half-sweep of a tile (one launch per half-sweep)."""
        half_sweep(act, oth, n_groups, thresholds, seed, streams, slo, shi, colour,
                   (Lx, half, nq, par, gx0, gy0, gLx, gLy))

    @cuda.jit
    def block(a, b, Lx, half, nq, n_groups, thresholds, seed, streams, step0, n_half, par, gx0, gy0, gLx, gLy):
        """All half-sweeps of a tile (one launch)."""
        sweeps(a, b, n_groups, thresholds, seed, streams, step0, n_half, (Lx, half, nq, par, gx0, gy0, gLx, gLy))

    return grid, block


_TILE_KERNELS = {}


def _tile_kernels(purpose: int):
    """(grid, block) tile kernels for a counter word 3, compiled on first use."""
    if purpose not in _TILE_KERNELS:
        _TILE_KERNELS[purpose] = _make_tile_kernels(purpose)
    return _TILE_KERNELS[purpose]


@cuda.jit
def _split_tile_kernel(spins, a, b, Lx, half, par):
    """Flat arrays: a[k] = spins[2k + j0], b[k] = spins[2k + 1 - j0], j0 = ((row mod Lx) + par) & 1, row = k // half.

    Colour c of a tile is the *global* colour: local site (i, j) has colour ``(i + j + par) & 1``.
    Any Lx (a tile's row count may be odd).
    """
    n = a.shape[0]
    k = np.int64(cuda.grid(1))
    while k < n:
        row = np.int64(np.uint64(k) // np.uint64(half))
        j0 = ((row % Lx) + par) & 1
        a[np.uint64(k)] = spins[np.uint64(2 * k + j0)]
        b[np.uint64(k)] = spins[np.uint64(2 * k + 1 - j0)]
        k += np.int64(cuda.gridsize(1))


@cuda.jit
def _merge_tile_kernel(a, b, spins, Lx, half, par):
    """Inverse of :func:`_split_tile_kernel` (flat arrays)."""
    n = a.shape[0]
    k = np.int64(cuda.grid(1))
    while k < n:
        row = np.int64(np.uint64(k) // np.uint64(half))
        j0 = ((row % Lx) + par) & 1
        spins[np.uint64(2 * k + j0)] = a[np.uint64(k)]
        spins[np.uint64(2 * k + 1 - j0)] = b[np.uint64(k)]
        k += np.int64(cuda.gridsize(1))


@cuda.jit
def _split_kernel(spins, a, b, half):
    """Flat arrays: a[k] = spins[2k + (row & 1)], b[k] = spins[2k + 1 - (row & 1)], row = k // half.

    ``row = r*Lx + i`` is the global row; Lx is even, so ``row & 1 == i & 1``: colour-0 sites of row
    i start at j = i & 1, and the site (row, m) of either sublattice sits at 2k + 0 or 1 of the row.
    """
    n = a.shape[0]
    k = np.int64(cuda.grid(1))
    while k < n:
        row = np.int64(np.uint64(k) // np.uint64(half))
        j0 = row & 1
        a[np.uint64(k)] = spins[np.uint64(2 * k + j0)]
        b[np.uint64(k)] = spins[np.uint64(2 * k + 1 - j0)]
        k += np.int64(cuda.gridsize(1))


@cuda.jit
def _merge_kernel(a, b, spins, half):
    """Inverse of :func:`_split_kernel` (flat arrays)."""
    n = a.shape[0]
    k = np.int64(cuda.grid(1))
    while k < n:
        row = np.int64(np.uint64(k) // np.uint64(half))
        j0 = row & 1
        spins[np.uint64(2 * k + j0)] = a[np.uint64(k)]
        spins[np.uint64(2 * k + 1 - j0)] = b[np.uint64(k)]
        k += np.int64(cuda.gridsize(1))


# ------------------------------------------------------------------------------------------
# host side
# ------------------------------------------------------------------------------------------
def _threads(n):
    """Threads per block for n work items: at most TPB, whole warps, at least 10 (for the thresholds);
    under the simulator, which runs every thread as a Python thread, as few as possible."""
    return min(TPB, max(10, n) if SIMULATOR else 32 * ((n + 31) // 32))


def _block_threads(n_groups, R):
    """Threads per block of the block kernels: wider blocks when few replicas leave SMs idle."""
    if SIMULATOR:
        return _threads(n_groups)
    try:
        n_sm = cuda.get_current_device().MULTIPROCESSOR_COUNT
    except Exception:  # pragma: no cover - attribute lookup should not fail on a real device
        n_sm = 0
    cap = TPB_BLOCK_FEW if R < n_sm else TPB
    return min(cap, 32 * ((n_groups + 31) // 32))


def _elementwise(kernel, n, stream):
    tpb = _threads(n)
    return _configure(kernel, max(1, min((n + tpb - 1) // tpb, 1 << 20)), tpb, stream)


def _empty(shape, dtype, stream):
    return np.empty(shape, dtype) if SIMULATOR else cuda.device_array(shape, dtype, stream=stream)


def split_sublattices(spins, a=None, b=None, stream=0):
    """Split spins (R, Lx, Ly) int8 (Lx, Ly even) into the colour sublattices (R, Lx, Ly/2); returns (a, b).

    ``a[r, i, m]`` is the spin at (i, 2m + (i & 1)) (colour 0), ``b[r, i, m]`` the one at
    (i, 2m + 1 - (i & 1)) (colour 1). Device arrays in and out (C-contiguous; ``a``/``b`` are
    allocated with Numba when not given); NumPy arrays under the simulator.
    """
    R, Lx, Ly = spins.shape
    half = Ly // 2
    a = _empty((R, Lx, half), np.int8, stream) if a is None else a
    b = _empty((R, Lx, half), np.int8, stream) if b is None else b
    n = R * Lx * half
    if n:
        _elementwise(_split_kernel, n, stream)(spins.reshape(-1), a.reshape(-1), b.reshape(-1), np.int64(half))
    return a, b


def merge_sublattices(a, b, spins, stream=0):
    """Inverse of :func:`split_sublattices`: write the sublattices into ``spins`` (R, Lx, Ly); returns spins."""
    R, Lx, half = a.shape
    n = R * Lx * half
    if n:
        _elementwise(_merge_kernel, n, stream)(a.reshape(-1), b.reshape(-1), spins.reshape(-1), np.int64(half))
    return spins


def choose_method(Lx: int, Ly: int, replicas: int) -> str:
    """The kernel family ``method="auto"`` uses: "block" for small lattices, else "grid"."""
    return "block" if Lx * (Ly // 2) <= BLOCK_MAX_SITES else "grid"


def _run(d_spins, a, b, d_thr, d_streams, n_half, step, seed, stream, method, purpose=PURPOSE_LOCAL, tile=None):
    """All half-sweeps on device arrays (NumPy arrays under the simulator); updates d_spins in place.

    ``a``, ``b``: scratch (R, Lx, Ly/2) int8 arrays for the sublattices; ``tile``: ``(x0, y0, gLx, gLy)``
    for a tile of a larger lattice (:func:`_run_tile`), None for the whole lattice.
    """
    if tile is not None:
        return _run_tile(d_spins, a, b, d_thr, d_streams, n_half, step, seed, stream, method, purpose, tile)
    R, Lx, Ly = d_spins.shape
    half = Ly // 2
    split_sublattices(d_spins, a, b, stream)
    packed = half % 4 == 0
    if packed:  # 4 spins per uint32 word; word g = i*(half/4) + j of a replica is Philox block g
        fa, fb, row_len = a.reshape(-1).view(np.uint32), b.reshape(-1).view(np.uint32), half // 4
        n_groups = Lx * row_len
    else:
        fa, fb, row_len = a.reshape(-1), b.reshape(-1), half
        n_groups = (Lx * half + 3) // 4
    seed32 = np.uint32(seed)
    Lx64, row64, ng64 = np.int64(Lx), np.int64(row_len), np.int64(n_groups)
    grid_generic, grid_packed, block_generic, block_packed = _kernels(purpose)
    if method == "block":
        kernel = block_packed if packed else block_generic
        _configure(kernel, R, _block_threads(n_groups, R), stream)(fa, fb, Lx64, row64, ng64, d_thr, seed32, d_streams,
                                                         np.uint64(step), np.int64(n_half))
    else:
        kernel = grid_packed if packed else grid_generic
        tpb = _threads(n_groups)
        launch = _configure(kernel, ((n_groups + tpb - 1) // tpb, min(R, MAX_GRID_Y)), tpb, stream)
        for t in range(step, step + n_half):
            colour = t & 1
            act, oth = (fa, fb) if colour == 0 else (fb, fa)
            launch(act, oth, Lx64, row64, ng64, d_thr, seed32, d_streams,
                   np.uint32(t & MASK32), np.uint32(t >> 32), np.int64(colour))
    merge_sublattices(a, b, d_spins, stream)


def _run_tile(d_spins, a, b, d_thr, d_streams, n_half, step, seed, stream, method, purpose, tile):
    """:func:`_run` for a tile ``(x0, y0, gLx, gLy)`` of a larger lattice (global colours and words)."""
    x0, y0, gLx, gLy = tile
    R, Lx, Ly = d_spins.shape
    half = Ly // 2
    par = np.int64((x0 + y0) & 1)
    n = R * Lx * half
    fa, fb = a.reshape(-1), b.reshape(-1)
    _elementwise(_split_tile_kernel, n, stream)(d_spins.reshape(-1), fa, fb, np.int64(Lx), np.int64(half), par)
    nq = (half + 3) // 4
    n_groups = Lx * nq
    tail = (np.int64(x0), np.int64(y0), np.int64(gLx), np.int64(gLy))
    seed32 = np.uint32(seed)
    Lx64, half64, nq64, ng64 = np.int64(Lx), np.int64(half), np.int64(nq), np.int64(n_groups)
    grid_k, block_k = _tile_kernels(purpose)
    if method == "block":
        _configure(block_k, R, _block_threads(n_groups, R), stream)(fa, fb, Lx64, half64, nq64, ng64, d_thr, seed32,
                                                                    d_streams, np.uint64(step), np.int64(n_half),
                                                                    par, *tail)
    else:
        tpb = _threads(n_groups)
        launch = _configure(grid_k, ((n_groups + tpb - 1) // tpb, min(R, MAX_GRID_Y)), tpb, stream)
        for t in range(step, step + n_half):
            colour = t & 1
            act, oth = (fa, fb) if colour == 0 else (fb, fa)
            launch(act, oth, Lx64, half64, nq64, ng64, d_thr, seed32, d_streams,
                   np.uint32(t & MASK32), np.uint32(t >> 32), np.int64(colour), par, *tail)
    _elementwise(_merge_tile_kernel, n, stream)(fa, fb, d_spins.reshape(-1), np.int64(Lx), np.int64(half), par)


def _device_input(x, dtype, name, stream):
    """A Numba device view of a CUDA array of the given dtype, or a device copy of a host array."""
    if hasattr(x, "__cuda_array_interface__"):
        d = cuda.as_cuda_array(x)
        if d.dtype != np.dtype(dtype) or not d.is_c_contiguous():
            raise TypeError(f"{name} on the device must be a C-contiguous {np.dtype(dtype)} array, got {d.dtype}")
        return d
    return cuda.to_device(np.ascontiguousarray(x, dtype=dtype), stream=stream)


def _tile_arguments(spins, offset, global_shape):
    """``(x0, y0, gLx, gLy)`` (offset reduced modulo the global shape) of a tile, or None for the whole lattice."""
    if len(offset) != 2:
        raise ValueError(f"offset must be a pair (x0, y0), got {offset!r}")
    local = tuple(int(v) for v in spins.shape[1:]) if len(spins.shape) == 3 else None
    if global_shape is None:
        if local is None:
            return None
        gLx, gLy = local
    else:
        gLx, gLy = (int(v) for v in global_shape)
        if gLx < 2 or gLy < 2 or gLx % 2 or gLy % 2:
            raise ValueError(f"global_shape must be two even sizes >= 2, got {tuple(global_shape)}")
    x0, y0 = int(offset[0]) % gLx, int(offset[1]) % gLy
    if (x0, y0) == (0, 0) and (gLx, gLy) == local:
        return None  # the whole lattice: the untiled kernels (same bits)
    return x0, y0, gLx, gLy


def checkerboard_sweeps(spins, n_half_steps, *, step, thresholds, seed, streams, method: str = "auto",
                        purpose: int = PURPOSE_LOCAL, offset=(0, 0), global_shape=None):
    """Fused GPU counterpart of :func:`isingcore.mcmc.local.checkerboard_sweeps`.

    ``spins``: int8 +-1, shape (R, Lx, Ly) with Lx, Ly even: a CuPy array (the work stays on the
    device, on CuPy's current stream, without host synchronisation), another CUDA array
    (``__cuda_array_interface__``, default stream), or a NumPy array (copied to the device and
    back; under the simulator NumPy arrays are used directly).
    ``thresholds``: int64 (10,) from :func:`isingcore.mcmc.local.flip_thresholds` (NumPy or device);
    ``streams``: uint32 (R,). Half-sweep ``t`` in ``step .. step + n_half_steps - 1`` updates colour
    ``t % 2`` with the words of ``(seed, streams[r], t, purpose)``; ``purpose`` is counter word 3
    (:class:`isingcore.random.Purpose`, default ``LOCAL``; the inverse-RG refinement uses ``REFINE``).

    Updates ``spins`` in place when it is C-contiguous (else a contiguous copy; CuPy and NumPy
    only) and returns it. ``method``: "auto" (:func:`choose_method`), "grid" (one launch per
    half-sweep) or "block" (one launch for all half-sweeps, one thread block per replica).

    Tiles (the semantics of the CPU kernel ``isingcore.backends.numba_cpu.local.checkerboard_sweeps``):
    ``spins`` may be a tile (with its halo) of a larger periodic lattice of ``global_shape = (gLx,
    gLy)`` (both even) whose local site (0, 0) is global site ``offset = (x0, y0)``; local site
    (i, j) then takes the colour ``(x + y) % 2`` and the word ``(x gLy + y) // 2`` of global site
    ``(x, y) = ((x0 + i) mod gLx, (y0 + j) mod gLy)``, and its neighbours wrap around the local
    array (the outermost ``n`` rows and columns are spoiled after ``n`` half-sweeps, the same bits
    as on the CPU). A tile needs an even number of columns; its number of rows may be odd.
    Defaults (``offset=(0, 0)``, ``global_shape=None``): the whole lattice.
    """
    if method not in ("auto", "grid", "block"):
        raise ValueError(f"method={method!r} is not known; allowed values: 'auto', 'grid', 'block'")
    tile = _tile_arguments(spins, offset, global_shape)
    if isinstance(n_half_steps, bool) or not isinstance(n_half_steps, numbers.Integral) or n_half_steps < 0:
        raise ValueError(f"n_half_steps must be a non-negative integer, got {n_half_steps!r}")
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise ValueError(f"step must be a non-negative integer, got {step!r}")
    n_half, step = int(n_half_steps), int(step)
    purpose = int(purpose)
    if not 0 <= purpose < 1 << 32:
        raise ValueError(f"purpose must be in [0, 2**32), got {purpose}")
    if step + n_half > 1 << 64:
        raise ValueError("step + n_half_steps must not exceed 2**64")
    seed = check_seed(seed)
    R, Lx, Ly = check_spin_batch(spins)
    if tile is not None:
        if Ly % 2 or Ly < 2 or Lx < 1:
            raise ValueError(f"a tile needs Lx >= 1 rows and an even number Ly >= 2 of columns, got ({Lx}, {Ly})")
    elif Lx % 2 or Ly % 2 or Lx < 2 or Ly < 2:
        raise ValueError(f"the lattice must have even Lx, Ly >= 2, got ({Lx}, {Ly})")
    if tuple(thresholds.shape) != (10,):
        raise ValueError(f"thresholds must have shape (10,), got {thresholds.shape}")
    if tuple(streams.shape) != (R,):
        raise ValueError(f"streams must have shape ({R},), got {streams.shape}")
    if method == "auto":
        method = choose_method(Lx, Ly, R)
    if n_half == 0 or R == 0:
        return spins
    shape_sub = (R, Lx, Ly // 2)

    if SIMULATOR:  # kernels run on the CPU on NumPy arrays
        out = np.ascontiguousarray(spins)
        _run(out, np.empty(shape_sub, np.int8), np.empty(shape_sub, np.int8),
             np.ascontiguousarray(thresholds, dtype=np.int64), np.ascontiguousarray(streams, dtype=np.uint32),
             n_half, step, seed, 0, method, purpose, tile)
        return out

    if _is_cupy(spins):
        import cupy

        with cupy.cuda.Device(spins.device.id), cuda.gpus[spins.device.id]:
            cp_stream = cupy.cuda.get_current_stream()
            stream = cuda.external_stream(cp_stream.ptr) if cp_stream.ptr else cuda.default_stream()
            out = spins if spins.flags.c_contiguous else cupy.ascontiguousarray(spins)
            # CuPy allocates (its stream-ordered pool); sync=False: no host synchronisation per launch
            dev = [cuda.as_cuda_array(x, sync=False) for x in (
                out, cupy.empty(shape_sub, cupy.int8), cupy.empty(shape_sub, cupy.int8),
                cupy.ascontiguousarray(cupy.asarray(thresholds, dtype=cupy.int64)),
                cupy.ascontiguousarray(cupy.asarray(streams, dtype=cupy.uint32)))]
            _run(*dev, n_half, step, seed, stream, method, purpose, tile)
        return out

    stream = cuda.default_stream()
    if hasattr(spins, "__cuda_array_interface__"):
        out, host = spins, None
        d_spins = _device_input(spins, np.int8, "spins", stream)
    else:
        out = host = np.ascontiguousarray(spins)
        d_spins = cuda.to_device(host, stream=stream)
    _run(d_spins, _empty(shape_sub, np.int8, stream), _empty(shape_sub, np.int8, stream),
         _device_input(thresholds, np.int64, "thresholds", stream), _device_input(streams, np.uint32, "streams", stream),
         n_half, step, seed, stream, method, purpose, tile)
    if host is not None:
        d_spins.copy_to_host(host, stream=stream)
        stream.synchronize()
    return out


__all__ = ["checkerboard_sweeps", "split_sublattices", "merge_sublattices", "choose_method", "SIMULATOR"]
