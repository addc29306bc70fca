"""Per-op time of one training step (forward + backward + update, batch 128) of a backend.

Wraps every public backend method and the host-side softmax/cross-entropy with a timer and
reports the mean per batch (BLAS single-threaded, as :func:`fxemu.train.train` runs). Prints;
never asserts. On a shared machine, run it next to the other numbers and quote the load.

    python benchmarks/profile_train.py [--backend native] [--policy fw32bw32] [--steps 20]
                                       [--model lenet5]

``--model``: a model preset or spec file trained as a :class:`fxemu.nn.Sequential` (SGD, lr
0.01); without it, the founding network's own step functions.
"""

from __future__ import annotations

import argparse
import collections
import os
import time

import numpy as np

import fxemu.nn as nn
import fxemu.nn.model as model
from fxemu.backends import get_backend
from fxemu.data import load
from fxemu.policy import PRESETS


def _wrap(obj, name: str, label: str, acc: dict) -> None:
    f = getattr(obj, name)

    def timed(*a, **k):
        t0 = time.perf_counter()
        r = f(*a, **k)
        acc[label] += time.perf_counter() - t0
        return r

    setattr(obj, name, timed)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="native")
    ap.add_argument("--policy", default="fw32bw32", choices=sorted(PRESETS))
    ap.add_argument("--steps", type=int, default=20, help="batches per repeat")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--model", default=None, help="a model preset or spec (Sequential)")
    args = ap.parse_args(argv)
    from threadpoolctl import threadpool_limits

    acc: dict[str, float] = collections.defaultdict(float)
    be = get_backend(args.backend, PRESETS[args.policy], 0)
    for m in dir(type(be)):
        if not m.startswith("_") and m not in ("begin_step", "name") and callable(getattr(be, m)):
            _wrap(be, m, f"backend.{m}", acc)
    _wrap(model, "softmax_xent", "softmax_xent (host)", acc)
    d = load("embedded")
    rng = np.random.default_rng(0)
    batches = [(d.x_train[i], d.y_train[i])
               for i in (rng.choice(len(d.y_train), 128, replace=False)
                         for _ in range(args.steps))]
    if args.model:
        seq = nn.load_model(args.model).build((1, 28, 28), 10)
        opt = nn.SGD(lr=0.01)
        p = {k: be.master(v) for k, v in seq.init_params(0).items()}

        def step(p, x, y, s):
            return seq.train_step(be, p, x, y, opt, s)[0]
    else:
        p = nn.Params(**{k: be.master(v) for k, v in nn.init_params(0).arrays().items()})

        def step(p, x, y, s):
            return nn.train_step(be, p, x, y, 0.01, s)[0]
    with threadpool_limits(limits=1, user_api="blas"):
        for s, (x, y) in enumerate(batches[:3]):  # warm-up (compilation, caches)
            p = step(p, x, y, s)
        acc.clear()
        t0 = time.perf_counter()
        for _ in range(args.repeats):
            for s, (x, y) in enumerate(batches):
                p = step(p, x, y, s)
        total = time.perf_counter() - t0
    nb = args.repeats * len(batches)
    print(f"# {args.backend} {args.policy} {args.model or 'founding'}: "
          f"{total / nb * 1e3:.2f} ms/batch, {128 * nb / total:,.0f} samples/s, "
          f"load {os.getloadavg()[0]:.1f}")
    print("\n| op | ms/batch |\n|---|---:|")
    for k, v in sorted(acc.items(), key=lambda kv: -kv[1]):
        print(f"| {k} | {v / nb * 1e3:.3f} |")
    print(f"| rest (model glue, Python) | {(total - sum(acc.values())) / nb * 1e3:.3f} |")


if __name__ == "__main__":
    main()
