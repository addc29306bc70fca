"""Precision policies: a format for every tensor role and a ``Mac`` for every product, per stage,
with per-layer overrides.

Stages and roles (defaults for every layer of the model):

``forward``
    ``input`` (images as read), ``weight`` (weights and biases as the forward datapath reads
    them), ``activation`` (conv, linear and avgpool outputs: ``R_activation(mac_result + bias)``,
    one rounding after the Mac's own), ``conv``/``dense`` (Macs of conv2d and linear layers),
    ``pool`` (optional: the Mac summing an avgpool window; default the ``conv`` Mac).
``backward``
    ``weight`` (weights as the backward datapath reads them), ``grad`` (every gradient
    tensor: logits, pooled and conv-output gradients, dW, db), ``dense_dw``, ``dense_dx``,
    ``conv_dw`` (Macs; bias gradients use the matching dW Mac over the batch), ``conv_dx``
    (optional: a conv layer's input gradient, and the sum of overlapping avgpool windows'
    gradient shares; default the ``dense_dx`` Mac — the founding network never forms one,
    its conv is the first layer).
``update``
    ``master`` (the stored weights): ``W ← R_master(W - lr·d)``, the product and difference
    exact, one rounding (stochastic if ``master`` says so), with ``d = dW`` for plain SGD;
    ``momentum`` (optional: the momentum buffer's format, default ``master``): with a momentum
    coefficient μ > 0 (:class:`fxemu.nn.SGD`) ``v ← R_momentum(μ·v + d)`` and ``d = v``;
    ``sr_bits`` (optional: random bits of a stochastic ``master`` rounding).

``layers``
    ``[layers.NAME.forward]`` / ``[layers.NAME.backward]`` / ``[layers.NAME.update]`` tables
    override any of the roles above for the layer named NAME (the names of the model's spec:
    conv1, pool1, fc1, …); what a table leaves out comes from the stage tables. A name absent
    from the model is refused when training starts (:meth:`Policy.check_layers`).

Softmax and the cross-entropy gradient ``(softmax(z) - onehot)/B`` run on the host in float64
from the forward logits for every backend (as the accelerator's driver does); the result is
rounded into the backward ``grad`` format of the last layer.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from ._errors import msg
from .formats import Block, Fixed, Float, Mac, parse

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["PRESETS", "Policy", "load_policy"]

_F32 = Float(8, 23)
_F64 = Float(11, 52)
_F16 = Float(5, 10)


def _fmt(v: object, what: str) -> Fixed | Float | None:
    if v is None or isinstance(v, Fixed | Float):
        return v
    if isinstance(v, str):
        try:
            f = parse(v)
        except ValueError as e:
            raise ValueError(msg(what, str(e))) from None
        if isinstance(f, Block):
            raise ValueError(msg(what, "a block format is blocked along the reduction axis of "
                                 "the product it feeds: name it as that Mac's a/b operand",
                                 v, "e.g. dense = {acc = 'float32', a = 'mxfp8_e4m3', "
                                 "b = 'mxfp8_e4m3'}"))
        return f
    raise TypeError(msg(what, "must be a format string", v))


def _mac(v: object, what: str) -> Mac:
    if isinstance(v, Mac):
        return v
    if isinstance(v, str):
        return Mac(acc=_fmt(v, what))
    if isinstance(v, dict):
        unknown = set(v) - {"acc", "mul", "out", "order", "a", "b"}
        if unknown or "acc" not in v:
            raise ValueError(msg(what, "a Mac table needs acc and may have mul, out, order, "
                                 "a, b", sorted(v)))
        try:
            return Mac(acc=_fmt(v["acc"], f"{what}.acc"), mul=_fmt(v.get("mul"), f"{what}.mul"),
                       out=_fmt(v.get("out"), f"{what}.out"),
                       order=v.get("order", "sequential"), a=v.get("a"), b=v.get("b"))
        except ValueError as e:
            raise ValueError(msg(what, str(e))) from None
    raise TypeError(msg(what, "must be a format string or a Mac table", v))


@dataclass(frozen=True)
class Forward:
    input: Fixed | Float
    weight: Fixed | Float
    activation: Fixed | Float
    conv: Mac
    dense: Mac
    pool: Mac | None = None

    @property
    def pool_mac(self) -> Mac:
        """The avgpool window-sum Mac (``pool``, else ``conv``)."""
        return self.conv if self.pool is None else self.pool


@dataclass(frozen=True)
class Backward:
    weight: Fixed | Float
    grad: Fixed | Float
    dense_dw: Mac
    dense_dx: Mac
    conv_dw: Mac
    conv_dx: Mac | None = None

    @property
    def conv_dx_mac(self) -> Mac:
        """The conv input-gradient Mac (``conv_dx``, else ``dense_dx``)."""
        return self.dense_dx if self.conv_dx is None else self.conv_dx


@dataclass(frozen=True)
class Update:
    master: Fixed | Float
    sr_bits: int | None = None
    momentum: Fixed | Float | None = None

    @property
    def momentum_fmt(self) -> Fixed | Float:
        """The momentum buffer's format (``momentum``, else ``master``)."""
        return self.master if self.momentum is None else self.momentum


_FORWARD_KEYS = {"input": "fmt", "weight": "fmt", "activation": "fmt", "conv": "mac",
                 "dense": "mac", "pool": "optmac"}
_BACKWARD_KEYS = {"weight": "fmt", "grad": "fmt", "dense_dw": "mac", "dense_dx": "mac",
                  "conv_dw": "mac", "conv_dx": "optmac"}
_UPDATE_KEYS = {"master": "fmt", "sr_bits": "opt", "momentum": "optfmt"}
_STAGES = {"forward": _FORWARD_KEYS, "backward": _BACKWARD_KEYS, "update": _UPDATE_KEYS}


def _stage_values(table: dict, keys: dict[str, str], what: str, partial: bool) -> dict:
    """Parsed values of one stage table (every required key present unless ``partial``)."""
    extra = set(table) - set(keys)
    if extra:
        raise ValueError(msg(f"{what}.{sorted(extra)[0]}", "unknown key",
                             hint="known: " + ", ".join(keys)))
    out = {}
    for k, kind in keys.items():
        if k not in table:
            if partial or kind.startswith("opt"):
                continue
            raise ValueError(msg(f"{what}.{k}", "missing"))
        v = table[k]
        where = f"{what}.{k}"
        out[k] = _mac(v, where) if kind in ("mac", "optmac") else (
            _fmt(v, where) if kind in ("fmt", "optfmt") else v)
    sr = out.get("sr_bits")
    if sr is not None and (type(sr) is not int or not 1 <= sr <= 62):
        raise ValueError(msg(f"{what}.sr_bits", "must be an int in 1..62 (random bits "
                             "below the kept LSB)", sr))
    return out


@dataclass(frozen=True)
class Policy:
    """A complete precision policy (see the module docstring for the roles)."""

    name: str
    forward: Forward
    backward: Backward
    update: Update
    native_dtype: str | None = field(default=None)
    #: per-layer overrides: layer name -> {"forward"|"backward"|"update": {role: value}}
    layers: dict = field(default_factory=dict, hash=False)

    def for_layer(self, name: str) -> Policy:
        """The policy one layer runs under: the stage roles with ``layers[name]`` applied."""
        over = self.layers.get(name)
        if not over:
            return self
        return replace(self, forward=replace(self.forward, **over.get("forward", {})),
                       backward=replace(self.backward, **over.get("backward", {})),
                       update=replace(self.update, **over.get("update", {})), layers={})

    def check_layers(self, names: list[str], model: str = "the model") -> None:
        """Refuse overrides for layers ``names`` does not hold (one line naming the layer)."""
        missing = [n for n in self.layers if n not in names]
        if missing:
            raise ValueError(msg(f"policy.layers.{missing[0]}", f"{model} has no layer of "
                                 "that name", hint="its layers: " + ", ".join(names)))

    def to_dict(self) -> dict:
        """A plain, JSON-serialisable description (round-trips through :func:`from_dict`)."""
        def mac(m: Mac) -> dict:
            d = {"acc": str(m.acc), "order": m.order}
            if m.mul is not None:
                d["mul"] = str(m.mul)
            if m.out is not None:
                d["out"] = str(m.out)
            if m.block:
                d["a"], d["b"] = str(m.a), str(m.b)
            return d

        def stage(s: object) -> dict:
            return {f.name: (mac(v) if isinstance(v := getattr(s, f.name), Mac)
                             else (str(v) if isinstance(v, Fixed | Float) else v))
                    for f in fields(s) if getattr(s, f.name) is not None}

        def partial(o: dict) -> dict:
            return {k: (mac(v) if isinstance(v, Mac) else (str(v) if isinstance(v, Fixed | Float)
                                                          else v)) for k, v in o.items()}

        d = {"name": self.name, "forward": stage(self.forward),
             "backward": stage(self.backward), "update": stage(self.update)}
        if self.native_dtype:
            d["native_dtype"] = self.native_dtype
        if self.layers:
            d["layers"] = {n: {st: partial(t) for st, t in o.items()}
                           for n, o in self.layers.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Policy:
        """Build and validate a policy from a mapping (as in a TOML/JSON policy file)."""
        if not isinstance(d, dict):
            raise TypeError(msg("policy", "must be a table", type(d).__name__))
        unknown = set(d) - {"name", "forward", "backward", "update", "native_dtype", "layers"}
        if unknown:
            raise ValueError(msg("policy", "unknown keys", sorted(unknown)))
        for key in ("forward", "backward", "update"):
            if not isinstance(d.get(key), dict):
                raise ValueError(msg(f"policy.{key}", "missing table"))
        fw, bw, up = (_stage_values(d[st], keys, f"policy.{st}", False)
                      for st, keys in _STAGES.items())
        nd = d.get("native_dtype")
        if nd not in (None, "float32", "float64"):
            raise ValueError(msg("policy.native_dtype", "must be float32 or float64", nd))
        layers = d.get("layers", {})
        if not isinstance(layers, dict):
            raise ValueError(msg("policy.layers", "must be a table of layer tables", layers))
        over: dict = {}
        for name, table in layers.items():
            what = f"policy.layers.{name}"
            if not isinstance(table, dict) or not table or set(table) - set(_STAGES):
                raise ValueError(msg(what, "must be a table of forward/backward/update tables",
                                     sorted(table) if isinstance(table, dict) else table))
            over[str(name)] = {}
            for st, t in table.items():
                if not isinstance(t, dict):
                    raise ValueError(msg(f"{what}.{st}", "must be a table", t))
                over[str(name)][st] = _stage_values(t, _STAGES[st], f"{what}.{st}", True)
        return cls(name=str(d.get("name", "custom")), forward=Forward(**fw),
                   backward=Backward(**bw), update=Update(**up), native_dtype=nd, layers=over)

    def with_name(self, name: str) -> Policy:
        return replace(self, name=name)


def _uniform(name: str, fw: Fixed | Float, bw: Fixed | Float, fw_acc: Fixed | Float,
             bw_acc: Fixed | Float, master: Fixed | Float, native: str | None,
             order: str = "sequential") -> Policy:
    return Policy(
        name=name,
        forward=Forward(input=fw, weight=fw, activation=fw, conv=Mac(fw_acc, order=order),
                        dense=Mac(fw_acc, order=order)),
        backward=Backward(weight=bw, grad=bw, dense_dw=Mac(bw_acc, order=order),
                          dense_dx=Mac(bw_acc, order=order), conv_dw=Mac(bw_acc, order=order)),
        update=Update(master=master),
        native_dtype=native,
    )


_FX16 = Fixed(16, 8, rounding="rnd_conv", overflow="sat")
_FX32 = Fixed(32, 16, rounding="rnd_conv", overflow="sat")

#: Named policies. ``fwXbwY``: forward/backward data in X/Y-bit IEEE floats (the founding
#: study); 16-bit data accumulate in float32 (sequentially) and results round to half, as
#: numpy's float16 matmul does; master weights keep the backward precision. ``fixed16``:
#: ap_fixed<16,8,AP_RND_CONV,AP_SAT> data, ap_fixed<32,16,AP_RND_CONV,AP_SAT> accumulators.
PRESETS: dict[str, Policy] = {
    "float64": _uniform("float64", _F64, _F64, _F64, _F64, _F64, "float64"),
    "fw32bw32": _uniform("fw32bw32", _F32, _F32, _F32, _F32, _F32, "float32"),
    "fw16bw32": _uniform("fw16bw32", _F16, _F32, _F32, _F32, _F32, None),
    "fw16bw16": _uniform("fw16bw16", _F16, _F16, _F32, _F32, _F16, None),
    "fixed16": _uniform("fixed16", _FX16, _FX16, _FX32, _FX32, _FX16, None),
    "fixed16_sr": Policy(
        name="fixed16_sr",
        forward=_uniform("x", _FX16, _FX16, _FX32, _FX32, _FX16, None).forward,
        backward=_uniform("x", _FX16, _FX16, _FX32, _FX32, _FX16, None).backward,
        update=Update(master=Fixed(16, 8, rounding="stochastic", overflow="sat")),
    ),
}


def _block_policy(name: str, fw: tuple[str, str], bw: tuple[str, str]) -> Policy:
    """MX training as in the OCP MX results: every tensor held in float32 (master weights
    too); each product's operands converted into block formats along its reduction axis by
    the Mac (``fw``: the forward products' a and b; ``bw``: the backward products', the conv
    input gradient's too), accumulated sequentially in float32; average pooling (no product)
    sums in float32."""
    def mac(ab: tuple[str, str]) -> Mac:
        return Mac(_F32, a=ab[0], b=ab[1])

    return Policy(name=name,
                  forward=Forward(input=_F32, weight=_F32, activation=_F32, conv=mac(fw),
                                  dense=mac(fw), pool=Mac(_F32)),
                  backward=Backward(weight=_F32, grad=_F32, dense_dw=mac(bw),
                                    dense_dx=mac(bw), conv_dw=mac(bw)),
                  update=Update(master=_F32))


_MXFP4_SR = ("block[float<2,1,special=none,rounding=stochastic,overflow=sat>; k=32; "
             "scale=e8m0]")

#: MX presets: ``mxfp8`` (forward E4M3, backward E5M2), ``mxfp6`` (forward E2M3, backward
#: E3M2), ``mxfp4_sr`` (MXFP4 E2M1; the backward products' operands rounded stochastically,
#: as MXFP4 training recipes do); see :func:`_block_policy`.
PRESETS.update({
    "mxfp8": _block_policy("mxfp8", ("mxfp8_e4m3", "mxfp8_e4m3"), ("mxfp8_e5m2", "mxfp8_e5m2")),
    "mxfp6": _block_policy("mxfp6", ("mxfp6_e2m3", "mxfp6_e2m3"), ("mxfp6_e3m2", "mxfp6_e3m2")),
    "mxfp4_sr": _block_policy("mxfp4_sr", ("mxfp4_e2m1", "mxfp4_e2m1"), (_MXFP4_SR, _MXFP4_SR)),
})


def load_policy(spec: str | Path | dict | Policy) -> Policy:
    """A policy from a preset name, a ``.toml``/``.json`` file path, a mapping or a Policy."""
    if isinstance(spec, Policy):
        return spec
    if isinstance(spec, dict):
        return Policy.from_dict(spec)
    text = str(spec)
    if text in PRESETS:
        return PRESETS[text]
    path = Path(text)
    if path.suffix.lower() in (".toml", ".json"):
        if not path.is_file():
            raise FileNotFoundError(msg("policy file", "not found", str(path)))
        raw = path.read_bytes()
        try:
            d = tomllib.loads(raw.decode()) if path.suffix.lower() == ".toml" else json.loads(raw)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError,
                RecursionError) as e:
            raise ValueError(msg(f"policy file {path}", "cannot be parsed", str(e))) from None
        if not isinstance(d, dict):
            raise ValueError(msg(f"policy file {path}", "must hold a table (a JSON object) "
                                 "at the top level", type(d).__name__))
        d.setdefault("name", path.stem)
        return Policy.from_dict(d)
    raise ValueError(msg("policy", "unknown preset or file", text,
                         "presets: " + ", ".join(PRESETS)))
