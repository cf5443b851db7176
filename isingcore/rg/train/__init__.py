"""PyTorch training and ONNX export of the inverse-RG upscalers (optional ``train`` extra).

Needs ``torch`` (and ``onnx`` for the export); the runtime (:mod:`isingcore.rg.upscale`) never
imports this package. The contract with the runtime is ``docs/UPSCALING.md``.

- :mod:`.models`: :class:`ECMK` (b = 3, seed 000) and :class:`MinimalUpscaler` (b = 2, seed 003),
  both exactly D4-equivariant and Z2-odd.
- :mod:`.training`: :func:`train` on isingcore HDF5 ensembles, checkpoints, loss curves.
- :mod:`.export`: :func:`export_onnx` to the ``upscaler-v1`` graph, checked against PyTorch.

Command-line tools: ``tools/train_upscaler.py`` and ``tools/export_onnx.py``.
"""

from .models import ECMK, MinimalUpscaler, build_model
from .training import (
    TrainConfig,
    TrainingData,
    load_checkpoint,
    load_ensembles,
    model_from_checkpoint,
    plot_loss_curve,
    save_checkpoint,
    train,
)

__all__ = [
    "ECMK",
    "MinimalUpscaler",
    "TrainConfig",
    "TrainingData",
    "build_model",
    "export_onnx",
    "load_checkpoint",
    "load_ensembles",
    "model_from_checkpoint",
    "plot_loss_curve",
    "save_checkpoint",
    "train",
]


def __getattr__(name):
    if name == "export_onnx":  # needs onnx; imported on first use
        from .export import export_onnx

        return export_onnx
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
