"""Generated RTL against the emulator, bit for bit: every datapath of datapaths.py as an array
of PES PEs, >= 10^5 lane results each (random and edge operand codes), golden codes from
fxemu.matmul, compared in a Verilog bench run by Verilator (one build for all datapaths)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from datapaths import DATAPATHS, FIXED, FLOAT

from fxemu.formats import Fixed, FixedOverflow, FixedRounding

STREAMS = 100_000
PES = 4


def _cache() -> Path:
    from vendor import cxx

    return cxx.cache_dir() / "rtl"


@pytest.fixture(scope="session")
def suite(rtl_tools: None, tmp_path_factory: pytest.TempPathFactory) -> dict:
    from fxemu.hw import rtl
    from fxemu.hw.rtl import bench, sim

    d = tmp_path_factory.mktemp("rtl")
    t0 = time.perf_counter()
    goldens, design, cores, tbs = {}, [], [], []
    for i, dp in enumerate(DATAPATHS):
        name = f"dp{i}"
        g = bench.golden(dp.mac, dp.a, dp.b, pes=PES, k=dp.k, streams=STREAMS, seed=i)
        pin, pexp = g.write(d, name)
        goldens[name] = g
        design.append(rtl.verilog(dp.mac, pes=PES, name=name, a=dp.a, b=dp.b, k=dp.k or None))
        tbs.append(bench.bench_verilog(g, name, f"{name}_tb", pin.name, pexp.name))
        cores.append((f"{name}_tb", name))
    (d / "design.v").write_text("".join(design))
    (d / "tb.v").write_text("".join(tbs) + bench.suite_verilog(cores))
    t1 = time.perf_counter()
    exe = sim.build([d / "tb.v", d / "design.v"], "tb", _cache())
    t2 = time.perf_counter()
    results = sim.run(exe, d)
    t3 = time.perf_counter()
    print(f"\nrtl co-simulation: vectors+verilog {t1 - t0:.1f} s, verilator build {t2 - t1:.1f} s,"
          f" run {t3 - t2:.1f} s")
    return {"goldens": goldens, "results": results}


def _report(g, r: dict) -> str:
    a, b, e = g.stream(r["stream"])
    lane = r["lane"]
    return (f"first mismatch: stream {r['stream']} lane {lane}: a codes "
            f"{[hex(int(x)) for x in a]}, b codes {[hex(int(x)) for x in b[:, lane]]}, "
            f"expected {int(e[lane]):#x}, simulated {r['got']:#x}")


@pytest.mark.parametrize("index", range(len(DATAPATHS)), ids=[d.id for d in DATAPATHS])
def test_rtl_matches_emulator(suite: dict, index: int) -> None:
    name = f"dp{index}"
    g, r = suite["goldens"][name], suite["results"][name]
    assert g.streams >= STREAMS
    assert r["failed"] == 0, f"{DATAPATHS[index].id}: {r['failed']} of {g.streams} differ; " \
        + _report(g, r)
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
