"""The design space of the budget-driven pruner: per decision site (every Linear, Conv and
Embedding of the model, found in the exported graph by name) a list of options — pattern and
sparsity, weight bits, reuse factor, table rows — each with its cost from the layer's own cost
model and its predicted loss.

Sites come from the graph, not from an order: the QONNX export names the torch module of every
weighted node (`hwprune.quantize.qat.module_map`). Filter pruning is offered where the
dependency tracker can cut a layer's output channels (`hwprune.prune.channels.channel_groups`:
not for a group reaching the output, a flattened map or a grouped conv); every other site gets
the patterns that keep shapes. The layer feeding the output (the classifier) stays dense, and
an Embedding reading the model input may keep fewer rows when the task names an unknown id.

Costs: the dense model is compiled once per weight width; an option's cost is that layer's
`cost()` on a variant of the IR layer (masked or sliced weights, the balanced structure the
kernel would use, the reuse factor). Which blocks survive does not change the cost — only how
many per bank — so one-shot masks of the trained weights give exact costs.

Loss (sensitivity): the divergence KL(dense || variant) of the output distribution on the
validation samples (mean squared output change for a task with its own loss) when only that
site takes the option (one-shot mask or channel cut, weights fake-quantized to the option's
bits on power-of-two scales, no fine-tuning), assumed additive over sites. Fine-tuning
recovers part of it; the ranking of options is what the solver needs.
"""

from __future__ import annotations

import copy
import logging
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
    vocab: int | None = None  # embedding rows kept (embedding sites; the vocabulary of a text model)
    mult_impl: str = "auto"  # auto | dsp (products on DSP slices even when narrow)
    rom_impl: str = "auto"  # auto | bram (a Dense's weight banks in block RAM even when small)
    output_stage: str = "parallel"  # parallel | shared (a Dense's output rounding over the next word)

    def label(self) -> str:
        what = "dense" if self.pattern == "dense" else f"{self.pattern}@{self.sparsity:g}"
        if self.vocab is not None:
            what = f"rows {self.vocab}"
        return (f"{what}, {self.weight_bits}-bit, RF {self.reuse_factor}" + (", DSP" if self.mult_impl == "dsp" else "")
                + (", weights in BRAM" if self.rom_impl == "bram" else "")
                + (", shared output stage" if self.output_stage == "shared" else ""))


@dataclass
class Option:
    choice: Choice
    loss: float
    cost: LayerCost


@dataclass
class Site:
    module: str  # torch module name ("" for an engine site)
    layer: str  # IR layer name in the cost graph
    kind: str  # embedding | conv | dense | engine (a weightless layer with a reuse factor: MatMul, LayerNorm, ...)
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
    # Simulated / predicted latency of the dense design the costs come from. io_stream: the
    # DATAFLOW processes overlap, so the longest path over-predicts (by ~3x for a small CNN)
    # and the search starts from the latency limit scaled by it. io_parallel: 1 (the simulator
    # composes by the solver's rule, sim/compose.py).
    latency_ratio: float = 1.0


# ---------------------------------------------------------------- torch side

def fake_quantize(w: torch.Tensor, bits: int) -> torch.Tensor:
    """Round to `bits`-bit signed fixed point on a power-of-two scale covering max |w| (what
    Brevitas' fixed-point weight quantizers do), narrow range: the rounding the post-training
    export writes (hwprune.quantize.ptq.round_weight), on a torch tensor."""
    from hwprune.quantize.ptq import round_weight

    return torch.from_numpy(round_weight(w.detach().cpu().numpy(), bits)).to(w.dtype)


def site_mask(weight: torch.Tensor, pattern: str, sparsity: float) -> torch.Tensor:
    """Keep-mask of a Conv/Linear weight for a pattern (filter: whole output channels)."""
    from hwprune.prune.patterns import Pattern, mask

    matrix = weight.detach().reshape(weight.shape[0], -1).numpy()
    return torch.from_numpy(mask(matrix, Pattern.parse(pattern), sparsity).reshape(weight.shape))


def _outputs(model: torch.nn.Module, x: np.ndarray) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        y = model(torch.from_numpy(np.ascontiguousarray(x)))
    return getattr(y, "value", y).reshape(len(x), -1).double()


def _divergence(reference: torch.Tensor, model: torch.nn.Module, x: np.ndarray, classification: bool = True) -> float:
    """Mean KL(reference || model) of the class distributions over the samples: how far a change
    moves the dense model's outputs (never negative, unlike a loss change: pruning an
    over-confident model can lower its validation cross-entropy while it gets worse). For a
    task with its own loss: the mean squared change of the outputs."""
    out = _outputs(model, x)
    if not classification:
        return float(((out - reference) ** 2).mean())
    ref, lp = torch.log_softmax(reference, dim=1), torch.log_softmax(out, dim=1)
    return float(torch.sum(ref.exp() * (ref - lp), dim=1).mean())


def reads_input(g: Graph, layer: str) -> bool:
    """True when an IR layer reads a graph input directly (an Embedding whose ids the host can map)."""
    return any(i in g.inputs for i in g.layer(layer).inputs)


def output_layers(g: Graph) -> set[str]:
    """Weighted layers (Dense, Conv, Embedding) whose output reaches a graph output without
    passing another weighted layer: the classifier."""
    from hwprune.ops.conv import Conv
    from hwprune.ops.dense import Dense
    from hwprune.ops.embedding import Embedding

    out: set[str] = set()
    for layer in g.layers:
        if not isinstance(layer, (Dense, Conv, Embedding)):
            continue
        todo, seen = list(layer.outputs), set()
        while todo:
            t = todo.pop()
            if t in seen:
                continue
            seen.add(t)
            if t in g.outputs:
                out.add(layer.name)
                break
            for c in g.consumers(t):
                if not isinstance(c, (Dense, Conv, Embedding)):
                    todo.extend(c.outputs)
    return out


# ---------------------------------------------------------------- IR side

def cost_graph(model: torch.nn.Module, data: Any, weight_bits: int, act_bits: int, io_type: str,
               quantization: str = "qat") -> tuple[Graph, dict[str, str]]:
    """The IR of the model quantized at these bits (calibrated, no training), as the final
    design will be built: QONNX export, so types, quantizers and FIFOs are the real ones; and
    {IR layer: torch module} of its weighted layers. "ptq": the post-training export
    (hwprune.quantize.ptq; activations at the precision's result type)."""
    from hwprune.pipeline import compile_graph
    from hwprune.quantize.qat import QuantConfig, calibrate, export_qonnx, module_map, quantize_model

    if quantization == "ptq":
        from hwprune.quantize.ptq import export_ptq

        proto = export_ptq(model, data.example(), default_bits=weight_bits)
        return compile_graph(proto, None, io_type), module_map(proto)

    # An embedding's table is the next layer's input: it stays at the activation width so that
    # that layer's cost does not depend on another site's choice.
    tables = {n: (act_bits, None) for n, m in model.named_modules() if isinstance(m, torch.nn.Embedding)}
    q = quantize_model(model, data.example(), QuantConfig(weight_bits=weight_bits, act_bits=act_bits, layers=tables))
    calibrate(q, data.batches(data.train, limit=1024))
    proto = export_qonnx(q, data.example())
    return compile_graph(proto, None, io_type), module_map(proto)


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
    if hasattr(layer, "mult_impl"):
        v.mult_impl = choice.mult_impl
    if hasattr(layer, "rom_impl"):
        v.rom_impl = choice.rom_impl
    if hasattr(layer, "output_stage"):
        v.output_stage = choice.output_stage
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


def _bram_rom_options(g: Graph, ctx: CostContext, layer: Any, auto: Option, cfg: "SpaceConfig") -> list[Option]:
    """The same choice with the weight banks in block RAM, where the layer has the option
    (Dense at RF > 1) and it is a real trade: banks the tool would keep in logic (up to 8 kbit)
    move to BRAM18 (two banks a dual-port BRAM18) — LUTs for block RAM, which a LUT-bound
    design wants. Shallow banks are left out (RF 16 at 8 bits: a bank is 8 LUTs, a BRAM18 would
    hold a pair at 2% use): the variant must save at least MIN_LUTS_PER_BRAM18 LUTs for each
    block RAM it takes."""
    if not cfg.bram_roms or not hasattr(layer, "rom_impl") or auto.choice.reuse_factor <= 1:
        return []
    ch = replace(auto.choice, rom_impl="bram")
    cost = _variant_cost(g, ctx, layer, ch)
    added = cost.bram18 - auto.cost.bram18
    if added <= 0 or auto.cost.lut - cost.lut < MIN_LUTS_PER_BRAM18 * added:
        return []
    return [Option(ch, auto.loss, cost)]


MIN_LUTS_PER_BRAM18 = 32


def _engine_variants(g: Graph, ctx: CostContext, layer: Any, base: list[Option], cfg: "SpaceConfig") -> list[Option]:
    """A Dense's options with its engine's implementation choices: each of `base` (products
    on the tool's choice or on DSP slices), with the weight banks in block RAM where that pays
    (`_bram_rom_options`), and each of those with the output stage time-shared over the next
    word (io_stream, RF > 1: fewer requantizers, a word of latency) where that saves LUTs."""
    opts = [*base, *(b for o in base for b in _bram_rom_options(g, ctx, layer, o, cfg))]
    if not cfg.shared_output or not hasattr(layer, "output_stage") or g.io_type != IOType.STREAM:
        return opts
    shared = []
    for o in opts:
        if o.choice.reuse_factor <= 1:
            continue
        ch = replace(o.choice, output_stage="shared")
        cost = _variant_cost(g, ctx, layer, ch)
        if cost.lut < o.cost.lut:
            shared.append(Option(ch, o.loss, cost))
    return opts + shared


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
    bram_roms: bool = True  # let a Dense keep its weight banks in block RAM (BIND_STORAGE impl=bram)
    shared_output: bool = True  # let a Dense round its outputs over the next word (output_stage shared)
    quantization: str = "qat"  # qat | ptq: how the designs are quantized (hwprune.codesign.pruner)


def build_space(model: torch.nn.Module, data: Any, board: Any, clock_mhz: float, cfg: SpaceConfig,
                say: Callable[[str], None] = log.info) -> DesignSpace:
    """Enumerate every site's options with their costs and predicted losses (`data`: the
    task's hwprune.task.TaskData)."""
    from hwprune.ops.conv import Conv
    from hwprune.ops.dense import Dense
    from hwprune.ops.embedding import Embedding
    from hwprune.prune.channels import channel_groups, prune_channels
    from hwprune.prune.patterns import Pattern
    from hwprune.prune.rows import cut_rows, frequent_rows
    from hwprune.quantize.qat import _set_module
    from hwprune.sim.estimate import estimate

    model = copy.deepcopy(model).eval()
    example = data.example()
    if cfg.quantization not in ("qat", "ptq"):
        raise ConfigError(f"SpaceConfig.quantization {cfg.quantization!r}: expected 'qat' or 'ptq' (resolve 'auto' first)")
    built = {b: cost_graph(model, data, b, cfg.act_bits, cfg.io_type, cfg.quantization) for b in cfg.weight_bits}
    graphs = {b: g for b, (g, _) in built.items()}
    g0, layer_of = built[max(cfg.weight_bits)]
    ctx = {b: CostContext(g, IOType(cfg.io_type), board.dsp_kind, board.resources.uram > 0) for b, g in graphs.items()}
    modules = dict(model.named_modules())
    by_module = {m: l for l, m in layer_of.items()}
    weighted = [n for n, m in modules.items() if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d,
                                                                torch.nn.Embedding))]
    unused = [n for n in weighted if n not in by_module]
    if unused:
        log.info("modules without a layer in the exported graph (unused in forward): %s", ", ".join(unused))
    sites = []
    for n in weighted:
        if n in by_module:
            layer = g0.layer(by_module[n])
            kind = "embedding" if isinstance(layer, Embedding) else "conv" if isinstance(layer, Conv) else "dense"
            sites.append(Site(n, layer.name, kind))
    if not sites:
        raise ConfigError("the model has no Linear, Conv or Embedding layer for the budget-driven pruner to choose for")
    for b, (_, lo) in built.items():
        if sorted(lo.items()) != sorted(layer_of.items()):
            raise ConfigError(f"the exported graphs at {b} and {max(cfg.weight_bits)} bits differ in their layers")
    classifier = output_layers(g0)
    cuttable = channel_groups(model, example)

    x_val = data.x[data.val]
    reference = _outputs(model, x_val)
    say(f"sensitivity: measuring {len(sites)} sites on {len(x_val)} validation samples")

    def divergence(trial: torch.nn.Module, xv: np.ndarray = x_val) -> float:
        return _divergence(reference, trial, xv, data.classification)

    for site in sites:
        layer = {b: graphs[b].layer(site.layer) for b in cfg.weight_bits}
        mod = modules[site.module]
        if site.kind == "embedding":
            full = mod.num_embeddings
            w = mod.weight.detach()
            bits, b0 = cfg.act_bits, max(cfg.weight_bits)  # the table is the next layer's input: activation width
            sizes = [full]
            if data.unknown_id is not None and reads_input(g0, site.layer):
                floor = len(set(data.keep_ids) | {data.unknown_id}) + 1
                sizes = sorted({max(floor, int(round(full * f))) for f in cfg.vocab_fractions if f <= 1.0} | {full},
                               reverse=True)
            for size in sizes:
                trial, xv, rows = copy.deepcopy(model), x_val, np.arange(full)
                if size < full:
                    # The kept ids keep their rows; every other id reads the unknown id's row.
                    remap, rows = frequent_rows(data.x[data.train], full, size, data.keep_ids, data.unknown_id)
                    xv = remap[x_val]
                emb = cut_rows(mod, rows)
                with torch.no_grad():
                    emb.weight.copy_(fake_quantize(emb.weight.detach(), bits))
                _set_module(trial, site.module, emb)
                ch = Choice("dense", 0.0, bits, 1, len(rows))
                site.options.append(Option(ch, divergence(trial, xv), _variant_cost(graphs[b0], ctx[b0], layer[b0], ch)))
            say(f"  {site.module}: {len(site.options)} options (table rows)")
            continue
        w0 = mod.weight.detach().clone()
        structures: list[tuple[str, float]] = [("dense", 0.0)]
        if site.layer not in classifier:
            for p in cfg.patterns:
                if Pattern.parse(p).kind == "filter" and cuttable.get(site.module, "not tracked"):
                    log.info("%s: no filter pruning (%s)", site.module, cuttable.get(site.module, "not tracked"))
                    continue
                fixed = Pattern.parse(p).fixed_sparsity()
                for s in ([fixed] if fixed is not None else cfg.sparsities):
                    if (p, s) not in structures:
                        structures.append((p, s))
        for pattern, s in structures:
            try:
                keep = site_mask(w0, pattern, s) if pattern not in ("dense", "filter") else torch.ones_like(w0, dtype=torch.bool)
            except ConfigError as e:
                log.info("%s: %s does not apply (%s)", site.module, pattern, e)
                continue
            for bits in cfg.weight_bits:
                if pattern == "filter":
                    # The real cut: the channels go, with what only they feed (BatchNorm entries,
                    # the consumers' inputs).
                    trial = copy.deepcopy(model)
                    prune_channels(trial, example, {site.module: s})
                    tm = trial.get_submodule(site.module)
                    with torch.no_grad():
                        tm.weight.copy_(fake_quantize(tm.weight.detach(), bits))
                    loss = divergence(trial)
                else:
                    with torch.no_grad():
                        mod.weight.copy_(fake_quantize(w0 * keep, bits))
                    loss = divergence(model)
                for rf in _reuse_factors(layer[bits], pattern, s, cfg.reuse_factors):
                    auto = Option(Choice(pattern, s, bits, rf), loss,
                                  _variant_cost(graphs[bits], ctx[bits], layer[bits], Choice(pattern, s, bits, rf)))
                    base = [auto]
                    if auto.cost.dsp == 0 and cfg.dsp_binding:  # narrow products: DSP slices are an option too
                        ch = Choice(pattern, s, bits, rf, mult_impl="dsp")
                        base.append(Option(ch, loss, _variant_cost(graphs[bits], ctx[bits], layer[bits], ch)))
                    site.options += _engine_variants(graphs[bits], ctx[bits], layer[bits], base, cfg)
            with torch.no_grad():
                mod.weight.copy_(w0)
        say(f"  {site.module}: {len(site.options)} options, divergence "
            f"{min(o.loss for o in site.options):.4f} .. {max(o.loss for o in site.options):.4f}")

    # Engines whose reuse factor trades cycles for multipliers but that have no Linear/Conv
    # module to prune: the attention MatMuls, LayerNorms, softmaxes, table activations and means (ops
    # with `reuse_factor_options`), a Dense whose weight is no module's (nn.MultiheadAttention's
    # packed Q/K/V projection). Sites with reuse-factor options only, which change nothing the
    # model computes (loss 0); a layer with one option (a ReLU, an io_parallel activation) has
    # nothing to choose and stays with the fixed layers.
    bits0 = max(cfg.weight_bits)
    taken = {s.layer for s in sites}
    for layer in g0.layers:
        options = getattr(layer, "reuse_factor_options", None)
        if options is None and isinstance(layer, (Conv, Dense)):
            options = lambda g, candidates, layer=layer: _reuse_factors(layer, "dense", 0.0, candidates)  # noqa: E731
        if options is None or layer.name in taken:
            continue
        rfs = options(g0, cfg.reuse_factors)
        if len(rfs) < 2:
            continue
        site = Site("", layer.name, "engine")
        for rf in rfs:
            ch = Choice("dense", 0.0, bits0, rf)
            auto = Option(ch, 0.0, _variant_cost(g0, ctx[bits0], layer, ch))
            site.options += _engine_variants(g0, ctx[bits0], layer, [auto], cfg)
        sites.append(site)
        say(f"  {layer.name} ({layer.op_type}): {len(site.options)} reuse factors")

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
    dag = LatencyDag.of(g0)
    ratio = 1.0
    if cfg.io_type == IOType.STREAM.value:
        # io_stream: the DATAFLOW processes overlap, which the longest path of layer latencies
        # does not model; the search starts from the limit scaled by what the simulator gives
        # for the dense design. io_parallel needs no ratio: the simulator composes by the same
        # rule (sim/compose.py), so simulated / predicted is 1 there.
        from hwprune.sim.dataflow import simulate

        predicted = dag.latency({le.name: le.cost.latency for le in est.layers})
        simulated = simulate(g0, board, batch=16, clock_mhz=clock_mhz).latency_cycles
        ratio = simulated / predicted if predicted > 0 and simulated > 0 else 1.0
    return DesignSpace(sites, overhead, dag, fixed_latency, fixed_interval, board, clock_mhz, cfg.io_type, ratio)


def _reuse_factors(layer: Any, pattern: str, sparsity: float, candidates: Sequence[int]) -> list[int]:
    """Reuse factors worth trying: up to the layer's work per output (beyond it nothing is shared)."""
    work = layer.n_in * layer.n_out if type(layer).__name__ == "Dense" else layer.c_out * layer.taps
    if pattern != "dense" and sparsity > 0:
        work = max(1, int(round(work * (1 - sparsity))))
    out = [r for r in candidates if r <= work]
    return out or [1]
