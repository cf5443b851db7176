"""Observables, autocorrelation-aware errors and ensemble estimators.

* :mod:`~isingcore.measure.observables` -- per-configuration observables written against the
  array API (NumPy, CuPy, array-api-strict): :func:`magnetization`, :func:`nn_correlations`,
  :func:`diagonal_correlation`, :func:`energy_per_site`, :func:`measure`.
* :mod:`~isingcore.measure.autocorrelation` -- U. Wolff's Γ-method (Comput. Phys. Commun. 156
  (2004) 143): :func:`gamma_method`, :func:`derived`, the binned :func:`jackknife`,
  :func:`normalized_autocorrelation`, and the result type :class:`Estimate`.
* :mod:`~isingcore.measure.correlations` -- spin-spin correlations and the structure factor:
  per configuration (array API, one FFT) :func:`correlation_map`, :func:`correlation_along_axes`,
  :func:`correlation_along_diagonals`, :func:`structure_factor`, :func:`tiled_correlation`;
  ensembles with Γ-method/jackknife errors :func:`correlation_function`,
  :func:`second_moment_correlation_length`, :func:`structure_factor_ensemble`; helpers
  :func:`wavevectors`, :func:`shell_average`, :func:`second_moment_xi`.
* :mod:`~isingcore.measure.ensemble` -- :func:`binder_cumulant`, :func:`susceptibility`,
  :func:`susceptibility_connected`, :func:`specific_heat`,
  :func:`magnetization_energy_cumulant`, and :func:`analyze_series` for a whole table.

Only NumPy is imported here; the array-API helpers are imported when first used.
"""

from .autocorrelation import (
    Estimate,
    GammaMethodWarning,
    normalized_autocorrelation,
    derived,
    format_value_error,
    gamma_method,
    jackknife,
)
from .correlations import (
    CorrelationFunction,
    ShellAverage,
    StructureFactorEnsemble,
    TiledCorrelation,
    correlation_along_axes,
    correlation_along_diagonals,
    correlation_function,
    correlation_map,
    second_moment_correlation_length,
    second_moment_xi,
    shell_average,
    structure_factor,
    structure_factor_ensemble,
    tiled_correlation,
    wavevectors,
)
from .ensemble import (
    analyze_series,
    binder_cumulant,
    magnetization_energy_cumulant,
    specific_heat,
    susceptibility,
    susceptibility_connected,
)
from .observables import (
    OBSERVABLES,
    diagonal_correlation,
    energy_per_site,
    magnetization,
    measure,
    nn_correlations,
)

__all__ = [
    "Estimate",
    "GammaMethodWarning",
    "normalized_autocorrelation",
    "derived",
    "format_value_error",
    "gamma_method",
    "jackknife",
    "CorrelationFunction",
    "ShellAverage",
    "StructureFactorEnsemble",
    "TiledCorrelation",
    "correlation_along_axes",
    "correlation_along_diagonals",
    "correlation_function",
    "correlation_map",
    "second_moment_correlation_length",
    "second_moment_xi",
    "shell_average",
    "structure_factor",
    "structure_factor_ensemble",
    "tiled_correlation",
    "wavevectors",
    "analyze_series",
    "binder_cumulant",
    "magnetization_energy_cumulant",
    "specific_heat",
    "susceptibility",
    "susceptibility_connected",
    "OBSERVABLES",
    "diagonal_correlation",
    "energy_per_site",
    "magnetization",
    "measure",
    "nn_correlations",
]
