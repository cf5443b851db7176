"""Fused fast kernels (installed as ``isingcore.backends``); each is checked against the array-API reference."""
