"""IEEE P3109 and OCP formats against gfloat (Graphcore) and pychop's P3109 emulator.

Every code of every gfloat P3109 binary8 format (signed/unsigned × extended/finite, p = 1..8,
the signed p = 8 ones without exponent bits; with FXEMU_PEERS=1 every format of k = 3..8 bits)
and of the OCP E8M0 scale is decoded; code values, midpoints, quarter points and out-of-range
values are rounded and encoded under each deterministic gfloat rounding mode, with and without
saturation (gfloat ``sat=True`` is P3109 SatFinite, fxemu ``overflow="sat_finite"``), and
under gfloat's ``StochasticFastest`` with the same caller-supplied random bits. Known
semantic differences (docs/peer_vectors.md) are kept out of the compared inputs: negative
inputs into unsigned formats, and zero into the zero-less E8M0.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import fxemu as fx

gfloat = pytest.importorskip("gfloat")
from gfloat import Domain, RoundMode, Signedness  # noqa: E402
from gfloat.formats import format_info_ocp_e8m0, p3109_binary8_formats  # noqa: E402

MODES = {RoundMode.TowardZero: "rtz", RoundMode.TowardNegative: "rdn",
         RoundMode.TowardPositive: "rup", RoundMode.TiesToAway: "rna",
         RoundMode.TiesToEven: "rne"}


def _fx(fi) -> fx.Float:
    if fi is format_info_ocp_e8m0:
        return fx.parse("float8_e8m0fnu").replace(rounding="rne", code_ties=True)
    name = f"p3109_k{fi.k}p{fi.precision}{'s' if fi.is_signed else 'u'}" \
           f"{'e' if fi.domain == Domain.Extended else 'f'}"
    return fx.parse(name)


def _bits(v: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(v), np.nan, np.asarray(v, np.float64)).view(np.uint64)


#: extensive variants: ``tox -e peers`` (FXEMU_PEERS=1 pytest -m peers) runs them
PEERS = [pytest.mark.peers,
         pytest.mark.skipif(not os.environ.get("FXEMU_PEERS"), reason="set FXEMU_PEERS=1")]
_P3109 = gfloat.formats.format_info_p3109
#: signed p = k: no exponent bits (a sign-magnitude grid), in the default run
NO_EXP = [_P3109(8, 8, Signedness.Signed, d) for d in Domain]
_DEFAULT = {fi.name for fi in [*p3109_binary8_formats, *NO_EXP]}
FORMATS = [*p3109_binary8_formats, format_info_ocp_e8m0, *NO_EXP,
           # every P3109 format of k = 3..8 bits (p = 1..k, signed/unsigned, extended/finite)
           *(pytest.param(_P3109(k, p, s, d), marks=PEERS)
             for k in range(3, 9) for p in range(1, k + 1)
             for s in (Signedness.Signed, Signedness.Unsigned) for d in Domain
             if _P3109(k, p, s, d).name not in _DEFAULT)]


def _name(fi) -> str:
    return fi.name


@pytest.mark.parametrize("fi", FORMATS, ids=_name)
def test_every_code_decodes_as_gfloat(fi) -> None:
    f = _fx(fi)
    codes = np.arange(1 << fi.k)
    want = np.array([gfloat.decode_float(fi, int(c)).fval for c in codes])
    np.testing.assert_array_equal(_bits(fx.from_bits(codes.astype(np.uint64), f)), _bits(want))
    assert f.max == fi.max and f.width == fi.k


def _inputs(fi) -> np.ndarray:
    v = np.array([gfloat.decode_float(fi, c).fval for c in range(1 << fi.k)])
    v = np.unique(np.abs(v[np.isfinite(v)]))
    d = np.diff(v)
    x = np.concatenate([v, v[:-1] + d / 2, v[:-1] + d / 4, v[1:] - d / 4,
                        [v[-1] * 1.25, v[-1] * 1.5, v[-1] * 3, 1e300, np.inf, np.nan]])
    if fi.is_signed:
        x = np.concatenate([x, -x, [-0.0]])
    if fi is format_info_ocp_e8m0:
        x = x[x >= v[0]]  # gfloat: 0 encodes as 2^-127 and values below stay unclamped
    return x


@pytest.mark.parametrize("fi", FORMATS, ids=_name)
def test_round_and_encode_match_gfloat(fi) -> None:
    f = _fx(fi)
    x = _inputs(fi)
    for rnd, sat in ((r, s) for r in MODES for s in (False, True)):
        r = gfloat.round_ndarray(fi, x, rnd, sat)
        want = np.array([gfloat.encode_float(fi, float(v)) for v in r], np.uint64)
        g = f.replace(rounding=MODES[rnd], overflow="sat_finite" if sat else "inf")
        got = fx.to_bits(x, g)
        np.testing.assert_array_equal(_bits(fx.from_bits(got, g)),
                                      _bits(fx.from_bits(want, g)), err_msg=f"{rnd} {sat}")


STOCH = {RoundMode.StochasticFastest: "stochastic", RoundMode.Stochastic: "stochastic_rne",
         RoundMode.StochasticOdd: "stochastic_rno", RoundMode.StochasticFast: "stochastic_half"}


@pytest.mark.parametrize("fi", FORMATS[:6], ids=_name)
@pytest.mark.parametrize("mode", list(STOCH), ids=lambda m: m.name)
def test_stochastic_modes_with_the_same_random_bits(fi, mode) -> None:
    f = _fx(fi)
    x = _inputs(fi)
    x = x[np.isfinite(x)]
    rng = np.random.default_rng(fi.k * 10 + fi.precision)
    for n in (1, 3, 7):
        srb = rng.integers(0, 2**n, x.size)
        r = gfloat.round_ndarray(fi, x, mode, False, srbits=srb, srnumbits=n)
        want = np.array([gfloat.encode_float(fi, float(v)) for v in r], np.uint64)
        g = f.replace(rounding=STOCH[mode])
        got = fx.to_bits(x, g, random_bits=srb, sr_bits=n)
        np.testing.assert_array_equal(_bits(fx.from_bits(got, g)),
                                      _bits(fx.from_bits(want, g)), err_msg=str(n))


def test_p3109_saturation_policies_match_pychop() -> None:
    pychop = pytest.importorskip("pychop")
    sat = {"none": "inf", "finite": "sat_finite", "propagate": "sat"}
    rnd = {"nearest_even": "rne", "nearest_away": "rna", "toward_zero": "rtz",
           "toward_positive": "rup", "toward_negative": "rdn"}
    for k, p, signed, ext in [(8, 4, True, True), (8, 3, False, True), (8, 1, True, False),
                              (8, 1, False, True), (6, 2, True, True)]:
        pf = pychop.P3109Format(k, p, signed, "extended" if ext else "finite")
        f = fx.p3109(k, p, signed=signed, extended=ext)
        codes = np.arange(1 << k, dtype=np.uint64)
        dec = np.asarray(pychop.p3109_decode(codes.astype(np.int64), pf), np.float64)
        np.testing.assert_array_equal(_bits(fx.from_bits(codes, f)), _bits(dec))
        x = dec[np.isfinite(dec)]
        x = np.concatenate([x, (x[1:] + x[:-1]) / 2, [1e9, -1e9, np.inf, -np.inf]])
        if not signed:
            x = x[x >= 0]
        for r, s in ((r, s) for r in rnd for s in sat):
            want = np.asarray(pychop.p3109_encode(x, pf, rounding=r, saturate=s),
                              np.int64).astype(np.uint64)
            g = f.replace(rounding=rnd[r], overflow=sat[s])
            np.testing.assert_array_equal(_bits(fx.from_bits(fx.to_bits(x, g), g)),
                                          _bits(fx.from_bits(want, g)), err_msg=f"{r} {s}")
