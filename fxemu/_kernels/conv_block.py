"""Fused emulated kernels of the reference network's conv 3×3 → +bias → ReLU → max pool 2×2 block.

One kernel source serves every datapath: :func:`fxemu._kernels.mac_fast.specialise` binds the
scalar operations of a :func:`~fxemu._kernels.mac_fast.fixed_ops` or
:func:`~fxemu._kernels.mac_fast.float_ops` datapath into a copy of it. Each operation is the
one the matmul kernel of :mod:`fxemu._kernels.mac_fast` performs, in the order
:func:`fxemu.arith.conv2d`, :func:`fxemu.arith.add`, :func:`fxemu.arith.maxpool2d` and
:func:`fxemu.arith.conv2d_grad_weight` state, so results are bit-identical to that
composition (tested):

* ``forward``: each conv output sums its 9 taps in row-major order from a zero accumulator
  (``step(acc, prod(x, w))``), then the bias add rounds ``acc + b`` into the activation format
  (``bias_step(acc, b)``); ReLU is ``numpy.maximum(v, 0)`` (−0 → +0, NaN stays NaN) and each 2×2
  window takes its first maximum in row-major order (a NaN counts as the maximum).
* ``backward``: the conv output's gradient is the pooled gradient at the argmax of a window
  whose pooled value is > 0 and +0 everywhere else (ReLU'(0) = 0). Each weight reduces
  ``g·x`` over (n, i, j) in row-major order, the bias ``g·1``; the +0 terms are skipped,
  which leaves a fixed accumulator unchanged and a float one too while it is finite and not
  −0 (a +0 product added to −0 gives +0). A filter whose accumulator ever leaves that domain
  is redone over every term. (Rounded toward −inf, (+0) + (−0) is −0: there the caller
  takes this path only when no image element has its sign bit set, so that every skipped
  product +0·x is +0.)

``prange`` runs over samples (forward) and filters (backward): each writes its own outputs,
so results do not depend on the thread count.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import prange

from .mac_fast import Datapath, specialise

# The generic kernels below call these names; each specialisation binds them in its own
# globals (see :func:`fxemu._kernels.mac_fast.specialise`).
prod = prod_slow = step = step_slow = unsafe = bias_step = bias_slow = add_terms = None


def _forward(x, w, b, h, arg, mp, ap, bp, vecs, vscale, nonfinite):
    """Generic forward kernel (see :func:`forward`)."""
    mulvec, accvec, actvec, key = vecs
    n, hh, ww = x.shape
    f = w.shape[0]
    ho, wo = hh - 2, ww - 2
    for s in prange(n):
        acc = np.empty((2, wo), x.dtype)
        zv = np.empty((2, wo), np.float64)
        bad = 0
        for c in range(f):
            bc = b[c]
            for pi in range(ho // 2):
                for r in range(2):
                    row = 2 * pi + r
                    for j in range(wo):
                        acc[r, j] = 0
                    for t in range(9):
                        wk = w[c, t]
                        dy, dx = t // 3, t % 3
                        for j in range(wo):
                            ok, p = prod(x[s, row + dy, j + dx], wk, mp)
                            if not ok:
                                p = prod_slow(p, mulvec, key)
                            ok, v = step(acc[r, j], p, ap)
                            if not ok:
                                v = step_slow(acc[r, j], p, accvec, key)
                            acc[r, j] = v
                    for j in range(wo):
                        a = acc[r, j]
                        if not np.isfinite(np.float64(a)):
                            bad += 1
                        ok, z = bias_step(a, bc, bp)
                        if not ok:
                            z = bias_slow(a, bc, actvec, key)
                        v = np.float64(z) * vscale
                        zv[r, j] = v if (v > 0.0 or np.isnan(v)) else 0.0
                for pj in range(wo // 2):
                    best = zv[0, 2 * pj]
                    bi = 0
                    for k in range(1, 4):
                        v = zv[k // 2, 2 * pj + k % 2]
                        if (v > best) or (np.isnan(v) and not np.isnan(best)):
                            best = v
                            bi = k
                    h[s, c, pi, pj] = best
                    arg[s, c, pi, pj] = bi
        nonfinite[s] = bad


@functools.cache
def forward(conv: Datapath, bias: Datapath):
    """The fused forward kernel for the ``conv`` datapath (the conv Mac's) and the ``bias``
    one (its ``step`` rounds into the activation format).

    ``kernel(x, w, b, h, arg, mp, ap, bp, vecs, vscale, nonfinite)``: images x (N, H, W),
    taps w (F, 9) and biases b (F,) in the datapath's representation; h (N, F, (H-2)/2,
    (W-2)/2) gets the pooled values (doubles: representation × vscale), arg the row-major
    index in its window of each maximum; mp/ap/bp are the product, accumulation and bias-add
    parameters, vecs = (mul, acc, activation format vectors, key) those of the slow paths;
    nonfinite[n] counts sample n's conv sums that are not finite (inf/NaN: the caller then
    uses the composition, whose bias add handles them)."""
    return specialise(_forward, f"{conv.tag}_{bias.tag}", True, prod=conv.prod,
                       prod_slow=conv.prod_slow, step=conv.step, step_slow=conv.step_slow,
                       bias_step=bias.step, bias_slow=bias.step_slow)


def _add_terms(a, gv, xs, i, j, one, mpw, mpb, apw, apb, vecs):
    """Add one conv output's 10 terms to the accumulators; True if one became unsafe."""
    mulvec, accvec, key = vecs
    bad = False
    for t in range(10):
        if t < 9:
            ok, p = prod(gv, xs[i + t // 3, j + t % 3], mpw)
        else:
            ok, p = prod(gv, one, mpb)
        if not ok:
            p = prod_slow(p, mulvec, key)
        ok, v = step(a[t], p, apw if t < 9 else apb)
        if not ok:
            v = step_slow(a[t], p, accvec, key)
        a[t] = v
        bad |= unsafe(v)
    return bad


def _backward(x, h, arg, g, one, out, mpw, mpb, apw, apb, vecs):
    """Generic weight-gradient kernel (see :func:`backward`)."""
    n, f, po, qo = g.shape
    for c in prange(f):
        a = np.zeros(10, out.dtype)
        bad = False
        for s in range(n):
            for pi in range(po):
                for r in range(2):
                    for pj in range(qo):
                        k = arg[s, c, pi, pj]
                        if k // 2 == r and h[s, c, pi, pj] > 0.0:
                            bad |= add_terms(a, g[s, c, pi, pj], x[s], 2 * pi + r,
                                             2 * pj + k % 2, one, mpw, mpb, apw, apb, vecs)
        if bad:  # every term, the skipped +0 ones included
            a[:] = 0
            zero = a[0]
            for s in range(n):
                for i in range(2 * po):
                    for j in range(2 * qo):
                        pi, pj = i // 2, j // 2
                        live = (arg[s, c, pi, pj] == 2 * (i % 2) + j % 2
                                and h[s, c, pi, pj] > 0.0)
                        add_terms(a, g[s, c, pi, pj] if live else zero, x[s], i, j, one, mpw,
                                  mpb, apw, apb, vecs)
        for t in range(10):
            out[c, t] = a[t]


@functools.cache
def backward(ops: Datapath):
    """The fused weight-gradient kernel for the ``ops`` datapath (the conv_dw Mac's).

    ``kernel(x, h, arg, g, one, out, mpw, mpb, apw, apb, vecs)``: images x (N, H, W), the
    forward's pooled values h and argmax arg and the pooled gradient g (N, F, (H-2)/2,
    (W-2)/2) in the datapath's representation; ``one`` is 1 in it. out (F, 10) gets the
    accumulators: lanes 0..8 the taps in row-major order (products ``g·x``, mpw/apw), lane 9
    the bias (``g·one``, mpb/apb); vecs = (mul, acc format vectors, key)."""
    terms = specialise(_add_terms, ops.tag, False, True, prod=ops.prod, prod_slow=ops.prod_slow,
                        step=ops.step, step_slow=ops.step_slow, unsafe=ops.unsafe)
    return specialise(_backward, ops.tag, True, add_terms=terms)
