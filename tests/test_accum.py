"""A user-capped accumulator (`accum`, like hls4ml's accum_t) on Dense and Conv.

The kernel assigns the bias and every product to the cap's type (its rounding and overflow
modes) and applies the overflow mode at every addition, in its loop order; `fixed` must equal
the C simulation bit for bit however the cap rounds, wraps or saturates, for the dense and the
block-sparse kernels and any reuse factor; the estimate must cost the narrower adders.
Several layers with different caps share one build (a batched model, per-layer configuration).
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import hwprune
from conftest import fin, make_model, merge_models
from hwprune.backend.csim import raw_outputs
from hwprune.errors import ConfigError
from hwprune.fixed import FixedType
from hwprune.ops.base import capped_accumulate
from hwprune.pipeline import compile_graph, saturation_report, trace_fixed
from hwprune.precision import LayerPrecision, PrecisionConfig
from hwprune.prune.onnx_prune import prune_onnx
from hwprune.prune.patterns import Pattern

RESULT = FixedType.parse("ap_fixed<16,6,AP_RND_CONV,AP_SAT>")
CAPS = [
    "ap_fixed<10,4,AP_RND,AP_SAT>",  # saturates mid-sum: the order matters
    "ap_fixed<12,5,AP_TRN_ZERO,AP_WRAP>",  # wraps: modular
    "ap_fixed<14,4,AP_RND_CONV,AP_SAT_SYM>",
    "ap_fixed<9,3,AP_RND_INF,AP_SAT_ZERO>",
    "ap_ufixed<12,4,AP_RND_MIN_INF,AP_SAT>",
    "ap_fixed<20,8,AP_TRN,AP_WRAP>",  # wide enough for the sum, rounds every product
    "ap_fixed<90,30,AP_RND,AP_SAT>",  # wider than the exact accumulator: exact
]


def dense_model(rng, n_in=12, n_out=5):
    return make_model([helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1, name="fc")],
                      [fin("x", n_in)], [fin("y", n_out)],
                      [("w", rng.normal(size=(n_out, n_in))), ("b", rng.normal(size=n_out) * 0.5)])


def conv_model(rng, two_d: bool):
    ks, sp = ([3, 3], [5, 6]) if two_d else ([3], [9])
    return make_model([helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=ks, pads=[1] * (2 * len(ks)),
                                        name="conv")],
                      [fin("x", 3, *sp)], [fin("y", 4, *sp)],
                      [("w", rng.normal(size=(4, 3, *ks))), ("b", rng.normal(size=4) * 0.5)])


def batched(models, layer: str, rf: int):
    """The models side by side, copy k's layer capped by CAPS[k % len(CAPS)]."""
    m = merge_models(models)
    per = {f"c{k}_{layer}": LayerPrecision(accum=FixedType.parse(CAPS[k % len(CAPS)])) for k in range(len(models))}
    return m, PrecisionConfig(LayerPrecision(result=RESULT, reuse_factor=rf), layer_name=per)


def check(model, prec, xs, io, tmp_path):
    g = compile_graph(model, prec, io)
    prj = hwprune.export(model, tmp_path / io, io_type=io, precision=prec)
    got = raw_outputs(prj, xs)
    ref = trace_fixed(g, xs).values
    for k, out in enumerate(g.outputs):
        np.testing.assert_array_equal(got[k], ref[out], err_msg=f"copy {k}: cap {CAPS[k % len(CAPS)]}")
    return g


@pytest.mark.parametrize("io,rf", [("parallel", 1), ("stream", 4)])
def test_capped_dense_equals_csim(io, rf, tmp_path):
    rng = np.random.default_rng(1)
    models = [dense_model(rng) for _ in CAPS]
    model, prec = batched(models, "fc", rf)
    xs = [rng.uniform(-4, 4, size=(7, 12)).astype(np.float32) for _ in CAPS]
    g = check(model, prec, xs, io, tmp_path)
    sat = saturation_report(g, xs)
    assert sat.get("c0_fc") and "c6_fc" not in sat  # the narrow cap overflows, the wide one never


@pytest.mark.slow
@pytest.mark.parametrize("io", ["parallel", "stream"])
def test_capped_conv_equals_csim(io, tmp_path):
    """Every cap on a 2-D and on a 1-D convolution, side by side in one build per io type."""
    rng = np.random.default_rng(2)
    models = [conv_model(rng, two_d) for two_d in (True, False) for _ in CAPS]
    model, prec = batched(models, "conv", 2)
    xs = [rng.uniform(-3, 3, size=(2, *((3, 5, 6) if two_d else (3, 9)))).astype(np.float32)
          for two_d in (True, False) for _ in CAPS]
    check(model, prec, xs, io, tmp_path)


PATTERNS = ["block:2x4", "block:4x2:col", "nm:2:4"]


@pytest.mark.slow
def test_capped_sparse_dense_equals_csim(tmp_path):
    """Every cap on every sparse pattern's kernel (copy k: CAPS[k % 7], PATTERNS[k % 3]), one build."""
    rng = np.random.default_rng(3)
    n = len(CAPS) * len(PATTERNS)
    models = [prune_onnx(dense_model(rng, 16, 8), Pattern.parse(PATTERNS[k % len(PATTERNS)]), 0.5)[0] for k in range(n)]
    model, prec = batched(models, "fc", 3)
    xs = [rng.uniform(-4, 4, size=(5, 16)).astype(np.float32) for _ in range(n)]
    g = check(model, prec, xs, "stream", tmp_path)
    assert all(g.layer(f"c{k}_fc").sparsity is not None for k in range(n))


@pytest.mark.slow
def test_capped_sparse_conv_equals_csim(tmp_path):
    rng = np.random.default_rng(4)
    base = make_model([helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[2, 2], name="conv")],
                      [fin("x", 4, 5, 5)], [fin("y", 4, 4, 4)],
                      [("w", rng.normal(size=(4, 4, 2, 2))), ("b", rng.normal(size=4) * 0.5)])
    models = [prune_onnx(base, Pattern.parse("block:2x4"), 0.5)[0] for _ in CAPS]
    model, prec = batched(models, "conv", 1)
    xs = [rng.uniform(-3, 3, size=(2, 4, 5, 5)).astype(np.float32) for _ in CAPS]
    g = check(model, prec, xs, "parallel", tmp_path)
    assert g.layer("c0_conv").sparsity is not None


def test_the_kernel_order_matters_and_is_followed():
    """Saturating partial sums: adding the same products in another order gives another
    result, so the reference must follow the kernel's (an RF that does not divide n_out reorders dense.h's additions)."""
    rng = np.random.default_rng(5)
    prec = PrecisionConfig(LayerPrecision(result=RESULT, reuse_factor=4, accum=FixedType.parse(CAPS[0])))
    g = compile_graph(dense_model(rng), prec)
    fc = g.layer("fc")
    order = fc.kernel_order()
    assert not np.array_equal(order, np.tile(np.arange(12), (5, 1)))
    x = rng.uniform(-4, 4, size=(40, 12)).astype(np.float32)
    xq = trace_fixed(g, [x]).values["x"]
    w, b = fc._raw_weights()
    prods = xq[:, None, :] * w.T
    frac = g.tensor("x").type.frac + fc.weight_t.frac
    in_order = capped_accumulate(prods, frac, b, fc.bias_t.frac, fc.accum_t, order)
    ascending = capped_accumulate(prods, frac, b, fc.bias_t.frac, fc.accum_t, None)
    assert not np.array_equal(in_order, ascending)
    np.testing.assert_array_equal(fc.accumulate(g, xq), in_order)


def test_the_estimate_costs_the_narrower_adder():
    rng = np.random.default_rng(6)
    m = dense_model(rng, 32, 16)
    exact = hwprune.estimate(m, "pynq-z2", precision=PrecisionConfig(LayerPrecision(result=RESULT)))
    capped = hwprune.estimate(m, "pynq-z2", precision=PrecisionConfig(
        LayerPrecision(result=RESULT, accum=FixedType.parse("ap_fixed<18,8,AP_RND,AP_SAT>"))))
    e, c = exact.layers[0].cost, capped.layers[0].cost
    assert c.lut < e.lut and c.ff < e.ff and c.dsp == e.dsp


def test_accum_in_the_configuration(tmp_path):
    cfg = PrecisionConfig.from_dict({"model": {"accum": "ap_fixed<24,10,AP_RND,AP_SAT>"},
                                     "layer_name": {"fc": {"accum": "ap_fixed<200,100>"}}})
    assert cfg.resolve("fc", "Dense").accum == FixedType(200, 100)
    assert cfg.resolve("other", "Dense").accum == FixedType.parse("ap_fixed<24,10,AP_RND,AP_SAT>")
    assert cfg.to_dict()["model"]["accum"] == "ap_fixed<24,10,AP_RND,AP_SAT>"
    with pytest.raises(ConfigError, match="1024"):
        PrecisionConfig.from_dict({"model": {"accum": "ap_fixed<1025,10>"}})
    with pytest.raises(ConfigError, match="64"):
        PrecisionConfig.from_dict({"model": {"result": "ap_fixed<80,10>"}})
    # A cap whose lsb lies above every product: the headers would abort; a clear error instead.
    rng = np.random.default_rng(7)
    bad = PrecisionConfig(LayerPrecision(result=RESULT, accum=FixedType.parse("ap_fixed<4,40,AP_RND,AP_SAT>")))
    with pytest.raises(ConfigError, match="lsb"):
        compile_graph(dense_model(rng), bad)
