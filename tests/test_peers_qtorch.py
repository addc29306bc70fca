"""QPyTorch (``qtorch``) quantizers against fxemu; behind the peers marker (FXEMU_PEERS=1):
importing qtorch builds its C++ extension with ninja and g++ (a minute, once).

* ``fixed_point_quantize``: nearest is ``ap_fixed``'s RND_CONV with SAT (``symmetric``:
  SAT_SYM), bit for bit; stochastic draws ``r = torch.rand_like(x)`` from torch's generator,
  so seeding torch gives its draws, which fxemu takes as 24 ``random_bits``.
* ``float_quantize`` nearest: ``Float(E, M, special="none", rounding="rna",
  overflow="sat")``; ``block_quantize`` nearest: one block of the tensor, ``Fixed(wl, 2,
  rnd, sat_sym)`` sign-magnitude elements with the E8M0 floor exponent.
* Their stochastic modes draw from a ``std::mt19937`` inside the extension, which cannot be
  seeded: the mean over many draws is compared with fxemu's (both unbiased).

Every disagreement the harness (benchmarks/peer_vectors.py) finds must be one of its
classified semantic differences (docs/peer_vectors.md), never a suspect.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest

import fxemu as fx

pytestmark = [pytest.mark.peers,
              pytest.mark.skipif(not os.environ.get("FXEMU_PEERS"),
                                 reason="set FXEMU_PEERS=1")]


@pytest.fixture(scope="module")
def qt():
    torch = pytest.importorskip("torch")
    quant = pytest.importorskip("qtorch.quant")
    return torch, quant


def _q(torch, fn, x: np.ndarray, *args, **kw) -> np.ndarray:
    return fn(torch.tensor(x, dtype=torch.float32), *args, **kw).numpy().astype(np.float64)


def _grid(wl: int, fl: int) -> np.ndarray:
    v = np.arange(-(2 ** (wl - 1)) - 4, 2 ** (wl - 1) + 4) * 2.0**-fl
    return np.concatenate([v, v + 2.0 ** (-fl - 1), v + 2.0 ** (-fl - 2), [1e30, -1e30]])


@pytest.mark.parametrize(("wl", "fl"), [(4, 2), (8, 4), (8, 8), (16, 10), (10, -2)])
@pytest.mark.parametrize("sym", [False, True])
def test_fixed_nearest_is_rnd_conv_saturating(qt, wl: int, fl: int, sym: bool) -> None:
    torch, quant = qt
    x = _grid(wl, fl)
    want = _q(torch, quant.fixed_point_quantize, x, wl, fl, clamp=True, symmetric=sym,
              rounding="nearest")
    f = fx.Fixed(wl, wl - fl, rounding="rnd_conv", overflow="sat_sym" if sym else "sat")
    np.testing.assert_array_equal(fx.quantize(x, f), want + 0.0)  # + 0.0: -0 is 0 here


@pytest.mark.parametrize(("wl", "fl"), [(8, 4), (12, 6)])
def test_fixed_stochastic_with_torchs_draws(qt, wl: int, fl: int) -> None:
    torch, quant = qt
    rng = np.random.default_rng(wl)
    x = (rng.integers(-(2**30), 2**30, 4000) * 2.0 ** (wl - fl - 31)).astype(np.float32)
    x = x.astype(np.float64)
    torch.manual_seed(5)
    r = torch.rand_like(torch.tensor(x, dtype=torch.float32)).numpy().astype(np.float64)
    torch.manual_seed(5)
    want = _q(torch, quant.fixed_point_quantize, x, wl, fl, rounding="stochastic")
    f = fx.Fixed(wl, wl - fl, rounding="stochastic", overflow="sat")
    got = fx.quantize(x, f, random_bits=(r * 2.0**24).astype(np.uint64), sr_bits=24)
    # fxemu: floor(a·2^F + r), exactly (float64 holds the sum here), then saturation
    a = x * 2.0**fl
    lo, hi = -(2.0 ** (wl - 1)), 2.0 ** (wl - 1) - 1
    np.testing.assert_array_equal(got, np.clip(np.floor(a + r), lo, hi) * 2.0**-fl)
    # QPyTorch: nearbyint(float32(a·2^F + r) - 0.5), the sum rounded to float32 first
    s32 = (a.astype(np.float32) + r.astype(np.float32)) - np.float32(0.5)
    model = np.clip(np.rint(s32).astype(np.float64), lo, hi) * 2.0**-fl
    np.testing.assert_array_equal(want + 0.0, model + 0.0)
    assert np.mean(got == want) > 0.97  # they differ only where float32 rounded the sum


def _mean_of_draws(fn, x: np.ndarray, n: int) -> np.ndarray:
    return np.mean([fn(x, i) for i in range(n)], axis=0)


def test_float_and_block_stochastic_are_unbiased_like_fxemu(qt) -> None:
    torch, quant = qt
    rng = np.random.default_rng(3)
    x = rng.uniform(0.3, 3.0, 64).astype(np.float32).astype(np.float64)
    n = 2000
    f = fx.Float(4, 3, special="none", rounding="stochastic", overflow="sat")
    step = 2.0 ** (np.floor(np.log2(x)) - 3)
    peer = _mean_of_draws(lambda v, _: _q(torch, quant.float_quantize, v, 4, 3,
                                          rounding="stochastic"), x, n)
    ours = _mean_of_draws(lambda v, i: fx.quantize(v, f, seed=i), x, n)
    tol = 6 * 0.5 * step / np.sqrt(n)  # six standard deviations of a mean of n draws
    assert np.all(np.abs(peer - x) < tol) and np.all(np.abs(ours - x) < tol)
    b = fx.Block(fx.Fixed(6, 2, rounding="stochastic", overflow="sat_sym"), x.size,
                 sign_magnitude=True)
    peer = _mean_of_draws(lambda v, _: _q(torch, quant.block_quantize, v, 6, -1,
                                          rounding="stochastic"), x, n)
    ours = _mean_of_draws(lambda v, i: fx.quantize(v, b, seed=i), x, n)
    tol = 6 * 0.5 * 2.0 ** (np.floor(np.log2(x.max())) - 4) / np.sqrt(n)
    keep = x < x.max() * 0.95  # away from the clipped top of the block
    assert np.all(np.abs(peer - x)[keep] < tol) and np.all(np.abs(ours - x)[keep] < tol)


def test_harness_finds_only_classified_differences() -> None:
    pytest.importorskip("qtorch.quant")
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "peer_vectors.py"
    spec = importlib.util.spec_from_file_location("peer_vectors", path)
    pv = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = pv  # dataclasses look their module up here
    try:
        spec.loader.exec_module(pv)
        t = pv.Tally()
        pv._qtorch(t, np.random.default_rng(1))
    finally:
        sys.modules.pop(spec.name, None)
    assert t.agree > 0.99 * t.expressible
    assert set(t.why) <= {*pv._Q_ZERO.values(), *pv._Q_F32.values()}, t.why
