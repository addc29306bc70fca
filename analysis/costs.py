"""Accuracy against datapath cost: the cost column of a sweep and the Pareto front.

A sweep run with a cost device (``fxemu sweep ... --cost xc7z020``, :func:`write_sweep_costs`)
writes ``costs.json`` beside its run directories: for every distinct policy, once, the cost of
its datapaths from synthesis (:func:`fxemu.hw.tools.cost.policy_cost`, one PE each):
``lut``, ``ff``, ``dsp``, ``carry``, ``bram18`` summed over the policy's distinct PEs (a
policy whose five products share one Mac and operand formats has one PE), ``fmax_mhz`` (ECP5:
the slowest PE's nextpnr fmax), the tool, its version, the LUT mapping
(:data:`fxemu.hw.tools.cost.MAPPINGS`) and the device. A policy the RTL
generator cannot build (stochastic rounding inside a Mac, order ``exact``, …) gets an
``error`` instead, and the figures leave it out and say so.

:func:`pareto_front` marks the points no other point dominates (cost no higher and accuracy
no lower, one of them strictly); the report draws them as the front.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from fxemu import rundir
from fxemu._errors import msg

__all__ = ["COSTS", "RESOURCES", "load_costs", "pareto_front", "policy_datapath_cost",
           "write_sweep_costs"]

#: the file a costed sweep writes beside its run directories
COSTS = "costs.json"
RESOURCES = ("lut", "ff", "dsp", "carry", "bram18")


def pareto_front(cost: Sequence[float], acc: Sequence[float]) -> np.ndarray:
    """Boolean mask of the Pareto-optimal points: lower ``cost`` and higher ``acc`` are
    better; a point is on the front when no other point has ``cost <= c`` and ``acc >= a``
    with one inequality strict (equal points are all on the front). NaN points are never on
    it, nor do they dominate."""
    c = np.asarray(cost, dtype=float)
    a = np.asarray(acc, dtype=float)
    if c.shape != a.shape or c.ndim != 1:
        raise ValueError(msg("pareto_front", "cost and acc must be 1-d of one length",
                             (c.shape, a.shape)))
    ok = np.isfinite(c) & np.isfinite(a)
    front = ok.copy()
    for i in np.flatnonzero(ok):
        dom = ok & (c <= c[i]) & (a >= a[i]) & ((c < c[i]) | (a > a[i]))
        front[i] = not dom.any()
    return front


def policy_datapath_cost(policy, device: str, *, cache: Path | str | None = None,
                         mapping: str = "abc9") -> dict:
    """One policy's datapath cost on ``device`` with LUT mapping ``mapping``: the resources
    summed over its distinct PEs (:data:`RESOURCES`), ``pes`` (how many distinct),
    ``fmax_mhz`` (the slowest PE's, ECP5 only), ``tool``, ``mapping`` and ``device``. Raises
    as :func:`fxemu.hw.tools.cost.policy_cost`."""
    from fxemu.hw.tools.cost import policy_cost

    res = policy_cost(policy, device, pes=1, cache=cache, mapping=mapping)
    pes = [dp["pe"] for dp in res["datapaths"]]
    fmax = [p["fmax_mhz"] for p in pes if p.get("fmax_mhz")]
    return {**{k: sum(int(p[k]) for p in pes) for k in RESOURCES}, "pes": len(pes),
            "fmax_mhz": min(fmax) if fmax else None, "tool": pes[0]["tool"],
            "device": res["device"], "flow": pes[0]["flow"], "mapping": res["mapping"],
            "modules": [dp["module"] for dp in res["datapaths"]]}


def write_sweep_costs(out: str | Path, policies: Iterable, device: str, *,
                      cache: Path | str | None = None, mapping: str = "abc9") -> dict:
    """Cost every distinct policy (by name) of ``policies`` on ``device`` once, with LUT
    mapping ``mapping``, and write ``out/costs.json``: ``{"device", "mapping", "policies":
    {name: cost or {"error": text}}}``.

    Raises ``ValueError`` for an unknown device or mapping and
    :class:`fxemu.BackendUnavailable` without the ``rtl`` extra (before any synthesis); a
    policy the generator refuses, or a tool failure, is recorded as that policy's ``error``.
    """
    from fxemu.hw.tools.cost import CostError, datapaths, lut_mapping, tool_versions
    from fxemu.hw.tools.cost import device as get_device

    lut_mapping(mapping)
    tool_versions(get_device(device))
    done: dict[str, dict] = {}
    by_pes: dict[tuple, dict] = {}  # policies with the same PEs (e.g. differing in the update)
    for p in policies:
        if p.name in done:
            continue
        pes = tuple((dp["mac"], dp["a"], dp["b"]) for dp in datapaths(p))
        if pes not in by_pes:
            try:
                by_pes[pes] = policy_datapath_cost(p, device, cache=cache, mapping=mapping)
            except (ValueError, TypeError, CostError) as e:
                by_pes[pes] = {"error": str(e).splitlines()[0]}
        done[p.name] = by_pes[pes]
    data = {"device": device, "mapping": mapping, "policies": done}
    rundir.write_json(Path(out) / COSTS, data)
    return data


def load_costs(paths: Iterable[str | Path]):
    """The ``costs.json`` of ``paths`` (sweep folders, or run directories whose parent holds
    one) as a pandas DataFrame with one row per (device, policy): ``policy``, ``device``,
    ``tool``, ``mapping`` (the LUT mapping; ``abc9`` in files written before it was
    recorded), the :data:`RESOURCES`, ``fmax_mhz``, ``error``; empty when none is found."""
    import pandas as pd

    rows, seen = [], set()
    for p in paths:
        p = Path(p)
        for f in (p / COSTS, p.parent / COSTS):
            if f in seen or not f.is_file():
                continue
            seen.add(f)
            data = rundir.read_json(f)
            pols = data.get("policies") if isinstance(data, dict) else None
            if not isinstance(pols, dict):
                raise ValueError(msg(f"cost file {f}", "must hold a 'policies' table"))
            for name, c in pols.items():
                rows.append({"policy": name, "device": data.get("device"),
                             "tool": c.get("tool"), "mapping": c.get("mapping", "abc9"),
                             "error": c.get("error"),
                             "fmax_mhz": c.get("fmax_mhz"),
                             **{k: c.get(k) for k in RESOURCES}})
    cols = ["policy", "device", "tool", "mapping", "error", "fmax_mhz", *RESOURCES]
    df = pd.DataFrame(rows, columns=cols)
    return df.drop_duplicates(subset=["policy", "device"], keep="last").reset_index(drop=True)
