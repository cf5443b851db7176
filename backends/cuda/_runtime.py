"""Whether the Numba-CUDA kernels can run here; importing this module raises ImportError if not.

The kernel modules (``local``, ``wolff``, ``swendsen_wang``) import ``cuda`` and ``SIMULATOR`` from
here, so a machine without numba-cuda or without a CUDA device sees one ImportError, which
:func:`isingcore._array.fast_kernel` turns into "use the array-API reference". Under the CUDA
simulator (``NUMBA_ENABLE_CUDASIM=1``) the kernels run on the CPU.
"""

try:
    from numba import cuda
    from numba.cuda.core import config as _cuda_config
except Exception as exc:  # numba-cuda missing or broken (any failure means: not usable here)
    raise ImportError(f"isingcore's CUDA kernels need numba-cuda (pip install numba-cuda): {exc}") from exc

#: True when the kernels run under the Numba CUDA simulator
SIMULATOR = bool(_cuda_config.ENABLE_CUDASIM)
if getattr(cuda, "implementation", "") == "Built-in":  # pragma: no cover - numba without numba-cuda
    raise ImportError("isingcore's CUDA kernels need numba-cuda, not Numba's deprecated built-in CUDA target")
if not SIMULATOR:
    try:
        _available = cuda.is_available()
    except Exception as exc:  # pragma: no cover - driver problems
        raise ImportError(f"numba.cuda cannot use a CUDA device here: {exc}") from exc
    if not _available:
        raise ImportError("numba.cuda finds no usable CUDA driver/device (numba.cuda.is_available() is False)")



def configure(kernel, grid, block, stream):
    """``kernel[grid, block, stream]`` without Numba's low-occupancy warning (small lattices are fine)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*under-utilization.*")
        if SIMULATOR:
            return kernel[grid, block]
        return kernel[grid, block, stream]


def check_spin_batch(spins) -> tuple[int, int, int]:
    """(R, Lx, Ly) of an int8 spin batch; errors name the parameter (shared by the kernel modules)."""
    import numpy as np

    if len(spins.shape) != 3:
        raise ValueError(f"spins must have shape (replicas, Lx, Ly), got {spins.shape}")
    if np.dtype(spins.dtype) != np.int8:
        raise TypeError(f"spins must have dtype int8, got {spins.dtype}")
    return tuple(int(v) for v in spins.shape)


def is_cupy(x) -> bool:
    """Whether ``x`` is a CuPy array (checked without importing CuPy)."""
    return type(x).__module__.split(".")[0] == "cupy"


__all__ = ["cuda", "SIMULATOR", "configure", "check_spin_batch", "is_cupy"]
