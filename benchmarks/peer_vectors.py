"""Peer test vectors through fxemu: per peer, how many cases fxemu can express and how many agree.

Each peer's own cases are rebuilt here from what its test suite and documentation define (the
installed wheels ship no tests): every code of every format a peer tests is decoded; every code
value, midpoint, quarter point, ±, ±0, ±inf, NaN and values far out of range are encoded under
every rounding mode and overflow/saturation policy the peer offers. A *case* is one
(format, mode, policy, input) the peer computes; it is *expressible* when fxemu has the format,
the mode and the policy; *before* counts the cases expressible before issue 14 (no unsigned,
zero-less or P3109 layouts, no ``sat_finite``, no APyTypes modes, no ``random_bits``).

    python benchmarks/peer_vectors.py            # the table (and docs/peer_vectors.md's)
    python benchmarks/peer_vectors.py --details  # also every reason and disagreement class

Peers: gfloat, ml_dtypes, APyTypes, fxpmath, pychop (its IEEE ``Chop`` and its P3109
emulator), QPyTorch (``qtorch``: its C++ extension is built by torch at first import, which
needs ninja and g++). Prints, never asserts; tests/test_peers_*.py assert the agreement.
"""

from __future__ import annotations

import argparse
import itertools
import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

import fxemu as fx


@dataclass
class Tally:
    """Counts of one peer."""

    cases: int = 0
    before: int = 0
    agree: int = 0
    disagree: int = 0
    missing: Counter = field(default_factory=Counter)  # reason -> cases not expressible
    why: Counter = field(default_factory=Counter)  # disagreement class -> cases

    @property
    def expressible(self) -> int:
        return self.agree + self.disagree

    def skip(self, n: int, reason: str) -> None:
        self.cases += n
        self.missing[reason] += n

    def compare(self, got: np.ndarray, want: np.ndarray, new: bool | np.ndarray,
                why: str = "fxemu bug?") -> None:
        """Codes or value bit patterns of fxemu (got) and the peer (want); NaN patterns (all
        ones beyond the uint64 range here) are made equal by the caller."""
        ok = got == want
        n = got.size
        self.cases += n
        self.before += int(n - np.sum(np.broadcast_to(new, got.shape)))
        self.agree += int(ok.sum())
        self.disagree += int(n - ok.sum())
        if not ok.all():
            self.why[why] += int(n - ok.sum())


def _vbits(v: np.ndarray) -> np.ndarray:
    """float64 bit patterns with every NaN the same."""
    v = np.asarray(v, np.float64)
    return np.where(np.isnan(v), np.nan, v).view(np.uint64)


def _grid_inputs(vals: np.ndarray, rng: np.random.Generator, n_rand: int = 200) -> np.ndarray:
    """Code values, midpoints, quarter points, ±, ±0, ±inf, NaN, out of range, random."""
    v = np.unique(np.abs(vals[np.isfinite(vals)]))
    if v.size > 2048:
        v = np.sort(rng.choice(v, 2048, replace=False))
    d = np.diff(v)
    top = v[-1] if v[-1] > 0 else 1.0
    pts = np.concatenate([v, v[:-1] + d / 2, v[:-1] + d / 4, v[1:] - d / 4,
                          [top * 1.125, top * 1.5, top * 4, 1e300, v[1] / 2 if v.size > 1 else 0],
                          np.exp2(rng.uniform(np.log2(max(v[1] if v.size > 1 else 1e-300,
                                                              1e-300)) - 3,
                                              np.log2(top) + 2, n_rand))])
    pts = pts[np.isfinite(pts)]
    return np.concatenate([pts, -pts, [0.0, -0.0, np.inf, -np.inf, np.nan]])


# -- gfloat ----------------------------------------------------------------------------------
def _gfloat(t: Tally, rng: np.random.Generator) -> None:
    import gfloat
    from gfloat import Domain, RoundMode
    from gfloat.formats import format_info_ocp_int8, sample_formats

    def to_fx(fi):
        """(fxemu format, new-in-issue-14, reason it is not expressible)."""
        if fi.is_twos_complement:
            return fx.Fixed(fi.k, 2, rounding="rnd_conv", overflow="sat"), False, None
        m = fi.precision - 1
        e = fi.k - m - (1 if fi.is_signed else 0)
        if not fi.has_subnormals and m != 0:
            return None, False, "no subnormals with precision > 1: gfloat reads exponent 0 " \
                                "as a normal binade (fxemu subnormals=False flushes)"
        ext = fi.domain == Domain.Extended
        if fi.is_signed:
            if ext and fi.num_high_nans == (1 << m) - 1 and fi.has_nz and m >= 1:
                sp = "ieee"
            elif not ext and fi.num_high_nans == 1 and fi.has_nz:
                sp = "fn"
            elif not ext and fi.num_high_nans == 0 and not fi.has_nz:
                sp = "fnuz"
            elif not ext and fi.num_high_nans == 0 and fi.has_nz:
                sp = "none"
            elif ext and fi.num_high_nans == 0 and not fi.has_nz:
                sp = "fnuz_inf"
            else:
                return None, False, "special-value layout"
        else:
            if ext and fi.num_high_nans == 1:
                sp = "fn_inf"
            elif not ext and fi.num_high_nans == 1:
                sp = "fn"
            elif not ext and fi.num_high_nans == 0:
                sp = "none"
            else:
                return None, False, "special-value layout"
        zero = fi.has_subnormals or m != 0
        f = fx.Float(e, m, bias=fi.bias, special=sp, signed=fi.is_signed, zero=zero,
                     subnormals=fi.has_subnormals, code_ties=m == 0)
        new = (not fi.is_signed) or not zero or sp in ("fnuz_inf", "fn_inf") or m == 0 or e == 0
        return f, new, None

    rmodes = {RoundMode.TowardZero: ("rtz", "trn_zero"),
              RoundMode.TowardNegative: ("rdn", "trn"),
              RoundMode.TowardPositive: ("rup", "trn_inf"),
              RoundMode.TiesToAway: ("rna", "rnd_inf"),
              RoundMode.TiesToEven: ("rne", "rnd_conv"), RoundMode.StochasticFastest: None,
              RoundMode.Stochastic: "stochastic_rne", RoundMode.StochasticOdd: "stochastic_rno",
              RoundMode.StochasticFast: "stochastic_half"}
    formats = [fi for fi in sample_formats if fi.k <= 32]  # binary64 from float64: identity
    formats += [gfloat.formats.format_info_p3109(k, p, s, d) for k in (3, 4, 6)
                for p in range(1, k + 1) for s in (gfloat.Signedness.Signed,
                                                   gfloat.Signedness.Unsigned)
                for d in (Domain.Extended, Domain.Finite)]
    for fi in formats:
        f, new, reason = to_fx(fi)
        k = fi.k
        codes = (np.arange(1 << k, dtype=np.int64) if k <= 16
                 else rng.integers(0, 1 << min(k, 62), 4096, dtype=np.int64))
        dec = np.array([gfloat.decode_float(fi, int(c)).fval for c in codes]) if k <= 12 \
            else gfloat.decode_ndarray(fi, codes)
        if f is None:
            t.skip(codes.size, f"{fi.name}: {reason}")
        else:
            t.compare(_vbits(fx.from_bits(codes.astype(np.uint64), f)), _vbits(dec), new,
                      "decode")
        x = _grid_inputs(np.asarray(dec, np.float64), rng)
        for rnd, sat in ((r, s) for r in rmodes for s in (False, True)):
            kind = rmodes[rnd]
            if isinstance(f, fx.Fixed):
                xs = x[np.isfinite(x) & (sat | ((x >= fi.min) & (x <= fi.max)))]
            else:
                xs = x if (fi.num_nans or sat) else x[np.isfinite(x) & (np.abs(x) <= fi.max)]
                if not fi.num_nans:
                    xs = xs[~np.isnan(xs)]
            srb = rng.integers(0, 8, xs.size)
            try:
                with np.errstate(all="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    r = gfloat.round_ndarray(fi, xs, rnd, sat, srbits=srb, srnumbits=3)
                    # the scalar encode_float is gfloat's reference; encode_ndarray returns
                    # no code for the negative values of unsigned formats (a gfloat bug)
                    want = np.array([gfloat.encode_float(fi, float(v)) for v in r], np.int64)
            except (ValueError, AssertionError):
                continue  # the peer refuses the case (e.g. overflow without inf/NaN)
            if isinstance(kind, str) and isinstance(f, fx.Fixed):
                t.skip(xs.size, "gfloat residue-rounding stochastic modes into OCP int8 "
                                "(fxemu has them for floats only)")
                continue
            if f is None:
                t.skip(xs.size, f"{fi.name}: {reason}")
                continue
            if isinstance(f, fx.Fixed):
                if kind is None:
                    g = f.replace(rounding="stochastic")
                    got = fx.to_bits(xs, g, random_bits=srb, sr_bits=3)
                    t.skip(0, "")
                    # gfloat's stochastic int8 rounds the magnitude; fxemu's fixed stochastic
                    # mode the two's complement value: the same draw differs for negatives
                    neg = xs < 0
                    t.compare(got[~neg].astype(np.int64), want[~neg], True)
                    t.skip(int(neg.sum()), "gfloat int8 stochastic: sign-magnitude draw "
                                           "(fxemu fixed stochastic is two's complement)")
                    continue
                g = f.replace(rounding=kind[1], overflow="sat")
                got = fx.to_bits(xs, g).astype(np.int64)
                t.compare(got, want, kind[1] == "trn_inf")
                continue
            ovf = "sat_finite" if sat else "inf"
            if kind is None or isinstance(kind, str):
                g = f.replace(rounding=kind or "stochastic", overflow=ovf)
                got = fx.to_bits(xs, g, random_bits=srb, sr_bits=3)
                gnew = True
            else:
                g = f.replace(rounding=kind[0], overflow=ovf)
                got = fx.to_bits(xs, g)
                gnew = new | (sat & np.isinf(xs) & g.has_inf)
            gnew = np.broadcast_to(gnew, xs.shape)
            bad = (want < 0) | (want >= (1 << k))
            if bad.any():  # gfloat's encode returned no code of the format
                t.compare(np.zeros(int(bad.sum()), bool), np.ones(int(bad.sum()), bool), True,
                          f"gfloat encode_ndarray returns an out-of-range code ({fi.name})")
                xs, got, want, gnew = xs[~bad], got[~bad], want[~bad], gnew[~bad]
            gv = _vbits(fx.from_bits(got, g))
            wv = _vbits(np.array([gfloat.decode_float(fi, int(c)).fval for c in want])
                        if xs.size < 3000 else gfloat.decode_ndarray(fi, want))
            unsigned_neg = (not fi.is_signed) & np.signbit(xs) & (xs != 0) & ~np.isnan(xs)
            zl = (not f.zero) & ((xs == 0) | (np.abs(xs) < f.min))
            rest = ~unsigned_neg & ~zl
            t.compare(gv[rest], wv[rest], gnew[rest], f"encode {fi.name}")
            t.compare(gv[unsigned_neg], wv[unsigned_neg], True,
                      "semantic: a negative input into an unsigned format is NaN in fxemu "
                      "and ml_dtypes; gfloat rounds it first (-tiny gives 0)")
            t.compare(gv[zl], wv[zl], True,
                      "e8m0 below 2^-127: gfloat encodes 0 as code 0 (2^-127), fxemu and "
                      "ml_dtypes give NaN; gfloat's round_ndarray keeps values below the "
                      "smallest (no clamp without subnormals) and encodes no code for them")
    del format_info_ocp_int8


# -- ml_dtypes --------------------------------------------------------------------------------
def _ml_dtypes(t: Tally, rng: np.random.Generator) -> None:
    import ml_dtypes

    names = ["bfloat16", "float4_e2m1fn", "float6_e2m3fn", "float6_e3m2fn", "float8_e3m4",
             "float8_e4m3", "float8_e4m3b11fnuz", "float8_e4m3fn", "float8_e4m3fnuz",
             "float8_e5m2", "float8_e5m2fnuz", "float8_e5m3fnu", "float8_e8m0fnu"]
    for name in names:
        dt = np.dtype(getattr(ml_dtypes, name))
        f = fx.parse(name)
        new = name in ("float8_e5m3fnu", "float8_e8m0fnu")
        ut = np.uint16 if dt.itemsize == 2 else np.uint8
        codes = np.arange(1 << f.width if f.width <= 16 else 1 << 16, dtype=np.uint64)
        with np.errstate(all="ignore"):
            dec = codes.astype(ut).view(dt).astype(np.float64)
        t.compare(_vbits(fx.from_bits(codes, f)), _vbits(dec), new, "decode")
        x = _grid_inputs(dec, rng)
        if not f.has_nan:
            x = x[~np.isnan(x) & (np.abs(x) <= f.max * 1.5)]  # ml_dtypes saturates there
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = x.astype(dt).view(ut).astype(np.uint64)
        got = fx.to_bits(x, f) if f.has_nan else fx.to_bits(x, f.replace(overflow="sat"))
        with np.errstate(all="ignore"):
            gv, wv = fx.from_bits(got, f), want.astype(ut).view(dt).astype(np.float64)
        t.compare(_vbits(gv), _vbits(wv), new, "encode")


# -- APyTypes -------------------------------------------------------------------------------
def _apytypes(t: Tally, rng: np.random.Generator) -> None:
    import apytypes as apy

    Q, Ov = apy.QuantizationMode, apy.OverflowMode
    fixed = {Q.TRN: "trn", Q.TRN_ZERO: "trn_zero", Q.TRN_INF: "trn_inf",
             Q.TRN_AWAY: "trn_away", Q.TRN_MAG: "trn_mag", Q.RND: "rnd", Q.RND_ZERO: "rnd_zero",
             Q.RND_INF: "rnd_inf", Q.RND_MIN_INF: "rnd_min_inf", Q.RND_CONV: "rnd_conv",
             Q.RND_CONV_ODD: "rnd_conv_odd", Q.JAM: "jam", Q.JAM_UNBIASED: "rto",
             Q.STOCH_WEIGHTED: None, Q.STOCH_EQUAL: None}
    new_fixed = {"trn_inf", "trn_away", "trn_mag", "jam", "rto"}
    for w, i in [(8, 4), (5, 0), (12, 9), (1, 1), (16, -3), (10, 10), (24, 8)]:
        frac = w - i
        x = np.concatenate([np.arange(-(2**10), 2**10) * 2.0 ** -(frac + 3),
                            rng.integers(-(2**40), 2**40, 1000) * 2.0 ** -(frac + 30)])
        src = apy.APyFixedArray.from_float(x, int_bits=48, frac_bits=frac + 40)
        for mode, name in fixed.items():
            # NUMERIC_STD (VHDL numeric_std.resize: the sign bit, then the low bits) is
            # ap_fixed's WRAP with N = 1 saturation bit
            for ovf, oname, n in ((Ov.WRAP, "wrap", 0), (Ov.SAT, "sat", 0),
                                  (Ov.NUMERIC_STD, "wrap", 1)):
                if name is None:
                    t.skip(x.size, "APyTypes STOCH_WEIGHTED/STOCH_EQUAL draw from its own "
                                   "generator (no way to pass the draws in)")
                    continue
                want = np.array(src.cast(int_bits=i, frac_bits=frac, quantization=mode,
                                         overflow=ovf).to_bits(), np.uint64)
                got = fx.to_bits(x, fx.Fixed(w, i, rounding=name, overflow=oname, sat_bits=n))
                t.compare(got, want, name in new_fixed)
    floats = {Q.TIES_EVEN: "rne", Q.TIES_AWAY: "rna", Q.TO_ZERO: "rtz", Q.TO_POS: "rup",
              Q.TO_NEG: "rdn", Q.JAM_UNBIASED: "rto", Q.TIES_ZERO: "ties_zero",
              Q.TIES_ODD: "ties_odd", Q.TIES_POS: "ties_pos", Q.TIES_NEG: "ties_neg",
              Q.TO_AWAY: "to_away", Q.JAM: "jam", Q.STOCH_WEIGHTED: None, Q.STOCH_EQUAL: None}
    new_float = {"ties_zero", "ties_odd", "ties_pos", "ties_neg", "to_away", "jam"}
    for e, m, bias in [(4, 3, None), (5, 2, None), (3, 4, None), (5, 10, None), (8, 7, None),
                       (2, 1, None), (4, 3, 3), (6, 5, 40)]:
        f0 = fx.Float(e, m) if bias is None else fx.Float(e, m, bias=bias)
        vals = fx.from_bits(np.arange(min(f0.n_codes, 1 << 12), dtype=np.uint64), f0)
        x = _grid_inputs(vals, rng)
        x = x[~np.isnan(x)]
        src = apy.APyFloatArray.from_float(x, exp_bits=11, man_bits=52)
        for mode, name in floats.items():
            if name is None:
                t.skip(x.size, "APyTypes STOCH_WEIGHTED/STOCH_EQUAL draw from its own "
                               "generator (no way to pass the draws in)")
                continue
            kw = {} if bias is None else {"bias": bias}
            want = np.array(src.cast(exp_bits=e, man_bits=m, quantization=mode, **kw).to_bits(),
                            np.uint64)
            got = fx.to_bits(x, f0.replace(rounding=name))
            t.compare(got, want, name in new_float)


# -- fxpmath ---------------------------------------------------------------------------------
def _fxpmath(t: Tally, rng: np.random.Generator) -> None:
    from fxpmath import Fxp

    modes = {"floor": "trn", "trunc": "trn_zero", "fix": "trn_zero", "around": "rnd_conv",
             "ceil": "trn_inf"}
    for w, f in [(8, 2), (16, 8), (12, 0), (6, 6), (24, 20)]:
        x = np.concatenate([np.arange(-(2**9), 2**9) * 2.0 ** -(f + 2),
                            rng.integers(-(2**30), 2**30, 500) * 2.0 ** -(f + 20)])
        for signed in (True, False):
            xs = x if signed else np.abs(x)
            for mode, name in modes.items():
                for ovf, oname in (("saturate", "sat"), ("wrap", "wrap")):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        raw = Fxp(xs, signed=signed, n_word=w, n_frac=f, rounding=mode,
                                  overflow=ovf).val.astype(np.int64)
                    want = (raw & ((1 << w) - 1)).astype(np.uint64)
                    got = fx.to_bits(xs, fx.Fixed(w, w - f, signed=signed, rounding=name,
                                                  overflow=oname))
                    t.compare(got, want, name == "trn_inf")


# -- pychop ----------------------------------------------------------------------------------
def _pychop(t: Tally, rng: np.random.Generator) -> None:
    import pychop
    from pychop import Chop

    # pychop's rmode 9 ("round to odd") sets the LSB of exact values too: that is jamming
    modes = {1: "rne", 2: "rup", 3: "rdn", 4: "rtz", 7: "ties_zero", 8: "rna", 9: "jam"}
    for e, m in [(4, 3), (5, 2), (5, 10), (8, 7), (3, 4)]:
        for subn in (True, False):
            f0 = fx.Float(e, m, subnormals=subn)
            vals = fx.from_bits(np.arange(min(f0.n_codes, 1 << 12), dtype=np.uint64),
                                fx.Float(e, m))
            x = _grid_inputs(vals, rng)
            x = x[np.isfinite(x) & (np.abs(x) <= f0.max)]
            for rmode in range(1, 11):
                if rmode not in modes:
                    t.skip(x.size, "pychop rmode 5/6/10 draw from its own generator")
                    continue
                with np.errstate(all="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    want = np.asarray(Chop(exp_bits=e, sig_bits=m, rmode=rmode,
                                           subnormal=subn)(x.copy()), np.float64)
                got = _vbits(fx.quantize(x, f0.replace(rounding=modes[rmode])))
                want = _vbits(want)
                nz = np.signbit(x) & (x == 0)
                ftz = (not subn) & (np.abs(x) < f0.smallest_normal) & ~nz
                lo = fx.quantize(x, f0.replace(rounding="rtz"))
                hi = fx.quantize(x, f0.replace(rounding="to_away"))
                tie = (x < 0) & (rmode in (7, 8)) & (lo != x) & (2 * x == lo + hi) & ~ftz
                rest = ~nz & ~ftz & ~tie
                new = modes[rmode] in ("ties_zero", "jam")
                t.compare(got[rest], want[rest], new, "pychop Chop")
                t.compare(got[nz], want[nz], new, "semantic: pychop returns +0 for -0")
                t.compare(got[ftz], want[ftz], new,
                          "semantic: pychop subnormal=False flushes inputs below the smallest "
                          "normal before rounding; fxemu rounds, then flushes (its FTZ contract)")
                t.compare(got[tie], want[tie], new,
                          "pychop bug: rmode 7/8 (ties toward zero/away) on negative ties "
                          "round the other way (ties to -inf/+inf)")
    # its P3109 draft emulator
    sat_map = {"none": "inf", "finite": "sat_finite", "propagate": "sat"}
    rnd_map = {"nearest_even": "rne", "nearest_away": "rna", "toward_zero": "rtz",
               "toward_positive": "rup", "toward_negative": "rdn", "to_odd": "rto",
               "stochastic_a": "stochastic", "stochastic_b": "stochastic_half",
               "stochastic_c": "stochastic_rne"}
    for k, p in [(8, 1), (8, 3), (8, 4), (8, 7), (6, 2), (4, 1), (8, 8)]:
        for signed in (True, False):
            for ext in (True, False):
                if signed and p == k:
                    continue
                pf = pychop.P3109Format(k, p, signed, "extended" if ext else "finite")
                f = fx.p3109(k, p, signed=signed, extended=ext)
                codes = np.arange(1 << k, dtype=np.uint64)
                dec = np.asarray(pychop.p3109_decode(codes.astype(np.int64), pf), np.float64)
                t.compare(_vbits(fx.from_bits(codes, f)), _vbits(dec), True, "P3109 decode")
                x = _grid_inputs(dec, rng, 100)
                for rnd, sat in ((r, s) for r in rnd_map for s in sat_map):
                    name = rnd_map[rnd]
                    if name is None:
                        t.skip(x.size, "pychop P3109 stochastic_b/c: the draw plus half an "
                                       "LSB / the residue rounded first")
                        continue
                    srb = rng.integers(0, 8, x.size) if name.startswith("stochastic") else None
                    with np.errstate(all="ignore"), warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        want = np.asarray(pychop.p3109_encode(
                            x, pf, rounding=rnd, saturate=sat, srbits=srb,
                            srnumbits=3 if srb is not None else 0), np.int64).astype(np.uint64)
                    g = f.replace(rounding=name, overflow=sat_map[sat])
                    got = (fx.to_bits(x, g, random_bits=srb, sr_bits=3) if srb is not None
                           else fx.to_bits(x, g))
                    gv, wv = _vbits(fx.from_bits(got, g)), _vbits(fx.from_bits(want, g))
                    uneg = (not signed) & (x < 0)
                    ovf = (rnd == "to_odd") & (sat == "none") & (np.abs(x) > f.max)
                    rest = ~uneg & ~ovf
                    t.compare(gv[rest], wv[rest], True, f"P3109 encode {rnd}/{sat}")
                    t.compare(gv[uneg], wv[uneg], True,
                              "semantic: a negative input into an unsigned format is NaN in "
                              "fxemu and ml_dtypes; pychop rounds first (-tiny gives 0)")
                    t.compare(gv[ovf], wv[ovf], True,
                              "semantic: round-to-odd overflow gives max in fxemu (it never "
                              "rounds up in magnitude past max), inf/NaN in pychop")


# -- QPyTorch -------------------------------------------------------------------------------
#: QPyTorch's disagreement classes (each case checked against an exact rational rounding)
_Q_ZERO = {"fixed": "semantic difference: fixed_point_quantize gives -0 (float32 "
                    "arithmetic) for negatives that round to 0; a fixed format has no -0",
           "float": "semantic difference: float_quantize gives +0 for -0 and for negatives "
                    "that round to 0 (x + (-2^emin) - (-2^emin)); fxemu keeps -0"}
_Q_F32 = {"fixed": "semantic difference: stochastic fixed_point_quantize rounds a·2^F + r in "
                   "float32 before nearbyint (and nearbyint's ties go to even), so it is not "
                   "floor(a·2^F + r); fxemu's equals the exact floor",
          "float": "semantic difference: float_quantize rounds x + 2^emin in float32 first "
                   "(subnormal range), a double rounding; fxemu's equals the exact rounding",
          "block": "semantic difference: block_quantize rounds x + 6·2^e in float32 first, a "
                   "double rounding; fxemu's equals the exact rounding"}


DEBUG = False


def _f32_inputs(vals: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """:func:`_grid_inputs` of ``vals`` kept where float32 holds them exactly, without NaN
    (QPyTorch quantizes float32 tensors)."""
    x = _grid_inputs(vals, rng)
    x = x[~np.isnan(x) & (np.abs(x) < 2.0**127)]
    return x[x.astype(np.float32).astype(np.float64) == x]


def _exact_round(x: float, step: Fraction, mode: str, r: Fraction = Fraction(0)) -> Fraction:
    """``x`` rounded to a multiple of ``step``, exactly: ``even`` (ties to even), ``away``
    (ties away from 0), ``up`` (ties toward +inf) or ``floor+r`` (stochastic:
    floor(x/step + r))."""
    n = Fraction(x) / step
    if mode == "even":
        return round(n) * step  # Fraction.__round__ rounds ties to even
    if mode == "away":
        k = math.floor(abs(n) + Fraction(1, 2))
        return (k if n >= 0 else -k) * step
    if mode == "up":
        return math.floor(n + Fraction(1, 2)) * step
    return math.floor(n + r) * step


def _q_classify(t: Tally, got: np.ndarray, want: np.ndarray, exact: object, new: bool,
                kind: str) -> None:
    """Compare value bit patterns; each disagreement is a signed-zero difference, or QPyTorch's
    double rounding when fxemu's value is the exact rounding ``exact(i)``, else a suspect."""
    gb, wb = _vbits(got), _vbits(want)
    bad = np.flatnonzero(gb != wb)
    zero = np.array([got[i] == 0 and want[i] == 0 for i in bad], bool)
    f32 = np.array([not z and Fraction(float(got[i])) == exact(i) for i, z in
                    zip(bad, zero, strict=True)], bool)
    ok = np.ones(got.size, bool)
    ok[bad] = False
    t.compare(gb[ok], wb[ok], new)
    sus = ~zero & ~f32
    if sus.any() and DEBUG:
        print([(float(got[i]), float(want[i]), float(exact(i))) for i in bad[sus][:5]])
    for mask, why in ((zero, _Q_ZERO.get(kind)), (f32, _Q_F32[kind]), (sus, "fxemu bug?")):
        if mask.any():
            t.compare(gb[bad[mask]], ~gb[bad[mask]], new, why)


def _qtorch(t: Tally, rng: np.random.Generator) -> None:
    import torch
    from qtorch.quant import block_quantize, fixed_point_quantize, float_quantize

    def q(fn, x: np.ndarray, *args, **kw) -> np.ndarray:
        return fn(torch.tensor(x, dtype=torch.float32), *args, **kw).numpy().astype(np.float64)

    # fixed point: nearest (RNE on a·2^F, saturating to the two's complement or symmetric
    # range); stochastic with torch's generator seeded, so its draws r are known:
    # nearbyint(a·2^F + r - 0.5) is floor(a·2^F + r), fxemu's stochastic with 24 random bits
    for wl, fl in [(2, 0), (4, 2), (8, 4), (8, 8), (12, 3), (16, 8), (16, 14), (10, -2)]:
        vals = np.arange(-(2 ** (wl - 1)), 2 ** (wl - 1)) * 2.0**-fl
        x = _f32_inputs(vals, rng)
        step = Fraction(2) ** -fl
        for sym, clamp in itertools.product((False, True), (True, False)):
            f = fx.Fixed(wl, wl - fl, rounding="rnd_conv", overflow="sat_sym" if sym else "sat")
            hi = f.max
            lo = -hi if sym else f.min
            xs = x
            if not clamp:  # no bound on the integer part: the same as clamping within range
                xs = x[(x >= lo) & (x <= hi)]
                t.skip(2 * (x.size - xs.size), "fixed_point_quantize(clamp=False) beyond the "
                       "range: an integer part of unbounded width, which no format has")
            want = q(fixed_point_quantize, xs, wl, fl, clamp=clamp, symmetric=sym,
                     rounding="nearest")
            _q_classify(t, fx.quantize(xs, f), want, lambda i, x=xs, s=step, lo=lo, hi=hi: min(
                max(_exact_round(x[i], s, "even"), Fraction(lo)), Fraction(hi)), False, "fixed")
            torch.manual_seed(wl * 100 + fl)
            r = torch.rand_like(torch.tensor(xs, dtype=torch.float32)).numpy()
            torch.manual_seed(wl * 100 + fl)
            want = q(fixed_point_quantize, xs, wl, fl, clamp=clamp, symmetric=sym,
                     rounding="stochastic")
            rbits = (r.astype(np.float64) * 2.0**24).astype(np.uint64)
            got = fx.quantize(xs, f.replace(rounding="stochastic"), random_bits=rbits,
                              sr_bits=24)
            _q_classify(t, got, want, lambda i, x=xs, r=r, s=step, lo=lo, hi=hi: min(max(
                _exact_round(x[i], s, "floor+r", Fraction(float(r[i]))), Fraction(lo)),
                Fraction(hi)), True, "fixed")
    # floats: nearest is ties away from zero on the magnitude, no inf/NaN codes (the top
    # exponent holds numbers), saturation to ±max; float32 NaN inputs become ±max
    for e, m in [(2, 1), (3, 2), (4, 3), (5, 2), (5, 10), (6, 5), (8, 7), (8, 3)]:
        f = fx.Float(e, m, special="none", rounding="rna", overflow="sat")
        codes = np.arange(f.n_codes, dtype=np.uint64)
        x = _f32_inputs(fx.from_bits(codes, f), rng)
        want = q(float_quantize, x, e, m, rounding="nearest")
        emin = f.emin

        def exact(i, x=x, m=m, emin=emin, mx=f.max):
            a = abs(x[i])
            if a == np.inf:
                return Fraction(mx) * (1 if x[i] > 0 else -1)
            ex = max(math.frexp(a)[1] - 1, emin) if a else emin
            v = _exact_round(x[i], Fraction(2) ** (ex - m), "away")
            return max(min(v, Fraction(mx)), -Fraction(mx))

        _q_classify(t, fx.quantize(x, f), want, exact, False, "float")
        t.skip(1, "float_quantize of NaN: QPyTorch gives ±max; fxemu refuses NaN into a "
                  "format without NaN (one clear error)")
        t.skip(x.size, "float_quantize(rounding='stochastic'): its random bits come from "
                           "a std::mt19937 seeded by std::random_device inside the C++ "
                           "extension (they cannot be passed in or seeded)")
    # block floating point: one block of the whole 1-D tensor (dim=-1), shared exponent
    # floor(log2 amax), wl-bit sign-magnitude mantissas (steps 2^(e+2-wl)), ties toward +inf
    for wl in (3, 4, 6, 8, 12, 16):
        for n in (16, 64):
            for _ in range(100):
                x = (rng.standard_normal(n) * 2.0 ** rng.integers(-20, 20)).astype(np.float32)
                x[rng.random(n) < 0.1] = 0.0
                if rng.random() < 0.2:  # ties of the element grid
                    x = (np.round(x / np.abs(x).max() * 2 ** (wl - 1)) / 2 ** (wl - 1)
                         * 2.0 ** rng.integers(-3, 3)).astype(np.float32)
                x = x.astype(np.float64)
                b = fx.Block(fx.Fixed(wl, 2, rounding="rnd", overflow="sat_sym"), n,
                             sign_magnitude=True)
                want = q(block_quantize, x, wl, -1, rounding="nearest")
                amax = np.abs(x).max()
                e = math.frexp(amax)[1] - 1 if amax else 0
                step = Fraction(2) ** (e + 2 - wl)
                lim = (2 ** (wl - 1) - 1) * step
                _q_classify(t, fx.quantize(x, b), want, lambda i, x=x, step=step, lim=lim: max(
                    min(_exact_round(x[i], step, "up"), lim), -lim), True, "block")
                t.skip(n, "block_quantize(rounding='stochastic'): std::mt19937 inside the "
                          "extension, as float_quantize")


PEERS = {"gfloat": _gfloat, "ml_dtypes": _ml_dtypes, "APyTypes": _apytypes,
         "fxpmath": _fxpmath, "pychop": _pychop, "QPyTorch": _qtorch}


def run(details: bool = False, only: list[str] | None = None) -> dict[str, Tally]:
    rng = np.random.default_rng(20261207)
    out: dict[str, Tally] = {}
    for name, fn in PEERS.items():
        if only and name not in only:
            continue
        t = Tally()
        try:
            fn(t, rng)
        except ImportError as exc:
            print(f"{name}: not installed ({exc})")
            continue
        out[name] = t
    head = (f"{'peer':<10} {'cases':>9} {'before':>9} {'expressible':>12} {'agree':>9} "
            f"{'disagree':>9} {'not expr.':>9}")
    print(head)
    print("-" * len(head))
    for name, t in out.items():
        print(f"{name:<10} {t.cases:>9} {t.before:>9} {t.expressible:>12} {t.agree:>9} "
              f"{t.disagree:>9} {sum(t.missing.values()):>9}")
    for name, t in out.items():
        if details or t.disagree:
            for why, n in t.why.most_common():
                print(f"  {name} disagree: {n:>7}  {why}")
        for why, n in t.missing.most_common():
            if n and (details or True):
                print(f"  {name} not expressible: {n:>7}  {why}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--details", action="store_true", help="every reason and class")
    ap.add_argument("peers", nargs="*", help=f"a subset of {', '.join(PEERS)}")
    args = ap.parse_args()
    run(args.details, args.peers)


if __name__ == "__main__":
    main()
