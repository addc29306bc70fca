"""The one place that sets Numba flags for every kernel.

``cache=True`` keeps compiled code on disk; ``fastmath`` is never enabled because reassociation
and flush-to-zero change rounding.
"""

from __future__ import annotations

import numba

__all__ = ["jit", "pjit"]


def jit(fn):
    """Serial nopython kernel/helper."""
    return numba.njit(cache=True, fastmath=False, nogil=True)(fn)


def pjit(fn):
    """Parallel kernel: ``prange`` loops only over independent outputs."""
    return numba.njit(cache=True, fastmath=False, nogil=True, parallel=True)(fn)
