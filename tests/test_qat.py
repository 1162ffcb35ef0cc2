"""Quantization-aware training of the TextCNN with Brevitas by module swap (hwprune.quantize): the QONNX export,
imported into the IR, runs bit for bit like QONNX's own execution (qonnx execute_onnx, the
independent reference) in the numpy fixed-point engine and in the C simulation (io_parallel and
io_stream), with the narrow quantized types in hardware, per-layer bit widths, and pruned
block patterns kept through QAT and run on the sparse kernels."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

pytest.importorskip("brevitas")

import hwprune
from hwprune.errors import ConfigError
from hwprune.fixed import FixedType, Overflow
from hwprune.ir.graph import Graph
from hwprune.ops.conv import Conv
from hwprune.ops.dense import Dense
from hwprune.ops.activation import Activation
from hwprune.ops.embedding import Embedding
from hwprune.ops.merge import Concat
from hwprune.ops.pool import GlobalPool
from hwprune.ops.quant import Quantize, union_type
from hwprune.pipeline import compile_graph, run_fixed
from hwprune.precision import DEFAULT_RESULT
from hwprune.prune.torch_prune import Pruner
from hwprune.quantize import QuantConfig, activation_scales, calibrate, export_qonnx, finetune, module_map, quantize_model
from hwprune.quantize.qat import check_fixed_point
from hwprune.text.model import TextCNN

VOCAB, SEQ, CLASSES, DIM, FILTERS, WIDTHS = 40, 12, 4, 8, 8, (2, 3, 4)
# convs.0: 4-bit weights and a 6-bit ReLU quantizer; 6-bit features before the classifier.
CFG = QuantConfig(layers={"convs.0": (4, 6), "fc_input_quant": (None, 6)})
EXAMPLE = torch.zeros((1, SEQ), dtype=torch.long)
PATTERN = "block:4x2"  # conv weights (8, 8*w) and the classifier (4, 24) divide into 4x2 blocks


def data(seed: int, n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, VOCAB, size=(n, SEQ))
    return ids, (ids < VOCAB // 3).sum(axis=1) % CLASSES


def batches(ids: np.ndarray, y: np.ndarray, size: int = 16) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(torch.from_numpy(ids[i:i + size]), torch.from_numpy(y[i:i + size])) for i in range(0, len(ids), size)]


def qonnx_execute(proto: onnx.ModelProto, ids: np.ndarray) -> np.ndarray:
    """QONNX's own execution of the exported model, one sample at a time."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.util.cleanup import cleanup_model

    m = onnx.ModelProto()
    m.CopyFrom(proto)
    mw = cleanup_model(ModelWrapper(m))
    iname, oname = mw.graph.input[0].name, mw.graph.output[0].name
    return np.stack([execute_onnx(mw, {iname: ids[i:i + 1]})[oname][0] for i in range(len(ids))])


def torch_out(model: torch.nn.Module, ids: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        y = model(torch.from_numpy(ids))
    return getattr(y, "value", y).numpy()


def pruned_float_model() -> TextCNN:
    torch.manual_seed(0)
    fm = TextCNN(VOCAB, CLASSES, DIM, FILTERS, WIDTHS, dropout=0.2)
    pruner = Pruner(fm, PATTERN, sparsity=0.5, prune_classifier=True).prepare()
    pruner.step()
    pruner.make_permanent()
    return fm


@pytest.fixture(scope="module")
def qat():
    """Pruned float TextCNN -> quantized (per-layer bits) -> calibrated -> QAT steps -> QONNX."""
    fm = pruned_float_model()
    zeros = {n: (p.detach() == 0).clone() for n, p in fm.named_parameters() if n in fm.hwprune_sparsity}
    qm = quantize_model(fm, EXAMPLE, CFG)
    ids, y = data(0)
    calibrate(qm, [b for b, _ in batches(ids, y)][:2])
    losses = finetune(qm, batches(ids, y), steps=6, lr=5e-3, seed=0)
    xs = data(1, n=8)[0]
    proto = export_qonnx(qm, torch.from_numpy(ids[:1]))
    return SimpleNamespace(float_model=fm, model=qm, zeros=zeros, losses=losses, proto=proto, xs=xs,
                           ref=qonnx_execute(proto, xs))


@pytest.mark.slow  # the qat fixture trains and exports a model (~30 s)
def test_brevitas_output_equals_qonnx(qat):
    assert len(qat.losses) == 6 and all(np.isfinite(qat.losses))
    np.testing.assert_array_equal(torch_out(qat.model, qat.xs), qat.ref)
    assert np.unique(qat.ref).size > 4  # not a degenerate (saturated or all-zero) output


@pytest.mark.slow  # the qat fixture trains and exports a model (~30 s)
@pytest.mark.parametrize("io", ["parallel", "stream"])
def test_csim_is_bit_exact_with_qonnx(qat, tmp_path, io):
    g = compile_graph(qat.proto, io_type=io)
    np.testing.assert_array_equal(run_fixed(g, [qat.xs])[0], qat.ref)
    prj = hwprune.export(qat.proto, tmp_path / io, io_type=io)
    np.testing.assert_array_equal(hwprune.run(prj, [qat.xs], engine="csim")[0], qat.ref)


def _by_width(g: Graph) -> dict[int, Conv]:
    return {int(l.weight.shape[-1]): l for l in g.layers if isinstance(l, Conv)}


@pytest.mark.slow  # the qat fixture trains and exports a model (~30 s)
def test_per_layer_bits_and_narrow_ir_types(qat):
    g = compile_graph(qat.proto)
    convs = _by_width(g)
    assert [convs[w].weight_t.width for w in WIDTHS] == [4, 8, 8]  # convs.0 has 4-bit weights
    for c in convs.values():
        assert c.weight_t.signed and c.weight_t.overflow == Overflow.SAT_SYM  # narrow-range weights
    # Each conv absorbed its ReLU and unsigned ReLU quantizer: it writes the quantizer's type.
    relu_q = {w: c.out_quant for w, c in convs.items()}
    assert [relu_q[w].width for w in WIDTHS] == [6, 8, 8] and not any(q.signed for q in relu_q.values())
    assert all(g.tensor(c.output).type == c.out_quant for c in convs.values())
    assert not any(isinstance(l, Activation) for l in g.layers)

    emb = next(l for l in g.layers if isinstance(l, Embedding))
    emb_t = g.tensor(emb.output).type
    assert emb_t == emb.table_hint and emb_t.width == 8
    for c in convs.values():
        assert g.tensor(c.inputs[0]).type == emb_t  # 8-bit activations x 4/8-bit weights
    for p in (l for l in g.layers if isinstance(l, GlobalPool)):
        assert p.kind == "max" and g.tensor(p.output).type == g.tensor(p.inputs[0]).type
    concats = [l for l in g.layers if isinstance(l, Concat)]
    assert len(concats) == 2
    for c in concats:
        assert g.tensor(c.output).type == union_type([g.tensor(i).type for i in c.inputs])
    assert g.tensor(concats[-1].output).type.width <= 9  # holds 6- and 8-bit unsigned features
    fc = next(l for l in g.layers if isinstance(l, Dense))
    assert fc.weight_t.width == 8 and g.tensor(fc.inputs[0]).type.width == 6
    assert all(t.type != DEFAULT_RESULT for t in g.tensors.values() if t.type is not None)

    # Resources: every product is at most 8x8 bits, so none needs a DSP (the float model's do).
    assert hwprune.estimate(qat.proto, board="pynq-z2").resources.dsp == 0
    from hwprune.frontend.torch_export import export_torch

    float_onnx = export_torch(qat.float_model.eval(), torch.from_numpy(qat.xs[:1]))
    assert hwprune.estimate(float_onnx, board="pynq-z2").resources.dsp > 0


@pytest.mark.slow  # the qat fixture trains and exports a model (~30 s)
def test_dictated_types_ignore_model_defaults_but_follow_explicit_layer_config(qat):
    from hwprune.precision import LayerPrecision, PrecisionConfig

    wide = FixedType(12, 4)
    g = compile_graph(qat.proto, precision=PrecisionConfig(model=LayerPrecision(result=wide)))
    for l in g.layers:
        if isinstance(l, (Embedding, GlobalPool, Concat)):
            assert g.tensor(l.output).type.width <= 9  # the model-wide default does not apply
    np.testing.assert_array_equal(run_fixed(g, [qat.xs])[0], qat.ref)
    g = compile_graph(qat.proto, precision=PrecisionConfig(layer_type={"Concat": LayerPrecision(result=wide),
                                                                       "GlobalPool": LayerPrecision(result=wide)}))
    assert all(g.tensor(l.output).type == wide for l in g.layers if isinstance(l, (Concat, GlobalPool)))
    np.testing.assert_array_equal(run_fixed(g, [qat.xs])[0], qat.ref)  # wide enough: still exact


def test_union_type_holds_every_input():
    u6, s8 = FixedType(6, 1, False), FixedType(8, 3, True)
    assert union_type([u6, u6]) == u6
    u = union_type([u6, s8])
    assert u.signed and u.frac == 5 and u.integer == 3  # ap_ufixed<6,1> needs 2 signed integer bits
    for t in (u6, s8):
        assert u.min_value <= t.min_value and u.max_value >= t.max_value


@pytest.mark.slow  # the qat fixture trains and exports a model (~30 s)
def test_pruned_zeros_survive_qat_and_run_sparse(qat):
    params = dict(qat.model.named_parameters())
    assert set(qat.zeros) == {f"convs.{i}.weight" for i in range(len(WIDTHS))} | {"fc.weight"}
    for name, z in qat.zeros.items():
        assert 0.4 < float(z.float().mean()) <= 0.6
        np.testing.assert_array_equal((params[name].detach() == 0).numpy(), z.numpy())
    keys = [p.key for p in qat.proto.metadata_props if p.key.startswith("hwprune.sparsity.")]
    assert len(keys) == 4
    g = compile_graph(qat.proto)
    layers = [l for l in g.layers if isinstance(l, (Conv, Dense))]
    assert len(layers) == 4
    for l in layers:
        assert l.sparsity is not None and l.sparsity.pattern == PATTERN and l.sparsity.density == 0.5

    # Control: the same fine-tuning without re-applying the masks fills the pruned positions.
    other = quantize_model(qat.float_model, EXAMPLE, CFG)
    ids, y = data(0)
    calibrate(other, [b for b, _ in batches(ids, y)][:2])
    finetune(other, batches(ids, y), steps=6, lr=5e-3, seed=0, keep_zeros=False)
    w = dict(other.named_parameters())["convs.1.weight"].detach()
    assert bool((w[qat.zeros["convs.1.weight"]] != 0).any())


def fresh_model() -> torch.nn.Module:
    torch.manual_seed(3)
    return quantize_model(TextCNN(VOCAB, CLASSES, DIM, FILTERS, WIDTHS[:2], dropout=0.0), EXAMPLE, QuantConfig(act_bits=6))


def test_parameter_names_match_the_float_textcnn():
    fm = TextCNN(VOCAB, CLASSES, DIM, FILTERS, WIDTHS[:2])
    missing, unexpected = fresh_model().load_state_dict(fm.state_dict(), strict=False)
    assert unexpected == [] and not any(k in fm.state_dict() for k in missing)


def test_export_names_the_module_of_every_weighted_layer(qat):
    g = compile_graph(qat.proto)
    names = module_map(qat.proto)
    assert sorted(names.values()) == ["convs.0", "convs.1", "convs.2", "embedding", "fc"]
    for layer, module in names.items():
        ir = g.layer(layer)
        assert isinstance(ir, Embedding if module == "embedding" else Dense if module == "fc" else Conv)
    assert {int(g.layer(l).weight.shape[-1]) for l, m in names.items() if m.startswith("convs.")} == set(WIDTHS)


@pytest.mark.slow  # ~25 s
def test_calibration_sets_scales_and_stays_bit_exact():
    qm = fresh_model()
    weights = {n: p.detach().clone() for n, p in qm.named_parameters() if n.endswith(("weight", "bias"))}
    before = activation_scales(qm)
    assert set(before) == {"convs_0_relu", "convs_1_relu", "fc_input_quant", "output_quant"}
    ids, y = data(2)
    after = calibrate(qm, [b for b, _ in batches(ids, y)])
    assert after == activation_scales(qm)
    # The ReLU and feature ranges (~2 here) are far from the initial ones (1.0); the output's
    # logits (< 1) happen to round to the initial power of two.
    for name in ("convs_0_relu", "convs_1_relu", "fc_input_quant"):
        assert after[name] > before[name]
    for name, s in after.items():
        assert np.log2(s) == np.round(np.log2(s))  # powers of two
    for n, p in qm.named_parameters():
        if n in weights:
            assert torch.equal(p.detach(), weights[n])  # no gradient step
    # Calibrating again starts from fresh statistics (Brevitas alone would keep the first scales).
    one_token = [torch.full((16, SEQ), 5, dtype=torch.long)]
    again = calibrate(qm, one_token)
    assert again != after and again == calibrate(fresh_model(), one_token)
    after = calibrate(qm, [b for b, _ in batches(ids, y)])
    xs = data(4, n=6)[0]
    proto = export_qonnx(qm, torch.from_numpy(xs[:1]))
    ref = qonnx_execute(proto, xs)
    np.testing.assert_array_equal(torch_out(qm, xs), ref)
    g = compile_graph(proto)
    np.testing.assert_array_equal(run_fixed(g, [xs])[0], ref)
    # The calibrated ReLU ranges are the IR's types (the convs absorbed their ReLU quantizers):
    # 6 bits, binary point from the scale.
    convs = [l for l in g.layers if isinstance(l, Conv)]
    assert {(c.out_quant.width, c.out_quant.frac) for c in convs} == {(6, -int(np.log2(after[f"convs_{i}_relu"]))) for i in range(2)}


def test_what_cannot_map_onto_ap_fixed_is_refused():
    from brevitas.quant import Int8BiasPerTensorFloatInternalScaling, Int8WeightPerChannelFixedPointMSE, Int8WeightPerTensorFloat

    with pytest.raises(ConfigError, match="2..32"):
        QuantConfig(weight_bits=1)
    fm = TextCNN(VOCAB, CLASSES, DIM, FILTERS, WIDTHS)
    with pytest.raises(ConfigError, match="unknown module name"):
        quantize_model(fm, EXAMPLE, QuantConfig(layers={"conv0": (4, 8)}))
    with pytest.raises(ConfigError, match="table"):
        quantize_model(fm, EXAMPLE, QuantConfig(layers={"embedding": (4, 8)}))
    with pytest.raises(ConfigError, match="without weights"):
        quantize_model(fm, EXAMPLE, QuantConfig(layers={"fc_input_quant": (4, 8)}))
    with pytest.raises(ConfigError, match="power of two"):
        quantize_model(fm, EXAMPLE, QuantConfig(weight_quant=Int8WeightPerTensorFloat))
    with pytest.raises(ConfigError, match="per-tensor"):
        quantize_model(fm, EXAMPLE, QuantConfig(weight_quant=Int8WeightPerChannelFixedPointMSE))
    with pytest.raises(ConfigError, match="accumulator grid"):
        quantize_model(fm, EXAMPLE, QuantConfig(bias_quant=Int8BiasPerTensorFloatInternalScaling))
    with pytest.raises(ConfigError, match="no exact fixed-point equivalent"):
        quantize_model(torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Sigmoid()), torch.zeros(1, 3))
    with pytest.raises(ConfigError, match="cannot be folded"):
        quantize_model(torch.nn.Sequential(torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 3)), torch.zeros(1, 3))


@pytest.mark.slow  # the qat fixture trains and exports a model (~30 s)
def test_export_check_refuses_non_power_of_two_scales(qat):
    m = onnx.ModelProto()
    m.CopyFrom(qat.proto)
    check_fixed_point(m)
    q = next(n for n in m.graph.node if n.op_type == "Quant" and n.input[0].startswith("Relu"))
    init = next(i for i in m.graph.initializer if i.name == q.input[1])
    init.CopyFrom(numpy_helper.from_array(np.asarray(0.3, dtype=np.float32), init.name))
    with pytest.raises(ConfigError, match="power of two"):
        check_fixed_point(m)


class _DeadBranch(torch.nn.Module):
    """fc1 pruned to nothing (every weight zero) behind a negative bias: its ReLU only ever
    sees zeros, as a layer left with very few channels after pruning can. fc2's biases are
    the whole output then."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(6, 4), torch.nn.Linear(4, 3)
        with torch.no_grad():
            self.fc1.weight.zero_()
            self.fc1.bias.fill_(-1.0)
            self.fc2.bias.copy_(torch.tensor([1.5, -0.75, 0.25]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def test_a_quantizer_that_sees_only_zeros_keeps_a_sane_power_of_two_scale():
    """Brevitas floors a scale at 1e-10 after restricting it to a power of two, so a quantizer
    whose statistics are all zero got scale 1e-10 (1e-10 / 256 in the export): not a power of
    two, and the export was refused. Every scale must be a power of two at or above the floor
    (the quantizer's range at least RANGE_FLOOR), through calibration, QAT and export; the
    layer after keeps its biases (a degenerate input scale would have crushed them onto a
    grid of 2^-50), and the export runs in hwprune like Brevitas."""
    from hwprune.quantize.qat import RANGE_FLOOR

    torch.manual_seed(0)
    x = torch.randn(64, 6)
    y = torch.randint(0, 3, (64,))
    q = quantize_model(_DeadBranch(), x[:1])
    calibrate(q, [x[:32], x[32:]])
    finetune(q, [(x[:32], y[:32]), (x[32:], y[32:])], steps=20, lr=1e-2)

    def pow2_at_floor(s: float, bits: int) -> bool:
        return s > 0 and math.log2(s) == round(math.log2(s)) and s >= RANGE_FLOOR / 2**bits

    scales = activation_scales(q)
    assert all(pow2_at_floor(s, 8) for s in scales.values()), scales
    assert scales["fc1_relu"] == RANGE_FLOOR / 2**8  # the floor binds on the dead branch
    w = float(q.fc1.quant_weight().scale)
    assert pow2_at_floor(w, 7) and w == RANGE_FLOOR / 2**7, w  # all-zero weights: the floor, narrow 8-bit
    proto = export_qonnx(q, x[:1])  # checks every Quant (check_fixed_point)
    out = hwprune.run(proto, [x[:8].numpy()], engine="fixed")[0]
    with torch.no_grad():
        ref = q(x[:8]).numpy()
    np.testing.assert_array_equal(out, ref)
    trained_bias = q.fc2.bias.detach().numpy()  # QAT moved them; the dead input leaves them the output
    assert np.abs(trained_bias).max() > 1  # beyond what a 2^-40-grid bias could hold
    np.testing.assert_allclose(out, np.tile(trained_bias, (8, 1)), atol=scales["output_quant"])
