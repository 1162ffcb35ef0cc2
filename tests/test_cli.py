"""The command line: help, exit codes, one-line errors, no half-written output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from conftest import fin, make_model
from hwprune.cli import main
from hwprune.backend.project_dir import MANIFEST, ProjectDir


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_bad_input(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = [l for l in err.strip().splitlines() if l]
    assert len(lines) == 1, f"expected one line, got: {err!r}"
    assert "Traceback" not in err
    for n in needles:
        assert n.lower() in lines[0].lower(), lines[0]


@pytest.mark.parametrize("cmd", ["export", "run", "estimate", "demo"])
def test_every_command_has_help(capsys, cmd):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    assert "usage: hwprune " + cmd in capsys.readouterr().out


def test_console_script_entry_point(mlp_model, tmp_path):
    r = subprocess.run([sys.executable, "-m", "hwprune.cli", "estimate", str(mlp_model), "--board", "pynq-z2", "--json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    for key in ("latency_cycles", "latency_us", "ii_cycles", "resources", "utilization", "layers"):
        assert key in d
    assert set(d["resources"]) >= {"dsp", "lut", "ff", "bram18", "uram"}
    assert len(d["layers"]) == 2


def test_missing_file(capsys, tmp_path):
    code, _, err = run_cli(capsys, "export", tmp_path / "nope.onnx", "--board", "pynq-z2", "--out", tmp_path / "o")
    assert_bad_input(code, err, "does not exist")
    assert not (tmp_path / "o").exists()


def test_truncated_and_non_onnx_files(capsys, mlp_model, tmp_path):
    trunc = tmp_path / "trunc.onnx"
    trunc.write_bytes(mlp_model.read_bytes()[:100])
    text = tmp_path / "text.onnx"
    text.write_text("this is not a model\n")
    for f in (trunc, text):
        code, _, err = run_cli(capsys, "export", f, "--board", "pynq-z2", "--out", tmp_path / "o")
        assert_bad_input(code, err, str(f.name))
        assert not (tmp_path / "o").exists()


def test_unsupported_op_names_node_and_lists_supported(capsys, tmp_path):
    m = make_model([helper.make_node("Sin", ["x"], ["y"], name="my_sin")], [fin("x", 4)], [fin("y", 4)])
    p = tmp_path / "sin.onnx"
    onnx.save(m, p)
    code, _, err = run_cli(capsys, "export", p, "--board", "pynq-z2", "--out", tmp_path / "o")
    assert_bad_input(code, err, "my_sin", "Sin", "supported", "Gemm")
    assert not (tmp_path / "o").exists()


def test_unknown_board_suggests_nearest(capsys, mlp_model, tmp_path):
    code, _, err = run_cli(capsys, "export", mlp_model, "--board", "pynq-z3", "--out", tmp_path / "o")
    assert_bad_input(code, err, "pynq-z3", "pynq-z2")


@pytest.mark.parametrize("prec", ["ap_fixed<16>", "float", "ap_fixed<0,0>", "fixed<16,6,AP_NOPE>"])
def test_bad_precision(capsys, mlp_model, tmp_path, prec):
    code, _, err = run_cli(capsys, "estimate", mlp_model, "--board", "pynq-z2", "--precision", prec)
    assert_bad_input(code, err, "precision")


@pytest.mark.parametrize("rf", ["0", "-3", "two", "1.5"])
def test_bad_reuse_factor(capsys, mlp_model, rf):
    code, _, err = run_cli(capsys, "estimate", mlp_model, "--board", "pynq-z2", "--reuse-factor", rf)
    assert_bad_input(code, err, "reuse")


def test_wrong_input_shape(capsys, mlp_model, tmp_path):
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((3, 15), dtype=np.float32))
    code, _, err = run_cli(capsys, "run", mlp_model, "--input", x, "--output", tmp_path / "y.npy", "--engine", "fixed")
    assert_bad_input(code, err, "(3, 15)", "16")
    assert not (tmp_path / "y.npy").exists()


def test_occupied_out_needs_force(capsys, mlp_model, tmp_path):
    out = tmp_path / "prj"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    code, _, err = run_cli(capsys, "export", mlp_model, "--board", "pynq-z2", "--out", out)
    assert_bad_input(code, err, "--force")
    assert (out / "keep.txt").read_text() == "user data"
    # --force replaces only what hwprune wrote: the user's file is not its to remove.
    code, _, err = run_cli(capsys, "export", mlp_model, "--board", "pynq-z2", "--out", out, "--force")
    assert_bad_input(code, err, "not written by hwprune")
    assert (out / "keep.txt").read_text() == "user data"
    (out / "keep.txt").unlink()
    code, _, err = run_cli(capsys, "export", mlp_model, "--board", "pynq-z2", "--out", out)
    assert code == 0, err
    code, _, err = run_cli(capsys, "export", mlp_model, "--board", "pynq-z2", "--out", out, "--force", "--io", "stream")
    assert code == 0, err
    assert json.loads((out / MANIFEST).read_text())["io_type"] == "stream"


def test_failed_export_leaves_nothing(capsys, tmp_path, monkeypatch):
    """An internal failure half way through writing must not leave a partial project."""
    import hwprune.backend.hls_project as hp

    rng = np.random.default_rng(1)
    m = make_model([helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)], [fin("x", 3)], [fin("y", 2)], [("w", rng.normal(size=(2, 3)))])
    p = tmp_path / "m.onnx"
    onnx.save(m, p)

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(hp.shutil, "copytree", boom)
    code, _, err = run_cli(capsys, "export", p, "--board", "pynq-z2", "--out", tmp_path / "o")
    assert code == 1 and "internal error" in err
    assert not (tmp_path / "o").exists()
    assert [q.name for q in tmp_path.iterdir() if q.name.startswith(".o")] == []


def test_run_engines_agree_through_cli(capsys, mlp_model, tmp_path):
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(2).normal(size=(5, 16)).astype(np.float32))
    outs = {}
    for engine in ("float", "fixed", "csim"):
        y = tmp_path / f"{engine}.npy"
        code, _, err = run_cli(capsys, "run", mlp_model, "--input", x, "--output", y, "--engine", engine)
        assert code == 0, err
        outs[engine] = np.load(y)
    assert outs["float"].shape == (5, 4)
    np.testing.assert_array_equal(outs["fixed"], outs["csim"])
    assert np.max(np.abs(outs["fixed"] - outs["float"])) < 0.05


def test_export_then_run_project(capsys, mlp_model, tmp_path):
    out = tmp_path / "prj"
    code, _, err = run_cli(capsys, "export", mlp_model, "--board", "pynq-z2", "--out", out, "--io", "stream",
                           "--precision", "ap_fixed<18,8>", "--reuse-factor", "2")
    assert code == 0, err
    for f in ("build_prj.tcl", "build_host.sh", "firmware/parameters.h", "tb", "model.onnx", MANIFEST):
        assert (out / f).exists(), f
    man = ProjectDir(out).manifest
    assert man["io_type"] == "stream" and man["part"] == "xc7z020clg400-1" and man["clock_mhz"] == 100
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(3).normal(size=(4, 16)).astype(np.float32))
    for engine in ("fixed", "csim"):
        code, _, err = run_cli(capsys, "run", out, "--input", x, "--output", tmp_path / f"{engine}.npy", "--engine", engine)
        assert code == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "fixed.npy"), np.load(tmp_path / "csim.npy"))
    # The precision given at export is the one the project keeps.
    assert "ap_fixed<18,8>" in (out / "firmware" / "defines.h").read_text()


def test_saturation_is_reported(capsys, mlp_model, tmp_path):
    x = tmp_path / "x.npy"
    np.save(x, np.full((2, 16), 50.0, dtype=np.float32))  # far beyond ap_fixed<8,3>
    code, _, err = run_cli(capsys, "run", mlp_model, "--input", x, "--output", tmp_path / "y.npy", "--engine", "fixed",
                           "--precision", "ap_fixed<8,3,AP_RND,AP_SAT>")
    assert code == 0
    assert "overflowed" in err and "fc1" in err


def test_estimate_says_which_latency_it_gives(capsys, mlp_model):
    """Issue 13 ("two latencies for one design"): in io_stream the estimate's latency is an upper
    bound and the simulator's is the one to use; in io_parallel they are the same schedule."""
    code, out, _ = run_cli(capsys, "estimate", mlp_model, "--board", "pynq-z2", "--io", "stream")
    assert code == 0
    line = next(l for l in out.splitlines() if l.startswith("latency: "))
    assert "upper bound" in line and "hwprune simulate" in line
    code, out, _ = run_cli(capsys, "estimate", mlp_model, "--board", "pynq-z2", "--json")
    assert code == 0 and "schedule" in json.loads(out)["latency_source"]
