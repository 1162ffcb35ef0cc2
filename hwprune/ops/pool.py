"""Pooling: MaxPool / AveragePool 1-D and 2-D (window engine, channels-last) and global
pooling — GlobalMaxPool, GlobalAveragePool, and ReduceMax/ReduceMean over all spatial axes
(the max over time of a text CNN).

Windows run on the engine of hls/hwprune/window.h, as Conv does (io_parallel: a loop over
output pixels reading the input array; io_stream: a line buffer of the last dh*(kh-1)+1 input
rows, output rows emitted as soon as their last input row has arrived). Global pools read
every position once and emit one word at the end.

Max is exact: the output is the window maximum with one rounding into the output type;
padding never takes part. Average: the exact window sum times the reciprocal of the window
count quantized to ap_ufixed<18,1> (exact for powers of two), one rounding into the output
type; |error| <= |sum| * |recip_q - 1/n| + output rounding. The count is the number of real
elements of the window, or, with count_include_pad=1, of the window clipped to the padded
input (what onnxruntime and PyTorch divide by in ceil mode).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np

from hwprune.fixed import FixedType, Rounding, exact_ints, is_wide, quantize, to_float
from hwprune.ir.channels import ConstantChannels
from hwprune.ir.graph import Graph, IOType, Layer
from hwprune.ops.base import (
    CostContext, HlsBinding, HlsContext, LayerCost, OpMixin, ProcessModel, Step, WeightArray, exact_type, int_bits_for,
    onnx_op, out_of_range, output_delay, process, render, requant, round_error, type_bits, value_bound,
)
from hwprune.ops.window import Window, as_4d, channels_last, stream_steps, window_attrs
from hwprune.sim import resources as hw

RECIP_T = FixedType(18, 1, False, Rounding.RND_CONV)


def _max_keeps_type(layer: Any, g: Graph, prec: Any) -> FixedType | None:
    """A max of values whose exact type QONNX dictates is one of them: it keeps that type
    (unless this layer's result type is configured explicitly). None: use the configuration."""
    from hwprune.ops.quant import dictated_type, explicit_result

    if layer.kind != "max" or explicit_result(prec, layer.name, layer.op_type) is not None:
        return None
    return dictated_type(g, layer.inputs[0])


def reciprocals(n: int) -> np.ndarray:
    """recip[k] = 1/k quantized (index 0 unused)."""
    k = np.arange(n + 1, dtype=np.float64)
    k[0] = 1.0
    return quantize(1.0 / k, RECIP_T)


def _lowest(x: np.ndarray) -> int:
    """A fill below every raw of x (the padding of a max window never wins)."""
    return -(1 << 1100) if is_wide(x) else int(np.iinfo(np.int64).min)


@dataclass
class Pool(OpMixin, Layer):
    kind: str = "max"  # max | avg
    win: Window = field(default_factory=lambda: Window(1, 1, 1, 1))
    include_pad: bool = False
    channels: int = 1

    op_type: ClassVar[str] = "Pool"

    def required_perms(self, g: Graph) -> list[tuple[int, ...] | None]:
        return [channels_last(g.tensor(self.inputs[0]).rank)]

    def output_perm(self, g: Graph) -> tuple[int, ...]:
        return channels_last(g.tensor(self.output).rank)

    def carry_constant_channels(self, g: Graph, port: int, cc: ConstantChannels) -> ConstantChannels | None:
        """A window of constants is that constant — unless padding enters an average (zeros
        counted) or a window holds only padding."""
        if cc.axis != 0:
            return None
        if np.any(cc.value != 0) and (self.win.empty_windows() or (self.kind == "avg" and self.include_pad)):
            return None
        return cc

    def remove_carried_channels(self, g: Graph, port: int, cc: ConstantChannels) -> None:
        self.channels -= len(cc)

    def infer_types(self, g: Graph, prec: Any) -> None:
        g.tensor(self.output).type = _max_keeps_type(self, g, prec) or prec.resolve(self.name, self.op_type).result

    def _counts(self) -> np.ndarray:
        """Divisor of every output pixel (OH, OW) for average pooling."""
        w = self.win
        _, valid = w.patches(np.zeros((1, w.in_h, w.in_w, 1)))
        if not self.include_pad:
            return valid.sum(axis=(2, 3))
        hs = np.arange(w.out_h) * w.sh - w.pt
        ws = np.arange(w.out_w) * w.sw - w.pl
        eh = np.minimum(hs + w.kh, w.in_h + w.pb) - hs
        ew = np.minimum(ws + w.kw, w.in_w + w.pr) - ws
        return eh[:, None] * ew[None, :]

    def _reduce(self, g: Graph, x: np.ndarray, fill: Any) -> np.ndarray:
        p, valid = self.win.patches(as_4d(x), fill)
        shape = (x.shape[0], *g.tensor(self.output).physical_shape)
        if self.kind == "max":
            return p.max(axis=(3, 4)).reshape(shape)
        return p.sum(axis=(3, 4)).reshape(shape)

    def float_forward(self, g: Graph, xs: list[np.ndarray]) -> np.ndarray:
        if self.kind == "max":
            return self._reduce(g, xs[0], -np.inf)
        s = self._reduce(g, xs[0], 0.0)
        return s / self._counts().reshape(s.shape[1:-1] + (1,))

    def _pre_round(self, g: Graph, x: np.ndarray) -> tuple[np.ndarray, int]:
        x_t = g.tensor(self.inputs[0]).type
        if self.kind == "max":
            return self._reduce(g, exact_ints(x, type_bits(x_t)), _lowest(x)), x_t.frac
        bits = self._sum_t(g).width + RECIP_T.width + 1
        s = self._reduce(g, exact_ints(x, bits), 0)
        r = exact_ints(reciprocals(self.win.kh * self.win.kw)[self._counts()], bits)
        return s * r.reshape(s.shape[1:-1] + (1,)), x_t.frac + RECIP_T.frac

    def fixed_forward(self, g: Graph, xs: list[np.ndarray]) -> np.ndarray:
        v, frac = self._pre_round(g, xs[0])
        return requant(v, frac, g.tensor(self.output).type)

    def saturation(self, g: Graph, xs: list[np.ndarray]) -> int:
        v, frac = self._pre_round(g, xs[0])
        return out_of_range(v, frac, g.tensor(self.output).type)

    def error_bound(self, g: Graph, xs: list[np.ndarray], errs: list[np.ndarray]) -> np.ndarray:
        r = round_error(g.tensor(self.output).type)
        if self.kind == "max":
            return self._reduce(g, errs[0], 0.0) + r  # max is 1-Lipschitz per element: bound by the window's max error
        n = self._counts()
        rq = to_float(reciprocals(self.win.kh * self.win.kw)[n], RECIP_T)
        shape = (1, *n.shape, 1) if len(g.tensor(self.output).physical_shape) == 3 else (1, n.shape[1], 1)
        s_abs = self._reduce(g, np.abs(xs[0]), 0.0)
        e_sum = self._reduce(g, errs[0], 0.0)
        return e_sum * rq.reshape(shape) + s_abs * np.abs(rq - 1.0 / n).reshape(shape) + r

    def _sum_t(self, g: Graph) -> FixedType:
        x_t = g.tensor(self.inputs[0]).type
        return exact_type(int_bits_for(value_bound(x_t) * self.win.kh * self.win.kw), x_t.frac)

    def cost(self, ctx: CostContext) -> LayerCost:
        """One output pixel per cycle, all channels in parallel: per channel `taps - 1`
        comparators (max) or adders (average, of the exact sum width) and, for average, one
        multiplier by the reciprocal. io_parallel: II = positions, latency = II + 3.
        io_stream: reading rows and computing the output rows they complete alternate in one
        process, II = H*W + positions, latency = II + 3; the line buffer holds `span` rows of W
        words of C*width bits, one bank per row (`memory_cost(span*W, C*width, span)`)."""
        g = ctx.graph
        w = self.win
        x_t = g.tensor(self.inputs[0]).type
        assert x_t is not None
        sum_w = self._sum_t(g).width if self.kind == "avg" else x_t.width
        taps = w.kh * w.kw
        positions = w.out_h * w.out_w
        lut = self.channels * max(taps - 1, 1) * hw.lut_per_adder(sum_w)
        dsp = 0.0
        if self.kind == "avg":
            d = hw.dsps_per_multiplier(sum_w, RECIP_T.width, ctx.dsp_kind, b_signed=False)
            dsp = self.channels * d
            lut += 0.0 if d else self.channels * hw.lut_per_multiplier(sum_w, RECIP_T.width)
        ff = self.channels * hw.ff_per_register(sum_w) * 2
        bram = uram = 0.0
        if ctx.io_type == IOType.STREAM:
            lb = hw.memory_cost(w.span * w.in_w, self.channels * x_t.width, w.span)
            bram, uram, lut = lb.bram18, lb.uram, lut + lb.lut
            ii = w.in_h * w.in_w + positions
        else:
            ii = positions
        return LayerCost(latency=ii + 3, ii=ii, dsp=dsp, lut=lut, ff=ff, bram18=bram, uram=uram,
                         multipliers=self.channels if self.kind == "avg" else 0)

    def stream_process(self, ctx: CostContext, cost: LayerCost) -> ProcessModel:
        """The window engine (window.h) with one cycle per output pixel."""
        return process(*stream_steps(self.win, 1, output_delay(cost)))

    def hls(self, ctx: HlsContext) -> HlsBinding:
        g = ctx.graph
        w = self.win
        lname = ctx.lname(self)
        recip = reciprocals(w.kh * w.kw)
        L = dict(cfg=f"{lname}_config", in_h=w.in_h, in_w=w.in_w, chan=self.channels, out_h=w.out_h, out_w=w.out_w,
                 kh=w.kh, kw=w.kw, sh=w.sh, sw=w.sw, dh=w.dh, dw=w.dw, pt=w.pt, pl=w.pl, pb=w.pb, pr=w.pr,
                 span=w.span, include_pad=int(self.include_pad), n_p0=recip.size, recip_t=RECIP_T.cpp(),
                 recip_bits=RECIP_T.width, sum_t=self._sum_t(g).cpp(), data_t=ctx.ctype(self.inputs[0]),
                 op="maxpool_op" if self.kind == "max" else "avgpool_op",
                 in_t=ctx.ctype(self.inputs[0]), out_t=ctx.ctype(self.output), x=ctx.var(self.inputs[0]),
                 y=ctx.var(self.output), p0=f"{lname}_recip", p1=f"{lname}_recip")
        return HlsBinding("hwprune/pool.h", render("pool.j2", "config", L=L), render("pool.j2", "call", L=L),
                          weights=[WeightArray(f"{lname}_recip", recip, RECIP_T)])


@dataclass
class GlobalPool(OpMixin, Layer):
    """Max or mean over every spatial position, per channel.

    A mean in io_stream takes the layer's reuse factor RF: its final multiplies by the
    reciprocal (once per sample, after the last word) are time-shared by lanes = ceil(C / RF)
    multipliers, each serving ceil(C / lanes) channels over that many cycles; the numerics do
    not change. Max (no multiplier) and io_parallel (unrolled into the pipelined top) keep 1."""

    kind: str = "max"
    channels: int = 1
    # Cycles the lanes take to emit the means after the last word (settled as LayerNorm's:
    # the fewest that keep ceil(C / RF) lanes busy); 1 = every channel's multiplier at once.
    reuse_factor: int = 1

    op_type: ClassVar[str] = "GlobalPool"

    def required_perms(self, g: Graph) -> list[tuple[int, ...] | None]:
        return [channels_last(g.tensor(self.inputs[0]).rank)]

    def output_perm(self, g: Graph) -> tuple[int, ...]:
        r = g.tensor(self.output).rank
        return channels_last(r) if r > 1 else (0,)

    def infer_types(self, g: Graph, prec: Any) -> None:
        p = prec.resolve(self.name, self.op_type)
        self.reuse_factor = self._settle(g, p.reuse_factor)
        g.tensor(self.output).type = _max_keeps_type(self, g, prec) or p.result

    def _time_shared(self, g: Graph) -> bool:
        """Whether a reuse factor applies: a mean (it has the multipliers) in io_stream."""
        return self.kind == "avg" and g.io_type == IOType.STREAM

    def _settle(self, g: Graph, rf: int) -> int:
        if rf < 1:
            from hwprune.errors import ConfigError

            raise ConfigError(f"layer {self.name}: reuse factor {rf} must be a positive whole number (1 = fully parallel)")
        if not self._time_shared(g):
            return 1
        # RF 64 over 96 channels: 2 lanes and 48 cycles, not 64 cycles with idle lanes.
        lanes = -(-self.channels // rf)
        return -(-self.channels // lanes)

    def reuse_factor_options(self, g: Graph, candidates: Sequence[int]) -> list[int]:
        """The reuse factors the budget search may give this layer, as infer_types settles them
        (only 1 where time sharing does not apply)."""
        if not self._time_shared(g):
            return [1]
        return sorted({self._settle(g, r) for r in candidates if r <= self.channels}) or [1]

    def _rf(self, g: Graph) -> int:
        return self.reuse_factor if self._time_shared(g) else 1

    def lanes(self, g: Graph) -> int:
        """Multipliers by the reciprocal (mean): ceil(C / RF)."""
        return -(-self.channels // self._rf(g))

    def carry_constant_channels(self, g: Graph, port: int, cc: ConstantChannels) -> ConstantChannels | None:
        return cc if cc.axis == 0 else None  # max or mean of a constant is the constant

    def remove_carried_channels(self, g: Graph, port: int, cc: ConstantChannels) -> None:
        self.channels -= len(cc)

    def _n(self, g: Graph) -> int:
        return g.tensor(self.inputs[0]).size // self.channels

    def _flat(self, g: Graph, x: np.ndarray) -> np.ndarray:
        return x.reshape(x.shape[0], -1, self.channels)

    def _shape(self, g: Graph, b: int) -> tuple[int, ...]:
        return (b, *g.tensor(self.output).physical_shape)

    def float_forward(self, g: Graph, xs: list[np.ndarray]) -> np.ndarray:
        f = self._flat(g, xs[0])
        y = f.max(axis=1) if self.kind == "max" else f.mean(axis=1)
        return y.reshape(self._shape(g, f.shape[0]))

    def _pre_round(self, g: Graph, x: np.ndarray) -> tuple[np.ndarray, int]:
        x_t = g.tensor(self.inputs[0]).type
        bits = type_bits(x_t) if self.kind == "max" else self._sum_t(g).width + RECIP_T.width + 1
        f = self._flat(g, exact_ints(x, bits))
        if self.kind == "max":
            return f.max(axis=1).reshape(self._shape(g, f.shape[0])), x_t.frac
        r = self._recip(g)
        return (f.sum(axis=1) * r).reshape(self._shape(g, f.shape[0])), x_t.frac + RECIP_T.frac

    def _recip(self, g: Graph) -> int:
        return int(quantize(1.0 / self._n(g), RECIP_T))

    def fixed_forward(self, g: Graph, xs: list[np.ndarray]) -> np.ndarray:
        v, frac = self._pre_round(g, xs[0])
        return requant(v, frac, g.tensor(self.output).type)

    def saturation(self, g: Graph, xs: list[np.ndarray]) -> int:
        v, frac = self._pre_round(g, xs[0])
        return out_of_range(v, frac, g.tensor(self.output).type)

    def error_bound(self, g: Graph, xs: list[np.ndarray], errs: list[np.ndarray]) -> np.ndarray:
        r = round_error(g.tensor(self.output).type)
        b = xs[0].shape[0]
        e = self._flat(g, errs[0])
        if self.kind == "max":
            return (e.max(axis=1) + r).reshape(self._shape(g, b))
        n = self._n(g)
        rq = float(to_float(np.array(self._recip(g)), RECIP_T))
        s_abs = np.abs(self._flat(g, xs[0])).sum(axis=1)
        return (e.sum(axis=1) * rq + s_abs * abs(rq - 1.0 / n) + r).reshape(self._shape(g, b))

    def _sum_t(self, g: Graph) -> FixedType:
        x_t = g.tensor(self.inputs[0]).type
        return exact_type(int_bits_for(value_bound(x_t) * self._n(g)), x_t.frac)

    def cost(self, ctx: CostContext) -> LayerCost:
        """Per channel a reduction over n positions (max: comparators; mean: adders of the
        exact sum width, then one multiplier by the reciprocal). io_stream: one accumulator per
        channel, one word per cycle: II = n, latency = n + 2 (the word leaves after the last
        input). io_parallel: a tree of n - 1 operators per channel: II = 1,
        latency = ceil(log2 n) + 2. The product by the reciprocal, a constant, is charged as
        Dense charges its products by constant weights at RF 1: by the width rule of
        `dsps_per_multiplier` (an operand over 9 bits: DSP slices, constant or not), so the
        18-bit reciprocal takes DSPs; constant multipliers in LUTs only below that width."""
        g = ctx.graph
        n = self._n(g)
        x_t = g.tensor(self.inputs[0]).type
        assert x_t is not None
        sum_w = self._sum_t(g).width if self.kind == "avg" else x_t.width
        if ctx.io_type == IOType.STREAM and self._rf(g) > 1:
            return self._reuse_cost(ctx, n, sum_w)
        dsp = 0.0
        lut = 0.0
        if self.kind == "avg":
            d = hw.dsps_per_multiplier(sum_w, RECIP_T.width, ctx.dsp_kind, b_signed=False)
            dsp = self.channels * d
            lut = 0.0 if d else self.channels * hw.lut_per_multiplier(sum_w, RECIP_T.width)
        mult = self.channels if self.kind == "avg" else 0
        if ctx.io_type == IOType.STREAM:
            return LayerCost(latency=n + 2, ii=n, lut=lut + self.channels * hw.lut_per_adder(sum_w), dsp=dsp,
                             ff=self.channels * hw.ff_per_register(sum_w) * 2, multipliers=mult,
                             note="emits after the last word")
        return LayerCost(latency=int(math.ceil(math.log2(max(n, 2)))) + 2, ii=1,
                         lut=lut + self.channels * max(n - 1, 1) * hw.lut_per_adder(sum_w), dsp=dsp,
                         ff=self.channels * hw.ff_per_register(sum_w), multipliers=mult)

    def _reuse_cost(self, ctx: CostContext, n: int, sum_w: int) -> LayerCost:
        """The time-shared mean (pool.h, io_stream, reuse_factor > 1): the n words accumulate as
        at RF 1, then `lanes` multipliers by the reciprocal serve their RF channels each, one a
        cycle, reading them through an RF:1 multiplexer of the accumulators; the results wait in
        registers and the word leaves after the last cycle: II = n + RF, latency = II + 2 (the
        product and the write, as at RF 1)."""
        g = ctx.graph
        out_t = g.tensor(self.output).type
        rf, lanes = self._rf(g), self.lanes(g)
        d = hw.dsps_per_multiplier(sum_w, RECIP_T.width, ctx.dsp_kind, b_signed=False)
        lut = lanes * (0.0 if d else hw.lut_per_multiplier(sum_w, RECIP_T.width))
        lut += self.channels * hw.lut_per_adder(sum_w) + lanes * hw.mux_luts(rf, sum_w)
        ff = self.channels * (hw.ff_per_register(sum_w) + hw.ff_per_register(out_t.width))
        ii = n + rf
        return LayerCost(latency=ii + 2, ii=ii, dsp=lanes * d, lut=lut, ff=ff, multipliers=lanes,
                         note=f"emits after the last word: {lanes} lanes x {rf} cycles")

    def stream_process(self, ctx: CostContext, cost: LayerCost) -> ProcessModel:
        """Reads every word (one per cycle, accumulating); the result word(s) leave after the
        last one (pool.h: at RF 1 the output loop is not a scheduled loop, so it adds no busy
        cycles; at RF > 1 its RF trips are, the word(s) leaving after the last)."""
        n = ctx.words(self.inputs[0])  # pool.h's n positions: the input is channels-last
        out_words = ctx.words(self.output)
        rf = self._rf(ctx.graph)
        if rf > 1:
            return process(Step(n, 1, reads=(0,)), Step(rf - 1, 1),
                           Step(1, 1, writes=(0,) * out_words, latency=output_delay(cost)))
        return process(Step(n - 1, 1, reads=(0,)), Step(1, 1, reads=(0,), writes=(0,) * out_words, latency=output_delay(cost)))

    def hls(self, ctx: HlsContext) -> HlsBinding:
        g = ctx.graph
        lname = ctx.lname(self)
        recip = np.array([self._recip(g)], dtype=np.int64)
        L = dict(cfg=f"{lname}_config", n=self._n(g), chan=self.channels, is_max=int(self.kind == "max"),
                 reuse_factor=self._rf(g), lanes=self.lanes(g),
                 recip_t=RECIP_T.cpp(), recip_bits=RECIP_T.width, sum_t=self._sum_t(g).cpp(),
                 in_t=ctx.ctype(self.inputs[0]), out_t=ctx.ctype(self.output), x=ctx.var(self.inputs[0]),
                 y=ctx.var(self.output), r=f"{lname}_recip", out_word=g.tensor(self.output).word)
        return HlsBinding("hwprune/pool.h", render("pool.j2", "global_config", L=L), render("pool.j2", "global_call", L=L),
                          weights=[WeightArray(f"{lname}_recip", recip, RECIP_T)])


# ---------------------------------------------------------------------- ONNX import

def _spatial_input(ctx: Any, node: Any) -> tuple[int, ...]:
    shape = ctx.shape(node.input[0])
    if len(shape) not in (2, 3):
        raise ctx.error(node, f"only 1-D and 2-D pooling is supported (input of rank {len(shape) + 1})")
    return shape


@onnx_op("MaxPool", "AveragePool")
def _import_pool(ctx: Any, node: Any) -> None:
    from hwprune.frontend.onnx_import import attrs

    a = attrs(node)
    shape = _spatial_input(ctx, node)
    if len(node.output) > 1 and node.output[1]:
        raise ctx.error(node, "the Indices output of MaxPool is not supported")
    if "kernel_shape" not in a:
        raise ctx.error(node, "the kernel_shape attribute is missing")
    kernel = tuple(int(k) for k in a["kernel_shape"])
    if len(kernel) != len(shape) - 1 or min(kernel) < 1:
        raise ctx.error(node, f"kernel {kernel} does not match the {len(shape) - 1}-D input {shape}")
    win = window_attrs(ctx, node, shape[1:], kernel)
    kind = "max" if node.op_type == "MaxPool" else "avg"
    if kind == "avg" and (win.dh != 1 or win.dw != 1):
        raise ctx.error(node, "dilated average pooling is not supported")
    if a.get("storage_order", 0):
        raise ctx.error(node, "storage_order=1 is not supported")
    if win.out_h < 1 or win.out_w < 1:
        raise ctx.error(node, f"the kernel {kernel} does not fit the input {shape}")
    if win.empty_windows():
        # onnxruntime returns the float minimum (max) or divides by zero (average) there:
        # nothing a fixed-point type can reproduce.
        raise ctx.error(node, f"{win.empty_windows()} pooling window(s) cover only padding; reduce the pads")
    layer = Pool(ctx.layer_name(node), [node.input[0]], [node.output[0]], kind=kind, win=win,
                 include_pad=bool(a.get("count_include_pad", 0)), channels=shape[0])
    out = (shape[0], win.out_w) if len(shape) == 2 else (shape[0], win.out_h, win.out_w)
    ctx.add(layer, out)


@onnx_op("GlobalMaxPool", "GlobalAveragePool")
def _import_global(ctx: Any, node: Any) -> None:
    shape = _spatial_input(ctx, node)
    kind = "max" if node.op_type == "GlobalMaxPool" else "avg"
    ctx.add(GlobalPool(ctx.layer_name(node), [node.input[0]], [node.output[0]], kind=kind, channels=shape[0]),
            (shape[0], *([1] * (len(shape) - 1))))


@onnx_op("ReduceMax", "ReduceMean")
def _import_reduce(ctx: Any, node: Any) -> None:
    from hwprune.frontend.onnx_import import attrs
    from hwprune.ops.layout import Reshape

    a = attrs(node)
    shape = ctx.shape(node.input[0])
    # opset < 18: axes is an attribute; from 18 an optional constant input.
    axes = a.get("axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        c = ctx.const(node.input[1])
        if c is None:
            raise ctx.error(node, "axes must be constant")
        axes = [int(v) for v in np.asarray(c).reshape(-1)]
    if not axes and a.get("noop_with_empty_axes", 0):
        ctx.alias(node.output[0], node.input[0])  # an identity by definition
        return
    rank = len(shape) + 1
    axes = list(axes) if axes else list(range(rank))  # no axes: reduce every axis
    if any(not -rank <= int(x) < rank for x in axes):
        raise ctx.error(node, f"axes {axes} are out of range for a rank-{rank} tensor")
    axes = sorted({(int(x) + rank) % rank for x in axes})
    spatial_axes = list(range(2, rank))
    kept = [k for k in range(1, rank) if k not in axes]
    if len(shape) >= 2 and axes != spatial_axes and len(kept) == 1 and 0 not in axes:
        # Channels elsewhere (a sequence mean over (N, L, D)): relabel them first, pool, relabel
        # back. The layout pass keeps the data where it is (pools read channels innermost).
        c = kept[0] - 1
        perm = (c, *(k - 1 for k in axes))
        moved = ctx.graph.unique_name(f"{node.output[0]}_channels_first")
        pooled = ctx.graph.unique_name(f"{node.output[0]}_pooled")
        kind = "max" if node.op_type == "ReduceMax" else "avg"
        ctx.add(Reshape(ctx.graph.unique_name(f"{ctx.layer_name(node)}_relabel"), [node.input[0]], [moved], transpose=perm),
                tuple(shape[p] for p in perm))
        ctx.add(GlobalPool(ctx.layer_name(node), [moved], [pooled], kind=kind, channels=shape[c]),
                (shape[c], *([1] * (len(shape) - 1))))
        keep = bool(a.get("keepdims", 1))
        out = tuple(1 if k + 1 in axes else d for k, d in enumerate(shape)) if keep else (shape[c],)
        ctx.add(Reshape(ctx.graph.unique_name(f"{ctx.layer_name(node)}_out"), [pooled], [node.output[0]]), out)
        return
    if len(shape) < 2 or axes != spatial_axes:
        want = f"axes {spatial_axes}" if len(shape) >= 2 else "the axes after the channel axis (this input has none)"
        raise ctx.error(node, f"reducing axes {axes} of a rank-{rank} (N, C, ...) tensor is not supported; only a "
                              f"{node.op_type} over all spatial/sequence axes, i.e. {want} (global pooling), is")
    kind = "max" if node.op_type == "ReduceMax" else "avg"
    keep = bool(a.get("keepdims", 1))
    out = (shape[0], *([1] * (len(shape) - 1))) if keep else (shape[0],)
    ctx.add(GlobalPool(ctx.layer_name(node), [node.input[0]], [node.output[0]], kind=kind, channels=shape[0]), out)
