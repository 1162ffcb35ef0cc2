"""The embedding on the ARM side (issue 12, item 6): the token + position lookup runs on the
host, the accelerator receives the embedded sequence.

References: the fixed-point model of the whole graph with the lookup on the accelerator (the
Embedding op's own semantics), hand-computed BRAM and bus figures, and the deployment driver's
numpy lookup (an independent implementation) through the simulated overlay and validate.py."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from onnx import TensorProto, helper

from conftest import fin, make_model
import hwprune
from hwprune.backend import pynq_driver as drv
from hwprune.backend.deploy import write_package
from hwprune.cli import main
from hwprune.errors import HwpruneInputError
from hwprune.fixed import FixedType
from hwprune.pipeline import compile_graph, run_fixed, saturation_report
from hwprune.precision import PrecisionConfig

VOCAB, SEQ, DIM, OUT = 4000, 8, 16, 4
PREC = PrecisionConfig().with_overrides(result=FixedType.parse("ap_fixed<8,3,AP_RND_CONV,AP_SAT>"))


def embedding_model():
    """ids [N, 8] -> Gather(table 4000 x 16) + position rows [8, 16] -> MatMul [16, 4]. The
    position rows are large enough that some sums saturate the 8-bit type."""
    rng = np.random.default_rng(3)
    nodes = [helper.make_node("Gather", ["table", "ids"], ["tok"]),
             helper.make_node("Add", ["tok", "pos"], ["emb"]),
             helper.make_node("MatMul", ["emb", "w"], ["y"])]
    return make_model(nodes, [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", SEQ])], [fin("y", SEQ, OUT)],
                      [("table", rng.normal(size=(VOCAB, DIM)) * 2.0), ("pos", rng.normal(size=(1, SEQ, DIM)) * 2.5),
                       ("w", rng.normal(size=(DIM, OUT)) * 0.3)])


def ids(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, VOCAB, size=(n, SEQ), dtype=np.int64)


def test_estimate_drops_the_table_and_adds_the_embedded_sequence_to_the_bus():
    m = embedding_model()
    pl = hwprune.estimate(m, "pynq-z2", precision=PREC, io_type="stream")
    ps = hwprune.estimate(m, "pynq-z2", precision=PREC, io_type="stream", embedding_on_ps=True)
    emb = next(l for l in pl.layers if l.op == "Embedding")
    # The table ROM: 4000 rows of 16 x 8 = 128 bits; the cheapest BRAM18 shape is 2048 x 9:
    # 2 deep x ceil(128 / 9) = 15 wide = 30 (512 x 36: 8 x 4 = 32; 1024 x 18: 4 x 8 = 32).
    assert emb.cost.bram18 == 30
    assert "Embedding" not in [l.op for l in ps.layers] and ps.on_ps == [emb.name]
    assert pl.network.bram18 == 30 and ps.network.bram18 == 0  # the MatMul's weights are logic
    assert ps.resources.bram18 == pl.resources.bram18 - 30  # the shell's are unchanged
    # Bus bytes per sample, 64-bit words. PL: 8 ids of 12 bits (5 per word) = 2 words, out
    # 8 x 4 values of 8 bits (8 per word) = 4 words: 48 bytes. PS: in 8 x 16 values of 8
    # bits = 16 words, out 4 words: 160 bytes.
    assert pl.axi_bytes_per_sample == 48
    assert ps.axi_bytes_per_sample == 160


@pytest.fixture(scope="module")
def ps_package(tmp_path_factory):
    d = tmp_path_factory.mktemp("psemb")
    prj = hwprune.export(embedding_model(), d / "prj", board="pynq-z2", io_type="stream", precision=PREC,
                         embedding_on_ps=True, sample_inputs=[ids(3, seed=1)])
    return prj, write_package(prj, "pynq-z2", d / "pkg")


def test_driver_and_csim_equal_the_fixed_reference_with_the_lookup_on_the_host(ps_package, tmp_path):
    prj, pkg = ps_package
    x = ids(6)
    # The reference: the whole model in fixed point with the lookup on the accelerator.
    want = run_fixed(compile_graph(embedding_model(), PREC, "stream"), [x])[0]
    g = compile_graph(embedding_model(), PREC, "stream")
    emb = next(l for l in g.layers if l.op_type == "Embedding")
    assert emb.saturation(g, [x]) > 0  # the driver's saturating add is exercised
    assert json.loads((prj / "hwprune_project.json").read_text())["embedding_on_ps"] is True
    np.testing.assert_array_equal(hwprune.run(prj, [x], engine="fixed")[0], want)  # reloaded, option re-applied
    from hwprune.project import load_project_graph

    # The host's saturating add is still reported by layer name on the reloaded project.
    assert saturation_report(load_project_graph(prj), [x])[emb.name] == emb.saturation(g, [x])
    np.testing.assert_array_equal(hwprune.run(prj, [x], engine="csim")[0], want)  # the PL part, g++
    acc, _ = drv.open_accelerator(pkg, sim=True)
    assert [p.name for p in acc.spec.model_inputs] == ["ids"] and acc.spec.inputs[0].kind == "fixed"
    np.testing.assert_array_equal(acc.run([x])[0], want)
    np.save(tmp_path / "x.npy", x)
    r = subprocess.run([sys.executable, str(pkg / "validate.py"), "--sim", "--input", str(tmp_path / "x.npy"),
                        "--output", str(tmp_path / "y.npy")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), want)
    assert "ARM side" in (pkg / "README.md").read_text()


def test_the_option_needs_an_embedding_and_a_project_keeps_its_choice(ps_package, tmp_path, capsys):
    dense = make_model([helper.make_node("MatMul", ["x", "w"], ["y"])], [fin("x", 4)], [fin("y", 2)],
                       [("w", np.ones((4, 2)))])
    with pytest.raises(HwpruneInputError, match="no embedding lookup"):
        hwprune.estimate(dense, "pynq-z2", embedding_on_ps=True)
    plain = hwprune.export(embedding_model(), tmp_path / "plain", board="pynq-z2", precision=PREC)
    assert main(["estimate", str(plain), "--board", "pynq-z2", "--embedding-on-ps"]) == 2
    assert "re-export it with --embedding-on-ps" in capsys.readouterr().err
    prj, _ = ps_package
    assert main(["estimate", str(prj), "--board", "pynq-z2"]) == 0
    assert "AXI DMA: 160 bytes per sample (on the PS:" in capsys.readouterr().out
