"""fxemu — bit-accurate emulation of FPGA number formats and datapaths.

Public surface: formats (:class:`Fixed`, :class:`Float`, :func:`parse`, :data:`PRESETS`) and
conversion (:func:`quantize`, :func:`to_bits`, :func:`from_bits`).
"""

from ._errors import BackendUnavailable
from .formats import (
    PRESETS,
    Fixed,
    FixedOverflow,
    FixedRounding,
    Float,
    FloatOverflow,
    FloatRounding,
    Format,
    Special,
    parse,
)
from .quantize import from_bits, quantize, to_bits

__all__ = [
    "PRESETS",
    "BackendUnavailable",
    "Fixed",
    "FixedOverflow",
    "FixedRounding",
    "Float",
    "FloatOverflow",
    "FloatRounding",
    "Format",
    "Special",
    "from_bits",
    "parse",
    "quantize",
    "to_bits",
]

__version__ = "0.1.0"
