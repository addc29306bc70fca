"""Native backend: numpy/BLAS in float32 or float64, vectorised."""

from __future__ import annotations

import numpy as np

from .._errors import msg
from ..nn._kernels import nn_native as _kn
from ..policy import Policy
from .base import Backend


def _windows(x: np.ndarray, k: tuple[int, int], s: tuple[int, int]) -> np.ndarray:
    """(N, C, Ho, Wo, kh, kw) strided view of the windows of x (already padded)."""
    win = np.lib.stride_tricks.sliding_window_view(x, k, axis=(2, 3))
    return win[:, :, ::s[0], ::s[1]]


def _scatter(dxp: np.ndarray, parts: np.ndarray, s: tuple[int, int]) -> None:
    """Add parts (N, C, Ho, Wo, kh, kw) into the padded input gradient dxp at each window
    cell, tap by tap in row-major order."""
    ho, wo, kh, kw = parts.shape[2:]
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i:i + s[0] * (ho - 1) + 1:s[0], j:j + s[1] * (wo - 1) + 1:s[1]] += \
                parts[:, :, :, :, i, j]


class NativeBackend(Backend):
    """Every tensor in ``policy.native_dtype``; products by BLAS (its own summation order);
    the founding network's conv → ReLU → max pool block by fused kernels (summation order in
    :mod:`fxemu.nn._kernels.nn_native`). Per-layer overrides must keep the native dtype.

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

    # -- conv ----------------------------------------------------------------------------------
    def _cols(self, x, layer) -> tuple[np.ndarray, tuple[int, int]]:
        t, b, left, r = layer.pads
        xp = np.pad(self._c(x), ((0, 0), (0, 0), (t, b), (left, r))) if t or b or left or r \
            else self._c(x)
        win = _windows(xp, layer.kernel, layer.strides)  # (N, C, Ho, Wo, kh, kw)
        n, c, ho, wo, kh, kw = win.shape
        cols = np.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5)).reshape(
            n * ho * wo, c * kh * kw)
        return cols, (ho, wo)

    def conv2d(self, x, w, b, layer, prec):
        n = x.shape[0]
        cols, (ho, wo) = self._cols(x, layer)
        f = w.shape[0]
        z = cols @ self._c(w).reshape(f, -1).T
        if b is not None:
            z += self._c(b)
        z = np.ascontiguousarray(z.reshape(n, ho, wo, f).transpose(0, 3, 1, 2))
        return z, (x, w, cols, b is not None, layer)

    def conv2d_backward(self, ctx, dz, prec, need_dx):
        x, w, cols, bias, layer = ctx
        f = w.shape[0]
        dzm = self._c(dz).transpose(0, 2, 3, 1).reshape(-1, f)  # (N·Ho·Wo, F), (n, i, j) rows
        dw = (dzm.T @ cols).reshape(w.shape)
        db = dzm.sum(axis=0, dtype=self.dtype) if bias else None
        dx = None
        if need_dx:
            n, c, h, wd = x.shape
            ho, wo = dz.shape[2:]
            kh, kw = layer.kernel
            t, b, left, r = layer.pads
            parts = (dzm @ self._c(w).reshape(f, -1)).reshape(n, ho, wo, c, kh, kw)
            dxp = np.zeros((n, c, h + t + b, wd + left + r), self.dtype)
            _scatter(dxp, parts.transpose(0, 3, 1, 2, 4, 5), layer.strides)
            dx = np.ascontiguousarray(dxp[:, :, t:t + h, left:left + wd])
        return dx, dw, db

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

    # -- linear --------------------------------------------------------------------------------
    def linear(self, x, w, b, prec):
        z = self._c(x) @ self._c(w).T
        if b is not None:
            z += self._c(b)
        return z, (x, w, b is not None)

    def linear_backward(self, ctx, dz, prec, need_dx):
        x, w, bias = ctx
        g = self._c(dz)
        dw = g.T @ self._c(x)
        db = g.sum(axis=0, dtype=self.dtype) if bias else None
        dx = g @ self._c(w) if need_dx else None
        return dx, dw, db

    # -- pools ---------------------------------------------------------------------------------
    def _padded(self, x, layer, fill: float) -> np.ndarray:
        ph, pw = layer.pads
        x = self._c(x)
        if not (ph or pw):
            return x
        return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)

    def maxpool2d(self, x, layer):
        win = _windows(self._padded(x, layer, -np.inf), layer.window, layer.strides)
        n, c, ho, wo, kh, kw = win.shape
        flat = win.reshape(n, c, ho, wo, kh * kw)
        arg = flat.argmax(axis=-1)  # the first maximum (a NaN counts as the maximum)
        h = np.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]
        return np.ascontiguousarray(h), (arg, x.shape, layer)

    def maxpool2d_backward(self, ctx, dh, prec):
        arg, shape, layer = ctx
        kh, kw = layer.window
        dh = self._c(dh)
        onehot = (arg[..., None] == np.arange(kh * kw)).reshape(*arg.shape, kh, kw)
        parts = np.where(onehot, dh[..., None, None], self.dtype.type(0))
        return self._unpad(parts, shape, layer)

    def _unpad(self, parts, shape, layer) -> np.ndarray:
        ph, pw = layer.pads
        n, c, h, w = shape
        dxp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), self.dtype)
        _scatter(dxp, parts, layer.strides)
        return np.ascontiguousarray(dxp[:, :, ph:ph + h, pw:pw + w])

    def avgpool2d(self, x, layer, prec):
        win = _windows(self._padded(x, layer, 0.0), layer.window, layer.strides)
        kh, kw = layer.window
        h = win.sum(axis=(-2, -1), dtype=self.dtype) * self.dtype.type(1.0 / (kh * kw))
        return np.ascontiguousarray(h), (x.shape, layer)

    def avgpool2d_backward(self, ctx, dh, prec):
        shape, layer = ctx
        kh, kw = layer.window
        g = self._c(dh) * self.dtype.type(1.0 / (kh * kw))
        parts = np.broadcast_to(g[..., None, None], (*g.shape, kh, kw))
        return self._unpad(parts, shape, layer)

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
