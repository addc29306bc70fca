"""Build scripts without the vendor tools: boards.json, the Tcl scripts run by tclsh with every
vendor command stubbed (a recorder that catches syntax errors, wrong arguments and unknown
commands), and the Makefile's header and csim targets (g++ only)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fxemu.hw import boards, layout

HW = Path(boards.__file__).resolve().parent
TCLSH = shutil.which("tclsh")
needs_tcl = pytest.mark.skipif(TCLSH is None, reason="tclsh not installed (apt-get install tcl)")

# every vendor command the scripts may call; anything else unknown to tclsh is an error
VENDOR = {
    "open_project", "set_top", "add_files", "open_solution", "set_part", "create_clock",
    "config_interface", "csim_design", "csynth_design", "cosim_design", "export_design",
    "create_project", "get_board_parts", "set_property", "current_project",
    "update_ip_catalog", "create_bd_design", "create_bd_cell", "apply_bd_automation",
    "get_ipdefs", "get_bd_intf_pins", "get_bd_cells", "assign_bd_address",
    "validate_bd_design", "save_bd_design", "get_files", "generate_target", "make_wrapper",
    "update_compile_order", "current_fileset", "launch_runs", "wait_on_run", "get_runs",
    "get_property", "open_run", "get_timing_paths", "report_timing_summary",
    "report_utilization",
}

_STUBS = r"""
set ::calls {}
proc unknown {args} {
    lappend ::calls $args
    set cmd [lindex $args 0]
    switch -- $cmd {
        create_bd_cell { return [lindex $args end] }
        get_board_parts { return $::board_parts }
        get_ipdefs { return {xilinx.com:ip:zynq_ultra_ps_e:3.4 xilinx.com:ip:zynq_ultra_ps_e:3.5} }
        get_bd_intf_pins {
            if {[lsearch $args -of_objects] >= 0} {
                return {fxemu_train_step_0/m_axi_gmem0 fxemu_train_step_0/m_axi_gmem1
                        fxemu_train_step_0/m_axi_gmem2 fxemu_train_step_0/m_axi_gmem3}
            }
            return [lindex $args end]
        }
        get_property {
            switch -- [lindex $args 1] { PROGRESS { return 100% } SLACK { return $::slack }
                                         STATUS { return "write_bitstream Complete!" } }
            return {}
        }
        make_wrapper { return fxemu_bd_wrapper.v }
        get_files { return [lindex $args end] }
    }
    return {}
}
rename exit _exit
proc exit {{code 0}} {
    set f [open calls.json w]
    puts $f "\["
    set first 1
    foreach c $::calls {
        set items {}
        foreach a $c { lappend items "\"[string map {\\ \\\\ \" \\\" \n { }} $a]\"" }
        if {!$first} { puts -nonewline $f "," }
        puts $f "\[[join $items ,]\]"
        set first 0
    }
    puts $f "\]"
    close $f
    _exit $code
}
"""


def _tcl(tmp_path: Path, script: str, args: list[str], *, slack: str = "0.25",
         board_parts: str = "tul.com.tw:pynq-z2:part0:1.0"):
    driver = tmp_path / "driver.tcl"
    driver.write_text(f"set ::slack {slack}\nset ::board_parts {{{board_parts}}}\n" + _STUBS
                      + f"set argv {{{' '.join(args)}}}\nset argc {len(args)}\n"
                      f"source {HW / 'scripts' / script}\n")
    r = subprocess.run([TCLSH, str(driver)], cwd=tmp_path, capture_output=True, text=True,
                       timeout=60)
    calls = json.loads((tmp_path / "calls.json").read_text()) \
        if (tmp_path / "calls.json").exists() else []
    unknown = {c[0] for c in calls} - VENDOR
    assert not unknown, f"commands that are neither Tcl nor vendor: {unknown}"
    return r, calls


def test_boards_json():
    b = boards.boards()
    assert {k: v["part"] for k, v in b.items()} == {
        "pynq-z2": "xc7z020clg400-1", "zcu104": "xczu7ev-ffvc1156-2-e",
        "kv260": "xck26-sfvc784-2LV-c"}
    assert {v["ps"] for v in b.values()} == {"processing_system7", "zynq_ultra_ps_e"}
    for v in b.values():
        for script in v["scripts"].values():
            assert (HW / script).is_file()
    assert boards.board("PYNQ-Z2")["clock_mhz"] == 100
    with pytest.raises(ValueError, match=r"board: must be one of pynq-z2, zcu104, kv260"):
        boards.board("zedboard")


@needs_tcl
def test_hls_tcl(tmp_path):
    r, calls = _tcl(tmp_path, "hls.tcl", ["xc7z020clg400-1", "100", str(HW / "kernels" /
                                          "train_step"), str(tmp_path)])
    assert r.returncode == 0, r.stderr
    names = [c[0] for c in calls]
    assert names.index("csim_design") < names.index("csynth_design") \
        < names.index("cosim_design") < names.index("export_design")
    assert ["set_top", "fxemu_train_step"] in calls
    assert ["set_part", "xc7z020clg400-1"] in calls
    assert ["create_clock", "-period", "10.000", "-name", "default"] in calls
    exp = next(c for c in calls if c[0] == "export_design")
    opts = dict(zip(exp[1::2], exp[2::2], strict=False))
    vendor, lib, name, version = layout.VLNV.split(":")
    assert (opts["-format"], opts["-vendor"], opts["-library"], opts["-ipname"],
            opts["-version"]) == ("ip_catalog", vendor, lib, name, version)
    added = [a for c in calls if c[0] == "add_files" for a in c[1:]]
    assert str(tmp_path / "fxemu_policy.h") in added  # the generated policy header
    assert str(tmp_path / "golden.bin") in added


@needs_tcl
def test_hls_tcl_usage(tmp_path):
    r, _ = _tcl(tmp_path, "hls.tcl", ["xc7z020clg400-1"])
    assert r.returncode == 2 and "usage" in r.stderr


@needs_tcl
@pytest.mark.parametrize("name", ["pynq-z2", "zcu104", "kv260"])
def test_bd_tcl(tmp_path, name):
    b = boards.board(name)
    out = tmp_path / "overlay"
    runs = tmp_path / f"vivado_{name}" / f"fxemu_{name}.runs" / "impl_1"
    handoff = tmp_path / f"vivado_{name}" / f"fxemu_{name}.gen" / "sources_1" / "bd" / \
        "fxemu_bd" / "hw_handoff"
    runs.mkdir(parents=True)
    handoff.mkdir(parents=True)
    (runs / "fxemu_bd_wrapper.bit").write_bytes(b"BIT")
    (handoff / "fxemu_bd.hwh").write_text("<hwh/>")
    r, calls = _tcl(tmp_path, "bd.tcl", [name, b["part"], b["board_part"], b["family"],
                                         str(b["clock_mhz"]), "ip_repo", str(out), "2"],
                    board_parts=b["board_part"])
    assert r.returncode == 0, r.stderr + r.stdout
    cells = [c for c in calls if c[0] == "create_bd_cell"]
    assert b["ps"] in cells[0][4] and cells[1][4] == layout.VLNV
    auto = [c for c in calls if c[0] == "apply_bd_automation" and "bd_rule:axi4" in c[2]]
    assert len(auto) == 1 + 4  # s_axilite + every m_axi bundle
    assert any(f"/processing_system/{b['gp_master']}" in c[4] for c in auto)
    assert all(f"/processing_system/{b['hp_slave']}" in c[4] for c in auto[1:])
    assert (out / "fxemu_train_step.bit").read_bytes() == b"BIT"
    assert (out / "fxemu_train_step.hwh").read_text() == "<hwh/>"


@needs_tcl
def test_bd_tcl_fails_on_missed_timing(tmp_path):
    b = boards.board("pynq-z2")
    r, _ = _tcl(tmp_path, "bd.tcl", ["pynq-z2", b["part"], b["board_part"], b["family"], "250",
                                     "ip_repo", str(tmp_path / "o")], slack="-0.4")
    assert r.returncode == 1 and "timing not met at 250 MHz: WNS -0.4" in r.stderr


def _make(build, *targets, timeout=600):
    return subprocess.run(["make", "-C", str(HW), *targets, f"PYTHON={sys.executable}",
                           f"BUILD={build}"], capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
def test_make_header_and_dry_runs(tmp_path):
    from fxemu.hw.codegen import policy_header

    from fxemu.policy import load_policy

    r = _make(tmp_path / "b", "header", "POLICY=fixed16")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "b" / "fxemu_policy.h").read_text() == \
        policy_header(load_policy("fixed16"))
    r = _make(tmp_path / "b", "-n", "bitstream", "POLICY=fixed16", "BOARD=zcu104")
    assert r.returncode == 0, r.stderr
    assert f"vitis_hls -f {HW}/scripts/hls.tcl" in r.stdout
    assert f"vivado -mode batch -nojournal -nolog -source {HW}/scripts/bd.tcl" in r.stdout
    assert "-tclargs zcu104" in r.stdout
    r = _make(tmp_path / "sr", "header", "POLICY=fixed16_sr")
    assert r.returncode != 0 and "stochastic rounding" in r.stderr


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None or shutil.which("g++") is None,
                    reason="make or g++ not installed")
def test_make_csim(tmp_path):
    r = _make(tmp_path / "b", "csim", "POLICY=fixed16")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASS" in r.stdout
