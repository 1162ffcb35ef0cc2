"""Activations: float IR vs onnxruntime, fixed vs C simulation bit for bit, fixed vs float
within the documented table/rounding bounds — for several precisions and both io types; the
table kinds' reuse factor in io_stream (bit exact, counted cycles, table copies)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import hwprune
from conftest import fin, make_model
from hwprune.backend.csim import count_loops, raw_outputs
from hwprune.board import load_board
from hwprune.errors import ConfigError
from hwprune.fixed import FixedType
from hwprune.pipeline import compile_graph, error_bounds, run_fixed, run_float, run_onnx, saturation_report, trace_fixed
from hwprune.precision import LayerPrecision, PrecisionConfig
from hwprune.project import load_project_graph
from hwprune.sim.estimate import estimate

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


# ---------------------------------------------------------------------- reuse factor (io_stream)

WORD = 10


def _two_tables():
    """x (5, WORD) -> GELU and, beside it, Tanh: two table kinds over 5 stream words."""
    return make_model([helper.make_node("Gelu", ["x"], ["g"]), helper.make_node("Tanh", ["x"], ["t"])],
                      [fin("x", 5, WORD)], [fin("g", 5, WORD), fin("t", 5, WORD)], opset=20)


@pytest.mark.parametrize("rf", [1, 2, 3, WORD])
def test_table_activations_time_share_their_lanes_bit_exactly(tmp_path, rf):
    """io_stream at reuse factor RF: ceil(10 / RF) lanes serve a 10-element word in RF cycles
    (RF 3: 4 lanes, two of them idle in the last cycle; RF 10: one lane), with a table copy
    (one BRAM18 ROM) per two lanes. The C simulation equals the numpy reference bit for bit, also
    beyond the tables' ranges, and the counting build runs the estimated 5 * RF cycles,
    reading and writing each word once."""
    m = _two_tables()
    x = (RNG.normal(size=(3, 5, WORD)) * 4).astype(np.float32)
    x[0, 0] = [-30, -8.5, -8, -4.01, 0, 3.99, 4, 7.99, 8, 30]
    prj = hwprune.export(m, tmp_path / "prj", io_type="stream", precision=PrecisionConfig().with_overrides(reuse_factor=rf))
    g = load_project_graph(prj)
    tr = trace_fixed(g, [x])
    for got, name in zip(raw_outputs(prj, [x]), g.outputs):
        np.testing.assert_array_equal(got, tr.values[name], err_msg=name)
    counts = count_loops(prj, [x])
    est = {l.name: l.cost for l in estimate(g, load_board("pynq-z2"), 100.0).layers}
    acts = [l for l in g.layers if l.op_type == "Activation"]
    assert sorted(l.kind for l in acts) == ["gelu", "tanh"]
    lanes = -(-WORD // rf)
    names = hwprune.backend.hls_project.hls_names(g)
    for l in acts:
        c = counts[l.name]
        assert l.reuse_factor == rf and l.lanes(g) == lanes
        assert c.calls == len(x) and c.cycles / c.calls == est[l.name].ii == 5 * rf, l.name
        assert c.reads / c.calls == c.writes / c.calls == 5
        # The table is written as the copies the estimate charges.
        header = (prj / "firmware" / "weights" / f"{names[f'L:{l.name}']}_p.h").read_text()
        assert f"[{-(-lanes // 2)}][1024] = {{" in header and est[l.name].bram18 == -(-lanes // 2)


def _gelu_cost(rf: int, io: str = "stream"):
    m = make_model([helper.make_node("Gelu", ["x"], ["y"])], [fin("x", 48, 384)], [fin("y", 48, 384)], opset=20)
    g = compile_graph(m, PrecisionConfig().with_overrides(reuse_factor=rf), io)
    return g.layers[0], estimate(g, load_board("pynq-z2"), 100.0).layers[0].cost


def test_reuse_factor_shrinks_the_gelu_tables():
    """GELU on a (48, 384) stream tensor, ap_fixed<16,6> in and out, 1024 entries (16 Kbit: one
    BRAM18 per copy, a copy per two lanes). RF 1: 384 lanes, 192 BRAM18, a word per cycle.
    RF 8: 48 lanes, 24 BRAM18, 8 cycles per word. RF 500 settles at 384: one lane, one copy.
    LUTs by hand, per lane: the index logic (16 + 8), the 2:1 choice between table and input (16)
    and at RF 8 an 8:1 multiplexer of 16 bits (3 LUT/bit: 48). FFs: the output word, at RF > 1
    also the held input word."""
    (l1, c1), (l8, c8), (lmax, cmax) = _gelu_cost(1), _gelu_cost(8), _gelu_cost(500)
    assert (l1.reuse_factor, l8.reuse_factor, lmax.reuse_factor) == (1, 8, 384)
    assert (c1.bram18, c8.bram18, cmax.bram18) == (192, 24, 1)
    assert (c1.ii, c8.ii, cmax.ii) == (48, 48 * 8, 48 * 384)
    assert (c1.latency, c8.latency) == (50, 48 * 8 + 2)
    assert (c1.lut, c8.lut) == (384 * (24 + 16), 48 * (24 + 16 + 48))
    assert (c1.ff, c8.ff) == (384 * 16, 384 * 32)
    assert c1.dsp == c8.dsp == 0


def test_reuse_factor_is_a_no_op_in_io_parallel_and_for_relu():
    """io_parallel unrolls the activation into the pipelined top: the reuse factor settles at 1
    and the cost is RF 1's. ReLU keeps RF 1 in io_stream too (nothing worth sharing)."""
    (l4, c4), (_, c1) = _gelu_cost(4, "parallel"), _gelu_cost(1, "parallel")
    assert l4.reuse_factor == 1 and c4 == c1
    assert l4.reuse_factor_options(compile_graph(_two_tables(), None, "parallel"), [1, 2, 4]) == [1]
    m = make_model([helper.make_node("Relu", ["x"], ["y"])], [fin("x", 5, WORD)], [fin("y", 5, WORD)])
    g = compile_graph(m, PrecisionConfig().with_overrides(reuse_factor=4), "stream")
    assert g.layers[0].reuse_factor == 1 and g.layers[0].reuse_factor_options(g, [1, 2, 4]) == [1]
    gs = compile_graph(_two_tables(), None, "stream")
    gelu = next(l for l in gs.layers if getattr(l, "kind", "") == "gelu")
    # The budget search's choices over a 10-element word: 6 and 8 both settle at 5 (two lanes);
    # candidates beyond the word are not tried (as for LayerNorm).
    assert gelu.reuse_factor_options(gs, [1, 2, 3, 4, 6, 8, 12]) == [1, 2, 3, 4, 5]


def test_a_reuse_factor_below_one_is_refused():
    with pytest.raises(ConfigError, match="must be a positive whole number"):
        PrecisionConfig.from_dict({"layer_type": {"Gelu": {"reuse_factor": 0}}})
    with pytest.raises(ConfigError, match="reuse_factor: -2 must be a positive whole number"):
        LayerPrecision(reuse_factor=-2)  # from code too: refused where it is set
