"""Layer arithmetic (strided / padded conv2d and its gradients, max and average pools) against
slow restatements of their documented definitions and the Fraction oracle of the Mac contract.

Each layer output is a Mac reduction of a list of (a, b) operand pairs in a stated order; the
restatements below list those pairs from the formulas (padding as +0.0 inputs, grad_input
straight from ``y + top = i·sh + kh`` with the flipped kernel order), and the oracle
(:func:`kernels.test_arith_oracle.oracle_dot`: products, ``R_acc`` per step in the order,
``R_out``) reduces them in exact rational arithmetic. Also: results independent of the thread
count, the average pool's one correctly rounded division, the max pool against torch, and the
one-line errors.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from kernels.test_arith_oracle import MACS, ORDERS, _round, oracle_dot
from reference import fixed_oracle as fxo
from reference import float_oracle as flo

import fxemu as fx

#: (N, C, H, W, F, Kh, Kw, stride, padding): stride > 1, asymmetric and 'same' padding
GEOMETRIES = [
    (2, 2, 6, 5, 2, 3, 2, (2, 1), (1, 0, 2, 1)),
    (1, 2, 5, 5, 2, 3, 3, 1, "same"),
    (2, 1, 7, 6, 3, 2, 3, (3, 2), 1),
    (2, 2, 5, 5, 2, 1, 2, 2, (2, 1)),  # padding beyond the kernel: border outputs see no input
]


def _padded(x: np.ndarray, g: fx.ConvGeometry) -> callable:
    """x_p(n, c, r, q): x at padded coordinates (r, q), +0.0 in the padding."""
    t, _, left, _ = g.padding
    h, w = x.shape[2:]

    def at(n, c, r, q):
        y, z = r - t, q - left
        return float(x[n, c, y, z]) if 0 <= y < h and 0 <= z < w else 0.0

    return at


def conv_terms(x, w, g):
    """{output index: (a list, b list)} of conv2d: k = (c·Kh + kh)·Kw + kw."""
    xp = _padded(x, g)
    (sh, sw), (kh_, kw_) = g.stride, g.kernel
    out = {}
    for n in range(x.shape[0]):
        for f in range(w.shape[0]):
            for i in range(g.ho):
                for j in range(g.wo):
                    a = [xp(n, c, i * sh + kh, j * sw + kw) for c in range(x.shape[1])
                         for kh in range(kh_) for kw in range(kw_)]
                    b = [float(w[f, c, kh, kw]) for c in range(x.shape[1])
                         for kh in range(kh_) for kw in range(kw_)]
                    out[n, f, i, j] = (a, b)
    return out


def grad_weight_terms(x, gr, g):
    """dw[f, c, kh, kw]: (g, x) over k = (n·Ho + i)·Wo + j."""
    xp = _padded(x, g)
    (sh, sw), (kh_, kw_) = g.stride, g.kernel
    out = {}
    for f in range(gr.shape[1]):
        for c in range(x.shape[1]):
            for kh in range(kh_):
                for kw in range(kw_):
                    idx = [(n, i, j) for n in range(x.shape[0]) for i in range(g.ho)
                           for j in range(g.wo)]
                    out[f, c, kh, kw] = ([float(gr[n, f, i, j]) for n, i, j in idx],
                                         [xp(n, c, i * sh + kh, j * sw + kw) for n, i, j in idx])
    return out


def grad_input_terms(gr, w, g):
    """dx[n, c, y, x]: (g, w) over k = (f·Kh + kh')·Kw + kw' of the flipped kernel, the term
    g[n, f, i, j] where y + top = i·sh + kh (kh = Kh−1−kh'), +0.0 where no such (i, j)."""
    (sh, sw), (kh_, kw_), (h, wd) = g.stride, g.kernel, g.input
    t, left = g.padding[0], g.padding[2]
    out = {}
    for n in range(gr.shape[0]):
        for c in range(w.shape[1]):
            for y in range(h):
                for z in range(wd):
                    a, b = [], []
                    for f in range(w.shape[0]):
                        for khf in range(kh_):
                            for kwf in range(kw_):
                                kh, kw = kh_ - 1 - khf, kw_ - 1 - kwf
                                ri, qi = y + t - kh, z + left - kw
                                ok = (ri % sh == 0 and qi % sw == 0 and 0 <= ri // sh < g.ho
                                      and 0 <= qi // sw < g.wo)
                                a.append(float(gr[n, f, ri // sh, qi // sw]) if ok else 0.0)
                                b.append(float(w[f, c, kh, kw]))
                    out[n, c, y, z] = (a, b)
    return out


def _case_data(fin, geo_case, seed):
    n, c, h, w, f, kh, kw, stride, padding = geo_case
    rng = np.random.default_rng(seed)
    g = fx.conv_geometry(h, w, kh, kw, stride, padding)
    q = lambda shape: fx.quantize(rng.standard_normal(shape) * 1.5, fin)  # noqa: E731
    return g, q((n, c, h, w)), q((f, c, kh, kw)), q((n, f, *g.out)), stride, padding


def _same_codes(got: float, want: Fraction, where) -> None:
    assert Fraction(float(got)) == want, (where, float(got), float(want))


def _oracle_cases() -> list:
    """(fin, mac, geometry): a fixed and a float datapath on the strided, asymmetrically
    padded geometry by default; every other pairing under the ``layers_full``
    marker (``tox -e layers-full``)."""
    out = []
    for mi, (fin, mac) in enumerate(MACS[::2]):
        for gi, geo in enumerate(GEOMETRIES):
            fast = gi == 0 and mi in (0, 2)
            out.append(pytest.param(fin, mac, geo, marks=() if fast else pytest.mark.layers_full,
                                    id=f"{fin}-{mac.acc}|{mac.mul}|{mac.out}-{geo[7]}-{geo[8]}"))
    return out


@pytest.mark.parametrize(("fin", "mac", "geo_case"), _oracle_cases())
def test_conv_layers_match_fraction_oracle(fin, mac, geo_case) -> None:
    """conv2d, conv2d_grad_weight and conv2d_grad_input, strided and padded, every order."""
    g, x, w, gr, stride, padding = _case_data(fin, geo_case, len(fin) + len(str(mac.acc)))
    kw_ = dict(stride=stride, padding=padding)
    for order in ORDERS:
        m = fx.Mac(mac.acc, mac.mul, mac.out, order)
        y = fx.conv2d(x, w, m, **kw_)
        dw = fx.conv2d_grad_weight(x, gr, g.kernel, m, **kw_)
        dx = fx.conv2d_grad_input(gr, w, g.input, m, **kw_)
        assert y.shape == (x.shape[0], w.shape[0], *g.out)
        for got, terms in ((y, conv_terms(x, w, g)), (dw, grad_weight_terms(x, gr, g)),
                           (dx, grad_input_terms(gr, w, g))):
            assert len(terms) == got.size
            for idx, (a, b) in terms.items():
                _same_codes(got[idx], oracle_dot(a, b, m), (order, idx))


@pytest.mark.parametrize("geo_case", GEOMETRIES[:2], ids=lambda v: f"{v[7]}-{v[8]}")
def test_padding_is_an_explicitly_zero_padded_input(geo_case) -> None:
    """Padded positions are +0.0 inputs: the padded conv equals the valid conv of np.pad(x)
    code for code, signed zeros included (a float Mac where −0 products meet −0 sums)."""
    g, x, w, gr, stride, padding = _case_data("float8_e4m3fn", geo_case, 5)
    t, b, left, r = g.padding
    x = np.where(np.abs(x) < 1.0, -0.0, x)  # many −0 inputs: −0 products of both signs
    xp = np.pad(x, ((0, 0), (0, 0), (t, b), (left, r)))
    for mac in (fx.Mac(fx.Float(4, 3, rounding="rdn")), fx.Mac("float16", order="pairwise")):
        a = fx.conv2d(x, w, mac, stride=stride, padding=padding)
        e = fx.conv2d(xp, w, mac, stride=stride)
        np.testing.assert_array_equal(a.view(np.uint64), e.view(np.uint64))
        dwa = fx.conv2d_grad_weight(x, gr, g.kernel, mac, stride=stride, padding=padding)
        dwe = fx.conv2d_grad_weight(xp, gr, g.kernel, mac, stride=stride)
        np.testing.assert_array_equal(dwa.view(np.uint64), dwe.view(np.uint64))


def test_defaults_are_the_valid_stride_one_layers() -> None:
    rng = np.random.default_rng(1)
    x = fx.quantize(rng.standard_normal((2, 2, 6, 6)), "float16")
    w = fx.quantize(rng.standard_normal((3, 2, 3, 3)), "float16")
    gr = fx.quantize(rng.standard_normal((2, 3, 4, 4)), "float16")
    mac = fx.Mac("float16")
    for args in ({}, {"stride": 1, "padding": 0}, {"stride": (1, 1), "padding": "valid"}):
        np.testing.assert_array_equal(fx.conv2d(x, w, mac, **args), fx.conv2d(x, w, mac))
        np.testing.assert_array_equal(fx.conv2d_grad_input(gr, w, (6, 6), mac, **args),
                                      fx.conv2d_grad_input(gr, w, (6, 6), mac))


def test_float64_layers_match_torch() -> None:
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(2)
    mac = fx.Mac("float64")
    for n, c, h, w, f, kh, kw, stride, padding in GEOMETRIES:
        g = fx.conv_geometry(h, w, kh, kw, stride, padding)
        t, b, left, r = g.padding
        x, wt = rng.standard_normal((n, c, h, w)), rng.standard_normal((f, c, kh, kw))
        gr = rng.standard_normal((n, f, *g.out))
        xt = torch.tensor(x, requires_grad=True)
        wtt = torch.tensor(wt, requires_grad=True)
        yt = F.conv2d(F.pad(xt, (left, r, t, b)), wtt, stride=g.stride)
        yt.backward(torch.tensor(gr))
        kw_ = dict(stride=stride, padding=padding)
        np.testing.assert_allclose(fx.conv2d(x, wt, mac, **kw_), yt.detach().numpy(),
                                   rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(fx.conv2d_grad_weight(x, gr, (kh, kw), mac, **kw_),
                                   wtt.grad.numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(fx.conv2d_grad_input(gr, wt, (h, w), mac, **kw_),
                                   xt.grad.numpy(), rtol=1e-12, atol=1e-12)


# -- pools --------------------------------------------------------------------------------
POOLS = [(2, None, 0), (3, 2, 1), (3, 1, 1), ((2, 3), (1, 2), (1, 1)), (2, 1, 0)]


@pytest.mark.parametrize(("size", "stride", "padding"), POOLS, ids=str)
def test_maxpool_matches_torch_selection(size, stride, padding) -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x = np.round(rng.standard_normal((2, 3, 7, 8)) * 2) / 2  # ties
    x[0, 0] = -np.inf
    out, arg = fx.maxpool2d(x, size, stride=stride, padding=padding)
    ot, it = torch.nn.functional.max_pool2d(torch.tensor(x), size, stride=stride,
                                            padding=padding, return_indices=True)
    np.testing.assert_array_equal(out, ot.numpy())  # padded cells never win
    # the flat input index of each argmax, as torch reports it (first maximum in row-major)
    g = fx.conv_geometry(7, 8, *((size, size) if isinstance(size, int) else size),
                         stride if stride is not None else size, padding)
    kw = g.kernel[1]
    rows = (np.arange(g.ho) * g.stride[0] - g.padding[0])[:, None] + arg // kw
    cols = (np.arange(g.wo) * g.stride[1] - g.padding[2])[None, :] + arg % kw
    np.testing.assert_array_equal(rows * 8 + cols, it.numpy())
    gr = fx.quantize(rng.standard_normal(out.shape), "float16")
    fmt = fx.Float(5, 4)
    dx = fx.maxpool2d_backward(gr, arg, x.shape, size, stride=stride, padding=padding, fmt=fmt)
    # restated: per position, the routed values in row-major window order, first as is,
    # then R_fmt(acc + g) per further one
    want = np.zeros(x.shape)
    seen = np.zeros(x.shape, bool)
    for i in range(g.ho):
        for j in range(g.wo):
            for n in range(2):
                for c in range(3):
                    p = (n, c, rows[n, c, i, j], cols[n, c, i, j])
                    v = gr[n, c, i, j]
                    want[p] = fx.add(want[p], v, fmt) if seen[p] else v
                    seen[p] = True
    np.testing.assert_array_equal(dx.view(np.uint64), want.view(np.uint64))


def _div_oracle(s: float, count: int, fmt) -> Fraction:
    """The exact s / count rounded into fmt (finite results)."""
    return _round(Fraction(s) / count, fmt)


def _div_code(s: float, count: int, fmt) -> int:
    """The code of s / count rounded into fmt (overflow and signed zeros included)."""
    if isinstance(fmt, fx.Fixed):
        return fxo.fixed_code(Fraction(s) / count, fmt)
    return flo.float_code(s if s == 0 else Fraction(s) / count, fmt)


@pytest.mark.parametrize(("size", "stride", "padding"), POOLS, ids=str)
@pytest.mark.parametrize(("fin", "mac", "out"), [
    ("ap_fixed<8,3>", fx.Mac("ap_fixed<12,5,AP_RND_ZERO,AP_SAT_SYM>"),
     "ap_fixed<8,3,AP_RND_CONV,AP_SAT>"),
    ("ap_fixed<8,3>", fx.Mac("ap_fixed<10,4,AP_RND,AP_SAT>", order="pairwise"),
     "ap_fixed<7,2,AP_TRN,AP_WRAP>"),
    ("float8_e5m2", fx.Mac(fx.Float(5, 5, rounding="rtz")), fx.Float(5, 2, rounding="rna")),
    ("float16", fx.Mac("float16", order="chunk:3"), "float16"),
], ids=str)
def test_avgpool_is_mac_sum_then_one_rounded_division(fin, mac, out, size, stride,
                                                      padding) -> None:
    rng = np.random.default_rng(4)
    x = fx.quantize(rng.standard_normal((2, 2, 7, 6)) * 2, fin)
    y = fx.avgpool2d(x, size, mac, out, stride=stride, padding=padding)
    kh, kw = (size, size) if isinstance(size, int) else size
    g = fx.conv_geometry(7, 6, kh, kw, stride if stride is not None else (kh, kw), padding)
    w1 = np.ones((1, 1, kh, kw))
    terms = conv_terms(x.reshape(4, 1, 7, 6), w1, g)
    of = fx.parse(out) if isinstance(out, str) else out
    for (n, _, i, j), (a, b) in terms.items():
        s = oracle_dot(a, b, mac)
        _same_codes(y.reshape(4, *g.out)[n, i, j], _round(s / (kh * kw), of), (n, i, j))
    # backward: each window's share R_out(g / k²), routed or summed through the Mac
    gr = fx.quantize(rng.standard_normal(y.shape), fin)
    dx = fx.avgpool2d_backward(gr, x.shape, size, out, stride=stride, padding=padding, mac=mac)
    share = np.array([float(_div_oracle(v, kh * kw, of)) for v in gr.ravel()]).reshape(gr.shape)
    if g.overlapping():
        want = fx.conv2d_grad_input(share.reshape(4, 1, *g.out), w1, (7, 6), mac,
                                    stride=g.stride, padding=g.padding).reshape(x.shape)
    else:
        want = np.zeros((2, 2, 7 + kh + g.ho * g.stride[0], 6 + kw + g.wo * g.stride[1]))
        for i in range(g.ho):
            for j in range(g.wo):
                r0, q0 = i * g.stride[0], j * g.stride[1]
                want[:, :, r0:r0 + kh, q0:q0 + kw] = share[:, :, i:i + 1, j:j + 1]
        want = want[:, :, g.padding[0]:g.padding[0] + 7, g.padding[2]:g.padding[2] + 6]
    np.testing.assert_array_equal(dx.view(np.uint64), want.view(np.uint64))


def test_average_division_is_correctly_rounded_near_ties() -> None:
    """S/9 and S/3 for every code of 12-bit sources and 3 000 float16 codes: one rounding of
    the exact quotient (the rational oracle)."""
    for fmt, src in (("ap_fixed<8,3,AP_RND_CONV,AP_SAT>", "ap_fixed<12,5>"),
                     ("ap_fixed<8,3,AP_RND_INF,AP_WRAP>", "ap_fixed<12,5>"),
                     (fx.Float(4, 3, rounding="rne"), "float16"),
                     (fx.Float(5, 2, rounding="rup", subnormals=False), "float16")):
        f, sf = (fx.parse(v) if isinstance(v, str) else v for v in (fmt, src))
        codes = np.arange(1 << sf.width, dtype=np.uint64)
        if sf.width > 12:  # a seeded sample of the larger sources, ±1 around each
            pick = np.random.default_rng(7).choice(codes.size, 1500, replace=False)
            codes = np.unique(np.concatenate([codes[pick], codes[pick] ^ np.uint64(1)]))
        s = fx.from_bits(codes, sf)
        s = s[np.isfinite(s) & ~((s == 0) & np.signbit(s))]  # a Mac sum from +0 is never −0
        mac = fx.Mac(sf)
        for k in (3, 9):
            # a 1×k window of S then k−1 zeros: the Mac sum is S, exact
            x = np.zeros((1, s.size, 1, k))
            x[0, :, 0, 0] = s
            got = fx.to_bits(fx.avgpool2d(x, (1, k), mac, f).ravel(), f)
            want = np.array([_div_code(v, k, f) for v in s], np.uint64)
            bad = np.flatnonzero(got != want)
            assert not bad.size, (str(f), k, [(s[i], hex(got[i]), hex(want[i]))
                                              for i in bad[:5]])


def test_layers_do_not_depend_on_thread_count() -> None:
    import numba

    rng = np.random.default_rng(5)
    x = fx.quantize(rng.standard_normal((16, 3, 20, 20)), "float16")
    w = fx.quantize(rng.standard_normal((8, 3, 5, 5)), "float16")
    geo = fx.conv_geometry(20, 20, 5, 5, 2, 2)
    gr = fx.quantize(rng.standard_normal((16, 8, *geo.out)), "float16")
    macs = [fx.Mac(fx.Float(5, 10, rounding="stochastic"), order="pairwise"),
            fx.Mac("ap_fixed<20,8,AP_RND,AP_SAT>", mul="ap_fixed<16,6,AP_RND,AP_SAT>",
                   order="chunk:7"), fx.Mac("float32")]

    def run():
        res = []
        for mac in macs:
            kw_ = dict(stride=2, padding=2, seed=9)
            xx = fx.quantize(x, "ap_fixed<16,8>") if isinstance(mac.acc, fx.Fixed) else x
            ww = fx.quantize(w, "ap_fixed<16,8>") if isinstance(mac.acc, fx.Fixed) else w
            res += [fx.conv2d(xx, ww, mac, **kw_),
                    fx.conv2d_grad_weight(xx, gr, (5, 5), mac, **kw_),
                    fx.conv2d_grad_input(gr, ww, (20, 20), mac, **kw_),
                    fx.avgpool2d(x, 3, mac, "float16", stride=1, padding=1, seed=9)]
        res += list(fx.maxpool2d(x, 3, stride=2, padding=1))
        return res

    n0 = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = run()
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = run()
    finally:
        numba.set_num_threads(n0)
    for a, b in zip(one, many, strict=True):
        np.testing.assert_array_equal(a.view(np.uint64), b.view(np.uint64))


@pytest.mark.parametrize(("call", "exc", "match"), [
    (lambda: fx.conv_geometry(5, 5, 3, 3, stride=0), ValueError, "stride: must be an int >= 1"),
    (lambda: fx.conv_geometry(5, 5, 3, 3, padding=-1), ValueError, "padding: must be an int >= 0"),
    (lambda: fx.conv_geometry(5, 5, 3, 3, stride=2, padding="same"), ValueError,
     "'same' needs stride 1"),
    (lambda: fx.conv_geometry(5, 5, 3, 3, padding="full"), ValueError,
     "must be an int, a pair, 'same' or 'valid'"),
    (lambda: fx.conv_geometry(2, 5, 4, 3, padding=(0, 1)), ValueError,
     "kernel: larger than the padded input"),
    (lambda: fx.conv_geometry(5, 5, 3, 3, stride=(1, 2, 3)), ValueError,
     "stride: must be an int or a pair"),
    (lambda: fx.conv2d(np.ones((1, 1, 5, 5)), np.ones((1, 1, 3, 3)), fx.Mac("float16"),
                       stride=True), ValueError, "stride: must be an int >= 1"),
    (lambda: fx.conv2d_grad_weight(np.ones((1, 1, 5, 5)), np.ones((1, 1, 3, 3)), (3, 3),
                                   fx.Mac("float16"), stride=2), ValueError,
     r"g's spatial size must be the conv output \(2, 2\)"),
    (lambda: fx.conv2d_grad_input(np.ones((1, 1, 3, 3)), np.ones((1, 1, 3, 3)), (5, 5),
                                  fx.Mac("float16"), padding=1), ValueError,
     r"must be the conv output \(5, 5\)"),
    (lambda: fx.maxpool2d(np.ones((1, 1, 5, 5)), 2, padding=2), ValueError,
     "at most half the pool window"),
    (lambda: fx.maxpool2d_backward(np.ones((1, 1, 4, 4)), np.zeros((1, 1, 4, 4), int),
                                   (1, 1, 5, 5), 2, stride=1), ValueError,
     "fmt: required when pool windows overlap"),
    (lambda: fx.avgpool2d_backward(np.ones((1, 1, 4, 4)), (1, 1, 5, 5), 2, "float16",
                                   stride=1), ValueError, "mac: required when pool windows"),
    (lambda: fx.avgpool2d(np.ones((1, 1, 4, 4)), 2, fx.Mac("float64"), fx.Float(11, 52,
                          rounding="rtz")), ValueError, "at most 50 mantissa bits"),
    (lambda: fx.maxpool2d_backward(np.ones((1, 1, 2, 2)), np.full((1, 1, 2, 2), 4),
                                   (1, 1, 4, 4)), ValueError, r"argmax must be in 0\.\.3"),
    (lambda: fx.maxpool2d_backward(np.ones((1, 1, 2, 2)), np.zeros((1, 1, 2, 2), int),
                                   (1, 1, 3, 3), 2, padding=1), ValueError,
     "argmax names a padded cell"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_errors(call, exc, match) -> None:
    with pytest.raises(exc, match=match):
        call()


def test_conv_geometry_normalises() -> None:
    g = fx.conv_geometry(28, 28, 5, 5, padding="same")
    assert g.stride == (1, 1) and g.padding == (2, 2, 2, 2) and g.out == (28, 28)
    g = fx.conv_geometry(10, 9, 4, 2, padding="same")  # total 3 rows: 1 on top, 2 below
    assert g.padding == (1, 2, 0, 1) and g.out == (10, 9)
    g = fx.conv_geometry(7, 8, 3, 2, stride=(2, 3), padding=(1, 0))
    assert (g.stride, g.padding, g.out, g.ho, g.wo) == ((2, 3), (1, 1, 0, 0), (4, 3), 4, 3)
    assert fx.conv_geometry(5, 5, 3, 3).trivial and not g.trivial
    assert math.prod(fx.conv_geometry(4, 4, 4, 4).out) == 1


def test_conv_geometry_agrees_with_torch_shapes() -> None:
    """Output sizes (or a refusal) as torch computes them, over random geometries."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    for _ in range(300):
        h, w, kh, kw = (int(v) for v in rng.integers(1, 9, 4))
        stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        pad = (int(rng.integers(0, 4)), int(rng.integers(0, 4)))
        try:
            g = fx.conv_geometry(h, w, kh, kw, stride, pad)
        except ValueError as e:
            assert "larger than the padded input" in str(e)
            assert h + 2 * pad[0] < kh or w + 2 * pad[1] < kw
            continue
        y = torch.nn.functional.conv2d(torch.zeros(1, 1, h, w), torch.zeros(1, 1, kh, kw),
                                       stride=stride, padding=pad)
        assert g.out == tuple(y.shape[2:]), (h, w, kh, kw, stride, pad)
