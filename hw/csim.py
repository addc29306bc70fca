"""C-simulation of the training-step kernel: g++ builds it into a shared library, ctypes runs it.

:func:`build` writes the header generated from the policy (:func:`fxemu.hw.codegen.
policy_header`) next to the kernel sources and compiles them with g++ against the vendor type
headers of the hls4ml wheel (:mod:`fxemu.hw.toolchain`). The library is cached under
``$FXEMU_CACHE_DIR`` (default ``~/.cache/fxemu/csim``) by a hash of the sources, the generated
header, the flags, the compiler's version and the vendor headers: a change to any of them
builds a new library, an unchanged one is reused. :class:`CsimKernel` loads a library through a
fresh uniquely named copy (so a rebuilt library at the same path is never confused with one
already loaded) and calls the kernel with integer codes only.

Files: every build runs in a fresh private folder (``tempfile.mkdtemp``: created exclusively,
mode 0700, so no link can be planted in it) and its results are renamed into the cache, which
replaces whatever sits at the name (a planted symlink included) without writing through it.
Each object, library and test bench gets a ``.sha256`` file recorded at build time; a cached
file is reused only if it is a regular file owned by this user whose content has that hash,
else it is rebuilt, and :class:`CsimKernel` checks the hash of the very bytes it loads. The
cache folder and its build folders must be owned by this user and writable by no one else
(:class:`UnsafeCache` otherwise): code in a folder others can write is never loaded.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import stat
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

__all__ = ["CXX_FLAGS", "KERNEL_DIR", "BuildError", "CsimKernel", "UnsafeCache", "build",
           "build_testbench", "cache_dir"]

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


class UnsafeCache(BuildError):
    """The build cache is a folder another user owns or can write: its objects are not
    trusted (and nothing is built into it)."""


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


def _private_dir(path: Path, *, follow: bool) -> Path:
    """``path`` created (mode 0700) if missing, then checked: a folder owned by this user and
    writable by no one else (``follow=False``: not a symbolic link either)."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.stat(path) if follow else os.lstat(path)
    except OSError as e:
        raise BuildError(msg(f"csim cache {path}", "cannot be created",
                             e.strerror or str(e))) from None
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeCache(msg(f"csim cache {path}", "is not a folder (a link or a file)"))
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise UnsafeCache(msg(f"csim cache {path}", "is owned by another user; its objects "
                              "are not trusted", st.st_uid,
                              "set FXEMU_CACHE_DIR to a folder of your own"))
    if st.st_mode & 0o022:
        raise UnsafeCache(msg(f"csim cache {path}", "is writable by other users; its objects "
                              "are not trusted", oct(stat.S_IMODE(st.st_mode)),
                              f"chmod go-w {path}, or set FXEMU_CACHE_DIR"))
    return path


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _trusted(path: Path) -> bool:
    """``path`` is a regular file of this user whose content has the hash recorded when it was
    built (anything else — missing, a link, another owner, edited, truncated — is rebuilt)."""
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != os.getuid()):
            return False
        want = _sidecar(path).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return False
    return want == _digest(path)


def _install(tmp: Path, work: Path, names: tuple[str, ...], digest: str | None = None) -> None:
    """Rename ``tmp/NAME`` onto ``work/NAME`` for each name (the rename replaces a planted
    link instead of writing through it); ``digest``: the built file installed last, with its
    hash recorded beside it (``NAME.sha256``, written in ``tmp`` and renamed after it)."""
    if digest is not None:
        (tmp / (digest + ".sha256")).write_text(_digest(tmp / digest) + "\n")
        names = (*names, digest, digest + ".sha256")
    for name in names:
        os.replace(tmp / name, work / name)


def _stage(tmp: Path, src: Path, header: str) -> None:
    """The kernel's sources and the generated header, written into the private folder."""
    for name in _SOURCES:
        shutil.copyfile(src / name, tmp / name)
    (tmp / "fxemu_policy.h").write_text(header)


def _prepare(policy: Policy, cache: Path | None, sources: Path | None,
             flags: tuple[str, ...]) -> tuple[Toolchain, Path, Path, str]:
    header = policy_header(policy)  # refuses a policy the datapath cannot run, before g++
    tc = find_toolchain()
    src = Path(sources) if sources is not None else KERNEL_DIR
    root = _private_dir(Path(cache) if cache is not None else cache_dir(), follow=True)
    work = _private_dir(root / f"train_step-{_key(tc, header, flags, src)}", follow=False)
    if not _trusted(work / "train_step.o"):
        with tempfile.TemporaryDirectory(prefix=".build-", dir=work) as d:
            tmp = Path(d)
            _stage(tmp, src, header)
            _run(tc.compile_cmd(tmp / "train_step.cpp", tmp / "train_step.o", flags), tmp)
            _install(tmp, work, (*_SOURCES, "fxemu_policy.h"), digest="train_step.o")
    return tc, work, src, header


def build(policy: Policy, *, cache: Path | str | None = None, sources: Path | str | None = None,
          flags: tuple[str, ...] = CXX_FLAGS) -> Path:
    """The shared library of the kernel typed by ``policy`` (built now unless cached).

    Raises ``ValueError`` for a policy the datapath cannot run exactly (before compiling),
    :class:`fxemu.BackendUnavailable` without g++ or the vendor headers,
    :class:`BuildError` with the compiler's message when the sources do not compile, and
    :class:`UnsafeCache` for a cache folder another user owns or can write.
    ``sources`` replaces the kernel folder (tests use it for edited sources).
    """
    with _LOCK:
        prep = _prepare(policy, cache, sources, tuple(flags))
        return _link(prep, "csim_api.cpp", "libfxemu_train_step.so", flags, shared=True)


def build_testbench(policy: Policy, *, cache: Path | str | None = None,
                    flags: tuple[str, ...] = CXX_FLAGS) -> Path:
    """The self-checking test bench ``tb_train_step`` linked with the kernel for ``policy``
    (run it as ``tb_train_step GOLDEN_FILE``; it exits non-zero on a mismatch)."""
    with _LOCK:
        prep = _prepare(policy, cache, None, tuple(flags))
        return _link(prep, "tb_train_step.cpp", "tb_train_step", flags, shared=False)


def _link(prep: tuple[Toolchain, Path, Path, str], source: str, target: str,
          flags: tuple[str, ...], *, shared: bool) -> Path:
    """``work/target``: ``source`` compiled and linked with the kernel object (unless a
    trusted one is already there), built in a private folder and renamed into the cache, so a
    concurrent reader never sees a partial file."""
    tc, work, src, header = prep
    out = work / target
    if not _trusted(out):
        with tempfile.TemporaryDirectory(prefix=".build-", dir=work) as d:
            tmp = Path(d)
            _stage(tmp, src, header)
            obj = tmp / f"{Path(source).stem}.o"
            kernel = tmp / "train_step.o"
            shutil.copyfile(work / "train_step.o", kernel)
            if _digest(kernel) != _sidecar(work / "train_step.o").read_text().strip():
                raise BuildError(msg(f"csim object {work / 'train_step.o'}",
                                     "changed while linking; run again"))
            _run(tc.compile_cmd(tmp / source, obj, flags), tmp)
            _run([tc.cxx, *(["-shared"] if shared else []), str(kernel), str(obj),
                  "-o", str(tmp / target)], tmp)
            _install(tmp, work, (), digest=target)
    return out


_U64P = ctypes.POINTER(ctypes.c_uint64)
_ERRORS = {1: "op must be 0 (forward) or 1 (backward+update)",
           2: f"n must be in 1..{layout.BATCH_MAX}"}


def _index_in(v: object, allowed: tuple[int, ...] | range) -> bool:
    """``v`` is an integer (Python or numpy, not a bool) with a value in ``allowed``."""
    if isinstance(v, bool | np.bool_) or not isinstance(v, int | np.integer):
        return False
    return int(v) in allowed


class CsimKernel:
    """The kernel of a library built by :func:`build`, loaded through ctypes.

    The library is copied to a fresh, uniquely named file before ``dlopen`` (and the copy
    removed once mapped), so loading a rebuilt library never returns the old one, and two
    kernels never share state. Where :func:`build` recorded the library's hash beside it, the
    copy must have that hash (``RuntimeError`` otherwise): the bytes loaded are the bytes
    built. The kernel keeps its on-chip buffers in static storage, as the
    HLS design does: calls on one kernel are serialised by a lock.
    """

    def __init__(self, path: Path | str) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(msg("csim library", "not found", str(path)))
        want = None
        if _sidecar(path).is_file():
            want = _sidecar(path).read_text().strip()
        fd, tmp = tempfile.mkstemp(prefix="fxemu_csim_", suffix=".so")
        try:
            with os.fdopen(fd, "wb") as f, open(path, "rb") as g:
                shutil.copyfileobj(g, f)
            if want is not None and _digest(Path(tmp)) != want:
                raise RuntimeError(msg(f"csim library {path}", "does not have the hash recorded "
                                       "when it was built", hint="build it again"))
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
        # op and n are uint32 in C (a larger value would wrap): checked here, exactly
        if not _index_in(op, (layout.OP_FORWARD, layout.OP_BACKWARD_UPDATE)):
            raise ValueError(msg("csim kernel", _ERRORS[1], (op, n)))
        if not _index_in(n, range(1, layout.BATCH_MAX + 1)):
            raise ValueError(msg("csim kernel", _ERRORS[2], (op, n)))
        op, n = int(op), int(n)
        if isinstance(lr, bool) or not isinstance(lr, int | float | np.floating) \
                or not layout.LR_MIN <= float(lr) < layout.LR_MAX:
            raise ValueError(msg("csim kernel lr", "must be in [2^-64, 256) (the kernel's lr_t "
                                 "holds it exactly there)", lr))
        arrays = {"x": x, "params": params, "logits": logits, "dlogits": dlogits,
                  "cache": cache}
        ptrs = []
        for name, a in arrays.items():
            if not isinstance(a, np.ndarray) or a.dtype != np.uint64 \
                    or not a.flags.c_contiguous:
                raise TypeError(msg(f"csim buffer {name}", "must be a C-contiguous uint64 array",
                                    getattr(a, "dtype", type(a).__name__)))
            if a.size < layout.buffer_words(name, n):
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
