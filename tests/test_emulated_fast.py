"""The emulated backend's cheaper forms give the same bits as the forms they replace.

* bias gradients are ``ones (1, K) @ m`` instead of ``m.T @ ones (K, 1)`` (the same products
  reduced in the same order) for Macs that treat both operands alike;
* seeds are derived only for calls that round stochastically (the call numbers, and so every
  stochastic rounding, stay those of a backend deriving a seed for every call);
* ReLU's backward is one kernel pass; max pooling's backward checks only the window indices
  where unpadded windows lie inside the input.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import fxemu as fx
from fxemu.backends import get_backend
from fxemu.backends.emulated import EmulatedBackend
from fxemu.nn import SGD, load_model
from fxemu.policy import PRESETS

MACS = [fx.Mac("float32"), fx.Mac(fx.Fixed(32, 16, rounding="rnd_conv", overflow="sat")),
        fx.Mac("float16", order="pairwise"), fx.Mac("bfloat16", order="chunk:3"),
        fx.Mac("float16", order="exact"), fx.Mac("float16", mul="float8_e4m3fn"),
        fx.Mac(fx.Float(5, 10, rounding="stochastic")),
        fx.Mac(fx.Fixed(16, 6, rounding="stochastic", overflow="wrap"))]


@pytest.mark.parametrize("mac", MACS, ids=str)
def test_bias_gradient_is_the_row_sum_form(mac: fx.Mac) -> None:
    rng = np.random.default_rng(3)
    m = fx.quantize(rng.standard_normal((50, 7)) * 0.3, "float16")
    be = get_backend("emulated", PRESETS["fw16bw16"], 5)
    be.begin_step(2)
    got = be._colsum(m, mac)
    be.begin_step(2)
    want = fx.matmul(np.ascontiguousarray(m.T), np.ones((50, 1)), mac,
                     seed=EmulatedBackend._key(be, mac))[:, 0]
    np.testing.assert_array_equal(got.view(np.uint64), want.view(np.uint64))


class _EveryKey(EmulatedBackend):
    """A backend deriving a seed for every call (as before seeds were derived lazily)."""

    def _key(self, *uses: object) -> int:
        self._calls += 1
        ss = np.random.SeedSequence([self.seed, self._step + 2, self._calls])
        return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


_SMALL = [{"type": "conv2d", "out_channels": 3, "kernel_size": 3, "padding": 1},
          {"type": "relu"}, {"type": "maxpool2d", "size": 2}, {"type": "flatten"},
          {"type": "linear", "out_features": 4}]


@pytest.mark.parametrize("policy", ["fixed16_sr", "stochastic_fw16"])
def test_lazy_seeds_keep_every_stochastic_rounding(policy: str) -> None:
    if policy == "fixed16_sr":  # a stochastic master format
        pol = PRESETS["fixed16_sr"]
    else:  # stochastic activations, Macs and gradients beside deterministic ones
        base = PRESETS["fw16bw16"]
        sr = fx.Float(5, 10, rounding="stochastic")
        pol = replace(base, forward=replace(base.forward, activation=sr,
                                            dense=fx.Mac(fx.Float(8, 23, rounding="stochastic"))),
                      backward=replace(base.backward, grad=sr))
    model = load_model(_SMALL).build((1, 8, 8), 4)
    rng = np.random.default_rng(0)
    x = rng.random((6, 1, 8, 8))
    y = rng.integers(0, 4, 6)
    runs = []
    for cls in (EmulatedBackend, _EveryKey):
        be = cls(pol, 7)
        p = {k: be.master(v) for k, v in model.init_params(0).items()}
        opt = SGD(lr=0.05, momentum=0.5)
        for s in range(3):
            p, _, _ = model.train_step(be, p, x, y, opt, s)
        runs.append(p)
    for k in runs[0]:
        np.testing.assert_array_equal(runs[0][k].view(np.uint64), runs[1][k].view(np.uint64),
                                      err_msg=k)


def test_relu_backward_is_the_selection() -> None:
    be = get_backend("emulated", PRESETS["fw16bw16"], 0)
    x = np.array([[1.0, -1.0, 0.0, -0.0, np.nan, np.inf, 2.0**-30]])
    g = np.array([[-0.0, 2.0, 3.0, 4.0, 5.0, 6.0, -7.0]])
    got = be.relu_backward(x, g)
    want = np.where(x > 0, g, 0.0)
    np.testing.assert_array_equal(got.view(np.uint64), want.view(np.uint64))
    with pytest.raises(ValueError, match=r"^relu_backward: dh must have the input's shape"):
        be.relu_backward(x, g[:, :3])


def test_maxpool_backward_still_refuses_bad_indices() -> None:
    g = np.ones((1, 1, 2, 2))
    for bad in (4, -1):
        arg = np.zeros((1, 1, 2, 2), np.int64)
        arg[0, 0, 1, 1] = bad
        with pytest.raises(ValueError, match=r"^maxpool2d_backward: argmax must be in 0\.\.3"):
            fx.maxpool2d_backward(g, arg, (1, 1, 4, 4), 2)
    arg = np.zeros((1, 1, 2, 2), np.int64)  # padded: index 0 of the first window is padding
    with pytest.raises(ValueError, match="names a padded cell"):
        fx.maxpool2d_backward(g, arg, (1, 1, 3, 3), 2, padding=1)
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6))
    h, arg = fx.maxpool2d(x, 2)
    dx = fx.maxpool2d_backward(h, arg, x.shape, 2)
    assert np.array_equal(dx != 0, x == np.repeat(np.repeat(h, 2, 2), 2, 3))


def test_lenet5_step_unchanged_by_the_cheaper_forms() -> None:
    """One LeNet-5 step of the backend equals one of a backend deriving every seed and
    using the old bias-gradient form (fw16bw16)."""

    class _Old(_EveryKey):
        def _colsum(self, m, mac):
            mt = np.ascontiguousarray(m.T)
            return fx.matmul(mt, np.ones((mt.shape[1], 1)), mac, seed=self._key(mac))[:, 0]

        def relu_backward(self, ctx, dh):
            return np.where(ctx > 0, dh, 0.0)

    model = load_model("lenet5").build((1, 28, 28), 10)
    rng = np.random.default_rng(1)
    x = rng.random((4, 1, 28, 28))
    y = rng.integers(0, 10, 4)
    out = []
    for cls in (EmulatedBackend, _Old):
        be = cls(PRESETS["fw16bw16"], 0)
        p = {k: be.master(v) for k, v in model.init_params(0).items()}
        p, _, _ = model.train_step(be, p, x, y, SGD(lr=0.01), 0)
        out.append(p)
    for k in out[0]:
        np.testing.assert_array_equal(out[0][k].view(np.uint64), out[1][k].view(np.uint64),
                                      err_msg=k)


@pytest.mark.parametrize("overflow", ["sat", "wrap", "sat_sym"])
def test_fixed_blas_bounds_equal_the_engine(overflow: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The BLAS tier's bounds (the cheaper of two cheap ones, then the tight |A|@|B|) take
    BLAS only where no partial sum leaves the accumulator: the results equal the exact
    engine's, for ones @ m (the bias-gradient form), sums near the saturation limit and sums
    beyond it."""
    from fxemu import arith, lowering

    acc = fx.Fixed(16, 8, rounding="rnd_conv", overflow=overflow)
    mac = fx.Mac(acc)
    rng = np.random.default_rng(4)
    m = fx.quantize(rng.standard_normal((300, 5)), fx.Fixed(12, 6))
    big = np.full((300, 2), 0.5)  # partial sums reach 150 > 127.99: saturate or wrap
    mixed = np.concatenate([np.full((150, 1), 0.85), np.full((150, 1), -0.85)])  # 127.5 peak
    cases = [(np.ones((1, 300)), m), (np.ones((1, 300)), big), (np.ones((1, 300)), mixed),
             (m.T.copy(), np.ones((300, 1))), (np.ones((1, 300)), mixed[::-1].copy())]
    got = [fx.matmul(a, b, mac) for a, b in cases]
    monkeypatch.setattr(lowering, "mac_path", lambda *a, **k: lowering.MacPath("exact"))
    for (a, b), g in zip(cases, got, strict=True):
        want = arith.matmul(a, b, mac)
        np.testing.assert_array_equal(g.view(np.uint64), want.view(np.uint64))
