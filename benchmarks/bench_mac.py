"""Benchmark emulated multiply-accumulate (``fx.matmul``, ``fx.conv2d``) against peers, in MAC/s.

Problems (MACs = multiply-accumulates = M·N·K, or N·F·Ho·Wo·C·Kh·Kw):

* ``matmul`` — (128, 2028) @ (2028, 10);
* ``conv2d`` — x (128, 1, 28, 28) with w (12, 1, 3, 3), valid, stride 1 (K = 9 per output).

Datapaths (``fx.Mac``; products exact, every addition rounded into the accumulator):

* ``fixed`` — ``ap_fixed<16,8>`` operands, accumulator ``ap_fixed<32,16,AP_TRN,AP_SAT>``,
  sequential;
* ``e5m10`` operands (IEEE half) with an e5m10 or an e8m23 accumulator (round to nearest even),
  orders ``sequential`` and ``chunk:64``.

Operands are seeded ``standard_normal * --scale`` quantized into the operand format (at the
default scale 16 a few matmul outputs saturate the 32-bit fixed accumulator on the way).

Rows (a missing peer is reported and skipped; the script never asserts and exits 0):

* **fxemu** — ``fx.matmul(A, B, mac)`` / ``fx.conv2d(x, w, mac)`` on float64 values, timed whole
  (coercion, im2col, result as float64), on all numba threads and on one thread.
* **C++** — the same loops written with the vendor types of the hls4ml wheel (``ap_fixed`` for
  fixed, ``ac_std_float`` with ``fma`` for float: ``benchmarks/cxx_mac/mac_kernels.cpp``), types
  generated from ``fmt.hls_type``, built with ``g++ -O3`` into a cached shared library and called
  through ctypes. One thread; operands are converted from bit patterns to the vendor types before
  the timed region and the library times its own loop (steady_clock).
* **APyTypes** — ``A @ B`` of ``APyFixedArray`` / ``APyFloatArray`` inside
  ``APyFixedAccumulatorContext`` / ``APyFloatAccumulatorContext``; conv2d as a patch matrix @ the
  weights. Only the product is timed (operands built and the patch matrix formed beforehand).
  APyTypes has one summation order; it is timed again under each fxemu order.
* **numpy** — speed of light without per-MAC rounding: float32 ``A @ B`` (BLAS) on the e5m10
  operands and int64 ``A @ B`` on the fixed operands' integer codes (numpy's own loop, one
  thread); conv2d as a patch matrix (built inside the timed call) @ the weights.

Every row compares its results with fxemu's: C++ the raw accumulator bit patterns (they should be
identical), APyTypes values (floats also the sign of zero), numpy int64 the exact sums (they differ
exactly where the saturating accumulator clipped). Mismatches are counted and a few printed.
Timing: per problem and datapath, one warm-up call of every row (Numba compilation; excluded),
then ``--repeats`` rounds in which every row is called once in turn (round robin, garbage
collector off); each row keeps its best. Interleaving exposes all libraries to the same
background load, so the ratios hold better on a shared machine than back-to-back timing.

Usage::

    python benchmarks/bench_mac.py                  # best of 5
    python benchmarks/bench_mac.py --repeats 9 --threads 1
    python benchmarks/bench_mac.py --quick          # tiny sizes, 1 repeat (smoke run)
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import hashlib
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import optional_import, with_threads

FIXED_IN = "ap_fixed<16,8>"
SRC = Path(__file__).resolve().parent / "cxx_mac" / "mac_kernels.cpp"
CXX_FLAGS = ("-std=c++14", "-O3", "-fPIC", "-shared")
CHUNK = 64


@dataclass(frozen=True)
class Problem:
    key: str  # "matmul": (M, K, N); "conv2d": (N, C, H, W, F, Kh, Kw)
    dims: tuple[int, ...]

    @property
    def macs(self) -> int:
        if self.key == "matmul":
            m, k, n = self.dims
            return m * k * n
        n, c, h, w, f, kh, kw = self.dims
        return n * f * (h - kh + 1) * (w - kw + 1) * c * kh * kw

    @property
    def label(self) -> str:
        d = self.dims
        if self.key == "matmul":
            return f"matmul {d[0]}x{d[1]} @ {d[1]}x{d[2]}"
        return f"conv2d {d[0]}x{d[1]}x{d[2]}x{d[3]} * {d[4]}x{d[1]}x{d[5]}x{d[6]}"


PROBLEMS = {
    "matmul": Problem("matmul", (128, 2028, 10)),
    "conv2d": Problem("conv2d", (128, 1, 28, 28, 12, 3, 3)),
}
QUICK_PROBLEMS = {  # K = 100 > CHUNK still crosses a chunk boundary
    "matmul": Problem("matmul", (8, 100, 3)),
    "conv2d": Problem("conv2d", (2, 1, 8, 8, 3, 3, 3)),
}


@dataclass(frozen=True)
class Config:
    key: str
    inp: str  # "fixed" | "e5m10"
    acc: str  # "acc32" | "e5m10" | "e8m23"
    order: str
    cxx_acc: int  # the accumulator selector of mac_kernels.cpp


CONFIGS = (
    Config("fixed16 / acc32 sat, seq", "fixed", "acc32", "sequential", 0),
    Config("e5m10 / e5m10, seq", "e5m10", "e5m10", "sequential", 1),
    Config("e5m10 / e5m10, chunk:64", "e5m10", "e5m10", f"chunk:{CHUNK}", 1),
    Config("e5m10 / e8m23, seq", "e5m10", "e8m23", "sequential", 2),
    Config("e5m10 / e8m23, chunk:64", "e5m10", "e8m23", f"chunk:{CHUNK}", 2),
)


@dataclass
class Row:
    problem: str
    config: str
    library: str
    call: str
    threads: str
    macs: int
    seconds: float = math.nan
    mismatches: int | None = None
    compared: int = 0
    note: str = ""

    @property
    def rate(self) -> float:
        return self.macs / self.seconds if self.seconds > 0 else math.nan

    @property
    def ok(self) -> bool:
        return self.seconds > 0

    @property
    def failed(self) -> bool:
        return self.note.startswith("failed")


# -- helpers -----------------------------------------------------------------------------------


Timer = Callable[[], tuple[float, object]]  # one timed call: (seconds, result)


def _timer(fn: Callable[[], object]) -> Timer:
    """Time one ``fn()`` with ``time.perf_counter``."""

    def once() -> tuple[float, object]:
        t0 = time.perf_counter()
        result = fn()
        return time.perf_counter() - t0, result

    return once


def _lazy(make: Callable[[], Timer]) -> Timer:
    """A timer built on its first (warm-up) call, so that setting up is never timed."""
    cell: list[Timer] = []

    def once() -> tuple[float, object]:
        if not cell:
            cell.append(make())
        return cell[0]()

    return once


@dataclass
class Case:
    """A row, its timed call, and ``check(row, got, ref)`` comparing its result with fxemu's."""

    row: Row
    once: Timer
    check: Callable[[Row, object, np.ndarray], None] | None = None


def _round_robin(cases: list[Case], repeats: int) -> list[object | None]:
    """Warm up every case once (excluded; its result is returned, None where it failed), then
    time the cases in turn for ``repeats`` rounds, keeping each case's best. Interleaving puts
    every library under the same background load, so the ratios hold on a busy machine."""
    results = [_attempt(c.row, lambda r, c=c: c.once()[1]) for c in cases]
    live = [c for c, res in zip(cases, results, strict=True) if res is not None]
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(max(1, repeats)):
            for c in live:
                if c.row.failed:
                    continue
                sec = _attempt(c.row, lambda r, c=c: c.once()[0])
                if sec is not None:
                    c.row.seconds = min(c.row.seconds, sec) if c.row.ok else sec
    finally:
        if enabled:
            gc.enable()
    return results


@contextlib.contextmanager
def _numba_threads(n: int) -> Iterator[None]:
    import numba

    old = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        yield
    finally:
        numba.set_num_threads(old)


def _patches(x: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """(N·Ho·Wo, C·Kh·Kw) patch matrix of NCHW ``x``, column k = (c·Kh + i)·Kw + j."""
    n, c, h, w = x.shape
    ho, wo = h - kh + 1, w - kw + 1
    cols = np.empty((n, ho, wo, c, kh, kw), x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[..., i, j] = x[:, :, i : i + ho, j : j + wo].transpose(0, 2, 3, 1)
    return cols.reshape(n * ho * wo, c * kh * kw)


def _nchw(res: np.ndarray, p: Problem) -> np.ndarray:
    """A (N·Ho·Wo, F) patch-matrix product as (N, F, Ho, Wo)."""
    n, _, h, w, f, kh, kw = p.dims
    return res.reshape(n, h - kh + 1, w - kw + 1, f).transpose(0, 3, 1, 2)


def _differ(ref: np.ndarray, got: np.ndarray, signed_zero: bool) -> np.ndarray:
    """Flat indices where ``got`` differs from ``ref`` (NaN equals NaN)."""
    got = np.asarray(got, dtype=np.float64).reshape(ref.shape)
    with np.errstate(invalid="ignore"):
        same = (ref == got) | (np.isnan(ref) & np.isnan(got))
    if signed_zero:
        same &= np.signbit(ref) == np.signbit(got)
    return np.flatnonzero(~same)


def _record(row: Row, bad: np.ndarray, total: int, show: Callable[[int], str]) -> None:
    row.mismatches, row.compared = int(bad.size), total
    if bad.size:
        print(f"  {row.problem} [{row.config}] {row.library}: {bad.size:,} of {total:,} "
              "results differ from fxemu, e.g.")
        for i in bad[:3]:
            print(f"      output {int(i)}: {show(int(i))}")


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "?"


def _blas_threads() -> str:
    tpc, _ = optional_import("threadpoolctl")
    if tpc is None:
        return "? (threadpoolctl not installed)"
    info = [i for i in tpc.threadpool_info() if i.get("user_api") == "blas"]
    return ", ".join(f"{i.get('internal_api')} {i.get('version')}: {i.get('num_threads')}"
                     for i in info) or "?"


# -- the C++ peer --------------------------------------------------------------------------------


@dataclass
class CxxLib:
    lib: ctypes.CDLL
    path: Path
    compiler: str
    flags: tuple[str, ...]


def _vendor_dirs() -> tuple[Path, Path] | None:
    from fxemu.hw.toolchain import vendor_include_dirs

    from fxemu import BackendUnavailable

    try:
        return vendor_include_dirs()
    except BackendUnavailable:
        return None


def _cache_dir() -> Path:
    env = os.environ.get("FXEMU_BENCH_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "fxemu-bench"


def build_cxx(formats: dict[str, object]) -> tuple[CxxLib | None, str]:
    """Compile (or take from the cache) mac_kernels.cpp; (library, "") or (None, why)."""
    cxx = shutil.which(os.environ.get("CXX", "g++"))
    if cxx is None:
        return None, "no C++ compiler (set CXX or install g++)"
    dirs = _vendor_dirs()
    if dirs is None:
        return None, "hls4ml with templates/vivado/ap_types and catapult/ac_types not installed"
    if not SRC.is_file():
        return None, f"{SRC} missing"
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=False)
    defines = (
        f"-DFXEMU_FX_IN={formats['fixed'].hls_type}",
        f"-DFXEMU_FX_ACC={formats['acc32'].hls_type}",
        f"-DFXEMU_FL_IN={formats['e5m10'].hls_type}",
        f"-DFXEMU_FL_ACC1={formats['e5m10'].hls_type}",
        f"-DFXEMU_FL_ACC2={formats['e8m23'].hls_type}",
    )
    flags = (*CXX_FLAGS, *defines)
    h = hashlib.sha256()
    for part in (SRC.read_bytes(), " ".join(flags).encode(), version.stdout.encode()):
        h.update(part)
    for d in dirs:
        for f in sorted(d.rglob("*.h")):
            h.update(f.name.encode())
            h.update(f.read_bytes())
    cache = _cache_dir()
    lib = cache / f"mac_kernels-{h.hexdigest()[:20]}.so"
    compiler = version.stdout.splitlines()[0] if version.stdout else cxx
    if not lib.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache)
        os.close(fd)
        cmd = [cxx, *flags, *(f"-I{d}" for d in dirs), str(SRC), "-o", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            Path(tmp).unlink(missing_ok=True)
            tail = (proc.stdout + proc.stderr).strip()[-3000:]
            return None, f"compile failed ({proc.returncode}): {' '.join(cmd)}\n{tail}"
        os.replace(tmp, lib)
    try:
        dll = ctypes.CDLL(str(lib))
    except OSError as exc:
        return None, f"cannot load {lib}: {exc}"
    u64p = ctypes.POINTER(ctypes.c_uint64)
    dll.fxemu_bench_matmul.restype = ctypes.c_double
    dll.fxemu_bench_matmul.argtypes = [ctypes.c_int, u64p, u64p, u64p, *[ctypes.c_int] * 5]
    dll.fxemu_bench_conv2d.restype = ctypes.c_double
    dll.fxemu_bench_conv2d.argtypes = [ctypes.c_int, u64p, u64p, u64p, *[ctypes.c_int] * 9]
    return CxxLib(dll, lib, compiler, flags), ""


def _ptr(a: np.ndarray) -> ctypes._Pointer:
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_uint64))


def _cxx_timer(cx: CxxLib, p: Problem, cfg: Config, ops: tuple[np.ndarray, np.ndarray],
               in_fmt: object) -> Timer:
    """One call of the vendor loop: (its own loop time, accumulator codes in fxemu's layout)."""
    import fxemu as fx

    chunk = int(cfg.order[6:]) if cfg.order.startswith("chunk:") else 0
    a, b = ops
    if p.key == "matmul":
        m, k, n = p.dims
        b = b.T
        shape: tuple[int, ...] = (m, n)
        fn, dims = cx.lib.fxemu_bench_matmul, (m, n, k)
    else:
        nb, _, h, w, f, kh, kw = p.dims
        shape = (nb, f, h - kh + 1, w - kw + 1)
        fn, dims = cx.lib.fxemu_bench_conv2d, p.dims
    ac, bc = (np.ascontiguousarray(fx.to_bits(x, in_fmt), dtype=np.uint64) for x in (a, b))

    def once() -> tuple[float, np.ndarray]:
        out = np.zeros(shape, np.uint64)
        sec = fn(cfg.cxx_acc, _ptr(ac), _ptr(bc), _ptr(out), *dims, chunk, 1)
        if sec < 0:
            raise RuntimeError(f"mac_kernels: unknown accumulator selector {cfg.cxx_acc}")
        return sec, out

    return once


# -- APyTypes -------------------------------------------------------------------------------------


def _apy_context(apy: object, acc: object) -> tuple[Callable[[], object], str]:
    """(context factory, label) for an accumulator format; parameters taken from the format."""
    q = apy.QuantizationMode
    if hasattr(acc, "frac_bits"):  # fx.Fixed: TRN + SAT is the benchmarked accumulator
        i, f = acc.int_bits, acc.frac_bits
        return (lambda: apy.APyFixedAccumulatorContext(
            int_bits=i, frac_bits=f, quantization=q.TRN, overflow=apy.OverflowMode.SAT),
            f"APyFixedAccumulatorContext({i}, {f}, TRN, SAT)")
    e, m = acc.exp_bits, acc.man_bits
    return (lambda: apy.APyFloatAccumulatorContext(exp_bits=e, man_bits=m,
                                                   quantization=q.TIES_EVEN),
            f"APyFloatAccumulatorContext({e}, {m}, TIES_EVEN)")


def _apy_array(apy: object, x: np.ndarray, fmt: object) -> object:
    x = np.ascontiguousarray(x)
    if hasattr(fmt, "frac_bits"):
        return apy.APyFixedArray.from_float(x, int_bits=fmt.int_bits, frac_bits=fmt.frac_bits)
    return apy.APyFloatArray.from_float(x, fmt.exp_bits, fmt.man_bits)


def _apy_operands(apy: object, p: Problem, ops: tuple[np.ndarray, np.ndarray],
                  fmt: object) -> tuple[object, object]:
    a, b = ops
    if p.key == "conv2d":
        a, b = _patches(a, b.shape[2], b.shape[3]), b.reshape(b.shape[0], -1).T
    return _apy_array(apy, a, fmt), _apy_array(apy, b, fmt)


def apy_fixed_probe(apy: object, inp: object, acc: object) -> str:
    """What APyTypes' fixed accumulator does on overflow: (3·big²) into ``acc``."""
    import fxemu as fx

    big = float(2 ** (inp.int_bits - 1) - 8)
    a, b = np.full((1, 3), big), np.full((3, 1), big)
    ctx, label = _apy_context(apy, acc)
    aa, bb = _apy_array(apy, a, inp), _apy_array(apy, b, inp)
    with ctx():
        got = float(np.asarray((aa @ bb).to_numpy()).reshape(-1)[0])
    want = float(fx.matmul(a, b, fx.Mac(acc=acc))[0, 0])
    verdict = "saturates" if got == want else "does NOT saturate"
    return (f"3 x ({big:g}*{big:g}) in {label}: APyTypes {got!r}, fxemu / {acc.hls_type} "
            f"{want!r} (max {acc.max!r}): APyTypes' accumulator {verdict}")


# -- running -------------------------------------------------------------------------------------


def _operands(p: Problem, rng: np.random.Generator, scale: float) -> tuple[np.ndarray, np.ndarray]:
    if p.key == "matmul":
        m, k, n = p.dims
        return rng.standard_normal((m, k)) * scale, rng.standard_normal((k, n)) * scale
    nb, c, h, w, f, kh, kw = p.dims
    return rng.standard_normal((nb, c, h, w)) * scale, rng.standard_normal((f, c, kh, kw)) * scale


def _fx_call(fx: object, p: Problem, ops: tuple[np.ndarray, np.ndarray],
             mac: object) -> Callable[[], np.ndarray]:
    fn = fx.matmul if p.key == "matmul" else fx.conv2d
    return lambda: fn(ops[0], ops[1], mac)


def _numpy_call(p: Problem, a: np.ndarray, b: np.ndarray) -> Callable[[], np.ndarray]:
    if p.key == "matmul":
        return lambda: a @ b
    f, _, kh, kw = b.shape
    wm = np.ascontiguousarray(b.reshape(f, -1).T)
    return lambda: _nchw(_patches(a, kh, kw) @ wm, p)


def _attempt(row: Row, fn: Callable[[Row], object]) -> object | None:
    """``fn(row)``; a failure is recorded in the row and printed, never raised (returns None)."""
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            return fn(row)
    except Exception as exc:  # a benchmark reports and goes on
        row.note = f"failed: {type(exc).__name__}: {exc}"
        print(f"  {row.problem} [{row.config}] {row.library} {row.call}: {row.note}")
        return None


def run(args: argparse.Namespace) -> list[Row]:
    """Run every case, print the tables, return the rows."""
    return with_threads(args, _run)


@dataclass
class _Bench:
    """What every case needs: the formats, the options and the optional peers."""

    fx: object
    formats: dict[str, object]
    args: argparse.Namespace
    apy: object | None
    cx: CxxLib | None

    def cases(self, p: Problem, raw: tuple[np.ndarray, np.ndarray]) -> list[Row]:
        """Every config on one problem: fxemu and its peers timed round robin, then compared."""
        fx = self.fx
        ops = {k: tuple(fx.quantize(x, self.formats[k]) for x in raw) for k in ("fixed", "e5m10")}
        rows = []
        for cfg in CONFIGS:
            mac = fx.Mac(acc=self.formats[cfg.acc], order=cfg.order)
            call = _fx_call(fx, p, ops[cfg.inp], mac)
            head = Case(Row(p.key, cfg.key, "fxemu", f"{p.key}(Mac(order={cfg.order}))",
                            str(_numba_threads_now()), p.macs), _timer(call))
            cases = [head, *self.peers(p, cfg, ops[cfg.inp], call)]
            results = _round_robin(cases, self.args.repeats)
            rows += [c.row for c in cases]
            ref = results[0]
            if ref is None:
                continue
            for c, got in zip(cases[1:], results[1:], strict=True):
                if got is not None and c.check is not None:
                    _attempt(c.row, lambda r, c=c, got=got, ref=ref: c.check(r, got, ref))
        return rows

    def peers(self, p: Problem, cfg: Config, ops: tuple[np.ndarray, np.ndarray],
              call: Callable[[], np.ndarray]) -> list[Case]:
        def row(library: str, what: str, threads: object) -> Row:
            return Row(p.key, cfg.key, library, what, str(threads), p.macs)

        signed_zero = cfg.inp != "fixed"
        cases = []
        if _numba_threads_now() > 1:
            fxemu_once = _timer(call)

            def single() -> tuple[float, object]:
                with _numba_threads(1):
                    return fxemu_once()

            cases.append(Case(row("fxemu", "  same, 1 thread", 1), single,
                              lambda r, got, ref: _record_values(r, ref, got, signed_zero)))
        if self.cx is not None:
            kind = "ap_fixed" if cfg.inp == "fixed" else "ac_std_float fma"
            cases.append(Case(row("C++", f"{kind} loop, g++ -O3", 1),
                              _lazy(lambda: _cxx_timer(self.cx, p, cfg, ops,
                                                       self.formats[cfg.inp])),
                              lambda r, got, ref: self.check_cxx(r, cfg, got, ref)))
        if self.apy is not None:
            ctx, label = _apy_context(self.apy, self.formats[cfg.acc])
            threads = self.apy.n_threads() if hasattr(self.apy, "n_threads") else "?"

            def apy_timer() -> Timer:
                aa, bb = _apy_operands(self.apy, p, ops, self.formats[cfg.inp])

                def product() -> object:
                    with ctx():
                        return aa @ bb

                return _timer(product)

            cases.append(Case(row("APyTypes", f"A @ B in {label}", threads), _lazy(apy_timer),
                              lambda r, got, ref: self.check_apy(r, p, cfg, ops, got, ref)))
        if cfg.inp == "fixed":
            frac = self.formats["fixed"].frac_bits

            def int64_timer() -> Timer:
                a, b = (np.rint(np.ldexp(x, frac)).astype(np.int64) for x in ops)
                return _timer(_numpy_call(p, a, b))

            def int64_check(r: Row, got: object, ref: np.ndarray) -> None:
                vals = np.ldexp(np.asarray(got, dtype=np.float64), -2 * frac)
                _record_values(r, ref, vals, False)
                r.note = "differs only where the 32-bit accumulator saturated"

            cases.append(Case(row("numpy", "int64 codes A @ B (exact, no saturation)", 1),
                              _lazy(int64_timer), int64_check))
        else:
            def f32_timer() -> Timer:
                a, b = (x.astype(np.float32) for x in ops)
                return _timer(_numpy_call(p, a, b))

            cases.append(Case(row("numpy", "float32 A @ B (BLAS)", "BLAS"), _lazy(f32_timer),
                              lambda r, got, ref: setattr(r, "note", "no per-MAC rounding "
                                                          "(not compared)")))
        return cases

    def check_cxx(self, row: Row, cfg: Config, codes: np.ndarray, ref: np.ndarray) -> None:
        fx, acc = self.fx, self.formats[cfg.acc]
        want = np.asarray(fx.to_bits(ref, acc), dtype=np.uint64).reshape(-1)
        got = codes.reshape(-1)
        flat = ref.reshape(-1)
        _record(row, np.flatnonzero(want != got), want.size,
                lambda i: f"fxemu {int(want[i]):#x} ({float(flat[i])!r}), C++ {int(got[i]):#x} "
                          f"({float(fx.from_bits(got[i:i + 1], acc)[0])!r})")

    def check_apy(self, row: Row, p: Problem, cfg: Config, ops: tuple[np.ndarray, np.ndarray],
                  res: object, ref: np.ndarray) -> None:
        got = np.asarray(res.to_numpy(), dtype=np.float64)
        got = _nchw(got, p) if p.key == "conv2d" else got
        _record_values(row, ref, got, cfg.inp != "fixed")
        acc = self.formats[cfg.acc]
        if cfg.inp == "fixed":
            row.note = "overflow mode not applied: differs where fxemu saturated (see probe)"
        else:  # is APyTypes' product rounded into the accumulator before the addition?
            alt = _fx_call(self.fx, p, ops, self.fx.Mac(acc=acc, mul=acc))()
            row.note = f"vs fxemu Mac(mul=acc, sequential): {_differ(alt, got, True).size} differ"


def _numba_threads_now() -> int:
    import numba

    return numba.get_num_threads()


def _record_values(row: Row, ref: np.ndarray, got: np.ndarray, signed_zero: bool) -> None:
    got = np.asarray(got, dtype=np.float64).reshape(ref.shape)
    r, g = ref.reshape(-1), got.reshape(-1)
    _record(row, _differ(ref, got, signed_zero), ref.size,
            lambda i: f"fxemu {float(r[i])!r}, {row.library} {float(g[i])!r}")


def _run(args: argparse.Namespace) -> list[Row]:
    import numba

    import fxemu as fx

    formats = {
        "fixed": fx.parse(FIXED_IN),
        "acc32": fx.Fixed(32, 16, rounding="trn", overflow="sat"),
        "e5m10": fx.Float(5, 10),
        "e8m23": fx.Float(8, 23),
    }
    problems = [(QUICK_PROBLEMS if args.quick else PROBLEMS)[k] for k in args.problems]
    apy, apy_why = (None, "--no-apytypes") if args.no_apytypes else optional_import("apytypes")
    cx, cx_why = (None, "--no-cxx") if args.no_cxx else build_cxx(formats)

    print("fxemu MAC benchmark (MAC/s = multiply-accumulates per second)")
    print(f"  python {platform.python_version()} on {platform.platform()}")
    print(f"  cpu: {_cpu_model()}, os.cpu_count() = {os.cpu_count()}, load average "
          f"{_load()} (other processes on these cores skew timings)")
    print(f"  fxemu {getattr(fx, '__version__', '?')}, numba {numba.__version__} "
          f"(numba threads = {numba.get_num_threads()}), numpy {np.__version__} "
          f"(BLAS threads: {_blas_threads()})")
    if apy is not None:
        n_apy = apy.n_threads() if hasattr(apy, "n_threads") else "?"
        print(f"  apytypes {getattr(apy, '__version__', '?')} (threads = {n_apy})")
    else:
        print(f"  apytypes: skipped ({apy_why})")
    if cx is not None:
        print(f"  C++: {cx.compiler}, {' '.join(CXX_FLAGS)}, hls4ml {_dist_version('hls4ml')} "
              f"headers, 1 thread; {cx.path}")
    else:
        print(f"  C++: skipped ({cx_why})")
    print(f"  data: standard_normal * {args.scale:g}, seed {args.seed}, quantized into the operand "
          f"format; best of {args.repeats}, warm-up excluded")

    bench = _Bench(fx, formats, args, apy, cx)
    rows: list[Row] = []
    rng = np.random.default_rng(args.seed)
    for p in problems:
        print(f"\n{p.label}: {p.macs:,} MACs per call")
        rows += bench.cases(p, _operands(p, rng, args.scale))

    print()
    print_table(rows)
    print("\nMarkdown:\n")
    print_markdown(rows)
    print_bars(rows)
    print_identity(rows)
    if apy is not None:
        print_apy_semantics(apy, formats["fixed"], formats["acc32"])
    return rows


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


def print_apy_semantics(apy: object, inp: object, acc: object) -> None:
    print("\nAPyTypes semantics (information):")
    try:
        print(f"  fixed: {apy_fixed_probe(apy, inp, acc)}")
    except Exception as exc:  # information only
        print(f"  fixed probe failed: {type(exc).__name__}: {exc}")
    print("  fixed: the accumulator context quantizes every addition (TRN) as ap_fixed does, but "
          "does not apply its overflow mode, so the rows above differ where fxemu saturated")
    print("  float: the accumulator context rounds each product into the accumulator format "
          "before the addition (two roundings; see the 'Mac(mul=acc…)' note, which compares "
          "with that datapath) and has one summation order, so chunk:64 rows differ by design")


# -- output --------------------------------------------------------------------------------------

HEADER = ("problem", "config", "library", "call", "threads", "MMAC/s", "fxemu/peer",
          "fxemu 1-thr/peer", "mismatches", "note")
RIGHT = {5, 6, 7}


def _fxemu(rows: list[Row], r: Row, single: bool) -> Row | None:
    for f in rows:
        if (f.problem == r.problem and f.config == r.config and f.library == "fxemu"
                and (f.threads == "1") == single and f.ok):
            return f
    return None


def _ratio(num: Row | None, den: Row) -> str:
    return f"{num.rate / den.rate:,.2f}" if num is not None and den.ok else "-"


def _cells(rows: list[Row]) -> list[tuple[str, ...]]:
    out = []
    for r in rows:
        fx_n = _fxemu(rows, r, single=False)
        fx_1 = _fxemu(rows, r, single=True) or (fx_n if fx_n and fx_n.threads == "1" else None)
        mism = "-" if r.mismatches is None else f"{r.mismatches:,} of {r.compared:,}"
        out.append((r.problem, r.config, r.library, r.call, r.threads,
                    f"{r.rate / 1e6:,.1f}" if r.ok else "-", _ratio(fx_n, r), _ratio(fx_1, r),
                    mism, r.note[:80]))
    return out


def print_table(rows: list[Row]) -> None:
    cells = [HEADER, *_cells(rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
    for j, c in enumerate(cells):
        print("  ".join(s.rjust(w) if i in RIGHT else s.ljust(w)
                        for i, (s, w) in enumerate(zip(c, widths, strict=True))).rstrip())
        if j == 0:
            print("  ".join("-" * w for w in widths))


def print_markdown(rows: list[Row]) -> None:
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "|".join("---:" if i in RIGHT else "---" for i in range(len(HEADER))) + "|")
    for c in _cells(rows):
        print("| " + " | ".join(s.replace("|", "\\|") for s in c) + " |")


BARS = (  # (config prefix, peer library, call prefix, fxemu/peer must be >= this)
    ("fixed16", "APyTypes", "", 5.0),
    ("fixed16", "C++", "", 3.0),
    ("fixed16", "numpy", "int64", 0.25),  # within 4x of numpy int64 matmul
    ("e5m10", "APyTypes", "", 3.0),
)


def print_bars(rows: list[Row]) -> None:
    """Project targets, information only: fxemu on all numba threads (and on one thread)."""
    print("\nTargets (information only; fxemu/peer on all numba threads, [on 1 thread]):")
    for prefix, lib, call, need in BARS:
        for r in rows:
            if not (r.config.startswith(prefix) and r.library == lib and r.call.startswith(call)
                    and r.ok):
                continue
            f, f1 = _fxemu(rows, r, single=False), _fxemu(rows, r, single=True)
            if f is None:
                continue
            ratio = f.rate / r.rate
            one = f" [{f1.rate / r.rate:,.2f}x]" if f1 is not None else ""
            print(f"  {r.problem:6s} {r.config:24s} vs {lib:8s}: {f.rate / 1e6:8,.1f} vs "
                  f"{r.rate / 1e6:8,.1f} MMAC/s = {ratio:6.2f}x{one} (target >= {need:g}x): "
                  f"{'met' if ratio >= need else 'NOT met'}")


def print_identity(rows: list[Row]) -> None:
    cxx = [r for r in rows if r.library == "C++"]
    if not cxx:
        print("\nC++ vs fxemu bit identity: not run")
        return
    print("\nC++ vendor loop vs fxemu, raw accumulator bit patterns:")
    for r in cxx:
        state = (r.note or "not compared") if r.mismatches is None else (
            "bit-identical" if r.mismatches == 0 else f"{r.mismatches:,} DIFFER")
        print(f"  {r.problem:6s} {r.config:24s}: {state} ({r.compared:,} outputs)")


# -- main ----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=None,
                   help="timed calls per case; best is kept (default 5, 1 with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: tiny sizes (matmul 8x100 @ 100x3, conv2d 2x1x8x8 * 3x1x3x3)")
    p.add_argument("--problems", nargs="+", choices=sorted(PROBLEMS), default=list(PROBLEMS),
                   help="which problems to run (default: both)")
    p.add_argument("--threads", type=int, default=None,
                   help="numba threads for fxemu (default: numba's, i.e. all cores)")
    p.add_argument("--scale", type=float, default=16.0,
                   help="operands = standard normal * scale before quantization (default 16)")
    p.add_argument("--seed", type=int, default=20240601, help="random data seed")
    p.add_argument("--no-cxx", action="store_true", help="skip the g++ vendor-type peer")
    p.add_argument("--no-apytypes", action="store_true", help="skip the APyTypes peer")
    args = p.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 5
    return args


def main(argv: list[str] | None = None) -> int:
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
