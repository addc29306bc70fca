"""Every integer mode code and kernel constant, in one place (kernels see only these numbers).

:mod:`fxemu.lowering` maps the format enums onto them; the kernels compare against them.
"""

from __future__ import annotations

# Rounding of a value in sign-magnitude form (see :func:`fxemu._kernels.rounding.round_up`)
FLOOR = 0  # toward -inf (ap TRN, float RDN)
CEIL = 1  # toward +inf (float RUP)
TO_ZERO = 2  # ap TRN_ZERO, float RTZ
HALF_UP = 3  # nearest, ties toward +inf (ap RND)
HALF_ZERO = 4  # nearest, ties toward 0 (ap RND_ZERO)
HALF_DOWN = 5  # nearest, ties toward -inf (ap RND_MIN_INF)
HALF_AWAY = 6  # nearest, ties away from 0 (ap RND_INF, float RNA)
HALF_EVEN = 7  # nearest, ties to even (ap RND_CONV, float RNE)
HALF_ODD = 8  # nearest, ties to odd (ac RND_CONV_ODD)
TO_ODD = 9  # inexact results take the odd neighbour (float RTO)
STOCH_TC = 10  # stochastic on the two's complement value (fixed datapath)
STOCH_SM = 11  # stochastic on the magnitude (float datapath)
AWAY = 12  # inexact results take the neighbour away from 0 (fixed TRN_AWAY, float TO_AWAY)
JAM_TC = 13  # two's complement floor, then LSB := 1, exact values too (APyTypes fixed JAM)
JAM_SM = 14  # magnitude truncated, then LSB := 1, exact nonzero values too (float JAM)
MAG_TC = 15  # two's complement floor plus one LSB for negatives (APyTypes TRN_MAG)
# stochastic on the magnitude with the residue first rounded to sr_bits bits (gfloat Stochastic,
# StochasticOdd) or half an LSB of the draw added (gfloat StochasticFast, pychop stochastic_b)
STOCH_SM_RNE = 16
STOCH_SM_RNO = 17
STOCH_SM_HALF = 18

# Fixed overflow
O_SAT = 0
O_SAT_ZERO = 1
O_SAT_SYM = 2
O_WRAP = 3
O_WRAP_SM = 4

# Float special-value policies
S_IEEE = 0
S_FN = 1
S_FNUZ = 2
S_NONE = 3
S_FNUZ_INF = 4  # NaN at the code of -0, +-inf at the all-ones magnitude (P3109 signed extended)
S_FN_INF = 5  # NaN at the all-ones magnitude, inf just below it (P3109 unsigned extended)

# Kind of a format vector (:class:`fxemu._kernels.params.FormatVec`)
KIND_FIXED = 0
KIND_FLOAT = 1

# Mac summation orders
ORDER_SEQUENTIAL = 0
ORDER_PAIRWISE = 1
ORDER_CHUNK = 2
ORDER_EXACT = 3

# Elementwise operations
OP_ADD = 0
OP_SUB = 1
OP_MUL = 2
OP_FMA = 3

#: random bits added below the kept LSB by stochastic rounding unless the caller says otherwise
DEFAULT_SR_BITS = 62
#: the largest chunk size of ``order="chunk:N"`` (any C++ ``int`` holds it)
MAX_CHUNK = 2**31 - 1
