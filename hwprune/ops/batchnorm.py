"""Per-channel affine y = x * scale[c] + shift[c]: ONNX BatchNormalization (inference) and
constant bias Adds. Folded into the producing Dense/Conv when nothing else reads that
producer's output (`fold_into_producer`); otherwise a standalone ScaleShift layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from hwprune.fixed import MAX_WIDTH, FixedType, exact_ints, quantize, to_float
from hwprune.ir.channels import ConstantChannels
from hwprune.ir.graph import Graph, IOType, Layer
from hwprune.ops.base import (
    CostContext, HlsBinding, HlsContext, LayerCost, OpMixin, cap_fraction, WeightArray, auto_weight_type, onnx_op,
    out_of_range, render, requant, round_error, type_bits,
)
from hwprune.sim import resources as hw


@dataclass
class ScaleShift(OpMixin, Layer):
    axis: int = 0  # logical axis the parameters vary along
    scale: np.ndarray = field(default_factory=lambda: np.ones(1))
    shift: np.ndarray = field(default_factory=lambda: np.zeros(1))
    scale_t: FixedType | None = None
    shift_t: FixedType | None = None

    op_type: ClassVar[str] = "ScaleShift"

    def required_perms(self, g: Graph) -> list[tuple[int, ...] | None]:
        t = g.tensor(self.inputs[0])
        scalar = np.atleast_1d(self.scale).size == 1 and np.atleast_1d(self.shift).size == 1
        if scalar or t.perm[-1] == self.axis or t.shape[self.axis] == 1:
            return [None]  # a scalar pair needs no layout: no reorder for it
        # Put the parameter axis innermost, keeping the others in order (channels last).
        return [tuple(a for a in range(t.rank) if a != self.axis) + (self.axis,)]

    def output_perm(self, g: Graph) -> tuple[int, ...]:
        return g.tensor(self.inputs[0]).perm

    def carry_constant_channels(self, g: Graph, port: int, cc: ConstantChannels) -> ConstantChannels | None:
        s, b = np.atleast_1d(self.scale), np.atleast_1d(self.shift)
        if (s.size > 1 or b.size > 1) and self.axis != cc.axis:
            return None
        s = s[cc.index] if s.size > 1 else s
        b = b[cc.index] if b.size > 1 else b
        return cc.with_values(cc.value * s + b)

    def remove_carried_channels(self, g: Graph, port: int, cc: ConstantChannels) -> None:
        n = g.tensor(self.inputs[0]).shape[self.axis]
        if np.atleast_1d(self.scale).size > 1:
            self.scale = np.atleast_1d(self.scale)[cc.keep_mask(n)]
        if np.atleast_1d(self.shift).size > 1:
            self.shift = np.atleast_1d(self.shift)[cc.keep_mask(n)]

    def fold_into_producer(self, g: Graph, producer: Layer) -> bool:
        absorb = getattr(producer, "absorb_output_affine", None)
        return bool(absorb and absorb(g, self.scale, self.shift, self.axis))

    def infer_types(self, g: Graph, prec: Any) -> None:
        p = prec.resolve(self.name, self.op_type)
        self.scale_t = p.weight or auto_weight_type(self.scale, p.weight_width)
        x_t = g.tensor(self.inputs[0]).type
        st = p.bias or auto_weight_type(self.shift, max(p.weight_width, 8))
        frac = x_t.frac + self.scale_t.frac
        if st.frac > frac:
            st = cap_fraction(st, frac)
        self.shift_t = st
        integer = max(x_t.integer + self.scale_t.integer, st.integer) + 2
        if integer + max(frac, st.frac) > MAX_WIDTH:
            from hwprune.errors import ConfigError

            raise ConfigError(f"layer '{self.name}' (ScaleShift): x * scale + shift needs {integer + max(frac, st.frac)} "
                              f"bits, more than ap_fixed's {MAX_WIDTH}; use fewer fractional bits for its input or scale")
        g.tensor(self.output).type = p.result

    def _params(self, n_channels: int) -> tuple[np.ndarray, np.ndarray]:
        s = np.broadcast_to(self.scale, (n_channels,))
        b = np.broadcast_to(self.shift, (n_channels,))
        return s, b

    def float_forward(self, g: Graph, xs: list[np.ndarray]) -> np.ndarray:
        s, b = self._params(xs[0].shape[-1])
        return xs[0] * s + b

    def _acc(self, g: Graph, x: np.ndarray) -> tuple[np.ndarray, int]:
        x_t = g.tensor(self.inputs[0]).type
        s, b = self._params(x.shape[-1])
        sr, br = quantize(s, self.scale_t), quantize(b, self.shift_t)
        frac = max(x_t.frac + self.scale_t.frac, self.shift_t.frac)
        up, up_b = frac - x_t.frac - self.scale_t.frac, frac - self.shift_t.frac
        bits = max(type_bits(x_t) + type_bits(self.scale_t) + up, type_bits(self.shift_t) + up_b) + 1
        acc = (exact_ints(x, bits) * exact_ints(sr, bits)) << up
        return acc + (exact_ints(br, bits) << up_b), frac

    def fixed_forward(self, g: Graph, xs: list[np.ndarray]) -> np.ndarray:
        acc, frac = self._acc(g, xs[0])
        return requant(acc, frac, g.tensor(self.output).type)

    def saturation(self, g: Graph, xs: list[np.ndarray]) -> int:
        acc, frac = self._acc(g, xs[0])
        return out_of_range(acc, frac, g.tensor(self.output).type)

    def error_bound(self, g: Graph, xs: list[np.ndarray], errs: list[np.ndarray]) -> np.ndarray:
        s, b = self._params(xs[0].shape[-1])
        sq = to_float(quantize(s, self.scale_t), self.scale_t)
        bq = to_float(quantize(b, self.shift_t), self.shift_t)
        return errs[0] * np.abs(sq) + np.abs(xs[0]) * np.abs(sq - s) + np.abs(bq - b) + round_error(g.tensor(self.output).type)

    def cost(self, ctx: CostContext) -> LayerCost:
        t = ctx.graph.tensor(self.output)
        x_t = ctx.graph.tensor(self.inputs[0]).type
        lanes = t.size if ctx.io_type == IOType.PARALLEL else t.word
        d = hw.dsps_per_multiplier(x_t.width, self.scale_t.width, ctx.dsp_kind)
        lut = lanes * (hw.lut_per_adder(t.type.width + 4) + (0 if d else hw.lut_per_multiplier(x_t.width, self.scale_t.width)))
        words = 1 if ctx.io_type == IOType.PARALLEL else t.words
        return LayerCost(latency=words + 3, ii=words, dsp=lanes * d, lut=lut, ff=lanes * hw.ff_per_register(t.type.width),
                         multipliers=lanes, macs=t.size)

    def hls(self, ctx: HlsContext) -> HlsBinding:
        t = ctx.graph.tensor(self.output)
        c = t.word if t.perm[-1] == self.axis else 1
        s, b = self._params(c)
        lname = ctx.lname(self)
        L = dict(cfg=f"{lname}_config", size=t.size, word=t.word, n_chan=c,
                 scale_t=self.scale_t.cpp(), shift_t=self.shift_t.cpp(), scale_bits=self.scale_t.width,
                 shift_bits=self.shift_t.width, in_t=ctx.ctype(self.inputs[0]), out_t=ctx.ctype(self.output),
                 x=ctx.var(self.inputs[0]), y=ctx.var(self.output), s=f"{lname}_s", b=f"{lname}_b")
        return HlsBinding("hwprune/scale_shift.h", render("scale_shift.j2", "config", L=L),
                          render("scale_shift.j2", "call", L=L),
                          weights=[WeightArray(f"{lname}_s", quantize(s, self.scale_t), self.scale_t),
                                   WeightArray(f"{lname}_b", quantize(b, self.shift_t), self.shift_t)])


def _add_scale_shift(ctx: Any, node: Any, x: str, scale: np.ndarray, shift: np.ndarray, axis: int) -> None:
    shape = ctx.shape(x)
    ctx.add(ScaleShift(ctx.layer_name(node), [x], [node.output[0]], axis=axis,
                       scale=np.asarray(scale, dtype=np.float64).reshape(-1),
                       shift=np.asarray(shift, dtype=np.float64).reshape(-1)), shape)


@onnx_op("BatchNormalization")
def _import_batchnorm(ctx: Any, node: Any) -> None:
    from hwprune.frontend.onnx_import import attrs

    params = [ctx.const(i) for i in node.input[1:5]]
    if any(p is None for p in params):
        raise ctx.error(node, "scale, bias, mean and variance must be constants (inference mode)")
    if len(node.output) > 1 and any(node.output[1:]):
        raise ctx.error(node, "training-mode BatchNormalization (running statistics outputs) is not supported")
    gamma, beta, mean, var = (np.asarray(p, dtype=np.float64) for p in params)
    eps = float(attrs(node).get("epsilon", 1e-5))
    shape = ctx.shape(node.input[0])
    if len(shape) > 3:
        raise ctx.error(node, f"{len(shape) + 1}-D inputs are not supported (at most 4-D: N, C, H, W)")
    scale = gamma / np.sqrt(var + eps)
    _add_scale_shift(ctx, node, node.input[0], scale, beta - mean * scale, axis=0)


def _per_axis(ctx: Any, node: Any, x: str, c: np.ndarray) -> tuple[int, np.ndarray]:
    """(axis, values) of a constant broadcast against activation x: a scalar, or one value per
    position of one axis."""
    shape = ctx.shape(x)
    c = np.asarray(c, dtype=np.float64)
    full = (1, *shape)
    if c.ndim > len(full):
        raise ctx.error(node, f"constant of shape {c.shape} broadcasts beyond the input {full}")
    cs = (1,) * (len(full) - c.ndim) + c.shape
    varying = [i for i, d in enumerate(cs) if d != 1]
    if 0 in varying:
        raise ctx.error(node, "a constant that varies along the batch axis is not supported")
    if not varying:
        return len(shape) - 1, c.reshape(-1)[:1]
    if len(varying) > 1:
        raise ctx.error(node, f"a constant of shape {c.shape} varies along several axes; only per-channel constants are supported")
    axis = varying[0] - 1
    if cs[varying[0]] != shape[axis]:
        raise ctx.error(node, f"constant of shape {c.shape} does not broadcast to {full}")
    return axis, c.reshape(-1)


def import_constant_add(ctx: Any, node: Any, x: str, c: np.ndarray, sign: float = 1.0) -> None:
    """sign·x + constant, the constant varying along at most one axis: a bias."""
    axis, shift = _per_axis(ctx, node, x, c)
    _add_scale_shift(ctx, node, x, np.full(1 if shift.size == 1 else shift.size, sign), shift, axis)


@onnx_op("Mul", "Div", "Sub")
def _import_constant_arith(ctx: Any, node: Any) -> None:
    """x·c, x/c, x−c and c−x with a constant c (per tensor or per channel) are a ScaleShift, which
    the fold pass moves into a neighbouring Dense/Conv where it is exact."""
    a, b = (ctx.const(i) for i in node.input[:2])
    if (a is None) == (b is None):
        raise ctx.error(node, "only arithmetic between an activation and a constant is supported"
                        if a is None else "arithmetic on constants only should have been folded")
    x = node.input[1] if a is not None else node.input[0]
    c = a if a is not None else b
    if node.op_type == "Sub":
        import_constant_add(ctx, node, x, -np.asarray(c) if b is not None else np.asarray(c), -1.0 if a is not None else 1.0)
        return
    if node.op_type == "Div":
        if a is not None:
            raise ctx.error(node, "dividing a constant by an activation is not supported")
        c = np.asarray(c, dtype=np.float64)
        if np.any(c == 0):
            raise ctx.error(node, "division by zero")
        c = 1.0 / c
    axis, scale = _per_axis(ctx, node, x, c)
    _add_scale_shift(ctx, node, x, scale, np.zeros(scale.size), axis)
