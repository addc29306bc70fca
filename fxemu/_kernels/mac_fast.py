"""Fast MAC kernels for the common datapaths; each is exact and equal to :mod:`mac` (tested).

* Fixed: operands are integers at their array's finest scale; products, product rounding and
  accumulation run in int64 (the API checks that every intermediate fits in 62 bits).
* Float: products that are exact in double (the API checks the operands' significant bits and
  range); each ``acc + p`` is TwoSum-exact, folded into one double by round-to-odd (exact for
  the final rounding when the accumulator keeps at most 50 mantissa bits), then rounded by
  integer addition on the bit pattern (an IEEE float32 accumulator: by the hardware
  conversion). Results outside the fast domain (subnormal, overflow) are redone by the exact
  engine.

A :class:`Datapath` holds one datapath's scalar operations (:func:`fixed_ops`,
:func:`float_ops`); :func:`specialise` binds them into a copy of a generic kernel, so one
kernel source serves every datapath (:func:`matmul_fast` here, the fused conv block in
:mod:`fxemu.nn._kernels.conv_block`). The matmul loops over k outermost and over the output
columns j innermost, so one k step updates a row of accumulators; threads take tiles of
rows × columns.
"""

from __future__ import annotations

import functools
import types as pytypes
from typing import NamedTuple

import numpy as np
from numba import prange

from ._jit import bits_f64, f64_bits, jit, jit_inline, pjit
from .codes import (
    CEIL,
    FLOOR,
    HALF_AWAY,
    HALF_DOWN,
    HALF_EVEN,
    HALF_UP,
    HALF_ZERO,
    O_SAT,
    O_SAT_SYM,
    O_SAT_ZERO,
    ORDER_CHUNK,
    ORDER_SEQUENTIAL,
    TO_ZERO,
)
from .convert import float_fast_element
from .exact import from_double, zero_sum_neg
from .fmt import code_value, value_code
from .mac import _add_nodes
from .params import NO_VEC

_U0 = np.uint64(0)
_U1 = np.uint64(1)
#: the slow-path slots (mul and acc format vectors, key) of an integer datapath: never read.
#: Format vectors reach these kernels as int64 arrays (:func:`fxemu.lowering.slow_vec`): Numba's
#: parfor lowering cannot take tuples nested in a tuple argument into a prange loop.
NO_VECS = (np.array(NO_VEC, np.int64), np.array(NO_VEC, np.int64), np.uint64(0))
_ROWS = 64  # rows per parallel tile (scratch is reused within a tile)
_COLS = 512  # columns per parallel tile: a few rows of many outputs still fill the threads


@jit
def _tile(blk, cb, m, nn):
    """Rows i0..i1 and columns j0..j1 of parallel tile ``blk`` of an (m, nn) output with
    ``cb`` column tiles per band of rows."""
    i0, j0 = (blk // cb) * _ROWS, (blk % cb) * _COLS
    return i0, min(m, i0 + _ROWS), j0, min(nn, j0 + _COLS)


@jit
def int_round_shift(t, d, qmode):
    """``t·2^-d`` rounded to an integer by ``qmode`` (signed-floor rules; d >= 0)."""
    if d <= 0:
        return t << np.int64(-d)
    fl = t >> np.int64(d)
    r = t - (fl << np.int64(d))
    half = np.int64(1) << np.int64(d - 1)
    if qmode == FLOOR:
        up = False
    elif qmode == CEIL:
        up = r > 0
    elif qmode == TO_ZERO:
        up = (r > 0) & (t < 0)
    elif qmode == HALF_UP:
        up = r >= half
    elif qmode == HALF_DOWN:
        up = r > half
    elif qmode == HALF_ZERO:
        up = (r > half) | ((r == half) & (t < 0))
    elif qmode == HALF_AWAY:
        up = (r > half) | ((r == half) & (t > 0))
    elif qmode == HALF_EVEN:
        up = (r > half) | ((r == half) & ((fl & 1) == 1))
    else:  # HALF_ODD
        up = (r > half) | ((r == half) & ((fl & 1) == 0))
    return fl + np.int64(up)


@jit
def int_overflow(v, omode, lo, hi, off, wmask):
    """Apply a fixed overflow mode to the integer ``v`` (limits ``lo``/``hi``)."""
    if omode == O_SAT or omode == O_SAT_SYM:
        return min(max(v, lo), hi)
    if omode == O_SAT_ZERO:
        return v if (v >= lo) & (v <= hi) else np.int64(0)
    return ((v + off) & wmask) - off


@jit
def int_step(acc, p, sh_acc, sh_p, d, qmode, omode, lo, hi, off, wmask):
    """One accumulation ``R_acc(acc + p)`` with acc at scale F_acc and p at scale F_p:
    common scale F_c = F_acc + d; sh_acc = d, sh_p = F_c - F_p."""
    t = (acc << np.int64(sh_acc)) + (p << np.int64(sh_p))
    return int_overflow(int_round_shift(t, d, qmode), omode, lo, hi, off, wmask)


@jit
def float_step(acc, p, k, qmode, minnorm, maxbits):
    """``R_acc(acc + p)`` for doubles holding acc-format values, fast domain only.

    Returns (ok, result). TwoSum gives s + err exactly; round-to-odd folds err into s's last
    bit; rounding that to 52 - k <= 50 mantissa bits is the correct rounding of acc + p.
    """
    s = acc + p
    bb = s - acc
    err = (acc - (s - bb)) + (p - bb)
    sb = f64_bits(s)
    if err != 0.0 and (sb & _U1) == _U0:
        if (err > 0.0) == (s > 0.0):
            sb += _U1
        else:
            sb -= _U1
    ok, sign, r = float_fast_element(sb, k, qmode, minnorm, maxbits)
    if s == 0.0:
        # an exact zero sum (a double sum never underflows to 0): IEEE 754 §6.3. The double
        # sum's sign (+0 unless both are -0) is the round-to-nearest one; rdn makes it -0
        # unless both are +0.
        if qmode == FLOOR and zero_sum_neg(f64_bits(acc) >> np.uint64(63) != _U0,
                                           f64_bits(p) >> np.uint64(63) != _U0, True):
            return ok, -0.0
        return ok, s
    return ok, bits_f64(sign | r)


@jit
def float32_step(acc, p):
    """``R(acc + p)`` into IEEE float32, round to nearest even, for doubles whose sum does not
    overflow double: TwoSum gives the exact error, round-to-odd folds it into the last bit of
    the double sum (53 ≥ 24 + 2 bits, so one more rounding is the correct one, subnormal
    results included) and the hardware conversion rounds that to float32 (inf beyond its
    range). A zero sum keeps IEEE's sign (+0 unless both are −0)."""
    s = acc + p
    bb = s - acc
    err = (acc - (s - bb)) + (p - bb)
    sb = f64_bits(s)
    odd = (err != 0.0) & ((sb & _U1) == _U0)
    toward = (err > 0.0) == (s > 0.0)  # err pushes |s| up: the next double away from zero
    sb = sb + np.uint64(odd & toward) - np.uint64(odd & (not toward))
    return np.float64(np.float32(bits_f64(sb)))


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


# The generic kernels call these names; each specialisation binds them in its own globals (see
# specialise: a closure over jitted functions would never load from Numba's on-disk cache,
# as their pickles differ from process to process).
prod = prod_slow = step = step_slow = order = flush = None


def _named(fn, tag: str):
    """Jit ``fn`` (a closure over plain constants) under a qualname carrying them, so its
    on-disk cache entries are distinct."""
    fn.__qualname__ = f"{fn.__name__}_{tag}"
    return jit(fn)


def specialise(fn, tag: str, parallel: bool, inline: bool = False, slp: bool = False,
               **helpers):
    """Jit a copy of the generic ``fn`` whose globals bind ``helpers`` (the datapath's
    jitted operations, or constants, which Numba freezes into the code), under a qualname
    carrying ``tag`` (``inline``: into its callers, at Numba's IR level; ``slp``: with LLVM's
    SLP vectoriser, see :func:`fxemu._kernels._jit.pjit`)."""
    env = dict(fn.__globals__)
    env.update(helpers)
    new = pytypes.FunctionType(fn.__code__, env, fn.__name__, fn.__defaults__, fn.__closure__)
    new.__qualname__ = f"{fn.__name__}_{tag}"
    new.__module__ = fn.__module__
    new.__doc__ = fn.__doc__
    if inline:
        return jit_inline(new)
    return pjit(new, slp) if parallel else jit(new)


@jit
def _prod_ok(p, vec, key):
    """The slow product of a datapath whose ``prod`` is always ok (never called)."""
    return p


@jit
def _step_ok(acc, p, vec, key):
    """The slow step of a datapath whose ``step`` is always ok (never called)."""
    return acc


@jit
def _never_unsafe(acc):
    """``unsafe`` of a datapath that no +0 term can change."""
    return False


def _datapath(tag: str, prod, step, prod_slow=None, step_slow=None, unsafe=None) -> Datapath:
    """The Datapath of the closures ``prod`` and ``step`` (and, where given, their slow paths
    and ``unsafe``), each jitted under ``tag``; omitted ones are the always-ok datapath's."""
    return Datapath(_named(prod, tag), _prod_ok if prod_slow is None else _named(prod_slow, tag),
                    _named(step, tag), _step_ok if step_slow is None else _named(step_slow, tag),
                    _never_unsafe if unsafe is None else _named(unsafe, tag), tag)


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

    def step(acc, p, ap):
        if exact:
            return True, acc + (p << ap[1])
        return True, int_step(acc, p, ap[0], ap[1], ap[2], q, o, ap[3], ap[4], ap[5], ap[6])

    return _datapath(tag, prod, step)


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

    return _datapath(tag, prod, step, prod_slow=prod_slow, step_slow=step_slow, unsafe=unsafe)


@functools.cache
def fixed_f64_ops(o: int, exact: bool = False) -> Datapath:
    """The integer datapath of :func:`fixed_ops` without a mul format and with products on the
    accumulator's grid (no rounding anywhere), on doubles holding the integers: ``prod`` is
    a·b, ``step`` the overflow mode ``o`` (saturating or to zero; not wrap) applied to
    ``acc + p·2^sh_p`` (ap = (2^sh_p, lo, hi)). Exact, and equal to :func:`fixed_ops`, when
    the caller proved every product·2^sh_p and every accumulator below 2^52 in magnitude
    (:func:`fxemu.lowering.direct_path`); vectorises where int64 products do not.

    ``exact``: the caller proved that no partial sum leaves [lo, hi], so the overflow mode
    never acts and ``step`` is the plain sum."""
    tag = f"ff_{o}_{int(exact)}"

    def prod(a, b, mp):
        return True, a * b

    def step(acc, p, ap):
        v = acc + p * ap[0]
        if exact:
            return True, v
        if o == O_SAT_ZERO:
            return True, v if (v >= ap[1]) & (v <= ap[2]) else 0.0
        return True, min(max(v, ap[1]), ap[2])

    return _datapath(tag, prod, step)


@functools.cache
def f32_ops() -> Datapath:
    """Plain IEEE float32 arithmetic on float32 operands: ``prod`` is the float32 product,
    ``step`` the float32 sum (round to nearest even, subnormals, overflow to inf); both always
    ok. Bit-exact for a Mac with an IEEE float32 accumulator and no mul format only when the
    caller proved every product exact in float32 (:func:`fxemu.lowering.float32_exact`):
    then each step is ``R_f32(acc + a·b)``, and a fused multiply-add would give the same.
    ``unsafe(acc)`` as :func:`float_ops`."""
    tag = "f32"

    def prod(a, b, mp):
        return True, a * b

    def step(acc, p, ap):
        return True, acc + p

    def unsafe(acc):
        return (not np.isfinite(acc)) or (acc == 0.0 and np.signbit(acc))

    return _datapath(tag, prod, step, unsafe=unsafe)


def _flush(acc, part, ap, accvec, key):
    """acc += part (one accumulation step each), part = 0: a chunk's sums join the totals."""
    for j in range(acc.shape[0]):
        ok, v = step(acc[j], part[j], ap)
        if not ok:
            v = step_slow(acc[j], part[j], accvec, key)
        acc[j] = v
        part[j] = 0


def _matmul(a, b, out, chunk, mp, ap, apc, vecs):
    """Generic matmul kernel (see :func:`matmul_fast`)."""
    mulvec, accvec, key = vecs
    m, kk = a.shape
    nn = b.shape[1]
    cb = (nn + _COLS - 1) // _COLS
    for blk in prange(((m + _ROWS - 1) // _ROWS) * cb):  # scratch once per tile
        i0, i1, j0, j1 = _tile(blk, cb, m, nn)
        acc = np.empty(j1 - j0, out.dtype)
        part = np.empty(j1 - j0, out.dtype)
        for i in range(i0, i1):
            acc[:] = 0
            part[:] = 0
            for k in range(kk):
                aik = a[i, k]
                if order == ORDER_CHUNK and k % chunk == 0 and k > 0:
                    flush(acc, part, apc, accvec, key)
                for j in range(j1 - j0):
                    ok, p = prod(aik, b[k, j0 + j], mp)
                    if not ok:
                        p = prod_slow(p, mulvec, key)
                    cur = acc[j] if order == ORDER_SEQUENTIAL else part[j]
                    ok, v = step(cur, p, ap)
                    if not ok:
                        v = step_slow(cur, p, accvec, key)
                    if order == ORDER_SEQUENTIAL:
                        acc[j] = v
                    else:
                        part[j] = v
            if order == ORDER_CHUNK and kk > 0:
                flush(acc, part, apc, accvec, key)
            for j in range(j1 - j0):
                out[i, j0 + j] = acc[j]



@functools.cache
def matmul_fast(ops: Datapath, order_code: int):
    """The matmul kernel of the datapath ``ops`` for one order (sequential or chunk), looping
    over k outermost and the output columns j innermost.

    ``kernel(a, b, out, chunk, mp, ap, apc, vecs)``: a (M, K) and b (K, N) in the datapath's
    representation (int64 at the operands' scales, or doubles); ``out`` (M, N) gets the
    accumulators. mp/ap are the product and accumulation parameters, apc those that add a
    chunk's sum (an accumulator) to the total, vecs = (mul, acc format vectors, key) those
    of the slow paths.
    """
    tag = f"{ops.tag}_{order_code}"
    fl = specialise(_flush, tag, False, step=ops.step, step_slow=ops.step_slow)
    return specialise(_matmul, tag, True, prod=ops.prod, prod_slow=ops.prod_slow,
                      step=ops.step, step_slow=ops.step_slow, order=order_code, flush=fl)


@jit
def _slow_add(accp, x, y, key):
    """Exact-engine ``R_acc(x + y)`` for doubles holding values (IEEE for inf/NaN): the
    engine's node addition, with each double as a node."""
    n1, h1, l1, e1, _ = from_double(f64_bits(x))
    n2, h2, l2, e2, _ = from_double(f64_bits(y))
    s1 = 0.0 if np.isfinite(x) else x
    s2 = 0.0 if np.isfinite(y) else y
    return code_value(accp, _add_nodes(accp, n1, h1, l1, e1, s1, n2, h2, l2, e2, s2, key, 0),
                      0.0)



_MANT = np.uint64((1 << 52) - 1)
_TWO52 = np.uint64(0x4330000000000000)  # the bits of 2^52


@jit
def _exponent(m):
    """floor(log2(m)) of a uint64 0 < m < 2^52, without a branch: the double 2^52 + m is
    exact, so subtracting 2^52 gives m exactly, and its exponent field is read. (0 gives
    −1023.)"""
    return np.int64(f64_bits(bits_f64(_TWO52 | m) - 4503599627370496.0) >> np.uint64(52)) - 1023


@pjit
def span(xb):
    """One pass over doubles (bits): (lowest set-bit exponent, highest leading-bit exponent,
    most significant bits of one element, count of inf/NaN) over the nonzero finite ones.
    Lowest/highest are +/-4096 when every element is zero.

    Branch-free, so the loop vectorises: the lowest set bit of the stored fraction ``m`` is
    ``m & (~m + 1)``, a power of two whose exponent :func:`_exponent` reads; a subnormal's
    leading bit likewise; a normal number's leading bit is its implicit one."""
    lowest = np.int64(4096)
    highest = np.int64(-4096)
    sig = np.int64(0)
    bad = np.int64(0)
    for i in prange(xb.shape[0]):
        b = xb[i] & ~(_U1 << np.uint64(63))
        ef = np.int64(b >> np.uint64(52))
        m = b & _MANT
        nz = (ef != 2047) & (b != _U0)
        e = max(ef, 1) - 1075  # the exponent of the significand's last bit
        tz = _exponent(m & ((~m) + _U1)) if m != _U0 else np.int64(52)
        lead = e + (_exponent(m) if ef == 0 else np.int64(52))
        bad += np.int64(ef == 2047)
        lowest = min(lowest, e + tz if nz else np.int64(4096))
        highest = max(highest, lead if nz else np.int64(-4096))
        sig = max(sig, lead - e - tz + 1 if nz else np.int64(0))
    return lowest, highest, sig, bad


@pjit
def scaled_int(x, scale, out):
    """``out = int64(x·scale)`` for operands the caller proved to be integers after scaling."""
    flat_x = x.reshape(-1)
    flat_o = out.reshape(-1)
    for i in prange(flat_x.shape[0]):
        flat_o[i] = np.int64(flat_x[i] * scale)
