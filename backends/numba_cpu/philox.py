"""Philox4x32-10 for Numba (CPU), bit-identical to :func:`isingcore.random.philox4x32`.

Two forms: :func:`philox4x32_10` for one block (scalar code, e.g. cluster algorithms), and
:func:`counter_run`, which runs many consecutive counters in a loop that LLVM vectorises across
blocks (the 32x32->64 products of masked uint64 values map to packed ``vpmuludq``).
:func:`words_into` is the form the kernels use: the words of a run of sites. Pitfall: mixing
uint64 with int64 in Numba silently promotes to float64, so every constant and input is cast
explicitly.
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
def _round(x0, x1, x2, x3, kk0, kk1):
    """One Philox round on uint64 lanes that hold a 32-bit word in their low half.

    Only the low halves are defined: ``x1`` and ``x3`` keep the high half of the previous product
    and ``x0``, ``x2`` inherit it through the xor, but every use masks them first, and LLVM reads
    ``(x & 0xFFFFFFFF) * M`` as a single packed 32x32->64 multiply (``vpmuludq``), so the masks
    cost nothing.
    """
    p0 = (x0 & MASK) * M0
    p1 = (x2 & MASK) * M1
    return (p1 >> S32) ^ x1 ^ kk0, p1, (p0 >> S32) ^ x3 ^ kk1, p0


@njit(cache=True)
def counter_run(buf, g0, ng, c1, c2, c3, k0, k1):
    """buf[4 g + j] = word j of Philox4x32-10 of the counter (g0 + g, c1, c2, c3), key (k0, k1), g < ng.

    Consecutive counters in word 0, as the site words of a row are. The blocks are generated as
    two independent chains, blocks ``g`` and ``g + ng/2``, in one loop body: LLVM vectorises the
    loop four blocks per AVX2 register and the two chains hide each other's multiply latency
    (0.62 against 0.85 ns per word for one chain, measured on the 2-core development machine).
    An odd last block is done alone.

    Compiled once as a function of its own, not inlined into every kernel that needs words: the
    unrolled rounds made each kernel's compilation slow (the local drivers took 27 s instead of
    16 s to compile) for at most 5 % of speed.
    """
    K0 = np.uint64(k0) & MASK
    K1 = np.uint64(k1) & MASK
    C1 = np.uint64(c1) & MASK
    C2 = np.uint64(c2) & MASK
    C3 = np.uint64(c3) & MASK
    q = ng >> 1
    for g in range(q):
        a0, a1, a2, a3 = np.uint64(g0 + g) & MASK, C1, C2, C3
        b0, b1, b2, b3 = np.uint64(g0 + g + q) & MASK, C1, C2, C3
        kk0, kk1 = K0, K1
        for r in range(10):
            a0, a1, a2, a3 = _round(a0, a1, a2, a3, kk0, kk1)
            b0, b1, b2, b3 = _round(b0, b1, b2, b3, kk0, kk1)
            kk0 = kk0 + np.uint64(W0)
            kk1 = kk1 + np.uint64(W1)
        o = 4 * g
        buf[o] = np.uint32(a0 & MASK)
        buf[o + 1] = np.uint32(a1 & MASK)
        buf[o + 2] = np.uint32(a2 & MASK)
        buf[o + 3] = np.uint32(a3 & MASK)
        o = 4 * (g + q)
        buf[o] = np.uint32(b0 & MASK)
        buf[o + 1] = np.uint32(b1 & MASK)
        buf[o + 2] = np.uint32(b2 & MASK)
        buf[o + 3] = np.uint32(b3 & MASK)
    if ng & 1:
        g = ng - 1
        w = philox4x32_10(np.uint64(g0 + g) & MASK, C1, C2, C3, k0, k1)
        for j in range(4):
            buf[4 * g + j] = np.uint32(w[j])


@njit(inline="always", cache=True)
def word_scratch(n):
    """Scratch for :func:`words_into` runs of up to ``n`` words at any alignment (whole Philox blocks)."""
    return np.empty(4 * ((n + 6) // 4 + 1), np.uint32)


@njit(inline="always", cache=True)
def words_into(buf, first, n, step, purpose, seed, stream):
    """buf[(first & 3) + q] = word (first + q) of stream (seed, stream, step, purpose), for q < n.

    Whole blocks are generated: ``buf[:first & 3]`` and the tail up to the next block boundary
    hold the neighbouring words of the same blocks.
    """
    st = np.uint64(step)
    ng = ((first + n + 3) >> 2) - (first >> 2)
    counter_run(buf, first >> 2, ng, st & MASK, st >> S32, np.uint64(purpose), seed, stream)


@njit(cache=True)
def fill_words(out, first, step, purpose, seed, stream):
    """out[q] = word (first + q) of the stream (seed, stream, step, purpose), uint32."""
    n = out.shape[0]
    if n == 0:
        return
    buf = word_scratch(n)
    words_into(buf, first, n, step, purpose, seed, stream)
    off = first - 4 * (first >> 2)
    for q in range(n):
        out[q] = buf[off + q]


@njit(cache=True, parallel=True)
def stream_words(out, streams, step, purpose, seed):
    """out[i, k] = word k of the stream (seed, streams[i], step, purpose): random_words for many streams.

    Threads over the streams; the same bits as :func:`isingcore.random.random_words`.
    """
    B, n = out.shape
    for i in prange(B):
        buf = word_scratch(n)
        words_into(buf, 0, n, step, purpose, seed, np.uint32(streams[i]))
        for k in range(n):
            out[i, k] = buf[k]
