"""The rounding modes, special-value layouts, unsigned and zero-less floats and caller-supplied
random bits added for issue 14, against the Fraction oracles (tests/reference) and ml_dtypes.

Every code of every small format is decoded, and every code value, midpoint, quarter point and
±1 double ulp of them (both signs, ±0, ±inf, NaN, far out of range) is encoded, under every
rounding × overflow of the format.
"""

from __future__ import annotations

import itertools
import math
import os

import numpy as np
import pytest
from reference import fixed_oracle as fo
from reference import float_oracle as flo

import fxemu as fx

#: extensive variants: ``tox -e peers`` (FXEMU_PEERS=1 pytest -m peers) runs them
PEERS = [pytest.mark.peers,
         pytest.mark.skipif(not os.environ.get("FXEMU_PEERS"), reason="set FXEMU_PEERS=1")]
NEW_FLOAT_Q = ("ties_zero", "ties_odd", "ties_pos", "ties_neg", "to_away", "jam")
ALL_FLOAT_Q = ("rne", "rna", "rtz", "rup", "rdn", "rto", *NEW_FLOAT_Q)
NEW_FIXED_Q = ("trn_inf", "trn_away", "trn_mag", "jam", "rto")


def _bits(a: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(a), np.nan, a).view(np.uint64)


def _float_inputs(fmt: fx.Float) -> np.ndarray:
    codes = np.arange(fmt.n_codes, dtype=np.uint64)
    v = np.unique(np.abs(fx.from_bits(codes, fmt)))
    v = v[np.isfinite(v)]
    top = v[-1] * 2.0 ** (1 - fmt.man_bits) if v[-1] > 0 else 1.0
    grid = np.concatenate([v, [v[-1] + top / 4, v[-1] + top / 2, v[-1] + top]])
    pts = [grid, (grid[1:] + grid[:-1]) / 2, grid[:-1] + np.diff(grid) / 4,
           grid[1:] - np.diff(grid) / 4, np.nextafter(grid, np.inf), np.nextafter(grid, 0),
           grid[:1] / 4, grid[:2] / 2]
    x = np.concatenate(pts)
    x = np.concatenate([x, -x, [0.0, -0.0, np.inf, -np.inf, np.nan, 1e300, -1e300, 5e-324]])
    return x[np.isnan(x) | (np.abs(x) < 2.0**1020) | np.isinf(x)]


def _check_float(fmt: fx.Float, x: np.ndarray) -> None:
    spec = flo.FloatSpec(fmt)
    codes = np.arange(fmt.n_codes, dtype=np.uint64)
    want_v = np.array([flo.code_value(int(c), spec) for c in codes])
    assert np.array_equal(_bits(fx.from_bits(codes, fmt)), _bits(want_v)), str(fmt)
    ok = np.ones(x.size, bool)
    if not fmt.has_nan:
        inward = fmt.rounding.value in ("rtz", "rup")
        to_min = (fmt.overflow.value != "inf") | (inward & np.isfinite(x))
        ok = ~np.isnan(x) & (fmt.signed | ~np.signbit(x) | (x == 0) | to_min)
    want = np.array([flo.float_code(float(v), spec) for v in x[ok]], np.uint64)
    got = fx.to_bits(x[ok], fmt)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, (str(fmt), [(float(x[ok][i]).hex(), int(got[i]), int(want[i]))
                                      for i in bad[:4]])
    got_v = fx.quantize(x[ok], fmt)
    assert np.array_equal(_bits(got_v), _bits(want_v[want.astype(np.intp)])), str(fmt)


@pytest.mark.parametrize(("e", "m"), [(2, 1), (4, 0), pytest.param(3, 2, marks=PEERS),
                                    pytest.param(2, 3, marks=PEERS),
                                    pytest.param(5, 2, marks=PEERS)])
def test_new_float_modes_and_layouts_match_the_oracle(e: int, m: int) -> None:
    specials = ["ieee", "fn", "fnuz", "none", "fnuz_inf", "fn_inf"]
    for sp, q, ovf, subn, signed in itertools.product(
            specials, ALL_FLOAT_Q, ("inf", "sat", "sat_finite"), (True, False), (True, False)):
        if (sp == "ieee" and m == 0) or (not signed and sp in ("fnuz", "fnuz_inf")):
            continue
        if q not in NEW_FLOAT_Q and sp in ("ieee", "fn", "fnuz", "none") and signed \
                and ovf != "sat_finite":
            continue  # covered by tests/kernels/test_quantize_oracle.py
        fmt = fx.Float(e, m, special=sp, rounding=q, overflow=ovf, subnormals=subn,
                       signed=signed)
        _check_float(fmt, _float_inputs(fmt))


@pytest.mark.parametrize("name", ["p3109_k8p1", "p3109_k8p1u", "p3109_k6p1f", "p3109_k5p1uf"])
def test_precision_one_code_ties_match_the_oracle(name: str) -> None:
    base = fx.parse(name)
    assert base.code_ties and base.man_bits == 0
    for q in ALL_FLOAT_Q:
        fmt = base.replace(rounding=q)
        _check_float(fmt, _float_inputs(fmt))


@pytest.mark.parametrize(("m", "bias"), [(1, 0), (3, 0), pytest.param(4, 3, marks=PEERS),
                                       pytest.param(6, -2, marks=PEERS)])
def test_formats_without_exponent_bits_match_the_oracle(m: int, bias: int) -> None:
    """E = 0 (P3109 signed p = k): a sign-magnitude grid, every special layout but ieee."""
    for sp, q, ovf, signed in itertools.product(
            ("fn", "fnuz", "none", "fnuz_inf", "fn_inf"), ALL_FLOAT_Q,
            ("inf", "sat", "sat_finite"), (True, False)):
        if (not signed and sp in ("fnuz", "fnuz_inf")) or (m == 1 and sp == "fn_inf"):
            continue  # no -0 code for the NaN; no finite value
        fmt = fx.Float(0, m, bias=bias, special=sp, rounding=q, overflow=ovf, signed=signed)
        assert fmt.max < fmt.smallest_normal  # no normals
        _check_float(fmt, _float_inputs(fmt))


def test_p3109_without_exponent_bits() -> None:
    f = fx.p3109(8, 8)
    assert (f.exp_bits, f.man_bits, f.bias, f.special.value) == (0, 7, 0, "fnuz_inf")
    assert (f.max, f.min, f.smallest_subnormal, f.width) == (126 / 64, -126 / 64, 1 / 64, 8)
    assert str(f) == "p3109_k8p8" and str(fx.p3109(8, 8, extended=False)) == "p3109_k8p8f"
    codes = np.arange(256, dtype=np.uint64)
    v = fx.from_bits(codes, f)
    np.testing.assert_array_equal(v[:127], np.arange(127) / 64)
    assert v[127] == np.inf and np.isnan(v[128]) and v[255] == -np.inf
    np.testing.assert_array_equal(fx.to_bits(v, f), codes)
    # the code after max overflows: +inf (OvfInf), max (saturation)
    assert fx.quantize([1.98, -1.98, 1.976], f).tolist() == [np.inf, -np.inf, 1.96875]
    assert fx.quantize([5.0], f.replace(overflow="sat")).tolist() == [126 / 64]


def test_arithmetic_in_formats_without_exponent_bits() -> None:
    f = fx.p3109(8, 8)
    codes = np.arange(256, dtype=np.uint64)
    v = fx.from_bits(codes, f)
    a, b = np.meshgrid(v, v[::5])
    a, b = a.ravel(), b.ravel()
    with np.errstate(invalid="ignore", over="ignore"):
        for op, exact in ((fx.mul, a * b), (fx.add, a + b)):  # exact in double
            np.testing.assert_array_equal(_bits(op(a, b, f)), _bits(fx.quantize(exact, f)))


def test_zero_less_e8m0_matches_the_oracle_and_ml_dtypes() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    fmt = fx.parse("float8_e8m0fnu")
    assert (fmt.signed, fmt.zero, fmt.width, fmt.bias) == (False, False, 8, 127)
    assert fmt.min == 2.0**-127 and fmt.max == 2.0**127 and not fmt.has_negative_zero
    for q in ALL_FLOAT_Q:
        _check_float(fmt.replace(rounding=q), _float_inputs(fmt))
    x = _float_inputs(fmt)
    with np.errstate(over="ignore", invalid="ignore"):
        ref = x.astype(ml_dtypes.float8_e8m0fnu).view(np.uint8).astype(np.uint64)
    np.testing.assert_array_equal(fx.to_bits(x, fmt), ref)


def test_unsigned_negative_inputs() -> None:
    f = fx.parse("float8_e5m3fnu")
    got = fx.to_bits([-1.0, -0.0, 0.0, -np.inf, np.inf, -1e-30], f).tolist()
    assert got == [0xFF, 0, 0, 0xFF, 0xFF, 0xFF]
    sat = fx.to_bits([-1.0, -np.inf, 2.0], f.replace(overflow="sat")).tolist()
    assert sat == [0, 0, 0x80]
    assert fx.to_bits([-1.0, -np.inf], f.replace(rounding="rtz")).tolist() == [0, 0xFF]
    nonan = fx.Float(4, 3, special="none", signed=False)
    with pytest.raises(ValueError, match=r"^x: contains NaN or negative values but "
                                         r"float<4,3,special=none,signed=false> has no NaN"):
        fx.quantize([1.0, -2.0], nonan)
    assert fx.quantize([-0.0, 3.0], nonan).tolist() == [0.0, 3.0]


@pytest.mark.parametrize(("w", "i", "signed"), [(6, 3, True), (5, 5, False), (1, 0, True),
                                               (4, -2, True), (7, 2, False)])
def test_new_fixed_modes_match_the_oracle(w: int, i: int, signed: bool) -> None:
    f = w - i
    x = np.arange(-(2 ** (w + 3)), 2 ** (w + 3)) * 2.0 ** -(f + 2)
    x = np.concatenate([x, [0.0, -0.0, 1e9, -1e9]])
    for q, o in itertools.product(NEW_FIXED_Q, ("sat", "wrap", "sat_zero", "sat_sym")):
        fmt = fx.Fixed(w, i, signed=signed, rounding=q, overflow=o)
        want = np.array([fo.fixed_code(float(v), fmt) for v in x], np.uint64)
        got = fx.to_bits(x, fmt)
        bad = np.flatnonzero(got != want)
        assert bad.size == 0, (str(fmt), [(x[j], int(got[j]), int(want[j])) for j in bad[:4]])
        codes = np.arange(fmt.n_codes, dtype=np.uint64)
        vals = fx.from_bits(codes, fmt)
        assert np.array_equal(fx.quantize(x, fmt), vals[got.astype(np.intp)])


def test_fixed_modes_on_the_exact_path_for_wide_and_tiny_values() -> None:
    fmt = fx.Fixed(64, 10, rounding="jam", overflow="wrap")
    x = np.array([-(2.0**70), 2.0**70 + 2.0**20, -3.0, -(2.0**-60), 2.0**-1070, -5e-324])
    want = np.array([fo.fixed_code(float(v), fmt) for v in x], np.uint64)
    np.testing.assert_array_equal(fx.to_bits(x, fmt), want)


def _sr_reference(x: float, fmt, u: int, r: int) -> float:
    """Round up (magnitude for floats, two's complement value for fixed) iff the residue
    truncated to r bits plus u reaches 2^r."""
    if isinstance(fmt, fx.Fixed):
        y = x * 2.0**fmt.frac_bits
        t = math.floor(y)
        frac = math.floor((y - t) * 2**r)
        k = t + (1 if frac + u >= 2**r else 0)
        return fx.quantize([k * fmt.step], fmt.replace(rounding="trn"))[0]
    down = fx.quantize([x], fmt.replace(rounding="rtz"))[0]
    if down == x:
        return x
    up = fx.quantize([x], fmt.replace(rounding="to_away"))[0]
    frac = math.floor((abs(x) - abs(down)) / abs(up - down) * 2**r)
    return up if frac + u >= 2**r else down


@pytest.mark.parametrize("fmt", [fx.Fixed(8, 4, rounding="stochastic", overflow="sat"),
                                 fx.Float(4, 3, rounding="stochastic")],
                         ids=["fixed", "float"])
@pytest.mark.parametrize("r", [1, 3, 8])
def test_random_bits_are_the_draw_below_the_lsb(fmt, r: int) -> None:
    rng = np.random.default_rng(r)
    x = np.round(rng.standard_normal(600) * 2**10) / 2**10  # residues on a 2^-6 grid
    u = rng.integers(0, 2**r, x.size, dtype=np.uint64)
    got = fx.quantize(x, fmt, random_bits=u, sr_bits=r)
    want = [_sr_reference(float(a), fmt, int(b), r) for a, b in zip(x, u, strict=True)]
    np.testing.assert_array_equal(got, want)
    u2 = u.reshape(20, 30)
    np.testing.assert_array_equal(fx.to_bits(x.reshape(20, 30), fmt, random_bits=u2,
                                             sr_bits=r).ravel(),
                                  fx.to_bits(x, fmt, random_bits=u, sr_bits=r))


def test_random_bits_errors() -> None:
    f = fx.Float(4, 3, rounding="stochastic")
    with pytest.raises(ValueError, match=r"^random_bits: must have the shape of x, \(3,\); "
                                         r"got \(2,\)"):
        fx.quantize([1.0, 2.0, 3.0], f, random_bits=[1, 2])
    with pytest.raises(ValueError, match=r"^random_bits: must be below 2\^sr_bits = 2\^4"):
        fx.quantize([1.0], f, random_bits=[16], sr_bits=4)
    with pytest.raises(ValueError, match=r"^random_bits: give random_bits or seed, not both"):
        fx.quantize([1.0], f, random_bits=[1], seed=3)
    with pytest.raises(ValueError, match=r"^random_bits: needs a stochastic rounding mode"):
        fx.quantize([1.0], "float16", random_bits=[1])
    with pytest.raises(TypeError, match=r"^random_bits: must be an integer array"):
        fx.quantize([1.0], f, random_bits=[0.5])
    with pytest.raises(ValueError, match=r"^random_bits: must be non-negative"):
        fx.quantize([1.0], f, random_bits=[-1])


@pytest.mark.parametrize("text", [
    "p3109_k8p4", "p3109_k8p4u", "p3109_k8p3uf", "p3109_k8p1", "p3109_k8p1u", "p3109_k8p7",
    "p3109_k8p8u", "p3109_k16p11", "float8_e8m0fnu", "float8_e5m3fnu", "p3109_k8p8",
    "p3109_k3p3f", "float<0,5,bias=2,special=fn_inf,signed=false>", "float<0,4,special=none>",
    "float<4,3,rounding=ties_odd,overflow=sat_finite>", "float<5,2,signed=false>",
    "float<3,0,special=fnuz_inf,code_ties=true>", "ap_fixed<8,4,AP_TRN_MAG,AP_SAT,0>",
    "ac_fixed<8,4,true,AC_JAM,AC_WRAP>", "float<4,3,bias=8,special=fnuz_inf,rounding=jam>",
])
def test_new_names_round_trip(text: str) -> None:
    f = fx.parse(text)
    assert fx.parse(str(f)) == f
    assert str(fx.parse(str(f))) == str(f)


def test_p3109_names_and_aliases() -> None:
    assert fx.parse("p3109_k8p4se") == fx.parse("p3109_k8p4") == fx.p3109(8, 4)
    assert str(fx.parse("p3109_k8p4sf")) == "float8_e4m3fnuz"  # the same format
    f = fx.parse("p3109_k8p4u")
    assert (f.exp_bits, f.man_bits, f.bias, f.signed, f.special.value) == (
        5, 3, 16, False, "fn_inf")
    assert fx.parse("p3109_k8p8") == fx.p3109(8, 8) == fx.Float(0, 7, special="fnuz_inf")
    with pytest.raises(ValueError, match=r"^Float exp_bits: exp_bits=0 \(every value a "
                                         r"subnormal\) needs man_bits >= 1, subnormals and a "
                                         r"special policy other than ieee; got 'man_bits=7, "
                                         r"subnormals=True, special=ieee'"):
        fx.Float(0, 7)
    with pytest.raises(ValueError, match=r"^Float exp_bits: .*got 'man_bits=3, subnormals=False"):
        fx.Float(0, 3, special="fn", subnormals=False)
    with pytest.raises(ValueError, match=r"^Float exp_bits: .*got 'man_bits=0"):
        fx.Float(0, 0, special="none")
    with pytest.raises(ValueError, match=r"^Float: has no finite value; got "
                                         r"'float<0,1,special=fn_inf>'"):
        fx.Float(0, 1, special="fn_inf")
    with pytest.raises(ValueError, match=r"^p3109 p: must be in 1\.\.8; got 9"):
        fx.parse("p3109_k8p9")


def test_hls_type_refuses_what_cxx_cannot_spell() -> None:
    for text in ("p3109_k8p4", "float8_e8m0fnu", "float8_e5m3fnu"):
        with pytest.raises(ValueError, match=r"^hls_type: ac_std_float needs the IEEE"):
            _ = fx.parse(text).hls_type
    for q in NEW_FIXED_Q:
        with pytest.raises(ValueError, match=rf"^hls_type: {q.upper()} is not an ap_fixed"):
            _ = fx.Fixed(8, 4, rounding=q).hls_type
    assert fx.Float(5, 10, rounding="ties_zero").hls_type == "ac_std_float<16,5>"


def test_invalid_unsigned_and_zero_less_formats() -> None:
    with pytest.raises(ValueError, match=r"^Float special: an unsigned format has no -0 code"):
        fx.Float(4, 3, special="fnuz", signed=False)
    with pytest.raises(ValueError, match=r"^Float zero: zero=False needs man_bits=0"):
        fx.Float(4, 3, special="fn", zero=False, subnormals=False)
    with pytest.raises(ValueError, match=r"^Float zero: zero=False needs .*a NaN"):
        fx.Float(4, 0, special="none", zero=False, subnormals=False, signed=False)
    with pytest.raises(TypeError, match=r"^Float signed: must be a bool"):
        fx.Float(4, 3, signed=1)


def test_arithmetic_in_p3109_formats_and_refusal_of_storage_formats() -> None:
    f = fx.parse("p3109_k8p3")
    codes = np.arange(256, dtype=np.uint64)
    v = fx.from_bits(codes, f)
    a, b = np.meshgrid(v, v[::7])
    a, b = a.ravel(), b.ravel()
    with np.errstate(invalid="ignore", over="ignore"):
        exact = a * b  # exact in double (3-bit significands)
    np.testing.assert_array_equal(_bits(fx.mul(a, b, f)), _bits(fx.quantize(exact, f)))
    with pytest.raises(ValueError, match=r"^format: unsigned and zero-less float formats are "
                                         r"storage formats"):
        fx.mul([1.0], [2.0], "float8_e5m3fnu")


@pytest.mark.parametrize("acc", [fx.Fixed(12, 6, rounding="trn_inf", overflow="sat"),
                                 fx.Fixed(12, 6, rounding="jam", overflow="wrap"),
                                 fx.Fixed(12, 6, rounding="trn_mag", overflow="sat"),
                                 fx.Float(4, 3, rounding="ties_zero"),
                                 fx.Float(5, 2, rounding="jam"),
                                 fx.parse("p3109_k8p3").replace(rounding="to_away"),
                                 fx.p3109(12, 12).replace(overflow="sat"),
                                 fx.Float(0, 9, special="none", rounding="rtz")],
                         ids=str)
def test_mac_accumulates_with_the_new_modes(acc) -> None:
    """A sequential Mac rounds every partial sum into acc: the same as rounding acc + p with
    fx.quantize step by step (operands on a coarse grid, so every sum is exact in double)."""
    rng = np.random.default_rng(7)
    a = rng.integers(-8, 8, (5, 24)) / 4.0
    b = rng.integers(-8, 8, (24, 3)) / 8.0
    got = fx.matmul(a, b, fx.Mac(acc=acc))
    want = np.zeros((5, 3))
    for i in range(5):
        for j in range(3):
            s = 0.0
            for k in range(24):
                s = fx.quantize([s + a[i, k] * b[k, j]], acc)[0]
            want[i, j] = s
    np.testing.assert_array_equal(_bits(got), _bits(want))


@pytest.mark.parametrize("name", ["float8_e5m3fnu", "float8_e4m3", "float8_e3m4",
                                  "float8_e4m3b11fnuz", "float8_e8m0fnu"])
def test_new_ml_dtypes_names_every_code_and_value(name: str) -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    dt = np.dtype(getattr(ml_dtypes, name))
    f = fx.parse(name)
    codes = np.arange(256, dtype=np.uint64)
    with np.errstate(invalid="ignore"):
        ref = codes.astype(np.uint8).view(dt).astype(np.float64)
    np.testing.assert_array_equal(_bits(fx.from_bits(codes, f)), _bits(ref))
    assert f.max == float(ml_dtypes.finfo(dt).max)
    x = _float_inputs(f)
    with np.errstate(over="ignore", invalid="ignore"):
        want = x.astype(dt).view(np.uint8).astype(np.uint64)
    got = fx.to_bits(x, f)
    same = (got == want) | (np.isnan(fx.from_bits(got, f)) & np.isnan(fx.from_bits(want, f)))
    assert same.all(), [(float(v).hex(), int(g), int(w)) for v, g, w in
                        zip(x[~same], got[~same], want[~same], strict=True)][:4]


def test_info_describes_a_format_without_exponent_bits() -> None:
    from click.testing import CliRunner

    from fxemu.cli import cli

    out = CliRunner().invoke(cli, ["info", "p3109_k8p8"])
    assert out.exit_code == 0, out.output
    assert "(-1)^s x 2^1 x 0.m (no exponent bits: every value a subnormal)" in out.output
    assert "smallest normal     none" in out.output


def test_block_of_elements_without_exponent_bits() -> None:
    """A block-scaled E = 0 element: scale 2^s with s = floor(log2 amax) - emax_elem, then
    one rounding of x·2^-s into the element (block floating point with a sign-magnitude
    mantissa); a block Mac sums the exact products of the quantized operands."""
    el = fx.Float(0, 7, special="fn", overflow="sat")
    b = fx.Block(el, 8)
    rng = np.random.default_rng(11)
    x = rng.integers(-(2**12), 2**12, (4, 8)) * 2.0**-9
    x[0] = [0.1, 0.5, -3.0, 2.9, 1e-3, 0.0, 0.7, 7.5]
    q = fx.quantize(x, b)
    s = np.floor(np.log2(np.abs(x).max(axis=1, keepdims=True))) - el.emax
    np.testing.assert_array_equal(q, fx.quantize(x * 2.0**-s, el) * 2.0**s)
    y = np.array([7.912, 1, 1, 1, 1, 1, 1, 1])  # 7.912·2^-2 rounds past max (126/64)
    assert fx.quantize(y, b)[0] == 7.875
    assert np.isnan(fx.quantize(y, fx.Block(el.replace(overflow="inf"), 8))[0])
    got = fx.matmul(x, x.T, fx.Mac(acc="float64", a=b, b=b))
    np.testing.assert_array_equal(got, q @ q.T)  # 8 exact products, each sum exact in double
