"""Backends: the kernels a datapath provides to the network in :mod:`fxemu.nn`.

``native``: numpy/BLAS in float32 or float64 (no per-operation rounding model: BLAS order).
``emulated``: fxemu's bit-exact kernels under any :class:`fxemu.policy.Policy`.
``csim``: the HLS accelerator's C++ compiled with g++ (C-simulation, see ``hw/``).
``board``: the same kernel on a PYNQ board (or its stand-in device) through the PYNQ driver
(:mod:`fxemu.backends.board`).
"""

from __future__ import annotations

from .._errors import msg
from ..policy import Policy
from .base import Backend
from .emulated import EmulatedBackend
from .native import NativeBackend

__all__ = ["Backend", "EmulatedBackend", "NativeBackend", "get_backend"]

BACKENDS = ("native", "emulated", "csim", "board")


def get_backend(name: str, policy: Policy, seed: int = 0,
                options: dict | None = None) -> Backend:
    """The backend ``name`` configured for ``policy`` (``seed`` keys stochastic rounding).

    ``options``: backend settings (``TrainConfig.extra``); ``board`` reads ``board_overlay``,
    ``board_device`` and ``board_timeout`` (see :mod:`fxemu.backends.board`).
    """
    if name == "board":  # imports pynq when constructed, never before
        from .board import BoardBackend

        return BoardBackend(policy, seed, options)
    if name == "native":
        return NativeBackend(policy)
    if name == "emulated":
        return EmulatedBackend(policy, seed)
    if name == "csim":
        from .csim import CsimBackend

        return CsimBackend(policy, seed)
    raise ValueError(msg("backend", "must be one of " + ", ".join(BACKENDS), name))
