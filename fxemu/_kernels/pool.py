"""Pooling kernels (selection and routing only: no rounding).

Windows are kh×kw at stride (sh, sw) over an input padded by ``pt`` rows on top and ``pl``
columns on the left (bottom/right padding only shows in the output size); a padded cell is
never read (it acts as −inf for the maximum). The arrays' own dtype is kept (float32 or
float64).
"""

from __future__ import annotations

from numba import prange

from ._jit import pjit


@pjit
def maxpool_forward(x, kh, kw, sh, sw, pt, pl, out, arg):
    """Max pooling of (N, C, H, W) into out/arg (N, C, Ho, Wo).

    ``arg`` is the row-major index a·kw + b within the window of the first maximum among the
    window's input cells (padded cells never win); a NaN counts as the maximum (the first NaN
    wins), as ``numpy.argmax`` decides. Every window holds at least one input cell (the API
    checks the padding).
    """
    n, c, ho, wo = out.shape
    hh, ww = x.shape[2], x.shape[3]
    for nc in prange(n * c):
        i0 = nc // c
        c0 = nc % c
        for y in range(ho):
            r0 = y * sh - pt
            for z in range(wo):
                q0 = z * sw - pl
                best = x[i0, c0, max(r0, 0), max(q0, 0)]
                bi = max(-r0, 0) * kw + max(-q0, 0)
                for a in range(max(-r0, 0), min(kh, hh - r0)):
                    for b in range(max(-q0, 0), min(kw, ww - q0)):
                        v = x[i0, c0, r0 + a, q0 + b]
                        if v > best or (v != v and best == best):  # a NaN wins (first)
                            best = v
                            bi = a * kw + b
                out[i0, c0, y, z] = best
                arg[i0, c0, y, z] = bi


@pjit
def maxpool_backward(g, arg, kw, sh, sw, pt, pl, out):
    """Scatter g (N, C, Ho, Wo) to the argmax position of each window of out (zeroed here);
    windows must not overlap (each position receives at most one value)."""
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
                out[i0, c0, y * sh - pt + k // kw, z * sw - pl + k % kw] = g[i0, c0, y, z]
