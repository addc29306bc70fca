"""fxemu.analysis: reading run directories; curves, histograms, tables, statistics, reports.

Installed as ``fxemu.analysis`` from the repository's top-level ``analysis/`` folder. Needs the
``analysis`` extra (pandas, matplotlib, seaborn, scipy, jinja2, tabulate); the names below are
imported on first use, so ``import fxemu.analysis`` itself stays light.

- :func:`load_runs` (:mod:`.runs`): run directories → :class:`Runs` (tidy pandas tables).
- :func:`write_report` (:mod:`.report`): every figure and table plus ``index.html``.
- :mod:`.figures`, :mod:`.tables`, :mod:`.stats`: the pieces the report is made of.
"""

from __future__ import annotations

__all__ = ["Runs", "load_runs", "write_report"]

_WHERE = {"Runs": "runs", "load_runs": "runs", "write_report": "report"}


def __getattr__(name: str) -> object:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
