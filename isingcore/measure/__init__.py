"""Observables, autocorrelation-aware errors and ensemble estimators."""
