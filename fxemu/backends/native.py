"""Native backend: numpy/BLAS in float32 or float64, vectorised."""

from __future__ import annotations

import numpy as np

from .._errors import msg
from ..nn import native_ops as _no
from ..nn._kernels import nn_native as _kn
from ..policy import Policy
from .base import Backend


class NativeBackend(Backend):
    """Every tensor in ``policy.native_dtype``; products by BLAS (its own summation order),
    the layers by :mod:`fxemu.nn.native_ops`; the founding network's conv → ReLU → max pool
    block by fused kernels (summation order in :mod:`fxemu.nn._kernels.nn_native`).
    Per-layer overrides are refused (one dtype for every layer).

    Activations and gradients stay in ``policy.native_dtype`` between calls (float32 arrays
    for a float32 policy); master weights are float64 arrays holding values of that dtype, and
    every weight is rounded to the dtype where it is read.
    """

    name = "native"

    def __init__(self, policy: Policy) -> None:
        super().__init__(policy)
        if policy.native_dtype not in ("float32", "float64"):
            raise ValueError(msg("native backend", "needs a float32 or float64 policy",
                                 policy.name, "use backend 'emulated' for other formats"))
        if policy.layers:
            raise ValueError(msg("native backend", "runs one dtype for every layer: per-layer "
                                 "overrides need backend 'emulated'", sorted(policy.layers)))
        self.dtype = np.dtype(policy.native_dtype)

    def _c(self, a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a, dtype=self.dtype)

    def input(self, x, prec=None):
        return self._c(x)

    # -- conv ---------------------------------------------------------------------------------
    def conv2d(self, x, w, b, layer, prec):
        z, cols = _no.conv2d(x, w, b, layer.strides, layer.pads, self.dtype, keep_cols=True)
        return z, (x, w, b is not None, layer, cols)

    def conv2d_backward(self, ctx, dz, prec, need_dx):
        x, w, bias, layer, cols = ctx
        dx, dw, db = _no.conv2d_backward(x, w, dz, layer.strides, layer.pads, self.dtype,
                                         need_dx, cols)
        return dx, dw, db if bias else None

    def conv_relu_pool(self, x, w, b, conv, pool, prec):
        """Fused (:mod:`fxemu.nn._kernels.nn_native`) for the founding shapes (28×28 images,
        12 filters): the N×12×26×26 conv output is never stored."""
        if x.ndim != 4 or x.shape[1:] != (1, 28, 28) or w.shape != (12, 1, 3, 3):
            return super().conv_relu_pool(x, w, b, conv, pool, prec)
        x = self._c(x)
        n = x.shape[0]
        x = x.reshape(n, 28, 28)
        h = np.empty((n, 12, _kn.CELLS), self.dtype)
        pos = np.empty((n, 12, _kn.CELLS), np.uint16)
        _kn.conv_relu_pool_forward(x, self._c(w).reshape(12, 9), self._c(b), _kn.CELL_BASE, h,
                                   pos)
        return h.reshape(n, 12, 13, 13), ("fused", x, h, pos)

    def conv_relu_pool_backward(self, ctx, dh, prec):
        if ctx[0] != "fused":
            return super().conv_relu_pool_backward(ctx, dh, prec)
        _, x, h, pos = ctx
        if dh.size != h.size:
            raise ValueError(msg("conv_relu_pool_backward", "dh must have the pooled shape",
                                 f"{dh.shape} for {h.shape}"))
        dh = self._c(dh).reshape(h.shape)
        dwb = np.empty((12, 10), self.dtype)
        _kn.conv_relu_pool_backward(x, h, pos, dh, np.empty((h.shape[0], 12, 10), self.dtype),
                                    dwb)
        return np.ascontiguousarray(dwb[:, :9]).reshape(12, 1, 3, 3), dwb[:, 9].copy()

    # -- linear ---------------------------------------------------------------------------------
    def linear(self, x, w, b, prec):
        return _no.linear(x, w, b, self.dtype), (x, w, b is not None)

    def linear_backward(self, ctx, dz, prec, need_dx):
        x, w, bias = ctx
        dx, dw, db = _no.linear_backward(x, w, dz, self.dtype, need_dx)
        return dx, dw, db if bias else None

    # -- relu ---------------------------------------------------------------------------------
    def relu_backward(self, ctx, dh):
        """``dh`` where the ReLU's input was > 0, else +0 (one parallel pass, no mask array)."""
        return _no.relu_backward(ctx, dh, self.dtype)

    # -- pools ----------------------------------------------------------------------------------
    def maxpool2d(self, x, layer):
        h, arg = _no.maxpool2d(x, layer.window, layer.strides, layer.pads, self.dtype)
        return h, (arg, x.shape, layer)

    def maxpool2d_backward(self, ctx, dh, prec):
        arg, shape, layer = ctx
        return _no.maxpool2d_backward(dh, arg, shape, layer.window, layer.strides, layer.pads,
                                      self.dtype)

    def avgpool2d(self, x, layer, prec):
        return _no.avgpool2d(x, layer.window, layer.strides, layer.pads, self.dtype), \
            (x.shape, layer)

    def avgpool2d_backward(self, ctx, dh, prec):
        shape, layer = ctx
        return _no.avgpool2d_backward(dh, shape, layer.window, layer.strides, layer.pads,
                                      self.dtype)

    # -- gradients and the update --------------------------------------------------------------
    def grad(self, g, prec=None):
        return self._c(g)

    def sgd(self, w, dw, v, lr, momentum, weight_decay, prec):
        t = self.dtype.type
        wc, d = self._c(w), self._c(dw)
        if weight_decay:
            d = d + t(weight_decay) * wc
        if momentum:
            v = d if v is None else t(momentum) * self._c(v) + d
            d = v
            v = v.astype(np.float64)
        return (wc - t(lr) * d).astype(np.float64), v

    def master(self, w, prec=None):
        return self._c(w).astype(np.float64)
