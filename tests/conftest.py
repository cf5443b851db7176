import os

import pytest
from backend_testing import BACKENDS
from hypothesis import HealthCheck, settings

settings.register_profile(
    "isingcore",
    deadline=None,  # Numba compiles on first call
    suppress_health_check=[HealthCheck.too_slow],
    max_examples=int(os.environ.get("ISINGCORE_HYPOTHESIS_EXAMPLES", "40")),
)
settings.load_profile("isingcore")


@pytest.fixture(params=BACKENDS)
def backend(request):
    """The name of an array backend; tests using it run once per backend (backend_testing.BACKENDS)."""
    return request.param


def _cupy_usable():
    from isingcore._array import cupy_status

    return cupy_status()[0]


def pytest_collection_modifyitems(config, items):
    skip_gpu = None
    for item in items:
        if "gpu" in item.keywords:
            if skip_gpu is None:
                ok = _cupy_usable()
                skip_gpu = pytest.mark.skip(reason="needs CuPy and a CUDA device") if not ok else False
            if skip_gpu:
                item.add_marker(skip_gpu)
