"""The decimation hierarchy of multilevel sampling on an L x L torus, L = 2**n.

Seed 001 (RiGCS, Fig. 1 and appendix D; after Schmidt 1983) partitions the sites into levels
``s = (s^0, s^1, ..., s^last)`` such that every nearest neighbour of a site of level l, *in the
lattice that level l completes*, belongs to a coarser level. Coarse sites are a subset of the
fine ones (decimation), so the probability of a configuration factorises exactly:

    q(s) = q_0(s^0) * prod_{l >= 1} q_l(s^l | s^{<l}).

Levels, coarse to fine (``c`` = coarsest side, ``s0 = L / c``):

* level 0, ``"coarsest"``: the sites ``(i s0, j s0)``, a c x c square lattice of spacing s0;
* for each grid spacing ``h = s0/2, s0/4, ..., 1`` two levels that double the resolution:

  - ``"diagonal"`` (A_h): the sites ``x = y = h (mod 2h)``. Their four neighbours at distance
    h*sqrt(2) are the already sampled sites ``(x +- h, y +- h)``; together with the coarser
    sites they form a 45-degree rotated square lattice of spacing h*sqrt(2);
  - ``"axial"`` (B_h): the remaining sites of the spacing-h grid, ``x = h, y = 0`` or
    ``x = 0, y = h (mod 2h)``. Their neighbours ``(x +- h, y)``, ``(x, y +- h)`` are all sampled;
    after this level the spacing-h square lattice is complete.

The last level is B_1: every one of its sites has its four lattice neighbours fixed, so the
exact conditional of the Ising model is a product of independent heat-bath probabilities.

Two schemes (``scheme=``):

* ``"seed001"`` (default): the levels above, as in seed 001. The sites of one level are drawn
  independently given the coarser levels. That is exact only for the last level; for every other
  level it neglects the interactions between its own sites that the summed-out finer sites induce,
  an error that grows with the number of sites in the level (at the finest learned level, A_1,
  about L^2/4 sites).
* ``"split"``: every level but the last is split in two sub-lattices, the second conditioned on
  the first: A_h into ``"diagonal-a"`` (grid coordinates ``(x - h)/2h + (y - h)/2h`` even) and
  ``"diagonal-b"`` (odd), B_h into ``"axial-x"`` (``x = h, y = 0 mod 2h``) and ``"axial-y"``. The
  nearest pairs inside a level (distance 2h in A_h, h*sqrt(2) in B_h) then always straddle the two
  sub-lattices. At the finest grid the second diagonal sub-lattice, ``"decimated"``, is exact
  and needs no training: after A_1-a every site of B_1-b (odd x, odd y) touches four axial sites
  (x + y odd, not yet drawn), and each of those touches exactly one B_1-b site, so summing the
  axial spins out of ``exp(beta sum s_i s_j)`` gives

      p(s_v | coarser) ∝ prod_{a nb of v} cosh(beta (S_a + s_v)),   S_a = sum of the other three
                                                                     neighbours of a (all known),

  a product over the sites v of the level (:attr:`Level.second_neighbours` holds the three sites
  of each ``S_a``). B_1 (``"axial"``) stays one exact heat-bath level.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SCHEMES = ("seed001", "split")
KINDS = ("coarsest", "diagonal", "axial", "diagonal-a", "diagonal-b", "axial-x", "axial-y", "decimated")
_DIAGONAL = ((1, 1), (1, -1), (-1, 1), (-1, -1))
_AXIAL = ((1, 0), (-1, 0), (0, 1), (0, -1))


def _power_of_two(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    value = int(value)
    if value < minimum or value & (value - 1):
        raise ValueError(f"{name} must be a power of two >= {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class Level:
    """One level of the hierarchy.

    ``sites``: flat indices ``x * L + y`` of its sites on the full lattice (sorted);
    ``neighbours``: ``(n_sites, 4)`` flat indices of their four neighbours in the lattice the
    level completes (all in coarser levels; ``None`` for the coarsest level);
    ``size``: the side L of the full lattice; ``grid``: the spacing h of the grid the level lives on; ``grid_xy``: ``(n_sites, 2)`` the
    sites' coordinates on that grid (``x // h``, ``y // h``); ``second_neighbours``: only for the
    ``"decimated"`` kind, ``(n_sites, 4, 3)`` flat indices of the other three neighbours of each of
    the four (summed-out) axial neighbours, in the order of ``neighbours``.
    """

    index: int
    kind: str
    grid: int
    size: int
    sites: np.ndarray
    neighbours: np.ndarray | None
    grid_xy: np.ndarray = field(repr=False)
    second_neighbours: np.ndarray | None = field(default=None, repr=False)

    @property
    def base_kind(self) -> str:
        """``"coarsest"``, ``"diagonal"`` or ``"axial"``: the seed-001 level this (sub-)level belongs to."""
        return "diagonal" if self.kind in ("diagonal-a", "diagonal-b", "decimated") else self.kind.split("-")[0]

    @property
    def n_sites(self) -> int:
        return int(self.sites.shape[0])

    @property
    def grid_size(self) -> int:
        """Side of the spacing-``grid`` lattice this level lives on."""
        return self.size // self.grid

    def describe(self) -> str:
        if self.kind == "coarsest":
            return f"level {self.index}: coarsest {self.grid_size}x{self.grid_size} lattice (spacing {self.grid})"
        where = {"diagonal": "x=y=h", "axial": "x=h,y=0 | x=0,y=h", "diagonal-a": "x=y=h, even sub-lattice",
                 "diagonal-b": "x=y=h, odd sub-lattice", "decimated": "x=y=h, odd sub-lattice, exact",
                 "axial-x": "x=h,y=0", "axial-y": "x=0,y=h"}[self.kind]
        return f"level {self.index}: {self.kind} sites of the spacing-{self.grid} grid ({where} mod 2h), {self.n_sites} sites"


class Hierarchy:
    """Decimation levels of an ``size x size`` torus (``size = 2**n``) down to ``coarsest x coarsest``.

    ``coarsest`` is 2 or 4 (the coarsest level is sampled exactly by enumerating its
    ``2**(coarsest**2)`` states) and at most ``size``. ``scheme``: ``"seed001"`` or ``"split"``
    (module docstring).
    """

    def __init__(self, size: int, coarsest: int = 4, scheme: str = "seed001"):
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
        self.scheme = scheme
        self.size = L = _power_of_two(size, "size", 2)
        self.coarsest = c = _power_of_two(coarsest, "coarsest", 2)
        if c > 4:
            raise ValueError(f"coarsest must be 2 or 4 (it is enumerated exactly), got {c}")
        if c > L:
            raise ValueError(f"coarsest ({c}) must not exceed size ({L})")
        x, y = np.meshgrid(np.arange(L), np.arange(L), indexing="ij")
        s0 = L // c
        levels = []
        m0 = (x % s0 == 0) & (y % s0 == 0)
        levels.append(self._level(0, "coarsest", s0, m0, x, y, None))
        h = s0 // 2
        while h >= 1:
            a = (x % (2 * h) == h) & (y % (2 * h) == h)
            bx = (x % (2 * h) == h) & (y % (2 * h) == 0)
            by = (x % (2 * h) == 0) & (y % (2 * h) == h)
            if scheme == "seed001":
                levels.append(self._level(len(levels), "diagonal", h, a, x, y, _DIAGONAL))
                levels.append(self._level(len(levels), "axial", h, bx | by, x, y, _AXIAL))
            else:
                even = ((x // (2 * h) + y // (2 * h)) % 2) == 0
                levels.append(self._level(len(levels), "diagonal-a", h, a & even, x, y, _DIAGONAL))
                if h == 1:
                    levels.append(self._level(len(levels), "decimated", h, a & ~even, x, y, _AXIAL))
                    levels.append(self._level(len(levels), "axial", h, bx | by, x, y, _AXIAL))
                else:
                    levels.append(self._level(len(levels), "diagonal-b", h, a & ~even, x, y, _DIAGONAL))
                    levels.append(self._level(len(levels), "axial-x", h, bx, x, y, _AXIAL))
                    levels.append(self._level(len(levels), "axial-y", h, by, x, y, _AXIAL))
            h //= 2
        self.levels: tuple[Level, ...] = tuple(levels)
        lev = np.full((L, L), -1, dtype=np.int64)
        for lv in levels:
            lev.reshape(-1)[lv.sites] = lv.index
        if np.any(lev < 0):  # pragma: no cover - the construction covers every site
            raise AssertionError("hierarchy does not cover the lattice")
        self.level_of_site = lev

    def _level(self, index, kind, h, mask, x, y, offsets) -> Level:
        L = self.size
        xs, ys = x[mask], y[mask]
        sites = (xs * L + ys).astype(np.int64)
        order = np.argsort(sites)
        xs, ys, sites = xs[order], ys[order], sites[order]
        nb = second = None
        if offsets is not None:
            nb = np.stack([((xs + dx * h) % L) * L + (ys + dy * h) % L for dx, dy in offsets], axis=1).astype(np.int64)
        if kind == "decimated":  # the other three neighbours of each axial neighbour (x+dx, y+dy)
            second = np.stack([np.stack([((xs + dx + ex) % L) * L + (ys + dy + ey) % L
                                         for ex, ey in _AXIAL if (ex, ey) != (-dx, -dy)], axis=1)
                               for dx, dy in offsets], axis=1).astype(np.int64)
        return Level(index, kind, h, L, sites, nb, np.stack([xs // h, ys // h], axis=1).astype(np.int64), second)

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    def __repr__(self) -> str:
        return f"Hierarchy(size={self.size}, coarsest={self.coarsest}, scheme={self.scheme!r}, levels={self.n_levels})"

    def describe(self) -> str:
        return "\n".join(lv.describe() for lv in self.levels)

    def embed(self, spins, level: int, xp=None):
        """The input of a level's conditional: spins of all coarser levels on the level's grid.

        ``spins``: ``(B, L, L)`` (any dtype; entries of level >= ``level`` are ignored). Returns
        ``(B, 2, n, n)`` float32, ``n = L / h``: channel 0 the spins of levels < ``level`` (0 where
        not yet sampled), channel 1 the mask of sampled sites (1 or 0).
        """
        if xp is None:
            from .._array import get_namespace

            xp = get_namespace(spins)
        lv = self.levels[level]
        h = lv.grid
        sub = xp.astype(spins[:, ::h, ::h], xp.float32)
        mask_np = (self.level_of_site[::h, ::h] < level).astype(np.float32)
        mask = xp.asarray(mask_np)
        B = spins.shape[0]
        mask_b = xp.broadcast_to(mask[None, ...], (B,) + tuple(mask_np.shape))
        return xp.stack([sub * mask_b, mask_b], axis=1)

    def coupling_schedule(self, beta: float) -> np.ndarray:
        """Maris-Kadanoff couplings per level: ``K_{l-1} = (3/8) ln cosh(4 K_l)``, finest = beta.

        The recursion (seed 001 eq. 37; Maris & Kadanoff, Am. J. Phys. 46, 652 (1978)) maps the
        coupling of a lattice to that of its 45-degree rotated, sqrt(2)-times coarser decimated
        lattice. Level l's entry is the coupling of the lattice the level completes, so the last
        (exact heat-bath) level gets ``beta`` and each coarser level one more application. In the
        ``"split"`` scheme both sub-levels of a seed-001 level get its coupling (the exact
        ``"decimated"`` level: ``beta``, which it uses in its ``cosh`` factors).
        """
        beta = float(beta)
        if not np.isfinite(beta) or beta <= 0:
            raise ValueError(f"beta must be positive and finite, got {beta}")
        K = np.empty(self.n_levels)
        k = beta
        previous = None
        for l in range(self.n_levels - 1, -1, -1):
            lv = self.levels[l]
            group = (lv.grid, lv.base_kind)
            if previous is not None and group != previous:
                k = 0.375 * np.log(np.cosh(4.0 * k))
            K[l] = beta if lv.kind == "decimated" else k
            previous = group
        return K
