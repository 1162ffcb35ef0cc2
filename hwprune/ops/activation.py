"""Activations: ReLU, LeakyReLU, PReLU, ELU, Sigmoid, Tanh, Erf, GELU (elementwise) and Softmax.

Piecewise-linear ones are exact up to one final rounding. Sigmoid, Tanh and the negative
branch of ELU, Erf and GELU (exact and tanh form; identity from the top of its table range on)
read a lookup table: the index is computed from the input's raw bits with shifts
and clamps only (so numpy and C++ agree exactly); each entry holds f(centre of its bin) already
in the output type. Softmax is table-based too (exp over [-R, 0], a normalised reciprocal);
docs/activations.md derives every error bound that `error_bound` implements.

In io_stream the table activations and Softmax take a reuse factor RF: ceil(word / RF) lanes
(Softmax: ceil(n / RF) per row of n keys) each serve RF elements over RF cycles, with one table
copy per two lanes; the numerics do not change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from hwprune.fixed import FixedType, Overflow, Rounding, exact_ints, quantize, requantize, to_float
from hwprune.ir.channels import ConstantChannels
from hwprune.ir.graph import Graph, IOType, Layer, TensorKind
from hwprune.ops.base import (
    CostContext, HlsBinding, HlsContext, LayerCost, OpMixin, ProcessModel, Step, WeightArray, auto_weight_type, onnx_op,
    out_of_range, output_delay, process, render, requant, round_error, type_bits,
)
from hwprune.sim import resources as hw

# Table ranges (powers of two so the bin width is a power of two): outside them the function
# is within the documented tail error of its limit.
TABLE_RANGE: dict[str, tuple[float, float]] = {"sigmoid": (-8.0, 8.0), "tanh": (-4.0, 4.0), "elu": (-8.0, 0.0),
                                               "erf": (-4.0, 4.0), "gelu": (-8.0, 8.0), "gelu_tanh": (-8.0, 8.0)}
# Lipschitz constants used by the error bounds (GELU: max |d/dx x·Φ(x)| = Φ(√2) + √2·φ(√2) ≈ 1.1289).
LIPSCHITZ = {"sigmoid": 0.25, "tanh": 1.0, "erf": 2.0 / math.sqrt(math.pi), "gelu": 1.13, "gelu_tanh": 1.13}
# Table kinds that return their input unchanged from the top of the table range on.
IDENTITY_ABOVE = ("gelu", "gelu_tanh")
SOFTMAX_EXP_RANGE = 8.0  # exp table covers d = x - max in [-8, 0]
RECIP_TYPE = FixedType(18, 1, False)  # 1/m for m in [1, 2): values in (0.5, 1]
EXP_TYPE = FixedType(18, 1, False)  # exp(d) for d <= 0: values in (0, 1]
# Kinds that read a table: the ones a reuse factor time-shares.
TABLE_KINDS = tuple(TABLE_RANGE)


def settle_reuse_factor(layer: Layer, n: int, rf: int) -> int:
    """The fewest cycles that keep ceil(n / rf) lanes busy (RF 64 over 96 elements: 2 lanes and
    48 cycles, not 64 cycles with idle lanes), as LayerNorm settles its own."""
    if rf < 1:
        from hwprune.errors import ConfigError

        raise ConfigError(f"layer {layer.name}: reuse factor {rf} must be a positive whole number (1 = fully parallel)")
    lanes = -(-n // rf)
    return -(-n // lanes)


def reuse_factor_choices(layer: Layer, n: int, candidates: Sequence[int]) -> list[int]:
    """The settled reuse factors of the candidates up to n, each once."""
    return sorted({settle_reuse_factor(layer, n, r) for r in candidates if r <= n}) or [1]


def _f(kind: str, alpha: float) -> Callable[[np.ndarray], np.ndarray]:
    if kind == "sigmoid":
        return lambda x: 0.5 * (1.0 + np.tanh(0.5 * x))  # = 1/(1+exp(-x)) without overflow
    if kind == "tanh":
        return np.tanh
    if kind == "elu":
        return lambda x: np.where(x >= 0, x, alpha * (np.exp(np.minimum(x, 0)) - 1.0))
    if kind == "erf":
        return _erf
    if kind == "gelu":
        return lambda x: 0.5 * x * (1.0 + _erf(np.asarray(x, dtype=np.float64) / math.sqrt(2.0)))
    if kind == "gelu_tanh":
        return lambda x: 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * np.asarray(x, dtype=np.float64) ** 3)))
    raise AssertionError(kind)


_erf_scalar = np.vectorize(math.erf, otypes=[np.float64])


def _erf(x: np.ndarray) -> np.ndarray:
    return _erf_scalar(np.asarray(x, dtype=np.float64))


@dataclass(frozen=True)
class TableIndex:
    """idx = clamp(floor((x - lo) * 2**s), 0, n-1) for a table of n bins over [lo, hi)
    (2**s = n / (hi - lo), lo * 2**s = lo_bin an integer), on raw integers:
    idx = clamp(floor(raw * 2**-shift) - lo_bin, 0, n-1) with shift = frac - s.

    Exact for any input width: values are clamped to a band well beyond the table before any
    shift that could leave int64 (the clamped index does not change). The kernel computes the
    same function as comparisons with lo and hi and a small shift (activation.h)."""

    lo_bin: int
    shift: int
    n: int
    lo: int = 0
    hi: int = 0

    @classmethod
    def make(cls, x_frac: int, lo: float, hi: float, n: int) -> "TableIndex":
        s = int(round(math.log2(n / (hi - lo))))  # bins per unit = 2**s
        return cls(lo_bin=int(lo * 2**s), shift=x_frac - s, n=n, lo=int(lo), hi=int(hi))

    def bins(self, raw: np.ndarray) -> np.ndarray:
        """floor(raw * 2**-shift), clamped to a band of +-2**40 around 0 (int64)."""
        band = 1 << 40
        r = np.asarray(raw)
        if self.shift >= 0:
            if r.dtype == object:
                q = r >> self.shift
            else:
                q = r.astype(np.int64) >> min(self.shift, 63)
        else:
            q = np.clip(r, -band, band).astype(np.int64) << -self.shift
        return np.clip(q, -band, band).astype(np.int64)

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        return np.clip(self.bins(raw) - self.lo_bin, 0, self.n - 1)

    def unclamped(self, raw: np.ndarray) -> np.ndarray:
        """The bin before clamping (>= n exactly when x >= hi; the band keeps it int64)."""
        return self.bins(raw) - self.lo_bin


@dataclass
class Activation(OpMixin, Layer):
    """An elementwise activation. In io_stream the table kinds (TABLE_KINDS) take the layer's
    reuse factor: ceil(word / RF) lanes each serve RF elements of a stream word over RF cycles
    (element r * lanes + c in cycle r on lane c), one table copy per two lanes. ReLU, LeakyReLU
    and PReLU keep RF 1 (a comparator and at most one small multiplier per element: an RF:1
    multiplexer in front of a lane would cost about what it saves). In io_parallel the activation
    is unrolled into the pipelined top and the reuse factor settles at 1 (no time sharing)."""

    kind: str = "relu"  # relu | leaky_relu | prelu | elu | sigmoid | tanh | erf | gelu | gelu_tanh
    alpha: float = 0.01  # leaky_relu / elu
    slope: np.ndarray = field(default_factory=lambda: np.zeros(0))  # prelu (per channel or 1)
    axis: int = 0  # prelu channel axis (logical)
    coef_t: FixedType | None = None
    table_size: int = 1024
    # Cycles each lane serves per stream word (io_stream, table kinds); 1 = a word per cycle.
    reuse_factor: int = 1

    op_type: ClassVar[str] = "Activation"

    @property
    def type_name(self) -> str:
        return {"relu": "Relu", "leaky_relu": "LeakyRelu", "prelu": "PRelu", "elu": "Elu", "sigmoid": "Sigmoid",
                "tanh": "Tanh", "erf": "Erf", "gelu": "Gelu", "gelu_tanh": "Gelu"}[self.kind]

    def required_perms(self, g: Graph) -> list[tuple[int, ...] | None]:
        t = g.tensor(self.inputs[0])
        if self.kind != "prelu" or self.slope.size <= 1 or t.perm[-1] == self.axis:
            return [None]
        return [tuple(a for a in range(t.rank) if a != self.axis) + (self.axis,)]

    def output_perm(self, g: Graph) -> tuple[int, ...]:
        return g.tensor(self.inputs[0]).perm

    def carry_constant_channels(self, g: Graph, port: int, cc: ConstantChannels) -> ConstantChannels | None:
        x = cc.value
        if self.kind == "relu":
            return cc.with_values(np.maximum(x, 0))
        if self.kind in ("leaky_relu", "prelu"):
            s = np.atleast_1d(self.slope if self.kind == "prelu" else np.array([self.alpha], dtype=np.float64))
            if s.size > 1:
                if self.axis != cc.axis:
                    return None
                s = s[cc.index]
            return cc.with_values(np.where(x >= 0, x, x * s))
        return cc.with_values(_f(self.kind, self.alpha)(x))

    def remove_carried_channels(self, g: Graph, port: int, cc: ConstantChannels) -> None:
        if self.kind == "prelu" and np.atleast_1d(self.slope).size > 1:
            self.slope = np.atleast_1d(self.slope)[cc.keep_mask(np.atleast_1d(self.slope).size)]

    def _time_shared(self, g: Graph) -> bool:
        """Whether the reuse factor applies: a table kind in io_stream."""
        return self.kind in TABLE_KINDS and g.io_type == IOType.STREAM

    def reuse_factor_options(self, g: Graph, candidates: Sequence[int]) -> list[int]:
        """The reuse factors the budget search may give this layer, as infer_types settles them
        (only 1 where time sharing does not apply)."""
        if not self._time_shared(g):
            return [1]
        return reuse_factor_choices(self, g.tensor(self.output).word, candidates)

    def infer_types(self, g: Graph, prec: Any) -> None:
        p = prec.resolve(self.name, self.type_name)
        self.table_size = p.table_size
        rf = settle_reuse_factor(self, g.tensor(self.output).word, p.reuse_factor)
        self.reuse_factor = rf if self._time_shared(g) else 1
        if self.kind in ("leaky_relu", "prelu"):
            coefs = np.atleast_1d(self.slope if self.kind == "prelu" else np.array([self.alpha]))
            self.coef_t = p.weight or auto_weight_type(coefs, 18)
        if self.kind == "relu":
            from hwprune.ops.quant import dictated_type, explicit_result

            # The ReLU of an exact (QONNX-dictated) value is exact in the same type.
            t = dictated_type(g, self.inputs[0])
            if t is not None and explicit_result(prec, self.name, self.type_name) is None:
                g.tensor(self.output).type = t
                return
        g.tensor(self.output).type = p.result

    # -------------------------------------------------------------- semantics
    def _slopes(self, n: int) -> np.ndarray:
        s = np.atleast_1d(self.slope if self.kind == "prelu" else np.array([self.alpha], dtype=np.float64))
        return np.broadcast_to(s, (n,))

    def float_forward(self, g: Graph, xs: list[np.ndarray]) -> np.ndarray:
        x = xs[0]
        if self.kind == "relu":
            return np.maximum(x, 0)
        if self.kind in ("leaky_relu", "prelu"):
            return np.where(x >= 0, x, x * self._slopes(x.shape[-1]))
        return _f(self.kind, self.alpha)(x)

    def _index(self, g: Graph) -> TableIndex:
        lo, hi = TABLE_RANGE[self.kind]
        return TableIndex.make(g.tensor(self.inputs[0]).type.frac, lo, hi, self.table_size)

    def table(self, g: Graph) -> np.ndarray:
        """Raw table entries in the output type: f at the centre of each bin."""
        lo, hi = TABLE_RANGE[self.kind]
        binw = (hi - lo) / self.table_size
        centres = lo + (np.arange(self.table_size) + 0.5) * binw
        return quantize(_f(self.kind, self.alpha)(centres), g.tensor(self.output).type)

    def _pre_round(self, g: Graph, x: np.ndarray) -> tuple[np.ndarray, int]:
        """Exact value before the output rounding (piecewise-linear kinds)."""
        x_t = g.tensor(self.inputs[0]).type
        if self.kind == "relu":
            x = exact_ints(x, type_bits(x_t))
            return np.maximum(x, 0), x_t.frac
        bits = type_bits(x_t) + type_bits(self.coef_t) + max(self.coef_t.frac, 0) + 1
        x = exact_ints(x, bits)
        cr = exact_ints(quantize(self._slopes(x.shape[-1]), self.coef_t), bits)
        frac = x_t.frac + self.coef_t.frac
        if self.coef_t.frac < 0:  # slopes on a coarse grid: align x the other way
            return np.where(x >= 0, x, x * (cr << -self.coef_t.frac)), x_t.frac
        return np.where(x >= 0, x << self.coef_t.frac, x * cr), frac

    def fixed_forward(self, g: Graph, xs: list[np.ndarray]) -> np.ndarray:
        out_t = g.tensor(self.output).type
        x = xs[0]
        if self.kind in ("relu", "leaky_relu", "prelu"):
            v, frac = self._pre_round(g, x)
            return requant(v, frac, out_t)
        index = self._index(g)
        looked_up = self.table(g)[index(x)]
        if self.kind == "elu":
            return np.where(x >= 0, requant(x, g.tensor(self.inputs[0]).type.frac, out_t), looked_up)
        if self.kind in IDENTITY_ABOVE:
            return np.where(index.unclamped(x) >= index.n, requant(x, g.tensor(self.inputs[0]).type.frac, out_t), looked_up)
        return looked_up

    def saturation(self, g: Graph, xs: list[np.ndarray]) -> int:
        if self.kind in ("relu", "leaky_relu", "prelu"):
            v, frac = self._pre_round(g, xs[0])
            return out_of_range(v, frac, g.tensor(self.output).type)
        if self.kind in IDENTITY_ABOVE:
            x = xs[0].astype(np.int64)
            above = x[self._index(g).unclamped(x) >= self.table_size]
            return out_of_range(above, g.tensor(self.inputs[0]).type.frac, g.tensor(self.output).type)
        return 0

    def error_bound(self, g: Graph, xs: list[np.ndarray], errs: list[np.ndarray]) -> np.ndarray:
        x, e = xs[0], errs[0]
        out_t = g.tensor(self.output).type
        r = round_error(out_t)
        if self.kind == "relu":
            return e + r
        if self.kind in ("leaky_relu", "prelu"):
            s = self._slopes(x.shape[-1])
            sq = to_float(quantize(s, self.coef_t), self.coef_t)
            return e * np.maximum(1.0, np.abs(sq)) + np.abs(x) * np.abs(sq - s) + r
        lo, hi = TABLE_RANGE[self.kind]
        binw = (hi - lo) / self.table_size
        f = _f(self.kind, self.alpha)
        if self.kind == "elu":
            lip = max(1.0, abs(self.alpha))
            tail = abs(self.alpha) * math.exp(lo)
        elif self.kind in IDENTITY_ABOVE:
            lip = LIPSCHITZ[self.kind]
            # Below the range f is ~0 (|f| <= 8·Φ(-8) ~ 5e-15); above it the identity differs from
            # f by x·Φ(-x), as small: both far under any output lsb, bounded generously here.
            far = np.linspace(-64.0, lo + binw, 2049)
            near_top = np.linspace(hi - binw, 64.0, 2049)
            tail = float(max(np.max(np.abs(f(far) - f(np.array(lo + binw / 2)))), np.max(np.abs(near_top - f(near_top))))) + 1e-12
        else:
            lip = LIPSCHITZ[self.kind]
            tail = float(max(abs(f(np.array(lo)) - f(np.array(-1e9))), abs(f(np.array(1e9)) - f(np.array(hi)))))
        # The table reads f(centre of the bin of x_q): within half a bin inside the range;
        # beyond the range, the tail of f plus a bin.
        outside = (x - e < lo + binw) | (x + e >= hi - binw)
        bin_err = np.where(outside, tail + lip * binw, lip * binw / 2)
        if self.kind == "elu":
            bin_err = np.where(x - e >= 0, 0.0, bin_err)
        return lip * e + bin_err + r

    # -------------------------------------------------------------- cost
    def _rf(self, g: Graph) -> int:
        """The reuse factor in effect (1 where time sharing does not apply)."""
        if not self._time_shared(g):
            return 1
        if self.reuse_factor < 1:
            settle_reuse_factor(self, 1, self.reuse_factor)  # raises the ConfigError
        return self.reuse_factor

    def lanes(self, g: Graph) -> int:
        """Table lanes of the io_stream kernel: ceil(word / RF)."""
        return -(-g.tensor(self.output).word // self._rf(g))

    def _table_copies(self, g: Graph, lanes: int) -> tuple[int, int]:
        """(copies, lanes per copy) of the table for `lanes` readers in one cycle: a BRAM18 is
        dual ported, so two lanes share a copy; a LUT ROM serves one lane."""
        mem = hw.memory_cost(self.table_size, g.tensor(self.output).type.width, 1)
        per = 2 if mem.bram18 else 1
        return -(-lanes // per), per

    def cost(self, ctx: CostContext) -> LayerCost:
        t = ctx.graph.tensor(self.output)
        x_t = ctx.graph.tensor(self.inputs[0]).type
        if self._rf(ctx.graph) > 1:
            return self._reuse_cost(ctx)
        lanes = t.size if ctx.io_type == IOType.PARALLEL else t.word
        words = 1 if ctx.io_type == IOType.PARALLEL else t.words
        lut = ff = dsp = bram = 0.0
        if self.kind == "relu":
            lut = lanes * t.type.width / 2
        elif self.kind in ("leaky_relu", "prelu"):
            d = hw.dsps_per_multiplier(x_t.width, self.coef_t.width, ctx.dsp_kind)
            dsp = lanes * d
            lut = lanes * (t.type.width + (0 if d else hw.lut_per_multiplier(x_t.width, self.coef_t.width)))
        else:
            # One table read port per lane; a BRAM18 is dual ported, so two lanes share a copy.
            mem = hw.memory_cost(self.table_size, t.type.width, 1)
            copies, _ = self._table_copies(ctx.graph, lanes)
            bram, lut = mem.bram18 * copies, mem.lut * copies + lanes * (x_t.width + 8)
            if self.kind in IDENTITY_ABOVE:
                lut += lanes * t.type.width  # the 2:1 choice between table and input
        ff = lanes * t.type.width
        return LayerCost(latency=words + 2, ii=words, dsp=dsp, lut=lut, ff=ff, bram18=bram)

    def _reuse_cost(self, ctx: CostContext) -> LayerCost:
        """The time-shared table kernel (activation.h, io_stream): `lanes` table lanes, each
        reading its elements of the held input word through an RF:1 multiplexer; the output word
        fills over RF cycles (registers with enables) and leaves once complete."""
        g = ctx.graph
        t = g.tensor(self.output)
        x_t = g.tensor(self.inputs[0]).type
        rf, lanes = self._rf(g), self.lanes(g)
        mem = hw.memory_cost(self.table_size, t.type.width, 1)
        copies, _ = self._table_copies(g, lanes)
        lut = mem.lut * copies + lanes * (x_t.width + 8 + hw.mux_luts(rf, x_t.width))
        if self.kind in IDENTITY_ABOVE:
            lut += lanes * t.type.width  # the 2:1 choice between table and input
        return LayerCost(latency=t.words * rf + 2, ii=t.words * rf, lut=lut, ff=t.word * (x_t.width + t.type.width),
                         bram18=mem.bram18 * copies, note=f"{lanes} lanes x {rf} cycles per word")

    # -------------------------------------------------------------- HLS
    def hls(self, ctx: HlsContext) -> HlsBinding:
        g = ctx.graph
        t = g.tensor(self.output)
        lname = ctx.lname(self)
        params = np.zeros(1, dtype=np.int64)
        param_t = FixedType(8, 8)
        idx = TableIndex(0, 0, 0, 1)
        n_chan = 1
        if self.kind in ("leaky_relu", "prelu"):
            n_chan = t.word if (self.kind == "prelu" and self.slope.size > 1) else 1
            params = quantize(self._slopes(n_chan), self.coef_t)
            param_t = self.coef_t
        elif self.kind != "relu":
            params = self.table(g)
            param_t = t.type
            idx = self._index(g)
        rf, lanes = self._rf(g), self.lanes(g)
        # The table as `copies` identical ROMs (activation.h partitions the first dimension), one
        # per `per_copy` lanes of the io_stream kernel: what the cost model charges. io_parallel
        # and the kinds without a table keep one copy that every element reads.
        copies, per_copy = 1, max(t.size, 1)
        if self.kind in TABLE_KINDS and ctx.io_type == IOType.STREAM:
            copies, per_copy = self._table_copies(g, lanes)
        op = {"relu": "relu_op", "leaky_relu": "prelu_op", "prelu": "prelu_op", "elu": "elu_op",
              "sigmoid": "table_op", "tanh": "table_op", "erf": "table_op", "gelu": "gelu_op",
              "gelu_tanh": "gelu_op"}[self.kind]
        L = dict(cfg=f"{lname}_config", size=t.size, word=t.word, n_chan=n_chan, n_params=int(params.size),
                 reuse_factor=rf, lanes=lanes, copies=copies, per_copy=per_copy,
                 param_t=param_t.cpp(), param_bits=param_t.width, param_signed="true" if param_t.signed else "false",
                 lo=idx.lo, hi=idx.hi, lo_bin=idx.lo_bin, shift=idx.shift, n_table=idx.n, op=op,
                 in_t=ctx.ctype(self.inputs[0]), out_t=ctx.ctype(self.output),
                 x=ctx.var(self.inputs[0]), y=ctx.var(self.output), p=f"{lname}_p")
        table = WeightArray(f"{lname}_p", np.tile(params, copies), param_t, dims=(copies, int(params.size)))
        return HlsBinding("hwprune/activation.h", render("activation.j2", "config", L=L),
                          render("activation.j2", "call", L=L), weights=[table])


@dataclass
class Softmax(OpMixin, Layer):
    """y_i = e_i / s with e_i = exp(x_i - max) from a table over [-R, 0] (left bin edges, so the
    maximum contributes exactly 1 and s >= 1) and 1/s = recip(m) * 2**-k, s = m * 2**k with m in
    [1, 2) read from a second table. All steps are integer operations.

    An optional second input is a padding mask over the keys (the last axis; an integer model
    input, 0 = padding, shared by every row of a sample): padded keys are left out of the max
    and the sum and get probability exactly 0 — what an additive -1e4/-inf mask or a `Where`
    computes in float. A row whose keys are all padding ignores the mask, as an additive mask does.

    io_stream, reuse factor RF > 1: ceil(n / RF) lanes serve a row in three passes of RF cycles
    (the max, the exponentials and their sum, the normalised outputs), each pass on a different
    row, so a call takes rows + 2 steps of RF cycles (softmax.h). In io_parallel the reuse factor
    settles at 1 (the rows are unrolled into the pipelined top)."""

    axis: int = -1
    table_size: int = 1024
    # Cycles per pass over a row (io_stream); 1 = a row per cycle.
    reuse_factor: int = 1

    op_type: ClassVar[str] = "Softmax"

    def required_perms(self, g: Graph) -> list[tuple[int, ...] | None]:
        t = g.tensor(self.inputs[0])
        mask = [None] * (len(self.inputs) - 1)
        if t.perm[-1] == self.axis:
            return [None, *mask]
        return [tuple(a for a in range(t.rank) if a != self.axis) + (self.axis,), *mask]

    @property
    def masked(self) -> bool:
        return len(self.inputs) == 2

    def _keep(self, xs: list[np.ndarray]) -> np.ndarray | None:
        """Which keys count, broadcast to the scores (batch, ..., keys); None without a mask."""
        if not self.masked:
            return None
        keep = np.asarray(xs[1]).reshape(xs[1].shape[0], -1) != 0
        keep = np.where(keep.any(axis=-1, keepdims=True), keep, True)
        return keep.reshape((keep.shape[0],) + (1,) * (xs[0].ndim - 2) + (keep.shape[1],))

    def output_perm(self, g: Graph) -> tuple[int, ...]:
        return g.tensor(self.inputs[0]).perm

    def reuse_factor_options(self, g: Graph, candidates: Sequence[int]) -> list[int]:
        """The reuse factors the budget search may give this layer, as infer_types settles them
        (only 1 in io_parallel)."""
        if g.io_type != IOType.STREAM:
            return [1]
        return reuse_factor_choices(self, self._n(g), candidates)

    def infer_types(self, g: Graph, prec: Any) -> None:
        p = prec.resolve(self.name, self.op_type)
        self.table_size = p.table_size
        rf = settle_reuse_factor(self, self._n(g), p.reuse_factor)
        self.reuse_factor = rf if g.io_type == IOType.STREAM else 1
        g.tensor(self.output).type = p.result

    def _n(self, g: Graph) -> int:
        return g.tensor(self.inputs[0]).shape[self.axis]

    def _rf(self, g: Graph) -> int:
        """The reuse factor in effect (1 in io_parallel)."""
        if g.io_type != IOType.STREAM:
            return 1
        if self.reuse_factor < 1:
            settle_reuse_factor(self, 1, self.reuse_factor)  # raises the ConfigError
        return self.reuse_factor

    def lanes(self, g: Graph) -> int:
        """Lanes of the io_stream kernel: ceil(n / RF)."""
        return -(-self._n(g) // self._rf(g))

    def float_forward(self, g: Graph, xs: list[np.ndarray]) -> np.ndarray:
        keep = self._keep(xs)
        x = xs[0] if keep is None else np.where(keep, xs[0], -np.inf)
        z = x - x.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=-1, keepdims=True)

    # Table parameters -------------------------------------------------------
    def _exp_index(self, g: Graph) -> TableIndex:
        # Index on -d: bins of width R/N starting at 0 (d = 0 -> bin 0 -> exp(0) = 1).
        return TableIndex.make(g.tensor(self.inputs[0]).type.frac, 0.0, SOFTMAX_EXP_RANGE, self.table_size)

    def exp_table(self) -> np.ndarray:
        binw = SOFTMAX_EXP_RANGE / self.table_size
        return quantize(np.exp(-np.arange(self.table_size) * binw), EXP_TYPE)

    def recip_table(self) -> np.ndarray:
        n = self.table_size
        return quantize(1.0 / (1.0 + (np.arange(n) + 0.5) / n), RECIP_TYPE)

    def _sum_bits(self, g: Graph) -> int:
        return EXP_TYPE.frac + max(int(math.ceil(math.log2(self._n(g) + 1))), 1) + 1

    def _pre_round(self, g: Graph, x: np.ndarray, keep: np.ndarray | None = None) -> tuple[np.ndarray, int]:
        x = exact_ints(x, type_bits(g.tensor(self.inputs[0]).type) + 1)
        n_tab = self.table_size
        if keep is None:
            neg_d = x.max(axis=-1, keepdims=True) - x  # >= 0, exact
        else:  # padded keys stand in as the row's minimum, so the max is over the kept keys
            mx = np.where(keep, x, x.min(axis=-1, keepdims=True)).max(axis=-1, keepdims=True)
            neg_d = np.where(keep, mx - x, 0)
        q = self._exp_index(g).bins(neg_d)  # floor(-d * 2**s): the bin; >= n_tab beyond the range
        e = self.exp_table()[np.minimum(q, n_tab - 1)]
        e = np.where(q >= n_tab, 0, e)  # beyond the range the exponential is taken as 0
        if keep is not None:
            e = np.where(keep, e, 0)  # so is a padded key's
        s = e.sum(axis=-1, keepdims=True)  # raw with EXP_TYPE.frac fractional bits, >= 2**frac
        msb = (np.frexp(np.maximum(s, 1).astype(np.float64))[1] - 1).astype(np.int64)  # bit length - 1, exact
        log_n = int(round(math.log2(n_tab)))
        below = s - (np.int64(1) << msb)
        j = np.where(msb >= log_n, below >> np.maximum(msb - log_n, 0), below << np.maximum(log_n - msb, 0))
        inv = self.recip_table()[j]
        k = msb - EXP_TYPE.frac  # s = m * 2**k
        kmax = self._sum_bits(g) - EXP_TYPE.frac
        prod = (e * inv) << (kmax - k)
        return prod, EXP_TYPE.frac + RECIP_TYPE.frac + kmax

    def fixed_forward(self, g: Graph, xs: list[np.ndarray]) -> np.ndarray:
        v, frac = self._pre_round(g, xs[0], self._keep(xs))
        return requant(v, frac, g.tensor(self.output).type)

    def error_bound(self, g: Graph, xs: list[np.ndarray], errs: list[np.ndarray]) -> np.ndarray:
        y = self.float_forward(g, xs)
        n = self._n(g)
        binw = SOFTMAX_EXP_RANGE / self.table_size
        e_in = np.max(errs[0], axis=-1, keepdims=True)
        # d log y_i / d x_j = delta_ij - y_j: an input perturbation of at most e moves log y by 2e.
        rel = (2 * e_in + 2 * binw + 2.0 / self.table_size + n * math.exp(-SOFTMAX_EXP_RANGE)
               + 4 * n * EXP_TYPE.lsb + RECIP_TYPE.lsb)
        with np.errstate(over="ignore"):  # saturated inputs: the bound is infinite, honestly
            return y * (np.exp(rel) - 1) + n * math.exp(-SOFTMAX_EXP_RANGE) + round_error(g.tensor(self.output).type)

    def cost(self, ctx: CostContext) -> LayerCost:
        g = ctx.graph
        t = g.tensor(self.output)
        n = self._n(g)
        rows = t.size // n
        rf, lanes = self._rf(g), self.lanes(g)
        mem = hw.memory_cost(self.table_size, 18, 1)
        copies = math.ceil(lanes / 2)  # exp table copies (a BRAM18 has two read ports); recip: one
        d = hw.dsps_per_multiplier(18, 18, ctx.dsp_kind)
        words = rows if ctx.io_type == IOType.STREAM else 1
        depth = int(math.ceil(math.log2(max(n, 2)))) * 2 + 6
        if rf > 1:
            return self._reuse_cost(ctx, rows, lanes, copies, mem, d, depth)
        return LayerCost(latency=words * 1 + depth, ii=words if ctx.io_type == IOType.STREAM else rows,
                         dsp=lanes * d, bram18=mem.bram18 * (copies + 1), lut=mem.lut * (copies + 1) + lanes * 60,
                         ff=lanes * 40)

    def _reuse_cost(self, ctx: CostContext, rows: int, lanes: int, copies: int, mem: Any, d: float,
                    depth: int) -> LayerCost:
        """The time-shared kernel (softmax.h, io_stream): `lanes` units of each kind (exp table
        port, comparator, adder, 18x18 normalising multiplier) serve the three passes of three
        rows in each step of RF cycles, reading their keys of the held rows through RF:1
        multiplexers: the incoming row (max), the previous one (exponentials), the exponentials
        (normalise) and, with a padding mask, its bits. Rows + 2 steps per call."""
        g = ctx.graph
        n, rf = self._n(g), self._rf(g)
        x_t, out_t = g.tensor(self.inputs[0]).type, g.tensor(self.output).type
        mux = 2 * hw.mux_luts(rf, x_t.width) + hw.mux_luts(rf, EXP_TYPE.width) + (hw.mux_luts(rf, 1) if self.masked else 0)
        # The row's running max and sum, carried over the step's cycles.
        lut = mem.lut * (copies + 1) + lanes * (60 + mux) + hw.lut_per_max(x_t.width) + hw.lut_per_adder(self._sum_bits(g))
        # The held rows: incoming and previous inputs, the exponentials, the output word.
        ff = lanes * 40 + n * (2 * x_t.width + EXP_TYPE.width + out_t.width)
        steps = rows + 2
        return LayerCost(latency=steps * rf + depth, ii=steps * rf, dsp=lanes * d, bram18=mem.bram18 * (copies + 1),
                         lut=lut, ff=ff, note=f"{lanes} lanes x {rf} cycles per pass, {steps} steps")

    def stream_process(self, ctx: CostContext, cost: LayerCost) -> ProcessModel:
        """softmax.h: at reuse factor 1 a row (word) per trip; a mask is read once, with the
        first row. Beyond, rows + 2 steps of RF cycles: step t reads row t when it starts (t <
        rows) and writes row t - 2 in its last cycle (t >= 2)."""
        rf = self._rf(ctx.graph)
        first = (0, 1) if self.masked else (0,)
        if rf > 1:
            rows = ctx.words(self.inputs[0])
            late = rf - 1 + output_delay(cost)
            return process(Step(1, rf, first, ()), Step(1, rf, (0,) if rows > 1 else (), ()),
                           Step(rows - 2, rf, (0,), (0,), late), Step(min(rows, 2), rf, (), (0,), late))
        if not self.masked:
            return OpMixin.stream_process(self, ctx, cost)
        rows = ctx.words(self.inputs[0])
        per = cost.ii // rows
        d = per - 1 + output_delay(cost)
        return process(Step(1, per, (0, 1), (0,), d), Step(rows - 1, per, (0,), (0,), d))

    def hls(self, ctx: HlsContext) -> HlsBinding:
        g = ctx.graph
        t = g.tensor(self.output)
        n = self._n(g)
        idx = self._exp_index(g)
        lname = ctx.lname(self)
        kmax = self._sum_bits(g) - EXP_TYPE.frac
        # The exp table as `exp_copies` identical ROMs (softmax.h partitions the first dimension),
        # one per two lanes of the io_stream kernel; io_parallel keeps one that every key reads.
        stream = ctx.io_type == IOType.STREAM
        lanes = self.lanes(g)
        exp_copies, per_copy = (math.ceil(lanes / 2), 2) if stream else (1, n)
        L = dict(cfg=f"{lname}_config", size=t.size, n=n, n_table=self.table_size, reuse_factor=self._rf(g),
                 lanes=lanes, exp_copies=exp_copies, exp_per_copy=per_copy,
                 log_n_table=int(round(math.log2(self.table_size))), range=int(SOFTMAX_EXP_RANGE), shift=idx.shift,
                 exp_t=EXP_TYPE.cpp(), recip_t=RECIP_TYPE.cpp(), exp_bits=EXP_TYPE.width, recip_bits=RECIP_TYPE.width,
                 sum_t=FixedType(self._sum_bits(g), self._sum_bits(g) - EXP_TYPE.frac, False).cpp(),
                 sum_bits=self._sum_bits(g), exp_frac=EXP_TYPE.frac, kmax=kmax,
                 prod_t=FixedType(EXP_TYPE.width + RECIP_TYPE.width + kmax, EXP_TYPE.integer + RECIP_TYPE.integer, False).cpp(),
                 in_t=ctx.ctype(self.inputs[0]), out_t=ctx.ctype(self.output),
                 x=ctx.var(self.inputs[0]), y=ctx.var(self.output), e=f"{lname}_exp", r=f"{lname}_recip")
        L.update(masked=self.masked, m=ctx.var(self.inputs[1]) if self.masked else "",
                 m_t=ctx.ctype(self.inputs[1]) if self.masked else "")
        return HlsBinding("hwprune/softmax.h", render("softmax.j2", "config", L=L), render("softmax.j2", "call", L=L),
                          weights=[WeightArray(f"{lname}_exp", np.tile(self.exp_table(), exp_copies), EXP_TYPE,
                                               dims=(exp_copies, self.table_size)),
                                   WeightArray(f"{lname}_recip", self.recip_table(), RECIP_TYPE)])


# ---------------------------------------------------------------------- ONNX import

def _simple(kind: str) -> Callable[[Any, Any], None]:
    def imp(ctx: Any, node: Any) -> None:
        from hwprune.frontend.onnx_import import attrs

        a = attrs(node)
        default_alpha = 0.01 if kind == "leaky_relu" else 1.0
        layer = Activation(ctx.layer_name(node), [node.input[0]], [node.output[0]], kind=kind,
                           alpha=float(a.get("alpha", default_alpha)))
        ctx.add(layer, ctx.shape(node.input[0]))

    return imp


for _op, _kind in (("Relu", "relu"), ("LeakyRelu", "leaky_relu"), ("Elu", "elu"), ("Sigmoid", "sigmoid"), ("Tanh", "tanh"),
                   ("Erf", "erf")):
    onnx_op(_op)(_simple(_kind))


@onnx_op("Gelu")
def _import_gelu(ctx: Any, node: Any) -> None:
    """Opset-20 Gelu, and the Erf / tanh chains the exporters write (fused to Gelu on import,
    `frontend/fusion.py`)."""
    from hwprune.frontend.onnx_import import attrs

    approx = attrs(node).get("approximate", b"none")
    approx = approx.decode() if isinstance(approx, bytes) else str(approx)
    if approx not in ("none", "tanh"):
        raise ctx.error(node, f"approximate={approx!r} is not one of: none, tanh")
    kind = "gelu" if approx == "none" else "gelu_tanh"
    ctx.add(Activation(ctx.layer_name(node), [node.input[0]], [node.output[0]], kind=kind), ctx.shape(node.input[0]))


@onnx_op("PRelu")
def _import_prelu(ctx: Any, node: Any) -> None:
    slope = ctx.const(node.input[1])
    if slope is None:
        raise ctx.error(node, "the slope must be a constant")
    shape = ctx.shape(node.input[0])
    s = np.asarray(slope, dtype=np.float64)
    if s.size == 1:
        axis = len(shape) - 1
    elif ctx.source_opset < 7 and s.ndim == 1 and s.size == shape[0]:
        axis = 0  # opset 6 PRelu: one slope per channel (axis 1 with the batch)
    else:
        full = (1, *shape)
        cs = (1,) * (len(full) - s.ndim) + s.shape
        varying = [i for i, d in enumerate(cs) if d != 1]
        if len(varying) != 1 or varying[0] == 0 or cs[varying[0]] != full[varying[0]]:
            raise ctx.error(node, f"slope of shape {s.shape} must be a scalar or vary along one axis of {full}")
        axis = varying[0] - 1
    layer = Activation(ctx.layer_name(node), [node.input[0]], [node.output[0]], kind="prelu",
                       slope=s.reshape(-1), axis=axis)
    ctx.add(layer, shape)


@onnx_op("Softmax")
def _import_softmax(ctx: Any, node: Any) -> None:
    from hwprune.frontend.onnx_import import attrs

    shape = ctx.shape(node.input[0])
    axis = int(attrs(node).get("axis", -1))
    axis = axis + len(shape) + 1 if axis < 0 else axis
    if axis == 0:
        raise ctx.error(node, "softmax over the batch axis is not supported")
    ctx.add(Softmax(ctx.layer_name(node), [node.input[0]], [node.output[0]], axis=axis - 1), shape)


@onnx_op("MaskedSoftmax")
def _import_masked_softmax(ctx: Any, node: Any) -> None:
    """The fused padding mask (frontend/fusion.py fuse_key_mask): scores and the integer mask."""
    shape = ctx.shape(node.input[0])
    mask = ctx.tensor(node.input[1])
    if mask.kind != TensorKind.INDEX or mask.shape != (shape[-1],):
        raise ctx.error(node, f"the padding mask must be an integer input of {shape[-1]} keys per sample, got {mask.shape}")
    mask.index_range = max(mask.index_range, 2)
    ctx.add(Softmax(ctx.layer_name(node), [node.input[0], node.input[1]], [node.output[0]], axis=len(shape) - 1), shape)
