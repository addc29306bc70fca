"""Benchmark the multi-term fused adder (``Mac(order="fused:…")``) in MMAC/s.

Problem: ``(128, 2028) @ (2028, 10)`` (the founding network's dense layer at batch 128), operands
seeded ``standard_normal`` values quantized into the operand format.

Rows, all in one process and timed round robin (every row once per round, ``--repeats``
rounds, one warm-up call each excluded, garbage collector off):

* **fused:hopper_fp8** — ``fx.matmul(A, B, Mac("float32", order="fused:hopper_fp8"))`` on E4M3
  operands, all numba threads and one thread;
* **sequential** — the plain sequential Mac ``Mac("float32")`` on the same operands (every
  product exact, every addition rounded into float32);
* **fused:a100_fp16** / **sequential fp16** — the same on binary16 operands;
* **mmaemu chain_gemm** — mmaemu's GEMM-shaped chain (``preset="hopper"``, PyTorch on the CPU,
  its own thread count) on the same E4M3 codes, K zero-padded to a multiple of 16 (zero
  products leave the chain unchanged); its results are compared bit for bit with fxemu's.

Printed: the best time and MMAC/s of each row, and per-round ratios (median and the min–max
spread over the rounds) of fused against sequential and of fxemu against mmaemu.

``--mmaemu`` also checks ``fused:hopper_fp8`` / ``fused:ada_fp8`` / ``fused:b200_fp8`` against
mmaemu's chain model
``mmaemu.model.chain.dot`` on every pair of rows of random FP8 matrices (7 rows, every K from 1
to 256; uniform, subnormal-heavy and zero-heavy codes; E4M3, E5M2 and mixed operands) and prints
the number of dot products compared and differing per preset.

``--toolbox DIR`` also replays the hardware-measured vectors of the MATLAB tensor-core toolbox
(a checkout of github.com/north-numerical-computing/MATLAB-tensor-core; 40 sets of 5000
vectors, 8 of them with binary16 accumulators; see tests/golden/README.md) through the presets
and prints the mismatch counts.

Usage::

    python benchmarks/bench_fused.py                 # best of 7
    python benchmarks/bench_fused.py --repeats 11 --threads 1
    python benchmarks/bench_fused.py --quick         # tiny sizes, 1 repeat (smoke run)
    python benchmarks/bench_fused.py --mmaemu --toolbox ~/MATLAB-tensor-core --repeats 1
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import optional_import, with_threads

import fxemu as fx
from fxemu import lowering
from fxemu._kernels.fused import fused_chain

E4M3 = fx.parse("float8_e4m3fn")
F16 = fx.parse("float16")

TOOLBOX = [("V100", "fp16", 4, "fused:v100_fp16"), ("A100", "fp16", 8, "fused:a100_fp16"),
           ("A100", "bf16", 8, "fused:a100_bf16"), ("A100", "tf32", 4, "fused:a100_tf32"),
           ("H100", "fp16", 16, "fused:h100_fp16"), ("H100", "bf16", 16, "fused:h100_bf16"),
           ("H100", "tf32", 4, "fused:h100_tf32"), ("H100", "E4M3", 32, "fused:hopper_fp8"),
           ("H100", "E5M2", 32, "fused:hopper_fp8,ea=-14,eb=-14"),
           ("Ada", "E4M3", 32, "fused:ada_fp8"), ("Ada", "E5M2", 32, "fused:ada_fp8,ea=-14,eb=-14"),
           ("Ada", "fp16", 8, "fused:a100_fp16"), ("Ada", "bf16", 8, "fused:a100_bf16"),
           ("H200", "fp16", 16, "fused:h100_fp16"), ("H200", "bf16", 16, "fused:h100_bf16"),
           ("H200", "tf32", 4, "fused:h100_tf32"), ("H200", "E4M3", 32, "fused:hopper_fp8"),
           ("H200", "E5M2", 32, "fused:hopper_fp8,ea=-14,eb=-14"),
           ("B200", "fp16", 16, "fused:h100_fp16"), ("B200", "bf16", 16, "fused:h100_bf16"),
           ("B200", "tf32", 4, "fused:b200_tf32"), ("B200", "E4M3", 32, "fused:b200_fp8"),
           ("B200", "E5M2", 32, "fused:b200_fp8,ea=-14,eb=-14"),
           # binary16 accumulators (the d_*_fp16 files; c rounded to binary16 on the way in)
           ("V100", "fp16", 4, "fused:v100_fp16_acc16"),
           ("A100", "fp16", 8, "fused:a100_fp16_acc16"),
           ("H100", "fp16", 16, "fused:h100_fp16_acc16"),
           ("Ada", "fp16", 8, "fused:a100_fp16_acc16"),
           ("H200", "fp16", 16, "fused:h100_fp16_acc16"),
           ("B200", "fp16", 16, "fused:h100_fp16_acc16"),
           # A2 (Ampere) and L40S (Ada): the A100 and Ada presets
           ("A2", "fp16", 8, "fused:a100_fp16"), ("A2", "bf16", 8, "fused:a100_bf16"),
           ("A2", "tf32", 4, "fused:a100_tf32"), ("A2", "fp16", 8, "fused:a100_fp16_acc16"),
           ("L40S", "fp16", 8, "fused:a100_fp16"), ("L40S", "bf16", 8, "fused:a100_bf16"),
           ("L40S", "tf32", 4, "fused:a100_tf32"), ("L40S", "E4M3", 32, "fused:ada_fp8"),
           ("L40S", "E5M2", 32, "fused:ada_fp8,ea=-14,eb=-14"),
           ("L40S", "fp16", 8, "fused:a100_fp16_acc16"), ("Ada", "tf32", 4, "fused:a100_tf32")]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=None, help="numba threads (default: all)")
    p.add_argument("--quick", action="store_true", help="(16, 100) @ (100, 4), 1 repeat")
    p.add_argument("--mmaemu", action="store_true",
                   help="check every K in 1..256 against mmaemu's chain model")
    p.add_argument("--toolbox", type=Path, default=None,
                   help="MATLAB-tensor-core checkout: replay its hardware vectors")
    args = p.parse_args(argv)
    if args.quick:
        args.repeats = 1
    return args


def _operands(rng: np.random.Generator, fmt: fx.Float, shape: tuple) -> np.ndarray:
    return fx.quantize(rng.standard_normal(shape), fmt)


def _rows(args: argparse.Namespace) -> dict[str, tuple[Callable[[], np.ndarray], int]]:
    m, k, n = (16, 100, 4) if args.quick else (128, 2028, 10)
    rng = np.random.default_rng(0)
    a8, b8 = _operands(rng, E4M3, (m, k)), _operands(rng, E4M3, (k, n))
    a16, b16 = _operands(rng, F16, (m, k)), _operands(rng, F16, (k, n))
    fused8 = fx.Mac("float32", order="fused:hopper_fp8")
    fused16 = fx.Mac("float32", order="fused:a100_fp16")
    seq = fx.Mac("float32")
    macs = m * k * n
    rows = {
        "fxemu fused:hopper_fp8 (e4m3)": (lambda: fx.matmul(a8, b8, fused8), macs),
        "fxemu sequential (e4m3)": (lambda: fx.matmul(a8, b8, seq), macs),
        "fxemu fused:a100_fp16 (fp16)": (lambda: fx.matmul(a16, b16, fused16), macs),
        "fxemu sequential (fp16)": (lambda: fx.matmul(a16, b16, seq), macs),
    }
    mm, why = optional_import("mmaemu.model.chain")
    torch, why_t = optional_import("torch")
    if mm is None or torch is None:
        print(f"mmaemu row skipped: {why or why_t}")
        return rows
    pad = -k % 16
    ca = np.pad(fx.to_bits(a8, E4M3).astype(np.uint8), ((0, 0), (0, pad)))
    cb = np.pad(fx.to_bits(b8.T, E4M3).astype(np.uint8), ((0, 0), (0, pad)))
    ta, tb = torch.from_numpy(ca), torch.from_numpy(cb)

    def mmaemu_gemm() -> np.ndarray:
        out = mm.chain_gemm(ta, tb, fmt_a="e4m3", fmt_b="e4m3", preset="hopper")
        return out.numpy().astype(np.float64)

    rows["mmaemu chain_gemm hopper (e4m3)"] = (mmaemu_gemm, macs)
    return rows


def run(args: argparse.Namespace) -> list[tuple[str, float, float]]:
    rows = _rows(args)
    results = {name: fn() for name, (fn, _) in rows.items()}  # warm-up (compilation)
    ref = results.get("mmaemu chain_gemm hopper (e4m3)")
    if ref is not None:
        ours = results["fxemu fused:hopper_fp8 (e4m3)"]
        bad = int(np.count_nonzero(ours.astype(np.float32).view(np.uint32)
                                   != ref.astype(np.float32).view(np.uint32)))
        print(f"fused:hopper_fp8 vs mmaemu chain_gemm: {bad} of {ours.size} outputs differ")
    times: dict[str, list[float]] = {name: [] for name in rows}
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(args.repeats):
            for name, (fn, _) in rows.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    finally:
        if gc_was:
            gc.enable()
    print(f"\n{args.repeats} rounds, numba threads: "
          f"{args.threads if args.threads else 'all'}\n")
    print("| row | best s | MMAC/s |\n|---|---|---|")
    out = []
    for name, (_, macs) in rows.items():
        best = min(times[name])
        out.append((name, best, macs / best / 1e6))
        print(f"| {name} | {best:.4f} | {macs / best / 1e6:.1f} |")

    def ratio(num: str, den: str) -> None:
        if num in times and den in times:
            r = [d / n for n, d in zip(times[num], times[den], strict=True)]
            print(f"| {num} / {den} | {statistics.median(r):.3f} | {min(r):.3f}–{max(r):.3f} |")

    print("\nspeed ratios per round (>1: the first is faster)\n")
    print("| ratio | median | spread |\n|---|---|---|")
    ratio("fxemu fused:hopper_fp8 (e4m3)", "fxemu sequential (e4m3)")
    ratio("fxemu fused:a100_fp16 (fp16)", "fxemu sequential (fp16)")
    ratio("fxemu fused:hopper_fp8 (e4m3)", "mmaemu chain_gemm hopper (e4m3)")
    return out


def mmaemu_check(n: int = 7, kmax: int = 256) -> int:
    """Compare the FP8 presets with mmaemu's chain model; the number of differing results."""
    import dataclasses

    import torch
    from mmaemu.model.chain import dot

    fmts = {"e4m3": (fx.parse("float8_e4m3fn"), -6), "e5m2": (fx.parse("float8_e5m2"), -14)}
    rng = np.random.default_rng(12)

    def operands(name: str, k: int, kind: str) -> np.ndarray:
        fmt = fmts[name][0]
        codes = rng.integers(0, 256, (n, k)).astype(np.uint64)
        if kind == "subnormal":
            sub = rng.random((n, k)) < 0.7
            codes = np.where(sub, codes & np.uint64(0x80 | ((1 << fmt.man_bits) - 1)), codes)
        v = fx.from_bits(codes, fmt)
        v = np.where(np.isfinite(v), v, 0.0)
        return np.where(rng.random((n, k)) < 0.75, 0.0, v) if kind == "zero" else v

    bad_all = 0
    for preset, ours in (("hopper", "hopper_fp8"), ("ada", "ada_fp8"),
                         ("b200_mma_sync", "b200_fp8")):
        count = bad = 0
        for fa, fb in (("e4m3", "e4m3"), ("e5m2", "e5m2"), ("e4m3", "e5m2")):
            f = dataclasses.replace(fx.FUSED_PRESETS[ours], emin_a=fmts[fa][1],
                                    emin_b=fmts[fb][1])
            mac = fx.Mac("float32", order=f)
            for k in range(1, kmax + 1):
                kind = ("uniform", "subnormal", "zero")[k % 3]
                a, b = operands(fa, k, kind), operands(fb, k, kind)
                got = fx.matmul(a, b.T, mac).astype(np.float32)
                with warnings.catch_warnings():  # b200_mma_sync is experimental in mmaemu
                    warnings.simplefilter("ignore")
                    ref = dot(torch.tensor(a)[:, None, :].expand(n, n, k),
                              torch.tensor(b)[None, :, :].expand(n, n, k), preset=preset,
                              fmt=(fa, fb)).numpy()
                bad += int(np.count_nonzero(got.view(np.uint32) != ref.view(np.uint32)))
                count += n * n
        print(f"| fused:{ours} | mmaemu chain.dot preset={preset} | {count} | {bad} |")
        bad_all += bad
    return bad_all


def toolbox(root: Path) -> int:
    """Replay the toolbox's hardware vectors; the number of mismatching outputs."""
    base = root / "model_validation"

    def words(path: Path, radix: int) -> np.ndarray:
        w = np.array([int(t, radix) for t in path.read_text().split()], np.uint32)
        return w.view(np.float32).astype(np.float64)

    total = bad = 0
    for gpu, fmt, k, order in TOOLBOX:
        d = base / gpu / fmt
        a = words(d / f"a_{gpu}_{fmt}.txt", 16).reshape(-1, k)
        b = words(d / f"b_{gpu}_{fmt}.txt", 16).reshape(-1, k)
        acc = "float16" if order.endswith("_acc16") else "float32"
        c = words(d / f"c_{gpu}_fp32.txt", 2)
        want = words(d / f"d_{gpu}_{'fp16' if acc == 'float16' else 'fp32'}.txt", 2)
        if gpu in ("H100", "H200") and fmt in ("E4M3", "E5M2"):
            c = np.zeros_like(c)  # WGMMA with d = 0, as the toolbox's validation script
        c = fx.quantize(c, acc)  # binary16 accumulators get c rounded to nearest
        params = lowering.fused_params(fx.Mac(acc, order=order))
        miss = 0
        for i in range(len(want)):
            r = fused_chain(a[i], b[i], c[i], *params)
            miss += np.float32(r).view(np.uint32) != np.float32(want[i]).view(np.uint32)
        print(f"| {gpu} {fmt} (acc {acc}) | {order} | {len(want)} | {miss} |")
        total += len(want)
        bad += int(miss)
    print(f"| all | | {total} | {bad} |")
    return bad


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with_threads(args, run)
    if args.mmaemu:
        print("\n| fxemu | reference | dot products | differing |\n|---|---|---|---|")
        mmaemu_check()
    if args.toolbox is not None:
        print("\n| hardware vectors | preset | vectors | mismatches |\n|---|---|---|---|")
        toolbox(args.toolbox)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
