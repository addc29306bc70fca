"""RTL generator: synthesizable Verilog for the Mac datapaths of a precision policy (Amaranth).

A hardware tool (above the backends): it reads formats and policies, never the backends.

``pe(mac)`` is one processing element, ``array(mac, pes)`` P of them in parallel,
``verilog(mac, pes=..., name=...)`` their Verilog text, ``describe(mac, pes=...)`` the manifest
entry (ports, latency, initiation interval, what the module implements) and
``write(policy, out_dir)`` what ``fxemu hw rtl POLICY --out DIR`` writes: one module per
distinct Mac of the policy and its array, ``manifest.json``, golden vectors from the emulator
and a self-checking Verilog test bench.

Operands are codes of the operand formats ``a`` and ``b`` (two's complement for a signed
Fixed, the ``1 + E + M``-bit pattern for a Float). Given a policy, they are the formats the
stage reads (forward: input/activation × weight; backward: grad × weight or activation); for a
bare Mac they default to :func:`default_operands`. Fixed Macs: products exact, assigned into
``mul`` (every ap_fixed Q mode but stochastic, every O mode, ``sat_bits``), every addition
assigned into ``acc``, the result into ``out``. Float Macs: IEEE formats with ties-to-even
rounding (``subnormals=False``: flush to zero), as :func:`fxemu.dot`. Orders: ``sequential``
and ``chunk:N`` stream one pair per cycle (II = 1) through a pipelined accumulator,
``pairwise`` is a k-leaf pipelined adder tree taking one dot product of length k per cycle.
Block Macs (``Mac(acc, a=Block, b=Block)``: MX and BFP operands with E8M0 scales, a float
accumulator) get the block dot-product unit of :mod:`._block`: one block pair per beat (k
element codes and the scale code of each operand), an exact block term, accumulated by the
float PE's adder in the Mac's order over blocks; the ``a``/``b`` operand formats given with a
block Mac are ignored (the unit takes block codes: conversion happens before it).
Not built (one-line ValueError): stochastic rounding, order ``exact``, Macs mixing fixed and
float formats, block Macs with a float scale (NVFP4) or a fixed accumulator.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from amaranth.back import verilog as _verilog
from amaranth.hdl import Shape
from amaranth.lib import wiring

from ..._errors import msg
from ...formats import Fixed, Float, Mac
from ._block import BlockArith, check_block
from ._fixed import FixedArith, check_fixed
from ._float import FloatArith, check_float
from .pe import LATENCY_STREAM, Array, StreamPE, TreePE, tree_latency

__all__ = ["DEFAULT_TREE_K", "array", "default_operands", "describe", "pe", "verilog", "write"]

#: leaves of the pairwise adder tree when ``k`` is not given
DEFAULT_TREE_K = 8

Format = Fixed | Float


def default_operands(mac: Mac) -> tuple[Format, Format]:
    """Operand formats of a bare Mac: ``mul`` when given; else, for a fixed ``acc``, a TRN/WRAP
    ``Fixed(acc.width // 2, acc.int_bits // 2)`` (a 32-bit accumulator of 16-bit data) and for a
    float ``acc`` the acc format itself."""
    if mac.mul is not None:
        return mac.mul, mac.mul
    acc = mac.acc
    if isinstance(acc, Fixed):
        f = Fixed(max(acc.width // 2, 1), acc.int_bits // 2)
        return f, f
    return acc, acc


def _arith(mac: Mac, a: Format | None, b: Format | None):
    if not isinstance(mac, Mac):
        raise TypeError(msg("rtl mac", "must be an fxemu.Mac", type(mac).__name__))
    if mac.block:
        check_block(mac)
        return BlockArith(mac, mac.a, mac.b)
    da, db = default_operands(mac)
    a, b = (da if a is None else a), (db if b is None else b)
    fmts = {"acc": mac.acc, "mul": mac.mul, "out": mac.out, "operand a": a, "operand b": b}
    kinds = {type(f) for f in fmts.values() if f is not None}
    if kinds == {Fixed}:
        for what, f in fmts.items():
            if f is not None:
                check_fixed(f, f"rtl {what}")
        return FixedArith(mac, a, b)
    if kinds == {Float}:
        for what, f in fmts.items():
            if f is not None:
                check_float(f, f"rtl {what}", operand=what.startswith("operand"))
        return FloatArith(mac, a, b)
    raise ValueError(msg("rtl mac", "formats must be all fixed or all float",
                         ", ".join(f"{k}={v}" for k, v in fmts.items() if v is not None)))


def _tree_k(mac: Mac, k: int | None) -> int:
    if mac.order == "exact":
        raise ValueError(msg("rtl mac order", "exact has no RTL generator yet", mac.order))
    if mac.order != "pairwise":
        if k is not None:
            raise ValueError(msg("rtl k", "only a pairwise Mac takes k", k))
        return 0
    k = DEFAULT_TREE_K if k is None else k
    if type(k) is not int or not 1 <= k <= 1024:
        raise ValueError(msg("rtl k", "must be an int in 1..1024", k))
    return k


def pe(mac: Mac, *, a: Format | None = None, b: Format | None = None,
       k: int | None = None) -> wiring.Component:
    """One processing element computing ``mac``'s dot product (see the module docstring)."""
    ar = _arith(mac, a, b)
    kk = _tree_k(mac, k)
    if kk:
        return TreePE(ar, kk)
    return StreamPE(ar, mac.chunk)


def array(mac: Mac, pes: int, *, a: Format | None = None, b: Format | None = None,
          k: int | None = None) -> wiring.Component:
    """``pes`` PEs in parallel sharing the ``a`` operand: the filters of a conv or the outputs
    of a dense layer computed together."""
    if type(pes) is not int or not 1 <= pes <= 4096:
        raise ValueError(msg("rtl pes", "must be an int in 1..4096", pes))
    _arith(mac, a, b), _tree_k(mac, k)  # validate once, with the error naming the field
    return Array(lambda: pe(mac, a=a, b=b, k=k), pes)


def module_name(mac: Mac, *, pes: int = 1, a: Format | None = None, b: Format | None = None,
                k: int | None = None) -> str:
    """A stable Verilog module name: ``fxemu_mac_<hash>`` (``_x<P>`` for an array)."""
    da, db = default_operands(mac)
    key = repr((mac, None, None, k) if mac.block else
               (mac, da if a is None else a, db if b is None else b, k))
    h = hashlib.sha1(key.encode()).hexdigest()[:10]
    return f"fxemu_mac_{h}" + (f"_x{pes}" if pes > 1 else "")


def verilog(mac: Mac, *, pes: int = 1, name: str | None = None, a: Format | None = None,
            b: Format | None = None, k: int | None = None) -> str:
    """Synthesizable Verilog text of ``pe(mac)`` (``pes == 1``) or of an array of ``pes`` PEs
    with the ports of :func:`array` (top module ``name``, default :func:`module_name`; the PE
    module ``<name>_pe`` is generated once and instantiated ``pes`` times); clock ``clk``,
    synchronous reset ``rst``."""
    if type(pes) is not int or not 1 <= pes <= 4096:
        raise ValueError(msg("rtl pes", "must be an int in 1..4096", pes))
    name = name or module_name(mac, pes=pes, a=a, b=b, k=k)
    unit = pe(mac, a=a, b=b, k=k)
    if pes == 1:
        return _verilog.convert(unit, name=name, emit_src=False)
    text = _verilog.convert(unit, name=f"{name}_pe", emit_src=False)
    return text + _array_wrapper(unit, name, pes)


def _array_wrapper(unit: wiring.Component, name: str, pes: int) -> str:
    """Verilog of ``pes`` instances of ``<name>_pe`` with :class:`~.pe.Array`'s ports."""
    shared = ("valid", "start", "last", "a")
    decl, body = ["  input clk;", "  input rst;"], []
    ports = ["clk", "rst"]
    for pname, member in unit.signature.members.items():
        w = Shape.cast(member.shape).width
        lanes = 1 if pname in shared or pname == "out_valid" else pes
        width = w * lanes
        d = "input" if member.flow == wiring.In else "output"
        decl.append(f"  {d} {'' if width == 1 else f'[{width - 1}:0] '}{pname};")
        ports.append(pname)
    for j in range(pes):
        conn = [".clk(clk)", ".rst(rst)"]
        for pname, member in unit.signature.members.items():
            w = Shape.cast(member.shape).width
            if pname in shared:
                conn.append(f".{pname}({pname})")
            elif pname == "out_valid":
                if j == 0:
                    conn.append(".out_valid(out_valid)")
                else:
                    conn.append(".out_valid()")
            else:
                conn.append(f".{pname}({pname}[{j * w + w - 1}:{j * w}])")
        body.append(f"  {name}_pe pe{j} ({', '.join(conn)});")
    return (f"\n// {pes} PEs sharing a and the stream controls; lane j of b and out at "
            f"[j*W +: W]\nmodule {name}({', '.join(ports)});\n" + "\n".join(decl) + "\n"
            + "\n".join(body) + "\nendmodule\n")


def describe(mac: Mac, *, pes: int = 1, a: Format | None = None, b: Format | None = None,
             k: int | None = None, name: str | None = None) -> dict:
    """The manifest entry of ``verilog(mac, pes=pes)``: module name, ports (name, dir, width,
    meaning), latency in cycles, initiation interval and what it implements."""
    if type(pes) is not int or not 1 <= pes <= 4096:
        raise ValueError(msg("rtl pes", "must be an int in 1..4096", pes))
    ar, kk = _arith(mac, a, b), _tree_k(mac, k)
    wa, wb, wo = ar.a_width, ar.b_width, ar.out_width
    ports = [{"name": "clk", "dir": "in", "width": 1, "meaning": "clock (rising edge)"},
             {"name": "rst", "dir": "in", "width": 1, "meaning": "synchronous reset"},
             {"name": "valid", "dir": "in", "width": 1, "meaning": "a beat of operands"}]
    if kk:
        ports += [
            {"name": "a", "dir": "in", "width": wa * kk,
             "meaning": f"{kk} codes of operand a (element i at bits [{wa}i, {wa}(i+1)))"},
            {"name": "b", "dir": "in", "width": wb * kk * pes,
             "meaning": f"{kk} codes of operand b per PE (PE j, element i at bits "
                        f"[{wb}({kk}j+i), ...))"}]
        latency, ii = (tree_latency(kk) + ar.product_latency,
                       "one dot product of length k per cycle")
        order = f"pairwise adder tree over k = {kk} products"
    else:
        ports += [
            {"name": "start", "dir": "in", "width": 1, "meaning": "first pair of a stream"},
            {"name": "last", "dir": "in", "width": 1, "meaning": "last pair of a stream"},
            {"name": "a", "dir": "in", "width": wa, "meaning": "operand a code (shared)"},
            {"name": "b", "dir": "in", "width": wb * pes,
             "meaning": f"operand b code per PE (PE j at bits [{wb}j, {wb}(j+1)))"}]
        latency, ii = LATENCY_STREAM + ar.product_latency, "one operand pair per cycle"
        order = (f"chunk:{mac.chunk} (sequential within chunks, chunk sums added in turn)"
                 if mac.chunk else "sequential")
    ports += [{"name": "out_valid", "dir": "out", "width": 1, "meaning": "results valid"},
              {"name": "out", "dir": "out", "width": wo * pes,
               "meaning": f"result code per PE (PE j at bits [{wo}j, {wo}(j+1)))"}]
    d = {
        "module": name or module_name(mac, pes=pes, a=a, b=b, k=k),
        "pes": pes,
        "kind": "fixed" if isinstance(ar, FixedArith) else "float",
        "mac": {"acc": str(mac.acc), "mul": None if mac.mul is None else str(mac.mul),
                "out": None if mac.out is None else str(mac.out), "order": mac.order},
        "operands": {"a": str(ar.a), "b": str(ar.b)},
        "k": kk or None,
        "ports": ports,
        "latency": latency,
        "latency_meaning": ("cycles from the beat carrying last to out_valid" if not kk
                            else "cycles from a beat to its out_valid"),
        "initiation_interval": 1,
        "initiation_interval_meaning": ii,
        "implements": ("products a*b exact"
                       + (f", rounded into mul {mac.mul}" if mac.mul is not None else "")
                       + f"; {order}; every addition rounded into acc {mac.acc}; result "
                       + (f"rounded into out {mac.out}" if mac.out is not None else "is acc")
                       + " (bit-identical to fxemu.dot under this Mac)"),
    }
    if isinstance(ar, BlockArith):
        ar.describe_into(d)
    return d


def write(policy, out_dir: str | Path, *, pes: int | None = None) -> Path:
    """Write the RTL of ``policy`` under ``out_dir``: what ``fxemu hw rtl`` writes (see
    :func:`fxemu.hw.rtl.writer.write_policy`); returns ``out_dir``."""
    from .writer import write_policy

    return write_policy(policy, Path(out_dir), pes=pes)
