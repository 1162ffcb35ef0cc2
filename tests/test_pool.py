"""Pool op room: MaxPool / AveragePool 1-D and 2-D (strides, pads, dilation for max, ceil_mode,
count_include_pad, auto_pad), GlobalMaxPool / GlobalAveragePool, and ReduceMax / ReduceMean
over all spatial axes (attribute axes before opset 18, input axes from 18; keepdims 0/1).

For every case: (a) the IR's float semantics equal onnxruntime, (b) the C simulation equals the
numpy fixed-point reference bit for bit in io_parallel and io_stream, (c) |fixed - float|
stays within `error_bounds`. Cases are side-by-side branches of one model per opset, so each
(io type, reuse factor) costs one g++ build.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import hwprune
from hwprune.backend.csim import raw_outputs
from hwprune.errors import UnsupportedOpError
from hwprune.fixed import FixedType
from hwprune.ops.pool import RECIP_T, GlobalPool, Pool, reciprocals
from hwprune.pipeline import compile_graph, error_bounds, run_fixed, run_float, run_onnx, saturation_report, trace_fixed
from hwprune.precision import LayerPrecision, PrecisionConfig
from hwprune.project import load_project_graph


@dataclass(frozen=True)
class Case:
    id: str
    op: str
    shape: tuple[int, ...]  # per-sample input: (C, L) or (C, H, W)
    attrs: dict[str, Any] = field(default_factory=dict)
    axes: tuple[int, ...] | None = None  # Reduce*: axes input (opset >= 18)


WINDOW_CASES = [
    Case("max1d_pad", "MaxPool", (3, 10), dict(kernel_shape=[3], strides=[2], pads=[1, 1])),
    Case("max1d_dilation_ceil", "MaxPool", (2, 12), dict(kernel_shape=[3], strides=[2], dilations=[2], pads=[1, 0], ceil_mode=1)),
    Case("max2d_odd_ceil", "MaxPool", (3, 7, 5), dict(kernel_shape=[3, 2], strides=[2, 1], pads=[1, 0, 1, 1], ceil_mode=1)),
    Case("max2d_dilation", "MaxPool", (2, 9, 8), dict(kernel_shape=[2, 3], strides=[1, 2], dilations=[2, 2], pads=[1, 1, 0, 2])),
    Case("max2d_same_lower", "MaxPool", (2, 6, 5), dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_LOWER")),
    Case("avg1d_pad_exclude", "AveragePool", (3, 11), dict(kernel_shape=[3], strides=[2], pads=[1, 1])),
    Case("avg1d_pad_include", "AveragePool", (3, 11), dict(kernel_shape=[3], strides=[2], pads=[1, 1], count_include_pad=1)),
    Case("avg2d_ceil_include", "AveragePool", (2, 7, 6),
         dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=1)),
    Case("avg2d_ceil_exclude", "AveragePool", (2, 7, 8), dict(kernel_shape=[2, 3], strides=[2, 2], ceil_mode=1)),
    Case("avg2d_same_upper", "AveragePool", (3, 5, 7), dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER")),
    Case("avg2d_valid_k5x3", "AveragePool", (2, 9, 7), dict(kernel_shape=[5, 3], strides=[2, 3], auto_pad="VALID")),
    Case("avg2d_pow2_window", "AveragePool", (4, 8, 8), dict(kernel_shape=[2, 2], strides=[2, 2])),
]
GLOBAL_CASES = [
    Case("global_max2d", "GlobalMaxPool", (3, 5, 7)),
    Case("global_avg2d", "GlobalAveragePool", (3, 5, 7)),  # 35 positions: inexact reciprocal
    Case("global_avg1d", "GlobalAveragePool", (4, 16)),
    Case("global_max1d", "GlobalMaxPool", (2, 9)),
]
REDUCE13_CASES = [  # opset 13: axes attribute
    Case("reducemax_time_keep0", "ReduceMax", (5, 12), dict(axes=[2], keepdims=0)),
    Case("reducemean_hw_neg_keep1", "ReduceMean", (3, 4, 6), dict(axes=[-1, -2], keepdims=1)),
]
REDUCE18_CASES = [  # opset 18: axes input
    Case("reducemean_time_input_keep0", "ReduceMean", (4, 10), dict(keepdims=0), axes=(-1,)),
    Case("reducemax_hw_input_keep1", "ReduceMax", (2, 3, 5), dict(keepdims=1), axes=(2, 3)),
]
CASES_13 = WINDOW_CASES + GLOBAL_CASES + REDUCE13_CASES
ALL = [(c, 13) for c in CASES_13] + [(c, 18) for c in REDUCE18_CASES]


def _with_output_shapes(m: onnx.ModelProto, xs: list[np.ndarray]) -> onnx.ModelProto:
    """Give the graph outputs the shapes onnxruntime computes (hwprune needs full shapes)."""
    for vo, y in zip(m.graph.output, run_onnx(m, xs)):
        vo.CopyFrom(helper.make_tensor_value_info(vo.name, TensorProto.FLOAT, ["N", *y.shape[1:]]))
    onnx.checker.check_model(m)
    return m


def pool_model(cases: list[Case], opset: int = 13, seed: int = 0, n: int = 4) -> tuple[onnx.ModelProto, list[np.ndarray]]:
    """One node per case, each on its own input x{i} -> output y{i} (node name p{i})."""
    rng = np.random.default_rng(seed)
    nodes, ins, outs, inits, xs = [], [], [], [], []
    for i, c in enumerate(cases):
        names = [f"x{i}"]
        if c.axes is not None:
            inits.append(numpy_helper.from_array(np.asarray(c.axes, np.int64), f"axes{i}"))
            names.append(f"axes{i}")
        nodes.append(helper.make_node(c.op, names, [f"y{i}"], name=f"p{i}", **c.attrs))
        ins.append(helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, ["N", *c.shape]))
        outs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, None))
        xs.append(rng.normal(size=(n, *c.shape)).astype(np.float32))
    m = helper.make_model(helper.make_graph(nodes, "pools", ins, outs, inits), opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return _with_output_shapes(m, xs), xs


def prec(result: str, rf: int = 1, inputs: str | None = None, by_name: dict[str, str] | None = None) -> PrecisionConfig:
    return PrecisionConfig(
        LayerPrecision(result=FixedType.parse(result), reuse_factor=rf),
        {"Input": LayerPrecision(result=FixedType.parse(inputs))} if inputs else {},
        {k: LayerPrecision(result=FixedType.parse(v)) for k, v in (by_name or {}).items()},
    )


# ---------------------------------------------------------------------- (a) float == onnxruntime

@pytest.mark.parametrize("case,opset", ALL, ids=[c.id for c, _ in ALL])
def test_float_ir_matches_onnxruntime(case, opset):
    m, xs = pool_model([case], opset)
    ref = run_onnx(m, xs)[0]
    for io in ("parallel", "stream"):
        g = compile_graph(m, io_type=io)
        kinds = [type(l) for l in g.layers]
        assert kinds == ([Pool] if case in WINDOW_CASES else [GlobalPool])
        got = run_float(g, xs)[0]
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, atol=1e-5)


# ---------------------------------------------------------------------- (b) csim == fixed, bit for bit

# Inputs finer than the outputs (max must round), a narrow result type with saturation, and
# some layers in AP_TRN/AP_WRAP: the C++ must reproduce every conversion exactly.
BIT_EXACT_PREC = dict(result="ap_fixed<9,3,AP_RND,AP_SAT>", inputs="ap_fixed<14,4,AP_RND_CONV,AP_SAT>",
                      by_name={f"p{i}": "ap_fixed<7,1,AP_TRN,AP_WRAP>" for i in range(1, 20, 3)})


@pytest.mark.parametrize("io,rf", [("parallel", 1), pytest.param("stream", 1, marks=pytest.mark.slow),
                                   pytest.param("parallel", 3, marks=pytest.mark.slow),
                                   pytest.param("stream", 2, marks=pytest.mark.slow)])  # slow: over ~20 s
def test_csim_is_bit_exact(tmp_path, io, rf):
    """Pools have no multipliers to share: a reuse factor must not change their results."""
    for opset, cases in ((13, CASES_13), (18, REDUCE18_CASES)):
        m, xs = pool_model(cases, opset, seed=1)
        xs = [x * 2.5 for x in xs]
        prj = hwprune.export(m, tmp_path / f"prj{opset}", io_type=io, precision=prec(rf=rf, **BIT_EXACT_PREC))
        g = load_project_graph(prj)
        got = raw_outputs(prj, xs)
        ref = trace_fixed(g, xs).values
        for case, out, raw in zip(cases, g.outputs, got):
            np.testing.assert_array_equal(raw, ref[out], err_msg=f"{case.id} ({io})")
        if opset == 13:
            assert saturation_report(g, xs), "the data should exercise saturation"


# ---------------------------------------------------------------------- (c) error bound

@pytest.mark.parametrize("result", ["ap_fixed<16,6,AP_RND_CONV,AP_SAT>", "ap_fixed<8,4,AP_RND_CONV,AP_SAT>"])
def test_fixed_error_within_bound(result):
    for opset, cases in ((13, CASES_13), (18, REDUCE18_CASES)):
        m, xs = pool_model(cases, opset, seed=2, n=6)
        g = compile_graph(m, prec(result))
        assert saturation_report(g, xs) == {}
        fixed, flt, bound, ort = run_fixed(g, xs), run_float(g, xs), error_bounds(g, xs), run_onnx(m, xs)
        lsb = FixedType.parse(result).lsb
        for case, f, r, b, o in zip(cases, fixed, flt, bound, ort):
            assert np.all(np.abs(f - r) <= b + 1e-12), case.id
            assert np.all(np.abs(f - o) <= b + 1e-5), case.id
            # Input quantization + output rounding (+ the reciprocal's error for averages).
            assert np.max(b) <= 1.01 * lsb + 2 * 2.0 ** -10, case.id


def test_average_uses_the_quantized_reciprocal():
    """Powers of two are exact; other counts carry the ap_ufixed<18,1> reciprocal's error,
    which the bound accounts for."""
    r = reciprocals(9)
    assert RECIP_T.cpp().startswith("ap_ufixed<18,1")
    for k in (1, 2, 4, 8):
        assert r[k] * 2.0 ** -RECIP_T.frac == 1.0 / k
    assert 0 < abs(r[9] * 2.0 ** -RECIP_T.frac - 1 / 9) <= 2.0 ** -(RECIP_T.frac + 1)
    # All-ones windows of 3 x 3 with 18 fractional input bits: sum * recip(9) is not 1 exactly.
    m, _ = pool_model([WINDOW_CASES[10]])
    g = compile_graph(m, prec("ap_fixed<24,4,AP_RND_CONV,AP_SAT>", inputs="ap_fixed<24,4,AP_RND_CONV,AP_SAT>"))
    x = [np.ones((1, 2, 9, 7), np.float32) * 1.5]
    assert np.all(np.abs(run_fixed(g, x)[0] - 1.5) <= error_bounds(g, x)[0])


# ---------------------------------------------------------------------- in a network

@pytest.mark.slow  # ~25 s
def test_cnn_with_pools_end_to_end(tmp_path):
    """torch: Conv2d -> ReLU -> MaxPool(ceil) -> AvgPool(pad, count_include_pad) -> global
    average -> Linear, exported by torch; both io types bit-exact and within the bound."""
    import torch

    from conftest import torch_onnx

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(3, 2, ceil_mode=True),
        torch.nn.AvgPool2d(3, 2, padding=1, count_include_pad=True), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(4, 2)).eval()
    x = np.random.default_rng(0).normal(size=(4, 3, 11, 9)).astype(np.float32)
    proto = torch_onnx(net, torch.from_numpy(x[:1]))
    with torch.no_grad():
        y = net(torch.from_numpy(x)).numpy()
    for io in ("parallel", "stream"):
        g = compile_graph(proto, io_type=io)
        np.testing.assert_allclose(run_float(g, [x])[0], y, atol=1e-5)
        assert np.all(np.abs(run_fixed(g, [x])[0] - y) <= error_bounds(g, [x])[0] + 1e-5)
        prj = hwprune.export(proto, tmp_path / io, io_type=io)
        g2 = load_project_graph(prj)
        np.testing.assert_array_equal(raw_outputs(prj, [x])[0], trace_fixed(g2, [x]).values[g2.outputs[0]])


# ---------------------------------------------------------------------- cost model

def test_cost_model():
    m, _ = pool_model([Case("c", "MaxPool", (8, 20, 64), dict(kernel_shape=[5, 2], dilations=[3, 1], strides=[1, 2]))])
    par = hwprune.estimate(m, "zcu104").layers[0].cost
    st = hwprune.estimate(m, "zcu104", io_type="stream").layers[0].cost
    positions = (20 - 12) * 32
    assert par.ii == positions and st.ii == 20 * 64 + positions
    assert par.dsp == 0 and par.bram18 == 0
    # Line buffer: span 13 rows of 64 words of 8 x 16 bits, one bank per row.
    assert st.bram18 >= 13
    avg = pool_model([Case("a", "GlobalAveragePool", (8, 20, 64))])[0]
    ga_s = hwprune.estimate(avg, "zcu104", io_type="stream").layers[0].cost
    ga_p = hwprune.estimate(avg, "zcu104").layers[0].cost
    assert ga_s.ii == 20 * 64 and ga_p.ii == 1 and ga_p.lut > ga_s.lut
    assert ga_s.multipliers == 8


# ---------------------------------------------------------------------- refused configurations

def _single(op: str, shape: tuple[int, ...], opset: int = 13, axes: list[int] | None = None, outputs: int = 1,
            **attrs: Any) -> onnx.ModelProto:
    names, inits = ["x"], []
    if axes is not None:
        inits.append(numpy_helper.from_array(np.asarray(axes, np.int64), "axes"))
        names.append("axes")
    outs = [helper.make_tensor_value_info(f"y{k}", TensorProto.FLOAT, None) for k in range(outputs)]
    g = helper.make_graph([helper.make_node(op, names, [o.name for o in outs], name="p", **attrs)], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *shape])], outs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


@pytest.mark.parametrize("model,words", [
    (_single("ReduceMean", (4, 6, 6), axes=[1]), "ReduceMean over all spatial/sequence axes"),
    (_single("ReduceMax", (4, 6, 6), axes=[3]), "axes [2, 3]"),
    (_single("ReduceMax", (4, 6), opset=18, axes=[0, 2]), "not supported"),
    (_single("ReduceMean", (4, 6, 6), keepdims=0), "not supported"),
    (_single("ReduceMax", (4,), axes=[1]), "has none"),
    (_single("MaxPool", (2, 4, 4, 4), kernel_shape=[2, 2, 2]), "1-D and 2-D"),
    (_single("AveragePool", (2, 8), opset=19, kernel_shape=[2], dilations=[2]), "dilated average"),
    (_single("MaxPool", (2, 1), kernel_shape=[2], dilations=[2], pads=[1, 1]), "only padding"),
    (_single("MaxPool", (2, 8), outputs=2, kernel_shape=[2]), "Indices"),
    (_single("MaxPool", (2, 8), kernel_shape=[3], dilations=[2], auto_pad="SAME_UPPER"), "ambiguous"),
    (_single("MaxPool", (2, 2), kernel_shape=[3]), "does not fit"),
], ids=["channel_axis", "one_of_two_spatial", "batch_axis", "all_axes", "no_spatial", "3d", "dilated_avg",
        "window_all_padding", "indices", "dilated_same", "kernel_too_big"])
def test_unsupported_configurations_are_refused(model, words):
    with pytest.raises(UnsupportedOpError) as e:
        compile_graph(model)
    assert "node 'p'" in str(e.value) and words in str(e.value), str(e.value)


def test_noop_reduction_is_an_identity():
    m = _single("ReduceMax", (3, 5), opset=18, axes=[], noop_with_empty_axes=1)
    m.graph.output[0].CopyFrom(helper.make_tensor_value_info("y0", TensorProto.FLOAT, ["N", 3, 5]))
    m.graph.node.append(helper.make_node("Relu", ["y0"], ["z"]))
    m.graph.output[0].CopyFrom(helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 3, 5]))
    x = np.random.default_rng(0).normal(size=(2, 3, 5))
    g = compile_graph(m)
    assert [l.op_type for l in g.layers] == ["Activation"]
    np.testing.assert_allclose(run_float(g, [x])[0], run_onnx(m, [x])[0], atol=1e-6)


# ---------------------------------------------------------------------- global mean: reuse factor

def _global_means_model() -> tuple[onnx.ModelProto, list[np.ndarray]]:
    """Two io_stream means of 9 channels: GlobalAveragePool over 4 x 5 positions (an inexact
    reciprocal) into a Linear, and a sequence mean of (N, 12, 9) (the encoder's: the channels
    relabelled first), beside a global max, which has no multiplier to share."""
    rng = np.random.default_rng(4)
    n = helper.make_node
    nodes = [n("GlobalAveragePool", ["x0"], ["gap"], name="gap"), n("Flatten", ["gap"], ["f"], name="flat"),
             n("Gemm", ["f", "w", "b"], ["y0"], transB=1, name="fc"),
             n("ReduceMean", ["x1"], ["y1"], axes=[1], keepdims=0, name="seq_mean"),
             n("GlobalMaxPool", ["x2"], ["y2"], name="gmax")]
    g = helper.make_graph(nodes, "means", [helper.make_tensor_value_info("x0", TensorProto.FLOAT, ["N", 9, 4, 5]),
                                           helper.make_tensor_value_info("x1", TensorProto.FLOAT, ["N", 12, 9]),
                                           helper.make_tensor_value_info("x2", TensorProto.FLOAT, ["N", 9, 6])],
                          [helper.make_tensor_value_info(f"y{k}", TensorProto.FLOAT, None) for k in range(3)],
                          [numpy_helper.from_array((rng.normal(size=(3, 9)) * 0.4).astype(np.float32), "w"),
                           numpy_helper.from_array(np.zeros(3, np.float32), "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    xs = [rng.normal(size=(3, 9, 4, 5)).astype(np.float32) * 2.5, rng.normal(size=(3, 12, 9)).astype(np.float32) * 2.5,
          rng.normal(size=(3, 9, 6)).astype(np.float32)]
    xs[0][:, :2] += 5.0  # means beyond ap_fixed<9,3>'s 4: saturation in the output rounding
    xs[1][:, :, -2:] -= 5.0
    return _with_output_shapes(m, xs), xs


# RF 5 over 9 channels: 2 lanes x 5 cycles (one slot idle); 2: 5 lanes; 9: one multiplier.
@pytest.mark.parametrize("rf", [1, 2, 5, 9])
def test_global_mean_reuse_factor_is_bit_exact_and_runs_the_estimated_cycles(tmp_path, rf):
    """The means' multiplies by the reciprocal leave after the last word: at RF > 1 the
    ceil(9 / RF) lanes take RF more cycles, II = n + RF (n = 20 and 12 words); RF 1 is the kernel
    as it was (II = n). The simulator replays the same trips and words, and its latency is the
    counted one: the design's longest path is the 2-D mean (n + RF cycles, the product and the
    write: + 2) into the Linear (at RF its reuse factor, one word)."""
    from hwprune.backend.csim import count_loops
    from hwprune.board import load_board
    from hwprune.sim.estimate import estimate

    m, xs = _global_means_model()
    prj = hwprune.export(m, tmp_path / f"rf{rf}", io_type="stream", board="pynq-z2",
                         precision=prec("ap_fixed<9,3,AP_RND,AP_SAT>", rf=rf, inputs="ap_fixed<14,4,AP_RND_CONV,AP_SAT>"))
    g = load_project_graph(prj)
    ref = trace_fixed(g, xs).values
    for out, raw in zip(g.outputs, raw_outputs(prj, xs)):
        np.testing.assert_array_equal(raw, ref[out], err_msg=out)
    assert {"gap", "seq_mean"} <= set(saturation_report(g, xs)), "the means should saturate"
    pools = {l.name: l for l in g.layers if isinstance(l, GlobalPool)}
    assert {k: p.reuse_factor for k, p in pools.items()} == {"gap": rf, "seq_mean": rf, "gmax": 1}
    counts = count_loops(prj, xs)
    est = {l.name: l.cost for l in estimate(g, load_board("pynq-z2")).layers}
    words = {"gap": 20, "seq_mean": 12, "gmax": 6}
    for name, layer in pools.items():
        c = counts[name]
        assert c.calls == len(xs[0]) and (c.reads / c.calls, c.writes / c.calls) == (words[name], 1), name
        assert c.cycles / c.calls == est[name].ii == words[name] + (rf if layer.kind == "avg" and rf > 1 else 0), name
        assert est[name].multipliers == (-(-9 // rf) if layer.kind == "avg" else 0), name
    sim = hwprune.simulate(prj, "pynq-z2", batch=len(xs[0]))
    by = {l.name: l for l in sim.layers}
    for name in pools:
        assert by[name].busy_per_sample == counts[name].cycles / counts[name].calls, name
    fc = counts["fc"].cycles / counts["fc"].calls  # RF cycles for its one word
    assert fc == rf
    assert sim.latency_cycles == counts["gap"].cycles / counts["gap"].calls + 2 + est["fc"].latency


def _mean_cost(rf: int) -> tuple[GlobalPool, Any]:
    from hwprune.board import load_board
    from hwprune.sim.estimate import estimate

    m, _ = pool_model([Case("seq", "ReduceMean", (96, 48), dict(axes=[2], keepdims=0))])
    g = compile_graph(m, PrecisionConfig().with_overrides(reuse_factor=rf), "stream")
    (layer,) = [l for l in g.layers if isinstance(l, GlobalPool)]
    return layer, next(l.cost for l in estimate(g, load_board("pynq-z2")).layers if l.name == layer.name)


def test_global_mean_reuse_factor_shares_the_multipliers():
    """The encoder's mean: 96 channels over 48 tokens of ap_fixed<16,6>. The exact sum takes
    22 bits (|x| < 32, 48 of them: 12 integer bits, 10 fractional); times the unsigned 18-bit
    reciprocal (19 bits on the signed port) it takes 2 DSP48E1 slices (22 <= 25 on one port,
    19 > 18 split in two on the other). RF 1: 96 multipliers, 192 DSPs, II 48 (unchanged).
    RF 8: 12 lanes, 24 DSPs, II 48 + 8. RF 64: ceil(96 / 64) = 2 lanes serving 48 channels each,
    4 DSPs, II 48 + 48. LUTs: 96 accumulators of 22 bits (2112) and per lane a 22-bit RF:1
    multiplexer (8:1 3 LUTs/bit, 64:1 25.5): RF 8 2112 + 12 * 66 = 2904, RF 64 2112 + 2 * 561 =
    3234; FFs: the accumulators and the 16-bit results (96 * 38 = 3648)."""
    (l1, c1), (l8, c8), (l64, c64) = (_mean_cost(rf) for rf in (1, 8, 64))
    assert (l1.reuse_factor, l8.reuse_factor, l64.reuse_factor) == (1, 8, 48)
    assert (c1.dsp, c8.dsp, c64.dsp) == (192, 24, 4)
    assert c1.dsp - c64.dsp == 188
    assert (c1.multipliers, c8.multipliers, c64.multipliers) == (96, 12, 2)
    assert (c1.ii, c8.ii, c64.ii) == (48, 56, 96) and (c1.latency, c8.latency, c64.latency) == (50, 58, 98)
    assert (c8.lut, c64.lut) == (2904, 3234) and c8.ff == c64.ff == 3648
    # RF 1 as before: 96 adders of 22 bits, 2 registers of 22 bits per channel.
    assert (c1.lut, c1.ff) == (2112, 4224)


def test_global_reuse_factor_options():
    """The budget search's choices for a mean, as infer_types settles them; a max and io_parallel
    have nothing to share."""
    m, _ = pool_model([Case("seq", "ReduceMean", (96, 48), dict(axes=[2], keepdims=0))])
    g = compile_graph(m, None, "stream")
    (layer,) = [l for l in g.layers if isinstance(l, GlobalPool)]
    assert layer.reuse_factor_options(g, [1, 2, 4, 8, 16, 32, 64, 128]) == [1, 2, 4, 8, 16, 32, 48]
    gp = compile_graph(m, PrecisionConfig().with_overrides(reuse_factor=8), "parallel")
    (lp,) = [l for l in gp.layers if isinstance(l, GlobalPool)]
    assert lp.reuse_factor == 1 and lp.reuse_factor_options(gp, [1, 8]) == [1]
    mx, _ = pool_model([Case("mx", "GlobalMaxPool", (8, 10))])
    gm = compile_graph(mx, PrecisionConfig().with_overrides(reuse_factor=4), "stream")
    assert gm.layers[0].reuse_factor == 1 and gm.layers[0].reuse_factor_options(gm, [1, 4]) == [1]
