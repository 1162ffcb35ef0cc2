"""Post-training fixed point for models Brevitas cannot wrap (LayerNorm, GELU, softmax
attention): the float model is exported as it is, every constant weight of a Conv/Gemm/MatMul
is rounded in the file to its layer's bit width (per tensor, the smallest power-of-two scale
covering max |w|, narrow signed range: what Brevitas' fixed-point weight quantizers and
`hwprune.codesign.space.fake_quantize` do) and declared with FINN's datatype annotation
(`quantization_annotation`, `finn_datatype` FIXED<W,I>), which hwprune's import honours as the
weight's exact type — so the file carries its quantization, as a QONNX file does, and any
precision configuration compiles it. Activations get the precision's result type (default
ap_fixed<16,6,AP_RND_CONV,AP_SAT>). Nothing is trained or calibrated; the fixed-point accuracy
is what the bit-exact reference measures.

    proto = export_ptq(model, example, bits={"fc1": 6}, default_bits=8)
    graph = compile_graph(proto, None, "stream")

Why not QONNX Quant nodes: qonnx's clean-up, which a graph with Quant nodes needs, folds the
shape sub-graphs of PyTorch's (seq, batch, embed) attention at a fixed batch, and the import's
batch-axis rewrite needs them dynamic.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Mapping

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from hwprune.errors import ConfigError

# The ONNX op types whose weight an exported torch module becomes, and the input it sits on.
_WEIGHT_INPUT = {"Conv": 1, "Gemm": 1, "MatMul": 1}
_LAYOUT = ("Transpose", "Identity", "Reshape")


QUANTIZATIONS = ("auto", "qat", "ptq")


def choose_quantization(mode: str, model: torch.nn.Module, example: Any) -> tuple[str, str]:
    """("qat" | "ptq", why): "auto" is QAT when Brevitas can wrap the model, else post-training
    with the reason QAT refused it (a LayerNorm, GELU or softmax has no exact Brevitas layer)."""
    if mode not in QUANTIZATIONS:
        raise ConfigError(f"quantization {mode!r}: expected one of {', '.join(QUANTIZATIONS)}")
    if mode != "auto":
        return mode, ""
    from hwprune.quantize.qat import QuantConfig, quantize_model

    try:
        quantize_model(copy.deepcopy(model), example, QuantConfig())
    except ConfigError as e:
        return "ptq", str(e).splitlines()[0]
    return "qat", ""


def weight_scale(w: np.ndarray, bits: int) -> float:
    """The power-of-two scale of a `bits`-bit narrow-range signed weight covering max |w|."""
    m = float(np.max(np.abs(w))) if w.size else 0.0
    if m == 0.0:
        return 1.0
    return float(2.0 ** math.ceil(math.log2(m / (2 ** (bits - 1) - 1))))


def round_weight(w: np.ndarray, bits: int) -> np.ndarray:
    """w on its `bits`-bit grid (round half to even, narrow range), as float32."""
    s = weight_scale(w, bits)
    levels = 2 ** (bits - 1) - 1
    return (np.clip(np.round(w.astype(np.float64) / s), -levels, levels) * s).astype(np.float32)


def export_ptq(model: torch.nn.Module, example: Any, bits: Mapping[str, int] | None = None,
               default_bits: int = 8) -> onnx.ModelProto:
    """The float model's export with every constant Conv/Gemm/MatMul weight rounded to
    `bits[module]` (a Linear/Conv module's) or `default_bits` (others, e.g.
    nn.MultiheadAttention's packed Q/K/V projection) and annotated with its exact type. The
    module of every compute node is recorded (`module_map`), and so are the declared pruning
    patterns (`model.hwprune_sparsity`)."""
    from hwprune.frontend.torch_export import export_torch
    from hwprune.quantize.qat import record_modules, record_sparsity

    bits = dict(bits or {})
    for name, b in [("default", default_bits), *bits.items()]:
        if isinstance(b, bool) or not isinstance(b, int) or not 2 <= b <= 16:
            raise ConfigError(f"post-training weight bits for {name}: {b!r} must be a whole number from 2 to 16")
    model.eval()
    x = example if isinstance(example, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(example))
    proto = export_torch(model, x)
    # Recorded before rounding: both match initializers by their float values.
    modules = record_modules(model, proto)
    record_sparsity(model, proto)
    unknown = sorted(set(bits) - set(modules.values()))
    if unknown:
        raise ConfigError(f"post-training bits for {', '.join(unknown)}: no such Linear/Conv/Embedding in the exported "
                          f"graph (it has {', '.join(sorted(modules.values())) or 'none'})")
    _round_weights(proto, {node: bits.get(mod, default_bits) for node, mod in modules.items()}, default_bits)
    return proto


def _round_weights(proto: onnx.ModelProto, node_bits: Mapping[str, int], default_bits: int) -> None:
    """Round every constant weight of a Conv/Gemm/MatMul in place and annotate its type. A
    weight read by several nodes is rounded once, at the widest of their widths."""
    g = proto.graph
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    readers: dict[str, list[str]] = {}
    for node in g.node:
        pos = _WEIGHT_INPUT.get(node.op_type)
        if pos is None or len(node.input) <= pos:
            continue
        src = node.input[pos]
        while src not in inits and src in producer and producer[src].op_type in _LAYOUT:
            src = producer[src].input[0]
        if src in inits:
            readers.setdefault(src, []).append(node.name)
    for src, nodes in readers.items():
        b = max(node_bits.get(n, default_bits) for n in nodes)
        w = numpy_helper.to_array(inits[src])
        inits[src].CopyFrom(numpy_helper.from_array(round_weight(w, b), src))
        # FIXED<W,I>: W bits of which I integer (sign included); scale 2**k -> I = W + k.
        _annotate(g, src, f"FIXED<{b},{b + int(round(math.log2(weight_scale(w, b))))}>")


def _annotate(g: onnx.GraphProto, tensor: str, datatype: str) -> None:
    keep = [qa for qa in g.quantization_annotation if qa.tensor_name != tensor]
    del g.quantization_annotation[:]
    g.quantization_annotation.extend(keep)
    qa = g.quantization_annotation.add()
    qa.tensor_name = tensor
    entry = qa.quant_parameter_tensor_names.add()
    entry.key, entry.value = "finn_datatype", datatype
