"""``fx.add/sub/mul/fma`` and ``fx.Mac`` reductions against C++ loops over the vendor types.

The oracle is compiled vendor code only (``tests/vendor/arith_cxx.py``): ap_fixed.h (Vivado) and
ac_fixed.h / ac_std_float.h (Catapult) from the hls4ml wheel.  Every comparison is of integer
codes; NaN results are compared as "is NaN" (the payload and sign of a NaN are not compared).

Fixed (ap_fixed, ac_fixed): ``R r = a + b;`` (``a - b``, ``a * b``, ``a * b + c``) -- the exact
result assigned into R.  MAC: ``In a = x; In b = y;`` product ``a * b`` (the exact full-precision
type) or ``Mul p = a * b;``, ``acc = acc + p;`` with ``Acc acc = 0`` (the exact sum assigned into
Acc), ``Out o = acc;``; pairwise / chunk / exact as in ``fx.Mac`` (see arith_cxx).

Float (ac_std_float<W,E>): ``a.add<AC_RND_CONV, FTZ>(b)``, ``sub``, ``mult``, ``fma(b, c)``
(``a*b + c``) and the operators ``+ - *`` (which the header defines as ``add/sub/mult
<AC_RND_CONV, false>``).  ``Float(…, subnormals=False)`` is compared both with the vendor's
``No_SubNormals = true`` and with the ``No_SubNormals = false`` result flushed afterwards (the
fxemu contract: round as if subnormals existed, then flush).  MAC: products ``mult`` into Mul
(``mul=fmt``) or exact (``mul=None``: sequential / chunk use ``a.fma(b, acc)``); accumulation
``acc.add(p)``; a pairwise leaf pair of exact products and the ``exact`` order sum exactly in
ac_fixed and round once with ``ac_std_float::assign_from<AC_RND_CONV>``.

numpy: float16 ``+ - *`` (correctly rounded) against ``fx.add/sub/mul(…, "float16")``.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from vendor import arith_cxx

import fxemu as fx
from fxemu import Fixed, Float

pytestmark = pytest.mark.vendor

#: Compared codes per category (printed by ``test_comparison_counts`` with ``-s``).
COUNTS: Counter[str] = Counter()

OPS = ("add", "sub", "mul", "fma")
OP_CODE = {"add": 0, "sub": 1, "mul": 2, "fma": 3, "+": 4, "-": 5, "*": 6}
FX_OP = {"add": fx.add, "sub": fx.sub, "mul": fx.mul, "fma": fx.fma}
ORDERS = ("sequential", "pairwise", "chunk:4", "chunk:64", "exact")
SHAPE = arith_cxx.SHAPE_CODES


def F(text: str) -> Fixed | Float:
    return fx.parse(text)


# -- cases ------------------------------------------------------------------------------------
#: Fixed elementwise: (operand format, result format).  W = 64 operands make 128-bit products;
#: results stay within 53 bits (fxemu returns values as float64).
FIXED_ELEM = [
    ("ap_fixed<16,8>", "ap_fixed<16,8>"),
    ("ap_fixed<16,8>", "ap_fixed<12,4,AP_RND_CONV,AP_SAT>"),
    ("ap_fixed<16,8>", "ap_fixed<10,2,AP_RND,AP_WRAP,1>"),
    ("ap_fixed<16,8>", "ap_ufixed<12,6,AP_RND_ZERO,AP_SAT>"),
    ("ap_fixed<16,8>", "ap_fixed<20,10,AP_RND_MIN_INF,AP_SAT_SYM>"),
    ("ap_fixed<16,8>", "ap_fixed<9,5,AP_RND_INF,AP_WRAP_SM>"),
    ("ap_fixed<64,32>", "ap_fixed<32,16,AP_RND_CONV,AP_SAT>"),
    ("ap_fixed<64,32>", "ap_fixed<48,8,AP_RND_INF,AP_WRAP>"),
    ("ap_fixed<64,32>", "ap_fixed<40,30,AP_TRN_ZERO,AP_SAT_ZERO>"),
    ("ap_fixed<64,60>", "ap_fixed<53,70,AP_RND,AP_SAT>"),
    ("ac_fixed<16,8,true>", "ac_fixed<12,4,true,AC_RND_CONV,AC_SAT>"),
    ("ac_fixed<16,8,true>", "ac_fixed<10,3,true,AC_RND_CONV_ODD,AC_WRAP>"),
    ("ac_fixed<64,32,true>", "ac_fixed<33,20,true,AC_RND_INF,AC_SAT_SYM>"),
]
N_FIXED_ELEM = 20_000


@dataclass(frozen=True)
class MacCase:
    """One datapath: operand format, Mac fields (as text; None = exact / acc)."""

    inp: str
    acc: str
    mul: str | None = None
    out: str | None = None

    def mac(self, order: str) -> fx.Mac:
        return fx.Mac(acc=F(self.acc), mul=None if self.mul is None else F(self.mul),
                      out=None if self.out is None else F(self.out), order=order)

    @property
    def out_format(self) -> Fixed | Float:
        return F(self.out or self.acc)

    def __str__(self) -> str:
        s = f"in={self.inp} acc={self.acc} mul={self.mul}"
        return s + (f" out={self.out}" if self.out else "")


_FX_IN = "ap_fixed<16,8>"
_FX_MUL = "ap_fixed<16,6,AP_RND,AP_SAT>"
_FX_ACCS = ["ap_fixed<32,16>", "ap_fixed<24,8,AP_RND_CONV,AP_SAT>", "ap_fixed<48,24>",
            "ap_fixed<12,4>", "ap_fixed<12,4,AP_TRN,AP_SAT>",
            "ap_fixed<14,6,AP_RND_INF,AP_SAT_SYM>"]
FIXED_MACS = [MacCase(_FX_IN, a, m) for a in _FX_ACCS for m in (None, _FX_MUL)] + [
    MacCase(_FX_IN, "ap_fixed<32,16>", None, "ap_fixed<16,8,AP_RND_CONV,AP_SAT>"),
    MacCase(_FX_IN, "ap_fixed<24,8,AP_RND_CONV,AP_SAT>", _FX_MUL, "ap_fixed<10,4,AP_RND,AP_WRAP>"),
]

H, BF, S, E4 = "float<5,10>", "float<8,7>", "float<8,23>", "float<4,3>"
HZ, BFZ, E4Z = (f"float<{e},subnormals=false>" for e in ("5,10", "8,7", "4,3"))
#: Float datapaths: In ⊆ Mul ⊆ Acc (widening is exact in the vendor code).
FLOAT_MACS = [
    MacCase(H, H), MacCase(H, H, H), MacCase(H, S), MacCase(H, S, H), MacCase(H, S, None, H),
    MacCase(BF, BF), MacCase(BF, S, BF),
    MacCase(E4, E4), MacCase(E4, E4, E4), MacCase(E4, H, E4), MacCase(E4, BF, None, E4),
    MacCase(S, S), MacCase(S, S, S),
    MacCase(HZ, HZ), MacCase(HZ, HZ, HZ), MacCase(E4Z, E4Z), MacCase(E4Z, E4Z, E4Z),
    MacCase(BFZ, BFZ, BFZ), MacCase(E4, HZ, None, E4Z),
]

#: Float elementwise: (exp_bits, man_bits) and random pairs (the 8-bit format is exhaustive).
FLOAT_ELEM = {(4, 3): 0, (5, 10): 100_000, (8, 7): 100_000, (8, 23): 100_000}
N_E4M3_FMA = 100_000
N_NUMPY = 100_000

#: Shapes: two dot lengths (257: every pairwise level has an odd node), a matmul, a conv2d.
DOT_LENGTHS = {257: 6, 100: 3}  # length -> rows
MATMUL = (5, 13, 6)
CONV = (2, 2, 7, 7, 3, 3, 3)  # N C H W F Kh Kw


# -- the vendor table -------------------------------------------------------------------------
def _sf(f: Float) -> str:
    return f"ac_std_float<{f.width},{f.exp_bits}>"


def _in_image(f: Float) -> tuple[int, int]:
    """(IW, II): the ac_fixed that holds every finite value of f."""
    ii = f.emax + 2
    return ii + f.man_bits - f.emin, ii


def _fixed_mac_expr(c: MacCase, node: tuple[int, int]) -> str:
    inp, acc = F(c.inp).hls_type, F(c.acc).hls_type
    mul = F(c.mul).hls_type if c.mul else inp
    out = F(c.out).hls_type if c.out else acc
    return (f"fxemu_mac<FixedMac<{inp}, {acc}, {mul}, {out}, {str(c.mul is not None).lower()}, "
            f"{node[0]}, {node[1]}> >")


def _fixed_node() -> tuple[int, int]:
    """ap_fixed<NW, NI> holding every product and accumulator exactly, with 12 bits of headroom
    for the exact sums."""
    fmts = [F(c.acc) for c in FIXED_MACS] + [F(c.mul) for c in FIXED_MACS if c.mul]
    p = F(_FX_IN)
    frac = max([2 * p.frac_bits] + [f.frac_bits for f in fmts])
    ints = max([2 * p.int_bits] + [f.int_bits for f in fmts]) + 12
    return frac + ints, ints


def _holds(big: Float, small: Float) -> bool:
    """Whether every value of ``small`` is a value of ``big`` (so the vendor widening is exact
    and an FTZ ``big`` never sees a subnormal operand)."""
    smallest = small.emin - (small.man_bits if small.subnormals else 0)  # log2
    return (big.man_bits >= small.man_bits and big.emax >= small.emax
            and big.emin - big.man_bits <= small.emin - small.man_bits  # the bottom quantum
            and (big.subnormals or big.emin <= smallest))


def _float_mac_expr(c: MacCase) -> str:
    i, a = F(c.inp), F(c.acc)
    m = F(c.mul) if c.mul else a
    o = F(c.out) if c.out else a
    assert _holds(m, i) and _holds(a, m) and _holds(a, i), f"{c}: needs In ⊆ Mul ⊆ Acc"
    iw, ii = _in_image(i)
    frac = max(2 * (i.man_bits - i.emin), a.man_bits - a.emin)
    ints = max(2 * ii, a.emax + 2) + 12
    b = lambda v: str(v).lower()  # noqa: E731
    return (f"fxemu_mac<FloatMac<{i.width},{i.exp_bits}, {a.width},{a.exp_bits},"
            f"{b(not a.subnormals)}, {b(c.mul is not None)},{m.width},{m.exp_bits},"
            f"{b(not m.subnormals)}, {b(c.out is not None)},{o.width},{o.exp_bits},"
            f"{b(not o.subnormals)}, {iw},{ii}, {frac + ints},{ints}> >")


def _float_elem_keys() -> list[tuple[int, int, str, bool, bool]]:
    """(E, M, op, No_SubNormals, flush-after) of every elementwise float entry."""
    keys = []
    for e, m in FLOAT_ELEM:
        keys += [(e, m, op, False, False) for op in (*OPS, "+", "-", "*")]
        keys += [(e, m, op, ftz, not ftz) for op in OPS for ftz in (True, False)]
    return keys


def _build_table() -> tuple[arith_cxx.ArithProgram, dict[object, int]]:
    entries: list[tuple[str, str]] = []
    index: dict[object, int] = {}
    node = _fixed_node()
    for kind in ("ap", "ac"):
        for a, r in FIXED_ELEM:
            if F(a).lib != kind:
                continue
            for op in OPS:
                index["fe", a, r, op] = len(entries)
                entries.append((kind, f"fx_elem<{F(a).hls_type}, {F(r).hls_type}, {OP_CODE[op]}>"))
        if kind == "ap":
            for c in FIXED_MACS:
                index["fm", c] = len(entries)
                entries.append(("ap", _fixed_mac_expr(c, node)))
    for e, m, op, ftz, flush in _float_elem_keys():
        index["se", e, m, op, ftz, flush] = len(entries)
        entries.append(("float", f"sf_elem<{_sf(Float(e, m))}, {OP_CODE[op]}, "
                                  f"{str(ftz).lower()}, {str(flush).lower()}>"))
    for c in FLOAT_MACS:
        index["sm", c] = len(entries)
        entries.append(("float", _float_mac_expr(c)))
    return arith_cxx.ArithProgram("arith", entries), index


PROGRAM, INDEX = _build_table()


@pytest.fixture(scope="module")
def exe(vendor_build):
    return vendor_build(PROGRAM)


# -- comparison -------------------------------------------------------------------------------
def _canonical(codes: np.ndarray, fmt: Fixed | Float) -> np.ndarray:
    """Codes with every NaN replaced by one NaN code (payload and sign are not compared)."""
    codes = np.asarray(codes, dtype=np.uint64)
    if isinstance(fmt, Fixed):
        return codes
    e, m = fmt.exp_bits, fmt.man_bits
    top = np.uint64((1 << e) - 1)
    exp = (codes >> np.uint64(m)) & top
    man = codes & np.uint64((1 << m) - 1)
    return np.where((exp == top) & (man != 0), np.uint64(int(top) << m | 1 << (m - 1)), codes)


def _flush(codes: np.ndarray, fmt: Float) -> np.ndarray:
    """Subnormal codes replaced by the zero of the same sign."""
    e, m = fmt.exp_bits, fmt.man_bits
    exp = (codes >> np.uint64(m)) & np.uint64((1 << e) - 1)
    man = codes & np.uint64((1 << m) - 1)
    return np.where((exp == 0) & (man != 0), codes & np.uint64(1 << (e + m)), codes)


def _check(label: str, fmt: Fixed | Float, got: np.ndarray, want: np.ndarray,
           describe: Callable[[int], str], category: str, examples: int = 6) -> list[str]:
    """Compare codes; return mismatch reports (``describe(j)``: the operands of code j)."""
    got, want = _canonical(got, fmt), _canonical(want, fmt)
    assert got.shape == want.shape, f"{label}: fxemu {got.shape} vs vendor {want.shape} codes"
    COUNTS[category] += got.size
    bad = np.flatnonzero(got != want)
    if not bad.size:
        return []
    vals = lambda c: fx.from_bits(np.array([c], np.uint64), fmt)[0]  # noqa: E731
    lines = [f"{label}: {bad.size} of {got.size} codes differ"]
    for j in bad[:examples]:
        lines.append(f"  {describe(j)}: fxemu {int(got[j]):#x} ({vals(got[j])!r}), "
                     f"vendor {int(want[j]):#x} ({vals(want[j])!r})")
    return lines


def _hexes(*cols: np.ndarray) -> Callable[[int], str]:
    """Operands j as float.hex."""
    return lambda j: ", ".join(float(c[j]).hex() for c in cols)


# -- fixed inputs -----------------------------------------------------------------------------
def _fixed_values(f: Fixed, n: int, rng: np.random.Generator) -> np.ndarray:
    """n values of f: random codes of every bit length (at most 53 significant bits, so that
    they are doubles), 8 % of them edges: min, min + 1, ±max (its top 53 bits), 0, ±1."""
    w = f.width - (1 if f.signed else 0)
    nbits = rng.integers(1, w + 1, n)
    sig = np.minimum(nbits, 53)
    k = rng.integers(0, 2**sig).astype(np.float64) * 2.0 ** (nbits - sig)
    if f.signed:
        k *= rng.choice([-1.0, 1.0], n)
    hi = f.max_int if f.width <= 53 else (f.max_int >> (f.width - 53)) << (f.width - 53)
    edges = [f.min_int, f.min_int + 1, hi, 0, 1] + ([-hi, -1] if f.signed else [hi - 1])
    edge = rng.random(n) < 0.08
    k[edge] = rng.choice(np.array(edges, dtype=np.float64), int(edge.sum()))
    return k * f.step


@functools.cache
def _fixed_elem_inputs(a: str, op: str) -> tuple[np.ndarray, ...]:
    f = F(a)
    rng = np.random.default_rng([0xA417, f.width, f.int_bits, OPS.index(op)])
    return tuple(_fixed_values(f, N_FIXED_ELEM, rng) for _ in range(3 if op == "fma" else 2))


@pytest.mark.parametrize(("a", "r"), FIXED_ELEM, ids=[f"{a}->{r}" for a, r in FIXED_ELEM])
def test_fixed_elementwise(a: str, r: str, exe, tmp_path):
    """``R r = a OP b;`` (and ``a * b + c``) with ap_fixed / ac_fixed vs fx.add/sub/mul/fma."""
    fa, fr = F(a), F(r)
    runs = {}
    for op in OPS:
        xs = _fixed_elem_inputs(a, op)
        assert all(np.array_equal(fx.quantize(x, fa), x) for x in xs)  # representable operands
        runs[op] = PROGRAM.run(exe, INDEX["fe", a, r, op], np.stack(xs, 1), workdir=tmp_path)
    report = []
    for op in OPS:
        xs = _fixed_elem_inputs(a, op)
        got = fx.to_bits(FX_OP[op](*xs, fr), fr)
        report += _check(f"{op} {a} -> {r}", fr, got, runs[op].codes(), _hexes(*xs),
                         "fixed elementwise")
    assert not report, "\n".join(report)


# -- MAC --------------------------------------------------------------------------------------
def _order_args(order: str) -> tuple[int, int]:
    if order.startswith("chunk:"):
        return arith_cxx.ORDER_CODES["chunk"], int(order[6:])
    return arith_cxx.ORDER_CODES[order], 0


def _fixed_operands(f: Fixed, shape: tuple[int, ...], scale_bits: int,
                    rng: np.random.Generator) -> np.ndarray:
    """Codes of f up to 2^scale_bits in magnitude, 3 % of them within 8 of ±max / min."""
    n = int(np.prod(shape))
    k = rng.integers(-(1 << scale_bits), 1 << scale_bits, n, endpoint=True)
    near = rng.random(n) < 0.03
    k[near] = np.where(rng.random(int(near.sum())) < 0.5,
                       f.max_int - rng.integers(0, 8, int(near.sum())),
                       f.min_int + rng.integers(0, 8, int(near.sum())))
    return (np.clip(k, f.min_int, f.max_int) * f.step).reshape(shape)


def _float_operands(f: Float, shape: tuple[int, ...], window: tuple[int, int],
                    rng: np.random.Generator) -> np.ndarray:
    """Values of f with unbiased exponents in ``window`` (random mantissas and signs), 5 % ±0
    and, where f has them, 3 % subnormals."""
    n = int(np.prod(shape))
    e = rng.integers(max(window[0], f.emin), min(window[1], f.emax) + 1, n)
    man = rng.integers(0, 1 << f.man_bits, n) + (1 << f.man_bits)
    v = np.ldexp(man.astype(np.float64), e - f.man_bits)
    u = rng.random(n)
    v[u < 0.05] = 0.0
    if f.subnormals:
        sub = u > 0.97
        v[sub] = np.ldexp(rng.integers(1, 1 << f.man_bits, int(sub.sum())).astype(np.float64),
                          f.emin - f.man_bits)
    return (v * rng.choice([-1.0, 1.0], n)).reshape(shape)


def _mac_data(c: MacCase, regime: str, rng: np.random.Generator):
    """Operand sets: {"dot": [(K, a, b) per row], "matmul": (A, B), "conv2d": (x, w)}.

    Fixed: operand magnitudes up to 2^6, 2^10 and full range codes by row (wrap, saturation).
    Float ``regime``: "finite" -- exponents around emin/2 (subnormal and FTZ sums) and around 0
    (no overflow); "overflow" -- exponents around emax/2, so products and sums overflow to ±inf
    and meet as NaN."""
    f = F(c.inp)
    if isinstance(f, Fixed):
        sets = [6, 10, f.width - 1]
        gen = lambda shape, r: _fixed_operands(f, shape, r, rng)  # noqa: E731
        mm, cv = (sets[1], sets[2]), (sets[1], sets[1])
    else:
        lo, hi = f.emin, f.emax
        small, large = (lo // 2 - 2, lo // 2 + 1), (hi // 2 - 2, hi // 2 + 1)
        medium = (-2, min(2, hi // 2 - 3))  # 8-bit formats: |x| < 2, sums of 257 stay finite
        gen = lambda shape, r: _float_operands(f, shape, r, rng)  # noqa: E731
        if regime == "finite":
            sets, mm, cv = [small, medium], (small, medium), (medium, medium)
        else:
            sets, mm, cv = [large], (medium, large), (large, medium)
    rows = []
    for k, n in DOT_LENGTHS.items():
        for i in range(n):
            r = sets[i % len(sets)]
            rows.append((k, gen((k,), r), gen((k,), r)))
    m, k, n = MATMUL
    nb, ch, h, w, fo, kh, kw = CONV
    return {"dot": rows,
            "matmul": (gen((m, k), mm[0]), gen((k, n), mm[1])),
            "conv2d": (gen((nb, ch, h, w), cv[0]), gen((fo, ch, kh, kw), cv[1]))}


def _run_mac(c: MacCase, regime: str, exe, tmp_path, seed: int) -> None:
    rng = np.random.default_rng([0x3AC, seed, len(regime)])
    data = _mac_data(c, regime, rng)
    idx = INDEX["fm" if isinstance(F(c.inp), Fixed) else "sm", c]
    of = c.out_format
    for x in [*(v for _, a, b in data["dot"] for v in (a, b)), *data["matmul"], *data["conv2d"]]:
        assert np.array_equal(fx.quantize(x, F(c.inp)), x)  # representable operands
    dots: dict[int, list] = {}
    for k, a, b in data["dot"]:
        dots.setdefault(k, []).append((a, b))
    runs = []
    for order in ORDERS:
        oc, ch = _order_args(order)

        def start(shape, x, *dims, oc=oc, ch=ch):
            return PROGRAM.run(exe, idx, x, (SHAPE[shape], oc, ch, *dims), tmp_path)

        for k, rows in dots.items():
            x = np.concatenate([np.concatenate([a, b]) for a, b in rows])
            runs.append((order, "dot", k, start("dot", x, k)))
        a, b = data["matmul"]
        runs.append((order, "matmul", 0, start("matmul", np.concatenate([a.ravel(), b.ravel()]),
                                               *MATMUL)))
        x, w = data["conv2d"]
        runs.append((order, "conv2d", 0, start("conv2d", np.concatenate([x.ravel(), w.ravel()]),
                                               *CONV)))
    cat = "fixed MAC" if isinstance(of, Fixed) else "float MAC"
    report = []
    for order, shape, k, run in runs:
        mac = c.mac(order)
        if shape == "dot":
            got = np.array([fx.to_bits(fx.dot(a, b, mac), of) for a, b in dots[k]]).reshape(-1)
        elif shape == "matmul":
            got = fx.to_bits(fx.matmul(*data["matmul"], mac), of).reshape(-1)
        else:
            got = fx.to_bits(fx.conv2d(*data["conv2d"], mac), of).reshape(-1)
        ops = _mac_describe(shape, dots.get(k))
        report += _check(f"{c} order={order} {shape}{k or ''}", of, got, run.codes(), ops,
                         f"{cat} {shape}{' ' + regime if regime else ''}", examples=3)
    assert not report, "\n".join(report)


def _mac_describe(shape: str, rows: list | None) -> Callable[[int], str]:
    """Where output i of a MAC run comes from."""
    if shape == "dot":
        return lambda i: (f"dot row {i} (K={rows[i][0].size}) a={_short(rows[i][0])} "
                          f"b={_short(rows[i][1])}")
    if shape == "matmul":
        return lambda i: f"matmul {MATMUL} C[{i // MATMUL[2]},{i % MATMUL[2]}]"
    nb, _, h, w, fo, kh, kw = CONV
    out = (nb, fo, h - kh + 1, w - kw + 1)
    return lambda i: f"conv2d {CONV} y{tuple(int(t) for t in np.unravel_index(i, out))}"


def _short(v: np.ndarray) -> str:
    s = [float(t).hex() for t in v]
    return "[" + ", ".join(s if len(s) <= 8 else [*s[:4], "…", *s[-2:]]) + "]"


@pytest.mark.parametrize("case", FIXED_MACS, ids=str)
def test_fixed_mac(case: MacCase, exe, tmp_path):
    """dot (K = 257, 100), matmul, conv2d through ap_fixed MAC loops, every order."""
    _run_mac(case, "", exe, tmp_path, FIXED_MACS.index(case))


@pytest.mark.parametrize("regime", ["finite", "overflow"])
@pytest.mark.parametrize("case", FLOAT_MACS, ids=str)
def test_float_mac(case: MacCase, regime: str, exe, tmp_path):
    """dot (K = 257, 100), matmul, conv2d through ac_std_float MAC loops, every order."""
    _run_mac(case, regime, exe, tmp_path, 100 + FLOAT_MACS.index(case))


# -- float elementwise ------------------------------------------------------------------------
def _all_codes(f: Float) -> np.ndarray:
    codes = np.arange(1 << f.width, dtype=np.uint64)
    if not f.subnormals:  # subnormals are not values of an FTZ format
        codes = np.unique(_flush(codes, f))
    return codes


def _float_pairs(f: Float, n: int, op: str, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """n operand tuples of f: 30 % uniform codes (±0, subnormals, inf, NaN included), 40 % with
    close exponents (cancellation, ties), 30 % near the underflow / overflow thresholds."""
    m, lo, hi = f.man_bits, f.emin, f.emax

    def val(e, sign):  # random mantissas with unbiased exponents e (clipped to the normals)
        man = rng.integers(0, 1 << m, e.size, dtype=np.uint64).astype(np.float64) + 2.0**m
        return sign * np.ldexp(man, np.clip(e, lo, hi) - m)

    def sgn(k):
        return rng.choice([-1.0, 1.0], k)

    n1, n2 = 3 * n // 10, 4 * n // 10
    n3 = n - n1 - n2
    uni = [fx.from_bits(rng.integers(0, 1 << f.width, n1, dtype=np.uint64), f)
           for _ in range(3)]
    ea = rng.integers(lo, hi + 1, n2)
    if op in ("mul", "fma"):  # exponent of the product in range, c close to it
        eb = np.clip(rng.integers(lo, hi + 1, n2), lo - ea, hi - ea)
        ec = ea + eb + rng.integers(-m - 3, m + 4, n2)
    else:
        eb = ea + rng.integers(-m - 3, m + 4, n2)
        ec = eb
    close = [val(ea, sgn(n2)), val(eb, sgn(n2)), val(ec, sgn(n2))]
    # results straddling 2^emin (subnormal / FTZ boundary: 70 %) and max (overflow: 30 %)
    low = rng.random(n3) < 0.7
    noise = 1 + rng.normal(0.0, 2.0**-m, n3)
    if op in ("mul", "fma"):  # a·b = target·noise, c cancels it (half) or is near 2^emin
        et = np.where(low, lo, hi + 1)
        ea = rng.integers(np.maximum(lo, et - hi), np.minimum(hi, et - lo) + 1)
        a = val(ea, sgn(n3))
        with np.errstate(over="ignore"):
            b = fx.quantize(np.ldexp(noise, et) / a * sgn(n3), f)
            c = np.where(rng.random(n3) < 0.5,
                         fx.quantize(-a * b * (1 + 4 * rng.normal(0.0, 2.0**-m, n3)), f),
                         val(lo + rng.integers(0, 2, n3), sgn(n3)))
    else:  # near-cancellation at 2^emin; max ± up to 2 ulp (ties to overflow included)
        ulp = np.ldexp(1.0, hi - m)
        a = np.where(low, val(lo + rng.integers(0, 3, n3), sgn(n3)),
                     f.max - ulp * rng.integers(0, 4, n3))
        near = fx.quantize(a * (1 + 4 * rng.normal(0.0, 2.0**-m, n3)), f)
        up = ulp * rng.choice([0.25, 0.5, 0.75, 1.0, 1.5, 2.0], n3)
        b = np.where(low, -near, up) * (-1.0 if op == "sub" else 1.0)
        flip = np.where(low, 1.0, sgn(n3))  # overflow toward -inf as well
        a, b = a * flip, b * flip
        c = b
    edge = [a, b, c]
    cols = [np.concatenate(parts) for parts in zip(uni, close, edge, strict=True)]
    if not f.subnormals:
        cols = [fx.quantize(c, f) for c in cols]  # subnormal codes become ±0
    return tuple(cols[:3 if op == "fma" else 2])


@functools.cache
def _float_elem_inputs(e: int, m: int, ftz: bool, op: str) -> tuple[np.ndarray, ...]:
    f = Float(e, m, subnormals=not ftz)
    n = FLOAT_ELEM[e, m]
    rng = np.random.default_rng([0xF1E, e, m, int(ftz), OPS.index(op)])
    if n == 0:  # exhaustive pairs; fma: random triples of codes
        codes = _all_codes(f)
        if op != "fma":
            a, b = np.meshgrid(codes, codes, indexing="ij")
            return fx.from_bits(a.ravel(), f), fx.from_bits(b.ravel(), f)
        return tuple(fx.from_bits(rng.choice(codes, N_E4M3_FMA), f) for _ in range(3))
    return _float_pairs(f, n, op, rng)


@pytest.mark.parametrize("ftz", [False, True], ids=["subnormals", "ftz"])
@pytest.mark.parametrize("shape", list(FLOAT_ELEM),
                         ids=lambda s: f"ac_std_float<{1 + sum(s)},{s[0]}>")
def test_float_elementwise(shape: tuple[int, int], ftz: bool, exe, tmp_path):
    """add/sub/mult/fma<AC_RND_CONV, No_SubNormals> (and + - *) vs fx.add/sub/mul/fma."""
    e, m = shape
    f = Float(e, m, subnormals=not ftz)
    runs = []
    for op in OPS:
        x = np.stack(_float_elem_inputs(e, m, ftz, op), 1)
        vop = {"add": "add", "sub": "sub", "mul": "mult", "fma": "fma"}[op]
        if ftz:  # (label, table op, No_SubNormals, flush after)
            variants = [(f"{vop}<AC_RND_CONV,true>", op, True, False),
                        (f"{vop}<AC_RND_CONV,false> flushed", op, False, True)]
        else:
            variants = [(f"{vop}<AC_RND_CONV,false>", op, False, False)]
            if op != "fma":
                sym = {"add": "+", "sub": "-", "mul": "*"}[op]
                variants.append((f"operator{sym}", sym, False, False))
        for name, top, nosub, flush in variants:
            run = PROGRAM.run(exe, INDEX["se", e, m, top, nosub, flush], x, workdir=tmp_path)
            runs.append((op, name, run))
    report = []
    for op, name, run in runs:
        xs = _float_elem_inputs(e, m, ftz, op)
        got = fx.to_bits(FX_OP[op](*xs, f), f)
        how = "exhaustive" if FLOAT_ELEM[e, m] == 0 and op != "fma" else "random"
        report += _check(f"fx.{op}(…, {f}) vs {_sf(f)}::{name}", f, got, run.codes(),
                         _hexes(*xs), f"float elementwise {how}{' ftz' if ftz else ''}")
    assert not report, "\n".join(report)


def test_float16_vs_numpy():
    """np.float16 ``+ - *`` (correctly rounded) vs fx.add/sub/mul(…, "float16")."""
    f = Float(5, 10)
    report = []
    for op, npop in (("add", np.add), ("sub", np.subtract), ("mul", np.multiply)):
        rng = np.random.default_rng([0x16, OPS.index(op)])
        a, b = _float_pairs(f, N_NUMPY, op, rng)
        with np.errstate(all="ignore"):
            want = npop(a.astype(np.float16), b.astype(np.float16)).view(np.uint16)
        got = fx.to_bits(FX_OP[op](a, b, "float16"), f)
        report += _check(f"{op} float16 vs numpy", f, got, want.astype(np.uint64), _hexes(a, b),
                         "float16 vs numpy")
    assert not report, "\n".join(report)


def test_comparison_counts():
    """Prints the number of codes compared per category (run with ``-s``)."""
    for k, v in sorted(COUNTS.items()):
        print(f"compared {v:>9,d} codes: {k}")
