r"""Monte Carlo renormalization group: the linearised block-spin transformation and its exponents.

R. H. Swendsen, "Monte Carlo renormalization group", Phys. Rev. Lett. 42 (1979) 859; seed 003
(A. Rançon et al., "Dreaming up scale invariance via inverse renormalization group") section V,
eqs. (17)-(22).

Setting
-------
Write the (unknown) Hamiltonian of the configurations at blocking level ``n`` as
``H^(n) = -sum_alpha K_alpha^(n) S_alpha^(n)`` (weight ``exp(sum_alpha K_alpha S_alpha)``) with
translation- and D4-invariant, *extensive* operators

.. math:: S_\alpha = \sum_x \sum_{g \in D_4 / \mathrm{stab}(\alpha)} \prod_{\delta \in g(\alpha)} s_{x+\delta},

one term per lattice site ``x`` and per distinct orientation of the spin cluster ``alpha``.
Level ``n + 1`` comes from level ``n`` by the ``b x b`` majority rule with random ties
(:func:`isingcore.rg.coarse.majority_rule`), level 0 being the Monte Carlo configuration.
Near the fixed point ``K^(n+1) - K* = T^(n) (K^(n) - K*)`` with
``T^(n)_{alpha beta} = dK_alpha^(n+1) / dK_beta^(n)``. The chain rule

.. math:: \frac{\partial\langle S^{(n+1)}_\gamma\rangle}{\partial K^{(n)}_\beta}
          = \sum_\alpha \frac{\partial K^{(n+1)}_\alpha}{\partial K^{(n)}_\beta}
            \frac{\partial\langle S^{(n+1)}_\gamma\rangle}{\partial K^{(n+1)}_\alpha}

with both derivatives measured as connected correlations gives ``B = A T``, i.e.

.. math:: T^{(n)} = A^{-1} B,\qquad
          A_{\gamma\alpha} = \langle S^{(n+1)}_\gamma S^{(n+1)}_\alpha\rangle_c,\qquad
          B_{\gamma\beta} = \langle S^{(n+1)}_\gamma S^{(n)}_\beta\rangle_c .

The eigenvalues ``lambda`` of ``T`` give the exponents ``y = ln(lambda) / ln(b)``: the leading
eigenvalue of the spin-flip-even sector gives ``y_t = 1/nu`` (exact: 1), the leading one of the
odd sector ``y_h = (d + 2 - eta)/2`` (exact: 15/8).

*Index convention.* Seed 003 writes ``T = M^{-1} N`` with ``M_{gamma beta} = <S^n(mu) S^n(sigma)>_c``
(coarse-fine, our ``B``) and ``N_{alpha gamma} = <S^{n+1} S^n>_c`` (coarse-coarse, our ``A``).
Read literally that is ``B^{-1} A``, whose eigenvalues are ``1/lambda``; the chain rule above
(their eq. 18, Swendsen's eq. 6) gives ``A^{-1} B``, which is what is implemented (and what gives
``y_h ~ 1.875``, ``y_t ~ 1`` on critical data). ``B A^{-1}`` would have the same eigenvalues.

*Normalisation.* The operators are stored as densities
``s_alpha = S_alpha / (N_sites |orbit_alpha|)`` (so the nearest-neighbour density is the usual
``<s_i s_{i+x}>``). The eigenvalues of ``T`` are unchanged by any level-independent constant
``c_alpha`` per operator (``T -> D^{-1} T D``), but the site count differs by ``b^d`` between the
levels, so from densities ``T = b^d A_dens^{-1} B_dens`` (``d = 2``). Dropping that factor would
divide every eigenvalue by ``b^d = 4``.

*Levels.* ``level = n`` means ``T^(n)``: the matrix between the configurations blocked ``n`` and
``n + 1`` times. For ``L = 64`` and ``b = 2``, ``level = 1`` uses the 32^2 and 16^2 block lattices.

*Z2.* On spin-flip-symmetric data the even-odd blocks of ``A`` and ``B`` vanish (the majority rule
with random ties commutes exactly with a global flip), so the sectors are analysed separately.
With ``z2_symmetric=True`` (default) the means of the odd operators are set to their exact
value 0 instead of being subtracted (the symmetric estimator, as for the susceptibility at h = 0).

*Errors.* Binned jackknife over configurations: bins never straddle chains (replicas), as in
:func:`isingcore.measure.jackknife`; the eigenvalues and exponents are recomputed on every
leave-one-bin-out sample (eigenvalues sorted by decreasing real part in each sample).

Operators (:data:`COUPLINGS_3X3`)
---------------------------------
All 36 clusters of 1 to 4 spins that fit in a 3x3 plaquette, up to translations and D4 (seed
003: "all couplings with up to 4 spins that fit onto a 3x3 plaquette"): 25 even (5 pairs, 20
four-spin clusters) and 11 odd (the magnetisation and 10 three-spin clusters). A cluster is named
by its canonical offsets (the smallest image under D4), e.g. ``"00-01"`` (nearest neighbour),
``"00-11"`` (diagonal), ``"00-02"`` (the (2,0) pair), ``"00-01-10-11"`` (plaquette), ``"00"`` (magnetisation), ``"00-01-10"`` (three
spins on an elementary plaquette). Within each sector the clusters are ordered by the number of
spins, then by compactness (sum of squared pair distances), so the first ``k`` of a sector are
the ``k`` most local ones. Named sets (:func:`coupling_set`): ``"minimal"`` = the 4 even
operators nn, nnn, (2,0), plaquette and the 2 odd operators magnetisation, three-spin corner;
``"3x3"`` = all 36.

Kernels: the operator sums are computed by an array-API reference (products of shifted
lattices) or, on NumPy, by a Numba kernel (:mod:`isingcore.backends.numba_cpu.mcrg`) that
histograms the 512 possible 3x3 windows and contracts the histogram with a table of the
operators; both give identical integers.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from .autocorrelation import Estimate

__all__ = [
    "Coupling",
    "COUPLINGS_3X3",
    "coupling_set",
    "block_spin_levels",
    "operator_densities",
    "window_table",
    "mcrg_densities",
    "connected_matrices",
    "linearized_rg_matrix",
    "mcrg_exponents",
    "mcrg_ensemble_densities",
    "MCRGResult",
    "EXACT_Y_T",
    "EXACT_Y_H",
]

EXACT_Y_T = 1.0  #: 1/nu of the 2D Ising model
EXACT_Y_H = 15.0 / 8.0  #: (d + 2 - eta)/2 of the 2D Ising model
DIMENSION = 2
#: smallest side of the coarsest block lattice that :func:`mcrg_densities` accepts (the 3x3
#: clusters must not wrap onto themselves)
MIN_COARSE_SIDE = 4

# the 8 elements of D4 acting on offsets (x, y)
_D4 = (
    lambda x, y: (x, y),
    lambda x, y: (-x, y),
    lambda x, y: (x, -y),
    lambda x, y: (-x, -y),
    lambda x, y: (y, x),
    lambda x, y: (-y, x),
    lambda x, y: (y, -x),
    lambda x, y: (-y, -x),
)


def _normalise(points) -> tuple[tuple[int, int], ...]:
    """Translate so that min x = min y = 0 and sort: one representative per translation class."""
    mx = min(p[0] for p in points)
    my = min(p[1] for p in points)
    return tuple(sorted((int(p[0] - mx), int(p[1] - my)) for p in points))


def _orbit(points) -> tuple[tuple[tuple[int, int], ...], ...]:
    """The distinct images of a cluster under D4, modulo translations, sorted."""
    return tuple(sorted({_normalise([g(*p) for p in points]) for g in _D4}))


@dataclass(frozen=True)
class Coupling:
    """A D4- and translation-invariant spin operator (a cluster of spins and all its orientations).

    Attributes
    ----------
    shape : the canonical offsets (smallest image under D4, translated to min x = min y = 0).
    orientations : all distinct images of the cluster under D4 (modulo translation).
    """

    shape: tuple[tuple[int, int], ...]
    orientations: tuple[tuple[tuple[int, int], ...], ...] = field(repr=False, compare=False)

    @classmethod
    def from_offsets(cls, offsets: Iterable[Sequence[int]]) -> "Coupling":
        pts = [tuple(int(v) for v in p) for p in offsets]
        if not pts or any(len(p) != 2 for p in pts):
            raise ValueError(f"a coupling needs at least one (x, y) offset; got {offsets!r}")
        if len(set(pts)) != len(pts):
            raise ValueError(f"the offsets of a coupling must be distinct; got {offsets!r}")
        orbit = _orbit(pts)
        return cls(orbit[0], orbit)

    @property
    def name(self) -> str:
        return "-".join(f"{x}{y}" for x, y in self.shape)

    @property
    def n_spins(self) -> int:
        return len(self.shape)

    @property
    def parity(self) -> str:
        """``"even"`` or ``"odd"`` under the global spin flip ``s -> -s``."""
        return "odd" if self.n_spins % 2 else "even"

    @property
    def extent(self) -> int:
        """Largest offset of any orientation (2 for the clusters of a 3x3 plaquette)."""
        return max(max(x, y) for o in self.orientations for x, y in o)

    @property
    def spread(self) -> int:
        """Sum of squared distances between the spins of the cluster (compactness)."""
        return sum((a[0] - c[0]) ** 2 + (a[1] - c[1]) ** 2 for a, c in itertools.combinations(self.shape, 2))

    def __str__(self) -> str:
        return self.name


def _all_3x3() -> tuple[Coupling, ...]:
    sites = [(x, y) for x in range(3) for y in range(3)]
    found: dict = {}
    for k in range(1, 5):
        for sub in itertools.combinations(sites, k):
            c = Coupling.from_offsets(sub)
            found.setdefault(c.shape, c)
    cs = sorted(found.values(), key=lambda c: (c.n_spins % 2 == 1, c.n_spins, c.spread, c.shape))
    return tuple(cs)


#: The 36 couplings of up to 4 spins on a 3x3 plaquette: 25 even ones, then 11 odd ones, each
#: sector ordered by number of spins, then compactness.
COUPLINGS_3X3: tuple[Coupling, ...] = _all_3x3()

_MINIMAL = ("00-01", "00-11", "00-02", "00-01-10-11", "00", "00-01-10")
_BY_NAME = {c.name: c for c in COUPLINGS_3X3}


def coupling_set(spec: Any = "minimal", *, n_even: int | None = None, n_odd: int | None = None) -> tuple[Coupling, ...]:
    """A tuple of couplings: even ones first, then odd ones.

    Parameters
    ----------
    spec : ``"minimal"`` (nn, nnn, (2,0), plaquette | magnetisation, three-spin corner),
        ``"3x3"`` (all 36 of :data:`COUPLINGS_3X3`), or an iterable of :class:`Coupling`
        objects, names such as ``"00-01"``, or offset lists such as ``[(0, 0), (2, 1)]``.
    n_even, n_odd : keep only the first ``n_even`` even and ``n_odd`` odd couplings of the set
        (in its order); ``None`` keeps all.
    """
    if isinstance(spec, str):
        if spec == "minimal":
            items: list[Coupling] = [_BY_NAME[n] for n in _MINIMAL]
        elif spec == "3x3":
            items = list(COUPLINGS_3X3)
        elif spec in _BY_NAME:
            items = [_BY_NAME[spec]]
        else:
            raise ValueError(f"couplings={spec!r} is not a known set; use 'minimal', '3x3' or a list of couplings")
    else:
        items = []
        for c in spec:
            if isinstance(c, Coupling):
                items.append(c)
            elif isinstance(c, str):
                if c not in _BY_NAME:
                    raise ValueError(f"unknown coupling name {c!r}; names look like '00-01' (see COUPLINGS_3X3)")
                items.append(_BY_NAME[c])
            else:
                items.append(Coupling.from_offsets(c))
    if len({c.shape for c in items}) != len(items):
        raise ValueError("couplings contains the same operator twice (the matrix A would be singular)")
    even = [c for c in items if c.parity == "even"]
    odd = [c for c in items if c.parity == "odd"]
    for name, k, lst in (("n_even", n_even, even), ("n_odd", n_odd, odd)):
        if k is not None and not (isinstance(k, int) and 0 <= k <= len(lst)):
            raise ValueError(f"{name} must be an integer in [0, {len(lst)}] for this set; got {k!r}")
    even = even[:n_even] if n_even is not None else even
    odd = odd[:n_odd] if n_odd is not None else odd
    return tuple(even + odd)


def _as_couplings(couplings) -> tuple[Coupling, ...]:
    if isinstance(couplings, tuple) and all(isinstance(c, Coupling) for c in couplings):
        return couplings
    return coupling_set(couplings)


# ---------------------------------------------------------------------------------------------
# Operators on one lattice
# ---------------------------------------------------------------------------------------------


def _reference_sums(spins, couplings: tuple[Coupling, ...]):
    """Extensive sums ``sum_x sum_orientations prod s`` as int64 ``(..., P)`` (array API)."""
    xp = _namespace(spins)
    cache: dict = {}

    def shifted(dx: int, dy: int):
        if (dx, dy) not in cache:
            cache[(dx, dy)] = xp.roll(spins, shift=(-dx, -dy), axis=(-2, -1)) if (dx or dy) else spins
        return cache[(dx, dy)]

    out = []
    for c in couplings:
        acc = None
        for o in c.orientations:
            prod = shifted(*o[0])
            for d in o[1:]:
                prod = prod * shifted(*d)
            s = xp.sum(xp.astype(prod, xp.int64), axis=(-2, -1))
            acc = s if acc is None else acc + s
        out.append(acc)
    return xp.stack(out, axis=-1)


def window_table(couplings) -> np.ndarray:
    """int64 ``(512, P)``: the sum over a coupling's orientations anchored at one site, per 3x3 window.

    Window code: bit ``3*dx + dy`` is set iff the spin at offset ``(dx, dy)`` (``0 <= dx, dy < 3``)
    from the anchor is ``-1``. Contracting the per-configuration histogram of window codes with
    this table gives the extensive operator sums of :func:`operator_densities`.
    """
    couplings = _as_couplings(couplings)
    codes = np.arange(512)
    spins = np.where((codes[:, None] >> np.arange(9)[None, :]) & 1, -1, 1).astype(np.int64)  # (512, 9)
    table = np.zeros((512, len(couplings)), dtype=np.int64)
    for a, c in enumerate(couplings):
        if c.extent > 2:
            raise ValueError(f"coupling {c.name} does not fit in a 3x3 window; use kernel='reference'")
        for o in c.orientations:
            table[:, a] += np.prod(spins[:, [3 * x + y for x, y in o]], axis=1)
    return table


def _namespace(spins):
    from .. import _array

    return _array.get_namespace(spins)


def _check_spins(spins) -> tuple[int, int]:
    if len(spins.shape) < 2:
        raise ValueError(f"spins must have shape (..., Lx, Ly); got shape {tuple(spins.shape)}")
    return int(spins.shape[-2]), int(spins.shape[-1])


def operator_densities(spins, couplings="minimal", *, kernel: str = "auto"):
    r"""Operator densities ``s_alpha`` of every configuration, float64 ``(..., P)``.

    .. math:: s_\alpha = \frac{1}{N_\text{sites}\,|\text{orbit}_\alpha|}
              \sum_x \sum_{g} \prod_{\delta \in g(\alpha)} s_{x+\delta}

    (periodic boundaries; the orbit runs over the distinct D4 orientations of cluster
    ``alpha``). E.g. ``"00-01"`` gives ``(c10x + c10y)/2``, ``"00"`` the magnetisation per site.

    Parameters
    ----------
    spins : int8 ``(..., Lx, Ly)`` array of +-1 (any array-API namespace).
    couplings : see :func:`coupling_set`.
    kernel : ``"auto"`` (Numba on NumPy input, reference otherwise), ``"fast"`` or ``"reference"``.
    """
    from .. import _array

    couplings = _as_couplings(couplings)
    Lx, Ly = _check_spins(spins)
    if kernel not in ("auto", "fast", "reference"):
        raise ValueError(f"kernel must be 'auto', 'fast' or 'reference'; got {kernel!r}")
    xp = _namespace(spins)
    backend = _array.backend_of(spins)
    fits = all(c.extent <= 2 for c in couplings)
    fast = None
    if backend == "numpy" and kernel != "reference" and fits:
        fast = _array.fast_kernel("numpy", kernel, "mcrg", "window_histogram")
    elif kernel == "fast":
        raise ValueError(f"kernel='fast' needs NumPy input and couplings within a 3x3 window (backend={backend!r})")
    if fast is not None:
        s = np.asarray(spins)
        lead = s.shape[:-2]
        hist = fast(np.ascontiguousarray(s.reshape((-1, Lx, Ly)), dtype=np.int8))
        sums = (hist @ window_table(couplings)).reshape(lead + (len(couplings),))
    else:
        sums = _reference_sums(spins, couplings)
    norm = xp.asarray([float(Lx * Ly * len(c.orientations)) for c in couplings], dtype=xp.float64)
    if fast is not None:
        return sums.astype(np.float64) / np.asarray(norm)
    return xp.astype(sums, xp.float64) / norm


# ---------------------------------------------------------------------------------------------
# Blocking levels
# ---------------------------------------------------------------------------------------------


def _check_levels(Lx: int, Ly: int, levels: Any, b: Any) -> tuple[int, int]:
    if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 2:
        raise ValueError(f"b (block size) must be an integer >= 2; got {b!r}")
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 1:
        raise ValueError(f"levels (number of blocking steps) must be an integer >= 1; got {levels!r}")
    levels, b = int(levels), int(b)
    f = b**levels
    if Lx % f or Ly % f or min(Lx, Ly) // f < MIN_COARSE_SIDE:
        raise ValueError(
            f"levels={levels} with b={b} needs Lx and Ly divisible by b**levels={f} and a coarsest lattice "
            f"of at least {MIN_COARSE_SIDE}x{MIN_COARSE_SIDE} (L >= {MIN_COARSE_SIDE * f}); got {Lx}x{Ly}: "
            f"use levels <= {_max_levels(Lx, Ly, b)}"
        )
    return levels, b


def _max_levels(Lx: int, Ly: int, b: int) -> int:
    n = 0
    while Lx % b ** (n + 1) == 0 and Ly % b ** (n + 1) == 0 and min(Lx, Ly) // b ** (n + 1) >= MIN_COARSE_SIDE:
        n += 1
    return n


def block_spin_levels(spins, levels: int, *, b: int = 2, seed: int = 0, streams=None) -> list:
    """``[sigma^(0), sigma^(1), ..., sigma^(levels)]``: the configuration blocked 0..levels times.

    ``sigma^(n+1) = majority_rule(sigma^(n), b, seed=seed, streams=streams, step=n)``: the tie
    breaks of level ``n`` use counter ``step = n`` and configuration ``i`` uses stream
    ``streams[i]`` (default ``i``), so the blocking is reproducible and independent of batching
    when the caller passes global configuration indices as ``streams``.
    """
    from ..rg.coarse import majority_rule

    Lx, Ly = _check_spins(spins)
    levels, b = _check_levels(Lx, Ly, levels, b)
    out = [spins]
    for n in range(levels):
        out.append(majority_rule(out[-1], b, seed=seed, streams=streams, step=n))
    return out


def mcrg_densities(spins, levels: int, couplings="minimal", *, b: int = 2, seed: int = 0, streams=None,
                   kernel: str = "auto"):
    """Operator densities at blocking levels 0..levels, float64 ``(..., levels + 1, P)``.

    See :func:`block_spin_levels` (blocking, ``seed``/``streams``) and :func:`operator_densities`.
    """
    xp = _namespace(spins)
    lv = block_spin_levels(spins, levels, b=b, seed=seed, streams=streams)
    return xp.stack([operator_densities(s, couplings, kernel=kernel) for s in lv], axis=-2)


# ---------------------------------------------------------------------------------------------
# The linearised transformation
# ---------------------------------------------------------------------------------------------


def _as_data(densities) -> np.ndarray:
    """Validate and return densities as float64 ``(R, N, levels+1, P)``."""
    from .._array import to_numpy

    d = np.asarray(to_numpy(densities), dtype=np.float64)
    if d.ndim == 3:
        d = d[None]
    if d.ndim != 4:
        raise ValueError(
            "densities must have shape (N, levels+1, P) or (R, N, levels+1, P) (R chains of N configurations); "
            f"got shape {d.shape}"
        )
    if not np.all(np.isfinite(d)):
        raise ValueError("densities contains non-finite values")
    return d


def _check_level(level: Any, n_levels: int) -> int:
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or not 0 <= level < n_levels - 1:
        raise ValueError(
            f"level must be an integer in [0, {n_levels - 2}] (T^(n) needs levels n and n+1 of the "
            f"{n_levels} measured); got {level!r}"
        )
    return int(level)


def _moments(x: np.ndarray, y: np.ndarray):
    """Sums over configurations: ``sum x``, ``sum y``, ``sum y x^T``, ``sum y y^T`` (last axes)."""
    return x.sum(0), y.sum(0), y.T @ x, y.T @ y


def _matrices_from_means(mx, my, myx, myy, odd_mask, z2_symmetric: bool):
    """Connected ``A`` and ``B`` (of the densities) from the means of ``x = s^(n)``, ``y = s^(n+1)``."""
    if z2_symmetric:
        mx = np.where(odd_mask, 0.0, mx)
        my = np.where(odd_mask, 0.0, my)
    A = myy - my[..., :, None] * my[..., None, :]
    B = myx - my[..., :, None] * mx[..., None, :]
    return A, B


def connected_matrices(densities, level: int = 0, couplings="minimal", *, z2_symmetric: bool = False):
    r"""The connected correlation matrices ``(A, B)`` of the densities, all couplings together.

    ``A_{gamma alpha} = <s_gamma^(n+1) s_alpha^(n+1)> - <s_gamma^(n+1)><s_alpha^(n+1)>`` and
    ``B_{gamma beta} = <s_gamma^(n+1) s_beta^(n)> - <s_gamma^(n+1)><s_beta^(n)>`` with ``n = level``,
    averages over all configurations (all chains). With ``z2_symmetric=True`` the means of the odd
    operators are taken as 0. On spin-flip-symmetric data the blocks between even and odd
    couplings vanish.
    """
    couplings = _as_couplings(couplings)
    d = _as_data(densities)
    n = _check_level(level, d.shape[2])
    _check_P(d, couplings)
    x = d[:, :, n, :].reshape(-1, d.shape[3])
    y = d[:, :, n + 1, :].reshape(-1, d.shape[3])
    sx, sy, syx, syy = _moments(x, y)
    N = x.shape[0]
    odd = np.array([c.parity == "odd" for c in couplings])
    return _matrices_from_means(sx / N, sy / N, syx / N, syy / N, odd, z2_symmetric)


def _check_P(d: np.ndarray, couplings) -> None:
    if d.shape[3] != len(couplings):
        raise ValueError(f"densities has {d.shape[3]} operators on its last axis but couplings has {len(couplings)}")


def linearized_rg_matrix(A: np.ndarray, B: np.ndarray, *, b: int = 2, d: int = DIMENSION) -> np.ndarray:
    r"""``T = b^d A^{-1} B`` from the connected matrices of the *densities* (see the module notes).

    Stacked input ``(..., P, P)`` is allowed. Raises ``numpy.linalg.LinAlgError`` with an
    explanation if ``A`` is singular (two couplings identical on the lattice, or too little data).
    """
    try:
        return float(b) ** d * np.linalg.solve(A, B)
    except np.linalg.LinAlgError as exc:
        raise np.linalg.LinAlgError(
            "the coarse-level correlation matrix A is singular: two couplings coincide on this lattice, "
            "a coupling is constant, or there are fewer configurations than couplings"
        ) from exc


def _sorted_eigvals(T: np.ndarray) -> np.ndarray:
    """Eigenvalues of stacked matrices, sorted by decreasing real part, complex ``(..., P)``."""
    w = np.linalg.eigvals(T)
    order = np.argsort(-w.real, axis=-1, kind="stable")
    return np.take_along_axis(w, order, axis=-1)


@dataclass(frozen=True)
class MCRGResult:
    """Eigenvalues and exponents of ``T^(n)`` for one level ``n`` and one set of couplings.

    Attributes
    ----------
    level : ``n`` (levels ``n`` and ``n + 1`` of the blocked configurations).
    b : block size.
    even, odd : names of the couplings of each sector.
    T_even, T_odd : the matrices from all configurations (``P_even x P_even``, ``P_odd x P_odd``).
    eigenvalues_even, eigenvalues_odd : jackknife :class:`Estimate` of the real parts, sorted by
        decreasing real part (``tau_int`` is not estimated: nan).
    y_even, y_odd : ``ln(lambda)/ln(b)`` of those eigenvalues (nan for ``lambda <= 0``).
    y_t, y_h : the leading ones, ``y_even[0]`` and ``y_odd[0]`` (None for an empty sector).
    max_imag_even, max_imag_odd : largest ``|Im lambda|`` of the full-data eigenvalues (complex
        pairs appear among the irrelevant eigenvalues when the statistics is poor).
    n_configs, n_chains, n_bins : the data behind the jackknife.
    """

    level: int
    b: int
    even: tuple[str, ...]
    odd: tuple[str, ...]
    T_even: np.ndarray = field(repr=False)
    T_odd: np.ndarray = field(repr=False)
    eigenvalues_even: tuple[Estimate, ...]
    eigenvalues_odd: tuple[Estimate, ...]
    y_even: tuple[Estimate, ...]
    y_odd: tuple[Estimate, ...]
    max_imag_even: float
    max_imag_odd: float
    n_configs: int
    n_chains: int
    n_bins: int

    @property
    def y_t(self) -> Estimate | None:
        return self.y_even[0] if self.y_even else None

    @property
    def y_h(self) -> Estimate | None:
        return self.y_odd[0] if self.y_odd else None

    def summary(self) -> str:
        yt = self.y_t.format() if self.y_t else "-"
        yh = self.y_h.format() if self.y_h else "-"
        return (f"T^({self.level}) [{len(self.even)} even, {len(self.odd)} odd couplings, "
                f"{self.n_configs} configs]: y_t = {yt}, y_h = {yh}")


def _jackknife_estimates(values: np.ndarray, n_used: int, B: int) -> tuple[Estimate, ...]:
    """Estimates from ``values[0]`` (all data) and ``values[1:]`` (leave-one-bin-out), per column."""
    full, samples = values[0], values[1:]
    nb = samples.shape[0]
    out = []
    for k in range(values.shape[1]):
        s = samples[:, k]
        if np.all(np.isfinite(s)):
            err = math.sqrt((nb - 1) / nb * float(np.sum((s - s.mean()) ** 2)))
        else:
            err = float("nan")
        out.append(Estimate(float(full[k]), err, float("nan"), 0.0, int(B), int(n_used)))
    return tuple(out)


def mcrg_exponents(densities, couplings="minimal", *, level: int = 1, b: int = 2,
                   n_bins: int | None = None, z2_symmetric: bool = True,
                   n_even: int | None = None, n_odd: int | None = None) -> MCRGResult:
    r"""Eigenvalues of ``T^(level) = A^{-1} B`` per Z2 sector and the exponents ``y = ln(lambda)/ln b``.

    Parameters
    ----------
    densities : float64 ``(N, levels+1, P)`` or ``(R, N, levels+1, P)`` from :func:`mcrg_densities`
        (``R`` chains of ``N`` configurations, time along axis 1; chains are jackknife blocks
        that bins never straddle).
    couplings : the couplings of the last axis (see :func:`coupling_set`).
    level : ``n`` of ``T^(n)``: blocking levels ``n`` and ``n + 1`` are used.
    b : block size of the blocking that produced the levels (enters ``T = b^d A^{-1} B``).
    n_bins : number of jackknife bins, a multiple of ``R`` (default: the smallest multiple of ``R``
        that is ``>= 50``, as in :func:`isingcore.measure.jackknife`).
    z2_symmetric : take the means of the odd operators as exactly 0.
    n_even, n_odd : use only the first ``n_even`` even / ``n_odd`` odd couplings (truncation).

    Returns
    -------
    MCRGResult (``.y_t``, ``.y_h``, all eigenvalues with jackknife errors).
    """
    couplings = _as_couplings(couplings)
    d = _as_data(densities)
    _check_P(d, couplings)
    n = _check_level(level, d.shape[2])
    if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 2:
        raise ValueError(f"b (block size) must be an integer >= 2; got {b!r}")
    even_idx = [i for i, c in enumerate(couplings) if c.parity == "even"]
    odd_idx = [i for i, c in enumerate(couplings) if c.parity == "odd"]
    for name, k, lst in (("n_even", n_even, even_idx), ("n_odd", n_odd, odd_idx)):
        if k is not None and not (isinstance(k, (int, np.integer)) and 0 <= k <= len(lst)):
            raise ValueError(f"{name} must be an integer in [0, {len(lst)}]; got {k!r}")
    even_idx = even_idx[:n_even] if n_even is not None else even_idx
    odd_idx = odd_idx[:n_odd] if n_odd is not None else odd_idx
    R, N = d.shape[:2]
    if n_bins is None:
        n_bins = R * max(1, math.ceil(50 / R))
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 2 or n_bins % R:
        raise ValueError(f"n_bins must be a multiple of the number of chains R={R} and >= 2; got {n_bins!r}")
    per = int(n_bins) // R
    B = N // per
    if B < 1:
        raise ValueError(f"n_bins={n_bins} is too many for {R} chain(s) of {N} configurations")
    used = d[:, : per * B]
    sel = even_idx + odd_idx
    x = used[:, :, n, :][..., sel].reshape(R * per, B, len(sel))
    y = used[:, :, n + 1, :][..., sel].reshape(R * per, B, len(sel))
    sx = x.sum(1)
    sy = y.sum(1)
    syx = np.einsum("kbi,kbj->kij", y, x)
    syy = np.einsum("kbi,kbj->kij", y, y)
    tot = [a.sum(0) for a in (sx, sy, syx, syy)]
    n_used = R * per * B
    # index 0: all data; 1..n_bins: leave bin k out
    means = [np.concatenate([t[None] / n_used, (t[None] - a) / (n_used - B)]) for t, a in zip(tot, (sx, sy, syx, syy))]
    odd_mask = np.array([False] * len(even_idx) + [True] * len(odd_idx))
    A, Bm = _matrices_from_means(*means, odd_mask, z2_symmetric)
    ne = len(even_idx)
    res = {}
    for sector, sl in (("even", slice(0, ne)), ("odd", slice(ne, len(sel)))):
        k = sl.stop - sl.start
        if k == 0:
            res[sector] = (np.zeros((0, 0)), (), (), 0.0)
            continue
        T = linearized_rg_matrix(A[:, sl, sl], Bm[:, sl, sl], b=b)
        w = _sorted_eigvals(T)
        with np.errstate(invalid="ignore", divide="ignore"):
            lam = w.real
            yv = np.where(lam > 0, np.log(np.where(lam > 0, lam, 1.0)) / math.log(b), np.nan)
        res[sector] = (T[0], _jackknife_estimates(lam, n_used, B), _jackknife_estimates(yv, n_used, B),
                       float(np.max(np.abs(w[0].imag))))
    return MCRGResult(
        level=n, b=int(b),
        even=tuple(couplings[i].name for i in even_idx), odd=tuple(couplings[i].name for i in odd_idx),
        T_even=res["even"][0], T_odd=res["odd"][0],
        eigenvalues_even=res["even"][1], eigenvalues_odd=res["odd"][1],
        y_even=res["even"][2], y_odd=res["odd"][2],
        max_imag_even=res["even"][3], max_imag_odd=res["odd"][3],
        n_configs=int(n_used), n_chains=int(R), n_bins=int(n_bins),
    )


# ---------------------------------------------------------------------------------------------
# Ensembles
# ---------------------------------------------------------------------------------------------


def mcrg_ensemble_densities(path_or_ensemble, levels: int | None = None, couplings="3x3", *, b: int = 2,
                            seed: int = 0, block: int = 256, kernel: str = "auto", limit: int | None = None,
                            progress: bool = False):
    """Operator densities of every configuration of an isingcore HDF5 ensemble, by chain.

    Configuration ``i`` of the file is blocked with tie-breaking stream ``i`` (see
    :func:`block_spin_levels`), so the result does not depend on ``block``.

    Parameters
    ----------
    path_or_ensemble : a path or an open :class:`isingcore.io.Ensemble`.
    levels : blocking steps (default: as many as :data:`MIN_COARSE_SIDE` allows).
    couplings : see :func:`coupling_set` (default all 36 of the 3x3 plaquette; truncate later
        with ``n_even``/``n_odd`` of :func:`mcrg_exponents`).
    limit : use only the first ``limit`` configurations of the file.

    Returns
    -------
    (densities, couplings): float64 ``(R, N, levels + 1, P)`` (chains ordered by index, each in
    step order, truncated to a common length ``N``) and the tuple of :class:`Coupling`.
    """
    from ..io import open_ensemble

    couplings = _as_couplings(couplings)
    own = not hasattr(path_or_ensemble, "iter_blocks")
    ens = open_ensemble(path_or_ensemble) if own else path_or_ensemble
    try:
        Lx, Ly = ens.Lx, ens.Ly
        if levels is None:
            levels = _max_levels(Lx, Ly, b)
        levels, b = _check_levels(Lx, Ly, levels, b)
        total = len(ens) if limit is None else min(int(limit), len(ens))
        out = np.empty((total, levels + 1, len(couplings)))
        it = range(0, total, block)
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(it, desc="mcrg", unit="block")
        for a in it:
            s = ens[a : min(a + block, total)]
            streams = np.arange(a, a + s.shape[0], dtype=np.uint32)
            out[a : a + s.shape[0]] = mcrg_densities(s, levels, couplings, b=b, seed=seed, streams=streams,
                                                    kernel=kernel)
        chain = np.asarray(ens.chain)[:total]
        step = np.asarray(ens.step)[:total]
    finally:
        if own:
            ens.close()
    chains = np.unique(chain)
    order = [np.flatnonzero(chain == c)[np.argsort(step[chain == c], kind="stable")] for c in chains]
    m = min(len(o) for o in order)
    return np.stack([out[o[:m]] for o in order]), couplings
