"""Renormalization group: coarse-graining, inverse-RG upscaling with ONNX models, model registry.

- :mod:`isingcore.rg.coarse`: majority rule (b = 2 with random ties, b = 3), decimation, block mean.
- :mod:`isingcore.rg.upscale`: onnxruntime generation pipeline (NumPy on the CPU, CuPy on CUDA).
- :mod:`isingcore.rg.models`: the shipped models in ``isingcore.models_onnx`` and their checks.
- :mod:`isingcore.rg.train`: PyTorch training (optional ``train`` extra; never imported by the runtime).

The interfaces between them are fixed in ``docs/UPSCALING.md``.
"""
