"""The compile pipeline (model -> typed IR) and the numpy engines that run an IR.

    import_onnx -> fold (bias adds, batch norms) -> fold_scalar_scales (through data movement and products)
    -> eliminate_dead_channels -> assign_layouts -> fold_reorders_into_dense -> assign_types

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
from hwprune.passes.fold import fold_constants_into_layers, fold_scalar_scales
from hwprune.passes.layout import assign_layouts, fold_reorders_into_dense, insert_stream_clones
from hwprune.passes.types import assign_types
from hwprune.ops.quant import fuse_relu_quantize, keep_exact_before_quantize
from hwprune.precision import PrecisionConfig

log = logging.getLogger(__name__)


def compile_graph(model: Any, precision: PrecisionConfig | None = None, io_type: IOType | str = IOType.PARALLEL,
                  name: str | None = None, embedding_on_ps: bool = False) -> Graph:
    """ONNX file/proto or torch module (with `example_input`) -> typed IR ready for export.
    `embedding_on_ps`: the embedding lookups run on the host (passes/host_embedding.py)."""
    from hwprune.frontend.onnx_import import import_onnx

    g = import_onnx(model, name=name)
    g.io_type = IOType(io_type)
    fold_constants_into_layers(g)
    fold_scalar_scales(g)
    eliminate_dead_channels(g)
    assign_layouts(g)
    fold_reorders_into_dense(g)
    insert_stream_clones(g)
    assign_types(g, precision or PrecisionConfig())
    keep_exact_before_quantize(g)
    fuse_relu_quantize(g)
    if embedding_on_ps:
        from hwprune.passes.host_embedding import move_embeddings_to_host

        move_embeddings_to_host(g)
    return g


def check_inputs(g: Graph, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The model's inputs (`g.model_inputs`: token ids where the host does the lookup)."""
    names = g.model_inputs
    if len(inputs) != len(names):
        raise ShapeError(f"the model has {len(names)} input(s) ({', '.join(names)}); got {len(inputs)} array(s)")
    out = []
    for name, x in zip(names, inputs):
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
    return quantize(host_divide(phys, t.scale), t.type)


def accelerator_inputs_raw(g: Graph, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The model's input batches -> the accelerator's inputs (`g.inputs`) as physical raw
    integers: the host layers (an embedding on the ARM side) run first, in fixed point."""
    inputs = check_inputs(g, inputs)
    vals = {n: input_raw(g, n, x) for n, x in zip(g.model_inputs, inputs)}
    for layer in g.host_layers:
        _store(vals, layer, layer.fixed_forward(g, [vals[i] for i in layer.inputs]))
    return [vals[n] for n in g.inputs]


def host_divide(x: np.ndarray, scale: float) -> np.ndarray:
    """A graph input's value in the units of its type: x / scale, divided in float32 exactly as
    QONNX's Quant divides (so the integer codes the host sends are QONNX's); scale 1: x."""
    if scale == 1.0:
        return np.asarray(x, dtype=np.float64)
    return (np.asarray(x, dtype=np.float32) / np.float32(scale)).astype(np.float64)


def output_float(g: Graph, name: str, raw: np.ndarray) -> np.ndarray:
    t = g.tensor(name)
    assert t.type is not None
    y = to_float(raw, t.type)
    return t.to_logical(y * t.scale if t.scale != 1.0 else y)


@dataclass
class FixedTrace:
    values: dict[str, np.ndarray] = field(default_factory=dict)  # raw, physical
    saturated: dict[str, int] = field(default_factory=dict)  # layer name -> overflowing elements


def trace_fixed(g: Graph, inputs: Sequence[np.ndarray], count_saturation: bool = False) -> FixedTrace:
    inputs = check_inputs(g, inputs)
    tr = FixedTrace()
    for name, x in zip(g.model_inputs, inputs):
        tr.values[name] = input_raw(g, name, x)
    for layer in [*g.host_layers, *g.layers]:  # the host's lookups (embedding on the PS) first
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
    """Per layer, how many output elements saturated/wrapped on this data. Each is warned about
    once, naming the layer, its type, what its overflow mode did (wrap or saturate) and a type
    that holds the values seen (from the float semantics of the same inputs)."""
    sat = trace_fixed(g, inputs, count_saturation=True).saturated
    if not sat:
        return sat
    floats = _float_values(g, inputs)
    for name, n in sat.items():
        out = g.tensor(next(l for l in [*g.host_layers, *g.layers] if l.name == name).outputs[0])
        v = floats.get(out.name)
        log.warning("%s", overflow_message(name, out.type, n, 0 if v is None else int(v.size),
                                           None if v is None else float(np.max(np.abs(v), initial=0.0))))
    return sat


def overflow_message(layer: str, t: Any, n: int, total: int, max_abs: float | None) -> str:
    """One line: the layer, its type, what the overflow mode did, and the fix."""
    from hwprune.fixed import FixedType, Overflow, Rounding

    of = f"{n} of {total}" if total else f"{n}"
    if t is None:
        return f"layer {layer}: {of} output values overflowed its type on the given data; give it more integer bits"
    if t.overflow == Overflow.WRAP:
        what = ("WRAPPED AROUND (the type is AP_WRAP: a value beyond the range comes back with the wrong sign, which "
                "usually wrecks accuracy)")
    else:
        what = f"were clipped to its range ({t.overflow.value}, saturating)"
    need = t.integer + 1
    if max_abs is not None and max_abs > 0:
        need = int(np.floor(np.log2(max_abs))) + (2 if t.signed else 1) + 1  # one bit of margin
    d = max(need - t.integer, 1)
    fix = FixedType(t.width + d, t.integer + d, t.signed, Rounding.RND_CONV, Overflow.SAT)
    seen = f" (|values| up to {max_abs:.3g})" if max_abs else ""
    return (f"layer {layer}: {of} output values overflowed {t.cpp()} on the given data{seen} and {what}; fix: give it "
            f"'{fix.cpp()}' (--precision for every layer, or per layer in a --config YAML: layer_name: {{{layer}: {{result: "
            f"'{fix.cpp()}'}}}}, docs/precision.md)")


def _float_values(g: Graph, inputs: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    inputs = check_inputs(g, inputs)
    vals: dict[str, np.ndarray] = {}
    for name, x in zip(g.model_inputs, inputs):
        t = g.tensor(name)
        phys = t.to_physical(np.asarray(x))
        vals[name] = phys.astype(np.int64) if t.kind == TensorKind.INDEX else host_divide(phys, t.scale)
    for layer in [*g.host_layers, *g.layers]:
        _store(vals, layer, layer.float_forward(g, [vals[i] for i in layer.inputs]))
    return vals


def run_float(g: Graph, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The IR's float semantics (no quantization), logical-layout outputs."""
    vals = _float_values(g, inputs)
    return [g.tensor(o).to_logical(vals[o] * g.tensor(o).scale) for o in g.outputs]


def error_bounds(g: Graph, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Elementwise bound on |fixed - float| implied by the types, propagated layer by layer
    (first order, using the float activations). Valid while no value overflows its type."""
    vals = _float_values(g, inputs)
    errs: dict[str, np.ndarray] = {}
    for name in g.model_inputs:
        t = g.tensor(name)
        if t.kind == TensorKind.INDEX:
            errs[name] = np.zeros(vals[name].shape)
        else:
            assert t.type is not None
            errs[name] = np.abs(to_float(quantize(vals[name], t.type), t.type) - vals[name])
    for layer in [*g.host_layers, *g.layers]:
        e = layer.error_bound(g, [vals[i] for i in layer.inputs], [errs[i] for i in layer.inputs])
        for out, ek in zip(layer.outputs, e if isinstance(e, list) else [e]):
            # An unbounded input times a zero weight or slope (inf * 0) is NaN in first-order
            # arithmetic: nothing is known there, so the bound is infinite, never NaN.
            ek = np.asarray(ek, dtype=np.float64)
            errs[out] = np.broadcast_to(np.where(np.isnan(ek), np.inf, ek), vals[out].shape)
    return [g.tensor(o).to_logical(np.asarray(errs[o]) * g.tensor(o).scale) for o in g.outputs]


def _store(values: dict[str, np.ndarray], layer: Any, result: Any) -> None:
    """Layers return one array, or a list with one array per output (Clone)."""
    for out, v in zip(layer.outputs, result if isinstance(result, list) else [result]):
        values[out] = v


_ORT_DTYPES = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int16)": np.int16, "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8, "tensor(uint16)": np.uint16, "tensor(uint32)": np.uint32, "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
}


def _ort_message(e: BaseException) -> str:
    """onnxruntime's message on one line, without its "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT :" prefix."""
    import re

    text = " ".join(part.strip() for part in str(e).splitlines() if part.strip())
    text = re.sub(r"^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*[A-Z_]+\s*:\s*", "", text)
    # Drop the C++ source location and function signature onnxruntime puts in front of the reason.
    text = re.sub(r"Status Message:\s*", "", text)
    text = re.sub(r"\S*onnxruntime_src/\S+:\d+\s+\S+?\(.*?\)\s*(const\s*)?", "", text)
    return text.strip() or type(e).__name__


def run_onnx(model: str | Path | Any, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The float engine: onnxruntime on the original model (an independent reference; QONNX and
    FINN graphs: qonnx's executor, `_run_qonnx`). A model
    exported with a static batch (torch exports a batch of 1 unless told otherwise) runs on any
    batch, in chunks of its batch size; onnxruntime's errors are input errors (exit code 2)."""
    from hwprune.errors import HwpruneInputError
    from hwprune.frontend.onnx_import import load_onnx

    proto = load_onnx(model)
    if any(n.domain not in ("", "ai.onnx") for n in proto.graph.node):
        return _run_qonnx(proto, inputs)
    import onnxruntime as ort

    ort.set_default_logger_severity(4)  # errors are raised (and reported once), not also logged
    so = ort.SessionOptions()
    so.log_severity_level = 4
    ro = ort.RunOptions()
    ro.log_severity_level = 4
    try:
        sess = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise HwpruneInputError(f"onnxruntime cannot load the model: {_ort_message(e)}") from None
    specs = sess.get_inputs()
    xs = [np.asarray(x) for x in inputs]
    if len(xs) != len(specs):
        raise ShapeError(f"the model has {len(specs)} input(s) ({', '.join(i.name for i in specs)}); got {len(xs)} array(s)")
    feeds = {i.name: x.astype(_ORT_DTYPES.get(i.type, np.float32), copy=False) for i, x in zip(specs, xs)}
    n = xs[0].shape[0] if xs and xs[0].ndim else 0
    static = {i.shape[0] for i in specs if i.shape and isinstance(i.shape[0], int) and i.shape[0] > 0}
    if len(static) > 1:
        raise ShapeError(f"the model's inputs have different static batch sizes {sorted(static)}")
    chunk = static.pop() if static else None

    def run(f: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return [np.asarray(o) for o in sess.run(None, f, ro)]
        except Exception as e:
            raise HwpruneInputError(f"onnxruntime could not run the model: {_ort_message(e)}") from None

    if chunk is None or n == chunk or n == 0:
        return run(feeds)
    # A static batch: run `chunk` samples at a time (the last chunk padded with its last sample).
    parts: list[list[np.ndarray]] = []
    for start in range(0, n, chunk):
        f = {}
        for k, v in feeds.items():
            piece = v[start:start + chunk]
            if piece.shape[0] < chunk:
                piece = np.concatenate([piece, np.repeat(piece[-1:], chunk - piece.shape[0], axis=0)])
            f[k] = piece
        take = min(chunk, n - start)
        parts.append([o[:take] for o in run(f)])
    return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]


def _run_qonnx(proto: Any, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The float engine for QONNX/FINN graphs (Quant, MultiThreshold: ops onnxruntime does not
    have): qonnx's own executor (qonnx.core.onnx_exec) on its cleaned-up model, one sample at
    a time (it needs concrete shapes)."""
    import warnings

    import onnx

    from hwprune.errors import HwpruneInputError

    m = onnx.ModelProto()
    m.CopyFrom(proto)
    for vi in (*m.graph.input, *m.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].ClearField("dim_param")
            dims[0].dim_value = 1
    init = {i.name for i in m.graph.initializer}
    n_in = sum(vi.name not in init for vi in m.graph.input)
    xs = [np.asarray(x) for x in inputs]
    if len(xs) != n_in:
        raise ShapeError(f"the model has {n_in} input(s); got {len(xs)} array(s)")
    try:
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.core.onnx_exec import execute_onnx
        from qonnx.util.cleanup import cleanup_model

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # qonnx warns about the old-style domains it renames
            mw = cleanup_model(ModelWrapper(m))
            # The clean-up renames the graph's inputs and outputs (global_in, global_out...).
            kept = {i.name for i in mw.graph.initializer}
            specs = [vi for vi in mw.graph.input if vi.name not in kept]
            outs = [o.name for o in mw.graph.output]
            dtypes = [np.int64 if vi.type.tensor_type.elem_type == onnx.TensorProto.INT64 else np.float32 for vi in specs]
            per_sample = [execute_onnx(mw, {vi.name: x[k:k + 1].astype(dt) for vi, x, dt in zip(specs, xs, dtypes)})
                          for k in range(xs[0].shape[0])]
    except ImportError:
        raise HwpruneInputError("the float engine needs qonnx to run a QONNX model (pip install qonnx)") from None
    except Exception as e:  # qonnx raises many unrelated types on a graph it cannot run
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise HwpruneInputError(f"qonnx could not run the model: {first}") from None
    return [np.concatenate([np.asarray(r[o]) for r in per_sample]) for o in outs]


def clone(g: Graph) -> Graph:
    return copy.deepcopy(g)
