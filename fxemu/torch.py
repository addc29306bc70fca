"""PyTorch bridge: train a ``torch.nn.Module`` through fxemu's exact datapath (extra ``torch``).

:func:`emulate` returns a deep copy of a module in which every ``nn.Conv2d`` and ``nn.Linear``
runs its forward product, its input-gradient product and its weight-gradient product through
the :class:`fxemu.backends.EmulatedBackend` of a precision policy, as
``torch.autograd.Function`` s on CPU float64 tensors::

    import fxemu.torch as fxt
    net = fxt.emulate(torch_net, "fixed16", seed=0)      # a copy; torch_net is untouched
    opt = fxt.SGD(net.parameters(), lr=0.01)             # W <- R_master(W - lr*dW)
    for x, y in batches:
        opt.zero_grad()
        loss = fxt.cross_entropy(net(x), y)              # float64 host softmax, as fxemu
        loss.backward()
        opt.step()

Semantics (those of ``fxemu train --backend emulated`` on a :class:`fxemu.nn.Sequential`, layer
by layer; each layer runs under ``policy.for_layer(NAME)``, NAME its ``named_modules()`` name,
so a policy's ``[layers."0"]`` or ``[layers.fc1]`` table overrides one torch layer):

- The copy holds float64 parameters: the master weights, rounded into the master format when
  :func:`emulate` runs (as ``fxemu train`` rounds its initial weights). Outputs are float64
  tensors holding values of the policy's formats (float32 inputs convert exactly).
- The first positional tensor given to the module is the network input: it is rounded into
  the first layer's ``forward.input`` format (its gradient passes through unchanged).
- ``Conv2d`` (stride, zero padding as torch defines them, ``"same"`` included), ``Linear``,
  ``MaxPool2d`` and ``AvgPool2d`` (kernel, stride, padding) run the emulated backend's
  ``conv2d``/``linear``/``maxpool2d``/``avgpool2d`` methods and their backward methods (see
  :mod:`fxemu.backends.base` for the roles and reduction orders); the input gradient of a
  conv/linear is formed only when something upstream needs it.
- The gradient the loss hands back is multiplied by the optimizer's loss scale and rounded into
  the backward ``grad`` format where it enters the last Conv2d/Linear, and rounded again only
  where a layer's ``grad`` format differs (as :meth:`fxemu.nn.Sequential.backward`).
- ``ReLU``, ``Flatten``, ``Unflatten``, ``Identity`` and ``Dropout`` (evaluation mode, or
  ``p = 0``) are exact selections and stay torch's.
- :class:`SGD` applies :class:`fxemu.nn.SGD`'s rule through the backend (momentum, weight
  decay, loss scaling) and starts the next step.
- Stochastic rounding draws the emulated backend's keys in its order: one backend per emulated
  module, keyed by ``seed``, the step counter :class:`SGD` advances, and the call number in the
  step. Training the founding network (or LeNet-5, with per-layer overrides and momentum)
  through the bridge is therefore bit-identical to ``fxemu train`` (``tests/test_torch_bridge.
  py``) when the module is a chain of layers as a ``Sequential`` is. Use :func:`evaluating`
  around forward passes that are not training steps (evaluation draws its own keys).

Unsupported (one ``ValueError`` lists every such module with its name and type): any other
layer with parameters or arithmetic (BatchNorm, LayerNorm, Conv1d, LSTM, Softmax, ...), a torch
layer with submodules of its own (MultiheadAttention, Transformer layers), ``Conv2d`` with
``dilation != 1``, ``groups != 1`` or ``padding_mode != "zeros"``, pools with ``ceil_mode``,
``dilation``, ``return_indices``, ``count_include_pad=False`` or ``divisor_override``, and a
parameter-holding or leaf module of a user class. Arithmetic a user module writes in its own
``forward`` (``x + y``, ``F.softmax``) is plain torch and is not seen by the bridge. Tensors on
another device than the CPU raise ``ValueError``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Iterable, Iterator

import numpy as np

from ._errors import msg

try:
    import torch
    from torch import nn
except ModuleNotFoundError as _e:  # pragma: no cover - exercised in a subprocess
    if _e.name != "torch":
        raise
    raise ModuleNotFoundError(
        "fxemu.torch needs the 'torch' extra: pip install 'fxemu[torch]' (module torch is "
        "missing)", name="torch") from None

from .backends import get_backend
from .nn import SGD as _SGDRule
from .nn import Layer, softmax_xent
from .nn import layers as fl
from .policy import Policy, load_policy

__all__ = ["SGD", "EmulatedAvgPool2d", "EmulatedConv2d", "EmulatedConvReluPool",
           "EmulatedLinear", "EmulatedMaxPool2d", "Emulation", "cross_entropy", "emulate",
           "evaluating"]

#: Layers that stay torch's: exact selections (no rounding happens in them).
EXACT = (nn.ReLU, nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout)
#: Containers whose forward only calls their children.
CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


class Emulation:
    """The state one emulated module shares between its layers and its optimizer: the
    :class:`fxemu.backends.EmulatedBackend` of ``policy`` keyed by ``seed``, the training
    step (advanced by :meth:`SGD.step`), the format the gradient flowing back is held in
    (None: not yet rounded, as the loss hands it) and the loss scale of the optimizer."""

    def __init__(self, policy: Policy, seed: int) -> None:
        self.policy = policy
        self.seed = seed
        self.backend = get_backend("emulated", policy, seed)
        self.step = 0
        self.grad_fmt = None
        self.scale = 1.0
        self.names: list[str] = []
        self._prec: dict[str, Policy] = {}

    def prec(self, name: str) -> Policy:
        """The policy layer ``name`` runs under (``policy.for_layer(name)``)."""
        if name not in self._prec:
            self._prec[name] = self.policy.for_layer(name)
        return self._prec[name]

    def precisions(self, policy: Policy) -> list[Policy]:
        """Each layer's policy in :attr:`names` order (the interface :class:`fxemu.nn.SGD`
        reads a model through)."""
        return [self.prec(n) for n in self.names]

    def begin(self, step: int) -> None:
        """Start training step ``step`` (keys of its stochastic roundings restart)."""
        self.step = int(step)
        self.grad_fmt = None
        self.backend.begin_step(self.step)

    def incoming(self, g: np.ndarray, prec: Policy) -> np.ndarray:
        """The gradient entering a Conv2d/Linear backward as :meth:`fxemu.nn.Sequential.
        backward` hands it on: the loss's gradient times the loss scale, rounded into the
        layer's ``grad`` format, and rounded again only where that format changes."""
        if self.grad_fmt is None and self.scale != 1.0:
            g = g * self.scale  # exact: a power of two
        if self.grad_fmt != prec.backward.grad:
            g = self.backend.grad(g, prec)
        self.grad_fmt = prec.backward.grad
        return g


def _host(t: torch.Tensor, what: str) -> np.ndarray:
    """A CPU tensor's values as a contiguous float64 array (float inputs convert exactly)."""
    if t.device.type != "cpu":
        raise ValueError(msg(what, "fxemu.torch runs on CPU tensors only", str(t.device),
                             "move the module and its inputs with .cpu()"))
    if not t.is_floating_point():
        raise TypeError(msg(what, "must be a floating-point tensor", str(t.dtype)))
    return np.ascontiguousarray(t.detach().to(torch.float64).numpy())


def _tensor(a: np.ndarray) -> torch.Tensor:
    """A float64 tensor owning a copy of ``a`` when ``a`` is read-only (torch needs writable)."""
    a = np.ascontiguousarray(a, dtype=np.float64)
    return torch.from_numpy(a if a.flags.writeable else a.copy())


class _Input(torch.autograd.Function):
    """The network input rounded into the forward ``input`` format of the first layer;
    gradient passed through."""

    @staticmethod
    def forward(ctx, x, emu, prec):
        return _tensor(emu.backend.input(_host(x, "input"), prec))

    @staticmethod
    def backward(ctx, g):
        return g, None, None


def _spatial(xa: np.ndarray, name: str, kind: str) -> None:
    if xa.ndim != 4:
        raise ValueError(msg(f"{name} input", f"{kind} needs (N, C, H, W)", tuple(xa.shape)))


class _Linear(torch.autograd.Function):
    """``y = x @ W.T + b`` over the last dimension of x: the backend's ``linear`` and
    ``linear_backward``."""

    @staticmethod
    def forward(ctx, x, w, b, emu, name):
        prec = emu.prec(name)
        xa = _host(x, f"{name} input")
        wa = _host(w, f"{name}.weight")
        ba = _host(b, f"{name}.bias") if b is not None else None
        if xa.ndim < 1 or xa.shape[-1] != wa.shape[1]:
            raise ValueError(msg(f"{name} input", f"Linear needs (..., {wa.shape[1]})",
                                 tuple(xa.shape)))
        lead = xa.shape[:-1]
        y, ctx.layer = emu.backend.linear(np.ascontiguousarray(xa.reshape(-1, wa.shape[1])),
                                          wa, ba, prec)
        ctx.emu, ctx.name, ctx.lead, ctx.shape = emu, name, lead, wa.shape
        return _tensor(y.reshape(*lead, wa.shape[0]))

    @staticmethod
    def backward(ctx, dy):
        emu, prec = ctx.emu, ctx.emu.prec(ctx.name)
        g = emu.incoming(_host(dy, f"{ctx.name} gradient").reshape(-1, ctx.shape[0]), prec)
        dx, dw, db = emu.backend.linear_backward(ctx.layer, g, prec, ctx.needs_input_grad[0])
        if dx is not None:
            dx = _tensor(dx.reshape(*ctx.lead, ctx.shape[1]))
        return dx, _tensor(dw), (None if db is None else _tensor(db)), None, None


class _Conv2d(torch.autograd.Function):
    """Cross-correlation with stride and zero padding: the backend's ``conv2d`` and
    ``conv2d_backward``."""

    @staticmethod
    def forward(ctx, x, w, b, emu, name, layer):
        prec = emu.prec(name)
        xa = _host(x, f"{name} input")
        _spatial(xa, name, "Conv2d")
        wa = _host(w, f"{name}.weight")
        ba = _host(b, f"{name}.bias") if b is not None else None
        if xa.shape[1] != wa.shape[1]:
            raise ValueError(msg(f"{name} input", f"Conv2d needs {wa.shape[1]} channels",
                                 tuple(xa.shape)))
        layer.out_shape(xa.shape[1:], name)  # a kernel larger than the padded input: SpecError
        z, ctx.layer = emu.backend.conv2d(xa, wa, ba, layer, prec)
        ctx.emu, ctx.name = emu, name
        return _tensor(z)

    @staticmethod
    def backward(ctx, dy):
        emu, prec = ctx.emu, ctx.emu.prec(ctx.name)
        g = emu.incoming(_host(dy, f"{ctx.name} gradient"), prec)
        dx, dw, db = emu.backend.conv2d_backward(ctx.layer, g, prec, ctx.needs_input_grad[0])
        return ((None if dx is None else _tensor(dx)), _tensor(dw),
                (None if db is None else _tensor(db)), None, None, None)


class _MaxPool2d(torch.autograd.Function):
    """The backend's ``maxpool2d`` (first maximum in row-major order) and its backward (a
    routing; overlapping windows add their shares rounded into ``grad``)."""

    @staticmethod
    def forward(ctx, x, emu, name, layer):
        xa = _host(x, f"{name} input")
        _spatial(xa, name, "MaxPool2d")
        layer.out_shape(xa.shape[1:], name)
        h, ctx.layer = emu.backend.maxpool2d(xa, layer)
        ctx.emu, ctx.name = emu, name
        return _tensor(h)

    @staticmethod
    def backward(ctx, dh):
        dx = ctx.emu.backend.maxpool2d_backward(ctx.layer, _host(dh, f"{ctx.name} gradient"),
                                                ctx.emu.prec(ctx.name))
        return _tensor(dx), None, None, None


class _AvgPool2d(torch.autograd.Function):
    """The backend's ``avgpool2d`` (window sum through the pool Mac, one correctly rounded
    division into ``activation``) and its backward."""

    @staticmethod
    def forward(ctx, x, emu, name, layer):
        xa = _host(x, f"{name} input")
        _spatial(xa, name, "AvgPool2d")
        layer.out_shape(xa.shape[1:], name)
        h, ctx.layer = emu.backend.avgpool2d(xa, layer, emu.prec(name))
        ctx.emu, ctx.name = emu, name
        return _tensor(h)

    @staticmethod
    def backward(ctx, dh):
        prec = ctx.emu.prec(ctx.name)
        dx = ctx.emu.backend.avgpool2d_backward(ctx.layer, _host(dh, f"{ctx.name} gradient"),
                                                prec)
        ctx.emu.grad_fmt = prec.backward.grad  # its shares are rounded into its grad format
        return _tensor(dx), None, None, None


class _ConvReluPool(torch.autograd.Function):
    """conv → ReLU → maxpool of an input that needs no gradient: the backend's
    ``conv_relu_pool`` and its backward (fused kernels where it has them; the same values and
    keys as the composition)."""

    @staticmethod
    def forward(ctx, x, w, b, emu, name, conv, pool):
        prec = emu.prec(name)
        xa = _host(x, f"{name} input")
        _spatial(xa, name, "Conv2d")
        conv.out_shape(xa.shape[1:], name)
        h, ctx.block = emu.backend.conv_relu_pool(xa, _host(w, f"{name}.weight"),
                                                  _host(b, f"{name}.bias"), conv, pool, prec)
        ctx.emu, ctx.name = emu, name
        return _tensor(h)

    @staticmethod
    def backward(ctx, dh):
        emu, prec = ctx.emu, ctx.emu.prec(ctx.name)
        g = emu.incoming(_host(dh, f"{ctx.name} gradient"), prec)
        dw, db = emu.backend.conv_relu_pool_backward(ctx.block, g, prec)
        return None, _tensor(dw), _tensor(db), None, None, None, None


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


class _Emulated(nn.Module):
    """A torch layer computed by fxemu: its parameters (the same Parameter objects), its
    fxemu layer description and the emulation it runs in."""

    def __init__(self, src: nn.Module, layer: Layer, emu: Emulation, name: str) -> None:
        super().__init__()
        for p in ("weight", "bias"):
            if hasattr(src, p):
                setattr(self, p, getattr(src, p))
        self.layer = layer
        self._emu, self._name = emu, name

    def extra_repr(self) -> str:
        return f"{self.layer}"


class EmulatedConv2d(_Emulated):
    """An ``nn.Conv2d`` (its parameters, stride and zero padding) computed by fxemu."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Conv2d.apply(x, self.weight, self.bias, self._emu, self._name, self.layer)


class EmulatedLinear(_Emulated):
    """An ``nn.Linear`` computed by fxemu."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Linear.apply(x, self.weight, self.bias, self._emu, self._name)


class EmulatedMaxPool2d(_Emulated):
    """An ``nn.MaxPool2d`` computed by fxemu (a selection; its backward rounds only where
    windows overlap)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _MaxPool2d.apply(x, self._emu, self._name, self.layer)


class EmulatedAvgPool2d(_Emulated):
    """An ``nn.AvgPool2d`` computed by fxemu."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _AvgPool2d.apply(x, self._emu, self._name, self.layer)


class EmulatedConvReluPool(nn.Module):
    """A torch ``Conv2d`` 3×3 (stride 1, no padding, bias) → ``ReLU`` → ``MaxPool2d(2)`` run
    as one block (the founding network's, with fused kernels) when its input needs no
    gradient, else as the three emulated layers. It takes the conv's place in its
    ``Sequential`` (the conv's parameters keep their names) and the ReLU and pool become
    ``Identity``; each part keeps its own name's precision."""

    def __init__(self, conv: EmulatedConv2d, relu: nn.ReLU, pool: EmulatedMaxPool2d) -> None:
        super().__init__()
        self.weight, self.bias = conv.weight, conv.bias
        self._parts = (conv, relu, pool)  # not submodules: the parameters keep one name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, relu, pool = self._parts
        if x.requires_grad or not self.weight.requires_grad:
            return pool(relu(conv(x)))
        return _ConvReluPool.apply(x, self.weight, self.bias, conv._emu, conv._name,
                                   conv.layer, pool.layer)

    def extra_repr(self) -> str:
        conv, _, pool = self._parts
        return f"{conv.layer}, relu, {pool.layer}"


def _fuse(seq: nn.Sequential) -> None:
    """Replace each conv 3×3 → ReLU → maxpool 2 run of ``seq`` by :class:`EmulatedConvReluPool`
    (the pattern :meth:`fxemu.nn.Sequential` fuses)."""
    kids = list(seq.named_children())
    for (n0, c), (n1, r), (n2, p) in zip(kids, kids[1:], kids[2:], strict=False):
        if (type(c) is EmulatedConv2d and type(r) is nn.ReLU and type(p) is EmulatedMaxPool2d
                and c.layer.kernel == (3, 3) and c.layer.strides == (1, 1)
                and c.layer.pads == (0, 0, 0, 0) and c.layer.bias and p.layer.simple
                and p.layer.window == (2, 2)):
            setattr(seq, n0, EmulatedConvReluPool(c, r, p))
            setattr(seq, n1, nn.Identity())
            setattr(seq, n2, nn.Identity())
            return


def _layer(m: nn.Module, name: str) -> tuple[type[_Emulated], Layer] | None:
    """The emulated class and fxemu layer of a torch layer the bridge computes (None: it
    stays torch's)."""
    kind = type(m)
    if kind is nn.Conv2d:
        pad = m.padding if isinstance(m.padding, str) else _pair(m.padding)
        if pad == "valid":
            pad = 0
        return EmulatedConv2d, fl.Conv2d(name=name, out_channels=m.out_channels,
                                         kernel_size=_pair(m.kernel_size),
                                         stride=_pair(m.stride), padding=pad,
                                         bias=m.bias is not None)
    if kind is nn.Linear:
        return EmulatedLinear, fl.Linear(name=name, out_features=m.out_features,
                                         bias=m.bias is not None)
    if kind in (nn.MaxPool2d, nn.AvgPool2d):
        cls = EmulatedMaxPool2d if kind is nn.MaxPool2d else EmulatedAvgPool2d
        desc = fl.MaxPool2d if kind is nn.MaxPool2d else fl.AvgPool2d
        stride = m.stride if m.stride else m.kernel_size  # torch: stride None/() = kernel
        return cls, desc(name=name, size=_pair(m.kernel_size), stride=_pair(stride),
                         padding=_pair(m.padding))
    return None


def _why_unsupported(m: nn.Module) -> str | None:
    """None when the bridge computes ``m`` exactly (or it only holds children), else why not."""
    kind = type(m)
    bad: list[str] = []
    if kind is nn.Conv2d:
        bad = [f"{a}={getattr(m, a)!r}" for a, ok in
               (("dilation", _pair(m.dilation) == (1, 1)), ("groups", m.groups == 1),
                ("padding_mode", m.padding_mode == "zeros")) if not ok]
    elif kind is nn.MaxPool2d:
        bad = [f"{a}={getattr(m, a)!r}" for a, ok in
               (("dilation", _pair(m.dilation) == (1, 1)), ("ceil_mode", not m.ceil_mode),
                ("return_indices", not m.return_indices)) if not ok]
    elif kind is nn.AvgPool2d:
        bad = [f"{a}={getattr(m, a)!r}" for a, ok in
               (("ceil_mode", not m.ceil_mode), ("count_include_pad", m.count_include_pad),
                ("divisor_override", m.divisor_override is None)) if not ok]
    if bad:
        return ", ".join(bad) + " (unsupported)"
    if kind in (nn.Conv2d, nn.Linear, nn.MaxPool2d, nn.AvgPool2d) or kind in CONTAINERS:
        return None
    if kind in EXACT:
        return None
    if kind.__module__.startswith("torch."):
        return "not emulated"
    if any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(False)):
        return "holds parameters or buffers of its own"
    if not any(True for _ in m.children()):
        return "a leaf module the bridge does not know"
    return None


def _dropout_guard(m: nn.Module, args: tuple) -> None:
    if m.training and m.p > 0:
        raise ValueError(msg("Dropout", "fxemu.torch runs Dropout in evaluation mode only "
                             "(its 1/(1-p) scaling is arithmetic)", m.p, "call .eval() on it"))


def emulate(module: nn.Module, policy: str | Policy | dict, *, seed: int = 0) -> nn.Module:
    """A deep copy of ``module`` whose Conv2d, Linear, MaxPool2d and AvgPool2d layers run
    through fxemu's emulated backend under ``policy``.

    ``policy``: a preset name, a policy file path, a mapping or a :class:`fxemu.policy.Policy`;
    its ``[layers.NAME]`` overrides name torch modules as ``named_modules()`` does (``"0"``,
    ``"features.3"``, ``"fc1"``). ``seed`` keys every stochastic rounding (as ``fxemu
    train``'s seed). The copy's parameters are float64, rounded into their layer's master
    format (in ``parameters()`` order, drawing stochastic keys as ``fxemu train`` rounds its
    initial weights); ``module`` itself is left as it was. Raises ``ValueError`` listing every
    unsupported module (name and type), for an override naming no module, and for parameters
    on another device than the CPU. See the module docstring for the semantics.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(msg("module", "must be a torch.nn.Module", type(module).__name__))
    pol = load_policy(policy)
    bad = [f"{name or '<root>'} ({type(m).__name__}: {why})"
           for name, m in module.named_modules() if (why := _why_unsupported(m)) is not None]
    if bad:
        raise ValueError(msg("fxemu.torch.emulate", "unsupported modules (the bridge computes "
                             "Conv2d, Linear and pools and keeps exact selections)", None,
                             "; ".join(bad)))
    for name, p in module.named_parameters():
        if p.device.type != "cpu":
            raise ValueError(msg(f"parameter {name}", "fxemu.torch runs on CPU tensors only",
                                 str(p.device), "move the module with .cpu()"))
    names = [name or "<root>" for name, _ in module.named_modules()]
    pol.check_layers(names, "the torch module")
    emu = Emulation(pol, seed)
    out = copy.deepcopy(module).to(torch.float64)
    owner = {id(p): (name or "<root>") for name, m in out.named_modules()
             for p in m.parameters(recurse=False)}
    keys = []
    with torch.no_grad():
        for pname, p in out.named_parameters():  # train's master(init) order, at step -1
            layer = owner[id(p)]
            p.copy_(_tensor(emu.backend.master(_host(p, "parameter"), emu.prec(layer))))
            p._fxemu_emulation = emu
            p._fxemu_key = f"{layer}_{'b' if pname.endswith('bias') else 'w'}"
            keys.append(p._fxemu_key)
    emu.names = list(dict.fromkeys(k.rsplit("_", 1)[0] for k in keys))
    leaves = [name for name, m in out.named_modules() if not any(True for _ in m.children())]
    first = leaves[0] if leaves else "<root>"
    for name, m in list(out.named_modules()):
        for child_name, child in list(m.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            made = _layer(child, full)
            if made is not None:
                setattr(m, child_name, made[0](child, made[1], emu, full))
            elif isinstance(child, nn.Dropout):
                child.register_forward_pre_hook(_dropout_guard)
    for m in list(out.modules()):
        if type(m) is nn.Sequential:
            _fuse(m)
    made = _layer(out, "<root>")
    if made is not None:
        out = made[0](out, made[1], emu, "<root>")
    out.register_forward_pre_hook(functools.partial(_round_input, prec=emu.prec(first)))
    out.fxemu = emu
    emu.begin(0)
    return out


def _round_input(m: nn.Module, args: tuple, prec: Policy) -> tuple:
    if not args or not isinstance(args[0], torch.Tensor):
        raise TypeError(msg("emulated module", "takes the network input as its first "
                            "positional argument (a tensor)", type(args[0]).__name__
                            if args else None))
    m.fxemu.grad_fmt = None  # a new pass: the gradient its loss hands back is not yet rounded
    return (_Input.apply(args[0], m.fxemu, prec), *args[1:])


def _emulation(params: Iterable[torch.Tensor]) -> Emulation:
    emus = {id(e): e for p in params if (e := getattr(p, "_fxemu_emulation", None)) is not None}
    if len(emus) != 1:
        raise ValueError(msg("params", "must be parameters of one module made by "
                             "fxemu.torch.emulate", f"{len(emus)} emulated modules"))
    return next(iter(emus.values()))


class _CrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, y):
        za = _host(z, "logits")
        if za.ndim != 2:
            raise ValueError(msg("logits", "must be (N, classes)", tuple(za.shape)))
        ya = y.detach().cpu().numpy()
        if ya.shape != (za.shape[0],) or not np.issubdtype(ya.dtype, np.integer) or (
                ya.size and (ya.min() < 0 or ya.max() >= za.shape[1])):
            raise ValueError(msg("target", f"must be N = {za.shape[0]} class indices in "
                                 f"0..{za.shape[1] - 1}", tuple(ya.shape)))
        loss, g, _ = softmax_xent(za, ya)
        ctx.g = g
        return torch.tensor(loss, dtype=torch.float64)

    @staticmethod
    def backward(ctx, go):
        g = _tensor(ctx.g)
        return (g if float(go) == 1.0 else g * go.to(torch.float64)), None


def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``logits`` (N, classes) for integer ``target`` (N,), computed as
    ``fxemu train`` does (:func:`fxemu.nn.softmax_xent`: max-subtracted softmax in float64 on
    the host); its backward hands the logits the gradient ``(softmax - onehot)/N`` (times the
    incoming gradient when that is not 1). The optimizer's loss scale is applied where the
    gradient enters the model, as :meth:`fxemu.nn.Sequential.backward` applies it."""
    return _CrossEntropy.apply(logits, target)


class SGD(torch.optim.Optimizer):
    """SGD whose update is the emulated backend's, by :class:`fxemu.nn.SGD`'s rule: per
    parameter (in order) ``d = R_grad(dW/S + wd·W)`` (wd > 0), ``v = R_momentum(μ·v + d)``
    (μ > 0), ``W <- R_master(W - lr·d)`` — one rounding each, stochastic when the format is,
    keyed as ``fxemu train`` keys it, each in its layer's precision. ``loss_scale`` S: a power
    of two or ``"dynamic"`` (:mod:`fxemu.nn.optim`'s rule; a step whose gradients overflow is
    skipped). ``params`` must be every parameter of one :func:`emulate` module; after the
    update :meth:`step` starts the module's next training step. Momentum buffers live in
    :attr:`rule` (``rule.velocity``), not in torch's ``state_dict``."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 0.01, momentum: float = 0.0,
                 weight_decay: float = 0.0, loss_scale: float | str = 1.0) -> None:
        self.rule = _SGDRule(lr, momentum, weight_decay, loss_scale)
        super().__init__(params, {"lr": float(lr)})
        self.emulation = _emulation(p for g in self.param_groups for p in g["params"])
        self.emulation.scale = self.rule.scale

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        emu = self.emulation
        ps = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        params = {p._fxemu_key: _host(p, "parameter") for p in ps}
        grads = {p._fxemu_key: _host(p.grad, f"{p._fxemu_key} gradient") for p in ps}
        lrs = {g["lr"] for g in self.param_groups}
        if len(lrs) != 1:
            raise ValueError(msg("SGD param_groups", "must share one lr (fxemu's rule has one)",
                                 sorted(lrs)))
        self.rule.lr = lrs.pop()
        new = self.rule.step(emu.backend, emu, params, grads)
        for p in ps:
            p.copy_(_tensor(new[p._fxemu_key]))
        emu.scale = self.rule.scale
        emu.begin(emu.step + 1)
        return loss


@contextlib.contextmanager
def evaluating(module: nn.Module) -> Iterator[nn.Module]:
    """Run forward passes that are not training steps (evaluation, as ``fxemu train``'s
    evaluation keys its own stochastic stream): on exit the current step restarts, so use it
    between steps. Puts the module in ``eval()`` mode and disables autograd meanwhile."""
    emu = getattr(module, "fxemu", None)
    if not isinstance(emu, Emulation):
        raise ValueError(msg("module", "must be made by fxemu.torch.emulate",
                             type(module).__name__))
    was = module.training
    module.eval()
    emu.backend.begin_step(-2)
    try:
        with torch.no_grad():
            yield module
    finally:
        module.train(was)
        emu.begin(emu.step)
