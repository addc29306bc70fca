"""The host side of the HLS accelerator, common to the ``csim`` and ``board`` backends.

The accelerator runs the whole training step (see :mod:`fxemu.hw.layout` for its boundary);
the host only moves codes and computes the softmax/cross-entropy gradient:

1. the images, rounded into ``policy.forward.input``, go down as codes (``fx.to_bits``), with
   the master weights (codes in ``policy.update.master``);
2. ``OP_FORWARD`` computes the logits (codes in ``policy.forward.activation``) and fills the
   DRAM cache;
3. the host reads the logits (``fx.from_bits``), computes ``(softmax(z) - onehot)/B`` in float64
   with :func:`fxemu.nn.softmax_xent` — the same function every backend uses — and rounds it
   into ``policy.backward.grad``;
4. ``OP_BACKWARD_UPDATE`` computes every gradient and updates the weights in place
   (``W ← R_master(W - lr·dW)``);
5. the new weights are read back (the trainer's checkpoints and snapshots need them).

Every rounding in between happens in the accelerator's datapath, typed from the policy.
"""

from __future__ import annotations

import numpy as np

from .._errors import msg
from ..hw import layout
from ..nn.model import Params, softmax_xent
from ..policy import Policy
from ..quantize import from_bits, quantize, to_bits
from .base import Backend

__all__ = ["AcceleratorBackend"]

_SHAPES = {"conv_w": (12, 1, 3, 3), "conv_b": (12,), "dense_w": (10, 2028), "dense_b": (10,)}
_OFFSETS = {"conv_w": layout.CONV_W_OFFSET, "conv_b": layout.CONV_B_OFFSET,
            "dense_w": layout.DENSE_W_OFFSET, "dense_b": layout.DENSE_B_OFFSET}


class AcceleratorBackend(Backend):
    """A backend whose datapath is the HLS training-step kernel.

    Subclasses implement :meth:`_allocate` (one uint64 buffer) and :meth:`_run` (one call of
    the top function on the buffers); everything else — codes in and out, the host-side loss
    gradient, batching of evaluation — is here, so ``csim`` and ``board`` behave identically.
    The network-level hooks :meth:`step` and :meth:`logits` replace the per-layer methods of
    :class:`~fxemu.backends.base.Backend` (``runs_network`` is True).
    """

    name = "accel"
    runs_network = True

    def __init__(self, policy: Policy, seed: int = 0) -> None:
        super().__init__(policy)
        self.seed = int(seed)
        self._buffers: dict[str, np.ndarray] | None = None

    # -- what a subclass provides ------------------------------------------------------------
    def _allocate(self, name: str, words: int) -> np.ndarray:
        """A C-contiguous uint64 array of ``words`` elements that the kernel can address."""
        raise NotImplementedError

    def _run(self, op: int, n: int, lr: float, buffers: dict[str, np.ndarray]) -> None:
        """Run the kernel's operation ``op`` on ``n`` samples (buffers by the names of
        :data:`fxemu.hw.layout.BUFFERS`); returns when the kernel is done."""
        raise NotImplementedError

    # -- the host side -----------------------------------------------------------------------
    @property
    def buffers(self) -> dict[str, np.ndarray]:
        """The kernel's buffers (allocated on first use, for ``BATCH_MAX`` samples)."""
        if self._buffers is None:
            self._buffers = {b: self._allocate(b, layout.buffer_words(b))
                             for b in layout.BUFFERS}
        return self._buffers

    def _put_params(self, p: Params) -> None:
        master = self.policy.update.master
        buf = self.buffers["params"]
        for name in Params.NAMES:
            a = np.asarray(getattr(p, name), np.float64)
            if a.shape != _SHAPES[name]:
                raise ValueError(msg(f"params.{name}", f"must have shape {_SHAPES[name]}",
                                     a.shape))
            off = _OFFSETS[name]
            buf[off:off + a.size] = to_bits(a.reshape(-1), master)

    def _get_params(self) -> Params:
        master = self.policy.update.master
        vals = from_bits(np.array(self.buffers["params"][:layout.PARAM_WORDS]), master)
        return Params(**{name: vals[_OFFSETS[name]:_OFFSETS[name] + int(np.prod(shape))]
                         .reshape(shape).copy() for name, shape in _SHAPES.items()})

    def _put_images(self, x: np.ndarray) -> int:
        x = np.asarray(x, np.float64)
        n = x.shape[0]
        if x.shape[1:] not in ((1, 28, 28), (28, 28), (784,)):
            raise ValueError(msg("images", "must have shape (N, 1, 28, 28)", x.shape))
        if not 1 <= n <= layout.BATCH_MAX:
            raise ValueError(msg("batch", f"the accelerator takes 1..{layout.BATCH_MAX} "
                                 "samples per call", n, "use a smaller batch_size"))
        fmt = self.policy.forward.input
        self.buffers["x"][:n * layout.IMAGE_WORDS] = to_bits(x.reshape(-1), fmt)
        return n

    def _logits(self, n: int) -> np.ndarray:
        codes = np.array(self.buffers["logits"][:n * layout.CLASSES])
        return from_bits(codes, self.policy.forward.activation).reshape(n, layout.CLASSES)

    @staticmethod
    def _check_lr(lr: float) -> float:
        lr = float(lr)
        if not layout.LR_MIN <= lr < layout.LR_MAX:
            raise ValueError(msg("lr", "the accelerator multiplies exactly by a learning rate "
                                 "in [2^-64, 256)", lr))
        return lr

    def logits(self, p: Params, x: np.ndarray) -> np.ndarray:
        """The forward pass: logits (N, 10) of images x, in chunks of ``BATCH_MAX``."""
        self._put_params(p)
        out = []
        for s in range(0, len(x), layout.BATCH_MAX):
            n = self._put_images(x[s:s + layout.BATCH_MAX])
            self._run(layout.OP_FORWARD, n, 1.0, self.buffers)
            out.append(self._logits(n))
        return np.concatenate(out) if out else np.zeros((0, layout.CLASSES))

    def step(self, p: Params, x: np.ndarray, y: np.ndarray, lr: float,
             step: int) -> tuple[Params, float, int]:
        """One SGD step on a batch: (new params, batch loss, correct predictions)."""
        lr = self._check_lr(lr)
        y = np.asarray(y)
        self._put_params(p)
        n = self._put_images(x)
        if y.shape != (n,):
            raise ValueError(msg("labels", f"must have shape ({n},)", y.shape))
        self._run(layout.OP_FORWARD, n, lr, self.buffers)
        loss, g, pred = softmax_xent(self._logits(n), y)
        grad = self.policy.backward.grad
        self.buffers["dlogits"][:n * layout.CLASSES] = to_bits(g.reshape(-1), grad)
        self._run(layout.OP_BACKWARD_UPDATE, n, lr, self.buffers)
        return self._get_params(), loss, int((pred == y).sum())

    def master(self, w: np.ndarray, prec: Policy | None = None) -> np.ndarray:
        """Initial weights rounded into the master format (as the host writes them)."""
        return quantize(w, self.policy.update.master)

    def _per_layer(self, *_a, **_k):
        raise NotImplementedError(msg(f"backend {self.name!r}", "runs the whole network step "
                                      "in the accelerator; use step() / logits()"))

    input = conv2d = conv2d_backward = linear = linear_backward = _per_layer
    maxpool2d = maxpool2d_backward = avgpool2d = avgpool2d_backward = _per_layer
    conv_relu_pool = conv_relu_pool_backward = grad = sgd = _per_layer
