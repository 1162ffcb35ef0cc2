"""Threshold: FINN's MultiThreshold (the activation of a streamlined FINN/QONNX graph).

y = number of thresholds t[c, j] with x >= t[c, j] (an integer in [0, T]), per channel c of
one logical axis (thresholds of shape (C, T), or (1, T) for all channels). The ONNX node's
output scale and bias (y * out_scale + out_bias) become a Rescale after it, which the
import's clean-up (hwprune/passes/scales.py) moves into the next layer; a scale/offset in
front of it (the Mul/Add a streamlined graph leaves, or a requantization) is absorbed into
the thresholds: a*u + c >= t  <=>  u >= (t - c) / a for a > 0, exactly (the thresholds are
exact rationals).

Fixed point: x is on its type's grid, so x >= t  <=>  raw(x) >= ceil(t * 2**frac): the
comparison against integer thresholds is exact, and the count is an exact ap_uint. The
result equals QONNX's execution whenever x itself is exact (a code, or an input already on
the grid of its type); a graph input rounded into its type can flip a comparison only if it
lies within half an lsb of a threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, ClassVar

import numpy as np

from hwprune.fixed import FixedType
from hwprune.ir.graph import Graph, IOType, Layer
from hwprune.ops.base import CostContext, HlsBinding, HlsContext, LayerCost, OpMixin, WeightArray, onnx_op, render
from hwprune.sim import resources as hw


def _frac_matrix(t: Any) -> np.ndarray:
    a = np.asarray(t, dtype=object)
    out = np.empty(a.shape, dtype=object)
    for idx, v in np.ndenumerate(a):
        out[idx] = v if isinstance(v, Fraction) else Fraction(float(v))
    return out


@dataclass
class Threshold(OpMixin, Layer):
    axis: int = 0  # logical channel axis
    thresholds: np.ndarray = field(default_factory=lambda: _frac_matrix(np.zeros((1, 1))))  # (C or 1, T)
    thr_t: FixedType | None = None

    op_type: ClassVar[str] = "Threshold"

    def __post_init__(self) -> None:
        self.thresholds = _frac_matrix(self.thresholds)

    @property
    def n_thresholds(self) -> int:
        return int(self.thresholds.shape[1])

    @property
    def per_channel(self) -> bool:
        return self.thresholds.shape[0] > 1

    def out_type(self) -> FixedType:
        b = max(int(self.n_thresholds).bit_length(), 1)
        return FixedType(b, b, False)

    # ------------------------------------------------------------------ layout
    def required_perms(self, g: Graph) -> list[tuple[int, ...] | None]:
        t = g.tensor(self.inputs[0])
        if not self.per_channel or t.perm[-1] == self.axis or t.shape[self.axis] == 1:
            return [None]
        return [tuple(a for a in range(t.rank) if a != self.axis) + (self.axis,)]

    def output_perm(self, g: Graph) -> tuple[int, ...]:
        return g.tensor(self.inputs[0]).perm

    def absorb_input_affine(self, g: Graph, r: Any) -> bool:
        """Fold a Rescale x = a*u + c (a > 0) in front into the thresholds."""
        if r.fused or not all(v > 0 for v in r.scale):
            return False
        n = self.thresholds.shape[0]
        if r.per_channel:
            if r.axis != self.axis:
                return False
            n = max(n, r.scale.size, r.shift.size)
        a, c = r.params(n)
        t = np.broadcast_to(self.thresholds, (n, self.n_thresholds)) if self.thresholds.shape[0] == 1 else self.thresholds
        new = np.empty((n, self.n_thresholds), dtype=object)
        for ch in range(n):
            for j in range(self.n_thresholds):
                new[ch, j] = (t[ch, j] - c[ch]) / a[ch]
        self.thresholds = new
        self.inputs = [r.inputs[0] if i == r.output else i for i in self.inputs]
        g.layers.remove(r)
        g.tensors.pop(r.output, None)
        return True

    # ------------------------------------------------------------------ types
    def infer_types(self, g: Graph, prec: Any) -> None:
        from hwprune.ops.rescale import exact_input_type

        x_t = exact_input_type(g, self.inputs[0])
        assert x_t is not None
        # Integer thresholds on the input grid, clamped one beyond the input's range.
        self.thr_t = FixedType(x_t.width + 2, x_t.integer + 2, True)
        g.tensor(self.output).type = self.out_type()

    def raw_thresholds(self, g: Graph) -> np.ndarray:
        x_t = g.tensor(self.inputs[0]).type
        assert x_t is not None
        scale = Fraction(2) ** x_t.frac
        lo, hi = x_t.min_raw, x_t.max_raw + 1
        out = np.empty(self.thresholds.shape, dtype=np.int64)
        for idx, v in np.ndenumerate(self.thresholds):
            out[idx] = min(max(math.ceil(v * scale), lo), hi)
        return out

    # ------------------------------------------------------------------ semantics
    def _count(self, x: np.ndarray, t: np.ndarray) -> np.ndarray:
        if not self.per_channel:
            return np.count_nonzero(x[..., None] >= t[0], axis=-1)
        return np.count_nonzero(x[..., None] >= t, axis=-1)

    def float_forward(self, g: Graph, xs: list[np.ndarray]) -> np.ndarray:
        t = np.array([[float(v) for v in row] for row in self.thresholds], dtype=np.float64)
        return self._count(xs[0], t).astype(np.float64)

    def fixed_forward(self, g: Graph, xs: list[np.ndarray]) -> np.ndarray:
        return self._count(xs[0].astype(np.int64), self.raw_thresholds(g)).astype(np.int64)

    def error_bound(self, g: Graph, xs: list[np.ndarray], errs: list[np.ndarray]) -> np.ndarray:
        """The count can differ by the thresholds within the input's error of x."""
        t = np.array([[float(v) for v in row] for row in self.thresholds], dtype=np.float64)
        tt = t[0] if not self.per_channel else t
        near = np.abs(xs[0][..., None] - tt) <= errs[0][..., None] + 1e-12 * (1 + np.abs(tt))
        return np.count_nonzero(near & (errs[0][..., None] > 0), axis=-1).astype(np.float64)

    # ------------------------------------------------------------------ cost
    def cost(self, ctx: CostContext) -> LayerCost:
        """Per lane T comparators of the threshold width and a T-input popcount; lanes: the
        whole tensor in io_parallel, one stream word in io_stream (II = 1 per word). The
        thresholds are constants folded into the comparators."""
        g = ctx.graph
        t = g.tensor(self.output)
        assert self.thr_t is not None
        lanes = t.size if ctx.io_type == IOType.PARALLEL else t.word
        words = 1 if ctx.io_type == IOType.PARALLEL else t.words
        n = self.n_thresholds
        per_lane = n * hw.lut_per_adder(self.thr_t.width) + n
        depth = max(int(math.ceil(math.log2(n + 1))), 1) + 1
        return LayerCost(latency=words + depth, ii=words, lut=lanes * per_lane,
                         ff=lanes * hw.ff_per_register(t.type.width if t.type else 8),
                         note=f"{n} thresholds per {'channel' if self.per_channel else 'tensor'}")

    # ------------------------------------------------------------------ HLS
    def hls(self, ctx: HlsContext) -> HlsBinding:
        assert self.thr_t is not None
        g = ctx.graph
        t = g.tensor(self.output)
        c = t.word if (self.per_channel and t.perm[-1] == self.axis) else 1
        raw = self.raw_thresholds(g)
        raw = np.broadcast_to(raw, (c, self.n_thresholds)) if raw.shape[0] == 1 else raw
        lname = ctx.lname(self)
        L = dict(cfg=f"{lname}_config", size=t.size, word=t.word, n_chan=c, n_thr=self.n_thresholds,
                 thr_t=self.thr_t.cpp(), thr_bits=self.thr_t.width, count_bits=self.out_type().width + 1,
                 in_t=ctx.ctype(self.inputs[0]),
                 out_t=ctx.ctype(self.output), x=ctx.var(self.inputs[0]), y=ctx.var(self.output), t=f"{lname}_t")
        return HlsBinding("hwprune/threshold.h", render("threshold.j2", "config", L=L),
                          render("threshold.j2", "call", L=L),
                          weights=[WeightArray(f"{lname}_t", np.ascontiguousarray(raw).reshape(-1), self.thr_t)])


# ---------------------------------------------------------------------- ONNX import

_RANK_LAYOUT = {2: "NC", 3: "NWC", 4: "NCHW"}  # qonnx's guess when data_layout is not set


@onnx_op("MultiThreshold")
def _import_multithreshold(ctx: Any, node: Any) -> None:
    from hwprune.frontend.onnx_import import attrs
    from hwprune.ops.rescale import Rescale, frac_array

    a = attrs(node)
    thr = ctx.const(node.input[1]) if len(node.input) > 1 else None
    if thr is None:
        raise ctx.error(node, "the thresholds must be a constant")
    thr = np.asarray(thr, dtype=np.float64)
    if thr.ndim != 2 or thr.shape[1] < 1:
        raise ctx.error(node, f"thresholds of shape {thr.shape}: expected (channels, thresholds)")
    if not np.all(np.isfinite(thr)):
        raise ctx.error(node, "the thresholds must be finite")
    shape = ctx.shape(node.input[0])
    layout = a.get("data_layout", "")
    layout = layout.decode() if isinstance(layout, bytes) else str(layout)
    if not layout:
        layout = _RANK_LAYOUT.get(len(shape) + 1, "")
    cdim = layout.index("C") if "C" in layout else 1
    if not 1 <= cdim <= len(shape):
        raise ctx.error(node, f"data layout {layout!r} does not fit an input of rank {len(shape) + 1}")
    axis = cdim - 1
    if thr.shape[0] not in (1, shape[axis]):
        raise ctx.error(node, f"{thr.shape[0]} threshold rows for {shape[axis]} channels (axis {cdim})")
    out_scale, out_bias = float(a.get("out_scale", 1.0)), float(a.get("out_bias", 0.0))
    if not (math.isfinite(out_scale) and math.isfinite(out_bias)):
        raise ctx.error(node, "out_scale and out_bias must be finite")
    name = ctx.layer_name(node)
    if out_scale == 1.0 and out_bias == 0.0:
        ctx.add(Threshold(name, [node.input[0]], [node.output[0]], axis=axis, thresholds=thr), shape)
        return
    count = f"{node.output[0]}__count"
    ctx.add(Threshold(name, [node.input[0]], [count], axis=axis, thresholds=thr), shape)
    ctx.add(Rescale(ctx.graph.unique_name(f"{name}_out"), [count], [node.output[0]], axis=axis,
                    scale=frac_array([out_scale]), shift=frac_array([out_bias])), shape)
