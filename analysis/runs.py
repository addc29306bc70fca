"""Reading run directories into tidy pandas tables.

A run directory is what :func:`fxemu.train.train` writes, laid out as :mod:`fxemu.rundir`
states: ``config.json`` (the resolved configuration), ``metrics.csv`` (one row per finished
epoch; ``compile_seconds`` is kept as a column when the run recorded it),
``weights/epoch_NNN.npz`` (snapshots, epoch 0 = initial weights) and ``checkpoint.npz``. A
sweep may add ``error.json`` (``{"error": exception type, "message": str, "traceback": str}``)
to a run that raised. Files are read through :mod:`fxemu.rundir`: a corrupt one is a
``ValueError`` naming the file and what is wrong.

Status of a run:

``complete``
    ``metrics.csv`` has ``config["epochs"]`` rows.
``partial``
    fewer rows (none at all when ``metrics.csv`` is missing): still running, or stopped.
``failed``
    the directory holds ``error.json``; its metrics, if any, are kept but not used for
    statistics.

A run is labelled by its policy name (``config["policy"]["name"]``), or ``<model>/<policy>``
when the runs read together trained more than one model (``config["model"]["name"]``; runs
written before models existed trained the founding network), and grouped over seeds
(``config["seed"]``); its id (column ``run``) is the directory name, made unique by prefixing
parent folders where two runs share a name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fxemu import rundir
from fxemu._errors import msg

__all__ = ["LAYERS", "Run", "Runs", "expand_run_dirs", "load_run", "load_runs"]

#: Weight tensors of the reference CNN, in the order figures and tables show them.
LAYERS = ("conv_w", "conv_b", "dense_w", "dense_b")  # the founding network's parameters

METRIC_COLUMNS = ("train_loss", "train_acc", "test_loss", "test_acc", "seconds",
                  "samples_per_s")


def _is_run(path: Path) -> bool:
    return rundir.is_run(path)


def _natural(name: str) -> list:
    """Sort key that orders digit runs by value: ``f8`` before ``f10``."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name)]


def expand_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Run directories named by ``paths``, a directory of runs expanded one level.

    A path that holds ``config.json`` or ``error.json`` is a run; otherwise each of its
    subdirectories that is a run is taken (in natural name order: ``f8`` before ``f10``).
    Raises ``ValueError`` naming a path that is neither, and ``FileNotFoundError`` for a path
    that does not exist.
    """
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise FileNotFoundError(msg(f"run directory {path}", "does not exist"))
        if not path.is_dir():
            raise ValueError(msg(f"run directory {path}", "is not a directory"))
        if _is_run(path):
            out.append(path)
            continue
        subs = sorted((s for s in path.iterdir() if s.is_dir() and _is_run(s)),
                      key=lambda s: _natural(s.name))
        if not subs:
            raise ValueError(msg(f"{path}", "is not a run directory (no config.json or "
                                 "error.json) and holds none one level down"))
        out.extend(subs)
    seen: set[Path] = set()
    unique = []
    for p in out:
        r = p.resolve()
        if r not in seen:
            seen.add(r)
            unique.append(p)
    if not unique:
        raise ValueError(msg("runs", "at least one run directory is needed", []))
    return unique


@dataclass
class Run:
    """One run directory, read."""

    path: Path
    config: dict
    metrics: pd.DataFrame
    status: str
    error: dict | None = None
    name: str = ""
    #: label runs ``<model>/<policy>`` (set by :class:`Runs` when runs of several models mix)
    show_model: bool = False
    _weights: dict[int, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)

    @property
    def model(self) -> str:
        """The model's name (``founding`` for runs written before models existed)."""
        m = self.config.get("model")
        if isinstance(m, dict) and isinstance(m.get("name"), str):
            return m["name"]
        return m if isinstance(m, str) else "founding"

    @property
    def policy(self) -> str:
        """The run's label: its policy name, prefixed ``<model>/`` when models mix."""
        pol = self.config.get("policy")
        if isinstance(pol, dict) and "name" in pol:
            name = str(pol["name"])
        elif self.error and self.error.get("policy"):
            name = str(self.error["policy"])
        else:
            name = "unknown"
        return f"{self.model}/{name}" if self.show_model else name

    @property
    def seed(self) -> int | None:
        s = self.config.get("seed", (self.error or {}).get("seed"))
        return None if s is None else int(s)

    @property
    def epochs(self) -> int | None:
        e = self.config.get("epochs")
        return None if e is None else int(e)

    @property
    def epochs_done(self) -> int:
        return len(self.metrics)

    def weight_epochs(self) -> list[int]:
        """Epochs with a snapshot in ``weights/`` (0 = initial weights)."""
        wdir = self.path / "weights"
        if not wdir.is_dir():
            return []
        out = []
        for f in wdir.glob("epoch_*.npz"):
            try:
                out.append(int(f.stem.split("_", 1)[1]))
            except ValueError:
                continue
        return sorted(out)

    def weights(self, epoch: int) -> dict[str, np.ndarray]:
        """The weight snapshot after ``epoch`` (float64 arrays by layer name), cached."""
        if epoch not in self._weights:
            f = self.path / "weights" / f"epoch_{int(epoch):03d}.npz"
            if not f.exists():
                raise ValueError(msg(f"run {self.name}", f"has no weight snapshot for epoch "
                                     f"{epoch}", str(f),
                                     f"available: {self.weight_epochs()}"))
            arrays = rundir.load_npz(f, "weight snapshot")
            bad = [k for k, a in arrays.items() if a.dtype.kind not in "fiu"]
            if bad:
                raise ValueError(msg(f"weight snapshot {f}", "arrays must be numeric", bad))
            self._weights[epoch] = {k: np.asarray(a, dtype=np.float64)
                                    for k, a in arrays.items()}
        return self._weights[epoch]


def _read_json(path: Path) -> dict:
    return rundir.read_json(path)


def _read_metrics(path: Path) -> pd.DataFrame:
    cols = ["epoch", *METRIC_COLUMNS]
    rows = rundir.read_metrics(path)
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in cols})
    df = pd.DataFrame(rows)
    cols += [c for c in rundir.METRIC_FIELDS if c in df.columns and c not in cols]
    df = df[cols].astype("float64")
    df["epoch"] = df["epoch"].astype("int64")
    return df.sort_values("epoch").reset_index(drop=True)


def load_run(path: str | Path) -> Run:
    """Read one run directory (see the module docstring for what makes a run and its status).

    Raises ``ValueError`` naming the directory when it is not a run or its files are
    unreadable.
    """
    path = Path(path)
    if not path.is_dir():
        raise ValueError(msg(f"run directory {path}", "is not a directory"))
    err_file, cfg_file = path / rundir.ERROR, path / rundir.CONFIG
    for f in (err_file, cfg_file):
        if f.is_dir():
            raise ValueError(msg(f"{f}", "is a directory, not a file"))
    error = None
    if err_file.is_file():
        error = _read_json(err_file)
        error.setdefault("error", "Error")
        error.setdefault("message", "")
    if not cfg_file.is_file() and error is None:
        raise ValueError(msg(f"{path}", "is not a run directory (no config.json)"))
    config = _read_json(cfg_file) if cfg_file.is_file() else dict(error.get("config") or {})
    metrics = _read_metrics(path) if cfg_file.is_file() else _read_metrics(path / "-")
    if error is not None:
        status = "failed"
    else:
        epochs = config.get("epochs")
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(msg(f"{cfg_file}", "epochs must be an int >= 1", epochs))
        if not isinstance(config.get("policy"), dict) or "name" not in config["policy"]:
            raise ValueError(msg(f"{cfg_file}", "policy must be a table with a name",
                                 config.get("policy")))
        status = "complete" if len(metrics) >= epochs else "partial"
    return Run(path=path, config=config, metrics=metrics, status=status, error=error,
               name=path.name)


def _unique_names(runs: list[Run]) -> None:
    """Directory names, prefixed by parent folders until they are unique."""
    depth = 1
    while True:
        names = ["/".join(r.path.resolve().parts[-depth:]) for r in runs]
        if len(set(names)) == len(names) or depth > 64:
            break
        depth += 1
    for r, n in zip(runs, names, strict=True):
        r.name = n


def _fmt_field(policy: dict, stage: str, role: str) -> str | None:
    v = (policy.get(stage) or {}).get(role)
    if isinstance(v, dict):
        v = v.get("acc")
    return None if v is None else str(v)


class Runs:
    """Several runs, as tidy tables.

    Attributes
    ----------
    runs : list of Run
        In the order given (directories of runs expanded in natural name order).
    configs : DataFrame
        One row per run: ``run, policy, model, seed, status, epochs, epochs_done, backend,
        n_train, n_test, batch_size, lr, data, master, fw_data, fw_acc, bw_data, path,
        error, message``; ``master``/``fw_data``/``fw_acc``/``bw_data`` are the format strings of
        ``update.master``, ``forward.activation``, ``forward.conv`` accumulator and
        ``backward.grad``.
    metrics : DataFrame
        One row per run × finished epoch: ``run, policy, seed, status, epoch`` and the
        ``metrics.csv`` columns.
    """

    def __init__(self, runs: Sequence[Run]) -> None:
        self.runs = list(runs)
        self._first: str | None = None
        mixed = len({r.model for r in self.runs}) > 1
        for r in self.runs:
            r.show_model = mixed
        _unique_names(self.runs)
        self._by_name = {r.name: r for r in self.runs}
        rows = []
        for r in self.runs:
            c, pol = r.config, r.config.get("policy") or {}
            data = c.get("data")
            rows.append({
                "run": r.name, "policy": r.policy, "model": r.model, "seed": r.seed,
                "status": r.status,
                "epochs": r.epochs, "epochs_done": r.epochs_done,
                "backend": c.get("backend"),
                "n_train": (data or {}).get("n_train") if isinstance(data, dict)
                else c.get("n_train"),
                "n_test": (data or {}).get("n_test") if isinstance(data, dict)
                else c.get("n_test"),
                "batch_size": c.get("batch_size"), "lr": c.get("lr"),
                "data": (data or {}).get("name") if isinstance(data, dict) else data,
                "master": _fmt_field(pol, "update", "master"),
                "fw_data": _fmt_field(pol, "forward", "activation"),
                "fw_acc": _fmt_field(pol, "forward", "conv"),
                "bw_data": _fmt_field(pol, "backward", "grad"),
                "path": str(r.path),
                "error": (r.error or {}).get("error"),
                "message": (r.error or {}).get("message"),
            })
        self.configs = pd.DataFrame(rows)
        if len(self.configs):
            self.configs["seed"] = self.configs["seed"].astype("Int64")
            self.configs["epochs"] = self.configs["epochs"].astype("Int64")
        frames = []
        for r in self.runs:
            if len(r.metrics):
                m = r.metrics.copy()
                m.insert(0, "status", r.status)
                m.insert(0, "seed", r.seed)
                m.insert(0, "policy", r.policy)
                m.insert(0, "run", r.name)
                frames.append(m)
        if frames:
            self.metrics = pd.concat(frames, ignore_index=True)
            self.metrics["seed"] = self.metrics["seed"].astype("Int64")
        else:
            self.metrics = pd.DataFrame(columns=["run", "policy", "seed", "status", "epoch",
                                                 *METRIC_COLUMNS])

    def __len__(self) -> int:
        return len(self.runs)

    def __iter__(self):
        return iter(self.runs)

    def __getitem__(self, name: str) -> Run:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(msg("run", "unknown run id", name,
                               "known: " + ", ".join(self._by_name))) from None

    @property
    def policies(self) -> list[str]:
        """Policy names: first-seen order, the one given to :meth:`put_first` leading."""
        names = list(dict.fromkeys(r.policy for r in self.runs))
        if self._first in names:
            names.remove(self._first)
            names.insert(0, self._first)
        return names

    def put_first(self, policy: str | None) -> None:
        """List ``policy`` (the baseline, say) first in :attr:`policies`."""
        self._first = policy

    def usable(self) -> list[Run]:
        """Runs that are not failed (complete or partial)."""
        return [r for r in self.runs if r.status != "failed"]

    def complete(self) -> list[Run]:
        return [r for r in self.runs if r.status == "complete"]

    def weights(self, run: str, epoch: int) -> dict[str, np.ndarray]:
        """The weight snapshot of run id ``run`` after ``epoch`` (layer name → array)."""
        return self[run].weights(epoch)

    @property
    def layers(self) -> list[str]:
        """Parameter names of the usable runs' models (first snapshot of each, in order)."""
        names: dict[str, None] = {}
        for r in self.usable():
            have = r.weight_epochs()
            if have:
                names.update(dict.fromkeys(r.weights(have[0])))
        return list(names) or list(LAYERS)

    def weight_table(self, epochs: Sequence[int] | None = None,
                     layers: Sequence[str] | None = None) -> pd.DataFrame:
        """Long table of weight values: ``run, policy, seed, epoch, layer, index, value``.

        ``epochs`` defaults to every snapshot each run holds, ``layers`` to :attr:`layers`;
        failed runs are left out.
        """
        layers = self.layers if layers is None else layers
        frames = []
        for r in self.usable():
            for e in (r.weight_epochs() if epochs is None else epochs):
                if e not in r.weight_epochs():
                    continue
                w = r.weights(e)
                for layer in layers:
                    if layer not in w:
                        continue
                    v = w[layer].ravel()
                    frames.append(pd.DataFrame({
                        "run": r.name, "policy": r.policy, "seed": r.seed, "epoch": e,
                        "layer": layer, "index": np.arange(v.size), "value": v}))
        if not frames:
            return pd.DataFrame(columns=["run", "policy", "seed", "epoch", "layer", "index",
                                         "value"])
        return pd.concat(frames, ignore_index=True)


def load_runs(paths: str | Path | Iterable[str | Path]) -> Runs:
    """Read run directories (or directories of runs, expanded one level) into :class:`Runs`.

    Raises ``ValueError`` naming a path that is not a run and holds no runs.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    return Runs([load_run(p) for p in expand_run_dirs(paths)])
