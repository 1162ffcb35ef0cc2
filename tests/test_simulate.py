"""The dataflow simulator against what the generated kernels execute, and against hand counts.

`count_loops` (the -DHWP_COUNT build of the C simulation) counts each layer's scheduled loop
trips (their IIs summed) and stream words: the independent reference for the simulator's
process models. Per layer the simulated busy cycles per sample must be within 10% of the
counted cycles (stream: they are the same trips, so equal), the stream traffic must equal the
counted words, and a whole design's interval must be within 10% of its slowest layer's counted
cycles. Designs: one model with every layer kind (dense/sparse dense and conv, max/avg/global
pools, embedding, activations, softmax, add, both concat modes, clones, reorder and repack),
a QONNX model (Quantize), an MLP, a text CNN with three conv branches and a concat, a
residual add whose branches are unequal — the one that deadlocks with 2-deep FIFOs — and three
conv branches (a residual add of two computing branches, concatenated with a third) for the
latency composition, which is checked against the longest path through the generated top's
calls weighted by the counted cycles. Twelve g++ builds in all.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import hwprune
from conftest import fin, make_model
from hwprune.backend.csim import LoopCounts, count_loops
from hwprune.board import load_board
from hwprune.cli import main
from hwprune.errors import ConfigError, HwpruneInputError
from hwprune.precision import LayerPrecision, PrecisionConfig
from hwprune.project import build_graph, load_project_graph
from hwprune.prune.onnx_prune import META_PREFIX, prune_onnx
from hwprune.prune.patterns import Pattern
from hwprune.sim.dataflow import simulate, stream_fifos
from hwprune.sim.compose import LatencyDag, compose, design_timing
from hwprune.sim.estimate import estimate
from hwprune.backend.project_dir import ProjectDir
from top_schedule import longest_path, top_calls

BOARD = "pynq-z2"
SAMPLES = 3  # counted samples
BATCH = 12  # simulated samples (the interval is measured over the second half)
QDOMAIN = "qonnx.custom_op.general"
SPARSE = {"sconv": "block:4x4", "sfc": "nm:2:4"}


def kinds_model() -> onnx.ModelProto:
    rng = np.random.default_rng(3)
    init: dict[str, np.ndarray] = {}

    def w(name: str, shape: tuple[int, ...], scale: float = 0.3) -> str:
        init[name] = (rng.normal(size=shape) * scale).astype(np.float32)
        return name

    n = helper.make_node
    nodes = [
        # Image branch: x [4, 6, 6].
        n("BatchNormalization", ["x", w("g0", (4,)), w("b0", (4,)), w("m0", (4,)), "v0"], ["bn"], name="bn"),
        n("Conv", ["bn", w("w1", (8, 4, 3, 3)), w("c1", (8,))], ["h1"], pads=[1, 1, 1, 1], name="conv"),
        n("Relu", ["h1"], ["r1"], name="relu"),
        n("MaxPool", ["r1"], ["mp"], kernel_shape=[2, 2], strides=[2, 2], name="maxpool"),
        n("Conv", ["mp", w("sconv_w", (8, 8, 3, 3)), w("c2", (8,))], ["h2"], pads=[1, 1, 1, 1], name="sconv"),
        n("LeakyRelu", ["h2"], ["l2"], alpha=0.1, name="leaky"),
        n("Add", ["l2", "mp"], ["res"], name="residual"),
        n("AveragePool", ["res"], ["ap"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="avgpool"),
        n("Concat", ["ap", "res"], ["cat"], axis=1, name="concat_chan"),  # innermost axis
        n("Concat", ["ap", "l2"], ["y_rows"], axis=2, name="concat_rows"),  # an outer axis
        n("Sigmoid", ["cat"], ["sg"], name="sigmoid"),
        n("GlobalAveragePool", ["sg"], ["gap"], name="gap"),
        n("Flatten", ["gap"], ["f"], name="flat"),
        n("Gemm", ["f", w("wf", (6, 16)), w("bf", (6,))], ["z"], transB=1, name="fc"),
        n("Softmax", ["z"], ["y_img"], axis=-1, name="softmax"),
        n("Flatten", ["res"], ["y_flat"], name="flat_out"),  # channels-first flatten: Reorder + repack
        # Token branch: ids [10].
        n("Gather", [w("table", (20, 16), 0.5), "ids"], ["e"], axis=0, name="embedding"),
        n("MatMul", ["e", w("sfc_w", (16, 16))], ["s1"], name="sfc"),  # 10 words
        n("Tanh", ["s1"], ["t1"], name="tanh"),
        n("Transpose", ["t1"], ["tt"], perm=[0, 2, 1], name="to_channels"),
        n("Conv", ["tt", w("wt", (8, 16, 3)), w("bt", (8,))], ["ct"], name="tconv"),
        n("ReduceMax", ["ct"], ["mx"], axes=[2], keepdims=0, name="global_max"),
        n("Gemm", ["mx", w("wt2", (4, 8)), w("bt2", (4,))], ["y_txt"], transB=1, name="tfc"),
    ]
    init["v0"] = rng.uniform(0.5, 1.5, 4).astype(np.float32)
    g = helper.make_graph(
        nodes, "kinds",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 6, 6]),
         helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 10])],
        [fin("y_img", 6), fin("y_flat", 72), fin("y_rows", 8, 6, 3), fin("y_txt", 4)],
        [numpy_helper.from_array(v, k) for k, v in init.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    # Each sparse layer keeps its own pattern: prune the model once per pattern, keep that
    # layer's weights and record its pattern.
    inits = {i.name: i for i in m.graph.initializer}
    for layer, pat in SPARSE.items():
        pruned, _ = prune_onnx(m, Pattern.parse(pat), 0.5 if pat.startswith("nm") else 0.75)
        src = {i.name: i for i in pruned.graph.initializer}
        inits[f"{layer}_w"].CopyFrom(src[f"{layer}_w"])
        meta = m.metadata_props.add()
        meta.key, meta.value = META_PREFIX + f"{layer}_w", pat
    return m


def kinds_inputs(rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.normal(size=(SAMPLES, 4, 6, 6)).astype(np.float32), rng.integers(0, 20, size=(SAMPLES, 10))]


def quantized_model() -> onnx.ModelProto:
    def quant(inp: str, out: str) -> onnx.NodeProto:
        return helper.make_node("Quant", [inp, "q_scale", "q_zero", "q_bits"], [out], domain=QDOMAIN, signed=1,
                                narrow=0, rounding_mode="ROUND")

    init = dict(q_scale=np.array(2.0**-4, np.float32), q_zero=np.array(0.0, np.float32),
                q_bits=np.array(8.0, np.float32),
                wq=(np.random.default_rng(5).normal(size=(12, 6)) * 0.3).astype(np.float32))
    g = helper.make_graph(
        [quant("xq", "a"), helper.make_node("MatMul", ["a", "wq"], ["h"]), quant("h", "yq")], "quantized",
        [helper.make_tensor_value_info("xq", TensorProto.FLOAT, ["N", 5, 12])],
        [helper.make_tensor_value_info("yq", TensorProto.FLOAT, ["N", 5, 6])],
        [numpy_helper.from_array(v, k) for k, v in init.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(QDOMAIN, 1)])
    m.ir_version = 8
    return m


def mlp_model() -> onnx.ModelProto:
    rng = np.random.default_rng(1)
    n = helper.make_node
    return make_model(
        [n("Gemm", ["x", "w1", "b1"], ["h1"], transB=1, name="fc1"), n("Relu", ["h1"], ["r1"], name="relu1"),
         n("Gemm", ["r1", "w2", "b2"], ["h2"], transB=1, name="fc2"), n("Relu", ["h2"], ["r2"], name="relu2"),
         n("Gemm", ["r2", "w3", "b3"], ["y"], transB=1, name="fc3")],
        [fin("x", 16)], [fin("y", 5)],
        [("w1", rng.normal(size=(32, 16)) * 0.3), ("b1", rng.normal(size=32) * 0.1),
         ("w2", rng.normal(size=(16, 32)) * 0.3), ("b2", rng.normal(size=16) * 0.1),
         ("w3", rng.normal(size=(5, 16)) * 0.3), ("b3", rng.normal(size=5) * 0.1)])


def textcnn_model() -> onnx.ModelProto:
    from hwprune.frontend.torch_export import export_torch
    from hwprune.text.model import TextCNN

    torch.manual_seed(0)
    model = TextCNN(vocab=30, classes=2, dim=8, filters=4, widths=(2, 3, 4)).eval()
    return export_torch(model, torch.zeros((1, 10), dtype=torch.int64))


def residual_model(h: int = 6, w: int = 6) -> onnx.ModelProto:
    """x -> conv 3x3 (pad 1) -> add x: the add needs the conv's output pixel together with the
    input pixel, but the conv emits output row r only after input row r+1: the direct branch
    must hold two input rows."""
    rng = np.random.default_rng(2)
    n = helper.make_node
    return make_model([n("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"), n("Add", ["c", "x"], ["y"], name="add")],
                      [fin("x", 4, h, w)], [fin("y", 4, h, w)], [("w", rng.normal(size=(4, 4, 3, 3)) * 0.2), ("b", np.zeros(4))])


def branches_model() -> onnx.ModelProto:
    """Three conv branches on one input: a residual add whose two branches both compute
    (conv_a vs conv_b -> conv_c), concatenated with a third (conv_d): layers that the
    generated top can run side by side."""
    rng = np.random.default_rng(4)
    n = helper.make_node
    w = {f"w{k}": rng.normal(size=(4, 4, 3, 3) if k != "d" else (4, 4, 1, 1)) * 0.2 for k in "abcd"}
    b = {f"b{k}": rng.normal(size=4) * 0.1 for k in "abcd"}
    pad = dict(pads=[1, 1, 1, 1])
    return make_model(
        [n("Conv", ["x", "wa", "ba"], ["ca"], name="conv_a", **pad), n("Relu", ["ca"], ["ra"], name="relu_a"),
         n("Conv", ["x", "wb", "bb"], ["cb"], name="conv_b", **pad), n("Conv", ["cb", "wc", "bc"], ["cc"], name="conv_c", **pad),
         n("Add", ["ra", "cc"], ["res"], name="add"),
         n("Conv", ["x", "wd", "bd"], ["cd"], name="conv_d"),
         n("Concat", ["res", "cd"], ["cat"], axis=1, name="concat"),
         n("GlobalAveragePool", ["cat"], ["gap"], name="gap"), n("Flatten", ["gap"], ["f"], name="flat"),
         n("Gemm", ["f", "wf", "bf"], ["y"], transB=1, name="fc")],
        [fin("x", 4, 8, 8)], [fin("y", 3)],
        [*w.items(), *b.items(), ("wf", rng.normal(size=(3, 8)) * 0.3), ("bf", np.zeros(3))])


def _rf(rfs: dict[str, int]) -> PrecisionConfig:
    return PrecisionConfig(layer_name={k: LayerPrecision(reuse_factor=v) for k, v in rfs.items()})


def designs_spec() -> list[tuple[str, onnx.ModelProto, PrecisionConfig, Any]]:
    return [
        # tanh: 16-element words on 6 lanes x 3 cycles; softmax: 6 keys, RF 4 settles at 3 (2 lanes).
        ("kinds", kinds_model(), _rf(dict(conv=2, sconv=2, fc=3, sfc=2, tconv=3, tfc=2, tanh=3, softmax=4)), kinds_inputs),
        ("quantized", quantized_model(), PrecisionConfig().with_overrides(reuse_factor=2),
         lambda rng: [rng.normal(size=(SAMPLES, 5, 12)).astype(np.float32)]),
        ("mlp", mlp_model(), _rf(dict(fc1=2, fc2=4, fc3=1)), lambda rng: [rng.normal(size=(SAMPLES, 16)).astype(np.float32)]),
        ("textcnn", textcnn_model(), PrecisionConfig().with_overrides(reuse_factor=2),
         lambda rng: [rng.integers(0, 30, size=(SAMPLES, 10))]),
        ("residual", residual_model(), PrecisionConfig(), lambda rng: [rng.normal(size=(SAMPLES, 4, 6, 6)).astype(np.float32)]),
        ("branches", branches_model(), _rf(dict(conv_a=4, conv_b=3, conv_c=3, conv_d=3, fc=2)),
         lambda rng: [rng.normal(size=(SAMPLES, 4, 8, 8)).astype(np.float32)]),
    ]


@dataclass
class Design:
    name: str
    io: str
    prj: Path
    g: Any
    sim: Any
    counts: dict[str, LoopCounts]


@pytest.fixture(scope="module", params=["parallel", "stream"])
def designs(request, tmp_path_factory) -> dict[str, Design]:
    io = request.param
    rng = np.random.default_rng(11)
    out = {}
    for name, model, prec, inputs in designs_spec():
        prj = hwprune.export(model, tmp_path_factory.mktemp(f"{name}_{io}") / "prj", board=BOARD, io_type=io, precision=prec)
        out[name] = Design(name, io, prj, load_project_graph(prj), hwprune.simulate(prj, BOARD, batch=BATCH),
                           count_loops(prj, inputs(rng)))
    return out


def kind(layer: Any) -> str:
    """A layer's kernel: op type, with the sparse kernels and pool kinds told apart."""
    k = type(layer).__name__
    if getattr(layer, "sparsity", None) is not None:
        return "Sparse" + k
    if k == "Pool":
        return f"{layer.kind.capitalize()}Pool"
    if k == "Concat":
        return "Concat"
    return k


KINDS = ["Dense", "SparseDense", "Conv", "SparseConv", "MaxPool", "AvgPool", "GlobalPool", "Embedding", "Activation",
         "Softmax", "Add", "Concat", "ScaleShift", "Quantize", "Reorder", "Reshape", "Clone"]


@pytest.mark.slow  # the designs fixture builds and counts every layer kind (60-90 s)
def test_the_designs_cover_every_layer_kind(designs):
    io = next(iter(designs.values())).io
    seen = {kind(l) for d in designs.values() for l in d.g.layers if l.name in d.counts}
    expected = set(KINDS) - ({"Reshape", "Clone"} if io == "parallel" else set())  # free / stream only
    assert expected <= seen, expected - seen
    if io == "stream":
        assert designs["kinds"].g.layer("tanh").reuse_factor == designs["kinds"].g.layer("softmax").reuse_factor == 3
        cats = [l for l in designs["kinds"].g.layers if type(l).__name__ == "Concat"]
        words = [(designs["kinds"].g.tensor(l.output).word, sum(designs["kinds"].g.tensor(i).word for i in l.inputs)) for l in cats]
        assert any(a == b for a, b in words) and any(a != b for a, b in words)  # both concat modes


@pytest.mark.slow  # the designs fixture builds and counts every layer kind (60-90 s)
@pytest.mark.parametrize("k", KINDS)
def test_busy_cycles_per_sample_match_the_counted_cycles(designs, k):
    checked = 0
    for d in designs.values():
        by_name = {l.name: l for l in d.sim.layers}
        for layer in d.g.layers:
            if kind(layer) != k or layer.name not in d.counts:
                continue
            c = d.counts[layer.name]
            assert c.calls == SAMPLES, layer.name
            counted = c.cycles / c.calls
            busy = by_name[layer.name].busy_per_sample
            assert abs(busy - counted) <= 0.1 * counted, (d.name, layer.name, busy, counted)
            if d.io == "stream":
                assert busy == counted, (d.name, layer.name)  # the same loop trips
            checked += 1
    io = next(iter(designs.values())).io
    assert checked or (io == "parallel" and k in ("Reshape", "Clone"))


@pytest.mark.slow  # the designs fixture builds and counts every layer kind (60-90 s)
def test_stream_traffic_equals_the_counted_words(designs):
    for d in designs.values():
        by_name = {l.name: l for l in d.sim.layers}
        assert set(d.counts) == set(by_name), d.name  # a process per kernel, no more
        for name, c in d.counts.items():
            s = by_name[name]
            if d.io == "parallel":
                assert (c.reads, c.writes, s.reads, s.writes) == (0, 0, 0, 0), name
            else:
                assert (s.reads / BATCH, s.writes / BATCH) == (c.reads / SAMPLES, c.writes / SAMPLES), (d.name, name)


@pytest.mark.slow  # the designs fixture builds and counts every layer kind (60-90 s)
def test_whole_design_interval_is_the_slowest_counted_layer(designs):
    for d in designs.values():
        slowest = max(c.cycles / c.calls for c in d.counts.values())
        assert not d.sim.deadlock, (d.name, d.sim.deadlock)
        assert abs(d.sim.interval_cycles - slowest) <= 0.1 * slowest, (d.name, d.sim.interval_cycles, slowest)


def _counted_longest_path(d: Design, extra: float = 0.0, scale: float = 1.0) -> float:
    """The longest path through the calls of the generated top (its C++, not the IR), each
    call weighted by its counted cycles per sample (scaled, plus `extra`)."""
    layer_of = {c: n[2:] for n, c in d.g.c_names().items() if n.startswith("L:")}
    per = {k: c.cycles / c.calls for k, c in d.counts.items()}
    return longest_path(top_calls(d.prj, layer_of), {k: scale * v + extra for k, v in per.items()})


@pytest.mark.slow  # the designs fixture builds and counts every layer kind (60-90 s)
def test_the_composition_rule_is_the_generated_tops_longest_path(designs):
    """The one composition rule (sim/compose.py) against an independent count: the calls of
    the generated top function read from its C++, weighted by the host build's loop counters.

    * Fed the counted cycles, the rule gives exactly the longest path through those calls (its
      dependency graph is the top's, and it composes by the longest path, not the sum).
    * io_parallel (a pipelined top: independent layers run side by side): the estimate's,
      the simulator's and the rule's latency are one figure, at least that counted longest
      path and at most its length with 10% and 16 cycles of pipeline depth per layer — a bound
      the sum of layer latencies (the rule before) breaks on the three-branch design.
    * io_stream (DATAFLOW): the simulated latency lies between the slowest layer's own
      latency and the rule's longest path (processes overlap; the simulation is the figure
      to use)."""
    for d in designs.values():
        board = load_board(BOARD)
        est = estimate(d.g, board)
        per = {k: c.cycles / c.calls for k, c in d.counts.items()}
        dag = LatencyDag.of(d.g)
        counted = _counted_longest_path(d)
        assert design_timing(dag, per, per.values()).latency == pytest.approx(counted), d.name
        costs = {l.name: l.cost for l in est.layers}
        rule = compose(d.g, costs)
        assert (est.latency_cycles, est.ii_cycles) == (rule.latency, rule.interval), d.name
        assert d.sim.estimate_latency_cycles == rule.latency
        if d.io == "parallel":
            assert (d.sim.latency_cycles, d.sim.interval_cycles) == (rule.latency, rule.interval), d.name
            upper = _counted_longest_path(d, extra=16, scale=1.1)
            assert counted <= rule.latency <= upper, (d.name, counted, rule.latency, upper)
            if d.name == "branches":  # where branches carry the work, summing the layers breaks the bound
                assert sum(c.latency for c in costs.values()) > upper, (sum(c.latency for c in costs.values()), upper)
        else:
            own = max(c.latency for c in costs.values())
            assert own <= d.sim.latency_cycles <= rule.latency, (d.name, own, d.sim.latency_cycles, rule.latency)


@pytest.mark.slow  # the designs fixture builds and counts every layer kind (60-90 s)
def test_recommended_depths_lose_nothing_and_reach_the_project(designs):
    for d in designs.values():
        if d.io == "parallel":
            assert d.sim.fifo_depths == {}
            continue
        sim = d.sim
        assert sim.fifos_sufficient, d.name  # as fast as with unbounded FIFOs
        assert set(sim.fifo_depths) == set(stream_fifos(d.g))
        assert all(sim.fifo_high_water[t] <= sim.fifo_depths[t] for t in sim.fifo_depths)
        top = (d.prj / "firmware" / f"{ProjectDir(d.prj).top}.cpp").read_text()
        pragmas = dict(re.findall(r"#pragma HLS STREAM variable = (\w+) depth = (\d+)", top))
        names = d.g.c_names()
        assert {names[f"t:{t}"]: str(v) for t, v in sim.fifo_depths.items()} == pragmas, d.name
        # The estimate costs the same FIFOs at the same depths.
        assert estimate(d.g, load_board(BOARD)).fifo == sim.fifo_depths


@pytest.mark.slow  # the designs fixture builds and counts every layer kind (60-90 s)
def test_unequal_merge_branches_deadlock_with_two_deep_fifos(designs):
    d = designs["residual"]
    if d.io == "parallel":
        return
    g, board = d.g, load_board(BOARD)
    conv = g.layer("conv")
    clone = next(l for l in g.layers if type(l).__name__ == "Clone")
    direct = next(t for t in clone.outputs if t != conv.inputs[0])  # the branch that skips the conv
    # Hand count: the conv emits its first output row after reading input rows 0 and 1 (3x3,
    # pad 1), and the add needs that output with the first input pixel: the clone has written
    # two rows (2 * 6 words) to the direct branch by then.
    lag = (0 * conv.win.sh - conv.win.pt + conv.win.dh * (conv.win.kh - 1) + 1) * conv.win.in_w
    assert lag == 12

    two = simulate(g, board, batch=BATCH, fifo_depths=2)
    assert two.deadlock and two.interval_cycles is None and two.latency_cycles is None
    assert any(m.startswith(clone.name) and f"writing {direct} (full, depth 2)" in m for m in two.deadlock), two.deadlock
    assert any(m.startswith("add") and "waiting for a word of c" in m for m in two.deadlock), two.deadlock

    assert simulate(g, board, batch=BATCH, fifo_depths={direct: lag - 1}).deadlock
    tight = simulate(g, board, batch=BATCH, fifo_depths={direct: lag})
    assert not tight.deadlock
    # Just deadlock-free loses throughput: the clone stalls on the direct branch and starves the conv.
    best = d.sim
    assert tight.interval_cycles > best.interval_cycles
    by = {l.name: l for l in tight.layers}
    assert by[clone.name].blocked_cycles > {l.name: l for l in best.layers}[clone.name].blocked_cycles
    assert by["conv"].starved_cycles > {l.name: l for l in best.layers}["conv"].starved_cycles

    # The recommendation: the lag plus the words the conv's pipeline holds (its output leaves
    # `delay` cycles after its pixel starts, RF cycles per pixel).
    cost = conv.cost(load_project_context(g, board))
    delay = cost.latency - cost.ii
    rec = best.fifo_depths[direct]
    assert lag < rec <= lag + math.ceil((delay + 2) / conv.reuse_factor), (rec, lag, delay)
    assert best.fifo_depths[conv.inputs[0]] == 2 and best.fifo_depths["c"] == 2
    below = simulate(g, board, batch=BATCH, fifo_depths={direct: rec - 1})
    assert below.interval_cycles > best.interval_cycles or below.latency_cycles > best.latency_cycles


def load_project_context(g: Any, board: Any) -> Any:
    from hwprune.sim.dataflow import cost_context

    return cost_context(g, board)


# ---------------------------------------------------------------- no C++ builds below

def test_single_word_chain_latency_is_the_sum_and_interval_the_slowest(tmp_path):
    """An MLP streams one word per layer: nothing overlaps within a sample, so the first
    sample's latency is exactly the sum of the layers' latencies; samples then follow every
    max(RF) cycles."""
    g = build_graph(mlp_model(), _rf(dict(fc1=2, fc2=4, fc3=1)), "stream")
    est = estimate(g, load_board(BOARD))
    sim = simulate(g, BOARD, batch=20)
    assert sim.latency_cycles == est.latency_cycles == sum(l.cost.latency for l in est.layers)
    assert sim.interval_cycles == 4
    assert sim.fifo_depths == {t: 2 for t in stream_fifos(g)}


def test_embedding_into_conv1d_overlaps_by_hand_count():
    """Embedding (one word of 10 ids -> a row per cycle, leaving 2 cycles after its trip) into a
    Conv1d k=3 (reads the whole row of 10 words, then 8 pixels at RF cycles each): row j is
    written at cycle j + 2 and read at j + 3, so the conv's last input arrives at cycle 12."""
    rng = np.random.default_rng(0)
    n = helper.make_node
    m = make_model([n("Gather", ["table", "ids"], ["e"], axis=0, name="emb"),
                    n("Transpose", ["e"], ["et"], perm=[0, 2, 1], name="tr"),
                    n("Conv", ["et", "w", "b"], ["y"], name="conv")],
                   [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 10])], [fin("y", 4, 8)],
                   [("table", rng.normal(size=(20, 6))), ("w", rng.normal(size=(4, 6, 3)) * 0.3), ("b", np.zeros(4))])
    for rf in (1, 3):
        g = build_graph(m, _rf(dict(conv=rf)), "stream")
        board = load_board(BOARD)
        cost = g.layer("conv").cost(load_project_context(g, board))
        delay = cost.latency - cost.ii  # the conv's pipeline after a pixel's RF cycles
        sim = simulate(g, board, batch=4)
        # conv reads rows at cycles 3..12, emits pixel p in cycles 13 + p*RF .., the last word
        # leaves RF - 1 + delay cycles after the last pixel starts.
        last = 13 + 7 * rf + rf - 1 + delay
        assert sim.latency_cycles == last + 1, (rf, sim.latency_cycles, last + 1)
        assert sim.interval_cycles == 10 + 8 * rf  # the conv's reads and emits alternate
        by = {l.name: l for l in sim.layers}
        assert by["conv"].starved_cycles == 3  # only for sample 0's first row: then the embedding is ahead
        assert by["conv"].blocked_cycles == 0


def test_time_shared_softmax_steps_by_hand_count():
    """Softmax over 4 rows of 7 keys at RF 3 (3 lanes), io_stream: rows + 2 = 6 steps of 3
    cycles. Row t is read when step t starts; row t - 2 leaves in the step's last cycle, after
    the pipeline depth (2 ceil(log2 7) + 6 = 12): the last row at cycle 5 * 3 + 2 + 12 = 29, so
    a sample takes 30 cycles, the estimate's latency, and one follows every 18 cycles. With a
    GELU at RF 3 in front (a word every 3 cycles, 2 cycles deep), row t arrives at cycle 3t + 5:
    the softmax waits 5 cycles for row 0 and then never again."""
    m = make_model([helper.make_node("Softmax", ["x"], ["y"], axis=-1, name="sm")], [fin("x", 4, 7)], [fin("y", 4, 7)])
    g = build_graph(m, PrecisionConfig().with_overrides(reuse_factor=3), "stream")
    est = estimate(g, load_board(BOARD))
    sim = simulate(g, BOARD, batch=4)
    assert g.layer("sm").reuse_factor == 3 and est.layers[0].cost.ii == 18
    assert sim.latency_cycles == est.latency_cycles == 30 and sim.interval_cycles == 18
    chain = make_model([helper.make_node("Gelu", ["x"], ["h"], name="gelu"), helper.make_node("Softmax", ["h"], ["y"], axis=-1, name="sm")],
                       [fin("x", 4, 7)], [fin("y", 4, 7)], opset=20)
    g2 = build_graph(chain, PrecisionConfig().with_overrides(reuse_factor=3), "stream")
    sim2 = simulate(g2, BOARD, batch=4)
    by = {l.name: l for l in sim2.layers}
    assert g2.layer("gelu").reuse_factor == 3 and by["gelu"].busy_per_sample == 12 and by["sm"].busy_per_sample == 18
    assert sim2.latency_cycles == 5 + 30


def test_three_branch_text_cnn_concat():
    g = build_graph(textcnn_model(), PrecisionConfig().with_overrides(reuse_factor=2), "stream")
    sim = simulate(g, BOARD, batch=16)
    convs = [l for l in g.layers if type(l).__name__ == "Conv"]
    assert len(convs) == 3 and sum(type(l).__name__ == "Concat" for l in g.layers) == 2
    slowest = max(l.busy_per_sample for l in sim.layers)
    assert sim.interval_cycles == slowest == max(c.win.in_w + c.win.out_w * 2 for c in convs)
    assert sim.fifos_sufficient and not sim.deadlock


def test_simulation_is_deterministic():
    g = build_graph(residual_model(), PrecisionConfig(), "stream")
    a = simulate(g, BOARD, batch=7).as_dict()
    b = simulate(g, BOARD, batch=7).as_dict()
    assert a == b
    g2 = build_graph(residual_model(), PrecisionConfig(), "stream")
    assert simulate(g2, BOARD, batch=7).as_dict() == a


def test_bad_arguments_are_typed_errors():
    g = build_graph(residual_model(), PrecisionConfig(), "stream")
    with pytest.raises(HwpruneInputError, match="positive whole number"):
        simulate(g, BOARD, batch=0)
    with pytest.raises(ConfigError, match="no FIFO named 'nope'"):
        simulate(g, BOARD, fifo_depths={"nope": 4})
    with pytest.raises(ConfigError, match="at least 1"):
        simulate(g, BOARD, fifo_depths=0)
    with pytest.raises(ConfigError, match="io_stream"):
        simulate(build_graph(residual_model(), PrecisionConfig(), "parallel"), BOARD, fifo_depths=4)


def test_cli_simulate(capsys, tmp_path):
    p = tmp_path / "res.onnx"
    onnx.save(residual_model(), p)
    assert main(["simulate", str(p), "--board", BOARD, "--io", "stream", "--batch", "8", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    for key in ("latency_cycles", "latency_us", "interval_cycles", "throughput_per_s", "resources", "fifo_depths", "layers"):
        assert key in d
    assert d["batch"] == 8 and max(d["fifo_depths"].values()) > 2
    for l in d["layers"]:
        assert {"busy_cycles", "starved_cycles", "blocked_cycles", "fifo_high_water"} <= set(l)
    assert main(["simulate", str(p), "--board", BOARD, "--io", "stream"]) == 0
    out = capsys.readouterr().out
    assert "interval" in out and "FIFOs; deeper than 2" in out
    for bad in ("0", "-3", "2.5", "many"):
        code = main(["simulate", str(p), "--board", BOARD, "--batch", bad])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and "--batch" in err, err
