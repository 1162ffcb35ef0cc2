"""One-shot magnitude pruning of an ONNX model's weights (`hwprune prune MODEL.onnx`).

Every Gemm/MatMul/Conv weight is viewed as (outputs, inputs) and masked with the pattern;
no data is needed. Layers whose shape does not divide into the pattern's blocks or banks are
left dense and reported. With `filter`, the layers that produce a graph output are left alone
(pruning a classifier's rows would silently drop classes — a Torch-Pruning pitfall). The
pattern is recorded in the model's metadata (`hwprune.sparsity.<weight>`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from hwprune.errors import ConfigError
from hwprune.frontend.onnx_import import attrs, load_onnx
from hwprune.prune.patterns import Pattern, check_sparsity, conv_matrix, mask, sparsity_of

log = logging.getLogger(__name__)
META_PREFIX = "hwprune.sparsity."


@dataclass
class PrunedLayer:
    node: str
    weight: str
    shape: tuple[int, ...]
    sparsity: float  # achieved on this weight
    skipped: str = ""  # why the layer stayed dense


def _weight_view(node: onnx.NodeProto, w: np.ndarray) -> tuple[np.ndarray, bool]:
    """(out, in) view of a weight and whether it was transposed to get it."""
    if node.op_type == "Conv":
        return conv_matrix(w), False
    if node.op_type == "Gemm" and attrs(node).get("transB", 0):
        return w, False
    return w.T, True  # MatMul / Gemm without transB store (in, out)


def prune_onnx(model: str | Path | onnx.ModelProto, pattern: Pattern, sparsity: float) -> tuple[onnx.ModelProto, list[PrunedLayer]]:
    sparsity = check_sparsity(sparsity)
    fixed = pattern.fixed_sparsity()
    if fixed is not None:
        if sparsity not in (0.0, fixed) and abs(sparsity - fixed) > 1e-9:
            raise ConfigError(f"pattern {pattern} always has sparsity {fixed:g}; pass --sparsity {fixed:g}")
        sparsity = fixed
    proto = onnx.ModelProto()
    proto.CopyFrom(load_onnx(model))
    inits = {i.name: i for i in proto.graph.initializer}
    outputs = {o.name for o in proto.graph.output}
    report: list[PrunedLayer] = []
    done: set[str] = set()
    for node in proto.graph.node:
        if node.op_type not in ("Gemm", "MatMul", "Conv") or len(node.input) < 2 or node.input[1] not in inits:
            continue
        name = node.input[1]
        if name in done:
            continue
        done.add(name)
        w = numpy_helper.to_array(inits[name])
        if w.ndim < 2:
            continue
        label = node.name or node.output[0]
        if pattern.kind == "filter" and any(o in outputs for o in node.output):
            report.append(PrunedLayer(label, name, w.shape, 0.0, "produces a model output (its rows are the classes)"))
            continue
        view, transposed = _weight_view(node, w)
        try:
            keep = mask(view, pattern, sparsity)
        except ConfigError as e:
            report.append(PrunedLayer(label, name, w.shape, 0.0, str(e)))
            log.warning("%s left dense: %s", label, e)
            continue
        pruned = np.where(keep, view, 0.0)
        pruned = pruned.T if transposed else pruned
        inits[name].CopyFrom(numpy_helper.from_array(pruned.reshape(w.shape).astype(w.dtype), name))
        if pattern.kind == "filter" and len(node.input) > 2 and node.input[2] in inits:
            b = numpy_helper.to_array(inits[node.input[2]])
            inits[node.input[2]].CopyFrom(numpy_helper.from_array(np.where(keep.any(axis=1), b, 0).astype(b.dtype), node.input[2]))
        meta = proto.metadata_props.add()
        meta.key, meta.value = META_PREFIX + name, str(pattern)
        report.append(PrunedLayer(label, name, w.shape, sparsity_of(keep)))
    if not any(not r.skipped for r in report):
        raise ConfigError(f"no layer could be pruned with {pattern}: "
                          + ("; ".join(f"{r.node}: {r.skipped}" for r in report) or "the model has no Gemm/MatMul/Conv weights"))
    return proto, report
