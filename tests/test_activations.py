"""Activations: float IR vs onnxruntime, fixed vs C simulation bit for bit, fixed vs float
within the documented table/rounding bounds — for several precisions and both io types."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import hwprune
from conftest import fin, make_model
from hwprune.backend.csim import raw_outputs
from hwprune.fixed import FixedType
from hwprune.pipeline import compile_graph, error_bounds, run_fixed, run_float, run_onnx, saturation_report, trace_fixed
from hwprune.precision import LayerPrecision, PrecisionConfig

RNG = np.random.default_rng(0)
OPS = [
    helper.make_node("Relu", ["x"], ["relu"]),
    helper.make_node("LeakyRelu", ["x"], ["leaky"], alpha=0.2),
    helper.make_node("Elu", ["x"], ["elu"], alpha=0.7),
    helper.make_node("Sigmoid", ["x"], ["sigmoid"]),
    helper.make_node("Tanh", ["x"], ["tanh"]),
    helper.make_node("Softmax", ["x"], ["softmax"], axis=-1),
    helper.make_node("Softmax", ["x"], ["softmax_c"], axis=1),
    helper.make_node("PRelu", ["x", "slope"], ["prelu"]),
]
OUTS = ["relu", "leaky", "elu", "sigmoid", "tanh", "softmax", "softmax_c", "prelu"]


def model():
    return make_model(OPS, [fin("x", 4, 6)], [fin(o, 4, 6) for o in OUTS],
                      [("slope", np.array([[0.1], [-0.3], [0.25], [1.5]]))])


PRECISIONS = {
    "default": PrecisionConfig(),
    "narrow": PrecisionConfig().with_overrides(result=FixedType.parse("ap_fixed<10,4,AP_RND,AP_SAT>")),
    "softmax_unsigned": PrecisionConfig(
        model=LayerPrecision(result=FixedType.parse("ap_fixed<18,6,AP_RND_CONV,AP_SAT>"), table_size=256),
        layer_type={"Softmax": LayerPrecision(result=FixedType.parse("ap_ufixed<16,0,AP_RND_CONV,AP_SAT>")),
                    "Sigmoid": LayerPrecision(result=FixedType.parse("ap_ufixed<12,0,AP_RND_CONV,AP_SAT>"))}),
}


@pytest.mark.parametrize("io", ["parallel", "stream"])
@pytest.mark.parametrize("pname", list(PRECISIONS))
def test_activations(tmp_path, io, pname):
    prec = PRECISIONS[pname]
    m = model()
    x = (RNG.normal(size=(6, 4, 6)) * 4).astype(np.float32)
    x[0, 0, :] = [-30, -8.5, -7.9, 0, 7.99, 30]  # beyond every table range
    g = compile_graph(m, prec, io)
    ref = run_onnx(m, [x])
    for a, b in zip(run_float(g, [x]), ref):
        np.testing.assert_allclose(a, b, atol=1e-6)
    prj = hwprune.export(m, tmp_path / "prj", io_type=io, precision=prec)
    tr = trace_fixed(g, [x])
    for got, name in zip(raw_outputs(prj, [x]), g.outputs):
        np.testing.assert_array_equal(got, tr.values[name], err_msg=name)
    saturated = {g.producer(o).name for o in g.outputs if g.producer(o).name in saturation_report(g, [x])}
    for name, out, y, yf, bound in zip(OUTS, g.outputs, run_fixed(g, [x]), ref, error_bounds(g, [x])):
        if g.producer(out).name in saturated:
            continue  # the bound holds only where nothing overflowed
        err = np.abs(y - yf)
        # onnxruntime computes in float32: allow its own rounding on top of the bound.
        assert np.all(err <= bound + 1e-6 * (1 + np.abs(yf))), f"{name}: max err {err.max():.3g} > bound"


def test_table_functions_are_accurate_at_default_precision():
    """Documented accuracy (docs/activations.md) at the default 16-bit type and 1024 entries."""
    m = model()
    x = np.linspace(-6, 6, 4 * 6 * 50).reshape(50, 4, 6).astype(np.float32)
    g = compile_graph(m)
    errs = {n: float(np.max(np.abs(a - b))) for n, a, b in zip(OUTS, run_fixed(g, [x]), run_onnx(m, [x]))}
    assert errs["sigmoid"] < 2.5e-3 and errs["tanh"] < 5e-3 and errs["elu"] < 5e-3
    assert errs["softmax"] < 1.2e-2 and errs["relu"] <= 2 ** -11
