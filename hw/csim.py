"""C-simulation of the training-step kernel: g++ builds it into a shared library, ctypes runs it.

:func:`build` writes the header generated from the policy (:func:`fxemu.hw.codegen.
policy_header`) next to the kernel sources and compiles them with g++ against the vendor type
headers of the hls4ml wheel (:mod:`fxemu.hw.toolchain`). The library is cached under
``$FXEMU_CACHE_DIR`` (default ``~/.cache/fxemu/csim``) by a hash of the sources, the generated
header, the flags, the compiler's version and the vendor headers: a change to any of them
builds a new library, an unchanged one is reused. :class:`CsimKernel` loads a library through a
fresh uniquely named copy (so a rebuilt library at the same path is never confused with one
already loaded) and calls the kernel with integer codes only.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

from .._errors import msg
from ..policy import Policy
from . import layout
from .codegen import policy_header
from .toolchain import Toolchain, find_toolchain

__all__ = ["CXX_FLAGS", "KERNEL_DIR", "BuildError", "CsimKernel", "build", "build_testbench",
           "cache_dir"]

#: The kernel's sources (shipped as package data).
KERNEL_DIR = Path(__file__).resolve().parent / "kernels" / "train_step"
_SOURCES = ("fxemu_dp.hpp", "train_step.hpp", "train_step.cpp", "csim_api.cpp",
            "tb_train_step.cpp")

#: -O3: measured with the test bench (g++ 12, 2 steps of batch 32, CPU time): fixed16 0.47 s
#: at -O3, 0.52 s at -O2, 0.50 s at -O1; fw16bw16 0.64 s at -O3, 1.37 s at -O2, 1.49 s at -O1
#: (ac_std_float's fma inlines only at -O3). No -ffast-math: the vendor headers compute with
#: host doubles in places, and reassociation would change their roundings. -w: the vendor
#: headers warn a lot.
CXX_FLAGS = ("-std=c++14", "-O3", "-fPIC", "-w")

_LOCK = threading.Lock()


class BuildError(RuntimeError):
    """The kernel did not compile; the message holds the command and the compiler's output."""


def cache_dir() -> Path:
    """``$FXEMU_CACHE_DIR``, else ``~/.cache/fxemu/csim`` (under ``$XDG_CACHE_HOME`` if set)."""
    env = os.environ.get("FXEMU_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "fxemu" / "csim"


def _key(tc: Toolchain, header: str, flags: tuple[str, ...], sources: Path) -> str:
    h = hashlib.sha256()
    for part in (tc.version, tc.headers_digest, " ".join(flags), header):
        h.update(part.encode())
        h.update(b"\0")
    for name in _SOURCES:
        h.update(name.encode())
        h.update((sources / name).read_bytes())
    return h.hexdigest()[:20]


def _run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).strip()
        if len(out) > 20000:
            out = out[:10000] + "\n[...]\n" + out[-10000:]
        raise BuildError(f"csim build failed ({proc.returncode}): {' '.join(cmd)}\n{out}")


def _prepare(policy: Policy, cache: Path | None, sources: Path | None,
             flags: tuple[str, ...]) -> tuple[Toolchain, Path, Path]:
    header = policy_header(policy)  # refuses a policy the datapath cannot run, before g++
    tc = find_toolchain()
    src = Path(sources) if sources is not None else KERNEL_DIR
    root = Path(cache) if cache is not None else cache_dir()
    work = root / f"train_step-{_key(tc, header, flags, src)}"
    if not (work / "train_step.o").is_file():
        work.mkdir(parents=True, exist_ok=True)
        for name in _SOURCES:
            shutil.copyfile(src / name, work / name)
        (work / "fxemu_policy.h").write_text(header)
        tmp = work / f".train_step.{os.getpid()}.{threading.get_ident()}.o"
        _run(tc.compile_cmd(work / "train_step.cpp", tmp, flags), work)
        os.replace(tmp, work / "train_step.o")
    return tc, work, src


def build(policy: Policy, *, cache: Path | str | None = None, sources: Path | str | None = None,
          flags: tuple[str, ...] = CXX_FLAGS) -> Path:
    """The shared library of the kernel typed by ``policy`` (built now unless cached).

    Raises ``ValueError`` for a policy the datapath cannot run exactly (before compiling),
    :class:`fxemu.BackendUnavailable` without g++ or the vendor headers, and
    :class:`BuildError` with the compiler's message when the sources do not compile.
    ``sources`` replaces the kernel folder (tests use it for edited sources).
    """
    with _LOCK:
        tc, work, _ = _prepare(policy, cache, sources, tuple(flags))
        return _link(tc, work, "csim_api.cpp", "libfxemu_train_step.so", flags, shared=True)


def build_testbench(policy: Policy, *, cache: Path | str | None = None,
                    flags: tuple[str, ...] = CXX_FLAGS) -> Path:
    """The self-checking test bench ``tb_train_step`` linked with the kernel for ``policy``
    (run it as ``tb_train_step GOLDEN_FILE``; it exits non-zero on a mismatch)."""
    with _LOCK:
        tc, work, _ = _prepare(policy, cache, None, tuple(flags))
        return _link(tc, work, "tb_train_step.cpp", "tb_train_step", flags, shared=False)


def _link(tc, work: Path, source: str, target: str, flags: tuple[str, ...], *,
          shared: bool) -> Path:
    """``work/target``: ``source`` compiled and linked with the kernel object (unless already
    there), written under a temporary name and renamed, so a concurrent reader never sees a
    partial file."""
    out = work / target
    if not out.is_file():
        tag = f"{os.getpid()}.{threading.get_ident()}"
        obj = work / f".{Path(source).stem}.{tag}.o"
        _run(tc.compile_cmd(work / source, obj, flags), work)
        tmp = work / f".{target}.{tag}"
        _run([tc.cxx, *(["-shared"] if shared else []), str(work / "train_step.o"), str(obj),
              "-o", str(tmp)], work)
        os.replace(tmp, out)
        obj.unlink(missing_ok=True)
    return out


_U64P = ctypes.POINTER(ctypes.c_uint64)
_ERRORS = {1: "op must be 0 (forward) or 1 (backward+update)",
           2: f"n must be in 1..{layout.BATCH_MAX}"}


class CsimKernel:
    """The kernel of a library built by :func:`build`, loaded through ctypes.

    The library is copied to a fresh, uniquely named file before ``dlopen`` (and the copy
    removed once mapped), so loading a rebuilt library never returns the old one, and two
    kernels never share state. The kernel keeps its on-chip buffers in static storage, as the
    HLS design does: calls on one kernel are serialised by a lock.
    """

    def __init__(self, path: Path | str) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(msg("csim library", "not found", str(path)))
        fd, tmp = tempfile.mkstemp(prefix="fxemu_csim_", suffix=".so")
        os.close(fd)
        try:
            shutil.copyfile(path, tmp)
            self._lib = ctypes.CDLL(tmp)
        finally:
            os.unlink(tmp)
        self.path = path
        self._lock = threading.Lock()
        f = self._lib.fxemu_csim_run
        f.restype = ctypes.c_int
        f.argtypes = [ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint64] + [_U64P] * 5
        self._run = f
        lay = self._lib.fxemu_csim_layout
        lay.restype = ctypes.c_long
        lay.argtypes = [ctypes.c_int]
        want = (layout.IMAGE_WORDS, layout.CLASSES, layout.PARAM_WORDS, layout.BATCH_MAX,
                layout.CACHE_WORDS_PER_SAMPLE)
        got = tuple(lay(i) for i in range(len(want)))
        if got != want:
            raise RuntimeError(msg(f"csim library {path}", "was built with another layout",
                                   got, f"fxemu.hw.layout has {want}"))

    def run(self, op: int, n: int, lr: float, x: np.ndarray, params: np.ndarray,
            logits: np.ndarray, dlogits: np.ndarray, cache: np.ndarray) -> None:
        """Call the top function (arguments as in ``train_step.hpp``; arrays C-contiguous
        uint64 of at least the sizes :func:`fxemu.hw.layout.buffer_words` gives for n)."""
        arrays = {"x": x, "params": params, "logits": logits, "dlogits": dlogits,
                  "cache": cache}
        ptrs = []
        for name, a in arrays.items():
            if not isinstance(a, np.ndarray) or a.dtype != np.uint64 \
                    or not a.flags.c_contiguous:
                raise TypeError(msg(f"csim buffer {name}", "must be a C-contiguous uint64 array",
                                    getattr(a, "dtype", type(a).__name__)))
            if 1 <= n <= layout.BATCH_MAX and a.size < layout.buffer_words(name, n):
                raise ValueError(msg(f"csim buffer {name}", f"needs "
                                     f"{layout.buffer_words(name, n)} words for n={n}", a.size))
            if name in ("params", "logits", "cache") and not a.flags.writeable:
                raise ValueError(msg(f"csim buffer {name}", "must be writeable"))
            ptrs.append(a.ctypes.data_as(_U64P))
        lr_bits = int(np.array(float(lr), np.float64).view(np.uint64))
        with self._lock:
            rc = self._run(int(op), int(n), lr_bits, *ptrs)
        if rc:
            raise ValueError(msg("csim kernel", _ERRORS.get(rc, f"error {rc}"), (op, n)))
