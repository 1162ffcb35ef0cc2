"""Assign every tensor its physical layout and insert the data movement that is really needed.

Each layer says which physical order it needs for each input (`required_perms`: None = any)
and which order its output gets (`output_perm`). When a producer's order differs:
  * same data order (only unit axes placed differently) -> a free `Reshape` (an alias);
  * different data order -> a `Reorder` that moves data (and costs in the estimate).
Graph inputs take the order their first consumer wants: the host transposes them before
sending (the project manifest records the order), so the hardware never pays for it.
"""

from __future__ import annotations

import logging

import numpy as np

from hwprune.ir.graph import Graph, Tensor
from hwprune.ops.layout import Clone, Reorder, Reshape

log = logging.getLogger(__name__)


def assign_layouts(g: Graph) -> Graph:
    fixed_inputs: set[str] = set()
    converted: dict[tuple[str, tuple[int, ...]], str] = {}
    for layer in list(g.layers):
        reqs = layer.required_perms(g)
        for k, req in enumerate(reqs):
            name = layer.inputs[k]
            if req is None:
                if name in g.inputs:
                    fixed_inputs.add(name)
                continue
            t = g.tensor(name)
            if t.perm == tuple(req):
                fixed_inputs.add(name)
                continue
            if name in g.inputs and name not in fixed_inputs:
                t.perm = tuple(req)
                fixed_inputs.add(name)
                continue
            key = (name, tuple(req))
            if key not in converted:
                new = Tensor(g.unique_name(f"{name}_p{''.join(map(str, req))}"), t.shape, tuple(req), t.type, t.kind, t.index_range)
                g.tensors[new.name] = new
                same = _same_data_order(t, new)
                op = (Reshape if same else Reorder)(g.unique_name(f"{layer.name}_{'relabel' if same else 'reorder'}{k}"), [name], [new.name])
                g.layers.insert(g.layers.index(layer), op)
                if not same:
                    log.info("layout: %s reorders %s from %s to %s", layer.name, name, t.perm, req)
                converted[key] = new.name
            layer.inputs[k] = converted[key]
        for out in layer.outputs:
            g.tensor(out).perm = tuple(layer.output_perm(g))
    return g


def fold_reorders_into_dense(g: Graph) -> Graph:
    """Reorder -> flatten -> Dense(s): permute the Dense weight rows instead of the data.

    A channels-last conv output flattened in ONNX's channels-first order would otherwise need
    a full-tensor buffer in io_stream; reading it in the order it arrives and permuting the
    (constant) weights instead is free. hls4ml does the same when it converts Flatten."""
    from hwprune.ops.dense import Dense

    for reorder in [l for l in g.layers if isinstance(l, Reorder)]:
        flat = g.consumers(reorder.output)
        if len(flat) != 1 or not isinstance(flat[0], Reshape) or reorder.output in g.outputs:
            continue
        reshape = flat[0]
        out = g.tensor(reshape.output)
        users = g.consumers(reshape.output)
        if out.rank != 1 or reshape.output in g.outputs or not users or not all(isinstance(u, Dense) for u in users):
            continue
        inv = np.argsort(reorder.source_index(g))
        for dense in users:
            dense.weight = dense.weight[inv]
            dense.refresh_sparsity()
        g.layers.remove(reorder)
        reshape.inputs = [reorder.inputs[0]]
        reshape.input_order_free = True
        g.tensors.pop(reorder.output, None)
        log.info("layout: %s reads %s in its physical order (weights of %s permuted)", reshape.name,
                 reorder.inputs[0], ", ".join(u.name for u in users))
    return g


def insert_stream_clones(g: Graph) -> Graph:
    """io_stream: give every stream exactly one reader (a graph output counts as a reader)."""
    from hwprune.ir.graph import IOType

    if g.io_type != IOType.STREAM:
        return g
    for name in list(g.tensors):
        readers = [(l, k) for l in g.layers for k, i in enumerate(l.inputs) if i == name]
        is_output = name in g.outputs
        if len(readers) + is_output < 2:
            continue
        src = name
        if is_output:
            # The output keeps its name for users; the producer's stream is renamed.
            src = g.unique_name(f"{name}_src")
            _rename_tensor(g, name, src)
            g.outputs = [name if o == src else o for o in g.outputs]
        anchor = g.producer(src)
        targets: list[tuple[object, int] | None] = list(readers) + ([None] if is_output else [])
        # A chain of two-way clones: each serves one reader and passes the stream on.
        for r, target in enumerate(targets[:-1]):
            t = g.tensor(src)
            a = Tensor(g.unique_name(f"{name}_cp{r}"), t.shape, t.perm, t.type, t.kind, t.index_range)
            last = r == len(targets) - 2
            final_target = targets[-1]
            b_name = name if (last and final_target is None) else g.unique_name(f"{name}_cp{r}b")
            b = Tensor(b_name, t.shape, t.perm, t.type, t.kind, t.index_range)
            g.tensors[a.name] = a
            g.tensors[b.name] = b
            clone = Clone(g.unique_name(f"{name}_clone{r}"), [src], [a.name, b.name])
            g.layers.insert(g.layers.index(anchor) + 1 if anchor is not None else 0, clone)
            layer, k = target  # type: ignore[misc]
            layer.inputs[k] = a.name
            src, anchor = b.name, clone
        if targets[-1] is not None:
            layer, k = targets[-1]  # type: ignore[misc]
            layer.inputs[k] = src
    g.toposort()
    return g


def _rename_tensor(g: Graph, old: str, new: str) -> None:
    t = g.tensors.pop(old)
    t.name = new
    g.tensors[new] = t
    for l in g.layers:
        l.inputs = [new if i == old else i for i in l.inputs]
        l.outputs = [new if o == old else o for o in l.outputs]
    g.outputs = [new if o == old else o for o in g.outputs]


def _same_data_order(a: Tensor, b: Tensor) -> bool:
    return a.data_order() == b.data_order()
