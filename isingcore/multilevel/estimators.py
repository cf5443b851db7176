"""Importance-sampling estimators for samplers with exact probabilities.

With ``N`` independent samples ``s_m ~ q`` and log weights ``ln w_m = -beta H(s_m) - ln q(s_m)``:

* effective sample size per sample, ``ESS = (sum w)^2 / (N sum w^2)`` (in (0, 1]; 1 iff q = p);
* partition function ``Z_hat = (1/N) sum w`` (seed 001 eq. 13; Nicoli et al., PRL 126, 032001
  (2021)), ``ln Z_hat`` with the delta-method error ``sqrt(var(w) / N) / mean(w)``;
* reweighted observables ``<O> = sum w O / sum w`` (self-normalised) with the delta-method error
  ``sqrt(sum w^2 (O - <O>)^2) / sum w``;
* the effective mode-dropping measure (Nicoli et al. 2023, cited in seed 001 sec. 4.2)
  ``w_bar = E_q[p/q] = Z_hat / Z`` against the exact ``Z``: 1 when q misses no region of p's
  support at the sample size used, below 1 when it does;
* the independence Metropolis-Hastings chain: propose ``s' ~ q``, accept with
  ``min(1, w(s') / w(s))``; the chain is exact MCMC for p, its acceptance rate and integrated
  autocorrelation time measure how close q is to p.

All sums are taken in the log domain (weights span hundreds of e-folds at large L).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..measure.autocorrelation import Estimate
from ..random import Purpose, random_words


def _log_w(log_w) -> np.ndarray:
    a = np.asarray(log_w, dtype=np.float64).reshape(-1)
    if a.size < 2:
        raise ValueError(f"log_w needs at least 2 samples, got {a.size}")
    if not np.all(np.isfinite(a)):
        raise ValueError("log_w must be finite")
    return a


def _normalised(log_w) -> tuple[np.ndarray, float]:
    a = _log_w(log_w)
    top = float(a.max())
    return np.exp(a - top), top


def effective_sample_size(log_w) -> float:
    """``ESS / N = (sum w)^2 / (N sum w^2)`` from log weights."""
    w, _ = _normalised(log_w)
    return float(w.sum() ** 2 / (w.size * np.sum(w * w)))


def log_partition_function(log_w) -> Estimate:
    """``ln Z_hat = ln((1/N) sum w)`` with its delta-method error ``std(w) / (sqrt(N) mean(w))``."""
    w, top = _normalised(log_w)
    n = w.size
    mean = w.mean()
    err = float(np.std(w, ddof=1) / np.sqrt(n) / mean)
    return Estimate(float(top + np.log(mean)), err, 0.5, 0.0, 0, n)


def reweight(observable, log_w) -> Estimate:
    """Self-normalised ``<O>_p = sum w O / sum w`` with its delta-method error."""
    w, _ = _normalised(log_w)
    o = np.asarray(observable, dtype=np.float64).reshape(-1)
    if o.shape != w.shape:
        raise ValueError(f"observable has {o.size} entries, log_w {w.size}")
    sw = w.sum()
    mean = float(np.sum(w * o) / sw)
    err = float(np.sqrt(np.sum(w * w * (o - mean) ** 2)) / sw)
    return Estimate(mean, err, 0.5, 0.0, 0, w.size)


def mode_dropping(log_w, ln_z_exact: float) -> Estimate:
    """Effective mode-dropping measure ``w_bar = Z_hat / Z`` (exact ``ln Z`` given) with its error."""
    lz = log_partition_function(log_w)
    v = float(np.exp(lz.mean - float(ln_z_exact)))
    return Estimate(v, v * lz.error, 0.5, 0.0, 0, lz.n)


class IndependenceChain(NamedTuple):
    """An independence Metropolis-Hastings chain over a stream of proposals.

    ``state[t]``: the index of the proposal the chain sits on after step t (``state[0] = 0``, the
    first proposal is accepted unconditionally); ``accepted``: whether step t moved (t >= 1);
    ``acceptance``: the fraction of steps t >= 1 that moved.
    """

    state: np.ndarray
    accepted: np.ndarray
    acceptance: float


def independence_metropolis(log_w, *, seed: int, stream: int = 0) -> IndependenceChain:
    """Independence Metropolis-Hastings over proposals in order: accept ``t`` with ``min(1, w_t / w_cur)``.

    The acceptance of step t uses word ``t`` of ``(seed, stream, step=1, Purpose.MULTILEVEL)``,
    read as ``u = r 2**-32``; the move is accepted if ``ln u < ln w_t - ln w_cur`` (a word of 0
    always accepts).
    """
    a = _log_w(log_w)
    n = a.size
    r = random_words(n, seed=seed, stream=stream, step=1, purpose=Purpose.MULTILEVEL)
    with np.errstate(divide="ignore"):
        log_u = np.log(np.asarray(r, dtype=np.float64)) - 32.0 * np.log(2.0)
    state = np.zeros(n, dtype=np.int64)
    acc = np.zeros(n, dtype=bool)
    cur = 0
    for t in range(1, n):
        if log_u[t] < a[t] - a[cur]:
            cur = t
            acc[t] = True
        state[t] = cur
    return IndependenceChain(state, acc, float(acc[1:].mean()))
