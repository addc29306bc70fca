"""Block Macs (fx.Mac(acc, a=Block, b=Block)): bit-identical to a straightforward Fraction
reference — operands converted by fx.to_bits (tested against the peers in
test_block_formats), each block pair's term the exact sum of element products times both
scales, the terms accumulated into acc in the stated order — and independent of threads."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from reference import fixed_oracle as fxo
from reference import float_oracle as flo
from reference.mac_order import reduce_in_order

import fxemu as fx


def _round(v: Fraction, fmt) -> Fraction:
    if isinstance(fmt, fx.Fixed):
        return fxo.code_value(fxo.fixed_code(v, fmt), fmt)
    return Fraction(flo.code_value(flo.float_code(v, fmt), fmt))


def _operand_terms(x: np.ndarray, block: fx.Block, axis: int) -> tuple[list, list]:
    """(element values, scale values) as Fractions, blocked along ``axis``, one list per
    vector (rows of A when axis=1, columns of B when axis=0)."""
    bc = fx.to_bits(x, block.replace(axis=axis))
    codes = bc.elements
    if block.sign_magnitude:  # sign | magnitude → two's complement
        w = block.element.width
        neg = (codes >> np.uint64(w - 1)) & np.uint64(1)
        mag = codes & np.uint64((1 << (w - 1)) - 1)
        codes = np.where(neg == 1, ((1 << w) - mag.astype(np.int64)) % (1 << w), mag)
    el = fx.from_bits(codes.astype(np.uint64), block.element)
    if block.pow2_scale:
        sc = [[Fraction(2) ** (int(c) - 127) for c in row] for row in np.moveaxis(bc.scales,
                                                                                   axis, -1)]
    else:
        sv = fx.from_bits(bc.scales, block.scale)
        sc = [[Fraction(float(c)) for c in row] for row in np.moveaxis(sv, axis, -1)]
    els = [[Fraction(float(v)) for v in row] for row in np.moveaxis(el, axis, -1)]
    return els, sc


def oracle(a: np.ndarray, b: np.ndarray, mac: fx.Mac) -> np.ndarray:
    ea, sa = _operand_terms(a, mac.a, 1)
    eb, sb = _operand_terms(b, mac.b, 0)
    k = mac.a.block_size
    kk = a.shape[1]
    out = np.empty((a.shape[0], b.shape[1]))
    for i in range(a.shape[0]):
        for j in range(b.shape[1]):
            terms = []
            for t in range(-(-kk // k)):
                s = sum((ea[i][q] * eb[j][q] for q in range(t * k, min(t * k + k, kk))),
                        Fraction(0))
                terms.append(s * sa[i][t] * sb[j][t])
            if mac.order == "exact":
                acc = _round(sum(terms, Fraction(0)), mac.acc)
            else:
                acc = reduce_in_order(terms, mac.order, Fraction(0),
                                      lambda u, v: _round(u + v, mac.acc))
            if mac.out is not None:
                acc = _round(acc, mac.out)
            out[i, j] = float(acc)
    return out


CASES = [
    ("float32", "mxfp8_e4m3", "mxfp8_e4m3", "sequential", None),
    ("float32", "mxfp8_e4m3", "mxfp8_e5m2", "pairwise", None),
    ("float32", "mxfp8_e5m2", "mxfp8_e5m2", "sequential", None),  # wide blocks: exact engine
    ("float16", "mxfp8_e5m2", "mxfp8_e5m2", "chunk:3", None),
    ("bfloat16", "mxfp6_e3m2", "mxfp6_e2m3", "exact", None),
    ("float32", "mxfp4_e2m1", "mxfp4_e2m1", "sequential", "bfloat16"),
    ("ap_fixed<32,12,AP_RND_CONV,AP_SAT>", "mxint8", "mxint8", "sequential", None),
    ("float32", "nvfp4", "nvfp4", "sequential", None),
    ("float8_e4m3fn", "bfp<6,8,sm>", "bfp<6,8>", "pairwise", None),
]


@pytest.mark.parametrize("acc,fa,fb,order,out", CASES)
def test_block_mac_matches_fraction_oracle(acc, fa, fb, order, out) -> None:
    rng = np.random.default_rng(len(CASES[0]) + sum(map(ord, acc + fa + order)))
    span = 12 if acc == "float32" else 3  # narrow accumulators stay finite
    a = rng.standard_normal((3, 150)) * 2.0 ** rng.integers(-span, span, (3, 150))
    b = rng.standard_normal((150, 2)) * 2.0 ** rng.integers(-span, span, (150, 2))
    a[0, :40] = 0.0  # an all-zero block (scale 2^-127)
    b[64:96, 1] *= 2.0**-130  # scale clipping at 2^-127: subnormal elements
    mac = fx.Mac(acc=acc, a=fa, b=fb, order=order, out=out)
    got = fx.matmul(a, b, mac)
    want = oracle(a, b, mac)
    assert np.array_equal(got.view(np.uint64), want.view(np.uint64)), (got, want)
    assert fx.dot(a[1], b[:, 0], mac).view(np.uint64) == got[1, 0].view(np.uint64)


def test_block_mac_thread_invariant_and_conv() -> None:
    import numba

    rng = np.random.default_rng(9)
    a = rng.standard_normal((64, 300))
    b = rng.standard_normal((300, 70))
    mac = fx.Mac(acc="float16", a="mxfp8_e4m3", b="mxfp8_e5m2")
    n = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = fx.matmul(a, b, mac)
    finally:
        numba.set_num_threads(n)
    assert np.array_equal(one, fx.matmul(a, b, mac))
    # conv2d reduces each patch (k = (c·Kh + kh)·Kw + kw) through the block Mac
    x = rng.standard_normal((2, 3, 6, 6))
    w = rng.standard_normal((4, 3, 3, 3))
    got = fx.conv2d(x, w, mac)
    cols = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(2, 3))
    cols = cols.transpose(0, 2, 3, 1, 4, 5).reshape(2 * 16, 27)
    want = fx.matmul(cols, w.reshape(4, 27).T, mac).reshape(2, 4, 4, 4).transpose(0, 3, 1, 2)
    assert np.array_equal(got, want)


def test_block_mac_nan_and_errors() -> None:
    a = np.ones((1, 64))
    a[0, 3] = np.nan
    b = np.ones((64, 1))
    assert np.isnan(fx.matmul(a, b, fx.Mac(acc="float32", a="mxfp8_e4m3", b="mxfp8_e4m3")))
    with pytest.raises(ValueError, match="has no NaN"):
        fx.matmul(a, b, fx.Mac(acc="ap_fixed<16,8>", a="mxint8", b="mxint8"))
    with pytest.raises(ValueError, match="both block operand"):
        fx.Mac(acc="float32", a="mxfp8_e4m3")
    with pytest.raises(ValueError, match="block sizes"):
        fx.Mac(acc="float32", a="mxfp8_e4m3", b="nvfp4")
    with pytest.raises(ValueError, match="mul must be None"):
        fx.Mac(acc="float32", mul="float16", a="mxfp8_e4m3", b="mxfp8_e4m3")
    with pytest.raises(ValueError, match="per-tensor scale"):
        fx.Mac(acc="float32", a="nvfp4_ts", b="nvfp4_ts")
    wide = fx.Block(fx.parse("float32"), 32)
    with pytest.raises(ValueError, match="too wide"):
        fx.matmul(np.ones((1, 4)), np.ones((4, 1)), fx.Mac(acc="float32", a=wide, b=wide))


def test_block_mac_empty_and_short_reductions() -> None:
    """K = 0 gives +0; K below one block is one partial block (its own scale)."""
    mac = fx.Mac(acc="float32", a="mxfp8_e4m3", b="mxfp8_e4m3")
    z = fx.matmul(np.ones((2, 0)), np.ones((0, 3)), mac)
    assert z.shape == (2, 3) and not np.signbit(z).any() and (z == 0).all()
    a = np.array([[0.5, -3.0, 0.1, 7.0, 1e-3]])
    b = np.array([[1.0], [2.0], [-0.3], [0.25], [100.0]])
    got = fx.matmul(a, b, mac)
    assert np.array_equal(got.view(np.uint64), oracle(a, b, mac).view(np.uint64))


def test_block_terms_take_the_mac_reduction() -> None:
    """The block-pair terms are accumulated by the plain Mac's one ordered reduction: two
    cancelling block terms under a round-toward-−inf accumulator give −0 in every order, as
    the plain Mac does for the same two terms (IEEE 754 §6.3)."""
    acc = fx.parse("float32").replace(rounding="rdn")
    a = np.zeros((1, 64))
    a[0, [0, 32]] = 1.0
    b = np.zeros((64, 1))
    b[[0, 32], 0] = [1.0, -1.0]
    for order in ("sequential", "pairwise", "chunk:1", "exact"):
        got = fx.matmul(a, b, fx.Mac(acc=acc, a="mxfp8_e4m3", b="mxfp8_e4m3", order=order))
        want = fx.matmul(np.array([[1.0, 1.0]]), np.array([[1.0], [-1.0]]),
                         fx.Mac(acc=acc, order=order))
        assert got[0, 0] == 0.0 and np.signbit(got[0, 0]) and np.signbit(want[0, 0]), order


def test_block_mac_overflowed_elements_are_ieee_specials() -> None:
    # a non-saturating element overflow is NaN (no inf in the format) or ±inf; the term is the
    # IEEE value of its products, never a number built from the special's bits
    fn = fx.Block(fx.Float(4, 3, special="fn"), 8)
    e5 = fx.Block(fx.Float(5, 2), 8)
    y = np.array([[15.9, 1, 1, 1, 1, 1, 1, 1]])
    big = np.array([[1e6, 1, 1, 1, 1, 1, 1, 1, 2e6, 1, 1, 1, 1, 1, 1, 1]])
    cases = [(fn, y, y.T), (e5, big, big.T), (e5, big, -big.T),
             (e5, big, np.concatenate([np.ones(8), -np.ones(8)])[:, None])]
    for blk, a, b in cases:
        qa = fx.quantize(a, blk)
        qb = fx.quantize(b.T, blk).T
        assert not np.isfinite(qa).all()
        with np.errstate(invalid="ignore"):
            want = qa @ qb
        for acc in ("float64", "float32"):
            got = fx.matmul(a, b, fx.Mac(acc=acc, a=blk, b=blk))
            np.testing.assert_array_equal(got, want.astype(acc), err_msg=f"{blk} {acc}")
