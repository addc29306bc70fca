"""Accuracy against cost: the Pareto front, the cost column of a sweep, the Pareto figure and
the report's section, and the cost study's monotonicity check (on hand-made costs.json and
runs; the synthesis itself is tested in tests/hw/test_cost.py)."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fxemu.analysis import costs as C
from fxemu.analysis import figures as F
from fxemu.analysis.report import write_report
from fxemu.analysis.runs import load_runs
from fxemu.analysis.studies import MONOTONIC, cost_monotonic, cost_policy, cost_spec

from fxemu.policy import load_policy
from fxemu.train import TrainConfig


def test_pareto_front_on_hand_made_points() -> None:
    #          a    b    c    d    e    f    g
    cost = [10, 20, 20, 30, 40, 15, np.nan]
    acc = [0.5, 0.7, 0.6, 0.7, 0.9, 0.5, 0.99]
    front = C.pareto_front(cost, acc)
    # a: cheapest; b: beats a in accuracy; c dominated by b; d dominated by b (same acc,
    # dearer); e: best accuracy; f dominated by a (dearer, same acc); g: NaN never counts
    assert front.tolist() == [True, True, False, False, True, False, False]
    assert C.pareto_front([1, 1], [0.5, 0.5]).tolist() == [True, True]  # ties both stay
    assert C.pareto_front([], []).tolist() == []
    with pytest.raises(ValueError, match="pareto_front"):
        C.pareto_front([1, 2], [0.5])


def _runs(root: Path, accs: dict[str, float]) -> Path:
    """One complete 2-epoch run per policy (the cost study's policies) with the final test
    accuracy given; no weights."""
    for name, acc in accs.items():
        w, a, r = int(name[4:6]), int(name[8:10]), name[-2:]
        pol = cost_policy(w, a, r)
        d = root / f"{name}_seed0"
        d.mkdir(parents=True)
        cfg = dataclasses.asdict(TrainConfig(policy=pol.to_dict(), epochs=2, seed=0))
        (d / "config.json").write_text(json.dumps(cfg))
        with open(d / "metrics.csv", "w", newline="") as fh:
            wr = csv.writer(fh)
            wr.writerow(["epoch", "train_loss", "train_acc", "test_loss", "test_acc",
                         "seconds", "samples_per_s"])
            wr.writerow([1, 2.0, 0.3, 2.1, acc / 2, 1.0, 100.0])
            wr.writerow([2, 1.0, 0.6, 1.1, acc, 1.5, 100.0])
    return root


def _costs(root: Path, table: dict[str, dict], mapping: str | None = "abc9-area") -> None:
    """``costs.json`` of ``table``; ``mapping=None``: a file written before the mapping was
    recorded."""
    pols = {k: ({"error": v["error"]} if "error" in v else
                {"lut": v["lut"], "ff": v.get("ff", 2 * v["lut"]), "dsp": v.get("dsp", 1),
                 "carry": v.get("carry", 5), "bram18": 0, "fmax_mhz": None,
                 "tool": "Yosys 0.70", "device": "xc7z020", "pes": 1,
                 **({"mapping": mapping} if mapping else {})})
            for k, v in table.items()}
    (root / C.COSTS).write_text(json.dumps({"device": "xc7z020", "policies": pols}))


ACCS = {"fx_d08_a16_rn": 0.40, "fx_d12_a24_rn": 0.85, "fx_d16_a32_rn": 0.90,
        "fx_d16_a24_rn": 0.84}
LUTS = {"fx_d08_a16_rn": {"lut": 40}, "fx_d12_a24_rn": {"lut": 52},
        "fx_d16_a32_rn": {"lut": 64}, "fx_d16_a24_rn": {"lut": 55}}


def test_pareto_points_figure_and_report_section(tmp_path: Path) -> None:
    root = _runs(tmp_path / "runs", ACCS)
    _costs(root, {**LUTS, "fw32bw32": {"error": "rtl mac: stochastic has no generator"}})
    costs = C.load_costs([root])
    assert set(costs["policy"]) == {*ACCS, "fw32bw32"}
    pts = F.pareto_points(load_runs([root]), costs).set_index("policy")
    assert pts.loc["fx_d16_a24_rn", "front_lut"] == False  # noqa: E712 (dearer, worse than d12)
    assert pts.loc[["fx_d08_a16_rn", "fx_d12_a24_rn", "fx_d16_a32_rn"], "front_lut"].all()
    # every PE has one DSP: only the most accurate is on the DSP front
    assert pts["front_dsp"].sum() == 1 and pts.loc["fx_d16_a32_rn", "front_dsp"]
    fig = F.pareto_figure(pts.reset_index(), tmp_path / "fig")
    assert fig is not None and fig.png.stat().st_size > 10_000 and fig.pdf.is_file()
    assert "Yosys 0.70 (abc9-area LUT mapping), xc7z020" in fig.caption
    assert "dominated" in fig.caption
    assert F.pareto_figure(pts.reset_index().iloc[:1], tmp_path / "fig1") is None

    index = write_report([root], tmp_path / "report")
    page = index.read_text()
    assert "Accuracy against datapath cost" in page and "figures/pareto.png" in page
    assert "Yosys 0.70 (abc9-area LUT mapping) on xc7z020" in page
    assert "fw32bw32: rtl mac: stochastic has no generator" in page
    table = pd.read_csv(tmp_path / "report" / "tables" / "cost.csv")
    assert sorted(table["policy"]) == sorted(ACCS)


def test_report_without_costs_has_no_cost_section(tmp_path: Path) -> None:
    root = _runs(tmp_path / "runs", {"fx_d08_a16_rn": 0.4, "fx_d16_a32_rn": 0.9})
    page = write_report([root], tmp_path / "report").read_text()
    assert "Accuracy against datapath cost" not in page


def test_cost_monotonic_reports_a_falling_resource(tmp_path: Path) -> None:
    _costs(tmp_path, {"fx_d08_a16_rn": {"lut": 40}, "fx_d08_a24_rn": {"lut": 50},
                      "fx_d12_a16_rn": {"lut": 45}, "fx_d12_a24_rn": {"lut": 49},
                      "fx_d12_a24_sr": {"lut": 1}})  # sr: the same Mac, not counted twice
    df, bad, carry = cost_monotonic(tmp_path)
    assert len(df) == 4 and set(df["mapping"]) == {"abc9-area"}
    assert MONOTONIC == ("lut", "ff", "dsp")
    assert bad == ["lut falls from 50 to 49 as data_width grows 8 -> 12 at acc_width 24",
                   "ff falls from 100 to 98 as data_width grows 8 -> 12 at acc_width 24"]
    assert carry == []
    # a CARRY dip alone is reported, not a violation of the checked measures
    _costs(tmp_path, {"fx_d08_a16_rn": {"lut": 40}, "fx_d08_a24_rn": {"lut": 50, "ff": 90},
                      "fx_d12_a16_rn": {"lut": 45}, "fx_d12_a24_rn": {"lut": 51, "ff": 98,
                                                                      "carry": 0},
                      "fx_d16_a24_rn": {"lut": 60, "dsp": 0}})
    _, bad, carry = cost_monotonic(tmp_path)
    assert bad == ["dsp falls from 1 to 0 as data_width grows 12 -> 16 at acc_width 24"]
    assert carry == ["carry falls from 5 to 0 as data_width grows 8 -> 12 at acc_width 24",
                     "carry falls from 5 to 0 as acc_width grows 16 -> 24 at data_width 12"]
    _costs(tmp_path, {"fx_d08_a16_rn": {"lut": 40}, "fx_d08_a24_rn": {"lut": 50},
                      "fx_d12_a16_rn": {"lut": 45}, "fx_d12_a24_rn": {"lut": 51}})
    assert cost_monotonic(tmp_path)[1:] == ([], [])


def test_cost_study_report_names_the_mapping(tmp_path: Path) -> None:
    from fxemu.analysis.studies import write_cost_monotonic

    grid = {"fx_d08_a16_rn": {"lut": 40}, "fx_d12_a16_rn": {"lut": 38}}
    _costs(tmp_path, grid, mapping=None)  # written before the mapping was recorded: abc9
    text = write_cost_monotonic(tmp_path, tmp_path / "report").read_text()
    assert "2 PEs, LUT mapping abc9; NOT monotonic (lut, ff, dsp)" in text
    assert "- lut falls from 40 to 38 as data_width grows 8 -> 12 at acc_width 16" in text
    _costs(tmp_path, {**grid, "fx_d12_a16_rn": {"lut": 41}})
    text = write_cost_monotonic(tmp_path, tmp_path / "report").read_text()
    assert "2 PEs, LUT mapping abc9-area; monotonic: no checked measure" in text


def test_cost_spec_grid_and_policy_formats() -> None:
    sp = cost_spec()
    names = [p["name"] for p in sp["policies"][1:]]
    assert sp["policies"][0] == "fw32bw32" and len(names) == 30 and sp["seeds"] == [0]
    p = load_policy(sp["policies"][1])
    assert p.forward.input.hls_type == "ap_fixed<8,4,AP_RND_CONV,AP_SAT,0>"
    assert p.forward.conv.acc.hls_type == "ap_fixed<16,12,AP_RND_CONV,AP_SAT,0>"
    assert cost_policy(16, 32, "sr").update.master.rounding.value == "stochastic"
    with pytest.raises(ValueError, match=r"acc_width: must be an int in 13\.\.53"):
        cost_policy(8, 12)


def test_sweep_refuses_an_unknown_cost_device_before_training(tmp_path: Path) -> None:
    from fxemu.analysis.sweep import run_sweep

    def never(*a, **k):
        raise AssertionError("trained")

    with pytest.raises(ValueError, match="device: must be one of"):
        run_sweep({"policies": ["fixed16"], "seeds": [0], "train": {"epochs": 1}},
                  tmp_path / "out", cost="ice40", train_fn=never, workers=0)
    assert not (tmp_path / "out").exists()


def test_sweep_refuses_an_unknown_cost_mapping_before_training(tmp_path: Path) -> None:
    from fxemu.analysis.sweep import run_sweep

    def never(*a, **k):
        raise AssertionError("trained")

    with pytest.raises(ValueError, match="mapping: must be one of abc9, abc9-area, abc9-flow2"):
        run_sweep({"policies": ["fixed16"], "seeds": [0], "train": {"epochs": 1}},
                  tmp_path / "out", cost="xc7z020", cost_mapping="abc", train_fn=never,
                  workers=0)
    assert not (tmp_path / "out").exists()
