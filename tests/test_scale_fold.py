"""passes/fold.py `fold_scalar_scales`: a scalar ScaleShift folded into the Dense whose outputs it
scales, back through data movement and through an activation MatMul (attention's
`(q @ kᵀ) * 1/sqrt(d)` becomes q's projection times 1/sqrt(d)). The folded graph computes what
onnxruntime computes, the C simulation matches the fixed-point reference bit for bit, and every
case the pass must leave alone keeps its ScaleShift."""

from __future__ import annotations

import numpy as np
import pytest

import hwprune
from conftest import torch_onnx
from hwprune.backend.csim import raw_outputs
from hwprune.board import load_board
from hwprune.fixed import quantize, to_float
from hwprune.ops.batchnorm import ScaleShift
from hwprune.ops.dense import Dense
from hwprune.pipeline import compile_graph, error_bounds, run_fixed, run_float, run_onnx, trace_fixed
from hwprune.precision import PrecisionConfig
from hwprune.project import load_project_graph
from hwprune.sim.estimate import estimate

torch = pytest.importorskip("torch")
L, D = 6, 16
X = np.random.default_rng(0).normal(size=(5, L, D)).astype(np.float32)


class Attention(torch.nn.Module):
    """HuggingFace-style heads (view + transpose), scaled scores, softmax, A·V. `extra` adds a
    second reader of an intermediate tensor; `relu_qk` a non-linear layer on q's and k's paths;
    `per_key` replaces the scalar by a per-key vector; `shift` adds a constant to the scores."""

    def __init__(self, heads: int = 2, extra: tuple[str, ...] = (), relu_qk: bool = False, per_key: bool = False,
                 shift: float = 0.0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.h, self.extra, self.relu_qk, self.per_key, self.shift = heads, extra, relu_qk, per_key, shift
        self.q, self.k, self.v, self.o = (torch.nn.Linear(D, D) for _ in range(4))
        self.s = (D // heads) ** -0.5
        self.key_scale = torch.linspace(0.5, 1.5, L)

    def forward(self, x):
        split = lambda t: t.view(-1, L, self.h, D // self.h).transpose(1, 2)  # noqa: E731
        qp, kp = self.q(x), self.k(x)
        if self.relu_qk:
            qp, kp = torch.relu(qp), torch.relu(kp)
        q, k, v = split(qp), split(kp), split(self.v(x))
        raw = q @ k.transpose(-1, -2)
        scores = raw * (self.key_scale * self.s if self.per_key else self.s)
        if self.shift:
            scores = scores + self.shift
        y = self.o((torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(-1, L, D))
        if "q" in self.extra:
            y = y + qp  # q's projection read twice
        if "k" in self.extra:
            y = y + kp
        if "raw" in self.extra:
            return y, raw  # the unscaled scores read twice (a graph output)
        return y


def _dense_of(g, linear) -> Dense:
    """The IR Dense computing `linear`, up to a scalar factor of W (what the fold applies)."""
    w = linear.weight.detach().numpy().T.astype(np.float64)
    for l in g.layers:
        if isinstance(l, Dense) and l.weight.shape == w.shape:
            ratio = l.weight / w
            if np.allclose(ratio, ratio.flat[0], rtol=1e-6):
                return l
    raise AssertionError("no Dense computes this Linear")


def _scale_of(g, linear) -> float:
    d = _dense_of(g, linear)
    return float(d.weight.flat[0] / linear.weight.detach().numpy().T.flat[0])


def _check_float(model, g, xs) -> None:
    refs = run_onnx(model, xs)
    for got, ref in zip(run_float(g, xs), refs):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dynamo", [False, True])
def test_attention_scale_folds_into_the_query_projection(dynamo):
    m = Attention()
    model = torch_onnx(m, torch.zeros(1, L, D), dynamo=dynamo)
    for io in ("parallel", "stream"):
        g = compile_graph(model, io_type=io)
        assert not any(isinstance(l, ScaleShift) for l in g.layers)
        # W and b of q times 1/sqrt(8); k, v and the output projection as they were.
        assert _scale_of(g, m.q) == pytest.approx(8 ** -0.5, rel=1e-6)
        np.testing.assert_allclose(_dense_of(g, m.q).bias, m.q.bias.detach().numpy() * 8 ** -0.5, rtol=1e-6)
        for lin in (m.k, m.v, m.o):
            assert _scale_of(g, lin) == pytest.approx(1.0, rel=1e-6)
        _check_float(model, g, [X])
        assert (np.abs(run_fixed(g, [X])[0] - run_onnx(model, [X])[0]) <= error_bounds(g, [X])[0] + 1e-6).all()


@pytest.mark.parametrize("io", ["parallel", "stream"])
def test_folded_attention_csim_is_bit_exact(tmp_path, io):
    model = torch_onnx(Attention(), torch.zeros(1, L, D))
    prj = hwprune.export(model, tmp_path / io, io_type=io, precision=PrecisionConfig().with_overrides(reuse_factor=4))
    g = load_project_graph(prj)
    assert not any(isinstance(l, ScaleShift) for l in g.layers)
    x = X[:3] * 2
    np.testing.assert_array_equal(raw_outputs(prj, [x])[0], trace_fixed(g, [x]).values[g.outputs[0]])


def test_a_second_reader_of_q_moves_the_scale_to_k():
    """(s·q)·kᵀ = q·(s·k)ᵀ: with q's projection read twice the scale goes to the key's."""
    m = Attention(extra=("q",))
    model = torch_onnx(m, torch.zeros(1, L, D))
    g = compile_graph(model)
    assert not any(isinstance(l, ScaleShift) for l in g.layers)
    assert _scale_of(g, m.q) == pytest.approx(1.0) and _scale_of(g, m.k) == pytest.approx(8 ** -0.5, rel=1e-6)
    _check_float(model, g, [X])


@pytest.mark.parametrize("case", ["q_and_k_read_twice", "raw_scores_read_twice", "per_key_scale", "relu_on_q_and_k"])
def test_what_cannot_fold_keeps_its_scale_shift(case):
    m = {"q_and_k_read_twice": lambda: Attention(extra=("q", "k")),
         "raw_scores_read_twice": lambda: Attention(extra=("raw",)),
         "per_key_scale": lambda: Attention(per_key=True),
         "relu_on_q_and_k": lambda: Attention(relu_qk=True)}[case]()
    model = torch_onnx(m, torch.zeros(1, L, D))
    g = compile_graph(model)
    assert sum(isinstance(l, ScaleShift) for l in g.layers) == 1
    for lin in (m.q, m.k):
        assert _scale_of(g, lin) == pytest.approx(1.0)
    _check_float(model, g, [X])


def test_a_shift_after_the_product_stays():
    """scores * s + 0.5: the scale folds into q, the shift cannot pass the MatMul (A·B + t is no
    product of shifted operands) and stays as a ScaleShift of scale 1."""
    m = Attention(shift=0.5)
    model = torch_onnx(m, torch.zeros(1, L, D))
    g = compile_graph(model)
    (ss,) = [l for l in g.layers if isinstance(l, ScaleShift)]
    assert np.all(ss.scale == 1.0) and np.all(ss.shift == 0.5)
    assert _scale_of(g, m.q) == pytest.approx(8 ** -0.5, rel=1e-6)
    _check_float(model, g, [X])


class Relabelled(torch.nn.Module):
    """A Linear, its heads relabelled, then x * 0.75 + 0.25: scale and shift join W and b."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.fc = torch.nn.Linear(D, D)

    def forward(self, x):
        return self.fc(x).view(-1, L, 2, D // 2).transpose(1, 2) * 0.75 + 0.25


def test_scale_and_shift_fold_through_relabelling_alone():
    m = Relabelled()
    model = torch_onnx(m, torch.zeros(1, L, D))
    g = compile_graph(model, io_type="stream")
    assert [l.op_type for l in g.layers if l.op_type not in ("Reshape", "Reorder")] == ["Dense"]
    d = _dense_of(g, m.fc)
    np.testing.assert_allclose(d.weight, m.fc.weight.detach().numpy().T * 0.75, rtol=1e-6)
    np.testing.assert_allclose(d.bias, m.fc.bias.detach().numpy() * 0.75 + 0.25, rtol=1e-6)
    _check_float(model, g, [X])


def test_declared_weight_types_fold_only_powers_of_two(monkeypatch):
    """Post-training weights declare their exact grid (FINN FIXED<W,I>). A power-of-two scale
    (one head of 16: 1/4) moves the binary point two bits and keeps every weight exact; 1/sqrt(8)
    would round the declared weights again, so the ScaleShift stays."""
    import hwprune.pipeline as pipeline
    from hwprune.quantize.ptq import export_ptq

    one_head = Attention(heads=1)
    proto = export_ptq(one_head, torch.zeros(1, L, D))
    g = compile_graph(proto)
    assert not any(isinstance(l, ScaleShift) for l in g.layers)
    with monkeypatch.context() as mp:
        mp.setattr(pipeline, "fold_scalar_scales", lambda g: g)
        unfolded = compile_graph(proto)
    q, q0 = g.layer("/q/MatMul"), unfolded.layer("/q/MatMul")
    assert (q.weight_t.width, q.weight_t.integer) == (q0.weight_t.width, q0.weight_t.integer - 2)
    assert np.array_equal(to_float(quantize(q.weight, q.weight_t), q.weight_t), q.weight)  # on the grid
    _check_float(proto, g, [X])
    g2 = compile_graph(export_ptq(Attention(heads=2), torch.zeros(1, L, D)))
    assert sum(isinstance(l, ScaleShift) for l in g2.layers) == 1


def test_encoder_loses_the_attention_scale_multipliers(monkeypatch):
    """The bundled BERT classifier (2 layers, 3 heads of 32, 48 tokens) in io_stream at RF 64
    with 8-bit weights on pynq-z2. Each layer's scores ScaleShift is a word of 48 keys, one
    16 x 8-bit multiplier (a DSP48E1) per lane: 48 DSPs a layer, 96 in all. The query projection
    keeps its DSPs: ceil(96 * 96 / 64) = 144 multipliers of 16 x 8 bits, one DSP each."""
    import dataclasses

    import hwprune.pipeline as pipeline
    from hwprune.frontend.torch_export import export_torch
    from hwprune.text.bert import BertClassifier, BertShape

    torch.manual_seed(0)
    model = BertClassifier(BertShape(100)).eval()
    proto = export_torch(model, torch.randn(1, 48, 96))
    p = PrecisionConfig().with_overrides(reuse_factor=64)
    p = dataclasses.replace(p, model=dataclasses.replace(p.model, weight_width=8))
    board = load_board("pynq-z2")
    after = compile_graph(proto, p, "stream")
    with monkeypatch.context() as mp:
        mp.setattr(pipeline, "fold_scalar_scales", lambda g: g)
        before = compile_graph(proto, p, "stream")
    scales = [l for l in before.layers if isinstance(l, ScaleShift)]
    assert len(scales) == 2 and not any(isinstance(l, ScaleShift) for l in after.layers)
    eb, ea = estimate(before, board), estimate(after, board)
    by_b, by_a = ({l.name: l.cost for l in e.layers} for e in (eb, ea))
    assert [by_b[l.name].dsp for l in scales] == [48, 48]
    assert eb.resources.dsp - ea.resources.dsp == 96
    for i in range(2):
        name = f"/layers.{i}/attention/query/MatMul"
        assert by_b[name].dsp == by_a[name].dsp == 144


class ScaledLinear(torch.nn.Module):
    def __init__(self, c: float) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.fc, self.c = torch.nn.Linear(D, D), c

    def forward(self, x):
        return self.fc(x) * self.c


@pytest.mark.parametrize("c,folds", [(0.5, True), (3.0, False)])
def test_a_declared_grid_is_kept_by_the_direct_fold_too(c, folds):
    """Dense -> ScaleShift directly (fold_constants_into_layers): post-training weights on their
    declared FIXED<8,I> grid fold a power of two (the binary point moves), not x3, which would put
    them off their grid (and past its range: before, they wrapped and the output was off by ~4)."""
    from hwprune.quantize.ptq import export_ptq

    proto = export_ptq(ScaledLinear(c), torch.zeros(1, L, D))
    g = compile_graph(proto)
    assert [l.op_type for l in g.layers] == (["Dense"] if folds else ["Dense", "ScaleShift"])
    d = g.layers[0]
    assert np.array_equal(to_float(quantize(d.weight, d.weight_t), d.weight_t), d.weight)
    _check_float(proto, g, [X])
    assert (np.abs(run_fixed(g, [X])[0] - run_float(g, [X])[0]) <= error_bounds(g, [X])[0] + 1e-9).all()


class ScaledConv(torch.nn.Module):
    def __init__(self, c) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv, self.c = torch.nn.Conv1d(4, 6, 3), torch.as_tensor(c, dtype=torch.float32)

    def forward(self, x):
        return self.conv(x) * self.c.reshape(1, -1, 1)


@pytest.mark.parametrize("c,folds", [([0.5], True), ([3.0], False), ([0.5, 0.25, 2.0, 1.0, 0.5, 4.0], False),
                                     ([1.5, 0.3, 2.0, 1.0, 0.5, 4.0], False)])
def test_a_declared_conv_grid_is_kept_by_the_fold(c, folds):
    """Conv -> per-channel or scalar scale (a batch norm's affine): post-training weights on their
    declared grid fold one power of two only; before, the fold dropped the declared types and
    re-rounded the scaled weights at the configured width (another model than the file's)."""
    from hwprune.quantize.ptq import export_ptq

    x = np.random.default_rng(4).normal(size=(5, 4, 10)).astype(np.float32)
    proto = export_ptq(ScaledConv(c), torch.zeros(1, 4, 10))
    g = compile_graph(proto)
    assert [l.op_type for l in g.layers] == (["Conv"] if folds else ["Conv", "ScaleShift"])  # no reorder for a scalar
    conv = g.layers[0]
    assert conv.weight_hint is not None  # the declared type survives
    assert np.array_equal(to_float(quantize(conv.weight, conv.weight_t), conv.weight_t), conv.weight)
    ref = run_onnx(proto, [x])[0]
    np.testing.assert_allclose(run_float(g, [x])[0], ref, rtol=1e-5, atol=1e-5)
    assert (np.abs(run_fixed(g, [x])[0] - run_float(g, [x])[0]) <= error_bounds(g, [x])[0] + 1e-9).all()


@pytest.mark.parametrize("io", ["parallel", "stream"])
def test_a_scalar_scale_left_after_a_conv_needs_no_reorder_and_is_bit_exact(tmp_path, io):
    from hwprune.quantize.ptq import export_ptq

    x = np.random.default_rng(5).normal(size=(3, 4, 10)).astype(np.float32)
    prj = hwprune.export(export_ptq(ScaledConv([3.0]), torch.zeros(1, 4, 10)), tmp_path / io, io_type=io)
    g = load_project_graph(prj)
    assert [l.op_type for l in g.layers] == ["Conv", "ScaleShift"]
    np.testing.assert_array_equal(raw_outputs(prj, [x])[0], trace_fixed(g, [x]).values[g.outputs[0]])
