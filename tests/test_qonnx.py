"""QONNX Quant nodes with power-of-two scales map exactly onto fixed point: the C simulation
equals QONNX's own execution bit for bit (hand-built graphs and a Brevitas export). Other
scales: tests/test_qonnx_scales.py."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import hwprune
from hwprune.backend.csim import raw_outputs
from hwprune.errors import UnsupportedOpError
from hwprune.pipeline import compile_graph, run_fixed, trace_fixed
from hwprune.project import load_project_graph

QDOMAIN = "qonnx.custom_op.general"
RNG = np.random.default_rng(0)


def quant(inp: str, out: str, scale: str, bits: str, signed: int = 1, narrow: int = 0, mode: str = "ROUND"):
    return helper.make_node("Quant", [inp, scale, "zero", bits], [out], domain=QDOMAIN, signed=signed, narrow=narrow,
                            rounding_mode=mode)


def qonnx_model(scales=(2.0**-4, 2.0**-6, 2.0**-3), mode: str = "ROUND", narrow: int = 0):
    init = {
        "zero": np.array(0.0, dtype=np.float32), "b8": np.array(8.0, dtype=np.float32), "b6": np.array(6.0, dtype=np.float32),
        "s_in": np.array(scales[0], dtype=np.float32), "s_w": np.array(scales[1], dtype=np.float32),
        "s_act": np.array(scales[2], dtype=np.float32),
        "w1": RNG.normal(size=(12, 10)).astype(np.float32) * 0.5, "w2": RNG.normal(size=(3, 12)).astype(np.float32) * 0.5,
        "bias1": RNG.normal(size=12).astype(np.float32) * 0.2,
        "s_b": np.array(scales[0] * scales[1], dtype=np.float32), "b16": np.array(16.0, dtype=np.float32),
    }
    nodes = [
        quant("x", "xq", "s_in", "b8", mode=mode),
        quant("w1", "w1q", "s_w", "b6", narrow=narrow),
        quant("bias1", "bias1q", "s_b", "b16"),  # a bias on the accumulator grid, as Brevitas exports it
        helper.make_node("Gemm", ["xq", "w1q", "bias1q"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["r"]),
        quant("r", "rq", "s_act", "b8", signed=0, mode=mode),
        quant("w2", "w2q", "s_w", "b6", narrow=narrow),
        helper.make_node("Gemm", ["rq", "w2q"], ["y0"], transB=1),
        quant("y0", "y", "s_act", "b8", mode=mode),
    ]
    g = helper.make_graph(nodes, "qmlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 10])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
                          [numpy_helper.from_array(v, k) for k, v in init.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QDOMAIN, 1)])
    m.ir_version = 8
    return m


def qonnx_reference(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.util.cleanup import cleanup_model

    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for vi in (*fixed.graph.input, *fixed.graph.output):
        vi.type.tensor_type.shape.dim[0].dim_value = 1  # QONNX's executor wants concrete shapes
    mw = cleanup_model(ModelWrapper(fixed))
    iname, oname = mw.graph.input[0].name, mw.graph.output[0].name
    return np.stack([execute_onnx(mw, {iname: x[i:i + 1]})[oname][0] for i in range(x.shape[0])])


@pytest.mark.parametrize("mode,narrow", [pytest.param("ROUND", 0, marks=pytest.mark.slow),
                                         pytest.param("FLOOR", 1, marks=pytest.mark.slow), ("HALF_UP", 0)])  # slow: over ~20 s
def test_hand_built_qonnx_is_bit_exact(tmp_path, mode, narrow):
    m = qonnx_model(mode=mode, narrow=narrow)
    x = (RNG.normal(size=(16, 10)) * 3).astype(np.float32)
    ref = qonnx_reference(m, x)
    g = compile_graph(m)
    np.testing.assert_array_equal(run_fixed(g, [x])[0], ref)
    for io in ("parallel", "stream"):
        prj = hwprune.export(m, tmp_path / io, io_type=io)
        g2 = load_project_graph(prj)
        np.testing.assert_array_equal(raw_outputs(prj, [x])[0], trace_fixed(g2, [x]).values[g2.outputs[0]])
        np.testing.assert_array_equal(hwprune.run(prj, [x], engine="csim")[0], ref)


def test_other_scales_import_and_malformed_ones_are_refused():
    """A scale that is not a power of two imports (as a requantization: see
    tests/test_qonnx_scales.py); one that does not broadcast to its tensor is refused."""
    from hwprune.ops.rescale import Rescale

    m = qonnx_model()
    for init in m.graph.initializer:
        if init.name == "s_act":
            init.CopyFrom(numpy_helper.from_array(np.asarray(0.3, dtype=np.float32), "s_act"))
    g = compile_graph(m)
    assert any(isinstance(l, Rescale) for l in g.layers)
    x = (RNG.normal(size=(16, 10)) * 3).astype(np.float32)
    np.testing.assert_array_equal(run_fixed(g, [x])[0].astype(np.float32), qonnx_reference(m, x))
    for init in m.graph.initializer:
        if init.name == "s_act":
            init.CopyFrom(numpy_helper.from_array(np.asarray([0.5, 0.25], dtype=np.float32), "s_act"))
    with pytest.raises(UnsupportedOpError, match="broadcast"):
        compile_graph(m)


def test_brevitas_export_is_bit_exact(tmp_path):
    torch = pytest.importorskip("torch")
    brevitas = pytest.importorskip("brevitas")
    import brevitas.nn as qnn
    from brevitas.export import export_qonnx
    from brevitas.quant import Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint, Uint8ActPerTensorFixedPoint

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=True),
        qnn.QuantLinear(10, 16, bias=False, weight_quant=Int8WeightPerTensorFixedPoint),
        qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, return_quant_tensor=True),
        qnn.QuantLinear(16, 3, bias=False, weight_quant=Int8WeightPerTensorFixedPoint),
        # A quantized output: an unquantized one would be rounded into the configured result type.
        qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint),
    )
    x = torch.randn(64, 10)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(x)  # calibrate the activation scales
    model.eval()
    path = tmp_path / "brevitas.onnx"
    export_qonnx(model, torch.randn(1, 10), export_path=str(path))
    proto = onnx.load(str(path))
    xs = (np.random.default_rng(1).normal(size=(8, 10))).astype(np.float32)
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.util.cleanup import cleanup_model

    mw = cleanup_model(ModelWrapper(proto))
    iname, oname = mw.graph.input[0].name, mw.graph.output[0].name
    ref = np.concatenate([execute_onnx(mw, {iname: xs[i:i + 1]})[oname] for i in range(len(xs))])
    with torch.no_grad():
        torch_out = model(torch.from_numpy(xs))
    torch_out = getattr(torch_out, "value", torch_out).numpy()
    np.testing.assert_allclose(ref, torch_out, atol=1e-5)
    g = compile_graph(proto)
    np.testing.assert_array_equal(run_fixed(g, [xs])[0], ref)
    prj = hwprune.export(proto, tmp_path / "prj")
    np.testing.assert_array_equal(hwprune.run(prj, [xs], engine="csim")[0], ref)


def test_relu_and_unsigned_quant_fuse_into_the_producer(tmp_path):
    """Gemm -> Relu -> Quant(unsigned) is one Dense writing the Quant's type: same bits as QONNX,
    two processes and the wide accumulator stream fewer, float semantics and bounds intact."""
    from hwprune.ops.activation import Activation
    from hwprune.ops.dense import Dense
    from hwprune.ops.quant import Quantize
    from hwprune.pipeline import error_bounds, run_float

    m = qonnx_model()
    x = (RNG.normal(size=(32, 10)) * 3).astype(np.float32)
    ref = qonnx_reference(m, x)
    g = compile_graph(m, io_type="stream")
    dense = [l for l in g.layers if isinstance(l, Dense)]
    assert dense[0].out_quant is not None and not dense[0].out_quant.signed
    assert g.tensor(dense[0].output).type == dense[0].out_quant
    assert not any(isinstance(l, Activation) for l in g.layers)
    assert sum(isinstance(l, Quantize) for l in g.layers) == 2  # the input and the signed output quantizers
    np.testing.assert_array_equal(run_fixed(g, [x])[0], ref)
    np.testing.assert_allclose(run_float(g, [x])[0], ref, atol=1e-6)  # QONNX's float graph, fused
    assert np.all(np.abs(run_fixed(g, [x])[0] - run_float(g, [x])[0]) <= error_bounds(g, [x])[0] + 1e-9)
    prj = hwprune.export(m, tmp_path / "prj", io_type="stream")
    np.testing.assert_array_equal(hwprune.run(prj, [x], engine="csim")[0], ref)
