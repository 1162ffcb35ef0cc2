"""The analytical estimate obeys first principles."""

from __future__ import annotations

import math

import numpy as np
import pytest
from onnx import helper

from conftest import fin, make_model
import hwprune
from hwprune.fixed import FixedType
from hwprune.precision import PrecisionConfig


def dense_model(n_in: int = 32, n_out: int = 32):
    rng = np.random.default_rng(0)
    return make_model([helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1, name="fc")], [fin("x", n_in)],
                      [fin("y", n_out)], [("w", rng.normal(size=(n_out, n_in)) * 0.2), ("b", rng.normal(size=n_out) * 0.1)])


def prec(text: str, rf: int = 1) -> PrecisionConfig:
    return PrecisionConfig().with_overrides(result=FixedType.parse(text), reuse_factor=rf)


@pytest.mark.parametrize("rf", [1, 2, 4, 8, 16, 48])
def test_dsps_are_multipliers_over_reuse_factor(rf):
    est = hwprune.estimate(dense_model(), "pynq-z2", precision=prec("ap_fixed<16,6>", rf))
    layer = est.layers[0].cost
    assert layer.multipliers == math.ceil(32 * 32 / rf)
    # 16x16-bit products fit one DSP48E1 each.
    assert layer.dsp == pytest.approx(layer.multipliers)
    assert est.resources.dsp == layer.multipliers
    assert layer.ii >= rf and est.ii_cycles >= rf


def test_reuse_factor_trades_dsps_for_latency():
    a = hwprune.estimate(dense_model(), "pynq-z2", precision=prec("ap_fixed<16,6>", 1))
    b = hwprune.estimate(dense_model(), "pynq-z2", precision=prec("ap_fixed<16,6>", 8))
    assert b.resources.dsp * 8 == a.resources.dsp
    assert b.latency_cycles > a.latency_cycles and b.ii_cycles == 8 * a.ii_cycles


def test_narrow_types_use_fewer_dsps():
    wide = hwprune.estimate(dense_model(), "ultra96-v2", precision=prec("ap_fixed<16,6>"))
    narrow = hwprune.estimate(dense_model(), "ultra96-v2", precision=prec("ap_fixed<8,3>"))
    assert narrow.resources.dsp < wide.resources.dsp
    assert narrow.resources.lut > 0


def test_wide_operands_need_more_than_one_dsp():
    # 26-bit data x 26-bit weights exceed a 25x18 DSP48E1: more than one DSP each.
    est = hwprune.estimate(dense_model(8, 8), "pynq-z2", precision=prec("ap_fixed<26,10>"))
    assert est.resources.dsp > 64


def test_utilisation_and_units():
    est = hwprune.estimate(dense_model(), "pynq-z2", precision=prec("ap_fixed<16,6>", 4))
    d = est.as_dict()
    assert d["latency_us"] == pytest.approx(d["latency_cycles"] / 100.0)  # pynq-z2 runs at 100 MHz
    assert d["utilization"]["dsp"] == pytest.approx(est.resources.dsp / 220)
    assert d["throughput_per_s"] == pytest.approx(100e6 / d["ii_cycles"])
    big = hwprune.estimate(dense_model(256, 256), "pynq-z2", precision=prec("ap_fixed<16,6>", 1))
    assert not big.fits() and big.utilization()["dsp"] > 1


def test_stream_and_parallel_both_estimate():
    for io in ("parallel", "stream"):
        est = hwprune.estimate(dense_model(), "kv260", precision=prec("ap_fixed<16,6>", 2), io_type=io)
        assert est.latency_cycles > 0 and est.io_type == io


def test_zero_weights_are_nominal_sparsity_not_savings():
    """The dense kernels do not skip zeros: the estimate says so instead of promising cycles."""
    m = dense_model()
    dense = hwprune.estimate(m, "pynq-z2", precision=prec("ap_fixed<16,6>", 4))
    w = next(i for i in m.graph.initializer if i.name == "w")
    from onnx import numpy_helper

    arr = numpy_helper.to_array(w).copy()
    arr[:, ::2] = 0.0
    w.CopyFrom(numpy_helper.from_array(arr, "w"))
    sparse = hwprune.estimate(m, "pynq-z2", precision=prec("ap_fixed<16,6>", 4))
    row = sparse.as_dict()["layers"][0]
    assert row["weight_sparsity"] == pytest.approx(0.5)
    assert row["macs_skipped"] == 0 and "not skipped" in row["note"]
    assert sparse.latency_cycles == dense.latency_cycles and sparse.ii_cycles == dense.ii_cycles
    # Synthesis removes only multipliers whose every weight is zero (here: RF 4 serves 4
    # weights of one input, and every other input is zero): resources may shrink, cycles not.
    assert sparse.resources.dsp <= dense.resources.dsp


def test_large_tables_use_uram_only_where_the_board_has_it():
    rng = np.random.default_rng(0)
    m = make_model([helper.make_node("Gather", ["emb", "ids"], ["y"])], [helper.make_tensor_value_info("ids", 7, ["N", 8])],
                   [fin("y", 8, 64)], [("emb", rng.normal(size=(8000, 64)))])
    z2 = hwprune.estimate(m, "pynq-z2", io_type="stream")
    kv = hwprune.estimate(m, "kv260", io_type="stream")
    assert z2.resources.uram == 0 and z2.resources.bram18 > 0
    assert kv.resources.uram > 0


def test_shallow_stream_fifos_are_shift_registers_deep_ones_block_ram():
    from hwprune.sim.resources import fifo_cost

    wide = fifo_cost(2, 1280)  # a depth-2 FIFO of 64 x 20-bit words: SRL, never 36 BRAMs
    assert wide.bram18 == 0 and wide.lut == 1280
    assert fifo_cost(16, 64).lut == 64 and fifo_cost(16, 64).bram18 == 0  # 1024 bits: still SRL
    deep = fifo_cost(512, 36)  # 18 Kbit: one BRAM18 (512 x 36)
    assert deep.bram18 == 1 and deep.lut == 0


def test_multiplier_binding_moves_products_between_dsps_and_luts(mlp_model, tmp_path):
    """mult_impl: "dsp" puts even 8x8 products on DSP slices, "fabric" 16x16 ones on LUTs;
    the C simulation is unchanged bit for bit (the accumulator holds every product exactly)."""
    from hwprune.backend.csim import raw_outputs
    from hwprune.pipeline import trace_fixed
    from hwprune.precision import LayerPrecision
    from hwprune.project import load_project_graph

    def prec(width: int, impl: str | None) -> PrecisionConfig:
        t = FixedType.parse(f"ap_fixed<{width},{min(width, 4)}>")
        return PrecisionConfig(LayerPrecision(result=t, weight_width=width, reuse_factor=2, mult_impl=impl))

    auto8 = hwprune.estimate(mlp_model, "pynq-z2", precision=prec(8, None)).layers[0].cost
    dsp8 = hwprune.estimate(mlp_model, "pynq-z2", precision=prec(8, "dsp")).layers[0].cost
    assert auto8.dsp == 0 and dsp8.dsp == dsp8.multipliers == auto8.multipliers and dsp8.lut < auto8.lut
    auto16 = hwprune.estimate(mlp_model, "pynq-z2", precision=prec(16, None)).layers[0].cost
    lut16 = hwprune.estimate(mlp_model, "pynq-z2", precision=prec(16, "fabric")).layers[0].cost
    assert auto16.dsp == auto16.multipliers and lut16.dsp == 0 and lut16.lut > auto16.lut
    x = np.random.default_rng(0).normal(size=(5, 16)).astype(np.float32)
    for impl, code in (("dsp", 1), ("fabric", 2)):
        prj = hwprune.export(mlp_model, tmp_path / impl, precision=prec(8, impl))
        assert f"mult_impl = {code};" in (prj / "firmware" / "parameters.h").read_text()
        g = load_project_graph(prj)
        np.testing.assert_array_equal(raw_outputs(prj, [x])[0], trace_fixed(g, [x]).values[g.outputs[0]])
    common = (prj / "firmware" / "hwprune" / "common.h").read_text()
    assert "BIND_OP variable = p op = mul impl = dsp" in common and "impl = fabric" in common
    with pytest.raises(Exception, match="mult_impl"):
        PrecisionConfig.from_dict({"model": {"mult_impl": "gpu"}})
