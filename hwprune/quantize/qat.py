"""Quantization-aware training (QAT) and post-training calibration of any supported PyTorch
model with Brevitas, on power-of-two scales so that every quantized tensor is exactly an
`ap_fixed` type.

    qmodel = quantize_model(float_model, example, QuantConfig(layers={"conv1": (4, 6)}))  # prepare
    calibrate(qmodel, [x for x, _ in batches[:4]])   # PTQ: activation ranges, no gradients
    finetune(qmodel, batches, steps=200, seed=0)     # QAT (optional); pruned zeros are held
    proto = export_qonnx(qmodel, example)            # QONNX -> hwprune.export / hwprune.run

`quantize_model` traces the float model with torch.fx and swaps modules (module names and
parameter names stay, so float state dicts and pruning masks carry over):

* Linear, Conv1d, Conv2d -> QuantLinear/QuantConv1d/QuantConv2d (weight and bias quantizers); a
  BatchNorm right after one (its only reader) is folded into its weights and bias first;
* Embedding -> QuantEmbedding (the table's quantizer is its output's);
* ReLU (module, `torch.relu`, `F.relu`, `.relu()`) -> QuantReLU (unsigned);
* quantizers are inserted where the hardware needs an exact type: the float model input
  (`input_quant`), the input of a Linear/Conv that no quantizer feeds (`<layer>_input_quant`,
  whose scale the bias needs), an input of an addition or concatenation that is not exact
  (`<node>_in<k>_quant`), a value read by several consumers that is not exact
  (`<node>_quant`) and the model output (`output_quant`).

Layout moves (flatten, view, reshape, transpose, permute), max pooling, dropout and identities
pass quantized tensors through; max reductions, concatenations and additions of exact values
are exact (hwprune types them with the smallest type holding every input, so residual adds
and concatenations need no shared scale). Average pooling, other activations and other
arithmetic are refused (a clear ConfigError) — they have no exact fixed-point equivalent.

A quantizer with scale 2**-k and b bits is ap_fixed<b, b-k> (ap_ufixed when unsigned): QONNX's
Quant clips then rounds, which equals ap_fixed's round-then-saturate because the limits are
integers. Weights are narrow-range signed (AP_SAT_SYM), activations after a ReLU unsigned, the
others signed; biases sit on the accumulator grid (scale = input scale x weight scale), so the
hwprune import of the export is bit-exact with QONNX's own execution and uses the narrow types
in hardware (see hwprune/ops/quant.py). The export records which module every compute layer
came from (`hwprune.module.<node>` metadata, see `module_map`).

Brevitas is an optional dependency (`pip install 'hwprune[dev]'`); it is imported when a
quantized model is built.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import math
import operator
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
# The smallest range (largest magnitude) a weight or activation quantizer takes: its scale is at
# least RANGE_FLOOR / 2**bits. A quantizer that only ever sees zeros (a layer left with a few
# dead channels after pruning) would otherwise follow its statistics down to Brevitas' floor of
# 1e-10 — applied after the power-of-two restriction, so not a power of two, and with a scale
# of ~2^-40 the next layer's biases (on the grid input scale x weight scale) would be crushed.
# Values below RANGE_FLOOR / 2**bits round to zero, which costs nothing a design can measure.
RANGE_FLOOR = 2.0**-10
# Brevitas' own clamp (`scaling_min_val`), as a power of two below anything the floor allows:
# it never binds with RANGE_FLOOR in place, and were it to, the scale would stay a power of two.
_BREVITAS_MIN = RANGE_FLOOR / 2.0**MAX_BITS
MODULE_META = "hwprune.module."  # metadata key prefix: exported node name -> torch module name


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
    """Bit widths of a quantized model.

    `layers` overrides (weight bits, activation bits) per module name; either may be None
    (keep the default):

    * a Linear/Conv: its weight bits, and the bits of the quantizer of its output (the ReLU
      quantizer right after it, or `output_quant` for the last layer);
    * an Embedding: its table's bits (the lookup's output is the table: no activation bits);
    * a quantizer by its name (`input_quant`, `output_quant`, `fc_input_quant`, a ReLU's
      module name, ...): its bits (no weights).

    Defaults: `weight_bits` for weights and tables, `act_bits` for activation quantizers,
    `input_bits` (None: `act_bits`) for the model input's and `output_bits` for the output's.
    Biases are quantized on the accumulator grid (Brevitas' IntBias with `bias_bits` bits,
    scale = input scale x weight scale). The quantizer classes must use per-tensor
    power-of-two scales and a zero zero-point (Brevitas' `...PerTensorFixedPoint` family);
    None picks Int8WeightPerTensorFixedPoint, Uint8ActPerTensorFixedPoint (after ReLUs),
    Int8ActPerTensorFixedPoint (every other activation) and Int32Bias. Their bit widths are
    overridden by this configuration.
    """

    weight_bits: int = 8
    act_bits: int = 8
    output_bits: int = 8
    bias_bits: int = 32
    input_bits: int | None = None
    layers: Mapping[str, tuple[int | None, int | None]] = field(default_factory=dict)
    weight_quant: Any = None
    act_quant: Any = None
    output_quant: Any = None
    bias_quant: Any = None

    def __post_init__(self) -> None:
        for f in ("weight_bits", "act_bits", "output_bits", "bias_bits"):
            _check_bits(getattr(self, f), f"QuantConfig.{f}")
        if self.input_bits is not None:
            _check_bits(self.input_bits, "QuantConfig.input_bits")
        if not isinstance(self.layers, Mapping):
            raise ConfigError(f"QuantConfig.layers: expected a mapping of module name -> (weight bits, activation "
                              f"bits), got {type(self.layers).__name__}")
        for name, pair in self.layers.items():
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ConfigError(f"QuantConfig.layers[{name!r}]: expected (weight bits, activation bits), got {pair!r}")
            for what, v in zip(("weight", "activation"), pair):
                if v is not None:
                    _check_bits(v, f"QuantConfig.layers[{name!r}] {what} bits")

    def weight(self, name: str) -> int:
        w = self.layers.get(name, (None, None))[0]
        return self.weight_bits if w is None else int(w)

    def act(self, name: str) -> int | None:
        """Activation bits set for this name, or None."""
        a = self.layers.get(name, (None, None))[1]
        return None if a is None else int(a)


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

    # Weights take their scale from max |w| on every forward (clamped, then restricted, then
    # clamped again): the floor is Brevitas' clamp itself. Activations learn theirs; Brevitas
    # clamps the range while training but the scale in eval, so one clamp value cannot floor
    # both: the floor is kept on the learned range instead (`_floor_ranges`).
    def floored(quant: Any, role: str, min_val: float) -> Any:
        quant = _check_quantizer(quant, role)
        if not callable(getattr(quant, "let", None)):
            raise ConfigError(f"{role} quantizer {quant!r} is not a Brevitas quantizer (an ExtendedInjector such as "
                              "Int8WeightPerTensorFixedPoint)")
        return quant.let(scaling_min_val=min_val)

    return {
        "weight": floored(pick(cfg.weight_quant, Int8WeightPerTensorFixedPoint), "weight", RANGE_FLOOR),
        "act": floored(pick(cfg.act_quant, Uint8ActPerTensorFixedPoint), "activation", _BREVITAS_MIN),
        "signed": floored(pick(cfg.output_quant, Int8ActPerTensorFixedPoint), "output", _BREVITAS_MIN),
        "bias": _check_quantizer(pick(cfg.bias_quant, Int32Bias), "bias", bias=True),
    }


def _hold_range_floor(scaling: torch.nn.Module, _args: Any) -> None:
    """Forward pre-hook of a learned power-of-two scale: its range stays at or above
    RANGE_FLOOR. Brevitas keeps the range as log2 in `value` once its statistics are in, and
    the statistics themselves in `buffer` (linear) while it collects them."""
    with torch.no_grad():
        collecting = getattr(scaling, "counter", None) is not None and scaling.counter <= scaling.collect_stats_steps
        if collecting:
            scaling.buffer.clamp_(min=RANGE_FLOOR)
        else:
            scaling.value.clamp_(min=math.log2(RANGE_FLOOR))


def _floor_ranges(model: torch.nn.Module) -> int:
    """Hold every learned activation scale of a quantized model at the floor (RANGE_FLOOR);
    returns how many. Learned scales are Brevitas modules with a `value` parameter whose
    restriction is a power of two (`_check_quantizer` refuses any other)."""
    n = 0
    for m in model.modules():
        value = getattr(m, "value", None)
        restrict = getattr(getattr(m, "restrict_scaling", None), "restrict_value_impl", None)
        if isinstance(value, torch.nn.Parameter) and type(restrict).__name__ == "PowerOfTwoRestrictValue":
            m.register_forward_pre_hook(_hold_range_floor)
            n += 1
    return n


# --------------------------------------------------------------------------- module swap

def _value(x: Any) -> Any:
    """The float value of a Brevitas quantized tensor (a plain tensor is returned as is)."""
    return getattr(x, "value", x)


_COMPUTE = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)
_NORMS = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)
# Modules and functions that pass a quantized tensor through unchanged (Brevitas handles them).
_PASS_MODULES = (torch.nn.Flatten, torch.nn.MaxPool1d, torch.nn.MaxPool2d, torch.nn.AdaptiveMaxPool1d,
                 torch.nn.AdaptiveMaxPool2d, torch.nn.Dropout, torch.nn.Identity)
_PASS_FUNCS = {torch.flatten, torch.reshape, torch.transpose, torch.permute, torch.nn.functional.max_pool1d,
               torch.nn.functional.max_pool2d, torch.nn.functional.dropout, torch.nn.functional.adaptive_max_pool1d,
               torch.nn.functional.adaptive_max_pool2d}
_PASS_METHODS = {"flatten", "view", "reshape", "transpose", "permute", "contiguous"}
_RELU_FUNCS = {torch.relu, torch.nn.functional.relu}
_MAX_FUNCS = {torch.amax}
_MAX_METHODS = {"amax"}
_ADD_FUNCS = {operator.add, torch.add}
_CAT_FUNCS = {torch.cat, torch.concat}
# Neither exact nor refused: metadata reads.
_META_METHODS = {"size", "dim"}
_REFUSED_MODULES = {
    torch.nn.AvgPool1d: "average pooling", torch.nn.AvgPool2d: "average pooling",
    torch.nn.AdaptiveAvgPool1d: "average pooling", torch.nn.AdaptiveAvgPool2d: "average pooling",
    torch.nn.Sigmoid: "a sigmoid", torch.nn.Tanh: "a tanh", torch.nn.GELU: "a GELU", torch.nn.SiLU: "a SiLU",
    torch.nn.LeakyReLU: "a leaky ReLU", torch.nn.ELU: "an ELU", torch.nn.Softmax: "a softmax",
    torch.nn.LayerNorm: "a layer norm", torch.nn.ReLU6: "a ReLU6",
}


def _set_module(root: torch.nn.Module, name: str, new: torch.nn.Module | None) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    if new is None:
        del parent._modules[child]
    else:
        parent._modules[child] = new


def _fold_norm(layer: torch.nn.Module, bn: torch.nn.Module) -> None:
    """Fold an inference-mode BatchNorm into the preceding Linear/Conv (exact zeros stay zeros)."""
    with torch.no_grad():
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps) if bn.affine else 1.0 / torch.sqrt(bn.running_var + bn.eps)
        shift = (bn.bias.detach() if bn.affine else 0.0) - bn.running_mean * scale
        shape = (-1,) + (1,) * (layer.weight.dim() - 1)
        layer.weight.mul_(scale.reshape(shape))
        bias = layer.bias.detach() * scale + shift if layer.bias is not None else shift.clone()
        layer.bias = torch.nn.Parameter(bias.to(layer.weight.dtype))


def _quant_layer(qnn: Any, m: torch.nn.Module, q: dict[str, Any], cfg: QuantConfig, name: str) -> torch.nn.Module:
    wb = cfg.weight(name)
    common = dict(weight_quant=q["weight"], weight_bit_width=wb, bias_quant=q["bias"], bias_bit_width=cfg.bias_bits,
                  return_quant_tensor=False)
    if isinstance(m, torch.nn.Linear):
        new = qnn.QuantLinear(m.in_features, m.out_features, bias=m.bias is not None, **common)
    else:
        if m.padding_mode != "zeros":
            raise ConfigError(f"{name}: padding mode {m.padding_mode!r} is not supported (only zero padding)")
        if isinstance(m.padding, str):
            raise ConfigError(f"{name}: padding={m.padding!r}; give the padding as numbers")
        cls = qnn.QuantConv1d if isinstance(m, torch.nn.Conv1d) else qnn.QuantConv2d
        new = cls(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride, padding=m.padding, dilation=m.dilation,
                  groups=m.groups, bias=m.bias is not None, **common)
    with torch.no_grad():
        new.weight.copy_(m.weight.detach())  # exact copies: pruned zeros stay zeros
        if m.bias is not None:
            new.bias.copy_(m.bias.detach())
    return new


class _Builder:
    """Rewrites a traced float model into its quantized form (see the module doc)."""

    def __init__(self, model: torch.nn.Module, example: torch.Tensor, cfg: QuantConfig) -> None:
        import torch.fx

        self.qnn = _brevitas()
        self.cfg = cfg
        self.q = _quantizers(cfg)
        try:
            self.gm = torch.fx.symbolic_trace(model)
        except Exception as e:
            raise ConfigError(f"the model cannot be traced with torch.fx ({type(e).__name__}: "
                              f"{str(e).strip().splitlines()[0][:160] if str(e).strip() else ''}); quantization needs a "
                              "forward without data-dependent control flow") from None
        self.graph = self.gm.graph
        self.modules = dict(self.gm.named_modules())
        self.float_input = not (example.dtype in (torch.int32, torch.int64, torch.int16, torch.int8, torch.uint8))
        self.quantizers: dict[str, str] = {}  # quantizer module name -> role (input, relu, act, output)
        self.output_of: dict[str, str] = {}  # compute layer -> the quantizer of its output
        self.exact: set[Any] = set()
        self.quant: set[Any] = set()  # values that are Brevitas quantized tensors

    # ---------------------------------------------------------------- helpers
    def _name(self, base: str) -> str:
        base = base.replace(".", "_")
        name, k = base, 1
        while name in self.modules or hasattr(self.gm, name):
            name, k = f"{base}_{k}", k + 1
        return name

    def _act(self, name: str, role: str, bits: int) -> torch.nn.Module:
        qnn = self.qnn
        if role == "relu":
            m = qnn.QuantReLU(act_quant=self.q["act"], bit_width=bits, return_quant_tensor=True)
        else:
            m = qnn.QuantIdentity(act_quant=self.q["signed"], bit_width=bits, return_quant_tensor=True)
        self.quantizers[name] = role
        return m

    def _insert_quant(self, value: Any, before: Any, base: str, role: str = "act", bits: int | None = None) -> Any:
        """A new quantizer module reading `value`, placed before node `before`; returns its node."""
        name = self._name(base)
        bits = bits if bits is not None else (self.cfg.act(name) or self.cfg.act_bits)
        mod = self._act(name, role, bits)
        self.gm.add_submodule(name, mod)
        self.modules[name] = mod
        with self.graph.inserting_before(before):
            node = self.graph.call_module(name, (value,))
        self.quant.add(node)
        self.exact.add(node)
        return node

    def _unpack(self, value: Any, before: Any) -> Any:
        with self.graph.inserting_before(before):
            return self.graph.call_function(_value, (value,))

    def _args_map(self, node: Any, fn: Callable[[Any, int], Any]) -> None:
        """Replace every node argument of `node` (also inside lists) by fn(arg, position)."""
        import torch.fx

        k = [0]

        def sub(a: Any) -> Any:
            if isinstance(a, torch.fx.Node):
                k[0] += 1
                return fn(a, k[0] - 1)
            if isinstance(a, (list, tuple)):
                return type(a)(sub(x) for x in a)
            return a

        node.args = tuple(sub(a) for a in node.args)
        node.kwargs = {kk: sub(v) for kk, v in node.kwargs.items()}

    # ---------------------------------------------------------------- passes
    def fold_norms(self) -> None:
        for node in list(self.graph.nodes):
            if node.op != "call_module" or not isinstance(self.modules.get(node.target), _NORMS):
                continue
            src = node.args[0] if node.args else None
            prod = self.modules.get(src.target) if getattr(src, "op", None) == "call_module" else None
            if not isinstance(prod, _COMPUTE) or len(src.users) != 1:
                raise ConfigError(f"BatchNorm {node.target} does not follow a Linear/Conv as its only reader, so it "
                                  "cannot be folded into weights; put it right after a Linear/Conv")
            _fold_norm(prod, self.modules[node.target])
            node.replace_all_uses_with(src)
            self.graph.erase_node(node)
            _set_module(self.gm, node.target, None)
            self.modules.pop(node.target, None)

    def swap(self) -> None:
        qnn = self.qnn
        for node in list(self.graph.nodes):
            if node.op == "call_module":
                m = self.modules[node.target]
                if isinstance(m, _COMPUTE):
                    new = _quant_layer(qnn, m, self.q, self.cfg, node.target)
                elif isinstance(m, torch.nn.Embedding):
                    if self.cfg.act(node.target) is not None:
                        raise ConfigError(f"QuantConfig.layers[{node.target!r}]: an embedding's output is its table; set "
                                          "only the weight bits, e.g. (6, None)")
                    new = qnn.QuantEmbedding(m.num_embeddings, m.embedding_dim, padding_idx=m.padding_idx,
                                             weight_quant=self.q["weight"], weight_bit_width=self.cfg.weight(node.target),
                                             return_quant_tensor=True)
                    with torch.no_grad():
                        new.weight.copy_(m.weight.detach())
                elif type(m) is torch.nn.ReLU:
                    new = self._act(node.target, "relu", self.cfg.act(node.target) or self.cfg.act_bits)
                elif type(m) in _REFUSED_MODULES:
                    raise ConfigError(f"{node.target}: {_REFUSED_MODULES[type(m)]} has no exact fixed-point equivalent in "
                                      "hwprune's quantized flow (supported: Linear, Conv1d/2d, Embedding, BatchNorm after "
                                      "them, ReLU, max pooling, flatten/reshape, add, concat)")
                else:
                    continue
                new.train(m.training)
                _set_module(self.gm, node.target, new)
                self.modules[node.target] = new
            elif (node.op == "call_function" and node.target in _RELU_FUNCS) or (node.op == "call_method" and node.target == "relu"):
                src = node.args[0]
                base = f"{src.target}_relu" if getattr(src, "op", None) == "call_module" else node.name
                name = self._name(base)
                mod = self._act(name, "relu", self.cfg.act(name) or self.cfg.act_bits)
                self.gm.add_submodule(name, mod)
                self.modules[name] = mod
                with self.graph.inserting_before(node):
                    new_node = self.graph.call_module(name, (node.args[0],))
                node.replace_all_uses_with(new_node)
                self.graph.erase_node(node)
            elif node.op in ("call_function", "call_method") and node.target in (torch.nn.functional.linear,
                                                                                  torch.nn.functional.conv1d,
                                                                                  torch.nn.functional.conv2d,
                                                                                  torch.nn.functional.batch_norm,
                                                                                  torch.nn.functional.avg_pool1d,
                                                                                  torch.nn.functional.avg_pool2d,
                                                                                  torch.nn.functional.adaptive_avg_pool1d,
                                                                                  torch.nn.functional.adaptive_avg_pool2d,
                                                                                  torch.sigmoid, torch.tanh, "mean"):
                what = getattr(node.target, "__name__", node.target)
                raise ConfigError(f"{node.name}: functional {what} is not supported for quantization; use the nn module "
                                  "(Linear, Conv1d/2d, BatchNorm after them) or max pooling")

    def _kind(self, node: Any) -> str:
        """pass (quantized stays quantized), quant (a quantizer), compute, add, cat, max, meta, other."""
        if node.op == "call_module":
            m = self.modules[node.target]
            if node.target in self.quantizers:
                return "quant"
            if isinstance(m, _COMPUTE):
                return "compute"
            if type(m).__name__ == "QuantEmbedding":
                return "quant"
            if isinstance(m, _PASS_MODULES):
                return "pass"
            return "other"
        if node.op == "call_function":
            if node.target in _PASS_FUNCS:
                return "pass"
            if node.target in _ADD_FUNCS:
                return "add"
            if node.target in _CAT_FUNCS:
                return "cat"
            if node.target in _MAX_FUNCS:
                return "max"
            if node.target is _value:
                return "unpack"
            return "other"
        if node.op == "call_method":
            if node.target in _PASS_METHODS:
                return "pass"
            if node.target in _MAX_METHODS:
                return "max"
            if node.target in _META_METHODS:
                return "meta"
            if node.target == "add":
                return "add"
            return "other"
        return node.op  # placeholder, get_attr, output

    def place(self) -> None:
        """Insert the quantizers the hardware needs and unpack quantized tensors where a plain
        tensor is expected (one walk in graph order)."""
        import torch.fx

        for node in list(self.graph.nodes):
            kind = self._kind(node)
            if kind == "placeholder":
                if self.float_input and node.users:
                    users = list(node.users)
                    q = self._insert_quant(node, users[0], "input_quant", "input",
                                           self.cfg.act("input_quant") or self.cfg.input_bits or self.cfg.act_bits)
                    for u in users:
                        u.replace_input_with(node, q)
                continue
            if kind in ("get_attr",):
                continue
            if kind == "output":
                out = node.args[0]
                if not isinstance(out, torch.fx.Node):
                    raise ConfigError("the model must return one tensor (not a tuple or dict) to be quantized")
                if out not in self.exact or out.op == "placeholder":
                    q = self._insert_quant(out, node, "output_quant", "output",
                                           self.cfg.act("output_quant") or self.cfg.output_bits)
                    node.args = (q,)
                    out = q
                if out in self.quant:
                    node.args = (self._unpack(out, node),)
                continue
            if kind == "quant":
                self.exact.add(node)
                self.quant.add(node)
            elif kind == "pass":
                src = node.args[0] if node.args else None
                if src in self.quant:
                    self.quant.add(node)
                if src in self.exact:
                    self.exact.add(node)
            elif kind == "compute":
                src = node.args[0]
                if src not in self.quant:
                    q = self._insert_quant(src, node, f"{node.target}_input_quant")
                    node.replace_input_with(src, q)
            elif kind in ("add", "cat", "max"):
                ins = list(node.all_input_nodes)
                exact = all(a in self.exact for a in ins)
                for k, a in enumerate(ins):
                    if kind in ("add", "cat") and a not in self.exact:
                        q = self._insert_quant(a, node, f"{node.name}_in{k}_quant")
                        node.replace_input_with(a, q)
                        a = q
                    if a in self.quant:
                        node.replace_input_with(a, self._unpack(a, node))
                if kind != "max" or exact:
                    self.exact.add(node)
            elif kind == "unpack":
                if node.args[0] in self.exact:
                    self.exact.add(node)
            else:  # meta reads and anything else see plain tensors
                for a in list(node.all_input_nodes):
                    if a in self.quant:
                        node.replace_input_with(a, self._unpack(a, node))
            # A value several consumers read must be exact (each reader sees the same bits).
            readers = [u for u in node.users if self._kind(u) != "meta"]
            if len(readers) > 1 and node not in self.exact and kind not in ("meta", "unpack"):
                q = self._insert_quant(node, readers[0], f"{node.name}_quant")
                for u in readers:
                    u.replace_input_with(node, q)

    def link_outputs(self) -> None:
        """Each compute layer's output quantizer: the first quantizer its output reaches along
        single-reader pass-through ops; its bits follow layers[<layer>]'s activation bits."""
        for node in self.graph.nodes:
            if self._kind(node) != "compute":
                continue
            cur = node
            while len(cur.users) == 1:
                nxt = next(iter(cur.users))
                k = self._kind(nxt)
                if k == "quant" and nxt.target in self.quantizers:
                    self.output_of[node.target] = nxt.target
                    bits = self.cfg.act(node.target)
                    if bits is not None and self.cfg.act(nxt.target) is None:
                        self._rebuild(nxt.target, bits)
                    break
                if k not in ("pass", "unpack"):
                    break
                cur = nxt

    def _rebuild(self, name: str, bits: int) -> None:
        role = self.quantizers[name]
        old = self.modules[name]
        new = self._act(name, role, bits)
        new.train(old.training)
        _set_module(self.gm, name, new)
        self.modules[name] = new

    def build(self) -> torch.nn.Module:
        self.fold_norms()
        self.swap()
        self.place()
        self.link_outputs()
        self.graph.lint()
        self.gm.recompile()
        names = set(self.modules) | {n for n, _ in self.gm.named_modules()}
        unknown = sorted(set(self.cfg.layers) - names)
        if unknown:
            valid = sorted(n for n, m in self.gm.named_modules() if n in self.quantizers or isinstance(m, _COMPUTE)
                           or type(m).__name__ == "QuantEmbedding")
            raise ConfigError(f"QuantConfig.layers: unknown module name(s) {unknown}; this model has: {', '.join(valid)}")
        for name, (w, a) in self.cfg.layers.items():
            if name in self.quantizers and w is not None:
                raise ConfigError(f"QuantConfig.layers[{name!r}]: {name} is a quantizer without weights; set only the "
                                  "activation bits, e.g. (None, 6)")
        return self.gm


def quantize_model(model: torch.nn.Module, example_input: Any, config: QuantConfig | None = None) -> torch.nn.Module:
    """The quantized copy of a float model (module doc): a torch.fx GraphModule with the float
    model's module and parameter names, weights copied exactly (a pruned model's zeros stay
    zeros, its `hwprune_sparsity` patterns are carried over). `quantizers` on the result maps
    every activation quantizer's name to its role, `output_quantizer` every compute layer to
    the quantizer of its output."""
    cfg = config or QuantConfig()
    x = _as_tensor(example_input)
    float_model = copy.deepcopy(model)
    training = model.training
    float_model.eval()
    b = _Builder(float_model, x, cfg)
    gm = b.build()
    gm.quantizers = dict(b.quantizers)  # type: ignore[assignment]
    gm.output_quantizer = dict(b.output_of)  # type: ignore[assignment]
    gm.config = cfg  # type: ignore[assignment]
    _floor_ranges(gm)
    pruned = getattr(model, "hwprune_sparsity", None)
    if pruned:
        gm.hwprune_sparsity = dict(pruned)  # type: ignore[attr-defined]
    gm.train(training)
    with torch.no_grad():
        try:
            gm.eval()
            _value(gm(x))
        except ConfigError:
            raise
        except Exception as e:
            raise ConfigError(f"the quantized model does not run ({type(e).__name__}: "
                              f"{str(e).strip().splitlines()[0][:200] if str(e).strip() else ''})") from None
        finally:
            gm.train(training)
    return gm


def _as_tensor(x: Any) -> torch.Tensor:
    if isinstance(x, (tuple, list)) and x and not np.isscalar(x[0]):
        x = x[0]  # an (input, label) pair
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.is_floating_point() and t.dtype != torch.float32:
        t = t.float()
    return t


# --------------------------------------------------------------------------- calibration

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
    """Post-training calibration: run the batches (inputs, or (input, label) pairs) through
    the model in Brevitas' calibration mode, so every activation quantizer takes its range
    from the statistics of real activations (their average over the batches), then leave the
    model in eval mode. No gradient step; earlier calibrated or learned activation scales are
    replaced. Returns the new activation scales."""
    from brevitas.graph.calibrate import calibration_mode

    batches = list(batches)
    if not batches:
        raise ConfigError("calibrate needs at least one batch of inputs")
    model.eval()  # dropout off; calibration_mode switches only the activation quantizers to training
    _restart_statistics(model)
    n = 0
    with torch.no_grad(), calibration_mode(model):
        for b in batches:
            model(_as_tensor(b))
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
    """Quantization-aware training: Adam on (input, label) batches, gradients through Brevitas'
    straight-through quantizers (weights and the power-of-two scales are learned). `steps`
    optimizer steps cycling over the batches in order (default: one pass); `seed` fixes dropout.
    With `keep_zeros`, the weights the model declares pruned (`hwprune_sparsity`) keep their
    zeros: their masks are re-applied after every step, so the sparse patterns survive.
    Returns the loss of every step; leaves the model in eval mode. Calibrate first: before that,
    Brevitas' activation quantizers spend their first steps collecting statistics."""
    if not batches:
        raise ConfigError("finetune needs at least one (input, label) batch")
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
        out = _value(model(_as_tensor(ids)))  # a quantized tensor's float value
        target = labels if isinstance(labels, torch.Tensor) else torch.as_tensor(np.asarray(labels))
        if loss_fn is torch.nn.functional.cross_entropy and not target.is_floating_point():
            target = target.long()
        loss = loss_fn(out, target)
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
    float values, or their transpose (the exporter renames them). Returns {initializer: pattern}."""
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
        # A Linear applied to a sequence (N, L, C) exports as MatMul with the weight transposed.
        hits = [n for n, a in inits if a.dtype == v.dtype and ((a.shape == v.shape and np.array_equal(a, v)) or
                                                               (v.ndim == 2 and a.shape == v.T.shape and np.array_equal(a, v.T)))]
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


_WEIGHTED_OPS = {"Conv": 1, "Gemm": 1, "MatMul": 1, "Gather": 0}


def record_modules(model: torch.nn.Module, proto: onnx.ModelProto) -> dict[str, str]:
    """Write `hwprune.module.<node>` metadata naming the torch module of every exported
    Conv/Gemm/MatMul/Gather node: its weight (behind Quant and layout nodes) is an initializer
    holding exactly that module's float weight, in the module's orientation or transposed
    (the exporters rename initializers, so names cannot be matched). Returns {node: module}."""
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    producer = {o: n for n in proto.graph.node for o in n.output}
    weights = [(name[: -len(".weight")], p.detach().cpu().numpy()) for name, p in model.named_parameters()
               if name.endswith(".weight") and isinstance(model.get_submodule(name[: -len(".weight")]),
                                                          (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d,
                                                           torch.nn.Embedding))]
    found: dict[str, str] = {}
    claimed: set[str] = set()
    for node in proto.graph.node:
        pos = _WEIGHTED_OPS.get(node.op_type)
        if pos is None or len(node.input) <= pos:
            continue
        src = node.input[pos]
        while src not in inits and src in producer and producer[src].op_type in ("Quant", "Transpose", "Identity", "Reshape"):
            src = producer[src].input[0]
        if src not in inits:
            continue
        v = inits[src]
        for mod, w in weights:
            if mod in claimed:
                continue
            if (v.shape == w.shape and np.array_equal(v, w)) or (v.ndim == 2 and v.T.shape == w.shape and np.array_equal(v.T, w)):
                found[node.name] = mod
                claimed.add(mod)
                break
    keep = [p for p in proto.metadata_props if not p.key.startswith(MODULE_META)]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for n, mod in found.items():
        meta = proto.metadata_props.add()
        meta.key, meta.value = MODULE_META + n, mod
    return found


def module_map(proto: onnx.ModelProto) -> dict[str, str]:
    """{exported node name (= hwprune IR layer name): torch module name} recorded by export_qonnx."""
    return {p.key[len(MODULE_META):]: p.value for p in proto.metadata_props if p.key.startswith(MODULE_META)}


def export_qonnx(model: torch.nn.Module, example_input: Any) -> onnx.ModelProto:
    """QONNX of a Brevitas model (eval mode), cleaned up with qonnx (constant parameters,
    readable names that a second cleanup keeps) and checked to be exact fixed point; pruned
    parameters' patterns go into the metadata so the import uses the sparse kernels."""
    _brevitas()
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    x = _as_tensor(example_input)
    model.eval()
    with tempfile.TemporaryDirectory(prefix="hwprune_qonnx_") as d, _quiet():
        # Imported here: brevitas' export package warns about optional kernels on import.
        from brevitas.export import export_qonnx as brevitas_export_qonnx

        path = Path(d) / "model.onnx"
        try:
            # The TorchScript exporter: the same graph as the dynamo one after the clean-up, in a
            # fifth of the time (0.4 s vs 2 s for a small CNN; the budget search exports often).
            brevitas_export_qonnx(model, x, export_path=str(path), dynamo=False)
        except Exception as e:
            raise ConfigError(f"the QONNX export failed ({type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}); "
                              "is every layer a Brevitas quantized layer or a plain op hwprune supports?") from e
        proto = onnx.load(str(path))
        proto = cleanup_model(ModelWrapper(proto)).model
    check_fixed_point(proto)
    record_modules(model, proto)
    recorded = record_sparsity(model, proto)
    if recorded:
        log.info("recorded sparsity patterns for %s", ", ".join(f"{k} ({v})" for k, v in recorded.items()))
    return proto
