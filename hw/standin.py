"""A ``pynq.Device`` that stands in for a board: the kernel runs as its C simulation.

PYNQ's own test suite stands in for boards with ``pynq.Device`` subclasses
(``tests/mock_devices.py``: a device with the ``REGISTER_RW`` capability receives every
MMIO access as ``read_registers`` / ``write_registers``; a device whose ``allocate`` returns
``pynq.buffer.PynqBuffer`` objects receives their ``flush`` / ``invalidate``). This device
combines the two into a small model of a Zynq running the overlay:

* **memory**: :meth:`StandinDevice.allocate` hands out numpy-backed ``PynqBuffer``\\ s with
  fake, page-aligned physical addresses. Each buffer has a second copy, the device-side DRAM,
  and the buffers are *not* coherent: ``flush`` copies the host bytes into DRAM and
  ``invalidate`` copies DRAM back, the way the CPU's caches behave towards the HP ports. The
  kernel only ever sees DRAM, so a driver that forgets a flush or an invalidate computes on
  stale data here, as it would on a board.
* **registers**: the kernel's s_axilite block at the base address the overlay's ``.hwh`` gives
  it (32-bit registers of :data:`fxemu.hw.layout.REGISTERS`). Writing ``ap_start`` to ``CTRL``
  reads ``op``, ``n``, ``lr_bits`` and the five buffer addresses from the registers, resolves
  each address to the DRAM of the buffer that holds it, and calls
  ``kernel.run(op, n, lr, x, params, logits, dlogits, cache)`` (:class:`fxemu.hw.csim.CsimKernel`)
  on uint64 views of that DRAM; then ``ap_done``, ``ap_idle`` and ``ap_ready`` are set.
  ``ap_done`` and ``ap_ready`` clear when ``CTRL`` is read, as in Vitis HLS's ``ap_ctrl_hs``
  register block; ``ap_done`` becomes visible only after ``latency_reads`` reads of ``CTRL``,
  so the driver's polling loop runs. ``IP_ISR`` bit 0 is set on completion when ``IP_IER``
  bit 0 is, and toggles on write.

What it does not model: the PL clock and PS configuration that ``Overlay.download`` performs
(load overlays on it with ``download=False``: its PL is "already programmed"), interrupts to
the CPU, timing, and AXI errors (an address outside every buffer raises
:class:`StandinBusError`).
"""

from __future__ import annotations

import ctypes
import itertools
import struct
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .._errors import msg
from . import layout
from ._pynq import import_pynq

pynq = import_pynq()

__all__ = ["DRAM_BASE", "StandinBusError", "StandinDevice"]

#: Where the fake physical addresses of allocated buffers start (inside Zynq's DDR window).
DRAM_BASE = 0x1000_0000
_PAGE = 4096

_CTRL = layout.REGISTERS["CTRL"]
_ISR = layout.REGISTERS["ISR"]
_IER = layout.REGISTERS["IER"]


class Kernel(Protocol):
    """What the stand-in calls on ``ap_start`` (:class:`fxemu.hw.csim.CsimKernel` is one)."""

    def run(self, op: int, n: int, lr: float, x: np.ndarray, params: np.ndarray,
            logits: np.ndarray, dlogits: np.ndarray, cache: np.ndarray) -> None: ...


class StandinBusError(RuntimeError):
    """The kernel addressed memory that no allocated buffer holds (an AXI error on a board)."""


@dataclass
class _Region:
    address: int
    nbytes: int
    dram: np.ndarray  # uint8, the device-side copy
    host: weakref.ref  # the PynqBuffer handed out


class StandinDevice(pynq.Device):
    """A board stand-in whose kernel is ``kernel`` (anything with :meth:`Kernel.run`).

    Parameters
    ----------
    kernel
        Runs one call of the top function (normally a :class:`fxemu.hw.csim.CsimKernel`).
    latency_reads
        Reads of ``CTRL`` after ``ap_start`` before ``ap_done`` shows (>= 0).
    tag
        The PYNQ device tag.

    Attributes
    ----------
    runs : list of tuple
        ``(op, n)`` of every kernel call, in order.
    hang : bool
        When set, ``ap_start`` is accepted but the kernel never finishes (for timeout tests).
    """

    # no _probe_: the stand-in is never enumerated by pynq.Device.devices

    def __init__(self, kernel: Kernel, latency_reads: int = 2, tag: str = "fxemu-standin"):
        super().__init__(tag)
        if isinstance(latency_reads, bool) or not isinstance(latency_reads, int) \
                or latency_reads < 0:
            raise ValueError(msg("latency_reads", "must be an int >= 0", latency_reads))
        self.name = "fxemu-standin"
        self.capabilities = {"REGISTER_RW": True}
        self.kernel = kernel
        self.latency_reads = latency_reads
        self.hang = False
        self.runs: list[tuple[int, int]] = []
        self._regions: dict[int, _Region] = {}
        self._bo = itertools.count(1)
        self._next = DRAM_BASE
        self._ip: tuple[int, int] | None = None
        self._regs = bytearray(0)
        self._busy = False
        self._pending_reads = 0
        self.bitfile_name = ""
        self.timestamp = ""

    # -- metadata: what Overlay asks of a device -------------------------------------------
    def get_bitfile_metadata(self, bitfile_name: str):
        """Parse the ``.hwh`` next to ``bitfile_name`` with PYNQ's metadata parser (as
        PYNQ's embedded device does for a full bitstream) and map the kernel's registers."""
        from pathlib import Path

        from pynqmetadata.frontends import Metadata
        from pynqmetadata.views.runtime import RuntimeMetadataParser

        hwh = Path(bitfile_name).with_suffix(".hwh")
        if not hwh.is_file():
            raise FileNotFoundError(msg("overlay metadata", "no .hwh next to the bitstream",
                                        str(hwh)))
        parser = RuntimeMetadataParser(Metadata(input=hwh))
        kernels = [d for d in parser.ip_dict.values() if d.get("type") == layout.VLNV]
        if len(kernels) != 1:
            raise ValueError(msg(f"overlay {hwh.name}", f"must hold one {layout.VLNV} IP",
                                 len(kernels)))
        self._ip = (int(kernels[0]["phys_addr"]), int(kernels[0]["addr_range"]))
        self._regs = bytearray(self._ip[1])
        self._set(_CTRL, layout.CTRL_AP_IDLE)
        return parser

    def download(self, bitstream, parser=None) -> None:
        """Programming the PL is not modelled; PYNQ's clock setup before it needs a Zynq."""
        raise NotImplementedError(msg("StandinDevice.download", "the stand-in's PL is "
                                      "already programmed", hint="use Overlay(..., "
                                      "download=False)"))

    # -- memory ---------------------------------------------------------------------------
    def allocate(self, shape, dtype, **kwargs):
        """A ``PynqBuffer`` of ``shape``/``dtype`` at the next free page-aligned address."""
        if kwargs:
            raise TypeError(msg("StandinDevice.allocate", "takes no keyword arguments",
                                sorted(kwargs)))
        bo = next(self._bo)
        buf = pynq.buffer.PynqBuffer(shape, dtype, device=self, device_address=self._next,
                                     bo=bo, coherent=False)
        buf[...] = 0
        nbytes = buf.nbytes
        self._regions[bo] = _Region(self._next, nbytes, np.zeros(nbytes, np.uint8),
                                    weakref.ref(buf))
        self._next += -(-max(nbytes, 1) // _PAGE) * _PAGE
        return buf

    def _host_bytes(self, bo: int, offset: int, vaddr: int, length: int) -> tuple:
        region = self._regions.get(bo)
        if region is None or region.host() is None:
            raise StandinBusError(msg("buffer object", "was not allocated by this device "
                                      "or is freed", bo))
        if offset < 0 or offset + length > region.nbytes:
            raise StandinBusError(msg(f"sync of buffer {bo}", f"must lie in 0..{region.nbytes}",
                                      (offset, length)))
        host = np.ctypeslib.as_array((ctypes.c_uint8 * length).from_address(vaddr)) \
            if length else np.zeros(0, np.uint8)
        return region, host

    def flush(self, bo: int, offset: int, vaddr: int, length: int) -> None:
        """Write the host's bytes back to DRAM (a cache clean)."""
        region, host = self._host_bytes(bo, offset, vaddr, length)
        region.dram[offset:offset + length] = host

    def invalidate(self, bo: int, offset: int, vaddr: int, length: int) -> None:
        """Drop the host's copy: it reads DRAM again."""
        region, host = self._host_bytes(bo, offset, vaddr, length)
        host[:] = region.dram[offset:offset + length]

    def _view(self, name: str, address: int, words: int) -> np.ndarray:
        """uint64 view of ``words`` words of DRAM at physical ``address``."""
        for r in self._regions.values():
            if r.address <= address < r.address + max(r.nbytes, 1):
                off = address - r.address
                if off % 8 or off + 8 * words > r.nbytes:
                    raise StandinBusError(msg(
                        f"kernel access {name}", f"must be 8-byte aligned and hold {words} "
                        f"words inside the {r.nbytes}-byte buffer at {r.address:#x}",
                        hex(address)))
                return r.dram[off:off + 8 * words].view(np.uint64)
        raise StandinBusError(msg(f"kernel access {name}", "no allocated buffer holds the "
                                  "address", hex(address)))

    # -- registers ------------------------------------------------------------------------
    def _get(self, off: int) -> int:
        return int.from_bytes(self._regs[off:off + 4], "little")

    def _set(self, off: int, value: int) -> None:
        self._regs[off:off + 4] = (value & 0xFFFF_FFFF).to_bytes(4, "little")

    def _offset(self, address: int, length: int) -> int:
        if self._ip is None:
            raise StandinBusError(msg("register access", "no overlay is loaded", hex(address)))
        base, size = self._ip
        off = address - base
        if off < 0 or off + length > size or off % 4 or length % 4:
            raise StandinBusError(msg("register access", f"must be 32-bit aligned inside "
                                      f"{base:#x}..{base + size - 1:#x}", (hex(address),
                                                                            length)))
        return off

    def read_registers(self, address: int, length: int) -> bytes:
        off = self._offset(address, length)
        if off <= _CTRL < off + length:
            if self._busy and not self.hang:
                if self._pending_reads > 0:
                    self._pending_reads -= 1
                else:
                    self._finish()
            out = bytes(self._regs[off:off + length])
            ctrl = self._get(_CTRL)  # ap_done and ap_ready clear on read
            self._set(_CTRL, ctrl & ~(layout.CTRL_AP_DONE | layout.CTRL_AP_READY))
            return out
        return bytes(self._regs[off:off + length])

    def write_registers(self, address: int, data: bytes) -> None:
        off = self._offset(address, len(data))
        for i in range(0, len(data), 4):
            word = int.from_bytes(data[i:i + 4], "little")
            reg = off + i
            if reg == _CTRL:
                if word & layout.CTRL_AP_START and not self._busy:
                    self._start()
            elif reg == _ISR:
                self._set(_ISR, self._get(_ISR) ^ word)  # toggle on write
            else:
                self._set(reg, word)

    def _start(self) -> None:
        self._busy = True
        self._pending_reads = self.latency_reads
        self._set(_CTRL, layout.CTRL_AP_START)  # busy: not idle, start held

    def _finish(self) -> None:
        r = self.registers()
        op, n = r["op"], r["n"]
        if op not in (layout.OP_FORWARD, layout.OP_BACKWARD_UPDATE) \
                or not 1 <= n <= layout.BATCH_MAX:
            self._busy = False
            self._set(_CTRL, layout.CTRL_AP_IDLE)
            raise StandinBusError(msg("kernel start", f"op must be 0 or 1 and n in "
                                      f"1..{layout.BATCH_MAX}", (op, n)))
        lr = struct.unpack("<d", struct.pack("<Q", r["lr_bits"]))[0]
        views = {b: self._view(b, r[b], layout.buffer_words(b, n)) for b in layout.BUFFERS}
        try:
            self.kernel.run(op, n, lr, views["x"], views["params"], views["logits"],
                            views["dlogits"], views["cache"])
        finally:
            self._busy = False
        self.runs.append((op, n))
        self._set(_CTRL, layout.CTRL_AP_DONE | layout.CTRL_AP_IDLE | layout.CTRL_AP_READY)
        if self._get(_IER) & 1:
            self._set(_ISR, self._get(_ISR) | 1)

    def registers(self) -> Mapping[str, int]:
        """The argument registers as the kernel reads them (64-bit ones joined)."""
        out = {"op": self._get(layout.REGISTERS["op"]), "n": self._get(layout.REGISTERS["n"])}
        for arg in ("lr_bits", *layout.BUFFERS):
            out[arg] = self._get(layout.REGISTERS[f"{arg}_lo"]) | (
                self._get(layout.REGISTERS[f"{arg}_hi"]) << 32)
        return out
