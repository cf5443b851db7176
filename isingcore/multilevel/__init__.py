"""Multilevel samplers with exact probabilities (seed 001: MLMC-HB and RiGCS).

* :mod:`.hierarchy`: the decimation levels of an L = 2**n torus;
* :mod:`.coarsest`: exact sampling of the coarsest c x c lattice by enumeration;
* :mod:`.sampler`: :class:`MultilevelSampler`, ancestral sampling with exact ``ln q``;
* :mod:`.models`: trained conditionals (manifest + ONNX networks);
* :mod:`.estimators`: ESS, ``ln Z``, reweighting, mode dropping, independence Metropolis-Hastings.
"""

from .estimators import (IndependenceChain, effective_sample_size, independence_metropolis, log_partition_function,
                         mode_dropping, reweight)
from .hierarchy import Hierarchy, Level
from .models import MultilevelModel, MultilevelModelError, list_models, load_model
from .sampler import MultilevelSample, MultilevelSampler, bond_sum

__all__ = [
    "Hierarchy", "Level", "MultilevelSampler", "MultilevelSample", "MultilevelModel", "MultilevelModelError",
    "list_models", "load_model", "bond_sum", "effective_sample_size", "log_partition_function", "reweight",
    "mode_dropping", "independence_metropolis", "IndependenceChain",
]
