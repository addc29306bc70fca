"""Native (float32/float64) kernels of the generic layers: im2col / col2im for conv, pools.

Plain arithmetic in the arrays' own dtype (Numba compiles one version per dtype), no fused
multiply-add (fastmath stays off). Threads take whole samples (or sample × channel planes),
each writing its own slab, so results do not depend on the thread count. Window geometry:
kh×kw at stride (sh, sw) giving ho×wo outputs, the input padded by ``pt`` rows on top and
``pl`` columns on the left (zeros for conv and avg pool; never read for max pool).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ..._kernels._jit import jit, pjit


@jit
def _span(b, sw, pl, wo, w):
    """The outputs j in [j0, j1) whose column j·sw − pl + b lies inside 0..w−1."""
    j0 = max(0, (pl - b + sw - 1) // sw)
    j1 = min(wo, (w - 1 + pl - b) // sw + 1)
    return j0, max(j0, j1)


@pjit
def im2col(x, kh, kw, sh, sw, pt, pl, ho, wo, cols):
    """cols (N, C·kh·kw, ho·wo): ``cols[n, (c·kh + a)·kw + b, i·wo + j] =
    x[n, c, i·sh − pt + a, j·sw − pl + b]`` (0 outside x)."""
    n, c, h, w = x.shape
    for s in prange(n):
        for ch in range(c):
            for a in range(kh):
                for b in range(kw):
                    row = (ch * kh + a) * kw + b
                    j0, j1 = _span(b, sw, pl, wo, w)
                    for i in range(ho):
                        y = i * sh - pt + a
                        base = i * wo
                        if y < 0 or y >= h:
                            for j in range(wo):
                                cols[s, row, base + j] = 0
                            continue
                        for j in range(j0):
                            cols[s, row, base + j] = 0
                        z0 = j0 * sw - pl + b
                        for j in range(j0, j1):
                            cols[s, row, base + j] = x[s, ch, y, z0 + (j - j0) * sw]
                        for j in range(j1, wo):
                            cols[s, row, base + j] = 0


@pjit
def col2im(cols, kh, kw, sh, sw, pt, pl, ho, wo, dx):
    """The adjoint of :func:`im2col`: dx (N, C, H, W) zeroed, then each column entry added to
    the input position it was read from (rows in order, then i, j; padding dropped)."""
    n, c, h, w = dx.shape
    for s in prange(n):
        for ch in range(c):
            for y in range(h):
                for z in range(w):
                    dx[s, ch, y, z] = 0
            for a in range(kh):
                for b in range(kw):
                    row = (ch * kh + a) * kw + b
                    j0, j1 = _span(b, sw, pl, wo, w)
                    z0 = j0 * sw - pl + b
                    for i in range(ho):
                        y = i * sh - pt + a
                        if y < 0 or y >= h:
                            continue
                        base = i * wo
                        for j in range(j0, j1):
                            dx[s, ch, y, z0 + (j - j0) * sw] += cols[s, row, base + j]


@pjit
def maxpool_backward_add(g, arg, kw, sh, sw, pt, pl, dx):
    """Overlapping max-pool backward: dx (zeroed here) += g at each window's argmax, windows
    in row-major output order."""
    n, c, ho, wo = g.shape
    h, w = dx.shape[2], dx.shape[3]
    for nc in prange(n * c):
        s = nc // c
        ch = nc % c
        for y in range(h):
            for z in range(w):
                dx[s, ch, y, z] = 0
        for i in range(ho):
            for j in range(wo):
                k = arg[s, ch, i, j]
                dx[s, ch, i * sh - pt + k // kw, j * sw - pl + k % kw] += g[s, ch, i, j]


@pjit
def avgpool_forward(x, kh, kw, sh, sw, pt, pl, count, out):
    """out (N, C, Ho, Wo): each window's sum in row-major window order (padded cells
    skipped: they add 0), divided by ``count`` = kh·kw in the dtype (padding counts, as torch's
    default)."""
    n, c, ho, wo = out.shape
    h, w = x.shape[2], x.shape[3]
    zero = np.zeros(1, out.dtype)[0]
    for nc in prange(n * c):
        s = nc // c
        ch = nc % c
        for i in range(ho):
            for j in range(wo):
                acc = zero
                for a in range(kh):
                    y = i * sh - pt + a
                    if y < 0 or y >= h:
                        continue
                    for b in range(kw):
                        z = j * sw - pl + b
                        if z >= 0 and z < w:
                            acc += x[s, ch, y, z]
                out[s, ch, i, j] = acc / count


@pjit
def avgpool_backward(g, kh, kw, sh, sw, pt, pl, count, dx):
    """dx (zeroed here) += g / count (kh·kw in the dtype) at every input cell of each window,
    windows in row-major output order."""
    n, c, ho, wo = g.shape
    h, w = dx.shape[2], dx.shape[3]
    for nc in prange(n * c):
        s = nc // c
        ch = nc % c
        for y in range(h):
            for z in range(w):
                dx[s, ch, y, z] = 0
        for i in range(ho):
            for j in range(wo):
                d = g[s, ch, i, j] / count
                for a in range(kh):
                    y = i * sh - pt + a
                    if y < 0 or y >= h:
                        continue
                    for b in range(kw):
                        z = j * sw - pl + b
                        if z >= 0 and z < w:
                            dx[s, ch, y, z] += d
