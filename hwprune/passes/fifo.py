"""FIFO sizing: write the depth of every FIFO of an io_stream design into the IR.

Like FINN's `step_set_fifo_depths`, the depths become part of the design (`Tensor.fifo_depth`
of each stream between two kernels) instead of being recomputed by whoever needs them: the HLS
writer declares them (`#pragma HLS STREAM ... depth`), the project manifest records them, the
estimate costs them and the simulator simulates them (and says whether they lose anything
against unbounded FIFOs). Depths not given are sized by the dataflow simulator: the smallest
that lose no throughput or latency (sim/dataflow.py, `size_network`).

The depths belong to the design they were sized for: after changing a layer (its reuse factor,
its sparsity), run the pass again.
"""

from __future__ import annotations

import logging
from typing import Mapping

from hwprune.board import Board, load_board
from hwprune.errors import ConfigError
from hwprune.ir.graph import Graph, IOType

log = logging.getLogger(__name__)


def _checked(depths: int | Mapping[str, int] | None, fifos: list[str]) -> dict[str, int]:
    if depths is None:
        return {}
    if isinstance(depths, bool):
        raise ConfigError(f"FIFO depth {depths!r} is not a whole number")
    if isinstance(depths, int):
        if depths < 1:
            raise ConfigError(f"FIFO depth {depths} must be at least 1")
        return {t: depths for t in fifos}
    unknown = sorted(set(depths) - set(fifos))
    if unknown:
        raise ConfigError(f"no FIFO named {unknown[0]!r}; the design's FIFOs are: {', '.join(fifos) or 'none'}")
    out = {}
    for t, d in depths.items():
        if isinstance(d, bool) or int(d) != d or int(d) < 1:
            raise ConfigError(f"FIFO {t!r}: depth {d!r} must be a whole number of at least 1")
        out[t] = int(d)
    return out


def recommended_depths(g: Graph, board: Board | str) -> dict[str, int]:
    """The simulator's depths for every FIFO (memoised per design, so cheap to ask again)."""
    from hwprune.sim.dataflow import build_network, cost_context, size_network

    b = board if isinstance(board, Board) else load_board(board)
    ctx = cost_context(g, b)
    return size_network(build_network(g, ctx, {l.name: l.cost(ctx) for l in g.layers}))


def set_fifo_depths(g: Graph, board: Board | str | None = None, depths: int | Mapping[str, int] | None = None,
                    keep: bool = False) -> dict[str, int]:
    """Give every FIFO of `g` its depth, in place; returns {stream tensor: depth}.

    `depths`: one depth for every FIFO, or some FIFOs by stream tensor name; the others are
    sized by the simulator for `board` (without a board they stay unsized: the estimate and
    the simulator then use the recommended depths, the HLS writer sizes them). `keep`: FIFOs
    that already declare a depth keep it. io_parallel designs have no FIFOs: every depth is
    cleared."""
    from hwprune.sim.dataflow import declared_fifo_depths, stream_fifos

    if g.io_type != IOType.STREAM:
        if depths:
            raise ConfigError("FIFO depths apply to io_stream designs; this one is io_parallel")
        for t in g.tensors.values():
            t.fifo_depth = None
        return {}
    fifos = stream_fifos(g)
    chosen = _checked(depths, fifos)
    if keep:
        chosen = {**declared_fifo_depths(g), **chosen}
    missing = [t for t in fifos if t not in chosen]
    if missing and board is not None:
        rec = recommended_depths(g, board)
        chosen.update({t: rec[t] for t in missing})
    for name, t in g.tensors.items():
        t.fifo_depth = chosen.get(name)
    out = {t: chosen[t] for t in fifos if t in chosen}
    log.debug("FIFO depths of %s: %s", g.name, out)
    return out


def bind_fifo_storage(g: Graph, board: Board | str, caps: Mapping[str, float]) -> dict[str, str]:
    """Move FIFOs out of block RAM into shift registers while the design's BRAM18 is over
    `caps["bram18"]` and the LUTs that costs stay within `caps["lut"]` (the budget's limits,
    headroom included), in place; returns {stream tensor: storage} of the FIFOs it bound.

    Vitis HLS puts a FIFO deeper than 2 words and wider than 1 Kbit in block RAM, however
    shallow: a 48-deep FIFO of 96 x 16-bit words takes 43 BRAM18 for 74 Kbit, which as SRL32
    shift registers is 2 x 1,536 LUTs. The FIFOs that free the most BRAM18 per LUT go first
    (`BIND_STORAGE type=fifo impl=srl`, costed by the estimate, written by the HLS writer and
    recorded in the project). Depths must be set (`set_fifo_depths`); io_parallel: nothing."""
    from hwprune.sim.dataflow import declared_fifo_depths
    from hwprune.sim.estimate import estimate
    from hwprune.sim.resources import fifo_cost

    if g.io_type != IOType.STREAM:
        return {}
    b = board if isinstance(board, Board) else load_board(board)
    res = estimate(g, b).resources
    bram, lut = float(res.bram18), float(res.lut)
    if bram <= caps.get("bram18", float("inf")):
        return {}
    moves = []
    for t, depth in declared_fifo_depths(g).items():
        tensor = g.tensor(t)
        if tensor.fifo_impl != "auto" or tensor.type is None:
            continue
        width = tensor.type.width * tensor.word
        now, srl = fifo_cost(depth, width), fifo_cost(depth, width, "srl")
        if now.bram18 > 0:
            moves.append((now.bram18 / max(srl.lut - now.lut, 1.0), t, now.bram18, srl.lut - now.lut))
    bound: dict[str, str] = {}
    for _, t, freed, extra in sorted(moves, key=lambda m: (-m[0], m[1])):
        if bram <= caps.get("bram18", float("inf")):
            break
        if lut + extra > caps.get("lut", float("inf")):
            continue
        g.tensor(t).fifo_impl = "srl"
        bound[t] = "srl"
        bram, lut = bram - freed, lut + extra
    log.info("FIFOs moved to shift registers: %s", bound)
    return bound


def set_fifo_storage(g: Graph, storage: Mapping[str, str]) -> None:
    """Bind FIFOs to a storage by stream tensor name (what a project records, what
    `bind_fifo_storage` chose), in place; a clear error for an unknown FIFO or storage."""
    from hwprune.sim.dataflow import stream_fifos
    from hwprune.sim.resources import FIFO_IMPLS

    if not storage:
        return
    if g.io_type != IOType.STREAM:
        raise ConfigError("FIFO storage applies to io_stream designs; this one is io_parallel")
    fifos = set(stream_fifos(g))
    for t, impl in storage.items():
        if t not in fifos:
            raise ConfigError(f"no FIFO named {t!r}; the design's FIFOs are: {', '.join(sorted(fifos)) or 'none'}")
        if impl not in FIFO_IMPLS:
            raise ConfigError(f"FIFO {t!r}: storage {impl!r} is not one of {', '.join(FIFO_IMPLS)}")
        g.tensor(t).fifo_impl = impl
