"""Convolution, 1-D and 2-D: ONNX Conv (stride, padding incl. auto_pad, dilation, groups,
depthwise, with or without bias). Channels-last in hardware (logical [C, L] / [C, H, W],
physical [L, C] / [H, W, C]); a 1-D layer is a 2-D one with H = 1, so one engine serves both:
the window engine of hls/hwprune/window.h with a dot product per output channel (conv.h).

* io_parallel: a loop over output pixels; each reads its (zero-padded) window straight from
  the input array and does C_out dot products of K*C_in/groups terms.
* io_stream: a line buffer of the last span = dh*(kh-1)+1 input rows (a ring of rows); an
  output row is computed as soon as the last input row its windows need has arrived, the rows
  that only need bottom padding right after the last input row.

Fixed point as in Dense: exact products, an accumulator sized from the actual weights of each
output channel (sum |w_q| * max|x| + |b_q|, so it cannot overflow), zero padding contributes
exact zeros, one rounding into the output type. A user-capped accumulator (`accum`) rounds
and overflows as the kernel does, product by product in its loop order (see dense.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from hwprune.fixed import FixedType, exact_ints, exact_matmul, quantize, to_float
from hwprune.ir.channels import ConstantChannels
from hwprune.ir.graph import Graph, IOType, Layer
from hwprune.ir.sparsity import Sparsity, balanced_structure, zero_fraction
from hwprune.ops.base import (
    CostContext, HlsBinding, HlsContext, LayerCost, Memory, OpMixin, ProcessModel, WeightArray, auto_weight_type,
    cap_fraction, capped_accumulate, holds_exactly, memories_cost, onnx_op, out_of_range,
    output_delay, process, render, requant, round_error, type_bits, value_bound,
)
from hwprune.ops.dense import check_cap, exact_accumulator, index_type, rescale_declared_types
from hwprune.ops.quant import FusedOutputQuant, add_weight_layer
from hwprune.ops.window import Window, as_4d, channels_last, spatial, stream_steps, window_attrs
from hwprune.sim import resources as hw


@dataclass
class Conv(FusedOutputQuant, OpMixin, Layer):
    weight: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 1, 1)))  # (Cout, Cin/g, KH, KW)
    bias: np.ndarray = field(default_factory=lambda: np.zeros(0))
    win: Window = field(default_factory=lambda: Window(1, 1, 1, 1))
    groups: int = 1
    reuse_factor: int = 1
    mult_impl: str = "auto"  # where the products go: auto | dsp | fabric
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

    op_type: ClassVar[str] = "Conv"

    @property
    def c_out(self) -> int:
        return int(self.weight.shape[0])

    @property
    def c_in(self) -> int:
        return int(self.weight.shape[1]) * self.groups

    @property
    def taps(self) -> int:
        """Multiply-accumulates per output value."""
        return int(np.prod(self.weight.shape[1:]))

    def required_perms(self, g: Graph) -> list[tuple[int, ...] | None]:
        return [channels_last(g.tensor(self.inputs[0]).rank)]

    def output_perm(self, g: Graph) -> tuple[int, ...]:
        return channels_last(g.tensor(self.output).rank)

    def absorb_output_affine(self, g: Graph, scale: np.ndarray, shift: np.ndarray, axis: int) -> bool:
        """Fold a following per-channel y*scale+shift (batch norm, bias add) into the weights.
        Per-channel parameters must vary along the channel axis (logical 0); a scalar pair
        folds whatever axis it was attached to."""
        scale, shift = np.asarray(scale, dtype=np.float64), np.asarray(shift, dtype=np.float64)
        if axis != 0 and (scale.size != 1 or shift.size != 1):
            return False
        if self.weight_hint is not None or self.bias_hint is not None:
            # Declared exact types (QONNX Quant, FINN FIXED): as Dense, only one positive
            # power-of-two scale keeps them; otherwise the affine layer stays (no second rounding).
            uniform = np.unique(scale)
            if uniform.size != 1 or not rescale_declared_types(self, float(uniform[0]), bool(np.any(shift))):
                return False
        s = np.broadcast_to(scale.reshape(-1), (self.c_out,))
        self.weight = self.weight * s[:, None, None, None]
        self.bias = self.bias * s + np.broadcast_to(shift.reshape(-1), (self.c_out,))
        if self.sparsity is not None:
            # Scaling rows keeps the zeros, but a zero scale adds some: re-derive the pattern.
            self.sparsity = balanced_structure(self.weight.reshape(self.c_out, -1), self.sparsity.pattern)
        return True

    # ------------------------------------------------------------------ dead channels
    def constant_output_channels(self, g: Graph) -> ConstantChannels | None:
        if self.sparsity is not None:
            return None  # a balanced pattern's zeros run on the sparse kernel; its shape stays
        dead = np.flatnonzero(~np.any(self.weight.reshape(self.c_out, -1) != 0, axis=1))
        if dead.size == 0 or dead.size == self.c_out:
            return None
        if self.groups != 1:
            return None  # a grouped conv's output channels are tied to its input groups
        return ConstantChannels(0, dead, self.bias[dead])

    def remove_output_channels(self, g: Graph, cc: ConstantChannels) -> None:
        keep = cc.keep_mask(self.c_out)
        self.weight, self.bias = self.weight[keep], self.bias[keep]
        self._refresh_sparsity()

    def absorb_constant_inputs(self, g: Graph, port: int, cc: ConstantChannels) -> bool:
        """Constant input channels add sum over taps of W[:, k] * v to every output pixel — the
        same at every pixel only where no window reaches into the padding, or when v is 0."""
        if self.sparsity is not None:
            return False  # cutting inputs would break the declared balanced pattern
        if port != 0 or cc.axis != 0 or self.groups != 1 or len(cc) >= self.c_in:
            return False
        w = self.win
        padded = (w.pt or w.pl or w.pb or w.pr) and np.any(cc.value != 0)
        if padded:
            return False
        share = self.weight[:, cc.index].sum(axis=(2, 3)) @ cc.value
        self.bias = self.bias + share
        self.weight = self.weight[:, cc.keep_mask(self.c_in)]
        if np.any(share != 0):
            self.bias_hint = None
        self._refresh_sparsity()
        return True

    def _refresh_sparsity(self) -> None:
        if self.sparsity is not None:
            self.sparsity = balanced_structure(self.weight.reshape(self.c_out, -1), self.sparsity.pattern)

    # ------------------------------------------------------------------ types
    def infer_types(self, g: Graph, prec: Any) -> None:
        p = prec.resolve(self.name, self.op_type)
        x_t = g.tensor(self.inputs[0]).type
        self.reuse_factor = p.reuse_factor
        self.mult_impl = p.mult_impl
        self.weight_t = p.weight or self.weight_hint or auto_weight_type(self.weight, p.weight_width)
        acc_frac = x_t.frac + self.weight_t.frac
        bt = p.bias or self.bias_hint or auto_weight_type(self.bias, max(p.weight_width, 8))
        if p.bias is None and self.bias_hint is None and bt.frac > acc_frac:
            bt = cap_fraction(bt, acc_frac)
        self.bias_t = bt
        wq = to_float(quantize(self.weight, self.weight_t), self.weight_t)
        bq = to_float(quantize(self.bias, self.bias_t), self.bias_t)
        per_channel = np.abs(wq).reshape(self.c_out, -1).sum(axis=1) * value_bound(x_t) + np.abs(bq)
        acc_frac = max(acc_frac, self.bias_t.frac)
        self.exact_t = exact_accumulator(self, float(per_channel.max(initial=0.0)), acc_frac)
        self.accum_t = check_cap(self, p.accum, x_t, self.weight_t) or self.exact_t
        g.tensor(self.output).type = p.result

    # ------------------------------------------------------------------ semantics
    def _matrix(self, w: np.ndarray) -> np.ndarray:
        """(Cout, Cin/g, KH, KW) -> per group (KH*KW*Cin/g, Cout/g) matching patch order."""
        return np.transpose(w, (2, 3, 1, 0))  # (KH, KW, Cin/g, Cout)

    def _conv(self, x: np.ndarray, w: np.ndarray, out_shape: tuple[int, ...], matmul: Any = np.matmul,
              products: bool = False) -> np.ndarray:
        """Grouped convolution as im2col + matmul on any numeric dtype (float, int64 or exact
        integers with `matmul=exact_matmul`). With `products`, the unsummed products instead:
        (B, *out_shape, taps) with taps in the im2col order (kh, kw, c_in/groups)."""
        x4 = as_4d(x)
        p, _ = self.win.patches(x4, 0)  # (B, OH, OW, KH, KW, C)
        b = x.shape[0]
        cg, og = self.c_in // self.groups, self.c_out // self.groups
        m = self._matrix(w)
        outs = []
        for grp in range(self.groups):
            pg = p[..., grp * cg:(grp + 1) * cg].reshape(b, self.win.out_h, self.win.out_w, -1)
            mg = m[..., grp * og:(grp + 1) * og].reshape(-1, og)
            outs.append(pg[..., None, :] * mg.T if products else matmul(pg, mg))
        y = np.concatenate(outs, axis=-2 if products else -1)
        return y.reshape((b, *out_shape, -1) if products else (b, *out_shape))

    def float_forward(self, g: Graph, xs: list[np.ndarray]) -> np.ndarray:
        return self.fused_float(self._conv(xs[0], self.weight, g.tensor(self.output).physical_shape) + self.bias)

    def _raw(self) -> tuple[np.ndarray, np.ndarray]:
        return quantize(self.weight, self.weight_t), quantize(self.bias, self.bias_t)

    @property
    def capped(self) -> bool:
        """The accumulator is the user's cap and may round or overflow (else it is exact)."""
        return not holds_exactly(self.accum_t, self.exact_t)

    def _acc(self, g: Graph, x: np.ndarray) -> np.ndarray:
        """The accumulator's final values (raw, accum_t.frac fractional bits)."""
        if self.capped:
            return self._capped(g, x)[0]
        x_t = g.tensor(self.inputs[0]).type
        w, b = self._raw()
        bits = self.exact_t.width
        acc = self._conv(exact_ints(x, type_bits(x_t)), w, g.tensor(self.output).physical_shape,
                         matmul=lambda a, m: exact_matmul(a, m, bits))
        acc = exact_ints(acc, bits)
        acc <<= self.exact_t.frac - (x_t.frac + self.weight_t.frac)
        acc = acc + (exact_ints(b, bits) << (self.exact_t.frac - self.bias_t.frac))
        return acc if self.accum_t == self.exact_t else requant(acc, self.exact_t.frac, self.accum_t)

    def _capped(self, g: Graph, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x_t = g.tensor(self.inputs[0]).type
        w, b = self._raw()
        bits = type_bits(x_t) + type_bits(self.weight_t)
        prods = self._conv(exact_ints(x, bits), exact_ints(w, bits), g.tensor(self.output).physical_shape, products=True)
        return capped_accumulate(prods, x_t.frac + self.weight_t.frac, b, self.bias_t.frac, self.accum_t,
                                 self.kernel_order(), with_overflow=True)

    def kernel_order(self) -> np.ndarray | None:
        """order[oc]: the taps (im2col order kh, kw, c_in/groups) in the order the kernel adds
        their products into output channel oc. conv.h walks (kh, kw, ic): the im2col order
        itself (None). conv_sparse.h walks bank, kept block, column, taps in (ic, kh, kw)
        order; pruned taps add 0."""
        sp = self.sparsity
        if sp is None:
            return None
        kh, kw, c_in = self.win.kh, self.win.kw, self.c_in
        taps = kh * kw * c_in
        idx = sp.bank_lists()
        br, bc = sp.block
        seq: list[list[int]] = [[] for _ in range(self.c_out)]
        for bank in range(idx.shape[0]):
            for t in range(sp.per_bank):
                sel = int(idx[bank, t])
                rb = sel if sp.column_balanced else bank
                cb = bank if sp.column_balanced else (t // sp.per_group) * sp.group + sel
                for j in range(bc):
                    tap = cb * bc + j  # (ic, kh, kw) order
                    ic, i, jj = tap // (kh * kw), (tap // kw) % kh, tap % kw
                    for r in range(br):
                        seq[rb * br + r].append((i * kw + jj) * c_in + ic)
        for oc in range(self.c_out):
            seen = set(seq[oc])
            seq[oc] += [k for k in range(taps) if k not in seen]
        order = np.array(seq, dtype=np.int64).reshape(self.c_out, taps)
        return order

    def fixed_forward(self, g: Graph, xs: list[np.ndarray]) -> np.ndarray:
        return requant(self._acc(g, xs[0]), self.accum_t.frac, g.tensor(self.output).type)

    def saturation(self, g: Graph, xs: list[np.ndarray]) -> int:
        acc_over = 0
        if self.capped:
            acc, over = self._capped(g, xs[0])
            acc_over = int(np.count_nonzero(over))  # the accumulator itself wrapped or saturated
        else:
            acc = self._acc(g, xs[0])
        if self.out_quant is not None:
            return acc_over  # saturating the output is what the fused Quant asks for
        return acc_over + out_of_range(acc, self.accum_t.frac, g.tensor(self.output).type)

    def error_bound(self, g: Graph, xs: list[np.ndarray], errs: list[np.ndarray]) -> np.ndarray:
        w, b = self._raw()
        wq, bq = to_float(w, self.weight_t), to_float(b, self.bias_t)
        shape = g.tensor(self.output).physical_shape
        capped = 0.0
        if self.capped:  # the cap's rounding of every product and of the bias (overflow: `saturation`)
            x_t = g.tensor(self.inputs[0]).type
            n = (self.taps if self.accum_t.frac < x_t.frac + self.weight_t.frac else 0) + (self.accum_t.frac < self.bias_t.frac)
            capped = n * round_error(self.accum_t)
        return self.fused_error(g, self._conv(errs[0], np.abs(wq), shape)
                                + self._conv(np.abs(xs[0]), np.abs(wq - self.weight), shape) + np.abs(bq - self.bias)
                                + capped)

    # ------------------------------------------------------------------ cost
    def cost(self, ctx: CostContext) -> LayerCost:
        """Cost of one sample.

        Work: per output pixel `macs_px = C_out * K * C_in/groups` MACs (K = kh*kw taps); the
        pixels are computed one after another, each on `ceil(macs_px / RF)` multipliers over RF
        cycles (the dense engine's schedule with one "word" per output pixel):

        * io_parallel: II = positions * RF; latency = II + depth, depth = ceil(log2 taps) + 3
          (adder tree and registers), taps = K * C_in/groups.
        * io_stream: one process alternates reading input rows (one word of C_in per cycle) and
          computing the output rows they complete, so the two add:
          II = H*W + positions * RF; latency = II + depth (the line-buffer fill, the
          span - pad_top rows read before the first output, is part of the H*W reads).
          Line buffer: `span` rows of W words of C_in*width bits, one bank per row
          (`memory_cost(span*W, C_in*width, span)`).

        Weights: RF = 1 folds them into the multipliers as constants (fabric products cost
        `const_mult_luts`: zero weights and powers of two are free); RF > 1 spreads the ROM
        cyclically over one bank per multiplier, at most RF words each (`conv_memories`: a
        pixel reads every weight once in its RF cycles; the kernel's ARRAY_PARTITION). A sparse
        layer's block indices likewise go to ceil(kept blocks / RF) banks.
        """
        g = ctx.graph
        x_t, w_t, acc_t = g.tensor(self.inputs[0]).type, self.weight_t, self.accum_t
        assert x_t is not None and w_t is not None and acc_t is not None
        rf = self.reuse_factor
        win = self.win
        positions = win.out_h * win.out_w
        macs_px = self.c_out * self.taps
        sp = self.sparsity
        # A balanced pattern shrinks the per-pixel work to the kept blocks (same engine).
        kept_px = sp.kept_weights if sp is not None else macs_px
        n_mult = math.ceil(kept_px / rf)
        dsp_each = hw.multiplier_dsps(x_t.width, w_t.width, ctx.dsp_kind, self.mult_impl)
        if dsp_each:
            mult_lut = 0.0
        elif rf == 1:  # constants folded into the logic: zero weights and powers of two are free
            mult_lut = hw.const_mult_luts(self.matrix_raw(), x_t.width)
        else:
            mult_lut = n_mult * hw.lut_per_multiplier(x_t.width, w_t.width, x_t.signed, True)
        lut = mult_lut + n_mult * hw.lut_per_adder(acc_t.width)
        if rf > 1:
            lut += n_mult * hw.mux_luts(min(rf, self.taps), x_t.width)
        mems = list(conv_memories(self))
        ff = (n_mult + self.c_out) * hw.ff_per_register(acc_t.width)
        depth = int(math.ceil(math.log2(max(self.taps, 2)))) + 3
        compute = positions * rf
        if ctx.io_type == IOType.STREAM:
            mems.append(Memory("line_buffer", win.span * win.in_w, self.c_in * x_t.width, win.span, "block", "ram"))
            ii = win.in_h * win.in_w + compute
        else:
            ii = compute
        mem = memories_cost(mems)
        bram, uram, lut = mem.bram18, mem.uram, lut + mem.lut
        latency = ii + depth
        zeros = zero_fraction(self.weight)
        if sp is not None:
            lut += n_mult * hw.mux_luts(sp.group, acc_t.width if sp.column_balanced else x_t.width)
            kept_blocks = sp.kept_blocks
            note = f"{sp.pattern} sparse kernel: {kept_blocks} blocks kept, {kept_blocks * sp.index_bits} index bits"
        else:
            note = "dense kernel: zero weights are not skipped" if zeros else ""
        return LayerCost(latency=latency, ii=ii, dsp=n_mult * dsp_each, lut=lut, ff=ff, bram18=bram, uram=uram,
                         multipliers=n_mult, macs=positions * macs_px, weight_sparsity=zeros,
                         macs_skipped=positions * (macs_px - kept_px), note=note, memories=tuple(mems))

    def stream_process(self, ctx: CostContext, cost: LayerCost) -> ProcessModel:
        """The window engine (window.h): input rows a word per cycle, each output row as soon
        as its last input row is in, RF cycles per output pixel (dense or kept-block work)."""
        return process(*stream_steps(self.win, self.reuse_factor, output_delay(cost)))

    # ------------------------------------------------------------------ HLS
    def matrix_raw(self) -> np.ndarray:
        """Quantized weights as the (outputs, taps) matrix the patterns are defined on, taps in
        torch's (ic, kh, kw) order."""
        w, _ = self._raw()
        return w.reshape(self.c_out, -1)

    def hls(self, ctx: HlsContext) -> HlsBinding:
        w, b = self._raw()
        win = self.win
        lname = ctx.lname(self)
        if self.sparsity is not None:
            return self._hls_sparse(ctx, lname, b)
        L = dict(cfg=f"{lname}_config", in_h=win.in_h, in_w=win.in_w, chan=self.c_in, out_h=win.out_h,
                 out_w=win.out_w, chan_out=self.c_out, kh=win.kh, kw=win.kw, sh=win.sh, sw=win.sw, dh=win.dh,
                 dw=win.dw, pt=win.pt, pl=win.pl, span=win.span, in_per_group=self.c_in // self.groups,
                 out_per_group=self.c_out // self.groups, reuse_factor=self.reuse_factor,
                 mult_impl=hw.MULT_IMPL_CODES[self.mult_impl],
                 n_mult=math.ceil(self.c_out * self.taps / self.reuse_factor), n_p0=w.size, n_p1=b.size,
                 w_banks=conv_memories(self)[0].banks,
                 weight_t=self.weight_t.cpp(), bias_t=self.bias_t.cpp(), accum_t=self.accum_t.cpp(),
                 weight_bits=self.weight_t.width, bias_bits=self.bias_t.width,
                 in_t=ctx.ctype(self.inputs[0]), out_t=ctx.ctype(self.output), x=ctx.var(self.inputs[0]),
                 y=ctx.var(self.output), w=f"{lname}_w", b=f"{lname}_b")
        return HlsBinding("hwprune/conv.h", render("conv.j2", "config", L=L), render("conv.j2", "call", L=L),
                          # ROM order (oc, kh, kw, ic): the kernel's innermost loop walks input channels.
                          weights=[WeightArray(f"{lname}_w", np.transpose(w, (0, 2, 3, 1)).reshape(-1), self.weight_t),
                                   WeightArray(f"{lname}_b", b, self.bias_t)])

    def _hls_sparse(self, ctx: HlsContext, lname: str, b: np.ndarray) -> HlsBinding:
        sp = self.sparsity
        assert sp is not None
        blocks, idx = sp.gather(self.matrix_raw())
        win = self.win
        L = dict(cfg=f"{lname}_config", in_h=win.in_h, in_w=win.in_w, chan=self.c_in, out_h=win.out_h,
                 out_w=win.out_w, chan_out=self.c_out, kh=win.kh, kw=win.kw, sh=win.sh, sw=win.sw, dh=win.dh,
                 dw=win.dw, pt=win.pt, pl=win.pl, span=win.span, reuse_factor=self.reuse_factor,
                 mult_impl=hw.MULT_IMPL_CODES[self.mult_impl],
                 n_mult=math.ceil(blocks.size / self.reuse_factor), br=sp.block[0], bc=sp.block[1],
                 w_banks=conv_memories(self)[0].banks, idx_banks=conv_memories(self)[1].banks,
                 n_banks=blocks.shape[0], per_bank=sp.per_bank, group=sp.group, per_group=sp.per_group,
                 column_balanced=int(sp.column_balanced), n_p0=blocks.size, n_p1=b.size, n_idx=idx.size,
                 weight_t=self.weight_t.cpp(), bias_t=self.bias_t.cpp(), accum_t=self.accum_t.cpp(),
                 weight_bits=self.weight_t.width, bias_bits=self.bias_t.width, index_bits=sp.index_bits,
                 in_t=ctx.ctype(self.inputs[0]), out_t=ctx.ctype(self.output), x=ctx.var(self.inputs[0]),
                 y=ctx.var(self.output), w=f"{lname}_w", b=f"{lname}_b", idx=f"{lname}_idx")
        return HlsBinding("hwprune/conv_sparse.h", render("conv_sparse.j2", "config", L=L), render("conv_sparse.j2", "call", L=L),
                          weights=[WeightArray(f"{lname}_w", blocks.reshape(-1), self.weight_t),
                                   WeightArray(f"{lname}_b", b, self.bias_t),
                                   WeightArray(f"{lname}_idx", idx.reshape(-1), index_type(sp))])


def conv_memories(layer: Conv) -> tuple[Memory, ...]:
    """The ROMs of a Conv layer's kernel with their banking (what cost() charges and hls()
    declares). A pixel is one pipeline iteration of II = RF that reads every stored weight (and
    index) once, so each array is cyclically partitioned into banks of at most RF words:
    weights into one bank per multiplier, a sparse layer's block indices into ceil(blocks / RF)
    banks; biases are complete. At RF 1 everything is a constant of the logic."""
    rf = layer.reuse_factor
    kind = "const" if rf == 1 else "rom"
    sp = layer.sparsity
    kept = sp.kept_weights if sp is not None else layer.c_out * layer.taps
    n_mult = max(1, math.ceil(kept / rf))
    mems = [Memory("w", kept, layer.weight_t.width, n_mult, "cyclic", kind)]
    if sp is not None:
        mems.append(Memory("idx", sp.kept_blocks, sp.index_bits, max(1, math.ceil(sp.kept_blocks / rf)), "cyclic", kind))
    mems.append(Memory("b", layer.c_out, layer.bias_t.width, layer.c_out, "complete", "const"))
    return tuple(mems)


@onnx_op("Conv")
def _import_conv(ctx: Any, node: Any) -> None:
    from hwprune.frontend.onnx_import import attrs

    w = ctx.const(node.input[1])
    if w is None:
        raise ctx.error(node, "the weights must be constant")
    shape = ctx.shape(node.input[0])
    if len(shape) not in (2, 3):
        raise ctx.error(node, f"only 1-D and 2-D convolutions are supported (input of rank {len(shape) + 1})")
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != len(shape) + 1:
        raise ctx.error(node, f"weight of shape {w.shape} does not match a {len(shape) - 1}-D convolution")
    groups = int(attrs(node).get("group", 1))
    c_in = shape[0]
    if c_in % groups or w.shape[0] % groups or w.shape[1] * groups != c_in:
        raise ctx.error(node, f"groups={groups} does not divide {c_in} input / {w.shape[0]} output channels")
    if w.ndim == 3:
        w = w[:, :, None, :]
    b = np.zeros(w.shape[0])
    if len(node.input) > 2 and node.input[2]:
        bc = ctx.const(node.input[2])
        if bc is None:
            raise ctx.error(node, "the bias must be constant")
        b = np.asarray(bc, dtype=np.float64).reshape(-1)
    win = window_attrs(ctx, node, shape[1:], tuple(w.shape[2:]) if len(shape) == 3 else (w.shape[3],))
    if win.out_h < 1 or win.out_w < 1:
        raise ctx.error(node, f"the kernel does not fit the input {shape}")
    from hwprune.ops.dense import declared_pattern

    pattern = declared_pattern(ctx, node.input[1])
    sparsity = balanced_structure(w.reshape(w.shape[0], -1), pattern) if pattern and groups == 1 else None
    layer = Conv(ctx.layer_name(node), [node.input[0]], [node.output[0]], weight=w, bias=b, win=win, groups=groups,
                 sparsity=sparsity,
                 weight_hint=ctx.const_type(node.input[1]),
                 bias_hint=ctx.const_type(node.input[2]) if len(node.input) > 2 else None)
    out = (w.shape[0], win.out_w) if len(shape) == 2 else (w.shape[0], win.out_h, win.out_w)
    add_weight_layer(ctx, layer, out, node.input[1], 0)
