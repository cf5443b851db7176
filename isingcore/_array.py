"""The one module that knows backend quirks.

Everything else in :mod:`isingcore` is written against the Python array API standard and asks
this module for a namespace, a conversion to NumPy, or a check that a backend is usable.
Backends by name:

``"numpy"``
    ``array_api_compat.numpy`` (NumPy arrays, CPU). Fused kernels: Numba.
``"cupy"``
    ``array_api_compat.cupy`` (CuPy arrays on the current CUDA device). Fused kernels: Numba-CUDA.
``"array_api_strict"``
    The strict reference namespace, used by the tests to catch NumPy-only calls. Reference
    implementations only (no fused kernels).
"""

from __future__ import annotations

import functools
import importlib.util
from typing import Any

import numpy as np

BACKENDS = ("numpy", "cupy", "array_api_strict")


class BackendUnavailableError(RuntimeError):
    """A requested backend is known but cannot run here (package or device missing)."""


def check_backend_name(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not supported; allowed values: {', '.join(map(repr, BACKENDS))}")
    return backend


@functools.lru_cache(maxsize=None)
def cupy_status() -> tuple[bool, str]:
    """Return ``(usable, reason)`` for the CuPy backend without raising."""
    if importlib.util.find_spec("cupy") is None:
        return False, "CuPy is not installed (pip install 'isingcore[cuda]')"
    try:
        import cupy

        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # pragma: no cover - depends on the machine
        return False, f"CuPy is installed but no CUDA device is usable ({type(exc).__name__}: {exc})"
    if n < 1:  # pragma: no cover
        return False, "CuPy is installed but no CUDA device was found"
    return True, f"{n} CUDA device(s)"


def namespace(backend: str = "numpy"):
    """Array namespace for ``backend`` (raises with the parameter name on bad input)."""
    check_backend_name(backend)
    if backend == "numpy":
        import array_api_compat.numpy as xp

        return xp
    if backend == "cupy":
        ok, why = cupy_status()
        if not ok:
            raise BackendUnavailableError(f"backend='cupy' is not usable here: {why}")
        import array_api_compat.cupy as xp

        return xp
    try:
        import array_api_strict as xp
    except ImportError as exc:  # pragma: no cover
        raise BackendUnavailableError("backend='array_api_strict' needs the array-api-strict package") from exc
    return xp


def get_namespace(*arrays: Any):
    """Namespace of the given arrays (array_api_compat wrapper for NumPy and CuPy)."""
    from array_api_compat import array_namespace

    return array_namespace(*arrays)


def backend_of(x: Any) -> str:
    """Backend name of an array."""
    from array_api_compat import is_cupy_array, is_numpy_array

    if is_numpy_array(x):
        return "numpy"
    if is_cupy_array(x):
        return "cupy"
    mod = type(x).__module__
    if mod.startswith("array_api_strict"):
        return "array_api_strict"
    raise TypeError(f"unsupported array type {type(x).__name__}; expected a NumPy, CuPy or array-api-strict array")


def to_numpy(x: Any) -> np.ndarray:
    """Copy (or view) any supported array as a NumPy array on the host."""
    if isinstance(x, np.ndarray):
        return x
    b = backend_of(x) if not np.isscalar(x) else "numpy"
    if b == "cupy":
        return x.get()
    if b == "array_api_strict":
        import array_api_strict as xps

        # array-api-strict supports the buffer protocol on the CPU device
        return np.asarray(xps.asarray(x, copy=True)._array)  # noqa: SLF001 - documented test backend
    return np.asarray(x)


def from_numpy(a: np.ndarray, backend: str):
    """Move a NumPy array to ``backend``."""
    xp = namespace(backend)
    if backend == "numpy":
        return np.asarray(a)
    return xp.asarray(a)


def synchronize(x: Any) -> None:
    """Wait for pending device work on ``x`` (no-op on the CPU)."""
    if backend_of(x) == "cupy":  # pragma: no cover - GPU only
        import cupy

        cupy.cuda.get_current_stream().synchronize()


def fast_kernel(backend: str, kernel: str, module: str, name: str):
    """The fused kernel for ``backend``, or None when the array-API reference should run.

    Looks up ``isingcore.backends.numba_cpu.<module>.<name>`` for NumPy and
    ``isingcore.backends.cuda.<module>.<name>`` for CuPy (None if numba-cuda cannot run there).
    ``kernel`` is "auto", "fast" (an error if there is no fused kernel) or "reference".
    """
    import importlib

    if kernel == "reference" or backend == "array_api_strict":
        if kernel == "fast":
            raise ValueError(f"kernel='fast' is not available on backend={backend!r}")
        return None
    target = "numba_cpu" if backend == "numpy" else "cuda"
    try:
        mod = importlib.import_module(f"isingcore.backends.{target}.{module}")
    except ImportError as exc:
        if backend == "numpy" or kernel == "fast":
            raise BackendUnavailableError(
                f"kernel='fast' on backend={backend!r} needs the {target} kernels ({exc}); use kernel='reference'"
            ) from exc
        return None
    return getattr(mod, name)
