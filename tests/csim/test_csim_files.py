"""The C-simulation build cache's files: private build folders, renames that replace planted
links, a content hash recorded at build time and checked before reuse and at load, and no
trust in a cache folder another user owns or can write."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from fxemu.hw import csim as hwcsim
from fxemu.hw import layout

from fxemu.policy import PRESETS

FAST = ("-std=c++14", "-O0", "-fPIC", "-w")  # unoptimised: these tests test files, not speed
POLICY = PRESETS["fixed16"]


@pytest.fixture(scope="module")
def built(toolchain_ok: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A library built once into a fresh cache (its folder is the module's build folder)."""
    cache = tmp_path_factory.mktemp("cache")
    return hwcsim.build(POLICY, cache=cache, flags=FAST)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _forward(kernel: hwcsim.CsimKernel) -> np.ndarray:
    bufs = {b: np.zeros(layout.buffer_words(b, 1), np.uint64) for b in layout.BUFFERS}
    kernel.run(layout.OP_FORWARD, 1, 0.01, *(bufs[b] for b in layout.BUFFERS))
    return bufs["logits"]


def test_build_records_hashes_and_leaves_no_temporaries(built: Path) -> None:
    work = built.parent
    names = {p.name for p in work.iterdir()}
    assert {"train_step.o", "train_step.o.sha256", built.name, built.name + ".sha256",
            "fxemu_policy.h"} <= names
    assert not [n for n in names if n.startswith(".")]  # no build folder or temporary left
    assert (work / (built.name + ".sha256")).read_text().strip() == _sha(built)
    assert oct(work.stat().st_mode & 0o777) == oct(0o700)
    assert oct(work.parent.stat().st_mode & 0o077) == oct(0)


def test_a_tampered_library_is_rebuilt_and_refused_at_load(built: Path) -> None:
    good = built.read_bytes()
    with open(built, "ab") as f:  # e.g. someone appends to (or truncates) the cached object
        f.write(b"\0")
    with pytest.raises(RuntimeError, match="does not have the hash recorded"):
        hwcsim.CsimKernel(built)
    again = hwcsim.build(POLICY, cache=built.parent.parent, flags=FAST)
    assert again == built and _sha(built) == hashlib.sha256(good).hexdigest()
    _forward(hwcsim.CsimKernel(built))  # loads and runs


def test_a_planted_link_is_replaced_not_written_through(built: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim.so"
    victim.write_bytes(b"do not touch")
    obj = built.parent / "train_step.o"
    built.unlink()
    built.symlink_to(victim)
    obj_victim = tmp_path / "victim.o"
    obj_victim.write_bytes(b"nor this")
    obj.unlink()
    obj.symlink_to(obj_victim)
    lib = hwcsim.build(POLICY, cache=built.parent.parent, flags=FAST)
    assert victim.read_bytes() == b"do not touch" and obj_victim.read_bytes() == b"nor this"
    assert not lib.is_symlink() and not obj.is_symlink()
    for f in (lib, obj):  # rebuilt in place of the links, with their hashes recorded
        assert f.is_file() and (f.parent / (f.name + ".sha256")).read_text().strip() == _sha(f)
    _forward(hwcsim.CsimKernel(lib))


def test_a_missing_hash_means_rebuild(built: Path) -> None:
    side = built.parent / (built.name + ".sha256")
    side.unlink()
    stamp = built.stat().st_mtime_ns
    lib = hwcsim.build(POLICY, cache=built.parent.parent, flags=FAST)
    assert side.is_file() and lib.stat().st_mtime_ns != stamp


def test_a_cache_writable_by_others_is_refused(built: Path) -> None:
    root = built.parent.parent
    for folder, mode in ((root, 0o777), (root, 0o720), (built.parent, 0o702)):
        folder.chmod(mode)
        try:
            with pytest.raises(hwcsim.UnsafeCache, match=r"is writable by other users"):
                hwcsim.build(POLICY, cache=root, flags=FAST)
        finally:
            folder.chmod(0o700)
    assert hwcsim.build(POLICY, cache=root, flags=FAST) == built


def test_a_cache_owned_by_another_user_is_refused(built: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    uid = os.getuid()
    monkeypatch.setattr(hwcsim.os, "getuid", lambda: uid + 4242)
    with pytest.raises(hwcsim.UnsafeCache, match=r"is owned by another user"):
        hwcsim.build(POLICY, cache=built.parent.parent, flags=FAST)


def test_a_work_folder_that_is_a_link_is_refused(built: Path, tmp_path: Path) -> None:
    work = built.parent
    moved = tmp_path / "elsewhere"
    work.rename(moved)
    work.symlink_to(moved, target_is_directory=True)
    try:
        with pytest.raises(hwcsim.UnsafeCache, match=r"is not a folder"):
            hwcsim.build(POLICY, cache=work.parent, flags=FAST)
    finally:
        work.unlink()
        moved.rename(work)


@pytest.mark.parametrize(("op", "n", "lr", "match"), [
    (0, 1 << 32 | 1, 0.01, r"n must be in 1\.\.256"),  # would wrap to n = 1 as a uint32
    (1 << 32, 1, 0.01, r"op must be 0"),
    (0, True, 0.01, r"n must be in 1\.\.256"),
    (0, 1.0, 0.01, r"n must be in 1\.\.256"),
    (0, 1, 256.0, r"lr: must be in \[2\^-64, 256\)"),
    (0, 1, -0.01, r"lr: must be in"),
    (0, 1, float("nan"), r"lr: must be in"),
    (0, 1, 2.0**-65, r"lr: must be in"),
])
def test_kernel_arguments_are_checked_before_c(built: Path, op: object, n: object, lr: float,
                                               match: str) -> None:
    k = hwcsim.CsimKernel(built)
    bufs = {b: np.zeros(layout.buffer_words(b, layout.BATCH_MAX), np.uint64)
            for b in layout.BUFFERS}
    with pytest.raises(ValueError, match=match):
        k.run(op, n, lr, *(bufs[b] for b in layout.BUFFERS))  # type: ignore[arg-type]
    k.run(np.uint32(0), np.int64(2), np.float64(0.5), *(bufs[b] for b in layout.BUFFERS))
