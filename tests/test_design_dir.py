"""Design directories (what `hwprune prune MODEL --board ... --out DIR` writes: DIR/model.onnx,
DIR/project/, DIR/report.json) are read by the other commands; directories that hold no
project are refused with the subdirectory to pass; the manifest has one owner module."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest

import hwprune
from hwprune.backend.project_dir import DESIGN_PROJECT, MANIFEST, ProjectDir, write_design
from hwprune.cli import main
from hwprune.errors import ModelLoadError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def design(tmp_path_factory, mlp_model_module) -> Path:
    """A small design directory, written by the writer `hwprune prune --board` uses."""
    mlp = mlp_model_module
    d = tmp_path_factory.mktemp("design") / "design"
    x = np.random.default_rng(0).normal(size=(4, 16)).astype(np.float32)
    write_design(d, onnx.load(str(mlp)), "pynq-z2", "stream", None, 125.0, lambda: dict(board="pynq-z2"),
                 sample_inputs=[x])
    return d


@pytest.fixture(scope="module")
def mlp_model_module(tmp_path_factory) -> Path:
    from conftest import fin, make_model
    from onnx import helper

    rng = np.random.default_rng(0)
    m = make_model([helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1, name="fc1"),
                    helper.make_node("Relu", ["h"], ["r"], name="relu"),
                    helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], transB=1, name="fc2")],
                   [fin("x", 16)], [fin("y", 4)],
                   [("w1", rng.normal(size=(8, 16)) * 0.3), ("b1", rng.normal(size=8) * 0.1),
                    ("w2", rng.normal(size=(4, 8)) * 0.3), ("b2", rng.normal(size=4) * 0.1)])
    p = tmp_path_factory.mktemp("m") / "mlp.onnx"
    onnx.save(m, p)
    return p


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_layout_prune_writes(design):
    assert sorted(p.name for p in design.iterdir() if not p.name.startswith(".")) == ["model.onnx", "project", "report.json"]
    assert ProjectDir.locate(design).path == design / DESIGN_PROJECT
    assert ProjectDir(design / DESIGN_PROJECT).clock_mhz == 125.0


def test_estimate_simulate_run_and_deploy_take_a_design_directory(design, tmp_path, capsys):
    prj = design / DESIGN_PROJECT
    code, out, err = cli(capsys, "estimate", design, "--board", "pynq-z2", "--json")
    assert code == 0, err
    got = json.loads(out)
    assert got.pop("verdict")["board"] == "pynq-z2"
    assert got == hwprune.estimate(prj, "pynq-z2").as_dict()
    code, out, err = cli(capsys, "simulate", design, "--board", "pynq-z2", "--batch", "4", "--json")
    assert code == 0, err
    sim = json.loads(out)
    assert sim["io_type"] == "stream" and sim["clock_mhz"] == 125.0  # the project's, not the board's default
    x = np.random.default_rng(1).normal(size=(6, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    for engine in ("csim", "fixed"):
        code, _, err = cli(capsys, "run", design, "--engine", engine, "--input", tmp_path / "x.npy",
                           "--output", tmp_path / f"{engine}.npy")
        assert code == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "csim.npy"), np.load(tmp_path / "fixed.npy"))
    np.testing.assert_array_equal(np.load(tmp_path / "csim.npy"), hwprune.run(prj, [x], engine="csim")[0])
    code, _, err = cli(capsys, "deploy", design, "--board", "pynq-z2", "--out", tmp_path / "pkg")
    assert code == 0, err
    spec = json.loads((tmp_path / "pkg" / "accelerator.json").read_text())
    assert spec["project_dir"] == str(prj.resolve()) and spec["clock_mhz"] == 125.0
    # build locates the project too (here the vendor tools are missing: it says what would run, and where)
    code, _, err = cli(capsys, "build", design)
    assert code == 2 and str(prj) in err and "vitis_hls" in err


def test_directories_without_a_project_say_which_subdirectory_to_pass(design, tmp_path, capsys):
    sweep = tmp_path / "front"  # like explore's output: several designs under points/
    for label in ("latency_40us", "latency_1000us"):
        (sweep / "points" / label / "project").mkdir(parents=True)
        (sweep / "points" / label / "project" / MANIFEST).write_text((design / "project" / MANIFEST).read_text())
    trained = tmp_path / "trained"  # like hwprune train's output: a model, no project
    trained.mkdir()
    (trained / "model.onnx").write_bytes((design / "model.onnx").read_bytes())
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [(sweep, [str(sweep / "points" / "latency_1000us" / "project"), str(sweep / "points" / "latency_40us" / "project")]),
             (trained, [str(trained / "model.onnx")]), (empty, ["hwprune export"])]
    np.save(tmp_path / "x.npy", np.zeros((1, 16), np.float32))
    for d, needles in cases:
        for args in (["estimate", d, "--board", "pynq-z2"], ["simulate", d, "--board", "pynq-z2"],
                     ["run", d, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy"],
                     ["deploy", d, "--board", "pynq-z2", "--out", tmp_path / "pkg"], ["build", d]):
            code, _, err = cli(capsys, *args)
            assert code == 2, (args, err)
            assert len(err.strip().splitlines()) == 1 and "not an hwprune project" in err, err
            for n in needles:
                assert n in err, (args, err)
    assert not (tmp_path / "pkg").exists() and not (tmp_path / "y.npy").exists()
    code, _, err = cli(capsys, "export", design, "--board", "pynq-z2", "--out", tmp_path / "again")
    assert code == 2 and str(design / "model.onnx") in err and not (tmp_path / "again").exists()
    with pytest.raises(ModelLoadError, match="does not exist"):
        ProjectDir.locate(tmp_path / "nowhere")


def test_the_manifest_has_one_owner():
    """Only hwprune/backend/project_dir.py spells the manifest's file name in code."""
    spelled = []
    for f in sorted((ROOT / "hwprune").rglob("*.py")):
        if f.name == "project_dir.py":
            continue
        for k, line in enumerate(f.read_text().splitlines(), 1):
            if re.search(r"""["']hwprune_project\.json["']""", line):
                spelled.append(f"{f.relative_to(ROOT)}:{k}")
    assert spelled == [], "read and write the manifest through hwprune.backend.project_dir.ProjectDir"
