"""Monte Carlo RG operator sums on the CPU (Numba): histogram of 3x3 windows.

Every translation-invariant operator whose clusters fit in a 3x3 window is a sum over anchor
sites ``x`` of a function of the 9 spins ``s_{x + (dx, dy)}``, ``0 <= dx, dy < 3``. So one pass
over the lattice that counts the 512 possible windows (code: bit ``3*dx + dy`` set iff that spin
is -1) gives, after one contraction with the table
:func:`isingcore.measure.mcrg.window_table`, the exact integer sums of any number of such
operators. The array-API reference (:func:`isingcore.measure.mcrg.operator_densities` with
``kernel="reference"``) multiplies shifted lattices; both give the same integers (tested).
"""

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def window_histogram(spins):
    """int64 ``(B, 512)``: per configuration, how many anchor sites see each 3x3 window code.

    ``spins``: C-contiguous int8 ``(B, Lx, Ly)`` of +-1, periodic boundaries, ``Lx, Ly >= 1``.
    """
    nb, Lx, Ly = spins.shape
    out = np.zeros((nb, 512), dtype=np.int64)
    for n in prange(nb):
        s = spins[n]
        h = out[n]
        for x in range(Lx):
            x1 = x + 1 if x + 1 < Lx else x + 1 - Lx
            x2 = x + 2 if x + 2 < Lx else x + 2 - Lx
            x2 = x2 if x2 < Lx else x2 - Lx
            for y in range(Ly):
                y1 = y + 1 if y + 1 < Ly else y + 1 - Ly
                y2 = y + 2 if y + 2 < Ly else y + 2 - Ly
                y2 = y2 if y2 < Ly else y2 - Ly
                code = 0
                if s[x, y] < 0:
                    code |= 1
                if s[x, y1] < 0:
                    code |= 2
                if s[x, y2] < 0:
                    code |= 4
                if s[x1, y] < 0:
                    code |= 8
                if s[x1, y1] < 0:
                    code |= 16
                if s[x1, y2] < 0:
                    code |= 32
                if s[x2, y] < 0:
                    code |= 64
                if s[x2, y1] < 0:
                    code |= 128
                if s[x2, y2] < 0:
                    code |= 256
                h[code] += 1
    return out
