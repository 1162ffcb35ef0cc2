"""Property tests over random small MLPs and 1-D/2-D CNNs: random shapes, strides, paddings,
precisions, io types and reuse factors. For every generated design:
  * `fixed` (numpy) equals `csim` (g++) bit for bit;
  * |fixed - float| stays within the propagated quantization bound (when nothing saturates).
Precisions go up to 32 bits (saturating or wrapping): with 32-bit activations and weights the
exact accumulators pass 64 bits and take the exact path (an explicit example of each kind
makes sure, `test_the_wide_examples_have_accumulators_past_64_bits`).
Each example compiles a C++ project (~1 s), so the example counts are modest."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from onnx import helper

import hwprune
from conftest import fin, make_model
from hwprune.backend.csim import raw_outputs
from hwprune.fixed import FixedType, Overflow, Rounding
from hwprune.pipeline import compile_graph, error_bounds, run_float, run_fixed, run_onnx, saturation_report, trace_fixed
from hwprune.precision import PrecisionConfig

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@st.composite
def precisions(draw) -> FixedType:
    width = draw(st.one_of(st.integers(10, 24), st.integers(28, 32)))
    integer = draw(st.integers(4, min(9, width - 2)))
    rounding = draw(st.sampled_from([Rounding.TRN, Rounding.RND, Rounding.RND_CONV]))
    overflow = draw(st.sampled_from([Overflow.SAT, Overflow.SAT, Overflow.WRAP]))
    return FixedType(width, integer, True, rounding, overflow)


WIDE = FixedType(32, 4, True, Rounding.RND_CONV, Overflow.SAT)  # accumulators of 65+ bits


def _wide_mlp():
    rng = np.random.default_rng(11)
    nodes = [helper.make_node("Gemm", ["x", "w0", "b0"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "w1", "b1"], ["y"], transB=1)]
    inits = [("w0", rng.normal(size=(12, 20)) / 4), ("b0", rng.normal(size=12) * 0.1),
             ("w1", rng.normal(size=(3, 12)) / 3), ("b1", rng.normal(size=3) * 0.1)]
    return make_model(nodes, [fin("x", 20)], [fin("y", 3)], inits), rng.uniform(-1, 1, size=(3, 20)).astype(np.float32)


def _wide_cnn():
    rng = np.random.default_rng(12)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("AveragePool", ["r"], ["p"], kernel_shape=[2, 2],
                                                                     strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"]), helper.make_node("Gemm", ["f", "w2", "b2"], ["y"], transB=1)]
    inits = [("w", rng.normal(size=(4, 3, 3, 3)) / 5), ("b", rng.normal(size=4) * 0.1),
             ("w2", rng.normal(size=(3, 36)) / 6), ("b2", rng.normal(size=3) * 0.1)]
    return (make_model(nodes, [fin("x", 3, 6, 6)], [fin("y", 3)], inits),
            rng.uniform(-1, 1, size=(2, 3, 6, 6)).astype(np.float32), True)


WIDE_MLP, WIDE_CNN = _wide_mlp(), _wide_cnn()


@st.composite
def mlps(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    dims = draw(st.lists(st.integers(1, 20), min_size=2, max_size=4))
    nodes, inits, prev = [], [], "x"
    for i, (a, b) in enumerate(zip(dims, dims[1:])):
        out = "y" if i == len(dims) - 2 else f"h{i}"
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [out if out == "y" or not draw(st.booleans()) else f"g{i}"], transB=1))
        inits += [(f"w{i}", rng.normal(size=(b, a)) / np.sqrt(a)), (f"b{i}", rng.normal(size=b) * 0.1)]
        if nodes[-1].output[0] != out:
            nodes.append(helper.make_node("Relu", [nodes[-1].output[0]], [out]))
        prev = out
    model = make_model(nodes, [fin("x", dims[0])], [fin("y", dims[-1])], inits)
    x = rng.uniform(-1, 1, size=(draw(st.integers(1, 4)), dims[0])).astype(np.float32)
    return model, x


@st.composite
def cnns(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    two_d = draw(st.booleans())
    c_in = draw(st.integers(1, 4))
    size = [draw(st.integers(4, 8)) for _ in range(2 if two_d else 1)]
    k = draw(st.integers(1, 3))
    stride = draw(st.integers(1, 2))
    pad = draw(st.integers(0, k - 1)) if k > 1 else 0
    dil = draw(st.integers(1, 2))
    depthwise = draw(st.booleans()) and c_in > 1
    c_out = c_in if depthwise else draw(st.integers(1, 5))
    groups = c_in if depthwise else 1
    nd = len(size)
    ks = [k] * nd
    w = rng.normal(size=(c_out, c_in // groups, *ks)) / np.sqrt(k * c_in)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=ks, strides=[stride] * nd,
                              pads=[pad] * (2 * nd), dilations=[dil] * nd, group=groups)]
    inits = [("w", w), ("b", rng.normal(size=c_out) * 0.1)]
    nodes.append(helper.make_node("Relu", ["c"], ["r"]))
    out_sp = [(s + 2 * pad - dil * (k - 1) - 1) // stride + 1 for s in size]
    if min(out_sp) < 1:
        return None, None, False
    pool = draw(st.sampled_from(["max", "avg", "gmax", "none"]))
    last = "r"
    if pool in ("max", "avg") and out_sp and min(out_sp) >= 2:
        nodes.append(helper.make_node("MaxPool" if pool == "max" else "AveragePool", ["r"], ["p"], kernel_shape=[2] * nd, strides=[2] * nd))
        out_sp = [s // 2 for s in out_sp]
        last = "p"
    elif pool == "gmax":
        nodes.append(helper.make_node("GlobalMaxPool", ["r"], ["p"]))
        out_sp = [1] * nd
        last = "p"
    nodes.append(helper.make_node("Flatten", [last], ["f"]))
    n_flat = c_out * int(np.prod(out_sp))
    nodes.append(helper.make_node("Gemm", ["f", "w2", "b2"], ["y"], transB=1))
    inits += [("w2", rng.normal(size=(3, n_flat)) / np.sqrt(n_flat)), ("b2", rng.normal(size=3) * 0.1)]
    model = make_model(nodes, [fin("x", c_in, *size)], [fin("y", 3)], inits)
    x = rng.uniform(-1, 1, size=(draw(st.integers(1, 3)), c_in, *size)).astype(np.float32)
    return model, x, out_sp is not None


def _check(model, x, io, prec_t, rf, tmp_path):
    prec = PrecisionConfig().with_overrides(result=prec_t, reuse_factor=rf)
    g = compile_graph(model, prec, io)
    np.testing.assert_allclose(run_float(g, [x])[0], run_onnx(model, [x])[0], atol=1e-5)
    prj = hwprune.export(model, tmp_path / "prj", io_type=io, precision=prec, force=True)
    np.testing.assert_array_equal(raw_outputs(prj, [x])[0], trace_fixed(g, [x]).values[g.outputs[0]])
    if not saturation_report(g, [x]):
        err = np.abs(run_fixed(g, [x])[0] - run_float(g, [x])[0])
        assert np.all(err <= error_bounds(g, [x])[0] + 1e-9)


@pytest.mark.slow
@SETTINGS
@given(case=mlps(), io=st.sampled_from(["parallel", "stream"]), prec_t=precisions(), rf=st.integers(1, 9))
@example(case=WIDE_MLP, io="stream", prec_t=WIDE, rf=3)
def test_random_mlps_fixed_equals_csim(tmp_path, case, io, prec_t, rf):
    model, x = case
    _check(model, x, io, prec_t, rf, tmp_path)


@pytest.mark.slow
@SETTINGS
@given(case=cnns(), io=st.sampled_from(["parallel", "stream"]), prec_t=precisions(), rf=st.integers(1, 5))
@example(case=WIDE_CNN, io="parallel", prec_t=WIDE, rf=2)
def test_random_cnns_fixed_equals_csim(tmp_path, case, io, prec_t, rf):
    model, x, valid = case
    if not valid:
        return
    _check(model, x, io, prec_t, rf, tmp_path)


def test_the_wide_examples_have_accumulators_past_64_bits():
    for model in (WIDE_MLP[0], WIDE_CNN[0]):
        g = compile_graph(model, PrecisionConfig().with_overrides(result=WIDE))
        widths = [layer.accum_t.width for layer in g.layers if getattr(layer, "accum_t", None) is not None]
        assert max(widths) > 64, widths
