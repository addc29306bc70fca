"""PYNQ driver of the training-step kernel (``fxemu:hls:fxemu_train_step:1.0``).

Importing this module registers :class:`TrainStepDriver` with PYNQ (``bindto`` the kernel's
VLNV), so ``pynq.Overlay(path)`` hands it out for the kernel's IP. One call of the top function
(:meth:`TrainStepDriver.run`):

1. validate ``op``, ``n``, ``lr`` and the five buffers (``pynq.allocate``\\ d uint64 arrays
   large enough for ``n`` samples, 8-byte aligned physical addresses);
2. check the kernel is idle (``CTRL.ap_idle``);
3. ``flush`` the words the host wrote for this operation (forward: ``x`` and ``params``;
   backward+update: ``params`` and ``dlogits``) so the kernel's m_axi reads see them;
4. write ``op``, ``n``, ``lr_bits`` and the buffers' physical addresses (low and high words)
   into the s_axilite registers at the offsets of :data:`fxemu.hw.layout.REGISTERS`, then
   ``CTRL = ap_start``;
5. poll ``CTRL`` until ``ap_done`` (clear on read), sleeping between reads with a growing
   back-off; past ``timeout`` seconds raise :class:`KernelTimeout` naming the register state;
6. ``invalidate`` what the kernel wrote that the host reads (forward: ``logits``;
   backward+update: ``params``). ``cache`` is the kernel's own DRAM scratch: never synced.

This module imports pynq; only the board path imports it.
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Mapping

import numpy as np

from .._errors import msg
from . import layout
from ._pynq import import_pynq
from .hwh import HLS_REGISTER_NAMES

pynq = import_pynq()

__all__ = ["HOST_READS", "HOST_WRITES", "KernelTimeout", "TrainStepDriver", "describe_ctrl"]

_OPS = {layout.OP_FORWARD: "OP_FORWARD", layout.OP_BACKWARD_UPDATE: "OP_BACKWARD_UPDATE"}

#: Per operation, the buffers the host writes before it (flushed) ...
HOST_WRITES = {layout.OP_FORWARD: ("x", "params"),
               layout.OP_BACKWARD_UPDATE: ("params", "dlogits")}
#: ... and the buffers the host reads after it (invalidated).
HOST_READS = {layout.OP_FORWARD: ("logits",), layout.OP_BACKWARD_UPDATE: ("params",)}


class KernelTimeout(TimeoutError):
    """The kernel did not signal ``ap_done`` in time."""


def describe_ctrl(value: int) -> str:
    """``CTRL=0x1 (ap_start=1 ap_done=0 ap_idle=0 ap_ready=0)``."""
    bits = " ".join(f"{name}={(value >> i) & 1}"
                    for i, name in enumerate(("ap_start", "ap_done", "ap_idle", "ap_ready")))
    return f"CTRL={value:#x} ({bits})"


class TrainStepDriver(pynq.DefaultIP):
    """Driver of one ``fxemu_train_step`` kernel instance in an overlay.

    Constructed by PYNQ from the overlay's IP description. When the description carries a
    register map (an overlay with its ``.hwh``), the offsets of the HLS-generated registers
    are checked against :data:`fxemu.hw.layout.REGISTERS`: an overlay built from another
    version of the kernel is refused instead of being driven with wrong offsets.
    """

    bindto = [layout.VLNV]  # noqa: RUF012  (PYNQ reads this class attribute as a list)

    #: Seconds one operation may take before :meth:`run` gives up.
    timeout = layout.TIMEOUT_S

    def __init__(self, description: dict) -> None:
        super().__init__(description)
        self._check_register_map(description.get("registers") or {})

    @staticmethod
    def _check_register_map(registers: Mapping[str, Mapping]) -> None:
        if not registers:
            return
        wrong = []
        for name, off in layout.REGISTERS.items():
            hls = HLS_REGISTER_NAMES[name]
            if hls not in registers:
                wrong.append(f"{hls} missing")
            elif int(registers[hls]["address_offset"]) != off:
                wrong.append(f"{hls} at {int(registers[hls]['address_offset']):#x}, "
                             f"expected {off:#x}")
        if wrong:
            raise ValueError(msg("overlay register map", "does not match the kernel's layout "
                                 "(fxemu.hw.layout.REGISTERS)", "; ".join(wrong),
                                 "rebuild the overlay from this version's hw/ sources"))

    # -- registers ------------------------------------------------------------------------
    def ctrl(self) -> int:
        """Read ``CTRL`` (this clears ``ap_done`` and ``ap_ready``)."""
        return int(self.read(layout.REGISTERS["CTRL"]))

    def _write64(self, name: str, value: int) -> None:
        self.write(layout.REGISTERS[f"{name}_lo"], value & 0xFFFF_FFFF)
        self.write(layout.REGISTERS[f"{name}_hi"], (value >> 32) & 0xFFFF_FFFF)

    # -- validation -----------------------------------------------------------------------
    @staticmethod
    def _check_args(op: object, n: object, lr: object) -> tuple[int, int, float]:
        if isinstance(op, bool) or not isinstance(op, int | np.integer) or int(op) not in _OPS:
            legal = ", ".join(f"{v} ({k})" for v, k in _OPS.items())
            raise ValueError(msg("op", f"must be one of {legal}", op))
        if isinstance(n, bool) or not isinstance(n, int | np.integer) \
                or not 1 <= int(n) <= layout.BATCH_MAX:
            raise ValueError(msg("n", f"must be an int in 1..{layout.BATCH_MAX} (BATCH_MAX)",
                                 n))
        if isinstance(lr, bool) or not isinstance(lr, int | float | np.floating) \
                or not math.isfinite(float(lr)) \
                or not layout.LR_MIN <= float(lr) < layout.LR_MAX:
            raise ValueError(msg("lr", "must be a finite number in [2^-64, 256) "
                                 "(layout.LR_MIN..LR_MAX)", lr))
        return int(op), int(n), float(lr)

    @staticmethod
    def _check_buffers(buffers: Mapping[str, object], n: int) -> None:
        missing = [b for b in layout.BUFFERS if b not in buffers]
        if missing:
            raise ValueError(msg("buffers", "must hold " + ", ".join(layout.BUFFERS),
                                 sorted(buffers)))
        for b in layout.BUFFERS:
            a = buffers[b]
            need = layout.buffer_words(b, n)
            if not isinstance(a, pynq.buffer.PynqBuffer):
                raise TypeError(msg(f"buffer {b}", "must be allocated with pynq.allocate",
                                    type(a).__name__))
            if a.dtype != np.uint64 or a.ndim != 1 or not a.flags.c_contiguous \
                    or a.size < need:
                raise ValueError(msg(f"buffer {b}", f"must be a contiguous 1-D uint64 buffer "
                                     f"of at least {need} words for n={n}",
                                     (str(a.dtype), a.shape)))
            if a.physical_address is None or a.physical_address % 8:
                raise ValueError(msg(f"buffer {b}", "must have an 8-byte aligned physical "
                                     "address", a.physical_address))

    # -- one call of the top function ------------------------------------------------------
    def run(self, op: int, n: int, lr: float, buffers: Mapping[str, np.ndarray],
            timeout: float | None = None) -> None:
        """Run ``fxemu_train_step(op, n, lr_bits, x, params, logits, dlogits, cache)``.

        Returns when the kernel signalled ``ap_done``; raises :class:`KernelTimeout` after
        ``timeout`` seconds (default :attr:`timeout`), ``RuntimeError`` if the kernel is busy
        when called, ``ValueError``/``TypeError`` for bad arguments (nothing is written then).
        """
        op, n, lr = self._check_args(op, n, lr)
        self._check_buffers(buffers, n)
        limit = self.timeout if timeout is None else float(timeout)
        if not limit > 0:
            raise ValueError(msg("timeout", "must be > 0 seconds", timeout))
        ctrl = self.ctrl()
        if not ctrl & layout.CTRL_AP_IDLE:
            raise RuntimeError(msg("kernel fxemu_train_step", "is busy (not ap_idle)",
                                   describe_ctrl(ctrl)))
        for b in HOST_WRITES[op]:
            buffers[b][:layout.buffer_words(b, n)].flush()
        self.write(layout.REGISTERS["op"], op)
        self.write(layout.REGISTERS["n"], n)
        self._write64("lr_bits", struct.unpack("<Q", struct.pack("<d", lr))[0])
        for b in layout.BUFFERS:
            self._write64(b, int(buffers[b].physical_address))
        self.write(layout.REGISTERS["CTRL"], layout.CTRL_AP_START)
        deadline = time.monotonic() + limit
        pause = 1e-6
        while True:
            ctrl = self.ctrl()
            if ctrl & layout.CTRL_AP_DONE:
                break
            if time.monotonic() > deadline:
                raise KernelTimeout(msg(
                    "kernel fxemu_train_step", f"did not signal ap_done for op {op} "
                    f"({_OPS[op]}), n={n} within {limit:g} s", describe_ctrl(ctrl),
                    "is the overlay loaded and its clock running? (reload the overlay to "
                    "reset the kernel)"))
            time.sleep(pause)
            pause = min(pause * 2, 1e-3)
        for b in HOST_READS[op]:
            buffers[b][:layout.buffer_words(b, n)].invalidate()
