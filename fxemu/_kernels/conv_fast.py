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
accumulator as the full reduction would. The kernels read zero-padded copies of the input
(:func:`forward` and :func:`weight_grad` build them) instead of testing each position.

Each output reduces its terms in the order :func:`fxemu.arith.conv2d` and
:func:`fxemu.arith.conv2d_grad_weight` state (``step(acc, prod(a, b))`` from a zero
accumulator, as :func:`fxemu._kernels.mac_fast.matmul_fast` does on the im2col matrices).
Speed comes from independent outputs only: each task keeps a tile of accumulators in
registers (tuples of :data:`LANES` values, which LLVM's SLP vectoriser packs into vector
instructions) across its whole reduction:

* forward: :data:`COLS` output columns × :data:`LANES` samples of one filter and output row;
* weight gradient: :data:`TAPS` kernel taps (channel, row, column) × :data:`LANES` filters.

Lanes and taps beyond the real ones (samples and filters padded to a multiple of
:data:`LANES`, a last tile of taps) compute throw-away sums on zeros. ``prange`` runs over
the tasks: each writes its own outputs in a fixed order, so results do not depend on the
thread count.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import prange

from ._jit import jit
from .mac_fast import Datapath, specialise

#: accumulators per tuple (one AVX2 vector of float32, two of float64 or int64)
LANES = 8
#: forward: output columns per task
COLS = 6
#: weight gradient: kernel taps per task
TAPS = 5

# The generic kernels call these names; each specialisation binds them in its own globals.
prod = step = lanes = None


def _lanes(acc, v, s, mp, ap):
    """``step(acc[q], prod(v[q], s))`` for each of the LANES lanes: a tuple in, a tuple out
    (written out, so that the lanes are independent scalar operations SLP can pack)."""
    _, p = prod(v[0], s, mp)
    _, r0 = step(acc[0], p, ap)
    _, p = prod(v[1], s, mp)
    _, r1 = step(acc[1], p, ap)
    _, p = prod(v[2], s, mp)
    _, r2 = step(acc[2], p, ap)
    _, p = prod(v[3], s, mp)
    _, r3 = step(acc[3], p, ap)
    _, p = prod(v[4], s, mp)
    _, r4 = step(acc[4], p, ap)
    _, p = prod(v[5], s, mp)
    _, r5 = step(acc[5], p, ap)
    _, p = prod(v[6], s, mp)
    _, r6 = step(acc[6], p, ap)
    _, p = prod(v[7], s, mp)
    _, r7 = step(acc[7], p, ap)
    return (r0, r1, r2, r3, r4, r5, r6, r7)


@jit
def _put(row, acc):
    """row[q] = acc[q] for the LANES lanes."""
    for q in range(LANES):
        row[q] = acc[q]


def _forward(xp, w, out, sh, sw, r0, r1, mp, ap):
    """Generic forward kernel (see :func:`conv_kernels`)."""
    c, npad = xp.shape[0], xp.shape[3]
    f, _, kh, kw = w.shape
    ho, wq = out.shape[1], out.shape[2]
    njb, nsc = wq // COLS, npad // LANES
    z = np.zeros(1, out.dtype)[0]
    for t in prange(f * ho * njb * nsc):  # COLS columns × LANES samples of one output row
        sc = t % nsc
        jb = (t // nsc) % njb
        i = (t // (nsc * njb)) % ho
        fi = t // (nsc * njb * ho)
        s0, s1 = sc * LANES, sc * LANES + LANES
        a0 = a1 = a2 = a3 = a4 = a5 = (z, z, z, z, z, z, z, z)
        for ci in range(c):
            for a in range(kh):
                r = i * sh + a
                if r < r0 or r >= r1:  # a row of padding: zero terms
                    continue
                xr = xp[ci, r]
                for b in range(kw):
                    wv = w[fi, ci, a, b]
                    col = jb * COLS * sw + b
                    a0 = lanes(a0, xr[col, s0:s1], wv, mp, ap)
                    a1 = lanes(a1, xr[col + sw, s0:s1], wv, mp, ap)
                    a2 = lanes(a2, xr[col + 2 * sw, s0:s1], wv, mp, ap)
                    a3 = lanes(a3, xr[col + 3 * sw, s0:s1], wv, mp, ap)
                    a4 = lanes(a4, xr[col + 4 * sw, s0:s1], wv, mp, ap)
                    a5 = lanes(a5, xr[col + 5 * sw, s0:s1], wv, mp, ap)
        orow = out[fi, i]
        j0 = jb * COLS
        _put(orow[j0, s0:s1], a0)
        _put(orow[j0 + 1, s0:s1], a1)
        _put(orow[j0 + 2, s0:s1], a2)
        _put(orow[j0 + 3, s0:s1], a3)
        _put(orow[j0 + 4, s0:s1], a4)
        _put(orow[j0 + 5, s0:s1], a5)


def _weight_grad(g, xp, offs, out, sh, sw, wp, mp, ap):
    """Generic weight-gradient kernel (see :func:`conv_kernels`)."""
    n, ho, wo, fp = g.shape
    nfc = fp // LANES
    z = np.zeros(1, out.dtype)[0]
    for t in prange((offs.shape[0] // TAPS) * nfc):  # TAPS taps × LANES filters
        f0 = (t % nfc) * LANES
        f1 = f0 + LANES
        e0 = (t // nfc) * TAPS
        o0, o1, o2, o3, o4 = offs[e0], offs[e0 + 1], offs[e0 + 2], offs[e0 + 3], offs[e0 + 4]
        a0 = a1 = a2 = a3 = a4 = (z, z, z, z, z, z, z, z)
        for s in range(n):
            xs = xp[s]
            for i in range(ho):
                for j in range(wo):
                    gv = g[s, i, j, f0:f1]
                    x0 = i * sh * wp + j * sw
                    a0 = lanes(a0, gv, xs[x0 + o0], mp, ap)
                    a1 = lanes(a1, gv, xs[x0 + o1], mp, ap)
                    a2 = lanes(a2, gv, xs[x0 + o2], mp, ap)
                    a3 = lanes(a3, gv, xs[x0 + o3], mp, ap)
                    a4 = lanes(a4, gv, xs[x0 + o4], mp, ap)
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

    ``forward(xp, w, out, sh, sw, r0, r1, mp, ap)``: xp (C, Hp, Wp, Np) the zero-padded input,
    batch-last, with data in rows r0..r1−1 only; w (F, C, Kh, Kw); out (F, Ho, Wq, Np), Wq a
    multiple of :data:`COLS` and Np of :data:`LANES`; out[f, i, j, n] reduces
    ``prod(xp[c, i·sh + a, j·sw + b, n], w[f, c, a, b])`` over k = (c·Kh + a)·Kw + b.
    ``weight_grad(g, xp, offs, out, sh, sw, wp, mp, ap)``: g (N, Ho, Wo, Fp) filter-last, Fp a
    multiple of LANES; xp (N, C·Hp·Wp) the zero-padded input, rows of width wp; offs (E,)
    the taps' offsets c·Hp·Wp + a·wp + b, E a multiple of :data:`TAPS`; out (E, Fp);
    out[e, f] reduces ``prod(g[n, i, j, f], xp[n, i·sh·wp + j·sw + offs[e]])`` over
    k = (n·Ho + i)·Wo + j.
    Operands are in the datapath's representation (integers at the operands' scales, as
    int64 or float64, or float32); mp/ap its product and accumulation parameters.
    """
    tag = f"cv_{ops.tag}"
    ln = specialise(_lanes, tag, False, inline=True, prod=ops.prod, step=ops.step)
    return (specialise(_forward, tag, True, slp=True, lanes=ln),
            specialise(_weight_grad, tag, True, slp=True, lanes=ln))


def _ceil(v: int, m: int) -> int:
    return -(-v // m) * m


def _padded(x: np.ndarray, scale: float, dtype: type, hp: int, wp: int, top: int, left: int,
            npad: int, batch_last: bool) -> np.ndarray:
    """``x·scale`` (N, C, H, W) in ``dtype`` inside zeros (npad, C, hp, wp), or (C, hp, wp,
    npad) when ``batch_last``, x's element (n, c, y, x) at (n, c, y + top, x + left), parts
    outside dropped (top/left may be negative: a crop)."""
    n, c, h, w = x.shape
    out = np.zeros((c, hp, wp, npad) if batch_last else (npad, c, hp, wp), dtype)
    y0, y1 = max(0, top), min(hp, h + top)
    x0, x1 = max(0, left), min(wp, w + left)
    if y0 < y1 and x0 < x1:
        src = x[:, :, y0 - top:y1 - top, x0 - left:x1 - left]
        src = src * scale if scale != 1.0 else src
        if batch_last:
            out[:, y0:y1, x0:x1, :n] = src.transpose(1, 2, 3, 0)
        else:
            out[:n, :, y0:y1, x0:x1] = src
    return out


def forward(ops: Datapath, dtype: type, x: np.ndarray, w: np.ndarray, xs: float, ws: float,
            out_hw: tuple[int, int], geo: tuple[int, int, int, int], mp: tuple,
            ap: tuple) -> np.ndarray:
    """The conv of x (N, C, H, W) with w (F, C, Kh, Kw), float64 operands scaled by xs and ws
    (powers of two) into the datapath's representation ``dtype``, at output size ``out_hw``
    and geo = (sh, sw, pt, pl) (x read at (i·sh + a − pt, j·sw + b − pl), zero outside):
    the accumulators (F, Ho, Wo, N), in ``dtype``."""
    n, h = x.shape[0], x.shape[2]
    f, _, kh, kw = w.shape
    ho, wo = out_hw
    sh, sw, pt, pl = geo
    wq, npad = _ceil(wo, COLS), _ceil(n, LANES)
    xp = _padded(x, xs, dtype, (ho - 1) * sh + kh, (wq - 1) * sw + kw, pt, pl, npad, True)
    wi = np.ascontiguousarray(w * ws if ws != 1.0 else w, dtype=dtype)
    out = np.empty((f, ho, wq, npad), dtype)
    conv_kernels(ops)[0](xp, wi, out, sh, sw, max(0, pt), min(xp.shape[1], h + pt), mp, ap)
    return out[:, :, :wo, :n]


def weight_grad(ops: Datapath, dtype: type, g: np.ndarray, x: np.ndarray, gs: float, xs: float,
                kernel: tuple[int, int], geo: tuple[int, int, int, int], mp: tuple,
                ap: tuple) -> np.ndarray:
    """The weight gradient of g (N, F, Ho, Wo) and x (N, C, H, W), float64 operands scaled
    by gs and xs into ``dtype``, for a kernel (Kh, Kw) at geo = (sh, sw, pt, pl): the
    accumulators (C, Kh, Kw, F), in ``dtype``."""
    n, f, ho, wo = g.shape
    c = x.shape[1]
    kh, kw = kernel
    sh, sw, pt, pl = geo
    hp, wp = (ho - 1) * sh + kh, (wo - 1) * sw + kw
    xp = _padded(x, xs, dtype, hp, wp, pt, pl, n, False).reshape(n, -1)
    fp = _ceil(f, LANES)
    gp = np.zeros((n, ho, wo, fp), dtype)
    gp[..., :f] = g.transpose(0, 2, 3, 1) * gs if gs != 1.0 else g.transpose(0, 2, 3, 1)
    taps = np.arange(c * kh * kw)
    offs = np.zeros(_ceil(taps.size, TAPS), np.int64)
    offs[:taps.size] = (taps // (kh * kw)) * hp * wp + (taps // kw % kh) * wp + taps % kw
    out = np.empty((offs.size, fp), dtype)
    conv_kernels(ops)[1](gp, xp, offs, out, sh, sw, wp, mp, ap)
    return out[:taps.size, :f].reshape(c, kh, kw, f)
