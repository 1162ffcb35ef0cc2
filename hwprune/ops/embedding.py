"""Embedding lookup: ONNX Gather of a constant table [V, D] by integer token ids [L].

Output [L, D]: each id selects one row, already quantized into the output type, so the
fixed-point semantics is a table read. A constant [L, D] added to the lookup (BERT's position and
token-type embeddings, `Gather` of a constant by constant ids folded at import) is kept as a
second table in the output type: position l adds its row exactly, saturating into the type (the table ROM is V x D words; it dominates a text
model's memory, which is why vocabulary pruning matters).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from hwprune.fixed import FixedType, quantize, to_float
from hwprune.ir.graph import Graph, IOType, Layer, TensorKind
from hwprune.ops.base import (
    CostContext, HlsBinding, HlsContext, LayerCost, Memory, OpMixin, ProcessModel, Step, WeightArray, onnx_op, output_delay,
    process, render, requant,
)
from hwprune.sim import resources as hw


@dataclass
class Embedding(OpMixin, Layer):
    table: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (V, D)
    # Exact type of a table that came out of a QONNX Quant (used unless a weight type is configured).
    table_hint: FixedType | None = None
    # Rows added per id position (L, D): position (+ token type) embeddings; None without.
    position: np.ndarray | None = None

    op_type: ClassVar[str] = "Embedding"

    @property
    def vocab(self) -> int:
        return int(self.table.shape[0])

    @property
    def dim(self) -> int:
        return int(self.table.shape[1])

    def required_perms(self, g: Graph) -> list[tuple[int, ...] | None]:
        return [None]

    def output_perm(self, g: Graph) -> tuple[int, ...]:
        t = g.tensor(self.inputs[0])
        # ids keep their order; the embedding dimension is appended innermost.
        return (*t.perm, t.rank)

    def infer_types(self, g: Graph, prec: Any) -> None:
        p = prec.resolve(self.name, self.op_type)
        from hwprune.ops.quant import explicit_result

        # The table is stored in the output type: a lookup adds no rounding after it. A
        # Quant'ed table (QONNX) keeps its exact narrow type unless this layer is configured.
        explicit = p.weight or explicit_result(prec, self.name, self.op_type)
        g.tensor(self.output).type = explicit or self.table_hint or p.result

    def _table_raw(self, g: Graph) -> np.ndarray:
        return quantize(self.table, g.tensor(self.output).type)

    def _position_physical(self, g: Graph, raw: bool) -> np.ndarray:
        """The position rows in the ids' physical order: (ids..., D)."""
        ids = g.tensor(self.inputs[0])
        pos = np.asarray(self.position, dtype=np.float64).reshape((*ids.shape, self.dim))
        pos = np.transpose(pos, (*ids.perm, ids.rank))
        return quantize(pos, g.tensor(self.output).type) if raw else pos

    def raw_table(self, g: Graph) -> np.ndarray:
        """The table as raw integers of the output type (what the host ships when it does the lookup)."""
        return self._table_raw(g)

    def raw_position(self, g: Graph) -> np.ndarray:
        """The position rows as raw integers, (ids physical shape..., dim)."""
        return self._position_physical(g, True)

    def float_forward(self, g: Graph, xs: list[np.ndarray]) -> np.ndarray:
        y = self.table[xs[0].astype(np.int64)]
        return y if self.position is None else y + self._position_physical(g, False)[None]

    def fixed_forward(self, g: Graph, xs: list[np.ndarray]) -> np.ndarray:
        y = self._table_raw(g)[xs[0].astype(np.int64)]
        if self.position is None:
            return y
        t = g.tensor(self.output).type
        return requant(y + self._position_physical(g, True)[None], t.frac, t)

    def saturation(self, g: Graph, xs: list[np.ndarray]) -> int:
        from hwprune.fixed import overflow_count, quantize_overflow_count

        t = g.tensor(self.output).type
        if self.position is not None:
            y = self._table_raw(g)[xs[0].astype(np.int64)] + self._position_physical(g, True)[None]
            return int(overflow_count(y, t.frac, t))
        used = np.unique(xs[0].astype(np.int64))
        return quantize_overflow_count(self.table[used], t)

    def error_bound(self, g: Graph, xs: list[np.ndarray], errs: list[np.ndarray]) -> np.ndarray:
        t = g.tensor(self.output).type
        err = np.abs(to_float(self._table_raw(g), t) - self.table)[xs[0].astype(np.int64)]
        if self.position is not None:
            pos = self._position_physical(g, False)
            err = err + np.abs(to_float(quantize(pos, t), t) - pos)[None]
        return err

    def table_memory(self, g: Graph, copies: int = 1) -> Memory:
        """The table ROM as the kernel declares it: reshaped (ARRAY_RESHAPE type=cyclic
        factor=dim) into one word per row, vocab x (dim * width) bits, so a lookup reads one
        word; io_parallel reads every id's row in one cycle from `copies` replicas (rom_np)."""
        t = g.tensor(self.output).type
        return Memory("table", self.vocab, self.dim * t.width, 1, "reshape", "rom", copies)

    def cost(self, ctx: CostContext) -> LayerCost:
        g = ctx.graph
        t = g.tensor(self.output).type
        n_ids = g.tensor(self.inputs[0]).size
        # Position rows: constants folded into the adders (io_parallel, like a bias), or one
        # row per cycle from a ROM (io_stream); dim adders of the output width.
        adders = 0.0 if self.position is None else self.dim * hw.lut_per_adder(t.width + 1)
        if ctx.io_type == IOType.PARALLEL:
            # Every id reads a row in the same cycle: one ROM copy per id position.
            m = self.table_memory(g, copies=n_ids)
            mem = m.cost()
            return LayerCost(latency=2, ii=1, bram18=mem.bram18, uram=mem.uram, lut=mem.lut + adders * n_ids,
                             note=f"{n_ids} table copies", memories=(m,))
        m = self.table_memory(g)
        mems = (m,)
        if self.position is not None:
            mems = (m, Memory("pos", n_ids, self.dim * t.width, 1, "reshape", "rom"))
        from hwprune.ops.base import memories_cost

        mem = memories_cost(mems, allow_uram=ctx.has_uram)
        return LayerCost(latency=n_ids + 2, ii=n_ids, bram18=mem.bram18, uram=mem.uram, lut=mem.lut + adders,
                         ff=self.dim * t.width, note="one row per cycle", memories=mems)

    def stream_process(self, ctx: CostContext, cost: LayerCost) -> ProcessModel:
        """embedding.h: reads a word of ids, then looks up one id and writes its row per cycle."""
        d = output_delay(cost)
        word = (Step(1, 1, (0,), (0,), d), Step(ctx.graph.tensor(self.inputs[0]).word - 1, 1, (), (0,), d))
        return process(*(word * ctx.words(self.inputs[0])))

    def hls(self, ctx: HlsContext) -> HlsBinding:
        g = ctx.graph
        t = g.tensor(self.output).type
        lname = ctx.lname(self)
        L = dict(cfg=f"{lname}_config", n_ids=g.tensor(self.inputs[0]).size, vocab=self.vocab, dim=self.dim,
                 bits=t.width, signed="true" if t.signed else "false",
                 in_t=ctx.ctype(self.inputs[0]), out_t=ctx.ctype(self.output),
                 x=ctx.var(self.inputs[0]), y=ctx.var(self.output), table=f"{lname}_table",
                 in_word=g.tensor(self.inputs[0]).word, pos=f"{lname}_pos" if self.position is not None else "")
        weights = [WeightArray(f"{lname}_table", self._table_raw(g).reshape(-1), t)]
        if self.position is not None:
            weights.append(WeightArray(f"{lname}_pos", self._position_physical(g, True).reshape(-1), t))
        return HlsBinding("hwprune/embedding.h", render("embedding.j2", "config", L=L),
                          render("embedding.j2", "call", L=L), weights=weights)


@onnx_op("Gather")
def _import_gather(ctx: Any, node: Any) -> None:
    from hwprune.frontend.onnx_import import attrs

    table = ctx.const(node.input[0])
    if table is None and ctx.is_const(node.input[1]):
        from hwprune.ops.layout import import_gather_select

        import_gather_select(ctx, node)
        return
    if table is None or ctx.is_const(node.input[1]):
        raise ctx.error(node, "only Gather of a constant table by dynamic indices (an embedding) is supported")
    if int(attrs(node).get("axis", 0)) != 0 or np.ndim(table) != 2:
        raise ctx.error(node, "only row lookups (axis=0) in a 2-D table are supported")
    ids = ctx.tensor(node.input[1])
    if ids.kind != TensorKind.INDEX:
        raise ctx.error(node, "embedding indices must be an integer model input")
    ids.index_range = max(ids.index_range, int(np.shape(table)[0]))
    out_shape = (*ids.shape, int(np.shape(table)[1]))
    scaled = ctx.const_scale(node.input[0])
    if scaled is None:
        layer = Embedding(ctx.layer_name(node), [node.input[1]], [node.output[0]], table=np.asarray(table, dtype=np.float64),
                          table_hint=ctx.const_type(node.input[0]))
        ctx.add(layer, out_shape)
        return
    _import_scaled_table(ctx, node, np.asarray(table, dtype=np.float64), scaled, out_shape)


def _import_scaled_table(ctx: Any, node: Any, table: np.ndarray, scaled: Any, out_shape: tuple[int, ...]) -> None:
    """A table out of a Quant whose scale is not one power of two (Brevitas' float default):
    the lookup returns the integer codes (their exact type) and a Rescale after it multiplies
    each column by its scale, which the import's clean-up then moves into the next layer
    (hwprune/passes/scales.py). A scale per row (token) cannot follow the lookup."""
    from hwprune.ops.rescale import Rescale, frac_array

    code, s_full = scaled
    if not np.all(s_full == s_full[:1, :]):
        raise ctx.error(node, "the table's quantizer has one scale per row (token), which cannot follow the lookup; "
                              "use a per-tensor (or per-column) weight scale")
    s = s_full[0]
    name = ctx.layer_name(node)
    codes = f"{node.output[0]}__codes"
    ctx.add(Embedding(name, [node.input[1]], [codes], table=np.round(table / s_full), table_hint=code), out_shape)
    r = Rescale(ctx.graph.unique_name(f"{name}_scale"), [codes], [node.output[0]], axis=len(out_shape) - 1)
    r.set_params(frac_array(s), frac_array([0]))
    ctx.add(r, out_shape)


def absorb_position_add(ctx: Any, node: Any, x: str, c: np.ndarray) -> bool:
    """Add(lookup, constant [L, D]) where the lookup's only reader is this Add: the constant
    becomes the embedding's position rows. False (nothing changed) otherwise."""
    layer = ctx.graph.producer(ctx.name(x))
    if not isinstance(layer, Embedding):
        return False
    readers = [n for n in ctx.model.graph.node if x in n.input]
    if len(readers) != 1 or x in {o.name for o in ctx.model.graph.output}:
        return False
    shape = ctx.shape(x)
    c = np.asarray(c, dtype=np.float64)
    if c.ndim > len(shape) + 1 or (c.ndim == len(shape) + 1 and c.shape[0] != 1):
        return False
    try:
        full = np.broadcast_to(c.reshape(c.shape[1:] if c.ndim == len(shape) + 1 else c.shape), shape)
    except ValueError:
        return False
    layer.position = full.copy() if layer.position is None else layer.position + full
    ctx.alias(node.output[0], x)
    return True
