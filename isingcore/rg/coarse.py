"""Real-space coarse-graining of Ising configurations (array API, batched over leading axes).

A block-spin transformation maps a configuration sigma on an Lx x Ly torus to mu on an
(Lx/b) x (Ly/b) torus, block (I, J) being the fine sites (b*I + a, b*J + c), 0 <= a, c < b.

- :func:`majority_rule`: mu_IJ = sign(sum of the block). For even b a block can sum to zero; the
  tie is broken at random with probability 1/2 (Kadanoff's probabilistic kernel
  D(mu|sigma), seed 003 section II), from the counter-based generator so that it is
  reproducible and identical on every backend. For odd b there are no ties.
- :func:`log_tie_weight`: log D(mu|sigma) = -n_ties ln 2, the weight w_a of seed 003 eq. (13).
- :func:`decimate`: keep one site per block.
- :func:`block_mean`: the block average (what the seed repository of the ECMK paper trained on).

References: L. P. Kadanoff, Physics 2, 263 (1966); R. H. Swendsen, PRL 42, 859 (1979);
A. Rançon et al., "Dreaming up scale invariance via inverse renormalization group" (seed 003).
"""

from __future__ import annotations

import math

from .. import _array
from .. import random as rng

__all__ = ["majority_rule", "tie_count", "log_tie_weight", "decimate", "block_mean", "block_sums"]


def _check_block(spins, b) -> tuple[int, int, int, int]:
    if isinstance(b, bool) or not isinstance(b, int) or b < 1:
        raise ValueError(f"b (block size) must be a positive integer, got {b!r}")
    if len(spins.shape) < 2:
        raise ValueError(f"spins must have shape (..., Lx, Ly), got shape {tuple(spins.shape)}")
    Lx, Ly = int(spins.shape[-2]), int(spins.shape[-1])
    if Lx % b or Ly % b:
        raise ValueError(f"lattice size {Lx}x{Ly} is not divisible by the block size b={b}")
    return Lx, Ly, Lx // b, Ly // b


def block_sums(spins, b: int):
    """Sum of the b x b block of every coarse site, int32 array of shape (..., Lx/b, Ly/b)."""
    xp = _array.get_namespace(spins)
    Lx, Ly, nx, ny = _check_block(spins, b)
    lead = tuple(spins.shape[:-2])
    s = xp.reshape(xp.astype(spins, xp.int32), lead + (nx, b, ny, b))
    return xp.sum(xp.sum(s, axis=-1), axis=-2)


def majority_rule(spins, b: int = 2, *, seed: int = 0, streams=None, step: int = 0):
    r"""Majority-rule block spins, int8 ``(..., Lx/b, Ly/b)``.

    .. math:: \mu_{IJ} = \operatorname{sign} \sum_{(i,j)\in\text{block }IJ} \sigma_{ij},

    and for a tied block (sum 0, even b only) ``mu = sigma_first`` (the block's corner spin
    ``sigma[b*I, b*J]``) iff Philox word ``k = I*(Ly/b) + J`` of ``(seed, stream, step,
    Purpose.RG_TIES)`` is below 2^31, else ``-sigma_first``: each sign with probability 1/2, and
    flipping every input spin flips every output spin for the same counters (exact Z2).
    Batch element n (leading axes flattened, C order) uses ``streams[n]``; default ``n``.
    """
    xp = _array.get_namespace(spins)
    Lx, Ly, nx, ny = _check_block(spins, b)
    sums = block_sums(spins, b)
    one = xp.asarray(1, dtype=xp.int8)
    mone = xp.asarray(-1, dtype=xp.int8)
    mu = xp.where(sums > 0, one, mone)
    if b % 2:
        return mu
    lead = tuple(spins.shape[:-2])
    n_batch = math.prod(lead)
    if streams is None:
        streams = xp.arange(n_batch, dtype=xp.uint32)
    else:
        streams = xp.reshape(xp.asarray(streams, dtype=xp.uint32), (-1,))
        if streams.shape[0] != n_batch:
            raise ValueError(f"streams must have one entry per configuration ({n_batch}), got {streams.shape[0]}")
    words = rng.random_words(nx * ny, seed=seed, stream=streams, step=step, purpose=rng.Purpose.RG_TIES, xp=xp)
    tie_sign = xp.where(words < xp.asarray(1 << 31, dtype=xp.uint32), one, mone)
    tie_sign = xp.reshape(tie_sign, lead + (nx, ny)) * spins[..., ::b, ::b]
    return xp.where(sums == 0, tie_sign, mu)


def tie_count(spins, b: int = 2):
    """Number of tied blocks (block sum 0) per configuration, int64 ``(...)``."""
    xp = _array.get_namespace(spins)
    ties = xp.astype(block_sums(spins, b) == 0, xp.int64)
    return xp.sum(xp.sum(ties, axis=-1), axis=-1)


def log_tie_weight(spins, b: int = 2):
    r"""log D(mu|sigma) of the majority rule with random ties: :math:`-n_\text{ties}\ln 2`, float64 ``(...)``.

    Every configuration mu that the majority rule can produce from sigma has the same probability
    2^(-n_ties); this is the weight w_a of seed 003 eq. (13).
    """
    xp = _array.get_namespace(spins)
    return xp.astype(tie_count(spins, b), xp.float64) * (-math.log(2.0))


def decimate(spins, b: int, offset: tuple[int, int] = (0, 0)):
    """Decimation: ``spins[..., offset[0]::b, offset[1]::b]``, one site per block (a view where possible)."""
    _check_block(spins, b)
    ox, oy = offset
    if not (0 <= ox < b and 0 <= oy < b):
        raise ValueError(f"offset must lie in [0, b) x [0, b) for b={b}, got {offset!r}")
    return spins[..., ox::b, oy::b]


def block_mean(spins, b: int):
    """Block average, float64 ``(..., Lx/b, Ly/b)``, values in [-1, 1]."""
    xp = _array.get_namespace(spins)
    return xp.astype(block_sums(spins, b), xp.float64) / float(b * b)
