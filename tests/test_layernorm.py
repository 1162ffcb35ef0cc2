"""LayerNorm: ONNX's own node cases, the single node (opset 17) and the decomposed chain lower
opsets write, per token of a sequence, bit-exact C simulation in both io types, the error bound
against onnxruntime, and the kernel's loop counts against the estimate."""

from __future__ import annotations

import io as _io
import warnings

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import hwprune
from conftest import onnx_node_cases
from hwprune.backend.csim import count_loops, raw_outputs
from hwprune.errors import UnsupportedOpError
from hwprune.pipeline import compile_graph, error_bounds, run_fixed, run_float, run_onnx, trace_fixed
from hwprune.precision import PrecisionConfig, parse_type
from hwprune.project import load_project_graph
from hwprune.sim.estimate import estimate

PREC = PrecisionConfig().with_overrides(result=parse_type("ap_fixed<18,8,AP_RND_CONV,AP_SAT>"))


def _node_cases() -> dict:
    cases = onnx_node_cases('layernormalization')
    return {c.name: c for c in cases if c.name.startswith("test_layer_normalization") and "expanded" not in c.name}


NODE_CASES = _node_cases()


def _with_constant_parameters(case) -> tuple[onnx.ModelProto, list[np.ndarray], np.ndarray, int]:
    """The node cases feed scale and bias as graph inputs; hardware needs them constant."""
    inputs, outputs = case.data_sets[0]
    m = onnx.ModelProto()
    m.CopyFrom(case.model)
    names = [i.name for i in m.graph.input]
    for name, value in zip(names[1:], inputs[1:]):
        m.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
    keep = [i for i in m.graph.input if i.name == names[0]]
    del m.graph.input[:]
    m.graph.input.extend(keep)
    outs = [o for o in m.graph.output if o.name == m.graph.node[0].output[0]]  # Y only
    del m.graph.output[:]
    m.graph.output.extend(outs)
    axis = next((a.i for a in m.graph.node[0].attribute if a.name == "axis"), -1)
    return m, [inputs[0]], outputs[0], axis


def test_the_node_cases_are_there():
    assert len(NODE_CASES) >= 10 and "test_layer_normalization_default_axis" in NODE_CASES


@pytest.mark.parametrize("name", sorted(NODE_CASES))
def test_onnx_node_cases(name):
    """Over the last axis: float within float32 noise of ONNX's outputs, fixed within the bound.
    Over several trailing axes: the clear error."""
    m, inputs, expected, axis = _with_constant_parameters(NODE_CASES[name])
    rank = inputs[0].ndim
    if axis not in (-1, rank - 1):
        with pytest.raises(UnsupportedOpError, match="last axis"):
            compile_graph(m, PREC)
        return
    g = compile_graph(m, PREC)
    assert [l.op_type for l in g.layers] == ["LayerNorm"]
    np.testing.assert_allclose(run_float(g, inputs)[0], expected, rtol=1e-4, atol=1e-5)
    assert (np.abs(run_fixed(g, inputs)[0] - expected) <= error_bounds(g, inputs)[0] + 1e-6).all()


torch = pytest.importorskip("torch")


class _Block(torch.nn.Module):
    """Per token: Linear -> LayerNorm -> Linear, on a (tokens, features) sequence."""

    def __init__(self, affine: bool = True) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.ln, self.b = torch.nn.Linear(8, 32), torch.nn.LayerNorm(32, elementwise_affine=affine), torch.nn.Linear(32, 3)
        if affine:
            with torch.no_grad():
                self.ln.weight.uniform_(0.5, 1.5)
                self.ln.bias.uniform_(-0.2, 0.2)

    def forward(self, x):
        return self.b(self.ln(self.a(x)))


X = np.random.default_rng(0).normal(size=(16, 6, 8)).astype(np.float32)


def _export(module, opset: int) -> onnx.ModelProto:
    f = _io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), torch.zeros(1, 6, 8), f, dynamo=False, opset_version=opset,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    return onnx.load_from_string(f.getvalue())


@pytest.mark.parametrize("opset", [13, 17])
@pytest.mark.parametrize("affine", [True, False])
def test_torch_layernorm_single_node_and_decomposed(opset, affine):
    model = _export(_Block(affine), opset)
    ops = [n.op_type for n in model.graph.node]
    assert ("LayerNormalization" in ops) == (opset >= 17)  # below 17: ReduceMean / Sub / Pow / ... chain
    g = compile_graph(model)
    assert [l.op_type for l in g.layers] == ["Dense", "LayerNorm", "Dense"]
    ref = run_onnx(model, [X])[0]
    np.testing.assert_allclose(run_float(g, [X])[0], ref, rtol=1e-5, atol=1e-5)
    assert (np.abs(run_fixed(g, [X])[0] - ref) <= error_bounds(g, [X])[0] + 1e-6).all()


def test_dynamo_export():
    from hwprune.frontend.torch_export import export_torch

    model = export_torch(_Block(), torch.zeros(1, 6, 8), dynamo=True)
    g = compile_graph(model)
    assert [l.op_type for l in g.layers] == ["Dense", "LayerNorm", "Dense"]
    np.testing.assert_allclose(run_float(g, [X[:1]])[0], run_onnx(model, [X[:1]])[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("io,rf", [("parallel", 1), ("stream", 1), ("parallel", 3), ("stream", 3)])
def test_csim_is_bit_exact_and_the_kernel_runs_the_estimated_cycles(tmp_path, io, rf):
    """At reuse factor 3 the 32-element rows take ceil(32 / 3) = 11 lanes over 3 cycles (one
    lane slot idle); the sums of a token and the outputs of the one before share a step: 6 + 1
    steps of 3 cycles. The numerics do not change with the reuse factor."""
    model = _export(_Block(), 17)
    prj = hwprune.export(model, tmp_path / io, io_type=io, precision=PREC.with_overrides(reuse_factor=rf))
    g = load_project_graph(prj)
    x = X[:4] * 3  # wider rows: larger variances exercise more of the table
    np.testing.assert_array_equal(raw_outputs(prj, [x])[0], trace_fixed(g, [x]).values[g.outputs[0]])
    counts = count_loops(prj, [x])
    ln = next(l for l in g.layers if l.op_type == "LayerNorm")
    assert ln.reuse_factor == rf
    est = next(l for l in estimate(g, hwprune.board.load_board("pynq-z2"), 100.0).layers if l.name == ln.name)
    c = counts[ln.name]
    assert c.calls == len(x) and c.cycles / c.calls == est.cost.ii == (6 if rf == 1 else 7 * 3)
    if io == "stream":
        assert c.reads / c.calls == c.writes / c.calls == 6


def _ln_cost(rf: int, n: int = 96, tokens: int = 48):
    from onnx import helper

    from conftest import fin, make_model

    rng = np.random.default_rng(1)
    m = make_model([helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"])], [fin("x", tokens, n)],
                   [fin("y", tokens, n)], [("g", rng.uniform(0.5, 1.5, n)), ("b", rng.uniform(-0.2, 0.2, n))])
    g = compile_graph(m, PrecisionConfig().with_overrides(reuse_factor=rf), "stream")
    return g.layers[0], estimate(g, hwprune.board.load_board("pynq-z2"), 100.0).layers[0].cost


def test_reuse_factor_time_shares_the_multipliers():
    """A 96-wide LayerNorm over 48 tokens (ap_fixed<16,6> in and out, 16-bit gamma and beta) on
    pynq-z2's DSP48E1 (25 x 18): x*x (16 x 16), (n x - S) * inv (24 x 18) and z * gamma (20 x 16)
    each take one DSP.
    RF 1: 96 lanes, 288 DSPs, a token per cycle. RF 64: ceil(96 / 64) = 2 lanes, so 6 DSPs, and
    the row is served in ceil(96 / 2) = 48 cycles (not 64): (48 + 1) * 48 cycles per sample.
    RF 8: 12 lanes, 36 DSPs, (48 + 1) * 8 cycles."""
    by_rf = {rf: _ln_cost(rf) for rf in (1, 8, 64)}
    (l1, c1), (l8, c8), (l64, c64) = by_rf[1], by_rf[8], by_rf[64]
    assert (l1.reuse_factor, l8.reuse_factor, l64.reuse_factor) == (1, 8, 48)
    assert (c1.dsp, c8.dsp, c64.dsp) == (288, 36, 6)
    assert (c1.multipliers, c8.multipliers, c64.multipliers) == (288, 36, 6)
    assert (c1.ii, c8.ii, c64.ii) == (48, 49 * 8, 49 * 48)
    assert c64.latency > c8.latency > c1.latency
    # LUTs by hand from the primitives (an adder 1 LUT/bit; an 8:1 / 64:1 mux 3 / 25.5 LUT/bit;
    # LUTRAM 64 bits/LUT), d = 24 bits, V = 48 bits. RF 8, 12 lanes: lane trees 11 * (24 + 48),
    # accumulators 24 + 48, per lane subtractor 24 + output adder 16 + two 8:1 muxes of 16 bits
    # (12 * 136), variance 2 * 48 + leading-one shifter 64:1 of 48 bits (1320), gamma and beta
    # 12 banks of 8 x 16 bits each (24 + 24): 3864. RF 64 (2 lanes, 48 cycles): 72 + 72
    # + 2 * (40 + 2 * 408) + 1320 + 2 banks of 48 x 16 bits each (24 + 24) = 3224. RF 1 stays 12000.
    assert (c1.lut, c8.lut, c64.lut) == (12000, 3864, 3224)


def test_constant_rows_take_epsilon():
    """A row of equal values has zero variance: the output is beta, as in float (x - mean = 0)."""
    from onnx import helper

    from conftest import fin, make_model

    m = make_model([helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], epsilon=1e-3)], [fin("x", 4, 16)],
                   [fin("y", 4, 16)], [("g", np.full(16, 2.0)), ("b", np.linspace(-1, 1, 16))])
    x = np.ones((2, 4, 16), dtype=np.float32) * 0.75
    g = compile_graph(m, PREC)
    np.testing.assert_allclose(run_fixed(g, [x])[0], run_onnx(m, [x])[0], atol=2 ** -9)


def test_wide_rows_are_exact_past_62_bits():
    """A row of 4096 24-bit values needs 73-bit sums: the exact path, against onnxruntime."""
    from onnx import helper

    from conftest import fin, make_model

    m = make_model([helper.make_node("LayerNormalization", ["x", "g"], ["y"])], [fin("x", 4096)], [fin("y", 4096)],
                   [("g", np.ones(4096))])
    g = compile_graph(m, PrecisionConfig().with_overrides(result=parse_type("ap_fixed<24,8>")))
    assert g.layers[0].sums_bits(g) > 62
    x = np.random.default_rng(3).normal(size=(2, 4096)).astype(np.float32)
    from hwprune.pipeline import error_bounds

    err = np.abs(run_fixed(g, [x])[0] - run_onnx(m, [x])[0])
    assert np.all(err <= error_bounds(g, [x])[0] + 1e-5) and err.max() < 0.01
