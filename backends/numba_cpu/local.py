"""Fused checkerboard Metropolis / heat bath on the CPU (Numba, threads over replicas and rows).

Same decisions, bit for bit, as :func:`isingcore.mcmc.local.checkerboard_half_sweep`. The kernel
works *in place* on the "row-split" layout: each row i of the lattice is permuted into
``[colour-0 sites | colour-1 sites]`` (:func:`to_row_split`, undone by :func:`from_row_split`),
so that ``ab = spins.reshape(R, Lx, 2, Ly/2)`` is a view with ``ab[r, i, c, m]`` the spin at
(i, j = 2m + ((i + c) & 1)). In this layout the RNG word of a site, ``(i*Ly + j)//2 = i*Ly/2 + m``,
is simply its flat index within its colour, every colour-row is contiguous, and the four
neighbours of ``ab[r, i, c, m]`` in the other colour ``o`` are ``ab[r, i-1, o, m]``,
``ab[r, i+1, o, m]``, ``ab[r, i, o, m]`` and ``ab[r, i, o, m-1]`` (if the row's first active site
has j = 0) or ``ab[r, i, o, m+1]`` (if it has j = 1), all periodic. No second copy of the lattice
is made (the inverse-RG refinement of 13,824^2 lattices relies on that).
"""

import numpy as np
from numba import njit, prange

from .philox import MASK, S32, philox4x32_10, word_scratch, words_into

PURPOSE_LOCAL = 1  # isingcore.random.Purpose.LOCAL: the default counter word 3 (``purpose``)


_N_CHUNKS = 64  # rows are handed to threads in at most this many chunks (scratch allocated per chunk)


@njit(parallel=True, cache=True)
def _permute_rows(spins, par, split):
    """Row-split permutation of :func:`to_row_split` (``split``) or its inverse, in place, threads over rows."""
    R, Lx, Ly = spins.shape
    half = Ly // 2
    rows = R * Lx
    n_chunks = min(rows, _N_CHUNKS)
    for ch in prange(n_chunks):
        tmp = np.empty(Ly, np.int8)
        for rr in range(ch * rows // n_chunks, (ch + 1) * rows // n_chunks):
            r = rr // Lx
            i = rr - r * Lx
            row = spins[r, i]
            tmp[:] = row
            j0 = (i + par) & 1
            for m in range(half):
                if split:
                    row[m] = tmp[2 * m + j0]
                    row[half + m] = tmp[2 * m + 1 - j0]
                else:
                    row[2 * m + j0] = tmp[m]
                    row[2 * m + 1 - j0] = tmp[half + m]


def to_row_split(spins, par=0):
    """In place, row by row: row i becomes [spins at j = 2m + ((i + par) & 1) | spins at j = 2m + 1 - ((i + par) & 1)].

    ``par``: parity of the global position of local site (0, 0) (``(x0 + y0) & 1`` for a tile at
    global offset ``(x0, y0)``), so that "colour 0" is the global colour ``(x + y) % 2 == 0``.
    """
    _permute_rows(spins, np.int64(par), True)


def from_row_split(spins, par=0):
    """Inverse of :func:`to_row_split` (in place, same ``par``)."""
    _permute_rows(spins, np.int64(par), False)


@njit(inline="always", cache=True)
def _update_site(act, up, dn, row, m, ms, buf, off, thr):
    s = np.int32(act[m])
    nb = np.int32(up[m]) + np.int32(dn[m]) + np.int32(row[m]) + np.int32(row[ms])
    if np.int64(buf[off + m]) < thr[((s + 1) >> 1) * 5 + ((nb + 4) >> 1)]:
        act[m] = -act[m]


@njit(inline="always", cache=True)
def _update_row_narrow(act, up, dn, row, side, buf, off, lo, hi, t5, t6, t7, t8, t9):
    """The symmetric update of ``act[lo:hi]`` in 32-bit lanes, for thresholds that are all >= 1.

    Same decisions as the int64 loop: with ``u = T - 1`` (0 <= u < 2^32, as T >= 1), the flip
    condition ``word < T`` is ``word <= u`` in uint32. Numba types ``int32 + int32`` as int64,
    which made LLVM vectorise the int64 loop four sites per register; NumPy's ufuncs on scalars
    keep their operand type, so here every operation is int32 or uint32 and LLVM packs eight
    sites per AVX2 register (2x faster, measured on the development machine). A flip is
    ``s -> (s ^ f) - f`` with ``f = -1``.
    """
    u5, u6, u7, u8, u9 = np.uint32(t5 - 1), np.uint32(t6 - 1), np.uint32(t7 - 1), np.uint32(t8 - 1), np.uint32(t9 - 1)
    m2, z, p2, p4 = np.int32(-2), np.int32(0), np.int32(2), np.int32(4)
    for m in range(lo, hi):
        s = np.int32(act[m])
        nb = np.add(np.add(np.int32(up[m]), np.int32(dn[m])), np.add(np.int32(row[m]), np.int32(row[m + side])))
        x = np.multiply(s, nb)
        U = u5
        U = u6 if np.equal(x, m2) else U
        U = u7 if np.equal(x, z) else U
        U = u8 if np.equal(x, p2) else U
        U = u9 if np.equal(x, p4) else U
        f = np.negative(np.int32(np.less_equal(buf[off + m], U)))
        act[m] = np.int8(np.subtract(np.bitwise_xor(s, f), f))


@njit(inline="always", cache=True)
def _update_row(act, up, dn, row, side, buf, off, thr, symmetric):
    """Flip act[m] iff its word buf[off+m] < thr[5*(s+1)/2 + (nb+4)/2]; side neighbour row[m+side].

    The periodic end of the row is peeled off so that the main loop has no wrap-around, and the
    threshold is picked by a chain of selects rather than a table load (a gather), which lets
    LLVM vectorise the loop (about 5x faster than the table lookup on AVX2). With h = 0 the table
    depends on s*nb only (``symmetric``): unless a threshold is 0 (exp(-8 beta) underflows, beta
    above about 90) the row takes the 5-way chain of :func:`_update_row_narrow`; otherwise, and for
    h != 0, the 10-way chain below in int64.
    """
    half = act.shape[0]
    t0, t1, t2, t3, t4, t5, t6, t7, t8, t9 = thr[0], thr[1], thr[2], thr[3], thr[4], thr[5], thr[6], thr[7], thr[8], thr[9]
    if side < 0:
        lo, hi = 1, half
        _update_site(act, up, dn, row, 0, half - 1, buf, off, thr)
    else:
        lo, hi = 0, half - 1
        _update_site(act, up, dn, row, half - 1, 0, buf, off, thr)
    if symmetric and t5 >= 1 and t6 >= 1 and t7 >= 1 and t8 >= 1 and t9 >= 1:
        _update_row_narrow(act, up, dn, row, side, buf, off, lo, hi, t5, t6, t7, t8, t9)
        return
    for m in range(lo, hi):
        s = np.int32(act[m])
        nb = np.int32(up[m]) + np.int32(dn[m]) + np.int32(row[m]) + np.int32(row[m + side])
        idx = ((s + 1) >> 1) * 5 + ((nb + 4) >> 1)
        T = t0
        T = t1 if idx == 1 else T
        T = t2 if idx == 2 else T
        T = t3 if idx == 3 else T
        T = t4 if idx == 4 else T
        T = t5 if idx == 5 else T
        T = t6 if idx == 6 else T
        T = t7 if idx == 7 else T
        T = t8 if idx == 8 else T
        T = t9 if idx == 9 else T
        flip = np.int32(np.int64(buf[off + m]) < T)
        act[m] = np.int8(s - 2 * s * flip)


@njit(inline="always", cache=True)
def _wrap_segment(s, gLy, q0, half):
    """Active positions ``m in [a, e)`` of a row that lie in its ``s``-th global wrap (``a >= half``: none left)."""
    a = 0 if s == 0 else (s * gLy - q0 + 1) >> 1
    e = ((s + 1) * gLy - q0 + 1) >> 1
    return a, (half if e > half else e)


@njit(inline="always", cache=True)
def _row_words(buf, wb, half, gi, q0, gLy, step, purpose, seed, stream):
    """Words of the ``half`` active sites of a row; returns ``(words, off)`` with site m's word at ``words[off + m]``.

    Active site m of the row has global column ``gj = (q0 + 2 m) mod gLy`` (``0 <= q0 < gLy``) in
    global row ``gi``; its word is ``(gi gLy + gj) // 2 = gi gLy/2 + q0//2 + m - s gLy/2`` on the
    s-th wrap of the row (gLy even). Without a wrap (every row of an untiled lattice) the words are
    one contiguous run, generated straight into ``buf``. A tile whose halo wraps around the
    periodic lattice generates its longest run with :func:`words_into` and the few others one
    block at a time, into ``wb``.
    """
    hy = gLy >> 1
    base = gi * hy + (q0 >> 1)
    if q0 + 2 * (half - 1) < gLy:
        words_into(buf, base, half, step, purpose, seed, stream)
        return buf, base - 4 * (base >> 2)
    # the longest run s_main: m in [a, e) with word base - s hy + m
    s_main = 0
    a_main = 0
    e_main = 0
    s = 0
    while True:
        a, e = _wrap_segment(s, gLy, q0, half)
        if a >= half:
            break
        if e - a > e_main - a_main:
            s_main, a_main, e_main = s, a, e
        s += 1
    first = base - s_main * hy + a_main
    n = e_main - a_main
    words_into(buf, first, n, step, purpose, seed, stream)
    o = first - 4 * (first >> 2)
    for m in range(a_main, e_main):
        wb[m] = buf[o + m - a_main]
    st = np.uint64(step)
    s = 0
    while True:
        a, e = _wrap_segment(s, gLy, q0, half)
        if a >= half:
            break
        if s != s_main:
            for m in range(a, e):
                k = base - s * hy + m
                w = philox4x32_10(np.uint64(k >> 2), st & MASK, st >> S32, np.uint64(purpose), seed, stream)
                lane = k & 3
                wb[m] = np.uint32(w[0] if lane == 0 else (w[1] if lane == 1 else (w[2] if lane == 2 else w[3])))
        s += 1
    return wb, 0


@njit(inline="always", cache=True)
def _half_sweep_row(ab, r, i, colour, step, thr, seed, stream, symmetric, buf, purpose,
                    wb, gx0, gy0, gLx, gLy):
    """Update the active sites of row i of replica r in half-sweep ``step`` (colour ``colour``).

    Local site (i, j) is the global site ``((i + gx0) mod gLx, (j + gy0) mod gLy)`` (``0 <= gx0 < gLx``,
    ``0 <= gy0 < gLy``, both global sizes even; the whole lattice: ``gx0 = gy0 = 0``, ``gLx = Lx``,
    ``gLy = Ly``): its colour and its word are those of the global site. The local neighbours wrap
    around the local array, which is wrong only on its outermost rows and columns (a tile's halo).
    """
    Lx = ab.shape[1]
    half = ab.shape[3]
    o = 1 - colour
    act = ab[r, i, colour]
    par = (gx0 + gy0) & 1
    p = (i + par + colour) & 1  # local column of the row's first active site
    gi = (i + gx0) % gLx
    q0 = (gy0 + p) % gLy
    words, off = _row_words(buf, wb, half, gi, q0, gLy, step, purpose, seed, stream)
    up, dn, row = ab[r, (i - 1 + Lx) % Lx, o], ab[r, (i + 1) % Lx, o], ab[r, i, o]
    # the row's first active site has j = p: side neighbour at m-1 (j = 0) or m+1.
    # Two inlined copies with a literal offset: LLVM vectorises only a constant stride.
    if p == 0:
        _update_row(act, up, dn, row, -1, words, off, thr, symmetric)
    else:
        _update_row(act, up, dn, row, 1, words, off, thr, symmetric)


# Not inlined on purpose: compiled as a function of its own, the row update vectorises; inlined into
# the triple loop of the serial and per-replica drivers it did not (5x slower, measured). Inside the
# prange body of the row-parallel driver the inlined form is the faster one (20 %).
@njit(cache=True)
def _half_sweep_row_call(ab, r, i, colour, step, thr, seed, stream, symmetric, buf, purpose,
                         wb, gx0, gy0, gLx, gLy):
    _half_sweep_row(ab, r, i, colour, step, thr, seed, stream, symmetric, buf, purpose,
                    wb, gx0, gy0, gLx, gLy)


@njit(inline="always", cache=True)
def _is_symmetric(thr):
    """thr[k] == thr[9 - k] for all k (h = 0). Starts from a computed bool, not the literal True:
    a literal made Numba compile a second, unused ``Literal[bool](True)`` specialisation of every
    function the flag is passed to (40 % of the drivers' compile time)."""
    sym = thr[0] == thr[9]
    for k in range(1, 5):
        sym = sym and thr[k] == thr[9 - k]
    return sym


@njit(inline="always", cache=True)
def _global_sizes(Lx, Ly, gLx, gLy):
    """The global lattice sizes: 0 means the local one (an untiled lattice)."""
    return (Lx if gLx == 0 else gLx), (Ly if gLy == 0 else gLy)


@njit(parallel=True, cache=True)
def _sweeps_parallel_rows(ab, thr, seed, streams, step0, n_half, purpose=PURPOSE_LOCAL, gx0=0, gy0=0, gLx=0, gLy=0):
    """Threads over rows (and replicas) inside each half-sweep: for a few large lattices."""
    R, Lx, _, half = ab.shape
    gLx, gLy = _global_sizes(Lx, 2 * half, gLx, gLy)
    rows = R * Lx
    n_chunks = min(rows, 64)  # scratch is allocated once per chunk of rows
    symmetric = _is_symmetric(thr)
    for t in range(n_half):
        step = np.uint64(step0) + np.uint64(t)
        colour = np.int64(step & np.uint64(1))
        for ch in prange(n_chunks):
            buf = word_scratch(half)
            wb = np.empty(half, np.uint32)
            for rr in range(ch * rows // n_chunks, (ch + 1) * rows // n_chunks):
                r = rr // Lx
                _half_sweep_row(ab, r, rr - r * Lx, colour, step, thr, seed, streams[r], symmetric,
                                buf, purpose, wb, gx0, gy0, gLx, gLy)


@njit(inline="always", cache=True)
def _replica_half_sweeps(ab, r, thr, seed, streams, step0, n_half, symmetric, buf, purpose,
                         wb, gx0, gy0, gLx, gLy):
    """All ``n_half`` half-sweeps of replica r."""
    Lx = ab.shape[1]
    for t in range(n_half):
        step = np.uint64(step0) + np.uint64(t)
        colour = np.int64(step & np.uint64(1))
        for i in range(Lx):
            _half_sweep_row_call(ab, r, i, colour, step, thr, seed, streams[r], symmetric, buf, purpose,
                                 wb, gx0, gy0, gLx, gLy)


@njit(parallel=True, cache=True)
def _sweeps_parallel_replicas(ab, thr, seed, streams, step0, n_half, purpose=PURPOSE_LOCAL, gx0=0, gy0=0, gLx=0,
                              gLy=0):
    """Threads over replicas, all half-sweeps of a replica in one go: one barrier per call."""
    R, Lx, _, half = ab.shape
    gLx, gLy = _global_sizes(Lx, 2 * half, gLx, gLy)
    symmetric = _is_symmetric(thr)
    for r in prange(R):
        buf = word_scratch(half)
        wb = np.empty(half, np.uint32)
        # np.int64(r): the prange index is unsigned here, and passing it as it is compiled a second,
        # uint64 specialisation of _half_sweep_row_call (half of this driver's compile time)
        _replica_half_sweeps(ab, np.int64(r), thr, seed, streams, step0, n_half, symmetric, buf, purpose,
                             wb, gx0, gy0, gLx, gLy)


# A separate function, not njit(parallel=False) of the one above: Numba's on-disk cache keys on
# the Python function, so two compilations of one function would share (and swap) machine code.
@njit(cache=True)
def _sweeps_serial(ab, thr, seed, streams, step0, n_half, purpose=PURPOSE_LOCAL, gx0=0, gy0=0, gLx=0, gLy=0):
    """One thread, replica after replica."""
    R, Lx, _, half = ab.shape
    gLx, gLy = _global_sizes(Lx, 2 * half, gLx, gLy)
    symmetric = _is_symmetric(thr)
    buf = word_scratch(half)
    wb = np.empty(half, np.uint32)
    for r in range(R):
        _replica_half_sweeps(ab, r, thr, seed, streams, step0, n_half, symmetric, buf, purpose,
                             wb, gx0, gy0, gLx, gLy)


#: below this many sites per half-sweep, one thread does all the work (a parallel region's
#: barrier costs more than the work, and much more when the cores are busy with other jobs).
#: Measured on the quiet 2-core machine: rows in parallel are already 1.8x faster at 128^2.
SERIAL_SITES = 1 << 12


def choose_driver(R: int, Lx: int, Ly: int, n_threads: int | None = None):
    """Pick the threading strategy: by replica, by row, or serial (same bits in every case)."""
    import numba

    n_threads = numba.get_num_threads() if n_threads is None else n_threads
    if n_threads <= 1 or R * Lx * Ly // 2 < SERIAL_SITES:
        return _sweeps_serial
    if R >= n_threads:
        return _sweeps_parallel_replicas
    return _sweeps_parallel_rows


def checkerboard_sweeps(spins, n_half_steps, *, step, thresholds, seed, streams, purpose=PURPOSE_LOCAL,
                        offset=(0, 0), global_shape=None):
    """Fused counterpart of :func:`isingcore.mcmc.local.checkerboard_sweeps`, in place on NumPy int8 (R, Lx, Ly).

    The lattice is put into the row-split layout, swept and put back; the layout is restored even
    if the sweep is interrupted (KeyboardInterrupt is delivered when the compiled call returns).

    Tiles: ``spins`` may be a tile (with its halo) of a larger periodic lattice of ``global_shape =
    (gLx, gLy)`` (both even) whose local site (0, 0) is the global site ``offset = (x0, y0)``. Local
    site (i, j) then takes the colour ``(x + y) % 2`` and the word ``(x gLy + y) // 2`` of global site
    ``(x, y) = ((x0 + i) mod gLx, (y0 + j) mod gLy)``, so the sweeps make the same decisions as on
    the whole lattice, except that the tile's own edges see wrong (locally periodic) neighbours:
    after ``n`` half-sweeps the outermost ``n`` rows and columns are spoiled, the rest is exact
    (the tiled upscaling pads by ``2k + 1`` sites for ``k`` sweeps). The local ``Ly`` must be even.
    Defaults (``offset=(0, 0)``, ``global_shape=None`` = the local shape): the untiled bits.
    """
    if n_half_steps == 0 or spins.size == 0:
        return spins
    R, Lx, Ly = spins.shape
    if global_shape is None:
        gLx, gLy = Lx, Ly
    else:
        gLx, gLy = (int(v) for v in global_shape)
        if gLx < 2 or gLy < 2 or gLx % 2 or gLy % 2:
            raise ValueError(f"global_shape must be two even sizes >= 2, got {tuple(global_shape)}")
    if Ly % 2:
        raise ValueError(f"the local lattice needs an even number of columns (Ly), got spins of shape {spins.shape}")
    x0, y0 = int(offset[0]) % gLx, int(offset[1]) % gLy
    if not spins.flags.c_contiguous:
        work = np.ascontiguousarray(spins)
        checkerboard_sweeps(work, n_half_steps, step=step, thresholds=thresholds, seed=seed, streams=streams,
                            purpose=purpose, offset=(x0, y0), global_shape=(gLx, gLy))
        spins[...] = work
        return spins
    driver = choose_driver(R, Lx, Ly)
    par = np.int64((x0 + y0) & 1)
    split = False
    try:
        to_row_split(spins, par)
        split = True
        driver(spins.reshape(R, Lx, 2, Ly // 2), np.ascontiguousarray(thresholds, dtype=np.int64), np.int64(seed),
               np.ascontiguousarray(streams, dtype=np.uint32), np.uint64(step), int(n_half_steps), np.int64(purpose),
               np.int64(x0), np.int64(y0), np.int64(gLx), np.int64(gLy))
    finally:
        if split:
            from_row_split(spins, par)
    return spins
