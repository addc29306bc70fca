"""A minimal hardware handoff (``.hwh``) for the training-step kernel's overlay.

PYNQ builds an overlay's IP dictionary from the ``.hwh`` file Vivado writes next to the
bitstream (``pynq.Overlay`` → ``pynqmetadata``'s HWH front end → ``ip_dict``). The stand-in
board (:mod:`fxemu.hw.standin`) needs one without Vivado, so this module writes the smallest
handoff PYNQ accepts for our block design: the processing system (``processing_system7`` for
Zynq-7000, ``zynq_ultra_ps_e`` for Zynq UltraScale+) whose general-purpose AXI master reaches
the kernel's ``s_axi_control`` register block, and the kernel itself with the VLNV
:data:`fxemu.hw.layout.VLNV` and its register map (the names Vitis HLS gives them: ``CTRL``,
``GIER``, ``IP_IER``, ``IP_ISR``, then one register per 32-bit word of each argument, 64-bit
arguments as ``<name>_1`` (low word) and ``<name>_2`` (high word)).

No pynq import here: the text is plain XML, checked in the main test environment with
:mod:`xml.etree` and in the ``board`` tox environment by PYNQ's own parser.
"""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree as ET

from .._errors import msg
from . import layout

__all__ = ["HLS_REGISTER_NAMES", "hwh_text", "write_overlay"]

#: The kernel's instance name in the block design (``hw/scripts/bd.tcl`` uses the same).
INSTANCE = "fxemu_train_step_0"

#: Register names of the HLS-generated s_axilite map, by the names of :data:`layout.REGISTERS`.
HLS_REGISTER_NAMES: dict[str, str] = {
    "CTRL": "CTRL", "GIE": "GIER", "IER": "IP_IER", "ISR": "IP_ISR", "op": "op", "n": "n",
    **{f"{arg}_{half}": f"{arg}_{1 if half == 'lo' else 2}"
       for arg in ("lr_bits", *layout.BUFFERS) for half in ("lo", "hi")},
}

_CTRL_FIELDS = (("AP_START", 0, "read-write", "Start the kernel (held until ap_ready)"),
                ("AP_DONE", 1, "read-only", "Kernel finished (clear on read)"),
                ("AP_IDLE", 2, "read-only", "Kernel idle"),
                ("AP_READY", 3, "read-only", "Kernel ready for new inputs (clear on read)"))

# processing system per family: MODTYPE, VLNV, the GP master, its base address for PL
# registers, the HP slave the kernel's m_axi port uses
_PS = {
    "zynq": ("processing_system7", "xilinx.com:ip:processing_system7:5.5", "M_AXI_GP0",
             0x4000_0000, "S_AXI_HP0"),
    "zynqmp": ("zynq_ultra_ps_e", "xilinx.com:ip:zynq_ultra_ps_e:3.5", "M_AXI_HPM0_FPD",
               0xA000_0000, "S_AXI_HP0_FPD"),
}
FAMILIES = tuple(_PS)


def _clock_params(family: str, clock_mhz: float) -> dict[str, object]:
    """The PS parameters PYNQ reads for the four PL clocks (clock 0 drives the kernel at
    ``clock_mhz`` from the IO PLL, the others are off), spelled as each PS names them."""
    src = 1000.0 if family == "zynq" else 1500.0  # the IO PLL of the default PS presets
    div0 = max(1, min(63, round(src / clock_mhz)))
    out: dict[str, object] = {}
    for i in range(4):
        on = i == 0
        if family == "zynq":
            out |= {f"PCW_FPGA_FCLK{i}_ENABLE": int(on), f"PCW_FCLK{i}_PERIPHERAL_CLKSRC":
                    "IO PLL", f"PCW_FCLK{i}_PERIPHERAL_DIVISOR0": div0 if on else 1,
                    f"PCW_FCLK{i}_PERIPHERAL_DIVISOR1": 1,
                    f"PCW_FPGA{i}_PERIPHERAL_FREQMHZ": f"{clock_mhz:g}" if on else 10}
        else:
            pre = f"PSU__CRL_APB__PL{i}_REF_CTRL__"
            out |= {f"PSU__FPGA_PL{i}_ENABLE": int(on), pre + "SRCSEL": "IOPLL",
                    pre + "DIVISOR0": div0 if on else 1, pre + "DIVISOR1": 1,
                    pre + "FREQMHZ": f"{clock_mhz:g}" if on else 10}
            if on:
                out[pre + "ACT_FREQMHZ"] = f"{src / div0:g}"
    return out
_AXIMM = "xilinx.com:interface:aximm:1.0"
ADDR_RANGE = 0x1_0000  # 64 KiB, the smallest range Vivado's address editor assigns


def _sub(parent: ET.Element, tag: str, **attrs: object) -> ET.Element:
    return ET.SubElement(parent, tag, {k: str(v) for k, v in attrs.items()})


def _params(parent: ET.Element, values: dict[str, object]) -> None:
    ps = _sub(parent, "PARAMETERS")
    for k, v in values.items():
        _sub(ps, "PARAMETER", NAME=k, VALUE=v)


def _register(regs: ET.Element, name: str, offset: int, description: str, access: str,
              fields: tuple = ()) -> None:
    r = _sub(regs, "REGISTER", NAME=name)
    for k, v in (("DESCRIPTION", description), ("ADDRESS_OFFSET", offset), ("SIZE", 32),
                 ("ACCESS", access), ("IS_ENABLED", "true"), ("RESET_VALUE", 0)):
        _sub(r, "PROPERTY", NAME=k, VALUE=v)
    if fields:
        fs = _sub(r, "FIELDS")
        for fname, bit, faccess, fdesc in fields:
            f = _sub(fs, "FIELD", NAME=fname)
            for k, v in (("DESCRIPTION", fdesc), ("ACCESS", faccess), ("BIT_OFFSET", bit),
                         ("BIT_WIDTH", 1)):
                _sub(f, "PROPERTY", NAME=k, VALUE=v)


def hwh_text(family: str = "zynq", part: str = "xc7z020clg400-1", clock_mhz: float = 100.0,
             base_address: int | None = None) -> str:
    """The ``.hwh`` XML of the overlay: PS + kernel, the kernel's registers at ``base_address``.

    ``family`` is ``"zynq"`` (Zynq-7000: PYNQ-Z2) or ``"zynqmp"`` (Zynq UltraScale+: ZCU104,
    KV260); ``base_address`` defaults to the start of the family's general-purpose AXI
    master window (0x4000_0000 on Zynq-7000, 0xA000_0000 on UltraScale+).
    """
    if family not in _PS:
        raise ValueError(msg("family", "must be one of " + ", ".join(_PS), family))
    modtype, ps_vlnv, gp, gp_base, hp = _PS[family]
    base = gp_base if base_address is None else int(base_address)
    if base % ADDR_RANGE:
        raise ValueError(msg("base_address", f"must be a multiple of {ADDR_RANGE:#x}",
                             hex(base)))
    high = base + ADDR_RANGE - 1

    root = ET.Element("EDKSYSTEM", EDWVERSION="1.2", TIMESTAMP="fxemu-standin",
                      VIVADOVERSION="2023.2")
    _sub(root, "SYSTEMINFO", ARCH=part[:7], DEVICE=part, NAME="fxemu_bd", PACKAGE="",
         SPEEDGRADE="")
    _sub(root, "EXTERNALPORTS")
    _sub(root, "EXTERNALINTERFACES")
    mods = _sub(root, "MODULES")

    # -- the processing system: its GP master maps the kernel's register block ------------
    ps = _sub(mods, "MODULE", FULLNAME="/processing_system", HWVERSION="1", INSTANCE=
              "processing_system", IPTYPE="PERIPHERAL", IS_ENABLE="1", MODCLASS="PROCESSOR",
              MODTYPE=modtype, VLNV=ps_vlnv)
    _params(ps, {**_clock_params(family, clock_mhz), "Component_Name": "processing_system"})
    mm = _sub(_sub(ps, "MEMORYMAP"), "MEMRANGE", ADDRESSBLOCK="Reg", BASENAME="C_BASEADDR",
              BASEVALUE=f"0x{base:08X}", HIGHNAME="C_HIGHADDR", HIGHVALUE=f"0x{high:08X}",
              INSTANCE=INSTANCE, IS_DATA="TRUE", IS_INSTRUCTION="TRUE",
              MASTERBUSINTERFACE=gp, MEMTYPE="REGISTER", SLAVEBUSINTERFACE="s_axi_control")
    del mm
    _sub(ps, "PORTS")
    bis = _sub(ps, "BUSINTERFACES")
    _sub(bis, "BUSINTERFACE", BUSNAME="ps_gp", DATAWIDTH="32", NAME=gp, TYPE="MASTER",
         VLNV=_AXIMM)
    _sub(bis, "BUSINTERFACE", BUSNAME="kernel_gmem", DATAWIDTH="64", NAME=hp, TYPE="SLAVE",
         VLNV=_AXIMM)

    # -- the kernel: s_axilite register block + one m_axi master ----------------------------
    k = _sub(mods, "MODULE", FULLNAME=f"/{INSTANCE}", HWVERSION="1.0", INSTANCE=INSTANCE,
             IPTYPE="PERIPHERAL", IS_ENABLE="1", MODCLASS="PERIPHERAL",
             MODTYPE="fxemu_train_step", VLNV=layout.VLNV)
    _params(k, {"C_S_AXI_CONTROL_ADDR_WIDTH": 7, "C_S_AXI_CONTROL_DATA_WIDTH": 32,
                "C_M_AXI_GMEM_ADDR_WIDTH": 64, "C_M_AXI_GMEM_DATA_WIDTH": 64,
                "Component_Name": "fxemu_bd_fxemu_train_step_0_0",
                "C_S_AXI_CONTROL_BASEADDR": f"0x{base:08X}",
                "C_S_AXI_CONTROL_HIGHADDR": f"0x{high:08X}"})
    blocks = _sub(k, "ADDRESSBLOCKS")
    ab = _sub(blocks, "ADDRESSBLOCK", ACCESS="read-write", INTERFACE="S_AXI_CONTROL",
              NAME="Reg", RANGE=ADDR_RANGE, USAGE="register")
    regs = _sub(ab, "REGISTERS")
    described = {"op": "op: 0 forward, 1 backward+update", "n": "batch size n",
                 "lr_bits": "learning rate, IEEE-754 binary64 bit pattern"}
    for name, off in layout.REGISTERS.items():
        hls = HLS_REGISTER_NAMES[name]
        if name == "CTRL":
            _register(regs, hls, off, "Control signals", "read-write", _CTRL_FIELDS)
        elif name in ("GIE", "IER", "ISR"):
            _register(regs, hls, off, {"GIE": "Global interrupt enable",
                                       "IER": "IP interrupt enable",
                                       "ISR": "IP interrupt status"}[name], "read-write")
        else:
            arg, _, half = name.rpartition("_") if name.endswith(("_lo", "_hi")) else (
                name, "", "")
            text = described.get(arg, f"{arg} buffer address")
            if half:
                text += f" [{'31:0' if half == 'lo' else '63:32'}]"
            _register(regs, hls, off, text, "write-only")
    _sub(k, "MEMORYMAP")
    _sub(k, "PORTS")
    bis = _sub(k, "BUSINTERFACES")
    _sub(bis, "BUSINTERFACE", BUSNAME="ps_gp", DATAWIDTH="32", NAME="s_axi_control",
         TYPE="SLAVE", VLNV=_AXIMM)
    for i in range(4):  # one m_axi master per bundle (gmem0..gmem3 in train_step.cpp)
        _sub(bis, "BUSINTERFACE", BUSNAME="kernel_gmem", DATAWIDTH="64", NAME=f"m_axi_gmem{i}",
             TYPE="MASTER", VLNV=_AXIMM)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n' + ET.tostring(
        root, encoding="unicode") + "\n"


def write_overlay(directory: str | Path, name: str = "fxemu_standin", *,
                  policy: dict | None = None, **hwh: object) -> Path:
    """Write ``NAME.bit`` (an empty placeholder: the stand-in programs nothing), ``NAME.hwh``
    and, with ``policy``, ``NAME.policy.json`` into ``directory``; returns the ``.bit`` path.

    ``hwh`` are the keyword arguments of :func:`hwh_text`. The policy sidecar is what the
    Makefile writes next to a real bitstream: the board backend refuses an overlay built for
    another policy.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    bit = d / f"{name}.bit"
    bit.write_bytes(b"")
    (d / f"{name}.hwh").write_text(hwh_text(**hwh), encoding="utf-8")
    if policy is not None:
        (d / f"{name}.policy.json").write_text(json.dumps(policy, indent=2, sort_keys=True))
    return bit
