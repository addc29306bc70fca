"""Fixed formats against fxpmath's ``Fxp(x, signed, n_word, n_frac, rounding, overflow)``.

fxpmath scales by 2^n_frac in float64 (exact for the inputs used here) and rounds with numpy:

==================  ===================  =====================================
fxpmath rounding    meaning              fxemu rounding
==================  ===================  =====================================
floor, bit_trunc    toward −inf          trn
trunc (default)     toward 0 (np.trunc)  trn_zero
fix                 toward 0 (np.fix)    trn_zero
around              ties to even         rnd_conv
nearest_posinf      ties toward +inf     rnd
nearest_neginf      ties toward −inf     rnd_min_inf
nearest_zero        ties toward 0        rnd_zero
nearest_away        ties away from 0     rnd_inf
ceil                toward +inf          (none)
==================  ===================  =====================================

Overflow ``saturate`` is ``sat``, ``wrap`` is ``wrap``. Raw integers are compared exactly, on
inputs where fxpmath's own float64 arithmetic is exact (see ``_inputs``/``_fxpmath_exact``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fxemu as fx

fxpmath = pytest.importorskip("fxpmath")

ROUNDING = {
    "floor": "trn",
    "bit_trunc": "trn",
    "trunc": "trn_zero",
    "fix": "trn_zero",
    "around": "rnd_conv",
    "nearest_posinf": "rnd",
    "nearest_neginf": "rnd_min_inf",
    "nearest_zero": "rnd_zero",
    "nearest_away": "rnd_inf",
}
OVERFLOW = {"saturate": "sat", "wrap": "wrap"}
# fxpmath's float64 path is exact while x·2^n_frac neither underflows nor reaches 2^62 (its
# wrap casts to int64): a subnormal double scaled by 2^-3 becomes 0 there.
LIMIT = 2.0**61


def _shapes():
    for n_word in (1, 3, 8, 13, 16, 24, 32):
        for n_frac in sorted({-3, 0, n_word // 2, n_word, n_word + 5}):
            yield n_word, n_frac


def _inputs(n_word: int, n_frac: int, seed: int) -> np.ndarray:
    """Codes, ties and their double neighbours, and random doubles in and out of range."""
    rng = np.random.default_rng(seed)
    k = np.arange(-(1 << min(n_word, 7)) - 2, (1 << min(n_word, 7)) + 3, dtype=np.float64)
    span = float(1 << n_word)
    k = np.concatenate([k, span + k, -span + k, rng.integers(-(1 << 40), 1 << 40, 300)])
    pts = np.concatenate([np.ldexp(k, -n_frac), np.ldexp(k + 0.5, -n_frac)])
    pts = np.concatenate([pts, np.nextafter(pts, np.inf), np.nextafter(pts, -np.inf)])
    hi = n_word - n_frac + 8
    rand = np.exp2(rng.uniform(-n_frac - 6, hi, 1500))
    x = np.unique(np.concatenate([pts, rand, -rand, [0.0]]))
    scaled = np.ldexp(x, n_frac)
    return x[(np.abs(scaled) < LIMIT) & (np.ldexp(scaled, -n_frac) == x)]  # exact scaling


def _fxpmath_exact(x: np.ndarray, n_frac: int, rounding: str) -> np.ndarray:
    """Where fxpmath's float64 rounding is exact. Its ``nearest_*`` modes compute the residue
    as ``v - floor(v)`` in float64, which rounds for some v in (-1, 0) (e.g. v = -0.5 + 2^-54
    gives 0.5, a false tie): those inputs are left out (TwoSum error term non-zero)."""
    v = np.ldexp(x, n_frac)
    if not rounding.startswith("nearest_"):
        return np.ones(x.shape, dtype=bool)
    a, b = v, -np.floor(v)
    s = a + b
    bb = s - a
    err = (a - (s - bb)) + (b - bb)
    return err == 0


def _signed_ints(codes: np.ndarray, width: int, signed: bool) -> np.ndarray:
    c = codes.astype(np.int64) if width < 64 else codes.view(np.int64)
    if signed and width < 64:
        c = np.where(c >= 1 << (width - 1), c - (1 << width), c)
    return c


@pytest.mark.parametrize("overflow", sorted(OVERFLOW))
@pytest.mark.parametrize("rounding", sorted(ROUNDING))
@pytest.mark.parametrize("signed", [True, False], ids=["s", "u"])
def test_raw_values_match_fxpmath(signed, rounding, overflow):
    failures = []
    for n_word, n_frac in _shapes():
        x = _inputs(n_word, n_frac, seed=97 * n_word + n_frac)
        x = x[_fxpmath_exact(x, n_frac, rounding)]
        ref = fxpmath.Fxp(x, signed, n_word, n_frac, rounding=rounding, overflow=overflow)
        want = np.asarray(ref.val).astype(np.int64)
        fmt = fx.Fixed(n_word, n_word - n_frac, signed=signed, rounding=ROUNDING[rounding],
                       overflow=OVERFLOW[overflow])
        got = _signed_ints(fx.to_bits(x, fmt), n_word, signed)
        bad = np.flatnonzero(got != want)
        failures += [f"{fmt}: x={float(x[i]).hex()} fxemu {got[i]} fxpmath {want[i]}"
                     for i in bad[:3]]
        # the value too: integer · 2^-F, exactly
        val = fx.quantize(x, fmt)
        bad = np.flatnonzero(val != np.ldexp(want.astype(float), -n_frac))
        failures += [f"{fmt}: x={float(x[i]).hex()} quantize {val[i]} fxpmath {want[i]}"
                     for i in bad[:3]]
    assert not failures, "\n".join(failures[:20])


@pytest.mark.parametrize("text", ["fxp-s16/8", "fxp-u8/3", "fxp-s32/-4", "fxp-s8/12"])
def test_dtype_strings_follow_fxpmath_defaults(text):
    """``fx.parse("fxp-…")`` is fxpmath's dtype with fxpmath's default modes
    (``rounding="trunc"`` = toward zero, ``overflow="saturate"``)."""
    ref = fxpmath.Fxp(None, dtype=text)
    fmt = fx.parse(text)
    assert (fmt.signed, fmt.width, fmt.frac_bits) == (ref.signed, ref.n_word, ref.n_frac)
    assert ROUNDING[ref.config.rounding] == fmt.rounding.value
    assert OVERFLOW[ref.config.overflow] == fmt.overflow.value
    x = np.array([-0.3, 0.3, -2.7, 2.7, -1e9, 1e9, math.ldexp(-5.5, -ref.n_frac)])
    want = np.asarray(fxpmath.Fxp(x, dtype=text).val).astype(np.int64)
    np.testing.assert_array_equal(_signed_ints(fx.to_bits(x, fmt), fmt.width, fmt.signed), want)
