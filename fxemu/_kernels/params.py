"""The typed kernel-parameter objects: one per kind, built (and cached) by :mod:`fxemu.lowering`.

They are NamedTuples of fixed numpy scalar types, so Numba types each kind once (a kernel
compiles once per kind, whatever the format) and its on-disk cache keys on that type. No
Numba import here: building one needs numpy only.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class FixedParams(NamedTuple):
    """A fixed format for the conversion kernels (value = integer × 2^-frac).

    ``fast``: the branch-free kernel applies (then ``si`` = 2^F, ``lo``/``hi`` the integer
    limits, ``off``/``span`` the wrap offset and 2^W, ``tiny`` the smallest magnitude it
    reads as the vendor does); otherwise every element takes the exact path."""

    width: np.int64
    frac: np.int64
    signed: bool
    qmode: np.int64
    omode: np.int64
    nsat: np.int64
    lib_ac: bool
    ac_shift: np.int64
    scale: np.float64
    mask: np.uint64
    fast: bool
    si: np.float64
    lo: np.float64
    hi: np.float64
    off: np.float64
    span: np.float64
    tiny: np.float64


class FloatParams(NamedTuple):
    """A float format for the conversion kernels: magnitude codes of max, NaN and inf, the
    special policy, rounding, and the fast path's parameters (``k`` = 52 - M, the double bit
    patterns ``minnorm``/``maxbits`` bounding it), ``sat_inf`` (±inf inputs saturate too),
    ``unsigned`` (no sign bit: ``sign_bit`` is 0) and ``zoff`` (1 for a format without zero:
    the other fields describe it with one more binade below, codes one higher), ``code_par``
    (ties and round-to-odd read the code's parity at M = 0, IEEE P3109's rule);
    ``subfast``: the fast path also rounds results in the subnormal range, on the grid of
    ``subq`` = 2^(emin - M) (``subs`` = 1/subq; see
    :func:`fxemu._kernels.convert.float_fast_value`)."""

    mbits: np.int64
    emin: np.int64
    max_code: np.uint64
    nan_code: np.uint64
    inf_code: np.uint64
    special: np.int64
    subn: bool
    overflow_sat: bool
    qmode: np.int64
    sign_bit: np.uint64
    bias: np.int64
    fast: bool
    k: np.int64
    minnorm: np.uint64
    maxbits: np.uint64
    fnuz: bool
    sat_inf: bool
    unsigned: bool
    zoff: np.uint64
    code_par: bool
    subfast: bool
    subs: np.float64
    subq: np.float64


class FormatVec(NamedTuple):
    """Any format for the exact arithmetic engine (:mod:`fxemu._kernels.fmt`), every field an
    int64 so kernels index it as ``p[i]`` (a Numba ``NamedUniTuple``).

    Fixed: (kind 0, W, F, signed, rounding, overflow, sat bits, 0, sr bits, 0, 0, 0); float:
    (kind 1, W, M, emin, rounding, special, subnormals | code_ties << 1,
    overflow (0 inf, 1 sat, 2 sat_finite),
    sr bits, max code, NaN code, inf code)."""

    kind: np.int64
    width: np.int64
    bits: np.int64
    signed_or_emin: np.int64
    qmode: np.int64
    omode_or_special: np.int64
    nsat_or_subn: np.int64
    overflow_sat: np.int64
    sr_bits: np.int64
    max_code: np.int64
    nan_code: np.int64
    inf_code: np.int64


#: the slow-path format vector of a datapath that never takes the slow path
NO_VEC = FormatVec(*(np.int64(0),) * 12)


class BlockParams(NamedTuple):
    """A block format for :mod:`fxemu._kernels.block` (the element and scale formats travel
    beside it as :class:`FormatVec` int64 arrays ``ev`` and ``sv``: Numba's parfor lowering
    takes no tuple nested in a tuple into a prange loop): element codes two's complement,
    ``sm`` converting to sign | magnitude; the block size ``k``; the scale: ``pow2`` (E8M0:
    exponent ``floor(log2 amax) - emax_elem``, plus one under ``nosat`` when
    ``amax > elem_max·2^s``) or a float scale clamped to [``scale_tiny``, ``scale_max``];
    ``elem_nan``/``scale_nan`` the codes of a block holding NaN or inf; ``elem_step`` the
    value of a fixed element's LSB (0 for floats)."""

    k: np.int64
    pow2: bool
    emax_elem: np.int64
    nosat: bool
    elem_max: np.float64
    sm: bool
    scale_tiny: np.float64
    scale_max: np.float64
    elem_nan: np.uint64
    scale_nan: np.uint64
    elem_step: np.float64
    # the MX element path (:func:`fxemu._kernels.block.mx_convert`; float elements, E8M0
    # scale, deterministic rounding): x·2^-s rounded by integer arithmetic on the double's
    # bits; ``eq`` the rounding mode, ``embits``/``esh`` the element's mantissa bits and
    # 52 - embits, ``eemin`` its smallest normal exponent, ``emaxmag`` the magnitude code of
    # its max, ``esign`` its sign bit, ``efnuz`` (no -0 code), ``esat`` (overflow saturates;
    # otherwise an overflowing element takes the exact path), ``esubn`` (subnormals; without
    # them an element below the smallest normal takes the exact path)
    fast: bool
    eq: np.int64
    embits: np.int64
    esh: np.int64
    eemin: np.int64
    emaxmag: np.uint64
    esign: np.uint64
    efnuz: bool
    esat: bool
    esubn: bool
