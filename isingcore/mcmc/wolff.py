r"""Wolff single-cluster updates: the reference implementation and :class:`WolffUpdater`.

Model: ``H = -J sum_<ij> s_i s_j`` on an ``Lx x Ly`` torus (any ``Lx, Ly >= 2``, odd sizes
allowed; for a side of 2 the two bonds between the same pair of sites are distinct bonds, as in
the 2N-bond torus of :mod:`isingcore.exact`), ``J > 0``, no field (a field needs Wolff's ghost
spin, which is not implemented).

The update (U. Wolff, "Collective Monte Carlo updating for spin systems", Phys. Rev. Lett. 62
(1989) 361; the Fortuin-Kasteleyn/Swendsen-Wang bond variables of R. H. Swendsen and J.-S. Wang,
Phys. Rev. Lett. 58 (1987) 86):

1. choose a seed site ``x0`` uniformly among the ``N = Lx*Ly`` sites;
2. every bond ``<ij>`` is *open* with probability ``p = 1 - exp(-2 beta J)`` if ``s_i = s_j``
   and closed otherwise;
3. the cluster ``C`` is the connected component of ``x0`` in the graph of open bonds;
4. flip every spin of ``C``.

Detailed balance: for a fixed cluster ``C``, the configurations ``s`` and ``s' = s`` flipped on
``C`` have the same open bonds inside ``C``; the bonds on the boundary of ``C`` must be closed in
both directions. Boundary bonds that are satisfied in ``s`` (aligned pairs, ``n_s`` of them) are
closed with probability ``(1-p)^{n_s}``, those satisfied in ``s'`` with ``(1-p)^{n_s'}``, so
``T(s->s')/T(s'->s) = (1-p)^{n_s - n_s'} = exp(-2 beta J (n_s - n_s')) = exp(-beta (H(s') - H(s)))``.
The seed probability ``|C|/N`` is the same in both directions.

Random numbers (the rule every implementation follows, so that all give the same cluster bit for
bit whatever the order of growth -- stack, breadth first, or a parallel frontier on a GPU)
---------------------------------------------------------------------------------------------
Update number ``t`` of a replica (its cluster counter, ``Simulation.steps[r]``) uses the word
stream ``(seed, stream, step = t, Purpose.WOLFF)`` of :mod:`isingcore.random` (word ``k`` is lane
``k & 3`` of ``philox4x32_10(ctr=(k >> 2, t_lo, t_hi, WOLFF), key=(seed, stream))``):

* **seed site** -- Lemire's multiply-shift with rejection (D. Lemire, "Fast random integer
  generation in an interval", ACM TOMACS 29 (2019) 3) on the words ``k = 0, 1, 2, ...``: with
  ``m = w_k * N`` (64-bit), ``x0 = m >> 32`` unless ``(m mod 2**32) < (2**32 mod N)``, in which
  case the word is rejected and the next one is tried. Each accepted value occurs for exactly
  ``floor(2**32 / N)`` words, so ``x0`` is exactly uniform. Only the words ``k < SEED_WORDS = 64``
  are seed words; a word is rejected with probability ``(2**32 mod N)/2**32 < N/2**32``, so all 64
  are rejected with probability below ``(N/2**32)**64`` (< 2**-128 for N <= 2**30). In that case
  the last candidate ``(w_63 * N) >> 32`` is used (documented, never observed).
* **bonds** -- bond ``b = 2*x + d`` joins site ``x = i*Ly + j`` to ``(i+1 mod Lx, j)`` (``d = 0``)
  or to ``(i, j+1 mod Ly)`` (``d = 1``); it is open in update ``t`` iff the two spins are equal
  and word ``k = SEED_WORDS + b`` is ``< T = threshold(1 - exp(-2 beta J))``
  (:func:`isingcore.random.threshold`; realised probability ``T / 2**32``, within ``2**-32``).
  With ``SEED_WORDS = 64`` the Philox block ``16 + (x >> 1)`` holds the four bonds of the site
  pair ``{x & ~1, x | 1}``: lane ``2*(x & 1) + d``.

Since every bond's decision is fixed before the cluster is grown, the cluster is the connected
component whatever the traversal order. The lattice may have at most ``2**33 - 32`` sites (word
index < 2**34); the updater limits it to ``N < 2**31``.

A Wolff *sweep* (``Simulation.sweep(n)``) is a **fixed** number ``c = clusters_per_sweep`` of
cluster updates per replica, the same in every sweep, chosen so that a sweep flips about ``N``
spins on average (``c = max(1, round(N / <|C|>))``). ``c`` is calibrated once, at the first
sweep, by :func:`calibrate_clusters_per_sweep` on a separate pilot chain (cold start, its own part
of the counter space: steps ``>= 2**62``, which the replicas' counters never reach), so it is a
deterministic function of (seed, first stream, beta J, Lx, Ly) and independent of the replicas;
or the user sets it. The number of clusters must not depend on the replicas' own cluster sizes:
with the rule "grow clusters until ``N`` spins have been flipped", a sweep ends preferentially on
a large cluster, and the configuration just after a large cluster is biased towards order (by
reversibility it is distributed like a configuration *from which* a large cluster grows). That
rule was measured here: on the 3x3 torus at K_c, ``<m^2>`` at the ends of such sweeps came out
0.9347(2) against the exact 0.8094, on 8x8 0.6912(3) against 0.6469 (Gamma-method errors,
2000 chains). With a fixed ``c`` a sweep is ``c`` steps of a time-homogeneous Markov chain, and
the Boltzmann distribution is exactly stationary.

Improved estimator (U. Wolff, PRL 62 (1989) 361): in the Fortuin-Kasteleyn representation
``<M^2> = <sum_c |c|^2>`` (the clusters' signs are independent), and the Wolff cluster is
cluster ``c`` with probability ``|c|/N``, so ``<|C|> = <sum_c |c|^2>/N = <M^2>/N = N <m^2>`` and
the per-site susceptibility at h = 0 is ``chi = beta N <m^2> = beta <|C|>``, the mean taken over
cluster updates (each started from an equilibrium configuration).

Fast paths (same bits as :func:`wolff_clusters`, chosen by :class:`WolffUpdater`):
``isingcore.backends.numba_cpu.wolff`` (site-by-site depth-first growth for small clusters,
64-site bit boards for large ones) and ``isingcore.backends.cuda.wolff`` (one thread block per
replica, or Komura-Okabe label propagation over the lattice).
"""

from __future__ import annotations

import math
import numbers
from collections import deque

import numpy as np

from .. import _array
from .. import random as rng

#: Words 0 .. SEED_WORDS-1 of an update are for the seed site; bond b uses word SEED_WORDS + b.
SEED_WORDS = 64
PURPOSE = int(rng.Purpose.WOLFF)
#: Largest lattice the updater accepts (cluster sizes and site indices are int32).
MAX_SITES = (1 << 31) - 1


# ------------------------------------------------------------------------------------------
# parameters
# ------------------------------------------------------------------------------------------
def check_parameters(beta: float, J: float, h: float) -> None:
    """Raise ``ValueError`` (naming the parameter) for ``h != 0``, ``J <= 0`` or a bad ``beta``."""
    if h != 0.0:
        raise ValueError(f"field h != 0 is not supported by the Wolff algorithm (no ghost spin); got h={h!r}")
    if not (isinstance(J, numbers.Real) and math.isfinite(J) and J > 0.0):
        raise ValueError(f"the Wolff algorithm needs a ferromagnetic coupling J > 0; got J={J!r}")
    if not (isinstance(beta, numbers.Real) and math.isfinite(beta) and beta > 0.0):
        raise ValueError(f"beta must be a positive finite number; got beta={beta!r}")


def bond_probability(beta: float, J: float = 1.0) -> float:
    """``p = 1 - exp(-2 beta J)``: probability that a satisfied bond is open (Wolff 1989)."""
    return -math.expm1(-2.0 * beta * J)


def bond_threshold(beta: float, J: float = 1.0) -> int:
    """Integer threshold ``T = ceil(p * 2**32)`` of :func:`bond_probability`: open iff ``word < T``."""
    return int(rng.threshold(bond_probability(beta, J)))


# ------------------------------------------------------------------------------------------
# random numbers
# ------------------------------------------------------------------------------------------
def _word(k: int, *, seed: int, stream: int, step: int) -> int:
    """Word ``k`` of the stream ``(seed, stream, step, Purpose.WOLFF)`` (pure Python)."""
    block = rng.philox_reference_scalar((k >> 2, step & rng.MASK32, step >> 32, PURPOSE), (seed, stream))
    return block[k & 3]


def seed_site(n_sites: int, *, seed: int, stream: int, step: int) -> int:
    """The seed site of update ``step``: Lemire's rejection rule on words 0, 1, ... (module docstring).

    Returns the flat site index ``x0 = i*Ly + j`` in ``[0, n_sites)``.
    """
    if not 1 <= n_sites < 1 << 32:
        raise ValueError(f"n_sites must be in [1, 2**32), got {n_sites}")
    reject_below = (1 << 32) % n_sites
    for k in range(SEED_WORDS):
        m = _word(k, seed=seed, stream=stream, step=step) * n_sites
        if (m & rng.MASK32) >= reject_below:
            return m >> 32
    return m >> 32  # all 64 words rejected: probability < (N / 2**32)**64


def bond_words(Lx: int, Ly: int, *, seed: int, stream: int, step: int) -> np.ndarray:
    """The words of all ``2N`` bonds of update ``step``: uint32 of shape (Lx, Ly, 2), ``[i, j, d]`` is bond ``2*(i*Ly+j)+d``."""
    n = Lx * Ly
    w = rng.random_words(2 * n, seed=seed, stream=stream, step=step, purpose=PURPOSE, first=SEED_WORDS)
    return np.asarray(w).reshape(Lx, Ly, 2)


def open_bonds(spins, *, seed: int, stream: int, step: int, threshold: int) -> np.ndarray:
    """Bond variables of update ``step``: bool (Lx, Ly, 2), ``[i, j, 0]`` joins (i, j)-(i+1, j), ``[i, j, 1]`` (i, j)-(i, j+1).

    Open iff the spins are equal and the bond's word is below ``threshold``.
    """
    s = np.asarray(spins)
    Lx, Ly = s.shape
    w = bond_words(Lx, Ly, seed=seed, stream=stream, step=step).astype(np.int64)
    aligned = np.stack([s == np.roll(s, -1, axis=0), s == np.roll(s, -1, axis=1)], axis=-1)
    return aligned & (w < threshold)


# ------------------------------------------------------------------------------------------
# one update (breadth-first search on the open-bond graph)
# ------------------------------------------------------------------------------------------
def wolff_cluster(spins, *, seed: int, stream: int, step: int, threshold: int) -> tuple[int, np.ndarray]:
    """The cluster of update ``step`` on one lattice ``spins`` (Lx, Ly): ``(x0, mask)``.

    ``x0`` is the flat seed index, ``mask`` a bool (Lx, Ly) array of the connected component of
    ``x0`` in the open-bond graph (:func:`open_bonds`), found by breadth-first search.
    """
    s = np.asarray(spins)
    Lx, Ly = s.shape
    bonds = open_bonds(s, seed=seed, stream=stream, step=step, threshold=threshold)
    x0 = seed_site(Lx * Ly, seed=seed, stream=stream, step=step)
    mask = np.zeros((Lx, Ly), dtype=bool)
    start = divmod(x0, Ly)
    mask[start] = True
    queue = deque([start])
    while queue:
        i, j = queue.popleft()
        ip, jp, im, jm = (i + 1) % Lx, (j + 1) % Ly, (i - 1) % Lx, (j - 1) % Ly
        # the four bonds of (i, j): its own two, and those of the neighbours above and to the left
        for (a, b), is_open in (((ip, j), bonds[i, j, 0]), ((i, jp), bonds[i, j, 1]),
                                ((im, j), bonds[im, j, 0]), ((i, jm), bonds[i, jm, 1])):
            if is_open and not mask[a, b]:
                mask[a, b] = True
                queue.append((a, b))
    return x0, mask


def wolff_update(spins, *, seed: int, stream: int, step: int, threshold: int) -> tuple[np.ndarray, int]:
    """One Wolff update of one lattice: returns (new spins, cluster size). Input is not modified."""
    s = np.array(spins, dtype=np.int8, copy=True)
    _, mask = wolff_cluster(s, seed=seed, stream=stream, step=step, threshold=threshold)
    s[mask] = -s[mask]
    return s, int(mask.sum())


def wolff_clusters(spins, n_clusters: int, *, steps, threshold: int, seed: int, streams):
    """Reference for the fused kernels: ``n_clusters`` Wolff updates of every replica.

    ``spins`` int8 (R, Lx, Ly) (NumPy; not modified), ``steps`` int64 (R,) cluster counters,
    ``streams`` (R,). Replica ``r`` performs updates ``steps[r] .. steps[r] + n_clusters - 1``.
    Returns ``(spins, steps, sizes)``: the new spins, the new counters and the cluster sizes,
    int64 of shape (R, n_clusters).
    """
    s = np.array(spins, dtype=np.int8, copy=True)
    R = s.shape[0]
    steps = np.array(steps, dtype=np.int64, copy=True)
    streams = np.asarray(streams)
    sizes = np.zeros((R, n_clusters), dtype=np.int64)
    for r in range(R):
        for k in range(n_clusters):
            s[r], sizes[r, k] = wolff_update(s[r], seed=seed, stream=int(streams[r]), step=int(steps[r]),
                                             threshold=threshold)
            steps[r] += 1
    return s, steps, sizes


#: The pilot chain of :func:`calibrate_clusters_per_sweep` uses the steps from here on; the
#: replicas' counters must stay below (the updater checks it), so the two never share random numbers.
PILOT_STEP0 = 1 << 62


def calibrate_clusters_per_sweep(Lx: int, Ly: int, *, threshold: int, seed: int, stream: int,
                                 thermalize: int = 10, measure: int = 20, min_clusters: int = 200) -> int:
    """Clusters per Wolff sweep, ``c = max(1, round(N / <|C|>))``, from a pilot chain.

    The pilot is one ``Lx x Ly`` lattice from a cold start, with the key (seed, stream) and the
    steps ``PILOT_STEP0, PILOT_STEP0 + 1, ...`` (so its random numbers are not used by any replica):
    it grows clusters until ``thermalize * N`` spins have flipped, and then estimates ``<|C|>`` as
    the mean size of the next clusters, until they have flipped ``measure * N`` spins and number
    at least ``min_clusters`` (a few per cent accuracy suffices: ``c`` only sets the time unit).
    Deterministic in its arguments; independent of the replicas, so the replicas' chains stay
    exactly Boltzmann-stationary. Costs about ``thermalize + measure`` sweeps of one lattice
    (Numba kernel).
    """
    from ..backends.numba_cpu.wolff import wolff_clusters as fused

    N = Lx * Ly
    s = np.ones((1, Lx, Ly), dtype=np.int8)
    steps = np.array([PILOT_STEP0], dtype=np.int64)
    streams = np.array([stream], dtype=np.uint32)
    flipped, measured, n_measured, chunk, mean = 0, 0, 0, 8, None
    while True:
        _, sz = fused(s, chunk, steps=steps, threshold=threshold, seed=seed, streams=streams, mean_size=mean)
        for c in sz[0].tolist():
            flipped += c
            if flipped > thermalize * N:
                measured += c
                n_measured += 1
        mean = float(sz.mean())
        if measured >= measure * N and n_measured >= min_clusters:
            break
        chunk = min(2 * chunk, 1 << 14)
    return max(1, int(round(N / (measured / n_measured))))


def transition_probability(s, s_new, *, beta: float, J: float = 1.0, realised: bool = True) -> float:
    """Exact probability ``T(s -> s_new)`` of one Wolff update on one small lattice.

    Non-zero only if ``s_new`` is ``s`` flipped on a set ``C`` of equal spins. The update picks a
    seed in ``C`` (probability ``|C|/N``) and then produces exactly ``C`` iff the open bonds among
    the aligned bonds inside ``C`` connect ``C`` (probability ``P_conn(C)``) and the ``n_b``
    aligned bonds from ``C`` to the rest are all closed: ``T = |C|/N * P_conn(C) * (1-p)^n_b``.
    ``P_conn`` is the all-terminal reliability of the graph on ``C``, computed by the subset
    recursion ``P_conn(S) = 1 - sum_{v in T subset S, T != S} P_conn(T) (1-p)^{e(T, S-T)}`` (``v``
    the first vertex of ``S``; ``e`` counts bonds, double bonds of a side-2 torus twice):
    ``O(3^|C|)``, fine for |C| <= 12. ``realised=True`` uses the probability ``T/2**32`` the
    kernels realise. Used by the detailed-balance tests.
    """
    s = np.asarray(s, dtype=np.int64)
    s_new = np.asarray(s_new, dtype=np.int64)
    Lx, Ly = s.shape
    N = Lx * Ly
    p = bond_probability(beta, J)
    if realised:
        p = float(rng.bernoulli_probability(bond_threshold(beta, J)))
    q = 1.0 - p
    flipped = (s != s_new).reshape(-1)
    members = [int(x) for x in np.flatnonzero(flipped)]
    if not members:
        return 0.0
    sf = s.reshape(-1)
    if np.any(sf[members] != sf[members[0]]):
        return 0.0
    if len(members) > 12:
        raise ValueError("transition_probability: the flipped set is too large for the exact enumeration (> 12 sites)")
    index = {x: n for n, x in enumerate(members)}
    n = len(members)
    adj = np.zeros((n, n), dtype=np.int64)  # number of aligned bonds between members
    boundary = 0
    for x in range(N):
        i, j = divmod(x, Ly)
        for y in (((i + 1) % Lx) * Ly + j, i * Ly + (j + 1) % Ly):
            if sf[x] != sf[y]:
                continue
            if flipped[x] and flipped[y]:
                if x != y:
                    adj[index[x], index[y]] += 1
                    adj[index[y], index[x]] += 1
            elif flipped[x] != flipped[y]:
                boundary += 1

    def cut(a: int, b: int) -> int:  # bonds between the vertex sets a and b (bit masks)
        rows = [v for v in range(n) if a >> v & 1]
        cols = [v for v in range(n) if b >> v & 1]
        return int(adj[np.ix_(rows, cols)].sum()) if rows and cols else 0

    conn = {}
    for S in range(1, 1 << n):
        low = S & -S
        rest = S ^ low
        total = 0.0
        sub = rest
        while True:  # T = low | sub over the proper subsets sub of rest
            T = low | sub
            if T != S:
                total += conn[T] * q ** cut(T, S ^ T)
            if sub == 0:
                break
            sub = (sub - 1) & rest
        conn[S] = 1.0 - total
    return n / N * conn[(1 << n) - 1] * q**boundary


# ------------------------------------------------------------------------------------------
# the updater used by Simulation
# ------------------------------------------------------------------------------------------
class WolffUpdater:
    """Wolff single-cluster updates for :class:`isingcore.Simulation` (``algorithm="wolff"``).

    ``sim.steps[r]`` is replica r's cluster counter (the RNG step of its next update); all
    replicas perform the same number of updates, so the counters stay equal if they start equal.
    ``steps_per_sweep`` is None (registry convention); one sweep is :attr:`clusters_per_sweep`
    updates per replica (module docstring): ``None`` until the first sweep calibrates it with
    :func:`calibrate_clusters_per_sweep`; assign an integer to fix it.
    :meth:`advance_clusters` performs an exact number of updates.

    Cluster statistics since the last :meth:`reset_statistics` (or the start):

    * :attr:`n_clusters` -- int64 (R,), updates per replica;
    * :meth:`cluster_sizes` -- list of R int32 arrays, the size of every cluster in order, kept
      while :attr:`record_sizes` is True (4 bytes per cluster and replica: at high temperature a
      sweep has many small clusters; recording stops with a warning beyond
      :attr:`max_recorded` sizes in all);
    * :meth:`sweep_mean_sizes` -- (R, n_sweeps), the mean cluster size of every sweep (always kept);
    * :meth:`mean_cluster_size`, :meth:`improved_susceptibility` -- ``chi = beta <|C|>``.
    """

    steps_per_sweep = None
    requires_even = False
    #: updates per kernel call (bounds the memory for the recorded sizes)
    chunk = 1 << 14

    def __init__(self, sim, kernel: str):
        check_parameters(sim.beta, sim.J, sim.h)
        if sim.Lx * sim.Ly > MAX_SITES:
            raise ValueError(f"size: the Wolff updater supports at most {MAX_SITES} sites, got {sim.Lx * sim.Ly}")
        self.beta = sim.beta
        self.threshold = bond_threshold(sim.beta, sim.J)
        self.fast = _array.fast_kernel(sim.backend, kernel, "wolff", "wolff_clusters")
        #: record every cluster size (set False for very long runs at high temperature)
        self.record_sizes = True
        #: most cluster sizes kept in all (int32): 2**26 = 256 MiB
        self.max_recorded = 1 << 26
        #: cluster updates per sweep and replica (None: calibrated at the first sweep)
        self.clusters_per_sweep = None
        self._mean_hint = None
        self.reset_statistics(sim.replicas)

    # -- statistics ------------------------------------------------------------------------
    def reset_statistics(self, replicas: int | None = None) -> None:
        """Forget the recorded cluster statistics (e.g. after thermalisation)."""
        R = self.n_clusters.shape[0] if replicas is None else replicas
        self.n_clusters = np.zeros(R, dtype=np.int64)
        self.sum_sizes = np.zeros(R, dtype=np.float64)
        self._sizes = [[] for _ in range(R)]
        self._n_recorded = 0
        self._complete = True  # every cluster since the reset is in _sizes
        self._sweep_means = []

    def _record(self, sizes: np.ndarray) -> None:
        sizes = np.asarray(sizes)
        self.n_clusters += sizes.shape[1]
        self.sum_sizes += sizes.sum(axis=1, dtype=np.float64)
        if self.record_sizes and sizes.size and self._n_recorded + sizes.size > self.max_recorded:
            import warnings

            warnings.warn(f"WolffUpdater: more than max_recorded = {self.max_recorded} cluster sizes; recording "
                          "stops (record_sizes = False). The running sums and the per-sweep means go on.",
                          RuntimeWarning, stacklevel=4)
            self.record_sizes = False
        if self.record_sizes:
            if sizes.shape[1]:
                for r in range(sizes.shape[0]):
                    self._sizes[r].append(sizes[r].astype(np.int32))
                self._n_recorded += sizes.size
        elif sizes.shape[1]:
            self._complete = False
        if sizes.size:  # speed hint for the fast kernels (method, tile width), not a statistic
            self._mean_hint = float(sizes.mean(dtype=np.float64))

    def cluster_sizes(self) -> list[np.ndarray]:
        """Sizes of the clusters grown by each replica since the last reset (list of R int32 arrays)."""
        return [np.concatenate(c) if c else np.zeros(0, np.int32) for c in self._sizes]

    def mean_cluster_size(self) -> float:
        """``<|C|>`` over all clusters of all replicas since the last reset (estimates ``N <m^2>``)."""
        n = int(self.n_clusters.sum())
        return float(self.sum_sizes.sum() / n) if n else float("nan")

    def sweep_mean_sizes(self) -> np.ndarray:
        """Mean cluster size of every sweep (``Simulation.sweep``) since the last reset: float64 (R, n_sweeps)."""
        R = self.n_clusters.shape[0]
        return np.concatenate(self._sweep_means, axis=1) if self._sweep_means else np.zeros((R, 0))

    def improved_susceptibility(self, S: float = 2.0):
        """Improved estimator ``chi = beta <|C|>`` of the per-site susceptibility ``beta N <m^2>`` (h = 0).

        Γ-method error (:func:`isingcore.measure.derived`) over the cluster sizes of each replica
        in the order they were grown (time unit: one update) when every size since the last
        reset was recorded, else over the per-sweep means (:meth:`sweep_mean_sizes`; time unit: one
        sweep, the same mean since every sweep has the same number of clusters). Needs at least 4
        samples per replica. Returns an :class:`isingcore.measure.Estimate`.
        """
        from ..measure import derived

        if self._complete and self._n_recorded:
            a = np.stack(self.cluster_sizes()).astype(np.float64)
        else:
            a = self.sweep_mean_sizes()
        if a.shape[1] < 4:
            raise ValueError("improved_susceptibility needs at least 4 clusters (or sweeps) per replica since the "
                             f"last reset, got {a.shape[1]}")
        beta = self.beta
        return derived(lambda c: beta * c, a, S=S)

    # -- dynamics --------------------------------------------------------------------------
    def calibrate(self, sim) -> int:
        """Set :attr:`clusters_per_sweep` from the pilot chain (see :func:`calibrate_clusters_per_sweep`)."""
        stream0 = int(_array.to_numpy(sim.streams)[0])
        self.clusters_per_sweep = calibrate_clusters_per_sweep(sim.Lx, sim.Ly, threshold=self.threshold,
                                                               seed=sim.seed, stream=stream0)
        if self._mean_hint is None:  # speed hint for the kernels until the replicas' own clusters are seen
            self._mean_hint = sim.Lx * sim.Ly / self.clusters_per_sweep
        return self.clusters_per_sweep

    def advance(self, sim, n_sweeps: int) -> None:
        """``n_sweeps * clusters_per_sweep`` cluster updates of every replica."""
        if n_sweeps == 0:
            return
        if self.clusters_per_sweep is None:
            self.calibrate(sim)
        c = self.clusters_per_sweep
        if isinstance(c, bool) or not isinstance(c, numbers.Integral) or c < 1:
            raise ValueError(f"clusters_per_sweep must be a positive integer, got {c!r}")
        c = int(c)
        sums = np.zeros((sim.replicas, n_sweeps))
        done = [0]

        def per_sweep(sizes):  # add the sizes of this kernel call to the sums of their sweeps
            k = sizes.shape[1]
            sweep = (done[0] + np.arange(k)) // c
            starts = np.flatnonzero(np.r_[True, sweep[1:] != sweep[:-1]])
            sums[:, sweep[starts]] += np.add.reduceat(np.asarray(sizes, dtype=np.float64), starts, axis=1)
            done[0] += k

        self.advance_clusters(sim, n_sweeps * c, _sink=per_sweep)
        self._sweep_means.append(sums / c)

    def advance_clusters(self, sim, n: int, _sink=None) -> None:
        """Exactly ``n`` cluster updates of every replica (steps ``sim.steps[r] .. + n - 1``)."""
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
            raise ValueError(f"n must be a non-negative integer number of cluster updates, got {n!r}")
        if int(sim.steps.max(initial=0)) + n > PILOT_STEP0:
            raise ValueError("step: the cluster counters must stay below 2**62 (the pilot chain's range)")
        done = 0
        while done < n:
            k = min(self.chunk, n - done)
            if self.fast is not None:
                sim._spins, sizes = self.fast(sim._spins, k, steps=sim.steps, threshold=self.threshold,
                                              seed=sim.seed, streams=sim.streams, mean_size=self._mean_hint)
            else:

                spins, new_steps, sizes = wolff_clusters(_array.to_numpy(sim._spins), k, steps=sim.steps,
                                                         threshold=self.threshold, seed=sim.seed,
                                                         streams=_array.to_numpy(sim.streams))
                sim._spins = _array.from_numpy(spins, sim.backend)
                sim.steps[:] = new_steps
            self._record(sizes)
            if _sink is not None:
                _sink(sizes)
            done += k


__all__ = [
    "SEED_WORDS",
    "check_parameters",
    "bond_probability",
    "bond_threshold",
    "seed_site",
    "bond_words",
    "open_bonds",
    "wolff_cluster",
    "wolff_update",
    "wolff_clusters",
    "calibrate_clusters_per_sweep",
    "PILOT_STEP0",
    "transition_probability",
    "WolffUpdater",
]
