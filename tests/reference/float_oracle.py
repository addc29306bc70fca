"""Slow, obviously-correct reference for rounding exact rationals into an ``fx.Float`` format.

Everything here is exact integer / :class:`fractions.Fraction` arithmetic, written for clarity
rather than speed. The semantics follow the docstrings of ``fxemu.formats``:

* A positive finite value of the format is ``m · 2^(e - M)`` with ``e >= emin = 1 - bias`` and an
  integer significand ``m``: ``2^M <= m < 2^(M+1)`` (normal) or ``m < 2^M`` at ``e = emin``
  (subnormal). Its *magnitude code* (the code without the sign bit) is
  ``(e - emin) · 2^M + m`` for normals, ``m`` for subnormals; codes are monotone in the value.
* Rounding is sign-magnitude: the magnitude ``a = |x|`` lies in the binade ``[2^e, 2^(e+1))``
  (``e`` clamped below at ``emin``); with quantum ``q = 2^(e - M)`` and ``n = a / q`` the
  candidates are ``floor(n)`` and ``floor(n) + 1`` (the latter may be ``2^(M+1)``, the first
  value of the next binade). Ties-to-even and round-to-odd look at the parity of that integer
  significand, which for M >= 1 is the parity of the code. (For M = 0 the normal significand is
  always 1, so ties go up to the next binade and round-to-odd truncates — unless the format
  has ``code_ties``: then the parity of the code, the exponent field, IEEE P3109's rule.)
  The exponent range is unbounded above while rounding; overflow is decided afterwards.
* Overflow (rounded magnitude above ``max``): ``overflow="sat"`` gives ±max. ``"inf"`` follows
  IEEE 754 §7.4: roundings that never increase the magnitude for this sign (rtz, rdn for x > 0,
  rup for x < 0) and round-to-odd give ±max; the others give ±inf; a format without inf gives
  NaN instead, or ±max when it has no NaN either.
* ``subnormals=False`` (FTZ): round as if subnormals existed, then a subnormal result becomes a
  zero of the same sign. ``fnuz`` has no −0: every zero result is +0.
* NaN codes: ieee ``sign | all-ones exponent | quiet bit (mantissa MSB)``; fn ``sign | all-ones``;
  fnuz ``0x80…``; ``none`` has no NaN (``ValueError``); fnuz_inf ``0x80…`` with ±inf at the
  all-ones magnitude; fn_inf NaN at all-ones and inf at the code below.
* Unsigned formats (no sign bit): a negative input (-inf included) is NaN, -0 is +0, and under
  saturation or a finite rtz/rup the smallest value (IEEE P3109's rule). A format
  without zero (``zero=False``, M = 0): magnitude codes are one less than the same format's
  with zero (exponent field 0 is 2^-bias); results below its smallest give it, ±0 is NaN.
* More modes: ties_zero/ties_odd/ties_pos/ties_neg (nearest, ties toward 0 / odd / +inf /
  -inf), to_away (up in magnitude), jam (the magnitude's code truncated, then made odd, for
  every nonzero value; exact ones too). Overflow of jam acts as a rounding toward 0.
* Overflow ``sat_finite``: as ``sat``, and ±inf inputs give ±max too.
* ±inf inputs are exact, not an overflow: an ieee format gives ±inf (whatever the rounding and
  overflow mode); a format without inf gives ±max under ``overflow="sat"``, else its NaN
  (fn: ``sign | all-ones``, fnuz: ``0x80…``, as ml_dtypes), else (``none``) ±max.
"""

from __future__ import annotations

import math
from fractions import Fraction

__all__ = [
    "MAG_MODES",
    "MOVING_MAG_MODES",
    "FloatSpec",
    "bracket",
    "choose",
    "code_magnitude",
    "code_value",
    "finish",
    "float_code",
    "magnitude_mode",
    "round_magnitude",
]

#: Magnitude rounding modes (sign already taken out).
MAG_MODES = ("nearest_even", "nearest_away", "down", "up", "odd", "nearest_down",
             "nearest_odd")
#: jamming changes exact values too (choose models it; not in MAG_MODES, whose every mode
#: keeps a grid value)
MOVING_MAG_MODES = ("jam",)


class FloatSpec:
    """Plain-integer view of an ``fx.Float`` (kept independent of the library's internals)."""

    def __init__(self, fmt) -> None:
        self.E = int(fmt.exp_bits)
        self.M = int(fmt.man_bits)
        self.bias = int(fmt.bias)
        self.subnormals = bool(fmt.subnormals)
        self.special = fmt.special.value  # "ieee" | "fn" | "fnuz" | "none" | "*_inf"
        self.rounding = fmt.rounding.value
        self.overflow = fmt.overflow.value  # "inf" | "sat" | "sat_finite"
        self.signed = bool(getattr(fmt, "signed", True))
        self.zoff = 0 if getattr(fmt, "zero", True) else 1  # no zero: codes one lower
        self.code_ties = bool(getattr(fmt, "code_ties", False))
        self.emin = 1 - self.bias - self.zoff
        top = (1 << self.E) - 1  # all-ones exponent field
        ones = (1 << self.M) - 1
        every = (1 << (self.E + self.M)) - 1 + self.zoff  # the all-ones magnitude
        if self.special == "ieee":
            self.max_code = (top << self.M) - 1  # exponent top-1, mantissa all ones
            self.inf_code = top << self.M
            self.nan_code = (top << self.M) | (1 << (self.M - 1))  # fx.Float needs M >= 1 here
        elif self.special == "fn":
            if self.M == 0:  # the whole all-ones binade is NaN
                self.max_code = top - 1
            else:
                self.max_code = (top << self.M) | (ones - 1)
            self.inf_code = None
            self.nan_code = (top << self.M) | ones
        elif self.special == "fn_inf":
            self.max_code, self.inf_code, self.nan_code = every - 2, every - 1, every
        elif self.special == "fnuz_inf":
            self.max_code, self.inf_code, self.nan_code = every - 1, every, 0
        else:
            self.max_code = (top << self.M) | ones
            self.inf_code = None
            self.nan_code = 0 if self.special == "fnuz" else None  # fnuz: the code of "-0"
        if self.special == "fn":
            self.nan_code = every
            self.max_code = every - 1
        self.sign_bit = (1 << (self.E + self.M)) if self.signed else 0
        self.max = code_magnitude(self.max_code, self.M, self.emin)


def code_magnitude(c: int, M: int, emin: int) -> Fraction:
    """Exact value of a (possibly out-of-range, unbounded) positive magnitude code."""
    ef, frac = divmod(c, 1 << M)
    if ef == 0:
        return Fraction(frac) * Fraction(2) ** (emin - M)
    return Fraction((1 << M) + frac) * Fraction(2) ** (emin + ef - 1 - M)


def _floor_log2(a: Fraction) -> int:
    """floor(log2(a)) for a > 0, exactly."""
    p, q = a.numerator, a.denominator
    e = p.bit_length() - q.bit_length()  # 2^(e-1) < p/q < 2^(e+1)
    if (p << max(-e, 0)) < (q << max(e, 0)):  # p/q < 2^e
        e -= 1
    return e


def magnitude_mode(rounding: str, negative: bool) -> str:
    """Translate a signed rounding mode to the rule applied to the magnitude."""
    return (_NEG_MODES if negative else _POS_MODES)[rounding]


_POS_MODES = {"rne": "nearest_even", "rna": "nearest_away", "rtz": "down", "rup": "up",
              "rdn": "down", "rto": "odd", "ties_zero": "nearest_down",
              "ties_odd": "nearest_odd", "ties_pos": "nearest_away", "ties_neg": "nearest_down",
              "to_away": "up", "jam": "jam"}
_NEG_MODES = {**_POS_MODES, "rup": "down", "rdn": "up", "ties_pos": "nearest_down",
              "ties_neg": "nearest_away"}


def bracket(a: Fraction, M: int, emin: int) -> tuple[int, int, Fraction]:
    """Locate ``a >= 0`` on the unbounded grid.

    Returns ``(code, m, rest)``: ``a = (m + rest) · 2^(e - M)`` with ``e = max(floor(log2 a),
    emin)``, integer significand ``m`` and ``0 <= rest < 1``; ``code`` is the magnitude code of
    ``m · 2^(e - M)`` (the lower neighbour); the upper neighbour is ``code + 1``.
    """
    a = Fraction(a)
    if a == 0:
        return 0, 0, Fraction(0)
    e = max(_floor_log2(a), emin)
    n = a * Fraction(2) ** (M - e)  # a in units of the quantum 2^(e - M)
    m = math.floor(n)
    # m < 2^(M+1); m >= 2^M unless e == emin (subnormal): the code formula covers both
    return (e - emin) * (1 << M) + m, m, n - m


def choose(code: int, m: int, rest: Fraction, mode: str) -> int:
    """Round a bracketed magnitude (see :func:`bracket`) under a magnitude mode.

    Ties-to-even and round-to-odd use the parity of the integer significand ``m`` (pass the
    code as ``m`` for the code's parity). ``jam`` makes every nonzero significand odd, exact
    ones too.
    """
    if mode == "jam":
        return code if (m % 2 == 1 or (code == 0 and rest == 0)) else code + 1
    if rest == 0 or mode == "down":
        return code
    if mode == "up":
        return code + 1
    if mode == "odd":
        return code if m % 2 == 1 else code + 1
    if rest != Fraction(1, 2):
        return code if rest < Fraction(1, 2) else code + 1
    if mode == "nearest_away":
        return code + 1
    if mode == "nearest_down":
        return code
    if mode == "nearest_even":
        return code if m % 2 == 0 else code + 1
    if mode == "nearest_odd":
        return code if m % 2 == 1 else code + 1
    raise ValueError(mode)


def round_magnitude(a: Fraction, M: int, emin: int, mode: str) -> int:
    """Round ``a >= 0`` onto the unbounded grid; return the magnitude code."""
    return choose(*bracket(a, M, emin), mode)


def finish(spec: FloatSpec, negative: bool, code: int, mode: str) -> int:
    """Apply overflow, FTZ and the zero/sign rules to an unbounded magnitude ``code``.

    ``mode`` is the magnitude mode that produced it (decides the IEEE overflow result).
    Returns the full code (sign bit included).
    """
    sign = spec.sign_bit if negative else 0
    if code > spec.max_code:
        if spec.overflow != "inf" or mode in ("down", "odd", "jam"):
            return sign | spec.max_code
        if spec.inf_code is not None:
            return sign | spec.inf_code
        if spec.special == "fn":
            return sign | spec.nan_code
        if spec.special == "fnuz":
            return spec.sign_bit  # the single NaN
        return sign | spec.max_code
    if not spec.subnormals and 0 < code < (1 << spec.M):
        code = 0
    if code == 0 and spec.special in ("fnuz", "fnuz_inf"):
        return 0
    return sign | code


def nan_code(spec: FloatSpec, negative: bool = False) -> int:
    """Code a NaN input maps to."""
    if spec.special in ("fnuz", "fnuz_inf"):
        return spec.sign_bit
    if spec.nan_code is None:
        raise ValueError("format has no NaN")
    return (spec.sign_bit if negative else 0) | spec.nan_code


def inf_code(spec: FloatSpec, negative: bool) -> int:
    """Code a ±inf input maps to."""
    sign = spec.sign_bit if negative else 0
    if spec.inf_code is not None:
        return sign | (spec.max_code if spec.overflow == "sat_finite" else spec.inf_code)
    if spec.overflow != "inf" or spec.special == "none":
        return sign | spec.max_code
    return nan_code(spec, negative)


def float_code(x, fmt) -> int:
    """The code of ``x`` (a float, int or Fraction) rounded into ``fmt`` (not stochastic)."""
    spec = fmt if isinstance(fmt, FloatSpec) else FloatSpec(fmt)
    code = _code(x, spec)
    # no zero: codes are one lower, and a result below the smallest gives the smallest
    return max(code, 1) - 1 if spec.zoff else code


def _unsigned_negative(spec: FloatSpec, x) -> int:
    """A negative input into an unsigned format: NaN, except -0 (+0 where there is a zero),
    saturation and finite rtz/rup (the smallest value), as IEEE P3109 states."""
    if x == 0 and not spec.zoff:
        return 0
    if x != 0 and (spec.overflow != "inf"
                   or (spec.rounding in ("rtz", "rup") and not math.isinf(x))):
        return 0
    return nan_code(spec)


def _code(x, spec: FloatSpec) -> int:
    if isinstance(x, float):
        if math.isnan(x):
            return nan_code(spec, math.copysign(1.0, x) < 0)
        negative = math.copysign(1.0, x) < 0
        if not spec.signed and negative:
            return _unsigned_negative(spec, x)
        if math.isinf(x):
            return inf_code(spec, x < 0)
    else:
        negative = x < 0
        if not spec.signed and negative:
            return _unsigned_negative(spec, x)
    if not spec.signed:
        negative = False
    a = abs(Fraction(x))
    if spec.zoff and a == 0:
        return nan_code(spec)
    mode = magnitude_mode(spec.rounding, negative)
    code, m, rest = bracket(a, spec.M, spec.emin)
    if spec.code_ties:
        m = code + spec.zoff  # the parity of the format's own code
    return finish(spec, negative, choose(code, m, rest, mode), mode)


def code_value(code: int, fmt) -> float:
    """Value of a full code as a float (NaN for NaN codes; subnormal codes decode exactly)."""
    spec = fmt if isinstance(fmt, FloatSpec) else FloatSpec(fmt)
    negative = bool(code & spec.sign_bit)
    c = (code & (spec.sign_bit - 1) if spec.signed else code) + spec.zoff
    if spec.special in ("fnuz", "fnuz_inf") and negative and c == 0:
        return math.nan
    if spec.special == "ieee" and c >= spec.inf_code:
        return (-math.inf if negative else math.inf) if c == spec.inf_code else math.nan
    if spec.special in ("fn", "fn_inf") and c == spec.nan_code:
        return math.nan
    if spec.special in ("fn_inf", "fnuz_inf") and c == spec.inf_code:
        return -math.inf if negative else math.inf
    v = float(code_magnitude(c, spec.M, spec.emin))
    return -v if negative else v
