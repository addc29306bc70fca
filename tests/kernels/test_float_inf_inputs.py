"""What ``overflow="sat"`` and ``overflow="inf"`` do with ±inf inputs, per ``special`` (as the
README's Float paragraph and the ``Float`` docstring state it).

±inf inputs are exact, not an overflow: an ``ieee`` format keeps ±inf under both modes; a
format without inf (``fn``, ``fnuz``) gives ±max under ``sat`` and its NaN under ``inf`` (fn: the
NaN of the input's sign, fnuz: the single NaN 0x80); ``none`` gives ±max under both. The same
holds for an inf that reaches a format through ``fx.add`` & co. and through a ``Mac`` (its
accumulator or its ``out`` format), in every rounding direction. A finite value beyond ±max
saturates under ``sat``. The expected codes are written out by hand for 8-bit formats.
"""

from __future__ import annotations

import numpy as np
import pytest

import fxemu as fx

#: (special, overflow) -> (code of +inf, code of -inf), for Float(4, 3, special=...)
INF_CODES = {
    ("ieee", "inf"): (0x78, 0xF8),
    ("ieee", "sat"): (0x78, 0xF8),
    ("fn", "inf"): (0x7F, 0xFF),  # NaN, the input's sign
    ("fn", "sat"): (0x7E, 0xFE),  # ±448
    ("fnuz", "inf"): (0x80, 0x80),  # the single NaN
    ("fnuz", "sat"): (0x7F, 0xFF),  # ±240
    ("none", "inf"): (0x7F, 0xFF),  # ±480
    ("none", "sat"): (0x7F, 0xFF),
}
#: the max code of each special (finite overflow under sat)
MAX_CODE = {"ieee": 0x77, "fn": 0x7E, "fnuz": 0x7F, "none": 0x7F}


@pytest.mark.parametrize(("special", "overflow"), sorted(INF_CODES))
@pytest.mark.parametrize("rounding", ["rne", "rtz", "rup", "rdn"])
def test_inf_inputs(special: str, overflow: str, rounding: str) -> None:
    f = fx.Float(4, 3, special=special, overflow=overflow, rounding=rounding)
    pos, neg = INF_CODES[(special, overflow)]
    inf = np.array([np.inf, -np.inf])
    np.testing.assert_array_equal(fx.to_bits(inf, f), np.array([pos, neg], np.uint64))
    # the values (a NaN's sign is not compared: numpy's NaN equality)
    want = fx.from_bits(np.array([pos, neg], np.uint64), f)
    if special == "ieee":
        np.testing.assert_array_equal(want, inf)
    elif overflow == "inf" and special != "none":
        assert np.isnan(want).all()
    else:
        np.testing.assert_array_equal(want, [f.max, -f.max])
    np.testing.assert_array_equal(fx.quantize(inf, f), want)
    np.testing.assert_array_equal(fx.add(inf, 1.0, f), want)
    np.testing.assert_array_equal(fx.sub(inf, 1.0, f), want)
    np.testing.assert_array_equal(fx.mul(inf, 2.0, f), want)
    np.testing.assert_array_equal(fx.fma(inf, 2.0, 1.0, f), want)
    for order in ["sequential", "pairwise", "chunk:2", "exact"]:
        for mac in (fx.Mac(f, order=order), fx.Mac("float32", out=f, order=order)):
            got = [fx.dot([1.0, v, 2.0], [1.0, 1.0, 1.0], mac) for v in inf]
            np.testing.assert_array_equal(got, want, err_msg=f"{mac}")
    if overflow == "sat":  # a finite value beyond ±max saturates, whatever the rounding
        big = np.array([1e6, -1e6])
        m = MAX_CODE[special]
        np.testing.assert_array_equal(fx.to_bits(big, f), np.array([m, m | 0x80], np.uint64))
        np.testing.assert_array_equal(fx.add(big, 1.0, f), [f.max, -f.max])
