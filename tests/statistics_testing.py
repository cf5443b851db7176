"""Shared helpers of the statistical tests against exact results (local, Wolff, Swendsen-Wang)."""

import numpy as np


def check(name, est, exact_value, nsigma=4.0):
    """Assert that a Gamma-method estimate agrees with the exact value within ``nsigma`` errors; return z."""
    assert est.error > 0, name
    z = (est.mean - exact_value) / est.error
    assert abs(z) < nsigma, f"{name}: {est} vs exact {exact_value:.8f} (z = {z:+.2f}, tau_int = {est.tau_int:.1f})"
    return z


def energy_magnetization_series(sim, n_therm, n_meas, after_thermalization=None):
    """Thermalise ``sim``, then measure energy and magnetization per site every sweep: (R, n_meas) each."""
    sim.sweep(n_therm)
    if after_thermalization is not None:
        after_thermalization(sim)
    e = np.empty((sim.replicas, n_meas))
    m = np.empty((sim.replicas, n_meas))
    for t in range(n_meas):
        sim.sweep(1)
        e[:, t] = sim.energy()
        m[:, t] = sim.magnetization()
    return e, m


def reject(name, est, wrong_value, nsigma=4.0):
    """Assert that a Gamma-method estimate is incompatible (|z| > ``nsigma``) with a wrong value; return z.

    The companion of :func:`check`: with the same samples, the exact value at a wrong coupling must be
    rejected, which shows that the error bars are small enough for the comparison to be a real test.
    """
    assert est.error > 0, name
    z = (est.mean - wrong_value) / est.error
    assert abs(z) > nsigma, f"{name}: {est} does not reject the wrong value {wrong_value:.8f} (z = {z:+.2f})"
    return z
