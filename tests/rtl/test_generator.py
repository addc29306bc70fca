"""The generator's API, manifest, errors and the `fxemu hw rtl` command (marker rtl)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import fxemu as fx
from fxemu.cli import cli
from fxemu.formats import Fixed, Float, Mac

FX16 = Fixed(16, 8, rounding="rnd_conv", overflow="sat")
MAC16 = Mac(Fixed(32, 16, rounding="rnd_conv", overflow="sat"))


@pytest.fixture(autouse=True)
def _tools(rtl_tools: None) -> None:
    """Every test here needs the rtl extra."""


def test_describe_states_ports_latency_and_ii() -> None:
    from fxemu.hw import rtl

    d = rtl.describe(MAC16, pes=12)
    ports = {p["name"]: (p["dir"], p["width"]) for p in d["ports"]}
    assert ports["a"] == ("in", 16) and ports["b"] == ("in", 16 * 12)
    assert ports["out"] == ("out", 32 * 12) and ports["out_valid"] == ("out", 1)
    assert {"clk", "rst", "valid", "start", "last"} <= set(ports)
    assert d["latency"] == 3 and d["initiation_interval"] == 1 and d["pes"] == 12
    assert d["operands"] == {"a": str(FX16.replace(rounding="trn", overflow="wrap")),
                             "b": str(FX16.replace(rounding="trn", overflow="wrap"))}
    t = rtl.describe(Mac(Float(8, 23), order="pairwise"), k=5, a=Float(5, 10), b=Float(5, 10))
    assert t["k"] == 5 and t["latency"] == 3 + 2  # 3 adder levels, products, output
    assert {p["name"] for p in t["ports"]} == {"clk", "rst", "valid", "a", "b", "out_valid",
                                               "out"}


def test_verilog_names_the_top_and_instantiates_the_pe() -> None:
    from fxemu.hw import rtl

    one = rtl.verilog(MAC16, name="mac16")
    assert "module mac16(" in one and "endmodule" in one
    arr = rtl.verilog(MAC16, pes=3, name="arr")
    assert "module arr_pe(" in arr and "module arr(" in arr
    assert arr.count("arr_pe pe") == 3
    assert rtl.module_name(MAC16) == rtl.module_name(MAC16)
    assert rtl.module_name(MAC16) != rtl.module_name(Mac(MAC16.acc, order="chunk:4"))


@pytest.mark.parametrize(("mac", "kw", "match"), [
    (Mac(Fixed(16, 8, rounding="stochastic")), {}, "rtl acc: stochastic"),
    (Mac(Fixed(16, 8), order="exact"), {}, "rtl mac order: exact"),
    (Mac(Fixed(16, 8, rounding="jam")), {}, "rtl acc: rounding 'jam' is not an ap_fixed"),
    (Mac(Float(8, 23), mul=Fixed(8, 4)), {}, "all fixed or all float"),
    (Mac(Float(8, 23, rounding="rtz")), {}, "rtl acc: the float PE rounds to nearest even"),
    (Mac(Float(4, 3, special="fn")), {}, "rtl acc: the float PE needs an IEEE format"),
    (Mac(Float(8, 23)), {"a": fx.parse("float8_e4m3fnuz")}, "rtl operand a: fnuz"),
    (Mac(Fixed(16, 8)), {"k": 4}, "rtl k: only a pairwise Mac"),
    (Mac(Fixed(16, 8), order="pairwise"), {"k": 0}, "rtl k: must be an int in 1..1024"),
    (Mac(Fixed(16, 8)), {"pes": 0}, "rtl pes: must be an int"),
])
def test_what_is_not_built_is_one_clear_error(mac: Mac, kw: dict, match: str) -> None:
    from fxemu.hw import rtl

    with pytest.raises(ValueError, match=match):
        rtl.verilog(mac, **kw)


def test_the_amaranth_array_matches_the_emulator() -> None:
    """rtl.array (the Amaranth component; verilog() instantiates the PE module instead) in
    Amaranth's simulator against fxemu.matmul."""
    from amaranth.sim import Simulator
    from fxemu.hw import rtl

    mac = Mac(Fixed(10, 3, rounding="rnd_conv", overflow="sat_sym"), order="chunk:2")
    a_fmt = b_fmt = Fixed(6, 2)
    rng = np.random.default_rng(3)
    arr = rtl.array(mac, 3, a=a_fmt, b=b_fmt)
    streams = [(rng.integers(0, 64, k), rng.integers(0, 64, (k, 3))) for k in (1, 4, 5, 2)]
    got = []

    async def bench(ctx) -> None:
        for a, b in streams:
            for i in range(len(a)):
                ctx.set(arr.valid, 1)
                ctx.set(arr.start, i == 0)
                ctx.set(arr.last, i == len(a) - 1)
                ctx.set(arr.a, int(a[i]))
                ctx.set(arr.b, sum(int(b[i, j]) << (6 * j) for j in range(3)))
                await ctx.tick()
                if ctx.get(arr.out_valid):
                    got.append(ctx.get(arr.out))
        ctx.set(arr.valid, 0)
        for _ in range(4):
            await ctx.tick()
            if ctx.get(arr.out_valid):
                got.append(ctx.get(arr.out))

    sim = Simulator(arr)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    expected = []
    for a, b in streams:
        r = fx.matmul(fx.from_bits(a.astype(np.uint64), a_fmt)[None, :],
                      fx.from_bits(b.astype(np.uint64), b_fmt), mac)
        codes = fx.to_bits(r, mac.acc).reshape(-1)
        expected.append(sum(int(c) << (10 * j) for j, c in enumerate(codes)))
    assert got == expected


def test_hw_rtl_writes_a_bench_that_passes(tmp_path: Path) -> None:
    from fxemu.hw.rtl import sim
    from vendor import cxx

    out = tmp_path / "rtl"
    cache = cxx.cache_dir() / "rtl"
    args = ["hw", "rtl", "fixed16", "--out", str(out), "--pes", "2", "--streams", "200",
            "--check", "--build-dir", str(cache)]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    m = json.loads((out / "manifest.json").read_text())
    assert m["policy"] == "fixed16" and len(m["modules"]) == 1 and len(m["arrays"]) == 1
    arr = m["arrays"][0]
    assert arr["pes"] == 2 and arr["latency"] == 3 and len(arr["roles"]) == 5
    assert "rounded into acc ap_fixed<32,16,AP_RND_CONV,AP_SAT,0>" in arr["implements"]
    assert f"rtl check {arr['module']}: PASS {arr['bench']['lane_results']} FAIL 0" in r.output
    files = [out / f for f in m["bench"]["files"]]
    assert all(f.exists() for f in files)
    exe = sim.build(files, "tb", cache)  # the binary --check built
    # a corrupted golden vector is caught, with its stream and lane
    exp = out / arr["bench"]["vectors"][1]
    lines = exp.read_text().splitlines()
    lines[3] = ("0" if lines[3][0] != "0" else "1") + lines[3][1:]
    exp.write_text("\n".join(lines) + "\n")
    bad = sim.run(exe, out)[arr["module"]]
    assert bad["failed"] == 1 and bad["stream"] == 3 and bad["lane"] == 1
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0  # rewritten vectors pass again


def test_hw_rtl_refuses_an_unbuilt_policy_in_one_line(tmp_path: Path) -> None:
    from fxemu.policy import PRESETS

    pol = PRESETS["fixed16"].to_dict()
    pol["forward"]["conv"] = {"acc": "ap_fixed<32,16,AP_RND_CONV,AP_SAT>", "order": "exact"}
    path = tmp_path / "p.json"
    path.write_text(json.dumps(pol))
    r = CliRunner().invoke(cli, ["hw", "rtl", str(path), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2
    assert "policy.forward.conv: rtl mac order: exact has no RTL generator" in r.output
    assert "Traceback" not in r.output


def test_hw_rtl_without_the_extra_names_it(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(sys.modules):
        if name == "amaranth" or name.startswith(("amaranth.", "fxemu.hw.rtl")):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "amaranth", None)
    r = CliRunner().invoke(cli, ["hw", "rtl", "fixed16", "--out", str(tmp_path)])
    assert r.exit_code == 1
    assert r.output.strip().splitlines()[-1].endswith(
        "fxemu hw rtl needs the 'rtl' extra: pip install 'fxemu[rtl]' (module amaranth is "
        "missing)")
