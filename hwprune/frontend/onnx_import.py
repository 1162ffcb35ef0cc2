"""ONNX / QONNX -> IR.

Steps: load (clear errors for missing, truncated or non-ONNX files), refuse unsupported ops
before anything else (naming the node), upgrade old opsets with onnx's version converter,
fuse elementwise chains into the function they compute (GELU), fold constant sub-graphs
(weight transposes, Shape->Reshape chains), then hand each node to
the importer its op module registered. The batch axis (axis 0 of every activation) is
dropped: IR shapes are per sample.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from hwprune.errors import ModelLoadError, UnsupportedOpError
from hwprune.frontend.fusion import fuse_elementwise_functions, fuse_layernorm
from hwprune.ir.graph import Graph, Layer, Tensor, TensorKind
from hwprune.ops.base import ONNX_IMPORTERS

log = logging.getLogger(__name__)

MIN_OPSET = 13

# Ops that only move metadata or are identities at inference; handled here, not in op rooms.
_PASS_THROUGH = {"Identity", "Dropout"}
# Evaluated when all inputs are constant (weight preprocessing the exporter left in the graph).
_FOLDABLE = {
    "Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Concat", "Gather", "Cast",
    "Constant", "Shape", "Slice", "Mul", "Add", "Sub", "Div", "Neg", "Sqrt", "Reciprocal",
    "Unsqueeze", "ConstantOfShape", "Range", "Equal", "Where", "Expand", "Identity", "CastLike",
}


_TYPE_PRESERVING = {"Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"}


def supported_ops() -> list[str]:
    return sorted(set(ONNX_IMPORTERS) | _PASS_THROUGH | {"Constant", "Shape", "Cast"})


@dataclass
class ImportContext:
    model: onnx.ModelProto
    graph: Graph
    consts: dict[str, np.ndarray] = field(default_factory=dict)
    renames: dict[str, str] = field(default_factory=dict)
    opset: int = MIN_OPSET
    # The opset the model was written in (before upgrading): some ops changed meaning.
    source_opset: int = MIN_OPSET
    # Exact fixed-point types of constants that came out of a QONNX Quant (weights, biases).
    const_types: dict[str, Any] = field(default_factory=dict)

    def const_type(self, onnx_name: str) -> Any:
        return self.const_types.get(self.name(onnx_name)) if onnx_name else None

    # -- lookups -------------------------------------------------------------------------
    def name(self, onnx_name: str) -> str:
        while onnx_name in self.renames:
            onnx_name = self.renames[onnx_name]
        return onnx_name

    def const(self, onnx_name: str) -> np.ndarray | None:
        if onnx_name == "":
            return None
        return self.consts.get(self.name(onnx_name))

    def is_const(self, onnx_name: str) -> bool:
        return self.const(onnx_name) is not None

    def tensor(self, onnx_name: str) -> Tensor:
        return self.graph.tensors[self.name(onnx_name)]

    def shape(self, onnx_name: str) -> tuple[int, ...]:
        return self.tensor(onnx_name).shape

    # -- building ------------------------------------------------------------------------
    def add(self, layer: Layer, out_shape: tuple[int, ...], kind: TensorKind = TensorKind.FIXED) -> None:
        layer.inputs = [self.name(i) for i in layer.inputs]
        for out in layer.outputs:
            self.graph.tensors[out] = Tensor(out, tuple(out_shape), kind=kind)
        self.graph.layers.append(layer)

    def alias(self, out: str, to: str) -> None:
        self.renames[out] = self.name(to)

    def error(self, node: Any, why: str) -> UnsupportedOpError:
        return UnsupportedOpError(f"node '{node.name or node.output[0]}' ({node.op_type}): {why}")

    def layer_name(self, node: Any) -> str:
        return self.graph.unique_name(node.name or f"{node.op_type}_{node.output[0]}")


def attrs(node: Any) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


# --------------------------------------------------------------------------- loading

def load_onnx(model: str | Path | onnx.ModelProto) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    path = Path(model)
    if not path.exists():
        raise ModelLoadError(f"model file {path} does not exist")
    if path.is_dir():
        raise ModelLoadError(f"{path} is a directory; pass an .onnx file (or a project directory where the command accepts one)")
    try:
        proto = onnx.load(str(path))
    except Exception as e:  # protobuf raises several unrelated types on garbage input
        raise ModelLoadError(f"{path} is not a readable ONNX model ({type(e).__name__}); is the file truncated?") from None
    if not proto.graph.node:
        raise ModelLoadError(f"{path} is not a readable ONNX model (no graph nodes); is the file truncated or not ONNX?")
    try:
        onnx.checker.check_model(proto)
    except Exception as e:
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"{path} is not a valid ONNX model: {first}") from None
    return proto


def _opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 0


def _check_supported(model: onnx.ModelProto) -> None:
    ok = set(supported_ops()) | _FOLDABLE
    initializers = {i.name for i in model.graph.initializer}
    consts = set(initializers)
    for node in model.graph.node:
        # An unsupported op that only touches constants is folded away, so it is fine.
        all_const = all((i in consts or i == "") for i in node.input)
        # CastLike(constant, activation) casts a constant to the activation's (float) type.
        if node.op_type == "Constant" or (all_const and node.op_type in _FOLDABLE | {"Quant"}) \
                or (node.op_type == "CastLike" and node.input[0] in consts):
            consts.update(node.output)
            continue
        if node.op_type not in ONNX_IMPORTERS and node.op_type not in _PASS_THROUGH | {"Shape", "Cast", "Constant"}:
            raise UnsupportedOpError(
                f"node '{node.name or node.output[0]}' has op type {node.op_type}, which hwprune does not support; "
                f"supported: {', '.join(sorted(ONNX_IMPORTERS))}"
            )


def _cleanup_qonnx(model: onnx.ModelProto) -> onnx.ModelProto:
    """QONNX graphs (Brevitas export) need qonnx's cleanup so Quant parameters are constants."""
    if not any(n.domain.startswith("qonnx") or n.op_type == "Quant" for n in model.graph.node):
        return model
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    return cleanup_model(ModelWrapper(model)).model


def _upgrade(model: onnx.ModelProto) -> onnx.ModelProto:
    v = _opset(model)
    if v >= MIN_OPSET:
        return model
    from onnx import version_converter

    try:
        return version_converter.convert_version(model, MIN_OPSET)
    except Exception as e:
        raise ModelLoadError(f"could not upgrade the model from opset {v} to {MIN_OPSET}: {str(e).splitlines()[0][:160]}") from None


def _fold(node: Any, inputs: list[np.ndarray | None], opset: int) -> list[np.ndarray]:
    from onnx.reference import ReferenceEvaluator

    in_names = [f"i{k}" for k in range(len(node.input))]
    n2 = onnx.helper.make_node(node.op_type, [n if node.input[k] else "" for k, n in enumerate(in_names)],
                               [f"o{k}" for k in range(len(node.output))], domain=node.domain)
    n2.attribute.extend(node.attribute)
    ev = ReferenceEvaluator(n2)
    feeds = {in_names[k]: v for k, v in enumerate(inputs) if node.input[k]}
    return list(ev.run(None, feeds))


def _input_shape(vi: Any, what: str) -> tuple[tuple[int, ...], np.dtype]:
    tt = vi.type.tensor_type
    dims = []
    for k, d in enumerate(tt.shape.dim):
        if k == 0:
            continue  # batch axis: may be symbolic
        if not d.HasField("dim_value") or d.dim_value <= 0:
            raise ModelLoadError(
                f"{what} '{vi.name}' has a dynamic dimension at axis {k}; export the model with fixed "
                f"per-sample shapes (only the batch axis 0 may be dynamic)"
            )
        dims.append(int(d.dim_value))
    if len(tt.shape.dim) == 0:
        raise ModelLoadError(f"{what} '{vi.name}' has no shape; hwprune needs a batch axis plus fixed per-sample dimensions")
    return tuple(dims), onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)


def import_onnx(model: str | Path | onnx.ModelProto, name: str | None = None) -> Graph:
    """Build the IR of an ONNX model (channels-first logical shapes, identity layouts)."""
    # Importing the op package registers every op's ONNX importer.
    import hwprune.ops  # noqa: F401

    source = str(model) if not isinstance(model, onnx.ModelProto) else "<model>"
    proto = load_onnx(model)
    proto = _cleanup_qonnx(proto)
    proto = fuse_layernorm(fuse_elementwise_functions(proto))
    _check_supported(proto)
    source_opset = _opset(proto)
    proto = _upgrade(proto)
    gname = name or (Path(source).stem if source != "<model>" else (proto.graph.name or "model"))
    g = Graph(name=gname, source=source)
    ctx = ImportContext(proto, g, opset=_opset(proto), source_opset=source_opset)

    for init in proto.graph.initializer:
        ctx.consts[init.name] = numpy_helper.to_array(init)
    init_names = set(ctx.consts)
    for vi in proto.graph.input:
        if vi.name in init_names:
            continue
        shape, dtype = _input_shape(vi, "input")
        kind = TensorKind.INDEX if np.issubdtype(dtype, np.integer) else TensorKind.FIXED
        g.tensors[vi.name] = Tensor(vi.name, shape, kind=kind)
        g.inputs.append(vi.name)
    if not g.inputs:
        raise ModelLoadError(f"{source}: the model has no non-constant inputs")

    from hwprune.ops.quant import fold_constant_quant

    for node in proto.graph.node:
        ins = [ctx.const(i) if i else None for i in node.input]
        dynamic = [i for i in node.input if i and ctx.const(i) is None]
        if node.op_type == "CastLike" and ctx.const(node.input[0]) is not None:
            ctx.consts[node.output[0]] = np.asarray(ctx.const(node.input[0]), dtype=np.float32)
            continue
        if node.op_type == "Quant" and not dynamic:
            ctx.consts[node.output[0]] = fold_constant_quant(ctx, node)
            continue
        if node.op_type == "Constant" or (not dynamic and node.op_type in _FOLDABLE | set(ONNX_IMPORTERS)):
            if node.op_type in _FOLDABLE or node.op_type == "Constant":
                for out, val in zip(node.output, _fold(node, ins, ctx.opset)):
                    ctx.consts[out] = np.asarray(val)
                # Layout-only folds keep a quantized constant's exact type.
                if node.op_type in _TYPE_PRESERVING and node.input and ctx.const_type(node.input[0]) is not None:
                    ctx.const_types[node.output[0]] = ctx.const_type(node.input[0])
                continue
        if node.op_type in _PASS_THROUGH or (node.op_type == "Cast" and _is_float_cast(node, ctx)):
            ctx.alias(node.output[0], node.input[0])
            continue
        if node.op_type == "Shape":
            full = (1, *ctx.shape(node.input[0]))
            a = attrs(node)
            start, end = a.get("start", 0), a.get("end", None)
            ctx.consts[node.output[0]] = np.asarray(full[start:end], dtype=np.int64)
            continue
        if node.op_type == "Cast":
            raise ctx.error(node, "casting activations to a non-float type is not supported")
        importer = ONNX_IMPORTERS.get(node.op_type)
        if importer is None:  # unreachable after _check_supported, kept as a guard
            raise ctx.error(node, "unsupported op")
        importer(ctx, node)

    for vi in proto.graph.output:
        out = ctx.name(vi.name)
        if out not in g.tensors:
            raise UnsupportedOpError(f"output '{vi.name}' is a constant; hwprune needs outputs computed from inputs")
        g.outputs.append(out)
    _drop_dead_layers(g)
    log.info("imported %s: %d layers", g.name, len(g.layers))
    return g


def _is_float_cast(node: Any, ctx: ImportContext) -> bool:
    to = attrs(node).get("to")
    return to in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16)


def _drop_dead_layers(g: Graph) -> None:
    live = set(g.outputs)
    keep: list[Layer] = []
    for layer in reversed(g.layers):
        if any(o in live for o in layer.outputs):
            keep.append(layer)
            live.update(layer.inputs)
    g.layers = list(reversed(keep))
    g.tensors = {k: v for k, v in g.tensors.items() if k in live or k in g.inputs}
