"""Fused emulated kernels of the reference network's conv 3×3 → +bias → ReLU → max pool 2×2 block.

One kernel source serves every datapath: it is specialised by the scalar operations of a
:func:`fixed_ops` (int64 operands at a common scale, :func:`fxemu._kernels.mac_fast.int_step`)
or :func:`float_ops` (doubles, :func:`~fxemu._kernels.mac_fast.float_acc`) datapath, passed in
as closure constants. Each operation is the one the matmul kernels of
:mod:`fxemu._kernels.mac_fast` perform, in the order :func:`fxemu.arith.conv2d`,
:func:`fxemu.arith.add`, :func:`fxemu.arith.maxpool2d` and
:func:`fxemu.arith.conv2d_grad_weight` state, so results are bit-identical to that
composition (tested):

* ``forward``: each conv output sums its 9 taps in row-major order from a zero accumulator
  (``step(acc, prod(x, w))``), then the bias add rounds ``acc + b`` into the activation format
  (``bias(acc, b)``); ReLU is ``numpy.maximum(v, 0)`` (−0 → +0, NaN stays NaN) and each 2×2
  window takes its first maximum in row-major order (a NaN counts as the maximum).
* ``backward``: the conv output's gradient is the pooled gradient at the argmax of a window
  whose pooled value is > 0 and +0 everywhere else (ReLU'(0) = 0). Each weight reduces
  ``g·x`` over (n, i, j) in row-major order, the bias ``g·1``; the +0 terms are skipped,
  which leaves a fixed accumulator unchanged and a float one too while it is finite and not
  −0 (a +0 product added to −0 gives +0). A filter whose accumulator ever leaves that domain
  is redone over every term.

``prange`` runs over samples (forward) and filters (backward): each writes its own outputs,
so results do not depend on the thread count.
"""

from __future__ import annotations

import functools
import types as pytypes
from typing import NamedTuple

import numba
import numpy as np
from numba import prange

from ._jit import bits_f64, f64_bits, jit, pjit
from .convert import float_fast_element
from .fmt import code_value, value_code
from .mac_fast import (
    _slow_add,
    float32_step,
    float_step,
    int_overflow,
    int_round_shift,
    int_step,
)


class Datapath(NamedTuple):
    """The scalar operations of one datapath (jitted). ``prod(a, b, mp)`` and
    ``step(acc, p, ap)`` take scalar parameters only and return (ok, value); where ok is False
    the kernel calls ``prod_slow(p, mulvec, key)`` on the exact product or
    ``step_slow(acc, p, accvec, key)`` (the exact engine on a format vector): arrays reach a
    helper only on that rare path, as passing one costs a reference count per call.
    ``unsafe(acc)``: an accumulator that adding a +0 term could change."""

    prod: object
    prod_slow: object
    step: object
    step_slow: object
    unsafe: object
    tag: str


# The generic kernels below call these names; each specialisation binds them in its own
# globals (see _specialise: a closure over jitted functions would never load from Numba's
# on-disk cache, as their pickles differ from process to process).
prod = prod_slow = step = step_slow = unsafe = bias_step = bias_slow = add_terms = None


def _named(fn, tag: str):
    """Jit ``fn`` (a closure over plain constants) under a qualname carrying them, so its
    on-disk cache entries are distinct."""
    fn.__qualname__ = f"{fn.__name__}_{tag}"
    return jit(fn)


def _specialise(fn, tag: str, parallel: bool, inline: bool = False, **helpers):
    """Jit a copy of the generic ``fn`` whose globals bind ``helpers`` (the datapath's
    jitted operations), under a qualname carrying ``tag`` (``inline``: into its callers, at
    Numba's IR level)."""
    env = dict(fn.__globals__)
    env.update(helpers)
    new = pytypes.FunctionType(fn.__code__, env, fn.__name__, fn.__defaults__, fn.__closure__)
    new.__qualname__ = f"{fn.__name__}_{tag}"
    new.__module__ = fn.__module__
    new.__doc__ = fn.__doc__
    if inline:
        return numba.njit(cache=True, fastmath=False, nogil=True, inline="always")(new)
    return pjit(new) if parallel else jit(new)


@functools.cache
def fixed_ops(use_mul: bool, mq: int, mo: int, q: int, o: int, exact: bool = False) -> Datapath:
    """An integer datapath: ``prod`` rounds the integer product into the mul format when
    ``use_mul`` (mp = (d_mul, lo, hi, off, wmask), as :func:`int_round_shift` and
    :func:`int_overflow`), ``step`` is :func:`int_step` (ap = (sh_acc, sh_p, d, lo, hi, off,
    wmask)); both are always ok, and adding an integer zero never changes an accumulator.

    ``exact``: the caller proved that no step rounds (sh_acc = d = 0) or leaves the
    accumulator's range, so ``step`` is the plain sum ``acc + (p << sh_p)``.
    """
    tag = f"fx_{int(use_mul)}_{mq}_{mo}_{q}_{o}_{int(exact)}"

    def prod(a, b, mp):
        p = a * b
        if use_mul:
            p = int_overflow(int_round_shift(p, mp[0], mq), mo, mp[1], mp[2], mp[3], mp[4])
        return True, p

    def prod_slow(p, vec, key):
        return p

    def step(acc, p, ap):
        if exact:
            return True, acc + (p << ap[1])
        return True, int_step(acc, p, ap[0], ap[1], ap[2], q, o, ap[3], ap[4], ap[5], ap[6])

    def step_slow(acc, p, vec, key):
        return acc

    def unsafe(acc):
        return False

    return Datapath(_named(prod, tag), _named(prod_slow, tag), _named(step, tag),
                    _named(step_slow, tag), _named(unsafe, tag), tag)


@functools.cache
def float_ops(use_mul: bool, mq: int, q: int, hw32: bool = False) -> Datapath:
    """A double datapath: ``prod`` is the exact product, rounded into the mul format when
    ``use_mul`` by :func:`float_fast_element` (mp = (52 - mul mantissa bits, its fast
    bounds)); ``step`` is :func:`float_step` (ap likewise for acc); the slow paths are the
    exact engine. ``unsafe(acc)``: an accumulator a +0 term could change (−0) or not finite.

    ``hw32`` (an IEEE float32 accumulator rounding to nearest even, with subnormals and
    overflow to inf): ``step`` is :func:`float32_step`, always ok and branch-free.
    """
    tag = f"fl_{int(use_mul)}_{mq}_{q}_{int(hw32)}"

    def prod(a, b, mp):
        p = a * b
        if use_mul:
            ok, sgn, rb = float_fast_element(f64_bits(p), mp[0], mq, mp[1], mp[2])
            return ok, (bits_f64(sgn | rb) if ok else p)
        return True, p

    def prod_slow(p, vec, key):
        return code_value(vec, value_code(vec, f64_bits(p), key, 0), 0.0)

    def step(acc, p, ap):
        if hw32:
            return True, float32_step(acc, p)
        return float_step(acc, p, ap[0], q, ap[1], ap[2])

    def step_slow(acc, p, vec, key):
        return _slow_add(vec, acc, p, key)

    def unsafe(acc):
        return (not np.isfinite(acc)) or (acc == 0.0 and (f64_bits(acc) >> np.uint64(63)) != 0)

    return Datapath(_named(prod, tag), _named(prod_slow, tag), _named(step, tag),
                    _named(step_slow, tag), _named(unsafe, tag), tag)


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
    return _specialise(_forward, f"{conv.tag}_{bias.tag}", True, prod=conv.prod,
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
    terms = _specialise(_add_terms, ops.tag, False, True, prod=ops.prod, prod_slow=ops.prod_slow,
                        step=ops.step, step_slow=ops.step_slow, unsafe=ops.unsafe)
    return _specialise(_backward, ops.tag, True, add_terms=terms)
