"""Wolff single-cluster updates on the CPU (Numba): two growth methods, threads over replicas.

Same clusters, bit for bit, as the reference :func:`isingcore.mcmc.wolff.wolff_cluster` (its
module docstring has the random-number rule): update ``t`` of a replica takes its seed site from
Lemire's rule on words 0..63 of ``(seed, stream, t, Purpose.WOLFF)``, and bond ``b = 2x + d`` is
open iff the spins agree and word ``64 + b`` is below the threshold. The cluster is the connected
component of the seed in the open-bond graph, so the traversal order does not matter.

Method "bits" (large clusters: near and below T_c)
--------------------------------------------------
The lattice is packed into bit boards once per call (64 sites of a row per uint64 word, bit = 1
for spin -1) and unpacked at the end. The cluster, its frontier and the bond bits of a word are
uint64 masks: a word taken from the stack closes its frontier along the row (moves through open
right-bonds into free sites, a few word operations per run), hands the row's end sites to the
neighbouring words, and passes ``frontier & down-bonds & free sites`` to the rows below and above,
64 sites per operation. Bond bits are filled per word on demand (stamped with the update number).
At K_c: 12.5 ns per flipped spin (L = 256 and 1024, one core, of which ~2 ns Philox), against
~20 ns for the site method.

Method "sites" (small clusters)
-------------------------------
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


@njit(inline="always", cache=True)
def _replica_clusters(spins, steps, T, seed, streams, sizes, logw, r):
    """sizes.shape[1] cluster updates of replica r; sizes[r, k] = size of the k-th."""
    R, Lx, Ly = spins.shape
    N = Lx * Ly
    nt = ((N - 1) >> logw) + 1
    s = spins[r].reshape(N)
    stack = np.empty(N + 1, np.int64)
    bits0 = np.empty(nt, np.uint64)
    bits1 = np.empty(nt, np.uint64)
    stamp = np.full(nt, -1, np.int64)
    for k in range(sizes.shape[1]):
        sizes[r, k] = grow_cluster(s, Lx, Ly, steps[r], seed, streams[r], T, stack, bits0, bits1, stamp, logw)
        steps[r] += 1


# Two functions, not njit(parallel=True/False) of one: Numba's on-disk cache keys on the Python
# function, so two compilations of one function would share (and swap) their machine code.
@njit(parallel=True, cache=True)
def _clusters_parallel(spins, steps, T, seed, streams, sizes, logw):
    """Replicas in parallel threads."""
    for r in prange(spins.shape[0]):
        _replica_clusters(spins, steps, T, seed, streams, sizes, logw, r)


@njit(cache=True)
def _clusters_serial(spins, steps, T, seed, streams, sizes, logw):
    """Replicas one after the other on one thread."""
    for r in range(spins.shape[0]):
        _replica_clusters(spins, steps, T, seed, streams, sizes, logw, r)

# ------------------------------------------------------------------------------------------
# method="bits": the lattice as bit boards, 64 sites per word operation
# ------------------------------------------------------------------------------------------
U0 = np.uint64(0)
ALL = np.uint64(0xFFFFFFFFFFFFFFFF)


@njit(inline="always", cache=True)
def _popcount(v):
    v = v - ((v >> ONE) & np.uint64(0x5555555555555555))
    v = (v & np.uint64(0x3333333333333333)) + ((v >> np.uint64(2)) & np.uint64(0x3333333333333333))
    v = (v + (v >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((v * np.uint64(0x0101010101010101)) >> np.uint64(56))


@njit(cache=True)
def pack_lattice(s, Lx, Ly, sb):
    """Bit board of the flat lattice s: bit k of sb[i*W + w] is 1 iff spin (i, 64w + k) is -1 (W = ceil(Ly/64))."""
    W = (Ly + 63) >> 6
    for i in range(Lx):
        for w in range(W):
            base = i * Ly + 64 * w
            n = min(64, Ly - 64 * w)
            m = U0
            for k in range(n):
                m |= np.uint64(s[base + k] < 0) << np.uint64(k)
            sb[i * W + w] = m


@njit(cache=True)
def unpack_lattice(sb, Lx, Ly, s):
    """Inverse of :func:`pack_lattice`."""
    W = (Ly + 63) >> 6
    for i in range(Lx):
        for w in range(W):
            base = i * Ly + 64 * w
            n = min(64, Ly - 64 * w)
            m = sb[i * W + w]
            for k in range(n):
                s[base + k] = np.int8(1 - 2 * np.int64((m >> np.uint64(k)) & ONE))


@njit(cache=True)
def fill_word(base, n, slo, shi, seed, stream, T, down, right, iw):
    """Bond bits of the n <= 64 sites base .. base+n-1 of one row: bit k of down[iw] / right[iw] is the
    down / right bond of site base + k (word test only). Block 16 + q holds the bonds of sites 2q, 2q + 1;
    base may be odd (odd Ly), then the first block's site 2q lies in the row before."""
    q0 = base >> 1
    q1 = (base + n - 1) >> 1
    d = U0
    r = U0
    for q in range(q0, q1 + 1):
        w0, w1, w2, w3 = philox4x32_10(np.uint64(BLOCK0 + q), slo, shi, PURPOSE_WOLFF, seed, stream)
        pd = np.uint64(w0 < T) | (np.uint64(w2 < T) << ONE)
        pr = np.uint64(w1 < T) | (np.uint64(w3 < T) << ONE)
        k = 2 * q - base
        if k >= 0:
            d |= pd << np.uint64(k)
            r |= pr << np.uint64(k)
        else:
            d |= pd >> ONE
            r |= pr >> ONE
    if n < 64:
        valid = (ONE << np.uint64(n)) - ONE
        d &= valid
        r &= valid
    down[iw] = d
    right[iw] = r


@njit(inline="always", cache=True)
def _free(sb, cl, iw, flip, valid):
    """Sites of word iw with the seed's spin that are not in the cluster yet."""
    return (sb[iw] ^ flip) & valid & ~cl[iw]


@njit(inline="always", cache=True)
def _join(iw, bits, i, w, cl, fr, ws, wtop, touched, ntouch):
    """Add the sites ``bits`` of word iw = (i, w) to the cluster and to the word's frontier."""
    if cl[iw] == U0:
        touched[ntouch] = iw
        ntouch += 1
    cl[iw] |= bits
    if fr[iw] == U0:
        ws[wtop] = (i << 32) | w
        wtop += 1
    fr[iw] |= bits
    return wtop, ntouch


@njit(cache=True)
def grow_cluster_bits(sb, Lx, Ly, step, seed, stream, T, ws, touched, cl, fr, down, right, stamp):
    """One Wolff update on the bit board ``sb`` (see :func:`pack_lattice`): flips the cluster, returns its size.

    Words ``iw = i*W + w`` hold 64 sites of row i. ``cl``: cluster bits, ``fr``: frontier bits (sites
    whose neighbours are still to be examined), both zero on entry and exit; ``ws``: stack of
    words with a non-empty frontier; ``touched``: words with cluster bits (for the final flip);
    ``down``, ``right``, ``stamp``: bond bits per word, filled on demand (stamp = update number).
    Processing a word: its frontier is closed along the row (left/right moves through open
    right-bonds), then the row's ends continue into the neighbouring words, and the down-bonds of
    the row (and of the row above) carry the new sites to the rows below (above).
    """
    N = Lx * Ly
    W = (Ly + 63) >> 6
    lastbit = np.uint64((Ly - 1) & 63)
    nlast = Ly - 64 * (W - 1)
    vlast = ALL if nlast == 64 else (ONE << np.uint64(nlast)) - ONE
    st = np.uint64(step)
    slo = st & MASK
    shi = st >> S32
    sd = np.uint64(seed)
    sm = np.uint64(stream)
    Tu = np.uint64(T)
    stp = np.int64(step)
    x0 = seed_site(N, slo, shi, sd, sm)
    i0 = x0 // Ly
    j0 = x0 - i0 * Ly
    iw0 = i0 * W + (j0 >> 6)
    bit = ONE << np.uint64(j0 & 63)
    flip = U0 if (sb[iw0] & bit) != U0 else ALL  # seed spin -1: the free sites are the set bits
    cl[iw0] = bit
    fr[iw0] = bit
    touched[0] = iw0
    ntouch = 1
    ws[0] = (i0 << 32) | (j0 >> 6)
    wtop = 1
    size = 1
    lastrow = Lx - 1
    while wtop > 0:
        wtop -= 1
        v = ws[wtop]
        i = v >> 32
        w = v & 0xFFFFFFFF
        iw = i * W + w
        inner = w < W - 1
        valid = ALL if inner else vlast
        f = fr[iw]
        fr[iw] = U0
        if stamp[iw] != stp:
            fill_word(i * Ly + 64 * w, 64 if inner else nlast, slo, shi, sd, sm, Tu, down, right, iw)
            stamp[iw] = stp
        # along the row, inside the word: bit k -> k + 1 through right-bond k, k -> k - 1 through k - 1
        a = _free(sb, cl, iw, flip, valid)
        r = right[iw]
        F = f
        g = f
        while True:
            nb = (((g & r) << ONE) | ((g >> ONE) & r)) & a
            if nb == U0:
                break
            a &= ~nb
            F |= nb
            g = nb
        added = F ^ f
        if added != U0:
            cl[iw] |= added
            size += _popcount(added)
        # along the row, into the next word (or round the torus to column 0)
        lb = np.uint64(63) if inner else lastbit
        if ((F & r) >> lb) & ONE:
            wn = w + 1 if inner else 0
            jw = i * W + wn
            nbits = _free(sb, cl, jw, flip, ALL if wn < W - 1 else vlast) & ONE
            if nbits != U0:
                wtop, ntouch = _join(jw, nbits, i, wn, cl, fr, ws, wtop, touched, ntouch)
                size += 1
        # ... and into the previous word (or round to column Ly - 1), through that site's right-bond
        if F & ONE:
            wl = w - 1 if w > 0 else W - 1
            bl = np.uint64(63) if wl < W - 1 else lastbit
            jw = i * W + wl
            if stamp[jw] != stp:
                fill_word(i * Ly + 64 * wl, 64 if wl < W - 1 else nlast, slo, shi, sd, sm, Tu, down, right, jw)
                stamp[jw] = stp
            if (right[jw] >> bl) & ONE:
                nbits = _free(sb, cl, jw, flip, ALL if wl < W - 1 else vlast) & (ONE << bl)
                if nbits != U0:
                    wtop, ntouch = _join(jw, nbits, i, wl, cl, fr, ws, wtop, touched, ntouch)
                    size += 1
        # down: the down-bonds of this row
        i2 = i + 1 if i < lastrow else 0
        jw = i2 * W + w
        cand = F & down[iw]
        if cand != U0:
            nbits = _free(sb, cl, jw, flip, valid) & cand
            if nbits != U0:
                wtop, ntouch = _join(jw, nbits, i2, w, cl, fr, ws, wtop, touched, ntouch)
                size += _popcount(nbits)
        # up: the down-bonds of the row above (a distinct bond when Lx = 2)
        i2 = i - 1 if i > 0 else lastrow
        jw = i2 * W + w
        if stamp[jw] != stp:
            fill_word(i2 * Ly + 64 * w, 64 if inner else nlast, slo, shi, sd, sm, Tu, down, right, jw)
            stamp[jw] = stp
        cand = F & down[jw]
        if cand != U0:
            nbits = _free(sb, cl, jw, flip, valid) & cand
            if nbits != U0:
                wtop, ntouch = _join(jw, nbits, i2, w, cl, fr, ws, wtop, touched, ntouch)
                size += _popcount(nbits)
    for t in range(ntouch):  # flip the cluster
        iw = touched[t]
        sb[iw] ^= cl[iw]
        cl[iw] = U0
    return size


@njit(inline="always", cache=True)
def _replica_clusters_bits(spins, steps, T, seed, streams, sizes, r):
    """Bit boards for replica r: pack, sizes.shape[1] updates, unpack."""
    R, Lx, Ly = spins.shape
    N = Lx * Ly
    W = (Ly + 63) >> 6
    nw = Lx * W
    s = spins[r].reshape(N)
    sb = np.empty(nw, np.uint64)
    pack_lattice(s, Lx, Ly, sb)
    ws = np.empty(nw + 1, np.int64)
    touched = np.empty(nw + 1, np.int64)
    cl = np.zeros(nw, np.uint64)
    fr = np.zeros(nw, np.uint64)
    down = np.empty(nw, np.uint64)
    right = np.empty(nw, np.uint64)
    stamp = np.full(nw, -1, np.int64)
    for k in range(sizes.shape[1]):
        sizes[r, k] = grow_cluster_bits(sb, Lx, Ly, steps[r], seed, streams[r], T, ws, touched, cl, fr, down,
                                        right, stamp)
        steps[r] += 1
    unpack_lattice(sb, Lx, Ly, s)


@njit(parallel=True, cache=True)
def _clusters_bits_parallel(spins, steps, T, seed, streams, sizes):
    """Replicas in parallel threads, bit boards."""
    for r in prange(spins.shape[0]):
        _replica_clusters_bits(spins, steps, T, seed, streams, sizes, r)


@njit(cache=True)
def _clusters_bits_serial(spins, steps, T, seed, streams, sizes):
    """Replicas one after the other, bit boards."""
    for r in range(spins.shape[0]):
        _replica_clusters_bits(spins, steps, T, seed, streams, sizes, r)


#: below this many expected flipped spins per call, one thread does all the work: a parallel
#: region's barrier costs more than the work, and much more when the cores are busy (measured:
#: 12 ms instead of 0.2 ms per call for 32 replicas of 8x8 on two busy cores)
SERIAL_FLIPS = 1 << 16


def choose_driver(R: int, work: float, method: str = "sites", n_threads: int | None = None):
    """Threads over replicas, or serial for one replica, one thread or little work (same bits)."""
    import numba

    n_threads = numba.get_num_threads() if n_threads is None else n_threads
    serial = n_threads <= 1 or R <= 1 or work < SERIAL_FLIPS
    if method == "bits":
        return _clusters_bits_serial if serial else _clusters_bits_parallel
    return _clusters_serial if serial else _clusters_parallel


#: method="auto" uses the bit boards from this mean cluster size on
BITS_MIN_CLUSTER = 512


def choose_method(n_sites: int, n_clusters: int, mean_size=None, threshold=None) -> str:
    """"bits" for large clusters, "sites" for small ones (it changes only the speed).

    Measured at L = 256, ns per flipped spin (sites / bits): K = 0.1 (<|C|> ~ 2): 127 / 282;
    K = 0.25: 77 / 131; K = 0.35 (<|C|> ~ 300): 57 / 62; K_c: 21 / 16.5 (12.5 on a quieter
    core); K = 0.6: 25 / 5.4. The bit boards also pack and unpack the lattice once per call (O(N)),
    so they need ``n_clusters * <|C|>`` to be at least N/8. Without a measured mean: bits if
    the bond probability is at least 1/2 (K >= ln(2)/2, large clusters).
    """
    if mean_size is None or not np.isfinite(mean_size):
        big = threshold is not None and threshold >= 1 << 31
        mean_size = n_sites / 4 if big else 1.0
    if mean_size >= BITS_MIN_CLUSTER and n_clusters * mean_size >= n_sites / 8:
        return "bits"
    return "sites"


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


def wolff_clusters(spins, n_clusters, *, steps, threshold, seed, streams, mean_size=None, method="auto", logw=None):
    """Fused counterpart of :func:`isingcore.mcmc.wolff.wolff_clusters` (NumPy arrays).

    ``spins``: int8 (R, Lx, Ly), updated in place when C-contiguous, and returned;
    ``steps``: int64 (R,) NumPy array of cluster counters, *updated in place*; ``streams``: (R,).
    Every replica performs ``n_clusters`` updates. ``method``: "sites" (site by site, tiles of
    bond bits), "bits" (bit boards) or "auto" (:func:`choose_method`); ``mean_size``: expected
    cluster size (a speed hint for the method and the tile width, :func:`choose_logw`), or ``logw``
    (1..6) directly. All choices give the same bits. Returns ``(spins, sizes)`` with ``sizes``
    int32 of shape (R, n_clusters).
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
    if method not in ("auto", "sites", "bits"):
        raise ValueError(f"method={method!r} is not known; allowed values: 'auto', 'sites', 'bits'")
    if logw is None:
        logw = choose_logw(mean_size, threshold)
    if not 1 <= logw <= MAX_LOGW:
        raise ValueError(f"logw must be in 1..{MAX_LOGW}, got {logw}")
    n = int(n_clusters)
    if method == "auto":
        method = choose_method(Lx * Ly, n, mean_size, threshold)
    sizes = np.empty((R, n), np.int32)
    if n > 0 and R > 0:
        per_cluster = mean_size if mean_size is not None and np.isfinite(mean_size) else Lx * Ly / 2
        driver = choose_driver(R, R * n * per_cluster, method)
        args = (spins, steps, np.int64(threshold), np.uint32(seed), streams, sizes)
        driver(*args) if method == "bits" else driver(*args, np.int64(logw))
    return spins, sizes
