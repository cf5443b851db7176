"""Checkerboard Metropolis and heat bath: the array-API reference implementation.

Model: H = -J sum_<ij> s_i s_j - h sum_i s_i on an Lx x Ly torus (Lx, Ly even), spins int8 +-1,
batch shape ``(replicas, Lx, Ly)``. Sites split into two colours, ``(i + j) % 2``; a half-sweep
updates every site of one colour at once (their neighbours all have the other colour, so the
updates are independent). Half-sweep number ``t`` (the RNG ``step``) updates colour ``t % 2``; a
sweep is two half-sweeps.

Both algorithms are written as "flip spin i with probability P(s_i, n_i)", with n_i the sum of
the four neighbours and dE = 2 s_i (J n_i + h) the energy change of the flip:

* Metropolis (Metropolis et al., J. Chem. Phys. 21, 1087 (1953)): P = min(1, exp(-beta dE)).
* Heat bath (Glauber form): P = 1 / (1 + exp(beta dE)) = P_eq(-s_i | n_i). The new spin is then
  drawn from its conditional equilibrium distribution whatever its old value, so this *is* the
  heat bath; written relative to the current spin, the decision depends only on s_i n_i (and s_i h),
  so sweeping -s with -h gives exactly -(sweep of s) with the same random numbers (Z2).

Random numbers (see :mod:`isingcore.random`): site (i, j) of the active colour uses word
``k = (i * Ly + j) // 2`` of the stream ``(seed, stream=replica's stream, step=t, Purpose.LOCAL)``
(another purpose on request: the refinement sweeps of inverse-RG upscaling use ``Purpose.REFINE``)
and flips iff ``word < T[s_i, n_i]`` with the integer thresholds of :func:`flip_thresholds`.
The fused kernels in ``isingcore.backends`` follow exactly this rule and are tested bit for bit
against :func:`checkerboard_half_sweep`.
"""

from __future__ import annotations

import math

import numpy as np

from .. import random as rng

LOCAL_ALGORITHMS = ("metropolis", "heatbath")


def flip_probabilities(algorithm: str, beta: float, J: float = 1.0, h: float = 0.0) -> np.ndarray:
    """Flip probabilities P[s_index, n_index] as float64, shape (2, 5).

    ``s_index = (s + 1) // 2`` (0 for s = -1, 1 for s = +1) and ``n_index = (n + 4) // 2`` for the
    neighbour sum n in {-4, -2, 0, 2, 4}; dE = 2 s (J n + h).
    """
    if algorithm not in LOCAL_ALGORITHMS:
        raise ValueError(f"algorithm={algorithm!r} is not a local update; allowed values: {LOCAL_ALGORITHMS}")
    p = np.empty((2, 5), dtype=np.float64)
    for si, s in enumerate((-1, 1)):
        for ni, n in enumerate((-4, -2, 0, 2, 4)):
            x = beta * 2.0 * s * (J * n + h)  # beta * dE
            if algorithm == "metropolis":
                p[si, ni] = 1.0 if x <= 0.0 else math.exp(-x)
            else:
                p[si, ni] = 0.5 * (1.0 - math.tanh(0.5 * x))  # 1/(1+e^x), stable for any x
    return p


def flip_thresholds(algorithm: str, beta: float, J: float = 1.0, h: float = 0.0) -> np.ndarray:
    """Integer flip thresholds (int64, shape (10,)) indexed by ``5 * s_index + n_index``.

    The spin flips iff its 32-bit random word is below the threshold; the realised probability is
    ``T / 2**32`` (:func:`isingcore.random.bernoulli_probability`).
    """
    return rng.threshold(flip_probabilities(algorithm, beta, J, h)).reshape(-1)


def colour_mask(Lx: int, Ly: int, colour: int, xp):
    """Boolean (Lx, Ly) mask of the sites with (i + j) % 2 == colour."""
    i = xp.reshape(xp.arange(Lx, dtype=xp.int32), (Lx, 1))
    j = xp.reshape(xp.arange(Ly, dtype=xp.int32), (1, Ly))
    return ((i + j) % 2) == colour


def site_words(Lx: int, Ly: int, *, seed: int, streams, step: int, purpose: int, xp):
    """Random word of every site for a half-sweep: site (i, j) gets word ``(i*Ly + j) // 2``.

    Returns uint32 of shape (R, Lx, Ly) (both sites of a horizontal pair share a word; only the
    site of the active colour reads it).
    """
    half = Ly // 2
    w = rng.random_words(Lx * half, seed=seed, stream=streams, step=step, purpose=purpose, xp=xp)
    w = xp.reshape(w, (-1, Lx, half, 1))
    w = xp.concat([w, w], axis=-1)
    return xp.reshape(w, (-1, Lx, Ly))


def neighbour_sum(spins, xp):
    """Sum of the four nearest neighbours on the torus, int32, same shape as ``spins``."""
    s = xp.astype(spins, xp.int32)
    return xp.roll(s, 1, axis=-2) + xp.roll(s, -1, axis=-2) + xp.roll(s, 1, axis=-1) + xp.roll(s, -1, axis=-1)


def checkerboard_half_sweep(spins, *, step: int, thresholds, seed: int, streams, xp=None,
                            purpose: int = rng.Purpose.LOCAL):
    """One half-sweep (colour ``step % 2``) of the reference sampler; returns the new spins.

    ``spins``: int8 (R, Lx, Ly); ``thresholds``: from :func:`flip_thresholds` (any array
    namespace or NumPy); ``streams``: uint32 (R,) stream index of each replica. ``purpose``: counter
    word 3 of the random words (:class:`isingcore.random.Purpose`); ``LOCAL`` for Monte Carlo,
    ``REFINE`` for the refinement sweeps of inverse-RG upscaling (:mod:`isingcore.rg.upscale`).
    """
    if xp is None:
        from .._array import get_namespace

        xp = get_namespace(spins)
    R, Lx, Ly = spins.shape
    colour = step % 2
    thr = xp.asarray(np.asarray(thresholds, dtype=np.int64)) if isinstance(thresholds, np.ndarray) else thresholds
    s32 = xp.astype(spins, xp.int32)
    idx = ((s32 + 1) // 2) * 5 + (neighbour_sum(spins, xp) + 4) // 2
    T = xp.reshape(xp.take(thr, xp.reshape(idx, (-1,))), (R, Lx, Ly))
    words = site_words(Lx, Ly, seed=seed, streams=streams, step=step, purpose=int(purpose), xp=xp)
    flip = colour_mask(Lx, Ly, colour, xp) & (xp.astype(words, xp.int64) < T)
    return xp.where(flip, -spins, spins)


def checkerboard_sweeps(spins, n_half_steps: int, *, step: int, thresholds, seed: int, streams, xp=None,
                        purpose: int = rng.Purpose.LOCAL):
    """``n_half_steps`` half-sweeps starting at RNG step ``step``; returns the new spins.

    ``purpose``: counter word 3 of the random words (default ``Purpose.LOCAL``).
    """
    for t in range(step, step + n_half_steps):
        spins = checkerboard_half_sweep(spins, step=t, thresholds=thresholds, seed=seed, streams=streams, xp=xp,
                                        purpose=purpose)
    return spins


def transition_probability(s, s_new, *, colour: int, algorithm: str, beta: float, J: float = 1.0, h: float = 0.0,
                           realised: bool = True) -> float:
    """Probability T(s -> s_new) of one half-sweep of colour ``colour`` (NumPy, one lattice).

    Product over the active sites of P_flip or 1 - P_flip. ``realised=True`` uses the
    probabilities the kernels actually realise with their integer thresholds (T / 2**32, within
    2**-32 of the exact ones); ``realised=False`` the exact formulas. Used by the detailed-balance tests.
    """
    s = np.asarray(s, dtype=np.int32)
    s_new = np.asarray(s_new, dtype=np.int32)
    Lx, Ly = s.shape
    mask = ((np.arange(Lx)[:, None] + np.arange(Ly)[None, :]) % 2) == colour
    if np.any((s != s_new) & ~mask):
        return 0.0
    p = flip_probabilities(algorithm, beta, J, h)
    if realised:
        p = rng.bernoulli_probability(rng.threshold(p))
    nb = np.roll(s, 1, 0) + np.roll(s, -1, 0) + np.roll(s, 1, 1) + np.roll(s, -1, 1)
    pf = p[(s + 1) // 2, (nb + 4) // 2]
    flipped = s != s_new
    return float(np.prod(np.where(flipped, pf, 1.0 - pf)[mask]))
