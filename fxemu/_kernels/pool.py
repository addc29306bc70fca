"""Max pooling kernels (selection only: no rounding)."""

from __future__ import annotations

import numpy as np
from numba import prange

from ._jit import pjit


@pjit
def maxpool_forward(x, size, out, arg):
    """Non-overlapping size×size max pooling of (N, C, H, W) into out/arg (N, C, Ho, Wo).

    ``arg`` is the row-major index within the window of the first maximum; a NaN counts as
    the maximum (the first NaN wins), as ``numpy.argmax`` decides.
    """
    n, c, ho, wo = out.shape
    for nc in prange(n * c):
        i0 = nc // c
        c0 = nc % c
        for y in range(ho):
            for z in range(wo):
                best = x[i0, c0, y * size, z * size]
                bi = 0
                for k in range(1, size * size):
                    v = x[i0, c0, y * size + k // size, z * size + k % size]
                    if (v > best) or (np.isnan(v) and not np.isnan(best)):
                        best = v
                        bi = k
                out[i0, c0, y, z] = best
                arg[i0, c0, y, z] = bi


@pjit
def maxpool_backward(g, arg, size, out):
    """Scatter g (N, C, Ho, Wo) to the argmax position of each window of out (zeroed here)."""
    n, c, ho, wo = g.shape
    hh, ww = out.shape[2], out.shape[3]
    for nc in prange(n * c):
        i0 = nc // c
        c0 = nc % c
        for y in range(hh):
            for z in range(ww):
                out[i0, c0, y, z] = 0.0
        for y in range(ho):
            for z in range(wo):
                k = arg[i0, c0, y, z]
                out[i0, c0, y * size + k // size, z * size + k % size] = g[i0, c0, y, z]
