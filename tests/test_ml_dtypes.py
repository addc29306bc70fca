"""fxemu's named float formats against numpy ``float16`` and ml_dtypes.

* every code decodes to ml_dtypes' value (NaN positions match, −0 kept);
* every representable value, and random float32-representable doubles, encode to ml_dtypes'
  ``astype`` bits (one rounding on both sides);
* float64 inputs: numpy ``float16`` rounds the double directly, like fxemu; ml_dtypes up to 0.6
  converts through float32 first (double rounding), 0.7 rounds bfloat16 directly. Which model
  the installed ml_dtypes follows is read off inputs built to be double-rounding traps; its
  codes must then equal that model's on every input (``astype(float32)`` first, or fxemu's
  single rounding), and fxemu is checked against the oracle wherever the two differ;
* overflow, ±inf and NaN: fxemu's documented behaviour, compared with ml_dtypes where they agree,
  the known differences asserted explicitly (see docs/ml_dtypes_notes.md).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from reference import float_oracle as flo

import fxemu as fx

ml_dtypes = pytest.importorskip("ml_dtypes")

NAMES = ["float16", "bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz",
         "float8_e5m2fnuz", "float6_e3m2fn", "float6_e2m3fn", "float4_e2m1fn"]
#: Types whose float64 → type conversion went through float32 in ml_dtypes <= 0.6.
DOUBLE_ROUNDING = {n for n in NAMES if n != "float16"}
NO_NAN = {"float6_e3m2fn", "float6_e2m3fn", "float4_e2m1fn"}


def _dtype(name: str) -> np.dtype:
    return np.dtype(np.float16) if name == "float16" else np.dtype(getattr(ml_dtypes, name))


def _uint(name: str) -> type:
    return np.uint16 if _dtype(name).itemsize == 2 else np.uint8


def _ml_bits(x: np.ndarray, name: str) -> np.ndarray:
    """ml_dtypes' / numpy's codes for float64 (or float32) ``x``, as uint64."""
    with np.errstate(over="ignore", invalid="ignore"):
        return x.astype(_dtype(name)).view(_uint(name)).astype(np.uint64)


def _f64_bits(a: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(a), np.nan, a).view(np.uint64)


def _all_codes(name: str) -> np.ndarray:
    return np.arange(fx.parse(name).n_codes, dtype=np.uint64)


def _ml_values(codes: np.ndarray, name: str) -> np.ndarray:
    with np.errstate(invalid="ignore"):  # NaN codes
        return codes.astype(_uint(name)).view(_dtype(name)).astype(np.float64)


@pytest.mark.parametrize("name", NAMES)
def test_format_matches_ml_dtypes_finfo(name):
    fmt, fi = fx.parse(name), ml_dtypes.finfo(_dtype(name))
    assert fmt.max == float(fi.max)
    assert fmt.smallest_normal == float(fi.smallest_normal)
    assert fmt.smallest_subnormal == float(fi.smallest_subnormal)
    assert fmt.eps == float(fi.eps)
    assert fmt.width == fi.bits


@pytest.mark.parametrize("name", NAMES)
def test_from_bits_every_code(name):
    codes = _all_codes(name)
    want = _ml_values(codes, name)
    got = fx.from_bits(codes, name)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(_f64_bits(got), _f64_bits(want))


@pytest.mark.parametrize("name", NAMES)
def test_to_bits_every_value(name):
    codes = _all_codes(name)
    vals = _ml_values(codes, name)
    keep = ~np.isnan(vals)
    np.testing.assert_array_equal(fx.to_bits(vals[keep], name), codes[keep])
    np.testing.assert_array_equal(fx.to_bits(vals[keep], name), _ml_bits(vals[keep], name))


@pytest.mark.parametrize("name", NAMES)
def test_to_bits_random_float32_inputs(name):
    """Doubles that are float32 values: ml_dtypes rounds them once, so codes must agree."""
    rng = np.random.default_rng(sum(map(ord, name)))
    bits = rng.integers(0, 0x7F80_0000, 200_000, dtype=np.uint32)  # finite float32, all scales
    fmt = fx.parse(name)
    lo, hi = math.log2(fmt.smallest_subnormal) - 3, math.log2(fmt.max) + 2
    with np.errstate(over="ignore"):  # bfloat16's range reaches float32's
        near = np.exp2(rng.uniform(lo, hi, 200_000)).astype(np.float32).view(np.uint32)
    near = near[near < 0x7F80_0000]
    x32 = np.concatenate([bits, near]).view(np.float32)
    x32 = np.where(rng.random(x32.size) < 0.5, -x32, x32)
    x = x32.astype(np.float64)
    np.testing.assert_array_equal(fx.to_bits(x, name), _ml_bits(x32, name))
    np.testing.assert_array_equal(fx.to_bits(x, name), _ml_bits(x, name))


def _random_doubles(name: str, n: int, seed: int) -> np.ndarray:
    """Log-uniform magnitudes over the format's range (and a little beyond), random 52-bit
    mantissas, random signs."""
    fmt = fx.parse(name)
    rng = np.random.default_rng(seed)
    lo, hi = math.log2(fmt.smallest_subnormal) - 2, math.log2(fmt.max) + 1
    x = np.exp2(rng.uniform(lo, hi, n))
    x = (x.view(np.uint64) ^ rng.integers(0, 1 << 52, n, dtype=np.uint64)).view(np.float64)
    return np.where(rng.random(n) < 0.5, -x, x)


def _double_rounding_traps(name: str) -> np.ndarray:
    """For every pair of neighbouring finite values: the midpoint nudged up and down by a
    quarter of a float32 ulp, so float32 sees an exact tie and rounds it to even."""
    fmt = fx.parse(name)
    codes = _all_codes(name)
    vals = np.unique(_ml_values(codes, name))
    vals = vals[np.isfinite(vals) & (vals >= 0)]
    vals = np.append(vals, fmt.max + (vals[-1] - vals[-2]))  # the overflow tie too
    mids = (vals[:-1] + vals[1:]) / 2
    with np.errstate(over="ignore"):
        q = np.spacing(mids.astype(np.float32)).astype(np.float64) / 4
    q = np.where(np.isfinite(q), q, math.ldexp(1.0, 127 - 23) / 4)
    x = np.concatenate([mids + q, mids - q])
    return np.concatenate([x, -x])


def _double_rounds(name: str) -> bool:
    """Whether the installed ml_dtypes converts float64 to ``name`` through float32: its codes
    on the double-rounding traps are float32's (True) or the single rounding's (False); any
    other behaviour fails here."""
    if name not in DOUBLE_ROUNDING:
        return False
    x = _double_rounding_traps(name)
    ml = _ml_bits(x, name)
    with np.errstate(over="ignore"):
        via32 = _ml_bits(x.astype(np.float32), name)
    if np.array_equal(ml, via32):
        return True
    np.testing.assert_array_equal(ml, fx.to_bits(x, name))
    return False


def _oracle(x: np.ndarray, name: str) -> np.ndarray:
    fmt = fx.parse(name)
    return np.array([flo.float_code(float(v), fmt) for v in x], dtype=np.uint64)


@pytest.mark.parametrize("name", NAMES)
def test_float64_inputs_double_rounding(name):
    x = np.concatenate([_random_doubles(name, 1_000_000, seed=len(name)),
                        _double_rounding_traps(name)])
    direct = fx.to_bits(x, name)
    ml = _ml_bits(x, name)
    with np.errstate(over="ignore"):
        x32 = x.astype(np.float32)
    via32 = _ml_bits(x32, name)  # the double-rounded result
    diff = np.flatnonzero(ml != direct)
    # fxemu is the correctly rounded result: on every disagreement and on a sample
    rng = np.random.default_rng(1)
    check = np.union1d(diff, rng.choice(x.size, 300, replace=False))
    np.testing.assert_array_equal(direct[check], _oracle(x[check], name))
    traps = x.size - _double_rounding_traps(name).size
    assert np.count_nonzero(via32[traps:] != direct[traps:]) > 0, "traps do not trap"
    if _double_rounds(name):
        np.testing.assert_array_equal(ml, via32)
        np.testing.assert_array_equal(ml != direct, via32 != direct)
    else:
        np.testing.assert_array_equal(ml, direct)


def _overflow_inputs(name: str) -> np.ndarray:
    fmt = fx.parse(name)
    mx = fmt.max
    ulp = math.ldexp(1.0, fmt.emax - fmt.man_bits)  # grid step above max (e4m3fn: 448 → 480)
    tie = mx + ulp / 2
    x = np.array([mx, tie, np.nextafter(tie, np.inf), np.nextafter(tie, 0), mx + ulp, 2 * mx,
                  1e6, 1e30, 1e300])
    return np.concatenate([x, -x])


@pytest.mark.parametrize("name", NAMES)
def test_overflow_matches_ml_dtypes(name):
    """Finite overflow (round to nearest): NaN for fn/fnuz, ±inf for IEEE, ±max for the
    float6/float4 types (no inf, no NaN): the oracle's codes, and ml_dtypes' (which sees the
    float32 rounding of ``x``, so one ulp off the overflow tie is a tie for it)."""
    x = _overflow_inputs(name)
    got = fx.to_bits(x, name)
    np.testing.assert_array_equal(got, _oracle(x, name))
    with np.errstate(over="ignore"):
        x32 = x.astype(np.float32).astype(np.float64)
    seen = x32 if _double_rounds(name) else x
    fin = np.isfinite(seen)  # ±inf inputs: test_inf_inputs
    np.testing.assert_array_equal(_ml_bits(x, name)[fin], fx.to_bits(seen[fin], name))
    clean = x32 == x
    np.testing.assert_array_equal(got[clean], _ml_bits(x, name)[clean])


@pytest.mark.parametrize("name", NAMES)
def test_inf_inputs(name):
    """±inf: ±inf (ieee), NaN (fn, fnuz), ±max (no NaN): ml_dtypes' codes."""
    x = np.array([np.inf, -np.inf])
    got = fx.to_bits(x, name)
    np.testing.assert_array_equal(got, _oracle(x, name))
    np.testing.assert_array_equal(got, _ml_bits(x, name))


@pytest.mark.parametrize("name", NAMES)
def test_nan_inputs(name):
    x = np.array([np.nan, -np.nan])
    if name in NO_NAN:
        # ml_dtypes turns NaN into a zero (of flipped sign); fxemu refuses by default
        assert np.all(_ml_values(_ml_bits(x, name), name) == 0)
        with pytest.raises(ValueError, match="NaN"):
            fx.to_bits(x, name)
        return
    got = fx.to_bits(x, name)
    np.testing.assert_array_equal(got, _oracle(x, name))
    np.testing.assert_array_equal(got, _ml_bits(x, name))


def test_m0_ties_follow_ml_dtypes_e8m0():
    """With no mantissa bits the significand of every normal is 1, so "ties to even" needs a
    convention: fxemu (and its oracle) round the significand integer m in {1, 2}, i.e. ties go
    up to the next binade, as ml_dtypes' float8_e8m0fnu does (1.5 → 2, 3 → 4, 6 → 8)."""
    e8m0 = getattr(ml_dtypes, "float8_e8m0fnu", None)
    if e8m0 is None:
        pytest.skip("ml_dtypes without float8_e8m0fnu")
    e = np.arange(-126, 126)
    x = np.concatenate([np.ldexp(1.5, e), np.ldexp(1.25, e), np.ldexp(1.75, e), np.ldexp(1.0, e),
                        np.ldexp(1.5 + 2.0**-20, e), np.ldexp(1.5 - 2.0**-20, e)])
    want = x.astype(np.float32).astype(e8m0).astype(np.float64)  # float32-exact inputs
    fmt = fx.Float(8, 0, special="fn")  # same normal grid 2^(c-127)
    np.testing.assert_array_equal(fx.quantize(x, fmt).view(np.uint64), want.view(np.uint64))
