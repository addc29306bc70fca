"""Why a 16-bit fixed-point LeNet-5 does not train: per-layer, per-step instrumentation.

:func:`diagnose` trains LeNet-5 (or any :class:`fxemu.nn.Sequential`) for a few steps under a
policy on the emulated or native backend, exactly as :func:`fxemu.train.train` does (same
initial weights, batch order, stochastic-rounding keys and optimizer), and at every step
compares each parameter layer with the float64 reference **at the same parameters and batch**
(the native float64 backend on the run's current weights, which are exact in float64). One row
per (step, layer):

``loss``
    the batch's mean cross-entropy (the run's forward pass).
``act_sat``
    fraction of the layer's outputs (after the bias add, rounded into the activation format)
    at the format's largest magnitude: saturated.
``acc_bound``
    max over the layer's outputs of Σ|x·w| + |b| (float64): a bound on every partial sum of
    the forward accumulator; below the accumulator's range (2^15 for ``ap_fixed<32,16>``) no
    partial sum can saturate.
``dead``
    fraction of the layer's units (channels, neurons) whose output is ≤ 0 for every sample of
    the batch (a dead ReLU; the last layer has no ReLU and reports its logits' share).
``dz_zero`` / ``dz_ref_zero`` / ``dz_ref_small``
    fraction of the gradient arriving at the layer's output that the run holds as exactly 0;
    fraction that is exactly 0 in the float64 reference (units the ReLU shut, max-pool
    positions not selected); fraction of the reference's gradient there below half the
    gradient format's LSB (it rounds to 0 under round to nearest).
``dz_lost``
    fraction of the reference's nonzero gradient entries there that the run holds as 0.
``dz_ref_med``
    median |reference gradient| at the layer's output (nonzero entries).
``dz_cos``
    cosine similarity of the run's gradient at the layer's output with the reference's.
``dw_cos``
    cosine similarity of the run's weight gradient with the reference's (1: same direction,
    0: orthogonal or all zero).
``dw_zero``
    fraction of the run's weight-gradient entries that are exactly 0.
``dw_ref_med``
    median |reference weight gradient|.
``g_sat``
    the larger of the fractions of the layer's output gradient and weight gradient at the
    gradient format's largest magnitude (saturated).
``upd_ref_small``
    fraction of weights whose reference update lr·|dW| is below half an LSB of the master
    format (lost under round to nearest, kept in expectation by stochastic rounding).
``unchanged``
    fraction of the layer's weights the run's update left unchanged.
``scale``
    the optimizer's loss scale at the step.
``pred_top``
    share of the batch predicted as its most predicted class (1: the net says one class).
``gz_sum``
    mean over samples of |Σ_j g_ij| of the logits' gradient g as the run rounded it, over
    max |g|: the exact gradient ``(p - onehot)/N`` sums to 0 over the classes of each
    sample, a rounding that drops the small entries (the wrong classes' p_j/N) and keeps the
    large one (the true class's (p_y - 1)/N) does not. (Same in every row of a step.)

``python -m fxemu.analysis.lenet5_diagnosis --help`` runs it from the command line and writes
the rows as CSV.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["diagnose", "main", "summarize"]


def _lsb(fmt) -> float:
    """The format's LSB (fixed) or its smallest subnormal (float)."""
    from fxemu.formats import Fixed

    if isinstance(fmt, Fixed):
        return 2.0 ** -(fmt.width - fmt.int_bits)
    return float(getattr(fmt, "min_subnormal", 0.0) or 0.0)


def _top(fmt) -> float:
    return float(getattr(fmt, "max", np.inf))


class _Tap:
    """Records a backend's per-layer forward outputs and backward gradients in call order."""

    def __init__(self, backend, torch) -> None:
        self.b, self.torch = backend, torch
        self.fwd: list[dict] = []
        self.bwd: list[dict] = []
        for name in ("conv2d", "linear", "conv2d_backward", "linear_backward"):
            setattr(self, "_" + name, getattr(backend, name))
            setattr(backend, name, getattr(self, name))

    def reset(self) -> None:
        self.fwd, self.bwd = [], []

    def _bound(self, x, w, b, conv_layer) -> float:
        t = self.torch
        xa = t.from_numpy(np.abs(np.asarray(x, np.float64)))
        wa = t.from_numpy(np.abs(np.asarray(w, np.float64)))
        if conv_layer is None:
            s = xa @ wa.T
        else:
            p = conv_layer.pads  # (top, bottom, left, right)
            xa = t.nn.functional.pad(xa, (p[2], p[3], p[0], p[1]))
            s = t.nn.functional.conv2d(xa, wa, stride=conv_layer.strides)
        bb = 0.0 if b is None else float(np.abs(b).max())
        return float(s.max()) + bb

    def _fwd(self, z, x, w, b, layer, prec) -> None:
        top = _top(prec.forward.activation)
        za = np.abs(np.asarray(z, np.float64))
        axes = (0, 2, 3) if z.ndim == 4 else (0,)
        self.fwd.append({"z": np.asarray(z), "act_sat": float((za >= top).mean()),
                         "acc_bound": self._bound(x, w, b, layer),
                         "dead": float((np.asarray(z) <= 0).all(axis=axes).mean())})

    def conv2d(self, x, w, b, layer, prec):
        z, ctx = self._conv2d(x, w, b, layer, prec)
        self._fwd(z, x, w, b, layer, prec)
        return z, ctx

    def linear(self, x, w, b, prec):
        z, ctx = self._linear(x, w, b, prec)
        self._fwd(z, x, w, b, None, prec)
        return z, ctx

    def conv2d_backward(self, ctx, dz, prec, need_dx):
        out = self._conv2d_backward(ctx, dz, prec, need_dx)
        self.bwd.append({"dz": np.asarray(dz, np.float64), "dw": np.asarray(out[1])})
        return out

    def linear_backward(self, ctx, dz, prec, need_dx):
        out = self._linear_backward(ctx, dz, prec, need_dx)
        self.bwd.append({"dz": np.asarray(dz, np.float64), "dw": np.asarray(out[1])})
        return out


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(np.dot(a.ravel(), b.ravel()) / (na * nb)) if na and nb else 0.0


def _med(a: np.ndarray) -> float:
    a = np.abs(a[a != 0])
    return float(np.median(a)) if a.size else 0.0


def diagnose(policy: str | dict = "fixed16", *, steps: int = 100, model: str = "lenet5",
             data: str = "fashion", n_train: int = 2000, batch_size: int = 100,
             lr: float = 0.05, seed: int = 0, loss_scale: float | str = 1.0,
             every: int = 1, backend: str = "auto", n_test: int = 0,
             sink: Callable[[list[dict]], None] | None = None):
    """Train ``steps`` steps and return the per-(step, layer) rows described in the module
    docstring as a pandas DataFrame (columns ``step``, ``layer`` and the measures), one row per
    parameter layer every ``every`` steps. The run is :func:`fxemu.train.train`'s for the same
    settings (initial weights of ``seed``, its batch order, its stochastic-rounding keys).
    ``sink`` receives each observed step's rows as they come; with ``n_test`` > 0 the test
    accuracy and loss of the first ``n_test`` test images after the last step are in the
    frame's ``attrs`` (``test_acc``, ``test_loss``)."""
    import pandas as pd
    import torch

    from fxemu.backends import get_backend
    from fxemu.data import load
    from fxemu.nn import Conv2d, Linear, load_model, softmax_xent
    from fxemu.policy import PRESETS
    from fxemu.train import TrainConfig, evaluate, resolve

    cfg = TrainConfig(policy=policy, model=model, data=data, n_train=n_train,
                      n_test=max(n_test, 1),
                      batch_size=batch_size, lr=lr, seed=seed, loss_scale=loss_scale,
                      epochs=1, backend=backend)
    pol, bname = resolve(cfg)
    ds = load(data, n_train=n_train, n_test=max(n_test, 1))
    net = load_model(model)
    net.build(tuple(ds.shape), ds.classes)
    run = get_backend(bname, pol, seed)
    ref = get_backend("native", PRESETS["float64"], seed)
    tap, rtap = _Tap(run, torch), _Tap(ref, torch)
    layers = [ly for ly in net.layers if isinstance(ly, Conv2d | Linear)]
    precs = dict(zip(net.names, net.precisions(pol), strict=True))
    opt = cfg.optimizer()
    p = {k: run.master(v, precs[k.rsplit("_", 1)[0]]) for k, v in net.init_params(seed).items()}
    opt.init_state(p)
    n = len(ds.y_train)
    rows: list[dict] = []
    step, epoch = 0, 0
    while step < steps:
        epoch += 1
        order = np.random.Generator(np.random.PCG64([seed, epoch])).permutation(n)
        for s in range(0, n, batch_size):
            if step >= steps:
                break
            idx = order[s:s + batch_size]
            x, y = ds.x_train[idx], ds.y_train[idx]
            look = step % every == 0
            tap.reset()
            scale = opt.scale
            run.begin_step(step)
            z, cache = net.forward(run, p, x)
            loss, g, pred = softmax_xent(z, y)
            grads = net.backward(run, p, cache, g, opt.scale)
            new = opt.step(run, net, p, grads)
            if look:
                first = len(rows)
                rtap.reset()
                p64 = {k: np.asarray(v, np.float64) for k, v in p.items()}
                zr, rcache = net.forward(ref, p64, np.asarray(x, np.float64))
                _, gr, _ = softmax_xent(zr, y)
                rgrads = net.backward(ref, p64, rcache, gr)
                bwd, rbwd = tap.bwd[::-1], rtap.bwd[::-1]  # in forward order
                gz = bwd[-1]["dz"] / scale  # the logits' gradient as the run rounded it
                top = float(np.bincount(pred).max() / len(pred))
                gsum = float(np.abs(gz.sum(axis=1)).mean() / np.abs(gz).max(initial=1e-300))
                for i, ly in enumerate(layers):
                    pr = precs[ly.name]
                    glsb, mlsb = _lsb(pr.backward.grad), _lsb(pr.update.master)
                    w = f"{ly.name}_w"
                    dz = bwd[i]["dz"] / scale
                    rdz = rbwd[i]["dz"]
                    dw = np.asarray(grads[w], np.float64) / scale
                    rdw = np.asarray(rgrads[w], np.float64)
                    rows.append({
                        "step": step, "layer": ly.name, "loss": loss, "scale": scale,
                        "pred_top": top, "gz_sum": gsum,
                        **{k: tap.fwd[i][k] for k in ("act_sat", "acc_bound", "dead")},
                        "dz_zero": float((bwd[i]["dz"] == 0).mean()),
                        "dz_ref_zero": float((rdz == 0).mean()),
                        "dz_lost": float(((bwd[i]["dz"] == 0) & (rdz != 0)).sum()
                                         / max(int((rdz != 0).sum()), 1)),
                        "dz_ref_small": float((np.abs(rdz) * scale < glsb / 2).mean()),
                        "dz_ref_med": _med(rdz), "dz_cos": _cos(dz, rdz),
                        "dw_cos": _cos(dw, rdw), "dw_zero": float((dw == 0).mean()),
                        "dw_ref_med": _med(rdw),
                        "g_sat": float(max((np.abs(bwd[i]["dz"]) >= _top(pr.backward.grad)).mean(),
                                           (np.abs(np.asarray(grads[w])) >=
                                            _top(pr.backward.grad)).mean())),
                        "upd_ref_small": float((lr * np.abs(rdw) < mlsb / 2).mean()),
                        "unchanged": float((np.asarray(new[w]) == np.asarray(p[w])).mean())})
                if sink is not None:
                    sink(rows[first:])
            p = new
            step += 1
    df = pd.DataFrame(rows)
    if n_test > 0:
        loss_t, acc = evaluate(run, p, ds.x_test, ds.y_test, model=net)
        df.attrs.update(test_acc=acc, test_loss=loss_t)
    return df


def summarize(df, steps: Sequence[int] | None = None):
    """Mean of each measure per layer over the given steps (default: all), layers in order."""
    d = df if steps is None else df[df["step"].isin(list(steps))]
    order = list(dict.fromkeys(d["layer"]))
    return d.groupby("layer", sort=False).mean(numeric_only=True).loc[order]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``--policy``, ``--steps``, ``--n-train``, ``--lr``, ``--loss-scale``,
    ``--every``, ``--seed``, ``--out CSV``; prints the per-layer means."""
    ap = argparse.ArgumentParser(prog="python -m fxemu.analysis.lenet5_diagnosis")
    ap.add_argument("--policy", default="fixed16")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--loss-scale", default="1")
    ap.add_argument("--every", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-test", type=int, default=500)
    ap.add_argument("--out", default=None, help="CSV of the rows, written step by step")
    a = ap.parse_args(argv)
    ls = a.loss_scale if a.loss_scale == "dynamic" else float(a.loss_scale)
    policy = a.policy
    if policy.endswith(".json"):
        import json

        with open(policy) as f:
            policy = json.load(f)
    sink = None
    if a.out:
        fh = open(a.out, "w", newline="")  # closed below

        def sink(rows: list[dict]) -> None:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            if fh.tell() == 0:
                w.writeheader()
            w.writerows(rows)
            fh.flush()
    try:
        df = diagnose(policy, steps=a.steps, n_train=a.n_train, lr=a.lr, loss_scale=ls,
                      every=a.every, seed=a.seed, n_test=a.n_test, sink=sink)
    finally:
        if a.out:
            fh.close()
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(summarize(df).to_string(float_format=lambda v: f"{v:.3g}"))
        last = df[df["step"] == df["step"].max()]
        print(f"loss: first {df['loss'].iloc[0]:.4f}, last {last['loss'].iloc[0]:.4f}")
        if "test_acc" in df.attrs:
            print(f"test accuracy after {a.steps} steps: {df.attrs['test_acc']:.4f} "
                  f"(loss {df.attrs['test_loss']:.4f}, first {a.n_test} test images)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
