"""Training-step throughput of the C-simulation backend beside the emulated one.

For each policy (fixed16 and fw16bw16 by default): the csim library is built (or taken from
the cache), then ``--steps`` SGD steps of batch ``--batch`` on the embedded MNIST digits run
in each backend after one warm-up step. Prints wall-clock samples/s and samples per CPU-second
(process time: robust to other load on a shared machine, and it counts every thread of the
emulator's Numba kernels), and the ratio. Checks nothing; the bit-identity is the tests' job.

    python benchmarks/bench_csim.py [--steps 5] [--batch 100] [--policy fixed16 ...]
"""

from __future__ import annotations

import argparse
import os
import time

from threadpoolctl import threadpool_limits

from fxemu.backends import get_backend
from fxemu.data import load
from fxemu.nn import Params, init_params, train_step
from fxemu.policy import PRESETS


def _rate(backend, data, steps: int, batch: int) -> tuple[float, float]:
    p = Params(**{k: backend.master(v) for k, v in init_params(0).arrays().items()})
    x, y = data.x_train, data.y_train
    p, _, _ = train_step(backend, p, x[:batch], y[:batch], 0.01, 0)  # warm-up
    w0, c0 = time.perf_counter(), time.process_time()
    for s in range(steps):
        sl = slice(s * batch, (s + 1) * batch)
        p, _, _ = train_step(backend, p, x[sl], y[sl], 0.01, s + 1)
    n = steps * batch
    return n / (time.perf_counter() - w0), n / (time.process_time() - c0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--policy", nargs="+", default=["fixed16", "fw16bw16"])
    args = ap.parse_args()
    data = load("embedded", n_train=args.steps * args.batch, n_test=1)
    print(f"load average {os.getloadavg()[0]:.1f}; {args.steps} steps of batch {args.batch}")
    print("| policy | backend | samples/s (wall) | samples per CPU-s | CPU cost vs emulated |")
    print("|---|---|---:|---:|---:|")
    with threadpool_limits(limits=1, user_api="blas"):  # as fxemu.train does
        for name in args.policy:
            pol = PRESETS[name]
            rates = {b: _rate(get_backend(b, pol, 0), data, args.steps, args.batch)
                     for b in ("emulated", "csim")}
            for b, (wall, cpu) in rates.items():
                ratio = rates["emulated"][1] / rates["csim"][1] if b == "csim" else 1.0
                print(f"| {name} | {b} | {wall:.1f} | {cpu:.1f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
