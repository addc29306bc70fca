"""The cycle model's arithmetic: trip counts, initiation intervals and totals, exactly."""

from __future__ import annotations

import math

import pytest
from click.testing import CliRunner
from fxemu.hw.tools import estimate as est

from fxemu.arith import Mac
from fxemu.cli import cli
from fxemu.formats import Fixed, Float
from fxemu.policy import load_policy


def _float_policy(order: str, acc: str = "float32") -> object:
    mac = {"acc": acc, "order": order}
    f = "float32"
    return load_policy({"name": f"f32-{order}", "forward": {
        "input": f, "weight": f, "activation": f, "conv": mac, "dense": mac},
        "backward": {"weight": f, "grad": f, "dense_dw": mac, "dense_dx": mac, "conv_dw": mac},
        "update": {"master": f}})


def _by_name(policy, n):
    return {lp.name: lp for lp in est.loops(policy, n)}


@pytest.mark.parametrize("n", [1, 7, 128, 256])
def test_trip_counts(n):
    lp = _by_name(load_policy("fixed16"), n)
    assert lp["CONV / CONV_K"].iterations == n * 12 * 26 * 26 * 9  # every conv product
    assert lp["DENSE / DENSE_K"].iterations == n * 10 * 2028
    assert lp["DENSE_DX"].iterations == n * 2028 * 10
    assert lp["DENSE_DW + update"].iterations == 2028 * 10 * n
    assert lp["DENSE_DB + update"].iterations == 10 * n
    assert lp["CONV_DW_Z"].iterations == n * 8112  # 9 + 1 products each (unrolled)
    assert lp["READ_X"].iterations == n * 784
    assert lp["load dense_w"].iterations == 20280
    assert lp["conv update"].entries == 108 + 12
    reads = sum(lp[k].iterations for k in ("CONV_DW: load x", "CONV_DW: load z1",
                                           "CONV_DW: load dh"))
    assert reads == n * (784 + 8112 + 2028)  # the cache words backward reads per sample
    assert lp["DENSE_DW: load h"].iterations == 2028 * n


def test_initiation_intervals():
    f32 = Float(8, 23)
    assert est.reduction(Mac(Fixed(32, 16)), 2028) == (1, 1)
    assert est.reduction(Mac(f32), 2028) == (4, 4)  # sequential: II = add latency
    assert est.reduction(Mac(Float(11, 52)), 9) == (7, 7)
    assert est.reduction(Mac(Float(5, 10)), 9) == (3, 3)
    assert est.reduction(Mac(f32, order="pairwise"), 9) == (1, 4 * 4)  # ceil(log2 9) levels
    assert est.reduction(Mac(f32, order="pairwise"), 2028) == (1, 11 * 4)
    assert est.reduction(Mac(f32, order="chunk:4"), 2028) == (1, 507 * 4)
    assert est.reduction(Mac(f32, order="chunk:1024"), 2028) == (2, 2 * 4)  # 2 chunks < 4
    assert est.reduction(Mac(f32, order="chunk:2028"), 2028) == (4, 4)
    with pytest.raises(ValueError, match="reduction length: must be >= 1"):
        est.reduction(Mac(f32), 0)


def test_cycles_exact():
    conv = _by_name(load_policy("fixed16"), 1)["CONV / CONV_K"]
    # fixed: II 1, depth 2 + 3 (mul) + 1 (add), tail 1 + 1 (bias add) + 1 (rounding)
    assert (conv.ii, conv.depth, conv.tail) == (1, 6, 3)
    assert conv.cycles == 8112 * (8 * 1 + 6 + 3)
    conv = _by_name(_float_policy("sequential"), 1)["CONV / CONV_K"]
    assert (conv.ii, conv.depth, conv.tail) == (4, 9, 4 + 4 + 1)
    assert conv.cycles == 8112 * (8 * 4 + 9 + 9)
    conv = _by_name(_float_policy("pairwise"), 1)["CONV / CONV_K"]
    assert conv.cycles == 8112 * (8 * 1 + 9 + 16 + 4 + 1)
    dense = _by_name(_float_policy("sequential"), 3)["DENSE / DENSE_K"]
    assert dense.cycles == 3 * 10 * (2027 * 4 + 9 + 9)


def test_summary_totals():
    p = load_policy("fw16bw16")
    s = est.summary(p, 64, 125.0)
    assert s["cycles"] == sum(lp.cycles for lp in est.loops(p, 64)) == sum(s["stages"].values())
    assert s["cycles_per_image"] == s["cycles"] / 64
    assert math.isclose(s["images_per_s"], 64 * 125e6 / s["cycles"], rel_tol=1e-15)
    assert math.isclose(s["ms_per_step"], s["cycles"] / 125e3, rel_tol=1e-15)
    # a float accumulator's sequential recurrence costs: pairwise is faster, fixed faster still
    seq = est.summary(_float_policy("sequential"), 64, 100.0)["cycles"]
    tree = est.summary(_float_policy("pairwise"), 64, 100.0)["cycles"]
    fixed = est.summary(load_policy("fixed16"), 64, 100.0)["cycles"]
    assert fixed < tree < seq
    with pytest.raises(ValueError, match=r"batch: must be an int in 1..256"):
        est.loops(p, 0)
    with pytest.raises(ValueError, match="clock: must be a positive number"):
        est.summary(p, 1, 0.0)


def test_cli_estimate():
    r = CliRunner().invoke(cli, ["hw", "estimate", "fixed16", "--board", "zcu104",
                                 "--batch", "32"])
    assert r.exit_code == 0, r.output
    s = est.summary(load_policy("fixed16"), 32, 200.0)
    assert r.output.startswith("estimate (cycle model, not synthesis): policy fixed16, board "
                               "zcu104 (xczu7ev-ffvc1156-2-e), clock 200 MHz, batch 32")
    assert f"estimate total: {s['cycles']:,} cycles per step" in r.output
    assert f"{s['images_per_s']:.1f} images/s at 200 MHz" in r.output
    r = CliRunner().invoke(cli, ["hw", "estimate", "fixed16", "--clock", "150"])
    assert "clock 150 MHz" in r.output and r.exit_code == 0
    r = CliRunner().invoke(cli, ["hw", "estimate", "fixed16_sr"])
    assert r.exit_code == 2 and "stochastic rounding" in r.output
    r = CliRunner().invoke(cli, ["hw", "estimate", "fixed16", "--board", "zed"])
    assert r.exit_code == 2 and "board: must be one of pynq-z2, zcu104, kv260" in r.output
