"""Whole encoders through import, fixed point and the C simulation: PyTorch's
nn.TransformerEncoderLayer (its MultiheadAttention moves the batch to axis 1 and folds it into the
heads and rows) and a BERT-style classifier written the HuggingFace way (position ids, padding
mask, view/permute heads, GELU, pooler), each from both exporters, against onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

import hwprune
from conftest import fin, make_model, torch_onnx
from hwprune.backend.csim import count_loops, raw_outputs
from hwprune.board import load_board
from hwprune.errors import UnsupportedOpError
from hwprune.frontend.batch_axis import move_batch_first
from hwprune.pipeline import compile_graph, error_bounds, run_fixed, run_float, run_onnx, trace_fixed
from hwprune.precision import PrecisionConfig
from hwprune.project import load_project_graph
from hwprune.sim.estimate import estimate

torch = pytest.importorskip("torch")
from encoders import TinyBert, transformer_layer  # noqa: E402

L, D = 6, 16
X = np.random.default_rng(0).normal(size=(5, L, D)).astype(np.float32)


def _bert_inputs(n: int, seq: int = 8, vocab: int = 50, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, size=(n, seq))
    mask = (np.arange(seq)[None] < rng.integers(1, seq + 1, size=(n, 1))).astype(np.int64)
    mask[-1] = 0  # a row of padding only: an additive mask then changes nothing
    return [ids, mask]


def _bert(style: str, dynamo: bool) -> onnx.ModelProto:
    example = (torch.zeros(2, 8, dtype=torch.long), torch.ones(2, 8, dtype=torch.long))
    return torch_onnx(TinyBert(mask_style=style), example, dynamo=dynamo)


@pytest.mark.parametrize("dynamo", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_encoder_layer_matches_onnxruntime(norm_first, activation, dynamo):
    model = torch_onnx(transformer_layer(D, 2, 32, norm_first, activation), torch.zeros(1, L, D), dynamo=dynamo)
    g = compile_graph(model)
    kinds = [l.op_type for l in g.layers]
    assert kinds.count("MatMul") == 2 and kinds.count("LayerNorm") == 2 and kinds.count("Softmax") == 1
    # q, k and v are sliced out of the packed in-projection: real data moves, costed.
    assert kinds.count("Slice") == 3
    ref = run_onnx(model, [X])[0]
    np.testing.assert_allclose(run_float(g, [X])[0], ref, rtol=1e-5, atol=1e-5)
    assert (np.abs(run_fixed(g, [X])[0] - ref) <= error_bounds(g, [X])[0] + 1e-6).all()


def test_batch_rewrite_is_an_equivalent_onnx_model():
    """The batch-first rewrite of MultiheadAttention's (seq, batch) graph, run by onnxruntime at
    batch 3, equals the original model: the pass is checked apart from hwprune's engines."""
    model = torch_onnx(transformer_layer(D, 2, 32, False, "relu"), torch.zeros(1, L, D))
    moved = move_batch_first(model)
    assert moved is not model
    perms = [list(a.ints) for n in moved.graph.node if n.op_type == "Transpose" for a in n.attribute if a.name == "perm"]
    assert perms and all(p[0] == 0 for p in perms)
    np.testing.assert_allclose(run_onnx(moved, [X[:3]])[0], run_onnx(model, [X[:3]])[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dynamo", [False, True])
@pytest.mark.parametrize("style", ["additive", "where"])
def test_bert_style_encoder_matches_onnxruntime(style, dynamo):
    model = _bert(style, dynamo)
    g = compile_graph(model)
    (emb,) = [l for l in g.layers if l.op_type == "Embedding"]
    assert emb.position is not None  # position + token-type rows added in the lookup
    (sm,) = [l for l in g.layers if l.op_type == "Softmax"]
    assert sm.masked and sm.inputs[1] == g.inputs[1]
    xs = _bert_inputs(6)
    ref = run_onnx(model, xs)[0]
    if style == "where":  # -inf everywhere is NaN in float; an all-padding row is not compared
        ref, keep = ref[:-1], slice(0, -1)
    else:
        keep = slice(None)
    np.testing.assert_allclose(run_float(g, xs)[0][keep], ref, rtol=1e-5, atol=1e-5)
    assert (np.abs(run_fixed(g, xs)[0][keep] - ref) <= error_bounds(g, xs)[0][keep] + 1e-6).all()


CSIM_CASES = [
    ("layer", False, "parallel", 1), ("layer", True, "stream", 2),
    ("bert-where", False, "stream", 1), ("bert-additive", True, "parallel", 2),
]


@pytest.mark.parametrize("kind,dynamo,io,rf", CSIM_CASES)
def test_encoder_csim_is_bit_exact_and_counts_equal_the_estimate(tmp_path, kind, dynamo, io, rf):
    if kind == "layer":
        model, xs = torch_onnx(transformer_layer(D, 2, 32, False, "gelu"), torch.zeros(1, L, D), dynamo=dynamo), [X[:3]]
    else:
        model, xs = _bert(kind.split("-")[1], dynamo), _bert_inputs(3)
    prj = hwprune.export(model, tmp_path / "prj", io_type=io, precision=PrecisionConfig().with_overrides(reuse_factor=rf))
    g = load_project_graph(prj)
    np.testing.assert_array_equal(raw_outputs(prj, xs)[0], trace_fixed(g, xs).values[g.outputs[0]])
    counts = count_loops(prj, xs)
    est = {l.name: l for l in estimate(g, load_board("pynq-z2"), 100.0).layers}
    checked = 0
    for layer in g.layers:
        if layer.name in counts:
            c = counts[layer.name]
            assert c.calls == len(xs[0]) and c.cycles / c.calls == est[layer.name].cost.ii, layer.name
            checked += 1
    assert checked >= 10


# ------------------------------------------------------------------ Slice / Split / Gather-select

def _slicing_model():
    """x (4, 6, 8): Split the last axis [3, 5]; Slice 1..4 of the second part's last axis (cuts
    every stream word); Gather index 0 of the first part's last axis, unsqueezed and concatenated;
    and Slice 1..3 of the outer axis of x (whole words)."""
    nodes = [
        helper.make_node("Split", ["x", "sizes"], ["a", "b"], axis=-1, name="split"),
        helper.make_node("Slice", ["b", "st", "en", "last"], ["c"], name="slice"),
        helper.make_node("Gather", ["a", "i0"], ["d"], axis=3, name="pick"),
        helper.make_node("Unsqueeze", ["d", "last"], ["d1"], name="unsq"),
        helper.make_node("Concat", ["c", "d1"], ["y"], axis=3, name="cat"),
        helper.make_node("Slice", ["x", "st", "three", "outer"], ["z"], name="rows"),
    ]
    return make_model(nodes, [fin("x", 4, 6, 8)], [fin("y", 4, 6, 4), fin("z", 2, 6, 8)],
                      [("sizes", np.array([3, 5], np.int64)), ("st", np.array([1], np.int64)),
                       ("en", np.array([4], np.int64)), ("three", np.array([3], np.int64)),
                       ("last", np.array([3], np.int64)), ("outer", np.array([1], np.int64)),
                       ("i0", np.array(0, np.int64))])


@pytest.mark.parametrize("io", ["parallel", "stream"])
def test_slices_match_onnxruntime_and_csim(tmp_path, io):
    m = _slicing_model()
    x = np.random.default_rng(1).normal(size=(3, 4, 6, 8)).astype(np.float32)
    g = compile_graph(m, io_type=io)
    assert sum(l.op_type == "Slice" for l in g.layers) == 5
    for got, ref in zip(run_float(g, [x]), run_onnx(m, [x])):
        np.testing.assert_allclose(got, ref, rtol=1e-6)
    prj = hwprune.export(m, tmp_path / io, io_type=io)
    pg = load_project_graph(prj)
    trace = trace_fixed(pg, [x]).values
    for got, name in zip(raw_outputs(prj, [x]), pg.outputs):
        np.testing.assert_array_equal(got, trace[name])
    counts = count_loops(prj, [x])
    est = {l.name: l for l in estimate(pg, load_board("pynq-z2"), 100.0).layers}
    for layer in (l for l in pg.layers if l.op_type == "Slice"):
        assert counts[layer.name].cycles / counts[layer.name].calls == est[layer.name].cost.ii
        if io == "stream":  # a word filter: one input word per cycle, no buffer
            assert est[layer.name].cost.ii == pg.tensor(layer.inputs[0]).words and est[layer.name].cost.bram18 == 0


def test_ops_across_the_batch_axis_are_refused_naming_the_node():
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0, 2], name="seq_first"),
             helper.make_node("Softmax", ["t"], ["s"], axis=1, name="over_batch"),
             helper.make_node("Transpose", ["s"], ["y"], perm=[1, 0, 2], name="back")]
    m = make_model(nodes, [fin("x", 6, 4)], [fin("y", 6, 4)])
    with pytest.raises(UnsupportedOpError, match=r"node 'over_batch' \(Softmax\).*batch axis"):
        compile_graph(m)
    steps = make_model([helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["y"], name="strided")],
                       [fin("x", 6, 4)], [fin("y", 3, 4)],
                       [("st", np.array([0], np.int64)), ("en", np.array([6], np.int64)), ("ax", np.array([1], np.int64)),
                        ("sp", np.array([2], np.int64))])
    with pytest.raises(UnsupportedOpError, match=r"node 'strided' \(Slice\).*step 2"):
        compile_graph(steps)


def test_mean_over_the_sequence_is_a_pool_without_data_movement():
    """Mean pooling over the sequence of an (N, L, D) encoder output: a global pool over L with
    D as channels, relabelled (no Reorder) in io_stream."""

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc, self.fc = transformer_layer(D, 2, 32, False, "relu"), torch.nn.Linear(D, 3)

        def forward(self, x):
            return self.fc(self.enc(x).mean(1))

    model = torch_onnx(Pooled(), torch.zeros(1, L, D))
    g = compile_graph(model, io_type="stream")
    (pool,) = [l for l in g.layers if l.op_type == "GlobalPool"]
    assert g.producer(pool.inputs[0]).op_type != "Reorder"
    np.testing.assert_allclose(run_float(g, [X])[0], run_onnx(model, [X])[0], rtol=1e-5, atol=1e-5)
