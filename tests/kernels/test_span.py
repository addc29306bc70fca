"""``mac_fast.span`` (the branch-free operand scan behind every fast Mac path) against an
exact reference from Python's integer ratio of each double."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fxemu._kernels import mac_fast


def _reference(x: np.ndarray) -> tuple[int, int, int, int]:
    lowest, highest, sig, bad = 4096, -4096, 0, 0
    for v in x.tolist():
        if not math.isfinite(v):
            bad += 1
        elif v != 0.0:
            num, den = abs(v).as_integer_ratio()  # reduced: den a power of two
            low = (num & -num).bit_length() - 1 - (den.bit_length() - 1)
            lead = num.bit_length() - 1 - (den.bit_length() - 1)
            lowest, highest = min(lowest, low), max(highest, lead)
            sig = max(sig, lead - low + 1)
    return lowest, highest, sig, bad


def _cases() -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    bits = rng.integers(0, 2**64, 3000, dtype=np.uint64)  # every class: NaN payloads too
    tiny = np.float64(5e-324)
    edges = np.array([0.0, -0.0, tiny, -tiny, tiny * 12345, 2.0**-1022, -(2.0**-1022) * 1.5,
                      np.finfo(np.float64).max, 1.0, 3.0, np.inf, -np.inf, np.nan])
    cases = [bits.view(np.float64), edges, np.zeros(5), np.array([-0.0]), np.array([]),
             rng.standard_normal(2000).astype(np.float16).astype(np.float64),
             rng.standard_normal(500) * 1e-310]
    cases += [edges[i:i + 1] for i in range(edges.size)]
    return cases


@pytest.mark.parametrize("serial", [True, False], ids=["serial", "parallel"])
def test_span_matches_integer_ratio(serial: bool) -> None:
    kernel = mac_fast.span.serial if serial else mac_fast.span.parallel
    for x in _cases():
        assert kernel(x.view(np.uint64)) == _reference(x), x[:4]
