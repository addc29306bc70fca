"""The reference network's conv 3×3 → +bias → ReLU → 2×2 max pool block, fused, bit-exact.

:func:`conv_relu_pool` and :func:`conv_relu_pool_grad` give exactly what the composition of
:mod:`fxemu.arith` gives (tested bit for bit), without forming the N×F×26×26 conv output or
its gradient::

    z = add(conv2d(x, w, mac), b[None, :, None, None], act)
    h, arg = maxpool2d(numpy.maximum(z, 0), 2)
    dz = maxpool2d_backward(numpy.where(h > 0, g, 0), arg, z.shape)     # = dh where z > 0
    dw, db = conv2d_grad_weight(x, dz, (3, 3), mac), sum of dz over (n, i, j) through mac

They cover the datapaths the fast matmul kernels of :mod:`fxemu.arith` cover: sequential Macs
without an ``out`` format whose products, accumulations and bias add run in int64 (fixed
formats; every intermediate within 62 bits) or in doubles (float formats with products exact
in double, an activation format with subnormals), operands finite. Elsewhere they return
None and the caller composes the :mod:`fxemu.arith` operations. Operands are float64 arrays
holding values of their formats; nothing here is stochastic (stochastic formats return None).

Within the fixed datapaths, sums that provably never round or leave the accumulator's range
(no mul format, products on the acc grid, ``9·max|x|·max|w|`` or ``sum|g|·max|x|`` inside it)
are plain integer additions; IEEE float32 accumulators round each step by the hardware
conversion (:func:`fxemu._kernels.mac_fast.float32_step`), and a result with inf/NaN then
returns None.
"""

from __future__ import annotations

import numpy as np

from .. import lowering as lw
from .._errors import msg
from .._kernels import mac_fast as _kmf
from ..arith import daz, to_int
from ..formats import Fixed, Float, FloatRounding, Mac
from ._kernels import conv_block as _kc

__all__ = ["conv_relu_pool", "conv_relu_pool_grad"]

_ONE = np.ones(1)
_NO_VECS = (*_kmf.NO_VECS[:2], *_kmf.NO_VECS[1:])  # (mul, acc, activation vectors, key)


def _shapes(x: np.ndarray, w_or_h: np.ndarray, what: str) -> tuple[int, int, int, int]:
    """(N, F, H, W) of images x (N, 1, H, W) with an even conv output H-2, W-2."""
    n, c, hh, ww = x.shape if x.ndim == 4 else (0, 0, 0, 0)
    f = w_or_h.shape[0 if what == "w" else 1] if w_or_h.ndim == 4 else 0
    if x.ndim != 4 or c != 1 or hh < 4 or ww < 4 or hh % 2 or ww % 2 or f < 1:
        raise ValueError(msg("conv_block", "needs images x (N, 1, H, W) with H, W even and >= 4",
                             x.shape))
    return n, f, hh, ww


def _kmf_span(x: np.ndarray) -> tuple:
    return _kmf.span(x.reshape(-1).view(np.uint64))


def _plain(x: object) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float64)


def conv_relu_pool(x: np.ndarray, w: np.ndarray, b: np.ndarray, mac: Mac,
                   act: Fixed | Float) -> tuple[np.ndarray, np.ndarray] | None:
    """Pooled activations h (N, F, (H-2)/2, (W-2)/2) and argmax (the row-major index in each
    window of its first maximum, int64) of images x (N, 1, H, W) under weights w (F, 1, 3, 3)
    through ``mac`` and biases b (F,) added with one rounding into ``act``; None outside the
    fused datapaths (see the module docstring)."""
    x, w, b = _plain(x), _plain(w), _plain(b)
    n, f, hh, ww = _shapes(x, w, "w")
    if w.shape != (f, 1, 3, 3) or b.shape != (f,):
        raise ValueError(msg("conv_relu_pool", "needs w (F, 1, 3, 3) and b (F,)",
                             f"{w.shape}, {b.shape}"))
    if mac.out is not None or mac.order != "sequential" or mac.block:
        return None
    if isinstance(mac.acc, Fixed) and isinstance(act, Fixed):
        args = _fixed_forward(x, w, b, mac, act)
    elif isinstance(mac.acc, Float) and isinstance(act, Float):
        args = _float_forward(x, w, b, mac, act)
    else:
        return None
    if args is None:
        return None
    kernel, xs, ws, bs, mp, ap, bp, vecs, vscale = args
    h = np.empty((n, f, (hh - 2) // 2, (ww - 2) // 2))
    arg = np.empty(h.shape, np.int64)
    nonfinite = np.empty(n, np.int64)
    kernel(xs.reshape(n, hh, ww), ws.reshape(f, 9), bs, h, arg, mp, ap, bp, vecs, vscale,
           nonfinite)
    return None if nonfinite.any() else (h, arg)


def _fixed_forward(x, w, b, mac: Mac, act: Fixed) -> tuple | None:
    fx, bx, bad_x = lw.int_span(_kmf_span(x))
    fw, bw, bad_w = lw.int_span(_kmf_span(w))
    fb, bb, bad_b = lw.int_span(_kmf_span(b))
    path = None if bad_x or bad_w or bad_b else lw.int_path(mac, fx, bx, fw, bw)
    if path is None or not lw.fast_fixed_mode(act) or act.width > 53 or fb > 1000:
        return None
    pm, ap, modes = path
    # the bias add: t = acc·2^shz + b·2^shb at scale fc, rounded by d bits into act
    acc = mac.acc
    fc = max(acc.frac_bits, fb)
    shz, shb, d = fc - acc.frac_bits, fc - fb, fc - act.frac_bits
    if max(acc.width + shz, bb + shb) + 1 + max(-d, 0) > 62:
        return None
    bp = (np.int64(shz), np.int64(shb), np.int64(d), *lw.int_limits(act))
    xi, wi = to_int(x, fx), to_int(w, fw)
    # every partial sum of a conv output is at most 9·max|x|·max|w| in magnitude
    exact = _exact_sums(mac, ap, 9.0 * _absmax(xi) * _absmax(wi))
    bias = _kmf.fixed_ops(False, 0, 0, lw.FIXED_ROUNDING[act.rounding],
                          lw.FIXED_OVERFLOW[act.overflow])
    kernel = _kc.forward(_kmf.fixed_ops(mac.mul is not None, *modes, exact), bias)
    return kernel, xi, wi, to_int(b, fb), pm, ap, bp, _NO_VECS, 2.0**-act.frac_bits


def _absmax(a: np.ndarray) -> float:
    return float(np.abs(a).max(initial=0))


def _exact_sums(mac: Mac, ap: tuple, *bounds: float) -> bool:
    """True if the integer steps with parameters ap (:func:`fxemu.lowering.int_path`) never
    round (no mul format, products on the acc grid: sh_acc = 0) and partial sums bounded by
    ``bounds`` (in product units, before the shift by sh_p) never leave the accumulator's
    range: then every step is a plain integer addition."""
    sh_acc, sh_p, _, lo, hi = (int(v) for v in ap[:5])
    limit = min(hi, -lo)
    return (mac.mul is None and sh_acc == 0 and limit > 0
            and all(b * 2.0**sh_p * (1 + 2.0**-40) < limit for b in bounds))


def _float_forward(x, w, b, mac: Mac, act: Float) -> tuple | None:
    first = mac.mul if mac.mul is not None else mac.acc
    x, w = daz(x, first), daz(w, first)
    bits, key = lw.sr_key(mac.acc, None, None)
    path = lw.float_path(mac, lw.float_span(_kmf_span(x)), lw.float_span(_kmf_span(w)), bits)
    if path is None or not lw.fast_float_fmt(act, 50) or not act.subnormals \
            or lw.float_span(_kmf_span(b))[3]:
        return None
    mp, ap, mulvec, accvec, modes = path
    bp = (np.int64(52 - act.man_bits), *lw.float_bounds(act))
    kernel = _kc.forward(_kmf.float_ops(mac.mul is not None, *modes),
                         _kmf.float_ops(False, 0, lw.FLOAT_ROUNDING[act.rounding]))
    return kernel, x, w, b, mp, ap, bp, (mulvec, accvec, lw.slow_vec(act, bits), key), 1.0


def conv_relu_pool_grad(x: np.ndarray, h: np.ndarray, arg: np.ndarray, g: np.ndarray,
                        mac: Mac) -> tuple[np.ndarray, np.ndarray] | None:
    """(dW (F, 1, 3, 3), db (F,)) through ``mac`` (its accumulators, unrounded) from images x
    (N, 1, H, W), the forward's h and arg and the pooled gradient g (N, F, (H-2)/2, (W-2)/2)
    as the datapath holds it (g is read only where h > 0); None outside the fused datapaths.
    """
    x, h, g = _plain(x), _plain(h), _plain(g)
    arg = np.ascontiguousarray(arg, dtype=np.int64)
    n, f, hh, ww = _shapes(x, h, "h")
    pooled = (n, f, (hh - 2) // 2, (ww - 2) // 2)
    if h.shape != pooled or arg.shape != pooled or g.shape != pooled:
        raise ValueError(msg("conv_relu_pool_grad", f"needs h, arg and g of shape {pooled}",
                             f"{h.shape}, {arg.shape}, {g.shape}"))
    if arg.size and (arg.min() < 0 or arg.max() > 3):
        raise ValueError(msg("conv_relu_pool_grad", "argmax must be in 0..3",
                             f"{arg.min()}..{arg.max()}"))
    if mac.out is not None or mac.order != "sequential" or mac.block:
        return None
    g = np.where(h > 0.0, g, 0.0)  # the gradient the conv output gets; +0 elsewhere
    if isinstance(mac.acc, Fixed):
        fg, bg, bad_g = lw.int_span(_kmf_span(g))
        fx, bx, bad_x = lw.int_span(_kmf_span(x))
        f1, b1, _ = lw.int_span(_kmf_span(_ONE))
        pw = None if bad_g or bad_x else lw.int_path(mac, fg, bg, fx, bx)
        pb = lw.int_path(mac, fg, bg, f1, b1)
        if pw is None or pb is None:
            return None
        xi, gi = to_int(x, fx), to_int(g, fg)
        # a lane's partial sums are at most sum|g|·max|x| (taps) and sum|g| (bias)
        tot = float(np.abs(gi).sum(dtype=np.float64))
        exact = _exact_sums(mac, pw[1], tot * _absmax(xi)) and _exact_sums(mac, pb[1], tot)
        kernel = _kc.backward(_kmf.fixed_ops(mac.mul is not None, *pw[2], exact))
        out = np.empty((f, 10), np.int64)
        kernel(xi.reshape(n, hh, ww), h, arg, gi, np.int64(1), out, pw[0], pb[0], pw[1], pb[1],
               _kmf.NO_VECS)
        res = out * 2.0**-mac.acc.frac_bits
    elif isinstance(mac.acc, Float):
        first = mac.mul if mac.mul is not None else mac.acc
        x, g = daz(x, first), daz(g, first)
        if mac.acc.rounding is FloatRounding.RDN and np.signbit(x).any():
            # a skipped term +0·x is -0 where x has its sign bit set, and rounded toward -inf
            # (+0) + (-0) is -0: the skip is exact only when every skipped term is +0
            return None
        bits, key = lw.sr_key(mac.acc, None, None)
        sg = lw.float_span(_kmf_span(g))
        pw = lw.float_path(mac, sg, lw.float_span(_kmf_span(x)), bits)
        pb = lw.float_path(mac, sg, lw.float_span(_kmf_span(_ONE)), bits)
        if pw is None or pb is None:
            return None
        kernel = _kc.backward(_kmf.float_ops(mac.mul is not None, *pw[4]))
        res = np.empty((f, 10))
        kernel(x.reshape(n, hh, ww), h, arg, g, 1.0, res, pw[0], pb[0], pw[1], pb[1],
               (pw[2], pw[3], key))
        if not np.isfinite(res).all():  # inf/NaN: the engine's codes, from the composition
            return None
    else:
        return None
    return np.ascontiguousarray(res[:, :9]).reshape(f, 1, 3, 3), res[:, 9].copy()
