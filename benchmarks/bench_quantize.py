"""Benchmark ``fx.quantize`` (float64 → format → float64) against peer libraries.

Formats (the same nominal format for every library):

* ``ap_fixed<16,8,AP_RND_CONV,AP_SAT>`` — 16 bits, 8 integer bits including the sign, 8 fraction
  bits, round half to even, saturate;
* ``e5m10`` — IEEE half, round to nearest even;
* ``e4m3`` — IEEE layout (inf and NaN at exponent all-ones), bias 7, round to nearest even.

Every row times the whole conversion *float64 in → quantized values as float64 out*, the contract
of ``fx.quantize``; peers that store a narrow type pay the cast back to float64. Timing: one
warm-up call (Numba compilation, page faults; excluded), then the best of ``--repeats`` calls
measured with ``time.perf_counter`` with the garbage collector off.

Peers (each optional; a missing one is reported and skipped):

* **APyTypes** — fixed: ``APyFixedArray.from_float`` quantizes with RND_INF + WRAP only, so the
  input is first taken exactly into a wide staging format (64 fraction bits: every double with
  ``|x| >= 2**-10`` is exact there, and smaller ones round to 0 either way, so no double rounding)
  and then ``.cast(8, 8, RND_CONV, SAT)``; floats: ``APyFloatArray.from_float(x, E, M)``.
  ``.to_numpy()`` gives the float64 values.
* **fxpmath** — ``Fxp(x, True, 16, 8, rounding='around', overflow='saturate').get_val()``;
  ``'around'`` is ``np.around`` of ``x·2^8``, i.e. ties to even (fxpmath's alias ``nearest_even``).
  It is slow: rows above ``--fxpmath-max`` elements time the first ``--fxpmath-max`` values and
  report the per-element rate (marked ``*`` = extrapolated).
* **pychop** — ``Chopf(ibits=8, fbits=8, rmode=1)`` and ``Chop(E, M, rmode=1)`` (numpy backend).
* **numpy** — ``astype(np.float16)`` round trip for e5m10, plus a preallocated ``np.copyto``
  round trip; for the fixed format the hand-vectorized speed-of-light expression
  ``clip(rint(x·256), -32768, 32767) / 256`` (``np.rint`` is ties-to-even) done in place in a
  preallocated buffer, once over the whole array and once cache-blocked.
* **ml_dtypes** — ``astype(ml_dtypes.float8_e4m3)`` round trip (the IEEE-layout e4m3). ml_dtypes
  has no float16 of its own (it is numpy's), so it has no e5m10 row.

Where a peer's values differ from ``fx.quantize`` the mismatches are counted and a few printed
(fixed: values compared, so ±0 are equal; floats: values and sign bits). Information, not a check:
the script never asserts and exits 0.

Usage::

    python benchmarks/bench_quantize.py                    # n = 1e6 and 1e7, best of 5
    python benchmarks/bench_quantize.py --sizes 1e6 --repeats 3
    python benchmarks/bench_quantize.py --quick            # n = 1e4, 1 repeat (smoke run)
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import optional_import, with_threads

FIXED_TEXT = "ap_fixed<16,8,AP_RND_CONV,AP_SAT>"
FORMATS = ("fixed", "e5m10", "e4m3")
LABELS = {"fixed": "ap_fixed<16,8,RND_CONV,SAT>", "e5m10": "e5m10 (half)", "e4m3": "e4m3 (IEEE)"}
FLOAT_BITS = {"e5m10": (5, 10), "e4m3": (4, 3)}
FIXED_FRAC = 8
FIXED_LO, FIXED_HI = -32768.0, 32767.0  # integer codes of a 16-bit two's complement
NUMPY_BLOCK = 1 << 17  # elements per block of the cache-blocked numpy expression
APY_STAGING_FRAC = 64  # fraction bits of APyTypes' exact staging format (>= 62 needed)

Kernel = Callable[[], np.ndarray]


@dataclass
class Case:
    """One timed conversion: ``make(x)`` returns the zero-argument call that is timed."""

    library: str
    call: str
    fmt: str
    make: Callable[[np.ndarray], Kernel]
    max_n: int | None = None  # time only the first max_n values (per-element rate)
    quiet: bool = True  # silence the peer's warnings and numpy floating-point errors


@dataclass
class Row:
    library: str
    call: str
    fmt: str
    n: int
    n_timed: int = 0
    seconds: float = math.nan
    mismatches: int | None = None
    note: str = ""

    @property
    def rate(self) -> float:
        return self.n_timed / self.seconds if self.seconds > 0 else math.nan

    @property
    def extrapolated(self) -> bool:
        return 0 < self.n_timed < self.n


# -- optional libraries -----------------------------------------------------------------------


def _version(mod: object | None) -> str:
    return getattr(mod, "__version__", "?") if mod is not None else "not installed"


# -- cases -----------------------------------------------------------------------------------


def _fxemu_cases(fx: object, formats: dict[str, object], threads: int) -> list[Case]:
    """fx.quantize allocating and with ``out=``; with several numba threads also ``out=`` on one
    thread (on a small shared machine a busy core stalls a parallel kernel)."""
    import numba

    cases = []
    for key, fmt in formats.items():

        def plain(x: np.ndarray, fmt: object = fmt) -> Kernel:
            return lambda: fx.quantize(x, fmt)

        def prealloc(x: np.ndarray, fmt: object = fmt) -> Kernel:
            out = np.empty_like(x)
            return lambda: fx.quantize(x, fmt, out=out)

        def serial(x: np.ndarray, fmt: object = fmt) -> Kernel:
            out = np.empty_like(x)

            def run() -> np.ndarray:
                numba.set_num_threads(1)
                try:
                    return fx.quantize(x, fmt, out=out)
                finally:
                    numba.set_num_threads(threads)

            return run

        cases.append(Case("fxemu", "quantize", key, plain, quiet=False))
        cases.append(Case("fxemu", "quantize(out=)", key, prealloc, quiet=False))
        if threads > 1:
            cases.append(Case("fxemu", "quantize(out=), 1 thread", key, serial, quiet=False))
    return cases


def _numpy_cases() -> list[Case]:
    scale, inv = float(2**FIXED_FRAC), float(2.0**-FIXED_FRAC)

    def fixed_inplace(x: np.ndarray) -> Kernel:
        out = np.empty_like(x)

        def run() -> np.ndarray:
            np.multiply(x, scale, out=out)  # exact (power of two) unless it overflows to ±inf
            np.rint(out, out=out)  # ties to even
            np.clip(out, FIXED_LO, FIXED_HI, out=out)
            np.multiply(out, inv, out=out)  # exact
            return out

        return run

    def fixed_blocked(x: np.ndarray) -> Kernel:
        out = np.empty_like(x)
        n, b = x.size, NUMPY_BLOCK

        def run() -> np.ndarray:
            for i in range(0, n, b):
                o = out[i : i + b]
                np.multiply(x[i : i + b], scale, out=o)
                np.rint(o, out=o)
                np.clip(o, FIXED_LO, FIXED_HI, out=o)
                np.multiply(o, inv, out=o)
            return out

        return run

    def half_astype(x: np.ndarray) -> Kernel:
        return lambda: x.astype(np.float16).astype(np.float64)

    def half_copyto(x: np.ndarray) -> Kernel:
        h, out = np.empty(x.shape, np.float16), np.empty_like(x)

        def run() -> np.ndarray:
            np.copyto(h, x, casting="same_kind")
            np.copyto(out, h)
            return out

        return run

    return [
        Case("numpy", "rint/clip in place", "fixed", fixed_inplace),
        Case("numpy", f"rint/clip in place, {NUMPY_BLOCK}-blocked", "fixed", fixed_blocked),
        Case("numpy", "astype(float16) round trip", "e5m10", half_astype),
        Case("numpy", "copyto(float16) prealloc", "e5m10", half_copyto),
    ]


def _apytypes_cases(apy: object) -> list[Case]:
    q, o = apy.QuantizationMode.RND_CONV, apy.OverflowMode.SAT

    def fixed(x: np.ndarray) -> Kernel:
        finite = np.abs(x[np.isfinite(x)])
        top = float(finite.max()) if finite.size else 1.0
        int_bits = max(16, math.frexp(top)[1] + 2)  # staging range holds every input

        def run() -> np.ndarray:
            staged = apy.APyFixedArray.from_float(x, int_bits=int_bits, frac_bits=APY_STAGING_FRAC)
            return staged.cast(
                int_bits=16 - FIXED_FRAC, frac_bits=FIXED_FRAC, quantization=q, overflow=o
            ).to_numpy()

        return run

    def flt(key: str) -> Callable[[np.ndarray], Kernel]:
        e, m = FLOAT_BITS[key]
        return lambda x: lambda: apy.APyFloatArray.from_float(x, e, m).to_numpy()

    return [
        Case("APyTypes", "from_float(I,64)+cast(RND_CONV,SAT)", "fixed", fixed),
        Case("APyTypes", "APyFloatArray.from_float", "e5m10", flt("e5m10")),
        Case("APyTypes", "APyFloatArray.from_float", "e4m3", flt("e4m3")),
    ]


def _fxpmath_cases(fxpmath: object, max_n: int) -> list[Case]:
    def fixed(x: np.ndarray) -> Kernel:
        return lambda: np.asarray(
            fxpmath.Fxp(x, True, 16, FIXED_FRAC, rounding="around", overflow="saturate").get_val(),
            dtype=np.float64,
        )

    return [Case("fxpmath", "Fxp(around, saturate)", "fixed", fixed, max_n=max_n)]


def _pychop_cases(pychop: object) -> list[Case]:
    def fixed(x: np.ndarray) -> Kernel:
        chop = pychop.Chopf(ibits=16 - FIXED_FRAC, fbits=FIXED_FRAC, rmode=1)
        return lambda: np.asarray(chop(x), dtype=np.float64)

    def flt(key: str) -> Callable[[np.ndarray], Kernel]:
        e, m = FLOAT_BITS[key]

        def make(x: np.ndarray) -> Kernel:
            chop = pychop.Chop(e, m, rmode=1)
            return lambda: np.asarray(chop(x), dtype=np.float64)

        return make

    return [
        Case("pychop", "Chopf(8,8,rmode=1)", "fixed", fixed),
        Case("pychop", "Chop(5,10,rmode=1)", "e5m10", flt("e5m10")),
        Case("pychop", "Chop(4,3,rmode=1)", "e4m3", flt("e4m3")),
    ]


def _ml_dtypes_cases(ml_dtypes: object) -> list[Case]:
    if not hasattr(ml_dtypes, "float8_e4m3"):
        print("  ml_dtypes: no float8_e4m3 (the IEEE-layout e4m3; ml_dtypes >= 0.5) - skipped")
        return []
    t = ml_dtypes.float8_e4m3

    def e4m3(x: np.ndarray) -> Kernel:
        return lambda: x.astype(t).astype(np.float64)

    return [Case("ml_dtypes", "astype(float8_e4m3) round trip", "e4m3", e4m3)]


# -- measuring -------------------------------------------------------------------------------


def _best_time(fn: Kernel, repeats: int) -> tuple[float, np.ndarray]:
    """Warm up once (excluded), then the best of ``repeats`` timed calls; returns (s, result)."""
    result = np.array(fn(), dtype=np.float64, copy=True)
    enabled = gc.isenabled()
    gc.disable()
    try:
        best = math.inf
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
    finally:
        if enabled:
            gc.enable()
    return best, result


def _mismatches(x: np.ndarray, ref: np.ndarray, got: np.ndarray, fixed: bool) -> np.ndarray:
    got = np.asarray(got, dtype=np.float64).reshape(ref.shape)
    with np.errstate(invalid="ignore"):
        same = (ref == got) | (np.isnan(ref) & np.isnan(got))
    if not fixed:  # -0 is a distinct float code; a fixed format has one zero
        same &= np.signbit(ref) == np.signbit(got)
    return np.flatnonzero(~same)


def _quiet() -> contextlib.AbstractContextManager:
    return np.errstate(all="ignore")


def _run_case(case: Case, x: np.ndarray, ref: np.ndarray | None, repeats: int) -> Row:
    n = x.size
    xs = x[: case.max_n] if case.max_n is not None and n > case.max_n else x
    row = Row(case.library, case.call, case.fmt, n)
    try:
        with warnings.catch_warnings(), _quiet() if case.quiet else contextlib.nullcontext():
            if case.quiet:
                warnings.simplefilter("ignore")
            fn = case.make(xs)
            row.seconds, result = _best_time(fn, repeats)
        row.n_timed = xs.size
    except Exception as exc:  # report and go on: a benchmark never fails
        row.note = f"failed: {type(exc).__name__}: {exc}"
        print(f"  {case.library} {case.call} [{case.fmt}] n={n}: {row.note}")
        return row
    if ref is not None:
        bad = _mismatches(xs, ref[: xs.size], result, case.fmt == "fixed")
        row.mismatches = int(bad.size)
        if bad.size:
            print(
                f"  {case.library} {case.call} [{LABELS[case.fmt]}] n={xs.size}: "
                f"{bad.size} value(s) differ from fx.quantize, e.g."
            )
            for i in bad[:3]:
                print(
                    f"      x={float(xs[i])!r:<22} fxemu={float(ref[i])!r:<22} "
                    f"{case.library}={float(result[i])!r}"
                )
    return row


# -- output ----------------------------------------------------------------------------------


def _fmt_rate(row: Row) -> str:
    if not row.n_timed:
        return "-"
    star = "*" if row.extrapolated else ""
    return f"{row.rate / 1e6:,.1f}{star}"


def _ratio(num: Row | None, den: Row) -> str:
    if num is None or not num.n_timed or not den.n_timed:
        return "-"
    return f"{num.rate / den.rate:,.2f}"


def _fxemu_row(rows: list[Row], call: str, fmt: str, n: int) -> Row | None:
    for r in rows:
        if r.library == "fxemu" and r.call == call and r.fmt == fmt and r.n == n:
            return r if r.n_timed else None
    return None


def _fxemu_rows(rows: list[Row], fmt: str, n: int) -> tuple[Row | None, Row | None]:
    return _fxemu_row(rows, "quantize", fmt, n), _fxemu_row(rows, "quantize(out=)", fmt, n)


HEADER = (
    "library",
    "call",
    "format",
    "n",
    "Melem/s",
    "fxemu/peer",
    "fxemu(out=)/peer",
    "mismatches",
)


def _table_cells(rows: list[Row]) -> list[tuple[str, ...]]:
    cells = []
    for r in rows:
        fq, fo = _fxemu_rows(rows, r.fmt, r.n)
        mism = "-" if r.mismatches is None else str(r.mismatches)
        if r.extrapolated and r.mismatches is not None:
            mism += f" (of {r.n_timed:,})"
        if r.note:
            mism = r.note[:60]
        cells.append(
            (
                r.library,
                r.call,
                LABELS[r.fmt],
                f"{r.n:.0e}".replace("+0", ""),
                _fmt_rate(r),
                _ratio(fq, r),
                _ratio(fo, r),
                mism,
            )
        )
    return cells


def print_table(rows: list[Row]) -> None:
    cells = [HEADER, *_table_cells(rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
    right = {3, 4, 5, 6}
    for j, c in enumerate(cells):
        print(
            "  ".join(
                c[i].rjust(widths[i]) if i in right else c[i].ljust(widths[i])
                for i in range(len(c))
            )
        )
        if j == 0:
            print("  ".join("-" * w for w in widths))


def print_markdown(rows: list[Row]) -> None:
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "|".join("---:" if i in (3, 4, 5, 6) else "---" for i in range(len(HEADER))) + "|")
    for c in _table_cells(rows):
        print("| " + " | ".join(s.replace("|", "\\|") for s in c) + " |")


def print_bars(rows: list[Row], n: int) -> None:
    """Project targets at size n: fxemu >= 5x APyTypes, >= 100x fxpmath, >= the numpy expression.

    APyTypes and fxpmath allocate their result, so they are compared with ``fx.quantize``; the
    numpy expression writes into a preallocated buffer, so it is compared with ``out=`` (on all
    numba threads, and on one thread where that row exists).
    """
    print(f"\nTargets at n = {n:,} (information only):")
    bars = [
        ("APyTypes", 5.0, ("quantize",)),
        ("fxpmath", 100.0, ("quantize",)),
        ("numpy", 1.0, ("quantize(out=)", "quantize(out=), 1 thread")),
    ]
    for lib, need, calls in bars:
        for r in rows:
            if r.library != lib or r.n != n or not r.n_timed:
                continue
            if lib == "numpy" and r.fmt != "fixed":
                continue
            for call in calls:
                f = _fxemu_row(rows, call, r.fmt, n)
                if f is None:
                    continue
                ratio = f.rate / r.rate
                verdict = "met" if ratio >= need else "NOT met"
                print(
                    f"  fxemu {call:25s} vs {lib} {r.call} [{LABELS[r.fmt]}]: "
                    f"{f.rate / 1e6:,.1f} vs {r.rate / 1e6:,.1f}"
                    f"{'*' if r.extrapolated else ''} Melem/s = {ratio:,.2f}x "
                    f"(target >= {need:g}x): {verdict}"
                )


def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "?"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


# -- main ------------------------------------------------------------------------------------


def _size(text: str) -> int:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be a number like 1e6; got {text!r}") from None
    if not (v >= 1 and v == int(v)):
        raise argparse.ArgumentTypeError(f"size must be a positive integer; got {text!r}")
    return int(v)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--sizes",
        type=_size,
        nargs="+",
        default=[10**6, 10**7],
        help="numbers of values (default: 1e6 1e7)",
    )
    p.add_argument("--repeats", type=int, default=5, help="timed calls per case; best is kept")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: n = 1e4, 1 repeat (overrides --sizes/--repeats)",
    )
    p.add_argument("--seed", type=int, default=20240601, help="random data seed")
    p.add_argument(
        "--scale",
        type=float,
        default=48.0,
        help="data = standard normal * scale (48: ~0.8%% exceed the fixed range)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="numba threads for fxemu (default: numba's, i.e. all cores)",
    )
    p.add_argument(
        "--fxpmath-max",
        type=_size,
        default=10**6,
        help="fxpmath times at most this many values (per-element rate beyond)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.repeats = [10**4], 1
    return args


def run(args: argparse.Namespace) -> list[Row]:
    """Run every case at every size, print the tables, return the rows."""
    return with_threads(args, _run)


def _run(args: argparse.Namespace) -> list[Row]:
    import numba

    import fxemu as fx

    formats = {
        "fixed": fx.parse(FIXED_TEXT),
        "e5m10": fx.Float(*FLOAT_BITS["e5m10"]),
        "e4m3": fx.Float(*FLOAT_BITS["e4m3"]),
    }
    peers = {name: optional_import(name) for name in ("apytypes", "fxpmath", "pychop", "ml_dtypes")}

    print("fxemu quantize benchmark")
    print(f"  python {platform.python_version()} on {platform.platform()}")
    print(f"  cpu: {_cpu_model()}, os.cpu_count() = {os.cpu_count()}")
    print(
        f"  numpy {np.__version__}, numba {numba.__version__}, "
        f"numba threads = {numba.get_num_threads()}, fxemu {_version(fx)}"
    )
    for name, (mod, why) in peers.items():
        extra = ""
        if name == "apytypes" and mod is not None and hasattr(mod, "n_threads"):
            extra = f", threads = {mod.n_threads()}"
        print(f"  {name} {_version(mod)}{extra}" + (f" - skipped ({why})" if mod is None else ""))
    env = {
        k: os.environ[k]
        for k in ("OPENBLAS_CORETYPE", "NUMBA_NUM_THREADS", "APYTYPES_THREAD_COUNT")
        if k in os.environ
    }
    print(f"  env: {env or '-'} (OPENBLAS_CORETYPE does not affect these elementwise ops)")
    print(f"  load average (1/5/15 min): {_load()} - other processes on these cores skew timings")
    print(
        f"  data: standard normal * {args.scale:g}, seed {args.seed}; "
        f"best of {args.repeats}, warm-up excluded"
    )

    cases = _fxemu_cases(fx, formats, numba.get_num_threads()) + _numpy_cases()
    builders = {"apytypes": _apytypes_cases, "pychop": _pychop_cases, "ml_dtypes": _ml_dtypes_cases}
    for name, (mod, _) in peers.items():
        if mod is None:
            continue
        if name == "fxpmath":
            cases += _fxpmath_cases(mod, args.fxpmath_max)
        else:
            cases += builders[name](mod)

    rows: list[Row] = []
    for n in args.sizes:
        x = np.random.default_rng(args.seed).standard_normal(n) * args.scale
        over_fixed = np.count_nonzero((x < formats["fixed"].min) | (x > formats["fixed"].max))
        print(
            f"\nn = {n:,}: {over_fixed:,} values ({100 * over_fixed / n:.2f}%) outside "
            f"[{formats['fixed'].min}, {formats['fixed'].max}]; "
            f"{np.count_nonzero(np.abs(x) > formats['e4m3'].max):,} beyond e4m3 max "
            f"{formats['e4m3'].max}"
        )
        for key, fmt in formats.items():
            try:
                ref = np.asarray(fx.quantize(x, fmt), dtype=np.float64)  # also compiles
            except Exception as exc:
                print(f"  fx.quantize [{LABELS[key]}] failed: {type(exc).__name__}: {exc}")
                ref = None
            for case in cases:
                if case.fmt == key:
                    rows.append(
                        _run_case(case, x, None if case.library == "fxemu" else ref, args.repeats)
                    )
            del ref
        del x
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel ran
        layer = "?"
    print(f"\nnumba threading layer: {layer}; load average after the runs: {_load()}\n")
    print_table(rows)
    if any(r.extrapolated for r in rows):
        print(
            f"\n* timed on the first {args.fxpmath_max:,} values only (fxpmath is slow); "
            "per-element rate, extrapolated to n."
        )
    for n in args.sizes:
        print_bars(rows, n)
    print(
        f"\nMarkdown (numba threads = {numba.get_num_threads()}, numpy {np.__version__}, "
        f"numba {numba.__version__}, {_cpu_model()}):\n"
    )
    print_markdown(rows)
    return rows


def main(argv: list[str] | None = None) -> int:
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
