"""Direct conv kernels (no im2col) for the datapaths whose every step is ok and whose
accumulator no zero product changes.

These datapaths qualify (:func:`conv_kernels` takes any):

* a :func:`fxemu._kernels.mac_fast.fixed_ops` integer datapath: a zero operand gives the
  product 0 (a mul format rounds and overflows 0 to 0 under every mode), and adding the
  integer 0 to an accumulator leaves it unchanged under every rounding and overflow mode
  (the sum is on the accumulator's grid, and the accumulator is in range: it starts at 0 and
  every step leaves it in range);
* its float64 twin :func:`fxemu._kernels.mac_fast.fixed_f64_ops` (the same integers, below
  2^52, as doubles): the product of a zero operand is ±0 and ``acc + (±0)·2^sh`` is ``acc``
  for an integer accumulator (a zero sum is +0 and equals −0 in every later comparison and
  sum); saturation or the zero mode act only on values outside [lo, hi], which ``acc`` is
  not;
* :func:`fxemu._kernels.mac_fast.f32_ops` (float32 operands whose products are exact in
  float32, an IEEE float32 accumulator rounding to nearest even): the accumulator starts at
  +0 and an RNE sum is −0 only when both terms are, so it never holds −0, and ``acc + (±0)``
  is ``acc`` (inf and NaN included; the caller passes no inf/NaN operand, so a zero operand's
  product is ±0).

So terms whose operand is a padded zero may be added or skipped: either leaves every
accumulator as the full reduction would. The forward kernel skips them; the weight-gradient
kernel reads a zero-padded copy of the input (:func:`weight_grad` builds it) instead of
testing each position.

Each output reduces its terms in the order :func:`fxemu.arith.conv2d` and
:func:`fxemu.arith.conv2d_grad_weight` state (``step(acc, prod(a, b))`` from a zero
accumulator, as :func:`fxemu._kernels.mac_fast.matmul_fast` does on the im2col matrices).
Vector lanes are independent outputs only. The forward kernel's innermost loop runs over the
samples' accumulators of one output row. The weight-gradient kernel keeps a tile of
:data:`TAPS` kernel taps (channel, row, column) × :data:`LANES` filters in registers (tuples
of LANES values, which LLVM's SLP vectoriser packs into vector instructions) across its whole
reduction; filters padded to a multiple of LANES and a last tile's missing taps compute
throw-away sums on zeros. ``prange`` runs over the tasks: each writes its own outputs in a
fixed order, so results do not depend on the thread count.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import prange

from ._jit import jit
from .mac_fast import Datapath, specialise

#: accumulators per tuple (one AVX2 vector of float32, two of float64 or int64)
LANES = 8
#: weight gradient: kernel taps per task
TAPS = 5

# The generic kernels call these names; each specialisation binds them in its own globals.
prod = step = lanes = None


def _lanes(acc, v, o, s, mp, ap):
    """``step(acc[q], prod(v[o + q], s))`` for each of the LANES lanes: a tuple in, a tuple
    out (written out, so that the lanes are independent scalar operations SLP can pack; the
    index ``o`` is unsigned, so no lane's load tests for a negative index)."""
    _, p = prod(v[o], s, mp)
    _, r0 = step(acc[0], p, ap)
    _, p = prod(v[o + _U1], s, mp)
    _, r1 = step(acc[1], p, ap)
    _, p = prod(v[o + _U2], s, mp)
    _, r2 = step(acc[2], p, ap)
    _, p = prod(v[o + _U3], s, mp)
    _, r3 = step(acc[3], p, ap)
    _, p = prod(v[o + _U4], s, mp)
    _, r4 = step(acc[4], p, ap)
    _, p = prod(v[o + _U5], s, mp)
    _, r5 = step(acc[5], p, ap)
    _, p = prod(v[o + _U6], s, mp)
    _, r6 = step(acc[6], p, ap)
    _, p = prod(v[o + _U7], s, mp)
    _, r7 = step(acc[7], p, ap)
    return (r0, r1, r2, r3, r4, r5, r6, r7)


_U1, _U2, _U3, _U4, _U5, _U6, _U7 = (np.uint64(q) for q in range(1, LANES))


@jit
def _put(row, acc):
    """row[q] = acc[q] for the LANES lanes."""
    for q in range(LANES):
        row[q] = acc[q]


def _forward(x, w, out, scale, sh, sw, pt, pl, mp, ap):
    """Generic forward kernel (see :func:`conv_kernels`)."""
    c, h, wd, n = x.shape
    f, _, kh, kw = w.shape
    ho, wo = out.shape[2], out.shape[3]
    for t in prange(f * ho):  # one output row of one filter, all samples
        fi, i = t // ho, t % ho
        acc = np.zeros((wo, n), w.dtype)
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
        for s in range(n):
            orow = out[s, fi, i]
            for j in range(wo):
                orow[j] = np.float64(acc[j, s]) * scale


def _weight_grad(g, xp, offs, out, sh, sw, wp, mp, ap):
    """Generic weight-gradient kernel (see :func:`conv_kernels`)."""
    n, ho, fp = g.shape[0], g.shape[1], out.shape[1]
    wo = g.shape[2] // fp
    nfc = fp // LANES
    z = np.zeros(1, out.dtype)[0]
    for t in prange((offs.shape[0] // TAPS) * nfc):  # TAPS taps × LANES filters
        f0 = (t % nfc) * LANES
        e0 = (t // nfc) * TAPS
        o0, o1, o2, o3, o4 = offs[e0], offs[e0 + 1], offs[e0 + 2], offs[e0 + 3], offs[e0 + 4]
        a0 = a1 = a2 = a3 = a4 = (z, z, z, z, z, z, z, z)
        for s in range(n):
            xs = xp[s]
            for i in range(ho):
                gr = g[s, i]
                for j in range(wo):
                    u = np.uint64(j * fp + f0)
                    x0 = np.uint64(i * sh * wp + j * sw)
                    a0 = lanes(a0, gr, u, xs[x0 + o0], mp, ap)
                    a1 = lanes(a1, gr, u, xs[x0 + o1], mp, ap)
                    a2 = lanes(a2, gr, u, xs[x0 + o2], mp, ap)
                    a3 = lanes(a3, gr, u, xs[x0 + o3], mp, ap)
                    a4 = lanes(a4, gr, u, xs[x0 + o4], mp, ap)
        f1 = f0 + LANES
        _put(out[e0, f0:f1], a0)
        _put(out[e0 + 1, f0:f1], a1)
        _put(out[e0 + 2, f0:f1], a2)
        _put(out[e0 + 3, f0:f1], a3)
        _put(out[e0 + 4, f0:f1], a4)


@functools.cache
def conv_kernels(ops: Datapath) -> tuple[object, object]:
    """(forward, weight_grad) kernels of the datapath ``ops`` (one whose ``prod`` and ``step``
    are always ok and whose accumulator no zero product changes, see the module docstring).
    Callers use :func:`forward` and :func:`weight_grad`, which lay the operands out.

    ``forward(x, w, out, scale, sh, sw, pt, pl, mp, ap)``: x (C, H, W, N) batch-last, w (F, C,
    Kh, Kw); the accumulator of out[n, f, i, j] (float64, the accumulator times ``scale``)
    reduces ``prod(x[c, i·sh + a − pt, j·sw + b − pl, n], w[f, c, a, b])`` over
    k = (c·Kh + a)·Kw + b, skipping the padded positions (outside x), the innermost loop
    running over the samples' independent accumulators.
    ``weight_grad(g, xp, offs, out, sh, sw, wp, mp, ap)``: g (N, Ho, Wo·Fp) filter-last, Fp a
    multiple of :data:`LANES`; xp (N, C·Hp·wp) the zero-padded input, rows of width wp; offs
    (E,) uint64, the taps' offsets c·Hp·wp + a·wp + b, E a multiple of :data:`TAPS`; out (E,
    Fp); out[e, f] reduces ``prod(g[n, i, j·Fp + f], xp[n, i·sh·wp + j·sw + offs[e]])`` over
    k = (n·Ho + i)·Wo + j, a tile of TAPS taps × LANES filters per task.
    Operands are in the datapath's representation (integers at the operands' scales, as
    int64 or float64, or float32); mp/ap its product and accumulation parameters.
    """
    tag = f"cv_{ops.tag}"
    ln = specialise(_lanes, tag, False, inline=True, prod=ops.prod, step=ops.step)
    return (specialise(_forward, tag, True, prod=ops.prod, step=ops.step),
            specialise(_weight_grad, tag, True, slp=True, lanes=ln))


def _ceil(v: int, m: int) -> int:
    return -(-v // m) * m


def _padded(x: np.ndarray, scale: float, dtype: type, hp: int, wp: int, top: int,
            left: int) -> np.ndarray:
    """``x·scale`` (N, C, H, W) in ``dtype`` inside zeros (N, C, hp, wp), x's element
    (n, c, y, x) at (n, c, y + top, x + left), parts outside dropped (top/left may be
    negative: a crop)."""
    n, c, h, w = x.shape
    out = np.zeros((n, c, hp, wp), dtype)
    y0, y1 = max(0, top), min(hp, h + top)
    x0, x1 = max(0, left), min(wp, w + left)
    if y0 < y1 and x0 < x1:
        src = x[:, :, y0 - top:y1 - top, x0 - left:x1 - left]
        out[:, :, y0:y1, x0:x1] = src * scale if scale != 1.0 else src
    return out


def forward(ops: Datapath, dtype: type, x: np.ndarray, w: np.ndarray, xs: float, ws: float,
            scale: float, out_hw: tuple[int, int], geo: tuple[int, int, int, int], mp: tuple,
            ap: tuple) -> np.ndarray:
    """The conv of x (N, C, H, W) with w (F, C, Kh, Kw), float64 operands scaled by xs and ws
    (powers of two) into the datapath's representation ``dtype``, at output size ``out_hw``
    and geo = (sh, sw, pt, pl) (x read at (i·sh + a − pt, j·sw + b − pl), zero outside):
    the accumulators as doubles times ``scale`` (a power of two), (N, F, Ho, Wo)."""
    xb = np.ascontiguousarray((x * xs if xs != 1.0 else x).transpose(1, 2, 3, 0), dtype=dtype)
    wi = np.ascontiguousarray(w * ws if ws != 1.0 else w, dtype=dtype)
    out = np.empty((x.shape[0], w.shape[0], *out_hw), np.float64)
    conv_kernels(ops)[0](xb, wi, out, scale, *geo, mp, ap)
    return out


def weight_grad(ops: Datapath, dtype: type, g: np.ndarray, x: np.ndarray, gs: float, xs: float,
                scale: float, kernel: tuple[int, int], geo: tuple[int, int, int, int], mp: tuple,
                ap: tuple) -> np.ndarray:
    """The weight gradient of g (N, F, Ho, Wo) and x (N, C, H, W), float64 operands scaled
    by gs and xs into ``dtype``, for a kernel (Kh, Kw) at geo = (sh, sw, pt, pl): the
    accumulators as doubles times ``scale`` (a power of two), (F, C, Kh, Kw)."""
    n, f, ho, wo = g.shape
    c = x.shape[1]
    kh, kw = kernel
    sh, sw, pt, pl = geo
    hp, wp = (ho - 1) * sh + kh, (wo - 1) * sw + kw
    xp = _padded(x, xs, dtype, hp, wp, pt, pl).reshape(n, -1)
    fp = _ceil(f, LANES)
    gp = np.zeros((n, ho, wo, fp), dtype)
    gp[..., :f] = g.transpose(0, 2, 3, 1) * gs if gs != 1.0 else g.transpose(0, 2, 3, 1)
    taps = np.arange(c * kh * kw)
    offs = np.zeros(_ceil(taps.size, TAPS), np.uint64)
    offs[:taps.size] = (taps // (kh * kw)) * hp * wp + (taps // kw % kh) * wp + taps % kw
    out = np.empty((offs.size, fp), dtype)
    conv_kernels(ops)[1](gp.reshape(n, ho, -1), xp, offs, out, sh, sw, wp, mp, ap)
    res = np.ascontiguousarray(out[:taps.size, :f].T, dtype=np.float64).reshape(f, c, kh, kw)
    res *= scale
    return res
