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
