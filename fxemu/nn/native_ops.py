"""Native (float32 / float64) layer operations of the generic network: conv2d, pools, linear,
forward and backward, for the ``native`` backend.

Every tensor is computed in ``dtype`` (float32 or float64) and returned in it. Products go
through BLAS (numpy ``matmul``, its own summation order — not bit-reproducible across BLAS
builds, as the native backend documents); im2col / col2im and the pools are Numba kernels
(:mod:`fxemu.nn._kernels.layers_native`) whose threads own whole samples, so their results do
not depend on the thread count. Geometry (stride, zero padding as an int, a pair, a 4-tuple
or ``"same"``) is :func:`fxemu.arith.conv_geometry`; pools take ``stride=None`` as the window
size and pad as torch (max: padded cells never win; avg: padded cells count,
``count_include_pad=True``). Results agree with ``torch.nn.functional`` to rounding (tested:
float64 within 1e-10 relative, float32 to float32 tolerance).
"""

from __future__ import annotations

import threading

import numpy as np

from .._errors import msg
from .._kernels import pool as _kp
from ..arith import ConvGeometry, argmax_cells, conv_geometry, pool_geometry
from ._kernels import layers_native as _kl

__all__ = ["avgpool2d", "avgpool2d_backward", "conv2d", "conv2d_backward", "linear",
           "linear_backward", "maxpool2d", "maxpool2d_backward"]


def _dt(dtype: object) -> np.dtype:
    d = np.dtype(dtype)
    if d not in (np.float32, np.float64):
        raise ValueError(msg("dtype", "must be float32 or float64", str(d)))
    return d


def _c(a: object, d: np.dtype) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=d)


def _conv_geo(x: np.ndarray, w: np.ndarray, stride: object, padding: object) -> ConvGeometry:
    if x.ndim != 4 or w.ndim != 4 or x.shape[1] != w.shape[1] or w.size == 0:
        raise ValueError(msg("conv2d", "needs x (N, C, H, W) and a nonempty w (F, C, Kh, Kw) "
                             "with equal C", f"{x.shape} and {w.shape}"))
    return conv_geometry(x.shape[2], x.shape[3], w.shape[2], w.shape[3], stride, padding)


_SCRATCH = threading.local()


def _scratch(shape: tuple[int, ...], dtype: np.dtype, slot: str) -> np.ndarray:
    """A per-thread scratch array for ``slot`` (reused while its shape and dtype stay: a
    fresh multi-megabyte array per call costs more in page faults than the kernel that fills
    it)."""
    cache = getattr(_SCRATCH, "arrays", None)
    if cache is None:
        cache = _SCRATCH.arrays = {}
    a = cache.get(slot)
    if a is None or a.shape != shape or a.dtype != dtype:
        a = cache[slot] = np.empty(shape, dtype)
    return a


def _cols(x: np.ndarray, g: ConvGeometry) -> np.ndarray:
    """(N, C·Kh·Kw, Ho·Wo) patches of x (zero padding), column k = (c·Kh + a)·Kw + b, in a
    per-thread scratch array (valid until the next call)."""
    n, c = x.shape[:2]
    kh, kw = g.kernel
    cols = _scratch((n, c * kh * kw, g.ho * g.wo), x.dtype, "cols")
    _kl.im2col(x, kh, kw, *g.stride, g.padding[0], g.padding[2], g.ho, g.wo, cols)
    return cols


def conv2d(x: object, w: object, b: object | None, stride: object = 1, padding: object = 0,
           dtype: object = np.float32) -> np.ndarray:
    """Cross-correlation (N, C, H, W) × (F, C, Kh, Kw) (+ bias (F,) or None) → (N, F, Ho, Wo),
    as ``torch.nn.functional.conv2d``: per sample the BLAS product ``w (F, C·Kh·Kw) @ cols``
    of the zero-padded patches, then the bias added."""
    d = _dt(dtype)
    xa, wa = _c(x, d), _c(w, d)
    g = _conv_geo(xa, wa, stride, padding)
    f = wa.shape[0]
    y = np.matmul(wa.reshape(f, -1), _cols(xa, g))  # (N, F, Ho·Wo)
    if b is not None:
        y += _c(b, d).reshape(1, f, 1)
    return y.reshape(xa.shape[0], f, g.ho, g.wo)


def conv2d_backward(x: object, w: object, g: object, stride: object = 1, padding: object = 0,
                    dtype: object = np.float32, need_dx: bool = True,
                    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of :func:`conv2d` for the output gradient g (N, F, Ho, Wo): (dx or None when
    not ``need_dx``, dw (F, C, Kh, Kw), db (F,)). dw is the sum over n (numpy's pairwise sum)
    of the per-sample BLAS products ``g_n @ cols_nᵀ``; dx scatters ``wᵀ @ g_n`` back through
    col2im."""
    d = _dt(dtype)
    xa, wa, ga = _c(x, d), _c(w, d), _c(g, d)
    geo = _conv_geo(xa, wa, stride, padding)
    n, f = xa.shape[0], wa.shape[0]
    if ga.shape != (n, f, geo.ho, geo.wo):
        raise ValueError(msg("conv2d_backward", "g must have the conv output's shape",
                             f"{ga.shape} for {(n, f, geo.ho, geo.wo)}"))
    gm = ga.reshape(n, f, -1)
    cols = _cols(xa, geo)
    dw = np.matmul(gm, cols.transpose(0, 2, 1)).sum(axis=0).reshape(wa.shape)
    db = gm.sum(axis=(0, 2))
    dx = None
    if need_dx:
        dcols = np.matmul(wa.reshape(f, -1).T, gm,  # (N, C·Kh·Kw, Ho·Wo)
                          out=_scratch((n, wa[0].size, geo.ho * geo.wo), d, "dcols"))
        dx = np.empty(xa.shape, d)
        kh, kw = geo.kernel
        _kl.col2im(dcols, kh, kw, *geo.stride, geo.padding[0], geo.padding[2], geo.ho, geo.wo,
                   dx)
    return dx, dw, db


def maxpool2d(x: object, size: object = 2, stride: object = None, padding: object = 0,
              dtype: object = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Max pooling as :func:`fxemu.arith.maxpool2d` (same argmax: the first maximum in
    row-major window order, a NaN wins) in ``dtype``: (pooled, argmax)."""
    d = _dt(dtype)
    xa = _c(x, d)
    g = pool_geometry(xa.shape, size, stride, padding, "maxpool2d")
    out = np.empty((*xa.shape[:2], *g.out), d)
    arg = np.empty(out.shape, np.int64)
    _kp.maxpool_forward(xa, *g.kernel, *g.stride, g.padding[0], g.padding[2], out, arg)
    return out, arg


def maxpool2d_backward(g: object, argmax: np.ndarray, input_shape: tuple[int, ...],
                       size: object = 2, stride: object = None, padding: object = 0,
                       dtype: object = np.float32) -> np.ndarray:
    """Route g to each window's argmax; overlapping windows add in row-major window order."""
    d = _dt(dtype)
    ga = _c(g, d)
    shape = tuple(int(v) for v in input_shape)
    geo = pool_geometry(shape, size, stride, padding, "maxpool2d_backward")
    arg = np.ascontiguousarray(argmax, dtype=np.int64)
    if ga.shape != (*shape[:2], *geo.out) or arg.shape != ga.shape:
        raise ValueError(msg("maxpool2d_backward", "g and argmax must have the pooled shape",
                             f"{ga.shape}, {arg.shape} for input {shape}"))
    argmax_cells(arg, geo)  # every index names an input cell of its window
    kw = geo.kernel[1]
    dx = np.empty(shape, d)
    args = (kw, *geo.stride, geo.padding[0], geo.padding[2], dx)
    if geo.overlapping():
        _kl.maxpool_backward_add(ga, arg, *args)
    else:
        _kp.maxpool_backward(ga, arg, *args)
    return dx


def avgpool2d(x: object, size: object = 2, stride: object = None, padding: object = 0,
              dtype: object = np.float32) -> np.ndarray:
    """Average pooling (window sum in row-major order, divided by kh·kw; padded cells count as
    zeros, torch's ``count_include_pad=True``)."""
    d = _dt(dtype)
    xa = _c(x, d)
    g = pool_geometry(xa.shape, size, stride, padding, "avgpool2d")
    out = np.empty((*xa.shape[:2], *g.out), d)
    kh, kw = g.kernel
    _kl.avgpool_forward(xa, kh, kw, *g.stride, g.padding[0], g.padding[2], d.type(kh * kw), out)
    return out


def avgpool2d_backward(g: object, input_shape: tuple[int, ...], size: object = 2,
                       stride: object = None, padding: object = 0,
                       dtype: object = np.float32) -> np.ndarray:
    """Input gradient of :func:`avgpool2d`: g / (kh·kw) added to every input cell of its
    window (row-major window order)."""
    d = _dt(dtype)
    ga = _c(g, d)
    shape = tuple(int(v) for v in input_shape)
    geo = pool_geometry(shape, size, stride, padding, "avgpool2d_backward")
    if ga.shape != (*shape[:2], *geo.out):
        raise ValueError(msg("avgpool2d_backward", "g must have the pooled shape",
                             f"{ga.shape} for input {shape}"))
    dx = np.empty(shape, d)
    kh, kw = geo.kernel
    _kl.avgpool_backward(ga, kh, kw, *geo.stride, geo.padding[0], geo.padding[2],
                         d.type(kh * kw), dx)
    return dx


def linear(x: object, w: object, b: object | None, dtype: object = np.float32) -> np.ndarray:
    """Dense layer ``x (N, I) @ w (O, I)ᵀ + b (O,)`` (BLAS), as ``torch.nn.functional.linear``."""
    d = _dt(dtype)
    xa, wa = _c(x, d), _c(w, d)
    if xa.ndim != 2 or wa.ndim != 2 or xa.shape[1] != wa.shape[1]:
        raise ValueError(msg("linear", "needs x (N, I) and w (O, I)", f"{xa.shape}, {wa.shape}"))
    y = xa @ wa.T
    if b is not None:
        y += _c(b, d)
    return y


def linear_backward(x: object, w: object, g: object, dtype: object = np.float32,
                    need_dx: bool = True) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of :func:`linear` for g (N, O): (dx = g @ w or None, dw = gᵀ @ x,
    db = Σ_n g)."""
    d = _dt(dtype)
    xa, wa, ga = _c(x, d), _c(w, d), _c(g, d)
    if xa.ndim != 2 or wa.ndim != 2 or xa.shape[1] != wa.shape[1]:
        raise ValueError(msg("linear_backward", "needs x (N, I) and w (O, I)",
                             f"{xa.shape}, {wa.shape}"))
    if ga.shape != (xa.shape[0], wa.shape[0]):
        raise ValueError(msg("linear_backward", "g must be (N, O)", f"{ga.shape}"))
    return (ga @ wa if need_dx else None), ga.T @ xa, ga.sum(axis=0)
