"""QONNX as the peers publish it: old custom-op domains without an opset import, quantizers
whose scales are not powers of two or vary per channel (Brevitas' defaults), and FINN's
MultiThreshold. Each mapping is pinned against qonnx's own executor
(qonnx.core.onnx_exec.execute_onnx), the C simulation against the fixed-point reference.

The bound (docs/precision.md, "QONNX scales"): every integer code hwprune computes equals the
code of the exact (real-arithmetic) QONNX graph unless the exact pre-rounding value lies
within Rescale.delta (<= 2**-16 of a step) of a rounding boundary. qonnx's executor computes
in float32, so it can itself land on the other side of a boundary when its value lies that
close; `qonnx_run` flags the samples where any quantizer input (or MultiThreshold input) of
qonnx's execution lies within TIE = 2**-10 steps of a boundary. On every other sample the
codes are equal: quantized outputs are equal as float32 (qonnx's s * q is a float32
product), real outputs differ by at most half an lsb of the output type plus its delta.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import hwprune
from hwprune.backend.csim import raw_outputs
from hwprune.errors import UnsupportedOpError
from hwprune.fixed import FixedType
from hwprune.frontend.onnx_import import load_onnx
from hwprune.ops.activation import Activation
from hwprune.ops.quant import Quantize
from hwprune.ops.rescale import GUARD_BITS, Rescale
from hwprune.ops.threshold import Threshold
from hwprune.pipeline import compile_graph, run_fixed, trace_fixed
from hwprune.precision import LayerPrecision, PrecisionConfig
from hwprune.project import load_project_graph

QDOMAIN = "qonnx.custom_op.general"
TIE = 2.0 ** -10
RNG = np.random.default_rng(0)


# ---------------------------------------------------------------- qonnx's execution

def _cleaned(model: onnx.ModelProto):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    m = onnx.ModelProto()
    m.CopyFrom(model)
    for vi in (*m.graph.input, *m.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].ClearField("dim_param")
            dims[0].dim_value = 1  # qonnx's executor wants concrete shapes
    return cleanup_model(ModelWrapper(m))


def qonnx_run(model: onnx.ModelProto, x: np.ndarray) -> tuple[np.ndarray, list[dict], dict, object]:
    """qonnx's execution one sample at a time: outputs, full contexts, initializers, model."""
    from qonnx.core.onnx_exec import execute_onnx

    mw = _cleaned(model)
    inits = {i.name: numpy_helper.to_array(i) for i in mw.graph.initializer}
    iname, oname = mw.graph.input[0].name, mw.graph.output[0].name
    ctxs = [execute_onnx(mw, {iname: x[k:k + 1]}, return_full_exec_context=True) for k in range(x.shape[0])]
    return np.stack([c[oname][0] for c in ctxs]), ctxs, inits, mw


def _attrs(n: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in n.attribute}


def code_flips(g, x: np.ndarray, ctxs: list[dict], inits: dict, mw) -> np.ndarray:
    """Compare every activation quantizer's (and threshold's) integer codes with qonnx's.
    A code may differ only by one step and only where qonnx's own pre-rounding value lies
    within TIE of a rounding boundary (float32 may round either way there; the codes hwprune
    computes are those of the exact arithmetic to within Rescale.delta). Returns, per sample,
    whether any code differed (such samples propagate the flip to the outputs)."""
    from hwprune.fixed import to_float
    from hwprune.pipeline import _float_values

    tr = trace_fixed(g, [x]).values
    fl = _float_values(g, [x])
    flipped = np.zeros(x.shape[0], bool)
    checked = 0
    for n in mw.graph.node:
        if not n.input or n.input[0] in inits or n.op_type not in ("Quant", "MultiThreshold"):
            continue
        ir = next((t for t in (f"{n.output[0]}__codes", f"{n.output[0]}__count", n.output[0]) if t in tr), None)
        if ir is None:
            continue
        t = g.tensor(ir)
        # IR values: a "__codes"/"__count" tensor holds the integer codes; another one the real
        # value (a power-of-two Quant), divided by its host scale at a graph output.
        ours = to_float(t.to_logical(tr[ir]), t.type) * t.scale
        theirs = np.stack([c[n.output[0]][0] for c in ctxs]).astype(np.float64)
        coded = ir.endswith("__codes") or ir.endswith("__count")
        if n.op_type == "Quant":
            s = inits[n.input[1]].astype(np.float64)
            s = s.reshape(s.shape[1:]) if s.ndim == theirs.ndim else s  # drop the batch axis
            ours_q, theirs_q = np.round(ours if coded else ours / s), np.round(theirs / s)
            pre = np.stack([np.asarray(c[n.input[0]][0], np.float32) / np.float32(s) for c in ctxs]).astype(np.float64)
            mode = _attrs(n).get("rounding_mode", b"ROUND")
            mode = (mode.decode() if isinstance(mode, bytes) else mode).upper()
            edge = (np.minimum(pre - np.floor(pre), np.ceil(pre) - pre) if mode in ("FLOOR", "DOWN")
                    else np.abs(pre - np.floor(pre) - 0.5))
        else:
            a = _attrs(n)
            sc, bi = float(a.get("out_scale", 1.0)), float(a.get("out_bias", 0.0))
            theirs_q = np.round((theirs - bi) / sc)
            ours_q = np.round(ours if coded else (ours - bi) / sc)
            v = np.stack([c[n.input[0]][0] for c in ctxs]).astype(np.float64)
            thr = inits[n.input[1]].astype(np.float64).reshape(-1)
            edge = np.min(np.abs(v[..., None] - thr) / (1 + np.abs(thr)), axis=-1)
        assert ours_q.shape == theirs_q.shape, (n.name, ours_q.shape, theirs_q.shape)
        # A requantization whose input is itself rounded (after a sigmoid's table, say) may also
        # flip where the boundary lies within that input's error: measured here, in code units.
        slack = 0.0
        p = g.producer(ir)
        if isinstance(p, Rescale):
            xi = g.tensor(p.inputs[0])
            err = np.abs(to_float(tr[p.inputs[0]], xi.type) - fl[p.inputs[0]])
            m = np.abs(np.array([float(v) for v in p.scale]))
            slack = t.to_logical(err * (m if p.per_channel else m[0]))
        diff = ours_q != theirs_q
        assert np.all(np.abs(ours_q - theirs_q)[diff] == 1), f"{n.name}: codes differ by more than one step"
        allowed = edge < TIE + slack
        assert np.all(allowed[diff]), f"{n.name}: codes differ away from a rounding boundary: {edge[diff & ~allowed]}"
        flipped |= diff.reshape(x.shape[0], -1).any(axis=1)
        checked += 1
    assert checked, "no quantizer was compared"
    return flipped


def assert_matches_qonnx(g, model: onnx.ModelProto, x: np.ndarray, quantized_output: bool,
                         y: np.ndarray | None = None) -> np.ndarray:
    """The stated bound against qonnx's execution (module docstring); returns qonnx's outputs."""
    ref, ctxs, inits, mw = qonnx_run(model, x)
    flipped = code_flips(g, x, ctxs, inits, mw)
    y = run_fixed(g, [x])[0] if y is None else y
    # Near ties are rare (none in these tests' samples): a few flipped samples at most.
    assert np.sum(flipped) <= max(1, len(flipped) // 20), f"{np.sum(flipped)} of {len(flipped)} samples met a near tie"
    ok = ~flipped
    if quantized_output:
        np.testing.assert_array_equal(y[ok].astype(np.float32), ref[ok])
    else:
        out = g.tensor(g.outputs[0])
        last = g.producer(g.outputs[0])
        delta = last.delta if isinstance(last, Rescale) else 0.0
        tol = (out.type.lsb / 2 + delta) * out.scale + 1e-5 * (1 + np.abs(ref[ok]))
        assert np.all(np.abs(y[ok] - ref[ok]) <= tol), np.max(np.abs(y[ok] - ref[ok]))
    return ref


# ---------------------------------------------------------------- hand-built QONNX graphs

def quant(inp: str, out: str, scale: str, bits: str, signed: int = 1, narrow: int = 0, mode: str = "ROUND",
          domain: str = QDOMAIN) -> onnx.NodeProto:
    return helper.make_node("Quant", [inp, scale, "zero", bits], [out], domain=domain, signed=signed, narrow=narrow,
                            rounding_mode=mode)


def make(nodes, x_shape, y_shape, init, opset: int = 13, domains=(QDOMAIN,)) -> onnx.ModelProto:
    init = {"zero": np.array(0.0, np.float32), "b8": np.array(8.0, np.float32), **init}
    g = helper.make_graph(nodes, "q", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *x_shape])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", *y_shape])],
                          [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in init.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset), *(helper.make_opsetid(d, 1) for d in domains)])
    m.ir_version = 8
    return m


def f32(v) -> np.ndarray:
    return np.asarray(v, dtype=np.float32)


def linear_case(kind: str) -> tuple[onnx.ModelProto, tuple[int, ...]]:
    """input Quant -> Gemm/MatMul/Conv with Quant'ed weights (float scale per tensor or per
    output channel) and a float bias -> ReLU -> unsigned Quant (the output)."""
    s_in, s_act = f32(0.0371), f32(0.0517)
    if kind.startswith("gemm") or kind.startswith("matmul"):
        k, n = 10, 6
        if kind == "gemm_tensor":
            w, s_w, node = RNG.normal(size=(n, k)) * 0.4, f32(0.00731), dict(op="Gemm", transB=1)
        elif kind == "gemm_channel":  # Brevitas' per-channel Linear: scale (out, 1), transB
            w, s_w, node = RNG.normal(size=(n, k)) * 0.4, f32(RNG.uniform(0.003, 0.009, size=(n, 1))), dict(op="Gemm", transB=1)
        else:  # MatMul with a (1, out) scale
            w, s_w, node = RNG.normal(size=(k, n)) * 0.4, f32(RNG.uniform(0.003, 0.009, size=(1, n))), dict(op="MatMul")
        op = node.pop("op")
        ins = ["xq", "wq", "bias"] if op == "Gemm" else ["xq", "wq"]
        mm = [helper.make_node(op, ins, ["h"], **node)]
        if op == "MatMul":
            mm.append(helper.make_node("Add", ["h", "bias"], ["h2"]))
        h = "h" if op == "Gemm" else "h2"
        x_shape, y_shape = (k,), (n,)
        bias = RNG.normal(size=n) * 0.3
    else:
        c_in, c_out = 3, 5
        one_d = kind == "conv1d_channel"
        ksz = (3,) if one_d else (3, 3)
        w = RNG.normal(size=(c_out, c_in, *ksz)) * 0.4
        per = kind != "conv_tensor"
        s_w = f32(RNG.uniform(0.003, 0.009, size=(c_out, 1, 1) + ((1,) if not one_d else ()))) if per else f32(0.00731)
        pads = [1, 1] if one_d else [1, 1, 1, 1]
        mm = [helper.make_node("Conv", ["xq", "wq", "bias"], ["h"], kernel_shape=list(ksz), pads=pads)]
        h = "h"
        x_shape = (c_in, 7) if one_d else (c_in, 5, 6)
        y_shape = (c_out, *x_shape[1:])
        bias = RNG.normal(size=c_out) * 0.3
    nodes = [quant("x", "xq", "s_in", "b8"), quant("w", "wq", "s_w", "b8", narrow=1), *mm,
             helper.make_node("Relu", [h], ["r"]), quant("r", "y", "s_act", "b8", signed=0)]
    return make(nodes, x_shape, y_shape, dict(s_in=s_in, s_act=s_act, s_w=s_w, w=w, bias=bias)), x_shape


@pytest.mark.parametrize("kind", ["gemm_tensor", "gemm_channel", "matmul_channel", "conv_tensor", "conv_channel",
                                  "conv1d_channel"])
def test_weight_scales_move_behind_the_accumulator(kind):
    m, x_shape = linear_case(kind)
    x = (RNG.normal(size=(24, *x_shape)) * 2).astype(np.float32)
    g = compile_graph(m)
    mac = [l for l in g.layers if l.op_type in ("Dense", "Conv")]
    assert len(mac) == 1
    layer = mac[0]
    # The integer codes are the weights, on the Quant's grid (narrow range: AP_SAT_SYM).
    assert np.all(layer.weight == np.round(layer.weight)) and np.abs(layer.weight).max() <= 127
    assert layer.weight_t == FixedType.parse("ap_fixed<8,8,AP_RND_CONV,AP_SAT_SYM>")
    # One Rescale behind it holds s_in * s_w / s_act and the bias, and absorbed ReLU + Quant.
    (r,) = [l for l in g.layers if isinstance(l, Rescale)]
    assert r.inputs == layer.outputs and r.relu and r.out_quant == FixedType.parse("ap_ufixed<8,8,AP_RND_CONV,AP_SAT>")
    assert r.scale.size == (1 if kind.endswith("tensor") else layer.weight.shape[0 if kind.startswith("conv") else 1])
    assert r.delta <= 2.0 ** -GUARD_BITS
    # The host divides the input by s_in (in float32, as QONNX) and multiplies the output by s_act.
    assert g.tensor(g.inputs[0]).scale == float(np.float32(0.0371))
    assert g.tensor(g.outputs[0]).scale == float(np.float32(0.0517))
    assert [type(l).__name__ for l in g.layers if l.op_type not in ("Reorder", "Reshape")] == [
        "Quantize", type(layer).__name__, "Rescale"]
    assert_matches_qonnx(g, m, x, quantized_output=True)


def activation_case(kind: str) -> onnx.ModelProto:
    """Per-tensor power-of-two weights; the activation quantizers carry the other scales."""
    w = np.round(RNG.normal(size=(6, 8)) * 20) / 64
    init = dict(s_in=f32(0.0371), s_w=f32(2.0 ** -6), w=w, bias=RNG.normal(size=6) * 0.2, s_out=f32(0.0233))
    head = [quant("x", "xq", "s_in", "b8"), quant("w", "wq", "s_w", "b8"),
            helper.make_node("Gemm", ["xq", "wq", "bias"], ["h"], transB=1)]
    if kind == "signed_output":  # a signed quantizer right after the Gemm: Rescale + Quant, no ReLU
        nodes = [*head, quant("h", "y", "s_out", "b8")]
    elif kind == "per_channel":  # an activation quantizer with one scale per feature (1, C)
        init["s_out"] = f32(RNG.uniform(0.01, 0.05, size=(1, 6)))
        nodes = [*head, helper.make_node("Relu", ["h"], ["r"]), quant("r", "y", "s_out", "b8", signed=0)]
    elif kind == "after_add":  # two branches meet: nothing absorbs it, the requantization stays
        init.update(w2=np.round(RNG.normal(size=(6, 8)) * 20) / 64)
        nodes = [*head, quant("w2", "w2q", "s_w", "b8"), helper.make_node("Gemm", ["xq", "w2q"], ["h2"], transB=1),
                 helper.make_node("Add", ["h", "h2"], ["a"]), helper.make_node("Relu", ["a"], ["r"]),
                 quant("r", "y", "s_out", "b8", signed=0)]
    elif kind == "mul_div":  # FINN-style scalar Mul / Div by constants around a ReLU
        init.update(c=f32(0.731), d=f32(3.3))
        nodes = [*head, helper.make_node("Mul", ["h", "c"], ["h2"]), helper.make_node("Relu", ["h2"], ["r"]),
                 helper.make_node("Div", ["r", "d"], ["r2"]), quant("r2", "y", "s_out", "b8", signed=0)]
    else:
        raise AssertionError(kind)
    return make(nodes, (8,), (6,), init)


@pytest.mark.parametrize("kind", ["signed_output", "per_channel", "after_add", "mul_div"])
def test_activation_scales_are_requantization_multipliers(kind):
    m = activation_case(kind)
    x = (RNG.normal(size=(32, 8)) * 2).astype(np.float32)
    # The branches' sum is rounded into its result type before the requantization: make it
    # fine, so the codes stay those of the exact arithmetic (the bound counts its error).
    wide = LayerPrecision(result=FixedType.parse("ap_fixed<32,10,AP_RND_CONV,AP_SAT>"))
    g = compile_graph(m, PrecisionConfig(layer_type={"Add": wide, "Rescale": wide}))
    rescales = [l for l in g.layers if isinstance(l, Rescale)]
    # The requantization absorbed the output Quant (and the ReLU, the Mul and the Div).
    assert sum(r.out_quant is not None for r in rescales) == 1
    assert not any(isinstance(l, (Quantize, Activation)) for l in g.layers[1:])
    # Besides it: the two Gemms' own rescales before the Add; the dequantization of a
    # per-channel output (one host scale per output cannot hold per-channel scales).
    assert len(rescales) == {"signed_output": 1, "per_channel": 2, "after_add": 3, "mul_div": 1}[kind]
    out_scale = g.tensor(g.outputs[0]).scale
    assert out_scale == (1.0 if kind == "per_channel" else float(np.float32(0.0233)))
    assert_matches_qonnx(g, m, x, quantized_output=kind != "per_channel")


def pow2_twin(m: onnx.ModelProto) -> onnx.ModelProto:
    """The same graph with power-of-two quantizer scales: the exact ap_fixed path, no Rescale."""
    p = onnx.ModelProto()
    p.CopyFrom(m)
    for init in p.graph.initializer:
        if init.name in ("s_in", "s_act", "s_w"):
            init.CopyFrom(numpy_helper.from_array(f32(2.0 ** -7 if init.name == "s_w" else 2.0 ** -4), init.name))
    return p


def test_the_extra_multiply_is_in_the_estimate():
    """Per-channel float weight scales cost, over the same network with power-of-two scales,
    exactly the requantization's lanes: one multiplier (input width x multiplier width, DSP48E1
    slices by the cost model's width rule), one adder of the exact sum and one output register
    per output, and its pipeline stages; the Dense itself costs the same."""
    from hwprune.sim import resources as hw

    m, _ = linear_case("gemm_channel")
    g = compile_graph(m)
    (r,) = [l for l in g.layers if isinstance(l, Rescale)]
    assert not any(isinstance(l, Rescale) for l in compile_graph(pow2_twin(m)).layers)
    x_t, lanes = g.tensor(r.inputs[0]).type, 6
    # The 18-bit accumulator times the multiplier the bound asks for (> 25 bits: two slices).
    assert x_t.width == 18 and 25 < r.scale_t.width <= 32
    dsp = lanes * hw.dsps_per_multiplier(x_t.width, r.scale_t.width, "dsp48e1")
    assert dsp == 12
    ea, eb = hwprune.estimate(m, "pynq-z2"), hwprune.estimate(pow2_twin(m), "pynq-z2")
    # The Dense layers hold different codes (the calibrated fabric-multiplier cost depends on
    # the constants): take their difference out, the rest is the requantization.
    da, db = ([l.cost for l in e.layers if l.op == "Dense"][0] for e in (ea, eb))
    assert ea.network.dsp - eb.network.dsp - (da.dsp - db.dsp) == dsp
    assert ea.network.lut - eb.network.lut - (da.lut - db.lut) == pytest.approx(lanes * hw.lut_per_adder(r.sum_t.width), abs=1)
    assert ea.network.ff - eb.network.ff - (da.ff - db.ff) == pytest.approx(lanes * hw.ff_per_register(8), abs=1)
    assert ea.latency_cycles - eb.latency_cycles == 1 + 3  # one word, three pipeline stages
    (c,) = [l.cost for l in ea.layers if l.op == "Rescale"]
    assert c.multipliers == lanes and "requantization" in c.note


def test_rescale_meets_its_stated_bound_exactly():
    """|x * m_q + b_q - (x * m + b)| <= delta for every input whose result lands in the
    output range, checked in exact rational arithmetic on the words the layer chose."""
    from fractions import Fraction

    m, x_shape = linear_case("gemm_channel")
    g = compile_graph(m)
    (r,) = [l for l in g.layers if isinstance(l, Rescale)]
    x_t, out_t = g.tensor(r.inputs[0]).type, g.tensor(r.output).type
    mq, bq = r.raw_params(r.scale.size)
    worst = Fraction(0)
    for c in range(r.scale.size):
        m_c, b_c = r.scale[c], r.shift[c]
        for raw in np.linspace(x_t.min_raw, x_t.max_raw, 2001).astype(np.int64):
            x = Fraction(int(raw), 2 ** x_t.frac)
            exact = x * m_c + b_c
            if abs(exact) > out_t.max_value + out_t.lsb:
                continue
            got = x * Fraction(int(mq[c]), 2 ** r.scale_t.frac) + Fraction(int(bq[c]), 2 ** r.shift_t.frac)
            worst = max(worst, abs(got - exact))
    assert float(worst) <= r.delta <= out_t.lsb * 2.0 ** -GUARD_BITS


def test_the_pynq_driver_applies_the_host_scales():
    """The deployment driver divides an input by its host scale and multiplies an output by
    its own (accelerator.json `scale`), as the fixed reference does."""
    from hwprune.backend import pynq_driver as drv
    from hwprune.backend.axis import port_spec
    from hwprune.pipeline import input_raw

    m, x_shape = linear_case("gemm_channel")
    g = compile_graph(m)
    x = (RNG.normal(size=(16, *x_shape)) * 2).astype(np.float32)
    p_in, p_out = (drv.PortSpec.from_dict(port_spec(g, n).to_dict()) for n in (g.inputs[0], g.outputs[0]))
    assert p_in.scale == float(np.float32(0.0371)) and p_out.scale == float(np.float32(0.0517))
    np.testing.assert_array_equal(drv.quantize(x, p_in), input_raw(g, g.inputs[0], x))
    raw = trace_fixed(g, [x]).values[g.outputs[0]]
    np.testing.assert_array_equal(drv.to_float(raw, p_out), run_fixed(g, [x])[0])


def test_embedding_table_scale_follows_the_lookup():
    """A Quant'ed table with a float scale (Brevitas' QuantEmbedding default): the lookup
    returns the codes, the scale moves into the next Dense's requantization."""
    v, d, n_tok = 20, 6, 5
    init = dict(table=RNG.normal(size=(v, d)), s_t=f32(0.0213), w=RNG.normal(size=(d, 4)) * 0.5,
                s_w=f32(RNG.uniform(0.003, 0.009, size=(1, 4))), bias=RNG.normal(size=4) * 0.2, s_out=f32(0.047),
                zero=f32(0.0), b8=f32(8.0))
    nodes = [quant("table", "tq", "s_t", "b8"), helper.make_node("Gather", ["tq", "ids"], ["e"]),
             quant("w", "wq", "s_w", "b8", narrow=1), helper.make_node("MatMul", ["e", "wq"], ["h"]),
             helper.make_node("Add", ["h", "bias"], ["h2"]), helper.make_node("Relu", ["h2"], ["r"]),
             quant("r", "y", "s_out", "b8", signed=0)]
    graph = helper.make_graph(nodes, "emb", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", n_tok])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", n_tok, 4])],
                              [numpy_helper.from_array(np.asarray(val, np.float32), k) for k, val in init.items()])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QDOMAIN, 1)])
    m.ir_version = 8
    g = compile_graph(m)
    (emb,) = [l for l in g.layers if l.op_type == "Embedding"]
    assert np.all(emb.table == np.round(emb.table)) and emb.table_hint == FixedType.parse("ap_fixed<8,8,AP_RND_CONV,AP_SAT>")
    (r,) = [l for l in g.layers if isinstance(l, Rescale)]  # s_t * s_w / s_out, behind the Dense
    assert g.producer(r.inputs[0]).op_type == "Dense" and r.out_quant is not None and r.scale.size == 4
    ids = RNG.integers(0, v, size=(24, n_tok)).astype(np.int64)
    assert_matches_qonnx(g, m, ids, quantized_output=True)


# ---------------------------------------------------------------- old-style domains

@pytest.mark.parametrize("domain", ["finn.custom_op.general", "onnx.brevitas", "finn"])
def test_old_style_domains_without_opset_import_load(tmp_path, domain):
    """As in the QONNX model zoo and FINN's test data: Quant nodes in an old domain, no opset
    import for it, an old ONNX opset; onnx.checker alone refuses such a file."""
    m, x_shape = linear_case("gemm_tensor")
    for n in m.graph.node:
        if n.op_type == "Quant":
            n.domain = domain
    del m.opset_import[:]
    m.opset_import.append(helper.make_opsetid("", 11))
    path = tmp_path / "zoo.onnx"
    onnx.save(m, path)
    with pytest.raises(Exception, match="opset import"):
        onnx.checker.check_model(onnx.load(path))
    proto = load_onnx(path)
    assert {n.domain for n in proto.graph.node if n.op_type == "Quant"} == {QDOMAIN}
    x1 = (RNG.normal(size=(3, *x_shape)) * 2).astype(np.float32)
    np.testing.assert_array_equal(hwprune.run(path, [x1], engine="float")[0], qonnx_run(m, x1)[0])
    assert QDOMAIN in {o.domain for o in proto.opset_import}
    x = (RNG.normal(size=(16, *x_shape)) * 2).astype(np.float32)
    assert_matches_qonnx(compile_graph(path), m, x, quantized_output=True)
    if domain == "onnx.brevitas":  # the command that used to stop at onnx.checker
        from hwprune.cli import main

        assert main(["export", str(path), "--board", "pynq-z2", "--out", str(tmp_path / "prj")]) == 0
        assert (tmp_path / "prj").is_dir()


def test_a_finn_hardware_layer_gets_the_clear_error(tmp_path, capsys):
    m, _ = linear_case("gemm_tensor")
    n = m.graph.node[2]
    fpga = helper.make_node("MatrixVectorActivation", list(n.input[:2]), list(n.output), domain="finn",
                            name="MVAU_0", backend="fpgadataflow")
    m.graph.node.remove(n)
    m.graph.node.insert(2, fpga)
    path = tmp_path / "finn_hw.onnx"
    onnx.save(m, path)
    with pytest.raises(UnsupportedOpError, match="MatrixVectorActivation.*MVAU_0"):
        compile_graph(path)
    from hwprune.cli import main

    assert main(["export", str(path), "--board", "pynq-z2", "--out", str(tmp_path / "prj")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "MVAU_0" in err and not (tmp_path / "prj").exists()


def test_malformed_scales_get_clear_errors():
    m, _ = linear_case("gemm_tensor")
    bad = onnx.ModelProto()
    bad.CopyFrom(m)
    for init in bad.graph.initializer:
        if init.name == "s_w":  # varies along the weight's input axis: cannot follow the accumulator
            init.CopyFrom(numpy_helper.from_array(f32(RNG.uniform(0.003, 0.009, size=(1, 10))), "s_w"))
    with pytest.raises(UnsupportedOpError, match="input axis"):
        compile_graph(bad)
    bad.CopyFrom(m)
    for init in bad.graph.initializer:
        if init.name == "s_act":
            init.CopyFrom(numpy_helper.from_array(f32([0.5, 0.25]), "s_act"))
    with pytest.raises(UnsupportedOpError, match="broadcast"):
        compile_graph(bad)
    bad.CopyFrom(m)
    for init in bad.graph.initializer:
        if init.name == "s_act":
            init.CopyFrom(numpy_helper.from_array(f32(-0.5), "s_act"))
    with pytest.raises(UnsupportedOpError, match="positive"):
        compile_graph(bad)


# ---------------------------------------------------------------- MultiThreshold

def mt(inp: str, out: str, thr: str, **kw) -> onnx.NodeProto:
    return helper.make_node("MultiThreshold", [inp, thr], [out], domain="finn", out_dtype="INT2", **kw)


def finn_tfc() -> onnx.ModelProto:
    """A streamlined FINN MLP as FINN's test data writes it: domain "finn", no opset import for
    it, opset 11: MultiThreshold (input, 2-bit signed via out_bias) -> MatMul (integer weights)
    -> MultiThreshold per channel -> MatMul -> Mul (scale) -> Add (bias)."""
    init = dict(t0=np.array([[0.2, 0.45, 0.7]]), w1=RNG.integers(-1, 2, size=(16, 8)),
                t1=np.sort(RNG.normal(size=(8, 3)) * 3, axis=1), w2=RNG.integers(-2, 2, size=(8, 4)),
                sc=np.array(0.0371), b=RNG.normal(size=4))
    nodes = [mt("x", "a0", "t0", out_bias=-2.0), helper.make_node("MatMul", ["a0", "w1"], ["h1"]),
             mt("h1", "a1", "t1", out_bias=-2.0, data_layout="NC"), helper.make_node("MatMul", ["a1", "w2"], ["h2"]),
             helper.make_node("Mul", ["h2", "sc"], ["h3"]), helper.make_node("Add", ["h3", "b"], ["y"])]
    m = make(nodes, (16,), (4,), init, opset=11, domains=())
    for name, dt in (("w1", "INT2"), ("w2", "INT2")):  # FINN's datatype annotations of the weights
        qa = m.graph.quantization_annotation.add()
        qa.tensor_name = name
        qa.quant_parameter_tensor_names.add(key="finn_datatype", value=dt)
    return m


def finn_cnn() -> onnx.ModelProto:
    """Conv -> MultiThreshold per channel (NCHW, out_scale 2 / out_bias -3: odd codes) ->
    MaxPool -> Flatten -> MatMul -> Mul; thresholds on a float input first."""
    init = dict(t0=np.array([[-0.5, 0.0, 0.5]]), w=RNG.integers(-1, 2, size=(4, 2, 3, 3)),
                t1=np.sort(RNG.normal(size=(4, 3)) * 2, axis=1), w2=RNG.integers(-1, 2, size=(4 * 2 * 2, 3)),
                sc=np.array(0.125))
    nodes = [mt("x", "a0", "t0", data_layout="NCHW"), helper.make_node("Conv", ["a0", "w"], ["c"], kernel_shape=[3, 3]),
             mt("c", "a1", "t1", out_scale=2.0, out_bias=-3.0, data_layout="NCHW"),
             helper.make_node("MaxPool", ["a1"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"]), helper.make_node("MatMul", ["f", "w2"], ["h"]),
             helper.make_node("Mul", ["h", "sc"], ["y"])]
    return make(nodes, (2, 6, 6), (3,), init, opset=11, domains=())


def test_multithreshold_mlp_matches_qonnx_and_csim(tmp_path):
    m = finn_tfc()
    g = compile_graph(m)
    ths = [l for l in g.layers if isinstance(l, Threshold)]
    assert len(ths) == 2 and ths[1].per_channel
    # The -2 offsets moved into the MatMuls' and then the second thresholds; the scale and
    # the bias are one Rescale at the end.
    assert [type(l).__name__ for l in g.layers] == ["Threshold", "Dense", "Threshold", "Dense", "Rescale"]
    # The annotated INT2 weights keep their exact type (2-bit products: no DSPs).
    assert [l.weight_t for l in g.layers if l.op_type == "Dense"] == [FixedType(2, 2, True)] * 2
    x = (RNG.integers(0, 16, size=(32, 16)) / 16).astype(np.float32)  # on the input type's grid
    ref = assert_matches_qonnx(g, m, x, quantized_output=False)
    # The float engine runs QONNX/FINN graphs on qonnx's executor (onnxruntime has no MultiThreshold).
    np.testing.assert_array_equal(hwprune.run(m, [x], engine="float")[0], ref)
    prj = hwprune.export(m, tmp_path / "prj", io_type="parallel")
    g2 = load_project_graph(prj)
    np.testing.assert_array_equal(raw_outputs(prj, [x])[0], trace_fixed(g2, [x]).values[g2.outputs[0]])


def test_multithreshold_cnn_csim(tmp_path):
    m = finn_cnn()
    x = (RNG.integers(-16, 16, size=(8, 2, 6, 6)) / 16).astype(np.float32)
    g = compile_graph(m, io_type="stream")
    # The second MultiThreshold's out_scale 2 / out_bias -3 pass the max pool and the flatten
    # (max(2x - 3) = 2 max(x) - 3) into the MatMul: its requantization holds 2 x the Mul's
    # 0.125 and the offset -3 x 0.125 x each column's weight sum, shifts only (no DSP).
    assert [l.op_type for l in g.layers] == ["Threshold", "Reorder", "Conv", "Threshold", "Pool", "Reshape", "Dense",
                                             "Rescale"]
    (last,) = [l for l in g.layers if isinstance(l, Rescale)]
    w2 = next(numpy_helper.to_array(i) for i in m.graph.initializer if i.name == "w2").astype(np.float64)
    assert last.scale[0] == 0.25 and [float(v) for v in last.shift] == list(-3 * 0.125 * w2.sum(axis=0))
    assert last.multiplier_free()
    assert all(c.dsp == 0 for c in (l.cost for l in hwprune.estimate(m, "pynq-z2", io_type="stream").layers
                                    if l.op == "Rescale"))
    assert_matches_qonnx(g, m, x, quantized_output=False)
    prj = hwprune.export(m, tmp_path / "prj", io_type="stream")
    g2 = load_project_graph(prj)
    np.testing.assert_array_equal(raw_outputs(prj, [x])[0], trace_fixed(g2, [x]).values[g2.outputs[0]])


def test_multithreshold_refusals():
    m = finn_tfc()
    bad = onnx.ModelProto()
    bad.CopyFrom(m)
    for init in bad.graph.initializer:
        if init.name == "t1":
            init.CopyFrom(numpy_helper.from_array(f32(np.zeros((5, 3))), "t1"))
    with pytest.raises(UnsupportedOpError, match="MultiThreshold.*5 threshold rows for 8 channels"):
        compile_graph(bad)


# ---------------------------------------------------------------- Brevitas with its defaults

def _brevitas_model(kind: str, per_channel: bool):
    torch = pytest.importorskip("torch")
    pytest.importorskip("brevitas")
    import brevitas.nn as qnn
    from brevitas.quant import Int8WeightPerChannelFloat

    kw = dict(weight_quant=Int8WeightPerChannelFloat) if per_channel else {}
    torch.manual_seed(0)
    if kind == "mlp":
        model = torch.nn.Sequential(
            qnn.QuantIdentity(return_quant_tensor=True), qnn.QuantLinear(12, 16, bias=True, **kw),
            qnn.QuantReLU(return_quant_tensor=True), qnn.QuantLinear(16, 16, bias=True, **kw),
            qnn.QuantReLU(return_quant_tensor=True), qnn.QuantLinear(16, 4, bias=True, **kw))
        shape = (12,)
    else:
        model = torch.nn.Sequential(
            qnn.QuantIdentity(return_quant_tensor=True), qnn.QuantConv2d(3, 8, 3, padding=1, bias=True, **kw),
            qnn.QuantReLU(return_quant_tensor=True), torch.nn.MaxPool2d(2),
            qnn.QuantConv2d(8, 8, 3, bias=True, **kw), qnn.QuantReLU(return_quant_tensor=True),
            torch.nn.Flatten(), qnn.QuantLinear(8 * 2 * 2, 4, bias=True, **kw))
        shape = (3, 8, 8)
    # A few QAT steps on synthetic data: the scales are Brevitas' float defaults.
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(64, *shape, generator=gen)
    y = torch.randint(0, 4, (64,), generator=gen)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(8):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    return model, shape


@pytest.mark.parametrize("kind,per_channel,ios", [("mlp", False, ("parallel",)), ("mlp", True, ("stream",)),
                                                  ("cnn", False, ("stream",)), ("cnn", True, ("parallel", "stream"))])
def test_brevitas_defaults_match_qonnx_and_csim(tmp_path, kind, per_channel, ios):
    torch = pytest.importorskip("torch")
    from brevitas.export import export_qonnx

    model, shape = _brevitas_model(kind, per_channel)
    path = tmp_path / "brevitas.onnx"
    export_qonnx(model, torch.randn(1, *shape), export_path=str(path))
    proto = onnx.load(str(path))
    scales = [numpy_helper.to_array(i) for i in proto.graph.initializer if "weight_quant" in i.name]
    assert any(s.size > 1 for s in scales) == per_channel  # what Brevitas exported
    x = np.random.default_rng(2).normal(size=(24, *shape)).astype(np.float32)
    for io in ios:
        g = compile_graph(proto, io_type=io)
        # One requantization per layer (the last one dequantizes: Brevitas' float output).
        assert sum(isinstance(l, Rescale) for l in g.layers) == 3 and not any(l.op_type == "ScaleShift" for l in g.layers)
        prj = hwprune.export(proto, tmp_path / io, io_type=io)
        g2 = load_project_graph(prj)
        np.testing.assert_array_equal(raw_outputs(prj, [x])[0], trace_fixed(g2, [x]).values[g2.outputs[0]])
        ref = assert_matches_qonnx(g2, proto, x, quantized_output=False, y=hwprune.run(prj, [x], engine="csim")[0])
    with torch.no_grad():
        np.testing.assert_allclose(model(torch.from_numpy(x)).numpy(), ref, atol=1e-5)  # qonnx == Brevitas
