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

Anything else — stochastic rounding (no counter-based generator in the datapath), FTZ floats,
mixed fixed/float or ap/ac policies — is refused with a ``ValueError`` naming the role and
the reason, before anything is compiled.
"""

from __future__ import annotations

import json

from .._errors import msg
from ..arith import Mac
from ..formats import Fixed, FixedRounding, Float, FloatOverflow, FloatRounding
from ..policy import Policy

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
_ONE = Fixed(1, 1, signed=False)


def _refuse(policy: Policy, what: str, why: str, got: object = None) -> ValueError:
    return ValueError(msg(f"csim policy {policy.name!r}: {what}", why, got,
                          "use backend 'emulated' for this policy"))


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
    if width > 1024:
        raise ValueError(msg("csim Mac node", "needs more than 1024 bits", width))
    return f"ap_fixed<{width},{i}>" if lib == "ap" else f"ac_fixed<{width},{i},true>"


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
    for k, m in macs.items():
        st, fl, _ = MACS[k]
        every += [(f"{st}.{fl}.{part}", f) for part, f in
                  (("acc", m.acc), ("mul", m.mul), ("out", m.out)) if f is not None]
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
        if m.order == "exact":
            order, chunk = 3, 1
        elif m.order.startswith("chunk:"):
            order, chunk = 2, int(m.order[6:])
        else:
            order, chunk = _ORDERS[m.order], 1
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
