"""The MX / BFP block dot-product unit: one block pair per beat, its exact term accumulated
into a float accumulator by the float PE's adder.

A beat carries one block of each operand: ``k`` element codes (element i at bits
``[i·W, (i+1)·W)``) and the E8M0 scale code above them (bits ``[k·W, k·W + 8)``). The term of
a block pair is formed exactly, as :class:`fxemu.Mac` with block operands defines it:

1. element decode: a float element (E4M3, E5M2, E3M2, E2M3, E2M1) is ``(-1)^s · m ·
   2^(x - 1) · 2^lsb`` with ``m`` its significand (hidden bit included), ``x`` its effective
   biased exponent (1 for a subnormal) and ``lsb = 1 - bias - man_bits`` its smallest step; a
   fixed element (MXINT8, ``bfp<M,k>``: two's complement or sign-magnitude) is its integer
   code times ``2^-frac_bits``;
2. exact element products: ``m_a·m_b`` shifted left by ``(x_a - 1) + (x_b - 1)``, signed, on
   the common grid ``2^(lsb_a + lsb_b)``;
3. an exact two's-complement adder tree over the k products (:attr:`BlockArith.sum_width`
   bits: the widest product's magnitude, ``ceil(log2 k)`` carry bits and a sign);
4. the scale exponent add: the term is ``S · 2^(lsb_a + lsb_b + (sa - 127) + (sb - 127))``;
5. one accumulation per block pair into the Mac's float accumulator, correctly rounded (the
   float PE's adder, :class:`~._float.FloatArith`), in the Mac's order over blocks:
   ``sequential`` and ``chunk:N`` stream one block pair per cycle, ``pairwise`` takes
   ``k_tree`` block pairs per beat into an adder tree of block terms.

NaN: a NaN scale (E8M0 code 0xFF) or an element inf/NaN code (which fxemu's conversion never
writes outside a NaN block, since a block holding inf/NaN gets the NaN scale) makes the block
pair's term NaN, and a NaN term makes the dot product NaN: the accumulator's positive quiet NaN
(OCP MX §5.3; fxemu's block Mac). An exact zero term is +0.

Pipelining: element products are registered, then the adder tree's sum
(:attr:`BlockArith.product_latency` = 2 cycles ahead of the PE's own stages).

Not built (one-line ValueError): float scales (NVFP4), fixed accumulators, ``mul``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed

from ..._errors import msg
from ...formats import Block, Fixed, Float, Mac
from ...quantize import from_bits
from ._float import EW, FloatArith, check_float, decode, sext
from .bench import Golden, edge_codes

#: E8M0 scale code of a NaN block, and the bias of the shared exponent
SCALE_NAN, SCALE_BIAS = 0xFF, 127


def check_block(mac: Mac) -> None:
    """Refuse a block Mac the unit does not build (one-line ValueError naming the field)."""
    for what, blk in (("a", mac.a), ("b", mac.b)):
        if not blk.pow2_scale:
            raise ValueError(msg(f"rtl operand {what}", "the block unit takes E8M0 scales "
                                 "(a float scale such as nvfp4's is not built)", str(blk)))
        el = blk.element
        if isinstance(el, Fixed) and not el.signed:
            raise ValueError(msg(f"rtl operand {what}", "unsigned fixed elements are not "
                                 "built", str(blk)))
    for what, f in (("acc", mac.acc), ("out", mac.out)):
        if f is None:
            continue
        if not isinstance(f, Float):
            raise ValueError(msg(f"rtl {what}", "the block unit accumulates into a float "
                                 "(a fixed accumulator is not built)", str(f)))
        check_float(f, f"rtl {what}")


def _elem_span(el: Fixed | Float) -> tuple[int, int, int]:
    """(magnitude bits, largest left shift, exponent of the element grid's step)."""
    if isinstance(el, Float):
        return el.man_bits + 1, (1 << el.exp_bits) - 2, 1 - el.bias - el.man_bits
    return el.width, 0, -(el.width - el.int_bits)


def _clog2(n: int) -> int:
    return max(0, (n - 1).bit_length())


@dataclass(frozen=True)
class BlockArith(FloatArith):
    """The block datapath of ``mac`` (block operands ``mac.a``/``mac.b``, float acc): a
    *product* here is the exact term of one block pair (a float PE node), every addition
    is the float PE's correctly rounded addition into ``acc``."""

    a: Block
    b: Block

    @property
    def k(self) -> int:
        return self.a.block_size

    @property
    def a_width(self) -> int:
        return self.k * self.a.element.width + 8

    @property
    def b_width(self) -> int:
        return self.k * self.b.element.width + 8

    @property
    def product_latency(self) -> int:
        return 2

    @property
    def prod_width(self) -> int:
        """Bits of an element product's magnitude on the common grid."""
        ma, sa, _ = _elem_span(self.a.element)
        mb, sb, _ = _elem_span(self.b.element)
        return ma + mb + sa + sb

    @property
    def sum_width(self) -> int:
        """Bits of the exact two's-complement block sum (the adder tree's width)."""
        return self.prod_width + _clog2(self.k) + 1

    @property
    def _pm(self) -> int:
        return self.sum_width - 1

    @property
    def grid(self) -> int:
        """Exponent of the block sum's step (before the scales)."""
        return _elem_span(self.a.element)[2] + _elem_span(self.b.element)[2]

    def _element(self, mod: Module, code: Value, el: Fixed | Float,
                 blk: Block) -> tuple[Value, Value, Value, Value]:
        """(sign, magnitude, left shift, special) of one element code."""
        if isinstance(el, Float):
            n = decode(mod, code, el)
            ex = code[el.man_bits: el.man_bits + el.exp_bits]
            sh = Mux(ex == 0, 0, ex - 1)[: max(1, el.exp_bits)]
            return n.s, n.m, sh, n.inf | n.nan
        w = el.width
        s = code[w - 1]
        if blk.sign_magnitude:
            mag = Cat(code[: w - 1], Const(0, 1))
        else:
            mag = Mux(s, -code.as_signed(), code)[:w]
        return s, mag, Const(0, 1), Const(0, 1)

    def product(self, mod: Module, a: Value, b: Value) -> tuple[Value, Value]:
        k, pw = self.k, self.prod_width
        ea, eb = self.a.element, self.b.element
        wa, wb = ea.width, eb.width
        sw = self.sum_width
        prods, special = [], Const(0, 1)
        for i in range(k):
            sa_, ma, sha, xa = self._element(mod, a[i * wa:(i + 1) * wa], ea, self.a)
            sb_, mb, shb, xb = self._element(mod, b[i * wb:(i + 1) * wb], eb, self.b)
            mag = ((ma * mb) << (sha + shb))[:pw]
            p = Signal(signed(sw), name=f"bp{i}")
            mod.d.sync += p.eq(Mux(sa_ ^ sb_, -mag, mag))
            prods.append(p)
            special = special | xa | xb
        sca, scb = a[k * wa: k * wa + 8], b[k * wb: k * wb + 8]
        nan1 = Signal(name="bnan1")
        e1 = Signal(signed(EW), name="bexp1")
        mod.d.sync += [nan1.eq(special | (sca == SCALE_NAN) | (scb == SCALE_NAN)),
                       e1.eq(sca + scb + (self.grid - 2 * SCALE_BIAS))]
        # stage 2: the exact adder tree (adjacent pairs level by level), its sum registered
        level: list[Value] = prods
        while len(level) > 1:
            nxt = [(level[j] + level[j + 1])[:sw].as_signed() for j in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                nxt.append(level[-1])
            level = nxt
        total = Signal(signed(sw), name="bsum")
        nan2 = Signal(name="bnan2")
        e2 = Signal(signed(EW), name="bexp2")
        mod.d.sync += [total.eq(level[0]), nan2.eq(nan1), e2.eq(e1)]
        neg = total < 0
        mag = Mux(neg, -total, total)[: self._pm]
        zero1 = Const(0, 1)
        node = Cat(mag, sext(e2, EW), neg, zero1, zero1)
        return node, Cat(nan2, zero1, zero1)

    def describe_into(self, d: dict) -> None:
        """Block specifics of a :func:`fxemu.hw.rtl.describe` entry (ports, what it
        implements), in place."""
        k = self.k
        for p in d["ports"]:
            if p["name"] in ("a", "b"):
                blk = self.a if p["name"] == "a" else self.b
                w = blk.element.width
                p["meaning"] = (f"{p['meaning']}; each block pair word: {k} element codes of "
                                f"{blk} (element i at bits [{w}i, {w}(i+1))) and the E8M0 "
                                f"scale code at bits [{k * w}, {k * w + 8})")
        d["kind"] = "block"
        d["block"] = {"k": k, "elements_per_cycle": k, "sum_width": self.sum_width,
                      "product_width": self.prod_width, "grid_exponent": self.grid,
                      "product_latency": self.product_latency}
        d["implements"] = (
            f"per beat one block pair ({k} elements of {self.a} and of {self.b}): element "
            f"decode, exact products, an exact {self.sum_width}-bit two's-complement adder "
            f"tree, times 2^(sa+sb-254); a NaN scale (0xFF) or an inf/NaN element makes the "
            f"result NaN; block terms accumulated in order {self.mac.order} over blocks, every "
            f"addition rounded into acc {self.mac.acc} (ties to even); result "
            + (f"rounded into out {self.mac.out}" if self.mac.out is not None else "is acc")
            + " (bit-identical to fxemu.dot under this Mac)")


# ---------------------------------------------------------------------------------------------
# Golden vectors


@dataclass
class BlockGolden(Golden):
    """Golden vectors of a block unit: ``a``/``b`` hold packed block-pair words (Python ints:
    k element codes and the scale code, as the unit's ports take them)."""

    @property
    def a_width(self) -> int:
        return self.a_fmt.block_size * self.a_fmt.element.width + 8

    @property
    def b_width(self) -> int:
        return self.b_fmt.block_size * self.b_fmt.element.width + 8

    word_dtype = object


def _scales(rng: np.random.Generator, shape: tuple[int, ...], nan_rate: float) -> np.ndarray:
    """E8M0 scale codes: mostly near 2^0, some uniform, some at 2^±127 (codes 0, 254), NaN
    (0xFF) at ``nan_rate``."""
    n = int(np.prod(shape))
    near = SCALE_BIAS + rng.integers(-12, 13, n)
    uni = rng.integers(0, 255, n)
    ext = np.array([0, 1, 2, 126, 127, 128, 252, 253, 254])[rng.integers(0, 9, n)]
    u = rng.random(n)
    s = np.where(u < 0.6, near, np.where(u < 0.8, uni, ext))
    s = np.where(rng.random(n) < nan_rate, SCALE_NAN, s)
    return s.astype(np.uint64).reshape(shape)


def _elements(blk: Block, shape: tuple[int, ...], rng: np.random.Generator,
              special_rate: float) -> np.ndarray:
    """Element codes: uniform, edge codes (zeros, ±max, subnormals, single bits), whole zero
    and whole max blocks; inf/NaN element codes only at ``special_rate``."""
    el = blk.element
    w = el.width
    n = int(np.prod(shape))
    rand = rng.integers(0, 1 << w, n, dtype=np.uint64)
    edges = edge_codes(el)
    pick = edges[rng.integers(0, len(edges), n)]
    codes = np.where(rng.random(n) < 0.5, rand, pick).reshape(shape)
    # whole blocks of zeros / of the largest magnitude (last axis = the block)
    kind = rng.random(shape[:-1])
    mx = int(from_bits_max_code(el))
    codes[kind < 0.05] = 0
    sel = (kind >= 0.05) & (kind < 0.1)
    signs = rng.integers(0, 2, codes[sel].shape).astype(np.uint64) << np.uint64(w - 1)
    if isinstance(el, Float) or blk.sign_magnitude:
        codes[sel] = np.uint64(mx) | signs
    else:  # two's complement: the most negative code, or the largest positive one
        codes[sel] = np.where(signs != 0, signs, np.uint64(mx))
    if isinstance(el, Float):
        bad = ~np.isfinite(from_bits(codes, el))
        keep = rng.random(codes.shape) < special_rate
        codes = np.where(bad & ~keep, np.uint64(0), codes)
    return codes


def from_bits_max_code(el: Fixed | Float) -> int:
    """The code of the element format's largest finite positive value."""
    if isinstance(el, Fixed):
        return el.max_int
    vals = from_bits(np.arange(1 << (el.width - 1), dtype=np.uint64), el)
    vals = np.where(np.isfinite(vals), vals, -1.0)
    return int(np.argmax(vals))


def _pack(codes: np.ndarray, scales: np.ndarray, w: int) -> np.ndarray:
    """Block-pair words (object ints) of element codes (..., k) and scale codes (...)."""
    k = codes.shape[-1]
    fields = [((codes[..., None] >> np.arange(w, dtype=np.uint64)) & np.uint64(1))
              .reshape(*codes.shape[:-1], k * w),
              (scales[..., None] >> np.arange(8, dtype=np.uint64)) & np.uint64(1)]
    bits = np.concatenate(fields, axis=-1).astype(np.uint8)  # LSB first
    packed = np.packbits(bits, axis=-1, bitorder="little")
    flat = packed.reshape(-1, packed.shape[-1])
    words = np.array([int.from_bytes(r.tobytes(), "little") for r in flat] + [None],
                     object)[:-1]  # (the None keeps numpy from making a 2-D array)
    return words.reshape(codes.shape[:-1])


def _values(codes: np.ndarray, scales: np.ndarray, blk: Block) -> np.ndarray:
    """Values (rows, nb·k) of element codes (rows, nb, k) with scale codes (rows, nb), after
    making every block one the Mac's conversion keeps: a block whose values the conversion
    would change (a two's-complement block holding the most negative code takes a larger
    scale, and its odd codes round) is replaced, codes and scale in place, by its converted
    codes. Every other block, the non-canonical ones included (a large scale over small
    elements), stays as drawn: its values convert exactly."""
    from ...quantize import quantize, to_bits

    rows, nb, k = codes.shape
    v = from_bits(codes.reshape(rows, nb * k), scales, blk)
    q = quantize(v, blk)
    same = (q == v) | (np.isnan(q) & np.isnan(v))
    bad = ~same.reshape(rows, nb, k).all(axis=2)
    if bad.any():
        c2 = to_bits(v, blk)
        codes[bad] = c2.elements.reshape(rows, nb, k)[bad]
        scales[bad] = c2.scales[bad]
        v = from_bits(codes.reshape(rows, nb * k), scales, blk)
    return v


def block_golden(mac: Mac, *, pes: int, k: int = 0, streams: int = 100_000, seed: int = 0,
                 group: int = 256, max_blocks: int = 4, nan_rate: float = 0.002,
                 cancel_rate: float = 0.1) -> BlockGolden:
    """At least ``streams`` dot products of block operands (one to ``max_blocks`` block pairs;
    ``k`` block pairs each for a pairwise unit of ``k`` leaves) and their codes from
    :func:`fxemu.matmul` under ``mac`` (operands the values of the drawn codes; a NaN scale
    decodes to NaN, which the Mac's conversion keeps a NaN block). A ``cancel_rate`` share of
    groups repeats each block of ``b`` and negates ``a``'s copy, so terms cancel exactly."""
    from ...arith import matmul
    from ...quantize import to_bits

    rng = np.random.default_rng(seed)
    ba, bb = mac.a, mac.b
    kb = ba.block_size
    need = -(-streams // pes)
    A, B, E = [], [], []
    done = 0
    while done < need:
        g = min(group, need - done)
        nb = k if k else int(rng.integers(1, max_blocks + 1))
        ca = _elements(ba, (g, nb, kb), rng, nan_rate)
        sa = _scales(rng, (g, nb), nan_rate)
        cb = _elements(bb, (pes, nb, kb), rng, nan_rate)
        sb = _scales(rng, (pes, nb), nan_rate)
        if nb > 1 and rng.random() < cancel_rate:
            for t in range(1, nb, 2):
                cb[:, t], sb[:, t], sa[:, t] = cb[:, t - 1], sb[:, t - 1], sa[:, t - 1]
                ca[:, t] = _negate(ca[:, t - 1], ba)
        va, vb = _values(ca, sa, ba), _values(cb, sb, bb)
        r = matmul(va, vb.T, mac)
        A.append(_pack(ca, sa, ba.element.width))
        B.append(_pack(cb, sb, bb.element.width).T)
        E.append(to_bits(r, mac.out_format).reshape(g, pes))
        done += g
    return BlockGolden(mac, ba, bb, pes, k, A, B, E)


def _negate(codes: np.ndarray, blk: Block) -> np.ndarray:
    """Element codes of the negated values (two's complement: the most negative code stays)."""
    el = blk.element
    w = el.width
    if isinstance(el, Float) or blk.sign_magnitude:
        return codes ^ np.uint64(1 << (w - 1))
    mask = np.uint64((1 << w) - 1)
    neg = ((~codes) + np.uint64(1)) & mask
    return np.where(codes == np.uint64(1 << (w - 1)), codes, neg)
