"""Tables: the founding study's comparison table for any runs, and the statistics tables,
written as Markdown, CSV and LaTeX.

The comparison table has one row per policy: the number of runs, their planned length in
epochs, the wall time (the sum of a run's ``metrics.csv`` ``seconds`` column: training time of
every epoch, evaluation excluded), the one-off kernel compilation time apart (the sum of the
``compile_seconds`` column, where the run recorded it; ``seconds`` then excludes it), and
train/test loss and accuracy at chosen epochs. Every number is the mean over the policy's
seeds, with ``± sample standard deviation`` when there is more than one. Per-epoch numbers use
every run that reached that epoch (a partial run counts for the epochs it finished); wall time
uses the complete runs (the partial ones only when none is complete, and then says so).

Runs of different lengths are flagged, not compared as if equal: ``length_differs`` marks
the rows whose planned epochs differ from another row's (or within the row), and the text
table shows it next to the epochs. Compare such rows at an epoch all of them reached.

CSV files carry the plain numbers (``*_mean``, ``*_std``, ``*_n`` columns); Markdown and
LaTeX carry the formatted text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fxemu._errors import msg

from .runs import Run, Runs

__all__ = ["comparison_table", "compile_seconds", "default_epochs", "format_comparison",
           "planned_epochs", "run_table", "write_table"]

_METRICS = (("train_loss", "train loss"), ("train_acc", "train acc [%]"),
            ("test_loss", "test loss"), ("test_acc", "test acc [%]"))


def default_epochs(runs: Runs) -> list[int]:
    """Epochs 1, 5 and 10 where reached, plus the last epoch any run planned or reached; when
    runs of different lengths are present, also the shortest planned length (the epoch at
    which they can be compared)."""
    last = 0
    for r in runs.usable():
        last = max(last, r.epochs or 0, r.epochs_done)
    if last == 0:
        return []
    lengths = {e for v in planned_epochs(runs).values() for e in v}
    common = {min(lengths)} if len(lengths) > 1 else set()
    return sorted({e for e in (1, 5, 10) if e <= last} | {last} | common)


def planned_epochs(runs: Runs) -> dict[str, list[int]]:
    """Per policy with a usable run: the distinct planned lengths (``epochs`` of its config,
    the finished epochs where a config has none) of its usable runs, ascending."""
    out: dict[str, set[int]] = {}
    for r in runs.usable():
        out.setdefault(r.policy, set()).add(r.epochs or r.epochs_done)
    return {p: sorted(v) for p, v in out.items()}


def compile_seconds(run: Run) -> float | None:
    """The run's one-off kernel compilation time: the sum of its ``metrics.csv``
    ``compile_seconds`` column, or None for a run that did not record one (its ``seconds``
    then include the compilation of its first epoch)."""
    if "compile_seconds" not in run.metrics.columns:  # the run reader keeps it where recorded
        return None
    v = run.metrics["compile_seconds"]
    v = pd.to_numeric(v, errors="coerce")
    return float(v.sum()) if v.notna().any() else None


def _policy_status(runs: Runs, pol: str) -> str:
    st = [r.status for r in runs if r.policy == pol]
    parts = []
    for s in ("complete", "partial", "failed"):
        if st.count(s):
            parts.append(f"{st.count(s)} {s}")
    return ", ".join(parts)


def comparison_table(runs: Runs, epochs: Sequence[int] | None = None) -> pd.DataFrame:
    """The comparison table as numbers, one row per policy with a usable run (see the module
    docstring).

    Columns: ``policy, runs`` (status counts), ``epochs`` (the planned lengths, e.g.
    ``"3"`` or ``"2, 3"``), ``length_differs`` (True when the table holds more than one
    length), ``n, wall_s_mean, wall_s_std, wall_partial, wall_n`` (runs in the wall time),
    ``compile_s_mean, compile_s_std,
    compile_n`` (over the wall-time runs that recorded ``compile_seconds``; NaN and 0 when
    none did), then for each epoch ``e`` and metric ``m``: ``m@e_mean, m@e_std, m@e_n``
    (accuracies as fractions). ``std`` is NaN for one run.
    """
    eps = default_epochs(runs) if epochs is None else [int(e) for e in epochs]
    for e in eps:
        if e < 1:
            raise ValueError(msg("epochs", "must be >= 1", e))
    m = runs.metrics
    m = m[m["status"] != "failed"] if len(m) else m
    rows = []
    lengths = planned_epochs(runs)
    mixed = len({e for v in lengths.values() for e in v}) > 1
    for pol in runs.policies:
        usable = [r for r in runs.usable() if r.policy == pol]
        if not usable:  # only failed runs: listed in the run table, not here
            continue
        row: dict[str, object] = {"policy": pol, "runs": _policy_status(runs, pol),
                                  "epochs": ", ".join(map(str, lengths[pol])),
                                  "length_differs": mixed, "n": len(usable)}
        done = [r for r in usable if r.status == "complete"]
        wall_runs = done or usable
        walls = np.array([float(r.metrics["seconds"].sum()) for r in wall_runs])
        row["wall_s_mean"] = float(walls.mean()) if len(walls) else math.nan
        row["wall_s_std"] = float(walls.std(ddof=1)) if len(walls) > 1 else math.nan
        row["wall_partial"] = bool(usable) and not done
        row["wall_n"] = len(wall_runs)
        comp = np.array([c for c in map(compile_seconds, wall_runs) if c is not None])
        row["compile_s_mean"] = float(comp.mean()) if len(comp) else math.nan
        row["compile_s_std"] = float(comp.std(ddof=1)) if len(comp) > 1 else math.nan
        row["compile_n"] = len(comp)
        pm = m[m["policy"] == pol] if len(m) else m
        for e in eps:
            at = pm[pm["epoch"] == e] if len(pm) else pm
            for col, _ in _METRICS:
                v = at[col].to_numpy(dtype=float) if len(at) else np.array([])
                row[f"{col}@{e}_mean"] = float(v.mean()) if len(v) else math.nan
                row[f"{col}@{e}_std"] = float(v.std(ddof=1)) if len(v) > 1 else math.nan
                row[f"{col}@{e}_n"] = len(v)
        rows.append(row)
    return pd.DataFrame(rows)


def _pm(mean: float, std: float, digits: int, scale: float = 1.0) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    s = f"{mean * scale:.{digits}f}"
    if std is not None and not (isinstance(std, float) and math.isnan(std)):
        s += f" ± {std * scale:.{digits}f}"
    return s


#: Marks, in the text table, the lengths of runs when the table holds more than one length.
LENGTH_FLAG = " ≠"
#: Marks a wall time that may include one-off compilation (no ``compile_seconds`` recorded).
COMPILE_FLAG = " †"


def format_comparison(table: pd.DataFrame, epochs: Sequence[int], *,
                      compact: bool = False) -> pd.DataFrame:
    """The comparison table as text: ``mean ± std``, accuracies in percent.

    ``epochs`` shows the planned lengths, followed by :data:`LENGTH_FLAG` when runs of
    different lengths share the table; the wall time is followed by :data:`COMPILE_FLAG` when
    some of its runs did not record their compile time apart, and by ``(partial)`` when it
    comes from partial runs. ``compact`` keeps the table to a page's width: test accuracy at
    every epoch, the other metrics at the last epoch only.
    """
    out = pd.DataFrame({"policy": table["policy"], "runs": table["runs"]})
    if "epochs" in table:
        out["epochs"] = [f"{e}{LENGTH_FLAG if d else ''}"
                         for e, d in zip(table["epochs"], table["length_differs"], strict=True)]
    out["wall time [s]"] = [
        _pm(a, b, 1) + (COMPILE_FLAG if c < n else "") + (" (partial)" if p else "")
        for a, b, p, c, n in zip(table["wall_s_mean"], table["wall_s_std"],
                                 table["wall_partial"], table.get("compile_n", table["n"]),
                                 table.get("wall_n", table["n"]), strict=True)]
    if "compile_s_mean" in table and table["compile_n"].gt(0).any():
        out["compile [s]"] = [_pm(a, b, 1) for a, b in
                              zip(table["compile_s_mean"], table["compile_s_std"], strict=True)]
    for e in epochs:
        for col, label in _METRICS:
            if compact and col != "test_acc" and e != epochs[-1]:
                continue
            acc = col.endswith("acc")
            out[f"{label} @{e}"] = [
                _pm(a, b, 2 if acc else 4, 100.0 if acc else 1.0)
                for a, b in zip(table[f"{col}@{e}_mean"], table[f"{col}@{e}_std"],
                                strict=True)]
    return out


def run_table(runs: Runs) -> pd.DataFrame:
    """One row per run: id, policy, model, seed, status, epochs done/planned, error."""
    c = runs.configs
    err = [("" if not isinstance(e, str) else f"{e}: {mm}")
           for e, mm in zip(c["error"], c["message"], strict=True)]
    return pd.DataFrame({
        "run": c["run"], "policy": c["policy"], "model": c["model"],
        "seed": ["–" if pd.isna(s) else str(int(s)) for s in c["seed"]],
        "status": c["status"],
        "epochs": [f"{d}/{'?' if pd.isna(p) else int(p)}"
                   for d, p in zip(c["epochs_done"], c["epochs"], strict=True)],
        "backend": c["backend"].fillna("–"), "master format": c["master"].fillna("–"),
        "error": err,
    })


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                "^": r"\textasciicircum{}"}
_TEX_UNICODE = {"±": r"$\pm$", "–": "--", "—": "---", "∞": r"$\infty$", "Δ": r"$\Delta$",
                "≥": r"$\geq$", "≤": r"$\leq$", "×": r"$\times$", "·": r"$\cdot$",
                "→": r"$\rightarrow$", "√": r"$\surd$", "²": r"$^2$", "−": "-"}


def _tex_escape(text: str) -> str:
    return "".join(_TEX_SPECIAL.get(c, c) for c in text)


def _tex_unicode(tex: str) -> str:
    return "".join(_TEX_UNICODE.get(c, c) for c in tex)


def write_table(text: pd.DataFrame, numbers: pd.DataFrame, out: str | Path, stem: str,
                caption: str) -> dict[str, Path]:
    """Write ``stem.md`` and ``stem.tex`` from ``text`` and ``stem.csv`` from ``numbers``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / f"{stem}.md", "csv": out / f"{stem}.csv", "tex": out / f"{stem}.tex"}
    md = text.to_markdown(index=False, disable_numparse=True)
    paths["md"].write_text(f"{md}\n\n{caption}\n", encoding="utf-8")
    numbers.to_csv(paths["csv"], index=False)
    tex = text.to_latex(index=False, escape=True, caption=_tex_escape(caption),
                        label=f"tab:{stem}", column_format="l" * 2 + "r" * (text.shape[1] - 2))
    paths["tex"].write_text(_tex_unicode(tex), encoding="utf-8")
    return paths
