"""The RTL reference of the dense and balanced-sparse engines (hwprune.rtl): Verilator runs
equal the fixed-point reference bit for bit, with and without stalls, and take the cycles the
estimate says. One hypothesis example is a batch of layers, simulated in one Verilator build."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import helper

import hwprune
from conftest import fin, make_model
from hwprune.fixed import FixedType, Overflow, Rounding
from hwprune.pipeline import compile_graph
from hwprune.precision import LayerPrecision, PrecisionConfig
from hwprune.prune.onnx_prune import prune_onnx
from hwprune.prune.patterns import Pattern
from hwprune.rtl import verilator as vl
from hwprune.rtl.engine import Schedule, reference, spec_from_dense

pytestmark = pytest.mark.skipif(vl.verilator_binary() is None, reason="verilator is not installed")

# (pattern, sparsity, input multiple, output multiple): shapes the pattern divides.
PATTERNS = [(None, 0.0, 1, 1), ("block:2x2", 0.5, 2, 2), ("block:1x4", 0.75, 4, 1), ("block:2x2", 0.75, 2, 2),
            ("bbs:4", 0.5, 4, 1), ("bbs:4", 0.75, 4, 1), ("nm:2:4", 0.5, 4, 1), ("block:4x2", 0.5, 2, 4)]
# Column-balanced (dense_sparse.h, column_balanced): a bank is a block-column.
COLUMN_PATTERNS = [("block:2x2:col", 0.5, 2, 2), ("block:2x1:col", 0.75, 1, 2), ("block:1x4:col", 0.5, 4, 1),
                   ("block:4x2:col", 0.5, 2, 4)]


def gemm(n_in: int, n_out: int, seed: int):
    rng = np.random.default_rng(seed)
    return make_model([helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1, name="fc")], [fin("x", n_in)],
                      [fin("y", n_out)], [("w", rng.normal(size=(n_out, n_in)) * 0.4), ("b", rng.normal(size=n_out) * 0.2)])


def dense_layer(n_in, n_out, pattern, sparsity, x_t, out_t, w_bits, rf, seed, require_sparse=True):
    """The Dense layer (and its graph) of a one-Gemm model, pruned to `pattern`."""
    model = gemm(n_in, n_out, seed)
    if pattern:
        model, _ = prune_onnx(model, Pattern.parse(pattern), sparsity)
    prec = PrecisionConfig(model=LayerPrecision(result=x_t, weight_width=w_bits, reuse_factor=rf),
                           layer_name={"fc": LayerPrecision(result=out_t)})
    g = compile_graph(model, prec)
    layer = g.layer("fc")
    if pattern and require_sparse:
        assert layer.sparsity is not None, pattern
    return g, layer, model, prec


@st.composite
def layer_case(draw, patterns=PATTERNS + COLUMN_PATTERNS):
    pattern, sparsity, mi, mo = draw(st.sampled_from(patterns))
    # At least the blocks one kept block in a group needs (75%: 4, 50%: 2): block-columns,
    # or block-rows when column-balanced.
    column = bool(pattern) and pattern.endswith(":col")
    need = round(1 / (1 - sparsity)) if pattern and pattern.startswith("block") else 1
    min_cols, min_rows = (1, need) if column else (need, 1)
    n_in = mi * draw(st.integers(min_cols, max(min_cols, 12 // mi)))
    n_out = mo * draw(st.integers(min_rows, max(min_rows, 8 // mo)))
    if pattern and pattern.startswith(("bbs", "nm")) and n_in < 4:
        n_in = 4
    x_t = FixedType(draw(st.integers(3, 10)), draw(st.integers(1, 4)), draw(st.booleans()))
    rounding = draw(st.sampled_from([Rounding.TRN, Rounding.RND, Rounding.RND_CONV, Rounding.TRN_ZERO, Rounding.RND_ZERO]))
    overflow = draw(st.sampled_from([Overflow.WRAP, Overflow.SAT, Overflow.SAT_SYM, Overflow.SAT_ZERO]))
    out_t = FixedType(draw(st.integers(4, 12)), draw(st.integers(2, 6)), draw(st.booleans()) or True, rounding, overflow)
    w_bits = draw(st.integers(2, 10))
    rf = draw(st.sampled_from([1, 2, 3, 4, 5, 8, 16]))
    return n_in, n_out, pattern, sparsity, x_t, out_t, w_bits, rf, draw(st.integers(0, 10_000))


def check_batch(cases, tmp_path):
    specs, xs, costs, layers = [], [], [], []
    for j, (n_in, n_out, pattern, sparsity, x_t, out_t, w_bits, rf, seed) in enumerate(cases):
        # A pruned layer whose zeros leave nothing to skip runs dense: still a valid case.
        g, layer, model, prec = dense_layer(n_in, n_out, pattern, sparsity, x_t, out_t, w_bits, rf, seed, require_sparse=False)
        spec = spec_from_dense(layer, g, name=f"hwp_fc{j}")
        rng = np.random.default_rng(seed)
        t = g.tensor(layer.inputs[0]).type
        words = int(rng.integers(1, 6))
        x = rng.integers(t.min_raw, t.max_raw + 1, size=(words, n_in))
        ref = layer.fixed_forward(g, [x])
        np.testing.assert_array_equal(reference(spec, x), ref)
        est = hwprune.estimate(model, "pynq-z2", precision=prec)
        cost = next(l.cost for l in est.layers if l.name == "fc")
        specs.append(spec), xs.append(x), costs.append((cost, words)), layers.append(ref)
    results = vl.run(specs, xs, tmp_path)
    for spec, (cost, words), ref, res, case in zip(specs, costs, layers, results, cases):
        np.testing.assert_array_equal(res.outputs, ref, err_msg=str(case))
        np.testing.assert_array_equal(res.stalled_outputs, ref, err_msg=str(case))
        # The estimate is for one sample of one word: latency RF + depth, a word every RF cycles.
        assert cost.latency == spec.rf + Schedule(spec).depth, case
        assert res.latency == (words - 1) * spec.rf + cost.latency, case
        assert res.interval in (0, spec.rf), case
        assert cost.multipliers == Schedule(spec).n_mult


@settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(layer_case(COLUMN_PATTERNS), st.lists(layer_case(), min_size=5, max_size=5))
def test_engines_are_bit_exact_and_take_the_estimated_cycles(tmp_path_factory, column_case, cases):
    """Every batch holds a column-balanced layer; the batch size (one Verilator build) is
    unchanged."""
    check_batch([column_case] + cases, tmp_path_factory.mktemp("vl"))


@pytest.mark.slow
@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(layer_case(), min_size=8, max_size=8))
def test_engines_sweep(tmp_path_factory, cases):
    check_batch(cases, tmp_path_factory.mktemp("vl"))


def test_column_balanced_engine_follows_the_kernel_order():
    """Hand-checked serving order of a column-balanced layer (dense_sparse.h: kept weight
    k = ((bank * per_bank + t) * br + i) * bc + j reads input bank * bc + j and adds into
    output idx[bank][t] * br + i), and a multiplier whose products reach several outputs."""
    g, layer, _, _ = dense_layer(4, 8, "block:2x2:col", 0.5, FixedType(8, 3), FixedType(8, 3), 8, 8, 0)
    spec = spec_from_dense(layer, g)
    sp = layer.sparsity
    assert spec.column and sp.column_balanced and sp.block == (2, 2) and sp.per_bank == 2
    idx = sp.bank_lists()
    w = layer._raw_weights()[0]  # (n_in, n_out)
    k = 0
    for bank in range(2):
        for t in range(2):
            for i in range(2):
                for j in range(2):
                    o, x = idx[bank, t] * 2 + i, bank * 2 + j
                    assert (spec.in_idx[k], spec.out_idx[k], spec.weights[k]) == (x, o, w[x, o])
                    k += 1
    s = Schedule(spec)
    assert s.n_mult == 2 and s.depth == 3
    assert all(len(c) == 2 * 2 for c in s.out_candidates)  # RF 8 = two blocks, two rows each


def test_capped_accumulator_is_reported_unsupported():
    """A user's accumulator cap rounds and wraps; the engine accumulates exactly."""
    model = gemm(8, 4, 0)
    g = compile_graph(model, PrecisionConfig(model=LayerPrecision(result=FixedType(8, 3), accum=FixedType(10, 4))))
    with pytest.raises(NotImplementedError, match="capped"):
        spec_from_dense(g.layer("fc"), g)


@pytest.mark.parametrize("pattern", ["block:2x2", "block:2x2:col"])
def test_verify_rtl_command(tmp_path, capsys, pattern):
    """`hwprune verify-rtl`: per dense layer, estimate vs Verilator cycles (and yosys when asked)."""
    import json

    import onnx

    from hwprune.cli import main

    model, _ = prune_onnx(gemm(8, 4, 1), Pattern.parse(pattern), 0.5)
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    assert main(["verify-rtl", str(path), "--precision", "ap_fixed<8,3>", "--reuse-factor", "2", "--no-synth", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["layer"] == "fc" and row["kind"] == pattern and row["bit_exact"] is True
    assert row["rtl_cycles"] == row["est_cycles"] and row["yosys"] == {}
    assert main(["verify-rtl", str(path), "--layers", "nope", "--no-synth"]) == 2
    assert "no dense layer named 'nope'" in capsys.readouterr().err


def test_verify_rtl_without_the_tools_exits_2(tmp_path, capsys, monkeypatch):
    import onnx

    from hwprune.cli import main

    path = tmp_path / "m.onnx"
    onnx.save(gemm(4, 2, 0), path)
    monkeypatch.setenv("HWPRUNE_VERILATOR", "no-such-verilator")
    monkeypatch.setenv("HWPRUNE_YOSYS", "no-such-yosys")
    assert main(["verify-rtl", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs verilator and yosys" in err[0]


def test_verify_rtl_on_a_design_directory(tmp_path, capsys):
    """A `prune --out` design directory (its project in DESIGN_PROJECT) and the project itself:
    the layers as the project declares them (pattern, RF), with yosys beside the estimate."""
    import json

    from hwprune.backend.project_dir import DESIGN_PROJECT
    from hwprune.cli import main

    model, _ = prune_onnx(gemm(8, 4, 2), Pattern.parse("block:1x4"), 0.5)
    prec = PrecisionConfig(model=LayerPrecision(result=FixedType(8, 3), reuse_factor=4))
    design = tmp_path / "design"
    hwprune.export(model, design / DESIGN_PROJECT, board="pynq-z2", precision=prec)
    for target in (design, design / DESIGN_PROJECT):
        assert main(["verify-rtl", str(target), "--json"]) == 0, target
        (row,) = json.loads(capsys.readouterr().out)
        assert row["kind"] == "block:1x4" and row["reuse_factor"] == 4 and row["bit_exact"] is True
        assert row["rtl_cycles"] == row["est_cycles"]
        assert row["yosys"]["dsp"] == row["est"]["dsp"] and row["yosys"]["bram18"] == row["est"]["bram18"]
        assert row["yosys"]["lut"] > 0
    assert main(["verify-rtl", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_shared_output_stage_engines_are_bit_exact_and_a_word_later(tmp_path):
    """output_stage "shared" in the RTL engine (hand-over registers, ceil(n_out / RF)
    requantizers over the next RF cycles): Verilator's outputs equal the fixed-point reference,
    also under random output stalls, and the output of each word leaves RF cycles later — the
    estimate's (words + 1) * RF + depth, as the HLS kernel's loop counts say (test_output_stage)."""
    cases = [(12, 8, None, 0.0, 4), (12, 8, "block:2x2", 0.5, 3), (12, 8, "block:2x2:col", 0.5, 4), (8, 6, None, 0.0, 16)]
    specs, xs, costs, refs = [], [], [], []
    for j, (n_in, n_out, pattern, sparsity, rf) in enumerate(cases):
        model = gemm(n_in, n_out, j)
        if pattern:
            model, _ = prune_onnx(model, Pattern.parse(pattern), sparsity)
        prec = PrecisionConfig(model=LayerPrecision(result=FixedType(8, 3, True, Rounding.RND_CONV, Overflow.SAT),
                                                    weight_width=6, reuse_factor=rf, output_stage="shared"))
        g = compile_graph(model, prec, "stream")
        layer = g.layer("fc")
        spec = spec_from_dense(layer, g, name=f"hwp_sh{j}")
        assert spec.shared_output
        rng = np.random.default_rng(j)
        t = g.tensor(layer.inputs[0]).type
        x = rng.integers(t.min_raw, t.max_raw + 1, size=(3, n_in))
        refs.append(layer.fixed_forward(g, [x]))
        specs.append(spec), xs.append(x)
        costs.append(next(l.cost for l in hwprune.estimate(model, "pynq-z2", precision=prec, io_type="stream").layers
                          if l.name == "fc"))
    for spec, x, ref, cost, res in zip(specs, xs, refs, costs, vl.run(specs, xs, tmp_path)):
        np.testing.assert_array_equal(res.outputs, ref)
        np.testing.assert_array_equal(res.stalled_outputs, ref)
        assert cost.latency == 2 * spec.rf + Schedule(spec).depth  # one word: its trip and the drain trip
        assert res.latency == (len(x) - 1) * spec.rf + cost.latency
        assert res.interval in (0, spec.rf)
