"""Fast MAC kernels for the common datapaths; each is exact and equal to :mod:`mac` (tested).

* Fixed: operands are integers at their array's finest scale; products, product rounding and
  accumulation run in int64 (the API checks that every intermediate fits in 62 bits).
* Float: products that are exact in double (the API checks the operands' significant bits and
  range); each ``acc + p`` is TwoSum-exact, folded into one double by round-to-odd (exact for
  the final rounding when the accumulator keeps at most 50 mantissa bits), then rounded by
  integer addition on the bit pattern. Results outside the fast domain (subnormal, overflow)
  are redone by the exact engine.

Both loop over k outermost and over the output columns j innermost, so one k step updates a
row of accumulators with branch-free code; threads take tiles of rows × columns.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import prange

from ._jit import bits_f64, f64_bits, jit, pjit
from .convert import O_SAT, O_SAT_SYM, O_SAT_ZERO, float_fast_element
from .exact import bitlen64, from_double
from .fmt import code_value, value_code
from .mac import ORDER_CHUNK, ORDER_SEQUENTIAL, _add_nodes
from .rounding import (
    CEIL,
    FLOOR,
    HALF_AWAY,
    HALF_DOWN,
    HALF_EVEN,
    HALF_UP,
    HALF_ZERO,
    TO_ZERO,
)

_U0 = np.uint64(0)
_U1 = np.uint64(1)
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


@functools.cache
def fixed_matmul_int(order, use_mul, mq, mo, q, o):
    """Integer datapath matmul specialised for one order and the mul/acc modes (closure
    constants, so the per-step mode dispatch folds away).

    The kernel takes a (M, K) int64, b (K, N) int64 and writes the accumulator integers (at the
    acc scale) to ``out`` (M, N) int64. ``pm`` = (d_mul, lo, hi, off, wmask) rounds a product
    from scale Fa+Fb into the mul format; ``acc_par`` = (sh_acc, sh_p, d, lo, hi, off, wmask)
    accumulates.
    """

    def kernel(a, b, out, chunk, pm, acc_par):
        m, kk = a.shape
        nn = b.shape[1]
        sh_acc, sh_p, d, lo, hi, off, wmask = acc_par
        cb = (nn + _COLS - 1) // _COLS
        for blk in prange(((m + _ROWS - 1) // _ROWS) * cb):  # scratch once per tile
            i0, i1, j0, j1 = _tile(blk, cb, m, nn)
            acc = np.empty(j1 - j0, np.int64)
            part = np.empty(j1 - j0, np.int64)
            for i in range(i0, i1):
                acc[:] = 0
                part[:] = 0
                for k in range(kk):
                    aik = a[i, k]
                    if order == ORDER_CHUNK and k % chunk == 0 and k > 0:
                        for j in range(j1 - j0):
                            acc[j] = int_step(acc[j], part[j], sh_acc, sh_acc, d, q, o, lo,
                                              hi, off, wmask)
                            part[j] = 0
                    for j in range(j1 - j0):
                        p = aik * b[k, j0 + j]
                        if use_mul:
                            p = int_overflow(int_round_shift(p, pm[0], mq), mo, pm[1], pm[2],
                                             pm[3], pm[4])
                        if order == ORDER_SEQUENTIAL:
                            acc[j] = int_step(acc[j], p, sh_acc, sh_p, d, q, o, lo, hi, off,
                                              wmask)
                        else:
                            part[j] = int_step(part[j], p, sh_acc, sh_p, d, q, o, lo, hi,
                                               off, wmask)
                if order == ORDER_CHUNK and kk > 0:
                    for j in range(j1 - j0):
                        acc[j] = int_step(acc[j], part[j], sh_acc, sh_acc, d, q, o, lo, hi, off,
                                          wmask)
                for j in range(j1 - j0):
                    out[i, j0 + j] = acc[j]

    kernel.__qualname__ = f"fixed_matmul_int_{order}_{int(use_mul)}_{mq}_{mo}_{q}_{o}"
    return pjit(kernel)


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
        # exact zero: IEEE sum sign (+0 unless both are -0) is what s already holds
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


@functools.cache
def float_matmul_fast(order, use_mul, mq, q, hw32=False):
    """Float datapath matmul with products exact in double, specialised for one order and the
    mul/acc roundings (closure constants): a (M, K), b (K, N) doubles. ``hw32``: the acc is
    IEEE float32 with round to nearest even, and every step is :func:`float32_step`.

    Steps outside the fast domain are redone exactly by the engine (``bad`` counts them).
    Writes the accumulator values (acc-format doubles) to ``out``.
    """

    def kernel(a, b, out, chunk, mk, mminnorm, mmaxbits, k, minnorm, maxbits, accp, mulp, key,
               bad):
        m, kk = a.shape
        nn = b.shape[1]
        cb = (nn + _COLS - 1) // _COLS
        for blk in prange(((m + _ROWS - 1) // _ROWS) * cb):  # scratch once per tile
            i0, i1, j0, j1 = _tile(blk, cb, m, nn)
            acc = np.empty(j1 - j0, np.float64)
            part = np.empty(j1 - j0, np.float64)
            for i in range(i0, i1):
                acc[:] = 0.0
                part[:] = 0.0
                nb = 0
                for kx in range(kk):
                    aik = a[i, kx]
                    if order == ORDER_CHUNK and kx % chunk == 0 and kx > 0:
                        for j in range(j1 - j0):
                            ok, r = float_step(acc[j], part[j], k, q, minnorm, maxbits)
                            if not ok:
                                r = _slow_add(accp, acc[j], part[j], key)
                                nb += 1
                            acc[j] = r
                            part[j] = 0.0
                    for j in range(j1 - j0):
                        p = aik * b[kx, j0 + j]
                        if use_mul:
                            okm, sgn, rb = float_fast_element(f64_bits(p), mk, mq, mminnorm,
                                                              mmaxbits)
                            if okm:
                                p = bits_f64(sgn | rb)
                            else:
                                p = code_value(mulp, value_code(mulp, f64_bits(p), key, 0), 0.0)
                                nb += 1
                        cur = acc[j] if order == ORDER_SEQUENTIAL else part[j]
                        if hw32:
                            ok, r = True, float32_step(cur, p)
                        else:
                            ok, r = float_step(cur, p, k, q, minnorm, maxbits)
                        if not ok:
                            r = _slow_add(accp, cur, p, key)
                            nb += 1
                        if order == ORDER_SEQUENTIAL:
                            acc[j] = r
                        else:
                            part[j] = r
                if order == ORDER_CHUNK and kk > 0:
                    for j in range(j1 - j0):
                        ok, r = float_step(acc[j], part[j], k, q, minnorm, maxbits)
                        if not ok:
                            r = _slow_add(accp, acc[j], part[j], key)
                            nb += 1
                        acc[j] = r
                for j in range(j1 - j0):
                    out[i, j0 + j] = acc[j]
                bad[i] = nb

    kernel.__qualname__ = f"float_matmul_fast_{order}_{int(use_mul)}_{mq}_{q}_{int(hw32)}"
    return pjit(kernel)


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



@jit
def _ctz(m):
    """Trailing zero bits of a nonzero uint64."""
    return bitlen64(m & ((~m) + _U1)) - 1


@pjit
def span(xb):
    """One pass over doubles (bits): (lowest set-bit exponent, highest leading-bit exponent,
    most significant bits of one element, count of inf/NaN) over the nonzero finite ones.
    Lowest/highest are +/-4096 when every element is zero."""
    lowest = np.int64(4096)
    highest = np.int64(-4096)
    sig = np.int64(0)
    bad = np.int64(0)
    for i in prange(xb.shape[0]):
        b = xb[i] & ~(_U1 << np.uint64(63))
        ef = np.int64(b >> np.uint64(52))
        if ef == 2047:
            bad += 1
        elif b != _U0:
            m = b & np.uint64((1 << 52) - 1)
            if ef == 0:
                e = np.int64(-1074)
                lead = e + bitlen64(m) - 1
            else:
                m |= np.uint64(1 << 52)
                e = ef - 1075
                lead = e + 52
            tz = _ctz(m)
            lowest = min(lowest, e + tz)
            highest = max(highest, lead)
            sig = max(sig, lead - (e + tz) + 1)
    return lowest, highest, sig, bad


@pjit
def scaled_int(x, scale, out):
    """``out = int64(x·scale)`` for operands the caller proved to be integers after scaling."""
    flat_x = x.reshape(-1)
    flat_o = out.reshape(-1)
    for i in prange(flat_x.shape[0]):
        flat_o[i] = np.int64(flat_x[i] * scale)
