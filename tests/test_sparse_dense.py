"""Balanced block-sparse dense kernel: pruned models (by `hwprune prune`) run on a kernel that
stores only kept blocks, C simulation bit-exact with the reference, and the estimate turns the
sparsity into fewer cycles at equal DSPs — but only for patterns the kernel really skips."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import hwprune
from conftest import fin, make_model
from hwprune.backend.csim import raw_outputs
from hwprune.fixed import FixedType
from hwprune.pipeline import compile_graph, run_fixed, trace_fixed
from hwprune.precision import PrecisionConfig
from hwprune.project import load_project_graph
from hwprune.prune.onnx_prune import prune_onnx
from hwprune.prune.patterns import Pattern

RNG = np.random.default_rng(0)


def mlp():
    return make_model(
        [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1, name="fc1"), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], transB=1, name="fc2")],
        [fin("x", 32)], [fin("y", 4)],
        [("w1", RNG.normal(size=(16, 32)) * 0.3), ("b1", RNG.normal(size=16) * 0.1),
         ("w2", RNG.normal(size=(4, 16)) * 0.3), ("b2", RNG.normal(size=4) * 0.1)])


PATTERNS = [("block:4x4", 0.75), ("block:2x8", 0.5), ("block:4x4:col", 0.75), ("bbs:8", 0.75),
            pytest.param("nm:2:4", 0.5, marks=pytest.mark.slow)]  # slow: over ~20 s


@pytest.mark.parametrize("text,s", PATTERNS)
def test_sparse_kernel_is_bit_exact(tmp_path, text, s):
    pruned, _ = prune_onnx(mlp(), Pattern.parse(text), s)
    x = RNG.normal(size=(6, 32)).astype(np.float32)
    g = compile_graph(pruned)
    fc1 = g.layer("fc1")
    assert fc1.sparsity is not None and fc1.sparsity.density == pytest.approx(1 - s)
    for io in ("parallel", "stream"):
        prec = PrecisionConfig().with_overrides(reuse_factor=3)
        prj = hwprune.export(pruned, tmp_path / io, io_type=io, precision=prec)
        assert "dense_sparse" in (prj / "firmware" / "parameters.h").read_text()
        g2 = load_project_graph(prj)
        np.testing.assert_array_equal(raw_outputs(prj, [x])[0], trace_fixed(g2, [x]).values[g2.outputs[0]])


def test_balanced_block_sparsity_saves_cycles_at_equal_dsps():
    """75% block sparsity: the same DSP budget does the kept work in a quarter of the cycles."""
    dense = mlp()
    pruned, _ = prune_onnx(dense, Pattern.parse("block:4x4"), 0.75)
    p = lambda rf: PrecisionConfig().with_overrides(result=FixedType.parse("ap_fixed<16,6>"), reuse_factor=rf)
    d = hwprune.estimate(dense, "pynq-z2", precision=p(16)).layers[0].cost
    sp = hwprune.estimate(pruned, "pynq-z2", precision=p(4)).layers[0].cost
    assert sp.dsp == d.dsp  # 512/16 = 32 multipliers either way
    assert d.ii >= 3 * sp.ii
    assert sp.macs_skipped == 384 and sp.weight_sparsity == pytest.approx(0.75)
    assert sp.lut > 0 and "index bits" in sp.note


def test_unstructured_sparsity_saves_nothing():
    pruned, _ = prune_onnx(mlp(), Pattern.parse("unstructured"), 0.75)
    g = compile_graph(pruned)
    assert g.layer("fc1").sparsity is None
    est = hwprune.estimate(pruned, "pynq-z2").layers[0].cost
    assert est.macs_skipped == 0 and est.weight_sparsity == pytest.approx(0.75)
    np.testing.assert_allclose(run_fixed(g, [np.ones((1, 32), np.float32)])[0].shape, (1, 4))


@pytest.mark.parametrize("text,s", [pytest.param("block:4x3", 0.75, marks=pytest.mark.slow),
                                    pytest.param("block:2x6:col", 0.5, marks=pytest.mark.slow),
                                    pytest.param("nm:2:4", 0.5, marks=pytest.mark.slow)])  # each over ~20 s
def test_sparse_conv_is_bit_exact_and_cheaper(tmp_path, text, s):
    """Conv through the same balanced engine: the text-CNN's dominant layer."""
    import torch

    from hwprune.prune.torch_prune import Pruner

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv1d(8, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(8 * 10, 3)).eval()
    pruner = Pruner(model, text, s).prepare()
    pruner.step()
    pruner.make_permanent()
    proto = pruner.export(torch.zeros(1, 8, 10))
    g = compile_graph(proto)
    conv = next(l for l in g.layers if type(l).__name__ == "Conv")
    assert conv.sparsity is not None
    x = RNG.normal(size=(4, 8, 10)).astype(np.float32)
    for io in ("parallel", "stream"):
        prj = hwprune.export(proto, tmp_path / io, io_type=io, precision=PrecisionConfig().with_overrides(reuse_factor=2))
        assert "conv_sparse" in (prj / "firmware" / "parameters.h").read_text()
        g2 = load_project_graph(prj)
        np.testing.assert_array_equal(raw_outputs(prj, [x])[0], trace_fixed(g2, [x]).values[g2.outputs[0]])
    cost = hwprune.estimate(proto, "pynq-z2", precision=PrecisionConfig().with_overrides(reuse_factor=2)).layers[0].cost
    assert cost.macs_skipped == pytest.approx(cost.macs * s, rel=0.01)
