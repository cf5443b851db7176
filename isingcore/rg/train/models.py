"""Exactly D4-symmetric upscaling models (PyTorch): the ECMK (b = 3) and the minimal upscaler (b = 2).

Both models map a coarse +-1 configuration ``mu`` of shape ``(N, 1, H, W)`` on a periodic lattice
to a field on the ``(N, 1, b*H, b*W)`` fine lattice, fine site ``(x, y)`` having the parent
coarse site ``(x // b, y // b)``. Both are linear in ``mu`` (no bias: exact Z2 symmetry,
``field(-mu) = -field(mu)``), translation invariant on the coarse lattice (circular padding) and
exactly equivariant under the 8 symmetries of the square (the dihedral group D4).

Lattice symmetries
------------------
A group element ``g`` is a 2x2 integer matrix (rotations by multiples of 90 degrees and the
four reflections), acting on coarse sites as ``I -> g I`` (mod the lattice size) and on fine
sites as ``x -> g (x - c) + c`` with ``c = ((b-1)/2, (b-1)/2)`` the centre of block ``(0, 0)``
(so that blocks map onto blocks). With offsets taken from the block centre, fine site
``b I + a`` of block ``I`` (``a`` in ``{0..b-1}^2``) sits at ``b I + o + c``, ``o = a - c``, and
the coarse-lattice form of a model is

    field(b I + a) = sum_d W[o, d] mu(I + d),     d in {-halo .. halo}^2.

Equivariance, ``field[g mu] = g field[mu]``, holds iff ``W[o, d] = W[g o, g d]`` for every ``g``;
the group average ``(1/8) sum_g W[g o, g d]`` is the orthogonal projection onto such kernels.
The b*b sub-pixel kernels are *permuted* by ``g`` (``o -> g o``): averaging each channel's
kernel over flips on its own, as the seed repository of the ECMK paper did with
``(w + flip_h(w) + flip_v(w) + transpose(w)) / 4``, is neither a projection nor equivariant
(:func:`naive_symmetrize`, kept for the tests that show it).

Channel ``a_x * b + a_y`` of the convolution is sub-pixel ``(a_x, a_y)`` (PyTorch
``PixelShuffle`` and ONNX ``DepthToSpace(mode="CRD")`` order); kernel index ``(p, q)`` is the
displacement ``d = (p - halo, q - halo)`` (cross-correlation, as ``torch.nn.functional.conv2d``).

References: H. Sun, "Preserving Hamiltonian locality in real-space coarse-graining via kernel
projection" (2026), the ECMK (seed 000); A. Rancon et al., "Dreaming up scale invariance via
inverse renormalization group" (seed 003), section III.A, the minimal model.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "D4",
    "ECMK",
    "MinimalUpscaler",
    "build_model",
    "d4_elements",
    "d4_gather_index",
    "d4_orbits",
    "lattice_transform",
    "naive_symmetrize",
]

#: The 8 elements of D4 as integer matrices acting on column vectors (x, y): identity, rotations
#: by 90, 180, 270 degrees, reflections x -> -x, y -> -y, and the two diagonal reflections.
D4 = (
    ((1, 0), (0, 1)),
    ((0, -1), (1, 0)),
    ((-1, 0), (0, -1)),
    ((0, 1), (-1, 0)),
    ((-1, 0), (0, 1)),
    ((1, 0), (0, -1)),
    ((0, 1), (1, 0)),
    ((0, -1), (-1, 0)),
)


def d4_elements() -> list[np.ndarray]:
    """The 8 elements of :data:`D4` as int64 ``(2, 2)`` NumPy arrays."""
    return [np.array(g, dtype=np.int64) for g in D4]


def lattice_transform(arr, g, scale: int = 1) -> np.ndarray:
    """Apply the lattice symmetry ``g`` to periodic configurations ``arr`` of shape ``(..., Lx, Ly)``.

    ``out[..., g (x - c) + c] = arr[..., x]`` (indices modulo the lattice size) with
    ``c = ((scale-1)/2, (scale-1)/2)``: ``scale = 1`` for a coarse lattice, ``scale = b`` for the
    fine lattice of a b-fold upscaler (blocks map onto blocks). Rotations by 90 degrees need
    ``Lx == Ly``. NumPy arrays (or anything ``np.asarray`` takes) in and out.
    """
    a = np.asarray(arr)
    g = np.asarray(g, dtype=np.int64)
    Lx, Ly = a.shape[-2:]
    if g[0, 1] != 0 and Lx != Ly:
        raise ValueError(f"a 90-degree rotation or diagonal reflection needs a square lattice, got {Lx}x{Ly}")
    x, y = np.meshgrid(np.arange(Lx), np.arange(Ly), indexing="ij")
    c2 = scale - 1  # twice the centre, so that half-integer centres stay integral
    X = 2 * x - c2
    Y = 2 * y - c2
    nx = (g[0, 0] * X + g[0, 1] * Y + c2) // 2 % Lx
    ny = (g[1, 0] * X + g[1, 1] * Y + c2) // 2 % Ly
    out = np.empty_like(a)
    out[..., nx, ny] = a[..., x, y]
    return out


def d4_gather_index(scale: int, halo: int) -> np.ndarray:
    """Gather indices of the D4 projection of a coarse-lattice kernel ``W[o, d]``.

    The kernel is stored flat with index ``(a_x * b + a_y) * K*K + p * K + q``, ``K = 2 halo + 1``.
    Returns int64 ``(8, b*b*K*K)``: row ``g`` holds the flat index of ``(g o, g d)`` for every
    ``(o, d)``, so that ``W_flat[index].mean(0)`` is the group average.
    """
    b = int(scale)
    K = 2 * halo + 1
    ax, ay, p, q = np.meshgrid(np.arange(b), np.arange(b), np.arange(K), np.arange(K), indexing="ij")
    ox, oy = 2 * ax - (b - 1), 2 * ay - (b - 1)  # doubled offsets from the block centre
    dx, dy = p - halo, q - halo
    rows = []
    for g in d4_elements():
        gox = g[0, 0] * ox + g[0, 1] * oy
        goy = g[1, 0] * ox + g[1, 1] * oy
        gdx = g[0, 0] * dx + g[0, 1] * dy
        gdy = g[1, 0] * dx + g[1, 1] * dy
        gax, gay = (gox + b - 1) // 2, (goy + b - 1) // 2
        rows.append((((gax * b + gay) * K + gdx + halo) * K + gdy + halo).reshape(-1))
    return np.stack(rows)


def d4_orbits(index: np.ndarray) -> np.ndarray:
    """Orbit label (0, 1, ...) of every flat position under the group given by gather ``index``.

    ``index`` is ``(n_group, n)`` as from :func:`d4_gather_index`; labels are numbered in order of
    the orbit's smallest flat position. The number of orbits is the number of free parameters
    of an exactly symmetric kernel.
    """
    n = index.shape[1]
    label = np.full(n, -1, dtype=np.int64)
    nxt = 0
    for i in range(n):
        if label[i] < 0:
            label[index[:, i]] = nxt
            nxt += 1
    return label


def naive_symmetrize(weight: torch.Tensor) -> torch.Tensor:
    """The seed repository's averaging ``(w + flip_h w + flip_v w + w^T) / 4`` of each channel.

    Not a projection onto symmetric kernels and, because it leaves the sub-pixel channels
    unpermuted, not equivariant. Kept only to test that the real projection is different.
    """
    return (weight + weight.flip(-1) + weight.flip(-2) + weight.transpose(-1, -2)) / 4


def _circular_conv(x: torch.Tensor, weight: torch.Tensor, halo: int) -> torch.Tensor:
    """Cross-correlation of (N, 1, H, W) with periodic boundaries: pad circularly by ``halo``."""
    if halo:
        if x.shape[-1] < halo or x.shape[-2] < halo:
            # torch's circular pad cannot wrap more than once; tile first
            reps = (1, 1, math.ceil(halo / x.shape[-2]) * 2 + 1, math.ceil(halo / x.shape[-1]) * 2 + 1)
            H, W = x.shape[-2:]
            big = x.repeat(*reps)
            cx, cy = (reps[2] // 2) * H, (reps[3] // 2) * W
            x = big[..., cx - halo: cx + H + halo, cy - halo: cy + W + halo]
        else:
            x = F.pad(x, (halo, halo, halo, halo), mode="circular")
    return F.conv2d(x, weight)


class _Upscaler(nn.Module):
    """Shared interface: ``field(coarse)`` (unclamped), ``forward``, ``coarse_kernel``."""

    family: str
    scale: int
    halo: int
    kernel_size: int
    output_kind: str

    def coarse_weight(self) -> torch.Tensor:
        """Effective coarse-lattice kernel ``(b*b, 1, 2 halo + 1, 2 halo + 1)`` of :meth:`field`."""
        raise NotImplementedError

    def field(self, coarse: torch.Tensor) -> torch.Tensor:
        """The unclamped field ``(N, 1, b H, b W)`` of coarse inputs ``(N, 1, H, W)`` (periodic)."""
        w = self.coarse_weight().to(coarse.dtype)
        return F.pixel_shuffle(_circular_conv(coarse, w, self.halo), self.scale)

    def coarse_kernel(self) -> np.ndarray:
        """float64 ``(b*b, 1, K, K)`` NumPy copy of the kernel the ONNX graph uses (w1 folded in)."""
        with torch.no_grad():
            return self.coarse_weight().detach().to(torch.float64).cpu().numpy().copy()

    def num_free_parameters(self) -> int:
        raise NotImplementedError

    def hyper_parameters(self) -> dict:
        raise NotImplementedError


class ECMK(_Upscaler):
    """Energy-constrained mapping kernel (seed 000), exactly D4-equivariant.

    ``mean = clamp(w1 * PixelShuffle_b(conv_{KxK}(mu)), -A, A)``: ``b*b`` sub-pixel kernels of
    size ``K x K`` on the coarse lattice (circular padding, no bias), tied by the D4 projection
    (module docstring). ``A = sigmoid(a)`` stays in ``(0, 1)``, ``w1`` is free. For b = 3, K = 9
    the kernel has 105 independent entries (orbits of ``(o, d)`` under D4), plus ``w1`` and ``A``.

    Initialisation (the paper gives none): kernel entries ``N(0, init_std^2)`` plus ``init_center``
    at ``d = 0`` (the field starts near ``init_center * mu``, a rough conditional mean), ``w1 = 1``,
    ``A = init_clamp``. Pass a ``torch.Generator`` for reproducible initial values.
    """

    family = "ecmk"
    output_kind = "mean"

    def __init__(self, kernel_size: int = 9, scale: int = 3, *, init_std: float = 0.02, init_center: float = 0.5,
                 init_clamp: float = 0.95, generator: torch.Generator | None = None):
        super().__init__()
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be an odd positive integer, got {kernel_size!r}")
        if isinstance(scale, bool) or not isinstance(scale, int) or scale < 2:
            raise ValueError(f"scale must be an integer >= 2, got {scale!r}")
        if not 0.0 < init_clamp < 1.0:
            raise ValueError(f"init_clamp must lie in (0, 1), got {init_clamp!r}")
        self.scale = scale
        self.kernel_size = kernel_size
        self.halo = (kernel_size - 1) // 2
        K = kernel_size
        index = d4_gather_index(scale, self.halo)
        labels = d4_orbits(index)
        self._n_orbits = int(labels.max()) + 1
        self.register_buffer("_orbit", torch.from_numpy(labels), persistent=False)
        counts = np.bincount(labels, minlength=self._n_orbits).astype(np.float32)
        self.register_buffer("_orbit_size", torch.from_numpy(counts), persistent=False)
        w = torch.randn(scale * scale, K, K, generator=generator, dtype=torch.float32) * init_std
        w[:, self.halo, self.halo] += init_center
        self.weight = nn.Parameter(w)  # free (unprojected) kernel
        self.w1 = nn.Parameter(torch.tensor(1.0))
        self.a = nn.Parameter(torch.tensor(math.log(init_clamp / (1.0 - init_clamp))))

    @property
    def clamp(self) -> torch.Tensor:
        """A = sigmoid(a), in (0, 1)."""
        return torch.sigmoid(self.a)

    def projected_weight(self) -> torch.Tensor:
        """D4 group average of the free kernel, ``(b*b, 1, K, K)`` (without ``w1``).

        The group average ``(1/8) sum_g W[g o, g d]`` equals the mean of ``W`` over the orbit of
        ``(o, d)``; it is computed per orbit so that symmetry-related entries are bit-identical.
        """
        flat = self.weight.reshape(-1)
        sums = torch.zeros(self._n_orbits, dtype=flat.dtype, device=flat.device).index_add(0, self._orbit, flat)
        K = self.kernel_size
        mean = sums / self._orbit_size.to(flat.dtype)
        return mean[self._orbit].reshape(self.scale * self.scale, 1, K, K)

    def coarse_weight(self) -> torch.Tensor:
        return self.w1 * self.projected_weight()

    def forward(self, coarse: torch.Tensor) -> torch.Tensor:
        """Clamped field, the conditional mean spin: ``clamp(field, -A, A)``."""
        A = self.clamp.to(coarse.dtype)
        return torch.minimum(torch.maximum(self.field(coarse), -A), A)

    def num_free_parameters(self) -> int:
        """Independent kernel entries (D4 orbits of ``(o, d)``) + ``w1`` + ``A``."""
        return self._n_orbits + 2

    def hyper_parameters(self) -> dict:
        return {"kernel_size": self.kernel_size, "scale": self.scale}


class MinimalUpscaler(_Upscaler):
    """Minimal symmetric upscaler of seed 003 (section III.A), b = 2.

    Nearest-neighbour x2 upsampling of ``mu``, then one ``k x k`` convolution on the fine lattice
    (circular padding, no bias) whose kernel is D4-symmetric: one free parameter per D4 orbit of
    offsets, ``(k+1)(k+3)/8`` of them (3, 6, 10 for k = 3, 5, 7). The output is the logit ``h``,
    ``p(s | mu) = e^{s h} / (2 cosh h)``.

    Parameters are initialised ``N(0, init_std^2)`` (seed 003 gives no initialisation).
    """

    family = "minimal"
    output_kind = "logit"
    scale = 2

    def __init__(self, kernel_size: int = 3, *, init_std: float = 0.1, generator: torch.Generator | None = None):
        super().__init__()
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be an odd positive integer, got {kernel_size!r}")
        self.kernel_size = k = kernel_size
        r = (k - 1) // 2
        self.radius = r
        self.halo = math.ceil(r / 2)  # coarse kernel width 2*ceil(r/2)+1 (UPSCALING.md)
        # orbit label of every fine offset e = (ex, ey) in {-r..r}^2 (b = 1 lattice, centre 0)
        labels = d4_orbits(d4_gather_index(1, r)).reshape(k, k)
        self.register_buffer("_orbit", torch.from_numpy(labels), persistent=False)
        n = int(labels.max()) + 1
        self.params = nn.Parameter(torch.randn(n, generator=generator, dtype=torch.float32) * init_std)
        # coarse-lattice rewrite: sub-pixel (a, c) gets sum_e K[e] mu[(2i+a+ex)//2, (2j+c+ey)//2]
        H = self.halo
        Kc = 2 * H + 1
        scatter = np.zeros((4 * Kc * Kc, k * k))
        for ax in range(2):
            for ay in range(2):
                for ex in range(-r, r + 1):
                    for ey in range(-r, r + 1):
                        Dx, Dy = (ax + ex) // 2, (ay + ey) // 2
                        row = ((ax * 2 + ay) * Kc + Dx + H) * Kc + Dy + H
                        scatter[row, (ex + r) * k + ey + r] += 1.0
        self.register_buffer("_scatter", torch.from_numpy(scatter).to(torch.float32), persistent=False)

    def fine_kernel(self) -> torch.Tensor:
        """The symmetric ``k x k`` fine-lattice kernel, ``K[e] = params[orbit(e)]``."""
        return self.params[self._orbit]

    def coarse_weight(self) -> torch.Tensor:
        Kc = 2 * self.halo + 1
        w = self._scatter.to(self.params.dtype) @ self.fine_kernel().reshape(-1)
        return w.reshape(4, 1, Kc, Kc)

    def field_fine(self, coarse: torch.Tensor) -> torch.Tensor:
        """The same logits computed literally: NN upsampling, then the circular fine ``k x k`` conv."""
        up = coarse.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
        kern = self.fine_kernel().to(coarse.dtype).reshape(1, 1, self.kernel_size, self.kernel_size)
        return _circular_conv(up, kern, self.radius)

    def forward(self, coarse: torch.Tensor) -> torch.Tensor:
        """Logits ``h`` (N, 1, 2H, 2W)."""
        return self.field(coarse)

    def num_free_parameters(self) -> int:
        return int(self.params.numel())

    def hyper_parameters(self) -> dict:
        return {"kernel_size": self.kernel_size}


def build_model(family: str, kernel_size: int | None = None, **kwargs) -> _Upscaler:
    """``ECMK`` (``family="ecmk"``, default k = 9, b = 3) or ``MinimalUpscaler`` (``"minimal"``, k = 3)."""
    if family == "ecmk":
        return ECMK(9 if kernel_size is None else kernel_size, **kwargs)
    if family == "minimal":
        return MinimalUpscaler(3 if kernel_size is None else kernel_size, **kwargs)
    raise ValueError(f"family must be 'ecmk' or 'minimal', got {family!r}")
