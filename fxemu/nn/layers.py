"""Layers of a :class:`fxemu.nn.Sequential` model and the model specs that describe them.

A layer is a pure description (a frozen dataclass): its kind, its name and its fields. Shapes
are inferred when a model is built for an input shape (:meth:`Sequential.build`); the
arithmetic lives in the backends (:class:`fxemu.backends.Backend`, one method per layer kind).

Kinds and fields (a spec's ``[[layers]]`` table uses the same names; ``type`` picks the kind):

``conv2d``     ``out_channels``, ``kernel_size`` (int or [kh, kw]), ``stride`` (int or pair,
               default 1), ``padding`` (int, [ph, pw] or ``"same"``; zeros; default 0),
               ``bias`` (default true). Weights (F, C, kh, kw), He-normal; bias zero.
``maxpool2d``  ``size`` (int or pair), ``stride`` (default: size), ``padding`` (default 0;
               padded cells never win). Ties: the first maximum in row-major order.
``avgpool2d``  ``size``, ``stride``, ``padding`` (zeros, counted in the average): the window
               sum through the layer's pool Mac, then one multiply by 1/(kh·kw) rounded into
               the activation format (:func:`fxemu.avgpool2d`).
``relu``       ``max(x, 0)``; its gradient passes where x > 0 (ReLU'(0) = 0).
``flatten``    (N, C, H, W) → (N, C·H·W) in row-major order.
``linear``     ``out_features``, ``bias`` (default true). Weights (out, in), He-normal.

Every layer has a ``name``; unnamed layers get ``<prefix><i>`` (conv1, conv2, pool1, relu1,
flatten1, fc1, …; the i-th layer of that prefix) when the model is built. A spec is either a
list of layers or a table ``{"layers": [...]}`` (TOML: ``[[layers]]`` tables; JSON: an
object); :func:`parse_spec` validates it and names the offending layer and field in one line,
``layers[2] (pool1).stride: must be an int >= 1; got 0``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, fields
from pathlib import Path

from .._errors import msg

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["KINDS", "AvgPool2d", "Conv2d", "Flatten", "Layer", "Linear", "MaxPool2d", "ReLU",
           "SpecError", "layer_from_dict", "load_spec", "parse_spec"]


class SpecError(ValueError):
    """A model spec that cannot be built (the message names the layer and the field)."""


def _pair(v: object, what: str, lo: int) -> tuple[int, int]:
    if isinstance(v, list | tuple) and len(v) == 2:
        a, b = v
    else:
        a = b = v
    for u in (a, b):
        if isinstance(u, bool) or not isinstance(u, int) or u < lo:
            raise SpecError(msg(what, f"must be an int >= {lo} or a pair of them", v))
    return int(a), int(b)


@dataclass(frozen=True)
class Layer:
    """Base of every layer: ``name`` ("" until the model names it)."""

    name: str = ""
    kind = "layer"
    prefix = "layer"
    #: True for layers with weights (a weight and, optionally, a bias)
    has_params = False

    def validate(self, what: str) -> None:
        """Check the fields (``what`` names the layer in the message)."""

    def out_shape(self, shape: tuple[int, ...], what: str) -> tuple[int, ...]:
        """The per-sample output shape for a per-sample input shape."""
        return shape

    def param_shapes(self, shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """``{"w": shape, "b": shape}`` of a layer with weights, for its input shape."""
        return {}

    def fan_in(self, shape: tuple[int, ...]) -> int:
        return 1

    def to_dict(self) -> dict:
        """The spec table of this layer (``type`` and every field, tuples as lists)."""
        d: dict = {"type": self.kind}
        for f in fields(self):
            v = getattr(self, f.name)
            d[f.name] = list(v) if isinstance(v, tuple) else v
        return d


def _window_out(h: int, w: int, k: tuple[int, int], s: tuple[int, int],
                pad: tuple[int, int], what: str) -> tuple[int, int]:
    hp, wp = h + 2 * pad[0], w + 2 * pad[1]
    if k[0] > hp or k[1] > wp:
        raise SpecError(msg(what, f"kernel {k[0]}x{k[1]} is larger than its padded input "
                            f"{hp}x{wp}"))
    return (hp - k[0]) // s[0] + 1, (wp - k[1]) // s[1] + 1


def _spatial(shape: tuple[int, ...], what: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise SpecError(msg(what, "needs an input of shape (C, H, W) (is a flatten or "
                            "linear layer before it?)", shape))
    return shape


@dataclass(frozen=True)
class Conv2d(Layer):
    """2-D cross-correlation with zero padding and stride (see the module docstring)."""

    out_channels: int = 1
    kernel_size: int | tuple[int, int] = 3
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] | str = 0
    bias: bool = True
    kind = "conv2d"
    prefix = "conv"
    has_params = True

    def validate(self, what: str) -> None:
        if isinstance(self.out_channels, bool) or not isinstance(self.out_channels, int) \
                or self.out_channels < 1:
            raise SpecError(msg(f"{what}.out_channels", "must be an int >= 1",
                                self.out_channels))
        _pair(self.kernel_size, f"{what}.kernel_size", 1)
        _pair(self.stride, f"{what}.stride", 1)
        if self.padding != "same":
            _pair(self.padding, f"{what}.padding", 0)
        elif _pair(self.stride, f"{what}.stride", 1) != (1, 1):
            raise SpecError(msg(f"{what}.padding", "'same' needs stride 1", self.stride))
        if not isinstance(self.bias, bool):
            raise SpecError(msg(f"{what}.bias", "must be true or false", self.bias))

    @property
    def kernel(self) -> tuple[int, int]:
        return _pair(self.kernel_size, "kernel_size", 1)

    @property
    def strides(self) -> tuple[int, int]:
        return _pair(self.stride, "stride", 1)

    @property
    def pads(self) -> tuple[int, int, int, int]:
        """Zero padding (top, bottom, left, right); ``"same"`` puts the odd one at the end."""
        if self.padding == "same":
            kh, kw = self.kernel
            return (kh - 1) // 2, kh // 2, (kw - 1) // 2, kw // 2
        ph, pw = _pair(self.padding, "padding", 0)
        return ph, ph, pw, pw

    def out_shape(self, shape, what):
        _c, h, w = _spatial(shape, what)
        t, b, left, r = self.pads
        kh, kw = self.kernel
        sh, sw = self.strides
        if kh > h + t + b or kw > w + left + r:
            raise SpecError(msg(f"{what}.kernel_size", f"kernel {kh}x{kw} is larger than its "
                                f"padded input {h + t + b}x{w + left + r}"))
        return self.out_channels, (h + t + b - kh) // sh + 1, (w + left + r - kw) // sw + 1

    def param_shapes(self, shape):
        kh, kw = self.kernel
        d = {"w": (self.out_channels, shape[0], kh, kw)}
        if self.bias:
            d["b"] = (self.out_channels,)
        return d

    def fan_in(self, shape):
        kh, kw = self.kernel
        return shape[0] * kh * kw


@dataclass(frozen=True)
class _Pool(Layer):
    size: int | tuple[int, int] = 2
    stride: int | tuple[int, int] | None = None
    padding: int | tuple[int, int] = 0
    prefix = "pool"

    def validate(self, what: str) -> None:
        k = _pair(self.size, f"{what}.size", 1)
        if self.stride is not None:
            _pair(self.stride, f"{what}.stride", 1)
        p = _pair(self.padding, f"{what}.padding", 0)
        if p[0] * 2 > k[0] or p[1] * 2 > k[1]:
            raise SpecError(msg(f"{what}.padding", "must be at most half the window size",
                                self.padding))

    @property
    def window(self) -> tuple[int, int]:
        return _pair(self.size, "size", 1)

    @property
    def strides(self) -> tuple[int, int]:
        return self.window if self.stride is None else _pair(self.stride, "stride", 1)

    @property
    def pads(self) -> tuple[int, int]:
        return _pair(self.padding, "padding", 0)

    @property
    def overlapping(self) -> bool:
        """Windows share input cells (a stride below the window size)."""
        return any(s < k for s, k in zip(self.strides, self.window, strict=True))

    @property
    def simple(self) -> bool:
        """Square non-overlapping windows without padding (stride = size)."""
        k = self.window
        return k[0] == k[1] and self.strides == k and self.pads == (0, 0)

    def out_shape(self, shape, what):
        c, h, w = _spatial(shape, what)
        return (c, *_window_out(h, w, self.window, self.strides, self.pads, f"{what}.size"))


@dataclass(frozen=True)
class MaxPool2d(_Pool):
    """Max pooling; the first maximum of each window in row-major order wins."""

    kind = "maxpool2d"


@dataclass(frozen=True)
class AvgPool2d(_Pool):
    """Average pooling: the window sum through the pool Mac, times 1/(kh·kw) rounded once."""

    kind = "avgpool2d"


@dataclass(frozen=True)
class ReLU(Layer):
    """``max(x, 0)``."""

    kind = "relu"
    prefix = "relu"


@dataclass(frozen=True)
class Flatten(Layer):
    """(C, H, W) → C·H·W, row-major."""

    kind = "flatten"
    prefix = "flatten"

    def out_shape(self, shape, what):
        n = 1
        for v in shape:
            n *= v
        return (n,)


@dataclass(frozen=True)
class Linear(Layer):
    """Dense layer ``x @ W.T + b``."""

    out_features: int = 1
    bias: bool = True
    kind = "linear"
    prefix = "fc"
    has_params = True

    def validate(self, what: str) -> None:
        if isinstance(self.out_features, bool) or not isinstance(self.out_features, int) \
                or self.out_features < 1:
            raise SpecError(msg(f"{what}.out_features", "must be an int >= 1",
                                self.out_features))
        if not isinstance(self.bias, bool):
            raise SpecError(msg(f"{what}.bias", "must be true or false", self.bias))

    def out_shape(self, shape, what):
        if len(shape) != 1:
            raise SpecError(msg(what, "needs a flat input (put a flatten layer before it)",
                                shape))
        return (self.out_features,)

    def param_shapes(self, shape):
        d = {"w": (self.out_features, shape[0])}
        if self.bias:
            d["b"] = (self.out_features,)
        return d

    def fan_in(self, shape):
        return shape[0]


#: Layer classes by spec ``type`` (with a few common aliases).
KINDS: dict[str, type[Layer]] = {
    "conv2d": Conv2d, "conv": Conv2d, "maxpool2d": MaxPool2d, "maxpool": MaxPool2d,
    "avgpool2d": AvgPool2d, "avgpool": AvgPool2d, "relu": ReLU, "flatten": Flatten,
    "linear": Linear, "dense": Linear,
}
_REQUIRED = {Conv2d: ("out_channels", "kernel_size"), MaxPool2d: ("size",),
             AvgPool2d: ("size",), Linear: ("out_features",)}


def layer_from_dict(d: object, what: str) -> Layer:
    """One layer from its spec table (``type`` and fields); ``what`` names it in errors."""
    if not isinstance(d, dict):
        raise SpecError(msg(what, "must be a table with a type", d))
    kind = d.get("type")
    if kind not in KINDS:
        raise SpecError(msg(f"{what}.type", "must be one of " + ", ".join(
            k for k in KINDS if KINDS[k].kind == k), kind))
    cls = KINDS[kind]
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known - {"type"})
    if unknown:
        raise SpecError(msg(f"{what}.{unknown[0]}", f"is not a field of {cls.kind} (fields: "
                            + ", ".join(sorted(known)) + ")"))
    missing = [k for k in _REQUIRED.get(cls, ()) if k not in d]
    if missing:
        raise SpecError(msg(f"{what}.{missing[0]}", "missing"))
    name = d.get("name", "")
    if not isinstance(name, str) or (name and not name.replace("_", "").isalnum()):
        raise SpecError(msg(f"{what}.name", "must be letters, digits and underscores", name))
    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k != "type"}
    layer = cls(**kw)
    layer.validate(what)
    return layer


def parse_spec(spec: object, source: str = "model") -> list[Layer]:
    """Layers of a spec: a list of layer tables or Layers, or ``{"layers": [...]}`` (with an
    optional ``name``). Raises :class:`SpecError` naming ``source``, the layer and the field."""
    if isinstance(spec, dict):
        unknown = sorted(set(spec) - {"layers", "name"})
        if unknown:
            raise SpecError(msg(f"{source}.{unknown[0]}", "unknown key (a model spec has "
                                "layers and an optional name)"))
        spec = spec.get("layers")
    if not isinstance(spec, list | tuple) or not spec:
        raise SpecError(msg(f"{source}.layers", "must be a non-empty list of layer tables",
                            type(spec).__name__))
    out = []
    for i, d in enumerate(spec):
        what = f"layers[{i}]"
        if isinstance(d, Layer):
            d.validate(what + (f" ({d.name})" if d.name else ""))
            out.append(d)
            continue
        if isinstance(d, dict) and isinstance(d.get("name"), str) and d["name"]:
            what += f" ({d['name']})"
        out.append(layer_from_dict(d, what))
    return out


def load_spec(path: str | Path) -> dict:
    """The table of a ``.toml`` or ``.json`` model spec file (``ValueError`` naming the file)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(msg("model file", "not found", str(path)))
    try:
        raw = path.read_bytes().decode()
        d = tomllib.loads(raw) if path.suffix.lower() == ".toml" else json.loads(raw)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError,
            RecursionError) as e:
        raise SpecError(msg(f"model file {path}", "cannot be parsed", str(e))) from None
    if not isinstance(d, dict | list):
        raise SpecError(msg(f"model file {path}", "must hold a table with layers",
                            type(d).__name__))
    return d if isinstance(d, dict) else {"layers": d}

