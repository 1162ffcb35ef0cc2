"""FIFO storage binding (Tensor.fifo_impl, passes.fifo.bind_fifo_storage / set_fifo_storage):
what a FIFO costs by storage, the pass that trades block RAM for shift registers under a
budget, and the project that declares, records and reloads the binding."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import hwprune
from conftest import fin, make_model
from hwprune.backend.csim import raw_outputs
from hwprune.backend.project_dir import ProjectDir
from hwprune.errors import ConfigError
from hwprune.passes.fifo import bind_fifo_storage, set_fifo_depths, set_fifo_storage
from hwprune.pipeline import compile_graph, trace_fixed
from hwprune.precision import LayerPrecision, PrecisionConfig
from hwprune.project import load_project_graph
from hwprune.sim.estimate import estimate
from hwprune.sim.resources import fifo_cost

S, W = 8, 96  # 8 stream words of 96 x 16 bits: 1,536-bit FIFOs


def residual_model():
    rng = np.random.default_rng(0)
    return make_model([helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1], name="t1"),
                       helper.make_node("MatMul", ["xt", "w"], ["h"], name="fc"),
                       helper.make_node("Transpose", ["h"], ["hb"], perm=[0, 2, 1], name="t2"),
                       helper.make_node("Add", ["hb", "x"], ["y"], name="res")], [fin("x", S, W)], [fin("y", S, W)],
                      [("w", rng.normal(size=(S, S)) * 0.3)])


PREC = PrecisionConfig(LayerPrecision(weight_width=8, reuse_factor=4))


def test_fifo_cost_by_storage():
    # Vitis's default: shallow (<= 2) or small (<= 1 Kbit) in shift registers, else block RAM.
    assert fifo_cost(2, 1536) == fifo_cost(2, 1536, "srl") and fifo_cost(2, 1536).lut == 1536
    assert fifo_cost(64, 1536).bram18 == 43 and fifo_cost(64, 1536).lut == 0  # 1,536 / 36 bits a BRAM18
    assert fifo_cost(64, 1536, "srl").lut == 2 * 1536 and fifo_cost(64, 1536, "srl").bram18 == 0  # two SRL32 a bit
    assert fifo_cost(2, 1536, "bram").bram18 == 43
    with pytest.raises(ValueError, match="storage"):
        fifo_cost(4, 8, "uram")


def test_bind_moves_block_ram_fifos_to_shift_registers_within_the_luts():
    board = hwprune.board.load_board("zcu104")

    def design():
        g = compile_graph(residual_model(), PREC, "stream")
        set_fifo_depths(g, board, depths={"x_cp0b": 64})  # a bypass deep enough for block RAM
        return g

    g = design()
    before = estimate(g, board).resources
    # Not over: nothing moves.
    assert bind_fifo_storage(g, board, {"bram18": before.bram18, "lut": 10**9}) == {}
    # Over by one BRAM18: the deep FIFO goes to shift registers, 43 BRAM18 for 3,072 LUTs.
    assert bind_fifo_storage(g, board, {"bram18": before.bram18 - 1, "lut": 10**9}) == {"x_cp0b": "srl"}
    after = estimate(g, board).resources
    assert (before.bram18 - after.bram18, after.lut - before.lut) == (43, 2 * 1536)
    # Not when the LUTs it costs break their limit.
    g = design()
    assert bind_fifo_storage(g, board, {"bram18": before.bram18 - 1, "lut": before.lut + 3000}) == {}
    assert g.tensor("x_cp0b").fifo_impl == "auto"


def test_project_declares_records_and_reloads_the_binding(tmp_path):
    prj = hwprune.export(residual_model(), tmp_path / "p", board="zcu104", io_type="stream", precision=PREC,
                         fifo_storage={"x_cp0b": "bram"})
    top = "".join(p.read_text() for p in (prj / "firmware").glob("*.cpp"))
    g = load_project_graph(prj)
    var = g.c_names()["t:x_cp0b"]
    assert f"#pragma HLS BIND_STORAGE variable = {var} type = fifo impl = bram" in top
    assert top.count("type = fifo") == 1
    assert ProjectDir(prj).get("fifo_impls") == {"x_cp0b": "bram"}
    assert g.tensor("x_cp0b").fifo_impl == "bram" and g.tensor("hb").fifo_impl == "auto"
    fresh = compile_graph(residual_model(), PREC, "stream")
    set_fifo_depths(fresh, "zcu104")
    board = hwprune.board.load_board("zcu104")
    assert estimate(g, board).resources.bram18 - estimate(fresh, board).resources.bram18 == 43
    x = np.random.default_rng(1).normal(size=(2, S, W)).astype(np.float32)
    np.testing.assert_array_equal(raw_outputs(prj, [x])[0], trace_fixed(g, [x]).values[g.outputs[0]])


def test_set_fifo_storage_refuses_unknown_fifos_and_storages():
    g = compile_graph(residual_model(), PREC, "stream")
    with pytest.raises(ConfigError, match="no FIFO named 'nope'"):
        set_fifo_storage(g, {"nope": "srl"})
    with pytest.raises(ConfigError, match="storage 'uram'"):
        set_fifo_storage(g, {"x_cp0b": "uram"})
    with pytest.raises(ConfigError, match="io_stream"):
        set_fifo_storage(compile_graph(residual_model(), PREC, "parallel"), {"x_cp0b": "srl"})
