"""C-simulation backend: the accelerator's HLS C++ compiled with g++ and run on the host."""

from __future__ import annotations

import numpy as np

from ..policy import Policy
from .accel import AcceleratorBackend

__all__ = ["CsimBackend"]


class CsimBackend(AcceleratorBackend):
    """The HLS training-step kernel built for ``policy`` as a shared library (see
    :mod:`fxemu.hw.csim`: built on first use, cached), driven through ctypes.

    Raises :class:`fxemu.BackendUnavailable` without g++ or the hls4ml vendor headers, and
    ``ValueError`` for a policy the datapath cannot run exactly (see
    :func:`fxemu.hw.codegen.policy_header`).
    """

    name = "csim"

    def __init__(self, policy: Policy, seed: int = 0) -> None:
        super().__init__(policy, seed)
        from ..hw.csim import CsimKernel, build

        self.library = build(policy)
        self.kernel = CsimKernel(self.library)

    def _allocate(self, name: str, words: int) -> np.ndarray:
        return np.zeros(words, np.uint64)

    def _run(self, op: int, n: int, lr: float, buffers: dict[str, np.ndarray]) -> None:
        self.kernel.run(op, n, lr, buffers["x"], buffers["params"], buffers["logits"],
                        buffers["dlogits"], buffers["cache"])
