"""Fused native conv → ReLU → max pool kernels against the straightforward composition.

Exact (bit-for-bit) against a numpy composition that sums in the kernels' documented order;
within a tight tolerance against the fine-grained path of :class:`~fxemu.backends.base.Backend`
(conv and weight gradient by BLAS, whose float32 summation order is its own).
"""

from __future__ import annotations

import numpy as np
import pytest

from fxemu.arith import maxpool2d, maxpool2d_backward
from fxemu.backends import get_backend
from fxemu.backends.base import Backend
from fxemu.nn import model
from fxemu.policy import PRESETS

POLICY = {np.float32: "fw32bw32", np.float64: "float64"}
NET = model.founding()  # its conv (layer 0) and pool (layer 2) describe the fused block
CONV, POOL = NET.layers[0], NET.layers[2]


def _crp(be, x, w, b):
    return be.conv_relu_pool(x, w, b, CONV, POOL, be.policy)


def _crp_back(be, ctx, dh):
    return be.conv_relu_pool_backward(ctx, dh, be.policy)


def _arg(ctx) -> np.ndarray:
    """The window argmax (row-major slot 0..3) from the fused forward's flat positions."""
    pos = ctx[3].astype(np.int64).reshape(-1, 12, 13, 13)
    y, z = np.arange(13)[:, None], np.arange(13)[None, :]
    return (pos // 28 - 2 * y) * 2 + pos % 28 - 2 * z


def _inputs(n: int, dtype, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 1, 28, 28)) * (rng.random((n, 1, 28, 28)) < 0.6)  # MNIST-like zeros
    w = rng.standard_normal((12, 1, 3, 3)) * 0.5
    b = np.linspace(-0.2, 0.2, 12)
    dh = rng.standard_normal((n, 12, 13, 13)) * 1e-2
    return x.astype(dtype).astype(np.float64), w, b, dh


def _ref_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, dtype) -> np.ndarray:
    """Conv in dtype, taps summed in row-major order from the first product, bias last."""
    x, w, b = x.astype(dtype), w.astype(dtype), b.astype(dtype)
    z = None
    for t in range(9):
        di, dj = divmod(t, 3)
        term = w[None, :, 0, di, dj, None, None] * x[:, :, di:di + 26, dj:dj + 26]
        z = term if z is None else z + term
    return z + b[None, :, None, None]


def _ref_forward(x, w, b, dtype):
    z = _ref_conv(x, w, b, dtype)
    h, arg = maxpool2d(np.maximum(z, 0).astype(np.float64), 2)
    return z, h, arg


def _ref_backward(x, z, arg, dh, dtype):
    """Gradient of the conv weights/bias summed as the kernel documents: per sample and
    filter over the live pooled cells in order, then over the samples in order (cumsum is a
    strictly sequential sum; the dead cells add exact zeros)."""
    n = x.shape[0]
    da = maxpool2d_backward(dh.astype(dtype).astype(np.float64), arg, z.shape)
    dz = np.where(z > 0, da, 0.0).astype(dtype)  # (N, 12, 26, 26), the composition's
    a, b = np.divmod(arg.reshape(n, 12, 169), 2)
    yy, zz = np.divmod(np.arange(169), 13)
    pi, pj = 2 * yy + a, 2 * zz + b  # (N, 12, 169): each cell's argmax position
    ni, ci = np.arange(n)[:, None, None], np.arange(12)[None, :, None]
    g = dz[ni, ci, pi, pj]
    live = z[ni, ci, pi, pj] > 0
    xd = x.astype(dtype)[:, 0]
    lanes = []
    for t in range(9):
        di, dj = divmod(t, 3)
        lanes.append(np.where(live, g * xd[ni, pi + di, pj + dj], dtype(0)))
    lanes.append(np.where(live, g, dtype(0)))
    terms = np.stack(lanes, axis=-1)  # (N, 12, 169, 10)
    per_sample = np.cumsum(terms, axis=2, dtype=dtype)[:, :, -1]
    tot = np.cumsum(per_sample, axis=0, dtype=dtype)[-1]
    return tot[:, :9].reshape(12, 1, 3, 3), tot[:, 9]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_forward_and_backward_match_the_composition_exactly(dtype) -> None:
    x, w, b, dh = _inputs(12, dtype)
    be = get_backend("native", PRESETS[POLICY[dtype]])
    h, ctx = _crp(be, be.input(x), w, b)
    assert h.dtype == dtype and h.shape == (12, 12, 13, 13)
    z, h_ref, arg_ref = _ref_forward(x, w, b, dtype)
    np.testing.assert_array_equal(h.astype(np.float64), h_ref)
    arg = _arg(ctx)
    live = h_ref > 0  # where the pooled value is <= 0 the argmax carries no gradient
    assert live.mean() > 0.3
    np.testing.assert_array_equal(arg[live], arg_ref[live])
    dw, db = _crp_back(be, ctx, dh.astype(dtype))
    assert dw.dtype == dtype and db.dtype == dtype
    dw_ref, db_ref = _ref_backward(x, z, arg_ref, dh, dtype)
    np.testing.assert_array_equal(dw, dw_ref)
    np.testing.assert_array_equal(db, db_ref)


@pytest.mark.parametrize(("dtype", "tol"), [(np.float32, 2e-5), (np.float64, 1e-13)])
def test_fused_path_agrees_with_the_fine_grained_blas_path(dtype, tol) -> None:
    """Backend's default composition (BLAS conv, dense ReLU/pool/where, BLAS weight gradient)
    sums in another order, so agreement is to a few float32 (float64) roundings only: a
    9-term conv sum moves by <= ~9 ulp; the weight gradient sums ~10^4 terms of both signs,
    so it is compared relative to the sum of the terms' magnitudes."""
    x, w, b, dh = _inputs(16, dtype, seed=1)
    be = get_backend("native", PRESETS[POLICY[dtype]])
    xq = be.input(x)
    h, ctx = _crp(be, xq, w, b)
    h2, ctx2 = Backend.conv_relu_pool(be, xq, w, b, CONV, POOL, be.policy)
    np.testing.assert_allclose(h.astype(np.float64), h2, rtol=tol, atol=tol)
    dw, db = _crp_back(be, ctx, dh.astype(dtype))
    dw2, db2 = Backend.conv_relu_pool_backward(be, ctx2, dh.astype(dtype), be.policy)
    z = ctx2[2].astype(np.float64)  # the composition's conv output (the ReLU's context)
    arg = maxpool2d(np.maximum(z, 0.0), 2)[1]
    mag_w, mag_b = _ref_backward(np.abs(x), z, arg, np.abs(dh), np.float64)
    assert np.all(np.abs(dw.astype(np.float64) - dw2) <= tol * mag_w)
    assert np.all(np.abs(db.astype(np.float64) - db2) <= tol * mag_b)


def test_ties_nan_and_negative_windows_follow_maxpool2d() -> None:
    """All-equal windows pick slot 0; a NaN is the maximum (first NaN wins) and stays NaN
    through ReLU; all-negative windows pool to +0 and pass no gradient."""
    x = np.zeros((3, 1, 28, 28))
    x[1, 0, 20:, 19:] = 1.0
    x[1, 0, 3:9, 4:7] = 0.5
    x[2, 0, 5, 7] = np.nan
    w = np.ones((12, 1, 3, 3)) * np.where(np.arange(12) % 2, 1.0, -1.0)[:, None, None, None]
    b = np.where(np.arange(12) < 6, 0.25, -0.25)
    for dtype in (np.float32, np.float64):
        be = get_backend("native", PRESETS[POLICY[dtype]])
        h, ctx = _crp(be, be.input(x), w, b)
        z, h_ref, arg_ref = _ref_forward(x, w, b, dtype)
        assert np.isnan(h_ref).any() and (h_ref == 0).any() and (h_ref > 0).any()
        np.testing.assert_array_equal(h.astype(np.float64), h_ref)
        keep = ~(h_ref <= 0)
        np.testing.assert_array_equal(_arg(ctx)[keep], arg_ref[keep])
        # the backward pass on the finite images (dead cells add 0·x, zero for finite x)
        h, ctx = _crp(be, be.input(x[:2]), w, b)
        dh = np.ones((2, 12, 13, 13), dtype)
        dw, db = _crp_back(be, ctx, dh)
        dw_ref, db_ref = _ref_backward(x[:2], z[:2], arg_ref[:2], dh.astype(np.float64), dtype)
        assert np.count_nonzero(dw_ref) > 6
        np.testing.assert_array_equal(dw, dw_ref)
        np.testing.assert_array_equal(db, db_ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_kernels_do_not_depend_on_thread_count(dtype) -> None:
    import numba

    x, w, b, dh = _inputs(64, dtype, seed=2)
    be = get_backend("native", PRESETS[POLICY[dtype]])
    n0 = numba.get_num_threads()
    out = []
    try:
        for threads in (1, numba.config.NUMBA_NUM_THREADS):
            numba.set_num_threads(threads)
            h, ctx = _crp(be, be.input(x), w, b)
            out.append((h, ctx[2], *_crp_back(be, ctx, dh.astype(dtype))))
    finally:
        numba.set_num_threads(n0)
    for one, many in zip(*out, strict=True):
        np.testing.assert_array_equal(one.view(np.uint8), many.view(np.uint8))


@pytest.mark.parametrize("preset", [None, "active"])
def test_thread_team_waits_passively_and_restores_the_environment(preset) -> None:
    """fxemu starts Numba's team with OMP_WAIT_POLICY=PASSIVE only where the user left it
    unset, and leaves the environment as it found it."""
    import os
    import subprocess
    import sys

    code = ("import os, numpy as np\n"
            "from fxemu._kernels import _jit\n"
            "from fxemu.nn._kernels import nn_native as kn\n"
            "x = np.zeros((64, 28, 28), np.float32)\n"
            "h = np.empty((64, 12, 169), np.float32)\n"
            "pos = np.empty((64, 12, 169), np.uint16)\n"
            "w = np.ones((12, 9), np.float32)\n"
            "kn.conv_relu_pool_forward(x, w, w[:, 0], kn.CELL_BASE, h, pos)\n"
            "assert _jit._team_started and bool(h.all())\n"
            "print(os.environ.get('OMP_WAIT_POLICY'))\n")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset:
        env["OMP_WAIT_POLICY"] = preset
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300, check=True).stdout.split()
    assert out == [str(preset)]
