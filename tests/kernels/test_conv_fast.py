"""The direct conv kernels (:mod:`fxemu._kernels.conv_fast`) give the bits of the im2col path
and of the Fraction oracle.

``fx.conv2d``, ``fx.conv2d_grad_weight`` and ``fx.conv2d_grad_input`` run the direct kernels
where :func:`fxemu.lowering.direct_path` gives a datapath (fixed accumulators in sequential
order: float64 or int64 integers; an IEEE float32 accumulator with products exact in
float32). Here each call is compared with the same call forced onto the im2col matmul, on
edge data: partial sums that saturate mid-reduction and come back, ±max operands, ties,
float16 subnormals, signed zeros, overflow to inf, all-zero operands; and on small cases
with the exact rational oracle. The direct path must really run (counted), and give the
same bits at 1 and N threads.
"""

from __future__ import annotations

import numpy as np
import pytest
from kernels.test_arith_oracle import oracle_dot
from kernels.test_layer_arith import conv_terms, grad_input_terms, grad_weight_terms

import fxemu as fx
from fxemu import arith, lowering
from fxemu._kernels import conv_fast
from fxemu._kernels.codes import ORDER_SEQUENTIAL
from fxemu.quantize import as_format

FIX16 = "ap_fixed<16,8>"
FULL = pytest.mark.layers_full
#: (operand format, Mac): LeNet-5's two datapaths, the int64 kernel (wrap), and under the
#: ``layers_full`` marker (``tox -e layers-full``) the other overflow modes, a mul and an out
#: format, an accumulator that rounds each step
MACS = [
    pytest.param(FIX16, fx.Mac("ap_fixed<32,16,AP_RND_CONV,AP_SAT>"), id="fixed16"),
    pytest.param("float16", fx.Mac("float32"), id="fw16bw16"),
    pytest.param(FIX16, fx.Mac("ap_fixed<20,4,AP_RND,AP_WRAP>"), id="wrap-int64"),
    pytest.param(FIX16, fx.Mac("ap_fixed<20,4,AP_RND_CONV,AP_SAT_SYM>"), id="sat_sym",
                 marks=FULL),
    pytest.param(FIX16, fx.Mac("ap_fixed<20,4,AP_TRN,AP_SAT_ZERO>"), id="sat_zero", marks=FULL),
    pytest.param(FIX16, fx.Mac("ap_fixed<24,10,AP_RND,AP_SAT>",
                               mul="ap_fixed<12,6,AP_RND_ZERO,AP_SAT>",
                               out="ap_fixed<16,8,AP_RND_INF,AP_SAT>"), id="mul-out-int64",
                 marks=FULL),
    pytest.param(FIX16, fx.Mac("ap_fixed<24,12,AP_RND_CONV,AP_SAT>"), id="acc-rounds-int64",
                 marks=FULL),
]

#: (N, C, H, W, F, Kh, Kw, stride, padding)
GEOMETRIES = [
    (3, 2, 9, 8, 4, 3, 3, 1, 0),
    (2, 3, 10, 9, 5, 5, 5, 1, 2),
    (2, 2, 9, 9, 3, 3, 2, (2, 1), (1, 0, 2, 1)),
    (2, 1, 7, 6, 3, 2, 3, (3, 2), 1),
    (2, 2, 6, 6, 2, 3, 3, 1, "same"),
    (2, 2, 5, 5, 2, 1, 2, 2, (2, 1)),  # padding beyond the kernel: border outputs see no input
    (1, 1, 4, 4, 2, 2, 2, 1, 3),  # input-gradient offset < 0 (a crop)
]


#: the weight-gradient kernel's tiling edges (tiles of conv_fast.TAPS taps × LANES filters):
#: F = 1, 6, 7, 16, 17 against LANES = 8; kernel widths 1..7 and C·Kh·Kw not a multiple of
#: TAPS; stride 2, padding, "same", a crop of the input gradient
TILING = [
    (2, 1, 6, 7, 1, 1, 1, 1, 0),
    (2, 2, 7, 6, 6, 2, 2, 1, "same"),
    (1, 1, 8, 8, 7, 3, 3, 2, 1),
    (2, 1, 9, 9, 16, 4, 4, 1, 2),
    (1, 2, 8, 9, 17, 5, 5, (2, 1), (1, 0, 2, 1)),
    (1, 1, 9, 10, 3, 6, 6, 1, 6),  # padding beyond the kernel: a crop in the input gradient
    (1, 1, 8, 8, 2, 7, 7, 2, (0, 3, 1, 2)),
    (1, 3, 6, 9, 9, 2, 7, 1, 0),
]


def _edge(rng, shape, fin: str, big: bool) -> np.ndarray:
    """Operands in ``fin`` with the edges of its datapath mixed in."""
    f = as_format(fin)
    x = rng.standard_normal(shape) * (f.max / 4 if big else 1.0)
    flat = x.reshape(-1)
    flat[::7] = 0.0
    flat[1::11] = -0.0
    flat[2::13] = f.max
    flat[3::17] = -f.max if f.signed else 0.0
    if isinstance(f, fx.Float):
        flat[4::19] = f.smallest_subnormal * rng.integers(1, 8, flat[4::19].size)
        flat[5::23] = 1.0 + 2.0**-10  # sums of these meet float32 ties
    else:
        flat[4::19] = f.step * rng.integers(-3, 4, flat[4::19].size)
    return fx.quantize(x, f)


def _three(x, w, gr, geo, mac):
    _, _, h, wd, _, kh, kw, stride, padding = geo
    kw_ = dict(stride=stride, padding=padding)
    return (fx.conv2d(x, w, mac, **kw_), fx.conv2d_grad_weight(x, gr, (kh, kw), mac, **kw_),
            fx.conv2d_grad_input(gr, w, (h, wd), mac, **kw_))


def _data(geo, fin, seed, big):
    n, c, h, wd, f, kh, kw, stride, padding = geo
    rng = np.random.default_rng(seed)
    g = fx.conv_geometry(h, wd, kh, kw, stride, padding)
    return (_edge(rng, (n, c, h, wd), fin, big), _edge(rng, (f, c, kh, kw), fin, big),
            _edge(rng, (n, f, *g.out), fin, big))


@pytest.fixture
def counted(monkeypatch):
    """The number of direct kernel runs (a list holding one count)."""
    count = [0]
    real = conv_fast.conv_kernels

    def wrapped(ops):
        kernels = real(ops)

        def tick(k):
            def run(*args):
                count[0] += 1
                return k(*args)
            return run

        return tick(kernels[0]), tick(kernels[1])

    monkeypatch.setattr(conv_fast, "conv_kernels", wrapped)
    return count


def _im2col_only(monkeypatch):
    monkeypatch.setattr(lowering, "direct_path", lambda *a, **k: None)


@pytest.mark.parametrize(("fin", "mac"), MACS)
@pytest.mark.parametrize("big", [False, True], ids=["small", "saturating"])
def test_direct_equals_im2col(fin, mac, big, counted, monkeypatch) -> None:
    results = []
    for i, geo in enumerate(GEOMETRIES):
        x, w, gr = _data(geo, fin, 100 * i + big, big)
        results.append((geo, x, w, gr, _three(x, w, gr, geo, mac)))
    assert counted[0] >= 2 * len(GEOMETRIES)  # forward + weight gradient, at least
    _im2col_only(monkeypatch)
    for geo, x, w, gr, direct in results:
        for got, want, name in zip(direct, _three(x, w, gr, geo, mac), ("y", "dw", "dx"),
                                   strict=True):
            assert got.shape == want.shape and got.flags.c_contiguous, (geo, name)
            bad = np.flatnonzero(got.view(np.uint64) != want.view(np.uint64))
            assert not bad.size, (geo, name, got.reshape(-1)[bad[:4]], want.reshape(-1)[bad[:4]])


@pytest.mark.parametrize(("fin", "mac"), MACS[:2])
def test_tiling_edges_equal_im2col(fin, mac, counted, monkeypatch) -> None:
    results = []
    for i, geo in enumerate(TILING):
        x, w, gr = _data(geo, fin, 500 + i, False)
        results.append((geo, x, w, gr, _three(x, w, gr, geo, mac)))
    assert counted[0] >= 2 * len(TILING)
    _im2col_only(monkeypatch)
    for geo, x, w, gr, direct in results:
        for got, want, name in zip(direct, _three(x, w, gr, geo, mac), ("y", "dw", "dx"),
                                   strict=True):
            np.testing.assert_array_equal(got.view(np.uint64), want.view(np.uint64),
                                          err_msg=f"{geo} {name}")


def test_saturation_mid_reduction_and_float32_overflow(counted, monkeypatch) -> None:
    """Partial sums that leave the accumulator's range and return (fixed: the saturated value
    carries on, so the order shows), and a float32 sum that overflows to inf (the im2col path
    takes over: inf and NaN are the exact engine's)."""
    x = np.zeros((1, 1, 1, 4))
    x[0, 0, 0] = [127.0, 127.0, -127.0, 1.0]
    w = np.full((1, 1, 1, 4), 127.0)
    mac = fx.Mac("ap_fixed<20,15,AP_RND_CONV,AP_SAT>")  # max 16383.97: 127·127·2 saturates
    y = fx.conv2d(x, w, mac)
    assert y.item() == 16384 - 2.0**-5 - 127 * 127 + 127
    assert counted[0] == 1
    big = np.full((1, 1, 1, 3), 1.5 * 2.0**63)  # products 2.25·2^126: exact in float32
    w32 = big.copy()
    w32[0, 0, 0, 2] *= -1
    y32 = fx.conv2d(big, w32, fx.Mac("float32"))
    assert y32.item() == np.inf  # the second term overflows float32; inf − p stays inf
    assert counted[0] == 2
    _im2col_only(monkeypatch)
    assert fx.conv2d(x, w, mac).item() == y.item()
    assert fx.conv2d(big, w32, fx.Mac("float32")).item() == np.inf


@pytest.mark.parametrize(("fin", "mac"), MACS[:3])
def test_direct_matches_fraction_oracle(fin, mac, counted) -> None:
    geo = GEOMETRIES[2]
    _, _, h, wd, _, kh, kw, stride, padding = geo
    g = fx.conv_geometry(h, wd, kh, kw, stride, padding)
    x, w, gr = _data(geo, fin, 7, True)
    y, dw, dx = _three(x, w, gr, geo, mac)
    assert counted[0] == 3
    for got, terms in ((y, conv_terms(x, w, g)), (dw, grad_weight_terms(x, gr, g)),
                       (dx, grad_input_terms(gr, w, g))):
        for idx, (a, b) in terms.items():
            assert float(got[idx]) == float(oracle_dot(a, b, mac)), (idx, got[idx])


def test_lenet5_datapaths_take_the_direct_path() -> None:
    """fixed16 lowers to the float64-integer datapath, fw16bw16 to float32; a float16 operand
    with more than 12 significant bits, or a wider product range, does not qualify."""
    from fxemu.policy import PRESETS

    rng = np.random.default_rng(3)
    for pol, kind in (("fixed16", np.float64), ("fw16bw16", np.float32)):
        p = PRESETS[pol]
        mac = p.backward.conv_dw
        a = fx.quantize(rng.standard_normal(64), p.forward.input)
        lm, bits, key = lowering.lower_mac_call(mac, None, None)
        spans = (arith._span(a), arith._span(a))
        assert lowering.direct_path(mac, lm, spans, key, bits).dtype is kind
    # a bound below the saturation limit drops the overflow mode from fixed16's steps
    mac = PRESETS["fixed16"].backward.conv_dw
    lm, bits, key = lowering.lower_mac_call(mac, None, None)
    spans = (arith._span(fx.quantize(a, FIX16)),) * 2
    tags = [lowering.direct_path(mac, lm, spans, key, bits, bound).ops.tag
            for bound in (32767.0, 32768.0, np.inf)]
    assert [t[-2:] for t in tags] == ["_1", "_0", "_0"]
    mac = fx.Mac("float32")
    lm, bits, key = lowering.lower_mac_call(mac, None, None)
    wide = fx.quantize(rng.standard_normal(64), "bfloat16") * (1 + 2.0**-20)
    assert lowering.direct_path(mac, lm, (arith._span(wide),) * 2, key, bits) is None
    tiny = np.array([2.0**-80, 1.0])
    assert lowering.direct_path(mac, lm, (arith._span(tiny),) * 2, key, bits) is None


def test_direct_kernels_do_not_depend_on_thread_count() -> None:
    import numba

    geo = (64, 3, 20, 20, 8, 5, 5, 2, 2)  # arrays above PARALLEL_MIN: the parallel kernels
    runs = []
    n0 = numba.get_num_threads()
    try:
        for threads in (1, numba.config.NUMBA_NUM_THREADS):
            numba.set_num_threads(threads)
            out = []
            for fin, mac in (p.values for p in MACS[:2]):  # one generic source: 2 suffice
                x, w, gr = _data(geo, fin, 11, True)
                out += _three(x, w, gr, geo, mac)
            runs.append(out)
    finally:
        numba.set_num_threads(n0)
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a.view(np.uint64), b.view(np.uint64))


def test_float32_matmul_equals_the_double_path(monkeypatch) -> None:
    """``fx.matmul`` with an IEEE float32 accumulator on float16 operands runs plain float32
    multiply-adds (as fw16bw16's dense layers do); the bits are those of the TwoSum double
    path."""
    rng = np.random.default_rng(21)
    a = _edge(rng, (40, 300), "float16", False)
    b = _edge(rng, (300, 24), "float16", False)
    a[0, :] = 65504.0  # output (0, 0) sums 300 products 65504² = 2^32 − 2^21 + 2^8
    b[:, 0] = 65504.0
    mac = fx.Mac("float32")
    got = fx.matmul(a, b, mac)
    calls = []
    real = lowering.float32_exact
    monkeypatch.setattr(lowering, "float32_exact", lambda *args: calls.append(1) or False)
    # the path choice is cached per Mac and spans: decide afresh
    monkeypatch.setattr(lowering, "_float_mac_path", lowering._float_mac_path.__wrapped__)
    want = fx.matmul(a, b, mac)
    assert calls and real(mac, ORDER_SEQUENTIAL, arith._span(a), arith._span(b))
    np.testing.assert_array_equal(got.view(np.uint64), want.view(np.uint64))
