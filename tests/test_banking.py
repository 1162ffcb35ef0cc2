"""The estimate costs the ROMs the project writes, banked as the kernels ask for them.

* For every weighted kernel (dense, sparse dense, conv, sparse conv, embedding) the words x
  width of each memory the cost model charges equal the bits of the weight header the project
  writes (the Dense ROM used to be costed at a bank depth of ceil(RF / multipliers) words).
* The banking the cost model assumes is what the generated code asks for: the factors in
  parameters.h, the ARRAY_PARTITION / ARRAY_RESHAPE pragmas of the kernels (UG1399 syntax), and
  a replay of each kernel's read schedule on that partition (UG1399 block / cyclic semantics)
  reads no bank twice in a cycle.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

import hwprune
from conftest import fin, iin, make_model
from hwprune.fixed import FixedType
from hwprune.precision import PrecisionConfig
from hwprune.project import load_project_graph
from hwprune.prune.onnx_prune import prune_onnx
from hwprune.prune.patterns import Pattern
from hwprune.sim.estimate import estimate

RNG = np.random.default_rng(3)


def dense_model(n_in: int = 24, n_out: int = 20):
    return make_model([helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1, name="fc")], [fin("x", n_in)],
                      [fin("y", n_out)], [("w", RNG.normal(size=(n_out, n_in)) * 0.3), ("b", RNG.normal(size=n_out) * 0.1)])


def conv_model():
    return make_model([helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", pads=[1, 1])], [fin("x", 4, 10)],
                      [fin("y", 8, 10)], [("w", RNG.normal(size=(8, 4, 3)) * 0.3), ("b", RNG.normal(size=8) * 0.1)])


def embedding_model():
    return make_model([helper.make_node("Gather", ["t", "ids"], ["y"], name="emb")], [iin("ids", 7)], [fin("y", 7, 6)],
                      [("t", RNG.normal(size=(50, 6)))])


def models():
    dense, conv = dense_model(), conv_model()
    out = [("dense", dense), ("conv", conv), ("embedding", embedding_model())]
    for p, s in (("block:4x4", 0.75), ("block:4x4:col", 0.75), ("bbs:8", 0.75), ("nm:2:4", 0.5)):
        out.append((f"dense_{p}", prune_onnx(dense, Pattern.parse(p), s)[0]))
    for p, s in (("block:4x4", 0.5), ("nm:2:4", 0.5)):
        out.append((f"conv_{p}", prune_onnx(conv, Pattern.parse(p), s)[0]))
    return out


MODELS = models()
WEIGHT_HEADER = re.compile(r"rom_word<(\d+), (true|false)>::type (\w+)\[(\d+)\]")


def project(tmp_path: Path, model, io: str, rf: int, rom_impl: str | None = None) -> tuple[Path, object]:
    prec = PrecisionConfig().with_overrides(result=FixedType.parse("ap_fixed<8,3,AP_RND_CONV,AP_SAT>"), reuse_factor=rf,
                                            rom_impl=rom_impl)
    prj = hwprune.export(model, tmp_path / f"{io}_{rf}", io_type=io, precision=prec)
    return prj, load_project_graph(prj)


def written_roms(prj: Path) -> dict[str, int]:
    """C array name -> bits the project writes for it (its weights header)."""
    out = {}
    for h in (prj / "firmware" / "weights").glob("*.h"):
        bits, _, name, size = WEIGHT_HEADER.search(h.read_text()).groups()
        out[name] = int(bits) * int(size)
    return out


def configs(prj: Path) -> dict[str, dict[str, int]]:
    """Layer C name -> the integer constants of its config struct in parameters.h."""
    text = (prj / "firmware" / "parameters.h").read_text()
    out = {}
    for name, body in re.findall(r"struct (\w+)_config \{(.*?)\n\};", text, re.S):
        out[name] = {k: int(v) for k, v in re.findall(r"\b(\w+) = (-?\d+)", body)}
    return out


@pytest.mark.parametrize("name,model", MODELS, ids=[n for n, _ in MODELS])
@pytest.mark.parametrize("io,rf", [("parallel", 1), ("parallel", 3), ("stream", 4), ("stream", 16)])
def test_costed_rom_bits_equal_the_written_weight_bits(tmp_path, name, model, io, rf):
    prj, g = project(tmp_path, model, io, rf)
    est = estimate(g, hwprune.board.load_board("pynq-z2"))
    names = hwprune.backend.hls_project.hls_names(g)
    written = written_roms(prj)
    checked = 0
    for le in est.layers:
        lname = names[f"L:{le.name}"]
        roms = [m for m in le.cost.memories if m.kind in ("rom", "const")]
        for m in roms:
            assert m.bits == written[f"{lname}_{m.array}"], (le.name, m)
            checked += 1
        # Every weight array the project writes for this layer is costed.
        assert {f"{lname}_{m.array}" for m in roms} == {k for k in written if k.startswith(f"{lname}_")}
        # What a memory costs is what its banks cost, in BRAM/URAM/LUTRAM (constants: nothing).
        c = le.cost
        if roms and all(m.kind == "const" for m in roms):
            assert c.bram18 == 0 and c.uram == 0
    assert checked >= (1 if name == "embedding" else 2)


@pytest.mark.parametrize("n,rf,bram", [(512, 4096, 128), (256, 2048, 32)])
def test_dense_rom_at_high_reuse_is_block_ram(n, rf, bram):
    """Issue 13: Linear(512, 512) at 8 bits and RF 4096 (2.1 Mbit of weights) was costed at
    0 BRAM18, Linear(256, 256) at RF 1024 (512 kbit) at 128 LUTs: every bank got ceil(RF /
    multipliers) words instead of RF. (A 1024 x 8 bank, 8 Kbit, is logic by yosys's measured ROM
    inference, docs/estimate_primitives.md; 2048 x 8 is one BRAM18.)"""
    prec = PrecisionConfig().with_overrides(result=FixedType.parse("ap_fixed<8,3>"), reuse_factor=rf)
    c = hwprune.estimate(dense_model(n, n), "zcu104", precision=prec).layers[0].cost
    (w,) = [m for m in c.memories if m.array == "w"]
    assert w.bits == n * n * 8 and w.banks == n * n // rf and w.bank_words == rf
    assert c.bram18 == bram  # one 8-bit bank of RF words per multiplier: 2 (4096 deep) / 1 (2048 deep) BRAM18
    assert c.bram18 * 18 * 1024 >= n * n * 8


# ---------------------------------------------------------------------- banking vs the code

def block_bank(k: int, size: int, factor: int) -> int:
    """UG1399 block partition: the first factor-1 arrays hold size // factor elements, the
    last the rest (AB[13], factor 4: 3, 3, 3 and AB[9:12])."""
    per = size // factor
    return min(k // per, factor - 1) if per else k


def kernel_text(prj: Path, header: str) -> str:
    return (prj / "firmware" / "hwprune" / header).read_text()


@pytest.mark.parametrize("name,model", [m for m in MODELS if m[0].startswith("dense")],
                         ids=[n for n, _ in MODELS if n.startswith("dense")])
@pytest.mark.parametrize("rf,rom_impl", [(1, None), (3, None), (5, None), (16, None), (64, None), (5, "bram"), (16, "bram")])
def test_dense_reads_distinct_banks_every_cycle(tmp_path, name, model, rf, rom_impl):
    """Every cycle's weight reads go to distinct banks — or, with rom_impl "bram", to at most the
    two ports of each dual-port bank."""
    prj, g = project(tmp_path, model, "stream", rf, rom_impl)
    layer = g.layers[0]
    cost = estimate(g, hwprune.board.load_board("pynq-z2")).layers[0].cost
    mems = {m.array: m for m in cost.memories}
    cfg = configs(prj)[hwprune.backend.hls_project.hls_names(g)[f"L:{layer.name}"]]
    sparse = layer.sparsity is not None
    text = kernel_text(prj, "dense_sparse.h" if sparse else "dense.h")
    assert "#pragma HLS ARRAY_PARTITION variable = w type = block factor = w_banks dim = 1" in text
    assert "#pragma HLS ARRAY_PARTITION variable = b type = complete dim = 1" in text
    assert (cfg["w_words"], cfg["w_banks"]) == (mems["w"].words, mems["w"].banks)
    ports = 2 if rom_impl else 1
    assert cfg["reuse_factor"] == rf and -(-cfg["n_mult"] // ports) == mems["w"].banks
    kept = layer.sparsity.kept_weights if sparse else layer.n_in * layer.n_out
    bs = layer.sparsity.block[0] * layer.sparsity.block[1] if sparse else 1
    if sparse:
        assert "#pragma HLS ARRAY_PARTITION variable = idx type = block factor = idx_banks dim = 1" in text
        assert (cfg["idx_words"], cfg["idx_banks"]) == (mems["idx"].words, mems["idx"].banks)
    # Replay the reuse schedule: weight k = m*RF + r on multiplier m in cycle r.
    for r in range(rf):
        ks = [m * rf + r for m in range(cfg["n_mult"]) if m * rf + r < kept]
        wb = [block_bank(k, cfg["w_words"], cfg["w_banks"]) for k in ks]
        assert max(wb.count(b) for b in wb) <= ports, f"cycle {r}: weight banks {wb}"
        if sparse:
            blocks = sorted({k // bs for k in ks})
            ib = [block_bank(b, cfg["idx_words"], cfg["idx_banks"]) for b in blocks]
            assert len(set(ib)) == len(ib) or cfg["idx_banks"] == cfg["idx_words"], f"cycle {r}: index banks {ib}"
    # Each bank holds exactly the RF weights of its multiplier(s) (the cost model's bank depth).
    assert cfg["w_words"] == mems["w"].banks * ports * rf


@pytest.mark.parametrize("name,model", [m for m in MODELS if m[0].startswith("conv")],
                         ids=[n for n, _ in MODELS if n.startswith("conv")])
@pytest.mark.parametrize("io,rf", [("parallel", 1), ("stream", 3), ("stream", 8), ("parallel", 40)])
def test_conv_banks_serve_a_pixel_in_rf_cycles(tmp_path, name, model, io, rf):
    """A pixel (a pipeline iteration of II = RF) reads every stored weight and index once: with
    a cyclic partition into the costed banks no bank holds more than RF words."""
    prj, g = project(tmp_path, model, io, rf)
    layer = g.layers[0]
    mems = {m.array: m for m in estimate(g, hwprune.board.load_board("pynq-z2")).layers[0].cost.memories}
    cfg = configs(prj)[hwprune.backend.hls_project.hls_names(g)[f"L:{layer.name}"]]
    sparse = layer.sparsity is not None
    text = kernel_text(prj, "conv_sparse.h" if sparse else "conv.h")
    assert "#pragma HLS ARRAY_PARTITION variable = w type = cyclic factor = w_banks dim = 1" in text
    assert cfg["w_banks"] == mems["w"].banks and cfg["n_p0"] == mems["w"].words
    arrays = [("w", cfg["n_p0"], cfg["w_banks"])]
    if sparse:
        assert "#pragma HLS ARRAY_PARTITION variable = idx type = cyclic factor = idx_banks dim = 1" in text
        assert cfg["idx_banks"] == mems["idx"].banks and cfg["n_p2"] == mems["idx"].words
        arrays.append(("idx", cfg["n_p2"], cfg["idx_banks"]))
    for what, size, banks in arrays:
        per_bank = np.bincount(np.arange(size) % banks, minlength=banks)
        assert per_bank.max() <= rf, (what, per_bank.max(), rf)
        assert mems[what].bank_words == per_bank.max()


@pytest.mark.parametrize("io", ["parallel", "stream"])
def test_embedding_table_is_reshaped_into_rows(tmp_path, io):
    prj, g = project(tmp_path, embedding_model(), io, 1)
    (m,) = estimate(g, hwprune.board.load_board("pynq-z2")).layers[0].cost.memories
    text = kernel_text(prj, "embedding.h")
    assert "#pragma HLS ARRAY_RESHAPE variable = table type = cyclic factor = row_elems dim = 1" in text
    assert "const int row_elems = CFG::dim;" in text
    cfg = next(iter(configs(prj).values()))
    # One ROM word per row: vocab words of dim x width bits, the memory the estimate costs.
    assert (m.words, m.width) == (cfg["vocab"], cfg["dim"] * 8) and m.partition == "reshape"
    if io == "parallel":
        assert "#pragma HLS BIND_STORAGE variable = table type = rom_np" in text and m.copies == cfg["n_ids"]


# ---------------------------------------------------------------------- weight banks in block RAM

def test_rom_impl_bram_moves_the_weight_banks_into_block_ram():
    """rom_impl "bram": two multipliers' weight banks in one dual-port BRAM18 (a 1,024 x 8 bank
    is logic by yosys's ROM rule, ~173 LUTs: docs/estimate_primitives.md; two of them are one
    BRAM18 in its 2,048 x 9 shape), the output registers inside the BRAM; at RF 1 the weights
    are the multipliers' constants and there is nothing to bind."""
    from hwprune.precision import LayerPrecision

    t = FixedType.parse("ap_fixed<8,3>")
    model = dense_model(256, 256)

    def cost(rf, impl):
        prec = PrecisionConfig(LayerPrecision(result=t, weight_width=8, reuse_factor=rf, rom_impl=impl))
        return hwprune.estimate(model, "zcu104", precision=prec).layers[0].cost

    auto, bram = cost(1024, None), cost(1024, "bram")
    (w,) = [m for m in bram.memories if m.array == "w"]
    assert w.impl == "bram" and w.banks == 32 and w.bank_words == 2048 and w.cost().bram18 == 32
    assert auto.bram18 == 0 and bram.bram18 == 32
    # The logic ROM: 8 bits x 21.625 LUTs per output bit of a 1,024-word ROM, per bank.
    assert auto.lut - bram.lut == pytest.approx(64 * 8 * 21.625)
    assert bram.ff < auto.ff and bram.dsp == auto.dsp and bram.latency == auto.latency
    one_auto, one_bram = cost(1, None), cost(1, "bram")
    assert (one_auto.lut, one_auto.bram18) == (one_bram.lut, one_bram.bram18)
    with pytest.raises(Exception, match="rom_impl"):
        PrecisionConfig.from_dict({"model": {"rom_impl": "uram"}})


@pytest.mark.parametrize("io", ["parallel", "stream"])
@pytest.mark.parametrize("pattern", [None, "block:2x2"])
def test_rom_impl_bram_binds_the_banks_and_keeps_the_bits(tmp_path, io, pattern):
    """The project asks Vitis for block RAM (BIND_STORAGE type=rom_2p impl=bram on the weight
    argument, in the overload rom_impl = 1 selects) and the C simulation is unchanged."""
    from hwprune.backend.csim import raw_outputs
    from hwprune.pipeline import trace_fixed
    from hwprune.precision import LayerPrecision

    model = dense_model(16, 12)
    if pattern:
        model, _ = prune_onnx(model, Pattern.parse(pattern), 0.5)
    prec = PrecisionConfig(LayerPrecision(result=FixedType.parse("ap_fixed<10,4>"), weight_width=8, reuse_factor=8,
                                          rom_impl="bram"))
    prj = hwprune.export(model, tmp_path / "p", board="pynq-z2", precision=prec, io_type=io)
    (cfg,) = configs(prj).values()
    assert cfg["rom_impl"] == 1
    header = kernel_text(prj, "dense_sparse.h" if pattern else "dense.h")
    body = {tag: header.split(f"rom_impl_tag<{tag}>) {{")[1].split("\n}\n")[0] for tag in (0, 1)}
    assert "BIND_STORAGE variable = w type = rom_2p impl = bram" in body[1]
    assert "BIND_STORAGE" not in body[0]
    assert all("ARRAY_PARTITION variable = w type = block factor = w_banks" in b for b in body.values())
    g = load_project_graph(prj)
    x = np.random.default_rng(1).normal(size=(4, 16)).astype(np.float32)
    np.testing.assert_array_equal(raw_outputs(prj, [x])[0], trace_fixed(g, [x]).values[g.outputs[0]])
    est = estimate(g, hwprune.board.load_board("pynq-z2")).layers[0].cost
    (w,) = [m for m in est.memories if m.array == "w"]
    assert w.impl == "bram" and est.bram18 >= w.banks
