"""The bitstream flow: the AXI-Stream top (host C simulation against the csim engine, packing
against hand-packed words), the Vitis HLS and Vivado Tcl under tclsh with the vendor commands
stubbed, build_bitstream.sh and `hwprune build` with and without (fake) vendor tools."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

import hwprune
from hwprune import cli
from hwprune.backend import axis
from hwprune.backend import pynq_driver as drv
from hwprune.board import list_boards, load_board
from hwprune.errors import HwpruneInputError
from hwprune.fixed import FixedType, Overflow, Rounding, quantize
from hwprune.precision import LayerPrecision, PrecisionConfig
from hwprune.project import load_project_graph
from hwprune.backend.project_dir import ProjectDir

from conftest import fin, make_model

needs_tclsh = pytest.mark.skipif(shutil.which("tclsh") is None, reason="tclsh not installed")

# Odd widths: 7-bit inputs that wrap (9 per 64-bit beat), 13-bit results that saturate (4 per beat).
ODD = PrecisionConfig(model=LayerPrecision(result=FixedType.parse("ap_fixed<13,5,AP_RND_CONV,AP_SAT>")),
                      layer_type={"Input": LayerPrecision(result=FixedType.parse("ap_fixed<7,3>"))})


def _mlp(path: Path) -> Path:
    rng = np.random.default_rng(0)
    m = make_model([helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1, name="fc1"),
                    helper.make_node("Gemm", ["h", "w2", "b2"], ["y"], transB=1, name="fc2")],
                   [fin("x", 16)], [fin("y", 5)],
                   [("w1", rng.normal(size=(8, 16)) * 0.4), ("b1", rng.normal(size=8) * 0.2),
                    ("w2", rng.normal(size=(5, 8)) * 0.4), ("b2", rng.normal(size=5) * 0.2)])
    onnx.save(m, path)
    return path


def _conv1d(path: Path) -> Path:
    """Channels-first Conv1d: the stream carries (length, channels), so packing follows perm."""
    rng = np.random.default_rng(1)
    m = make_model([helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", kernel_shape=[3]),
                    helper.make_node("Relu", ["c"], ["y"], name="relu")],
                   [fin("x", 3, 10)], [fin("y", 4, 8)],
                   [("w", rng.normal(size=(4, 3, 3)) * 0.5), ("b", rng.normal(size=4) * 0.1)])
    onnx.save(m, path)
    return path


def _two_in_two_out(path: Path) -> Path:
    rng = np.random.default_rng(2)
    m = make_model([helper.make_node("Add", ["a", "b"], ["s"], name="add"),
                    helper.make_node("Gemm", ["s", "w", "c"], ["y"], transB=1, name="fc"),
                    helper.make_node("Relu", ["s"], ["r"], name="relu")],
                   [fin("a", 8), fin("b", 8)], [fin("y", 3), fin("r", 8)],
                   [("w", rng.normal(size=(3, 8)) * 0.3), ("c", rng.normal(size=3) * 0.1)])
    onnx.save(m, path)
    return path


# ---------------------------------------------------------------- packing

def _hand_pack(values: list[int], width: int) -> list[int]:
    """Bus words built bit by bit with Python integers, independently of the driver."""
    per = 64 // width
    words = []
    for start in range(0, len(values), per):
        w = 0
        for j, v in enumerate(values[start:start + per]):
            w |= (v % (1 << width)) << (j * width)
        words.append(w)
    return words


@pytest.mark.parametrize("width,signed", [(7, True), (13, True), (1, False), (3, False), (32, True), (64, True)])
def test_packing_matches_hand_packed_words(width, signed):
    rng = np.random.default_rng(width)
    lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
    size = 2 * (64 // width) + 1  # two full beats and one element in a third
    raw = np.array([([lo, hi, -1 if signed else 1, 0] + list(rng.integers(lo, hi, size=size, endpoint=True)))[:size]
                    for _ in range(3)], dtype=np.int64)
    words = drv.pack_words(raw, width)
    assert words.dtype == np.uint64 and words.shape == (3, 3)
    for s in range(3):
        assert [int(w) for w in words[s]] == _hand_pack([int(v) for v in raw[s]], width)
    np.testing.assert_array_equal(drv.unpack_words(words, size, width, signed), raw)


def test_sample_starts_ports_on_fresh_beats():
    spec = drv.AcceleratorSpec(
        inputs=[drv.PortSpec("a", (10,), (0,), "fixed", "ap_fixed<7,3>", 7, 4, True),
                drv.PortSpec("b", (2, 3), (1, 0), "fixed", "ap_fixed<13,5>", 13, 8, True)],
        outputs=[drv.PortSpec("y", (1,), (0,), "fixed", "ap_fixed<8,8>", 8, 0, True)], clock_mhz=100.0)
    a = np.array([[-1.0, 0.5, 3.9375, -4.0, 0.0625, 1, 2, 3, -2, 0.25]])
    b = np.array([[[1.0, -1.0, 0.5], [2.0, -2.0, 0.00390625]]])
    words = drv.pack_inputs(spec, [a, b])
    ra = [int(v) for v in np.floor(a[0] * 16)]  # ap_fixed<7,3>: truncation, 4 fractional bits
    rb = [int(v) for v in np.floor(b[0].T.reshape(-1) * 256)]  # physical order: axis 1 first
    assert [int(w) for w in words[0]] == _hand_pack(ra, 7) + _hand_pack(rb, 13)
    assert spec.words_in == 2 + 2


_MODES = [(r, o) for r in Rounding for o in Overflow]


@pytest.mark.parametrize("rounding,overflow", _MODES, ids=[f"{r.value}-{o.value}" for r, o in _MODES])
@pytest.mark.parametrize("width,integer,signed", [(7, 3, True), (13, 5, True), (6, 2, False), (1, 1, True), (24, -2, True)])
def test_driver_quantizer_matches_the_fixed_model(rounding, overflow, width, integer, signed):
    t = FixedType(width, integer, signed, rounding, overflow)
    port = drv.PortSpec("x", (1,), (0,), "fixed", t.cpp(), t.width, t.frac, t.signed, rounding.value, overflow.value)
    rng = np.random.default_rng(width)
    span = max(abs(t.min_value), t.max_value, t.lsb) * 3
    ties = (np.arange(-40, 41) + 0.5) * t.lsb  # exactly halfway between raws
    x = np.concatenate([rng.uniform(-span, span, 2000), ties, [0.0, -0.0, t.min_value, t.max_value, 1e30, -1e30]])
    np.testing.assert_array_equal(drv.quantize(x, port), quantize(x, t))


def test_driver_refuses_non_finite_inputs():
    port = drv.PortSpec("x", (2,), (0,), "fixed", "ap_fixed<8,4>", 8, 4, True)
    with pytest.raises(drv.InputError, match="NaN or infinite"):
        drv.quantize(np.array([1.0, np.nan]), port)


# ---------------------------------------------------------------- the AXI-Stream top on the host

def _roundtrip(prj: Path, xs: list[np.ndarray]) -> None:
    g = load_project_graph(prj)
    spec = axis.accelerator_spec(g, "pynq-z2", 100.0, "t")
    n = xs[0].shape[0]
    words = drv.pack_inputs(spec, xs)
    assert words.shape == (n, spec.words_in)
    out, last = axis.run_axis(prj, words, n)
    assert out.shape == (n * spec.words_out,)
    # TLAST on the last beat of the batch only: one DMA receive completes per batch.
    np.testing.assert_array_equal(last, [0] * (out.size - 1) + [1])
    got = drv.outputs_to_logical(spec, drv.unpack_outputs(spec, out.reshape(n, spec.words_out)))
    ref = hwprune.run(prj, xs, engine="csim")
    assert len(got) == len(ref)
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("io", ["parallel", "stream"])
def test_axis_top_roundtrips_odd_widths(tmp_path, io):
    prj = hwprune.export(_mlp(tmp_path / "mlp.onnx"), tmp_path / "prj", io_type=io, precision=ODD)
    g = load_project_graph(prj)
    assert (g.tensor(g.inputs[0]).type.width, g.tensor(g.outputs[0]).type.width) == (7, 13)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 16)) * 6  # beyond ap_fixed<7,3>'s range: negative and wrapping values
    _roundtrip(prj, [x])


def test_axis_top_follows_the_physical_layout(tmp_path):
    prec = PrecisionConfig(model=LayerPrecision(result=FixedType.parse("ap_fixed<7,3,AP_RND,AP_SAT>")),
                           layer_type={"Input": LayerPrecision(result=FixedType.parse("ap_fixed<13,4>"))})
    prj = hwprune.export(_conv1d(tmp_path / "conv.onnx"), tmp_path / "prj", io_type="stream", precision=prec)
    g = load_project_graph(prj)
    assert g.tensor(g.inputs[0]).perm != (0, 1)  # channels-last on the stream
    _roundtrip(prj, [np.random.default_rng(4).normal(size=(5, 3, 10)) * 2])


@pytest.mark.parametrize("io", ["parallel", "stream"])
def test_axis_top_with_two_inputs_and_two_outputs(tmp_path, io):
    prj = hwprune.export(_two_in_two_out(tmp_path / "two.onnx"), tmp_path / "prj", io_type=io)
    rng = np.random.default_rng(5)
    _roundtrip(prj, [rng.normal(size=(4, 8)) * 3, rng.normal(size=(4, 8)) * 3])


def test_axis_testbench_refuses_a_batch_the_words_do_not_make(tmp_path):
    prj = hwprune.export(_mlp(tmp_path / "mlp.onnx"), tmp_path / "prj")
    spec = axis.accelerator_spec(load_project_graph(prj), "pynq-z2", 100.0, "t")
    words = np.zeros((3, spec.words_in), np.uint64)
    with pytest.raises(Exception, match="a batch of 4 needs"):
        axis.run_axis(prj, words, 4)


def test_sample_inputs_are_written_as_bus_words(tmp_path):
    x = np.random.default_rng(6).normal(size=(3, 16))
    prj = hwprune.export(_mlp(tmp_path / "mlp.onnx"), tmp_path / "prj", precision=ODD, sample_inputs=[x])
    spec = axis.accelerator_spec(load_project_graph(prj), "pynq-z2", 100.0, "t")
    words = np.fromfile(prj / "tb_data" / "axis_in.bin", dtype="<u8")
    np.testing.assert_array_equal(words, drv.pack_inputs(spec, [x]).reshape(-1))


# ---------------------------------------------------------------- Tcl under tclsh

HLS_STUBS = """
set ::calls {}
foreach cmd {open_project set_top add_files open_solution set_part create_clock set_clock_uncertainty
             config_compile config_schedule csim_design csynth_design cosim_design export_design} {
    proc $cmd {args} "lappend ::calls \\[concat [list $cmd] \\$args\\]"
}
rename exit _real_exit
proc exit {args} { foreach c $::calls { puts $c }; _real_exit 0 }
set argv $::env(TCL_ARGS)
source build_prj.tcl
"""

# Vivado: every command records its call; queries answer like a Vivado with the IPs installed.
VIVADO_STUBS = """
set ::calls {}
proc hwp_record {args} { lappend ::calls $args }
foreach cmd {create_project set_property update_ip_catalog create_bd_design apply_bd_automation connect_bd_intf_net
             connect_bd_net assign_bd_address validate_bd_design save_bd_design generate_target make_wrapper
             update_compile_order wait_on_run open_run report_utilization report_timing_summary write_hw_platform} {
    proc $cmd {args} "hwp_record $cmd {*}\\$args; return {}"
}
proc get_ipdefs {args} {
    hwp_record get_ipdefs {*}$args
    set pattern [lindex $args end]
    return [list [string map {3.* 3.4 1.* 1.0 5.* 5.0} $pattern]]
}
proc get_board_parts {args} {
    hwp_record get_board_parts {*}$args
    if {$::env(HWP_BOARD_FILES)} { return [list [string map {* 1.1} [lindex $args end]] [string map {* 1.0} [lindex $args end]]] }
    return {}
}
proc current_project {args} { return project }
proc current_fileset {args} { return sources_1 }
proc create_bd_cell {args} { hwp_record create_bd_cell {*}$args; return [lindex $args end] }
proc get_bd_cells {args} { return [lindex $args end] }
proc get_bd_pins {args} { return [lindex $args end] }
proc get_bd_intf_pins {args} { return [lindex $args end] }
proc get_files {args} { return [lindex $args end] }
proc get_runs {args} { return [lindex $args end] }
proc launch_runs {args} {
    hwp_record launch_runs {*}$args
    # What Vivado leaves behind: the run's bitstream and the block design's hardware handoff.
    file mkdir stub_runs/impl_1
    set f [open stub_runs/impl_1/${::hwp_design}_wrapper.bit w]; puts -nonewline $f BIT; close $f
    set d [file join $::hwp_project_dir ${::hwp_project_name}.gen sources_1 bd $::hwp_design hw_handoff]
    file mkdir $d
    set f [open [file join $d ${::hwp_design}.hwh] w]; puts -nonewline $f HWH; close $f
}
proc get_property {args} {
    hwp_record get_property {*}$args
    switch -glob -- [lindex $args 0] {
        *ACT*FREQMHZ { return $::env(HWP_ACT_MHZ) }
        PROGRESS { return 100% }
        STATS.WNS { return 0.25 }
        DIRECTORY { return stub_runs/impl_1 }
    }
    return {}
}
rename exit _real_exit
proc exit {{code 0}} { foreach c $::calls { puts "CALL [join $c { }]" }; _real_exit $code }
set argv $::env(TCL_ARGS)
source vivado/block_design.tcl
"""


def _tcl(prj: Path, stubs: str, args: str, **env: str) -> subprocess.CompletedProcess:
    (prj / "stubs.tcl").write_text(stubs)
    return subprocess.run(["tclsh", "stubs.tcl"], cwd=prj, capture_output=True, text=True,
                          env={"TCL_ARGS": args, "PATH": "/usr/bin:/bin", "HWP_BOARD_FILES": "0", "HWP_ACT_MHZ": "0",
                               **env})


def _calls(out: str) -> list[str]:
    return [l[5:] for l in out.splitlines() if l.startswith("CALL ")]


@needs_tclsh
@pytest.mark.parametrize("board", ["pynq-z2", "zcu104"])
def test_build_prj_tcl_exports_the_axis_top(tmp_path, board):
    b = load_board(board)
    prj = hwprune.export(_mlp(tmp_path / "mlp.onnx"), tmp_path / "prj", board=board)
    top = ProjectDir(prj).top
    r = _tcl(prj, HLS_STUBS, "csim=1 synth=1 export=1 axis=1")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:2] == [f"open_project -reset {top}_axis_prj", f"set_top {top}_axis"]
    assert f"add_files firmware/{top}.cpp -cflags {{-std=c++14 -Ifirmware -DHWP_VENDOR_AXIS}}" in lines
    assert f"add_files firmware/{top}_axis.cpp -cflags {{-std=c++14 -Ifirmware -DHWP_VENDOR_AXIS}}" in lines
    assert f"add_files -tb tb/{top}_axis_test.cpp -cflags {{-std=c++14 -Ifirmware -DHWP_VENDOR_AXIS}}" in lines
    assert f"set_part {b.part}" in lines
    assert f"create_clock -period {1000.0 / b.default_clock_mhz:.3f} -name default" in lines
    export = [l for l in lines if l.startswith("export_design")]
    assert export == [f"export_design -format ip_catalog -vendor hwprune.org -library hls -version 1.0 "
                      f"-ipname {top}_axis -display_name {top}_axis"]
    # Without axis=1 the network itself stays the top.
    r = _tcl(prj, HLS_STUBS, "synth=1 export=1")
    assert f"set_top {top}" in r.stdout.splitlines() and "_axis" not in r.stdout


@needs_tclsh
@pytest.mark.parametrize("board", list_boards())
def test_block_design_tcl_runs_the_vivado_flow(tmp_path, board):
    b = load_board(board)
    prj = hwprune.export(_mlp(tmp_path / "mlp.onnx"), tmp_path / "prj", board=board)
    top = ProjectDir(prj).top
    (prj / f"{top}_axis_prj" / "solution1" / "impl" / "ip").mkdir(parents=True)
    r = _tcl(prj, VIVADO_STUBS, "jobs=3", HWP_ACT_MHZ=str(b.default_clock_mhz))
    assert r.returncode == 0, r.stdout + r.stderr
    calls = _calls(r.stdout)
    assert calls[0] == f"create_project -force {top}_vivado vivado/{top}_vivado -part {b.part}"
    assert f"set_property ip_repo_paths {prj.resolve()}/{top}_axis_prj/solution1/impl/ip project" in calls
    cells = {c.split()[-1]: c.split()[-2] for c in calls if c.startswith("create_bd_cell")}
    clock = f"{b.default_clock_mhz:g}"
    if b.family == "zynq7000":
        assert cells["ps"] == "xilinx.com:ip:processing_system7:5.5"
        ps_cfg = next(c for c in calls if "CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ" in c)
        assert f"CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ {clock}" in ps_cfg and "CONFIG.PCW_USE_S_AXI_HP0 1" in ps_cfg
        assert any(c.startswith("apply_bd_automation -rule xilinx.com:bd_rule:processing_system7") for c in calls)
        master, slave, pl_clk = "ps/M_AXI_GP0", "ps/S_AXI_HP0", "ps/FCLK_CLK0"
    else:
        assert cells["ps"] == "xilinx.com:ip:zynq_ultra_ps_e:3.4"
        ps_cfg = next(c for c in calls if "CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ" in c)
        assert f"CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ {clock}" in ps_cfg and "CONFIG.PSU__USE__S_AXI_GP2 1" in ps_cfg
        assert any(c.startswith("apply_bd_automation -rule xilinx.com:bd_rule:zynq_ultra_ps_e") for c in calls)
        master, slave, pl_clk = "ps/M_AXI_HPM0_FPD", "ps/S_AXI_HP0_FPD", "ps/pl_clk0"
    assert "processing_system7" not in r.stdout if b.family != "zynq7000" else "zynq_ultra_ps_e" not in r.stdout
    assert cells["hwp_dma"] == "xilinx.com:ip:axi_dma:7.1"
    assert cells["hwp_accel"] == f"hwprune.org:hls:{top}_axis:1.0"
    assert cells["hwp_rst"].startswith("xilinx.com:ip:proc_sys_reset:")
    assert cells["hwp_ctrl_smc"].startswith("xilinx.com:ip:smartconnect:")
    dma_cfg = next(c for c in calls if "CONFIG.c_include_sg" in c)
    assert "CONFIG.c_include_sg 0" in dma_cfg and "CONFIG.c_sg_length_width 26" in dma_cfg
    assert "CONFIG.c_m_axis_mm2s_tdata_width 64" in dma_cfg and "CONFIG.c_s_axis_s2mm_tdata_width 64" in dma_cfg
    for net in (f"connect_bd_intf_net {master} hwp_ctrl_smc/S00_AXI", "connect_bd_intf_net hwp_ctrl_smc/M01_AXI hwp_accel/s_axi_control",
                "connect_bd_intf_net hwp_ctrl_smc/M00_AXI hwp_dma/S_AXI_LITE", f"connect_bd_intf_net hwp_mem_smc/M00_AXI {slave}",
                "connect_bd_intf_net hwp_dma/M_AXIS_MM2S hwp_accel/data_in",
                "connect_bd_intf_net hwp_accel/data_out hwp_dma/S_AXIS_S2MM"):
        assert net in calls
    clock_net = next(c for c in calls if c.startswith(f"connect_bd_net {pl_clk} "))
    for pin in ("hwp_accel/ap_clk", "hwp_dma/m_axi_mm2s_aclk", "hwp_dma/m_axi_s2mm_aclk", "hwp_rst/slowest_sync_clk"):
        assert pin in clock_net.split()
    assert "connect_bd_net hwp_rst/peripheral_aresetn hwp_dma/axi_resetn hwp_accel/ap_rst_n" in calls
    order = [c.split()[0] for c in calls]
    for a, z in (("assign_bd_address", "validate_bd_design"), ("validate_bd_design", "make_wrapper"),
                 ("make_wrapper", "launch_runs"), ("launch_runs", "write_hw_platform")):
        assert order.index(a) < order.index(z)
    assert "make_wrapper -files hwprune_bd.bd -top -import" in calls
    assert "launch_runs impl_1 -to_step write_bitstream -jobs 3" in calls
    assert (prj / "bitstream" / f"{top}.bit").read_text() == "BIT"
    assert (prj / "bitstream" / f"{top}.hwh").read_text() == "HWH"
    assert "WARNING: hwprune: board files" in r.stdout  # none installed in this run
    assert "WARNING: hwprune: the PL clock" not in r.stdout


@needs_tclsh
@pytest.mark.parametrize("board", ["pynq-z1", "ultra96-v2"])
def test_block_design_uses_installed_board_files_and_warns_about_a_fast_clock(tmp_path, board):
    b = load_board(board)
    prj = hwprune.export(_mlp(tmp_path / "mlp.onnx"), tmp_path / "prj", board=board, clock_mhz=142.0)
    top = ProjectDir(prj).top
    (prj / f"{top}_axis_prj" / "solution1" / "impl" / "ip").mkdir(parents=True)
    r = _tcl(prj, VIVADO_STUBS, "", HWP_BOARD_FILES="1", HWP_ACT_MHZ="150.0")
    assert r.returncode == 0, r.stdout + r.stderr
    calls = _calls(r.stdout)
    part = next(c for c in calls if c.startswith("set_property board_part"))
    assert part.endswith(":part0:1.1 project")  # the newest installed revision
    assert any("apply_board_preset 1" in c for c in calls if c.startswith("apply_bd_automation"))
    assert any("FREQMHZ 142" in c for c in calls)
    assert "WARNING: hwprune: the PL clock (150.0 MHz) is above the HLS clock (142 MHz)" in r.stdout
    assert "launch_runs impl_1 -to_step write_bitstream -jobs 2" in calls


@needs_tclsh
def test_block_design_refuses_a_missing_ip_and_bad_arguments(tmp_path):
    prj = hwprune.export(_mlp(tmp_path / "mlp.onnx"), tmp_path / "prj")
    r = _tcl(prj, VIVADO_STUBS, "")
    assert r.returncode == 1 and "export the HLS IP first" in r.stdout
    assert _calls(r.stdout) == []
    r = _tcl(prj, VIVADO_STUBS, "turbo=1")
    assert r.returncode == 2 and "unknown argument 'turbo=1'" in r.stdout


@needs_tclsh
def test_model_names_do_not_reach_the_tcl(tmp_path):
    src = _mlp(tmp_path / "mlp.onnx")
    evil = tmp_path / "m [exit 3];$x.onnx"
    shutil.copyfile(src, evil)
    prj = hwprune.export(evil, tmp_path / "prj", board="kv260")
    top = ProjectDir(prj).top
    assert all(c.isalnum() or c == "_" for c in top)
    (prj / f"{top}_axis_prj" / "solution1" / "impl" / "ip").mkdir(parents=True)
    for script in ("vivado/block_design.tcl", "build_prj.tcl", "build_bitstream.sh"):
        text = (prj / script).read_text()
        assert "[exit" not in text and "$x" not in text
    r = _tcl(prj, VIVADO_STUBS, "", HWP_ACT_MHZ="200")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (prj / "bitstream" / f"{top}.bit").is_file()


# ---------------------------------------------------------------- build_bitstream.sh and `hwprune build`

def _fake_tools(bindir: Path, log: Path, top: str, fail: str | None = None, produce: bool = True) -> None:
    """vitis_hls and vivado that record their arguments and working directory; vivado writes
    the bitstream and handoff where the real block-design script copies them."""
    bindir.mkdir(parents=True, exist_ok=True)
    for tool in ("vitis_hls", "vivado"):
        body = f'echo "{tool} $(pwd) $*" >> "{log}"\n'
        if tool == "vivado" and produce:
            body += f"mkdir -p bitstream && echo BIT > bitstream/{top}.bit && echo HWH > bitstream/{top}.hwh\n"
        if tool == fail:
            body += "echo 'ERROR: [HLS 200-70] synthesis failed'\nexit 1\n"
        p = bindir / tool
        p.write_text("#!/bin/sh\n" + body)
        p.chmod(p.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def test_build_without_tools_says_what_is_missing(tmp_path, monkeypatch, capsys):
    prj = hwprune.export(_mlp(tmp_path / "mlp.onnx"), tmp_path / "prj")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert cli.main(["build", str(prj)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "vitis_hls and vivado not found on PATH" in err
    assert "vitis_hls -f build_prj.tcl -tclargs csim=0 synth=1 cosim=0 export=1 axis=1" in err
    assert "vivado -mode batch" in err and "vivado/block_design.tcl" in err
    assert not (prj / "bitstream").exists()
    r = subprocess.run(["sh", "build_bitstream.sh"], cwd=prj, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 2 and "vitis_hls is not on PATH" in r.stderr


def test_build_runs_vitis_hls_then_vivado(tmp_path, monkeypatch, capsys):
    prj = hwprune.export(_mlp(tmp_path / "mlp.onnx"), tmp_path / "prj", board="ultra96-v2")
    top = ProjectDir(prj).top
    log = tmp_path / "calls.log"
    _fake_tools(tmp_path / "bin", log, top)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    assert cli.main(["build", str(prj), "--jobs", "4"]) == 0
    out = capsys.readouterr().out
    assert f"bitstream: {prj / 'bitstream' / (top + '.bit')}" in out
    assert f"hardware handoff: {prj / 'bitstream' / (top + '.hwh')}" in out
    calls = log.read_text().splitlines()
    assert calls == [f"vitis_hls {prj.resolve()} -f build_prj.tcl -tclargs csim=0 synth=1 cosim=0 export=1 axis=1",
                     f"vivado {prj.resolve()} -mode batch -nojournal -log build/vivado.log -source vivado/block_design.tcl "
                     f"-tclargs jobs=4"]
    # The shell script runs the same two commands.
    log.unlink()
    r = subprocess.run(["sh", "build_bitstream.sh", "3"], cwd=prj, capture_output=True, text=True,
                       env={"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert [l.split()[0] for l in log.read_text().splitlines()] == ["vitis_hls", "vivado"]
    assert log.read_text().splitlines()[1].endswith("-tclargs jobs=3")


def test_build_reports_a_failing_tool_and_missing_results(tmp_path, monkeypatch, capsys):
    prj = hwprune.export(_mlp(tmp_path / "mlp.onnx"), tmp_path / "prj")
    top = ProjectDir(prj).top
    log = tmp_path / "calls.log"
    _fake_tools(tmp_path / "bin", log, top, fail="vitis_hls")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    assert cli.main(["build", str(prj)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "vitis_hls failed (exit 1)" in err and "vitis_hls.log" in err
    assert [l.split()[0] for l in log.read_text().splitlines()] == ["vitis_hls"]  # vivado never ran
    assert "synthesis failed" in (prj / "build" / "vitis_hls.log").read_text()
    shutil.rmtree(tmp_path / "bin")
    _fake_tools(tmp_path / "bin", log, top, produce=False)
    assert cli.main(["build", str(prj)]) == 1
    assert "is missing" in capsys.readouterr().err


def test_build_refuses_a_directory_that_is_not_a_project(tmp_path, capsys):
    assert cli.main(["build", str(tmp_path)]) == 2
    assert "not an hwprune project" in capsys.readouterr().err


def test_bitstream_files_are_regenerated_for_an_old_project(tmp_path):
    from hwprune.backend.vivado import write_bitstream_project

    prj = hwprune.export(_mlp(tmp_path / "mlp.onnx"), tmp_path / "prj", board="zcu102")
    tcl = (prj / "vivado" / "block_design.tcl").read_text()
    (prj / "vivado" / "block_design.tcl").unlink()
    write_bitstream_project(prj)
    assert (prj / "vivado" / "block_design.tcl").read_text() == tcl
    with pytest.raises(HwpruneInputError, match="exported for zcu102"):
        write_bitstream_project(prj, "zcu104")
