"""Helpers shared by the benchmark scripts (optional peers, numba thread count)."""

from __future__ import annotations

import argparse
import importlib
import warnings
from collections.abc import Callable


def optional_import(name: str) -> tuple[object | None, str]:
    """Import an optional peer; (module, "") or (None, why)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return importlib.import_module(name), ""
    except Exception as exc:  # any failure means "not usable here"
        return None, f"{type(exc).__name__}: {exc}"


def with_threads(args: argparse.Namespace, run: Callable[[argparse.Namespace], list]) -> list:
    """``run(args)`` with numba's thread count set to ``args.threads`` (restored after)."""
    import numba

    threads = numba.get_num_threads()
    if args.threads is not None:
        numba.set_num_threads(max(1, min(args.threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        return run(args)
    finally:
        numba.set_num_threads(threads)
