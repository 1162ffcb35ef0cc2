"""MatMul of two activations (attention's Q·Kᵀ and A·V): single- and multi-head attention from
both exporters against onnxruntime, bit-exact C simulation in both io types and reuse factors,
and the kernel's loop counts equal to the estimate; shape errors are clear."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import hwprune
from conftest import fin, make_model, torch_onnx
from hwprune.backend.csim import count_loops, raw_outputs
from hwprune.board import load_board
from hwprune.errors import UnsupportedOpError
from hwprune.pipeline import compile_graph, error_bounds, run_fixed, run_float, run_onnx, trace_fixed
from hwprune.precision import PrecisionConfig
from hwprune.project import load_project_graph
from hwprune.sim.estimate import estimate

torch = pytest.importorskip("torch")
L, D, H = 6, 16, 2


class MultiHead(torch.nn.Module):
    """Attention written the HuggingFace way: view + transpose into heads, scaled scores."""

    def __init__(self, heads: int = H) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.h = heads
        self.q, self.k, self.v, self.o = (torch.nn.Linear(D, D) for _ in range(4))

    def forward(self, x):
        split = lambda t: t.view(-1, L, self.h, D // self.h).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        a = torch.softmax(q @ k.transpose(-1, -2) * (D // self.h) ** -0.5, dim=-1)
        return self.o((a @ v).transpose(1, 2).reshape(-1, L, D))


X = np.random.default_rng(0).normal(size=(8, L, D)).astype(np.float32)


@pytest.mark.parametrize("heads", [1, 2])
@pytest.mark.parametrize("dynamo", [False, True])
def test_attention_matches_onnxruntime(heads, dynamo):
    model = torch_onnx(MultiHead(heads), torch.zeros(1, L, D), dynamo=dynamo)
    g = compile_graph(model)
    assert sum(l.op_type == "MatMul" for l in g.layers) == 2
    ref = run_onnx(model, [X])[0]
    np.testing.assert_allclose(run_float(g, [X])[0], ref, rtol=1e-5, atol=1e-5)
    assert (np.abs(run_fixed(g, [X])[0] - ref) <= error_bounds(g, [X])[0] + 1e-6).all()


@pytest.mark.parametrize("io", ["parallel", "stream"])
@pytest.mark.parametrize("rf", [1, 4, 8, 48])  # 8, 48: fewer banks than K, a word of bᵀ takes 2 and 8 cycles to store
def test_csim_is_bit_exact_and_counts_equal_the_estimate(tmp_path, io, rf):
    model = torch_onnx(MultiHead(), torch.zeros(1, L, D))
    prj = hwprune.export(model, tmp_path / f"{io}{rf}", io_type=io, precision=PrecisionConfig().with_overrides(reuse_factor=rf))
    g = load_project_graph(prj)
    x = X[:3]
    np.testing.assert_array_equal(raw_outputs(prj, [x])[0], trace_fixed(g, [x]).values[g.outputs[0]])
    counts = count_loops(prj, [x])
    est = {l.name: l for l in estimate(g, load_board("pynq-z2"), 100.0).layers}
    mms = [l for l in g.layers if l.op_type == "MatMul"]
    for layer in mms:
        c = counts[layer.name]
        assert c.calls == len(x) and c.cycles / c.calls == est[layer.name].cost.ii, layer.name
        lead, m, k, n = layer.dims(g)
        assert est[layer.name].cost.multipliers == -(-k * n // rf)
        if io == "stream":
            assert c.reads / c.calls == lead * (m + n) and c.writes / c.calls == lead * m
            # Independent count: N words of bᵀ, ceil(K / min(banks, K)) cycles each, then M rows of RF.
            banks = -(-k * n // rf)
            assert c.cycles / c.calls == lead * (n * -(-k // min(banks, k)) + m * rf), layer.name


def test_q_times_k_transposed_moves_no_data():
    """Kᵀ is a relabelling: the layout pass inserts a reorder only for V (its rows must become
    columns), never for the transposed K."""
    model = torch_onnx(MultiHead(1), torch.zeros(1, L, D))
    g = compile_graph(model, io_type="stream")
    first, second = [l for l in g.layers if l.op_type == "MatMul"]
    assert g.producer(first.inputs[1]).op_type != "Reorder"
    assert g.producer(second.inputs[1]).op_type == "Reorder"


def test_shapes_that_do_not_multiply_are_refused():
    m = make_model([helper.make_node("MatMul", ["a", "b"], ["y"], name="mm")], [fin("a", 3, 4), fin("b", 5, 2)],
                   [fin("y", 3, 2)])
    with pytest.raises(UnsupportedOpError, match="node 'mm'"):
        compile_graph(m)
