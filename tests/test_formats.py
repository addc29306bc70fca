"""Formats: parsing every documented notation, canonical text, C++ types, equality, metadata."""

from __future__ import annotations

import itertools
import math
import pickle

import ml_dtypes
import numpy as np
import pytest

import fxemu as fx
from fxemu.formats import (
    PRESETS,
    Fixed,
    FixedOverflow,
    FixedRounding,
    Float,
    FloatOverflow,
    FloatRounding,
    parse,
)

FIXED_Q = [q.value for q in FixedRounding]
FIXED_O = [o.value for o in FixedOverflow]
# the C++ spellings; every one of them is documented in ARCHITECTURE.md
AP_Q = ["AP_TRN", "AP_RND", "AP_RND_ZERO", "AP_RND_MIN_INF", "AP_RND_INF", "AP_RND_CONV",
        "AP_TRN_ZERO"]
AP_O = ["AP_SAT", "AP_SAT_ZERO", "AP_SAT_SYM", "AP_WRAP", "AP_WRAP_SM"]
AC_Q = ["AC_TRN", "AC_RND", "AC_TRN_ZERO", "AC_RND_ZERO", "AC_RND_INF", "AC_RND_MIN_INF",
        "AC_RND_CONV", "AC_RND_CONV_ODD"]
AC_O = ["AC_WRAP", "AC_SAT", "AC_SAT_ZERO", "AC_SAT_SYM"]

ML_NAMES = ["float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz",
            "float6_e3m2fn", "float6_e2m3fn", "float4_e2m1fn", "bfloat16"]
NUMPY_NAMES = ["float16", "float32", "float64"]


# -- parsing every notation ---------------------------------------------------------------------
def test_public_surface():
    assert fx.parse is parse and fx.Fixed is Fixed and fx.Float is Float
    assert fx.PRESETS is PRESETS


@pytest.mark.parametrize("name,signed", [("ap_fixed", True), ("ap_ufixed", False)])
def test_parse_ap_fixed_all_modes(name, signed):
    assert parse(f"{name}<16,8>") == Fixed(16, 8, signed=signed)
    for q in AP_Q:
        f = parse(f"{name}<12,5,{q}>")
        assert f == Fixed(12, 5, signed=signed, rounding=q[3:].lower())
        assert f.overflow is FixedOverflow.WRAP and f.sat_bits == 0 and f.lib == "ap"
    for q, o in itertools.product(AP_Q, AP_O):
        if o == "AP_WRAP_SM" and not signed:
            continue
        f = parse(f"{name}<12,5,{q},{o}>")
        assert (f.rounding.name, f.overflow.name) == (q[3:], o[3:])
        for n in (0, 1, 3, 12):
            g = parse(f"{name}<12,5,{q},{o},{n}>")
            assert g == f.replace(sat_bits=n)
            assert g.sat_bits == n and g.signed is signed


def test_parse_ap_fixed_mode_spellings():
    # lowercase names, and names without the AP_ prefix, are accepted aliases
    ref = Fixed(8, 3, rounding="rnd_conv", overflow="sat_sym")
    for text in ("ap_fixed<8,3,AP_RND_CONV,AP_SAT_SYM>", "ap_fixed<8,3,rnd_conv,sat_sym>",
                 "ap_fixed< 8 , 3 , RND_CONV , SAT_SYM >", "AP_FIXED<8,3,ap_rnd_conv,ap_sat_sym>"):
        assert parse(text) == ref
    assert Fixed(8, 3, rounding=FixedRounding.RND_CONV, overflow=FixedOverflow.SAT_SYM) == ref
    # rounding names of the contract, as keyword strings
    for q in FIXED_Q:
        assert Fixed(8, 3, rounding=q).rounding is FixedRounding(q)


def test_parse_ap_int():
    assert parse("ap_int<8>") == Fixed(8, 8, rounding="trn_zero")
    assert parse("ap_uint<8>") == Fixed(8, 8, signed=False, rounding="trn_zero")
    assert parse("ap_int<64>") == Fixed(64, 64, rounding="trn_zero")
    assert parse("ap_uint<1>") == Fixed(1, 1, signed=False, rounding="trn_zero")
    f = parse("ap_int<12>")
    assert (f.rounding, f.overflow, f.frac_bits, f.lib) == (
        FixedRounding.TRN_ZERO, FixedOverflow.WRAP, 0, "ap")


def test_parse_ac_fixed_all_modes():
    assert parse("ac_fixed<16,8>") == Fixed(16, 8, lib="ac")
    assert parse("ac_fixed<16,8,false>") == Fixed(16, 8, signed=False, lib="ac")
    for s, q, o in itertools.product(("true", "false"), AC_Q, AC_O):
        f = parse(f"ac_fixed<10,3,{s},{q},{o}>")
        assert f == Fixed(10, 3, signed=s == "true", rounding=q[3:].lower(),
                          overflow=o[3:].lower(), lib="ac")
        assert parse(f"ac_fixed<10,3,{s},{q}>") == f.replace(overflow="wrap")
    # the default of ac_fixed is signed, AC_TRN, AC_WRAP
    f = parse("ac_fixed<10,3>")
    assert f.signed and f.rounding is FixedRounding.TRN and f.overflow is FixedOverflow.WRAP
    assert parse("ac_fixed<8,4,1>") == parse("ac_fixed<8,4,true>")
    assert parse("ac_fixed<8,4,0>") == parse("ac_fixed<8,4,false>")


def test_parse_ac_int():
    assert parse("ac_int<8>") == Fixed(8, 8, lib="ac")
    assert parse("ac_int<8,true>") == Fixed(8, 8, lib="ac")
    assert parse("ac_int<7,false>") == Fixed(7, 7, signed=False, lib="ac")
    assert parse("ac_int<8>") != parse("ap_int<8>")  # different assignment rules


def test_parse_ac_std_float():
    assert parse("ac_std_float<32,8>") == Float(8, 23) == parse("float32")
    assert parse("ac_std_float<16,5>") == Float(5, 10) == parse("float16")
    assert parse("ac_std_float<64,11>") == Float(11, 52)
    assert parse("ac_std_float<8,4>") == Float(4, 3)
    assert parse("ac_std_float<19,8>") == parse("tf32")


def test_parse_fxpmath():
    # fxp-<s|u><W>/<F>: fxpmath's defaults are rounding='trunc' (np.trunc: toward zero, i.e.
    # TRN_ZERO, not ap_fixed's floor TRN) and overflow='saturate'
    assert parse("fxp-s16/8") == Fixed(16, 8, rounding="trn_zero", overflow="sat")
    assert parse("fxp-u8/8") == Fixed(8, 0, signed=False, rounding="trn_zero", overflow="sat")
    assert parse("fxp-s8/10") == Fixed(8, -2, rounding="trn_zero", overflow="sat")
    assert parse("fxp-s8/-2") == Fixed(8, 10, rounding="trn_zero", overflow="sat")
    assert parse("FXP-S32/16") == Fixed(32, 16, rounding="trn_zero", overflow="sat")


def test_parse_fxpmath_dtype_strings_from_fxpmath():
    fxpmath = pytest.importorskip("fxpmath")
    for signed, w, f in [(True, 16, 8), (False, 8, 3), (True, 12, 0), (True, 32, 31)]:
        x = fxpmath.Fxp(0.0, signed=signed, n_word=w, n_frac=f)
        fmt = parse(x.dtype)
        assert fmt == Fixed(w, w - f, signed=signed, rounding="trn_zero", overflow="sat"), x.dtype


def test_parse_exmy():
    assert parse("e4m3") == Float(4, 3)  # IEEE-like: inf and NaN, default bias
    assert parse("E5M2") == Float(5, 2) == parse("float8_e5m2")
    assert parse("e8m23") == parse("float32")
    assert parse("e11m52") == parse("float64")
    assert parse("float<3,0,special=fn>") == Float(3, 0, special="fn")


@pytest.mark.parametrize(
    "name,e,m,special",
    [("float64", 11, 52, "ieee"), ("float32", 8, 23, "ieee"), ("tf32", 8, 10, "ieee"),
     ("float16", 5, 10, "ieee"), ("half", 5, 10, "ieee"), ("bfloat16", 8, 7, "ieee"),
     ("float8_e4m3fn", 4, 3, "fn"), ("float8_e5m2", 5, 2, "ieee"),
     ("float8_e4m3fnuz", 4, 3, "fnuz"), ("float8_e5m2fnuz", 5, 2, "fnuz"),
     ("float6_e3m2fn", 3, 2, "none"), ("float6_e2m3fn", 2, 3, "none"),
     ("float4_e2m1fn", 2, 1, "none")],
)
def test_parse_names(name, e, m, special):
    f = parse(name)
    assert f == Float(e, m, special=special)
    assert parse(name.upper()) == f and parse(f"  {name} ") == f
    assert (f.rounding, f.overflow, f.subnormals) == (FloatRounding.RNE, FloatOverflow.INF, True)


def test_half_alias():
    assert parse("half") == parse("float16")
    assert str(parse("half")) == "float16"


def test_parse_accepts_a_format_object():
    f = Fixed(8, 4)
    assert parse(f) is f
    g = Float(5, 10)
    assert parse(g) is g


def test_presets_parse_to_themselves():
    for name, fmt in PRESETS.items():
        assert parse(name) == fmt, name
        assert parse(str(fmt)) == fmt, name


# -- canonical text -----------------------------------------------------------------------------
def _fixed_formats():
    for w in (1, 2, 3, 7, 8, 16, 31, 32, 53, 54, 63, 64):
        for i in sorted({-5, 0, 1, w // 2, w - 1, w, w + 3}):
            for signed, lib in itertools.product((True, False), ("ap", "ac")):
                for q, o in itertools.product(FIXED_Q, FIXED_O):
                    if o == "wrap_sm" and (not signed or lib == "ac"):
                        continue
                    for n in ((0, 1, w) if lib == "ap" else (0,)):
                        yield Fixed(w, i, signed=signed, rounding=q, overflow=o, sat_bits=n,
                                    lib=lib)


def _float_formats():
    for e, m in itertools.product((1, 2, 3, 4, 5, 8, 11), (0, 1, 2, 3, 7, 10, 23, 50, 52)):
        for sp, sub in itertools.product(("ieee", "fn", "fnuz", "none"), (True, False)):
            for bias in (None, 0, 3, (1 << (e - 1)) + 1):
                for q, o in ((q, "inf") for q in FloatRounding):
                    yield (e, m, bias, sub, sp, q, o)
                yield (e, m, bias, sub, sp, "rne", "sat")


def _floats():
    for args in _float_formats():
        try:
            yield Float(*args)
        except ValueError:
            continue


def test_str_roundtrip_fixed():
    n = 0
    for f in _fixed_formats():
        text = str(f)
        assert parse(text) == f, text
        assert str(parse(text)) == text
        n += 1
    assert n > 10_000


def test_str_roundtrip_float():
    n = 0
    for args in _float_formats():
        try:
            f = Float(*args)
        except ValueError as exc:  # range outside float64 or no normal numbers: checked below
            assert any(t in str(exc) for t in ("float64", "no normal numbers",
                                               "ieee specials need man_bits"))
            continue
        text = str(f)
        assert parse(text) == f, (args, text)
        assert str(parse(text)) == text
        n += 1
    assert n > 2_000


def test_str_canonical_spellings():
    assert str(Fixed(16, 8)) == "ap_fixed<16,8,AP_TRN,AP_WRAP,0>"
    assert str(Fixed(8, 4, signed=False, rounding="rnd", overflow="sat", sat_bits=2)) == (
        "ap_ufixed<8,4,AP_RND,AP_SAT,2>")
    assert str(Fixed(8, 4, lib="ac", signed=False)) == "ac_fixed<8,4,false,AC_TRN,AC_WRAP>"
    assert str(Float(5, 10)) == "float16"
    assert str(Float(4, 3)) == "float<4,3>"
    assert str(Float(4, 3, special="fn", rounding="rtz", overflow="sat", subnormals=False,
                     bias=5)) == (
        "float<4,3,bias=5,subnormals=false,special=fn,rounding=rtz,overflow=sat>")
    assert str(Float(5, 10, rounding="stochastic")) == "float<5,10,rounding=stochastic>"
    # a non-default bias whose default-bias sibling would not fit in float64
    f = Float(11, 51, special="fn", bias=1024)
    assert str(f) == "float<11,51,bias=1024,special=fn>" and parse(str(f)) == f


def test_float_options_parse():
    f = parse("float<5,10,subnormals=false,special=none,rounding=rtz,overflow=sat,bias=14>")
    assert f == Float(5, 10, bias=14, subnormals=False, special="none", rounding="rtz",
                      overflow="sat")
    assert parse("float< 5 , 10 , Subnormals = FALSE >") == Float(5, 10, subnormals=False)


# -- C++ types ----------------------------------------------------------------------------------
def test_hls_type_strings():
    assert Fixed(16, 8, rounding="rnd_conv", overflow="sat").hls_type == (
        "ap_fixed<16,8,AP_RND_CONV,AP_SAT,0>")
    assert parse("ap_fixed<16,8>").hls_type == "ap_fixed<16,8,AP_TRN,AP_WRAP,0>"
    assert parse("ap_ufixed<10,2,AP_RND_INF,AP_WRAP,3>").hls_type == (
        "ap_ufixed<10,2,AP_RND_INF,AP_WRAP,3>")
    assert parse("ap_int<8>").hls_type == "ap_fixed<8,8,AP_TRN_ZERO,AP_WRAP,0>"
    assert parse("ac_fixed<8,4,true,AC_RND_CONV_ODD,AC_SAT_SYM>").hls_type == (
        "ac_fixed<8,4,true,AC_RND_CONV_ODD,AC_SAT_SYM>")
    assert parse("ac_int<7,false>").hls_type == "ac_fixed<7,7,false,AC_TRN,AC_WRAP>"
    assert parse("fxp-s16/8").hls_type == "ap_fixed<16,8,AP_TRN_ZERO,AP_SAT,0>"
    assert parse("float16").hls_type == "ac_std_float<16,5>"
    assert parse("float32").hls_type == "ac_std_float<32,8>"
    assert parse("bfloat16").hls_type == "ac_std_float<16,8>"
    assert parse("float8_e5m2").hls_type == "ac_std_float<8,5>"
    assert parse("e4m3").hls_type == "ac_std_float<8,4>"


def test_hls_type_roundtrips_for_every_fixed():
    for f in _fixed_formats():
        if not f.rounding.is_hls or (
                f.lib == "ap" and f.rounding is FixedRounding.RND_CONV_ODD):
            continue
        assert parse(f.hls_type) == f


def test_hls_type_missing():
    with pytest.raises(ValueError, match=r"^hls_type: stochastic rounding is not a C\+\+"):
        _ = Fixed(8, 4, rounding="stochastic").hls_type
    with pytest.raises(ValueError, match=r"^hls_type: ap_fixed has no RND_CONV_ODD.*lib='ac'"):
        _ = Fixed(8, 4, rounding="rnd_conv_odd").hls_type
    for name in ("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2fnuz", "float6_e3m2fn",
                 "float4_e2m1fn"):
        with pytest.raises(ValueError, match=r"^hls_type: ac_std_float needs the IEEE bias"):
            _ = parse(name).hls_type
    with pytest.raises(ValueError, match="ac_std_float needs the IEEE bias"):
        _ = Float(5, 10, bias=14).hls_type


# -- equality and hashing -----------------------------------------------------------------------
def test_equality_normalises_spellings():
    a = Fixed(16, 8, rounding="rnd_conv", overflow="sat")
    b = Fixed(np.int64(16), 8, rounding=FixedRounding.RND_CONV, overflow="AP_SAT")
    c = parse("ap_fixed<16,8,AP_RND_CONV,AP_SAT,0>")
    assert a == b == c and hash(a) == hash(b) == hash(c)
    assert type(b.width) is int
    assert Float(5, 10) == Float(5, 10, bias=15) == parse("half")
    assert hash(Float(5, 10)) == hash(Float(5, 10, bias=15)) == hash(parse("half"))
    assert Float(4, 3, special="fnuz") == Float(4, 3, bias=8, special="fnuz")


def test_inequality():
    base = Fixed(16, 8)
    for other in (Fixed(16, 7), Fixed(15, 8), Fixed(16, 8, signed=False),
                  Fixed(16, 8, rounding="rnd"), Fixed(16, 8, overflow="sat"),
                  Fixed(16, 8, sat_bits=1), Fixed(16, 8, lib="ac"), Float(5, 10)):
        assert base != other
    f = Float(5, 10)
    for other in (Float(5, 9), Float(4, 10), Float(5, 10, bias=14), Float(5, 10, subnormals=False),
                  Float(5, 10, special="fn"), Float(5, 10, rounding="rtz"),
                  Float(5, 10, overflow="sat")):
        assert f != other
    assert Fixed(8, 8) != "ap_int<8>"


def test_formats_as_dict_keys():
    fmts = list(_fixed_formats())[:3000] + list(itertools.islice(_floats(), 0, None, 3))
    table = {f: str(f) for f in fmts}
    # equal exactly when the canonical text is equal (the generator repeats some formats)
    assert len(table) == len({str(f) for f in fmts}) > 5000
    for f in fmts:  # an equal object, built again from text, finds the entry
        g = parse(str(f))
        assert g is not f and hash(g) == hash(f) and table[g] == str(f)
    assert len({parse("half"), parse("float16"), Float(5, 10), parse("ac_std_float<16,5>")}) == 1


def test_frozen_and_replace():
    f = Fixed(16, 8)
    with pytest.raises(AttributeError):
        f.width = 3  # type: ignore[misc]
    assert f.replace(rounding="rnd") == Fixed(16, 8, rounding="rnd")
    g = Float(5, 10)
    with pytest.raises(AttributeError):
        g.man_bits = 3  # type: ignore[misc]
    assert g.replace(man_bits=7, exp_bits=8) == parse("bfloat16")
    assert g.replace(special="fnuz").bias == 16  # the default bias follows the new policy
    with pytest.raises(ValueError, match="wrap_sm needs a signed format"):
        Fixed(8, 4, overflow="wrap_sm").replace(signed=False)


def test_pickle():
    for f in (Fixed(16, 8, rounding="rnd", overflow="sat", sat_bits=2), Fixed(9, 3, lib="ac"),
              parse("float8_e4m3fnuz"), Float(5, 10, bias=3, subnormals=False)):
        g = pickle.loads(pickle.dumps(f))
        assert g == f and hash(g) == hash(f) and g.max == f.max


# -- exact metadata -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ML_NAMES + NUMPY_NAMES)
def test_metadata_matches_ml_dtypes_finfo(name):
    dt = getattr(ml_dtypes, name) if hasattr(ml_dtypes, name) else np.dtype(name).type
    fi = ml_dtypes.finfo(dt)
    f = parse(name)
    assert f.width == fi.bits
    assert f.max == float(fi.max)
    assert f.min == float(fi.min)
    assert f.smallest_normal == float(fi.smallest_normal)
    assert f.smallest_subnormal == float(fi.smallest_subnormal)
    assert f.eps == float(fi.eps)
    assert f.n_codes == 2**fi.bits


@pytest.mark.parametrize("name", [*ML_NAMES, "float16"])
def test_metadata_matches_every_ml_dtypes_code(name):
    """Decode every code with ml_dtypes: max, smallest subnormal, inf, NaN and -0 agree."""
    dt = getattr(ml_dtypes, name) if hasattr(ml_dtypes, name) else np.float16
    f = parse(name)
    store = np.uint16 if f.width > 8 else np.uint8
    with np.errstate(invalid="ignore"):  # NaN codes
        vals = np.arange(f.n_codes, dtype=store).view(dt).astype(np.float64)
    finite = vals[np.isfinite(vals)]
    assert finite.max() == f.max and finite.min() == f.min
    assert finite[finite > 0].min() == f.smallest_subnormal
    assert bool(np.isinf(vals).any()) == f.has_inf
    assert bool(np.isnan(vals).any()) == f.has_nan
    assert bool(((vals == 0) & np.signbit(vals)).any()) == f.has_negative_zero
    assert f.emin == math.frexp(f.smallest_normal)[1] - 1
    assert f.emax == math.frexp(f.max)[1] - 1


@pytest.mark.parametrize(
    "fmt,dt",
    [(Float(4, 3), "float8_e4m3"), (Float(3, 4), "float8_e3m4"),
     (Float(4, 3, bias=11, special="fnuz"), "float8_e4m3b11fnuz")],
)
def test_metadata_matches_other_ml_dtypes(fmt, dt):
    if not hasattr(ml_dtypes, dt):
        pytest.skip(f"ml_dtypes {ml_dtypes.__version__} has no {dt}")
    fi = ml_dtypes.finfo(getattr(ml_dtypes, dt))
    assert (fmt.max, fmt.smallest_normal, fmt.smallest_subnormal, fmt.eps) == (
        float(fi.max), float(fi.smallest_normal), float(fi.smallest_subnormal), float(fi.eps))


def test_metadata_tf32():
    f = parse("tf32")
    assert f.width == 19 and f.n_codes == 2**19
    assert f.max == (2 - 2**-10) * 2.0**127
    assert f.smallest_normal == 2.0**-126 and f.smallest_subnormal == 2.0**-136
    assert f.eps == 2.0**-10 and f.bias == 127


def test_metadata_float_policies():
    f = Float(4, 3, subnormals=False)
    assert f.smallest_subnormal == f.smallest_normal == 2.0**-6 == f.step
    g = Float(4, 0, special="fn")  # M = 0: the whole top binade is NaN, as in an e8m0-like code
    assert g.max == 2.0**7 and g.has_nan and not g.has_inf
    h = Float(4, 3, special="none")
    assert h.max == 1.875 * 2.0**8 and not h.has_nan and h.has_negative_zero
    assert not Float(4, 3, special="fnuz").has_negative_zero
    assert Float(5, 10, bias=3).max == 65504.0 * 2.0**12


def test_metadata_fixed_by_hand():
    f = parse("ap_fixed<8,4>")
    assert (f.min, f.max, f.step, f.eps, f.frac_bits) == (-8.0, 7.9375, 0.0625, 0.0625, 4)
    assert (f.min_int, f.max_int, f.n_codes, f.bits, f.width) == (-128, 127, 256, 8, 8)
    u = parse("ap_ufixed<8,4>")
    assert (u.min, u.max, u.step) == (0.0, 15.9375, 0.0625)
    assert (u.min_int, u.max_int) == (0, 255)
    i = parse("ap_int<16>")
    assert (i.min, i.max, i.step, i.n_codes) == (-32768.0, 32767.0, 1.0, 65536)
    neg = parse("ap_fixed<4,-2>")  # F = 6: codes -8..7 times 2^-6
    assert (neg.min, neg.max, neg.step) == (-0.125, 7 / 64, 2.0**-6)
    big = parse("ap_ufixed<4,7>")  # F = -3: codes 0..15 times 8
    assert (big.min, big.max, big.step) == (0.0, 120.0, 8.0)
    one = parse("ap_fixed<1,1>")
    assert (one.min, one.max, one.step, one.n_codes) == (-1.0, 0.0, 1.0, 2)
    w64 = parse("ap_fixed<64,32>")
    assert w64.min == -(2.0**31) and w64.step == 2.0**-32
    assert w64.max == float((2**63 - 1) * 2.0**-32)  # nearest double of the exact max


# -- invalid specifications ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "text,exc,match",
    [
        ("ap_fixed<0,4>", ValueError, r"^Fixed width: must be in 1\.\.64; got 0$"),
        ("ap_fixed<65,4>", ValueError, r"^Fixed width: must be in 1\.\.64; got 65$"),
        ("ap_int<0>", ValueError, r"Fixed width: must be in 1\.\.64; got 0"),
        ("ap_uint<65>", ValueError, r"Fixed width: must be in 1\.\.64; got 65"),
        ("ac_int<65,false>", ValueError, r"Fixed width: must be in 1\.\.64; got 65"),
        ("ap_fixed<8,2000>", ValueError, r"^Fixed int_bits: must be in -1066\.\.1023; got 2000"),
        ("ap_fixed<8,-1067>", ValueError, r"^Fixed int_bits: must be in -1066\.\.1023"),
        ("ap_fixed<8,4,AP_FOO>", ValueError, r"^Fixed rounding: must be one of trn, rnd, .*"
                                             r"got 'AP_FOO'"),
        ("ap_fixed<8,4,AP_TRN,AP_CLAMP>", ValueError, r"^Fixed overflow: must be one of sat, "
                                                      r"sat_zero, sat_sym, wrap, wrap_sm"),
        ("ac_fixed<8,4,true,AC_RNE>", ValueError, r"^Fixed rounding: must be one of"),
        ("ap_ufixed<8,4,AP_TRN,AP_WRAP_SM>", ValueError, r"wrap_sm needs a signed format"),
        ("ac_fixed<8,4,true,AC_TRN,AC_WRAP_SM>", ValueError, r"ac_fixed has no WRAP_SM"),
        ("ap_fixed<8,4,AP_TRN,AP_WRAP,9>", ValueError, r"^Fixed sat_bits: must be in 0\.\.8"),
        ("ap_fixed<8,4,AP_TRN,AP_WRAP,-1>", ValueError, r"^Fixed sat_bits: must be in 0\.\.8"),
        ("ac_fixed<8,4,true,AC_TRN,AC_WRAP,1>", ValueError,
         r"^parse ac_fixed: takes 2\.\.5 template arguments"),
        ("ac_fixed<8,4,maybe>", ValueError, r"^ac_fixed signed: must be true/false; got 'maybe'"),
        ("ac_int<8,2>", ValueError, r"^ac_int signed: must be true/false"),
        ("e12m3", ValueError, r"^Float exp_bits: must be in 0\.\.11; got 12$"),
        ("e5m53", ValueError, r"^Float man_bits: must be in 0\.\.52; got 53$"),
        ("e0m3", ValueError, r"^Float exp_bits: exp_bits=0 \(every value a subnormal\) needs "),
        ("e3m0", ValueError, r"^Float man_bits: ieee specials need man_bits >= 1"),
        ("ac_std_float<24,12>", ValueError, r"^Float exp_bits: must be in 0\.\.11; got 12$"),
        ("ac_std_float<65,11>", ValueError, r"^Float man_bits: must be in 0\.\.52; got 53$"),
        ("ac_std_float<5,5>", ValueError, r"^Float man_bits: must be in 0\.\.52; got -1$"),
        ("float<5,10,special=odd>", ValueError, r"^Float special: must be one of ieee, fn"),
        ("float<5,10,rounding=rnd>", ValueError, r"^Float rounding: must be one of rne, rna"),
        ("float<5,10,overflow=wrap>", ValueError, r"^Float overflow: must be one of inf, sat"),
        ("float<5,10,color=red>", ValueError, r"^parse float<>: options are key=value"),
        ("float<5,10,rne>", ValueError, r"^parse float<>: options are key=value"),
        ("float<11,52,bias=1022>", ValueError, r"^Float: range must fit in float64"),
        ("float<1,3>", ValueError, r"^Float: has no normal numbers"),
        ("garbage", ValueError, r"^parse: not a format; got 'garbage' \(e\.g\. ap_fixed"),
        ("", ValueError, r"^parse: not a format; got ''"),
        ("ap_fixed<16,8", ValueError, r"^parse: not a format"),
        ("float128", ValueError, r"^parse: not a format; got 'float128'"),
        ("fxp-x16/8", ValueError, r"^parse: not a format"),
        ("sc_fixed<16,8>", ValueError, r"^parse: unknown type template; got 'sc_fixed' \(known:"),
        ("ap_fixed<8>", ValueError, r"^parse ap_fixed: takes 2\.\.5 template arguments; "
                                    r"got 'ap_fixed<8>'$"),
        ("ap_fixed<8,4,AP_TRN,AP_WRAP,0,1>", ValueError, r"^parse ap_fixed: takes 2\.\.5"),
        ("ap_ufixed<8>", ValueError, r"^parse ap_ufixed: takes 2\.\.5"),
        ("ap_int<8,4>", ValueError, r"^parse ap_int: takes 1\.\.1 template arguments"),
        ("ap_uint<>", ValueError, r"^parse: empty template argument"),
        ("ac_int<8,true,1>", ValueError, r"^parse ac_int: takes 1\.\.2"),
        ("ac_std_float<16>", ValueError, r"^parse ac_std_float: takes 2\.\.2"),
        ("ac_fixed<8>", ValueError, r"^parse ac_fixed: takes 2\.\.5"),
        ("float<5>", ValueError, r"^parse float: takes 2\.\.10"),
        ("ap_fixed<8,,4>", ValueError, r"^parse: empty template argument"),
        ("ap_fixed<8.5,4>", ValueError, r"^width: must be an integer; got '8\.5'$"),
        ("ap_fixed<8,4.0>", ValueError, r"^int_bits: must be an integer; got '4\.0'$"),
        ("ap_fixed<W,4>", ValueError, r"^width: must be an integer; got 'W'$"),
        ("ap_int<eight>", ValueError, r"^width: must be an integer"),
        ("ap_fixed<8,4,AP_TRN,AP_WRAP,x>", ValueError, r"^sat_bits: must be an integer"),
        ("float<5,10,bias=x>", ValueError, r"^bias: must be an integer"),
    ],
)
def test_parse_invalid(text, exc, match):
    with pytest.raises(exc, match=match):
        parse(text)


@pytest.mark.parametrize(
    "make,exc,match",
    [
        (lambda: Fixed(0, 0), ValueError, r"^Fixed width: must be in 1\.\.64; got 0$"),
        (lambda: Fixed(65, 8), ValueError, r"^Fixed width: must be in 1\.\.64; got 65$"),
        (lambda: Fixed(16.0, 8), TypeError, r"^Fixed width: must be an int; got 16\.0$"),
        (lambda: Fixed("16", 8), TypeError, r"^Fixed width: must be an int; got '16'$"),
        (lambda: Fixed(True, 1), TypeError, r"^Fixed width: must be an int; got True$"),
        (lambda: Fixed(16, 8.5), TypeError, r"^Fixed int_bits: must be an int; got 8\.5$"),
        (lambda: Fixed(16, None), TypeError, r"^Fixed int_bits: must be an int$"),
        (lambda: Fixed(16, 1024), ValueError, r"^Fixed int_bits: must be in -1058\.\.1023"),
        (lambda: Fixed(16, 8, signed=1), TypeError, r"^Fixed signed: must be a bool; got 1$"),
        (lambda: Fixed(16, 8, rounding="round"), ValueError, r"^Fixed rounding: must be one of"),
        (lambda: Fixed(16, 8, rounding=3), ValueError, r"^Fixed rounding: must be one of"),
        (lambda: Fixed(16, 8, overflow="clip"), ValueError, r"^Fixed overflow: must be one of"),
        (lambda: Fixed(16, 8, signed=False, overflow="wrap_sm"), ValueError,
         r"^Fixed overflow: wrap_sm needs a signed format"),
        (lambda: Fixed(16, 8, lib="ac", overflow="wrap_sm"), ValueError,
         r"^Fixed overflow: ac_fixed has no WRAP_SM"),
        (lambda: Fixed(16, 8, lib="ac", sat_bits=1), ValueError,
         r"^Fixed sat_bits: ac_fixed has no saturation bits; got 1$"),
        (lambda: Fixed(16, 8, sat_bits=17), ValueError, r"^Fixed sat_bits: must be in 0\.\.16"),
        (lambda: Fixed(16, 8, sat_bits=1.0), TypeError, r"^Fixed sat_bits: must be an int"),
        (lambda: Fixed(16, 8, lib="sc"), ValueError, r"^Fixed lib: must be 'ap' or 'ac'"),
        (lambda: Float(12, 3), ValueError, r"^Float exp_bits: must be in 0\.\.11; got 12$"),
        (lambda: Float(0, 3), ValueError, r"^Float exp_bits: exp_bits=0 \(every value a "
                                          r"subnormal\) needs man_bits >= 1, subnormals"),
        (lambda: Float(5, 53), ValueError, r"^Float man_bits: must be in 0\.\.52; got 53$"),
        (lambda: Float(5, -1), ValueError, r"^Float man_bits: must be in 0\.\.52; got -1$"),
        (lambda: Float(5.0, 10), TypeError, r"^Float exp_bits: must be an int; got 5\.0$"),
        (lambda: Float(5, "10"), TypeError, r"^Float man_bits: must be an int; got '10'$"),
        (lambda: Float(5, 10, bias=1.5), TypeError, r"^Float bias: must be an int"),
        (lambda: Float(5, 10, subnormals="no"), TypeError, r"^Float subnormals: must be a bool"),
        (lambda: Float(5, 10, special="nan"), ValueError, r"^Float special: must be one of"),
        (lambda: Float(5, 10, rounding="trn"), ValueError, r"^Float rounding: must be one of"),
        (lambda: Float(5, 10, overflow="wrap"), ValueError, r"^Float overflow: must be one of"),
        (lambda: Float(1, 2), ValueError, r"^Float: has no normal numbers"),
        (lambda: Float(11, 52, special="fn"), ValueError, r"^Float: range must fit in float64"),
        (lambda: Float(8, 23, bias=-1000), ValueError, r"^Float: range must fit in float64"),
        (lambda: parse(16), TypeError, r"^parse: expects a str; got 16$"),
        (lambda: parse(None), TypeError, r"^parse: expects a str$"),
        (lambda: parse(b"float16"), TypeError, r"^parse: expects a str"),
    ],
)
def test_construct_invalid(make, exc, match):
    with pytest.raises(exc, match=match):
        make()
