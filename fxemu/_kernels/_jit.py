"""The one place that sets Numba flags for every kernel.

``cache=True`` keeps compiled code on disk; ``fastmath`` is never enabled because reassociation
and flush-to-zero change rounding.
"""

from __future__ import annotations

import numba
from numba.core import types
from numba.extending import intrinsic

__all__ = ["bits_f64", "f64_bits", "jit", "pjit"]


def jit(fn):
    """Serial nopython kernel/helper."""
    return numba.njit(cache=True, fastmath=False, nogil=True)(fn)


def pjit(fn):
    """Parallel kernel: ``prange`` loops only over independent outputs."""
    return numba.njit(cache=True, fastmath=False, nogil=True, parallel=True)(fn)


@intrinsic
def f64_bits(typingctx, x):
    """Bit pattern of a float64 as uint64 (a register bitcast, no memory traffic)."""
    sig = types.uint64(types.float64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.uint64))

    return sig, codegen


@intrinsic
def bits_f64(typingctx, b):
    """float64 with the given uint64 bit pattern."""
    sig = types.float64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float64))

    return sig, codegen
