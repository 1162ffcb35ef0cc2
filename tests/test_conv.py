"""Conv op room: ONNX Conv 1-D and 2-D (stride, padding incl. auto_pad, dilation, groups,
depthwise, with/without bias) on the channels-last window engine.

For every case: (a) the IR's float semantics equal onnxruntime (pins the layout conversions),
(b) the C simulation equals the numpy fixed-point reference bit for bit in io_parallel and
io_stream, with reuse factor 1 and > 1, (c) |fixed - float| stays within `error_bounds`.
To keep g++ builds few, the cases are side-by-side branches of one model (one build per io
type and reuse factor).
"""

from __future__ import annotations

import math
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
from hwprune.ir.graph import IOType
from hwprune.ops.conv import Conv
from hwprune.pipeline import compile_graph, error_bounds, run_fixed, run_float, run_onnx, saturation_report, trace_fixed
from hwprune.precision import LayerPrecision, PrecisionConfig
from hwprune.project import load_project_graph

OPSET = 17


@dataclass(frozen=True)
class Case:
    id: str
    shape: tuple[int, ...]  # per-sample input: (C, L) or (C, H, W)
    c_out: int
    kernel: tuple[int, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    bias: bool = True


CASES = [
    Case("1d_pad", (4, 10), 3, (3,), dict(pads=[1, 1])),
    Case("1d_stride_dilation_asym_pad", (3, 13), 2, (3,), dict(strides=[2], dilations=[2], pads=[2, 1]), bias=False),
    Case("1d_same_upper", (3, 9), 2, (4,), dict(strides=[2], auto_pad="SAME_UPPER")),
    Case("1d_depthwise", (4, 7), 4, (3,), dict(group=4, pads=[1, 1])),
    Case("1d_groups_len1", (4, 1), 6, (3,), dict(group=2, pads=[1, 1])),
    Case("2d_odd", (3, 7, 5), 4, (3, 2), dict(pads=[1, 0, 0, 1])),
    Case("2d_stride_pad", (2, 9, 8), 3, (3, 3), dict(strides=[2, 3], pads=[1, 1, 2, 0])),
    Case("2d_dilation", (3, 9, 9), 2, (3, 3), dict(dilations=[2, 1], pads=[2, 1, 1, 1])),
    Case("2d_groups_no_bias", (4, 6, 5), 6, (3, 2), dict(group=2), bias=False),
    Case("2d_depthwise_multiplier", (3, 6, 6), 6, (3, 3), dict(group=3, strides=[2, 2], pads=[1, 1, 1, 1])),
    Case("2d_same_lower", (2, 5, 6), 3, (2, 3), dict(strides=[1, 2], auto_pad="SAME_LOWER")),
    Case("2d_valid", (2, 6, 7), 2, (3, 3), dict(strides=[2, 2], auto_pad="VALID")),
    Case("2d_pointwise", (5, 4, 3), 3, (1, 1)),
    Case("2d_kernel_larger_than_input", (2, 2, 3), 2, (3, 3), dict(pads=[1, 1, 1, 1])),
    Case("2d_single_row", (2, 1, 8), 3, (1, 3), dict(strides=[1, 2], pads=[0, 1, 0, 1])),
]
IDS = [c.id for c in CASES]


def _with_output_shapes(m: onnx.ModelProto, xs: list[np.ndarray]) -> onnx.ModelProto:
    """Give the graph outputs the shapes onnxruntime computes (hwprune needs full shapes)."""
    for vo, y in zip(m.graph.output, run_onnx(m, xs)):
        vo.CopyFrom(helper.make_tensor_value_info(vo.name, TensorProto.FLOAT, ["N", *y.shape[1:]]))
    onnx.checker.check_model(m)
    return m


def conv_model(cases: list[Case], seed: int = 0, n: int = 4) -> tuple[onnx.ModelProto, list[np.ndarray]]:
    """One Conv per case, each on its own input x{i} -> output y{i} (node name conv{i})."""
    rng = np.random.default_rng(seed)
    nodes, ins, outs, inits, xs = [], [], [], [], []
    for i, c in enumerate(cases):
        groups = c.attrs.get("group", 1)
        fan_in = c.shape[0] // groups * math.prod(c.kernel)
        w = rng.normal(size=(c.c_out, c.shape[0] // groups, *c.kernel)) / math.sqrt(fan_in)
        inits.append(numpy_helper.from_array(w.astype(np.float32), f"w{i}"))
        names = [f"x{i}", f"w{i}"]
        if c.bias:
            inits.append(numpy_helper.from_array((rng.normal(size=c.c_out) * 0.3).astype(np.float32), f"b{i}"))
            names.append(f"b{i}")
        nodes.append(helper.make_node("Conv", names, [f"y{i}"], name=f"conv{i}", kernel_shape=list(c.kernel), **c.attrs))
        ins.append(helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, ["N", *c.shape]))
        outs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, None))
        xs.append(rng.normal(size=(n, *c.shape)).astype(np.float32))
    m = helper.make_model(helper.make_graph(nodes, "convs", ins, outs, inits),
                          opset_imports=[helper.make_opsetid("", OPSET)])
    m.ir_version = 8
    return _with_output_shapes(m, xs), xs


def prec(result: str, rf: int = 1, weight_width: int | None = None, inputs: str | None = None,
         by_name: dict[str, str] | None = None) -> PrecisionConfig:
    return PrecisionConfig(
        LayerPrecision(result=FixedType.parse(result), weight_width=weight_width, reuse_factor=rf),
        {"Input": LayerPrecision(result=FixedType.parse(inputs))} if inputs else {},
        {k: LayerPrecision(result=FixedType.parse(v)) for k, v in (by_name or {}).items()},
    )


# ---------------------------------------------------------------------- (a) float == onnxruntime

@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_float_ir_matches_onnxruntime(case):
    m, xs = conv_model([case])
    ref = run_onnx(m, xs)[0]
    for io in ("parallel", "stream"):
        g = compile_graph(m, io_type=io)
        assert [type(l) for l in g.layers] == [Conv]
        t = g.tensor(g.layers[0].inputs[0])
        assert t.perm == ((1, 0) if len(case.shape) == 2 else (1, 2, 0))  # channels last
        np.testing.assert_allclose(run_float(g, xs)[0], ref, atol=1e-5)


# ---------------------------------------------------------------------- (b) csim == fixed, bit for bit

# Narrow types so that rounding and saturation (and, for some layers, wrapping) happen: the
# C++ must reproduce them exactly, not only the easy in-range values.
BIT_EXACT_PREC = dict(result="ap_fixed<10,4,AP_RND,AP_SAT>", weight_width=8, inputs="ap_fixed<12,4,AP_RND_CONV,AP_SAT>",
                      by_name={f"conv{i}": "ap_fixed<8,2,AP_TRN,AP_WRAP>" for i in range(1, len(CASES), 3)})


@pytest.mark.parametrize("io,rf", [("parallel", 1), ("parallel", 4), ("stream", 1), ("stream", 3)])
def test_csim_is_bit_exact(tmp_path, io, rf):
    m, xs = conv_model(CASES, seed=1)
    xs = [x * 3 for x in xs]  # drive some outputs into saturation / wrap-around
    p = prec(rf=rf, **BIT_EXACT_PREC)
    prj = hwprune.export(m, tmp_path / "prj", io_type=io, precision=p)
    g = load_project_graph(prj)
    assert all(l.reuse_factor == rf for l in g.layers if isinstance(l, Conv))
    got = raw_outputs(prj, xs)
    ref = trace_fixed(g, xs).values
    for case, out, raw in zip(CASES, g.outputs, got):
        np.testing.assert_array_equal(raw, ref[out], err_msg=f"{case.id} ({io}, RF={rf})")
    assert saturation_report(g, xs), "the data should exercise saturation"


# ---------------------------------------------------------------------- (c) error bound

@pytest.mark.parametrize("precision", [dict(result="ap_fixed<16,6,AP_RND_CONV,AP_SAT>"),
                                       dict(result="ap_fixed<10,5,AP_RND_CONV,AP_SAT>", weight_width=6)],
                         ids=["16bit", "10bit"])
def test_fixed_error_within_bound(precision):
    m, xs = conv_model(CASES, seed=2, n=6)
    g = compile_graph(m, prec(**precision))
    assert saturation_report(g, xs) == {}
    fixed, flt, bound, ort = run_fixed(g, xs), run_float(g, xs), error_bounds(g, xs), run_onnx(m, xs)
    for case, f, r, b, o in zip(CASES, fixed, flt, bound, ort):
        assert np.all(np.abs(f - r) <= b + 1e-12), case.id
        assert np.all(np.abs(f - o) <= b + 1e-5), case.id  # onnxruntime computes in float32
        # The bound is a few output lsbs, not a blanket tolerance.
        lsb = g.tensor(g.outputs[0]).type.lsb
        assert np.max(b) < 40 * lsb, case.id


# ---------------------------------------------------------------------- chains: folding, streams between layers

def _chain(one_d: bool) -> tuple[onnx.ModelProto, list[np.ndarray]]:
    """Conv -> BatchNorm -> Relu -> depthwise Conv (stride 2) -> Add per-channel bias:
    BN and the Add fold into the convolutions; the second conv reads the first's stream."""
    rng = np.random.default_rng(3)
    sp = (11,) if one_d else (7, 6)
    k = (3,) if one_d else (3, 3)
    pads = [1] * (2 * len(k))
    bshape = (6, 1) if one_d else (6, 1, 1)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", kernel_shape=list(k), pads=pads),
        helper.make_node("BatchNormalization", ["c1", "g", "be", "mu", "var"], ["bn"], name="bn"),
        helper.make_node("Relu", ["bn"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "w2"], ["c2"], name="conv2", kernel_shape=list(k), group=6, strides=[2] * len(k),
                         pads=pads),
        helper.make_node("Add", ["c2", "bias"], ["y"], name="add"),
    ]
    inits = {"w1": rng.normal(size=(6, 4, *k)) * 0.3, "b1": rng.normal(size=6) * 0.1, "g": rng.uniform(0.5, 1.5, 6),
             "be": rng.normal(size=6) * 0.2, "mu": rng.normal(size=6) * 0.1, "var": rng.uniform(0.5, 2, 6),
             "w2": rng.normal(size=(6, 1, *k)) * 0.4, "bias": rng.normal(size=bshape) * 0.2}
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, *sp])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(np.asarray(v, np.float32), n) for n, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])
    m.ir_version = 8
    xs = [rng.normal(size=(5, 4, *sp)).astype(np.float32)]
    return _with_output_shapes(m, xs), xs


@pytest.mark.parametrize("one_d", [True, False], ids=["1d", "2d"])
def test_chain_folds_affines_and_is_bit_exact(tmp_path, one_d):
    m, xs = _chain(one_d)
    ort = run_onnx(m, xs)[0]
    for io, rf in (("parallel", 2), ("stream", 1)):
        p = prec("ap_fixed<16,6,AP_RND_CONV,AP_SAT>", rf=rf)
        g = compile_graph(m, p, io)
        # BatchNorm folds into conv1, the bias Add into conv2: only convs and the ReLU remain.
        assert [l.op_type for l in g.layers] == ["Conv", "Activation", "Conv"]
        np.testing.assert_allclose(run_float(g, xs)[0], ort, atol=1e-5)
        assert np.all(np.abs(run_fixed(g, xs)[0] - ort) <= error_bounds(g, xs)[0] + 1e-5)
        prj = hwprune.export(m, tmp_path / io, io_type=io, precision=p)
        g2 = load_project_graph(prj)
        np.testing.assert_array_equal(raw_outputs(prj, xs)[0], trace_fixed(g2, xs).values[g2.outputs[0]])


def test_scalar_add_folds_into_conv():
    m, xs = conv_model([CASES[5]])
    m.graph.node.append(helper.make_node("Add", ["y0", "s"], ["z"], name="add"))
    m.graph.initializer.append(numpy_helper.from_array(np.array(0.25, np.float32), "s"))
    m.graph.output[0].name = "z"
    g = compile_graph(m)
    assert [l.op_type for l in g.layers] == ["Conv"]
    np.testing.assert_allclose(run_float(g, xs)[0], run_onnx(m, xs)[0], atol=1e-5)


# ---------------------------------------------------------------------- fixed-point types

def test_accumulator_is_sized_from_the_weights():
    m, xs = conv_model([CASES[6]])
    g = compile_graph(m, prec("ap_fixed<16,6,AP_RND_CONV,AP_SAT>"))
    conv = g.layers[0]
    x_t = g.tensor(conv.inputs[0]).type
    assert conv.accum_t.frac == x_t.frac + conv.weight_t.frac
    # Per output channel sum |w| * max|x| + |b| fits; one bit less would not for the worst channel.
    wq = np.abs(np.round(conv.weight * 2.0 ** conv.weight_t.frac) / 2.0 ** conv.weight_t.frac)
    worst = float(np.max(wq.reshape(conv.c_out, -1).sum(axis=1) * max(-x_t.min_value, x_t.max_value) + np.abs(conv.bias)))
    assert worst < 2.0 ** (conv.accum_t.integer - 1) and worst >= 2.0 ** (conv.accum_t.integer - 3)
    assert conv.bias_t.frac <= conv.accum_t.frac


# ---------------------------------------------------------------------- cost model

def test_cost_model_formulas():
    case = Case("c", (4, 9, 8), 6, (3, 3), dict(strides=[2, 1], pads=[1, 1, 1, 1]))
    m, _ = conv_model([case])
    macs_px = 6 * 4 * 9
    positions = 5 * 8
    par = {rf: hwprune.estimate(m, "zcu104", precision=prec("ap_fixed<16,6>", rf)).layers[0].cost for rf in (1, 4, 7)}
    for rf, c in par.items():
        assert c.multipliers == math.ceil(macs_px / rf)
        assert c.ii == positions * rf and c.latency > c.ii
        assert c.macs == positions * macs_px
    assert par[1].bram18 == 0  # RF=1: weights are constants in the multipliers
    st = hwprune.estimate(m, "zcu104", precision=prec("ap_fixed<16,6>", 4), io_type="stream").layers[0].cost
    assert st.ii == 9 * 8 + positions * 4  # reads and output pixels alternate in one process
    assert st.multipliers == par[4].multipliers
    # The line buffer (3 rows of 8 words of 4 x 16 bits) is the only extra memory.
    assert st.lut + st.bram18 * 100 > par[4].lut + par[4].bram18 * 100


def test_stream_line_buffer_grows_with_the_kernel_span():
    small = conv_model([Case("a", (8, 40, 128), 2, (1, 1))])[0]
    tall = conv_model([Case("b", (8, 40, 128), 2, (5, 1), dict(dilations=[3, 1]))])[0]
    c_small = hwprune.estimate(small, "zcu104", io_type="stream").layers[0].cost
    c_tall = hwprune.estimate(tall, "zcu104", io_type="stream").layers[0].cost
    # span 1 row vs 13 rows of 128 words x 128 bits.
    assert c_tall.bram18 >= 13 * c_small.bram18 > 0


# ---------------------------------------------------------------------- refused configurations

def _single(shape: tuple[int, ...], w_shape: tuple[int, ...], const_w: bool = True, **attrs: Any) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *shape])
    ins = [x] if const_w else [x, helper.make_tensor_value_info("w", TensorProto.FLOAT, list(w_shape))]
    inits = [numpy_helper.from_array(np.ones(w_shape, np.float32), "w")] if const_w else []
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="c", **attrs)], "g", ins,
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])
    m.ir_version = 8
    return m


@pytest.mark.parametrize("model,words", [
    (_single((2, 4, 4, 4), (3, 2, 2, 2, 2)), "1-D and 2-D"),
    (_single((2, 6), (3, 2, 3), const_w=False), "constant"),
    (_single((2, 8), (3, 2, 3), dilations=[2], auto_pad="SAME_UPPER"), "ambiguous"),
    (_single((3, 8), (3, 2, 3), group=2), "groups=2"),
    (_single((2, 2), (3, 2, 3)), "does not fit"),
], ids=["3d", "dynamic_weights", "dilated_same", "bad_groups", "kernel_too_big"])
def test_unsupported_configurations_are_refused(model, words):
    with pytest.raises(UnsupportedOpError) as e:
        compile_graph(model)
    assert "node 'c' (Conv)" in str(e.value) and words in str(e.value)
