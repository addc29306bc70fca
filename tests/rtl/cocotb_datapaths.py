"""cocotb tests, loaded inside the simulator by test_cocotb.py (not a pytest module).

One cocotb test per case of ``$FXEMU_COCOTB_CASES`` (a JSON list of ``{"index", "label",
"streams", "pes", "seed"}``: a datapath of datapaths.py, whose array has the ports
``dp<index>_<port>`` in the top module test_cocotb.py wraps, a label for the result, how many
lane results to check), and the cases of ``$FXEMU_COCOTB_WRONG`` (the same, with
``"acc_overflow"`` replacing the accumulator's overflow mode in the expected codes' Mac only),
which must fail (``expect_fail``): a wrong expectation is caught. Each test computes the
operand codes and expected codes with fxemu in this process (:func:`fxemu.hw.rtl.bench.golden`:
:func:`fxemu.matmul` under the datapath's Mac), drives the generated array through its
streaming interface one beat per clock (streaming PE: ``valid``/``start``/``last``/``a``/``b``;
pairwise tree PE: ``valid``/``a``/``b``), collects every ``out`` word seen with ``out_valid``,
and compares every lane's code with the expected one. It writes
``$FXEMU_COCOTB_RESULTS/<label>.json`` (checked, failed, results seen, cycles, seconds, the
first mismatch) and fails with the first mismatch's operands, expected and simulated codes.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge
from datapaths import DATAPATHS
from fxemu.hw.rtl import bench

CASES: list[dict] = json.loads(os.environ.get("FXEMU_COCOTB_CASES", "[]"))
WRONG: list[dict] = json.loads(os.environ.get("FXEMU_COCOTB_WRONG", "[]"))
RESULTS = Path(os.environ.get("FXEMU_COCOTB_RESULTS", "."))
#: cycles run after the last beat for the last results (above every PE's latency)
DRAIN = 16


def _pack(codes, width: int) -> int:
    """Codes as one integer, element i at bits ``[i·width, (i+1)·width)``."""
    v = 0
    for i, c in enumerate(codes):
        v |= int(c) << (i * width)
    return v


def _beats(g: bench.Golden):
    """``(ports, values)`` and then one tuple of port values per beat, streams in order."""
    wa, wb = g.a_fmt.width, g.b_fmt.width
    if g.k:
        yield ("a", "b")
        for a, b in zip(g.a, g.b, strict=True):
            bw = _pack(b.T.reshape(-1), wb)  # PE j, element i at (j·k + i)·wb
            for s in range(a.shape[0]):
                yield (_pack(a[s], wa), bw)
        return
    yield ("start", "last", "a", "b")
    for a, b in zip(g.a, g.b, strict=True):
        kk = a.shape[1]
        rows = [_pack(b[i], wb) for i in range(kk)]
        for s in range(a.shape[0]):
            for i in range(kk):
                yield (int(i == 0), int(i == kk - 1), int(a[s, i]), rows[i])


async def _run_case(dut, case: dict) -> None:
    dp = DATAPATHS[case["index"]]
    p, pes = f"dp{case['index']}", case["pes"]
    mac = dp.mac
    if case.get("acc_overflow"):
        mac = replace(mac, acc=mac.acc.replace(overflow=case["acc_overflow"]))
    t0 = time.perf_counter()
    g = bench.golden(mac, dp.a, dp.b, pes=pes, k=dp.k, streams=case["streams"],
                     seed=case["seed"])
    dut._log.info("%s: %d lane results from fxemu.matmul in %.1f s", dp.id, g.streams,
                  time.perf_counter() - t0)
    wo = dp.mac.out_format.width
    clk = getattr(dut, f"{p}_clk")
    valid, ov, out = (getattr(dut, f"{p}_{n}") for n in ("valid", "out_valid", "out"))
    t1 = time.perf_counter()
    cocotb.start_soon(Clock(clk, 10, unit="ns").start())
    dut.rst.value = 1
    valid.value = 0
    await RisingEdge(clk)
    await RisingEdge(clk)
    dut.rst.value = 0
    got: list[int] = []
    beats = _beats(g)
    ports = [getattr(dut, f"{p}_{n}") for n in next(beats)]
    cycles = 0
    valid.value = 1
    for values in beats:
        for port, v in zip(ports, values, strict=True):
            port.value = v
        await RisingEdge(clk)
        cycles += 1
        if ov.value:
            got.append(out.value.to_unsigned())
    valid.value = 0
    for _ in range(DRAIN):
        await RisingEdge(clk)
        cycles += 1
        if ov.value:
            got.append(out.value.to_unsigned())
    n_streams = sum(a.shape[0] for a in g.a)
    mask = (1 << wo) - 1
    checked = failed = 0
    first = None
    for s, word in enumerate(got[:n_streams]):
        a, b, e = g.stream(s)
        for j in range(pes):
            sim = (word >> (j * wo)) & mask
            checked += 1
            if sim != int(e[j]):
                failed += 1
                if first is None:
                    first = (f"{dp.id}: stream {s} lane {j}: a codes "
                             f"{[hex(int(x)) for x in a]}, b codes "
                             f"{[hex(int(x)) for x in b[:, j]]}, expected {int(e[j]):#x}, "
                             f"simulated {sim:#x}")
    res = {"id": dp.id, "checked": checked, "failed": failed, "results": len(got),
           "streams": n_streams, "cycles": cycles, "golden_s": t1 - t0,
           "sim_s": time.perf_counter() - t1,
           "first_mismatch": first}
    (RESULTS / f"{case['label']}.json").write_text(json.dumps(res))
    assert len(got) == n_streams, f"{dp.id}: {len(got)} results for {n_streams} streams"
    assert failed == 0, f"{failed} of {checked} lane results differ; first: {first}"


@cocotb.test()
@cocotb.parametrize(case=list(range(len(CASES))))
async def datapath_matches_emulator(dut, case: int) -> None:
    """The array of ``CASES[case]`` against fxemu.matmul, every lane result."""
    await _run_case(dut, CASES[case])


@cocotb.test(expect_fail=True)
@cocotb.parametrize(case=list(range(len(WRONG))))
async def wrong_expectation_is_caught(dut, case: int) -> None:
    """``WRONG[case]``: expected codes from another Mac must not pass."""
    await _run_case(dut, WRONG[case])
