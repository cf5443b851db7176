r"""Spin-spin correlation functions, structure factor and second-moment correlation length.

Two layers, as in the rest of :mod:`isingcore.measure`:

* **Per configuration**, written against the Python array API (NumPy, CuPy, array-api-strict),
  batched over leading axes: spins of shape ``(..., Lx, Ly)`` with values +1/-1 give results of
  shape ``(..., ...)`` on the same namespace. One FFT per configuration.
  :func:`correlation_map`, :func:`correlation_along_axes`, :func:`correlation_along_diagonals`,
  :func:`structure_factor`, :func:`tiled_correlation` (lattices too large for one FFT).
* **Ensembles** (NumPy results with errors): the per-configuration quantities form time series
  over configurations, and their errors come from U. Wolff's Γ-method
  (:func:`~isingcore.measure.gamma_method`, :func:`~isingcore.measure.derived`) or the binned
  :func:`~isingcore.measure.jackknife`, with independent chains as replicas.
  :func:`correlation_function`, :func:`second_moment_correlation_length`,
  :func:`structure_factor_ensemble`; and the NumPy helpers :func:`wavevectors`,
  :func:`shell_average`, :func:`second_moment_xi`.

Definitions
-----------
Spins ``s_x``, ``x = (i, j)`` on the periodic ``Lx x Ly`` torus, ``N = Lx Ly``, index ``i`` on
axis ``-2`` ("x"), ``j`` on axis ``-1`` ("y"), ``m = (1/N) sum_x s_x``.

* Correlation map of one configuration (all displacements ``d``, periodic):

      ``C(d) = (1/N) sum_x s_x s_{x+d}``,   ``d = (dx, dy)``, ``dx mod Lx``, ``dy mod Ly``.

  By Wiener-Khinchin ``C = IFFT(|FFT s|^2) / N`` (``rfftn``/``irfftn``); the sums
  ``N C(d)`` are integers and are rounded to them, so the map is exact (the FFT round-off,
  ~1e-16 N log N, is far below 1/2 for any lattice that fits in memory). ``C(d) = C(-d)``.
  ``C(0) = 1`` and ``sum_d C(d) = N m^2``.
* Along the axes: ``C(r, 0)`` (``axis="x"``), ``C(0, r)`` (``"y"``), or their mean
  (``"both"``), ``r = 0 .. r_max``; along the diagonals
  ``D(n) = [C(n, n) + C(n, -n)] / 2`` (both diagonals, all sites), ``n = 0 .. n_max``,
  Euclidean distance ``r = sqrt(2) n``. On the torus ``C(r) = C(L - r)``, so distances beyond
  ``L/2`` carry no new information: ``r_max <= Lx//2`` (``Ly//2``, ``min`` for both axes and
  the diagonals). Odd sizes are allowed everywhere.
* Forms (``form=``), exactly:

  ``"full"``         ``G(d) = <s_0 s_d>``, the ensemble mean of ``C(d)``.
  ``"connected"``    ``G_c(d) = <s_0 s_d> - <s_0><s_d> = G(d) - <m>^2`` (translation invariance).
                     At ``h = 0`` on a finite torus ``<m> = 0`` exactly (spin-flip symmetry), so
                     ``G_c = G``; the estimator subtracts the *measured* ``<m>^2`` (a derived
                     quantity, Γ-method error), which is zero within errors. Ensemble level only.
  ``"fluctuation"``  ``C(d) - m^2`` per configuration, i.e. ``(1/N) sum_x (s_x - m)(s_{x+d} - m)``,
                     with ensemble mean ``G(d) - <m^2>``. It sums to zero over the torus,
                     ``sum_d [C(d) - m^2] = 0``, and is *negative* at ``r ~ L/2`` at ``K_c``
                     (``<m^2> ~ L^(-1/4)`` is of the order of ``G(L/2)``); it is the finite-volume
                     "m^2-subtracted" form, not the connected function.

* Structure factor ``S(k) = |sum_x s_x e^{-i k.x}|^2 / N`` for ``k = 2 pi (a/Lx, b/Ly)``,
  equivalently ``S(k) = sum_d e^{-i k.d} C(d)``. ``S(0) = N m^2``; for independent random spins
  ``<S(k)> = 1`` for all ``k``; for the ordered lattice ``S = N delta_{k,0}``.
* Second-moment correlation length (F. Cooper, B. Freedman and D. Preston, Nucl. Phys. B 210
  (1982) 210; S. Caracciolo, R. G. Edwards, A. Pelissetto and A. D. Sokal, Nucl. Phys. B 403
  (1993) 475) on the ``L x L`` torus:

      ``xi_2nd = sqrt(chi / F - 1) / (2 sin(pi / L))``,  ``chi = <S(0)> = N <m^2>``,
      ``F = <S(k_min)>``, ``k_min = (2 pi/L, 0)`` and ``(0, 2 pi/L)`` averaged.

  A ratio of ensemble means: its error is by the jackknife (default) or linear propagation.

Finite size at ``K_c``
----------------------
On the ``L x L`` torus at ``K_c`` the leading correction to ``G(r)`` at fixed ``r << L`` is of
order ``r/L`` (the energy operator, dimension 1, has a one-point function ``~1/L`` on the torus;
exactly, ``<s_0 s_x> = 1/sqrt 2 + 0.311/L + ...`` from Kaufman's energy), not ``(r/L)^2``.
Measured on Wolff ensembles with ``L = 64 .. 864``: ``G_L(r) = G_inf(r) [1 + kappa r/L]`` with
``kappa = 0.47(3)`` for ``1 <= r <= 11`` along the axes and the diagonal
(``tools/bench/correlation_check.py``). Compare with the infinite-lattice values of
:mod:`isingcore.exact` only after extrapolating in ``1/L``.

Tiles (lattices of ``10^4 x 10^4`` and more)
--------------------------------------------
:func:`tiled_correlation` cuts the lattice into ``T x T`` tiles and correlates each tile with
itself, **zero-padded** (``rfftn`` of size ``T + r_max``): only pairs with both sites in the
same tile are counted, ``(T - |dx|)(T - |dy|)`` of them per tile, and the estimate is the mean
over all those pairs. Every pair product ``s_x s_{x+d}`` has expectation ``G(d)`` (translation
invariance), so the tiled estimate is **unbiased** for ``G(d)`` of the full lattice: it differs
from the full FFT only by which pairs enter, i.e. in its variance (fewer pairs, more so at
large ``d``: keep ``r_max`` a fraction of ``T``, default ``T // 4``). A *periodic* FFT of a tile
would be biased: along one axis it mixes in wrapped pairs at the true distance ``T - d``,
giving ``[(T - d) G(d) + d G(T - d)] / T``, a bias of ``-(d/T)[G(d) - G(T - d)]`` (a few per
cent at ``d = T/8`` at ``K_c``). Sites beyond the last whole tile (``Lx mod T`` rows,
``Ly mod T`` columns) are not used. The "fluctuation" form subtracts ``m^2`` of the *whole*
configuration (subtracting the tile's own magnetization would be biased by
``<m_T^2> - <m_L^2>``). The per-configuration ``tile_error`` (standard error of the tile
means) treats tiles as independent; at ``K_c`` neighbouring tiles are correlated, so it is a
lower bound: use the Γ-method over configurations (:func:`correlation_function` with
``method="tiles"``) for honest errors.

Isotropy of ``S(k)``
--------------------
:func:`shell_average` averages ``S`` over shells ``|k| in [(j - 1/2) dk, (j + 1/2) dk)`` and
measures, per shell, (i) ``rel_spread = std / mean`` of the ``S`` values in the shell (this
includes the radial variation of ``S`` across the shell width, roughly
``|dlnS/dlnk| dk / (sqrt(12) k)``, so it is most useful at large ``k``), and (ii) ``a4``, the
relative amplitude of the ``cos 4 theta`` harmonic: the least-squares fit
``S_j = a + b (|k_j| - kbar) + c cos(4 theta_j)`` over the points of the shell, with the radial
trend ``b`` removed, gives ``a4 = c / a`` (``S ~ a [1 + a4 cos 4 theta]``). ``cos 4 theta`` is the
lowest harmonic allowed by the square's symmetry, the signature of grid artefacts (axes against
diagonals). ``a4`` is NaN where the shell cannot separate it from the radial trend (e.g. the
first shell, whose axis points all have ``|k| = k_min`` and its diagonal points
``sqrt 2 k_min``). Even the exact lattice ``S`` has ``a4 != 0`` at large ``k`` (the lattice
Laplacian ``4 sin^2(k_x/2) + 4 sin^2(k_y/2)`` is anisotropic at order ``k^4``); compare methods
against each other or against Monte Carlo, not against zero, there. ``momentum="lattice"``
bins in ``|khat| = 2 sqrt(sin^2(k_x/2) + sin^2(k_y/2))`` instead of ``|k|``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .._array import get_namespace, to_numpy

__all__ = [
    "FORMS",
    "correlation_map",
    "correlation_along_axes",
    "correlation_along_diagonals",
    "structure_factor",
    "tiled_correlation",
    "TiledCorrelation",
    "wavevectors",
    "shell_average",
    "ShellAverage",
    "second_moment_xi",
    "correlation_function",
    "CorrelationFunction",
    "second_moment_correlation_length",
    "structure_factor_ensemble",
    "StructureFactorEnsemble",
]

#: Forms of the correlation function; "connected" needs an ensemble (:func:`correlation_function`).
FORMS = ("full", "connected", "fluctuation")
_CONFIG_FORMS = ("full", "fluctuation")
_DIRECTIONS = ("x", "y", "axes", "diagonal")
_AXES = (-2, -1)
#: Smallest lattice side the correlation functions accept.
MIN_SIZE = 2


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


def _prepare(spins: Any, name: str = "spins", cast: bool = True):
    """Validate ``spins`` (integer +-1, ``(..., Lx, Ly)``, sides >= 2); return ``(xp, s64, Lx, Ly)``.

    With ``cast=False`` the validated integer array itself is returned instead of a float64 copy.
    """
    try:
        xp = get_namespace(spins)
    except TypeError as exc:
        raise TypeError(f"{name} must be an array (NumPy, CuPy or array-api-strict); got {type(spins).__name__}") from exc
    if spins.ndim < 2:
        raise ValueError(f"{name} must have shape (..., Lx, Ly) with at least 2 dimensions; got shape {tuple(spins.shape)}")
    lx, ly = int(spins.shape[-2]), int(spins.shape[-1])
    if lx < MIN_SIZE or ly < MIN_SIZE:
        raise ValueError(
            f"{name} must have a lattice of at least {MIN_SIZE} x {MIN_SIZE} sites for correlations; "
            f"got shape {tuple(spins.shape)}"
        )
    if (spins.dtype == xp.bool or not xp.isdtype(spins.dtype, "signed integer")):
        raise TypeError(f"{name} must be a signed integer array with values +1/-1 (normally int8); got dtype {spins.dtype}")
    if not bool(xp.all((spins == 1) | (spins == -1))):
        raise ValueError(f"{name} must hold only the values +1 and -1 (Ising spins); found other values")
    return xp, (xp.astype(spins, xp.float64) if cast else spins), lx, ly


def _check_choice(name: str, value, allowed) -> str:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; allowed values: {', '.join(map(repr, allowed))}")
    return value


def _check_int(name: str, value, lo: int, hi: int | None, why: str = "") -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer; got {value!r}")
    value = int(value)
    if value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be {rng}{why}; got {value}")
    return value


def _r_limit(direction: str, lx: int, ly: int) -> int:
    return {"x": lx // 2, "y": ly // 2}.get(direction, min(lx, ly) // 2)


# ---------------------------------------------------------------------------------------------
# Per configuration (array API)
# ---------------------------------------------------------------------------------------------


def _power(xp, s64):
    """``|rfftn(s)|^2`` over the lattice axes (half spectrum, shape ``(..., Lx, Ly//2 + 1)``)."""
    f = xp.fft.rfftn(s64, axes=_AXES)
    re, im = xp.real(f), xp.imag(f)
    return re * re + im * im


def _map_from_power(xp, power, lx: int, ly: int):
    """Exact ``C(d)`` (float64) from the half power spectrum: rounded pair sums over ``N``."""
    sums = xp.fft.irfftn(xp.astype(power, xp.complex128), s=(lx, ly), axes=_AXES)  # irfftn wants complex
    return xp.round(sums) / float(lx * ly)


def _m2(xp, s64, lx: int, ly: int):
    m = xp.sum(s64, axis=_AXES) / float(lx * ly)
    return m * m


def correlation_map(spins: Any, form: str = "full"):
    """Periodic correlation map ``C(d) = (1/N) sum_x s_x s_{x+d}`` of each configuration.

    Parameters
    ----------
    spins : integer array ``(..., Lx, Ly)`` of +1/-1 (``Lx, Ly >= 2``).
    form : {"full", "fluctuation"}
        ``"fluctuation"`` returns ``C(d) - m^2`` (see the module docstring); the ensemble
        "connected" form is in :func:`correlation_function`.

    Returns
    -------
    float64 array ``(..., Lx, Ly)`` on the namespace of ``spins``; element ``[..., dx, dy]``
    is the displacement ``(dx, dy)`` (negative displacements at ``Lx - |dx|``). Exact: the
    pair sums are integers and are rounded to them after the FFT (Wiener-Khinchin).
    """
    _check_choice("form", form, _CONFIG_FORMS)
    xp, s, lx, ly = _prepare(spins)
    c = _map_from_power(xp, _power(xp, s), lx, ly)
    if form == "fluctuation":
        c = c - _m2(xp, s, lx, ly)[..., None, None]
    return c


def _axes_from_map(xp, c, r_max: int, axis: str):
    if axis == "x":
        return c[..., : r_max + 1, 0]
    if axis == "y":
        return c[..., 0, : r_max + 1]
    return 0.5 * (c[..., : r_max + 1, 0] + c[..., 0, : r_max + 1])


def _diagonals_from_map(xp, c, n_max: int, lx: int, ly: int):
    flat = xp.reshape(c, tuple(c.shape[:-2]) + (lx * ly,))
    n = np.arange(n_max + 1)
    pp = xp.asarray(n * ly + n, dtype=xp.int64)
    pm = xp.asarray(n * ly + (-n) % ly, dtype=xp.int64)
    ax = flat.ndim - 1
    return 0.5 * (xp.take(flat, pp, axis=ax) + xp.take(flat, pm, axis=ax))


def correlation_along_axes(spins: Any, r_max: int | None = None, axis: str = "both", form: str = "full"):
    """``C(r)`` along the lattice axes for ``r = 0 .. r_max``, each configuration, periodic.

    ``axis="x"``: ``C(r, 0) = (1/N) sum_x s_{i,j} s_{i+r,j}`` (axis ``-2``); ``"y"``: ``C(0, r)``;
    ``"both"`` (default): their mean. ``r_max`` defaults to (and may not exceed) ``Lx//2``,
    ``Ly//2`` or ``min(Lx, Ly)//2`` respectively. ``form`` as in :func:`correlation_map`.

    Returns float64 ``(..., r_max + 1)``: element ``r`` is distance ``r``. At ``K_c`` on a large
    lattice ``C(1) -> 1/sqrt 2`` and ``C(r) -> 0.70338 r^(-1/4)`` (see :mod:`isingcore.exact`).
    """
    _check_choice("axis", axis, ("x", "y", "both"))
    _check_choice("form", form, _CONFIG_FORMS)
    xp, s, lx, ly = _prepare(spins)
    lim = _r_limit({"both": "axes"}.get(axis, axis), lx, ly)
    r_max = lim if r_max is None else _check_int("r_max", r_max, 0, lim, f" (half the lattice side along axis={axis!r})")
    c = _map_from_power(xp, _power(xp, s), lx, ly)
    out = _axes_from_map(xp, c, r_max, axis)
    if form == "fluctuation":
        out = out - _m2(xp, s, lx, ly)[..., None]
    return out


def correlation_along_diagonals(spins: Any, n_max: int | None = None, form: str = "full"):
    """Diagonal correlation ``D(n) = [C(n, n) + C(n, -n)] / 2`` for ``n = 0 .. n_max``, periodic.

    ``C(n, +-n) = (1/N) sum_{i,j} s_{i,j} s_{i+n, j+-n}``: averaged over all sites and both
    diagonals; the Euclidean distance is ``sqrt(2) n``. ``n_max`` defaults to (and may not
    exceed) ``min(Lx, Ly)//2``. ``D(1)`` equals
    :func:`isingcore.measure.diagonal_correlation` (``c11``); at ``K_c`` on the infinite lattice
    ``D(n)`` is :func:`isingcore.exact.critical_diagonal_correlation` (``D(1) = 2/pi``).

    Returns float64 ``(..., n_max + 1)``; element ``n`` is ``n`` diagonal steps.
    """
    _check_choice("form", form, _CONFIG_FORMS)
    xp, s, lx, ly = _prepare(spins)
    lim = min(lx, ly) // 2
    n_max = lim if n_max is None else _check_int("n_max", n_max, 0, lim, " (half the shorter lattice side)")
    c = _map_from_power(xp, _power(xp, s), lx, ly)
    out = _diagonals_from_map(xp, c, n_max, lx, ly)
    if form == "fluctuation":
        out = out - _m2(xp, s, lx, ly)[..., None]
    return out


def _full_from_half(xp, half, lx: int, ly: int):
    """Full ``(..., Lx, Ly)`` grid of a real-input spectrum from its ``rfftn`` half (``S(-k) = S(k)``)."""
    nh = ly - ly // 2 - 1  # missing columns ky = Ly//2 + 1 .. Ly - 1
    if nh == 0:
        return half
    tail = xp.flip(half[..., :, 1 : nh + 1], axis=-1)  # columns Ly - ky for ky = Ly//2+1 .. Ly-1
    tail = xp.roll(xp.flip(tail, axis=-2), 1, axis=-2)  # rows -kx mod Lx
    return xp.concat([half, tail], axis=-1)


def structure_factor(spins: Any):
    """Structure factor ``S(k) = |sum_x s_x e^{-i k.x}|^2 / N`` of each configuration.

    ``k = 2 pi (a / Lx, b / Ly)``; element ``[..., a, b]`` (FFT order: ``a = 0`` is ``k_x = 0``,
    ``a > Lx/2`` are negative ``k_x``; see :func:`wavevectors`). ``S(0) = N m^2``,
    ``(1/N) sum_k S(k) = 1``. Random independent spins: ``<S(k)> = 1``; ordered lattice:
    ``S = N delta_{k,0}``.

    Returns float64 ``(..., Lx, Ly)`` on the namespace of ``spins`` (computed with ``rfftn``
    and completed by ``S(-k) = S(k)``).
    """
    xp, s, lx, ly = _prepare(spins)
    return _full_from_half(xp, _power(xp, s), lx, ly) / float(lx * ly)


class TiledCorrelation(NamedTuple):
    """Result of :func:`tiled_correlation` (arrays on the namespace of the spins).

    mean : ``(..., r_max + 1)`` estimate of ``G(r)`` from all in-tile pairs, per configuration.
    tile_error : ``(..., r_max + 1)`` standard error of the per-tile means, *assuming independent
        tiles* (a lower bound at criticality; see the module docstring).
    n_tiles : number of tiles used per configuration.
    r : NumPy ``(r_max + 1,)`` Euclidean distances (``sqrt(2) n`` for the diagonal).
    """

    mean: Any
    tile_error: Any
    n_tiles: int
    r: np.ndarray


def tiled_correlation(spins: Any, tile: int, r_max: int | None = None, direction: str = "axes",
                      form: str = "full") -> TiledCorrelation:
    """``G(r)`` from non-periodic ``tile x tile`` windows, for lattices too large for one FFT.

    Each whole tile is correlated with itself with zero padding (``rfftn`` of size
    ``tile + r_max``), counting only pairs inside the tile, ``(T - |dx|)(T - |dy|)`` per tile;
    the estimate is the mean over those pairs of all tiles. Unbiased for ``G(d)`` of the full
    lattice (see the module docstring for why, and for the bias a periodic tile would have).

    Parameters
    ----------
    spins : integer ``(..., Lx, Ly)`` of +1/-1.
    tile : int, ``2 <= tile <= min(Lx, Ly)``; rows/columns beyond the last whole tile are unused.
    r_max : int, ``0 <= r_max <= tile - 1``; default ``tile // 4``.
    direction : {"x", "y", "axes", "diagonal"} (``"axes"``: mean of x and y).
    form : {"full", "fluctuation"}; "fluctuation" subtracts ``m^2`` of the whole configuration.

    Memory: one row of tiles at a time, about ``48 (tile + r_max)^2 Ly / tile`` bytes per
    configuration.
    """
    _check_choice("direction", direction, _DIRECTIONS)
    _check_choice("form", form, _CONFIG_FORMS)
    xp, s, lx, ly = _prepare(spins, cast=False)  # cast one row of tiles at a time
    T = _check_int("tile", tile, 2, min(lx, ly), " (the tile must fit in the lattice)")
    r_max = T // 4 if r_max is None else _check_int("r_max", r_max, 0, T - 1, " (less than the tile)")
    nx, ny = lx // T, ly // T
    P = T + r_max
    batch = tuple(s.shape[:-2])
    counts = np.arange(T, T - r_max - 1, -1, dtype=np.float64)  # T - d, d = 0..r_max
    if direction in ("x", "y", "axes"):
        pair_counts = counts * T
    else:
        pair_counts = counts * counts
    total = None
    total_sq = None
    nb = len(batch)
    for a in range(nx):
        rows = xp.astype(s[..., a * T : (a + 1) * T, : ny * T], xp.float64)
        t = xp.reshape(rows, batch + (T, ny, T))
        t = xp.permute_dims(t, tuple(range(nb)) + (nb + 1, nb, nb + 2))  # (..., ny, T, T)
        f = xp.fft.rfftn(t, s=(P, P), axes=_AXES)
        re, im = xp.real(f), xp.imag(f)
        power = xp.astype(re * re + im * im, xp.complex128)
        sums = xp.round(xp.fft.irfftn(power, s=(P, P), axes=_AXES))  # (..., ny, P, P)
        if direction == "x":
            prof = sums[..., : r_max + 1, 0]
        elif direction == "y":
            prof = sums[..., 0, : r_max + 1]
        elif direction == "axes":
            prof = 0.5 * (sums[..., : r_max + 1, 0] + sums[..., 0, : r_max + 1])
        else:
            flat = xp.reshape(sums, tuple(sums.shape[:-2]) + (P * P,))
            n = np.arange(r_max + 1)
            pp = xp.asarray(n * P + n, dtype=xp.int64)
            pm = xp.asarray(n * P + (-n) % P, dtype=xp.int64)
            ax = flat.ndim - 1
            prof = 0.5 * (xp.take(flat, pp, axis=ax) + xp.take(flat, pm, axis=ax))
        per_tile = prof / xp.asarray(pair_counts, dtype=xp.float64)  # (..., ny, r_max + 1)
        part = xp.sum(per_tile, axis=-2)
        part_sq = xp.sum(per_tile * per_tile, axis=-2)
        total = part if total is None else total + part
        total_sq = part_sq if total_sq is None else total_sq + part_sq
    n_tiles = nx * ny
    mean = total / float(n_tiles)
    if n_tiles > 1:
        var = (total_sq / float(n_tiles) - mean * mean) * (n_tiles / (n_tiles - 1.0))
        tile_error = xp.sqrt(xp.maximum(var, xp.zeros_like(var)) / float(n_tiles))
    else:
        tile_error = xp.full_like(mean, float("nan"))
    if form == "fluctuation":
        m = xp.astype(xp.sum(s, axis=_AXES, dtype=xp.int64), xp.float64) / float(lx * ly)
        mean = mean - (m * m)[..., None]
    r = np.arange(r_max + 1, dtype=np.float64) * (math.sqrt(2.0) if direction == "diagonal" else 1.0)
    return TiledCorrelation(mean, tile_error, n_tiles, r)


# ---------------------------------------------------------------------------------------------
# Wave vectors, shells, xi_2nd (NumPy)
# ---------------------------------------------------------------------------------------------


def wavevectors(Lx: int, Ly: int | None = None, momentum: str = "euclidean"):
    """Wave vectors of the ``Lx x Ly`` torus in FFT order: ``(kx, ky)``, float64 ``(Lx, Ly)`` each.

    ``kx[a, b] = 2 pi a / Lx`` folded into ``[-pi, pi)`` (``numpy.fft.fftfreq`` order), likewise
    ``ky``; they index the arrays of :func:`structure_factor`. ``momentum="lattice"`` returns
    ``khat_i = 2 sin(k_i / 2)`` instead (the lattice momentum, ``|khat|^2`` is the eigenvalue of the
    lattice Laplacian).
    """
    Lx = _check_int("Lx", Lx, 1, None)
    Ly = Lx if Ly is None else _check_int("Ly", Ly, 1, None)
    _check_choice("momentum", momentum, ("euclidean", "lattice"))
    kx = 2.0 * np.pi * np.fft.fftfreq(Lx)
    ky = 2.0 * np.pi * np.fft.fftfreq(Ly)
    if momentum == "lattice":
        kx, ky = 2.0 * np.sin(kx / 2.0), 2.0 * np.sin(ky / 2.0)
    KX, KY = np.meshgrid(kx, ky, indexing="ij")
    return KX, KY


class ShellAverage(NamedTuple):
    """Radial (shell) average of ``S(k)`` and its isotropy, from :func:`shell_average`.

    k : ``(n_shells,)`` mean ``|k|`` of the points in each shell (shell 0 is ``k = 0``).
    mean : ``(..., n_shells)`` mean of ``S`` over the shell.
    count : ``(n_shells,)`` number of wave vectors in the shell.
    rel_spread : ``(..., n_shells)`` ``std / mean`` of ``S`` in the shell (radial variation
        across the shell width included).
    a4 : ``(..., n_shells)`` relative ``cos 4 theta`` amplitude with the radial trend removed
        (NaN where the shell cannot determine it).
    edges : ``(n_shells + 1,)`` shell boundaries in ``|k|``.
    """

    k: np.ndarray
    mean: np.ndarray
    count: np.ndarray
    rel_spread: np.ndarray
    a4: np.ndarray
    edges: np.ndarray


class _Shells(NamedTuple):
    order: np.ndarray      # flat indices of the used k points, grouped by shell
    starts: np.ndarray     # start of each shell in `order`
    count: np.ndarray
    k: np.ndarray
    edges: np.ndarray
    dk: np.ndarray         # |k| - kbar_shell, in `order`
    c4: np.ndarray         # cos 4 theta, in `order`
    solve: np.ndarray      # (n_shells, 3, 3) inverse normal matrices (NaN where singular)


def _shells(Lx: int, Ly: int, bin_width, k_max, momentum: str) -> _Shells:
    KX, KY = wavevectors(Lx, Ly, momentum)
    kabs = np.hypot(KX, KY).ravel()
    theta = np.arctan2(KY, KX).ravel()
    kmin = 2.0 * np.pi / max(Lx, Ly)
    if momentum == "lattice":
        kmin = 2.0 * math.sin(kmin / 2.0)
    if bin_width is None:
        bin_width = kmin
    bin_width = float(bin_width)
    if not (math.isfinite(bin_width) and bin_width > 0.0):
        raise ValueError(f"bin_width must be a positive finite wave number; got {bin_width!r}")
    kcap = np.pi if momentum == "euclidean" else 2.0
    k_max = kcap if k_max is None else float(k_max)
    if not (math.isfinite(k_max) and k_max > 0.0):
        raise ValueError(f"k_max must be a positive finite wave number; got {k_max!r}")
    n_shells = int(math.floor(k_max / bin_width + 0.5)) + 1   # centres 0, dk, ..., <= k_max
    idx = np.floor(kabs / bin_width + 0.5).astype(np.int64)  # shell j: [(j - 1/2) dk, (j + 1/2) dk)
    flat = np.flatnonzero(idx < n_shells)
    order = flat[np.argsort(idx[flat], kind="stable")]
    count = np.bincount(idx[order], minlength=n_shells)
    centres = np.flatnonzero(count > 0)                     # drop empty shells (dk below the grid spacing)
    count = count[centres]
    sidx = np.searchsorted(centres, idx[order])
    edges = np.concatenate((np.maximum(centres - 0.5, 0.0), [centres[-1] + 0.5])) * bin_width
    n_shells = centres.size
    starts = np.concatenate(([0], np.cumsum(count)[:-1]))
    k = np.add.reduceat(kabs[order], starts) / count
    dk = kabs[order] - k[sidx]
    c4 = np.cos(4.0 * theta[order])
    # normal matrices of the fit S = a + b dk + c cos4theta, per shell
    cols = [np.ones_like(dk), dk, c4]
    G = np.empty((n_shells, 3, 3))
    for p in range(3):
        for q in range(p, 3):
            G[:, p, q] = G[:, q, p] = np.add.reduceat(cols[p] * cols[q], starts)
    solve = np.full_like(G, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        # scale-free rank test: columns normalised by their norms
        norms = np.sqrt(np.maximum(np.stack([G[:, 0, 0], G[:, 1, 1], G[:, 2, 2]], axis=1), 1e-300))
        Gn = G / (norms[:, :, None] * norms[:, None, :])
        ok = (count >= 4) & (np.abs(np.linalg.det(Gn)) > 1e-6)
    if np.any(ok):
        solve[ok] = np.linalg.inv(G[ok])
    return _Shells(order, starts, count, k, edges, dk, c4, solve)


def _shell_sums(sh: _Shells, flat: np.ndarray):
    """Per-shell sums of S, S*dk, S*cos4theta, S^2 for ``flat`` of shape (B, Lx*Ly)."""
    v = flat[:, sh.order]
    s0 = np.add.reduceat(v, sh.starts, axis=1)
    s1 = np.add.reduceat(v * sh.dk, sh.starts, axis=1)
    s2 = np.add.reduceat(v * sh.c4, sh.starts, axis=1)
    sq = np.add.reduceat(v * v, sh.starts, axis=1)
    return s0, s1, s2, sq


def _fit_a_c(sh: _Shells, s0, s1, s2):
    """Least-squares ``a`` and ``c`` of ``S = a + b dk + c cos 4theta`` per shell (linear in S)."""
    rhs = np.stack([s0, s1, s2], axis=-1)                       # (B, n, 3)
    coef = np.einsum("npq,bnq->bnp", sh.solve, rhs)
    return coef[..., 0], coef[..., 2]


def shell_average(s_map: Any, bin_width: float | None = None, k_max: float | None = None,
                  momentum: str = "euclidean") -> ShellAverage:
    """Radial average of a structure factor map over ``|k|`` shells, with two isotropy measures.

    Parameters
    ----------
    s_map : array ``(..., Lx, Ly)`` in FFT order (as :func:`structure_factor` returns; for an
        ensemble pass the mean map). Any backend; the result is NumPy.
    bin_width : shell width ``dk``; default the smallest nonzero wave number ``2 pi / max(Lx, Ly)``
        (in ``|khat|`` for ``momentum="lattice"``). Shells are centred on ``0, dk, 2 dk, ...``.
    k_max : largest shell centre; default ``pi`` (``2`` for lattice momenta): the inscribed
        circle, beyond which shells are cut by the Brillouin-zone corners.
    momentum : {"euclidean", "lattice"} binning in ``|k|`` or ``|khat|``.

    Returns :class:`ShellAverage`; see the module docstring for ``rel_spread`` and ``a4``.
    """
    _check_choice("momentum", momentum, ("euclidean", "lattice"))
    a = np.asarray(to_numpy(s_map), dtype=np.float64)
    if a.ndim < 2:
        raise ValueError(f"s_map must have shape (..., Lx, Ly); got shape {a.shape}")
    Lx, Ly = a.shape[-2:]
    sh = _shells(Lx, Ly, bin_width, k_max, momentum)
    batch = a.shape[:-2]
    flat = a.reshape((-1, Lx * Ly))
    s0, s1, s2, sq = _shell_sums(sh, flat)
    mean = s0 / sh.count
    with np.errstate(divide="ignore", invalid="ignore"):
        var = np.maximum(sq / sh.count - mean * mean, 0.0) * np.where(sh.count > 1, sh.count / np.maximum(sh.count - 1, 1), np.nan)
        rel_spread = np.sqrt(var) / mean
        fa, fc = _fit_a_c(sh, s0, s1, s2)
        a4 = fc / fa
    shape = batch + (sh.count.size,)
    return ShellAverage(sh.k, mean.reshape(shape), sh.count, rel_spread.reshape(shape), a4.reshape(shape), sh.edges)


def second_moment_xi(chi, F, L):
    """``xi_2nd = sqrt(chi / F - 1) / (2 sin(pi / L))`` (Cooper-Freedman-Preston; Caracciolo et al.).

    ``chi = <S(0)>`` and ``F = <S(k_min)>``, ``|k_min| = 2 pi / L``, on the ``L x L`` torus (see the
    module docstring). NumPy scalars or arrays; NaN where ``chi / F < 1`` (no real solution:
    ``S`` not peaked at ``k = 0``, e.g. far above ``T_c`` within the noise).
    """
    L = _check_int("L", L, 2, None)
    chi = np.asarray(chi, dtype=np.float64)
    F = np.asarray(F, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = chi / F - 1.0
        out = np.where(ratio >= 0.0, np.sqrt(np.abs(ratio)), np.nan) / (2.0 * math.sin(math.pi / L))
    return float(out) if out.ndim == 0 else out


# ---------------------------------------------------------------------------------------------
# Ensembles
# ---------------------------------------------------------------------------------------------


class _Source:
    """Configurations of an ensemble (file, Ensemble or array) laid out as R replicas of n each."""

    def __init__(self, source: Any, chains=None):
        from ..io import Ensemble, open_ensemble

        self._ens = None
        self._arr = None
        if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
            source = open_ensemble(source)
        if isinstance(source, Ensemble) or (hasattr(source, "iter_blocks") and hasattr(source, "chain")):
            if chains is not None:
                raise ValueError("chains must be None for an ensemble file: its chains are read from the file")
            self._ens = source
            self.Lx, self.Ly = int(source.Lx), int(source.Ly)
            chain = np.asarray(source.chain)
            step = np.asarray(source.step)
            labels = np.unique(chain)
            groups = [np.flatnonzero(chain == c)[np.argsort(step[chain == c], kind="stable")] for c in labels]
        else:
            try:
                xp = get_namespace(source)
            except TypeError:
                raise TypeError(
                    "source must be an ensemble path, an isingcore.io.Ensemble, or a spin array of shape "
                    f"(N, Lx, Ly) or (R, N, Lx, Ly); got {type(source).__name__}"
                ) from None
            if source.ndim == 4:
                if chains is not None:
                    raise ValueError("chains must be None for a (R, N, Lx, Ly) array: its first axis is the replica")
                R, N = int(source.shape[0]), int(source.shape[1])
                source = xp.reshape(source, (R * N,) + tuple(source.shape[2:]))
                groups = [np.arange(r * N, (r + 1) * N) for r in range(R)]
            elif source.ndim == 3:
                N = int(source.shape[0])
                if chains is None:
                    groups = [np.arange(N)]
                else:
                    lab = np.asarray(chains if isinstance(chains, (list, tuple)) else to_numpy(chains)).reshape(-1)
                    if lab.shape != (N,):
                        raise ValueError(f"chains must have one label per configuration, shape ({N},); got {lab.shape}")
                    groups = [np.flatnonzero(lab == c) for c in np.unique(lab)]
            else:
                raise ValueError(
                    f"source must have shape (N, Lx, Ly) or (R, N, Lx, Ly) (configurations x lattice); "
                    f"got shape {tuple(source.shape)}"
                )
            self._arr = source
            self._xp = xp
            self.Lx, self.Ly = int(source.shape[-2]), int(source.shape[-1])
        if not groups or min(len(g) for g in groups) == 0:
            raise ValueError("source holds no configurations")
        n = min(len(g) for g in groups)
        self.R, self.n = len(groups), n
        self.order = np.stack([g[:n] for g in groups])  # (R, n) configuration indices
        if self.Lx < MIN_SIZE or self.Ly < MIN_SIZE:
            raise ValueError(f"source must have a lattice of at least {MIN_SIZE} x {MIN_SIZE} sites; got {self.Lx} x {self.Ly}")

    def blocks(self, block_size: int | None):
        """Yield spin blocks ``(k, Lx, Ly)`` in replica-major order."""
        if block_size is None:
            block_size = max(1, min(256, (1 << 21) // (self.Lx * self.Ly)))
        block_size = _check_int("block_size", block_size, 1, None)
        flat = self.order.reshape(-1)
        for a in range(0, flat.size, block_size):
            idx = flat[a : a + block_size]
            if self._ens is not None:
                yield self._ens[idx]
            else:
                xp = self._xp
                yield xp.take(self._arr, xp.asarray(idx, dtype=xp.int64), axis=0)

    def collect(self, fn, block_size):
        """Apply ``fn(block) -> dict of (k, ...) arrays`` and stack to ``(R, n, ...)`` NumPy arrays."""
        parts: dict[str, list] = {}
        for block in self.blocks(block_size):
            for key, val in fn(block).items():
                parts.setdefault(key, []).append(np.asarray(to_numpy(val), dtype=np.float64))
        return {k: np.concatenate(v, axis=0).reshape((self.R, self.n) + v[0].shape[1:]) for k, v in parts.items()}


def _check_samples(src: _Source, minimum: int = 4) -> None:
    if src.n < minimum:
        raise ValueError(
            f"source has only {src.n} configuration(s) per chain ({src.R} chain(s)); "
            f"the error analysis needs at least {minimum} per chain"
        )


@dataclass(frozen=True)
class CorrelationFunction:
    """Ensemble correlation function with errors, from :func:`correlation_function`.

    Attributes
    ----------
    direction, form, method : as requested.
    steps : int ``(n_r,)`` lattice steps (``r`` along an axis, ``n`` along the diagonal).
    r : float ``(n_r,)`` Euclidean distance (``sqrt(2) n`` along the diagonal).
    mean, error, tau_int : float ``(n_r,)`` Γ-method estimates per distance (``tau_int`` in
        units of the configuration spacing).
    estimates : the :class:`~isingcore.measure.Estimate` of each distance.
    size : ``(Lx, Ly)``; n_configs, n_replicas : the configurations used.
    """

    direction: str
    form: str
    method: str
    steps: np.ndarray
    r: np.ndarray
    mean: np.ndarray
    error: np.ndarray
    tau_int: np.ndarray
    estimates: tuple
    size: tuple
    n_configs: int
    n_replicas: int

    def z_scores(self, reference) -> np.ndarray:
        """``(mean - reference) / error`` per distance (NaN where the error is zero)."""
        ref = np.asarray(reference, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.error > 0, (self.mean - ref) / self.error, np.nan)


def correlation_function(source: Any, direction: str = "axes", r_max: int | None = None, form: str = "full",
                         *, chains=None, method: str = "fft", tile: int | None = None, S: float = 2.0,
                         block_size: int | None = None) -> CorrelationFunction:
    """Ensemble mean of ``G(r)`` with Γ-method errors over configurations.

    Per configuration the site-averaged correlation (:func:`correlation_along_axes`,
    :func:`correlation_along_diagonals`, or :func:`tiled_correlation`) is a time series over
    the configurations; each distance gets :func:`~isingcore.measure.gamma_method` (forms
    "full" and "fluctuation") or :func:`~isingcore.measure.derived` of ``(C(r), m)`` for
    ``G(r) - <m>^2`` ("connected"), with the chains as replicas.

    Parameters
    ----------
    source : path of an isingcore ensemble file, an :class:`isingcore.io.Ensemble` (chains from
        the file, ordered by step), or a spin array ``(N, Lx, Ly)`` (one chain, or labelled by
        ``chains``) or ``(R, N, Lx, Ly)`` (``R`` replicas). Chains are cut to a common length.
    direction : {"axes", "x", "y", "diagonal"}
    r_max : largest distance in lattice steps (default ``L//2``; for tiles ``tile//4``).
    form : {"full", "connected", "fluctuation"} (see the module docstring).
    chains : labels ``(N,)`` of the chain of each configuration, for an ``(N, Lx, Ly)`` array.
    method : {"fft", "tiles"}; ``"tiles"`` needs ``tile`` (see :func:`tiled_correlation`).
    S : Γ-method window parameter.
    block_size : configurations per FFT batch (default: about 2 M sites).
    """
    from .autocorrelation import derived, gamma_method

    _check_choice("direction", direction, _DIRECTIONS)
    _check_choice("form", form, FORMS)
    _check_choice("method", method, ("fft", "tiles"))
    src = _Source(source, chains)
    _check_samples(src)
    lx, ly = src.Lx, src.Ly
    cfg_form = "full" if form == "connected" else form
    if method == "fft":
        if tile is not None:
            raise ValueError("tile is only used with method='tiles'")
        lim = _r_limit(direction, lx, ly)
        r_max = lim if r_max is None else _check_int("r_max", r_max, 0, lim, f" (half the lattice side for direction={direction!r})")

        def fn(block):
            if direction == "diagonal":
                g = correlation_along_diagonals(block, r_max, cfg_form)
            else:
                g = correlation_along_axes(block, r_max, {"axes": "both"}.get(direction, direction), cfg_form)
            out = {"g": g}
            if form == "connected":
                xp = get_namespace(block)
                out["m"] = xp.mean(xp.astype(block, xp.float64), axis=_AXES)
            return out
    else:
        if tile is None:
            raise ValueError("method='tiles' needs tile=<tile side>")
        T = _check_int("tile", tile, 2, min(lx, ly), " (the tile must fit in the lattice)")
        r_max = T // 4 if r_max is None else _check_int("r_max", r_max, 0, T - 1, " (less than the tile)")

        def fn(block):
            res = tiled_correlation(block, T, r_max, direction, cfg_form)
            out = {"g": res.mean}
            if form == "connected":
                xp = get_namespace(block)
                out["m"] = xp.mean(xp.astype(block, xp.float64), axis=_AXES)
            return out

    series = src.collect(fn, block_size)
    g = series["g"]
    ests = []
    for k in range(r_max + 1):
        if form == "connected":
            ests.append(derived(lambda c, m: c - m * m, g[:, :, k], series["m"], S=S))
        else:
            ests.append(gamma_method(g[:, :, k], S=S))
    steps = np.arange(r_max + 1)
    r = steps * (math.sqrt(2.0) if direction == "diagonal" else 1.0)
    return CorrelationFunction(
        direction=direction, form=form, method=method, steps=steps, r=r,
        mean=np.array([e.mean for e in ests]), error=np.array([e.error for e in ests]),
        tau_int=np.array([e.tau_int for e in ests]), estimates=tuple(ests), size=(lx, ly),
        n_configs=src.R * src.n, n_replicas=src.R,
    )


def _chi_f_series(block):
    """Per configuration ``S(0) = N m^2`` and ``F = [S(2pi/L, 0) + S(0, 2pi/L)] / 2``."""
    xp, s, lx, ly = _prepare(block, "source")
    p = _power(xp, s) / float(lx * ly)
    return {"chi": p[..., 0, 0], "F": 0.5 * (p[..., 1, 0] + p[..., 0, 1])}


def second_moment_correlation_length(source: Any, *, chains=None, method: str = "jackknife",
                                     n_bins: int | None = None, S: float = 2.0,
                                     block_size: int | None = None):
    """Second-moment correlation length ``xi_2nd = sqrt(chi/F - 1) / (2 sin(pi/L))`` with its error.

    ``chi = <S(0)> = N <m^2>``, ``F = <S(k_min)>`` averaged over ``k_min = (2pi/L, 0), (0, 2pi/L)``
    (F. Cooper, B. Freedman, D. Preston, Nucl. Phys. B 210 (1982) 210; S. Caracciolo et al.,
    Nucl. Phys. B 403 (1993) 475). Needs a square torus. At ``K_c``, ``xi_2nd / L`` tends to a
    universal constant (0.9050... on the periodic square, J. Salas & A. D. Sokal, J. Stat. Phys.
    98 (2000) 551).

    Parameters
    ----------
    source, chains, block_size : as in :func:`correlation_function`.
    method : {"jackknife", "gamma"}: binned jackknife (:func:`~isingcore.measure.jackknife`,
        ``n_bins`` bins) or Γ-method linear propagation (:func:`~isingcore.measure.derived`).

    Returns an :class:`~isingcore.measure.Estimate`.
    """
    from .autocorrelation import derived, jackknife

    _check_choice("method", method, ("jackknife", "gamma"))
    src = _Source(source, chains)
    _check_samples(src)
    if src.Lx != src.Ly:
        raise ValueError(f"second_moment_correlation_length needs a square torus (Lx == Ly); got {src.Lx} x {src.Ly}")
    L = src.Lx
    series = src.collect(_chi_f_series, block_size)
    chi, F = series["chi"], series["F"]
    if not float(chi.mean()) > float(F.mean()):
        raise ValueError(
            f"chi = <S(0)> = {chi.mean():.6g} is not larger than F = <S(k_min)> = {F.mean():.6g}: "
            "xi_2nd is undefined (S(k) is not peaked at k = 0)"
        )

    def f(c, fk):
        return second_moment_xi(c, fk, L)

    if method == "jackknife":
        return jackknife(f, chi, F, n_bins=n_bins)
    if n_bins is not None:
        raise ValueError("n_bins is only used with method='jackknife'")
    return derived(f, chi, F, S=S)


@dataclass(frozen=True)
class StructureFactorEnsemble:
    """Ensemble structure factor, from :func:`structure_factor_ensemble` (NumPy arrays).

    s_map : ``(Lx, Ly)`` mean ``S(k)`` in FFT order (:func:`wavevectors`).
    s_map_error : ``(Lx, Ly)`` naive standard error of each ``S(k)`` (``std / sqrt(N)``, no
        autocorrelation: for decorrelated ensembles; the shell values below have Γ-method errors).
    k, count, edges : shells as in :class:`ShellAverage`.
    mean, error, tau_int : ``(n_shells,)`` shell average of ``S`` with Γ-method errors over the
        per-configuration shell averages.
    rel_spread : ``(n_shells,)`` of the mean map (no error).
    a4, a4_error : ``(n_shells,)`` ``cos 4 theta`` amplitude ``<c>/<a>`` of the per-shell fit with
        its Γ-method error (:func:`~isingcore.measure.derived`); NaN where undetermined.
    n_configs, n_replicas : the configurations used.
    """

    s_map: np.ndarray
    s_map_error: np.ndarray
    k: np.ndarray
    count: np.ndarray
    edges: np.ndarray
    mean: np.ndarray
    error: np.ndarray
    tau_int: np.ndarray
    rel_spread: np.ndarray
    a4: np.ndarray
    a4_error: np.ndarray
    n_configs: int
    n_replicas: int


def structure_factor_ensemble(source: Any, *, chains=None, bin_width: float | None = None,
                              k_max: float | None = None, momentum: str = "euclidean", S: float = 2.0,
                              block_size: int | None = None) -> StructureFactorEnsemble:
    """Mean ``S(k)`` map, its shell average with Γ-method errors, and the isotropy per shell.

    Parameters as in :func:`correlation_function` and :func:`shell_average`. The map is
    accumulated on the fly (memory: two ``Lx x Ly`` float64 maps plus a few numbers per shell
    and configuration).
    """
    from .autocorrelation import derived, gamma_method

    _check_choice("momentum", momentum, ("euclidean", "lattice"))
    src = _Source(source, chains)
    _check_samples(src)
    lx, ly = src.Lx, src.Ly
    sh = _shells(lx, ly, bin_width, k_max, momentum)
    acc = {"sum": np.zeros((lx, ly)), "sq": np.zeros((lx, ly))}

    def fn(block):
        smap = np.asarray(to_numpy(structure_factor(block)), dtype=np.float64)
        acc["sum"] += smap.sum(axis=0)
        acc["sq"] += (smap * smap).sum(axis=0)
        flat = smap.reshape((-1, lx * ly))
        s0, s1, s2, _ = _shell_sums(sh, flat)
        fa, fc = _fit_a_c(sh, s0, s1, s2)
        return {"shell": s0 / sh.count, "a": fa, "c": fc}

    series = src.collect(fn, block_size)
    n_tot = src.R * src.n
    s_map = acc["sum"] / n_tot
    s_err = np.sqrt(np.maximum(acc["sq"] / n_tot - s_map**2, 0.0) / max(n_tot - 1, 1))
    n_sh = sh.count.size
    ests = [gamma_method(series["shell"][:, :, j], S=S) for j in range(n_sh)]
    a4 = np.full(n_sh, np.nan)
    a4_err = np.full(n_sh, np.nan)
    for j in range(n_sh):
        a_ser, c_ser = series["a"][:, :, j], series["c"][:, :, j]
        if np.all(np.isfinite(a_ser)) and np.all(np.isfinite(c_ser)) and a_ser.mean() != 0.0:
            e = derived(lambda a, c: c / a, a_ser, c_ser, S=S)
            a4[j], a4_err[j] = e.mean, e.error
    shells = shell_average(s_map, bin_width, k_max, momentum)
    return StructureFactorEnsemble(
        s_map=s_map, s_map_error=s_err, k=sh.k, count=sh.count, edges=sh.edges,
        mean=np.array([e.mean for e in ests]), error=np.array([e.error for e in ests]),
        tau_int=np.array([e.tau_int for e in ests]), rel_spread=shells.rel_spread, a4=a4, a4_error=a4_err,
        n_configs=n_tot, n_replicas=src.R,
    )
