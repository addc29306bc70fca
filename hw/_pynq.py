"""Import PYNQ for the board path only, with a clear error where it is not installed."""

from __future__ import annotations

import warnings
from types import ModuleType

from .._errors import BackendUnavailable, msg

__all__ = ["import_pynq"]


def import_pynq() -> ModuleType:
    """The ``pynq`` module, or :class:`BackendUnavailable` naming pynq and ``fxemu[board]``.

    Off a board PYNQ warns at import that the CPU architecture is unsupported (its GPIO and
    clock helpers need a Zynq); the stand-in device uses neither, so that one warning is
    silenced here. Any other warning or error of the import is left alone.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Pynq does not support the CPU Architecture",
                                category=ResourceWarning)
        try:
            import pynq
        except ImportError as e:
            raise BackendUnavailable(msg(
                "backend 'board'", "needs the PYNQ library (pynq), which is not installed "
                "(the 'board' extra)", str(e),
                "pip install 'fxemu[board]' (pynq pins numpy<2)")) from None
    return pynq
