"""The MX/BFP block dot-product unit against the emulator, bit for bit.

Each block datapath runs as one unit (BLOCK) or an array of two (BLOCK_FULL) on >= 10^5 lane
results: dot products of one to four block pairs with random and edge element codes, zero and
max blocks, subnormal elements, scales at 2^±127, NaN scales and cancelling block pairs. The
golden codes come from fxemu.matmul under the same block Mac; one Verilog bench run by
Verilator compares them.

BLOCK runs in CI's rtl step (``-m rtl``); BLOCK_FULL (more element formats, mixed operands, a
flush-to-zero accumulator, the nosat rule) only when ``-m`` names ``rtl_full``
(``tox -e rtl-full``)."""

from __future__ import annotations

import json
from pathlib import Path

import cosim_suite
import pytest
from click.testing import CliRunner
from datapaths import Datapath

from fxemu.cli import cli
from fxemu.formats import Block, Fixed, Float, Mac, parse

STREAMS = 100_000
PES, PES_FULL = 1, 2  # the CI set as single units (build time), the full set as arrays
F32, HALF, BF16 = parse("float32"), parse("float16"), parse("bfloat16")


def _dp(id: str, mac: Mac, k: int = 0) -> Datapath:
    return Datapath(id, mac, mac.a, mac.b, k)


BLOCK = [
    _dp("mxfp8-e4m3-f32", Mac(F32, a="mxfp8_e4m3", b="mxfp8_e4m3")),
    _dp("mxfp8-e5m2-f32-chunk2", Mac(F32, a="mxfp8_e5m2", b="mxfp8_e5m2", order="chunk:2")),
    _dp("mxfp4-e2m1-f32-out-bf16", Mac(F32, a="mxfp4_e2m1", b="mxfp4_e2m1", out=BF16)),
    _dp("mxint8-f32", Mac(F32, a="mxint8", b="mxint8")),
    _dp("bfp6-k16-sm-half-pairwise2", Mac(HALF, a="bfp<6,16,sm>", b="bfp<6,16,sm>",
                                          order="pairwise"), k=2),
]

BLOCK_FULL = [
    _dp("mxfp6-e3m2-f32", Mac(F32, a="mxfp6_e3m2", b="mxfp6_e3m2")),
    _dp("mxfp6-e2m3-f32-chunk3", Mac(F32, a="mxfp6_e2m3", b="mxfp6_e2m3", order="chunk:3")),
    _dp("e4m3-x-e5m2-f32", Mac(F32, a="mxfp8_e4m3", b="mxfp8_e5m2")),
    _dp("mxint8-x-e2m1-half", Mac(HALF, a="mxint8", b="mxfp4_e2m1")),
    _dp("e5m2-f32-ftz", Mac(Float(8, 23, subnormals=False), a="mxfp8_e5m2", b="mxfp8_e5m2")),
    _dp("bfp8-k8-nosat-f32-pairwise3", Mac(F32, a="bfp<8,8,nosat>", b="bfp<8,8,nosat>",
                                           order="pairwise"), k=3),
]


@pytest.fixture(scope="session")
def block_suite(rtl_tools: None, tmp_path_factory: pytest.TempPathFactory) -> dict:
    return cosim_suite.run(BLOCK, tmp_path_factory.mktemp("rtl_block"), pes=PES,
                           streams=STREAMS, label="block unit co-simulation")


@pytest.fixture(scope="session")
def block_full_suite(rtl_tools: None, tmp_path_factory: pytest.TempPathFactory) -> dict:
    return cosim_suite.run(BLOCK_FULL, tmp_path_factory.mktemp("rtl_block_full"), pes=PES_FULL,
                           streams=STREAMS, label="block unit co-simulation (full)")


def _check(dps: list[Datapath], suite: dict, index: int) -> None:
    name = f"dp{index}"
    g, r = suite["goldens"][name], suite["results"][name]
    assert g.streams >= STREAMS
    assert r["failed"] == 0, f"{dps[index].id}: {r['failed']} of {g.streams} differ; " \
        + cosim_suite.report(g, r)
    assert r["passed"] == g.streams


@pytest.mark.parametrize("index", range(len(BLOCK)), ids=[d.id for d in BLOCK])
def test_block_unit_matches_the_emulator(block_suite: dict, index: int) -> None:
    _check(BLOCK, block_suite, index)


@pytest.mark.rtl_full
@pytest.mark.parametrize("index", range(len(BLOCK_FULL)), ids=[d.id for d in BLOCK_FULL])
def test_block_unit_matches_the_emulator_full(block_full_suite: dict, index: int) -> None:
    _check(BLOCK_FULL, block_full_suite, index)


def test_the_block_datapaths_cover_the_formats_and_edges(block_suite: dict) -> None:
    """MX E4M3, E5M2, E2M1, INT8 and a BFP format, every order; the vectors hold NaN scales,
    scales 2^±127, zero blocks and cancelling pairs whose term sum is exactly zero."""
    names = {str(d.mac.a) for d in BLOCK}
    assert {"mxfp8_e4m3", "mxfp8_e5m2", "mxfp4_e2m1", "mxint8"} <= names
    assert any(isinstance(d.mac.a, Block) and str(d.mac.a).startswith("bfp") for d in BLOCK)
    assert {d.mac.order.split(":")[0] for d in BLOCK} == {"sequential", "chunk", "pairwise"}
    g = block_suite["goldens"]["dp0"]
    kw = g.a_fmt.block_size * g.a_fmt.element.width
    scales = [int(w) >> kw for a in g.a for w in a.reshape(-1)]
    assert {0, 254, 255} <= set(scales)
    elems = [(int(w) & ((1 << kw) - 1)) for a in g.a for w in a.reshape(-1)]
    assert 0 in elems  # a whole zero block
    nan_out = sum(int((e == 0x7FC00000).sum()) for e in g.expected)
    assert 0 < nan_out < g.streams // 10


@pytest.mark.parametrize(("mac", "match"), [
    (Mac(F32, a="nvfp4", b="nvfp4"), "rtl operand a: the block unit takes E8M0 scales"),
    (Mac(Fixed(32, 16), a="mxint8", b="mxint8"),
     "rtl acc: the block unit accumulates into a float"),
    (Mac(Float(8, 23, rounding="rtz"), a="mxfp8_e4m3", b="mxfp8_e4m3"),
     "rtl acc: the float PE rounds to nearest even"),
    (Mac(F32, a="mxint8", b="mxint8", order="exact"), "rtl mac order: exact"),
])
def test_an_unbuilt_block_mac_is_one_clear_error(rtl_tools: None, mac: Mac, match: str) -> None:
    from fxemu.hw import rtl

    with pytest.raises(ValueError, match=match):
        rtl.verilog(mac)


def test_hw_rtl_writes_the_block_units_of_an_mx_policy(rtl_tools: None, tmp_path: Path) -> None:
    """`fxemu hw rtl mxfp8`: one block unit per distinct block Mac (E4M3 forward, E5M2
    backward), the manifest states ports, widths, latency and II, and the bench has a core
    per array (the co-simulation above runs these Macs)."""
    out = tmp_path / "mx"
    r = CliRunner().invoke(cli, ["hw", "rtl", "mxfp8", "--out", str(out), "--pes", "1",
                                 "--streams", "64"])
    assert r.exit_code == 0, r.output
    m = json.loads((out / "manifest.json").read_text())
    units = {u["operands"]["a"]: u for u in m["modules"]}
    assert set(units) == {"mxfp8_e4m3", "mxfp8_e5m2"}
    e4, e5 = units["mxfp8_e4m3"], units["mxfp8_e5m2"]
    assert e4["kind"] == "block" and e4["latency"] == 5 and e4["initiation_interval"] == 1
    assert e4["block"]["sum_width"] == 42 and e5["block"]["sum_width"] == 72
    ports = {p["name"]: p["width"] for p in e4["ports"]}
    assert ports["a"] == ports["b"] == 32 * 8 + 8 and ports["out"] == 32
    assert "exact 42-bit two's-complement adder tree" in e4["implements"]
    assert [a["module"] for a in m["arrays"]] == [u["module"] for u in m["modules"]]
    tb = (out / "tb.v").read_text()
    assert all(f"{a['module']}_tb_core" in tb for a in m["arrays"])


@pytest.mark.rtl_full
def test_hw_rtl_check_passes_for_mxfp4_sr(rtl_tools: None, tmp_path: Path) -> None:
    """The preset with stochastic element conversion: the unit takes the converted codes."""
    r = CliRunner().invoke(cli, ["hw", "rtl", "mxfp4_sr", "--out", str(tmp_path / "o"),
                                 "--pes", "1", "--streams", "2000", "--check", "--build-dir",
                                 str(cosim_suite.cache())])
    assert r.exit_code == 0, r.output
    assert r.output.count("PASS 2000 FAIL 0") == 2
