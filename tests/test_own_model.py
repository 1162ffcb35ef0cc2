"""Bring your own model: three model families besides the TextCNN — an MLP on tabular data (with
BatchNorm), a Conv2d CNN with BatchNorm and a residual add on images, and a 1-D CNN on signals
— go through `hwprune prune FILE.py:FUNCTION --weights W --data X.npz --board pynq-z2
--latency-us L --out DIR`. Every result meets its budget by the simulator, fits the board, and
its QONNX model C-simulates bit for bit like QONNX's own execution. `compare` and `explore`
run on the MLP; every error of the new inputs is one line with exit code 2 and writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

pytest.importorskip("brevitas")

import hwprune
from hwprune.board import load_board
from hwprune.cli import main
from hwprune.codesign.budget import Budget
from hwprune.task import split_indices
from hwprune.training import FitConfig, evaluate, fit

MODELS = Path(__file__).parent / "own_models.py"
BOARD = load_board("pynq-z2")


def signals(n: int = 480, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two-channel noisy waves; the class sets the frequency and whether channel 2 carries one."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    t = np.arange(64) / 64
    f = np.array([2.0, 4.0, 6.0, 8.0])[y][:, None]
    ph = rng.uniform(0, 2 * np.pi, (n, 1))
    x = np.stack([np.sin(2 * np.pi * f * t + ph), np.cos(np.pi * f * t + ph) * (y[:, None] % 2)], 1)
    return (x + 0.3 * rng.normal(size=x.shape)).astype(np.float32), y.astype(np.int64)


def tabular(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """13 standardised features, 3 classes separated along a few random directions."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centres = rng.normal(size=(3, 13)) * 1.5
    return (centres[y] + rng.normal(size=(n, 13))).astype(np.float32), y.astype(np.int64)


def images(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """1x14x14 images: a bright bar whose position and orientation (10 classes) the CNN learns."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = rng.normal(scale=0.2, size=(n, 1, 14, 14))
    for i, c in enumerate(y):
        k = 2 + 2 * (c % 5)
        if c < 5:
            x[i, 0, k:k + 2, 2:12] += 1.0
        else:
            x[i, 0, 2:12, k:k + 2] += 1.0
    return x.astype(np.float32), y.astype(np.int64)


FAMILIES = {
    # name: (function, data, training epochs, latency budget in us)
    "mlp": ("mlp", tabular, 20, 0.4),
    "rescnn": ("rescnn", images, 6, 8.0),
    "signal1d": ("signal1d", signals, 10, 3.5),
}


def _train(name: str, d: Path) -> tuple[Path, Path]:
    import sys

    sys.path.insert(0, str(MODELS.parent))
    try:
        import own_models
    finally:
        sys.path.pop(0)
    fn, make, epochs, _ = FAMILIES[name]
    x, y = make()
    model = getattr(own_models, fn)()
    tr, va, te = split_indices(len(x), 0)
    fit(model, x, y, tr, va, FitConfig(epochs=epochs, lr=3e-3, batch_size=32, seed=0))
    assert evaluate(model, x[te], y[te]) > 0.6, f"{name} did not learn its toy task"
    w, npz = d / f"{name}.pt", d / f"{name}.npz"
    torch.save(model.state_dict(), w)
    np.savez(npz, x=x, y=y)
    return w, npz


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("own")
    return {name: _train(name, d) for name in FAMILIES}


def qonnx_execute(proto: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.util.cleanup import cleanup_model

    m = onnx.ModelProto()
    m.CopyFrom(proto)
    mw = cleanup_model(ModelWrapper(m))
    iname, oname = mw.graph.input[0].name, mw.graph.output[0].name
    return np.stack([execute_onnx(mw, {iname: x[i:i + 1]})[oname][0] for i in range(len(x))])


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FAMILIES))
def test_prune_own_model_to_a_budget(trained, tmp_path, capsys, name):
    fn, make, _, latency_us = FAMILIES[name]
    w, npz = trained[name]
    out = tmp_path / "design"
    code = main(["prune", f"{MODELS}:{fn}", "--weights", str(w), "--data", str(npz), "--board", "pynq-z2",
                 "--latency-us", str(latency_us), "--epochs", "1", "--qat-epochs", "1", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    r = json.loads((out / "report.json").read_text())
    assert r["meets_budget"] and r["accuracy_after"] > 0.5
    prj = out / "project"
    # The budget, by the simulator; the board, with the default budget's headroom.
    sim = hwprune.simulate(prj, "pynq-z2", batch=16)
    assert sim.latency_cycles <= latency_us * BOARD.default_clock_mhz
    est = hwprune.estimate(prj, "pynq-z2")
    caps = Budget(latency_us=latency_us).caps(BOARD)
    res = est.resources.as_dict()
    assert all(res[k] <= caps[k] for k in caps), (res, caps)
    # Sites come from the graph: every weighted module has its IR layer.
    modules = {l["module"] for l in r["layers"]}
    assert modules == {"mlp": {"fc1", "fc2", "head"}, "rescnn": {"stem", "conv1", "conv2", "fc"},
                       "signal1d": {"conv1", "conv2", "fc"}}[name]
    # The QONNX model C-simulates bit for bit like QONNX's execution.
    x = make()[0][:6]
    proto = onnx.load(str(out / "model.onnx"))
    ref = qonnx_execute(proto, x)
    np.testing.assert_array_equal(hwprune.run(prj, [x], engine="csim")[0], ref)
    assert np.unique(ref).size > 3
    # The design's report (issue 13: the report of a user's own model) renders in Chromium.
    from test_report import CHROMIUM, colour_share, screenshot

    if CHROMIUM is not None and name == "rescnn":
        from PIL import Image

        dom = screenshot(out / "report.html", tmp_path / "shot.png", tmp_path)
        img = np.asarray(Image.open(tmp_path / "shot.png").convert("RGB"))
        assert colour_share(img, (31, 119, 180)) > 0.002 and colour_share(img, (127, 127, 127)) > 0.0005
        assert "Chosen design:" in dom and 'class="headroom"' in dom and dom.count('class="total"') >= 3
        assert "stem" in dom and "conv2" in dom  # the user's own module names


@pytest.mark.slow
def test_compare_and_explore_on_own_model(trained, tmp_path, capsys):
    w, npz = trained["mlp"]
    spec = f"{MODELS}:mlp"
    rows = tmp_path / "rows.json"
    code = main(["compare", spec, "--weights", str(w), "--data", str(npz), "--board", "pynq-z2", "--patterns",
                 "block:4x4,filter", "--sparsity", "0.5", "--epochs", "3", "--qat-epochs", "0", "--json", str(rows)])
    assert code == 0, capsys.readouterr().err
    data = json.loads(rows.read_text())
    assert [(r["pattern"], r["sparsity"]) for r in data["rows"]] == [("dense", 0.0), ("dense", 0.0), ("block:4x4", 0.5),
                                                                    ("filter", 0.5)]
    assert all(r["accuracy"] > 0.9 for r in data["rows"][:2])  # dense float and fixed point
    assert all(r["accuracy"] > 0.4 for r in data["rows"])  # pruned: above chance (1/3) after a short fine-tune
    out = tmp_path / "front"
    code = main(["explore", spec, "--weights", str(w), "--data", str(npz), "--board", "pynq-z2", "--latency-us", "1,3",
                 "--epochs", "0", "--qat-epochs", "0", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    front = json.loads((out / "front.json").read_text())["points"]
    assert [p["label"] for p in front] == ["latency_1us", "latency_3us"]
    assert any(p["feasible"] and p["pareto"] for p in front)


def _one_line_error(capsys, argv: list[str], out: Path, msg: str) -> None:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert msg in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_own_model_errors_are_one_line_and_write_nothing(tmp_path, capsys):
    rng = np.random.default_rng(0)
    good = tmp_path / "good.npz"
    np.savez(good, x=rng.normal(size=(30, 13)).astype(np.float32), y=rng.integers(0, 3, 30))
    out = tmp_path / "out"
    base = ["--board", "pynq-z2", "--latency-us", "5", "--epochs", "0", "--out", str(out)]
    spec = f"{MODELS}:mlp"

    def err(argv: list[str], msg: str) -> None:
        _one_line_error(capsys, ["prune", *argv, *base], out, msg)

    err([f"{tmp_path}/nope.py:mlp", "--data", str(good)], "does not exist")
    err([f"{MODELS}:nope", "--data", str(good)], "has no function 'nope'")
    err([f"{MODELS}:not_a_model", "--data", str(good)], "returned str, not a torch.nn.Module")
    err([f"{MODELS}:broken", "--data", str(good)], "raised RuntimeError: cannot build")
    err([str(MODELS), "--data", str(good)], "FILE.py:FUNCTION")
    err([spec], "needs --data")
    err([spec, "--data", str(tmp_path / "none.npz")], "does not exist")
    bad = tmp_path / "keys.npz"
    np.savez(bad, features=np.zeros((4, 13)), labels=np.zeros(4))
    err([spec, "--data", str(bad)], "expected x and y")
    shape = tmp_path / "shape.npz"
    np.savez(shape, x=np.zeros((30, 7), np.float32), y=np.zeros(30, np.int64))
    err([spec, "--data", str(shape)], "does not accept inputs of shape (N, 7)")
    labels = tmp_path / "labels.npz"
    np.savez(labels, x=np.zeros((30, 13), np.float32), y=np.arange(30) % 5)
    err([spec, "--data", str(labels)], "labels outside the classifier's range")
    floats = tmp_path / "floaty.npz"
    np.savez(floats, x=np.zeros((30, 13), np.float32), y=np.zeros(30, np.float32))
    err([spec, "--data", str(floats)], "integer class labels")
    strings = tmp_path / "strings.npz"
    np.savez(strings, x=np.array([["a"] * 13] * 30), y=np.zeros(30, np.int64))
    err([spec, "--data", str(strings)], "numeric array")
    mismatch = tmp_path / "n.npz"
    np.savez(mismatch, x=np.zeros((30, 13), np.float32), y=np.zeros(29, np.int64))
    err([spec, "--data", str(mismatch)], "30 samples but y has 29")
    csv = tmp_path / "d.csv"
    csv.write_text("text,label\na,0\n")
    err([spec, "--data", str(csv)], "takes an .npz archive")
    wrong = tmp_path / "wrong.pt"
    torch.save({"fc1.weight": torch.zeros(3, 3)}, wrong)
    err([spec, "--weights", str(wrong), "--data", str(good)], "do not load into")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    err([spec, "--weights", str(junk), "--data", str(good)], "not a state dict")
    err([spec, "--weights", str(tmp_path / "none.pt"), "--data", str(good)], "does not exist")
    # The same loader behind compare and explore.
    _one_line_error(capsys, ["compare", f"{MODELS}:nope", "--data", str(good), "--board", "pynq-z2"], out, "has no function")
    _one_line_error(capsys, ["explore", spec, "--data", str(labels), "--board", "pynq-z2", "--latency-us", "5",
                             "--out", str(out)], out, "labels outside")
