"""Build and run one Verilator bench for a list of datapaths (shared by the co-simulation
tests): golden vectors from fxemu.matmul, the generated arrays, one binary, one run."""

from __future__ import annotations

import time
from pathlib import Path


def cache() -> Path:
    """Where Verilator binaries are kept (by hash of their sources)."""
    from vendor import cxx

    return cxx.cache_dir() / "rtl"


def run(datapaths: list, directory: Path, *, pes: int, streams: int, label: str) -> dict:
    """``{"goldens": {dp<i>: Golden}, "results": {dp<i>: counts}}`` of ``datapaths`` (objects
    with ``mac``, ``a``, ``b``, ``k``) as arrays of ``pes`` PEs, ``streams`` lane results
    each, datapath i seeded with i."""
    from fxemu.hw import rtl
    from fxemu.hw.rtl import bench, sim

    t0 = time.perf_counter()
    goldens, design, cores, tbs = {}, [], [], []
    for i, dp in enumerate(datapaths):
        name = f"dp{i}"
        g = bench.golden(dp.mac, dp.a, dp.b, pes=pes, k=dp.k, streams=streams, seed=i)
        pin, pexp = g.write(directory, name)
        goldens[name] = g
        design.append(rtl.verilog(dp.mac, pes=pes, name=name, a=dp.a, b=dp.b,
                                  k=dp.k or None))
        tbs.append(bench.bench_verilog(g, name, f"{name}_tb", pin.name, pexp.name))
        cores.append((f"{name}_tb", name))
    (directory / "design.v").write_text("".join(design))
    (directory / "tb.v").write_text("".join(tbs) + bench.suite_verilog(cores))
    t1 = time.perf_counter()
    exe = sim.build([directory / "tb.v", directory / "design.v"], "tb", cache())
    t2 = time.perf_counter()
    results = sim.run(exe, directory)
    t3 = time.perf_counter()
    print(f"\n{label}: vectors+verilog {t1 - t0:.1f} s, verilator build {t2 - t1:.1f} s, "
          f"run {t3 - t2:.1f} s")
    return {"goldens": goldens, "results": results}


def report(g, r: dict) -> str:
    """The first mismatch of a bench result: operand codes, expected and simulated code."""
    a, b, e = g.stream(r["stream"])
    lane = r["lane"]
    return (f"first mismatch: stream {r['stream']} lane {lane}: a codes "
            f"{[hex(int(x)) for x in a]}, b codes {[hex(int(x)) for x in b[:, lane]]}, "
            f"expected {int(e[lane]):#x}, simulated {r['got']:#x}")
