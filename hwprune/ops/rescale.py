"""Rescale: y = x * m[c] + b[c] with real multipliers, the requantization of scaled-integer
(QONNX/Brevitas) graphs. (ONNX Mul/Div by a constant import as a ScaleShift, hwprune/ops/batchnorm.py;
in a scaled-integer graph hwprune/passes/scales.py turns those into Rescales.)

The parameters are exact rationals (`fractions.Fraction`): a Brevitas export's scales are
float32 numbers, and what the import does with them (1/s, products s_in * s_w / s_out,
composing with a bias or a batch norm) stays exact until the one place where hardware needs
a finite word. The IR's float semantics is therefore the exact real-arithmetic meaning of the
QONNX graph. Optionally a ReLU and an output quantizer are fused (`relu`, `out_quant`): the
output is Quant(relu(x * m + b)), one rounding of the exact sum into the Quant's type.

Fixed point: m and b are rounded (round-to-nearest) onto fixed-point words whose fraction is
chosen from the error bound, not from the precision configuration. With out_t the output
type and delta = out_t.lsb * 2**-GUARD_BITS:

    |(x * m_q + b_q) - (x * m + b)| <= delta   for every x whose exact result is within the
                                                 output range (beyond it both saturate)

so the result equals the exact one except where the exact value lies within delta of a
rounding (or saturation) boundary of out_t, and there it is one step off. The bound uses
|x| <= U = min(max|x| of the input type, (max|out_t| + |b| + lsb) / |m|) per channel; a
multiplier that is exact with fewer bits (a power of two, a dyadic product) uses them and
adds no error. `delta` is recorded per layer (`Rescale.delta`) and shown in the estimate.
The sum x * m_q + b_q is formed exactly (`sum_t`) before the single rounding; if that needs
more than MAX_BITS bits, the fraction is cut to fit and the achieved bound is recorded.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, ClassVar, Iterable

import numpy as np

from hwprune.fixed import FixedType, Overflow, Rounding, quantize, to_float
from hwprune.ir.graph import Graph, IOType, Layer
from hwprune.ops.base import (
    CostContext, HlsBinding, HlsContext, LayerCost, OpMixin, WeightArray, exact_type, int_bits_for,
    out_of_range, render, requant, round_error, value_bound,
)
from hwprune.sim import resources as hw

log = logging.getLogger(__name__)

GUARD_BITS = 16  # delta = 2**-GUARD_BITS of the output's lsb
MAX_BITS = 62  # the numpy reference forms x * m_q + b_q exactly in int64


def frac_array(values: Iterable[Any]) -> np.ndarray:
    """A 1-d object array of exact Fractions (floats convert exactly)."""
    seq = values.reshape(-1).tolist() if isinstance(values, np.ndarray) else list(values)
    vals = [v if isinstance(v, Fraction) else Fraction(float(v)) for v in seq]
    out = np.empty(len(vals), dtype=object)
    out[:] = vals
    return out


def _floats(a: np.ndarray) -> np.ndarray:
    return np.array([float(v) for v in a], dtype=np.float64)


def _frac_bits_exact(vals: np.ndarray) -> int | None:
    """The fewest fractional bits holding every value exactly (None: some value is not dyadic)."""
    f = 0
    for v in vals:
        d = v.denominator
        if d & (d - 1):
            return None
        f = max(f, d.bit_length() - 1)
    return f


def _int_bits(vals: np.ndarray) -> int:
    """Integer bits (with the sign) of a signed type holding every |v| <= max |vals|; may be
    negative for small values (the leading fraction bits are then not stored)."""
    m = max((abs(v) for v in vals), default=Fraction(0))
    if m == 0:
        return 1
    k = m.numerator.bit_length() - m.denominator.bit_length()  # 2**(k-1) < m < 2**(k+1)
    while Fraction(2) ** k <= m:
        k += 1
    while k > -1074 and Fraction(2) ** (k - 1) > m:
        k -= 1
    return k + 1  # 2**(k-1) <= m < 2**k: k magnitude bits above the binary point, plus the sign


def _round_to(vals: np.ndarray, frac: int) -> np.ndarray:
    """round(v * 2**frac) to nearest, ties to even, exactly (int64 raws)."""
    return np.array([round(v * (Fraction(2) ** frac)) for v in vals], dtype=np.int64)


def param_axis(ctx: Any, node: Any, c: np.ndarray, shape: tuple[int, ...]) -> tuple[int, np.ndarray]:
    """(logical axis, 1-d values) of a constant broadcast against a (batch, *shape) tensor that
    varies along at most one axis; a scalar gets the innermost axis."""
    c = np.asarray(c, dtype=np.float64)
    full = (1, *shape)
    if c.ndim > len(full):
        raise ctx.error(node, f"constant of shape {c.shape} broadcasts beyond the input {full}")
    cs = (1,) * (len(full) - c.ndim) + c.shape
    varying = [i for i, d in enumerate(cs) if d != 1]
    if 0 in varying:
        raise ctx.error(node, "a constant that varies along the batch axis is not supported")
    if not varying:
        return max(len(shape) - 1, 0), c.reshape(-1)[:1]
    if len(varying) > 1:
        raise ctx.error(node, f"a constant of shape {c.shape} varies along several axes; only per-channel values are supported")
    if cs[varying[0]] != full[varying[0]]:
        raise ctx.error(node, f"constant of shape {c.shape} does not broadcast to {full}")
    return varying[0] - 1, c.reshape(-1)


@dataclass
class Rescale(OpMixin, Layer):
    axis: int = 0  # logical axis the parameters vary along (size-1 parameters: any)
    scale: np.ndarray = field(default_factory=lambda: frac_array([1]))
    shift: np.ndarray = field(default_factory=lambda: frac_array([0]))
    relu: bool = False
    out_quant: FixedType | None = None  # fused output quantizer: its type is the output type
    scale_t: FixedType | None = None
    shift_t: FixedType | None = None
    sum_t: FixedType | None = None
    delta: float = 0.0  # bound on |pre-rounding value - exact value| (see the module docstring)

    op_type: ClassVar[str] = "Rescale"

    def __post_init__(self) -> None:
        self.scale = frac_array(self.scale)
        self.shift = frac_array(self.shift)

    # ------------------------------------------------------------------ parameters
    @property
    def per_channel(self) -> bool:
        return self.scale.size > 1 or self.shift.size > 1

    @property
    def fused(self) -> bool:
        return self.relu or self.out_quant is not None

    def params(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(scale, shift) as Fractions broadcast to n channels."""
        return (np.broadcast_to(self.scale, (n,)) if self.scale.size == 1 else self.scale,
                np.broadcast_to(self.shift, (n,)) if self.shift.size == 1 else self.shift)

    def set_params(self, scale: np.ndarray, shift: np.ndarray) -> None:
        """Store parameters, collapsing equal per-channel values to one."""
        scale, shift = frac_array(scale), frac_array(shift)
        n = max(scale.size, shift.size)
        scale = np.broadcast_to(scale, (n,)) if scale.size == 1 else scale
        shift = np.broadcast_to(shift, (n,)) if shift.size == 1 else shift
        self.scale = frac_array(scale[:1] if all(v == scale[0] for v in scale) else scale)
        self.shift = frac_array(shift[:1] if all(v == shift[0] for v in shift) else shift)

    def compose_after(self, scale: np.ndarray, shift: np.ndarray) -> None:
        """self(y) with y = x * scale + shift in front: y*m + b = x*(scale*m) + (shift*m + b)."""
        n = max(self.scale.size, self.shift.size, frac_array(scale).size, frac_array(shift).size)
        a, c = (np.broadcast_to(frac_array(v), (n,)) if frac_array(v).size == 1 else frac_array(v) for v in (scale, shift))
        m, b = (np.broadcast_to(v, (n,)) if v.size == 1 else v for v in (self.scale, self.shift))
        self.set_params(a * m, c * m + b)

    def compose_before(self, scale: np.ndarray, shift: np.ndarray) -> None:
        """y*scale + shift applied after self (self not fused)."""
        assert not self.fused
        n = max(self.scale.size, self.shift.size, frac_array(scale).size, frac_array(shift).size)
        a, c = (np.broadcast_to(frac_array(v), (n,)) if frac_array(v).size == 1 else frac_array(v) for v in (scale, shift))
        m, b = (np.broadcast_to(v, (n,)) if v.size == 1 else v for v in (self.scale, self.shift))
        self.set_params(m * a, b * a + c)

    # ------------------------------------------------------------------ layout
    def required_perms(self, g: Graph) -> list[tuple[int, ...] | None]:
        t = g.tensor(self.inputs[0])
        if not self.per_channel or t.perm[-1] == self.axis or t.shape[self.axis] == 1:
            return [None]
        return [tuple(a for a in range(t.rank) if a != self.axis) + (self.axis,)]

    def output_perm(self, g: Graph) -> tuple[int, ...]:
        return g.tensor(self.inputs[0]).perm

    def absorb_output_affine(self, g: Graph, scale: np.ndarray, shift: np.ndarray, axis: int) -> bool:
        """A following batch norm or bias (ScaleShift) composes exactly."""
        scale, shift = np.asarray(scale, dtype=np.float64).reshape(-1), np.asarray(shift, dtype=np.float64).reshape(-1)
        if self.fused or ((scale.size > 1 or shift.size > 1) and self.per_channel and axis != self.axis):
            return False
        if scale.size > 1 or shift.size > 1:
            self.axis = axis
        self.compose_before(scale, shift)
        return True

    # ------------------------------------------------------------------ types
    def infer_types(self, g: Graph, prec: Any) -> None:
        from hwprune.ops.quant import explicit_result

        x_t = exact_input_type(g, self.inputs[0])
        assert x_t is not None
        out_t = self.out_quant or explicit_result(prec, self.name, self.op_type) or prec.resolve(self.name, self.op_type).result
        g.tensor(self.output).type = out_t
        self.scale_t, self.shift_t, self.sum_t, self.delta = choose_words(self, x_t, out_t)

    # ------------------------------------------------------------------ semantics
    def _n(self, x: np.ndarray) -> int:
        return x.shape[-1] if self.per_channel else 1

    def _finish_float(self, y: np.ndarray) -> np.ndarray:
        if self.relu:
            y = np.maximum(y, 0.0)
        q = self.out_quant
        return y if q is None else to_float(quantize(y, q), q)

    def float_forward(self, g: Graph, xs: list[np.ndarray]) -> np.ndarray:
        m, b = self.params(self._n(xs[0]))
        return self._finish_float(xs[0] * _floats(m) + _floats(b))

    def raw_params(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        assert self.scale_t and self.shift_t
        m, b = self.params(n)
        return (quantize_fractions(m, self.scale_t), quantize_fractions(b, self.shift_t))

    def _sum(self, g: Graph, x: np.ndarray) -> np.ndarray:
        x_t = g.tensor(self.inputs[0]).type
        assert x_t and self.scale_t and self.shift_t and self.sum_t
        m, b = self.raw_params(self._n(x))
        f = self.sum_t.frac
        acc = (x.astype(np.int64) * m) << (f - x_t.frac - self.scale_t.frac)
        acc = acc + (b << (f - self.shift_t.frac))
        return np.maximum(acc, 0) if self.relu else acc

    def fixed_forward(self, g: Graph, xs: list[np.ndarray]) -> np.ndarray:
        assert self.sum_t
        return requant(self._sum(g, xs[0]), self.sum_t.frac, g.tensor(self.output).type)

    def saturation(self, g: Graph, xs: list[np.ndarray]) -> int:
        assert self.sum_t
        if self.out_quant is not None:
            return 0  # saturating is what the fused Quant asks for
        return out_of_range(self._sum(g, xs[0]), self.sum_t.frac, g.tensor(self.output).type)

    def error_bound(self, g: Graph, xs: list[np.ndarray], errs: list[np.ndarray]) -> np.ndarray:
        from hwprune.ops.quant import grid_steps

        n = self._n(xs[0])
        m, b = self.params(n)
        mq, bq = self.raw_params(n)
        mf, bf = _floats(m), _floats(b)
        mqf, bqf = to_float(mq, self.scale_t), to_float(bq, self.shift_t)
        e = errs[0] * np.abs(mqf) + np.abs(xs[0]) * np.abs(mqf - mf) + np.abs(bqf - bf)
        out_t = g.tensor(self.output).type
        return grid_steps(e, out_t) if self.out_quant is not None else e + round_error(out_t)

    # ------------------------------------------------------------------ cost
    def multiplier_free(self) -> bool:
        """Every multiplier is a power of two (or 0, 1): a wire shift, no multiplier."""
        def pow2(v: Fraction) -> bool:
            n, d = abs(v.numerator), v.denominator
            return n == 0 or (not n & (n - 1) and not d & (d - 1))

        return all(pow2(v) for v in self.scale)

    def cost(self, ctx: CostContext) -> LayerCost:
        """One multiplier (input width x multiplier width, DSPs by the usual width rule) and one
        adder of the exact sum's width per lane; lanes: the whole tensor in io_parallel (the
        loop unrolls), one stream word in io_stream (II = 1 per word). Power-of-two multipliers
        are shifts (no multiplier). The constants are folded into the logic."""
        g = ctx.graph
        t = g.tensor(self.output)
        x_t = g.tensor(self.inputs[0]).type
        assert x_t and self.scale_t and self.sum_t and t.type
        lanes = t.size if ctx.io_type == IOType.PARALLEL else t.word
        words = 1 if ctx.io_type == IOType.PARALLEL else t.words
        free = self.multiplier_free()
        d = 0.0 if free else hw.dsps_per_multiplier(x_t.width, self.scale_t.width, ctx.dsp_kind)
        lut = lanes * (hw.lut_per_adder(self.sum_t.width) + (0 if (d or free) else hw.lut_per_multiplier(x_t.width, self.scale_t.width)))
        note = (f"requantization: {'shifts' if free else self.scale_t.cpp() + ' multipliers'}, "
                f"|pre-rounding error| <= {self.delta:.3g}")
        return LayerCost(latency=words + 3, ii=words, dsp=lanes * d, lut=lut, ff=lanes * hw.ff_per_register(t.type.width),
                         multipliers=0 if free else lanes, macs=t.size, note=note)

    # ------------------------------------------------------------------ HLS
    def hls(self, ctx: HlsContext) -> HlsBinding:
        assert self.scale_t and self.shift_t and self.sum_t
        t = ctx.graph.tensor(self.output)
        c = t.word if (self.per_channel and t.perm[-1] == self.axis) else 1
        m, b = self.raw_params(c)
        lname = ctx.lname(self)
        L = dict(cfg=f"{lname}_config", size=t.size, word=t.word, n_chan=c, relu=int(self.relu),
                 scale_t=self.scale_t.cpp(), shift_t=self.shift_t.cpp(), sum_t=self.sum_t.cpp(),
                 scale_bits=self.scale_t.width, shift_bits=self.shift_t.width,
                 in_t=ctx.ctype(self.inputs[0]), out_t=ctx.ctype(self.output),
                 x=ctx.var(self.inputs[0]), y=ctx.var(self.output), s=f"{lname}_s", b=f"{lname}_b")
        return HlsBinding("hwprune/rescale.h", render("rescale.j2", "config", L=L), render("rescale.j2", "call", L=L),
                          weights=[WeightArray(f"{lname}_s", m, self.scale_t), WeightArray(f"{lname}_b", b, self.shift_t)])


def quantize_fractions(vals: np.ndarray, t: FixedType) -> np.ndarray:
    """Exact values (Fractions) onto t: round to nearest (ties to even), then saturate."""
    raw = _round_to(vals, t.frac) if len(vals) else np.zeros(0, np.int64)
    return np.clip(raw, t.min_raw, t.max_raw).astype(np.int64)


def choose_words(r: Rescale, x_t: FixedType, out_t: FixedType) -> tuple[FixedType, FixedType, FixedType, float]:
    """(scale_t, shift_t, sum_t, delta): the narrowest words that meet the bound of the module
    docstring, within MAX_BITS."""
    m, b = r.params(max(r.scale.size, r.shift.size))
    delta = out_t.lsb * 2.0 ** -GUARD_BITS
    a_max = value_bound(x_t)
    y_max = value_bound(out_t) + out_t.lsb
    # Largest |x| whose result can land inside the output range, per channel.
    u = [a_max if mi == 0 else min(a_max, (y_max + abs(float(bi))) / abs(float(mi))) for mi, bi in zip(m, b)]
    u_max = max(u, default=0.0)

    def frac_for(vals: np.ndarray, reach: float) -> int:
        exact = _frac_bits_exact(vals)
        need = max(int(math.ceil(math.log2(reach / delta))), 0) if reach > 0 else 0
        return need if exact is None else min(exact, need)

    m_abs = max((abs(float(v)) for v in m), default=0.0)
    b_abs = max((abs(float(v)) for v in b), default=0.0)
    fm, fb = frac_for(m, max(u_max, 1e-300) if m_abs else 0.0), frac_for(b, 1.0 if b_abs else 0.0)
    im, ib = _int_bits(m), _int_bits(b)

    def words(fm: int, fb: int) -> tuple[FixedType, FixedType, FixedType]:
        st = FixedType(max(im + fm, 2), max(im + fm, 2) - fm, True, Rounding.RND_CONV, Overflow.SAT)
        bt = FixedType(max(ib + fb, 2), max(ib + fb, 2) - fb, True, Rounding.RND_CONV, Overflow.SAT)
        frac = max(x_t.frac + fm, fb)
        bound = a_max * (m_abs + st.lsb) + b_abs + bt.lsb
        return st, bt, exact_type(int_bits_for(bound + 2.0 ** -frac), frac)

    st, bt, sm = words(fm, fb)
    cut = False
    while (x_t.width + st.width > MAX_BITS or sm.width > MAX_BITS) and fm > 0:
        fm, fb, cut = fm - 1, max(fb - 1, 0), True
        st, bt, sm = words(fm, fb)
    if x_t.width + st.width > MAX_BITS or sm.width > MAX_BITS:
        from hwprune.errors import ConfigError

        raise ConfigError(f"layer '{r.name}': its requantization needs more than {MAX_BITS} bits; "
                          f"use a narrower input type")
    mq, bq = quantize_fractions(m, st), quantize_fractions(b, bt)
    err = max((ui * abs(float(Fraction(int(q)) / 2 ** st.frac - mi)) + abs(float(Fraction(int(p)) / 2 ** bt.frac - bi))
               for ui, q, mi, p, bi in zip(u, mq, m, bq, b)), default=0.0)
    if cut:
        log.warning("layer %s: requantization words cut to %d bits: |pre-rounding error| <= %.3g (target %.3g)",
                    r.name, st.width, err, delta)
    return st, bt, sm, float(err)


def exact_input_type(g: Graph, name: str) -> FixedType | None:
    """The type of a Rescale's input: a Dense/Conv reached through single-reader ReLU,
    max-pool and layout moves keeps its exact accumulator (as before a Quant), so the one
    rounding is the Rescale's."""
    from hwprune.ops.activation import Activation
    from hwprune.ops.conv import Conv
    from hwprune.ops.dense import Dense
    from hwprune.ops.layout import Reshape
    from hwprune.ops.pool import GlobalPool, Pool

    chain: list[Layer] = []
    t = name
    while True:
        p = g.producer(t)
        if p is None or len(g.consumers(t)) != 1 or t in g.outputs:
            break
        if isinstance(p, (Dense, Conv)):
            if p.out_quant is None:
                chain.append(p)
            break
        passes = (isinstance(p, Activation) and p.kind == "relu") or isinstance(p, Reshape) or (
            isinstance(p, (Pool, GlobalPool)) and p.kind == "max")
        if not passes:
            break
        chain.append(p)
        t = p.inputs[0]
    if chain and isinstance(chain[-1], (Dense, Conv)):
        for layer in reversed(chain):
            src = layer.accum_t if isinstance(layer, (Dense, Conv)) else g.tensor(layer.inputs[0]).type
            g.tensor(layer.output).type = src
    return g.tensor(name).type
