"""The C++ header that types the training-step kernel from a precision policy.

:func:`policy_header` writes ``fxemu_policy.h``: one ``typedef`` per tensor role (the format's
``hls_type``: ``ap_fixed``/``ac_fixed`` for fixed point, ``ac_std_float<W,E>`` for floats) and
one Mac type plus its reduction order per product of the network. The kernel
(``hw/kernels/train_step``) is written once against these names.

What the C++ datapath reproduces exactly, and therefore what this module accepts:

* fixed point: every format of the policy an ``ap_fixed`` (or every one an ``ac_fixed``), any
  rounding but stochastic (and ``rnd_conv_odd`` only in ``ac_fixed``), any overflow;
* floats: every format IEEE-layout (``ac_std_float``: default bias, inf/NaN, subnormals),
  round to nearest even, overflow to inf; an accumulator must hold its operands exactly
  (and a ``mul`` format its operands, and the accumulator the ``mul`` format);
* every Mac order: ``sequential``, ``pairwise``, ``chunk:N`` and ``exact`` (an exact wide
  sum with 20 guard bits: up to 2^20 products, more than the largest reduction, 256·676).

Every number written into the header (widths, integer bits, saturation bits, exponent
widths, the order code and chunk size) is checked for type and range here, before it is
written, whatever the objects' constructors promise: a value out of range is refused, never
written as a literal the compiler would truncate.

Anything else — stochastic rounding (no counter-based generator in the datapath), FTZ floats,
mixed fixed/float or ap/ac policies — is refused with a ``ValueError`` naming the role and
the reason, before anything is compiled.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from .._errors import msg
from ..formats import (
    Fixed,
    FixedOverflow,
    FixedRounding,
    Float,
    FloatOverflow,
    FloatRounding,
    Special,
    fixed_cpp_type,
)
from ..policy import Policy

if TYPE_CHECKING:
    from ..formats import Mac

__all__ = ["MACS", "ROLES", "policy_header"]

#: Tensor roles: C++ name -> (stage, field).
ROLES = {
    "in_t": ("forward", "input"),
    "fw_t": ("forward", "weight"),
    "act_t": ("forward", "activation"),
    "bw_t": ("backward", "weight"),
    "grad_t": ("backward", "grad"),
    "master_t": ("update", "master"),
}

#: Macs: C++ prefix -> (stage, field, the operand roles of each of its products; "one" is 1).
MACS = {
    "conv": ("forward", "conv", (("in_t", "fw_t"),)),
    "dense": ("forward", "dense", (("act_t", "fw_t"),)),
    "dense_dw": ("backward", "dense_dw", (("grad_t", "act_t"), ("grad_t", "one"))),
    "dense_dx": ("backward", "dense_dx", (("grad_t", "bw_t"),)),
    "conv_dw": ("backward", "conv_dw", (("grad_t", "in_t"), ("grad_t", "one"))),
}

_ORDERS = {"sequential": 0, "pairwise": 1}
_CHUNK = re.compile(r"chunk:([1-9][0-9]*)", re.ASCII)
_ONE = Fixed(1, 1, signed=False)

#: Ranges of the numbers the header writes. Elements cross the boundary as 64-bit codes
#: (width <= 64) with fxemu's exponent range; an accumulator node is at most 1024 bits
#: (AP_INT_MAX_W); a chunk size is a C++ ``int`` template argument.
ELEMENT_WIDTH = (1, 64)
NODE_WIDTH = (1, 1024)
INT_BITS = (-1100, 1100)
FLOAT_EXP_BITS = (2, 11)
FLOAT_MAN_BITS = (1, 52)
CHUNK = (1, (1 << 31) - 1)


def _refuse(policy: Policy, what: str, why: str, got: object = None) -> ValueError:
    return ValueError(msg(f"csim policy {policy.name!r}: {what}", why, got,
                          "use backend 'emulated' for this policy"))


def _check_int(policy: Policy, what: str, value: object, bounds: tuple[int, int]) -> int:
    """``value`` if it is an int (not a bool) in ``bounds``, else the refusal."""
    lo, hi = bounds
    if type(value) is not int or not lo <= value <= hi:
        raise _refuse(policy, what, f"must be an int in {lo}..{hi} to be written into C++",
                      value)
    return value


def _check_fields(policy: Policy, what: str, f: object) -> None:
    """Type and range of every field of ``f`` that its C++ spelling writes."""
    if isinstance(f, Fixed):
        w = _check_int(policy, f"{what}.width", f.width, ELEMENT_WIDTH)
        _check_int(policy, f"{what}.int_bits", f.int_bits, INT_BITS)
        _check_int(policy, f"{what}.sat_bits", f.sat_bits, (0, w))
        if not isinstance(f.signed, bool) or f.lib not in ("ap", "ac") \
                or not isinstance(f.rounding, FixedRounding) \
                or not isinstance(f.overflow, FixedOverflow):
            raise _refuse(policy, what, "signed, lib, rounding or overflow is not valid",
                          (f.signed, f.lib, f.rounding, f.overflow))
    elif isinstance(f, Float):
        _check_int(policy, f"{what}.exp_bits", f.exp_bits, FLOAT_EXP_BITS)
        _check_int(policy, f"{what}.man_bits", f.man_bits, FLOAT_MAN_BITS)
        _check_int(policy, f"{what}.bias", f.bias, (0, 1 << 12))
        if not isinstance(f.special, Special):
            raise _refuse(policy, what, "special is not valid", f.special)
    else:
        raise _refuse(policy, what, "must be a Fixed or Float format", type(f).__name__)


def _order(policy: Policy, what: str, order: object) -> tuple[int, int]:
    """The header's (order code, chunk size) of a Mac order, checked."""
    if order == "exact":
        return 3, 1
    if isinstance(order, str) and order in _ORDERS:
        return _ORDERS[order], 1
    m = _CHUNK.fullmatch(order) if isinstance(order, str) else None
    if m is None:
        raise _refuse(policy, f"{what}.order", "must be sequential, pairwise, chunk:N or exact",
                      order)
    return 2, _check_int(policy, f"{what}.order chunk", int(m.group(1)), CHUNK)


def _check_float(policy: Policy, what: str, f: Float) -> str:
    try:
        t = f.hls_type
    except ValueError:
        raise _refuse(policy, what, "ac_std_float needs the IEEE bias and inf/NaN layout",
                      str(f)) from None
    if f.rounding is not FloatRounding.RNE:
        raise _refuse(policy, what, "the float datapath rounds to nearest even only", str(f))
    if f.overflow is not FloatOverflow.INF:
        raise _refuse(policy, what, "the float datapath overflows to inf only", str(f))
    if not f.subnormals:
        raise _refuse(policy, what, "FTZ (subnormals=false) is not in the float datapath", str(f))
    return t


def _check_fixed(policy: Policy, what: str, f: Fixed) -> str:
    if f.rounding is FixedRounding.STOCHASTIC:
        raise _refuse(policy, what, "stochastic rounding has no C++ type mode", str(f))
    try:
        return f.hls_type
    except ValueError as e:
        raise _refuse(policy, what, str(e)) from None


def _holds(a: Float, b: Float) -> bool:
    """Every value of b is a value of a (both with subnormals)."""
    return (a.man_bits >= b.man_bits and a.emax >= b.emax
            and a.emin - a.man_bits <= b.emin - b.man_bits)


def _fixed_node(fmts: list[Fixed], lib: str) -> str:
    """A signed fixed type holding every value of ``fmts`` exactly (I and F the maxima, plus a
    sign bit)."""
    i = max(f.int_bits + (0 if f.signed else 1) for f in fmts)
    fr = max(f.frac_bits for f in fmts)
    width = max(i + fr, 1)
    if not NODE_WIDTH[0] <= width <= NODE_WIDTH[1]:
        raise ValueError(msg("csim Mac node", f"needs more than {NODE_WIDTH[1]} bits", width))
    if not INT_BITS[0] <= i <= INT_BITS[1] + 20:
        raise ValueError(msg("csim Mac node", f"integer bits must be in {INT_BITS[0]}.."
                             f"{INT_BITS[1] + 20}", i))
    return fixed_cpp_type(width, i, lib=lib)


def _product(a: Fixed, b: Fixed) -> Fixed:
    """The exact product format of a and b (as ap_fixed's operator*)."""
    signed = a.signed or b.signed
    return Fixed(a.width + b.width + (1 if signed and not (a.signed and b.signed) else 0),
                 a.int_bits + b.int_bits + (1 if signed and not (a.signed and b.signed) else 0),
                 signed=signed)


def policy_header(policy: Policy) -> str:
    """The text of ``fxemu_policy.h`` for ``policy``.

    Raises ``ValueError`` for a policy the C++ datapath cannot reproduce exactly (see the
    module docstring); the message names the tensor role or Mac and the reason.
    """
    fmts: dict[str, Fixed | Float] = {}
    for name, (stage, field) in ROLES.items():
        fmts[name] = getattr(getattr(policy, stage), field)
    macs: dict[str, Mac] = {k: getattr(getattr(policy, st), fl) for k, (st, fl, _) in
                            MACS.items()}
    if policy.update.sr_bits is not None:
        raise _refuse(policy, "update.sr_bits", "stochastic rounding is not in the datapath",
                      policy.update.sr_bits)
    every = [(f"{ROLES[n][0]}.{ROLES[n][1]}", f) for n, f in fmts.items()]
    orders: dict[str, tuple[int, int]] = {}
    for k, m in macs.items():
        st, fl, _ = MACS[k]
        if m.block:
            raise _refuse(policy, f"{st}.{fl}", "block-format operands are not in the HLS "
                          "datapath (use the emulated backend)", f"a={m.a}, b={m.b}")
        every += [(f"{st}.{fl}.{part}", f) for part, f in
                  (("acc", m.acc), ("mul", m.mul), ("out", m.out)) if f is not None]
        orders[k] = _order(policy, f"{st}.{fl}", m.order)
    for what, f in every:
        _check_fields(policy, what, f)
    kinds = {type(f) for _, f in every}
    if len(kinds) > 1:
        raise _refuse(policy, "formats", "must be all fixed point or all floats",
                      ", ".join(sorted({f"{w}={f}" for w, f in every})))
    is_float = kinds == {Float}
    types: dict[str, str] = {}
    if is_float:
        for what, f in every:
            _check_float(policy, what, f)
        define = "FXEMU_USE_FLOAT"
    else:
        libs = {f.lib for _, f in every}
        if len(libs) > 1:
            raise _refuse(policy, "formats", "must be all ap_fixed or all ac_fixed",
                          sorted(libs))
        for what, f in every:
            _check_fixed(policy, what, f)
        lib = libs.pop()
        define = "FXEMU_USE_AP" if lib == "ap" else "FXEMU_USE_AC"
    for name, f in fmts.items():
        types[name] = f.hls_type

    lines = [
        "// fxemu_policy.h -- generated by fxemu.hw.codegen; do not edit.",
        "// policy: " + json.dumps(policy.to_dict(), sort_keys=True),
        "#ifndef FXEMU_POLICY_H",
        "#define FXEMU_POLICY_H",
        f"#define {define} 1",
        '#include "fxemu_dp.hpp"',
        "",
    ]
    for name, t in types.items():
        stage, field = ROLES[name]
        lines.append(f"typedef {t} {name};  // {stage}.{field}")
    lines.append("")
    for k, m in macs.items():
        stage, field, uses = MACS[k]
        what = f"{stage}.{field}"
        order, chunk = orders[k]
        acc, out = m.acc.hls_type, m.out_format.hls_type
        mul = m.mul.hls_type if m.mul is not None else acc
        if is_float:
            first = m.mul if m.mul is not None else m.acc
            for a, b in uses:
                for r in (a, b):
                    if r != "one" and not _holds(first, fmts[r]):
                        raise _refuse(policy, f"{what}.{'mul' if m.mul else 'acc'}",
                                      f"must hold its operand format {fmts[r]} exactly",
                                      str(first))
            if m.mul is not None and not _holds(m.acc, m.mul):
                raise _refuse(policy, f"{what}.acc", f"must hold the mul format {m.mul} exactly",
                              str(m.acc))
            mac = (f"fxemu::FloatMac<{acc}, {mul}, {out}, "
                   f"{'true' if m.mul is not None else 'false'}>")
        else:
            vals: list[Fixed] = [m.acc] + ([m.mul] if m.mul is not None else [])
            for a, b in uses:
                fa = _ONE if a == "one" else fmts[a]
                fb = _ONE if b == "one" else fmts[b]
                vals.append(_product(fa, fb))
            node = _fixed_node(vals, lib)
            # the exact order: 20 more integer bits hold the sum of up to 2^20 nodes
            wide = _fixed_node([Fixed(v.width + 20, v.int_bits + 20, signed=v.signed)
                                for v in vals], lib)
            mac = (f"fxemu::FixedMac<{acc}, {mul}, {out}, "
                   f"{'true' if m.mul is not None else 'false'}, {node}, {wide}>")
        up = k.upper()
        lines += [f"// {what}: acc={m.acc} mul={m.mul} out={m.out} order={m.order}",
                  f"typedef {mac} {k}_mac_t;",
                  f"#define FXEMU_{up}_ORDER {order}",
                  f"#define FXEMU_{up}_CHUNK {chunk}", ""]
    lines.append("#endif  // FXEMU_POLICY_H")
    return "\n".join(lines) + "\n"
