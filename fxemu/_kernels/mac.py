"""Multiply-accumulate datapath kernels (exact engine): elementwise ops, reductions, products.

A reduction sees K operand pairs (doubles, as bits) and a ``Mac``'s three format vectors. Each
product is exact (106-bit) and optionally rounded into ``mul``; every addition is exact and then
rounded into ``acc``; the final accumulator is rounded into ``out``. Non-finite operands or
accumulators (float formats with inf/NaN) follow IEEE 754 through double arithmetic.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ._jit import bits_f64, f64_bits, jit, pjit
from .codes import (
    FLOOR,
    KIND_FLOAT,
    OP_ADD,
    OP_FMA,
    OP_MUL,
    OP_SUB,
    ORDER_CHUNK,
    ORDER_PAIRWISE,
    ORDER_SEQUENTIAL,
)
from .exact import add_parts, from_double, mul_doubles, zero_sum_neg
from .fmt import code_is_finite, code_parts, code_value, round_parts, value_code

_U0 = np.uint64(0)
_U1 = np.uint64(1)
_EXP = np.uint64(0x7FF0000000000000)

@jit
def _is_finite_bits(b):
    return (b & _EXP) != _EXP


@jit
def _floor(p):
    """Whether format ``p`` is a float format rounding toward −inf (``rdn``), whose exact zero
    sums are −0 (see :func:`~fxemu._kernels.exact.zero_sum_neg`)."""
    return p[0] == KIND_FLOAT and p[4] == FLOOR


@jit
def elementwise(op, a, b, c, p, key, idx):
    """One correctly rounded ``a+b``, ``a-b``, ``a·b`` or ``a·b+c`` (doubles as bits) into
    format ``p``; returns the code."""
    if not (_is_finite_bits(a) and _is_finite_bits(b) and _is_finite_bits(c)):
        va, vb, vc = bits_f64(a), bits_f64(b), bits_f64(c)
        if op == OP_ADD:
            r = va + vb
        elif op == OP_SUB:
            r = va - vb
        elif op == OP_MUL:
            r = va * vb
        else:
            r = va * vb + vc
        return value_code(p, f64_bits(r), key, idx)
    if op == OP_ADD or op == OP_SUB:
        n1, h1, l1, e1, _ = from_double(a)
        n2, h2, l2, e2, _ = from_double(b)
        if op == OP_SUB:
            n2 = not n2
        n, h, lo, e, s = add_parts(n1, h1, l1, e1, n2, h2, l2, e2)
    else:
        n, h, lo, e, s = mul_doubles(a, b)
        n1, n2 = n, False  # an exact product: its zero keeps the xor sign
        if op == OP_FMA:
            n2, h3, l3, e3, _ = from_double(c)
            n, h, lo, e, s = add_parts(n, h, lo, e, n2, h3, l3, e3)
    if op != OP_MUL and h == _U0 and lo == _U0 and not s:
        n = zero_sum_neg(n1, n2, _floor(p))  # an exact zero sum: IEEE 754 §6.3
    return round_parts(p, n, h, lo, e, s, False, key, idx)


@pjit
def elementwise_kernel(op, a, b, c, out, p, key, scale, index):
    """Elementwise op on bits; ``index[i]`` is element i's position (stochastic counter)."""
    for i in prange(a.shape[0]):
        code = elementwise(op, a[i], b[i], c[i], p, key, index[i])
        out[i] = code_value(p, code, scale)


@jit
def _product(a, b, mulp, use_mul, key, idx):
    """Exact product of doubles ``a·b`` (bits), optionally rounded into ``mulp``.

    Returns a node ``(neg, hi, lo, e, special)``: exact parts, and ``special`` = 0.0 for a
    finite value or the inf/NaN the product rounded to (parts unused then).
    """
    n, h, lo, e, _ = mul_doubles(a, b)
    if use_mul:
        code = round_parts(mulp, n, h, lo, e, False, False, key, idx)
        if not code_is_finite(mulp, code):
            return n, h, lo, e, code_value(mulp, code, 0.0)
        n, h, lo, e = code_parts(mulp, code)
    return n, h, lo, e, 0.0


@jit
def _code_node(accp, code):
    """A node holding an acc code."""
    if not code_is_finite(accp, code):
        return False, _U0, _U0, np.int64(0), code_value(accp, code, 0.0)
    n, h, lo, e = code_parts(accp, code)
    return n, h, lo, e, 0.0


@jit
def _add_nodes(accp, n1, h1, l1, e1, s1, n2, h2, l2, e2, s2, key, idx):
    """``R_acc(x + y)`` of two nodes as an acc code. With an inf/NaN among them the sum follows
    IEEE 754 (inf + finite = inf, inf - inf = NaN, NaN propagates), the finite operand's value
    being irrelevant there."""
    if s1 != 0.0 or s2 != 0.0:
        return value_code(accp, f64_bits(s1 + s2), key, idx)
    sn, sh, sl, se, ss = add_parts(n1, h1, l1, e1, n2, h2, l2, e2)
    if sh == _U0 and sl == _U0 and not ss:
        sn = zero_sum_neg(n1, n2, _floor(accp))  # an exact zero sum: IEEE 754 §6.3
    return round_parts(accp, sn, sh, sl, se, ss, False, key, idx)


@jit
def _acc_step(accp, acc, n, h, lo, e, s, key, idx):
    """``R_acc(acc + node)`` for an acc code ``acc``."""
    an, ah, al, ae, asp = _code_node(accp, acc)
    return _add_nodes(accp, an, ah, al, ae, asp, n, h, lo, e, s, key, idx)


@jit
def _nonfinite_dot(a, b):
    """IEEE result of a reduction whose operands include inf/NaN: the double sum of the
    products, which is inf, -inf or NaN exactly as any finite-precision order gives."""
    s = 0.0
    for k in range(a.shape[0]):
        s += bits_f64(a[k]) * bits_f64(b[k])
    return s


@jit
def term_step(order, chunk, idx0, k):
    """The stochastic counter at which term k of a reduction is formed (its product
    rounding): the ordered reductions of :func:`reduce_nodes` interleave one step per term
    and one per accumulation (plus one per chunk sum under chunk:N); the tree and the exact
    sum number the terms first."""
    if order == ORDER_SEQUENTIAL:
        return idx0 + 2 * k
    if order == ORDER_CHUNK:
        return idx0 + 2 * k + k // chunk
    return idx0 + k


@jit
def reduce_pairs(a, b, accp, mulp, use_mul, order, chunk, key, idx0, tmp, sacc):
    """Reduce ``sum_k a[k]·b[k]`` (bits) through the datapath; returns the acc code.

    ``tmp`` (five arrays of length >= K: neg, hi, lo, e, special) receives the product
    nodes, which :func:`reduce_nodes` accumulates; ``sacc`` (int64) is the superaccumulator
    scratch for ``order == EXACT``. ``idx0`` keys stochastic draws (each rounding of this
    reduction uses ``idx0 + step``).
    """
    kk = a.shape[0]
    for k in range(kk):
        if not (_is_finite_bits(a[k]) and _is_finite_bits(b[k])):
            return value_code(accp, f64_bits(_nonfinite_dot(a, b)), key, idx0)
    tn, th, tl, te, ts = tmp
    for k in range(kk):
        tn[k], th[k], tl[k], te[k], ts[k] = _product(a[k], b[k], mulp, use_mul, key,
                                                     term_step(order, chunk, idx0, k))
    return reduce_nodes(tmp, kk, accp, order, chunk, key, idx0, sacc)


@jit
def reduce_nodes(tmp, kk, accp, order, chunk, key, idx0, sacc):
    """Accumulate the ``kk`` term nodes in ``tmp`` (neg, hi, lo, e, special; exact values,
    or the inf/NaN a term rounded to) into acc in ``order``; returns the acc code.

    ``"sequential"``: acc = R_acc(acc + term k), k = 0…K−1; ``"chunk:N"``: sequential within
    chunks of N, each chunk sum added to acc in turn; ``"pairwise"``: adjacent pairs level
    by level, an odd last node carried up; ``"exact"``: one rounding of the exact sum (a zero
    sum is +0 unless rounding toward −inf and some term is not +0, IEEE 754 §6.3). Specials
    follow IEEE 754. The roundings use the stochastic counters of :func:`term_step`'s
    numbering; ``tmp`` is overwritten by the tree.
    """
    tn, th, tl, te, ts = tmp
    step = idx0
    zero = value_code(accp, _U0, key, step)  # +0 in acc
    if order == ORDER_SEQUENTIAL or order == ORDER_CHUNK:
        acc = zero
        csize = kk if order == ORDER_SEQUENTIAL else chunk
        part = zero
        for k in range(kk):
            if k % csize == 0 and k > 0 and order == ORDER_CHUNK:
                pn, ph, pl, pe, ps = _code_node(accp, part)
                acc = _acc_step(accp, acc, pn, ph, pl, pe, ps, key, step)
                step += 1
                part = zero
            step += 1  # the term's own step (term_step)
            if order == ORDER_SEQUENTIAL:
                acc = _acc_step(accp, acc, tn[k], th[k], tl[k], te[k], ts[k], key, step)
            else:
                part = _acc_step(accp, part, tn[k], th[k], tl[k], te[k], ts[k], key, step)
            step += 1
        if order == ORDER_CHUNK and kk > 0:
            pn, ph, pl, pe, ps = _code_node(accp, part)
            acc = _acc_step(accp, acc, pn, ph, pl, pe, ps, key, step)
        return acc
    step += kk  # the terms' own steps
    if order == ORDER_PAIRWISE:
        if kk == 0:
            return zero
        m = kk
        while m > 1:
            nxt = 0
            for j in range(0, m - 1, 2):
                code = _add_nodes(accp, tn[j], th[j], tl[j], te[j], ts[j], tn[j + 1], th[j + 1],
                                  tl[j + 1], te[j + 1], ts[j + 1], key, step)
                step += 1
                tn[nxt], th[nxt], tl[nxt], te[nxt], ts[nxt] = _code_node(accp, code)
                nxt += 1
            if m % 2 == 1:  # the odd last node is carried up unchanged
                tn[nxt], th[nxt], tl[nxt], te[nxt], ts[nxt] = (tn[m - 1], th[m - 1], tl[m - 1],
                                                               te[m - 1], ts[m - 1])
                nxt += 1
            m = nxt
        return _acc_step(accp, zero, tn[0], th[0], tl[0], te[0], ts[0], key, step)
    # ORDER_EXACT: exact sum of all terms, one rounding into acc; terms that rounded to
    # inf/NaN make the IEEE sum of those specials the result. An exact zero sum is the +0
    # accumulator plus the terms added exactly: -0 under rdn unless every term is +0.
    sacc[:] = 0
    special = 0.0
    not_pos0 = False
    for k in range(kk):
        if ts[k] != 0.0:
            special += ts[k]
        else:
            _sacc_add(sacc, tn[k], th[k], tl[k], te[k])
            not_pos0 = not_pos0 or tn[k] or th[k] != _U0 or tl[k] != _U0
    if special != 0.0:
        return value_code(accp, f64_bits(special), key, step)
    n, h, lo, e, s = _sacc_parts(sacc)
    if h == _U0 and lo == _U0 and not s:
        n = zero_sum_neg(False, not_pos0, _floor(accp))
    return round_parts(accp, n, h, lo, e, s, False, key, step)


# superaccumulator: 32-bit digits at exponents SACC_E0 + 32·i, each held in an int64
SACC_E0 = -2304
SACC_N = 144


@jit
def _sacc_add(sacc, neg, h, lo, e):
    """Add ±(h·2^64 + lo)·2^e exactly to the superaccumulator."""
    if h == _U0 and lo == _U0:
        return
    off = e - SACC_E0
    i = off // 32
    sh = off - i * 32
    # split (h:lo) << sh into 32-bit digits starting at digit i (at most 6 digits)
    d0 = lo << np.uint64(sh) if sh else lo
    carry_lo = (lo >> np.uint64(64 - sh)) if sh else _U0
    d1 = ((h << np.uint64(sh)) | carry_lo) if sh else h
    d2 = (h >> np.uint64(64 - sh)) if sh else _U0
    words = (d0 & np.uint64(0xFFFFFFFF), d0 >> np.uint64(32), d1 & np.uint64(0xFFFFFFFF),
             d1 >> np.uint64(32), d2 & np.uint64(0xFFFFFFFF), d2 >> np.uint64(32))
    for j in range(6):
        v = np.int64(words[j])
        sacc[i + j] += -v if neg else v


@jit
def _sacc_parts(sacc):
    """Normalise the superaccumulator and return its value as rounded-ready parts."""
    n = sacc.shape[0]
    carry = np.int64(0)
    for i in range(n):
        v = sacc[i] + carry
        carry = v >> 32  # arithmetic shift: floor division by 2^32
        sacc[i] = v - (carry << 32)
    neg = carry < 0
    if neg:  # negate the two's complement digit string
        c = np.int64(1)
        for i in range(n):
            v = (0xFFFFFFFF - sacc[i]) + c
            c = v >> 32
            sacc[i] = v & 0xFFFFFFFF
    top = -1
    for i in range(n - 1, -1, -1):
        if sacc[i] != 0:
            top = i
            break
    if top < 0:
        return False, _U0, _U0, np.int64(0), False
    lo_i = max(top - 3, 0)
    h = _U0
    lo = _U0
    for i in range(top, lo_i - 1, -1):
        h = (h << np.uint64(32)) | (lo >> np.uint64(32))
        lo = (lo << np.uint64(32)) | np.uint64(sacc[i])
    sticky = False
    for i in range(lo_i):
        if sacc[i] != 0:
            sticky = True
            break
    return neg, h, lo, np.int64(SACC_E0 + 32 * lo_i), sticky


@pjit
def matmul_kernel(a, b, out, accp, mulp, outp, use_mul, order, chunk, key, out_scale):
    """``out[i, j] = R_out(reduce_k a[i, k]·b[k, j])``; a: (M, K) bits, b: (N, K) bits
    (B transposed); prange over rows."""
    m, kk = a.shape
    nn = b.shape[0]
    for i in prange(m):
        tmp = (np.empty(kk + 1, np.bool_), np.empty(kk + 1, np.uint64),
               np.empty(kk + 1, np.uint64), np.empty(kk + 1, np.int64),
               np.empty(kk + 1, np.float64))
        sacc = np.zeros(SACC_N, np.int64)
        for j in range(nn):
            idx0 = (i * nn + j) * (3 * kk + 4)
            acc = reduce_pairs(a[i], b[j], accp, mulp, use_mul, order, chunk, key, idx0, tmp,
                               sacc)
            n, h, lo, e = code_parts(accp, acc)
            if code_is_finite(accp, acc):
                if h == _U0 and lo == _U0:
                    code = value_code(outp, f64_bits(code_value(accp, acc, 0.0)), key, idx0)
                else:
                    code = round_parts(outp, n, h, lo, e, False, False, key, idx0 + 3 * kk + 3)
            else:
                code = value_code(outp, f64_bits(code_value(accp, acc, 0.0)), key, idx0)
            out[i, j] = code_value(outp, code, out_scale)

