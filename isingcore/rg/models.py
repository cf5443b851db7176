"""The registry of shipped upscaling models and the checks every model passes before it runs.

Shipped models are ``*.onnx`` files in the package ``isingcore.models_onnx`` (the directory
``models_onnx/`` of the repository, installed as package data), each with its model card
(``<name>.md``) beside it. They follow the ``upscaler-v1`` contract of ``docs/UPSCALING.md``::

    from isingcore.rg.models import list_models, load_model

    for info in list_models():
        print(info["name"], info["family"], info["scale"], info["loss"])
    model = load_model("minimal-b2-k3")          # a shipped name, or a path to an .onnx file
    model.scale, model.halo, model.output_kind, model.clamp, model.beta, model.metadata
    session = model.session()                    # an onnxruntime.InferenceSession (CPU)

:func:`load_model` checks, in this order, and raises :class:`ModelError` (a ``ValueError``;
:class:`ModelNotFoundError` for a missing model, also a ``FileNotFoundError``) naming the file and
the problem:

1. the file exists (else the shipped names are listed);
2. it parses as an ONNX ``ModelProto`` (a small protobuf reader here, so the runtime needs no
   ``onnx`` package) and onnxruntime accepts it;
3. the default-domain opset lies in :data:`OPSET_RANGE` (13 .. 21: ``Conv`` and ``DepthToSpace``
   have had the same semantics since opset 13; the contract writes 17);
4. metadata: ``isingcore.format`` is ``upscaler-v1`` and :data:`REQUIRED_METADATA` are present and
   valid (``scale`` an integer >= 2, ``halo`` >= 0, ``output_kind`` ``mean`` or ``logit``,
   ``clamp`` a number in (0, 1] for ``mean``, ``beta`` finite and > 0);
5. one input named ``coarse`` and one output named ``field``, float32, rank 4;
6. a probe run on a random +-1 input ``(1, 1, 2 + 2 halo, 3 + 2 halo)`` gives a finite output of
   shape ``(1, 1, 2 b, 3 b)`` (the input minus the halo, times b).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import os
from typing import Any

import numpy as np

__all__ = [
    "FORMAT",
    "OPSET_RANGE",
    "REQUIRED_METADATA",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "ModelError",
    "ModelNotFoundError",
    "UpscalerModel",
    "list_models",
    "load_model",
    "models_directory",
]

FORMAT = "upscaler-v1"
#: accepted default-domain opsets (inclusive); the contract writes 17
OPSET_RANGE = (13, 21)
INPUT_NAME = "coarse"
OUTPUT_NAME = "field"
#: metadata keys a model must have (``clamp`` too when ``output_kind`` is ``mean``)
REQUIRED_METADATA = ("isingcore.format", "family", "name", "scale", "halo", "output_kind", "beta")
OUTPUT_KINDS = ("mean", "logit")
#: environment variable: a directory that replaces the shipped registry (private collections, tests)
MODELS_ENV = "ISINGCORE_MODELS_DIR"


class ModelError(ValueError):
    """A model file is unusable: unparseable, wrong metadata, names, opset or output shape."""


class ModelNotFoundError(ModelError, FileNotFoundError):
    """Neither a file nor a shipped model of that name exists."""


# --------------------------------------------------------------------------------------------
# A minimal protobuf reader for the parts of ModelProto that are checked here
# --------------------------------------------------------------------------------------------
class _ProtoError(Exception):
    pass


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise _ProtoError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _ProtoError("varint longer than 10 bytes")


def _fields(buf: bytes):
    """Yield (field number, wire type, value) of one message; value is int (varint/fixed) or bytes."""
    pos, n = 0, len(buf)
    while pos < n:
        key, pos = _varint(buf, pos)
        num, wt = key >> 3, key & 7
        if num == 0:
            raise _ProtoError("field number 0")
        if wt == 0:
            val, pos = _varint(buf, pos)
        elif wt == 1:
            if pos + 8 > n:
                raise _ProtoError("truncated 64-bit field")
            val, pos = int.from_bytes(buf[pos:pos + 8], "little"), pos + 8
        elif wt == 2:
            ln, pos = _varint(buf, pos)
            if pos + ln > n:
                raise _ProtoError("length-delimited field runs past the end")
            val, pos = buf[pos:pos + ln], pos + ln
        elif wt == 5:
            if pos + 4 > n:
                raise _ProtoError("truncated 32-bit field")
            val, pos = int.from_bytes(buf[pos:pos + 4], "little"), pos + 4
        else:
            raise _ProtoError(f"unsupported wire type {wt}")
        yield num, wt, val


def _text(v: Any) -> str:
    if not isinstance(v, bytes):
        raise _ProtoError("expected a string field")
    try:
        return v.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _ProtoError("a string field is not UTF-8") from exc


def parse_model_proto(data: bytes) -> dict:
    """``ir_version``, ``opsets`` {domain: version}, ``metadata`` {key: value}, ``graph`` (bool).

    Raises ``ValueError`` if ``data`` is not a well-formed protobuf with these fields.
    """
    out: dict = {"ir_version": None, "opsets": {}, "metadata": {}, "graph": False}
    try:
        for num, wt, val in _fields(data):
            if num == 1 and wt == 0:
                out["ir_version"] = val
            elif num == 7 and wt == 2:
                out["graph"] = True
            elif num == 8 and wt == 2:
                domain, version = "", None
                for n2, w2, v2 in _fields(val):
                    if n2 == 1 and w2 == 2:
                        domain = _text(v2)
                    elif n2 == 2 and w2 == 0:
                        version = v2
                out["opsets"][domain] = version
            elif num == 14 and wt == 2:
                key, value = None, ""
                for n2, w2, v2 in _fields(val):
                    if n2 == 1 and w2 == 2:
                        key = _text(v2)
                    elif n2 == 2 and w2 == 2:
                        value = _text(v2)
                if key is not None:
                    out["metadata"][key] = value
    except _ProtoError as exc:
        raise ValueError(str(exc)) from None
    if out["ir_version"] is None or not out["graph"]:
        raise ValueError("no ir_version or no graph (not an ONNX ModelProto)")
    return out


# --------------------------------------------------------------------------------------------
# The model object
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class UpscalerModel:
    """A validated ``upscaler-v1`` model (see :func:`load_model`)."""

    path: str | None
    name: str
    family: str
    scale: int
    halo: int
    kernel_size: int | None
    output_kind: str
    clamp: float | None
    beta: float
    opset: int
    metadata: dict
    data: bytes = dataclasses.field(repr=False)

    def session(self, backend: str = "numpy", *, device_id: int = 0, threads: int | None = None):
        """A new ``onnxruntime.InferenceSession``: CPU for ``backend="numpy"``, CUDA for ``"cupy"``.

        The CUDA session uses cuDNN's HEURISTIC convolution search (band shapes change between
        stages). Raises :class:`isingcore.BackendUnavailableError` if the CUDA provider does not
        really run here (onnxruntime-gpu lists it even without a GPU).
        """
        from ..onnx_runtime import open_session

        return open_session(self.data, backend, device_id=device_id, threads=threads)

    def summary(self) -> dict:
        """The model card fields shown by ``isingcore models``."""
        md = self.metadata
        return {
            "name": self.name,
            "family": self.family,
            "scale": self.scale,
            "halo": self.halo,
            "kernel_size": self.kernel_size,
            "output_kind": self.output_kind,
            "clamp": self.clamp,
            "beta": self.beta,
            "trained_on": md.get("trained_on", ""),
            "parameters": md.get("parameters", ""),
            "loss": md.get("loss", ""),
            "train_size": md.get("train_size", ""),
            "train_count": md.get("train_count", ""),
            "path": self.path,
        }


def _fail(where: str, msg: str):
    raise ModelError(f"{where}: {msg}")


def _int_field(md: dict, key: str, where: str, minimum: int) -> int:
    try:
        v = int(md[key])
    except (TypeError, ValueError):
        _fail(where, f"metadata {key}={md[key]!r} is not an integer")
    if v < minimum:
        _fail(where, f"metadata {key}={v} must be >= {minimum}")
    return v


def _float_field(md: dict, key: str, where: str) -> float:
    try:
        v = float(md[key])
    except (TypeError, ValueError):
        _fail(where, f"metadata {key}={md[key]!r} is not a number")
    if not math.isfinite(v):
        _fail(where, f"metadata {key}={md[key]!r} is not finite")
    return v


def validate_model_bytes(data: bytes, where: str, path: str | None = None) -> UpscalerModel:
    """Run every check of :func:`load_model` on the bytes of a model; ``where`` names it in errors."""
    try:
        proto = parse_model_proto(data)
    except ValueError as exc:
        _fail(where, f"cannot be parsed as an ONNX model ({exc}); the file is corrupt or not ONNX")
    opset = proto["opsets"].get("", proto["opsets"].get("ai.onnx"))
    lo, hi = OPSET_RANGE
    if opset is None:
        _fail(where, "imports no default-domain (ai.onnx) opset")
    if not lo <= opset <= hi:
        _fail(where, f"uses opset {opset}; upscaler-v1 models need an ai.onnx opset in [{lo}, {hi}] (17 is standard)")
    md = dict(proto["metadata"])
    fmt = md.get("isingcore.format")
    if fmt is None:
        _fail(where, f"has no 'isingcore.format' metadata: not an isingcore upscaler (expected {FORMAT!r})")
    if fmt != FORMAT:
        _fail(where, f"has isingcore.format={fmt!r}; this version of isingcore reads {FORMAT!r}")
    missing = [k for k in REQUIRED_METADATA if k not in md]
    if missing:
        _fail(where, f"metadata is missing the keys {missing} (docs/UPSCALING.md lists them)")
    scale = _int_field(md, "scale", where, 2)
    halo = _int_field(md, "halo", where, 0)
    kind = md["output_kind"]
    if kind not in OUTPUT_KINDS:
        _fail(where, f"metadata output_kind={kind!r}; allowed values: {', '.join(map(repr, OUTPUT_KINDS))}")
    clamp = None
    if kind == "mean":
        if not md.get("clamp"):
            _fail(where, "output_kind='mean' needs the metadata 'clamp' (A, the bound of the conditional mean)")
        clamp = _float_field(md, "clamp", where)
        if not 0.0 < clamp <= 1.0:
            _fail(where, f"metadata clamp={clamp} must lie in (0, 1]")
    beta = _float_field(md, "beta", where)
    if beta <= 0:
        _fail(where, f"metadata beta={beta} must be > 0")
    kernel_size = None
    if md.get("kernel_size"):
        kernel_size = _int_field(md, "kernel_size", where, 1)

    try:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 4
        with contextlib.redirect_stdout(io.StringIO()):
            sess = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
    except ImportError:
        raise
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises several private exception types
        _fail(where, f"onnxruntime cannot load it: {str(exc).strip().splitlines()[0][:300]}")
    ins, outs = sess.get_inputs(), sess.get_outputs()
    if [i.name for i in ins] != [INPUT_NAME]:
        _fail(where, f"has inputs {[i.name for i in ins]}; upscaler-v1 needs exactly one input named {INPUT_NAME!r}")
    if [o.name for o in outs] != [OUTPUT_NAME]:
        _fail(where, f"has outputs {[o.name for o in outs]}; upscaler-v1 needs exactly one output named {OUTPUT_NAME!r}")
    for v, what in ((ins[0], "input"), (outs[0], "output")):
        if v.type != "tensor(float)" or len(v.shape) != 4:
            _fail(where, f"{what} {v.name!r} is {v.type} of rank {len(v.shape)}; expected float32 (N, 1, H, W)")
    H, W = 2, 3
    probe = np.random.default_rng(0).choice(np.array([-1.0, 1.0], np.float32), size=(1, 1, H + 2 * halo, W + 2 * halo))
    try:
        (y,) = sess.run([OUTPUT_NAME], {INPUT_NAME: probe})
    except Exception as exc:  # noqa: BLE001
        _fail(where, f"fails on a (1, 1, {H + 2 * halo}, {W + 2 * halo}) input (halo {halo}): "
                     f"{str(exc).strip().splitlines()[0][:300]}")
    want = (1, 1, scale * H, scale * W)
    if tuple(y.shape) != want:
        _fail(where, f"maps a (1, 1, {H + 2 * halo}, {W + 2 * halo}) input to {tuple(y.shape)}; with scale={scale} and "
                     f"halo={halo} the output must be {want} (b times the input minus the halo)")
    if not np.all(np.isfinite(y)):
        _fail(where, "gives non-finite output on a +-1 input")
    return UpscalerModel(path=path, name=md["name"], family=md["family"], scale=scale, halo=halo,
                         kernel_size=kernel_size, output_kind=kind, clamp=clamp, beta=beta, opset=int(opset),
                         metadata=md, data=bytes(data))


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------
def models_directory() -> str:
    """Directory of the shipped models (``$ISINGCORE_MODELS_DIR`` replaces it when set)."""
    env = os.environ.get(MODELS_ENV)
    if env:
        return env
    from importlib import resources

    return str(resources.files("isingcore.models_onnx"))


def _shipped_files(directory: str | None = None) -> list[str]:
    d = directory or models_directory()
    if not os.path.isdir(d):
        return []
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".onnx"))


def list_models(directory: str | None = None) -> list[dict]:
    """The shipped models (or those of ``directory``), sorted by file name.

    Each entry is :meth:`UpscalerModel.summary` plus ``file`` and ``metadata``; a file that fails
    the checks is listed with ``error`` (the message) instead of the fields.
    """
    out = []
    for f in _shipped_files(directory):
        try:
            m = _load_file(f)
        except ModelError as exc:
            out.append({"name": os.path.splitext(os.path.basename(f))[0], "file": f, "error": str(exc)})
            continue
        out.append({**m.summary(), "file": f, "metadata": dict(m.metadata)})
    return out


def _load_file(path: str) -> UpscalerModel:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ModelError(f"model file {path}: cannot be read ({exc.strerror or exc})") from exc
    return validate_model_bytes(data, f"model file {path}", path=os.path.abspath(path))


def load_model(name_or_path, directory: str | None = None) -> UpscalerModel:
    """A validated model from a path to an ``.onnx`` file or the name of a shipped model.

    Names match the file name without ``.onnx`` or the ``name`` metadata. An
    :class:`UpscalerModel` is returned unchanged.
    """
    if isinstance(name_or_path, UpscalerModel):
        return name_or_path
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"model must be a shipped model name, a path or an UpscalerModel, got {type(name_or_path).__name__}")
    s = os.fspath(name_or_path)
    if os.path.isfile(s):
        return _load_file(s)
    files = _shipped_files(directory)
    for f in files:
        if os.path.splitext(os.path.basename(f))[0] == s:
            return _load_file(f)
    names = []
    for f in files:
        try:
            m = _load_file(f)
        except ModelError:
            names.append(os.path.splitext(os.path.basename(f))[0])
            continue
        if m.name == s:
            return m
        names.append(m.name)
    where = directory or models_directory()
    avail = ", ".join(sorted(set(names))) if names else f"none (the registry {where} holds no .onnx files)"
    looks_like_path = os.sep in s or s.endswith(".onnx")
    what = "no such model file" if looks_like_path else "no such file and no shipped model of that name"
    raise ModelNotFoundError(f"model {s!r}: {what}; shipped models: {avail}")
