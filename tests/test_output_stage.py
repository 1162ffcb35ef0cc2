"""output_stage "shared": a Dense engine rounds and saturates ceil(n_out / RF) outputs a cycle
during the next word's reuse cycles instead of all n_out at once (dense.h, dense_sparse.h).

Checked against independent references: the C simulation against the numpy fixed-point
reference (bit for bit), the counting build's loop trips against the estimate's interval and the
dataflow simulator's latency, and the cost by hand from the measured primitives."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import hwprune
from conftest import fin, make_model
from hwprune.backend.csim import count_loops, raw_outputs
from hwprune.fixed import FixedType
from hwprune.pipeline import compile_graph, trace_fixed
from hwprune.precision import LayerPrecision, PrecisionConfig
from hwprune.project import load_project_graph
from hwprune.prune.onnx_prune import prune_onnx
from hwprune.prune.patterns import Pattern
from hwprune.rtl.cost import requant_luts
from hwprune.sim import resources as hw
from hwprune.sim.dataflow import simulate
from hwprune.sim.estimate import estimate

WORDS, N_IN, N_OUT = 5, 16, 12


def sequence_dense(seed: int = 0):
    """A Linear over a 5-word sequence (5 stream words of 16 in io_stream)."""
    rng = np.random.default_rng(seed)
    return make_model([helper.make_node("MatMul", ["x", "w"], ["h"], name="fc"),
                       helper.make_node("Add", ["h", "b"], ["y"], name="bias")],
                      [fin("x", WORDS, N_IN)], [fin("y", WORDS, N_OUT)],
                      [("w", rng.normal(size=(N_IN, N_OUT)) * 0.3), ("b", rng.normal(size=N_OUT) * 0.1)])


def precision(stage: str | None, rf: int = 4) -> PrecisionConfig:
    return PrecisionConfig(LayerPrecision(result=FixedType.parse("ap_fixed<10,4,AP_RND_CONV,AP_SAT>"), weight_width=8,
                                          reuse_factor=rf, output_stage=stage))


def dense_cost(model, stage, rf=4, io="stream"):
    g = compile_graph(model, precision(stage, rf), io)
    (le,) = [l for l in estimate(g, hwprune.board.load_board("pynq-z2")).layers if l.op == "Dense"]
    return g, le.cost


@pytest.mark.parametrize("pattern", [None, "block:2x2", "block:2x2:col", "nm:2:4"])
def test_shared_output_stage_keeps_the_bits_and_the_counted_cycles(tmp_path, pattern):
    model = sequence_dense()
    if pattern:
        model, _ = prune_onnx(model, Pattern.parse(pattern), 0.5)
    prj = hwprune.export(model, tmp_path / "p", precision=precision("shared"), io_type="stream")
    params = (prj / "firmware" / "parameters.h").read_text()
    assert "output_stage = 1, out_lanes = 3;" in params  # ceil(12 / 4) requantizers
    g = load_project_graph(prj)
    (layer,) = [l for l in g.layers if l.op_type == "Dense"]
    assert (layer.sparsity is not None) == bool(pattern)
    x = np.random.default_rng(1).normal(size=(3, WORDS, N_IN)).astype(np.float32) * 2
    np.testing.assert_array_equal(raw_outputs(prj, [x])[0], trace_fixed(g, [x]).values[g.outputs[0]])
    c = count_loops(prj, [x])[layer.name]
    # (words + 1) trips of RF cycles a call: the last one drains the final word.
    assert c.cycles / c.calls == (WORDS + 1) * 4 and (c.reads, c.writes) == (3 * WORDS, 3 * WORDS)
    est = {l.name: l.cost for l in estimate(g, hwprune.board.load_board("pynq-z2")).layers}
    assert est[layer.name].ii == (WORDS + 1) * 4


def test_shared_output_stage_costs_a_lane_of_requantizers_and_a_word_of_latency():
    model = sequence_dense()
    g, par = dense_cost(model, None)
    _, sh = dense_cost(model, "shared")
    layer = next(l for l in g.layers if l.op_type == "Dense")
    acc_t, out_t = layer.accum_t, g.tensor(layer.output).type
    from hwprune.rtl.cost import live_width

    aw = live_width(acc_t.width, acc_t.frac, out_t)
    one = requant_luts(aw, acc_t.frac, out_t)
    assert one > 0  # RND_CONV + SAT: an increment and a saturation per requantizer
    # 12 requantizers -> 3, each choosing among 4 hand-over registers; a load enable per output.
    assert par.lut - sh.lut == pytest.approx(12 * one - 3 * one - 3 * hw.mux_luts(4, aw) - 12)
    assert sh.ff - par.ff == 12 * aw  # the hand-over registers
    assert (sh.latency - par.latency, sh.ii - par.ii) == (4, 4)
    assert (sh.dsp, sh.multipliers, sh.bram18) == (par.dsp, par.multipliers, par.bram18)
    # io_parallel, and RF 1 (no next word's cycles to share), keep every output's requantizer.
    for io, rf in (("parallel", 4), ("stream", 1)):
        assert dense_cost(model, "shared", rf, io)[1].lut == dense_cost(model, None, rf, io)[1].lut


def test_the_dataflow_simulator_sees_the_output_a_word_later(tmp_path):
    model = sequence_dense()
    lat = {}
    for stage in (None, "shared"):
        g = compile_graph(model, precision(stage), "stream")
        r = simulate(g, "pynq-z2", batch=4)
        lat[stage] = r.latency_cycles
        assert not r.deadlock
        assert r.latency_cycles == r.estimate_latency_cycles
    assert lat["shared"] - lat[None] == 4


def test_output_stage_is_parsed_and_refused_when_unknown():
    p = PrecisionConfig.from_dict({"layer_name": {"fc": {"output_stage": "Shared"}}})
    assert p.resolve("fc", "Dense").output_stage == "shared" and p.resolve("x", "Dense").output_stage == "parallel"
    with pytest.raises(Exception, match="output_stage"):
        PrecisionConfig.from_dict({"model": {"output_stage": "serial"}})
