"""The PyTorch bridge's overhead: the founding network trained through ``fxemu.torch.emulate``
against fxemu's own trainer (:meth:`fxemu.nn.Sequential.train_step` on the emulated
backend), same policy, same batches, one process.

Both sides run the same emulated kernels (and, being bit-identical, the same numbers); the
ratio is what torch's autograd, the module tree and the tensor/array conversions cost. Each
round times ``--steps`` training steps (batch ``--batch``) of each side, interleaved, best of
``--repeats`` per round; the table gives the median and the spread (min..max) of the per-round
rates and ratios. BLAS is single-threaded as ``fxemu train`` runs it. Prints, never asserts.

    python benchmarks/bench_bridge.py [--policies fixed16,fw16bw16] [--steps 8] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import numpy as np

import fxemu.nn as fnn
from fxemu.backends import get_backend
from fxemu.data import load
from fxemu.policy import PRESETS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleaved, median, ratios, spread


def _founding():
    return fnn.load_model("founding").build((1, 28, 28), 10)


def fxemu_step(policy: str):
    """fxemu train's step: the founding Sequential on the emulated backend, plain SGD."""
    model = _founding()
    be = get_backend("emulated", PRESETS[policy], 0)
    opt = fnn.SGD(lr=0.01)
    state = {"p": {k: be.master(v) for k, v in model.init_params(0).items()}, "step": 0}

    def step(x, y):
        state["p"], _, _ = model.train_step(be, state["p"], x, y, opt, state["step"])
        state["step"] += 1

    return step


def bridge_step(policy: str):
    import torch

    import fxemu.torch as fxt

    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(1, 12, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(2028, 10)).double()
    with torch.no_grad():
        for t, a in zip(net.parameters(), _founding().init_params(0).values(), strict=True):
            t.copy_(torch.from_numpy(a))
    em = fxt.emulate(net, policy, seed=0)
    opt = fxt.SGD(em.parameters(), lr=0.01)

    def step(x, y):
        opt.zero_grad()
        fxt.cross_entropy(em(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        opt.step()

    return step


def run(args: argparse.Namespace) -> list[dict]:
    from threadpoolctl import threadpool_limits

    d = load("embedded")
    rng = np.random.default_rng(0)
    batches = [(d.x_train[i], d.y_train[i]) for i in
               (rng.choice(len(d.y_train), args.batch, replace=False) for _ in range(args.steps))]
    rows = []
    with threadpool_limits(limits=1, user_api="blas"):
        for pol in args.policies.split(","):
            rates = interleaved({"own": (fxemu_step(pol), batches),
                                 "bridge": (bridge_step(pol), batches)},
                                args.rounds, args.repeats)
            rows.append({"policy": pol, **rates,
                         "ratio": ratios(rates["bridge"], rates["own"])})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policies", default="fixed16,fw16bw16,fixed16_sr")
    ap.add_argument("--steps", type=int, default=4, help="batches per timed repeat")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    unknown = sorted(set(args.policies.split(",")) - set(PRESETS))
    if unknown:
        ap.error(f"--policies: unknown preset(s) {unknown}; choose from {sorted(PRESETS)}")
    import numba
    import torch

    print(f"# bench_bridge: {platform.processor() or platform.machine()}, numba threads "
          f"{numba.get_num_threads()}, torch {torch.__version__} threads "
          f"{torch.get_num_threads()}, load {os.getloadavg()[0]:.1f}")
    rows = run(args)
    print("\n| policy | fxemu trainer samples/s | bridge samples/s | bridge / trainer "
          "(median, min..max) |\n|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['policy']} | {median(r['own']):,.0f} | {median(r['bridge']):,.0f} | "
              f"{spread(r['ratio'])} |")
    print(f"# {args.rounds} rounds x best of {args.repeats} x {args.steps} steps of batch "
          f"{args.batch}; load {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
