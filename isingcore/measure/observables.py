"""Per-configuration observables of the 2D Ising model on the periodic ``Lx x Ly`` torus.

Written against the Python array API standard: the functions accept NumPy, CuPy and
``array_api_strict`` arrays and return results on the namespace (and device) of the input.

Conventions
-----------
Spins ``s`` are integer arrays (normally ``int8``) of shape ``(..., Lx, Ly)`` with values
``+1``/``-1``; the leading axes are batch axes (replicas, samples, chains) and may be absent.
``i`` indexes the axis ``-2`` ("x"), ``j`` the axis ``-1`` ("y"); indices are taken modulo the
lattice size (periodic boundary conditions). With ``N = Lx * Ly`` sites:

* magnetization per site        ``m = (1/N) sum_ij s_ij``
* nearest-neighbour correlation ``c10x = (1/N) sum_ij s_ij s_{i+1,j}``,
                                ``c10y = (1/N) sum_ij s_ij s_{i,j+1}``
* diagonal correlation          ``c11 = (1/2N) sum_ij s_ij (s_{i+1,j+1} + s_{i+1,j-1})``
* energy per site of ``H = -J sum_<ij> s_i s_j - h sum_i s_i`` (each bond counted once):
  ``e = H/N = -J (c10x + c10y) - h m``

On lattices with ``Lx = 2`` (or ``Ly = 2``) the two bonds between a pair of sites that the
torus wraps twice are both counted, which is what the Hamiltonian on that torus means.

Arithmetic: ``int8`` products of larger values would wrap, and ``array_api_strict`` refuses
``int8`` with float. Spins are therefore cast to ``int32`` once, site sums accumulate in
``int64`` (exact for any lattice), and only the final division by ``N`` is done in float64.
"""

from __future__ import annotations

from typing import Any

from .._array import get_namespace

__all__ = [
    "magnetization",
    "nn_correlations",
    "diagonal_correlation",
    "energy_per_site",
    "measure",
    "OBSERVABLES",
]

#: Keys of the dictionary returned by :func:`measure`, in table order.
OBSERVABLES = ("energy", "magnetization", "abs_m", "m2", "m4", "c10x", "c10y", "c11")

_SITE_AXES = (-2, -1)


def _prepare(spins: Any):
    """Return ``(xp, s32, n_sites)`` after validating ``spins``."""
    xp = get_namespace(spins)
    if spins.ndim < 2:
        raise ValueError(
            f"spins must have shape (..., Lx, Ly) with at least 2 dimensions; got shape {tuple(spins.shape)}"
        )
    lx, ly = spins.shape[-2], spins.shape[-1]
    if lx is None or ly is None or lx < 1 or ly < 1:
        raise ValueError(f"spins must have a non-empty lattice (Lx, Ly >= 1); got shape {tuple(spins.shape)}")
    if spins.dtype == xp.bool or not xp.isdtype(spins.dtype, "integral"):
        raise TypeError(
            f"spins must be an integer array with values +1/-1 (normally int8); got dtype {spins.dtype}"
        )
    s32 = xp.astype(spins, xp.int32)
    return xp, s32, int(lx) * int(ly)


def _site_mean(xp, x32, n_sites: int):
    """Mean over the two lattice axes of an ``int32`` array, as float64 of the batch shape."""
    total = xp.sum(x32, axis=_SITE_AXES, dtype=xp.int64)
    return xp.astype(total, xp.float64) / float(n_sites)


def _magnetization(xp, s, n):
    return _site_mean(xp, s, n)


def _nn(xp, s, n):
    c10x = _site_mean(xp, s * xp.roll(s, shift=-1, axis=-2), n)
    c10y = _site_mean(xp, s * xp.roll(s, shift=-1, axis=-1), n)
    return c10x, c10y


def _diag(xp, s, n):
    # s_{i+1,j+1} and s_{i+1,j-1}
    d_pp = xp.roll(s, shift=(-1, -1), axis=_SITE_AXES)
    d_pm = xp.roll(s, shift=(-1, 1), axis=_SITE_AXES)
    total = xp.sum(s * (d_pp + d_pm), axis=_SITE_AXES, dtype=xp.int64)
    return xp.astype(total, xp.float64) / (2.0 * n)


def magnetization(spins: Any):
    """Magnetization per site ``m = (1/N) sum_ij s_ij``.

    Parameters
    ----------
    spins : integer array of shape ``(..., Lx, Ly)`` with values +1/-1.

    Returns
    -------
    float64 array of the batch shape ``spins.shape[:-2]`` (0-d for a single lattice).
    """
    xp, s, n = _prepare(spins)
    return _magnetization(xp, s, n)


def nn_correlations(spins: Any):
    """Nearest-neighbour spin correlations along both lattice axes.

    ``c10x = (1/N) sum_ij s_{i,j} s_{i+1,j}`` (axis ``-2``) and
    ``c10y = (1/N) sum_ij s_{i,j} s_{i,j+1}`` (axis ``-1``), periodic boundaries.
    At the critical point of the infinite lattice both tend to ``1/sqrt(2)``.

    Returns
    -------
    (c10x, c10y) : two float64 arrays of the batch shape.
    """
    xp, s, n = _prepare(spins)
    return _nn(xp, s, n)


def diagonal_correlation(spins: Any):
    """Next-nearest-neighbour (diagonal) correlation, averaged over both diagonals.

    ``c11 = (1/2N) sum_ij s_{i,j} (s_{i+1,j+1} + s_{i+1,j-1})``, periodic boundaries.
    At the critical point of the infinite lattice ``<s_00 s_11> = 2/pi``.

    Returns
    -------
    float64 array of the batch shape.
    """
    xp, s, n = _prepare(spins)
    return _diag(xp, s, n)


def energy_per_site(spins: Any, J: float = 1.0, h: float = 0.0):
    """Energy per site ``e = H/N = -J (c10x + c10y) - h m``.

    For ``H = -J sum_<ij> s_i s_j - h sum_i s_i`` with every nearest-neighbour bond of the
    torus counted once (``2N`` bonds). The ground state at ``J > 0, h = 0`` has ``e = -2J``.

    Returns
    -------
    float64 array of the batch shape.
    """
    J, h = _check_couplings(J, h)
    xp, s, n = _prepare(spins)
    c10x, c10y = _nn(xp, s, n)
    e = 0.0 - J * (c10x + c10y)  # 0.0 - x: no negative zero
    if h != 0.0:
        e = e - h * _magnetization(xp, s, n)
    return e


def measure(spins: Any, J: float = 1.0, h: float = 0.0) -> dict:
    """All per-configuration observables at once (the spins are cast and rolled once).

    Returns a dict of float64 arrays of the batch shape, on the namespace of ``spins``:

    ``"energy"``        ``e = -J (c10x + c10y) - h m`` (per site)
    ``"magnetization"`` ``m = (1/N) sum s``
    ``"abs_m"``         ``|m|``
    ``"m2"``            ``m**2``
    ``"m4"``            ``m**4``
    ``"c10x"``          ``(1/N) sum s_{i,j} s_{i+1,j}``
    ``"c10y"``          ``(1/N) sum s_{i,j} s_{i,j+1}``
    ``"c11"``           ``(1/2N) sum s_{i,j} (s_{i+1,j+1} + s_{i+1,j-1})``

    Ensemble averages with error bars of these series are formed by
    :func:`isingcore.measure.analyze_series`.
    """
    J, h = _check_couplings(J, h)
    xp, s, n = _prepare(spins)
    m = _magnetization(xp, s, n)
    c10x, c10y = _nn(xp, s, n)
    c11 = _diag(xp, s, n)
    e = 0.0 - J * (c10x + c10y)  # 0.0 - x: no negative zero
    if h != 0.0:
        e = e - h * m
    m2 = m * m
    return {
        "energy": e,
        "magnetization": m,
        "abs_m": xp.abs(m),
        "m2": m2,
        "m4": m2 * m2,
        "c10x": c10x,
        "c10y": c10y,
        "c11": c11,
    }


def _check_couplings(J, h):
    import math

    out = []
    for name, v in (("J", J), ("h", h)):
        try:
            fv = float(v)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a real number; got {v!r}") from None
        if not math.isfinite(fv):
            raise ValueError(f"{name} must be finite; got {v!r}")
        out.append(fv)
    return out[0], out[1]
