"""The Numba-CUDA kernels (``isingcore.backends.cuda``) against the array-API reference.

* ``cudasim``: the kernels run under the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) in *one*
  subprocess (the variable must be set before Numba is imported, and this process must stay
  unaffected); its outputs are compared here with :mod:`isingcore.mcmc.local` and
  :func:`isingcore.random.philox_reference_scalar`, computed in this process.
* ``gpu``: CuPy on a real device, bit for bit against the NumPy backend (skipped without one).
* a compile check: the kernels lowered to PTX for sm_90 contain no float64 and use 32-bit
  multiplies for Philox (skipped where NVVM/NVRTC are not installed).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest
from cuda_testing import assert_import_is_importerror_without_device, compile_ptx

import array_api_compat.numpy as xnp
from isingcore import random as rng
from isingcore.mcmc import local as ref

SEED = 2718
BETA = 0.41
H = 0.3
# (replicas, Lx, Ly): Ly/2 = 3 and 5 (groups straddle rows, partial last group for 6x10), 4 and 8
# (packed uint32 path, one and two words per row), 6 (straddling, Lx*Ly/2 divisible by 4)
SHAPES = [(2, 4, 6), (1, 6, 10), (3, 8, 8), (1, 4, 12), (2, 6, 16)]
ALGORITHMS = ["metropolis", "heatbath"]
METHODS = ["grid", "block"]
STEPS = [0, 2**32 - 1]  # the second crosses into the high counter word (steps 2**32 - 1, 2**32, 2**32 + 1)
N_HALF = 3
STREAM0 = 5

SIM_CASES = [(s, a, m, t) for s in SHAPES for a in ALGORITHMS for m in METHODS for t in STEPS]
KAT = [  # Random123 known-answer vectors for Philox4x32-10
    ((0, 0, 0, 0), (0, 0)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0)),
]


def start_spins(shape, key):
    rs = np.random.default_rng(key)
    return np.where(rs.random(shape) < 0.5, 1, -1).astype(np.int8)


def case_id(case) -> str:
    shape, alg, method, step = case
    return f"{'x'.join(map(str, shape))}-{alg}-{method}-step{step}"


SIM_SCRIPT = textwrap.dedent(
    r"""
    import json, sys, warnings
    import numpy as np
    warnings.simplefilter("ignore")  # the simulator warns about itself; nothing here is about that
    from numba.cuda.core import config
    assert config.ENABLE_CUDASIM, "the simulator is not enabled"
    from isingcore.backends.cuda import local, philox
    from isingcore.mcmc.local import flip_thresholds

    job = json.load(open(sys.argv[1]))
    out = {"simulator": local.SIMULATOR}

    ctr = np.array(job["philox_ctr"], dtype=np.uint32)
    key = np.array(job["philox_key"], dtype=np.uint32)
    out["philox"] = philox.philox(ctr, key).tolist()

    for c in job["cases"]:
        spins = np.array(c["spins"], dtype=np.int8)
        thr = flip_thresholds(c["alg"], job["beta"], 1.0, job["h"])
        streams = np.arange(job["stream0"], job["stream0"] + spins.shape[0], dtype=np.uint32)
        if c.get("max_grid_y"):
            local.MAX_GRID_Y = c["max_grid_y"]
        res = local.checkerboard_sweeps(spins, c["n_half"], step=c["step"], thresholds=thr, seed=job["seed"],
                                        streams=streams, method=c["method"])
        local.MAX_GRID_Y = 65535
        out[c["id"]] = {"spins": res.tolist(), "in_place": res is spins}

    # split / merge round trip
    s = np.array(job["split_spins"], dtype=np.int8)
    a, b = local.split_sublattices(s)
    back = local.merge_sublattices(a, b, np.zeros_like(s))
    out["split"] = {"a": a.tolist(), "b": b.tolist(), "back": back.tolist()}
    print(json.dumps(out))
    """
)


def sim_case_spec(case):
    shape, alg, method, step = case
    return {"id": case_id(case), "alg": alg, "method": method, "step": step, "n_half": N_HALF,
            "spins": start_spins(shape, zlib.crc32(case_id(case).encode())).tolist()}


EXTRA_CASES = {
    # more half-steps and a high step, packed and generic
    "long-packed": ((1, 4, 8), "metropolis", "grid", 2**40 + 5, 6),
    "long-generic": ((1, 4, 6), "heatbath", "block", 2**40 + 5, 6),
    # replicas beyond the grid's y extent: the kernel loops over replicas
    "grid-y-loop": ((5, 4, 8), "heatbath", "grid", 11, 3),
    "grid-y-loop-generic": ((5, 4, 6), "metropolis", "grid", 11, 3),
}


@pytest.fixture(scope="module")
def sim_results(tmp_path_factory):
    """Run every simulator case in one subprocess; returns (job, results)."""
    if importlib.util.find_spec("numba_cuda") is None:
        pytest.skip("numba-cuda is not installed (pip install numba-cuda; no GPU needed for the simulator)")
    tmp = tmp_path_factory.mktemp("cudasim")
    rs = np.random.default_rng(7)
    rand_ctr = rs.integers(0, 2**32, size=(20, 4), dtype=np.uint64)
    rand_key = rs.integers(0, 2**32, size=(20, 2), dtype=np.uint64)
    cases = [sim_case_spec(c) for c in SIM_CASES]
    for name, (shape, alg, method, step, n_half) in EXTRA_CASES.items():
        cases.append({"id": name, "alg": alg, "method": method, "step": step, "n_half": n_half,
                      "spins": start_spins(shape, len(name)).tolist(),
                      "max_grid_y": 2 if "grid-y" in name else None})
    job = {
        "seed": SEED, "beta": BETA, "h": H, "stream0": STREAM0, "cases": cases,
        "philox_ctr": [list(c) for c, _ in KAT] + rand_ctr.tolist(),
        "philox_key": [list(k) for _, k in KAT] + rand_key.tolist(),
        "split_spins": start_spins((2, 4, 6), 3).tolist(),
    }
    job_file = tmp / "job.json"
    job_file.write_text(json.dumps(job))
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-c", SIM_SCRIPT, str(job_file)], capture_output=True, text=True,
                          env=env, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"simulator subprocess failed:\n{proc.stderr[-4000:]}")
    return job, json.loads(proc.stdout.strip().splitlines()[-1])


def reference(spins, alg, step, n_half):
    thr = ref.flip_thresholds(alg, BETA, 1.0, H)
    streams = np.arange(STREAM0, STREAM0 + spins.shape[0], dtype=np.uint32)
    out = ref.checkerboard_sweeps(xnp.asarray(spins), n_half, step=step, thresholds=thr, seed=SEED,
                                  streams=streams, xp=xnp)
    return np.asarray(out)


# ------------------------------------------------------------------------------------------
# simulator
# ------------------------------------------------------------------------------------------
@pytest.mark.cudasim
def test_simulator_was_used(sim_results):
    _, res = sim_results
    assert res["simulator"] is True


@pytest.mark.cudasim
def test_philox_known_answers(sim_results):
    _, res = sim_results
    got = res["philox"]
    assert [f"{w:08x}" for w in got[0]] == ["6627e8d5", "e169c58d", "bc57ac4c", "9b00dbd8"]
    assert [f"{w:08x}" for w in got[1]] == ["408f276d", "41c83b0e", "a20bc7c6", "6d5451fd"]
    for n, (ctr, key) in enumerate(KAT):
        assert tuple(got[n]) == rng.philox_reference_scalar(ctr, key)


@pytest.mark.cudasim
def test_philox_random_counters(sim_results):
    job, res = sim_results
    ctr = np.array(job["philox_ctr"], dtype=np.uint64)
    key = np.array(job["philox_key"], dtype=np.uint64)
    for n in range(len(KAT), ctr.shape[0]):
        assert tuple(res["philox"][n]) == rng.philox_reference_scalar(tuple(map(int, ctr[n])), tuple(map(int, key[n])))


@pytest.mark.cudasim
@pytest.mark.parametrize("case", SIM_CASES, ids=case_id)
def test_sweeps_match_reference(sim_results, case):
    job, res = sim_results
    shape, alg, method, step = case
    spec = next(c for c in job["cases"] if c["id"] == case_id(case))
    start = np.array(spec["spins"], dtype=np.int8)
    got = np.array(res[case_id(case)]["spins"], dtype=np.int8)
    want = reference(start, alg, step, N_HALF)
    assert got.shape == shape
    assert not np.array_equal(want, start), "the reference moved no spin: the case tests nothing"
    np.testing.assert_array_equal(got, want)
    assert res[case_id(case)]["in_place"] is True


@pytest.mark.cudasim
@pytest.mark.parametrize("name", sorted(EXTRA_CASES))
def test_sweeps_extra_cases(sim_results, name):
    job, res = sim_results
    shape, alg, method, step, n_half = EXTRA_CASES[name]
    spec = next(c for c in job["cases"] if c["id"] == name)
    start = np.array(spec["spins"], dtype=np.int8)
    np.testing.assert_array_equal(np.array(res[name]["spins"], dtype=np.int8), reference(start, alg, step, n_half))


@pytest.mark.cudasim
def test_split_merge(sim_results):
    job, res = sim_results
    s = np.array(job["split_spins"], dtype=np.int8)
    R, Lx, Ly = s.shape
    a, b = np.array(res["split"]["a"]), np.array(res["split"]["b"])
    for i in range(Lx):
        for m in range(Ly // 2):
            np.testing.assert_array_equal(a[:, i, m], s[:, i, 2 * m + (i & 1)])  # colour 0: (i + j) even
            np.testing.assert_array_equal(b[:, i, m], s[:, i, 2 * m + 1 - (i & 1)])
    np.testing.assert_array_equal(np.array(res["split"]["back"]), s)


# ------------------------------------------------------------------------------------------
# import behaviour and compilation (no device needed)
# ------------------------------------------------------------------------------------------
def test_import_without_device_is_importerror():
    """Simulation detects a missing CUDA setup by ImportError; any other exception would escape it."""
    assert_import_is_importerror_without_device("isingcore.backends.cuda.local")
    import isingcore.backends.cuda  # the package itself stays importable  # noqa: F401


PTX_SIGS = r"""
    from isingcore.backends.cuda import local as G
    i8, u32a, i64, u32 = T.int8[::1], T.uint32[::1], T.int64, T.uint32
    thr = T.int64[::1]
    sigs = {
        "grid_packed": (G._grid_packed, (u32a, u32a, i64, i64, i64, thr, u32, u32a, u32, u32, i64)),
        "grid_generic": (G._grid_generic, (i8, i8, i64, i64, i64, thr, u32, u32a, u32, u32, i64)),
        "block_packed": (G._block_packed, (u32a, u32a, i64, i64, i64, thr, u32, u32a, T.uint64, i64)),
        "block_generic": (G._block_generic, (i8, i8, i64, i64, i64, thr, u32, u32a, T.uint64, i64)),
        "split": (G._split_kernel, (i8, i8, i8, i64)),
        "merge": (G._merge_kernel, (i8, i8, i8, i64)),
    }
    """


def test_kernels_compile_without_float64():
    """Lower every kernel to PTX (sm_90): no float64 (the uint64/int64 pitfall), 32-bit Philox multiplies."""
    res = compile_ptx(PTX_SIGS)
    for name, ptx in res.items():
        assert ".f64" not in ptx, f"{name}: float64 in the kernel"
        if name.startswith(("grid", "block")):
            assert ptx.count("mul.hi.u32") >= 20, f"{name}: Philox does not use 32-bit high multiplies"


# ------------------------------------------------------------------------------------------
# real GPU
# ------------------------------------------------------------------------------------------
def _need_gpu():
    pytest.importorskip("cupy")
    from isingcore import _array

    ok, why = _array.cupy_status()
    if not ok:
        pytest.skip(why)
    try:
        from isingcore.backends.cuda import local
    except ImportError as exc:
        pytest.skip(f"numba-cuda kernels not usable: {exc}")
    return local


@pytest.mark.gpu
@pytest.mark.parametrize("L", [64, 256])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_gpu_simulation_matches_numpy(L, algorithm):
    _need_gpu()
    import isingcore

    kw = dict(size=L, beta=BETA, algorithm=algorithm, seed=SEED, replicas=4, h=0.05, stream=3, step=2**32 - 3)
    gpu = isingcore.Simulation(backend="cupy", **kw)
    cpu = isingcore.Simulation(backend="numpy", **kw)
    assert gpu.kernel == "fast"
    for n in (1, 3):
        gpu.sweep(n)
        cpu.sweep(n)
        np.testing.assert_array_equal(gpu.spins.get(), cpu.spins)
    assert gpu.step == cpu.step


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(3, 16, 12), (2, 32, 40), (1, 130, 72), (2, 64, 64)])
@pytest.mark.parametrize("method", METHODS)
def test_gpu_kernel_matches_reference(shape, method):
    local = _need_gpu()
    import cupy

    spins = start_spins(shape, 11)
    thr = ref.flip_thresholds("metropolis", BETA, 1.0, H)
    streams = np.arange(STREAM0, STREAM0 + shape[0], dtype=np.uint32)
    want = ref.checkerboard_sweeps(spins.copy(), 5, step=2**32 - 2, thresholds=thr, seed=SEED, streams=streams, xp=xnp)
    d = cupy.asarray(spins)
    out = local.checkerboard_sweeps(d, 5, step=2**32 - 2, thresholds=cupy.asarray(thr), seed=SEED,
                                    streams=cupy.asarray(streams), method=method)
    assert isinstance(out, cupy.ndarray)
    np.testing.assert_array_equal(out.get(), np.asarray(want))
    # NumPy in, NumPy out (copied through the device)
    np.testing.assert_array_equal(
        local.checkerboard_sweeps(spins.copy(), 5, step=2**32 - 2, thresholds=thr, seed=SEED, streams=streams,
                                  method=method), np.asarray(want))


@pytest.mark.gpu
def test_gpu_non_default_stream():
    local = _need_gpu()
    import cupy

    spins = start_spins((2, 64, 64), 5)
    thr = ref.flip_thresholds("heatbath", BETA, 1.0, H)
    streams = np.arange(2, dtype=np.uint32)
    want = np.asarray(ref.checkerboard_sweeps(spins.copy(), 4, step=9, thresholds=thr, seed=SEED, streams=streams, xp=xnp))
    with cupy.cuda.Stream(non_blocking=True) as s:
        out = local.checkerboard_sweeps(cupy.asarray(spins), 4, step=9, thresholds=thr, seed=SEED,
                                        streams=cupy.asarray(streams), method="grid")
        s.synchronize()
    np.testing.assert_array_equal(out.get(), want)
