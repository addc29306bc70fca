"""Block-scaled formats (OCP MX, block floating point, NVFP4): conversion, decoding and the
block multiply-accumulate.

A tensor reaches these kernels as a 2-D array (rows, L) whose last axis is the blocked one;
block ``t`` of a row holds elements ``t·k … min((t+1)·k, L) - 1``. Parameters arrive as one
:class:`fxemu._kernels.params.BlockParams` (built by :func:`fxemu.lowering.lower_block`); the
element and scale formats are :class:`~fxemu._kernels.params.FormatVec` so fixed and float
elements share one path (:func:`fxemu._kernels.fmt.round_parts`).
"""

from __future__ import annotations

import functools

import numpy as np
from numba import prange

from ._jit import bits_f64, f64_bits, jit, pjit
from .codes import (
    CEIL,
    FLOOR,
    HALF_AWAY,
    HALF_EVEN,
    ORDER_CHUNK,
    TO_ODD,
)
from .convert import pow2
from .exact import add_parts, bitlen64, from_double, mul64, mul_doubles, shr128
from .fmt import code_is_finite, code_parts, code_value, round_parts, value_code
from .mac import SACC_N, reduce_nodes
from .mac_fast import float_step

_U0 = np.uint64(0)
_U1 = np.uint64(1)
_EXP = np.uint64(0x7FF0000000000000)
_ABS = np.uint64(0x7FFFFFFFFFFFFFFF)
_MANT = np.uint64((1 << 52) - 1)
_HIDDEN = np.uint64(1 << 52)


@jit
def _sig_bits(b):
    """Significant bits of the finite nonzero double with bits ``b`` (leading to last set)."""
    _, _, m, _, _ = from_double(b)
    tz = 0
    while (m & _U1) == _U0:
        m >>= _U1
        tz += 1
    return bitlen64(m)


@jit
def round_quotient(x, d, fv, key, idx):
    """Code of ``x / d`` correctly rounded into ``fv`` (d > 0 a double of few significant
    bits; deterministic rounding).

    The double quotient q is the nearest double to the exact one, so a rounding boundary of
    the (narrow) target format lies strictly between them only if it is q itself; then q has
    few significant bits, ``q·d`` is exact, and comparing it with x says on which side the
    exact quotient lies: q is replaced by its neighbour on that side, which rounds correctly.
    """
    q = x / d
    qb = f64_bits(q)
    if (qb & _EXP) != _EXP and q != 0.0 and _sig_bits(qb) + _sig_bits(f64_bits(d)) <= 53:
        t = q * d  # exact
        if t != x:
            toward = np.inf if x > t else -np.inf
            q = np.nextafter(q, toward)
    return value_code(fv, f64_bits(q), key, idx)


@jit
def _to_sm(code, w):
    """Two's complement W-bit code → sign | magnitude."""
    sign = _U1 << np.uint64(w - 1)
    if code & sign:
        mask = (sign << _U1) - _U1
        return sign | (((~code) + _U1) & mask)
    return code


@jit
def _from_sm(code, w):
    """sign | magnitude W-bit code → two's complement."""
    sign = _U1 << np.uint64(w - 1)
    if code & sign:
        mask = (sign << _U1) - _U1
        return ((~(code & (sign - _U1))) + _U1) & mask
    return code


@jit
def _block_amax(xb, r, lo, hi):
    """(amax, whether a NaN or inf is among x[r, lo:hi]) (bits in, amax as a double)."""
    amax = 0.0
    bad = False
    for i in range(lo, hi):
        b = xb[r, i] & _ABS
        if b >= _EXP:
            bad = True
        else:
            v = bits_f64(b)
            if v > amax:
                amax = v
    return amax, bad


@jit
def _pow2_exponent(ab, p):
    """E8M0 exponent of a finite block whose max magnitude has the double bits ``ab``."""
    if ab == _U0:
        return np.int64(-127)
    ef = np.int64(ab >> np.uint64(52))
    s = (ef - 1023 if ef != 0 else bitlen64(ab) - 1075) - p.emax_elem  # floor(log2 amax)
    if p.nosat and bits_f64(ab) > p.elem_max * pow2(s):
        s += 1
    return min(max(s, np.int64(-127)), np.int64(127))


@jit
def _scale_of(amax, p, sv, ts, key, idx):
    """(scale code, scale value, E8M0 exponent) of a finite block with max magnitude amax."""
    if p.pow2:
        s = _pow2_exponent(f64_bits(amax), p)
        return np.uint64(s + 127), pow2(s), s
    q_d = p.elem_max * ts
    qc = amax / q_d
    if qc < p.scale_tiny:
        amax = p.scale_tiny * q_d  # the clamp, as a dividend giving exactly tiny
    elif qc > p.scale_max:
        amax = p.scale_max * q_d
    code = round_quotient(amax, q_d, sv, key, idx)
    return code, code_value(sv, code, 0.0), np.int64(0)


@jit
def _exact_element(b, s, d, p, ev, key, idx):
    """(code, unscaled value) of the element with double bits ``b`` in a block of E8M0
    exponent ``s`` (x·2^-s rounded exactly) or of scale ``d`` (= S·T; x/d rounded from the
    exact quotient); the code two's complement (before any sign | magnitude recoding)."""
    if p.pow2:
        neg, h, lo_, e, st = from_double(b)
        code = round_parts(ev, neg, h, lo_, e - s, st, False, key, idx)
    else:
        code = round_quotient(bits_f64(b), d, ev, key, idx)
    return code, code_value(ev, code, p.elem_step)


@jit
def _convert_block(xb, r, lo, hi, p, ev, sv, ts, key, codes, vals, unscaled, width, wc, wv):
    """Convert x[r, lo:hi] (bits); write element codes and values; return the scale code."""
    amax, bad = _block_amax(xb, r, lo, hi)
    base = r * width
    if bad:
        for i in range(lo, hi):
            if wc:
                codes[r, i] = p.elem_nan
            if wv:
                vals[r, i] = np.nan
        return p.scale_nan
    scode, sval, s = _scale_of(amax, p, sv, ts, key, base + lo)
    d = sval * ts
    for i in range(lo, hi):
        code, v = _exact_element(xb[r, i], s, d, p, ev, key, base + i)
        if wv:
            vals[r, i] = v if unscaled else v * d
        if wc:
            codes[r, i] = _to_sm(code, ev[1]) if p.sm else code
    return scode


@pjit
def block_convert(xb, codes, vals, scales, p, ev, sv, ts, key, unscaled, wc, wv):
    """Convert every block of ``xb`` (rows, L) (float64 bits): element codes (when ``wc``)
    and values (when ``wv``; scaled, or the element values alone when ``unscaled``), scale
    codes (rows, blocks).
    ``ts`` is the per-tensor scale (1.0 without one); ``key`` keys stochastic element
    rounding by the element's flat index."""
    rows, width = xb.shape
    k = p.k
    nb = scales.shape[1]
    for t in prange(rows * nb):
        r = t // nb
        blk = t - r * nb
        lo = blk * k
        hi = min(lo + k, width)
        scales[r, blk] = _convert_block(xb, r, lo, hi, p, ev, sv, ts, key, codes, vals,
                                        unscaled, width, wc, wv)


# ---------------------------------------------------------------------------------------------
# The MX element path: float elements under an E8M0 scale with a deterministic rounding
# (``BlockParams.fast``), one pass per block over float32 or float64 input


@jit
def _mx_round(b, s, p, q):
    """(magnitude code, needs the exact path) of the double with bits ``b`` times 2^-s
    rounded into the element format in mode ``q`` by integer arithmetic on its bits.

    With d the exponent of x·2^-s above the element's smallest normal, the significand is
    laid out as ``X = (d + 1)·2^52 + mantissa`` (d >= 0: the element's biased exponent field
    above 52 fraction bits) or ``X = significand`` shifted ``esh - d`` further (d < 0: the
    element's subnormal grid; a double subnormal lacks the hidden bit); dropping the low
    ``esh`` (or more) bits with the mode's increment rounds it, a carry moving into the next
    binade as the code's exponent field does. The shift is exact (no multiplication), so
    every double input is rounded once. The result is clamped to the max magnitude; that is
    the answer of a saturating format, while an overflow without saturation, or a value
    below the smallest normal without subnormals, needs the exact path. Branch-free but for
    the mode, which is a compile-time constant in :func:`mx_kernel`."""
    neg = (b >> np.uint64(63)) != _U0
    ex = np.int64((b >> np.uint64(52)) & np.uint64(0x7FF))
    m = b & _MANT
    d = max(ex, np.int64(1)) - 1023 - s - p.eemin
    xx = ((np.uint64(d + 1) << np.uint64(52)) | m) if d >= 0 else (
        m | (_HIDDEN if ex != 0 else _U0))
    sh = np.uint64(p.esh if d >= 0 else min(p.esh - d, np.int64(63)))
    mask = (_U1 << sh) - _U1
    if q == HALF_EVEN:
        inc = (mask >> _U1) + ((xx >> sh) & _U1)
    elif q == HALF_AWAY:
        inc = (mask >> _U1) + _U1
    elif q == CEIL:
        inc = _U0 if neg else mask
    elif q == FLOOR:
        inc = mask if neg else _U0
    else:  # TO_ZERO, TO_ODD
        inc = _U0
    r = (xx + inc) >> sh
    if q == TO_ODD:
        r |= np.uint64((xx & mask) != _U0)
    need = ((d < 0) & (not p.esubn)) | ((r > p.emaxmag) & (not p.esat))
    return min(r, p.emaxmag), need


@jit
def _mx_code(r, b, p):
    """Element code of magnitude code ``r`` with the sign of the double bits ``b`` (fnuz
    formats have no -0)."""
    neg = (b >> np.uint64(63)) != _U0
    return r | (p.esign if neg and not (p.efnuz and r == _U0) else _U0)


@jit
def _mx_value(r, b, e0, p):
    """Value of magnitude code ``r`` with the sign of the double bits ``b`` (fnuz formats
    have no -0), times 2^e0, built on its double bit pattern: the code's exponent field
    (1 for a subnormal code) and mantissa placed in a double, minus the hidden bit's value
    for a subnormal code (an exact subtraction)."""
    ef = r >> np.uint64(p.embits)
    mf = r & ((_U1 << np.uint64(p.embits)) - _U1)
    lead = np.uint64(p.eemin + e0 + 1022)  # biased exponent of the element's binade 0
    v = bits_f64(((max(ef, _U1) + lead) << np.uint64(52)) | (mf << np.uint64(p.esh)))
    if ef == _U0:
        v -= bits_f64((lead + _U1) << np.uint64(52))
    sign = b & ~_ABS
    if p.efnuz and r == _U0:
        sign = _U0
    return bits_f64(f64_bits(v) | sign)


@functools.cache
def mx_kernel(codes, qmode):
    """The conversion kernel of ``p.fast`` blocks (float elements rounding in ``qmode``,
    E8M0 scale): ``kernel(x, out, scales, p, ev, unscaled)`` converts every block of ``x``
    (rows, L; float32 or float64), writing element codes (uint64) into ``out`` when
    ``codes``, else element values (float64; scaled, or the element values alone when
    ``unscaled``), and the scale codes (rows, blocks). One pass per block reads its amax, a
    second its elements (:func:`_mx_round`); the elements it cannot serve are redone by the
    exact path, so the codes and values are those of :func:`block_convert`. ``codes`` and
    ``qmode`` are closure constants, so the element loop has no dispatch; ``qmode`` -1 reads
    the mode from ``p.eq`` at run time (one variant for the less used modes)."""

    def kernel(x, out, scales, p, ev, unscaled):
        rows, width = x.shape
        k = p.k
        nb = scales.shape[1]
        q = qmode if qmode >= 0 else p.eq
        for t in prange(rows * nb):
            r = t // nb
            lo = (t - r * nb) * k
            hi = min(lo + k, width)
            amax = _U0
            for i in range(lo, hi):
                amax = max(amax, f64_bits(np.float64(x[r, i])) & _ABS)
            if amax >= _EXP:
                for i in range(lo, hi):
                    if codes:
                        out[r, i] = p.elem_nan
                    else:
                        out[r, i] = np.nan
                scales[r, t - r * nb] = p.scale_nan
                continue
            s = _pow2_exponent(amax, p)
            e0 = np.int64(0) if unscaled else s
            fix = False
            for i in range(lo, hi):
                b = f64_bits(np.float64(x[r, i]))
                mag, need = _mx_round(b, s, p, q)
                fix |= need
                if codes:
                    out[r, i] = _mx_code(mag, b, p)
                else:
                    out[r, i] = _mx_value(mag, b, e0, p)
            if fix:
                d = pow2(s)
                for i in range(lo, hi):
                    b = f64_bits(np.float64(x[r, i]))
                    if _mx_round(b, s, p, q)[1]:
                        code, v = _exact_element(b, s, d, p, ev, _U0, r * width + i)
                        if codes:
                            out[r, i] = code
                        else:
                            out[r, i] = v if unscaled else v * d
            scales[r, t - r * nb] = np.uint64(s + 127)

    kernel.__qualname__ = f"mx_kernel_c{int(codes)}_q{qmode}"
    return pjit(kernel)


@jit
def scale_value(p, sv, code):
    """Value of a scale code (NaN for the NaN code)."""
    if p.pow2:
        if code == np.uint64(255):
            return np.nan
        return pow2(np.int64(code) - 127)
    return code_value(sv, code, 0.0)


@pjit
def block_decode(codes, scales, out, p, ev, sv, ts):
    """Values of element codes (rows, L) with their scale codes (rows, blocks)."""
    rows, width = codes.shape
    k = p.k
    for r in prange(rows):
        for i in range(width):
            c = codes[r, i]
            if p.sm:
                c = _from_sm(c, ev[1])
            out[r, i] = code_value(ev, c, p.elem_step) * (scale_value(p, sv, scales[r, i // k])
                                                            * ts)


# ---------------------------------------------------------------------------------------------
# The block multiply-accumulate


@jit
def _tz64(m):
    """Trailing zero bits of a nonzero uint64."""
    return bitlen64(m & (~m + _U1)) - 1


@jit
def _trim(h, lo, e):
    """The window ``(h:lo)·2^e`` with its trailing zero bits dropped (a nonzero value), so
    exact sums of narrow products keep narrow windows (``add_parts`` needs <= 125 bits)."""
    if h == _U0 and lo == _U0:
        return h, lo, e
    tz = _tz64(lo) if lo != _U0 else 64 + _tz64(h)
    h2, l2, _, _ = shr128(h, lo, tz)
    return h2, l2, e + tz


@jit
def _block_term(ea, eb, sa, sb, lo, hi):
    """Node (neg, hi, lo, e, special) of one block pair: the exact sum of the element products
    ea[lo:hi]·eb[lo:hi] times the scales sa·sb (exact); a NaN scale gives a NaN node; an
    exact zero is +0 (an integer sum). An element that is NaN or inf (a non-saturating
    conversion's overflow) makes the term the IEEE value of its products' sum times the
    scales: NaN, or ±inf where every special product has one sign."""
    if sa != sa or sb != sb:
        return False, _U0, _U0, np.int64(0), np.nan
    for q in range(lo, hi):
        if not (abs(ea[q]) < np.inf and abs(eb[q]) < np.inf):
            s = 0.0
            for r in range(lo, hi):
                s += ea[r] * eb[r]
            return False, _U0, _U0, np.int64(0), s * (sa * sb)
    n = False
    h = _U0
    low = _U0
    e = np.int64(0)
    for k in range(lo, hi):
        pn, ph, pl, pe, _ = mul_doubles(f64_bits(ea[k]), f64_bits(eb[k]))
        ph, pl, pe = _trim(ph, pl, pe)
        n, h, low, e, _ = add_parts(n, h, low, e, pn, ph, pl, pe)
        h, low, e = _trim(h, low, e)
    if h == _U0 and low == _U0:
        return False, _U0, _U0, np.int64(0), 0.0
    sn, _, sm, se, _ = from_double(f64_bits(sa * sb))  # exact: both scales are narrow
    while (sm & _U1) == _U0:
        sm >>= _U1
        se += 1
    c, l2 = mul64(low, sm)
    h2 = h * sm + c
    return n != sn, h2, l2, e + se, 0.0


@jit
def reduce_blocks(ea, eb, sa, sb, k, accp, order, chunk, key, idx0, tmp, sacc):
    """Accumulate the block terms of one output into acc in ``order``: the terms
    (:func:`_block_term`) are the nodes of :func:`fxemu._kernels.mac.reduce_nodes`, the one
    ordered reduction of every Mac; a NaN term (a block holding NaN or inf) makes the result
    NaN in acc. Returns the acc code."""
    kk = ea.shape[0]
    nb = sa.shape[0]
    tn, th, tl, te, ts = tmp
    special = 0.0
    for t in range(nb):
        tn[t], th[t], tl[t], te[t], ts[t] = _block_term(ea, eb, sa[t], sb[t], t * k,
                                                        min(t * k + k, kk))
        special += ts[t]
    if special != 0.0:
        return value_code(accp, f64_bits(special), key, idx0)
    return reduce_nodes(tmp, nb, accp, order, chunk, key, idx0, sacc)


@jit
def _double_terms(ea, eb, sa, sb, k, terms):
    """The block terms as doubles where that is exact: every element product is exact in
    double (narrow elements), every partial sum is checked exact by TwoSum, the scaling stays
    within normal doubles. Returns False (terms unusable) otherwise, or for a NaN scale."""
    kk = ea.shape[0]
    for t in range(sa.shape[0]):
        if sa[t] != sa[t] or sb[t] != sb[t]:
            return False
        s = 0.0
        for q in range(t * k, min(t * k + k, kk)):
            p = ea[q] * eb[q]
            s2 = s + p
            bb = s2 - s
            if (s - (s2 - bb)) + (p - bb) != 0.0:
                return False
            s = s2
        if s == 0.0:
            terms[t] = 0.0  # an exact zero term is +0 (an integer sum)
        else:
            v = s * (sa[t] * sb[t])
            av = abs(v)
            if not (av > 2.0**-1000 and av < 2.0**1000):
                return False
            terms[t] = v
    return True


@jit
def _double_reduce(terms, chunk, fk, fq, fmin, fmax):
    """(ok, acc) of the sequential (chunk 0) or chunk:N order over double terms through
    :func:`fxemu._kernels.mac_fast.float_step` (ok False outside its fast domain)."""
    acc = 0.0
    part = 0.0
    csize = terms.shape[0] if chunk == 0 else chunk
    for t in range(terms.shape[0]):
        if chunk != 0 and t % csize == 0 and t > 0:
            ok, acc = float_step(acc, part, fk, fq, fmin, fmax)
            if not ok:
                return False, acc
            part = 0.0
        if chunk == 0:
            ok, acc = float_step(acc, terms[t], fk, fq, fmin, fmax)
        else:
            ok, part = float_step(part, terms[t], fk, fq, fmin, fmax)
        if not ok:
            return False, acc
    if chunk != 0 and terms.shape[0] > 0:
        return float_step(acc, part, fk, fq, fmin, fmax)
    return True, acc


@pjit
def block_matmul(ea, sa, eb, sb, out, k, accp, outp, order, chunk, key, out_scale, fast, fk,
                 fq, fmin, fmax):
    """``out[i, j] = R_out(reduce over blocks t of term(i, j, t))``: ea (M, K) and eb (N, K)
    the element values of A and B^T (unscaled), sa (M, nb) and sb (N, nb) their scale
    values; prange over rows. ``fast``: a float accumulator in the sequential or chunk order
    whose steps :func:`~fxemu._kernels.mac_fast.float_step` rounds (fk, fq, fmin, fmax its
    parameters) — outputs whose terms are exact doubles take that path, the others (and every
    output without ``fast``) the exact engine; both give the same bits."""
    m = ea.shape[0]
    nn = eb.shape[0]
    nb = sa.shape[1]
    dchunk = chunk if order == ORDER_CHUNK else 0
    for i in prange(m):
        tmp = (np.empty(nb + 1, np.bool_), np.empty(nb + 1, np.uint64),
               np.empty(nb + 1, np.uint64), np.empty(nb + 1, np.int64),
               np.empty(nb + 1, np.float64))
        sacc = np.zeros(SACC_N, np.int64)
        terms = np.empty(nb, np.float64)
        for j in range(nn):
            idx0 = (i * nn + j) * (3 * nb + 4)
            if fast and _double_terms(ea[i], eb[j], sa[i], sb[j], k, terms):
                ok, v = _double_reduce(terms, dchunk, fk, fq, fmin, fmax)
                if ok:
                    code = value_code(outp, f64_bits(v), key, idx0)
                    out[i, j] = code_value(outp, code, out_scale)
                    continue
            acc = reduce_blocks(ea[i], eb[j], sa[i], sb[j], k, accp, order, chunk, key, idx0,
                                tmp, sacc)
            n, h, lo, e = code_parts(accp, acc)
            if code_is_finite(accp, acc) and not (h == _U0 and lo == _U0):
                code = round_parts(outp, n, h, lo, e, False, False, key, idx0 + 3 * nb + 3)
            else:
                code = value_code(outp, f64_bits(code_value(accp, acc, 0.0)), key, idx0)
            out[i, j] = code_value(outp, code, out_scale)
