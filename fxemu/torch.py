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

Semantics (those of ``fxemu train --backend emulated``, layer by layer):

- The copy holds float64 parameters: the master weights, rounded into the policy's ``update``
  ``master`` format when :func:`emulate` runs (as ``fxemu train`` rounds its initial weights).
  Its outputs are float64 tensors holding values of the policy's formats.
- The first positional tensor given to the module is the network input: it is rounded into
  the ``forward`` ``input`` format (its gradient passes through unchanged).
- ``Conv2d``/``Linear``: weights and biases are read in the ``forward`` ``weight`` format, the
  product runs through the ``conv``/``dense`` Mac and the result plus bias is rounded into the
  ``activation`` format (a layer without bias adds an exact zero). Backward: the incoming
  gradient is rounded into ``grad``, dW and db reduce over the batch through the ``conv_dw``/
  ``dense_dw`` Mac and are rounded into ``grad``, the input gradient (only when something
  upstream needs it) through ``dense_dx`` with weights in the backward ``weight`` format.
- ``ReLU``, ``MaxPool2d`` (ties: the first maximum in row-major order, as fxemu), ``Flatten``,
  ``Unflatten``, ``Identity`` and ``Dropout`` (evaluation mode, or ``p = 0``) are exact
  selections and stay torch's; gradients that overlapping pool windows route to one input are
  summed in float64 and rounded into ``grad`` by the layer that consumes them.
- :class:`SGD` applies the emulated backend's update, ``W <- R_master(W - lr*dW)`` (one
  rounding, stochastic when ``master`` is), and starts the next step.
- Stochastic rounding draws the emulated backend's keys in its order: one backend per emulated
  module, keyed by ``seed``, the step counter :class:`SGD` advances, and the call number in the
  step. Training the founding network through the bridge is therefore bit-identical to
  ``fxemu train`` (``tests/test_torch_bridge.py``). Use :func:`evaluating` around forward
  passes that are not training steps (evaluation draws its own keys, as ``fxemu train``'s).

Unsupported (one ``ValueError`` lists every such module with its name and type): any other
layer with parameters or arithmetic (BatchNorm, LayerNorm, AvgPool2d, Conv1d, LSTM, Softmax,
...), a torch layer with submodules of its own (MultiheadAttention, Transformer layers),
``Conv2d`` with ``dilation != 1``, ``groups != 1`` or ``padding_mode != "zeros"``, and a
parameter-holding or leaf module of a user class. Arithmetic a user module writes in its own
``forward`` (``x + y``, ``F.softmax``) is plain torch and is not seen by the bridge. Tensors on
another device than the CPU raise ``ValueError``.
"""

from __future__ import annotations

import contextlib
import copy
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
from .nn import softmax_xent
from .policy import Policy, load_policy

__all__ = ["SGD", "Emulation", "cross_entropy", "emulate", "evaluating"]

#: Layers that stay torch's: exact selections (no rounding happens in them).
EXACT = (nn.ReLU, nn.MaxPool2d, nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout)
#: Containers whose forward only calls their children.
CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


class Emulation:
    """The state one emulated module shares between its layers and its optimizer: the
    :class:`fxemu.backends.EmulatedBackend` of ``policy`` keyed by ``seed`` and the training
    step (advanced by :meth:`SGD.step`)."""

    def __init__(self, policy: Policy, seed: int) -> None:
        self.policy = policy
        self.seed = seed
        self.backend = get_backend("emulated", policy, seed)
        self.step = 0

    def begin(self, step: int) -> None:
        """Start training step ``step`` (keys of its stochastic roundings restart)."""
        self.step = int(step)
        self.backend.begin_step(self.step)


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
    """The network input rounded into the forward ``input`` format; gradient passed through."""

    @staticmethod
    def forward(ctx, x, emu):
        return _tensor(emu.backend.input(_host(x, "input")))

    @staticmethod
    def backward(ctx, g):
        return g, None


class _Linear(torch.autograd.Function):
    """``y = x @ W.T + b`` over the last dimension of x through the backend's dense methods."""

    @staticmethod
    def forward(ctx, x, w, b, emu, name):
        be = emu.backend
        xa = _host(x, f"{name} input")
        wa = _host(w, f"{name}.weight")
        ba = _host(b, f"{name}.bias") if b is not None else np.zeros(wa.shape[0])
        lead = xa.shape[:-1]
        x2 = xa.reshape(-1, xa.shape[-1])
        y = be.dense(x2, wa, ba)
        ctx.emu, ctx.x2, ctx.w, ctx.lead = emu, x2, wa, lead
        ctx.has_bias = b is not None
        return _tensor(y.reshape(*lead, wa.shape[0]))

    @staticmethod
    def backward(ctx, dy):
        be = ctx.emu.backend
        g = be.grad(_host(dy, "gradient").reshape(-1, ctx.w.shape[0]))
        dw, db = be.dense_dw(g, ctx.x2)
        dx = None
        if ctx.needs_input_grad[0]:
            dx = _tensor(be.dense_dx(g, ctx.w).reshape(*ctx.lead, ctx.w.shape[1]))
        return dx, _tensor(dw), (_tensor(db) if ctx.has_bias else None), None, None


class _Conv2d(torch.autograd.Function):
    """Cross-correlation NCHW × FCKhKw with zero padding and stride, through the backend's conv
    methods (stride 1 on the padded input, outputs taken at the stride)."""

    @staticmethod
    def forward(ctx, x, w, b, emu, name, stride, pad):
        be = emu.backend
        xa = _host(x, f"{name} input")
        if xa.ndim != 4:
            raise ValueError(msg(f"{name} input", "Conv2d needs (N, C, H, W)", tuple(xa.shape)))
        wa = _host(w, f"{name}.weight")
        ba = _host(b, f"{name}.bias") if b is not None else np.zeros(wa.shape[0])
        (top, bottom), (left, right) = pad
        xp = np.pad(xa, ((0, 0), (0, 0), (top, bottom), (left, right)))
        if xp.shape[2] < wa.shape[2] or xp.shape[3] < wa.shape[3]:
            raise ValueError(msg(f"{name} input", "smaller than the kernel (after padding)",
                                 tuple(xa.shape)))
        z = be.conv(xp, wa, ba)
        sh, sw = stride
        ctx.emu, ctx.xp, ctx.w, ctx.zshape, ctx.stride, ctx.pad = emu, xp, wa, z.shape, stride, pad
        ctx.has_bias = b is not None
        return _tensor(z[:, :, ::sh, ::sw])

    @staticmethod
    def backward(ctx, dy):
        be = ctx.emu.backend
        sh, sw = ctx.stride
        dz = np.zeros(ctx.zshape)
        dz[:, :, ::sh, ::sw] = _host(dy, "gradient")
        if ctx.needs_input_grad[0]:
            raise NotImplementedError(
                "fxemu.torch: a Conv2d whose input needs a gradient (not the first layer) "
                "needs the per-layer emulated backend (issue 13)")
        dw, db = be.conv_dw(ctx.xp, dz)
        return None, _tensor(dw), (_tensor(db) if ctx.has_bias else None), None, None, None, None


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


class EmulatedConv2d(nn.Module):
    """An ``nn.Conv2d`` (its parameters, stride and zero padding) computed by fxemu."""

    def __init__(self, conv: nn.Conv2d, emu: Emulation, name: str) -> None:
        super().__init__()
        self.weight, self.bias = conv.weight, conv.bias
        self.stride = _pair(conv.stride)
        kh, kw = conv.kernel_size
        if conv.padding == "valid":
            pad = ((0, 0), (0, 0))
        elif conv.padding == "same":  # torch: the extra row/column (even kernels) at the end
            pad = tuple(((k - 1) // 2, k - 1 - (k - 1) // 2) for k in (kh, kw))
        else:
            ph, pw = _pair(conv.padding)
            pad = ((ph, ph), (pw, pw))
        self.pad = pad
        self._emu, self._name = emu, name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Conv2d.apply(x, self.weight, self.bias, self._emu, self._name, self.stride,
                             self.pad)

    def extra_repr(self) -> str:
        return f"{tuple(self.weight.shape)}, stride={self.stride}, padding={self.pad}"


class EmulatedLinear(nn.Module):
    """An ``nn.Linear`` (its parameters) computed by fxemu."""

    def __init__(self, lin: nn.Linear, emu: Emulation, name: str) -> None:
        super().__init__()
        self.weight, self.bias = lin.weight, lin.bias
        self._emu, self._name = emu, name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Linear.apply(x, self.weight, self.bias, self._emu, self._name)

    def extra_repr(self) -> str:
        return f"{tuple(self.weight.shape)}, bias={self.bias is not None}"


def _why_unsupported(m: nn.Module) -> str | None:
    """None when the bridge computes ``m`` exactly (or it only holds children), else why not."""
    kind = type(m)
    if kind is nn.Conv2d:
        bad = [f"{a}={getattr(m, a)!r}" for a, ok in
               (("dilation", _pair(m.dilation) == (1, 1)), ("groups", m.groups == 1),
                ("padding_mode", m.padding_mode == "zeros")) if not ok]
        return ", ".join(bad) + " (unsupported)" if bad else None
    if kind is nn.Linear or kind in CONTAINERS:
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
    """A deep copy of ``module`` whose Conv2d/Linear layers run through fxemu under ``policy``.

    ``policy``: a preset name, a policy file path, a mapping or a :class:`fxemu.policy.Policy`.
    ``seed`` keys every stochastic rounding (as ``fxemu train``'s seed). The copy's parameters
    are float64, rounded into the master format (in ``module.parameters()`` order, which
    draws stochastic keys as ``fxemu train`` rounds its initial weights); ``module`` itself is
    left as it was. Raises ``ValueError`` listing every unsupported module (name and type) and
    for parameters on another device than the CPU. See the module docstring for semantics.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(msg("module", "must be a torch.nn.Module", type(module).__name__))
    pol = load_policy(policy)
    bad = [f"{name or '<root>'} ({type(m).__name__}: {why})"
           for name, m in module.named_modules() if (why := _why_unsupported(m)) is not None]
    if bad:
        raise ValueError(msg("fxemu.torch.emulate", "unsupported modules (the bridge computes "
                             "Conv2d and Linear and keeps exact selections)", None,
                             "; ".join(bad)))
    for name, p in module.named_parameters():
        if p.device.type != "cpu":
            raise ValueError(msg(f"parameter {name}", "fxemu.torch runs on CPU tensors only",
                                 str(p.device), "move the module with .cpu()"))
    emu = Emulation(pol, seed)
    out = copy.deepcopy(module).to(torch.float64)
    with torch.no_grad():
        for p in out.parameters():  # train's master(init) order, at step -1
            p.copy_(_tensor(emu.backend.master(_host(p, "parameter"))))
            p._fxemu_emulation = emu
    for name, m in list(out.named_modules()):
        for child_name, child in list(m.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if type(child) is nn.Conv2d:
                setattr(m, child_name, EmulatedConv2d(child, emu, full))
            elif type(child) is nn.Linear:
                setattr(m, child_name, EmulatedLinear(child, emu, full))
            elif isinstance(child, nn.Dropout):
                child.register_forward_pre_hook(_dropout_guard)
    if type(out) is nn.Conv2d:
        out = EmulatedConv2d(out, emu, "<root>")
    elif type(out) is nn.Linear:
        out = EmulatedLinear(out, emu, "<root>")
    out.register_forward_pre_hook(_round_input)
    out.fxemu = emu
    emu.begin(0)
    return out


def _round_input(m: nn.Module, args: tuple) -> tuple:
    if not args or not isinstance(args[0], torch.Tensor):
        raise TypeError(msg("emulated module", "takes the network input as its first "
                            "positional argument (a tensor)", type(args[0]).__name__
                            if args else None))
    return (_Input.apply(args[0], m.fxemu), *args[1:])


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
    incoming gradient when that is not 1)."""
    return _CrossEntropy.apply(logits, target)


class SGD(torch.optim.Optimizer):
    """Plain SGD whose update is the emulated backend's: ``W <- R_master(fma(-lr, dW, W))``,
    one rounding into the policy's ``update`` ``master`` format (stochastic when it is, keyed
    as ``fxemu train`` keys it). ``params`` must come from one :func:`emulate` module; after
    updating every parameter with a gradient (in order) :meth:`step` starts the next training
    step of that module."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 0.01) -> None:
        if not (isinstance(lr, int | float) and np.isfinite(lr) and lr > 0):
            raise ValueError(msg("lr", "must be a finite number > 0", lr))
        super().__init__(params, {"lr": float(lr)})
        self.emulation = _emulation(p for g in self.param_groups for p in g["params"])

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        emu = self.emulation
        i = 0
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                new = emu.backend.update(_host(p, "parameter"), _host(p.grad, "gradient"),
                                         group["lr"], emu.step, i)
                p.copy_(_tensor(new))
                i += 1
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
