"""How accumulation order and accumulator format change a long dot product.

The conv weight-gradient reduction of the reference network at batch 128 is 86 528 products
long. For e5m10 operands this prints the relative error of each datapath against the exact
sum (float64 with exact order is exact here), averaged over trials:

    python benchmarks/order_error.py [--n 86528] [--trials 5]
"""

from __future__ import annotations

import argparse

import numpy as np

import fxemu as fx


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=86_528)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    h = fx.Float(5, 10)
    accs = {"e5m10": h, "e8m23": fx.Float(8, 23)}
    orders = ["sequential", "chunk:64", "pairwise", "exact"]
    rng = np.random.default_rng(args.seed)
    # activations >= 0 (after ReLU) times gradients of both signs, as in the weight gradient
    cases = {"relu x grad": lambda: (fx.quantize(np.abs(rng.standard_normal(args.n)), h),
                                     fx.quantize(rng.standard_normal(args.n) * 1e-2, h)),
             "positive": lambda: (fx.quantize(rng.random(args.n), h),
                                  fx.quantize(rng.random(args.n), h))}
    print(f"dot products of length {args.n}, e5m10 operands, exact products, {args.trials} "
          "trials; mean |result - exact| / |exact|\n")
    print("| operands | accumulator | " + " | ".join(orders) + " |")
    print("|---|---|" + "---:|" * len(orders))
    for cname, draw in cases.items():
        data = [draw() for _ in range(args.trials)]
        exact = [fx.dot(a, b, fx.Mac(fx.Float(11, 52), order="exact")) for a, b in data]
        for aname, acc in accs.items():
            cells = []
            for order in orders:
                errs = [abs(float(fx.dot(a, b, fx.Mac(acc, order=order))) - e) / abs(e)
                        for (a, b), e in zip(data, exact, strict=True)]
                cells.append(f"{np.mean(errs):.2e}")
            print(f"| {cname} | {aname} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
