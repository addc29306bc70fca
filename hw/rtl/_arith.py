"""What the fixed and the float datapath descriptions share: the Mac, the operand formats and
the port widths that follow from them."""

from __future__ import annotations

from dataclasses import dataclass

from ...formats import Fixed, Float, Mac


@dataclass(frozen=True)
class Arith:
    """The datapath of ``mac`` on operands of formats ``a`` and ``b`` (a subclass states the
    arithmetic and adds ``flag_width`` and ``node_width``)."""

    mac: Mac
    a: Fixed | Float
    b: Fixed | Float

    @property
    def a_width(self) -> int:
        return self.a.width

    @property
    def b_width(self) -> int:
        return self.b.width

    @property
    def acc_width(self) -> int:
        return self.mac.acc.width

    @property
    def out_width(self) -> int:
        return self.mac.out_format.width

    @property
    def product_latency(self) -> int:
        """Pipeline stages inside :meth:`product` (the PE delays its stream controls by as
        many cycles)."""
        return 0
