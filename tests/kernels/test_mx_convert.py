"""The MX element path (:func:`fxemu._kernels.block.mx_kernel`) against the exact block path
(:func:`fxemu._kernels.block.block_convert`, every element through ``round_parts``), and, on
float32 input, against ml_dtypes' casts and torchao's ``to_mx``.

Directed blocks: a tie at every rounding position of every binade (both signs, both tie
parities), every element code ±1 ulp of the double, element subnormals, float32 and float64
subnormal inputs, saturation between max and the next binade, scale clipping at 2^±127, ±0,
NaN and inf blocks, partial last blocks; plus random wide-range blocks. Codes, scale codes
and values (scaled and unscaled) are compared as bit patterns, at 1 and 2 threads.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

import fxemu as fx
from fxemu import lowering
from fxemu._kernels import block as kb

ROUNDINGS = ["rne", "rna", "rtz", "rup", "rdn", "rto"]
# element formats: the MX ones (saturating), fnuz, IEEE overflow to inf (the exact path
# takes overflowing elements), no subnormals (the exact path takes them)
ELEMENTS = [
    "float8_e4m3fn", "float8_e5m2", "float6_e3m2fn", "float6_e2m3fn", "float4_e2m1fn",
    "float8_e4m3fnuz", "float8_e5m2fnuz",
]


def _blocks(el: fx.Float, rng: np.random.Generator) -> np.ndarray:
    """(rows, 32) float64 rows, every row one block of the directed and random cases."""
    emax = int(np.frexp(el.max)[1] - 1)
    rows = []
    # every magnitude of the element grid (at scale 2^0: amax = max), the exact midpoints
    # between neighbours (ties), and one double ulp on either side of each
    grid = np.unique(np.abs(np.array([v for v in _all_values(el) if np.isfinite(v)])))
    mids = (grid[:-1] + grid[1:]) / 2
    pts = np.concatenate([grid, mids, np.nextafter(mids, 0), np.nextafter(mids, np.inf),
                          [el.max * 1.0625, el.max * 1.9, 2.0 ** (emax + 1) * 0.999]])
    pts = np.concatenate([pts, -pts])
    for lo in range(0, pts.size, 31):
        chunk = pts[lo:lo + 31]
        row = np.zeros(32)
        row[: chunk.size] = chunk
        row[31] = el.max  # fixes the scale at 2^0 (amax in the top binade)
        for s in (0, -127, 40, 127, -140):  # same ties under other shared exponents
            rows.append(row * 2.0**s)
    # subnormal inputs (double and float32), tiny blocks clipped at 2^-127
    for v in (5e-324, 2.0**-1050, 2.0**-149, 2.0**-140, 2.0**-127):
        rows.append(np.arange(32) * v * np.where(np.arange(32) % 2, 1, -1))
    # huge float64 blocks clipped at 2^127 (elements saturate), and ±0 blocks
    rows.append(np.linspace(-1e300, 1e300, 32))
    rows.append(np.full(32, 2.0**200))
    rows.append(np.zeros(32))
    rows.append(-np.zeros(32))
    z = np.zeros(32)
    z[::2] = -0.0
    z[5] = 1e-3
    rows.append(z)
    # NaN and inf blocks
    for bad in (np.nan, np.inf, -np.inf):
        r = rng.standard_normal(32)
        r[7] = bad
        rows.append(r)
    # random wide-range blocks, float32-representable and not
    for _ in range(200):
        mag = rng.standard_normal(32) * 2.0 ** rng.integers(-40, 40, 32)
        rows.append(mag * 2.0 ** int(rng.integers(-160, 160)))
    for _ in range(100):
        mag = rng.standard_normal(32) * 2.0 ** rng.integers(-8, 8, 32)
        rows.append((mag * 2.0 ** int(rng.integers(-120, 120))).astype(np.float32))
    return np.array(rows, np.float64)


def _all_values(el: fx.Float) -> np.ndarray:
    return fx.from_bits(np.arange(1 << el.width, dtype=np.uint64), el)


def _exact(x: np.ndarray, block: fx.Block, unscaled: bool) -> tuple:
    """Codes, values and scales by the exact block kernel (the MX path switched off)."""
    (p, ev, sv), key = lowering.block_sr_key(block, None, None)
    p = p._replace(fast=False)
    c = np.empty(x.shape, np.uint64)
    v = np.empty(x.shape, np.float64)
    s = np.empty((x.shape[0], -(-x.shape[1] // block.block_size)), np.uint64)
    kb.block_convert(x.view(np.uint64), c, v, s, p, ev, sv, 1.0, key, unscaled, True, True)
    return c, v, s


def _fast(x: np.ndarray, block: fx.Block, unscaled: bool, parallel: bool = False) -> tuple:
    (p, ev, _), _ = lowering.block_sr_key(block, None, None)
    assert p.fast
    nb = -(-x.shape[1] // block.block_size)
    c = np.empty(x.shape, np.uint64)
    v = np.empty(x.shape, np.float64)
    s = np.empty((x.shape[0], nb), np.uint64)
    s2 = np.empty_like(s)
    for codes, out, sc in ((True, c, s), (False, v, s2)):
        k = kb.mx_kernel(codes, lowering.mx_qmode(p))
        (k.parallel if parallel else k.serial)(x, out, sc, p, ev, unscaled)
    assert np.array_equal(s, s2)
    return c, v, s


def _f32_rows(x: np.ndarray) -> np.ndarray:
    """The rows of x that float32 holds exactly."""
    with np.errstate(over="ignore"):
        return np.all(x.astype(np.float32) == x, axis=1)


def _same(got: tuple, want: tuple, what: str) -> None:
    for g, w, name in zip(got, want, ("codes", "values", "scales"), strict=True):
        gb, wb = g.view(np.uint64), w.view(np.uint64)
        bad = np.argwhere(gb != wb)
        assert bad.size == 0, (what, name, bad[:3].tolist(), g[tuple(bad[0])],
                               w[tuple(bad[0])])


#: the default run: E4M3 under every mode, the other formats under ties to even; the rest
#: with ``-m mx_full`` (``tox -e mx-full``)
CASES = [pytest.param(name, rounding, marks=() if name == "float8_e4m3fn" or rounding == "rne"
                      else pytest.mark.mx_full, id=f"{name}-{rounding}")
         for name in ELEMENTS for rounding in ROUNDINGS]


@pytest.mark.parametrize("name,rounding", CASES)
def test_mx_path_equals_exact_path(name: str, rounding: str) -> None:
    """Saturating and not, scaled and unscaled values, float64 and float32 input, whole and
    partial blocks: the same bits; ties to even (the MX mode) also through the parallel
    kernel at 1 and 2 threads."""
    rng = np.random.default_rng(7)
    base = fx.parse(name)
    x = _blocks(base, rng)
    f32 = _f32_rows(x)
    threads = numba.get_num_threads()
    for overflow in ("sat", "inf"):
        el = base.replace(rounding=rounding, overflow=overflow)
        for block in (fx.Block(el, 32), fx.Block(el, 24)):
            for unscaled in (False, True):
                want = _exact(x, block, unscaled)
                what = f"{el} k={block.block_size} unscaled={unscaled}"
                _same(_fast(x, block, unscaled), want, what)
                _same(_fast(x[f32].astype(np.float32), block, unscaled),
                      tuple(w[f32] for w in want), what + " float32")
                if rounding != "rne" or overflow != "sat":
                    continue
                for n in sorted({1, min(2, threads)}):
                    numba.set_num_threads(n)
                    try:
                        _same(_fast(x, block, unscaled, True), want, what + f" {n}t")
                        _same(_fast(x[f32].astype(np.float32), block, unscaled, True),
                              tuple(w[f32] for w in want), what + f" float32 {n}t")
                    finally:
                        numba.set_num_threads(threads)


def test_mx_path_without_subnormals_and_lowering() -> None:
    """FTZ elements take the exact path below the smallest normal; formats the integer
    rounding does not serve are not lowered to it."""
    rng = np.random.default_rng(8)
    el = fx.parse("float8_e4m3fn").replace(overflow="sat", subnormals=False)
    x = _blocks(el, rng)
    _same(_fast(x, fx.Block(el, 32), False), _exact(x, fx.Block(el, 32), False), "ftz")
    fast = lambda b: lowering.lower_block(b)[0].fast  # noqa: E731
    assert fast(fx.parse("mxfp8_e4m3")) and fast(fx.parse("mxfp4_e2m1"))
    assert not fast(fx.parse("mxint8")) and not fast(fx.parse("nvfp4"))
    assert not fast(fx.Block(el.replace(rounding="stochastic"), 32))
    assert not fast(fx.Block(fx.parse("float64"), 32))
    assert not fast(fx.Block(fx.parse("p3109_k8p1"), 32))


def test_float32_input_is_not_widened_and_agrees() -> None:
    """fx.to_bits / fx.quantize take float32 as it is: the same codes and values as the
    float64 of the same numbers, on every float32 class (normal, subnormal, ±0, ±inf, NaN)."""
    rng = np.random.default_rng(9)
    x = (rng.standard_normal((64, 64)) * 2.0 ** rng.integers(-149, 127, (64, 1))).astype(
        np.float32)
    x[0, :6] = [np.float32(2.0**-149), -np.float32(2.0**-149), 0.0, -0.0, np.inf, 1.0]
    x[1, :3] = [np.nan, 3.0, -np.float32(2.0**-126)]
    x[2, :] = np.float32(3.4028235e38)
    x[3, :] = np.float32(1.1754942e-38)  # the largest float32 subnormal
    for name in ("mxfp8_e4m3", "mxfp8_e5m2", "mxfp4_e2m1"):
        b = fx.parse(name)
        c32, c64 = fx.to_bits(x, b), fx.to_bits(x.astype(np.float64), b)
        assert np.array_equal(c32.elements, c64.elements)
        assert np.array_equal(c32.scales, c64.scales)
        q32, q64 = fx.quantize(x, b), fx.quantize(x.astype(np.float64), b)
        assert q32.dtype == np.float64
        assert np.array_equal(q32.view(np.uint64), q64.view(np.uint64))
    # a format off the MX path widens float32 first, with the same result
    assert np.array_equal(fx.quantize(x, "mxint8"),
                          fx.quantize(x.astype(np.float64), "mxint8"), equal_nan=True)


def test_float32_classes_against_ml_dtypes() -> None:
    """Every float32 class into mxfp8 (E4M3, E5M2): the element codes are ml_dtypes'
    saturating casts of x·2^-s (exact in float64; ties in every position)."""
    ml = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(10)
    bits = rng.integers(0, 2**32, 32 * 4000, dtype=np.uint64).astype(np.uint32)
    x = bits.view(np.float32).reshape(-1, 32)
    x = x[np.isfinite(x).all(axis=1)]
    ties = (np.arange(0, 1 << 12, dtype=np.float32) * np.float32(2.0**-12)).reshape(-1, 32)
    x = np.concatenate([x, ties, -ties, ties * np.float32(2.0**-130)])
    for name, dt in (("mxfp8_e4m3", ml.float8_e4m3fn), ("mxfp8_e5m2", ml.float8_e5m2)):
        b = fx.parse(name)
        bc = fx.to_bits(x, b)
        scale = np.repeat(np.ldexp(1.0, bc.scales.astype(np.int64) - 127), 32, axis=1)
        m = b.element.max
        y = np.clip(x.astype(np.float64) / scale, -m, m)
        # far below the element grid (both round to ±0) float32 may not hold y; elsewhere
        # it does, so ml_dtypes' cast (through float32) rounds y itself
        y = np.where(np.abs(y) < 2.0**-100, np.copysign(0.0, y), y)
        assert (y.astype(np.float32) == y).all()
        want = y.astype(np.float32).astype(dt).view(np.uint8)
        assert np.array_equal(bc.elements.astype(np.uint8), want), name


def test_float32_against_torchao_to_mx() -> None:
    """torchao's to_mx on float32 tensors and fx.to_bits on the same float32 arrays: equal
    scale and element codes on finite blocks (its tiny-scale deviation excluded,
    docs/mx_notes.md)."""
    pytest.importorskip("torchao")
    torch = pytest.importorskip("torch")
    from torchao.prototype.mx_formats.mx_tensor import to_mx

    rng = np.random.default_rng(11)
    x = (rng.standard_normal((512, 64)) * 2.0 ** rng.integers(-100, 100, (512, 1))).astype(
        np.float32)
    # ties of E4M3 (1 + 1/16, 1 + 3/16) and E5M2 (1 + 1/8, 1 + 3/8) of both parities
    mids = rng.choice([1.0625, 1.1875, 1.125, 1.375], (8, 64)) * np.where(rng.random((8, 64))
                                                                          < 0.5, -1, 1)
    x[:8] = (mids * 2.0 ** rng.integers(-8, 8, (8, 1))).astype(np.float32)
    for name, dt in (("mxfp8_e4m3", torch.float8_e4m3fn), ("mxfp8_e5m2", torch.float8_e5m2)):
        sc, data = to_mx(torch.from_numpy(x.copy()), dt, 32)
        bc = fx.to_bits(x, name)
        assert np.array_equal(bc.scales, sc.view(torch.uint8).numpy())
        assert np.array_equal(bc.elements, data.view(torch.uint8).numpy())


@pytest.mark.parametrize("name", ["float8_e4m3fn", "float4_e2m1fn", "float8_e5m2fnuz"])
def test_codes_and_values_in_one_call(name: str) -> None:
    """block_convert asked for codes and values (one conversion, the values decoded from its
    codes) gives the bits of the two single-output calls, NaN/inf blocks included."""
    from fxemu.quantize import block_convert

    x = _blocks(fx.parse(name), np.random.default_rng(9))
    for block in (fx.Block(fx.parse(name), 32), fx.Block(fx.parse(name), 24)):
        for unscaled in (False, True):
            c, v, s, _ = block_convert(x, block, axis=1, unscaled=unscaled)
            c1, _, s1, _ = block_convert(x, block, axis=1, unscaled=unscaled, values=False)
            _, v2, s2, _ = block_convert(x, block, axis=1, unscaled=unscaled, codes=False)
            what = f"{block} unscaled={unscaled}"
            _same((c, v, s), (c1, v2, s1), what)
            assert np.array_equal(s1, s2), what
