"""The generated kernel header (fxemu.hw.codegen): byte-identical to the stored headers, one
C++ type converter (fxemu.formats), and a range check of every value it writes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from fxemu.hw.codegen import policy_header

from fxemu.formats import Fixed, Float, fixed_cpp_type, float_cpp_type, parse
from fxemu.policy import PRESETS, Policy

DATA = Path(__file__).resolve().parent / "data"


def _custom(name: str, fixed: bool, **macs: dict) -> Policy:
    base = PRESETS["fixed16" if fixed else "fw16bw16"].to_dict()
    for key, mac in macs.items():
        stage = "forward" if key in ("conv", "dense") else "backward"
        base[stage][key] = mac
    base["name"] = name
    return Policy.from_dict(base)


_FX = "ap_fixed<32,16,AP_RND_CONV,AP_SAT,0>"
_AC = "ac_fixed<32,16,true,AC_RND_CONV_ODD,AC_SAT_SYM>"

#: Policies covering every spelling the header has: ap and ac fixed (signed, unsigned, N sat
#: bits, every order, mul and out parts) and IEEE floats (every order, mul and out).
POLICIES = {
    "fixed16": PRESETS["fixed16"],
    "fw16bw16": PRESETS["fw16bw16"],
    "fw32bw32": PRESETS["fw32bw32"],
    "fixed_orders": _custom(
        "fixed_orders", True,
        conv={"acc": _FX, "order": "pairwise"},
        dense={"acc": _FX, "mul": "ap_fixed<24,10,AP_RND,AP_SAT,0>", "order": "chunk:100"},
        dense_dw={"acc": "ap_fixed<28,14,AP_TRN,AP_WRAP,3>", "order": "pairwise"},
        dense_dx={"acc": _FX, "out": "ap_ufixed<20,8,AP_RND_CONV,AP_SAT,0>", "order": "chunk:3"},
        conv_dw={"acc": _FX, "order": "exact"}),
    "float_orders": _custom(
        "float_orders", False,
        conv={"acc": "float32", "order": "pairwise"},
        dense={"acc": "float32", "mul": "float32", "order": "chunk:100"},
        dense_dw={"acc": "float32", "order": "pairwise"},
        dense_dx={"acc": "float32", "out": "bfloat16", "order": "chunk:3"},
        conv_dw={"acc": "float32", "order": "exact"}),
}
_ac = PRESETS["fixed16"].to_dict()
for _stage in ("forward", "backward", "update"):
    for _k, _v in _ac[_stage].items():
        if isinstance(_v, str):
            _ac[_stage][_k] = "ac_fixed<16,8,true,AC_RND_CONV_ODD,AC_SAT>"
        elif isinstance(_v, dict):
            _v["acc"] = _AC
_ac["forward"]["input"] = "ac_fixed<9,1,false,AC_TRN,AC_WRAP>"
_ac["forward"]["dense"]["order"] = "chunk:7"
_ac["name"] = "ac_mixed"
POLICIES["ac_mixed"] = Policy.from_dict(_ac)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_header_is_byte_identical_to_the_stored_one(name: str) -> None:
    want = (DATA / f"fxemu_policy_{name}.h").read_bytes()
    assert policy_header(POLICIES[name]).encode() == want


# -- one converter -------------------------------------------------------------------------------
_CPP_TOKENS = ("ap_fixed<", "ap_ufixed<", "ac_fixed<", "ac_std_float<")
_CONVERTERS = {"fixed_cpp_type", "float_cpp_type"}


def _spellings(path: Path) -> list[str]:
    """Functions of ``path`` outside the converters holding an f-string that spells a C++
    fixed or float type."""
    import ast

    tree = ast.parse(path.read_text(), str(path))
    found = []

    def visit(node: ast.AST, func: str) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            func = node.name
        if isinstance(node, ast.JoinedStr) and func not in _CONVERTERS:
            text = "".join(v.value for v in node.values
                           if isinstance(v, ast.Constant) and isinstance(v.value, str))
            if any(t in text for t in _CPP_TOKENS):
                found.append(f"{path.name}:{func}:{node.lineno}")
        for child in ast.iter_child_nodes(node):
            visit(child, func)

    visit(tree, "<module>")
    return found


def test_only_the_converter_spells_cpp_types() -> None:
    import fxemu

    root = Path(fxemu.__file__).resolve().parent.parent
    files = [*sorted((root / "fxemu").rglob("*.py")), *sorted((root / "hw").rglob("*.py"))]
    assert any(p.name == "codegen.py" for p in files)
    assert [s for p in files for s in _spellings(p)] == []


def test_the_spelling_check_finds_a_second_converter(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def node(w, i):\n    return f'ap_fixed<{w},{i}>'\n")
    assert _spellings(bad) == ["bad.py:node:2"]


@pytest.mark.parametrize("text", [
    "ap_fixed<16,8,AP_RND_CONV,AP_SAT,0>", "ap_ufixed<9,1,AP_TRN,AP_WRAP,0>",
    "ap_fixed<28,14,AP_TRN,AP_WRAP_SM,3>", "ac_fixed<16,8,true,AC_RND_CONV_ODD,AC_SAT_SYM>",
    "ac_fixed<9,-3,false,AC_TRN_ZERO,AC_SAT_ZERO>", "ap_fixed<64,80,AP_RND_INF,AP_SAT,0>",
])
def test_fixed_hls_type_is_the_converter(text: str) -> None:
    f = parse(text)
    assert isinstance(f, Fixed)
    spelled = fixed_cpp_type(f.width, f.int_bits, signed=f.signed, lib=f.lib,
                             rounding=f.rounding, overflow=f.overflow, sat_bits=f.sat_bits)
    assert f.hls_type == str(f) == spelled == text
    assert parse(spelled) == f


def test_short_fixed_spelling_and_float() -> None:
    assert fixed_cpp_type(52, 36, lib="ac") == "ac_fixed<52,36,true>"
    assert fixed_cpp_type(40, 12) == "ap_fixed<40,12>"
    assert parse(fixed_cpp_type(40, 12)) == Fixed(40, 12)
    for name in ("float16", "float32", "bfloat16", "float64"):
        f = parse(name)
        assert isinstance(f, Float)
        assert f.hls_type == float_cpp_type(f.width, f.exp_bits) == \
            f"ac_std_float<{f.width},{f.exp_bits}>"
    with pytest.raises(ValueError, match="give both rounding and overflow"):
        fixed_cpp_type(8, 4, rounding=Fixed(8, 4).rounding)


# -- range checks of what the header writes ------------------------------------------------------
def _with_mac_field(policy: Policy, stage: str, role: str, **fields: object) -> Policy:
    """``policy`` with fields of one Mac set behind the constructor's back."""
    import copy

    mac = copy.copy(getattr(getattr(policy, stage), role))
    for k, v in fields.items():
        object.__setattr__(mac, k, v)
    return dataclasses.replace(policy, **{stage: dataclasses.replace(
        getattr(policy, stage), **{role: mac})})


def _with_format_field(policy: Policy, stage: str, role: str, **fields: object) -> Policy:
    import copy

    f = copy.copy(getattr(getattr(policy, stage), role))
    for k, v in fields.items():
        object.__setattr__(f, k, v)
    return dataclasses.replace(policy, **{stage: dataclasses.replace(
        getattr(policy, stage), **{role: f})})


@pytest.mark.parametrize("order", [
    "chunk:18446744073709551619",  # 2^64 + 3: g++ would run chunk:3 from the literal
    f"chunk:{1 << 31}", "chunk:0", "chunk:-3", "chunk:+5", "chunk: 5", "chunk:5_0",
    "chunk:\u0665", "chunk:5??/", "fused:4", "", None, 7,
])
def test_codegen_refuses_a_mac_order_out_of_range(order: object) -> None:
    for name in ("fixed16", "fw16bw16"):
        bad = _with_mac_field(PRESETS[name], "forward", "dense", order=order)
        with pytest.raises(ValueError, match=r"forward\.dense\.order"):
            policy_header(bad)


def test_codegen_writes_the_largest_chunk() -> None:
    ok = _with_mac_field(PRESETS["fixed16"], "forward", "dense", order=f"chunk:{(1 << 31) - 1}")
    assert f"#define FXEMU_DENSE_CHUNK {(1 << 31) - 1}\n" in policy_header(ok)


@pytest.mark.parametrize(("stage", "role", "field", "value", "what"), [
    ("forward", "input", "width", (1 << 64) + 16, r"forward\.input\.width"),
    ("forward", "input", "width", 65, r"forward\.input\.width"),
    ("forward", "input", "width", True, r"forward\.input\.width"),
    ("forward", "input", "width", 16.0, r"forward\.input\.width"),
    ("update", "master", "int_bits", 1 << 40, r"update\.master\.int_bits"),
    ("update", "master", "int_bits", -(1 << 40), r"update\.master\.int_bits"),
    ("backward", "grad", "sat_bits", 17, r"backward\.grad\.sat_bits"),
    ("backward", "grad", "sat_bits", -1, r"backward\.grad\.sat_bits"),
    ("forward", "weight", "lib", "xx", r"forward\.weight"),
])
def test_codegen_refuses_a_fixed_field_out_of_range(stage: str, role: str, field: str,
                                                    value: object, what: str) -> None:
    bad = _with_format_field(PRESETS["fixed16"], stage, role, **{field: value})
    with pytest.raises(ValueError, match=what):
        policy_header(bad)


@pytest.mark.parametrize(("field", "value"), [("exp_bits", 1 << 33), ("exp_bits", 12),
                                              ("man_bits", 53), ("man_bits", 1 << 70)])
def test_codegen_refuses_a_float_field_out_of_range(field: str, value: int) -> None:
    bad = _with_format_field(PRESETS["fw16bw16"], "forward", "activation", **{field: value})
    with pytest.raises(ValueError, match=rf"forward\.activation\.{field}"):
        policy_header(bad)


def test_codegen_refuses_a_mac_part_out_of_range() -> None:
    acc = dataclasses.replace(PRESETS["fixed16"].forward.conv.acc)
    object.__setattr__(acc, "width", 1 << 64)
    bad = _with_mac_field(PRESETS["fixed16"], "forward", "conv", acc=acc)
    with pytest.raises(ValueError, match=r"forward\.conv\.acc\.width"):
        policy_header(bad)
