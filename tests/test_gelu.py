"""GELU (exact and tanh form) and Erf: ONNX's own node test cases, the chains both PyTorch
exporters write fused into one table activation, bit-exact C simulation in both io types, and
the error bound against onnxruntime."""

from __future__ import annotations

import math

import numpy as np
import pytest
from onnx import helper

import hwprune
from conftest import fin, make_model, onnx_node_cases, torch_onnx
from hwprune.backend.csim import raw_outputs
from hwprune.errors import UnsupportedOpError
from hwprune.ops.activation import LIPSCHITZ, _f
from hwprune.pipeline import compile_graph, error_bounds, run_fixed, run_float, run_onnx, trace_fixed
from hwprune.precision import PrecisionConfig, parse_type
from hwprune.project import load_project_graph

PREC = PrecisionConfig().with_overrides(result=parse_type("ap_fixed<18,8,AP_RND_CONV,AP_SAT>"))


def _node_cases() -> list:
    cases = onnx_node_cases('gelu', 'erf')
    return [c for c in cases if c.name.startswith(("test_gelu", "test_erf"))]


NODE_CASES = {c.name: c for c in _node_cases()}


def test_the_node_cases_are_there():
    assert {"test_erf", "test_gelu_default_2", "test_gelu_tanh_2", "test_gelu_default_2_expanded",
            "test_gelu_tanh_2_expanded"} <= set(NODE_CASES)


@pytest.mark.parametrize("name", sorted(NODE_CASES))
def test_onnx_node_cases(name):
    """Opset-20 Gelu, its expanded function bodies (fused back into one table) and Erf, against
    the outputs ONNX ships: float within float32 noise, fixed within the propagated bound."""
    case = NODE_CASES[name]
    inputs, outputs = case.data_sets[0]
    g = compile_graph(case.model, PREC)
    assert [l.op_type for l in g.layers] == ["Activation"]
    np.testing.assert_allclose(run_float(g, inputs)[0], outputs[0], rtol=1e-5, atol=1e-6)
    err = np.abs(run_fixed(g, inputs)[0] - outputs[0])
    assert (err <= error_bounds(g, inputs)[0] + 1e-6).all()


torch = pytest.importorskip("torch")


def _mlp(approx: str):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(approximate=approx), torch.nn.Linear(16, 3))


X = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32) * 3


@pytest.mark.parametrize("approx", ["none", "tanh"])
@pytest.mark.parametrize("dynamo", [False, True])
def test_torch_gelu_is_one_table(approx, dynamo):
    model = torch_onnx(_mlp(approx), torch.zeros(1, 8), dynamo=dynamo)
    g = compile_graph(model)
    kinds = [(l.op_type, getattr(l, "kind", None)) for l in g.layers]
    assert kinds == [("Dense", None), ("Activation", "gelu" if approx == "none" else "gelu_tanh"), ("Dense", None)]
    ref = run_onnx(model, [X])[0]
    np.testing.assert_allclose(run_float(g, [X])[0], ref, rtol=1e-5, atol=1e-5)
    assert (np.abs(run_fixed(g, [X])[0] - ref) <= error_bounds(g, [X])[0] + 1e-6).all()


@pytest.mark.parametrize("io", ["parallel", "stream"])
def test_csim_is_bit_exact(tmp_path, io):
    """GELU (inputs well past the table's top, where it is the identity) and Erf, one design."""
    torch.manual_seed(1)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(8, 12), torch.nn.Linear(12, 4)

        def forward(self, x):
            return torch.erf(self.b(torch.nn.functional.gelu(self.a(x) * 4)) / 2)

    model = torch_onnx(Net(), torch.zeros(1, 8))
    prj = hwprune.export(model, tmp_path / io, io_type=io, precision=PREC)
    g = load_project_graph(prj)
    assert [getattr(l, "kind", None) for l in g.layers if l.op_type == "Activation"] == ["gelu", "erf"]
    x = X[:16]
    assert np.abs(x @ np.ones((8, 1))).max() > 2  # some pre-activations leave the table range
    np.testing.assert_array_equal(raw_outputs(prj, [x])[0], trace_fixed(g, [x]).values[g.outputs[0]])


def test_a_chain_that_is_not_gelu_is_not_fused():
    """x * erf(x) is no known function: the multiply of two activations is reported."""
    m = make_model([helper.make_node("Erf", ["x"], ["e"]), helper.make_node("Mul", ["x", "e"], ["y"], name="mul")],
                   [fin("x", 4)], [fin("y", 4)])
    with pytest.raises(UnsupportedOpError, match="Mul"):
        compile_graph(m)


def test_a_scaled_input_is_part_of_the_match():
    """GELU of 0.5·h: the scaling stays a separate node, the chain from its output is GELU."""
    sq = math.sqrt(2.0)
    nodes = [helper.make_node("Mul", ["h", "half"], ["x"]), helper.make_node("Div", ["x", "sq"], ["d"]),
             helper.make_node("Erf", ["d"], ["e"]), helper.make_node("Add", ["e", "one"], ["a"]),
             helper.make_node("Mul", ["x", "a"], ["m"]), helper.make_node("Mul", ["m", "half"], ["y"])]
    m = make_model(nodes, [fin("h", 5)], [fin("y", 5)], [("half", np.array(0.5)), ("sq", np.array(sq)), ("one", np.array(1.0))])
    g = compile_graph(m, PREC)
    assert [getattr(l, "kind", l.op_type) for l in g.layers][-1] == "gelu"
    h = np.random.default_rng(2).normal(size=(7, 5)).astype(np.float32) * 4
    np.testing.assert_allclose(run_float(g, [h])[0], run_onnx(m, [h])[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["gelu", "gelu_tanh", "erf"])
def test_lipschitz_constants_bound_the_slope(kind):
    x = np.linspace(-12, 12, 200001)
    slope = np.abs(np.diff(_f(kind, 1.0)(x)) / np.diff(x))
    assert slope.max() <= LIPSCHITZ[kind]


def test_gelu_table_accuracy_at_default_precision():
    """Documented accuracy (docs/activations.md) at the default 16-bit type and 1024 entries."""
    nodes = [helper.make_node("Gelu", ["x"], ["g"]), helper.make_node("Gelu", ["x"], ["t"], approximate="tanh"),
             helper.make_node("Erf", ["x"], ["e"])]
    m = make_model(nodes, [fin("x", 4, 6)], [fin("g", 4, 6), fin("t", 4, 6), fin("e", 4, 6)], opset=20)
    x = np.linspace(-12, 12, 4 * 6 * 50).reshape(50, 4, 6).astype(np.float32)
    g = compile_graph(m)
    errs = [float(np.max(np.abs(a - b))) for a, b in zip(run_fixed(g, [x]), run_onnx(m, [x]))]
    assert errs[0] < 9.5e-3 and errs[1] < 9.5e-3 and errs[2] < 5.2e-3, errs
