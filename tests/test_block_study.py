"""MX training: the presets (block operands per product, float32 elsewhere), policy tables with
block Macs, the block-in-a-tensor-role refusal, and a tiny real `mx` study with its table."""

from __future__ import annotations

import numpy as np
import pytest
from fxemu.analysis.studies import MX_POLICIES, _mx_extras, mx_spec, policy_summary
from fxemu.analysis.sweep import build_runs, run_sweep

import fxemu as fx
from fxemu.policy import PRESETS, Policy, load_policy


def test_mx_presets_round_trip_and_roles() -> None:
    for name in ("mxfp8", "mxfp6", "mxfp4_sr"):
        p = PRESETS[name]
        assert Policy.from_dict(p.to_dict()) == p
        for mac in (p.forward.conv, p.forward.dense):
            assert mac.block and mac.acc == fx.parse("float32")
        for mac in (p.backward.dense_dw, p.backward.dense_dx, p.backward.conv_dw):
            assert mac.block
        assert p.update.master == p.forward.weight == fx.parse("float32")
    assert str(PRESETS["mxfp8"].forward.dense.a) == "mxfp8_e4m3"
    assert str(PRESETS["mxfp8"].backward.conv_dw.b) == "mxfp8_e5m2"
    sr = PRESETS["mxfp4_sr"].backward.dense_dx.a.element
    assert sr.rounding is fx.FloatRounding.STOCHASTIC


def test_policy_tables_with_block_macs_and_refusal() -> None:
    d = PRESETS["fw32bw32"].to_dict()
    d["forward"]["dense"] = {"acc": "float32", "a": "mxfp6_e2m3", "b": "nvfp4"}
    with pytest.raises(ValueError, match="block sizes must be equal"):
        load_policy(d)
    d["forward"]["dense"]["b"] = "mxfp6_e3m2"
    p = load_policy(d)
    assert str(p.forward.dense.b) == "mxfp6_e3m2"
    d["forward"]["weight"] = "mxfp8_e4m3"
    with pytest.raises(ValueError, match=r"policy\.forward\.weight: a block format is blocked "
                       "along the reduction axis") as e:
        load_policy(d)
    assert "\n" not in str(e.value)


def test_block_axis_is_each_products_reduction_axis() -> None:
    """The emulated backend's linear layer under mxfp8: h (N, 2028) blocked along features,
    W^T (2028, 10) along features; dW = g^T h blocked along the batch."""
    from fxemu.backends import get_backend

    rng = np.random.default_rng(0)
    pol = PRESETS["mxfp8"]
    be = get_backend("emulated", pol, 0)
    h = rng.standard_normal((5, 2028))
    w = rng.standard_normal((10, 2028))
    b = np.zeros(10)
    z, ctx = be.linear(h, w, b, be.policy)
    e4 = fx.parse("mxfp8_e4m3")
    # 64 block terms accumulated in float32 (bit-exactness: tests/test_block_mac.py); operands
    # blocked along any other axis would give different elements
    want = fx.quantize(h, e4) @ fx.quantize(w, e4).T
    assert np.allclose(z, want, rtol=1e-5)
    assert not np.allclose(z, fx.quantize(h, e4.replace(axis=0)) @ fx.quantize(w, e4).T,
                           rtol=1e-5)
    g = rng.standard_normal((5, 10))
    _, dw, _ = be.linear_backward(ctx, g, be.policy, False)
    e5 = fx.parse("mxfp8_e5m2").replace(axis=0)
    assert np.array_equal(dw, fx.quantize(g, e5).T @ fx.quantize(h, e5))  # one block: exact


def test_tiny_mx_study(tmp_path) -> None:
    runs = build_runs(mx_spec())
    assert len(runs) == 15 and [r.name for r in runs][6] == "mxfp8_seed0"
    spec = mx_spec(seeds=[0], train={"n_train": 50, "n_test": 50, "epochs": 1,
                                     "batch_size": 50})
    spec["policies"] = ["fw32bw32", "mxfp8"]
    res = run_sweep(spec, tmp_path / "runs", workers=0, progress=False)
    assert res.ok
    s = policy_summary(tmp_path / "runs")
    assert list(s["policy"]) == ["fw32bw32", "mxfp8"]
    assert ((s["mean"] > 0) & (s["mean"] <= 1)).all()
    md, _ = _mx_extras(tmp_path / "runs", tmp_path / "report")
    text = md.read_text()
    assert "`mxfp8_e4m3` forward, `mxfp8_e5m2` backward" in text
    assert set(MX_POLICIES) >= set(s["policy"])


def test_hls_datapath_refuses_block_macs() -> None:
    from fxemu.hw.codegen import policy_header

    with pytest.raises(ValueError, match=r"forward\.conv: block-format operands are not in the "
                       "HLS datapath"):
        policy_header(PRESETS["mxfp8"])
