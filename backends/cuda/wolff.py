"""Wolff single-cluster updates on a CUDA GPU (Numba-CUDA), two strategies.

Same clusters, bit for bit, as the reference :func:`isingcore.mcmc.wolff.wolff_cluster`: update
``t`` of a replica takes its seed from Lemire's rule on words 0..63 of the stream
``(seed, stream, t, Purpose.WOLFF)``, and bond ``b = 2x + d`` (``d = 0``: to (i+1, j), ``d = 1``:
to (i, j+1), ``x = i*Ly + j``) is open iff the spins agree and word ``64 + b`` is below the
threshold. The cluster is the connected component of the seed in the open-bond graph, so the
parallel growth orders used here give exactly the reference's cluster. Importing this module
raises ``ImportError`` without a usable CUDA device (unless the CUDA simulator is enabled with
``NUMBA_ENABLE_CUDASIM=1``), like :mod:`isingcore.backends.cuda.local`.

``method="block"`` -- many replicas, small and medium lattices
    One thread block per replica grows that replica's clusters one after the other, all in one
    launch. Breadth-first by levels: the cluster's sites are appended to a queue in global memory
    (one int32 per site and replica); the threads of the block expand the current level in
    parallel, claim a neighbour with an atomic compare-and-swap on a mark array (so each site is
    added once), flip it and append it with an atomic increment of the shared tail. Levels are
    separated by ``syncthreads``. The marks are cleared through the queue after each cluster.

``method="lattice"`` -- large lattices (after Y. Komura and Y. Okabe, "GPU-based single-cluster
algorithm for the simulation of the Ising model", J. Comput. Phys. 231 (2012) 1209, and their
label-equivalence cluster labelling)
    One update of all unfinished replicas per round of kernels over the whole lattice: the seed
    kernel draws the seeds; the bond kernel computes the bond bits of every site (one thread per
    Philox block, i.e. per pair of sites); sites with the seed's spin get the label ``x`` (others
    stay out); then *scanning* (each site takes the smallest label among its open-bond
    neighbours and lowers the label of its root with ``atomicMin``) and *analysis* (each label is
    replaced by its root, following the label chain) alternate until a scan changes nothing. The
    cluster is the set of sites whose label equals the seed's; the flip kernel flips them and
    counts them. One host synchronisation per scan (the "changed" flag).

Both record the size of every cluster; the host wrapper :func:`wolff_clusters` has the same
contract as the CPU kernel :func:`isingcore.backends.numba_cpu.wolff.wolff_clusters`.

Indices are int64 and cast to uint64 at the array access (Numba adds negative-index handling to
signed indices; uint64 mixed with int64 would become float64), as in ``local.py``.
"""

from __future__ import annotations

import numbers

import numpy as np

from ._runtime import SIMULATOR, cuda  # raises ImportError when CUDA cannot run here
from ._runtime import check_spin_batch
from ._runtime import configure as _configure
from ._runtime import is_cupy as _is_cupy

from .philox import stream_block  # noqa: E402

from isingcore.random import Purpose, check_seed  # noqa: E402

PURPOSE_WOLFF = np.uint32(int(Purpose.WOLFF))
SEED_WORDS = 64  # isingcore.mcmc.wolff.SEED_WORDS
BLOCK0 = SEED_WORDS // 4
TPB_BLOCK = 256  #: threads per block of the block kernel (one block per replica)
TPB = 256  #: threads per block of the lattice kernels
MAX_GRID_Y = 65535  #: grid extent over replicas of the lattice kernels (they loop beyond it)
MAX_BLOCKS = 1 << 20  #: blocks of the block kernel (one per replica; it loops beyond)
BLOCK_MAX_SITES = 1 << 16  #: method="auto" uses "block" up to this many sites, or with many replicas
NOT_IN = np.int32(-1)  #: label of a site without the seed's spin (lattice method)

_U64_1 = np.uint64(1)
_U64_32 = np.uint64(32)
_U64_MASK = np.uint64(0xFFFFFFFF)
_U32_0 = np.uint32(0)
_I32_0 = np.int32(0)
_I32_1 = np.int32(1)


# ------------------------------------------------------------------------------------------
# device functions: the random-number rule
# ------------------------------------------------------------------------------------------
@cuda.jit(device=True, inline="always")
def _lane(w0, w1, w2, w3, q):
    return w0 if q == 0 else (w1 if q == 1 else (w2 if q == 2 else w3))


@cuda.jit(device=True, inline="always")
def seed_site(n_sites, slo, shi, seed, stream):
    """Lemire's rule on words 0..63: x0 = (w N) >> 32 unless (w N mod 2**32) < (2**32 mod N)."""
    nu = np.uint64(n_sites)
    reject_below = np.uint64((_U64_1 << _U64_32) % nu)
    m = np.uint64(0)
    for g in range(SEED_WORDS // 4):
        w0, w1, w2, w3 = stream_block(np.uint32(g), slo, shi, PURPOSE_WOLFF, seed, stream)
        for q in range(4):
            m = np.uint64(_lane(w0, w1, w2, w3, q)) * nu
            if (m & _U64_MASK) >= reject_below:
                return np.int64(m >> _U64_32)
    return np.int64(m >> _U64_32)


@cuda.jit(device=True, inline="always")
def _bond_open(b, slo, shi, seed, stream, T):
    """Word test of bond b = 2x + d (word 64 + b): True iff the word is below the threshold T (int64)."""
    k = np.int64(SEED_WORDS) + b
    w0, w1, w2, w3 = stream_block(np.uint32(k >> 2), slo, shi, PURPOSE_WOLFF, seed, stream)
    return np.int64(_lane(w0, w1, w2, w3, k & 3)) < T


@cuda.jit(device=True, inline="always")
def _neighbours(x, Lx, Ly):
    """(down, right, up, left) flat neighbours of site x on the Lx x Ly torus."""
    i = np.int64(np.uint64(x) // np.uint64(Ly))
    j = x - i * Ly
    row = i * Ly
    dn = x + Ly if i + 1 < Lx else j
    rt = x + 1 if j + 1 < Ly else row
    up = x - Ly if i > 0 else x + (Lx - 1) * Ly
    lf = x - 1 if j > 0 else row + Ly - 1
    return dn, rt, up, lf


# ------------------------------------------------------------------------------------------
# method="block": one thread block per replica
# ------------------------------------------------------------------------------------------
@cuda.jit(device=True, inline="always")
def _visit(spins, mark, queue, base, y, b, s0, slo, shi, seed, stream, T, sh):
    """Add neighbour y (bond b) to the cluster if it has the seed's spin, is free and the bond is open."""
    iy = np.uint64(base + y)
    if spins[iy] == s0:
        if _bond_open(b, slo, shi, seed, stream, T):
            if cuda.atomic.cas(mark, iy, _I32_0, _I32_1) == _I32_0:
                spins[iy] = np.int8(-s0)
                pos = cuda.atomic.add(sh, 1, _I32_1)
                queue[np.uint64(base + pos)] = np.int32(y)


@cuda.jit
def _block_kernel(spins, Lx, Ly, steps, T, seed, streams, sizes, n_clusters, queue, mark):
    """Block x -> replicas x, x + gridDim.x, ...: n_clusters updates each, sizes[r*n + k] = k-th size.

    spins int8, queue/mark int32: flat (R*N), mark all zero on entry (and on exit); steps int64 (R).
    """
    sh = cuda.shared.array(3, dtype=np.int32)  # head, tail, s0
    tid = np.int64(cuda.threadIdx.x)
    nthr = np.int64(cuda.blockDim.x)
    N = Lx * Ly
    R = streams.shape[0]
    r = np.int64(cuda.blockIdx.x)
    while r < R:
        base = r * N
        stream = streams[r]
        for c in range(n_clusters):
            st = np.uint64(steps[r])
            slo = np.uint32(st & _U64_MASK)
            shi = np.uint32(st >> _U64_32)
            if tid == 0:
                x0 = seed_site(N, slo, shi, seed, stream)
                s0 = spins[np.uint64(base + x0)]
                sh[2] = np.int32(s0)
                spins[np.uint64(base + x0)] = np.int8(-s0)
                mark[np.uint64(base + x0)] = _I32_1
                queue[np.uint64(base)] = np.int32(x0)
                sh[0] = _I32_0
                sh[1] = _I32_1
            cuda.syncthreads()
            s0 = np.int8(sh[2])
            while True:  # one breadth-first level per pass
                lo = np.int64(sh[0])
                hi = np.int64(sh[1])
                cuda.syncthreads()  # everyone has read (lo, hi) before the tail moves
                if lo == hi:
                    break
                k = lo + tid
                while k < hi:
                    x = np.int64(queue[np.uint64(base + k)])
                    dn, rt, up, lf = _neighbours(x, Lx, Ly)
                    _visit(spins, mark, queue, base, dn, 2 * x, s0, slo, shi, seed, stream, T, sh)
                    _visit(spins, mark, queue, base, rt, 2 * x + 1, s0, slo, shi, seed, stream, T, sh)
                    _visit(spins, mark, queue, base, up, 2 * up, s0, slo, shi, seed, stream, T, sh)
                    _visit(spins, mark, queue, base, lf, 2 * lf + 1, s0, slo, shi, seed, stream, T, sh)
                    k += nthr
                cuda.syncthreads()
                if tid == 0:
                    sh[0] = np.int32(hi)
                cuda.syncthreads()
            size = np.int64(sh[1])
            k = tid
            while k < size:  # clear the marks of this cluster
                mark[np.uint64(base + queue[np.uint64(base + k)])] = _I32_0
                k += nthr
            cuda.syncthreads()  # every thread has read steps[r] and the tail
            if tid == 0:
                sizes[np.uint64(r * n_clusters + c)] = np.int32(size)
                steps[r] += 1
            cuda.syncthreads()
        r += np.int64(cuda.gridDim.x)


# ------------------------------------------------------------------------------------------
# method="lattice": label propagation over the whole lattice, all active replicas at once
# ------------------------------------------------------------------------------------------
@cuda.jit
def _seed_kernel(spins, N, steps, seed, streams, active, x0s, s0s):
    r = np.int64(cuda.grid(1))
    if r < streams.shape[0] and active[r] != 0:
        st = np.uint64(steps[r])
        x0 = seed_site(N, np.uint32(st & _U64_MASK), np.uint32(st >> _U64_32), seed, streams[r])
        x0s[r] = x0
        s0s[r] = np.int32(spins[np.uint64(r * N + x0)])


@cuda.jit
def _bonds_kernel(bits, N, steps, T, seed, streams, active):
    """bits[r*N + x] = (down bond open) | (right bond open) << 1 (word test only); one thread per pair."""
    q = np.int64(cuda.blockIdx.x) * np.int64(cuda.blockDim.x) + np.int64(cuda.threadIdx.x)
    R = streams.shape[0]
    if 2 * q < N:
        r = np.int64(cuda.blockIdx.y)
        while r < R:
            if active[r] != 0:
                st = np.uint64(steps[r])
                w0, w1, w2, w3 = stream_block(np.uint32(BLOCK0 + q), np.uint32(st & _U64_MASK),
                                              np.uint32(st >> _U64_32), PURPOSE_WOLFF, seed, streams[r])
                x = r * N + 2 * q
                bits[np.uint64(x)] = np.uint8((1 if np.int64(w0) < T else 0) | (2 if np.int64(w1) < T else 0))
                if 2 * q + 1 < N:
                    bits[np.uint64(x + 1)] = np.uint8((1 if np.int64(w2) < T else 0) | (2 if np.int64(w3) < T else 0))
            r += np.int64(cuda.gridDim.y)


@cuda.jit
def _init_kernel(spins, labels, N, s0s, active):
    """labels = own index for the sites with the seed's spin, NOT_IN for the others."""
    x = np.int64(cuda.blockIdx.x) * np.int64(cuda.blockDim.x) + np.int64(cuda.threadIdx.x)
    R = s0s.shape[0]
    if x < N:
        r = np.int64(cuda.blockIdx.y)
        while r < R:
            if active[r] != 0:
                ix = np.uint64(r * N + x)
                labels[ix] = np.int32(x) if np.int32(spins[ix]) == s0s[r] else NOT_IN
            r += np.int64(cuda.gridDim.y)


@cuda.jit
def _scan_kernel(labels, bits, Lx, Ly, active, changed):
    """Komura-Okabe scanning: the smallest label among the open-bond neighbours lowers the root's label."""
    x = np.int64(cuda.blockIdx.x) * np.int64(cuda.blockDim.x) + np.int64(cuda.threadIdx.x)
    N = Lx * Ly
    R = active.shape[0]
    if x < N:
        r = np.int64(cuda.blockIdx.y)
        while r < R:
            base = r * N
            lab = labels[np.uint64(base + x)]
            if active[r] != 0 and lab != NOT_IN:
                dn, rt, up, lf = _neighbours(x, Lx, Ly)
                bx = bits[np.uint64(base + x)]
                m = lab
                # a neighbour's label is NOT_IN (-1) unless it has the seed's spin too
                if bx & 1:
                    v = labels[np.uint64(base + dn)]
                    if v != NOT_IN and v < m:
                        m = v
                if bx & 2:
                    v = labels[np.uint64(base + rt)]
                    if v != NOT_IN and v < m:
                        m = v
                if bits[np.uint64(base + up)] & 1:
                    v = labels[np.uint64(base + up)]
                    if v != NOT_IN and v < m:
                        m = v
                if bits[np.uint64(base + lf)] & 2:
                    v = labels[np.uint64(base + lf)]
                    if v != NOT_IN and v < m:
                        m = v
                if m < lab:
                    cuda.atomic.min(labels, np.uint64(base + lab), m)
                    changed[0] = _I32_1
            r += np.int64(cuda.gridDim.y)


@cuda.jit
def _analysis_kernel(labels, N, active):
    """Komura-Okabe analysis: replace each label by its root (label[l] == l)."""
    x = np.int64(cuda.blockIdx.x) * np.int64(cuda.blockDim.x) + np.int64(cuda.threadIdx.x)
    R = active.shape[0]
    if x < N:
        r = np.int64(cuda.blockIdx.y)
        while r < R:
            base = r * N
            lab = labels[np.uint64(base + x)]
            if active[r] != 0 and lab != NOT_IN:
                nxt = labels[np.uint64(base + lab)]
                while nxt != lab:
                    lab = nxt
                    nxt = labels[np.uint64(base + lab)]
                labels[np.uint64(base + x)] = lab
            r += np.int64(cuda.gridDim.y)


@cuda.jit
def _flip_kernel(spins, labels, N, x0s, active, counts):
    """Flip the sites whose label is the seed's (the cluster) and count them (per block in shared
    memory, then one global atomic per block: a cluster can hold most of the lattice)."""
    x = np.int64(cuda.blockIdx.x) * np.int64(cuda.blockDim.x) + np.int64(cuda.threadIdx.x)
    R = active.shape[0]
    n_here = cuda.shared.array(1, dtype=np.int64)
    r = np.int64(cuda.blockIdx.y)
    while r < R:  # every thread of the block runs the same iterations (syncthreads inside)
        if cuda.threadIdx.x == 0:
            n_here[0] = 0
        cuda.syncthreads()
        if x < N and active[r] != 0:
            base = r * N
            root = labels[np.uint64(base + x0s[r])]
            if labels[np.uint64(base + x)] == root:
                ix = np.uint64(base + x)
                spins[ix] = np.int8(-spins[ix])
                cuda.atomic.add(n_here, 0, np.int64(1))
        cuda.syncthreads()
        if cuda.threadIdx.x == 0 and n_here[0] != 0:
            cuda.atomic.add(counts, r, n_here[0])
        r += np.int64(cuda.gridDim.y)


@cuda.jit
def _book_kernel(steps, counts, sizes, n_clusters, c):
    """sizes[r*n + c] = counts[r]; counts[r] = 0; steps[r] += 1."""
    r = np.int64(cuda.grid(1))
    if r < steps.shape[0]:
        sizes[np.uint64(r * n_clusters + c)] = np.int32(counts[r])
        counts[r] = 0
        steps[r] += 1


# ------------------------------------------------------------------------------------------
# host side
# ------------------------------------------------------------------------------------------
def choose_method(Lx: int, Ly: int, replicas: int) -> str:
    """"block" for lattices up to BLOCK_MAX_SITES sites (or many replicas), else "lattice"."""
    if Lx * Ly <= BLOCK_MAX_SITES:
        return "block"
    if SIMULATOR:
        return "block"
    n_sm = cuda.get_current_device().MULTIPROCESSOR_COUNT
    return "block" if replicas >= 2 * n_sm else "lattice"


class _Arrays:
    """Allocation and transfers: CuPy's pool when the spins are CuPy arrays, Numba otherwise, NumPy
    under the simulator (whose kernels run on NumPy arrays)."""

    def __init__(self, use_cupy: bool, stream):
        self.use_cupy = use_cupy
        self.stream = stream

    def upload(self, a):
        if SIMULATOR:
            return np.array(a, copy=True)
        if self.use_cupy:
            import cupy

            return cuda.as_cuda_array(cupy.asarray(a), sync=False)
        return cuda.to_device(np.ascontiguousarray(a), stream=self.stream)

    def zeros(self, n, dtype):
        return self.upload(np.zeros(n, dtype))

    def set_zero(self, d):
        if SIMULATOR:
            d[...] = 0
        else:
            d.copy_to_device(np.zeros(d.shape, d.dtype), stream=self.stream)

    def download(self, d):
        if SIMULATOR:
            return np.array(d, copy=True)
        return d.copy_to_host(stream=self.stream)


def _run_block(d_spins, R, Lx, Ly, d_steps, T, seed, d_streams, d_sizes, n, alloc, stream):
    N = Lx * Ly
    queue = alloc.zeros(R * N, np.int32)
    mark = alloc.zeros(R * N, np.int32)
    tpb = 4 if SIMULATOR else TPB_BLOCK
    _configure(_block_kernel, min(R, MAX_BLOCKS), tpb, stream)(
        d_spins, np.int64(Lx), np.int64(Ly), d_steps, np.int64(T), np.uint32(seed), d_streams, d_sizes, np.int64(n),
        queue, mark)


def _run_lattice(d_spins, R, Lx, Ly, d_steps, T, seed, d_streams, d_sizes, n, alloc, stream):
    N = Lx * Ly
    tpb = 8 if SIMULATOR else TPB
    grid_sites = ((N + tpb - 1) // tpb, min(R, MAX_GRID_Y))
    grid_pairs = (((N + 1) // 2 + tpb - 1) // tpb, min(R, MAX_GRID_Y))
    grid_rep = (R + tpb - 1) // tpb
    labels = alloc.zeros(R * N, np.int32)
    bits = alloc.zeros(R * N, np.uint8)
    x0s = alloc.zeros(R, np.int64)
    s0s = alloc.zeros(R, np.int32)
    counts = alloc.zeros(R, np.int64)
    active = alloc.upload(np.ones(R, np.int32))
    changed = alloc.zeros(1, np.int32)
    N64, Lx64, Ly64, T64, seed32 = np.int64(N), np.int64(Lx), np.int64(Ly), np.int64(T), np.uint32(seed)
    seed_k = _configure(_seed_kernel, grid_rep, tpb, stream)
    bonds = _configure(_bonds_kernel, grid_pairs, tpb, stream)
    init = _configure(_init_kernel, grid_sites, tpb, stream)
    scan = _configure(_scan_kernel, grid_sites, tpb, stream)
    analysis = _configure(_analysis_kernel, grid_sites, tpb, stream)
    flip = _configure(_flip_kernel, grid_sites, tpb, stream)
    book = _configure(_book_kernel, grid_rep, tpb, stream)
    for c in range(n):
        seed_k(d_spins, N64, d_steps, seed32, d_streams, active, x0s, s0s)
        bonds(bits, N64, d_steps, T64, seed32, d_streams, active)
        init(d_spins, labels, N64, s0s, active)
        while True:  # Komura-Okabe: scanning and analysis until a scan changes nothing
            alloc.set_zero(changed)
            scan(labels, bits, Lx64, Ly64, active, changed)
            if alloc.download(changed)[0] == 0:
                break
            analysis(labels, N64, active)
        flip(d_spins, labels, N64, x0s, active, counts)
        book(d_steps, counts, d_sizes, np.int64(n), np.int64(c))


def wolff_clusters(spins, n_clusters, *, steps, threshold, seed, streams, mean_size=None, method: str = "auto"):
    """GPU counterpart of :func:`isingcore.backends.numba_cpu.wolff.wolff_clusters`.

    ``spins``: int8 (R, Lx, Ly): a CuPy array (the work stays on the device, on CuPy's current
    stream), another CUDA array, or a NumPy array (copied to the device and back; used directly
    under the simulator); updated in place when C-contiguous and returned. ``steps``: int64 (R,)
    NumPy array of cluster counters, *updated in place*; ``streams``: (R,) (NumPy or device).
    Every replica performs ``n_clusters`` updates. ``method``: "auto" (:func:`choose_method`),
    "block" or "lattice"; ``mean_size`` is accepted for interface compatibility (unused).
    Returns ``(spins, sizes)`` with ``sizes`` int32 of shape (R, n_clusters) (NumPy).
    """
    if method not in ("auto", "block", "lattice"):
        raise ValueError(f"method={method!r} is not known; allowed values: 'auto', 'block', 'lattice'")
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, numbers.Integral) or n_clusters < 0:
        raise ValueError(f"n_clusters must be a non-negative integer, got {n_clusters!r}")
    n = int(n_clusters)
    seed = check_seed(seed)
    R, Lx, Ly = check_spin_batch(spins)
    if not isinstance(steps, np.ndarray) or steps.dtype != np.int64 or steps.shape != (R,):
        raise TypeError(f"steps must be an int64 NumPy array of shape ({R},) (it is updated in place)")
    if tuple(streams.shape) != (R,):
        raise ValueError(f"streams must have shape ({R},), got {streams.shape}")
    if not 0 <= int(threshold) <= 1 << 32:
        raise ValueError(f"threshold must be in [0, 2**32], got {threshold}")
    N = Lx * Ly
    if method == "auto":
        method = choose_method(Lx, Ly, R)
    if n == 0 or R == 0:
        return spins, np.zeros((R, n), np.int32)
    run = _run_block if method == "block" else _run_lattice

    def drive(d_spins, d_streams, alloc, stream):
        d_steps = alloc.upload(steps)
        d_sizes = alloc.zeros(R * n, np.int32)
        run(d_spins, R, Lx, Ly, d_steps, int(threshold), seed, d_streams, d_sizes, n, alloc, stream)
        steps[:] = alloc.download(d_steps)
        return alloc.download(d_sizes).reshape(R, n)

    if SIMULATOR:
        out = np.ascontiguousarray(spins)
        sizes = drive(out.reshape(-1), np.ascontiguousarray(streams, dtype=np.uint32), _Arrays(False, 0), 0)
        return out, sizes

    if _is_cupy(spins):
        import cupy

        with cupy.cuda.Device(spins.device.id), cuda.gpus[spins.device.id]:
            cp_stream = cupy.cuda.get_current_stream()
            stream = cuda.external_stream(cp_stream.ptr) if cp_stream.ptr else cuda.default_stream()
            out = spins if spins.flags.c_contiguous else cupy.ascontiguousarray(spins)
            d_spins = cuda.as_cuda_array(out.reshape(-1), sync=False)
            d_streams = cuda.as_cuda_array(cupy.ascontiguousarray(cupy.asarray(streams, dtype=cupy.uint32)), sync=False)
            sizes = drive(d_spins, d_streams, _Arrays(True, stream), stream)
        return out, sizes

    stream = cuda.default_stream()
    if hasattr(spins, "__cuda_array_interface__"):
        d = cuda.as_cuda_array(spins)
        if not d.is_c_contiguous():
            raise TypeError("spins on the device must be C-contiguous")
        out, host, d_spins = spins, None, d.reshape(R * N)
    else:
        out = host = np.ascontiguousarray(spins)
        d_spins = cuda.to_device(host.reshape(-1), stream=stream)
    if hasattr(streams, "__cuda_array_interface__"):
        d_streams = cuda.as_cuda_array(streams)
    else:
        d_streams = cuda.to_device(np.ascontiguousarray(streams, dtype=np.uint32), stream=stream)
    sizes = drive(d_spins, d_streams, _Arrays(False, stream), stream)
    if host is not None:
        d_spins.copy_to_host(host.reshape(-1), stream=stream)
        stream.synchronize()
    return out, sizes


__all__ = ["wolff_clusters", "choose_method", "seed_site", "SIMULATOR"]
