"""Conversion API: validate and coerce, then dispatch to one kernel in :mod:`fxemu._kernels`.

``quantize`` gives the value a hardware register of the format holds after ``reg = x;``;
``to_bits`` gives that register's raw code; ``from_bits`` decodes codes. Rounding happens once,
from the exact double (no double rounding through float32).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np

from . import lowering
from ._errors import msg
from ._kernels import convert as _kc
from .formats import Block, Fixed, Float, parse

__all__ = ["BlockCodes", "as_format", "block_convert", "block_scale_values", "check_nan_policy",
           "from_bits",
           "quantize", "reject_masked", "to_bits"]

NanPolicy = Literal["raise", "hls"]


def as_format(fmt: Fixed | Float | Block | str) -> Fixed | Float | Block:
    """A format object from a format or its text (see :func:`fxemu.parse`)."""
    if isinstance(fmt, Fixed | Float | Block):
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


def _coerce_input(x: object, keep_float32: bool = False) -> np.ndarray:
    """``x`` as a C-ordered float64 array (float32 kept as it is with ``keep_float32``: every
    float32 is a double, so converting later, element by element, is exact)."""
    if isinstance(x, np.ma.MaskedArray):
        reject_masked(x, "x")
    a = np.asarray(x)
    if a.dtype.kind == "f":
        if a.dtype.itemsize > 8:
            raise TypeError(msg("x", "float dtype wider than float64 is not supported", a.dtype))
        if keep_float32 and a.dtype == np.float32:
            return np.asarray(a, order="C")
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
    a = _coerce_input(x, keep_float32=isinstance(fmt, Block))
    check_nan_policy(nan)
    if isinstance(fmt, Block):
        if random_bits is not None:
            raise ValueError(msg("random_bits", "applies to Fixed and Float formats, not to "
                                 "a Block", str(fmt)))
        return _block_api(a, fmt, seed, sr_bits, out, codes)
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


def quantize(x: object, fmt: Fixed | Float | Block | str, *, seed: int | None = None,
             sr_bits: int | None = None, nan: NanPolicy = "raise",
             out: np.ndarray | None = None, random_bits: object = None) -> np.ndarray:
    """Round ``x`` into ``fmt`` and return the value the register holds, as float64.

    Parameters
    ----------
    x : array_like of float or int
        Any shape; float32 inputs are widened exactly (an MX float Block reads them as they
        are, element by element, with the same result); non-contiguous views are fine.
    fmt : Fixed, Float or str
        Target format. Fixed: exactly ``ap_fixed<…> v = x;`` (ac_fixed rules for
        ``lib="ac"``), ±inf as ±2^1024 (saturate by sign, 0 under wrap). Float: one correct
        rounding with the format's rounding, overflow and special-value policy.
        :class:`~fxemu.Block`: blocks of ``block_size`` along ``fmt.axis``, each scaled and
        its elements rounded as the Block states; the decoded values are returned (a block
        holding NaN or inf decodes to NaN, so ``nan`` does not apply).
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


def to_bits(x: object, fmt: Fixed | Float | Block | str, *, seed: int | None = None,
            sr_bits: int | None = None, nan: NanPolicy = "raise",
            out: np.ndarray | None = None,
            random_bits: object = None) -> np.ndarray | BlockCodes:
    """Round ``x`` into ``fmt`` (as :func:`quantize`) and return the raw W-bit codes as uint64.

    Fixed: the low W bits of the two's complement integer (unsigned: the integer). Float:
    ``sign | exponent | mantissa``; NaN is ``sign|1…1|10…0`` (ieee), ``sign|1…1|1…1`` (fn) or
    ``10…0`` (fnuz, also the only code that is not -0). A :class:`~fxemu.Block` gives a
    :class:`BlockCodes` (element codes, scale codes, per-tensor scale; no ``out``).

    >>> import fxemu as fx
    >>> [hex(b) for b in fx.to_bits([1.0, -1.0, 65504.0, 1e6], "float16")]
    ['0x3c00', '0xbc00', '0x7bff', '0x7c00']
    >>> [hex(b) for b in fx.to_bits([-0.5, 0.25], "ap_fixed<8,4>")]
    ['0xf8', '0x4']
    """
    return _convert(x, fmt, seed, sr_bits, nan, out, codes=True, random_bits=random_bits)


def from_bits(bits: object, fmt: Fixed | Float | Block | str | object,
              block: Block | str | None = None, *, tensor_scale: float | None = None,
              out: np.ndarray | None = None) -> np.ndarray:
    """Decode raw W-bit codes (any integer dtype; values must be below 2^W) into float64.

    Block formats: ``from_bits(codes, scales, block)`` (element codes, scale codes as
    :func:`to_bits` returns them in :class:`BlockCodes`, and the Block), or
    ``from_bits(block_codes, block)`` with the :class:`BlockCodes` itself; the value is
    ``element · scale · tensor_scale`` (NaN where the scale is NaN).

    >>> import fxemu as fx
    >>> fx.from_bits([0x7F, 0xFF], "float8_e4m3fn").tolist()
    [nan, nan]
    >>> fx.from_bits([0x80], "ap_fixed<8,4>").tolist()
    [-8.0]
    """
    if block is not None:
        return _block_decode(bits, fmt, as_format(block), tensor_scale, out)
    if isinstance(bits, BlockCodes):
        fb = as_format(fmt)
        if not isinstance(fb, Block):
            raise TypeError(msg("fmt", "BlockCodes decode with a Block format", str(fb)))
        ts = bits.tensor_scale if tensor_scale is None else tensor_scale
        return _block_decode(bits.elements, bits.scales, fb, ts, out)
    fmt = as_format(fmt)
    if isinstance(fmt, Block):
        raise TypeError(msg("from_bits", "a block format needs the scale codes too",
                            str(fmt), "call from_bits(codes, scales, block)"))
    b = _codes(bits, fmt.width, str(fmt), "bits")
    res = _prepare_out(out, b.shape, np.float64)
    flat, codes = res.reshape(-1), b.reshape(-1)
    p = lowering.lower(fmt)
    decode = _kc.fixed_decode if isinstance(fmt, Fixed) else _kc.float_decode
    decode(codes, flat, p)
    return res


def _codes(bits: object, w: int, fmt_text: str, what: str) -> np.ndarray:
    """Validated uint64 codes below 2^w."""
    reject_masked(bits, what)
    b = np.asarray(bits)
    if b.dtype.kind not in "iu":
        raise TypeError(msg(what, "must be an integer array", b.dtype))
    if b.dtype.kind == "i" and b.size and b.min() < 0:
        raise ValueError(msg(what, "must be non-negative codes", int(b.min())))
    b = np.ascontiguousarray(b, dtype=np.uint64)
    if w < 64 and b.size and int(b.max()) >> w:
        raise ValueError(msg(what, f"codes of {fmt_text} must be below 2^{w}",
                             hex(int(b.max()))))
    return b


# ---------------------------------------------------------------------------------------------
# Block formats


class BlockCodes(NamedTuple):
    """The codes of a block-format tensor: ``elements`` (uint64, the input's shape), ``scales``
    (uint64, the input's shape with the block axis of length ceil(L / block_size): scale t
    covers elements t·k … (t+1)·k - 1 along the axis) and ``tensor_scale`` (the per-tensor
    float32 scale, 1.0 without one)."""

    elements: np.ndarray
    scales: np.ndarray
    tensor_scale: float


def _block_axis(shape: tuple, block: Block, what: str = "x") -> int:
    nd = len(shape)
    if nd == 0 or not -nd <= block.axis < nd:
        raise ValueError(msg(what, f"has no axis {block.axis} to block along", shape))
    return block.axis % nd


def _tensor_scale(a: np.ndarray, block: Block) -> float:
    """float32(float32(amax) / float32(scale_max · elem_max)) over the finite elements (1.0
    for a tensor with none nonzero), as torchao's per_tensor_amax_to_scale."""
    if not block.tensor_scale:
        return 1.0
    fin = np.abs(a[np.isfinite(a)])
    amax = float(fin.max()) if fin.size else 0.0
    if amax == 0.0:
        return 1.0
    den = np.float32(block.scale.max * block.element.max)
    return float(np.float32(amax) / den)


def block_convert(a: np.ndarray, block: Block, *, seed: int | None = None,
                  sr_bits: int | None = None, unscaled: bool = False,
                  axis: int | None = None, codes: bool = True,
                  values: bool = True) -> tuple[np.ndarray | None, np.ndarray | None,
                                                np.ndarray, float]:
    """Convert the float64 (or float32) array ``a`` into ``block`` along ``axis`` (default the
    Block's): (element codes, values, scale codes, tensor scale), the first two in ``a``'s
    shape (None where ``codes``/``values`` is False), the scales with the axis shortened to
    the block count. ``unscaled``: values are the element values alone (the block Mac's
    operands), else the decoded tensor. Blocks the MX element path serves
    (``BlockParams.fast``) read float32 input as it is; the others widen it to float64
    (exactly) first."""
    ax = _block_axis(a.shape, block if axis is None else block.replace(axis=axis))
    (p, ev, sv), key = lowering.block_sr_key(block, seed, sr_bits)
    if not p.fast and a.dtype != np.float64:
        a = a.astype(np.float64)
    moved = np.moveaxis(a, ax, -1)
    width = moved.shape[-1]
    x2 = (np.ascontiguousarray(moved).reshape(-1, width) if width
          else np.zeros((moved.size, 0), a.dtype))
    nb = -(-width // block.block_size)
    ts = _tensor_scale(a, block)
    out_c = np.empty(x2.shape if codes else (1, 1), np.uint64)
    out_v = np.empty(x2.shape if values else (1, 1), np.float64)
    scales = np.empty((x2.shape[0], nb), np.uint64)
    from ._kernels import block as _kb  # Numba-compiled on first use

    if p.fast and codes:  # the codes, then (if wanted) their exact values
        _kb.mx_kernel(True, lowering.mx_qmode(p))(x2, out_c, scales, p, ev, unscaled)
        if values:  # unscaled: every finite block's scale read as 2^0 (NaN blocks stay NaN)
            sc = np.where(scales == p.scale_nan, scales, np.uint64(127)) if unscaled else scales
            _kb.block_decode(out_c, sc, out_v, p, ev, sv, 1.0)
    elif p.fast:
        _kb.mx_kernel(False, lowering.mx_qmode(p))(x2, out_v, scales, p, ev, unscaled)
    else:
        _kb.block_convert(x2.view(np.uint64), out_c, out_v, scales, p, ev, sv, ts, key,
                          unscaled, codes, values)
    head = moved.shape[:-1]

    def back(v: np.ndarray, n: int) -> np.ndarray:
        return np.ascontiguousarray(np.moveaxis(v.reshape(*head, n), -1, ax))

    return (back(out_c, width) if codes else None, back(out_v, width) if values else None,
            back(scales, nb), ts)


def block_scale_values(scales: np.ndarray, block: Block) -> np.ndarray:
    """The values of scale codes (float64; NaN for the NaN code)."""
    if block.pow2_scale:
        s = np.asarray(scales, np.int64)
        return np.where(s == 255, np.nan, np.ldexp(1.0, s - 127))
    return from_bits(scales, block.scale)


def _block_api(a: np.ndarray, block: Block, seed: int | None, sr_bits: int | None,
               out: np.ndarray | None, codes: bool) -> np.ndarray | BlockCodes:
    c, v, s, ts = block_convert(a, block, seed=seed, sr_bits=sr_bits, codes=codes,
                                values=not codes)
    if codes:
        if out is not None:
            raise TypeError(msg("out", "to_bits of a block format returns BlockCodes (no out=)"))
        return BlockCodes(c, s, ts)
    res = _prepare_out(out, a.shape, np.float64)
    res[...] = v
    return res


def _block_decode(codes: object, scales: object, block: Block, tensor_scale: float | None,
                  out: np.ndarray | None) -> np.ndarray:
    if not isinstance(block, Block):
        raise TypeError(msg("block", "must be a block format", str(block)))
    el = block.element
    c = _codes(codes, el.bits, str(el), "codes")
    ax = _block_axis(c.shape, block, "codes")
    width = c.shape[ax]
    nb = -(-width // block.block_size)
    want = (*c.shape[:ax], nb, *c.shape[ax + 1:])
    sbits = block.scale_bits
    s = _codes(scales, sbits, str(block.scale), "scales")
    if s.shape != want:
        raise ValueError(msg("scales", f"must have shape {want} (one scale per block)", s.shape))
    ts = 1.0 if tensor_scale is None else float(tensor_scale)
    if not (np.isfinite(ts) and ts > 0):
        raise ValueError(msg("tensor_scale", "must be a positive finite number", tensor_scale))
    res = _prepare_out(out, c.shape, np.float64)
    cm = np.moveaxis(c, ax, -1)
    head = cm.shape[:-1]
    c2 = np.ascontiguousarray(cm).reshape(-1, width) if width else np.zeros((cm.size, 0),
                                                                             np.uint64)
    s2 = np.ascontiguousarray(np.moveaxis(s, ax, -1)).reshape(-1, nb)
    v2 = np.empty(c2.shape, np.float64)
    from ._kernels import block as _kb

    _kb.block_decode(c2, s2, v2, *lowering.lower_block(block), ts)
    res[...] = np.moveaxis(v2.reshape(*head, width), -1, ax)
    return res
