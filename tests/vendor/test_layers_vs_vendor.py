"""Strided / padded conv2d, its weight and input gradients and the average pool's window sum
against C++ loops over the vendor types (``tests/vendor/arith_cxx.py``: :data:`LAYERS`).

The C++ restates each layer from its formula — the padded input read as +0.0 outside, the
input gradient from ``y + top = i·sh + kh`` with the flipped kernel order, never through the
zero-dilated plane fxemu builds — and reduces each output's products through the same
``FixedMac`` / ``FloatMac`` policies and orders as ``test_arith_vs_vendor.py``. The average
pool is checked with 2×2 windows divided into float64 (exact: the window count is 4), so the
comparison is of the Mac's window sum; its one rounded division is checked against the
Fraction oracle in ``tests/kernels/test_layer_arith.py``. Integer codes are compared.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from vendor import arith_cxx
from vendor.test_arith_vs_vendor import (
    FIXED_MACS,
    FLOAT_MACS,
    ORDERS,
    F,
    MacCase,
    _check,
    _fixed_mac_expr,
    _fixed_node,
    _fixed_operands,
    _float_mac_expr,
    _float_operands,
    _order_args,
)

import fxemu as fx
from fxemu import Fixed

pytestmark = pytest.mark.vendor

#: the default run's two datapaths (a rounding, saturating fixed Mac with a product format and
#: an out format; a float Mac with a product format), then those of the ``layers_full`` run
FAST_CASES = [FIXED_MACS[13], FLOAT_MACS[8]]
SLOW_CASES = [FIXED_MACS[i] for i in (0, 9, 12)] + [FLOAT_MACS[i] for i in (0, 1, 3, 7, 12, 13,
                                                                           18)]
#: (N, C, H, W, F, Kh, Kw, stride, padding): stride > 1 with asymmetric padding, 'same', and
#: a stride beyond the kernel (input rows no window covers)
GEOMETRIES = [
    (2, 2, 7, 6, 2, 3, 2, (2, 1), (1, 0, 2, 1)),
    (1, 2, 6, 6, 3, 5, 5, 1, "same"),
    (2, 1, 8, 7, 2, 2, 3, (3, 2), 1),
]
#: avg pool: (stride, padding) of 2×2 windows
POOLS = [(1, 1), (2, 0), ((1, 2), (1, 0))]


def _build(cases: list[MacCase], name: str) -> tuple[arith_cxx.LayerProgram,
                                                     dict[MacCase, int]]:
    node = _fixed_node()
    entries, index = [], {}
    for c in cases:
        index[c] = len(entries)
        if isinstance(F(c.inp), Fixed):
            entries.append(("ap", _fixed_mac_expr(c, node).replace("fxemu_mac<", "fxemu_layer<")))
    for c in cases:
        if not isinstance(F(c.inp), Fixed):
            index[c] = len(entries)
            entries.append(("float", _float_mac_expr(c).replace("fxemu_mac<", "fxemu_layer<")))
    return arith_cxx.LayerProgram(name, entries), index


PROGRAMS = {"fast": _build(FAST_CASES, "layers"), "slow": _build(SLOW_CASES, "layers_slow")}


def _operands(c: MacCase, shape: tuple[int, ...], rng: np.random.Generator,
              small: bool = False) -> np.ndarray:
    f = F(c.inp)
    if isinstance(f, Fixed):
        return _fixed_operands(f, shape, 10, rng)
    window = (f.emin // 2 - 2, f.emin // 2 + 1) if small else (-2, min(2, f.emax // 2 - 3))
    return _float_operands(f, shape, window, rng)


def _window_sum(x: np.ndarray, mac: fx.Mac, stride: object, padding: object) -> np.ndarray:
    """The Mac's 2×2 window sums: the average divided into float64 (exact: by 4), times 4."""
    return fx.avgpool2d(x, 2, mac, "float64", stride=stride, padding=padding) * 4


@pytest.mark.parametrize(("which", "case"), [
    *(pytest.param("fast", c, id=str(c)) for c in FAST_CASES),
    *(pytest.param("slow", c, id=str(c), marks=pytest.mark.layers_full) for c in SLOW_CASES)])
def test_conv_layers_vs_vendor(which: str, case: MacCase, vendor_build, tmp_path):
    """conv2d, conv2d_grad_weight, conv2d_grad_input (stride, padding) and the avg-pool
    window sum, every order, through the vendor MAC loops."""
    program, index = PROGRAMS[which]
    exe = vendor_build(program)
    rng = np.random.default_rng([0x1A7, len(str(case))])
    of = case.out_format
    code = arith_cxx.LAYER_CODES
    runs = []
    for gi, (n, c, h, w, f, kh, kw, stride, padding) in enumerate(GEOMETRIES):
        g = fx.conv_geometry(h, w, kh, kw, stride, padding)
        x = _operands(case, (n, c, h, w), rng, small=gi == 1)
        wt = _operands(case, (f, c, kh, kw), rng)
        gr = _operands(case, (n, f, *g.out), rng)
        dims = (n, c, h, w, f, kh, kw, *g.stride, g.padding[0], g.padding[2], *g.out)
        for order in ORDERS:
            oc, ch = _order_args(order)
            mac = case.mac(order)
            kw_ = dict(stride=stride, padding=padding)
            for shape, data, call in (
                    ("conv2d", (x, wt), partial(fx.conv2d, x, wt, mac, **kw_)),
                    ("grad_weight", (x, gr),
                     partial(fx.conv2d_grad_weight, x, gr, (kh, kw), mac, **kw_)),
                    ("grad_input", (gr, wt),
                     partial(fx.conv2d_grad_input, gr, wt, (h, w), mac, **kw_))):
                v = np.concatenate([a.ravel() for a in data])
                runs.append((f"{shape} {dims[7:]} order={order}", call,
                             program.run(exe, index[case], v, (code[shape], oc, ch, *dims),
                                         tmp_path)))
    x = _operands(case, (2, 2, 7, 6), rng)
    for stride, padding in POOLS:
        g = fx.conv_geometry(7, 6, 2, 2, stride, padding)
        dims = (2, 2, 7, 6, 0, 2, 2, *g.stride, g.padding[0], g.padding[2], *g.out)
        for order in ORDERS:
            oc, ch = _order_args(order)
            mac = case.mac(order)
            runs.append((f"avgpool sum {dims[7:]} order={order}",
                         partial(_window_sum, x, mac, stride, padding),
                         program.run(exe, index[case], x, (code["avgpool_sum"], oc, ch, *dims),
                                     tmp_path)))
    report = []
    for label, call, run in runs:
        got = fx.to_bits(call(), of).reshape(-1)
        report += _check(f"{case} {label}", of, got, run.codes(), lambda i: f"output {i}",
                         "layer MAC", examples=3)
    assert not report, "\n".join(report)
