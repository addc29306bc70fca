"""Conversion API: validate and coerce, then dispatch to one kernel in :mod:`fxemu._kernels`.

``quantize`` gives the value a hardware register of the format holds after ``reg = x;``;
``to_bits`` gives that register's raw code; ``from_bits`` decodes codes. Rounding happens once,
from the exact double (no double rounding through float32).
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import numpy as np

from ._errors import msg
from ._kernels import convert as _k
from ._kernels import rounding as _r
from .formats import (
    Fixed,
    FixedOverflow,
    FixedRounding,
    Float,
    FloatOverflow,
    FloatRounding,
    Special,
    parse,
)

__all__ = ["as_format", "from_bits", "quantize", "to_bits"]

NanPolicy = Literal["raise", "hls"]

_FIXED_Q = {
    FixedRounding.TRN: _r.FLOOR,
    FixedRounding.RND: _r.HALF_UP,
    FixedRounding.RND_ZERO: _r.HALF_ZERO,
    FixedRounding.RND_MIN_INF: _r.HALF_DOWN,
    FixedRounding.RND_INF: _r.HALF_AWAY,
    FixedRounding.RND_CONV: _r.HALF_EVEN,
    FixedRounding.TRN_ZERO: _r.TO_ZERO,
    FixedRounding.RND_CONV_ODD: _r.HALF_ODD,
    FixedRounding.STOCHASTIC: _r.STOCH_TC,
}
_FIXED_O = {
    FixedOverflow.SAT: _k.O_SAT,
    FixedOverflow.SAT_ZERO: _k.O_SAT_ZERO,
    FixedOverflow.SAT_SYM: _k.O_SAT_SYM,
    FixedOverflow.WRAP: _k.O_WRAP,
    FixedOverflow.WRAP_SM: _k.O_WRAP_SM,
}
_FLOAT_Q = {
    FloatRounding.RNE: _r.HALF_EVEN,
    FloatRounding.RNA: _r.HALF_AWAY,
    FloatRounding.RTZ: _r.TO_ZERO,
    FloatRounding.RUP: _r.CEIL,
    FloatRounding.RDN: _r.FLOOR,
    FloatRounding.RTO: _r.TO_ODD,
    FloatRounding.STOCHASTIC: _r.STOCH_SM,
}
_SPECIAL = {Special.IEEE: _k.S_IEEE, Special.FN: _k.S_FN, Special.FNUZ: _k.S_FNUZ,
            Special.NONE: _k.S_NONE}
_DEFAULT_SR_BITS = 62


def as_format(fmt: Fixed | Float | str) -> Fixed | Float:
    """A format object from a format or its text (see :func:`fxemu.parse`)."""
    if isinstance(fmt, Fixed | Float):
        return fmt
    if isinstance(fmt, str):
        return parse(fmt)
    raise TypeError(msg("fmt", "must be a Fixed, a Float or a format string", type(fmt).__name__))


@functools.lru_cache(maxsize=256)
def _float_params(fmt: Float) -> tuple:
    e, m = fmt.exp_bits, fmt.man_bits
    top = (1 << e) - 1
    sp = fmt.special
    if sp is Special.IEEE:
        inf_code, nan_code = top << m, (top << m) | (1 << (m - 1))
    elif sp is Special.FN:
        inf_code, nan_code = 0, (1 << (e + m)) - 1
    else:
        inf_code, nan_code = 0, 0
    mant, e = math.frexp(fmt.max)  # max = mant·2^e, 0.5 <= mant < 1 (a subnormal double too)
    lead = e - 1
    frac = int(mant * 2.0 ** (m + 1)) - (1 << m)  # the m fraction bits below the leading 1
    max_code = ((lead + fmt.bias) << m) | frac
    return (m, fmt.emin, np.uint64(max_code), np.uint64(nan_code), np.uint64(inf_code),
            _SPECIAL[sp], fmt.subnormals, fmt.overflow is FloatOverflow.SAT)


@functools.lru_cache(maxsize=256)
def _fixed_fast_args(fmt: Fixed) -> tuple | None:
    """Arguments of the vectorised fixed kernels, or None where only the exact path applies."""
    o = _FIXED_O[fmt.overflow]
    if not _k.fixed_fast_ok(_FIXED_Q[fmt.rounding], o, fmt.sat_bits):
        return None
    if not -1022 <= fmt.frac_bits <= 1023:
        return None
    if (fmt.lib == "ac" and fmt.signed and o == _k.O_SAT_ZERO and fmt.width % 32 == 0):
        return None  # ac's overflow test near min (see fixed_round) lives in the exact path
    w = fmt.width
    hi = float(fmt.max_int)
    lo = -hi if (o == _k.O_SAT_SYM and fmt.signed and w > 1) else float(fmt.min_int)
    off = float(1 << (w - 1)) if fmt.signed else 0.0
    # below `tiny` the vendor's reading of the double differs from its value (see
    # _kernels.convert.fixed_element): those elements take the exact path
    if fmt.lib == "ac":
        tiny = 2.0 ** max(_ac_shift(fmt) - 1022, -1074)
    else:
        tiny = 2.0**-1022
    return (2.0 ** fmt.frac_bits, lo, hi, off, float(1 << w), tiny)


def _ac_shift(fmt: Fixed) -> int:
    """ac_fixed's pre-scaling exponent I + !S + ((32 - W - !S) & 31) (0 for ap formats)."""
    if fmt.lib != "ac":
        return 0
    ns = 0 if fmt.signed else 1
    return fmt.int_bits + ns + ((32 - fmt.width - ns) & 31)


@functools.lru_cache(maxsize=256)
def _float_fast_bounds(fmt: Float) -> tuple[np.uint64, np.uint64]:
    """Double bit patterns bounding the fast path: the larger of the format's and float64's
    smallest normal (bit tricks need a normal double), and the format's largest value."""
    lo = max(fmt.smallest_normal, 2.0**-1022)
    return (np.float64(lo).view(np.uint64), np.float64(fmt.max).view(np.uint64))


def _coerce_input(x: object) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind == "f":
        if a.dtype.itemsize > 8:
            raise TypeError(msg("x", "float dtype wider than float64 is not supported", a.dtype))
        return np.asarray(a, dtype=np.float64, order="C")
    if a.dtype.kind in "iub":
        f = a.astype(np.float64)
        if a.dtype.kind != "b" and a.dtype.itemsize > 4:
            back = f.astype(a.dtype)
            if not np.array_equal(back, a) or np.any(np.abs(f) >= 2.0**63):
                raise ValueError(msg("x", "integers must be exactly representable as float64",
                                     "an integer beyond 2^53"))
        return np.asarray(f, order="C")
    raise TypeError(msg("x", "must be a real numeric array (float or int)", a.dtype))


def _prepare_out(out: np.ndarray | None, shape: tuple, dtype: type) -> np.ndarray:
    if out is None:
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(msg("out", "must be a numpy array", type(out).__name__))
    if out.dtype != dtype:
        raise TypeError(msg("out", f"must have dtype {np.dtype(dtype).name}", out.dtype))
    if out.shape != shape:
        raise ValueError(msg("out", f"must have shape {shape}", out.shape))
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(msg("out", "must be C-contiguous and writeable"))
    return out


def _sr(fmt: Fixed | Float, seed: int | None, sr_bits: int | None) -> tuple[int, np.uint64]:
    if sr_bits is None:
        bits = _DEFAULT_SR_BITS
    elif isinstance(sr_bits, bool) or not isinstance(sr_bits, int | np.integer):
        raise TypeError(msg("sr_bits", "must be an int", sr_bits))
    elif not 1 <= sr_bits <= 62:
        raise ValueError(msg("sr_bits", "must be in 1..62", sr_bits))
    else:
        bits = int(sr_bits)
    stochastic = fmt.rounding in (FixedRounding.STOCHASTIC, FloatRounding.STOCHASTIC)
    if not stochastic:
        return bits, np.uint64(0)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer)):
        raise TypeError(msg("seed", "must be an int or None", seed))
    if seed is not None and seed < 0:
        raise ValueError(msg("seed", "must be >= 0", seed))
    key = np.random.SeedSequence(None if seed is None else int(seed)).generate_state(1, np.uint64)
    return bits, np.uint64(key[0])


def _check_nan(a: np.ndarray, fmt: Fixed | Float, nan: str) -> None:
    """Raise if ``a`` holds NaN and ``fmt`` cannot (called before any exact-path kernel; the
    fast kernels count NaN among the elements they hand to the exact path)."""
    has_nan = isinstance(fmt, Float) and fmt.special is not Special.NONE
    if has_nan or (nan == "hls" and isinstance(fmt, Fixed)):
        return
    if np.isnan(a).any():
        hint = "pass nan='hls' for the vendor's behaviour" if isinstance(fmt, Fixed) else None
        raise ValueError(msg("x", f"contains NaN but {fmt} has no NaN", "nan", hint))


def _convert(x: object, fmt: Fixed | Float | str, seed: int | None, sr_bits: int | None,
             nan: str, out: np.ndarray | None, codes: bool) -> np.ndarray:
    fmt = as_format(fmt)
    a = _coerce_input(x)
    if nan not in ("raise", "hls"):
        raise ValueError(msg("nan", "must be 'raise' or 'hls'", nan))
    bits, key = _sr(fmt, seed, sr_bits)
    res = _prepare_out(out, a.shape, np.uint64 if codes else np.float64)
    xb = a.reshape(-1).view(np.uint64)
    flat = res.reshape(-1)
    if isinstance(fmt, Fixed):
        args = (fmt.width, fmt.frac_bits, fmt.signed, _FIXED_Q[fmt.rounding],
                _FIXED_O[fmt.overflow], fmt.sat_bits, fmt.lib == "ac", _ac_shift(fmt), bits,
                key)
        fast = _fixed_fast_args(fmt)
        if fast is not None:
            si, lo, hi, off, span, tiny = fast
            q, o = args[3], args[4]
            kvalues, kcodes = _k.fixed_fast_kernels(q, o)
            if codes:
                nbad = kcodes(a.reshape(-1), flat, si, lo, hi, np.uint64((1 << fmt.width) - 1),
                              tiny)
            else:
                nbad = kvalues(a.reshape(-1), flat, si, fmt.step, lo, hi, off, span, tiny)
            if nbad:
                _check_nan(a, fmt, nan)
                dummy = np.empty(0, np.float64 if codes else np.uint64)
                _k.fixed_fixup(a.reshape(-1), xb, dummy if codes else flat,
                               flat if codes else dummy, codes, si, tiny, *args, fmt.step)
        else:
            _check_nan(a, fmt, nan)
            if codes:
                _k.fixed_codes(xb, flat, *args)
            else:
                _k.fixed_values(xb, flat, *args, fmt.step)
    else:
        p = _float_params(fmt)
        q = _FLOAT_Q[fmt.rounding]
        sign_bit = np.uint64(1 << (fmt.width - 1))
        if q == _r.STOCH_SM or fmt.man_bits == 0:
            # M = 0: the significand is the hidden bit alone, so "even"/"odd" cannot be read
            # from the double's low kept bit; the exact path handles it
            _check_nan(a, fmt, nan)
            if codes:
                _k.float_codes(xb, flat, *p, q, bits, key, sign_bit)
            else:
                _k.float_values(xb, flat, *p, q, bits, key)
            return res
        k, minnorm, maxbits = 52 - fmt.man_bits, *_float_fast_bounds(fmt)
        fnuz = fmt.special is Special.FNUZ
        if codes:
            nbad = _k.float_fast_codes(xb, flat, k, q, minnorm, maxbits, fnuz, fmt.man_bits,
                                       fmt.bias, sign_bit)
        else:
            nbad = _k.float_fast_values(xb, flat.view(np.uint64), k, q, minnorm, maxbits, fnuz)
        if nbad:
            _check_nan(a, fmt, nan)
            dummy = np.empty(0, np.float64 if codes else np.uint64)
            _k.float_fixup(xb, dummy if codes else flat, flat if codes else dummy, codes, k,
                           minnorm, maxbits, *p, q, bits, key, sign_bit)
    return res


def quantize(x: object, fmt: Fixed | Float | str, *, seed: int | None = None,
             sr_bits: int | None = None, nan: NanPolicy = "raise",
             out: np.ndarray | None = None) -> np.ndarray:
    """Round ``x`` into ``fmt`` and return the value the register holds, as float64.

    Parameters
    ----------
    x : array_like of float or int
        Any shape; float32 inputs are widened exactly; non-contiguous views are fine.
    fmt : Fixed, Float or str
        Target format. Fixed: exactly ``ap_fixed<…> v = x;`` (ac_fixed rules for
        ``lib="ac"``), ±inf as ±2^1024 (saturate by sign, 0 under wrap). Float: one correct
        rounding with the format's rounding, overflow and special-value policy.
    seed : int, optional
        Key of the counter-based generator for stochastic rounding: element ``i`` (C order)
        draws from ``mix(seed, i)``, so results do not depend on threads or chunking.
        ``None`` draws fresh entropy.
    sr_bits : int, optional
        Random bits added below the kept LSB by stochastic rounding (1..62, default 62).
    nan : {"raise", "hls"}
        NaN into a format without NaN raises ``ValueError``; ``"hls"`` reproduces ap_fixed.
    out : ndarray of float64, optional
        C-contiguous array of ``x``'s shape to write into.

    Returns
    -------
    ndarray of float64
        Exact register values (for fixed widths above 53 bits, the nearest double; use
        :func:`to_bits` for the exact code).

    >>> import fxemu as fx
    >>> fx.quantize([0.3, -1.5, 200.0], "ap_fixed<8,4,AP_RND_CONV,AP_SAT>").tolist()
    [0.3125, -1.5, 7.9375]
    """
    return _convert(x, fmt, seed, sr_bits, nan, out, codes=False)


def to_bits(x: object, fmt: Fixed | Float | str, *, seed: int | None = None,
            sr_bits: int | None = None, nan: NanPolicy = "raise",
            out: np.ndarray | None = None) -> np.ndarray:
    """Round ``x`` into ``fmt`` (as :func:`quantize`) and return the raw W-bit codes as uint64.

    Fixed: the low W bits of the two's complement integer (unsigned: the integer). Float:
    ``sign | exponent | mantissa``; NaN is ``sign|1…1|10…0`` (ieee), ``sign|1…1|1…1`` (fn) or
    ``10…0`` (fnuz, also the only code that is not -0).

    >>> import fxemu as fx
    >>> [hex(b) for b in fx.to_bits([1.0, -1.0, 65504.0, 1e6], "float16")]
    ['0x3c00', '0xbc00', '0x7bff', '0x7c00']
    >>> [hex(b) for b in fx.to_bits([-0.5, 0.25], "ap_fixed<8,4>")]
    ['0xf8', '0x4']
    """
    return _convert(x, fmt, seed, sr_bits, nan, out, codes=True)


def from_bits(bits: object, fmt: Fixed | Float | str, *,
              out: np.ndarray | None = None) -> np.ndarray:
    """Decode raw W-bit codes (any integer dtype; values must be below 2^W) into float64.

    >>> import fxemu as fx
    >>> fx.from_bits([0x7F, 0xFF], "float8_e4m3fn").tolist()
    [nan, nan]
    >>> fx.from_bits([0x80], "ap_fixed<8,4>").tolist()
    [-8.0]
    """
    fmt = as_format(fmt)
    b = np.asarray(bits)
    if b.dtype.kind not in "iu":
        raise TypeError(msg("bits", "must be an integer array", b.dtype))
    if b.dtype.kind == "i" and b.size and b.min() < 0:
        raise ValueError(msg("bits", "must be non-negative codes", int(b.min())))
    b = np.ascontiguousarray(b, dtype=np.uint64)
    w = fmt.width
    if w < 64 and b.size and int(b.max()) >> w:
        raise ValueError(msg("bits", f"codes of {fmt} must be below 2^{w}", hex(int(b.max()))))
    res = _prepare_out(out, b.shape, np.float64)
    flat, codes = res.reshape(-1), b.reshape(-1)
    if isinstance(fmt, Fixed):
        _k.fixed_decode(codes, flat, w, fmt.signed, fmt.step)
    else:
        p = _float_params(fmt)
        _k.float_decode(codes, flat, p[0], p[1], p[3], p[4], p[5], np.uint64(1 << (w - 1)))
    return res
