"""Shared helpers for tests that run one body on every array backend (NumPy, array-api-strict, CuPy).

The ``backend`` fixture (parametrised over :data:`BACKENDS`) is in ``conftest.py``.
"""

import numpy as np
import pytest

from isingcore._array import cupy_status, namespace, to_numpy

BACKENDS = [
    "numpy",
    "array_api_strict",
    pytest.param("cupy", marks=[pytest.mark.gpu, pytest.mark.skipif(not cupy_status()[0], reason=cupy_status()[1])]),
]


def on(backend, a):
    """NumPy array -> array of the backend."""
    xp = namespace(backend)
    return np.asarray(a) if backend == "numpy" else xp.asarray(a)


def as_np(x):
    """Any backend's array -> float64 NumPy array."""
    return np.asarray(to_numpy(x), dtype=np.float64)
