"""Native backend: numpy/BLAS in float32 or float64, vectorised (the founding model done right)."""

from __future__ import annotations

import numpy as np

from .._errors import msg
from ..arith import im2col
from ..policy import Policy
from .base import Backend


class NativeBackend(Backend):
    """Every tensor in ``policy.native_dtype``; products by BLAS (its own summation order)."""

    name = "native"

    def __init__(self, policy: Policy) -> None:
        super().__init__(policy)
        if policy.native_dtype not in ("float32", "float64"):
            raise ValueError(msg("native backend", "needs a float32 or float64 policy",
                                 policy.name, "use backend 'emulated' for other formats"))
        self.dtype = np.dtype(policy.native_dtype)

    def _c(self, a: np.ndarray) -> np.ndarray:
        return np.asarray(a, dtype=self.dtype)

    def input(self, x):
        return self._c(x).astype(np.float64)

    def conv(self, x, w, b):
        n = x.shape[0]
        cols = im2col(self._c(x), 3, 3)  # (N·26·26, 9)
        z = cols @ self._c(w).reshape(w.shape[0], -1).T + self._c(b)
        return z.reshape(n, 26, 26, w.shape[0]).transpose(0, 3, 1, 2).astype(np.float64)

    def dense(self, h, w, b):
        return (self._c(h) @ self._c(w).T + self._c(b)).astype(np.float64)

    def grad(self, g):
        return self._c(g).astype(np.float64)

    def dense_dw(self, g, h):
        g32 = self._c(g)
        return ((g32.T @ self._c(h)).astype(np.float64),
                g32.sum(axis=0, dtype=self.dtype).astype(np.float64))

    def dense_dx(self, g, w):
        return (self._c(g) @ self._c(w)).astype(np.float64)

    def conv_dw(self, x, dz):
        f = dz.shape[1]
        cols = im2col(self._c(x), 3, 3)  # (N·26·26, 9), rows in (n, i, j) order
        dzm = self._c(dz).transpose(0, 2, 3, 1).reshape(-1, f)  # (N·26·26, 12)
        dw = (dzm.T @ cols).reshape(f, 1, 3, 3)
        return dw.astype(np.float64), dzm.sum(axis=0, dtype=self.dtype).astype(np.float64)

    def update(self, w, dw, lr, step, tensor):
        return (self._c(w) - self.dtype.type(lr) * self._c(dw)).astype(np.float64)

    def master(self, w):
        return self._c(w).astype(np.float64)
