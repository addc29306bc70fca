"""The fused emulated conv → bias → ReLU → pool block (:mod:`fxemu.nn.conv_block`) against the
composition of :mod:`fxemu.arith` operations it replaces: bit for bit (pooled values, argmax,
weight and bias gradients), over fixed and float datapaths, saturating and wrapping
accumulators, product formats, roundings, −0 accumulators and non-finite sums; and through
the emulated backend, whose steps must not change when it takes the fused path."""

from __future__ import annotations

import numba
import numpy as np
import pytest

import fxemu.nn as nn
import fxemu.nn.model as model
from fxemu.arith import Mac, add, conv2d, conv2d_grad_weight, matmul, maxpool2d, maxpool2d_backward
from fxemu.backends.base import Backend
from fxemu.backends.emulated import EmulatedBackend
from fxemu.formats import Fixed, Float, parse
from fxemu.nn import conv_block
from fxemu.policy import PRESETS
from fxemu.quantize import quantize

FX16 = "ap_fixed<16,8,AP_RND_CONV,AP_SAT>"
FX32 = "ap_fixed<32,16,AP_RND_CONV,AP_SAT>"

#: (data format, conv Mac, activation format) covered by the fused kernels
FUSED = {
    "fixed16": (FX16, Mac(FX32), FX16),
    "fixed-mul": (FX16, Mac(FX32, mul="ap_fixed<18,6,AP_RND,AP_SAT>"),
                  "ap_fixed<12,4,AP_TRN,AP_SAT_SYM>"),
    "fixed-wrap": ("ap_fixed<10,4,AP_RND,AP_SAT>", Mac("ap_fixed<12,3,AP_TRN,AP_WRAP>"),
                   "ap_fixed<8,2,AP_RND_INF,AP_WRAP>"),
    "fixed-sat": ("ap_fixed<10,4,AP_RND,AP_SAT>", Mac("ap_fixed<14,3,AP_RND_MIN_INF,AP_SAT>"),
                  "ap_fixed<8,2,AP_RND_ZERO,AP_SAT_ZERO>"),
    "ac-fixed": ("ac_fixed<12,5,true,AC_RND,AC_SAT>", Mac("ac_fixed<20,8,true,AC_RND_CONV,AC_SAT>"),
                 "ac_fixed<10,4,true,AC_TRN_ZERO,AC_SAT>"),
    "half": ("float16", Mac("float32"), "float16"),
    "half-mul": ("float16", Mac("float32", mul="float16"), "bfloat16"),
    "bf16-acc": ("float8_e4m3fn", Mac("bfloat16"), "float8_e5m2"),
    "e5m2-rtz": ("float8_e5m2", Mac(Float(5, 6, rounding="rtz")), Float(5, 2, rounding="rup")),
    "ftz-acc": ("float16", Mac(Float(5, 10, subnormals=False)), "float16"),
    "float32": ("float32", Mac("float32"), "float32"),
}


def _fmt(f):
    return parse(f) if isinstance(f, str) else f


def _data(data: str, n: int = 6, seed: int = 0, scale: float = 1.0):
    """Images, weights, biases and a pooled gradient in the data format; images have signed
    values and exact zeros (so products of both signs and −0 occur)."""
    rng = np.random.default_rng(seed)
    fmt = _fmt(data)
    x = rng.standard_normal((n, 1, 28, 28)) * (rng.random((n, 1, 28, 28)) < 0.7)
    w = rng.standard_normal((12, 1, 3, 3)) * 0.6 * scale
    b = np.linspace(-0.4, 0.4, 12) * scale
    dh = rng.standard_normal((n, 12, 13, 13)) * 0.05
    return tuple(quantize(v, fmt) for v in (x, w, b, dh))


def _composed(x, w, b, mac: Mac, act):
    z = add(conv2d(x, w, mac), b[None, :, None, None], act)
    h, arg = maxpool2d(np.maximum(z, 0.0), 2)
    return h, arg


def _composed_grad(x, h, arg, g, mac: Mac):
    n, f = h.shape[:2]
    dz = maxpool2d_backward(np.where(h > 0, g, 0.0), arg, (n, f, 26, 26))
    dw = conv2d_grad_weight(x, dz, (3, 3), mac)
    dzm = np.ascontiguousarray(dz.transpose(1, 0, 2, 3).reshape(f, -1))
    db = matmul(dzm, np.ones((dzm.shape[1], 1)), mac)[:, 0]
    return dw, db


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64).view(np.uint64)


def _same(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_array_equal(_bits(a), _bits(b))


@pytest.mark.parametrize("case", sorted(FUSED))
@pytest.mark.parametrize("scale", [1.0, 40.0])
def test_fused_equals_composition(case: str, scale: float) -> None:
    data, mac, act = FUSED[case]
    act = _fmt(act)
    x, w, b, dh = _data(data, scale=scale)
    fused = conv_block.conv_relu_pool(x, w, b, mac, act)
    assert fused is not None, "the fused forward must cover this datapath"
    h, arg = _composed(x, w, b, mac, act)
    _same(fused[0], h)
    np.testing.assert_array_equal(fused[1], arg)
    grads = conv_block.conv_relu_pool_grad(x, h, arg, dh, mac)
    assert grads is not None, "the fused weight gradient must cover this datapath"
    dw, db = _composed_grad(x, h, arg, dh, mac)
    _same(grads[0], dw)
    _same(grads[1], db)


def test_saturating_accumulator_is_exercised() -> None:
    """Scale 40 drives the narrow saturating accumulators to their limits (the fused kernels
    must then follow the step-by-step saturation, not the exact sum)."""
    data, mac, _ = FUSED["fixed-sat"]
    x, w, _, _ = _data(data, scale=40.0)
    cols = np.lib.stride_tricks.sliding_window_view(x[:, 0], (3, 3), axis=(1, 2))
    exact = np.einsum("nijab,fab->nfij", cols, w[:, 0])
    assert np.abs(exact).max() > _fmt(mac.acc).max


def test_minus_zero_accumulator_redoes_the_filter() -> None:
    """A product that rounds to −0 in the accumulator, then +0 terms, then −0 terms: skipping
    the +0 terms would keep −0, the datapath gives +0 (−0 + +0 = +0, +0 + −0 = +0)."""
    mac = Mac("bfloat16")
    x = np.zeros((1, 1, 28, 28))
    x[0, 0, 0, 0] = 2.0**-130
    h = np.zeros((1, 12, 13, 13))
    arg = np.zeros((1, 12, 13, 13), np.int64)
    g = np.zeros((1, 12, 13, 13))
    h[0, :, 0, 0] = 1.0  # the window of output (0, 0) is live, with its argmax at (0, 0)
    g[0, :, 0, 0] = -(2.0**-20)
    h[0, :, 5, 5] = 1.0  # a later live window whose terms are −0 (x = 0, g < 0), after
    g[0, :, 5, 5] = -(2.0**-3)  # +0 terms from the dead positions in between
    alone = matmul(np.array([[g[0, 0, 0, 0]]]), np.array([[x[0, 0, 0, 0]]]), mac)[0, 0]
    assert alone == 0 and np.signbit(alone)  # the first term alone rounds to −0
    dw, db = _composed_grad(x, h, arg, g, mac)
    fused = conv_block.conv_relu_pool_grad(x, h, arg, g, mac)
    assert fused is not None
    _same(fused[0], dw)
    _same(fused[1], db)
    assert dw[0, 0, 0, 0] == 0 and not np.signbit(dw[0, 0, 0, 0])


def test_nonfinite_conv_sums_fall_back() -> None:
    """A conv sum that overflows to inf leaves the fused forward (None): the bias add of the
    composition handles inf/NaN."""
    mac, act = Mac("float16"), parse("float16")
    x = np.full((2, 1, 28, 28), 200.0)
    w = np.full((12, 1, 3, 3), 60000.0)
    b = np.zeros(12)
    assert conv_block.conv_relu_pool(x, w, b, mac, act) is None
    be = EmulatedBackend(_policy("float16", mac, act))
    net = model.founding()
    h, _ = be.conv_relu_pool(x, w, b, net.layers[0], net.layers[2], be.policy)
    _same(h, _composed(x, quantize(w, "float16"), b, mac, act)[0])
    assert np.isinf(h).all()


@pytest.mark.parametrize("mac, act, forward, grad", [
    (Mac(FX32), "ap_fixed<16,8,AP_TRN,AP_SAT>", True, True),  # the control
    (Mac(FX32, out=FX16), FX16, False, False),
    (Mac(FX32, order="chunk:4"), FX16, False, False),
    (Mac(FX32, order="pairwise"), FX16, False, False),
    (Mac(Fixed(32, 16, rounding="stochastic", overflow="sat")), FX16, False, False),
    (Mac(FX32), Fixed(16, 8, rounding="stochastic", overflow="sat"), False, True),
    (Mac("float32"), FX16, False, True),
    (Mac("float32"), Float(5, 10, subnormals=False), False, True),
    (Mac("float32"), Float(5, 10, rounding="stochastic"), False, True),
    (Mac("float64"), "float64", False, False),  # products of doubles are not exact in double
])
def test_outside_the_fused_datapaths(mac: Mac, act, forward: bool, grad: bool) -> None:
    """Macs with an out format or another order, stochastic rounding, mixed fixed/float, FTZ
    activations and products not exact in double are left to the composition (None); the
    gradient depends on the Mac only."""
    x, w, b, dh = _data("float64" if act == "float64" else FX16)
    assert (conv_block.conv_relu_pool(x, w, b, mac, _fmt(act)) is not None) == forward
    h, arg = _composed(x, w, b, Mac(FX32), parse(FX16))
    assert (conv_block.conv_relu_pool_grad(x, h, arg, dh, mac) is not None) == grad


def test_shapes_are_checked() -> None:
    x, w, b, dh = _data(FX16)
    mac, act = Mac(FX32), parse(FX16)
    with pytest.raises(ValueError, match="conv_relu_pool: needs w"):
        conv_block.conv_relu_pool(x, w[:, :, :2], b, mac, act)
    with pytest.raises(ValueError, match="conv_block: needs images"):
        conv_block.conv_relu_pool(x[:, :, :27], w, b, mac, act)
    h, arg = _composed(x, w, b, mac, act)
    with pytest.raises(ValueError, match="conv_relu_pool_grad: needs h, arg and g"):
        conv_block.conv_relu_pool_grad(x, h, arg, dh[:, :, :12], mac)
    with pytest.raises(ValueError, match=r"argmax must be in 0\.\.3"):
        conv_block.conv_relu_pool_grad(x, h, arg + 4, dh, mac)


@pytest.mark.parametrize("case", ["fixed16", "half"])
def test_thread_count_does_not_change_results(case: str) -> None:
    data, mac, act = FUSED[case]
    x, w, b, dh = _data(data, n=48)
    before = numba.get_num_threads()
    out = []
    try:
        for t in (1, before):
            numba.set_num_threads(t)
            h, arg = conv_block.conv_relu_pool(x, w, b, mac, _fmt(act))
            out.append((h, arg, *conv_block.conv_relu_pool_grad(x, h, arg, dh, mac)))
    finally:
        numba.set_num_threads(before)
    for a, c in zip(*out, strict=True):
        _same(a, c)


def _policy(data, mac: Mac, act):
    p = PRESETS["fixed16"].to_dict()
    for stage, roles in (("forward", ("input", "weight")), ("backward", ("weight", "grad")),
                         ("update", ("master",))):
        for r in roles:
            p[stage][r] = str(_fmt(data))
    p["forward"]["activation"] = str(_fmt(act))
    m = {"acc": str(mac.acc), "order": mac.order}
    for k in ("conv", "dense"):
        p["forward"][k] = m
    for k in ("dense_dw", "dense_dx", "conv_dw"):
        p["backward"][k] = m
    return type(PRESETS["fixed16"]).from_dict(p)


class _Composed(EmulatedBackend):
    """The emulated backend with the composition of the base class for the conv block."""

    conv_relu_pool = Backend.conv_relu_pool
    conv_relu_pool_backward = Backend.conv_relu_pool_backward


@pytest.mark.parametrize("preset", ["fixed16", "fixed16_sr", "fw16bw16", "fw32bw32"])
def test_training_steps_unchanged(preset: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three SGD steps with the fused block and with the composition: identical weights (the
    stochastic update of fixed16_sr also checks that both draw the same seeds)."""
    from fxemu.data import load

    d = load("embedded")
    taken = []
    for f in ("conv_relu_pool", "conv_relu_pool_grad"):
        real = getattr(conv_block, f)
        monkeypatch.setattr(conv_block, f, lambda *a, _r=real: taken.append(_r(*a)) or taken[-1])
    runs = []
    for cls in (EmulatedBackend, _Composed):
        be = cls(PRESETS[preset], seed=3)
        p = nn.Params(**{k: be.master(v) for k, v in nn.init_params(1).arrays().items()})
        for s in range(3):
            sl = slice(32 * s, 32 * (s + 1))
            p, _, _ = model.train_step(be, p, d.x_train[sl], d.y_train[sl], 0.05, s)
        runs.append(p)
    assert len(taken) == 6 and all(t is not None for t in taken)  # the fused path ran
    for name in nn.Params.NAMES:
        _same(getattr(runs[0], name), getattr(runs[1], name))


def test_float32_step_rounds_once() -> None:
    """The hardware float32 step (TwoSum, round-to-odd, conversion) against ``fx.add`` into
    float32: ties of both signs a hair above and below, double-rounding traps, subnormal and
    overflowing sums, cancellations to ±0."""
    from fxemu._kernels.mac_fast import float32_step

    rng = np.random.default_rng(5)
    acc = quantize(rng.standard_normal(4000) * 2.0 ** rng.integers(-140, 120, 4000), "float32")
    ulp = np.spacing(np.abs(acc).astype(np.float32)).astype(np.float64)
    p = np.concatenate([
        ulp * 0.5,  # exact ties
        ulp * 0.5 * (1 + 2.0**-40), ulp * 0.5 * (1 - 2.0**-40),  # a hair off a tie
        -ulp * 0.5 * (1 + 2.0**-52),  # double rounding would land on the tie
        rng.standard_normal(4000) * 2.0 ** rng.integers(-150, 120, 4000),
        -acc,  # exact cancellation: +0
    ])
    a = np.tile(acc, 6)
    extra = np.array([[-0.0, -0.0], [0.0, -0.0], [-0.0, 0.0], [3.4e38, 3.4e38],
                      [-3.4e38, -1e38], [2.0**-149, -(2.0**-151)], [-(2.0**-140), 2.0**-150]])
    a, p = np.concatenate([a, extra[:, 0]]), np.concatenate([p, extra[:, 1]])
    got = np.array([float32_step(u, v) for u, v in zip(a, p, strict=True)])
    _same(got, add(a, p, "float32"))


@pytest.mark.parametrize("case, scale, exact", [("fixed16", 1.0, True), ("fixed-sat", 40.0, False),
                                                ("fixed-mul", 1.0, False)])
def test_fixed_tiers(case: str, scale: float, exact: bool,
                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Where no partial sum can round or leave the accumulator's range the fixed kernels add
    plainly; a possible saturation or a product format keeps the step-by-step datapath (both
    equal the composition, above)."""
    from fxemu._kernels import mac_fast as kmf

    seen = []
    real = kmf.fixed_ops

    def spy(*args):
        seen.append(args)
        return real(*args)

    monkeypatch.setattr(kmf, "fixed_ops", spy)
    data, mac, act = FUSED[case]
    x, w, b, dh = _data(data, scale=scale)
    h, arg = conv_block.conv_relu_pool(x, w, b, mac, _fmt(act))
    conv_block.conv_relu_pool_grad(x, h, arg, dh, mac)
    conv_tiers = [a[5] for a in seen if len(a) == 6]  # the Macs' datapaths (fwd, bwd)
    assert conv_tiers == [exact, exact]
