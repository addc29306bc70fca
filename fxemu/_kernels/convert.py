"""Conversion kernels: float64 → fixed/float codes and values, and codes → values.

Every element is rounded exactly: the double is split into sign, 53-bit integer mantissa ``M``
and exponent ``e`` (``|x| = M·2^e``), shifted to the target LSB with integer arithmetic, and
rounded by :func:`rounding.round_up`. No float arithmetic touches a value before it is final.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import prange

from ._jit import bits_f64, f64_bits, jit, pjit
from .codes import (
    CEIL,
    FLOOR,
    HALF_AWAY,
    HALF_DOWN,
    HALF_EVEN,
    HALF_UP,
    HALF_ZERO,
    JAM_SM,
    JAM_TC,
    O_SAT,
    O_SAT_SYM,
    O_SAT_ZERO,
    O_WRAP,
    S_FN,
    S_FN_INF,
    S_FNUZ,
    S_FNUZ_INF,
    S_IEEE,
    TO_ODD,
    TO_ZERO,
)
from .exact import bitlen128, from_double, shl128, shr128
from .rounding import exact_step_down, is_stochastic, random_bits, round_up

_U0 = np.uint64(0)
_U1 = np.uint64(1)
_MANT = np.uint64((1 << 52) - 1)
_HIDDEN = np.uint64(1 << 52)
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
_TWO52 = 4503599627370496.0

@jit
def _signed_bit(neg, th, tl, k):
    """Bit ``k`` (0 <= k < 128) of the two's complement of ``±(th·2^64 + tl)``."""
    if neg:
        tl2 = (~tl) + _U1
        th = (~th) + (_U1 if tl2 == _U0 else _U0)
        tl = tl2
    if k >= 64:
        return ((th >> np.uint64(k - 64)) & _U1) != _U0
    return ((tl >> np.uint64(k)) & _U1) != _U0


@jit
def draw(qmode, key, idx, has_user, user_rnd, sr_bits):
    """The 64 random bits of a stochastic rounding: the counter-based generator's, or the
    caller's ``user_rnd`` (its low ``sr_bits`` bits, moved to the top) when ``has_user``."""
    if has_user:
        return np.uint64(user_rnd) << np.uint64(64 - sr_bits)
    return random_bits(key, idx)


@jit
def fixed_round(neg, hi, lo, e, sticky, big, w, f, signed, qmode, omode, nsat, sr_bits, key,
                idx, lib_ac=False, has_user=False, user_rnd=0):
    """Round the exact value ``±(hi·2^64 + lo + sticky)·2^e`` into a W-bit fixed format.

    ``big`` says the true magnitude has bits above the 128-bit window (its low 128 bits are
    still exact, which is all wrapping needs). Returns the W-bit code. ``lib_ac`` applies
    ac_fixed's overflow test (a signed SAT_ZERO format whose width is a multiple of 32 flags a
    value below min that rounds up to min as an overflow). ``has_user``/``user_rnd``: the
    caller's random bits for a stochastic mode (see :func:`draw`).
    """
    mask = _ALL >> np.uint64(64 - w)
    if signed:
        maxpos = (_U1 << np.uint64(w - 1)) - _U1
        negmax = _U1 << np.uint64(w - 1)
    else:
        maxpos = mask
        negmax = _U0
    if hi == _U0 and lo == _U0 and not sticky and not big:
        if qmode != JAM_TC:
            return _U0
        neg = False  # jamming sets the LSB of 0 too (±0 alike), then overflow applies
    sh = -np.int64(f) - e  # value·2^F = window·2^-sh
    if sh <= 0:
        th, q = shl128(hi, lo, -sh)
        huge = big or th != _U0 or bitlen128(hi, lo) - sh > 64
        r64 = _U0
    else:
        th, q, r64, st = shr128(hi, lo, sh)
        sticky = sticky or st
        huge = big or th != _U0
    inexact = r64 != _U0 or sticky
    rnd = _U0
    if is_stochastic(qmode) and inexact:
        rnd = draw(qmode, key, idx, has_user, user_rnd, sr_bits)
    up = round_up(qmode, neg, q, r64, sticky, sr_bits, rnd)
    mag = q + _U1 if up else q
    if up and mag == _U0:
        huge = True  # carry out of 64 bits
    if exact_step_down(qmode, neg, q != _U0 or huge, q, inexact):
        mag = q - _U1  # modulo 2^64 where huge: the low bits are what wrapping keeps
    if neg:
        if omode == O_SAT_SYM and signed:
            ovf = huge or mag > maxpos
        else:
            ovf = huge or mag > negmax
            if (lib_ac and signed and omode == O_SAT_ZERO and w % 32 == 0 and not up
                    and inexact and q == negmax):
                ovf = True
        code = ((~mag) + _U1) & mask
        if mag == _U0 and not huge:
            neg = False  # rounded to zero: no longer negative
    else:
        ovf = huge or mag > maxpos
        code = mag & mask
    if not ovf:
        return code
    if omode == O_SAT:
        if neg:
            return negmax if signed else _U0
        return maxpos
    if omode == O_SAT_ZERO:
        return _U0
    if omode == O_SAT_SYM:
        if neg:
            # min | 1 as both vendors write it: -max, and min itself for W = 1
            return (negmax | _U1) if signed else _U0
        return maxpos
    top = np.uint64(w - 1)
    if omode == O_WRAP:
        if nsat == 0:
            return code
        if signed:
            if neg:
                code |= _U1 << top
            else:
                code &= ~(_U1 << top)
            if nsat > 1:
                rng = ((_U1 << np.uint64(nsat - 1)) - _U1) << np.uint64(w - nsat)
                if neg:
                    code &= ~rng
                else:
                    code |= rng
            return code
        rng = ((_U1 << np.uint64(nsat - 1)) - _U1) << np.uint64(w - nsat)
        return code | rng | (_U1 << top)
    # O_WRAP_SM (ap_fixed, signed): mirrors ap_fixed_base::overflow_adjust
    ro = ((code >> top) & _U1) != _U0
    if nsat == 0:
        # lD: bit W of the truncated (pre-rounding) value in two's complement
        tl = q + _U1 if (neg and inexact) else q
        tcarry = _U1 if (neg and inexact and tl == _U0) else _U0
        ld = _signed_bit(neg, th + tcarry, tl, w)
        if ld != ro:
            code = (~code) & mask
            if ld:
                code |= _U1 << top
            else:
                code &= ~(_U1 << top)
        return code
    if nsat == 1:
        if neg != ro:
            code = (~code) & mask
    else:
        lno = ((code >> np.uint64(w - nsat)) & _U1) != _U0
        if lno == neg:
            code = (~code) & mask
        rng = ((_U1 << np.uint64(nsat - 1)) - _U1) << np.uint64(w - nsat)
        if neg:
            code &= ~rng
        else:
            code |= rng
    if neg:
        code |= _U1 << top
    else:
        code &= ~(_U1 << top)
    return code


@jit
def _ac_prescale(x, ac_shift):
    """The double ac_fixed's constructor works from: ``x·2^-ac_shift`` computed as
    ``ac_private::ldexpr`` does (one division by 2^(s mod 32), then by 2^32 repeatedly), each
    step correctly rounded — tiny inputs lose bits or underflow to 0 there."""
    s = ac_shift
    if s >= 0:
        d = x / np.float64(np.uint64(1) << np.uint64(s & 31))
        for _ in range(s >> 5):
            d = d / 4294967296.0
    else:
        n = -s
        d = x * np.float64(np.uint64(1) << np.uint64(n & 31))
        for _ in range(n >> 5):
            d = d * 4294967296.0
    return d


@jit
def fixed_element(b, w, f, signed, qmode, omode, nsat, lib_ac, ac_shift, sr_bits, key, idx,
                  has_user=False, user_rnd=0):
    """Round the double with bits ``b`` into a W-bit fixed format; return the W-bit code.

    ap_fixed (``lib_ac`` False) reads the double's fields as they stand: a subnormal gets the
    hidden bit too (1.m·2^-1023), inf/NaN read as 1.m·2^1024. ac_fixed first scales by
    2^-ac_shift in double arithmetic (see :func:`_ac_prescale`).
    """
    if lib_ac:
        d = _ac_prescale(bits_f64(b), ac_shift)
        neg, hi, lo, e, sticky = from_double(f64_bits(d))
        e += ac_shift
    else:
        neg, hi, lo, e, sticky = from_double(b)
        if ((b >> np.uint64(52)) & np.uint64(0x7FF)) == _U0 and lo != _U0:
            lo |= _HIDDEN  # subnormal double: ap sets the hidden bit anyway (1.m·2^-1023)
            e = np.int64(-1075)
    return fixed_round(neg, hi, lo, e, sticky, False, w, f, signed, qmode, omode, nsat, sr_bits,
                       key, idx, lib_ac, has_user, user_rnd)


@jit
def fixed_value(code, w, signed, scale):
    """Value of a W-bit fixed code: signed/unsigned integer × scale (scale = 2^-F)."""
    if signed and w < 64 and (code >> np.uint64(w - 1)) & _U1:
        return np.float64(np.int64(code) - np.int64(1 << (w - 1)) * 2) * scale
    if signed and w == 64:
        return np.float64(np.int64(code)) * scale
    return np.float64(code) * scale


_POW2 = np.ldexp(1.0, np.arange(-1074, 1024))  # exact powers of two, a compile-time constant


@jit
def pow2(k):
    """2^k as a double for -1074 <= k <= 1023 (table lookup, exact)."""
    return _POW2[k + 1074]


@jit
def float_round(neg, hi, lo, e, sticky, mbits, emin, max_code, nan_code, inf_code, special,
                subn, overflow_sat, qmode, sr_bits, key, idx, zoff=0, code_par=False,
                has_user=False, user_rnd=0):
    """Round the finite exact value ``±(hi·2^64 + lo + sticky)·2^e`` into a float format.

    ``max_code`` is the magnitude code of the largest finite value; ``inf_code``/``nan_code``
    the magnitude codes of inf and NaN (unused when the policy has none). Returns
    (sign, magnitude code); the sign is False for +0 under fnuz and True for the fnuz NaN.

    "Even" and "odd" are the parity of the integer significand, which for M >= 1 is the code's;
    with M = 0 it is always 1 for normals (ties go up, as ml_dtypes' float8_e8m0fnu does)
    unless ``code_par``, which reads the parity of the code (exponent field) instead: IEEE
    P3109's tie rule at precision 1. ``zoff`` = 1 for a format without zero, whose codes are
    one less than the ones returned here (the caller subtracts it).
    """
    n = bitlen128(hi, lo)
    if n == 0 and not sticky:
        return (neg and special != S_FNUZ and special != S_FNUZ_INF), _U0
    lead = e + n - 1
    k = lead - emin
    if k < 0:
        k = 0
    qe = emin + k - mbits
    sh = qe - e
    if sh <= 0:
        q = lo << np.uint64(-sh)  # the window is narrower than the precision here
        r64 = _U0
    else:
        _, q, r64, st = shr128(hi, lo, sh)
        sticky = sticky or st
    rnd = _U0
    if is_stochastic(qmode) and (r64 != _U0 or sticky):
        rnd = draw(qmode, key, idx, has_user, user_rnd, sr_bits)
    qp = q
    if code_par and mbits == 0:  # P3109: the parity of the code (the exponent field)
        qp = q + np.uint64(k) + np.uint64(zoff)
    up = round_up(qmode, neg, qp, r64, sticky, sr_bits, rnd)
    mag = q + _U1 if up else q
    code = (np.uint64(k) << np.uint64(mbits)) + mag
    if code > max_code:
        if overflow_sat:
            return neg, max_code
        # IEEE: rounding that never increases magnitude for this sign gives ±max
        toward_zero = (qmode == TO_ZERO or qmode == TO_ODD or qmode == JAM_SM
                       or (qmode == FLOOR and not neg) or (qmode == CEIL and neg))
        if toward_zero:
            return neg, max_code
        if special == S_IEEE or special == S_FNUZ_INF or special == S_FN_INF:
            return neg, inf_code
        if special == S_FN:
            return neg, nan_code
        if special == S_FNUZ:
            return True, nan_code
        return neg, max_code
    if not subn and code < (_U1 << np.uint64(mbits)):
        code = _U0
    if code == _U0 and (special == S_FNUZ or special == S_FNUZ_INF):
        return False, _U0
    return neg, code


@jit
def float_special(b, nan_code, inf_code, max_code, special, overflow_sat, sat_inf=False):
    """(sign, magnitude code) of an inf or NaN input (exponent field all ones); ``sat_inf``
    (overflow ``sat_finite``) takes ±inf to ±max in a format with inf too."""
    neg = (b >> np.uint64(63)) != _U0
    if (b & _MANT) != _U0:  # NaN
        if special == S_FNUZ or special == S_FNUZ_INF:
            return True, nan_code
        return neg, nan_code
    if special == S_IEEE or special == S_FNUZ_INF or special == S_FN_INF:
        return neg, (max_code if sat_inf else inf_code)
    if special == S_FN and not overflow_sat:
        return neg, nan_code
    if special == S_FNUZ and not overflow_sat:
        return True, nan_code  # the single NaN, as ml_dtypes gives for ±inf
    return neg, max_code


@jit
def unsigned_negative_is_zero(b, zoff, qmode, overflow_sat):
    """Whether a negative input ``b`` (sign bit set) into an unsigned float format gives its
    smallest value (0, or 2^-bias without zero) rather than NaN, as IEEE P3109 states it:
    -0 (where the format has a zero), any negative under saturation (``sat``, ``sat_finite``),
    and a finite negative rounded toward 0 or +inf (``rtz``, ``rup``)."""
    mag = b & ~(_U1 << np.uint64(63))
    if mag == _U0:
        return zoff == 0
    if overflow_sat:
        return True
    return mag < np.uint64(0x7FF0000000000000) and (qmode == TO_ZERO or qmode == CEIL)


@jit
def float_element(b, mbits, emin, max_code, nan_code, inf_code, special, subn, overflow_sat,
                  qmode, sr_bits, key, idx, sat_inf=False, unsigned=False, zoff=0,
                  code_par=False, has_user=False, user_rnd=0):
    """Round the double with bits ``b`` into a float format; return (sign, magnitude code).

    ``unsigned``: an input with its sign bit set is NaN, except the cases
    :func:`unsigned_negative_is_zero` lists (the smallest value). ``zoff`` = 1: a format
    without zero (its parameters are those of the format with one more binade below, whose
    codes are one higher): ±0 gives NaN, positive values below its smallest round to it or
    up."""
    if unsigned and (b >> np.uint64(63)) != _U0:
        if unsigned_negative_is_zero(b, zoff, qmode, overflow_sat):
            return False, _U0
        neg, c = False, nan_code
    elif ((b >> np.uint64(52)) & np.uint64(0x7FF)) == np.uint64(0x7FF):
        neg, c = float_special(b, nan_code, inf_code, max_code, special, overflow_sat, sat_inf)
    elif zoff != 0 and (b & ~(_U1 << np.uint64(63))) == _U0:
        return False, nan_code - np.uint64(zoff)  # no zero: ±0 is NaN (as ml_dtypes)
    else:
        neg, hi, lo, e, sticky = from_double(b)
        neg, c = float_round(neg, hi, lo, e, sticky, mbits, emin, max_code, nan_code, inf_code,
                             special, subn, overflow_sat, qmode, sr_bits, key, idx, zoff,
                             code_par, has_user, user_rnd)
    if zoff != 0 and c != _U0:
        c -= np.uint64(zoff)
    return neg, c


@jit
def float_value(neg, code, mbits, emin, nan_code, inf_code, special, zoff=0):
    """Value of a float magnitude code with sign ``neg`` (``zoff``: see :func:`float_element`)."""
    code += np.uint64(zoff)
    if special == S_FNUZ or special == S_FNUZ_INF:
        if neg and code == _U0:
            return np.nan
        if special == S_FNUZ_INF and code == inf_code:
            return -np.inf if neg else np.inf
    elif special == S_FN_INF:
        if code == nan_code:
            return np.nan
        if code == inf_code:
            return -np.inf if neg else np.inf
    elif special == S_IEEE:
        if code >= inf_code:
            if code == inf_code:
                return -np.inf if neg else np.inf
            return np.nan
    elif special == S_FN:
        if code == nan_code:
            return np.nan
    ef = np.int64(code >> np.uint64(mbits))
    frac = code & ((_U1 << np.uint64(mbits)) - _U1)
    if ef == 0:
        v = np.float64(frac) * pow2(emin - mbits)
    else:
        v = np.float64(frac | (_U1 << np.uint64(mbits))) * pow2(emin + ef - 1 - mbits)
    return -v if neg else v


# ---------------------------------------------------------------------------------------------
# Fast paths. Each block is first converted by a branch-free loop that the compiler can
# vectorise; elements outside the fast path's domain are flagged and then redone, exactly, by
# the element functions above. Both give identical results where both apply (tested).



@jit
def fixed_fast_element(xi, si, qmode, omode, lo, hi, tiny):
    """Round ``xi·2^F`` to an integer by ``qmode`` and saturate by ``omode``, in doubles.

    Returns (ok, v) with v the integer as a double (wrapping is left to the caller). ``ok`` is
    False outside the fast domain 0 < |xi·2^F| < 2^52 (or xi == 0), where the caller must use
    :func:`fixed_element`. Within it ``t = floor(y)`` and ``t + 0.5`` are exact, so comparing
    ``y`` with them decides every deterministic mode exactly. ``lo``/``hi`` are the integer
    limits (±max for SAT_SYM). Inputs below ``tiny`` go to the exact path, which models how
    the vendor reads them (ap: subnormal doubles; ac: underflow while pre-scaling).
    """
    y = xi * si
    ok = (abs(y) < _TWO52) & ((y != 0.0) | (xi == 0.0)) & ((abs(xi) >= tiny) | (xi == 0.0))
    y = y * np.float64(ok)
    t = np.floor(y)
    if qmode == FLOOR:
        v = t
    elif qmode == HALF_EVEN:
        v = np.rint(y)
    elif qmode == CEIL:
        v = np.ceil(y)
    elif qmode == TO_ZERO:
        v = np.trunc(y)
    elif qmode == HALF_UP:
        v = t + np.float64(y >= t + 0.5)
    elif qmode == HALF_DOWN:
        v = t + np.float64(y > t + 0.5)
    elif qmode == HALF_ZERO:
        h = t + 0.5
        v = t + np.float64((y > h) | ((y == h) & (y < 0.0)))
    elif qmode == HALF_AWAY:
        h = t + 0.5
        v = t + np.float64((y > h) | ((y == h) & (y > 0.0)))
    else:  # HALF_ODD
        h = t + 0.5
        v = t + np.float64((y > h) | ((y == h) & ((np.int64(t) & 1) == 0)))
    if omode == O_SAT or omode == O_SAT_SYM:
        v = min(max(v, lo), hi)
    elif omode == O_SAT_ZERO:
        v = v * np.float64((v <= hi) & (v >= lo))
    return ok, v


@jit
def float_fast_element(b, k, qmode, minnorm, maxbits):
    """Round the double with bits ``b`` to ``52 - k`` mantissa bits by integer addition on its
    bit pattern (carries into the exponent are exactly the binade changes).

    Returns (ok, rounded bits). ``ok`` is False unless the input is ±0 or the input is at least
    the format's smallest normal and the result is finite and at most its max; the caller then
    uses :func:`float_element`.
    """
    sign = b & (_U1 << np.uint64(63))
    mag = b & ~(_U1 << np.uint64(63))
    if k == 0:
        r = mag
    else:
        ku = np.uint64(k)
        low = (_U1 << ku) - _U1
        if qmode == HALF_EVEN:
            inc = (low >> _U1) + ((mag >> ku) & _U1)
        elif qmode == HALF_AWAY:
            inc = _U1 << np.uint64(k - 1)
        elif qmode == TO_ZERO:
            inc = _U0
        elif qmode == CEIL:
            inc = _U0 if sign else low
        elif qmode == FLOOR:
            inc = low if sign else _U0
        else:  # TO_ODD
            inc = _U0
        r = (mag + inc) & ~low
        if qmode == TO_ODD:
            r |= np.uint64((mag & low) != _U0) << ku
    ok = ((mag >= minnorm) & (r <= maxbits)) | (mag == _U0)
    return ok, sign, r



# ---------------------------------------------------------------------------------------------
# Array kernels (1-D, contiguous): one entry per conversion. ``x`` is the float64 input and
# ``xb`` the same memory viewed as uint64; ``p`` a FixedParams/FloatParams
# (:mod:`fxemu._kernels.params`). Each kernel runs its fast pass, then redoes the elements
# outside the fast domain exactly, and returns how many NaN inputs it refused (``nan_raise``:
# NaN into a format without NaN, or a negative value into an unsigned float format without
# NaN; those elements are left unwritten). ``rbits`` holds the caller's random bits for
# stochastic rounding, one per element, or is empty (the counter-based generator draws).


@functools.cache
def fixed_kernel(qmode, omode, fast, codes):
    """The conversion kernel into fixed formats: ``kernel(x, xb, out, p, sr_bits, key,
    nan_raise, rbits) -> refused NaN count``; ``out`` gets codes (uint64) when ``codes``, else
    values.

    With ``fast`` the rounding and overflow modes are closure constants, so the compiler
    folds the mode dispatch away and can vectorise the fast pass (about 4× faster than
    dispatching at run time); Numba's on-disk cache keys each variant by the closure values.
    Without it (qmode = omode = -1 by convention) every element takes the exact path.
    """

    def kernel(x, xb, out, p, sr_bits, key, nan_raise, rbits):
        n = x.shape[0]
        si, lo, hi, tiny, scale = p.si, p.lo, p.hi, p.tiny, p.scale
        has_user = rbits.shape[0] != 0
        nbad = n
        if fast:
            nbad = 0
            span = p.span
            off = p.off
            inv = 1.0 / span
            mask = p.mask
            for i in prange(n):
                ok, v = fixed_fast_element(x[i], si, qmode, omode, lo, hi, tiny)
                nbad += np.int64(not ok)
                if codes:
                    out[i] = np.uint64(np.int64(v)) & mask
                else:
                    # WRAP maps v to v - span·floor((v + off)/span) (span = 2^W): exact for
                    # |v| < 2^52 and rounded to nearest only where the wrapped value needs
                    # more than 53 bits (W > 53), as the exact path's conversion of the code is
                    if omode == O_WRAP:
                        v = v - span * np.floor((v + off) * inv)
                    out[i] = (v + 0.0) * scale  # + 0.0 turns a -0 into the register's +0
        nnan = 0
        if nbad:
            w, f, signed = p.width, p.frac, p.signed
            for i in prange(n):
                ok = False
                if fast:
                    ok, _ = fixed_fast_element(x[i], si, qmode, omode, 0.0, 0.0, tiny)
                if not ok:
                    if nan_raise and x[i] != x[i]:
                        nnan += 1
                    else:
                        c = fixed_element(xb[i], w, f, signed, p.qmode, p.omode, p.nsat,
                                          p.lib_ac, p.ac_shift, sr_bits, key, i, has_user,
                                          rbits[i] if has_user else _U0)
                        if codes:
                            out[i] = c
                        else:
                            out[i] = fixed_value(c, w, signed, scale)
        return nnan

    kernel.__qualname__ = f"fixed_kernel_q{qmode}_o{omode}_f{int(fast)}_c{int(codes)}"
    return pjit(kernel)


@jit
def float_fast_sub(a, qmode, neg):
    """Round the magnitude ``a`` (> 0, a double) to an integer by ``qmode`` on the magnitude
    (``neg``: the sign of the value, for the directed modes), in doubles: exact, as floor,
    ceil and rint of a double are, and ``a - floor(a)`` is exact."""
    t = np.floor(a)
    if qmode == HALF_EVEN:
        return np.rint(a)
    if qmode == HALF_AWAY:
        return t + np.float64(a - t >= 0.5)
    if qmode == CEIL:
        return t if neg else np.ceil(a)
    if qmode == FLOOR:
        return np.ceil(a) if neg else t
    if qmode == TO_ODD:
        return t + np.float64((a != t) & ((np.int64(t) & 1) == 0))
    return t  # TO_ZERO


@jit
def float_fast_value(b, k, qmode, minnorm, maxbits, subfast, subs, subq):
    """:func:`float_fast_element` extended to results in the format's subnormal range.

    Returns (ok, sign, rounded bits, subnormal count): where ``subfast`` (a format with
    subnormals whose smallest normal is a normal double, see
    :class:`~fxemu._kernels.params.FloatParams`) and the input is nonzero below the
    smallest normal, its magnitude is scaled exactly onto the grid of the smallest
    subnormal (``subs`` = 2^(M - emin)), rounded to the integer count ``v`` of that step by
    :func:`float_fast_sub` and scaled back (``subq`` = 2^(emin - M)); v = 2^M is the
    smallest normal, reached by rounding up. Elsewhere the count is -1.
    """
    ok, sign, r = float_fast_element(b, k, qmode, minnorm, maxbits)
    mag = b & ~(_U1 << np.uint64(63))
    v = -1.0
    if subfast and mag < minnorm and mag != _U0:
        v = float_fast_sub(bits_f64(mag) * subs, qmode, sign != _U0)
        r = f64_bits(v * subq)
        ok = True
    return ok, sign, r, v


@functools.cache
def float_kernel(qmode, fast, codes):
    """The conversion kernel into float formats: ``kernel(x, xb, out, p, sr_bits, key,
    nan_raise, rbits) -> refused NaN count`` (``x`` unused); ``out`` gets codes or values. The fast
    pass rounds by integer addition on the double's bit pattern, and results in the
    subnormal range on their fixed grid (:func:`float_fast_value`); ``qmode`` (the format's
    rounding, with ``fast``) is a closure constant, so the mode dispatch folds away. Without
    ``fast`` (qmode = -1 by convention) every element takes the exact path."""

    def kernel(x, xb, out, p, sr_bits, key, nan_raise, rbits):
        n = xb.shape[0]
        k, minnorm, maxbits = p.k, p.minnorm, p.maxbits
        subfast, subs, subq = p.subfast, p.subs, p.subq
        sign_bit = p.sign_bit
        unsigned = p.unsigned
        has_user = rbits.shape[0] != 0
        nbad = n
        if fast:
            nbad = 0
            fnuz = p.fnuz
            mbits = p.mbits
            ebias = np.uint64(1023 - p.bias)
            mmask = (_U1 << np.uint64(mbits)) - _U1
            for i in prange(n):
                ok, sign, r, v = float_fast_value(xb[i], k, qmode, minnorm, maxbits, subfast,
                                                  subs, subq)
                ok = ok & ~(unsigned & (sign != _U0))  # branch-free, as the fast pass is
                nbad += np.int64(not ok)
                if codes:
                    if r == _U0:
                        code = _U0 if fnuz else (sign_bit if sign else _U0)
                    elif v >= 0.0:
                        code = np.uint64(v) | (sign_bit if sign else _U0)
                    else:
                        code = ((((r >> np.uint64(52)) - ebias) << np.uint64(mbits))
                                | ((r >> np.uint64(k)) & mmask))
                        if sign:
                            code |= sign_bit
                    out[i] = code
                else:
                    if fnuz and r == _U0:
                        sign = _U0
                    out[i] = bits_f64(sign | r)
        nnan = 0
        if nbad:
            q = p.qmode
            for i in prange(n):
                ok = False
                if fast:
                    ok, s2, _, _ = float_fast_value(xb[i], k, qmode, minnorm, maxbits, subfast,
                                                    subs, subq)
                    ok = ok and not (unsigned and s2 != _U0)
                if not ok:
                    b = xb[i]
                    mag = b & ~(_U1 << np.uint64(63))
                    if nan_raise and (mag > np.uint64(0x7FF0000000000000)
                                      or (unsigned and mag != b
                                          and not unsigned_negative_is_zero(
                                              b, p.zoff, q, p.overflow_sat))):
                        nnan += 1
                    else:
                        neg, c = float_element(b, p.mbits, p.emin, p.max_code, p.nan_code,
                                               p.inf_code, p.special, p.subn, p.overflow_sat,
                                               q, sr_bits, key, i, p.sat_inf, unsigned,
                                               p.zoff, p.code_par, has_user,
                                               rbits[i] if has_user else _U0)
                        if codes:
                            out[i] = (sign_bit | c) if neg else c
                        else:
                            out[i] = float_value(neg, c, p.mbits, p.emin, p.nan_code,
                                                 p.inf_code, p.special, p.zoff)
        return nnan

    kernel.__qualname__ = f"float_kernel_q{qmode}_f{int(fast)}_c{int(codes)}"
    return pjit(kernel)


@pjit
def fixed_decode(codes, out, p):
    """Values of W-bit fixed codes (``p``: FixedParams)."""
    w, signed, scale = p.width, p.signed, p.scale
    mask = _ALL >> np.uint64(64 - w)
    for i in prange(codes.shape[0]):
        out[i] = fixed_value(codes[i] & mask, w, signed, scale)


@pjit
def float_decode(codes, out, p):
    """Values of float codes (``p``: FloatParams)."""
    sign_bit = p.sign_bit
    mag_mask = sign_bit - _U1
    for i in prange(codes.shape[0]):
        c = codes[i]
        out[i] = float_value((c & sign_bit) != _U0, c & mag_mask, p.mbits, p.emin, p.nan_code,
                             p.inf_code, p.special, p.zoff)
