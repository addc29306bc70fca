"""The backend interface every model of :mod:`fxemu.nn` is written against.

One method per layer kind, each taking the layer's resolved precision ``prec`` (a
:class:`~fxemu.policy.Policy` with the layer's ``[layers.NAME]`` overrides applied:
``policy.for_layer(name)``) and returning the output and a context for its backward method.
:class:`fxemu.nn.Sequential` calls them in layer order forward and in reverse order backward;
the PyTorch bridge (:mod:`fxemu.torch`) calls the same methods one layer at a time.

Contract of the methods (arrays hold the values the datapath holds: float64 unless the backend
says otherwise — native float32 keeps activations and gradients in float32; master weights are
float64 everywhere):

``input(x, prec)``
    images rounded into ``prec.forward.input``.
``conv2d(x, w, b, layer, prec) -> (z, ctx)``
    ``z = R_activation(conv(x, R_weight(w)) + R_weight(b))`` through ``prec.forward.conv``
    with the layer's stride and zero padding (:class:`fxemu.nn.Conv2d`); b may be None (then
    ``z = R_activation(conv)``). Reduction order: :func:`fxemu.conv2d`.
``conv2d_backward(ctx, dz, prec, need_dx) -> (dx | None, dW, db | None)``
    dz is rounded into ``prec.backward.grad``; ``dW`` through ``prec.backward.conv_dw``
    (over (n, i, j) in order), ``db`` the sum of dz over (n, i, j) through the same Mac,
    ``dx`` (when ``need_dx``) through ``prec.backward.conv_dx_mac`` from ``R_bw.weight(w)``;
    every result rounded into ``prec.backward.grad``.
``linear(x, w, b, prec) -> (z, ctx)``
    ``z = R_activation(x @ R_weight(w).T + R_weight(b))`` through ``prec.forward.dense``.
``linear_backward(ctx, dz, prec, need_dx) -> (dx | None, dW, db | None)``
    dz as the datapath holds it (already a gradient in the grad format); ``dW = dz.T @ x``
    and ``db = sum_n dz`` reduced over the batch in sample order through
    ``prec.backward.dense_dw``; ``dx = dz @ R_bw.weight(w)`` over the outputs in order through
    ``prec.backward.dense_dx``; every result rounded into ``prec.backward.grad``.
``relu(x) -> (h, ctx)``, ``relu_backward(ctx, dh) -> dx``
    ``max(x, 0)`` (NaN stays NaN); the gradient passes where x > 0 (exact selections).
``maxpool2d(x, layer) -> (h, ctx)``, ``maxpool2d_backward(ctx, dh, prec) -> dx``
    the first maximum of each window in row-major order; dh is routed to it (added where
    windows overlap, through ``prec.backward.grad`` rounding).
``avgpool2d(x, layer, prec) -> (h, ctx)``, ``avgpool2d_backward(ctx, dh, prec) -> dx``
    window sum through ``prec.forward.pool_mac``, times 1/(kh·kw) rounded into
    ``prec.forward.activation``; backward: dh/(kh·kw) rounded into ``prec.backward.grad``
    to each window cell (see :func:`fxemu.avgpool2d_backward`).
``conv_relu_pool(x, w, b, conv, pool, prec) -> (h, ctx)``, ``conv_relu_pool_backward(ctx, dh,
prec) -> (dW, db)``
    the block conv → relu → maxpool of a model's first layers (no input gradient): by default
    the composition of the methods above; a backend may fuse it with kernels giving the same
    values (and, for the emulated backend, drawing the same stochastic-rounding keys).
``grad(g, prec)``
    a gradient (the logits', or one entering a layer of another grad format) rounded into
    ``prec.backward.grad``.
``sgd(w, dw, v, lr, momentum, weight_decay, prec) -> (w, v)``
    one parameter's update (:mod:`fxemu.nn.optim`): ``d = R_grad(dw + wd·w)`` (wd > 0),
    ``v = R_momentum(μ·v + d); d = v`` (μ > 0; v None means 0), ``w = R_master(w - lr·d)``.
``master(w, prec=None)``
    weights rounded into the master format (``prec`` default: the backend's policy).

``begin_step(step)`` is called before each training step (the emulated backend keys every
stochastic rounding by (seed, step, call number), so the calls' order above is part of the
results).
"""

from __future__ import annotations

import numpy as np

from ..policy import Policy

__all__ = ["Backend"]


class Backend:
    """Kernels of one datapath (see the module docstring for every method's contract)."""

    name = "base"
    #: True for a backend that runs the whole network itself (the HLS accelerator): the
    #: model then calls its ``step(p, x, y, lr, step)`` and ``logits(p, x)`` instead of the
    #: per-layer methods, and runs only the founding network.
    runs_network = False

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def begin_step(self, step: int) -> None:
        """Called before each training step (backends with stochastic state key it by step)."""

    def input(self, x: np.ndarray, prec: Policy | None = None) -> np.ndarray:
        raise NotImplementedError

    def conv2d(self, x, w, b, layer, prec):
        raise NotImplementedError

    def conv2d_backward(self, ctx, dz, prec, need_dx):
        raise NotImplementedError

    def linear(self, x, w, b, prec):
        raise NotImplementedError

    def linear_backward(self, ctx, dz, prec, need_dx):
        raise NotImplementedError

    def relu(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.maximum(x, x.dtype.type(0)), x

    def relu_backward(self, ctx: np.ndarray, dh: np.ndarray) -> np.ndarray:
        return np.where(ctx > 0, dh, dh.dtype.type(0))

    def maxpool2d(self, x, layer):
        raise NotImplementedError

    def maxpool2d_backward(self, ctx, dh, prec):
        raise NotImplementedError

    def avgpool2d(self, x, layer, prec):
        raise NotImplementedError

    def avgpool2d_backward(self, ctx, dh, prec):
        raise NotImplementedError

    def conv_relu_pool(self, x, w, b, conv, pool, prec) -> tuple[np.ndarray, object]:
        """conv2d → relu → maxpool2d, composed (a backend may fuse it)."""
        z, cctx = self.conv2d(x, w, b, conv, prec)
        a, rctx = self.relu(z)
        h, pctx = self.maxpool2d(a, pool)
        return h, ("composed", cctx, rctx, pctx)

    def conv_relu_pool_backward(self, ctx, dh, prec) -> tuple[np.ndarray, np.ndarray]:
        """(dW, db) of the block's conv from the pooled activations' gradient dh: dh routed to
        each window's argmax, kept where the conv output is > 0, reduced by conv2d_backward."""
        _, cctx, rctx, pctx = ctx
        da = self.maxpool2d_backward(pctx, dh, prec)
        _, dw, db = self.conv2d_backward(cctx, self.relu_backward(rctx, da), prec, False)
        return dw, db

    def grad(self, g: np.ndarray, prec: Policy | None = None) -> np.ndarray:
        raise NotImplementedError

    def sgd(self, w, dw, v, lr, momentum, weight_decay, prec):
        raise NotImplementedError

    def master(self, w: np.ndarray, prec: Policy | None = None) -> np.ndarray:
        raise NotImplementedError
