"""fxemu.hw.tools: hardware tools built on the whole stack (golden vectors of the emulated
backend, the cycle estimate, the ``fxemu hw`` command).

Layering: the accelerator runtime (every other module of :mod:`fxemu.hw`: layout, codegen,
toolchain, csim, driver, standin, hwh, boards) sits below :mod:`fxemu.backends` and never
imports the backends, the network, training or these tools; the tools sit above the backends
and may import anything. ``tests/hw/test_layers.py`` checks this.
"""
