"""Layout conversions: ONNX is channels-first, hardware is channels-last. Each case pins the
physical orders the pass chooses and checks the result against onnxruntime (float IR) and the
C simulation (bit-exact), in both io types."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import hwprune
from conftest import fin, make_model
from hwprune.backend.csim import raw_outputs
from hwprune.ops.layout import Reorder, Reshape
from hwprune.pipeline import compile_graph, run_float, run_onnx, trace_fixed
from hwprune.project import load_project_graph

RNG = np.random.default_rng(0)


def per_channel_then_flatten(flat_is_output: bool):
    """x[4,6] + bias[4,1] (needs channels last) -> Flatten (needs channels first) -> Gemm."""
    nodes = [helper.make_node("Add", ["x", "cb"], ["a"]), helper.make_node("Flatten", ["a"], ["f"])]
    outs = [fin("f", 24)] if flat_is_output else [fin("y", 3)]
    if not flat_is_output:
        nodes.append(helper.make_node("Gemm", ["f", "w"], ["y"], transB=1))
    return make_model(nodes, [fin("x", 4, 6)], outs, [("cb", RNG.normal(size=(4, 1))), ("w", RNG.normal(size=(3, 24)) * 0.3)])


def check_all(model, x, tmp_path):
    for io in ("parallel", "stream"):
        g = compile_graph(model, io_type=io)
        np.testing.assert_allclose(run_float(g, [x])[0], run_onnx(model, [x])[0], atol=1e-5)
        prj = hwprune.export(model, tmp_path / io, io_type=io)
        g2 = load_project_graph(prj)
        np.testing.assert_array_equal(raw_outputs(prj, [x])[0], trace_fixed(g2, [x]).values[g2.outputs[0]])


def test_graph_input_takes_the_order_its_consumer_wants(tmp_path):
    g = compile_graph(per_channel_then_flatten(False))
    assert g.tensor("x").perm == (1, 0)  # channels last: the host transposes, not the fabric


def test_reorder_before_dense_is_folded_into_its_weights(tmp_path):
    model = per_channel_then_flatten(False)
    g = compile_graph(model)
    assert not any(isinstance(l, Reorder) for l in g.layers)
    check_all(model, RNG.normal(size=(5, 4, 6)).astype(np.float32), tmp_path)


def test_reorder_stays_when_the_flat_tensor_is_an_output(tmp_path):
    model = per_channel_then_flatten(True)
    g = compile_graph(model)
    assert sum(isinstance(l, Reorder) for l in g.layers) == 1
    check_all(model, RNG.normal(size=(3, 4, 6)).astype(np.float32), tmp_path)


def test_transpose_only_relabels_axes(tmp_path):
    """Transpose then a per-'channel' bias along the new axis 0: no data moves at all."""
    model = make_model(
        [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 1]), helper.make_node("Add", ["t", "cb"], ["y"])],
        [fin("x", 5, 3)], [fin("y", 3, 5)], [("cb", RNG.normal(size=(3, 1)))])
    g = compile_graph(model)
    assert not any(isinstance(l, Reorder) for l in g.layers)
    check_all(model, RNG.normal(size=(2, 5, 3)).astype(np.float32), tmp_path)


@pytest.mark.parametrize("axes", [[1], [2], [3]])
def test_unsqueeze_squeeze_roundtrip(tmp_path, axes):
    model = make_model(
        [helper.make_node("Unsqueeze", ["x", "ax"], ["u"]), helper.make_node("Add", ["u", "cb"], ["a"]),
         helper.make_node("Squeeze", ["a", "ax"], ["y"])],
        [fin("x", 4, 6)], [fin("y", 4, 6)],
        [("ax", np.array(axes, dtype=np.int64)), ("cb", RNG.normal(size=(4, 1, 1)) if axes != [1] else RNG.normal(size=(1, 4, 1)))])
    check_all(model, RNG.normal(size=(2, 4, 6)).astype(np.float32), tmp_path)


def test_reshape_that_mixes_axes_moves_data_correctly(tmp_path):
    """A true reshape of a channels-last tensor must first restore row-major order."""
    model = make_model(
        [helper.make_node("Add", ["x", "cb"], ["a"]), helper.make_node("Reshape", ["a", "shape"], ["r"]),
         helper.make_node("Add", ["r", "cb2"], ["y"])],
        [fin("x", 4, 6)], [fin("y", 6, 4)],
        [("cb", RNG.normal(size=(4, 1))), ("shape", np.array([-1, 6, 4], dtype=np.int64)), ("cb2", RNG.normal(size=(6, 1)))])
    g = compile_graph(model)
    assert any(isinstance(l, Reorder) for l in g.layers)
    check_all(model, RNG.normal(size=(3, 4, 6)).astype(np.float32), tmp_path)


def test_embedding_then_transpose_is_free():
    model = make_model(
        [helper.make_node("Gather", ["emb", "ids"], ["e"]), helper.make_node("Transpose", ["e"], ["t"], perm=[0, 2, 1]),
         helper.make_node("Add", ["t", "cb"], ["y"])],
        [helper.make_tensor_value_info("ids", 7, ["N", 5])], [fin("y", 3, 5)],
        [("emb", RNG.normal(size=(10, 3))), ("cb", RNG.normal(size=(3, 1)))])
    g = compile_graph(model)
    assert not any(isinstance(l, Reorder) for l in g.layers)
    ids = RNG.integers(0, 10, size=(4, 5))
    np.testing.assert_allclose(run_float(g, [ids])[0], run_onnx(model, [ids])[0], atol=1e-6)
