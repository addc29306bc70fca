"""Small-float arithmetic of a Mac as Amaranth expressions (round to nearest even, IEEE 754).

A *node* is an exact value ``(-1)^s · m · 2^e`` with flags ``inf``/``nan``; a *code* is the
``1 + E + M``-bit pattern of a :class:`~fxemu.Float`. Every rounding is one correct rounding
of an exact value (products exact, sums exact in a window wide enough that the bits shifted out
of it only matter as a sticky bit kept below the window's last bit).
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value

from ...formats import Float, FloatOverflow, FloatRounding, Special
from ._arith import Arith

#: width of every exponent signal (signed); ample for exponents of formats with E <= 11
EW = 18
#: exponent given to a zero significand so that it is always the smaller addend
ZERO_E = -(1 << (EW - 2))


@dataclass
class Node:
    s: Value
    m: Value
    e: Value
    inf: Value
    nan: Value


def wire(m: Module, v: Value, name: str) -> Signal:
    """``v`` through a named combinational signal (keeps the expression graph a DAG of small
    trees: Amaranth walks expressions without sharing)."""
    s = Signal(v.shape(), name=name)
    m.d.comb += s.eq(v)
    return s


def sext(v: Value, w: int) -> Value:
    """``v`` (signed) sign-extended or truncated to ``w`` bits, as a signed value."""
    v = v.as_signed()
    return (Cat(v, v[-1].replicate(w - len(v))) if len(v) < w else v[:w]).as_signed()


def _bits(n: int) -> int:
    return max(1, int(n).bit_length())


def lead(mod: Module, m: Value) -> Value:
    """Index of the leading one of ``m`` (0 for ``m == 0``)."""
    r: Value = Const(0, _bits(len(m)))
    for i in range(len(m)):
        r = Mux(m[i], i, r)
    return wire(mod, r, "lead")


def shr_sticky(mod: Module, v: Value, amount: Value) -> tuple[Value, Value]:
    """``v >> amount`` and whether any bit shifted out was one (a logarithmic shifter)."""
    st: Value = Const(0, 1)
    for i in range(len(amount)):
        sh = 1 << i
        dropped = (v[:sh] != 0) if sh < len(v) else (v != 0)
        st = wire(mod, st | (amount[i] & dropped), f"st{i}")
        v = wire(mod, Mux(amount[i], v >> sh, v), f"sh{i}")
    return v, st


def _codes(fmt: Float) -> tuple[int, int, int]:
    """(max finite magnitude code, inf magnitude code, quiet NaN magnitude code)."""
    e, m = fmt.exp_bits, fmt.man_bits
    top = (1 << e) - 1
    return ((top - 1) << m) | ((1 << m) - 1), top << m, (top << m) | (1 << (m - 1) if m else 0)


def decode(mod: Module, code: Value, fmt: Float) -> Node:
    """The node of a code of ``fmt`` (no DAZ: a code is the value it encodes)."""
    e_, m_ = fmt.exp_bits, fmt.man_bits
    ex, fr, s = code[m_: m_ + e_], code[:m_], code[m_ + e_]
    m = wire(mod, Cat(fr, ex != 0) if m_ else (ex != 0), "dm")
    e = wire(mod, (Mux(ex == 0, 1, ex) - (fmt.bias + m_)).as_signed(), "de")
    allones = ex == (1 << e_) - 1
    zero1 = Const(0, 1)
    if fmt.special is Special.IEEE:
        inf, nan = allones & (fr == 0 if m_ else Const(1, 1)), allones & (fr != 0 if m_ else zero1)
    elif fmt.special is Special.FN:
        inf, nan = zero1, code[: e_ + m_] == (1 << (e_ + m_)) - 1
    else:  # NONE (FNUZ is refused by check_float)
        inf, nan = zero1, zero1
    return Node(s, m, e, inf, nan)


def round_float(mod: Module, s: Value, mag: Value, e: Value, fmt: Float) -> Value:
    """The code of ``fmt`` nearest to ``(-1)^s · mag · 2^e`` (ties to even; overflow to ±inf;
    with ``subnormals=False`` a result below the smallest normal, rounded as if subnormals
    existed, becomes ±0). ``mag == 0`` gives the zero of sign ``s``."""
    mb, emin = fmt.man_bits, fmt.emin
    mag = wire(mod, mag, "rmag")
    wm = len(mag)
    ld = lead(mod, mag)
    x = (e + ld).as_signed()
    kx = x - emin
    k = wire(mod, Mux(kx < 0, 0, kx)[: EW], "rk")
    sh = wire(mod, (k + (emin - mb) - e).as_signed(), "rsh")
    right = sh > 0
    rs = Mux(sh > wm + 2, wm + 2, Mux(right, sh, 0))[: _bits(wm + 2)]
    v, st = shr_sticky(mod, Cat(Const(0, 2), mag), rs)
    kept_r, rb, st = v[2:], v[1], st | v[0]
    ls = Mux(right, 0, -sh)[: _bits(mb)] if mb else Const(0, 1)
    kept_l = (mag << ls)[: mb + 2]
    kept = wire(mod, Mux(right, kept_r, kept_l), "rkept")
    up = Mux(right, rb & (st | kept[0]), 0)
    code = wire(mod, (k << mb) + (kept + up), "rcode")
    max_code, inf_code, _ = _codes(fmt)
    code = Mux(code > max_code, inf_code, code)
    if not fmt.subnormals:
        code = Mux(code < (1 << mb), 0, code)
    code = Mux(mag == 0, 0, code)
    return wire(mod, Cat(code[: fmt.exp_bits + mb], s), "rout")


def special_code(fmt: Float, nan: Value, inf: Value, s: Value, code: Value) -> Value:
    """``code`` unless ``nan`` (the positive quiet NaN) or ``inf`` (±inf of sign ``s``)."""
    _, inf_code, nan_code = _codes(fmt)
    w = fmt.exp_bits + fmt.man_bits
    return Mux(nan, Const(nan_code, w + 1), Mux(inf, Cat(Const(inf_code, w), s), code))


def check_float(fmt: Float, what: str, *, operand: bool = False) -> None:
    """Refuse what the generator does not build (one-line ValueError naming the field)."""
    from ..._errors import msg

    if operand:
        if fmt.special is Special.FNUZ:
            raise ValueError(msg(what, "fnuz operands have no RTL generator yet", str(fmt)))
        return
    if fmt.rounding is not FloatRounding.RNE:
        raise ValueError(msg(what, "the float PE rounds to nearest even only (rne)", str(fmt)))
    if fmt.special is not Special.IEEE or fmt.overflow is not FloatOverflow.INF:
        raise ValueError(msg(what, "the float PE needs an IEEE format (inf and NaN, "
                             "overflow to inf)", str(fmt)))
    if fmt.man_bits < 1:
        raise ValueError(msg(what, "the float PE needs at least one mantissa bit", str(fmt)))


@dataclass(frozen=True)
class FloatArith(Arith):
    """The float datapath of ``mac`` on operands of formats ``a`` and ``b``.

    An FTZ ``mul`` (else an FTZ ``acc``) reads operands below its smallest normal as zeros
    of the same sign (DAZ). Products are exact and rounded into ``mul`` when given; every
    addition is exact, then
    correctly rounded into ``acc`` (ties to even); the result is rounded into ``out``. The
    stream's inf/NaN operands decide its result as IEEE 754 does (NaN for a NaN, ``inf·0`` or
    ``inf - inf``, else ±inf); a NaN result is the positive quiet NaN.
    """

    a: Float
    b: Float

    @property
    def flag_width(self) -> int:
        return 3  # nan, +inf, -inf among the stream's operand products

    @property
    def _pm(self) -> int:
        m = self.mac.mul
        return m.man_bits + 1 if m is not None else self.a.man_bits + self.b.man_bits + 2

    @property
    def node_width(self) -> int:
        return self._pm + EW + 3

    def _pack(self, n: Node) -> Value:
        return Cat(n.m, sext(n.e, EW), n.s, n.inf, n.nan)

    def _unpack(self, v: Value) -> Node:
        pm = self._pm
        return Node(v[pm + EW], v[:pm], v[pm: pm + EW].as_signed(), v[pm + EW + 1],
                    v[pm + EW + 2])

    def product(self, mod: Module, a: Value, b: Value) -> tuple[Value, Value]:
        x, y = decode(mod, a, self.a), decode(mod, b, self.b)
        first = self.mac.mul if self.mac.mul is not None else self.mac.acc
        if not first.subnormals:
            # an FTZ multiplier (else an FTZ accumulator) reads operands below its smallest
            # normal as zeros of the same sign (DAZ), as fxemu.arith.daz
            for n, name in ((x, "daz_a"), (y, "daz_b")):
                tiny = (n.m != 0) & ((n.e + lead(mod, n.m)).as_signed() < first.emin) \
                    & ~n.inf & ~n.nan
                n.m = wire(mod, Mux(tiny, 0, n.m), name)
        s = x.s ^ y.s
        xz = (x.m == 0) & ~x.inf & ~x.nan
        yz = (y.m == 0) & ~y.inf & ~y.nan
        nan = x.nan | y.nan | (x.inf & yz) | (y.inf & xz)
        inf = (x.inf | y.inf) & ~nan
        flags = Cat(nan, inf & ~s, inf & s)
        m, e = wire(mod, x.m * y.m, "pm"), wire(mod, (x.e + y.e).as_signed(), "pe")
        zero1 = Const(0, 1)
        mul = self.mac.mul
        if mul is None:
            return self._pack(Node(s, m, e, zero1, zero1)), flags
        code = round_float(mod, s, m, e, mul)
        return self._pack(decode(mod, code, mul)), flags

    def _add(self, mod: Module, x: Node, y: Node) -> Value:
        acc = self.mac.acc
        L = max(len(x.m), len(y.m))
        g = acc.man_bits + 3

        def norm(n: Node) -> tuple[Value, Value]:
            lz = wire(mod, ((L - 1) - lead(mod, n.m))[: _bits(L)], "lz")
            mn = wire(mod, (n.m << lz)[:L], "mn")
            en = wire(mod, Mux(n.m == 0, ZERO_E, n.e - lz).as_signed(), "en")
            return mn, en

        xm, xe = norm(x)
        ym, ye = norm(y)
        swap = wire(mod, ye > xe, "swap")
        bm, be, bs = Mux(swap, ym, xm), Mux(swap, ye, xe), Mux(swap, y.s, x.s)
        sm, se, ss = Mux(swap, xm, ym), Mux(swap, xe, ye), Mux(swap, x.s, y.s)
        win = L + g + 2
        be, se, bm, sm = wire(mod, be, "be"), wire(mod, se, "se"), wire(mod, bm, "bm"), \
            wire(mod, sm, "sm")
        d = (be - se).as_signed()
        dcl = Mux(d > win, win, d)[: _bits(win)]
        small, lost = shr_sticky(mod, Cat(Const(0, g + 1), sm), dcl)
        bw = Cat(Const(0, g + 2), bm)
        sw = Cat(lost, small)
        add = bs == ss
        diff = wire(mod, (bw - sw).as_signed(), "diff")
        mag = wire(mod, Mux(add, bw + sw, Mux(diff < 0, -diff, diff)), "mag")
        sign = Mux(add, bs, Mux(diff < 0, ss, bs))
        sign = wire(mod, Mux(mag == 0, x.s & y.s, sign), "sign")
        ew = (be - (g + 2)).as_signed()
        code = round_float(mod, sign, mag[: win + 1], ew, acc)
        nan = x.nan | y.nan | (x.inf & y.inf & (x.s != y.s))
        inf = x.inf | y.inf
        return special_code(acc, nan, inf, Mux(x.inf, x.s, y.s), code)

    def add_acc_node(self, mod: Module, acc: Value, node: Value) -> Value:
        return self._add(mod, decode(mod, acc, self.mac.acc), self._unpack(node))

    def add_nodes(self, mod: Module, x: Value, y: Value) -> Value:
        return self._add(mod, self._unpack(x), self._unpack(y))

    def add_accs(self, mod: Module, x: Value, y: Value) -> Value:
        return self._add(mod, decode(mod, x, self.mac.acc), decode(mod, y, self.mac.acc))

    def acc_of_node(self, mod: Module, node: Value) -> Value:
        return self.add_acc_node(mod, self.zero_acc(), node)

    def zero_acc(self) -> Value:
        return Const(0, self.acc_width)

    def result(self, mod: Module, acc: Value, flags: Value) -> Value:
        """out code: the accumulator rounded into ``out`` (NaN → +qNaN), unless the stream's
        operands were inf/NaN (then their IEEE sum's inf or NaN)."""
        fa = self.mac.acc
        n = decode(mod, acc, fa)
        out = self.mac.out
        if out is None:
            code = special_code(fa, n.nan, Const(0, 1), n.s, acc)
            fmt = fa
        else:
            fmt = out
            code = special_code(out, n.nan, n.inf, n.s,
                                round_float(mod, n.s, n.m, n.e, out))
        nan = flags[0] | (flags[1] & flags[2])
        return special_code(fmt, nan, flags[1] | flags[2], flags[2], code)

