"""Interleaved-rounds timing shared by the training benchmarks (bench_lenet5, bench_bridge,
bench_train).

Each side is a training step ``step(x, y)`` with its own batches. After one warm-up step per
side (compilation, allocators), every round times each side in turn (the best of ``repeats``
passes over its batches), so load changes hit all sides alike; a side's per-round rates and
the per-round ratios between two sides are summarised by their median and spread (min..max).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Sequence

Step = Callable[[object, object], object]


def rate(step: Step, batches: Sequence[tuple[object, object]], repeats: int) -> float:
    """Samples/s of the best of ``repeats`` timed passes of ``step`` over ``batches``."""
    best = float("inf")
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        for x, y in batches:
            step(x, y)
        best = min(best, time.perf_counter() - t0)
    return sum(len(y) for _, y in batches) / best


def interleaved(sides: dict[str, tuple[Step, Sequence[tuple[object, object]]]], rounds: int,
                repeats: int, contexts: dict[str, Callable[[], object]] | None = None,
                on_round: Callable[[int, dict[str, list[float]]], None] | None = None,
                ) -> dict[str, list[float]]:
    """Per-round rates (samples/s) of every side, timed in turn each round after a warm-up
    step each. ``contexts[name]()`` (a context manager, e.g. a threadpoolctl limit) wraps that
    side's warm-up and timings; ``on_round(r, rates)`` is called after each round."""
    contexts = contexts or {}

    def ctx(name: str):
        return contexts.get(name, contextlib.nullcontext)()

    for name, (step, batches) in sides.items():
        with ctx(name):
            step(*batches[0])
    out: dict[str, list[float]] = {name: [] for name in sides}
    for r in range(rounds):
        for name, (step, batches) in sides.items():
            with ctx(name):
                out[name].append(rate(step, batches, repeats))
        if on_round is not None:
            on_round(r, out)
    return out


def ratios(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """Per-round ratios a / b."""
    return [u / v for u, v in zip(a, b, strict=True)]


def spread(values: Sequence[float], digits: int = 2) -> str:
    """``median (min..max)``, e.g. ``0.76 (0.52..0.81)``."""
    return (f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}.."
            f"{max(values):.{digits}f})")


def median(values: Sequence[float]) -> float:
    return statistics.median(values)
