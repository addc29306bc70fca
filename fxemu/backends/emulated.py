"""Emulated backend: every product and rounding by fxemu's bit-exact kernels under a policy."""

from __future__ import annotations

import numpy as np

from .. import arith
from ..arith import add, conv2d, conv2d_grad_input, conv2d_grad_weight, fma, matmul
from ..formats import Mac
from ..lowering import draws_random, is_stochastic
from ..nn import conv_block
from ..nn.native_ops import relu_backward
from ..policy import Policy
from ..quantize import quantize
from .base import Backend


class EmulatedBackend(Backend):
    """Bit-exact datapath of ``policy``; ``seed`` keys every stochastic rounding.

    Every call that may round stochastically draws one key (:meth:`_key`) in a fixed order, so
    a run is reproducible and resumable at step bounds; the fused conv block draws the keys its
    composition would. Stride and zero padding are :mod:`fxemu.arith`'s (the padded terms
    enter each sum in :func:`fxemu.conv2d`'s order, as exact zeros). Overlapping pool windows
    sum their gradient shares in ``backward.grad`` (maxpool) or through ``backward.conv_dx``
    (avgpool, a transposed conv of the shares).
    """

    name = "emulated"

    def __init__(self, policy: Policy, seed: int = 0) -> None:
        super().__init__(policy)
        self.seed = int(seed)
        self.begin_step(-1)

    def begin_step(self, step: int) -> None:
        """Reset the per-step call counter that keys stochastic rounding."""
        self._step, self._calls = int(step), 0

    def _key(self, *uses: object) -> int | None:
        """A seed unique to (run seed, step, call number in the step): calls happen in a fixed
        order, so every stochastic rounding is reproducible and resumable at step bounds.

        ``uses``: the call's formats and Macs; where none rounds stochastically
        (:func:`fxemu.lowering.draws_random`) the seed would never be read, so the call
        number advances and None is returned (deriving a seed costs tens of µs)."""
        self._calls += 1
        if not draws_random(*uses):
            return None
        ss = np.random.SeedSequence([self.seed, self._step + 2, self._calls])
        return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))

    def _q(self, x, fmt):
        return quantize(x, fmt, seed=self._key(fmt))

    def input(self, x, prec=None):
        return self._q(x, (prec or self.policy).forward.input)

    # -- conv ----------------------------------------------------------------------------------
    def _conv(self, x, wq, layer, mac: Mac) -> np.ndarray:
        return conv2d(x, wq, mac, stride=layer.strides, padding=layer.pads, seed=self._key(mac))

    def conv2d(self, x, w, b, layer, prec):
        fw = prec.forward
        wq = self._q(w, fw.weight)
        bq = None if b is None else self._q(b, fw.weight)
        z = self._conv(x, wq, layer, fw.conv)
        z = self._q(z, fw.activation) if bq is None else \
            add(z, bq[None, :, None, None], fw.activation, seed=self._key(fw.activation))
        return z, (x, w, b is not None, layer)

    def _colsum(self, m: np.ndarray, mac: Mac) -> np.ndarray:
        """Sum of each column of m (K, R) over k in order through ``mac``: the products
        ``1·m[k, r]`` of ``ones (1, K) @ m``, whose kernels keep the R sums side by side.
        That is ``m.T @ ones (K, 1)`` bit for bit (the same products, rounded alike, reduced
        in the same order) wherever the Mac treats its two operands alike; block and fused
        Macs do not (each operand has its own element format or exponent floor), so they
        keep that form."""
        if mac.block or mac.fused is not None:
            mt = np.ascontiguousarray(m.T)
            return matmul(mt, np.ones((mt.shape[1], 1)), mac, seed=self._key(mac))[:, 0]
        return matmul(np.ones((1, m.shape[0])), m, mac, seed=self._key(mac))[0]

    def conv2d_backward(self, ctx, dz, prec, need_dx):
        x, w, bias, layer = ctx
        bw = prec.backward
        mac = bw.conv_dw
        dzq = self._q(dz, bw.grad)
        gw = conv2d_grad_weight(x, dzq, layer.kernel, mac, stride=layer.strides,
                                padding=layer.pads, seed=self._key(mac))
        dw = self._q(gw, bw.grad)
        db = None
        if bias:
            f = dz.shape[1]
            dzm = np.ascontiguousarray(dzq.transpose(0, 2, 3, 1).reshape(-1, f))  # (N·Ho·Wo, F)
            db = self._q(self._colsum(dzm, mac), bw.grad)
        dx = None
        if need_dx:
            wq = self._q(w, bw.weight)
            gi = conv2d_grad_input(dzq, wq, x.shape[2:], bw.conv_dx_mac, stride=layer.strides,
                                   padding=layer.pads, seed=self._key(bw.conv_dx_mac))
            dx = self._q(gi, bw.grad)
        return dx, dw, db

    # -- the founding block --------------------------------------------------------------------
    def conv_relu_pool(self, x, w, b, conv, pool, prec):
        """Fused (:mod:`fxemu.nn.conv_block`) where its kernels cover the policy and the data,
        else the composition; the results, and the seeds each step draws, are the same either
        way."""
        _n, c, hh, ww = x.shape
        if c != 1 or hh < 4 or ww < 4 or hh % 2 or ww % 2:
            return super().conv_relu_pool(x, w, b, conv, pool, prec)
        fw = prec.forward
        calls = self._calls
        wq = self._q(w, fw.weight)
        bq = self._q(b, fw.weight)
        self._calls += 2  # the conv's and the bias add's keys (nothing stochastic when fused)
        fused = conv_block.conv_relu_pool(x, wq, bq, fw.conv, fw.activation)
        if fused is None:
            self._calls = calls
            return super().conv_relu_pool(x, w, b, conv, pool, prec)
        return fused[0], ("fused", x, w, conv, *fused)

    def conv_relu_pool_backward(self, ctx, dh, prec):
        """Fused where :func:`fxemu.nn.conv_block.conv_relu_pool_grad` covers the policy, else
        the composition on the routed gradient: ``z > 0`` at a window's argmax is ``h > 0``."""
        if ctx[0] != "fused":
            return super().conv_relu_pool_backward(ctx, dh, prec)
        _, x, w, conv, h, arg = ctx
        bw = prec.backward
        live = np.where(h > 0.0, np.reshape(dh, h.shape), 0.0)
        if not is_stochastic(bw.grad):
            calls = self._calls
            g = self._q(live, bw.grad)  # as the composition rounds the routed gradient
            self._calls += 1  # the weight gradient's Mac's key
            fused = conv_block.conv_relu_pool_grad(x, h, arg, g, bw.conv_dw)
            if fused is not None:
                dw = self._q(fused[0], bw.grad)
                self._calls += 1  # the bias gradient's Mac's key
                return dw, self._q(fused[1], bw.grad)
            self._calls = calls
        n, f, po, qo = h.shape
        dz = arith.maxpool2d_backward(live, arg, (n, f, 2 * po, 2 * qo))
        _, dw, db = self.conv2d_backward((x, w, True, conv), dz, prec, False)
        return dw, db

    # -- linear --------------------------------------------------------------------------------
    def linear(self, x, w, b, prec):
        fw = prec.forward
        wq = self._q(w, fw.weight)
        bq = None if b is None else self._q(b, fw.weight)
        z = matmul(x, np.ascontiguousarray(wq.T), fw.dense, seed=self._key(fw.dense))
        z = self._q(z, fw.activation) if bq is None else \
            add(z, bq[None, :], fw.activation, seed=self._key(fw.activation))
        return z, (x, w, b is not None)

    def linear_backward(self, ctx, dz, prec, need_dx):
        x, w, bias = ctx
        bw = prec.backward
        mac = bw.dense_dw
        gt = np.ascontiguousarray(np.transpose(dz))  # (out, N): reduce over samples in order
        dw = self._q(matmul(gt, x, mac, seed=self._key(mac)), bw.grad)
        db = self._q(self._colsum(dz, mac), bw.grad) if bias else None
        dx = None
        if need_dx:
            wq = self._q(w, bw.weight)
            dx = self._q(matmul(dz, wq, bw.dense_dx, seed=self._key(bw.dense_dx)), bw.grad)
        return dx, dw, db

    # -- relu ----------------------------------------------------------------------------------
    def relu_backward(self, ctx, dh):
        """``dh`` where the ReLU's input was > 0, else +0 (the native backend's one pass, in
        float64)."""
        return relu_backward(ctx, dh, np.float64)

    # -- pools -----------------------------------------------------------------------------------
    def maxpool2d(self, x, layer):
        h, arg = arith.maxpool2d(x, layer.window, stride=layer.strides, padding=layer.pads)
        return h, (arg, x.shape, layer)

    def maxpool2d_backward(self, ctx, dh, prec):
        arg, shape, layer = ctx
        if not layer.overlapping:  # a routing: nothing rounds, no key is drawn
            return arith.maxpool2d_backward(dh, arg, shape, layer.window, stride=layer.strides,
                                            padding=layer.pads)
        return arith.maxpool2d_backward(dh, arg, shape, layer.window, stride=layer.strides,
                                        padding=layer.pads, fmt=prec.backward.grad,
                                        seed=self._key(prec.backward.grad))

    def avgpool2d(self, x, layer, prec):
        fw = prec.forward
        h = arith.avgpool2d(x, layer.window, fw.pool_mac, fw.activation, stride=layer.strides,
                            padding=layer.pads, seed=self._key(fw.pool_mac, fw.activation))
        return h, (x.shape, layer)

    def avgpool2d_backward(self, ctx, dh, prec):
        shape, layer = ctx
        return arith.avgpool2d_backward(dh, shape, layer.window, prec.backward.grad,
                                        stride=layer.strides, padding=layer.pads,
                                        mac=prec.backward.conv_dx_mac,
                                        seed=self._key(prec.backward.grad,
                                                       prec.backward.conv_dx_mac))

    # -- gradients and the update --------------------------------------------------------------
    def grad(self, g, prec=None):
        return self._q(g, (prec or self.policy).backward.grad)

    def sgd(self, w, dw, v, lr, momentum, weight_decay, prec):
        up = prec.update
        d = dw
        if weight_decay:
            d = fma(weight_decay, w, dw, prec.backward.grad, seed=self._key(prec.backward.grad))
        if momentum:
            v0 = np.zeros_like(w) if v is None else v
            v = fma(momentum, v0, d, up.momentum_fmt, seed=self._key(up.momentum_fmt))
            d = v
        return fma(-lr, d, w, up.master, seed=self._key(up.master), sr_bits=up.sr_bits), v

    def master(self, w, prec=None):
        return self._q(w, (prec or self.policy).update.master)
