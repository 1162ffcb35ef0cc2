"""The generated testbenches check: every project ships golden outputs of the fixed-point
reference for its sample inputs, and the C and AXI-Stream testbenches compare bit for bit and
return non-zero on a mismatch (so Vitis csim and cosim fail on a wrong design)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

import hwprune
from hwprune.backend import axis, csim
from hwprune.pipeline import trace_fixed
from hwprune.project import load_project_graph


def corrupt_a_weight(prj: Path) -> Path:
    """Change the first value of the first dense weight file by a large amount."""
    f = sorted((prj / "firmware" / "weights").glob("*_w.h"))[0]
    text = f.read_text()
    m = re.search(r"= \{\n    (-?\d+),", text)
    assert m, f
    v = int(m.group(1))
    f.write_text(text[:m.start(1)] + str(v // 2 + 3 if v > 8 else v + 7) + text[m.end(1):])
    return f


def host_run(prj: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "build_host.sh"], cwd=prj, capture_output=True, text=True)


@pytest.mark.parametrize("io", ["parallel", "stream"])
def test_the_testbench_fails_on_a_corrupted_weight(mlp_model, tmp_path, io):
    x = np.random.default_rng(0).normal(size=(6, 16)).astype(np.float32)
    prj = hwprune.export(mlp_model, tmp_path / "prj", io_type=io, sample_inputs=[x])
    g = load_project_graph(prj)
    golden = np.fromfile(prj / "tb_data" / "expected_0.bin", dtype="<i8")
    np.testing.assert_array_equal(golden, trace_fixed(g, [x]).values[g.outputs[0]].reshape(-1))
    r = host_run(prj)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "6 samples, outputs match the fixed-point reference bit for bit" in r.stdout
    corrupt_a_weight(prj)
    r = host_run(prj)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "MISMATCH output_0" in r.stderr and "FAILED" in r.stdout


def test_a_project_without_sample_inputs_still_ships_checked_data(mlp_model, tmp_path):
    prj = hwprune.export(mlp_model, tmp_path / "prj")
    for f in ("input_0.bin", "expected_0.bin", "axis_in.bin", "axis_expected.bin"):
        assert (prj / "tb_data" / f).stat().st_size > 0, f
    r = host_run(prj)
    assert r.returncode == 0 and "match the fixed-point reference" in r.stdout, r.stdout + r.stderr
    # Without golden outputs the testbench refuses to pass rather than check nothing.
    (prj / "tb_data" / "expected_0.bin").unlink()
    r = host_run(prj)
    assert r.returncode == 2 and "expected_0.bin is missing" in r.stderr
    # Other inputs without golden outputs: --no-check, as `hwprune run --engine csim` does.
    r = subprocess.run(["./build/csim", "tb_data", "--no-check"], cwd=prj, capture_output=True, text=True)
    assert r.returncode == 0 and "not checked" in r.stdout


def test_the_axis_testbench_checks_the_bus_words(mlp_model, tmp_path):
    x = np.random.default_rng(1).normal(size=(5, 16)).astype(np.float32)
    prj = hwprune.export(mlp_model, tmp_path / "prj", io_type="stream", sample_inputs=[x])
    binary = axis.build_axis(prj).resolve()
    r = subprocess.run([str(binary), "tb_data"], cwd=prj, capture_output=True, text=True)
    assert r.returncode == 0 and "all match the fixed-point reference" in r.stdout, r.stdout + r.stderr
    corrupt_a_weight(prj)
    binary = axis.build_axis(prj).resolve()
    r = subprocess.run([str(binary), "tb_data"], cwd=prj, capture_output=True, text=True)
    assert r.returncode == 1 and "MISMATCH word" in r.stderr, r.stdout + r.stderr
    # The engines (their own inputs, no golden data) still run.
    words = np.fromfile(prj / "tb_data" / "axis_in.bin", dtype="<u8")
    out, last = axis.run_axis(prj, words, 5)
    assert out.size and last[-1] == 1
    assert csim.run_csim(prj, [x])[0].shape == (5, 4)


def test_vitis_runs_the_checking_testbench(mlp_model, tmp_path):
    """build_prj.tcl hands tb_data (with the golden files) to csim and cosim."""
    prj = hwprune.export(mlp_model, tmp_path / "prj")
    tcl = (prj / "build_prj.tcl").read_text()
    assert "add_files -tb tb_data" in tcl and 'csim_design -argv "tb_data"' in tcl and 'cosim_design -argv "tb_data"' in tcl
    top = json.loads((prj / "hwprune_project.json").read_text())["top"]
    tb = (prj / "tb" / f"{top}_test.cpp").read_text()
    assert "expected_" in tb and "return 1;" in tb
    assert "axis_expected.bin" in (prj / "tb" / f"{top}_axis_test.cpp").read_text()
