"""The sign of exact zero sums (IEEE 754 §6.3) in every arithmetic path, against a tiny
independent reference.

§6.3: "When the sum of two operands with opposite signs (or the difference of two operands with
like signs) is exactly zero, the sign of that sum (or difference) shall be +0 under all
rounding-direction attributes except roundTowardNegative; under that attribute, the sign of an
exact zero sum (or difference) shall be −0. However, x + x = x − (−x) retains the same sign as
x even when x is zero." So (+0) + (−0) and x + (−x) are +0, or −0 under ``rdn``, and two zeros
of one sign keep it. The reference below states that rule on its own and rounds every nonzero
exact value with the Fraction oracle of ``tests/reference/float_oracle.py`` (which models the
sign of a rounded value, not of a zero sum). A ``Mac``'s accumulator starts at +0; its
``exact`` order adds the products exactly, each addition following §6.3, and rounds once.

Each path is covered: the elementwise double path and the exact engine (forced by reporting no
element exact), the float Mac kernels (sequential, chunk) and the engine (pairwise, exact, and
every order when the fast kernels are switched off), conv2d, and the fused conv block's weight
gradient. The vendor-C++ counterpart (binary32/binary64 under ``fesetround``) is
``tests/vendor/test_signed_zero_vs_cxx.py``.
"""

from __future__ import annotations

import math
import sys
from fractions import Fraction

import numpy as np
import pytest
from reference import float_oracle as flo
from reference.mac_order import reduce_in_order

import fxemu as fx
from fxemu import lowering
from fxemu.nn import conv_block

A = sys.modules["fxemu.arith"]

# --- the reference ----------------------------------------------------------------------------

#: a value of the reference: (exact value, sign); the sign matters only for a zero
Node = tuple[Fraction, bool]


def _neg(x: float) -> bool:
    return math.copysign(1.0, x) < 0


def zero_sum_sign(neg1: bool, neg2: bool, rounding: str) -> bool:
    """IEEE 754 §6.3: the sign of an exact zero sum of terms with signs neg1 and neg2."""
    if neg1 == neg2:
        return neg1  # x + x keeps x's sign, zeros included
    return rounding == "rdn"  # opposite signs: −0 only rounding toward −inf


def rnd(v: Node, fmt: fx.Float) -> float:
    """The value of the exact ``v`` rounded into ``fmt`` (the sign of a zero kept)."""
    x = (-0.0 if v[1] else 0.0) if v[0] == 0 else v[0]
    return flo.code_value(flo.float_code(x, fmt), fmt)


def node(x: float) -> Node:
    return Fraction(x), _neg(x)


def add(u: Node, v: Node, rounding: str) -> Node:
    """The exact sum of two nodes with the §6.3 sign of a zero."""
    s = u[0] + v[0]
    return s, (zero_sum_sign(u[1], v[1], rounding) if s == 0 else s < 0)


def daz(x: float, fmt: fx.Float) -> float:
    """An FTZ format reads operands below its smallest normal as zeros of their sign."""
    if not fmt.subnormals and x != 0 and abs(x) < fmt.smallest_normal:
        return math.copysign(0.0, x)
    return x


def ref_elementwise(op: str, a: float, b: float, c: float, fmt: fx.Float) -> float:
    a, b, c = daz(a, fmt), daz(b, fmt), daz(c, fmt)
    r = fmt.rounding.value
    if op == "add":
        return rnd(add(node(a), node(b), r), fmt)
    if op == "sub":
        return rnd(add(node(a), node(-b), r), fmt)
    prod = (Fraction(a) * Fraction(b), _neg(a) != _neg(b))
    return rnd(add(prod, node(c), r), fmt)


def ref_dot(a: np.ndarray, b: np.ndarray, mac: fx.Mac) -> float:
    """The Mac contract restated: products (rounded into mul), acc from +0, orders."""
    acc_f = mac.acc
    first = mac.mul if mac.mul is not None else mac.acc
    r = acc_f.rounding.value
    prods: list[Node] = []
    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        x, y = daz(x, first), daz(y, first)
        p = (Fraction(x) * Fraction(y), _neg(x) != _neg(y))
        prods.append(node(rnd(p, mac.mul)) if mac.mul is not None else p)
    zero = (Fraction(0), False)

    def step(u: Node, v: Node) -> Node:
        return node(rnd(add(u, v, r), acc_f))

    if mac.order == "exact":  # every addition exact (with its §6.3 sign), one rounding
        acc = zero
        for p in prods:
            acc = add(acc, p, r)
        acc = node(rnd(acc, acc_f))
    else:
        acc = reduce_in_order(prods, mac.order, zero, step)
    return rnd(acc, mac.out) if mac.out is not None else rnd(acc, acc_f)


# --- helpers ----------------------------------------------------------------------------------


def _bits(x: object) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float64).view(np.uint64)


def _same(got: object, want: object, what: object = "") -> None:
    g, w = np.asarray(got, np.float64), np.asarray(want, np.float64)
    bad = np.flatnonzero((_bits(g) != _bits(w)).ravel() & ~(np.isnan(g) & np.isnan(w)).ravel())
    assert bad.size == 0, (what, [(float(g.ravel()[i]), float(w.ravel()[i])) for i in bad[:6]])


@pytest.fixture(params=["fast", "engine"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """``fast``: as dispatched; ``engine``: the double fast paths report nothing they can do,
    so every element and every reduction runs in the exact engine."""
    if request.param == "engine":
        real = A._exact_double

        def nothing_exact(*args, **kwargs):
            r, _ = real(*args, **kwargs)
            return r, np.zeros(r.shape, bool)

        monkeypatch.setattr(A, "_exact_double", nothing_exact)
        monkeypatch.setattr(lowering, "mac_path", lambda *args, **kwargs: lowering.MacPath("exact"))
    return request.param


RDN = fx.Float(5, 10, rounding="rdn")

# --- directed cases: the issue's reproductions ------------------------------------------------


@pytest.mark.parametrize("fmt", [RDN, fx.Float(8, 7, rounding="rdn"),
                                 fx.Float(8, 23, rounding="rdn"),
                                 fx.Float(11, 52, rounding="rdn")], ids=str)
def test_issue_reproductions(fmt: fx.Float, path: str) -> None:
    assert _neg(fx.add(1.0, -1.0, fmt))
    assert _neg(fx.sub(1.0, 1.0, fmt))
    assert _neg(fx.fma(1.0, 1.0, -1.0, fmt))
    assert _neg(fx.add(0.0, -0.0, fmt))
    assert not _neg(fx.add(0.0, 0.0, fmt))
    for order in ["sequential", "pairwise", "chunk:1", "chunk:2", "exact"]:
        mac = fx.Mac(acc=fmt, order=order)
        assert _neg(fx.dot([1.0, -1.0], [1.0, 1.0], mac)), order
        assert _neg(fx.dot([0.0], [-1.0], mac)), order  # (+0 acc) + (−0 product)
        assert not _neg(fx.dot([0.0, 0.0], [1.0, 2.0], mac)), order  # only +0 terms
        assert not _neg(fx.dot([], [], mac)), order  # the accumulator's +0
        assert _neg(fx.matmul([[1.0, -1.0]], [[3.0], [3.0]], mac)[0, 0]), order


@pytest.mark.parametrize("rounding", ["rne", "rna", "rtz", "rup", "rto"])
def test_other_roundings_give_plus_zero(rounding: str, path: str) -> None:
    f = fx.Float(5, 10, rounding=rounding)
    assert not _neg(fx.add(1.0, -1.0, f))
    assert not _neg(fx.fma(2.0, 3.0, -6.0, f))
    assert not _neg(fx.add(0.0, -0.0, f))
    assert _neg(fx.add(-0.0, -0.0, f))
    for order in ["sequential", "pairwise", "chunk:2", "exact"]:
        mac = fx.Mac(acc=f, order=order)
        assert not _neg(fx.dot([1.0, -1.0], [1.0, 1.0], mac)), order
        assert not _neg(fx.dot([0.0], [-1.0], mac)), order


def test_formats_without_minus_zero() -> None:
    for f in [fx.Float(4, 3, special="fnuz", rounding="rdn"), fx.Fixed(8, 4, rounding="trn")]:
        assert fx.to_bits(fx.add(1.0, -1.0, f), f) == 0
        assert fx.to_bits(fx.fma(1.0, 1.0, -1.0, f), f) == 0
        for order in ["sequential", "pairwise", "chunk:2", "exact"]:
            assert fx.to_bits(fx.dot([1.0, -1.0], [1.0, 1.0], fx.Mac(f, order=order)), f) == 0


def test_ftz_and_out_formats(path: str) -> None:
    ftz = fx.Float(5, 10, subnormals=False, rounding="rdn")
    tiny = 2.0**-20  # a half subnormal: read as a zero of its sign
    assert _neg(fx.add(tiny, -tiny, ftz))  # (+0) + (−0)
    assert not _neg(fx.add(tiny, tiny, ftz))
    assert _neg(fx.add(-tiny, -tiny, ftz))
    for order in ["sequential", "pairwise", "chunk:2", "exact"]:
        mac = fx.Mac(acc=ftz, order=order)
        assert _neg(fx.dot([-tiny], [1.0], mac)), order
        assert not _neg(fx.dot([tiny], [1.0], mac)), order
        # the zero reaches an out format with its sign (a rne out keeps −0: no sum there)
        out = fx.Mac(acc=RDN, out="bfloat16", order=order)
        assert _neg(fx.dot([2.0, 2.0], [1.5, -1.5], out)), order
        # a mul format rounds the products first; their sum cancels
        mul = fx.Mac(acc=RDN, mul=fx.Float(4, 3), order=order)
        assert _neg(fx.dot([3.0, -3.0], [1.25, 1.25], mul)), order


def test_exact_engine_elementwise_tails() -> None:
    """Operands the double path cannot take (a product under 2^-969 or an operand at 2^995),
    so the exact engine forms the zero sum."""
    f64 = fx.Float(11, 52, rounding="rdn")
    assert _neg(fx.fma(2.0**-500, 2.0**-500, -(2.0**-1000), f64))
    assert _neg(fx.fma(2.0**996, 2.0**-10, -(2.0**986), f64))
    assert not _neg(fx.fma(2.0**996, 2.0**-10, -(2.0**986), "float64"))
    assert _neg(fx.fma(-(2.0**-600), 2.0**-600, 0.0, f64))  # tiny −x·y rounds down: −min


# --- exhaustive elementwise against the reference ---------------------------------------------

TARGETS = [
    RDN,
    fx.Float(8, 7, rounding="rdn"),
    fx.Float(4, 3, special="fn", rounding="rdn"),
    fx.Float(4, 3, special="fnuz", rounding="rdn"),
    fx.Float(5, 10, subnormals=False, rounding="rdn"),
    fx.Float(5, 2, rounding="rdn", overflow="sat"),
    fx.Float(5, 10, rounding="rne"),
    fx.Float(5, 10, rounding="rup"),
    fx.Float(4, 3, special="fn", rounding="rtz"),
]


@pytest.mark.parametrize("fmt", TARGETS, ids=str)
def test_elementwise_every_pair(fmt: fx.Float, path: str) -> None:
    """Every pair of e3m2 values (±0, subnormals, both signs) and fma with c = ∓a·b, ±0 and
    a third e3m2 value, bit for bit."""
    src = fx.Float(3, 2, special="none")
    vals = fx.from_bits(np.arange(src.n_codes), src)
    a, b = (m.ravel() for m in np.meshgrid(vals, vals, indexing="ij"))
    cases = {"add": (a, b, None), "sub": (a, b, None),
             "fma": (np.concatenate([a, a, a, a]), np.concatenate([b, b, b, b]),
                     np.concatenate([-(a * b), a * b, np.copysign(0.0, -a), b[::-1]]))}
    for op, (x, y, z) in cases.items():
        got = getattr(fx, op)(x, y, z, fmt) if op == "fma" else getattr(fx, op)(x, y, fmt)
        zs = np.zeros_like(x) if z is None else z
        want = [ref_elementwise(op, *v, fmt) for v in zip(x.tolist(), y.tolist(), zs.tolist(),
                                                            strict=True)]
        _same(got, want, (op, str(fmt)))


# --- Macs against the reference ---------------------------------------------------------------

MACS = [
    fx.Mac(RDN),
    fx.Mac(fx.Float(8, 7, rounding="rdn")),
    fx.Mac(fx.Float(8, 23, rounding="rdn")),
    fx.Mac(fx.Float(4, 3, special="fn", rounding="rdn")),
    fx.Mac(fx.Float(5, 10, subnormals=False, rounding="rdn")),
    fx.Mac(RDN, mul=fx.Float(4, 3, special="fn")),
    fx.Mac(fx.Float(6, 6, rounding="rne"), mul=fx.Float(4, 3, rounding="rdn")),
    fx.Mac(RDN, out=fx.Float(8, 7, rounding="rdn")),
    fx.Mac(fx.Float(4, 3, special="fnuz", rounding="rdn")),
    fx.Mac(fx.Float(5, 10, rounding="rne")),
]
ORDERS = ["sequential", "pairwise", "chunk:3", "exact"]


def _cancelling(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values of a few bits and both zero signs, so that sums cancel exactly often."""
    v = rng.choice([-2.0, -1.0, -0.5, -0.0, 0.0, 0.5, 1.0, 2.0, 1.5, -1.5], size=shape)
    return v * 2.0 ** rng.integers(-1, 2, size=shape)


@pytest.mark.parametrize("mac", MACS, ids=lambda m: f"{m.acc}|{m.mul}|{m.out}")
@pytest.mark.parametrize("order", ORDERS)
def test_dot_and_matmul(mac: fx.Mac, order: str, path: str) -> None:
    mac = fx.Mac(mac.acc, mac.mul, mac.out, order)
    rng = np.random.default_rng(ORDERS.index(order) + 17 * MACS.index(
        fx.Mac(mac.acc, mac.mul, mac.out)))
    dots = []
    fixed = [([1.0, -1.0], [1.5, 1.5]), ([0.0], [-2.0]), ([0.0, -0.0], [1.0, 1.0]), ([], []),
             ([2.0, 0.5, -1.0], [0.5, -2.0, 0.0])]
    rows = [(np.array(u), np.array(v)) for u, v in fixed]
    for _ in range(40):
        k = int(rng.integers(0, 7))
        rows.append((_cancelling(rng, (k,)), _cancelling(rng, (k,))))
    for a, b in rows:
        dots.append(fx.dot(a, b, mac))
        _same(dots[-1], ref_dot(a, b, mac), (a.tolist(), b.tolist()))
    a, b = _cancelling(rng, (5, 6)), _cancelling(rng, (6, 7))
    want = [[ref_dot(a[i], b[:, j], mac) for j in range(7)] for i in range(5)]
    got = fx.matmul(a, b, mac)
    _same(got, want, "matmul")
    res = np.concatenate([np.array(dots), got.ravel()])
    assert (res == 0).sum() >= 5  # zero results occur, and −0 exactly where §6.3 says
    has_minus0 = mac.acc.rounding.value == "rdn" and mac.acc.special.value != "fnuz"
    assert np.signbit(res[res == 0]).any() == has_minus0


@pytest.mark.parametrize("order", ORDERS)
def test_conv2d(order: str, path: str) -> None:
    mac = fx.Mac(RDN, order=order)
    rng = np.random.default_rng(3)
    x, w = _cancelling(rng, (2, 2, 5, 5)), _cancelling(rng, (3, 2, 2, 2))
    x *= rng.random(x.shape) < 0.3  # sparse images: many all-zero windows (products ±0)
    got = fx.conv2d(x, w, mac)
    want = np.empty(got.shape)
    for n, f, i, j in np.ndindex(*got.shape):
        want[n, f, i, j] = ref_dot(x[n, :, i:i + 2, j:j + 2].ravel(), w[f].ravel(), mac)
    _same(got, want)
    assert np.signbit(got[got == 0]).sum() > 5  # the case exercises −0 results


# --- the fused conv block ---------------------------------------------------------------------


def _block_grad_ref(x: np.ndarray, h: np.ndarray, arg: np.ndarray, g: np.ndarray,
                    mac: fx.Mac) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dz, dW, db of the fused block restated: dz is g at each live window's argmax (h > 0),
    +0 elsewhere; each tap reduces dz·x over (n, i, j) row-major, the bias dz·1."""
    n, f, po, qo = h.shape
    dz = np.zeros((n, f, 2 * po, 2 * qo))
    for s, c, pi, pj in np.ndindex(n, f, po, qo):
        if h[s, c, pi, pj] > 0:
            k = arg[s, c, pi, pj]
            dz[s, c, 2 * pi + k // 2, 2 * pj + k % 2] = g[s, c, pi, pj]
    dw = np.empty((f, 1, 3, 3))
    db = np.empty(f)
    ho, wo = 2 * po, 2 * qo
    for c in range(f):
        gz = dz[:, c].ravel()
        for kh, kw in np.ndindex(3, 3):
            dw[c, 0, kh, kw] = ref_dot(gz, x[:, 0, kh:kh + ho, kw:kw + wo].ravel(), mac)
        db[c] = ref_dot(gz, np.ones(gz.size), mac)
    return dz, dw, db


def test_conv_block_weight_gradient() -> None:
    """Non-negative images (the fused path): two identical samples with opposite gradients, so
    that every tap and bias sum cancels exactly (float32 steps: no rounding) and is −0 under
    rdn, and a dead filter (no live window), whose skipped +0·x terms leave it +0. With a
    negative pixel the dead filter's terms +0·x include −0, which make it −0: the fused
    kernel then either declines (None) or gives that result."""
    mac, act = fx.Mac(fx.Float(8, 23, rounding="rdn")), RDN
    rng = np.random.default_rng(1)
    x = np.abs(_cancelling(rng, (1, 1, 8, 8)))
    x = np.concatenate([x, x])
    w = _cancelling(rng, (3, 1, 3, 3))
    b = np.array([0.5, 0.25, -1000.0])  # filter 2 is dead: every window is <= 0
    fused = conv_block.conv_relu_pool(x, w, b, mac, act)
    assert fused is not None
    h, arg = fused
    z = fx.add(fx.conv2d(x, w, mac), b[None, :, None, None], act)
    _same(h, fx.maxpool2d(np.maximum(z, 0.0), 2)[0])
    assert (h[:, 2] == 0).all() and (h[:, :2] > 0).sum() >= 6
    g0 = _cancelling(rng, h.shape[1:])
    g = np.stack([g0, -g0])
    for xs, label in [(x, "non-negative"), (np.where(x == 0, -1.0, x), "negative")]:
        dz, dw, db = _block_grad_ref(xs, h, arg, g, mac)
        assert np.signbit(dw[:2]).all() and np.signbit(db[:2]).all()  # the cancelled sums
        assert np.signbit(dw[2]).all() == (label == "negative")
        # the composition the emulated backend falls back to
        _same(fx.conv2d_grad_weight(xs, dz, (3, 3), mac), dw, ("composition", label))
        got = conv_block.conv_relu_pool_grad(xs, h, arg, g, mac)
        assert got is not None or label == "negative"
        if got is not None:
            _same(got[0], dw, ("dW", label))
            _same(got[1], db, ("db", label))
