"""Helpers shared by the CUDA kernel tests: offline PTX compilation and the no-device import check."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

_PTX_HEADER = """
import json, warnings
warnings.simplefilter("ignore")
from numba import cuda, types as T
cuda.is_available = lambda: True  # compile only: no device needed
"""

_PTX_FOOTER = """
out = {}
for name, (k, sig) in sigs.items():
    try:
        out[name], _ = cuda.compile_ptx(k.py_func, sig, cc=(9, 0))
    except Exception as exc:
        msg = f"{type(exc).__name__}: {exc}"
        if any(s in msg.lower() for s in ("nvvm", "nvrtc", "libdevice", "dynamiclibnotfound")):
            print(json.dumps({"skip": msg[:300]}))
            raise SystemExit(0)
        raise
print(json.dumps(out))
"""


# Preamble of the CUDA-simulator statistics scripts (run with NUMBA_ENABLE_CUDASIM=1; argv: K, replicas,
# thermalisation and measured updates on the 8x8 torus).
SIMULATOR_L8_PREAMBLE = """
import json, sys, time, warnings
sys.setswitchinterval(5e-4)  # simulated threads wait on each other: quick GIL hand-overs run ~3x faster
import numpy as np
warnings.simplefilter("ignore")
from numba.cuda.core import config
assert config.ENABLE_CUDASIM, "the simulator is not enabled"
from isingcore.measure.observables import energy_per_site, magnetization

L, K, R, n_therm, n_meas = 8, float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
"""


def compile_ptx(sigs_code: str) -> dict:
    """Lower kernels to PTX for sm_90 in a subprocess (no simulator, no device needed).

    ``sigs_code`` imports the kernel module and defines ``sigs``: name -> (kernel, signature).
    Returns name -> PTX text; skips the test where numba-cuda or NVVM/NVRTC is missing.
    """
    script = _PTX_HEADER + textwrap.dedent(sigs_code) + _PTX_FOOTER
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        if "ImportError" in proc.stderr or "ModuleNotFoundError" in proc.stderr:
            pytest.skip(f"numba-cuda is not usable here: {proc.stderr.strip().splitlines()[-1]}")
        pytest.fail(proc.stderr[-4000:])
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    if "skip" in res:
        pytest.skip(f"no NVVM/NVRTC to compile with: {res['skip']}")
    return res


def assert_import_is_importerror_without_device(module: str) -> None:
    """Without a CUDA device, importing a kernel module raises ImportError (how Simulation falls back)."""
    try:
        from numba import cuda
    except ImportError:
        cuda = None
    if cuda is not None and cuda.is_available():
        pytest.skip("a CUDA device is available here")
    sys.modules.pop(module, None)
    with pytest.raises(ImportError):
        __import__(module)
