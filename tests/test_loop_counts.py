"""The analytical estimate against what the generated kernels really execute.

`count_loops` runs a counting build of the C simulation (-DHWP_COUNT): every kernel adds its
II to a per-layer counter on each trip of the loop that sets its schedule, and counts the stream
words it reads and writes. Those counts come from the C++ loops, not from the cost model, so
they are the independent reference: each layer's estimated II must be within 10% of its counted
cycles per sample, and in io_stream it must move exactly its tensors' words.

One model holds every layer kind (dense and sparse Dense/Conv with reuse factors 1 and > 1 and
every balanced pattern, pools, activations and softmax (time-shared in io_stream too), merges,
layout moves, embedding); QONNX
quantizers sit in a second, small one (qonnx's clean-up renames every node and weight of a
model with a Quant node, which would detach the pruned weights from their recorded patterns).
The whole file costs four g++ builds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import hwprune
from hwprune.backend.csim import LoopCounts, count_loops
from hwprune.precision import LayerPrecision, PrecisionConfig
from hwprune.project import load_project_graph
from hwprune.prune.onnx_prune import META_PREFIX, prune_onnx
from hwprune.prune.patterns import Pattern
from top_schedule import longest_path, top_calls

RNG = np.random.default_rng(7)
QDOMAIN = "qonnx.custom_op.general"
BOARD = "pynq-z2"
SAMPLES = 3

# Balanced patterns and their sparsity; each runs a Dense and a Conv at reuse factor 1 and > 1.
PATTERNS = [("block:4x4", 0.75), ("block:4x4:col", 0.75), ("bbs:8", 0.75), ("nm:2:4", 0.5)]
SPARSE_RF = {"dense": 3, "conv": 2}
# Reuse factors of the other layers with weights (> 1 where the kind has a second instance).
RF = {"conv1": 1, "conv2": 2, "fc": 3, "seq_fc1": 1, "seq_fc2": 4, "tconv": 3, "tfc": 2}
# Time-shared lanes of the weightless engines, io_stream only (io_parallel settles them at 1):
# 16-element tanh words on ceil(16 / 3) = 6 lanes, 8-key softmax rows on 3; the sigmoid and the
# other softmax stay at 1 (and the quantized model's sigmoid takes its model-level RF 2).
ENGINE_RF = {"tanh": 3, "softmax_rows": 3}


def _sparse_names() -> list[tuple[str, str, float, int]]:
    """(layer, pattern, sparsity, reuse factor) of the sparse Dense ("sd*") and Conv ("sc*") chains."""
    out = []
    for kind, prefix in (("dense", "sd"), ("conv", "sc")):
        for k, (pat, s) in enumerate(PATTERNS):
            for rf in (1, SPARSE_RF[kind]):
                out.append((f"{prefix}{k}_rf{rf}", pat, s, rf))
    return out


def zoo() -> onnx.ModelProto:
    """Four inputs, six outputs; layer names are the IR names the counts are keyed by."""
    n = helper.make_node
    init: dict[str, np.ndarray] = {}

    def w(name: str, shape: tuple[int, ...], scale: float = 0.2) -> str:
        init[name] = (RNG.normal(size=shape) * scale).astype(np.float32)
        return name

    nodes = [
        # Image branch: x [4, 6, 6].
        n("BatchNormalization", ["x", w("g0", (4,)), w("b0", (4,)), w("m0", (4,)), "v0"], ["bn"], name="bn0"),
        n("Conv", ["bn", w("w1", (8, 4, 3, 3)), w("cb1", (8,))], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        n("Relu", ["c1"], ["r1"], name="relu"),
        n("MaxPool", ["r1"], ["mp"], kernel_shape=[2, 2], strides=[2, 2], name="maxpool"),
        n("Conv", ["mp", w("w2", (8, 8, 3, 3)), w("cb2", (8,))], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
        n("LeakyRelu", ["c2"], ["l2"], alpha=0.1, name="leaky"),
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
        # Token branch: ids [12].
        n("Gather", [w("table", (20, 16), 0.5), "ids"], ["e"], axis=0, name="embedding"),
        n("MatMul", ["e", w("ws1", (16, 16))], ["h1"], name="seq_fc1"),  # 12 words
        n("Tanh", ["h1"], ["t1"], name="tanh"),
        n("MatMul", ["t1", w("ws2", (16, 8))], ["h2"], name="seq_fc2"),
        n("Softmax", ["h2"], ["p"], axis=-1, name="softmax_rows"),  # 12 rows
        n("Transpose", ["p"], ["pt"], perm=[0, 2, 1], name="to_channels"),
        n("Conv", ["pt", w("wt", (8, 8, 3)), w("bt", (8,))], ["ct"], name="tconv"),
        n("Elu", ["ct"], ["el"], name="elu"),
        n("ReduceMax", ["el"], ["mx"], axes=[2], keepdims=0, name="global_max"),
        n("Gemm", ["mx", w("wt2", (4, 8)), w("bt2", (4,))], ["y_txt"], transB=1, name="tfc"),
    ]
    init.update(v0=RNG.uniform(0.5, 1.5, 4).astype(np.float32))
    # Sparse chains: Conv1d 8->8 (k=3: 24 taps) on s [8, 12]; MatMul 16->16 on q [6, 16] (6 words).
    prev_c, prev_d = "s", "q"
    for name, _, _, _ in _sparse_names():
        if name.startswith("sc"):
            nodes.append(n("Conv", [prev_c, w(f"{name}_w", (8, 8, 3)), w(f"{name}_b", (8,))], [name], pads=[1, 1], name=name))
            prev_c = name
        else:
            nodes.append(n("MatMul", [prev_d, w(f"{name}_w", (16, 16))], [name], name=name))
            prev_d = name
    g = helper.make_graph(
        nodes, "zoo",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 6, 6]),
         helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 12]),
         helper.make_tensor_value_info("s", TensorProto.FLOAT, ["N", 8, 12]),
         helper.make_tensor_value_info("q", TensorProto.FLOAT, ["N", 6, 16])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["N", *shape]) for o, shape in
         (("y_img", (6,)), ("y_flat", (72,)), ("y_rows", (8, 6, 3)), ("y_txt", (4,)), (prev_c, (8, 12)), (prev_d, (6, 16)))],
        [numpy_helper.from_array(v, k) for k, v in init.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return _prune_chains(m)


def quantized() -> onnx.ModelProto:
    """QONNX quantizers on activations (Quantize layers) around a Dense over 5 words; beside it
    a quantizer with a scale that is not a power of two after a sigmoid (a Rescale: the
    requantization nothing absorbs) and a FINN MultiThreshold per channel (a Threshold)."""
    def quant(inp: str, out: str, scale: str = "q_scale") -> onnx.NodeProto:
        return helper.make_node("Quant", [inp, scale, "q_zero", "q_bits"], [out], domain=QDOMAIN, signed=1,
                                narrow=0, rounding_mode="ROUND")

    init = dict(q_scale=np.array(2.0**-4, np.float32), q_zero=np.array(0.0, np.float32),
                q_bits=np.array(8.0, np.float32), wq=(RNG.normal(size=(12, 6)) * 0.3).astype(np.float32),
                s_sig=np.array(0.0071, np.float32),
                thr=np.sort(RNG.normal(size=(12, 3)), axis=1).astype(np.float32))
    g = helper.make_graph(
        [quant("xq", "a"), helper.make_node("MatMul", ["a", "wq"], ["h"]), quant("h", "yq"),
         helper.make_node("Sigmoid", ["a"], ["sg"]), quant("sg", "zq", "s_sig"),
         helper.make_node("MultiThreshold", ["a", "thr"], ["tq"], domain=QDOMAIN, out_dtype="UINT2",
                          data_layout="NWC")],
        "quantized",
        [helper.make_tensor_value_info("xq", TensorProto.FLOAT, ["N", 5, 12])],
        [helper.make_tensor_value_info("yq", TensorProto.FLOAT, ["N", 5, 6]),
         helper.make_tensor_value_info("zq", TensorProto.FLOAT, ["N", 5, 12]),
         helper.make_tensor_value_info("tq", TensorProto.FLOAT, ["N", 5, 12])],
        [numpy_helper.from_array(v, k) for k, v in init.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(QDOMAIN, 1)])
    m.ir_version = 8
    return m


def _prune_chains(model: onnx.ModelProto) -> onnx.ModelProto:
    """Each sparse layer gets its own pattern: prune the whole model once per pattern and keep
    only that pattern's weights (and its metadata record) from the result."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {i.name: i for i in out.graph.initializer}
    for pat, s in PATTERNS:
        pruned, _ = prune_onnx(model, Pattern.parse(pat), s)
        src = {i.name: i for i in pruned.graph.initializer}
        for name, p, _, _ in _sparse_names():
            if p == pat:
                inits[f"{name}_w"].CopyFrom(src[f"{name}_w"])
                meta = out.metadata_props.add()
                meta.key, meta.value = META_PREFIX + f"{name}_w", pat
    return out


def precision() -> PrecisionConfig:
    rfs = {**RF, **ENGINE_RF, **{name: rf for name, _, _, rf in _sparse_names()}}
    return PrecisionConfig(layer_name={k: LayerPrecision(reuse_factor=v) for k, v in rfs.items()})


def zoo_inputs() -> list[np.ndarray]:
    return [RNG.normal(size=(SAMPLES, 4, 6, 6)).astype(np.float32), RNG.integers(0, 20, size=(SAMPLES, 12)),
            RNG.normal(size=(SAMPLES, 8, 12)).astype(np.float32), RNG.normal(size=(SAMPLES, 6, 16)).astype(np.float32)]


@dataclass
class Design:
    io: str
    prj: Path
    g: Any
    est: Any
    counts: dict[str, LoopCounts]


@pytest.fixture(scope="module", params=["parallel", "stream"])
def designs(request, tmp_path_factory) -> list[Design]:
    """The zoo (reuse factors per layer) and the quantized model, exported and counted."""
    io = request.param
    out = []
    for name, model, prec, xs in (("zoo", zoo(), precision(), zoo_inputs()),
                                  ("quantized", quantized(), PrecisionConfig().with_overrides(reuse_factor=2),
                                   [RNG.normal(size=(SAMPLES, 5, 12)).astype(np.float32)])):
        prj = hwprune.export(model, tmp_path_factory.mktemp(f"{name}_{io}") / "prj", board=BOARD, io_type=io, precision=prec)
        out.append(Design(io, prj, load_project_graph(prj), hwprune.estimate(prj, BOARD), count_loops(prj, xs)))
    return out


# Every kernel the model instantiates, by the IR op type of its layers (checked for coverage).
KINDS = ["Dense", "Conv", "Pool", "GlobalPool", "Activation", "Softmax", "Add", "Concat", "ScaleShift", "Quantize",
         "Rescale", "Threshold", "Embedding", "Reorder", "Reshape", "Clone"]


@pytest.mark.slow  # the designs fixture builds counting binaries of every kernel (~20 s)
def test_the_models_cover_every_kernel_and_pattern(designs):
    zoo_d = designs[0]
    io, g = zoo_d.io, zoo_d.g
    kinds = {type(l).__name__ for d in designs for l in d.g.layers if l.name in d.counts}
    expected = set(KINDS) - ({"Reshape", "Clone"} if io == "parallel" else set())  # free / stream-only
    assert expected <= kinds, kinds
    for name, pat, _, rf in _sparse_names():
        layer = g.layer(name)
        assert layer.sparsity is not None and layer.sparsity.pattern == pat and layer.reuse_factor == rf, name
    for name, rf in RF.items():
        assert g.layer(name).reuse_factor == rf and g.layer(name).sparsity is None, name
    for name, rf in ENGINE_RF.items():
        assert g.layer(name).reuse_factor == (rf if io == "stream" else 1), name
    assert {l.reuse_factor for l in designs[1].g.layers if l.op_type == "Activation"} == {2 if io == "stream" else 1}
    params = (zoo_d.prj / "firmware" / "parameters.h").read_text()
    assert "hwprune/dense_sparse.h" in params and "hwprune/conv_sparse.h" in params


@pytest.mark.slow  # the designs fixture builds counting binaries of every kernel (~20 s)
@pytest.mark.parametrize("kind", KINDS)
def test_layer_ii_matches_the_counted_cycles(designs, kind):
    io = designs[0].io
    layers = [(d, l) for d in designs for l in d.est.layers if l.op == kind and l.name in d.counts]
    if not layers:
        assert io == "parallel" and kind in ("Reshape", "Clone")  # aliases / no fan-out copies
        return
    for d, l in layers:
        c = d.counts[l.name]
        assert c.calls == SAMPLES, l.name
        per_sample = c.cycles / c.calls
        assert per_sample > 0, l.name
        assert abs(l.cost.ii - per_sample) <= 0.1 * per_sample, (l.name, l.cost.ii, per_sample, l.cost.note)


@pytest.mark.slow  # the designs fixture builds counting binaries of every kernel (~20 s)
def test_stream_kernels_move_exactly_their_tensor_words(designs):
    for d in designs:
        g = d.g
        for l in g.layers:
            c = d.counts.get(l.name)
            if c is None:  # a reshape that aliases its input: no kernel
                assert d.io == "parallel" or g.tensor(l.inputs[0]).word == g.tensor(l.output).word, l.name
                continue
            if d.io == "parallel":
                assert (c.reads, c.writes) == (0, 0), l.name  # arrays: no stream traffic
                continue
            words_in = sum(g.tensor(t).words for t in l.inputs)
            words_out = sum(g.tensor(t).words for t in l.outputs)
            assert (c.reads, c.writes) == (SAMPLES * words_in, SAMPLES * words_out), l.name


@pytest.mark.slow  # the designs fixture builds counting binaries of every kernel (~20 s)
def test_whole_design_against_the_counts(designs):
    """II: the slowest layer (parallel: the top's pipeline II; stream: the slowest process).
    Latency: the longest path of layer latencies (sim/compose.py), so at least the counted work
    along the longest path through the generated top's calls (tests/top_schedule.py) and at
    most that path with each layer's pipeline depth (adder trees, registers: small next to the
    work) — four independent input branches here, so the sum over layers would exceed it."""
    for d in designs:
        per_sample = {k: c.cycles / c.calls for k, c in d.counts.items()}
        assert set(per_sample) <= {l.name for l in d.g.layers}
        slowest = max(per_sample.values())
        assert abs(d.est.ii_cycles - slowest) <= 0.1 * slowest, (d.est.ii_cycles, slowest)
        layer_of = {c: n[2:] for n, c in d.g.c_names().items() if n.startswith("L:")}
        calls = top_calls(d.prj, layer_of)
        work = longest_path(calls, per_sample)
        upper = longest_path(calls, {k: 1.1 * v + 16 for k, v in per_sample.items()})
        assert work <= d.est.latency_cycles <= upper, (d.est.latency_cycles, work, upper)
        if d is designs[0]:  # the zoo: the sum of layer latencies (the rule before) breaks the bound
            assert sum(l.cost.latency for l in d.est.layers) > upper
