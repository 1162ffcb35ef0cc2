"""The generated project: build cache, Tcl faithful to the vendor flow (run under tclsh with the
Vitis HLS commands stubbed), testbench data, host build script."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

import hwprune
from hwprune.backend import csim
from hwprune.backend.project_dir import ProjectDir

TCL_STUBS = """
set ::calls {}
foreach cmd {open_project set_top add_files open_solution set_part create_clock set_clock_uncertainty
             config_compile config_schedule csim_design csynth_design cosim_design export_design} {
    proc $cmd {args} "lappend ::calls \[concat [list $cmd] \$args\]"
}
rename exit _real_exit
proc exit {args} { foreach c $::calls { puts [join $c " "] }; _real_exit 0 }
set argv $::env(TCL_ARGS)
source build_prj.tcl
"""


def test_unchanged_project_is_not_rebuilt(mlp_model, tmp_path):
    prj = hwprune.export(mlp_model, tmp_path / "prj")
    binary = csim.build(prj)
    mtime = binary.stat().st_mtime_ns
    assert csim.build(prj).stat().st_mtime_ns == mtime
    # Any change to the sources triggers a rebuild.
    header = prj / "firmware" / "defines.h"
    header.write_text(header.read_text() + "\n// touched\n")
    assert csim.build(prj).stat().st_mtime_ns != mtime


@pytest.mark.skipif(shutil.which("tclsh") is None, reason="tclsh not installed")
@pytest.mark.parametrize("board,part,period", [("pynq-z2", "xc7z020clg400-1", "10.000"),
                                               ("zcu104", "xczu7ev-ffvc1156-2-e", "5.000")])
def test_build_prj_tcl_runs_the_vitis_flow(mlp_model, tmp_path, board, part, period):
    prj = hwprune.export(mlp_model, tmp_path / "prj", board=board)
    (prj / "stubs.tcl").write_text(TCL_STUBS)
    top = ProjectDir(prj).top
    r = subprocess.run(["tclsh", "stubs.tcl"], cwd=prj, capture_output=True, text=True,
                       env={"TCL_ARGS": "csim=1 synth=1 cosim=1 export=1", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    calls = [l.split()[0] for l in r.stdout.splitlines()]
    assert calls[:2] == ["open_project", "set_top"]
    assert f"set_top {top}" in r.stdout
    assert f"set_part {part}" in r.stdout
    assert f"create_clock -period {period}" in r.stdout
    for step in ("csim_design", "csynth_design", "cosim_design", "export_design"):
        assert step in calls
    r = subprocess.run(["tclsh", "stubs.tcl"], cwd=prj, capture_output=True, text=True,
                       env={"TCL_ARGS": "csim=0 synth=1", "PATH": "/usr/bin:/bin"})
    assert "csim_design" not in r.stdout and "csynth_design" in r.stdout
    r = subprocess.run(["tclsh", "stubs.tcl"], cwd=prj, capture_output=True, text=True,
                       env={"TCL_ARGS": "bogus=1", "PATH": "/usr/bin:/bin"})
    assert "unknown argument" in r.stdout


def test_host_build_script_and_testbench_data(mlp_model, tmp_path):
    x = np.random.default_rng(0).normal(size=(3, 16)).astype(np.float32)
    prj = hwprune.export(mlp_model, tmp_path / "prj", sample_inputs=[x])
    assert (prj / "tb_data" / "input_0.bin").stat().st_size == 3 * 16 * 8
    r = subprocess.run(["sh", "build_host.sh"], cwd=prj, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "3 samples" in r.stdout
    out = np.fromfile(prj / "tb_data" / "output_0.bin", dtype="<i8").reshape(3, 4)
    np.testing.assert_array_equal(out, csim.raw_outputs(prj, [x])[0])
