"""The optimizer: SGD with optional momentum, weight decay and loss scaling.

For each parameter, in the model's parameter order (layer order, weight before bias), with the
layer's resolved policy (``policy.for_layer(name)``) and the backend's datapath
(:meth:`fxemu.backends.Backend.sgd`)::

    g = dW / S                        exact (S, the loss scale, is a power of two)
    d = R_grad(g + wd·W)              only with weight decay wd > 0 (one rounding, fma)
    v = R_momentum(μ·v + d); d = v    only with momentum μ > 0 (one rounding, fma; v starts at 0)
    W = R_master(W - lr·d)            one rounding (stochastic if the master format says so)

so plain SGD (μ = wd = 0, S = 1) is ``W ← R_master(W - lr·dW)`` exactly as before these
options existed, drawing the same stochastic-rounding keys. This is torch.optim.SGD's rule
(dampening 0, no Nesterov; its first step sets v = d, which is μ·0 + d).

Loss scaling multiplies the logits' gradient by S before it is rounded into the backward
``grad`` format (:meth:`fxemu.nn.Sequential.backward`), so small gradients survive a narrow
format. ``loss_scale``: a power of two (static), or ``"dynamic"``: S starts at
``scale_init`` (2^15); after a step whose gradients hold inf/NaN or reach the largest finite
magnitude of their ``grad`` format (an overflow, or a saturation), the step is skipped (weights
and momentum unchanged) and S halves (never below 2^-24); after ``scale_window`` (default 200)
consecutive good steps S doubles (never above 2^24). The state (momentum buffers, S, the
good-step count) is part of every checkpoint (:meth:`SGD.state`).
"""

from __future__ import annotations

import math

import numpy as np

from .._errors import msg
from ..formats import Fixed

__all__ = ["SGD"]

_SCALE_MIN, _SCALE_MAX = 2.0**-24, 2.0**24


def _power_of_two(v: object) -> bool:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
        return False
    m, _ = math.frexp(v)
    return m == 0.5


class SGD:
    """SGD (see the module docstring). ``lr`` > 0, ``momentum`` μ in [0, 1), ``weight_decay``
    ≥ 0, ``loss_scale`` a power of two or ``"dynamic"``; ``scale_init``/``scale_window`` set
    the dynamic rule."""

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, weight_decay: float = 0.0,
                 loss_scale: float | str = 1.0, scale_init: float = 2.0**15,
                 scale_window: int = 200) -> None:
        for name, v, ok in (("lr", lr, lambda u: u > 0),
                            ("momentum", momentum, lambda u: 0 <= u < 1),
                            ("weight_decay", weight_decay, lambda u: u >= 0)):
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) \
                    or not ok(v):
                rng = {"lr": "> 0", "momentum": "in [0, 1)", "weight_decay": ">= 0"}[name]
                raise ValueError(msg(f"config.{name}", f"must be a finite number {rng}", v))
        self.dynamic = loss_scale == "dynamic"
        if not self.dynamic and not _power_of_two(loss_scale):
            raise ValueError(msg("config.loss_scale", "must be a power of two (unscaling is "
                                 "then exact) or 'dynamic'", loss_scale))
        if not _power_of_two(scale_init) or not _SCALE_MIN <= scale_init <= _SCALE_MAX:
            raise ValueError(msg("config.scale_init", "must be a power of two in 2^-24..2^24",
                                 scale_init))
        if isinstance(scale_window, bool) or not isinstance(scale_window, int) \
                or scale_window < 1:
            raise ValueError(msg("config.scale_window", "must be an int >= 1", scale_window))
        self.lr, self.momentum, self.weight_decay = float(lr), float(momentum), \
            float(weight_decay)
        self.scale_window = scale_window
        self.scale = float(scale_init if self.dynamic else loss_scale)
        self.good = 0
        self.velocity: dict[str, np.ndarray] = {}

    @property
    def plain(self) -> bool:
        """Plain SGD (no momentum, no weight decay, no loss scaling): the accelerator's rule."""
        return self.momentum == 0 and self.weight_decay == 0 and not self.dynamic \
            and self.scale == 1.0

    def config(self) -> dict:
        """The settings (for the run's config)."""
        d = {"type": "sgd", "lr": self.lr, "momentum": self.momentum,
             "weight_decay": self.weight_decay,
             "loss_scale": "dynamic" if self.dynamic else self.scale}
        if self.dynamic:
            d["scale_window"] = self.scale_window
        return d

    # -- state -------------------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        """Arrays to checkpoint: ``opt_v_<param>`` (momentum buffers, float64), ``opt_scale``
        and ``opt_good`` (the dynamic loss scale's state)."""
        out = {f"opt_v_{k}": v for k, v in self.velocity.items()}
        out["opt_scale"] = np.array(self.scale)
        out["opt_good"] = np.array(self.good, np.int64)
        return out

    def state_shapes(self, param_shapes: dict) -> dict[str, tuple[int, ...]]:
        """Shapes of the arrays :meth:`state` holds once training has started."""
        out = {f"opt_v_{k}": tuple(s) for k, s in param_shapes.items()} if self.momentum else {}
        return {**out, "opt_scale": (), "opt_good": ()}

    def init_state(self, params: dict[str, np.ndarray]) -> None:
        """Zero momentum buffers for ``params`` (with momentum): μ·0 + d = d exactly, so this
        is the first step's rule, and every buffer is in the state from the start."""
        if self.momentum:
            self.velocity = {k: np.zeros_like(v, dtype=np.float64) for k, v in params.items()}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore :meth:`state` (as validated by :func:`fxemu.rundir.load_checkpoint`)."""
        self.velocity = {k[len("opt_v_"):]: np.asarray(v, np.float64).copy()
                         for k, v in arrays.items() if k.startswith("opt_v_")}
        self.scale = float(arrays["opt_scale"])
        self.good = int(arrays["opt_good"])

    # -- the step ------------------------------------------------------------------------------
    def _overflow(self, grads: dict, fmts: dict) -> bool:
        for k, g in grads.items():
            a = np.abs(np.asarray(g, np.float64))
            if not np.isfinite(a).all():
                return True
            fmt = fmts[k]
            top = fmt.max if isinstance(fmt, Fixed) else getattr(fmt, "max", np.inf)
            if a.size and a.max() >= top:
                return True
        return False

    def step(self, backend, model, params: dict, grads: dict) -> dict:
        """New parameters from the gradients of the loss times :attr:`scale` (their order:
        the model's). A dynamic-scale step that overflowed returns ``params`` unchanged."""
        precs = dict(zip(model.names, model.precisions(backend.policy), strict=True))
        prec = {k: precs[k.rsplit("_", 1)[0]] for k in params}
        scale = self.scale
        if self.dynamic:
            if self._overflow(grads, {k: p.backward.grad for k, p in prec.items()}):
                self.scale = max(scale / 2, _SCALE_MIN)
                self.good = 0
                return params
            self.good += 1
            if self.good >= self.scale_window:
                self.scale, self.good = min(scale * 2, _SCALE_MAX), 0
        new = {}
        for k, w in params.items():
            dw = grads[k]
            if scale != 1.0:
                dw = dw * dw.dtype.type(1.0 / scale)  # exact: a power of two
            w2, v2 = backend.sgd(w, dw, self.velocity.get(k), self.lr, self.momentum,
                                 self.weight_decay, prec[k])
            new[k] = w2
            if self.momentum:
                self.velocity[k] = v2
        return new
