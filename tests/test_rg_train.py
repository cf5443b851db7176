"""Training and export of the inverse-RG upscalers (isingcore.rg.train, tools/train_upscaler.py, tools/export_onnx.py)."""

import copy
import importlib.util
import json
import math
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import isingcore
import isingcore.exact
from isingcore.io import EnsembleWriter
from isingcore.rg.train import export as rg_export
from isingcore.rg.train import models as rg_models
from isingcore.rg.train import training as rg_training

torch.set_num_threads(1)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
G = rg_models.d4_elements()
META_KEYS = ("isingcore.format", "family", "name", "scale", "halo", "kernel_size", "output_kind", "clamp",
             "trained_on", "beta", "train_size", "train_count", "loss", "loss_terms", "data_sha256", "date",
             "isingcore_version", "training_command", "parameters")


def _pm1(shape, seed):
    return np.random.default_rng(seed).choice(np.array([-1.0, 1.0]), size=shape)


def _field(model, mu, dtype=torch.float64):
    with torch.no_grad():
        return model.field(torch.as_tensor(mu, dtype=dtype)).numpy()


def _upsample(mu, b):
    return np.repeat(np.repeat(mu, b, axis=-2), b, axis=-1)


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory):
    """64 Wolff configurations of 24^2 at K_c in an isingcore HDF5 file."""
    sim = isingcore.Simulation(size=24, algorithm="wolff", replicas=16, seed=11)
    sim.sweep(10, progress=False)
    blocks = []
    for _ in range(4):
        sim.sweep(2, progress=False)
        blocks.append(np.asarray(sim.spins).copy())
    spins = np.concatenate(blocks)
    path = tmp_path_factory.mktemp("rg_train") / "fine24.h5"
    attrs = dict(algorithm="wolff", beta=isingcore.BETA_C, Lx=24, Ly=24, seed=11, thermalization=10, spacing=2,
                 backend="numpy")
    with EnsembleWriter.create(path, attrs) as w:
        w.append(spins, None, chain=np.tile(np.arange(16), 4), step=np.arange(64))
    return str(path)


@pytest.fixture(scope="module")
def checkpoints(ensemble):
    ecmk = rg_training.train(ensemble, family="ecmk", epochs=2, batch_size=16, progress=False)
    minimal = rg_training.train(ensemble, family="minimal", kernel_size=7, epochs=2, batch_size=16, lr=0.02,
                                weighted=True, progress=False)
    return {"ecmk": ecmk, "minimal": minimal}


# ---------------------------------------------------------------------------------------------
# Symmetry
# ---------------------------------------------------------------------------------------------

def test_parameter_counts_and_halos():
    for k, n, halo in ((3, 3, 1), (5, 6, 1), (7, 10, 2)):
        m = rg_models.MinimalUpscaler(k)
        assert m.num_free_parameters() == n == (k + 1) * (k + 3) // 8
        assert m.halo == halo and m.coarse_weight().shape == (4, 1, 2 * halo + 1, 2 * halo + 1)
    e = rg_models.ECMK()
    # Burnside: (729 + 3 * 1 + 4 * 27) / 8 = 105 kernel orbits, plus w1 and A
    assert e.num_free_parameters() == 107
    assert e.halo == 4 and e.coarse_weight().shape == (9, 1, 9, 9)


def test_d4_is_a_group_and_lattice_transform_commutes_with_blocks():
    mats = {tuple(g.ravel()) for g in G}
    assert len(mats) == 8
    assert all(tuple((g @ h).ravel()) in mats for g in G for h in G)
    for b in (2, 3):
        mu = _pm1((2, 5, 5), 1)
        for g in G:  # blocks map onto blocks: NN upsampling is equivariant with the fine centre (b-1)/2
            np.testing.assert_array_equal(_upsample(rg_models.lattice_transform(mu, g), b),
                                          rg_models.lattice_transform(_upsample(mu, b), g, scale=b))


def _models():
    gen = torch.Generator().manual_seed(5)
    return [rg_models.ECMK(init_std=0.3, generator=gen)] + [
        rg_models.MinimalUpscaler(k, init_std=1.0, generator=gen) for k in (3, 5, 7)]


@pytest.mark.parametrize("index", range(4), ids=["ecmk-k9", "minimal-k3", "minimal-k5", "minimal-k7"])
def test_exact_d4_equivariance(index):
    model = _models()[index]
    b = model.scale
    mu = _pm1((3, 1, 7, 7), 2)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-6)):
        m = copy.deepcopy(model).to(dtype)
        f = _field(m, mu, dtype)
        scale = max(1.0, np.abs(f).max())
        for g in G:
            fg = _field(m, rg_models.lattice_transform(mu, g), dtype)
            err = np.abs(fg - rg_models.lattice_transform(f, g, scale=b)).max() / scale
            assert err < tol, (dtype, g.tolist(), err)


def test_projection_is_idempotent_and_naive_averaging_is_not_equivariant():
    e = rg_models.ECMK(init_std=0.3, generator=torch.Generator().manual_seed(3))
    index = torch.from_numpy(rg_models.d4_gather_index(3, 4))
    with torch.no_grad():
        P = e.projected_weight()
        w = e.weight.reshape(-1)
        np.testing.assert_allclose(P.reshape(-1).numpy(), w[index].mean(0).numpy(), rtol=0, atol=1e-6)
        # P is a projection: projecting again changes nothing
        e.weight.copy_(P.reshape(9, 9, 9))
        np.testing.assert_allclose(e.projected_weight().numpy(), P.numpy(), rtol=0, atol=1e-6)
        # the seed repository's per-channel (w + flip_h + flip_v + w^T)/4 is neither
        free = e.weight.detach().clone().normal_(generator=torch.Generator().manual_seed(4)).reshape(9, 1, 9, 9)
        naive = rg_models.naive_symmetrize(free)
        assert (rg_models.naive_symmetrize(naive) - naive).abs().max() > 1e-2
    mu = _pm1((2, 1, 6, 6), 3)

    def field(x):
        y = torch.nn.functional.conv2d(torch.nn.functional.pad(torch.as_tensor(x), (4,) * 4, mode="circular"),
                                       naive.double())
        return torch.nn.functional.pixel_shuffle(y, 3).numpy()

    f = field(mu)
    errs = [np.abs(field(rg_models.lattice_transform(mu, g)) - rg_models.lattice_transform(f, g, scale=3)).max()
            for g in G]
    assert errs[0] == 0 and max(errs[1:]) > 0.1


def test_z2_antisymmetry_is_exact():
    mu = torch.from_numpy(_pm1((2, 1, 5, 6), 4).astype(np.float32))
    for model in _models():
        with torch.no_grad():
            assert torch.equal(model(-mu), -model(mu))
            assert torch.equal(model.field(-mu), -model.field(mu))


def test_minimal_coarse_rewrite_equals_fine_convolution():
    mu = torch.from_numpy(_pm1((2, 1, 5, 7), 5))
    for model in _models()[1:]:
        model = model.double()
        with torch.no_grad():
            np.testing.assert_allclose(model.field(mu).numpy(), model.field_fine(mu).numpy(), rtol=0, atol=1e-12)


def test_ecmk_clamp_and_parameters():
    e = rg_models.ECMK(init_std=1.0, generator=torch.Generator().manual_seed(6))
    mu = torch.from_numpy(_pm1((1, 1, 6, 6), 6).astype(np.float32))
    with torch.no_grad():
        A = float(e.clamp)
        m = e(mu)
        assert 0 < A < 1 and float(m.abs().max()) == pytest.approx(A)
        np.testing.assert_array_equal(m.numpy(), np.clip(e.field(mu).numpy(), -A, A))


# ---------------------------------------------------------------------------------------------
# Losses and data
# ---------------------------------------------------------------------------------------------

def test_losses():
    h = torch.tensor([[[[0.3, -1.0], [2.0, 0.0]]]])
    s = torch.tensor([[[[1.0, 1.0], [-1.0, -1.0]]]])
    p = torch.exp(s * h) / (2 * torch.cosh(h))
    np.testing.assert_allclose(rg_training.nll_per_configuration(h, s).numpy(), [float(-torch.log(p).mean())],
                               rtol=1e-6)
    nll = torch.tensor([1.0, 3.0])
    h2 = torch.zeros(2, 1, 2, 2)
    s2 = torch.ones(2, 1, 2, 2)
    logw = torch.tensor([-math.log(2.0), -3 * math.log(2.0)], dtype=torch.float64)
    total, parts = rg_training._minimal_loss(h2, s2, logw, weighted=True)  # equal nll: the weights sum to 1
    assert float(total) == pytest.approx(math.log(2.0)) and float(parts["nll_uniform"]) == pytest.approx(math.log(2.0))
    w = torch.softmax(logw, 0)
    assert w.tolist() == pytest.approx([0.8, 0.2]) and float((w * nll).sum()) == pytest.approx(1.4)
    m = torch.full((2, 1, 3, 3), 0.5)
    total, parts = rg_training.ecmk_loss(m, torch.ones_like(m), gamma=10.0, c10_star=0.5)
    assert float(parts["c10"]) == pytest.approx(0.25) and float(parts["mse"]) == pytest.approx(0.25)
    assert float(total) == pytest.approx(0.25 + 10 * 0.0625)
    # Kaufman's finite-size target: L = 16 at K_c has u = -1.453064852813 per site
    assert rg_training.c10_target_value("kaufman", isingcore.BETA_C, 16, 16) == pytest.approx(1.453064852813 / 2)
    assert rg_training.c10_target_value("critical", isingcore.BETA_C, 16, 16) == pytest.approx(2 ** -0.5)


def test_config_validation():
    with pytest.raises(ValueError, match="family"):
        rg_training.TrainConfig(family="resnet").resolved()
    with pytest.raises(ValueError, match="block_mean"):
        rg_training.TrainConfig(family="minimal", trained_on="block_mean").resolved()
    with pytest.raises(ValueError, match="weighted"):
        rg_training.TrainConfig(family="ecmk", weighted=True).resolved()
    with pytest.raises(ValueError, match="kernel_size"):
        rg_training.TrainConfig(family="minimal", kernel_size=4).resolved()
    with pytest.raises(ValueError, match="lr_schedule"):
        rg_training.TrainConfig(lr_schedule="linear").resolved()
    with pytest.raises(ValueError, match="divisible"):
        rg_training.train(np.ones((4, 10, 10), np.int8), family="ecmk", epochs=1, progress=False)


def test_coarse_inputs(ensemble):
    data = rg_training.load_ensembles([ensemble])
    assert data.spins.shape == (64, 24, 24) and data.beta == isingcore.BETA_C
    assert data.data_sha256 == rg_training.file_sha256(ensemble)
    mu, logw = rg_training.coarse_inputs(data.spins[:8], 2, "majority", seed=1)
    sums = data.spins[:8].reshape(8, 12, 2, 12, 2).sum(axis=(2, 4))
    assert mu.shape == (8, 1, 12, 12) and np.all(mu[:, 0][sums != 0] == np.sign(sums[sums != 0]))
    np.testing.assert_allclose(logw, -(sums == 0).sum(axis=(1, 2)) * math.log(2.0))
    mu3, logw3 = rg_training.coarse_inputs(data.spins[:8], 3, "block_mean")
    np.testing.assert_allclose(mu3[:, 0], data.spins[:8].reshape(8, 8, 3, 8, 3).mean(axis=(2, 4)), rtol=1e-6)
    assert np.all(logw3 == 0)


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------

def test_training_lowers_the_loss_and_is_reproducible(ensemble, checkpoints, tmp_path):
    for family, ckpt in checkpoints.items():
        curve = ckpt["loss_curve"]
        assert [e["epoch"] for e in curve] == [0, 1, 2]
        assert curve[-1]["train"]["total"] < curve[0]["train"]["total"], family
        assert curve[-1]["val"]["total"] < curve[0]["val"]["total"], family
        assert ckpt["train_count"] == 57 and ckpt["val_count"] == 7 and ckpt["train_size"] == [24, 24]
        assert ckpt["data_sha256"] == [rg_training.file_sha256(ensemble)]
        assert ckpt["final"]["split"] == "validation" and ckpt["final"]["loss"] == curve[-1]["val"]["total"]
    assert set(checkpoints["ecmk"]["loss_curve"][1]["train"]) == {"total", "mse", "phys", "c10"}
    assert set(checkpoints["minimal"]["loss_curve"][1]["val"]) == {"total", "nll", "nll_uniform"}
    again = rg_training.train(ensemble, family="ecmk", epochs=2, batch_size=16, progress=False)
    assert again["loss_curve"] == checkpoints["ecmk"]["loss_curve"]
    for k, v in again["state_dict"].items():
        assert torch.equal(v, checkpoints["ecmk"]["state_dict"][k])
    other = rg_training.train(ensemble, family="ecmk", epochs=1, batch_size=16, seed=1, progress=False)
    assert other["loss_curve"][1] != checkpoints["ecmk"]["loss_curve"][1]
    # checkpoint round trip through torch.save / torch.load(weights_only=True)
    path = rg_training.save_checkpoint(checkpoints["minimal"], tmp_path / "m.pt")
    loaded = rg_training.load_checkpoint(path)
    assert loaded["loss_curve"] == checkpoints["minimal"]["loss_curve"]
    m1, m2 = rg_training.model_from_checkpoint(loaded), rg_training.model_from_checkpoint(checkpoints["minimal"])
    assert torch.equal(m1.coarse_weight(), m2.coarse_weight())


def test_cosine_schedule_decays_the_rate_to_zero(ensemble, checkpoints):
    assert [e["lr"] for e in checkpoints["ecmk"]["loss_curve"][1:]] == [1e-3, 1e-3]  # constant by default
    ck = rg_training.train(ensemble, family="ecmk", epochs=2, batch_size=16, lr_schedule="cosine", progress=False)
    lrs = [e["lr"] for e in ck["loss_curve"][1:]]  # 4 batches per epoch: after 4 of 8, lr/2; after 8, 0
    assert lrs[0] == pytest.approx(5e-4) and lrs[1] == pytest.approx(0.0, abs=1e-12)
    assert ck["config"]["lr_schedule"] == "cosine"
    assert ck["loss_curve"][1] != checkpoints["ecmk"]["loss_curve"][1]


def test_init_from_continues_a_checkpoint(ensemble, checkpoints, tmp_path):
    src = rg_training.save_checkpoint(checkpoints["ecmk"], tmp_path / "src.pt")
    ck = rg_training.train(ensemble, family="ecmk", epochs=1, batch_size=16, init_from=src, progress=False)
    # epoch 0 of the continued run is the source's last epoch: same parameters, same held-out data
    assert ck["loss_curve"][0]["val"] == pytest.approx(checkpoints["ecmk"]["loss_curve"][-1]["val"], rel=1e-6)
    assert ck["init_from"]["sha256"] == rg_training.file_sha256(src)
    assert checkpoints["ecmk"]["init_from"] is None
    assert json.loads(rg_export.onnx_metadata(ck, "x")["training_init"]) == ck["init_from"]
    assert "training_init" not in rg_export.onnx_metadata(checkpoints["ecmk"], "x")
    other = rg_training.save_checkpoint(checkpoints["minimal"], tmp_path / "minimal.pt")
    with pytest.raises(ValueError, match="init_from"):
        rg_training.train(ensemble, family="ecmk", epochs=1, init_from=other, progress=False)


def test_ecmk_on_block_means_with_kaufman_target(ensemble):
    ckpt = rg_training.train(ensemble, family="ecmk", trained_on="block_mean", c10_target="kaufman", epochs=1,
                             batch_size=32, val_fraction=0.0, progress=False)
    assert ckpt["config"]["trained_on"] == "block_mean" and ckpt["final"]["split"] == "train"
    assert ckpt["c10_target"] == pytest.approx(-float(isingcore.exact.kaufman_torus(isingcore.BETA_C, 24).energy) / 2)
    assert ckpt["c10_target"] > 2 ** -0.5 and ckpt["final"]["terms"]["c10_target"] == ckpt["c10_target"]
    meta = rg_export.onnx_metadata(ckpt, "ecmk-b3-k9")
    assert meta["trained_on"] == "block_mean" and json.loads(meta["loss_terms"])["split"] == "train"


def test_minimal_learns_identity_on_nn_upsampled_data():
    """Fine = NN-upsampled coarse: maximum likelihood drives the centre coupling up.

    Each fine spin equals its parent, which is the centre of the fine kernel and also two of its
    edge and one of its corner neighbours; the other neighbours belong to random blocks. The
    centre coupling grows largest; the edge coupling grows too (two edges always agree), the
    corner one (three of four corners random) stays smaller in magnitude.
    """
    coarse = _pm1((48, 12, 12), 7).astype(np.int8)
    fine = _upsample(coarse, 2)
    ckpt = rg_training.train(fine, family="minimal", kernel_size=3, epochs=25, batch_size=8, lr=0.05,
                             val_fraction=0.0, progress=False)
    kern = rg_training.model_from_checkpoint(ckpt).fine_kernel().detach().numpy()
    centre, edge, corner = kern[1, 1], kern[0, 1], kern[0, 0]
    assert centre > 1.0 and centre > edge > abs(corner), kern
    losses = [e["train"]["total"] for e in ckpt["loss_curve"]]
    assert losses[-1] < 0.2 * losses[0] and losses[-1] < 0.15, losses


# ---------------------------------------------------------------------------------------------
# ONNX export
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["ecmk", "minimal"])
def test_onnx_round_trip_and_metadata(checkpoints, family, tmp_path):
    ckpt = checkpoints[family]
    name = "ecmk-b3-k9" if family == "ecmk" else "minimal-b2-k7"
    info = rg_export.export_onnx(ckpt, tmp_path / f"{name}.onnx", name)
    assert info["max_abs_diff"] <= 1e-5
    m = onnx.load(str(tmp_path / f"{name}.onnx"))
    onnx.checker.check_model(m)
    assert m.ir_version == 10 and [(o.domain, o.version) for o in m.opset_import] == [("", 17)]
    assert [n.op_type for n in m.graph.node] == ["Conv", "DepthToSpace"]
    d2s = {a.name: onnx.helper.get_attribute_value(a) for a in m.graph.node[1].attribute}
    assert d2s["mode"] == b"CRD" and d2s["blocksize"] == ckpt["scale"]
    assert [i.name for i in m.graph.input] == ["coarse"] and [o.name for o in m.graph.output] == ["field"]
    dims = m.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims][:1] == ["N"] and dims[2].dim_param and dims[3].dim_param
    meta = {p.key: p.value for p in m.metadata_props}
    assert set(META_KEYS) <= set(meta)
    halo, b = ckpt["halo"], ckpt["scale"]
    assert meta["isingcore.format"] == "upscaler-v1" and meta["family"] == family and meta["name"] == name
    assert meta["halo"] == str(halo) and meta["scale"] == str(b) and meta["train_size"] == "24"
    assert meta["trained_on"] == "majority" and float(meta["beta"]) == isingcore.BETA_C
    assert meta["data_sha256"] == ckpt["data_sha256"][0] and meta["isingcore_version"] == isingcore.__version__
    assert float(meta["loss"]) == ckpt["final"]["loss"] and json.loads(meta["loss_terms"])["split"] == "validation"
    if family == "ecmk":
        assert meta["output_kind"] == "mean" and 0 < float(meta["clamp"]) < 1 and meta["parameters"] == "107"
    else:
        assert meta["output_kind"] == "logit" and meta["clamp"] == "" and meta["parameters"] == "10"
    # an independent session on a non-square lattice, against the PyTorch model (float32)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    x = _pm1((3, 1, 5, 8), 8).astype(np.float32)
    (out,) = sess.run(None, {"coarse": np.pad(x, ((0, 0), (0, 0), (halo, halo), (halo, halo)), mode="wrap")})
    model = rg_training.model_from_checkpoint(ckpt)
    ref = _field(model, x, torch.float32)
    assert out.shape == (3, 1, 5 * b, 8 * b) and np.abs(out - ref).max() <= 1e-5


def test_export_check_catches_a_wrong_graph(checkpoints):
    ckpt = checkpoints["ecmk"]
    m = rg_export.build_onnx_model(ckpt)
    wrong = rg_models.ECMK(init_std=0.3, generator=torch.Generator().manual_seed(9))
    with pytest.raises(rg_export.ExportCheckError, match="differs"):
        rg_export.check_onnx_model(m, wrong)


def _tool(name):
    spec = importlib.util.spec_from_file_location(f"_tool_{name}", os.path.join(ROOT, "tools", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_command_line_tools(ensemble, tmp_path, capsys):
    ck = tmp_path / "ck.pt"
    png = tmp_path / "loss.png"
    _tool("train_upscaler").main(["--family", "minimal", "--kernel-size", "3", "--data", ensemble, "--epochs", "1",
                                  "--batch-size", "32", "--seed", "2", "--weighted", "--out", str(ck),
                                  "--loss-png", str(png), "--no-progress"])
    assert ck.is_file() and png.stat().st_size > 0
    ckpt = rg_training.load_checkpoint(ck)
    assert "--weighted" in ckpt["command"] and ckpt["config"]["seed"] == 2 and ckpt["config"]["weighted"]
    out = tmp_path / "models" / "minimal-b2-k3.onnx"
    _tool("export_onnx").main([str(ck), "--name", "minimal-b2-k3", "--out", str(out)])
    assert "max |diff|" in capsys.readouterr().out
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["training_command"] == ckpt["command"] and meta["halo"] == "1"
