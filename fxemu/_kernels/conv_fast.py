"""Direct conv kernels (no im2col) for the datapaths whose every step is ok and whose
accumulator no zero product changes.

These datapaths qualify (:func:`conv_kernels` takes any):

* a :func:`fxemu._kernels.mac_fast.fixed_ops` integer datapath, or its float64 twin
  :func:`fxemu._kernels.mac_fast.fixed_f64_ops`: adding the integer 0 to an in-range
  accumulator leaves it unchanged under every rounding and overflow mode;
* :func:`fxemu._kernels.mac_fast.f32_ops` (float32 operands whose products are exact in
  float32, an IEEE float32 accumulator rounding to nearest even): the accumulator starts at
  +0 and an RNE sum is −0 only when both terms are, so it never holds −0, and ``acc + (±0)``
  is ``acc`` (inf and NaN included).

Each output reduces its terms in the order :func:`fxemu.arith.conv2d` and
:func:`fxemu.arith.conv2d_grad_weight` state (``step(acc, prod(a, b))`` from a zero
accumulator, as :func:`fxemu._kernels.mac_fast.matmul_fast` does on the im2col matrices);
the innermost loop runs over independent outputs (samples, or filters), so it vectorises.
The terms of padded positions (zero operands, products ±0) are skipped, which by the two
facts above leaves every accumulator as the full reduction would; nothing else is skipped.

Geometry: the input ``x`` (N, C, H, W) is read at ``(i·sh + a − pt, j·sw + b − pl)``; a
position outside it is a padded zero (``pt``/``pl`` may be negative: a crop, as the input
gradient's offset can be). ``prange`` runs over independent outputs (sample × filter, or
filter × channel): each thread writes its own outputs in a fixed order, so results do not
depend on the thread count.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import prange

from .mac_fast import Datapath, specialise

# The generic kernels call these names; each specialisation binds them in its own globals.
prod = step = None


def _forward(x, w, out, sh, sw, pt, pl, mp, ap):
    """Generic forward kernel (see :func:`conv_kernels`)."""
    c, h, wd, n = x.shape
    f, _, kh, kw = w.shape
    ho, wo = out.shape[1], out.shape[2]
    for t in prange(f * ho):  # one output row of one filter, all samples
        fi, i = t // ho, t % ho
        acc = np.zeros((wo, n), out.dtype)
        for ci in range(c):
            for a in range(kh):
                r = i * sh + a - pt
                if r < 0 or r >= h:
                    continue
                for b in range(kw):
                    j0 = max(0, -((b - pl) // sw))  # first j with j·sw + b − pl >= 0
                    j1 = min(wo, (wd - 1 - b + pl) // sw + 1)
                    wv = w[fi, ci, a, b]
                    for j in range(j0, j1):
                        xr = x[ci, r, j * sw + b - pl]
                        ar = acc[j]
                        for s in range(n):
                            _, p = prod(xr[s], wv, mp)
                            _, v = step(ar[s], p, ap)
                            ar[s] = v
        out[fi, i] = acc


def _weight_grad(g, x, out, sh, sw, pt, pl, mp, ap):
    """Generic weight-gradient kernel (see :func:`conv_kernels`)."""
    n, c, h, wd = x.shape
    ho, wo, f = g.shape[1], g.shape[2], g.shape[3]
    kh, kw = out.shape[1], out.shape[2]
    for t in prange(c * kh):  # one kernel row of one channel, all filters
        ci, a = t // kh, t % kh
        acc = np.zeros((kw, f), out.dtype)
        for s in range(n):
            for i in range(ho):
                r = i * sh + a - pt
                if r < 0 or r >= h:
                    continue
                xr = x[s, ci, r]
                for j in range(wo):
                    b0 = max(0, pl - j * sw)
                    b1 = min(kw, wd + pl - j * sw)
                    gr = g[s, i, j]
                    for b in range(b0, b1):
                        xv = xr[j * sw + b - pl]
                        ar = acc[b]
                        for q in range(f):
                            _, p = prod(gr[q], xv, mp)
                            _, v = step(ar[q], p, ap)
                            ar[q] = v
        out[ci, a] = acc


@functools.cache
def conv_kernels(ops: Datapath) -> tuple[object, object]:
    """(forward, weight_grad) kernels of the datapath ``ops`` (one whose ``prod`` and ``step``
    are always ok and whose accumulator no zero product changes, see the module docstring).

    ``forward(x, w, out, sh, sw, pt, pl, mp, ap)``: x (C, H, W, N) batch-last, w (F, C, Kh,
    Kw), out (F, Ho, Wo, N); each output reduces ``prod(x, w)`` over k = (c·Kh + a)·Kw + b,
    the innermost loop running over the samples' independent accumulators.
    ``weight_grad(g, x, out, sh, sw, pt, pl, mp, ap)``: g (N, Ho, Wo, F) filter-last, x (N, C,
    H, W), out (C, Kh, Kw, F); each output reduces ``prod(g, x)`` over k = (n·Ho + i)·Wo + j,
    the innermost loop running over the filters' independent accumulators.
    Operands are in the datapath's representation (integers at the operands' scales, as
    int64 or float64, or float32); mp/ap its product and accumulation parameters.
    """
    tag = f"cv_{ops.tag}"
    return (specialise(_forward, tag, True, prod=ops.prod, step=ops.step),
            specialise(_weight_grad, tag, True, prod=ops.prod, step=ops.step))
