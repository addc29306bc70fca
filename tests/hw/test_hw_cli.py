"""``fxemu hw header`` / ``golden``: the files written through a fresh temporary and a rename
are the bytes the library functions give."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from fxemu.hw.codegen import policy_header
from fxemu.hw.tools.golden import write_golden

from fxemu.cli import cli
from fxemu.policy import PRESETS


def test_header_and_golden_files_are_the_library_bytes(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(cli, ["hw", "header", "fixed16", "-o", str(tmp_path / "p.h")],
                        catch_exceptions=False)
    assert res.exit_code == 0
    assert (tmp_path / "p.h").read_text() == policy_header(PRESETS["fixed16"])
    res = runner.invoke(cli, ["hw", "golden", "fixed16", "-o", str(tmp_path / "g.bin"),
                              "--json", str(tmp_path / "p.json")], catch_exceptions=False)
    assert res.exit_code == 0
    want = write_golden(PRESETS["fixed16"], tmp_path / "want.bin")
    assert (tmp_path / "g.bin").read_bytes() == want.read_bytes()
    assert json.loads((tmp_path / "p.json").read_text()) == PRESETS["fixed16"].to_dict()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.bin", "p.h", "p.json", "want.bin"]


def test_golden_checks_the_words_the_bench_reads(tmp_path: Path) -> None:
    pol = PRESETS["fixed16"]
    for kw, match in (({"n": 0}, "golden batch"), ({"n": 1 << 32}, "golden batch"),
                      ({"n": 2.0}, "golden batch"), ({"steps": -1}, "golden steps"),
                      ({"steps": 1 << 40}, "golden steps"), ({"lr": 256.0}, "golden lr"),
                      ({"lr": 0.0}, "golden lr"), ({"lr": float("nan")}, "golden lr")):
        with pytest.raises(ValueError, match=match):
            write_golden(pol, tmp_path / "g.bin", **kw)
    assert not (tmp_path / "g.bin").exists()


def test_board_field_errors_are_one_capped_line() -> None:
    try:
        runner = CliRunner(mix_stderr=False)
    except TypeError:
        runner = CliRunner()
    ok = runner.invoke(cli, ["hw", "board", "pynq-z2", "part"], catch_exceptions=False)
    assert ok.exit_code == 0 and ok.stdout.strip() == "xc7z020clg400-1"
    bad = runner.invoke(cli, ["hw", "board", "pynq-z2", "k" * 5000], catch_exceptions=False)
    assert bad.exit_code == 2
    err = bad.stderr.strip()
    assert err.startswith("fxemu: error: key: must be one of ") and "part" in err
    assert err.endswith("... (5000 characters)") and "\n" not in err
