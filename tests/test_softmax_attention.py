"""Softmax over the last axis of attention-shaped tensors (heads x queries x keys), ONNX's own
Softmax node cases with an axis, and the argmax an 8-to-16-bit fixed-point softmax keeps."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from onnx import helper

import hwprune
from conftest import fin, make_model
from hwprune.backend.csim import raw_outputs
from hwprune.pipeline import compile_graph, error_bounds, run_fixed, run_float, run_onnx, trace_fixed
from hwprune.precision import PrecisionConfig, parse_type
from hwprune.project import load_project_graph


def _softmax_model(shape: tuple[int, ...], axis: int = -1):
    return make_model([helper.make_node("Softmax", ["x"], ["y"], axis=axis)], [fin("x", *shape)], [fin("y", *shape)])


def _node_cases() -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from onnx.backend.test.case.node import collect_testcases

        cases = collect_testcases()
    return {c.name: c for c in cases if c.name.startswith("test_softmax") and "expanded" not in c.name
            and "cross_entropy" not in c.name}


NODE_CASES = _node_cases()


@pytest.mark.parametrize("name", sorted(NODE_CASES))
def test_onnx_softmax_node_cases(name):
    """Every axis but the batch's: float equals ONNX's output, fixed stays within the bound."""
    case = NODE_CASES[name]
    inputs, outputs = case.data_sets[0]
    axis = next((a.i for a in case.model.graph.node[0].attribute if a.name == "axis"), -1)
    if axis in (0, -inputs[0].ndim):
        pytest.skip("softmax over the batch axis is refused (tested in test_activations)")
    prec = PrecisionConfig().with_overrides(result=parse_type("ap_fixed<18,4,AP_RND_CONV,AP_SAT>"))
    g = compile_graph(case.model, prec)
    np.testing.assert_allclose(run_float(g, inputs)[0], outputs[0], rtol=1e-5, atol=1e-6)
    assert (np.abs(run_fixed(g, inputs)[0] - outputs[0]) <= error_bounds(g, inputs)[0] + 1e-6).all()


@pytest.mark.parametrize("io", ["parallel", "stream"])
def test_attention_shaped_softmax_is_bit_exact(tmp_path, io):
    """(heads, queries, keys) = (2, 6, 6): one row per query and head."""
    m = _softmax_model((2, 6, 6))
    x = np.random.default_rng(0).normal(size=(3, 2, 6, 6)).astype(np.float32) * 2
    prec = PrecisionConfig().with_overrides(result=parse_type("ap_fixed<16,3,AP_RND_CONV,AP_SAT>"))
    prj = hwprune.export(m, tmp_path / io, io_type=io, precision=prec)
    g = load_project_graph(prj)
    np.testing.assert_array_equal(raw_outputs(prj, [x])[0], trace_fixed(g, [x]).values[g.outputs[0]])
    assert (np.abs(run_fixed(g, [x])[0] - run_onnx(m, [x])[0]) <= error_bounds(g, [x])[0] + 1e-6).all()


@pytest.mark.parametrize("bits", [8, 10, 12, 16])
def test_fixed_softmax_keeps_the_float_argmax(bits):
    """Random attention logits (scaled dot products, |x| up to ~6) in `bits`-bit inputs and
    outputs: the fixed-point softmax picks the same key as the float softmax of the same logits
    on every row where the top two float probabilities differ by more than twice the propagated
    bound (on the others the argmax is not determined at this precision) — hls4ml users report
    flipped argmaxes (#1512)."""
    rng = np.random.default_rng(bits)
    seq = 16
    m = _softmax_model((4, seq, seq))
    prec = PrecisionConfig.from_dict({
        "model": {"result": f"ap_fixed<{bits},4,AP_RND_CONV,AP_SAT>"},
        "layer_type": {"Softmax": {"result": f"ap_ufixed<{bits},0,AP_RND_CONV,AP_SAT>"}},
    })
    g = compile_graph(m, prec)
    in_t = g.tensor(g.inputs[0]).type
    assert in_t.width == bits
    logits = rng.normal(size=(8, 4, seq, seq)) * 2.0
    xq = np.round(logits * 2.0**in_t.frac) / 2.0**in_t.frac  # what the hardware sees
    xq = np.clip(xq, -8, 8 - 2.0**-in_t.frac).astype(np.float32)
    fl = run_onnx(m, [xq])[0]
    fx = run_fixed(g, [xq])[0]
    bound = error_bounds(g, [xq])[0]
    assert (np.abs(fx - fl) <= bound + 1e-6).all()
    top2 = np.sort(fl, axis=-1)[..., -2:]
    decided = (top2[..., 1] - top2[..., 0]) > 2 * bound.max(axis=-1)
    assert decided.mean() > (0.5 if bits == 8 else 0.9)
    assert (fx.argmax(-1) == fl.argmax(-1))[decided].all()
