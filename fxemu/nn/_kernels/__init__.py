"""Numba kernels specific to the networks of :mod:`fxemu.nn` (fused conv blocks); they reuse the
datapath operations of :mod:`fxemu._kernels` and follow its rules (plain typed parameters, no
validation, flags from :mod:`fxemu._kernels._jit`)."""
