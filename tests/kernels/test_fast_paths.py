"""The vectorised fast kernels agree bit for bit with the exact element kernels.

``fx.quantize``/``fx.to_bits`` route most elements through branch-free fast kernels and hand the
rest to the exact integer kernels; here every public result is compared with the exact kernels
run on the whole array.
"""

from __future__ import annotations

import numpy as np
import pytest

import fxemu as fx
from fxemu import lowering
from fxemu._kernels import convert as k


def _inputs(seed: int, n: int = 20_000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n) * np.exp(rng.uniform(-40, 40, n))
    x[::5] = np.round(x[::5] * 64) / 64  # ties at several positions
    x[1::5] = np.round(x[1::5])
    x[::997] = np.ldexp(np.sign(x[::997]) + 0.25, rng.integers(900, 1023, x[::997].size))
    x[2::11] = rng.integers(-(2**40), 2**40, x[2::11].size) * 2.0 ** rng.integers(-60, 10)
    specials = [0.0, -0.0, np.inf, -np.inf, 5e-324, -5e-324, 2.0**-1022, 2.0**52, -(2.0**52),
                2.0**52 - 0.5, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 65504.0, 65520.0, -65520.0]
    return np.concatenate([x, specials])


def _exact(x: np.ndarray, f: fx.Fixed | fx.Float) -> tuple[np.ndarray, np.ndarray]:
    """Codes and values of x in f by the exact element kernels alone (no fast pass)."""
    p = lowering.lower(f)
    out = []
    for codes in (True, False):
        if isinstance(f, fx.Fixed):
            kernel = k.fixed_kernel(-1, -1, False, codes)
        else:
            kernel = k.float_kernel(-1, False, codes)
        res = np.empty(x.size, np.uint64 if codes else np.float64)
        kernel(x, x.view(np.uint64), res, p, 62, np.uint64(0), False, np.empty(0, np.uint64))
        out.append(res)
    return out[0], out[1]


_exact_fixed = _exact_float = _exact


FIXED_SHAPES = [(16, 8, True), (12, 3, True), (10, 4, False), (64, 30, True), (8, -3, True),
                (6, 12, False), (53, 20, True), (54, 54, True), (64, 64, False), (1, 1, True),
                (1, 0, False), (32, 1000, True), (20, -1000, False), (8, -1060, True)]


@pytest.mark.parametrize(("w", "i", "s"), FIXED_SHAPES)
@pytest.mark.parametrize("overflow", ["sat", "sat_zero", "sat_sym", "wrap"])
@pytest.mark.parametrize("lib", ["ap", "ac"])
def test_fixed_fast_equals_exact(w: int, i: int, s: bool, overflow: str, lib: str) -> None:
    x = _inputs(abs(w * 131 + i))
    for q in fx.FixedRounding:
        if q is fx.FixedRounding.STOCHASTIC:
            continue
        f = fx.Fixed(w, i, s, q, overflow, lib=lib)
        codes, vals = _exact_fixed(x, f)
        np.testing.assert_array_equal(fx.to_bits(x, f), codes, err_msg=str(f))
        np.testing.assert_array_equal(fx.quantize(x, f).view(np.uint64), vals.view(np.uint64),
                                      err_msg=str(f))


FLOAT_SHAPES = [(5, 10), (4, 3), (8, 7), (2, 1), (3, 2), (11, 52), (8, 23), (6, 1), (2, 3)]


@pytest.mark.parametrize(("e", "m"), FLOAT_SHAPES)
@pytest.mark.parametrize("special", ["ieee", "fn", "fnuz", "none"])
def test_float_fast_equals_exact(e: int, m: int, special: str) -> None:
    if e == 11 and special != "ieee":
        with pytest.raises(ValueError, match="range must fit in float64"):
            fx.Float(e, m, special=special)
        return
    x = _inputs(e * 53 + m)
    xn = np.concatenate([x, [np.nan, -np.nan]]) if special != "none" else x
    for r in ["rne", "rna", "rtz", "rup", "rdn", "rto"]:
        for sub in (True, False):
            for ov in ("inf", "sat"):
                f = fx.Float(e, m, special=special, rounding=r, subnormals=sub, overflow=ov)
                codes, vals = _exact_float(xn, f)
                np.testing.assert_array_equal(fx.to_bits(xn, f), codes, err_msg=str(f))
                got = fx.quantize(xn, f)
                same = (got.view(np.uint64) == vals.view(np.uint64)) | (
                    np.isnan(got) & np.isnan(vals))
                assert same.all(), (str(f), xn[~same][:5])
