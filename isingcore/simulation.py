"""The public sampler object: :class:`Simulation`.

``Simulation`` holds a batch of replicas ``(replicas, Lx, Ly)`` of int8 +-1 spins on one array
backend, the model parameters, and the RNG position (``seed``, one ``stream`` per replica and the
update counter ``step``). Everything random is drawn from the counter-based generator
(:mod:`isingcore.random`), so the state after ``sweep(n)`` depends only on (seed, streams, step,
start) and not on the backend, the batching of replicas, or whether the fused kernel or the
array-API reference ran it.
"""

from __future__ import annotations

import math
import numbers
import sys

import numpy as np

from . import _array
from . import random as rng
from .constants import BETA_C
from .mcmc import local

KERNELS = ("auto", "fast", "reference")


class LocalUpdater:
    """Checkerboard Metropolis / heat bath: one sweep is two RNG steps (half-sweeps)."""

    steps_per_sweep = 2
    requires_even = True

    def __init__(self, sim: "Simulation", kernel: str):
        self.thresholds_np = local.flip_thresholds(sim.algorithm, sim.beta, sim.J, sim.h)
        self.thresholds = sim.xp.asarray(self.thresholds_np)
        self.fast = _array.fast_kernel(sim.backend, kernel, "local", "checkerboard_sweeps")

    def advance(self, sim: "Simulation", n_sweeps: int) -> None:
        n_half = 2 * n_sweeps
        if n_half == 0:
            return
        self.advance_steps(sim, n_half)

    def advance_steps(self, sim: "Simulation", n_half: int) -> None:
        """``n_half`` half-sweeps starting at ``sim.step`` (colour ``step % 2`` first)."""
        step = sim.step
        if not isinstance(step, int):
            raise ValueError("checkerboard updates need one common step counter for all replicas")
        kw = dict(step=step, thresholds=self.thresholds, seed=sim.seed, streams=sim.streams)
        if self.fast is not None:
            sim._spins = self.fast(sim._spins, n_half, **kw)
        else:
            sim._spins = local.checkerboard_sweeps(sim._spins, n_half, xp=sim.xp, **kw)
        sim.steps += n_half


def _lazy_updater(module: str, cls: str, requires_even: bool = False, default_start: str = "random"):
    """Factory that imports ``isingcore.mcmc.<module>.<cls>`` on first use (keeps import light)."""

    def make(sim, kernel):
        import importlib

        return getattr(importlib.import_module(f"isingcore.mcmc.{module}"), cls)(sim, kernel)

    make.requires_even = requires_even
    make.default_start = default_start
    return make


#: Algorithms accepted by ``Simulation(algorithm=...)`` and the updater that runs each.
#: An updater is built as ``Updater(sim, kernel)`` and has ``fast`` (the fused kernel or None),
#: ``steps_per_sweep`` (RNG steps per sweep, or None when it varies) and ``advance(sim, n_sweeps)``,
#: which updates ``sim._spins`` and the per-replica counters ``sim.steps``.
UPDATERS = {"metropolis": LocalUpdater, "heatbath": LocalUpdater}
# Wolff's sweep is a fixed number of clusters calibrated in equilibrium (N / <|C|>): from a random
# start the clusters are tiny and such sweeps barely move, so it starts ordered by default.
UPDATERS["wolff"] = _lazy_updater("wolff", "WolffUpdater", default_start="cold")
UPDATERS["swendsen-wang"] = _lazy_updater("swendsen_wang", "SwendsenWangUpdater")
ALGORITHMS = tuple(UPDATERS)


def tau_guess(algorithm: str, L: int) -> float:
    """A rough upper estimate of tau_int(m^2) in sweeps at K_c, to choose thermalisation and spacing.

    Local updates: tau ~ 36 (L/32)^z with z = 2.17 for Metropolis (twice that for the heat bath),
    from the measurements in the README (tools/bench/autocorrelation.py); Wolff and Swendsen-Wang:
    a few sweeps, growing at most like L^0.3. Away from K_c the true times are shorter.
    """
    if algorithm in ("metropolis", "heatbath"):
        return (36.0 if algorithm == "metropolis" else 72.0) * max(L / 32.0, 0.25) ** 2.17
    return 3.0 * max(L / 16.0, 1.0) ** 0.3


def check_size(size, *, even: bool = True, minimum: int = 2) -> tuple[int, int]:
    """Validate ``size`` (int L or pair (Lx, Ly)) and return (Lx, Ly)."""
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        dims = (int(size), int(size))
    elif isinstance(size, (tuple, list)) and len(size) == 2 and all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in size
    ):
        dims = (int(size[0]), int(size[1]))
    else:
        raise TypeError(f"size must be an integer L or a pair (Lx, Ly) of integers, got {size!r}")
    for d in dims:
        if d < minimum:
            raise ValueError(f"size must be at least {minimum} in each direction, got {size!r}")
        if even and d % 2:
            raise ValueError(
                f"size must be even in each direction for the checkerboard decomposition, got {size!r}"
            )
    return dims


def check_beta(beta) -> float:
    """Validate the inverse temperature (finite, > 0); 'critical' means K_c."""
    if isinstance(beta, str):
        if beta.strip().lower() in ("critical", "c", "kc", "beta_c"):
            return BETA_C
        raise ValueError(f"beta must be a positive finite number or 'critical', got {beta!r}")
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real):
        raise TypeError(f"beta must be a positive finite number or 'critical', got {beta!r}")
    beta = float(beta)
    if not math.isfinite(beta) or beta <= 0.0:
        raise ValueError(f"beta must be a positive finite number (beta > 0), got {beta!r}")
    return beta


def check_coupling(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    return float(value)


def check_spins(spins, Lx: int | None = None, Ly: int | None = None, name: str = "spins") -> np.ndarray:
    """Validate an int8 +-1 spin array (any backend); returns it as NumPy for inspection."""
    a = _array.to_numpy(spins)
    if a.dtype != np.int8:
        raise TypeError(f"{name} must have dtype int8 with values +-1, got dtype {a.dtype}")
    if a.ndim < 2:
        raise ValueError(f"{name} must have shape (..., Lx, Ly), got shape {a.shape}")
    if Lx is not None and a.shape[-2:] != (Lx, Ly):
        raise ValueError(f"{name} must have lattice shape ({Lx}, {Ly}), got {a.shape[-2:]}")
    if a.size and not np.all((a == 1) | (a == -1)):
        bad = np.unique(a[(a != 1) & (a != -1)])[:5]
        raise ValueError(f"{name} must contain only +1 and -1, found values {bad.tolist()}")
    return a


def random_start(Lx: int, Ly: int, *, seed: int, streams, xp):
    """Infinite-temperature start: spin +1 iff word k = i*Ly + j of (seed, stream, 0, INIT) < 2**31."""
    w = rng.random_words(Lx * Ly, seed=seed, stream=streams, step=0, purpose=rng.Purpose.INIT, xp=xp)
    s = xp.where(w < xp.asarray(1 << 31, dtype=xp.uint32), xp.asarray(1, dtype=xp.int8), xp.asarray(-1, dtype=xp.int8))
    return xp.reshape(s, (-1, Lx, Ly))


class Simulation:
    """A batch of Ising replicas and a Monte Carlo algorithm.

    Parameters
    ----------
    size : int or (int, int)
        Linear size L (an L x L torus) or (Lx, Ly). Even, >= 2, for the checkerboard algorithms.
    beta : float or "critical"
        Inverse temperature (> 0, finite); ``isingcore.BETA_C`` = ln(1 + sqrt 2)/2 is critical.
    algorithm : str
        One of :data:`ALGORITHMS`.
    seed : int
        Key word 0 of the Philox generator, in [0, 2**32).
    backend : {"numpy", "cupy", "array_api_strict"}
        Where the spins live. ``"cupy"`` needs CuPy and a CUDA device.
    replicas : int
        Number of independent replicas; replica r uses RNG stream ``stream + r``.
    J, h : float
        Coupling and field in H = -J sum_<ij> s_i s_j - h sum_i s_i.
    start : None, "random", "cold" or array
        Initial spins: infinite temperature (from the generator), all +1, or an int8 +-1 array of
        shape (replicas, Lx, Ly) or (Lx, Ly). ``None`` (default) is "cold" for Wolff (whose sweeps
        are a fixed number of clusters calibrated in equilibrium) and "random" otherwise.
    stream : int
        First stream index (chains of an ensemble are told apart by their streams).
    step : int or sequence of int
        Initial value of the RNG update counter, common or one per replica (to continue a chain,
        see :meth:`state`).
    kernel : {"auto", "fast", "reference"}
        ``"auto"`` uses the fused kernel of the backend when there is one; ``"reference"`` the
        array-API code. Both give identical bits.
    """

    def __init__(self, size, beta=BETA_C, algorithm: str = "metropolis", seed: int = 0, backend: str = "numpy",
                 replicas: int = 1, *, J: float = 1.0, h: float = 0.0, start=None, stream: int = 0,
                 step: int = 0, kernel: str = "auto"):
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm={algorithm!r} is not known; allowed values: {', '.join(map(repr, ALGORITHMS))}")
        self.algorithm = algorithm
        self.Lx, self.Ly = check_size(size, even=getattr(UPDATERS[algorithm], "requires_even", True))
        self.beta = check_beta(beta)
        self.J = check_coupling(J, "J")
        self.h = check_coupling(h, "h")
        self.seed = rng.check_seed(seed, "seed")
        stream = rng.check_seed(stream, "stream")
        if isinstance(replicas, bool) or not isinstance(replicas, numbers.Integral) or replicas < 1:
            raise ValueError(f"replicas must be a positive integer, got {replicas!r}")
        self.replicas = int(replicas)
        if stream + self.replicas > 1 << 32:
            raise ValueError("stream + replicas must not exceed 2**32")
        if kernel not in KERNELS:
            raise ValueError(f"kernel={kernel!r} is not known; allowed values: {', '.join(map(repr, KERNELS))}")
        steps = np.asarray(step)
        if steps.dtype == bool or not np.issubdtype(steps.dtype, np.integer) or np.any(steps < 0) or \
                steps.ndim > 1 or (steps.ndim == 1 and steps.shape[0] != self.replicas):
            raise ValueError(f"step must be a non-negative integer or one per replica ({self.replicas}), got {step!r}")
        #: RNG update counter of each replica (int64 NumPy array, host side)
        self.steps = np.broadcast_to(steps.astype(np.int64), (self.replicas,)).copy()
        self.backend = _array.check_backend_name(backend)
        self.xp = _array.namespace(backend)
        self.streams = self.xp.asarray(np.arange(stream, stream + self.replicas, dtype=np.uint32))
        self._updater = UPDATERS[algorithm](self, kernel)
        self.kernel = "fast" if self._updater.fast is not None else "reference"
        if start is None:
            start = getattr(UPDATERS[algorithm], "default_start", "random")
        self._spins = self._initial_spins(start)

    # -- set-up ------------------------------------------------------------------------------
    def _initial_spins(self, start):
        xp = self.xp
        if isinstance(start, str):
            if start == "random":
                return random_start(self.Lx, self.Ly, seed=self.seed, streams=self.streams, xp=xp)
            if start == "cold":
                return xp.ones((self.replicas, self.Lx, self.Ly), dtype=xp.int8)
            raise ValueError(f"start={start!r} is not known; allowed values: 'random', 'cold' or an int8 +-1 array")
        a = check_spins(start, self.Lx, self.Ly, name="start")
        if a.ndim == 2:
            a = np.broadcast_to(a, (self.replicas, self.Lx, self.Ly))
        if a.shape != (self.replicas, self.Lx, self.Ly):
            raise ValueError(f"start must have shape ({self.replicas}, {self.Lx}, {self.Ly}) or ({self.Lx}, {self.Ly}), got {a.shape}")
        # a copy: the fused kernels update the spins in place, the caller's array must stay as it was
        return _array.from_numpy(np.array(a, dtype=np.int8, order="C", copy=True), self.backend)

    # -- state -------------------------------------------------------------------------------
    @property
    def spins(self):
        """The spins, int8 +-1 of shape (replicas, Lx, Ly), on the backend."""
        return self._spins

    @property
    def step(self):
        """The RNG update counter: an int when all replicas share it, else the per-replica array."""
        if np.all(self.steps == self.steps[0]):
            return int(self.steps[0])
        return self.steps.copy()

    @property
    def updater(self):
        """The algorithm's updater (cluster algorithms expose their cluster statistics here)."""
        return self._updater

    @property
    def n_sites(self) -> int:
        return self.Lx * self.Ly

    @property
    def sweeps_done(self) -> float:
        """Sweeps performed since step 0, for algorithms with a fixed number of RNG steps per sweep."""
        per = self._updater.steps_per_sweep
        return float(self.steps[0]) / per if per else float("nan")

    def state(self) -> dict:
        """What is needed to continue these chains exactly: spins (NumPy) and the per-replica steps."""
        return {"spins": _array.to_numpy(self._spins).copy(), "step": self.steps.copy()}

    # -- dynamics ----------------------------------------------------------------------------
    def sweep(self, n: int = 1, progress: bool | None = None) -> "Simulation":
        """Perform ``n`` sweeps.

        A checkerboard or Swendsen-Wang sweep updates every site once; a Wolff sweep is a fixed
        number of single-cluster updates that flip N spins on average
        (:class:`isingcore.mcmc.wolff.WolffUpdater`).

        ``progress``: show a progress bar (default: only for long runs on a terminal).
        """
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
            raise ValueError(f"n must be a non-negative integer number of sweeps, got {n!r}")
        n = int(n)
        if progress is None:
            progress = sys.stderr.isatty() and n * self.n_sites * self.replicas > 50_000_000
        chunk = n if not progress else max(1, n // 100)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=n, unit="sweep", desc=f"{self.algorithm} L={self.Lx}x{self.Ly}")
        done = 0
        while done < n:
            k = min(chunk, n - done)
            self._updater.advance(self, k)
            done += k
            if bar is not None:
                bar.update(k)
        if bar is not None:
            bar.close()
        return self

    # -- observables -------------------------------------------------------------------------
    def energy(self):
        """Energy per site of each replica, e = -(J sum_<ij> s_i s_j + h sum_i s_i)/N (float64, on the backend)."""
        from .measure.observables import energy_per_site

        return energy_per_site(self._spins, J=self.J, h=self.h)

    def magnetization(self):
        """Magnetization per site of each replica, m = sum_i s_i / N (float64, on the backend)."""
        from .measure.observables import magnetization

        return magnetization(self._spins)

    def measure(self) -> dict:
        """All per-configuration observables (see :func:`isingcore.measure.observables.measure`)."""
        from .measure.observables import measure

        return measure(self._spins, J=self.J, h=self.h)

    def __repr__(self) -> str:
        return (f"Simulation(size=({self.Lx}, {self.Ly}), beta={self.beta!r}, algorithm={self.algorithm!r}, "
                f"seed={self.seed}, backend={self.backend!r}, replicas={self.replicas}, J={self.J}, h={self.h}, "
                f"step={self.step}, kernel={self.kernel!r})")
