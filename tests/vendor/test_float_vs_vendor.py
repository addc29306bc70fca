"""``fx.to_bits(x, Float(E, M, …))`` against the vendor ``ac_std_float<W,E>`` from a double.

Vendor conversions (ac_std_float.h) and the fxemu rounding each one stands for:

====================================================  ==========================================
vendor                                                fxemu ``Float(E, M, rounding=…)``
====================================================  ==========================================
``ac_std_float<W,E> v(x);`` (the constructor)         ``rne`` -- it is ``convert<W,E,AC_RND_CONV>``
``ac_std_float<64,11>(x).convert<W,E,AC_RND_CONV>()`` ``rne``: ties to even
``….convert<W,E,AC_RND_INF>()``                       ``rna``: the rounding acts on the magnitude
                                                      (sign-magnitude), so "ties to +inf" is ties
                                                      away from zero
``….convert<W,E,AC_TRN_ZERO>()``                      ``rtz``: truncates the magnitude; overflow
                                                      gives ±max, inf stays inf (IEEE 754 RTZ)
====================================================  ==========================================

``convert`` accepts only the symmetric modes (``check_supported``: AC_RND_CONV, AC_TRN_ZERO,
AC_RND_INF, AC_RND_CONV_ODD; anything else is a static_assert).  So ``rup``/``rdn`` have no vendor
counterpart, and AC_RND_CONV_ODD is round-to-nearest with ties to odd, which is not fxemu's
``rto`` (round to odd: a sticky truncation) -- neither is compared here.

For E = 11 the constructor is not that conversion: it takes ac_std_float's same-exponent narrowing
``convert<W,AC_RND_CONV>()``, which for W = 64 copies the bits (NaN payloads kept) and for W < 64
drops the carry when a subnormal rounds up to the smallest normal (giving ±0) and rounds NaN
payloads into inf or ±0.  So for E = 11 only ``convert<W,11,Q>`` is the reference.

``subnormals=False`` (FTZ) is compared with the vendor result whose subnormal codes are flushed to
the zero of the same sign: the FTZ contract is "round as if subnormals existed, then flush".

Inputs per (E, M): every code (all codes up to 16 bits, otherwise every exponent with a spread of
mantissas) with its neighbours in double, the midpoints to the next code and one double ulp
either side of them (double-rounding traps), quarter points, the overflow and subnormal
boundaries, ±0, ±inf, huge and subnormal doubles, and 100 000 seeded random doubles.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from vendor import cxx

import fxemu as fx
from fxemu import Float

pytestmark = pytest.mark.vendor

N_RANDOM = 100_000

#: (exp_bits, man_bits): IEEE half, bfloat16, single, the float8/float6-like layouts, tiny
#: ones, double, and E = 11 with a short mantissa (the same exponent range as the input).
SHAPES = [(5, 10), (8, 7), (8, 23), (4, 3), (5, 2), (3, 2), (2, 3), (2, 1), (11, 52), (6, 9),
          (8, 10), (11, 20)]

#: vendor function (template of tests/vendor/cxx.py) -> the fxemu rounding it stands for.
VENDOR_ROUNDING = {
    "ctor": "rne",
    "AC_RND_CONV": "rne",
    "AC_RND_INF": "rna",
    "AC_TRN_ZERO": "rtz",
}


def _hows(e: int) -> list[str]:
    """The vendor conversions that are a reference for exponent width ``e`` (see above)."""
    return [h for h in VENDOR_ROUNDING if not (h == "ctor" and e == 11)]


def _vendor_expr(e: int, m: int, how: str) -> str:
    t = Float(e, m).hls_type
    return f"sf_ctor<{t} >" if how == "ctor" else f"sf_convert<{t}, {how}>"


CASES = [(e, m) for e, m in SHAPES]
_INDEX = {(e, m, how): k for k, (e, m, how) in
          enumerate((e, m, how) for e, m in SHAPES for how in _hows(e))}
PROGRAM = cxx.Program(
    "float", [("float", _vendor_expr(e, m, how)) for (e, m, how) in _INDEX]
)

NANS = np.array(
    [0x7FF8000000000000, 0xFFF8000000000000, 0x7FF0000000000001, 0xFFF0000000000001,
     0x7FF4000000000000, 0x7FFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF],
    dtype=np.uint64,
).view(np.float64)


@pytest.fixture(scope="module")
def float_exe(vendor_build):
    return vendor_build(PROGRAM)


def flush_subnormals(codes: np.ndarray, e: int, m: int) -> np.ndarray:
    """Vendor codes with every subnormal replaced by the zero of the same sign (FTZ)."""
    codes = np.asarray(codes, dtype=np.uint64)
    exp = (codes >> np.uint64(m)) & np.uint64((1 << e) - 1)
    man = codes & np.uint64((1 << m) - 1)
    sign = codes & np.uint64(1 << (e + m))
    return np.where((exp == 0) & (man != 0), sign, codes)


# -- inputs -----------------------------------------------------------------------------------
def _values(e: int, m: int, codes: np.ndarray) -> np.ndarray:
    """Values of non-negative codes of the IEEE layout (E, M); the inf code gives 2^(emax+1)."""
    codes = codes.astype(np.int64)
    bias = (1 << (e - 1)) - 1
    ef = codes >> m
    mf = codes & ((1 << m) - 1)
    normal = ef > 0
    mant = np.where(normal, mf + (1 << m), mf).astype(np.float64)
    with np.errstate(over="ignore"):  # 2^1024 past the max of (11, 52) is inf
        return np.ldexp(mant, np.where(normal, ef, 1) - bias - m)


def _codes(e: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """Non-negative finite codes: all of them up to 16 bits, otherwise a spread per exponent."""
    top = (1 << e) - 1  # the inf/NaN exponent field
    if 1 + e + m <= 16:
        return np.arange(top << m, dtype=np.int64)
    mmax = (1 << m) - 1
    mans = {0, 1, 2, 3, mmax >> 1, (mmax >> 1) + 1, (mmax >> 1) + 2, mmax - 2, mmax - 1, mmax}
    base = np.array(sorted(x for x in mans if 0 <= x <= mmax), dtype=np.int64)
    rows = [(ef << m) + np.concatenate([base, rng.integers(0, mmax + 1, 6)])
            for ef in range(top)]
    return np.unique(np.concatenate(rows))


@functools.lru_cache(maxsize=4)
def float_inputs(e: int, m: int) -> np.ndarray:
    """Directed edge values and N_RANDOM seeded random doubles for the layout (E, M)."""
    rng = np.random.default_rng([0xF10A7, e, m])
    bias = (1 << (e - 1)) - 1
    emin, emax = 1 - bias, (1 << e) - 2 - bias
    codes = _codes(e, m, rng)
    v = _values(e, m, codes)
    vn = _values(e, m, codes + 1)  # next code; past max: 2^(emax+1), the overflow threshold
    with np.errstate(over="ignore"):  # (11, 52): nextafter(max, inf), 2^1024
        parts = [v, np.nextafter(v, np.inf), np.nextafter(v, -np.inf)]
        if m <= 51:  # the midpoint between codes is a double: ties, and one double ulp either side
            mid = v + (vn - v) / 2
            parts += [mid, np.nextafter(mid, np.inf), np.nextafter(mid, -np.inf),
                      v + (vn - v) / 4, v + 3 * (vn - v) / 4]
        else:  # float64 itself: the codes' values and their neighbours are all there is
            parts = [p[np.isfinite(p)] for p in parts]
        tiny = np.ldexp(1.0, emin - m)  # smallest subnormal
        specials = [0.0, np.inf, 1e300, np.finfo(np.float64).max, 2.0**-1022, 5e-324,
                    2.0**-1022 - 2.0**-1074, 1e-300, 2.0**-1060, tiny / 2, tiny / 4, tiny * 0.75,
                    np.ldexp(1.0, emax + 1), np.ldexp(3.0, emax), np.ldexp(1.0, emax + 2)]
    edges = np.concatenate([*parts, np.array(specials)])
    edges = np.concatenate([edges, -edges])
    _, first = np.unique(edges.view(np.uint64), return_index=True)
    edges = edges[np.sort(first)]

    n = N_RANDOM
    n_log, n_near = n // 2, 3 * n // 10
    n_bits = n - n_log - n_near
    # log-uniform magnitudes from below the smallest subnormal to beyond max, full mantissas
    ex = rng.integers(max(-1074, emin - m - 4), min(1023, emax + 3) + 1, n_log)
    man = rng.integers(0, 1 << 52, n_log, dtype=np.uint64) | np.uint64(1 << 52)
    log = np.ldexp(man.astype(np.float64), ex - 52)
    # near random codes: exact ties (when representable) and random fractions of the ulp
    c = rng.choice(codes, n_near)
    lo, hi = _values(e, m, c), _values(e, m, c + 1)
    t = np.where(rng.random(n_near) < 0.3, 0.5, rng.random(n_near))
    with np.errstate(all="ignore"):
        near = lo + (hi - lo) * t
    near = np.where(np.isfinite(near), near, lo)
    # random finite bit patterns
    bits = rng.integers(0, np.iinfo(np.uint64).max, n_bits, dtype=np.uint64, endpoint=True)
    pat = bits.view(np.float64)
    pat = np.where(np.isfinite(pat), pat, 0.0)
    rand = np.concatenate([log, near])
    rand *= rng.choice([-1.0, 1.0], rand.size)
    return np.concatenate([edges, rand, pat])


def _formats(e: int, m: int, how: str) -> list[Float]:
    q = VENDOR_ROUNDING[how]
    return [Float(e, m, rounding=q), Float(e, m, rounding=q, subnormals=False)]


def _expected(want: np.ndarray, fmt: Float) -> np.ndarray:
    return want if fmt.subnormals else flush_subnormals(want, fmt.exp_bits, fmt.man_bits)


# -- tests ------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", CASES, ids=lambda s: f"e{s[0]}m{s[1]}")
def test_float_codes_match_vendor(shape: tuple[int, int], float_exe, tmp_path):
    e, m = shape
    x = float_inputs(e, m)
    hows = _hows(e)
    run = PROGRAM.start(float_exe, x, [_INDEX[e, m, h] for h in hows], tmp_path)
    labels, got, fmts = [], [], []
    for how in hows:
        for f in _formats(e, m, how):
            labels.append(f"{f} vs {_vendor_expr(e, m, how)}")
            got.append(fx.to_bits(x, f))
            fmts.append((how, f))
    want = run.codes()
    rows = [_expected(want[hows.index(how)], f) for how, f in fmts]
    cxx.assert_codes_equal(labels, x, got, np.array(rows))


@pytest.mark.parametrize("shape", CASES, ids=lambda s: f"e{s[0]}m{s[1]}")
def test_float_nan_matches_vendor(shape: tuple[int, int], float_exe, tmp_path):
    e, m = shape
    hows = _hows(e)
    run = PROGRAM.start(float_exe, NANS, [_INDEX[e, m, h] for h in hows], tmp_path)
    want = run.codes()
    labels, got, rows = [], [], []
    for k, how in enumerate(hows):
        for f in _formats(e, m, how):
            labels.append(f"{f} vs {_vendor_expr(e, m, how)}")
            got.append(fx.to_bits(NANS, f))
            rows.append(want[k])
    cxx.assert_codes_equal(labels, NANS, got, np.array(rows))


def test_vendor_constructor_is_round_to_nearest_even(float_exe, tmp_path):
    """The mapping above: the constructor agrees with ``convert<W,E,AC_RND_CONV>``."""
    for e, m in SHAPES:
        if e == 11:
            continue
        x = float_inputs(e, m)
        run = PROGRAM.start(float_exe, x, [_INDEX[e, m, "ctor"], _INDEX[e, m, "AC_RND_CONV"]],
                            tmp_path)
        ctor, conv = run.codes()
        np.testing.assert_array_equal(ctor, conv, err_msg=f"ac_std_float<{1 + e + m},{e}>")
