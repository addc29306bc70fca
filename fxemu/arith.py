"""Datapath arithmetic: correctly rounded elementwise ops and multiply-accumulate units.

Every operation computes the exact result (products of doubles are 106-bit exact; sums are
exact in a 128-bit window whose lost low bits only feed the sticky bit) and rounds it once
into the target format: fixed results are exactly ``ap_fixed`` assignment of the exact value,
float results are correctly rounded with the format's rounding. An FTZ target reads operands
below its smallest normal as zeros of the same sign (DAZ) and flushes subnormal results (for a
``Mac``: the ``mul`` format's setting, or the accumulator's without one). Operands are float64
arrays holding the values of their formats.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np

from ._errors import msg
from ._kernels import fmt as _kf
from ._kernels import mac as _km
from ._kernels import mac_fast as _kmf
from ._kernels import pool as _kp
from ._kernels import rounding as _kr
from .formats import Fixed, FixedOverflow, Float, FloatRounding, Special
from .quantize import (
    _FIXED_O,
    _FIXED_Q,
    _FLOAT_Q,
    _float_fast_bounds,
    _float_params,
    _sr,
    as_format,
    quantize,
)

__all__ = ["Mac", "add", "conv2d", "conv2d_grad_input", "conv2d_grad_weight", "dot", "fma",
           "matmul", "maxpool2d", "maxpool2d_backward", "mul", "sub"]

_ORDER = re.compile(r"^(sequential|pairwise|exact|chunk:(\d+))$")


@functools.lru_cache(maxsize=256)
def _fmt_vector(fmt: Fixed | Float, sr_bits: int) -> np.ndarray:
    """The int64 format vector the kernels read (layout in ``fxemu._kernels.fmt``)."""
    p = np.zeros(12, np.int64)
    p[1] = fmt.width
    p[8] = sr_bits
    if isinstance(fmt, Fixed):
        p[0] = _kf.KIND_FIXED
        p[2] = fmt.frac_bits
        p[3] = int(fmt.signed)
        p[4] = _FIXED_Q[fmt.rounding]
        p[5] = _FIXED_O[fmt.overflow]
        p[6] = fmt.sat_bits
    else:
        m, emin, max_code, nan_code, inf_code, special, subn, ovsat = _float_params(fmt)
        p[5] = special
        p[0] = _kf.KIND_FLOAT
        p[2] = m
        p[3] = emin
        p[4] = _FLOAT_Q[fmt.rounding]
        p[6] = int(subn)
        p[7] = int(ovsat)
        p[9], p[10], p[11] = int(max_code), int(nan_code), int(inf_code)
    p.flags.writeable = False
    return p


def _scale(fmt: Fixed | Float) -> float:
    return fmt.step if isinstance(fmt, Fixed) else 0.0


@dataclass(frozen=True)
class Mac:
    """The datapath of a multiply-accumulate unit.

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
        then the chunk sums added sequentially to a zero accumulator), ``"exact"`` (exact sum
        of all products, one rounding into acc).
    """

    acc: Fixed | Float
    mul: Fixed | Float | None = None
    out: Fixed | Float | None = None
    order: str = "sequential"

    def __post_init__(self) -> None:
        object.__setattr__(self, "acc", as_format(self.acc))
        if self.mul is not None:
            object.__setattr__(self, "mul", as_format(self.mul))
        if self.out is not None:
            object.__setattr__(self, "out", as_format(self.out))
        if not isinstance(self.order, str) or not _ORDER.match(self.order.strip()):
            raise ValueError(msg("Mac order", "must be sequential, pairwise, exact or chunk:N",
                                 self.order))
        order = self.order.strip()
        if order.startswith("chunk:") and int(order[6:]) < 1:
            raise ValueError(msg("Mac order", "chunk size must be >= 1", self.order))
        object.__setattr__(self, "order", order)

    @property
    def out_format(self) -> Fixed | Float:
        """The format of the results (``out`` or ``acc``)."""
        return self.out if self.out is not None else self.acc

    def _kernel_args(self, sr_bits: int) -> tuple:
        order = self.order
        if order == "sequential":
            code, chunk = _km.ORDER_SEQUENTIAL, 0
        elif order == "pairwise":
            code, chunk = _km.ORDER_PAIRWISE, 0
        elif order == "exact":
            code, chunk = _km.ORDER_EXACT, 0
        else:
            code, chunk = _km.ORDER_CHUNK, int(order[6:])
        accp = _fmt_vector(self.acc, sr_bits)
        mulp = _fmt_vector(self.mul, sr_bits) if self.mul is not None else accp
        outp = _fmt_vector(self.out_format, sr_bits)
        return accp, mulp, outp, self.mul is not None, code, chunk


def _operand(x: object, what: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind not in "fiub":
        raise TypeError(msg(what, "must be a real numeric array", a.dtype))
    if a.dtype.kind == "f" and a.dtype.itemsize > 8:
        raise TypeError(msg(what, "float dtype wider than float64 is not supported", a.dtype))
    return np.asarray(a, dtype=np.float64, order="C")


def _stochastic(*fmts: Fixed | Float | None) -> bool:
    return any(f is not None and f.rounding.value == "stochastic" for f in fmts)


_SPLIT = 134217729.0  # 2^27 + 1, Veltkamp's splitter for float64


def _zero_sum_sign(s: np.ndarray, x: np.ndarray, y: np.ndarray, floor: bool) -> np.ndarray:
    """``s = x + y`` (double) with the IEEE 754 §6.3 sign of its exact zeros: numpy's
    round-to-nearest sum is -0 only for (-0) + (-0); rounded toward -inf (``floor``) every
    exact zero sum is -0 except (+0) + (+0). A double sum never underflows to 0, so its zeros
    are exact."""
    if not floor:
        return s
    neg0 = (s == 0) & (np.signbit(x) | np.signbit(y))
    return np.where(neg0, -0.0, s) if neg0.any() else s


def _exact_double(op: int, a: np.ndarray, b: np.ndarray, c: np.ndarray,
                  floor: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The op's result in double and a mask of the elements where it is exact (error-free
    transformations: TwoSum for sums, Veltkamp/Dekker TwoProduct for products, guarded
    against overflow and underflow). Elsewhere the caller uses the exact engine. ``floor``:
    exact zero sums take the sign of a rounding toward -inf (see :func:`_zero_sum_sign`)."""
    with np.errstate(all="ignore"):
        if op in (_km.OP_ADD, _km.OP_SUB):
            y = b if op == _km.OP_ADD else -b
            s = a + y
            bb = s - a
            err = (a - (s - bb)) + (y - bb)
            return _zero_sum_sign(s, a, y, floor), (err == 0) & np.isfinite(s)
        p = a * b
        ah = a * _SPLIT
        ah = ah - (ah - a)
        al = a - ah
        bh = b * _SPLIT
        bh = bh - (bh - b)
        bl = b - bh
        err = ((ah * bh - p) + ah * bl + al * bh) + al * bl
        ok = (err == 0) & np.isfinite(p) & (np.abs(a) < 2.0**995) & (np.abs(b) < 2.0**995)
        ok &= (np.abs(p) >= 2.0**-969) | (a == 0) | (b == 0)
        if op == _km.OP_MUL:
            return p, ok
        s = p + c
        bb = s - p
        err2 = (p - (s - bb)) + (c - bb)
        return _zero_sum_sign(s, p, c, floor), ok & (err2 == 0) & np.isfinite(s)


def _daz(x: np.ndarray, fmt: Fixed | Float | None) -> np.ndarray:
    """Inputs of an FTZ float datapath: values below its smallest normal read as zero of the
    same sign (DAZ); unchanged otherwise."""
    if not isinstance(fmt, Float) or fmt.subnormals:
        return x
    tiny = (x != 0) & (np.abs(x) < fmt.smallest_normal)
    return np.where(tiny, np.copysign(0.0, x), x) if tiny.any() else x


def _elementwise(op: int, fmt: object, seed: int | None, sr_bits: int | None,
                 *xs: object) -> np.ndarray:
    f = as_format(fmt)
    arrs = [_operand(x, f"operand {i}") for i, x in enumerate(xs)]
    try:
        arrs = np.broadcast_arrays(*arrs)
    except ValueError:
        shapes = " and ".join(str(np.shape(a)) for a in arrs)
        raise ValueError(msg("operands", "must broadcast together", shapes)) from None
    shape = arrs[0].shape
    flat = [_daz(np.ascontiguousarray(a).reshape(-1), f) for a in arrs]
    while len(flat) < 3:
        flat.append(np.zeros_like(flat[0]))
    bits, key = _sr(f, seed, sr_bits)
    # exact in double → one conversion (fast kernels); the rest → the exact engine. Both
    # draw stochastic bits from (key, element index), so the split does not change results.
    floor = isinstance(f, Float) and f.rounding is FloatRounding.RDN
    r, exact = _exact_double(op, *flat, floor=floor)
    out = quantize(r, f, seed=seed, sr_bits=sr_bits, nan="hls")
    rest = np.flatnonzero(~exact)
    if rest.size:
        sub = np.empty(rest.size, np.float64)
        _km.elementwise_kernel(op, *(v[rest].view(np.uint64) for v in flat), sub,
                               _fmt_vector(f, bits), key, _scale(f), rest)
        out[rest] = sub
    return out.reshape(shape)


def add(a: object, b: object, fmt: Fixed | Float | str, *, seed: int | None = None,
        sr_bits: int | None = None) -> np.ndarray:
    """``a + b`` exactly, rounded once into ``fmt`` (broadcasting).

    >>> import fxemu as fx
    >>> fx.add(1.0, 2.0**-11, "float16").tolist()   # tie: to even
    1.0
    """
    return _elementwise(_km.OP_ADD, fmt, seed, sr_bits, a, b)


def sub(a: object, b: object, fmt: Fixed | Float | str, *, seed: int | None = None,
        sr_bits: int | None = None) -> np.ndarray:
    """``a - b`` exactly, rounded once into ``fmt`` (broadcasting)."""
    return _elementwise(_km.OP_SUB, fmt, seed, sr_bits, a, b)


def mul(a: object, b: object, fmt: Fixed | Float | str, *, seed: int | None = None,
        sr_bits: int | None = None) -> np.ndarray:
    """``a · b`` exactly (106-bit product), rounded once into ``fmt`` (broadcasting).

    >>> import fxemu as fx
    >>> fx.mul(1.5, -2.75, "ap_fixed<8,4,AP_RND,AP_SAT>").tolist()
    -4.125
    """
    return _elementwise(_km.OP_MUL, fmt, seed, sr_bits, a, b)


def fma(a: object, b: object, c: object, fmt: Fixed | Float | str, *, seed: int | None = None,
        sr_bits: int | None = None) -> np.ndarray:
    """``a · b + c`` exactly, rounded once into ``fmt`` (broadcasting)."""
    return _elementwise(_km.OP_FMA, fmt, seed, sr_bits, a, b, c)


def _span(x: np.ndarray) -> tuple[int, int, int, int]:
    """One pass over x: :func:`fxemu._kernels.mac_fast.span` (lowest set-bit exponent,
    highest leading-bit exponent, most significant bits of one element, inf/NaN count)."""
    return _kmf.span(x.reshape(-1).view(np.uint64))


def _int_span(x: np.ndarray, raw: tuple | None = None) -> tuple[int, int, int]:
    """(F, bits, nonfinite): the smallest F making every x·2^F an integer, the largest bit
    length of those integers' magnitudes (0, 0 for an all-zero array), and the inf/NaN count
    (from x's :func:`_span` ``raw`` where given)."""
    low, high, _, bad = _span(x) if raw is None else raw
    if low > high:
        return 0, 0, int(bad)
    return int(-low), int(high - low + 1), int(bad)


def _fast_fixed_mode(f: Fixed) -> bool:
    q = _FIXED_Q[f.rounding]
    return (q < _kr.STOCH_TC and q != _kr.TO_ODD
            and (f.overflow in (FixedOverflow.SAT, FixedOverflow.SAT_ZERO, FixedOverflow.SAT_SYM)
                 or (f.overflow is FixedOverflow.WRAP and f.sat_bits == 0)))


def _int_limits(f: Fixed) -> tuple:
    hi = f.max_int
    lo = -hi if (f.overflow is FixedOverflow.SAT_SYM and f.signed) else f.min_int
    off = (1 << (f.width - 1)) if f.signed else 0
    return (np.int64(lo), np.int64(hi), np.int64(off), np.int64((1 << f.width) - 1))


def _int_path(mac: Mac, fa: int, ba: int, fb: int, bb: int) -> tuple | None:
    """Integer datapath parameters of ``mac`` for products of integers at scales fa and fb
    (magnitudes below 2^ba and 2^bb): ``(pm, accpar, modes)`` with pm = (d_mul, lo, hi, off,
    wmask) rounding a product into the mul format, accpar = (sh_acc, sh_p, d, lo, hi, off,
    wmask) accumulating it (see :func:`fxemu._kernels.mac_fast.int_step`) and modes = (mul
    quantization, mul overflow, acc quantization, acc overflow) codes; None unless every
    intermediate fits in 62 bits and every mode has an integer kernel."""
    acc, mulf = mac.acc, mac.mul
    if not isinstance(acc, Fixed) or acc.width > 53 or not _fast_fixed_mode(acc):
        return None
    if mulf is not None and (not isinstance(mulf, Fixed) or not _fast_fixed_mode(mulf)):
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
        pm = (np.int64(d_mul), *_int_limits(mulf))
        mq, mo = _FIXED_Q[mulf.rounding], _FIXED_O[mulf.overflow]
        fp, bp = mulf.frac_bits, mulf.width
    fc = max(acc.frac_bits, fp)
    sh_acc, sh_p = fc - acc.frac_bits, fc - fp
    if acc.width + sh_acc > 62 or bp + sh_p > 62:
        return None
    accpar = (np.int64(sh_acc), np.int64(sh_p), np.int64(sh_acc), *_int_limits(acc))
    return pm, accpar, (mq, mo, _FIXED_Q[acc.rounding], _FIXED_O[acc.overflow])


def _fixed_fast(a: np.ndarray, b: np.ndarray, mac: Mac, order: int, chunk: int,
                spans: tuple) -> np.ndarray | None:
    """Integer datapath of a (M, K) @ b (K, N) when every intermediate fits in 62 bits; None
    otherwise. ``spans``: the operands' :func:`_span`."""
    if not isinstance(mac.acc, Fixed):
        return None
    fa, ba, bad_a = _int_span(a, spans[0])
    fb, bb, bad_b = _int_span(b, spans[1])
    path = None if bad_a or bad_b else _int_path(mac, fa, ba, fb, bb)
    if path is None:
        return None
    pm, accpar, modes = path
    sh_acc, sh_p = int(accpar[0]), int(accpar[1])
    if mac.mul is None and sh_acc == 0:
        res = _fixed_blas(a, b, fa, fb, sh_p, mac.acc)
        if res is not None:
            return res
    if order not in (_km.ORDER_SEQUENTIAL, _km.ORDER_CHUNK):
        return None  # pairwise/exact orders have no integer kernel: only the BLAS tier
    kernel = _kmf.matmul_fast(_kmf.fixed_ops(mac.mul is not None, *modes), order)
    out = np.empty((a.shape[0], b.shape[1]), np.int64)
    chunk_par = (accpar[0], accpar[0], *accpar[2:])  # a chunk's sum is at the acc scale
    kernel(_to_int(a, fa), _to_int(b, fb), out, max(chunk, 1), pm, accpar, chunk_par,
           _kmf.NO_VECS)
    return out.astype(np.float64) * 2.0**-mac.acc.frac_bits


def _to_int(x: np.ndarray, f: int) -> np.ndarray:
    """The integers x·2^f (exact: the caller checked every element is one)."""
    out = np.empty(x.shape, np.int64)
    _kmf.scaled_int(x, 2.0**f, out)
    return out


def _fixed_blas(a: np.ndarray, b: np.ndarray, fa: int, fb: int, sh_p: int,
                acc: Fixed) -> np.ndarray | None:
    """Exact products that land on the accumulator's grid (no rounding in any addition).

    Then every order gives the exact integer sum when no partial sum can overflow, and
    wrapping is modular, so order-free too. With the cheap bound
    ``sum_k |a_ik| · max_k |b_kj|`` below 2^52 a float64 BLAS product of the integer operands
    is exact; when the bound also stays inside the saturation limits, that product is the
    result. Otherwise None: the integer kernel runs the datapath step by step (mixing BLAS and
    kernel threads in one call would only make them wait for each other).
    """
    ai = a * 2.0 ** (fa + sh_p)  # exact power-of-two scalings to integers
    bi = b * 2.0**fb
    bound = np.outer(np.abs(ai).sum(axis=1), np.abs(bi).max(axis=0, initial=0.0))
    if not bound.size:
        return np.zeros(bound.shape)
    if bound.max() >= 2.0**52:
        return None
    if acc.overflow is FixedOverflow.WRAP:
        w = acc.width
        t = (ai @ bi).astype(np.int64) & ((1 << w) - 1)  # exact: partial sums below 2^53
        if acc.signed:
            t = np.where(t >= 1 << (w - 1), t - (1 << w), t)
        return t.astype(np.float64) * 2.0**-acc.frac_bits
    lo, hi = float(acc.min_int), float(acc.max_int)
    if acc.overflow is FixedOverflow.SAT_SYM and acc.signed:
        lo = -hi
    if bound.max() > min(hi, -lo):  # a partial sum might leave [lo, hi]
        return None
    return (ai @ bi) * 2.0**-acc.frac_bits  # exact: integer operands, partial sums < 2^53


def _float_sig_bits(x: np.ndarray, raw: tuple | None = None) -> tuple[int, int, int, int]:
    """(most significant bits of one element, lowest and highest leading-bit exponents of
    nonzero elements, inf/NaN count) of x (from its :func:`_span` ``raw`` where given)."""
    low, high, sig, bad = _span(x) if raw is None else raw
    return int(sig), int(low), int(high), int(bad)  # low bounds every leading exponent


def _fast_float_fmt(f: object, max_man: int) -> bool:
    return (isinstance(f, Float) and f.man_bits <= max_man
            and f.rounding is not FloatRounding.STOCHASTIC and f.special is not Special.FNUZ)


_F32 = Float(8, 23)  # IEEE binary32, RNE: its steps round by the hardware conversion


def _float_path(mac: Mac, a_span: tuple, b_span: tuple, sr_bits: int) -> tuple | None:
    """Double-arithmetic datapath parameters of ``mac`` for operands with the spans a_span,
    b_span (:func:`_float_sig_bits`): ``(mp, ap, mulp, accp, modes)`` with mp = (52 - mul
    mantissa bits, mul fast bounds) and ap = (52 - acc mantissa bits, acc fast bounds) for
    :func:`fxemu._kernels.convert.float_fast_element` and
    :func:`~fxemu._kernels.mac_fast.float_step`, the mul and acc format vectors for the exact
    engine, and modes = (mul rounding, acc rounding codes, whether acc is IEEE float32 with
    RNE, which the hardware conversion rounds); None unless every product is exact in double
    and the formats have a fast kernel (the mul entries repeat the acc's without a mul
    format)."""
    acc, mulf = mac.acc, mac.mul
    if not _fast_float_fmt(acc, 50) or (mulf is not None and not _fast_float_fmt(mulf, 52)):
        return None
    pa, alo, ahi, bad_a = a_span
    pb, blo, bhi, bad_b = b_span
    # products exact in double: at most 53 significant bits, no underflow or overflow
    if bad_a or bad_b or pa + pb > 53 or alo + blo < -960 or ahi + bhi > 1000:
        return None
    accp = _fmt_vector(acc, sr_bits)
    ap = (np.int64(52 - acc.man_bits), *_float_fast_bounds(acc))
    hw32 = acc == _F32
    if mulf is None:
        return (np.int64(0), *ap[1:]), ap, accp, accp, (0, _FLOAT_Q[acc.rounding], hw32)
    mp = (np.int64(52 - mulf.man_bits), *_float_fast_bounds(mulf))
    return mp, ap, _fmt_vector(mulf, sr_bits), accp, (_FLOAT_Q[mulf.rounding],
                                                      _FLOAT_Q[acc.rounding], hw32)


def _float_fast(a: np.ndarray, b: np.ndarray, mac: Mac, order: int, chunk: int,
                sr_bits: int, key: np.uint64, spans: tuple) -> np.ndarray | None:
    """Double-arithmetic datapath of a (M, K) @ b (K, N) when products are exact in double;
    None otherwise. ``spans``: the operands' :func:`_span`."""
    if order not in (_km.ORDER_SEQUENTIAL, _km.ORDER_CHUNK) or not isinstance(mac.acc, Float):
        return None
    path = _float_path(mac, _float_sig_bits(a, spans[0]), _float_sig_bits(b, spans[1]), sr_bits)
    if path is None:
        return None
    mp, ap, mulp, accp, modes = path
    out = np.empty((a.shape[0], b.shape[1]), np.float64)
    kernel = _kmf.matmul_fast(_kmf.float_ops(mac.mul is not None, *modes), order)
    kernel(a, b, out, max(chunk, 1), mp, ap, ap, (mulp, accp, key))
    if modes[2] and not np.isfinite(out).all():  # float32 rounded by the hardware
        return None  # inf/NaN: the engine's codes, not the hardware's NaN payloads
    return out


def _mac_matmul(a: np.ndarray, b: np.ndarray, mac: Mac, seed: int | None,
                sr_bits: int | None) -> np.ndarray:
    """``R_out(reduce_k a[i,k]·b[k,j])`` for 2-D float64 operands a (M, K), b (K, N)."""
    if not isinstance(mac, Mac):
        raise TypeError(msg("mac", "must be an fx.Mac", type(mac).__name__))
    # one key serves every stochastic rounding of the datapath (each has its own counter)
    keyed = next((f for f in (mac.acc, mac.mul, mac.out) if _stochastic(f)), mac.acc)
    bits, key = _sr(keyed, seed, sr_bits)
    accp, mulp, outp, use_mul, order, chunk = mac._kernel_args(bits)
    # an FTZ multiplier (or, without one, an FTZ accumulator) reads subnormal operands as zero
    first = mac.mul if mac.mul is not None else mac.acc
    a = np.ascontiguousarray(_daz(a, first))
    b = np.ascontiguousarray(_daz(b, first))
    if mac.out is None or not _stochastic(mac.out):
        spans = (_span(a), _span(b))
        fast = _fixed_fast(a, b, mac, order, chunk, spans)
        if fast is None:
            fast = _float_fast(a, b, mac, order, chunk, bits, key, spans)
        if fast is not None:
            return fast if mac.out is None else quantize(fast, mac.out)
    out = np.empty((a.shape[0], b.shape[1]), np.float64)
    bt = np.ascontiguousarray(b.T)  # the exact engine reads each output's operands as rows
    _km.matmul_kernel(a.view(np.uint64), bt.view(np.uint64), out, accp, mulp, outp, use_mul,
                      order, chunk, key, _scale(mac.out_format))
    return out


def dot(a: object, b: object, mac: Mac, *, seed: int | None = None,
        sr_bits: int | None = None) -> np.ndarray:
    """``sum_k a[k]·b[k]`` through the ``mac`` datapath (1-D operands of equal length).

    >>> import fxemu as fx
    >>> fx.dot([1.0, 2.0**-11, 2.0**-11], [1.0, 1.0, 1.0], fx.Mac(acc="float16")).tolist()
    1.0
    >>> fx.dot([1.0, 2.0**-11, 2.0**-11], [1.0, 1.0, 1.0], fx.Mac(acc="float16",
    ...        order="exact")).tolist()
    1.0009765625
    """
    x, y = _operand(a, "a"), _operand(b, "b")
    if x.ndim != 1 or y.ndim != 1 or x.shape != y.shape:
        raise ValueError(msg("dot", "needs two 1-D arrays of equal length",
                             f"{x.shape} and {y.shape}"))
    return _mac_matmul(x[None, :], y[:, None], mac, seed, sr_bits)[0, 0]


def matmul(a: object, b: object, mac: Mac, *, seed: int | None = None,
           sr_bits: int | None = None) -> np.ndarray:
    """``(M, K) @ (K, N)`` with every output reduced over k = 0…K-1 by ``mac``."""
    x, y = _operand(a, "A"), _operand(b, "B")
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[0]:
        raise ValueError(msg("matmul", "needs (M, K) and (K, N) arrays",
                             f"{x.shape} and {y.shape}"))
    return _mac_matmul(x, y, mac, seed, sr_bits)


def im2col(x: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """Patches of NCHW ``x`` for a valid stride-1 kh×kw window: shape (N·Ho·Wo, C·kh·kw), the
    column index k = (c·kh + i)·kw + j."""
    n, c, h, w = x.shape
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
    # (N, C, Ho, Wo, kh, kw) -> (N, Ho, Wo, C, kh, kw)
    return np.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5)).reshape(
        n * (h - kh + 1) * (w - kw + 1), c * kh * kw)


def conv2d(x: object, w: object, mac: Mac, *, seed: int | None = None,
           sr_bits: int | None = None) -> np.ndarray:
    """Valid, stride-1 cross-correlation: (N, C, H, W) × (F, C, Kh, Kw) → (N, F, Ho, Wo).

    Each output sums over k = (c·Kh + kh)·Kw + kw in that order through ``mac``.
    """
    xa, wa = _operand(x, "x"), _operand(w, "w")
    if xa.ndim != 4 or wa.ndim != 4 or xa.shape[1] != wa.shape[1]:
        raise ValueError(msg("conv2d", "needs x (N, C, H, W) and w (F, C, Kh, Kw) with equal C",
                             f"{xa.shape} and {wa.shape}"))
    n, c, h, wd = xa.shape
    f, _, kh, kw = wa.shape
    if kh > h or kw > wd:
        raise ValueError(msg("conv2d", "kernel larger than the input",
                             f"{wa.shape} on {xa.shape}"))
    cols = im2col(xa, kh, kw)
    res = _mac_matmul(cols, wa.reshape(f, c * kh * kw).T, mac, seed, sr_bits)
    ho, wo = h - kh + 1, wd - kw + 1
    return np.ascontiguousarray(res.reshape(n, ho, wo, f).transpose(0, 3, 1, 2))


def conv2d_grad_weight(x: object, g: object, kernel_size: tuple[int, int], mac: Mac, *,
                       seed: int | None = None, sr_bits: int | None = None) -> np.ndarray:
    """Weight gradient of :func:`conv2d`: ``dw[f,c,kh,kw] = sum x[n,c,i+kh,j+kw]·g[n,f,i,j]``.

    x is (N, C, H, W), g the output gradient (N, F, Ho, Wo); returns (F, C, Kh, Kw). Each
    output reduces over k = (n·Ho + i)·Wo + j in that order through ``mac`` (length N·Ho·Wo,
    86 528 for the reference network at batch 128).
    """
    xa, ga = _operand(x, "x"), _operand(g, "g")
    kh, kw = kernel_size
    if xa.ndim != 4 or ga.ndim != 4 or xa.shape[0] != ga.shape[0] \
            or ga.shape[2:] != (xa.shape[2] - kh + 1, xa.shape[3] - kw + 1):
        raise ValueError(msg("conv2d_grad_weight", "needs x (N, C, H, W) and g (N, F, H-Kh+1, "
                             "W-Kw+1)", f"{xa.shape}, {ga.shape}, kernel {kernel_size}"))
    c = xa.shape[1]
    f = ga.shape[1]
    cols = im2col(xa, kh, kw)  # (N·Ho·Wo, C·Kh·Kw), rows in (n, i, j) order
    gm = np.ascontiguousarray(ga.transpose(1, 0, 2, 3)).reshape(f, -1)  # (F, N·Ho·Wo)
    res = _mac_matmul(gm, cols, mac, seed, sr_bits)
    return res.reshape(f, c, kh, kw)


def conv2d_grad_input(g: object, w: object, input_hw: tuple[int, int], mac: Mac, *,
                      seed: int | None = None, sr_bits: int | None = None) -> np.ndarray:
    """Input gradient of :func:`conv2d`: the full correlation of g with the flipped kernels.

    ``dx[n, c, y, x] = sum g[n, f, y-kh, x-kw]·w[f, c, kh, kw]`` over the terms inside g; g is
    (N, F, Ho, Wo), w (F, C, Kh, Kw); returns (N, C, H, W). Each output reduces over
    k = (f·Kh + kh')·Kw + kw' with kh' = Kh-1-kh, kw' = Kw-1-kw (the flipped kernel's order);
    terms outside g are exact zeros, which leave every accumulator unchanged.
    """
    ga, wa = _operand(g, "g"), _operand(w, "w")
    if ga.ndim != 4 or wa.ndim != 4 or ga.shape[1] != wa.shape[0]:
        raise ValueError(msg("conv2d_grad_input", "needs g (N, F, Ho, Wo) and w (F, C, Kh, Kw)",
                             f"{ga.shape}, {wa.shape}"))
    kh, kw = wa.shape[2:]
    h, wd = input_hw
    if ga.shape[2:] != (h - kh + 1, wd - kw + 1):
        raise ValueError(msg("conv2d_grad_input", "g's spatial size must be H-Kh+1, W-Kw+1",
                             f"{ga.shape} for input {input_hw}"))
    gp = np.pad(ga, ((0, 0), (0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1)))
    wf = np.ascontiguousarray(wa[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))  # (C, F, Kh, Kw)
    return conv2d(gp, wf, mac, seed=seed, sr_bits=sr_bits)


def maxpool2d(x: object, size: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Max pooling over non-overlapping size×size windows (floor of H/size, W/size).

    Returns (pooled, argmax) with argmax the flat index (row-major) within each window of the
    first maximum — ties go to the first in row-major order, as the founding model routes
    gradients. No rounding happens (selection only).
    """
    xa = _operand(x, "x")
    if xa.ndim != 4 or not isinstance(size, int) or size < 1:
        raise ValueError(msg("maxpool2d", "needs x (N, C, H, W) and an int size >= 1",
                             f"{xa.shape}, {size}"))
    n, c, h, w = xa.shape
    out = np.empty((n, c, h // size, w // size), np.float64)
    arg = np.empty(out.shape, np.int64)
    _kp.maxpool_forward(xa, size, out, arg)
    return out, arg


def maxpool2d_backward(grad: object, argmax: np.ndarray, input_shape: tuple[int, ...],
                       size: int = 2) -> np.ndarray:
    """Route ``grad`` (N, C, Ho, Wo) to the argmax position of each window; other positions
    (and rows/columns cut off by the floor) get 0."""
    ga = _operand(grad, "grad")
    arg = np.asarray(argmax)
    if ga.shape != arg.shape or ga.ndim != 4:
        raise ValueError(msg("maxpool2d_backward", "grad and argmax must have one (N, C, Ho, Wo)"
                             " shape", f"{ga.shape}, {arg.shape}"))
    n, c, ho, wo = ga.shape
    shape = tuple(int(v) for v in input_shape)
    if (len(shape) != 4 or shape[:2] != (n, c) or shape[2] // size != ho
            or shape[3] // size != wo):
        raise ValueError(msg("maxpool2d_backward", "input_shape must pool to grad's shape",
                             f"{shape} with size {size} vs {ga.shape}"))
    if arg.size and (arg.min() < 0 or arg.max() >= size * size):
        raise ValueError(msg("maxpool2d_backward", f"argmax must be in 0..{size * size - 1}",
                             f"{arg.min()}..{arg.max()}"))
    out = np.empty(shape, np.float64)
    _kp.maxpool_backward(ga, np.ascontiguousarray(arg, dtype=np.int64), size, out)
    return out
