"""Dense (fully connected): ONNX Gemm, and MatMul with a constant right operand.

y[..., n] = sum_k x[..., k] W[k, n] + b[n], applied to every word (the innermost axis), so a
Linear on a sequence [L, K] is L words of K. Fixed point: the product of two ap_fixed values
is exact, the accumulator is sized from the actual weights so it cannot overflow, and the
only rounding is the final assignment to the output type.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np

from hwprune.fixed import MAX_WIDTH, FixedType, exact_ints, exact_matmul, quantize, to_float
from hwprune.ir.channels import ConstantChannels
from hwprune.ir.graph import Graph, IOType, Layer
from hwprune.ir.sparsity import Sparsity, balanced_structure, zero_fraction
from hwprune.ops.base import (
    CostContext, HlsBinding, HlsContext, LayerCost, Memory, OpMixin, WeightArray, auto_weight_type, cap_fraction,
    capped_accumulate, exact_type, holds_exactly, int_bits_for, onnx_op, render, requant, round_error,
    type_bits, value_bound,
)
from hwprune.ops.quant import FusedOutputQuant, add_weight_layer
from hwprune.sim import resources as hw


@dataclass
class Dense(FusedOutputQuant, OpMixin, Layer):
    weight: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (K, N) float
    bias: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (N,) float
    reuse_factor: int = 1
    mult_impl: str = "auto"  # where the products go: auto | dsp | fabric
    rom_impl: str = "auto"  # where the weight banks go at RF > 1: auto (by size) | bram
    output_stage: str = "parallel"  # io_stream output rounding: parallel | shared (over the next word)
    weight_t: FixedType | None = None
    bias_t: FixedType | None = None
    accum_t: FixedType | None = None  # what the kernel accumulates in (exact, or the user's cap)
    exact_t: FixedType | None = None  # the exact accumulator (never overflows)
    # Declared sparsity pattern (set by the pruner); None: dense kernel, zeros are not skipped.
    sparsity: Sparsity | None = None
    # Exact types of weights/bias that came from QONNX Quant nodes (used unless configured).
    weight_hint: FixedType | None = None
    bias_hint: FixedType | None = None
    # Set by fuse_relu_quantize: the output is Quant(relu(.)) of this type (QONNX graphs).
    out_quant: FixedType | None = None

    op_type: ClassVar[str] = "Dense"

    @property
    def n_in(self) -> int:
        return int(self.weight.shape[0])

    @property
    def n_out(self) -> int:
        return int(self.weight.shape[1])

    # ------------------------------------------------------------------ layout
    def required_perms(self, g: Graph) -> list[tuple[int, ...] | None]:
        t = g.tensor(self.inputs[0])
        r = t.rank
        if r <= 1:
            return [None]
        # The contraction axis (logical last) must be the innermost physical axis.
        return [tuple(range(r))] if t.perm[-1] != r - 1 else [t.perm]

    def output_perm(self, g: Graph) -> tuple[int, ...]:
        return g.tensor(self.inputs[0]).perm

    def absorb_output_affine(self, g: Graph, scale: np.ndarray, shift: np.ndarray, axis: int) -> bool:
        """Fold a following per-feature y*scale+shift into the weights (batch norm, bias add)."""
        if axis != g.tensor(self.output).rank - 1:
            return False
        uniform = np.unique(np.asarray(scale, dtype=np.float64))
        if self.weight_hint is not None or self.bias_hint is not None:
            if uniform.size != 1 or not self._rescale_declared_types(float(uniform[0]), bool(np.any(shift))):
                return False
        s = np.broadcast_to(scale, (self.n_out,))
        self.weight = self.weight * s
        self.bias = self.bias * s + np.broadcast_to(shift, (self.n_out,))
        return True

    def absorb_scalar_scale(self, scale: float, shift: float = 0.0) -> bool:
        """y*scale + shift on every output, with a scalar scale and shift, folded into W and b
        (passes/fold.py `fold_scalar_scales`, which proves the outputs reach it unchanged).
        Refused (False, nothing changed) where the result would not be this layer's function:
        a fused output Quant (a ReLU and saturation sit between), a zero or non-finite scale,
        or declared weight types the scaled values leave (`_rescale_declared_types`)."""
        if self.out_quant is not None or scale == 0 or not (math.isfinite(scale) and math.isfinite(shift)):
            return False
        if not self._rescale_declared_types(scale, shift != 0):
            return False
        # A nonzero scalar keeps every zero where it is: a declared sparsity pattern still holds.
        self.weight = self.weight * scale
        self.bias = self.bias * scale + shift
        return True

    def _rescale_declared_types(self, scale: float, shifted: bool) -> bool:
        return rescale_declared_types(self, scale, shifted)

    # ------------------------------------------------------------------ dead channels
    def constant_output_channels(self, g: Graph) -> ConstantChannels | None:
        if self.sparsity is not None:
            return None  # a balanced pattern's zeros run on the sparse kernel; its shape stays
        dead = np.flatnonzero(~np.any(self.weight != 0, axis=0))
        if dead.size == 0 or dead.size == self.n_out:
            return None
        return ConstantChannels(g.tensor(self.output).rank - 1, dead, self.bias[dead])

    def remove_output_channels(self, g: Graph, cc: ConstantChannels) -> None:
        keep = cc.keep_mask(self.n_out)
        self.weight, self.bias = self.weight[:, keep], self.bias[keep]
        self.refresh_sparsity()

    def absorb_constant_inputs(self, g: Graph, port: int, cc: ConstantChannels) -> bool:
        """y = x W + b with inputs k constant: their share v @ W[k] joins the bias (exact)."""
        if self.sparsity is not None:
            return False  # cutting inputs would break the declared balanced pattern
        if port != 0 or cc.axis != g.tensor(self.inputs[0]).rank - 1 or len(cc) >= self.n_in:
            return False
        share = cc.value @ self.weight[cc.index]
        self.bias = self.bias + share
        self.weight = self.weight[cc.keep_mask(self.n_in)]
        if np.any(share != 0):
            self.bias_hint = None  # an exact QONNX bias type need not hold the folded bias
        self.refresh_sparsity()
        return True

    # ------------------------------------------------------------------ types
    def infer_types(self, g: Graph, prec: Any) -> None:
        p = prec.resolve(self.name, self.op_type)
        x_t = g.tensor(self.inputs[0]).type
        assert x_t is not None
        self.reuse_factor = p.reuse_factor
        self.mult_impl = p.mult_impl
        self.rom_impl = p.rom_impl
        self.output_stage = p.output_stage
        self.weight_t = p.weight or self.weight_hint or auto_weight_type(self.weight, p.weight_width)
        wq = to_float(quantize(self.weight, self.weight_t), self.weight_t)
        acc_frac = x_t.frac + self.weight_t.frac
        if p.bias is not None or self.bias_hint is not None:
            self.bias_t = p.bias or self.bias_hint
        else:
            bt = auto_weight_type(self.bias, max(p.weight_width, 8))
            # A bias finer than the accumulator would be rounded away: cap its fraction.
            if bt.frac > acc_frac:
                bt = cap_fraction(bt, acc_frac)
            self.bias_t = bt
        bq = to_float(quantize(self.bias, self.bias_t), self.bias_t)
        bound = value_bound(x_t) * float(np.max(np.sum(np.abs(wq), axis=0), initial=0.0)) + float(np.max(np.abs(bq), initial=0.0))
        acc_frac = max(acc_frac, self.bias_t.frac)
        self.exact_t = exact_accumulator(self, bound, acc_frac)
        self.accum_t = check_cap(self, p.accum, x_t, self.weight_t) or self.exact_t
        g.tensor(self.output).type = p.result

    # ------------------------------------------------------------------ semantics
    def float_forward(self, g: Graph, xs: list[np.ndarray]) -> np.ndarray:
        return self.fused_float(xs[0] @ self.weight + self.bias)

    def _raw_weights(self) -> tuple[np.ndarray, np.ndarray]:
        assert self.weight_t and self.bias_t
        return quantize(self.weight, self.weight_t), quantize(self.bias, self.bias_t)

    def accumulate(self, g: Graph, x: np.ndarray) -> np.ndarray:
        """The accumulator's final values (raw, accum_t.frac fractional bits)."""
        x_t = g.tensor(self.inputs[0]).type
        assert x_t and self.weight_t and self.bias_t and self.accum_t and self.exact_t
        w, b = self._raw_weights()
        if self.capped:
            return self._capped(x_t, x, w, b)[0]
        bits = self.exact_t.width
        acc = exact_ints(exact_matmul(x, w, bits), bits)
        acc <<= self.exact_t.frac - (x_t.frac + self.weight_t.frac)
        acc = acc + (exact_ints(b, bits) << (self.exact_t.frac - self.bias_t.frac))
        return acc if self.accum_t == self.exact_t else requant(acc, self.exact_t.frac, self.accum_t)

    @property
    def rom_in_bram(self) -> bool:
        """The weight banks are bound to block RAM (rom_impl "bram"; at RF 1 the weights are
        constants of their multipliers and there is no ROM to bind)."""
        return self.rom_impl == "bram" and self.reuse_factor > 1

    def shares_output(self, g: Graph) -> bool:
        """The output stage is time-shared (output_stage "shared", io_stream, RF > 1: at RF 1
        there is no next word's cycles to spread it over)."""
        return self.output_stage == "shared" and self.reuse_factor > 1 and g.io_type == IOType.STREAM

    def out_lanes(self, g: Graph) -> int:
        """Outputs rounded and saturated per cycle: all of them, or ceil(n_out / RF) shared."""
        return -(-self.n_out // self.reuse_factor) if self.shares_output(g) else self.n_out

    @property
    def capped(self) -> bool:
        """The accumulator is the user's cap and may round or overflow (else it is exact)."""
        assert self.accum_t and self.exact_t
        return not holds_exactly(self.accum_t, self.exact_t)

    def _capped(self, x_t: FixedType, x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert self.weight_t and self.bias_t and self.accum_t
        bits = type_bits(x_t) + type_bits(self.weight_t)
        prods = exact_ints(x, bits)[..., None, :] * exact_ints(w.T, bits)  # (..., n_out, n_in)
        return capped_accumulate(prods, x_t.frac + self.weight_t.frac, b, self.bias_t.frac, self.accum_t,
                                 self.kernel_order(), with_overflow=True)

    def kernel_order(self) -> np.ndarray:
        """order[o]: the inputs in the order the kernel adds their products into output o
        (dense.h: weight k = i*n_out + o is served in cycle k % RF by multiplier k / RF;
        dense_sparse.h: the kept weights in the order they are served — row-balanced output
        fastest, column-balanced in block order — likewise; pruned ones add 0)."""
        n_in, n_out, rf = self.n_in, self.n_out, self.reuse_factor
        if self.sparsity is None:
            k = np.arange(n_in)[None, :] * n_out + np.arange(n_out)[:, None]  # (n_out, n_in)
            return np.argsort(k % rf * (n_in * n_out) + k // rf, axis=1, kind="stable")
        sp = self.sparsity
        idx = sp.bank_lists()
        br, bc = sp.block
        total = idx.size * br * bc
        seq: list[list[int]] = [[] for _ in range(n_out)]
        n_mult = -(-total // rf)
        for r in range(rf):
            for m in range(n_mult):
                k = m * rf + r
                if k >= total:
                    continue
                if sp.column_balanced:  # storage (block) order
                    blk, i, j = k // (br * bc), (k // bc) % br, k % bc
                    bank, t = blk // sp.per_bank, blk % sp.per_bank
                else:  # row-balanced: output fastest, k = kk * n_out + o
                    kk, o = k // n_out, k % n_out
                    bank, i, t, j = o // br, o % br, kk // bc, kk % bc
                    blk = bank * sp.per_bank + t
                sel = int(idx.reshape(-1)[blk])
                rb = sel if sp.column_balanced else bank
                cb = bank if sp.column_balanced else (t // sp.per_group) * sp.group + sel
                seq[rb * br + i].append(cb * bc + j)
        for o in range(n_out):
            seen = set(seq[o])
            seq[o] += [i for i in range(n_in) if i not in seen]
        return np.array(seq, dtype=np.int64).reshape(n_out, n_in)

    def fixed_forward(self, g: Graph, xs: list[np.ndarray]) -> np.ndarray:
        assert self.accum_t
        return requant(self.accumulate(g, xs[0]), self.accum_t.frac, g.tensor(self.output).type)

    def saturation(self, g: Graph, xs: list[np.ndarray]) -> int:
        from hwprune.ops.base import out_of_range

        assert self.accum_t
        acc_over = 0
        if self.capped:
            w, b = self._raw_weights()
            acc, over = self._capped(g.tensor(self.inputs[0]).type, xs[0], w, b)
            acc_over = int(np.count_nonzero(over))  # the accumulator itself wrapped or saturated
        else:
            acc = self.accumulate(g, xs[0])
        if self.out_quant is not None:
            return acc_over  # saturating the output is what the fused Quant asks for
        return acc_over + out_of_range(acc, self.accum_t.frac, g.tensor(self.output).type)

    def error_bound(self, g: Graph, xs: list[np.ndarray], errs: list[np.ndarray]) -> np.ndarray:
        assert self.weight_t and self.bias_t
        w, b = self._raw_weights()
        wq, bq = to_float(w, self.weight_t), to_float(b, self.bias_t)
        ew = np.abs(wq - self.weight)
        eb = np.abs(bq - self.bias)
        return self.fused_error(g, errs[0] @ np.abs(wq) + np.abs(xs[0]) @ ew + eb + self._capped_rounding(g))

    def _capped_rounding(self, g: Graph) -> float:
        """A capped accumulator's rounding of every product and of the bias (its overflow is
        not bounded: `saturation` reports it)."""
        assert self.accum_t and self.weight_t and self.bias_t
        if not self.capped:
            return 0.0
        x_t = g.tensor(self.inputs[0]).type
        n = (self.n_in if self.accum_t.frac < x_t.frac + self.weight_t.frac else 0) + (self.accum_t.frac < self.bias_t.frac)
        return n * round_error(self.accum_t)

    # ------------------------------------------------------------------ cost
    def n_words(self, g: Graph) -> int:
        t = g.tensor(self.inputs[0])
        return t.size // self.n_in

    def cost(self, ctx: CostContext) -> LayerCost:
        return engine_layer_cost(ctx, self, self.n_words(ctx.graph))

    def stream_process(self, ctx: CostContext, cost: LayerCost) -> Any:
        """Parallel output stage: the default (a word in, RF cycles, the word out). Shared: word
        t leaves at the end of trip t + 1 (its outputs are rounded during that trip), and a last
        trip of RF cycles without a read drains the final word."""
        from hwprune.ops.base import Step, output_delay, process

        if not self.shares_output(ctx.graph):
            return OpMixin.stream_process(self, ctx, cost)
        words, rf = self.n_words(ctx.graph), self.reuse_factor
        late = rf - 1 + output_delay(cost)  # written after its trip's RF cycles and the pipeline
        return process(Step(1, rf, (0,), (), 0), Step(words - 1, rf, (0,), (0,), late), Step(1, rf, (), (0,), late))

    def engine_matrices(self) -> tuple[np.ndarray, np.ndarray]:
        """The (Kp, N) raw weights and the input each multiplies, as the dense / row-balanced
        sparse engine serves them (weight k = kk * N + o: multiplier k // RF, cycle k % RF)."""
        w, _ = self._raw_weights()
        w = np.asarray(w, dtype=np.int64)
        if self.sparsity is None:
            return w, np.broadcast_to(np.arange(self.n_in, dtype=np.int64)[:, None], w.shape)
        from hwprune.rtl.engine import row_balanced_matrix

        return row_balanced_matrix(self.sparsity, w.T)

    def refresh_sparsity(self) -> None:
        """Re-derive the balanced structure after a pass changed the weights (it may no
        longer hold, e.g. after rows were permuted: then the layer runs dense)."""
        if self.sparsity is not None:
            self.sparsity = balanced_structure(self.weight.T, self.sparsity.pattern)

    # ------------------------------------------------------------------ HLS
    def hls(self, ctx: HlsContext) -> HlsBinding:
        assert self.weight_t and self.bias_t and self.accum_t
        if self.sparsity is not None:
            return self._hls_sparse(ctx)
        w, b = self._raw_weights()
        lname = ctx.lname(self)
        wm = dense_memories(self)[0]
        L = dict(
            cfg=f"{lname}_config", n_in=self.n_in, n_out=self.n_out, n_words=self.n_words(ctx.graph),
            reuse_factor=self.reuse_factor, n_mult=math.ceil(self.n_in * self.n_out / self.reuse_factor),
            w_words=wm.words, w_banks=wm.banks,
            mult_impl=hw.MULT_IMPL_CODES[self.mult_impl], rom_impl=int(self.rom_in_bram),
            output_stage=int(self.shares_output(ctx.graph)), out_lanes=self.out_lanes(ctx.graph),
            weight_t=self.weight_t.cpp(), bias_t=self.bias_t.cpp(), accum_t=self.accum_t.cpp(),
            weight_bits=self.weight_t.width, bias_bits=self.bias_t.width,
            in_t=ctx.ctype(self.inputs[0]), out_t=ctx.ctype(self.output),
            x=ctx.var(self.inputs[0]), y=ctx.var(self.output), w=f"{lname}_w", b=f"{lname}_b",
        )
        return HlsBinding(
            include="hwprune/dense.h",
            config=render("dense.j2", "config", L=L),
            call=render("dense.j2", "call", L=L),
            weights=[WeightArray(f"{lname}_w", _padded(w.reshape(-1), wm.words), self.weight_t),
                     WeightArray(f"{lname}_b", b, self.bias_t)],
        )


    def _hls_sparse(self, ctx: HlsContext) -> HlsBinding:
        sp = self.sparsity
        assert sp is not None and self.weight_t and self.bias_t and self.accum_t
        w, b = self._raw_weights()
        blocks, idx = sp.gather(w.T)
        # The weight ROM holds kept weight k where multiplier k // RF reads it in cycle k % RF:
        # row-balanced output fastest (the engine's order), column-balanced in block order.
        serve_order = blocks if sp.column_balanced else self.engine_matrices()[0]
        lname = ctx.lname(self)
        kept_macs = int(blocks.size)
        wm, im, _ = dense_memories(self)
        L = dict(cfg=f"{lname}_config", n_in=self.n_in, n_out=self.n_out, n_words=self.n_words(ctx.graph),
                 reuse_factor=self.reuse_factor, n_mult=math.ceil(kept_macs / self.reuse_factor),
                 w_words=wm.words, w_banks=wm.banks, idx_words=im.words, idx_banks=im.banks,
                 mult_impl=hw.MULT_IMPL_CODES[self.mult_impl], rom_impl=int(self.rom_in_bram),
                 output_stage=int(self.shares_output(ctx.graph)), out_lanes=self.out_lanes(ctx.graph),
                 br=sp.block[0], bc=sp.block[1], n_banks=blocks.shape[0], per_bank=sp.per_bank, group=sp.group,
                 per_group=sp.per_group, column_balanced=int(sp.column_balanced), index_bits=sp.index_bits,
                 weight_t=self.weight_t.cpp(), bias_t=self.bias_t.cpp(), accum_t=self.accum_t.cpp(),
                 weight_bits=self.weight_t.width, bias_bits=self.bias_t.width,
                 in_t=ctx.ctype(self.inputs[0]), out_t=ctx.ctype(self.output),
                 x=ctx.var(self.inputs[0]), y=ctx.var(self.output), w=f"{lname}_w", idx=f"{lname}_idx", b=f"{lname}_b")
        return HlsBinding(
            include="hwprune/dense_sparse.h",
            config=render("dense_sparse.j2", "config", L=L),
            call=render("dense_sparse.j2", "call", L=L),
            weights=[WeightArray(f"{lname}_w", _padded(serve_order.reshape(-1), wm.words), self.weight_t),
                     WeightArray(f"{lname}_idx", _padded(idx.reshape(-1), im.words), index_type(sp)),
                     WeightArray(f"{lname}_b", b, self.bias_t)],
        )


def _padded(raw: np.ndarray, words: int) -> np.ndarray:
    """A ROM's entries padded with zeros to the banked size (zero weights, never read)."""
    out = np.zeros(words, dtype=np.int64)
    out[: raw.size] = raw
    return out


def index_type(sp: Sparsity) -> FixedType:
    """The block-index ROM word: unsigned, just wide enough for a position in the group."""
    return FixedType(sp.index_bits, sp.index_bits, False)


def reuse_banks(words: int, rf: int) -> tuple[int, int]:
    """A weight ROM of `words` entries read by the reuse schedule of dense.h / dense_sparse.h:
    entry k = m*RF + r is served by multiplier m in cycle r. Returns (multipliers, padded
    words): the ROM is padded with zeros to multipliers*RF entries and block-partitioned into one
    bank per multiplier (ARRAY_PARTITION type=block factor=multipliers), so bank m holds exactly
    multiplier m's RF weights and every cycle reads each bank once. At RF 1 the weights are
    constants of their multipliers (a complete partition)."""
    n_mult = max(1, math.ceil(words / rf))
    return n_mult, n_mult * rf


def bram_pair_banks(n_mult: int, rf: int) -> tuple[int, int]:
    """The weight ROM with rom_impl "bram": the banks of two multipliers share one dual-port
    block RAM (a bank of 2*RF words, BIND_STORAGE type=rom_2p impl=bram; multipliers 2j and
    2j+1 read it in the same cycle, one port each — a 1,024 x 8 bank pair is one BRAM18 in its
    2,048 x 9 shape). Returns (banks, padded words): the ROM is padded with zeros to a whole
    number of pairs so that the block partition gives every bank exactly its two multipliers'
    weights."""
    banks = max(1, math.ceil(n_mult / 2))
    return banks, banks * 2 * rf


def index_banks(kept_blocks: int, block_size: int, rf: int) -> tuple[int, int]:
    """The block-index ROM of dense_sparse.h: multiplier m reads idx[(m*RF + r) / block_size]
    in cycle r. With B = max(1, RF // block_size) indices per bank (block partition of the ROM
    padded to banks*B entries), the bank of that read, (m*RF + r) // (block_size*B), grows with
    m because block_size*B <= RF: no two multipliers read one bank in a cycle (RF <
    block_size: B = 1, a complete partition, registers). Returns (banks, padded words)."""
    per = max(1, rf // block_size)
    banks = max(1, math.ceil(kept_blocks / per))
    return banks, banks * per


def rescale_declared_types(layer: Any, scale: float, shifted: bool) -> bool:
    """Weights (and bias) whose exact type the file declares (QONNX Quant, FINN FIXED<W,I>:
    `weight_hint`/`bias_hint` of a Dense or Conv, one type per tensor) keep their grid under
    W * scale only for one positive power-of-two scale: the hints' binary points move by it
    (True). Any other scale would round or wrap the declared weights a second time, and a shift
    would leave a declared bias's grid: False, nothing changed. Undeclared types: True (they
    follow the scaled values)."""
    if layer.weight_hint is None and layer.bias_hint is None:
        return True
    mant, exp = math.frexp(scale)
    if mant != 0.5 or (shifted and layer.bias_hint is not None):
        return False
    k = exp - 1  # scale = 2**k
    if layer.weight_hint is not None:
        layer.weight_hint = replace(layer.weight_hint, integer=layer.weight_hint.integer + k)
    if layer.bias_hint is not None:
        layer.bias_hint = replace(layer.bias_hint, integer=layer.bias_hint.integer + k)
    return True


def dense_memories(layer: "Dense") -> tuple[Memory, ...]:
    """The ROMs of a Dense layer's kernel with their banking (what cost() charges and hls()
    declares): weights (dense, or the kept blocks), block indices (sparse), biases."""
    rf = layer.reuse_factor
    const = rf == 1
    bias = Memory("b", layer.n_out, layer.bias_t.width, layer.n_out, "complete", "const")
    sp = layer.sparsity
    n_mult, padded = reuse_banks(sp.kept_weights if sp is not None else layer.n_in * layer.n_out, rf)
    if getattr(layer, "rom_in_bram", False):
        banks, padded = bram_pair_banks(n_mult, rf)
        weights = Memory("w", padded, layer.weight_t.width, banks, "block", "rom", impl="bram")
    else:
        weights = Memory("w", padded, layer.weight_t.width, n_mult, "block", "const" if const else "rom")
    if sp is None:
        return (weights, bias)
    bs = sp.block[0] * sp.block[1]
    if not sp.column_balanced:
        # Row-balanced: the kept weights are served output fastest (hwprune.rtl.engine), so one
        # cycle's multipliers read blocks all over the index ROM. It is partitioned completely:
        # constants, and each multiplier's input selection is a function of the cycle counter
        # alone (compile-time block indices, as the RTL engine decodes it).
        return (weights, Memory("idx", sp.kept_blocks, sp.index_bits, sp.kept_blocks, "complete", "const"), bias)
    ibanks, ipadded = index_banks(sp.kept_blocks, bs, rf)
    return (weights,
            Memory("idx", ipadded, sp.index_bits, ibanks, "block", "const" if const else "rom"), bias)


def engine_layer_cost(ctx: CostContext, layer: "Dense", words: int) -> LayerCost:
    """The dense / row- or column-balanced sparse engine (dense.h, dense_sparse.h; its RTL reference is
    hwprune.rtl.engine): n_mult = ceil(Kp * N / RF) multipliers, RF cycles per word, latency
    RF + depth. Resources are counted from the schedule with the measured primitives
    (hwprune.rtl.cost.engine_cost): multipliers (by-constant at RF = 1, where zero weights cost
    nothing), input multiplexers over the inputs each multiplier reads in its RF cycles, weight
    ROMs, lane adder trees, the accumulator ring, output rounding/saturation."""
    from hwprune.rtl.cost import engine_cost

    g = ctx.graph
    x_t, w_t, acc_t = g.tensor(layer.inputs[0]).type, layer.weight_t, layer.accum_t
    out_t = g.tensor(layer.output).type
    rf = layer.reuse_factor
    dsp_each = hw.multiplier_dsps(x_t.width, w_t.width, ctx.dsp_kind, getattr(layer, "mult_impl", "auto"))
    shift = acc_t.frac - x_t.frac - w_t.frac
    rom_bram = bool(getattr(layer, "rom_in_bram", False))
    shared = layer.shares_output(g) if hasattr(layer, "shares_output") else False
    if layer.sparsity is not None and layer.sparsity.column_balanced:
        from hwprune.rtl.engine import column_balanced_order

        weights, in_idx, out_idx = column_balanced_order(layer.sparsity, np.asarray(layer._raw_weights()[0], dtype=np.int64).T)
        c = engine_cost(weights, in_idx, rf, x_t, w_t, acc_t, out_t, dsp_each, shift, select_table=True,
                        out_idx=out_idx, n_out=layer.n_out, rom_bram=rom_bram, shared_output=shared)
    else:
        weights, in_idx = layer.engine_matrices()
        c = engine_cost(weights, in_idx, rf, x_t, w_t, acc_t, out_t, dsp_each, shift, select_table=layer.sparsity is not None,
                        rom_bram=rom_bram, shared_output=shared)
    dense_macs = words * layer.n_in * layer.n_out
    sp = layer.sparsity
    if sp is not None:
        kept = weights.size
        note = f"{sp.pattern} sparse kernel: {sp.kept_blocks} blocks kept, {sp.kept_blocks * sp.index_bits} index bits"
        skipped = dense_macs - words * kept
    else:
        note = "dense kernel: zero weights are not skipped" if zero_fraction(layer.weight) else ""
        skipped = 0
    trips = words + 1 if shared else words  # shared: a drain trip of RF cycles for the last word
    if shared:
        note = (note + "; " if note else "") + f"output stage shared: {-(-layer.n_out // rf)} requantizers"
    return LayerCost(latency=trips * rf + c.depth, ii=trips * rf, dsp=c.dsp, lut=c.lut, ff=c.ff, bram18=c.bram18,
                     uram=c.uram, multipliers=c.multipliers, macs=dense_macs, weight_sparsity=zero_fraction(layer.weight),
                     macs_skipped=skipped, note=note, memories=dense_memories(layer))


def exact_accumulator(layer: Layer, bound: float, frac: int) -> FixedType:
    """The accumulator type that holds every partial sum of a layer exactly: `frac` fractional
    bits, integer bits for |values| <= bound (computed in floats: a relative margin keeps a
    bound rounded down across a power of two from costing the top bit). A clear error beyond
    ap_fixed's MAX_WIDTH bits."""
    from hwprune.errors import ConfigError

    int_bits = int_bits_for(bound * (1 + 2.0**-40) + 2.0 ** -frac) if math.isfinite(bound) else MAX_WIDTH + 1
    if int_bits + frac > MAX_WIDTH:
        raise ConfigError(
            f"layer '{layer.name}': its exact accumulator needs {int_bits + frac} bits, more than ap_fixed's "
            f"{MAX_WIDTH}; use fewer fractional bits for its input or weights"
        )
    return exact_type(int_bits, frac)


def check_cap(layer: Layer, accum: FixedType | None, x_t: FixedType, w_t: FixedType) -> FixedType | None:
    """A user's accumulator cap, if the kernel can use it: each product is assigned to it, and
    the Xilinx headers abort such an assignment when the product's whole range lies below
    half the cap's lsb (they read a bit past the product's MSB)."""
    from hwprune.errors import ConfigError

    if accum is None:
        return None
    if x_t.integer + w_t.integer < -accum.frac and accum.rounding.value != "AP_TRN":
        raise ConfigError(
            f"layer '{layer.name}': the accumulator {accum} has its lsb (2^{-accum.frac}) above every product of "
            f"{x_t} and {w_t}; give it more fractional bits"
        )
    return accum


def check_accumulator(layer: Layer, acc: FixedType) -> None:
    """Kept for callers of the old name: exact accumulators up to MAX_WIDTH bits are fine."""
    from hwprune.errors import ConfigError

    if acc.width > MAX_WIDTH:
        raise ConfigError(f"layer '{layer.name}': its accumulator needs {acc.width} bits, more than {MAX_WIDTH}")


# ---------------------------------------------------------------------- ONNX import

@onnx_op("Gemm")
def _import_gemm(ctx: Any, node: Any) -> None:
    """Y = alpha * A' B' + beta * C with A the activation (its first axis the batch) and B, C
    constants. C may be anything that broadcasts to (batch, N): a scalar, (N,), (1, N), (M, 1)
    or a full (M, N) matrix — as long as it is the same for every sample (a Dense bias is)."""
    from hwprune.frontend.onnx_import import attrs

    a = attrs(node)
    if a.get("transA", 0):
        raise ctx.error(node, "transA=1 is not supported (the activation must be the left operand, its first axis "
                              "the batch)")
    w = ctx.const(node.input[1])
    if w is None or ctx.is_const(node.input[0]):
        raise ctx.error(node, "only activation x constant-weight products are supported")
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 2:
        raise ctx.error(node, f"B must be a 2-D matrix, got shape {w.shape}")
    if a.get("transB", 0):
        w = w.T
    w = w * float(a.get("alpha", 1.0))
    n = w.shape[1]
    b = np.zeros(n)
    if len(node.input) > 2 and node.input[2]:
        c = ctx.const(node.input[2])
        if c is None:
            raise ctx.error(node, "the bias (C) must be a constant")
        b = _gemm_bias(ctx, node, np.asarray(c, dtype=np.float64), n) * float(a.get("beta", 1.0))
    x_shape = ctx.shape(node.input[0])
    if not x_shape or x_shape[-1] != w.shape[0]:
        raise ctx.error(node, f"input of shape (N, {', '.join(map(str, x_shape))}) does not match B: Gemm multiplies "
                              f"(N, {w.shape[0]}) by ({w.shape[0]}, {n})")
    layer = Dense(ctx.layer_name(node), [node.input[0]], [node.output[0]], weight=w, bias=np.array(b, dtype=np.float64),
                  sparsity=_declared_sparsity(ctx, node.input[1], w),
                  weight_hint=ctx.const_type(node.input[1]) if a.get("alpha", 1.0) == 1.0 else None,
                  bias_hint=ctx.const_type(node.input[2]) if len(node.input) > 2 and a.get("beta", 1.0) == 1.0 else None)
    add_weight_layer(ctx, layer, (*x_shape[:-1], n), node.input[1], 0 if a.get("transB", 0) else 1, float(a.get("alpha", 1.0)))


def _gemm_bias(ctx: Any, node: Any, c: np.ndarray, n: int) -> np.ndarray:
    """Gemm's C as the (N,) bias of every sample: C broadcasts unidirectionally to (M, N), M the
    batch; rows that differ would make the bias depend on the sample's position in the batch."""
    if c.ndim > 2 or (c.ndim >= 1 and c.shape[-1] not in (1, n)):
        raise ctx.error(node, f"the bias C of shape {c.shape} does not broadcast to (batch, {n})")
    rows = c.reshape(-1, c.shape[-1]) if c.ndim == 2 else c.reshape(1, -1)
    if rows.shape[0] > 1 and np.any(rows != rows[:1]):
        raise ctx.error(node, f"the bias C of shape {c.shape} differs from row to row, i.e. from one sample of the "
                              f"batch to the next; hwprune computes every sample alike (use a bias of shape ({n},))")
    return np.broadcast_to(rows[0], (n,)).copy()


@onnx_op("MatMul")
def _import_matmul(ctx: Any, node: Any) -> None:
    w = ctx.const(node.input[1])
    if w is None and not ctx.is_const(node.input[0]):
        from hwprune.ops.matmul import import_activation_matmul

        import_activation_matmul(ctx, node)  # Q·Kᵀ, A·V: both operands activations
        return
    if w is None or ctx.is_const(node.input[0]):
        raise ctx.error(node, "only activation x constant-weight products are supported")
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 2:
        raise ctx.error(node, f"the weight must be a 2-D matrix, got shape {w.shape}")
    x_shape = ctx.shape(node.input[0])
    if not x_shape or x_shape[-1] != w.shape[0]:
        raise ctx.error(node, f"input shape {x_shape} does not match weight {w.shape}")
    layer = Dense(ctx.layer_name(node), [node.input[0]], [node.output[0]], weight=w, bias=np.zeros(w.shape[1]),
                  sparsity=_declared_sparsity(ctx, node.input[1], w),
                  weight_hint=ctx.const_type(node.input[1]))
    add_weight_layer(ctx, layer, (*x_shape[:-1], w.shape[1]), node.input[1], 1)


def declared_pattern(ctx: Any, weight_name: str) -> str | None:
    """The pattern `hwprune prune` (or the torch Pruner, or hwprune.quantize.export_qonnx)
    recorded for a weight initializer. In QONNX the weight input is the output of a Quant
    node: the pattern is recorded for the float initializer that Quant reads."""
    from hwprune.prune.onnx_prune import META_PREFIX

    meta = {p.key: p.value for p in ctx.model.metadata_props}
    name, seen = weight_name, set()
    while name and name not in seen:
        seen.add(name)
        if META_PREFIX + name in meta:
            return meta[META_PREFIX + name]
        quant = next((n for n in ctx.model.graph.node if n.op_type == "Quant" and name in n.output), None)
        name = quant.input[0] if quant is not None and quant.input else ""
    return None


def _declared_sparsity(ctx: Any, weight_name: str, w: np.ndarray) -> Sparsity | None:
    """The recorded balanced pattern, if the weight's zeros still fit it."""
    pattern = declared_pattern(ctx, weight_name)
    return balanced_structure(w.T, pattern) if pattern else None
