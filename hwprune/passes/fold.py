"""Fold per-channel affine layers (batch norm, constant bias adds) into the Dense/Conv that
produces their input, when nothing else reads that producer's output. Each op decides how it
folds (`fold_into_producer`), so this pass stays a loop. `fold_scalar_scales` carries a scalar
scale further back, through data movement and activation products (attention's 1/sqrt(d))."""

from __future__ import annotations

import logging

import numpy as np

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


def fold_scalar_scales(g: Graph) -> Graph:
    """Fold a ScaleShift with a scalar scale into the Dense whose outputs it scales, through the
    layers in between that only move data, and through a MatMul of two activations: attention's
    `scores = (q @ kᵀ) * 1/sqrt(d)` becomes q's projection with W and b times 1/sqrt(d) (what
    FINN's streamlining and optimum's export do), and the ScaleShift — a multiplier per lane of
    the scores' word, a process and a FIFO in io_stream — disappears; its consumer reads the
    MatMul's output. Direct Dense -> ScaleShift pairs are `fold_constants_into_layers`' (per
    channel too); this pass covers the paths that one cannot see across.

    Why it is valid: a Reshape (relabelling Transpose included), Reorder or Slice moves or
    selects elements without arithmetic, so a scalar s commutes with it; a MatMul is linear in
    each operand, (s·A)·B = s·(A·B) = A·(s·B), so s may go to either operand (the first is
    tried, then the second); and a scalar shift t commutes with the data movement (every
    element moved gets t), so with no MatMul on the path it joins the bias: b·s + t. The float
    model is the same function. In fixed point the Dense quantizes W·s and b·s with its own
    precision configuration: automatic types take their integer bits from the scaled values
    and lose no resolution; an explicit weight type in the precision applies to the scaled
    weights as they are. The rounding of the scaled scores moves from the ScaleShift's output
    to the Dense's output (and the MatMul's), and the ScaleShift's own quantized scale and
    rounding go.

    Not folded (the ScaleShift stays): a tensor on the path (the Dense's output, the scores, or
    any between) read by a second layer or a graph output — it would see the scaled values; a
    non-scalar scale (per channel, it need not survive a relabelling or a product); a nonzero
    shift through a MatMul (A·B + t is no product of shifted operands); a non-linear layer on
    the path (anything other than the layers above); and a Dense that refuses
    (`Dense.absorb_scalar_scale`: a fused output Quant, a zero scale, weights with a declared
    exact type under a scale that is not a positive power of two)."""
    from hwprune.ops.batchnorm import ScaleShift

    changed = True
    while changed:
        changed = False
        for layer in list(g.layers):
            if not isinstance(layer, ScaleShift):
                continue
            s, t = np.atleast_1d(layer.scale), np.atleast_1d(layer.shift)
            if s.size != 1 or (t.size != 1 and np.any(t)):
                continue
            scale, shift = float(s[0]), float(t[0]) if t.size == 1 else 0.0
            for dense, path in _scaled_producers(g, layer.inputs[0], through_products=shift == 0.0):
                if not dense.absorb_scalar_scale(scale, shift):
                    continue
                log.info("folded %s (x %g + %g) into %s through %s", layer.name, scale, shift, dense.name,
                         " -> ".join(path) or "nothing")
                last = g.producer(layer.inputs[0])
                g.layers.remove(layer)
                g.tensors.pop(last.output, None)
                last.outputs = [layer.output]  # the ScaleShift's consumers (and name) stay
                changed = True
                break
    return g


def _scaled_producers(g: Graph, tensor: str, through_products: bool, path: tuple[str, ...] = ()):
    """Every Dense whose outputs reach `tensor` only through data movement (and, if
    `through_products`, MatMul operands), each tensor on the way read once and by nothing
    else, nearest first, with the layers between it and `tensor` (in data-flow order)."""
    from hwprune.ops.dense import Dense
    from hwprune.ops.layout import Reorder, Reshape, Slice
    from hwprune.ops.matmul import MatMul

    uses = sum(l.inputs.count(tensor) for l in g.consumers(tensor))  # x @ x reads x twice
    if uses != 1 or tensor in g.outputs:
        return
    p = g.producer(tensor)
    if isinstance(p, Dense):
        yield p, path
    elif isinstance(p, (Reshape, Reorder, Slice)):
        yield from _scaled_producers(g, p.inputs[0], through_products, (p.name, *path))
    elif isinstance(p, MatMul) and through_products:
        for operand in p.inputs:
            yield from _scaled_producers(g, operand, through_products, (p.name, *path))
