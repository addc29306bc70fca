"""Every fixed and float rounding mode against APyTypes (bit patterns, random values and ties).

APyTypes (Linköping University) defines the modes fxemu adopted beyond ap_fixed/ac_fixed:
``TRN_INF``, ``TRN_AWAY``, ``TRN_MAG``, ``JAM``, ``JAM_UNBIASED`` (fxemu ``rto``) for fixed
point and ``TIES_ZERO/ODD/POS/NEG``, ``TO_AWAY``, ``JAM`` for floats. Inputs are exact in the
wide APyTypes source format, so the one rounding compared is the cast.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import fxemu as fx

apy = pytest.importorskip("apytypes")
#: extensive variants: ``tox -e peers`` (FXEMU_PEERS=1 pytest -m peers) runs them
PEERS = [pytest.mark.peers,
         pytest.mark.skipif(not os.environ.get("FXEMU_PEERS"), reason="set FXEMU_PEERS=1")]
Q = apy.QuantizationMode

FIXED_MODES = {
    "trn": Q.TRN, "rnd": Q.RND, "rnd_zero": Q.RND_ZERO, "rnd_min_inf": Q.RND_MIN_INF,
    "rnd_inf": Q.RND_INF, "rnd_conv": Q.RND_CONV, "trn_zero": Q.TRN_ZERO,
    "rnd_conv_odd": Q.RND_CONV_ODD, "trn_inf": Q.TRN_INF, "trn_away": Q.TRN_AWAY,
    "trn_mag": Q.TRN_MAG, "jam": Q.JAM, "rto": Q.JAM_UNBIASED,
}
FLOAT_MODES = {
    "rne": Q.TIES_EVEN, "rna": Q.TIES_AWAY, "rtz": Q.TO_ZERO, "rup": Q.TO_POS,
    "rdn": Q.TO_NEG, "rto": Q.JAM_UNBIASED, "ties_zero": Q.TIES_ZERO, "ties_odd": Q.TIES_ODD,
    "ties_pos": Q.TIES_POS, "ties_neg": Q.TIES_NEG, "to_away": Q.TO_AWAY, "jam": Q.JAM,
}


def _fixed_inputs(frac: int, seed: int) -> np.ndarray:
    """Exact multiples of 2^-(frac+3): every tie, quarter and exact point around the kept LSB,
    plus random values on a fine grid, both signs, and zero."""
    rng = np.random.default_rng(seed)
    grid = np.arange(-(2**11), 2**11) * 2.0 ** -(frac + 3)
    fine = rng.integers(-(2**40), 2**40, 4000) * 2.0 ** -(frac + 30)
    return np.concatenate([grid, fine, [0.0]])


@pytest.mark.parametrize(("w", "i"), [(8, 4), (5, 0), (12, 9), (1, 1), (16, -3)])
@pytest.mark.parametrize("overflow", ["wrap", "sat", "numeric_std"])
def test_fixed_modes_match_apytypes(w: int, i: int, overflow: str) -> None:
    """APyTypes' NUMERIC_STD overflow (VHDL ``resize``: the sign, then the low bits) is
    ap_fixed's WRAP with one saturation bit."""
    frac = w - i
    x = _fixed_inputs(frac, w * 7 + i)
    src = apy.APyFixedArray.from_float(x, int_bits=48, frac_bits=frac + 40)
    ovf = getattr(apy.OverflowMode, overflow.upper())
    kw = {"overflow": "wrap", "sat_bits": 1} if overflow == "numeric_std" else {
        "overflow": overflow}
    for name, mode in FIXED_MODES.items():
        ref = np.array(src.cast(int_bits=i, frac_bits=frac, quantization=mode,
                                overflow=ovf).to_bits(), np.uint64)
        got = fx.to_bits(x, fx.Fixed(w, i, rounding=name, **kw))
        bad = np.nonzero(got != ref)[0]
        assert bad.size == 0, (name, [(x[j], int(got[j]), int(ref[j])) for j in bad[:5]])


def _float_inputs(e: int, m: int, seed: int) -> np.ndarray:
    """Every value halfway and a quarter between neighbours of a small float (normal and
    subnormal, both signs), beyond max, and random doubles across the whole range."""
    rng = np.random.default_rng(seed)
    f = fx.Float(e, m)
    codes = np.arange(2 ** (e + m), dtype=np.uint64)
    v = fx.from_bits(codes, f)
    v = v[np.isfinite(v)]
    nxt = np.nextafter(v, np.inf)
    step = np.concatenate([np.diff(v), [v[-1] * 2.0**-m]])
    pts = np.concatenate([v, v + step / 2, v + step / 4, v + 3 * step / 4, nxt])
    rnd = rng.standard_normal(4000) * 2.0 ** rng.integers(f.emin - m - 3, f.emax + 3, 4000)
    pts = np.concatenate([pts, rnd, [f.max * 4, 0.0]])
    return np.concatenate([pts, -pts])


@pytest.mark.parametrize(("e", "m"), [(4, 3), (5, 2), (3, 4), pytest.param(5, 10, marks=PEERS),
                                    (8, 7), (2, 1)])
def test_float_modes_match_apytypes(e: int, m: int) -> None:
    x = _float_inputs(e, m, e * 31 + m)
    src = apy.APyFloatArray.from_float(x, exp_bits=11, man_bits=52)
    for name, mode in FLOAT_MODES.items():
        ref = np.array(src.cast(exp_bits=e, man_bits=m, quantization=mode).to_bits(),
                       np.uint64)
        got = fx.to_bits(x, fx.Float(e, m, rounding=name))
        bad = np.nonzero(got != ref)[0]
        assert bad.size == 0, (name, [(x[j], int(got[j]), int(ref[j])) for j in bad[:5]])


def test_float_modes_match_apytypes_with_a_nonstandard_bias() -> None:
    x = _float_inputs(4, 3, 5)
    src = apy.APyFloatArray.from_float(x, exp_bits=11, man_bits=52)
    for name, mode in FLOAT_MODES.items():
        ref = np.array(src.cast(exp_bits=4, man_bits=3, bias=3, quantization=mode).to_bits(),
                       np.uint64)
        got = fx.to_bits(x, fx.Float(4, 3, bias=3, rounding=name))
        assert np.array_equal(got, ref), name


def test_trn_mag_is_not_trn_zero() -> None:
    """APyTypes' magnitude truncation adds one LSB to every negative value, exact ones too."""
    x = np.array([-1.0, -1.25, -1.125, 1.125, -0.125])
    mag = fx.quantize(x, fx.Fixed(8, 6, rounding="trn_mag")).tolist()
    zero = fx.quantize(x, fx.Fixed(8, 6, rounding="trn_zero")).tolist()
    assert mag == [-0.75, -1.0, -1.0, 1.0, 0.0]
    assert zero == [-1.0, -1.25, -1.0, 1.0, 0.0]
