"""Filter/channel pruning with dependency tracking: the model physically shrinks.

Removing output channel c of a Conv/Linear must remove entry c of the BatchNorm that follows,
input channel c of every consumer, the matching slice of a concatenation, and the same
channel of every layer tied to it through a residual add. The model is traced with torch.fx;
each Conv/Linear output starts a channel *group*, which flows along dim 1 through
element-wise ops (incl. GELU, so a transformer's FFN neurons can be cut), batch norms, pools
and reductions over other axes (a Linear on a sequence (B, L, C) carries its channels on the
last axis); `cat` on dim 1 joins
segments, `add` ties groups together (union). A group that reaches the model output (the
classes) or an op the tracker does not understand is left whole — never a silently wrong model.
"""

from __future__ import annotations

import logging
import operator
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import torch
import torch.fx

from hwprune.errors import ConfigError
from hwprune.prune.patterns import check_sparsity, kept_count

log = logging.getLogger(__name__)

_PRODUCERS = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear)
_NORMS = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)
_ELEMENTWISE_MODULES = (torch.nn.ReLU, torch.nn.ReLU6, torch.nn.GELU, torch.nn.LeakyReLU, torch.nn.ELU, torch.nn.Sigmoid, torch.nn.Tanh,
                        torch.nn.Dropout, torch.nn.Identity, torch.nn.MaxPool1d, torch.nn.MaxPool2d, torch.nn.AvgPool1d,
                        torch.nn.AvgPool2d, torch.nn.AdaptiveMaxPool1d, torch.nn.AdaptiveMaxPool2d,
                        torch.nn.AdaptiveAvgPool1d, torch.nn.AdaptiveAvgPool2d)
_ELEMENTWISE_FUNCS = {torch.relu, torch.sigmoid, torch.tanh, torch.nn.functional.relu, torch.nn.functional.dropout,
                      torch.nn.functional.leaky_relu, torch.nn.functional.elu, torch.nn.functional.gelu}
_REDUCTIONS = {torch.amax, torch.amin, torch.mean, torch.sum, torch.max}


@dataclass
class _Segment:
    group: int
    size: int


@dataclass
class _Group:
    channels: int
    producers: list[str] = field(default_factory=list)
    norms: list[str] = field(default_factory=list)
    blocked: str = ""  # why this group must stay whole
    axis: int = 1  # where the channels are: 1 (N, C, ...) for a conv or a 2-D Linear, the last axis for a Linear on (N, L, C)


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, a: int) -> int:
        self.parent.setdefault(a, a)
        while self.parent[a] != a:
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)


def _dims(node: torch.fx.Node) -> list[int] | None:
    d = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
    if d is None:
        return None
    return list(d) if isinstance(d, (list, tuple)) else [int(d)]


def _shape(node: torch.fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _trace(model: torch.nn.Module, example_input: torch.Tensor, ignore: tuple[str, ...] = ()) -> tuple:
    """Trace the model and build its channel groups: (modules, groups, union-find, consumers)."""
    from torch.fx.passes.shape_prop import ShapeProp

    model.eval()
    try:
        gm = torch.fx.symbolic_trace(model)
        ShapeProp(gm).propagate(example_input)
    except Exception as e:
        raise ConfigError(f"the model cannot be traced with torch.fx ({type(e).__name__}); use a pattern-based pruner") from None
    modules = dict(gm.named_modules())
    groups: dict[int, _Group] = {}
    seg: dict[torch.fx.Node, list[_Segment] | None] = {}
    consumers: list[tuple[str, list[_Segment]]] = []
    uf = _UnionFind()

    def block(segs: list[_Segment] | None, why: str) -> None:
        for sg in segs or []:
            groups[sg.group].blocked = groups[sg.group].blocked or why

    for node in gm.graph.nodes:
        ins = [seg.get(a) for a in node.all_input_nodes]
        first = ins[0] if ins else None
        out: list[_Segment] | None = None
        if node.op == "call_module":
            m = modules[node.target]
            if isinstance(m, _PRODUCERS):
                if first is not None:
                    consumers.append((node.target, first))
                gid = len(groups)
                groups[gid] = _Group(m.out_features if isinstance(m, torch.nn.Linear) else m.out_channels, [node.target])
                out_shape = _shape(node)
                if isinstance(m, torch.nn.Linear) and out_shape is not None:
                    groups[gid].axis = len(out_shape) - 1
                if getattr(m, "groups", 1) != 1:
                    groups[gid].blocked = f"{node.target} is a grouped convolution"
                    block(first, f"{node.target} is a grouped convolution")
                if node.target in ignore:
                    groups[gid].blocked = "ignored"
                out = [_Segment(gid, groups[gid].channels)]
            elif isinstance(m, _NORMS) and first is not None and len(first) == 1:
                groups[first[0].group].norms.append(node.target)
                out = first
            elif isinstance(m, _ELEMENTWISE_MODULES):
                out = first
            elif isinstance(m, torch.nn.Flatten) and first is not None:
                shape = _shape(node.all_input_nodes[0])
                if shape is not None and int(np.prod(shape[2:], dtype=np.int64)) == 1:
                    out = first  # flattening [C, 1, ...] keeps channel c at feature c
                else:
                    block(first, f"{node.target} flattens a spatial map")
            else:
                block(first, f"{node.target} ({type(m).__name__}) is not tracked")
        elif node.op == "call_function" or node.op == "call_method":
            fn = node.target
            if fn in _ELEMENTWISE_FUNCS or fn in ("relu", "sigmoid", "tanh", "contiguous", "gelu"):
                out = first
            elif fn in _REDUCTIONS or fn in ("amax", "max", "mean", "sum"):
                dims, shape = _dims(node), _shape(node.all_input_nodes[0])
                rank = len(shape) if shape is not None else 0
                dims = [d % rank for d in dims] if dims is not None and rank else None
                if dims is not None and 0 not in dims and not any(groups[sg.group].axis in dims for sg in first or []):
                    out = first
                else:
                    block(first, f"{node.name} reduces over the channel or batch axis")
            elif fn in ("flatten", torch.flatten):
                shape = _shape(node.all_input_nodes[0])
                if shape is not None and int(np.prod(shape[2:], dtype=np.int64)) == 1:
                    out = first
                else:
                    block(first, f"{node.name} flattens a spatial map")
            elif fn in (torch.cat, "cat"):
                dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
                parts = [seg.get(a) for a in node.args[0]]
                rank = len(_shape(node) or ()) or 2
                axes = {groups[sg.group].axis for p in parts if p is not None for sg in p}
                if all(p is not None for p in parts) and axes == {dim % rank}:
                    out = [sg for p in parts for sg in p]  # type: ignore[union-attr]
                else:
                    for p in parts:
                        block(p, f"{node.name} concatenates along dim {dim}")
            elif fn in (operator.add, torch.add, "add") and len(ins) == 2 and all(i is not None for i in ins):
                a, b = ins
                if [x.size for x in a] != [x.size for x in b]:  # type: ignore[union-attr]
                    block(a, "residual add of unequal segments")
                    block(b, "residual add of unequal segments")
                else:
                    for x, y in zip(a, b):  # type: ignore[arg-type]
                        uf.union(x.group, y.group)
                    out = a
            elif fn == getattr and node.args[1] == "values":
                out = first
            else:
                for i in ins:
                    block(i, f"{node.name} ({getattr(fn, '__name__', fn)}) is not tracked")
        elif node.op == "output":
            for i in ins:
                block(i, "reaches the model output")
        seg[node] = out

    # A consumer must read exactly the tracked channels (no hidden reshapes in between).
    for name, segs in consumers:
        m = modules[name]
        fan_in = m.in_features if isinstance(m, torch.nn.Linear) else m.in_channels
        if sum(sg.size for sg in segs) != fan_in:
            block(segs, f"{name} reads a flattened spatial map")

    return modules, groups, uf, consumers


def _tied(groups: dict[int, _Group], uf: _UnionFind) -> list[list[int]]:
    roots: dict[int, list[int]] = {}
    for gid in groups:
        roots.setdefault(uf.find(gid), []).append(gid)
    return list(roots.values())


def channel_groups(model: torch.nn.Module, example_input: torch.Tensor) -> dict[str, str]:
    """{Conv/Linear module: why its output channels cannot be cut, or "" when they can} — what
    `prune_channels` would do, without changing the model. Layers tied through a residual add
    share a verdict."""
    was = model.training
    try:
        _, groups, uf, _ = _trace(model, example_input)
    finally:
        model.train(was)
    out: dict[str, str] = {}
    for members in _tied(groups, uf):
        why = next((groups[g].blocked for g in members if groups[g].blocked), "")
        if not why and len({groups[g].channels for g in members}) > 1:
            why = "tied layers differ in width"
        for g in members:
            for p in groups[g].producers:
                out[p] = why
    return out


def prune_channels(model: torch.nn.Module, example_input: torch.Tensor, sparsity: float | Mapping[str, float],
                   ignore: tuple[str, ...] = ()) -> dict[str, tuple[int, int]]:
    """Remove the least important output channels (L2 norm of their weights, summed over tied
    layers) of every Conv/Linear in place, or, with a mapping {layer: sparsity}, of the named
    layers only (tied layers take the largest of their sparsities). Returns {layer: (channels
    before, after)}."""
    from torch.fx.passes.shape_prop import ShapeProp

    if isinstance(sparsity, Mapping):
        per_layer = {str(k): check_sparsity(v) for k, v in sparsity.items()}
        known = {n for n, m in model.named_modules() if isinstance(m, _PRODUCERS)}
        unknown = sorted(set(per_layer) - known)
        if unknown:
            raise ConfigError(f"no Conv/Linear module named {unknown[0]!r}; prunable: {', '.join(sorted(known))}")
        s = 0.0
    else:
        per_layer = None
        s = check_sparsity(sparsity)
    model.eval()
    modules, groups, uf, consumers = _trace(model, example_input, ignore)

    # Merge tied groups; a blocked member blocks the whole set.
    keep: dict[int, np.ndarray] = {}
    report: dict[str, tuple[int, int]] = {}
    for members in _tied(groups, uf):
        why = next((groups[g].blocked for g in members if groups[g].blocked), "")
        c = groups[members[0]].channels
        if why or any(groups[g].channels != c for g in members):
            for g in members:
                keep[g] = np.arange(groups[g].channels)
            continue
        share = s if per_layer is None else max(per_layer.get(p, 0.0) for g in members for p in groups[g].producers)
        if share == 0.0:
            for g in members:
                keep[g] = np.arange(c)
            continue
        score = np.zeros(c)
        for g in members:
            for p in groups[g].producers:
                w = modules[p].weight.detach().reshape(c, -1).numpy()
                score += (w**2).sum(axis=1)
        kept = np.sort(np.argsort(-score, kind="stable")[: kept_count(c, share)])
        for g in members:
            keep[g] = kept

    # Rewrite the modules: producers' outputs, norms, consumers' inputs.
    with torch.no_grad():
        for gid, g in groups.items():
            idx = torch.from_numpy(keep[gid])
            for p in g.producers:
                m = modules[p]
                before = m.weight.shape[0]
                m.weight = torch.nn.Parameter(m.weight[idx].clone())
                if m.bias is not None:
                    m.bias = torch.nn.Parameter(m.bias[idx].clone())
                if isinstance(m, torch.nn.Linear):
                    m.out_features = len(idx)
                else:
                    m.out_channels = len(idx)
                report[p] = (before, len(idx))
            for n in g.norms:
                bn = modules[n]
                for attr in ("weight", "bias"):
                    if getattr(bn, attr) is not None:
                        setattr(bn, attr, torch.nn.Parameter(getattr(bn, attr)[idx].clone()))
                bn.running_mean = bn.running_mean[idx].clone()
                bn.running_var = bn.running_var[idx].clone()
                bn.num_features = len(idx)
        for name, segs in consumers:
            m = modules[name]
            cols, offset = [], 0
            for sg in segs:
                cols.extend(offset + int(k) for k in keep.get(sg.group, np.arange(sg.size)))
                offset += sg.size
            if offset == (m.in_features if isinstance(m, torch.nn.Linear) else m.in_channels) and len(cols) < offset:
                idx = torch.tensor(cols, dtype=torch.long)
                m.weight = torch.nn.Parameter(m.weight[:, idx].clone())
                if isinstance(m, torch.nn.Linear):
                    m.in_features = len(cols)
                else:
                    m.in_channels = len(cols)
    # The traced copy shares the modules, so `model` itself is now the smaller network.
    return report
