"""Sweeps: a grid of precision policies × seeds × other training settings, one run each.

A sweep spec (TOML or JSON; the same keys as a mapping for :func:`run_sweep`)::

    policies = ["fw32bw32", "fw16bw16", "my_policy.toml"]  # presets, policy files, tables
    seeds = [0, 1, 2]

    [train]            # TrainConfig fields every run shares (see fxemu.train.TrainConfig)
    n_train = 2000
    n_test = 500
    epochs = 10
    batch_size = 100

    [grid]             # optional: TrainConfig fields to vary; the runs are the cartesian product
    lr = [0.01, 0.05]

    models = ["founding", "lenet5", "my_net.toml"]   # optional: the model axis

A model is a preset name, a ``.toml``/``.json`` model spec (relative paths read from the spec
file's folder) or a spec table with a ``name`` (:func:`fxemu.nn.load_model`). With ``models``
the runs are model-major and each run's directory name starts with ``<model>_``; without it
every run trains ``[train] model`` (default: the founding network) and names stay as before.

A policy is a preset name, a ``.toml``/``.json`` policy file (relative paths are read from
the spec file's folder) or a policy table (``[[policies]]`` in TOML) with a ``name``. The
whole spec is validated before any run starts: every policy is built, every training config
checked, every data set loaded once, and every existing run directory compared with the run
that would go there.

Each run gets its own directory under ``out``, named ``<policy>_seed<seed>`` plus ``_<hash>``
(6 hex digits of the SHA-256 of the varied ``grid`` values; 16 digits for combinations whose
first 6 digits collide, as they do by chance in grids of a few thousand) when the grid varies
anything; ``sweep.json`` in ``out`` lists every run with its varied values and configuration
(written atomically). A run directory follows the contract of :mod:`fxemu.rundir`; a run that
raised holds ``error.json`` (``error``: the exception type, ``message``, ``traceback``) instead
of finished metrics. While a sweep runs it holds the lock of ``out`` (a second ``run_sweep`` on
it raises :class:`fxemu.rundir.RunDirBusy` naming the first one's pid) and each run holds its own.

Re-running a sweep is resuming it: finished runs (``metrics.csv`` with ``epochs`` rows) are
skipped, interrupted ones continue from their checkpoint (``train(..., resume=True)``, bit for
bit the run that was never interrupted), and failed ones are tried again (``retry_failed``).
A spec whose ``epochs`` grew extends the finished runs (bit for bit the longer run).

Executors: a local process pool (default), or a Dask ``distributed`` scheduler (``scheduler=``
its address). The local pool is ``workers`` single-process executors, one run each at a time,
so a worker that dies (``BrokenProcessPool``) names exactly the run it was running; that run is
recorded as failed, its executor is replaced and the sweep goes on. A local worker dies
with the sweep process (killed by the kernel on Linux, by a watchdog thread elsewhere), so
a sweep killed with ``kill -9`` leaves no worker behind to race its re-run. Under Dask, a run whose
worker died more often than the scheduler's ``distributed.scheduler.allowed-failures`` comes
back as ``KilledWorker`` and is recorded the same way. Dask workers must see ``out`` at the
same path (a shared file system).

Threads: each run uses ``threads`` Numba threads (default 1) and single-threaded BLAS (as
:func:`fxemu.train.train` does). The runs of a sweep are independent, so one process per core
keeps every core busy without synchronisation, whereas the network's kernels are small (a
batch of ~100 images): a Numba thread team per run would wake and join at every kernel call,
and ``workers`` runs × N threads would oversubscribe the cores, each run's threads waiting on
threads the other runs preempted. Measured on 2 cores (two ``fixed16`` runs, 2 000 samples ×
2 epochs, ``fxemu sweep --workers W --threads T``): W=2, T=1 7.9–8.8 s; W=1, T=2 11.4 s;
W=1, T=1 11.4 s; W=2, T=2 12.0 s.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import multiprocessing
import os
import re
import sys
import time
import traceback as tb
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from fxemu import rundir
from fxemu._errors import msg
from fxemu.policy import Policy, load_policy
from fxemu.train import TrainConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["Run", "SweepResult", "build_runs", "load_spec", "run_status", "run_sweep"]

_SPEC_KEYS = ("policies", "seeds", "train", "grid", "models")
_CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))
_SHARED_FIELDS = tuple(f for f in _CONFIG_FIELDS if f not in ("policy", "seed"))
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")

TrainFn = Callable[..., object]


@dataclass(frozen=True)
class Run:
    """One run of a sweep.

    ``config`` holds :class:`~fxemu.train.TrainConfig` keyword arguments with the policy as
    a resolved table (``Policy.to_dict()``), so a run is self-contained on any worker.
    ``varied`` holds the ``grid`` values of this run (empty when the grid varies nothing).
    """

    name: str
    config: dict
    varied: dict = field(default_factory=dict)

    @property
    def epochs(self) -> int:
        return int(self.config.get("epochs", TrainConfig.epochs))


@dataclass
class SweepResult:
    """What a sweep did: run names by outcome, and every run's directory."""

    out: Path
    runs: list[Run]
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # name -> "Error: message"

    @property
    def run_dirs(self) -> list[Path]:
        return [self.out / r.name for r in self.runs]

    @property
    def ok(self) -> bool:
        return not self.failed


# -- the spec ---------------------------------------------------------------------------------
def load_spec(path: str | Path) -> dict:
    """Read a sweep spec file (``.toml`` or ``.json``) into a mapping; policy file paths in it
    are made relative to the file's folder."""
    p = Path(path)
    if p.suffix.lower() not in (".toml", ".json"):
        raise ValueError(msg("sweep spec", "must be a .toml or .json file", str(p)))
    if not p.is_file():
        raise FileNotFoundError(msg("sweep spec", "not found", str(p)))
    try:
        raw = p.read_bytes().decode()
        spec = tomllib.loads(raw) if p.suffix.lower() == ".toml" else json.loads(raw)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(msg(f"sweep spec {p}", "cannot be parsed", str(e))) from None
    if not isinstance(spec, dict):
        raise ValueError(msg(f"sweep spec {p}", "must be a table", type(spec).__name__))
    for key in ("policies", "models"):
        if isinstance(spec.get(key), list):
            spec[key] = [_relative(v, p.parent) for v in spec[key]]
    return spec


def _relative(v: object, base: Path) -> object:
    if isinstance(v, str) and Path(v).suffix.lower() in (".toml", ".json"):
        q = Path(v)
        return str(q if q.is_absolute() else base / q)
    return v


def _policy(v: object, i: int) -> Policy:
    what = f"sweep policies[{i}]"
    if isinstance(v, dict):
        if not isinstance(v.get("name"), str) or not v["name"]:
            raise ValueError(msg(what, "a policy table needs a name", sorted(v)))
    elif not isinstance(v, str | Policy):
        raise TypeError(msg(what, "must be a preset name, a policy file or a policy table", v))
    try:
        return load_policy(v)
    except (ValueError, TypeError, FileNotFoundError) as e:
        raise type(e)(msg(what, str(e))) from None


def _models(v: object) -> list[tuple[str, dict]]:
    """(name, resolved spec table) of each model of the ``models`` axis."""
    from fxemu.nn import load_model

    if isinstance(v, str | dict):
        v = [v]
    if not isinstance(v, list | tuple) or not v:
        raise ValueError(msg("sweep models", "must be a non-empty list", v))
    out: dict[str, dict] = {}
    for i, m in enumerate(v):
        if isinstance(m, dict) and (not isinstance(m.get("name"), str) or not m["name"]):
            raise ValueError(msg(f"sweep models[{i}]", "a model table needs a name", sorted(m)))
        try:
            model = load_model(m)
        except (ValueError, TypeError, FileNotFoundError) as e:
            raise type(e)(msg(f"sweep models[{i}]", str(e))) from None
        d = model.to_dict()
        if out.setdefault(model.name, d) != d:
            raise ValueError(msg("sweep models", "two different models share a name",
                                 model.name))
    return list(out.items())


def _seeds(v: object) -> list[int]:
    if isinstance(v, int) and not isinstance(v, bool):
        v = [v]
    if not isinstance(v, list | tuple) or not v:
        raise ValueError(msg("sweep seeds", "must be a non-empty list of ints", v))
    for s in v:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ValueError(msg("sweep seeds", "must be ints >= 0", s))
    if len(set(v)) != len(v):
        raise ValueError(msg("sweep seeds", "must not repeat", list(v)))
    return list(v)


def _table(spec: Mapping, key: str) -> dict:
    t = spec.get(key, {})
    if not isinstance(t, dict):
        raise ValueError(msg(f"sweep {key}", "must be a table", t))
    bad = sorted(set(t) - set(_SHARED_FIELDS))
    if bad:
        hint = ("policies and seeds have their own keys" if set(bad) & {"policy", "seed"}
                else "known: " + ", ".join(_SHARED_FIELDS))
        raise ValueError(msg(f"sweep {key}", "unknown TrainConfig fields", bad, hint))
    return dict(t)


def _safe(name: str) -> str:
    return _UNSAFE.sub("_", name).strip("._") or "policy"


_SHORT_HASH = 6  # hex digits of a run name's grid hash (24 bits), as sweeps have always used
_LONG_HASH = 16  # hex digits (64 bits) for the combinations whose short hashes collide


def _digest(varied: dict) -> str:
    """SHA-256 (hex) of the varied grid values, as canonical JSON."""
    return hashlib.sha256(json.dumps(varied, sort_keys=True).encode()).hexdigest()


def _grid_tags(combos: Sequence[dict]) -> list[str]:
    """The hash tag of each grid combination in run names.

    6 hex digits (24 bits) name a combination whose 6-digit prefix no other combination of
    the sweep shares, so every sweep that ever ran keeps its run directory names; 24 bits
    collide by the birthday bound at a few thousand combinations (50 % at ~4 800), and the
    combinations that share a prefix get 16 digits (64 bits) instead. The tag depends only
    on the combination's values and on which other combinations the grid holds, never on
    their order.
    """
    full = [_digest(v) for v in combos]
    short = [d[:_SHORT_HASH] for d in full]
    count: dict[str, int] = {}
    for s in short:
        count[s] = count.get(s, 0) + 1
    return [s if count[s] == 1 else d[:_LONG_HASH] for s, d in zip(short, full, strict=True)]


def build_runs(spec: Mapping) -> list[Run]:
    """Validate a sweep spec and expand it into its runs (policy-major, then grid, then seed).

    Raises ``ValueError``/``TypeError``/``FileNotFoundError`` with a one-line message naming
    the offending key; nothing is trained or written.
    """
    if not isinstance(spec, Mapping):
        raise TypeError(msg("sweep spec", "must be a mapping", type(spec).__name__))
    unknown = sorted(set(spec) - set(_SPEC_KEYS))
    if unknown:
        raise ValueError(msg("sweep spec", "unknown keys", unknown,
                             "known: " + ", ".join(_SPEC_KEYS)))
    pols = spec.get("policies")
    if isinstance(pols, str | dict):
        pols = [pols]
    if not isinstance(pols, list | tuple) or not pols:
        raise ValueError(msg("sweep policies", "must be a non-empty list", pols))
    policies = [_policy(v, i) for i, v in enumerate(pols)]
    seeds = _seeds(spec.get("seeds", [0]))
    models = _models(spec["models"]) if "models" in spec else [(None, None)]
    shared = _table(spec, "train")
    if "models" in spec and ("model" in shared or "model" in spec.get("grid", {})):
        raise ValueError(msg("sweep models", "is also set as a [train]/[grid] model; keep one"))
    grid = _table(spec, "grid")
    for k, vals in grid.items():
        if not isinstance(vals, list) or not vals:
            raise ValueError(msg(f"sweep grid.{k}", "must be a non-empty list", vals))
        if k in shared:
            raise ValueError(msg(f"sweep grid.{k}", "is also set in [train]; keep one"))
    keys = sorted(grid)
    combos = [dict(zip(keys, c, strict=True)) for c in itertools.product(*(grid[k] for k in keys))]
    hashed = len(combos) > 1
    tags = _grid_tags(combos)

    seen: dict[str, dict] = {}
    for p in policies:
        d = p.to_dict()
        if seen.setdefault(p.name, d) != d:
            raise ValueError(msg("sweep policies", "two different policies share a name",
                                 p.name, "give each policy table its own name"))
    runs: list[Run] = []
    names: dict[str, str] = {}
    for (mname, mspec), p, (varied, tag), seed in itertools.product(
            models, dict((p.name, p) for p in policies).values(), zip(combos, tags, strict=True),
            seeds):
        kw = {**shared, **varied, "policy": p.to_dict(), "seed": seed}
        if mspec is not None:
            kw["model"] = mspec
        try:
            cfg = TrainConfig(**kw)
        except (ValueError, TypeError) as e:
            raise type(e)(msg(f"sweep run {p.name} seed {seed}", str(e))) from None
        name = (f"{_safe(mname)}_" if mname else "") + f"{_safe(p.name)}_seed{seed}" \
            + (f"_{tag}" if hashed else "")
        if name in names:
            raise ValueError(msg("sweep", "two runs map to one directory name", name,
                                 f"policies {names[name]!r} and {p.name!r}"))
        names[name] = p.name
        runs.append(Run(name, {k: getattr(cfg, k) for k in _CONFIG_FIELDS}, varied))
    return runs


def _check_data(runs: Sequence[Run]) -> None:
    """Load each distinct data set once (cheap for the embedded one), so a bad path or sample
    count fails before any run starts."""
    from fxemu.data import load

    for key in {(r.config["data"], r.config["n_train"], r.config["n_test"]) for r in runs}:
        try:
            load(key[0], n_train=key[1], n_test=key[2])
        except (ValueError, TypeError, FileNotFoundError) as e:
            raise type(e)(msg("sweep data", str(e))) from None


# -- run directories --------------------------------------------------------------------------
def _metric_rows(run_dir: Path) -> int:
    """Finished epochs in ``metrics.csv`` (0 when it is missing or unreadable: resuming such a
    run reports what is wrong with it)."""
    try:
        return len(rundir.read_metrics(run_dir))
    except (ValueError, OSError):
        return 0


def run_status(run_dir: str | Path, epochs: int) -> str:
    """``"finished"`` (``metrics.csv`` has ``epochs`` rows), ``"failed"`` (``error.json``),
    ``"partial"`` (a checkpoint or some files, no error), or ``"new"`` (no directory, or one
    holding nothing but a lock file)."""
    d = Path(run_dir)
    if _metric_rows(d) >= epochs:
        return "finished"
    if (d / rundir.ERROR).exists():
        return "failed"
    return "new" if rundir.status(d, epochs) == "new" else "partial"


def _mismatch(run_dir: Path, run: Run) -> str | None:
    """The first field where ``run_dir/config.json`` differs from ``run``, or None.

    ``checkpoint_every`` does not change results and ``epochs`` may grow (the run is then
    extended, bit for bit the longer run), so neither counts."""
    from fxemu.train import resolve

    path = run_dir / rundir.CONFIG
    if not (path.exists() or path.is_symlink()):
        return None
    try:
        stored = rundir.read_json(path)
    except (OSError, ValueError) as e:
        return f"config.json unreadable ({e})"
    from fxemu.nn import load_model

    cfg = TrainConfig(**run.config)
    policy, backend = resolve(cfg)
    want = {**run.config, "policy": policy.to_dict(), "backend": backend,
            "model": load_model(cfg.model).to_dict()}
    for k, v in want.items():
        if k in rundir.HASH_EXCLUDED:
            continue  # does not change the result
        have = stored.get(k)
        if k == "data":
            have = have.get("spec") if isinstance(have, dict) else have
        if k == "model":  # runs written before models trained the founding network
            have = load_model("founding").to_dict() if have is None else \
                {m: u for m, u in have.items() if m != "input_shape"}
        elif have is None and k in ("momentum_coef", "weight_decay", "loss_scale"):
            have = getattr(TrainConfig, k)
        if have != v:
            return f"{k}: {have!r} there, {v!r} here"
    return None


def _write_error(run_dir: Path, exc: BaseException, message: str | None = None,
                 trace: str | None = None) -> dict:
    rec = {"error": type(exc).__name__, "message": message if message is not None else str(exc),
           "traceback": trace if trace is not None else "".join(tb.format_exception(exc))}
    try:
        rundir.make_dir(run_dir)
        rundir.write_json(run_dir / rundir.ERROR, rec)
    except OSError as e:  # the error is still reported, just not recorded on disk
        rec["message"] += f" (error.json not written: {e})"
    return {"status": "failed", "error": rec["error"], "message": rec["message"]}


def _set_threads(threads: int | None) -> int | None:
    """Set this thread's Numba thread count; returns the previous one (None: unchanged)."""
    if threads is None:
        return None
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    return before


def _execute(run_dir: str, config: dict, threads: int | None,
             train_fn: TrainFn | None) -> dict:
    """Train one run into ``run_dir`` (resuming its checkpoint if any); never raises for a
    failed run: the error is written to ``error.json`` and returned (except when another
    process holds the run directory: its files are that process's, nothing is written)."""
    d = Path(run_dir)
    t0 = time.perf_counter()
    before = None
    try:
        before = _set_threads(threads)
        (d / rundir.ERROR).unlink(missing_ok=True)
        if train_fn is None:
            from fxemu.train import train as train_fn
        train_fn(TrainConfig(**config), d, resume=True, progress=False)
    except rundir.RunDirBusy as e:
        return {"status": "failed", "error": type(e).__name__, "message": str(e)}
    except Exception as e:
        return _write_error(d, e)
    finally:
        _set_threads(before)  # a run in the caller's process leaves its setting alone
    rows = _metric_rows(d)
    if rows < config["epochs"]:
        e = RuntimeError(f"training returned with {rows} of {config['epochs']} epochs in "
                         "metrics.csv")
        return _write_error(d, e, trace="")
    return {"status": "done", "seconds": time.perf_counter() - t0}


# -- executors --------------------------------------------------------------------------------
_PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h)
_WATCH_INTERVAL_S = 0.5  # how often the portable watchdog looks for the parent


def _die_with_parent_linux() -> bool:
    """Ask Linux to SIGKILL this process when its parent dies (``prctl(PR_SET_PDEATHSIG)``);
    False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int) -> None:
    """Exit this process (no cleanup, as SIGKILL would) once ``parent`` is no longer its
    parent: an orphan is re-parented to init or a subreaper."""
    while True:
        if os.getppid() != parent:
            os._exit(1)
        time.sleep(_WATCH_INTERVAL_S)


def _worker_init(parent: int) -> None:
    """Pool initializer: the worker dies with the sweep process that started it.

    Without this, a worker whose parent was killed (``kill -9``) finishes the run it holds,
    racing a re-run of the sweep on the same run directory, and then waits for work forever.
    On Linux the kernel kills the worker (``PR_SET_PDEATHSIG``, set before the parent check
    so a parent that died in between is seen); elsewhere a daemon thread polls
    ``os.getppid()`` every 0.5 s. (The kernel's signal follows the *thread* that started the
    worker: the pool starts its worker from the thread that submits, the one running
    :func:`run_sweep`, which waits for every run before it returns.)
    """
    linux = _die_with_parent_linux()
    if os.getppid() != parent:
        os._exit(1)
    if not linux:
        import threading

        threading.Thread(target=_watch_parent, args=(parent,), name="fxemu-parent-watch",
                         daemon=True).start()


def _run_local(todo: list[Run], out: Path, workers: int, threads: int | None,
               train_fn: TrainFn | None, report: Callable[[Run, dict], None]) -> None:
    if workers == 0:  # in this process: no isolation, for debugging and tests
        for run in todo:
            report(run, _execute(str(out / run.name), run.config, threads, train_fn))
        return
    ctx = multiprocessing.get_context("spawn")  # fork after Numba/BLAS threads is unsafe
    slots: list[ProcessPoolExecutor | None] = [None] * min(workers, len(todo))
    active: dict[Future, tuple[int, Run]] = {}
    queue = list(reversed(todo))
    try:
        while queue or active:
            busy = {i for i, _ in active.values()}
            for i in range(len(slots)):
                if queue and i not in busy:
                    if slots[i] is None:
                        slots[i] = ProcessPoolExecutor(max_workers=1, mp_context=ctx,
                                                       initializer=_worker_init,
                                                       initargs=(os.getpid(),))
                    run = queue.pop()
                    f = slots[i].submit(_execute, str(out / run.name), run.config, threads,
                                        train_fn)
                    active[f] = (i, run)
            finished, _ = wait(list(active), return_when=FIRST_COMPLETED)
            for f in finished:
                i, run = active.pop(f)
                try:
                    res = f.result()
                except BrokenProcessPool as e:
                    res = _write_error(out / run.name, e, "the worker process running this run "
                                       "died (killed, out of memory or a crash in native code)")
                    slots[i].shutdown(wait=True)
                    slots[i] = None
                except Exception as e:  # e.g. an argument that does not pickle
                    res = _write_error(out / run.name, e)
                report(run, res)
    finally:
        for s in slots:
            if s is not None:
                s.shutdown(wait=True, cancel_futures=True)


def _run_dask(todo: list[Run], out: Path, scheduler: str, threads: int | None,
              train_fn: TrainFn | None, report: Callable[[Run, dict], None]) -> None:
    try:
        from distributed import Client, as_completed
    except ImportError:
        from fxemu._errors import BackendUnavailable

        raise BackendUnavailable(msg("sweep --scheduler", "needs dask distributed",
                                     hint="pip install 'fxemu[analysis]'")) from None
    import uuid

    tag = uuid.uuid4().hex[:8]
    with Client(scheduler, set_as_default=False) as client:
        futs = {}
        for run in todo:
            f = client.submit(_execute, str(out / run.name), run.config, threads, train_fn,
                              key=f"fxemu-sweep-{run.name}-{tag}", pure=False)
            futs[f] = run
        for f in as_completed(list(futs), loop=client.loop):
            run = futs[f]
            try:
                res = f.result()
            except Exception as e:  # KilledWorker, a lost connection, a cancelled task
                res = _write_error(out / run.name, e)
            report(run, res)
            f.release()


# -- the sweep --------------------------------------------------------------------------------
def run_sweep(spec: Mapping | str | Path | Iterable[Run], out: str | Path, *,
              workers: int | None = None, scheduler: str | None = None,
              threads: int | None = 1, retry_failed: bool = True, progress: bool = True,
              train_fn: TrainFn | None = None, cost: str | None = None,
              cost_mapping: str = "abc9") -> SweepResult:
    """Run (or resume) a sweep: one run directory per run under ``out``.

    Parameters
    ----------
    spec : mapping, path or runs
        A sweep spec (see the module docstring), a spec file, or runs from :func:`build_runs`.
    out : path
        Folder of the run directories (created); ``sweep.json`` lists the runs.
    workers : int, optional
        Local processes (default: the CPU count, at most the number of runs to do); 0 runs
        everything in this process, with no protection from a crash. Ignored with ``scheduler``.
    scheduler : str, optional
        Address of a Dask distributed scheduler (``tcp://host:8786``); the runs become its
        tasks.
    threads : int or None
        Numba threads per run (default 1, see the module docstring); None leaves Numba's
        setting alone.
    retry_failed : bool
        Try runs holding ``error.json`` again (default); False leaves them failed.
    progress : bool
        A progress bar over the whole sweep (runs done / failed / skipped).
    train_fn : callable, optional
        Trains one run: ``train_fn(TrainConfig, run_dir, resume=True, progress=False)``;
        default :func:`fxemu.train.train`. It must be importable by the workers.
    cost : str, optional
        A device of ``fxemu hw cost`` (``xc7z020``, ``xczu7ev``, ``ecp5-85k``): after the
        runs, each distinct policy's datapath cost from synthesis is computed once (cached)
        and written to ``out/costs.json`` (:func:`fxemu.analysis.costs.write_sweep_costs`;
        needs the ``rtl`` extra, checked before any run trains).
    cost_mapping : str
        The LUT mapping of those syntheses (:data:`fxemu.hw.tools.cost.MAPPINGS`, default
        ``abc9``: Yosys's default script).

    Returns
    -------
    SweepResult
        Names of the runs done now, skipped (finished before, or failed and not retried) and
        failed (with ``"Error: message"``); a failed run never stops the others.
    """
    if isinstance(spec, str | Path):
        spec = load_spec(spec)
    runs = build_runs(spec) if isinstance(spec, Mapping) else list(spec)
    if not runs or not all(isinstance(r, Run) for r in runs):
        raise ValueError(msg("sweep", "no runs to do", spec))
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 0):
        raise ValueError(msg("sweep workers", "must be an int >= 0", workers))
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise ValueError(msg("sweep threads", "must be None or an int >= 1", threads))
    out = Path(out).absolute()
    for r in runs:
        why = _mismatch(out / r.name, r)
        if why:
            raise ValueError(msg(f"run directory {out / r.name}",
                                 "holds a run of another configuration", why,
                                 "use a new --out or delete that directory"))
    _check_data(runs)
    if cost is not None:
        from fxemu.hw.tools.cost import device, lut_mapping, tool_versions

        lut_mapping(cost_mapping)  # an unknown device or mapping, a missing extra: before
        tool_versions(device(cost))  # training

    rundir.make_dir(out)
    with rundir.DirLock(out, what="sweep directory"):
        res = _run_locked(runs, out, workers, scheduler, threads, retry_failed, progress,
                          train_fn)
        if cost is not None:
            from .costs import write_sweep_costs

            write_sweep_costs(out, (load_policy(r.config["policy"]) for r in runs), cost,
                              mapping=cost_mapping)
        return res


def _run_locked(runs: list[Run], out: Path, workers: int | None, scheduler: str | None,
                threads: int | None, retry_failed: bool, progress: bool,
                train_fn: TrainFn | None) -> SweepResult:
    manifest = {"runs": [{"name": r.name, "varied": r.varied, "config": r.config}
                         for r in runs]}
    rundir.write_json(out / rundir.SWEEP, manifest)

    result = SweepResult(out=out, runs=runs)
    todo: list[Run] = []
    for r in runs:
        status = run_status(out / r.name, r.epochs)
        if status == "finished" or (status == "failed" and not retry_failed):
            result.skipped.append(r.name)
            if status == "failed":
                result.failed[r.name] = _error_line(out / r.name)
        else:
            todo.append(r)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(runs), initial=len(result.skipped), unit="run", desc="sweep",
                   dynamic_ncols=True)

    def report(run: Run, res: dict) -> None:
        if res["status"] == "done":
            result.done.append(run.name)
        else:
            result.failed[run.name] = f"{res['error']}: {res['message']}"
        if bar is not None:
            bar.set_postfix(done=len(result.done), failed=len(result.failed),
                            skipped=len(result.skipped), refresh=False)
            bar.update(1)

    if bar is not None:
        bar.set_postfix(done=0, failed=len(result.failed), skipped=len(result.skipped))
    try:
        if todo and scheduler is not None:
            _run_dask(todo, out, scheduler, threads, train_fn, report)
        elif todo:
            n = (os.cpu_count() or 1) if workers is None else workers
            _run_local(todo, out, n, threads, train_fn, report)
    finally:
        if bar is not None:
            bar.close()
    return result


def _error_line(run_dir: Path) -> str:
    try:
        e = rundir.read_json(run_dir / rundir.ERROR)
        return f"{e.get('error')}: {e.get('message')}"
    except (OSError, ValueError):
        return "error.json unreadable"
