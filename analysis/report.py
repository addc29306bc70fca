"""The report: every figure and table of a set of runs plus one ``index.html`` page.

Layout of the output directory::

    index.html              one self-contained page (inline CSS; images by relative link)
    figures/<stem>.png|pdf  curves, weights_<layer>, sqnr, sqnr_epochs, distances, heatmap
    tables/<stem>.md|csv|tex  runs, comparison, accuracy, sqnr, distances

The page's inline script checks, once the page has loaded, that every ``<img>`` is complete
with ``naturalWidth > 0`` and writes the result into ``#image-check`` (``data-status`` ``ok``
or ``broken``, ``data-total``, ``data-broken``), so a headless browser's DOM dump shows
whether the page rendered with all its images; ``#layout-check`` likewise counts the tables
wider than the page (``data-tables``, ``data-overflow``, ``data-wide``: their sections),
which scroll sideways inside their own box rather than widening the page.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from fxemu._errors import msg

from . import figures as F
from . import stats as S
from . import tables as T
from .costs import load_costs
from .runs import Runs, load_runs

__all__ = ["write_report"]


def _weight_epochs(runs: Runs) -> list[int]:
    """First, middle and last snapshot epoch over the usable runs."""
    have = sorted(set().union(*(r.weight_epochs() for r in runs.usable())) or [])
    if not have:
        return []
    return sorted({have[0], have[len(have) // 2], have[-1]})


def _check_epochs(epochs: Sequence[int], runs: Runs, what: str, lo: int) -> list[int]:
    out = []
    for e in epochs:
        if isinstance(e, bool) or not isinstance(e, int | np.integer) or e < lo:
            raise ValueError(msg(what, f"must be ints >= {lo}", list(epochs)))
        out.append(int(e))
    last = max([r.epochs or 0 for r in runs.usable()] + [r.epochs_done for r in runs.usable()]
               + [0])
    beyond = [e for e in out if e > last]
    if beyond:
        raise ValueError(msg(what, f"beyond the last epoch of every run ({last})", beyond))
    return sorted(dict.fromkeys(out))


# -- statistics as text -----------------------------------------------------------------------
def _f(v: float, spec: str, scale: float = 1.0) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float) and math.isinf(v):
        return "∞" if v > 0 else "−∞"
    return format(v * scale, spec)


def _p(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.2e}" if v < 1e-3 else f"{v:.3f}"


def _acc_text(acc: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "policy": acc["policy"], "seeds": acc["n"].astype(str),
        "final test acc [%]": [_f(m, ".2f", 100) + ("" if math.isnan(s) else
                                                    f" ± {s * 100:.2f}")
                               for m, s in zip(acc["mean"], acc["std"], strict=True)],
        "95% CI [%]": ["–" if math.isnan(lo) else f"[{lo * 100:.2f}, {hi * 100:.2f}]"
                       for lo, hi in zip(acc["ci_low"], acc["ci_high"], strict=True)],
        "Δ vs baseline [pp]": [_f(d, "+.2f", 100) for d in acc["diff"]],
        "Welch t": [_f(v, ".3f") for v in acc["welch_t"]],
        "Welch p": [_p(v) for v in acc["welch_p"]],
        "Mann–Whitney U": [_f(v, ".1f") for v in acc["mwu_u"]],
        "Mann–Whitney p": [_p(v) for v in acc["mwu_p"]],
    })


def _sqnr_text(sq: pd.DataFrame, epoch: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    d = sq[sq["epoch"] == epoch]
    rows, num = [], []
    for (pol, layer), g in d.groupby(["policy", "layer"], sort=False):
        row = {"policy": pol, "layer": layer}
        nrow = {"policy": pol, "layer": layer, "epoch": epoch}
        for kind in ("trajectory", "quantization"):
            v = g.loc[g["kind"] == kind, "sqnr_db"].to_numpy()
            if v.size == 0:
                row[f"{kind} SQNR [dB]"] = "–"
                nrow[f"{kind}_mean"] = nrow[f"{kind}_std"] = math.nan
                nrow[f"{kind}_n"] = 0
                continue
            if np.all(np.isposinf(v)):
                mean, sd = math.inf, math.nan
            else:
                fin = v[np.isfinite(v)]
                mean = float(fin.mean())
                sd = float(fin.std(ddof=1)) if fin.size > 1 else math.nan
            row[f"{kind} SQNR [dB]"] = ("∞ (exact)" if math.isinf(mean) else
                                        _f(mean, ".1f") + ("" if math.isnan(sd)
                                                           else f" ± {sd:.1f}"))
            nrow[f"{kind}_mean"], nrow[f"{kind}_std"], nrow[f"{kind}_n"] = mean, sd, v.size
        rows.append(row)
        num.append(nrow)
    order = {layer: i for i, layer in enumerate(dict.fromkeys(d["layer"]))}
    text = pd.DataFrame(rows)
    if len(text):
        text = text.sort_values("layer", key=lambda s: s.map(order), kind="stable")
        text = text.sort_values("policy", key=lambda s: s.map(
            {p: i for i, p in enumerate(dict.fromkeys(d["policy"]))}), kind="stable")
    return text, pd.DataFrame(num)


def _dist_text(dist: pd.DataFrame, epochs: Sequence[int]) -> pd.DataFrame:
    d = dist[dist["epoch"].isin(list(epochs))]
    rows = []
    for (pol, layer), g in d.groupby(["policy", "layer"], sort=False):
        row = {"policy": pol, "layer": layer}
        for e in epochs:
            h = g[g["epoch"] == e]
            if len(h):
                r = h.iloc[0]
                row[f"KS @{e}"] = f"{r['ks']:.3f} (p {_p(float(r['ks_p']))})"
                row[f"W1 @{e}"] = f"{r['wasserstein']:.3g}"
            else:
                row[f"KS @{e}"] = row[f"W1 @{e}"] = "–"
        rows.append(row)
    return pd.DataFrame(rows)


# -- HTML -------------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;
 max-width:1250px;padding:1.5em 2em;color:#222;line-height:1.45}
h1{margin-bottom:.2em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em}
th,td{border:1px solid #ccc;padding:.25em .55em;text-align:right;white-space:nowrap}
th{white-space:normal;min-width:4.5em;vertical-align:bottom}
th{background:#f1f3f5} td:first-child,th:first-child{text-align:left}
tr.partial td{background:#fff7db} tr.failed td{background:#fde2e1}
th:last-child{text-align:left}
td.err{text-align:left;white-space:normal;max-width:36em;font-family:monospace;font-size:.95em}
figure{margin:1.2em 0 2em 0} figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption,.caption{color:#444;font-size:.92em;max-width:60em}
.note{background:#eef4ff;border-left:4px solid #5b8def;padding:.5em 1em;max-width:60em}
.warn{background:#fff4e5;border-left:4px solid #f0a030;padding:.5em 1em;max-width:60em}
.files{font-size:.85em;color:#555} .scroll{overflow-x:auto}
nav a{margin-right:1em} #image-check{color:#666;font-size:.85em}
details pre{white-space:pre-wrap;font-size:.8em;background:#f7f7f7;padding:.5em}
"""

_SCRIPT = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var bad = imgs.filter(function (im) { return !(im.complete && im.naturalWidth > 0); });
  var el = document.getElementById('image-check');
  el.setAttribute('data-total', String(imgs.length));
  el.setAttribute('data-broken', String(bad.length));
  el.setAttribute('data-status', bad.length ? 'broken' : 'ok');
  el.textContent = 'image check: ' + (imgs.length - bad.length) + ' of ' + imgs.length +
    ' images loaded' + (bad.length ? '; broken: ' +
    bad.map(function (im) { return im.getAttribute('src'); }).join(', ') : '');
  var boxes = Array.prototype.slice.call(document.querySelectorAll('.scroll'));
  var wide = boxes.filter(function (b) { return b.scrollWidth > b.clientWidth + 1; });
  var lay = document.getElementById('layout-check');
  lay.setAttribute('data-tables', String(boxes.length));
  lay.setAttribute('data-overflow', String(wide.length));
  lay.setAttribute('data-wide', wide.map(function (b) {
    var s = b.closest('section'); return s ? s.id : '?'; }).join(' '));
  lay.textContent = 'layout check: ' + (boxes.length - wide.length) + ' of ' + boxes.length +
    ' tables fit the page width' + (wide.length ? ' (the others scroll sideways)' : '');
});
"""


def _e(text: object) -> str:
    return html.escape(str(text))


def _rel(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def _table_html(df: pd.DataFrame, files: dict[str, Path] | None, root: Path,
                caption: str = "") -> str:
    body = df.to_html(index=False, escape=True, na_rep="–", border=0)
    links = ""
    if files:
        links = ('<div class="files">files: ' + " · ".join(
            f'<a href="{_e(_rel(p, root))}">{k}</a>' for k, p in files.items()) + "</div>")
    cap = f'<p class="caption">{_e(caption)}</p>' if caption else ""
    return f'<div class="scroll">{body}</div>{cap}{links}'


def _runs_html(runs: Runs, files: dict[str, Path], root: Path) -> str:
    rt = T.run_table(runs)
    head = "".join(f"<th>{_e(c)}</th>" for c in rt.columns)
    rows = []
    for r, (_, row) in zip(runs.runs, rt.iterrows(), strict=True):
        cells = []
        for c in rt.columns:
            if c == "error":
                text = _e(row[c])
                if r.error and r.error.get("traceback"):
                    text += (f"<details><summary>traceback</summary><pre>"
                             f"{_e(r.error['traceback'])}</pre></details>")
                cells.append(f'<td class="err">{text}</td>')
            else:
                cells.append(f"<td>{_e(row[c])}</td>")
        rows.append(f'<tr class="{_e(r.status)}">{"".join(cells)}</tr>')
    links = ('<div class="files">files: ' + " · ".join(
        f'<a href="{_e(_rel(p, root))}">{k}</a>' for k, p in files.items()) + "</div>")
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>'
            f'{"".join(rows)}</tbody></table></div>{links}')


def _figure_html(f: F.FigureFile, root: Path) -> str:
    png, pdf = _rel(f.png, root), _rel(f.pdf, root)
    return (f'<figure id="fig-{_e(f.stem)}"><img src="{_e(png)}" alt="{_e(f.title)}">'
            f"<figcaption><b>{_e(f.title)}.</b> {_e(f.caption)} "
            f'<span class="files">(<a href="{_e(pdf)}">PDF</a>, '
            f'<a href="{_e(png)}">PNG</a>)</span></figcaption></figure>')


_FIGURE_STEMS = ("curves", "weights_*", "sqnr", "sqnr_epochs", "distances", "heatmap",
                 "pareto")
_TABLE_STEMS = ("runs", "comparison", "accuracy", "sqnr", "sqnr_all", "distances", "cost")


def _clear_previous(fig_dir: Path, tab_dir: Path) -> None:
    """Remove the files an earlier report wrote (only those names), so none goes stale."""
    for d, stems, exts in ((fig_dir, _FIGURE_STEMS, ("png", "pdf")),
                           (tab_dir, _TABLE_STEMS, ("md", "csv", "tex"))):
        if d.is_dir():
            for stem in stems:
                for ext in exts:
                    for f in d.glob(f"{stem}.{ext}"):
                        f.unlink()


def _cost_html(runs: Runs, costs: pd.DataFrame, fig_dir: Path, tab_dir: Path,
               out: Path) -> str:
    """The Pareto figure and the table of accuracy and cost per policy."""
    pts = F.pareto_points(runs, costs)
    body = ""
    bad = costs[costs["error"].notna()]
    if len(bad):
        body += ('<p class="note">No cost for ' + _e("; ".join(
            f"{r.policy}: {r.error}" for r in bad.itertuples())) + ".</p>")
    fig = F.pareto_figure(pts, fig_dir)
    body += (_figure_html(fig, out) if fig is not None else
             '<p class="note">No Pareto figure: fewer than two policies have both complete '
             "runs and a cost.</p>")
    if len(pts):
        text = pd.DataFrame({
            "policy": pts["policy"], "seeds": pts["n"].astype(int),
            "test acc [%]": [f"{100 * a:.2f}" for a in pts["acc"]],
            "LUT": pts["lut"].astype(int), "FF": pts["ff"].astype(int),
            "DSP": pts["dsp"].astype(int), "CARRY": pts["carry"].astype(int),
            "front (LUT)": ["yes" if f else "" for f in pts["front_lut"]],
            "front (DSP)": ["yes" if f else "" for f in pts["front_dsp"]]})
        cap = (f"Final test accuracy (mean over seeds, epoch {int(pts['epoch'].max())}) and "
               "datapath cost per policy: resources summed over the policy's distinct PEs, "
               f"from {', '.join(sorted(set(pts['tool'])))} "
               f"({', '.join(sorted(set(pts['mapping'])))} LUT mapping) on "
               f"{', '.join(sorted(set(pts['device'])))} (counts before vendor place and "
               "route: estimates). front: on the Pareto front of accuracy against LUTs / "
               "DSPs.")
        files = T.write_table(text, pts, tab_dir, "cost", cap)
        body += _table_html(text, files, out, cap)
    return body


def write_report(run_dirs: Sequence[str | Path], out: str | Path, *,
                 baseline: str | None = None, epochs: Sequence[int] | None = None,
                 weight_epochs: Sequence[int] | None = None) -> Path:
    """Write every figure and table of ``run_dirs`` and ``index.html`` into ``out``.

    Parameters
    ----------
    run_dirs : sequence of paths
        Run directories, or directories of runs (expanded one level).
    out : path
        Output directory (created). The figure and table files an earlier report wrote
        there are removed first, so none of them goes stale; other files are left alone.
    baseline : str, optional
        Reference policy of the significance tests, KS/Wasserstein distances and SQNR;
        default ``fw32bw32`` if present, else the first policy with a usable run.
    epochs : sequence of int, optional
        Epochs of the comparison table (default 1, 5, 10 where reached, and the last).
    weight_epochs : sequence of int, optional
        Snapshot epochs of the weight histograms (default first, middle and last; 0 is the
        initial weights).

    Returns
    -------
    Path
        The path of ``index.html``.
    """
    runs = load_runs(run_dirs)
    out = Path(out)
    fig_dir, tab_dir = out / "figures", out / "tables"
    out.mkdir(parents=True, exist_ok=True)
    _clear_previous(fig_dir, tab_dir)
    usable = runs.usable()
    parts: list[str] = []
    nav: list[tuple[str, str]] = []

    def section(anchor: str, title: str, body: str) -> None:
        nav.append((anchor, title))
        parts.append(f'<section id="{anchor}"><h2>{_e(title)}</h2>{body}</section>')

    n_st = {s: sum(r.status == s for r in runs) for s in ("complete", "partial", "failed")}
    rt_files = T.write_table(T.run_table(runs), runs.configs, tab_dir, "runs",
                             "Runs read: status, epochs finished / planned, error of a "
                             "failed run.")
    flags = ""
    if n_st["partial"]:
        flags += (f'<p class="warn">{n_st["partial"]} partial run(s) (highlighted yellow): '
                  "fewer epochs in metrics.csv than planned. They appear in curves, tables "
                  "and histograms for the epochs they finished, marked '(partial)', and are "
                  "left out of the statistics.</p>")
    if n_st["failed"]:
        flags += (f'<p class="warn">{n_st["failed"]} failed run(s) (highlighted red), with '
                  "the error each raised; they are left out of every figure and "
                  "statistic.</p>")
    section("runs", "Runs", flags + _runs_html(runs, rt_files, out))

    if not usable:
        parts.append('<p class="warn">Every run failed: there is nothing to plot.</p>')
        base = None
    else:
        base = S.choose_baseline(runs, baseline)
        runs.put_first(base)
        eps = (T.default_epochs(runs) if epochs is None
               else _check_epochs(epochs, runs, "epochs", 1))
        w_eps = (_weight_epochs(runs) if weight_epochs is None
                 else _check_epochs(weight_epochs, runs, "weight_epochs", 0))
        colors = F.policy_colors([p for p in runs.policies
                                  if any(r.policy == p for r in usable)])

        # comparison table
        comp = T.comparison_table(runs, eps)
        comp_text = T.format_comparison(comp, eps, compact=True)
        common = S.common_epoch(runs)
        lengths = T.planned_epochs(runs)
        mixed = bool(len(comp)) and bool(comp["length_differs"].any())
        cap = ("Comparison of policies: epochs = planned length of the runs; wall time = sum "
               "of the per-epoch training seconds in metrics.csv (evaluation excluded)"
               + ("; compile = one-off kernel compilation, recorded apart "
                  "(compile_seconds) and not part of the wall time" if "compile [s]"
                  in comp_text else "")
               + "; losses are cross-entropy in nats, accuracies in percent, after the "
               "epoch named (@N): test accuracy at every epoch shown, the other metrics at "
               "the last one (every metric at every epoch is in the CSV). Mean over seeds, ± "
               "sample standard deviation when there is more than one.")
        if (comp["compile_n"] < comp["wall_n"]).any():
            cap += (f" {T.COMPILE_FLAG.strip()}: wall time of runs that did not record their "
                    "compile time apart; their first epoch's seconds include the one-off "
                    "compilation of the kernels (emulated backend).")
        if mixed:
            cap += (f" {T.LENGTH_FLAG.strip()}: runs of different lengths share this table; "
                    "wall times and numbers at an epoch only some runs reached are not "
                    f"comparable across rows; compare at an epoch all reached (@{common}).")
        files = T.write_table(comp_text, comp, tab_dir, "comparison", cap)
        warn = ""
        if mixed:
            desc = "; ".join(f"{p}: {', '.join(map(str, v))}" for p, v in lengths.items())
            warn = (f'<p class="warn">Runs of different lengths (planned epochs — {_e(desc)}) '
                    "are flagged ≠ in the table. Wall times and last-epoch numbers of "
                    "different lengths are not comparable; the statistics below compare "
                    f"every complete run at epoch {common}, the last epoch all of them "
                    "reached.</p>")
        section("comparison", "Comparison table",
                warn + _table_html(comp_text, files, out, cap))

        # statistics of the final accuracy
        acc = S.accuracy_stats(runs, base)
        acc_text = _acc_text(acc)
        at = ("last epoch" if not mixed else
              f"epoch {common}, the last epoch every complete run reached: the runs have "
              "different lengths")
        cap = (f"Final test accuracy ({at}; complete runs only) over seeds: mean ± "
               f"sample standard deviation and the 95% Student-t confidence interval. "
               f"Against the baseline {base}: difference of means in percentage points, "
               "Welch's unequal-variance t-test (two-sided; needs ≥ 2 seeds on each side; "
               "undefined when neither side varies) and the two-sided Mann–Whitney U test "
               "(only with ≥ 3 seeds on each side).")
        files = T.write_table(acc_text, acc, tab_dir, "accuracy", cap)
        section("statistics", "Final accuracy: confidence intervals and tests",
                _table_html(acc_text, files, out, cap))

        # curves
        figs = [F.curves(runs, fig_dir, colors, baseline=base)]
        section("curves", "Loss and accuracy curves",
                "".join(_figure_html(f, out) for f in figs))

        # weight histograms
        body = ""
        if w_eps:
            for f in F.weight_histograms(runs, fig_dir, w_eps, colors):
                body += _figure_html(f, out)
        else:
            body = '<p class="note">No weight snapshots found.</p>'
        section("weights", "Weight distributions", body)

        # SQNR
        sq = S.sqnr_table(runs, base)
        body = ""
        if sq.empty:
            body = (f'<p class="note">No SQNR: no policy other than the baseline {_e(base)} '
                    "has a usable run.</p>")
        else:
            last = int(sq.loc[sq["kind"] == "trajectory", "epoch"].max()
                       if (sq["kind"] == "trajectory").any() else sq["epoch"].max())
            f1 = F.sqnr_figure(sq, fig_dir, base, last, colors)
            f2 = F.sqnr_epochs_figure(sq, fig_dir, base, colors)
            text, num = _sqnr_text(sq, last)
            cap = (f"SQNR per layer at epoch {last} (definitions in the figure caption), "
                   "mean ± sample standard deviation over seeds; ∞: the rounding is exact. "
                   "The CSV holds every epoch in tables/sqnr_all.csv.")
            files = T.write_table(text, num, tab_dir, "sqnr", cap)
            sq.to_csv(tab_dir / "sqnr_all.csv", index=False)
            files["csv (all epochs)"] = tab_dir / "sqnr_all.csv"
            if (sq["kind"] == "trajectory").sum() == 0:
                body += ('<p class="note">No trajectory SQNR: no run shares a seed with a '
                         f"{_e(base)} run.</p>")
            body += "".join(_figure_html(f, out) for f in (f1, f2) if f is not None)
            body += _table_html(text, files, out, cap)
        section("sqnr", "Quantization error (SQNR)", body)

        # distribution distances
        dist = S.weight_distances(runs, base)
        if dist.empty:
            body = (f'<p class="note">No distances: no policy other than the baseline '
                    f"{_e(base)} has weight snapshots.</p>")
        else:
            f3 = F.distance_figure(dist, fig_dir, base, colors)
            d_eps = [e for e in w_eps if e in set(dist["epoch"])]
            text = _dist_text(dist, d_eps)
            cap = (f"Kolmogorov–Smirnov statistic (with its p-value) and 1-Wasserstein "
                   f"distance (W1, weight units) of each layer's weights against {base} at "
                   "the epochs shown, both sides pooled over seeds; every epoch is in the "
                   "CSV.")
            files = T.write_table(text, dist, tab_dir, "distances", cap)
            body = (_figure_html(f3, out) if f3 is not None else "") + _table_html(
                text, files, out, cap)
        section("distances", "Weight-distribution distance from the baseline", body)

        # heatmap
        fh, why = F.heatmap(runs, fig_dir)
        body = (_figure_html(fh, out) if fh is not None else
                f'<p class="note">No format-sweep heatmap: {_e(why)}.</p>')
        section("sweep", "Format sweep", body)

        # accuracy against datapath cost (a sweep run with --cost wrote costs.json)
        costs = load_costs(run_dirs)
        if len(costs):
            section("cost", "Accuracy against datapath cost", _cost_html(runs, costs, fig_dir,
                                                                          tab_dir, out))

    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    summary = (f"{len(runs)} run(s): {n_st['complete']} complete, {n_st['partial']} partial, "
               f"{n_st['failed']} failed; policies: {', '.join(runs.policies)}"
               + (f"; baseline: {base}" if base else ""))
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>fxemu report</title><style>{_CSS}</style></head><body>"
        f"<h1>fxemu precision report</h1><p>{_e(summary)}. Written {stamp}.</p>"
        "<nav>" + "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in nav) + "</nav>"
        + "".join(parts)
        + '<p id="image-check" data-status="pending">image check: pending</p>'
        + '<p id="layout-check" class="files">layout check: pending</p>'
        f"<script>{_SCRIPT}</script></body></html>\n")
    index = out / "index.html"
    tmp = out / "index.html.tmp"
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, index)
    return index
