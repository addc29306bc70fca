"""Fixed-point arithmetic of a Mac as Amaranth expressions (ap_fixed assignment semantics).

A *node* here is a signed Amaranth value ``v`` with ``f`` fraction bits (value ``v·2^-f``);
a *code* is the W-bit two's-complement (or unsigned) pattern of a :class:`~fxemu.Fixed`.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Cat, Const, Module, Mux, Value

from ...formats import Fixed, FixedOverflow, FixedRounding
from ._arith import Arith

Q = FixedRounding
OV = FixedOverflow


def operand_value(code: Value, fmt: Fixed) -> Value:
    """The signed value of a W-bit code of ``fmt`` (an unsigned format gains a zero sign bit)."""
    return code.as_signed() if fmt.signed else Cat(code, Const(0, 1)).as_signed()


def round_fixed(x: Value, fx: int, fmt: Fixed) -> Value:
    """The W-bit code of ``fmt`` that the exact value ``x·2^-fx`` (``x`` signed) is assigned to.

    With ``d = fx - F`` dropped bits, ``t = floor(x·2^-d)`` and residue ``r``: the rounding
    increment of each ap_fixed Q mode, then the O mode on the rounded value (``sat_bits`` as
    ap_fixed forces them; ``wrap_sm`` as ``ap_fixed_base::overflow_adjust``).
    """
    w, d = fmt.width, fx - fmt.frac_bits
    neg = x[-1]
    if d > 0:
        t = x >> d
        r = x[:d]
        half = 1 << (d - 1)
        above, tie, inexact = r > half, r == half, r != 0
        inc = {
            Q.TRN: Const(0, 1),
            Q.RND: r >= half,
            Q.RND_ZERO: above | (tie & neg),
            Q.RND_MIN_INF: above,
            Q.RND_INF: above | (tie & ~neg),
            Q.RND_CONV: above | (tie & t[0]),
            Q.TRN_ZERO: neg & inexact,
            Q.RND_CONV_ODD: above | (tie & ~t[0]),
        }[fmt.rounding]
        y = t + inc
    else:
        t = x << -d
        y = t
    lo, hi = fmt.min_int, fmt.max_int
    ovf = (y > hi) | (y < lo)
    code = y[:w]
    o, n = fmt.overflow, fmt.sat_bits
    if o is OV.SAT:
        return Mux(y > hi, Const(hi, w), Mux(y < lo, Const(lo & ((1 << w) - 1), w), code))
    if o is OV.SAT_ZERO:
        return Mux(ovf, Const(0, w), code)
    if o is OV.SAT_SYM:
        if not fmt.signed:
            return Mux(y > hi, Const(hi, w), Mux(y < 0, Const(0, w), code))
        symlo = (lo | 1) & ((1 << w) - 1)  # -max as both vendors write min | 1
        return Mux(y > hi, Const(hi, w), Mux(y < -hi, Const(symlo, w), code))
    rng = ((1 << (n - 1)) - 1) << (w - n) if n > 1 else 0
    top = 1 << (w - 1)
    mask = (1 << w) - 1
    if o is OV.WRAP:
        if n == 0:
            return code
        if fmt.signed:
            forced = Mux(neg, (code | top) & (mask & ~rng), (code & (mask & ~top)) | rng)
        else:
            forced = code | rng | top
        return Mux(ovf, forced[:w], code)
    # WRAP_SM (signed ap_fixed)
    ro = code[w - 1]
    if n == 0:
        ld = t[w] if len(t) > w else t[-1]
        flipped = Cat((~code)[: w - 1], ld)
        adj = Mux(ld != ro, flipped, code)
    elif n == 1:
        adj = Mux(neg != ro, ~code, code)
        adj = Cat(adj[: w - 1], neg)
    else:
        lno = code[w - n]
        c2 = Mux(lno == neg, ~code, code)
        c2 = Mux(neg, c2 & (mask & ~rng), c2 | rng)
        adj = Cat(c2[: w - 1], neg)
    return Mux(ovf, adj[:w], code)


def check_fixed(fmt: Fixed, what: str) -> None:
    """Refuse what the generator does not build (one-line ValueError naming the field)."""
    from ..._errors import msg

    if fmt.rounding is Q.STOCHASTIC:
        raise ValueError(msg(what, "stochastic rounding has no RTL generator yet", str(fmt)))
    if not fmt.rounding.is_hls:
        raise ValueError(msg(what, f"rounding {fmt.rounding.value!r} is not an ap_fixed/ac_fixed "
                             "mode; the RTL generator builds those only", str(fmt)))
    if fmt.lib == "ac" and fmt.overflow is OV.SAT_ZERO and fmt.signed and fmt.width % 32 == 0:
        raise ValueError(msg(what, "ac_fixed SAT_ZERO of a width multiple of 32 is not built",
                             str(fmt)))


@dataclass(frozen=True)
class FixedArith(Arith):
    """The fixed-point datapath of ``mac`` on operands of formats ``a`` and ``b``.

    Products ``a·b`` are exact (``Wa + Wb`` bits) and assigned into ``mul`` when given; every
    addition is exact, then assigned into ``acc``; results are assigned into ``out``.
    """

    a: Fixed
    b: Fixed

    @property
    def flag_width(self) -> int:
        return 0

    @property
    def node_width(self) -> int:
        """Bits of a product node (the packed register between multiplier and adder)."""
        m = self.mac.mul
        return m.width if m is not None else self.a.width + self.b.width + 2

    def _pf(self) -> int:
        m = self.mac.mul
        return m.frac_bits if m is not None else self.a.frac_bits + self.b.frac_bits

    def product(self, mod: Module, a: Value, b: Value) -> tuple[Value, Value]:
        """(packed product node, operand flags) of two operand codes."""
        p = operand_value(a, self.a) * operand_value(b, self.b)
        m = self.mac.mul
        if m is not None:
            return round_fixed(p, self.a.frac_bits + self.b.frac_bits, m), Const(0, 0)
        return p, Const(0, 0)

    def _node(self, packed: Value) -> tuple[Value, int]:
        m = self.mac.mul
        if m is not None:
            return operand_value(packed, m), m.frac_bits
        return packed.as_signed(), self._pf()

    def _acc(self, code: Value) -> tuple[Value, int]:
        return operand_value(code, self.mac.acc), self.mac.acc.frac_bits

    @staticmethod
    def _sum(x: tuple[Value, int], y: tuple[Value, int]) -> tuple[Value, int]:
        f = max(x[1], y[1])
        return (x[0] << (f - x[1])) + (y[0] << (f - y[1])), f

    def add_acc_node(self, mod: Module, acc: Value, node: Value) -> Value:
        """acc code of ``R_acc(acc + product node)``."""
        s, f = self._sum(self._acc(acc), self._node(node))
        return round_fixed(s, f, self.mac.acc)

    def add_nodes(self, mod: Module, x: Value, y: Value) -> Value:
        """acc code of ``R_acc(x + y)`` of two product nodes."""
        s, f = self._sum(self._node(x), self._node(y))
        return round_fixed(s, f, self.mac.acc)

    def add_accs(self, mod: Module, x: Value, y: Value) -> Value:
        """acc code of ``R_acc(x + y)`` of two acc codes."""
        s, f = self._sum(self._acc(x), self._acc(y))
        return round_fixed(s, f, self.mac.acc)

    def acc_of_node(self, mod: Module, node: Value) -> Value:
        """acc code of ``R_acc(0 + node)``."""
        v, f = self._node(node)
        return round_fixed(v, f, self.mac.acc)

    def zero_acc(self) -> Value:
        return Const(0, self.acc_width)

    def result(self, mod: Module, acc: Value, flags: Value) -> Value:
        """out code of the final accumulator."""
        out = self.mac.out
        if out is None:
            return acc
        v, f = self._acc(acc)
        return round_fixed(v, f, out)


