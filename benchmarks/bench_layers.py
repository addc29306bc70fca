"""Native layer operations (fxemu.nn.native_ops) against torch.nn.functional, LeNet-5 shapes.

Each row times one operation (forward or backward) of LeNet-5 at batch 128 in float32 (or
float64 with ``--dtype float64``): fxemu's native op and the same op in PyTorch eager, in one
process, interleaved, with the same thread count for Numba, BLAS and torch; it prints the
median time of each and the median ratio torch / fxemu (> 1: fxemu faster) with its
quartiles. The last row is one whole LeNet-5
forward + backward step built from these ops. Ratios only, never asserts.

    python benchmarks/bench_layers.py [--threads 2] [--repeats 20] [--batch 128]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import optional_import

#: LeNet-5 (conv 6@5×5 pad 2 → ReLU → max 2 → conv 16@5×5 → ReLU → max 2 → 120 → 84 → 10)
CONV1 = dict(c=1, h=28, w=28, f=6, k=5, pad=2)
CONV2 = dict(c=6, h=14, w=14, f=16, k=5, pad=0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=None, help="threads for Numba, BLAS, torch")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--quick", action="store_true", help="batch 8, 2 repeats (smoke test)")
    return p.parse_args(argv)


def _time(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _compare(fx_op: Callable[[], object], t_op: Callable[[], object],
             repeats: int) -> tuple[float, float, float, float, float]:
    """Interleaved timings (fxemu, torch, fxemu, torch, …) after a warm-up of each, so both
    see the same machine load: (median fxemu s, median torch s, median, 25th and 75th
    percentile of the per-repeat ratio torch / fxemu)."""
    fx_op()  # warm-up (compiles kernels, allocates)
    t_op()
    a, b = [], []
    for _ in range(repeats):
        a.append(_time(fx_op))
        b.append(_time(t_op))
    r = sorted(y / x for x, y in zip(a, b, strict=True))
    q = statistics.quantiles(r, n=4) if len(r) > 1 else [r[0]] * 3
    return statistics.median(a), statistics.median(b), q[1], q[0], q[2]


def cases(n: int, dtype: str) -> list[tuple[str, Callable[[], object], Callable[[], object]]]:
    """(label, fxemu op, torch op) for every layer op of LeNet-5 at batch n."""
    import torch
    import torch.nn.functional as F

    from fxemu.nn import native_ops as no

    d = np.dtype(dtype)
    td = getattr(torch, dtype)
    rng = np.random.default_rng(0)

    def arr(*shape):
        return rng.standard_normal(shape).astype(d)

    out = []
    for name, g in (("conv1", CONV1), ("conv2", CONV2)):
        x, w, b = arr(n, g["c"], g["h"], g["w"]), arr(g["f"], g["c"], g["k"], g["k"]), arr(g["f"])
        ho = g["h"] + 2 * g["pad"] - g["k"] + 1
        gy = arr(n, g["f"], ho, ho)
        xt, wt, bt, gt = (torch.from_numpy(a) for a in (x, w, b, gy))
        xg = xt.clone().requires_grad_(name != "conv1")
        wg, bg = wt.clone().requires_grad_(), bt.clone().requires_grad_()
        p = g["pad"]

        def t_bwd(xg=xg, wg=wg, bg=bg, gt=gt, p=p):
            y = F.conv2d(xg, wg, bg, padding=p)
            return torch.autograd.grad(y, [v for v in (xg, wg, bg) if v.requires_grad], gt)

        out.append((f"{name} forward", lambda x=x, w=w, b=b, p=p: no.conv2d(x, w, b, 1, p, d),
                    lambda xt=xt, wt=wt, bt=bt, p=p: F.conv2d(xt, wt, bt, padding=p)))
        out.append((f"{name} fwd+backward",
                    lambda x=x, w=w, b=b, gy=gy, p=p, need=name != "conv1": (
                        no.conv2d(x, w, b, 1, p, d),
                        no.conv2d_backward(x, w, gy, 1, p, d, need)),
                    t_bwd))
    for name, (c, h) in (("pool1", (6, 28)), ("pool2", (16, 10))):
        x = arr(n, c, h, h)
        xt = torch.from_numpy(x)
        o, a = no.maxpool2d(x, 2, None, 0, d)
        go = arr(*o.shape)
        _, at = F.max_pool2d(xt, 2, return_indices=True)
        gt = torch.from_numpy(go)
        out.append((f"max{name} forward", lambda x=x: no.maxpool2d(x, 2, None, 0, d),
                    lambda xt=xt: F.max_pool2d(xt, 2, return_indices=True)))
        out.append((f"max{name} backward",
                    lambda go=go, a=a, s=x.shape: no.maxpool2d_backward(go, a, s, 2, None, 0, d),
                    lambda gt=gt, at=at, xt=xt: torch.ops.aten.max_pool2d_with_indices_backward(
                        gt, xt, [2, 2], [2, 2], [0, 0], [1, 1], False, at)))
        out.append((f"avg{name} forward", lambda x=x: no.avgpool2d(x, 2, None, 0, d),
                    lambda xt=xt: F.avg_pool2d(xt, 2)))
        out.append((f"avg{name} backward",
                    lambda go=go, s=x.shape: no.avgpool2d_backward(go, s, 2, None, 0, d),
                    lambda gt=gt, xt=xt: torch.ops.aten.avg_pool2d_backward(
                        gt, xt, [2, 2], [2, 2], [0, 0], False, True, None)))
    for name, (i, o_) in (("fc1", (400, 120)), ("fc2", (120, 84)), ("fc3", (84, 10))):
        x, w, b, gy = arr(n, i), arr(o_, i), arr(o_), arr(n, o_)
        xt, wt, bt, gt = (torch.from_numpy(a) for a in (x, w, b, gy))
        xg, wg, bg = (v.clone().requires_grad_() for v in (xt, wt, bt))

        def t_lin(xg=xg, wg=wg, bg=bg, gt=gt):
            return torch.autograd.grad(F.linear(xg, wg, bg), [xg, wg, bg], gt)

        out.append((f"{name} fwd+backward", lambda x=x, w=w, b=b, gy=gy: (
            no.linear(x, w, b, d), no.linear_backward(x, w, gy, d, True)), t_lin))
    out.append(("LeNet-5 step", _fx_step(n, d, rng), _torch_step(n, td, torch, F)))
    return out


def _params(rng: np.random.Generator, d: np.dtype) -> list[np.ndarray]:
    shapes = [(6, 1, 5, 5), (6,), (16, 6, 5, 5), (16,), (120, 400), (120,), (84, 120), (84,),
              (10, 84), (10,)]
    return [(rng.standard_normal(s) * 0.1).astype(d) for s in shapes]


def _fx_step(n: int, d: np.dtype, rng: np.random.Generator) -> Callable[[], object]:
    """One LeNet-5 forward + backward (softmax cross-entropy) from native_ops."""
    from fxemu.nn import native_ops as no

    p = _params(rng, d)
    x = rng.random((n, 1, 28, 28)).astype(d)
    y = rng.integers(0, 10, n)

    def step():
        z1 = no.conv2d(x, p[0], p[1], 1, 2, d)
        a1 = np.maximum(z1, 0)
        h1, i1 = no.maxpool2d(a1, 2, None, 0, d)
        z2 = no.conv2d(h1, p[2], p[3], 1, 0, d)
        a2 = np.maximum(z2, 0)
        h2, i2 = no.maxpool2d(a2, 2, None, 0, d)
        f = h2.reshape(n, -1)
        z3 = np.maximum(no.linear(f, p[4], p[5], d), 0)
        z4 = np.maximum(no.linear(z3, p[6], p[7], d), 0)
        lo = no.linear(z4, p[8], p[9], d)
        e = np.exp(lo - lo.max(axis=1, keepdims=True))
        g = e / e.sum(axis=1, keepdims=True)
        g[np.arange(n), y] -= 1
        g /= n
        g4, _, _ = no.linear_backward(z4, p[8], g, d, True)
        g4 *= z4 > 0
        g3, _, _ = no.linear_backward(z3, p[6], g4, d, True)
        g3 *= z3 > 0
        gf, _, _ = no.linear_backward(f, p[4], g3, d, True)
        ga2 = no.maxpool2d_backward(gf.reshape(h2.shape), i2, a2.shape, 2, None, 0, d)
        ga2 *= z2 > 0
        gh1, _, _ = no.conv2d_backward(h1, p[2], ga2, 1, 0, d, True)
        ga1 = no.maxpool2d_backward(gh1, i1, a1.shape, 2, None, 0, d)
        ga1 *= z1 > 0
        return no.conv2d_backward(x, p[0], ga1, 1, 2, d, False)

    return step


def _torch_step(n: int, td: object, torch, F) -> Callable[[], object]:
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(6, 16, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(400, 120), torch.nn.ReLU(), torch.nn.Linear(120, 84), torch.nn.ReLU(),
        torch.nn.Linear(84, 10)).to(td)
    x = torch.rand(n, 1, 28, 28, dtype=td)
    y = torch.randint(0, 10, (n,))

    def step():
        net.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()

    return step


def run(args: argparse.Namespace) -> tuple[str, list[tuple]]:
    """(thread description, rows (label, fxemu s, torch s, ratio, 25 %, 75 %)); thread
    settings are restored afterwards."""
    torch, why = optional_import("torch")
    if torch is None:
        raise SystemExit(f"bench_layers needs torch (the 'bench-torch' extra): {why}")
    import numba

    n, repeats = (8, 2) if args.quick else (args.batch, args.repeats)
    with contextlib.ExitStack() as stack:
        if args.threads is not None:
            stack.callback(numba.set_num_threads, numba.get_num_threads())
            stack.callback(torch.set_num_threads, torch.get_num_threads())
            numba.set_num_threads(max(1, min(args.threads, numba.config.NUMBA_NUM_THREADS)))
            torch.set_num_threads(args.threads)
            threadpool, _ = optional_import("threadpoolctl")
            if threadpool is not None:
                stack.enter_context(threadpool.threadpool_limits(args.threads))
        threads = f"numba {numba.get_num_threads()}, torch {torch.get_num_threads()}"
        rows = [(label, *_compare(fx_op, t_op, repeats))
                for label, fx_op, t_op in cases(n, args.dtype)]
    return threads, rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    threads, rows = run(args)
    print(f"native layer ops, {args.dtype}, batch {8 if args.quick else args.batch}, threads: "
          f"{threads}")
    print(f"{'op':<24}{'fxemu ms':>10}{'torch ms':>10}{'torch/fxemu':>13}  (25%-75%)")
    for label, a, b, r, lo, hi in rows:
        print(f"{label:<24}{a * 1e3:>10.3f}{b * 1e3:>10.3f}{r:>13.2f}  ({lo:.2f}-{hi:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
