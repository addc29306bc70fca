"""The ``fxemu`` command line: formats, info, quantize, errors, and the installed script."""

from __future__ import annotations

import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import fxemu as fx
from fxemu.cli import cli, main


@pytest.fixture
def runner() -> CliRunner:
    try:  # click 8.1 mixes stderr into stdout unless told not to; 8.2+ keeps them apart
        return CliRunner(mix_stderr=False)
    except TypeError:
        return CliRunner()


def run(runner: CliRunner, *args: str, code: int = 0):
    res = runner.invoke(cli, list(args), catch_exceptions=False)
    assert res.exit_code == code, (res.exit_code, res.output, res.stderr)
    return res


def table(text: str) -> list[dict[str, str]]:
    """Rows of ``fxemu quantize`` output as dicts keyed by the header."""
    lines = [ln.split() for ln in text.strip().splitlines()]
    head = lines[0]
    assert head == ["input", "quantized", "hex", "binary", "error", "rel_error"]
    assert all(len(ln) == len(head) for ln in lines[1:]), text
    return [dict(zip(head, ln, strict=True)) for ln in lines[1:]]


def info(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition("  ")
        out[key.strip()] = value.strip()
    return out


def same(a: str, b: float) -> bool:
    """Bitwise equality of a printed double and a double (nan equals nan, -0 is not 0)."""
    return np.float64(float(a)).view(np.uint64) == np.float64(b).view(np.uint64) or (
        np.isnan(float(a)) and np.isnan(b))


# -- help and listing ---------------------------------------------------------------------------
def test_help(runner):
    res = run(runner, "--help")
    for cmd in ("formats", "info", "quantize"):
        assert cmd in res.output
    assert run(runner, "-h").output == res.output
    assert "--seed" in run(runner, "quantize", "--help").output
    assert "--nan [raise|hls]" in run(runner, "quantize", "-h").output


def test_version(runner):
    assert run(runner, "--version").output.strip() == f"fxemu {fx.__version__}"


def test_bare_command_shows_usage(runner):
    res = run(runner, code=2)
    assert "Usage: fxemu" in res.stderr and "Traceback" not in res.stderr


def test_formats_table(runner):
    out = run(runner, "formats").output.splitlines()
    assert out[0].split()[:5] == ["name", "kind", "bits", "min", "max"]
    assert "hls_type" in out[0] and "codes" in out[0]
    rows = {ln.split()[0]: ln for ln in out[1:]}
    assert len(out) == 1 + len(fx.PRESETS)
    for name in fx.PRESETS:
        # names with spaces never occur; each preset is a row of its own
        assert any(ln.startswith(name + " ") for ln in out[1:]), name
    assert rows["float8_e4m3fn"].split()[1:5] == ["float", "8", "-448.0", "448.0"]
    assert rows["float8_e4m3fn"].split()[-1] == "-"  # no C++ type for an fn format
    assert rows["float16"].split()[-1] == "ac_std_float<16,5>"
    assert rows["float16"].split()[-2] == "65536"
    assert "6.103515625e-05 / 5.960464477539063e-08" in rows["float16"]
    assert rows["float64"].split()[-2] == "2^64"
    assert rows["ap_int<8>"].split()[1:6] == ["fixed", "8", "-128.0", "127.0", "1.0"]
    assert rows["ap_fixed<16,8>"].split()[-1] == "ap_fixed<16,8,AP_TRN,AP_WRAP,0>"


# -- info ---------------------------------------------------------------------------------------
def test_info_fixed(runner):
    d = info(run(runner, "info", "ap_fixed<16,8,AP_RND_CONV,AP_SAT>").output)
    assert d["format"] == d["hls_type"] == "ap_fixed<16,8,AP_RND_CONV,AP_SAT,0>"
    assert d["layout"] == "s iiiiiii.ffffffff"
    assert d["width"].startswith("16 bits")
    assert (d["min"], d["max"]) == ("-128.0", "127.99609375")
    assert d["step"] == d["eps"] == "0.00390625 (2^-8)"
    assert d["codes"].startswith("65536")
    assert d["smallest normal"] == d["smallest subnormal"] == "-"
    assert d["rounding"] == "RND_CONV: round to nearest, ties to even"
    assert d["overflow"].startswith("SAT: clamp")


@pytest.mark.parametrize(
    "text,layout",
    [("ap_ufixed<8,3>", "iii.fffff"), ("ap_int<8>", "s iiiiiii"), ("ap_uint<4>", "iiii"),
     ("ap_fixed<4,1>", "s .fff"), ("ap_ufixed<4,0>", ".ffff"),
     ("ap_fixed<4,-2>", "s fff (code x 2^-6)"), ("ap_ufixed<4,7>", "iiii (code x 2^3)"),
     ("ac_fixed<6,2,false>", "ii.ffff"), ("float16", "s eeeee mmmmmmmmmm"),
     ("bfloat16", "s eeeeeeee mmmmmmm"), ("float4_e2m1fn", "s ee m"),
     ("float<3,0,special=none>", "s eee")],
)
def test_info_layout(runner, text, layout):
    assert info(run(runner, "info", text).output)["layout"] == layout


def test_info_float(runner):
    d = info(run(runner, "info", "half").output)
    assert d["format"] == "float16" and d["hls_type"] == "ac_std_float<16,5>"
    assert (d["min"], d["max"]) == ("-65504.0", "65504.0")
    assert d["eps"] == "0.0009765625 (2^-10)"
    assert d["smallest normal"] == "6.103515625e-05 (2^-14)"
    assert d["smallest subnormal"] == "5.960464477539063e-08 (2^-24)"
    assert d["bias"].startswith("15 ")
    assert d["rounding"].startswith("RNE: ") and d["special"].startswith("ieee: ")
    assert "+-inf" in d["overflow"]
    e = info(run(runner, "info", "float8_e4m3fnuz").output)
    assert e["hls_type"] == "-" and e["max"] == "240.0" and e["special"].startswith("fnuz:")
    assert "NaN" in e["overflow"]


def test_info_every_preset_and_mode(runner):
    for name in fx.PRESETS:
        d = info(run(runner, "info", name).output)
        assert fx.parse(d["format"]) == fx.parse(name)
    for q in fx.FixedRounding:
        for o in fx.FixedOverflow:
            d = info(run(runner, "info", str(fx.Fixed(8, 3, rounding=q, overflow=o))).output)
            assert d["rounding"].startswith(q.name + ": ")
            assert d["overflow"].startswith(o.name + ": ")
    for q in fx.FloatRounding:
        for sp in fx.Special:
            d = info(run(runner, "info", str(fx.Float(4, 3, rounding=q, special=sp))).output)
            assert d["rounding"].startswith(q.name + ": ")
            assert d["special"].startswith(sp.value + ": ")


WIDE_MAX = "511.999999999999999944488848768742172978818416595458984375"  # (2^63-1)/2^54


def test_info_wide_fixed_is_exact(runner):
    d = info(run(runner, "info", "ap_fixed<64,10,AP_TRN,AP_SAT>").output)
    # (2^63 - 1) * 2^-54 has no double; the exact value is shown beside the nearest one
    assert d["max"] == f"{WIDE_MAX} (nearest double 512.0)"
    assert d["min"] == "-512.0"


# -- quantize -----------------------------------------------------------------------------------
def test_quantize_fixed_by_hand(runner):
    rows = table(run(runner, "quantize", "ap_fixed<8,4>", "--", "-1.3", "0x1.8p-3", "100",
                     "inf", "-inf", "0", "7.9375").output)
    assert [r["input"] for r in rows] == ["-1.3", "0.1875", "100.0", "inf", "-inf", "0.0",
                                          "7.9375"]
    assert [r["quantized"] for r in rows] == ["-1.3125", "0.1875", "4.0", "0.0", "0.0", "0.0",
                                              "7.9375"]
    assert [r["hex"] for r in rows] == ["0xeb", "0x03", "0x40", "0x00", "0x00", "0x00", "0x7f"]
    assert rows[0]["binary"] == "0b11101011" and rows[2]["binary"] == "0b01000000"
    # error = quantized - input, exactly, then rounded once: -1.3125 - (-1.3 as a double)
    assert rows[0]["error"] == repr(float(fx_fraction(-1.3125) - fx_fraction(-1.3)))
    assert rows[0]["rel_error"] == repr(float((fx_fraction(-1.3125) - fx_fraction(-1.3))
                                              / fx_fraction(1.3)))
    assert rows[1]["error"] == "0.0" and rows[1]["rel_error"] == "0.0"
    assert rows[2]["error"] == "-96.0" and rows[2]["rel_error"] == "-0.96"
    assert rows[3]["error"] == "-inf" and rows[3]["rel_error"] == "-"
    assert rows[5]["rel_error"] == "0.0"


def fx_fraction(v: float):
    from fractions import Fraction

    return Fraction(v)


def test_quantize_float_by_hand(runner):
    rows = table(run(runner, "quantize", "half", "1", "-2.5", "65520", "-0.0", "0x1p-24",
                     "0x1p-25", "nan", "-inf").output)
    assert [r["hex"] for r in rows] == ["0x3c00", "0xc100", "0x7c00", "0x8000", "0x0001",
                                        "0x0000", "0x7e00", "0xfc00"]
    assert rows[0]["binary"] == "0b0011110000000000"
    assert [r["quantized"] for r in rows] == ["1.0", "-2.5", "inf", "-0.0",
                                              "5.960464477539063e-08", "0.0", "nan", "-inf"]
    assert rows[2]["error"] == "inf" and rows[2]["rel_error"] == "-"
    assert rows[5]["rel_error"] == "-1.0"
    assert rows[7]["error"] == "0.0"


@pytest.mark.parametrize("sep", [[], ["--"]])
def test_negative_values_with_and_without_dashes(runner, sep):
    rows = table(run(runner, "quantize", "ap_fixed<8,4>", *sep, "-1.3", "-inf", "-0x1.8p-3",
                     "-1e-1", "-0").output)
    assert [r["quantized"] for r in rows] == ["-1.3125", "0.0", "-0.1875", "-0.125", "0.0"]
    assert [r["hex"] for r in rows] == ["0xeb", "0x00", "0xfd", "0xfe", "0x00"]


def test_options_anywhere(runner):
    fmt = "ap_fixed<8,4,AP_STOCHASTIC>"
    a = run(runner, "quantize", fmt, "-1.3", "0.03", "--seed", "7", "--sr-bits", "4").output
    b = run(runner, "quantize", "--seed=7", fmt, "--sr-bits=4", "-1.3", "0.03").output
    assert a == b


def test_quantize_matches_library(runner):
    """Each row is quantize / to_bits of the library, and the bits decode to the value."""
    rng = np.random.default_rng(5)
    xs = np.concatenate([rng.normal(0, 3, 12), [0.5, -0.5, 1e-30, -7.96875, 2.0**-12]])
    texts = [x.hex() for x in xs.tolist()]
    for fmt in ("ap_fixed<8,4,AP_RND_CONV,AP_SAT>", "ap_ufixed<6,2,AP_RND,AP_WRAP>",
                "ac_fixed<7,3,true,AC_RND_INF,AC_SAT_SYM>", "ap_fixed<10,3,AP_TRN,AP_WRAP_SM,2>",
                "float8_e4m3fn", "float8_e5m2fnuz", "bfloat16", "float4_e2m1fn",
                "float<4,3,rounding=rtz,subnormals=false>", "fxp-s12/9"):
        rows = table(run(runner, "quantize", fmt, *texts).output)
        q = fx.quantize(xs, fmt)
        bits = fx.to_bits(xs, fmt)
        w = fx.parse(fmt).width
        for r, x, qi, bi in zip(rows, xs, q, bits, strict=True):
            assert same(r["input"], x)
            assert same(r["quantized"], qi), (fmt, r)
            assert int(r["hex"], 16) == int(bi) == int(r["binary"], 2)
            assert len(r["binary"]) == 2 + w and len(r["hex"]) == 2 + (w + 3) // 4
        decoded = fx.from_bits(np.array([int(r["hex"], 16) for r in rows], np.uint64), fmt)
        assert np.array_equal(decoded.view(np.uint64), q.view(np.uint64)), fmt


def test_quantize_stochastic_reproducible(runner):
    fmt = "ap_fixed<8,4,AP_STOCHASTIC>"
    args = ["quantize", fmt, *(["0.03"] * 16), "--seed", "11"]
    a = run(runner, *args).output
    assert a == run(runner, *args).output
    rows = table(a)
    assert {r["quantized"] for r in rows} <= {"0.0", "0.0625"}
    ref = fx.quantize(np.full(16, 0.03), fmt, seed=11)
    assert [float(r["quantized"]) for r in rows] == ref.tolist()
    # without --seed, each row's bits still belong to its value
    for r in table(run(runner, "quantize", fmt, *(["-0.03"] * 8)).output):
        assert (r["quantized"], r["hex"]) in {("0.0", "0x00"), ("-0.0625", "0xff")}


def test_quantize_nan_policy(runner):
    res = run(runner, "quantize", "ap_fixed<8,4>", "1", "nan", code=1)
    assert res.stdout == ""
    assert res.stderr.startswith("fxemu: error: ") and "--nan hls" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    rows = table(run(runner, "quantize", "ap_fixed<8,4>", "nan", "--nan", "hls").output)
    assert rows[0]["input"] == "nan" and rows[0]["rel_error"] == "-"
    assert int(rows[0]["hex"], 16) == int(fx.to_bits([np.nan], "ap_fixed<8,4>", nan="hls")[0])


def test_quantize_wide_fixed_shows_exact_value(runner):
    # (2^63 - 1) * 2^-54: the register holds a value no double holds
    rows = table(run(runner, "quantize", "ap_fixed<64,10,AP_TRN,AP_SAT>", "1000").output)
    assert rows[0]["hex"] == "0x7fffffffffffffff"
    assert rows[0]["quantized"] == WIDE_MAX
    assert rows[0]["error"] == "-488.0"


# -- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args,code,text",
    [
        (["info", "ap_fixed<16"], 2, "fxemu: error: parse: not a format; got 'ap_fixed<16'"),
        (["info", "ap_fixed<0,4>"], 2, "fxemu: error: Fixed width: must be in 1..64; got 0"),
        (["info", "e12m3"], 2, "fxemu: error: Float exp_bits: must be in 0..11; got 12"),
        (["quantize", "bogus", "1"], 2, "fxemu: error: parse: not a format; got 'bogus'"),
        (["quantize", "half", "1", "abc"], 2, "fxemu: error: VALUES: not a number; got 'abc'"),
        (["quantize", "half", "0x1.8q-3"], 2, "fxemu: error: VALUES: not a number"),
        (["quantize", "half", "1", "--sede", "3"], 2,
         "fxemu: error: No such option '--sede'. Did you mean '--seed'?"),
        (["quantize", "half", "1", "--nan", "maybe"], 2, "fxemu: error: Invalid value for '--nan'"),
        (["quantize", "half", "1", "--seed", "x"], 2, "fxemu: error: Invalid value for '--seed'"),
        (["quantize", "half"], 2, "fxemu: error: Missing argument 'VALUES...'"),
        (["quantize"], 2, "fxemu: error: Missing argument 'FORMAT'"),
        (["info"], 2, "fxemu: error: Missing argument 'FORMAT'"),
        (["infos"], 2, "fxemu: error: No such command 'infos'"),
        (["quantize", "ap_fixed<8,4,AP_STOCHASTIC>", "1", "--sr-bits", "0"], 1,
         "fxemu: error: sr_bits: must be in 1..62; got 0"),
        (["quantize", "ap_fixed<8,4,AP_STOCHASTIC>", "1", "--seed", "-1"], 1,
         "fxemu: error: seed: must be >= 0"),
    ],
)
def test_errors_are_one_line(runner, args, code, text):
    res = run(runner, *args, code=code)
    assert res.stderr.startswith(text), res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert "Traceback" not in res.stderr and res.stdout == ""


# -- entry points -------------------------------------------------------------------------------
def test_main_function(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["quantize", "ap_int<8>", "-3.5"])
    assert exc.value.code == 0
    assert table(capsys.readouterr().out)[0]["quantized"] == "-3.0"  # ap_int truncates toward zero
    with pytest.raises(SystemExit) as exc:
        main(["info", "nope"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.startswith("fxemu: error: parse: not a format")


def test_python_dash_m(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["python -m fxemu", "quantize", "float16", "0.1"])
    with pytest.raises(SystemExit) as exc:
        runpy.run_module("fxemu", run_name="__main__", alter_sys=True)
    assert exc.value.code == 0
    assert table(capsys.readouterr().out)[0]["hex"] == "0x2e66"


def _console_script() -> str | None:
    here = Path(sys.executable).parent / ("fxemu.exe" if os.name == "nt" else "fxemu")
    return str(here) if here.exists() else shutil.which("fxemu")


def test_installed_console_script():
    """The installed ``fxemu`` runs twice (the second with Numba's cache warm) and agrees."""
    exe = _console_script()
    if exe is None:
        pytest.skip("the fxemu console script is not installed (pip install -e .)")
    args = [exe, "quantize", "ap_fixed<8,4,AP_RND_CONV,AP_SAT>", "-1.3", "0.40625", "200"]
    outs = []
    for _ in range(2):
        res = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
        assert res.returncode == 0, res.stderr
        assert res.stderr == ""
        outs.append(res.stdout)
    assert outs[0] == outs[1]
    rows = table(outs[0])
    # -20.8 LSBs round to -21; 6.5 LSBs tie to even 6; 200 saturates
    assert [r["quantized"] for r in rows] == ["-1.3125", "0.375", "7.9375"]
    assert [r["hex"] for r in rows] == ["0xeb", "0x06", "0x7f"]
    bad = subprocess.run([exe, "quantize", "ap_fixed<8,4>", "oops"], capture_output=True,
                         text=True, timeout=300, check=False)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip() == ("fxemu: error: VALUES: not a number; got 'oops' (decimal, hex "
                                  "float like 0x1.8p-3, inf, -inf, nan)")
