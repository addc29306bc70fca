"""Kernel tests: ``layers_full`` variants run only when ``-m`` names the marker."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect ``layers_full`` tests unless ``-m`` names that marker (``tox -e layers-full``)."""
    if "layers_full" in (config.option.markexpr or ""):
        return
    keep = [i for i in items if i.get_closest_marker("layers_full") is None]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep
