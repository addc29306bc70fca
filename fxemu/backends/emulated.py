"""Emulated backend: every product and rounding by fxemu's bit-exact kernels under a policy."""

from __future__ import annotations

import numpy as np

from ..arith import Mac, add, conv2d, conv2d_grad_weight, fma, matmul
from ..formats import Fixed, Float
from ..policy import Policy
from ..quantize import quantize
from .base import Backend


def _finish(y: np.ndarray, mac: Mac, fmt: Fixed | Float) -> np.ndarray:
    """Round a Mac result into a tensor role's format (one rounding after the Mac's own)."""
    return quantize(y, fmt)


class EmulatedBackend(Backend):
    """Bit-exact datapath of ``policy``; ``seed`` keys every stochastic rounding."""

    name = "emulated"

    def __init__(self, policy: Policy, seed: int = 0) -> None:
        super().__init__(policy)
        self.seed = int(seed)
        self.fw, self.bw, self.up = policy.forward, policy.backward, policy.update

    def input(self, x):
        return quantize(x, self.fw.input)

    def conv(self, x, w, b):
        wq = quantize(w, self.fw.weight)
        bq = quantize(b, self.fw.weight)
        z = conv2d(x, wq, self.fw.conv)
        return add(z, bq[None, :, None, None], self.fw.activation)

    def dense(self, h, w, b):
        wq = quantize(w, self.fw.weight)
        bq = quantize(b, self.fw.weight)
        z = matmul(h, np.ascontiguousarray(wq.T), self.fw.dense)
        return add(z, bq[None, :], self.fw.activation)

    def grad(self, g):
        return quantize(g, self.bw.grad)

    def _colsum(self, m: np.ndarray, mac: Mac) -> np.ndarray:
        """Sum of each row of m (R, K) over k in order through ``mac``."""
        return matmul(m, np.ones((m.shape[1], 1)), mac)[:, 0]

    def dense_dw(self, g, h):
        mac = self.bw.dense_dw
        gt = np.ascontiguousarray(g.T)  # (10, N): reduce over samples n in order
        dw = matmul(gt, h, mac)
        return _finish(dw, mac, self.bw.grad), _finish(self._colsum(gt, mac), mac, self.bw.grad)

    def dense_dx(self, g, w):
        wq = quantize(w, self.bw.weight)
        return _finish(matmul(g, wq, self.bw.dense_dx), self.bw.dense_dx, self.bw.grad)

    def conv_dw(self, x, dz):
        mac = self.bw.conv_dw
        dzq = quantize(dz, self.bw.grad)
        dw = conv2d_grad_weight(x, dzq, (3, 3), mac)
        f = dz.shape[1]
        dzm = np.ascontiguousarray(dzq.transpose(1, 0, 2, 3).reshape(f, -1))  # (12, N·26·26)
        return _finish(dw, mac, self.bw.grad), _finish(self._colsum(dzm, mac), mac, self.bw.grad)

    def update(self, w, dw, lr, step, tensor):
        seed = (self.seed * 1_000_003 + step) * 4 + tensor
        return fma(-lr, dw, w, self.up.master, seed=seed, sr_bits=self.up.sr_bits)

    def master(self, w):
        return quantize(w, self.up.master)
