"""The one rule by which a design's latency and interval follow from its layers'.

The estimate (sim/estimate.py), the budget solver (codesign/solver.py, which states the same
rule as linear constraints for CP-SAT and checks its answers with `LatencyDag.latency`) and the
io_parallel path of the simulator (sim/dataflow.py) all compose with this module; nothing else
adds layer latencies up.

The rule follows what the generated top function does (hls/templates/top.cpp.j2):

* **io_parallel**: the top is one pipelined region (`#pragma HLS PIPELINE II = <max layer II>`);
  every loop below it unrolls and the kernels inline, so HLS schedules each operation as soon as
  its operands are ready. Layers whose inputs are ready run side by side: the latency is the
  **longest input-to-output path** of layer latencies, and a new sample enters every
  **max layer II** cycles (the II the top declares).
* **io_stream**: the top is a `#pragma HLS DATAFLOW` region: every kernel is a process and all
  of them run concurrently, joined by FIFOs. The interval is the slowest process's II (max layer
  II); for the latency the same longest path is the estimate's figure — each process counted
  from its first input word to its last output word, as if it waited for its producer's whole
  latency. The processes overlap (a consumer starts on the first word), and a merge whose
  branches have unequal lag can stall, so here the cycle-approximate simulation
  (`sim.dataflow.simulate`) is the figure to use; the longest path is what the solver can
  optimize over, and the pruner calibrates it against the simulation (codesign/pruner.py).

A top function that ran its layers one after another (neither pipelined nor a dataflow region)
would sum their latencies; hwprune generates none, so no rule here sums over layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from hwprune.ir.graph import Graph
from hwprune.ops.base import LayerCost


@dataclass(frozen=True)
class Timing:
    latency: int  # cycles from the first input to the last output of one sample
    interval: int  # cycles between successive samples (the design's II)


@dataclass(frozen=True)
class LatencyDag:
    """The data dependencies between layers, as the generated top function expresses them: a
    layer can start once every layer producing one of its inputs has finished."""

    layers: tuple[str, ...]  # topological order (the graph's)
    preds: tuple[tuple[int, ...], ...]  # per layer, the layers producing its inputs
    sinks: tuple[int, ...]  # the layers whose outputs leave the design

    @classmethod
    def of(cls, g: Graph) -> "LatencyDag":
        producer: dict[str, int] = {}
        preds: list[tuple[int, ...]] = []
        for k, layer in enumerate(g.layers):
            preds.append(tuple(sorted({producer[t] for t in layer.inputs if t in producer})))
            for t in layer.outputs:
                producer[t] = k
        sinks = sorted({producer[t] for t in g.outputs if t in producer})
        if not sinks:  # no output produced by a layer (degenerate): every layer counts
            sinks = list(range(len(g.layers)))
        return cls(tuple(l.name for l in g.layers), tuple(preds), tuple(sinks))

    def finish_times(self, latency: Mapping[str, int]) -> list[int]:
        """Per layer, the cycle its last output leaves when every layer starts as soon as its
        producers have finished (layers missing from `latency` take no time)."""
        finish: list[int] = []
        for name, ps in zip(self.layers, self.preds):
            finish.append(max((finish[p] for p in ps), default=0) + int(latency.get(name, 0)))
        return finish

    def latency(self, latency: Mapping[str, int]) -> int:
        """The longest input-to-output path of layer latencies."""
        finish = self.finish_times(latency)
        return max((finish[s] for s in self.sinks), default=0)

    def critical_path(self, latency: Mapping[str, int]) -> list[str]:
        """The layers on one longest path, input to output (for reports)."""
        finish = self.finish_times(latency)
        if not self.sinks:
            return []
        k = max(self.sinks, key=lambda s: finish[s])
        path = [k]
        while self.preds[k]:
            k = max(self.preds[k], key=lambda p: finish[p])
            path.append(k)
        return [self.layers[i] for i in reversed(path)]


def design_timing(dag: LatencyDag, latency: Mapping[str, int], ii: Iterable[int]) -> Timing:
    """THE composition rule: latency the longest path of layer latencies, interval the largest
    layer II."""
    return Timing(dag.latency(latency), max(max(ii, default=1), 1))


def compose(g: Graph, costs: Mapping[str, LayerCost]) -> Timing:
    """Whole-design latency and interval of a graph from its layers' cost models."""
    return design_timing(LatencyDag.of(g), {n: c.latency for n, c in costs.items()}, (c.ii for c in costs.values()))
