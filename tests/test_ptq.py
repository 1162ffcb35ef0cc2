"""Post-training fixed point (hwprune.quantize.ptq) and the budget-driven pruner on a model
Brevitas cannot wrap (a transformer encoder layer: LayerNorm, GELU, softmax attention): the
export against qonnx's executor and the search's weight rounding, the C simulation bit for
bit, and prune_to_budget choosing post-training by itself and writing a design that meets the
budget."""

from __future__ import annotations

import dataclasses

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

import hwprune
from hwprune.backend.csim import raw_outputs
from hwprune.codesign.budget import Budget
from hwprune.codesign.pruner import BudgetConfig, choose_quantization, prune_to_budget
from hwprune.codesign.space import fake_quantize
from hwprune.errors import ConfigError
from hwprune.pipeline import compile_graph, run_fixed, run_float, run_onnx, trace_fixed
from hwprune.quantize.ptq import export_ptq, weight_scale

SEQ, WIDTH, CLASSES = 6, 16, 3


class Encoder(nn.Module):
    """Embedded sequence -> one post-LN encoder layer (GELU FFN) -> mean over tokens -> classes."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        torch.backends.mha.set_fastpath_enabled(False)  # the fused kernel has no ONNX export
        self.layer = nn.TransformerEncoderLayer(WIDTH, 2, 32, dropout=0.0, activation="gelu", batch_first=True)
        self.fc = nn.Linear(WIDTH, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layer(x).mean(dim=1))


def _data(n: int = 480, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, SEQ, WIDTH)).astype(np.float32)
    y = (x[:, :, :CLASSES].mean(axis=1)).argmax(axis=1).astype(np.int64)  # which of 3 channels is largest
    return x, y


def _reference_round(w: torch.Tensor, bits: int) -> torch.Tensor:
    """Brevitas-style narrow-range power-of-two weight rounding, written out here in torch as
    the independent reference of hwprune.quantize.ptq.round_weight."""
    levels = 2 ** (bits - 1) - 1
    m = float(w.abs().max())
    scale = 2.0 ** math.ceil(math.log2(m / levels)) if m else 1.0
    return torch.clamp(torch.round(w / scale), -levels, levels) * scale


def test_weight_scale_is_the_smallest_power_of_two_covering_the_weights():
    w = np.array([0.3, -0.9, 0.1])
    assert weight_scale(w, 4) == 0.25  # 7 levels: 7 * 2**-3 = 0.875 < 0.9 <= 7 * 2**-2
    assert weight_scale(w, 8) == 2.0 ** -7  # 127 * 2**-7 = 0.99
    assert weight_scale(np.zeros(3), 8) == 1.0


def test_export_is_the_model_with_the_searchs_rounding():
    """onnxruntime runs the export (an independent reference) as the torch model with its
    Linear weights rounded by a reference written out in torch; the IR holds exactly those
    weights at those widths."""
    model = Encoder().eval()
    x, _ = _data(8)
    bits = {"fc": 4, "layer.linear1": 6}
    proto = export_ptq(model, x[:1], bits, default_bits=8)
    rounded = Encoder().eval()
    with torch.no_grad():
        for name, mod in rounded.named_modules():
            if isinstance(mod, nn.Linear):
                mod.weight.copy_(_reference_round(mod.weight, bits.get(name, 8)))
        # nn.MultiheadAttention's packed Q/K/V projection is one weight of the export too
        a = rounded.layer.self_attn
        a.in_proj_weight.copy_(_reference_round(a.in_proj_weight, 8))
        want = rounded(torch.from_numpy(x)).numpy()
    got = run_onnx(proto, [x])[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    g = compile_graph(proto, None, "stream")
    fc = [l for l in g.layers if type(l).__name__ == "Dense" and l.n_out == CLASSES]
    assert len(fc) == 1 and fc[0].weight_t.width == 4
    np.testing.assert_array_equal(fc[0].weight.T, _reference_round(model.fc.weight.detach(), 4).numpy().astype(np.float64))
    # the search's sensitivity rounds the same way
    assert torch.equal(fake_quantize(model.fc.weight.detach(), 4), _reference_round(model.fc.weight.detach(), 4))


def test_bad_bits_are_clear_errors():
    model, (x, _) = Encoder().eval(), _data(2)
    with pytest.raises(ConfigError, match="no such Linear/Conv"):
        export_ptq(model, x[:1], {"nope": 4})
    with pytest.raises(ConfigError, match="from 2 to 16"):
        export_ptq(model, x[:1], {"fc": 1})


@pytest.mark.parametrize("io", ["stream"])  # the attention kernels' own tests cover both io types
def test_ptq_csim_is_bit_exact_and_close_to_float(tmp_path, io):
    model, (x, _) = Encoder().eval(), _data(6)
    proto = export_ptq(model, x[:1], default_bits=8)
    prj = hwprune.export(proto, tmp_path / io, io_type=io)
    g = compile_graph(proto, None, io)
    np.testing.assert_array_equal(raw_outputs(prj, [x])[0], trace_fixed(g, [x]).values[g.outputs[0]])
    # float vs fixed: only quantization apart (8-bit weights, ap_fixed<16,6> activations)
    assert np.max(np.abs(run_fixed(g, [x])[0] - run_float(g, [x])[0])) < 0.25


def test_auto_picks_post_training_for_layernorm_models_and_qat_otherwise():
    x, _ = _data(2)
    mode, why = choose_quantization("auto", Encoder(), torch.from_numpy(x[:1]))
    assert mode == "ptq" and why
    mlp = nn.Sequential(nn.Linear(WIDTH, 8), nn.ReLU(), nn.Linear(8, CLASSES))
    assert choose_quantization("auto", mlp, torch.zeros(1, WIDTH)) == ("qat", "")
    with pytest.raises(ConfigError, match="expected one of"):
        choose_quantization("int8", mlp, torch.zeros(1, WIDTH))


@pytest.mark.slow
def test_budget_driven_pruner_on_an_encoder_layer(tmp_path):
    """QAT refuses the encoder; the pruner says so, goes post-training, and writes a design
    that meets the budget with its fixed-point accuracy measured on the bit-exact reference."""
    task, x, y, te = _encoder_task()
    said: list[str] = []
    cfg = BudgetConfig(board="zcu104", budget=Budget(latency_us=60), finetune_epochs=1, qat_epochs=0, seed=0,
                       sparsities=(0.5, 0.75), patterns=("block:4x4", "nm:2:4"))
    res = prune_to_budget(task, cfg, tmp_path / "design", say=said.append)
    r = res.report
    assert any("post-training" in m for m in said)
    assert r["meets_budget"] and r["latency_us"] <= 60
    assert {l["module"] for l in r["layers"]} >= {"layer.linear1", "layer.linear2", "fc"}
    # the packed Q/K/V projection (a weight but no Linear module), 2 attention MatMuls, 2 LayerNorms,
    # the softmax, the GELU and the mean over the sequence
    assert sum(l["kind"] == "engine" for l in r["layers"]) == 8
    assert r["accuracy_before"] > 0.6  # the trained model learned the task (chance: 1/3)
    assert r["accuracy_after"] > r["accuracy_before"] - 0.15
    saved = json.loads((tmp_path / "design" / "report.json").read_text())
    assert saved["accuracy_after"] == r["accuracy_after"]
    # The design's graph (the written project) computes what the report's accuracy measured.
    from hwprune.project import load_project_graph

    g = load_project_graph(tmp_path / "design" / "project")
    acc = float(np.mean(run_fixed(g, [x[te]])[0].argmax(1) == y[te]))
    assert acc == pytest.approx(r["accuracy_after"])
    for l in r["layers"]:  # the chosen reuse factors are the written project's
        assert g.layer(l["layer"]).reuse_factor == l["reuse_factor"], l["layer"]


def _encoder_task():
    from hwprune.task import Task
    from hwprune.training import FitConfig, fit

    x, y = _data()
    idx = np.arange(len(x))
    tr, va, te = idx[:320], idx[320:400], idx[400:]
    model = Encoder()
    fit(model, x, y, tr, va, FitConfig(epochs=6, batch_size=32, lr=3e-3, seed=0))
    return Task.from_split(model.eval(), x, y, tr, va, te, batch_size=32, name="encoder"), x, y, te


def test_engines_are_sites_whose_predicted_costs_are_the_realized_ones():
    """The attention MatMuls, the LayerNorms, the softmax and the GELU have no weights but a
    reuse factor, and nn.MultiheadAttention's packed Q/K/V projection is no Linear module: they
    are sites of the search (reuse factors only), and what the solver predicts for every site is
    what the realized design's estimate costs, layer by layer."""
    from hwprune.codesign.pruner import _Run
    from hwprune.codesign.solver import solve
    from hwprune.codesign.space import build_space
    from hwprune.sim.estimate import estimate

    task, *_ = _encoder_task()
    cfg = BudgetConfig(board="pynq-z2", budget=Budget(latency_us=40), finetune_epochs=0, qat_epochs=0,
                       patterns=("block:4x4",), sparsities=(0.5,))
    run = _Run(task, cfg, lambda m: None)
    assert run.quantization == "ptq"
    space = build_space(task.model, run.data, run.board, run.clock, run.cfg.space_config(), lambda m: None)
    engines = [s for s in space.sites if s.kind == "engine"]
    gq = compile_graph(export_ptq(task.model, run.data.example()), None, "stream")
    kinds = sorted(type(gq.layer(s.layer)).__name__ for s in engines)
    # Dense: the packed Q/K/V projection; Activation: the GELU over the 32-wide FFN words.
    assert kinds == ["Activation", "Dense", "GlobalPool", "LayerNorm", "LayerNorm", "MatMul", "MatMul", "Softmax"]
    assert all(len(s.options) > 3 and all(o.loss == 0 for o in s.options) for s in engines)
    # Softmax over 6 keys: candidates 1, 2, 3, 4, 6 settle at RF 1, 2, 3, 3, 6 (ceil(6 / RF) lanes).
    (sm,) = [s for s in engines if type(gq.layer(s.layer)).__name__ == "Softmax"]
    assert [o.choice.reuse_factor for o in sm.options] == [1, 2, 3, 6]
    assert [o.cost.dsp for o in sm.options] == [6, 3, 2, 1]  # an 18 x 18 multiplier per lane
    # The mean over 6 tokens of 16 channels: candidates up to 16 settle at RF 1, 2, 3, 4, 6, 8, 16
    # (12: 2 lanes of 8); a 19-bit sum times the unsigned 18-bit reciprocal is 2 DSPs per lane.
    (mean,) = [s for s in engines if type(gq.layer(s.layer)).__name__ == "GlobalPool"]
    assert [o.choice.reuse_factor for o in mean.options] == [1, 2, 3, 4, 6, 8, 16]
    assert [o.cost.dsp for o in mean.options] == [32, 16, 12, 8, 6, 4, 2]
    sol = solve(space, cfg.budget)
    r = run.realize(sol, space, train=False)
    costs = {le.name: le.cost for le in estimate(r.graph, run.board).layers}
    for site, o in zip(space.sites, sol.options):
        real = costs[site.layer if site.kind == "engine" else r.layer_of[site.module]]
        assert real.dsp == o.cost.dsp and real.ii == o.cost.ii and real.latency == o.cost.latency, site.layer
        assert real.lut == pytest.approx(o.cost.lut, rel=0.02)
    assert {r.graph.layer(s.layer).reuse_factor for s, o in zip(space.sites, sol.options) if s.kind == "engine"} \
        == {o.choice.reuse_factor for s, o in zip(space.sites, sol.options) if s.kind == "engine"}
    assert not r.violations

    # Weight banks in block RAM: the deep-RF options of the Dense sites have a twin of equal
    # loss that trades LUTs for BRAM18 (at least 32 LUTs each); realized, the layer carries it
    # and costs what the option predicted.
    twins = [(s, o) for s in space.sites for o in s.options if o.choice.rom_impl == "bram"]
    # (A ROM of up to 8 words is 0.875 LUTs a bit, a pair of 16-bit ones 28 LUTs: a BRAM18
    # would not pay.)
    assert twins and all(o.choice.reuse_factor > 8 for _, o in twins)
    for s, o in twins:
        (auto,) = [a for a in s.options if a.choice == dataclasses.replace(o.choice, rom_impl="auto")]
        assert o.loss == auto.loss and o.cost.bram18 > auto.cost.bram18
        assert auto.cost.lut - o.cost.lut >= 32 * (o.cost.bram18 - auto.cost.bram18)
    # The output stage shared over the next word: a twin of equal loss, fewer LUTs, a word of
    # RF cycles later.
    shared = [(s, o) for s in space.sites for o in s.options if o.choice.output_stage == "shared"]
    assert shared and all(o.choice.reuse_factor > 1 for _, o in shared)
    for s, o in shared:
        (par,) = [a for a in s.options if a.choice == dataclasses.replace(o.choice, output_stage="parallel")]
        assert o.loss == par.loss and o.cost.lut < par.cost.lut and o.cost.latency - par.cost.latency == o.choice.reuse_factor
    # Realized, a layer carries both choices and costs what the option predicted.
    site, both = next((s, o) for s, o in twins if o.choice.output_stage == "parallel" and any(
        x.choice == dataclasses.replace(o.choice, output_stage="shared") for x in s.options))
    both = next(x for x in site.options if x.choice == dataclasses.replace(both.choice, output_stage="shared"))
    options = [both if s is site else o for s, o in zip(space.sites, sol.options)]
    r = run.realize(dataclasses.replace(sol, options=options), space, train=False)
    layer = r.graph.layer(site.layer if site.kind == "engine" else r.layer_of[site.module])
    assert (layer.rom_impl, layer.output_stage, layer.reuse_factor) == ("bram", "shared", both.choice.reuse_factor)
    real = estimate(r.graph, run.board).layers
    real = next(le.cost for le in real if le.name == layer.name)
    assert real.bram18 == both.cost.bram18 and real.latency == both.cost.latency
    assert real.lut == pytest.approx(both.cost.lut, rel=0.02)


MODEL_FILE = '''
import torch
from torch import nn


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        torch.backends.mha.set_fastpath_enabled(False)
        self.layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, activation="gelu", batch_first=True)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc(self.layer(x).mean(dim=1))


def encoder():
    return Encoder()
'''


def _encoder_file(tmp_path) -> list[str]:
    """models.py:encoder with trained-shape weights and data files: the CLI's own-model arguments."""
    (tmp_path / "models.py").write_text(MODEL_FILE)
    model = Encoder()  # the same architecture: its state dict loads into models.py:encoder()
    x, y = _data()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    np.savez(tmp_path / "d.npz", x=x, y=y)
    return [f"{tmp_path / 'models.py'}:encoder", "--weights", str(tmp_path / "w.pt"), "--data", str(tmp_path / "d.npz")]


def test_compare_command_on_an_encoder_file(tmp_path, capsys):
    """`hwprune compare` on a transformer layer: post-training rows, the fixed-point accuracy of
    each and its hardware; the JSON rows say so (no quantized torch model to cross-check)."""
    from hwprune.cli import main

    out = tmp_path / "rows.json"
    code = main(["compare", *_encoder_file(tmp_path), "--board", "zcu104", "--patterns", "block:4x4", "--sparsity", "0.5",
                 "--epochs", "0", "--qat-epochs", "0", "--max-eval", "40", "--json", str(out)])
    text = capsys.readouterr().out
    assert code == 0 and "post-training" in text
    rows = json.loads(out.read_text())
    rows = rows["rows"] if isinstance(rows, dict) else rows
    assert [(r["pattern"], r["bits"]) for r in rows] == [("dense", 32), ("dense", 8), ("block:4x4", 8)]
    assert all(r["torch_accuracy"] is None for r in rows[1:]) and all(0 <= r["accuracy"] <= 1 for r in rows)
    assert rows[2]["macs"] < rows[1]["macs"]  # the block kernel skips the pruned blocks


@pytest.mark.slow
def test_prune_command_on_an_encoder_file(tmp_path, capsys):
    """The user's door: `hwprune prune FILE.py:FUNCTION` on a transformer layer goes
    post-training by itself and writes a design the other commands read; `--quantization qat`
    refuses it with one line and exit 2, writing nothing."""
    from hwprune.cli import main

    common = [*_encoder_file(tmp_path), "--board", "zcu104", "--latency-us", "60", "--epochs", "0", "--qat-epochs", "0"]
    code = main(["prune", *common, "--quantization", "qat", "--out", str(tmp_path / "q")])
    err = capsys.readouterr().err
    assert code == 2 and "quantiz" in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "q").exists()
    out = tmp_path / "design"
    assert main(["prune", *common, "--out", str(out)]) == 0, capsys.readouterr().err
    assert "post-training" in capsys.readouterr().out
    assert main(["simulate", str(out), "--board", "zcu104"]) == 0
    r = json.loads((out / "report.json").read_text())
    assert r["meets_budget"] and r["latency_us"] <= 60
    # The design's report shows the encoder: its Linear sites by module, the attention engines,
    # LayerNorms and softmax among the other layers' resources.
    html = (out / "report.html").read_text()
    assert "self_attn.out_proj" in html and "linear1" in html
    assert all(op in html for op in ("LayerNorm", "Softmax", "MatMul"))


def test_weight_types_are_finn_datatype_annotations_qonnx_reads():
    """The rounded weights are declared the way FINN/QONNX declare tensor types: qonnx's own
    ModelWrapper reads each as FIXED<W,I>, and every value lies on that type's grid."""
    from onnx import numpy_helper
    from qonnx.core.modelwrapper import ModelWrapper

    model, (x, _) = Encoder().eval(), _data(2)
    proto = export_ptq(model, x[:1], {"fc": 4}, default_bits=6)
    mw = ModelWrapper(proto)
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    names = [qa.tensor_name for qa in proto.graph.quantization_annotation]
    assert len(names) == 5  # packed Q/K/V, out_proj, linear1, linear2, fc
    dts = {n: mw.get_tensor_datatype(n) for n in names}
    widths = sorted(dt.bitwidth() for dt in dts.values())
    assert widths.count(4) == 1 and all(w in (4, 6) for w in widths)
    for n, dt in dts.items():
        assert dt.name.startswith("FIXED<")
        frac = dt.bitwidth() - dt.int_bits()
        raw = inits[n].astype(np.float64) * 2.0 ** frac
        assert np.all(raw == np.round(raw)) and np.abs(raw).max() <= 2 ** (dt.bitwidth() - 1) - 1


def test_a_design_space_is_reused_only_for_the_board_it_was_built_for(tmp_path):
    """explore measures the space once and hands it to every point; a space of another board
    (or clock, or io type) is refused before any search."""
    from hwprune.codesign.pruner import design_space

    task, *_ = _encoder_task()
    cfg = BudgetConfig(board="pynq-z2", budget=Budget(latency_us=40), finetune_epochs=0, patterns=("block:4x4",),
                       sparsities=(0.5,))
    space = design_space(task, cfg)
    with pytest.raises(ConfigError, match="built for pynq-z2"):
        prune_to_budget(task, BudgetConfig(board="zcu104", budget=Budget(latency_us=40), finetune_epochs=0),
                        tmp_path / "d", space=space)
    assert not (tmp_path / "d").exists()
