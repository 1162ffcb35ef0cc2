"""LayerNorm over the innermost axis: y = (x - mean) / sqrt(var + eps) * gamma + beta.

Fixed point, all in integers (numpy and `hls/hwprune/layernorm.h` agree bit for bit). For a row
of n raw inputs x_i (f fractional bits):

    S = sum x_i,  Q = sum x_i^2                    exact
    D_i = n*x_i - S          = n (x_i - mean)      exact, f fractional bits
    V = n*Q - S^2 + E        = n^2 (var + eps)     exact, 2f fractional bits; E = n^2 eps rounded
    r_i = D_i / sqrt(V)      = (x_i - mean) / sqrt(var + eps)

the fractional bits cancel in r_i. 1/sqrt(V) comes from one table: V = m * 4^k with m in [1, 4)
(leading-one detection), 1/sqrt(V) = T[floor(m N / 4)] * 2^-k, T holding 1/sqrt at the bin centres
in ap_ufixed<18,1>. r_i is truncated once to Z_FRAC fractional bits (z; |r_i| < sqrt(n)), then
y_i = z_i * gamma_i + beta_i exactly and rounded once into the output type. docs/activations.md
derives the error bound `error_bound` implements.

The layer's reuse factor time-shares the three per-element multipliers: ceil(n / RF) lanes, each
serving ceil(n / lanes) elements of a row; the numerics do not change (docs/estimate.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np

from hwprune.fixed import FAST_BITS, MAX_WIDTH, FixedType, exact_ints, quantize, to_float
from hwprune.ir.graph import Graph, IOType, Layer
from hwprune.ops.base import (
    CostContext, HlsBinding, HlsContext, LayerCost, OpMixin, ProcessModel, Step, WeightArray, auto_weight_type,
    onnx_op, out_of_range, output_delay, process, render, requant, round_error,
)
from hwprune.sim import resources as hw

INV_TYPE = FixedType(18, 1, False)  # 1/sqrt(m) for m in [1, 4): values in (0.5, 1]
Z_FRAC = 16  # fractional bits of the normalised value z


@dataclass
class LayerNorm(OpMixin, Layer):
    gamma: np.ndarray = field(default_factory=lambda: np.ones(1))
    beta: np.ndarray = field(default_factory=lambda: np.zeros(1))
    epsilon: float = 1e-5
    table_size: int = 1024
    gamma_t: FixedType | None = None
    beta_t: FixedType | None = None
    # Cycles each of the lanes' multipliers is shared over: ceil(n / lanes) for the layer's
    # reuse factor (lanes = ceil(n / RF)); 1 = a whole row per cycle.
    reuse_factor: int = 1

    op_type: ClassVar[str] = "LayerNorm"

    # ------------------------------------------------------------------ layout
    def _axis(self, g: Graph) -> int:
        return g.tensor(self.inputs[0]).rank - 1

    def required_perms(self, g: Graph) -> list[tuple[int, ...] | None]:
        t = g.tensor(self.inputs[0])
        a = self._axis(g)
        if t.perm[-1] == a:
            return [None]
        return [tuple(x for x in range(t.rank) if x != a) + (a,)]

    def output_perm(self, g: Graph) -> tuple[int, ...]:
        return g.tensor(self.inputs[0]).perm

    def _n(self, g: Graph) -> int:
        return g.tensor(self.inputs[0]).shape[-1]

    # ------------------------------------------------------------------ types
    def z_type(self, g: Graph) -> FixedType:
        n = self._n(g)
        integer = int(math.ceil(math.log2(math.sqrt(max(n, 1)) + 1))) + 1
        return FixedType(integer + Z_FRAC, integer, True)

    def reuse_factor_options(self, g: Graph, candidates: Sequence[int]) -> list[int]:
        """The reuse factors the budget search may give this engine, as infer_types settles
        them (the fewest cycles per row for ceil(n / RF) lanes), each once."""
        n = self._n(g)
        return sorted({-(-n // -(-n // r)) for r in candidates if r <= n}) or [1]

    def infer_types(self, g: Graph, prec: Any) -> None:
        p = prec.resolve(self.name, self.op_type)
        self.table_size = p.table_size
        # The fewest cycles per row that keep ceil(n / RF) lanes busy: RF 64 over 96 elements
        # gives 2 lanes and 48 cycles, not 64 cycles with idle lanes.
        lanes = -(-self._n(g) // max(p.reuse_factor, 1))
        self.reuse_factor = -(-self._n(g) // lanes)
        if self.table_size < 4 or self.table_size & (self.table_size - 1):
            from hwprune.errors import ConfigError

            raise ConfigError(f"layer {self.name}: table_size {self.table_size} must be a power of two >= 4")
        x_t = g.tensor(self.inputs[0]).type
        assert x_t is not None
        n = self._n(g)
        # z * gamma + beta is computed in 62-bit integers (acc_t): automatic parameter types
        # stay narrow enough for it however wide the activations are.
        width = min(max(p.weight_width, 8), 62 - self.z_type(g).width - 2)
        self.gamma_t = p.weight or auto_weight_type(self.gamma, width)
        self.beta_t = p.bias or auto_weight_type(self.beta, width)
        frac = max(Z_FRAC + self.gamma_t.frac, self.beta_t.frac)
        acc_bits = max(self.z_type(g).integer + self.gamma_t.integer, self.beta_t.integer) + 1 + frac
        if acc_bits > 62:
            from hwprune.errors import ConfigError

            raise ConfigError(f"layer {self.name}: z * gamma + beta with gamma {self.gamma_t} and beta {self.beta_t} needs "
                              f"{acc_bits} bits (> 62); give its weight and bias types fewer fractional bits")
        if self.sums_bits(g) > MAX_WIDTH:
            from hwprune.errors import ConfigError

            raise ConfigError(f"layer {self.name}: a row of {n} values of {x_t.width} bits needs {self.sums_bits(g)} bits "
                              f"for its variance, more than ap_fixed's {MAX_WIDTH}; narrow the input type of this LayerNorm")
        g.tensor(self.output).type = p.result

    def sums_bits(self, g: Graph) -> int:
        """Bits of the exact integers S, Q, V, D and D * inv (signed): up to 62 they are int64
        here and long long in the kernel; beyond, Python integers here and ap_int there."""
        x_t = g.tensor(self.inputs[0]).type
        log_n = math.ceil(math.log2(self._n(g) + 1))
        x_bits = x_t.width + (0 if x_t.signed else 1)
        eps_bits = max(self._eps_raw(g), 1).bit_length() + 1
        return max(2 * x_bits + 2 * log_n + 1, x_bits + log_n + 1 + INV_TYPE.width, eps_bits) + 1

    # ------------------------------------------------------------------ semantics
    def float_forward(self, g: Graph, xs: list[np.ndarray]) -> np.ndarray:
        x = xs[0]
        mu = x.mean(axis=-1, keepdims=True)
        var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
        return (x - mu) / np.sqrt(var + self.epsilon) * self.gamma + self.beta

    def inv_table(self) -> np.ndarray:
        n = self.table_size
        centres = (np.arange(n) + 0.5) * 4.0 / n
        centres[: n // 4] = 1.0  # never read: m >= 1
        return quantize(1.0 / np.sqrt(centres), INV_TYPE)

    def _eps_raw(self, g: Graph) -> int:
        n, f = self._n(g), g.tensor(self.inputs[0]).type.frac
        return round(n * n * self.epsilon * 2.0 ** (2 * f))  # a Python int: exact however large

    def _normalised(self, g: Graph, x: np.ndarray) -> np.ndarray:
        """z raw (Z_FRAC fractional bits), physical layout."""
        n = self._n(g)
        wide = self.sums_bits(g) > FAST_BITS
        x = exact_ints(x, self.sums_bits(g))
        s = x.sum(axis=-1, keepdims=True)
        q = (x * x).sum(axis=-1, keepdims=True)
        d = n * x - s
        v = np.maximum(n * q - s * s + self._eps_raw(g), 1)
        if wide:
            msb = np.frompyfunc(int.bit_length, 1, 1)(v).astype(np.int64) - 1
        else:
            msb = (np.frexp(v.astype(np.float64))[1] - 1).astype(np.int64)
            msb -= (np.int64(1) << msb) > v  # the float may round v up to the next power of two
            msb += (np.int64(1) << (msb + 1)) <= v
        k = msb // 2  # v = m * 4**k, m in [1, 4)
        log_n = int(round(math.log2(self.table_size)))
        sh = 2 * k + 2 - log_n  # floor(m * N / 4) = v >> sh
        if wide:
            j = np.frompyfunc(lambda a, b: a >> b if b >= 0 else a << -b, 2, 1)(v, sh).astype(np.int64)
        else:
            j = np.where(sh >= 0, v >> np.maximum(sh, 0), v << np.maximum(-sh, 0))
        inv = self.inv_table()[j]
        # d * inv has INV_TYPE.frac + k fractional bits; z keeps Z_FRAC of them, truncated (an
        # arithmetic shift in both engines; |r| < sqrt(n) always fits z's integer bits).
        if wide:
            shift = np.broadcast_to(INV_TYPE.frac + k - Z_FRAC, d.shape)
            return np.frompyfunc(lambda a, b: a >> b, 2, 1)(d * exact_ints(inv, self.sums_bits(g)), shift).astype(np.int64)
        return (d * inv) >> (INV_TYPE.frac + k - Z_FRAC)

    def _pre_round(self, g: Graph, x: np.ndarray) -> tuple[np.ndarray, int]:
        z = self._normalised(g, x)
        gr, br = quantize(self.gamma, self.gamma_t), quantize(self.beta, self.beta_t)
        frac = max(Z_FRAC + self.gamma_t.frac, self.beta_t.frac)
        acc = (z * gr) << (frac - Z_FRAC - self.gamma_t.frac)
        return acc + (br << (frac - self.beta_t.frac)), frac

    def fixed_forward(self, g: Graph, xs: list[np.ndarray]) -> np.ndarray:
        v, frac = self._pre_round(g, xs[0])
        return requant(v, frac, g.tensor(self.output).type)

    def saturation(self, g: Graph, xs: list[np.ndarray]) -> int:
        v, frac = self._pre_round(g, xs[0])
        return out_of_range(v, frac, g.tensor(self.output).type)

    def error_bound(self, g: Graph, xs: list[np.ndarray], errs: list[np.ndarray]) -> np.ndarray:
        x = xs[0]
        n = self._n(g)
        f = g.tensor(self.inputs[0]).type.frac
        mu = x.mean(axis=-1, keepdims=True)
        sigma = np.sqrt(((x - mu) ** 2).mean(axis=-1, keepdims=True) + self.epsilon)
        r = (x - mu) / sigma
        e = np.max(errs[0], axis=-1, keepdims=True)
        # Input error: x_i - mean moves by at most 2e, sigma by at most 2e (a root mean square):
        # r moves by at most 2e (1 + |r|) / (sigma - 2e) while 2e < sigma.
        shrunk = np.maximum(sigma - 2 * e, 1e-30)
        dr_in = np.where(2 * e < sigma, 2 * e * (1 + np.abs(r)) / shrunk, np.inf)
        # Table: half a bin of 4/N in m moves 1/sqrt(m) by at most 1/N relative, the entry's
        # rounding by 2^-17 relative; eps rounded to the grid changes V by 1/2 in V's raw units.
        v_raw = n * n * sigma**2 * 2.0 ** (2 * f)
        rel = 1.0 / self.table_size + 2.0 * INV_TYPE.lsb + 0.25 / np.maximum(v_raw - 0.5, 0.5)
        r_hat = np.abs(r) + dr_in
        dz = dr_in + r_hat * rel + 2.0**-Z_FRAC  # z truncates
        gq = to_float(quantize(self.gamma, self.gamma_t), self.gamma_t)
        bq = to_float(quantize(self.beta, self.beta_t), self.beta_t)
        z_max = r_hat * (1 + rel) + 2.0**-Z_FRAC
        # An exactly representable gamma adds nothing, even where z is unbounded (inf * 0).
        dg = np.abs(gq - self.gamma)
        gamma_term = np.where(dg > 0, z_max * np.where(dg > 0, dg, 1.0), 0.0)
        return np.abs(gq) * dz + gamma_term + np.abs(bq - self.beta) + round_error(g.tensor(self.output).type)

    # ------------------------------------------------------------------ cost
    def lanes(self, g: Graph) -> int:
        return -(-self._n(g) // self.reuse_factor)

    def cost(self, ctx: CostContext) -> LayerCost:
        g = ctx.graph
        t = g.tensor(self.output)
        x_t = g.tensor(self.inputs[0]).type
        n = self._n(g)
        rows = t.size // n
        zt = self.z_type(g)
        d_bits = x_t.width + int(math.ceil(math.log2(n + 1))) + 1
        v_bits = 2 * d_bits
        rf = self.reuse_factor
        mults = [(x_t.width, x_t.width), (d_bits, INV_TYPE.width), (zt.width, self.gamma_t.width)]
        mem = hw.memory_cost(self.table_size, INV_TYPE.width, 1)
        depth = 2 * int(math.ceil(math.log2(max(n, 2)))) + 8
        if rf > 1:
            return self._reuse_cost(ctx, n, rows, zt, d_bits, v_bits, mults, mem, depth)
        dsp = lut = 0.0
        for a, b in mults:
            per = hw.dsps_per_multiplier(a, b, ctx.dsp_kind)
            dsp += n * per
            lut += 0 if per else n * hw.lut_per_multiplier(a, b)
        # Two adder trees (S, Q), the n*x - S subtractors, the variance, the leading-one detector
        # and its shifter, the output adders.
        lut += (n - 1) * (hw.lut_per_adder(d_bits) + hw.lut_per_adder(v_bits)) + n * hw.lut_per_adder(d_bits)
        lut += 2 * hw.lut_per_adder(v_bits) + hw.mux_luts(v_bits, v_bits) + n * hw.lut_per_adder(t.type.width)
        words = rows if ctx.io_type == IOType.STREAM else 1
        return LayerCost(latency=words + depth, ii=words if ctx.io_type == IOType.STREAM else rows,
                         dsp=dsp, lut=lut + mem.lut, bram18=mem.bram18, ff=n * (2 * d_bits + zt.width + t.type.width),
                         multipliers=3 * n * rows if ctx.io_type == IOType.PARALLEL else 3 * n, macs=3 * n * rows)

    def _reuse_cost(self, ctx: CostContext, n: int, rows: int, zt: FixedType, d_bits: int, v_bits: int,
                    mults: list[tuple[int, int]], mem: Any, depth: int) -> LayerCost:
        """The time-shared kernel (layernorm.h, layernorm_step): `lanes` copies of the three
        multipliers, each serving `reuse_factor` elements of a row; the sums of row t and the
        outputs of row t-1 share each step of reuse_factor cycles, so a call takes rows + 1 steps."""
        g = ctx.graph
        x_t, out_t = g.tensor(self.inputs[0]).type, g.tensor(self.output).type
        rf, lanes = self.reuse_factor, self.lanes(g)
        dsp = lut = 0.0
        for a, b in mults:
            per = hw.dsps_per_multiplier(a, b, ctx.dsp_kind)
            dsp += lanes * per
            lut += 0 if per else lanes * hw.lut_per_multiplier(a, b)
        # Lane adder trees and the S, Q accumulators; per lane the n*x - S subtractor, the output
        # adder and the two RF:1 multiplexers reading its elements of the two row buffers; the
        # variance, leading-one detector and shifter once.
        lut += (lanes - 1) * (hw.lut_per_adder(d_bits) + hw.lut_per_adder(v_bits))
        lut += hw.lut_per_adder(d_bits) + hw.lut_per_adder(v_bits)
        lut += lanes * (hw.lut_per_adder(d_bits) + hw.lut_per_adder(out_t.width) + 2 * hw.mux_luts(rf, x_t.width))
        lut += 2 * hw.lut_per_adder(v_bits) + hw.mux_luts(v_bits, v_bits)
        # gamma and beta in one bank per lane (the lane reads one word a cycle).
        gm = hw.memory_cost(lanes * rf, self.gamma_t.width, lanes)
        bm = hw.memory_cost(lanes * rf, self.beta_t.width, lanes)
        steps = rows + 1
        ff = 2 * n * x_t.width + n * out_t.width + lanes * (2 * d_bits + zt.width) + 2 * v_bits
        return LayerCost(latency=steps * rf + depth, ii=steps * rf, dsp=dsp, lut=lut + mem.lut + gm.lut + bm.lut,
                         bram18=mem.bram18 + gm.bram18 + bm.bram18, ff=ff, multipliers=3 * lanes, macs=3 * n * rows,
                         note=f"{lanes} lanes x {rf} cycles per row")

    def stream_process(self, ctx: CostContext, cost: LayerCost) -> ProcessModel:
        """layernorm.h in io_stream: at reuse factor 1 a word per cycle; beyond, rows + 1 steps
        of reuse_factor cycles, the first only reading, the last only writing (the previous
        row's outputs leave at the end of the step that reads the next row)."""
        rf = self.reuse_factor
        rows = ctx.graph.tensor(self.output).size // self._n(ctx.graph)
        if rf == 1:
            return process(Step(rows, 1, (0,), (0,), output_delay(cost)))
        late = rf - 1 + output_delay(cost)
        return process(Step(1, rf, (0,), ()), Step(rows - 1, rf, (0,), (0,), late), Step(1, rf, (), (0,), late))

    # ------------------------------------------------------------------ HLS
    def hls(self, ctx: HlsContext) -> HlsBinding:
        g = ctx.graph
        t = g.tensor(self.output)
        n = self._n(g)
        lname = ctx.lname(self)
        zt = self.z_type(g)
        frac = max(Z_FRAC + self.gamma_t.frac, self.beta_t.frac)
        L = dict(cfg=f"{lname}_config", size=t.size, n=n, n_table=self.table_size, reuse_factor=self.reuse_factor,
                 lanes=self.lanes(g),
                 log_n_table=int(round(math.log2(self.table_size))), eps_raw=self._eps_raw(g),
                 inv_t=INV_TYPE.cpp(), inv_bits=INV_TYPE.width, z_t=zt.cpp(),
                 gamma_t=self.gamma_t.cpp(), gamma_bits=self.gamma_t.width, beta_t=self.beta_t.cpp(),
                 beta_bits=self.beta_t.width,
                 acc_t=FixedType(62, 62 - frac, True).cpp(), v_bits=self.sums_bits(g),
                 sums_t="long long" if self.sums_bits(g) <= FAST_BITS else f"ap_int<{self.sums_bits(g)}>", acc_frac=frac, z_frac=Z_FRAC, gamma_frac=self.gamma_t.frac,
                 beta_frac=self.beta_t.frac, inv_frac=INV_TYPE.frac, in_t=ctx.ctype(self.inputs[0]), out_t=ctx.ctype(self.output),
                 x=ctx.var(self.inputs[0]), y=ctx.var(self.output), tab=f"{lname}_inv", gm=f"{lname}_gamma",
                 bt=f"{lname}_beta")
        return HlsBinding("hwprune/layernorm.h", render("layernorm.j2", "config", L=L), render("layernorm.j2", "call", L=L),
                          weights=[WeightArray(f"{lname}_inv", self.inv_table(), INV_TYPE),
                                   WeightArray(f"{lname}_gamma", quantize(self.gamma, self.gamma_t), self.gamma_t),
                                   WeightArray(f"{lname}_beta", quantize(self.beta, self.beta_t), self.beta_t)])


# ---------------------------------------------------------------------- ONNX import

@onnx_op("LayerNormalization")
def _import_layernorm(ctx: Any, node: Any) -> None:
    from hwprune.frontend.onnx_import import attrs

    shape = ctx.shape(node.input[0])
    a = attrs(node)
    axis = int(a.get("axis", -1))
    rank = len(shape) + 1
    if axis < 0:
        axis += rank
    if axis != rank - 1:
        raise ctx.error(node, f"only normalisation over the last axis is supported (axis={a.get('axis', -1)} of rank {rank})")
    gamma = ctx.const(node.input[1]) if len(node.input) > 1 and node.input[1] else np.ones(shape[-1])
    beta = ctx.const(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(shape[-1])
    if gamma is None or beta is None:
        raise ctx.error(node, "scale and bias must be constants")
    n = shape[-1]
    gamma = np.broadcast_to(np.asarray(gamma, dtype=np.float64).reshape(-1), (n,)).copy()
    beta = np.broadcast_to(np.asarray(beta, dtype=np.float64).reshape(-1), (n,)).copy()
    extra = {o for o in node.output[1:] if o}
    used = {i for n in ctx.model.graph.node for i in n.input} | {o.name for o in ctx.model.graph.output}
    if extra & used:
        raise ctx.error(node, "the mean / inverse-deviation outputs are not supported (only Y may be used)")
    ctx.add(LayerNorm(ctx.layer_name(node), [node.input[0]], [node.output[0]], gamma=gamma, beta=beta,
                      epsilon=float(a.get("epsilon", 1e-5))), shape)
