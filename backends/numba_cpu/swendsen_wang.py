"""Fused Swendsen-Wang updates on the CPU (Numba; one thread per replica).

Same bonds, clusters and flips, bit for bit, as :func:`isingcore.mcmc.swendsen_wang.swendsen_wang_update`
(see its module docstring for the random-number rule: bond ``b = 2k + d`` open iff the spins agree
and word ``b`` < T; cluster flips iff word ``2N + r`` < 2**31, ``r`` = smallest site of the cluster).

One update of one replica makes two passes over the lattice, row by row (``k = i*Ly + j``):

1. *Bonds and union-find.* For row ``i`` the ``2 Ly`` bond words ``2 i Ly .. 2 (i+1) Ly - 1`` are
   one contiguous piece of the stream (vectorised Philox, :func:`_words`), and the open bonds of
   the row (down and right) follow in a vectorisable loop. The row is then labelled with a
   union-find forest ``p`` (``p[k] = k`` for a root) whose links always go from the larger index
   to the smaller, so ``p[k] <= k`` and every root is the smallest index of its tree -- after the
   last merge, the canonical root of its cluster. The row scan (:func:`_scan_row`) is
   branch-free: the row above was flattened (each of its sites points to its root), links
   between two roots of earlier rows are deferred to the end of the row, so during the scan
   ``p[k - Ly]`` *is* the root above and no find is needed; only links from a root inside the
   current row are made at once. After the scan the deferred links and the periodic bond
   (i, Ly-1)-(i, 0) are merged with finds (path halving), and the row is flattened. The periodic
   bonds of the last row to row 0 are merged at the end.
2. *Flatten, flip and count.* Because ``p[k] <= k``, one forward pass ``p[k] <- p[p[k]]``
   flattens the forest completely (``p[k]`` was final before ``k`` is reached). The coin of
   every site (word ``2N + k``) is drawn row by row, every site is flipped with the coin of its
   root, and the cluster sizes are counted at the roots, which are listed on the way.

The improved estimators come from the sizes: ``S2 = sum_C |C|^2`` (int64) and
``S4 = sum_C |C|^4`` (float64, summed in root order). Working set per replica: spins (1 B/site),
``p``, the counts and the root list (int32), the coins (int8), and a few rows of bonds and words.
Indices are cast to uint64 where arrays are accessed in the hot loops (Numba adds a negative-index
wrap-around to signed indices).

Measured on one core of the development machine (AMD EPYC, shared with other jobs; CPU time of
the thread, ``tools/bench/bench_swendsen_wang.py``) at L = 1024 and K_c: about 10 ns per site and
update with the improved estimators, 8.5 ns without -- roughly 2 ns for the bonds (two Philox
words per site), 4 ns for the labelling, 2.5 ns for flatten, coins and flips, 1.5 ns for the
cluster sizes. (Writing ``min(x, cur) if left else x`` instead of computing ``min`` first doubled
the cost of the scan: Numba then emits an unpredictable branch instead of a conditional move.)
"""

import numpy as np
from numba import njit, prange

from .philox import word_scratch, words_into

PURPOSE_SW = 3  # isingcore.random.Purpose.SWENDSEN_WANG
HALF = np.uint32(1 << 31)


U64 = np.uint64


@njit(inline="always", cache=True)
def _words(buf, first, n, step, seed, stream):
    """buf[off + q] = word ``first + q`` (q < n) of (seed, stream, step, SWENDSEN_WANG); off = first & 3.

    The vectorised Philox of :mod:`isingcore.backends.numba_cpu.philox`.
    """
    words_into(buf, first, n, step, PURPOSE_SW, seed, stream)


@njit(inline="always", cache=True)
def _find(p, x):
    """Root of x with path halving (p[x] <- p[p[x]] on the way); keeps p[k] <= k.

    Indices are cast to uint64 at the access: Numba adds a negative-index wrap-around to every
    signed index, which costs instructions in these tight loops.
    """
    while True:
        px = np.int64(p[U64(x)])
        if px == x:
            return x
        ppx = np.int64(p[U64(px)])
        p[U64(x)] = ppx
        x = ppx


@njit(inline="always", cache=True)
def _union(p, a, b):
    """Merge the trees of a and b: the larger root is linked under the smaller."""
    ra = _find(p, a)
    rb = _find(p, b)
    if ra < rb:
        p[U64(rb)] = ra
    elif rb < ra:
        p[U64(ra)] = rb


@njit(inline="always", cache=True)
def _row_bonds(s, i, Lx, Ly, T, buf, step, seed, stream, dn, rt):
    """Open bonds of row i: dn[j] = bond (i,j)-(i+1,j), rt[j] = bond (i,j)-(i,j+1) (uint8 0/1)."""
    first = 2 * i * Ly
    _words(buf, first, 2 * Ly, step, seed, stream)
    off = first & 3
    row = s[i]
    below = s[i + 1 if i + 1 < Lx else 0]
    for j in range(Ly - 1):
        a = row[j]
        dn[j] = np.uint8((a == below[j]) & (np.int64(buf[off + 2 * j]) < T))
        rt[j] = np.uint8((a == row[j + 1]) & (np.int64(buf[off + 2 * j + 1]) < T))
    j = Ly - 1
    dn[j] = np.uint8((row[j] == below[j]) & (np.int64(buf[off + 2 * j]) < T))
    rt[j] = np.uint8((row[j] == row[0]) & (np.int64(buf[off + 2 * j + 1]) < T))


@njit(inline="always", cache=True)
def _scan_row(p, base, Ly, up, rt, ph, pl):
    """Union-find scan of the row starting at site ``base`` (> 0: the row above is done and flat).

    On entry every site of the row above points to its current root (flattened), and no root
    changes during the scan, so ``ru = p[k - Ly]`` *is* the root above without a find. Site
    ``k`` takes the representative ``x = ru`` (bond up open) or ``x = k``; if the bond to the left
    is open, ``x`` and the left neighbour's representative ``cur`` are merged: ``lo = min``,
    ``hi = max``. A link ``p[hi] = lo`` with ``hi`` in this row is made at once (no load of this
    scan reads this row); a link between two roots of earlier rows is deferred to the list
    (ph, pl) so that the roots read by the scan stay valid. Branch-free. Returns the list length.
    """
    n = np.int64(0)
    cur = np.int64(p[U64(base - Ly)]) if up[0] else base
    p[U64(base)] = cur
    for j in range(1, Ly):
        k = base + j
        ru = np.int64(p[U64(k - Ly)])
        x = ru if up[U64(j)] else k
        left = rt[U64(j - 1)] != 0
        mn = min(x, cur)  # computed unconditionally: the selects below then compile to cmov
        mx = max(x, cur)  # (``min(x, cur) if left else x`` compiles to an unpredictable branch)
        lo = mn if left else x
        hi = mx if left else x
        defer = hi < base
        p[U64(k if defer else hi)] = lo
        p[U64(k)] = lo
        ph[U64(n)] = hi
        pl[U64(n)] = lo
        n += defer & (hi != lo)
        cur = lo
    return n


@njit(cache=True)
def _update(s, p, cnt, roots, coin, buf, bonds, ph, pl, T, seed, stream, step, record):
    """One Swendsen-Wang update of the replica ``s`` (Lx, Ly) in place; returns (S2, S4)."""
    Lx, Ly = s.shape
    N = Lx * Ly
    dn0, rt0, dn1, rt1 = bonds[0], bonds[1], bonds[2], bonds[3]
    # pass 1: bonds and union-find, row by row
    for i in range(Lx):
        if i & 1:
            dnc, rtc, dnp = dn1, rt1, dn0
        else:
            dnc, rtc, dnp = dn0, rt0, dn1
        _row_bonds(s, i, Lx, Ly, T, buf, step, seed, stream, dnc, rtc)
        base = np.int64(i) * Ly
        if i == 0:
            cur = np.int64(0)
            for j in range(Ly):
                cur = cur if j > 0 and rtc[j - 1] else np.int64(j)
                p[U64(j)] = cur
        else:
            n = _scan_row(p, base, Ly, dnp, rtc, ph, pl)
            for q in range(n):
                _union(p, np.int64(ph[q]), np.int64(pl[q]))
        if rtc[Ly - 1]:  # periodic bond (i, Ly-1) - (i, 0)
            _union(p, base + Ly - 1, base)
        for j in range(Ly):  # flatten the row: the next scan reads its roots directly
            k = base + j
            r = np.int64(p[U64(p[U64(k)])])
            if p[U64(r)] != r:
                r = _find(p, r)
            p[U64(k)] = r
    dnl = dn1 if (Lx - 1) & 1 else dn0
    for j in range(Ly):  # periodic bonds (Lx-1, j) - (0, j)
        if dnl[j]:
            _union(p, np.int64((Lx - 1) * Ly + j), np.int64(j))
    nr = np.int64(0)
    # pass 2: flatten (p[k] <= k, so p[p[k]] is final when k is reached), coins, flips, sizes
    for i in range(Lx):
        base = np.int64(i) * Ly
        first = 2 * N + base
        _words(buf, first, Ly, step, seed, stream)
        off = first & 3
        row = s[i]
        for j in range(Ly):  # coin of site k, used if k is a root: -1 (flip) iff word < 2**31
            coin[U64(base + j)] = np.int8(1 - 2 * np.int32(buf[off + j] < HALF))
        if record:  # sizes counted at the roots; the roots are listed (branch-free append)
            for j in range(Ly):
                k = base + j
                r = np.int64(p[U64(p[U64(k)])])
                p[U64(k)] = r
                row[j] = np.int8(row[j] * coin[U64(r)])
                cnt[U64(k)] = 0
                cnt[U64(r)] += 1
                roots[U64(nr)] = k
                nr += r == k
        else:
            for j in range(Ly):
                k = base + j
                r = np.int64(p[U64(p[U64(k)])])
                p[U64(k)] = r
                row[j] = np.int8(row[j] * coin[U64(r)])
    S2 = np.int64(0)
    S4 = 0.0
    if record:
        for q in range(nr):
            c = np.int64(cnt[U64(roots[q])])
            S2 += c * c
            x = np.float64(c * c)
            S4 += x * x
    return S2, S4


@njit(cache=True)
def _replicas(spins, r0, r1, n, steps, T, seed, streams, m2, m4, record):
    """All n updates of the replicas r0 .. r1-1, one after the other (scratch allocated once)."""
    R, Lx, Ly = spins.shape
    N = Lx * Ly
    nn = np.float64(N) * np.float64(N)
    p = np.empty(N, np.int32)
    cnt = np.empty(N, np.int32)
    roots = np.empty(N, np.int32)
    coin = np.empty(N, np.int8)
    buf = word_scratch(2 * Ly)
    bonds = np.zeros((4, Ly), np.uint8)
    ph = np.empty(Ly, np.int32)
    pl = np.empty(Ly, np.int32)
    for r in range(r0, r1):
        s = spins[r]
        for t in range(n):
            step = np.uint64(steps[r]) + np.uint64(t)
            S2, S4 = _update(s, p, cnt, roots, coin, buf, bonds, ph, pl, T, seed, streams[r], step,
                             record)
            if record:
                x2 = np.float64(S2) / nn
                m2[r, t] = x2
                m4[r, t] = 3.0 * x2 * x2 - 2.0 * (S4 / nn) / nn


@njit(parallel=True, cache=True)
def _sweeps(spins, n, steps, T, seed, streams, m2, m4, record):
    """Replicas in parallel threads, handed out in at most 256 chunks."""
    R = spins.shape[0]
    n_chunks = min(R, 256)
    for c in prange(n_chunks):
        _replicas(spins, c * R // n_chunks, (c + 1) * R // n_chunks, n, steps, T, seed, streams, m2, m4, record)


@njit(cache=True)
def _sweeps_serial(spins, n, steps, T, seed, streams, m2, m4, record):
    """Replicas one after the other (no thread-pool launch: cheaper for small calls)."""
    _replicas(spins, 0, spins.shape[0], n, steps, T, seed, streams, m2, m4, record)


#: below this many site updates per call the serial version runs (a parallel launch costs more)
SERIAL_BELOW = 1 << 18


def swendsen_wang_sweeps(spins, n_updates, *, steps, threshold, seed, streams, record=True):
    """Fused counterpart of :func:`isingcore.mcmc.swendsen_wang.swendsen_wang_sweeps`.

    ``spins``: NumPy int8 (R, Lx, Ly), updated in place (a C-contiguous copy otherwise) and
    returned; ``steps``: int or (R,) first RNG step of each replica; ``threshold``: from
    :func:`isingcore.mcmc.swendsen_wang.bond_threshold`; ``streams``: uint32 (R,).
    Returns ``(spins, m2, m4)``, the improved estimators of every update (R, n_updates) float64
    (left unset when ``record`` is False).
    """
    spins = np.ascontiguousarray(spins)
    if spins.dtype != np.int8 or spins.ndim != 3:
        raise TypeError(f"spins must be an int8 array of shape (replicas, Lx, Ly), got {spins.dtype} {spins.shape}")
    R, Lx, Ly = spins.shape
    if Lx < 2 or Ly < 2:
        raise ValueError(f"the lattice must have Lx, Ly >= 2, got ({Lx}, {Ly})")
    if Lx * Ly >= 1 << 31:
        raise ValueError(f"at most 2**31 - 1 sites per replica, got {Lx} x {Ly}")
    n = int(n_updates)
    st = np.broadcast_to(np.asarray(steps, dtype=np.uint64), (R,)).copy()
    if n and np.any(st > np.uint64(2**64 - n)):
        raise ValueError("steps + n_updates must not exceed 2**64")
    m2 = np.empty((R, n))
    m4 = np.empty((R, n))
    if n and R:
        run = _sweeps if R > 1 and R * Lx * Ly * n >= SERIAL_BELOW else _sweeps_serial
        run(spins, n, st, np.int64(threshold), np.int64(seed), np.ascontiguousarray(streams, dtype=np.uint32),
                m2, m4, bool(record))
    return spins, m2, m4
