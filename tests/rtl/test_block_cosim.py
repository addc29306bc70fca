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

import cosim_suite
import pytest
from datapaths import Datapath

from fxemu.formats import Block, Float, Mac, parse

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
