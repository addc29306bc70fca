"""Number formats: fixed point with HLS ``ap_fixed``/``ac_fixed`` semantics and small floats.

A :class:`Fixed` value is ``integer × 2^-F`` with ``F = width - int_bits`` fraction bits; the
integer is a ``width``-bit two's complement (``signed=True``) or unsigned number. Quantization
(``rounding``) and overflow handling happen only on assignment into the format.

A :class:`Float` value is ``(-1)^s × 2^(e - bias) × 1.m`` (normal) or
``(-1)^s × 2^(1 - bias) × 0.m`` (subnormal, exponent field 0), laid out as
``sign | exp_bits | man_bits`` in a ``1 + exp_bits + man_bits``-bit code.

Both are frozen, hashable dataclasses; ``str(fmt)`` is canonical and ``parse(str(fmt)) == fmt``.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass, field
from fractions import Fraction

from ._errors import msg

__all__ = [
    "PRESETS",
    "Fixed",
    "FixedOverflow",
    "FixedRounding",
    "Float",
    "FloatOverflow",
    "FloatRounding",
    "Format",
    "Mac",
    "Special",
    "fixed_cpp_type",
    "float_cpp_type",
    "p3109",
    "parse",
]


class FixedRounding(enum.Enum):
    """Fixed-point quantization modes, spelled as the ``AP_``/``AC_`` C++ tokens.

    With ``t = floor(x·2^F)`` and residue ``r = x·2^F - t``:
    ``TRN`` t; ``RND`` ties toward +inf; ``RND_ZERO`` ties toward 0; ``RND_MIN_INF`` ties toward
    -inf; ``RND_INF`` ties away from 0; ``RND_CONV`` ties to even; ``TRN_ZERO`` toward 0;
    ``RND_CONV_ODD`` ties to odd (ac_fixed only); ``STOCHASTIC`` ``floor(x·2^F + u)`` with ``u``
    uniform on the ``sr_bits`` grid (two's complement datapath; not an HLS mode).
    Beyond the HLS libraries, as APyTypes defines them (no C++ type): ``TRN_INF`` toward +inf
    (ceil); ``TRN_AWAY`` away from 0; ``TRN_MAG`` ``t + 1`` for negative ``x`` (exact ones
    too), else ``t`` — the two's complement hardware's "magnitude truncation", which differs
    from ``TRN_ZERO`` on exact negative values; ``JAM`` ``t | 1`` (von Neumann jamming: the LSB
    of the two's complement floor is set, exact values and 0 included); ``RTO`` round to odd:
    ``t`` if exact, else the odd one of ``t`` and ``t + 1`` (= ``t | 1``; APyTypes
    ``JAM_UNBIASED``).
    """

    TRN = "trn"
    RND = "rnd"
    RND_ZERO = "rnd_zero"
    RND_MIN_INF = "rnd_min_inf"
    RND_INF = "rnd_inf"
    RND_CONV = "rnd_conv"
    TRN_ZERO = "trn_zero"
    RND_CONV_ODD = "rnd_conv_odd"
    STOCHASTIC = "stochastic"
    TRN_INF = "trn_inf"
    TRN_AWAY = "trn_away"
    TRN_MAG = "trn_mag"
    JAM = "jam"
    RTO = "rto"

    @property
    def is_hls(self) -> bool:
        """Whether ap_fixed or ac_fixed has this mode (ap_fixed lacks ``RND_CONV_ODD``)."""
        return self not in _NON_HLS_FIXED and self is not FixedRounding.STOCHASTIC

    @property
    def keeps_exact(self) -> bool:
        """Whether a value already in the format is stored unchanged (not so for ``JAM``,
        which sets the LSB, and ``TRN_MAG``, which adds one LSB to negative values)."""
        return self not in (FixedRounding.JAM, FixedRounding.TRN_MAG)


class FixedOverflow(enum.Enum):
    """Fixed-point overflow modes (``AP_``/``AC_`` tokens).

    ``SAT`` clamp to [min, max]; ``SAT_ZERO`` overflow gives 0; ``SAT_SYM`` clamp to ±max (min
    itself counts as overflow for signed formats); ``WRAP`` keep the low ``width`` bits, then force
    the top ``sat_bits`` bits as ap_fixed does; ``WRAP_SM`` sign-magnitude wrap (ap_fixed, signed).
    """

    SAT = "sat"
    SAT_ZERO = "sat_zero"
    SAT_SYM = "sat_sym"
    WRAP = "wrap"
    WRAP_SM = "wrap_sm"


class FloatRounding(enum.Enum):
    """Float rounding: ``RNE`` ties to even, ``RNA`` ties away, ``RTZ`` toward 0, ``RUP`` toward
    +inf, ``RDN`` toward -inf, ``RTO`` round to odd (sticky; APyTypes ``JAM_UNBIASED``),
    ``STOCHASTIC`` magnitude rounded up with probability equal to the residue truncated to
    ``sr_bits`` bits (sign-magnitude datapath), ``TIES_ZERO`` / ``TIES_ODD`` / ``TIES_POS`` /
    ``TIES_NEG`` nearest with ties toward 0 / to odd / toward +inf / toward -inf, ``TO_AWAY``
    away from 0, ``JAM`` magnitude truncated then its LSB set, for every nonzero value (exact
    ones too; APyTypes ``JAM``). ``STOCHASTIC_RNE`` / ``STOCHASTIC_RNO``: as ``STOCHASTIC``
    with the residue rounded (ties to even / odd) to ``sr_bits`` bits instead of truncated
    (gfloat ``Stochastic``/``StochasticOdd``, pychop P3109 ``stochastic_c``);
    ``STOCHASTIC_HALF``: up when residue + (draw + 1/2)·2^-r >= 1 (gfloat ``StochasticFast``,
    pychop ``stochastic_b``). "Even"/"odd" of a tie is the significand's parity (the code's
    for M >= 1; with ``code_ties`` at M = 0 too, IEEE P3109's rule).
    """

    RNE = "rne"
    RNA = "rna"
    RTZ = "rtz"
    RUP = "rup"
    RDN = "rdn"
    RTO = "rto"
    STOCHASTIC = "stochastic"
    TIES_ZERO = "ties_zero"
    TIES_ODD = "ties_odd"
    TIES_POS = "ties_pos"
    TIES_NEG = "ties_neg"
    TO_AWAY = "to_away"
    JAM = "jam"
    STOCHASTIC_RNE = "stochastic_rne"
    STOCHASTIC_RNO = "stochastic_rno"
    STOCHASTIC_HALF = "stochastic_half"

    @property
    def keeps_exact(self) -> bool:
        """Whether a value already in the format is stored unchanged (not so for ``JAM``)."""
        return self is not FloatRounding.JAM


class Special(enum.Enum):
    """Special-value policy of a float format.

    ``IEEE`` exponent all-ones holds inf (mantissa 0) and NaN; ``FN`` no inf, NaN only at
    exponent and mantissa all-ones (either sign); ``FNUZ`` no inf and no -0, the single NaN is
    the code of -0 (``0x80…``); ``NONE`` every code is a finite number; ``FNUZ_INF`` the NaN
    at the code of -0 and ±inf at the all-ones magnitude (IEEE P3109 signed, extended);
    ``FN_INF`` NaN at the all-ones magnitude and +inf at the code below it (P3109 unsigned,
    extended; P3109 unsigned finite is ``FN``).
    """

    IEEE = "ieee"
    FN = "fn"
    FNUZ = "fnuz"
    NONE = "none"
    FNUZ_INF = "fnuz_inf"
    FN_INF = "fn_inf"


class FloatOverflow(enum.Enum):
    """Float overflow: ``INF`` as IEEE 754 (directed rounding toward 0 gives ±max; formats
    without inf give NaN, or ±max when they have no NaN either) or ``SAT`` (±max). Both act on
    finite values beyond ±max; ±inf inputs keep ±inf in a format with inf (see :class:`Float`).
    ``SAT_FINITE`` is ``SAT`` that takes ±inf inputs to ±max too. These are IEEE P3109's
    OvfInf (``inf``), SatPropagate (``sat``) and SatFinite (``sat_finite``)."""

    INF = "inf"
    SAT = "sat"
    SAT_FINITE = "sat_finite"


def _enum(cls: type[enum.Enum], value: object, what: str) -> enum.Enum:
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        key = value.strip().lower()
        for prefix in ("ap_", "ac_", "sc_"):
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
        for member in cls:
            if member.value == key:
                return member
    names = ", ".join(m.value for m in cls)
    raise ValueError(msg(what, f"must be one of {names}", value))


def _int(value: object, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            import numpy as np

            if isinstance(value, np.integer):
                value = int(value)
            else:
                raise TypeError(msg(what, "must be an int", value))
        except ImportError:  # pragma: no cover
            raise TypeError(msg(what, "must be an int", value)) from None
    if not lo <= value <= hi:
        raise ValueError(msg(what, f"must be in {lo}..{hi}", value))
    return value


def _exact(v: Fraction) -> float:
    """Fraction → float, rounding to nearest (exact whenever the value fits in a double)."""
    return float(v)


# -- C++ type spelling: the one converter (Fixed/Float.hls_type and fxemu.hw.codegen call it) ---
def fixed_cpp_type(width: int, int_bits: int, *, signed: bool = True, lib: str = "ap",
                   rounding: FixedRounding | None = None, overflow: FixedOverflow | None = None,
                   sat_bits: int = 0) -> str:
    """The C++ spelling of a fixed-point type.

    With ``rounding`` and ``overflow`` given: ``ap_fixed<W,I,AP_Q,AP_O,N>`` (``ap_ufixed`` when
    unsigned) or ``ac_fixed<W,I,S,AC_Q,AC_O>``; with both None, the library's defaults
    (truncate, wrap) in the short form ``ap_fixed<W,I>`` / ``ac_fixed<W,I,S>``. The mode
    tokens are the enum names (:class:`FixedRounding`, :class:`FixedOverflow`). Spelling only:
    the caller checks that W, I and N are in range for the C++ it writes.

    >>> fixed_cpp_type(16, 8, rounding=FixedRounding.RND_CONV, overflow=FixedOverflow.SAT)
    'ap_fixed<16,8,AP_RND_CONV,AP_SAT,0>'
    >>> fixed_cpp_type(52, 36, lib="ac")
    'ac_fixed<52,36,true>'
    """
    if (rounding is None) != (overflow is None):
        raise ValueError(msg("fixed_cpp_type", "give both rounding and overflow, or neither",
                             (rounding, overflow)))
    if lib == "ac":
        s = "true" if signed else "false"
        modes = "" if rounding is None else f",AC_{rounding.name},AC_{overflow.name}"
        return f"ac_fixed<{width},{int_bits},{s}{modes}>"
    if lib != "ap":
        raise ValueError(msg("fixed_cpp_type lib", "must be 'ap' or 'ac'", lib))
    name = "ap_fixed" if signed else "ap_ufixed"
    modes = "" if rounding is None else f",AP_{rounding.name},AP_{overflow.name},{sat_bits}"
    return f"{name}<{width},{int_bits}{modes}>"


def float_cpp_type(width: int, exp_bits: int) -> str:
    """The C++ spelling of an IEEE-layout float, ``ac_std_float<W,E>`` (spelling only).

    >>> float_cpp_type(16, 5)
    'ac_std_float<16,5>'
    """
    return f"ac_std_float<{width},{exp_bits}>"


@dataclass(frozen=True)
class Fixed:
    """Fixed-point format ``ap_fixed<W,I,Q,O,N>`` (``lib="ap"``) or ``ac_fixed<W,I,S,Q,O>``.

    Parameters
    ----------
    width : int
        Total bits W, 1..64.
    int_bits : int
        Integer bits I including the sign bit; may be negative or exceed W. F = W - I fraction
        bits; the value of integer code k is k·2^-F.
    signed : bool
        Two's complement (range [-2^(W-1), 2^(W-1)-1]·2^-F) or unsigned ([0, 2^W-1]·2^-F).
    rounding, overflow : str or enum
        :class:`FixedRounding` and :class:`FixedOverflow` (defaults TRN, WRAP as ap_fixed).
    sat_bits : int
        N of ``ap_fixed``: top bits forced on overflow under WRAP / WRAP_SM (ap only).
    lib : {"ap", "ac"}
        Which vendor library's assignment rules and C++ type this format stands for.
    """

    width: int
    int_bits: int
    signed: bool = True
    rounding: FixedRounding = FixedRounding.TRN
    overflow: FixedOverflow = FixedOverflow.WRAP
    sat_bits: int = 0
    lib: str = "ap"

    def __post_init__(self) -> None:
        w = _int(self.width, "Fixed width", 1, 64)
        i = _int(self.int_bits, "Fixed int_bits", w - 1074, 1023)
        if not isinstance(self.signed, bool):
            raise TypeError(msg("Fixed signed", "must be a bool", self.signed))
        q = _enum(FixedRounding, self.rounding, "Fixed rounding")
        o = _enum(FixedOverflow, self.overflow, "Fixed overflow")
        lib = self.lib if self.lib in ("ap", "ac") else None
        if lib is None:
            raise ValueError(msg("Fixed lib", "must be 'ap' or 'ac'", self.lib))
        n = _int(self.sat_bits, "Fixed sat_bits", 0, w)
        if lib == "ac" and n:
            raise ValueError(msg("Fixed sat_bits", "ac_fixed has no saturation bits", n))
        if o is FixedOverflow.WRAP_SM:
            if not self.signed:
                raise ValueError(msg("Fixed overflow", "wrap_sm needs a signed format", "wrap_sm"))
            if lib == "ac":
                raise ValueError(msg("Fixed overflow", "ac_fixed has no WRAP_SM", "wrap_sm"))
        object.__setattr__(self, "width", w)
        object.__setattr__(self, "int_bits", i)
        object.__setattr__(self, "rounding", q)
        object.__setattr__(self, "overflow", o)
        object.__setattr__(self, "sat_bits", n)

    # -- exact metadata ---------------------------------------------------------------------
    @property
    def frac_bits(self) -> int:
        """F = width - int_bits."""
        return self.width - self.int_bits

    @property
    def min_int(self) -> int:
        """Smallest integer code value (as a Python int)."""
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def max_int(self) -> int:
        """Largest integer code value."""
        return (1 << (self.width - (1 if self.signed else 0))) - 1

    @property
    def step(self) -> float:
        """Value of one LSB, 2^-F (exact)."""
        return math.ldexp(1.0, -self.frac_bits)

    eps = step

    @property
    def min(self) -> float:
        """Most negative value, min_int·2^-F (nearest double for width > 53)."""
        return _exact(Fraction(self.min_int) * Fraction(2) ** -self.frac_bits)

    @property
    def max(self) -> float:
        """Largest value, max_int·2^-F (nearest double for width > 53)."""
        return _exact(Fraction(self.max_int) * Fraction(2) ** -self.frac_bits)

    @property
    def n_codes(self) -> int:
        """Number of bit patterns, 2^width."""
        return 1 << self.width

    @property
    def bits(self) -> int:
        """Width of the raw code."""
        return self.width

    # -- C++ / text --------------------------------------------------------------------------
    @property
    def hls_type(self) -> str:
        """The C++ type, e.g. ``ap_fixed<16,8,AP_RND_CONV,AP_SAT,0>``; raises for modes the
        vendor library does not have (stochastic; RND_CONV_ODD in ap_fixed)."""
        q = self.rounding
        if q is FixedRounding.STOCHASTIC:
            raise ValueError(
                msg("hls_type", "stochastic rounding is not a C++ type mode", str(self))
            )
        if self.lib == "ap" and q is FixedRounding.RND_CONV_ODD:
            raise ValueError(
                msg("hls_type", "ap_fixed has no RND_CONV_ODD", str(self), "use lib='ac'")
            )
        if q in _NON_HLS_FIXED:
            raise ValueError(
                msg("hls_type", f"{q.name} is not an ap_fixed/ac_fixed mode", str(self))
            )
        return str(self)

    def __str__(self) -> str:
        return fixed_cpp_type(self.width, self.int_bits, signed=self.signed, lib=self.lib,
                              rounding=self.rounding, overflow=self.overflow,
                              sat_bits=self.sat_bits)

    def replace(self, **changes: object) -> Fixed:
        """A copy with some fields changed (validated)."""
        from dataclasses import replace

        return replace(self, **changes)


_NON_HLS_FIXED = (FixedRounding.TRN_INF, FixedRounding.TRN_AWAY, FixedRounding.TRN_MAG,
                  FixedRounding.JAM, FixedRounding.RTO)


def _default_bias(exp_bits: int, special: Special) -> int:
    """2^(E-1), with the NaN at the code of -0 (fnuz, fnuz_inf, as ml_dtypes and P3109), else
    2^(E-1) - 1 (IEEE)."""
    return (1 << (exp_bits - 1)) - (0 if special in (Special.FNUZ, Special.FNUZ_INF) else 1)


#: how many codes at the top of the magnitude range are not finite, per special policy
#: (IEEE: the whole top binade, counted in _max_code)
_TOP_NONFINITE = {Special.FN: 1, Special.FNUZ: 0, Special.NONE: 0, Special.FNUZ_INF: 1,
                  Special.FN_INF: 2}


@dataclass(frozen=True)
class Float:
    """Binary floating-point format with ``exp_bits`` E (1..11) and ``man_bits`` M (0..52).

    Parameters
    ----------
    exp_bits, man_bits : int
        Field widths; the code is ``1 + E + M`` bits (sign first), ``E + M`` when unsigned.
        M = 0 (precision 1) is allowed: the significand is the hidden bit alone, always odd
        for normals, so ties round up to the next binade (as ml_dtypes' float8_e8m0fnu) unless
        ``code_ties``.
    bias : int, optional
        Exponent bias; default 2^(E-1) - 1, or 2^(E-1) for ``special="fnuz"``/``"fnuz_inf"``
        (as ml_dtypes and IEEE P3109).
    subnormals : bool
        False flushes subnormal inputs and results to ±0 (FTZ/DAZ): results are rounded as if
        subnormals existed, then any subnormal result becomes zero of the same sign.
    special : str or :class:`Special`
        inf/NaN policy.
    rounding : str or :class:`FloatRounding`
        Also decides the sign of an exact zero sum (IEEE 754 §6.3): ``x + (-x)`` and
        ``(+0) + (-0)`` give +0, or -0 under ``rdn``; two zeros of one sign keep it.
    overflow : str or :class:`FloatOverflow`
        What a finite value beyond ±max becomes. ±inf inputs are exact, not an overflow:
        ``ieee`` keeps ±inf under ``sat`` too; ``fn`` and ``fnuz`` give ±max under ``sat``
        and their NaN under ``inf`` (``fn``: the NaN of the input's sign; ``fnuz``: the single
        NaN); ``none`` gives ±max under both. ``sat_finite`` gives ±max for ±inf too.
    signed : bool
        False: no sign bit (``E + M``-bit codes, e.g. ``float8_e5m3fnu``). A negative input
        becomes NaN (as ml_dtypes and IEEE P3109 do), except that, as P3109 states, -0 gives
        +0, and under saturation (``sat``, ``sat_finite``) or a finite negative rounded
        ``rtz``/``rup`` the result is the smallest value (0, or 2^-bias without zero); where
        the format has no NaN (``special="none"``) the NaN cases raise ``ValueError`` as NaN
        does.
    zero : bool
        False (only with M = 0, ``subnormals=False`` and a NaN): the format has no zero;
        exponent field 0 is the binade 2^-bias (OCP/ml_dtypes ``float8_e8m0fnu``), positive
        values below it round to it (or up, by the rounding), and ±0 becomes NaN (as
        ml_dtypes converts it).
    code_ties : bool
        At M = 0, ties-to-even/odd and round-to-odd read the parity of the code (the exponent
        field) instead of the significand's: IEEE P3109's tie rule at precision 1 (gfloat's
        too). Normalised to False for M >= 1, where both parities are the same.

    The format's values must lie within float64's range (they are emulated in float64).
    """

    exp_bits: int
    man_bits: int
    bias: int | None = None
    subnormals: bool = True
    special: Special = Special.IEEE
    rounding: FloatRounding = FloatRounding.RNE
    overflow: FloatOverflow = FloatOverflow.INF
    signed: bool = True
    zero: bool = True
    code_ties: bool = False
    _max: float = field(init=False, repr=False, compare=False, hash=False, default=0.0)

    def __post_init__(self) -> None:
        e = _int(self.exp_bits, "Float exp_bits", 1, 11)
        m = _int(self.man_bits, "Float man_bits", 0, 52)
        sp = _enum(Special, self.special, "Float special")
        q = _enum(FloatRounding, self.rounding, "Float rounding")
        o = _enum(FloatOverflow, self.overflow, "Float overflow")
        if not isinstance(self.subnormals, bool):
            raise TypeError(msg("Float subnormals", "must be a bool", self.subnormals))
        for what, flag in (("signed", self.signed), ("zero", self.zero),
                           ("code_ties", self.code_ties)):
            if not isinstance(flag, bool):
                raise TypeError(msg(f"Float {what}", "must be a bool", flag))
        if not self.signed and sp in (Special.FNUZ, Special.FNUZ_INF):
            raise ValueError(msg("Float special", "an unsigned format has no -0 code for the "
                                 "NaN", sp.value, "use special='fn' or 'fn_inf'"))
        if not self.zero and (m != 0 or self.subnormals or sp is Special.NONE):
            raise ValueError(msg("Float zero", "zero=False needs man_bits=0, subnormals=False "
                                 "and a NaN (0 converts to NaN)",
                                 f"man_bits={m}, subnormals={self.subnormals}, "
                                 f"special={sp.value}"))
        if m != 0:
            object.__setattr__(self, "code_ties", False)
        default_bias = _default_bias(e, sp)
        b = (default_bias if self.bias is None
             else _int(self.bias, "Float bias", -(1 << 12), 1 << 12))
        object.__setattr__(self, "exp_bits", e)
        object.__setattr__(self, "man_bits", m)
        object.__setattr__(self, "bias", b)
        object.__setattr__(self, "special", sp)
        object.__setattr__(self, "rounding", q)
        object.__setattr__(self, "overflow", o)
        if sp is Special.IEEE and m == 0:
            raise ValueError(msg("Float man_bits", "ieee specials need man_bits >= 1 to tell "
                                 "NaN from inf", m, "use special='fn' or 'none'"))
        top = (1 << e) - 1  # all-ones exponent field
        if sp is Special.IEEE:
            max_code = (top << m) - 1
        else:
            max_code = (1 << (e + m)) - 1 - _TOP_NONFINITE[sp]
        emax_field, max_man = max_code >> m, max_code & ((1 << m) - 1)
        if emax_field < 1:
            raise ValueError(
                msg("Float", "has no normal numbers", str(self), "use more exponent bits")
            )
        emax = emax_field - b
        emin = 1 - b
        if emax > 1023 or emin - m < -1074:
            raise ValueError(
                msg("Float", "range must fit in float64 (emax <= 1023, emin - man_bits >= -1074)",
                    f"emax={emax}, emin={emin}")
            )
        mx = Fraction((1 << m) + max_man, 1 << m) * Fraction(2) ** emax
        object.__setattr__(self, "_max", float(mx))

    # -- exact metadata ---------------------------------------------------------------------
    @property
    def width(self) -> int:
        """Code width 1 + E + M (E + M unsigned)."""
        return int(self.signed) + self.exp_bits + self.man_bits

    bits = width

    @property
    def emin(self) -> int:
        """Unbiased exponent of the smallest normal, 1 - bias (-bias without zero)."""
        return int(self.zero) - self.bias

    @property
    def emax(self) -> int:
        """Unbiased exponent of the largest finite binade."""
        return math.frexp(self._max)[1] - 1

    @property
    def max(self) -> float:
        """Largest finite value."""
        return self._max

    @property
    def min(self) -> float:
        """Smallest finite value: -max, or for an unsigned format 0 (its smallest value
        without zero)."""
        if not self.signed:
            return 0.0 if self.zero else self.smallest_normal
        return -self._max

    @property
    def smallest_normal(self) -> float:
        """2^emin."""
        return math.ldexp(1.0, self.emin)

    @property
    def smallest_subnormal(self) -> float:
        """2^(emin - M); equals smallest_normal when subnormals are flushed."""
        if not self.subnormals:
            return self.smallest_normal
        return math.ldexp(1.0, self.emin - self.man_bits)

    @property
    def eps(self) -> float:
        """Distance from 1.0 to the next larger value, 2^-M."""
        return math.ldexp(1.0, -self.man_bits)

    step = smallest_subnormal

    @property
    def n_codes(self) -> int:
        """Number of bit patterns, 2^width."""
        return 1 << self.width

    @property
    def has_inf(self) -> bool:
        return self.special in (Special.IEEE, Special.FNUZ_INF, Special.FN_INF)

    @property
    def has_nan(self) -> bool:
        return self.special is not Special.NONE

    @property
    def has_negative_zero(self) -> bool:
        return (self.signed and self.zero
                and self.special not in (Special.FNUZ, Special.FNUZ_INF))

    # -- C++ / text --------------------------------------------------------------------------
    @property
    def hls_type(self) -> str:
        """``ac_std_float<W,E>``: only for IEEE-layout formats (default bias, ieee specials,
        signed, with zero)."""
        if (self.special is not Special.IEEE or not self.signed or not self.zero
                or self.bias != (1 << (self.exp_bits - 1)) - 1):
            raise ValueError(
                msg("hls_type", "ac_std_float needs the IEEE bias and inf/NaN layout", str(self))
            )
        return float_cpp_type(self.width, self.exp_bits)

    def __str__(self) -> str:
        for name, fmt in _FLOAT_NAMES.items():
            if fmt == self:
                return name
        name = _p3109_name(self)
        if name is not None:
            return name
        # the default bias, computed rather than built: Float(E, M, special) with the default
        # bias may itself be out of float64's range when this format (other bias) is not
        default_bias = _default_bias(self.exp_bits, self.special)
        parts = [str(self.exp_bits), str(self.man_bits)]
        if self.bias != default_bias:
            parts.append(f"bias={self.bias}")
        if not self.subnormals:
            parts.append("subnormals=false")
        if self.special is not Special.IEEE:
            parts.append(f"special={self.special.value}")
        if self.rounding is not FloatRounding.RNE:
            parts.append(f"rounding={self.rounding.value}")
        if self.overflow is not FloatOverflow.INF:
            parts.append(f"overflow={self.overflow.value}")
        if not self.signed:
            parts.append("signed=false")
        if not self.zero:
            parts.append("zero=false")
        if self.code_ties:
            parts.append("code_ties=true")
        return "float<" + ",".join(parts) + ">"

    def replace(self, **changes: object) -> Float:
        """A copy with some fields changed (validated). A default bias stays the default: it is
        recomputed for the new ``exp_bits``/``special`` unless ``bias`` is given."""
        from dataclasses import replace

        default_bias = _default_bias(self.exp_bits, self.special)
        if "bias" not in changes and self.bias == default_bias:
            changes["bias"] = None
        return replace(self, **changes)


Format = Fixed | Float

_FLOAT_NAMES: dict[str, Float] = {
    "float64": Float(11, 52),
    "float32": Float(8, 23),
    "tf32": Float(8, 10),
    "float16": Float(5, 10),
    "bfloat16": Float(8, 7),
    "float8_e4m3fn": Float(4, 3, special="fn"),
    "float8_e5m2": Float(5, 2),
    "float8_e4m3fnuz": Float(4, 3, special="fnuz"),
    "float8_e5m2fnuz": Float(5, 2, special="fnuz"),
    "float6_e3m2fn": Float(3, 2, special="none"),
    "float6_e2m3fn": Float(2, 3, special="none"),
    "float4_e2m1fn": Float(2, 1, special="none"),
    "float8_e5m3fnu": Float(5, 3, special="fn", signed=False),
    # ml_dtypes rounds e8m0 ties up (its one significand digit is always odd): for this
    # unsigned format that is ties away from zero
    "float8_e8m0fnu": Float(8, 0, subnormals=False, special="fn", rounding="rna",
                            signed=False, zero=False),
}


def p3109(k: int, p: int, signed: bool = True, extended: bool = True) -> Float:
    """IEEE P3109 ``binary{k}p{p}`` (signed or unsigned, extended or finite) as a :class:`Float`.

    M = p - 1 trailing significand bits, E = k - p (signed) or k - p + 1 (unsigned) exponent
    bits, bias 2^(E-1), subnormals, one zero. Signed: the NaN is the code of -0 (0x80…) and,
    extended, ±inf are the all-ones magnitudes (``special="fnuz_inf"``; finite: ``"fnuz"``).
    Unsigned: NaN is all ones and, extended, +inf the code below (``"fn_inf"``; finite:
    ``"fn"``). Rounding RNE with P3109's ties to the even code at p = 1 (``code_ties``) and
    overflow ``inf`` (P3109 OvfInf); use :meth:`Float.replace` for the others.

    >>> str(p3109(8, 4)), str(p3109(8, 3, signed=False, extended=False))
    ('p3109_k8p4', 'p3109_k8p3uf')
    """
    k = _int(k, "p3109 k", 2, 64)
    p = _int(p, "p3109 p", 1, k)
    e = k - p + (0 if signed else 1)
    if e < 1:
        raise ValueError(msg("p3109", "formats without exponent bits (signed p = k) are not "
                             "supported", f"k={k}, p={p}"))
    if signed:
        sp = Special.FNUZ_INF if extended else Special.FNUZ
    else:
        sp = Special.FN_INF if extended else Special.FN
    return Float(e, p - 1, bias=1 << (e - 1), special=sp, signed=signed, code_ties=p == 1)


_P3109 = re.compile(r"^\s*p3109_k(\d+)p(\d+)(s|u)?(e|f)?\s*$", re.IGNORECASE)


def _p3109_name(f: Float) -> str | None:
    """The canonical P3109 name of ``f`` (``p3109_k8p4``, ``…u``, ``…f``, ``…uf``), or None."""
    if (f.rounding is not FloatRounding.RNE or f.overflow is not FloatOverflow.INF
            or not f.subnormals or not f.zero or f.bias != 1 << (f.exp_bits - 1)
            or f.code_ties != (f.man_bits == 0)):
        return None
    signed_sp = {Special.FNUZ_INF: "", Special.FNUZ: "f"}
    unsigned_sp = {Special.FN_INF: "u", Special.FN: "uf"}
    tail = (signed_sp if f.signed else unsigned_sp).get(f.special)
    if tail is None:
        return None
    return f"p3109_k{f.width}p{f.man_bits + 1}{tail}"
_ALIASES = {"half": "float16", "single": "float32", "double": "float64"}
#: ml_dtypes names of formats whose canonical text stays ``float<…>`` (parse only)
_PARSE_NAMES: dict[str, Float] = {
    "float8_e4m3": Float(4, 3),
    "float8_e3m4": Float(3, 4),
    "float8_e4m3b11fnuz": Float(4, 3, bias=11, special="fnuz"),
}

#: Named formats shown by ``fxemu formats``: the ml_dtypes names plus common HLS types.
PRESETS: dict[str, Fixed | Float] = {
    **_FLOAT_NAMES,
    "ap_fixed<16,8>": Fixed(16, 8),
    "ap_fixed<16,8,AP_RND_CONV,AP_SAT>": Fixed(16, 8, rounding="rnd_conv", overflow="sat"),
    "ap_fixed<32,16>": Fixed(32, 16),
    "ap_fixed<8,4,AP_RND,AP_SAT>": Fixed(8, 4, rounding="rnd", overflow="sat"),
    "ap_int<8>": Fixed(8, 8, rounding="trn_zero"),
}

_TEMPLATE = re.compile(r"^\s*([a-z_0-9]+)\s*<(.*)>\s*$", re.IGNORECASE)
_FXP = re.compile(r"^\s*fxp-([su])(\d+)/(-?\d+)(?:-complex)?\s*$", re.IGNORECASE)
_EM = re.compile(r"^\s*e(\d+)m(\d+)\s*$", re.IGNORECASE)


def _bool_arg(text: str, what: str) -> bool:
    t = text.strip().lower()
    if t in ("true", "1"):
        return True
    if t in ("false", "0"):
        return False
    raise ValueError(msg(what, "must be true/false", text))


def _int_arg(text: str, what: str) -> int:
    try:
        return int(text.strip(), 0)
    except ValueError:
        raise ValueError(msg(what, "must be an integer", text)) from None


def _parse_template(name: str, args: list[str], text: str) -> Fixed | Float:
    n = len(args)

    def need(lo: int, hi: int) -> None:
        if not lo <= n <= hi:
            raise ValueError(msg(f"parse {name}", f"takes {lo}..{hi} template arguments", text))

    if name in ("ap_fixed", "ap_ufixed"):
        need(2, 5)
        kw: dict = {"signed": name == "ap_fixed"}
        if n > 2:
            kw["rounding"] = args[2].strip()
        if n > 3:
            kw["overflow"] = args[3].strip()
        if n > 4:
            kw["sat_bits"] = _int_arg(args[4], "sat_bits")
        return Fixed(_int_arg(args[0], "width"), _int_arg(args[1], "int_bits"), **kw)
    if name in ("ap_int", "ap_uint"):
        need(1, 1)
        w = _int_arg(args[0], "width")
        # `ap_int<W> v = x;` truncates toward zero, as C's double-to-integer conversion does
        return Fixed(w, w, signed=name == "ap_int", rounding="trn_zero")
    if name == "ac_fixed":
        need(2, 5)
        kw = {"lib": "ac"}
        if n > 2:
            kw["signed"] = _bool_arg(args[2], "ac_fixed signed")
        if n > 3:
            kw["rounding"] = args[3].strip()
        if n > 4:
            kw["overflow"] = args[4].strip()
        return Fixed(_int_arg(args[0], "width"), _int_arg(args[1], "int_bits"), **kw)
    if name == "ac_int":
        need(1, 2)
        w = _int_arg(args[0], "width")
        s = _bool_arg(args[1], "ac_int signed") if n > 1 else True
        return Fixed(w, w, signed=s, lib="ac")
    if name == "ac_std_float":
        need(2, 2)
        w, e = _int_arg(args[0], "width"), _int_arg(args[1], "exp_bits")
        return Float(e, w - e - 1)
    if name == "float":
        need(2, 10)
        kw = {}
        for a in args[2:]:
            key, eq, val = a.partition("=")
            key, val = key.strip().lower(), val.strip()
            if not eq or key not in ("bias", "subnormals", "special", "rounding", "overflow",
                                     "signed", "zero", "code_ties"):
                raise ValueError(msg("parse float<>", "options are key=value of bias, "
                                     "subnormals, special, rounding, overflow, signed, zero, "
                                     "code_ties", a))
            if key == "bias":
                kw[key] = _int_arg(val, "bias")
            elif key in ("subnormals", "signed", "zero", "code_ties"):
                kw[key] = _bool_arg(val, key)
            else:
                kw[key] = val
        return Float(_int_arg(args[0], "exp_bits"), _int_arg(args[1], "man_bits"), **kw)
    raise ValueError(msg("parse", "unknown type template", name,
                         "known: ap_fixed ap_ufixed ap_int ap_uint ac_fixed ac_int "
                         "ac_std_float float<E,M>"))


def parse(text: str) -> Fixed | Float:
    """Parse a format from C++ type text, an fxpmath dtype string or an ml_dtypes name.

    Accepts ``ap_fixed<W,I[,Q[,O[,N]]]>``, ``ap_ufixed<…>``, ``ap_int<W>``, ``ap_uint<W>``,
    ``ac_fixed<W,I[,S[,Q[,O]]]>``, ``ac_int<W[,S]>``, ``ac_std_float<W,E>``, fxpmath
    ``fxp-s16/8`` (signed, 16 bits, 8 fraction bits; fxpmath's defaults: rounding
    ``trunc`` = toward zero (TRN_ZERO) and saturate),
    ``eXmY`` (IEEE-like), ``float<E,M[,key=value…]>`` (the canonical ``str`` of a Float) and the
    names float64 float32 tf32 float16/half bfloat16 float8_e4m3fn float8_e5m2 float8_e4m3fnuz
    float8_e5m2fnuz float6_e3m2fn float6_e2m3fn float4_e2m1fn float8_e4m3 float8_e3m4
    float8_e4m3b11fnuz float8_e5m3fnu float8_e8m0fnu (ml_dtypes' meaning), and IEEE P3109
    ``p3109_k<K>p<P>[s|u][e|f]`` (signed/unsigned, extended/finite; default ``se``; see
    :func:`p3109`).

    >>> parse("ap_fixed<16,8,AP_RND_CONV,AP_SAT>")
    Fixed(width=16, int_bits=8, signed=True, rounding=<FixedRounding.RND_CONV: 'rnd_conv'>, \
overflow=<FixedOverflow.SAT: 'sat'>, sat_bits=0, lib='ap')
    """
    if isinstance(text, Fixed | Float):
        return text
    if not isinstance(text, str):
        raise TypeError(msg("parse", "expects a str", text))
    key = text.strip().lower()
    key = _ALIASES.get(key, key)
    if key in _FLOAT_NAMES:
        return _FLOAT_NAMES[key]
    if key in _PARSE_NAMES:
        return _PARSE_NAMES[key]
    m = _P3109.match(text)
    if m:
        return p3109(int(m.group(1)), int(m.group(2)), signed=(m.group(3) or "s").lower() == "s",
                     extended=(m.group(4) or "e").lower() == "e")
    m = _FXP.match(text)
    if m:
        w, f = int(m.group(2)), int(m.group(3))
        # fxpmath's default rounding "trunc" is np.trunc (toward zero), not floor
        return Fixed(w, w - f, signed=m.group(1).lower() == "s", rounding="trn_zero",
                     overflow="sat")
    m = _EM.match(text)
    if m:
        return Float(int(m.group(1)), int(m.group(2)))
    m = _TEMPLATE.match(text)
    if m:
        args = [a for a in m.group(2).split(",")]
        if any(not a.strip() for a in args):
            raise ValueError(msg("parse", "empty template argument", text))
        return _parse_template(m.group(1).lower(), args, text)
    raise ValueError(msg("parse", "not a format", text,
                         "e.g. ap_fixed<16,8>, ac_fixed<8,4,true>, fxp-s16/8, float16, e4m3"))


MAX_CHUNK = 2**31 - 1  # the largest N of order "chunk:N" (any C++ int holds it)
_ORDER = re.compile(r"^(sequential|pairwise|exact|chunk:([0-9]+))$")


def _mac_format(value: object, what: str) -> Fixed | Float:
    if isinstance(value, Fixed | Float):
        return value
    if isinstance(value, str):
        return parse(value)
    raise TypeError(msg(what, "must be a Fixed, a Float or a format string",
                        type(value).__name__))


@dataclass(frozen=True)
class Mac:
    """The datapath of a multiply-accumulate unit (a pure description; see
    :func:`fxemu.matmul` for the arithmetic).

    Parameters
    ----------
    acc : Fixed, Float or str
        Accumulator format: it starts at 0 and every addition is rounded into it.
    mul : Fixed, Float, str or None
        Each product is rounded into this format first; None keeps products exact.
    out : Fixed, Float, str or None
        The final accumulator is rounded into this format; None returns the accumulator.
    order : str
        ``"sequential"`` (k = 0…K-1, a pipelined HLS loop), ``"pairwise"`` (balanced adder tree:
        adjacent pairs level by level, an odd last node carried up unchanged; the root is added
        to the zero accumulator), ``"chunk:N"`` (sequential within chunks of N starting at 0,
        then the chunk sums added sequentially to a zero accumulator; 1 <= N <= 2^31 - 1, so
        the generated C++ holds N in an ``int``), ``"exact"`` (exact sum of all products, one
        rounding into acc).
    """

    acc: Fixed | Float
    mul: Fixed | Float | None = None
    out: Fixed | Float | None = None
    order: str = "sequential"

    def __post_init__(self) -> None:
        object.__setattr__(self, "acc", _mac_format(self.acc, "Mac acc"))
        if self.mul is not None:
            object.__setattr__(self, "mul", _mac_format(self.mul, "Mac mul"))
        if self.out is not None:
            object.__setattr__(self, "out", _mac_format(self.out, "Mac out"))
        shown = self.order if not isinstance(self.order, str) or len(self.order) <= 40 \
            else self.order[:40] + "..."
        if not isinstance(self.order, str) or not _ORDER.match(self.order.strip()):
            raise ValueError(msg("Mac order", "must be sequential, pairwise, exact or chunk:N",
                                 shown))
        order = self.order.strip()
        digits = order[6:]
        if order.startswith("chunk:") and (len(digits) > 10 or not 1 <= int(digits) <= MAX_CHUNK):
            raise ValueError(msg("Mac order", f"chunk size N must be in 1..{MAX_CHUNK}", shown))
        object.__setattr__(self, "order", order)

    @property
    def out_format(self) -> Fixed | Float:
        """The format of the results (``out`` or ``acc``)."""
        return self.out if self.out is not None else self.acc

    @property
    def chunk(self) -> int:
        """N of ``order="chunk:N"``, 0 for the other orders."""
        return int(self.order[6:]) if self.order.startswith("chunk:") else 0
