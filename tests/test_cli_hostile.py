"""Hostile input to the ``fxemu`` command: every failure is one line ``fxemu: error: ...``
naming the value or file, exit status 2 for a bad argument and 1 for a failed operation, and
an error message quotes at most a bounded part of the input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from fxemu._errors import QUOTE_MAX, msg, quote
from fxemu.cli import cli
from fxemu.policy import PRESETS, load_policy


@pytest.fixture
def runner() -> CliRunner:
    try:  # click 8.1 mixes stderr into stdout unless told not to; 8.2+ keeps them apart
        return CliRunner(mix_stderr=False)
    except TypeError:
        return CliRunner()


def fails(runner: CliRunner, *args: str, code: int) -> str:
    """The one error line of a failing command."""
    res = runner.invoke(cli, list(args), catch_exceptions=False)
    assert res.exit_code == code, (res.exit_code, res.output, res.stderr)
    err = res.stderr
    assert err.startswith("fxemu: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err.strip()


# -- quantize -----------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["0x1p99999999999", "-0x1p99999999999", "0x1.8p+1025",
                                   "0X1P2000"])
def test_quantize_a_hex_float_beyond_double(runner: CliRunner, value: str) -> None:
    err = fails(runner, "quantize", "float16", value, code=2)
    assert "VALUES: beyond the range of a double" in err and value in err
    assert "inf" in err


def test_quantize_long_garbage_is_quoted_short(runner: CliRunner) -> None:
    value = "z" * 100_000
    err = fails(runner, "quantize", "float16", value, code=2)
    assert "VALUES: not a number" in err
    assert len(err) < 300 and "... (100000 characters)" in err


def test_info_long_format_is_quoted_short(runner: CliRunner) -> None:
    err = fails(runner, "info", "ap_fixed<" + "9" * 50_000 + ">", code=2)
    assert len(err) < 400, err[:500]


# -- msg() caps what it quotes --------------------------------------------------------------------
def test_msg_caps_the_quoted_value() -> None:
    short = "x" * 10
    assert msg("f", "bad", short) == f"f: bad; got {short!r}"
    long = "y" * 5000
    text = msg("f", "bad", long, "hint")
    assert text == f"f: bad; got {repr(long)[:QUOTE_MAX - 3]}... (5000 characters) (hint)"
    assert quote(list(range(1000))).endswith(f"... ({len(repr(list(range(1000))))} characters)")
    assert len(quote("a" * 81)) > len(quote("a" * 78)) and quote("a" * 78) == repr("a" * 78)


# -- policy files ---------------------------------------------------------------------------------
@pytest.mark.parametrize("top", ["[1, 2]", '"fixed16"', "null", "3", "true"])
def test_policy_json_whose_top_level_is_not_a_table(tmp_path: Path, top: str) -> None:
    path = tmp_path / "p.json"
    path.write_text(top)
    with pytest.raises(ValueError, match=rf"policy file {path}: must hold a table"):
        load_policy(path)


def test_policy_json_nested_too_deep(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ValueError, match=rf"policy file {path}: cannot be parsed"):
        load_policy(path)


@pytest.mark.parametrize("command", [["train", "--epochs", "1", "--policy"],
                                     ["hw", "estimate"], ["hw", "header", "-o", "x.h"],
                                     ["hw", "golden", "-o", "x.bin"]])
@pytest.mark.parametrize("policy", ["nosuchpolicy", "missing.toml", "LIST"])
def test_a_bad_policy_is_a_usage_error_everywhere(runner: CliRunner, tmp_path: Path,
                                                  command: list[str], policy: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    if policy == "LIST":
        policy = str(tmp_path / "list.json")
        Path(policy).write_text("[]")
    monkeypatch.chdir(tmp_path)
    err = fails(runner, *command, policy, code=2)
    assert "policy" in err
    assert not (tmp_path / "x.h").exists() and not (tmp_path / "x.bin").exists()


def test_train_policy_check_keeps_a_good_policy(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(PRESETS["fixed16"].to_dict()))
    from fxemu.cli import _policy_arg

    assert _policy_arg(None, None, str(path)) == str(path)  # type: ignore[arg-type]
    assert _policy_arg(None, None, "fw16bw32") == "fw16bw32"  # type: ignore[arg-type]


# -- hw header / golden output paths --------------------------------------------------------------
@pytest.mark.parametrize("sub", [["header", "fixed16"], ["golden", "fixed16"]])
def test_hw_output_into_a_missing_folder(runner: CliRunner, tmp_path: Path,
                                         sub: list[str]) -> None:
    out = tmp_path / "missing" / "dir" / "x.hpp"
    err = fails(runner, "hw", *sub, "-o", str(out), code=1)
    assert f"output {out}: cannot be written" in err
    assert "No such file or directory" in err


def test_hw_header_under_a_regular_file(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("")
    out = tmp_path / "file.txt" / "x.h"
    err = fails(runner, "hw", "header", "fixed16", "-o", str(out), code=1)
    assert f"output {out}: cannot be written" in err and "Not a directory" in err


def test_hw_header_replaces_a_planted_link_and_writes_atomically(runner: CliRunner,
                                                                 tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    out = tmp_path / "fxemu_policy.h"
    out.symlink_to(victim)
    res = runner.invoke(cli, ["hw", "header", "fixed16", "-o", str(out)],
                        catch_exceptions=False)
    assert res.exit_code == 0, res.stderr
    assert victim.read_text() == "keep me"
    assert not out.is_symlink() and out.read_text().startswith("// fxemu_policy.h")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert oct(out.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


@pytest.mark.parametrize("args", [["train", "--backend", "q" * 50_000],
                                  ["formats", "--" + "o" * 50_000],
                                  ["nosuchcommand" + "c" * 50_000],
                                  ["train", "--epochs", "9" * 50_000 + "x"]])
def test_click_usage_errors_are_capped(runner: CliRunner, args: list[str]) -> None:
    from fxemu.cli import USAGE_MAX

    err = fails(runner, *args, code=2)
    assert len(err) <= len("fxemu: error: ") + USAGE_MAX + 30
    assert err.endswith(" characters)")


@pytest.mark.parametrize("sr", ["8", 0, 63, 1.5, True, [1]])
def test_policy_sr_bits_is_checked_at_load(sr: object) -> None:
    d = PRESETS["fixed16_sr"].to_dict()
    d["update"]["sr_bits"] = sr
    with pytest.raises(ValueError, match=r"policy\.update\.sr_bits: must be an int in 1\.\.62"):
        load_policy(d)
    d["update"]["sr_bits"] = 8
    assert load_policy(d).update.sr_bits == 8
