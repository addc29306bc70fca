"""fxemu — bit-accurate emulation of FPGA number formats and datapaths.

Public surface: formats (:class:`Fixed`, :class:`Float`, :func:`parse`, :data:`PRESETS`),
conversion (:func:`quantize`, :func:`to_bits`, :func:`from_bits`) and datapath arithmetic
(:func:`add`, :func:`sub`, :func:`mul`, :func:`fma`, :class:`Mac`, :func:`dot`,
:func:`matmul`, :func:`conv2d`).

``import fxemu`` loads only the formats and the ``Mac`` description (no Numba): the conversion
and arithmetic names are imported from their modules on first use (PEP 562), so
``fxemu --help`` and ``fxemu formats`` stay fast. ``from fxemu import X``, ``fx.X``,
``dir(fx)`` and ``from fxemu import *`` behave as if every name had been imported eagerly.
"""

from __future__ import annotations

import importlib
import sys
import types

from ._errors import BackendUnavailable
from .formats import (
    BLOCK_PRESETS,
    FUSED_PRESETS,
    PRESETS,
    Block,
    Fixed,
    FixedOverflow,
    FixedRounding,
    Float,
    FloatOverflow,
    FloatRounding,
    Format,
    Fused,
    Mac,
    Special,
    bfp,
    p3109,
    parse,
)

__all__ = [
    "BLOCK_PRESETS",
    "FUSED_PRESETS",
    "PRESETS",
    "BackendUnavailable",
    "Block",
    "ConvGeometry",
    "Fixed",
    "FixedOverflow",
    "FixedRounding",
    "Float",
    "FloatOverflow",
    "FloatRounding",
    "Format",
    "Fused",
    "Mac",
    "Special",
    "add",
    "avgpool2d",
    "avgpool2d_backward",
    "bfp",
    "conv2d",
    "conv2d_grad_input",
    "conv2d_grad_weight",
    "conv_geometry",
    "dot",
    "fma",
    "from_bits",
    "matmul",
    "maxpool2d",
    "maxpool2d_backward",
    "mul",
    "p3109",
    "parse",
    "quantize",
    "sub",
    "to_bits",
]

__version__ = "0.1.0"

#: Public names imported on first use: name -> the submodule that defines it.
_LAZY = {
    **dict.fromkeys(("add", "conv2d", "conv2d_grad_input", "conv2d_grad_weight", "dot", "fma",
                     "matmul", "maxpool2d", "maxpool2d_backward", "mul", "sub"), "arith"),
    **dict.fromkeys(("ConvGeometry", "avgpool2d", "avgpool2d_backward", "conv_geometry"),
                    "arith"),
    **dict.fromkeys(("from_bits", "quantize", "to_bits"), "quantize"),
}


def __getattr__(name: str) -> object:
    """The lazily imported public names; ``fx.train`` (callable: ``fx.train(config)``) is the
    training module, imported on first use."""
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    elif name == "train":
        return importlib.import_module(".train", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | {"train"})


class _Package(types.ModuleType):
    """The ``fxemu`` module object: importing the submodule :mod:`fxemu.quantize` binds the
    function ``quantize`` as the package attribute, not the module (as the eager
    ``from .quantize import quantize`` of earlier versions did), so ``fx.quantize`` is always
    the function whichever import ran first."""

    def __setattr__(self, name: str, value: object) -> None:
        if (name == "quantize" and isinstance(value, types.ModuleType)
                and value.__name__ == f"{__name__}.quantize"):
            value = value.quantize
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
