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
