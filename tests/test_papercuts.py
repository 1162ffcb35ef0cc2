"""Issue 13's papercuts, one test each: live sweep progress, one warning per layer, one-shot
prune output from the estimate, every unsupported op at once, PyTorch files recognised, a
closed pipe, custom board files, `deploy` reading the project's board, no temporaries left by
SIGTERM or Ctrl-C, documented precision examples that saturate, the float engine on any batch,
a quiet install."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import helper

import hwprune
from conftest import fin, make_model
from hwprune.cli import main

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str, *needles: str) -> str:
    assert code == 2, err
    lines = [l for l in err.strip().splitlines() if l]
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n.lower() in lines[0].lower(), lines[0]
    return lines[0]


# --------------------------------------------------------------------------- sweep progress

@pytest.mark.parametrize("workers", [1, 2])
def test_sweep_progress_arrives_as_it_happens(tmp_path, monkeypatch, workers):
    import hwprune.codesign.explore as ex
    from sweep_helpers import FakeBudget, FakeConfig, timed_point

    monkeypatch.setattr(ex, "_point", timed_point)
    monkeypatch.setattr(ex, "_design_space", lambda source, cfg, say: None)  # the stand-ins need none
    monkeypatch.syspath_prepend(str(TESTS))  # the spawned workers import sweep_helpers
    (tmp_path / "model").mkdir()
    heard: list[tuple[float, str]] = []
    t0 = time.monotonic()
    points = ex.explore(tmp_path / "model", FakeConfig(FakeBudget(1.0)), [2.0, 25.0], tmp_path / "out", workers=workers,
                        say=lambda m: heard.append((time.monotonic() - t0, m)))
    end = time.monotonic() - t0
    assert [p["label"] for p in points] == ["latency_2us", "latency_25us"]
    when = {m.strip(): t for t, m in heard}
    # The slow point's progress and the fast point's result are heard long before the sweep ends.
    assert when["latency_25us: started"] < end - 3
    assert when["latency_25us: half way"] < end - 1.5
    done_fast = next(t for t, m in heard if "latency_2us done" in m)
    assert done_fast < end - 1.5, heard
    assert any("[2/2] latency_25us done" in m for _, m in heard)


# --------------------------------------------------------------------------- one warning per layer

def test_a_layer_that_stays_dense_is_warned_about_once(caplog):
    from hwprune.prune.torch_prune import Cubic, Pruner

    model = torch.nn.Sequential(torch.nn.Conv1d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 6, 2))
    pruner = Pruner(model, "block:4x4", 0.75, schedule=Cubic(steps=20)).prepare()
    with caplog.at_level(logging.WARNING, logger="hwprune"):
        for _ in range(25):
            pruner.step()
    dense = [r for r in caplog.records if "stays dense" in r.getMessage()]
    assert len(dense) == 1 and dense[0].getMessage().startswith("0 stays dense"), [r.getMessage() for r in dense]


# --------------------------------------------------------------------------- one-shot prune output

@pytest.mark.parametrize("pattern", ["block:4x4", "filter", "unstructured"])
def test_one_shot_prune_says_what_is_saved_from_the_estimate(capsys, mlp_model, tmp_path, pattern):
    out = tmp_path / "p.onnx"
    code, text, err = run_cli(capsys, "prune", mlp_model, "--pattern", pattern, "--sparsity", "0.5", "--out", out)
    assert code == 0, err
    dense, pruned = hwprune.estimate(mlp_model), hwprune.estimate(out)
    run = lambda e: sum(l.cost.macs - l.cost.macs_skipped for l in e.layers)
    saved = [l for l in text.splitlines() if l.startswith("saved in hardware")]
    assert len(saved) == 1
    rd, rp = dense.resources.as_dict(), pruned.resources.as_dict()
    if run(pruned) < run(dense):
        assert f"{run(dense):,} -> {run(pruned):,}" in saved[0] and "nothing" not in saved[0]
    elif rd != rp:
        assert "no multiply-accumulate is skipped" in saved[0]
    else:
        assert "nothing" in saved[0]
    for k in rd:
        assert (f"{k.upper()} {rd[k]} -> {rp[k]}" in saved[0]) == (rd[k] != rp[k])
    for le in pruned.layers:
        if le.op == "Dense" and le.cost.note:
            assert le.cost.note in text  # the kernel each layer runs on
    assert "fine-tune" in text and f"wrote {out}" in text


# --------------------------------------------------------------------------- unsupported ops

def _export(module: torch.nn.Module, x: torch.Tensor, path: Path, dynamo: bool) -> Path:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (x,), str(path), dynamo=dynamo)
    return path


class _Lstm(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(8, 16, batch_first=True)
        self.fc = torch.nn.Linear(16, 2)

    def forward(self, x):
        y, _ = self.lstm(x)
        return self.fc(y[:, -1])


class _Encoder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = torch.nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
        self.fc = torch.nn.Linear(16, 2)

    def forward(self, x):
        return self.fc(self.enc(x).mean(1))


@pytest.mark.parametrize("dynamo", [False, True])
def test_unsupported_ops_are_the_real_ones_with_their_modules(capsys, tmp_path, dynamo):
    lstm = _export(_Lstm(), torch.randn(1, 5, 8), tmp_path / "lstm.onnx", dynamo)
    line = one_line_error(*run_cli(capsys, "estimate", lstm, "--board", "pynq-z2")[::2], "LSTM", "module lstm")
    assert "Expand" not in line
    # The encoder's shape arithmetic (Mod, Shape, Gather, ...) folds and its attention imports
    # (tests/test_encoder.py): the whole model estimates.
    enc = _export(_Encoder(), torch.randn(1, 5, 16), tmp_path / "enc.onnx", dynamo)
    code, out, err = run_cli(capsys, "estimate", enc, "--board", "pynq-z2")
    assert code == 0, err


def test_every_unsupported_op_is_reported_at_once(capsys, tmp_path):
    m = make_model([helper.make_node("Sin", ["x"], ["a"], name="s1"), helper.make_node("Cos", ["a"], ["b"], name="c1"),
                    helper.make_node("Sin", ["b"], ["y"], name="s2")], [fin("x", 4)], [fin("y", 4)])
    p = tmp_path / "m.onnx"
    onnx.save(m, p)
    one_line_error(*run_cli(capsys, "export", p, "--board", "pynq-z2", "--out", tmp_path / "o")[::2],
                   "2 op types", "Sin x2", "'s1', 's2'", "Cos", "'c1'", "Supported", "Gemm")
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- a PyTorch file

def test_a_pytorch_file_is_recognised(capsys, tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(4, 2))
    for name, save in (("cnn.pt", lambda p: torch.save(model.state_dict(), p)), ("full.pt", lambda p: torch.save(model, p)),
                       ("scripted.pt", lambda p: torch.jit.script(model).save(str(p)))):
        save(tmp_path / name)
        line = one_line_error(*run_cli(capsys, "export", tmp_path / name, "--board", "pynq-z2", "--out", tmp_path / "o")[::2],
                              name, "not ONNX", "torch.onnx.export")
        assert "truncated" not in line and ("PyTorch" in line or "TorchScript" in line)


# --------------------------------------------------------------------------- a closed pipe

def test_a_closed_pipe_ends_quietly(mlp_model):
    """`hwprune estimate ... | head`: the reader went away before the output was written."""
    r, w = os.pipe()
    os.close(r)
    p = subprocess.run([sys.executable, "-m", "hwprune.cli", "estimate", str(mlp_model), "--board", "pynq-z2"],
                       stdout=w, stderr=subprocess.PIPE, text=True)
    os.close(w)
    assert p.returncode == 141, p.stderr
    assert "Traceback" not in p.stderr and "BrokenPipe" not in p.stderr and "internal error" not in p.stderr


# --------------------------------------------------------------------------- custom boards

BOARD = """\
name: my-zu3eg
part: xczu3eg-sbva484-1-e
family: zynqmp
ps: ps8
resources: {lut: 70560, ff: 141120, bram18: 432, uram: 0, dsp: 360}
default_clock_mhz: 150
dsp_kind: dsp48e2
"""


def test_a_board_file_of_your_own(capsys, mlp_model, tmp_path, monkeypatch):
    from hwprune import board as board_mod

    f = tmp_path / "myboard.yaml"
    f.write_text(BOARD)
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "estimate", mlp_model, "--board", "./myboard.yaml", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["board"] == "my-zu3eg" and d["clock_mhz"] == 150 and d["utilization"]["dsp"] == pytest.approx(d["resources"]["dsp"] / 360)
    code, _, err = run_cli(capsys, "export", mlp_model, "--board", "myboard.yaml", "--out", "prj")
    assert code == 0, err
    man = json.loads((tmp_path / "prj" / "hwprune_project.json").read_text())
    assert man["board"] == "my-zu3eg" and man["part"] == "xczu3eg-sbva484-1-e" and man["clock_mhz"] == 150
    # Later commands find the board without the file: the project keeps a copy.
    f.unlink()
    monkeypatch.setattr(board_mod, "_custom", {})
    code, _, err = run_cli(capsys, "deploy", "prj", "--out", "pkg")
    assert code == 0, err
    assert json.loads((tmp_path / "pkg" / "accelerator.json").read_text())["board"] == "my-zu3eg"


@pytest.mark.parametrize("edit, needle", [
    (lambda t: t.replace("part: xczu3eg-sbva484-1-e\n", ""), "missing key 'part'"),
    (lambda t: t.replace("family: zynqmp", "family: versal"), "family 'versal'"),
    (lambda t: t.replace("ps: ps8", "ps: ps7"), "ps 'ps7' does not match"),
    (lambda t: t.replace("dsp: 360", "dsp: -4"), "resource 'dsp'"),
    (lambda t: t.replace("dsp: 360", "dsps: 360"), "unknown resource 'dsps'"),
    (lambda t: t + "clock: 100\n", "unknown key 'clock'"),
    (lambda t: t.replace("default_clock_mhz: 150", "default_clock_mhz: fast"), "default_clock_mhz"),
    (lambda t: t.replace("resources: {", "resources: {{"), "not valid YAML"),
    (lambda t: t.replace("name: my-zu3eg", "name: pynq-z2"), "catalog"),
])
def test_a_bad_board_file_is_one_clear_line(capsys, mlp_model, tmp_path, edit, needle):
    f = tmp_path / "bad.yaml"
    f.write_text(edit(BOARD))
    one_line_error(*run_cli(capsys, "estimate", mlp_model, "--board", f)[::2], "bad.yaml", needle)
    one_line_error(*run_cli(capsys, "estimate", mlp_model, "--board", tmp_path / "none.yaml")[::2], "does not exist")


def test_deploy_reads_the_board_from_the_project(capsys, mlp_model, tmp_path):
    prj = hwprune.export(mlp_model, tmp_path / "prj", board="ultra96-v2")
    code, out, err = run_cli(capsys, "deploy", prj, "--out", tmp_path / "pkg")
    assert code == 0, err
    assert json.loads((tmp_path / "pkg" / "accelerator.json").read_text())["board"] == "ultra96-v2"


# --------------------------------------------------------------------------- SIGTERM and Ctrl-C

SWEEP = """
import sys
sys.path.insert(0, {tests!r})
import hwprune.codesign.explore as ex
from hwprune.cli import main
from sweep_helpers import FakeBudget, FakeConfig, stuck_point
import signal
from hwprune import cli
signal.signal(signal.SIGTERM, cli._on_sigterm)
ex._point = stuck_point
ex._design_space = lambda source, cfg, say: None  # the stand-in points need no design space
try:
    ex.explore({model!r}, FakeConfig(FakeBudget(1.0)), [1.0, 2.0], {out!r}, workers=2, say=print)
except cli.Terminated:
    sys.exit(143)
except KeyboardInterrupt:
    sys.exit(130)
"""


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
def test_an_interrupted_sweep_leaves_no_temporaries(tmp_path, how):
    model, out, tmp = tmp_path / "model", tmp_path / "out", tmp_path / "tmp"
    model.mkdir()
    tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(tmp), PYTHONPATH=str(ROOT))
    p = subprocess.Popen([sys.executable, "-c", SWEEP.format(tests=str(TESTS), model=str(model), out=str(out))],
                         env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(list(model.glob("ready_*"))) < 2 and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.1)
    assert len(list(model.glob("ready_*"))) == 2, p.communicate()
    workers = [int(f.name.split("_")[1]) for f in model.glob("ready_*")]
    assert list(tmp.glob("hwprune_qonnx_*")) and list(tmp_path.glob(".out.hwprune-tmp.*"))
    if how == "SIGTERM":
        p.send_signal(signal.SIGTERM)
    else:  # a terminal's Ctrl-C reaches the whole process group
        os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == (143 if how == "SIGTERM" else 130), err
    assert list(tmp.iterdir()) == [], "worker temporaries left behind"
    assert sorted(q.name for q in tmp_path.iterdir()) == ["model", "tmp"], "output temporaries left behind"
    for pid in workers:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_sigterm_leaves_no_temporary_output(tmp_path):
    """A single-process command (the demo's first step) stopped by SIGTERM cleans up and says so."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen([sys.executable, "-m", "hwprune.cli", "demo", "--out", str(tmp_path / "demo_int")], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".demo_int.*")) and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.1)
    assert list(tmp_path.glob(".demo_int.*")), p.communicate()
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143 and "terminated" in err, err
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- precision examples

def test_documented_precision_examples_saturate():
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for f in docs:
        for m in re.finditer(r"--precision\s+'([^']+)'", f.read_text()):
            assert "AP_SAT" in m.group(1), f"{f.name}: {m.group(0)} wraps on overflow"
    from hwprune.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices["export"]
    text = sub.format_help()
    examples = re.findall(r"'(ap_u?fixed<[^']+>)'", text)
    assert examples and all("AP_SAT" in e for e in examples), examples
    assert "wraps" in text


@pytest.mark.parametrize("prec, mode", [("ap_fixed<10,3>", "WRAPPED AROUND"), ("ap_fixed<10,3,AP_RND_CONV,AP_SAT>", "clipped")])
def test_the_overflow_warning_names_the_mode_the_layer_and_the_fix(capsys, mlp_model, tmp_path, prec, mode):
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(0).normal(size=(8, 16)).astype(np.float32) * 20)
    code, _, err = run_cli(capsys, "run", mlp_model, "--input", x, "--output", tmp_path / "y.npy", "--precision", prec)
    assert code == 0, err
    warn = [l for l in err.splitlines() if "layer fc1:" in l]
    assert len(warn) == 1, err
    assert mode in warn[0] and ("AP_WRAP" in warn[0]) == (mode == "WRAPPED AROUND")
    fix = re.search(r"fix: give it '([^']+)'", warn[0]).group(1)
    assert "AP_SAT" in fix
    cfg = tmp_path / "fix.yaml"
    cfg.write_text(f"layer_name:\n  fc1: {{result: '{fix}'}}\n")
    code, _, err = run_cli(capsys, "run", mlp_model, "--input", x, "--output", tmp_path / "y.npy", "--precision", prec,
                           "--config", cfg)
    assert code == 0 and "layer fc1:" not in err, err


# --------------------------------------------------------------------------- the float engine

def test_the_float_engine_runs_any_batch_of_a_static_batch_model(capsys, tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4)).eval()
    p = _export(model, torch.randn(1, 16), tmp_path / "static.onnx", dynamo=True)
    dims = [d.dim_value for d in onnx.load(str(p)).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 16]  # torch's default export: a static batch of one
    xs = np.random.default_rng(0).normal(size=(5, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", xs)
    code, _, err = run_cli(capsys, "run", p, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy", "--engine", "float")
    assert code == 0, err
    with torch.no_grad():
        np.testing.assert_allclose(np.load(tmp_path / "y.npy"), model(torch.from_numpy(xs)).numpy(), rtol=1e-5, atol=1e-6)


def test_onnxruntime_errors_are_input_errors_with_their_reason():
    from hwprune.errors import HwpruneInputError
    from hwprune.pipeline import run_onnx

    m = make_model([helper.make_node("Reshape", ["x", "s"], ["y"])], [fin("x", 16)],
                   [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [3, 7])], [("s", np.array([3, 7], np.int64))])
    with pytest.raises(HwpruneInputError) as e:
        run_onnx(m, [np.zeros((5, 16), np.float32)])
    msg = str(e.value)
    assert "\n" not in msg and "cannot be reshaped" in msg and "{5,16}" in msg and "onnxruntime_src" not in msg


# --------------------------------------------------------------------------- a quiet install

def test_the_package_builds_without_setuptools_warnings(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("hwprune", "hls", "boards", "sim"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"),
                        str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    log = r.stdout + r.stderr
    assert "would be ignored" not in log and "Warning" not in log, log
    import zipfile

    names = zipfile.ZipFile(next((tmp_path / "dist").glob("*.whl"))).namelist()
    for rel in ("hwprune/hls/hwprune/dense.h", "hwprune/hls/hwprune/dense.j2", "hwprune/hls/templates/testbench.cpp.j2",
                "hwprune/hls/templates/deploy/validate.py.j2", "hwprune/hls/templates/vivado/block_design.tcl.j2",
                "hwprune/boards/pynq-z2.yaml", "hwprune/data/textcnn_small.onnx"):
        assert rel in names, rel


def test_board_files_cite_sources_inside_reach():
    """The catalog's comments cite vendor documents, not files outside the repository."""
    for f in sorted((ROOT / "boards").glob("*.yaml")):
        text = f.read_text()
        assert "../" not in text and "BRIEF" not in text, f.name
        assert re.search(r"\bDS\d{3}\b", text), f.name
