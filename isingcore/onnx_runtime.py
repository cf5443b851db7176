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
