"""Philox4x32-10 as a Numba-CUDA device function, bit-identical to :func:`isingcore.random.philox4x32`.

One call computes one 128-bit block: counter ``(c0, c1, c2, c3)`` and key ``(k0, k1)``, all
32-bit words, give four 32-bit output words. In the word-stream convention of
:mod:`isingcore.random`, word ``k`` of the stream ``(seed, stream, step, purpose)`` is lane
``k & 3`` of ``philox4x32_10(k >> 2, step_lo, step_hi, purpose, seed, stream)``, so one call
serves four consecutive words (:func:`stream_block`).

Typing rules (the code must also run unchanged under the CUDA simulator, where it is plain
Python on NumPy scalars):

* every value is kept as ``uint32`` between operations, and every constant is a typed NumPy
  scalar: in Numba, ``uint64`` combined with ``int64`` (e.g. a bare Python int) silently becomes
  ``float64``;
* Numba widens every uint32 operation to uint64, and LLVM then turns the narrowing/widening
  casts into 64-bit masks, so a plain ``uint64(a) * M`` compiles to a 64-bit multiply
  (``mul.lo.s64``, several instructions each). On the device the high half of the product is
  therefore taken from libdevice's ``__nv_umulhi`` (one ``mul.hi.u32``) and the low half from the
  truncated product (``mul.lo.u32``). The simulator has no libdevice; there :func:`_umulhi` is
  the same 64-bit arithmetic in NumPy scalars (products of 32-bit values cannot overflow uint64);
* the key is bumped in ``uint64`` and masked, so no NumPy scalar overflow happens in the simulator.
"""

import warnings

import numpy as np
from numba import cuda
from numba.cuda.core import config as _cuda_config

M0 = np.uint64(0xD2511F53)  # Philox multipliers
M1 = np.uint64(0xCD9E8D57)
W0 = np.uint64(0x9E3779B9)  # Weyl key increments
W1 = np.uint64(0xBB67AE85)
MASK32 = np.uint64(0xFFFFFFFF)
SHIFT32 = np.uint64(32)
ROUNDS = 10


if _cuda_config.ENABLE_CUDASIM:

    @cuda.jit(device=True)
    def _umulhi(a, m):
        """High 32 bits of the product of the 32-bit values ``a`` and ``m`` (simulator: NumPy scalars)."""
        return np.uint32((np.uint64(a) * np.uint64(m)) >> SHIFT32)

else:

    @cuda.jit(device=True, inline="always")
    def _umulhi(a, m):
        """High 32 bits of the product of the 32-bit values ``a`` and ``m`` (device: mul.hi.u32)."""
        return np.uint32(cuda.libdevice.umulhi(np.int32(a), np.int32(m)))


@cuda.jit(device=True, inline="always")
def _mulhilo(a, m):
    """(hi, lo) 32-bit halves of the 64-bit product of uint32 ``a`` and the multiplier ``m``."""
    return _umulhi(a, m), np.uint32((np.uint64(a) * m) & MASK32)


@cuda.jit(device=True, inline="always")
def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 of counter (c0, c1, c2, c3) under key (k0, k1); uint32 in, 4 x uint32 out.

    Round: with ``(hi0, lo0) = M0 * c0`` and ``(hi1, lo1) = M1 * c2``,
    ``c <- (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)``; the key is bumped by (W0, W1) between rounds.
    """
    x0 = np.uint32(c0)
    x1 = np.uint32(c1)
    x2 = np.uint32(c2)
    x3 = np.uint32(c3)
    kk0 = np.uint64(k0)
    kk1 = np.uint64(k1)
    for r in range(ROUNDS):  # constant trip count: fully unrolled by the compiler
        if r > 0:
            kk0 = (kk0 + W0) & MASK32
            kk1 = (kk1 + W1) & MASK32
        hi0, lo0 = _mulhilo(x0, M0)
        hi1, lo1 = _mulhilo(x2, M1)
        y0 = np.uint32(hi1 ^ x1 ^ np.uint32(kk0))
        y2 = np.uint32(hi0 ^ x3 ^ np.uint32(kk1))
        x0 = y0
        x1 = lo1
        x2 = y2
        x3 = lo0
    return x0, x1, x2, x3


@cuda.jit(device=True, inline="always")
def stream_block(g, step_lo, step_hi, purpose, seed, stream):
    """Words ``4g .. 4g+3`` of the stream (seed, stream, step, purpose); ``step = step_hi*2**32 + step_lo``."""
    return philox4x32_10(np.uint32(g), np.uint32(step_lo), np.uint32(step_hi), np.uint32(purpose),
                         np.uint32(seed), np.uint32(stream))


@cuda.jit
def philox_kernel(ctr, key, out):
    """Test/diagnostic kernel: ``out[n, :] = philox4x32_10(ctr[n, :], key[n, :])`` (uint32 arrays)."""
    n = cuda.grid(1)
    if n < out.shape[0]:
        a, b, c, d = philox4x32_10(ctr[n, 0], ctr[n, 1], ctr[n, 2], ctr[n, 3], key[n, 0], key[n, 1])
        out[n, 0] = a
        out[n, 1] = b
        out[n, 2] = c
        out[n, 3] = d


def philox(ctr, key):
    """Host helper: Philox4x32-10 of each row of ``ctr`` (N, 4) under ``key`` (N, 2) on the CUDA target.

    NumPy in, NumPy out (uint32, shape (N, 4)); runs on the device, or on the CPU under the simulator.
    """
    ctr = np.ascontiguousarray(ctr, dtype=np.uint32).reshape(-1, 4)
    key = np.ascontiguousarray(key, dtype=np.uint32).reshape(-1, 2)
    if ctr.shape[0] != key.shape[0]:
        raise ValueError(f"ctr and key must have the same number of rows, got {ctr.shape[0]} and {key.shape[0]}")
    n = ctr.shape[0]
    if n == 0:
        return np.zeros((0, 4), np.uint32)
    tpb = 64
    with warnings.catch_warnings():  # Numba warns about small grids; irrelevant here
        warnings.filterwarnings("ignore", message=".*under-utilization.*")
        launch = philox_kernel[(n + tpb - 1) // tpb, tpb]
    if _cuda_config.ENABLE_CUDASIM:
        out = np.zeros_like(ctr)
        launch(ctr, key, out)
        return out
    d_out = cuda.device_array((n, 4), np.uint32)
    launch(cuda.to_device(ctr), cuda.to_device(key), d_out)
    return d_out.copy_to_host()
