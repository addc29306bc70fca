"""Native (float32 / float64) layer operations against torch.nn.functional, and their thread
independence."""

from __future__ import annotations

import numpy as np
import pytest

import fxemu as fx
from fxemu.nn import native_ops as no

torch = pytest.importorskip("torch")
F = torch.nn.functional

#: (N, C, H, W, F, Kh, Kw, stride, padding), LeNet-5's two convs among them
CONVS = [(4, 1, 28, 28, 6, 5, 5, 1, 2), (4, 6, 14, 14, 16, 5, 5, 1, 0),
         (3, 3, 9, 8, 4, 3, 2, (2, 1), (1, 0)), (2, 2, 10, 11, 3, 4, 5, 1, "same"),
         (2, 2, 9, 9, 2, 2, 2, 3, 1)]
POOLS = [(2, None, 0), (3, 2, 1), (3, 1, 1), ((2, 3), (1, 2), (1, 1))]
TOL = {np.float64: 1e-10, np.float32: 1e-5}


def _close(a: np.ndarray, t, dtype) -> None:
    want = t.detach().numpy()
    assert a.dtype == dtype and a.shape == want.shape
    scale = max(np.abs(want).max(), 1e-300)
    assert np.abs(a - want).max() <= TOL[dtype] * scale, np.abs(a - want).max() / scale


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: d.__name__)
@pytest.mark.parametrize("case", CONVS, ids=str)
def test_conv_matches_torch(case, dtype) -> None:
    n, c, h, w, f, kh, kw, stride, padding = case
    if dtype is np.float64:
        n = 1  # below the parallel size: the float64 kernels compile serial only (one source)
    rng = np.random.default_rng(1)
    x, wt = rng.standard_normal((n, c, h, w)), rng.standard_normal((f, c, kh, kw))
    b = rng.standard_normal(f)
    xt, wtt, bt = (torch.tensor(a.astype(dtype), requires_grad=True) for a in (x, wt, b))
    t, bo, left, r = fx.conv_geometry(h, w, kh, kw, stride, padding).padding
    yt = F.conv2d(F.pad(xt, (left, r, t, bo)), wtt, bt, stride=stride)
    g = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(g.astype(dtype)))
    _close(no.conv2d(x, wt, b, stride, padding, dtype), yt, dtype)
    dx, dw, db = no.conv2d_backward(x, wt, g, stride, padding, dtype, True)
    _close(dx, xt.grad, dtype)
    _close(dw, wtt.grad, dtype)
    _close(db, bt.grad, dtype)
    none, dw2, _ = no.conv2d_backward(x, wt, g, stride, padding, dtype, False)
    assert none is None and np.array_equal(dw, dw2)
    y, cols = no.conv2d(x, wt, b, stride, padding, dtype, keep_cols=True)
    assert np.array_equal(y, no.conv2d(x, wt, b, stride, padding, dtype))
    for got, want in zip(no.conv2d_backward(x, wt, g, stride, padding, dtype, True, cols),
                         (dx, dw, db), strict=True):
        assert np.array_equal(got, want)
    assert no.conv2d(x, wt, None, stride, padding, dtype).shape == tuple(yt.shape)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: d.__name__)
@pytest.mark.parametrize(("size", "stride", "padding"), POOLS, ids=str)
def test_pools_match_torch(size, stride, padding, dtype) -> None:
    rng = np.random.default_rng(2)
    x = np.round(rng.standard_normal((2, 3, 9, 8)) * 2) / 2  # ties: first maximum, as torch
    xt = torch.tensor(x.astype(dtype), requires_grad=True)
    ot = F.max_pool2d(xt, size, stride=stride, padding=padding)
    g = rng.standard_normal(tuple(ot.shape))
    ot.backward(torch.tensor(g.astype(dtype)))
    out, arg = no.maxpool2d(x, size, stride, padding, dtype)
    _close(out, ot, dtype)
    _close(no.maxpool2d_backward(g, arg, x.shape, size, stride, padding, dtype), xt.grad, dtype)
    xt = torch.tensor(x.astype(dtype), requires_grad=True)
    ot = F.avg_pool2d(xt, size, stride=stride, padding=padding)
    ot.backward(torch.tensor(g.astype(dtype)))
    _close(no.avgpool2d(x, size, stride, padding, dtype), ot, dtype)
    _close(no.avgpool2d_backward(g, x.shape, size, stride, padding, dtype), xt.grad, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: d.__name__)
def test_linear_matches_torch(dtype) -> None:
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((5, 7)), rng.standard_normal((4, 7)), rng.standard_normal(4)
    xt, wt, bt = (torch.tensor(a.astype(dtype), requires_grad=True) for a in (x, w, b))
    yt = F.linear(xt, wt, bt)
    g = rng.standard_normal((5, 4))
    yt.backward(torch.tensor(g.astype(dtype)))
    _close(no.linear(x, w, b, dtype), yt, dtype)
    dx, dw, db = no.linear_backward(x, w, g, dtype, True)
    for a, t in ((dx, xt.grad), (dw, wt.grad), (db, bt.grad)):
        _close(a, t, dtype)


def test_native_ops_do_not_depend_on_thread_count() -> None:
    import numba

    rng = np.random.default_rng(4)
    x = rng.standard_normal((64, 6, 28, 28)).astype(np.float32)  # above the parallel size
    w = rng.standard_normal((16, 6, 5, 5)).astype(np.float32)

    def run():
        y = no.conv2d(x, w, None, 1, 2, np.float32)
        dx, dw, db = no.conv2d_backward(x, w, y, 1, 2, np.float32, True)
        m, arg = no.maxpool2d(x, 3, 1, 1, np.float32)
        return [y, dx, dw, db, m, arg, no.maxpool2d_backward(m, arg, x.shape, 3, 1, 1,
                                                              np.float32),
                no.avgpool2d(x, 3, 2, 1, np.float32),
                no.avgpool2d_backward(m, x.shape, 3, 1, 1, np.float32)]

    n0 = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = run()
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = run()
    finally:
        numba.set_num_threads(n0)
    for a, b in zip(one, many, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("call", "match"), [
    (lambda: no.conv2d(np.ones((1, 2, 5, 5)), np.ones((3, 1, 3, 3)), None, 1, 0, np.float32),
     "equal C"),
    (lambda: no.conv2d(np.ones((1, 1, 5, 5)), np.ones((1, 1, 3, 3)), None, 1, 0, np.float16),
     "dtype: must be float32 or float64"),
    (lambda: no.conv2d_backward(np.ones((1, 1, 5, 5)), np.ones((1, 1, 3, 3)),
                                np.ones((1, 1, 2, 2)), 1, 0, np.float32), "conv output's shape"),
    (lambda: no.conv2d_backward(np.ones((1, 1, 5, 5)), np.ones((1, 1, 3, 3)),
                                np.ones((1, 1, 3, 3)), 1, 0, np.float32, True,
                                [np.ones((9, 8), np.float32)]), "patches conv2d"),
    (lambda: no.maxpool2d(np.ones((1, 1, 5, 5)), 2, None, 2, np.float32),
     "at most half the pool window"),
    (lambda: no.linear(np.ones((2, 3)), np.ones((4, 2)), None, np.float64), r"x \(N, I\)"),
], ids=lambda v: "" if callable(v) else v)
def test_errors(call, match) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_bench_layers_quick_run(capsys) -> None:
    """benchmarks/bench_layers.py runs end to end on tiny inputs (no timing claims)."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_layers.py"
    spec = importlib.util.spec_from_file_location("bench_layers", path)
    bench = importlib.util.module_from_spec(spec)
    saved = list(sys.path)
    try:
        spec.loader.exec_module(bench)
        assert bench.main(["--quick", "--threads", "1"]) == 0
    finally:
        sys.path[:] = saved
    out = capsys.readouterr().out
    assert "LeNet-5 step" in out and "conv2 fwd+backward" in out


def test_bad_argmax_is_refused_not_written() -> None:
    """A forged argmax gets the one-line error of fxemu.arith (no out-of-bounds write)."""
    g = np.ones((1, 1, 2, 2))
    with pytest.raises(ValueError, match=r"maxpool2d_backward: argmax must be in 0\.\.3"):
        no.maxpool2d_backward(g, np.full((1, 1, 2, 2), 4), (1, 1, 4, 4), 2, None, 0, np.float32)
    with pytest.raises(ValueError, match="argmax names a padded cell"):
        no.maxpool2d_backward(g, np.zeros((1, 1, 2, 2), int), (1, 1, 3, 3), 2, None, 1,
                              np.float32)


def _naive_maxpool(x: np.ndarray, k: int, s: int) -> tuple[np.ndarray, np.ndarray]:
    """The first NaN of each window, else its first maximum (row-major), by numpy."""
    n, c, h, w = x.shape
    ho, wo = (h - k) // s + 1, (w - k) // s + 1
    out, arg = np.empty((n, c, ho, wo), x.dtype), np.empty((n, c, ho, wo), np.int64)
    for i in range(ho):
        for j in range(wo):
            win = x[:, :, i * s:i * s + k, j * s:j * s + k].reshape(n, c, -1)
            a = np.where(np.isnan(win).any(-1), np.isnan(win).argmax(-1), win.argmax(-1))
            arg[:, :, i, j] = a
            out[:, :, i, j] = np.take_along_axis(win, a[..., None], -1)[..., 0]
    return out, arg


@pytest.mark.parametrize(("k", "s"), [(2, 2), (3, 2), (2, 1)])
def test_maxpool_window_walk_nan_and_ties(k, s) -> None:
    """The shared window walk (fxemu._kernels.pool.window_max, with its unrolled 2×2 call):
    the first NaN wins, else the first maximum, at 1 and N threads."""
    import numba

    rng = np.random.default_rng(5)
    x = np.round(rng.standard_normal((64, 9, 12, 12)) * 2).astype(np.float32)  # many ties
    x[rng.random(x.shape) < 0.05] = np.nan
    x[rng.random(x.shape) < 0.05] = -np.inf
    want, warg = _naive_maxpool(x, k, s)
    n0 = numba.get_num_threads()
    try:
        for t in (1, numba.config.NUMBA_NUM_THREADS):
            numba.set_num_threads(t)
            out, arg = no.maxpool2d(x, k, s, 0, np.float32)
            np.testing.assert_array_equal(arg, warg)
            np.testing.assert_array_equal(out, want)  # NaNs in the same places
    finally:
        numba.set_num_threads(n0)


def test_native_relu_backward_kernel() -> None:
    """The native backend's ReLU gradient equals the interface's np.where rule (NaN and ±0
    inputs pass nothing; a −0 gradient where x > 0 stays −0)."""
    from fxemu.backends import get_backend
    from fxemu.backends.base import Backend
    from fxemu.policy import PRESETS

    be = get_backend("native", PRESETS["fw32bw32"], 0)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((64, 6, 28, 28)).astype(np.float32)
    x.flat[:4] = [np.nan, 0.0, -0.0, 1.0]
    g = rng.standard_normal(x.shape).astype(np.float32)
    g.flat[3] = -0.0
    got = be.relu_backward(x, g)
    want = Backend.relu_backward(be, x, g)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
