"""CUDA kernels on tiles of a larger lattice (global offsets), under the Numba CUDA simulator.

The local-update (refinement) kernel and the upscale-sampling kernel of
``isingcore.backends.cuda`` take a tile's global offset and the global size, with the semantics
of the Numba CPU kernels (``isingcore.backends.numba_cpu``): colour and Philox word of a site are
those of its *global* site. Checked on tiny lattices, for odd and even offsets, tiles that wrap
around the torus, odd tile heights, both kernel families ("grid", "block") and two replicas:

* a tile computed on the "GPU" equals the CPU kernel's output for the same tile, *all* of it,
  the halo spoiled by the locally periodic neighbours included;
* its interior equals the untiled CUDA result (which equals the untiled CPU result).

All simulator work runs in one subprocess (``NUMBA_ENABLE_CUDASIM`` must be set before Numba is
imported); the CPU references are computed here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from isingcore import random as rng
from isingcore.backends.numba_cpu import local as cpu_local
from isingcore.backends.numba_cpu import upscale as cpu_up
from isingcore.mcmc import local

pytestmark = pytest.mark.cudasim

SEED = 11
STEP = (3 << 32) + 5  # a refinement step: stage 3, half-sweep 5 (the high counter word is used)
N_HALF = 3
H = N_HALF  # halo: the outermost n rows/columns are spoiled after n half-sweeps
REFINE = int(rng.Purpose.REFINE)
UPSCALE = int(rng.Purpose.UPSCALE)
STREAMS = [7, 2]
GLOBAL = (8, 12)  # global lattice (even sizes)
# (x0, y0, rows, columns) of tile interiors; the tile handed to the kernel has H more on each side
# (offsets x0 - H, y0 - H: odd and even, negative ones wrap); columns + 2H must be even
LOCAL_TILES = [(0, 0, 4, 4), (1, 2, 3, 6), (5, 7, 4, 2), (6, 10, 2, 4), (3, 3, 5, 8), (0, 0, 8, 12)]
METHODS = ["grid", "block"]
# sampling: b = 2, coarse 6 x 8 -> fine 12 x 16; (X0, Y0, rows, columns), X0, Y0 multiples of b;
# rows x0 .. of the field band, skip rows skipped
B = 2
COARSE = (6, 8)
SAMPLE_TILES = [(0, 0, 4, 6), (4, 6, 8, 6), (10, 2, 2, 10), (2, 4, 6, 12), (6, 0, 6, 16)]
KINDS = [(0, 0.0), (1, 0.8)]  # logit; mean with clamp


def _lattice(shape, key):
    rs = np.random.default_rng(key)
    return np.where(rs.random(shape) < 0.5, 1, -1).astype(np.int8)


def _tile_of(s, x0, y0, tx, ty):
    gLx, gLy = s.shape[1:]
    ri = np.arange(x0 - H, x0 + tx + H) % gLx
    ci = np.arange(y0 - H, y0 + ty + H) % gLy
    return np.ascontiguousarray(s[:, ri][:, :, ci])


SIM_SCRIPT = textwrap.dedent(
    r"""
    import json, sys, warnings
    import numpy as np
    warnings.simplefilter("ignore")
    from numba.cuda.core import config
    assert config.ENABLE_CUDASIM, "the simulator is not enabled"
    from isingcore.backends.cuda import local, upscale

    job = json.load(open(sys.argv[1]))
    out = {"simulator": local.SIMULATOR, "local": {}, "sample": {}}
    thr = np.array(job["thr"], dtype=np.int64)
    streams = np.array(job["streams"], dtype=np.uint32)
    for c in job["local"]:
        spins = np.array(c["spins"], dtype=np.int8)
        kw = dict(step=job["step"], thresholds=thr, seed=job["seed"], streams=streams, method=c["method"],
                  purpose=job["refine"])
        if c["offset"] is not None:
            kw.update(offset=c["offset"], global_shape=c["global_shape"])
        res = local.checkerboard_sweeps(spins, job["n_half"], **kw)
        out["local"][c["id"]] = res.tolist()
    for c in job["sample"]:
        field = np.array(c["field"], dtype=np.float32)
        coarse = np.array(c["coarse"], dtype=np.int8)
        fine = np.zeros(c["fine_shape"], np.int8)
        bad = np.zeros(1, np.int64)
        kw = dict(n0=0, x0=c["x0"], skip=c["skip"], b=job["b"], kind=c["kind"], clamp=c["clamp"], seed=job["seed"],
                  streams=streams, step=2, purpose=job["upscale"], bad=bad)
        if c["offset"] is not None:
            kw.update(offset=c["offset"], global_ly=c["global_ly"])
        upscale.sample_rows(field, coarse, fine, **kw)
        out["sample"][c["id"]] = {"fine": fine.tolist(), "bad": int(bad[0])}
    try:
        local.checkerboard_sweeps(np.ones((1, 4, 4), np.int8), 1, step=0, thresholds=thr, seed=1,
                                  streams=streams[:1], offset=(1, 0), global_shape=(5, 8))
        out["odd_global"] = None
    except ValueError as exc:
        out["odd_global"] = str(exc)
    print(json.dumps(out))
    """
)


def _local_cases():
    s = _lattice((len(STREAMS),) + GLOBAL, 1)
    cases = [{"id": f"untiled-{m}", "method": m, "spins": s.tolist(), "offset": None} for m in METHODS]
    for (x0, y0, tx, ty) in LOCAL_TILES:
        t = _tile_of(s, x0, y0, tx, ty)
        for m in METHODS:
            cases.append({"id": f"tile-{x0}-{y0}-{tx}x{ty}-{m}", "method": m, "spins": t.tolist(),
                          "offset": [x0 - H, y0 - H], "global_shape": list(GLOBAL), "tile": [x0, y0, tx, ty]})
    return s, cases


def _sample_inputs():
    rs = np.random.default_rng(5)
    N = len(STREAMS)
    coarse = rs.choice(np.array([-1, 1], np.int8), size=(N,) + COARSE)
    field = (2.0 * rs.normal(size=(N, B * COARSE[0], B * COARSE[1]))).astype(np.float32)
    return coarse, field


def _sample_cases():
    coarse, field = _sample_inputs()
    Lx, Ly = B * COARSE[0], B * COARSE[1]
    cases = []
    for kind, clamp in KINDS:
        cases.append({"id": f"untiled-k{kind}", "kind": kind, "clamp": clamp, "field": field.tolist(),
                      "coarse": coarse.tolist(), "fine_shape": [len(STREAMS), Lx, Ly], "x0": 0, "skip": 0,
                      "offset": None})
        for (X, Y, h, w) in SAMPLE_TILES:
            sub_c = coarse[:, X // B:(X + h) // B, Y // B:(Y + w) // B]
            # a band of the tile's rows: field rows x0 .. x0 + Hb - 1 of the tile, the first `skip` skipped
            for x0, skip in ((0, 0), (2, 1)):
                if x0 + skip >= h:
                    continue
                cases.append({"id": f"tile-{X}-{Y}-{h}x{w}-x{x0}s{skip}-k{kind}", "kind": kind, "clamp": clamp,
                              "field": field[:, X + x0:X + h, Y:Y + w].tolist(), "coarse": sub_c.tolist(),
                              "fine_shape": [len(STREAMS), h, w], "x0": x0, "skip": skip, "offset": [X, Y],
                              "global_ly": Ly, "tile": [X, Y, h, w]})
    return cases


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    if importlib.util.find_spec("numba_cuda") is None:
        pytest.skip("numba-cuda is not installed (pip install numba-cuda; no GPU needed for the simulator)")
    s, lcases = _local_cases()
    job = {"seed": SEED, "step": STEP, "n_half": N_HALF, "refine": REFINE, "upscale": UPSCALE, "b": B,
           "thr": local.flip_thresholds("metropolis", 0.44).tolist(), "streams": STREAMS,
           "local": lcases, "sample": _sample_cases()}
    path = tmp_path_factory.mktemp("cudasim_tiles") / "job.json"
    path.write_text(json.dumps(job))
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-c", SIM_SCRIPT, str(path)], capture_output=True, text=True, env=env,
                          timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"simulator subprocess failed:\n{proc.stderr[-4000:]}")
    return s, job, json.loads(proc.stdout.strip().splitlines()[-1])


def _cpu_sweeps(spins, **tile):
    return cpu_local.checkerboard_sweeps(np.array(spins, np.int8, copy=True), N_HALF, step=STEP,
                                         thresholds=local.flip_thresholds("metropolis", 0.44), seed=SEED,
                                         streams=np.array(STREAMS, np.uint32), purpose=REFINE, **tile)


def test_the_simulator_ran(sim):
    _, _, res = sim
    assert res["simulator"] is True
    assert "global_shape" in (res["odd_global"] or "")


@pytest.mark.parametrize("method", METHODS)
def test_untiled_cuda_equals_cpu(sim, method):
    s, _, res = sim
    want = _cpu_sweeps(s)
    assert not np.array_equal(want, s)
    assert np.array_equal(np.array(res["local"][f"untiled-{method}"], np.int8), want)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("tile", LOCAL_TILES, ids=lambda t: "x".join(map(str, t)))
def test_local_tile_equals_cpu_tile_and_untiled(sim, tile, method):
    s, job, res = sim
    x0, y0, tx, ty = tile
    case = next(c for c in job["local"] if c["id"] == f"tile-{x0}-{y0}-{tx}x{ty}-{method}")
    start = np.array(case["spins"], np.int8)
    got = np.array(res["local"][case["id"]], np.int8)
    # the whole tile, spoiled halo included, is the CPU kernel's
    want_tile = _cpu_sweeps(start, offset=(x0 - H, y0 - H), global_shape=GLOBAL)
    assert np.array_equal(got, want_tile)
    # the interior is the untiled (CUDA) lattice's
    untiled = np.array(res["local"][f"untiled-{method}"], np.int8)
    want = untiled[:, np.arange(x0, x0 + tx) % GLOBAL[0]][:, :, np.arange(y0, y0 + ty) % GLOBAL[1]]
    assert np.array_equal(got[:, H:H + tx, H:H + ty], want)
    assert not np.array_equal(got, start)


def _cpu_sample(case):
    field = np.array(case["field"], np.float32)
    coarse = np.array(case["coarse"], np.int8)
    fine = np.zeros(case["fine_shape"], np.int8)
    kw = dict(n0=0, x0=case["x0"], skip=case["skip"], b=B, kind=case["kind"], clamp=case["clamp"], seed=SEED,
              streams=np.array(STREAMS, np.uint32), step=2, purpose=UPSCALE)
    if case["offset"] is not None:
        kw.update(offset=tuple(case["offset"]), global_ly=case["global_ly"])
    bad = cpu_up.sample_rows(field, coarse, fine, **kw)
    return fine, bad


def test_sampling_cases_cover_offsets(sim):
    _, job, _ = sim
    offsets = {tuple(c["offset"]) for c in job["sample"] if c["offset"] is not None}
    assert any(x % 4 for x, _ in offsets) and any(y % 4 for _, y in offsets)  # not aligned to Philox blocks


def test_sampling_tiles_equal_cpu_and_untiled(sim):
    _, job, res = sim
    n = 0
    for case in job["sample"]:
        got = np.array(res["sample"][case["id"]]["fine"], np.int8)
        want, bad = _cpu_sample(case)
        assert bad == 0 and res["sample"][case["id"]]["bad"] == 0
        assert np.array_equal(got, want), case["id"]
        if case["offset"] is not None:
            X, Y, h, w = case["tile"]
            untiled = np.array(res["sample"][f"untiled-k{case['kind']}"]["fine"], np.int8)
            rows = slice(case["x0"] + case["skip"], h)
            assert np.array_equal(got[:, rows], untiled[:, X:X + h, Y:Y + w][:, rows]), case["id"]
            assert np.all(got[:, :case["x0"] + case["skip"]] == 0)  # rows outside the band are not written
            n += 1
    assert n >= 10


# ------------------------------------------------------------------------------------------
# lowered for a real GPU (PTX for sm_90; no device needed), and on a real GPU (skipped here)
# ------------------------------------------------------------------------------------------
def test_tile_kernels_compile_for_the_gpu():
    """The tile kernels lower to PTX: no float64 in the local ones, no fused multiply-adds in the sampler."""
    pytest.importorskip("numba_cuda")
    from cuda_testing import compile_ptx

    res = compile_ptx("""
        from isingcore.backends.cuda import local as G, upscale as U
        i8, u32a, i64, u32, thr = T.int8[::1], T.uint32[::1], T.int64, T.uint32, T.int64[::1]
        grid_k, block_k = G._tile_kernels(G.PURPOSE_LOCAL)
        f32 = T.float32[::1]
        sigs = {
            "tile_grid": (grid_k, (i8, i8, i64, i64, i64, i64, thr, u32, u32a, u32, u32, i64, i64, i64, i64, i64, i64)),
            "tile_block": (block_k, (i8, i8, i64, i64, i64, i64, thr, u32, u32a, T.uint64, i64, i64, i64, i64, i64,
                                     i64)),
            "tile_split": (G._split_tile_kernel, (i8, i8, i8, i64, i64, i64)),
            "tile_merge": (G._merge_tile_kernel, (i8, i8, i8, i64, i64, i64)),
            "sample_tile": (U._sample_tile_kernel, (f32, i8, i8, i64, i64, i64, i64, i64, i64, i64, i64, i64, i64,
                                                    T.float64, u32, u32a, u32, u32, u32, T.float64[::1], T.int64[::1],
                                                    i64, i64, i64, i64)),
        }
    """)
    for name in ("tile_grid", "tile_block", "tile_split", "tile_merge"):
        assert ".f64" not in res[name], f"{name}: float64 in the kernel"
    for name in ("tile_grid", "tile_block"):
        assert res[name].count("mul.hi.u32") >= 20, name
    ptx = res["sample_tile"]
    assert "fma." not in ptx and "mad.f64" not in ptx
    assert ptx.count("mul.rn.f64") >= 14 and ptx.count("mul.hi.u32") >= 20


@pytest.mark.gpu
@pytest.mark.parametrize("method", METHODS)
def test_gpu_tiles_equal_cpu_tiles(method):
    import cupy

    from isingcore.backends.cuda import local as gpu_local

    gshape = (64, 48)
    s = _lattice((2,) + gshape, 3)
    thr = local.flip_thresholds("metropolis", 0.44)
    for (x0, y0, tx, ty) in [(0, 0, 20, 16), (13, 7, 17, 22), (50, 40, 14, 8)]:
        t = _tile_of(s, x0, y0, tx, ty)
        kw = dict(step=STEP, thresholds=thr, seed=SEED, streams=np.array(STREAMS, np.uint32), purpose=REFINE,
                  offset=(x0 - H, y0 - H), global_shape=gshape)
        got = gpu_local.checkerboard_sweeps(cupy.asarray(t), N_HALF, method=method, **kw)
        want = cpu_local.checkerboard_sweeps(t.copy(), N_HALF, **kw)
        np.testing.assert_array_equal(got.get(), want)


# ------------------------------------------------------------------------------------------
# the tiled upscaling pipeline with the CUDA kernels (backend="cupy"), under the simulator
# ------------------------------------------------------------------------------------------
PIPE_SCRIPT = textwrap.dedent(
    r"""
    import json, sys, warnings
    import numpy as np
    warnings.simplefilter("ignore")
    from numba.cuda.core import config
    assert config.ENABLE_CUDASIM, "the simulator is not enabled"
    from isingcore.rg import tiled as T
    from isingcore.rg.models import load_model

    job = json.load(open(sys.argv[1]))
    s0 = np.array(job["seed_lattice"], np.int8)
    got = T.upscale_tiled(s0, load_model(job["model"]), seed=job["seed"], stage=1, tile=job["tile"],
                          refine=job["refine"], sweeps_per_exchange=1, backend="cupy").compute(scheduler="sync")
    print(json.dumps({"spins": got.tolist()}))
    """
)


def test_tiled_upscale_with_cuda_kernels_equals_untiled_cpu(tmp_path):
    """8 -> 24 in tiles of 12 (b = 3, halo 4), 2 refinement sweeps one per exchange: the untiled CPU bits."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("dask")
    if importlib.util.find_spec("numba_cuda") is None:
        pytest.skip("numba-cuda is not installed")
    from isingcore.rg import upscale as U
    from isingcore.rg.models import load_model

    m = load_model("ecmk-b3-k9-mse")
    seeds, _ = U.seed_configurations(8, configs=1, seed=3, beta=m.beta, thermalize=5)
    want = U.upscale(seeds, m, seed=3, stage=1, refine=2)[0]
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"seed_lattice": np.asarray(seeds[0]).tolist(), "model": "ecmk-b3-k9-mse", "seed": 3,
                               "tile": 12, "refine": 2}))
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-c", PIPE_SCRIPT, str(job)], capture_output=True, text=True, env=env,
                          timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"simulator subprocess failed:\n{proc.stderr[-4000:]}")
    got = np.array(json.loads(proc.stdout.strip().splitlines()[-1])["spins"], np.int8)
    assert got.shape == (24, 24) and np.array_equal(got, want)


@pytest.mark.gpu
def test_gpu_tiled_upscale_equals_untiled():
    from isingcore.rg import tiled as T
    from isingcore.rg import upscale as U
    from isingcore.rg.models import load_model

    m = load_model("ecmk-b3-k9-mse")
    seeds, _ = U.seed_configurations(32, configs=1, seed=3, beta=m.beta, thermalize=20)
    want = U.upscale(seeds, m, seed=3, stage=1, refine=5)[0]
    got = T.upscale_tiled(np.asarray(seeds[0]), m, seed=3, stage=1, tile=48, refine=5, backend="cupy")
    assert np.array_equal(got.compute(scheduler="threads", num_workers=2), want)
