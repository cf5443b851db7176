"""Fused checkerboard Metropolis / heat bath on the CPU (Numba, threads over replicas and rows).

Same decisions, bit for bit, as :func:`isingcore.mcmc.local.checkerboard_half_sweep`. The kernel
works on the two colour sublattices stored separately, ``sub[c]`` of shape (R, Lx, Ly/2) with
``sub[c][r, i, m]`` the spin at (i, j = 2m + ((i + c) & 1)). In this layout the RNG word of a
site, ``(i*Ly + j)//2 = i*Ly/2 + m``, is simply its flat index, and its four neighbours in the
other sublattice ``o`` are ``o[i-1, m]``, ``o[i+1, m]``, ``o[i, m]`` and ``o[i, m-1]`` (if the
row's first active site has j = 0) or ``o[i, m+1]`` (if it has j = 1), all periodic.
"""

import numpy as np
from numba import njit, prange

from .philox import words_into

PURPOSE_LOCAL = 1  # isingcore.random.Purpose.LOCAL


@njit(cache=True)
def split_sublattices(spins):
    R, Lx, Ly = spins.shape
    half = Ly // 2
    a = np.empty((R, Lx, half), np.int8)
    b = np.empty((R, Lx, half), np.int8)
    for r in range(R):
        for i in range(Lx):
            j0 = i & 1  # colour-0 sites in row i start at j = i & 1
            for m in range(half):
                a[r, i, m] = spins[r, i, 2 * m + j0]
                b[r, i, m] = spins[r, i, 2 * m + 1 - j0]
    return a, b


@njit(cache=True)
def merge_sublattices(a, b, spins):
    R, Lx, half = a.shape
    for r in range(R):
        for i in range(Lx):
            j0 = i & 1
            for m in range(half):
                spins[r, i, 2 * m + j0] = a[r, i, m]
                spins[r, i, 2 * m + 1 - j0] = b[r, i, m]


@njit(inline="always", cache=True)
def _update_row(act, up, dn, row, side, buf, off, thr):
    """Flip act[m] iff its word buf[off+m] < thr[5*(s+1)/2 + (nb+4)/2]; side neighbour row[m+side]."""
    half = act.shape[0]
    for m in range(half):
        ms = m + side
        if ms < 0:
            ms += half
        elif ms >= half:
            ms -= half
        s = np.int32(act[m])
        nb = np.int32(up[m]) + np.int32(dn[m]) + np.int32(row[m]) + np.int32(row[ms])
        T = thr[((s + 1) >> 1) * 5 + ((nb + 4) >> 1)]
        flip = np.int32(np.int64(buf[off + m]) < T)
        act[m] = np.int8(s - 2 * s * flip)


@njit(parallel=True, cache=True)
def _half_sweeps(a, b, thr, seed, streams, step0, n_half):
    R, Lx, half = a.shape
    for t in range(n_half):
        step = np.uint64(step0) + np.uint64(t)
        colour = np.int64(step & np.uint64(1))
        for rr in prange(R * Lx):
            r = rr // Lx
            i = rr - r * Lx
            if colour == 0:
                act = a[r, i]
                oth = b[r]
            else:
                act = b[r, i]
                oth = a[r]
            h0 = i * half
            ng = ((h0 + half + 3) >> 2) - (h0 >> 2)
            c0 = np.empty(ng, np.uint32)
            c1 = np.empty(ng, np.uint32)
            c2 = np.empty(ng, np.uint32)
            c3 = np.empty(ng, np.uint32)
            buf = np.empty(4 * ng, np.uint32)
            words_into(buf, c0, c1, c2, c3, h0, step, PURPOSE_LOCAL, seed, streams[r])
            # the row's first active site has j = (i + colour) & 1: side neighbour at m-1 (j=0) or m+1
            side = -1 if ((i + colour) & 1) == 0 else 1
            _update_row(act, oth[(i - 1 + Lx) % Lx], oth[(i + 1) % Lx], oth[i], side, buf,
                        h0 - 4 * (h0 >> 2), thr)


def checkerboard_sweeps(spins, n_half_steps, *, step, thresholds, seed, streams):
    """Fused counterpart of :func:`isingcore.mcmc.local.checkerboard_sweeps` (in place on NumPy int8)."""
    a, b = split_sublattices(spins)
    _half_sweeps(a, b, np.ascontiguousarray(thresholds, dtype=np.int64), np.int64(seed),
                 np.ascontiguousarray(streams, dtype=np.uint32), np.uint64(step), int(n_half_steps))
    merge_sublattices(a, b, spins)
    return spins
