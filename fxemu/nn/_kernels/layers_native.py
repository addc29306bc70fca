"""Native (float32/float64) kernels of the generic layers: im2col / col2im for conv, the
layout moves around its products, ReLU's gradient, pools.

Plain arithmetic in the arrays' own dtype (Numba compiles one version per dtype), no fused
multiply-add (fastmath stays off). The conv kernels are serial (``nogil``) and work on one
chunk of samples each: :mod:`fxemu.nn.native_ops` runs chunks on several threads, every chunk
writing its own slab, so results do not depend on the thread count; the pool kernels' threads
take whole (sample, channel) planes. Window geometry: kh×kw at stride (sh, sw) giving ho×wo
outputs, the input padded by ``pt`` rows on top and ``pl`` columns on the left (zeros for conv
and avg pool; never read for max pool). The max-pool window walk and routing are
:mod:`fxemu._kernels.pool`'s.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ..._kernels._jit import jit, pjit
from ..._kernels.pool import window


@jit
def im2col_chunk(xp, s0, kh, kw, sh, sw, ho, wo, cols):
    """cols (C·kh·kw, m·ho·wo) for the m samples s0.. of the zero-padded input xp:
    ``cols[(c·kh + a)·kw + b, (t·ho + i)·wo + j] = xp[s0 + t, c, i·sh + a, j·sw + b]``."""
    c = xp.shape[1]
    p = ho * wo
    m = cols.shape[1] // p
    for ch in range(c):
        for a in range(kh):
            for b in range(kw):
                row = (ch * kh + a) * kw + b
                for t in range(m):
                    for i in range(ho):
                        src = xp[s0 + t, ch, i * sh + a]
                        dst = cols[row, t * p + i * wo:t * p + (i + 1) * wo]
                        if sw == 1:  # a contiguous copy (vectorised)
                            for j in range(wo):
                                dst[j] = src[j + b]
                        else:
                            for j in range(wo):
                                dst[j] = src[j * sw + b]


@jit
def col2im_chunk(cols, s0, kh, kw, sh, sw, ho, wo, dxp):
    """The adjoint of :func:`im2col_chunk`: dxp[s0 .. s0 + m − 1] (the padded input's
    gradient) zeroed, then each column entry added to the position it was read from (rows in
    order, then samples, i, j)."""
    c, h, w = dxp.shape[1], dxp.shape[2], dxp.shape[3]
    p = ho * wo
    m = cols.shape[1] // p
    for t in range(m):
        for ch in range(c):
            for y in range(h):
                for z in range(w):
                    dxp[s0 + t, ch, y, z] = 0
    for ch in range(c):
        for a in range(kh):
            for b in range(kw):
                row = (ch * kh + a) * kw + b
                for t in range(m):
                    for i in range(ho):
                        dst = dxp[s0 + t, ch, i * sh + a]
                        src = cols[row, t * p + i * wo:t * p + (i + 1) * wo]
                        if sw == 1:
                            for j in range(wo):
                                dst[j + b] += src[j]
                        else:
                            for j in range(wo):
                                dst[j * sw + b] += src[j]


@jit
def to_nchw(y, b, bias, s0, out):
    """out[s0 + t, f, q] = y[f, t·P + q] (+ b[f] when ``bias``), P = out's Ho·Wo: a chunk's
    product (F, m·P) moved to the (N, F, P) layout."""
    f, p = out.shape[1], out.shape[2]
    m = y.shape[1] // p
    for t in range(m):
        for k in range(f):
            if bias:
                for q in range(p):
                    out[s0 + t, k, q] = y[k, t * p + q] + b[k]
            else:
                for q in range(p):
                    out[s0 + t, k, q] = y[k, t * p + q]


@jit
def from_nchw(g, s0, gt, db):
    """gt[f, t·P + q] = g[s0 + t, f, q] for a chunk of m = gt's columns / P samples, and
    db[f] = the sum of those entries (in t, q order, in the dtype)."""
    f, p = g.shape[1], g.shape[2]
    m = gt.shape[1] // p
    for k in range(f):
        acc = db.dtype.type(0)
        for t in range(m):
            for q in range(p):
                v = g[s0 + t, k, q]
                gt[k, t * p + q] = v
                acc += v
        db[k] = acc


@pjit
def relu_backward(x, g, out):
    """out = g where x > 0, else +0 (a NaN x passes nothing), elementwise over flat arrays."""
    for i in prange(x.size):
        out[i] = g[i] if x[i] > 0 else 0


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
                r0, q0, a0, a1, b0, b1 = window(i, j, kh, kw, sh, sw, pt, pl, h, w)
                acc = zero
                for a in range(a0, a1):
                    for b in range(b0, b1):
                        acc += x[s, ch, r0 + a, q0 + b]
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
                r0, q0, a0, a1, b0, b1 = window(i, j, kh, kw, sh, sw, pt, pl, h, w)
                d = g[s, ch, i, j] / count
                for a in range(a0, a1):
                    for b in range(b0, b1):
                        dx[s, ch, r0 + a, q0 + b] += d
