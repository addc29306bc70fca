"""fxemu — bit-accurate emulation of FPGA number formats and datapaths.

Public surface: formats (:class:`Fixed`, :class:`Float`, :func:`parse`, :data:`PRESETS`),
conversion (:func:`quantize`, :func:`to_bits`, :func:`from_bits`) and datapath arithmetic
(:func:`add`, :func:`sub`, :func:`mul`, :func:`fma`, :class:`Mac`, :func:`dot`,
:func:`matmul`, :func:`conv2d`).
"""

from ._errors import BackendUnavailable
from .arith import Mac, add, conv2d, dot, fma, matmul, mul, sub
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
    "Mac",
    "Special",
    "add",
    "conv2d",
    "dot",
    "fma",
    "from_bits",
    "matmul",
    "mul",
    "parse",
    "quantize",
    "sub",
    "to_bits",
]

__version__ = "0.1.0"
