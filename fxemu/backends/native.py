"""Native backend: numpy/BLAS in float32 or float64, vectorised (the founding model done right)."""

from __future__ import annotations

import numpy as np

from .._errors import msg
from ..arith import im2col
from ..nn._kernels import nn_native as _kn
from ..policy import Policy
from .base import Backend


class NativeBackend(Backend):
    """Every tensor in ``policy.native_dtype``; dense products by BLAS (its own summation
    order); the conv → ReLU → max pool block by fused kernels (summation order in
    :mod:`fxemu.nn._kernels.nn_native`).

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
        self.dtype = np.dtype(policy.native_dtype)

    def _c(self, a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a, dtype=self.dtype)

    def input(self, x):
        return self._c(x)

    def conv_relu_pool(self, x, w, b):
        """Fused (:mod:`fxemu.nn._kernels.nn_native`): the N×12×26×26 conv output is never
        stored; the context is the images, the pooled activations and the flat image index of
        each window's argmax."""
        x = self._c(x)
        if x.ndim != 4 or x.shape[1:] != (1, 28, 28) or w.shape != (12, 1, 3, 3) \
                or b.shape != (12,):
            raise ValueError(msg("conv_relu_pool", "needs x (N, 1, 28, 28), w (12, 1, 3, 3), "
                                 "b (12,)", f"{x.shape}, {w.shape}, {b.shape}"))
        n = x.shape[0]
        x = x.reshape(n, 28, 28)
        h = np.empty((n, 12, _kn.CELLS), self.dtype)
        pos = np.empty((n, 12, _kn.CELLS), np.uint16)
        _kn.conv_relu_pool_forward(x, self._c(w).reshape(12, 9), self._c(b), _kn.CELL_BASE, h,
                                   pos)
        return h.reshape(n, 12, 13, 13), (x, h, pos)

    def conv_relu_pool_backward(self, ctx, dh):
        x, h, pos = ctx
        if dh.size != h.size:
            raise ValueError(msg("conv_relu_pool_backward", "dh must have the pooled shape",
                                 f"{dh.shape} for {h.shape}"))
        dh = self._c(dh).reshape(h.shape)
        dwb = np.empty((12, 10), self.dtype)
        _kn.conv_relu_pool_backward(x, h, pos, dh, np.empty((h.shape[0], 12, 10), self.dtype),
                                    dwb)
        return np.ascontiguousarray(dwb[:, :9]).reshape(12, 1, 3, 3), dwb[:, 9].copy()

    def conv(self, x, w, b):
        n = x.shape[0]
        cols = im2col(self._c(x), 3, 3)  # (N·26·26, 9)
        z = cols @ self._c(w).reshape(w.shape[0], -1).T + self._c(b)
        return z.reshape(n, 26, 26, w.shape[0]).transpose(0, 3, 1, 2)

    def dense(self, h, w, b):
        return self._c(h) @ self._c(w).T + self._c(b)

    def grad(self, g):
        return self._c(g)

    def dense_dw(self, g, h):
        g = self._c(g)
        return g.T @ self._c(h), g.sum(axis=0, dtype=self.dtype)

    def dense_dx(self, g, w):
        return self._c(g) @ self._c(w)

    def conv_dw(self, x, dz):
        f = dz.shape[1]
        cols = im2col(self._c(x), 3, 3)  # (N·26·26, 9), rows in (n, i, j) order
        dzm = self._c(dz).transpose(0, 2, 3, 1).reshape(-1, f)  # (N·26·26, 12)
        dw = (dzm.T @ cols).reshape(f, 1, 3, 3)
        return dw, dzm.sum(axis=0, dtype=self.dtype)

    def update(self, w, dw, lr, step, tensor):
        return (self._c(w) - self.dtype.type(lr) * self._c(dw)).astype(np.float64)

    def master(self, w):
        return self._c(w).astype(np.float64)
