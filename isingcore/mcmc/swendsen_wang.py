r"""Swendsen-Wang multi-cluster updates: the array-API reference implementation and the updater.

Model: ``H = -J sum_<ij> s_i s_j`` on an ``Lx x Ly`` torus (any ``Lx, Ly >= 2``, odd allowed),
``J > 0``, no field (a field needs a ghost spin, which is not implemented). Spins are int8 +-1,
batch shape ``(replicas, Lx, Ly)``.

The algorithm (R. H. Swendsen and J.-S. Wang, Phys. Rev. Lett. 58, 86 (1987); the
Fortuin-Kasteleyn representation, C. M. Fortuin and P. W. Kasteleyn, Physica 57, 536 (1972))
--------------------------------------------------------------------------------------------
One update, given the spins ``s``:

1. every nearest-neighbour bond ``<ij>`` is *open* with probability
   ``p = 1 - exp(-2 beta J)`` if ``s_i = s_j`` and closed otherwise;
2. clusters are the connected components of the graph of open bonds (isolated sites are
   clusters of size 1);
3. every cluster is flipped, independently, with probability 1/2.

Step 1 samples the bonds from their conditional distribution given the spins and step 3 the
spins from theirs given the bonds (uniform and independent per cluster) in the joint
Edwards-Sokal measure ``prod_<ij> [(1-p) delta_{b_ij,0} + p delta_{b_ij,1} delta_{s_i,s_j}]``
(R. G. Edwards and A. D. Sokal, Phys. Rev. D 38, 2009 (1988)), whose spin marginal is the
Boltzmann distribution: a Gibbs sampler, so the update leaves the Boltzmann distribution
invariant, and it satisfies detailed balance (both conditional moves do).

Random numbers (bit-identical rule for every implementation)
-----------------------------------------------------------
Update ``t`` of a replica (its RNG ``step``; one update = one sweep) uses the word stream
``(seed, stream = replica's stream, step = t, purpose = Purpose.SWENDSEN_WANG)`` of
:mod:`isingcore.random`:

* site index ``k = i*Ly + j``; bond ``b = 2k + d`` joins ``(i, j)`` to ``((i+1) mod Lx, j)``
  for ``d = 0`` and to ``(i, (j+1) mod Ly)`` for ``d = 1``;
* bond ``b`` is open iff the two spins are equal **and** ``word(b) < T`` with
  ``T = threshold(1 - exp(-2 beta J))`` (:func:`bond_threshold`);
* the cluster ``C`` flips iff ``word(2N + r) < 2**31``, where ``r = min_{k in C} k`` is the
  smallest site index in the cluster, its *canonical root* (``N = Lx*Ly``).

The bonds and the coins therefore depend only on (seed, stream, step, spins), never on the order
in which a labelling algorithm visits the sites: a union-find on the CPU and a parallel
label-equivalence on the GPU give the same configuration bit for bit. Lattices of side 2 have
two distinct bonds between the same pair of sites (both are drawn), as in the partition function
of :func:`isingcore.exact.kaufman_torus`.

Improved estimators
-------------------
After the bonds of an update are drawn, the new magnetisation is ``M' = sum_C sigma_C |C|`` with
independent, uniform ``sigma_C = +-1`` (the coins, whatever the old cluster spin was). Averaging
over the coins, with ``n_C = |C|``,

    ``E[M'^2 | bonds] = sum_C n_C^2``,
    ``E[M'^4 | bonds] = sum_C n_C^4 + 3 sum_{C != D} n_C^2 n_D^2 = 3 (sum_C n_C^2)^2 - 2 sum_C n_C^4``

(the sum over ``C != D`` runs over ordered pairs; odd moments of the coins vanish,
``E[sigma^2] = E[sigma^4] = 1``, and the ``3`` counts the three ways to pair four indices).
Since the bonds drawn from equilibrium spins are distributed as in the Edwards-Sokal measure,
``<m^2> = <sum_C n_C^2> / N^2`` and ``<m^4> = <3 (sum_C n_C^2)^2 - 2 sum_C n_C^4> / N^4`` exactly;
``chi = beta <sum_C n_C^2> / N`` is the familiar cluster-size form of the susceptibility
(Edwards and Sokal, above; improved estimators: U. Wolff, Phys. Rev. Lett. 62, 361 (1989)).
They average over the ``2^(number of clusters)`` coin outcomes and have smaller variance than
``m^2`` and ``m^4`` measured on the configuration. The updater records them for every update
and replica (:meth:`SwendsenWangUpdater.improved_series`).

Implementations
---------------
:func:`swendsen_wang_update` here is the readable reference, written against the array API
(NumPy, CuPy, array-api-strict): vectorised bonds, connected components by minimum-label
propagation with pointer jumping (the label of a site is the smallest site index reachable so
far; the fixed point is the canonical root). The fused kernels
``isingcore.backends.numba_cpu.swendsen_wang`` (sequential union-find) and
``isingcore.backends.cuda.swendsen_wang`` (block union-find in the style of D. P. Playne and
K. A. Hawick, IEEE TPDS 29, 1217 (2018), with the boundary merge of label equivalence,
Y. Komura and Y. Okabe, Comput. Phys. Commun. 183, 1155 (2012)) are tested bit for bit against it.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .. import _array
from .. import random as rng

#: Coin threshold: a cluster flips iff the word of its canonical root is below 2**31.
FLIP_THRESHOLD = 1 << 31


# ------------------------------------------------------------------------------------------
# parameters
# ------------------------------------------------------------------------------------------
def check_parameters(beta: float, J: float, h: float) -> None:
    """Raise ``ValueError`` (naming the parameter) unless ``beta > 0``, ``J > 0`` and ``h == 0``."""
    if not (isinstance(beta, numbers.Real) and math.isfinite(beta) and beta > 0):
        raise ValueError(f"beta must be a positive finite number for Swendsen-Wang, got beta={beta!r}")
    if not (isinstance(J, numbers.Real) and math.isfinite(J) and J > 0):
        raise ValueError(
            f"J must be > 0 (ferromagnetic coupling) for Swendsen-Wang, got J={J!r}; "
            "antiferromagnetic or zero couplings are not supported")
    if h != 0:
        raise ValueError(f"field h != 0 is not supported by Swendsen-Wang (no ghost spin), got h={h!r}")


def bond_probability(beta: float, J: float = 1.0) -> float:
    """``p = 1 - exp(-2 beta J)``, the probability that a satisfied bond is open (float64)."""
    return -math.expm1(-2.0 * beta * J)


def bond_threshold(beta: float, J: float = 1.0) -> int:
    """Integer bond threshold ``T = ceil(p * 2**32)`` of :func:`isingcore.random.threshold`.

    A satisfied bond with word ``w`` is open iff ``w < T``; the realised probability is
    ``T / 2**32`` (within ``2**-32`` of ``p``).
    """
    check_parameters(beta, J, 0.0)
    return int(rng.threshold(bond_probability(beta, J)))


def _check_lattice(spins) -> tuple[int, int, int]:
    if len(spins.shape) != 3:
        raise ValueError(f"spins must have shape (replicas, Lx, Ly), got shape {tuple(spins.shape)}")
    R, Lx, Ly = (int(v) for v in spins.shape)
    if Lx < 2 or Ly < 2:
        raise ValueError(f"the lattice must have Lx, Ly >= 2, got ({Lx}, {Ly})")
    return R, Lx, Ly


# ------------------------------------------------------------------------------------------
# the three stages of one update (array API)
# ------------------------------------------------------------------------------------------
def open_bonds(spins, *, step: int, threshold: int, seed: int, streams, xp=None):
    """Open bonds of one update: boolean array (R, Lx, Ly, 2), ``[..., d]`` is bond ``2k + d``.

    ``[r, i, j, 0]``: bond (i, j)-(i+1, j); ``[r, i, j, 1]``: bond (i, j)-(i, j+1) (periodic). Open
    iff the spins agree and word ``2k + d`` of ``(seed, streams[r], step, SWENDSEN_WANG)`` is
    below ``threshold``.
    """
    if xp is None:
        from .._array import get_namespace

        xp = get_namespace(spins)
    R, Lx, Ly = _check_lattice(spins)
    N = Lx * Ly
    w = rng.random_words(2 * N, seed=seed, stream=streams, step=step, purpose=rng.Purpose.SWENDSEN_WANG, xp=xp)
    w = xp.reshape(xp.astype(w, xp.int64), (R, Lx, Ly, 2))
    T = int(threshold)
    down = (spins == xp.roll(spins, -1, axis=1)) & (w[..., 0] < T)
    right = (spins == xp.roll(spins, -1, axis=2)) & (w[..., 1] < T)
    return xp.stack([down, right], axis=-1)


def cluster_labels(bonds, xp=None):
    """Canonical root of every site: the smallest site index ``k = i*Ly + j`` of its cluster.

    ``bonds``: boolean (R, Lx, Ly, 2) from :func:`open_bonds`. Returns int64 (R, Lx, Ly).

    Minimum-label propagation with pointer jumping: start from ``label[k] = k``; repeat
    (a) ``label[k] <- min(label[k], label[k'])`` over the sites ``k'`` joined to ``k`` by an open
    bond, (b) ``label[k] <- label[label[k]]``, until nothing changes. Every label is always a site
    of the same cluster and never increases; at the fixed point the labels are constant on each
    cluster, and the cluster's smallest site ``r`` has ``label[r] = r``, so the constant is ``r``.
    """
    if xp is None:
        from .._array import get_namespace

        xp = get_namespace(bonds)
    R, Lx, Ly = (int(v) for v in bonds.shape[:3])
    N = Lx * Ly
    down, right = bonds[..., 0], bonds[..., 1]
    big = xp.asarray(N, dtype=xp.int64)
    site = xp.reshape(xp.arange(N, dtype=xp.int64), (1, Lx, Ly))
    offset = xp.reshape(xp.arange(R, dtype=xp.int64) * N, (R, 1, 1))
    label = xp.broadcast_to(site, (R, Lx, Ly))
    while True:
        new = label
        new = xp.minimum(new, xp.where(down, xp.roll(label, -1, axis=1), big))  # from (i+1, j)
        new = xp.minimum(new, xp.roll(xp.where(down, label, big), 1, axis=1))  # from (i-1, j)
        new = xp.minimum(new, xp.where(right, xp.roll(label, -1, axis=2), big))  # from (i, j+1)
        new = xp.minimum(new, xp.roll(xp.where(right, label, big), 1, axis=2))  # from (i, j-1)
        new = xp.reshape(xp.take(xp.reshape(new, (-1,)), xp.reshape(new + offset, (-1,))), (R, Lx, Ly))
        if bool(xp.all(new == label)):
            return label
        label = new


def cluster_flips(labels, *, step: int, seed: int, streams, xp=None):
    """Boolean (R, Lx, Ly): does the site's cluster flip? Iff word ``2N + root`` is below 2**31."""
    if xp is None:
        from .._array import get_namespace

        xp = get_namespace(labels)
    R, Lx, Ly = (int(v) for v in labels.shape)
    N = Lx * Ly
    w = rng.random_words(N, seed=seed, stream=streams, step=step, purpose=rng.Purpose.SWENDSEN_WANG,
                         first=2 * N, xp=xp)
    coin = xp.reshape(w < xp.asarray(FLIP_THRESHOLD, dtype=xp.uint32), (-1,))
    offset = xp.reshape(xp.arange(R, dtype=xp.int64) * N, (R, 1, 1))
    return xp.reshape(xp.take(coin, xp.reshape(labels + offset, (-1,))), (R, Lx, Ly))


def cluster_size_moments(labels):
    """Per replica ``(S2, S4) = (sum_C |C|^2, sum_C |C|^4)`` as NumPy int64 and float64 arrays (R,)."""
    from .._array import to_numpy

    lab = to_numpy(labels)
    R = lab.shape[0]
    S2 = np.zeros(R, np.int64)
    S4 = np.zeros(R, np.float64)
    for r in range(R):
        n = np.bincount(lab[r].reshape(-1))
        n = n[n > 0].astype(np.int64)
        S2[r] = int(np.sum(n * n))
        S4[r] = float(np.sum(n.astype(np.float64) ** 4))
    return S2, S4


def improved_moments(S2, S4, n_sites: int):
    """Improved estimators ``(m2, m4)`` from the cluster-size sums (see the module docstring).

    ``m2 = S2 / N^2``, ``m4 = 3 m2^2 - 2 S4 / N^4``; float64.
    """
    N = float(n_sites)
    m2 = np.asarray(S2, dtype=np.float64) / (N * N)
    return m2, 3.0 * m2 * m2 - 2.0 * (np.asarray(S4, dtype=np.float64) / (N * N)) / (N * N)


def swendsen_wang_update(spins, *, step: int, threshold: int, seed: int, streams, xp=None):
    """One Swendsen-Wang update of every replica at RNG step ``step``.

    Returns ``(new_spins, labels)``: the int8 spins and the canonical roots (int64, (R, Lx, Ly)).
    """
    if xp is None:
        from .._array import get_namespace

        xp = get_namespace(spins)
    bonds = open_bonds(spins, step=step, threshold=threshold, seed=seed, streams=streams, xp=xp)
    labels = cluster_labels(bonds, xp=xp)
    flip = cluster_flips(labels, step=step, seed=seed, streams=streams, xp=xp)
    return xp.where(flip, -spins, spins), labels


def swendsen_wang_sweeps(spins, n_updates: int, *, steps, threshold: int, seed: int, streams, xp=None):
    """``n_updates`` updates; replica ``r`` uses the steps ``steps[r], steps[r] + 1, ...``.

    ``steps``: an int (common) or a sequence of one int per replica. Returns
    ``(spins, m2, m4)`` with the improved estimators of every update as NumPy float64 arrays
    of shape (R, n_updates) (:func:`improved_moments`).
    """
    if xp is None:
        from .._array import get_namespace

        xp = get_namespace(spins)
    R, Lx, Ly = _check_lattice(spins)
    st = np.broadcast_to(np.asarray(steps, dtype=np.int64), (R,))
    m2 = np.empty((R, n_updates))
    m4 = np.empty((R, n_updates))
    if R == 0 or n_updates == 0:
        return spins, m2, m4
    common = bool(np.all(st == st[0]))
    groups = [slice(0, R)] if common else [slice(r, r + 1) for r in range(R)]
    parts = []
    for g in groups:
        s, strm = spins[g, ...], streams[g]
        for t in range(n_updates):
            s, labels = swendsen_wang_update(s, step=int(st[g.start]) + t, threshold=threshold, seed=seed,
                                             streams=strm, xp=xp)
            m2[g, t], m4[g, t] = improved_moments(*cluster_size_moments(labels), Lx * Ly)
        parts.append(s)
    out = parts[0] if common else xp.concat(parts, axis=0)
    return out, m2, m4


# ------------------------------------------------------------------------------------------
# exact transition probabilities (small lattices; used by the detailed-balance tests)
# ------------------------------------------------------------------------------------------
def _torus_bond_list(Lx: int, Ly: int):
    """Bonds in canonical order b = 2k + d as (site, neighbour) pairs."""
    out = []
    for i in range(Lx):
        for j in range(Ly):
            k = i * Ly + j
            out.append((k, ((i + 1) % Lx) * Ly + j))
            out.append((k, i * Ly + (j + 1) % Ly))
    return out


def transition_probability(s, s_new, *, beta: float, J: float = 1.0, realised: bool = True) -> float:
    """Exact probability ``T(s -> s_new)`` of one Swendsen-Wang update (NumPy, one small lattice).

    An open bond must be satisfied in both configurations (bonds join equal spins, clusters flip
    as a whole); conversely every bond set ``B`` inside ``A`` = {bonds satisfied in ``s`` and in
    ``s_new``} is compatible, because ``f = s s_new`` has ``f_i f_j = (s_i s_j)(s'_i s'_j) = 1`` on
    every bond of ``A``, i.e. is constant on the clusters of ``B``. With ``n_s`` bonds satisfied in
    ``s`` and ``c(B)`` clusters, each of whose coins must come out as ``f`` demands,

        ``T(s -> s') = sum_{B subset A} p^|B| (1-p)^(n_s - |B|) 2^-c(B)``.

    The ``2^|A|`` subsets are summed vectorised (``|A| <= 20``; a 3x3 torus has 18 bonds).
    ``realised=True`` uses the bond probability ``T/2**32`` the kernels realise; the coin
    probability is exactly 1/2.
    """
    s = np.asarray(s, dtype=np.int64)
    s_new = np.asarray(s_new, dtype=np.int64)
    Lx, Ly = s.shape
    N = Lx * Ly
    p = bond_probability(beta, J)
    if realised:
        p = float(rng.bernoulli_probability(bond_threshold(beta, J)))
    flat, flat_new = s.reshape(-1), s_new.reshape(-1)
    bonds = _torus_bond_list(Lx, Ly)
    n_sat = sum(int(flat[a] == flat[b]) for a, b in bonds)
    A = [(a, b) for a, b in bonds if flat[a] == flat[b] and flat_new[a] == flat_new[b]]
    m = len(A)
    if m > 20:
        raise ValueError(f"transition_probability sums 2^{m} bond sets; at most 20 common satisfied bonds")
    mask = np.arange(1 << m, dtype=np.int64)
    on = ((mask[:, None] >> np.arange(m)) & 1).astype(bool)  # (2^m, m): bond q in B
    label = np.broadcast_to(np.arange(N, dtype=np.int8), (mask.size, N)).copy()
    changed = True
    while changed:  # minimum-label propagation over the open bonds of every B at once
        changed = False
        for q, (a, b) in enumerate(A):
            lo = np.minimum(label[:, a], label[:, b])
            upd = on[:, q] & ((label[:, a] != lo) | (label[:, b] != lo))
            if upd.any():
                changed = True
                label[upd, a] = lo[upd]
                label[upd, b] = lo[upd]
    n_clusters = np.sum(label == np.arange(N, dtype=np.int8), axis=1)
    n_open = on.sum(axis=1)
    return float(np.sum(p**n_open * (1.0 - p) ** (n_sat - n_open) * 0.5**n_clusters))


# ------------------------------------------------------------------------------------------
# the updater used by isingcore.Simulation
# ------------------------------------------------------------------------------------------
class SwendsenWangUpdater:
    """Swendsen-Wang for :class:`isingcore.Simulation` (``algorithm="swendsen-wang"``).

    One sweep is one update (``steps_per_sweep = 1``): update number ``t`` of a replica uses RNG
    step ``t`` (its entry of ``sim.steps``), so replicas may sit at different steps. Requires
    ``h == 0`` and ``J > 0``; any ``Lx, Ly >= 2``.

    ``fast`` is the fused kernel (Numba on NumPy, Numba-CUDA on CuPy) or None (array-API
    reference); both give identical spins. The improved estimators of every update are
    recorded (:meth:`improved_series`, 16 bytes per replica and update) unless
    ``record_improved`` is set to False; call :meth:`reset` between measurement blocks of long runs.
    """

    steps_per_sweep = 1
    requires_even = False

    def __init__(self, sim, kernel: str):
        check_parameters(sim.beta, sim.J, sim.h)
        self.threshold = bond_threshold(sim.beta, sim.J)
        self.n_sites = sim.Lx * sim.Ly
        self.replicas = sim.replicas
        self.record_improved = True
        self.fast = _array.fast_kernel(sim.backend, kernel, "swendsen_wang", "swendsen_wang_sweeps")
        self.reset()

    def reset(self) -> None:
        """Forget the recorded improved estimators."""
        self._m2: list[np.ndarray] = []
        self._m4: list[np.ndarray] = []

    def improved_series(self) -> dict:
        """Improved estimators since the last :meth:`reset`: ``{"m2": (R, n), "m4": (R, n)}`` float64.

        Entry ``[r, t]`` belongs to the ``t``-th recorded update of replica ``r`` and estimates
        ``<m^2>`` and ``<m^4>`` (``m = M/N``) from the clusters of that update (module docstring).
        """
        R = self.replicas
        if not self._m2:
            return {"m2": np.empty((R, 0)), "m4": np.empty((R, 0))}
        return {"m2": np.concatenate(self._m2, axis=1), "m4": np.concatenate(self._m4, axis=1)}

    def advance(self, sim, n_sweeps: int) -> None:
        if n_sweeps == 0:
            return
        kw = dict(steps=sim.steps.copy(), threshold=self.threshold, seed=sim.seed, streams=sim.streams)
        if self.fast is not None:
            sim._spins, m2, m4 = self.fast(sim._spins, n_sweeps, record=self.record_improved, **kw)
        else:
            sim._spins, m2, m4 = swendsen_wang_sweeps(sim._spins, n_sweeps, xp=sim.xp, **kw)
        if self.record_improved:
            self._m2.append(np.asarray(m2, dtype=np.float64))
            self._m4.append(np.asarray(m4, dtype=np.float64))
        sim.steps += n_sweeps


__all__ = [
    "FLIP_THRESHOLD",
    "check_parameters",
    "bond_probability",
    "bond_threshold",
    "open_bonds",
    "cluster_labels",
    "cluster_flips",
    "cluster_size_moments",
    "improved_moments",
    "swendsen_wang_update",
    "swendsen_wang_sweeps",
    "transition_probability",
    "SwendsenWangUpdater",
]
