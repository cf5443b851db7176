r"""Exact results for the Ising model on the square lattice.

Conventions (used by every function here)
-----------------------------------------
``H = -J sum_<ij> s_i s_j - h sum_i s_i`` with ``s_i = +-1`` on an ``Lx x Ly`` torus (periodic
in both directions).  There are ``N = Lx*Ly`` sites and ``2N`` bonds; for ``Lx = 2`` (or
``Ly = 2``) the two bonds between the same pair of sites both count, and for ``Lx = 1`` (or
``Ly = 1``) a site is bonded to itself, exactly as the transfer matrix counts them.
``K = beta*J``; the closed forms (Onsager, Kaufman) need ``J > 0``, the transfer matrix and
the enumeration accept any real ``J`` and a field ``h``.  "Per site" means divided by ``N``:

* ``ln_z = ln(Z)/N`` (``= -beta f``),
* ``energy u = <H>/N``,
* ``specific_heat c = beta^2 (<H^2> - <H>^2)/N`` (in units of k_B),
* ``m = M/N`` with ``M = sum_i s_i`` (magnetization per site).

What is here
------------
* Infinite lattice: :func:`onsager_free_energy`, :func:`onsager_energy`,
  :func:`onsager_specific_heat`, :func:`spontaneous_magnetization`.
* Finite torus, any size: :func:`kaufman_torus` (``ln Z``, energy and specific heat from
  Kaufman's closed form, with analytic derivatives, entirely in the log domain).
* Finite torus, short side <= 10: :func:`magnetization_moments`,
  :func:`magnetization_distribution`, :func:`binder_cumulant_exact` (row transfer matrix that
  carries the distribution of the magnetization).
* Brute force, N <= 20 sites: :func:`enumerate_torus`, and :func:`boltzmann_weights` (all
  states and their probabilities, N <= 16).
* Infinite lattice at ``K_c``, spin-spin correlations: :func:`critical_diagonal_correlation`
  (closed-form product, or the Toeplitz determinant), :func:`critical_axis_correlation`
  (Toeplitz determinant), :func:`critical_correlation_asymptotic` (``A r^(-1/4)``).
* The critical constants of :mod:`isingcore.constants`, re-exported.

References
----------
.. [Onsager44] L. Onsager, "Crystal statistics. I. A two-dimensional model with an
   order-disorder transition", Phys. Rev. 65, 117 (1944).
.. [Kaufman49] B. Kaufman, "Crystal statistics. II. Partition function evaluated by spinor
   analysis", Phys. Rev. 76, 1232 (1949).
.. [Yang52] C. N. Yang, "The spontaneous magnetization of a two-dimensional Ising model",
   Phys. Rev. 85, 808 (1952).
.. [FF69] A. E. Ferdinand and M. E. Fisher, "Bounded and inhomogeneous Ising models. I.
   Specific-heat anomaly of a finite lattice", Phys. Rev. 185, 832 (1969).
.. [Beale96] P. D. Beale, "Exact distribution of energies in the two-dimensional Ising
   model", Phys. Rev. Lett. 76, 78 (1996) (the form of Kaufman's result used here).
.. [Huang87] K. Huang, Statistical Mechanics, 2nd ed. (Wiley, 1987), the chapter on
   Onsager's solution (energy and specific heat in terms of complete elliptic integrals).
.. [MPW63] E. W. Montroll, R. B. Potts and J. C. Ward, "Correlations and spontaneous
   magnetization of the two-dimensional Ising model", J. Math. Phys. 4, 308 (1963).
.. [Wu66] T. T. Wu, "Theory of Toeplitz determinants and the spin correlations of the
   two-dimensional Ising model. I", Phys. Rev. 149, 380 (1966).
.. [MW73] B. M. McCoy and T. T. Wu, The Two-Dimensional Ising Model (Harvard University
   Press, 1973), ch. VIII (row correlations) and ch. XI (diagonal correlations, T = T_c).
.. [AS64] M. Abramowitz and I. A. Stegun, Handbook of Mathematical Functions (1964), 17.6
   (arithmetic-geometric mean for K(k) and E(k)).
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import NamedTuple

import numpy as np

from .constants import (
    BETA_C,
    BETA_EXPONENT,
    BINDER_C,
    DIAGONAL_CORRELATION_C,
    ENERGY_C,
    ETA,
    G_AMPLITUDE_C,
    GAMMA,
    K_C,
    NN_CORRELATION_C,
    NU,
    Y_H,
    Y_T,
)

__all__ = [
    # constants (re-exported from isingcore.constants)
    "BETA_C", "K_C", "NN_CORRELATION_C", "DIAGONAL_CORRELATION_C", "ENERGY_C", "BINDER_C",
    "NU", "BETA_EXPONENT", "GAMMA", "ETA", "Y_T", "Y_H", "G_AMPLITUDE_C",
    # infinite lattice
    "onsager_free_energy", "onsager_energy", "onsager_specific_heat",
    "spontaneous_magnetization", "elliptic_k_e",
    # finite torus
    "TorusExact", "kaufman_torus",
    "MagnetizationMoments", "magnetization_moments", "magnetization_distribution",
    "binder_cumulant_exact",
    # brute force
    "EnumerationResult", "enumerate_torus", "boltzmann_weights",
    "MAX_ENUMERATION_SITES", "MAX_BOLTZMANN_SITES", "MAX_TRANSFER_WIDTH", "MAX_TRANSFER_SITES",
    # critical spin-spin correlations of the infinite lattice
    "critical_diagonal_correlation", "critical_axis_correlation", "critical_correlation_asymptotic",
    "critical_diagonal_amplitude", "MAX_TOEPLITZ_ORDER",
]

_LN2 = math.log(2.0)

#: Largest number of sites :func:`enumerate_torus` accepts (2^20 states).
MAX_ENUMERATION_SITES = 20
#: Largest number of sites :func:`boltzmann_weights` accepts (2^16 states).
MAX_BOLTZMANN_SITES = 16
#: Largest short side of the torus for the magnetization transfer matrix (2^10 row states).
MAX_TRANSFER_WIDTH = 10
#: Largest number of sites for the magnetization transfer matrix.
MAX_TRANSFER_SITES = 400


# --------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------

def _check_beta(beta, *, scalar: bool = False):
    """Return beta as a float64 array (or Python float when ``scalar``); must be finite, > 0."""
    if isinstance(beta, (bool, np.bool_)):
        raise TypeError(f"beta must be a real number (or array of them), got {beta!r}")
    try:
        b = np.asarray(beta, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"beta must be a real number (or array of them), got {beta!r}") from None
    if scalar and b.ndim != 0:
        raise ValueError(f"beta must be a scalar here, got an array of shape {b.shape}")
    if b.size == 0:
        raise ValueError("beta must not be empty")
    if not np.all(np.isfinite(b)) or np.any(b <= 0.0):
        raise ValueError(f"beta must be finite and > 0 (inverse temperature), got {beta!r}")
    return float(b) if scalar else b


def _check_size(name: str, value) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer, got {value!r}")
    value = int(value)
    if value < 1:
        raise ValueError(f"{name} must be a positive integer (>= 1), got {value}")
    return value


def _check_coupling(J, *, positive: bool) -> float:
    if isinstance(J, (bool, np.bool_)) or not isinstance(J, numbers.Real):
        raise TypeError(f"J must be a real number, got {J!r}")
    J = float(J)
    if not math.isfinite(J):
        raise ValueError(f"J must be finite, got {J!r}")
    if positive and J <= 0.0:
        raise ValueError(
            f"J must be > 0 (ferromagnetic coupling; the exact solutions here assume it), got {J!r}"
        )
    return J


def _check_field(h) -> float:
    if isinstance(h, (bool, np.bool_)) or not isinstance(h, numbers.Real):
        raise TypeError(f"h must be a real number, got {h!r}")
    h = float(h)
    if not math.isfinite(h):
        raise ValueError(f"h must be finite, got {h!r}")
    return h


def _out(x, like: np.ndarray):
    """Float for 0-d input, array otherwise."""
    x = np.asarray(x, dtype=np.float64)
    return float(x) if like.ndim == 0 else x


# --------------------------------------------------------------------------------------------
# Infinite lattice: Onsager
# --------------------------------------------------------------------------------------------

def _sech_minus_tanh(x):
    """sech(x) - tanh(x) = (1 - sinh x)/cosh x, accurate near sinh x = 1 and for large x."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        small = (1.0 - np.sinh(x)) / np.cosh(x)
        e = np.exp(-x)
        large = 2.0 * e / (1.0 + e * e) - np.tanh(x)
    return np.where(x < 20.0, small, large)


def _onsager_moduli(K):
    """Elliptic modulus k = 2 sinh 2K / cosh^2 2K, k' = |1 - sinh^2 2K| / cosh^2 2K, and the
    signed k'' = 2 tanh^2 2K - 1 (so k' = |k''|), each without overflow or cancellation."""
    t = np.tanh(2.0 * K)
    e = np.exp(-2.0 * K)
    sech = 2.0 * e / (1.0 + e * e)
    d = _sech_minus_tanh(2.0 * K)                  # (1 - sinh 2K)/cosh 2K
    kpp = -d * (sech + t)                          # 2 tanh^2 2K - 1 = tanh^2 - sech^2
    k = 2.0 * t * sech
    return k, np.abs(kpp), kpp


def _agm(k, kp):
    """Arithmetic-geometric mean a = AGM(1, k') together with 1 - a and
    ``rsum = sum_{n>=1} 2^(n-1) c_n^2`` [AS64 17.6], so that ``K(k) = pi/(2a)``,
    ``2K/pi - 1 = (1 - a)/a`` and ``K - E = K (k^2/2 + rsum)``, each to full relative
    precision (the deviations from 1 are carried separately, for small ``k``)."""
    a = np.ones_like(k)
    b = kp.copy()
    alpha = np.zeros_like(k)                     # 1 - a
    beta = k * k / (1.0 + kp)                    # 1 - b = 1 - k'
    c = k.copy()
    rsum = np.zeros_like(k)
    power = 0.5
    for _ in range(80):
        a, b = 0.5 * (a + b), np.sqrt(a * b)
        alpha, beta = 0.5 * (alpha + beta), (alpha + beta - alpha * beta) / (1.0 + b)
        power *= 2.0
        c = c * c / (4.0 * a)                    # c_{n+1} = c_n^2 / (4 a_{n+1})
        rsum = rsum + power * c * c
        if np.all(c <= 1e-17 * a):
            break
    return a, alpha, rsum


def elliptic_k_e(k, kp=None):
    r"""Complete elliptic integrals K(k) and E(k) of modulus ``k`` by the AGM [AS64 17.6].

    ``K(k) = int_0^{pi/2} dt / sqrt(1 - k^2 sin^2 t) = pi / (2 AGM(1, k'))`` and
    ``E(k) = K(k) (1 - sum_{n>=0} 2^(n-1) c_n^2)`` with ``a_0 = 1, b_0 = k', c_0 = k``,
    ``c_{n+1} = c_n^2 / (4 a_{n+1})``.  ``k' = sqrt(1 - k^2)`` may be passed separately when it
    is known more accurately than ``1 - k^2``.  ``K(1) = inf`` and ``E(1) = 1``.
    Note the *modulus* convention: ``scipy.special.ellipk(m)`` takes ``m = k^2``.
    """
    k = np.asarray(k, dtype=np.float64)
    if np.any(np.isnan(k)) or np.any((k < 0) | (k > 1)):
        raise ValueError("k must lie in [0, 1] (elliptic modulus)")
    if kp is None:
        kp = np.sqrt((1.0 - k) * (1.0 + k))
    k, kp = np.broadcast_arrays(k, np.asarray(kp, dtype=np.float64))
    a, _, rsum = _agm(k, kp)
    with np.errstate(divide="ignore", invalid="ignore"):
        kk = np.where(kp == 0.0, np.inf, 0.5 * np.pi / a)
        ee = np.where(kp == 0.0, 1.0, kk * (1.0 - 0.5 * k * k - rsum))
    return kk, ee


def _onsager_pieces(K):
    """``tanh 2K``, the energy bracket ``1 + (2/pi) k'' K(k) = 2 tanh^2 2K + k'' (1 - a)/a``
    and the specific-heat brace ``K - E - sech^2 2K (pi/2 + k'' K) = (pi/2) (rsum + sech^2 2K
    (1 - a)) / a`` (``k'' = 2 tanh^2 2K - 1``, ``a = AGM(1, k')``, ``rsum`` from :func:`_agm`).
    The second form of each follows from ``k^2 = 4 tanh^2 2K sech^2 2K`` and
    ``2 tanh^2 2K - k'' = 1``; it has no cancellation at high temperature (bracket ~ 4K^2)
    nor at low temperature (brace ~ e^{-8K}), where the textbook forms lose all digits."""
    k, kp, kpp = _onsager_moduli(K)
    a, alpha, rsum = _agm(k, kp)
    t = np.tanh(2.0 * K)
    e = np.exp(-2.0 * K)
    sech2 = (2.0 * e / (1.0 + e * e)) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        bracket = np.where(kp == 0.0, 2.0 * t * t, 2.0 * t * t + kpp * (alpha / a))
        brace = np.where(kp == 0.0, np.inf, 0.5 * np.pi * (rsum + sech2 * alpha) / a)
    return t, bracket, brace


def onsager_energy(beta, J=1.0):
    r"""Internal energy per site of the infinite square lattice [Onsager44, Huang87].

    .. math::
        u = -J \coth 2K \left[1 + \frac{2}{\pi}\,(2\tanh^2 2K - 1)\,\mathsf{K}(k)\right],
        \qquad k = \frac{2\sinh 2K}{\cosh^2 2K},

    with ``K = beta*J`` and ``K(k)`` the complete elliptic integral of the first kind
    (computed by the arithmetic-geometric mean).  Continuous at ``K_c``:
    ``u(K_c) = -sqrt(2) J``.  The bracket is evaluated as
    ``2 tanh^2 2K + (2 tanh^2 2K - 1)(2K(k)/pi - 1)`` so that ``u ~ -2JK`` keeps its relative
    accuracy at high temperature.  Accepts a scalar or an array of ``beta``.
    """
    b = _check_beta(beta)
    J = _check_coupling(J, positive=True)
    K = b * J
    t, bracket, _ = _onsager_pieces(K)
    return _out(-J / t * bracket, b)


def onsager_specific_heat(beta, J=1.0):
    r"""Specific heat per site (units of k_B) of the infinite square lattice [Onsager44, Huang87].

    .. math::
        c = \frac{4}{\pi}(K\coth 2K)^2 \Big\{\mathsf{K}(k) - \mathsf{E}(k)
            - (1-\tanh^2 2K)\Big[\frac{\pi}{2} + (2\tanh^2 2K - 1)\mathsf{K}(k)\Big]\Big\},

    ``K = beta*J``, ``k = 2 sinh 2K / cosh^2 2K``, ``E(k)`` the complete elliptic integral of
    the second kind; this is ``-K^2 du/dK / J`` of :func:`onsager_energy` (using
    ``dK/dk = E/(k k'^2) - K/k``).  It is evaluated in the equivalent form
    ``c = 2 (K coth 2K)^2 (sum_{n>=1} 2^(n-1) c_n^2 + sech^2 2K (1 - a)) / a`` in terms of the
    AGM quantities ``a = AGM(1, k')``, ``c_n`` (see :func:`elliptic_k_e`): a sum of positive
    terms, accurate to ~1e-15 relative from ``c ~ 2K^2`` at high temperature to
    ``c ~ e^{-8K}`` at low temperature.  It diverges logarithmically at ``K_c``,
    ``c ~ (8 K_c^2/pi) ln(1/|1 - K/K_c|)``, and ``inf`` is returned where ``k = 1`` exactly
    (which includes ``beta*J == BETA_C``).
    """
    b = _check_beta(beta)
    J = _check_coupling(J, positive=True)
    K = b * J
    t, _, brace = _onsager_pieces(K)
    with np.errstate(invalid="ignore", over="ignore"):
        c = 4.0 / np.pi * (K / t) * ((K / t) * brace)
    c = np.where(np.isinf(brace), np.inf, c)
    return _out(c, b)


@functools.lru_cache(maxsize=None)
def _graded_gauss_nodes(levels: int = 56, order: int = 20):
    """Gauss-Legendre nodes/weights on [0, pi/2] for panels [pi/2^(j+2), pi/2^(j+1)] graded
    geometrically towards 0, plus a last panel [0, pi/2^(levels+1)]."""
    x, w = np.polynomial.legendre.leggauss(order)
    edges = [0.5 * np.pi * 0.5**j for j in range(levels + 1)] + [0.0]
    nodes, weights = [], []
    for hi, lo in zip(edges[:-1], edges[1:]):
        half = 0.5 * (hi - lo)
        nodes.append(lo + half * (x + 1.0))
        weights.append(half * w)
    return np.concatenate(nodes), np.concatenate(weights)


def onsager_free_energy(beta, J=1.0):
    r"""``ln Z / N = -beta f`` of the infinite square lattice [Onsager44].

    Onsager's double integral

    .. math::
        -\beta f = \ln 2 + \frac{1}{2\pi^2}\int_0^\pi\!\!\int_0^\pi d\theta_1 d\theta_2\,
        \ln\left[\cosh^2 2K - \sinh 2K(\cos\theta_1 + \cos\theta_2)\right]

    reduces (doing the inner integral in closed form) to

    .. math::
        -\beta f = \ln(2\cosh 2K) + \frac{1}{\pi}\int_0^{\pi/2} d\theta\,
        \ln\frac{1 + \sqrt{1 - k^2\sin^2\theta}}{2}, \qquad k = \frac{2\sinh 2K}{\cosh^2 2K}.

    The integrand has branch points at distance ``~ asinh(k'/k)`` from ``theta = pi/2``
    (``k' = sqrt(1-k^2)``, zero at ``K_c``), so it is integrated with Gauss-Legendre panels
    graded geometrically towards ``pi/2`` (20 nodes on each of 57 panels); the quadrature
    error is below 1e-15 for every ``K``, including ``K_c`` where the result is
    ``ln(2)/2 + 2G/pi`` (``G`` = Catalan's constant).
    """
    b = _check_beta(beta)
    J = _check_coupling(J, positive=True)
    K = b * J
    k, kp, _ = _onsager_moduli(K)
    phi, w = _graded_gauss_nodes()               # phi = pi/2 - theta
    kf = k.reshape(-1, 1)
    kpf = kp.reshape(-1, 1)
    sphi = np.sin(phi)
    cphi = np.cos(phi)
    root = np.sqrt(kpf * kpf + (kf * sphi) ** 2)   # sqrt(1 - k^2 sin^2 theta)
    # ln((1 + root)/2) = log1p((root - 1)/2) with root - 1 = -k^2 cos^2(phi) / (1 + root)
    integrand = np.log1p(-0.5 * (kf * cphi) ** 2 / (1.0 + root))
    integral = (integrand @ w).reshape(K.shape)
    e4 = np.exp(-4.0 * K)
    ln_2cosh2k = 2.0 * K + np.log1p(e4)          # ln(2 cosh 2K)
    return _out(ln_2cosh2k + integral / np.pi, b)


def spontaneous_magnetization(beta, J=1.0):
    r"""Spontaneous magnetization per site of the infinite lattice [Yang52].

    ``m_0 = (1 - sinh(2K)^-4)^(1/8)`` for ``K = beta*J > K_c``, and 0 for ``K <= K_c``.
    """
    b = _check_beta(beta)
    J = _check_coupling(J, positive=True)
    K = b * J
    with np.errstate(over="ignore", divide="ignore", under="ignore"):
        inv_s4 = 1.0 / np.sinh(2.0 * K) ** 4
    m0 = np.where(K > BETA_C, np.clip(1.0 - inv_s4, 0.0, None) ** 0.125, 0.0)
    return _out(m0, b)


# --------------------------------------------------------------------------------------------
# Finite torus: Kaufman / Ferdinand-Fisher
# --------------------------------------------------------------------------------------------

class TorusExact(NamedTuple):
    """Exact per-site results for a finite torus (see :func:`kaufman_torus`)."""

    ln_z: float | np.ndarray
    """ln(Z)/N = -beta f."""
    energy: float | np.ndarray
    """<H>/N."""
    specific_heat: float | np.ndarray
    """beta^2 (<H^2> - <H>^2)/N."""


def _log_cosh_factor(m, A, A1, A2, gam, gam1, gam2):
    """ln F, (ln F)', (ln F)'' for F = e^{mA/2} + e^{mB/2}, B = A - 2 gam, gam > 0 (' = d/dK)."""
    rho = np.exp(-m * gam)
    pb = rho / (1.0 + rho)
    lnf = 0.5 * m * A + np.log1p(rho)
    d1 = 0.5 * m * A1 - m * gam1 * pb
    d2 = 0.5 * m * A2 - m * gam2 * pb + (m * gam1) ** 2 * pb * (1.0 - pb)
    return lnf, d1, d2


def _log_sinh_factor(m, A, A1, A2, gam, gam1, gam2):
    """ln F, (ln F)', (ln F)'' for F = e^{mA/2} - e^{mB/2}, B = A - 2 gam, gam > 0."""
    rho = np.exp(-m * gam)
    om = -np.expm1(-m * gam)                     # 1 - rho
    r1 = rho / om                                # 1/(e^{m gam} - 1)
    lnf = 0.5 * m * A + np.log(om)
    d1 = 0.5 * m * A1 + m * gam1 * r1
    d2 = 0.5 * m * A2 + m * gam2 * r1 - (m * gam1) ** 2 * r1 / om
    return lnf, d1, d2


def _kaufman_log_derivatives(K, m: int, n: int):
    r"""``(ln Z, d ln Z/dK, d^2 ln Z/dK^2)`` (totals, not per site) of the ``m x n`` torus.

    Kaufman's result [Kaufman49, FF69, Beale96]:

    ``Z = 1/2 (2 sinh 2K)^{mn/2} (Z_1 + Z_2 + Z_3 + Z_4)`` with
    ``Z_1 = prod_{q odd} 2 cosh(m g_q/2)``, ``Z_2 = prod_{q odd} 2 sinh(m g_q/2)``,
    ``Z_3 = prod_{q even} 2 cosh(m g_q/2)``, ``Z_4 = prod_{q even} 2 sinh(m g_q/2)``,
    ``q = 0..2n-1`` (n values in each product),
    ``cosh g_q = cosh 2K coth 2K - cos(pi q/n)`` and ``g_0 = 2K + ln tanh K`` *with its sign*.

    The prefactor is shared out over the factors: ``(2 sinh 2K)^{m/2} 2cosh(m g/2) =
    lam_+^{m/2} + lam_-^{m/2}`` with ``lam_+- = 2 sinh 2K e^{+-g}``.  For ``q != 0``,
    ``lam_+ = 2 cosh^2 2K (P + R)`` with ``P = 1 - G cos th``, ``G = sinh 2K / cosh^2 2K``,
    ``R = sqrt(P^2 - G^2) = sqrt(((sech 2K - tanh 2K)^2 + 2G sin^2(th/2))(1 + 2G sin^2(th/2)))``
    (exact at small ``g``); for ``q = 0``, ``lam = (e^{2K} - 1)^2`` and ``(1 + e^{-2K})^2``
    (ratio ``e^{2 g_0}``).  With this sharing no ``1/K`` terms cancel at high temperature
    (the ones left, from the small eigenvalue, carry weights ``e^{-m g}``), nothing overflows
    at low temperature, and ``g`` itself is computed from ``asinh(R/G)`` near zero.  The four
    terms are combined by a signed log-sum-exp whose derivatives are taken relative to
    ``D = d ln Z_1/dK``, so no ``O(N^2)`` quantities are subtracted.
    ``K`` may be an array; the result has its shape.
    """
    K = np.asarray(K, dtype=np.float64)[..., None]
    e2 = np.exp(-2.0 * K)                        # e^{-2K}
    e4 = e2 * e2                                 # e^{-4K}
    th = np.tanh(2.0 * K)                        # tanh 2K
    eh = 2.0 * e2 / (1.0 + e4)                   # sech 2K
    d = _sech_minus_tanh(2.0 * K)                # sech 2K - tanh 2K
    one_m_2th2 = d * (eh + th)                   # 1 - 2 tanh^2 2K (zero at K_c)
    G = th * eh                                  # sinh 2K / cosh^2 2K
    G1 = 2.0 * eh * one_m_2th2                   # dG/dK
    G2 = -4.0 * G * (5.0 - 6.0 * th * th)        # d^2G/dK^2
    # ln G = ln tanh 2K - ln cosh 2K, ln tanh 2K = ln(1 - e^{-4K}) - ln(1 + e^{-4K})
    ln_cosh2k = 2.0 * K - _LN2 + np.log1p(e4)
    lnG = np.log(-np.expm1(-4.0 * K)) - np.log1p(e4) - ln_cosh2k
    G1_over_G = 2.0 * one_m_2th2 / th            # (dG/dK)/G

    def nonzero_q(q):
        """A = ln lam_+, gam and their derivatives for the given q != 0 (arrays)."""
        s2 = np.sin(0.5 * np.pi * q / n) ** 2    # sin^2(theta/2)
        cs = 1.0 - 2.0 * s2                      # cos theta
        sin2 = 4.0 * s2 * (1.0 - s2)             # sin^2 theta
        P = 1.0 - G * cs
        R = np.sqrt((d * d + 2.0 * G * s2) * (1.0 + 2.0 * G * s2))   # (P-G)(P+G), exact form
        Q = P * cs + G
        P1, P2 = -G1 * cs, -G2 * cs
        R1 = -G1 * Q / R
        R2 = (-(G1 * G1) * sin2 - G2 * Q - R1 * R1) / R
        U = P + R
        U1, U2 = P1 + R1, P2 + R2
        u1 = U1 / U
        A = _LN2 + 2.0 * ln_cosh2k + np.log(U)
        A1 = 4.0 * th + u1
        A2 = 8.0 * eh * eh + U2 / U - u1 * u1
        # cosh gam = P/G, sinh gam = R/G; e^gam = U/G
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            gam = np.where(R < G, np.arcsinh(R / G), np.log(U) - lnG)
        gam1 = u1 - G1_over_G
        # gam'' = (U'/U)' - (G'/G)', with G''/G = -4 (5 - 6 tanh^2 2K)
        gam2 = U2 / U - u1 * u1 + 4.0 * (5.0 - 6.0 * th * th) + G1_over_G * G1_over_G
        return A, A1, A2, gam, gam1, gam2

    # q = 0: lam_a = (e^{2K}-1)^2, lam_b = (1+e^{-2K})^2, (lam_a/lam_b) = e^{2 g0}
    om2 = -np.expm1(-2.0 * K)                    # 1 - e^{-2K}
    A0 = 2.0 * (2.0 * K + np.log(om2))
    A01 = 4.0 / om2
    A02 = -8.0 * e2 / (om2 * om2)
    B0 = 2.0 * np.log1p(e2)
    B01 = -4.0 * e2 / (1.0 + e2)
    B02 = 8.0 * e2 / (1.0 + e2) ** 2
    g0 = 0.5 * (A0 - B0)                         # 2K + ln tanh K, signed
    half_m = 0.5 * m

    # Z1, Z2: odd q
    A, A1, A2, gam, gam1, gam2 = nonzero_q(np.arange(1, 2 * n, 2))
    c_odd = _log_cosh_factor(m, A, A1, A2, gam, gam1, gam2)
    s_odd = _log_sinh_factor(m, A, A1, A2, gam, gam1, gam2)
    # Z3, Z4: even q != 0
    if n > 1:
        A, A1, A2, gam, gam1, gam2 = nonzero_q(np.arange(2, 2 * n, 2))
        c_even = _log_cosh_factor(m, A, A1, A2, gam, gam1, gam2)
        s_even = _log_sinh_factor(m, A, A1, A2, gam, gam1, gam2)
    else:
        zero = np.zeros_like(K)
        c_even = s_even = (zero, zero, zero)

    def total(f):
        return tuple(np.sum(x, axis=-1) for x in f)

    a1, d1_1, d2_1 = total(c_odd)
    a2, d1_2, d2_2 = total(s_odd)
    a3r, d1_3r, d2_3r = total(c_even)
    a4r, d1_4r, d2_4r = total(s_even)
    K = K[..., 0]
    A0, A01, A02, B0, B01, B02, g0 = (x[..., 0] for x in (A0, A01, A02, B0, B01, B02, g0))

    # q = 0 cosh factor: e^{mA0/2} + e^{mB0/2}
    top = half_m * np.maximum(A0, B0)
    r = np.exp(-m * np.abs(g0))
    pa = np.where(g0 >= 0, 1.0 / (1.0 + r), r / (1.0 + r))     # weight of e^{mA0/2}
    pb = np.where(g0 >= 0, r / (1.0 + r), 1.0 / (1.0 + r))     # weight of e^{mB0/2}
    lnf0 = top + np.log1p(r)
    f01 = half_m * (pa * A01 + pb * B01)
    f02 = half_m * (pa * A02 + pb * B02) + half_m**2 * pa * pb * (A01 - B01) ** 2
    a3 = a3r + lnf0
    d1_3 = d1_3r + f01
    d2_3 = d2_3r + f02

    # q = 0 sinh factor: e^{mA0/2} - e^{mB0/2} = e^{top} * ghat, may be <= 0
    ea = np.exp(half_m * A0 - top)
    eb = np.exp(half_m * B0 - top)
    ghat = np.sign(g0) * (-np.expm1(-m * np.abs(g0)))
    g1 = half_m * (A01 * ea - B01 * eb)
    g2 = half_m**2 * (A01 * A01 * ea - B01 * B01 * eb) + half_m * (A02 * ea - B02 * eb)
    a4 = a4r + top

    # signed log-sum-exp with derivatives, centred on D = d ln Z1/dK
    D = d1_1
    x2 = d1_2 - D
    x3 = d1_3 - D
    x4 = d1_4r - D
    amax = np.maximum(np.maximum(a1, a2), np.maximum(a3, a4))
    w1, w2, w3, w4 = (np.exp(a - amax) for a in (a1, a2, a3, a4))
    S0 = w1 + w2 + w3 + w4 * ghat
    S1 = w2 * x2 + w3 * x3 + w4 * (g1 + ghat * x4)
    S2 = (w1 * d2_1 + w2 * (d2_2 + x2 * x2) + w3 * (d2_3 + x3 * x3)
          + w4 * (g2 + 2.0 * g1 * x4 + ghat * (d2_4r + x4 * x4)))
    ln_z = -_LN2 + amax + np.log(S0)
    s1 = S1 / S0
    dln = D + s1
    d2ln = S2 / S0 - s1 * s1
    return ln_z, dln, d2ln


def kaufman_torus(beta, Lx, Ly=None, J=1.0):
    r"""Exact ``ln Z/N``, energy and specific heat per site of the ``Lx x Ly`` torus.

    Kaufman's closed form [Kaufman49], as written by Ferdinand & Fisher [FF69] and Beale
    [Beale96], for ``m`` rows of ``n`` spins (``q`` labels the fermion momenta of a ring of
    ``n`` spins, antiperiodic for odd ``q``, periodic for even ``q``; ``m`` is the power of
    the row transfer matrix):

    .. math::
        Z = \tfrac12 (2\sinh 2K)^{mn/2} \sum_{i=1}^4 Z_i,\quad
        Z_{1,2} = \prod_{q\ \mathrm{odd}} 2\{\cosh,\sinh\}(m\gamma_q/2),\quad
        Z_{3,4} = \prod_{q\ \mathrm{even}} 2\{\cosh,\sinh\}(m\gamma_q/2),

    ``q = 0 .. 2n-1``, ``cosh gamma_q = cosh 2K coth 2K - cos(pi q/n)`` (``gamma_q > 0`` for
    ``q != 0``) and ``gamma_0 = 2K + ln tanh K`` taken *with its sign* (negative for
    ``K < K_c``, zero at ``K_c``), so ``Z_4`` may be negative or zero.  ``K = beta*J``.

    ``energy = -(J/N) d ln Z/dK`` and ``specific_heat = (K^2/N) d^2 ln Z/dK^2`` come from the
    closed-form K-derivatives of every ``gamma_q`` (chain rule through the signed
    log-sum-exp), not from finite differences.  Everything is done in the log domain, so
    any size (e.g. ``1024 x 1024``) gives finite results for ``1e-150 <= K <= 1e300``
    (``FloatingPointError`` outside).

    The result is symmetric under ``m <-> n`` although the formula is not manifestly so
    (both orientations are checked against enumeration in the tests); it is evaluated with
    ``m = max(Lx, Ly)``, ``n = min(Lx, Ly)`` (fewest ``q`` values, smallest ratios
    ``e^{-m gamma_q}``).  Sides of 1 and 2 are exact too (self-bonds, doubled bonds).

    Accuracy: ~1e-15 relative for ``ln_z``, energy and specific heat at ordinary
    temperatures.  For ``K << 1`` the energy (``~ -2JK``) is a sum of ``O(J)`` terms and has
    an absolute accuracy of ~1e-16 J rather than a relative one.  For ``K >> 1`` the specific
    heat is exponentially small (``~ e^{-8K}``) while the terms it is built from are
    ``O(e^{-2K})``: its accuracy is ~1e-16 absolute (e.g. 1e-11 relative at ``K = 2``).

    Parameters
    ----------
    beta : float or array_like, > 0
    Lx, Ly : int >= 1 (``Ly`` defaults to ``Lx``)
    J : float > 0

    Returns
    -------
    TorusExact(ln_z, energy, specific_heat), floats (or arrays shaped like ``beta``).
    """
    b = _check_beta(beta)
    Lx = _check_size("Lx", Lx)
    Ly = Lx if Ly is None else _check_size("Ly", Ly)
    J = _check_coupling(J, positive=True)
    K = b * J
    N = Lx * Ly
    with np.errstate(all="ignore"):
        ln_z, d1, d2 = _kaufman_log_derivatives(K, max(Lx, Ly), min(Lx, Ly))
        result = (ln_z / N, -J * d1 / N, K * (K * d2) / N)
    if not all(np.all(np.isfinite(x)) for x in result):
        raise FloatingPointError(
            f"kaufman_torus: non-finite result for beta*J = {K!r}; the closed form is evaluated "
            "in double precision for 1e-150 <= beta*J <= 1e300")
    return TorusExact(*(_out(x, b) for x in result))


# --------------------------------------------------------------------------------------------
# Brute-force enumeration
# --------------------------------------------------------------------------------------------

def _all_states(Lx: int, Ly: int) -> np.ndarray:
    """All 2^N configurations, int8 (2^N, Lx, Ly); bit k = x*Ly + y of the index set <=> s = -1."""
    N = Lx * Ly
    idx = np.arange(2**N, dtype=np.int64)
    bits = (idx[:, None] >> np.arange(N, dtype=np.int64)[None, :]) & 1
    return (1 - 2 * bits).astype(np.int8).reshape(-1, Lx, Ly)


def _torus_bonds(Lx: int, Ly: int):
    """The 2N bonds (k, l) of the Lx x Ly torus, site k = x*Ly + y: (x, y)-(x+1, y) and
    (x, y)-(x, y+1), periodic; a side of 2 lists each pair twice, a side of 1 gives k = l."""
    bonds = []
    for x in range(Lx):
        for y in range(Ly):
            k = x * Ly + y
            bonds.append((k, ((x + 1) % Lx) * Ly + y))
            bonds.append((k, x * Ly + (y + 1) % Ly))
    return bonds


def _bond_sum_and_magnetization(Lx: int, Ly: int):
    """For every state index i (bit k set <=> s_k = -1): B = sum over the 2N bonds of s_k s_l
    and M = sum_k s_k, as int64 arrays of length 2^N, by bit operations on i."""
    N = Lx * Ly
    idx = np.arange(2**N, dtype=np.int64)
    n_down = np.zeros(2**N, dtype=np.int64)
    for k in range(N):
        n_down += (idx >> k) & 1
    n_broken = np.zeros(2**N, dtype=np.int64)
    for k, l in _torus_bonds(Lx, Ly):
        n_broken += ((idx >> k) ^ (idx >> l)) & 1
    return 2 * N - 2 * n_broken, N - 2 * n_down


@functools.lru_cache(maxsize=16)
def _joint_density_of_states(Lx: int, Ly: int):
    """Exact joint density of states: distinct (B, M) pairs and their integer counts."""
    bonds, mag = _bond_sum_and_magnetization(Lx, Ly)
    N = Lx * Ly
    key = (bonds + 2 * N) * (2 * N + 1) + (mag + N)
    counts = np.bincount(key)
    keys = np.flatnonzero(counts)
    counts = counts[keys]
    B = keys // (2 * N + 1) - 2 * N
    M = keys % (2 * N + 1) - N
    for arr in (B, M, counts):
        arr.setflags(write=False)
    return B, M, counts


class EnumerationResult(NamedTuple):
    """Per-site exact averages from brute-force enumeration (see :func:`enumerate_torus`)."""

    ln_z: float
    """ln(Z)/N."""
    energy: float
    """<H>/N."""
    specific_heat: float
    """beta^2 (<H^2> - <H>^2)/N."""
    abs_m: float
    """<|m|>, m = M/N."""
    m2: float
    """<m^2>."""
    m4: float
    """<m^4>."""
    m: float
    """<m>."""


def _check_enumeration_size(Lx, Ly, limit, func):
    Lx = _check_size("Lx", Lx)
    Ly = _check_size("Ly", Ly)
    if Lx * Ly > limit:
        raise ValueError(f"{func}: Lx*Ly must be <= {limit} sites (2^N states), got {Lx}*{Ly} = "
                         f"{Lx * Ly}")
    return Lx, Ly


def _logsumexp(x):
    top = np.max(x)
    return top + np.log(np.sum(np.exp(x - top)))


def enumerate_torus(beta, Lx, Ly, J=1.0, h=0.0) -> EnumerationResult:
    r"""Exact averages by summing over all ``2^N`` states of the ``Lx x Ly`` torus (N <= 20).

    ``Z = sum_s exp(-beta H(s))``, ``H = -J sum_<ij> s_i s_j - h sum_i s_i`` (2N bonds,
    doubled bonds counted twice, self-bonds for a side of 1).  The joint density of states
    ``g(B, M)`` (``B`` = bond sum, ``M`` = magnetization) is counted exactly once per size and
    cached; all averages are then sums over the distinct ``(B, M)``.

    Returns ``EnumerationResult(ln_z, energy, specific_heat, abs_m, m2, m4, m)``: ``ln Z/N``,
    ``<H>/N``, ``beta^2 Var(H)/N``, ``<|m|>``, ``<m^2>``, ``<m^4>``, ``<m>`` with ``m = M/N``.
    This is the independent check for the closed forms and the transfer matrix.
    """
    b = _check_beta(beta, scalar=True)
    Lx, Ly = _check_enumeration_size(Lx, Ly, MAX_ENUMERATION_SITES, "enumerate_torus")
    J = _check_coupling(J, positive=False)
    h = _check_field(h)
    N = Lx * Ly
    B, M, g = _joint_density_of_states(Lx, Ly)
    E = -J * B - h * M
    e0 = E.min()
    logw = np.log(g) - b * (E - e0)              # shift first: no large cancelling logs
    ln_zr = _logsumexp(logw)
    p = np.exp(logw - ln_zr)
    ln_z = ln_zr - b * e0
    e_mean = np.dot(p, E)
    var = np.dot(p, (E - e_mean) ** 2)
    m = M / N
    return EnumerationResult(
        ln_z=float(ln_z / N),
        energy=float(e_mean / N),
        specific_heat=float(b * (b * var) / N),
        abs_m=float(np.dot(p, np.abs(m))),
        m2=float(np.dot(p, m**2)),
        m4=float(np.dot(p, m**4)),
        m=float(np.dot(p, m)),
    )


def boltzmann_weights(beta, Lx, Ly, J=1.0, h=0.0):
    r"""All ``2^N`` states of the ``Lx x Ly`` torus and their exact probabilities (N <= 16).

    Returns ``(states, p)``: ``states`` is int8 of shape ``(2^N, Lx, Ly)`` with values +-1
    (state ``i`` has ``s[x, y] = -1`` where bit ``x*Ly + y`` of ``i`` is set, so state 0 is all
    up), and ``p[i] = exp(-beta H(s_i)) / Z`` (float64, sums to 1), with
    ``H = -J sum_<ij> s_i s_j - h sum_i s_i`` on the torus (2N bonds).
    """
    b = _check_beta(beta, scalar=True)
    Lx, Ly = _check_enumeration_size(Lx, Ly, MAX_BOLTZMANN_SITES, "boltzmann_weights")
    J = _check_coupling(J, positive=False)
    h = _check_field(h)
    states = _all_states(Lx, Ly)
    bonds, mag = _bond_sum_and_magnetization(Lx, Ly)
    x = J * bonds + h * mag                      # -H
    logw = b * (x - x.max())
    logw = logw - _logsumexp(logw)
    return states, np.exp(logw)


# --------------------------------------------------------------------------------------------
# Row transfer matrix with the magnetization distribution
# --------------------------------------------------------------------------------------------

class MagnetizationMoments(NamedTuple):
    """Exact per-site results from the row transfer matrix (see :func:`magnetization_moments`)."""

    abs_m: float
    """<|m|>, m = M/N."""
    m2: float
    """<m^2>."""
    m4: float
    """<m^4>."""
    energy: float
    """<H>/N (field term included when h != 0)."""
    specific_heat: float
    """beta^2 (<H^2> - <H>^2)/N."""
    ln_z: float
    """ln(Z)/N."""
    m: float
    """<m> (0 for h = 0)."""


@functools.lru_cache(maxsize=32)
def _row_tables(width: int):
    """Per row state (bit x set <=> s_x = -1): spins (2^w, w), number of up spins, bond sum
    along the (periodic) row, and the orbit representatives of the row states under
    translations and reflections (with orbit sizes), without and with the global spin flip."""
    n_states = 2**width
    idx = np.arange(n_states, dtype=np.int64)
    spins = 1 - 2 * ((idx[:, None] >> np.arange(width)[None, :]) & 1)
    n_up = (spins > 0).sum(axis=1)
    row_bonds = (spins * np.roll(spins, -1, axis=1)).sum(axis=1)
    mask = n_states - 1
    # bit reversal
    rev = np.zeros_like(idx)
    for x in range(width):
        rev |= ((idx >> x) & 1) << (width - 1 - x)
    images = []
    for base in (idx, rev):
        for k in range(width):
            images.append(((base >> k) | (base << (width - k))) & mask)
    dihedral = np.min(np.stack(images), axis=0)
    with_flip = np.minimum(dihedral, np.min(np.stack(images) ^ mask, axis=0))
    orbits = {}
    for name, canon in (("dihedral", dihedral), ("flip", with_flip)):
        reps, counts = np.unique(canon, return_counts=True)
        orbits[name] = (reps, counts)
    return spins, n_up, row_bonds, orbits


def _bond_factors(beta, J, width):
    """The vertical-bond transfer matrix between consecutive rows,
    ``V[s, s'] = exp(beta sum_x (J s_x s'_x - |J|))`` (entries <= 1), as a Kronecker product
    of small dense factors, one per group of at most 4 consecutive spins.  Returns the shape
    the 2^width row index is reshaped to (most significant group first, so that a C-order
    reshape matches ``index = sum_x bit_x 2^x``) and, per axis, ``(V_g, E_g)`` with
    ``V_g = exp(beta E_g)`` (``E_g`` is needed for beta-derivatives)."""
    n_groups = -(-width // 4)
    sizes = [width // n_groups + (1 if g < width % n_groups else 0) for g in range(n_groups)]
    factors = []
    for bits in sizes:
        idx = np.arange(2**bits)
        sp = 1 - 2 * ((idx[:, None] >> np.arange(bits)[None, :]) & 1)
        expo = (J * (sp @ sp.T) - abs(J) * bits).astype(np.float64)
        factors.append((np.exp(beta * expo), expo))
    # all spins are equivalent, so the order of the groups along the row does not matter
    return tuple(2**bits for bits in sizes), factors


def _transfer_setup(beta, J, h, width):
    spins, n_up, row_bonds, orbits = _row_tables(width)
    row_e = J * row_bonds + h * (2 * n_up - width)             # -(row energy), field included
    row_c = float(np.max(row_e))
    row_expo = row_e - row_c                                   # <= 0
    row_w = np.exp(beta * row_expo)
    reps, counts = orbits["flip" if h == 0.0 else "dihedral"]
    dims, factors = _bond_factors(beta, J, width)
    return n_up, row_w, row_expo, row_c, reps, counts, dims, factors


def _contract(mat, v, axis):
    """Apply the symmetric matrix ``mat`` along ``axis`` of ``v`` (one BLAS call)."""
    return np.moveaxis(np.tensordot(mat, v, axes=([1], [axis])), 0, axis)


def _apply_bonds(v, dims, factors):
    """v: (B, 2^width, k) -> (I (x) V) v, V the vertical-bond matrix."""
    B, n_states, k = v.shape
    v = v.reshape((B,) + dims + (k,))
    for axis, (mat, _) in enumerate(factors, start=1):
        v = _contract(mat, v, axis)
    return np.ascontiguousarray(v).reshape(B, n_states, k)


@functools.lru_cache(maxsize=64)
def _magnetization_histogram(beta, J, h, width, rows):
    """``Z_n`` for n = 0..N up spins on the width x rows torus, up to one positive factor, by
    the row transfer matrix with a partial-magnetization index."""
    N = width * rows
    n_up, row_w, _, row_c, reps, counts, dims, factors = _transfer_setup(beta, J, h, width)
    n_states = 2**width
    groups = [np.flatnonzero(n_up == k) for k in range(width + 1)]
    chunk = max(1, int(4e6 // (n_states * (N + 1))))
    partial = []
    for start in range(0, len(reps), chunk):
        r = reps[start:start + chunk]
        Bsz = len(r)
        v = np.zeros((Bsz, n_states, width + 1))               # up spins so far: 0..width
        v[np.arange(Bsz), r, n_up[r]] = row_w[r]
        log_s = 0.0
        for _ in range(rows - 1):
            v = _apply_bonds(v, dims, factors)
            v *= row_w[None, :, None]
            k_old = v.shape[2]
            shifted = np.zeros((Bsz, n_states, k_old + width))
            for k, idx in enumerate(groups):                   # add this row's up spins
                shifted[:, idx, k:k + k_old] = v[:, idx, :]
            v = shifted
            top = v.max()
            v /= top
            log_s += math.log(top)
        v = _apply_bonds(v, dims, factors)                     # closing bonds, last row -> row 0
        diag = v[np.arange(Bsz), r, :]                         # (Bsz, N+1)
        partial.append((log_s, counts[start:start + chunk] @ diag))
    log_scale = max(ls for ls, _ in partial)
    hist = sum(vec * math.exp(ls - log_scale) for ls, vec in partial)
    if h == 0.0:
        hist = 0.5 * (hist + hist[::-1])                       # average over the spin flip
    # Z_n = hist[n] * exp(log_scale + rows*beta*(row_c + |J| width)); only hist is needed
    # for probabilities (adding the large log scale first would cost precision).
    hist.setflags(write=False)                                 # cached
    return hist


def _transfer_log_derivatives(beta, J, h, width, rows):
    """(ln Z, d ln Z/d beta, d^2 ln Z/d beta^2) by the same row transfer matrix, carrying the
    vectors and their first two beta-derivatives (forward mode) instead of the magnetization."""
    n_up, row_w, row_expo, row_c, reps, counts, dims, factors = _transfer_setup(beta, J, h, width)
    n_states = 2**width
    Bsz = len(reps)

    def bonds(v0, v1, v2):
        """(v, v', v'') -> (T v, T' v + T v', T'' v + 2 T' v' + T v''), T = exp(beta E)."""
        v0, v1, v2 = (x.reshape((Bsz,) + dims) for x in (v0, v1, v2))
        for axis, (mat, expo) in enumerate(factors, start=1):
            m1 = mat * expo
            m2 = m1 * expo
            v0, v1, v2 = (
                _contract(mat, v0, axis),
                _contract(m1, v0, axis) + _contract(mat, v1, axis),
                _contract(m2, v0, axis) + 2.0 * _contract(m1, v1, axis) + _contract(mat, v2, axis),
            )
        return tuple(np.ascontiguousarray(x).reshape(Bsz, n_states) for x in (v0, v1, v2))

    w0 = row_w
    w1 = row_w * row_expo
    w2 = row_w * row_expo**2
    ar = np.arange(Bsz)
    v0 = np.zeros((Bsz, n_states))
    v1 = np.zeros_like(v0)
    v2 = np.zeros_like(v0)
    v0[ar, reps] = w0[reps]
    v1[ar, reps] = w1[reps]
    v2[ar, reps] = w2[reps]
    log_s = 0.0
    for _ in range(rows - 1):
        v0, v1, v2 = bonds(v0, v1, v2)
        v0, v1, v2 = (w0 * v0, w1 * v0 + w0 * v1, w2 * v0 + 2.0 * w1 * v1 + w0 * v2)
        top = np.abs(v0).max()
        v0, v1, v2 = v0 / top, v1 / top, v2 / top
        log_s += math.log(top)
    v0, v1, v2 = bonds(v0, v1, v2)
    z0, z1, z2 = (counts @ x[ar, reps] for x in (v0, v1, v2))
    const = rows * (row_c + abs(J) * width)                    # ln Z = beta*const + ln z0 + ...
    d1 = z1 / z0
    return beta * const + log_s + math.log(z0), const + d1, z2 / z0 - d1 * d1


def _check_transfer_size(L, Ly):
    Lx = _check_size("L", L)
    Ly = Lx if Ly is None else _check_size("Ly", Ly)
    width, rows = min(Lx, Ly), max(Lx, Ly)
    if width > MAX_TRANSFER_WIDTH or Lx * Ly > MAX_TRANSFER_SITES:
        raise ValueError(
            f"min(L, Ly) must be <= {MAX_TRANSFER_WIDTH} and L*Ly <= {MAX_TRANSFER_SITES} for "
            f"the magnetization transfer matrix, got L={Lx}, Ly={Ly}")
    return Lx, Ly, width, rows


def magnetization_distribution(beta, L, Ly=None, J=1.0, h=0.0):
    r"""Exact distribution of the magnetization per site on the ``Lx x Ly`` torus.

    Returns ``(m, p)``: ``m = (2n - N)/N`` for ``n = 0..N`` up spins and ``p[n] = Z_n/Z``
    (float64, sums to 1; ``p = 0`` for the unreachable odd/even values is exact).  Computed
    by the row transfer matrix of :func:`magnetization_moments`; rows run along the longer
    side, so ``min(Lx, Ly) <= 10`` is required.
    """
    b = _check_beta(beta, scalar=True)
    Lx, Ly, width, rows = _check_transfer_size(L, Ly)
    J = _check_coupling(J, positive=False)
    h = _check_field(h)
    N = Lx * Ly
    hist = _magnetization_histogram(b, J, h, width, rows)
    return (2.0 * np.arange(N + 1) - N) / N, hist / hist.sum()


def magnetization_moments(beta, L, Ly=None, J=1.0, h=0.0) -> MagnetizationMoments:
    r"""Exact ``<|m|>``, ``<m^2>``, ``<m^4>`` (and energy, specific heat, ``ln Z``) per site.

    Row transfer matrix on the ``Lx x Ly`` torus with rows of ``w = min(Lx, Ly) <= 10`` spins
    (``R = max(Lx, Ly)`` rows): ``Z = Tr (V D)^R`` with ``V[s, s'] = exp(beta J sum_x s_x s'_x)``
    (bonds between consecutive rows; a Kronecker product of dense factors on groups of <= 4
    spins, so one application costs ``O(2^w * 32)`` per vector instead of ``4^w``) and ``D``
    diagonal with the row's own bonds and field, ``exp(beta (J sum_x s_x s_{x+1} + h sum_x
    s_x))``.  The trace is taken as ``sum_{s_0} <s_0| ... |s_0>``; each propagated vector
    carries a second index, the number of up spins so far, so the trace gives the exact
    histogram ``Z_M``.  Starting rows ``s_0`` are reduced to representatives of their orbits
    under row translations, reflections and (for ``h = 0``) the spin flip, weighted by orbit
    size.  All factors are normalised to <= 1 and the vectors are rescaled after every row
    (the log scale is kept), so nothing overflows for any ``beta``.  Energy and specific
    heat come from the same transfer matrix carrying the first two beta-derivatives of the
    vectors (forward mode), not from finite differences.

    ``m = M/N``; ``energy = <H>/N`` and ``specific_heat = beta^2 Var(H)/N`` include the field
    term ``-h M`` when ``h != 0``.  About a second for 10 x 10.

    Returns ``MagnetizationMoments(abs_m, m2, m4, energy, specific_heat, ln_z, m)``.
    """
    b = _check_beta(beta, scalar=True)
    Lx, Ly, width, rows = _check_transfer_size(L, Ly)
    J = _check_coupling(J, positive=False)
    h = _check_field(h)
    N = Lx * Ly
    hist = _magnetization_histogram(b, J, h, width, rows)
    p = hist / hist.sum()
    m = (2.0 * np.arange(N + 1) - N) / N
    ln_z, d1, d2 = _transfer_log_derivatives(b, J, h, width, rows)
    return MagnetizationMoments(
        abs_m=float(p @ np.abs(m)),
        m2=float(p @ m**2),
        m4=float(p @ m**4),
        energy=float(-d1 / N),
        specific_heat=float(b * (b * d2) / N),
        ln_z=float(ln_z / N),
        m=float(p @ m),
    )


def binder_cumulant_exact(beta, L, Ly=None, J=1.0, h=0.0) -> float:
    r"""Exact Binder cumulant ``U_4 = 1 - <m^4> / (3 <m^2>^2)`` of the ``Lx x Ly`` torus
    (``min(Lx, Ly) <= 10``), from :func:`magnetization_moments`.  ``U_4 -> 2/3`` deep in the
    ordered phase, ``-> 0`` at high temperature, and ``-> BINDER_C = 0.61069...`` at ``K_c``
    as ``L -> inf`` on square tori."""
    mm = magnetization_moments(beta, L, Ly, J=J, h=h)
    return 1.0 - mm.m4 / (3.0 * mm.m2**2)


# --------------------------------------------------------------------------------------------
# Infinite lattice at K_c: spin-spin correlations (Toeplitz determinants)
# --------------------------------------------------------------------------------------------

#: Largest distance for which the Toeplitz determinants are evaluated (an O(n^3) LU).
MAX_TOEPLITZ_ORDER = 4096


def _check_distances(n, name: str = "n", maximum: int | None = None) -> np.ndarray:
    """Non-negative integer distances as an int64 array (any shape)."""
    if isinstance(n, (bool, np.bool_)):
        raise TypeError(f"{name} must be a non-negative integer (or array of them), got {n!r}")
    a = np.asarray(n)
    if a.dtype == object or a.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a non-negative integer (or array of them), got {n!r}")
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise ValueError(f"{name} must hold whole numbers of lattice spacings, got {n!r}")
    a = a.astype(np.int64)
    if np.any(a < 0):
        raise ValueError(f"{name} must be >= 0 (a lattice distance), got {n!r}")
    if maximum is not None and a.size and int(a.max()) > maximum:
        raise ValueError(f"{name} must be <= {maximum} here (O(n^3) determinant), got max {int(a.max())}")
    return a


def _toeplitz_det(coeff, n: int) -> float:
    """``det[c(i - j)]_{i,j=0..n-1}`` for a callable ``c`` of integer arrays (LU, sign checked)."""
    if n == 0:
        return 1.0
    i = np.arange(n)
    sign, logdet = np.linalg.slogdet(coeff(i[:, None] - i[None, :]))
    if sign <= 0:  # pragma: no cover - the correlations are positive
        raise ArithmeticError(f"Toeplitz determinant of order {n} is not positive (sign {sign})")
    return float(math.exp(logdet))


def _diagonal_coefficients(d):
    """Fourier coefficients of the diagonal symbol at K_c: ``a_d = 2 / (pi (2d + 1))``.

    [MW73, ch. XI]: ``<s_00 s_NN> = det[a_{i-j}]`` with
    ``a_d = (1/2pi) int_0^{2pi} dtheta e^{-i d theta} phi(theta)`` and, at ``T_c``,
    ``phi(theta) = [(1 - e^{-i theta}) / (1 - e^{i theta})]^{1/2} = e^{i (pi - theta)/2}``
    on ``(0, 2pi)``; the integral is elementary.
    """
    return 2.0 / (np.pi * (2.0 * d + 1.0))


def critical_diagonal_correlation(n, method: str = "product"):
    r"""Diagonal spin-spin correlation ``<s_{0,0} s_{n,n}>`` of the infinite square lattice at ``K_c``.

    .. math::
        \langle s_{0,0}\, s_{n,n} \rangle_{T_c}
        = \left(\frac{2}{\pi}\right)^{n} \prod_{l=1}^{n-1}
          \left(1 - \frac{1}{4 l^2}\right)^{l-n}

    [MW73, ch. XI; the product is the value of the Toeplitz determinant of
    Montroll, Potts and Ward, MPW63, whose symbol at ``T_c`` has the elementary Fourier
    coefficients ``a_d = 2/(pi (2d + 1))``: a Cauchy matrix].  ``n = 0`` gives 1, ``n = 1``
    gives ``2/pi = 0.63662`` (:data:`DIAGONAL_CORRELATION_C`), ``n = 2`` gives
    ``16/(3 pi^2) = 0.54038``.  The product is evaluated as a sum of logarithms (``log1p``),
    so any ``n`` works; its large-``n`` form is

        ``<s_00 s_nn> = A_d n^(-1/4) (1 - 1/(64 n^2) + O(n^-4))``,
        ``A_d = 2^(1/12) e^(3 zeta'(-1)) = 0.645002448...`` (:func:`critical_diagonal_amplitude`)

    [Wu66; MW73 ch. XI]; the ``-1/(64 n^2)`` term is also checked numerically in the tests.
    With the Euclidean distance ``r = sqrt(2) n`` this is ``A r^(-1/4)`` with
    ``A = 2^(1/8) A_d = 2^(5/24) e^(3 zeta'(-1)) = 0.70338`` (:data:`G_AMPLITUDE_C`).

    Parameters
    ----------
    n : int or integer array, >= 0
        Number of diagonal steps.
    method : {"product", "toeplitz"}
        ``"toeplitz"`` evaluates ``det[a_{i-j}]_{n x n}`` by LU instead (``n <=``
        :data:`MAX_TOEPLITZ_ORDER`); it agrees with the product to round-off and is there as
        an independent check.

    Returns
    -------
    float for scalar ``n``, else a float64 array of the shape of ``n``.
    """
    if method not in ("product", "toeplitz"):
        raise ValueError(f"method must be 'product' or 'toeplitz', got {method!r}")
    a = _check_distances(n, "n", MAX_TOEPLITZ_ORDER if method == "toeplitz" else None)
    if method == "toeplitz":
        out = np.array([_toeplitz_det(_diagonal_coefficients, int(k)) for k in a.ravel()]).reshape(a.shape)
        return float(out) if a.ndim == 0 else out
    nmax = int(a.max()) if a.size else 0
    # log D_n = n log(2/pi) + sum_{l<n} (l - n) lg_l,  lg_l = log(1 - 1/(4 l^2)).  By Wallis'
    # product sum_{l>=1} lg_l = log(2/pi), so  log D_n = s1(n) + n T(n)  with
    # s1(n) = sum_{l<n} l lg_l and the tail T(n) = sum_{l>=n} lg_l ~ -1/(4n): no cancellation
    # between O(n) terms.  T is summed from the top (small terms first) down to n, starting
    # from the analytic tail beyond a cutoff Nc (Euler-Maclaurin for the Hurwitz zeta values).
    Nc = max(nmax, 1000) + 1
    l = np.arange(1, Nc, dtype=np.float64)
    lg = np.log1p(-0.25 / (l * l))
    tail = -sum(_hurwitz_zeta_large(2 * k, Nc) / (k * 4.0**k) for k in range(1, 5))
    T = np.concatenate((np.cumsum(lg[::-1])[::-1] + tail, [tail]))   # T[n-1] = sum_{l=n}^inf, n = 1..Nc
    s1 = np.concatenate(([0.0, 0.0], np.cumsum(l * lg)))             # s1[n] = sum_{l=1}^{n-1} l lg_l
    nn = a.astype(np.float64)
    log_d = s1[a] + nn * T[np.maximum(a - 1, 0)]
    out = np.exp(log_d)
    return float(out) if a.ndim == 0 else out


def _hurwitz_zeta_large(s: int, N: int) -> float:
    """``zeta(s, N) = sum_{l>=N} l^-s`` for ``N >= 1000`` by Euler-Maclaurin (error ~ N^(-s-5))."""
    N = float(N)
    return (N ** (1 - s) / (s - 1) + 0.5 * N**-s + s * N ** (-s - 1) / 12.0
            - s * (s + 1) * (s + 2) * N ** (-s - 3) / 720.0)


def critical_diagonal_amplitude() -> float:
    """``A_d = 2^(1/12) e^(3 zeta'(-1)) = 0.6450024...``: ``<s_00 s_nn> ~ A_d n^(-1/4)`` at ``K_c``.

    In diagonal steps ``n`` [Wu66; MW73 ch. XI].  In the Euclidean distance ``r = sqrt(2) n``
    the amplitude is ``2^(1/8) A_d = 2^(5/24) e^(3 zeta'(-1)) = 0.70338`` (:data:`G_AMPLITUDE_C`),
    the same as along an axis: the critical correlation is isotropic at large ``r``.
    """
    from .constants import ZETA_PRIME_MINUS_1

    return 2.0 ** (1.0 / 12.0) * math.exp(3.0 * ZETA_PRIME_MINUS_1)


def critical_correlation_asymptotic(r):
    """Leading large-distance form ``G(r) = A r^(-1/4)`` at ``K_c``, ``A = 0.70338`` (``r`` Euclidean).

    ``A = 2^(5/24) e^(3 zeta'(-1))`` (:data:`G_AMPLITUDE_C`) [Wu66; MW73 ch. XI], with ``r``
    the Euclidean distance in lattice spacings, in any direction: along an axis
    ``<s_00 s_0n> / (A n^(-1/4)) -> 1`` and along the diagonal
    ``<s_00 s_nn> / (A (sqrt 2 n)^(-1/4)) -> 1`` (both checked in the tests against the exact
    Toeplitz determinants). Accepts scalars or arrays; ``r > 0``.
    """
    r_arr = np.asarray(r, dtype=np.float64)
    if not np.all(np.isfinite(r_arr)) or np.any(r_arr <= 0.0):
        raise ValueError(f"r must be finite and > 0 (a distance in lattice spacings), got {r!r}")
    out = G_AMPLITUDE_C * r_arr ** -0.25
    return float(out) if r_arr.ndim == 0 else out


@functools.lru_cache(maxsize=4)
def _axis_coefficient_table(dmax: int) -> np.ndarray:
    """``a_d`` for ``d = -dmax..dmax`` of the row symbol at ``K_c`` (see :func:`critical_axis_correlation`)."""
    z2 = (math.sqrt(2.0) - 1.0) ** 2          # tanh^2 K_c = (sqrt 2 - 1)^2
    # smooth factor f(theta) = [(1 - z2 e^{i theta}) / (1 - z2 e^{-i theta})]^{1/2}: coefficients by
    # FFT; they decay like z2^|m| = 0.17^|m|, so 256 points alias at the 1e-90 level
    M = 256
    theta = 2.0 * np.pi * np.arange(M) / M
    f = np.sqrt((1.0 - z2 * np.exp(1j * theta)) / (1.0 - z2 * np.exp(-1j * theta)))
    fm = np.fft.fft(f) / M                    # fm[m] multiplies e^{+i m theta}
    m = np.arange(-60, 61)
    f_m = fm[m % M].real                      # f(-theta) = conj f(theta): real coefficients
    d = np.arange(-dmax, dmax + 1)
    # jump factor g(theta) = [(1 - e^{-i theta})/(1 - e^{i theta})]^{1/2} = e^{i(pi - theta)/2}:
    # g_k = 1/(pi (k + 1/2)); a_d = sum_m f_m g_{d-m}
    g = 1.0 / (np.pi * ((d[:, None] - m[None, :]) + 0.5))
    return g @ f_m


def critical_axis_correlation(n):
    r"""Spin-spin correlation along a lattice axis, ``<s_{0,0} s_{0,n}>``, of the infinite lattice at ``K_c``.

    The Toeplitz determinant ``<s_{0,0} s_{0,n}> = det[a_{i-j}]_{i,j=1..n}`` of Montroll, Potts
    and Ward [MPW63] in the form of McCoy and Wu [MW73, ch. VIII]:

    .. math::
        a_d = \frac{1}{2\pi}\int_0^{2\pi} d\theta\, e^{-i d\theta}
        \left[\frac{(1 - \alpha_1 e^{i\theta})(1 - \alpha_2 e^{-i\theta})}
                   {(1 - \alpha_1 e^{-i\theta})(1 - \alpha_2 e^{i\theta})}\right]^{1/2},
        \quad \alpha_1 = \frac{z_2 (1 - z_1)}{1 + z_1},\ \alpha_2 = \frac{1 - z_1}{z_2 (1 + z_1)},

    ``z_i = tanh K_i``.  At the isotropic critical point ``z = sqrt 2 - 1`` and
    ``(1 - z)/(1 + z) = z``, so ``alpha_1 = z^2``, ``alpha_2 = 1``: the symbol is a smooth
    factor ``[(1 - z^2 e^{i theta})/(1 - z^2 e^{-i theta})]^{1/2}`` (coefficients by FFT,
    exponentially convergent) times ``e^{i (pi - theta)/2}`` (coefficients
    ``1/(pi (k + 1/2))``); ``a_d`` is their convolution, exact to round-off.
    Checks (in the tests): ``n = 1`` gives ``1/sqrt 2`` (Onsager's critical energy), and
    ``<s_00 s_0n> / (0.70338 n^(-1/4)) -> 1``; numerically the approach is
    ``1 + 1/(64 n^2) + O(n^-4)`` (the diagonal has ``1 - 1/(64 n^2)``: the lattice anisotropy
    of the subleading term). ``n = 2`` gives 0.5947152656..., ``n = 3`` 0.5357904522...

    Parameters
    ----------
    n : int or integer array, ``0 <= n <=`` :data:`MAX_TOEPLITZ_ORDER`.

    Returns
    -------
    float for scalar ``n``, else a float64 array of the shape of ``n``.
    """
    a = _check_distances(n, "n", MAX_TOEPLITZ_ORDER)
    nmax = int(a.max()) if a.size else 0
    table = _axis_coefficient_table(max(nmax, 1))
    offset = (table.size - 1) // 2

    def coeff(d):
        return table[d + offset]

    out = np.array([_toeplitz_det(coeff, int(k)) for k in a.ravel()]).reshape(a.shape)
    return float(out) if a.ndim == 0 else out
