"""Wolff single-cluster updates on the CPU (Numba): flip on add, branch-free growth, threads over replicas.

Same clusters, bit for bit, as the reference :func:`isingcore.mcmc.wolff.wolff_cluster` (its
module docstring has the random-number rule): update ``t`` of a replica takes its seed site from
Lemire's rule on words 0..63 of ``(seed, stream, t, Purpose.WOLFF)``, and bond ``b = 2x + d`` is
open iff the spins agree and word ``64 + b`` is below the threshold. The cluster is the connected
component of the seed in the open-bond graph, so the traversal order does not matter.

Growth
------
Depth-first with an explicit stack of (row, column) pairs (``i << 32 | j``, so no division). A
site is flipped when it is pushed, so "neighbour y still has the seed's original spin s0" also
means "y is not yet in the cluster": no mark array is needed and every bond is tested at most once.
The four neighbour tests of a site are written without branches (the neighbour is always written
at the top of the stack, and the top advances by the 0/1 decision), which avoids about two
mispredicted branches per flipped spin (measured: 13 instead of 20 ns per flipped spin for the
bare traversal). Depth-first order keeps the working set local: breadth-first was as fast at
L = 256 but 1.7x slower at L = 1024, where its frontier does not fit in the L2 cache.

Bond bits on demand
-------------------
Philox words are only computed for the part of the lattice the cluster reaches: the sites are cut
into *tiles* of ``2**logw`` consecutive flat indices (``logw`` <= 6), whose ``2**logw`` down-bonds
and ``2**logw`` right-bonds are held as two bit masks (one uint64 each). A tile is filled (its
``2**(logw-1)`` Philox blocks computed and compared with the threshold) the first time the update
needs one of its bonds; ``stamp[tile]`` records the update it was filled for, so nothing is
cleared between updates. A site needs the tile of its own two bonds, that of the site above
(its down-bond) and that of the site to its left (its right-bond). Large tiles amortise the
filling near and below T_c (about 0.9 Philox blocks per flipped spin at K_c with 64-site tiles,
against 0.59 distinct blocks touched); small clusters at high temperature prefer small tiles
(:func:`choose_logw`). Any ``logw`` gives the same cluster.
"""

import numpy as np
from numba import njit, prange

from .philox import philox4x32_10

PURPOSE_WOLFF = np.uint64(2)  # isingcore.random.Purpose.WOLFF
SEED_WORDS = 64  # isingcore.mcmc.wolff.SEED_WORDS; bond b uses word SEED_WORDS + b
BLOCK0 = SEED_WORDS // 4  # Philox block of bonds 0..3 (sites 0 and 1)
MAX_LOGW = 6
MASK = np.uint64(0xFFFFFFFF)
S32 = np.uint64(32)
ONE = np.uint64(1)


@njit(inline="always", cache=True)
def _lane(w0, w1, w2, w3, q):
    if q == 0:
        return w0
    if q == 1:
        return w1
    if q == 2:
        return w2
    return w3


@njit(cache=True)
def seed_site(n_sites, slo, shi, seed, stream):
    """Lemire's rule on words 0..63: x0 = (w N) >> 32 unless (w N mod 2**32) < (2**32 mod N).

    All arguments uint64 (``slo``, ``shi``: the low and high 32 bits of the update number).
    """
    N = np.uint64(n_sites)
    reject_below = np.uint64((ONE << S32) % N)
    m = np.uint64(0)
    for g in range(SEED_WORDS // 4):
        w0, w1, w2, w3 = philox4x32_10(np.uint64(g), slo, shi, PURPOSE_WOLFF, seed, stream)
        for q in range(4):
            m = _lane(w0, w1, w2, w3, q) * N
            if (m & MASK) >= reject_below:
                return np.int64(m >> S32)
    return np.int64(m >> S32)  # all 64 words rejected (probability < (N / 2**32)**64)


@njit(cache=True)
def fill_tile(t, logw, n_sites, slo, shi, seed, stream, T, bits0, bits1):
    """Bond bits of tile t (sites t*2**logw ...): bit k of bits0[t] / bits1[t] is the down / right bond
    of site t*2**logw + k (open iff its word < T; spins not looked at). Block 16 + q holds the bonds of
    sites 2q (lanes 0, 1) and 2q + 1 (lanes 2, 3)."""
    nq = np.int64(1) << (logw - 1)
    q0 = t * nq
    q1 = min(q0 + nq, (n_sites + 1) >> 1)
    a0 = np.uint64(0)
    a1 = np.uint64(0)
    for q in range(q0, q1):
        w0, w1, w2, w3 = philox4x32_10(np.uint64(BLOCK0 + q), slo, shi, PURPOSE_WOLFF, seed, stream)
        sh = np.uint64(2 * (q - q0))
        a0 |= (np.uint64(w0 < T) | (np.uint64(w2 < T) << ONE)) << sh
        a1 |= (np.uint64(w1 < T) | (np.uint64(w3 < T) << ONE)) << sh
    bits0[t] = a0
    bits1[t] = a1


@njit(cache=True)
def grow_cluster(s, Lx, Ly, step, seed, stream, T, stack, bits0, bits1, stamp, logw):
    """One Wolff update of the flat lattice ``s`` (int8, length Lx*Ly): flips the cluster, returns its size.

    ``step``: update number (int64 >= 0); ``T``: bond threshold (int64, <= 2**32); ``stack``: int64
    scratch of length >= Lx*Ly + 1 (entries ``i << 32 | j``); ``bits0``, ``bits1`` (uint64) and
    ``stamp`` (int64, -1 = never filled): the tile cache, length ceil(N / 2**logw), reusable across
    updates of the same lattice size.
    """
    N = Lx * Ly
    st = np.uint64(step)
    slo = st & MASK
    shi = st >> S32
    sd = np.uint64(seed)
    sm = np.uint64(stream)
    Tu = np.uint64(T)
    stp = np.int64(step)
    wmask = (np.int64(1) << logw) - 1
    x0 = seed_site(N, slo, shi, sd, sm)
    s0 = s[x0]
    ns = np.int8(-s0)
    s[x0] = ns
    i0 = x0 // Ly
    stack[0] = (i0 << 32) | (x0 - i0 * Ly)
    top = 1
    size = 1
    lastrow = Lx - 1
    lastcol = Ly - 1
    while top > 0:
        top -= 1
        v = stack[top]
        i = v >> 32
        j = v & 0xFFFFFFFF
        row = i * Ly
        x = row + j
        ip = i + 1 if i < lastrow else 0
        im = i - 1 if i > 0 else lastrow
        jp = j + 1 if j < lastcol else 0
        jm = j - 1 if j > 0 else lastcol
        up = im * Ly + j
        lf = row + jm
        tx = x >> logw
        tu = up >> logw
        tl = lf >> logw
        if stamp[tx] != stp:
            fill_tile(tx, logw, N, slo, shi, sd, sm, Tu, bits0, bits1)
            stamp[tx] = stp
        if stamp[tu] != stp:
            fill_tile(tu, logw, N, slo, shi, sd, sm, Tu, bits0, bits1)
            stamp[tu] = stp
        if tl != tx and stamp[tl] != stp:
            fill_tile(tl, logw, N, slo, shi, sd, sm, Tu, bits0, bits1)
            stamp[tl] = stp
        sx = np.uint64(x & wmask)
        # down: bond 2x + 0. The neighbour is always written at the top of the stack, which
        # advances by the decision c (0 or 1).
        y = ip * Ly + j
        c = np.int64(s[y] == s0) & np.int64((bits0[tx] >> sx) & ONE)
        s[y] = ns if c else s[y]
        stack[top] = (ip << 32) | j
        top += c
        size += c
        # right: bond 2x + 1
        y = row + jp
        c = np.int64(s[y] == s0) & np.int64((bits1[tx] >> sx) & ONE)
        s[y] = ns if c else s[y]
        stack[top] = (i << 32) | jp
        top += c
        size += c
        # up: bond 2*up + 0
        c = np.int64(s[up] == s0) & np.int64((bits0[tu] >> np.uint64(up & wmask)) & ONE)
        s[up] = ns if c else s[up]
        stack[top] = (im << 32) | j
        top += c
        size += c
        # left: bond 2*lf + 1
        c = np.int64(s[lf] == s0) & np.int64((bits1[tl] >> np.uint64(lf & wmask)) & ONE)
        s[lf] = ns if c else s[lf]
        stack[top] = (i << 32) | jm
        top += c
        size += c
    return size


def _clusters_by_replica(spins, steps, T, seed, streams, sizes, logw):
    """Replicas in parallel: sizes.shape[1] cluster updates each; sizes[r, k] = size of the k-th."""
    R, Lx, Ly = spins.shape
    N = Lx * Ly
    n = sizes.shape[1]
    nt = ((N - 1) >> logw) + 1
    for r in prange(R):
        s = spins[r].reshape(N)
        stack = np.empty(N + 1, np.int64)
        bits0 = np.empty(nt, np.uint64)
        bits1 = np.empty(nt, np.uint64)
        stamp = np.full(nt, -1, np.int64)
        for k in range(n):
            sizes[r, k] = grow_cluster(s, Lx, Ly, steps[r], seed, streams[r], T, stack, bits0, bits1, stamp, logw)
            steps[r] += 1


_clusters_parallel = njit(parallel=True, cache=True)(_clusters_by_replica)
_clusters_serial = njit(parallel=False, cache=True)(_clusters_by_replica)

#: below this many expected flipped spins per call, one thread does all the work: a parallel
#: region's barrier costs more than the work, and much more when the cores are busy (measured:
#: 12 ms instead of 0.2 ms per call for 32 replicas of 8x8 on two busy cores)
SERIAL_FLIPS = 1 << 16


def choose_driver(R: int, work: float, n_threads: int | None = None):
    """Threads over replicas, or serial for one replica, one thread or little work (same bits)."""
    import numba

    n_threads = numba.get_num_threads() if n_threads is None else n_threads
    if n_threads <= 1 or R <= 1 or work < SERIAL_FLIPS:
        return _clusters_serial
    return _clusters_parallel


def choose_logw(mean_cluster_size=None, threshold=None) -> int:
    """Tile width ``2**logw`` for the expected cluster size (it changes only the speed).

    64-site tiles (logw = 6) for clusters of 64 sites or more (near and below T_c); for small
    clusters ``logw = max(3, bit_length(mean) - 1)``. Without a measured mean, 64-site tiles if the
    bond probability is at least 1/2 (K >= ln(2)/2 ~ 0.35, large clusters), else 8-site tiles.
    Measured at L = 256 (ns per flipped spin, logw = 1..6): K = 0.1 (<|C|> = 1.6):
    161 156 125 145 182 248; K = 0.35 (<|C|> = 16): 92 67 47 55 54 72; K_c: 58 38 26 27 23 31.
    """
    if mean_cluster_size is None or not np.isfinite(mean_cluster_size):
        if threshold is None:
            return MAX_LOGW
        return MAX_LOGW if threshold >= 1 << 31 else 3
    if mean_cluster_size >= 64:
        return MAX_LOGW
    return int(min(MAX_LOGW, max(3, int(mean_cluster_size).bit_length() - 1)))


def wolff_clusters(spins, n_clusters, *, steps, threshold, seed, streams, mean_size=None, logw=None):
    """Fused counterpart of :func:`isingcore.mcmc.wolff.wolff_clusters` (NumPy arrays).

    ``spins``: int8 (R, Lx, Ly), updated in place when C-contiguous, and returned;
    ``steps``: int64 (R,) NumPy array of cluster counters, *updated in place*; ``streams``: (R,).
    Every replica performs ``n_clusters`` updates. ``mean_size``: expected cluster size (a speed
    hint, see :func:`choose_logw`), or ``logw`` (1..6) directly. Returns ``(spins, sizes)`` with
    ``sizes`` int32 of shape (R, n_clusters).
    """
    if spins.ndim != 3:
        raise ValueError(f"spins must have shape (replicas, Lx, Ly), got {spins.shape}")
    spins = np.ascontiguousarray(spins, dtype=np.int8)
    R, Lx, Ly = spins.shape
    if not isinstance(steps, np.ndarray) or steps.dtype != np.int64 or steps.shape != (R,):
        raise TypeError(f"steps must be an int64 NumPy array of shape ({R},) (it is updated in place)")
    if np.any(steps < 0):
        raise ValueError("steps must be non-negative")
    streams = np.ascontiguousarray(np.asarray(streams), dtype=np.uint32)
    if streams.shape != (R,):
        raise ValueError(f"streams must have shape ({R},), got {streams.shape}")
    if not 0 <= int(threshold) <= 1 << 32:
        raise ValueError(f"threshold must be in [0, 2**32], got {threshold}")
    if logw is None:
        logw = choose_logw(mean_size, threshold)
    if not 1 <= logw <= MAX_LOGW:
        raise ValueError(f"logw must be in 1..{MAX_LOGW}, got {logw}")
    sizes = np.empty((R, int(n_clusters)), np.int32)
    if n_clusters > 0 and R > 0:
        per_cluster = mean_size if mean_size is not None and np.isfinite(mean_size) else Lx * Ly / 2
        driver = choose_driver(R, R * int(n_clusters) * per_cluster)
        driver(spins, steps, np.int64(threshold), np.uint32(seed), streams, sizes, np.int64(logw))
    return spins, sizes
