"""Models (:mod:`fxemu.nn`): layers and Sequential against torch in float64, specs and their
errors, per-layer precision, the optimizer (momentum, weight decay, loss scaling) against
torch.optim.SGD, resume with optimizer state, the accelerator's refusal of other models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import fxemu.nn as nn
from fxemu.backends import get_backend
from fxemu.policy import PRESETS, Policy, load_policy
from fxemu.train import TrainConfig, train

torch = pytest.importorskip("torch")

#: A network using every layer kind and geometry: stride, "same" and pair padding, no bias,
#: avgpool, overlapping padded max and avg pools, two convs (so a conv input gradient is formed).
ODD = [
    {"type": "conv2d", "out_channels": 4, "kernel_size": [3, 2], "padding": "same"},
    {"type": "relu"},
    {"type": "avgpool2d", "size": 2},
    {"type": "conv2d", "out_channels": 5, "kernel_size": 3, "stride": 2, "padding": [1, 0],
     "bias": False},
    {"type": "maxpool2d", "size": 3, "stride": 1, "padding": 1},
    {"type": "avgpool2d", "size": 2, "stride": 1, "padding": 1},
    {"type": "flatten"},
    {"type": "linear", "out_features": 7},
    {"type": "relu"},
    {"type": "linear", "out_features": 10, "bias": False},
]


#: A small two-conv network for the optimizer tests (a fraction of LeNet-5's cost).
SMALL = [
    {"type": "conv2d", "out_channels": 3, "kernel_size": 5, "stride": 2, "padding": 2},
    {"type": "relu"},
    {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "stride": 2},
    {"type": "relu"},
    {"type": "maxpool2d", "size": 2},
    {"type": "flatten"},
    {"type": "linear", "out_features": 16},
    {"type": "relu"},
    {"type": "linear", "out_features": 10},
]


def _torch_forward(model: nn.Sequential, params: dict, x: np.ndarray):
    """The same network in torch (float64), its parameters as leaf tensors."""
    F = torch.nn.functional
    tp = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    h = torch.tensor(x, dtype=torch.float64)
    for layer in model.layers:
        if isinstance(layer, nn.Conv2d):
            t, b, left, r = layer.pads
            h = F.conv2d(F.pad(h, (left, r, t, b)), tp[f"{layer.name}_w"],
                         tp.get(f"{layer.name}_b"), stride=layer.strides)
        elif isinstance(layer, nn.Linear):
            h = F.linear(h, tp[f"{layer.name}_w"], tp.get(f"{layer.name}_b"))
        elif isinstance(layer, nn.ReLU):
            h = torch.relu(h)
        elif isinstance(layer, nn.MaxPool2d):
            h = F.max_pool2d(h, layer.window, layer.strides, layer.pads)
        elif isinstance(layer, nn.AvgPool2d):
            h = F.avg_pool2d(h, layer.window, layer.strides, layer.pads)
        elif isinstance(layer, nn.Flatten):
            h = h.flatten(1)
    return h, tp


def _data(n: int, shape=(1, 28, 28), seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.random((n, *shape)), rng.integers(0, 10, n)


@pytest.mark.parametrize("spec", ["lenet5", "odd"])
@pytest.mark.parametrize("backend", ["native", "emulated"])
def test_forward_and_gradients_match_torch_float64(spec: str, backend: str) -> None:
    model = nn.load_model(ODD if spec == "odd" else spec).build((1, 28, 28), 10)
    be = get_backend(backend, PRESETS["float64"])
    p = {k: be.master(v) for k, v in model.init_params(3).items()}
    x, y = _data(6)
    z, cache = model.forward(be, p, x)
    loss, g, _ = nn.softmax_xent(z, y)
    grads = model.backward(be, p, cache, g)
    out, tp = _torch_forward(model, p, x)
    tl = torch.nn.functional.cross_entropy(out, torch.from_numpy(y))
    tl.backward()
    assert abs(loss - tl.item()) <= 1e-10
    np.testing.assert_allclose(z, out.detach().numpy(), rtol=0, atol=1e-10)
    assert list(grads) == list(model.param_shapes)
    for k, v in grads.items():
        np.testing.assert_allclose(v, tp[k].grad.numpy(), rtol=0, atol=1e-10, err_msg=k)


def test_lenet5_structure_names_and_init_order() -> None:
    m = nn.load_model("lenet5").build((1, 28, 28), 10)
    assert m.names == ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten1",
                       "fc1", "relu3", "fc2", "relu4", "fc3"]
    assert m.param_shapes["fc1_w"] == (120, 400) and m.shapes[3] == (6, 14, 14)
    p = m.init_params(5)
    rng = np.random.Generator(np.random.PCG64(5))  # the stated draw order: weights, in order
    for k, shape in m.param_shapes.items():
        if k.endswith("_w"):
            fan = int(np.prod(shape[1:]))
            np.testing.assert_array_equal(p[k], rng.standard_normal(shape) * np.sqrt(2 / fan))
        else:
            assert not p[k].any()
    founding = nn.load_model("founding").build((1, 28, 28), 10)
    assert founding.is_founding and not m.is_founding
    assert list(founding.init_params(0)) == list(nn.Params.NAMES)


@pytest.mark.parametrize("layers, match", [
    ([{"type": "conv2d", "out_channels": 4, "kernel_size": 3}, {"type": "maxpool2d",
      "size": 2, "stride": 0}], r"layers\[1\]\.stride: must be an int >= 1"),
    ([{"type": "conv2d", "out_channels": 4, "kernel_size": 3},
      {"type": "maxpool2d", "name": "pool1", "size": 2, "stride": 0}],
     r"layers\[1\] \(pool1\)\.stride: must be an int >= 1"),
    ([{"type": "conv2d", "kernel_size": 3}], r"layers\[0\]\.out_channels: missing"),
    ([{"type": "conv3d"}], r"layers\[0\]\.type: must be one of"),
    ([{"type": "linear", "out_features": 10, "wieght": 1}],
     r"layers\[0\]\.wieght: is not a field of linear"),
    ([{"type": "conv2d", "out_channels": 2, "kernel_size": 3, "stride": 2, "padding": "same"}],
     r"layers\[0\]\.padding: 'same' needs stride 1"),
    ([{"type": "relu", "name": "a"}, {"type": "relu", "name": "a"},
      {"type": "linear", "out_features": 10}], r"layers\[1\] \(a\)\.name: is used twice"),
    ([], r"model\.layers: must be a non-empty list"),
])
def test_spec_errors_name_the_layer_and_field(layers: list, match: str) -> None:
    with pytest.raises(nn.SpecError, match=match):
        nn.load_model({"layers": layers})


@pytest.mark.parametrize("layers, match", [
    ([{"type": "linear", "out_features": 10}], r"layers\[0\] \(fc1\): needs a flat input"),
    ([{"type": "conv2d", "out_channels": 2, "kernel_size": 30}, {"type": "flatten"},
      {"type": "linear", "out_features": 10}], r"layers\[0\] \(conv1\)\.kernel_size"),
    ([{"type": "flatten"}, {"type": "linear", "out_features": 9}],
     r"layers\[1\] \(fc1\)\.out_features: must equal the data's 10 classes"),
    ([{"type": "conv2d", "out_channels": 2, "kernel_size": 3}],
     r"layers\[0\] \(conv1\): the last layer must give logits"),
])
def test_shape_errors_name_the_layer(layers: list, match: str) -> None:
    with pytest.raises(nn.SpecError, match=match):
        nn.load_model(layers).build((1, 28, 28), 10)


def test_toml_and_json_specs(tmp_path: Path) -> None:
    f = tmp_path / "tiny.toml"
    f.write_text('[[layers]]\ntype = "conv2d"\nname = "stem"\nout_channels = 3\n'
                 'kernel_size = 5\nstride = 2\n\n[[layers]]\ntype = "relu"\n\n'
                 '[[layers]]\ntype = "flatten"\n\n[[layers]]\ntype = "linear"\n'
                 'out_features = 10\n')
    m = nn.load_model(str(f))
    assert m.name == "tiny" and m.names == ["stem", "relu1", "flatten1", "fc1"]
    j = tmp_path / "tiny.json"
    j.write_text(json.dumps(m.to_dict()))
    assert nn.load_model(str(j)).layers == m.layers
    bad = tmp_path / "bad.toml"
    bad.write_text('[[layers]]\ntype = "maxpool2d"\nname = "pool1"\nsize = 2\nstride = 0\n')
    with pytest.raises(ValueError, match=r"model file .*bad.toml: layers\[0\] \(pool1\)"
                                         r"\.stride"):
        nn.load_model(str(bad))
    res = train(TrainConfig(model=str(f), policy="fixed16", n_train=64, n_test=32, epochs=1,
                            batch_size=32), tmp_path / "run", progress=False)
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["model"]["name"] == "tiny" and cfg["model"]["input_shape"] == [1, 28, 28]
    assert cfg["model"]["layers"][0]["name"] == "stem"
    assert set(res["params"]) == {"stem_w", "stem_b", "fc1_w", "fc1_b"}


def _override_policy(layers: dict) -> Policy:
    d = PRESETS["fixed16"].to_dict()
    d["layers"] = layers
    return Policy.from_dict(d)


def test_per_layer_override_takes_effect() -> None:
    coarse = "ap_fixed<8,4,AP_RND_CONV,AP_SAT>"
    pol = _override_policy({"conv1": {"forward": {"activation": coarse,
                                                  "weight": coarse}}})
    assert Policy.from_dict(pol.to_dict()) == pol
    model = nn.load_model("lenet5").build((1, 28, 28), 10)
    be = get_backend("emulated", pol)
    p = {k: be.master(v, pol.for_layer(k.rsplit("_", 1)[0]))
         for k, v in model.init_params(0).items()}
    x, _ = _data(2)
    _, cache = model.forward(be, p, x)
    conv1 = cache[0][2]  # (x, w, bias, layer) of conv1
    z1 = be.conv2d(conv1[0], p["conv1_w"], p["conv1_b"], model.layers[0],
                   pol.for_layer("conv1"))[0]
    on_grid = (z1 * 16 == np.round(z1 * 16)).all() and np.abs(z1).max() <= 8
    assert on_grid  # 4 fraction bits, saturating at 8: the override's format
    z2 = be.conv2d(_pool1(be, z1), p["conv2_w"], p["conv2_b"], model.layers[3],
                   pol.for_layer("conv2"))[0]
    assert not (z2 * 16 == np.round(z2 * 16)).all()  # conv2 keeps the 8-fraction-bit default
    # and the training result moves
    base = train(TrainConfig(model="lenet5", policy="fixed16", n_train=32, n_test=16,
                             epochs=1, batch_size=32), progress=False)["params"]
    over = train(TrainConfig(model="lenet5", policy=pol.to_dict(), n_train=32, n_test=16,
                             epochs=1, batch_size=32), progress=False)["params"]
    assert not np.array_equal(base["conv1_w"], over["conv1_w"])


def _pool1(be, z1):
    return be.maxpool2d(np.maximum(z1, 0), nn.MaxPool2d(size=2))[0]


def test_policy_layer_validation() -> None:
    with pytest.raises(ValueError, match=r"policy\.layers\.conv1\.forward\.wieght: unknown"):
        _override_policy({"conv1": {"forward": {"wieght": "float32"}}})
    with pytest.raises(ValueError, match=r"policy\.layers\.conv1\.update\.master"):
        _override_policy({"conv1": {"update": {"master": "float17"}}})
    with pytest.raises(ValueError, match=r"policy\.layers\.conv9: model lenet5 has no layer"):
        train(TrainConfig(model="lenet5", policy=_override_policy(
            {"conv9": {"forward": {"weight": "float32"}}}).to_dict(), n_train=32, n_test=32,
            epochs=1), progress=False)
    # new roles default so that the earlier presets' tables (and config hashes) are unchanged;
    # the MX presets, newer, name their pool and conv_dx Macs
    for name in ("float64", "fw32bw32", "fw16bw32", "fw16bw16", "fixed16", "fixed16_sr"):
        p = PRESETS[name]
        d = p.to_dict()
        assert "conv_dx" not in d["backward"] and "pool" not in d["forward"]
        assert p.backward.conv_dx_mac == p.backward.dense_dx
        assert p.update.momentum_fmt == p.update.master


def test_accelerators_run_only_the_founding_network() -> None:
    for backend in ("csim", "board"):
        with pytest.raises(ValueError, match=f"--backend {backend} runs only the founding "
                                             "network; model 'lenet5'"):
            train(TrainConfig(model="lenet5", policy="fixed16", backend=backend, n_train=32,
                              n_test=32, epochs=1), progress=False)
    with pytest.raises(ValueError, match="--backend csim runs plain SGD"):
        train(TrainConfig(policy="fixed16", backend="csim", momentum_coef=0.9, n_train=32,
                          n_test=32, epochs=1), progress=False)


# -- the optimizer ---------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["native", "emulated"])
def test_momentum_and_weight_decay_match_torch_sgd(backend: str) -> None:
    model = nn.load_model(SMALL).build((1, 28, 28), 10)
    be = get_backend(backend, PRESETS["float64"])
    p = model.init_params(1)
    opt = nn.SGD(0.05, momentum=0.9, weight_decay=1e-3)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in p.items()}
    topt = torch.optim.SGD(list(tp.values()), lr=0.05, momentum=0.9, weight_decay=1e-3)
    for step in range(3):
        x, y = _data(8, seed=step)
        p, _, _ = model.train_step(be, p, x, y, opt, step)
        out, leaves = _torch_forward(model, {k: t.detach().numpy() for k, t in tp.items()}, x)
        torch.nn.functional.cross_entropy(out, torch.from_numpy(y)).backward()
        for k, t in tp.items():
            t.grad = leaves[k].grad
        topt.step()
    for k in p:
        np.testing.assert_allclose(p[k], tp[k].detach().numpy(), rtol=0, atol=1e-10,
                                   err_msg=k)


def test_emulated_momentum_rounds_into_its_format() -> None:
    """v = R_momentum(μ·v + d), W = R_master(W - lr·v), by hand with fx.fma."""
    import fxemu as fx

    d = PRESETS["fixed16"].to_dict()
    d["update"]["momentum"] = "ap_fixed<16,2,AP_RND_CONV,AP_SAT>"
    d["name"] = "fixed16_m"
    pol = Policy.from_dict(d)
    be = get_backend("emulated", pol)
    rng = np.random.default_rng(0)
    w = fx.quantize(rng.normal(0, 0.3, 50), pol.update.master)
    v = fx.quantize(rng.normal(0, 0.3, 50), pol.update.momentum)
    g = fx.quantize(rng.normal(0, 0.3, 50), pol.backward.grad)
    w2, v2 = be.sgd(w, g, v, 0.1, 0.9, 0.01, pol)
    dd = fx.fma(0.01, w, g, pol.backward.grad)
    vv = fx.fma(0.9, v, dd, pol.update.momentum)
    np.testing.assert_array_equal(v2, vv)
    np.testing.assert_array_equal(w2, fx.fma(-0.1, vv, w, pol.update.master))
    assert (v2 * 2**14 == np.round(v2 * 2**14)).all() and np.abs(v2).max() <= 2
    assert not (v2 * 256 == np.round(v2 * 256)).all()  # finer than the master's grid


def test_static_loss_scale_is_exact_in_float64() -> None:
    """A power-of-two scale multiplies every float64 gradient exactly and is divided out
    exactly: the weights are bit-identical with and without it."""
    model = nn.load_model(SMALL).build((1, 28, 28), 10)
    be = get_backend("native", PRESETS["float64"])
    p0 = model.init_params(2)
    x, y = _data(8)
    a, _, _ = model.train_step(be, p0, x, y, nn.SGD(0.05), 0)
    b, _, _ = model.train_step(be, p0, x, y, nn.SGD(0.05, loss_scale=2.0**20), 0)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    with pytest.raises(ValueError, match=r"config\.loss_scale: must be a power of two"):
        nn.SGD(0.01, loss_scale=1000)


def test_dynamic_loss_scale_rule() -> None:
    """fw16bw16: 2^24·gradients overflow float16 → the step is skipped and the scale halves;
    a scale that fits trains, and after scale_window good steps the scale doubles."""
    model = nn.load_model("lenet5").build((1, 28, 28), 10)
    pol = load_policy("fw16bw16")
    be = get_backend("emulated", pol)
    p0 = {k: be.master(v) for k, v in model.init_params(0).items()}
    x, y = _data(16)
    opt = nn.SGD(0.05, loss_scale="dynamic", scale_init=2.0**24, scale_window=2)
    p1, _, _ = model.train_step(be, p0, x, y, opt, 0)
    assert opt.scale == 2.0**23 and opt.good == 0
    assert all(p1[k] is p0[k] for k in p0)  # skipped
    opt = nn.SGD(0.05, loss_scale="dynamic", scale_init=2.0**4, scale_window=2)
    p1, _, _ = model.train_step(be, p0, x, y, opt, 0)
    assert opt.scale == 16 and opt.good == 1
    assert any(not np.array_equal(p1[k], p0[k]) for k in p0)
    model.train_step(be, p1, x, y, opt, 1)
    assert opt.scale == 32 and opt.good == 0
    st = opt.state()
    assert float(st["opt_scale"]) == 32 and int(st["opt_good"]) == 0


def test_resume_with_momentum_is_bit_identical(tmp_path: Path) -> None:
    kw = dict(model=SMALL, policy="fixed16_sr", n_train=96, n_test=32, batch_size=32,
              momentum_coef=0.9, weight_decay=1e-4, loss_scale=4.0, checkpoint_every=2)
    whole = train(TrainConfig(epochs=2, **kw), tmp_path / "a", progress=False)["params"]
    train(TrainConfig(epochs=1, **kw), tmp_path / "b", progress=False)
    ck = np.load(tmp_path / "b" / "checkpoint.npz")
    assert "opt_v_conv2_w" in ck.files and "opt_scale" in ck.files
    res = train(TrainConfig(epochs=2, **kw), tmp_path / "b", resume=True, progress=False)
    for k in whole:
        np.testing.assert_array_equal(whole[k].view(np.uint64), res["params"][k].view(np.uint64))
    cfg = json.loads((tmp_path / "b" / "config.json").read_text())
    assert cfg["momentum_coef"] == 0.9 and cfg["loss_scale"] == 4.0
    # another model in the same directory is refused as other config changes are
    with pytest.raises(ValueError, match=r"different configuration.*model"):
        train(TrainConfig(epochs=3, **{**kw, "model": "founding"}), tmp_path / "b",
              resume=True, progress=False)


def test_founding_runs_written_before_models_resume(tmp_path: Path) -> None:
    """The default model is the founding network with its old parameter names; a plain run
    whose checkpoint and config predate the model/optimizer keys still resumes."""
    from fxemu import rundir

    m = nn.load_model("founding")
    assert [layer.kind for layer in m.layers] == ["conv2d", "relu", "maxpool2d", "flatten",
                                                  "linear"]
    assert TrainConfig().model == "founding" and TrainConfig().optimizer().plain
    kw = dict(policy="fw32bw32", n_train=64, n_test=32, batch_size=32)
    whole = train(TrainConfig(epochs=2, **kw), tmp_path / "a", progress=False)["params"]
    run = tmp_path / "b"
    train(TrainConfig(epochs=1, **kw), run, progress=False)
    cfg = json.loads((run / "config.json").read_text())
    old = {k: v for k, v in cfg.items()
           if k not in ("model", "momentum_coef", "weight_decay", "loss_scale")}
    rundir.write_json(run / "config.json", old)
    ck = dict(np.load(run / "checkpoint.npz"))
    ck["config_hash"] = np.array(rundir.config_hash(old))
    rundir.save_npz(run / "checkpoint.npz", ck)
    res = train(TrainConfig(epochs=2, **kw), run, resume=True, progress=False)
    for k in whole:
        np.testing.assert_array_equal(whole[k], res["params"][k])


# -- the command line and the accuracy bar ---------------------------------------------------
def _cli(*args: str):
    from click.testing import CliRunner

    from fxemu.cli import cli

    try:
        runner = CliRunner(mix_stderr=False)
    except TypeError:
        runner = CliRunner()
    return runner.invoke(cli, list(args), catch_exceptions=False)


def test_cli_train_model(tmp_path: Path) -> None:
    res = _cli("train", "--model", "lenet5", "--policy", "fw32bw32", "--epochs", "1",
               "--n-train", "256", "--n-test", "64", "--momentum", "0.9", "--quiet",
               "--out", str(tmp_path / "run"))
    assert res.exit_code == 0, res.output
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["model"]["name"] == "lenet5" and cfg["momentum_coef"] == 0.9
    bad = tmp_path / "net.toml"
    bad.write_text('[[layers]]\ntype = "maxpool2d"\nname = "pool1"\nsize = 2\nstride = 0\n')
    res = _cli("train", "--model", str(bad), "--quiet")
    assert res.exit_code == 2 and "layers[0] (pool1).stride: must be an int >= 1" in res.stderr
    res = _cli("train", "--model", "lenet5", "--backend", "csim", "--policy", "fixed16",
               "--quiet")
    assert res.exit_code == 1
    assert res.stderr.strip().splitlines()[-1].endswith(
        "--backend csim runs only the founding network; model 'lenet5' needs backend native "
        "or emulated (a generated per-model kernel is a later step)")
    res = _cli("train", "--loss-scale", "3", "--quiet")
    assert res.exit_code in (1, 2) and "loss_scale" in res.stderr.replace("-", "_")


def test_lenet5_learns_the_digits_short() -> None:
    """Two epochs of the accuracy bar's run (the full one is slow-marked below)."""
    m = train(TrainConfig(model="lenet5", policy="fw32bw32", epochs=2, n_train=1000,
                          n_test=500), progress=False)["metrics"]
    assert m[-1]["test_acc"] >= 0.3  # chance is 0.1


@pytest.mark.slow
def test_lenet5_reaches_080_on_the_digits() -> None:
    """The bar: ``fxemu train --model lenet5 --policy fw32bw32 --epochs 10`` >= 0.80 test
    accuracy on the embedded digits (measured 0.906)."""
    m = train(TrainConfig(model="lenet5", policy="fw32bw32", epochs=10), progress=False)
    assert m["metrics"][-1]["test_acc"] >= 0.80


def test_cli_train_prints_data_shape(tmp_path: Path) -> None:
    """``fxemu train`` says what it trains on (name, counts, C×H×W, classes) before its
    table; the line is output only, not configuration (the run's config hash is unchanged)."""
    from fxemu import rundir

    res = _cli("train", "--epochs", "1", "--n-train", "64", "--n-test", "32", "--quiet",
               "--out", str(tmp_path / "run"))
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0] == "data: mnist-5k, 64 train / 32 test images of 1×28×28 (C×H×W), 10 classes"
    assert lines[1].split()[0] == "epoch"
    cfg = rundir.read_config(tmp_path / "run")
    assert "shape" not in json.dumps(cfg["data"])
    cifar = tmp_path / "cifar"
    cifar.mkdir()
    rng = np.random.default_rng(0)
    for name, n in [(f"data_batch_{i}.bin", 2) for i in range(1, 6)] + [("test_batch.bin", 4)]:
        rec = np.concatenate([rng.integers(0, 10, (n, 1)), rng.integers(0, 256, (n, 3072))], 1)
        (cifar / name).write_bytes(rec.astype(np.uint8).tobytes())
    res = _cli("train", "--data", f"cifar10:{cifar}", "--model", "lenet5", "--epochs", "1",
               "--quiet")
    assert res.exit_code == 0, res.output + res.stderr
    assert res.stdout.splitlines()[0] == \
        "data: cifar10, 10 train / 4 test images of 3×32×32 (C×H×W), 10 classes"
