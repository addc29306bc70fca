"""cocotb co-simulation: the generated arrays driven from Python through their streaming
interface, every lane result compared with fxemu.matmul computed in the simulator's process
(cocotb_datapaths.py), run by cocotb's Python runner on Verilator (marker rtl).

The datapaths are wrapped in one top module (ports ``dp<i>_<port>``), built once and driven
one after another. cocotb pays Python for every clock cycle and its Verilator build exposes
every signal (``--public-flat-rw``), so the default rtl run checks a subset (``CI_SUBSET``: a
fixed streaming, chunked and pairwise PE and two float PEs) with ``STREAMS_CI`` lane results
each; ``-m 'rtl and cocotb_full'`` (tox -e rtl-cocotb) checks every datapath with
``STREAMS_FULL`` (10^5). The CI proof at 10^5 per datapath is test_cosim.py's Verilog bench.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import time
from pathlib import Path

import pytest
from datapaths import DATAPATHS

STREAMS_CI = 2_000
STREAMS_FULL = 100_000
PES_CI, PES_FULL = 4, 8
#: datapaths.py indices the default rtl run drives (fixed16, pairwise, chunk:3, two floats)
CI_SUBSET = (0, 2, 3, 12, 15)
TOP = "cocotb_top"
HERE = Path(__file__).resolve().parent


def _cache() -> Path:
    from vendor import cxx

    return cxx.cache_dir() / "rtl-cocotb"


def _top(indices: tuple[int, ...], pes: int) -> str:
    """Verilog of the generated arrays (``dp<i>``) and of ``cocotb_top``, which exposes each
    array's ports as ``dp<i>_<port>`` (each its own clock ``dp<i>_clk``, so that only the
    array under test is simulated; reset ``rst`` shared)."""
    from fxemu.hw import rtl

    parts, decl, inst, ports = [], ["  input rst;"], [], ["rst"]
    for i in indices:
        dp, name = DATAPATHS[i], f"dp{i}"
        parts.append(rtl.verilog(dp.mac, pes=pes, name=name, a=dp.a, b=dp.b, k=dp.k or None))
        info = rtl.describe(dp.mac, pes=pes, a=dp.a, b=dp.b, k=dp.k or None)
        conn = [".rst(rst)"]
        for p in info["ports"]:
            if p["name"] == "rst":
                continue
            d = "input" if p["dir"] == "in" else "output"
            w = p["width"]
            decl.append(f"  {d} {'' if w == 1 else f'[{w - 1}:0] '}{name}_{p['name']};")
            ports.append(f"{name}_{p['name']}")
            conn.append(f".{p['name']}({name}_{p['name']})")
        inst.append(f"  {name} u{i} ({', '.join(conn)});")
    return ("".join(parts) + f"\nmodule {TOP}({', '.join(ports)});\n" + "\n".join(decl)
            + "\n" + "\n".join(inst) + "\nendmodule\n")


def _build(indices: tuple[int, ...], pes: int) -> tuple[object, Path]:
    """cocotb's Icarus runner with ``cocotb_top`` built under the cache (a folder named by
    the hash of the Verilog and the cocotb version)."""
    from importlib import metadata

    from cocotb_tools.runner import get_runner

    text = _top(indices, pes)
    key = hashlib.sha256("\0".join([text, metadata.version("cocotb")]).encode()).hexdigest()
    d = _cache() / key[:16]
    d.mkdir(parents=True, exist_ok=True)
    (d / "design.v").write_text(text)
    runner = get_runner("icarus")
    runner.build(sources=[d / "design.v"], hdl_toplevel=TOP, build_dir=d / "build",
                 timescale=("1ns", "1ps"), log_file=d / "build.log")
    return runner, d / "build"


def _cosim(indices: tuple[int, ...], pes: int, streams: int, tmp: Path,
           extra: tuple[dict, ...] = ()) -> dict:
    """Build, run the datapaths ``indices`` with ``streams`` lane results on arrays of ``pes``
    PEs, then the ``extra`` cases; ``{label: result}`` and ``"log"``, the simulation's log."""
    t0 = time.perf_counter()
    runner, build_dir = _build(indices, pes)
    t1 = time.perf_counter()
    cases = [{"index": i, "label": f"dp{i}", "streams": streams, "pes": pes, "seed": 100 + i}
             for i in indices]
    wrong = [{"pes": pes, **c} for c in extra]
    out = tmp / "results"
    out.mkdir()
    env = {"FXEMU_COCOTB_CASES": json.dumps(cases), "FXEMU_COCOTB_WRONG": json.dumps(wrong),
           "FXEMU_COCOTB_RESULTS": str(out),
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    try:  # under pytest the runner exits 1 when a cocotb test fails: _check reports it
        runner.test(test_module="cocotb_datapaths", hdl_toplevel=TOP, build_dir=build_dir,
                    test_dir=tmp, extra_env=env, log_file=tmp / "sim.log")
    except SystemExit:
        pass
    t2 = time.perf_counter()
    print(f"\ncocotb co-simulation ({streams} lane results x {len(cases)} datapaths, {pes} "
          f"PEs): build {t1 - t0:.1f} s, run {t2 - t1:.1f} s")
    res = {}
    for c in cases + wrong:
        f = out / f"{c['label']}.json"
        res[c["label"]] = json.loads(f.read_text()) if f.exists() else None
    res["log"] = tmp / "sim.log"
    return res


@pytest.fixture(scope="session")
def cocotb_tools(rtl_tools: None) -> None:
    """cocotb (the rtl extra) and Icarus Verilog (iverilog, vvp) are installed (else skip,
    or fail under FXEMU_REQUIRE_RTL=1)."""
    missing = [m for m in ("cocotb",) if importlib.util.find_spec(m) is None]
    missing += [t for t in ("iverilog", "vvp") if shutil.which(t) is None]
    if missing:
        text = ("needs cocotb (pip install 'fxemu[rtl]') and Icarus Verilog (apt-get install "
                f"iverilog): missing {', '.join(missing)}")
        if os.environ.get("FXEMU_REQUIRE_RTL") == "1":
            pytest.fail(text)
        pytest.skip(text)


@pytest.fixture(scope="session")
def cosim_ci(cocotb_tools: None, tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _cosim(CI_SUBSET, PES_CI, STREAMS_CI, tmp_path_factory.mktemp("cocotb"),
                  extra=(WRONG,))


@pytest.fixture(scope="session")
def cosim_full(cocotb_tools: None, tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _cosim(tuple(range(len(DATAPATHS))), PES_FULL, STREAMS_FULL,
                  tmp_path_factory.mktemp("cocotb_full"))


def _check(res: dict, index: int, streams: int) -> None:
    r = res[f"dp{index}"]
    tail = "" if r is not None else res["log"].read_text()[-3000:]
    assert r is not None, f"{DATAPATHS[index].id}: no result from cocotb:\n{tail}"
    assert r["failed"] == 0, f"{r['failed']} of {r['checked']} differ; {r['first_mismatch']}"
    assert r["results"] == r["streams"]
    assert r["checked"] >= streams


IDS = [d.id for d in DATAPATHS]
#: fixed16's array against expected codes from a wrapping accumulator (the RTL saturates)
WRONG = {"index": 0, "label": "wrong", "streams": 2_000, "seed": 7, "acc_overflow": "wrap"}


@pytest.mark.parametrize("index", CI_SUBSET, ids=[IDS[i] for i in CI_SUBSET])
def test_cocotb_matches_emulator(cosim_ci: dict, index: int) -> None:
    _check(cosim_ci, index, STREAMS_CI)


@pytest.mark.cocotb_full
@pytest.mark.parametrize("index", range(len(DATAPATHS)), ids=IDS)
def test_cocotb_matches_emulator_1e5(cosim_full: dict, index: int) -> None:
    _check(cosim_full, index, STREAMS_FULL)


def test_cocotb_reports_a_mismatch(cosim_ci: dict) -> None:
    """A wrong expectation fails, naming operands, expected and simulated codes."""
    r = cosim_ci["wrong"]
    assert r is not None and r["results"] == r["streams"]
    assert 0 < r["failed"] < r["checked"]
    first = r["first_mismatch"]
    assert first.startswith("fixed16: stream ") and "a codes [" in first
    assert "b codes [" in first and "expected 0x" in first and "simulated 0x" in first
