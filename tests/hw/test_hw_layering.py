"""The layers of fxemu.hw, read from the import statements (ast) of the source files.

The accelerator runtime (every module of ``hw/`` outside the hardware tools ``hw/tools/`` and
``hw/rtl/``) sits below the backends: it may import formats, policy, quantize and arith, never
the backends, the network, training, the CLI, analysis or the hardware tools. The backends
never import a hardware tool. The RTL generator (``hw/rtl/``) is a hardware tool reading
formats, policies and the arithmetic (its golden vectors): it imports no backend, network,
training, CLI or analysis module. Imports inside functions count as well as those at the top
of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import fxemu

ROOT = Path(fxemu.__file__).resolve().parent.parent

#: what a runtime module of fxemu.hw must not import (the layers above it)
ABOVE_RUNTIME = ("fxemu.backends", "fxemu.nn", "fxemu.train", "fxemu.cli", "fxemu.analysis",
                 "fxemu.torch", "fxemu.hw.tools", "fxemu.hw.rtl")
#: what a backend must not import
ABOVE_BACKENDS = ("fxemu.hw.tools", "fxemu.hw.rtl", "fxemu.cli", "fxemu.analysis",
                  "fxemu.train")
#: what the RTL generator must not import (it stands on formats, policy, quantize, arith)
BESIDE_RTL = ("fxemu.backends", "fxemu.nn", "fxemu.train", "fxemu.cli", "fxemu.analysis",
              "fxemu.torch", "fxemu.hw.tools")
#: the hardware tools: folders of hw/ above the runtime
TOOLS = ("tools", "rtl")


def _modules(folder: Path, package: str, *, skip: tuple[str, ...] = ()) -> dict[str, Path]:
    """``{dotted module name: path}`` of the .py files under ``folder`` (``package`` is the
    name ``folder`` installs as; ``skip`` subfolders left out)."""
    out = {}
    for path in sorted(folder.rglob("*.py")):
        rel = path.relative_to(folder)
        if rel.parts[0] in skip:
            continue
        parts = [package, *rel.with_suffix("").parts]
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts.pop()
        out[".".join(parts) + ("/" if is_pkg else "")] = path
    return out


def imported(module: str, path: Path) -> set[str]:
    """Every module name ``path`` may import (for ``from X import a``: X and X.a), relative
    imports resolved against ``module`` (a package's name ends in ``/``)."""
    package = module.rstrip("/") if module.endswith("/") else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names.add(mod)
            names.update(f"{mod}.{a.name}" for a in node.names)
    return names


def violations(mods: dict[str, Path], forbidden: tuple[str, ...]) -> list[str]:
    """``"module imports name"`` for each import of a forbidden layer."""
    bad = []
    for module, path in mods.items():
        for name in sorted(imported(module, path)):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                bad.append(f"{module.rstrip('/')} imports {name}")
    return bad


def test_runtime_imports_nothing_above_it() -> None:
    runtime = _modules(ROOT / "hw", "fxemu.hw", skip=TOOLS)
    assert "fxemu.hw.csim" in runtime and "fxemu.hw.codegen" in runtime
    assert not any(m.startswith(("fxemu.hw.tools", "fxemu.hw.rtl")) for m in runtime)
    assert violations(runtime, ABOVE_RUNTIME) == []


def test_rtl_generator_imports_no_backend_or_network() -> None:
    rtl = _modules(ROOT / "hw" / "rtl", "fxemu.hw.rtl")
    assert "fxemu.hw.rtl" + "/" in rtl and "fxemu.hw.rtl.pe" in rtl
    assert violations(rtl, BESIDE_RTL) == []


def test_backends_import_no_hw_tool() -> None:
    backends = _modules(ROOT / "fxemu" / "backends", "fxemu.backends")
    assert "fxemu.backends.csim" in backends
    assert violations(backends, ABOVE_BACKENDS) == []


@pytest.mark.parametrize("source", [
    "from ..backends.emulated import EmulatedBackend",  # the old hw/golden.py
    "from .. import backends",
    "import fxemu.nn.model",
    "def f():\n    from .tools import golden\n",
    "from .tools.estimate import summary",
    "from .rtl import verilog",
])
def test_the_checker_finds_an_upward_import(tmp_path: Path, source: str) -> None:
    hw = tmp_path / "hw"
    hw.mkdir()
    (hw / "__init__.py").write_text("")
    (hw / "bad.py").write_text(source + "\n")
    (hw / "layout.py").write_text("from .._errors import msg\nfrom . import boards\n")
    bad = violations(_modules(hw, "fxemu.hw"), ABOVE_RUNTIME)
    assert len(bad) >= 1 and all(b.startswith("fxemu.hw.bad imports ") for b in bad)
