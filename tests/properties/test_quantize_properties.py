"""Property tests (hypothesis) for ``fx.quantize`` / ``fx.to_bits`` / ``fx.from_bits``.

Formats are drawn over all their parameters; inputs are arbitrary doubles (±inf included) and
values on or next to the format's grid. Plus seeded statistical and reproducibility checks of
stochastic rounding.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from reference import fixed_oracle as fo

import fxemu as fx

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

FIXED_ROUNDINGS = [m.value for m in fx.FixedRounding]
FIXED_OVERFLOWS = [m.value for m in fx.FixedOverflow]
FLOAT_ROUNDINGS = [m.value for m in fx.FloatRounding]
SPECIALS = [m.value for m in fx.Special]


# -- strategies ------------------------------------------------------------------------------


@st.composite
def fixed_formats(draw, max_width: int = 64, rounding=None, overflow=None) -> fx.Fixed:
    width = draw(st.integers(1, max_width))
    int_bits = draw(st.one_of(st.integers(-8, width + 8), st.integers(width - 1074, 1023)))
    kw = {
        "signed": draw(st.booleans()),
        "rounding": rounding or draw(st.sampled_from(FIXED_ROUNDINGS)),
        "overflow": overflow or draw(st.sampled_from(FIXED_OVERFLOWS)),
        "sat_bits": draw(st.one_of(st.just(0), st.integers(0, width))),
        "lib": draw(st.sampled_from(["ap", "ac"])),
    }
    try:
        return fx.Fixed(width, int_bits, **kw)
    except ValueError:
        assume(False)  # an invalid combination (e.g. wrap_sm unsigned, ac with sat_bits)
        raise


@st.composite
def float_formats(draw, max_width: int = 64, rounding=None) -> fx.Float:
    e = draw(st.integers(1, min(11, max_width - 1)))
    m = draw(st.integers(0, min(52, max_width - 1 - e)))
    kw = {
        "bias": draw(st.one_of(st.none(), st.integers(-(1 << 10), 1 << 11),
                               st.integers(-4, 4).map(lambda d, e=e: (1 << (e - 1)) + d))),
        "subnormals": draw(st.booleans()),
        "special": draw(st.sampled_from(SPECIALS)),
        "rounding": rounding or draw(st.sampled_from(FLOAT_ROUNDINGS)),
        "overflow": draw(st.sampled_from(["inf", "sat"])),
    }
    try:
        return fx.Float(e, m, **kw)
    except ValueError:
        assume(False)  # no normal numbers, range beyond float64, ieee with M = 0
        raise


def formats(max_width: int = 64):
    return st.one_of(fixed_formats(max_width), float_formats(max_width))


@st.composite
def near_grid(draw, fmt) -> float:
    """A value on the format's grid, a midpoint, or one double ulp from either."""
    width = min(fmt.width, 62)
    code = draw(st.integers(0, (1 << width) - 1))
    v = float(fx.from_bits(np.array([code], dtype=np.uint64), fmt)[0])
    assume(math.isfinite(v))
    step = _step_at(fmt, v)
    kind = draw(st.sampled_from(["code", "mid", "up", "down", "mid+", "mid-"]))
    if kind.startswith("mid"):
        v = v + step / 2
        if not math.isfinite(v):
            v = math.copysign(fmt.max, v)
    if kind.endswith(("+", "up")):
        v = math.nextafter(v, math.inf)
    elif kind.endswith(("-", "down")):
        v = math.nextafter(v, -math.inf)
    return v


def _step_at(fmt, v: float) -> float:
    """Grid spacing just above ``v`` (fixed: the LSB; float: the ulp of v's binade)."""
    if isinstance(fmt, fx.Fixed):
        return fmt.step
    a = abs(v)
    e = max(math.frexp(a)[1] - 1 if a else fmt.emin, fmt.emin)
    return math.ldexp(1.0, e - fmt.man_bits)


@st.composite
def format_and_inputs(draw, max_width: int = 64, fmt_strategy=None):
    fmt = draw(fmt_strategy if fmt_strategy is not None else formats(max_width))
    anything = st.floats(allow_nan=False, allow_infinity=True)
    xs = draw(st.lists(st.one_of(anything, near_grid(fmt)), min_size=1, max_size=40))
    return fmt, np.array(xs, dtype=np.float64)


def _bits(a: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(a), np.nan, a).view(np.uint64)


def _exact_values(fmt) -> bool:
    """Whether quantize's float64 results are exact register values."""
    return not (isinstance(fmt, fx.Fixed) and fmt.width > 53)


# -- format specs ----------------------------------------------------------------------------


_ANY = st.one_of(st.integers(-3, 70), st.integers(-2000, 2000), st.booleans(), st.none(),
                 st.floats(),
                 st.text(max_size=6), st.sampled_from(FIXED_ROUNDINGS + FIXED_OVERFLOWS
                                                      + FLOAT_ROUNDINGS + SPECIALS))


@SETTINGS
@given(st.data())
def test_any_spec_constructs_or_raises_value_or_type_error(data):
    kind = data.draw(st.sampled_from(["fixed", "float"]))
    names = (["width", "int_bits", "signed", "rounding", "overflow", "sat_bits", "lib"]
             if kind == "fixed" else
             ["exp_bits", "man_bits", "bias", "subnormals", "special", "rounding", "overflow"])
    kw = {n: data.draw(_ANY, label=n) for n in names if data.draw(st.booleans()) or n in names[:2]}
    cls = fx.Fixed if kind == "fixed" else fx.Float
    try:
        fmt = cls(**kw)
    except (ValueError, TypeError):
        return
    assert fx.parse(str(fmt)) == fmt
    x = np.array(data.draw(st.lists(st.floats(), min_size=1, max_size=8)))
    try:
        q = fx.quantize(x, fmt)
    except ValueError as exc:  # only NaN into a format without NaN
        assert np.isnan(x).any() and "NaN" in str(exc)
        return
    assert q.shape == x.shape and q.dtype == np.float64


@SETTINGS
@given(formats())
def test_str_round_trips(fmt):
    assert fx.parse(str(fmt)) == fmt


# -- quantize properties ---------------------------------------------------------------------


@SETTINGS
@given(format_and_inputs())
def test_idempotent(case):
    fmt, x = case
    assume(fmt.rounding.keeps_exact)  # jamming sets the LSB of exact values too
    q = fx.quantize(x, fmt, seed=1)
    assume(_exact_values(fmt))
    if isinstance(fmt, fx.Fixed):
        # the vendors read some doubles not at face value (ap: subnormals get the hidden bit;
        # ac: pre-scaling may underflow), so a register value there need not re-read as itself
        assume(not np.any((q != 0) & (np.abs(q) < 2.0**-1022 * 2.0**64)))
    if np.isnan(q).any():
        assert isinstance(fmt, fx.Float) and fmt.has_nan
    np.testing.assert_array_equal(_bits(fx.quantize(q[~np.isnan(q)], fmt, seed=2)),
                                  _bits(q[~np.isnan(q)]))
    np.testing.assert_array_equal(fx.to_bits(q[~np.isnan(q)], fmt),
                                  fx.to_bits(x, fmt, seed=1)[~np.isnan(q)])


@SETTINGS
@given(format_and_inputs())
def test_results_in_range(case):
    fmt, x = case
    q = fx.quantize(x, fmt, seed=3)
    fin = np.isfinite(q)
    assert np.all(q[fin] >= fmt.min) and np.all(q[fin] <= fmt.max)
    if isinstance(fmt, fx.Fixed):
        assert fin.all()
        return
    if not fmt.has_inf:
        assert not np.isinf(q).any()
    if not fmt.has_nan:
        assert not np.isnan(q).any()
    if fmt.overflow is fx.FloatOverflow.SAT:
        assert not np.isnan(q[np.isfinite(x)]).any()
        assert not np.isinf(q[np.isfinite(x)]).any()
    # values inside the range never overflow
    inside = np.abs(x) <= fmt.max
    assert np.isfinite(q[inside]).all()


def _monotone_format(fmt) -> bool:
    """Monotone over all inputs (wrap and sat_zero are monotone only inside the range)."""
    return not isinstance(fmt, fx.Fixed) or fmt.overflow.value in ("sat", "sat_sym")


@SETTINGS
@given(format_and_inputs())
def test_monotone(case):
    fmt, x = case
    assume(not fmt.rounding.value.startswith("stochastic"))
    if isinstance(fmt, fx.Fixed) and not _monotone_format(fmt):
        x = x[(x >= fmt.min) & (x <= fmt.max)]  # wrap / sat_zero: monotone inside the range
    x = np.sort(x)
    q = fx.quantize(x, fmt)
    q = q[~np.isnan(q)]  # fn / fnuz overflow
    assert np.all(q[1:] >= q[:-1]), (str(fmt), [v.hex() for v in x.tolist()])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(formats(max_width=16))
def test_every_code_round_trips(fmt):
    assume(fmt.rounding.keeps_exact)  # jamming sets the LSB of exact values too
    codes = np.arange(fmt.n_codes, dtype=np.uint64)
    v = fx.from_bits(codes, fmt)
    back = fx.to_bits(v[~np.isnan(v)], fmt, seed=5)
    keep = codes[~np.isnan(v)]
    if isinstance(fmt, fx.Fixed):
        # the vendors read some tiny doubles not at face value: ap gives a subnormal double
        # the hidden bit, ac pre-scales by 2^-(I+!S+pad) in double (see fixed_oracle.read)
        ns = 0 if fmt.signed else 1
        shift = fmt.int_bits + ns + ((32 - fmt.width - ns) & 31) if fmt.lib == "ac" else 0
        tiny = 2.0 ** max(shift - 1022, -1074)
        vv = v[~np.isnan(v)]
        face = (vv == 0) | (np.abs(vv) >= tiny)
        back, keep = back[face], keep[face]
        if fmt.overflow is fx.FixedOverflow.SAT_SYM and fmt.signed:
            # min_int counts as overflow: it saturates to min | 1 (-max; min itself at W = 1)
            lo = np.uint64(1 << (fmt.width - 1))
            assert np.all(back[keep == lo] == np.uint64((1 << (fmt.width - 1)) | 1))
            back, keep = back[keep != lo], keep[keep != lo]
        np.testing.assert_array_equal(back, keep)
        return
    sign = np.uint64(1 << (fmt.width - 1))
    if not fmt.subnormals:
        sub = ((keep & (sign - np.uint64(1))) >> np.uint64(fmt.man_bits)) == 0
        # FTZ: subnormal codes decode to their value, which flushes to a same-signed zero
        # (+0 under fnuz, which has no -0)
        zero = keep[sub] & sign if fmt.has_negative_zero else np.zeros_like(keep[sub])
        np.testing.assert_array_equal(back[sub], zero)
        back, keep = back[~sub], keep[~sub]
    np.testing.assert_array_equal(back, keep)


# -- stochastic rounding ---------------------------------------------------------------------


sr_formats = st.one_of(
    fixed_formats(max_width=40, rounding="stochastic").filter(
        lambda f: f.overflow.value in ("sat", "sat_zero", "sat_sym", "wrap") and f.sat_bits == 0),
    float_formats(rounding="stochastic"),
)


@SETTINGS
@given(format_and_inputs(fmt_strategy=sr_formats), st.integers(0, 2**63 - 1))
def test_stochastic_same_seed_same_result(case, seed):
    fmt, x = case
    a = fx.to_bits(x, fmt, seed=seed)
    np.testing.assert_array_equal(fx.to_bits(x, fmt, seed=seed), a)
    np.testing.assert_array_equal(_bits(fx.quantize(x, fmt, seed=seed)),
                                  _bits(fx.from_bits(a, fmt)))


def _neighbours(x: float, fmt) -> set:
    """The two candidates of a stochastic rounding of ``x`` (as register values)."""
    if isinstance(fmt, fx.Fixed):
        F, w, s, o = fmt.frac_bits, fmt.width, fmt.signed, fmt.overflow.value
        fx_ = Fraction(x) if math.isfinite(x) else Fraction(2) ** 1024 * (1 if x > 0 else -1)
        lo = fo.round_int(fx_, F, "trn")
        hi = -fo.round_int(-fx_, F, "trn")
        return {fo.overflow_int(k, w, s, o) * Fraction(2) ** -F for k in (lo, hi)}
    down = fx.quantize([x], fmt.replace(rounding="rtz"))[0]
    up_mode = "rup" if x > 0 else "rdn"
    up = fx.quantize([x], fmt.replace(rounding=up_mode))[0]
    return {Fraction(float(down)), Fraction(float(up))} if math.isfinite(up) else {down, up}


@SETTINGS
@given(format_and_inputs(fmt_strategy=sr_formats), st.integers(0, 2**32))
def test_stochastic_result_is_a_neighbour(case, seed):
    fmt, x = case
    if isinstance(fmt, fx.Float):
        x = x[np.abs(x) <= fmt.max]  # at overflow the "up" neighbour follows the overflow rule
    else:  # the vendors read subnormal doubles (ap) and tiny ones (ac) not at face value
        x = x[(x == 0) | (np.abs(x) >= 2.0**-958)]
    q = fx.quantize(x, fmt, seed=seed)
    for xi, qi in zip(x.tolist(), q.tolist(), strict=True):
        assert Fraction(qi) in _neighbours(xi, fmt), (str(fmt), xi.hex(), qi)


_SR_CASES = [
    (fx.Fixed(8, 4, rounding="stochastic", overflow="sat"), 0.3 / 16 + 1.0),
    (fx.Fixed(8, 4, rounding="stochastic", overflow="sat"), -1.0 - 0.7 / 16),
    (fx.Fixed(16, 2, signed=False, rounding="stochastic"), 1e-5),
    (fx.Float(4, 3, rounding="stochastic"), 1.0 + 0.1 / 8),
    (fx.Float(5, 2, rounding="stochastic"), -3.0e-5),  # subnormal range
    (fx.Float(8, 7, rounding="stochastic"), math.pi),
    (fx.Float(4, 3, special="fn", rounding="stochastic", subnormals=False), -0.07),
]


@pytest.mark.parametrize(("fmt", "x"), _SR_CASES, ids=[str(f) for f, _ in _SR_CASES])
def test_stochastic_mean_is_unbiased(fmt, x):
    n = 40_000
    q = fx.quantize(np.full(n, x), fmt, seed=12345)
    vals = sorted(_neighbours(x, fmt))
    assert set(np.unique(q).tolist()) <= {float(v) for v in vals}
    lo, hi = float(vals[0]), float(vals[-1])
    p = (x - lo) / (hi - lo)  # probability of the upper neighbour
    sigma = (hi - lo) * math.sqrt(p * (1 - p) / n)
    assert abs(q.mean() - x) < 5 * sigma + 1e-300


@pytest.mark.parametrize("sr_bits", [1, 2, 3])
@pytest.mark.parametrize("frac", [0.3, 0.55, 0.9])
@pytest.mark.parametrize("sign", [1, -1])
def test_stochastic_sr_bits_truncates_the_probability(sr_bits, frac, sign):
    """Adding r random bits below the LSB: P(round toward +inf) = floor_r(f) for fixed (two's
    complement fraction f), P(magnitude up) = floor_r(g) for floats (magnitude fraction g)."""
    n = 40_000
    fixed = fx.Fixed(12, 4, rounding="stochastic", overflow="sat")
    x = sign * (2.0 + frac) * fixed.step
    q = fx.quantize(np.full(n, x), fixed, seed=7, sr_bits=sr_bits)
    f = x / fixed.step - math.floor(x / fixed.step)
    p = math.floor(f * 2**sr_bits) / 2**sr_bits
    up = np.mean(q > x)
    assert abs(up - p) < 5 * math.sqrt(max(p * (1 - p), 1 / n) / n)
    flt = fx.Float(5, 3, rounding="stochastic")
    x = sign * (1.0 + (2 + frac) / 8)
    q = fx.quantize(np.full(n, x), flt, seed=7, sr_bits=sr_bits)
    p = math.floor(frac * 2**sr_bits) / 2**sr_bits
    up = np.mean(np.abs(q) > abs(x))
    assert abs(up - p) < 5 * math.sqrt(max(p * (1 - p), 1 / n) / n)


@pytest.fixture
def restore_threads():
    n = numba.get_num_threads()
    yield
    numba.set_num_threads(n)


@pytest.mark.parametrize("fmt", [fx.Fixed(10, 3, rounding="stochastic", overflow="sat"),
                                 fx.Float(4, 3, rounding="stochastic"),
                                 fx.Float(8, 7, rounding="stochastic", subnormals=False)],
                         ids=str)
def test_stochastic_independent_of_threads_and_chunks(fmt, restore_threads):
    rng = np.random.default_rng(0)
    x = rng.normal(scale=4.0, size=300_001)
    numba.set_num_threads(1)
    one = fx.to_bits(x, fmt, seed=99)
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    many = fx.to_bits(x, fmt, seed=99)
    np.testing.assert_array_equal(one, many)
    # a prefix processed alone equals the same elements of the whole (element index keyed)
    for n in (1, 7, 4096, 123_457):
        np.testing.assert_array_equal(fx.to_bits(x[:n], fmt, seed=99), one[:n])
    # shape and memory layout do not matter: element i of the C-order flattening
    np.testing.assert_array_equal(fx.to_bits(x[:300_000].reshape(600, 500), fmt, seed=99),
                                  one[:300_000].reshape(600, 500))
    xt = x[:300_000].reshape(500, 600).T  # non-contiguous view
    np.testing.assert_array_equal(fx.to_bits(xt, fmt, seed=99),
                                  fx.to_bits(np.ascontiguousarray(xt), fmt, seed=99))
    out = np.empty(x.size, dtype=np.uint64)
    fx.to_bits(x, fmt, seed=99, out=out)
    np.testing.assert_array_equal(out, one)
    # and a different seed does change the draws
    assert np.count_nonzero(fx.to_bits(x, fmt, seed=100) != one) > 0
