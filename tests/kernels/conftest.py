"""Kernel tests: ``layers_full``, ``mx_full`` and ``elementwise_full`` variants run only when
``-m`` names the marker."""

from __future__ import annotations

import pytest

OPT_IN = ("layers_full", "mx_full", "elementwise_full")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect ``layers_full``, ``mx_full`` and ``elementwise_full`` tests unless ``-m``
    names that marker (``tox -e layers-full``, ``tox -e mx-full``, ``tox -e
    elementwise-full``)."""
    off = [m for m in OPT_IN if m not in (config.option.markexpr or "")]
    keep = [i for i in items if not any(i.get_closest_marker(m) for m in off)]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep
