r"""Streaming analysis of one giant configuration, tile by tile (never the whole lattice in memory).

The input is anything with ``shape == (Lx, Ly)`` and two-slice indexing that returns int8 +-1
blocks: a :class:`isingcore.giant.GiantLattice` (read lazily from a bit-packed giant-lattice file)
or a NumPy array. Definitions are those of :mod:`isingcore.measure.observables` and
:mod:`isingcore.measure.correlations` on the periodic ``Lx x Ly`` torus, ``N = Lx Ly``.

:func:`lattice_observables` (one pass over full-width bands of ``tile`` rows)
    Exact integer sums ``M = sum s``, ``B_x = sum s(x, y) s(x+1, y)``, ``B_y = sum s(x, y) s(x, y+1)``,
    ``D = sum s(x, y) [s(x+1, y+1) + s(x+1, y-1)]`` (every bond owned by its upper / left site),
    hence ``e = -(B_x + B_y)/N`` (energy per site, ``J = 1``, ``h = 0``), ``m = M/N``,
    ``c10x = B_x/N``, ``c10y = B_y/N``, ``c11 = D/(2N)``: the same numbers as the in-memory
    estimators, exactly. Errors: the ``T x T`` tiles are blocks; the error of a lattice mean is
    the standard error of the tile means, ``std(tile values) / sqrt(n_tiles)`` (each tile owns
    its bonds, so the tile means average to the lattice value; tiles of unequal size are weighted
    by their sites). At ``K_c`` the energy density is correlated as ``r^-2`` (dimension 1), so
    tiles of thousands of sites are nearly independent blocks; the magnetization is correlated
    over the whole lattice (``r^-1/4``) and its tile error is only a lower bound.

:func:`axis_correlation` (one pass over row bands, one over column bands)
    ``G(r) = [C(r, 0) + C(0, r)] / 2`` with ``C(d) = (1/N) sum_x s_x s_{x+d}`` for ``r = 0 .. r_max``
    from **all** ``2N`` pairs at distance ``r`` along the axes: per band, the rows (columns) are
    Fourier transformed along their full periodic length, ``sum_rows |FFT(row)|^2`` is
    accumulated and transformed back (Wiener-Khinchin), and the integer pair sums are rounded
    to integers (exact). The result equals :func:`isingcore.measure.correlations.correlation_along_axes`
    of the whole lattice (``axis="both"``, ``form="full"``). Error: the lattice is cut into ``B``
    bands of rows and ``B`` bands of columns; band ``b`` gives ``g_b(r)`` (the mean of its
    row-band and column-band estimates) and the error is ``std_b(g_b) / sqrt(B)``. Bands are
    correlated at criticality (``G`` decays as ``r^-1/4``), so this within-configuration error is
    a lower bound on the configuration-to-configuration scatter at large ``r``.

:func:`diagonal_correlation_sampled` (sampled pairs: random rows)
    ``D(n) = [C(n, n) + C(n, -n)] / 2`` (both diagonals, Euclidean distance ``sqrt(2) n``) from the
    pairs ``(x, y), (x + n, y +- n)`` of ``rows`` rows ``x`` drawn uniformly without replacement
    (NumPy ``default_rng(seed)``), all ``y``: each sampled row needs only rows ``x`` and ``x + n``,
    so ``n`` up to ``L/2`` costs two row reads, not a band of ``n`` rows. Unbiased for the lattice's
    ``D(n)``; error = standard error over the sampled rows (the sampling error of this estimate of
    the one configuration's ``D(n)``, finite-population corrected). With ``rows=None`` every row
    is used and the result equals :func:`isingcore.measure.correlations.correlation_along_diagonals`.

:func:`structure_factor_tiles`
    Bartlett's averaged periodogram: ``S_T(k) = < |sum_{x in tile} s_x e^{-i k.x}|^2 / T^2 >`` over
    ``T x T`` tiles, ``k = 2 pi (a, b) / T``, with the standard error over tiles. For ``T = L`` it
    is :func:`isingcore.measure.correlations.structure_factor` of the lattice; for ``T < L`` it is
    ``S`` of the infinite-volume limit smoothed by the tile's Fejer window (resolution ``2 pi / T``,
    leakage from the open tile edges at small ``k``). Reference: M. S. Bartlett, Nature 161 (1948)
    686; P. D. Welch, IEEE Trans. Audio Electroacoust. 15 (1967) 70.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

__all__ = ["lattice_observables", "axis_correlation", "structure_factor_tiles", "diagonal_correlation_sampled",
           "DiagonalCorrelation", "StreamingEstimate",
           "AxisCorrelation", "TiledStructureFactor", "analyse_giant"]


@dataclass
class StreamingEstimate:
    """A lattice mean with the standard error of its tile means (``n_tiles`` blocks)."""

    mean: float
    error: float
    n_tiles: int

    def __str__(self):
        from .autocorrelation import format_value_error

        if not math.isfinite(self.error) or self.error == 0:
            return f"{self.mean:.8f}"
        return format_value_error(self.mean, self.error)

    def as_dict(self):
        return {"mean": self.mean, "error": self.error, "n_tiles": self.n_tiles}


@dataclass
class AxisCorrelation:
    """``G(r)`` along the axes, ``r = 0 .. r_max``: ``mean``, ``error`` (over ``n_bands`` bands), ``x``, ``y``."""

    r: np.ndarray
    mean: np.ndarray
    error: np.ndarray
    x: np.ndarray
    y: np.ndarray
    n_bands: int
    L: tuple


@dataclass
class TiledStructureFactor:
    """Averaged tile periodogram ``S_T`` (``(T, T)``, FFT order), its standard error, and the tile size."""

    mean: np.ndarray
    error: np.ndarray
    tile: int
    n_tiles: int


def _shape(lattice):
    shape = tuple(int(v) for v in getattr(lattice, "shape", ()))
    if len(shape) != 2:
        raise ValueError(f"lattice must be one configuration of shape (Lx, Ly), got shape {shape}")
    if min(shape) < 2:
        raise ValueError(f"lattice must be at least 2 x 2, got {shape}")
    return shape


def _tile(tile, lattice, shape):
    if tile is None:
        tile = int(getattr(lattice, "tile", 0) or min(max(shape), 2048))
    if isinstance(tile, bool) or not isinstance(tile, numbers.Integral) or tile < 1:
        raise ValueError(f"tile must be a positive integer, got {tile!r}")
    return min(int(tile), max(shape))


def _bar(progress, total, desc):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="band", leave=False)


def _read(lattice, rows, cols):
    return np.ascontiguousarray(np.asarray(lattice[rows, cols]), dtype=np.int8)


def _weighted(values, weights):
    v = np.asarray(values, np.float64)
    w = np.asarray(weights, np.float64)
    mean = float(np.sum(w * v) / np.sum(w))
    n = v.size
    if n < 2:
        return mean, float("nan")
    # standard error of a weighted mean of blocks (equal weights: std(ddof=1)/sqrt(n))
    wn = w / w.mean()
    var = float(np.sum((wn * (v - mean)) ** 2) / (n * (n - 1)))
    return mean, math.sqrt(var)


def _band_sums(s, nxt):
    """Per-column integer sums of a band ``s`` (h, Ly) whose next row is ``nxt`` (Ly,): m, bx, by, d."""
    down = np.concatenate([s[1:], nxt[None]], axis=0)
    right = np.roll(s, -1, axis=1)
    m = s.sum(axis=0, dtype=np.int64)
    bx = (s * down).sum(axis=0, dtype=np.int64)
    by = (s * right).sum(axis=0, dtype=np.int64)
    d = (s * (np.roll(down, -1, axis=1) + np.roll(down, 1, axis=1))).sum(axis=0, dtype=np.int64)
    return m, bx, by, d


def _fft_workers():
    import os

    return max(1, os.cpu_count() or 1)


def _power_rows(s, sub=256):
    """``sum_rows |rfft(row)|^2`` of an int8 block (rows along axis 0), float64 (Ly // 2 + 1,)."""
    import scipy.fft as sfft

    acc = np.zeros(s.shape[1] // 2 + 1, np.float64)
    for a in range(0, s.shape[0], sub):
        f = sfft.rfft(s[a:a + sub].astype(np.float64), axis=1, workers=_fft_workers())
        acc += (f.real ** 2 + f.imag ** 2).sum(axis=0)
    return acc


def _power_cols(s, sub=256):
    """``sum_columns |rfft(column)|^2`` of an int8 block (columns along axis 1), float64 (Lx // 2 + 1,)."""
    import scipy.fft as sfft

    acc = np.zeros(s.shape[0] // 2 + 1, np.float64)
    for a in range(0, s.shape[1], sub):
        f = sfft.rfft(s[:, a:a + sub].astype(np.float64), axis=0, workers=_fft_workers())
        acc += (f.real ** 2 + f.imag ** 2).sum(axis=1)
    return acc


def _pair_sums(power, n, r_max):
    """Integer pair sums ``sum s_i s_{i+r}`` for r = 0..r_max from the summed power spectrum of length-n lines."""
    c = np.fft.irfft(power, n=n)[:r_max + 1]
    return np.rint(c).astype(np.int64)


def lattice_observables(lattice, *, tile: int | None = None, progress: bool = False) -> dict:
    """Energy per site, magnetization, ``c10x``, ``c10y``, ``c10``, ``c11`` (:class:`StreamingEstimate` each).

    Also ``abs_m`` (``|m|``, no error) and ``sums`` (the exact integers). See the module docstring.
    """
    Lx, Ly = _shape(lattice)
    T = _tile(tile, lattice, (Lx, Ly))
    starts = np.arange(0, Ly, T)
    widths = np.diff(np.append(starts, Ly))
    per_tile = []  # (sites, m, bx, by, d)
    bar = _bar(progress, -(-Lx // T), f"energy and magnetization {Lx}x{Ly}")
    for x0 in range(0, Lx, T):
        x1 = min(Lx, x0 + T)
        s = _read(lattice, slice(x0, x1), slice(0, Ly))
        nxt = _read(lattice, slice(x1 % Lx, x1 % Lx + 1), slice(0, Ly))[0]
        m, bx, by, d = _band_sums(s, nxt)
        sums = [np.add.reduceat(v, starts) for v in (m, bx, by, d)]
        for j in range(starts.size):
            per_tile.append((float((x1 - x0) * widths[j]),) + tuple(int(v[j]) for v in sums))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    a = np.array(per_tile, dtype=np.float64)
    w = a[:, 0]
    tot = np.array([sum(int(t[k]) for t in per_tile) for k in range(1, 5)], dtype=np.int64)
    N = float(Lx * Ly)
    n = a.shape[0]

    def est(values):
        mean, err = _weighted(values, w)
        return StreamingEstimate(mean, err, n)

    e = est(-(a[:, 2] + a[:, 3]) / w)
    out = {
        "energy": StreamingEstimate(-(float(tot[1]) + float(tot[2])) / N, e.error, n),
        "magnetization": StreamingEstimate(float(tot[0]) / N, est(a[:, 1] / w).error, n),
        "c10x": StreamingEstimate(float(tot[1]) / N, est(a[:, 2] / w).error, n),
        "c10y": StreamingEstimate(float(tot[2]) / N, est(a[:, 3] / w).error, n),
        "c10": StreamingEstimate((float(tot[1]) + float(tot[2])) / (2 * N), est((a[:, 2] + a[:, 3]) / (2 * w)).error, n),
        "c11": StreamingEstimate(float(tot[3]) / (2 * N), est(a[:, 4] / (2 * w)).error, n),
        "abs_m": abs(float(tot[0]) / N),
        "sums": {"m": int(tot[0]), "bx": int(tot[1]), "by": int(tot[2]), "d": int(tot[3])},
        "tile": T,
        "L": (Lx, Ly),
    }
    return out


def axis_correlation(lattice, r_max: int, *, band: int | None = None, progress: bool = False) -> AxisCorrelation:
    """``G(r)`` along both axes for ``r = 0 .. r_max`` (``r_max <= min(Lx, Ly) // 2``), from all pairs, with band errors."""
    Lx, Ly = _shape(lattice)
    if isinstance(r_max, bool) or not isinstance(r_max, numbers.Integral) or not 0 <= r_max <= min(Lx, Ly) // 2:
        raise ValueError(f"r_max must be an integer in [0, {min(Lx, Ly) // 2}] (half the smaller side), got {r_max!r}")
    T = _tile(band, lattice, (Lx, Ly))
    r_max = int(r_max)
    rows_x, rows_y = [], []  # per band: (pair sums along y from a row band, sites); along x from a column band
    bar = _bar(progress, -(-Lx // T) + -(-Ly // T), f"G(r) along the axes {Lx}x{Ly}")
    for x0 in range(0, Lx, T):
        s = _read(lattice, slice(x0, min(Lx, x0 + T)), slice(0, Ly))
        rows_y.append((_pair_sums(_power_rows(s), Ly, r_max), s.size))
        if bar is not None:
            bar.update(1)
    for y0 in range(0, Ly, T):
        s = _read(lattice, slice(0, Lx), slice(y0, min(Ly, y0 + T)))
        rows_x.append((_pair_sums(_power_cols(s), Lx, r_max), s.size))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    N = float(Lx * Ly)
    cy = np.sum([p for p, _ in rows_y], axis=0) / N
    cx = np.sum([p for p, _ in rows_x], axis=0) / N
    mean = 0.5 * (cx + cy)
    B = min(len(rows_x), len(rows_y))
    if B >= 2:
        g = np.array([0.5 * (rows_y[b][0] / rows_y[b][1] + rows_x[b][0] / rows_x[b][1]) for b in range(B)])
        error = g.std(axis=0, ddof=1) / math.sqrt(B)
    else:
        error = np.full(r_max + 1, np.nan)
    return AxisCorrelation(r=np.arange(r_max + 1), mean=mean, error=error, x=cx, y=cy, n_bands=B, L=(Lx, Ly))


@dataclass
class DiagonalCorrelation:
    """``D(n)`` along the diagonals at the steps ``n`` (``r = sqrt(2) n``): ``mean``, ``error`` over ``rows`` sampled rows."""

    n: np.ndarray
    mean: np.ndarray
    error: np.ndarray
    rows: int
    L: tuple


def diagonal_correlation_sampled(lattice, n_values, *, rows: int | None = 256, seed: int = 0,
                                 progress: bool = False) -> DiagonalCorrelation:
    """Diagonal ``D(n)`` at the steps ``n_values`` (each in ``[0, min(Lx, Ly) // 2]``) from sampled rows (module docstring)."""
    Lx, Ly = _shape(lattice)
    n_arr = np.atleast_1d(np.asarray(n_values))
    lim = min(Lx, Ly) // 2
    if n_arr.dtype.kind not in "iu" or n_arr.ndim != 1 or n_arr.size == 0 or n_arr.min() < 0 or n_arr.max() > lim:
        raise ValueError(f"n_values must be integers in [0, {lim}] (half the shorter side), got {n_values!r}")
    if rows is None:
        xs = np.arange(Lx)
    else:
        if isinstance(rows, bool) or not isinstance(rows, numbers.Integral) or rows < 2:
            raise ValueError(f"rows must be an integer >= 2 or None (every row), got {rows!r}")
        xs = np.sort(np.random.default_rng(seed).choice(Lx, size=min(int(rows), Lx), replace=False))
    R = xs.size
    vals = np.empty((n_arr.size, R), np.float64)
    bar = _bar(progress, n_arr.size, f"D(n) from {R} sampled rows x {n_arr.size} distances")
    first = {}
    for k, n in enumerate(n_arr):  # distance outer, rows inner in order: the store's chunk cache is reused
        for i, x in enumerate(xs):
            x = int(x)
            if x not in first:
                first[x] = _read(lattice, slice(x, x + 1), slice(0, Ly))[0].astype(np.int32)
            s0 = first[x]
            s1 = _read(lattice, slice((x + int(n)) % Lx, (x + int(n)) % Lx + 1), slice(0, Ly))[0].astype(np.int32)
            vals[k, i] = 0.5 * (np.dot(s0, np.roll(s1, -int(n))) + np.dot(s0, np.roll(s1, int(n)))) / Ly
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    mean = vals.mean(axis=1)
    if R >= 2 and R < Lx:
        fpc = 1.0 - R / Lx  # finite-population correction: sampling rows without replacement
        err = vals.std(axis=1, ddof=1) / math.sqrt(R) * math.sqrt(fpc)
    else:
        err = np.zeros(n_arr.size) if R == Lx else np.full(n_arr.size, np.nan)
    return DiagonalCorrelation(n=n_arr.astype(np.int64), mean=mean, error=err, rows=R, L=(Lx, Ly))


def structure_factor_tiles(lattice, tile: int, *, max_tiles: int | None = None, progress: bool = False,
                           seed: int = 0) -> TiledStructureFactor:
    """Averaged periodogram over ``T x T`` tiles (all whole tiles, or ``max_tiles`` of them chosen at random)."""
    Lx, Ly = _shape(lattice)
    if isinstance(tile, bool) or not isinstance(tile, numbers.Integral) or not 2 <= tile <= min(Lx, Ly):
        raise ValueError(f"tile must be an integer in [2, {min(Lx, Ly)}], got {tile!r}")
    T = int(tile)
    origins = [(x0, y0) for x0 in range(0, Lx - T + 1, T) for y0 in range(0, Ly - T + 1, T)]
    if max_tiles is not None and max_tiles < len(origins):
        if isinstance(max_tiles, bool) or not isinstance(max_tiles, numbers.Integral) or max_tiles < 1:
            raise ValueError(f"max_tiles must be a positive integer, got {max_tiles!r}")
        pick = np.random.default_rng(seed).choice(len(origins), size=int(max_tiles), replace=False)
        origins = [origins[i] for i in sorted(pick)]
    import scipy.fft as sfft

    s1 = np.zeros((T, T), np.float64)
    s2 = np.zeros((T, T), np.float64)
    bar = _bar(progress, len(origins), f"S(k) from {len(origins)} tiles of {T}")
    for x0, y0 in origins:
        t = _read(lattice, slice(x0, x0 + T), slice(y0, y0 + T)).astype(np.float64)
        f = sfft.fft2(t, workers=_fft_workers())
        p = (f.real ** 2 + f.imag ** 2) / float(T * T)
        s1 += p
        s2 += p * p
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    n = len(origins)
    mean = s1 / n
    err = np.sqrt(np.maximum(s2 / n - mean ** 2, 0.0) / max(n - 1, 1)) if n > 1 else np.full((T, T), np.nan)
    return TiledStructureFactor(mean=mean, error=err, tile=T, n_tiles=n)


def analyse_giant(lattice, *, r_max: int | None = None, tile: int | None = None, sk_tile: int | None = None,
                  sk_max_tiles: int | None = None, diag_n=None, diag_rows: int | None = 256,
                  progress: bool = False) -> dict:
    """The three estimators above on one lattice; returns a JSON-friendly dict (plus the raw result objects)."""
    Lx, Ly = _shape(lattice)
    r_max = min(Lx, Ly) // 2 if r_max is None else r_max
    obs = lattice_observables(lattice, tile=tile, progress=progress)
    g = axis_correlation(lattice, r_max, band=tile, progress=progress)
    out = {"L": [Lx, Ly], "tile": obs["tile"],
           **{k: obs[k].as_dict() for k in ("energy", "magnetization", "c10x", "c10y", "c10", "c11")},
           "abs_m": obs["abs_m"], "sums": obs["sums"],
           "G": {"r": g.r.tolist(), "mean": g.mean.tolist(), "error": g.error.tolist(), "n_bands": g.n_bands},
           "_objects": {"observables": obs, "G": g}}
    if diag_n is not None:
        d = diagonal_correlation_sampled(lattice, diag_n, rows=diag_rows, progress=progress)
        out["D"] = {"n": d.n.tolist(), "mean": d.mean.tolist(), "error": d.error.tolist(), "rows": d.rows}
        out["_objects"]["D"] = d
    if sk_tile:
        sk = structure_factor_tiles(lattice, sk_tile, max_tiles=sk_max_tiles, progress=progress)
        out["S"] = {"tile": sk.tile, "n_tiles": sk.n_tiles}
        out["_objects"]["S"] = sk
    return out
