"""Swendsen-Wang updates on a CUDA GPU (Numba-CUDA): bonds, block union-find labelling, root coins.

Same bonds, clusters and flips, bit for bit, as :func:`isingcore.mcmc.swendsen_wang.swendsen_wang_update`
(and the Numba CPU kernel): bond ``b = 2k + d`` is open iff the spins agree and word ``b`` of
``(seed, stream, step, Purpose.SWENDSEN_WANG)`` is below T; the cluster with smallest site ``r``
flips iff word ``2N + r`` is below 2**31. Because the coin belongs to the canonical root, the
order in which the parallel labelling links the trees does not matter. Importing this module
raises ``ImportError`` without Numba-CUDA and a device (unless ``NUMBA_ENABLE_CUDASIM=1``).

Labelling: union-find in shared memory per tile, then across tiles in global memory, in the
manner of D. P. Playne and K. A. Hawick, "A new algorithm for parallel connected-component
labelling on GPUs", IEEE TPDS 29, 1217 (2018) (and of the label-equivalence "scanning and
analysis" steps of Y. Komura and Y. Okabe, Comput. Phys. Commun. 183, 1155 (2012), done here
once with atomics instead of iterating). Labels are site indices; every link goes from a larger
index to a smaller one (``atomicMin``), so ``label[x] <= x`` always holds, the forest has no
cycles, and each root is the smallest index of its tree -- after all merges, the canonical root.

Four launches per update (grid ``(blocks, replicas)``, replicas beyond 65535 looped over):

1. ``local``: one thread block per tile of ``TR x TC`` sites (one thread per site). Each thread
   draws its two bond words (one Philox call: words 2k, 2k+1 are lanes 0,1 or 2,3 of block
   ``k >> 1``), stores the open-bond bits (bit 0 down, bit 1 right) and merges the bonds inside
   the tile in shared memory (concurrent union with ``atomicMin`` and retry). Every site then
   stores its local root as a global index, and each local root the size of its local cluster.
2. ``boundary``: one thread per site on the last row / last column of a tile (including the
   periodic bonds of the lattice) merges open bonds across tiles in global memory, same union.
3. ``roots``: every local root finds its global root (path halving), stores it and adds its
   local size to the root's count (``atomicAdd``; about one add per tile per cluster, so the
   giant cluster costs ``N / (TR TC)`` adds, not ``N``).
4. ``flip``: every site reads its root in two hops (site -> local root -> root), draws the
   root's coin (one Philox call) and flips; the roots add ``|C|^2`` and ``|C|^4`` to the
   replica's sums (block reduction, one float64 ``atomicAdd`` per block).

Concurrency argument for the global union (steps 2 and 3): a thread links root ``a`` under
``b < a`` with ``old = atomicMin(label[a], b)``; if ``old != a`` (``a`` got another parent meanwhile)
it retries with ``(old, b)``, so no connection is lost. Path halving writes ``label[x] <-
label[label[x]]`` with plain stores; this may overwrite a concurrent link of ``x``, but ``x`` was
then not a root, so the linking thread saw ``old != x`` and retries. Every write stores a smaller
index of the same cluster, so the invariant and termination hold.

Memory traffic per site and update: spins 3 B read + 1 B written, bond bits 1 B, labels 4 B
written and ~8 B read, counts 4 B; with 16 x 32 tiles about 1 in 11 sites is on a tile
boundary. Designed for ~0.5 ns per site and update at L = 4096 on an H100 (not measured here:
no GPU on the development machine; the kernels are tested bit for bit under the simulator).
"""

from __future__ import annotations

import numbers

import numpy as np

from ._runtime import SIMULATOR, cuda  # raises ImportError when CUDA cannot run here
from ._runtime import check_spin_batch
from ._runtime import configure as _configure
from ._runtime import is_cupy as _is_cupy


from isingcore.random import Purpose, check_seed  # noqa: E402

from .philox import stream_block  # noqa: E402

PURPOSE_SW = int(Purpose.SWENDSEN_WANG)
TILE = (16, 32)  #: default tile (rows, columns) of the local labelling: 512 threads per block
TPB = 256  #: threads per block of the element-wise kernels
MAX_GRID_Y = 65535

_U32_HALF = np.uint32(1 << 31)
_U64_MASK = np.uint64(0xFFFFFFFF)
_U64_32 = np.uint64(32)
_U8_1 = np.uint8(1)
_U8_2 = np.uint8(2)


# ------------------------------------------------------------------------------------------
# device functions
# ------------------------------------------------------------------------------------------
@cuda.jit(device=True, inline="always")
def _find(lab, base, x):
    """Root of x in the forest ``lab[base + .]`` with path halving (plain stores; see the module docstring)."""
    while True:
        px = np.int64(lab[np.uint64(base + x)])
        if px == x:
            return x
        ppx = np.int64(lab[np.uint64(base + px)])
        if ppx != px:
            lab[np.uint64(base + x)] = ppx
        x = ppx


@cuda.jit(device=True, inline="always")
def _union(lab, base, a, b):
    """Merge the trees of a and b: the larger root is linked under the smaller with atomicMin, with retry."""
    while True:
        a = _find(lab, base, a)
        b = _find(lab, base, b)
        if a == b:
            return
        if a < b:
            a, b = b, a
        old = np.int64(cuda.atomic.min(lab, np.uint64(base + a), np.int32(b)))
        if old == a:
            return
        a = old


@cuda.jit(device=True, inline="always")
def _steps(steps, r, t):
    st = np.uint64(steps[r]) + np.uint64(t)
    return np.uint32(st & _U64_MASK), np.uint32(st >> _U64_32)


@cuda.jit(device=True, inline="always")
def _coin_flips(n_sites, root, slo, shi, seed, stream):
    """True iff word 2N + root of the stream is below 2**31 (the cluster flips)."""
    c = 2 * n_sites + root
    w0, w1, w2, w3 = stream_block(np.uint32(c >> 2), slo, shi, PURPOSE_SW, seed, stream)
    q = c & 3
    w = w0 if q == 0 else (w1 if q == 1 else (w2 if q == 2 else w3))
    return w < _U32_HALF


# ------------------------------------------------------------------------------------------
# kernels
# ------------------------------------------------------------------------------------------
_KERNELS = {}


def kernels(tile=TILE):
    """The kernels for a tile of (rows, columns); compiled once per tile shape."""
    tile = (int(tile[0]), int(tile[1]))
    if tile not in _KERNELS:
        _KERNELS[tile] = _make_kernels(*tile)
    return _KERNELS[tile]


def _make_kernels(TR, TC):
    NT = TR * TC

    @cuda.jit
    def local(spins, bonds, labels, counts, Lx, Ly, n_tc, T, seed, streams, steps, t):
        """Bonds of every site and the union-find inside each TR x TC tile (block = tile, thread = site)."""
        lab = cuda.shared.array(NT, dtype=np.int32)
        cnt = cuda.shared.array(NT, dtype=np.int32)
        R = streams.shape[0]
        N = Lx * Ly
        tid = np.int64(cuda.threadIdx.x)
        ty = tid // TC
        tx = tid - ty * TC
        tile_id = np.int64(cuda.blockIdx.x)
        ti = tile_id // n_tc
        i = ti * TR + ty
        j = (tile_id - ti * n_tc) * TC + tx
        inside = i < Lx and j < Ly
        k = i * Ly + j
        r = np.int64(cuda.blockIdx.y)
        while r < R:
            base = r * N
            bits = np.uint8(0)
            if inside:
                slo, shi = _steps(steps, r, t)
                w0, w1, w2, w3 = stream_block(np.uint32(k >> 1), slo, shi, PURPOSE_SW, seed, streams[r])
                wd = w0 if (k & 1) == 0 else w2  # word 2k: bond to (i+1, j)
                wr = w1 if (k & 1) == 0 else w3  # word 2k + 1: bond to (i, j+1)
                s = spins[np.uint64(base + k)]
                sd = spins[np.uint64(base + (i + 1 if i + 1 < Lx else 0) * Ly + j)]
                sr = spins[np.uint64(base + i * Ly + (j + 1 if j + 1 < Ly else 0))]
                if s == sd and np.int64(wd) < T:
                    bits = np.uint8(bits | _U8_1)
                if s == sr and np.int64(wr) < T:
                    bits = np.uint8(bits | _U8_2)
                bonds[np.uint64(base + k)] = bits
            lab[tid] = np.int32(tid)
            cnt[tid] = 0
            cuda.syncthreads()
            # merge the bonds inside the tile (local indices: row-major, same order as the sites)
            if (bits & _U8_1) != 0 and ty + 1 < TR and i + 1 < Lx:
                _union(lab, 0, tid, tid + TC)
            if (bits & _U8_2) != 0 and tx + 1 < TC and j + 1 < Ly:
                _union(lab, 0, tid, tid + 1)
            cuda.syncthreads()
            root = _find(lab, 0, tid)  # the forest no longer changes: a read-only walk
            cuda.syncthreads()
            if inside:
                cuda.atomic.add(cnt, root, np.int32(1))
            cuda.syncthreads()
            if inside:
                ry = root // TC
                labels[np.uint64(base + k)] = np.int32((ti * TR + ry) * Ly + (j - tx) + (root - ry * TC))
                counts[np.uint64(base + k)] = cnt[tid] if root == tid else np.int32(0)
            cuda.syncthreads()  # shared memory is reused for the next replica
            r += np.int64(cuda.gridDim.y)

    @cuda.jit
    def boundary(bonds, labels, Lx, Ly, n_tr, n_tc):
        """Merge the open bonds that leave a tile (down from its last row, right from its last column)."""
        R = labels.shape[0] // (Lx * Ly)
        N = Lx * Ly
        n_rows = n_tr * Ly
        n_all = n_rows + n_tc * Lx
        g = np.int64(cuda.blockIdx.x) * np.int64(cuda.blockDim.x) + np.int64(cuda.threadIdx.x)
        if g >= n_all:
            return
        if g < n_rows:  # last row of tile row g // Ly: bond down (periodic at the end)
            q = g // Ly
            j = g - q * Ly
            i = min(q * TR + TR, Lx) - 1
            d = 0
        else:
            h = g - n_rows
            q = h // Lx
            i = h - q * Lx
            j = min(q * TC + TC, Ly) - 1
            d = 1
        k = i * Ly + j
        if d == 0:
            nb = (i + 1 if i + 1 < Lx else 0) * Ly + j
        else:
            nb = i * Ly + (j + 1 if j + 1 < Ly else 0)
        mask = _U8_1 if d == 0 else _U8_2
        r = np.int64(cuda.blockIdx.y)
        while r < R:
            base = r * N
            if (bonds[np.uint64(base + k)] & mask) != 0:
                _union(labels, base, np.int64(labels[np.uint64(base + k)]), np.int64(labels[np.uint64(base + nb)]))
            r += np.int64(cuda.gridDim.y)

    return {"local": local, "boundary": boundary, "tile": (TR, TC)}


@cuda.jit
def _roots_kernel(labels, counts, N):
    """Each local root (counts > 0) finds its root, points to it and adds its local size there."""
    R = labels.shape[0] // N
    k = np.int64(cuda.blockIdx.x) * np.int64(cuda.blockDim.x) + np.int64(cuda.threadIdx.x)
    if k >= N:
        return
    r = np.int64(cuda.blockIdx.y)
    while r < R:
        base = r * N
        c = counts[np.uint64(base + k)]
        if c > 0:
            root = _find(labels, base, k)
            if root != k:
                labels[np.uint64(base + k)] = np.int32(root)
                cuda.atomic.add(counts, np.uint64(base + root), c)
        r += np.int64(cuda.gridDim.y)


@cuda.jit
def _flip_kernel(spins, labels, counts, N, seed, streams, steps, t, sums):
    """Flip every site with its root's coin; roots add |C|^2, |C|^4 to sums[r, t, :] (block reduction)."""
    s2 = cuda.shared.array(TPB, dtype=np.float64)
    s4 = cuda.shared.array(TPB, dtype=np.float64)
    R = streams.shape[0]
    tid = cuda.threadIdx.x
    k = np.int64(cuda.blockIdx.x) * np.int64(cuda.blockDim.x) + np.int64(tid)
    r = np.int64(cuda.blockIdx.y)
    while r < R:
        base = r * N
        x2 = 0.0
        if k < N:
            lk = np.int64(labels[np.uint64(base + k)])
            root = np.int64(labels[np.uint64(base + lk)])
            slo, shi = _steps(steps, r, t)
            if _coin_flips(N, root, slo, shi, seed, streams[r]):
                spins[np.uint64(base + k)] = -spins[np.uint64(base + k)]
            if lk == k:  # k is a root (a local root that is not one points elsewhere by now)
                x2 = np.float64(counts[np.uint64(base + k)])
                x2 = x2 * x2
        s2[tid] = x2
        s4[tid] = x2 * x2
        cuda.syncthreads()
        h = cuda.blockDim.x // 2
        while h > 0:
            if tid < h:
                s2[tid] += s2[tid + h]
                s4[tid] += s4[tid + h]
            cuda.syncthreads()
            h //= 2
        if tid == 0 and s2[0] > 0.0:
            cuda.atomic.add(sums, (r, t, 0), s2[0])
            cuda.atomic.add(sums, (r, t, 1), s4[0])
        cuda.syncthreads()
        r += np.int64(cuda.gridDim.y)


# ------------------------------------------------------------------------------------------
# host side
# ------------------------------------------------------------------------------------------
def _run(d_spins, R, Lx, Ly, d_steps, T, seed, d_streams, n, tile, scratch, d_sums, stream):
    """n updates on device arrays (NumPy arrays under the simulator); spins updated in place."""
    K = kernels(tile)
    TR, TC = K["tile"]
    N = Lx * Ly
    bonds, labels, counts = scratch
    n_tr, n_tc = -(-Lx // TR), -(-Ly // TC)
    gy = min(R, MAX_GRID_Y)
    n_bnd = n_tr * Ly + n_tc * Lx
    tpb = TPB
    if SIMULATOR:  # every simulated thread is a Python thread: keep the blocks small
        tpb = 32
    flat_spins = d_spins.reshape(-1)
    local = _configure(K["local"], (n_tr * n_tc, gy), TR * TC, stream)
    boundary = _configure(K["boundary"], (-(-n_bnd // tpb), gy), tpb, stream)
    roots = _configure(_roots_kernel, (-(-N // tpb), gy), tpb, stream)
    flip = _configure(_flip_kernel, (-(-N // tpb), gy), tpb, stream)  # tpb: a power of two <= TPB
    Lx64, Ly64, N64 = np.int64(Lx), np.int64(Ly), np.int64(N)
    seed32, T64 = np.uint32(seed), np.int64(T)
    for t in range(n):
        t64 = np.int64(t)
        local(flat_spins, bonds, labels, counts, Lx64, Ly64, np.int64(n_tc), T64, seed32, d_streams, d_steps, t64)
        boundary(bonds, labels, Lx64, Ly64, np.int64(n_tr), np.int64(n_tc))
        roots(labels, counts, N64)
        flip(flat_spins, labels, counts, N64, seed32, d_streams, d_steps, t64, d_sums)


def _check(spins, n_updates, steps, seed, streams):
    if isinstance(n_updates, bool) or not isinstance(n_updates, numbers.Integral) or n_updates < 0:
        raise ValueError(f"n_updates must be a non-negative integer, got {n_updates!r}")
    seed = check_seed(seed)
    R, Lx, Ly = check_spin_batch(spins)
    if Lx < 2 or Ly < 2:
        raise ValueError(f"the lattice must have Lx, Ly >= 2, got ({Lx}, {Ly})")
    if Lx * Ly >= 1 << 31:
        raise ValueError(f"at most 2**31 - 1 sites per replica, got {Lx} x {Ly}")
    st = np.broadcast_to(np.asarray(steps, dtype=np.uint64), (R,)).copy()
    if n_updates and np.any(st > np.uint64(2**64 - int(n_updates))):
        raise ValueError("steps + n_updates must not exceed 2**64")
    if tuple(streams.shape) != (R,):
        raise ValueError(f"streams must have shape ({R},), got {streams.shape}")
    return int(n_updates), seed, R, Lx, Ly, st


def _moments(sums, N):
    S2, S4 = sums[..., 0], sums[..., 1]
    nn = float(N) * float(N)
    m2 = S2 / nn
    return m2, 3.0 * m2 * m2 - 2.0 * (S4 / nn) / nn


def swendsen_wang_sweeps(spins, n_updates, *, steps, threshold, seed, streams, record=True, tile=None):
    """GPU counterpart of :func:`isingcore.mcmc.swendsen_wang.swendsen_wang_sweeps`.

    ``spins``: int8 (R, Lx, Ly), any ``Lx, Ly >= 2``: a CuPy array (updated in place on the
    device, on CuPy's current stream), another CUDA array, or a NumPy array (copied to the device
    and back; used directly under the simulator). ``steps``: int or (R,) first RNG step of each
    replica; ``threshold``: from :func:`isingcore.mcmc.swendsen_wang.bond_threshold`; ``streams``:
    uint32 (R,). ``tile``: (rows, columns) of the local labelling (default :data:`TILE`).

    Returns ``(spins, m2, m4)``; the improved estimators (R, n_updates) come back as NumPy
    float64 (a device-to-host copy, i.e. a synchronisation, only when ``record`` is true).
    """
    n, seed, R, Lx, Ly, st = _check(spins, n_updates, steps, seed, streams)
    tile = TILE if tile is None else tuple(tile)
    if len(tile) != 2 or min(tile) < 1 or tile[0] * tile[1] > 1024:
        raise ValueError(f"tile must be (rows, columns) with at most 1024 sites, got {tile!r}")
    N = Lx * Ly
    empty = np.empty((R, n))
    if n == 0 or R == 0:
        return spins, empty, empty.copy()

    if SIMULATOR:
        out = np.ascontiguousarray(spins)
        sums = np.zeros((R, n, 2))
        scratch = (np.zeros(R * N, np.uint8), np.zeros(R * N, np.int32), np.zeros(R * N, np.int32))
        _run(out, R, Lx, Ly, st, int(threshold), seed, np.ascontiguousarray(streams, dtype=np.uint32), n, tile,
             scratch, sums, 0)
        m2, m4 = _moments(sums, N) if record else (empty, empty.copy())
        return out, m2, m4

    if _is_cupy(spins):
        import cupy

        with cupy.cuda.Device(spins.device.id), cuda.gpus[spins.device.id]:
            cp_stream = cupy.cuda.get_current_stream()
            stream = cuda.external_stream(cp_stream.ptr) if cp_stream.ptr else cuda.default_stream()
            out = spins if spins.flags.c_contiguous else cupy.ascontiguousarray(spins)
            arrays = (out, cupy.asarray(st), cupy.ascontiguousarray(cupy.asarray(streams, dtype=cupy.uint32)),
                      cupy.empty(R * N, cupy.uint8), cupy.empty(R * N, cupy.int32), cupy.empty(R * N, cupy.int32),
                      cupy.zeros((R, n, 2), cupy.float64))
            d = [cuda.as_cuda_array(x, sync=False) for x in arrays]
            _run(d[0], R, Lx, Ly, d[1], int(threshold), seed, d[2], n, tile, tuple(d[3:6]), d[6], stream)
            if record:
                m2, m4 = _moments(arrays[6].get(), N)
            else:
                m2, m4 = empty, empty.copy()
        return out, m2, m4

    stream = cuda.default_stream()
    if hasattr(spins, "__cuda_array_interface__"):
        out, host, d_spins = spins, None, cuda.as_cuda_array(spins)
    else:
        out = host = np.ascontiguousarray(spins)
        d_spins = cuda.to_device(host, stream=stream)
    d_sums = cuda.to_device(np.zeros((R, n, 2)), stream=stream)
    scratch = tuple(cuda.device_array(R * N, dt, stream=stream) for dt in (np.uint8, np.int32, np.int32))
    _run(d_spins, R, Lx, Ly, cuda.to_device(st, stream=stream), int(threshold), seed,
         cuda.to_device(np.ascontiguousarray(streams, dtype=np.uint32), stream=stream), n, tile, scratch, d_sums,
         stream)
    if host is not None:
        d_spins.copy_to_host(host, stream=stream)
    m2, m4 = _moments(d_sums.copy_to_host(stream=stream), N) if record else (empty, empty.copy())
    stream.synchronize()
    return out, m2, m4


__all__ = ["swendsen_wang_sweeps", "kernels", "TILE", "SIMULATOR"]
