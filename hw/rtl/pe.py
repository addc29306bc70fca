"""Amaranth components: the Mac processing element (streaming or adder tree) and arrays of them.

Streaming PE (orders ``sequential`` and ``chunk:N``): one operand pair per cycle on ``a``/``b``
with ``valid``; ``start`` marks a stream's first pair and ``last`` its final one (both for a
stream of one). A stream's result appears on ``out`` with ``out_valid`` high for one cycle,
``LATENCY_STREAM`` cycles after the beat carrying ``last``; the initiation interval is one
pair per cycle, and a new stream may start on the beat after ``last``.

Tree PE (order ``pairwise``): ``k`` operand pairs per beat (``a``/``b`` hold k codes, element
i at bits ``[i·W, (i+1)·W)``), one whole dot product per cycle, through a pipelined balanced
adder tree (adjacent pairs level by level, an odd last node carried up).

Array: P PEs sharing ``a`` (and ``valid``/``start``/``last``), each with its own ``b`` code(s)
(lane j at bits ``[j·Wb', (j+1)·Wb')``) and ``out`` lane (``[j·Wout, (j+1)·Wout)``).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

#: cycles from the beat carrying ``last`` to ``out_valid`` (product, accumulate, output)
LATENCY_STREAM = 3


def tree_levels(k: int) -> int:
    """Adder levels of a balanced pairwise tree over k leaves."""
    n, levels = k, 0
    while n > 1:
        n, levels = (n + 1) // 2, levels + 1
    return levels


def tree_latency(k: int) -> int:
    """Cycles from a beat to its ``out_valid`` in the tree PE: products, levels, output."""
    return tree_levels(k) + 2


def delayed(m: Module, sigs: tuple, cycles: int) -> tuple:
    """``sigs`` through ``cycles`` registers each (themselves for 0)."""
    for c in range(cycles):
        nxt = tuple(Signal(len(s), name=f"{s.name}_d{c + 1}") for s in sigs)
        m.d.sync += [n.eq(s) for n, s in zip(nxt, sigs, strict=True)]
        sigs = nxt
    return sigs


class StreamPE(wiring.Component):
    """One streaming multiply-accumulate PE for ``arith`` (a FixedArith or FloatArith) with
    accumulation order ``sequential`` (``chunk == 0``) or ``chunk:N``."""

    def __init__(self, arith, chunk: int = 0) -> None:
        self.arith, self.chunk = arith, chunk
        super().__init__({"valid": In(1), "start": In(1), "last": In(1),
                          "a": In(arith.a_width), "b": In(arith.b_width),
                          "out_valid": Out(1), "out": Out(arith.out_width)})

    def elaborate(self, platform) -> Module:
        m, ar = Module(), self.arith
        # stage 1: product (rounded into mul)
        node, flags = ar.product(m, self.a, self.b)
        p1 = Signal(ar.node_width)
        f1 = Signal(max(ar.flag_width, 1))
        v1, s1, l1 = Signal(), Signal(), Signal()
        valid, start, last = delayed(m, (self.valid, self.start, self.last),
                                     ar.product_latency)
        m.d.sync += [p1.eq(node), v1.eq(valid), s1.eq(start), l1.eq(last)]
        if ar.flag_width:
            m.d.sync += f1.eq(flags)
        # stage 2: accumulate
        acc = Signal(ar.acc_width)
        sfl = Signal(max(ar.flag_width, 1))
        res = Signal(ar.acc_width)
        rfl = Signal(max(ar.flag_width, 1))
        fin = Signal()
        zero = ar.zero_acc()
        fl_new = Mux(s1, 0, sfl) | f1
        if self.chunk == 0:
            acc_new = ar.add_acc_node(m, Mux(s1, zero, acc), p1)
            total_new = acc_new
            with m.If(v1):
                m.d.sync += acc.eq(acc_new)
        else:
            cnt = Signal(range(self.chunk + 1))
            tot = Signal(ar.acc_width)
            fresh = Signal()
            cnt_cur = Mux(s1, 0, cnt)
            part_new = ar.add_acc_node(m, Mux(s1 | (cnt == 0), zero, acc), p1)
            end = (cnt_cur == self.chunk - 1) | l1
            is_fresh = s1 | fresh
            total_new = ar.add_accs(m, Mux(is_fresh, zero, tot), part_new)
            with m.If(v1):
                m.d.sync += [acc.eq(part_new), cnt.eq(Mux(end, 0, cnt_cur + 1))]
                with m.If(end):
                    m.d.sync += [tot.eq(total_new), fresh.eq(0)]
                with m.Else():
                    m.d.sync += fresh.eq(is_fresh)
        with m.If(v1):
            m.d.sync += sfl.eq(fl_new)
        m.d.sync += fin.eq(v1 & l1)
        with m.If(v1 & l1):
            m.d.sync += [res.eq(total_new), rfl.eq(fl_new)]
        # stage 3: output rounding
        m.d.sync += [self.out_valid.eq(fin), self.out.eq(ar.result(m, res, rfl))]
        return m


class TreePE(wiring.Component):
    """One pairwise PE: ``k`` products per beat through a pipelined balanced adder tree."""

    def __init__(self, arith, k: int) -> None:
        self.arith, self.k = arith, k
        super().__init__({"valid": In(1), "a": In(arith.a_width * k),
                          "b": In(arith.b_width * k),
                          "out_valid": Out(1), "out": Out(arith.out_width)})

    def elaborate(self, platform) -> Module:
        m, ar, k = Module(), self.arith, self.k
        wa, wb = ar.a_width, ar.b_width
        level: list[tuple[str, Signal]] = []
        fl = Signal(max(ar.flag_width, 1))
        flags_all = Const(0, max(ar.flag_width, 1))
        for i in range(k):
            node, flags = ar.product(m, self.a[i * wa:(i + 1) * wa], self.b[i * wb:(i + 1) * wb])
            r = Signal(ar.node_width, name=f"p{i}")
            m.d.sync += r.eq(node)
            level.append(("p", r))
            if ar.flag_width:
                flags_all = flags_all | flags
        m.d.sync += fl.eq(flags_all)
        valid = Signal()
        m.d.sync += valid.eq(delayed(m, (self.valid,), ar.product_latency)[0])
        depth = 0
        while len(level) > 1:
            depth += 1
            nxt: list[tuple[str, Signal]] = []
            for j in range(0, len(level) - 1, 2):
                (tx, x), (ty, y) = level[j], level[j + 1]
                if tx == "p" and ty == "p":
                    v = ar.add_nodes(m, x, y)
                elif tx == "a" and ty == "a":
                    v = ar.add_accs(m, x, y)
                else:
                    v = ar.add_acc_node(m, x if tx == "a" else y, y if tx == "a" else x)
                r = Signal(ar.acc_width, name=f"t{depth}_{j // 2}")
                m.d.sync += r.eq(v)
                nxt.append(("a", r))
            if len(level) % 2:
                t, x = level[-1]
                r = Signal(len(x), name=f"t{depth}_{len(nxt)}")
                m.d.sync += r.eq(x)
                nxt.append((t, r))
            f2, v2 = Signal(len(fl)), Signal()
            m.d.sync += [f2.eq(fl), v2.eq(valid)]
            level, fl, valid = nxt, f2, v2
        t, root = level[0]
        acc = ar.acc_of_node(m, root) if t == "p" else ar.add_accs(m, ar.zero_acc(), root)
        m.d.sync += [self.out_valid.eq(valid), self.out.eq(ar.result(m, acc, fl))]
        return m


class Array(wiring.Component):
    """``pes`` PEs sharing the ``a`` operand(s) and the stream controls."""

    def __init__(self, make_pe, pes: int) -> None:
        self.pes = [make_pe() for _ in range(pes)]
        proto = self.pes[0]
        ports = {}
        for name, member in proto.signature.members.items():
            shared = name in ("valid", "start", "last", "a")
            width = member.shape.width if hasattr(member.shape, "width") else member.shape
            ports[name] = (In if member.flow == wiring.In else Out)(
                width if shared or name == "out_valid" else width * pes)
        super().__init__(ports)

    def elaborate(self, platform) -> Module:
        m = Module()
        for j, pe in enumerate(self.pes):
            m.submodules[f"pe{j}"] = pe
            for name in pe.signature.members:
                mine, theirs = getattr(self, name), getattr(pe, name)
                if name in ("valid", "start", "last", "a"):
                    m.d.comb += theirs.eq(mine)
                elif name == "b":
                    w = len(theirs)
                    m.d.comb += theirs.eq(mine[j * w:(j + 1) * w])
                elif name == "out":
                    w = len(theirs)
                    m.d.comb += mine[j * w:(j + 1) * w].eq(theirs)
                elif name == "out_valid" and j == 0:
                    m.d.comb += mine.eq(theirs)
        return m


__all__ = ["LATENCY_STREAM", "Array", "StreamPE", "TreePE", "tree_latency", "tree_levels"]
_ = Cat
