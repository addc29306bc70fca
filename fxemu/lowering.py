"""Lowering: the one place that turns formats and Macs into typed kernel parameters and picks
a kernel path.

A :class:`~fxemu.formats.Fixed` or :class:`~fxemu.formats.Float` lowers once (cached) into a
:class:`~fxemu._kernels.params.FixedParams` / :class:`~fxemu._kernels.params.FloatParams` for
the conversion kernels, or a :class:`~fxemu._kernels.params.FormatVec` for the exact
arithmetic engine; a :class:`~fxemu.formats.Mac` into a :class:`MacParams`. Path decisions
live here too:

* conversion: the vectorised fast kernel (with its exact fix-up inside) where the rounding and
  overflow modes have one, else the exact kernel (:func:`converter`);
* a Mac product (:func:`mac_path`): a fused order's kernel (:func:`fused_params`), the
  exact BLAS tier or the int64 kernel for fixed
  datapaths whose intermediates fit in 62 bits (:func:`int_path`), the double TwoSum kernel
  for float datapaths whose products are exact in double (:func:`float_path`), else the exact
  engine.

Everything here is pure bookkeeping on format descriptions and operand spans (no data pass
besides the span kernel the caller runs).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np

from ._errors import msg
from ._kernels import codes as c
from ._kernels import convert as _kc
from ._kernels import fused as _kfu
from ._kernels import mac_fast as _kmf
from ._kernels.params import NO_VEC, BlockParams, FixedParams, FloatParams, FormatVec
from .formats import (
    Block,
    Fixed,
    FixedOverflow,
    FixedRounding,
    Float,
    FloatOverflow,
    FloatRounding,
    Mac,
    Special,
)

__all__ = [
    "FIXED_OVERFLOW",
    "FIXED_ROUNDING",
    "FLOAT_ROUNDING",
    "DirectPath",
    "MacParams",
    "MacPath",
    "ac_shift",
    "block_mac_check",
    "block_mac_fast",
    "block_sr_key",
    "converter",
    "decision_grid",
    "direct_path",
    "draws_random",
    "fast_fixed_mode",
    "fast_float_fmt",
    "float32_exact",
    "float_bounds",
    "float_path",
    "float_span",
    "format_vec",
    "fused_exponents",
    "fused_params",
    "has_nan",
    "int_limits",
    "int_path",
    "int_span",
    "is_stochastic",
    "lower",
    "lower_block",
    "lower_mac",
    "lower_mac_call",
    "mac_path",
    "mx_qmode",
    "nan_raises",
    "slow_vec",
    "sr_key",
]

FIXED_ROUNDING = {
    FixedRounding.TRN: c.FLOOR,
    FixedRounding.RND: c.HALF_UP,
    FixedRounding.RND_ZERO: c.HALF_ZERO,
    FixedRounding.RND_MIN_INF: c.HALF_DOWN,
    FixedRounding.RND_INF: c.HALF_AWAY,
    FixedRounding.RND_CONV: c.HALF_EVEN,
    FixedRounding.TRN_ZERO: c.TO_ZERO,
    FixedRounding.RND_CONV_ODD: c.HALF_ODD,
    FixedRounding.STOCHASTIC: c.STOCH_TC,
    FixedRounding.TRN_INF: c.CEIL,
    FixedRounding.TRN_AWAY: c.AWAY,
    FixedRounding.TRN_MAG: c.MAG_TC,
    FixedRounding.JAM: c.JAM_TC,
    FixedRounding.RTO: c.TO_ODD,
}
FIXED_OVERFLOW = {
    FixedOverflow.SAT: c.O_SAT,
    FixedOverflow.SAT_ZERO: c.O_SAT_ZERO,
    FixedOverflow.SAT_SYM: c.O_SAT_SYM,
    FixedOverflow.WRAP: c.O_WRAP,
    FixedOverflow.WRAP_SM: c.O_WRAP_SM,
}
FLOAT_ROUNDING = {
    FloatRounding.RNE: c.HALF_EVEN,
    FloatRounding.RNA: c.HALF_AWAY,
    FloatRounding.RTZ: c.TO_ZERO,
    FloatRounding.RUP: c.CEIL,
    FloatRounding.RDN: c.FLOOR,
    FloatRounding.RTO: c.TO_ODD,
    FloatRounding.STOCHASTIC: c.STOCH_SM,
    FloatRounding.TIES_ZERO: c.HALF_ZERO,
    FloatRounding.TIES_ODD: c.HALF_ODD,
    FloatRounding.TIES_POS: c.HALF_UP,
    FloatRounding.TIES_NEG: c.HALF_DOWN,
    FloatRounding.TO_AWAY: c.AWAY,
    FloatRounding.JAM: c.JAM_SM,
    FloatRounding.STOCHASTIC_RNE: c.STOCH_SM_RNE,
    FloatRounding.STOCHASTIC_RNO: c.STOCH_SM_RNO,
    FloatRounding.STOCHASTIC_HALF: c.STOCH_SM_HALF,
}
_SPECIAL = {Special.IEEE: c.S_IEEE, Special.FN: c.S_FN, Special.FNUZ: c.S_FNUZ,
            Special.NONE: c.S_NONE, Special.FNUZ_INF: c.S_FNUZ_INF, Special.FN_INF: c.S_FN_INF}
#: the rounding codes each fast (double/integer) kernel implements; the others take the exact
#: path
_FAST_FIXED_Q = frozenset((c.FLOOR, c.CEIL, c.TO_ZERO, c.HALF_UP, c.HALF_ZERO, c.HALF_DOWN,
                           c.HALF_AWAY, c.HALF_EVEN, c.HALF_ODD))
_FAST_FLOAT_Q = frozenset((c.HALF_EVEN, c.HALF_AWAY, c.TO_ZERO, c.CEIL, c.FLOOR, c.TO_ODD))
_I, _F, _U = np.int64, np.float64, np.uint64


# ---------------------------------------------------------------------------------------------
# Formats


def ac_shift(fmt: Fixed) -> int:
    """ac_fixed's pre-scaling exponent I + !S + ((32 - W - !S) & 31) (0 for ap formats)."""
    if fmt.lib != "ac":
        return 0
    ns = 0 if fmt.signed else 1
    return fmt.int_bits + ns + ((32 - fmt.width - ns) & 31)


def _fixed_fast_ok(q: int, o: int, nsat: int) -> bool:
    return q in _FAST_FIXED_Q and (o in (c.O_SAT, c.O_SAT_ZERO, c.O_SAT_SYM)
                                                 or (o == c.O_WRAP and nsat == 0))


@functools.lru_cache(maxsize=256)
def _lower_fixed(fmt: Fixed) -> FixedParams:
    q, o, w = FIXED_ROUNDING[fmt.rounding], FIXED_OVERFLOW[fmt.overflow], fmt.width
    fast = (_fixed_fast_ok(q, o, fmt.sat_bits) and -1022 <= fmt.frac_bits <= 1023
            # ac's overflow test near min (see fixed_round) lives in the exact path
            and not (fmt.lib == "ac" and fmt.signed and o == c.O_SAT_ZERO and w % 32 == 0))
    hi = float(fmt.max_int)
    lo = -hi if (o == c.O_SAT_SYM and fmt.signed and w > 1) else float(fmt.min_int)
    # below `tiny` the vendor's reading of the double differs from its value (see
    # _kernels.convert.fixed_element): those elements take the exact path
    tiny = 2.0 ** max(ac_shift(fmt) - 1022, -1074) if fmt.lib == "ac" else 2.0**-1022
    return FixedParams(
        width=_I(w), frac=_I(fmt.frac_bits), signed=bool(fmt.signed), qmode=_I(q), omode=_I(o),
        nsat=_I(fmt.sat_bits), lib_ac=fmt.lib == "ac", ac_shift=_I(ac_shift(fmt)),
        scale=_F(fmt.step), mask=_U((1 << w) - 1), fast=bool(fast),
        si=_F(2.0**fmt.frac_bits) if fast else _F(0.0), lo=_F(lo), hi=_F(hi),
        off=_F(float(1 << (w - 1)) if fmt.signed else 0.0), span=_F(float(1 << w)),
        tiny=_F(tiny))


def float_bounds(fmt: Float) -> tuple[np.uint64, np.uint64]:
    """Double bit patterns bounding the float fast path: the larger of the format's and
    float64's smallest normal (bit tricks need a normal double), and the format's max."""
    lo = max(fmt.smallest_normal, 2.0**-1022)
    return (np.float64(lo).view(np.uint64), np.float64(fmt.max).view(np.uint64))


@functools.lru_cache(maxsize=256)
def _lower_float(fmt: Float) -> FloatParams:
    e, m = fmt.exp_bits, fmt.man_bits
    top = (1 << e) - 1
    sp = fmt.special
    # a format without zero is lowered as the format with one more binade below (bias + 1),
    # whose codes are one higher (zoff): the kernels subtract it (see float_element)
    zoff = 0 if fmt.zero else 1
    all_ones = (1 << (e + m)) - 1 + zoff
    if sp is Special.IEEE:
        inf_code, nan_code = top << m, (top << m) | (1 << (m - 1))
    elif sp is Special.FN:
        inf_code, nan_code = 0, all_ones
    elif sp is Special.FN_INF:
        inf_code, nan_code = all_ones - 1, all_ones
    elif sp is Special.FNUZ_INF:
        inf_code, nan_code = all_ones, 0
    else:
        inf_code, nan_code = 0, 0
    mant, ex = math.frexp(fmt.max)  # max = mant·2^ex, 0.5 <= mant < 1 (a subnormal double too)
    frac = int(mant * 2.0 ** (m + 1)) - (1 << m)  # the m fraction bits below the leading 1
    max_code = ((ex - 1 + fmt.bias + zoff) << m) | frac
    if e == 0:  # no normals (P3109 signed p = k): max is a subnormal, its code max / step
        max_code = int(math.ldexp(fmt.max, m - fmt.emin))
    q = FLOAT_ROUNDING[fmt.rounding]
    # M = 0: the significand is the hidden bit alone, so "even"/"odd" cannot be read from the
    # double's low kept bit; the exact path handles it
    fast = q in _FAST_FLOAT_Q and m != 0 and fmt.zero
    # E = 0: max lies below the smallest normal, which the fast paths' bounds assume it does not
    fast = fast and e != 0
    minnorm, maxbits = float_bounds(fmt)
    # subnormal results on the fast path: their grid 2^(emin - M) is a double at most 1, so
    # scaling an input below the smallest normal onto it (by 2^(M - emin) >= 1) is exact
    sub_e = 1 - fmt.bias - zoff - m
    subfast = (fast and fmt.subnormals and fmt.smallest_normal >= 2.0**-1022
               and -1023 <= sub_e <= 0)
    return FloatParams(
        mbits=_I(m), emin=_I(1 - fmt.bias - zoff), max_code=_U(max_code), nan_code=_U(nan_code),
        inf_code=_U(inf_code), special=_I(_SPECIAL[sp]), subn=bool(fmt.subnormals),
        overflow_sat=fmt.overflow is not FloatOverflow.INF, qmode=_I(q),
        sign_bit=_U((1 << (fmt.width - 1)) if fmt.signed else 0), bias=_I(fmt.bias + zoff),
        fast=bool(fast), k=_I(52 - m), minnorm=minnorm, maxbits=maxbits,
        fnuz=sp in (Special.FNUZ, Special.FNUZ_INF),
        sat_inf=fmt.overflow is FloatOverflow.SAT_FINITE, unsigned=not fmt.signed,
        zoff=_U(zoff), code_par=fmt.code_ties, subfast=bool(subfast),
        subs=_F(2.0**-sub_e if subfast else 0.0), subq=_F(2.0**sub_e if subfast else 0.0))


def lower(fmt: Fixed | Float) -> FixedParams | FloatParams:
    """The conversion-kernel parameters of ``fmt`` (cached per format)."""
    return _lower_fixed(fmt) if isinstance(fmt, Fixed) else _lower_float(fmt)


@functools.lru_cache(maxsize=512)
def converter(fmt: Fixed | Float, codes: bool) -> tuple[object, FixedParams | FloatParams]:
    """(kernel, params) converting doubles into ``fmt``: codes (uint64) when ``codes``, else
    values. The kernel is ``kernel(x, xb, out, params, sr_bits, key, nan_raise) -> refused NaN
    count``, one entry per call: fast pass and exact fix-up inside it
    (:func:`fxemu._kernels.convert.fixed_kernel`, :func:`~fxemu._kernels.convert.float_kernel`).
    """
    p = lower(fmt)
    if isinstance(p, FixedParams):
        if p.fast:
            return _kc.fixed_kernel(int(p.qmode), int(p.omode), True, codes), p
        return _kc.fixed_kernel(-1, -1, False, codes), p
    return _kc.float_kernel(int(p.qmode) if p.fast else -1, p.fast, codes), p


@functools.lru_cache(maxsize=256)
def decision_grid(fmt: Fixed | Float) -> tuple[bool, bool, np.int64, np.int64]:
    """(det, fixed, mbits, low) of :func:`fxemu._kernels.elementwise.off_decision`: whether
    ``fmt`` rounds deterministically (an inexact double result may then stand for the exact
    one away from the format's grid points and midpoints), whether it is fixed, the float
    mantissa bits, and ``low`` = -F - 1 (fixed: its midpoints are the multiples of 2^low) or
    emin (float)."""
    if isinstance(fmt, Fixed):
        return not is_stochastic(fmt), True, _I(0), _I(-fmt.frac_bits - 1)
    return not is_stochastic(fmt), False, _I(fmt.man_bits), _I(fmt.emin)


def nan_raises(fmt: Fixed | Float, nan: str) -> bool:
    """Whether a NaN input into ``fmt`` is refused: a format without NaN under ``nan="raise"``
    (a float format without NaN refuses it whatever ``nan`` says: it has no vendor reading)."""
    if isinstance(fmt, Float):
        return fmt.special is Special.NONE
    return nan == "raise"


def has_nan(fmt: Fixed | Float | None) -> bool:
    """Whether ``fmt`` holds NaN (None, an exact product, does)."""
    return fmt is None or (isinstance(fmt, Float) and fmt.special is not Special.NONE)


@functools.lru_cache(maxsize=512)
def format_vec(fmt: Fixed | Float, sr_bits: int) -> FormatVec:
    """The exact engine's view of ``fmt`` (layout in :class:`FormatVec`). Unsigned floats and
    floats without zero are storage formats (quantize, to_bits, from_bits): arithmetic refuses
    them here."""
    if isinstance(fmt, Float) and (not fmt.signed or not fmt.zero):
        raise ValueError(msg("format", "unsigned and zero-less float formats are storage "
                             "formats (quantize/to_bits/from_bits), not arithmetic ones",
                             str(fmt)))
    if isinstance(fmt, Fixed):
        return FormatVec(*(_I(v) for v in (
            c.KIND_FIXED, fmt.width, fmt.frac_bits, int(fmt.signed),
            FIXED_ROUNDING[fmt.rounding], FIXED_OVERFLOW[fmt.overflow], fmt.sat_bits, 0,
            sr_bits, 0, 0, 0)))
    p = _lower_float(fmt)
    ovf = {FloatOverflow.INF: 0, FloatOverflow.SAT: 1, FloatOverflow.SAT_FINITE: 2}
    return FormatVec(*(_I(v) for v in (
        c.KIND_FLOAT, fmt.width, p.mbits, p.emin, p.qmode, p.special,
        int(p.subn) | (int(fmt.code_ties) << 1),
        ovf[fmt.overflow], sr_bits, int(p.max_code), int(p.nan_code), int(p.inf_code))))


@functools.lru_cache(maxsize=512)
def slow_vec(fmt: Fixed | Float, sr_bits: int) -> np.ndarray:
    """:func:`format_vec` as a read-only int64 array, for the slow-path slots of the fast Mac
    kernels (Numba's parfor lowering cannot take tuples nested in a tuple argument into a
    prange loop; arrays it can)."""
    v = np.array(format_vec(fmt, sr_bits), np.int64)
    v.flags.writeable = False
    return v


def is_stochastic(fmt: Fixed | Float | None) -> bool:
    """Whether ``fmt`` rounds stochastically."""
    return fmt is not None and fmt.rounding in (
        FixedRounding.STOCHASTIC, FloatRounding.STOCHASTIC, FloatRounding.STOCHASTIC_RNE,
        FloatRounding.STOCHASTIC_RNO, FloatRounding.STOCHASTIC_HALF)


_stochastic = is_stochastic


def draws_random(*uses: object) -> bool:
    """Whether a call rounding through ``uses`` (formats, Blocks and Macs; None for none)
    rounds stochastically anywhere, so that its seed is read: a stochastic format, a Mac
    with a stochastic acc, mul or out format, or a block (format or Mac operand) whose
    element rounds stochastically."""
    for u in uses:
        if isinstance(u, Mac):
            parts = [u.acc, u.mul, u.out] + ([u.a.element, u.b.element] if u.block else [])
        elif isinstance(u, Block):
            parts = [u.element]
        else:
            parts = [u]
        if any(_stochastic(f) for f in parts):
            return True
    return False


def _sr_bits(sr_bits: int | None) -> int:
    if sr_bits is None:
        return c.DEFAULT_SR_BITS
    if isinstance(sr_bits, bool) or not isinstance(sr_bits, int | np.integer):
        raise TypeError(msg("sr_bits", "must be an int", sr_bits))
    if not 1 <= sr_bits <= 62:
        raise ValueError(msg("sr_bits", "must be in 1..62", sr_bits))
    return int(sr_bits)


def _key(seed: int | None) -> np.uint64:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer)):
        raise TypeError(msg("seed", "must be an int or None", seed))
    if seed is not None and seed < 0:
        raise ValueError(msg("seed", "must be >= 0", seed))
    key = np.random.SeedSequence(None if seed is None else int(seed)).generate_state(1, np.uint64)
    return np.uint64(key[0])


_NO_KEY = np.uint64(0)


def sr_key(fmt: Fixed | Float, seed: int | None, sr_bits: int | None) -> tuple[int, np.uint64]:
    """(sr_bits, key) of a stochastic rounding into ``fmt``: the validated bit count (default
    62) and the counter-based generator's key from ``seed`` (0 where nothing is stochastic;
    ``seed=None`` draws fresh entropy)."""
    bits = _sr_bits(sr_bits)
    if not _stochastic(fmt):
        return bits, _NO_KEY
    return bits, _key(seed)


# ---------------------------------------------------------------------------------------------
# Macs


class MacParams(NamedTuple):
    """A Mac lowered for the kernels: the exact engine's format vectors (``mul`` repeats
    ``acc`` without a mul format), the order code and chunk size, the scale of the output
    codes (2^-F for a fixed out format, else 0), the format that reads operands (mul, else
    acc: an FTZ one reads subnormals as zero), whether the out format rounds stochastically,
    and whether some format of the datapath has no NaN."""

    acc: FormatVec
    mul: FormatVec
    out: FormatVec
    use_mul: bool
    order: int
    chunk: int
    out_scale: float
    first: Fixed | Float
    out_stochastic: bool
    lacks_nan: bool
    stochastic: bool


_ORDERS = {"sequential": c.ORDER_SEQUENTIAL, "pairwise": c.ORDER_PAIRWISE,
           "exact": c.ORDER_EXACT}


@functools.lru_cache(maxsize=256)
def lower_mac(mac: Mac, sr_bits: int) -> MacParams:
    """The kernel parameters of ``mac`` (cached per Mac and sr_bits)."""
    order = _ORDERS.get(mac.order, c.ORDER_CHUNK)
    acc = format_vec(mac.acc, sr_bits)
    out = mac.out_format
    out_vec = format_vec(out, sr_bits)
    if mac.out is None and not out.rounding.keeps_exact:
        # the kernels round the final accumulator into out; without an out format that must
        # be the identity, which jamming/trn_mag are not on exact values: read it back with
        # truncation (every accumulator value is exact in acc)
        out_vec = format_vec(out.replace(rounding="trn" if isinstance(out, Fixed) else "rtz"),
                             sr_bits)
    return MacParams(
        acc=acc, mul=format_vec(mac.mul, sr_bits) if mac.mul is not None else acc,
        out=out_vec, use_mul=mac.mul is not None, order=order,
        chunk=mac.chunk, out_scale=out.step if isinstance(out, Fixed) else 0.0,
        first=mac.mul if mac.mul is not None else mac.acc,
        out_stochastic=_stochastic(mac.out),
        lacks_nan=not all(has_nan(f) for f in (mac.mul, mac.acc, mac.out)),
        stochastic=any(_stochastic(f) for f in (mac.acc, mac.mul, mac.out)))


def lower_mac_call(mac: Mac, seed: int | None,
                   sr_bits: int | None) -> tuple[MacParams, int, np.uint64]:
    """(params, sr_bits, key) of one Mac call: ``sr_bits`` validated, :func:`lower_mac`, and
    the generator key from ``seed`` where a format of the datapath is stochastic (0 else)."""
    bits = _sr_bits(sr_bits)
    lm = lower_mac(mac, bits)
    return lm, bits, (_key(seed) if lm.stochastic else _NO_KEY)


def int_span(raw: tuple) -> tuple[int, int, int]:
    """(F, bits, nonfinite) from an array's span (:func:`fxemu._kernels.mac_fast.span`): the
    smallest F making every x·2^F an integer, the largest bit length of those integers'
    magnitudes (0, 0 for an all-zero array), and the inf/NaN count."""
    low, high, _, bad = raw
    if low > high:
        return 0, 0, int(bad)
    return int(-low), int(high - low + 1), int(bad)


def float_span(raw: tuple) -> tuple[int, int, int, int]:
    """(most significant bits of one element, lowest and highest leading-bit exponents of
    nonzero elements, inf/NaN count) from an array's span."""
    low, high, sig, bad = raw
    return int(sig), int(low), int(high), int(bad)  # low bounds every leading exponent


def fast_fixed_mode(f: Fixed) -> bool:
    """Whether the integer kernels implement ``f``'s rounding and overflow."""
    return _fixed_fast_ok(FIXED_ROUNDING[f.rounding], FIXED_OVERFLOW[f.overflow], f.sat_bits)


def int_limits(f: Fixed) -> tuple:
    """(lo, hi, wrap offset, W-bit mask) of ``f``'s integers (lo = -max under SAT_SYM)."""
    hi = f.max_int
    lo = -hi if (f.overflow is FixedOverflow.SAT_SYM and f.signed) else f.min_int
    off = (1 << (f.width - 1)) if f.signed else 0
    return (np.int64(lo), np.int64(hi), np.int64(off), np.int64((1 << f.width) - 1))


def int_path(mac: Mac, fa: int, ba: int, fb: int, bb: int) -> tuple | None:
    """Integer datapath parameters of ``mac`` for products of integers at scales fa and fb
    (magnitudes below 2^ba and 2^bb): ``(pm, accpar, modes)`` with pm = (d_mul, lo, hi, off,
    wmask) rounding a product into the mul format, accpar = (sh_acc, sh_p, d, lo, hi, off,
    wmask) accumulating it (see :func:`fxemu._kernels.mac_fast.int_step`) and modes = (mul
    quantization, mul overflow, acc quantization, acc overflow) codes; None unless every
    intermediate fits in 62 bits and every mode has an integer kernel."""
    acc, mulf = mac.acc, mac.mul
    if not isinstance(acc, Fixed) or acc.width > 53 or not fast_fixed_mode(acc):
        return None
    if mulf is not None and (not isinstance(mulf, Fixed) or not fast_fixed_mode(mulf)):
        return None
    if ba + bb > 62 or max(fa, fb) > 1000:
        return None
    fp, bp = fa + fb, ba + bb
    pm = (np.int64(0), np.int64(0), np.int64(0), np.int64(0), np.int64(0))
    mq = mo = 0
    if mulf is not None:
        d_mul = fp - mulf.frac_bits
        if bp - d_mul > 62:
            return None
        pm = (np.int64(d_mul), *int_limits(mulf))
        mq, mo = FIXED_ROUNDING[mulf.rounding], FIXED_OVERFLOW[mulf.overflow]
        fp, bp = mulf.frac_bits, mulf.width
    fc = max(acc.frac_bits, fp)
    sh_acc, sh_p = fc - acc.frac_bits, fc - fp
    if acc.width + sh_acc > 62 or bp + sh_p > 62:
        return None
    accpar = (np.int64(sh_acc), np.int64(sh_p), np.int64(sh_acc), *int_limits(acc))
    return pm, accpar, (mq, mo, FIXED_ROUNDING[acc.rounding], FIXED_OVERFLOW[acc.overflow])


def fast_float_fmt(f: object, max_man: int) -> bool:
    """Whether ``f`` is a float format the double datapath rounds (at most ``max_man``
    mantissa bits, deterministic rounding, not fnuz)."""
    return (isinstance(f, Float) and f.man_bits <= max_man
            and FLOAT_ROUNDING[f.rounding] in _FAST_FLOAT_Q
            and f.special in (Special.IEEE, Special.FN, Special.NONE))


_F32 = Float(8, 23)  # IEEE binary32, RNE: its steps round by the hardware conversion


def float_path(mac: Mac, a_span: tuple, b_span: tuple, sr_bits: int) -> tuple | None:
    """Double-arithmetic datapath parameters of ``mac`` for operands with the spans a_span,
    b_span (:func:`float_span`): ``(mp, ap, mulvec, accvec, modes)`` with mp = (52 - mul
    mantissa bits, mul fast bounds) and ap = (52 - acc mantissa bits, acc fast bounds) for
    :func:`fxemu._kernels.convert.float_fast_element` and
    :func:`~fxemu._kernels.mac_fast.float_step`, the mul and acc format vectors for the exact
    engine, and modes = (mul rounding, acc rounding codes, whether acc is IEEE float32 with
    RNE, which the hardware conversion rounds); None unless every product is exact in double
    and the formats have a fast kernel (the mul entries repeat the acc's without a mul
    format)."""
    acc, mulf = mac.acc, mac.mul
    if not fast_float_fmt(acc, 50) or (mulf is not None and not fast_float_fmt(mulf, 52)):
        return None
    pa, alo, ahi, bad_a = a_span
    pb, blo, bhi, bad_b = b_span
    # products exact in double: at most 53 significant bits, no underflow or overflow
    if bad_a or bad_b or pa + pb > 53 or alo + blo < -960 or ahi + bhi > 1000:
        return None
    accp = slow_vec(acc, sr_bits)
    ap = (np.int64(52 - acc.man_bits), *float_bounds(acc))
    hw32 = acc == _F32
    if mulf is None:
        return (np.int64(0), *ap[1:]), ap, accp, accp, (0, FLOAT_ROUNDING[acc.rounding], hw32)
    mp = (np.int64(52 - mulf.man_bits), *float_bounds(mulf))
    return mp, ap, slow_vec(mulf, sr_bits), accp, (FLOAT_ROUNDING[mulf.rounding],
                                                     FLOAT_ROUNDING[acc.rounding], hw32)


class MacPath(NamedTuple):
    """The path of one Mac product: ``kind`` "int" (BLAS tier first where ``blas``, then the
    int64 kernel if ``kernel`` is set), "float" (the double kernel), "fused" (the fused-adder
    kernel, see :func:`fused_params`) or "exact" (the engine);
    "float32" (plain IEEE float32 multiply-adds where :func:`float32_exact` proves them the
    float kernel's steps: float32 operands and result); ``kernel`` and ``args`` are the fast
    kernel and its parameters after the operands; fa/fb
    the operands' integer scales and sh_p the product's shift (int paths); ``hw32``: an IEEE
    float32 accumulator rounded by the hardware (its inf/NaN results go to the engine);
    ``ops`` the int64 kernel's :class:`~fxemu._kernels.mac_fast.Datapath` (int paths)."""

    kind: str
    kernel: object = None
    args: tuple = ()
    fa: int = 0
    fb: int = 0
    blas: bool = False
    sh_p: int = 0
    hw32: bool = False
    ops: object = None


_EXACT = MacPath("exact")


def mac_path(mac: Mac, lm: MacParams, spans: tuple, key: np.uint64, sr_bits: int) -> MacPath:
    """Decide how a Mac product runs for operands with the raw spans ``spans`` (one per
    operand, :func:`fxemu._kernels.mac_fast.span`); cached per Mac and spans."""
    if mac.fused is not None:
        return _fused_path(mac, *spans)
    if lm.out_stochastic:
        return _EXACT
    if isinstance(mac.acc, Fixed):
        return _int_mac_path(mac, lm.order, max(lm.chunk, 1), *spans)
    return _float_mac_path(mac, lm.order, max(lm.chunk, 1), *spans, key, sr_bits)


@functools.lru_cache(maxsize=1024)
def _int_mac_path(mac: Mac, order: int, chunk: int, a: tuple, b: tuple) -> MacPath:
    (fa, ba, bad_a), (fb, bb, bad_b) = int_span(a), int_span(b)
    path = None if bad_a or bad_b else int_path(mac, fa, ba, fb, bb)
    if path is None:
        return _EXACT
    pm, accpar, modes = path
    sh_acc, sh_p = int(accpar[0]), int(accpar[1])
    blas = mac.mul is None and sh_acc == 0
    if order not in (c.ORDER_SEQUENTIAL, c.ORDER_CHUNK):
        # pairwise/exact orders have no integer kernel: only the BLAS tier
        return MacPath("int", None, (), fa, fb, True, sh_p) if blas else _EXACT
    ops = _kmf.fixed_ops(mac.mul is not None, *modes)
    kernel = _kmf.matmul_fast(ops, order)
    chunk_par = (accpar[0], accpar[0], *accpar[2:])  # a chunk's sum is at the acc scale
    return MacPath("int", kernel, (chunk, pm, accpar, chunk_par, _kmf.NO_VECS), fa, fb, blas,
                   sh_p, ops=ops)


def float32_exact(mac: Mac, order: int, a_span: tuple, b_span: tuple) -> bool:
    """Whether a Mac product runs exactly as plain IEEE float32 multiply-adds
    (:func:`fxemu._kernels.mac_fast.f32_ops`) on operands with the raw spans a_span, b_span:
    the accumulator IEEE float32 rounding to nearest even, no mul format, the sequential
    order, finite operands each exact in float32, and every product exact in float32 (at
    most 24 significant bits, lowest set bit >= 2^-149, magnitude below 2^128), so each step
    is one float32 rounding of ``acc + a·b``."""
    if mac.acc != _F32 or mac.mul is not None or order != c.ORDER_SEQUENTIAL:
        return False
    pa, alo, ahi, bad_a = float_span(a_span)
    pb, blo, bhi, bad_b = float_span(b_span)
    if bad_a or bad_b or pa > 24 or pb > 24 or min(alo, blo) < -149 or max(ahi, bhi) > 127:
        return False
    if pa == 0 or pb == 0:  # an all-zero operand: every product is a zero
        return True
    return pa + pb <= 24 and alo + blo >= -149 and ahi + bhi <= 126


@functools.lru_cache(maxsize=1024)
def _float_mac_path(mac: Mac, order: int, chunk: int, a: tuple, b: tuple, key: np.uint64,
                    sr_bits: int) -> MacPath:
    if order not in (c.ORDER_SEQUENTIAL, c.ORDER_CHUNK) or not isinstance(mac.acc, Float):
        return _EXACT
    path = float_path(mac, float_span(a), float_span(b), sr_bits)
    if path is None:
        return _EXACT
    mp, ap, mulp, accp, modes = path
    if float32_exact(mac, order, a, b):
        return MacPath("float32", _kmf.matmul_fast(_kmf.f32_ops(), c.ORDER_SEQUENTIAL),
                       (1, _NO_PARAMS, _NO_PARAMS, _NO_PARAMS, _kmf.NO_VECS), hw32=modes[2])
    kernel = _kmf.matmul_fast(_kmf.float_ops(mac.mul is not None, *modes), order)
    return MacPath("float", kernel, (chunk, mp, ap, ap, (mulp, accp, key)), hw32=modes[2])


class DirectPath(NamedTuple):
    """The datapath of a direct (im2col-free) conv kernel (:mod:`fxemu._kernels.conv_fast`):
    its scalar operations ``ops``, the operands' array dtype, their scales (operands enter as
    x·2^fa and x·2^fb), the product and accumulation parameters, and the scale that turns an
    accumulator into its value."""

    ops: object
    dtype: type
    fa: int
    fb: int
    mp: tuple
    ap: tuple
    out_scale: float


_NO_PARAMS = (np.float64(0.0),)


def direct_path(mac: Mac, lm: MacParams, spans: tuple, key: np.uint64, sr_bits: int,
                bound: float = math.inf) -> DirectPath | None:
    """The direct conv datapath of a Mac product with operand spans ``spans``, or None:

    * the int64 datapath of :func:`mac_path` in sequential order, as doubles holding the
      integers (:func:`fxemu._kernels.mac_fast.fixed_f64_ops`) where no mul format rounds,
      products land on the accumulator's grid, overflow saturates (or goes to zero) and every
      product and accumulator stays below 2^52; as int64 otherwise;
    * plain float32 arithmetic where :func:`float32_exact` holds.

    ``bound``: an upper bound on every partial sum's magnitude in value units (the caller's,
    from the operands); below the accumulator's saturation limits the float64 datapath's steps
    are plain sums. Operands with inf/NaN get None (the caller's im2col path handles them)."""
    if lm.order != c.ORDER_SEQUENTIAL or spans[0][3] or spans[1][3]:
        return None
    path = mac_path(mac, lm, spans, key, sr_bits)
    if path.kind == "int" and path.ops is not None:
        pm, accpar = path.args[1], path.args[2]
        scale = 2.0 ** -mac.acc.frac_bits
        ba, bb = int_span(spans[0])[1], int_span(spans[1])[1]
        o = FIXED_OVERFLOW[mac.acc.overflow]
        if (mac.mul is None and int(accpar[0]) == 0 and mac.acc.width <= 52
                and o in (c.O_SAT, c.O_SAT_SYM, c.O_SAT_ZERO) and ba + bb + path.sh_p <= 52):
            ap = (np.float64(2.0**path.sh_p), np.float64(accpar[3]), np.float64(accpar[4]))
            # in integer units (the bound has at most ~1e-11 relative rounding: margin 1e-9)
            safe = bound * 2.0**mac.acc.frac_bits * (1 + 1e-9) < min(ap[2], -ap[1])
            return DirectPath(_kmf.fixed_f64_ops(o, bool(safe)), np.float64, path.fa, path.fb,
                              _NO_PARAMS, ap, scale)
        return DirectPath(path.ops, np.int64, path.fa, path.fb, pm, accpar, scale)
    if path.kind == "float32":
        return DirectPath(_kmf.f32_ops(), np.float32, 0, 0, _NO_PARAMS, _NO_PARAMS, 1.0)
    return None


_FUSED_ROUNDING = {"rtz": c.TO_ZERO, "rne": c.HALF_EVEN, "rna": c.HALF_AWAY, "rdn": c.FLOOR,
                   "rup": c.CEIL, "rto": c.TO_ODD}


def _floor(v: int | None) -> np.int64:
    return np.int64(_kfu.NO_FLOOR if v is None else v)


@functools.lru_cache(maxsize=256)
def fused_params(mac: Mac) -> tuple[tuple, FloatParams, FormatVec]:
    """The fused-adder kernel's parameters of a ``fused:…`` Mac: ``(fp, accp, accvec)`` with
    fp = (terms, align bits, align rounding code, out bits, out rounding code, adder width
    ``3 + align + carry`` or 0 when unbounded, min_exp, emin_a, emin_b, acc emin, late),
    absent floors as :data:`fxemu._kernels.fused.NO_FLOOR`, accp the accumulator's
    conversion parameters and accvec its exact-engine vector (see
    :mod:`fxemu._kernels.fused`)."""
    f = mac.fused
    width = 0 if f.carry_bits is None else 3 + f.align_bits + f.carry_bits
    fp = (np.int64(f.terms), np.int64(f.align_bits), np.int64(_FUSED_ROUNDING[f.align_rounding]),
          np.int64(f.out_bits), np.int64(_FUSED_ROUNDING[f.out_rounding]), np.int64(width),
          _floor(f.min_exp), _floor(f.emin_a), _floor(f.emin_b), np.int64(mac.acc.emin),
          np.int64(f.late))
    return fp, _lower_float(mac.acc), format_vec(mac.acc, c.DEFAULT_SR_BITS)


@functools.lru_cache(maxsize=1024)
def _fused_path(mac: Mac, a: tuple, b: tuple) -> MacPath:
    pa, alo, ahi, _ = float_span(a)
    pb, blo, bhi, _ = float_span(b)
    if alo <= ahi and blo <= bhi and (pa + pb > 53 or alo + blo < -960 or ahi + bhi > 1000):
        raise ValueError(msg(f"Mac order {mac.order}", "needs products exact in float64 "
                             "(operands' significant bits summing to <= 53, product exponents "
                             "in -960..1000)", f"{pa} + {pb} bits, exponents {alo + blo}.."
                             f"{ahi + bhi}"))
    return MacPath("fused", _kfu.fused_matmul, fused_params(mac))


def fused_exponents(x: np.ndarray, emin: np.int64) -> np.ndarray:
    """The clamped exponents max(floor(log2|x|), emin) of a fused Mac's operand (a finite
    float64 array; zeros get :data:`fxemu._kernels.fused.ZERO_EXP`), same shape."""
    out = np.empty(x.shape, np.int64)
    _kfu.exponents(x.reshape(-1), emin, out.reshape(-1))
    return out
# ---------------------------------------------------------------------------------------------
# Block formats


@functools.lru_cache(maxsize=256)
def lower_block(block: Block,
                sr_bits: int = c.DEFAULT_SR_BITS) -> tuple[BlockParams, np.ndarray, np.ndarray]:
    """The block kernels' parameters of ``block``: (params, element format vector, scale
    format vector), the vectors read-only int64 arrays (cached per block and sr_bits)."""
    el = block.element
    elem_nan = 0
    if isinstance(el, Float) and el.has_nan:
        elem_nan = int(_lower_float(el).nan_code)
    if block.pow2_scale:
        sv, tiny, smax, scale_nan = NO_VEC, 0.0, 0.0, 255
    else:
        sc = block.scale
        sv = format_vec(sc, sr_bits)
        tiny, smax, scale_nan = sc.smallest_normal, sc.max, int(_lower_float(sc).nan_code)
    params = BlockParams(
        k=_I(block.block_size), pow2=block.pow2_scale, emax_elem=_I(block.emax_elem),
        nosat=block.scale_rule == "nosat", elem_max=_F(el.max), sm=block.sign_magnitude,
        scale_tiny=_F(tiny), scale_max=_F(smax), elem_nan=_U(elem_nan),
        scale_nan=_U(scale_nan), elem_step=_F(el.step if isinstance(el, Fixed) else 0.0),
        **_block_fast(block))
    ev = np.array(format_vec(el, sr_bits), np.int64)
    svv = np.array(sv, np.int64)
    ev.flags.writeable = svv.flags.writeable = False
    return params, ev, svv


def _block_fast(block: Block) -> dict:
    """The MX element path's fields of :class:`BlockParams`: a signed float element with a
    zero, at least one mantissa bit and a deterministic rounding of
    :func:`~fxemu._kernels.block.mx_convert`'s, under an E8M0 scale, whose scaled values
    (2^±127 times the element range) stay normal doubles."""
    el = block.element
    ok = (isinstance(el, Float) and block.pow2_scale and el.signed and el.zero
          and 1 <= el.man_bits <= 51 and not el.code_ties
          and FLOAT_ROUNDING[el.rounding] in _FAST_FLOAT_Q
          and el.emin - el.man_bits - 127 > -1022 and el.emax + 129 < 1023)
    if not ok:
        return {"fast": False, "eq": _I(0), "embits": _I(0), "esh": _I(0), "eemin": _I(0),
                "emaxmag": _U(0), "esign": _U(0), "efnuz": False, "esat": False,
                "esubn": False}
    fp = _lower_float(el)
    return {"fast": True, "eq": fp.qmode, "embits": fp.mbits, "esh": fp.k, "eemin": fp.emin,
            "emaxmag": fp.max_code, "esign": fp.sign_bit, "efnuz": fp.fnuz,
            "esat": fp.overflow_sat, "esubn": fp.subn}


def mx_qmode(p: BlockParams) -> int:
    """The rounding-mode argument of :func:`fxemu._kernels.block.mx_kernel` for a ``fast``
    block: ties to even (the MX formats' mode) compiled in, -1 (read at run time) else."""
    return c.HALF_EVEN if p.eq == c.HALF_EVEN else -1


def block_sr_key(block: Block, seed: int | None,
                 sr_bits: int | None) -> tuple[tuple[BlockParams, np.ndarray, np.ndarray],
                                                np.uint64]:
    """(:func:`lower_block`, key) of one block conversion: the element's stochastic rounding
    key from ``seed`` (0 where the element rounds deterministically)."""
    bits, key = sr_key(block.element, seed, sr_bits)
    return lower_block(block, bits), key


def _product_span(f: Fixed | Float) -> int:
    """Bits between the largest and the smallest nonzero magnitude of an element (as the
    exact block sum's window sees it)."""
    if isinstance(f, Fixed):
        return f.width
    return f.emax + 1 - (f.emin - f.man_bits)


def block_mac_check(mac: Mac) -> str | None:
    """Why the block kernel cannot run ``mac`` exactly (None when it can): the exact block sum
    (element products, the block's carry bits and the scale product's significand) must fit
    the 126-bit window, and the order must be one the block kernel has."""
    a, b = mac.a, mac.b
    scale_bits = sum(0 if x.pow2_scale else x.scale.man_bits + 1 for x in (a, b))
    need = (_product_span(a.element) + _product_span(b.element)
            + a.block_size.bit_length() + scale_bits)
    if need > 120:
        return f"the element formats are too wide for an exact block sum ({need} > 120 bits)"
    if mac.order not in _ORDERS and not mac.order.startswith("chunk:"):
        return f"order {mac.order} has no block kernel"
    return None


def _narrow(f: Fixed | Float) -> bool:
    """Whether products of two such elements are exact in double (<= 26 significant bits)."""
    return (f.width if isinstance(f, Fixed) else f.man_bits + 1) <= 26


def block_mac_fast(mac: Mac, lm: MacParams) -> tuple:
    """(fast, k, rounding, minnorm, maxbits) of the block kernel's double path: a float
    accumulator :func:`fxemu._kernels.mac_fast.float_step` rounds, the sequential or chunk
    order, no stochastic rounding, no out format beyond a plain rounding, narrow elements
    (see :func:`fxemu._kernels.block.block_matmul`)."""
    acc = mac.acc
    ok = (fast_float_fmt(acc, 50) and not lm.stochastic
          and lm.order in (c.ORDER_SEQUENTIAL, c.ORDER_CHUNK)
          and _narrow(mac.a.element) and _narrow(mac.b.element))
    if not ok:
        return False, _I(0), _I(0), _U(0), _U(0)
    lo, hi = float_bounds(acc)
    return True, _I(52 - acc.man_bits), _I(FLOAT_ROUNDING[acc.rounding]), lo, hi
