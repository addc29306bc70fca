"""Elementwise arithmetic in doubles, with a proof per element that one rounding of the double
result into the target format equals the rounding of the exact result.

``a ± b``, ``a·b`` and ``a·b + c`` are computed in double with their exact errors (TwoSum,
Dekker's TwoProduct). An element is *ok* when the double result is exact, or when its error
bound cannot move it across a *decision point* of a deterministic target rounding: the
format's grid points and the midpoints between them (every deterministic rounding, and every
overflow threshold, is constant between two consecutive such points). The caller rounds ok
elements' doubles and hands the others to the exact engine.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import prange

from ._jit import bits_f64, f64_bits, jit
from .codes import OP_ADD, OP_FMA, OP_MUL, OP_SUB
from .mac_fast import specialise

_U1 = np.uint64(1)
_MANT_I = np.int64((1 << 52) - 1)
_HIDDEN_I = np.int64(1 << 52)
_SPLIT = 134217729.0  # 2^27 + 1, Veltkamp's splitter for float64


@jit
def two_sum(x, y):
    """(s, err): s = x + y rounded, err its exact error (Knuth's TwoSum)."""
    s = x + y
    bb = s - x
    return s, (x - (s - bb)) + (y - bb)


@jit
def two_product(x, y):
    """(p, err, guarded): p = x·y rounded and err its exact error (Veltkamp/Dekker), exact
    where ``guarded``: p finite, operands below 2^995 and p not below 2^-969 (or an operand
    zero), so neither the split nor the error terms overflow or underflow."""
    p = x * y
    xh = x * _SPLIT
    xh = xh - (xh - x)
    xl = x - xh
    yh = y * _SPLIT
    yh = yh - (yh - y)
    yl = y - yh
    err = ((xh * yh - p) + xh * yl + xl * yh) + xl * yl
    guarded = (np.isfinite(p) & (abs(x) < 2.0**995) & (abs(y) < 2.0**995)
               & ((abs(p) >= 2.0**-969) | (x == 0.0) | (y == 0.0)))
    return p, err, guarded


@jit
def off_decision(r, d, fixed, mbits, low):
    """Whether every real within ``d`` (> 0) of the double ``r`` rounds into the target as
    ``r`` does: no grid point or midpoint of the target lies in [r - d, r + d].

    Target: fixed (``low`` = -F - 1: midpoints are multiples of 2^(-F-1)) or float
    (``mbits`` M, ``low`` = emin: at r's binade E they are the multiples of
    2^(max(E, emin) - M - 1), subnormals included; an FTZ format's points are among them).
    Counted in units of r's last bit: the points are the multiples of 2^kk, and d is rounded
    up to an integer D. Zero, magnitudes below 2^-971 (so that 2^-e below is a double), inf
    and NaN are refused.
    """
    b = np.int64(f64_bits(r) & ~(_U1 << np.uint64(63)))
    ef = b >> 52
    if ef < 52 or ef == 2047:
        return False
    e = ef - 1075  # r = M·2^e, M the 53-bit significand
    g = low if fixed else max(e + 52, low) - mbits - 1
    kk = g - e
    if kk <= 0 or kk > 62:
        return False
    span = np.int64(1) << kk
    # d in units of r's last bit (2^-e = 2^(1075 - ef), a normal double), rounded up
    dd = d * bits_f64(np.uint64(2098 - ef) << np.uint64(52)) * (1.0 + 2.0**-50)
    if not dd < np.float64(span):
        return False
    big_d = np.int64(dd) + 1
    low_bits = ((b & _MANT_I) | _HIDDEN_I) & (span - 1)
    return (low_bits > big_d) and (low_bits + big_d < span)


# The generic kernels read these names; each specialisation binds them as constants in its
# own globals (:func:`fxemu._kernels.mac_fast.specialise`), so the op dispatch folds away.
op = row = None


def _double_row(ar, br, cr, sign, floor, det, fixed, mbits, low, r, ok, base):
    """One row of :func:`double_kernel`: elements base.. of r/ok from the 1-D views ar, br,
    cr (any strides)."""
    for k in range(ar.shape[0]):
        x = ar[k]
        y = br[k]
        if op == OP_ADD or op == OP_SUB:
            y = sign * y
            s, err = two_sum(x, y)
            good = np.isfinite(s)
            d = abs(err)
            u, v = x, y
        elif op == OP_MUL:
            s, err, good = two_product(x, y)
            d = abs(err)
            u, v = x, y
        else:
            z = cr[k]
            p, e1, good = two_product(x, y)
            s, e2 = two_sum(p, z)
            good = good & np.isfinite(s)
            d = abs(e1) + abs(e2)
            u, v = p, z
        if floor and op != OP_MUL and s == 0.0 and (np.signbit(u) | np.signbit(v)):
            s = -0.0
        r[base + k] = s
        ok[base + k] = good and (d == 0.0 or (det and off_decision(s, d, fixed, mbits, low)))


def _double_kernel(a, b, c, sign, floor, det, fixed, mbits, low, r, ok):
    """Generic kernel (see :func:`double_kernel`)."""
    nq, nr = a.shape[1], a.shape[2]
    for blk in prange(a.shape[0] * nq):
        i, j = blk // nq, blk % nq
        row(a[i, j], b[i, j], c[i, j], sign, floor, det, fixed, mbits, low, r, ok, blk * nr)


@functools.cache
def double_kernel(op_code: int):
    """The kernel of one op (an OP_* code; FMA: a·b + c):
    ``kernel(a, b, c, sign, floor, det, fixed, mbits, low, r, ok)``.

    ``r`` (flat, C order) gets the double result and ``ok`` whether it is exact or, with
    ``det`` (a deterministic target rounding), provably rounds as the exact result does
    (:func:`off_decision` with the target's ``fixed``/``mbits``/``low``). a, b, c are 3-D
    views of one shape (broadcast operands: any strides). ``sign`` multiplies b for sums
    (-1: a - b). ``floor``: exact zero sums are -0 unless both terms are +0 (IEEE 754 §6.3
    under rounding toward -inf; a double sum never underflows to 0, so a zero sum is
    exact)."""
    tag = f"op{op_code}"
    one_row = specialise(_double_row, tag, False, op=op_code)
    return specialise(_double_kernel, tag, True, row=one_row)


__all__ = ["OP_ADD", "OP_FMA", "OP_MUL", "OP_SUB", "double_kernel", "off_decision",
           "two_product", "two_sum"]
