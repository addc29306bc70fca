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

import math
from dataclasses import dataclass

import numpy as np

from . import lowering
from ._errors import msg
from ._kernels import codes as _c
from ._kernels import conv_fast as _kcf
from ._kernels import elementwise as _kew
from ._kernels import mac as _km
from ._kernels import mac_fast as _kmf
from ._kernels import pool as _kp
from .formats import Fixed, FixedOverflow, Float, FloatRounding, Mac, Special
from .quantize import (
    NanPolicy,
    as_format,
    block_convert,
    block_scale_values,
    check_nan_policy,
    quantize,
    reject_masked,
)

__all__ = ["ConvGeometry", "Mac", "add", "argmax_cells", "avgpool2d", "avgpool2d_backward",
           "conv2d", "conv2d_grad_input", "conv2d_grad_weight", "conv_geometry", "dot", "fma",
           "matmul", "maxpool2d", "maxpool2d_backward", "mul", "pool_geometry", "sub"]


def _operand(x: object, what: str) -> np.ndarray:
    if isinstance(x, np.ma.MaskedArray):
        reject_masked(x, what)
    a = np.asarray(x)
    if a.dtype.kind not in "fiub":
        raise TypeError(msg(what, "must be a real numeric array", a.dtype))
    if a.dtype.kind == "f" and a.dtype.itemsize > 8:
        raise TypeError(msg(what, "float dtype wider than float64 is not supported", a.dtype))
    return np.asarray(a, dtype=np.float64, order="C")


_SPLIT = 134217729.0  # 2^27 + 1, Veltkamp's splitter for float64


def _exact_double(op: int, a: np.ndarray, b: np.ndarray, c: np.ndarray, fmt: Fixed | Float,
                  floor: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The op's result in double (flat, C order) and a mask of the elements where rounding
    that double into ``fmt`` is the rounding of the exact result
    (:func:`fxemu._kernels.elementwise.double_kernel`: exact by error-free transformations,
    or, for a deterministic ``fmt``, provably clear of its decision points; see
    :func:`fxemu.lowering.decision_grid`). Elsewhere the caller uses the exact engine.
    a, b, c: 3-D views of one shape (:func:`_views3`). ``floor``: exact zero sums take the
    sign of a rounding toward -inf."""
    n = a.size
    r, ok = np.empty(n, np.float64), np.empty(n, np.bool_)
    sign = -1.0 if op == _c.OP_SUB else 1.0
    _kew.double_kernel(op)(a, b, c, sign, floor, *lowering.decision_grid(fmt), r, ok)
    return r, ok


def _views3(arrs: list[np.ndarray], shape: tuple[int, ...]) -> list[np.ndarray]:
    """Read-only 3-D views of the C-contiguous operands broadcast to ``shape`` (no copies):
    a broadcast axis has stride 0, axes whose strides chain in every operand are merged;
    beyond three axes the broadcast operands are copied to one."""
    nd = len(shape)
    strides = []
    for a in arrs:
        pad = nd - a.ndim
        strides.append([0 if i < pad or a.shape[i - pad] == 1 else a.strides[i - pad]
                        for i in range(nd)])
    merged: list = []
    for i, n in enumerate(shape):
        if n == 1:
            continue
        st = [s[i] for s in strides]
        if merged and all(sp == q * n for sp, q in zip(merged[-1][1], st, strict=True)):
            merged[-1] = [merged[-1][0] * n, st]
        else:
            merged.append([n, st])
    if len(merged) > 3:
        arrs = [np.ascontiguousarray(np.broadcast_to(a, shape)).reshape(-1) for a in arrs]
        merged = [[arrs[0].size, [8] * len(arrs)]]
    merged = [[1, [0] * len(arrs)]] * (3 - len(merged)) + merged
    out_shape = tuple(n for n, _ in merged)
    views = []
    for i, a in enumerate(arrs):
        v = np.ndarray(out_shape, np.float64, buffer=a, strides=tuple(st[i] for _, st in merged))
        v.flags.writeable = False
        views.append(v)
    return views


def daz(x: np.ndarray, fmt: Fixed | Float | None) -> np.ndarray:
    """Operands as a datapath reads them: an FTZ float datapath reads values below its
    smallest normal as zero of the same sign (DAZ); unchanged otherwise."""
    if not isinstance(fmt, Float) or fmt.subnormals:
        return x
    tiny = (x != 0) & (np.abs(x) < fmt.smallest_normal)
    return np.where(tiny, np.copysign(0.0, x), x) if tiny.any() else x


def _elementwise(op: int, fmt: object, seed: int | None, sr_bits: int | None,
                 *xs: object) -> np.ndarray:
    f = as_format(fmt)
    lowering.format_vec(f, 1)  # refuses storage-only formats (unsigned, zero-less floats)
    arrs = [daz(_operand(x, f"operand {i}"), f) for i, x in enumerate(xs)]
    try:
        shape = np.broadcast_shapes(*(a.shape for a in arrs))
    except ValueError:
        shapes = " and ".join(str(np.shape(a)) for a in arrs)
        raise ValueError(msg("operands", "must broadcast together", shapes)) from None
    while len(arrs) < 3:
        arrs.append(np.zeros(()))
    bits, key = lowering.sr_key(f, seed, sr_bits)
    # exact (or provably rounding alike) in double → one conversion (fast kernels); the rest
    # → the exact engine. Both draw stochastic bits from (key, element index), so the split
    # does not change results.
    floor = isinstance(f, Float) and f.rounding is FloatRounding.RDN
    r, ok = _exact_double(op, *_views3(arrs, shape), f, floor=floor)
    out = quantize(r, f, seed=seed, sr_bits=sr_bits, nan="hls")
    if not ok.all():
        rest = np.flatnonzero(~ok)
        sub = np.empty(rest.size, np.float64)
        _km.elementwise_kernel(op, *(np.ravel(np.broadcast_to(v, shape))[rest].view(np.uint64)
                                     for v in arrs), sub,
                               lowering.format_vec(f, bits), key,
                               f.step if isinstance(f, Fixed) else 0.0, rest)
        out[rest] = sub
    return out.reshape(shape)


def add(a: object, b: object, fmt: Fixed | Float | str, *, seed: int | None = None,
        sr_bits: int | None = None) -> np.ndarray:
    """``a + b`` exactly, rounded once into ``fmt`` (broadcasting).

    >>> import fxemu as fx
    >>> fx.add(1.0, 2.0**-11, "float16").tolist()   # tie: to even
    1.0
    """
    return _elementwise(_c.OP_ADD, fmt, seed, sr_bits, a, b)


def sub(a: object, b: object, fmt: Fixed | Float | str, *, seed: int | None = None,
        sr_bits: int | None = None) -> np.ndarray:
    """``a - b`` exactly, rounded once into ``fmt`` (broadcasting)."""
    return _elementwise(_c.OP_SUB, fmt, seed, sr_bits, a, b)


def mul(a: object, b: object, fmt: Fixed | Float | str, *, seed: int | None = None,
        sr_bits: int | None = None) -> np.ndarray:
    """``a · b`` exactly (106-bit product), rounded once into ``fmt`` (broadcasting).

    >>> import fxemu as fx
    >>> fx.mul(1.5, -2.75, "ap_fixed<8,4,AP_RND,AP_SAT>").tolist()
    -4.125
    """
    return _elementwise(_c.OP_MUL, fmt, seed, sr_bits, a, b)


def fma(a: object, b: object, c: object, fmt: Fixed | Float | str, *, seed: int | None = None,
        sr_bits: int | None = None) -> np.ndarray:
    """``a · b + c`` exactly, rounded once into ``fmt`` (broadcasting)."""
    return _elementwise(_c.OP_FMA, fmt, seed, sr_bits, a, b, c)


def _span(x: np.ndarray) -> tuple[int, int, int, int]:
    """One pass over x: :func:`fxemu._kernels.mac_fast.span` (lowest set-bit exponent,
    highest leading-bit exponent, most significant bits of one element, inf/NaN count)."""
    return _kmf.span(x.reshape(-1).view(np.uint64))


def to_int(x: np.ndarray, f: int) -> np.ndarray:
    """The integers x·2^f (exact: the caller checked every element is one)."""
    out = np.empty(x.shape, np.int64)
    _kmf.scaled_int(x, 2.0**f, out)
    return out


def _fixed_blas(a: np.ndarray, b: np.ndarray, fa: int, fb: int, sh_p: int,
                acc: Fixed) -> np.ndarray | None:
    """Exact products that land on the accumulator's grid (no rounding in any addition).

    Then every order gives the exact integer sum when no partial sum can overflow, and
    wrapping is modular, so order-free too. With a bound on every partial sum below 2^52 a
    float64 BLAS product of the integer operands is exact; when the bound also stays inside
    the saturation limits, that product is the result. The bound is first the cheaper of
    ``max_i sum_k |a_ik| · max |b|`` and ``max |a| · max_j sum_k |b_kj|``, and where that is
    too large the tight
    ``sum_k |a_ik|·|b_kj|`` (one more BLAS product, of nonnegative integers: exact below
    2^53, and at least 2^52 where the exact value is). Otherwise None: the integer kernel
    runs the datapath step by step (mixing BLAS and kernel threads in one call would only
    make them wait for each other).
    """
    ai = a * 2.0 ** (fa + sh_p)  # exact power-of-two scalings to integers
    bi = b * 2.0**fb
    if not (ai.shape[0] and bi.shape[1]):
        return np.zeros((ai.shape[0], bi.shape[1]))
    wrap = acc.overflow is FixedOverflow.WRAP
    lo, hi = float(acc.min_int), float(acc.max_int)
    if acc.overflow is FixedOverflow.SAT_SYM and acc.signed:
        lo = -hi
    limit = 2.0**52 if wrap else min(2.0**52, min(hi, -lo) + 1.0)  # bounds must stay below
    abs_a, abs_b = np.abs(ai), np.abs(bi)
    bound = min(float(abs_a.sum(axis=1).max()) * float(abs_b.max(initial=0.0)),
                float(abs_a.max(initial=0.0)) * float(abs_b.sum(axis=0).max()))
    if not bound < limit:
        bound = float((abs_a @ abs_b).max())
        if not bound < limit:
            return None
    if wrap:
        w = acc.width
        t = (ai @ bi).astype(np.int64) & ((1 << w) - 1)  # exact: partial sums below 2^53
        if acc.signed:
            t = np.where(t >= 1 << (w - 1), t - (1 << w), t)
        return t.astype(np.float64) * 2.0**-acc.frac_bits
    return (ai @ bi) * 2.0**-acc.frac_bits  # exact: integer operands, partial sums < 2^53


def _refuse_nan(a: np.ndarray, b: np.ndarray, mac: Mac, names: tuple[str, str]) -> None:
    """Raise where the IEEE result of some output is NaN (a NaN operand, inf·0, inf - inf)
    and a format of ``mac`` has no NaN (called only when an operand is not finite)."""
    for x, name in zip((a, b), names, strict=True):
        if np.isnan(x).any():
            raise ValueError(msg(name, f"contains NaN but the Mac {_mac_text(mac)} has no NaN",
                                 "nan", "pass nan='hls' for the vendor's behaviour"))
    with np.errstate(all="ignore"):
        r = a @ b
    if np.isnan(r).any():
        raise ValueError(msg(f"{names[0]}·{names[1]}", "a product or sum is NaN (inf·0 or "
                             f"inf - inf) but the Mac {_mac_text(mac)} has no NaN", "nan",
                             "pass nan='hls' for the vendor's behaviour"))


def _mac_text(mac: Mac) -> str:
    parts = [f"acc={mac.acc}"] + [f"{k}={v}" for k, v in (("mul", mac.mul), ("out", mac.out))
                                  if v is not None]
    return "(" + ", ".join(parts) + ")"


def _mac_matmul(a: np.ndarray, b: np.ndarray, mac: Mac, seed: int | None,
                sr_bits: int | None, nan: str, names: tuple[str, str]) -> np.ndarray:
    """``R_out(reduce_k a[i,k]·b[k,j])`` for 2-D float64 operands a (M, K), b (K, N)."""
    if not isinstance(mac, Mac):
        raise TypeError(msg("mac", "must be an fx.Mac", type(mac).__name__))
    check_nan_policy(nan)
    if mac.block:
        return _block_mac_matmul(a, b, mac, seed, sr_bits, nan, names)
    lm, bits, key = lowering.lower_mac_call(mac, seed, sr_bits)
    # an FTZ multiplier (or, without one, an FTZ accumulator) reads subnormal operands as zero
    a = np.ascontiguousarray(daz(a, lm.first))
    b = np.ascontiguousarray(daz(b, lm.first))
    spans = (_span(a), _span(b))
    if nan == "raise" and lm.lacks_nan and (spans[0][3] or spans[1][3]):
        _refuse_nan(a, b, mac, names)
    path = lowering.mac_path(mac, lm, spans, key, bits)
    if path.kind == "fused":
        return _fused_matmul(a, b, mac, path, spans[0][3] or spans[1][3], seed, sr_bits)
    if path.kind == "int":
        res = _fixed_blas(a, b, path.fa, path.fb, path.sh_p, mac.acc) if path.blas else None
        if res is None and path.kernel is not None:
            out = np.empty((a.shape[0], b.shape[1]), np.int64)
            path.kernel(to_int(a, path.fa), to_int(b, path.fb), out, *path.args)
            res = out.astype(np.float64) * 2.0**-mac.acc.frac_bits
        if res is not None:
            return res if mac.out is None else quantize(res, mac.out)
    elif path.kind in ("float", "float32"):
        if path.kind == "float32":  # proved float32 operands: one float32 result
            res32 = np.empty((a.shape[0], b.shape[1]), np.float32)
            path.kernel(a.astype(np.float32), b.astype(np.float32), res32, *path.args)
            res = res32.astype(np.float64)
        else:
            res = np.empty((a.shape[0], b.shape[1]), np.float64)
            path.kernel(a, b, res, *path.args)
        # float32 rounded by the hardware: inf/NaN take the engine's codes, not its payloads
        if not path.hw32 or np.isfinite(res).all():
            return res if mac.out is None else quantize(res, mac.out)
    out = np.empty((a.shape[0], b.shape[1]), np.float64)
    bt = np.ascontiguousarray(b.T)  # the exact engine reads each output's operands as rows
    _km.matmul_kernel(a.view(np.uint64), bt.view(np.uint64), out, lm.acc, lm.mul, lm.out,
                      lm.use_mul, lm.order, lm.chunk, key, lm.out_scale)
    return out


def _partial_sum_bound(forward: bool, a: np.ndarray, b: np.ndarray, spans: tuple) -> float:
    """An upper bound on |every partial sum| of a direct conv's reductions (exact products,
    before any accumulator rounding): each term |a·b| <= max|a|·|b| (forward: the kernel's
    terms per filter) or |a|·max|b| (weight gradient: the gradient's terms per filter), and
    max|x| < 2^(its span's highest leading-bit exponent + 1). inf where nothing is known."""
    if spans[0][3] or spans[1][3]:
        return math.inf
    if forward:  # each output: its filter's kernel b[f], against a's largest element
        big, per = spans[0][1], np.abs(b).reshape(b.shape[0], -1).sum(axis=1)
    else:  # each output: filter f's gradient a[:, f], against b's largest element
        big, per = spans[1][1], np.abs(a).sum(axis=(0, 2, 3))
    if big < -1074 or not per.size:  # an all-zero operand
        return 0.0
    if big > 900:
        return math.inf
    return float(per.max()) * 2.0 ** (big + 1)


def _direct_conv(forward: bool, a: np.ndarray, b: np.ndarray, out_shape: tuple[int, ...],
                 geo: tuple[int, int, int, int], mac: Mac, seed: int | None,
                 sr_bits: int | None, nan: str) -> np.ndarray | None:
    """A conv (``forward``: a = x, b = w) or weight gradient (a = g, b = x) by the direct
    kernels of :mod:`fxemu._kernels.conv_fast` (geo = (sh, sw, pt, pl)) where
    :func:`fxemu.lowering.direct_path` gives the Mac a datapath of theirs: the same
    operations in the same order as :func:`_mac_matmul` on the im2col matrices (tested), so
    the same bits. None elsewhere (an inf/NaN operand, other orders and datapaths, a float32
    result beyond float32's finite range): the caller takes the im2col path."""
    check_nan_policy(nan)
    if not isinstance(mac, Mac) or mac.block or mac.fused is not None:
        return None
    lm, bits, key = lowering.lower_mac_call(mac, seed, sr_bits)
    if lm.order != _c.ORDER_SEQUENTIAL:
        return None
    a = np.ascontiguousarray(daz(a, lm.first))
    b = np.ascontiguousarray(daz(b, lm.first))
    spans = (_span(a), _span(b))
    # the bound matters to fixed accumulators only (it drops their saturation tests)
    bound = _partial_sum_bound(forward, a, b, spans) if isinstance(mac.acc, Fixed) else math.inf
    dp = lowering.direct_path(mac, lm, spans, key, bits, bound)
    if dp is None:
        return None
    scales = (2.0**dp.fa, 2.0**dp.fb)  # exact: to integers (float32: the values, proved float32)
    run = _kcf.forward if forward else _kcf.weight_grad
    val = run(dp.ops, dp.dtype, a, b, *scales, dp.out_scale, out_shape[2:], geo, dp.mp, dp.ap)
    if dp.dtype is np.float32 and not np.isfinite(val).all():
        return None  # float32 inf/NaN take the engine's codes
    return val if mac.out is None else quantize(val, mac.out)


def _fused_matmul(a: np.ndarray, b: np.ndarray, mac: Mac, path: lowering.MacPath,
                  nonfinite: bool, seed: int | None, sr_bits: int | None) -> np.ndarray:
    """The fused-adder chain (:class:`fxemu.Fused`); outputs with an inf/NaN operand take
    the IEEE value of their exact dot product, rounded into acc; then ``out`` (a stochastic
    ``out`` draws from ``seed``)."""
    ieee = None
    if nonfinite:
        with np.errstate(all="ignore"):
            ieee = a @ b
        a = np.where(np.isfinite(a), a, 0.0)
        b = np.where(np.isfinite(b), b, 0.0)
    res = np.empty((a.shape[0], b.shape[1]), np.float64)
    bt = np.ascontiguousarray(b.T)
    fp = path.args[0]
    path.kernel(a, bt, lowering.fused_exponents(a, fp[7]), lowering.fused_exponents(bt, fp[8]),
                res, *path.args)
    if ieee is not None:
        bad = ~np.isfinite(ieee)
        res[bad] = quantize(ieee[bad], mac.acc, nan="hls")
    return res if mac.out is None else quantize(res, mac.out, seed=seed, sr_bits=sr_bits,
                                                   nan="hls")
def _sub_seed(seed: int | None, i: int) -> int | None:
    """An independent seed for the i-th stochastic stage of one call (None stays None)."""
    if seed is None:
        return None
    return int(np.random.SeedSequence([int(seed), i]).generate_state(1, np.uint64)[0] >> 1)


def _block_mac_matmul(a: np.ndarray, b: np.ndarray, mac: Mac, seed: int | None,
                      sr_bits: int | None, nan: str, names: tuple[str, str]) -> np.ndarray:
    """A (M, K) @ B (K, N) through a block Mac (see :class:`fxemu.Mac`): A is converted into
    ``mac.a`` along K (rows), B into ``mac.b`` along K (columns); each block pair's exact term
    is accumulated into acc in the Mac's order over blocks, then rounded into out. Stochastic
    element rounding draws from independent streams per operand (sub-seeds of ``seed``)."""
    why = lowering.block_mac_check(mac)
    if why is not None:
        raise ValueError(msg("mac", why, _mac_text(mac)))
    lm, _, key = lowering.lower_mac_call(mac, _sub_seed(seed, 0), sr_bits)
    _, ea, sca, _ = block_convert(a, mac.a, seed=_sub_seed(seed, 1), sr_bits=sr_bits,
                                  unscaled=True, axis=1, codes=False)
    _, eb, scb, _ = block_convert(b, mac.b, seed=_sub_seed(seed, 2), sr_bits=sr_bits,
                                  unscaled=True, axis=0, codes=False)
    sa, sb = block_scale_values(sca, mac.a), block_scale_values(scb, mac.b)
    if nan == "raise" and lm.lacks_nan and (np.isnan(sa).any() or np.isnan(sb).any()):
        bad = names[0] if np.isnan(sa).any() else names[1]
        raise ValueError(msg(bad, f"has a block holding NaN or inf but the Mac {_mac_text(mac)}"
                             " has no NaN", "nan", "pass nan='hls' for the vendor's behaviour"))
    out = np.empty((a.shape[0], b.shape[1]), np.float64)
    from ._kernels import block as _kb  # Numba-compiled on first use

    _kb.block_matmul(ea, sa, np.ascontiguousarray(eb.T), np.ascontiguousarray(sb.T), out,
                     mac.a.block_size, lm.acc, lm.out, lm.order, lm.chunk, key, lm.out_scale,
                     *lowering.block_mac_fast(mac, lm))
    return out


def dot(a: object, b: object, mac: Mac, *, seed: int | None = None,
        sr_bits: int | None = None, nan: NanPolicy = "raise") -> np.ndarray:
    """``sum_k a[k]·b[k]`` through the ``mac`` datapath (1-D operands of equal length).

    ``nan``: where the IEEE result of an output is NaN (a NaN operand, ``inf·0``, ``inf - inf``)
    and a format of ``mac`` (mul, acc or out) has no NaN, ``"raise"`` (default) raises
    ``ValueError`` naming the operand, as :func:`fxemu.quantize` does; ``"hls"`` gives what
    the vendor types compute (a fixed accumulator reads NaN as ap_fixed does: 0).

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
    return _mac_matmul(x[None, :], y[:, None], mac, seed, sr_bits, nan, ("a", "b"))[0, 0]


def matmul(a: object, b: object, mac: Mac, *, seed: int | None = None,
           sr_bits: int | None = None, nan: NanPolicy = "raise") -> np.ndarray:
    """``(M, K) @ (K, N)`` with every output reduced over k = 0…K-1 by ``mac`` (a
    ``fused:…`` order in steps of its multi-term adder, see :class:`fxemu.Fused`).

    ``nan``: where the IEEE result of an output is NaN (a NaN operand, ``inf·0``, ``inf - inf``)
    and a format of ``mac`` (mul, acc or out) has no NaN, ``"raise"`` (default) raises
    ``ValueError`` naming the operand, as :func:`fxemu.quantize` does; ``"hls"`` gives what
    the vendor types compute (a fixed accumulator reads NaN as ap_fixed does: 0).
    """
    x, y = _operand(a, "A"), _operand(b, "B")
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[0]:
        raise ValueError(msg("matmul", "needs (M, K) and (K, N) arrays",
                             f"{x.shape} and {y.shape}"))
    return _mac_matmul(x, y, mac, seed, sr_bits, nan, ("A", "B"))


@dataclass(frozen=True)
class ConvGeometry:
    """The normalised geometry of a sliding-window layer (conv or pool) on an H×W input.

    ``stride`` (sh, sw) >= 1; ``padding`` (top, bottom, left, right) >= 0 zero rows/columns
    around the input; ``out`` (ho, wo) = (⌊(H + top + bottom − Kh)/sh⌋ + 1, likewise for W),
    as ``torch.nn.functional.conv2d`` computes it; ``kernel`` (Kh, Kw) and ``input`` (H, W).
    """

    stride: tuple[int, int]
    padding: tuple[int, int, int, int]
    out: tuple[int, int]
    kernel: tuple[int, int]
    input: tuple[int, int]

    @property
    def ho(self) -> int:
        return self.out[0]

    @property
    def wo(self) -> int:
        return self.out[1]

    @property
    def trivial(self) -> bool:
        """Stride 1 and no padding (the valid, stride-1 case)."""
        return self.stride == (1, 1) and self.padding == (0, 0, 0, 0)

    def overlapping(self) -> bool:
        """Whether two windows share an input position (a stride below the kernel)."""
        return self.stride[0] < self.kernel[0] or self.stride[1] < self.kernel[1]


def _int_ge(v: object, lo: int, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or int(v) < lo:
        raise ValueError(msg(what, f"must be an int >= {lo}", v))
    return int(v)


def _pair(v: object, lo: int, what: str) -> tuple[int, int]:
    if isinstance(v, tuple | list) and len(v) == 2:
        return _int_ge(v[0], lo, what), _int_ge(v[1], lo, what)
    if isinstance(v, tuple | list):
        raise ValueError(msg(what, "must be an int or a pair of ints", v))
    return (_int_ge(v, lo, what),) * 2


def conv_geometry(h: int, w: int, kh: int, kw: int, stride: object = 1,
                  padding: object = 0) -> ConvGeometry:
    """Normalise a conv/pool window geometry on an h×w input with a kh×kw kernel.

    ``stride``: an int or a pair (sh, sw), each >= 1. ``padding``: an int >= 0 (all sides), a
    pair (ph, pw) (top = bottom = ph, left = right = pw), a 4-tuple (top, bottom, left,
    right), ``"valid"`` (0) or ``"same"`` (stride 1 only: total Kh − 1 rows, top = total // 2,
    bottom the rest, likewise for columns, as torch splits it). Raises ``ValueError`` (one
    line) for invalid values or a kernel larger than the padded input.

    >>> conv_geometry(28, 28, 5, 5, padding="same").out
    (28, 28)
    >>> conv_geometry(32, 32, 3, 3, stride=2, padding=1).out
    (16, 16)
    """
    h, w = _int_ge(h, 0, "input height"), _int_ge(w, 0, "input width")
    kh, kw = _int_ge(kh, 1, "kernel height"), _int_ge(kw, 1, "kernel width")
    sh, sw = _pair(stride, 1, "stride")
    if isinstance(padding, str):
        if padding == "valid":
            pad = (0, 0, 0, 0)
        elif padding == "same":
            if (sh, sw) != (1, 1):
                raise ValueError(msg("padding", "'same' needs stride 1", (sh, sw)))
            pad = ((kh - 1) // 2, kh - 1 - (kh - 1) // 2, (kw - 1) // 2, kw - 1 - (kw - 1) // 2)
        else:
            raise ValueError(msg("padding", "must be an int, a pair, 'same' or 'valid'",
                                 padding))
    elif isinstance(padding, tuple | list) and len(padding) == 4:
        pad = tuple(_int_ge(p, 0, "padding") for p in padding)
    else:
        ph, pw = _pair(padding, 0, "padding")
        pad = (ph, ph, pw, pw)
    hp, wp = h + pad[0] + pad[1], w + pad[2] + pad[3]
    if kh > hp or kw > wp:
        raise ValueError(msg("kernel", "larger than the padded input",
                             f"{kh}×{kw} on {hp}×{wp} (input {h}×{w}, padding {pad})"))
    return ConvGeometry((sh, sw), pad, ((hp - kh) // sh + 1, (wp - kw) // sw + 1), (kh, kw),
                        (h, w))


def _pad(x: np.ndarray, g: ConvGeometry, fill: float = 0.0) -> np.ndarray:
    t, b, l_, r = g.padding
    if not (t or b or l_ or r):
        return x
    return np.pad(x, ((0, 0), (0, 0), (t, b), (l_, r)), constant_values=fill)


def _windows(x: np.ndarray, g: ConvGeometry, fill: float = 0.0) -> np.ndarray:
    """View (N, C, Ho, Wo, Kh, Kw) of the windows of NCHW ``x`` padded with ``fill``."""
    win = np.lib.stride_tricks.sliding_window_view(_pad(x, g, fill), g.kernel, axis=(2, 3))
    sh, sw = g.stride
    return win[:, :, ::sh, ::sw][:, :, :g.ho, :g.wo]


def im2col(x: np.ndarray, kh: int, kw: int, stride: object = 1,
           padding: object = 0) -> np.ndarray:
    """Patches of NCHW ``x`` for a kh×kw window (stride, zero padding as :func:`conv_geometry`):
    shape (N·Ho·Wo, C·kh·kw), rows in (n, i, j) order, the column index k = (c·kh + i)·kw + j.
    Padded positions hold +0.0."""
    n, c, h, w = x.shape
    g = conv_geometry(h, w, kh, kw, stride, padding)
    win = _windows(x, g)
    # (N, C, Ho, Wo, kh, kw) -> (N, Ho, Wo, C, kh, kw)
    return np.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5)).reshape(
        n * g.ho * g.wo, c * kh * kw)


def conv2d(x: object, w: object, mac: Mac, *, stride: object = 1, padding: object = 0,
           seed: int | None = None, sr_bits: int | None = None,
           nan: NanPolicy = "raise") -> np.ndarray:
    """Cross-correlation (N, C, H, W) × (F, C, Kh, Kw) → (N, F, Ho, Wo) with ``stride`` and zero
    ``padding`` (as :func:`conv_geometry`; the defaults are valid, stride 1).

    ``y[n, f, i, j] = R(sum x_p[n, c, i·sh + kh, j·sw + kw]·w[f, c, kh, kw])`` with ``x_p`` the
    input padded with zeros. Each output sums over k = (c·Kh + kh)·Kw + kw in that order
    through ``mac``; stride and padding change which input elements enter, never the order.
    A padded position is an input element +0.0: its product ``+0·w`` (+0 or −0 by the sign of
    w, rounded by ``mac.mul`` like any product) enters the reduction at its k, so the result
    equals the valid conv of the explicitly zero-padded input bit for bit, signed zeros
    included (under a float Mac a −0 term leaves every accumulator unchanged; a +0 term
    turns a −0 accumulator into +0 except under ``rdn``). A kernel with a zero dimension is
    refused (``ValueError``).

    ``nan``: where the IEEE result of an output is NaN (a NaN operand, ``inf·0``, ``inf - inf``)
    and a format of ``mac`` (mul, acc or out) has no NaN, ``"raise"`` (default) raises
    ``ValueError`` naming the operand, as :func:`fxemu.quantize` does; ``"hls"`` gives what
    the vendor types compute (a fixed accumulator reads NaN as ap_fixed does: 0).
    """
    xa, wa = _operand(x, "x"), _operand(w, "w")
    _conv_shapes(xa, wa)
    g = conv_geometry(xa.shape[2], xa.shape[3], wa.shape[2], wa.shape[3], stride, padding)
    return _conv2d(xa, wa, g, mac, seed, sr_bits, nan, ("x", "w"))


def _conv_shapes(xa: np.ndarray, wa: np.ndarray) -> None:
    if xa.ndim != 4 or wa.ndim != 4 or xa.shape[1] != wa.shape[1]:
        raise ValueError(msg("conv2d", "needs x (N, C, H, W) and w (F, C, Kh, Kw) with equal C",
                             f"{xa.shape} and {wa.shape}"))
    if wa.size == 0:
        raise ValueError(msg("w", "the conv kernel (F, C, Kh, Kw) must have no zero "
                             "dimension", wa.shape))


def _conv2d(xa: np.ndarray, wa: np.ndarray, g: ConvGeometry, mac: Mac, seed: int | None,
            sr_bits: int | None, nan: str, names: tuple[str, str]) -> np.ndarray:
    """The conv of ``xa`` with ``wa`` at geometry ``g``: directly where
    :func:`_direct_conv` can, else as the im2col matmul."""
    n = xa.shape[0]
    f, c, kh, kw = wa.shape
    res = _direct_conv(True, xa, wa, (n, f, *g.out), (*g.stride, g.padding[0], g.padding[2]),
                       mac, seed, sr_bits, nan)
    if res is not None:
        return res
    cols = im2col(xa, kh, kw, g.stride, g.padding)
    res = _mac_matmul(cols, wa.reshape(f, c * kh * kw).T, mac, seed, sr_bits, nan, names)
    return np.ascontiguousarray(res.reshape(n, g.ho, g.wo, f).transpose(0, 3, 1, 2))


def conv2d_grad_weight(x: object, g: object, kernel_size: tuple[int, int], mac: Mac, *,
                       stride: object = 1, padding: object = 0, seed: int | None = None,
                       sr_bits: int | None = None, nan: NanPolicy = "raise") -> np.ndarray:
    """Weight gradient of :func:`conv2d`:
    ``dw[f, c, kh, kw] = R(sum x_p[n, c, i·sh + kh, j·sw + kw]·g[n, f, i, j])``.

    x is (N, C, H, W), g the output gradient (N, F, Ho, Wo) of the conv with this ``stride``
    and ``padding``; returns (F, C, Kh, Kw). Each output reduces over k = (n·Ho + i)·Wo + j
    in that order through ``mac`` (length N·Ho·Wo, 86 528 for the reference network at batch
    128); padded positions are +0.0 inputs, as in :func:`conv2d`. A kernel size or gradient
    with a zero dimension is refused (``ValueError``).

    ``nan``: where the IEEE result of an output is NaN (a NaN operand, ``inf·0``, ``inf - inf``)
    and a format of ``mac`` (mul, acc or out) has no NaN, ``"raise"`` (default) raises
    ``ValueError`` naming the operand, as :func:`fxemu.quantize` does; ``"hls"`` gives what
    the vendor types compute (a fixed accumulator reads NaN as ap_fixed does: 0).
    """
    xa, ga = _operand(x, "x"), _operand(g, "g")
    try:
        kh, kw = (int(v) for v in kernel_size)
    except (TypeError, ValueError):
        raise ValueError(msg("kernel_size", "must be a pair of ints", kernel_size)) from None
    if min(kh, kw) < 1 or (ga.ndim == 4 and ga.shape[1] == 0) or (xa.ndim == 4
                                                                and xa.shape[1] == 0):
        raise ValueError(msg("kernel_size", "the conv kernel must have no zero dimension",
                             f"{kernel_size} for x {xa.shape}, g {ga.shape}"))
    if xa.ndim != 4 or ga.ndim != 4 or xa.shape[0] != ga.shape[0]:
        raise ValueError(msg("conv2d_grad_weight", "needs x (N, C, H, W) and g (N, F, Ho, Wo)",
                             f"{xa.shape}, {ga.shape}"))
    geo = conv_geometry(xa.shape[2], xa.shape[3], kh, kw, stride, padding)
    if ga.shape[2:] != geo.out:
        raise ValueError(msg("conv2d_grad_weight", f"g's spatial size must be the conv output "
                             f"{geo.out}", f"{ga.shape} for x {xa.shape}, kernel {kh}×{kw}"))
    c = xa.shape[1]
    f = ga.shape[1]
    res = _direct_conv(False, ga, xa, (f, c, kh, kw), (*geo.stride, geo.padding[0],
                                                        geo.padding[2]), mac, seed, sr_bits, nan)
    if res is not None:
        return res
    cols = im2col(xa, kh, kw, geo.stride, geo.padding)  # (N·Ho·Wo, C·Kh·Kw), rows (n, i, j)
    gm = np.ascontiguousarray(ga.transpose(1, 0, 2, 3)).reshape(f, -1)  # (F, N·Ho·Wo)
    res = _mac_matmul(gm, cols, mac, seed, sr_bits, nan, ("g", "x"))
    return res.reshape(f, c, kh, kw)


def _dilate(ga: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """The zero-dilated, padded gradient of :func:`conv2d_grad_input`: (N, F, H+Kh−1, W+Kw−1)
    with ``g[n, f, i, j]`` at (Kh−1−top + i·sh, Kw−1−left + j·sw) (dropped where outside: such
    a term reaches no input position) and +0.0 elsewhere."""
    (kh, kw), (h, w) = geo.kernel, geo.input
    out = np.zeros((*ga.shape[:2], h + kh - 1, w + kw - 1), np.float64)
    rows = kh - 1 - geo.padding[0] + geo.stride[0] * np.arange(geo.ho)
    cols = kw - 1 - geo.padding[2] + geo.stride[1] * np.arange(geo.wo)
    ri = np.flatnonzero((rows >= 0) & (rows < out.shape[2]))
    ci = np.flatnonzero((cols >= 0) & (cols < out.shape[3]))
    out[:, :, rows[ri][:, None], cols[ci][None, :]] = ga[:, :, ri[:, None], ci[None, :]]
    return out


def conv2d_grad_input(g: object, w: object, input_hw: tuple[int, int], mac: Mac, *,
                      stride: object = 1, padding: object = 0, seed: int | None = None,
                      sr_bits: int | None = None, nan: NanPolicy = "raise") -> np.ndarray:
    """Input gradient of :func:`conv2d`: the transposed convolution of g.

    ``dx[n, c, y, x] = R(sum g[n, f, i, j]·w[f, c, kh, kw])`` over y + top = i·sh + kh,
    x + left = j·sw + kw; g is (N, F, Ho, Wo), w (F, C, Kh, Kw); returns (N, C, H, W) with
    (H, W) = ``input_hw``. Computed, and ordered, as the valid stride-1 correlation of the
    zero-dilated, padded g — ``g[n, f, i, j]`` placed at (Kh−1−top + i·sh, Kw−1−left + j·sw) of
    an (H+Kh−1)×(W+Kw−1) plane of +0.0 — with the flipped kernels
    ``w'[c, f, kh', kw'] = w[f, c, Kh−1−kh', Kw−1−kw']``: each output reduces over
    k = (f·Kh + kh')·Kw + kw' in that order through ``mac`` (for stride 1 and no padding,
    the full correlation of g with the flipped kernel). Positions of that plane that hold no
    g element (dilation gaps, borders) are +0.0 operands whose products enter at their k like
    any other (see :func:`conv2d` on signed zeros). Input rows/columns no window covers get
    the reduction of zero terms. A kernel with a zero dimension is refused (``ValueError``).

    ``nan``: where the IEEE result of an output is NaN (a NaN operand, ``inf·0``, ``inf - inf``)
    and a format of ``mac`` (mul, acc or out) has no NaN, ``"raise"`` (default) raises
    ``ValueError`` naming the operand, as :func:`fxemu.quantize` does; ``"hls"`` gives what
    the vendor types compute (a fixed accumulator reads NaN as ap_fixed does: 0).
    """
    ga, wa = _operand(g, "g"), _operand(w, "w")
    if ga.ndim != 4 or wa.ndim != 4 or ga.shape[1] != wa.shape[0]:
        raise ValueError(msg("conv2d_grad_input", "needs g (N, F, Ho, Wo) and w (F, C, Kh, Kw)",
                             f"{ga.shape}, {wa.shape}"))
    if wa.size == 0:
        raise ValueError(msg("w", "the conv kernel (F, C, Kh, Kw) must have no zero dimension",
                             wa.shape))
    kh, kw = wa.shape[2:]
    try:
        h, wd = (int(v) for v in input_hw)
    except (TypeError, ValueError):
        raise ValueError(msg("input_hw", "must be a pair of ints", input_hw)) from None
    geo = conv_geometry(h, wd, kh, kw, stride, padding)
    if ga.shape[2:] != geo.out:
        raise ValueError(msg("conv2d_grad_input", f"g's spatial size must be the conv output "
                             f"{geo.out}", f"{ga.shape} for input {input_hw}"))
    wf = np.ascontiguousarray(wa[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))  # (C, F, Kh, Kw)
    if geo.stride == (1, 1):  # the dilated plane is g at offset (Kh−1−top, Kw−1−left)
        res = _direct_conv(True, ga, wf, (ga.shape[0], wa.shape[1], h, wd),
                           (1, 1, kh - 1 - geo.padding[0], kw - 1 - geo.padding[2]), mac,
                           seed, sr_bits, nan)
        if res is not None:
            return res
    gp = _dilate(ga, geo)
    flat = conv_geometry(gp.shape[2], gp.shape[3], kh, kw)
    return _conv2d(gp, wf, flat, mac, seed, sr_bits, nan, ("g", "w"))


def pool_geometry(shape: tuple[int, ...], size: object, stride: object = None,
                  padding: object = 0, what: str = "pool") -> ConvGeometry:
    """The window geometry of a pool on NCHW ``shape``: ``size`` an int or a pair, ``stride``
    None (= size) or as :func:`conv_geometry`, ``padding`` as there but at most half the
    window (as torch requires, so every window holds an input cell); ``what`` names the
    caller in the one-line ``ValueError``."""
    if len(shape) != 4:
        raise ValueError(msg(what, "needs x (N, C, H, W)", shape))
    kh, kw = _pair(size, 1, "size")
    g = conv_geometry(shape[2], shape[3], kh, kw, (kh, kw) if stride is None else stride,
                      padding)
    t, b, l_, r = g.padding
    if 2 * max(t, b) > kh or 2 * max(l_, r) > kw:
        raise ValueError(msg("padding", "must be at most half the pool window",
                             f"{g.padding} for {kh}×{kw}"))
    return g


def maxpool2d(x: object, size: object = 2, *, stride: object = None,
              padding: object = 0) -> tuple[np.ndarray, np.ndarray]:
    """Max pooling: each output is the maximum of a size×size window (``size`` an int or a
    pair) at ``stride`` (None: the size, non-overlapping), over the input padded by
    ``padding`` (as :func:`conv_geometry`; padded cells are −inf, as in torch: they never
    win); the output size is floor-divided as torch's ``ceil_mode=False``.

    Returns (pooled, argmax) with argmax the flat index a·kw + b (row-major) within each
    window of the first maximum — ties go to the first in row-major order, as the founding
    model routes gradients; a NaN counts as the maximum (the first NaN wins). No rounding
    happens (selection only). Padding beyond half the window is refused.
    """
    xa = _operand(x, "x")
    g = pool_geometry(xa.shape, size, stride, padding, "maxpool2d")
    n, c = xa.shape[:2]
    out = np.empty((n, c, *g.out), np.float64)
    arg = np.empty(out.shape, np.int64)
    _kp.maxpool_forward(xa, *g.kernel, *g.stride, g.padding[0], g.padding[2], out, arg)
    return out, arg


def _argmax_range(arg: np.ndarray, kernel: tuple[int, int], what: str) -> None:
    """``ValueError`` (one line, naming ``what``) where a window index is outside
    0..kh·kw - 1."""
    kh, kw = kernel
    if arg.size:
        lo, hi = arg.min(), arg.max()
        if lo < 0 or hi >= kh * kw:
            raise ValueError(msg(what, f"argmax must be in 0..{kh * kw - 1}", f"{lo}..{hi}"))


def argmax_cells(argmax: np.ndarray, geometry: ConvGeometry,
                 what: str = "maxpool2d_backward") -> tuple[np.ndarray, np.ndarray]:
    """The input (row, column) of each window's argmax (an (N, C, Ho, Wo) array of window
    indices a·kw + b, as :func:`maxpool2d` returns them); ``ValueError`` (one line, naming
    ``what``) where an index is outside the window or names a padded cell."""
    kw = geometry.kernel[1]
    arg = np.asarray(argmax)
    _argmax_range(arg, geometry.kernel, what)
    rows = (np.arange(geometry.ho) * geometry.stride[0] - geometry.padding[0])[:, None] + arg // kw
    cols = (np.arange(geometry.wo) * geometry.stride[1] - geometry.padding[2])[None, :] + arg % kw
    h, w = geometry.input
    if arg.size and (rows.min() < 0 or cols.min() < 0 or rows.max() >= h or cols.max() >= w):
        raise ValueError(msg(what, "argmax names a padded cell (not a maxpool2d argmax)"))
    return rows, cols


#: the stream index of an average's division (its Mac uses ``seed`` itself)
_DIV_STREAM = 1 << 32


def _window_seed(seed: int | None, k: int) -> int | None:
    """The seed of the k-th window's rounding (distinct, reproducible streams per window)."""
    if seed is None:
        return None
    return int(np.random.SeedSequence([seed & ((1 << 64) - 1), k]).generate_state(1, np.uint64)[0])


def maxpool2d_backward(grad: object, argmax: np.ndarray, input_shape: tuple[int, ...],
                       size: object = 2, *, stride: object = None, padding: object = 0,
                       fmt: Fixed | Float | str | None = None,
                       seed: int | None = None) -> np.ndarray:
    """Route ``grad`` (N, C, Ho, Wo) to the argmax position of each window of
    :func:`maxpool2d` (same ``size``, ``stride``, ``padding``); positions no argmax names
    (and rows/columns the floor cuts off) get +0.

    Non-overlapping windows (stride >= size) route exactly (no rounding; ``fmt`` is unused).
    Overlapping windows can route several gradients to one position: they are summed there
    in row-major output (window) order — the first routed value as it is, each further one
    added with one rounding ``R_fmt(acc + g)`` (``fmt`` required; ``seed`` keys a stochastic
    ``fmt``, with a distinct stream per window).
    """
    ga = _operand(grad, "grad")
    arg = np.asarray(argmax)
    if ga.shape != arg.shape or ga.ndim != 4:
        raise ValueError(msg("maxpool2d_backward", "grad and argmax must have one (N, C, Ho, Wo)"
                             " shape", f"{ga.shape}, {arg.shape}"))
    try:
        shape = tuple(int(v) for v in input_shape)
    except (TypeError, ValueError):
        raise ValueError(msg("input_shape", "must be (N, C, H, W) ints", input_shape)) from None
    g = pool_geometry(shape, size, stride, padding, "maxpool2d_backward")
    n, c, ho, wo = ga.shape
    if shape[:2] != (n, c) or g.out != (ho, wo):
        raise ValueError(msg("maxpool2d_backward", "input_shape must pool to grad's shape",
                             f"{shape} with size {size}, stride {stride} vs {ga.shape}"))
    arg = np.ascontiguousarray(arg, dtype=np.int64)
    kw = g.kernel[1]
    sh, sw = g.stride
    pt, pl = g.padding[0], g.padding[2]
    if not g.overlapping():
        if any(g.padding):
            argmax_cells(arg, g)
        else:  # unpadded windows lie inside the input: the index range is the whole check
            _argmax_range(arg, g.kernel, "maxpool2d_backward")
        out = np.empty(shape, np.float64)  # the kernel zeroes it
        _kp.maxpool_backward(ga, arg, kw, sh, sw, pt, pl, out)
        return out
    rows, cols = argmax_cells(arg, g)
    out = np.zeros(shape, np.float64)
    if fmt is None:
        raise ValueError(msg("fmt", "required when pool windows overlap (stride < size): "
                             "routed gradients are summed in it", None))
    f = as_format(fmt)
    flat = out.reshape(n * c, -1)
    hit = np.zeros(flat.shape, bool)
    lane = np.arange(n * c)
    pos = (rows * shape[3] + cols).reshape(n * c, ho * wo)
    gv = ga.reshape(n * c, ho * wo)
    for k in range(ho * wo):  # windows in row-major output order; vectorised over (n, c)
        p, v = pos[:, k], gv[:, k]
        first = ~hit[lane, p]
        cur = flat[lane, p]
        flat[lane, p] = np.where(first, v, add(cur, v, f, seed=_window_seed(seed, k)))
        hit[lane, p] = True
    return out


def _div_count(s: np.ndarray, count: int, fmt: Fixed | Float, seed: int | None) -> np.ndarray:
    """``R_fmt(s / count)``: one correct rounding of the exact quotient into ``fmt``.

    The double quotient q = s/count (round to nearest) is moved to the odd neighbour on the
    side of the exact quotient where it is inexact (the sign of s − q·count, computed
    exactly by Dekker's product); rounding that round-to-odd double into a format with at
    most 51 significant bits over its range is the correct rounding of the exact quotient
    (a stochastic ``fmt`` draws its bits against that double). ``fmt`` beyond that (float
    mantissa > 50 bits other than IEEE binary64 round-to-nearest-even, or a fixed format
    whose quotients exceed 2^(50 − F)) is refused.
    """
    if count == 1:
        return quantize(s, fmt, seed=seed)
    with np.errstate(all="ignore"):
        q = s / count
    if isinstance(fmt, Float) and fmt.man_bits > 50:
        binary64 = (fmt.exp_bits == 11 and fmt.rounding is FloatRounding.RNE and fmt.subnormals
                    and fmt.special is Special.IEEE)
        if not binary64:
            raise ValueError(msg("out", "a rounded average needs at most 50 mantissa bits "
                                 "(or IEEE float64)", str(fmt)))
        return q
    fin = np.isfinite(s) & (s != 0)
    if isinstance(fmt, Fixed) and fin.any() and np.abs(q[fin]).max() >= 2.0 ** (50 - fmt.frac_bits):
        raise ValueError(msg("out", "a rounded average's quotients must stay below "
                             f"2^{50 - fmt.frac_bits} in this fixed format", str(fmt)))
    if fin.any():
        sf, qf = s[fin], q[fin]
        scale = np.where(np.abs(sf) < 2.0**-400, 2.0**600,
                         np.where(np.abs(sf) > 2.0**900, 2.0**-100, 1.0))
        ss, qs = sf * scale, qf * scale  # exact power-of-two scalings
        c = float(count)
        p = qs * c
        qh = qs * _SPLIT
        qh = qh - (qh - qs)
        ql = qs - qh
        ch = c * _SPLIT
        ch = ch - (ch - c)
        cl = c - ch
        pe = ((qh * ch - p) + qh * cl + ql * ch) + ql * cl  # qs·c = p + pe exactly
        r = (ss - p) - pe  # sign of s − q·count (ss − p exact: Sterbenz)
        even = (qf.view(np.uint64) & np.uint64(1)) == 0
        move = (r != 0) & even
        qf = np.where(move, np.nextafter(qf, np.where(r > 0, np.inf, -np.inf)), qf)
        q = q.copy()
        q[fin] = qf
    return quantize(q, fmt, seed=seed)


def avgpool2d(x: object, size: object, mac: Mac, out: Fixed | Float | str, *,
              stride: object = None, padding: object = 0, seed: int | None = None,
              nan: NanPolicy = "raise") -> np.ndarray:
    """Average pooling: ``y = R_out(S / (kh·kw))`` with S the window sum through ``mac``.

    The window (``size`` int or pair, ``stride`` None = size, zero ``padding`` at most half
    the window, as :func:`conv_geometry`) sums its kh·kw terms ``x·1`` through ``mac`` in
    row-major window order (``mac.mul`` rounds each term, the accumulator every addition, as
    for :func:`matmul`; S is the Mac's result, in ``mac.out`` when set); padded cells enter as
    +0.0 terms and count in the divisor (torch's default ``count_include_pad=True``: the
    divisor is a constant of the layer, as a hardware pool multiplies by a constant). Then
    one correctly rounded division by kh·kw into ``out`` (the activation format) — the
    exact value S·(1/k²) rounded once, not S times a rounded 1/k². ``seed`` keys stochastic
    rounding: the Mac's with ``seed``, the division's with a stream derived from it.
    """
    xa = _operand(x, "x")
    g = pool_geometry(xa.shape, size, stride, padding, "avgpool2d")
    f = as_format(out)
    n, c, h, w = xa.shape
    kh, kw = g.kernel
    cols = im2col(xa.reshape(n * c, 1, h, w), kh, kw, g.stride, g.padding)
    s = _mac_matmul(cols, np.ones((kh * kw, 1)), mac, seed, None, nan, ("x", "1"))
    return _div_count(s, kh * kw, f, _window_seed(seed, _DIV_STREAM)).reshape(n, c, *g.out)


def avgpool2d_backward(grad: object, input_shape: tuple[int, ...], size: object,
                       out: Fixed | Float | str, *, stride: object = None, padding: object = 0,
                       mac: Mac | None = None, seed: int | None = None) -> np.ndarray:
    """Input gradient of :func:`avgpool2d`: each window's share ``d = R_out(g / (kh·kw))``
    (one correctly rounded division into ``out``, the gradient format) goes to each of its
    input cells (padded cells drop theirs).

    Non-overlapping windows (stride >= size): each input cell receives its window's d
    exactly (cells no window covers get +0; ``mac`` is unused). Overlapping windows: the
    shares meeting at a cell are summed through ``mac`` (required) as the transposed conv of
    d with a ones kernel, i.e. :func:`conv2d_grad_input` per channel with its stated order
    (windows in row-major order, gaps of the zero-dilated plane entering as +0.0 terms).
    """
    ga = _operand(grad, "grad")
    try:
        shape = tuple(int(v) for v in input_shape)
    except (TypeError, ValueError):
        raise ValueError(msg("input_shape", "must be (N, C, H, W) ints", input_shape)) from None
    g = pool_geometry(shape, size, stride, padding, "avgpool2d_backward")
    if ga.ndim != 4 or ga.shape != (*shape[:2], *g.out):
        raise ValueError(msg("avgpool2d_backward", "input_shape must pool to grad's shape",
                             f"{shape} with size {size}, stride {stride} vs {ga.shape}"))
    f = as_format(out)
    kh, kw = g.kernel
    n, c, h, w = shape
    d = _div_count(ga, kh * kw, f, _window_seed(seed, _DIV_STREAM))
    if g.overlapping():
        if mac is None:
            raise ValueError(msg("mac", "required when pool windows overlap (stride < size): "
                                 "shares are summed through it", None))
        dx = conv2d_grad_input(d.reshape(n * c, 1, *g.out), np.ones((1, 1, kh, kw)), (h, w),
                               mac, stride=g.stride, padding=g.padding, seed=seed)
        return dx.reshape(shape)
    t, b, l_, r = g.padding
    sh, sw = g.stride
    big = np.zeros((n, c, h + t + b + sh * g.ho, w + l_ + r + sw * g.wo), np.float64)
    for a in range(kh):  # non-overlapping: every cell is written at most once
        for e in range(kw):
            big[:, :, a:a + sh * g.ho:sh, e:e + sw * g.wo:sw] = d
    return np.ascontiguousarray(big[:, :, t:t + h, l_:l_ + w])
