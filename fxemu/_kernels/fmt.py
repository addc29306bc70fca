"""A format as one small int64 tuple, so one kernel serves fixed and float targets.

The tuple ``p`` is a :class:`fxemu._kernels.params.FormatVec` built by
:func:`fxemu.lowering.format_vec` (or the same fields as a plain tuple)::

    p[0] kind (KIND_FIXED, KIND_FLOAT)   p[1] width   p[2] frac bits F / man bits M
    p[3] signed / emin             p[4] rounding mode   p[5] overflow / special
    p[6] sat bits / float: subnormals (bit 0) and P3109 code-parity ties (bit 1)
    p[7] float: overflow (0 inf, 1 sat, 2 sat_finite)   p[8] sr_bits
    p[9] float max_code   p[10] nan_code   p[11] inf_code

Codes are uint64; values are doubles (exact for every float format and fixed W <= 53).
"""

from __future__ import annotations

import numpy as np

from ._jit import jit
from .codes import KIND_FIXED, KIND_FLOAT, S_FN, S_FN_INF, S_FNUZ, S_FNUZ_INF, S_IEEE
from .convert import fixed_round, fixed_value, float_round, float_special, float_value
from .exact import from_double

_U0 = np.uint64(0)
_U1 = np.uint64(1)


@jit
def round_parts(p, neg, hi, lo, e, sticky, big, key, idx):
    """Round exact parts into the format ``p``; return its code."""
    if p[0] == KIND_FIXED:
        return fixed_round(neg, hi, lo, e, sticky, big, p[1], p[2], p[3] != 0, p[4], p[5], p[6],
                           p[8], key, idx)
    mbits = p[2]
    neg2, c = float_round(neg, hi, lo, e, sticky, mbits, p[3], np.uint64(p[9]),
                          np.uint64(p[10]), np.uint64(p[11]), p[5], (p[6] & 1) != 0, p[7] != 0,
                          p[4], p[8], key, idx, 0, (p[6] & 2) != 0)
    if neg2:
        c |= _U1 << np.uint64(p[1] - 1)
    return c


@jit
def code_parts(p, code):
    """Exact parts (neg, hi, lo, e) of a finite code of format ``p``."""
    w = p[1]
    if p[0] == KIND_FIXED:
        mask = np.uint64(0xFFFFFFFFFFFFFFFF) >> np.uint64(64 - w)
        code &= mask
        neg = p[3] != 0 and ((code >> np.uint64(w - 1)) & _U1) != _U0
        mag = ((~code) + _U1) & mask if neg else code
        if neg and mag == _U0:  # -2^63 of a 64-bit format
            mag = _U1 << np.uint64(63)
        return neg, _U0, mag, -np.int64(p[2])
    mbits = p[2]
    sign_bit = _U1 << np.uint64(w - 1)
    neg = (code & sign_bit) != _U0
    mag = code & (sign_bit - _U1)
    ef = np.int64(mag >> np.uint64(mbits))
    frac = mag & ((_U1 << np.uint64(mbits)) - _U1)
    if ef == 0:
        return neg, _U0, frac, p[3] - mbits
    return neg, _U0, frac | (_U1 << np.uint64(mbits)), p[3] + ef - 1 - mbits


@jit
def code_is_finite(p, code):
    """Whether a code of format ``p`` is a finite number."""
    if p[0] == KIND_FIXED:
        return True
    w = p[1]
    sign_bit = _U1 << np.uint64(w - 1)
    special = p[5]
    if special == S_FNUZ:
        return code != sign_bit
    mag = code & (sign_bit - _U1)
    if special == S_FNUZ_INF:
        return code != sign_bit and mag != np.uint64(p[11])
    if special == S_FN_INF:
        return mag != np.uint64(p[10]) and mag != np.uint64(p[11])
    if special == S_IEEE:
        return mag < np.uint64(p[11])
    if special == S_FN:
        return mag != np.uint64(p[10])
    return True


@jit
def code_value(p, code, scale):
    """Double value of a code of format ``p`` (``scale`` = 2^-F for fixed, unused for float)."""
    if p[0] == KIND_FIXED:
        return fixed_value(code, p[1], p[3] != 0, scale)
    sign_bit = _U1 << np.uint64(p[1] - 1)
    return float_value((code & sign_bit) != _U0, code & (sign_bit - _U1), p[2], p[3],
                       np.uint64(p[10]), np.uint64(p[11]), p[5])


@jit
def value_code(p, bits, key, idx):
    """Code of a double (bits) rounded into ``p`` (inf/NaN handled by the float policy)."""
    if p[0] == KIND_FLOAT and ((bits >> np.uint64(52)) & np.uint64(0x7FF)) == np.uint64(0x7FF):
        neg, c = float_special(bits, np.uint64(p[10]), np.uint64(p[11]), np.uint64(p[9]), p[5],
                               p[7] != 0, p[7] == 2)
        if neg:
            c |= _U1 << np.uint64(p[1] - 1)
        return c
    neg, hi, lo, e, sticky = from_double(bits)
    return round_parts(p, neg, hi, lo, e, sticky, False, key, idx)


