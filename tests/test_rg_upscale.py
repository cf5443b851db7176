"""Inverse-RG upscaling (isingcore.rg.upscale, isingcore.rg.models) on tiny ONNX models built here.

Models follow docs/UPSCALING.md: Conv(1 -> b*b, kernel 2*halo+1, no padding, no bias) then
DepthToSpace(b, "CRD"), opset 17, IR version 10, input "coarse", output "field". Two of them:
a b = 2 logit model that is the exact coarse rewrite of nearest-neighbour upsampling followed by
a random D4-symmetric 3x3 fine kernel (the "minimal" family), and a b = 3 mean model with a
random 3x3 coarse kernel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import array_api_compat.numpy as xnp
import array_api_strict as xps
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from isingcore import random as rng  # noqa: E402
from isingcore.backends.numba_cpu import local as fused_local  # noqa: E402
from isingcore.backends.numba_cpu import upscale as fused  # noqa: E402
from isingcore.constants import BETA_C  # noqa: E402
from isingcore.mcmc import local  # noqa: E402
from isingcore.measure.observables import measure  # noqa: E402
from isingcore.rg import upscale as U  # noqa: E402
from isingcore.rg.models import ModelError, ModelNotFoundError, list_models, load_model  # noqa: E402

CLI = [sys.executable, "-m", "isingcore"]


# ------------------------------------------------------------------------------------------
# tiny models
# ------------------------------------------------------------------------------------------
def write_model(path, weight, *, scale, halo=None, kind="logit", clamp="", beta=BETA_C, opset=17, name="test-model",
                input_name="coarse", output_name="field", meta=None, drop=()):
    """Write an upscaler-v1 model with the given Conv weight (b*b, 1, K, K); returns the path."""
    weight = np.asarray(weight, np.float32)
    K = weight.shape[-1]
    halo = (K - 1) // 2 if halo is None else halo
    nodes = [helper.make_node("Conv", [input_name, "weight"], ["sub"], kernel_shape=[K, K], pads=[0, 0, 0, 0]),
             helper.make_node("DepthToSpace", ["sub"], [output_name], blocksize=scale, mode="CRD")]
    graph = helper.make_graph(
        nodes, "upscaler",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", 1, "H", "W"])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["N", 1, "bH", "bW"])],
        initializer=[numpy_helper.from_array(weight, "weight")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 10
    props = {"isingcore.format": "upscaler-v1", "family": "minimal" if scale == 2 else "ecmk", "name": name,
             "scale": str(scale), "halo": str(halo), "kernel_size": str(K), "output_kind": kind, "clamp": clamp,
             "trained_on": "majority", "beta": repr(float(beta)), "train_size": "64", "train_count": "10",
             "loss": "0.125", "parameters": "3"}
    props.update(meta or {})
    for k in drop:
        props.pop(k)
    helper.set_model_props(m, props)
    onnx.save(m, str(path))
    return str(path)


def d4_kernel(k, rs, scale=1.0):
    """A random k x k kernel invariant under the 8 symmetries of the square."""
    a = rs.normal(size=(k, k))
    sym = sum(np.rot90(t, r) for t in (a, a.T) for r in range(4)) / 8
    return scale * sym


def minimal_coarse_weight(K):
    """Coarse Conv weight (4, 1, 2h+1, 2h+1) of NN x2 upsampling then the circular fine convolution with K.

    Sub-pixel (a, c) of coarse site (i, j) gets sum_d K[d] mu[(2i+a+dx)//2, (2j+c+dy)//2].
    """
    k = K.shape[0]
    r = (k - 1) // 2
    halo = -(-r // 2)
    W = np.zeros((4, 1, 2 * halo + 1, 2 * halo + 1))
    for a in range(2):
        for c in range(2):
            for dx in range(-r, r + 1):
                for dy in range(-r, r + 1):
                    W[2 * a + c, 0, (a + dx) // 2 + halo, (c + dy) // 2 + halo] += K[dx + r, dy + r]
    return W


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    rs = np.random.default_rng(42)
    K = d4_kernel(3, rs, scale=0.6)
    b2 = write_model(d / "b2-logit.onnx", minimal_coarse_weight(K), scale=2, kind="logit", name="minimal-b2-k3")
    b3 = write_model(d / "b3-mean.onnx", rs.normal(size=(9, 1, 3, 3)) * 0.4, scale=3, kind="mean", clamp="0.95",
                     name="ecmk-b3-k3")
    return {"b2": load_model(b2), "b3": load_model(b3), "K": K, "dir": str(d)}


def random_spins(shape, seed):
    return np.random.default_rng(seed).choice(np.array([-1, 1], np.int8), size=shape)


def upsample(c, b):
    return np.repeat(np.repeat(c, b, axis=-2), b, axis=-1)


def circular_conv(x, K):
    """sum_d K[d] x[i + dx, j + dy] on the torus (what the minimal model's fine convolution means)."""
    r = (K.shape[0] - 1) // 2
    out = np.zeros(x.shape, np.float64)
    for dx in range(-r, r + 1):
        for dy in range(-r, r + 1):
            out += K[dx + r, dy + r] * np.roll(x, (-dx, -dy), axis=(-2, -1))
    return out


# ------------------------------------------------------------------------------------------
# models and registry
# ------------------------------------------------------------------------------------------
def test_loaded_model_fields(models):
    m = models["b2"]
    assert (m.scale, m.halo, m.output_kind, m.clamp, m.opset, m.name) == (2, 1, "logit", None, 17, "minimal-b2-k3")
    assert m.beta == pytest.approx(BETA_C)
    assert models["b3"].clamp == 0.95 and models["b3"].output_kind == "mean"
    assert m.session().get_providers() == ["CPUExecutionProvider"]
    assert load_model(m) is m
    found = list_models(models["dir"])
    assert [f["name"] for f in found] == ["minimal-b2-k3", "ecmk-b3-k3"]
    assert found[0]["loss"] == "0.125" and found[0]["train_size"] == "64"
    # shipped names resolve through the registry directory
    assert load_model("b3-mean", directory=models["dir"]).name == "ecmk-b3-k3"
    assert load_model("ecmk-b3-k3", directory=models["dir"]).scale == 3


def test_missing_model_lists_the_available_names(models, tmp_path):
    with pytest.raises(ModelNotFoundError, match=r"'nope'.*shipped models: ecmk-b3-k3, minimal-b2-k3"):
        load_model("nope", directory=models["dir"])
    with pytest.raises(FileNotFoundError, match="no such model file.*none"):
        load_model(str(tmp_path / "missing.onnx"), directory=str(tmp_path))


def test_corrupt_files(models, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(ModelError, match="cannot be parsed as an ONNX model.*corrupt"):
        load_model(str(junk))
    data = models["b2"].data
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="corrupt|onnxruntime cannot load"):
        load_model(str(cut))
    # a file that fails is listed with its error, not dropped silently
    listed = list_models(str(tmp_path))
    assert all("error" in m for m in listed) and len(listed) == 2


@pytest.mark.parametrize("change, match", [
    (dict(drop=("isingcore.format",)), "no 'isingcore.format' metadata"),
    (dict(meta={"isingcore.format": "upscaler-v9"}), "upscaler-v9"),
    (dict(drop=("beta", "halo")), r"missing the keys \['halo', 'beta'\]"),
    (dict(meta={"output_kind": "probability"}), "output_kind='probability'"),
    (dict(kind="mean", clamp=""), "needs the metadata 'clamp'"),
    (dict(kind="mean", clamp="1.5"), r"clamp=1.5 must lie in \(0, 1\]"),
    (dict(meta={"beta": "-1"}), "beta=-1.0 must be > 0"),
    (dict(meta={"scale": "two"}), "scale='two' is not an integer"),
    (dict(input_name="spins"), r"inputs \['spins'\].*named 'coarse'"),
    (dict(output_name="h"), r"outputs \['h'\].*named 'field'"),
    (dict(opset=11), r"opset 11.*\[13, 21\]"),
    (dict(halo=2), r"halo=2.*must be \(1, 1, 4, 6\)"),
    (dict(meta={"scale": "3"}), r"scale=3.*must be \(1, 1, 6, 9\)"),
])
def test_bad_models_are_refused_with_the_reason(tmp_path, change, match):
    W = np.ones((4, 1, 3, 3))
    path = write_model(tmp_path / "bad.onnx", W, scale=2, **change)
    with pytest.raises(ModelError, match=match):
        load_model(path)


# ------------------------------------------------------------------------------------------
# the field
# ------------------------------------------------------------------------------------------
def test_field_is_the_minimal_model(models):
    """Periodic padding outside the model + the coarse rewrite == NN upsampling then the circular fine kernel."""
    c = random_spins((2, 6, 5), 1)
    f = U.upscale_field(c, models["b2"], band_rows=2)
    want = circular_conv(upsample(c.astype(np.float64), 2), models["K"])
    np.testing.assert_allclose(f, want, atol=2e-6)


def test_field_d4_equivariance(models):
    c = random_spins((1, 8, 8), 2)
    f = U.upscale_field(c, models["b2"])[0]
    for op in (lambda a: np.rot90(a, 1, axes=(-2, -1)), lambda a: np.rot90(a, 2, axes=(-2, -1)),
               lambda a: np.swapaxes(a, -1, -2), lambda a: a[..., ::-1, :]):
        g = U.upscale_field(np.ascontiguousarray(op(c)), models["b2"])[0]
        np.testing.assert_allclose(g, op(f), atol=2e-6)


def test_field_flips_exactly(models):
    c = random_spins((2, 7, 5), 3)
    for m in (models["b2"], models["b3"]):
        np.testing.assert_array_equal(U.upscale_field(-c, m), -U.upscale_field(c, m))


# ------------------------------------------------------------------------------------------
# sampling
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["b2", "b3"])
def test_exact_z2_equivariance(models, which):
    m = models[which]
    c = random_spins((3, 6, 4), 4)
    np.testing.assert_array_equal(U.sample_stage(-c, m, seed=9, stage=2), -U.sample_stage(c, m, seed=9, stage=2))
    np.testing.assert_array_equal(U.upscale(-c, m, seed=9, stage=2, refine=2), -U.upscale(c, m, seed=9, stage=2, refine=2))


@pytest.mark.parametrize("which", ["b2", "b3"])
def test_tiling_does_not_change_the_configuration(models, which, monkeypatch):
    m = models[which]
    c = random_spins((3, 7, 6), 5)
    ref = U.sample_stage(c, m, seed=3, stage=1, kernel="reference")
    for rows in (None, 1, 2, 3, 7, 100):
        np.testing.assert_array_equal(U.sample_stage(c, m, seed=3, stage=1, band_rows=rows), ref, err_msg=f"band_rows={rows}")
    monkeypatch.setattr(U, "TILE_SITES", 40)  # forces one configuration per call and bands of one row
    np.testing.assert_array_equal(U.sample_stage(c, m, seed=3, stage=1), ref)


def test_reference_on_array_api_strict(models):
    c = random_spins((2, 4, 6), 6)
    for m in (models["b2"], models["b3"]):
        ref = U.sample_stage(c, m, seed=1, stage=3, kernel="reference")
        strict = U.sample_stage(xps.asarray(c), m, seed=1, stage=3, backend="array_api_strict")
        assert strict.dtype == xps.int8
        np.testing.assert_array_equal(np.asarray(strict), ref)
        fast = U.upscale(c, m, seed=1, stage=3, refine=2)
        strict = U.upscale(xps.asarray(c), m, seed=1, stage=3, refine=2, backend="array_api_strict")
        np.testing.assert_array_equal(np.asarray(strict), fast)


def test_generate_reference_equals_fast(models):
    kw = dict(seed_size=2, stages=2, refine=2, configs=2, seed=3, thermalize=2)
    fast = U.generate(models["b3"], **kw)
    ref = U.generate(models["b3"], kernel="reference", **kw)
    np.testing.assert_array_equal(ref.spins, fast.spins)
    for a, b in zip(ref.history, fast.history):
        for k in ("c10x", "c10y", "c11", "abs_m", "raw_c10"):
            np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize("kind", ["logit", "mean"])
def test_numba_sampling_kernel_equals_reference_bit_for_bit(kind):
    """Synthetic fields over the whole range of values, thresholds at the X_MAX cut-offs included."""
    rs = np.random.default_rng(7)
    N, Lx, Ly, b = 3, 9, 7, 2
    coarse = random_spins((N, Lx, Ly), 8)
    field = (rs.standard_cauchy(size=(N, b * Lx, b * Ly)) * 3).astype(np.float32)
    field.reshape(-1)[:8] = [20.0, -20.0, 0.0, -0.0, 1e30, -1e30, np.float32(1.0000001), 3e-8]
    streams = np.array([0, 5, 2**32 - 1], np.uint32)
    clamp = 0.9 if kind == "mean" else 0.0
    want = U.sample_reference(field, coarse, scale=b, kind=kind, clamp=clamp, seed=11, streams=streams, stage=2**32 - 1,
                              xp=xnp)
    for tile_rows, parallel in ((2 * Lx, False), (3, False), (5, True)):
        out = np.zeros((N, b * Lx, b * Ly), np.int8)
        fn = fused._sample_rows_parallel if parallel else fused._sample_rows_serial
        for x0 in range(0, b * Lx, tile_rows):
            x1 = min(b * Lx, x0 + tile_rows)
            bad = fn(np.ascontiguousarray(field[:, x0:x1]), coarse, out, np.int64(0), np.int64(x0), np.int64(0),
                     np.int64(b), np.int64(U.KINDS[kind]), np.float64(clamp), np.int64(11), streams,
                     np.uint64(2**32 - 1), np.int64(rng.Purpose.UPSCALE), U.POW2)
            assert bad == 0
        np.testing.assert_array_equal(out, want)


def test_deterministic_thresholds_match_the_formula():
    """The basic-operation exp reproduces ceil(p 2**32) of the float64 formula (NumPy's exp) on 10**6 values."""
    rs = np.random.default_rng(0)
    v = (rs.normal(size=1_000_000) * 5).astype(np.float32)
    mu = rs.choice(np.array([-1, 1], np.int8), size=v.size)
    T = U.keep_thresholds(mu, v, kind="logit", xp=xnp)
    with np.errstate(over="ignore"):
        p = 1.0 / (1.0 + np.exp(-2.0 * mu.astype(np.float64) * v.astype(np.float64)))
    T_float = rng.threshold(p)
    assert np.count_nonzero(T != T_float) <= 2 and np.max(np.abs(T - T_float)) <= 1
    # the tails: keep with probability 2**-32 (not 0) beyond the cut-off, always keep on the other side
    big = np.array([20.0, 1e6, -20.0, -1e6], np.float32)
    np.testing.assert_array_equal(U.keep_thresholds(np.array([-1, -1, 1, 1], np.int8), big, kind="logit", xp=xnp), [1] * 4)
    np.testing.assert_array_equal(U.keep_thresholds(np.ones(4, np.int8), big[[0, 1, 0, 1]], kind="logit", xp=xnp), [2**32] * 4)
    # mean: clamped, exact
    m = np.array([-2.0, -0.5, 0.0, 0.5, 2.0], np.float32)
    np.testing.assert_array_equal(U.keep_thresholds(np.ones(5, np.int8), m, kind="mean", clamp=0.5, xp=xnp),
                                  rng.threshold([0.25, 0.25, 0.5, 0.75, 0.75]))


def test_non_finite_field_is_reported():
    coarse = np.ones((1, 2, 2), np.int8)
    field = np.zeros((1, 4, 4), np.float32)
    field[0, 1, 2] = np.nan
    field[0, 3, 0] = np.inf
    out = np.zeros((1, 4, 4), np.int8)
    n_bad = fused.sample_rows(field, coarse, out, n0=0, x0=0, skip=0, b=2, kind=0, clamp=0.0, seed=0,
                              streams=np.zeros(1, np.uint32), step=1, purpose=int(rng.Purpose.UPSCALE))
    assert n_bad == 2
    with pytest.raises(ValueError, match="non-finite"):
        U.sample_reference(field, coarse, scale=2, kind="logit", clamp=None, seed=0, streams=np.zeros(1, np.uint32),
                           stage=1, xp=xnp)


def test_copy_model_statistics(tmp_path):
    """A model with h = 20 mu keeps every parent (T = 2**32): fine = NN upsampling, c10 = (1 + c10_coarse)/2."""
    W = np.zeros((4, 1, 3, 3))
    W[:, 0, 1, 1] = 20.0
    m = load_model(write_model(tmp_path / "copy.onnx", W, scale=2))
    c = random_spins((4, 6, 8), 9)
    fine = U.sample_stage(c, m, seed=1, stage=1)
    np.testing.assert_array_equal(fine, upsample(c, 2))
    sc, sf = U.stage_statistics(c), U.stage_statistics(fine)
    np.testing.assert_allclose(sf["c10x"], (1 + sc["c10x"]) / 2)
    np.testing.assert_allclose(sf["c10y"], (1 + sc["c10y"]) / 2)
    np.testing.assert_array_equal(sf["abs_m"], sc["abs_m"])


# ------------------------------------------------------------------------------------------
# refinement
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 6, 10), (3, 8, 4), (2, 2, 2), (1, 4, 14)])
def test_in_place_refinement_equals_reference(shape):
    spins = random_spins(shape, sum(shape))
    thr = local.flip_thresholds("metropolis", BETA_C)
    streams = np.arange(2, 2 + shape[0], dtype=np.uint32)
    step = (3 << 32) + 0
    ref = local.checkerboard_sweeps(spins, 5, step=step, thresholds=thr, seed=8, streams=streams, xp=xnp,
                                    purpose=rng.Purpose.REFINE)
    other = fused_local.checkerboard_sweeps(spins.copy(), 5, step=step, thresholds=thr, seed=8, streams=streams,
                                            purpose=rng.Purpose.REFINE)
    np.testing.assert_array_equal(other, ref)
    local_purpose = local.checkerboard_sweeps(spins, 5, step=step, thresholds=thr, seed=8, streams=streams, xp=xnp)
    if spins.size > 16:
        assert not np.array_equal(local_purpose, ref)  # the purpose word matters
    s = spins.copy()
    assert fused.refine_sweeps(s, 5, step=step, thresholds=thr, seed=8, streams=streams, purpose=rng.Purpose.REFINE) is s
    np.testing.assert_array_equal(s, ref)


def test_refine_zero_and_positive(models):
    m = models["b2"]
    c = random_spins((2, 8, 6), 10)
    raw = U.sample_stage(c, m, seed=4, stage=3)
    np.testing.assert_array_equal(U.upscale(c, m, seed=4, stage=3, refine=0), raw)
    refined = U.upscale(c, m, seed=4, stage=3, refine=4)
    thr = local.flip_thresholds("metropolis", m.beta)
    want = local.checkerboard_sweeps(raw, 8, step=3 << 32, thresholds=thr, seed=4, streams=np.arange(2, dtype=np.uint32),
                                     xp=xnp, purpose=rng.Purpose.REFINE)
    np.testing.assert_array_equal(refined, want)
    assert not np.array_equal(refined, raw)
    np.testing.assert_array_equal(U.upscale(c, m, seed=4, stage=3, refine=4, kernel="reference"), want)
    # progress bars refine in chunks of sweeps: the same counters, the same result
    np.testing.assert_array_equal(U.refine_stage(raw.copy(), m, seed=4, stage=3, refine=4, progress=True), want)


# ------------------------------------------------------------------------------------------
# the pipeline
# ------------------------------------------------------------------------------------------
def test_generate_reproducible_and_stage_statistics(models):
    m = models["b2"]
    a = U.generate(m, seed_size=4, stages=2, refine=3, configs=3, seed=5, thermalize=10)
    b = U.generate(m, seed_size=4, stages=2, refine=3, configs=3, seed=5, thermalize=10)
    c = U.generate(m, seed_size=4, stages=2, refine=3, configs=3, seed=6, thermalize=10)
    np.testing.assert_array_equal(a.spins, b.spins)
    assert not np.array_equal(a.spins, c.spins)
    assert a.spins.shape == (3, 16, 16) and a.spins.dtype == np.int8
    assert [h["L"] for h in a.history] == [4, 8, 16] and [h["stage"] for h in a.history] == [0, 1, 2]
    assert a.seed_algorithm == "wolff" and a.thermalization == 10
    for h in a.history:
        for k in ("c10x", "c10y", "c10", "c11", "abs_m", "raw_c10", "raw_c11", "raw_abs_m"):
            assert h[k].shape == (3,) and np.all(np.abs(h[k]) <= 1), k
    last = a.history[-1]
    obs = measure(a.spins)
    np.testing.assert_array_equal(last["c10x"], obs["c10x"])
    np.testing.assert_array_equal(last["c11"], obs["c11"])
    np.testing.assert_array_equal(last["abs_m"], obs["abs_m"])
    # the whole pipeline by hand: Wolff seeds, then upscale() stage by stage
    import isingcore

    sim = isingcore.Simulation(size=4, beta=m.beta, algorithm="wolff", replicas=3, seed=5).sweep(10)
    s = sim.spins
    for t in (1, 2):
        s = U.upscale(s, m, seed=5, stage=t, refine=3)
    np.testing.assert_array_equal(s, a.spins)
    table = U.format_stage_table(a)
    assert "c10" in table and "0.707107" in table and len(table.splitlines()) == 6
    json.dumps(a.summary())


def test_generate_refine_zero_records_raw(models):
    r = U.generate(models["b3"], seed_size=2, stages=2, refine=0, configs=2, seed=1, thermalize=2)
    for h in r.history:
        np.testing.assert_array_equal(h["c10"], h["raw_c10"])
    assert r.spins.shape == (2, 18, 18)


def test_single_spin_seeds(models):
    r = U.generate(models["b2"], seed_size=1, stages=3, refine=2, configs=4, seed=3)
    w = rng.random_words(1, seed=3, stream=np.arange(4, dtype=np.uint32), step=0, purpose=rng.Purpose.INIT)
    seeds = np.where(w[:, 0] < 2**31, 1, -1)
    np.testing.assert_array_equal(r.history[0]["m"], seeds)
    assert r.seed_algorithm == "single-spin" and r.spins.shape == (4, 8, 8)
    # b = 3 from one spin gives odd sizes: allowed without refinement
    assert U.generate(models["b3"], seed_size=1, stages=2, refine=0, configs=1, seed=0).spins.shape == (1, 9, 9)
    with pytest.raises(ValueError, match="needs even lattice sizes.*L=3"):
        U.generate(models["b3"], seed_size=1, stages=2, refine=1, configs=1, seed=0)


def test_progress_bars(models, capsys):
    U.generate(models["b2"], seed_size=2, stages=1, refine=2, configs=1, seed=0, progress=True, thermalize=1)


@pytest.mark.parametrize("call, exc, match", [
    (lambda m, c: U.upscale(c.astype(np.int16), m, seed=0, stage=1), TypeError, "int8"),
    (lambda m, c: U.upscale(np.where(c > 0, 1, 0).astype(np.int8), m, seed=0, stage=1), ValueError, r"only \+1 and -1"),
    (lambda m, c: U.upscale(c[0, 0], m, seed=0, stage=1), ValueError, r"shape \(N, Lx, Ly\)"),
    (lambda m, c: U.upscale(c, m, seed=0, stage=1, backend="torch"), ValueError, "backend='torch'"),
    (lambda m, c: U.upscale(c, m, seed=0, stage=0), ValueError, "stage"),
    (lambda m, c: U.upscale(c, m, seed=0, stage=1, refine=-1), ValueError, "refine"),
    (lambda m, c: U.upscale(c, m, seed=0, stage=1, band_rows=0), ValueError, "band_rows"),
    (lambda m, c: U.upscale(c, m, seed=0, stage=1, kernel="cuda"), ValueError, "kernel='cuda'"),
    (lambda m, c: U.upscale(c, m, seed=-1, stage=1), ValueError, "seed"),
    (lambda m, c: U.upscale(c, m, seed=0, stage=1, streams=[1, 2]), ValueError, r"streams.*\(3,\)"),
    (lambda m, c: U.generate(m, seed_size=4, stages=0), ValueError, "stages"),
    (lambda m, c: U.generate(m, seed_size=4, stages=1, refine=-2), ValueError, "refine"),
    (lambda m, c: U.generate(m, seed_size=0, stages=1), ValueError, "seed_size"),
    (lambda m, c: U.generate(m, seed_size=4, stages=1, backend="jax"), ValueError, "backend='jax'"),
    (lambda m, c: U.generate("no-such-model", seed_size=4, stages=1), FileNotFoundError, "no-such-model"),
])
def test_bad_input_errors(models, call, exc, match):
    with pytest.raises(exc, match=match):
        call(models["b2"], random_spins((3, 4, 4), 0))


def test_odd_fine_lattice_cannot_be_refined(models):
    with pytest.raises(ValueError, match="even lattice sizes"):
        U.upscale(random_spins((1, 3, 3), 0), models["b3"], seed=0, stage=1, refine=1)
    assert U.upscale(random_spins((1, 3, 3), 0), models["b3"], seed=0, stage=1, refine=0).shape == (1, 9, 9)


def test_unbatched_input(models):
    c = random_spins((5, 4), 1)
    out = U.upscale(c, models["b2"], seed=0, stage=1, refine=1)
    assert out.shape == (10, 8)
    np.testing.assert_array_equal(out, U.upscale(c[None], models["b2"], seed=0, stage=1, refine=1)[0])


def test_statistics_kernel_equals_measure():
    s = random_spins((3, 6, 10), 2)
    fast, ref = U.stage_statistics(s), U.stage_statistics(s, kernel="reference")
    for k in fast:
        np.testing.assert_array_equal(fast[k], ref[k])
    np.testing.assert_array_equal(fast["c11"], measure(s)["c11"])


# ------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------
def run_cli(*args, check=True, env=None):
    p = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=300,
                       env=None if env is None else {**os.environ, **env})
    if check and p.returncode != 0:
        raise AssertionError(f"isingcore {' '.join(map(str, args))} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def test_cli_upscale_end_to_end(models, tmp_path):
    from isingcore.io import open_ensemble

    out, png = tmp_path / "irg.h5", tmp_path / "irg.png"
    p = run_cli("upscale", "--model", models["b2"].path, "--seed-size", 4, "--stages", 2, "--refine", 3, "--configs", 3,
                "--seed", 7, "--out", out, "--png", png, "--thermalize", 5)
    assert "stage" in p.stdout and "c10" in p.stdout and "wrote 3 configuration(s) of 16x16" in p.stdout
    assert png.stat().st_size > 0
    with open_ensemble(str(out)) as ens:
        assert len(ens) == 3 and ens.shape == (3, 16, 16)
        assert ens.attrs["algorithm"] == "irg" and ens.attrs["Lx"] == 16 and ens.attrs["thermalization"] == 5
        extra = ens.attrs["extra"]
        assert extra["model"] == "minimal-b2-k3" and extra["seed_size"] == 4 and extra["refine"] == 3
        assert extra["sizes"] == [4, 8, 16] and len(extra["stage_history"]) == 3
        assert extra["model_metadata"]["isingcore.format"] == "upscaler-v1"
        spins = ens[:]
        c10x = np.asarray(ens.observables["c10x"])
    want = U.generate(models["b2"], seed_size=4, stages=2, refine=3, configs=3, seed=7, thermalize=5)
    np.testing.assert_array_equal(spins, want.spins)
    np.testing.assert_array_equal(c10x, want.history[-1]["c10x"])
    assert extra["stage_history"][2]["c10"] == pytest.approx(float(np.mean(want.history[-1]["c10"])))
    # an existing file is not overwritten silently
    p = run_cli("upscale", "--model", models["b2"].path, "--seed-size", 4, "--stages", 1, "--out", out, check=False)
    assert p.returncode != 0 and "exists" in p.stderr


def test_cli_models_and_errors(models, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    p = run_cli("models", env={"ISINGCORE_MODELS_DIR": str(empty)})
    assert "no upscaling models" in p.stdout
    assert json.loads(run_cli("models", "--json", "--dir", empty).stdout) == []
    p = run_cli("models", "--dir", models["dir"])
    assert "minimal-b2-k3" in p.stdout and "ecmk-b3-k3" in p.stdout and "family" in p.stdout
    p = run_cli("upscale", "--model", "nope", "--out", tmp_path / "x.h5", check=False,
                env={"ISINGCORE_MODELS_DIR": str(empty)})
    assert p.returncode == 2 and "nope" in p.stderr and "shipped models: none" in p.stderr
    p = run_cli("upscale", "--model", models["b3"].path, "--seed-size", 1, "--stages", 1, "--out", tmp_path / "y.h5",
                check=False)
    assert p.returncode == 2 and "even lattice sizes" in p.stderr


# ------------------------------------------------------------------------------------------
# CUDA: simulator, PTX, real GPU
# ------------------------------------------------------------------------------------------
SIM_SCRIPT = textwrap.dedent(r"""
    import json, sys, warnings
    import numpy as np
    warnings.simplefilter("ignore")
    from isingcore.backends.cuda import upscale as cu
    assert cu.SIMULATOR
    job = json.load(open(sys.argv[1]))
    res = {}
    for kind in ("logit", "mean"):
        field = np.array(job["field"], np.float32)
        coarse = np.array(job["coarse"], np.int8)
        N, H, Ly = field.shape
        out = np.zeros((N, H, Ly), np.int8)
        bad = np.zeros(1, np.int64)
        for x0, x1, skip in ((0, 4, 0), (2, 6, 2)):  # equal band heights, the second one skips the rows done
            cu.sample_rows(np.ascontiguousarray(field[:, x0:x1]), coarse, out, n0=0, x0=x0, skip=skip, b=job["b"],
                           kind=0 if kind == "logit" else 1, clamp=0.8, seed=job["seed"],
                           streams=np.array(job["streams"], np.uint32), step=job["step"], purpose=5, bad=bad)
        res[kind] = {"spins": out.tolist(), "bad": int(bad[0])}
    print(json.dumps(res))
""")


@pytest.mark.cudasim
def test_cuda_sampling_kernel_under_the_simulator(tmp_path):
    pytest.importorskip("numba_cuda")
    rs = np.random.default_rng(3)
    b, N, Lx, Ly = 2, 2, 3, 5
    coarse = random_spins((N, Lx, Ly), 4)
    field = (rs.normal(size=(N, b * Lx, b * Ly)) * 4).astype(np.float32)
    field[0, 0, :3] = [25.0, -25.0, 0.0]
    job = dict(field=field.tolist(), coarse=coarse.tolist(), b=b, seed=12, streams=[3, 9], step=2**32 + 1)
    (tmp_path / "job.json").write_text(json.dumps(job))
    (tmp_path / "sim.py").write_text(SIM_SCRIPT)
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONWARNINGS="ignore")
    p = subprocess.run([sys.executable, str(tmp_path / "sim.py"), str(tmp_path / "job.json")], capture_output=True,
                       text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout.strip().splitlines()[-1])
    for kind in ("logit", "mean"):
        want = U.sample_reference(field, coarse, scale=b, kind=kind, clamp=0.8, seed=12, streams=np.array([3, 9], np.uint32),
                                  stage=2**32 + 1, xp=xnp)
        assert res[kind]["bad"] == 0
        np.testing.assert_array_equal(np.array(res[kind]["spins"], np.int8), want)


def test_cuda_sampling_kernel_compiles_without_fused_multiply_adds():
    """Lowered to PTX (sm_90): the threshold arithmetic uses mul.rn/add.rn only, never fma (bitwise = CPU)."""
    pytest.importorskip("numba_cuda")
    from cuda_testing import compile_ptx

    res = compile_ptx("""
        from isingcore.backends.cuda import upscale as U
        f32, i8, i64, u32, u32a = T.float32[::1], T.int8[::1], T.int64, T.uint32, T.uint32[::1]
        sigs = {"sample": (U._sample_kernel, (f32, i8, i8, i64, i64, i64, i64, i64, i64, i64, i64, i64, i64, T.float64,
                                              u32, u32a, u32, u32, u32, T.float64[::1], T.int64[::1]))}
    """)
    ptx = res["sample"]
    assert "fma." not in ptx and "mad.f64" not in ptx
    assert ptx.count("mul.rn.f64") >= 14 and ptx.count("mul.hi.u32") >= 20


@pytest.mark.gpu
@pytest.mark.parametrize("which", ["b2", "b3"])
def test_gpu_pipeline_matches_cpu(models, which):
    import cupy

    m = models[which]
    c = random_spins((3, 16, 12), 11)
    for rows in (None, 5):
        gpu = U.upscale(cupy.asarray(c), m, seed=2, stage=1, refine=3, backend="cupy", band_rows=rows)
        cpu = U.upscale(c, m, seed=2, stage=1, refine=3)
        assert isinstance(gpu, cupy.ndarray)
        np.testing.assert_array_equal(gpu.get(), cpu)
    g = U.generate(m, seed_size=4, stages=2, refine=2, configs=2, seed=1, backend="cupy", thermalize=3)
    h = U.generate(m, seed_size=4, stages=2, refine=2, configs=2, seed=1, thermalize=3)
    np.testing.assert_array_equal(g.spins.get(), h.spins)
