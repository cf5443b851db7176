"""Exact critical spin-spin correlations of the infinite square lattice (isingcore.exact).

Known values: <s00 s11> = 2/pi, <s00 s22> = 16/(3 pi^2), <s00 s01> = 1/sqrt 2; the closed-form
product against the Toeplitz determinant of Montroll, Potts and Ward; the amplitude
A = 0.70338 of A r^(-1/4) with r Euclidean, approached along the axis and along the diagonal.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from isingcore import exact
from isingcore.constants import DIAGONAL_CORRELATION_C, G_AMPLITUDE_C, NN_CORRELATION_C


def test_known_diagonal_values():
    assert exact.critical_diagonal_correlation(0) == 1.0
    assert exact.critical_diagonal_correlation(1) == pytest.approx(2.0 / math.pi, rel=1e-15)
    assert exact.critical_diagonal_correlation(1) == pytest.approx(DIAGONAL_CORRELATION_C, rel=1e-15)
    assert exact.critical_diagonal_correlation(1) == pytest.approx(0.63662, abs=5e-6)
    assert exact.critical_diagonal_correlation(2) == pytest.approx(16.0 / (3.0 * math.pi**2), rel=1e-14)
    # n = 3: (2/pi)^3 (3/4)^-2 (15/16)^-1
    assert exact.critical_diagonal_correlation(3) == pytest.approx(
        (2 / math.pi) ** 3 / ((3 / 4) ** 2 * (15 / 16)), rel=1e-14)


def test_product_equals_toeplitz_determinant():
    n = np.arange(0, 41)
    prod = exact.critical_diagonal_correlation(n)
    det = exact.critical_diagonal_correlation(n, method="toeplitz")
    np.testing.assert_allclose(prod, det, rtol=1e-12)


def test_scalar_and_array_shapes():
    assert isinstance(exact.critical_diagonal_correlation(3), float)
    assert isinstance(exact.critical_axis_correlation(3), float)
    out = exact.critical_diagonal_correlation(np.array([[1, 2], [3, 4]]))
    assert out.shape == (2, 2)
    assert exact.critical_axis_correlation(np.array([1, 2])).shape == (2,)
    assert exact.critical_diagonal_correlation(np.array([], dtype=int)).shape == (0,)


def test_monotone_decay():
    n = np.arange(0, 2000)
    d = exact.critical_diagonal_correlation(n)
    assert np.all(np.diff(d) < 0) and np.all(d > 0)
    a = exact.critical_axis_correlation(np.arange(0, 60))
    assert np.all(np.diff(a) < 0) and np.all(a > 0)


def test_diagonal_approaches_amplitude_euclidean():
    # A = 0.70338 belongs to r = sqrt(2) n; in diagonal steps the amplitude is 2^(-1/8) A = 0.645
    assert exact.critical_diagonal_amplitude() == pytest.approx(G_AMPLITUDE_C * 2.0**-0.125, rel=1e-15)
    assert exact.critical_diagonal_amplitude() == pytest.approx(0.645002448, abs=1e-9)
    n = np.array([1, 2, 4, 8, 16, 64, 256, 4096, 10**6])
    ratio = exact.critical_diagonal_correlation(n) / exact.critical_correlation_asymptotic(math.sqrt(2.0) * n)
    dev = np.abs(ratio - 1.0)
    assert np.all(np.diff(dev[:-1]) < 0)
    assert dev[-1] < 1e-11  # n = 10^6: the log-sum has no cancellation
    # next term: 1 - 1/(64 n^2)
    big = (n >= 16) & (n <= 4096)
    np.testing.assert_allclose((ratio[big] - 1.0) * n[big] ** 2, -1.0 / 64.0, rtol=2e-3)


def test_axis_correlation_known_values_and_asymptote():
    assert exact.critical_axis_correlation(0) == 1.0
    assert exact.critical_axis_correlation(1) == pytest.approx(NN_CORRELATION_C, rel=1e-14)
    n = np.array([16, 64, 256, 1024])
    ratio = exact.critical_axis_correlation(n) / exact.critical_correlation_asymptotic(n)
    np.testing.assert_allclose((ratio - 1.0) * n**2, 1.0 / 64.0, rtol=2e-2)
    # along the axis the correlation is larger than along the diagonal at the same Euclidean r
    # when r is small (the axis neighbour is closer in the lattice); both tend to A r^(-1/4)
    assert exact.critical_axis_correlation(1) > exact.critical_correlation_asymptotic(1.0)


def test_axis_coefficients_against_quadrature():
    # the symbol of McCoy & Wu ch. VIII at K_c, integrated directly (independent of the factorisation)
    z2 = (math.sqrt(2.0) - 1.0) ** 2
    M = 1 << 18
    theta = 2.0 * np.pi * (np.arange(M) + 0.5) / M
    phi = np.sqrt((1 - z2 * np.exp(1j * theta)) / (1 - z2 * np.exp(-1j * theta))) * np.exp(1j * (np.pi - theta) / 2)
    coeff = np.array([np.mean(phi * np.exp(-1j * d * theta)).real for d in range(-3, 4)])
    from isingcore.exact import _axis_coefficient_table

    np.testing.assert_allclose(_axis_coefficient_table(3), coeff, atol=1e-9)  # midpoint rule across the jump


def test_asymptotic_form():
    assert exact.critical_correlation_asymptotic(1.0) == pytest.approx(0.70338, abs=1e-5)
    np.testing.assert_allclose(exact.critical_correlation_asymptotic(np.array([1.0, 16.0])),
                               [G_AMPLITUDE_C, G_AMPLITUDE_C / 2.0])


@pytest.mark.parametrize("bad, exc, word", [
    (-1, ValueError, "n must be >= 0"),
    (1.5, ValueError, "whole numbers"),
    ("3", TypeError, "n must be"),
    (True, TypeError, "n must be"),
])
def test_bad_distances(bad, exc, word):
    with pytest.raises(exc, match=word):
        exact.critical_diagonal_correlation(bad)
    with pytest.raises(exc, match=word):
        exact.critical_axis_correlation(bad)


def test_bad_method_and_limits():
    with pytest.raises(ValueError, match="method"):
        exact.critical_diagonal_correlation(2, method="series")
    with pytest.raises(ValueError, match="n must be <= 4096"):
        exact.critical_axis_correlation(5000)
    with pytest.raises(ValueError, match="r must be finite and > 0"):
        exact.critical_correlation_asymptotic(0.0)
