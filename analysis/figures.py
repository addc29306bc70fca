"""Figures of a set of runs, written as PNG (150 dpi) and PDF.

Every figure is drawn on a :class:`matplotlib.figure.Figure` (the Agg renderer, no pyplot and
no global backend change) under one style (:data:`STYLE`: seaborn ``whitegrid``/``paper``),
with one colour per policy kept across all figures (:func:`policy_colors`). Each function
returns the :class:`FigureFile` it wrote (or ``None`` with a reason where the data cannot
support the figure); its ``caption`` says exactly what is drawn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator
from scipy.stats import gaussian_kde
from scipy.stats import t as sps_t

from fxemu.formats import Fixed, Float, parse

from .runs import Run, Runs
from .stats import common_epoch, final_accuracy, welch_p

__all__ = ["MIN_SPAN_PP", "STYLE", "FigureFile", "color_limits", "curves", "distance_figure",
           "format_axes", "heatmap", "pareto_figure", "pareto_points", "policy_colors",
           "sqnr_epochs_figure", "sqnr_figure", "weight_histograms"]

STYLE = {**sns.axes_style("whitegrid"), **sns.plotting_context("paper", font_scale=1.15),
         "savefig.dpi": 150, "figure.dpi": 100, "pdf.fonttype": 42,
         "legend.frameon": False, "axes.titleweight": "bold"}

_KDE_MAX = 4000  # the KDE guide line is estimated from at most this many values

LAYER_TITLES = {"conv_w": "conv weights (12×1×3×3)", "conv_b": "conv bias (12)",
                "dense_w": "dense weights (10×2028)", "dense_b": "dense bias (10)"}


@dataclass(frozen=True)
class FigureFile:
    """A written figure: file stem, title, caption, the PNG / PDF paths and, where a figure
    provides them, the numbers drawn (``data``; its ``attrs`` hold scale settings)."""

    stem: str
    title: str
    caption: str
    png: Path
    pdf: Path
    data: pd.DataFrame | None = field(default=None, compare=False, repr=False)


def policy_colors(policies: Sequence[str]) -> dict[str, tuple]:
    """One colour per policy, in order (colour-blind palette; husl beyond ten)."""
    n = len(policies)
    pal = sns.color_palette("colorblind", n) if n <= 10 else sns.color_palette("husl", n)
    return dict(zip(policies, pal, strict=True))


def _label(runs: Runs, pol: str) -> str:
    st = [r.status for r in runs.usable() if r.policy == pol]
    return f"{pol} (partial)" if "partial" in st else pol


def _save(fig: Figure, out: Path, stem: str, title: str, caption: str) -> FigureFile:
    out.mkdir(parents=True, exist_ok=True)
    png, pdf = out / f"{stem}.png", out / f"{stem}.pdf"
    fig.savefig(png, format="png")
    fig.set_layout_engine("none")  # keep the layout just computed: the PDF needs no second pass
    fig.savefig(pdf, format="pdf")
    return FigureFile(stem, title, caption, png, pdf)


# -- curves -----------------------------------------------------------------------------------
def _legend_to_figure(fig: Figure, ax) -> None:
    """Move ``ax``'s policy legend (if it drew one) to the figure's upper right, outside."""
    leg = ax.get_legend()
    if leg is not None:
        handles, labels = ax.get_legend_handles_labels()
        leg.remove()
        fig.legend(handles, labels, loc="outside right upper", title="policy")


def _nest_lines(ax, colors: dict[str, tuple]) -> None:
    """Draw coinciding curves as nested lines: the k-th policy's line (in ``colors``' order,
    which is also the drawing order) is thinner, with smaller markers, than the ones before
    it, so a line drawn over an identical earlier one leaves that one's edges visible. The
    policy legend, drawn already, gets the same widths."""
    rank = {mpl.colors.to_hex(c): k for k, c in enumerate(colors.values())}

    def style(line) -> None:
        k = rank.get(mpl.colors.to_hex(line.get_color()))
        if k is not None:
            line.set_linewidth(max(3.2 - 0.7 * k, 1.0))
            line.set_markersize(max(8.5 - 1.5 * k, 3.5))
            line.set_alpha(0.9)

    for line in ax.get_lines():
        style(line)
    leg = ax.get_legend()
    for line in (leg.get_lines() if leg is not None else []):
        style(line)


def _paired_diff(m: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Per run × epoch: accuracy minus the baseline run's of the same seed and epoch [pp]."""
    base = m[m["policy"] == baseline][["seed", "epoch", "train_acc", "test_acc"]]
    other = m[m["policy"] != baseline]
    d = other.merge(base, on=["seed", "epoch"], suffixes=("", "_base"))
    for c in ("train_acc", "test_acc"):
        d[f"{c}_diff"] = d[c] - d[f"{c}_base"]
    return d


def curves(runs: Runs, out: str | Path, colors: dict[str, tuple] | None = None,
           baseline: str | None = None) -> FigureFile:
    """Loss and accuracy per epoch, train and test, one line per policy (mean ± 1 s.d.);
    with ``baseline``, a third row of accuracy differences to the baseline run of the same
    seed (where such pairs exist)."""
    out = Path(out)
    m = runs.metrics
    m = m[m["status"] != "failed"].copy()
    pols = [p for p in runs.policies if p in set(m["policy"])]
    colors = colors or policy_colors(runs.policies)
    m["label"] = [_label(runs, p) for p in m["policy"]]
    for c in ("train_acc", "test_acc"):
        m[c] = m[c] * 100.0
    pal = {_label(runs, p): colors[p] for p in pols}
    diff = _paired_diff(m, baseline) if baseline is not None else pd.DataFrame()
    nrows = 3 if len(diff) else 2
    style = {"hue": "label", "hue_order": list(pal), "palette": pal, "style": "label",
             "style_order": list(pal), "dashes": True, "markers": True, "errorbar": "sd",
             "markersize": 6}
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(10, 3.4 * nrows + 0.3), layout="constrained")
        axes = fig.subplots(nrows, 2, sharex=True, sharey="row")
        spec = [("loss", "cross-entropy loss [nats]", 0), ("acc", "accuracy [%]", 1)]
        for what, ylabel, i in spec:
            for j, split in enumerate(("train", "test")):
                ax = axes[i, j]
                sns.lineplot(data=m, x="epoch", y=f"{split}_{what}", ax=ax,
                             legend=(i == 0 and j == 0), **style)
                _nest_lines(ax, pal)
                ax.set_title(f"{split} {'loss' if what == 'loss' else 'accuracy'}")
                ax.set_ylabel(ylabel)
        if nrows == 3:
            dpal = {k: v for k, v in pal.items() if k in set(diff["label"])}
            for j, split in enumerate(("train", "test")):
                ax = axes[2, j]
                ax.axhline(0.0, color="0.3", lw=0.8, zorder=1)
                sns.lineplot(data=diff, x="epoch", y=f"{split}_acc_diff", ax=ax, legend=False,
                             **{**style, "hue_order": list(dpal), "palette": dpal,
                                "style_order": list(pal)})
                _nest_lines(ax, pal)
                ax.set_title(f"{split} accuracy − {baseline} (same seed)")
                ax.set_ylabel("accuracy difference [pp]")
        for ax in axes.flat:
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        _legend_to_figure(fig, axes[0, 0])
    caption = ("Training (left) and test (right) cross-entropy loss and accuracy after each "
               "epoch; train numbers are running means over the epoch's batches, test numbers "
               "are measured after the epoch. Line: mean over seeds; band: ± one sample "
               "standard deviation over seeds (no band for a single seed). "
               "Each policy has its own colour, dash pattern and marker, and each later "
               "policy's line is drawn thinner on top of the earlier ones, so lines that "
               "coincide stay visible (as a thin line inside a wider one); '(partial)' marks "
               "a policy with an unfinished run.")
    if nrows == 3:
        caption += (f" Bottom row: a run's accuracy minus that of the {baseline} run with the "
                    "same seed (same initial weights and sample order) at the same epoch, in "
                    "percentage points; mean ± one standard deviation over the seeds paired.")
    return _save(fig, out, "curves", "Loss and accuracy per epoch", caption)


# -- weight histograms ------------------------------------------------------------------------
def _master_fmt(runs: Runs, pol: str) -> Fixed | Float | None:
    for r in runs.usable():
        if r.policy == pol:
            m = ((r.config.get("policy") or {}).get("update") or {}).get("master")
            return None if m is None else parse(str(m))
    return None


def _short(fmt: Fixed | Float | None) -> str:
    if fmt is None:
        return "?"
    if isinstance(fmt, Float):
        return f"float e{fmt.exp_bits}m{fmt.man_bits}"
    return (f"fixed<{fmt.width},{fmt.int_bits}> {fmt.rounding.name.lower()}")


def _pow2_text(v: float) -> str:
    e = math.log2(v)
    return f"2^{int(e)}" if e == int(e) else f"{v:g}"


def _pooled(rs: Sequence[Run], epoch: int, layer: str) -> np.ndarray:
    parts = [r.weights(epoch)[layer].ravel() for r in rs if epoch in r.weight_epochs()]
    return np.concatenate(parts) if parts else np.array([])


def weight_histograms(runs: Runs, out: str | Path, epochs: Sequence[int],
                      colors: dict[str, tuple] | None = None) -> list[FigureFile]:
    """One figure per layer: rows = policies, columns = ``epochs``; density histograms of the
    weight values pooled over seeds, the master format's range and fixed-point grid marked."""
    out = Path(out)
    colors = colors or policy_colors(runs.policies)
    pols = [p for p in runs.policies if any(r.policy == p for r in runs.usable())]
    files = []
    for layer in runs.layers:
        data = {(p, e): _pooled([r for r in runs.usable() if r.policy == p], e, layer)
                for p in pols for e in epochs}
        allv = np.concatenate([v for v in data.values() if v.size] or [np.zeros(1)])
        lo, hi = float(allv.min()), float(allv.max())
        pad = 0.05 * (hi - lo) if hi > lo else max(abs(lo), 1e-3) * 0.1
        xlim = (lo - pad, hi + pad)
        with mpl.rc_context(STYLE):
            fig = Figure(figsize=(3.4 * len(epochs) + 1.2, 1.85 * len(pols) + 0.9),
                         layout="constrained")
            rows = np.atleast_1d(fig.subfigures(len(pols), 1))
            first = None
            for i, p in enumerate(pols):
                fmt = _master_fmt(runs, p)
                grid = None
                if isinstance(fmt, Fixed) and (xlim[1] - xlim[0]) / fmt.step <= 120:
                    grid = fmt.step
                axes = np.atleast_1d(rows[i].subplots(1, len(epochs), squeeze=False)[0])
                for j, e in enumerate(epochs):
                    ax = axes[j]
                    if first is None:
                        first = ax
                    else:
                        ax.sharex(first)
                    v = data[(p, e)]
                    if v.size:
                        if grid is not None:  # bins centred on the grid: no aliasing combs
                            k0 = math.floor(xlim[0] / grid) - 1
                            k1 = math.ceil(xlim[1] / grid) + 1
                            bins = (np.arange(k0, k1 + 1) + 0.5) * grid
                        else:
                            bins = np.linspace(xlim[0], xlim[1], 61 if v.size > 200 else 21)
                        dens, _ = np.histogram(v, bins=bins, density=True)
                        ax.stairs(dens, bins, fill=True, color=colors[p], alpha=0.35, lw=0)
                        ax.stairs(dens, bins, color=colors[p], lw=0.9)
                        if v.size >= 100 and np.ptp(v) > 0:
                            xs = np.linspace(xlim[0], xlim[1], 256)
                            sub = v if v.size <= _KDE_MAX else np.random.default_rng(0).choice(
                                v, _KDE_MAX, replace=False)
                            ax.plot(xs, gaussian_kde(sub)(xs), color=colors[p], lw=1.3)
                    else:
                        ax.text(0.5, 0.5, "no snapshot", transform=ax.transAxes,
                                ha="center", va="center", color="0.4")
                    if fmt is not None:
                        for b in (fmt.min, fmt.max):
                            if xlim[0] <= b <= xlim[1]:
                                ax.axvline(b, color="crimson", lw=1.2, ls="--")
                    if grid is not None:
                        ks = np.arange(math.ceil(xlim[0] / grid), math.floor(xlim[1] / grid) + 1)
                        ax.vlines(ks * grid, 0, 0.05, transform=ax.get_xaxis_transform(),
                                  color="crimson", lw=0.5)
                    ax.set_xlim(*xlim)
                    ax.set_ylabel("density" if j == 0 else "")
                    ax.set_title(f"epoch {e}", fontsize="medium", fontweight="normal")
                    ax.set_xlabel("weight value" if i == len(pols) - 1 else "")
                    if i < len(pols) - 1:
                        ax.tick_params(labelbottom=False)
                head = f"{p}: master {_short(fmt)}"
                if fmt is not None:
                    head += f", range [{fmt.min:g}, {fmt.max:g}]"
                    if not (xlim[0] <= fmt.min and fmt.max <= xlim[1]):
                        head += (" (dashed where inside the view)"
                                 if xlim[0] <= fmt.min <= xlim[1] or xlim[0] <= fmt.max <= xlim[1]
                                 else " (outside the view)")
                if grid is not None:
                    head += f", grid step {_pow2_text(grid)} (red ticks)"
                rows[i].suptitle(head, x=0.01, ha="left", fontsize="medium",
                                 fontweight="bold", color=colors[p])
            fig.suptitle(LAYER_TITLES.get(layer, layer))
        caption = (f"Distribution of {LAYER_TITLES.get(layer, layer)} after the epochs shown "
                   "(epoch 0 = initial weights), one row per policy, values pooled over its "
                   "seeds; density histogram of all values, with a Gaussian kernel density "
                   "estimate (Scott's bandwidth; from a fixed random subsample of 4 000 "
                   "values when there are more) where there are ≥ 100 values. Each row's "
                   "title names the master-weight format (update.master) and its "
                   "representable range; red dashed lines mark the range's ends where they "
                   "fall inside the view. Red ticks on the axis: the fixed-point grid (one "
                   "tick per representable value), drawn when at most 120 grid steps span "
                   "the view; the histogram bins are then centred on the grid.")
        files.append(_save(fig, out, f"weights_{layer}", f"Weight distribution: {layer}",
                           caption))
    return files


# -- SQNR -------------------------------------------------------------------------------------
def _grouped_bars(ax, df: pd.DataFrame, pols: Sequence[str], colors: dict) -> None:
    """Bars per layer (x) and policy (colour); non-finite SQNR as a word at the axis."""
    n = max(len(pols), 1)
    width = 0.8 / n
    at_bottom = ax.get_xaxis_transform()  # x in data, y in axes fraction
    layers = list(dict.fromkeys(df["layer"]))
    for j, p in enumerate(pols):
        for i, layer in enumerate(layers):
            v = df.loc[(df["policy"] == p) & (df["layer"] == layer), "sqnr_db"].to_numpy()
            if v.size == 0:
                continue
            x = i - 0.4 + width * (j + 0.5)
            fin = v[np.isfinite(v)]
            if fin.size == 0:
                word = "exact" if np.all(np.isposinf(v)) else "no signal"
                ax.text(x, 0.02, word, rotation=90, ha="center", va="bottom",
                        fontsize="x-small", color=colors[p], transform=at_bottom)
                continue
            mean = float(fin.mean())
            sd = float(fin.std(ddof=1)) if fin.size > 1 else 0.0
            ax.bar(x, mean, width=width * 0.95, color=colors[p],
                   yerr=sd if fin.size > 1 else None, capsize=2)
    if not np.isfinite(df["sqnr_db"].to_numpy()).any():
        ax.set_ylim(0, 1)
        ax.set_yticks([])
    ax.set_xticks(range(len(layers)), layers)
    ax.set_xlabel("layer")
    ax.set_ylabel("SQNR [dB]")


def sqnr_figure(sq: pd.DataFrame, out: str | Path, baseline: str, epoch: int,
                colors: dict[str, tuple]) -> FigureFile | None:
    """Trajectory and quantization SQNR per layer at ``epoch``, bars per policy."""
    out = Path(out)
    d = sq[sq["epoch"] == epoch]
    if d.empty:
        return None
    pols = [p for p in colors if p in set(d["policy"])]
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(11, 4.2), layout="constrained")
        axes = fig.subplots(1, 2, sharey=False)
        for ax, kind, title in (
                (axes[0], "trajectory", f"trajectory: run vs {baseline}, same seed"),
                (axes[1], "quantization", f"quantization: {baseline} weights → master")):
            sub = d[d["kind"] == kind]
            if sub.empty:
                ax.text(0.5, 0.5, f"no {kind} pairs", transform=ax.transAxes, ha="center")
            _grouped_bars(ax, sub, pols, colors)
            ax.set_title(title)
        handles = [Patch(color=colors[p], label=p) for p in pols]
        if handles:
            fig.legend(handles=handles, loc="outside right upper", title="policy")
        fig.suptitle(f"Quantization error of the weights at epoch {epoch}")
    caption = (f"Signal-to-quantization-noise ratio per layer at epoch {epoch}, "
               "SQNR = 10·log10(Σ w_ref² / Σ (w − w_ref)²) dB. Left (trajectory): w = a run's "
               f"weights, w_ref = the {baseline} run of the same seed at the same epoch — how "
               "far training in that precision has drifted. Right (quantization): w_ref = "
               f"the {baseline} run's weights, w = those weights rounded into the policy's "
               "master-weight format with fx.quantize (stochastic rounding with seed 0) — the "
               "pure storage error. Bar: mean over seeds; error bar: ± one sample standard "
               "deviation (non-finite values left out); 'exact': infinite SQNR (the weights "
               "are equal); 'no signal': the reference weights are all zero.")
    return _save(fig, out, "sqnr", "Quantization error per layer (SQNR)", caption)


def sqnr_epochs_figure(sq: pd.DataFrame, out: str | Path, baseline: str,
                       colors: dict[str, tuple]) -> FigureFile | None:
    """Trajectory SQNR against epoch, one panel per layer, one line per policy."""
    out = Path(out)
    d = sq[(sq["kind"] == "trajectory") & np.isfinite(sq["sqnr_db"])]
    if d.empty or d["epoch"].nunique() < 2:
        return None
    pal = {p: c for p, c in colors.items() if p in set(d["policy"])}
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(12, 3.6), layout="constrained")
        layers = list(dict.fromkeys(d["layer"]))
        axes = np.atleast_1d(fig.subplots(1, len(layers), sharey=True))
        for ax, layer in zip(axes, layers, strict=True):
            sub = d[d["layer"] == layer]
            sns.lineplot(data=sub, x="epoch", y="sqnr_db", hue="policy", hue_order=list(pal),
                         palette=pal, style="policy", style_order=list(pal), dashes=True,
                         markers=True, errorbar="sd", ax=ax, legend=layer == layers[0])
            _nest_lines(ax, pal)
            ax.set_title(layer)
            ax.set_xlabel("epoch")
            ax.set_ylabel("trajectory SQNR [dB]")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        _legend_to_figure(fig, axes[0])
    caption = ("Trajectory SQNR (as in the figure above: a run's weights against the "
               f"{baseline} run of the same seed) after each epoch; epoch 0 shows the "
               "rounding of the common initial weights. Line: mean over seeds; band: ± one "
               "sample standard deviation. Epochs with identical weights (infinite SQNR) are "
               "left out. Each policy has its own colour, dash pattern and marker; later "
               "lines are thinner, so coinciding lines stay visible.")
    return _save(fig, out, "sqnr_epochs", "Trajectory SQNR per epoch", caption)


# -- distribution distances -------------------------------------------------------------------
def distance_figure(dist: pd.DataFrame, out: str | Path, baseline: str,
                    colors: dict[str, tuple]) -> FigureFile | None:
    """KS statistic and Wasserstein distance vs baseline per epoch, one panel per layer."""
    out = Path(out)
    if dist.empty:
        return None
    pal = {p: c for p, c in colors.items() if p in set(dist["policy"])}
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(12, 6), layout="constrained")
        layers = list(dict.fromkeys(dist["layer"]))
        axes = fig.subplots(2, len(layers), sharex=True, squeeze=False)
        for j, layer in enumerate(layers):
            sub = dist[dist["layer"] == layer]
            for i, (col, ylab) in enumerate((("ks", "KS statistic [–]"),
                                             ("wasserstein", "Wasserstein-1 [weight units]"))):
                ax = axes[i, j]
                sns.lineplot(data=sub, x="epoch", y=col, hue="policy", hue_order=list(pal),
                             palette=pal, style="policy", style_order=list(pal), dashes=True,
                             markers=True, ax=ax, legend=(i == 0 and j == 0))
                _nest_lines(ax, pal)
                if i == 0:
                    ax.set_title(layer)
                ax.set_xlabel("epoch")
                ax.set_ylabel(ylab if j == 0 else "")
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        _legend_to_figure(fig, axes[0, 0])
    caption = ("Distance of each layer's weight distribution from the baseline "
               f"{baseline} after each epoch: two-sample Kolmogorov–Smirnov statistic (top) "
               "and 1-Wasserstein distance in weight units (bottom); both sides pooled over "
               "their seeds. Each policy has its own colour, dash pattern and marker; later "
               "lines are thinner, so coinciding lines stay visible.")
    return _save(fig, out, "distances", "Weight-distribution distance from the baseline",
                 caption)


# -- format-sweep heatmap ---------------------------------------------------------------------
#: Axes a heatmap can use, read from a run's policy: name → (stage, role, attribute).
AXES = {
    "data bits": ("forward", "activation", "width"),
    "accumulator bits": ("forward", "conv", "width"),
    "fraction bits": ("forward", "activation", "frac"),
    "rounding": ("update", "master", "rounding"),
    "master bits": ("update", "master", "width"),
    "master fraction bits": ("update", "master", "frac"),
    "gradient bits": ("backward", "grad", "width"),
}
_PAIRS = [("data bits", "accumulator bits"), ("fraction bits", "rounding"),
          ("master fraction bits", "rounding")]


def _axis_value(policy: dict, stage: str, role: str, attr: str) -> object:
    v = (policy.get(stage) or {}).get(role)
    if isinstance(v, dict):
        v = v.get("acc")
    if v is None:
        return None
    f = parse(str(v))
    if attr == "width":
        return f.width
    if attr == "frac":
        return f.frac_bits if isinstance(f, Fixed) else f.man_bits
    return f"{'fixed' if isinstance(f, Fixed) else 'float'} {f.rounding.name.lower()}"


def format_axes(runs: Runs) -> pd.DataFrame:
    """Per complete run: ``run, policy, test_acc`` (at the last epoch every complete run
    reached, :func:`~fxemu.analysis.stats.common_epoch`) and every :data:`AXES` value."""
    acc = dict(zip(*(final_accuracy(runs)[c] for c in ("run", "test_acc")), strict=True))
    rows = []
    for r in runs.complete():
        pol = r.config.get("policy") or {}
        row = {"run": r.name, "policy": r.policy, "test_acc": acc.get(r.name, math.nan)}
        for name, (stage, role, attr) in AXES.items():
            row[name] = _axis_value(pol, stage, role, attr)
        rows.append(row)
    return pd.DataFrame(rows, columns=["run", "policy", "test_acc", *AXES])


def _varying(df: pd.DataFrame, col: str) -> bool:
    return bool(df[col].notna().all() and df[col].nunique() > 1)


def _two_d(df: pd.DataFrame, a: str, b: str) -> bool:
    """Both axes vary and not in lockstep: more (a, b) pairs than values of either axis."""
    if not (_varying(df, a) and _varying(df, b)):
        return False
    pairs = len(df[[a, b]].drop_duplicates())
    return pairs > max(df[a].nunique(), df[b].nunique())


def heatmap(runs: Runs, out: str | Path,
            axes: tuple[str, str] | None = None) -> tuple[FigureFile | None, str]:
    """Mean final test accuracy over two format axes; ``(None, reason)`` when no two vary.

    ``axes`` (names from :data:`AXES`) default to the first of (data bits, accumulator bits),
    (fraction bits, rounding), (master fraction bits, rounding), then any pair, on which the
    complete runs vary independently (more distinct pairs than values on either axis, so
    the cells are not just a diagonal). Fraction bits of a float format are its mantissa
    bits; rounding reads e.g. ``fixed rnd_conv`` or ``float rne``.
    """
    out = Path(out)
    df = format_axes(runs).dropna(subset=["test_acc"])
    if len(df) < 2:
        return None, "fewer than two complete runs"
    if axes is None:
        cands = _PAIRS + [(a, b) for i, a in enumerate(AXES) for b in list(AXES)[i + 1:]]
        axes = next(((a, b) for a, b in cands if _two_d(df, a, b)), None)
        if axes is None:
            vary = [a for a in AXES if _varying(df, a)]
            return None, ("the complete runs do not vary on two independent format axes "
                          f"(varying: {', '.join(vary) or 'none'}, in lockstep if more than "
                          f"one; axes read: {', '.join(AXES)})")
    ya, xa = axes
    cells = _cells(df, ya, xa)
    vmin, vmax = color_limits(cells["mean"].to_numpy())
    cells.attrs.update(vmin=vmin, vmax=vmax, axes=(ya, xa), epoch=common_epoch(runs))
    mean = cells.pivot(index=ya, columns=xa, values="mean")
    annot = cells.pivot(index=ya, columns=xa, values="text").fillna("")
    npol = df.groupby([ya, xa])["policy"].nunique().max()
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(1.5 * mean.shape[1] + 3.2, 0.9 * mean.shape[0] + 2),
                     layout="constrained")
        ax = fig.subplots()
        sns.heatmap(mean, annot=annot.to_numpy(), fmt="", cmap="viridis", vmin=vmin,
                    vmax=vmax, ax=ax, cbar_kws={"label": "final test accuracy [%]"},
                    linewidths=0.5, annot_kws={"fontsize": "small"})
        ax.grid(False)
        ax.set_xlabel(xa)
        ax.set_ylabel(ya)
        ax.set_title("Final test accuracy by format")
    epoch = cells.attrs["epoch"]
    caption = (f"Final test accuracy [%] (at epoch {epoch}, the last epoch every complete run "
               f"reached; complete runs only) by {ya} (rows) and {xa} (columns), read from "
               "each run's policy; cell: mean over the runs in it, ± the half-width of its "
               "95% Student-t confidence interval (with ≥ 2 runs), n = number of runs; "
               "blank: no run. Colour scale: fixed at the data's range widened to at least "
               f"{MIN_SPAN_PP:g} percentage points ({vmin:.1f}–{vmax:.1f} %), so differences "
               "smaller than a few points show as close colours, not as opposite ends of the "
               "scale. 'best': the cell with the highest mean; 'n.s.': not significantly "
               "different from it (Welch's t-test, p ≥ 0.05); cells without a mark differ "
               "significantly (p < 0.05) or cannot be tested (fewer than 2 runs on a side, "
               "or no variation).")
    if npol > 1:
        caption += f" Some cells hold up to {npol} policies that differ on other axes."
    f = _save(fig, out, "heatmap", "Format sweep", caption)
    return replace(f, data=cells), ""


#: The least span of the heatmap's colour scale, in percentage points of accuracy.
MIN_SPAN_PP = 10.0


def color_limits(values: Sequence[float] | np.ndarray,
                 min_span: float = MIN_SPAN_PP) -> tuple[float, float]:
    """``(vmin, vmax)`` of an accuracy colour scale in percent: the range of the finite
    ``values``, widened about its middle to at least ``min_span`` and then shifted to lie in
    [0, 100]. A difference much smaller than ``min_span`` thus never spans the whole scale."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 100.0
    lo, hi = float(v.min()), float(v.max())
    if hi - lo < min_span:
        mid = (lo + hi) / 2
        lo, hi = mid - min_span / 2, mid + min_span / 2
        if lo < 0.0:
            lo, hi = 0.0, hi - lo
        if hi > 100.0:
            lo, hi = max(lo - (hi - 100.0), 0.0), 100.0
    return lo, hi


def _cells(df: pd.DataFrame, ya: str, xa: str) -> pd.DataFrame:
    """Per (ya, xa) cell: mean, ci_half, n (accuracies in percent), p-value against the best
    cell, the mark and the annotation text."""
    rows = []
    for (a, b), g in df.groupby([ya, xa]):
        x = g["test_acc"].to_numpy() * 100.0
        half = math.nan
        if len(x) > 1:
            s = float(np.std(x, ddof=1))
            half = float(sps_t.ppf(0.975, len(x) - 1) * s / math.sqrt(len(x)))
        rows.append({ya: a, xa: b, "mean": float(x.mean()), "ci_half": half, "n": len(x),
                     "values": x})
    cells = pd.DataFrame(rows)
    best = int(cells["mean"].to_numpy().argmax())
    ps, marks, texts = [], [], []
    for i, c in cells.iterrows():
        p = math.nan if i == best else welch_p(c["values"], cells.loc[best, "values"])
        mark = "best" if i == best else ("n.s." if p >= 0.05 else "")
        text = f"{c['mean']:.2f}"
        if not math.isnan(c["ci_half"]):
            text += f" ±{c['ci_half']:.2f}"
        text += f"\nn={c['n']}" + (f" {mark}" if mark else "")
        ps.append(p)
        marks.append(mark)
        texts.append(text)
    cells["p_vs_best"], cells["mark"], cells["text"] = ps, marks, texts
    return cells.drop(columns="values")


# -- accuracy against cost --------------------------------------------------------------------
def pareto_points(runs: Runs, costs: pd.DataFrame, epoch: int | None = None) -> pd.DataFrame:
    """Per costed policy with complete runs: ``policy``, ``n`` (seeds), ``acc`` (mean final
    test accuracy at ``epoch``, default the last epoch every complete run reached), ``acc_min``
    / ``acc_max`` over seeds, the cost columns of ``costs``
    (:func:`fxemu.analysis.costs.load_costs`) and ``front_lut`` / ``front_dsp``: on the
    Pareto front of accuracy against LUTs / DSPs."""
    from .costs import RESOURCES, pareto_front

    fa = final_accuracy(runs, epoch)
    ok = costs[costs["error"].isna()] if len(costs) else costs
    rows = []
    for pol, g in fa.groupby("policy", sort=False):
        c = ok[ok["policy"] == pol]
        if not len(c):
            continue
        c = c.iloc[-1]
        rows.append({"policy": pol, "n": len(g), "acc": float(g["test_acc"].mean()),
                     "acc_min": float(g["test_acc"].min()),
                     "acc_max": float(g["test_acc"].max()), "epoch": int(g["epoch"].iloc[0]),
                     "device": c["device"], "tool": c["tool"], "mapping": c["mapping"],
                     **{k: float(c[k]) for k in RESOURCES}})
    df = pd.DataFrame(rows, columns=["policy", "n", "acc", "acc_min", "acc_max", "epoch",
                                     "device", "tool", "mapping", *RESOURCES])
    df["front_lut"] = pareto_front(df["lut"], df["acc"]) if len(df) else []
    df["front_dsp"] = pareto_front(df["dsp"], df["acc"]) if len(df) else []
    return df


def pareto_figure(points: pd.DataFrame, out: str | Path,
                  stem: str = "pareto") -> FigureFile | None:
    """Final test accuracy against LUTs (left) and DSPs (right) per policy, from
    :func:`pareto_points`: the Pareto front as filled circles joined by a staircase (each
    step: the best accuracy reachable at that cost or less), each labelled with its policy;
    dominated policies as hollow grey circles; a vertical bar spans the seeds' range. The
    axes name the device, the tool, its version and the LUT mapping; the costs are Yosys's
    counts before vendor place and route (estimates). An axis whose largest cost is over 10×
    its smallest is logarithmic (and says so). None when fewer than two policies have a cost."""
    if len(points) < 2:
        return None
    devices, tools = sorted(set(points["device"])), sorted(set(points["tool"]))
    maps = sorted(set(points["mapping"]))
    where = f"{', '.join(tools)} ({', '.join(maps)} LUT mapping), {', '.join(devices)}"
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(11.0, 4.6), layout="constrained")
        axes = fig.subplots(1, 2, sharey=True)
        for ax, res, label in ((axes[0], "lut", "LUTs"), (axes[1], "dsp", "DSP blocks")):
            front = points[points[f"front_{res}"]].sort_values(res)
            dom = points[~points[f"front_{res}"]]
            x, y = points[res], 100 * points["acc"]
            ax.vlines(x, 100 * points["acc_min"], 100 * points["acc_max"], color="0.75",
                      lw=1, zorder=1)
            ax.scatter(dom[res], 100 * dom["acc"], s=36, facecolors="none",
                       edgecolors="0.55", lw=1.1, zorder=2, label="dominated")
            if len(front):
                fx_ = [*list(front[res]), float(x.max())]
                fy = [*list(100 * front["acc"]), float(100 * front["acc"].iloc[-1])]
                ax.step(fx_, fy, where="post", color="C3", lw=1.4, zorder=3,
                        label="Pareto front")
                ax.scatter(front[res], 100 * front["acc"], s=46, color="C3", zorder=4)
                for i, (_, r) in enumerate(front.iterrows()):  # staggered: close points
                    ax.annotate(r["policy"], (r[res], 100 * r["acc"]), fontsize=7,
                                xytext=(5, -11 - 9 * (i % 4)), textcoords="offset points",
                                color="C3")
            logx = float(x.min()) > 0 and float(x.max()) / float(x.min()) > 10
            if logx:  # e.g. fixed-point PEs of tens of LUTs beside a float32 PE of thousands
                ax.set_xscale("log")
            ax.set_xlabel(f"{label} per datapath{' (log scale)' if logx else ''}\n"
                          f"({where}; pre-P&R estimate)", fontsize=9)
            ax.set_title(f"accuracy vs {label}", fontsize=10)
            lo = float(min(y.min(), (100 * points["acc_min"]).min()))
            ax.set_ylim(max(0.0, lo - 5), 100)
            if res == "dsp" and not logx:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes[0].set_ylabel(f"final test accuracy [%] (epoch {int(points['epoch'].max())})")
        axes[0].legend(loc="lower right", fontsize=8)
        title = "Accuracy against datapath cost"
        cap = (f"Final test accuracy (mean over seeds; bars: min–max) of each policy against "
               f"its datapath cost from synthesis ({where}): LUTs and DSP blocks summed over "
               "the policy's distinct PEs, Yosys's counts before vendor place and route (an "
               "estimate of a Vivado result). Filled red and the staircase: the Pareto front "
               "(no other policy is as cheap or cheaper and as accurate or more, one of them "
               "strictly); hollow grey: dominated policies.")
        ff = _save(fig, Path(out), stem, title, cap)
    return replace(ff, data=points)
