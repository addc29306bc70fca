"""Backends: the kernels a datapath provides to the network in :mod:`fxemu.nn`.

``native``: numpy/BLAS in float32 or float64 (no per-operation rounding model: BLAS order).
``emulated``: fxemu's bit-exact kernels under any :class:`fxemu.policy.Policy`.
``csim``: the HLS accelerator in C simulation; ``board``: the accelerator through PYNQ
(:mod:`fxemu.backends.board`, on a board or the stand-in device).
"""

from __future__ import annotations

from .._errors import BackendUnavailable, msg
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
        raise BackendUnavailable(msg(f"backend {name!r}", "needs the HLS accelerator sources "
                                     "and C-simulation bridge, which this build does not have",
                                     hint="use backend 'emulated' for bit-exact emulation"))
    raise ValueError(msg("backend", "must be one of " + ", ".join(BACKENDS), name))
