"""Inverse-RG upscaling on the CPU (Numba): per-site sampling, in-place refinement, stage statistics.

The rules are those of ``docs/UPSCALING.md``; the array-API reference is in
:mod:`isingcore.rg.upscale`, and every kernel here gives the same bits.

Sampling (:func:`sample_rows`)
    Fine site ``(x, y)`` of configuration ``n`` with parent ``mu = coarse[n, x // b, y // b]``
    keeps ``mu`` iff word ``k = x * Ly_out + y`` of ``(seed, streams[n], stage, Purpose.UPSCALE)`` is
    below ``T = ceil(p * 2**32)``; ``p`` comes from the model's field value at the site
    (:func:`keep_threshold`, evaluated with basic IEEE-754 operations only, so the NumPy
    reference, this kernel and the CUDA kernel realise the same integer ``T``). One call handles a
    *tile*: the rows ``x0 + skip .. x0 + H - 1`` of the field of a row band, so the float field never
    exists for the whole fine lattice.

Refinement (:func:`refine_sweeps`)
    Checkerboard Metropolis on the fine lattice *in place*: this is
    :func:`isingcore.backends.numba_cpu.local.checkerboard_sweeps`, which permutes each row into the
    row-split layout and back instead of copying the lattice (no extra byte per spin).

Statistics (:func:`lattice_sums`)
    Exact integer sums for ``m``, ``c10x``, ``c10y`` and ``c11`` without int32 copies of the lattice.

Numba cache: the functions here inline ``words_into`` from ``philox.py``; after editing it,
delete ``__pycache__/upscale.*.nb[ic]`` (Numba checks only the
stamp of the file that defines a cached function).
"""

import math

import numpy as np
from numba import njit, prange

from isingcore.rg.upscale import EXP_COEFFS, INV_LN2, LN2_HI, LN2_LO, POW2, TWO32_F, X_MAX

from .local import SERIAL_SITES, checkerboard_sweeps
from .philox import word_scratch, words_into

KIND_LOGIT = 0
KIND_MEAN = 1
_C = tuple(float(c) for c in EXP_COEFFS)  # 1/k!, k = 0 .. 13
_TWO_M32 = 2.0**-32
_N_CHUNKS = 64  # rows are handed to threads in at most this many chunks (scratch allocated per chunk)


# --------------------------------------------------------------------------------------------
# deterministic threshold (must match isingcore.rg.upscale.keep_thresholds operation for operation)
# --------------------------------------------------------------------------------------------
@njit(inline="always", cache=True)
def exp_det(x, pow2):
    """exp(x) for |x| < X_MAX with basic operations only (Cody-Waite reduction, degree-13 Taylor).

    ``2**n`` is built as ``(2**(n1+32) 2**-32)(2**(n2+32) 2**-32)`` with integer shifts, which equals
    the table value ``pow2[n + POW2_OFFSET]`` of the reference exactly (products of powers of two in
    range), but lets LLVM vectorise the loop (no gather). ``pow2`` is kept for the signature.
    """
    nf = np.floor(x * INV_LN2 + 0.5)
    r = (x - nf * LN2_HI) - nf * LN2_LO
    p = _C[13]
    p = p * r + _C[12]
    p = p * r + _C[11]
    p = p * r + _C[10]
    p = p * r + _C[9]
    p = p * r + _C[8]
    p = p * r + _C[7]
    p = p * r + _C[6]
    p = p * r + _C[5]
    p = p * r + _C[4]
    p = p * r + _C[3]
    p = p * r + _C[2]
    p = p * r + _C[1]
    p = p * r + _C[0]
    n = np.int64(nf)
    n1 = n >> 1
    n2 = n - n1
    s1 = np.float64(np.int64(1) << (n1 + 32)) * _TWO_M32
    s2 = np.float64(np.int64(1) << (n2 + 32)) * _TWO_M32
    return (p * s1) * s2


@njit(inline="always", cache=True)
def keep_threshold(mu, v, kind, clamp, pow2):
    """Integer threshold T (int64, 0 .. 2**32) for keeping the parent spin ``mu`` given field value ``v``.

    logit: ``p = 1 / (1 + exp(-2 mu v))``; mean: ``p = (1 + mu clip(v, -A, A)) / 2``; ``T = ceil(p 2**32)``.
    """
    if kind == KIND_LOGIT:
        x = -2.0 * (np.float64(mu) * np.float64(v))
        if x >= X_MAX:
            return np.int64(1)
        if x <= -X_MAX:
            return np.int64(4294967296)
        e = exp_det(x, pow2)
        p = 1.0 / (1.0 + e)
    else:
        m = np.float64(v)
        m = m if m > -clamp else -clamp
        m = m if m < clamp else clamp
        p = (1.0 + np.float64(mu) * m) * 0.5
    return np.int64(math.ceil(p * TWO32_F))


# --------------------------------------------------------------------------------------------
# sampling
# --------------------------------------------------------------------------------------------
@njit(inline="always", cache=True)
def _row_thresholds(frow, mub, tb, kind, clamp, pow2):
    """tb[y] = keep threshold of site y (branch-free, so that LLVM vectorises it); returns #non-finite.

    Same operations as :func:`keep_threshold`; the cut-offs at +-X_MAX are selects after the fact,
    and a non-finite value is replaced by 0 (the caller raises).
    """
    bad = 0
    n = frow.shape[0]
    if kind == KIND_LOGIT:
        for y in range(n):
            v = np.float64(frow[y])
            fin = np.isfinite(v)
            bad += 0 if fin else 1
            v = v if fin else 0.0
            x = -2.0 * (np.float64(mub[y]) * v)
            xc = x if x > -X_MAX else -X_MAX
            xc = xc if xc < X_MAX else X_MAX
            e = exp_det(xc, pow2)
            p = 1.0 / (1.0 + e)
            t = np.int64(math.ceil(p * TWO32_F))
            t = np.int64(1) if x >= X_MAX else t
            tb[y] = np.int64(4294967296) if x <= -X_MAX else t
    else:
        for y in range(n):
            v = np.float64(frow[y])
            fin = np.isfinite(v)
            bad += 0 if fin else 1
            m = v if fin else 0.0
            m = m if m > -clamp else -clamp
            m = m if m < clamp else clamp
            p = (1.0 + np.float64(mub[y]) * m) * 0.5
            tb[y] = np.int64(math.ceil(p * TWO32_F))
    return bad


@njit(inline="always", cache=True)
def _sample_row(field, coarse, fine, n_local, n, x, x0, b, kind, clamp, seed, stream, step, purpose, pow2,
                buf, mub, tb, gx0, gy0, gLy):
    """Fine row x of configuration n (field row x - x0 of tile configuration n_local); returns #non-finite.

    Three passes over the row: parents (no division per site), thresholds (vectorised), draws.
    ``fine`` may be a tile of a larger lattice: its site (x, y) is global site (gx0 + x, gy0 + y) of
    a lattice with ``gLy`` columns, and takes word ``(gx0 + x) gLy + gy0 + y`` (untiled: 0, 0, Ly).
    """
    Ly = fine.shape[2]
    first = (gx0 + x) * gLy + gy0
    words_into(buf, first, Ly, step, purpose, seed, stream)
    off = first - 4 * (first >> 2)
    crow = coarse[n, x // b]
    out = fine[n, x]
    y = 0
    for j in range(crow.shape[0]):
        mu = np.int32(crow[j])
        for _ in range(b):
            mub[y] = mu
            y += 1
    bad = _row_thresholds(field[n_local, x - x0], mub[:Ly], tb[:Ly], kind, clamp, pow2)
    for y in range(Ly):
        mu = mub[y]
        out[y] = np.int8(mu if np.int64(buf[off + y]) < tb[y] else -mu)
    return bad


@njit(parallel=True, cache=True)
def _sample_rows_parallel(field, coarse, fine, n0, x0, skip, b, kind, clamp, seed, streams, step, purpose, pow2,
                          gx0=0, gy0=0, gLy=0):
    Nc, H, Ly = field.shape
    gLy = Ly if gLy == 0 else gLy
    rows_per = H - skip
    rows = Nc * rows_per
    n_chunks = min(rows, _N_CHUNKS)
    bad = np.zeros(n_chunks, np.int64)
    for ch in prange(n_chunks):
        buf = word_scratch(Ly)
        mub = np.empty(Ly, np.int32)
        tb = np.empty(Ly, np.int64)
        for rr in range(ch * rows // n_chunks, (ch + 1) * rows // n_chunks):
            nl = rr // rows_per
            x = x0 + skip + (rr - nl * rows_per)
            bad[ch] += _sample_row(field, coarse, fine, nl, n0 + nl, x, x0, b, kind, clamp, seed, streams[n0 + nl],
                                       step, purpose, pow2, buf, mub, tb, gx0, gy0, gLy)
    return bad.sum()


@njit(cache=True)
def _sample_rows_serial(field, coarse, fine, n0, x0, skip, b, kind, clamp, seed, streams, step, purpose, pow2,
                        gx0=0, gy0=0, gLy=0):
    Nc, H, Ly = field.shape
    gLy = Ly if gLy == 0 else gLy
    buf = word_scratch(Ly)
    mub = np.empty(Ly, np.int32)
    tb = np.empty(Ly, np.int64)
    bad = 0
    for nl in range(Nc):
        for x in range(x0 + skip, x0 + H):
            bad += _sample_row(field, coarse, fine, nl, n0 + nl, x, x0, b, kind, clamp, seed, streams[n0 + nl],
                                   step, purpose, pow2, buf, mub, tb, gx0, gy0, gLy)
    return bad


def _parallel(n_sites: int) -> bool:
    import numba

    return numba.get_num_threads() > 1 and n_sites >= SERIAL_SITES


def sample_rows(field, coarse, fine, *, n0, x0, skip, b, kind, clamp, seed, streams, step, purpose, offset=(0, 0),
                global_ly=None):
    """Sample fine rows ``x0 + skip .. x0 + H - 1`` of configurations ``n0 .. n0 + Nc - 1`` into ``fine``.

    ``field``: float32 (Nc, H, Ly_out) (row ``x - x0`` of the tile is fine row ``x``);
    ``coarse``: int8 (N, Lx, Ly) +-1; ``fine``: int8 (N, b Lx, b Ly), written in place;
    ``kind``: :data:`KIND_LOGIT` or :data:`KIND_MEAN`; ``clamp``: A (mean) ; ``streams``: uint32 (N,).
    Tiles: ``fine`` (and ``coarse``, its parents) may be a tile of a larger lattice with
    ``global_ly`` columns whose local site (0, 0) is global site ``offset = (X0, Y0)`` (``X0``, ``Y0``
    multiples of b); site (x, y) then uses word ``(X0 + x) global_ly + Y0 + y``, the word of the
    untiled lattice. Defaults: the untiled lattice.
    Returns the number of non-finite field values met (those sites are left unwritten).
    """
    Nc, H, Ly = field.shape
    gx0, gy0 = (int(v) for v in offset)
    gly = Ly if global_ly is None else int(global_ly)
    if gx0 < 0 or gy0 < 0 or gy0 + Ly > gly:
        raise ValueError(f"offset={tuple(offset)} with global_ly={gly} does not hold a tile of {Ly} columns")
    fn = _sample_rows_parallel if _parallel(Nc * (H - skip) * Ly) else _sample_rows_serial
    return int(fn(field, coarse, fine, np.int64(n0), np.int64(x0), np.int64(skip), np.int64(b), np.int64(kind),
                  np.float64(clamp), np.int64(seed), streams, np.uint64(step), np.int64(purpose), POW2,
                  np.int64(gx0), np.int64(gy0), np.int64(gly)))


# --------------------------------------------------------------------------------------------
# refinement: the local-update kernel, which works in place (no second copy of the lattice)
# --------------------------------------------------------------------------------------------
refine_sweeps = checkerboard_sweeps


# --------------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------------
@njit(parallel=True, cache=True)
def _row_sums(spins, out):
    """out[r, i] = (sum s, sum s s_down, sum s s_right, sum s (s_down_right + s_down_left)) of row i."""
    R, Lx, Ly = spins.shape
    rows = R * Lx
    for rr in prange(rows):
        r = rr // Lx
        i = rr - r * Lx
        row = spins[r, i]
        dn = spins[r, (i + 1) % Lx]
        m = 0
        cx = 0
        cy = 0
        cd = 0
        for j in range(Ly):
            s = np.int64(row[j])
            jr = j + 1 if j + 1 < Ly else 0
            jl = j - 1 if j > 0 else Ly - 1
            m += s
            cx += s * np.int64(dn[j])
            cy += s * np.int64(row[jr])
            cd += s * (np.int64(dn[jr]) + np.int64(dn[jl]))
        out[r, i, 0] = m
        out[r, i, 1] = cx
        out[r, i, 2] = cy
        out[r, i, 3] = cd


def lattice_sums(spins):
    """Integer sums (R, 4) int64: sum s, sum s(i,j)s(i+1,j), sum s(i,j)s(i,j+1), sum s(i,j)[s(i+1,j+1)+s(i+1,j-1)]."""
    R, Lx, Ly = spins.shape
    out = np.zeros((R, Lx, 4), np.int64)
    if spins.size:
        _row_sums(spins, out)
    return out.sum(axis=1)
