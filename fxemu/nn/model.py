"""Reference network: conv 12×3×3 (+bias, He init) → ReLU → maxpool 2 → dense 2028→10 (+bias,
He init) → softmax; categorical cross-entropy averaged over the batch; SGD ``W ← W - lr·dW``.

Every product and every rounding goes through the backend; ReLU and max pooling (ties: first
maximum in row-major order) are exact selections, composed by
:meth:`fxemu.backends.base.Backend.conv_relu_pool` (a backend may fuse them with the conv), and
the host-side softmax/cross-entropy gradient is a float64 computation shared by all backends.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Params", "backward", "forward", "init_params", "softmax_xent", "train_step"]

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


def init_params(seed: int) -> Params:
    """He-normal weights (std sqrt(2/fan_in): 9 for conv, 2028 for dense), zero biases, drawn
    from ``numpy.random.Generator(PCG64(seed))`` in the order conv_w, dense_w."""
    rng = np.random.Generator(np.random.PCG64(seed))
    conv_w = rng.standard_normal((N_FILTERS, 1, KERNEL, KERNEL)) * np.sqrt(2.0 / KERNEL**2)
    dense_w = rng.standard_normal((CLASSES, FLAT)) * np.sqrt(2.0 / FLAT)
    return Params(conv_w, np.zeros(N_FILTERS), dense_w, np.zeros(CLASSES))


def forward(backend, p: Params, x: np.ndarray) -> tuple[np.ndarray, dict]:
    """Logits (N, 10) of images x (N, 1, 28, 28) and the cache the backward pass needs
    (empty for a backend that runs the whole network: its cache stays in the accelerator)."""
    if backend.runs_network:
        return backend.logits(p, x), {}
    xq = backend.input(x)
    h, conv_ctx = backend.conv_relu_pool(xq, p.conv_w, p.conv_b)  # (N, 12, 13, 13)
    hf = np.ascontiguousarray(h.reshape(h.shape[0], FLAT))
    z2 = backend.dense(hf, p.dense_w, p.dense_b)
    return z2, {"conv": conv_ctx, "hf": hf}


def softmax_xent(z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Mean cross-entropy of logits z (N, 10) for labels y, its gradient ``(p - onehot)/N``
    and the predicted classes; float64 on the host (max-subtracted softmax)."""
    z = np.asarray(z, np.float64)
    s = z - z.max(axis=1, keepdims=True)
    e = np.exp(s)
    tot = e.sum(axis=1, keepdims=True)
    n = z.shape[0]
    logp = s - np.log(tot)
    loss = float(-logp[np.arange(n), y].mean())
    g = e / tot
    g[np.arange(n), y] -= 1.0
    return loss, g / n, z.argmax(axis=1)


def backward(backend, p: Params, cache: dict, g: np.ndarray) -> Params:
    """Gradients of the mean loss given its gradient g (N, 10) wrt the logits."""
    gq = backend.grad(g)
    hf = cache["hf"]
    dense_w, dense_b = backend.dense_dw(gq, hf)  # (10, 2028), (10,)
    dh = backend.dense_dx(gq, p.dense_w)  # (N, 2028)
    dh = dh.reshape(dh.shape[0], N_FILTERS, POOLED, POOLED)
    conv_w, conv_b = backend.conv_relu_pool_backward(cache["conv"], dh)
    return Params(conv_w, conv_b, dense_w, dense_b)


def train_step(backend, p: Params, x: np.ndarray, y: np.ndarray, lr: float,
               step: int) -> tuple[Params, float, int]:
    """One SGD step on a batch; returns (new params, batch loss, correct predictions)."""
    backend.begin_step(step)
    if backend.runs_network:  # the accelerator runs this very step; the host: softmax_xent
        return backend.step(p, x, y, lr, step)
    z, cache = forward(backend, p, x)
    loss, g, pred = softmax_xent(z, y)
    grads = backward(backend, p, cache, g)
    new = Params(**{name: backend.update(getattr(p, name), getattr(grads, name), lr, step, i)
                    for i, name in enumerate(Params.NAMES)})
    return new, loss, int((pred == y).sum())
