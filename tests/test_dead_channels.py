"""Dead-channel elimination: filter-pruned models (zero rows kept in the ONNX file) shrink in the
IR — the pruned channels, what only they feed, and the readers' input channels go — with outputs
equal to onnxruntime's on the pruned model, and the estimate's multipliers and cycles fall."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

import hwprune
from conftest import fin, make_model, torch_onnx
from hwprune.backend.csim import raw_outputs
from hwprune.ir.channels import ConstantChannels, through_reshape
from hwprune.pipeline import compile_graph, error_bounds, run_fixed, run_float, run_onnx, trace_fixed
from hwprune.precision import PrecisionConfig
from hwprune.project import load_project_graph
from hwprune.prune.onnx_prune import prune_onnx
from hwprune.prune.patterns import Pattern

torch = pytest.importorskip("torch")
nn = torch.nn


def _cnn() -> "nn.Module":
    """Conv-BN-ReLU x2 (unpadded), flatten, Linear-ReLU, Linear: every hidden layer prunable."""
    torch.manual_seed(0)

    class CNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1, self.b1 = nn.Conv2d(1, 16, 3), nn.BatchNorm2d(16)
            self.c2, self.b2 = nn.Conv2d(16, 32, 3), nn.BatchNorm2d(32)
            self.fc, self.out = nn.Linear(32 * 4 * 4, 64), nn.Linear(64, 10)

        def forward(self, x):
            x = torch.relu(self.b1(self.c1(x)))
            x = torch.relu(self.b2(self.c2(x)))
            return self.out(torch.relu(self.fc(torch.flatten(x, 1))))

    m = CNN().eval()
    with torch.no_grad():
        for bn in (m.b1, m.b2):  # non-trivial statistics so the folded biases are not zero
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.3, 0.3)
    return m


def _ln_structured(m: "nn.Module", amount: float) -> "nn.Module":
    import torch.nn.utils.prune as tprune

    for mod in (m.c1, m.c2, m.fc):
        tprune.ln_structured(mod, "weight", amount=amount, n=1, dim=0)  # zero rows; the bias stays
        tprune.remove(mod, "weight")
    return m


def _totals(model, rf: int, io: str) -> tuple[int, int, int]:
    e = hwprune.estimate(model, board="pynq-z2", io_type=io, precision=PrecisionConfig().with_overrides(reuse_factor=rf))
    return sum(l.cost.multipliers for l in e.layers), sum(l.cost.macs for l in e.layers), e.latency_cycles


X_IMG = np.random.default_rng(1).normal(size=(16, 1, 8, 8)).astype(np.float32)


def test_ln_structured_cnn_shrinks_and_keeps_its_outputs():
    example = torch.zeros(1, 1, 8, 8)
    pruned = torch_onnx(_ln_structured(_cnn(), 0.75), example)
    g = compile_graph(pruned)
    shapes = {l.name: l.weight.shape for l in g.layers if hasattr(l, "weight") and getattr(l, "weight").size}
    assert shapes["/c1/Conv"] == (4, 1, 3, 3)
    assert shapes["/c2/Conv"] == (8, 4, 3, 3)
    assert shapes["/fc/Gemm"] == (8 * 16, 16)  # 8 of 32 channels x 4x4 pixels in, 16 of 64 out
    assert shapes["/out/Gemm"] == (16, 10)  # the classifier keeps its classes
    ref = run_onnx(pruned, [X_IMG])[0]
    np.testing.assert_allclose(run_float(g, [X_IMG])[0], ref, rtol=1e-5, atol=1e-5)
    err = np.abs(run_fixed(g, [X_IMG])[0] - ref)
    assert (err <= error_bounds(g, [X_IMG])[0] + 1e-6).all()


@pytest.mark.parametrize("io", ["parallel", "stream"])
def test_filter_pruned_cnn_costs_a_fraction_of_the_dense_one(io):
    example = torch.zeros(1, 1, 8, 8)
    dense = torch_onnx(_cnn(), example)
    pruned = torch_onnx(_ln_structured(_cnn(), 0.75), example)
    for rf in (1, 4):
        d_mult, d_macs, d_cyc = _totals(dense, rf, io)
        p_mult, p_macs, p_cyc = _totals(pruned, rf, io)
        assert d_mult >= 3 * p_mult and d_macs >= 3 * p_macs, (rf, d_mult, p_mult)
    # Cycles: at the same reuse factor each multiplier does the same number of MACs, so cycles
    # fall where the multipliers are held equal: the pruned model at RF 1 needs no more
    # multipliers than the dense model at RF 16, in a fraction of its cycles.
    d_mult, _, d_cyc = _totals(dense, 16, io)
    p_mult, _, p_cyc = _totals(pruned, 1, io)
    assert p_mult <= 1.1 * d_mult and d_cyc >= 3 * p_cyc, (d_mult, p_mult, d_cyc, p_cyc)


@pytest.mark.parametrize("io", ["parallel", "stream"])
def test_shrunk_design_csim_is_bit_exact(tmp_path, io):
    pruned = torch_onnx(_ln_structured(_cnn(), 0.5), torch.zeros(1, 1, 8, 8))
    prj = hwprune.export(pruned, tmp_path / io, io_type=io)
    g = load_project_graph(prj)
    assert g.layer("/c2/Conv").weight.shape[:2] == (16, 8)
    np.testing.assert_array_equal(raw_outputs(prj, [X_IMG[:4]])[0], trace_fixed(g, [X_IMG[:4]]).values[g.outputs[0]])


def _textcnn_like() -> onnx.ModelProto:
    """Two Conv1d branches, ReLU, global max over time, concat, Linear: TextCNN's shape."""
    rng = np.random.default_rng(2)
    nodes = [helper.make_node("Conv", ["x", "wa", "ba"], ["ca"], kernel_shape=[3], name="conv_a"),
             helper.make_node("Relu", ["ca"], ["ra"]), helper.make_node("GlobalMaxPool", ["ra"], ["pa"]),
             helper.make_node("Conv", ["x", "wb", "bb"], ["cb"], kernel_shape=[5], pads=[2, 2], name="conv_b"),
             helper.make_node("Relu", ["cb"], ["rb"]), helper.make_node("GlobalMaxPool", ["rb"], ["pb"]),
             helper.make_node("Concat", ["pa", "pb"], ["cat"], axis=1),
             helper.make_node("Flatten", ["cat"], ["flat"], axis=1),
             helper.make_node("Gemm", ["flat", "wf", "bf"], ["y"], transB=1, name="fc")]
    return make_model(nodes, [fin("x", 8, 12)], [fin("y", 2)],
                      [("wa", rng.normal(size=(16, 8, 3)) * 0.3), ("ba", rng.normal(size=16) * 0.1),
                       ("wb", rng.normal(size=(16, 8, 5)) * 0.3), ("bb", rng.normal(size=16) * 0.1),
                       ("wf", rng.normal(size=(2, 32)) * 0.3), ("bf", rng.normal(size=2) * 0.1)])


def test_one_shot_filter_prune_of_branches_and_concat():
    model = _textcnn_like()
    pruned, report = prune_onnx(model, Pattern.parse("filter"), 0.75)
    assert {r.node for r in report if not r.skipped} == {"conv_a", "conv_b"}
    g = compile_graph(pruned)
    assert g.layer("conv_a").weight.shape[0] == 4 and g.layer("conv_b").weight.shape[0] == 4
    assert g.layer("fc").weight.shape == (8, 2)
    x = np.random.default_rng(3).normal(size=(10, 8, 12)).astype(np.float32)
    ref = run_onnx(pruned, [x])[0]
    np.testing.assert_allclose(run_float(g, [x])[0], ref, rtol=1e-5, atol=1e-5)
    d_mult, d_macs, _ = _totals(model, 1, "stream")
    p_mult, p_macs, _ = _totals(pruned, 1, "stream")
    assert d_mult >= 3 * p_mult and d_macs >= 3 * p_macs


def test_channels_stay_where_a_reader_cannot_absorb_them():
    """A residual add mixes the dead channel with a live one; a padded conv sees the constant
    only away from the border: both keep the channel, and the model still matches onnxruntime."""
    rng = np.random.default_rng(4)
    wa = rng.normal(size=(4, 4, 1, 1)) * 0.3
    wa[1] = 0.0
    wp = rng.normal(size=(4, 4, 3, 3)) * 0.3
    wp[2] = 0.0
    nodes = [helper.make_node("Conv", ["x", "wa", "ba"], ["a"], kernel_shape=[1, 1], name="proj"),
             helper.make_node("Add", ["a", "x"], ["s"]),
             helper.make_node("Conv", ["s", "wp", "bp"], ["p"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="padded"),
             helper.make_node("Relu", ["p"], ["r"]),
             helper.make_node("Conv", ["r", "wq", "bq"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="reader")]
    model = make_model(nodes, [fin("x", 4, 5, 5)], [fin("y", 3, 5, 5)],
                       [("wa", wa), ("ba", rng.normal(size=4) * 0.1), ("wp", wp), ("bp", np.full(4, 0.5)),
                        ("wq", rng.normal(size=(3, 4, 3, 3)) * 0.3), ("bq", rng.normal(size=3) * 0.1)])
    g = compile_graph(model)
    assert g.layer("proj").weight.shape[0] == 4 and g.layer("padded").weight.shape[0] == 4
    x = rng.normal(size=(3, 4, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(run_float(g, [x])[0], run_onnx(model, [x])[0], rtol=1e-5, atol=1e-5)


def test_a_zero_constant_passes_a_padded_reader():
    """relu(negative bias) = 0 everywhere: the padded reader sees zeros, as in its padding."""
    rng = np.random.default_rng(5)
    w1 = rng.normal(size=(6, 3, 3, 3)) * 0.3
    w1[[0, 4]] = 0.0
    b1 = rng.normal(size=6) * 0.1
    b1[[0, 4]] = -0.25
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="c1"),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["m"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["m", "w2", "b2"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="c2")]
    model = make_model(nodes, [fin("x", 3, 6, 6)], [fin("y", 2, 3, 3)],
                       [("w1", w1), ("b1", b1), ("w2", rng.normal(size=(2, 6, 3, 3)) * 0.3), ("b2", rng.normal(size=2) * 0.1)])
    g = compile_graph(model)
    assert g.layer("c1").weight.shape[0] == 4 and g.layer("c2").weight.shape[1] == 4
    x = rng.normal(size=(3, 3, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(run_float(g, [x])[0], run_onnx(model, [x])[0], rtol=1e-5, atol=1e-5)


def test_dead_classifier_rows_stay():
    """A channel of a graph output is part of the model's answer: never removed."""
    rng = np.random.default_rng(6)
    w = rng.normal(size=(3, 5))
    w[1] = 0.0
    model = make_model([helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1, name="fc")], [fin("x", 5)], [fin("y", 3)],
                       [("w", w), ("b", rng.normal(size=3))])
    assert compile_graph(model).layer("fc").weight.shape == (5, 3)


def test_constants_through_a_flatten_and_a_transpose():
    cc = ConstantChannels(0, np.array([1, 3]), np.array([0.5, -1.0]))
    flat = through_reshape((4, 2, 3), (24,), cc)  # channels-first flatten: 6 features per channel
    assert flat.axis == 0
    np.testing.assert_array_equal(flat.index, [6, 7, 8, 9, 10, 11, 18, 19, 20, 21, 22, 23])
    np.testing.assert_array_equal(flat.value, [0.5] * 6 + [-1.0] * 6)
    unit = through_reshape((4, 1, 1), (4,), cc)
    assert unit.axis == 0 and list(unit.index) == [1, 3]
    assert through_reshape((4, 2, 3), (2, 12), cc) is None  # channels split across rows
