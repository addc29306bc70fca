"""Fused native kernels of the reference network's conv 3×3 → +bias → ReLU → max pool 2×2 block.

Plain float32 or float64 arithmetic in the arrays' own dtype (Numba compiles one version per
dtype), no fused multiply-add (fastmath stays off), every sum in a fixed order:

* ``conv_relu_pool_forward`` lays each 28×28 image out (per sample, in scratch) as the 16
  strided planes ``P[4r + s, 13y + z] = x[2y + r, 2z + s]`` (r, s in 0..3; y, z in 0..12).
  Conv output ``(2y + a, 2z + b)`` (window slot ``k = 2a + b`` of pooled cell ``q = 13y + z``)
  under tap ``(di, dj)`` reads plane ``(a + di, b + dj)``: every access is contiguous over the
  169 pooled cells, so the compiler vectorises over them. Each conv output is
  ``(((w0·x0 + w1·x1) + w2·x2) + … + w8·x8) + b`` (taps in row-major order, bias last); the
  window takes its first maximum in row-major order (a NaN counts as the maximum, the first
  NaN wins, as :func:`fxemu.arith.maxpool2d`), then ReLU of the maximum (NaN stays NaN).
  ReLU before or after the max gives the same pooled value; the argmax can differ only where
  the pooled value is ≤ 0, where no gradient flows.
* ``conv_relu_pool_backward``: the conv output's gradient is nonzero only at the argmax of a
  window whose pooled value is > 0 (ReLU'(0) = 0): one position in four at most, so the
  26×26 gradient is never formed. Per sample n and filter c, each tap's sum
  ``Σ_q g[n, c, q] · x[n, i_q + di, j_q + dj]`` (and the bias's ``Σ_q g``) runs over the
  cells q in order from 0 ((i_q, j_q) the cell's argmax position; a dead cell has g = +0 and
  adds an exact zero for finite x, so the sum is that over the live cells); the per-sample
  sums are then added over n in order. Samples are split among threads, each writing its own
  row, and the final sum is serial, so the result does not depend on the thread count.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ..._kernels._jit import jit, pjit

CELLS = 169  # 13 × 13 pooled cells
#: flat index in a 28×28 image of the top-left conv output of each pooled cell's window
CELL_BASE = np.array([56 * (q // 13) + 2 * (q % 13) for q in range(CELLS)], np.uint16)


@jit
def _taps(w0, w1, w2, w3, w4, w5, w6, w7, w8, p00, p01, p02, p10, p11, p12, p20, p21, p22):
    """The 9-tap sum in row-major tap order, from the first product (no fused multiply-add)."""
    return ((((((((w0 * p00 + w1 * p01) + w2 * p02) + w3 * p10) + w4 * p11) + w5 * p12)
              + w6 * p20) + w7 * p21) + w8 * p22)


@jit
def _first_max(best, where, v, at):
    """Window maximum so far and where it is, updated by value v found at ``at`` (a NaN is
    the maximum; the first maximum wins)."""
    if (v > best) or (np.isnan(v) and not np.isnan(best)):
        return v, at
    return best, where


@pjit
def conv_relu_pool_forward(x, w, b, base, h, pos):
    """Pooled activations h (N, F, 169) of images x (N, 28, 28) under taps w (F, 9) and
    biases b (F,), and pos (N, F, 169): the flat index in the 28×28 image of the conv output
    each window's maximum came from (the argmax; ``base`` is :data:`CELL_BASE`)."""
    n, f, cells = h.shape
    zero = np.zeros(1, h.dtype)[0]
    for i in prange(n):
        pi = np.empty((16, cells), h.dtype)  # plane 4r + s: pi[4r + s, 13y + z]
        for r in range(4):
            for s in range(4):
                for y in range(13):
                    for z in range(13):
                        pi[4 * r + s, 13 * y + z] = x[i, 2 * y + r, 2 * z + s]
        for c in range(f):
            w0, w1, w2 = w[c, 0], w[c, 1], w[c, 2]
            w3, w4, w5 = w[c, 3], w[c, 4], w[c, 5]
            w6, w7, w8 = w[c, 6], w[c, 7], w[c, 8]
            bc = b[c]
            hc = h[i, c]
            pc = pos[i, c]
            for q in range(cells):
                x00, x01, x02, x03 = pi[0, q], pi[1, q], pi[2, q], pi[3, q]
                x10, x11, x12, x13 = pi[4, q], pi[5, q], pi[6, q], pi[7, q]
                x20, x21, x22, x23 = pi[8, q], pi[9, q], pi[10, q], pi[11, q]
                x30, x31, x32, x33 = pi[12, q], pi[13, q], pi[14, q], pi[15, q]
                v0 = _taps(w0, w1, w2, w3, w4, w5, w6, w7, w8,
                           x00, x01, x02, x10, x11, x12, x20, x21, x22) + bc
                v1 = _taps(w0, w1, w2, w3, w4, w5, w6, w7, w8,
                           x01, x02, x03, x11, x12, x13, x21, x22, x23) + bc
                v2 = _taps(w0, w1, w2, w3, w4, w5, w6, w7, w8,
                           x10, x11, x12, x20, x21, x22, x30, x31, x32) + bc
                v3 = _taps(w0, w1, w2, w3, w4, w5, w6, w7, w8,
                           x11, x12, x13, x21, x22, x23, x31, x32, x33) + bc
                best, bo = _first_max(v0, 0, v1, 1)
                best, bo = _first_max(best, bo, v2, 28)
                best, bo = _first_max(best, bo, v3, 29)
                if not (best > 0) and not np.isnan(best):
                    best = zero  # ReLU
                hc[q] = best
                pc[q] = base[q] + bo


@pjit
def conv_relu_pool_backward(x, h, pos, dh, part, dwb):
    """Conv weight and bias gradient dwb (F, 10) (lanes 0..8 the taps in row-major order,
    lane 9 the bias) from images x (N, 28, 28), the forward's h and pos (N, F, 169) and the
    pooled gradient dh (N, F, 169); part (N, F, 10) is scratch for the per-sample sums.
    Order in the module docstring."""
    n, f, cells = h.shape
    for i in prange(n):
        zero = np.zeros(1, part.dtype)[0]
        xi = x[i].reshape(784)
        for c in range(f):
            a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = a8 = a9 = zero
            for q in range(cells):
                g = dh[i, c, q] if h[i, c, q] > 0 else zero
                o = pos[i, c, q]
                a0 += g * xi[o]
                a1 += g * xi[o + 1]
                a2 += g * xi[o + 2]
                a3 += g * xi[o + 28]
                a4 += g * xi[o + 29]
                a5 += g * xi[o + 30]
                a6 += g * xi[o + 56]
                a7 += g * xi[o + 57]
                a8 += g * xi[o + 58]
                a9 += g
            part[i, c, 0], part[i, c, 1], part[i, c, 2] = a0, a1, a2
            part[i, c, 3], part[i, c, 4], part[i, c, 5] = a3, a4, a5
            part[i, c, 6], part[i, c, 7], part[i, c, 8] = a6, a7, a8
            part[i, c, 9] = a9
    for c in range(f):  # serial: samples in order
        for t in range(10):
            acc = part[0, c, t]
            for i in range(1, n):
                acc += part[i, c, t]
            dwb[c, t] = acc
