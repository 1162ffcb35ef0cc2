"""The compile pipeline (model -> typed IR) and the numpy engines that run an IR.

    import_onnx -> fold (bias adds, batch norms) -> eliminate_dead_channels -> assign_layouts -> fold_reorders_into_dense
    -> assign_types

`run_fixed` is the bit-exact reference the C simulation must match; `run_float` runs the
IR's float semantics (same layouts, no quantization) — comparing it with onnxruntime pins
every layout conversion independently of quantization.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hwprune.errors import ShapeError
from hwprune.fixed import quantize, to_float
from hwprune.ir.graph import Graph, IOType, TensorKind
from hwprune.passes.dead_channels import eliminate_dead_channels
from hwprune.passes.fold import fold_constants_into_layers
from hwprune.passes.layout import assign_layouts, fold_reorders_into_dense, insert_stream_clones
from hwprune.passes.types import assign_types
from hwprune.ops.quant import fuse_relu_quantize, keep_exact_before_quantize
from hwprune.precision import PrecisionConfig

log = logging.getLogger(__name__)


def compile_graph(model: Any, precision: PrecisionConfig | None = None, io_type: IOType | str = IOType.PARALLEL,
                  name: str | None = None) -> Graph:
    """ONNX file/proto or torch module (with `example_input`) -> typed IR ready for export."""
    from hwprune.frontend.onnx_import import import_onnx

    g = import_onnx(model, name=name)
    g.io_type = IOType(io_type)
    fold_constants_into_layers(g)
    eliminate_dead_channels(g)
    assign_layouts(g)
    fold_reorders_into_dense(g)
    insert_stream_clones(g)
    assign_types(g, precision or PrecisionConfig())
    keep_exact_before_quantize(g)
    fuse_relu_quantize(g)
    return g


def check_inputs(g: Graph, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    if len(inputs) != len(g.inputs):
        raise ShapeError(f"the model has {len(g.inputs)} input(s) ({', '.join(g.inputs)}); got {len(inputs)} array(s)")
    out = []
    for name, x in zip(g.inputs, inputs):
        t = g.tensor(name)
        x = np.asarray(x)
        if x.ndim == len(t.shape) and len(t.shape) > 0 and x.shape == t.shape:
            raise ShapeError(f"input '{name}': got shape {x.shape}, which lacks the batch axis; use shape (N, {', '.join(map(str, t.shape))})")
        if x.ndim != len(t.shape) + 1 or tuple(x.shape[1:]) != t.shape:
            want = ", ".join(map(str, t.shape))
            raise ShapeError(f"input '{name}': got shape {x.shape}; expected (N, {want}) with the batch first")
        if t.kind == TensorKind.INDEX:
            if not np.issubdtype(x.dtype, np.integer):
                raise ShapeError(f"input '{name}' holds token ids: expected an integer array, got {x.dtype}")
            if t.index_range and (x.min(initial=0) < 0 or x.max(initial=0) >= t.index_range):
                raise ShapeError(f"input '{name}': token ids must lie in [0, {t.index_range}); got [{x.min()}, {x.max()}]")
        elif not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise ShapeError(f"input '{name}': expected a numeric array, got {x.dtype}")
        out.append(x)
    return out


def input_raw(g: Graph, name: str, x: np.ndarray) -> np.ndarray:
    """Logical float batch -> physical raw integers as the hardware receives them."""
    t = g.tensor(name)
    phys = t.to_physical(np.asarray(x))
    if t.kind == TensorKind.INDEX:
        return phys.astype(np.int64)
    assert t.type is not None
    return quantize(phys.astype(np.float64), t.type)


def output_float(g: Graph, name: str, raw: np.ndarray) -> np.ndarray:
    t = g.tensor(name)
    assert t.type is not None
    return t.to_logical(to_float(raw, t.type))


@dataclass
class FixedTrace:
    values: dict[str, np.ndarray] = field(default_factory=dict)  # raw, physical
    saturated: dict[str, int] = field(default_factory=dict)  # layer name -> overflowing elements


def trace_fixed(g: Graph, inputs: Sequence[np.ndarray], count_saturation: bool = False) -> FixedTrace:
    inputs = check_inputs(g, inputs)
    tr = FixedTrace()
    for name, x in zip(g.inputs, inputs):
        tr.values[name] = input_raw(g, name, x)
    for layer in g.layers:
        xs = [tr.values[i] for i in layer.inputs]
        _store(tr.values, layer, layer.fixed_forward(g, xs))
        if count_saturation:
            n = layer.saturation(g, xs)
            if n:
                tr.saturated[layer.name] = n
    return tr


def run_fixed(g: Graph, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Bit-exact fixed-point reference: logical-layout float outputs (exact multiples of the lsb)."""
    tr = trace_fixed(g, inputs)
    return [output_float(g, o, tr.values[o]) for o in g.outputs]


def saturation_report(g: Graph, inputs: Sequence[np.ndarray]) -> dict[str, int]:
    """Per layer, how many output elements saturated/wrapped on this data."""
    sat = trace_fixed(g, inputs, count_saturation=True).saturated
    for layer, n in sat.items():
        log.warning("layer %s: %d output values overflowed its type on the given data; widen its integer bits", layer, n)
    return sat


def _float_values(g: Graph, inputs: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    inputs = check_inputs(g, inputs)
    vals: dict[str, np.ndarray] = {}
    for name, x in zip(g.inputs, inputs):
        t = g.tensor(name)
        phys = t.to_physical(np.asarray(x))
        vals[name] = phys.astype(np.int64) if t.kind == TensorKind.INDEX else phys.astype(np.float64)
    for layer in g.layers:
        _store(vals, layer, layer.float_forward(g, [vals[i] for i in layer.inputs]))
    return vals


def run_float(g: Graph, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The IR's float semantics (no quantization), logical-layout outputs."""
    vals = _float_values(g, inputs)
    return [g.tensor(o).to_logical(vals[o]) for o in g.outputs]


def error_bounds(g: Graph, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Elementwise bound on |fixed - float| implied by the types, propagated layer by layer
    (first order, using the float activations). Valid while no value overflows its type."""
    vals = _float_values(g, inputs)
    errs: dict[str, np.ndarray] = {}
    for name in g.inputs:
        t = g.tensor(name)
        if t.kind == TensorKind.INDEX:
            errs[name] = np.zeros(vals[name].shape)
        else:
            assert t.type is not None
            errs[name] = np.abs(to_float(quantize(vals[name], t.type), t.type) - vals[name])
    for layer in g.layers:
        e = layer.error_bound(g, [vals[i] for i in layer.inputs], [errs[i] for i in layer.inputs])
        for out, ek in zip(layer.outputs, e if isinstance(e, list) else [e]):
            errs[out] = np.broadcast_to(ek, vals[out].shape)
    return [g.tensor(o).to_logical(np.asarray(errs[o])) for o in g.outputs]


def _store(values: dict[str, np.ndarray], layer: Any, result: Any) -> None:
    """Layers return one array, or a list with one array per output (Clone)."""
    for out, v in zip(layer.outputs, result if isinstance(result, list) else [result]):
        values[out] = v


def run_onnx(model: str | Path | Any, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The float engine: onnxruntime on the original model (an independent reference)."""
    import onnxruntime as ort

    from hwprune.frontend.onnx_import import load_onnx

    proto = load_onnx(model)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feeds = {}
    for i, x in zip(sess.get_inputs(), inputs):
        dt = np.int64 if "int64" in i.type else np.int32 if "int32" in i.type else np.float32
        feeds[i.name] = np.asarray(x).astype(dt)
    return [np.asarray(o) for o in sess.run(None, feeds)]


def clone(g: Graph) -> Graph:
    return copy.deepcopy(g)
