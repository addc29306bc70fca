"""Training throughput of the reference CNN (forward + backward + update, batch 128).

Runs in one process: fxemu's native float32 backend against a PyTorch CPU model of the same
network (same thread count), and fxemu's emulated backend under fw16bw16, fw32bw32 and the
fixed16 preset. Native and PyTorch are timed interleaved (``--rounds`` rounds, each the best
of ``--repeats``; medians and the spread of the per-round ratios), native both with BLAS
single-threaded (as :func:`fxemu.train.train` runs it) and with BLAS's default threads.
``--full`` also times the founding experiment per preset (20 epochs on the embedded
4 000/1 000 digits, or 10 000/1 000 from ``--data``; ``--presets`` selects). Prints Markdown
tables and the load average; never asserts.

    python benchmarks/bench_train.py [--steps 8] [--rounds 5] [--no-emulated]
    python benchmarks/bench_train.py --full --presets fw32bw32 [--data embedded]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

import fxemu.nn as nn
from fxemu.backends import get_backend
from fxemu.data import load
from fxemu.policy import PRESETS
from fxemu.train import TrainConfig, train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleaved, median, rate, ratios, spread


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
    ap.add_argument("--rounds", type=int, default=3,
                    help="interleaved native/PyTorch rounds (median counts)")
    ap.add_argument("--no-emulated", action="store_true", help="skip the emulated rows")
    ap.add_argument("--omp-passive", action="store_true",
                    help="OMP_WAIT_POLICY=PASSIVE for every OpenMP runtime in the process "
                         "(PyTorch's too; its faster setting on a loaded machine)")
    ap.add_argument("--full", action="store_true", help="also time 20-epoch runs per preset")
    ap.add_argument("--presets", default="fw32bw32,fw16bw32,fw16bw16,fixed16",
                    help="comma-separated presets for --full")
    ap.add_argument("--data", default="embedded")
    args = ap.parse_args(argv)
    if args.omp_passive:  # before any OpenMP runtime loads: each reads it once
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    presets = args.presets.split(",")
    unknown = sorted(set(presets) - set(PRESETS))
    if unknown:
        ap.error(f"--presets: unknown preset(s) {unknown}; choose from {sorted(PRESETS)}")
    import numba

    threads = numba.get_num_threads()
    d = load(args.data)
    rng = np.random.default_rng(0)
    idx = [rng.choice(len(d.y_train), 128, replace=False) for _ in range(args.steps)]
    b64 = [(d.x_train[i], d.y_train[i]) for i in idx]
    b32 = [(x.astype(np.float32), y) for x, y in b64]
    print(f"# bench_train: {platform.processor() or platform.machine()}, numba threads "
          f"{threads}, numpy {np.__version__}, OMP_WAIT_POLICY "
          f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}, load {os.getloadavg()[0]:.1f}")
    rows = []
    from threadpoolctl import threadpool_limits

    nat = fxemu_step("native", "fw32bw32")
    ts = torch_step(threads)  # loads PyTorch (and its OpenMP) before fxemu's team starts
    sides = {"native": (nat, b64), "native_blas": (nat, b64)}
    if ts is not None:
        sides["torch"] = (ts, b32)

    def progress(r: int, rates: dict) -> None:
        print(f"# round {r + 1}: native {rates['native'][-1]:,.0f}, PyTorch "
              f"{rates['torch'][-1] if ts is not None else 0:,.0f} samples/s, load "
              f"{os.getloadavg()[0]:.1f}")

    rates = interleaved(sides, args.rounds, args.repeats,  # native as fxemu.train.train runs
                        {"native": lambda: threadpool_limits(limits=1, user_api="blas")},
                        progress)
    rows.append(("fxemu native", "fw32bw32 (float32)", rates["native"]))
    rows.append(("fxemu native, BLAS default threads", "fw32bw32 (float32)",
                 rates["native_blas"]))
    if ts is not None:
        rows.append(("PyTorch CPU", "float32", rates["torch"]))
    if not args.no_emulated:
        with threadpool_limits(limits=1, user_api="blas"):
            for pol in ("fw32bw32", "fw16bw16", "fixed16"):
                step = fxemu_step("emulated", pol)
                step(*b64[0])  # warm-up (compilation, caches)
                rows.append(("fxemu emulated", pol, [rate(step, b64[:3], args.repeats)]))
    print("\n| backend | policy | samples/s (median) | vs PyTorch (median, min..max) |\n"
          "|---|---|---:|---:|")
    ref = next((r for _, p, r in rows if p == "float32"), None)
    for name, pol, r in rows:
        vs = spread(ratios(r, ref)) if ref and len(r) == len(ref) else \
            (f"{median(r) / median(ref):.2f}" if ref else "-")
        print(f"| {name} | {pol} | {median(r):,.0f} | {vs} |")
    if args.full:
        print("\n| preset | backend | epochs × samples | wall time | final test acc |\n"
              "|---|---|---|---:|---:|")
        for pol in presets:
            t0 = time.perf_counter()
            res = train(TrainConfig(policy=pol, data=args.data, epochs=20), progress=False)
            wall = time.perf_counter() - t0
            m = res["metrics"][-1]
            n = len(d.y_train)
            print(f"| {pol} | {'native' if PRESETS[pol].native_dtype else 'emulated'} | "
                  f"20 × {n} | {wall:.1f} s | {m['test_acc']:.3f} |")
        print(f"# load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
