"""fxemu.hw: the HLS accelerator (C++ sources), its C-simulation bridge and the board driver.

Installed as ``fxemu.hw`` from the repository's top-level ``hw/`` folder; the C++ sources and
build scripts ship as package data so the C-simulation backend can compile them on demand.
"""
