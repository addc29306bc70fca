"""LeNet-5 training throughput (forward + backward + SGD update), peers in one process.

Two comparisons, each timed in interleaved rounds (``--rounds``, each the best of
``--repeats`` passes over ``--steps`` batches of ``--batch`` 28×28 digits); the table gives
the median samples/s per side and the median and spread (min..max) of the per-round ratios:

1. fxemu ``native`` float32 (``fw32bw32``; :class:`fxemu.nn.Sequential` on the native
   backend, BLAS single-threaded as ``fxemu train`` runs it) against PyTorch eager float32
   (``torch.optim.SGD``), both with ``--threads`` threads (numba's and torch's).
2. fxemu ``emulated`` ``fixed16`` and ``fw16bw16`` (every product and every accumulation
   rounded as the datapath does, in the policy's order) against QPyTorch's fake quantization of
   the same model (``qtorch.quant.Quantizer`` after every conv/linear for activations and
   their gradients, ``qtorch.optim.OptimLP`` for weights and gradients: a peer that rounds
   only tensors and accumulates in float32). ``fixed16`` is QPyTorch's
   ``FixedPoint(wl=16, fl=8)`` with round-to-nearest; ``fw16bw16`` its
   ``FloatingPoint(exp=5, man=10)``. A missing QPyTorch is reported and its rows skipped.

Prints Markdown, never asserts.

    python benchmarks/bench_lenet5.py [--batch 128] [--steps 4] [--rounds 5] [--threads 2]
                                      [--omp-passive]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import warnings
from pathlib import Path

import numpy as np

from fxemu.backends import get_backend
from fxemu.data import load
from fxemu.nn import SGD, load_model
from fxemu.policy import PRESETS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleaved, median, ratios, spread


def fxemu_step(backend: str, policy: str):
    model = load_model("lenet5").build((1, 28, 28), 10)
    be = get_backend(backend, PRESETS[policy], 0)
    opt = SGD(lr=0.01)
    state = {"p": {k: be.master(v) for k, v in model.init_params(0).items()}, "step": 0}

    def step(x, y):
        state["p"], _, _ = model.train_step(be, state["p"], x, y, opt, state["step"])
        state["step"] += 1

    return step


def _torch_lenet5(quant=None):
    import torch

    nn = torch.nn
    q = (lambda: [quant()]) if quant is not None else (lambda: [])
    return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), *q(), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 16, 5), *q(), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(400, 120), *q(), nn.ReLU(), nn.Linear(120, 84), *q(),
                         nn.ReLU(), nn.Linear(84, 10), *q())


def torch_step():
    import torch

    net = _torch_lenet5()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)

    def step(x, y):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()

    return step


def qtorch_step(policy: str):
    """QPyTorch fake quantization of LeNet-5 under ``policy`` (fixed16 or fw16bw16)."""
    import torch
    from qtorch import FixedPoint, FloatingPoint
    from qtorch.optim import OptimLP
    from qtorch.quant import Quantizer, quantizer

    num = FixedPoint(wl=16, fl=8) if policy == "fixed16" else FloatingPoint(exp=5, man=10)
    net = _torch_lenet5(lambda: Quantizer(forward_number=num, backward_number=num,
                                          forward_rounding="nearest",
                                          backward_rounding="nearest"))
    inq = quantizer(forward_number=num, forward_rounding="nearest")
    opt = OptimLP(torch.optim.SGD(net.parameters(), lr=0.01),
                  weight_quant=quantizer(num, forward_rounding="nearest"),
                  grad_quant=quantizer(num, forward_rounding="nearest"))

    def step(x, y):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(inq(x)), y).backward()
        opt.step()

    return step


def compare(ours, peer, ours_batches, peer_batches, args) -> dict:
    """Interleaved rounds of two warmed-up steps (:func:`_timing.interleaved`): their rates
    and ratios (ours / peer)."""
    r = interleaved({"ours": (ours, ours_batches), "peer": (peer, peer_batches)},
                    args.rounds, args.repeats)
    return {**r, "ratio": ratios(r["ours"], r["peer"])}


def run(args: argparse.Namespace) -> list[tuple[str, str, dict]]:
    import numba
    import torch
    from threadpoolctl import threadpool_limits

    numba.set_num_threads(max(1, min(args.threads, numba.config.NUMBA_NUM_THREADS)))
    torch.set_num_threads(args.threads)
    d = load("embedded")
    rng = np.random.default_rng(0)
    idx = [rng.choice(len(d.y_train), args.batch, replace=False) for _ in range(args.steps)]
    b64 = [(d.x_train[i], d.y_train[i]) for i in idx]
    bt = [(torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64)))
          for x, y in b64]
    rows = []
    with threadpool_limits(limits=1, user_api="blas"):
        if "native" in args.parts:
            rows.append(("fxemu native fw32bw32", "PyTorch eager float32",
                         compare(fxemu_step("native", "fw32bw32"), torch_step(), b64, bt,
                                 args)))
        for pol in ("fixed16", "fw16bw16"):
            if pol not in args.parts:
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    peer = qtorch_step(pol)
            except Exception as exc:  # any failure means "not usable here"
                print(f"# QPyTorch unavailable ({type(exc).__name__}: {exc}); {pol} skipped")
                continue
            rows.append((f"fxemu emulated {pol}", f"QPyTorch fake quantization {pol}",
                         compare(fxemu_step("emulated", pol), peer, b64, bt, args)))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=4, help="batches per timed pass")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--parts", default="native,fixed16,fw16bw16",
                    help="comma-separated: native, fixed16, fw16bw16")
    ap.add_argument("--omp-passive", action="store_true",
                    help="OMP_WAIT_POLICY=PASSIVE for every OpenMP runtime in the process "
                         "(PyTorch's too: idle threads sleep instead of spinning, which a "
                         "loaded machine rewards)")
    args = ap.parse_args(argv)
    if args.omp_passive:  # before any OpenMP runtime loads: each reads it once
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    args.parts = args.parts.split(",")
    import torch

    print(f"# bench_lenet5: {platform.processor() or platform.machine()}, {args.threads} "
          f"threads, torch {torch.__version__}, OMP_WAIT_POLICY "
          f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}, load {os.getloadavg()[0]:.1f}")
    rows = run(args)
    print("\n| fxemu | peer | fxemu samples/s | peer samples/s | fxemu / peer (median, "
          "min..max) |\n|---|---|---:|---:|---:|")
    for ours, peer, r in rows:
        print(f"| {ours} | {peer} | {median(r['ours']):,.0f} | {median(r['peer']):,.0f} | "
              f"{spread(r['ratio'])} |")
    print(f"# {args.rounds} rounds x best of {args.repeats} x {args.steps} steps of batch "
          f"{args.batch}; load {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
