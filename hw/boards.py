"""Boards as data (``hw/boards/boards.json``): board → part, clock, processing system, scripts.

``part`` is the FPGA part Vitis HLS and Vivado target; ``board_part`` the Vivado board file
(its presets configure the PS's DDR and MIO); ``family`` ``zynq`` (Zynq-7000,
``processing_system7``) or ``zynqmp`` (Zynq UltraScale+, ``zynq_ultra_ps_e``); ``gp_master``
the PS port that reaches the kernel's s_axilite registers, ``hp_slave`` the high-performance
port its m_axi masters use; ``clock_mhz`` the default PL clock of the overlay; ``dsp`` and
``bram_18k`` the part's resources (for the cycle model's notes).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from .._errors import msg

__all__ = ["BOARDS_FILE", "board", "boards"]

BOARDS_FILE = Path(__file__).resolve().parent / "boards" / "boards.json"
_KEYS = {"description", "part", "board_part", "family", "ps", "gp_master", "hp_slave",
         "clock_mhz", "dsp", "bram_18k", "scripts"}


@cache
def boards() -> dict[str, dict]:
    """Every board of ``boards.json`` by name (validated: all keys present)."""
    data = json.loads(BOARDS_FILE.read_text())
    for name, b in data.items():
        if set(b) != _KEYS:
            raise ValueError(msg(f"{BOARDS_FILE.name}: board {name}", "must have the keys "
                                 + ", ".join(sorted(_KEYS)), sorted(b)))
    return data


def board(name: str) -> dict:
    """The board ``name`` (case-insensitive; ``PYNQ-Z2`` = ``pynq-z2``)."""
    key = str(name).lower()
    table = boards()
    if key not in table:
        raise ValueError(msg("board", "must be one of " + ", ".join(table), name))
    return table[key]
