# Vivado: block design (Zynq PS + the training-step kernel + AXI SmartConnects), bitstream and
# hardware handoff for one board.
#
#   vivado -mode batch -source bd.tcl -tclargs BOARD PART BOARD_PART FAMILY CLOCK_MHZ \
#          IP_REPO OUT_DIR [JOBS]
#
# FAMILY is zynq (processing_system7: M_AXI_GP0 -> s_axi_control, m_axi_* -> S_AXI_HP0) or
# zynqmp (zynq_ultra_ps_e: M_AXI_HPM0_FPD -> s_axi_control, m_axi_* -> S_AXI_HP0_FPD).
# IP_REPO is the folder holding the kernel IP exported by hls.tcl. The bitstream and the .hwh
# are copied to OUT_DIR/fxemu_train_step.{bit,hwh} (PYNQ loads them as one overlay). The run
# fails if implementation does not meet timing (setup WNS or hold WHS below zero).

if {[llength $argv] < 7} {
    puts stderr "usage: vivado -mode batch -source bd.tcl -tclargs BOARD PART BOARD_PART\
        FAMILY CLOCK_MHZ IP_REPO OUT_DIR \[JOBS\]"
    exit 2
}
lassign $argv board part board_part family clock_mhz ip_repo out_dir jobs
if {$jobs eq ""} { set jobs 4 }
set ip_repo [file normalize $ip_repo]
set out_dir [file normalize $out_dir]
set proj_dir [file normalize [file join [pwd] vivado_$board]]
set bd fxemu_bd
set kernel fxemu_train_step_0

create_project -force fxemu_$board $proj_dir -part $part
if {[llength [get_board_parts -quiet $board_part]] > 0} {
    set_property board_part $board_part [current_project]
    set preset 1
} else {
    # without the board file the PS keeps its defaults: DDR and MIO must then be set by hand
    puts "WARNING: board file $board_part is not installed; the PS gets no board preset"
    set preset 0
}
set_property ip_repo_paths [list $ip_repo] [current_project]
update_ip_catalog -rebuild

create_bd_design $bd
if {$family eq "zynq"} {
    set ps [create_bd_cell -type ip -vlnv xilinx.com:ip:processing_system7:5.5 \
        processing_system]
    apply_bd_automation -rule xilinx.com:bd_rule:processing_system7 \
        -config [list make_external {FIXED_IO, DDR} apply_board_preset $preset \
                     Master Disable Slave Disable] $ps
    set_property -dict [list CONFIG.PCW_USE_M_AXI_GP0 {1} CONFIG.PCW_USE_S_AXI_HP0 {1} \
        CONFIG.PCW_S_AXI_HP0_DATA_WIDTH {64} CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ $clock_mhz] $ps
    set gp_master M_AXI_GP0
    set hp_slave S_AXI_HP0
    set pl_clk FCLK_CLK0
} elseif {$family eq "zynqmp"} {
    set vlnv [lindex [lsort [get_ipdefs -all xilinx.com:ip:zynq_ultra_ps_e:*]] end]
    set ps [create_bd_cell -type ip -vlnv $vlnv processing_system]
    apply_bd_automation -rule xilinx.com:bd_rule:zynq_ultra_ps_e \
        -config [list apply_board_preset $preset] $ps
    set_property -dict [list CONFIG.PSU__USE__M_AXI_GP0 {1} CONFIG.PSU__USE__M_AXI_GP1 {0} \
        CONFIG.PSU__USE__M_AXI_GP2 {0} CONFIG.PSU__USE__S_AXI_GP2 {1} \
        CONFIG.PSU__SAXIGP2__DATA_WIDTH {64} \
        CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ $clock_mhz] $ps
    set gp_master M_AXI_HPM0_FPD
    set hp_slave S_AXI_HP0_FPD
    set pl_clk pl_clk0
} else {
    puts stderr "FAMILY must be zynq or zynqmp; got $family"
    exit 2
}

set k [create_bd_cell -type ip -vlnv fxemu:hls:fxemu_train_step:1.0 $kernel]
# s_axilite control: PS general-purpose master -> SmartConnect -> kernel
apply_bd_automation -rule xilinx.com:bd_rule:axi4 -config [list \
    Clk_master {Auto} Clk_slave {Auto} Clk_xbar {Auto} \
    Master /processing_system/$gp_master Slave /$kernel/s_axi_control \
    intc_ip {New AXI SmartConnect} master_apm {0}] [get_bd_intf_pins $kernel/s_axi_control]
# every m_axi master of the kernel (one per bundle) -> one SmartConnect -> PS HP slave
foreach m [get_bd_intf_pins -of_objects $k -filter {MODE == Master}] {
    apply_bd_automation -rule xilinx.com:bd_rule:axi4 -config [list \
        Clk_master /processing_system/$pl_clk Clk_slave /processing_system/$pl_clk \
        Clk_xbar /processing_system/$pl_clk Master $m Slave /processing_system/$hp_slave \
        intc_ip {Auto} master_apm {0}] [get_bd_intf_pins processing_system/$hp_slave]
}
assign_bd_address
validate_bd_design
save_bd_design

set bd_file [get_files $bd.bd]
generate_target all $bd_file
set wrapper [make_wrapper -files $bd_file -top]
add_files -norecurse $wrapper
set_property top ${bd}_wrapper [current_fileset]
update_compile_order -fileset sources_1

launch_runs impl_1 -to_step write_bitstream -jobs $jobs
wait_on_run impl_1
if {[get_property PROGRESS [get_runs impl_1]] ne "100%"} {
    puts stderr "implementation did not finish: [get_property STATUS [get_runs impl_1]]"
    exit 1
}
open_run impl_1
set wns [get_property SLACK [get_timing_paths -max_paths 1 -nworst 1 -setup]]
set whs [get_property SLACK [get_timing_paths -max_paths 1 -nworst 1 -hold]]
report_timing_summary -file [file join $proj_dir timing_summary.rpt]
report_utilization -file [file join $proj_dir utilization.rpt]
if {$wns eq "" || $whs eq "" || $wns < 0 || $whs < 0} {
    puts stderr "timing not met at $clock_mhz MHz: WNS $wns ns, WHS $whs ns\
        (see $proj_dir/timing_summary.rpt; lower CLOCK_MHZ)"
    exit 1
}

file mkdir $out_dir
set bit [glob -nocomplain [file join $proj_dir fxemu_$board.runs impl_1 ${bd}_wrapper.bit]]
set hwh [glob -nocomplain [file join $proj_dir fxemu_$board.gen sources_1 bd $bd hw_handoff \
    $bd.hwh] [file join $proj_dir fxemu_$board.srcs sources_1 bd $bd hw_handoff $bd.hwh]]
if {[llength $bit] == 0 || [llength $hwh] == 0} {
    puts stderr "bitstream or hardware handoff not found under $proj_dir"
    exit 1
}
file copy -force [lindex $bit 0] [file join $out_dir fxemu_train_step.bit]
file copy -force [lindex $hwh 0] [file join $out_dir fxemu_train_step.hwh]
puts "overlay written: $out_dir/fxemu_train_step.{bit,hwh} (WNS $wns ns, WHS $whs ns)"
exit
