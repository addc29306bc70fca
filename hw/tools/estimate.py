"""Cycle model of the training-step kernel: an *estimate* from loop trip counts and II.

The kernel (``hw/kernels/train_step/train_step.cpp``) is a nest of loops whose innermost
loops are pipelined. A pipelined loop entered ``entries`` times with ``trip`` iterations each,
initiation interval ``II`` and pipeline depth ``D`` takes ``entries · ((trip - 1)·II + D +
tail)`` cycles, where ``tail`` is what follows each entry before the next (the end of a
reduction, the bias/rounding, an exposed memory access). The total is the sum over the loops;
nothing overlaps (no dataflow between loops), as in the kernel's sequential C++.

**Initiation intervals.** A reduction's loop-carried dependency is its accumulator. A
fixed-point accumulator adds in one cycle: II = 1. A float accumulator's adder has a latency
of ``L`` cycles, and the order decides the II:

* ``sequential``: every addition needs the previous sum: II = L;
* ``pairwise``: an adder tree has no recurrence: II = 1, plus a tail of ⌈log2 K⌉ · L cycles
  to drain the tree's levels;
* ``chunk:N``: the ``C = ⌈K/N⌉`` chunk sums are independent; interleaving them round-robin
  (order within each chunk kept) puts ``C`` iterations between dependent additions:
  II = ⌈L / C⌉, plus a tail of ``C · L`` cycles for the sequential sum of the chunk sums.

The kernel as written today streams every reduction through one running sum (its
``Reducer``), for which HLS would schedule the float ``pairwise`` and ``chunk`` orders like
``sequential``; the model assumes the restructured loops above (the rounding sequence is the
same, so the bit-exactness tests still apply to it). ``conv_dw`` runs 120 accumulators side
by side over the whole batch; the dependency is between consecutive outputs of one filter,
so its II follows the same rule with ``K = n·676``.

**Latencies** (cycles; typical values of AMD's floating-point operators and of Zynq's AXI
HP ports at 100–250 MHz, *not* measured — an HLS synthesis report replaces them):

=====================  ===  ===
operation              add  mul
=====================  ===  ===
fixed point (DSP48)    1    3
float ≤ 16 bits        3    2
float ≤ 32 bits        4    3
float ≤ 64 bits        7    6
=====================  ===  ===

**The RTL array** (``loops(..., rtl=...)``, ``fxemu hw estimate --rtl``): the reductions run
on the RTL generator's arrays (:mod:`fxemu.hw.rtl`) of P PEs sharing operand ``a``, with each
PE's measured latency and initiation interval from :func:`fxemu.hw.rtl.describe` instead of
the table above. A streaming PE takes one operand pair per cycle and a new stream on the
beat after ``last``, so the ``outer · ⌈lanes/P⌉`` streams of ``K`` pairs of a loop run back
to back: ``outer · ⌈lanes/P⌉ · K · II + latency + 2`` cycles (2: the operand reads); an adder
tree PE of ``k ≥ K`` leaves takes one dot product per beat. What follows each output (bias
add and rounding: pipelined, II = 1; the read-modify-write weight update: not pipelined, as
above) becomes an epilogue loop. A pairwise Mac whose reduction is longer than the tree's
``k`` keeps the HLS model for that loop, and says so in the loop's name.

An m_axi burst starts after ``AXI_LATENCY`` = 40 cycles and then moves one 64-bit word per
cycle; a single read-modify-write of a parameter in the update (``store_update``, outside any
pipeline) exposes one read latency plus 4 cycles. The estimate ignores DRAM refresh and
contention with the CPU, clock-domain crossings, and the host's share of a step (the softmax
gradient, the copies and the cache maintenance of the driver).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..._errors import msg
from ...formats import Fixed, Float, Mac
from ...policy import Policy
from .. import layout

__all__ = ["AXI_LATENCY", "Loop", "RtlTiming", "latency", "loops", "reduction", "rtl_timings",
           "summary"]

AXI_LATENCY = 40
_UPDATE = AXI_LATENCY + 4  # read the master weight, multiply-subtract, write back
_ACT_ROUND = 1  # sum_round / convert into the output format after a reduction
NZ = layout.FILTERS * layout.CONV_OUT * layout.CONV_OUT  # 8112
NW = layout.FILTERS * layout.KERNEL * layout.KERNEL  # 108
K2 = layout.KERNEL * layout.KERNEL  # 9


@dataclass(frozen=True)
class Loop:
    """One pipelined loop of the kernel as the model sees it."""

    stage: str  # "forward" or "backward+update"
    name: str  # the loop (its label in train_step.cpp where it has one)
    entries: int  # times the pipeline is entered
    trip: int  # iterations per entry
    ii: int  # initiation interval
    depth: int  # pipeline depth (cycles of one iteration)
    tail: int = 0  # cycles after each entry

    @property
    def iterations(self) -> int:
        return self.entries * self.trip

    @property
    def cycles(self) -> int:
        return self.entries * ((self.trip - 1) * self.ii + self.depth + self.tail)


@dataclass(frozen=True)
class RtlTiming:
    """Timing of one role's RTL array (from :func:`fxemu.hw.rtl.describe`)."""

    pes: int  # PEs side by side, sharing operand a
    latency: int  # cycles from the last beat of a stream to its result
    ii: int  # initiation interval (operand pairs per cycle: 1)
    k: int | None = None  # leaves of an adder-tree PE (pairwise); None: streaming PE


def rtl_timings(policy: Policy, pes: int) -> dict[str, RtlTiming]:
    """``{role: RtlTiming}`` for the roles of :data:`fxemu.hw.tools.cost.ROLES`, from the RTL
    generator's ``describe`` of each role's array of ``pes`` PEs (needs the ``rtl`` extra)."""
    from .cost import datapaths, describe

    out = {}
    for dp in datapaths(policy):
        d = describe(dp["mac"], pes=pes, a=dp["a"], b=dp["b"])
        t = RtlTiming(pes, int(d["latency"]), int(d["initiation_interval"]), d.get("k"))
        out.update(dict.fromkeys(dp["roles"], t))
    return out


def latency(fmt: Fixed | Float, op: str) -> int:
    """Cycles of one ``op`` ("add" or "mul") in format ``fmt`` (see the module table)."""
    if op not in ("add", "mul"):
        raise ValueError(msg("op", "must be add or mul", op))
    if isinstance(fmt, Fixed):
        return 1 if op == "add" else 3
    w = fmt.width
    table = ((16, 3, 2), (32, 4, 3), (64, 7, 6))
    for limit, add, mul in table:
        if w <= limit:
            return add if op == "add" else mul
    raise ValueError(msg("format width", "must be <= 64 bits", w))  # pragma: no cover


def reduction(mac: Mac, k: int) -> tuple[int, int]:
    """``(II, tail)`` of a reduction of ``k`` products through ``mac`` (module docstring)."""
    if k < 1:
        raise ValueError(msg("reduction length", "must be >= 1", k))
    lat = latency(mac.acc, "add")
    if lat == 1:
        return 1, 1
    order = mac.order
    if order == "sequential":
        return lat, lat
    if order == "pairwise":
        return 1, max(1, math.ceil(math.log2(k))) * lat
    if order.startswith("chunk:"):
        c = math.ceil(k / int(order.split(":", 1)[1]))
        return math.ceil(lat / c), c * lat
    raise ValueError(msg("Mac order", "the kernel runs sequential, pairwise and chunk:N", order))


def _depth(mac: Mac, a: Fixed | Float, b: Fixed | Float) -> int:
    """Pipeline depth of one multiply-accumulate: operand reads (2), product, addition."""
    mul = max(latency(a, "mul"), latency(b, "mul"))
    return 2 + mul + latency(mac.acc, "add")


def _on_array(hls: Loop, t: RtlTiming | None, outer: int, lanes: int, k: int,
              epilogue: int, update: bool) -> list[Loop]:
    """``hls`` (a reduction loop of the HLS model) as run by the RTL array ``t``: the
    streams back to back, then the epilogue of each of the ``outer · lanes`` outputs."""
    if t is None:
        return [hls]
    if t.k is not None and k > t.k:
        return [Loop(hls.stage, f"{hls.name} (HLS model: pairwise tree k={t.k} < K={k})",
                     hls.entries, hls.trip, hls.ii, hls.depth, hls.tail)]
    beats = outer * math.ceil(lanes / t.pes) * (1 if t.k is not None else k)
    out = [Loop(hls.stage, f"{hls.name} [RTL {t.pes} PEs]", 1, beats, t.ii, t.latency + 2)]
    n_out = outer * lanes
    if update:
        out.append(Loop(hls.stage, f"{hls.name}: round + update", n_out, 1, 1, epilogue))
    elif epilogue:
        out.append(Loop(hls.stage, f"{hls.name}: per-output epilogue", 1, n_out, 1, epilogue))
    return out


def loops(policy: Policy, n: int, rtl: dict[str, RtlTiming] | None = None) -> list[Loop]:
    """The kernel's loops for a batch of ``n`` samples: forward, then backward+update.

    ``rtl`` (:func:`rtl_timings`): the reductions run on the RTL arrays (module docstring)."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= layout.BATCH_MAX:
        raise ValueError(msg("batch", f"must be an int in 1..{layout.BATCH_MAX}", n))
    fw, bw = policy.forward, policy.backward
    flat, cls, img = layout.FLAT, layout.CLASSES, layout.IMAGE_WORDS
    conv_ii, conv_tail = reduction(fw.conv, K2)
    dense_ii, dense_tail = reduction(fw.dense, flat)
    dx_ii, dx_tail = reduction(bw.dense_dx, cls)
    dw_ii, dw_tail = reduction(bw.dense_dw, n)
    cdw_ii, cdw_tail = reduction(bw.conv_dw, n * layout.CONV_OUT * layout.CONV_OUT)
    act_add = latency(fw.activation, "add")
    F, B = "forward", "backward+update"
    r = rtl or {}
    co2 = layout.CONV_OUT * layout.CONV_OUT
    conv = Loop(F, "CONV / CONV_K", n * NZ, K2, conv_ii, _depth(fw.conv, fw.input, fw.weight),
                conv_tail + act_add + _ACT_ROUND)
    dense = Loop(F, "DENSE / DENSE_K", n * cls, flat, dense_ii,
                 _depth(fw.dense, fw.activation, fw.weight), dense_tail + act_add + _ACT_ROUND)
    dx = Loop(B, "DENSE_DX", n * flat, cls, dx_ii, _depth(bw.dense_dx, bw.grad, bw.weight),
              dx_tail + _ACT_ROUND)
    dw = Loop(B, "DENSE_DW + update", flat * cls, n, dw_ii,
              _depth(bw.dense_dw, bw.grad, fw.activation), dw_tail + _ACT_ROUND + _UPDATE)
    db = Loop(B, "DENSE_DB + update", cls, n, dw_ii, _depth(bw.dense_dw, bw.grad, bw.grad),
              dw_tail + _ACT_ROUND + _UPDATE)
    cdw = Loop(B, "CONV_DW_Z", n, NZ, cdw_ii, _depth(bw.conv_dw, bw.grad, fw.input))
    if r.get("conv_dw") is not None:  # the 108 weight and 12 bias sums as streams
        t = r["conv_dw"]
        cdw_rtl = _on_array(cdw, t, K2 + 1, layout.FILTERS, n * co2, 0, False)
        cupd = Loop(B, "conv update", NW + layout.FILTERS, 1, 1, _ACT_ROUND + _UPDATE)
    else:
        cdw_rtl = [cdw]
        cupd = Loop(B, "conv update", NW + layout.FILTERS, 1, 1,
                    cdw_tail + _ACT_ROUND + _UPDATE)
    return [
        Loop(F, "load conv_w, conv_b", 1, NW + layout.FILTERS, 1, AXI_LATENCY),
        Loop(F, "load dense_w", 1, cls * flat, 1, AXI_LATENCY),
        Loop(F, "load dense_b", 1, cls, 1, AXI_LATENCY),
        Loop(F, "READ_X", n, img, 1, AXI_LATENCY),
        *_on_array(conv, r.get("conv"), n * co2, layout.FILTERS, K2, act_add + _ACT_ROUND,
                   False),
        Loop(F, "POOL", n, flat, 1, 6),
        Loop(F, "store h", n, flat, 1, 4),
        *_on_array(dense, r.get("dense"), n, cls, flat, act_add + _ACT_ROUND, False),
        Loop(B, "load dlogits", 1, n * cls, 1, AXI_LATENCY),
        Loop(B, "load dense_w", 1, cls * flat, 1, AXI_LATENCY),
        *_on_array(dx, r.get("dense_dx"), n, flat, cls, _ACT_ROUND, False),
        Loop(B, "DENSE_DW: load h", flat, n, 1, AXI_LATENCY),
        *_on_array(dw, r.get("dense_dw"), cls, flat, n, _ACT_ROUND + _UPDATE, True),
        *_on_array(db, r.get("dense_dw"), 1, cls, n, _ACT_ROUND + _UPDATE, True),
        Loop(B, "CONV_DW: load x", n, img, 1, AXI_LATENCY),
        Loop(B, "CONV_DW: load z1", n, NZ, 1, AXI_LATENCY),
        Loop(B, "CONV_DW: load dh", n, flat, 1, AXI_LATENCY),
        Loop(B, "CONV_DW: pool", n, flat, 1, 6),
        *cdw_rtl,
        cupd,
    ]


def summary(policy: Policy, n: int, clock_mhz: float,
            rtl: dict[str, RtlTiming] | None = None) -> dict:
    """Totals: cycles per step (and per stage), per image, ms per step and images/s
    (``rtl``: with the reductions on the RTL arrays, see :func:`loops`)."""
    if not (isinstance(clock_mhz, int | float) and math.isfinite(clock_mhz)
            and clock_mhz > 0):
        raise ValueError(msg("clock", "must be a positive number of MHz", clock_mhz))
    ls = loops(policy, n, rtl)
    total = sum(lp.cycles for lp in ls)
    stages = {}
    for lp in ls:
        stages[lp.stage] = stages.get(lp.stage, 0) + lp.cycles
    seconds = total / (clock_mhz * 1e6)
    return {"loops": ls, "stages": stages, "cycles": total, "cycles_per_image": total / n,
            "ms_per_step": seconds * 1e3, "images_per_s": n / seconds, "clock_mhz": clock_mhz,
            "batch": n}
