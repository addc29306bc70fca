"""``Sequential`` models, written once against the :class:`fxemu.backends.Backend` interface.

A model is a list of layers (:mod:`fxemu.nn.layers`) ending in logits; the loss is the mean
categorical cross-entropy (:func:`softmax_xent`, float64 on the host for every backend).

Parameters are a dict of float64 arrays holding master-format values, in layer order, weight
before bias, keyed ``<layer>_w`` / ``<layer>_b``. Initialisation (:meth:`Sequential.init_params`):
one ``numpy.random.Generator(PCG64(seed))``; for each layer with weights, in layer order, its
weight is drawn as ``standard_normal(shape) · sqrt(2 / fan_in)`` (He-normal; fan_in = C·kh·kw
for conv2d, in_features for linear); biases are zero.

Forward: the images are rounded into the first layer's ``forward.input``; each layer runs on
its backend method under its resolved precision (``policy.for_layer(name)``). A model that
starts with conv2d 3×3 (stride 1, no padding, bias) → relu → maxpool2d 2 runs that block by
:meth:`Backend.conv_relu_pool` (fused kernels where the backend has them, else the
composition: the same values and the same stochastic-rounding keys either way).

Backward: the logits' gradient (times the loss scale) is rounded into the last layer's
``backward.grad`` format; layers run in reverse down to the first layer with weights (whose
input gradient is not formed). A gradient entering a layer with a different ``grad`` format
is rounded into it first. Gradients come back unscaled only by the optimizer
(:class:`fxemu.nn.optim.SGD`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import numpy as np

from .._errors import msg
from .layers import (
    AvgPool2d,
    Conv2d,
    Flatten,
    Layer,
    Linear,
    MaxPool2d,
    ReLU,
    SpecError,
    load_spec,
    parse_spec,
)

__all__ = ["PRESETS", "Sequential", "load_model", "softmax_xent"]


def softmax_xent(z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Mean cross-entropy of logits z (N, K) for labels y, its gradient ``(p - onehot)/N``
    and the predicted classes; float64 on the host (max-subtracted softmax)."""
    z = np.asarray(z, np.float64)
    s = z - z.max(axis=1, keepdims=True)
    e = np.exp(s)
    tot = e.sum(axis=1, keepdims=True)
    n = z.shape[0]
    logp = s - np.log(tot)
    loss = float(-logp[np.arange(n), y].mean())
    g = e / tot
    g[np.arange(n), y] -= 1.0
    return loss, g / n, z.argmax(axis=1)


class Sequential:
    """A chain of layers. ``Sequential([Conv2d(6, 5, padding=2), ReLU(), ...])`` names unnamed
    layers (conv1, relu1, pool1, flatten1, fc1, …) and refuses duplicate names; shapes are
    inferred by :meth:`build` from the per-sample input shape (C, H, W)."""

    def __init__(self, layers: Iterable[Layer | dict], name: str = "custom") -> None:
        parsed = parse_spec(list(layers), name)
        counts: dict[str, int] = {}
        named: list[Layer] = []
        for layer in parsed:
            counts[layer.prefix] = counts.get(layer.prefix, 0) + 1
            if not layer.name:
                layer = replace(layer, name=f"{layer.prefix}{counts[layer.prefix]}")
            named.append(layer)
        seen: set[str] = set()
        for i, layer in enumerate(named):
            if layer.name in seen:
                raise SpecError(msg(f"layers[{i}] ({layer.name}).name", "is used twice"))
            seen.add(layer.name)
        self.layers: tuple[Layer, ...] = tuple(named)
        self.name = str(name)
        self.input_shape: tuple[int, ...] | None = None
        self.shapes: list[tuple[int, ...]] = []
        self.param_shapes: dict[str, tuple[int, ...]] = {}
        self._prec: tuple | None = None  # (policy, its per-layer precisions)

    # -- structure ---------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def build(self, input_shape: tuple[int, ...], classes: int | None = None) -> Sequential:
        """Infer every layer's shapes for per-sample inputs ``input_shape`` (C, H, W); with
        ``classes`` the output must be (classes,). Raises :class:`SpecError` naming the layer
        and field. Returns self."""
        shape = tuple(int(v) for v in input_shape)
        shapes, params = [shape], {}
        for i, layer in enumerate(self.layers):
            what = f"layers[{i}] ({layer.name})"
            for k, s in layer.param_shapes(shape).items():
                params[f"{layer.name}_{k}"] = s
            shape = layer.out_shape(shape, what)
            shapes.append(shape)
        if len(shape) != 1:
            raise SpecError(msg(f"layers[{len(self.layers) - 1}] ({self.layers[-1].name})",
                                "the last layer must give logits (N, classes): end with a "
                                "linear layer", shape))
        if classes is not None and shape != (classes,):
            raise SpecError(msg(f"layers[{len(self.layers) - 1}] ({self.layers[-1].name})."
                                "out_features", f"must equal the data's {classes} classes",
                                shape[0]))
        if not params:
            raise SpecError(msg(self.name, "has no layer with weights (conv2d or linear)"))
        self.input_shape, self.shapes, self.param_shapes = shapes[0], shapes, params
        return self

    def _need_built(self) -> None:
        if self.input_shape is None:
            raise ValueError(msg(f"model {self.name}", "is not built",
                                 hint="call build(input_shape) first"))

    def to_dict(self) -> dict:
        """The resolved spec: name, input shape, every layer with every field (named)."""
        d: dict = {"name": self.name, "layers": [layer.to_dict() for layer in self.layers]}
        if self.input_shape is not None:
            d["input_shape"] = list(self.input_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict, source: str = "model") -> Sequential:
        """A model from a spec table (``layers``, optional ``name``; ``input_shape`` of a
        resolved spec is read back and built)."""
        if not isinstance(d, dict):
            raise SpecError(msg(source, "must be a table with layers", type(d).__name__))
        rest = {k: v for k, v in d.items() if k != "input_shape"}
        m = cls(parse_spec(rest, source), name=str(d.get("name", "custom")))
        if "input_shape" in d:
            m.build(tuple(d["input_shape"]))
        return m

    @property
    def is_founding(self) -> bool:
        """True for the founding network (the one the accelerator runs)."""
        return self.layers == PRESETS["founding"]().layers

    # -- parameters ---------------------------------------------------------------------------
    def init_params(self, seed: int) -> dict[str, np.ndarray]:
        """He-normal weights and zero biases (draw order in the module docstring)."""
        self._need_built()
        rng = np.random.Generator(np.random.PCG64(seed))
        out: dict[str, np.ndarray] = {}
        for layer, shape in zip(self.layers, self.shapes, strict=False):
            if layer.has_params:
                ps = layer.param_shapes(shape)
                out[f"{layer.name}_w"] = (rng.standard_normal(ps["w"])
                                          * np.sqrt(2.0 / layer.fan_in(shape)))
                if "b" in ps:
                    out[f"{layer.name}_b"] = np.zeros(ps["b"])
        return out

    def precisions(self, policy) -> list:
        """Each layer's resolved policy (``policy.for_layer(name)``), cached for the last
        policy asked."""
        if self._prec is None or self._prec[0] is not policy:
            policy.check_layers(self.names, f"model {self.name}")
            self._prec = (policy, [policy.for_layer(n) for n in self.names])
        return self._prec[1]

    def _fused_block(self, i: int) -> bool:
        """conv2d 3×3 (stride 1, no padding, bias) → relu → maxpool2d 2 at the model's start."""
        if i != 0 or len(self.layers) < 3:
            return False
        c, r, p = self.layers[:3]
        return (isinstance(c, Conv2d) and isinstance(r, ReLU) and isinstance(p, MaxPool2d)
                and c.kernel == (3, 3) and c.strides == (1, 1) and c.pads == (0, 0, 0, 0)
                and c.bias and p.simple and p.window == (2, 2))

    # -- passes -------------------------------------------------------------------------------
    def forward(self, backend, params: dict, x: np.ndarray) -> tuple[np.ndarray, list]:
        """Logits (N, classes) of images x and the cache :meth:`backward` needs."""
        self._need_built()
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(msg(f"model {self.name}", f"takes inputs (N, "
                                 f"{', '.join(map(str, self.input_shape))})", x.shape))
        if backend.runs_network:
            return backend.logits(self._founding_params(params), x), []
        precs = self.precisions(backend.policy)
        h = backend.input(x, precs[0])
        cache: list = []
        i = 0
        while i < len(self.layers):
            layer, prec = self.layers[i], precs[i]
            if self._fused_block(i):
                h, ctx = backend.conv_relu_pool(h, params[f"{layer.name}_w"],
                                                params[f"{layer.name}_b"], layer,
                                                self.layers[2], prec)
                cache.append(("block", i, ctx))
                i += 3
                continue
            if isinstance(layer, Conv2d):
                h, ctx = backend.conv2d(h, params[f"{layer.name}_w"],
                                        params.get(f"{layer.name}_b"), layer, prec)
            elif isinstance(layer, Linear):
                h, ctx = backend.linear(h, params[f"{layer.name}_w"],
                                        params.get(f"{layer.name}_b"), prec)
            elif isinstance(layer, ReLU):
                h, ctx = backend.relu(h)
            elif isinstance(layer, MaxPool2d):
                h, ctx = backend.maxpool2d(h, layer)
            elif isinstance(layer, AvgPool2d):
                h, ctx = backend.avgpool2d(h, layer, prec)
            elif isinstance(layer, Flatten):
                ctx = h.shape
                h = np.ascontiguousarray(h.reshape(h.shape[0], -1))
            else:  # pragma: no cover - parse_spec admits only the kinds above
                raise TypeError(layer)
            cache.append(("layer", i, ctx))
            i += 1
        return h, cache

    def backward(self, backend, params: dict, cache: list, g: np.ndarray,
                 scale: float = 1.0) -> dict[str, np.ndarray]:
        """Gradients (by parameter name) of the mean loss times ``scale`` given its gradient
        g (N, classes) wrt the logits; ``scale`` multiplies g exactly before its rounding."""
        precs = self.precisions(backend.policy)
        first = min(i for i, layer in enumerate(self.layers) if layer.has_params)
        if scale != 1.0:
            g = np.asarray(g, np.float64) * scale
        g = backend.grad(g, precs[-1])
        gfmt = precs[-1].backward.grad
        grads: dict[str, np.ndarray] = {}
        for kind, i, ctx in reversed(cache):
            if i < first:
                break
            layer, prec = self.layers[i], precs[i]
            if layer.has_params and prec.backward.grad != gfmt:
                g = backend.grad(g, prec)
                gfmt = prec.backward.grad
            need_dx = i > first
            if kind == "block":
                dw, db = backend.conv_relu_pool_backward(ctx, g, prec)
                grads[f"{layer.name}_w"], grads[f"{layer.name}_b"] = dw, db
                continue
            if isinstance(layer, Conv2d | Linear):
                back = backend.conv2d_backward if isinstance(layer, Conv2d) \
                    else backend.linear_backward
                g, dw, db = back(ctx, g, prec, need_dx)
                grads[f"{layer.name}_w"] = dw
                if db is not None:
                    grads[f"{layer.name}_b"] = db
            elif isinstance(layer, ReLU):
                g = backend.relu_backward(ctx, g)
            elif isinstance(layer, MaxPool2d):
                g = backend.maxpool2d_backward(ctx, g, prec)
            elif isinstance(layer, AvgPool2d):
                g = backend.avgpool2d_backward(ctx, g, prec)  # rounded into its grad format
                gfmt = prec.backward.grad
            elif isinstance(layer, Flatten):
                g = np.reshape(g, ctx)
        return {k: grads[k] for k in self.param_shapes}

    def train_step(self, backend, params: dict, x: np.ndarray, y: np.ndarray, optimizer,
                   step: int) -> tuple[dict, float, int]:
        """One optimizer step on a batch: (new params, batch loss, correct predictions)."""
        backend.begin_step(step)
        if backend.runs_network:  # the accelerator runs this very step (plain SGD only)
            p, loss, c = backend.step(self._founding_params(params), x, y, optimizer.lr, step)
            return p.arrays(), loss, c
        z, cache = self.forward(backend, params, x)
        loss, g, pred = softmax_xent(z, y)
        grads = self.backward(backend, params, cache, g, optimizer.scale)
        return optimizer.step(backend, self, params, grads), loss, int((pred == y).sum())

    def _founding_params(self, params: dict):
        from .model import Params

        if not self.is_founding:
            raise ValueError(msg("backend", "the accelerator runs only the founding network",
                                 self.name))
        return Params(**{k: params[k] for k in Params.NAMES})


def _founding() -> Sequential:
    """conv 12@3×3 → ReLU → maxpool 2 → flatten → linear 10. Its layers are named conv, relu,
    pool, flatten and dense, so its parameters keep the names earlier runs stored (conv_w,
    conv_b, dense_w, dense_b)."""
    return Sequential([Conv2d(name="conv", out_channels=12, kernel_size=3), ReLU(name="relu"),
                       MaxPool2d(name="pool", size=2), Flatten(name="flatten"),
                       Linear(name="dense", out_features=10)], name="founding")


def _lenet5() -> Sequential:
    """conv 6@5×5 pad 2 → ReLU → maxpool 2 → conv 16@5×5 → ReLU → maxpool 2 → 120 → ReLU →
    84 → ReLU → 10 (He init)."""
    return Sequential([Conv2d(out_channels=6, kernel_size=5, padding=2), ReLU(),
                       MaxPool2d(size=2), Conv2d(out_channels=16, kernel_size=5), ReLU(),
                       MaxPool2d(size=2), Flatten(), Linear(out_features=120), ReLU(),
                       Linear(out_features=84), ReLU(), Linear(out_features=10)],
                      name="lenet5")


#: Model presets by name (each call builds a fresh, unbuilt model).
PRESETS = {"founding": _founding, "lenet5": _lenet5}


def load_model(spec: str | dict | list | Sequential) -> Sequential:
    """A model from a preset name, a ``.toml``/``.json`` spec file, a spec table or list, or a
    Sequential (returned as is). A file's model is named after the file unless it says."""
    if isinstance(spec, Sequential):
        return spec
    if isinstance(spec, dict | list):
        return Sequential.from_dict(spec if isinstance(spec, dict) else {"layers": spec})
    text = str(spec)
    if text in PRESETS:
        return PRESETS[text]()
    if text.lower().endswith((".toml", ".json")):
        from pathlib import Path

        d = load_spec(text)
        d.setdefault("name", Path(text).stem)
        try:
            return Sequential.from_dict(d, "model")
        except SpecError as e:
            raise SpecError(f"model file {text}: {e}") from None
    raise ValueError(msg("model", "unknown preset or file", text,
                         "presets: " + ", ".join(PRESETS) + ", or a .toml/.json spec"))
