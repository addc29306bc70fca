"""The cost tests: the ``cost_grid`` test (the cost study's whole grid through Yosys,
minutes) runs only when ``-m`` names that marker (``tox -e cost-grid``)."""

from __future__ import annotations

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "cost_grid" in (config.getoption("markexpr") or ""):
        return
    grid = [i for i in items if i.get_closest_marker("cost_grid")]
    if grid:
        config.hook.pytest_deselected(items=grid)
        items[:] = [i for i in items if i not in set(grid)]
