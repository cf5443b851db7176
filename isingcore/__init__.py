"""isingcore: equilibrium configurations of the 2D Ising model, above all at the critical point.

Public names (heavy modules are imported lazily, on first use)::

    import isingcore
    sim = isingcore.Simulation(size=64, beta=isingcore.BETA_C, algorithm="metropolis", seed=1)
    sim.sweep(100)
    sim.energy(), sim.magnetization()

Subpackages: :mod:`isingcore.random` (Philox4x32-10), :mod:`isingcore.mcmc` (samplers),
:mod:`isingcore.exact` (Onsager, Kaufman), :mod:`isingcore.measure` (observables and errors),
:mod:`isingcore.io` (HDF5 ensembles).
"""

from importlib.metadata import PackageNotFoundError, version as _version

from .constants import BETA_C, K_C

try:
    __version__ = _version("isingcore")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

_LAZY = {
    "Simulation": ("isingcore.simulation", "Simulation"),
    "ALGORITHMS": ("isingcore.simulation", "ALGORITHMS"),
    "BackendUnavailableError": ("isingcore._array", "BackendUnavailableError"),
}
_SUBMODULES = {"random", "mcmc", "exact", "measure", "io", "constants", "simulation", "cli"}


def __getattr__(name):
    import importlib

    if name in _LAZY:
        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(mod), attr)
    if name in _SUBMODULES:
        return importlib.import_module(f"isingcore.{name}")
    raise AttributeError(f"module 'isingcore' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY) + list(_SUBMODULES))


__all__ = ["BETA_C", "K_C", "Simulation", "ALGORITHMS", "BackendUnavailableError", "__version__"]
