"""Numba's on-disk kernel cache sees edits to helpers in other files.

A copy of the package is imported in fresh processes with their own cache directory. The
caller is ``convert.draw``; its helper ``rounding.mix64`` lives in another file. Numba's own
stamp covers only the caller's file, so without fxemu's package-wide stamp the edited helper
would leave ``draw``'s cached machine code stale.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import fxemu

_SCRIPT = """
import json
import numpy as np
from fxemu._kernels import convert, rounding
got = int(convert.draw(np.int64(11), np.uint64(5), np.int64(7), False, np.uint64(0),
                       np.int64(8)))
direct = int(rounding.random_bits(np.uint64(5), np.int64(7)))
s = convert.draw.stats
print(json.dumps([got, direct, sum(s.cache_hits.values()), sum(s.cache_misses.values())]))
"""


def _run(root: Path) -> tuple[int, int, int, int]:
    env = {**os.environ, "PYTHONPATH": str(root), "NUMBA_CACHE_DIR": str(root / "cache")}
    env.pop("NUMBA_CACHE_LOCATOR_CLASSES", None)
    out = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, cwd=root, check=True,
                         capture_output=True, text=True).stdout
    got, direct, hits, misses = json.loads(out.strip().splitlines()[-1])
    return got, direct, hits, misses


def test_editing_a_helper_recompiles_its_callers_in_other_files(tmp_path: Path) -> None:
    shutil.copytree(Path(fxemu.__file__).parent, tmp_path / "fxemu",
                    ignore=shutil.ignore_patterns("__pycache__"))
    first = _run(tmp_path)
    assert first[0] == first[1] and first[2:] == (0, 1)  # compiled, then saved
    again = _run(tmp_path)
    assert again == (first[0], first[1], 1, 0)  # loaded from the cache

    helper = tmp_path / "fxemu" / "_kernels" / "rounding.py"
    text = helper.read_text()
    old = "return z ^ (z >> np.uint64(31))"
    assert text.count(old) == 1
    helper.write_text(text.replace(old, "return z ^ (z >> np.uint64(29))"))
    edited = _run(tmp_path)
    assert edited[0] == edited[1] != first[0]  # the caller runs the edited helper
    assert edited[2:] == (0, 1)  # recompiled, not loaded stale
