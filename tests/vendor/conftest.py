"""Fixtures of the vendor-reference suite: the toolchain (or a skip) and cached vendor builds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from vendor import cxx

_BUILT: list[cxx.Program] = []


@pytest.fixture(scope="session")
def toolchain() -> cxx.Toolchain:
    """g++ and the hls4ml vendor headers; skips the test when either is missing."""
    try:
        return cxx.find_toolchain()
    except cxx.Unavailable as e:
        pytest.skip(f"vendor reference unavailable: {e}")


@pytest.fixture(scope="session")
def vendor_build(toolchain: cxx.Toolchain) -> Callable[[cxx.Program], Path]:
    """``build(program) -> executable``: compiled once per session (and cached across them)."""

    def build(program: cxx.Program) -> Path:
        exe = program.build(toolchain)
        if program not in _BUILT:
            _BUILT.append(program)
        return exe

    return build


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect ``layers_full`` tests unless ``-m`` names that marker (``tox -e layers-full``)."""
    if "layers_full" in (config.option.markexpr or ""):
        return
    keep = [i for i in items if i.get_closest_marker("layers_full") is None]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    for p in _BUILT:
        s = p.stats
        terminalreporter.write_line(
            f"vendor program {p.name!r}: {len(p)} conversions in {s.units} units, "
            f"{s.compiled} compiled this session, {s.seconds:.1f} s "
            f"(cache {cxx.cache_dir()}, {cxx.default_jobs()} jobs)"
        )
