"""Golden vectors of the training step, from the emulated backend, for the C++ test bench.

The file (``tb_train_step GOLDEN`` reads it; see ``hw/kernels/train_step/tb_train_step.cpp``)
is little-endian uint64 words: the magic ``b"FXEMUGLD"``, version 1, the batch n, the bits of
lr, the number of steps, the initial master weights (``PARAM_WORDS`` codes), then per step the
images (n·784 input codes), the logits (n·10 activation codes), the logits' gradient (n·10 grad
codes: the host's softmax/cross-entropy gradient) and the master weights after the step.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..._errors import msg
from ...backends.emulated import EmulatedBackend
from ...nn.model import Params, forward, init_params, softmax_xent, train_step
from ...policy import Policy
from ...quantize import quantize, to_bits
from .. import layout

__all__ = ["MAGIC", "write_golden"]

MAGIC = int.from_bytes(b"FXEMUGLD", "little")


def _params_codes(p: Params, policy: Policy) -> np.ndarray:
    master = policy.update.master
    return np.concatenate([to_bits(getattr(p, k).reshape(-1), master) for k in Params.NAMES])


def write_golden(policy: Policy, path: str | Path | BinaryIO, *, n: int = 4, steps: int = 2,
                 lr: float = 0.01, seed: int = 0) -> Path | BinaryIO:
    """Write ``steps`` emulated SGD steps on random batches of ``n`` MNIST-like images (pixel
    values k/255, seeded by ``seed``) from ``init_params(seed)`` to ``path`` (a file name or
    a binary file open for writing); returns ``path``.

    ``n`` (1..BATCH_MAX), ``steps`` (0..2^20) and ``lr`` (the kernel's [2^-64, 256)) are
    checked before anything is written: the test bench reads them as words of the file.
    """
    if type(n) is not int or not 1 <= n <= layout.BATCH_MAX:
        raise ValueError(msg("golden batch", f"must be an int in 1..{layout.BATCH_MAX}", n))
    if type(steps) is not int or not 0 <= steps <= 1 << 20:
        raise ValueError(msg("golden steps", "must be an int in 0..2^20", steps))
    if not isinstance(lr, int | float) or not layout.LR_MIN <= lr < layout.LR_MAX:
        raise ValueError(msg("golden lr", "must be in [2^-64, 256) (the kernel's lr_t)", lr))
    be = EmulatedBackend(policy, seed)
    rng = np.random.Generator(np.random.PCG64([seed, 6]))
    p = Params(**{k: be.master(v) for k, v in init_params(seed).arrays().items()})
    lr_bits = int(np.array(float(lr)).view(np.uint64))
    words = [np.array([MAGIC, 1, n, lr_bits, steps], np.uint64), _params_codes(p, policy)]
    for s in range(steps):
        x = rng.integers(0, 256, (n, 1, 28, 28)) / 255.0
        y = rng.integers(0, 10, n)
        be.begin_step(s)
        z, _ = forward(be, p, x)
        _, g, _ = softmax_xent(z, y)
        grad = policy.backward.grad
        words += [to_bits(quantize(x.reshape(-1), policy.forward.input), policy.forward.input),
                  to_bits(z.reshape(-1), policy.forward.activation),
                  to_bits(quantize(g.reshape(-1), grad), grad)]
        p, _, _ = train_step(be, p, x, y, lr, s)
        words.append(_params_codes(p, policy))
    data = np.concatenate(words).astype("<u8")
    if hasattr(path, "write"):
        path.write(data.tobytes())
        return path
    path = Path(path)
    data.tofile(path)
    return path
