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
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from hwprune.errors import ModelLoadError, UnsupportedOpError
from hwprune.frontend.batch_axis import move_batch_first
from hwprune.frontend.fusion import fuse_elementwise_functions, fuse_key_mask, fuse_layernorm
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
    # Constants that came out of a Quant with another scale: (codes' grid, scale broadcast to
    # the constant's shape); the constant's value is codes * scale.
    const_scales: dict[str, Any] = field(default_factory=dict)

    def const_type(self, onnx_name: str) -> Any:
        return self.const_types.get(self.name(onnx_name)) if onnx_name else None

    def const_scale(self, onnx_name: str) -> Any:
        return self.const_scales.get(self.name(onnx_name)) if onnx_name else None

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
        mod = source_module(node)
        where = f", in module {mod}" if mod and not (node.name or "").startswith("/") else ""
        return UnsupportedOpError(f"node '{node.name or node.output[0]}' ({node.op_type}{where}): {why}")

    def layer_name(self, node: Any) -> str:
        return self.graph.unique_name(node.name or f"{node.op_type}_{node.output[0]}")


def attrs(node: Any) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


# --------------------------------------------------------------------------- loading

def load_onnx(model: str | Path | onnx.ModelProto) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return normalize_domains(model)
    path = Path(model)
    if not path.exists():
        raise ModelLoadError(f"model file {path} does not exist")
    if path.is_dir():
        raise ModelLoadError(f"{path} is a directory; pass an .onnx file (or a project directory where the command accepts one)")
    kind = _foreign_format(path)
    if kind is not None:
        raise ModelLoadError(kind)
    try:
        proto = onnx.load(str(path))
    except Exception as e:  # protobuf raises several unrelated types on garbage input
        raise ModelLoadError(f"{path} is not a readable ONNX model ({type(e).__name__}); is the file truncated?") from None
    if not proto.graph.node:
        raise ModelLoadError(f"{path} is not a readable ONNX model (no graph nodes); is the file truncated or not ONNX?")
    proto = normalize_domains(proto)
    try:
        onnx.checker.check_model(proto)
    except Exception as e:
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"{path} is not a valid ONNX model: {first}") from None
    return proto


# Old custom-op domains of QONNX files as the QONNX model zoo and FINN's test data still
# publish them (Brevitas' FINN-era export, FINN before the qonnx split). qonnx's ModelWrapper
# renames them on load (`temporary_fix_oldstyle_domain`; its registry aliases onnx.brevitas).
QONNX_DOMAIN = "qonnx.custom_op.general"
_OLD_DOMAINS = {"finn": QONNX_DOMAIN, "finn.custom_op.general": QONNX_DOMAIN, "onnx.brevitas": QONNX_DOMAIN}


def normalize_domains(model: onnx.ModelProto) -> onnx.ModelProto:
    """What qonnx's own loading does before anything checks the model: old-style domains
    become qonnx.custom_op.general (a "finn" node with backend=fpgadataflow is a FINN hardware
    layer and keeps its domain), and every custom domain a node uses gets an opset import
    (version 1) if the file has none, so onnx.checker accepts it. Returns a copy when it
    changes anything; the model is left as is otherwise."""
    renames: dict[int, str] = {}
    for k, n in enumerate(model.graph.node):
        new = _OLD_DOMAINS.get(n.domain)
        if new is None:
            continue
        if n.domain == "finn":
            backend = next((onnx.helper.get_attribute_value(a) for a in n.attribute if a.name == "backend"), b"")
            if (backend.decode() if isinstance(backend, bytes) else str(backend)) == "fpgadataflow":
                continue
        renames[k] = new
    used = {renames.get(k, n.domain) for k, n in enumerate(model.graph.node)} - {"", "ai.onnx"}
    imported = {imp.domain for imp in model.opset_import}
    missing = sorted(used - imported)
    if not renames and not missing:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for k, d in renames.items():
        out.graph.node[k].domain = d
    for d in missing:
        out.opset_import.append(onnx.helper.make_opsetid(d, 1))
    if renames:
        log.info("renamed old-style custom-op domains of %d node(s) to %s", len(renames), QONNX_DOMAIN)
    return out


def _foreign_format(path: Path) -> str | None:
    """A message for a model file in another framework's format (by its first bytes), else None."""
    import zipfile

    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return None
    torch_hint = ("export it to ONNX first: torch.onnx.export(model, example_input, 'model.onnx'), or from Python "
                  "pass the nn.Module itself: hwprune.export(model, 'prj', example_input=x)")
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError):
            return None
        if any(n.endswith(".pkl") for n in names) or any("/code/" in n for n in names):
            scripted = any("/code/" in n or n.endswith("constants.pkl") for n in names)
            what = "a TorchScript archive (torch.jit.save)" if scripted else "a PyTorch file (torch.save: a state_dict or a pickled model)"
            return f"{path} is {what}, not ONNX; {torch_hint}"
        return None
    # torch.save's legacy format: a pickle (protocol 2+) starting with torch's magic number.
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return f"{path} is a Python pickle (torch.save's legacy format?), not ONNX; {torch_hint}"
    if head.startswith(b"\x89HDF"):
        return f"{path} is an HDF5 file (a Keras .h5 model?), not ONNX; convert it to ONNX (e.g. with tf2onnx) first"
    if head[4:8] == b"TFL3":
        return f"{path} is a TensorFlow Lite model, not ONNX; convert it to ONNX (e.g. with tf2onnx) first"
    return None


def _opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 0


def _is_standard(node: Any) -> bool:
    return node.domain in ("", "ai.onnx")


def source_module(node: Any) -> str:
    """The PyTorch module a node came from, where the ONNX names it: the dynamo exporter's
    `pkg.torch.onnx.name_scopes`/`class_hierarchy` metadata, or the TorchScript exporter's
    node names (`/enc/self_attn/Mod` -> `enc.self_attn`). "" when unknown."""
    import ast

    meta = {p.key: p.value for p in getattr(node, "metadata_props", [])}
    scopes, classes = meta.get("pkg.torch.onnx.name_scopes"), meta.get("pkg.torch.onnx.class_hierarchy")
    if scopes:
        try:
            sc = [str(v) for v in ast.literal_eval(scopes)]
            cl = [str(v) for v in ast.literal_eval(classes)] if classes else []
        except (ValueError, SyntaxError):
            sc, cl = [], []
        # The deepest scope that is a module (not the aten op inside it).
        for k in range(min(len(sc), len(cl)) - 1, -1, -1) if cl else range(len(sc) - 2, -1, -1):
            if sc[k] and (not cl or not cl[k].startswith("aten.")):
                return f"{sc[k]} ({cl[k].rsplit('.', 1)[-1]})" if cl else sc[k]
        return ""
    name = node.name or ""
    if name.startswith("/") and name.count("/") >= 2:
        return ".".join(part for part in name.strip("/").split("/")[:-1] if part)
    return ""


def _check_supported(model: onnx.ModelProto, custom_only: bool = False) -> None:
    """Refuse a model with ops hwprune cannot implement, naming all of them at once (each op
    type with its nodes and the source modules), before any work. Constant sub-graphs (weight
    preprocessing, shape arithmetic: per-sample shapes are static) are folded at import, so
    only ops that touch the data count. `custom_only`: check only custom-domain ops (before
    qonnx's clean-up, whose shape inference cannot handle ops it does not know)."""
    consts = {i.name for i in model.graph.initializer}
    bad: dict[str, list[Any]] = {}
    for node in model.graph.node:
        if custom_only and _is_standard(node):
            continue
        ins = [i for i in node.input if i]
        all_const = all(i in consts for i in ins)
        # CastLike(constant, activation) casts a constant to the activation's (float) type.
        if node.op_type in ("Constant", "Shape") or (all_const and (_is_standard(node) or node.op_type == "Quant")) \
                or (node.op_type == "CastLike" and node.input[0] in consts):
            consts.update(node.output)
            continue
        if node.op_type not in ONNX_IMPORTERS and node.op_type not in _PASS_THROUGH | {"Cast"}:
            bad.setdefault(node.op_type if _is_standard(node) else f"{node.domain}.{node.op_type}", []).append(node)
    if not bad:
        return
    parts = []
    for op, nodes in bad.items():
        names = [f"'{n.name or n.output[0]}'" for n in nodes]
        mods = list(dict.fromkeys(m for m in (source_module(n) for n in nodes) if m))
        where = (f"node{'s' if len(nodes) > 1 else ''} {', '.join(names[:3])}" + (f" and {len(nodes) - 3} more" if len(nodes) > 3 else "")
                 + (f" in module{'s' if len(mods) > 1 else ''} {', '.join(mods[:3])}" if mods else ""))
        parts.append(f"{op}{f' x{len(nodes)}' if len(nodes) > 1 else ''} ({where})")
    raise UnsupportedOpError(
        f"the model uses {len(bad)} op type{'s' if len(bad) > 1 else ''} hwprune does not support: {'; '.join(parts)}. "
        f"Supported: {', '.join(sorted(ONNX_IMPORTERS))}"
    )


def _cleanup_qonnx(model: onnx.ModelProto) -> onnx.ModelProto:
    """QONNX graphs (Brevitas export) need qonnx's cleanup so Quant parameters are constants."""
    if not any(n.domain.startswith("qonnx") or n.op_type == "Quant" for n in model.graph.node):
        return model
    import warnings

    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # qonnx warns about the domains it renames
            # A copy: the clean-up transforms the proto it is given, and this one is the caller's.
            return cleanup_model(ModelWrapper(model, make_deepcopy=True)).model
    except Exception as e:  # shape inference and constant folding of a malformed graph
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"qonnx's clean-up of the model failed: {first}") from None


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


_FINN_INT = re.compile(r"(U?INT)(\d+)$")
_FINN_FIXED = re.compile(r"^FIXED<(\d+),(-?\d+)>$")


def _integer_annotations(proto: onnx.ModelProto) -> dict[str, Any]:
    """Exact types of initializers from FINN's datatype annotations (`quantization_annotation`,
    key `finn_datatype`: INTk, UINTk, BIPOLAR, TERNARY, BINARY, FIXED<W,I>), as a streamlined
    FINN graph declares its integer weights and hwprune's post-training export its rounded ones. An annotation the values do not satisfy
    (not integers, out of range) is ignored: the precision configuration types them then."""
    from hwprune.fixed import FixedType

    inits = {i.name: i for i in proto.graph.initializer}
    out: dict[str, Any] = {}
    for qa in proto.graph.quantization_annotation:
        if qa.tensor_name not in inits:
            continue
        dt = next((p.value for p in qa.quant_parameter_tensor_names if p.key == "finn_datatype"), "")
        m = _FINN_INT.match(dt)
        fx = _FINN_FIXED.match(dt)
        if fx:  # FIXED<W,I>: signed fixed point (qonnx's FixedPointType; hwprune.quantize.ptq writes it)
            t = FixedType(int(fx.group(1)), int(fx.group(2)), True)
            if not 2 <= t.width <= 64:
                continue
            v = numpy_helper.to_array(inits[qa.tensor_name]).astype(np.float64)
            raw = v / t.lsb
            if v.size and np.all(raw == np.round(raw)) and v.min() >= t.min_value and v.max() <= t.max_value:
                out[qa.tensor_name] = t
            continue
        if m:
            bits, signed = int(m.group(2)), m.group(1) == "INT"
        elif dt in ("BIPOLAR", "TERNARY"):
            bits, signed = 2, True
        elif dt == "BINARY":
            bits, signed = 1, False
        else:
            continue
        if not 1 <= bits <= 32 or (signed and bits < 2):
            continue
        t = FixedType(bits, bits, signed)
        v = numpy_helper.to_array(inits[qa.tensor_name]).astype(np.float64)
        if v.size and np.all(v == np.round(v)) and v.min() >= t.min_value and v.max() <= t.max_value:
            out[qa.tensor_name] = t
    return out


def import_onnx(model: str | Path | onnx.ModelProto, name: str | None = None) -> Graph:
    """Build the IR of an ONNX model (channels-first logical shapes, identity layouts)."""
    # Importing the op package registers every op's ONNX importer.
    import hwprune.ops  # noqa: F401

    source = str(model) if not isinstance(model, onnx.ModelProto) else "<model>"
    proto = load_onnx(model)
    _check_supported(proto, custom_only=True)  # before qonnx's clean-up, which cannot infer FINN's hardware layers
    proto = _cleanup_qonnx(proto)
    annotated = _integer_annotations(proto)
    proto = fuse_key_mask(fuse_layernorm(fuse_elementwise_functions(proto)))
    _check_supported(proto)
    proto = move_batch_first(proto)
    source_opset = _opset(proto)
    proto = _upgrade(proto)
    gname = name or (Path(source).stem if source != "<model>" else (proto.graph.name or "model"))
    g = Graph(name=gname, source=source)
    ctx = ImportContext(proto, g, opset=_opset(proto), source_opset=source_opset)

    for init in proto.graph.initializer:
        ctx.consts[init.name] = numpy_helper.to_array(init)
    ctx.const_types.update(annotated)
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
        if node.op_type == "Constant" or (not dynamic and node.op_type in _FOLDABLE | set(ONNX_IMPORTERS)) or (
                not dynamic and _is_standard(node) and node.op_type not in _PASS_THROUGH | {"Shape"}):
            if node.op_type in _FOLDABLE or node.op_type == "Constant" or node.op_type not in ONNX_IMPORTERS:
                for out, val in zip(node.output, _fold(node, ins, ctx.opset)):
                    ctx.consts[out] = np.asarray(val)
                # Layout-only folds keep a quantized constant's exact type, or move its scale along.
                if node.op_type in _TYPE_PRESERVING and node.input and ctx.const_type(node.input[0]) is not None:
                    ctx.const_types[node.output[0]] = ctx.const_type(node.input[0])
                if node.op_type in _TYPE_PRESERVING and node.input and ctx.const_scale(node.input[0]) is not None:
                    code, sc = ctx.const_scale(node.input[0])
                    moved = _fold(node, [sc, *ins[1:]], ctx.opset)[0]
                    ctx.const_scales[node.output[0]] = (code, np.asarray(moved, dtype=np.float64))
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
    from hwprune.passes.scales import lower_scales

    lower_scales(g)
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
