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

import os as _os
from importlib.metadata import PackageNotFoundError, version as _version


def _source_checkout_path() -> None:
    """Let ``isingcore.backends`` and ``isingcore.models_onnx`` resolve in a source checkout.

    In the repository, ``backends/`` and ``models_onnx/`` stand beside ``isingcore/``; installation
    maps them to ``isingcore.backends`` and ``isingcore.models_onnx`` (pyproject ``package-dir``).
    When the package is imported straight from a checkout (``python -m isingcore`` in the
    repository root puts the checkout first on ``sys.path``), the checkout joins the package path
    so that the same names resolve to the same files.
    """
    here = _os.path.dirname(_os.path.abspath(__file__))
    root = _os.path.dirname(here)
    if not _os.path.isdir(_os.path.join(here, "backends")) and _os.path.isfile(
            _os.path.join(root, "backends", "__init__.py")) and _os.path.isfile(_os.path.join(root, "pyproject.toml")):
        __path__.append(root)  # noqa: F821 - the package's own __path__


_source_checkout_path()

from .constants import BETA_C, K_C  # noqa: E402

try:
    __version__ = _version("isingcore")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

_LAZY = {
    "Simulation": ("isingcore.simulation", "Simulation"),
    "ALGORITHMS": ("isingcore.simulation", "ALGORITHMS"),
    "BackendUnavailableError": ("isingcore._array", "BackendUnavailableError"),
    "MultilevelSampler": ("isingcore.multilevel", "MultilevelSampler"),
}
_SUBMODULES = {"random", "mcmc", "exact", "measure", "io", "constants", "simulation", "cli", "multilevel", "rg"}


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


__all__ = ["BETA_C", "K_C", "Simulation", "ALGORITHMS", "MultilevelSampler", "BackendUnavailableError", "__version__"]
