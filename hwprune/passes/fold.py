"""Fold per-channel affine layers (batch norm, constant bias adds) into the Dense/Conv that
produces their input, when nothing else reads that producer's output. Each op decides how it
folds (`fold_into_producer`), so this pass stays a loop."""

from __future__ import annotations

import logging

from hwprune.ir.graph import Graph

log = logging.getLogger(__name__)


def fold_constants_into_layers(g: Graph) -> Graph:
    changed = True
    while changed:
        changed = False
        for layer in list(g.layers):
            fold = getattr(layer, "fold_into_producer", None)
            if fold is None:
                continue
            producer = g.producer(layer.inputs[0])
            if producer is None or len(g.consumers(layer.inputs[0])) != 1 or layer.inputs[0] in g.outputs:
                continue
            if fold(g, producer):
                log.info("folded %s into %s", layer.name, producer.name)
                out = layer.output
                g.layers.remove(layer)
                g.tensors.pop(producer.output, None)
                producer.outputs = [out]
                changed = True
                break
    return g
