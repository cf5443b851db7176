"""Markov-chain Monte Carlo samplers: one array-API reference each, fast kernels dispatched."""
