"""The conversion API: coercion, shapes, ``out=``, errors, thread independence, doctests."""

from __future__ import annotations

import doctest
import sys

import numba
import numpy as np
import pytest

import fxemu as fx

FORMATS = ["ap_fixed<16,8,AP_RND_CONV,AP_SAT>", "ap_fixed<12,4>", "float16", "float8_e4m3fn",
           "ap_fixed<64,20,AP_RND,AP_WRAP_SM,3>", fx.Float(5, 10, rounding="stochastic")]


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_shapes_dtypes_views_and_out(fmt: object) -> None:
    rng = np.random.default_rng(3)
    base = rng.standard_normal((6, 7, 8)) * 20
    ref = fx.quantize(base, fmt, seed=1)
    assert ref.shape == base.shape and ref.dtype == np.float64
    # non-contiguous and transposed views give the same values element by element
    view = base[:, ::2, 1::3].transpose(2, 0, 1)
    got = fx.quantize(view, fmt, seed=1)
    # stochastic streams are keyed by position in the array given, so compare to a copy
    np.testing.assert_array_equal(got, fx.quantize(np.ascontiguousarray(view), fmt, seed=1))
    # float32 input is widened exactly
    x32 = base.astype(np.float32)
    np.testing.assert_array_equal(fx.quantize(x32, fmt, seed=1),
                                  fx.quantize(x32.astype(np.float64), fmt, seed=1))
    # out= is written in place and returned
    out = np.empty_like(base)
    res = fx.quantize(base, fmt, seed=1, out=out)
    assert res is out
    np.testing.assert_array_equal(out, ref)
    bits_out = np.empty(base.shape, np.uint64)
    assert fx.to_bits(base, fmt, seed=1, out=bits_out) is bits_out
    np.testing.assert_array_equal(fx.from_bits(bits_out, fmt), ref)
    # scalars and lists
    assert fx.quantize(1.0, fmt).shape == ()
    assert fx.quantize([1.0, 2.0], fmt).shape == (2,)


def test_integer_inputs() -> None:
    np.testing.assert_array_equal(fx.quantize(np.arange(-3, 4), "ap_fixed<4,3>"),
                                  [-3, -2, -1, 0, 1, 2, 3])
    with pytest.raises(ValueError, match="exactly representable"):
        fx.quantize(np.array([2**60 + 1]), "float32")


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: fx.quantize(np.array([1 + 1j]), "float16"), TypeError, "real numeric"),
        (lambda: fx.quantize(np.array(["a"]), "float16"), TypeError, "real numeric"),
        (lambda: fx.quantize([1.0], 3), TypeError, "must be a Fixed, a Float"),
        (lambda: fx.quantize([1.0], "ap_fixd<8,4>"), ValueError, "unknown type template"),
        (lambda: fx.quantize([1.0], "float16", out=np.empty(2)), ValueError, "shape"),
        (lambda: fx.quantize([1.0], "float16", out=np.empty(1, np.float32)), TypeError, "dtype"),
        (lambda: fx.quantize(np.ones(4), "float16", out=np.empty(8)[::2]), ValueError,
         "contiguous"),
        (lambda: fx.quantize([np.nan], "ap_fixed<8,4>"), ValueError, "NaN.*nan='hls'"),
        (lambda: fx.quantize([1.0, np.nan], "float6_e3m2fn"), ValueError, "has no NaN"),
        (lambda: fx.quantize([1.0], "float16", nan="ignore"), ValueError, "'raise' or 'hls'"),
        (lambda: fx.quantize([1.0], fx.Float(5, 10, rounding="stochastic"), sr_bits=0),
         ValueError, "sr_bits"),
        (lambda: fx.quantize([1.0], fx.Float(5, 10, rounding="stochastic"), seed=-1),
         ValueError, "seed"),
        (lambda: fx.quantize([1.0], fx.Float(5, 10, rounding="stochastic"), seed=1.5),
         TypeError, "seed"),
        (lambda: fx.from_bits([1.5], "float16"), TypeError, "integer array"),
        (lambda: fx.from_bits([0x10000], "float16"), ValueError, "below 2\\^16"),
        (lambda: fx.from_bits([-1], "float16"), ValueError, "non-negative"),
    ],
)
def test_errors(call, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        call()


def test_nan_hls_matches_ap_fixed_reading_nan_as_a_number() -> None:
    # ap_fixed reads the NaN bit pattern as an ordinary (huge) exponent and mantissa
    got = fx.to_bits([np.nan, -np.nan], "ap_fixed<8,4,AP_TRN,AP_SAT>", nan="hls")
    np.testing.assert_array_equal(got, [0x7F, 0x80])


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_results_do_not_depend_on_thread_count(fmt: object) -> None:
    rng = np.random.default_rng(11)
    x = rng.standard_normal(100_003) * 50
    n0 = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = fx.to_bits(x, fmt, seed=7)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = fx.to_bits(x, fmt, seed=7)
    finally:
        numba.set_num_threads(n0)
    np.testing.assert_array_equal(one, many)


@pytest.mark.parametrize("module", ["fxemu.formats", "fxemu.quantize", "fxemu._errors"])
def test_doctests(module: str) -> None:
    __import__(module)
    res = doctest.testmod(sys.modules[module], optionflags=doctest.NORMALIZE_WHITESPACE)
    assert res.attempted > 0 and res.failed == 0


@pytest.mark.parametrize("subnormals", [True, False])
def test_saturation_when_max_is_a_subnormal_double(subnormals: bool) -> None:
    """A format whose largest value lies below double's smallest normal (e1m0, bias 1025:
    max 2^-1024) saturates to that value, not to the next code (found by hypothesis)."""
    f = fx.Float(1, 0, bias=1025, subnormals=subnormals, special="fnuz", overflow="sat")
    assert f.max == 2.0**-1024
    np.testing.assert_array_equal(fx.quantize(np.array([1.0, -1.0]), f), [f.max, -f.max])
    np.testing.assert_array_equal(fx.to_bits(np.array([1.0, -1.0]), f), [1, 3])
