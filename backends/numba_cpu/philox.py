"""Philox4x32-10 for Numba (CPU), bit-identical to :func:`isingcore.random.philox4x32`.

Two forms: :func:`philox4x32_10` for one block (scalar code, e.g. cluster algorithms), and
:func:`philox_blocks`, which runs many blocks as structure-of-arrays (one uint32 array per
counter word) so that LLVM vectorises across blocks (the 32x32->64 products of zero-extended
uint32 values map to packed ``vpmuludq``). Pitfall: mixing uint64 with int64 in Numba silently
promotes to float64, so every constant and input is cast explicitly.
"""

import numpy as np
from numba import njit, prange

M0 = np.uint64(0xD2511F53)
M1 = np.uint64(0xCD9E8D57)
W0 = 0x9E3779B9
W1 = 0xBB67AE85
MASK = np.uint64(0xFFFFFFFF)
S32 = np.uint64(32)


@njit(inline="always", cache=True)
def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """One Philox4x32-10 block; inputs and outputs are uint64 holding 32-bit words."""
    kk0 = np.uint64(k0)
    kk1 = np.uint64(k1)
    for r in range(10):
        if r > 0:
            kk0 = (kk0 + np.uint64(W0)) & MASK
            kk1 = (kk1 + np.uint64(W1)) & MASK
        p0 = c0 * M0
        p1 = c2 * M1
        n0 = (p1 >> S32) ^ c1 ^ kk0
        n1 = p1 & MASK
        n2 = (p0 >> S32) ^ c3 ^ kk1
        n3 = p0 & MASK
        c0, c1, c2, c3 = n0, n1, n2, n3
    return c0, c1, c2, c3


@njit(inline="always", cache=True)
def philox_blocks(c0, c1, c2, c3, k0, k1):
    """In place: (c0, c1, c2, c3)[g] <- Philox4x32-10 of block g under key (k0, k1); uint32 arrays.

    The loop over blocks is outermost and the ten rounds are unrolled inside it, so a block's
    state stays in registers and LLVM vectorises across blocks (twice as fast as rounds-outer).
    """
    n = c0.shape[0]
    for g in range(n):
        x0 = c0[g]
        x1 = c1[g]
        x2 = c2[g]
        x3 = c3[g]
        for r in range(10):
            kk0 = np.uint32((np.int64(k0) + r * W0) & 0xFFFFFFFF)
            kk1 = np.uint32((np.int64(k1) + r * W1) & 0xFFFFFFFF)
            p0 = np.uint64(x0) * M0
            p1 = np.uint64(x2) * M1
            a = np.uint32(p1 >> S32) ^ x1 ^ kk0
            b = np.uint32(p0 >> S32) ^ x3 ^ kk1
            x1 = np.uint32(p1)
            x3 = np.uint32(p0)
            x0 = a
            x2 = b
        c0[g] = x0
        c1[g] = x1
        c2[g] = x2
        c3[g] = x3


@njit(inline="always", cache=True)
def word_scratch(n_blocks):
    """Scratch for :func:`words_into`: four uint32 counter arrays of ``n_blocks`` and the buffer of 4x that."""
    return (np.empty(n_blocks, np.uint32), np.empty(n_blocks, np.uint32), np.empty(n_blocks, np.uint32),
            np.empty(n_blocks, np.uint32), np.empty(4 * n_blocks, np.uint32))


@njit(inline="always", cache=True)
def words_into(buf, c0, c1, c2, c3, first, step, purpose, seed, stream):
    """buf[q] = word (4*(first>>2) + q) of stream (seed, stream, step, purpose), for q < 4*len(c0).

    c0..c3 are scratch uint32 arrays of the number of blocks wanted.
    """
    ng = c0.shape[0]
    g0 = first >> 2
    st = np.uint64(step)
    slo = np.uint32(st & MASK)
    shi = np.uint32(st >> S32)
    pu = np.uint32(purpose)
    for g in range(ng):
        c0[g] = np.uint32(g0 + g)
        c1[g] = slo
        c2[g] = shi
        c3[g] = pu
    philox_blocks(c0, c1, c2, c3, seed, stream)
    for g in range(ng):
        buf[4 * g] = c0[g]
        buf[4 * g + 1] = c1[g]
        buf[4 * g + 2] = c2[g]
        buf[4 * g + 3] = c3[g]


@njit(cache=True)
def fill_words(out, first, step, purpose, seed, stream):
    """out[q] = word (first + q) of the stream (seed, stream, step, purpose), uint32."""
    n = out.shape[0]
    if n == 0:
        return
    ng = ((first + n + 3) >> 2) - (first >> 2)
    c0, c1, c2, c3, buf = word_scratch(ng)
    words_into(buf, c0, c1, c2, c3, first, step, purpose, seed, stream)
    off = first - 4 * (first >> 2)
    for q in range(n):
        out[q] = buf[off + q]


@njit(cache=True, parallel=True)
def stream_words(out, streams, step, purpose, seed):
    """out[i, k] = word k of the stream (seed, streams[i], step, purpose): random_words for many streams.

    Threads over the streams; the same bits as :func:`isingcore.random.random_words`.
    """
    B, n = out.shape
    ng = (n + 3) >> 2
    for i in prange(B):
        c0, c1, c2, c3, buf = word_scratch(ng)
        words_into(buf, c0, c1, c2, c3, 0, step, purpose, seed, np.uint32(streams[i]))
        for k in range(n):
            out[i, k] = buf[k]
