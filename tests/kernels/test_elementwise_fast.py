"""The elementwise fast path (double result + decision-point proof) equals the exact engine.

``fx.add``/``sub``/``mul``/``fma`` round the double result wherever it is exact or provably
rounds as the exact result (:func:`fxemu._kernels.elementwise.off_decision`), and hand the
rest to the exact engine. Here every result is compared, bit for bit, with the engine run on
every element, on inputs built to sit near the targets' grid points and midpoints (where an
inexact double could round differently), for every deterministic rounding mode of several
formats and for broadcast operands.
"""

from __future__ import annotations

import numpy as np
import pytest

import fxemu as fx
from fxemu import arith as A
from fxemu._kernels import elementwise as kew

FLOATS = ["float16", "bfloat16", "float8_e4m3fn", "float8_e5m2",
          fx.Float(5, 10, subnormals=False)]
FIXEDS = [fx.Fixed(16, 8, overflow="sat"), fx.Fixed(12, 3, overflow="wrap"),
          fx.Fixed(10, 4, signed=False, overflow="sat_sym")]
FLOAT_MODES = ["rne", "rna", "rtz", "rup", "rdn", "rto"]
FIXED_MODES = ["trn", "rnd", "rnd_zero", "rnd_min_inf", "rnd_inf", "rnd_conv", "trn_zero",
               "rnd_conv_odd"]


def _engine(op: str, args: tuple, fmt: object) -> np.ndarray:
    """Every element through the exact engine (the double path reports nothing ok)."""
    real = A._exact_double

    def nothing(*a, **k):
        r, _ = real(*a, **k)
        return r, np.zeros(r.shape, bool)

    A._exact_double = nothing
    try:
        return getattr(fx, op)(*args, fmt)
    finally:
        A._exact_double = real


def _near_points(f: fx.Fixed | fx.Float, rng: np.random.Generator, n: int) -> np.ndarray:
    """Values of ``f`` and midpoints between neighbours, each moved by a few units of the
    double's last place (or not at all)."""
    v = fx.quantize(rng.standard_normal(n) * np.exp2(rng.integers(-12, 6, n)), f, nan="hls")
    v = v[np.isfinite(v)]
    step = np.abs(fx.quantize(v * (1 + 2.0**-3), f) - v)
    mids = v + step / 2
    pts = np.concatenate([v, mids])
    k = rng.integers(-3, 4, pts.size)
    return pts + k * np.spacing(pts)


def _cases(f: fx.Fixed | fx.Float, seed: int, n: int) -> list[tuple[str, tuple]]:
    rng = np.random.default_rng(seed)
    t = _near_points(f, rng, n)
    lr = np.array([-0.01, -0.1, 0.3, -1e-5, 1.0 / 3.0])
    tiny = rng.standard_normal(t.size) * np.exp2(rng.integers(-80, -20, t.size))
    g = fx.quantize(rng.standard_normal(t.size) * np.exp2(rng.integers(-14, 0, t.size)), f,
                    nan="hls")
    g = np.where(np.isfinite(g), g, 0.0)
    return [
        ("add", (t, tiny)),  # sums within a few double ulps of a decision point
        ("sub", (t, -tiny)),
        ("add", (t.reshape(-1, 1)[:60], tiny[None, :40])),  # broadcast (60, 40)
        ("mul", (t, 1.0 + tiny)),
        ("fma", (lr[rng.integers(0, lr.size, t.size)], g, t)),  # the sgd update
        ("fma", (-0.01, g, t)),  # scalar broadcast
        ("fma", (tiny, g, t)),  # products far below the addend
    ]


def _check(fmt: object, n: int) -> None:
    base = fx.parse(fmt) if isinstance(fmt, str) else fmt
    modes = FLOAT_MODES if isinstance(base, fx.Float) else FIXED_MODES
    for i, mode in enumerate(modes):
        f = base.replace(rounding=mode)
        for op, args in _cases(f, i, n):
            got = getattr(fx, op)(*args, f)
            want = _engine(op, args, f)
            np.testing.assert_array_equal(got.view(np.uint64), want.view(np.uint64),
                                          err_msg=f"{op} {f}")


@pytest.mark.parametrize("fmt", FLOATS + FIXEDS, ids=str)
def test_fast_elementwise_equals_engine(fmt: object) -> None:
    _check(fmt, 150)


@pytest.mark.elementwise_full
@pytest.mark.parametrize("fmt", FLOATS + FIXEDS, ids=str)
def test_fast_elementwise_equals_engine_full(fmt: object) -> None:
    _check(fmt, 5000)


def test_the_proof_serves_the_sgd_update() -> None:
    """An sgd update of float16 weights by lr·float16 gradients is inexact in double for
    every element; the decision-point proof settles nearly all of them (else the test above
    would only exercise the engine)."""
    rng = np.random.default_rng(0)
    f16 = fx.parse("float16")
    w = fx.quantize(rng.standard_normal(20_000) * 0.1, f16)
    g = fx.quantize(rng.standard_normal(20_000) * 1e-3, f16)
    views = A._views3([np.asarray(-0.01), g, w], w.shape)
    _, ok = A._exact_double(fx.arith._c.OP_FMA, *views, f16)
    assert ok.mean() > 0.99


def test_off_decision_directed() -> None:
    """Exact units: r on a float16 midpoint (or grid point) with any error bound is refused;
    r a few double ulps off one with a smaller bound passes, a larger one is refused."""
    one = 1.0 + 2.0**-11  # midpoint between 1 and 1 + 2^-10
    u = 2.0**-52
    assert not kew.off_decision(one, 1e-300, False, 10, -14)
    assert not kew.off_decision(1.0, 1e-300, False, 10, -14)
    assert kew.off_decision(one + 8 * u, 4 * u, False, 10, -14)
    assert not kew.off_decision(one + 8 * u, 8 * u, False, 10, -14)
    assert kew.off_decision(one - 8 * u, 6 * u, False, 10, -14)  # D rounds up to 7
    # subnormal float16 results: midpoints are multiples of 2^-25
    assert not kew.off_decision(2.0**-25 * 3, 2.0**-80, False, 10, -14)
    assert kew.off_decision(2.0**-25 * 3 + 2.0**-70, 2.0**-80, False, 10, -14)
    # fixed ap_fixed<16,8>: midpoints are multiples of 2^-9
    assert not kew.off_decision(0.5 + 2.0**-9, 2.0**-60, True, 0, -9)
    assert kew.off_decision(0.5 + 2.0**-9 + 2.0**-40, 2.0**-60, True, 0, -9)
    assert not kew.off_decision(0.0, 2.0**-60, True, 0, -9)


@pytest.mark.parametrize("shape_a,shape_b", [((2, 3, 4, 5, 6), (1, 3, 1, 5, 1)),
                                             ((7,), ()), ((), ()), ((0, 3), (1, 3)),
                                             ((4, 1, 6), (1, 5, 1))])
def test_broadcast_views(shape_a: tuple, shape_b: tuple) -> None:
    rng = np.random.default_rng(1)
    a = rng.standard_normal(shape_a)
    b = rng.standard_normal(shape_b)
    f = fx.parse("bfloat16")
    got = fx.add(a, b, f)
    want = _engine("add", (a, b), f)
    assert got.shape == np.broadcast_shapes(shape_a, shape_b)
    np.testing.assert_array_equal(got.view(np.uint64), want.view(np.uint64))
