"""Softmax over the last axis of attention-shaped tensors (heads x queries x keys), ONNX's own
Softmax node cases with an axis, the argmax an 8-to-16-bit fixed-point softmax keeps, and the
io_stream reuse factor (bit exact with and without a padding mask, counted cycles, cost)."""

from __future__ import annotations


import numpy as np
import pytest
from onnx import TensorProto, helper

import hwprune
from conftest import fin, iin, make_model, onnx_node_cases
from hwprune.backend.csim import count_loops, raw_outputs
from hwprune.board import load_board
from hwprune.pipeline import compile_graph, error_bounds, run_fixed, run_float, run_onnx, trace_fixed
from hwprune.precision import PrecisionConfig, parse_type
from hwprune.project import load_project_graph
from hwprune.sim.estimate import estimate


def _softmax_model(shape: tuple[int, ...], axis: int = -1):
    return make_model([helper.make_node("Softmax", ["x"], ["y"], axis=axis)], [fin("x", *shape)], [fin("y", *shape)])


def _node_cases() -> dict:
    cases = onnx_node_cases('softmax')
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


# ---------------------------------------------------------------------- reuse factor (io_stream)

ROWS, KEYS = 4, 7


def _plain_and_masked():
    """Scores x (ROWS, KEYS): a plain softmax, and beside it one with a padding mask (the
    additive -1e4 bias an exporter writes, fused into MaskedSoftmax on import)."""
    n = helper.make_node
    return make_model(
        [n("Softmax", ["x"], ["plain"], axis=-1),
         n("Cast", ["mask"], ["mf"], to=TensorProto.FLOAT), n("Unsqueeze", ["mf", "ax"], ["mu"]),
         n("Sub", ["one", "mu"], ["pad"]), n("Mul", ["pad", "big"], ["bias"]), n("Add", ["x", "bias"], ["s"]),
         n("Softmax", ["s"], ["masked"], axis=-1)],
        [fin("x", ROWS, KEYS), iin("mask", KEYS)], [fin("plain", ROWS, KEYS), fin("masked", ROWS, KEYS)],
        [("ax", np.array([1], np.int64)), ("one", np.array(1.0, np.float32)), ("big", np.array(-1e4, np.float32))])


@pytest.mark.parametrize("rf", [1, 2, 3, KEYS])
def test_time_shared_softmax_is_bit_exact_and_runs_the_estimated_cycles(tmp_path, rf):
    """io_stream at reuse factor RF: ceil(7 / RF) lanes (RF 2: 4, RF 3: 3 with two idle lane
    slots in the last cycle, RF 7: one). A step of RF cycles takes the max of row t, the
    exponentials of row t-1 and the outputs of row t-2, so a sample takes (4 + 2) * RF
    cycles (RF 1: a row per cycle); the mask is read once, with the first row. Bit exact against
    the numpy reference, with and without the mask, a sample of only padding included."""
    m = _plain_and_masked()
    rng = np.random.default_rng(rf)
    x = (rng.normal(size=(3, ROWS, KEYS)) * 3).astype(np.float32)
    x[0, 0] = [9, -9, 0, 0.5, 8.1, -0.1, 3]  # keys beyond the exp table's range
    mask = (np.arange(KEYS)[None] < np.array([[3], [KEYS], [1]])).astype(np.int64)
    mask[2] = 0  # only padding: the mask is ignored
    prj = hwprune.export(m, tmp_path / "prj", io_type="stream", precision=PrecisionConfig().with_overrides(reuse_factor=rf))
    g = load_project_graph(prj)
    xs = [x, mask]
    tr = trace_fixed(g, xs)
    for got, name in zip(raw_outputs(prj, xs), g.outputs):
        np.testing.assert_array_equal(got, tr.values[name], err_msg=name)
    for y, ref, bound in zip(run_fixed(g, xs), run_onnx(m, xs), error_bounds(g, xs)):
        assert (np.abs(y - ref) <= bound + 1e-6).all()
    counts = count_loops(prj, xs)
    est = {l.name: l.cost for l in estimate(g, load_board("pynq-z2"), 100.0).layers}
    sms = [l for l in g.layers if l.op_type == "Softmax"]
    assert sorted(l.masked for l in sms) == [False, True]
    for l in sms:
        c = counts[l.name]
        assert l.reuse_factor == rf and l.lanes(g) == -(-KEYS // rf)
        assert c.calls == len(x) and c.cycles / c.calls == est[l.name].ii == (ROWS if rf == 1 else (ROWS + 2) * rf)
        assert (c.reads / c.calls, c.writes / c.calls) == (ROWS + l.masked, ROWS)


def _softmax_cost(rf: int):
    g = compile_graph(_softmax_model((48, 48)), PrecisionConfig().with_overrides(reuse_factor=rf), "stream")
    return g.layers[0], estimate(g, load_board("pynq-z2"), 100.0).layers[0].cost


def test_reuse_factor_shrinks_the_softmax():
    """48 rows of 48 keys (ap_fixed<16,6> scores) on pynq-z2: an 18 x 18 normalising multiplier
    (one DSP48E1) per lane, an exp table copy (1024 x 18: one BRAM18) per two lanes and one
    reciprocal table. RF 1: 48 lanes, 48 DSPs, 24 + 1 BRAM18, a row per cycle. RF 8: 6 lanes,
    6 DSPs, 3 + 1 BRAM18, (48 + 2) * 8 cycles. RF 48: one lane, 1 + 1 BRAM18, 50 * 48 cycles.
    LUTs by hand: 60 per lane (index, comparator, adder, rounding), at RF > 1 plus per lane two
    RF:1 multiplexers of 16 bits (the incoming and the previous row) and one of 18 (the
    exponentials) — 8:1 costs 3 LUT/bit, 48:1 (as 64:1) 25.5 — and once the running max (28)
    and the 24-bit sum (24)."""
    (l1, c1), (l8, c8), (l48, c48) = _softmax_cost(1), _softmax_cost(8), _softmax_cost(48)
    assert (l1.reuse_factor, l8.reuse_factor, l48.reuse_factor) == (1, 8, 48)
    assert (c1.dsp, c8.dsp, c48.dsp) == (48, 6, 1)
    assert (c1.bram18, c8.bram18, c48.bram18) == (25, 4, 2)
    assert (c1.ii, c8.ii, c48.ii) == (48, 50 * 8, 50 * 48)
    assert (c1.lut, c8.lut, c48.lut) == (48 * 60, 6 * (60 + 2 * 48 + 54) + 52, 60 + 2 * 408 + 459 + 52)
