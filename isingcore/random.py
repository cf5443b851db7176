"""Counter-based randomness: Philox4x32-10, identical bits on every backend.

The array API has no random number generator, and NumPy's ``np.random.Philox`` (4x64) and
CuPy's cuRAND streams differ. isingcore therefore uses one generator everywhere,
Philox4x32-10 (J. K. Salmon, M. A. Moraes, R. O. Dror, D. E. Shaw, "Parallel random numbers:
as easy as 1, 2, 3", SC'11, doi:10.1145/2063384.2063405), implemented here in array-API code and
identically in the Numba and Numba-CUDA kernels (``isingcore.backends``).

The stream of random words
--------------------------
A random decision in isingcore is identified by five integers:

``seed``    (32 bit)  the user's seed,                      Philox key word 0
``stream``  (32 bit)  the chain / replica index,            Philox key word 1
``step``    (64 bit)  the update counter (half-sweep, cluster, stage, ...), counter words 1, 2
``purpose`` (32 bit)  what the numbers are for (:class:`Purpose`), counter word 3
``k``       (34 bit)  the index of the word inside that step (site index, ...)

and the word is ``philox4x32_10(ctr=(k >> 2, step & 0xFFFFFFFF, step >> 32, purpose),
key=(seed, stream))[k & 3]``: word ``k`` is lane ``k mod 4`` of block ``k // 4``. Because the
word depends only on these integers, a configuration does not depend on how replicas are
batched, how a lattice is tiled, or which backend ran it.

Uniform numbers and Bernoulli draws
-----------------------------------
A 32-bit word ``r`` is read as the uniform number ``u = r * 2**-32`` in ``[0, 1)`` (resolution
``2**-32``, exactly representable in float64). Accept/reject decisions never convert to float:
``threshold(p)`` gives the integer ``T = ceil(p * 2**32)`` and the event is ``r < T``, whose
probability ``T / 2**32`` differs from ``p`` by less than ``2**-32``. Integer comparisons make the
decision bit-identical on every backend.
"""

from __future__ import annotations

import enum
import numbers

import numpy as np

MASK32 = 0xFFFFFFFF
PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85
PHILOX_ROUNDS = 10
TWO32 = 1 << 32


class Purpose(enum.IntEnum):
    """Counter word 3: keeps the streams of different kinds of decisions apart."""

    INIT = 0  #: the random start configuration
    LOCAL = 1  #: checkerboard Metropolis / heat bath, step = half-sweep index
    WOLFF = 2  #: Wolff cluster updates
    SWENDSEN_WANG = 3  #: Swendsen-Wang bonds and cluster flips
    RG_TIES = 4  #: random tie breaking in majority-rule coarse-graining
    UPSCALE = 5  #: per-site sampling in inverse-RG upscaling, step = stage
    REFINE = 6  #: refinement sweeps after an upscaling stage
    MULTILEVEL = 7  #: multilevel samplers


def check_seed(seed, name: str = "seed") -> int:
    """Validate a 32-bit key word (seed or stream)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{name} must be an integer in [0, 2**32), got {seed!r}")
    seed = int(seed)
    if not 0 <= seed < TWO32:
        raise ValueError(f"{name} must be in [0, 2**32), got {seed}")
    return seed


def philox4x32(c0, c1, c2, c3, k0, k1, *, xp=None, rounds: int = PHILOX_ROUNDS):
    """Philox4x32-``rounds`` block function, element-wise over broadcast inputs.

    Inputs are non-negative integers < 2**32 (Python ints or integer arrays of one namespace).
    Returns four ``uint32`` arrays. Round: with ``(hi0, lo0) = M0 * c0`` and ``(hi1, lo1) = M1 * c2``
    (64-bit products), ``c <- (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)``; the key is bumped by the
    Weyl constants ``(W0, W1)`` between rounds.
    """
    if xp is None:
        arrays = [v for v in (c0, c1, c2, c3, k0, k1) if not isinstance(v, numbers.Integral)]
        if arrays:
            from ._array import get_namespace

            xp = get_namespace(*arrays)
        else:
            import array_api_compat.numpy as xp
    u64 = xp.uint64

    def as64(v):
        if isinstance(v, numbers.Integral):
            return xp.asarray(int(v), dtype=u64)
        return xp.astype(v, u64)

    c0, c1, c2, c3 = (as64(v) for v in (c0, c1, c2, c3))
    key_is_int = isinstance(k0, numbers.Integral) and isinstance(k1, numbers.Integral)
    if key_is_int:
        k0, k1 = int(k0), int(k1)
    else:
        k0, k1 = as64(k0), as64(k1)
    for r in range(rounds):
        if r:
            k0 = (k0 + PHILOX_W0) & MASK32
            k1 = (k1 + PHILOX_W1) & MASK32
        p0 = c0 * PHILOX_M0
        p1 = c2 * PHILOX_M1
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & MASK32, (p0 >> 32) ^ c3 ^ k1, p0 & MASK32
    return tuple(xp.astype(v, xp.uint32) for v in (c0, c1, c2, c3))


def random_words(n: int, *, seed: int, stream, step: int, purpose: int, first: int = 0, xp=None):
    """Words ``k = first .. first+n-1`` of the stream ``(seed, stream, step, purpose)``.

    ``stream`` may be an int or a 1-D integer array of stream indices (one per replica); the
    result then has shape ``(len(stream), n)``, else ``(n,)``. dtype ``uint32``.
    """
    if xp is None:
        import array_api_compat.numpy as xp
    seed = check_seed(seed)
    if not 0 <= step < 1 << 64:
        raise ValueError(f"step must be in [0, 2**64), got {step}")
    if n < 0 or first < 0:
        raise ValueError("n and first must be non-negative")
    g_lo = first >> 2
    g_hi = (first + n + 3) >> 2
    g = xp.arange(g_lo, g_hi, dtype=xp.uint64)
    if isinstance(stream, numbers.Integral):
        k1 = check_seed(stream, "stream")
    else:
        k1 = xp.reshape(xp.astype(stream, xp.uint64), (-1, 1))
    w = philox4x32(g, step & MASK32, step >> 32, int(purpose), seed, k1, xp=xp)
    shape = (4 * (g_hi - g_lo),) if isinstance(stream, numbers.Integral) else (-1, 4 * (g_hi - g_lo))
    if not isinstance(stream, numbers.Integral):
        w = tuple(xp.broadcast_to(v, (k1.shape[0], g_hi - g_lo)) for v in w)
    words = xp.reshape(xp.stack(w, axis=-1), shape)
    off = first - 4 * g_lo
    return words[..., off : off + n]


def uniform(words, xp=None):
    """Uniform float64 numbers ``u = r * 2**-32`` in ``[0, 1)`` from uint32 words (resolution 2**-32)."""
    if xp is None:
        from ._array import get_namespace

        xp = get_namespace(words)
    return xp.astype(words, xp.float64) * (1.0 / TWO32)


def threshold(p) -> np.ndarray:
    """Integer thresholds ``T = ceil(p * 2**32)`` (int64, clipped to [0, 2**32]) for Bernoulli draws.

    A uint32 word ``r`` gives the event ``r < T`` with probability ``T / 2**32``, within
    ``2**-32`` of ``p`` (and exactly 0 or 1 for p = 0 or 1).
    """
    p = np.asarray(p, dtype=np.float64)
    if np.any(~np.isfinite(p)) or np.any(p < 0) or np.any(p > 1):
        raise ValueError("probabilities must lie in [0, 1]")
    t = np.ceil(p * float(TWO32))  # exact: multiplying by a power of two
    return np.clip(t, 0, TWO32).astype(np.int64)


def bernoulli_probability(t) -> np.ndarray:
    """The exact probability ``T / 2**32`` realised by :func:`threshold`."""
    return np.asarray(t, dtype=np.float64) / float(TWO32)


def philox_reference_scalar(ctr: tuple[int, int, int, int], key: tuple[int, int], rounds: int = PHILOX_ROUNDS):
    """Pure-Python Philox4x32 on one counter (for known-answer tests and documentation)."""
    c0, c1, c2, c3 = ctr
    k0, k1 = key
    for r in range(rounds):
        if r:
            k0 = (k0 + PHILOX_W0) & MASK32
            k1 = (k1 + PHILOX_W1) & MASK32
        p0 = c0 * PHILOX_M0
        p1 = c2 * PHILOX_M1
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & MASK32, (p0 >> 32) ^ c3 ^ k1, p0 & MASK32
    return c0, c1, c2, c3


__all__ = [
    "Purpose",
    "check_seed",
    "philox4x32",
    "random_words",
    "uniform",
    "threshold",
    "bernoulli_probability",
    "philox_reference_scalar",
]
