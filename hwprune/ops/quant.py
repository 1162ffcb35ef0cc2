"""QONNX `Quant` (what Brevitas' export_qonnx writes) with a power-of-two scale.

A Quant with scalar scale 2**-k, zero point 0 and integer bit width b is exactly the
fixed-point type ap_fixed<b, b-k> (ap_ufixed when unsigned): QONNX clips then rounds, which
equals rounding then saturating because the limits are integers. Its rounding mode maps onto
an ap_fixed one, narrow signed ranges onto AP_SAT_SYM.

* On a constant (weights, biases) the front end folds it (`fold_constant_quant`) and records
  the type so the consuming Dense/Conv stores those weights exactly.
* On an activation it is a `Quantize` layer whose output type is dictated by the node, not
  by the precision configuration; the producers feeding it keep exact values
  (`keep_exact_before_quantize`) so the result equals QONNX's bit for bit.
* Ops that cannot change a quantized value keep its narrow type (`dictated_type`): an
  embedding of a Quant'ed table, layout moves, max pooling, and concatenations of such tensors
  (the smallest type holding every input, `union_type`). In a plain ONNX model no tensor has a
  dictated type, so the precision configuration types everything as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from hwprune.errors import UnsupportedOpError
from hwprune.fixed import FixedType, Overflow, Rounding, quantize, to_float
from hwprune.ir.channels import ConstantChannels
from hwprune.ir.graph import Graph, IOType, Layer
from hwprune.ops.base import CostContext, HlsBinding, HlsContext, LayerCost, OpMixin, onnx_op, out_of_range, render, requant

ROUNDING = {"ROUND": Rounding.RND_CONV, "HALF_EVEN": Rounding.RND_CONV, "FLOOR": Rounding.TRN,
            "DOWN": Rounding.TRN_ZERO, "HALF_UP": Rounding.RND_INF, "HALF_DOWN": Rounding.RND_ZERO}


@dataclass(frozen=True)
class QuantSpec:
    """What a QONNX Quant node asks for: integer codes q = clip(round(x / scale)) on the grid
    `code` (an ap_int/ap_uint type: its rounding mode is the node's, its overflow saturates),
    and the real value scale * q. `scale` keeps the model's broadcast shape (float64 of the
    float32 constant: exact)."""

    code: FixedType
    scale: np.ndarray

    @property
    def pow2_exponent(self) -> int | None:
        """k when the scale is one power of two 2**-k (the exact ap_fixed path), else None."""
        if self.scale.size != 1:
            return None
        s = float(self.scale.reshape(-1)[0])
        m, e = math.frexp(s)
        return 1 - e if m == 0.5 else None

    def fixed_type(self) -> FixedType | None:
        """The ap_fixed type of the real values when the scale is a power of two."""
        k = self.pow2_exponent
        if k is None:
            return None
        c = self.code
        return FixedType(c.width, c.width - k, c.signed, c.rounding, c.overflow)


def quant_spec(ctx: Any, node: Any) -> QuantSpec:
    """Parse a QONNX Quant node (any positive scale, scalar or per channel), or a clear error."""
    from hwprune.frontend.onnx_import import attrs

    a = attrs(node)
    scale, zero, bits = (ctx.const(node.input[i]) if len(node.input) > i and node.input[i] else None for i in (1, 2, 3))
    if scale is None or zero is None or bits is None:
        raise ctx.error(node, "scale, zero point and bit width must be constants")
    scale, zero, bits = np.asarray(scale, dtype=np.float64), np.asarray(zero), np.asarray(bits)
    if zero.size != 1 or bits.size != 1:
        raise ctx.error(node, "the zero point and the bit width must be scalars")
    if not (scale.size and np.all(np.isfinite(scale)) and np.all(scale > 0)):
        raise ctx.error(node, "the scale must be positive and finite")
    if float(zero.reshape(-1)[0]) != 0:
        raise ctx.error(node, "a non-zero zero point is not supported (use symmetric quantization)")
    b = float(bits.reshape(-1)[0])
    if b != int(b) or not 2 <= b <= 32:
        raise ctx.error(node, f"bit width {b:g} is not supported (whole numbers 2..32)")
    signed, narrow = bool(a.get("signed", 1)), bool(a.get("narrow", 0))
    mode = a.get("rounding_mode", "ROUND")
    mode = (mode.decode() if isinstance(mode, bytes) else str(mode)).upper()
    if mode not in ROUNDING:
        raise ctx.error(node, f"rounding mode {mode} has no ap_fixed equivalent; supported: {', '.join(ROUNDING)}")
    if narrow and not signed:
        raise ctx.error(node, "narrow unsigned ranges have no ap_fixed equivalent")
    overflow = Overflow.SAT_SYM if (narrow and signed) else Overflow.SAT
    b = int(b)
    return QuantSpec(FixedType(b, b, signed, ROUNDING[mode], overflow), scale)


def quant_type(ctx: Any, node: Any) -> FixedType:
    """The ap_fixed type a QONNX Quant node with one power-of-two scale stands for, or a clear
    error (other scales are imported through `quant_spec` and hwprune/ops/rescale.py)."""
    spec = quant_spec(ctx, node)
    if spec.scale.size != 1:
        raise ctx.error(node, "only per-tensor (scalar) scales map exactly onto fixed point; "
                              "use a per-tensor power-of-two quantizer")
    t = spec.fixed_type()
    if t is None:
        s = float(spec.scale.reshape(-1)[0])
        raise ctx.error(node, f"scale {s:g} is not a power of two; only power-of-two scales map exactly onto fixed point")
    return t


def fold_constant_quant(ctx: Any, node: Any) -> np.ndarray:
    """Quantize a constant exactly as QONNX would. A power-of-two scale records the exact type
    for the consumer (`ctx.const_types`); any other scale records the codes' grid and the scale
    broadcast to the constant's shape (`ctx.const_scales`: value = codes * scale exactly), so
    that a Dense/Conv can keep the integer codes as its weights and apply the scale after the
    accumulator (`add_weight_layer`)."""
    spec = quant_spec(ctx, node)
    x = np.asarray(ctx.const(node.input[0]), dtype=np.float64)
    t = spec.fixed_type()
    if t is not None:
        ctx.const_types[node.output[0]] = t
        return to_float(quantize(x, t), t)
    try:
        s = np.broadcast_to(spec.scale, x.shape) if spec.scale.ndim <= x.ndim else None
    except ValueError:
        s = None
    if s is None:
        raise ctx.error(node, f"the scale of shape {spec.scale.shape} does not broadcast to the constant's {x.shape}")
    # QONNX: q = clip(round(x / s)) in float32; float64 holds every float32 quotient's inputs
    # exactly, and x / s is rounded once either way.
    q = quantize((x.astype(np.float32) / s.astype(np.float32)).astype(np.float64), spec.code).astype(np.float64)
    ctx.const_scales[node.output[0]] = (spec.code, np.ascontiguousarray(s, dtype=np.float64))
    return q * s  # exact: codes of <= 32 bits times a float32 scale fit a double's mantissa


def add_weight_layer(ctx: Any, layer: Any, out_shape: tuple[int, ...], weight: str, out_axis: int,
                     gain: float = 1.0) -> None:
    """Add a Dense/Conv whose weights may come out of a Quant with a non-power-of-two or
    per-channel scale. Without one this is `ctx.add`. With one, the layer keeps the integer
    codes as its weights (exact, typed by the Quant's grid) and writes its accumulator to a
    Rescale (hwprune/ops/rescale.py) that multiplies each output channel by its scale
    (x `gain`, Gemm's alpha) and adds the bias: y = (x @ q) * s + b equals x @ (q * s) + b.

    `out_axis` is the axis of the ONNX weight constant that indexes output channels (Gemm:
    0 with transB, else 1; MatMul: 1; Conv: 0); the scale may vary along it only."""
    from fractions import Fraction

    from hwprune.ops.rescale import Rescale, frac_array

    entry = ctx.const_scale(weight)
    if entry is None:
        ctx.add(layer, out_shape)
        return
    code, s_full = entry
    varying = [a for a in range(s_full.ndim) if s_full.shape[a] != 1 and not np.all(
        s_full == np.take(s_full, [0], axis=a))]
    if varying and varying != [out_axis]:
        raise UnsupportedOpError(
            f"layer '{layer.name}': its weight scale varies along an input axis of the weight (axes {varying}); "
            f"only per-output-channel scales can be applied after the accumulator")
    n_out = int(layer.weight.shape[0 if layer.op_type == "Conv" else -1])
    if varying:
        idx = [0] * s_full.ndim
        idx[out_axis] = slice(None)
        s = np.broadcast_to(s_full[tuple(idx)].reshape(-1), (n_out,))
    else:
        s = s_full.reshape(-1)[:1]
    axis_shape = [1] * layer.weight.ndim
    axis_shape[0 if layer.op_type == "Conv" else -1] = s.size
    ratio = layer.weight / (s.reshape(axis_shape) * gain)
    codes = np.round(ratio)
    if not np.all(np.abs(ratio - codes) < 1e-6):  # pragma: no cover - the fold makes them integers
        raise UnsupportedOpError(f"layer '{layer.name}': its weights are not integer codes of their scale")
    layer.weight = codes
    layer.weight_hint = code
    bias = np.broadcast_to(np.asarray(layer.bias, dtype=np.float64).reshape(-1), (n_out,))
    layer.bias = np.zeros(n_out)
    layer.bias_hint = None
    acc = f"{layer.outputs[0]}__acc"
    final = layer.outputs[0]
    layer.outputs = [acc]
    ctx.add(layer, out_shape)
    axis = 0 if layer.op_type == "Conv" else len(out_shape) - 1
    g = Fraction(gain)
    ctx.add(Rescale(ctx.graph.unique_name(f"{layer.name}_scale"), [acc], [final], axis=axis,
                    scale=frac_array([Fraction(float(v)) * g for v in s]), shift=frac_array(bias)), out_shape)


def union_type(types: list[FixedType]) -> FixedType:
    """The smallest fixed-point type that holds every value of each of `types` exactly.

    Equal types give that type unchanged; otherwise an exact (TRN/WRAP: it never rounds nor
    overflows by construction) type with the finest fraction, and the integer bits of the
    widest input (one more for an unsigned input when another one is signed)."""
    if not types:
        raise ValueError("union_type needs at least one type")
    if all(t == types[0] for t in types):
        return types[0]
    signed = any(t.signed for t in types)
    frac = max(t.frac for t in types)
    integer = max(t.integer + (1 if signed and not t.signed else 0) for t in types)
    return FixedType(integer + frac, integer, signed, Rounding.TRN, Overflow.WRAP)


def sum_type(types: list[FixedType]) -> FixedType:
    """The smallest exact type of a sum of values of `types` (a residual add of quantized
    tensors): the union's fraction, and integer bits for the sum of the inputs' magnitudes."""
    u = union_type(types)
    bound = sum(max(abs(t.min_value), abs(t.max_value)) for t in types)
    integer = u.integer
    while (2.0 ** (integer - (1 if u.signed else 0))) < bound + 2.0 ** -u.frac:
        integer += 1
    return FixedType(integer + u.frac, integer, u.signed, Rounding.TRN, Overflow.WRAP)


def dictated_type(g: Graph, name: str) -> FixedType | None:
    """The exact type QONNX dictates for tensor `name`, or None if the precision configuration
    decides it. Dictated: the output of a Quantize (or of a Rescale that absorbed one, or a
    Threshold's count); of an embedding whose table came out of a
    Quant; and, recursively, of ops that pass such values on unchanged (layout moves, clones,
    max pooling) or side by side (concatenation: the union of the inputs' types). A tensor
    whose assigned type differs from that (a layer the user configured explicitly) is not
    dictated. Additions of dictated inputs are exact (`sum_type`) and a ReLU keeps its input's
dictated type. Layers are typed in order, so this is valid while the types pass runs."""
    from hwprune.ops.embedding import Embedding
    from hwprune.ops.layout import Clone, Reorder, Reshape
    from hwprune.ops.activation import Activation
    from hwprune.ops.merge import Add, Concat
    from hwprune.ops.pool import GlobalPool, Pool

    from hwprune.ops.rescale import Rescale
    from hwprune.ops.threshold import Threshold

    p = g.producer(name)
    if p is None:
        return None
    t: FixedType | None = None
    if isinstance(p, Quantize):
        t = p.type
    elif isinstance(p, Rescale) and p.out_quant is not None:
        t = p.out_quant
    elif isinstance(p, Threshold):
        t = p.out_type()
    elif isinstance(p, Embedding):
        t = p.table_hint
    elif isinstance(p, (Reshape, Reorder, Clone)) or (isinstance(p, (Pool, GlobalPool)) and p.kind == "max"):
        t = dictated_type(g, p.inputs[0])
    elif isinstance(p, Concat):
        ins = [dictated_type(g, i) for i in p.inputs]
        t = union_type([x for x in ins if x is not None]) if all(x is not None for x in ins) else None
    elif isinstance(p, Add):
        ins = [dictated_type(g, i) for i in p.inputs]
        t = sum_type([x for x in ins if x is not None]) if all(x is not None for x in ins) else None
    elif isinstance(p, Activation) and p.kind == "relu":
        t = dictated_type(g, p.inputs[0])
    assigned = g.tensor(name).type
    return t if t is not None and (assigned is None or assigned == t) else None


def explicit_result(prec: Any, layer_name: str, op_type: str) -> FixedType | None:
    """A result type the user set for this very layer (by name or by layer type), which wins
    over a dictated type; the model-wide default does not."""
    for level in (getattr(prec, "layer_name", {}).get(layer_name), getattr(prec, "layer_type", {}).get(op_type)):
        if level is not None and level.result is not None:
            return level.result
    return None


@dataclass
class Quantize(OpMixin, Layer):
    type: FixedType = field(default_factory=lambda: FixedType(8, 1))

    op_type: ClassVar[str] = "Quantize"

    def required_perms(self, g: Graph) -> list[tuple[int, ...] | None]:
        return [None]

    def output_perm(self, g: Graph) -> tuple[int, ...]:
        return g.tensor(self.inputs[0]).perm

    def carry_constant_channels(self, g: Graph, port: int, cc: ConstantChannels) -> ConstantChannels | None:
        return cc.with_values(to_float(quantize(cc.value, self.type), self.type))  # one type for all elements

    def infer_types(self, g: Graph, prec: Any) -> None:
        # Dictated by the QONNX node: the precision configuration does not apply here.
        g.tensor(self.output).type = self.type

    def float_forward(self, g: Graph, xs: list[np.ndarray]) -> np.ndarray:
        return to_float(quantize(xs[0], self.type), self.type)  # QONNX's float semantics

    def fixed_forward(self, g: Graph, xs: list[np.ndarray]) -> np.ndarray:
        return requant(xs[0], g.tensor(self.inputs[0]).type.frac, self.type)

    def saturation(self, g: Graph, xs: list[np.ndarray]) -> int:
        return 0  # saturating is what a Quant node asks for

    def error_bound(self, g: Graph, xs: list[np.ndarray], errs: list[np.ndarray]) -> np.ndarray:
        return grid_steps(errs[0], self.type)

    def cost(self, ctx: CostContext) -> LayerCost:
        t = ctx.graph.tensor(self.output)
        lanes = t.size if ctx.io_type == IOType.PARALLEL else t.word
        words = 1 if ctx.io_type == IOType.PARALLEL else t.words
        return LayerCost(latency=words + 1, ii=words, lut=lanes * (self.type.width + 4), ff=lanes * self.type.width)

    def hls(self, ctx: HlsContext) -> HlsBinding:
        t = ctx.graph.tensor(self.output)
        L = dict(cfg=f"{ctx.lname(self)}_config", size=t.size, word=t.word, in_t=ctx.ctype(self.inputs[0]),
                 out_t=ctx.ctype(self.output), x=ctx.var(self.inputs[0]), y=ctx.var(self.output))
        return HlsBinding("hwprune/quant.h", render("quant.j2", "config", L=L), render("quant.j2", "call", L=L))


def grid_steps(e: np.ndarray, t: FixedType) -> np.ndarray:
    """Bound after both sides apply the same quantizer: an input error e moves the result by at
    most e rounded up to whole steps of the grid."""
    return np.where(e > 0, np.ceil(e / t.lsb + 1e-12) * t.lsb, 0.0)


class FusedOutputQuant:
    """Semantics of a Dense/Conv that absorbed a following ReLU and unsigned saturating Quant
    (`fuse_relu_quantize`): its output is Quant(relu(acc)). In fixed point that is just the
    assignment of the exact accumulator to the unsigned saturating type (negative values
    saturate to 0 = ReLU), so the kernel is unchanged; float semantics and error bounds apply
    the pair explicitly. Layers set `out_quant` (None: not fused)."""

    out_quant: FixedType | None

    def fused_float(self, y: np.ndarray) -> np.ndarray:
        q = self.out_quant
        return y if q is None else to_float(quantize(np.maximum(y, 0.0), q), q)

    def fused_error(self, g: Graph, e_acc: np.ndarray) -> np.ndarray:
        from hwprune.ops.base import round_error

        q = self.out_quant
        return e_acc + round_error(g.tensor(self.output).type) if q is None else grid_steps(e_acc, q)  # type: ignore[attr-defined]


def fuse_relu_quantize(g: Graph) -> Graph:
    """Dense/Conv -> ReLU -> Quant(unsigned, saturating) becomes one layer whose output type is
    the Quant's (bit-exact: see FusedOutputQuant). Removes two processes, two FIFOs and the
    wide accumulator-typed stream between them. Runs after keep_exact_before_quantize."""
    from hwprune.ops.activation import Activation
    from hwprune.ops.conv import Conv
    from hwprune.ops.dense import Dense

    for q in [l for l in g.layers if isinstance(l, Quantize)]:
        if q.type.signed or q.type.overflow not in (Overflow.SAT, Overflow.SAT_SYM):
            continue
        r = g.producer(q.inputs[0])
        if not (isinstance(r, Activation) and r.kind == "relu") or len(g.consumers(r.output)) != 1 or r.output in g.outputs:
            continue
        p = g.producer(r.inputs[0])
        if not isinstance(p, (Dense, Conv)) or p.out_quant is not None or len(g.consumers(p.output)) != 1 \
                or p.output in g.outputs:
            continue
        for dead in (p.output, r.output):
            g.tensors.pop(dead, None)
        p.outputs = [q.output]
        p.out_quant = q.type
        g.layers.remove(r)
        g.layers.remove(q)
    return g


def keep_exact_before_quantize(g: Graph) -> Graph:
    """Let the values reaching a Quantize be exact, as in QONNX's float graph: a Dense/Conv
    output keeps its accumulator type, and ReLU/reshape/max-pool in between keep their input
    type. Runs after the types pass; only single-reader chains are changed."""
    from hwprune.ops.activation import Activation
    from hwprune.ops.conv import Conv
    from hwprune.ops.dense import Dense
    from hwprune.ops.layout import Reshape
    from hwprune.ops.pool import GlobalPool, Pool

    for q in [l for l in g.layers if isinstance(l, Quantize)]:
        chain: list[Layer] = []
        t = q.inputs[0]
        while True:
            p = g.producer(t)
            if p is None or len(g.consumers(t)) != 1 or t in g.outputs:
                break
            if isinstance(p, (Dense, Conv)):
                chain.append(p)
                break
            passes = (isinstance(p, Activation) and p.kind == "relu") or isinstance(p, Reshape) or (
                isinstance(p, (Pool, GlobalPool)) and p.kind == "max")
            if not passes:
                break
            chain.append(p)
            t = p.inputs[0]
        if not chain or not isinstance(chain[-1], (Dense, Conv)):
            continue
        for layer in reversed(chain):
            src = layer.accum_t if isinstance(layer, (Dense, Conv)) else g.tensor(layer.inputs[0]).type
            g.tensor(layer.output).type = src
    # A Quant right at a graph input: the host quantizes with the Quant's own type.
    for q in [l for l in g.layers if isinstance(l, Quantize)]:
        if q.inputs[0] in g.inputs and len(g.consumers(q.inputs[0])) == 1:
            g.tensor(q.inputs[0]).type = q.type
    return g


@onnx_op("Quant")
def _import_quant(ctx: Any, node: Any) -> None:
    """A power-of-two Quant is a Quantize into its exact ap_fixed type. Any other scale s
    (scalar or per channel) becomes Rescale(1/s) -> Quantize(codes) -> Rescale(s): the
    codes are exact integers and the real value is s * q, as in QONNX. The import's clean-up
    (hwprune/passes/scales.py) then moves the two multipliers into their neighbours: the
    producer's requantization, the consumer's weights, the host's conversion of a graph
    input or output; what cannot move stays a Rescale whose width meets the stated bound."""
    from fractions import Fraction

    from hwprune.ops.rescale import Rescale, frac_array, param_axis

    spec = quant_spec(ctx, node)
    shape = ctx.shape(node.input[0])
    t = spec.fixed_type()
    if t is not None:
        ctx.add(Quantize(ctx.layer_name(node), [node.input[0]], [node.output[0]], type=t), shape)
        return
    axis, s = param_axis(ctx, node, spec.scale, shape)
    base = ctx.layer_name(node)
    pre, codes = f"{node.output[0]}__pre", f"{node.output[0]}__codes"
    ctx.add(Rescale(ctx.graph.unique_name(f"{base}_requant"), [node.input[0]], [pre], axis=axis,
                    scale=frac_array([1 / Fraction(float(v)) for v in s])), shape)
    ctx.add(Quantize(base, [pre], [codes], type=spec.code), shape)
    ctx.add(Rescale(ctx.graph.unique_name(f"{base}_dequant"), [codes], [node.output[0]], axis=axis,
                    scale=frac_array([Fraction(float(v)) for v in s])), shape)
