# Vitis HLS: C simulation, synthesis, C/RTL co-simulation and IP export of the training-step
# kernel, typed by one precision policy.
#
#   vitis_hls -f hls.tcl -tclargs PART CLOCK_MHZ KERNEL_DIR BUILD_DIR
#
# KERNEL_DIR holds train_step.{cpp,hpp}, fxemu_dp.hpp and the test bench tb_train_step.cpp;
# BUILD_DIR holds the policy header fxemu_policy.h and golden.bin (both written by
# `make -C hw header golden`) and receives the project and the exported IP
# (BUILD_DIR/ip/fxemu_train_step.zip, VLNV fxemu:hls:fxemu_train_step:1.0).
# Every step stops the script on failure: the test bench exits non-zero on a mismatch with the
# emulator's golden vectors, in C simulation and in co-simulation alike.

if {[llength $argv] != 4} {
    puts stderr "usage: vitis_hls -f hls.tcl -tclargs PART CLOCK_MHZ KERNEL_DIR BUILD_DIR"
    exit 2
}
lassign $argv part clock_mhz kernel_dir build_dir
set kernel_dir [file normalize $kernel_dir]
set build_dir [file normalize $build_dir]
set period [format "%.3f" [expr {1000.0 / $clock_mhz}]]
set cflags "-std=c++14 -I$build_dir -I$kernel_dir"
set golden [file join $build_dir golden.bin]

cd $build_dir
open_project -reset fxemu_hls
set_top fxemu_train_step
add_files [file join $kernel_dir train_step.cpp] -cflags $cflags
add_files [file join $kernel_dir train_step.hpp] -cflags $cflags
add_files [file join $kernel_dir fxemu_dp.hpp] -cflags $cflags
add_files [file join $build_dir fxemu_policy.h] -cflags $cflags
add_files -tb [file join $kernel_dir tb_train_step.cpp] -cflags $cflags
add_files -tb $golden

open_solution -reset -flow_target vivado solution1
set_part $part
create_clock -period $period -name default
# 64-bit AXI addresses on every board (Zynq-7000 ignores the upper word)
config_interface -m_axi_addr64=true

csim_design -argv $golden
csynth_design
cosim_design -rtl verilog -argv $golden
export_design -format ip_catalog -vendor fxemu -library hls -version 1.0 \
    -ipname fxemu_train_step -display_name "fxemu training step" \
    -description "One SGD step of the fxemu reference CNN (forward; backward and update)" \
    -output [file join $build_dir ip fxemu_train_step.zip]
exit
