"""Smoke test: benchmarks/bench_mx.py runs end to end on tiny inputs and every peer row agrees
with fxemu's codes (no timing claims)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_mx.py"


def test_bench_mx_quick(capsys) -> None:
    spec = importlib.util.spec_from_file_location("bench_mx", BENCH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_mx"] = mod
    try:
        spec.loader.exec_module(mod)
        rows = mod.run(mod.parse_args(["--quick"]))
        mod.report(rows)
    finally:
        sys.modules.pop("bench_mx", None)
    out = capsys.readouterr().out
    assert "| fxemu | to_bits (float32 in) | mxfp8_e4m3 | 1 |" in out
    assert "| torchao to_mx | mxfp8_e5m2 | 2 |" in out or "torchao: skipped" in out
    assert "block Mac / sequential Mac" in out
    peers = [r for r in rows if r.mismatches is not None]
    assert len(peers) >= 2 * 2 and all(r.mismatches == 0 for r in peers)
    assert {r.library for r in peers} >= {"gfloat", "ml_dtypes"}
