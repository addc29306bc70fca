"""Statistics over runs: accuracy confidence intervals, tests against a baseline, weight
distribution distances and quantization error.

Definitions (all used verbatim in the report's captions):

final test accuracy
    ``test_acc`` at the **common epoch**: the last epoch every complete run reached, which is
    every run's last epoch when all runs have the same length; runs of different lengths
    are thus compared at the shorter length, never a 2-epoch run against a 10-epoch one.
    Complete runs only (partial and failed runs are left out of every statistic here).
95% CI
    Student t interval over seeds, ``mean ± t(0.975, n-1)·s/√n`` with ``s`` the sample
    standard deviation (ddof 1); undefined (NaN) for a single seed.
test vs baseline
    Welch's unequal-variance t-test (two-sided) of a policy's final test accuracies against
    the baseline's, when both have ≥ 2 seeds; the Mann–Whitney U test (two-sided, scipy's
    automatic exact/asymptotic method) as well when both have ≥ 3 seeds. When both samples
    have zero variance the t-test is undefined and reported as NaN.
KS / Wasserstein
    the two-sample Kolmogorov–Smirnov statistic (and its p-value: exact for small samples,
    asymptotic for large ones or where the exact computation fails) and the 1-Wasserstein
    distance between one layer's weight values of a policy and of the baseline at the same
    epoch, each side **pooled over its seeds** (every usable run that holds the snapshot).
trajectory SQNR
    ``10·log10(Σ w_b² / Σ (w_r − w_b)²)`` dB, with ``w_r`` a run's weights of one layer at
    epoch ``e`` and ``w_b`` the baseline run's **of the same seed** at the same epoch: how far
    training in the run's precision has drifted from the baseline's trajectory.
quantization SQNR
    ``10·log10(Σ w_b² / Σ (Q(w_b) − w_b)²)`` dB with ``Q = fx.quantize(·, master)`` rounding
    the baseline's weights into the run's master-weight format (``update.master``;
    stochastic rounding with ``seed=0``): the pure error of storing the reference weights in
    that format. Infinite when the rounding is exact (e.g. float32 into float32).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from fxemu._errors import msg

from .runs import Run, Runs

__all__ = ["DEFAULT_BASELINE", "accuracy_stats", "choose_baseline", "common_epoch",
           "final_accuracy", "sqnr_db", "sqnr_table", "weight_distances", "welch_p"]

DEFAULT_BASELINE = "fw32bw32"


def choose_baseline(runs: Runs, baseline: str | None = None) -> str:
    """The reference policy: ``baseline`` if given (must be a policy of a usable run), else
    ``fw32bw32`` when present, else the first policy with a usable run."""
    names = list(dict.fromkeys(r.policy for r in runs.usable()))
    if not names:
        raise ValueError(msg("runs", "every run failed; nothing to compare",
                             [r.name for r in runs]))
    if baseline is not None:
        if baseline not in names:
            raise ValueError(msg("baseline", "must be the policy of a run that did not fail",
                                 baseline, "policies: " + ", ".join(names)))
        return baseline
    return DEFAULT_BASELINE if DEFAULT_BASELINE in names else names[0]


def common_epoch(runs: Runs) -> int | None:
    """The last epoch every complete run reached (None without a complete run)."""
    done = [int(r.metrics["epoch"].max()) for r in runs.complete() if len(r.metrics)]
    return min(done) if done else None


def final_accuracy(runs: Runs, epoch: int | None = None) -> pd.DataFrame:
    """One row per complete run: ``run, policy, seed, epoch, test_acc`` at ``epoch`` (default
    :func:`common_epoch`: each run's last epoch when all runs have the same length)."""
    if epoch is None:
        epoch = common_epoch(runs)
    rows = []
    for r in runs.complete():
        at = r.metrics[r.metrics["epoch"] == epoch]
        if len(at):
            rows.append({"run": r.name, "policy": r.policy, "seed": r.seed, "epoch": int(epoch),
                         "test_acc": float(at["test_acc"].iloc[-1])})
    return pd.DataFrame(rows, columns=["run", "policy", "seed", "epoch", "test_acc"])


def welch_p(x: Sequence[float], y: Sequence[float]) -> float:
    """Two-sided p-value of Welch's unequal-variance t-test; NaN with fewer than 2 values on
    a side or when neither side varies."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or len(y) < 2 or not (np.var(x) > 0 or np.var(y) > 0):
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(sps.ttest_ind(x, y, equal_var=False).pvalue)


def _ci95(x: np.ndarray) -> tuple[float, float]:
    n = len(x)
    if n < 2:
        return math.nan, math.nan
    m, s = float(np.mean(x)), float(np.std(x, ddof=1))
    if s == 0.0:
        return m, m
    lo, hi = sps.t.interval(0.95, df=n - 1, loc=m, scale=s / math.sqrt(n))
    return float(lo), float(hi)


def accuracy_stats(runs: Runs, baseline: str) -> pd.DataFrame:
    """Per policy: final test accuracy (at :func:`common_epoch`) over seeds and tests
    against ``baseline``.

    Columns: ``policy, n, mean, std, ci_low, ci_high, diff`` (mean − baseline mean),
    ``welch_t, welch_p, mwu_u, mwu_p`` (see the module docstring for when each is defined),
    ``epoch`` (the epoch compared).
    """
    epoch = common_epoch(runs)
    fa = final_accuracy(runs, epoch)
    base = fa.loc[fa["policy"] == baseline, "test_acc"].to_numpy()
    rows = []
    for pol in runs.policies:
        x = fa.loc[fa["policy"] == pol, "test_acc"].to_numpy()
        if len(x) == 0:
            continue
        lo, hi = _ci95(x)
        row = {"policy": pol, "n": len(x), "mean": float(np.mean(x)),
               "std": float(np.std(x, ddof=1)) if len(x) > 1 else math.nan,
               "ci_low": lo, "ci_high": hi,
               "diff": float(np.mean(x) - np.mean(base)) if len(base) else math.nan,
               "welch_t": math.nan, "welch_p": math.nan, "mwu_u": math.nan,
               "mwu_p": math.nan}
        if pol != baseline and len(x) >= 2 and len(base) >= 2:
            if np.var(x) > 0 or np.var(base) > 0:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    t = sps.ttest_ind(x, base, equal_var=False)
                row["welch_t"], row["welch_p"] = float(t.statistic), float(t.pvalue)
        if pol != baseline and len(x) >= 3 and len(base) >= 3:
            u = sps.mannwhitneyu(x, base, alternative="two-sided")
            row["mwu_u"], row["mwu_p"] = float(u.statistic), float(u.pvalue)
        row["epoch"] = epoch
        rows.append(row)
    return pd.DataFrame(rows, columns=["policy", "n", "mean", "std", "ci_low", "ci_high",
                                       "diff", "welch_t", "welch_p", "mwu_u", "mwu_p",
                                       "epoch"])


def _pooled(rs: Sequence[Run], epoch: int, layer: str) -> np.ndarray | None:
    parts = [r.weights(epoch)[layer].ravel() for r in rs
             if epoch in r.weight_epochs() and layer in r.weights(epoch)]
    return np.concatenate(parts) if parts else None


def weight_distances(runs: Runs, baseline: str,
                     epochs: Sequence[int] | None = None) -> pd.DataFrame:
    """KS statistic, KS p-value and Wasserstein distance of each layer's weights vs baseline.

    One row per (policy ≠ baseline, layer, epoch): ``policy, layer, epoch, n, n_baseline,
    ks, ks_p, wasserstein``; both sides pooled over seeds. ``epochs`` defaults to every epoch
    with a snapshot on both sides.
    """
    base = [r for r in runs.usable() if r.policy == baseline]
    base_epochs = set().union(*(r.weight_epochs() for r in base)) if base else set()
    rows = []
    for pol in runs.policies:
        if pol == baseline:
            continue
        rs = [r for r in runs.usable() if r.policy == pol]
        if not rs:
            continue
        have = set().union(*(r.weight_epochs() for r in rs)) & base_epochs
        for e in sorted(have if epochs is None else have & set(epochs)):
            for layer in runs.layers:
                x, y = _pooled(rs, e, layer), _pooled(base, e, layer)
                if x is None or y is None:
                    continue
                with warnings.catch_warnings():  # scipy falls back to the asymptotic p
                    warnings.filterwarnings("ignore", "ks_2samp: Exact calculation",
                                            RuntimeWarning)
                    ks = sps.ks_2samp(x, y)
                rows.append({"policy": pol, "layer": layer, "epoch": e, "n": x.size,
                             "n_baseline": y.size, "ks": float(ks.statistic),
                             "ks_p": float(ks.pvalue),
                             "wasserstein": float(sps.wasserstein_distance(x, y))})
    return pd.DataFrame(rows, columns=["policy", "layer", "epoch", "n", "n_baseline", "ks",
                                       "ks_p", "wasserstein"])


def sqnr_db(reference: np.ndarray, other: np.ndarray) -> float:
    """``10·log10(Σ reference² / Σ (other − reference)²)`` in dB; ``inf`` when equal.

    >>> round(sqnr_db(np.array([1.0, -1.0]), np.array([1.1, -1.1])), 6)
    20.0
    """
    ref = np.asarray(reference, dtype=np.float64).ravel()
    d = np.asarray(other, dtype=np.float64).ravel() - ref
    noise = float(np.dot(d, d))
    signal = float(np.dot(ref, ref))
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def _master(run: Run):
    from fxemu.formats import parse

    m = ((run.config.get("policy") or {}).get("update") or {}).get("master")
    return None if m is None else parse(str(m))


def sqnr_table(runs: Runs, baseline: str,
               epochs: Sequence[int] | None = None) -> pd.DataFrame:
    """Trajectory and quantization SQNR (dB) per policy ≠ baseline, seed, layer and epoch.

    Columns ``kind`` (``"trajectory"`` or ``"quantization"``), ``policy, seed, layer, epoch,
    sqnr_db``; see the module docstring for both definitions. ``seed`` of a quantization row
    is the baseline run's seed whose weights were rounded.
    """
    from fxemu.quantize import quantize

    base = {r.seed: r for r in runs.usable() if r.policy == baseline}
    rows = []
    masters: dict[str, object] = {}
    for r in runs.usable():
        if r.policy == baseline:
            continue
        masters.setdefault(r.policy, _master(r))
        b = base.get(r.seed)
        if b is None:
            continue
        common = set(r.weight_epochs()) & set(b.weight_epochs())
        for e in sorted(common if epochs is None else common & set(epochs)):
            wr, wb = r.weights(e), b.weights(e)
            for layer in runs.layers:
                if layer in wr and layer in wb and wr[layer].shape == wb[layer].shape:
                    rows.append({"kind": "trajectory", "policy": r.policy, "seed": r.seed,
                                 "layer": layer, "epoch": e,
                                 "sqnr_db": sqnr_db(wb[layer], wr[layer])})
    for pol, fmt in masters.items():
        if fmt is None:
            continue
        for seed, b in base.items():
            have = b.weight_epochs()
            for e in (have if epochs is None else [e for e in have if e in set(epochs)]):
                wb = b.weights(e)
                for layer in runs.layers:
                    if layer in wb:
                        q = quantize(wb[layer], fmt, seed=0)
                        rows.append({"kind": "quantization", "policy": pol, "seed": seed,
                                     "layer": layer, "epoch": e,
                                     "sqnr_db": sqnr_db(wb[layer], q)})
    return pd.DataFrame(rows, columns=["kind", "policy", "seed", "layer", "epoch", "sqnr_db"])
