"""Mul / Div / Sub by a constant (scalar or per channel) import as a ScaleShift, fold into a
neighbouring Dense/Conv where that is exact, and match onnxruntime; arithmetic between two
activations gets the clear error."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from conftest import fin, make_model
from hwprune.errors import UnsupportedOpError
from hwprune.pipeline import compile_graph, run_fixed, run_float, run_onnx, error_bounds

RNG = np.random.default_rng(0)


def _conv_then(op: str, c: np.ndarray, const_first: bool = False):
    ins = ["c", "k"] if not const_first else ["k", "c"]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3], name="conv"),
             helper.make_node(op, ins, ["y"], name="arith")]
    return make_model(nodes, [fin("x", 3, 10)], [fin("y", 4, 8)],
                      [("w", RNG.normal(size=(4, 3, 3)) * 0.3), ("b", RNG.normal(size=4) * 0.1), ("k", c)])


CASES = [("Mul", np.array(0.5), False), ("Mul", np.array([[1.5], [-0.5], [2.0], [0.25]]), True),
         ("Div", np.array(4.0), False), ("Sub", np.array([[0.1], [0.2], [-0.3], [0.0]]), False),
         ("Sub", np.array(0.75), True)]


@pytest.mark.parametrize("op,c,const_first", CASES)
def test_constant_arith_folds_and_matches_onnxruntime(op, c, const_first):
    m = _conv_then(op, c, const_first)
    g = compile_graph(m)
    assert [l.op_type for l in g.layers] == ["Conv"]  # folded into the conv's weights and bias
    x = RNG.normal(size=(5, 3, 10)).astype(np.float32)
    ref = run_onnx(m, [x])[0]
    np.testing.assert_allclose(run_float(g, [x])[0], ref, rtol=1e-5, atol=1e-6)
    assert (np.abs(run_fixed(g, [x])[0] - ref) <= error_bounds(g, [x])[0] + 1e-6).all()


def test_a_scale_that_cannot_fold_stays_a_layer():
    """After a ReLU the scale cannot move into the conv (negative factors do not commute)."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Mul", ["r", "k"], ["y"])]
    m = make_model(nodes, [fin("x", 6)], [fin("y", 6)], [("k", np.array(-0.5))])
    g = compile_graph(m)
    assert [l.op_type for l in g.layers] == ["Activation", "ScaleShift"]
    x = RNG.normal(size=(4, 6)).astype(np.float32)
    np.testing.assert_allclose(run_float(g, [x])[0], run_onnx(m, [x])[0], rtol=1e-6)


@pytest.mark.parametrize("op", ["Mul", "Sub", "Div"])
def test_two_activations_get_the_clear_error(op):
    m = make_model([helper.make_node("Relu", ["x"], ["r"]), helper.make_node(op, ["x", "r"], ["y"], name="both")],
                   [fin("x", 6)], [fin("y", 6)])
    with pytest.raises(UnsupportedOpError, match="node 'both'"):
        compile_graph(m)
