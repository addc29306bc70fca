"""Datapath arithmetic vs slow exact oracles (Fraction arithmetic, one oracle rounding per step).

The oracles restate the ``Mac`` contract literally: products rounded into ``mul`` (or exact),
``acc = R_acc(acc + p)`` from 0 per step in the stated order, ``R_out`` at the end. Fast kernels
(int64 fixed, double round-to-odd float) are compared with the exact engine bit for bit.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from reference import fixed_oracle as fxo
from reference import float_oracle as flo
from reference.mac_order import reduce_in_order

import fxemu as fx
from fxemu import lowering
from fxemu._kernels import mac as kmac


def _round(v: Fraction, fmt) -> Fraction:
    """Oracle value of the exact v rounded into fmt (finite results only)."""
    if isinstance(fmt, fx.Fixed):
        return fxo.code_value(fxo.fixed_code(v, fmt), fmt)
    code = flo.float_code(v, fmt)
    out = flo.code_value(code, fmt)
    assert math.isfinite(out), "oracle tests keep results finite"
    return Fraction(out)


def _add(x: Fraction, y: Fraction, fmt) -> Fraction:
    return _round(x + y, fmt)


def _daz(x: float, fmt) -> Fraction:
    """An FTZ float datapath reads operands below its smallest normal as zero."""
    if isinstance(fmt, fx.Float) and not fmt.subnormals and abs(x) < fmt.smallest_normal:
        return Fraction(0)
    return Fraction(x)


def oracle_dot(a, b, mac: fx.Mac) -> Fraction:
    first = mac.mul if mac.mul is not None else mac.acc
    prods = [_daz(x, first) * _daz(y, first) for x, y in zip(a, b, strict=True)]
    if mac.mul is not None:
        prods = [_round(p, mac.mul) for p in prods]
    zero = Fraction(0)
    if mac.order == "exact":
        acc = _round(sum(prods, zero), mac.acc)
    else:
        acc = reduce_in_order(prods, mac.order, zero, lambda u, v: _add(u, v, mac.acc))
    return _round(acc, mac.out) if mac.out is not None else acc


ORDERS = ["sequential", "pairwise", "chunk:3", "exact"]
MACS = [
    # fixed: 8-bit operands, narrow accumulators that round and overflow
    ("ap_fixed<8,3>", fx.Mac("ap_fixed<10,4,AP_RND_CONV,AP_SAT>")),
    ("ap_fixed<8,3>", fx.Mac("ap_fixed<9,3,AP_TRN,AP_WRAP>", mul="ap_fixed<8,2,AP_RND,AP_SAT>")),
    ("ap_fixed<8,3>", fx.Mac("ap_fixed<12,5,AP_RND_ZERO,AP_SAT_SYM>",
                             out="ap_fixed<6,3,AP_RND_INF,AP_SAT>")),
    ("ap_ufixed<6,2>", fx.Mac("ap_ufixed<8,4,AP_RND_MIN_INF,AP_SAT_ZERO>")),
    # floats: 8-bit-ish accumulators so every step rounds
    ("float8_e4m3fn", fx.Mac(fx.Float(4, 3, overflow="sat"))),
    ("float8_e5m2", fx.Mac(fx.Float(5, 4, rounding="rtz"), mul=fx.Float(5, 3))),
    ("float8_e5m2", fx.Mac(fx.Float(5, 5, subnormals=False, rounding="rna"),
                           out=fx.Float(5, 2, rounding="rup"))),
    ("float16", fx.Mac(fx.Float(6, 6, rounding="rdn"))),
    ("float16", fx.Mac(fx.Float(6, 6, rounding="rto"))),
]


def _id(v: object) -> str:
    return v if isinstance(v, str) else f"{v.acc}|{v.mul}|{v.out}"


@pytest.mark.parametrize(("fin", "mac"), MACS, ids=_id)
@pytest.mark.parametrize("order", ORDERS)
def test_dot_matches_oracle(fin: str, mac: fx.Mac, order: str) -> None:
    mac = fx.Mac(mac.acc, mac.mul, mac.out, order)
    rng = np.random.default_rng(len(fin) * 1000 + ORDERS.index(order) * 10 + len(str(mac.acc)))
    for trial in range(12):
        k = int(rng.integers(0, 23))
        scale = 2.0 ** rng.integers(-3, 3)
        a = fx.quantize(rng.standard_normal(k) * scale, fin)
        b = fx.quantize(rng.standard_normal(k) * scale, fin)
        got = fx.dot(a, b, mac)
        want = oracle_dot(a, b, mac)
        assert Fraction(float(got)) == want, (trial, a.tolist(), b.tolist(), float(want))


ELEM_FORMATS = ["ap_fixed<8,3,AP_RND_CONV,AP_SAT>", "ap_fixed<6,2,AP_TRN,AP_WRAP>",
                "ap_ufixed<7,3,AP_RND_ZERO,AP_SAT_SYM>", fx.Float(4, 3, overflow="sat"),
                fx.Float(5, 2, rounding="rna", special="none"),
                fx.Float(3, 4, subnormals=False, rounding="rup", overflow="sat")]


@pytest.mark.parametrize("fmt", ELEM_FORMATS, ids=str)
def test_elementwise_exhaustive_small(fmt) -> None:
    f = fx.parse(fmt) if isinstance(fmt, str) else fmt
    src = fx.Fixed(7, 3) if isinstance(f, fx.Fixed) else fx.Float(4, 2, special="none")
    vals = fx.from_bits(np.arange(src.n_codes), src)
    a, b = np.meshgrid(vals, vals, indexing="ij")
    a, b = a.ravel(), b.ravel()
    c = b[::-1].copy()
    ops = {"add": (fx.add, lambda x, y, z: x + y), "sub": (fx.sub, lambda x, y, z: x - y),
           "mul": (fx.mul, lambda x, y, z: x * y), "fma": (fx.fma, lambda x, y, z: x * y + z)}
    for name, (fn, exact) in ops.items():
        got = fn(a, b, c, f) if name == "fma" else fn(a, b, f)
        for i in range(0, a.size, 7):
            want = _round(exact(_daz(a[i], f), _daz(b[i], f), _daz(c[i], f)), f)
            assert Fraction(float(got[i])) == want, (name, a[i], b[i], c[i])


def test_float_elementwise_ieee_signs_and_specials() -> None:
    h = "float16"
    assert math.copysign(1, fx.add(-0.0, -0.0, h)) == -1
    assert math.copysign(1, fx.add(-0.0, 0.0, h)) == 1
    assert math.copysign(1, fx.sub(1.0, 1.0, h)) == 1
    assert math.copysign(1, fx.mul(-2.0, 0.0, h)) == -1
    assert np.isnan(fx.add(np.inf, -np.inf, h))
    assert fx.add(np.inf, 1.0, h) == np.inf
    assert np.isnan(fx.mul(0.0, np.inf, h))
    assert fx.mul(300.0, 300.0, h) == np.inf
    assert fx.mul(300.0, 300.0, fx.Float(5, 10, rounding="rtz")) == 65504.0


def test_numpy_float16_arithmetic_random_pairs() -> None:
    rng = np.random.default_rng(5)
    a = rng.standard_normal(200_000).astype(np.float16)
    b = (rng.standard_normal(200_000) * np.exp(rng.uniform(-8, 8, 200_000))).astype(np.float16)
    with np.errstate(over="ignore", invalid="ignore"):
        for fn, ref in [(fx.add, a + b), (fx.sub, a - b), (fx.mul, a * b)]:
            got = fx.to_bits(fn(a, b, "float16"), "float16")
            np.testing.assert_array_equal(got, ref.view(np.uint16).astype(np.uint64))


def _generic(a: np.ndarray, b: np.ndarray, mac: fx.Mac) -> np.ndarray:
    bits, key = lowering.sr_key(mac.acc, None, None)
    lm = lowering.lower_mac(mac, bits)
    bt = np.ascontiguousarray(b.T)
    out = np.empty((a.shape[0], bt.shape[0]))
    kmac.matmul_kernel(a.view(np.uint64), bt.view(np.uint64), out, lm.acc, lm.mul, lm.out,
                       lm.use_mul, lm.order, lm.chunk, key, lm.out_scale)
    return out


FAST = [
    ("ap_fixed<16,8>", "ap_fixed<32,16,AP_TRN,AP_SAT>", None),
    ("ap_fixed<16,8>", "ap_fixed<24,8,AP_RND_CONV,AP_SAT>", None),
    ("ap_fixed<16,8>", "ap_fixed<12,4,AP_RND,AP_WRAP>", "ap_fixed<16,6,AP_RND,AP_SAT>"),
    ("ap_fixed<8,3>", "ap_fixed<20,6,AP_RND_INF,AP_SAT_SYM>", "ap_fixed<10,4,AP_TRN_ZERO,AP_WRAP>"),
    ("float16", "float16", None),
    ("float16", "float32", None),
    ("bfloat16", "bfloat16", None),
    ("float8_e4m3fn", "float16", "float8_e5m2"),
    ("float16", fx.Float(5, 10, subnormals=False, rounding="rtz"), None),
    ("float16", "float8_e5m2", None),
]


@pytest.mark.parametrize(("fin", "acc", "mul"), FAST, ids=str)
@pytest.mark.parametrize("order", ["sequential", "chunk:7"])
def test_fast_datapaths_equal_exact_engine(fin, acc, mul, order) -> None:
    rng = np.random.default_rng(9)
    mac = fx.Mac(acc=acc, mul=mul, order=order)
    for m, k, n in ((9, 150, 7), (3, 40, 1100)):  # the second spans three column tiles
        a = fx.quantize(rng.standard_normal((m, k)) * 4, fin)
        b = fx.quantize(rng.standard_normal((k, n)) * 4, fin)
        got, ref = fx.matmul(a, b, mac), _generic(a, b, mac)
        same = (got.view(np.uint64) == ref.view(np.uint64)) | (np.isnan(got) & np.isnan(ref))
        assert same.all()


def test_long_dot_orders_differ_as_documented() -> None:
    # 4096 products 1·1 in a half accumulator: sequential stalls at 2048 (+1 is half an ulp
    # there and ties to even), chunked, pairwise and exact sums reach 4096
    x = np.full(4096, 1.0)
    h = fx.Float(5, 10)
    assert fx.dot(x, x, fx.Mac(h)) == 2048.0
    assert fx.dot(x, x, fx.Mac(h, order="exact")) == 4096.0
    assert fx.dot(x, x, fx.Mac(h, order="chunk:64")) == 4096.0
    assert fx.dot(x, x, fx.Mac(h, order="pairwise")) == 4096.0


def test_conv_gradients_follow_documented_orders() -> None:
    rng = np.random.default_rng(2)
    h = fx.Float(5, 10)
    mac = fx.Mac(fx.Float(5, 6))
    x = fx.quantize(rng.standard_normal((2, 2, 5, 6)), h)
    w = fx.quantize(rng.standard_normal((3, 2, 3, 3)), h)
    g = fx.quantize(rng.standard_normal((2, 3, 3, 4)), h)
    dw = fx.conv2d_grad_weight(x, g, (3, 3), mac)
    for f, c, i, j in [(0, 0, 0, 0), (2, 1, 2, 1), (1, 0, 1, 2)]:
        xs = [x[n, c, y + i, z + j] for n in range(2) for y in range(3) for z in range(4)]
        gs = [g[n, f, y, z] for n in range(2) for y in range(3) for z in range(4)]
        assert dw[f, c, i, j] == fx.dot(xs, gs, mac)
    dx = fx.conv2d_grad_input(g, w, (5, 6), mac)
    for n, c, yy, zz in [(0, 0, 0, 0), (1, 1, 4, 5), (0, 1, 2, 3)]:
        gs, ws = [], []
        for f in range(3):
            for kh in range(3):  # flipped kernel order: kh' = 2 - kh
                for kw in range(3):
                    y, z = yy - (2 - kh), zz - (2 - kw)
                    gs.append(g[n, f, y, z] if 0 <= y < 3 and 0 <= z < 4 else 0.0)
                    ws.append(w[f, c, 2 - kh, 2 - kw])
        assert dx[n, c, yy, zz] == fx.dot(gs, ws, mac)


def test_maxpool_routes_to_first_maximum() -> None:
    x = np.array([[[[1.0, 3.0, 3.0, 0.0], [3.0, 2.0, -1.0, 3.0],
                    [0.0, 0.0, 5.0, 5.0], [0.0, 0.0, 5.0, 5.0]]]])
    p, arg = fx.maxpool2d(x)
    np.testing.assert_array_equal(p, [[[[3.0, 3.0], [0.0, 5.0]]]])
    np.testing.assert_array_equal(arg, [[[[1, 0], [0, 0]]]])
    back = fx.maxpool2d_backward(np.ones((1, 1, 2, 2)), arg, x.shape)
    np.testing.assert_array_equal(back, [[[[0, 1, 1, 0], [0, 0, 0, 0],
                                           [1, 0, 1, 0], [0, 0, 0, 0]]]])


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: fx.Mac("float16", order="random"), ValueError, "sequential, pairwise"),
        (lambda: fx.Mac("float16", order="chunk:0"), ValueError, "chunk size"),
        (lambda: fx.Mac("nope<1>"), ValueError, "unknown type template"),
        (lambda: fx.dot([1.0, 2.0], [1.0], fx.Mac("float16")), ValueError, "equal length"),
        (lambda: fx.dot([1.0], [1.0], "float16"), TypeError, "fx.Mac"),
        (lambda: fx.matmul(np.ones((2, 3)), np.ones((2, 3)), fx.Mac("float16")), ValueError,
         r"\(M, K\) and \(K, N\)"),
        (lambda: fx.conv2d(np.ones((1, 2, 5, 5)), np.ones((3, 1, 3, 3)), fx.Mac("float16")),
         ValueError, "equal C"),
        (lambda: fx.add(np.ones(3), np.ones(4), "float16"), ValueError, "broadcast"),
        (lambda: fx.add(["a"], [1.0], "float16"), TypeError, "real numeric"),
    ],
)
def test_errors(call, exc, match) -> None:
    with pytest.raises(exc, match=match):
        call()


def test_ftz_reads_subnormal_operands_as_zero() -> None:
    ftz = fx.Float(5, 10, subnormals=False)
    sub = 2.0**-20  # a half subnormal
    assert fx.add(sub, 1.0, ftz) == 1.0
    assert fx.add(sub, 2.0**-14, ftz) == 2.0**-14  # with subnormals: 2^-14 + 2^-20
    assert fx.add(sub, 2.0**-14, "float16") == 2.0**-14 + 2.0**-20
    assert math.copysign(1, fx.mul(-sub, 3.0, ftz)) == -1 and fx.mul(-sub, 3.0, ftz) == 0
    assert fx.fma(sub, 2.0**10, 1.0, ftz) == 1.0
    # a Mac reads its operands through the multiplier (here the FTZ accumulator)
    assert fx.dot([sub, 1.0], [2.0**14, 1.0], fx.Mac(ftz)) == 1.0
    assert fx.dot([sub, 1.0], [2.0**14, 1.0], fx.Mac("float16")) == 1.0 + 2.0**-6


@pytest.mark.parametrize(("fin", "acc", "mul", "order"), [
    ("ap_fixed<16,8>", "ap_fixed<32,16,AP_RND_CONV,AP_SAT>", None, "sequential"),
    ("ap_fixed<16,8>", "ap_fixed<20,8,AP_RND,AP_SAT>", "ap_fixed<16,6,AP_RND,AP_SAT>", "chunk:5"),
    ("float16", "float16", None, "sequential"),
    ("float16", "float32", None, "sequential"),
    ("float16", fx.Float(5, 10, rounding="stochastic"), None, "pairwise"),
], ids=str)
@pytest.mark.parametrize("shape", [(300, 120, 9), (10, 60, 1100)])  # row tiles; column tiles
def test_mac_results_do_not_depend_on_thread_count(fin, acc, mul, order, shape) -> None:
    import numba

    rng = np.random.default_rng(4)
    m, k, n = shape
    a = fx.quantize(rng.standard_normal((m, k)) * 8, fin)
    b = fx.quantize(rng.standard_normal((k, n)) * 8, fin)
    mac = fx.Mac(acc=acc, mul=mul, order=order)
    n0 = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = fx.matmul(a, b, mac, seed=3)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = fx.matmul(a, b, mac, seed=3)
    finally:
        numba.set_num_threads(n0)
    np.testing.assert_array_equal(one.view(np.uint64), many.view(np.uint64))


def _numpy_maxpool(x: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    n, c, h, w = x.shape
    ho, wo = h // size, w // size
    win = x[:, :, :ho * size, :wo * size].reshape(n, c, ho, size, wo, size)
    win = win.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, ho, wo, size * size)
    arg = np.argmax(win, axis=-1)
    return np.take_along_axis(win, arg[..., None], axis=-1)[..., 0], arg


@pytest.mark.parametrize(("shape", "size"), [((3, 4, 26, 26), 2), ((2, 3, 7, 9), 3),
                                             ((1, 2, 5, 5), 2)])
def test_maxpool_matches_numpy_argmax_selection(shape, size) -> None:
    rng = np.random.default_rng(6)
    x = np.round(rng.standard_normal(shape) * 2) / 2  # many ties
    x.flat[::17] = np.nan
    x.flat[5::23] = -0.0
    p, arg = fx.maxpool2d(x, size)
    rp, rarg = _numpy_maxpool(x, size)
    np.testing.assert_array_equal(arg, rarg)
    np.testing.assert_array_equal(p.view(np.uint64), rp.view(np.uint64))
    g = rng.standard_normal(p.shape)
    back = fx.maxpool2d_backward(g, arg, x.shape, size)
    assert back.shape == x.shape and np.count_nonzero(back) <= g.size
    n, c, ho, wo = g.shape
    for i, j, y, z in [(0, 0, 0, 0), (n - 1, c - 1, ho - 1, wo - 1)]:
        k = arg[i, j, y, z]
        assert back[i, j, y * size + k // size, z * size + k % size] == g[i, j, y, z]
    with pytest.raises(ValueError, match="argmax must be in"):
        fx.maxpool2d_backward(g, arg + size * size, x.shape, size)
