"""The Mac contract's accumulation orders, restated slowly for the reference oracles.

``sequential``: k = 0…K-1 into an accumulator that starts at ``zero``; ``chunk:N``: sequential
within chunks of N, then the chunk sums added sequentially to ``zero``; ``pairwise``: adjacent
pairs level by level (an odd last node carried up), the root added to ``zero``. Every addition is
``step(acc, term)``, which rounds as the oracle's accumulator does. The ``exact`` order (one
rounding of the exact sum) is the caller's: it is not a sequence of steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def reduce_in_order(prods: Sequence[T], order: str, zero: T, step: Callable[[T, T], T]) -> T:
    """The accumulator after adding ``prods`` in ``order`` (sequential, chunk:N, pairwise)."""
    if order == "sequential":
        acc = zero
        for p in prods:
            acc = step(acc, p)
        return acc
    if order.startswith("chunk:"):
        n = int(order[6:])
        acc = zero
        for s in range(0, len(prods), n):
            part = zero
            for p in prods[s:s + n]:
                part = step(part, p)
            acc = step(acc, part)
        return acc
    if order == "pairwise":
        nodes = list(prods)
        while len(nodes) > 1:
            nxt = [step(nodes[j], nodes[j + 1]) for j in range(0, len(nodes) - 1, 2)]
            if len(nodes) % 2:
                nxt.append(nodes[-1])
            nodes = nxt
        return step(zero, nodes[0] if nodes else zero)
    raise ValueError(f"not a stepwise order: {order}")
