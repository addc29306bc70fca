"""The one place that sets Numba flags for every kernel.

``cache=True`` keeps compiled code on disk; ``fastmath`` is never enabled because reassociation
and flush-to-zero change rounding.

Numba's OpenMP thread team is started with ``OMP_WAIT_POLICY=PASSIVE`` unless the user set the
variable: idle workers then sleep at once instead of spinning. On a loaded 2-core machine a
spinning or descheduled worker costs a scheduler tick per parallel region (measured: the native
training step 54 ms with the default policy, 12 ms passive, at load 11); unloaded, a passive
wake-up costs microseconds. libgomp reads the variable once, when Numba first loads it, and the
variable is restored right after, so libraries loaded later (PyTorch's own OpenMP) keep their
defaults.
"""

from __future__ import annotations

import os
import types as pytypes

import numba
from numba.core import types
from numba.extending import intrinsic

__all__ = ["bits_f64", "f64_bits", "jit", "pjit"]


def jit(fn):
    """Serial nopython kernel/helper."""
    return numba.njit(cache=True, fastmath=False, nogil=True)(fn)


PARALLEL_MIN = 1 << 15  # below this many elements a serial kernel is faster
_team_started = False


def _start_team() -> None:
    """Start Numba's thread team with passive waiting (see the module docstring)."""
    global _team_started
    _team_started = True
    key = "OMP_WAIT_POLICY"
    if key in os.environ:
        return
    os.environ[key] = "PASSIVE"
    try:
        from numba.np.ufunc.parallel import _launch_threads

        _launch_threads()  # idempotent; a no-op where another caller already started it
    except ImportError:  # pragma: no cover - a Numba without it starts the team on first use
        pass
    finally:
        del os.environ[key]


class _Kernel:
    """A kernel compiled lazily both serial and parallel; small inputs (the largest array
    argument below :data:`PARALLEL_MIN` elements) run serially, because waking the thread
    team costs more than the work (and much more on a busy machine)."""

    def __init__(self, fn) -> None:
        self.__wrapped__ = fn
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__
        # a distinct function object, so the two on-disk cache entries never collide
        twin = pytypes.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial",
                                    fn.__defaults__, fn.__closure__)
        twin.__qualname__ = fn.__qualname__ + "_serial"
        twin.__module__ = fn.__module__
        self.serial = numba.njit(cache=True, fastmath=False, nogil=True)(twin)
        self.parallel = numba.njit(cache=True, fastmath=False, nogil=True, parallel=True)(fn)

    def __call__(self, *args):
        size = None
        for a in args:  # a plain loop: this runs on every kernel call
            n = getattr(a, "size", None)
            if n is not None and (size is None or n > size):
                size = n
        if size is not None and size < PARALLEL_MIN:
            return self.serial(*args)
        if not _team_started:
            _start_team()
        return self.parallel(*args)


def pjit(fn):
    """Parallel kernel: ``prange`` loops only over independent outputs, so the serial and
    parallel versions give identical results."""
    return _Kernel(fn)


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
