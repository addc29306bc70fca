"""Exact values wider than a double, and their one rounding into a fixed or float format.

An exact value is held as *parts* ``(neg, hi, lo, e, sticky)`` meaning
``±(hi·2^64 + lo + δ)·2^e`` with ``0 < δ < 1`` when ``sticky`` (bits below the window) and
``δ = 0`` otherwise. Products of two doubles (106 bits) and sums of such values fit without loss
in the 128-bit window until an operand lies more than ~128 bits below the other, where the lower
one only contributes the sticky bit — which is all a rounding needs.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit

_U0 = np.uint64(0)
_U1 = np.uint64(1)
_MANT = np.uint64((1 << 52) - 1)
_HIDDEN = np.uint64(1 << 52)
_LO32 = np.uint64(0xFFFFFFFF)
_TOP = np.uint64(1 << 63)


@jit
def bitlen64(m):
    """Number of significant bits of a uint64 (0 for 0), by binary search."""
    n = 0
    if m >> np.uint64(32):
        m >>= np.uint64(32)
        n += 32
    if m >> np.uint64(16):
        m >>= np.uint64(16)
        n += 16
    if m >> np.uint64(8):
        m >>= np.uint64(8)
        n += 8
    if m >> np.uint64(4):
        m >>= np.uint64(4)
        n += 4
    if m >> np.uint64(2):
        m >>= np.uint64(2)
        n += 2
    if m >> _U1:
        m >>= _U1
        n += 1
    return n + np.int64(m != _U0)


@jit
def bitlen128(hi, lo):
    """Significant bits of ``hi·2^64 + lo``."""
    if hi != _U0:
        return 64 + bitlen64(hi)
    return bitlen64(lo)


@jit
def mul64(a, b):
    """Full 128-bit product of two uint64 as (hi, lo)."""
    a0, a1 = a & _LO32, a >> np.uint64(32)
    b0, b1 = b & _LO32, b >> np.uint64(32)
    p00 = a0 * b0
    p01 = a0 * b1
    p10 = a1 * b0
    p11 = a1 * b1
    mid = (p00 >> np.uint64(32)) + (p01 & _LO32) + (p10 & _LO32)
    lo = (p00 & _LO32) | (mid << np.uint64(32))
    hi = p11 + (p01 >> np.uint64(32)) + (p10 >> np.uint64(32)) + (mid >> np.uint64(32))
    return hi, lo


@jit
def shr128(hi, lo, sh):
    """Split ``(hi:lo)·2^-sh`` (sh >= 0) into (int_hi, int_lo, top 64 fraction bits, sticky)."""
    if sh == 0:
        return hi, lo, _U0, False
    if sh < 64:
        s = np.uint64(sh)
        r = np.uint64(64 - sh)
        return hi >> s, (lo >> s) | (hi << r), lo << r, False
    if sh == 64:
        return _U0, hi, lo, False
    if sh < 128:
        s = np.uint64(sh - 64)
        r = np.uint64(128 - sh)
        return _U0, hi >> s, (hi << r) | (lo >> s), (lo << r) != _U0
    if sh == 128:
        return _U0, _U0, hi, lo != _U0
    if sh < 192:
        s = np.uint64(sh - 128)
        return _U0, _U0, hi >> s, ((hi << np.uint64(192 - sh)) != _U0) or lo != _U0
    return _U0, _U0, _U0, hi != _U0 or lo != _U0


@jit
def shl128(hi, lo, sh):
    """``(hi:lo)·2^sh`` modulo 2^128 (0 <= sh)."""
    if sh == 0:
        return hi, lo
    if sh < 64:
        s = np.uint64(sh)
        return (hi << s) | (lo >> np.uint64(64 - sh)), lo << s
    if sh < 128:
        return lo << np.uint64(sh - 64), _U0
    return _U0, _U0


@jit
def from_double(b):
    """Parts of the double with bits ``b`` (finite; inf/NaN read as 2^1024-scaled numbers)."""
    neg = (b >> np.uint64(63)) != _U0
    ef = np.int64((b >> np.uint64(52)) & np.uint64(0x7FF))
    m = b & _MANT
    if ef == 0:
        return neg, _U0, m, np.int64(-1074), False
    return neg, _U0, m | _HIDDEN, ef - np.int64(1075), False


@jit
def mul_doubles(ba, bb):
    """Exact product of two finite doubles (bits) as parts."""
    na, _, ma, ea, _ = from_double(ba)
    nb, _, mb, eb, _ = from_double(bb)
    hi, lo = mul64(ma, mb)
    return na != nb, hi, lo, ea + eb, False


@jit
def zero_sum_neg(n1, n2, floor):
    """Sign of an exact zero sum of two terms with signs ``n1`` and ``n2`` (IEEE 754 §6.3):
    two zeros of the same sign keep it; every other exact zero sum (x + (−x), (+0) + (−0)) is
    +0, or −0 when the sum is rounded toward −inf (``floor``: a float format's ``rdn``)."""
    return (n1 or n2) if floor else (n1 and n2)


@jit
def add_parts(n1, h1, l1, e1, n2, h2, l2, e2):
    """Exact sum of two exact windows (each at most 125 bits, no sticky) as parts.

    Both are brought to the common scale ``e = max(min(e1, e2), lead - 126)``: the larger is
    shifted left; the smaller is shifted left, or right when it lies more than 126 bits below
    the larger's leading bit, its lost bits becoming the sticky bit. A sticky subtrahend borrows
    one unit, so the window plus sticky stays exact.
    """
    z1 = h1 == _U0 and l1 == _U0
    z2 = h2 == _U0 and l2 == _U0
    if z2:
        return n1, h1, l1, e1, False
    if z1:
        return n2, h2, l2, e2, False
    lead1 = e1 + bitlen128(h1, l1)
    lead2 = e2 + bitlen128(h2, l2)
    if lead2 > lead1:
        n1, h1, l1, e1, n2, h2, l2, e2 = n2, h2, l2, e2, n1, h1, l1, e1
        lead1 = lead2
    # operand 1 now has the larger leading bit, so e1 >= e and only operand 2 may shift right
    e = max(min(e1, e2), lead1 - 126)
    h1, l1 = shl128(h1, l1, e1 - e)
    sticky = False
    if e2 >= e:
        h2, l2 = shl128(h2, l2, e2 - e)
    else:
        h2, l2, r, s = shr128(h2, l2, e - e2)
        sticky = r != _U0 or s
    if n1 == n2:
        lo = l1 + l2
        hi = h1 + h2 + (_U1 if lo < l1 else _U0)
        return n1, hi, lo, e, sticky
    if h1 < h2 or (h1 == h2 and l1 < l2):
        # equal leading bits, so operand 2 was not shifted right and sticky is False
        n1, h1, l1, h2, l2 = n2, h2, l2, h1, l1
    lo = l1 - l2
    hi = h1 - h2 - (_U1 if l1 < l2 else _U0)
    if sticky:  # (A) - (B + d) = (A - B - 1) + (1 - d)
        if lo == _U0:
            hi -= _U1
        lo -= _U1
    return n1, hi, lo, e, sticky
