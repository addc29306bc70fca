"""The ``fxemu`` command's imports: no Numba for --help/formats/info (lazy subcommands and a
lazy ``fxemu`` package), and a one-line error naming the extra a command needs."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import fxemu as fx
from fxemu.cli import EXTRAS, LAZY_COMMANDS, cli


def _python(code: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


_RUN_CLI = """
import json, sys
{before}
from fxemu.cli import main
try:
    main(sys.argv[1:])
except SystemExit as e:
    code = e.code
print(json.dumps({{"code": code, "numba": "numba" in sys.modules,
                  "modules": sorted(m for m in sys.modules if m.startswith("fxemu"))}}),
      file=sys.stderr)
"""


def _cli(*args: str, before: str = "") -> tuple[int, str, dict]:
    res = _python(_RUN_CLI.format(before=before), *args)
    *lines, last = res.stderr.strip().splitlines()
    return json.loads(last)["code"], res.stdout + "\n".join(lines), json.loads(last)


@pytest.mark.parametrize("args", [["--help"], ["formats"], ["info", "float16"],
                                  ["info", "ap_fixed<16,8,AP_RND_CONV,AP_SAT>"], ["hw", "--help"],
                                  ["report", "--help"], ["sweep", "--help"], ["study", "--help"],
                                  ["train", "--help"], ["quantize", "--help"]])
def test_light_commands_do_not_import_numba(args: list[str]) -> None:
    code, out, state = _cli(*args)
    assert code == 0, out
    assert state["numba"] is False, state["modules"]
    assert out.strip()


def test_help_lists_every_command_without_importing_them() -> None:
    code, out, state = _cli("--help")
    assert code == 0
    for name in ("formats", "info", "quantize", "train", *LAZY_COMMANDS):
        assert f"\n  {name} " in out, name
    assert not {m for m in state["modules"] if m.startswith(("fxemu.analysis", "fxemu.hw"))}


@pytest.mark.parametrize("name", sorted(LAZY_COMMANDS))
def test_stored_short_help_is_the_commands_own(name: str) -> None:
    module, attr, short = LAZY_COMMANDS[name]
    cmd = getattr(importlib.import_module(module), attr)
    assert cmd.get_short_help_str(10_000) == short
    assert cli.get_command(None, name) is cmd


def test_import_fxemu_is_light_and_names_resolve() -> None:
    res = _python("""
        import sys
        import fxemu as fx
        assert "numba" not in sys.modules
        names = set(dir(fx))
        assert set(fx.__all__) <= names, set(fx.__all__) - names
        import fxemu.quantize  # the submodule must not shadow the function
        assert callable(fx.quantize) and fx.quantize.__module__ == "fxemu.quantize"
        from fxemu import Mac, add, from_bits, quantize, to_bits
        assert fx.Mac is Mac and fx.add is add and quantize is fx.quantize
        ns = {}
        exec("from fxemu import *", ns)
        assert set(fx.__all__) <= set(ns)
        print("ok")
    """)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


def test_every_public_name_and_train() -> None:
    for name in fx.__all__:
        assert getattr(fx, name) is not None
    assert callable(fx.quantize) and callable(fx.train)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = fx.nope


# -- extras -------------------------------------------------------------------------------------
def _without(*modules: str) -> str:
    return "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in modules)


@pytest.mark.parametrize("missing", ["seaborn", "pandas", "matplotlib", "scipy"])
def test_report_without_the_analysis_extra(tmp_path: Path, missing: str) -> None:
    run = tmp_path / "run"
    run.mkdir()
    code, out, _ = _cli("report", str(run), "--out", str(tmp_path / "rep"),
                        before=_without(missing))
    assert code == 1
    line = out.strip()
    assert "\n" not in line and "Traceback" not in line
    assert line.startswith("fxemu: error: fxemu report needs the 'analysis' extra: "
                           "pip install 'fxemu[analysis]'")
    assert missing in line


def test_study_without_the_analysis_extra_fails_before_training(tmp_path: Path) -> None:
    code, out, _ = _cli("study", "--help", before=_without("seaborn"))
    assert code == 0  # help needs no extra
    code, out, state = _cli("study", "founding", "--out", str(tmp_path / "o"), "--quiet",
                            before=_without("seaborn"))
    assert code == 1
    assert out.strip() == ("fxemu: error: fxemu study needs the 'analysis' extra: pip install "
                           "'fxemu[analysis]' (module seaborn is missing)")
    assert not (tmp_path / "o" / "runs").exists()
    assert "fxemu.train" not in state["modules"]


def test_sweep_scheduler_without_dask_names_the_extra(tmp_path: Path) -> None:
    code, out, _ = _cli("sweep", "--out", str(tmp_path / "o"), "--policy", "fw32bw32",
                        "--epochs", "1", "--n-train", "8", "--n-test", "8",
                        "--scheduler", "tcp://127.0.0.1:1", "--quiet",
                        before=_without("dask", "distributed"))
    assert code == 1, out
    assert "pip install 'fxemu[analysis]'" in out and "dask" in out
    assert "Traceback" not in out and out.strip().count("\n") == 0


def test_the_extras_table_matches_pyproject() -> None:
    import re
    import sys as _sys

    if _sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    root = Path(fx.__file__).resolve().parent.parent
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert any(re.match(r"hls4ml\b", d) for d in extras["csim"])
    for module, extra in EXTRAS.items():
        names = {re.split(r"[\[<>=; ]", d)[0].lower() for d in extras[extra]}
        assert module.lower() in names or module in ("distributed", "pynqmetadata"), \
            (module, extra)


def test_csim_without_hls4ml_names_the_extra() -> None:
    res = _python("""
        import importlib.util, sys
        real = importlib.util.find_spec
        importlib.util.find_spec = lambda n, *a: None if n == "hls4ml" else real(n, *a)
        from fxemu.hw import toolchain
        toolchain.find_spec = importlib.util.find_spec
        from fxemu.cli import main
        main(["hw", "includes"])
    """)
    assert res.returncode in (1, 2)
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert "'csim' extra" in res.stderr and "pip install 'fxemu[csim]'" in res.stderr


def test_board_without_pynq_names_the_extra() -> None:
    res = _python("""
        import sys
        sys.modules["pynq"] = None
        from fxemu._errors import BackendUnavailable
        from fxemu.hw._pynq import import_pynq
        try:
            import_pynq()
        except BackendUnavailable as e:
            print(e)
    """)
    assert res.returncode == 0, res.stderr
    assert "'board' extra" in res.stdout and "pip install 'fxemu[board]'" in res.stdout
