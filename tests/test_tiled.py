"""Tiled inverse-RG upscaling (isingcore.rg.tiled): bit for bit equal to the untiled pipeline.

Every random decision is keyed by the global site, so any tiling must give the untiled bits:
16 -> 144 (two stages, b = 3, the shipped ECMK model, halo 4) with square, uneven and
rectangular tiles and several refinement sweeps per halo exchange; the offset-aware kernels
against the untiled ones for every tile position, including tiles that wrap around the torus;
the out-of-core pipeline (giant-lattice file) against :func:`isingcore.rg.upscale.generate`.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("dask")
pytest.importorskip("onnxruntime")

from isingcore import random as rng  # noqa: E402
from isingcore.backends.numba_cpu import local as fused_local  # noqa: E402
from isingcore.backends.numba_cpu import upscale as fused  # noqa: E402
from isingcore.giant import open_giant  # noqa: E402
from isingcore.mcmc import local  # noqa: E402
from isingcore.rg import tiled as T  # noqa: E402
from isingcore.rg import upscale as U  # noqa: E402
from isingcore.rg.models import load_model  # noqa: E402

MODEL = "ecmk-b3-k9-mse"
SEED = 3
REFINE = 5


@pytest.fixture(scope="module")
def model():
    return load_model(MODEL)


@pytest.fixture(scope="module")
def untiled(model):
    """Seed 16^2 and the untiled stages 48^2, 144^2 (configuration 0 of generate)."""
    res = U.generate(model, seed_size=16, stages=2, refine=REFINE, configs=1, seed=SEED, thermalize=20)
    seeds, _ = U.seed_configurations(16, configs=1, seed=SEED, beta=model.beta, thermalize=20)
    s1 = U.upscale(seeds, model, seed=SEED, stage=1, refine=REFINE)
    return np.ascontiguousarray(seeds[0]), s1[0], np.asarray(res.spins[0])


@pytest.mark.parametrize("tile, k", [(48, None), (36, 2), (60, 3), ((30, 48), 1), (144, 5)])
def test_tiled_stages_equal_untiled_bit_for_bit(model, untiled, tile, k):
    s0, s1, s2 = untiled
    a = T.upscale_tiled(s0, model, seed=SEED, stage=1, tile=tile, refine=REFINE, sweeps_per_exchange=k)
    a = a.compute(scheduler="threads")
    assert a.dtype == np.int8 and np.array_equal(a, s1)
    c = T.upscale_tiled(a, model, seed=SEED, stage=2, tile=tile, refine=REFINE, sweeps_per_exchange=k)
    assert len(c.chunks[0]) >= (1 if tile == 144 else 3)
    assert np.array_equal(c.compute(scheduler="threads"), s2)


def test_sampling_alone_is_tiling_invariant(model, untiled):
    s0, _, _ = untiled
    want = U.sample_stage(s0[None], model, seed=SEED, stage=1)[0]
    got = T.sample_stage_tiled(s0, model, seed=SEED, stage=1, tile=(12, 18)).compute(scheduler="sync")
    assert np.array_equal(got, want)


def test_a_wrong_halo_would_be_seen(model, untiled):
    """The comparison can fail: k = 5 sweeps on a halo of 1 site (instead of 2k + 1) spoil the tile edges."""
    s0, s1, _ = untiled
    fine = T.sample_stage_tiled(s0, model, seed=SEED, stage=1, tile=12)
    Lx = fine.shape[0]
    thr = local.flip_thresholds("metropolis", model.beta)
    H = 1
    bad = fine.map_overlap(T._refine_block, depth=H, boundary="periodic", trim=True, dtype=np.int8,
                           offsets=T._offsets(fine.chunks), H=H, gshape=(Lx, Lx), sweeps=REFINE, step=1 << 32,
                           thr=thr, seed=SEED, stream=0, threads=None).compute(scheduler="sync")
    assert not np.array_equal(bad, s1)


@pytest.mark.parametrize("shape", [(12, 16), (10, 8)])
def test_checkerboard_kernel_with_global_offsets(shape):
    """Every tile position (wrapping included, tiles up to the whole torus): interior = untiled bits."""
    gLx, gLy = shape
    rs = np.random.default_rng(gLx)
    s = rs.choice(np.array([-1, 1], np.int8), size=(1, gLx, gLy))
    thr = local.flip_thresholds("metropolis", 0.44)
    st = np.array([7], np.uint32)
    n_half = 4
    ref = fused_local.checkerboard_sweeps(s.copy(), n_half, step=(2 << 32) + 3, thresholds=thr, seed=2, streams=st,
                                          purpose=int(rng.Purpose.REFINE))
    H = n_half
    for x0 in range(gLx):
        for y0 in range(gLy):
            for tx, ty in ((3, 4), (1, 2), (gLx, gLy)):
                ri = np.arange(x0 - H, x0 + tx + H) % gLx
                ci = np.arange(y0 - H, y0 + ty + H) % gLy
                t = np.ascontiguousarray(s[:, ri][:, :, ci])
                fused_local.checkerboard_sweeps(t, n_half, step=(2 << 32) + 3, thresholds=thr, seed=2, streams=st,
                                                purpose=int(rng.Purpose.REFINE), offset=(x0 - H, y0 - H),
                                                global_shape=(gLx, gLy))
                want = ref[:, np.arange(x0, x0 + tx) % gLx][:, :, np.arange(y0, y0 + ty) % gLy]
                assert np.array_equal(t[:, H:H + tx, H:H + ty], want), (x0, y0, tx, ty)


def test_sample_rows_with_offsets_matches_whole_lattice():
    rs = np.random.default_rng(5)
    b, Lc = 2, 6
    coarse = rs.choice(np.array([-1, 1], np.int8), size=(1, Lc, Lc))
    field = rs.normal(size=(1, b * Lc, b * Lc)).astype(np.float32)
    st = np.array([4], np.uint32)
    kw = dict(b=b, kind=0, clamp=0.0, seed=9, streams=st, step=2, purpose=int(rng.Purpose.UPSCALE))
    want = np.zeros((1, b * Lc, b * Lc), np.int8)
    fused.sample_rows(field, coarse, want, n0=0, x0=0, skip=0, **kw)
    for X, Y, h, w in ((0, 0, 4, 6), (4, 6, 8, 6), (10, 2, 2, 10)):
        out = np.zeros((1, h, w), np.int8)
        sub_c = np.ascontiguousarray(coarse[:, X // b:(X + h) // b, Y // b:(Y + w) // b])
        fused.sample_rows(np.ascontiguousarray(field[:, X:X + h, Y:Y + w]), sub_c, out, n0=0, x0=0, skip=0,
                          offset=(X, Y), global_ly=b * Lc, **kw)
        assert np.array_equal(out[0], want[0, X:X + h, Y:Y + w])
    with pytest.raises(ValueError, match="offset"):
        fused.sample_rows(field[:, :2, :4], coarse[:, :1, :2], np.zeros((1, 2, 4), np.int8), n0=0, x0=0, skip=0,
                          offset=(0, 10), global_ly=12, **kw)


def test_generate_tiled_file_equals_generate(model, untiled, tmp_path):
    _, s1, s2 = untiled
    path = tmp_path / "giant.h5"
    summary = T.generate_tiled(model, seed_size=16, stages=2, out=str(path), tile=24, refine=REFINE, seed=SEED,
                               workers=2, thermalize=20)
    assert [s["L"] for s in summary["stages"]] == [16, 48, 144]
    with open_giant(str(path)) as g:
        assert g.shape == (144, 144) and g.attrs["model"] == MODEL and g.attrs["refine"] == REFINE
        assert np.array_equal(g[:, :], s2)
        assert g.ds.chunks == (24, 3) and g.ds.compression == "gzip"
    with open_giant(str(path), "stages/1") as g:
        assert np.array_equal(np.asarray(g), s1)
    assert summary["stages"][-1]["m"] == pytest.approx(float(s2.mean()))


def test_bad_parameters_are_named(model, untiled):
    s0 = untiled[0]
    with pytest.raises(ValueError, match="tile"):
        T.upscale_tiled(s0, model, seed=1, stage=1, tile=10)  # not a multiple of b = 3
    with pytest.raises(ValueError, match="halo"):
        T.upscale_tiled(s0, model, seed=1, stage=1, tile=9)  # 3 coarse sites < halo 4
    with pytest.raises(ValueError, match="sweeps_per_exchange"):
        T.upscale_tiled(s0, model, seed=1, stage=1, tile=12, refine=10, sweeps_per_exchange=6)
    with pytest.raises(ValueError, match="coarse"):
        T.upscale_tiled(s0[None], model, seed=1, stage=1, tile=12)
    with pytest.raises(ValueError, match="tile"):
        T.generate_tiled(model, seed_size=16, stages=1, out="unused.h5", tile=12)  # not a multiple of 8


def test_cli_upscale_tiled(untiled, tmp_path, capsys):
    """``isingcore upscale --tile T --workers N`` writes the giant-lattice file of the untiled configuration."""
    from isingcore.cli import main

    out = tmp_path / "cli.h5"
    rc = main(["upscale", "--model", MODEL, "--seed-size", "16", "--stages", "2", "--refine", str(REFINE),
               "--seed", str(SEED), "--thermalize", "20", "--tile", "48", "--workers", "2", "--out", str(out),
               "--progress", "off"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "final 144x144: e = " in text and "9" in text
    with open_giant(str(out)) as g:
        assert np.array_equal(g[:, :], untiled[2])
    for extra, msg in ((["--configs", "2"], "--configs"), (["--band-rows", "4"], "--band-rows"),
                       (["--tile", "40"], "tile=40")):
        with pytest.raises(SystemExit, match=msg):
            main(["upscale", "--model", MODEL, "--seed-size", "16", "--stages", "2", "--out", str(out), "--overwrite",
                  "--tile", "48", *extra])


# ------------------------------------------------------------------------------------------
# a real distributed cluster (worker processes): same bits, per-stage sums from the tasks
# ------------------------------------------------------------------------------------------
_DIST_WARNINGS = [pytest.mark.filterwarnings("ignore::ResourceWarning"),
                  pytest.mark.filterwarnings(r"ignore:.*[Pp]ort.*:UserWarning")]


@pytest.fixture(scope="module")
def process_cluster():
    """A LocalCluster of two single-threaded worker processes (module scope: started once)."""
    pytest.importorskip("distributed")
    import logging

    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.CRITICAL) as cluster:
        yield cluster


def _assert_giant_equals(path, s1, s2):
    with open_giant(str(path)) as g:
        assert np.array_equal(g[:, :], s2)
        assert g.ds.compression == "gzip" and g.ds.fletcher32
    with open_giant(str(path), "stages/1") as g:
        assert np.array_equal(np.asarray(g), s1) and g.lattice_attrs["stage"] == 1


@_DIST_WARNINGS[0]
@_DIST_WARNINGS[1]
def test_generate_tiled_on_worker_processes_equals_untiled(model, untiled, tmp_path, process_cluster):
    """16 -> 48 -> 144 on two worker processes: the untiled bits, the per-stage m, no scratch file left."""
    from distributed import Client

    _, s1, s2 = untiled
    path = tmp_path / "giant.h5"
    with Client(process_cluster) as client:
        pids = set(client.run(os.getpid).values())
        summary = T.generate_tiled(model, seed_size=16, stages=2, out=str(path), tile=24, refine=REFINE, seed=SEED,
                                   thermalize=20, client=client, threads_per_tile=1)
    assert len(pids) == 2 and os.getpid() not in pids  # the tiles really ran in other processes
    _assert_giant_equals(path, s1, s2)
    assert [s["L"] for s in summary["stages"]] == [16, 48, 144]
    # the per-stage magnetisation: sums returned by the tasks (36 tiles at stage 2), exact
    assert summary["stages"][1]["m"] == float(s1.sum()) / s1.size
    assert summary["stages"][2]["m"] == float(s2.sum()) / s2.size and summary["stages"][2]["tiles"] == 36
    assert sorted(os.listdir(tmp_path)) == ["giant.h5"]


@_DIST_WARNINGS[0]
@_DIST_WARNINGS[1]
def test_cli_upscale_tiled_scheduler_and_process_workers(untiled, tmp_path, capsys, process_cluster):
    """``isingcore upscale --tile T --scheduler ADDRESS`` and ``--workers N --processes``: the untiled bits."""
    from isingcore.cli import main

    _, s1, s2 = untiled
    base = ["upscale", "--model", MODEL, "--seed-size", "16", "--stages", "2", "--refine", str(REFINE), "--seed",
            str(SEED), "--thermalize", "20", "--progress", "off"]
    a = tmp_path / "sched.h5"
    assert main(base + ["--tile", "48", "--scheduler", process_cluster.scheduler_address, "--out", str(a)]) == 0
    assert "scheduler tcp://" in capsys.readouterr().out
    _assert_giant_equals(a, s1, s2)
    b = tmp_path / "procs.h5"
    assert main(base + ["--tile", "24", "--workers", "2", "--processes", "--out", str(b)]) == 0
    assert "LocalCluster of 2 process(es)" in capsys.readouterr().out
    _assert_giant_equals(b, s1, s2)
    for extra, msg in ((["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "exclude"),
                       (["--processes"], "--processes needs --workers")):
        with pytest.raises(SystemExit, match=msg):
            main(base + ["--tile", "48", "--out", str(tmp_path / "x.h5"), *extra])


def test_threaded_stage_sum_is_a_reduction(model, untiled, tmp_path):
    """The threaded path's per-stage m comes from the tiles' returned sums (many small tiles, 4 threads)."""
    _, s1, s2 = untiled
    path = tmp_path / "giant.h5"
    summary = T.generate_tiled(model, seed_size=16, stages=2, out=str(path), tile=24, refine=REFINE, seed=SEED,
                               workers=4, thermalize=20)
    assert summary["stages"][1]["m"] == float(s1.sum()) / s1.size
    assert summary["stages"][2]["m"] == float(s2.sum()) / s2.size
    _assert_giant_equals(path, s1, s2)
