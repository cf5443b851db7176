"""Metropolis and heat bath against exact results (Kaufman; transfer matrix), within 4 sigma.

Errors are Gamma-method errors (autocorrelation included) over 64 independent replicas. At these
sample sizes the relative error of the energy is ~1e-3 and of the specific heat ~1-2 %, so a
wrong acceptance rule, a wrong neighbour, or a biased random number fails the test.
"""

import pytest
from statistics_testing import check, energy_magnetization_series

import isingcore
from isingcore import exact
from isingcore.measure import gamma_method, specific_heat

R = 64
CASES = [(L, K) for L in (8, 16) for K in (isingcore.BETA_C, 0.3, 0.6)]


def sample_series(L, K, algorithm, n_therm, n_meas, seed):
    sim = isingcore.Simulation(L, K, algorithm, seed=seed, replicas=R, start="cold" if K > 0.5 else "random")
    return energy_magnetization_series(sim, n_therm, n_meas)


@pytest.mark.parametrize("algorithm", ["metropolis", "heatbath"])
@pytest.mark.parametrize("L,K", CASES)
def test_energy_and_specific_heat_match_kaufman(algorithm, L, K):
    e, m = sample_series(L, K, algorithm, n_therm=1000, n_meas=3000, seed=17 + L)
    ref = exact.kaufman_torus(K, L)
    check("energy", gamma_method(e), ref.energy)
    check("specific heat", specific_heat(e, K, L * L), ref.specific_heat)
    if L == 8:
        mm = exact.magnetization_moments(K, L)
        check("<m^2>", gamma_method(m**2), mm.m2)
        check("<m^4>", gamma_method(m**4), mm.m4)


def test_a_wrong_temperature_is_detected():
    """The same test at a coupling off by 2 % fails: the test has power."""
    e, _ = sample_series(16, isingcore.BETA_C * 1.02, "heatbath", n_therm=1000, n_meas=3000, seed=3)
    ref = exact.kaufman_torus(isingcore.BETA_C, 16)
    est = gamma_method(e)
    assert abs(est.mean - ref.energy) / est.error > 8
