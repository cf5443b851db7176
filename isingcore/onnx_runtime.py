"""onnxruntime glue: which execution providers really work here.

``onnxruntime-gpu`` lists ``CUDAExecutionProvider`` in ``get_available_providers()`` even on a
machine without a GPU (DESIGN.md section 4); only a session that was actually created tells the
truth. :func:`usable_providers` opens a session on a one-node model for each candidate provider
and reports those the session kept.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import io

# A one-node ONNX model (Identity on a float[1]; IR version 7, opset 13) made with onnx.helper.
_PROBE_MODEL = base64.b64decode(
    "CAcSCWlzaW5nY29yZTo7ChAKAXgSAXkiCElkZW50aXR5EgVwcm9iZVoPCgF4EgoKCAgBEgQKAggBYg8KAXkSCgoICAESBAoCCAFCBAoAEA0="
)


@functools.lru_cache(maxsize=None)
def usable_providers() -> tuple[tuple[str, ...], str]:
    """(providers that a session really uses, note). Silences onnxruntime's own error logging."""
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError as exc:
        return (), f" (onnxruntime not importable: {exc})"
    ort.set_default_logger_severity(4)
    usable = []
    for prov in ort.get_available_providers():
        try:
            opts = ort.SessionOptions()
            opts.log_severity_level = 4
            with contextlib.redirect_stdout(io.StringIO()):  # onnxruntime prints its fallback notice
                sess = ort.InferenceSession(_PROBE_MODEL, sess_options=opts, providers=[prov])
            if prov in sess.get_providers():
                sess.run(None, {"x": np.ones(1, np.float32)})
                usable.append(prov)
        except Exception:  # noqa: BLE001 - a provider that fails to start is simply not usable
            continue
    listed = ort.get_available_providers()
    note = ""
    if set(listed) - set(usable):
        note = f" (listed but not usable: {', '.join(p for p in listed if p not in usable)})"
    return tuple(usable), note


def open_session(data: bytes, backend: str = "numpy", *, device_id: int = 0, threads: int | None = None):
    """An ``onnxruntime.InferenceSession`` on serialized model bytes: CPU for ``backend="numpy"``
    (and ``"array_api_strict"``), CUDA for ``"cupy"``.

    The CUDA session uses cuDNN's HEURISTIC convolution search (input shapes change from call to
    call). Raises :class:`isingcore.BackendUnavailableError` if the CUDA provider does not really
    run here (onnxruntime-gpu lists it even without a GPU).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads is not None:
        opts.intra_op_num_threads = int(threads)
    if backend == "cupy":
        providers = [("CUDAExecutionProvider", {"device_id": int(device_id), "cudnn_conv_algo_search": "HEURISTIC"}),
                     "CPUExecutionProvider"]
    elif backend in ("numpy", "array_api_strict"):
        providers = ["CPUExecutionProvider"]
    else:
        raise ValueError(f"backend={backend!r} is not supported; allowed values: 'numpy', 'cupy', 'array_api_strict'")
    with contextlib.redirect_stdout(io.StringIO()):
        sess = ort.InferenceSession(data, sess_options=opts, providers=providers)
    if backend == "cupy" and "CUDAExecutionProvider" not in sess.get_providers():
        from ._array import BackendUnavailableError

        raise BackendUnavailableError(
            "backend='cupy': onnxruntime's CUDA provider is not usable here (the session fell back to "
            f"{sess.get_providers()}); install onnxruntime-gpu with matching CUDA/cuDNN libraries")
    return sess
