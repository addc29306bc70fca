"""The backend interface the reference network is written against."""

from __future__ import annotations

import numpy as np

from ..policy import Policy


class Backend:
    """Kernels of one datapath. Arrays are float64 holding the values the datapath holds.

    Subclasses implement every method; shapes follow :mod:`fxemu.nn.model`.
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
