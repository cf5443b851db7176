"""The coarsest level: an Ising-type Boltzmann distribution on a c x c torus, sampled exactly.

    q_0(s) = exp(K_nn * E_nn(s) + K_nnn * E_nnn(s)) / Z_0,
    E_nn(s)  = sum_i s_i (s_{i+x} + s_{i+y}),
    E_nnn(s) = sum_i s_i (s_{i+x+y} + s_{i+x-y})

(periodic; on a 2 x 2 torus each bond is counted twice, as the sums say). With c <= 4 there
are at most 2**16 states, so Z_0 is a sum over all of them.

Exact sampling with exact probabilities: the sites are drawn one after another, site k with
the conditional ``P(s_k = +1 | s_0..s_{k-1})`` of the enumerated distribution. Each draw is an
integer comparison of a Philox word with a threshold ``T ~ P * 2**32`` in ``[1, 2**32 - 1]``
(:func:`logit_thresholds`, exactly Z2-symmetric), and ``log q_0`` is the sum of the logs of the probabilities
*realised* by those thresholds, ``T / 2**32`` and ``1 - T / 2**32``. So ``log q_0`` is the
exact log-probability of the sampler as run, it sums to one over all states to rounding, and
no state has probability zero.
"""

from __future__ import annotations

import numpy as np

from ..random import TWO32

LN_TWO32 = 32.0 * np.log(2.0)


def state_spins(c: int) -> np.ndarray:
    """All ``2**(c*c)`` states of a c x c lattice as ``(2**(c*c), c, c)`` int8; state index
    ``b = sum_k bit_k 2**(n-1-k)`` with site ``k`` in row-major order and ``bit = 1`` for ``+1``."""
    n = c * c
    b = np.arange(1 << n, dtype=np.int64)[:, None]
    bits = (b >> np.arange(n - 1, -1, -1, dtype=np.int64)) & 1
    return (2 * bits - 1).astype(np.int8).reshape(-1, c, c)


def features(spins) -> np.ndarray:
    """``(E_nn, E_nnn)`` of ``(B, c, c)`` configurations as ``(B, 2)`` float64."""
    s = np.asarray(spins, dtype=np.int64)
    nn = (s * (np.roll(s, -1, 1) + np.roll(s, -1, 2))).sum(axis=(1, 2))
    d = np.roll(np.roll(s, -1, 1), -1, 2) + np.roll(np.roll(s, -1, 1), 1, 2)
    nnn = (s * d).sum(axis=(1, 2))
    return np.stack([nn, nnn], axis=1).astype(np.float64)


def realised_log_probabilities(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(log P(+1), log P(-1))`` realised by the integer thresholds ``T`` (``r < T`` gives +1)."""
    T = np.asarray(T, dtype=np.float64)
    return np.log(T) - LN_TWO32, np.log(float(TWO32) - T) - LN_TWO32


def clipped_thresholds(p) -> np.ndarray:
    """``T = ceil(p 2**32)`` clipped to ``[1, 2**32 - 1]`` (int64): both outcomes stay possible."""
    p = np.asarray(p, dtype=np.float64)
    if np.any(~np.isfinite(p)) or np.any(p < 0) or np.any(p > 1):
        raise ValueError("probabilities must lie in [0, 1]")
    return np.clip(np.ceil(p * float(TWO32)), 1, TWO32 - 1).astype(np.int64)


def logit_thresholds(a) -> np.ndarray:
    """Thresholds for ``P(+1) = sigma(a) = 1 / (1 + e^-a)`` that are exactly Z2-symmetric.

    ``T(a) = ceil(sigma(|a|) 2**32)`` clipped to ``[2**31, 2**32 - 1]`` for ``a >= 0`` and
    ``T(a) = 2**32 - T(-a)`` for ``a < 0``, so the realised ``P(+1 | a)`` equals ``P(-1 | -a)`` to the
    last bit: a Z2-odd log-odds gives an exactly Z2-invariant ``q``.
    """
    a = np.asarray(a, dtype=np.float64)
    if np.any(np.isnan(a)):
        raise ValueError("log-odds must not be NaN")
    with np.errstate(over="ignore"):
        p = 1.0 / (1.0 + np.exp(-np.abs(a)))
    t = np.clip(np.ceil(p * float(TWO32)), TWO32 >> 1, TWO32 - 1).astype(np.int64)
    return np.where(a >= 0, t, TWO32 - t)


class CoarsestLevel:
    """Exact sampler of the c x c Boltzmann distribution with couplings ``(K_nn, K_nnn)``."""

    def __init__(self, c: int, K_nn: float, K_nnn: float = 0.0):
        if c not in (2, 4):
            raise ValueError(f"c must be 2 or 4, got {c}")
        for name, v in (("K_nn", K_nn), ("K_nnn", K_nnn)):
            if not np.isfinite(float(v)):
                raise ValueError(f"{name} must be finite, got {v}")
        self.c = c
        self.n = c * c
        self.couplings = (float(K_nn), float(K_nnn))
        states = state_spins(c)
        logw = features(states) @ np.array(self.couplings)
        # log-marginals M_k[prefix] of the first k sites, k = 0..n
        marg = [None] * (self.n + 1)
        marg[self.n] = logw
        for k in range(self.n - 1, -1, -1):
            m = marg[k + 1].reshape(-1, 2)
            top = m.max(axis=1)
            marg[k] = top + np.log(np.exp(m[:, 0] - top) + np.exp(m[:, 1] - top))
        self.log_z = float(marg[0][0])
        # thresholds T_k[prefix] for site k given the prefix of the first k bits
        self.thresholds = []
        self._logp = []
        for k in range(self.n):
            m = marg[k + 1].reshape(-1, 2)
            T = logit_thresholds(m[:, 1] - m[:, 0])
            # the distribution is Z2-even: make the realised one exactly so (prefix <-> flipped prefix)
            T = np.where(np.arange(T.size) < T.size // 2, TWO32 - T[::-1], T) if k else np.full(1, TWO32 >> 1)
            self.thresholds.append(T)
            self._logp.append(realised_log_probabilities(T))

    def sample(self, words) -> tuple[np.ndarray, np.ndarray]:
        """States from ``(B, n)`` uint32 words (word k decides site k): ``(spins (B, c, c) int8, log q_0 (B,))``."""
        words = np.asarray(words)
        B = words.shape[0]
        prefix = np.zeros(B, dtype=np.int64)
        logq = np.zeros(B)
        for k in range(self.n):
            T = self.thresholds[k][prefix]
            bit = words[:, k].astype(np.int64) < T
            lp_up, lp_dn = self._logp[k]
            logq += np.where(bit, lp_up[prefix], lp_dn[prefix])
            prefix = 2 * prefix + bit
        spins = (2 * ((prefix[:, None] >> np.arange(self.n - 1, -1, -1)) & 1) - 1).astype(np.int8)
        return spins.reshape(B, self.c, self.c), logq

    def log_prob(self, spins) -> np.ndarray:
        """Exact ``log q_0`` of ``(B, c, c)`` ±1 configurations under the realised sampler."""
        s = np.asarray(spins).reshape(-1, self.n)
        B = s.shape[0]
        prefix = np.zeros(B, dtype=np.int64)
        logq = np.zeros(B)
        for k in range(self.n):
            bit = s[:, k] > 0
            lp_up, lp_dn = self._logp[k]
            logq += np.where(bit, lp_up[prefix], lp_dn[prefix])
            prefix = 2 * prefix + bit
        return logq

    def ideal_log_prob(self, spins) -> np.ndarray:
        """``K . features(s) - log Z_0``: the Boltzmann log-probability before quantisation."""
        return features(spins) @ np.array(self.couplings) - self.log_z
