"""The multi-term fused adder of ``Mac(order="fused:…")`` (semantics: :class:`fxemu.Fused`).

Everything is integer arithmetic on the operands' bit patterns: a product of two operands is
exact in double (the caller checked the operands' spans), its 53-bit significand is shifted
onto the alignment grid ``2^(E - align)`` with the alignment rounding, the aligned integers are
summed in an int64 (wrapped to the adder's width when it has one), and the sum is rounded to
``out`` fraction bits below its leading bit before the accumulator format rounds it.

Parameters (lowered by :func:`fxemu.lowering.fused_params`): ``fp`` = (terms, align, align
rounding code, out, out rounding code, adder width or 0 for unbounded, min_exp, emin_a,
emin_b, acc emin, late), ``accp`` the accumulator's :class:`~fxemu._kernels.params.FloatParams`
and ``accvec`` its :class:`~fxemu._kernels.params.FormatVec` (the late addition).
An absent floor is ``NO_FLOOR``.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ._jit import bits_f64, f64_bits, jit, pjit
from .codes import OP_ADD, TO_ZERO
from .convert import float_element, float_value, pow2
from .exact import bitlen64
from .fmt import code_value
from .mac import elementwise
from .rounding import round_up

__all__ = ["NO_FLOOR", "ZERO_EXP", "exponents", "float_element_value", "fused_chain",
           "fused_matmul"]

NO_FLOOR = -(1 << 30)  # an exponent floor below every exponent
_NEG = -(1 << 40)  # no exponent (below every real one)
ZERO_EXP = -(1 << 36)  # the exponent of a zero operand: a product with it never leads
_U0 = np.uint64(0)
_U1 = np.uint64(1)
_MANT = np.uint64((1 << 52) - 1)


@jit
def _decode(x):
    """(negative, 53-bit significand m, exponent of its LSB) of a finite nonzero double:
    |x| = m·2^lsb."""
    b = f64_bits(x)
    ef = np.int64((b >> np.uint64(52)) & np.uint64(0x7FF))
    m = b & _MANT
    if ef == 0:
        return x < 0.0, m, np.int64(-1074)
    return x < 0.0, m | (_U1 << np.uint64(52)), ef - 1075


@jit
def _exp(x):
    """floor(log2|x|) of a finite nonzero double."""
    ef = np.int64((f64_bits(x) >> np.uint64(52)) & np.uint64(0x7FF))
    if ef != 0:
        return ef - 1023
    return bitlen64(f64_bits(x) & _MANT) - 1075


@jit
def _shift_round(neg, m, sh, mode):
    """The signed integer ``±m·2^-sh`` rounded by ``mode`` (sign-magnitude; sh >= 0 or a
    left shift when negative; the caller keeps the result inside int64)."""
    if sh <= 0:
        q = m << np.uint64(-sh)
        return -np.int64(q) if neg else np.int64(q)
    if sh >= 128:
        q, r64, sticky = _U0, _U0, m != _U0
    elif sh >= 64:
        q = _U0
        r64 = m >> np.uint64(sh - 64) if sh > 64 else m
        sticky = sh > 64 and (m & ((_U1 << np.uint64(sh - 64)) - _U1)) != _U0
    else:
        q = m >> np.uint64(sh)
        r64 = m << np.uint64(64 - sh)
        sticky = False
    if round_up(mode, neg, q, r64, sticky, 62, _U0):
        q += _U1
    return -np.int64(q) if neg else np.int64(q)


@jit
def exponents(x, emin, out):
    """``out[i]`` = max(floor(log2|x[i]|), emin) for nonzero finite x[i], ``ZERO_EXP`` for
    zeros (flat arrays)."""
    for i in range(x.shape[0]):
        out[i] = max(_exp(x[i]), emin) if x[i] != 0.0 else ZERO_EXP


@jit
def _chain(a, b, ea, eb, c, fp, accp, accvec):
    """The fused-adder chain over the products ``a[k]·b[k]`` from the accumulator ``c``:
    steps of ``fp[0]`` products (the last takes the rest); ``ea``/``eb`` the operands' clamped
    exponents (:func:`exponents`). A non-finite accumulator stays as it is. The array loops
    live here, once per output, and the helpers take scalars (a call with array arguments
    per step costs more than the step)."""
    kk = a.shape[0]
    terms, align, amode, min_exp, late = fp[0], fp[1], fp[2], fp[6], fp[10] != 0
    for k0 in range(0, kk, terms):
        if not np.isfinite(c):
            break
        k1 = min(k0 + terms, kk)
        cin = 0.0 if late else c  # a late accumulator takes no part in the alignment
        big = np.int64(2 * ZERO_EXP)
        for k in range(k0, k1):  # a zero operand's exponent keeps the sum below every real one
            big = max(big, ea[k] + eb[k])
        if big < ZERO_EXP // 2:  # every product has a zero operand
            big = np.int64(_NEG)
        if cin != 0.0:
            big = max(big, _exp(cin))
        s = np.int64(0)
        grid = np.int64(0)
        if big != _NEG or min_exp != NO_FLOOR:
            big = max(big, min_exp)
            grid = big - align  # the aligned terms are integers times 2^grid
            if amode == TO_ZERO and -1000 <= grid <= 1000:
                # |p|·2^-grid < 2^(align+2) is exact where it is >= 2^-1022 and truncates to
                # 0 below; the same for |c|·2^-grid < 2^(align+1)
                scale = pow2(-grid)
                for k in range(k0, k1):
                    s += np.int64(a[k] * b[k] * scale)
                s += np.int64(cin * scale)
            else:
                for k in range(k0, k1):
                    p = a[k] * b[k]
                    if p != 0.0:
                        neg, m, lsb = _decode(p)
                        s += _shift_round(neg, m, grid - lsb, amode)
                if cin != 0.0:
                    neg, m, lsb = _decode(cin)
                    s += _shift_round(neg, m, grid - lsb, amode)
        c = _finish(_normalised(s, grid, fp), c, fp, accp, accvec)
    return c


@jit
def _normalised(s, grid, fp):
    """The aligned sum ``s·2^grid`` wrapped to the adder's width and rounded to ``out``
    fraction bits below its leading bit (exponent floored at the accumulator's emin): exact
    in double, ±inf beyond every double, +0 for a zero sum."""
    out, omode, width, acc_emin = fp[3], fp[4], fp[5], fp[9]
    if width > 0:  # two's complement register of `width` bits: wrap
        s = (s << np.int64(64 - width)) >> np.int64(64 - width)
    if s == 0:
        return 0.0
    neg = s < 0
    mag = np.uint64(-s) if neg else np.uint64(s)
    lead = grid + bitlen64(mag) - 1
    if lead > 1023:  # beyond every double
        return -np.inf if neg else np.inf
    ed = max(lead, acc_emin)
    drop = ed - out - grid
    if drop <= 0:
        return (-np.float64(mag) if neg else np.float64(mag)) * pow2(grid)
    if omode == TO_ZERO:
        q = np.int64(mag >> np.uint64(drop)) if drop < 64 else np.int64(0)
        q = -q if neg else q
    else:
        q = _shift_round(neg, mag, drop, omode)
    return np.float64(q) * pow2(grid + drop)


@jit
def _finish(r, c, fp, accp, accvec):
    """The step's result: the normalised value ``r`` into the accumulator (+0 for zero), or
    with a late accumulator ``r + c`` rounded once into it."""
    if fp[10] != 0:
        return code_value(accvec, elementwise(OP_ADD, f64_bits(r), f64_bits(c), _U0, accvec,
                                              _U0, 0), 0.0)
    if r == 0.0:
        return 0.0  # +0 (the measured hardware rule)
    # r has at most `out` fraction bits above the accumulator's emin: when they fit its
    # mantissa and r lies in its range (normal, or subnormal where it keeps them), r is an
    # accumulator value already
    if fp[3] <= accp.mbits and abs(r) <= bits_f64(accp.maxbits) and (
            accp.subn or abs(r) >= bits_f64(accp.minnorm)):
        return r
    return float_element_value(r, accp)


@jit
def fused_chain(a, b, c, fp, accp, accvec):
    """The fused-adder chain over ``a[k]·b[k]`` (1-D operands) from the accumulator value
    ``c`` (finite operands whose products are exact in double): what one output of
    :func:`fused_matmul` computes, with an initial accumulator."""
    ea = np.empty(a.shape[0], np.int64)
    eb = np.empty(b.shape[0], np.int64)
    exponents(a, fp[7], ea)
    exponents(b, fp[8], eb)
    return _chain(a, b, ea, eb, c, fp, accp, accvec)


@jit
def float_element_value(r, accp):
    """The double ``r`` rounded into the accumulator format (deterministic rounding)."""
    sign, code = float_element(f64_bits(r), accp.mbits, accp.emin, accp.max_code,
                               accp.nan_code, accp.inf_code, accp.special, accp.subn,
                               accp.overflow_sat, accp.qmode, 62, _U0, 0)
    return float_value(sign, code, accp.mbits, accp.emin, accp.nan_code, accp.inf_code,
                       accp.special)


@pjit
def fused_matmul(a, bt, ea, ebt, out, fp, accp, accvec):
    """``out[i, j]`` = the fused-adder chain over ``a[i, :]·bt[j, :]`` from +0
    (:func:`_chain`); ``ea``/``ebt`` the operands' clamped exponents (:func:`exponents`). The
    caller replaces outputs with non-finite operands by their IEEE value."""
    m = a.shape[0]
    n = bt.shape[0]
    for ij in prange(m * n):
        i = ij // n
        j = ij - i * n
        out[i, j] = _chain(a[i], bt[j], ea[i], ebt[j], 0.0, fp, accp, accvec)
