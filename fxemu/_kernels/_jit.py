"""The one place that sets Numba flags for every kernel.

Compiled code is cached on disk (Numba's ``cache=True``, where Numba puts it); ``fastmath`` is
never enabled because reassociation and flush-to-zero change rounding.

Cache validity: Numba stamps a function's cache with the source of the file that defines it
only, so editing a helper (say ``rounding.round_up``) would leave the machine code of its
callers in other files (``convert.py``) stale. Every kernel here is cached instead with
:class:`KernelCache`, whose stamp is Numba's own plus one hash of all kernel sources
(``fxemu/_kernels`` and ``fxemu/nn/_kernels``, :func:`sources_stamp`): an edit to any of them
recompiles every kernel on its next use. It plugs in through Numba's cache-locator classes
(``numba.core.caching._CacheLocator``: the same locations, a wider stamp); a user's
``NUMBA_CACHE_LOCATOR_CLASSES`` still takes precedence, and ``NUMBA_CACHE_DIR`` still moves
the cache.

Numba's OpenMP thread team is started with ``OMP_WAIT_POLICY=PASSIVE`` unless the user set the
variable: idle workers then sleep at once instead of spinning. On a loaded 2-core machine a
spinning or descheduled worker costs a scheduler tick per parallel region (measured: the native
training step 54 ms with the default policy, 12 ms passive, at load 11); unloaded, a passive
wake-up costs microseconds. libgomp reads the variable once, when Numba first loads it, and the
variable is restored right after, so libraries loaded later (PyTorch's own OpenMP) keep their
defaults.
"""

from __future__ import annotations

import hashlib
import os
import types as pytypes
from pathlib import Path
from typing import ClassVar

import numba
from numba.core import types
from numba.core.caching import CompileResultCacheImpl, FunctionCache
from numba.core.compiler_lock import global_compiler_lock
from numba.extending import intrinsic

__all__ = ["KernelCache", "bits_f64", "f64_bits", "jit", "jit_inline", "pjit", "sources_stamp"]

#: the folders whose ``*.py`` files hold every jitted function of fxemu
KERNEL_DIRS = (Path(__file__).resolve().parent,
               Path(__file__).resolve().parent.parent / "nn" / "_kernels")


def sources_stamp(dirs: tuple[Path, ...] = KERNEL_DIRS) -> str:
    """SHA-256 of the names and contents of the ``*.py`` files in ``dirs`` (sorted)."""
    h = hashlib.sha256()
    for d in dirs:
        for path in sorted(d.glob("*.py")):
            h.update(f"{d.name}/{path.name}\0".encode())
            h.update(path.read_bytes())
            h.update(b"\0")
    return h.hexdigest()


_STAMP = sources_stamp()


class _PackageStamp:
    """Locator mixin: Numba's stamp of the defining file, plus every kernel source's."""

    def get_source_stamp(self):
        return (super().get_source_stamp(), _STAMP)


class _KernelCacheImpl(CompileResultCacheImpl):
    _locator_classes: ClassVar[list] = [type(cls.__name__, (_PackageStamp, cls), {})
                                        for cls in CompileResultCacheImpl._locator_classes]


class KernelCache(FunctionCache):
    """Numba's on-disk function cache, stamped with :func:`sources_stamp` as well (see the
    module docstring)."""

    _impl_class = _KernelCacheImpl


def _njit(fn, slp: bool = False, **flags):
    """``numba.njit`` with the house flags, cached by :class:`KernelCache` (what
    ``cache=True`` does, with the wider stamp). ``slp``: compile with LLVM's SLP vectoriser
    (:func:`_with_slp`)."""
    disp = numba.njit(fastmath=False, nogil=True, **flags)(fn)
    disp._cache = KernelCache(disp.py_func)  # Dispatcher.enable_caching, our cache class
    if slp:
        _with_slp(disp)
    return disp


def _with_slp(disp) -> None:
    """Compile ``disp`` with LLVM's SLP vectoriser, which Numba leaves off by default
    (``NUMBA_SLP_VECTORIZE``): it packs isomorphic scalar operations on independent values
    (a tuple of accumulators) into vector instructions. It neither reorders nor contracts
    floating-point operations (no fast-math flags), so results do not change. Numba reads the
    setting when it builds a pass manager, so it is set for this dispatcher's compilations
    only, under Numba's compiler lock."""
    compile_one = disp.compile

    def compile_slp(sig):
        with global_compiler_lock:
            old = numba.core.config.SLP_VECTORIZE
            numba.core.config.SLP_VECTORIZE = 1
            try:
                return compile_one(sig)
            finally:
                numba.core.config.SLP_VECTORIZE = old

    disp.compile = compile_slp


def jit(fn):
    """Serial nopython kernel/helper."""
    return _njit(fn)


def jit_inline(fn):
    """Serial nopython helper inlined into its callers at Numba's IR level."""
    return _njit(fn, inline="always")


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

    def __init__(self, fn, slp: bool = False) -> None:
        self.__wrapped__ = fn
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__
        # a distinct function object, so the two on-disk cache entries never collide
        twin = pytypes.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial",
                                    fn.__defaults__, fn.__closure__)
        twin.__qualname__ = fn.__qualname__ + "_serial"
        twin.__module__ = fn.__module__
        self.serial = _njit(twin, slp)
        self.parallel = _njit(fn, slp, parallel=True)

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


def pjit(fn, slp: bool = False):
    """Parallel kernel: ``prange`` loops only over independent outputs, so the serial and
    parallel versions give identical results (``slp``: see :func:`_with_slp`)."""
    return _Kernel(fn, slp)


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
