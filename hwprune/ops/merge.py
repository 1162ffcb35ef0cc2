"""Merges of two or more tensors: elementwise Add and Concat.

Add: the exact sum of the inputs (aligned to the finest fraction) rounded once into the
output type. Concat: each input assigned to the output type, placed along one axis.
An ONNX Add with a constant operand is a bias: folded into the producing Dense/Conv, or
imported as a per-channel ScaleShift (see batchnorm.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from hwprune.fixed import MAX_WIDTH, FixedType, exact_ints
from hwprune.ir.channels import ConstantChannels
from hwprune.ir.graph import Graph, IOType, Layer
from hwprune.ops.base import (
    CostContext, HlsBinding, HlsContext, LayerCost, OpMixin, ProcessModel, Step, onnx_op, out_of_range, output_delay,
    process, render, requant, round_error, type_bits,
)
from hwprune.sim import resources as hw


@dataclass
class Add(OpMixin, Layer):
    op_type: ClassVar[str] = "Add"

    def required_perms(self, g: Graph) -> list[tuple[int, ...] | None]:
        first = g.tensor(self.inputs[0]).perm
        return [None] + [first] * (len(self.inputs) - 1)

    def output_perm(self, g: Graph) -> tuple[int, ...]:
        return g.tensor(self.inputs[0]).perm

    def infer_types(self, g: Graph, prec: Any) -> None:
        from hwprune.ops.quant import dictated_type, explicit_result, sum_type

        # A residual add of tensors whose exact types QONNX dictates is exact (QONNX adds in
        # float): the smallest type holding the sum, unless this layer is configured explicitly.
        dictated = [dictated_type(g, i) for i in self.inputs]
        if explicit_result(prec, self.name, self.op_type) is None and all(t is not None for t in dictated):
            g.tensor(self.output).type = sum_type(dictated)  # type: ignore[arg-type]
            return
        g.tensor(self.output).type = prec.resolve(self.name, self.op_type).result
        ts = [g.tensor(i).type for i in self.inputs]
        width = max(t.integer for t in ts) + 2 + max(t.frac for t in ts)  # the exact sum's type in C++
        if width > MAX_WIDTH:
            from hwprune.errors import ConfigError

            raise ConfigError(f"layer '{self.name}' (Add): the exact sum of {' and '.join(map(str, ts))} needs {width} bits, "
                              f"more than ap_fixed's {MAX_WIDTH}; give the inputs closer binary points")

    def _frac(self, g: Graph) -> int:
        return max(g.tensor(i).type.frac for i in self.inputs)

    def _sum(self, g: Graph, xs: list[np.ndarray]) -> np.ndarray:
        f = self._frac(g)
        ts = [g.tensor(i).type for i in self.inputs]
        bits = max(type_bits(t) + f - t.frac for t in ts) + len(ts)
        return sum(exact_ints(x, bits) << (f - t.frac) for t, x in zip(ts, xs))

    def float_forward(self, g: Graph, xs: list[np.ndarray]) -> np.ndarray:
        return sum(xs)

    def fixed_forward(self, g: Graph, xs: list[np.ndarray]) -> np.ndarray:
        return requant(self._sum(g, xs), self._frac(g), g.tensor(self.output).type)

    def saturation(self, g: Graph, xs: list[np.ndarray]) -> int:
        return out_of_range(self._sum(g, xs), self._frac(g), g.tensor(self.output).type)

    def error_bound(self, g: Graph, xs: list[np.ndarray], errs: list[np.ndarray]) -> np.ndarray:
        return sum(errs) + round_error(g.tensor(self.output).type)

    def cost(self, ctx: CostContext) -> LayerCost:
        t = ctx.graph.tensor(self.output)
        bits = max(ctx.graph.tensor(i).type.width for i in self.inputs) + 1
        if ctx.io_type == IOType.PARALLEL:
            return LayerCost(latency=1, ii=1, lut=t.size * hw.lut_per_adder(bits) * (len(self.inputs) - 1),
                             ff=t.size * hw.ff_per_register(t.type.width))
        return LayerCost(latency=t.words + 1, ii=t.words, lut=t.word * hw.lut_per_adder(bits) * (len(self.inputs) - 1),
                         ff=t.word * hw.ff_per_register(t.type.width))

    def stream_process(self, ctx: CostContext, cost: LayerCost) -> ProcessModel:
        """merge.h: each trip reads one word of each input and writes their sum, so both inputs
        advance in lockstep (the shorter branch's FIFO must hold the other branch's lag)."""
        return process(Step(ctx.words(self.output), 1, tuple(range(len(self.inputs))), (0,), output_delay(cost)))

    def hls(self, ctx: HlsContext) -> HlsBinding:
        t = ctx.graph.tensor(self.output)
        if len(self.inputs) != 2:
            # Chains of two-input adds are how ONNX spells it; a variadic Sum is split on import.
            raise AssertionError("Add layers have two inputs")
        L = dict(cfg=f"{ctx.lname(self)}_config", size=t.size, word=t.word, a_t=ctx.ctype(self.inputs[0]),
                 b_t=ctx.ctype(self.inputs[1]), out_t=ctx.ctype(self.output), a=ctx.var(self.inputs[0]),
                 b=ctx.var(self.inputs[1]), y=ctx.var(self.output))
        return HlsBinding("hwprune/merge.h", render("merge.j2", "add_config", L=L), render("merge.j2", "add_call", L=L))


@dataclass
class Concat(OpMixin, Layer):
    axis: int = 0  # logical axis (batch removed)

    op_type: ClassVar[str] = "Concat"

    def required_perms(self, g: Graph) -> list[tuple[int, ...] | None]:
        first = g.tensor(self.inputs[0]).perm
        return [None] + [first] * (len(self.inputs) - 1)

    def output_perm(self, g: Graph) -> tuple[int, ...]:
        return g.tensor(self.inputs[0]).perm

    def infer_types(self, g: Graph, prec: Any) -> None:
        from hwprune.ops.quant import dictated_type, explicit_result, union_type

        p = prec.resolve(self.name, self.op_type)
        # Inputs whose exact types QONNX dictates are placed side by side without rounding:
        # the smallest type holding each of them (unless this layer is configured explicitly).
        dictated = [dictated_type(g, i) for i in self.inputs]
        if explicit_result(prec, self.name, self.op_type) is None and all(t is not None for t in dictated):
            g.tensor(self.output).type = union_type(dictated)  # type: ignore[arg-type]
            return
        g.tensor(self.output).type = p.result

    def carry_constant_channels(self, g: Graph, port: int, cc: ConstantChannels) -> ConstantChannels | None:
        if cc.axis != self.axis:
            return None
        return cc.shifted(sum(g.tensor(i).shape[self.axis] for i in self.inputs[:port]))

    def _phys_axis(self, g: Graph) -> int:
        return list(g.tensor(self.inputs[0]).perm).index(self.axis)

    def float_forward(self, g: Graph, xs: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(xs, axis=1 + self._phys_axis(g))

    def fixed_forward(self, g: Graph, xs: list[np.ndarray]) -> np.ndarray:
        out_t = g.tensor(self.output).type
        parts = [requant(x, g.tensor(i).type.frac, out_t) for i, x in zip(self.inputs, xs)]
        return np.concatenate(parts, axis=1 + self._phys_axis(g))

    def saturation(self, g: Graph, xs: list[np.ndarray]) -> int:
        out_t = g.tensor(self.output).type
        return sum(out_of_range(x, g.tensor(i).type.frac, out_t) for i, x in zip(self.inputs, xs))

    def error_bound(self, g: Graph, xs: list[np.ndarray], errs: list[np.ndarray]) -> np.ndarray:
        out_t = g.tensor(self.output).type
        extra = [0.0 if g.tensor(i).type.frac <= out_t.frac else round_error(out_t) for i in self.inputs]
        return np.concatenate([e + x for e, x in zip(errs, extra)], axis=1 + self._phys_axis(g))

    def _blocks(self, g: Graph) -> tuple[int, list[int]]:
        """(outer, [inner block size per input]): the output is `outer` repetitions of each
        input's contiguous block in turn."""
        pa = self._phys_axis(g)
        shapes = [g.tensor(i).physical_shape for i in self.inputs]
        outer = int(np.prod(shapes[0][:pa], dtype=np.int64))
        return outer, [int(np.prod(s[pa:], dtype=np.int64)) for s in shapes]

    def cost(self, ctx: CostContext) -> LayerCost:
        t = ctx.graph.tensor(self.output)
        if ctx.io_type == IOType.PARALLEL:
            return LayerCost(latency=0, ii=1, note="wires")
        return LayerCost(latency=t.words + 1, ii=t.words, ff=t.word * t.type.width)

    def stream_process(self, ctx: CostContext, cost: LayerCost) -> ProcessModel:
        """merge.h: along the innermost axis a word of each input per output word; along an
        outer axis, per outer index all of input a's block, then all of b's."""
        g = ctx.graph
        wa, wb = (g.tensor(i).word for i in self.inputs)
        d = output_delay(cost)
        if g.tensor(self.output).word == wa + wb:
            return process(Step(ctx.words(self.output), 1, (0, 1), (0,), d))
        outer, blocks = self._blocks(g)
        pair = (Step(blocks[0] // wa, 1, (0,), (0,), d), Step(blocks[1] // wb, 1, (1,), (0,), d))
        return process(*(pair * outer))

    def hls(self, ctx: HlsContext) -> HlsBinding:
        g = ctx.graph
        outer, blocks = self._blocks(g)
        words = [g.tensor(i).word for i in self.inputs]
        t = g.tensor(self.output)
        if len(self.inputs) != 2:
            raise AssertionError("Concat layers have two inputs")
        L = dict(cfg=f"{ctx.lname(self)}_config", outer=outer, block_a=blocks[0], block_b=blocks[1],
                 word_a=words[0], word_b=words[1], word_out=t.word,
                 a_t=ctx.ctype(self.inputs[0]), b_t=ctx.ctype(self.inputs[1]), out_t=ctx.ctype(self.output),
                 a=ctx.var(self.inputs[0]), b=ctx.var(self.inputs[1]), y=ctx.var(self.output))
        return HlsBinding("hwprune/merge.h", render("merge.j2", "concat_config", L=L), render("merge.j2", "concat_call", L=L))


# ---------------------------------------------------------------------- ONNX import

def _broadcast_ok(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return a == b


@onnx_op("Add", "Sum")
def _import_add(ctx: Any, node: Any) -> None:
    consts = [ctx.const(i) for i in node.input]
    dyn = [i for i, c in zip(node.input, consts) if c is None]
    if len(dyn) == 1 and node.op_type == "Add":
        from hwprune.ops.batchnorm import import_constant_add
        from hwprune.ops.embedding import absorb_position_add

        const = next(c for c in consts if c is not None)
        if np.count_nonzero(np.array(np.shape(const)) > 1) > 1 and absorb_position_add(ctx, node, dyn[0], const):
            return

        import_constant_add(ctx, node, dyn[0], next(c for c in consts if c is not None))
        return
    if any(c is not None for c in consts):
        raise ctx.error(node, "adding a constant to a sum of activations is not supported")
    shapes = [ctx.shape(i) for i in dyn]
    if any(s != shapes[0] for s in shapes):
        raise ctx.error(node, f"broadcasting adds are not supported (input shapes {shapes}); inputs must have equal shapes")
    prev = dyn[0]
    for k, other in enumerate(dyn[1:]):
        last = k == len(dyn) - 2
        out = node.output[0] if last else ctx.graph.unique_name(f"{node.output[0]}_part{k}")
        ctx.add(Add(ctx.layer_name(node), [prev, other], [out]), shapes[0])
        prev = out


@onnx_op("Concat")
def _import_concat(ctx: Any, node: Any) -> None:
    from hwprune.frontend.onnx_import import attrs

    if any(ctx.is_const(i) for i in node.input):
        raise ctx.error(node, "concatenating a constant with activations is not supported")
    shapes = [ctx.shape(i) for i in node.input]
    rank = len(shapes[0])
    axis = int(attrs(node)["axis"])
    axis = axis + rank + 1 if axis < 0 else axis
    if axis == 0:
        raise ctx.error(node, "concatenation along the batch axis is not supported")
    axis -= 1
    for s in shapes[1:]:
        if len(s) != rank or any(a != b for d, (a, b) in enumerate(zip(s, shapes[0])) if d != axis):
            raise ctx.error(node, f"inputs {shapes} differ outside the concatenation axis")
    prev, prev_shape = node.input[0], shapes[0]
    for k, (other, s) in enumerate(zip(node.input[1:], shapes[1:])):
        last = k == len(shapes) - 2
        out_shape = tuple(d + (s[axis] if i == axis else 0) for i, d in enumerate(prev_shape))
        out = node.output[0] if last else ctx.graph.unique_name(f"{node.output[0]}_part{k}")
        ctx.add(Concat(ctx.layer_name(node), [prev, other], [out], axis=axis), out_shape)
        prev, prev_shape = out, out_shape
