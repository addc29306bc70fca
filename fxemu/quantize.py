"""Conversion API: validate and coerce, then dispatch to one kernel in :mod:`fxemu._kernels`.

``quantize`` gives the value a hardware register of the format holds after ``reg = x;``;
``to_bits`` gives that register's raw code; ``from_bits`` decodes codes. Rounding happens once,
from the exact double (no double rounding through float32).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from . import lowering
from ._errors import msg
from ._kernels import convert as _kc
from .formats import Fixed, Float, parse

__all__ = ["as_format", "check_nan_policy", "from_bits", "quantize", "reject_masked",
           "to_bits"]

NanPolicy = Literal["raise", "hls"]


def as_format(fmt: Fixed | Float | str) -> Fixed | Float:
    """A format object from a format or its text (see :func:`fxemu.parse`)."""
    if isinstance(fmt, Fixed | Float):
        return fmt
    if isinstance(fmt, str):
        return parse(fmt)
    raise TypeError(msg("fmt", "must be a Fixed, a Float or a format string", type(fmt).__name__))


def reject_masked(x: object, what: str) -> None:
    """Raise ``TypeError`` for a numpy masked array (its mask would be silently lost)."""
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(msg(what, "masked arrays are not supported (the mask would be lost)",
                            "MaskedArray", "pass x.filled(value) or x.data"))


def check_nan_policy(nan: object) -> None:
    """Raise ``ValueError`` unless ``nan`` is ``"raise"`` or ``"hls"``."""
    if nan not in ("raise", "hls"):
        raise ValueError(msg("nan", "must be 'raise' or 'hls'", nan))


def _coerce_input(x: object) -> np.ndarray:
    if isinstance(x, np.ma.MaskedArray):
        reject_masked(x, "x")
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


_NO_BITS = np.empty(0, np.uint64)


def _random_bits(random_bits: object, shape: tuple, fmt: Fixed | Float, seed: int | None,
                 sr_bits: int) -> np.ndarray:
    """The caller's random bits as a flat uint64 array (validated), or an empty one."""
    if random_bits is None:
        return _NO_BITS
    if not lowering.is_stochastic(fmt):
        raise ValueError(msg("random_bits", "needs a stochastic rounding mode", str(fmt)))
    if seed is not None:
        raise ValueError(msg("random_bits", "give random_bits or seed, not both", seed))
    reject_masked(random_bits, "random_bits")
    r = np.asarray(random_bits)
    if r.dtype.kind not in "iu":
        raise TypeError(msg("random_bits", "must be an integer array", r.dtype))
    if r.shape != shape:
        raise ValueError(msg("random_bits", f"must have the shape of x, {shape}", r.shape))
    if r.dtype.kind == "i" and r.size and r.min() < 0:
        raise ValueError(msg("random_bits", "must be non-negative", int(r.min())))
    r = np.ascontiguousarray(r, dtype=np.uint64).reshape(-1)
    if r.size and int(r.max()) >> sr_bits:
        raise ValueError(msg("random_bits", f"must be below 2^sr_bits = 2^{sr_bits}",
                             hex(int(r.max())), "pass sr_bits= for wider draws"))
    return r


def _convert(x: object, fmt: Fixed | Float | str, seed: int | None, sr_bits: int | None,
             nan: str, out: np.ndarray | None, codes: bool,
             random_bits: object = None) -> np.ndarray:
    fmt = as_format(fmt)
    a = _coerce_input(x)
    check_nan_policy(nan)
    bits, key = lowering.sr_key(fmt, seed, sr_bits)
    rb = _random_bits(random_bits, a.shape, fmt, seed, bits)
    res = _prepare_out(out, a.shape, np.uint64 if codes else np.float64)
    kernel, p = lowering.converter(fmt, codes)
    flat = a.reshape(-1)
    if kernel(flat, flat.view(np.uint64), res.reshape(-1), p, bits, key,
              lowering.nan_raises(fmt, nan), rb):
        hint = "pass nan='hls' for the vendor's behaviour" if isinstance(fmt, Fixed) else None
        what = "NaN" if isinstance(fmt, Fixed) or fmt.signed else "NaN or negative values"
        raise ValueError(msg("x", f"contains {what} but {fmt} has no NaN", "nan", hint))
    return res


def quantize(x: object, fmt: Fixed | Float | str, *, seed: int | None = None,
             sr_bits: int | None = None, nan: NanPolicy = "raise",
             out: np.ndarray | None = None, random_bits: object = None) -> np.ndarray:
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
    random_bits : array_like of int, optional
        The caller's draws for a stochastic ``fmt`` instead of the generator (as gfloat,
        APyTypes, QPyTorch and pychop take them): one integer per element of ``x`` (same
        shape), each below 2^r with r = ``sr_bits``. With the residue below the kept LSB
        truncated to r bits, ``f``, the magnitude (float) or the two's complement value
        (fixed) rounds up when ``f + random_bits >= 2^r`` — gfloat's ``StochasticFastest``
        with ``srnumbits = r``. Not with ``seed``.

    Returns
    -------
    ndarray of float64
        Exact register values (for fixed widths above 53 bits, the nearest double; use
        :func:`to_bits` for the exact code).

    >>> import fxemu as fx
    >>> fx.quantize([0.3, -1.5, 200.0], "ap_fixed<8,4,AP_RND_CONV,AP_SAT>").tolist()
    [0.3125, -1.5, 7.9375]
    """
    return _convert(x, fmt, seed, sr_bits, nan, out, codes=False, random_bits=random_bits)


def to_bits(x: object, fmt: Fixed | Float | str, *, seed: int | None = None,
            sr_bits: int | None = None, nan: NanPolicy = "raise",
            out: np.ndarray | None = None, random_bits: object = None) -> np.ndarray:
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
    return _convert(x, fmt, seed, sr_bits, nan, out, codes=True, random_bits=random_bits)


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
    reject_masked(bits, "bits")
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
    p = lowering.lower(fmt)
    decode = _kc.fixed_decode if isinstance(fmt, Fixed) else _kc.float_decode
    decode(codes, flat, p)
    return res
