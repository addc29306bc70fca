"""The run directory: its layout, lock, atomic writes, status, config hash and validated reads.

Every module that writes or reads a run (``fxemu.train``, the sweeps and studies, the report)
goes through this one. A run directory holds:

``config.json``
    the resolved configuration (JSON object; :func:`write_json`).
``metrics.csv``
    one row per finished epoch, columns :data:`METRIC_FIELDS`: ``epoch`` (an integer from 1),
    ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc``, ``seconds`` (training time of
    the epoch without evaluation and without Numba compilation), ``samples_per_s`` (training
    samples of the epoch over ``seconds``) and ``compile_seconds`` (time Numba spent compiling
    kernels during the epoch's training steps, 0 when every kernel came from the cache; absent
    in runs written before it existed, ``nan`` in rows carried over from such runs).
``weights/epoch_NNN.npz``
    the master weights after epoch NNN (``epoch_000.npz``: the initial weights), float64
    arrays by layer name.
``checkpoint.npz``
    where training resumes: the weights and the scalars ``config_hash`` (str), ``epoch`` and
    ``batch`` (the next batch to train: epoch ≥ 1, 0 ≤ batch < batches per epoch), ``step``
    (training steps done), ``loss_sum``, ``correct`` and ``seen`` (the running sums of the
    current epoch).
``error.json``
    written by a sweep for a run that raised: ``{"error": type, "message": str,
    "traceback": str}``.
``lock``
    the lock file (:class:`DirLock`): whoever holds ``flock`` on it owns the directory, and it
    records that process's pid. The kernel drops the lock when the process dies (even by
    ``kill -9``), so a stale lock file is simply taken over.

A sweep directory holds one run directory per run, ``sweep.json`` (the runs of the sweep) and
its own ``lock``.

Writes are atomic: the data goes to a temporary file created exclusively next to its target
(``O_CREAT | O_EXCL | O_NOFOLLOW``, a unique name ``.<name>.<12 hex>.tmp``), is fsynced and
renamed over the target. A crash or a full disk leaves the old file or the new one, never a
mix; a symbolic link planted at the target or at a temporary name is replaced, never written
through. Temporary files left by a killed process are removed when the directory is next locked.

Status of a run (:func:`status`): ``failed`` (``error.json`` present), ``complete``
(``metrics.csv`` has ``config["epochs"]`` rows), ``partial`` (some files, fewer rows), ``new``
(no directory, or an empty one).

Errors: a file whose contents are wrong raises ``ValueError``; a file system that refuses a
read or write (read-only, full, a path through a regular file) raises :class:`RunDirError`
(an ``OSError``); a directory another process holds raises :class:`RunDirBusy`. Each message
is one line naming the file. Locking uses ``fcntl.flock`` (POSIX systems).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import os
import re
import secrets
import zipfile
import zlib
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import msg

__all__ = [
    "CHECKPOINT", "CONFIG", "ERROR", "HASH_EXCLUDED", "LOCK", "METRICS", "METRIC_FIELDS",
    "SWEEP", "WEIGHTS", "DirLock", "RunDirBusy", "RunDirError", "atomic_write", "config_diff",
    "config_hash", "is_run", "legacy_config_hash", "load_checkpoint", "load_npz", "make_dir",
    "read_config", "read_json", "read_metrics", "save_npz", "snapshot_path", "status",
    "write_json", "write_metrics",
]

CONFIG = "config.json"
METRICS = "metrics.csv"
WEIGHTS = "weights"
CHECKPOINT = "checkpoint.npz"
ERROR = "error.json"
SWEEP = "sweep.json"
LOCK = "lock"

#: Columns of ``metrics.csv``, in order; ``compile_seconds`` may be absent in older runs.
METRIC_FIELDS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "seconds",
                 "samples_per_s", "compile_seconds")
_OPTIONAL_METRICS = ("compile_seconds",)

#: Configuration keys that do not change a run's results (left out of the hash and of diffs):
#: ``epochs`` too, since a finished run can be extended bit-identically.
HASH_EXCLUDED = ("versions", "checkpoint_every", "epochs")

_TMP = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")


class RunDirError(OSError):
    """A run or sweep directory cannot be created, locked, read or written (one-line message
    naming the path)."""


class RunDirBusy(RunDirError):
    """Another living process holds the directory's lock."""


def _oserror(path: Path, action: str, e: OSError) -> RunDirError:
    return RunDirError(msg(f"{path}", f"cannot be {action}", e.strerror or str(e)))


# -- layout -----------------------------------------------------------------------------------
def snapshot_path(run: str | Path, epoch: int) -> Path:
    """``run/weights/epoch_NNN.npz``: the weight snapshot after ``epoch``."""
    return Path(run) / WEIGHTS / f"epoch_{int(epoch):03d}.npz"


def is_run(path: str | Path) -> bool:
    """Whether ``path`` is a run directory (it holds ``config.json`` or ``error.json``, even
    unreadable ones: reading the run then says what is wrong with them)."""
    p = Path(path)
    return (p / CONFIG).exists() or (p / ERROR).exists()


def make_dir(path: str | Path) -> Path:
    """Create ``path`` (and its parents) as a directory; :class:`RunDirError` with one line
    when that is impossible (a regular file on the way, a read-only file system, ...)."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise RunDirError(msg(f"{p}", "is not a directory")) from None
    except OSError as e:
        raise _oserror(p, "created as a directory", e) from None
    if not p.is_dir():
        raise RunDirError(msg(f"{p}", "is not a directory"))
    return p


# -- atomic writes ----------------------------------------------------------------------------
def atomic_write(path: str | Path, data: bytes | Callable[[io.BufferedWriter], None]) -> None:
    """Write ``data`` (bytes, or a function that writes to a binary file) to ``path`` atomically.

    The bytes go to a temporary file created exclusively in the same folder (never following a
    link), are fsynced and renamed over ``path``; a link at ``path`` is replaced, its target
    left alone. On any failure the temporary file is removed, ``path`` keeps its old contents
    and :class:`RunDirError` names the file.
    """
    path = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) \
        | getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)  # less the umask, as open() creates files
            break
        except FileExistsError:
            continue
        except OSError as e:
            raise _oserror(path, "written", e) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            if isinstance(data, bytes | bytearray | memoryview):
                fh.write(data)
            else:
                data(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise _oserror(path, "written", e) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON to ``path`` atomically."""
    atomic_write(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def save_npz(path: str | Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` as an (uncompressed) ``.npz`` archive to ``path`` atomically."""
    atomic_write(path, lambda fh: np.savez(fh, **arrays))


def _remove_stale_temporaries(directory: Path) -> None:
    for d in (directory, directory / WEIGHTS):
        with contextlib.suppress(OSError):
            for f in d.iterdir():
                if _TMP.match(f.name) and not f.is_dir():
                    with contextlib.suppress(OSError):
                        f.unlink()


# -- locking ----------------------------------------------------------------------------------
class DirLock:
    """Exclusive ownership of a run or sweep directory for the duration of a ``with`` block.

    Takes ``flock(LOCK_EX | LOCK_NB)`` on ``directory/lock`` (created without following a
    link) and writes this process's pid into it. When another process holds the lock,
    :class:`RunDirBusy` says ``"<what> <directory>: in use by pid N"``. A lock file left by a
    process that died holds no ``flock`` (the kernel released it), so it is taken over;
    ``took_over`` then holds that process's pid. Temporary files a killed writer left are
    removed once the lock is held. The directory must exist (:func:`make_dir`).
    """

    def __init__(self, directory: str | Path, what: str = "run directory") -> None:
        self.directory = Path(directory)
        self.what = what
        self.took_over: int | None = None
        self._fd: int | None = None

    def __enter__(self) -> DirLock:
        import fcntl

        path = self.directory / LOCK
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC",
                                                                                0)
        try:
            fd = os.open(path, flags, 0o644)
        except OSError as e:
            raise _oserror(path, "opened as a lock file", e) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            who = f"pid {pid}" if pid is not None else "another process"
            raise RunDirBusy(msg(f"{self.what} {self.directory}", f"in use by {who}",
                                 hint="wait for it to finish or choose another directory")
                             ) from None
        except OSError as e:
            os.close(fd)
            raise _oserror(path, "locked", e) from None
        self.took_over = _read_pid(fd)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as e:
            os.close(fd)
            raise _oserror(path, "written", e) from None
        self._fd = fd
        _remove_stale_temporaries(self.directory)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # releases the flock
            self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


# -- configuration ----------------------------------------------------------------------------
def config_hash(resolved: Mapping[str, Any]) -> str:
    """16 hex digits of SHA-256 over the resolved configuration, without the keys that do not
    change results (:data:`HASH_EXCLUDED`: versions, ``checkpoint_every``, ``epochs``)."""
    keep = {k: v for k, v in resolved.items() if k not in HASH_EXCLUDED}
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def legacy_config_hash(resolved: Mapping[str, Any]) -> str:
    """The hash checkpoints written before ``epochs`` left the hash carry (it included
    ``epochs``): such runs still resume."""
    keep = {k: v for k, v in resolved.items() if k not in ("versions", "checkpoint_every")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def config_diff(old: Mapping[str, Any], new: Mapping[str, Any], *,
                ignore: Collection[str] = HASH_EXCLUDED, limit: int = 4) -> list[str]:
    """The fields where two resolved configurations differ, as ``"name: old there, new here"``
    (nested tables as dotted names, at most ``limit`` entries plus a count of the rest)."""
    out: list[str] = []

    def walk(a: Any, b: Any, name: str) -> None:
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            for k in sorted(set(a) | set(b), key=str):
                walk(a.get(k), b.get(k), f"{name}.{k}" if name else str(k))
        elif a != b:
            out.append(f"{name}: {_short(a)} there, {_short(b)} here")

    walk({k: v for k, v in old.items() if k not in ignore},
         {k: v for k, v in new.items() if k not in ignore}, "")
    if len(out) > limit:
        out = [*out[:limit], f"and {len(out) - limit} more"]
    return out


def _short(v: Any, cap: int = 40) -> str:
    r = repr(v)
    return r if len(r) <= cap else r[:cap - 3] + "..."


# -- reading ----------------------------------------------------------------------------------
def _regular_file(path: Path, what: str) -> None:
    if path.is_dir():
        raise ValueError(msg(f"{what} {path}", "is a directory, not a file"))
    if not path.is_file():
        raise FileNotFoundError(msg(f"{what} {path}", "does not exist"))


def read_json(path: str | Path) -> dict:
    """A JSON object from ``path``; ``ValueError`` naming the file when it is a directory, not
    JSON, or not an object."""
    path = Path(path)
    _regular_file(path, "file")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ValueError(msg(f"{path}", "is not readable JSON", _short(str(e), 80))) from None
    if not isinstance(d, dict):
        raise ValueError(msg(f"{path}", "must hold a JSON object", type(d).__name__))
    return d


def read_config(run: str | Path) -> dict:
    """``run/config.json`` (see :func:`read_json`)."""
    return read_json(Path(run) / CONFIG)


def _number(text: str | None, path: Path, line: int, col: str) -> float:
    try:
        return float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(msg(f"{path}", f"line {line}, column {col}: not a number",
                             _short(text))) from None


def read_metrics(run: str | Path) -> list[dict]:
    """The rows of ``run/metrics.csv`` (``[]`` when the file does not exist), validated.

    Each row maps the columns present (:data:`METRIC_FIELDS`; ``compile_seconds`` may be
    missing) to numbers: ``epoch`` an ``int`` ≥ 1 (``"3.0"`` is read as 3: older resumed runs
    wrote that), the rest ``float`` (``nan``/``inf`` allowed: a diverged loss). Epochs are
    distinct and the rows come sorted by epoch. ``ValueError`` names the file and the line for
    a directory, a missing column, an extra or missing cell, a non-number, or a bad epoch.
    """
    path = Path(run) / METRICS
    if path.is_dir():
        raise ValueError(msg(f"{path}", "is a directory, not a file"))
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(msg(f"{path}", "is not readable", _short(str(e), 80))) from None
    if not text.strip():
        return []
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader)
        body = list(reader)
    except csv.Error as e:
        raise ValueError(msg(f"{path}", "is not a readable CSV file", str(e))) from None
    need = [c for c in METRIC_FIELDS if c not in _OPTIONAL_METRICS]
    missing = [c for c in need if c not in header]
    if missing:
        raise ValueError(msg(f"{path}", "lacks metrics columns", missing))
    cols = [c for c in METRIC_FIELDS if c in header]
    where = {c: header.index(c) for c in cols}
    rows, seen = [], set()
    for i, cells in enumerate(body, start=2):
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            raise ValueError(msg(f"{path}", f"line {i}: {len(cells)} cells for "
                                 f"{len(header)} columns"))
        row: dict[str, int | float] = {}
        for c in cols:
            row[c] = _number(cells[where[c]], path, i, c)
        e = row["epoch"]
        if not (math.isfinite(e) and e == int(e) and e >= 1):
            raise ValueError(msg(f"{path}", f"line {i}: epoch must be an integer >= 1",
                                 cells[where["epoch"]]))
        row["epoch"] = int(e)
        if row["epoch"] in seen:
            raise ValueError(msg(f"{path}", f"line {i}: epoch {row['epoch']} appears twice"))
        seen.add(row["epoch"])
        rows.append(row)
    return sorted(rows, key=lambda r: r["epoch"])


def write_metrics(run: str | Path, rows: Iterable[Mapping[str, float]]) -> None:
    """Write ``run/metrics.csv`` atomically: columns :data:`METRIC_FIELDS`, ``epoch`` as an
    integer, a missing ``compile_seconds`` as ``nan``."""
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=list(METRIC_FIELDS), restval="nan",
                       extrasaction="ignore", lineterminator="\r\n")
    w.writeheader()
    for r in rows:
        w.writerow({**r, "epoch": int(r["epoch"])})
    atomic_write(Path(run) / METRICS, buf.getvalue().encode("utf-8"))


def load_npz(path: str | Path, what: str = "file") -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` archive at ``path`` (no pickles).

    ``ValueError`` naming ``what`` and the file for a directory, a truncated or bit-flipped
    archive (CRC mismatch), a ``.npy`` array or anything else that is not an ``.npz``, and an
    array of object dtype.
    """
    path = Path(path)
    _regular_file(path, what)
    bad = msg(f"{what} {path}", "is corrupt or not an .npz archive")
    errors = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error,
              NotImplementedError)
    try:
        # numpy leaks the file it opened when the archive is corrupt: open it here
        with open(path, "rb") as fh:
            z = np.load(fh, allow_pickle=False)
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ValueError(msg(f"{what} {path}",
                                     "is a single .npy array, not an .npz archive"))
            with z:
                arrays = {k: z[k] for k in z.files}
    except errors as e:
        if str(e).startswith(f"{what} {path}"):
            raise
        raise ValueError(f"{bad}; {_short(str(e), 80)}") from None
    for k, a in arrays.items():
        if a.dtype.hasobject:
            raise ValueError(msg(f"{what} {path}", f"array {k!r} has object dtype"))
    return arrays


def _int_scalar(ck: dict, name: str, path: Path, lo: int, hi: int | None = None,
                exact: str = "") -> int:
    a = ck[name]
    if a.shape != () or a.dtype.kind not in "iu":
        shown = a.tolist() if a.size <= 4 else f"array of shape {a.shape}"
        raise ValueError(msg(f"checkpoint {path}", f"{name} must be an integer", shown))
    v = int(a)
    if v < lo or (hi is not None and v > hi):
        rng = f">= {lo}" if hi is None else f"{lo} ({exact})" if exact else f"in {lo}..{hi}"
        raise ValueError(msg(f"checkpoint {path}", f"{name} must be {rng}", v))
    return v


def load_checkpoint(path: str | Path, *, digests: Collection[str],
                    shapes: Mapping[str, tuple[int, ...]], n_samples: int, batch_size: int,
                    master: Callable[[np.ndarray], np.ndarray]
                    | Callable[[str], Callable[[np.ndarray], np.ndarray]] | None = None,
                    differs: Callable[[], list[str]] | None = None,
                    state: Mapping[str, tuple[int, ...]] | None = None) -> dict:
    """Read and validate ``checkpoint.npz``; returns its scalars (Python numbers) and weights.

    Checks, each failing with a one-line ``ValueError`` naming the file: a readable ``.npz``
    (:func:`load_npz`); every field present; ``config_hash`` in ``digests`` (else "written by a
    different configuration", naming the fields ``differs()`` reports); ``epoch`` ≥ 1,
    0 ≤ ``batch`` < batches per epoch, ``step`` = (epoch − 1)·batches + batch, ``seen`` =
    batch·batch_size and 0 ≤ ``correct`` ≤ ``seen`` (all integers), ``loss_sum`` a float;
    each weight a float64 array of the shape in ``shapes``, finite, and equal to
    ``master(weight)`` (its own rounding into the master format: a value off that grid was not
    written by training; ``master`` may instead take the weight's name and return that
    weight's rounding, for per-layer master formats). ``state``: the optimizer arrays by name
    and shape, each present, numeric and finite; returned as ``out["state"]``.
    """
    path = Path(path)
    ck = load_npz(path, "checkpoint")
    need = ["config_hash", "epoch", "batch", "step", "loss_sum", "correct", "seen", *shapes,
            *(state or {})]
    missing = [k for k in need if k not in ck]
    if "config_hash" in missing:
        raise ValueError(msg(f"checkpoint {path}", "is missing fields", missing))
    h = ck["config_hash"]  # first: another model's checkpoint lacks this model's weights
    if h.shape != () or h.dtype.kind != "U" or str(h) not in digests:
        why = differs() if differs is not None else []
        raise ValueError(msg(f"checkpoint {path}", "was written by a different configuration"
                             + (" (" + "; ".join(why) + ")" if why else ""),
                             hint="use a new --out directory"))
    if missing:
        raise ValueError(msg(f"checkpoint {path}", "is missing fields", missing))
    nb = (n_samples + batch_size - 1) // batch_size
    out: dict[str, Any] = {"config_hash": str(h)}
    out["epoch"] = _int_scalar(ck, "epoch", path, 1)
    out["batch"] = _int_scalar(ck, "batch", path, 0, nb - 1)
    want_step = (out["epoch"] - 1) * nb + out["batch"]
    out["step"] = _int_scalar(ck, "step", path, want_step, want_step,
                              "(epoch - 1) * batches per epoch + batch")
    want_seen = out["batch"] * batch_size
    out["seen"] = _int_scalar(ck, "seen", path, want_seen, want_seen, "batch * batch_size")
    out["correct"] = _int_scalar(ck, "correct", path, 0, out["seen"])
    ls = ck["loss_sum"]
    if ls.shape != () or ls.dtype.kind != "f":
        raise ValueError(msg(f"checkpoint {path}", "loss_sum must be a float", ls.dtype.str))
    out["loss_sum"] = float(ls)
    for name, shape in shapes.items():
        w = ck[name]
        where = f"checkpoint {path}"
        if w.dtype != np.float64:
            raise ValueError(msg(where, f"weight {name} must be float64", str(w.dtype)))
        if w.shape != tuple(shape):
            raise ValueError(msg(where, f"weight {name} must have shape {tuple(shape)}",
                                 w.shape))
        if not np.isfinite(w).all():
            raise ValueError(msg(where, f"weight {name} holds NaN or infinite values"))
        if master is not None:
            rounding = master(name) if getattr(master, "by_name", False) else master
            try:
                with np.errstate(over="ignore", invalid="ignore"):
                    q = np.asarray(rounding(w), dtype=np.float64)
            except (ValueError, OverflowError, TypeError):
                q = np.full_like(w, np.nan)  # not even representable: every value is off
            off = np.flatnonzero(q != w)
            if off.size:
                i = int(off[0])
                raise ValueError(msg(where, f"weight {name} is not in the master-weight format "
                                     f"({off.size} values off its grid, e.g. index {i})",
                                     float(w.flat[i])))
        out[name] = w
    out["state"] = {}
    for name, shape in (state or {}).items():
        a = ck[name]
        if a.shape != tuple(shape) or a.dtype.kind not in "iuf" or not np.isfinite(a).all():
            raise ValueError(msg(f"checkpoint {path}", f"optimizer state {name} must be a finite "
                                 f"number array of shape {tuple(shape)}", a.shape))
        out["state"][name] = a
    return out


def status(run: str | Path, epochs: int | None = None) -> str:
    """``"failed"``, ``"complete"``, ``"partial"`` or ``"new"`` (see the module docstring).

    ``epochs`` defaults to ``config.json``'s; a run whose ``metrics.csv`` or ``config.json``
    cannot be read counts as ``partial`` (resuming it reports the problem).
    """
    d = Path(run)
    if (d / ERROR).exists():
        return "failed"
    try:
        if epochs is None:
            epochs = int(read_config(d)["epochs"])
        if len(read_metrics(d)) >= epochs:
            return "complete"
    except (ValueError, KeyError, TypeError, FileNotFoundError):
        pass
    try:
        empty = not d.is_dir() or not any(f.name != LOCK for f in d.iterdir())
    except OSError:
        empty = False
    return "new" if empty else "partial"
