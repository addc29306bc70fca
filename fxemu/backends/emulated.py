"""Emulated backend: every product and rounding by fxemu's bit-exact kernels under a policy."""

from __future__ import annotations

import numpy as np

from ..arith import add, conv2d, conv2d_grad_weight, fma, matmul, maxpool2d_backward
from ..formats import Mac
from ..lowering import is_stochastic
from ..nn import conv_block
from ..policy import Policy
from ..quantize import quantize
from .base import Backend


class EmulatedBackend(Backend):
    """Bit-exact datapath of ``policy``; ``seed`` keys every stochastic rounding."""

    name = "emulated"

    def __init__(self, policy: Policy, seed: int = 0) -> None:
        super().__init__(policy)
        self.seed = int(seed)
        self.fw, self.bw, self.up = policy.forward, policy.backward, policy.update
        self.begin_step(-1)

    def begin_step(self, step: int) -> None:
        """Reset the per-step call counter that keys stochastic rounding."""
        self._step, self._calls = int(step), 0

    def _key(self) -> int:
        """A seed unique to (run seed, step, call number in the step): calls happen in a fixed
        order, so every stochastic rounding is reproducible and resumable at step bounds."""
        self._calls += 1
        ss = np.random.SeedSequence([self.seed, self._step + 2, self._calls])
        return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))

    def _q(self, x, fmt):
        return quantize(x, fmt, seed=self._key())

    def input(self, x):
        return self._q(x, self.fw.input)

    def conv(self, x, w, b):
        wq = self._q(w, self.fw.weight)
        bq = self._q(b, self.fw.weight)
        z = conv2d(x, wq, self.fw.conv, seed=self._key())
        return add(z, bq[None, :, None, None], self.fw.activation, seed=self._key())

    def conv_relu_pool(self, x, w, b):
        """Fused (:mod:`fxemu.nn.conv_block`) where its kernels cover the policy and the data,
        else the composition; the results, and the seeds each step draws, are the same either
        way. The context is (images, pooled activations, argmax)."""
        calls = self._calls
        wq = self._q(w, self.fw.weight)
        bq = self._q(b, self.fw.weight)
        self._key(), self._key()  # the conv's and the bias add's (nothing stochastic when fused)
        fused = conv_block.conv_relu_pool(x, wq, bq, self.fw.conv, self.fw.activation)
        if fused is None:
            self._calls = calls
            h, (x, _, arg) = super().conv_relu_pool(x, w, b)
            return h, (x, h, arg)
        return fused[0], (x, *fused)

    def conv_relu_pool_backward(self, ctx, dh):
        """Fused where :func:`fxemu.nn.conv_block.conv_relu_pool_grad` covers the policy, else the
        composition on the routed gradient: ``z > 0`` at a window's argmax is ``h > 0``."""
        x, h, arg = ctx
        live = np.where(h > 0.0, np.reshape(dh, h.shape), 0.0)
        if not is_stochastic(self.bw.grad):
            calls = self._calls
            g = self._q(live, self.bw.grad)  # as the composition rounds the routed gradient
            self._key()  # the weight gradient's Mac
            fused = conv_block.conv_relu_pool_grad(x, h, arg, g, self.bw.conv_dw)
            if fused is not None:
                dw = self._q(fused[0], self.bw.grad)
                self._key()  # the bias gradient's Mac
                return dw, self._q(fused[1], self.bw.grad)
            self._calls = calls
        n, f, po, qo = h.shape
        return self.conv_dw(x, maxpool2d_backward(live, arg, (n, f, 2 * po, 2 * qo)))

    def dense(self, h, w, b):
        wq = self._q(w, self.fw.weight)
        bq = self._q(b, self.fw.weight)
        z = matmul(h, np.ascontiguousarray(wq.T), self.fw.dense, seed=self._key())
        return add(z, bq[None, :], self.fw.activation, seed=self._key())

    def grad(self, g):
        return self._q(g, self.bw.grad)

    def _colsum(self, m: np.ndarray, mac: Mac) -> np.ndarray:
        """Sum of each row of m (R, K) over k in order through ``mac``."""
        return matmul(m, np.ones((m.shape[1], 1)), mac, seed=self._key())[:, 0]

    def dense_dw(self, g, h):
        mac = self.bw.dense_dw
        gt = np.ascontiguousarray(g.T)  # (10, N): reduce over samples n in order
        dw = self._q(matmul(gt, h, mac, seed=self._key()), self.bw.grad)
        return dw, self._q(self._colsum(gt, mac), self.bw.grad)

    def dense_dx(self, g, w):
        wq = self._q(w, self.bw.weight)
        return self._q(matmul(g, wq, self.bw.dense_dx, seed=self._key()), self.bw.grad)

    def conv_dw(self, x, dz):
        mac = self.bw.conv_dw
        dzq = self._q(dz, self.bw.grad)
        dw = self._q(conv2d_grad_weight(x, dzq, (3, 3), mac, seed=self._key()), self.bw.grad)
        f = dz.shape[1]
        dzm = np.ascontiguousarray(dzq.transpose(1, 0, 2, 3).reshape(f, -1))  # (12, N·26·26)
        return dw, self._q(self._colsum(dzm, mac), self.bw.grad)

    def update(self, w, dw, lr, step, tensor):
        return fma(-lr, dw, w, self.up.master, seed=self._key(), sr_bits=self.up.sr_bits)

    def master(self, w):
        return self._q(w, self.up.master)
