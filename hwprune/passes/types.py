"""Give every tensor and layer its fixed-point types from the precision configuration."""

from __future__ import annotations

from hwprune.ir.graph import Graph, TensorKind
from hwprune.precision import PrecisionConfig


def assign_types(g: Graph, prec: PrecisionConfig) -> Graph:
    for name in g.inputs:
        t = g.tensor(name)
        if t.kind == TensorKind.FIXED:
            t.type = prec.resolve(name, "Input").result
    for layer in g.layers:
        layer.infer_types(g, prec)
    return g
