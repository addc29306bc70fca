"""Models written once against the :class:`fxemu.backends.Backend` interface: layers,
:class:`Sequential`, model specs and presets (founding, lenet5), the loss and the optimizer.

The function-style API of the founding network (``Params``, ``init_params``, ``forward``,
``backward``, ``train_step``) is :mod:`fxemu.nn.model`."""

from .layers import (
                     AvgPool2d,
                     Conv2d,
                     Flatten,
                     Layer,
                     Linear,
                     MaxPool2d,
                     ReLU,
                     SpecError,
                     parse_spec,
)
from .model import Params, backward, forward, init_params, train_step
from .optim import SGD
from .sequential import PRESETS, Sequential, load_model, softmax_xent

__all__ = ["PRESETS", "SGD", "AvgPool2d", "Conv2d", "Flatten", "Layer", "Linear", "MaxPool2d",
           "Params", "ReLU", "Sequential", "SpecError", "backward", "forward", "init_params",
           "load_model", "parse_spec", "softmax_xent", "train_step"]
