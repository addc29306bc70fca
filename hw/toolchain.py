"""The C++ toolchain of the C-simulation: g++ and the vendor type headers in the hls4ml wheel.

Shared by the ``csim`` backend (:mod:`fxemu.hw.csim`) and the vendor-reference tests.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from .._errors import BackendUnavailable, msg

__all__ = ["Toolchain", "find_toolchain", "vendor_include_dirs"]


@dataclass(frozen=True)
class Toolchain:
    """The compiler, its ``--version`` text and the vendor include directories (with a digest
    of every header in them, so that a cache keyed by it notices a new hls4ml)."""

    cxx: str
    version: str
    include_dirs: tuple[Path, ...]
    headers_digest: str

    def compile_cmd(self, src: Path, out: Path, flags: Sequence[str]) -> list[str]:
        """``cxx FLAGS -I<vendor dirs> -c src -o out`` (flags may replace ``-c``, e.g. -shared)."""
        inc = [f"-I{d}" for d in self.include_dirs]
        return [self.cxx, *flags, *inc, "-c", str(src), "-o", str(out)]


def vendor_include_dirs() -> tuple[Path, Path]:
    """``(ap_types, ac_types/include)`` inside the installed hls4ml package.

    Raises :class:`fxemu.BackendUnavailable` when hls4ml or its headers are missing.
    """
    spec = find_spec("hls4ml")
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailable(msg("csim", "needs the 'csim' extra: hls4ml, which ships the "
                                     "ap_fixed/ac_fixed headers, is not installed",
                                     hint="pip install 'fxemu[csim]'"))
    for loc in spec.submodule_search_locations:
        root = Path(loc) / "templates"
        ap = root / "vivado" / "ap_types"
        ac = root / "catapult" / "ac_types" / "include"
        if (ap / "ap_fixed.h").is_file() and (ac / "ac_std_float.h").is_file():
            return ap, ac
    raise BackendUnavailable(msg("hls4ml", "is installed without templates/vivado/ap_types/"
                                 "ap_fixed.h and templates/catapult/ac_types/include/"
                                 "ac_std_float.h"))


@functools.lru_cache(maxsize=8)
def _headers_digest(dirs: tuple[Path, ...]) -> str:
    h = hashlib.sha256()
    for d in dirs:
        for p in sorted(d.rglob("*.h")):
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@functools.lru_cache(maxsize=8)
def _compiler(name: str) -> tuple[str, str]:
    cxx = shutil.which(name)
    if cxx is None:
        raise BackendUnavailable(msg("C++ compiler", "not found", name,
                                     "install g++ or set CXX"))
    proc = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BackendUnavailable(msg("C++ compiler", "--version failed", cxx,
                                     proc.stderr.strip() or None))
    return cxx, proc.stdout.strip()


def find_toolchain() -> Toolchain:
    """The compiler ``$CXX`` (default ``g++``) and the vendor headers.

    Raises :class:`fxemu.BackendUnavailable` naming what is missing.
    """
    cxx, version = _compiler(os.environ.get("CXX", "g++"))
    dirs = vendor_include_dirs()
    return Toolchain(cxx, version, dirs, _headers_digest(dirs))
