"""Benchmark block-scaled (OCP MX) conversion and the block Mac against peers.

Conversion of ``--n`` values (default 10^7, seeded ``standard_normal · 2^U(-8, 8)`` per block,
float32-representable) into ``mxfp8_e4m3``, ``mxfp8_e5m2`` and ``mxfp4_e2m1`` (blocks of 32
along the last axis), at each thread count of ``--threads`` (default 1 and 2; numba's and
torch's thread counts both set to it):

* **fxemu** — ``fx.to_bits(x, block)`` (element and scale codes) on the **float32** array
  (what torchao takes) and on the float64 array, and ``fx.quantize`` (decoded values,
  float64 in);
* **gfloat** — its vectorised ndarray path (numpy, one thread): per-block amax and scale
  (``compute_scale_amax``'s rule written with numpy over the (blocks, 32) array), then
  ``round_ndarray(sat=True)`` and ``encode_ndarray`` of the elements, float64 in; its block
  API ``encode_block`` (a Python generator per block) is timed on ``--n-slow`` values and
  scaled to ``--n`` (marked ``extrapolated``);
* **torchao** — ``torchao.prototype.mx_formats.mx_tensor.to_mx`` (its MX reference, CPU,
  float32 tensor in, FLOOR scale);
* **ml_dtypes** — the element cast alone (``x / scale`` clipped, ``astype``; float64 in,
  numpy, one thread) with the scales precomputed: a speed-of-light row for the element
  conversion.

Each conversion row's codes are compared with fxemu's (mismatch counts; the peers agree with
fxemu on finite blocks, see docs/mx_notes.md).

Block Mac: ``(128, 2028) @ (2028, 10)`` through ``Mac(acc="float32", a=mxfp8_e4m3,
b=mxfp8_e4m3)`` (operands converted inside the call) vs the plain sequential
``Mac(acc="float32")`` on the same operands pre-quantised to MXFP8, in MMAC/s, at the
largest thread count.

Timing: one warm-up call per row (Numba compilation excluded), then ``--repeats`` rounds, every
row once per round in turn; each row reports its best and median, and the ratios are
the peer's best over fxemu's best (``to_bits``, float32 in) with the spread (min–max over
rounds of the per-round ratio). The load average is printed before and after.

Usage::

    python benchmarks/bench_mx.py --repeats 3   # 10^7 values, 1 and 2 threads
    python benchmarks/bench_mx.py --quick       # tiny sizes (smoke run)
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import optional_import

import fxemu as fx

FORMATS = ("mxfp8_e4m3", "mxfp8_e5m2", "mxfp4_e2m1")
HEADLINE = "to_bits (float32 in)"


@dataclass
class Row:
    library: str
    task: str
    fmt: str
    n: int
    threads: int = 0
    times: list = field(default_factory=list)
    mismatches: int | None = None
    note: str = ""

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def median(self) -> float:
        return float(np.median(self.times))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10**7, help="values converted per call")
    ap.add_argument("--n-slow", type=int, default=3200, help="values for gfloat encode_block")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", default="1,2",
                    help="comma-separated thread counts (numba and torch), default 1,2")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, 1 repeat")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.n_slow, args.repeats = 32 * 1000, 320, 1
    args.threads = [int(t) for t in str(args.threads).split(",")]
    return args


def data(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    nb = -(-n // 32)
    x = rng.standard_normal((nb, 32)) * 2.0 ** rng.integers(-8, 8, (nb, 1))
    return x.astype(np.float32).astype(np.float64).reshape(-1)[:n].reshape(-1, 32)


def _gfloat_rows(gf, name: str, x: np.ndarray, n_slow: int, ref) -> list:
    import gfloat.formats as gff

    fi = getattr(gff, f"format_info_{name}")
    emax = fi.etype.emax

    def vectorised():
        amax = np.abs(x).max(axis=1, keepdims=True)
        with np.errstate(divide="ignore"):
            s = np.where(amax == 0, -127.0, np.clip(np.floor(np.log2(amax)) - emax, -127, 127))
        r = gf.round_ndarray(fi.etype, x / 2.0**s, sat=True)
        return gf.encode_ndarray(fi.etype, r), (s + 127).astype(np.uint64)

    xs = x[: max(1, n_slow // 32)]

    def block_api():
        out = []
        for v in xs:
            scale = gf.compute_scale_amax(emax, v)
            out.append(list(gf.encode_block(fi, scale, v / scale)))
        return out

    def check_vec(res):
        el, sc = res
        return int((el.astype(np.uint64) != ref.elements).sum() + (sc != ref.scales).sum())

    def check_blk(res):
        codes = np.array(res, dtype=np.uint64)
        k = codes.shape[0]
        return int((codes[:, 1:] != ref.elements[:k]).sum()
                   + (codes[:, 0] != ref.scales[:k, 0]).sum())

    return [("gfloat", "round_ndarray+encode_ndarray", vectorised, check_vec, x.size, ""),
            ("gfloat", "encode_block", block_api, check_blk, xs.size, "extrapolated")]


def _torchao_rows(name: str, x: np.ndarray, ref) -> list:
    torch, why = optional_import("torch")
    mx, why2 = optional_import("torchao.prototype.mx_formats.mx_tensor")
    if torch is None or mx is None:
        print(f"torchao: skipped ({why or why2})")
        return []
    kern, _ = optional_import("torchao.prototype.mx_formats.kernels")
    dt = {"mxfp8_e4m3": torch.float8_e4m3fn, "mxfp8_e5m2": torch.float8_e5m2,
          "mxfp4_e2m1": torch.float4_e2m1fn_x2}[name]
    t = torch.from_numpy(x.astype(np.float32))

    def call():
        return mx.to_mx(t, dt, 32)

    def check(res):
        sc, d = res
        if name == "mxfp4_e2m1":
            d = kern.unpack_uint4(d).reshape(x.shape)
        el = d.view(torch.uint8).numpy().astype(np.uint64)
        return int((el != ref.elements).sum()
                   + (sc.view(torch.uint8).numpy().astype(np.uint64) != ref.scales).sum())

    return [("torchao", "to_mx", call, check, x.size, "")]


def _ml_dtypes_rows(name: str, x: np.ndarray, ref) -> list:
    ml, why = optional_import("ml_dtypes")
    if ml is None:
        print(f"ml_dtypes: skipped ({why})")
        return []
    dt = {"mxfp8_e4m3": ml.float8_e4m3fn, "mxfp8_e5m2": ml.float8_e5m2,
          "mxfp4_e2m1": ml.float4_e2m1fn}[name]
    scale = np.ldexp(1.0, ref.scales.astype(np.int64) - 127)
    m = fx.parse(name).element.max

    def call():
        return np.clip(x / scale, -m, m).astype(dt)

    def check(res):
        w = fx.parse(name).element.width
        return int(((res.view(np.uint8) & ((1 << w) - 1)).astype(np.uint64)
                    != ref.elements).sum())

    return [("ml_dtypes", "element cast (scales given)", call, check, x.size, "")]


def _timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    res = fn()
    return time.perf_counter() - t, res


def _set_threads(n: int) -> None:
    """numba's and torch's thread counts (torchao runs torch ops)."""
    import numba

    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
    torch, _ = optional_import("torch")
    if torch is not None:
        torch.set_num_threads(n)


def _conversion_rows(args: argparse.Namespace, name: str, threads: int) -> list[Row]:
    gf, why = optional_import("gfloat")
    x = data(args.n)
    x32 = x.astype(np.float32)
    block = fx.parse(name)
    ref = fx.to_bits(x, block)
    cases = [("fxemu", HEADLINE, lambda: fx.to_bits(x32, block), None, x.size, ""),
             ("fxemu", "to_bits (float64 in)", lambda: fx.to_bits(x, block), None, x.size, ""),
             ("fxemu", "quantize (float64 in)", lambda: fx.quantize(x, block), None, x.size,
              "")]
    if gf is not None:
        cases += _gfloat_rows(gf, name, x, args.n_slow, ref)
    else:
        print(f"gfloat: skipped ({why})")
    cases += _torchao_rows(name, x, ref) + _ml_dtypes_rows(name, x, ref)
    rs = [Row(lib, task, name, n, threads, note=note) for lib, task, _, _, n, note in cases]
    for (_, task, fn, check, _, _), r in zip(cases, rs, strict=True):
        res = fn()  # warm-up
        if check is not None:
            r.mismatches = check(res)
        elif task == HEADLINE:
            r.mismatches = int((res.elements != ref.elements).sum()
                               + (res.scales != ref.scales).sum())
    gc.disable()
    try:
        for _ in range(args.repeats):
            for (_, _, fn, _, _, _), r in zip(cases, rs, strict=True):
                r.times.append(_timed(fn)[0] * (x.size / r.n))
    finally:
        gc.enable()
    return rs


def run(args: argparse.Namespace) -> list[Row]:
    import numba

    before = numba.get_num_threads()
    rows: list[Row] = []
    try:
        for threads in args.threads:
            _set_threads(threads)
            for name in FORMATS:
                rows += _conversion_rows(args, name, threads)
        _set_threads(max(args.threads))
        rows += _mac_rows(args)
    finally:
        _set_threads(before)
    return rows


def _mac_rows(args: argparse.Namespace) -> list[Row]:
    m, k, n = (128, 2028, 10) if not args.quick else (8, 100, 3)
    rng = np.random.default_rng(1)
    a = rng.standard_normal((m, k))
    b = rng.standard_normal((k, n))
    bmac = fx.Mac(acc="float32", a="mxfp8_e4m3", b="mxfp8_e4m3")
    qa = fx.quantize(a, "mxfp8_e4m3")
    qb = fx.quantize(b, fx.parse("mxfp8_e4m3").replace(axis=0))
    plain = fx.Mac(acc="float32")
    cases = [("fxemu", "block Mac matmul", lambda: fx.matmul(a, b, bmac)),
             ("fxemu", "sequential Mac matmul", lambda: fx.matmul(qa, qb, plain))]
    rows = [Row(lib, task, "mxfp8_e4m3 / float32 acc", m * n * k, max(args.threads))
            for lib, task, _ in cases]
    for _, _, fn in cases:
        fn()
    for _ in range(args.repeats):
        for (_, _, fn), r in zip(cases, rows, strict=True):
            r.times.append(_timed(fn)[0])
    return rows


def report(rows: list[Row]) -> None:
    print("| library | task | format | threads | n | best [s] | median [s] | Mvalues/s | "
          "mismatches |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if r.task.endswith("matmul"):
            continue
        note = f" ({r.note})" if r.note else ""
        print(f"| {r.library} | {r.task}{note} | {r.fmt} | {r.threads} | {r.n:.0e} | "
              f"{r.best:.4f} | {r.median:.4f} | {r.n / r.best / 1e6:.1f} | {r.mismatches} |")
    print()
    print(f"| ratio: fxemu {HEADLINE} vs | format | threads | best/best | spread over rounds |")
    print("|---|---|---:|---:|---|")
    conv = [r for r in rows if not r.task.endswith("matmul")]
    for threads in sorted({r.threads for r in conv}):
        for fmt in FORMATS:
            ours = next((r for r in conv if r.library == "fxemu" and r.task == HEADLINE
                         and r.fmt == fmt and r.threads == threads), None)
            if ours is None:
                continue
            for r in conv:
                if r.fmt != fmt or r.threads != threads or r is ours:
                    continue
                per = [p / o for p, o in zip(r.times, ours.times, strict=True)]
                print(f"| {r.library} {r.task} | {fmt} | {threads} | {r.best / ours.best:.2f}x | "
                      f"{min(per):.2f}x–{max(per):.2f}x |")
    print()
    print("| Mac | problem | best [s] | MMAC/s |")
    print("|---|---|---:|---:|")
    macs = [r for r in rows if r.task.endswith("matmul")]
    for r in macs:
        print(f"| {r.task} | {r.fmt} | {r.best:.4f} | {r.n / r.best / 1e6:.1f} |")
    if len(macs) == 2:
        per = [p / o for p, o in zip(macs[0].times, macs[1].times, strict=True)]
        print(f"\nblock Mac / sequential Mac time: {macs[0].best / macs[1].best:.2f}x "
              f"(spread {min(per):.2f}x–{max(per):.2f}x)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print("load average before: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    rows = run(args)
    report(rows)
    print("\nload average after: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
