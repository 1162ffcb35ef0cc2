"""Layout ops: Flatten/Reshape/Squeeze/Unsqueeze/Transpose, and the data reorder the layout
pass inserts.

* `Reshape` never moves data: the layout pass guarantees its input is already in the order
  its output needs (a Transpose only relabels axes; Squeeze/Unsqueeze only add or remove unit
  axes). In io_parallel it aliases its input array; in io_stream it re-packs words when the
  word size changes.
* `Reorder` really moves data (e.g. channels-last conv output flattened in channels-first
  order for a Dense): an index permutation in io_parallel, a full-tensor buffer in io_stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from hwprune.ir.channels import ConstantChannels, through_reshape
from hwprune.ir.graph import Graph, IOType, Layer
from hwprune.ops.base import (
    CostContext, HlsBinding, HlsContext, LayerCost, OpMixin, ProcessModel, Step, WeightArray, onnx_op, output_delay,
    process, render,
)
from hwprune.sim import resources as hw
from hwprune.fixed import FixedType

MAX_RANK = 4


def _non_unit(shape: tuple[int, ...]) -> list[int]:
    return [d for d in shape if d != 1]


@dataclass
class Reshape(OpMixin, Layer):
    # Logical axis permutation when imported from an ONNX Transpose (None for reshapes).
    transpose: tuple[int, ...] | None = None
    # Set when the consumers were rewritten to read the input's physical order as is (a
    # flatten feeding Dense layers whose weight rows were permuted instead of the data).
    input_order_free: bool = False

    op_type: ClassVar[str] = "Reshape"
    aliases_in_parallel: ClassVar[bool] = True

    def _keeps_order(self, g: Graph) -> bool:
        return _non_unit(g.tensor(self.inputs[0]).shape) == _non_unit(g.tensor(self.output).shape)

    def required_perms(self, g: Graph) -> list[tuple[int, ...] | None]:
        t = g.tensor(self.inputs[0])
        if self.transpose is not None or self.input_order_free or self._keeps_order(g):
            return [None]
        return [tuple(range(t.rank))]  # a true reshape reads logical row-major order

    def output_perm(self, g: Graph) -> tuple[int, ...]:
        src, dst = g.tensor(self.inputs[0]), g.tensor(self.output)
        if self.transpose is not None:
            inv = np.argsort(self.transpose)
            return tuple(int(inv[q]) for q in src.perm)
        if self._keeps_order(g):
            # Map the i-th non-unit input axis to the i-th non-unit output axis; unit axes
            # go outermost so the stream word stays the real innermost axis.
            in_nu = [a for a in range(src.rank) if src.shape[a] != 1]
            out_nu = [a for a in range(dst.rank) if dst.shape[a] != 1]
            to_out = dict(zip(in_nu, out_nu))
            phys = [to_out[a] for a in src.perm if a in to_out]
            units = [a for a in range(dst.rank) if dst.shape[a] == 1]
            return tuple(units + phys)
        return tuple(range(dst.rank))

    def carry_constant_channels(self, g: Graph, port: int, cc: ConstantChannels) -> ConstantChannels | None:
        if self.transpose is not None:
            return ConstantChannels(list(self.transpose).index(cc.axis), cc.index, cc.value)
        return through_reshape(g.tensor(self.inputs[0]).shape, g.tensor(self.output).shape, cc)

    def infer_types(self, g: Graph, prec: Any) -> None:
        g.tensor(self.output).type = g.tensor(self.inputs[0]).type

    def float_forward(self, g: Graph, xs: list[np.ndarray]) -> np.ndarray:
        return xs[0].reshape((xs[0].shape[0], *g.tensor(self.output).physical_shape))

    fixed_forward = float_forward

    def error_bound(self, g: Graph, xs: list[np.ndarray], errs: list[np.ndarray]) -> np.ndarray:
        return self.float_forward(g, errs)

    def cost(self, ctx: CostContext) -> LayerCost:
        src, dst = ctx.graph.tensor(self.inputs[0]), ctx.graph.tensor(self.output)
        if ctx.io_type == IOType.PARALLEL or src.word == dst.word:
            return LayerCost(latency=0, ii=0, note="alias")
        words = max(src.words, dst.words)
        t = src.type
        return LayerCost(latency=words + 1, ii=words, ff=max(src.word, dst.word) * (t.width if t else 16),
                         note="stream repack")

    def stream_process(self, ctx: CostContext, cost: LayerCost) -> ProcessModel:
        """reorder.h repack: one trip per cycle, reading a word while fewer than out_word
        elements wait and writing one when out_word are there. (An aliasing reshape has no
        process: the simulator joins its two tensors into one FIFO.)"""
        src, dst = ctx.graph.tensor(self.inputs[0]), ctx.graph.tensor(self.output)
        d = output_delay(cost)
        steps, have = [], 0
        for _ in range(max(ctx.words(self.inputs[0]), ctx.words(self.output))):
            read = have < dst.word
            have += src.word if read else 0
            write = have >= dst.word
            have -= dst.word if write else 0
            steps.append(Step(1, 1, (0,) if read else (), (0,) if write else (), d))
        return process(*steps)

    def is_alias(self, g: Graph, io_type: IOType) -> bool:
        src, dst = g.tensor(self.inputs[0]), g.tensor(self.output)
        return io_type == IOType.PARALLEL or src.word == dst.word

    def hls(self, ctx: HlsContext) -> HlsBinding:
        g = ctx.graph
        src, dst = g.tensor(self.inputs[0]), g.tensor(self.output)
        L = dict(cfg=f"{ctx.lname(self)}_config", size=src.size, in_word=src.word, out_word=dst.word,
                 in_t=ctx.ctype(self.inputs[0]), out_t=ctx.ctype(self.output),
                 x=ctx.var(self.inputs[0]), y=ctx.var(self.output))
        return HlsBinding("hwprune/reorder.h", render("reorder.j2", "repack_config", L=L),
                          render("reorder.j2", "repack_call", L=L))


@dataclass
class Reorder(OpMixin, Layer):
    """Physical transpose between two layouts of the same logical tensor."""

    op_type: ClassVar[str] = "Reorder"

    def required_perms(self, g: Graph) -> list[tuple[int, ...] | None]:
        return [None]

    def output_perm(self, g: Graph) -> tuple[int, ...]:
        return g.tensor(self.output).perm

    def infer_types(self, g: Graph, prec: Any) -> None:
        g.tensor(self.output).type = g.tensor(self.inputs[0]).type

    def source_index(self, g: Graph) -> np.ndarray:
        """For each output element (physical order), the flat physical index it reads."""
        src, dst = g.tensor(self.inputs[0]), g.tensor(self.output)
        idx = np.arange(src.size).reshape(src.physical_shape)
        logical = np.transpose(idx, np.argsort(src.perm))
        return np.ascontiguousarray(np.transpose(logical, dst.perm)).reshape(-1)

    def float_forward(self, g: Graph, xs: list[np.ndarray]) -> np.ndarray:
        b = xs[0].shape[0]
        flat = xs[0].reshape(b, -1)[:, self.source_index(g)]
        return flat.reshape((b, *g.tensor(self.output).physical_shape))

    fixed_forward = float_forward

    def error_bound(self, g: Graph, xs: list[np.ndarray], errs: list[np.ndarray]) -> np.ndarray:
        return self.float_forward(g, errs)

    def cost(self, ctx: CostContext) -> LayerCost:
        src = ctx.graph.tensor(self.inputs[0])
        bits = src.type.width if src.type else 16
        if ctx.io_type == IOType.PARALLEL:
            return LayerCost(latency=0, ii=1, note="wires")
        # Stream: one buffer filled (a word per cycle), then emitted in the new order (an element
        # per cycle from the single-ported buffer); the next sample's fill waits for the emit.
        mem = hw.memory_cost(src.size, bits, 1)
        ii = src.words + src.size
        return LayerCost(latency=ii + 2, ii=ii, bram18=mem.bram18, uram=mem.uram, lut=mem.lut,
                         note="full-tensor buffer")

    def stream_process(self, ctx: CostContext, cost: LayerCost) -> ProcessModel:
        """reorder.h: fill the buffer a word per cycle, then emit a word per out_word cycles."""
        out_word = ctx.graph.tensor(self.output).word
        return process(Step(ctx.words(self.inputs[0]), 1, reads=(0,)),
                       Step(ctx.words(self.output), out_word, writes=(0,), latency=out_word - 1 + output_delay(cost)))

    def hls(self, ctx: HlsContext) -> HlsBinding:
        g = ctx.graph
        src, dst = g.tensor(self.inputs[0]), g.tensor(self.output)
        idx = self.source_index(g)
        bits = max(int(np.ceil(np.log2(max(src.size, 2)))) + 1, 2)
        lname = ctx.lname(self)
        L = dict(cfg=f"{lname}_config", size=src.size, in_word=src.word, out_word=dst.word, index_bits=bits,
                 in_t=ctx.ctype(self.inputs[0]), out_t=ctx.ctype(self.output),
                 x=ctx.var(self.inputs[0]), y=ctx.var(self.output), idx=f"{lname}_src")
        return HlsBinding("hwprune/reorder.h", render("reorder.j2", "reorder_config", L=L),
                          render("reorder.j2", "reorder_call", L=L),
                          weights=[WeightArray(f"{lname}_src", idx.astype(np.int64), FixedType(bits, bits, True))])


@dataclass
class Clone(OpMixin, Layer):
    """io_stream only: a stream can be read once, so a tensor with two readers is copied into
    two streams (chains of clones serve more readers)."""

    op_type: ClassVar[str] = "Clone"

    def required_perms(self, g: Graph) -> list[tuple[int, ...] | None]:
        return [None]

    def output_perm(self, g: Graph) -> tuple[int, ...]:
        return g.tensor(self.inputs[0]).perm

    def infer_types(self, g: Graph, prec: Any) -> None:
        for o in self.outputs:
            g.tensor(o).type = g.tensor(self.inputs[0]).type

    def float_forward(self, g: Graph, xs: list[np.ndarray]) -> list[np.ndarray]:  # type: ignore[override]
        return [xs[0] for _ in self.outputs]

    fixed_forward = float_forward

    def error_bound(self, g: Graph, xs: list[np.ndarray], errs: list[np.ndarray]) -> list[np.ndarray]:  # type: ignore[override]
        return [errs[0] for _ in self.outputs]

    def cost(self, ctx: CostContext) -> LayerCost:
        t = ctx.graph.tensor(self.inputs[0])
        return LayerCost(latency=t.words + 1, ii=t.words, ff=t.word * (t.type.width if t.type else 16))

    def stream_process(self, ctx: CostContext, cost: LayerCost) -> ProcessModel:
        """reorder.h clone: each trip reads a word and writes it to both outputs, so a full
        output FIFO stops the other reader too."""
        return process(Step(ctx.words(self.inputs[0]), 1, (0,), (0, 1), output_delay(cost)))

    def hls(self, ctx: HlsContext) -> HlsBinding:
        t = ctx.graph.tensor(self.inputs[0])
        L = dict(cfg=f"{ctx.lname(self)}_config", size=t.size, word=t.word, in_t=ctx.ctype(self.inputs[0]),
                 out_t=ctx.ctype(self.outputs[0]), x=ctx.var(self.inputs[0]), y0=ctx.var(self.outputs[0]),
                 y1=ctx.var(self.outputs[1]))
        return HlsBinding("hwprune/reorder.h", render("reorder.j2", "clone_config", L=L),
                          render("reorder.j2", "clone_call", L=L))


@dataclass
class Slice(OpMixin, Layer):
    """A contiguous range [start, stop) of one logical axis (ONNX Slice/Split, and Gather of an
    activation by a constant index, followed by a Reshape dropping the axis). Real data
    movement, but no buffer:
    io_parallel wires the selected elements; io_stream passes the selected words on (slicing an
    outer axis) or cuts every word (slicing the innermost physical axis), one word per cycle."""

    axis: int = 0
    start: int = 0
    stop: int = 0

    op_type: ClassVar[str] = "Slice"

    def required_perms(self, g: Graph) -> list[tuple[int, ...] | None]:
        return [None]

    def output_perm(self, g: Graph) -> tuple[int, ...]:
        return g.tensor(self.inputs[0]).perm

    def infer_types(self, g: Graph, prec: Any) -> None:
        g.tensor(self.output).type = g.tensor(self.inputs[0]).type

    def source_index(self, g: Graph) -> np.ndarray:
        """For each output element (physical order), the flat physical input index it reads."""
        src, dst = g.tensor(self.inputs[0]), g.tensor(self.output)
        logical = np.transpose(np.arange(src.size).reshape(src.physical_shape), np.argsort(src.perm))
        part = np.take(logical, np.arange(self.start, self.stop), axis=self.axis)
        return np.ascontiguousarray(np.transpose(part, dst.perm)).reshape(-1)

    def _stream_plan(self, g: Graph) -> tuple[np.ndarray, int]:
        """io_stream: which input words are kept, and the element offset cut from each kept word."""
        src, dst = g.tensor(self.inputs[0]), g.tensor(self.output)
        idx = self.source_index(g).reshape(-1, max(dst.word, 1))
        keep = np.zeros(src.words, dtype=np.int64)
        keep[idx[:, 0] // src.word] = 1
        offset = int(idx[0, 0] % src.word) if idx.size else 0
        expect = (np.flatnonzero(keep)[:, None] * src.word + offset + np.arange(dst.word)[None, :])
        if expect.shape != idx.shape or not (expect == idx).all():
            raise AssertionError(f"slice {self.name}: the kept elements do not form whole words")
        return keep, offset

    def float_forward(self, g: Graph, xs: list[np.ndarray]) -> np.ndarray:
        b = xs[0].shape[0]
        flat = xs[0].reshape(b, -1)[:, self.source_index(g)]
        return flat.reshape((b, *g.tensor(self.output).physical_shape))

    fixed_forward = float_forward

    def error_bound(self, g: Graph, xs: list[np.ndarray], errs: list[np.ndarray]) -> np.ndarray:
        return self.float_forward(g, errs)

    def cost(self, ctx: CostContext) -> LayerCost:
        src = ctx.graph.tensor(self.inputs[0])
        if ctx.io_type == IOType.PARALLEL:
            return LayerCost(latency=0, ii=1, note="wires")
        words = ctx.words(self.inputs[0])
        return LayerCost(latency=words + 1, ii=words, ff=src.word * (src.type.width if src.type else 16), note="word select")

    def stream_process(self, ctx: CostContext, cost: LayerCost) -> ProcessModel:
        """reorder.h slice: one trip per input word, writing the kept ones."""
        keep, _ = self._stream_plan(ctx.graph)
        d = output_delay(cost)
        return process(*(Step(1, 1, (0,), (0,) if k else (), d) for k in keep))

    def hls(self, ctx: HlsContext) -> HlsBinding:
        g = ctx.graph
        src, dst = g.tensor(self.inputs[0]), g.tensor(self.output)
        lname = ctx.lname(self)
        L = dict(cfg=f"{lname}_config", in_size=src.size, out_size=dst.size, in_word=src.word, out_word=dst.word,
                 in_t=ctx.ctype(self.inputs[0]), out_t=ctx.ctype(self.output),
                 x=ctx.var(self.inputs[0]), y=ctx.var(self.output), rom=f"{lname}_sel")
        if ctx.io_type == IOType.PARALLEL:
            idx = self.source_index(g)
            bits = max(int(np.ceil(np.log2(max(src.size, 2)))) + 1, 2)
            L.update(index_bits=bits, offset=0)
            rom = WeightArray(L["rom"], idx.astype(np.int64), FixedType(bits, bits, True))
        else:
            keep, offset = self._stream_plan(g)
            L.update(index_bits=2, offset=offset)
            rom = WeightArray(L["rom"], keep, FixedType(2, 2, True))
        return HlsBinding("hwprune/reorder.h", render("reorder.j2", "slice_config", L=L),
                          render("reorder.j2", "slice_call", L=L), weights=[rom])


# ---------------------------------------------------------------------- ONNX import

def _axes(ctx: Any, node: Any, rank: int) -> list[int] | None:
    from hwprune.frontend.onnx_import import attrs

    a = attrs(node).get("axes")
    if a is None and len(node.input) > 1 and node.input[1]:
        c = ctx.const(node.input[1])
        if c is None:
            raise ctx.error(node, "axes must be constant")
        a = [int(v) for v in np.asarray(c).reshape(-1)]
    if a is None:
        return None
    return [int(x) + rank if int(x) < 0 else int(x) for x in a]


def _add_reshape(ctx: Any, node: Any, out_shape: tuple[int, ...], transpose: tuple[int, ...] | None = None) -> None:
    if int(np.prod(out_shape, dtype=np.int64)) != int(np.prod(ctx.shape(node.input[0]), dtype=np.int64)):
        raise ctx.error(node, f"cannot reshape {ctx.shape(node.input[0])} to {out_shape} per sample")
    if len(out_shape) > MAX_RANK:
        raise ctx.error(node, f"tensors of rank {len(out_shape) + 1} (with batch) are not supported; at most {MAX_RANK + 1}")
    ctx.add(Reshape(ctx.layer_name(node), [node.input[0]], [node.output[0]], transpose=transpose), out_shape)


@onnx_op("Flatten")
def _import_flatten(ctx: Any, node: Any) -> None:
    from hwprune.frontend.onnx_import import attrs

    axis = int(attrs(node).get("axis", 1))
    shape = ctx.shape(node.input[0])
    if axis < 0:
        axis += len(shape) + 1
    if axis != 1:
        raise ctx.error(node, f"Flatten with axis={axis} would merge the batch axis; only axis=1 is supported")
    _add_reshape(ctx, node, (int(np.prod(shape, dtype=np.int64)),))


@onnx_op("Reshape")
def _import_reshape(ctx: Any, node: Any) -> None:
    target = ctx.const(node.input[1])
    if target is None:
        raise ctx.error(node, "the target shape must be constant")
    target = [int(v) for v in np.asarray(target).reshape(-1)]
    shape = ctx.shape(node.input[0])
    full = (1, *shape)
    # ONNX: 0 copies the input dimension; -1 is inferred. Axis 0 is the batch and must stay.
    dims = [full[i] if (v == 0 and i < len(full)) else v for i, v in enumerate(target)]
    if not dims or dims[0] not in (-1, 1):
        raise ctx.error(node, f"reshape to {target} changes the batch axis; keep axis 0 as the batch")
    per = dims[1:]
    if per.count(-1) > 1:
        raise ctx.error(node, f"reshape to {target} has more than one -1")
    size = int(np.prod(shape, dtype=np.int64))
    if -1 in per:
        known = int(np.prod([d for d in per if d != -1], dtype=np.int64))
        per[per.index(-1)] = size // max(known, 1)
    if dims[0] == -1 and -1 not in dims[1:] and int(np.prod(per, dtype=np.int64)) != size:
        raise ctx.error(node, f"reshape to {target} moves data across the batch axis")
    _add_reshape(ctx, node, tuple(per))


@onnx_op("Squeeze")
def _import_squeeze(ctx: Any, node: Any) -> None:
    shape = ctx.shape(node.input[0])
    axes = _axes(ctx, node, len(shape) + 1)
    if axes is None:
        axes = [i + 1 for i, d in enumerate(shape) if d == 1]
    if 0 in axes:
        raise ctx.error(node, "squeezing the batch axis is not supported")
    for a in axes:
        if shape[a - 1] != 1:
            raise ctx.error(node, f"cannot squeeze axis {a} of size {shape[a - 1]}")
    _add_reshape(ctx, node, tuple(d for i, d in enumerate(shape) if i + 1 not in axes))


@onnx_op("Unsqueeze")
def _import_unsqueeze(ctx: Any, node: Any) -> None:
    shape = list(ctx.shape(node.input[0]))
    axes = _axes(ctx, node, 0)  # normalised below against the output rank
    if axes is None:
        raise ctx.error(node, "Unsqueeze needs axes")
    out_rank = len(shape) + 1 + len(axes)
    axes = sorted(a + out_rank if a < 0 else a for a in axes)
    if 0 in axes:
        raise ctx.error(node, "unsqueezing before the batch axis is not supported")
    full = [None] + shape
    for a in axes:
        full.insert(a, 1)
    _add_reshape(ctx, node, tuple(int(d) for d in full[1:]))


@onnx_op("Transpose")
def _import_transpose(ctx: Any, node: Any) -> None:
    from hwprune.frontend.onnx_import import attrs

    shape = ctx.shape(node.input[0])
    perm = attrs(node).get("perm")
    perm = list(range(len(shape), -1, -1)) if perm is None else [int(p) for p in perm]
    if perm[0] != 0:
        raise ctx.error(node, f"transpose perm {perm} moves the batch axis; axis 0 must stay the batch")
    p = tuple(q - 1 for q in perm[1:])
    ctx.add(Reshape(ctx.layer_name(node), [node.input[0]], [node.output[0]], transpose=p),
            tuple(shape[q] for q in p))


def _add_slice(ctx: Any, node: Any, out: str, axis: int, start: int, stop: int, squeeze: bool = False) -> None:
    shape = list(ctx.shape(node.input[0]))
    if not 0 <= start < stop <= shape[axis]:
        raise ctx.error(node, f"the range [{start}, {stop}) of axis {axis + 1} is empty or outside its size {shape[axis]}")
    shape[axis] = stop - start
    name = ctx.layer_name(node) if out == node.output[0] else ctx.graph.unique_name(f"{node.name or node.op_type}_{out}")
    sliced = ctx.graph.unique_name(f"{out}_slice") if squeeze else out
    ctx.add(Slice(name, [node.input[0]], [sliced], axis=axis, start=start, stop=stop), tuple(shape))
    if squeeze:  # the selected unit axis goes: a relabelling (or a stream repack)
        del shape[axis]
        ctx.add(Reshape(ctx.graph.unique_name(f"{name}_squeeze"), [sliced], [out]), tuple(shape))


def _slice_axis(ctx: Any, node: Any, axis: int) -> int:
    rank = len(ctx.shape(node.input[0])) + 1
    axis = axis + rank if axis < 0 else axis
    if axis == 0 or not 0 < axis < rank:
        raise ctx.error(node, f"axis {axis} is the batch axis or out of range; slice a per-sample axis")
    return axis - 1


@onnx_op("Slice")
def _import_slice(ctx: Any, node: Any) -> None:
    vals = [ctx.const(i) if k < len(node.input) and node.input[k] else None for k, i in enumerate(list(node.input) + [""] * 4)][:5]
    if vals[1] is None or vals[2] is None or any(node.input[k] and vals[k] is None for k in range(3, len(node.input))):
        raise ctx.error(node, "starts, ends, axes and steps must be constant")
    starts, ends = np.asarray(vals[1]).reshape(-1), np.asarray(vals[2]).reshape(-1)
    axes = np.asarray(vals[3]).reshape(-1) if vals[3] is not None else np.arange(len(starts))
    steps = np.asarray(vals[4]).reshape(-1) if vals[4] is not None else np.ones(len(starts), np.int64)
    shape = ctx.shape(node.input[0])
    real = []
    for a, st, en, sp in zip(axes, starts, ends, steps):
        if int(sp) != 1:
            raise ctx.error(node, f"step {int(sp)}: only contiguous slices (step 1) are supported")
        ax = _slice_axis(ctx, node, int(a))
        n = shape[ax]
        st, en = int(np.clip(st + n if st < 0 else st, 0, n)), int(np.clip(en + n if en < 0 else en, 0, n))
        if (st, en) != (0, n):
            real.append((ax, st, en))
    if not real:
        ctx.alias(node.output[0], node.input[0])
        return
    if len(real) > 1:
        raise ctx.error(node, "a slice of several axes at once is not supported; slice one axis per node")
    _add_slice(ctx, node, node.output[0], *real[0])


@onnx_op("Split")
def _import_split(ctx: Any, node: Any) -> None:
    from hwprune.frontend.onnx_import import attrs

    at = attrs(node)
    ax = _slice_axis(ctx, node, int(at.get("axis", 0)))
    n = ctx.shape(node.input[0])[ax]
    sizes = ctx.const(node.input[1]) if len(node.input) > 1 and node.input[1] else at.get("split")
    if sizes is None:
        parts = len(node.output)
        chunk = -(-n // parts)
        sizes = [min(chunk, n - k * chunk) for k in range(parts)]
    sizes = [int(v) for v in np.asarray(sizes).reshape(-1)]
    if sum(sizes) != n or len(sizes) != len(node.output):
        raise ctx.error(node, f"split sizes {sizes} do not cover axis {ax + 1} of size {n}")
    start = 0
    for out, size in zip(node.output, sizes):
        _add_slice(ctx, node, out, ax, start, start + size)
        start += size


def import_gather_select(ctx: Any, node: Any) -> None:
    """Gather of an activation by a constant scalar index (or a run of consecutive indices)."""
    from hwprune.frontend.onnx_import import attrs

    idx = np.asarray(ctx.const(node.input[1]))
    ax = _slice_axis(ctx, node, int(attrs(node).get("axis", 0)))
    n = ctx.shape(node.input[0])[ax]
    flat = [int(v) + n if int(v) < 0 else int(v) for v in idx.reshape(-1)]
    if idx.ndim > 1 or not flat or flat != list(range(flat[0], flat[0] + len(flat))):
        raise ctx.error(node, "selecting along an activation axis needs a scalar index or consecutive indices")
    _add_slice(ctx, node, node.output[0], ax, flat[0], flat[0] + len(flat), squeeze=idx.ndim == 0)
