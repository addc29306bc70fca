"""Pooling kernels (selection and routing only: no rounding).

Windows are kh×kw at stride (sh, sw) over an input padded by ``pt`` rows on top and ``pl``
columns on the left (bottom/right padding only shows in the output size); a padded cell is
never read (it acts as −inf for the maximum). The arrays' own dtype is kept (float32 or
float64). The window geometry (:func:`window`), its walk (:func:`window_max`) and the
gradient routing (:func:`route_plane`) are helpers that the native layer kernels
(:mod:`fxemu.nn._kernels.layers_native`) share.
"""

from __future__ import annotations

from numba import prange

from ._jit import jit, pjit


@jit
def window(i, j, kh, kw, sh, sw, pt, pl, h, w):
    """Output (i, j)'s window: its start (r0, q0) in the h×w input and the offsets
    [a0, a1) × [b0, b1) of its cells inside the input (padded cells left out)."""
    r0 = i * sh - pt
    q0 = j * sw - pl
    return r0, q0, max(-r0, 0), min(kh, h - r0), max(-q0, 0), min(kw, w - q0)


@jit
def window_max(x, s, ch, r0, q0, a0, a1, b0, b1, kw):
    """(value, a·kw + b) of the first maximum of x[s, ch, r0 + a, q0 + b] over a in [a0, a1),
    b in [b0, b1) in row-major order; the first NaN instead where the window holds one.

    The maximum is walked with a plain ``>`` (branch-predictable, no NaN test per cell); a
    NaN seen on the way sends a second walk for the first NaN (rare)."""
    best = x[s, ch, r0 + a0, q0 + b0]
    bi = a0 * kw + b0
    nan = False
    for a in range(a0, a1):
        for b in range(b0, b1):
            v = x[s, ch, r0 + a, q0 + b]
            if v > best:
                best = v
                bi = a * kw + b
            nan |= v != v
    if nan:
        for a in range(a0, a1):
            for b in range(b0, b1):
                v = x[s, ch, r0 + a, q0 + b]
                if v != v:
                    return v, a * kw + b
    return best, bi


@jit
def maxpool_plane(x, s, ch, kh, kw, sh, sw, pt, pl, out, arg):
    """Max pooling of the plane x[s, ch] into out[s, ch] / arg[s, ch] (see
    :func:`maxpool_forward`). A 2×2 window inside the input takes a call with constant
    bounds (unrolled by the compiler: the common pool, several times faster)."""
    ho, wo = out.shape[2], out.shape[3]
    hh, ww = x.shape[2], x.shape[3]
    for y in range(ho):
        for z in range(wo):
            r0, q0, a0, a1, b0, b1 = window(y, z, kh, kw, sh, sw, pt, pl, hh, ww)
            if kh == 2 and kw == 2 and a0 == 0 and a1 == 2 and b0 == 0 and b1 == 2:
                best, bi = window_max(x, s, ch, r0, q0, 0, 2, 0, 2, 2)
            else:
                best, bi = window_max(x, s, ch, r0, q0, a0, a1, b0, b1, kw)
            out[s, ch, y, z] = best
            arg[s, ch, y, z] = bi


@pjit
def maxpool_forward(x, kh, kw, sh, sw, pt, pl, out, arg):
    """Max pooling of (N, C, H, W) into out/arg (N, C, Ho, Wo).

    ``arg`` is the row-major index a·kw + b within the window of the first maximum among the
    window's input cells (padded cells never win); a NaN counts as the maximum (the first NaN
    wins), as ``numpy.argmax`` decides. Every window holds at least one input cell (the API
    checks the padding).
    """
    n, c = out.shape[0], out.shape[1]
    for nc in prange(n * c):
        maxpool_plane(x, nc // c, nc % c, kh, kw, sh, sw, pt, pl, out, arg)


@jit
def route_plane(g, arg, s, ch, kw, sh, sw, pt, pl, add, out):
    """out[s, ch] zeroed, then g[s, ch] sent to each window's argmax cell, windows in
    row-major output order: assigned (``add`` False: windows that do not overlap, a −0
    gradient stays −0) or added (``add`` True: overlapping windows sum there)."""
    ho, wo = g.shape[2], g.shape[3]
    hh, ww = out.shape[2], out.shape[3]
    for y in range(hh):
        for z in range(ww):
            out[s, ch, y, z] = 0
    for y in range(ho):
        for z in range(wo):
            k = arg[s, ch, y, z]
            r = y * sh - pt + k // kw
            q = z * sw - pl + k % kw
            if add:
                out[s, ch, r, q] += g[s, ch, y, z]
            else:
                out[s, ch, r, q] = g[s, ch, y, z]


@pjit
def maxpool_route(g, arg, kw, sh, sw, pt, pl, add, out):
    """Max-pool backward: :func:`route_plane` for every (sample, channel) plane."""
    n, c = g.shape[0], g.shape[1]
    for nc in prange(n * c):
        route_plane(g, arg, nc // c, nc % c, kw, sh, sw, pt, pl, add, out)


def maxpool_backward(g, arg, kw, sh, sw, pt, pl, out):
    """Scatter g (N, C, Ho, Wo) to the argmax position of each window of out (zeroed here);
    windows must not overlap (each position receives at most one value, assigned)."""
    maxpool_route(g, arg, kw, sh, sw, pt, pl, False, out)
