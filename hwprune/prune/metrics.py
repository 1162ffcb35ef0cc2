"""Metrics of a (pruned, quantized) model, after the survey's section III: accuracy, parameters,
compression, memory footprint in bits (weights + indices as the kernels store them), MACs,
and the estimated cycles and resources.

Two kinds of sparsity are kept apart: *nominal* (the fraction of weights that are zero, what a
paper reports) and *effective* (the multiply-accumulates the generated kernel really skips).
A dense kernel stores and multiplies its zeros; a balanced sparse kernel stores only the kept
blocks plus an index per block; a filter-pruned layer is simply smaller.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from hwprune.ir.graph import Graph

FLOAT_BITS = 32


@dataclass
class LayerStorage:
    weights: int  # weight entries stored (kept blocks only on a sparse kernel)
    nonzero: int  # non-zero weights (+ non-zero biases)
    total: int  # weight + bias entries of the layer as a dense matrix
    weight_bits: int  # bits of stored weights and biases
    index_bits: int  # bits of the sparse kernel's block indices
    nonzero_macs: int  # MACs with a non-zero weight (what a zero-skipping ideal would execute)


def compute_layers(g: Graph) -> list[Any]:
    """The layers that multiply by weights (Dense, Conv), in graph order: what pruning and the
    reuse factor act on."""
    from hwprune.ops.conv import Conv
    from hwprune.ops.dense import Dense

    return [l for l in g.layers if isinstance(l, (Dense, Conv))]


def layer_storage(g: Graph, layer: Any) -> LayerStorage | None:
    """What a layer keeps in memory; None for layers without parameters."""
    from hwprune.ops.conv import Conv
    from hwprune.ops.dense import Dense
    from hwprune.ops.embedding import Embedding

    if isinstance(layer, Embedding):
        t = g.tensor(layer.output).type
        n = int(layer.table.size)
        return LayerStorage(n, int(np.count_nonzero(layer.table)), n, n * t.width, 0, 0)
    if not isinstance(layer, (Dense, Conv)):
        return None
    w, b = layer.weight, layer.bias
    wt, bt = layer.weight_t, layer.bias_t
    sp = layer.sparsity
    stored = sp.kept_weights if sp is not None else int(w.size)
    index_bits = sp.kept_blocks * sp.index_bits if sp is not None else 0
    if isinstance(layer, Dense):
        repeats = layer.n_words(g)
    else:
        repeats = layer.win.out_h * layer.win.out_w
    nnz = int(np.count_nonzero(w))
    return LayerStorage(stored, nnz + int(np.count_nonzero(b)), int(w.size + b.size),
                        stored * wt.width + int(b.size) * bt.width, index_bits, repeats * nnz)


@dataclass
class ModelMetrics:
    accuracy: float | None
    params: int  # non-zero parameters
    dense_params: int  # parameters of the layers as dense matrices (after any filter pruning)
    memory_bits: int  # weights + biases + indices as stored on the device
    index_bits: int
    macs: int  # multiply-accumulates per sample the kernels execute
    nominal_macs: int  # MACs with a non-zero weight
    dense_macs: int  # MACs of the layers as dense products
    nominal_sparsity: float  # zero fraction of the compute layers' weights
    latency_cycles: int
    latency_us: float
    ii_cycles: int
    dsp: int
    lut: int
    ff: int
    bram18: int
    uram: int
    multipliers: int
    fits: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_metrics(g: Graph, est: Any, accuracy: float | None = None) -> ModelMetrics:
    """Metrics of a compiled graph and its estimate (`hwprune.sim.estimate.estimate`)."""
    storage = [s for s in (layer_storage(g, l) for l in g.layers) if s is not None]
    compute = compute_layers(g)
    w_total = sum(int(l.weight.size) for l in compute)
    w_zero = sum(int(l.weight.size - np.count_nonzero(l.weight)) for l in compute)
    dense_macs = sum(le.cost.macs for le in est.layers)
    skipped = sum(le.cost.macs_skipped for le in est.layers)
    r = est.resources
    return ModelMetrics(
        accuracy=accuracy,
        params=sum(s.nonzero for s in storage),
        dense_params=sum(s.total for s in storage),
        memory_bits=sum(s.weight_bits + s.index_bits for s in storage),
        index_bits=sum(s.index_bits for s in storage),
        macs=dense_macs - skipped,
        nominal_macs=sum(s.nonzero_macs for s in storage),
        dense_macs=dense_macs,
        nominal_sparsity=w_zero / w_total if w_total else 0.0,
        latency_cycles=est.latency_cycles, latency_us=est.latency_us, ii_cycles=est.ii_cycles,
        dsp=r.dsp, lut=r.lut, ff=r.ff, bram18=r.bram18, uram=r.uram,
        multipliers=sum(le.cost.multipliers for le in est.layers), fits=est.fits(),
    )
