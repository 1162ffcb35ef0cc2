"""Pruning transformers on the generic path: attention heads found structurally (torch.fx) and
physically removed, FFN neurons cut through GELU, balanced patterns on Q/K/V/O and FFN weights.

Each pruned model is compared with an independent reference: the unpruned torch model whose
removed heads' (neurons') contributions are zeroed by a forward pre-hook on the projection that
reads them — no code shared with the pruner."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import torch_onnx  # noqa: E402
from hwprune.board import load_board  # noqa: E402
from hwprune.errors import ConfigError  # noqa: E402
from hwprune.pipeline import compile_graph, run_float  # noqa: E402
from hwprune.precision import PrecisionConfig  # noqa: E402
from hwprune.prune.channels import prune_channels  # noqa: E402
from hwprune.prune.heads import attention_sites, head_importance, prune_heads  # noqa: E402
from hwprune.sim.estimate import estimate  # noqa: E402
from hwprune.text.bert import BertClassifier, BertShape  # noqa: E402

L, D = 8, 32


class HFStyleAttention(torch.nn.Module):
    """Written like HuggingFace's BertSelfAttention: the head shape is computed from x.size()
    plus a tuple of (num_heads, head_dim); a scaled score, dropout on the probabilities."""

    def __init__(self, width: int = D, heads: int = 4) -> None:
        super().__init__()
        self.num_attention_heads, self.attention_head_size = heads, width // heads
        self.all_head_size = width
        self.query, self.key, self.value = (torch.nn.Linear(width, width) for _ in range(3))
        self.dense = torch.nn.Linear(width, width)
        self.dropout = torch.nn.Dropout(0.1)

    def split(self, x):
        return x.view(x.size()[:-1] + (self.num_attention_heads, self.attention_head_size)).permute(0, 2, 1, 3)

    def forward(self, x):
        q, k, v = self.split(self.query(x)), self.split(self.key(x)), self.split(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / (self.attention_head_size ** 0.5)
        ctx = torch.matmul(self.dropout(torch.softmax(scores, dim=-1)), v).permute(0, 2, 1, 3).contiguous()
        return self.dense(ctx.view(ctx.size()[:-2] + (self.all_head_size,))) + x


def _encoder(heads: int = 4, layers: int = 2, ffn: int = 64) -> torch.nn.Module:
    torch.manual_seed(0)
    return BertClassifier(BertShape(50, D, heads, layers, ffn, L)).eval()


def _zero_inputs(module: torch.nn.Module, columns: list[int]):
    """Reference: the projection reads zeros in `columns` (those heads/neurons contribute nothing)."""
    idx = torch.tensor(columns, dtype=torch.long)

    def hook(_mod, args):
        x = args[0].clone()
        x[..., idx] = 0.0
        return (x,)

    return module.register_forward_pre_hook(hook)


def _head_columns(heads: list[int], d: int) -> list[int]:
    return [h * d + i for h in heads for i in range(d)]


X = torch.from_numpy(np.random.default_rng(0).normal(size=(5, L, D)).astype(np.float32))


def test_attentions_are_found_structurally():
    sites = attention_sites(_encoder(), X[:1])
    assert [(s.query, s.key, s.value, s.output, s.heads, s.head_dim) for s in sites] == [
        (f"layers.{i}.attention.query", f"layers.{i}.attention.key", f"layers.{i}.attention.value",
         f"layers.{i}.attention.output", 4, 8) for i in range(2)]
    hf = attention_sites(HFStyleAttention(), X[:1])
    assert [(s.query, s.output, s.heads) for s in hf] == [("query", "dense", 4)]


@pytest.mark.parametrize("drop", [[1], [0, 3], [0, 1, 2]])
def test_removing_heads_equals_zeroing_their_contributions(drop):
    model = _encoder()
    pruned = prune_heads(model, X[:1], {"layers.0.attention": drop, "layers.1.attention": [2]})
    hooks = [_zero_inputs(model.layers[0].attention.output, _head_columns(drop, 8)),
             _zero_inputs(model.layers[1].attention.output, _head_columns([2], 8))]
    with torch.no_grad():
        ref = model(X)
    for h in hooks:
        h.remove()
    with torch.no_grad():
        got = pruned(X)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    att = dict(pruned.named_modules())["layers.0.attention"]
    assert att.query.weight.shape == (8 * (4 - len(drop)), D) and att.output.weight.shape == (D, 8 * (4 - len(drop)))
    views = [n for n in pruned.graph.nodes if n.target == "view" and "layers_0" in str(n.args[0])]
    assert views and all(4 - len(drop) in n.args for n in views)  # the head count in the graph follows
    with torch.no_grad():  # the original is untouched
        assert model.layers[0].attention.query.weight.shape == (D, D)


def test_huggingface_style_shapes_are_rewritten():
    model = HFStyleAttention().eval()
    pruned = prune_heads(model, X[:1], {"query": [1, 2]})
    hook = _zero_inputs(model.dense, _head_columns([1, 2], 8))
    with torch.no_grad():
        ref = model(X)
    hook.remove()
    with torch.no_grad():
        torch.testing.assert_close(pruned(X), ref, rtol=1e-5, atol=1e-6)
    assert pruned.dense.in_features == 16


def test_pruned_onnx_and_estimate_shrink():
    """2 of 4 heads removed in every layer: the exported graph computes the pruned model; in the
    estimate the Q/K/V/O multipliers halve (fixed reuse factor), the attention products' cycles
    halve (their engine serves the heads in turn), the FFN is unchanged; latency and the total
    multipliers drop."""
    model = _encoder()
    drop = {s.name: list(np.argsort(head_importance(model, s))[:2]) for s in attention_sites(model, X[:1])}
    pruned = prune_heads(model, X[:1], drop)
    prec = PrecisionConfig().with_overrides(reuse_factor=8)
    before = compile_graph(torch_onnx(model, X[:1]), prec)
    after = compile_graph(torch_onnx(pruned, X[:1]), prec)
    with torch.no_grad():
        np.testing.assert_allclose(run_float(after, [X.numpy()])[0], pruned(X).numpy(), rtol=1e-4, atol=1e-5)
    board = load_board("pynq-z2")
    eb, ea = estimate(before, board, 100.0), estimate(after, board, 100.0)

    # In graph order per encoder layer: Q, K, V, Q·Kᵀ, P·V, O, FFN in, FFN out (then the classifier).
    compute = lambda e: [l for l in e.layers if l.op in ("Dense", "MatMul")]  # noqa: E731
    b, a = compute(eb), compute(ea)
    assert [l.op for l in a] == [l.op for l in b] and len(b) == 2 * 8 + 1
    for i, (lb, la) in enumerate(zip(b, a)):
        role = i % 8 if i < 16 else 8
        if role in (0, 1, 2, 5):  # Q/K/V/O at a fixed reuse factor: half the multipliers
            assert la.cost.multipliers * 2 == lb.cost.multipliers and la.cost.macs * 2 == lb.cost.macs, lb.name
        elif role in (3, 4):  # the heads time-share one product engine: half the cycles
            assert la.cost.ii * 2 == lb.cost.ii and la.cost.macs * 2 == lb.cost.macs, lb.name
            assert la.cost.multipliers == lb.cost.multipliers, lb.name
        else:
            assert la.cost.multipliers == lb.cost.multipliers and la.cost.macs == lb.cost.macs, lb.name
    assert ea.latency_cycles < eb.latency_cycles
    assert sum(l.cost.multipliers for l in ea.layers) < sum(l.cost.multipliers for l in eb.layers)


def test_bad_head_requests_are_refused():
    model = _encoder()
    with pytest.raises(ConfigError, match="no multi-head attention 'nope'"):
        prune_heads(model, X[:1], {"nope": [0]})
    with pytest.raises(ConfigError, match="keep at least one"):
        prune_heads(model, X[:1], {"layers.0.attention": [0, 1, 2, 3]})
    with pytest.raises(ConfigError, match="heads 0..3"):
        prune_heads(model, X[:1], {"layers.0.attention": [4]})


def test_ffn_neurons_are_cut_through_gelu():
    """FFN neuron pruning with the channel tracker: intermediate rows and output columns go,
    equal to the unpruned model with those neurons' activations zeroed; the Q/K/V/O and
    LayerNorm-tied widths stay whole."""
    model = _encoder(ffn=64)
    w = model.layers[0].intermediate.weight.detach().clone()
    report = prune_channels(model, X[:1], {"layers.0.intermediate": 0.5, "layers.1.intermediate": 0.25})
    assert report["layers.0.intermediate"] == (64, 32) and report["layers.1.intermediate"] == (64, 48)
    for name in ("attention.query", "attention.output", "ffn_output"):
        assert report[f"layers.0.{name}"][0] == report[f"layers.0.{name}"][1]
    kept = [int(np.flatnonzero((w == r).all(dim=1).numpy())[0]) for r in model.layers[0].intermediate.weight.detach()]
    removed0 = sorted(set(range(64)) - set(kept))
    ref = _encoder(ffn=64)
    w1 = ref.layers[1].intermediate.weight.detach()
    kept1 = [int(np.flatnonzero((w1 == r).all(dim=1).numpy())[0]) for r in model.layers[1].intermediate.weight.detach()]
    hooks = [_zero_inputs(ref.layers[0].ffn_output, removed0),
             _zero_inputs(ref.layers[1].ffn_output, sorted(set(range(64)) - set(kept1)))]
    with torch.no_grad():
        torch.testing.assert_close(model(X), ref(X), rtol=1e-5, atol=1e-6)
    for h in hooks:
        h.remove()


def test_balanced_blocks_on_qkvo_and_ffn_reach_the_sparse_kernel():
    """block:4x4 at 75% on every Linear but the classifier: the export records the pattern for
    the transposed MatMul weights, and the estimate runs them on the sparse kernel with a
    quarter of the dense multipliers at the same reuse factor."""
    from hwprune.prune.torch_prune import Pruner

    model = _encoder(ffn=64)
    dense = compile_graph(torch_onnx(model, X[:1]), PrecisionConfig().with_overrides(reuse_factor=4))
    pruner = Pruner(model, "block:4x4", 0.75)
    pruner.prepare()
    pruner.step()
    pruner.make_permanent()
    g = compile_graph(pruner.export(X[:1]), PrecisionConfig().with_overrides(reuse_factor=4))
    with torch.no_grad():
        np.testing.assert_allclose(run_float(g, [X.numpy()])[0], model(X).numpy(), rtol=1e-4, atol=1e-5)
    board = load_board("pynq-z2")
    before = {l.name: l.cost for l in estimate(dense, board, 100.0).layers if l.op == "Dense"}
    after = {l.name: l.cost for l in estimate(g, board, 100.0).layers if l.op == "Dense"}
    assert set(before) == set(after) and len(after) == 13
    for name, c in after.items():
        if "classifier" in name:
            assert c.multipliers == before[name].multipliers
        else:
            assert "sparse kernel" in c.note and c.multipliers * 4 == before[name].multipliers, name


def test_encoder_layers_can_be_dropped():
    """Layer dropping on the generic path: each encoder layer is a shape-preserving block; the
    model without the one whose removal costs least equals the model run on the other layer
    alone, and its export loses one layer's Dense/MatMul layers."""
    from hwprune.prune.layers import prune_layers, shape_preserving_blocks

    model = _encoder()
    assert {"layers.0", "layers.1"} <= set(shape_preserving_blocks(model, X[:1]))
    target = torch.randn(len(X), 2)
    with torch.no_grad():
        dropped = prune_layers(model, X[:1], lambda m: float(((m(X) - target) ** 2).mean()), n_drop=1,
                               candidates=["layers.0", "layers.1"])
    assert len(dropped) == 1
    kept = 1 - int(dropped[0].name[-1])
    ref = _encoder()
    with torch.no_grad():
        h = ref.layers[kept](ref.embedding_norm(X))
        expect = ref.classifier(h.transpose(1, 2).mean(dim=2))
        torch.testing.assert_close(model(X), expect, rtol=1e-5, atol=1e-6)
    g = compile_graph(torch_onnx(model, X[:1]))
    assert sum(l.op_type in ("Dense", "MatMul") for l in g.layers) == 8 + 1
