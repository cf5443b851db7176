"""Multilevel ancestral sampling with the exact probability of every sample.

    q(s) = q_0(s^0) * prod_{l=1}^{last} q_l(s^l | s^{<l}),
    q_l(s^l | s^{<l}) = prod_{v in level l} sigma(s_v * a_v(s^{<l})),   sigma(z) = 1 / (1 + e^-z)

(seed 001, eqs. 8 and 10). ``a_v`` is the log-odds ``ln q(s_v=+1)/q(s_v=-1)`` of site v given the
coarser levels: ``2 K_l * (sum of the four neighbours)`` for a heat-bath level (MLMC-HB, seed 001
appendix D; Schmidt 1983), or the output of a trained conditional network (RiGCS). The last level
is always the exact heat bath at the model's beta, so a sampler is exact wherever its coarser
levels are.

Exactness of ``log q``. Each site is one integer Bernoulli draw ``r < T`` with the Philox word
``r`` and ``T ~ sigma(a) 2**32`` in ``[1, 2**32 - 1]`` (exactly Z2-symmetric, see
:func:`.coarsest.logit_thresholds`); ``log q`` sums the logs of the
*realised* probabilities ``T / 2**32`` and ``1 - T / 2**32`` (:mod:`.coarsest`). It is therefore the
log-probability of the sampler exactly as it runs (up to float64 rounding of the sum), it is
normalised over all configurations, and every configuration has ``q > 0``.

Randomness: sample ``i`` of a call uses the stream ``first + i``; site ``k = x L + y`` uses word
``k`` of ``(seed, stream, step=0, Purpose.MULTILEVEL)`` whatever its level, so a sample does not
depend on the batch it was drawn in.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from .._array import get_namespace, namespace, to_numpy
from ..random import Purpose, check_seed, random_words
from .coarsest import CoarsestLevel, logit_thresholds, realised_log_probabilities
from .hierarchy import Hierarchy


class MultilevelSample(NamedTuple):
    """Configurations with their exact log-probabilities and log importance weights.

    ``spins``: ``(N, L, L)`` int8 on the sampler's backend; ``log_q``: ``ln q(s)``; ``log_w``:
    ``-beta H(s) - ln q(s)`` (``H = -sum_<ij> s_i s_j``), both ``(N,)`` float64 NumPy;
    ``streams``: the stream index of each sample.
    """

    spins: Any
    log_q: np.ndarray
    log_w: np.ndarray
    streams: np.ndarray


def bond_sum(spins) -> np.ndarray:
    """``sum_<ij> s_i s_j`` on the torus for ``(B, L, L)`` spins, as float64 NumPy (``H = -bond_sum``)."""
    xp = get_namespace(spins)
    s = xp.astype(spins, xp.int32)
    t = s * (xp.roll(s, -1, axis=1) + xp.roll(s, -1, axis=2))
    return to_numpy(xp.sum(xp.reshape(t, (t.shape[0], -1)), axis=1)).astype(np.float64)


def _site_sums(sm, idx, xp):
    """``sum_j sm[idx[:, j]]``: ``(n_sites, B)`` int8 sums of spins (a sum of at most four spins fits)."""
    total = xp.take(sm, xp.asarray(idx[:, 0]), axis=0)
    for j in range(1, idx.shape[1]):
        total = total + xp.take(sm, xp.asarray(idx[:, j]), axis=0)
    return total


class _TabulatedLevel:
    """A level whose log-odds take finitely many values: thresholds and realised log-probabilities
    ``T``, ``logp_up``, ``logp_dn`` are tables indexed by a per-site case number."""

    network = None

    def _lookup(self, idx, xp):
        """``(T, log P(+1), log P(-1))`` of the cases ``idx`` (``(n_sites, B)`` int64)."""
        return (xp.take(xp.asarray(self.T), idx, axis=0), xp.take(xp.asarray(self.logp_up), idx, axis=0),
                xp.take(xp.asarray(self.logp_dn), idx, axis=0))


class HeatBathLevel(_TabulatedLevel):
    """Heat-bath conditional with nearest-neighbour coupling K: ``a_v = 2 K sum_nb s_nb``."""

    def __init__(self, level, K: float):
        K = float(K)
        if not math.isfinite(K):
            raise ValueError(f"coupling of level {level.index} must be finite, got {K}")
        self.level = level
        self.coupling = K
        self.T = logit_thresholds(2.0 * K * np.arange(-4, 5, 2))  # indexed by (sum + 4) // 2
        self.logp_up, self.logp_dn = realised_log_probabilities(self.T)

    def thresholds(self, sm, xp):
        """``(T, log P(+1), log P(-1))`` for the level's sites, each ``(n_sites, B)``.

        ``sm``: the configurations site-major, ``(L*L, B)`` int8 (row gathers are contiguous copies).
        """
        total = _site_sums(sm, self.level.neighbours, xp)
        return self._lookup(xp.astype((total + 4) // 2, xp.int64), xp)


def decimated_log_odds(beta: float) -> np.ndarray:
    """``f(S) = ln cosh(beta (S + 1)) - ln cosh(beta (S - 1))`` for ``S = -3, -1, 1, 3`` (index ``(S + 3) // 2``).

    The log-odds of a ``"decimated"`` site is ``sum_a f(S_a)`` over its four summed-out axial
    neighbours (:mod:`.hierarchy`). The table is odd exactly (``f(-S) = -f(S)`` bit for bit), so
    the summed log-odds of a flipped configuration is the exact negative.
    """
    beta = float(beta)
    lc = lambda z: z + np.log1p(np.exp(-2.0 * z)) - math.log(2.0)  # ln cosh z for z >= 0
    pos = np.array([lc(beta * 2.0) - lc(0.0), lc(beta * 4.0) - lc(beta * 2.0)])  # S = 1, 3
    return np.array([-pos[1], -pos[0], pos[0], pos[1]])


class DecimatedLevel(_TabulatedLevel):
    """The exact conditional of a ``"decimated"`` level: ``a_v = sum_{a nb v} f(S_a)`` (:func:`decimated_log_odds`).

    The four ``S_a`` take 4**4 value combinations; the thresholds of all of them are tabulated, the
    sum always taken in neighbour order, so Z2 holds bit for bit.
    """

    def __init__(self, level, beta: float):
        self.level = level
        self.coupling = float(beta)
        f = decimated_log_odds(beta)
        d = np.arange(256)
        digits = [(d >> (2 * j)) & 3 for j in range(4)]  # digit j: (S_j + 3) // 2
        a = f[digits[0]] + f[digits[1]] + f[digits[2]] + f[digits[3]]
        self.T = logit_thresholds(a)
        self.logp_up, self.logp_dn = realised_log_probabilities(self.T)

    def thresholds(self, sm, xp):
        """As :meth:`HeatBathLevel.thresholds`."""
        sec = self.level.second_neighbours
        idx = None
        for j in range(4):
            dig = xp.astype((_site_sums(sm, sec[:, j, :], xp) + 3) // 2, xp.int64) * (4 ** j)
            idx = dig if idx is None else idx + dig
        return self._lookup(idx, xp)


class NetworkLevel:
    """A trained conditional: an ONNX network maps the embedded coarser spins to log-odds."""

    def __init__(self, level, hierarchy: Hierarchy, network, backend: str):
        self.level = level
        self.hierarchy = hierarchy
        self.network = network
        self.coupling = None
        self._session = network.session(backend)

    def logits(self, spins, xp):
        """Log-odds ``a_v`` at the level's sites, ``(B, n_sites)`` float64."""
        x = self.hierarchy.embed(spins, self.level.index, xp=xp)
        out = self.network.run(self._session, x, xp)
        g = self.level.grid_xy
        flat = xp.reshape(out, (out.shape[0], -1))
        return xp.astype(xp.take(flat, xp.asarray(g[:, 0] * self.level.grid_size + g[:, 1]), axis=1), xp.float64)

    def thresholds(self, sm, xp):
        """As :meth:`HeatBathLevel.thresholds`, from the network's log-odds."""
        L = self.hierarchy.size
        spins = xp.reshape(sm.T.copy(), (sm.shape[1], L, L))
        T = logit_thresholds(to_numpy(self.logits(spins, xp)).T)
        up, dn = realised_log_probabilities(T)
        return xp.asarray(T), xp.asarray(up), xp.asarray(dn)


class MultilevelSampler:
    """Ancestral multilevel sampler of the Ising model at ``beta`` on an ``size x size`` torus.

    ``model=None`` is MLMC-HB: heat-bath levels with the Maris-Kadanoff couplings (or
    ``couplings``, one per level, the last being ``beta``), coarsest level Boltzmann with
    ``coarsest_couplings = (K_nn, K_nnn)`` (default: its Maris-Kadanoff coupling). ``model`` is a
    :class:`isingcore.multilevel.models.MultilevelModel` or the name/path of one; it fixes size,
    beta, the hierarchy ``scheme`` and every level. ``scheme``: ``"seed001"`` (default) or
    ``"split"`` (:mod:`.hierarchy`; its ``"decimated"`` level is always exact).
    """

    def __init__(self, size: int | None = None, beta: float | None = None, *, model=None, coarsest: int = 4,
                 couplings=None, coarsest_couplings=None, backend: str = "numpy", scheme: str = "seed001"):
        if backend not in ("numpy", "cupy"):
            raise ValueError(f"backend={backend!r}: the multilevel sampler runs on 'numpy' or 'cupy'")
        self.backend = backend
        self.xp = namespace(backend)
        if model is not None:
            from .models import load_model

            model = load_model(model)
            if size is not None and int(size) != model.size:
                raise ValueError(f"size={size} does not match the model {model.name!r} (trained for size={model.size})")
            if beta is not None and not math.isclose(float(beta), model.beta, rel_tol=1e-12):
                raise ValueError(f"beta={beta} does not match the model {model.name!r} (trained for beta={model.beta})")
            size, beta, coarsest, scheme = model.size, model.beta, model.coarsest, model.scheme
            couplings, coarsest_couplings = model.couplings, model.coarsest_couplings
        if size is None or beta is None:
            raise ValueError("size and beta are required unless model is given")
        beta = float(beta)
        if not math.isfinite(beta) or beta <= 0:
            raise ValueError(f"beta must be positive and finite, got {beta}")
        self.model = model
        self.beta = beta
        self.hierarchy = H = Hierarchy(size, coarsest, scheme)
        self.size = H.size
        if couplings is None:
            couplings = H.coupling_schedule(beta)
        couplings = np.asarray(couplings, dtype=np.float64)
        if couplings.shape != (H.n_levels,):
            raise ValueError(f"couplings must have one entry per level ({H.n_levels}), got shape {couplings.shape}")
        if H.n_levels > 1 and not math.isclose(couplings[-1], beta, rel_tol=1e-12):
            raise ValueError(f"the last level is the exact heat bath: its coupling must be beta={beta}, got {couplings[-1]}")
        if coarsest_couplings is None:
            coarsest_couplings = (couplings[0], 0.0)
        self.coarsest_level = CoarsestLevel(H.coarsest, *coarsest_couplings)
        self.levels = []
        for lv in H.levels[1:]:
            net = model.networks.get(lv.index) if model is not None else None
            if lv.kind == "decimated":
                if not math.isclose(couplings[lv.index], beta, rel_tol=1e-12):
                    raise ValueError(f"level {lv.index} is the exact decimated conditional: its coupling must be "
                                     f"beta={beta}, got {couplings[lv.index]}")
                self.levels.append(DecimatedLevel(lv, beta))
            elif net is None:
                self.levels.append(HeatBathLevel(lv, couplings[lv.index]))
            else:
                self.levels.append(NetworkLevel(lv, H, net, backend))
        self.couplings = couplings

    @property
    def kind(self) -> str:
        if self.model is not None:
            return f"model:{self.model.name}"
        return "mlmc-hb" if self.hierarchy.scheme == "seed001" else f"mlmc-hb-{self.hierarchy.scheme}"

    def __repr__(self) -> str:
        return f"MultilevelSampler(size={self.size}, beta={self.beta}, {self.kind}, levels={self.hierarchy.n_levels})"

    def _words(self, seed: int, streams):
        """Words ``k = 0 .. L^2 - 1`` of the streams (Numba kernel on NumPy, the array-API reference elsewhere)."""
        L = self.size
        if self.backend == "numpy":
            from .._array import fast_kernel

            kern = fast_kernel("numpy", "auto", "philox", "stream_words")
            out = np.empty((len(streams), L * L), dtype=np.uint32)
            kern(out, np.asarray(streams, dtype=np.int64), np.uint64(0), np.uint32(Purpose.MULTILEVEL), np.uint32(seed))
            return out
        return random_words(L * L, seed=seed, stream=self.xp.asarray(streams), step=0,
                            purpose=Purpose.MULTILEVEL, xp=self.xp)

    def _run(self, sm, words):
        """Sample (``words`` given) or score (``words=None``) the site-major configurations ``sm`` in place.

        ``sm``: ``(L*L, B)`` int8 (zeros when sampling); ``words``: ``(L*L, B)`` uint32. Returns ``ln q``.
        """
        xp = self.xp
        B = sm.shape[1]
        H = self.hierarchy
        s0 = xp.asarray(H.levels[0].sites)
        if words is not None:
            spins0, logq = self.coarsest_level.sample(to_numpy(xp.take(words, s0, axis=0)).T)
            sm[s0, :] = xp.asarray(spins0.reshape(B, -1).T)
        else:
            logq = self.coarsest_level.log_prob(to_numpy(xp.take(sm, s0, axis=0)).T)
        logq = xp.asarray(logq)
        for lev in self.levels:
            sites = xp.asarray(lev.level.sites)
            T, up, dn = lev.thresholds(sm, xp)
            if words is not None:
                bit = xp.astype(xp.take(words, sites, axis=0), xp.int64) < T
                sm[sites, :] = xp.where(bit, xp.asarray(1, dtype=xp.int8), xp.asarray(-1, dtype=xp.int8))
            else:
                bit = xp.take(sm, sites, axis=0) > 0
            logq = logq + xp.sum(xp.where(bit, up, dn), axis=0)
        return to_numpy(logq).astype(np.float64)

    def sample(self, n: int, *, seed: int, first: int = 0, batch: int | None = None, progress=None) -> MultilevelSample:
        """``n`` independent configurations (streams ``first .. first+n-1``) with ``log q`` and ``log w``."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        seed = check_seed(seed)
        if isinstance(first, bool) or not isinstance(first, (int, np.integer)) or not 0 <= first < 2**32 - n + 1:
            raise ValueError(f"first must be an integer with first + n <= 2**32, got {first!r}")
        L = self.size
        if batch is None:
            batch = max(1, min(n, (1 << 22) // (L * L)))
        xp = self.xp
        spins, logq = [], []
        for b0 in range(0, n, batch):
            streams = np.arange(first + b0, first + min(n, b0 + batch), dtype=np.int64)
            words = self._words(seed, streams).T.copy()  # site-major
            sm = xp.zeros((L * L, streams.shape[0]), dtype=xp.int8)
            logq.append(self._run(sm, words))
            spins.append(xp.reshape(sm.T.copy(), (-1, L, L)))
            if progress is not None:
                progress(streams.shape[0])
        spins = xp.concat(spins, axis=0) if len(spins) > 1 else spins[0]
        log_q = np.concatenate(logq)
        return MultilevelSample(spins, log_q, self.beta * bond_sum(spins) - log_q, np.arange(first, first + n))

    def log_prob(self, spins, *, batch: int | None = None) -> np.ndarray:
        """Exact ``ln q(s)`` of ``(B, L, L)`` ±1 configurations (the probability the sampler draws them)."""
        xp = self.xp
        s = xp.asarray(spins)
        L = self.size
        if s.ndim == 2:
            s = s[None, ...]
        if s.ndim != 3 or s.shape[1:] != (L, L):
            raise ValueError(f"spins must have shape (B, {L}, {L}), got {tuple(s.shape)}")
        if batch is None:
            batch = max(1, (1 << 22) // (L * L))
        out = [self._run(xp.reshape(xp.astype(s[i:i + batch], xp.int8), (-1, L * L)).T.copy(), None)
               for i in range(0, s.shape[0], batch)]
        return np.concatenate(out)

    def log_weight(self, spins, log_q=None) -> np.ndarray:
        """``ln w = -beta H(s) - ln q(s)``, the unnormalised log importance weight."""
        if log_q is None:
            log_q = self.log_prob(spins)
        return self.beta * bond_sum(self.xp.asarray(spins)) - np.asarray(log_q, dtype=np.float64)
