"""Export a trained upscaler checkpoint to the ONNX graph of ``docs/UPSCALING.md`` (``upscaler-v1``).

The graph is ``Conv(1 -> b*b, kernel 2*halo+1, no padding, no bias) -> DepthToSpace(b, "CRD")``,
opset 17, IR version 10, input ``coarse`` float32 ``(N, 1, H + 2 halo, W + 2 halo)`` (padded
periodically by the caller), output ``field`` float32 ``(N, 1, b H, b W)``, N, H, W dynamic.
The Conv kernel is the model's effective coarse-lattice kernel
(:meth:`~isingcore.rg.train.models._Upscaler.coarse_kernel`): for the ECMK the D4-projected
kernel times ``w1``; for the minimal model the exact rewrite of NN upsampling + the symmetric
``k x k`` fine convolution as a coarse convolution.

Before anything is written, :func:`check_onnx_model` runs the graph in onnxruntime (CPU) on
random +-1 inputs of several sizes, square and not, padded with ``np.pad(mode="wrap")``, and
compares with the PyTorch model's unclamped field (circular convolution, evaluated in float64) on
the unpadded input: the largest absolute difference must be <= ``tol`` (1e-5), else
:class:`ExportCheckError`.
"""

from __future__ import annotations

import copy
import json
import os

import numpy as np
import torch

from .training import load_checkpoint, model_from_checkpoint

__all__ = [
    "FORMAT",
    "IR_VERSION",
    "OPSET",
    "ExportCheckError",
    "build_onnx_model",
    "check_onnx_model",
    "export_onnx",
    "onnx_metadata",
]

FORMAT = "upscaler-v1"
OPSET = 17
IR_VERSION = 10
DEFAULT_CHECK_SIZES = ((4, 4), (5, 7), (9, 6), (12, 12))


class ExportCheckError(RuntimeError):
    """The exported graph does not reproduce the PyTorch model's field."""


def default_name(ckpt: dict) -> str:
    """``ecmk-b3-k9``, ``minimal-b2-k3``, ..."""
    return f"{ckpt['family']}-b{ckpt['scale']}-k{ckpt['kernel_size']}"


def onnx_metadata(ckpt: dict, name: str) -> dict[str, str]:
    """The ``metadata_props`` of UPSCALING.md, all strings.

    ``train_size`` is ``L`` for an ``L x L`` training lattice, ``LxxLy`` otherwise; ``data_sha256``
    the SHA-256 of the training file, or the comma-separated hashes of several files in the order
    given; ``loss`` the final validation loss (the final training loss when nothing was held out)
    and ``loss_terms`` its parts as JSON, plus ``"split"``; ``parameters`` the number of free
    parameters (ECMK: independent kernel entries + w1 + A); ``date`` when the model was trained;
    ``isingcore_version`` the version that exports; ``training_init`` (only for a training
    continued from a checkpoint) that checkpoint's path, SHA-256, command and final loss as JSON.
    """
    import isingcore

    Lx, Ly = ckpt["train_size"]
    final = ckpt["final"]
    terms = {"split": final["split"], **final["terms"]}
    meta = {
        "isingcore.format": FORMAT,
        "family": ckpt["family"],
        "name": name,
        "scale": str(ckpt["scale"]),
        "halo": str(ckpt["halo"]),
        "kernel_size": str(ckpt["kernel_size"]),
        "output_kind": ckpt["output_kind"],
        "clamp": repr(float(ckpt["clamp"])) if ckpt["output_kind"] == "mean" else "",
        "trained_on": ckpt["config"]["trained_on"],
        "beta": repr(float(ckpt["beta"])),
        "train_size": str(Lx) if Lx == Ly else f"{Lx}x{Ly}",
        "train_count": str(ckpt["train_count"]),
        "loss": repr(float(final["loss"])),
        "loss_terms": json.dumps(terms, sort_keys=True),
        "data_sha256": ",".join(ckpt["data_sha256"]),
        "date": ckpt["date"],
        "isingcore_version": isingcore.__version__,
        "training_command": ckpt["command"],
        "parameters": str(ckpt["parameters"]),
    }
    if ckpt.get("init_from"):  # a continued training: where it started (path, SHA-256, command, loss)
        meta["training_init"] = json.dumps(ckpt["init_from"], sort_keys=True)
    return meta


def build_onnx_model(ckpt, name: str | None = None):
    """The ``upscaler-v1`` ``onnx.ModelProto`` of a checkpoint (dict or path), metadata included."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    ckpt = load_checkpoint(ckpt)
    name = name or default_name(ckpt)
    model = model_from_checkpoint(ckpt)
    weight = model.coarse_kernel().astype(np.float32)
    b, halo = int(ckpt["scale"]), int(ckpt["halo"])
    K = 2 * halo + 1
    if weight.shape != (b * b, 1, K, K):
        raise ValueError(f"checkpoint kernel has shape {weight.shape}, expected {(b * b, 1, K, K)}")
    nodes = [
        helper.make_node("Conv", ["coarse", "weight"], ["subpixels"], kernel_shape=[K, K], pads=[0, 0, 0, 0],
                         strides=[1, 1], dilations=[1, 1], group=1),
        helper.make_node("DepthToSpace", ["subpixels"], ["field"], blocksize=b, mode="CRD"),
    ]
    graph = helper.make_graph(
        nodes, name.replace("-", "_"),
        [helper.make_tensor_value_info("coarse", TensorProto.FLOAT, ["N", 1, "H_padded", "W_padded"])],
        [helper.make_tensor_value_info("field", TensorProto.FLOAT, ["N", 1, "H_fine", "W_fine"])],
        initializer=[numpy_helper.from_array(weight, "weight")],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="isingcore",
                          doc_string=f"isingcore {FORMAT}: {name}")
    m.ir_version = IR_VERSION
    helper.set_model_props(m, onnx_metadata(ckpt, name))
    onnx.checker.check_model(m)
    return m


def check_onnx_model(onnx_model, torch_model: torch.nn.Module, *, sizes=DEFAULT_CHECK_SIZES, batch: int = 2,
                     seed: int = 0, tol: float = 1e-5) -> float:
    """Largest ``|onnxruntime(pad_wrap(x)) - torch_model.field(x)|`` over random +-1 inputs of ``sizes``.

    Raises :class:`ExportCheckError` (naming the size) if it exceeds ``tol``.
    """
    import onnxruntime as ort

    halo = int(torch_model.halo)
    b = int(torch_model.scale)
    data = onnx_model if isinstance(onnx_model, bytes) else onnx_model.SerializeToString()
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    ref_model = copy.deepcopy(torch_model).double().eval()
    rng = np.random.default_rng(seed)
    worst = 0.0
    for H, W in sizes:
        x = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(batch, 1, H, W))
        padded = np.pad(x, ((0, 0), (0, 0), (halo, halo), (halo, halo)), mode="wrap")
        (got,) = sess.run(["field"], {"coarse": padded})
        with torch.no_grad():
            ref = ref_model.field(torch.from_numpy(x.astype(np.float64))).numpy()
        if got.shape != (batch, 1, b * H, b * W):
            raise ExportCheckError(f"ONNX output has shape {got.shape} for a {H}x{W} coarse input, expected "
                                   f"{(batch, 1, b * H, b * W)}")
        diff = float(np.max(np.abs(got.astype(np.float64) - ref)))
        if not diff <= tol:
            raise ExportCheckError(f"ONNX field differs from the PyTorch model's by {diff:.3g} > {tol:g} on a "
                                   f"{H}x{W} coarse input (halo {halo}): the export is wrong")
        worst = max(worst, diff)
    return worst


def export_onnx(checkpoint, path: str | os.PathLike, name: str | None = None, *, check: bool = True,
                sizes=DEFAULT_CHECK_SIZES, tol: float = 1e-5) -> dict:
    """Build, check and write the ONNX model of ``checkpoint`` (dict or path) to ``path``.

    Returns ``{"path", "name", "max_abs_diff" (None without check), "metadata"}``. Nothing is
    written if the check fails (:class:`ExportCheckError`).
    """
    import onnx

    ckpt = load_checkpoint(checkpoint)
    name = name or default_name(ckpt)
    m = build_onnx_model(ckpt, name)
    diff = check_onnx_model(m, model_from_checkpoint(ckpt), sizes=sizes, tol=tol) if check else None
    path = os.fspath(path)
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    tmp = path + ".tmp"
    onnx.save_model(m, tmp)
    os.replace(tmp, path)
    return {"path": path, "name": name, "max_abs_diff": diff, "metadata": {p.key: p.value for p in m.metadata_props}}
