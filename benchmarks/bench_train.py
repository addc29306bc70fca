"""Training throughput of the reference CNN (forward + backward + update, batch 128).

Runs in one process: fxemu's native float32 backend against a PyTorch CPU model of the same
network (same thread count), and fxemu's emulated backend under fw16bw16, fw32bw32 and the
fixed16 preset. ``--full`` also times the founding experiment per preset (20 epochs on the
embedded 4 000/1 000 digits, or 10 000/1 000 from ``--data``). Prints a Markdown table; never
asserts.

    python benchmarks/bench_train.py [--steps 10] [--full] [--data embedded]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

import fxemu.nn as nn
from fxemu.backends import get_backend
from fxemu.data import load
from fxemu.policy import PRESETS
from fxemu.train import TrainConfig, train


def _rate(step, batches: list[tuple[np.ndarray, np.ndarray]], repeats: int) -> float:
    step(*batches[0])  # warm-up (compilation, caches)
    return _timed(step, batches, repeats)


def _timed(step, batches: list[tuple[np.ndarray, np.ndarray]], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for x, y in batches:
            step(x, y)
        best = min(best, time.perf_counter() - t0)
    return sum(len(y) for _, y in batches) / best


def fxemu_step(backend_name: str, policy: str):
    be = get_backend(backend_name, PRESETS[policy], 0)
    state = {"p": nn.Params(**{k: be.master(v) for k, v in nn.init_params(0).arrays().items()}),
             "step": 0}

    def step(x, y):
        state["p"], _, _ = nn.train_step(be, state["p"], x, y, 0.01, state["step"])
        state["step"] += 1

    return step


def torch_step(threads: int):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 12, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                              torch.nn.Flatten(), torch.nn.Linear(2028, 10))
    opt = torch.optim.SGD(net.parameters(), lr=0.01)

    def step(x, y):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        opt.step()

    return step


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8, help="batches per timed repeat")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--full", action="store_true", help="also time 20-epoch runs per preset")
    ap.add_argument("--data", default="embedded")
    args = ap.parse_args(argv)
    import numba

    threads = numba.get_num_threads()
    d = load(args.data)
    rng = np.random.default_rng(0)
    idx = [rng.choice(len(d.y_train), 128, replace=False) for _ in range(args.steps)]
    b64 = [(d.x_train[i], d.y_train[i]) for i in idx]
    b32 = [(x.astype(np.float32), y) for x, y in b64]
    print(f"# bench_train: {platform.processor() or platform.machine()}, numba threads "
          f"{threads}, numpy {np.__version__}, load {os.getloadavg()[0]:.1f}")
    rows = []
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):  # as fxemu.train.train runs
        native = _rate(fxemu_step("native", "fw32bw32"), b64, args.repeats)
        emulated = [(pol, _rate(fxemu_step("emulated", pol), b64[:3], args.repeats))
                    for pol in ("fw32bw32", "fw16bw16", "fixed16")]
    rows.append(("fxemu native", "fw32bw32 (float32)", native))
    ts = torch_step(threads)
    if ts is not None:
        rows.append(("PyTorch CPU", "float32", _rate(ts, b32, args.repeats)))
    rows += [("fxemu emulated", pol, r) for pol, r in emulated]
    print("\n| backend | policy | samples/s | vs PyTorch |\n|---|---|---:|---:|")
    ref = next((r for _, p, r in rows if p == "float32"), None)
    for name, pol, r in rows:
        ratio = f"{r / ref:.2f}" if ref else "-"
        print(f"| {name} | {pol} | {r:,.0f} | {ratio} |")
    if args.full:
        print("\n| preset | backend | epochs × samples | wall time | final test acc |\n"
              "|---|---|---|---:|---:|")
        for pol in ("fw32bw32", "fw16bw32", "fw16bw16", "fixed16"):
            t0 = time.perf_counter()
            res = train(TrainConfig(policy=pol, data=args.data, epochs=20), progress=False)
            wall = time.perf_counter() - t0
            m = res["metrics"][-1]
            n = len(d.y_train)
            print(f"| {pol} | {'native' if PRESETS[pol].native_dtype else 'emulated'} | "
                  f"20 × {n} | {wall:.0f} s | {m['test_acc']:.3f} |")


if __name__ == "__main__":
    main()
