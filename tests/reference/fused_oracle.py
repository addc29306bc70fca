"""Slow, obviously-correct reference for the multi-term fused adder (``fx.Fused``).

Exact :class:`fractions.Fraction` arithmetic, written from the semantics in the
:class:`fxemu.Fused` docstring (not from the kernel):

* a nonzero operand ``x`` has exponent ``max(floor(log2|x|), emin)``; a product's exponent is
  the sum of its operands'; the running sum ``c`` has ``floor(log2|c|)``;
* ``E`` = the largest of those exponents and ``min_exp``; every product and ``c`` becomes the
  integer ``round(v / 2^(E - align))`` under the alignment rounding;
* the integers are summed (wrapped to ``3 + align + carry`` bits two's complement when the
  adder has carry bits);
* the sum ``v`` is rounded to a multiple of ``2^(max(floor(log2|v|), acc emin) - out)`` under
  the normalisation rounding, then into the accumulator format (by ``fx.quantize``, the
  conversion checked against its own oracles); a zero sum is +0;
* ``late``: ``c`` takes no part in the above; the products' normalised sum plus ``c`` is
  rounded once into the accumulator (``fx.add``, IEEE signed zeros);
* an accumulator that overflowed to ±inf stays so (IEEE ``inf + finite``).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

import fxemu as fx

__all__ = ["fused_chain", "round_int"]


def round_int(v: Fraction, mode: str) -> int:
    """``v`` rounded to an integer by ``mode`` (rtz rne rna rdn rup rto)."""
    fl = math.floor(v)
    if fl == v:
        return fl
    if mode == "rdn":
        return fl
    if mode == "rup":
        return fl + 1
    if mode == "rtz":
        return fl if v > 0 else fl + 1
    if mode == "rto":
        t = fl if v > 0 else fl + 1
        return t if t % 2 else (t + 1 if v > 0 else t - 1)
    frac = v - fl
    if frac != Fraction(1, 2):
        return fl + 1 if frac > Fraction(1, 2) else fl
    if mode == "rne":
        return fl if fl % 2 == 0 else fl + 1
    return fl + 1 if v > 0 else fl  # rna: ties away from zero


def _floor_log2(v: Fraction) -> int:
    v = abs(v)
    e = v.numerator.bit_length() - v.denominator.bit_length()
    return e if Fraction(2) ** e <= v else e - 1


def _step(a: list[float], b: list[float], c: float, f: fx.Fused, acc: fx.Float) -> float:
    if f.late:  # the products alone, then one correctly rounded addition of c (fx.add)
        return float(fx.add(_sum(a, b, Fraction(0), f, acc), c, acc))
    r = _sum(a, b, Fraction(c), f, acc)
    return 0.0 if r == 0 else float(fx.quantize(r, acc))


def _sum(a: list[float], b: list[float], c: Fraction, f: fx.Fused, acc: fx.Float) -> float:
    """The aligned, summed and normalised value (a double: it has at most out + 1 <= 53
    significant bits; ±inf from 2^1024 on), +0 for a zero sum."""
    prods, exps = [], []
    for x, y in zip(a, b, strict=True):
        if x != 0 and y != 0:
            ex = _floor_log2(Fraction(x))
            ey = _floor_log2(Fraction(y))
            if f.emin_a is not None:
                ex = max(ex, f.emin_a)
            if f.emin_b is not None:
                ey = max(ey, f.emin_b)
            prods.append(Fraction(x) * Fraction(y))
            exps.append(ex + ey)
    if c != 0:
        exps.append(_floor_log2(c))
        prods.append(c)
    if f.min_exp is not None:
        exps.append(f.min_exp)
    if not exps:
        return 0.0
    unit = Fraction(2) ** (max(exps) - f.align_bits)
    s = sum(round_int(p / unit, f.align_rounding) for p in prods)
    if f.carry_bits is not None:
        w = 3 + f.align_bits + f.carry_bits
        s = (s + 2 ** (w - 1)) % 2**w - 2 ** (w - 1)
    if s == 0:
        return 0.0
    v = s * unit
    q = Fraction(2) ** (max(_floor_log2(v), acc.emin) - f.out_bits)
    r = round_int(v / q, f.out_rounding) * q
    if abs(r) >= 2**1024:
        return math.inf if r > 0 else -math.inf
    return float(r)


def fused_chain(a: np.ndarray, b: np.ndarray, mac: fx.Mac) -> float:
    """The ``fused:…`` Mac's result for 1-D finite operands (accumulator from +0)."""
    f = mac.fused
    c = 0.0
    for k0 in range(0, len(a), f.terms):
        if not math.isfinite(c):  # an overflowed accumulator stays inf (IEEE: inf + finite)
            break
        c = _step(list(a[k0:k0 + f.terms]), list(b[k0:k0 + f.terms]), c, f, mac.acc)
    return c
