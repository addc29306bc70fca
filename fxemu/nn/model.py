"""The founding network's function-style API (kept for the accelerator's tools and scripts):
conv 12×3×3 (+bias, He init) → ReLU → maxpool 2 → dense 2028→10 (+bias, He init) → softmax;
categorical cross-entropy averaged over the batch; SGD ``W ← W - lr·dW``.

Everything here is :data:`fxemu.nn.PRESETS` ``["founding"]`` run by
:class:`fxemu.nn.Sequential` with plain :class:`fxemu.nn.SGD`; ReLU and max pooling (ties:
first maximum in row-major order) are exact selections, and the host-side
softmax/cross-entropy gradient is a float64 computation shared by all backends.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .optim import SGD
from .sequential import Sequential, softmax_xent

__all__ = ["Params", "backward", "forward", "founding", "init_params", "softmax_xent",
           "train_step"]

N_FILTERS = 12
KERNEL = 3
IMAGE = 28
POOLED = (IMAGE - KERNEL + 1) // 2  # 13
FLAT = N_FILTERS * POOLED * POOLED  # 2028
CLASSES = 10


@dataclass
class Params:
    """Master weights (float64 arrays holding the master format's values)."""

    conv_w: np.ndarray  # (12, 1, 3, 3)
    conv_b: np.ndarray  # (12,)
    dense_w: np.ndarray  # (10, 2028)
    dense_b: np.ndarray  # (10,)

    NAMES = ("conv_w", "conv_b", "dense_w", "dense_b")

    def arrays(self) -> dict[str, np.ndarray]:
        return {n: getattr(self, n) for n in self.NAMES}

    def copy(self) -> Params:
        return Params(**{n: a.copy() for n, a in self.arrays().items()})


_MODEL: Sequential | None = None


def founding() -> Sequential:
    """The founding network, built for (1, 28, 28) images (one shared instance)."""
    global _MODEL
    if _MODEL is None:
        from .sequential import PRESETS

        _MODEL = PRESETS["founding"]().build((1, IMAGE, IMAGE), CLASSES)
    return _MODEL


def init_params(seed: int) -> Params:
    """He-normal weights (std sqrt(2/fan_in): 9 for conv, 2028 for dense), zero biases, drawn
    from ``numpy.random.Generator(PCG64(seed))`` in the order conv_w, dense_w."""
    return Params(**founding().init_params(seed))


def forward(backend, p: Params, x: np.ndarray) -> tuple[np.ndarray, list]:
    """Logits (N, 10) of images x (N, 1, 28, 28) and the cache the backward pass needs."""
    return founding().forward(backend, p.arrays(), x)


def backward(backend, p: Params, cache: list, g: np.ndarray) -> Params:
    """Gradients of the mean loss given its gradient g (N, 10) wrt the logits."""
    return Params(**founding().backward(backend, p.arrays(), cache, g))


def train_step(backend, p: Params, x: np.ndarray, y: np.ndarray, lr: float,
               step: int) -> tuple[Params, float, int]:
    """One SGD step on a batch; returns (new params, batch loss, correct predictions)."""
    new, loss, c = founding().train_step(backend, p.arrays(), x, y, SGD(lr), step)
    return Params(**new), loss, c
