"""The precision studies' specs and the rounding study's summary (the runs themselves are
the README's measured study, too long for CI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fxemu.analysis.studies import (
    FRACTION_BITS,
    LENET5_POLICIES,
    _lenet5_extras,
    _rounding_extras,
    founding_spec,
    lenet5_fix_policy,
    lenet5_spec,
    rounding_policy,
    rounding_spec,
    rounding_summary,
)
from fxemu.analysis.sweep import build_runs

from fxemu.formats import Fixed, FixedRounding
from fxemu.policy import PRESETS


def test_founding_spec() -> None:
    runs = build_runs(founding_spec())
    assert [r.name for r in runs][:3] == ["fw32bw32_seed0", "fw32bw32_seed1", "fw32bw32_seed2"]
    assert len(runs) == 9
    c = runs[-1].config
    assert (c["n_train"], c["n_test"], c["batch_size"], c["epochs"], c["lr"]) == \
        (2000, 500, 100, 10, 0.01)


def test_lenet5_spec_and_a_tiny_study(tmp_path: Path) -> None:
    """The study's real schedule (run outside CI) and the whole command on a tiny variant:
    four LeNet-5 runs on Fashion-MNIST and a report comparing them."""
    from fxemu.analysis.studies import run_study

    runs = build_runs(lenet5_spec())
    assert [r.name for r in runs[::3]] == ["fw32bw32_seed0", "fw16bw16_seed0",
                                           "fixed16_sr_g0_seed0", "fixed16_seed0",
                                           "fixed16_sr_seed0"]
    c = runs[0].config
    assert (c["model"], c["data"], c["n_train"], c["n_test"], c["epochs"], c["lr"]) == \
        ("lenet5", "fashion", 10000, 2000, 5, 0.05)
    fix, sr = lenet5_fix_policy(), PRESETS["fixed16_sr"]
    assert fix.backward.grad == Fixed(16, 0, rounding="rnd_conv", overflow="sat")
    assert fix.backward.grad.max == 0.5 - 2.0**-16
    d = fix.to_dict()
    d["backward"]["grad"] = str(sr.backward.grad)
    assert d == {**sr.to_dict(), "name": "fixed16_sr_g0"}
    res, index = run_study("lenet5", tmp_path, seeds=[0], workers=0, progress=False,
                           report=False, train={"n_train": 40, "n_test": 20, "epochs": 1,
                                                "batch_size": 20})
    assert res.ok and len(res.done) == 5 and index is None
    cfg = json.loads((tmp_path / "runs" / "fixed16_seed0" / "config.json").read_text())
    assert cfg["model"]["name"] == "lenet5" and cfg["data"]["name"] == "fashion-mnist"
    table, csv, png = _lenet5_extras(tmp_path / "runs", tmp_path / "report")
    rows = table.read_text().splitlines()
    assert [r.split(" | ")[0].lstrip("| ") for r in rows[2:7]] == list(LENET5_POLICIES)
    assert all(r.split(" | ")[1] == "1" for r in rows[2:7])  # one seed each
    assert len(csv.read_text().splitlines()) == 6
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    # what the report reads: LeNet-5's ten tensors, one model so policy labels stay plain
    from fxemu.analysis.runs import load_runs
    from fxemu.analysis.stats import sqnr_table

    rs = load_runs(tmp_path / "runs")
    assert rs.layers[:2] == ["conv1_w", "conv1_b"] and len(rs.layers) == 10
    assert sorted(rs.policies) == ["fixed16", "fixed16_sr", "fixed16_sr_g0", "fw16bw16",
                                   "fw32bw32"]
    sq = sqnr_table(rs, "fw32bw32")
    assert set(sq["layer"]) == set(rs.layers) and set(sq["policy"]) == {
        "fixed16", "fixed16_sr", "fixed16_sr_g0", "fw16bw16"}
    # a founding run beside them: labels name the model, SQNR pairs only equal shapes
    _fake_run(tmp_path / "runs", "fw32bw32", 7, [0.5])
    rs = load_runs(tmp_path / "runs")
    assert "founding/fw32bw32" in rs.policies and "lenet5/fixed16" in rs.policies
    assert set(rs.configs["model"]) == {"founding", "lenet5"}


def test_rounding_policies() -> None:
    p8 = rounding_policy(8)  # F = 8 is the fixed16 preset
    assert p8.to_dict() == {**PRESETS["fixed16"].to_dict(), "name": "fixed16_F08_rnd_conv"}
    p = rounding_policy(14, "sr")
    assert p.name == "fixed16_F14_sr"
    assert p.forward.activation == Fixed(16, 2, rounding="rnd_conv", overflow="sat")
    assert p.backward.grad == p.forward.input == p.forward.weight == p.backward.weight
    assert p.update.master.rounding is FixedRounding.STOCHASTIC
    assert p.update.master.frac_bits == 14
    for mac in (p.forward.conv, p.forward.dense, p.backward.dense_dw, p.backward.dense_dx,
                p.backward.conv_dw):  # holds every product of two 14-fraction-bit values
        assert mac.acc.hls_type == "ap_fixed<44,16,AP_RND_CONV,AP_SAT,0>"
        assert mac.mul is None and mac.out is None
    runs = build_runs(rounding_spec())
    assert len(runs) == 3 + 2 * len(FRACTION_BITS) * 3 == 45
    assert len({r.name for r in runs}) == 45 and runs[0].name == "fw32bw32_seed0"
    with pytest.raises(ValueError, match=r"frac_bits: must be an int in 1\.\.18"):
        rounding_policy(19)
    with pytest.raises(ValueError, match="rounding: must be rnd_conv or sr; got 'rne'"):
        rounding_policy(8, "rne")


def _fake_run(root: Path, policy: str, seed: int, accs: list[float], epochs: int = 2) -> None:
    d = root / f"{policy}_seed{seed}"
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"policy": {"name": policy}, "seed": seed,
                                               "epochs": epochs}))
    rows = ["epoch,train_loss,train_acc,test_loss,test_acc,seconds,samples_per_s"]
    rows += [f"{i + 1},1.0,0.5,{1 - a},{a},1.0,100.0" for i, a in enumerate(accs)]
    (d / "metrics.csv").write_text("\n".join(rows) + "\n")


def test_rounding_summary(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    stats = pytest.importorskip("scipy.stats")
    _fake_run(tmp_path, "fixed16_F09_sr", 0, [0.5, 0.8])
    _fake_run(tmp_path, "fixed16_F09_sr", 1, [0.5, 0.9])
    _fake_run(tmp_path, "fixed16_F09_rnd_conv", 0, [0.5, 0.6])
    _fake_run(tmp_path, "fixed16_F09_rnd_conv", 1, [0.5])  # unfinished: left out
    _fake_run(tmp_path, "fw32bw32", 0, [0.9, 0.9])  # not a rounding-study run
    s = rounding_summary(tmp_path).set_index("rounding")
    assert s.loc["sr", "n"] == 2 and s.loc["rnd_conv", "n"] == 1
    assert s.loc["sr", "mean"] == pytest.approx(0.85)
    half = stats.t.ppf(0.975, 1) * 0.1 / 2 ** 0.5 / 2 ** 0.5  # std 0.1/sqrt(2), n = 2
    assert s.loc["sr", "ci95_high"] - s.loc["sr", "mean"] == pytest.approx(half)
    assert s.loc["sr", "final_test_loss"] == pytest.approx(0.15)
    with pytest.raises(ValueError, match="holds no finished rounding runs"):
        rounding_summary(tmp_path / "fw32bw32_seed0")

    pytest.importorskip("matplotlib")
    _rounding_extras(tmp_path, tmp_path / "rep")
    md = (tmp_path / "rep" / "rounding_table.md").read_text().splitlines()
    assert md[2] == (f"| 9 | `ap_fixed<16,7,AP_RND_CONV,AP_SAT>` | 2^-9 | ±64 | 60.00 | "
                     f"85.00 ± {100 * half:.2f} |")
    assert md[-1].endswith("float32 baseline (fw32bw32, 1 seeds): 90.00 %.")
    assert (tmp_path / "rep" / "rounding_accuracy.png").stat().st_size > 10_000
