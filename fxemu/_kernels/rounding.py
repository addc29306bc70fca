"""Rounding decisions shared by the fixed and float kernels, and the stochastic-rounding RNG.

A value to be rounded is given in sign-magnitude form: ``neg`` and the magnitude
``q + f`` with ``q`` the integer part (in units of the kept LSB) and ``f`` the fraction, held as
``r64`` (the top 64 fraction bits) plus ``sticky`` (any lower bit set). :func:`round_up` says
whether the *magnitude* is rounded up to ``q + 1``; every mode below is defined on the signed
value and translated to the magnitude here, so one function serves both datapaths.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit
from .codes import (
    AWAY,
    CEIL,
    FLOOR,
    HALF_AWAY,
    HALF_DOWN,
    HALF_EVEN,
    HALF_UP,
    HALF_ZERO,
    JAM_SM,
    JAM_TC,
    MAG_TC,
    STOCH_SM,
    STOCH_SM_HALF,
    STOCH_SM_RNE,
    STOCH_SM_RNO,
    STOCH_TC,
    TO_ODD,
    TO_ZERO,
)

_HALF = np.uint64(1 << 63)
_ZERO = np.uint64(0)
_ONE = np.uint64(1)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


@jit
def mix64(z):
    """SplitMix64 finaliser: a bijective 64-bit mix (counter-based RNG building block)."""
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@jit
def random_bits(key, index):
    """64 random bits for element ``index`` under stream ``key`` (pure function of both)."""
    return mix64(key ^ mix64(np.uint64(index)))


@jit
def is_stochastic(mode):
    """Whether rounding mode ``mode`` draws random bits."""
    return mode == STOCH_TC or mode == STOCH_SM or (STOCH_SM_RNE <= mode <= STOCH_SM_HALF)


@jit
def round_up(mode, neg, q, r64, sticky, sr_bits, rnd):
    """Whether the magnitude ``q + f`` rounds up to ``q + 1`` (see module docstring).

    ``sr_bits`` (1..62) and ``rnd`` (64 random bits) are used only by the stochastic modes:
    the fraction is truncated to ``sr_bits`` bits and ``sr_bits`` random bits are added below
    the kept LSB; a carry rounds up. ``STOCH_TC`` does this on the two's complement value, so for
    negative values the magnitude rounds up when the random draw is below the fraction rounded
    up to ``sr_bits`` bits.

    ``JAM_SM`` sets the LSB of every nonzero magnitude, exact or not (up when ``q`` is even);
    ``JAM_TC`` and ``MAG_TC`` act on the two's complement floor, so an *exact* negative value
    may step its magnitude *down* — that case is :func:`exact_step_down`, not this function.
    """
    if mode == JAM_SM:
        return (q & _ONE) == _ZERO and (q != _ZERO or r64 != _ZERO or sticky)
    if mode == JAM_TC:
        # floor(v) | 1: exact positives (0 included) and every inexact value are up when q is
        # even; exact negatives are exact_step_down's
        return (q & _ONE) == _ZERO and (not neg or r64 != _ZERO or sticky)
    if r64 == _ZERO and not sticky:
        return False
    if mode == AWAY:
        return True
    if mode == MAG_TC:
        return False  # inexact: floor(v) + [v < 0] is the truncation toward 0
    if mode == FLOOR:
        return neg
    if mode == CEIL:
        return not neg
    if mode == TO_ZERO:
        return False
    if mode == TO_ODD:
        return (q & _ONE) == _ZERO
    if mode == STOCH_SM_HALF:  # up when residue + (draw + 1/2)·2^-r >= 1, on r + 1 bits
        sh = np.uint64(63 - sr_bits)
        frac = r64 >> sh
        draw = rnd >> np.uint64(64 - sr_bits)
        return frac + (draw << _ONE) + _ONE >= (_ONE << np.uint64(sr_bits + 1))
    if mode == STOCH_SM_RNE or mode == STOCH_SM_RNO:  # the residue rounded to r bits first
        sh = np.uint64(64 - sr_bits)
        frac = r64 >> sh
        rem = r64 & ((_ONE << sh) - _ONE)
        half = _ONE << (sh - _ONE)
        if rem > half or (rem == half and sticky):
            frac += _ONE
        elif rem == half:
            odd = (frac & _ONE) == _ONE
            if odd == (mode == STOCH_SM_RNE):
                frac += _ONE
        draw = rnd >> sh
        return frac + draw >= (_ONE << np.uint64(sr_bits))
    if mode == STOCH_TC or mode == STOCH_SM:
        sh = np.uint64(64 - sr_bits)
        frac = r64 >> sh
        draw = rnd >> sh
        if mode == STOCH_TC and neg:
            if sticky or (r64 & ((_ONE << sh) - _ONE)) != _ZERO:
                frac += _ONE
            return draw < frac
        return frac + draw >= (_ONE << np.uint64(sr_bits))
    gt = r64 > _HALF or (r64 == _HALF and sticky)
    if gt:
        return True
    if r64 != _HALF or sticky:
        return False
    # exact tie
    if mode == HALF_UP:
        return not neg
    if mode == HALF_DOWN:
        return neg
    if mode == HALF_ZERO:
        return False
    if mode == HALF_AWAY:
        return True
    if mode == HALF_EVEN:
        return (q & _ONE) == _ONE
    return (q & _ONE) == _ZERO  # HALF_ODD


@jit
def exact_step_down(mode, neg, nonzero, q, inexact):
    """Whether an *exact* negative fixed value ``-q`` (``nonzero``: q > 0, q holding its low 64
    bits) steps its magnitude down to ``q - 1`` (the two's complement modes): ``MAG_TC``
    always (floor + 1), ``JAM_TC`` when ``q`` is even (``-q | 1 = -(q - 1)``)."""
    if inexact or not neg or not nonzero:
        return False
    if mode == MAG_TC:
        return True
    return mode == JAM_TC and (q & _ONE) == _ZERO
