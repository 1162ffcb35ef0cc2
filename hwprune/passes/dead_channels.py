"""Dead-channel elimination: remove the output channels of Dense/Conv layers whose weights are
all zero, with everything that only carries them, and fold their constant into the readers' bias.

A filter-pruned model (hwprune's one-shot `prune --pattern filter`, `torch.nn.utils.prune
.ln_structured`, Torch-Pruning masks) keeps its zero rows in the ONNX file; the dense kernels
would spend multipliers and cycles on them. A channel with zero weights holds its bias b at
every position; per-channel layers after it (activations, batch norms, pools, concat, flatten,
quantizers) turn b into another constant; a Dense or Conv that reads it adds W[:, k] * f(b) to
its bias and no longer reads channel k. That is exact in float, so the model's outputs do not
change beyond rounding. Channels are kept whenever one reader of the chain cannot absorb them
(a residual add, a padded convolution reading a non-zero constant, a graph output).

Runs on the logical graph: after constant folding (so batch norms sit in the weights) and before
layouts. Each op says in its own module how it produces, carries or absorbs constant channels
(the `OpMixin` hooks); this pass only walks the graph.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

from hwprune.ir.channels import ConstantChannels, drop_axis
from hwprune.ir.graph import Graph, Layer

log = logging.getLogger(__name__)


@dataclass
class _Carry:
    layer: Layer
    port: int
    cc_in: ConstantChannels
    cc_out: ConstantChannels


@dataclass
class _Plan:
    carries: list[_Carry]
    sinks: list[tuple[Layer, int, ConstantChannels]]


def _plan(g: Graph, tensor: str, cc: ConstantChannels, plan: _Plan) -> bool:
    """Collect, without changing anything, how every reader of `tensor` handles `cc`."""
    readers = g.consumers(tensor)
    if tensor in g.outputs or not readers:
        return False
    for layer in readers:
        port = layer.inputs.index(tensor)
        if layer.inputs.count(tensor) > 1:
            return False
        if _can_absorb(g, layer, port, cc):
            plan.sinks.append((layer, port, cc))
            continue
        out = layer.carry_constant_channels(g, port, cc)
        if out is None or len(layer.outputs) != 1:
            return False
        plan.carries.append(_Carry(layer, port, cc, out))
        if not _plan(g, layer.output, out, plan):
            return False
    return True


def _can_absorb(g: Graph, layer: Layer, port: int, cc: ConstantChannels) -> bool:
    """Try the absorption on a copy: the hook mutates only when it succeeds."""
    probe = copy.copy(layer)
    return bool(probe.absorb_constant_inputs(g, port, cc))


def eliminate_dead_channels(g: Graph) -> Graph:
    """Remove every removable dead channel; returns the graph (changed in place)."""
    changed = True
    while changed:
        changed = False
        for src in list(g.layers):
            cc = src.constant_output_channels(g)
            if cc is None:
                continue
            plan = _Plan([], [])
            if not _plan(g, src.output, cc, plan):
                log.debug("%s: %d dead channel(s) kept (a reader cannot absorb them)", src.name, len(cc))
                continue
            for layer, port, c in plan.sinks:
                ok = layer.absorb_constant_inputs(g, port, c)
                assert ok, f"{layer.name} accepted constant inputs on a probe but not for real"
            for step in plan.carries:
                step.layer.remove_carried_channels(g, step.port, step.cc_in)
            # Shapes last: the hooks above read the shapes as they were.
            for step in plan.carries:
                t = g.tensor(step.layer.output)
                t.shape = drop_axis(t.shape, step.cc_out)
                t.perm = tuple(range(len(t.shape)))
            src.remove_output_channels(g, cc)
            t = g.tensor(src.output)
            t.shape = drop_axis(t.shape, cc)
            log.info("%s: removed %d dead output channel(s) (all-zero weights) and what only they fed", src.name, len(cc))
            changed = True
            break
    return g
