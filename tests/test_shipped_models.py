"""The models shipped in isingcore.models_onnx: complete metadata, exact symmetries, model cards."""

import json
import pathlib

import numpy as np
import pytest

from isingcore.rg import models as M
from isingcore.rg import upscale as U

SHIPPED = {"ecmk-b3-k9": (3, "mean", 107), "ecmk-b3-k9-mse": (3, "mean", 107), "ecmk-b3-k9-g50": (3, "mean", 107),
           "minimal-b2-k3": (2, "logit", 3), "minimal-b2-k5": (2, "logit", 6),
           "minimal-b2-k7": (2, "logit", 10)}
REQUIRED = ("isingcore.format", "family", "name", "scale", "halo", "kernel_size", "output_kind", "clamp", "trained_on",
            "beta", "train_size", "train_count", "loss", "loss_terms", "data_sha256", "date", "isingcore_version",
            "training_command", "parameters")
CARDS = pathlib.Path(M.models_directory())


def shipped_names():
    return sorted(m["name"] for m in M.list_models() if "error" not in m)


def test_the_four_models_are_shipped():
    assert set(SHIPPED) <= set(shipped_names())


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_metadata_and_card(name):
    m = M.load_model(name)
    b, kind, n_par = SHIPPED[name]
    assert (m.scale, m.output_kind, int(m.metadata["parameters"])) == (b, kind, n_par)
    for key in REQUIRED:
        assert key in m.metadata, key
    assert abs(m.beta - 0.4406867935097715) < 1e-12
    assert json.loads(m.metadata["loss_terms"])
    assert len(m.metadata["data_sha256"].split(",")[0]) == 64
    card = (CARDS / f"{name}.md").read_text()
    for needed in ("python tools/train_upscaler.py", "python tools/export_onnx.py", m.metadata["data_sha256"][:16],
                   "Fidelity", "Kaufman"):
        assert needed in card, needed


def d4_ops():
    yield lambda a: a
    for k in (1, 2, 3):
        yield lambda a, k=k: np.rot90(a, k, axes=(-2, -1))
    yield lambda a: a[..., ::-1, :]
    yield lambda a: a[..., :, ::-1]
    yield lambda a: np.swapaxes(a, -1, -2)
    yield lambda a: np.rot90(np.swapaxes(a, -1, -2), 2, axes=(-2, -1))


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_fields_are_d4_and_z2_equivariant(name):
    m = M.load_model(name)
    rs = np.random.default_rng(7)
    c = np.where(rs.random((2, 12, 12)) < 0.5, 1, -1).astype(np.int8)
    f = U.upscale_field(c, m)
    np.testing.assert_array_equal(U.upscale_field(-c, m), -f)
    scale = float(np.abs(f).max())
    for op in d4_ops():
        g = U.upscale_field(np.ascontiguousarray(op(c)), m)
        np.testing.assert_allclose(g, op(f), atol=2e-6 * scale, rtol=0)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_sampling_is_z2_exact_and_reproducible(name):
    m = M.load_model(name)
    rs = np.random.default_rng(3)
    c = np.where(rs.random((2, 8, 8)) < 0.5, 1, -1).astype(np.int8)
    a = U.upscale(c, m, seed=5, stage=1, refine=2)
    np.testing.assert_array_equal(U.upscale(c, m, seed=5, stage=1, refine=2), a)
    np.testing.assert_array_equal(U.upscale(-c, m, seed=5, stage=1, refine=2), -a)
