"""The design space of the budget-driven pruner: per decision site (the embedding, every conv,
the classifier) a list of options — pattern and sparsity, weight bits, reuse factor,
vocabulary size — each with its cost from the layer's own cost model and its predicted loss.

Costs: the dense model is compiled once per weight width; an option's cost is that layer's
`cost()` on a variant of the IR layer (masked or sliced weights, the balanced structure the
kernel would use, the reuse factor). Which blocks survive does not change the cost — only how
many per bank — so one-shot masks of the trained weights give exact costs.

Loss (sensitivity): the divergence KL(dense || variant) of the output distribution on the
validation texts when only that site takes the option (one-shot mask, weights fake-quantized to
the option's bits on power-of-two scales, no fine-tuning), assumed additive over sites. Fine-tuning recovers part of it; the ranking of
options is what the solver needs.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np
import torch

from hwprune.errors import ConfigError
from hwprune.fixed import FixedType
from hwprune.ir.graph import Graph, IOType
from hwprune.ops.base import CostContext, LayerCost
from hwprune.sim.compose import LatencyDag

log = logging.getLogger(__name__)

REUSE_FACTORS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
DEFAULT_PATTERNS = ("filter", "block:4x4", "block:8x4", "nm:2:4", "bbs:8")
DEFAULT_SPARSITIES = (0.5, 0.75, 0.875)
VOCAB_FRACTIONS = (1.0, 0.6, 0.4, 0.25, 0.15)


@dataclass(frozen=True)
class Choice:
    pattern: str = "dense"  # dense | filter | block:RxC[:col] | nm:N:M | bbs:B
    sparsity: float = 0.0
    weight_bits: int = 8
    reuse_factor: int = 1
    vocab: int | None = None  # embedding rows kept (embedding sites)
    mult_impl: str = "auto"  # auto | dsp (products on DSP slices even when narrow)

    def label(self) -> str:
        what = "dense" if self.pattern == "dense" else f"{self.pattern}@{self.sparsity:g}"
        if self.vocab is not None:
            what = f"vocab {self.vocab}"
        return f"{what}, {self.weight_bits}-bit, RF {self.reuse_factor}" + (", DSP" if self.mult_impl == "dsp" else "")


@dataclass
class Option:
    choice: Choice
    loss: float
    cost: LayerCost


@dataclass
class Site:
    module: str  # torch module name
    layer: str  # IR layer name in the cost graph
    kind: str  # embedding | conv | dense
    options: list[Option] = field(default_factory=list)


@dataclass
class DesignSpace:
    sites: list[Site]
    overhead: dict[str, float]  # resources of everything that is not a site (+ FIFOs, top)
    dag: LatencyDag  # the layers' data dependencies: latency composes over it (sim/compose.py)
    fixed_latency: dict[str, int]  # latency of every layer that is not a site
    fixed_interval: int  # the largest II among non-site layers
    board: Any
    clock_mhz: float
    io_type: str


# ---------------------------------------------------------------- torch side

def fake_quantize(w: torch.Tensor, bits: int) -> torch.Tensor:
    """Round to `bits`-bit signed fixed point on a power-of-two scale covering max |w| (what
    Brevitas' fixed-point weight quantizers do), narrow range."""
    m = float(w.abs().max())
    if m == 0:
        return w.clone()
    levels = 2 ** (bits - 1) - 1
    scale = 2.0 ** math.ceil(math.log2(m / levels))
    return torch.clamp(torch.round(w / scale), -levels, levels) * scale


def site_mask(weight: torch.Tensor, pattern: str, sparsity: float) -> torch.Tensor:
    """Keep-mask of a Conv/Linear weight for a pattern (filter: whole output channels)."""
    from hwprune.prune.patterns import Pattern, mask

    matrix = weight.detach().reshape(weight.shape[0], -1).numpy()
    return torch.from_numpy(mask(matrix, Pattern.parse(pattern), sparsity).reshape(weight.shape))


def _log_probs(model: torch.nn.Module, x: np.ndarray) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return torch.log_softmax(model(torch.from_numpy(x)), dim=1)


def _divergence(reference: torch.Tensor, model: torch.nn.Module, x: np.ndarray) -> float:
    """Mean KL(reference || model) over the samples: how far a change moves the dense model's
    output distribution (never negative, unlike a loss change: pruning an over-confident model
    can lower its validation cross-entropy while it gets worse)."""
    lp = _log_probs(model, x)
    return float(torch.sum(reference.exp() * (reference - lp), dim=1).mean())


def vocab_remap(md_vocab: Any, texts: list[str], keep: int) -> tuple[np.ndarray, np.ndarray]:
    """For a vocabulary cut to the `keep` most frequent tokens of `texts`: old id -> new id
    (dropped tokens -> <unk>), and for every new id the old row it keeps."""
    from hwprune.prune.vocab import prune_vocabulary
    from hwprune.text.data import UNK

    _, vocab = prune_vocabulary(torch.nn.Embedding(len(md_vocab), 1), md_vocab, texts, keep)
    new = {t: i for i, t in enumerate(vocab.tokens)}
    old = {t: i for i, t in enumerate(md_vocab.tokens)}
    remap = np.array([new.get(t, UNK) for t in md_vocab.tokens], dtype=np.int64)
    return remap, np.array([old[t] for t in vocab.tokens], dtype=np.int64)


# ---------------------------------------------------------------- IR side

def cost_graph(model: torch.nn.Module, data: Any, weight_bits: int, act_bits: int, io_type: str) -> Graph:
    """The IR of the model quantized at these bits (calibrated, no training), as the final
    design will be built: QONNX export, so types, quantizers and FIFOs are the real ones."""
    from hwprune.pipeline import compile_graph
    from hwprune.quantize.qat import QuantConfig, calibrate, export_qonnx, quantize_textcnn

    # The embedding's table is the convolutions' input: it stays at the activation width so
    # that a conv's cost does not depend on another site's choice.
    q = quantize_textcnn(model, QuantConfig(weight_bits=weight_bits, act_bits=act_bits,
                                            layers={"embedding": (act_bits, None)}))
    calibrate(q, data.batches(data.train, limit=1024))
    return compile_graph(export_qonnx(q, data.example()), None, io_type)


def _variant_cost(g: Graph, ctx: CostContext, layer: Any, choice: Choice) -> LayerCost:
    """Cost of an IR layer under a choice, on a copy (the graph is not changed)."""
    from hwprune.ir.sparsity import balanced_structure
    from hwprune.ops.embedding import Embedding
    from hwprune.prune.patterns import Pattern, kept_count, mask

    v = copy.copy(layer)
    if isinstance(layer, Embedding):
        v.table = layer.table[: choice.vocab or layer.vocab]
        return v.cost(ctx)
    v.reuse_factor = choice.reuse_factor
    v.mult_impl = choice.mult_impl
    if choice.pattern == "filter" and choice.sparsity > 0:
        if type(layer).__name__ == "Conv":
            k = kept_count(layer.c_out, choice.sparsity)
            v.weight, v.bias = layer.weight[:k], layer.bias[:k]
        else:
            k = kept_count(layer.n_out, choice.sparsity)
            v.weight, v.bias = layer.weight[:, :k], layer.bias[:k]
        v.sparsity = None
    elif choice.pattern != "dense" and choice.sparsity > 0:
        conv = type(layer).__name__ == "Conv"
        matrix = layer.weight.reshape(layer.c_out, -1) if conv else layer.weight.T
        keep = mask(matrix, Pattern.parse(choice.pattern), choice.sparsity)
        pruned = np.where(keep, matrix, 0.0)
        v.weight = pruned.reshape(layer.weight.shape) if conv else pruned.T
        v.sparsity = balanced_structure(pruned, choice.pattern)
    return v.cost(ctx)


@dataclass
class SpaceConfig:
    patterns: Sequence[str] = DEFAULT_PATTERNS
    sparsities: Sequence[float] = DEFAULT_SPARSITIES
    weight_bits: Sequence[int] = (8,)
    act_bits: int = 8
    vocab_fractions: Sequence[float] = VOCAB_FRACTIONS
    reuse_factors: Sequence[int] = REUSE_FACTORS
    io_type: str = "stream"
    dsp_binding: bool = True  # let narrow products use DSP slices (BIND_OP impl=dsp)


def build_space(model: torch.nn.Module, vocab: Any, texts: list[str], data: Any, board: Any, clock_mhz: float,
                cfg: SpaceConfig, say: Callable[[str], None] = log.info) -> DesignSpace:
    """Enumerate every site's options with their costs and predicted losses."""
    from hwprune.ops.conv import Conv
    from hwprune.ops.embedding import Embedding
    from hwprune.prune.metrics import compute_layers
    from hwprune.prune.patterns import Pattern
    from hwprune.sim.estimate import estimate

    model = copy.deepcopy(model).eval()
    example = data.example()
    graphs = {b: cost_graph(model, data, b, cfg.act_bits, cfg.io_type) for b in cfg.weight_bits}
    g0 = graphs[max(cfg.weight_bits)]
    ctx = {b: CostContext(g, IOType(cfg.io_type), board.dsp_kind, board.resources.uram > 0) for b, g in graphs.items()}
    modules = dict(model.named_modules())
    convs = [n for n, m in modules.items() if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d))]
    linears = [n for n, m in modules.items() if isinstance(m, torch.nn.Linear)]
    emb = [n for n, m in modules.items() if isinstance(m, torch.nn.Embedding)]
    ir_compute = compute_layers(g0)
    ir_emb = [l for l in g0.layers if isinstance(l, Embedding)]
    torch_compute = convs + linears  # the order the IR keeps (forward order of a TextCNN)
    if len(ir_compute) != len(torch_compute) or len(ir_emb) != len(emb):
        raise ConfigError("the budget-driven pruner needs a model whose Conv/Linear/Embedding layers map one to one "
                          "onto the exported graph (a TextCNN from hwprune train)")
    sites = [Site(n, l.name, "embedding") for n, l in zip(emb, ir_emb)]
    sites += [Site(n, l.name, "conv" if isinstance(l, Conv) else "dense") for n, l in zip(torch_compute, ir_compute)]
    classifier = linears[-1] if linears else None

    x_val = data.x[data.val]
    reference = _log_probs(model, x_val)
    say(f"sensitivity: measuring {len(sites)} sites on {len(x_val)} validation texts")

    for site in sites:
        layer = {b: graphs[b].layer(site.layer) for b in cfg.weight_bits}
        mod = modules[site.module]
        if site.kind == "embedding":
            full = mod.num_embeddings
            w = mod.weight.detach()
            for size in sorted({max(3, int(round(full * f))) for f in cfg.vocab_fractions}, reverse=True):
                table, xv = w, x_val
                if size < full:
                    # The kept tokens keep their rows; every other token reads <unk>'s row.
                    remap, rows = vocab_remap(vocab, [texts[i] for i in data.train], size)
                    table, xv = w[torch.from_numpy(rows)], remap[x_val]
                bits, b0 = cfg.act_bits, max(cfg.weight_bits)  # the table is the convs' input: activation width
                trial = copy.deepcopy(model)
                trial.embedding = torch.nn.Embedding.from_pretrained(fake_quantize(table, bits), freeze=True)
                loss = _divergence(reference, trial, xv)
                ch = Choice("dense", 0.0, bits, 1, len(table))
                site.options.append(Option(ch, loss, _variant_cost(graphs[b0], ctx[b0], layer[b0], ch)))
            say(f"  {site.module}: {len(site.options)} options (vocabulary sizes)")
            continue
        w0 = mod.weight.detach().clone()
        b0 = mod.bias.detach().clone() if mod.bias is not None else None
        structures: list[tuple[str, float]] = [("dense", 0.0)]
        if site.module != classifier:
            for p in cfg.patterns:
                fixed = Pattern.parse(p).fixed_sparsity()
                for s in ([fixed] if fixed is not None else cfg.sparsities):
                    if (p, s) not in structures:
                        structures.append((p, s))
        for pattern, s in structures:
            try:
                keep = site_mask(w0, pattern, s) if pattern != "dense" else torch.ones_like(w0, dtype=torch.bool)
            except ConfigError as e:
                log.info("%s: %s does not apply (%s)", site.module, pattern, e)
                continue
            for bits in cfg.weight_bits:
                with torch.no_grad():
                    mod.weight.copy_(fake_quantize(w0 * keep, bits))
                    if b0 is not None and pattern == "filter":
                        mod.bias.copy_(b0 * keep.reshape(keep.shape[0], -1).any(dim=1))
                loss = _divergence(reference, model, x_val)
                for rf in _reuse_factors(layer[bits], pattern, s, cfg.reuse_factors):
                    auto = Option(Choice(pattern, s, bits, rf), loss,
                                  _variant_cost(graphs[bits], ctx[bits], layer[bits], Choice(pattern, s, bits, rf)))
                    site.options.append(auto)
                    if auto.cost.dsp == 0 and cfg.dsp_binding:  # narrow products: DSP slices are an option too
                        ch = Choice(pattern, s, bits, rf, mult_impl="dsp")
                        site.options.append(Option(ch, loss, _variant_cost(graphs[bits], ctx[bits], layer[bits], ch)))
            with torch.no_grad():
                mod.weight.copy_(w0)
                if b0 is not None:
                    mod.bias.copy_(b0)
        say(f"  {site.module}: {len(site.options)} options, divergence "
            f"{min(o.loss for o in site.options):.4f} .. {max(o.loss for o in site.options):.4f}")

    # Everything that is not a site: constant resources; fixed latency along every path.
    est = estimate(g0, board, clock_mhz)
    site_layers = {s.layer for s in sites}
    overhead = {k: float(v) for k, v in est.resources.as_dict().items()}
    for le in est.layers:
        if le.name in site_layers:
            for k in ("dsp", "lut", "ff", "bram18", "uram"):
                overhead[k] -= getattr(le.cost, k)
    fixed_latency = {le.name: le.cost.latency for le in est.layers if le.name not in site_layers}
    fixed_interval = max((le.cost.ii for le in est.layers if le.name not in site_layers), default=1)
    return DesignSpace(sites, overhead, LatencyDag.of(g0), fixed_latency, fixed_interval, board, clock_mhz, cfg.io_type)


def _reuse_factors(layer: Any, pattern: str, sparsity: float, candidates: Sequence[int]) -> list[int]:
    """Reuse factors worth trying: up to the layer's work per output (beyond it nothing is shared)."""
    work = layer.n_in * layer.n_out if type(layer).__name__ == "Dense" else layer.c_out * layer.taps
    if pattern != "dense" and sparsity > 0:
        work = max(1, int(round(work * (1 - sparsity))))
    out = [r for r in candidates if r <= work]
    return out or [1]
