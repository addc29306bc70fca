"""The reference CNN, written once against the :class:`fxemu.backends.Backend` interface."""

from .model import Params, backward, forward, init_params, softmax_xent, train_step

__all__ = ["Params", "backward", "forward", "init_params", "softmax_xent", "train_step"]
