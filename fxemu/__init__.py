"""fxemu — bit-accurate emulation of FPGA number formats and datapaths.

Public surface: formats (:class:`Fixed`, :class:`Float`, :func:`parse`, :data:`PRESETS`),
conversion (:func:`quantize`, :func:`to_bits`, :func:`from_bits`) and datapath arithmetic
(:func:`add`, :func:`sub`, :func:`mul`, :func:`fma`, :class:`Mac`, :func:`dot`,
:func:`matmul`, :func:`conv2d`).
"""

from ._errors import BackendUnavailable
from .arith import (
    Mac,
    add,
    conv2d,
    conv2d_grad_input,
    conv2d_grad_weight,
    dot,
    fma,
    matmul,
    maxpool2d,
    maxpool2d_backward,
    mul,
    sub,
)
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
    "conv2d_grad_input",
    "conv2d_grad_weight",
    "dot",
    "fma",
    "from_bits",
    "matmul",
    "maxpool2d",
    "maxpool2d_backward",
    "mul",
    "parse",
    "quantize",
    "sub",
    "to_bits",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """``fx.train`` (callable: ``fx.train(config)``) is imported on first use, so
    ``import fxemu`` stays light."""
    if name == "train":
        import importlib

        return importlib.import_module(".train", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
