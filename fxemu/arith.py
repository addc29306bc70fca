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

import numpy as np

from . import lowering
from ._errors import msg
from ._kernels import codes as _c
from ._kernels import mac as _km
from ._kernels import mac_fast as _kmf
from ._kernels import pool as _kp
from .formats import Fixed, FixedOverflow, Float, FloatRounding, Mac
from .quantize import NanPolicy, as_format, check_nan_policy, quantize, reject_masked

__all__ = ["Mac", "add", "conv2d", "conv2d_grad_input", "conv2d_grad_weight", "dot", "fma",
           "matmul", "maxpool2d", "maxpool2d_backward", "mul", "sub"]


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
        if op in (_c.OP_ADD, _c.OP_SUB):
            y = b if op == _c.OP_ADD else -b
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
        if op == _c.OP_MUL:
            return p, ok
        s = p + c
        bb = s - p
        err2 = (p - (s - bb)) + (c - bb)
        return _zero_sum_sign(s, p, c, floor), ok & (err2 == 0) & np.isfinite(s)


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
    arrs = [_operand(x, f"operand {i}") for i, x in enumerate(xs)]
    try:
        arrs = np.broadcast_arrays(*arrs)
    except ValueError:
        shapes = " and ".join(str(np.shape(a)) for a in arrs)
        raise ValueError(msg("operands", "must broadcast together", shapes)) from None
    shape = arrs[0].shape
    flat = [daz(np.ascontiguousarray(a).reshape(-1), f) for a in arrs]
    while len(flat) < 3:
        flat.append(np.zeros_like(flat[0]))
    bits, key = lowering.sr_key(f, seed, sr_bits)
    # exact in double → one conversion (fast kernels); the rest → the exact engine. Both
    # draw stochastic bits from (key, element index), so the split does not change results.
    floor = isinstance(f, Float) and f.rounding is FloatRounding.RDN
    r, exact = _exact_double(op, *flat, floor=floor)
    out = quantize(r, f, seed=seed, sr_bits=sr_bits, nan="hls")
    rest = np.flatnonzero(~exact)
    if rest.size:
        sub = np.empty(rest.size, np.float64)
        _km.elementwise_kernel(op, *(v[rest].view(np.uint64) for v in flat), sub,
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
    lm, bits, key = lowering.lower_mac_call(mac, seed, sr_bits)
    # an FTZ multiplier (or, without one, an FTZ accumulator) reads subnormal operands as zero
    a = np.ascontiguousarray(daz(a, lm.first))
    b = np.ascontiguousarray(daz(b, lm.first))
    spans = (_span(a), _span(b))
    if nan == "raise" and lm.lacks_nan and (spans[0][3] or spans[1][3]):
        _refuse_nan(a, b, mac, names)
    path = lowering.mac_path(mac, lm, spans, key, bits)
    if path.kind == "int":
        res = _fixed_blas(a, b, path.fa, path.fb, path.sh_p, mac.acc) if path.blas else None
        if res is None and path.kernel is not None:
            out = np.empty((a.shape[0], b.shape[1]), np.int64)
            path.kernel(to_int(a, path.fa), to_int(b, path.fb), out, *path.args)
            res = out.astype(np.float64) * 2.0**-mac.acc.frac_bits
        if res is not None:
            return res if mac.out is None else quantize(res, mac.out)
    elif path.kind == "float":
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
    """``(M, K) @ (K, N)`` with every output reduced over k = 0…K-1 by ``mac``.

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


def im2col(x: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """Patches of NCHW ``x`` for a valid stride-1 kh×kw window: shape (N·Ho·Wo, C·kh·kw), the
    column index k = (c·kh + i)·kw + j."""
    n, c, h, w = x.shape
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
    # (N, C, Ho, Wo, kh, kw) -> (N, Ho, Wo, C, kh, kw)
    return np.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5)).reshape(
        n * (h - kh + 1) * (w - kw + 1), c * kh * kw)


def conv2d(x: object, w: object, mac: Mac, *, seed: int | None = None,
           sr_bits: int | None = None, nan: NanPolicy = "raise") -> np.ndarray:
    """Valid, stride-1 cross-correlation: (N, C, H, W) × (F, C, Kh, Kw) → (N, F, Ho, Wo).

    Each output sums over k = (c·Kh + kh)·Kw + kw in that order through ``mac``. A kernel
    with a zero dimension is refused (``ValueError``).

    ``nan``: where the IEEE result of an output is NaN (a NaN operand, ``inf·0``, ``inf - inf``)
    and a format of ``mac`` (mul, acc or out) has no NaN, ``"raise"`` (default) raises
    ``ValueError`` naming the operand, as :func:`fxemu.quantize` does; ``"hls"`` gives what
    the vendor types compute (a fixed accumulator reads NaN as ap_fixed does: 0).
    """
    return _conv2d(_operand(x, "x"), _operand(w, "w"), mac, seed, sr_bits, nan, ("x", "w"))


def _conv2d(xa: np.ndarray, wa: np.ndarray, mac: Mac, seed: int | None, sr_bits: int | None,
            nan: str, names: tuple[str, str]) -> np.ndarray:
    if xa.ndim != 4 or wa.ndim != 4 or xa.shape[1] != wa.shape[1]:
        raise ValueError(msg("conv2d", "needs x (N, C, H, W) and w (F, C, Kh, Kw) with equal C",
                             f"{xa.shape} and {wa.shape}"))
    n, c, h, wd = xa.shape
    f, _, kh, kw = wa.shape
    if wa.size == 0:
        raise ValueError(msg(names[1], "the conv kernel (F, C, Kh, Kw) must have no zero "
                             "dimension", wa.shape))
    if kh > h or kw > wd:
        raise ValueError(msg("conv2d", "kernel larger than the input",
                             f"{wa.shape} on {xa.shape}"))
    cols = im2col(xa, kh, kw)
    res = _mac_matmul(cols, wa.reshape(f, c * kh * kw).T, mac, seed, sr_bits, nan, names)
    ho, wo = h - kh + 1, wd - kw + 1
    return np.ascontiguousarray(res.reshape(n, ho, wo, f).transpose(0, 3, 1, 2))


def conv2d_grad_weight(x: object, g: object, kernel_size: tuple[int, int], mac: Mac, *,
                       seed: int | None = None, sr_bits: int | None = None,
                       nan: NanPolicy = "raise") -> np.ndarray:
    """Weight gradient of :func:`conv2d`: ``dw[f,c,kh,kw] = sum x[n,c,i+kh,j+kw]·g[n,f,i,j]``.

    x is (N, C, H, W), g the output gradient (N, F, Ho, Wo); returns (F, C, Kh, Kw). Each
    output reduces over k = (n·Ho + i)·Wo + j in that order through ``mac`` (length N·Ho·Wo,
    86 528 for the reference network at batch 128). A kernel size or gradient with a zero
    dimension is refused (``ValueError``).

    ``nan``: where the IEEE result of an output is NaN (a NaN operand, ``inf·0``, ``inf - inf``)
    and a format of ``mac`` (mul, acc or out) has no NaN, ``"raise"`` (default) raises
    ``ValueError`` naming the operand, as :func:`fxemu.quantize` does; ``"hls"`` gives what
    the vendor types compute (a fixed accumulator reads NaN as ap_fixed does: 0).
    """
    xa, ga = _operand(x, "x"), _operand(g, "g")
    kh, kw = kernel_size
    if min(kh, kw) < 1 or (ga.ndim == 4 and ga.shape[1] == 0) or (xa.ndim == 4
                                                                and xa.shape[1] == 0):
        raise ValueError(msg("kernel_size", "the conv kernel must have no zero dimension",
                             f"{kernel_size} for x {xa.shape}, g {ga.shape}"))
    if xa.ndim != 4 or ga.ndim != 4 or xa.shape[0] != ga.shape[0] \
            or ga.shape[2:] != (xa.shape[2] - kh + 1, xa.shape[3] - kw + 1):
        raise ValueError(msg("conv2d_grad_weight", "needs x (N, C, H, W) and g (N, F, H-Kh+1, "
                             "W-Kw+1)", f"{xa.shape}, {ga.shape}, kernel {kernel_size}"))
    c = xa.shape[1]
    f = ga.shape[1]
    cols = im2col(xa, kh, kw)  # (N·Ho·Wo, C·Kh·Kw), rows in (n, i, j) order
    gm = np.ascontiguousarray(ga.transpose(1, 0, 2, 3)).reshape(f, -1)  # (F, N·Ho·Wo)
    res = _mac_matmul(gm, cols, mac, seed, sr_bits, nan, ("g", "x"))
    return res.reshape(f, c, kh, kw)


def conv2d_grad_input(g: object, w: object, input_hw: tuple[int, int], mac: Mac, *,
                      seed: int | None = None, sr_bits: int | None = None,
                      nan: NanPolicy = "raise") -> np.ndarray:
    """Input gradient of :func:`conv2d`: the full correlation of g with the flipped kernels.

    ``dx[n, c, y, x] = sum g[n, f, y-kh, x-kw]·w[f, c, kh, kw]`` over the terms inside g; g is
    (N, F, Ho, Wo), w (F, C, Kh, Kw); returns (N, C, H, W). Each output reduces over
    k = (f·Kh + kh')·Kw + kw' with kh' = Kh-1-kh, kw' = Kw-1-kw (the flipped kernel's order);
    terms outside g are exact zeros, which leave every accumulator unchanged. A kernel with a
    zero dimension is refused (``ValueError``).

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
    h, wd = input_hw
    if ga.shape[2:] != (h - kh + 1, wd - kw + 1):
        raise ValueError(msg("conv2d_grad_input", "g's spatial size must be H-Kh+1, W-Kw+1",
                             f"{ga.shape} for input {input_hw}"))
    gp = np.pad(ga, ((0, 0), (0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1)))
    wf = np.ascontiguousarray(wa[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))  # (C, F, Kh, Kw)
    return _conv2d(gp, wf, mac, seed, sr_bits, nan, ("g", "w"))


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
