"""Generated RTL against the emulator, bit for bit: every datapath of datapaths.py as an array
of PES PEs, >= 10^5 lane results each (random and edge operand codes), golden codes from
fxemu.matmul, compared in a Verilog bench run by Verilator (one build for all datapaths)."""

from __future__ import annotations

import cosim_suite
import pytest
from datapaths import DATAPATHS, FIXED, FLOAT

from fxemu.formats import Fixed, FixedOverflow, FixedRounding

STREAMS = 100_000
PES = 4


@pytest.fixture(scope="session")
def suite(rtl_tools: None, tmp_path_factory: pytest.TempPathFactory) -> dict:
    return cosim_suite.run(DATAPATHS, tmp_path_factory.mktemp("rtl"), pes=PES, streams=STREAMS,
                           label="rtl co-simulation")


@pytest.mark.parametrize("index", range(len(DATAPATHS)), ids=[d.id for d in DATAPATHS])
def test_rtl_matches_emulator(suite: dict, index: int) -> None:
    name = f"dp{index}"
    g, r = suite["goldens"][name], suite["results"][name]
    assert g.streams >= STREAMS
    assert r["failed"] == 0, f"{DATAPATHS[index].id}: {r['failed']} of {g.streams} differ; " \
        + cosim_suite.report(g, r)
    assert r["passed"] == g.streams


def test_the_datapaths_cover_every_mode() -> None:
    fixed = [f for d in FIXED for f in [*d.formats, d.a, d.b] if isinstance(f, Fixed)]
    q = {f.rounding for f in fixed}
    o = {f.overflow for f in fixed}
    assert q == {r for r in FixedRounding if r.is_hls}  # every ap_fixed/ac_fixed Q mode
    assert o == set(FixedOverflow)
    assert {f.sat_bits for f in fixed if f.overflow is FixedOverflow.WRAP} >= {0, 1, 2, 3}
    assert {f.sat_bits for f in fixed if f.overflow is FixedOverflow.WRAP_SM} >= {0, 1, 2}
    assert len(FIXED) >= 12 and len(FLOAT) >= 4
    orders = {d.mac.order.split(":")[0] for d in DATAPATHS}
    assert orders == {"sequential", "chunk", "pairwise"}
    assert any(not f.subnormals for d in FLOAT for f in d.formats)
