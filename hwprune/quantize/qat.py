"""Quantization-aware training (QAT) and post-training calibration of the TextCNN with Brevitas,
on power-of-two scales so that every quantized tensor is exactly an `ap_fixed` type.

    qmodel = quantize_textcnn(float_model, QuantConfig(layers={"convs.0": (4, 8)}))  # prepare
    calibrate(qmodel, [ids for ids, _ in batches[:4]])   # PTQ: activation ranges, no gradients
    finetune(qmodel, batches, steps=200, seed=0)         # QAT (optional); pruned zeros are held
    proto = export_qonnx(qmodel, ids[:1])                # QONNX -> hwprune.export / hwprune.run

A quantizer with scale 2**-k and b bits is ap_fixed<b, b-k> (ap_ufixed when unsigned): QONNX's
Quant clips then rounds, which equals ap_fixed's round-then-saturate because the limits are
integers. Weights are narrow-range signed (AP_SAT_SYM), activations after a ReLU unsigned, the
output signed; biases sit on the accumulator grid (scale = input scale x weight scale), so the
hwprune import of the export is bit-exact with QONNX's own execution and uses the narrow types
in hardware (see hwprune/ops/quant.py).

The quantized network mirrors hwprune.text.model.TextCNN and keeps its parameter names
(`embedding.weight`, `convs.{i}.weight/bias`, `fc.weight/bias`), so float state dicts and
pruning masks (`hwprune_sparsity`, set by Pruner.make_permanent) carry over:

    embedding (table quantizer) -> per width: Conv1d (weight, bias quantizers) -> ReLU
    quantizer (`relus.{i}`) -> max over time -> concat -> dropout -> activation quantizer
    (`features`) -> Linear (weight, bias quantizers) -> output quantizer (`output_quant`)

Brevitas is an optional dependency (`pip install 'hwprune[dev]'`); it is imported when a
quantized model is built.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import onnx
import torch

from hwprune.errors import ConfigError

log = logging.getLogger(__name__)

MIN_BITS, MAX_BITS = 2, 32  # what a QONNX Quant maps onto (hwprune/ops/quant.py)


def _brevitas() -> Any:
    try:
        import brevitas  # noqa: F401
        import brevitas.nn as qnn
    except ImportError:
        raise ConfigError("quantization-aware training needs brevitas; install it with "
                          "pip install 'hwprune[dev]' (or pip install brevitas==0.13.4)") from None
    return qnn


def _check_bits(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not MIN_BITS <= int(value) <= MAX_BITS:
        raise ConfigError(f"{what}: {value!r} is not a bit width hwprune can map onto ap_fixed "
                          f"(whole numbers {MIN_BITS}..{MAX_BITS})")
    return int(value)


@dataclass(frozen=True)
class QuantConfig:
    """Bit widths of the quantized TextCNN.

    `layers` overrides (weight bits, activation bits) per module name; either may be None
    (keep the default). Names and what the two numbers set:

    * ``"embedding"``: the table's bits (the lookup's output is the table: no activation bits);
    * ``"convs.{i}"``: the conv's weight bits, and the bits of its ReLU quantizer;
    * ``"features"``: the activation quantizer after the concatenation (no weights);
    * ``"fc"``: the classifier's weight bits, and the output quantizer's bits (else `output_bits`).

    Biases are quantized on the accumulator grid (Brevitas' IntBias with `bias_bits` bits,
    scale = input scale x weight scale). The quantizer classes must use per-tensor
    power-of-two scales and a zero zero-point (Brevitas' `...PerTensorFixedPoint` family);
    None picks Int8WeightPerTensorFixedPoint, Uint8ActPerTensorFixedPoint (after ReLUs and for
    the features), Int8ActPerTensorFixedPoint (output) and Int32Bias. Their bit widths are
    overridden by this configuration.
    """

    weight_bits: int = 8
    act_bits: int = 8
    output_bits: int = 8
    bias_bits: int = 32
    layers: Mapping[str, tuple[int | None, int | None]] = field(default_factory=dict)
    weight_quant: Any = None
    act_quant: Any = None
    output_quant: Any = None
    bias_quant: Any = None

    def __post_init__(self) -> None:
        for f in ("weight_bits", "act_bits", "output_bits", "bias_bits"):
            _check_bits(getattr(self, f), f"QuantConfig.{f}")
        if not isinstance(self.layers, Mapping):
            raise ConfigError(f"QuantConfig.layers: expected a mapping of module name -> (weight bits, activation "
                              f"bits), got {type(self.layers).__name__}")
        for name, pair in self.layers.items():
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ConfigError(f"QuantConfig.layers[{name!r}]: expected (weight bits, activation bits), got {pair!r}")
            for what, v in zip(("weight", "activation"), pair):
                if v is not None:
                    _check_bits(v, f"QuantConfig.layers[{name!r}] {what} bits")

    def bits(self, name: str) -> tuple[int, int]:
        """(weight bits, activation bits) of a module, with the overrides applied."""
        w, a = self.layers.get(name, (None, None))
        default_a = self.output_bits if name == "fc" else self.act_bits
        return (self.weight_bits if w is None else int(w)), (default_a if a is None else int(a))

    def check_names(self, valid: Sequence[str]) -> None:
        unknown = sorted(set(self.layers) - set(valid))
        if unknown:
            raise ConfigError(f"QuantConfig.layers: unknown module name(s) {unknown}; this model has: {', '.join(valid)}")
        for name, (w, a) in self.layers.items():
            if name == "embedding" and a is not None:
                raise ConfigError("QuantConfig.layers['embedding']: an embedding's output is its table; "
                                  "set only the weight bits, e.g. (6, None)")
            if name == "features" and w is not None:
                raise ConfigError("QuantConfig.layers['features']: the feature quantizer has no weights; "
                                  "set only the activation bits, e.g. (None, 6)")


def _enum_name(v: Any) -> str:
    return str(getattr(v, "value", v)).upper()


def _injected(quant: Any, attr: str) -> Any:
    try:
        return getattr(quant, attr)
    except Exception:  # an injector attribute that depends on the layer it is attached to
        return None


def _check_quantizer(quant: Any, role: str, bias: bool = False) -> Any:
    """Refuse quantizers whose scales cannot be exact ap_fixed types (before any training)."""
    name = getattr(quant, "__name__", type(quant).__name__)
    if bias:
        if _injected(quant, "requires_input_scale") is not True:
            raise ConfigError(f"{role} quantizer {name}: the bias must sit on the accumulator grid (scale = input "
                              "scale x weight scale, e.g. Int32Bias); other bias scales have no exact ap_fixed sum")
        return quant
    if _enum_name(_injected(quant, "restrict_scaling_type")) != "POWER_OF_TWO":
        raise ConfigError(f"{role} quantizer {name} does not restrict its scale to a power of two, so its values are "
                          "not an ap_fixed type; use a fixed-point quantizer such as Int8WeightPerTensorFixedPoint "
                          "or Uint8ActPerTensorFixedPoint")
    per = _injected(quant, "scaling_per_output_type")
    if per is not None and _enum_name(per) != "TENSOR":
        raise ConfigError(f"{role} quantizer {name} has one scale per {_enum_name(per).lower()}; only per-tensor "
                          "scales map onto one ap_fixed type (use a ...PerTensorFixedPoint quantizer)")
    return quant


def _quantizers(cfg: QuantConfig) -> dict[str, Any]:
    from brevitas.quant import Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint, Int32Bias, Uint8ActPerTensorFixedPoint

    def pick(q: Any, default: Any) -> Any:
        return default if q is None else q  # not `or`: Brevitas injector classes are falsy

    return {
        "weight": _check_quantizer(pick(cfg.weight_quant, Int8WeightPerTensorFixedPoint), "weight"),
        "act": _check_quantizer(pick(cfg.act_quant, Uint8ActPerTensorFixedPoint), "activation"),
        "output": _check_quantizer(pick(cfg.output_quant, Int8ActPerTensorFixedPoint), "output"),
        "bias": _check_quantizer(pick(cfg.bias_quant, Int32Bias), "bias", bias=True),
    }


class QuantTextCNN(torch.nn.Module):
    """The TextCNN of hwprune.text.model with Brevitas fixed-point quantizers (module doc).

    Same constructor arguments as TextCNN plus `config`; `filters` may also give one count
    per width (a channel-pruned model)."""

    def __init__(self, vocab: int, classes: int, dim: int = 64, filters: int | Sequence[int] = 64,
                 widths: tuple[int, ...] = (3, 4, 5), dropout: float = 0.5, config: QuantConfig | None = None) -> None:
        super().__init__()
        qnn = _brevitas()
        cfg = config or QuantConfig()
        widths = tuple(int(w) for w in widths)
        if not widths:
            raise ConfigError("QuantTextCNN needs at least one convolution width")
        per_width = [int(filters)] * len(widths) if isinstance(filters, (int, np.integer)) else [int(f) for f in filters]
        if len(per_width) != len(widths):
            raise ConfigError(f"filters: {len(per_width)} counts for {len(widths)} widths")
        names = ["embedding", *(f"convs.{i}" for i in range(len(widths))), "features", "fc"]
        cfg.check_names(names)
        q = _quantizers(cfg)
        self.config = cfg
        self.widths = widths
        self.embedding = qnn.QuantEmbedding(vocab, dim, weight_quant=q["weight"], weight_bit_width=cfg.bits("embedding")[0],
                                            return_quant_tensor=True)
        convs, relus = [], []
        for i, (w, f) in enumerate(zip(widths, per_width)):
            wb, ab = cfg.bits(f"convs.{i}")
            convs.append(qnn.QuantConv1d(dim, f, w, weight_quant=q["weight"], weight_bit_width=wb,
                                         bias_quant=q["bias"], bias_bit_width=cfg.bias_bits))
            relus.append(qnn.QuantReLU(act_quant=q["act"], bit_width=ab))
        self.convs = torch.nn.ModuleList(convs)
        self.relus = torch.nn.ModuleList(relus)
        self.dropout = torch.nn.Dropout(dropout)
        # The classifier's bias scale needs its input's scale: the features are requantized.
        self.features = qnn.QuantIdentity(act_quant=q["act"], bit_width=cfg.bits("features")[1], return_quant_tensor=True)
        fw, ob = cfg.bits("fc")
        self.fc = qnn.QuantLinear(sum(per_width), classes, bias=True, weight_quant=q["weight"], weight_bit_width=fw,
                                  bias_quant=q["bias"], bias_bit_width=cfg.bias_bits)
        self.output_quant = qnn.QuantIdentity(act_quant=q["output"], bit_width=ob)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embedding(ids).transpose(1, 2)  # (B, dim, L), a quantized tensor: its scale feeds the conv bias
        feats = [torch.amax(relu(conv(x)), dim=2) for conv, relu in zip(self.convs, self.relus)]
        h = torch.cat(feats, dim=1) if len(feats) > 1 else feats[0]
        return self.output_quant(self.fc(self.features(self.dropout(h))))


def quantize_textcnn(float_model: torch.nn.Module, config: QuantConfig | None = None) -> QuantTextCNN:
    """A QuantTextCNN with the float model's architecture and weights (exact zeros of a pruned
    model stay zeros; its `hwprune_sparsity` patterns are carried over)."""
    for attr in ("embedding", "convs", "fc"):
        if not hasattr(float_model, attr):
            raise ConfigError(f"quantize_textcnn expects a hwprune.text.model.TextCNN; the model has no '{attr}'")
    emb, convs, fc = float_model.embedding, list(float_model.convs), float_model.fc
    if not isinstance(emb, torch.nn.Embedding) or not all(isinstance(c, torch.nn.Conv1d) for c in convs) \
            or not isinstance(fc, torch.nn.Linear):
        raise ConfigError("quantize_textcnn expects Embedding, Conv1d and Linear layers (a hwprune TextCNN)")
    for c in convs:
        if c.stride != (1,) or c.padding != (0,) or c.dilation != (1,) or c.groups != 1 or c.bias is None:
            raise ConfigError(f"quantize_textcnn: conv {c} differs from the TextCNN's (stride 1, no padding, with bias)")
    if fc.bias is None:
        raise ConfigError("quantize_textcnn: the classifier has no bias, unlike the TextCNN's")
    if fc.in_features != sum(c.out_channels for c in convs):
        raise ConfigError(f"quantize_textcnn: the classifier reads {fc.in_features} features but the convs give "
                          f"{sum(c.out_channels for c in convs)}")
    drop = getattr(float_model, "dropout", None)
    q = QuantTextCNN(emb.num_embeddings, fc.out_features, emb.embedding_dim, [c.out_channels for c in convs],
                     tuple(c.kernel_size[0] for c in convs), float(drop.p) if isinstance(drop, torch.nn.Dropout) else 0.0,
                     config)
    with torch.no_grad():
        pairs = [(q.embedding, emb), (q.fc, fc), *zip(q.convs, convs)]
        for dst, src in pairs:
            for pname in ("weight", "bias"):
                sp, dp = getattr(src, pname, None), getattr(dst, pname, None)
                if sp is not None and dp is not None:
                    dp.copy_(sp.detach())  # exact copies: pruned zeros stay zeros
    pruned = getattr(float_model, "hwprune_sparsity", None)
    if pruned:
        q.hwprune_sparsity = dict(pruned)  # type: ignore[attr-defined]
    q.train(float_model.training)
    return q


# --------------------------------------------------------------------------- calibration

def _ids(batch: Any) -> torch.Tensor:
    if isinstance(batch, (tuple, list)):
        batch = batch[0]  # (ids, labels)
    return torch.as_tensor(np.asarray(batch) if not isinstance(batch, torch.Tensor) else batch).long()


def activation_scales(model: torch.nn.Module) -> dict[str, float]:
    """The current scale of every activation quantizer, by module name (read in eval mode, so
    reading does not advance Brevitas' statistics)."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            return {name: float(m.act_quant.scale()) for name, m in model.named_modules()
                    if hasattr(m, "act_quant") and getattr(m.act_quant, "is_quant_enabled", True)}
    finally:
        model.train(was)


def _restart_statistics(model: torch.nn.Module) -> None:
    """Put every runtime-statistics scale back into its fresh state (no statistics seen).
    Brevitas collects activation statistics only until its step counter runs out and then
    keeps the learned value, so without this a second calibration (or one after QAT) would
    silently change nothing; its first-step update also assumes the fresh all-ones buffers."""
    for m in model.modules():
        if all(hasattr(m, a) for a in ("counter", "collect_stats_steps", "buffer", "value")):
            with torch.no_grad():
                m.buffer.fill_(1.0)
                m.value.fill_(1.0)
            m.counter = 0


def calibrate(model: torch.nn.Module, batches: Iterable[Any]) -> dict[str, float]:
    """Post-training calibration: run the batches (token ids, or (ids, labels) pairs) through
    the model in Brevitas' calibration mode, so every activation quantizer takes its range
    from the statistics of real activations (their average over the batches), then leave the
    model in eval mode. No gradient step; earlier calibrated or learned activation scales are
    replaced. Returns the new activation scales."""
    from brevitas.graph.calibrate import calibration_mode

    batches = list(batches)
    if not batches:
        raise ConfigError("calibrate needs at least one batch of token ids")
    model.eval()  # dropout off; calibration_mode switches only the activation quantizers to training
    _restart_statistics(model)
    n = 0
    with torch.no_grad(), calibration_mode(model):
        for b in batches:
            model(_ids(b))
            n += 1
    model.eval()
    scales = activation_scales(model)
    log.info("calibrated on %d batches: activation scales %s", n, {k: f"2^{math.log2(v):g}" for k, v in scales.items()})
    return scales


# --------------------------------------------------------------------------- fine-tuning

def pruned_masks(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """{parameter name: non-zero mask} of the weights the model declares pruned (`hwprune_sparsity`)."""
    params = dict(model.named_parameters())
    masks = {}
    for name in getattr(model, "hwprune_sparsity", {}) or {}:
        if name not in params:
            raise ConfigError(f"the model declares {name} pruned but has no such parameter")
        masks[name] = params[name].detach() != 0
    return masks


def finetune(model: torch.nn.Module, batches: Sequence[tuple[Any, Any]], steps: int | None = None, lr: float = 1e-3,
             seed: int = 0, keep_zeros: bool = True, weight_decay: float = 0.0,
             loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> list[float]:
    """Quantization-aware training: Adam on (ids, labels) batches, gradients through Brevitas'
    straight-through quantizers (weights and the power-of-two scales are learned). `steps`
    optimizer steps cycling over the batches in order (default: one pass); `seed` fixes dropout.
    With `keep_zeros`, the weights the model declares pruned (`hwprune_sparsity`) keep their
    zeros: their masks are re-applied after every step, so the sparse patterns survive.
    Returns the loss of every step; leaves the model in eval mode. Calibrate first: before that,
    Brevitas' activation quantizers spend their first steps collecting statistics."""
    if not batches:
        raise ConfigError("finetune needs at least one (ids, labels) batch")
    steps = len(batches) if steps is None else int(steps)
    if steps < 0:
        raise ConfigError(f"finetune: steps={steps} must be >= 0")
    loss_fn = loss_fn or torch.nn.functional.cross_entropy
    masks = pruned_masks(model) if keep_zeros else {}
    params = dict(model.named_parameters())
    torch.manual_seed(seed)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay)
    losses: list[float] = []
    model.train()
    for step in range(steps):
        ids, labels = batches[step % len(batches)]
        opt.zero_grad()
        out = model(_ids(ids))
        out = getattr(out, "value", out)  # a quantized tensor's float value
        loss = loss_fn(out, torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels).long())
        loss.backward()
        opt.step()
        with torch.no_grad():
            for name, m in masks.items():
                params[name].mul_(m.to(params[name].dtype))
        losses.append(float(loss.detach()))
    model.eval()
    return losses


# --------------------------------------------------------------------------- export

@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep the exporters' progress lines and optional-dependency notices out of the output."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "onnx_ir", "brevitas")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lvl in zip(loggers, levels):
            lg.setLevel(lvl)


class _GraphConsts:
    """Just enough of the importer's context for `quant_type` on an exported graph."""

    def __init__(self, proto: onnx.ModelProto) -> None:
        from onnx import numpy_helper

        self.values = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}

    def const(self, name: str) -> np.ndarray | None:
        return self.values.get(name)

    def error(self, node: Any, why: str) -> ConfigError:
        return ConfigError(f"the exported quantizer '{node.name or node.output[0]}' cannot map onto ap_fixed: {why}")


def check_fixed_point(proto: onnx.ModelProto) -> None:
    """Every Quant of an exported model must be an exact ap_fixed type (ConfigError if not)."""
    from hwprune.ops.quant import quant_type

    consts = _GraphConsts(proto)
    for node in proto.graph.node:
        if node.op_type == "Quant":
            quant_type(consts, node)
        elif node.domain.startswith("qonnx") or node.op_type in ("BipolarQuant", "Trunc", "IntClip", "FloatQuant"):
            raise ConfigError(f"the exported node '{node.name}' ({node.op_type}) has no ap_fixed equivalent; "
                              "use Quant-based (integer, power-of-two) quantizers")


def record_sparsity(model: torch.nn.Module, proto: onnx.ModelProto) -> dict[str, str]:
    """Write `hwprune.sparsity.<initializer>` metadata for every pruned parameter
    (`model.hwprune_sparsity`): the initializer is the one holding exactly the parameter's
    float values (the exporter renames them). Returns {initializer: pattern}."""
    from onnx import numpy_helper

    from hwprune.prune.onnx_prune import META_PREFIX

    declared = getattr(model, "hwprune_sparsity", None) or {}
    params = dict(model.named_parameters())
    inits = [(i.name, numpy_helper.to_array(i)) for i in proto.graph.initializer]
    claims: dict[str, set[str]] = {}
    for pname, pattern in declared.items():
        if pname not in params:
            log.warning("pruned parameter %s is not in the model; its pattern is not recorded", pname)
            continue
        v = params[pname].detach().cpu().numpy()
        hits = [n for n, a in inits if a.shape == v.shape and a.dtype == v.dtype and np.array_equal(a, v)]
        if not hits:
            log.warning("no initializer of the export holds %s; its layer runs on the dense kernel", pname)
        for n in hits:
            claims.setdefault(n, set()).add(str(pattern))
    recorded: dict[str, str] = {}
    for n, patterns in claims.items():
        if len(patterns) > 1:
            log.warning("initializer %s holds parameters pruned with different patterns %s; none recorded",
                        n, sorted(patterns))
            continue
        recorded[n] = patterns.pop()
    keep = [p for p in proto.metadata_props if not (p.key.startswith(META_PREFIX) and p.key[len(META_PREFIX):] in recorded)]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for n, pattern in recorded.items():
        meta = proto.metadata_props.add()
        meta.key, meta.value = META_PREFIX + n, pattern
    return recorded


def export_qonnx(model: torch.nn.Module, example_input: Any) -> onnx.ModelProto:
    """QONNX of a Brevitas model (eval mode), cleaned up with qonnx (constant parameters,
    readable names that a second cleanup keeps) and checked to be exact fixed point; pruned
    parameters' patterns go into the metadata so the import uses the sparse kernels."""
    _brevitas()
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    x = example_input if isinstance(example_input, torch.Tensor) else torch.as_tensor(np.asarray(example_input))
    model.eval()
    with tempfile.TemporaryDirectory(prefix="hwprune_qonnx_") as d, _quiet():
        # Imported here: brevitas' export package warns about optional kernels on import.
        from brevitas.export import export_qonnx as brevitas_export_qonnx

        path = Path(d) / "model.onnx"
        try:
            brevitas_export_qonnx(model, x, export_path=str(path))
        except Exception as e:
            raise ConfigError(f"the QONNX export failed ({type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}); "
                              "is every layer a Brevitas quantized layer or a plain op hwprune supports?") from e
        proto = onnx.load(str(path))
        proto = cleanup_model(ModelWrapper(proto)).model
    check_fixed_point(proto)
    recorded = record_sparsity(model, proto)
    if recorded:
        log.info("recorded sparsity patterns for %s", ", ".join(f"{k} ({v})" for k, v in recorded.items()))
    return proto
