"""MatMul of two activations (attention's Q·Kᵀ and A·V): y[..., m, n] = sum_k a[..., m, k] b[..., k, n].

Both operands stream with the contraction axis innermost: `a` as rows of K (its logical last
axis), `b` transposed — rows of K for every n — which is free when `b` is itself a transposed
tensor (Kᵀ of attention: the layout pass relabels it) and a real reorder otherwise (V in A·V;
costed where the layout pass inserts it). Leading (batch / head) axes must be equal.

Fixed point: every product of two ap_fixed values is exact; the accumulator holds the exact sum
(its width from the types and K), rounded once into the output type. Reuse factor RF: each
multiplier serves RF of the K·N products of one row of `a` (like Dense), so a row takes RF cycles.
io_stream: per leading index the kernel first stores the N rows of bᵀ in n_mult banks (product p
in bank p mod n_mult: each multiplier reads only its own bank), a row in ceil(K / n_mult) cycles
when there are fewer banks than K, then streams the M rows of `a` (N·load_steps + M·RF cycles).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from hwprune.fixed import FixedType, exact_matmul
from hwprune.ir.graph import Graph, IOType, Layer
from hwprune.ops.base import (
    CostContext, HlsBinding, HlsContext, LayerCost, OpMixin, ProcessModel, Step, exact_type, onnx_op, out_of_range,
    output_delay, process, render, requant, round_error, value_bound,
)
from hwprune.ops.dense import check_accumulator
from hwprune.sim import resources as hw


@dataclass
class MatMul(OpMixin, Layer):
    reuse_factor: int = 1
    mult_impl: str = "auto"
    accum_t: FixedType | None = None

    op_type: ClassVar[str] = "MatMul"

    # ------------------------------------------------------------------ shapes
    def dims(self, g: Graph) -> tuple[int, int, int, int]:
        """(leading, M, K, N)."""
        a, b = g.tensor(self.inputs[0]).shape, g.tensor(self.inputs[1]).shape
        return math.prod(a[:-2]), a[-2], a[-1], b[-1]

    # ------------------------------------------------------------------ layout
    def required_perms(self, g: Graph) -> list[tuple[int, ...] | None]:
        ra, rb = g.tensor(self.inputs[0]).rank, g.tensor(self.inputs[1]).rank
        lead_a, lead_b = tuple(range(ra - 2)), tuple(range(rb - 2))
        return [lead_a + (ra - 2, ra - 1), lead_b + (rb - 1, rb - 2)]  # a row-major; b as bᵀ rows

    def output_perm(self, g: Graph) -> tuple[int, ...]:
        return tuple(range(g.tensor(self.output).rank))

    # ------------------------------------------------------------------ types
    def infer_types(self, g: Graph, prec: Any) -> None:
        p = prec.resolve(self.name, self.op_type)
        self.reuse_factor = p.reuse_factor
        self.mult_impl = p.mult_impl
        a_t, b_t = g.tensor(self.inputs[0]).type, g.tensor(self.inputs[1]).type
        _, _, k, _ = self.dims(g)
        bound = k * value_bound(a_t) * value_bound(b_t)
        frac = a_t.frac + b_t.frac
        self.accum_t = exact_type(int(math.ceil(math.log2(bound + 2.0**-frac))) + 1, frac)
        check_accumulator(self, self.accum_t)
        g.tensor(self.output).type = p.result

    # ------------------------------------------------------------------ semantics
    # Physical arrays: a (B, *lead, M, K), b (B, *lead, N, K); output (B, *lead, M, N).
    def float_forward(self, g: Graph, xs: list[np.ndarray]) -> np.ndarray:
        return np.matmul(xs[0], np.swapaxes(xs[1], -1, -2))

    def _acc(self, xs: list[np.ndarray]) -> np.ndarray:
        # int64 while the accumulator fits (the common case); exact limbs beyond (wide operands).
        return exact_matmul(xs[0], np.swapaxes(xs[1], -1, -2), self.accum_t.width)

    def fixed_forward(self, g: Graph, xs: list[np.ndarray]) -> np.ndarray:
        return requant(self._acc(xs), self.accum_t.frac, g.tensor(self.output).type)

    def saturation(self, g: Graph, xs: list[np.ndarray]) -> int:
        return out_of_range(self._acc(xs), self.accum_t.frac, g.tensor(self.output).type)

    def error_bound(self, g: Graph, xs: list[np.ndarray], errs: list[np.ndarray]) -> np.ndarray:
        a, b = np.abs(xs[0]), np.abs(np.swapaxes(xs[1], -1, -2))
        ea, eb = errs[0], np.swapaxes(errs[1], -1, -2)
        return a @ eb + ea @ b + ea @ eb + round_error(g.tensor(self.output).type)

    # ------------------------------------------------------------------ cost
    def reuse_factor_options(self, g: Graph, candidates: Sequence[int]) -> list[int]:
        """The reuse factors the budget search may give this engine: up to k*n products per
        output row (beyond it nothing is shared)."""
        _, _, k, n = self.dims(g)
        return [r for r in candidates if r <= k * n] or [1]

    def n_mult(self, g: Graph) -> int:
        _, _, k, n = self.dims(g)
        return math.ceil(k * n / self.reuse_factor)

    def load_lanes(self, g: Graph) -> int:
        """Elements of a word of bᵀ stored per cycle in io_stream: one per bank, at most K."""
        return min(self.n_mult(g), self.dims(g)[2])

    def load_steps(self, g: Graph) -> int:
        """Cycles to store one word of bᵀ in io_stream."""
        return -(-self.dims(g)[2] // self.load_lanes(g))

    def cost(self, ctx: CostContext) -> LayerCost:
        g = ctx.graph
        lead, m, k, n = self.dims(g)
        a_t, b_t = g.tensor(self.inputs[0]).type, g.tensor(self.inputs[1]).type
        rf = self.reuse_factor
        n_mult = self.n_mult(g)
        dsp_each = hw.multiplier_dsps(a_t.width, b_t.width, ctx.dsp_kind, self.mult_impl)
        lut = 0.0 if dsp_each else n_mult * hw.lut_per_multiplier(a_t.width, b_t.width)
        lut += n_mult * hw.lut_per_adder(self.accum_t.width)
        if rf > 1:  # each multiplier picks its element of the held row of a
            lut += n_mult * hw.mux_luts(min(rf, k), a_t.width)
        ff = (n_mult + n) * hw.ff_per_register(self.accum_t.width)
        bram = 0.0
        depth = int(math.ceil(math.log2(max(k, 2)))) + 3
        if ctx.io_type == IOType.STREAM:
            # bᵀ is held for the M rows of a: registers when read whole (RF 1), else one bank per
            # multiplier read at one address a cycle (no multiplexer: the memory's read port).
            if rf > 1:
                mem = hw.memory_cost(-(-k * n // n_mult), b_t.width, n_mult)
                bram, lut = mem.bram18, lut + mem.lut
                steps = self.load_steps(g)
                if steps > 1:  # the lanes storing a word pick its elements over load_steps cycles
                    lut += self.load_lanes(g) * hw.mux_luts(steps, b_t.width)
                    ff += k * hw.ff_per_register(b_t.width)  # the word held meanwhile
            else:
                ff += k * n * hw.ff_per_register(b_t.width)
            ii = lead * (n * self.load_steps(g) + m * rf)
        else:
            if rf > 1:  # io_parallel: bᵀ is a partitioned array; each multiplier selects its elements
                lut += n_mult * hw.mux_luts(min(rf, k * n), b_t.width)
            ii = lead * m * rf
        return LayerCost(latency=ii + depth, ii=ii, dsp=n_mult * dsp_each, lut=lut, ff=ff, bram18=bram,
                         multipliers=n_mult, macs=lead * m * k * n)

    def stream_process(self, ctx: CostContext, cost: LayerCost) -> ProcessModel:
        """matmul.h: per leading index, N trips of load_steps cycles reading a word of bᵀ, then M
        trips of RF cycles reading a word of a and writing a word of the output."""
        lead, m, _, n = self.dims(ctx.graph)
        one = (Step(n, self.load_steps(ctx.graph), (1,), ()), Step(m, self.reuse_factor, (0,), (0,), output_delay(cost) + self.reuse_factor - 1))
        return process(*(one * lead))

    # ------------------------------------------------------------------ HLS
    def hls(self, ctx: HlsContext) -> HlsBinding:
        g = ctx.graph
        lead, m, k, n = self.dims(g)
        L = dict(cfg=f"{ctx.lname(self)}_config", lead=lead, m=m, k=k, n=n, reuse_factor=self.reuse_factor,
                 n_mult=self.n_mult(g), load_lanes=self.load_lanes(g), load_steps=self.load_steps(g), mult_impl=hw.MULT_IMPL_CODES[self.mult_impl],
                 accum_t=self.accum_t.cpp(), a_t=ctx.ctype(self.inputs[0]), b_t=ctx.ctype(self.inputs[1]),
                 out_t=ctx.ctype(self.output), a=ctx.var(self.inputs[0]), b=ctx.var(self.inputs[1]),
                 y=ctx.var(self.output))
        return HlsBinding("hwprune/matmul.h", render("matmul.j2", "config", L=L), render("matmul.j2", "call", L=L))


def import_activation_matmul(ctx: Any, node: Any) -> None:
    """Called by the MatMul importer (ops/dense.py) when both operands are activations."""
    sa, sb = ctx.shape(node.input[0]), ctx.shape(node.input[1])
    if len(sa) < 2 or len(sb) < 2:
        raise ctx.error(node, f"a product of two activations needs matrices per sample (shapes {sa}, {sb})")
    if sa[:-2] != sb[:-2]:
        raise ctx.error(node, f"leading axes {sa[:-2]} and {sb[:-2]} differ; broadcasting products are not supported")
    if sa[-1] != sb[-2]:
        raise ctx.error(node, f"shapes {sa} and {sb} do not multiply")
    ctx.add(MatMul(ctx.layer_name(node), [node.input[0], node.input[1]], [node.output[0]]), (*sa[:-1], sb[-1]))


__all__ = ["MatMul", "import_activation_matmul", "onnx_op"]
