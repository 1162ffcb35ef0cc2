"""Attention-head pruning that physically removes heads, found structurally with torch.fx.

The tracker looks for the pattern every multi-head attention shares, whatever the module
class: three Linear outputs split into heads (`view`/`reshape` of the last axis into (H, d),
then `transpose`/`permute` of the head axis forward), scores = Q·Kᵀ (through scalings), a
softmax over the keys (through scalings, additive masks, dropout), context = P·V, the heads
merged back (`transpose`/`permute`, `reshape`/`view` of (H, d) into H·d) and read by one
Linear (the output projection). Removing head j then removes rows j·d..(j+1)·d of the
query/key/value weights and biases and the same columns of the output projection, and the
split/merge shapes in the graph are rewritten with the new head count: the result is a
`torch.fx.GraphModule` whose exported ONNX (and hardware) is smaller.

Anything the tracker does not recognise is left alone: `attention_sites` lists what it found,
`prune_heads` refuses heads of an attention it did not find with a clear error.
"""

from __future__ import annotations

import copy
import logging
import operator
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.fx

from hwprune.errors import ConfigError

log = logging.getLogger(__name__)

_PASS = {"contiguous", "float", "to", "type_as", "clone"}
_SCALE_FUNCS = {operator.mul, operator.truediv, torch.mul, torch.div, "mul", "div", "__mul__", "__truediv__"}
_ADD_FUNCS = {operator.add, torch.add, "add", "__add__"}
_MATMUL = {torch.matmul, operator.matmul, torch.bmm, "matmul", "bmm"}
_SOFTMAX = {torch.softmax, torch.nn.functional.softmax, "softmax"}
_DROPOUT = {torch.nn.functional.dropout, "dropout"}
_TRANSPOSE = {torch.transpose, "transpose", "permute", torch.permute, "mT"}
_RESHAPE = {"view", "reshape", torch.reshape}


@dataclass
class AttentionSite:
    """One multi-head attention found in the traced graph."""

    query: str
    key: str
    value: str
    output: str
    heads: int
    head_dim: int
    # graph nodes whose shape arguments carry the head count (split of Q, K, V; merge)
    split_nodes: tuple[str, ...]
    merge_node: str

    @property
    def name(self) -> str:
        return self.query.rsplit(".", 1)[0] if "." in self.query else self.query


def _shape(node: torch.fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _kind(node: torch.fx.Node, modules: Mapping[str, torch.nn.Module]) -> object:
    if node.op == "call_module":
        return type(modules[node.target])
    return node.target if node.op in ("call_function", "call_method") else node.op


def _tensor_arg(node: torch.fx.Node) -> torch.fx.Node | None:
    """The one tensor input of a unary-ish op (a scaling's other operand must be a constant)."""
    tensors = [a for a in node.args if isinstance(a, torch.fx.Node) and _shape(a) is not None and len(_shape(a)) > 0]
    return tensors[0] if len(tensors) == 1 else None


def _through(node: torch.fx.Node, modules: Mapping[str, torch.nn.Module], allow: set) -> torch.fx.Node:
    """Walk back from `node` over ops in `allow` (and scalar scalings) to the first other node."""
    while True:
        k = _kind(node, modules)
        if k in allow or k in _PASS or k in (torch.nn.Dropout, torch.nn.Identity) or \
                (k in _SCALE_FUNCS and _tensor_arg(node) is not None and
                 all(not isinstance(a, torch.fx.Node) or _shape(a) in ((), None) for a in node.args if a is not _tensor_arg(node))):
            nxt = _tensor_arg(node) if k in _SCALE_FUNCS else node.args[0]
            if not isinstance(nxt, torch.fx.Node):
                return node
            node = nxt
            continue
        return node


def _head_split(node: torch.fx.Node, modules: Mapping[str, torch.nn.Module]) -> tuple[str, torch.fx.Node, int, int] | None:
    """(Linear module, split node, H, d) when `node` is a Linear's output split into heads and
    moved to (B, H, L, d) (or (B, H, d, L) for a transposed key)."""
    n = _through(node, modules, _TRANSPOSE)
    if _kind(n, modules) not in _RESHAPE:
        return None
    src, out = n.args[0], _shape(n)
    if not isinstance(src, torch.fx.Node) or out is None or len(out) < 3:
        return None
    src_shape = _shape(src)
    if src_shape is None or src_shape[:-1] != out[:-2] or out[-2] * out[-1] != src_shape[-1]:
        return None
    lin = _through(src, modules, set())
    if lin.op != "call_module" or not isinstance(modules[lin.target], torch.nn.Linear) or lin is not src:
        return None
    return lin.target, n, out[-2], out[-1]


def _find(gm: torch.fx.GraphModule) -> list[tuple[AttentionSite, dict]]:
    modules = dict(gm.named_modules())
    found = []
    # tensor readers only: x.size() / x.shape feed shape arithmetic, not data
    users = {n: [u for u in n.users if _shape(u) is not None] for n in gm.graph.nodes}
    for ctx in gm.graph.nodes:
        if _kind(ctx, modules) not in _MATMUL or len(ctx.args) < 2:
            continue
        probs, v = ctx.args[0], ctx.args[1]
        if not isinstance(probs, torch.fx.Node) or not isinstance(v, torch.fx.Node):
            continue
        vs = _head_split(v, modules)
        sm = _through(probs, modules, _DROPOUT | {torch.nn.Dropout})
        if vs is None or not (_kind(sm, modules) in _SOFTMAX or _kind(sm, modules) is torch.nn.Softmax):
            continue
        scores = _through(sm.args[0], modules, set())
        # an additive mask: follow the side that leads to the scores' matmul
        if _kind(scores, modules) in _ADD_FUNCS:
            sides = [_through(a, modules, set()) for a in scores.args if isinstance(a, torch.fx.Node)]
            sides = [s for s in sides if _kind(s, modules) in _MATMUL]
            if len(sides) != 1:
                continue
            scores = sides[0]
        if _kind(scores, modules) not in _MATMUL:
            continue
        qs, ks = _head_split(scores.args[0], modules), _head_split(scores.args[1], modules)
        if qs is None or ks is None or not (qs[2] == ks[2] == vs[2] and qs[3] == ks[3]):
            continue
        # forward from the context: transposes / contiguous to the merge reshape, then one Linear
        n = ctx
        while len(users[n]) == 1 and _kind(users[n][0], modules) in (_TRANSPOSE | _PASS):
            n = users[n][0]
        merge = users[n][0] if len(users[n]) == 1 else None
        if merge is None or _kind(merge, modules) not in _RESHAPE:
            continue
        out_shape, in_shape = _shape(merge), _shape(n)
        h, d = vs[2], vs[3]
        if out_shape is None or in_shape is None or out_shape[-1] != h * d or in_shape[-2:] != (h, d):
            continue
        readers = users[merge]
        if len(readers) != 1 or readers[0].op != "call_module" or not isinstance(modules[readers[0].target], torch.nn.Linear):
            continue
        site = AttentionSite(qs[0], ks[0], vs[0], readers[0].target, h, d, (qs[1].name, ks[1].name, vs[1].name), merge.name)
        if modules[site.output].in_features != h * d or any(modules[m].out_features != h * (d if m != site.value else d)
                                                            for m in (site.query, site.key, site.value)):
            continue
        found.append((site, dict(split=(qs[1], ks[1], vs[1]), merge=merge)))
    return found


def _trace(model: torch.nn.Module, example_input: torch.Tensor) -> torch.fx.GraphModule:
    from torch.fx.passes.shape_prop import ShapeProp

    gm = model if isinstance(model, torch.fx.GraphModule) else None
    try:
        if gm is None:
            gm = torch.fx.symbolic_trace(model)
        was = gm.training
        gm.eval()
        ShapeProp(gm).propagate(example_input)
        gm.train(was)
    except Exception as e:
        raise ConfigError(f"the model cannot be traced with torch.fx ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
                          "head pruning needs a traceable forward") from None
    return gm


def attention_sites(model: torch.nn.Module, example_input: torch.Tensor) -> list[AttentionSite]:
    """The multi-head attentions the tracker recognises (module doc), in graph order."""
    return [s for s, _ in _find(_trace(model, example_input))]


def head_importance(model: torch.nn.Module, site: AttentionSite) -> np.ndarray:
    """Magnitude importance per head: |W_v(head)| * |W_o(:, head)| (what the head can write)."""
    m = dict(model.named_modules())
    v, o, d = m[site.value].weight.detach(), m[site.output].weight.detach(), site.head_dim
    return np.array([float(v[h * d:(h + 1) * d].norm() * o[:, h * d:(h + 1) * d].norm()) for h in range(site.heads)])


def _rewrite_heads(node: torch.fx.Node, old: int, new: int, position: int) -> None:
    """Replace the head count (or H·d) at `position` from the end of a view/reshape's shape."""
    args = list(node.args)
    shape_args = args[1:]
    if len(shape_args) == 1 and isinstance(shape_args[0], (tuple, list)):
        shape = list(shape_args[0])
        wrap = True
    else:
        shape, wrap = list(shape_args), False
    if shape and isinstance(shape[-1], torch.fx.Node) and not wrap and len(shape) == 1:
        shape = [shape[0]]
    i = len(shape) - position
    if 0 <= i < len(shape) and shape[i] == old:
        shape[i] = new
    elif 0 <= i < len(shape) and shape[i] == -1:
        pass
    elif len(shape) == 1 and isinstance(shape[0], torch.fx.Node) and shape[0].target in _ADD_FUNCS:
        # HuggingFace: x.size()[:-1] + (num_heads, head_dim); the constant tuple is the second operand
        add = shape[0]
        tail = list(add.args[1]) if isinstance(add.args[1], (tuple, list)) else None
        j = len(tail) - position if tail is not None else -1
        if tail is None or not 0 <= j < len(tail) or tail[j] != old:
            raise ConfigError(f"cannot rewrite the head count in {node.name}: its shape is computed")
        tail[j] = new
        add.args = (add.args[0], tuple(tail))
        return
    else:
        raise ConfigError(f"cannot rewrite the head count in {node.name}: shape {shape}")
    node.args = (args[0], tuple(shape)) if wrap else (args[0], *shape)


@torch.no_grad()
def prune_heads(model: torch.nn.Module, example_input: torch.Tensor,
                heads: Mapping[str, Sequence[int]]) -> torch.fx.GraphModule:
    """Remove heads: {attention site name (or its query Linear): [head indices]}. Returns a new
    GraphModule (the model's modules are copied, the original is untouched)."""
    gm = _trace(copy.deepcopy(model), example_input)
    modules = dict(gm.named_modules())
    sites = _find(gm)
    by_name = {}
    for site, nodes in sites:
        by_name[site.name] = (site, nodes)
        by_name[site.query] = (site, nodes)
    for name, drop in heads.items():
        if name not in by_name:
            known = ", ".join(s.name for s, _ in sites) or "none"
            raise ConfigError(f"no multi-head attention {name!r} in the model (found: {known})")
        site, nodes = by_name[name]
        drop = sorted(set(int(h) for h in drop))
        if not drop:
            continue
        if any(not 0 <= h < site.heads for h in drop):
            raise ConfigError(f"{site.name} has heads 0..{site.heads - 1}; cannot remove {drop}")
        if len(drop) >= site.heads:
            raise ConfigError(f"{site.name}: removing all {site.heads} heads would cut the attention; keep at least one")
        keep = [h for h in range(site.heads) if h not in drop]
        d = site.head_dim
        rows = torch.cat([torch.arange(h * d, (h + 1) * d) for h in keep])
        for lin_name in (site.query, site.key, site.value):
            lin = modules[lin_name]
            lin.weight = torch.nn.Parameter(lin.weight[rows].clone())
            if lin.bias is not None:
                lin.bias = torch.nn.Parameter(lin.bias[rows].clone())
            lin.out_features = len(rows)
        out = modules[site.output]
        out.weight = torch.nn.Parameter(out.weight[:, rows].clone())
        out.in_features = len(rows)
        for n in nodes["split"]:
            _rewrite_heads(n, site.heads, len(keep), 2)
        _rewrite_heads(nodes["merge"], site.heads * d, len(keep) * d, 1)
        log.info("%s: %d of %d heads removed", site.name, len(drop), site.heads)
    gm.graph.lint()
    gm.recompile()
    return gm
