"""The backend interface the reference network is written against."""

from __future__ import annotations

import numpy as np

from ..arith import maxpool2d, maxpool2d_backward
from ..policy import Policy


class Backend:
    """Kernels of one datapath. Arrays hold the values the datapath holds: float64 unless the
    backend says otherwise (native float32 keeps its activations and gradients in float32;
    master weights are float64 everywhere).

    Subclasses implement every fine-grained method; shapes follow :mod:`fxemu.nn.model`. The
    coarse methods (``conv_relu_pool`` and its backward) compose the fine-grained ones by
    default; a backend may override them with fused kernels of the same semantics.
    """

    name = "base"
    #: True for a backend that runs the whole network itself (the HLS accelerator): the
    #: network in :mod:`fxemu.nn` then calls its ``step(p, x, y, lr, step)`` and
    #: ``logits(p, x)`` instead of the per-layer methods below.
    runs_network = False

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def begin_step(self, step: int) -> None:
        """Called before each training step (backends with stochastic state key it by step)."""

    def input(self, x: np.ndarray) -> np.ndarray:
        """Images as the forward datapath reads them."""
        raise NotImplementedError

    def conv(self, x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Conv 3×3 valid + bias: (N,1,28,28) × (12,1,3,3) → (N,12,26,26)."""
        raise NotImplementedError

    def conv_relu_pool(self, x: np.ndarray, w: np.ndarray,
                       b: np.ndarray) -> tuple[np.ndarray, object]:
        """Conv + bias → ReLU → 2×2 max pool: pooled activations (N, 12, 13, 13) and the
        context :meth:`conv_relu_pool_backward` needs.

        ReLU is ``max(z, 0)`` (NaN stays NaN); pooling takes the first maximum of each window
        in row-major order (a NaN counts as the maximum), as :func:`fxemu.arith.maxpool2d`.
        """
        z1 = self.conv(x, w, b)  # (N, 12, 26, 26)
        h, arg = maxpool2d(np.maximum(z1, 0.0), 2)
        return h, (x, z1, arg)

    def conv_relu_pool_backward(self, ctx: object,
                                dh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(dW (12,1,3,3), db (12,)) of the conv given the pooled activations' gradient dh
        (N, 12, 13, 13): dh is routed to each window's argmax, kept where the conv output is
        > 0 (ReLU'(0) = 0) and reduced by :meth:`conv_dw`."""
        x, z1, arg = ctx
        da1 = maxpool2d_backward(dh, arg, z1.shape)
        return self.conv_dw(x, np.where(z1 > 0.0, da1, 0.0))

    def dense(self, h: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``h @ w.T + b``: (N,2028) × (10,2028) → (N,10)."""
        raise NotImplementedError

    def grad(self, g: np.ndarray) -> np.ndarray:
        """The logits' gradient as the backward datapath holds it."""
        raise NotImplementedError

    def dense_dw(self, g: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(dW = g.T @ h reduced over the batch in sample order, db = sum_n g)."""
        raise NotImplementedError

    def dense_dx(self, g: np.ndarray, w: np.ndarray) -> np.ndarray:
        """dh = g @ w reduced over the 10 classes in order."""
        raise NotImplementedError

    def conv_dw(self, x: np.ndarray, dz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(dW (12,1,3,3), db (12,)) reduced over (n, i, j) in row-major order."""
        raise NotImplementedError

    def update(self, w: np.ndarray, dw: np.ndarray, lr: float, step: int,
               tensor: int) -> np.ndarray:
        """``W - lr·dW`` stored in the master format (``step``/``tensor`` key SR draws)."""
        raise NotImplementedError

    def master(self, w: np.ndarray) -> np.ndarray:
        """Initial weights rounded into the master format."""
        raise NotImplementedError
