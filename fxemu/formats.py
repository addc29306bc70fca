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
import functools
import math
import re
from dataclasses import dataclass, field
from fractions import Fraction

from ._errors import msg

__all__ = [
    "BLOCK_PRESETS",
    "E8M0",
    "FUSED_PRESETS",
    "PRESETS",
    "Block",
    "Fixed",
    "FixedOverflow",
    "FixedRounding",
    "Float",
    "FloatOverflow",
    "FloatRounding",
    "Format",
    "Fused",
    "Mac",
    "Special",
    "bfp",
    "fixed_cpp_type",
    "float_cpp_type",
    "p3109",
    "parse",
    "parse_block",
    "parse_fused",
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
    2^(E-1) - 1 (IEEE); 0 without exponent bits (E = 0: P3109's floor(2^(k-p-1)) at p = k)."""
    if exp_bits == 0:
        return 0
    return (1 << (exp_bits - 1)) - (0 if special in (Special.FNUZ, Special.FNUZ_INF) else 1)


#: how many codes at the top of the magnitude range are not finite, per special policy
#: (IEEE: the whole top binade, counted in _max_code)
_TOP_NONFINITE = {Special.FN: 1, Special.FNUZ: 0, Special.NONE: 0, Special.FNUZ_INF: 1,
                  Special.FN_INF: 2}


@dataclass(frozen=True)
class Float:
    """Binary floating-point format with ``exp_bits`` E (0..11) and ``man_bits`` M (0..52).

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

    E = 0 (no exponent field, IEEE P3109 signed ``p = k``): every nonzero code is a subnormal,
    so the format is a sign-magnitude fixed-point grid, magnitude code c having the value
    ``c × 2^(1 - bias - M)`` (default bias 0: steps of 2^(1-M) below 2); values from the code
    after max up overflow by ``overflow``. It needs M >= 1, subnormals and a special policy
    other than ``ieee`` (no exponent field to mark inf/NaN). ``emin`` and ``smallest_normal``
    then bound the grid (2^emin is above max) rather than name a value.

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
        e = _int(self.exp_bits, "Float exp_bits", 0, 11)
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
        if e == 0 and (m == 0 or not self.subnormals or sp is Special.IEEE):
            raise ValueError(msg("Float exp_bits", "exp_bits=0 (every value a subnormal) needs "
                                 "man_bits >= 1, subnormals and a special policy other than "
                                 "ieee", f"man_bits={m}, subnormals={self.subnormals}, "
                                 f"special={sp.value}"))
        if sp is Special.IEEE and m == 0:
            raise ValueError(msg("Float man_bits", "ieee specials need man_bits >= 1 to tell "
                                 "NaN from inf", m, "use special='fn' or 'none'"))
        top = (1 << e) - 1  # all-ones exponent field
        if sp is Special.IEEE:
            max_code = (top << m) - 1
        else:
            max_code = (1 << (e + m)) - 1 - _TOP_NONFINITE[sp]
        if e == 0 and max_code < 0:  # max 0 stays (P3109 k2p2: 0, ±inf, NaN)
            raise ValueError(msg("Float", "has no finite value", str(self),
                                 "use more mantissa bits"))
        emax_field, max_man = max_code >> m, max_code & ((1 << m) - 1)
        if emax_field < 1 and e != 0:
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
        if e == 0:  # no normals: the largest subnormal, max_man × 2^(emin - M)
            mx = Fraction(max_man, 1 << m) * Fraction(2) ** emin
        else:
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
    bits, bias 2^(E-1) (0 for signed p = k: E = 0, a sign-magnitude grid of steps 2^(2-k)
    below 2, see :class:`Float`), subnormals, one zero. Signed: the NaN is the code of -0
    (0x80…) and, extended, ±inf are the all-ones magnitudes (``special="fnuz_inf"``;
    finite: ``"fnuz"``). Unsigned: NaN is all ones and, extended, +inf the code below
    (``"fn_inf"``; finite: ``"fn"``). Rounding RNE with P3109's ties to the even code at
    p = 1 (``code_ties``) and overflow ``inf`` (P3109 OvfInf); use :meth:`Float.replace`
    for the others.

    >>> str(p3109(8, 4)), str(p3109(8, 3, signed=False, extended=False))
    ('p3109_k8p4', 'p3109_k8p3uf')
    """
    k = _int(k, "p3109 k", 2, 64)
    p = _int(p, "p3109 p", 1, k)
    e = k - p + (0 if signed else 1)
    if signed:
        sp = Special.FNUZ_INF if extended else Special.FNUZ
    else:
        sp = Special.FN_INF if extended else Special.FN
    return Float(e, p - 1, bias=_p3109_bias(e), special=sp, signed=signed, code_ties=p == 1)


def _p3109_bias(e: int) -> int:
    """P3109's bias for E exponent bits: 2^(E-1), and 0 for signed p = k (E = 0)."""
    return 1 << (e - 1) if e else 0


_P3109 = re.compile(r"^\s*p3109_k(\d+)p(\d+)(s|u)?(e|f)?\s*$", re.IGNORECASE)


def _p3109_name(f: Float) -> str | None:
    """The canonical P3109 name of ``f`` (``p3109_k8p4``, ``…u``, ``…f``, ``…uf``), or None."""
    if (f.rounding is not FloatRounding.RNE or f.overflow is not FloatOverflow.INF
            or not f.subnormals or not f.zero or f.bias != _p3109_bias(f.exp_bits)
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


def parse(text: str) -> Fixed | Float | Block:
    """Parse a format from C++ type text, an fxpmath dtype string or an ml_dtypes name
    (block formats: see :func:`parse_block`).

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
    if isinstance(text, Fixed | Float | Block):
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
    block = parse_block(text)
    if block is not None:
        return block
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

# ---------------------------------------------------------------------------------------------
# Fused multi-term adders (Mac order "fused:...")

_FUSED_ROUNDING = ("rtz", "rne", "rna", "rdn", "rup", "rto")


@dataclass(frozen=True)
class Fused:
    """The multi-term fused adder of ``Mac(order="fused:…")`` (a pure description).

    Each step takes the next ``terms`` exact products ``a_k·b_k`` (the last block may be
    shorter) and the running sum ``c`` (the accumulator, starting at +0) and computes, as the
    model of Fasi et al. (2021) and Khattak & Mikaitis (2026) for tensor cores (and wide DSP
    cascades) states:

    1. exponents: ``e(a) = max(floor(log2|a|), emin_a)`` (a subnormal operand keeps its
       denormalised significand), likewise ``e(b)``; a nonzero product's exponent is
       ``e(a) + e(b)`` (its significand lies in (0, 4)); ``c``'s is ``floor(log2|c|)``. Zero
       products and a zero ``c`` take no part;
    2. alignment: ``E = max(those exponents, min_exp)``; every product and ``c`` is rounded to
       a multiple of ``2^(E - align_bits)`` by ``align_rounding`` (``rtz``: the shifted-out
       bits are dropped from the magnitude, as tensor cores do; ``rdn``: two's complement
       truncation, as a DSP shift does; or a rounding to nearest);
    3. addition: the aligned integers are summed exactly, in a register of
       ``3 + align_bits + carry_bits`` bits (two's complement; a sum beyond it wraps), or of
       unbounded width when ``carry_bits`` is None;
    4. normalisation: the sum is rounded by ``out_rounding`` to ``out_bits`` fraction bits
       below its leading bit (the exponent floored at the accumulator's emin: subnormal
       results), then into the accumulator format (its own rounding; a no-op when
       ``out_bits`` <= its mantissa bits and the result is in range). A zero result is +0 (the
       hardware rule mmaemu measured).

    With ``late=True`` the running sum takes no part in steps 1–3 (the products alone are
    aligned, summed and normalised) and is added afterwards, the exact sum rounded once into the
    accumulator (IEEE addition, its signed zeros included) — the "late c" of mmaemu's
    ``b200_mma_sync`` model.

    An inf/NaN operand gives the IEEE result of the exact dot product (NaN for NaN,
    ``inf·0`` or ``inf - inf``, else ±inf), rounded into the accumulator.

    Parameters are validated: ``1 <= terms <= 4096``, ``1 <= align_bits``,
    ``align_bits + bit_length(terms) + carry_bits <= 58`` (the int64 register), ``1 <= out_bits
    <= 52``, rounding names from ``rtz rne rna rdn rup rto``.
    """

    terms: int
    align_bits: int = 23
    out_bits: int = 23
    align_rounding: str = "rtz"
    out_rounding: str = "rtz"
    carry_bits: int | None = None
    min_exp: int | None = None
    emin_a: int | None = None
    emin_b: int | None = None
    late: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.late, bool):
            raise TypeError(msg("Fused late", "must be a bool", self.late))

        def num(name: str, lo: int, hi: int, none: bool = False) -> None:
            v = getattr(self, name)
            if v is None and none:
                return
            what = f"must be an int in {lo}..{hi}" + (" or None" if none else "")
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(msg(f"Fused {name}", what, v))
            if not lo <= v <= hi:
                raise ValueError(msg(f"Fused {name}", what, v))

        num("terms", 1, 4096)
        num("align_bits", 1, 55)
        num("out_bits", 1, 52)
        num("carry_bits", 0, 55, none=True)
        for name in ("min_exp", "emin_a", "emin_b"):
            num(name, -1100, 1100, none=True)
        for name in ("align_rounding", "out_rounding"):
            v = getattr(self, name)
            what = "must be one of " + " ".join(_FUSED_ROUNDING)
            if not isinstance(v, str):
                raise TypeError(msg(f"Fused {name}", what, v))
            if v.strip().lower() not in _FUSED_ROUNDING:
                raise ValueError(msg(f"Fused {name}", what, v))
            object.__setattr__(self, name, v.strip().lower())
        width = self.align_bits + self.terms.bit_length() + (self.carry_bits or 0)
        if width > 58:
            raise ValueError(msg("Fused", "align_bits + bit_length(terms) + carry_bits must be "
                                 "<= 58 (the adder is held in an int64)", width))

    def __str__(self) -> str:
        return _fused_text(self)


#: Hardware presets (Mac order ``fused:NAME``), with the source of each.
FUSED_PRESETS: dict[str, Fused] = {
    # mmaemu presets "ada" / "hopper" (Khattak & Mikaitis 2026; validated by mmaemu on an RTX
    # 4060 and an H100): E4M3 operands (emin -6; pass ea=-14,eb=-14 for E5M2)
    "ada_fp8": Fused(16, 13, 13, min_exp=-132, emin_a=-6, emin_b=-6),
    "hopper_fp8": Fused(32, 13, 13, min_exp=-132, emin_a=-6, emin_b=-6),
    # Fasi et al. 2021 and the MATLAB tensor-core toolbox of Khattak & Mikaitis (V100TC.m,
    # A100TC.m, H100TC.m): 23 + neab alignment bits, truncation, fp32 accumulator (rtz)
    "v100_fp16": Fused(4, 23, 23, emin_a=-14, emin_b=-14),
    "a100_fp16": Fused(8, 24, 23, min_exp=-132, emin_a=-14, emin_b=-14),
    "a100_bf16": Fused(8, 24, 23, min_exp=-132, emin_a=-126, emin_b=-126),
    "a100_tf32": Fused(4, 24, 23, min_exp=-132, emin_a=-126, emin_b=-126),
    "h100_fp16": Fused(16, 25, 23, min_exp=-133, emin_a=-14, emin_b=-14),
    "h100_bf16": Fused(16, 25, 23, min_exp=-133, emin_a=-126, emin_b=-126),
    "h100_tf32": Fused(4, 25, 23, min_exp=-133, emin_a=-126, emin_b=-126),
    # B200TC.m: fp16/bf16 as h100_fp16/h100_bf16 (H200 too); tf32 in blocks of 8
    "b200_tf32": Fused(8, 25, 23, min_exp=-133, emin_a=-126, emin_b=-126),
    # binary16 accumulators (Mac acc="float16"; toolbox V100TC/A100TC/H100TC with fp16 output):
    # normalisation rounds to nearest, the alignment floor moves up
    "v100_fp16_acc16": Fused(4, 23, 10, "rtz", "rne", min_exp=-19, emin_a=-14, emin_b=-14),
    "a100_fp16_acc16": Fused(8, 24, 10, "rtz", "rne", min_exp=-20, emin_a=-14, emin_b=-14),
    "h100_fp16_acc16": Fused(16, 25, 10, "rtz", "rne", min_exp=-21, emin_a=-14, emin_b=-14),
    # mmaemu "b200_mma_sync" (experimental there: it fits the toolbox's B200 mma.sync vectors,
    # an fp16-HMMA rewrite): the accumulator is added late, by an fp32 addition
    "b200_fp8": Fused(32, 25, 23, min_exp=-133, emin_a=-6, emin_b=-6, late=True),
}

# canonical key of each field in the order text (fixed order)
_FUSED_KEYS = (("align", "align_bits"), ("out", "out_bits"), ("round", "align_rounding"),
               ("norm", "out_rounding"), ("carry", "carry_bits"), ("emin", "min_exp"),
               ("ea", "emin_a"), ("eb", "emin_b"), ("late", "late"))
_FUSED_BASE = re.compile(r"^fused:([0-9]{1,5}|[a-z][a-z0-9_]*)$")


def _fused_text(f: Fused) -> str:
    """``fused:BASE[,key=value…]`` with BASE the preset (or ``K`` for ``Fused(K)``) of the
    same ``terms`` from which ``f`` differs in the fewest fields (a preset wins ties); the
    differing fields follow in a fixed key order."""
    bases = [(name, p) for name, p in FUSED_PRESETS.items() if p.terms == f.terms]
    bases.append((str(f.terms), Fused(f.terms)))

    def diff(base: Fused) -> list[str]:
        return [f"{key}={'none' if v is None else int(v) if isinstance(v, bool) else v}"
                for key, attr in _FUSED_KEYS if (v := getattr(f, attr)) != getattr(base, attr)]

    name, base = min(bases, key=lambda nb: len(diff(nb[1])))
    return ",".join([f"fused:{name}", *diff(base)])


def parse_fused(text: str) -> Fused:
    """The :class:`Fused` record of a Mac order ``fused:K[,key=value…]`` or
    ``fused:PRESET[,key=value…]``; keys ``align out round norm carry emin ea eb late``
    (integers, ``none``, rounding names, 0/1 for late) override the base.

    >>> parse_fused("fused:hopper_fp8,ea=-14,eb=-14").emin_a
    -14
    """
    if not isinstance(text, str):
        raise TypeError(msg("fused order", "must be a str", text))
    head, *rest = [p.strip() for p in text.strip().lower().split(",")]
    m = _FUSED_BASE.match(head)
    if not m:
        raise ValueError(msg("Mac order", "fused order must be fused:K or fused:PRESET",
                             text, "presets: " + " ".join(FUSED_PRESETS)))
    name = m.group(1)
    if name.isdigit():
        kw: dict[str, object] = {"terms": int(name)}
    elif name in FUSED_PRESETS:
        p = FUSED_PRESETS[name]
        kw = {f.name: getattr(p, f.name) for f in p.__dataclass_fields__.values()}
    else:
        raise ValueError(msg("Mac order", "unknown fused preset", name,
                             "known: " + " ".join(FUSED_PRESETS)))
    keys = dict(_FUSED_KEYS)
    for item in rest:
        k, sep, v = item.partition("=")
        k, v = k.strip(), v.strip()
        if not sep or k not in keys:
            raise ValueError(msg("Mac order", "fused option must be key=value with key one of "
                                 + " ".join(keys), item))
        if k in ("round", "norm"):
            kw[keys[k]] = v
        elif k == "late":
            if v not in ("0", "1"):
                raise ValueError(msg("Mac order", "fused option late must be 0 or 1", item))
            kw["late"] = v == "1"
        elif v == "none" and k in ("carry", "emin", "ea", "eb"):
            kw[keys[k]] = None
        elif re.fullmatch(r"[+-]?[0-9]{1,5}", v):
            kw[keys[k]] = int(v)
        else:
            raise ValueError(msg("Mac order", f"fused option {k} must be an integer"
                                 + (" or none" if k in ("carry", "emin", "ea", "eb") else ""),
                                 item))
    return Fused(**kw)


def _mac_format(value: object, what: str) -> Fixed | Float:
    if isinstance(value, Fixed | Float):
        return value
    if isinstance(value, str):
        fmt = parse(value)
        if isinstance(fmt, Fixed | Float):
            return fmt
        value = fmt
    if isinstance(value, Block):
        raise ValueError(msg(what, "must be a scalar format (block formats go in a and b)",
                             str(value)))
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
        rounding into acc), ``"fused:K[,key=value…]"`` or ``"fused:PRESET[,…]"`` (a
        multi-term fused adder, see :class:`Fused`; a :class:`Fused` record is accepted and
        stored as its canonical text; needs a float acc and exact products, ``mul=None``).
    a, b : Block, str or None
        Block operands (both or neither; equal ``block_size``, no per-tensor scale): the Mac
        converts operand A (M, K) and B (K, N) into these block formats along K (the
        reduction axis, whatever the Block's ``axis``), then for each block pair forms the
        element products exactly, sums them exactly in fixed point and multiplies by the two
        scales (exact) — one term per block, as MX hardware does — and accumulates the terms
        into ``acc`` in ``order`` over blocks. ``mul`` must be None (block products are exact).
    """

    acc: Fixed | Float
    mul: Fixed | Float | None = None
    out: Fixed | Float | None = None
    order: str = "sequential"
    a: Block | None = None
    b: Block | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "acc", _mac_format(self.acc, "Mac acc"))
        if self.a is not None or self.b is not None:
            _check_block_operands(self)
        if self.mul is not None:
            object.__setattr__(self, "mul", _mac_format(self.mul, "Mac mul"))
        if self.out is not None:
            object.__setattr__(self, "out", _mac_format(self.out, "Mac out"))
        if isinstance(self.order, Fused):
            object.__setattr__(self, "order", str(self.order))
        if isinstance(self.order, str) and self.order.strip().lower().startswith("fused:"):
            if self.a is not None:
                raise ValueError(msg("Mac order", "a block Mac accumulates block terms in a "
                                     "sequential, pairwise, chunk:N or exact order, not fused",
                                     self.order))
            self._check_fused()
            return
        shown = self.order if not isinstance(self.order, str) or len(self.order) <= 40 \
            else self.order[:40] + "..."
        if not isinstance(self.order, str) or not _ORDER.match(self.order.strip()):
            raise ValueError(msg("Mac order", "must be sequential, pairwise, exact, chunk:N "
                                 "or fused:K", shown))
        order = self.order.strip()
        digits = order[6:]
        if order.startswith("chunk:") and (len(digits) > 10 or not 1 <= int(digits) <= MAX_CHUNK):
            raise ValueError(msg("Mac order", f"chunk size N must be in 1..{MAX_CHUNK}", shown))
        object.__setattr__(self, "order", order)

    @property
    def block(self) -> bool:
        """Whether the operands are block formats (``a`` and ``b`` given)."""
        return self.a is not None

    @property
    def out_format(self) -> Fixed | Float:
        """The format of the results (``out`` or ``acc``)."""
        return self.out if self.out is not None else self.acc

    def _check_fused(self) -> None:
        fused = parse_fused(self.order)
        object.__setattr__(self, "order", str(fused))
        if not isinstance(self.acc, Float):
            raise ValueError(msg("Mac acc", "a fused order needs a float accumulator",
                                 str(self.acc)))
        if self.mul is not None:
            raise ValueError(msg("Mac mul", "a fused order adds exact products (mul=None)",
                                 str(self.mul)))
        if self.acc.rounding is FloatRounding.STOCHASTIC:
            raise ValueError(msg("Mac acc", "a fused order needs a deterministic rounding",
                                 str(self.acc)))

    @property
    def fused(self) -> Fused | None:
        """The :class:`Fused` record of a ``fused:…`` order, None for the other orders."""
        return _fused_cached(self.order) if self.order.startswith("fused:") else None

    @property
    def chunk(self) -> int:
        """N of ``order="chunk:N"``, 0 for the other orders."""
        return int(self.order[6:]) if self.order.startswith("chunk:") else 0


@functools.lru_cache(maxsize=256)
def _fused_cached(text: str) -> Fused:
    return parse_fused(text)


# ---------------------------------------------------------------------------------------------
# Block-scaled formats (OCP MX, block floating point, NVFP4)

E8M0 = "e8m0"  #: the OCP MX scale: 2^(code - 127), codes 0..254, 0xFF = NaN
_SCALE_RULES = ("floor", "nosat")
MAX_BLOCK = 1 << 20


@dataclass(frozen=True)
class Block:
    """A block-scaled format: ``block_size`` consecutive elements along ``axis`` share a scale.

    The value of element i of a block is ``scale · element_i`` (times the per-tensor scale
    where ``tensor_scale``). Conversion (:func:`fxemu.quantize`) of a block with
    ``amax = max |x_i|``:

    * ``scale="e8m0"`` (OCP MX v1.0 §6.3, and block floating point): shared exponent
      ``s = floor(log2(amax)) - emax_elem`` with ``emax_elem`` the exponent of the element
      format's largest binade (``floor(log2(element.max))``); rule ``"nosat"`` (rounding-aware,
      as MSFP-style BFP does) adds 1 to ``s`` when ``amax·2^-s`` would round above the element
      maximum. ``s`` is clamped to -127..127 and stored as the E8M0 code ``s + 127``; an
      all-zero block has ``s = -127`` (code 0). Elements are ``R_elem(x_i · 2^-s)``, one exact
      rounding with the element format's rounding and overflow (the MX presets saturate to
      ±max normal, as the spec says).
    * a :class:`Float` scale (NVFP4: ``float8_e4m3fn``): ``S = R_scale(clamp(amax / (elem_max ·
      T), scale tiny, scale max))`` with tiny the scale's smallest normal, then elements
      ``R_elem(x_i / (S·T))`` (each one correctly rounded from the exact quotient), T the
      per-tensor float32 scale ``float32(float32(amax_tensor) / (scale_max · elem_max))``
      when ``tensor_scale`` (1 when the tensor is all zero; T = 1 without ``tensor_scale``),
      as NVIDIA / torchao define two-level NVFP4.
    * a block holding NaN or ±inf: the scale is NaN (E8M0 code 0xFF, or the scale format's
      NaN) and every element code is the element format's NaN code (0 where it has none); the
      whole block decodes to NaN (OCP MX §5.3: a NaN scale makes every element NaN).

    The last block along the axis may be shorter (``L mod block_size`` elements): its scale
    comes from its own elements, which is the same as padding it with zeros.

    Parameters
    ----------
    element : Float or Fixed
        The element format. A signed :class:`Fixed` element gives block floating point (an
        integer mantissa per element; ``mxint8`` is ``ap_fixed<8,2,AP_RND_CONV,AP_SAT>``
        elements, value ``k·2^-6``, as OCP MXINT8).
    block_size : int
        Elements per block, 1..2^20 (32 for MX, 16 for NVFP4).
    scale : "e8m0" or Float
        The scale format.
    axis : int
        The blocked axis of a tensor for :func:`fxemu.quantize`/``to_bits``/``from_bits``
        (a block :class:`Mac` blocks each operand along its reduction axis instead).
    scale_rule : {"floor", "nosat"}
        Shared-exponent rule of an E8M0 scale (see above).
    tensor_scale : bool
        The per-tensor float32 scale of two-level NVFP4 (Float scales only).
    sign_magnitude : bool
        Element codes as sign | magnitude instead of two's complement (signed Fixed elements
        whose overflow is ``sat_sym``, so both codings hold the same values).
    """

    element: Fixed | Float
    block_size: int = 32
    scale: Float | str = E8M0
    axis: int = -1
    scale_rule: str = "floor"
    tensor_scale: bool = False
    sign_magnitude: bool = False

    def __post_init__(self) -> None:
        el = self.element
        if isinstance(el, str):
            el = parse(el)
        if not isinstance(el, Fixed | Float):
            raise TypeError(msg("Block element", "must be a Fixed or a Float", el))
        k = _int(self.block_size, "Block block_size", 1, MAX_BLOCK)
        ax = _int(self.axis, "Block axis", -64, 63)
        sc = self.scale
        if isinstance(sc, str) and sc.strip().lower() != E8M0:
            sc = parse(sc)
        if isinstance(sc, str):
            sc = E8M0
        elif not isinstance(sc, Float):
            raise TypeError(msg("Block scale", "must be 'e8m0' or a Float", sc))
        if self.scale_rule not in _SCALE_RULES:
            raise ValueError(msg("Block scale_rule", "must be floor or nosat", self.scale_rule))
        for name in ("tensor_scale", "sign_magnitude"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(msg(f"Block {name}", "must be a bool", getattr(self, name)))
        if isinstance(sc, Float):
            if self.scale_rule != "floor":
                raise ValueError(msg("Block scale_rule", "applies to an e8m0 scale only",
                                     self.scale_rule))
            if sc.rounding is FloatRounding.STOCHASTIC:
                raise ValueError(msg("Block scale", "cannot round stochastically", str(sc)))
            if _stochastic_fmt(el):
                raise ValueError(msg("Block element", "stochastic rounding needs a power-of-two "
                                     "(e8m0) scale", str(el)))
            if el.bits + sc.man_bits > 40:
                raise ValueError(msg("Block", "element and scale precision too wide for a "
                                     "float scale (element bits + scale mantissa <= 40)",
                                     f"{el}, {sc}"))
        elif self.tensor_scale:
            raise ValueError(msg("Block tensor_scale", "needs a Float scale (NVFP4)", True))
        if self.sign_magnitude and not (isinstance(el, Fixed) and el.signed
                                        and el.overflow is FixedOverflow.SAT_SYM):
            raise ValueError(msg("Block sign_magnitude", "needs a signed Fixed element with "
                                 "overflow sat_sym", str(el)))
        if el.max <= 0:
            raise ValueError(msg("Block element", "must have a positive maximum", str(el)))
        object.__setattr__(self, "element", el)
        object.__setattr__(self, "block_size", k)
        object.__setattr__(self, "axis", ax)
        object.__setattr__(self, "scale", sc)

    @property
    def pow2_scale(self) -> bool:
        """Whether the scale is a power of two (E8M0)."""
        return self.scale == E8M0

    @property
    def emax_elem(self) -> int:
        """Exponent of the element format's largest binade, floor(log2(element.max))."""
        return math.frexp(self.element.max)[1] - 1

    @property
    def bits(self) -> int:
        """Element code width."""
        return self.element.bits

    width = bits

    @property
    def scale_bits(self) -> int:
        """Scale code width (8 for E8M0)."""
        return 8 if self.pow2_scale else self.scale.width

    def __str__(self) -> str:
        base = self if self.axis == -1 else replace_block(self, axis=-1)
        for name, fmt in _BLOCK_NAMES.items():
            if fmt == base and self.axis == -1:
                return name
        el = self.element
        if (self.axis == -1 and isinstance(el, Fixed) and 2 <= el.width <= 32
                and self == bfp(el.width, self.block_size, sign_magnitude=self.sign_magnitude,
                                scale_rule=self.scale_rule)):
            opts = ("," + "sm" if self.sign_magnitude else "") + (
                ",nosat" if self.scale_rule == "nosat" else "")
            return f"bfp<{el.width},{self.block_size}{opts}>"
        parts = [str(self.element), f"k={self.block_size}", f"scale={self.scale}"]
        if self.axis != -1:
            parts.append(f"axis={self.axis}")
        if self.scale_rule != "floor":
            parts.append(f"rule={self.scale_rule}")
        if self.tensor_scale:
            parts.append("tensor_scale=true")
        if self.sign_magnitude:
            parts.append("sign_magnitude=true")
        return "block[" + "; ".join(parts) + "]"

    def replace(self, **changes: object) -> Block:
        """A copy with some fields changed (validated)."""
        return replace_block(self, **changes)


def replace_block(b: Block, **changes: object) -> Block:
    """``dataclasses.replace`` for a :class:`Block` (validated)."""
    from dataclasses import replace

    return replace(b, **changes)


def _stochastic_fmt(f: Fixed | Float) -> bool:
    return f.rounding in (FixedRounding.STOCHASTIC, FloatRounding.STOCHASTIC)


def _mx_float(name: str) -> Float:
    return _FLOAT_NAMES[name].replace(overflow="sat")


def bfp(mant_bits: int, block_size: int, *, sign_magnitude: bool = False,
        scale_rule: str = "floor") -> Block:
    """Block floating point ``bfp<M,k>``: M-bit integer mantissas (sign included) at
    ``k·2^-(M-2)`` (so the largest magnitude lies just below 2, as OCP MXINT8 with M = 8),
    round to nearest even, saturating; two's complement (``[-2^(M-1), 2^(M-1)-1]``) or
    sign-magnitude (``±(2^(M-1)-1)``); an E8M0 shared exponent per ``k`` elements with the
    ``floor`` (max-exponent) or ``nosat`` (rounding-aware) rule."""
    m = _int(mant_bits, "bfp mantissa bits", 2, 32)
    el = Fixed(m, 2, rounding="rnd_conv", overflow="sat_sym" if sign_magnitude else "sat")
    return Block(el, block_size, E8M0, scale_rule=scale_rule, sign_magnitude=sign_magnitude)


_BLOCK_NAMES: dict[str, Block] = {
    "mxfp8_e4m3": Block(_mx_float("float8_e4m3fn"), 32),
    "mxfp8_e5m2": Block(_mx_float("float8_e5m2"), 32),
    "mxfp6_e3m2": Block(_mx_float("float6_e3m2fn"), 32),
    "mxfp6_e2m3": Block(_mx_float("float6_e2m3fn"), 32),
    "mxfp4_e2m1": Block(_mx_float("float4_e2m1fn"), 32),
    "mxint8": bfp(8, 32),
    "nvfp4": Block(_mx_float("float4_e2m1fn"), 16, _mx_float("float8_e4m3fn")),
    "nvfp4_ts": Block(_mx_float("float4_e2m1fn"), 16, _mx_float("float8_e4m3fn"),
                      tensor_scale=True),
}
#: Named block formats (``fx.parse`` reads these names; ``str()`` writes them).
BLOCK_PRESETS: dict[str, Block] = dict(_BLOCK_NAMES)

_BFP = re.compile(r"^\s*bfp\s*<\s*(\d+)\s*,\s*(\d+)\s*((?:,\s*[a-z]+\s*)*)>\s*$", re.IGNORECASE)


def _parse_bfp(m: re.Match, text: str) -> Block:
    kw: dict = {}
    for opt in (o.strip().lower() for o in m.group(3).split(",") if o.strip()):
        if opt in ("sm", "tc"):
            kw["sign_magnitude"] = opt == "sm"
        elif opt in _SCALE_RULES:
            kw["scale_rule"] = opt
        else:
            raise ValueError(msg("parse bfp<M,k[,sm|tc][,floor|nosat]>", "unknown option", opt))
    return bfp(int(m.group(1)), int(m.group(2)), **kw)


def _parse_block(text: str) -> Block:
    inner = text.strip()[len("block["):-1]
    parts = [p.strip() for p in inner.split(";")]
    if not parts or not parts[0]:
        raise ValueError(msg("parse block[...]", "needs an element format first", text))
    kw: dict = {}
    for p in parts[1:]:
        key, eq, val = p.partition("=")
        key, val = key.strip().lower(), val.strip()
        if not eq:
            raise ValueError(msg("parse block[...]", "options are key=value", p))
        if key == "k":
            kw["block_size"] = _int_arg(val, "block k")
        elif key == "scale":
            kw["scale"] = val
        elif key == "axis":
            kw["axis"] = _int_arg(val, "block axis")
        elif key == "rule":
            kw["scale_rule"] = val.lower()
        elif key in ("tensor_scale", "sign_magnitude"):
            kw[key] = _bool_arg(val, f"block {key}")
        else:
            raise ValueError(msg("parse block[...]", "options are k, scale, axis, rule, "
                                 "tensor_scale, sign_magnitude", key))
    return Block(parse(parts[0]), **kw)


def parse_block(text: str) -> Block | None:
    """A :class:`Block` from its name (``mxfp8_e4m3 mxfp8_e5m2 mxfp6_e3m2 mxfp6_e2m3
    mxfp4_e2m1 mxint8 nvfp4 nvfp4_ts``), ``bfp<M,k[,sm|tc][,floor|nosat]>`` or the generic
    ``block[ELEMENT; k=K; scale=e8m0|FLOAT; axis=A; rule=floor|nosat; tensor_scale=b;
    sign_magnitude=b]`` (the canonical ``str`` of a Block); None when ``text`` is none of
    these."""
    key = text.strip().lower()
    if key in _BLOCK_NAMES:
        return _BLOCK_NAMES[key]
    m = _BFP.match(text)
    if m:
        return _parse_block_checked(lambda: _parse_bfp(m, text))
    if key.startswith("block[") and key.endswith("]"):
        return _parse_block_checked(lambda: _parse_block(text))
    return None


def _parse_block_checked(build) -> Block:
    try:
        return build()
    except TypeError as e:
        raise ValueError(str(e)) from None


def _block_operand(value: object, what: str) -> Block:
    if isinstance(value, str):
        value = parse(value)
    if not isinstance(value, Block):
        raise ValueError(msg(what, "must be a block format (e.g. mxfp8_e4m3)", str(value)))
    if value.tensor_scale:
        raise ValueError(msg(what, "a per-tensor scale is applied outside the Mac (use the "
                             "block format without it)", str(value)))
    return value


def _check_block_operands(mac: Mac) -> None:
    if mac.a is None or mac.b is None:
        raise ValueError(msg("Mac a/b", "give both block operand formats or neither",
                             (str(mac.a), str(mac.b))))
    a = _block_operand(mac.a, "Mac a")
    b = _block_operand(mac.b, "Mac b")
    if a.block_size != b.block_size:
        raise ValueError(msg("Mac a/b", "block sizes must be equal",
                             (a.block_size, b.block_size)))
    if mac.mul is not None:
        raise ValueError(msg("Mac mul", "a block Mac forms products exactly (mul must be None)",
                             str(mac.mul)))
    object.__setattr__(mac, "a", a)
    object.__setattr__(mac, "b", b)
