"""Fuse the chains exporters write for one function into that function's node: GELU (by value)
and LayerNorm (by structure).

PyTorch writes GELU as `x * 0.5 * (1 + erf(x / sqrt 2))` (or the tanh form with `x**3`), in an
order and with constants that differ between the classic and the dynamo exporter and between
releases. Instead of matching one node order, a candidate region — the elementwise nodes between
one tensor `x` and an output `y`, with scalar constants only — is *evaluated* on sample points
and compared with each known function; a match is replaced by that function's single node
(`Gelu`, opset-20 semantics), which an op room then imports. The hardware then spends one
table on it instead of a multiply of two activations.
"""

from __future__ import annotations

import logging
import math
from typing import Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

log = logging.getLogger(__name__)

_ELEMENTWISE = {"Add", "Sum", "Sub", "Mul", "Div", "Pow", "Erf", "Tanh", "Neg", "Sqrt"}
_SEEDS = {"Erf", "Tanh"}  # a chain worth fusing holds one of these
_SAMPLES = np.concatenate([np.linspace(-12.0, 12.0, 97), [-0.3, 0.01, 0.7, 2.5]])
_erf = np.vectorize(math.erf, otypes=[np.float64])


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


# (function, replacement op, its attributes)
_KNOWN: list[tuple[Callable[[np.ndarray], np.ndarray], str, dict[str, str]]] = [
    (_gelu, "Gelu", {"approximate": "none"}),
    (_gelu_tanh, "Gelu", {"approximate": "tanh"}),
]


def _scalar_consts(model: onnx.ModelProto) -> dict[str, float]:
    """Every scalar float constant: initializers, Constant nodes, and what casts, square roots
    and arithmetic make of them (the expanded function bodies ONNX writes)."""
    out: dict[str, float] = {}
    for init in model.graph.initializer:
        a = numpy_helper.to_array(init)
        if a.size == 1 and a.dtype.kind == "f":
            out[init.name] = float(a.reshape(-1)[0])
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute:
            a = _constant_value(node)
            if a is not None and a.size == 1 and a.dtype.kind == "f":
                out[node.output[0]] = float(a.reshape(-1)[0])
        elif node.op_type in ("CastLike", "Cast", "Identity") and node.input and node.input[0] in out:
            if node.op_type != "Cast" or any(a.name == "to" and a.i in _FLOAT_TYPES for a in node.attribute):
                out[node.output[0]] = out[node.input[0]]
        elif node.op_type in _ELEMENTWISE and node.input and all(i in out for i in node.input):
            out[node.output[0]] = float(_apply(node.op_type, [np.float64(out[i]) for i in node.input]))
    return out


_FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16)


def _constant_value(node: onnx.NodeProto) -> np.ndarray | None:
    for attr in node.attribute:
        if attr.name == "value":
            return numpy_helper.to_array(attr.t)
        if attr.name == "value_float":
            return np.array(attr.f, dtype=np.float32)
    return None


def _eval(nodes: list[onnx.NodeProto], x_name: str, consts: dict[str, float], x: np.ndarray) -> dict[str, np.ndarray]:
    vals: dict[str, np.ndarray] = {x_name: x}

    def get(name: str) -> np.ndarray:
        return vals[name] if name in vals else np.float64(consts[name])

    with np.errstate(all="ignore"):
        for n in nodes:
            vals[n.output[0]] = np.asarray(_apply(n.op_type, [get(i) for i in n.input]), dtype=np.float64)
    return vals


def _apply(op: str, a: list[np.ndarray]) -> np.ndarray:
    with np.errstate(all="ignore"):
        if op in ("Add", "Sum"):
            return np.sum(np.broadcast_arrays(*a), axis=0) if len(a) > 1 else a[0]
        if op == "Sub":
            return a[0] - a[1]
        if op == "Mul":
            return a[0] * a[1]
        if op == "Div":
            return a[0] / a[1]
        if op == "Pow":
            return np.power(a[0], a[1])
        if op == "Erf":
            return _erf(a[0])
        if op == "Tanh":
            return np.tanh(a[0])
        if op == "Neg":
            return -a[0]
        if op == "Sqrt":
            return np.sqrt(a[0])
    raise AssertionError(op)


def fuse_elementwise_functions(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` with every recognised chain replaced by one node (or `model` itself when
    there is none)."""
    nodes = list(model.graph.node)
    if not any(n.op_type in _SEEDS for n in nodes):
        return model
    consts = _scalar_consts(model)
    producer = {o: n for n in nodes for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    graph_outputs = {o.name for o in model.graph.output}
    removed: set[int] = set()
    replacements: dict[int, onnx.NodeProto] = {}  # id of the chain's last node -> fused node

    def elementwise(n: onnx.NodeProto) -> bool:
        return n.op_type in _ELEMENTWISE and id(n) not in removed

    for seed in nodes:
        if seed.op_type not in _SEEDS or id(seed) in removed:
            continue
        # Backward: every non-constant tensor the seed depends on through elementwise nodes is
        # a candidate x, nearest first (x itself may be the output of a scaling or an add).
        candidates: list[str] = []
        frontier = [seed.input[0]]
        while frontier:
            t = frontier.pop(0)
            if t in consts or t in candidates:
                continue
            candidates.append(t)
            p = producer.get(t)
            if p is not None and elementwise(p) and p.op_type not in _SEEDS:
                frontier.extend(p.input)
        for x in candidates:
            fused = _match_from(x, nodes, consts, consumers, graph_outputs, elementwise)
            if fused is None:
                continue
            last, chain, node = fused
            for n in chain:
                removed.add(id(n))
            replacements[id(last)] = node
            break
    if not replacements:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    for n in nodes:
        if id(n) in replacements:
            out.graph.node.append(replacements[id(n)])
        elif id(n) not in removed:
            out.graph.node.append(n)
    return out


def _match_from(x: str, nodes: list[onnx.NodeProto], consts: dict[str, float], consumers: dict[str, list[onnx.NodeProto]],
                graph_outputs: set[str], elementwise: Callable[[onnx.NodeProto], bool]
                ) -> tuple[onnx.NodeProto, list[onnx.NodeProto], onnx.NodeProto] | None:
    """(last node, chain, fused node) for the first output, in graph order, that computes a known
    function of `x` with every intermediate read only inside its own chain."""
    region: list[onnx.NodeProto] = []
    inside = {x}
    for n in nodes:  # graph order is topological
        if elementwise(n) and n.input and all(i in inside or i in consts for i in n.input) and any(i in inside for i in n.input):
            region.append(n)
            inside.update(n.output)
    for last_pos, last in enumerate(region):
        y = last.output[0]
        chain = _ancestors(region[: last_pos + 1], y, x)
        if not any(n.op_type in _SEEDS for n in chain):
            continue
        internal = {o for n in chain for o in n.output} - {y}
        chain_ids = {id(n) for n in chain}
        if any(t in graph_outputs or any(id(c) not in chain_ids for c in consumers.get(t, [])) for t in internal):
            continue
        got = _eval(chain, x, consts, _SAMPLES)[y]
        for f, op, at in _KNOWN:
            if np.allclose(got, f(_SAMPLES), rtol=1e-5, atol=1e-6):
                log.info("fused %d elementwise nodes into %s(%s) ending at %s", len(chain), op, at, y)
                return last, chain, helper.make_node(op, [x], [y], name=(last.name or y) + "_fused", **at)
    return None


def _ancestors(region: list[onnx.NodeProto], y: str, x: str) -> list[onnx.NodeProto]:
    """The nodes of `region` that `y` depends on, in graph order."""
    need, keep = {y}, []
    for n in reversed(region):
        if any(o in need for o in n.output):
            keep.append(n)
            need.update(i for i in n.input if i != x)
    return list(reversed(keep))


# ---------------------------------------------------------------------- LayerNorm

def _reduce_axes(node: onnx.NodeProto, arrays: dict[str, np.ndarray]) -> list[int] | None:
    for a in node.attribute:
        if a.name == "axes":
            return list(a.ints)
    if len(node.input) > 1 and node.input[1] in arrays:
        return [int(v) for v in np.asarray(arrays[node.input[1]]).reshape(-1)]
    return None


def _keepdims(node: onnx.NodeProto) -> bool:
    return all(a.i != 0 for a in node.attribute if a.name == "keepdims")


def _const_arrays(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    out = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant":
            v = _constant_value(n)
            if v is not None:
                out[n.output[0]] = v
    return out


def fuse_layernorm(model: onnx.ModelProto) -> onnx.ModelProto:
    """ReduceMean / Sub / Pow (or Mul) / ReduceMean / Add eps / Sqrt / Div [/ Mul gamma / Add beta]
    over the last axis -> LayerNormalization (what opsets below 17 and HuggingFace exports write)."""
    nodes = list(model.graph.node)
    if sum(n.op_type == "ReduceMean" for n in nodes) < 2:
        return model
    arrays = _const_arrays(model)
    scalars = _scalar_consts(model)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    graph_outputs = {o.name for o in model.graph.output}

    def only(t: str, op: str) -> onnx.NodeProto | None:
        c = consumers.get(t, [])
        return c[0] if len(c) == 1 and c[0].op_type == op and t not in graph_outputs else None

    def other(n: onnx.NodeProto, t: str) -> str:
        return n.input[1] if n.input[0] == t else n.input[0]

    removed: set[int] = set()
    replacements: dict[int, onnx.NodeProto] = {}
    for m1 in nodes:
        if m1.op_type != "ReduceMean" or _reduce_axes(m1, arrays) != [-1] or not _keepdims(m1) or id(m1) in removed:
            continue
        x = m1.input[0]
        subs = [c for c in consumers.get(m1.output[0], []) if c.op_type == "Sub" and list(c.input) == [x, m1.output[0]]]
        if len(consumers.get(m1.output[0], [])) != 1 or len(subs) != 1:
            continue
        sub = subs[0]
        d = sub.output[0]
        d_users = consumers.get(d, [])
        sq = next((c for c in d_users if (c.op_type == "Pow" and c.input[0] == d and scalars.get(c.input[1]) == 2.0)
                   or (c.op_type == "Mul" and list(c.input) == [d, d])), None)
        div = next((c for c in d_users if c.op_type == "Div" and c.input[0] == d), None)
        if sq is None or div is None or len(d_users) != 2 or d in graph_outputs:
            continue
        m2 = only(sq.output[0], "ReduceMean")
        if m2 is None or _reduce_axes(m2, arrays) != [-1] or not _keepdims(m2):
            continue
        add = only(m2.output[0], "Add")
        if add is None or other(add, m2.output[0]) not in scalars:
            continue
        eps = scalars[other(add, m2.output[0])]
        sqrt = only(add.output[0], "Sqrt")
        if sqrt is None or div.input[1] != sqrt.output[0] or len(consumers.get(sqrt.output[0], [])) != 1:
            continue
        chain = [m1, sub, sq, m2, add, sqrt, div]
        out, gamma, beta = div.output[0], None, None
        mul = only(out, "Mul")
        if mul is not None and other(mul, out) in arrays:
            gamma, out = other(mul, out), mul.output[0]
            chain.append(mul)
            badd = only(out, "Add")
            if badd is not None and other(badd, out) in arrays:
                beta, out = other(badd, out), badd.output[0]
                chain.append(badd)
        # Without a gamma the scale input is empty: the importer takes ones.
        ins = [x, gamma or ""] + ([beta] if beta else [])
        fused = helper.make_node("LayerNormalization", ins, [out], name=(div.name or out) + "_fused", axis=-1,
                                 epsilon=float(eps))
        for n in chain:
            removed.add(id(n))
        replacements[id(chain[-1])] = fused
        log.info("fused %d nodes into LayerNormalization ending at %s", len(chain), out)
    if not replacements:
        return model
    result = onnx.ModelProto()
    result.CopyFrom(model)
    del result.graph.node[:]
    for n in nodes:
        if id(n) in replacements:
            result.graph.node.append(replacements[id(n)])
        elif id(n) not in removed:
            result.graph.node.append(n)
    return result


# ---------------------------------------------------------------------- padding mask

# What an exporter writes between an integer attention_mask input and the scores it masks.
_MASK_CHAIN = {"Cast", "Unsqueeze", "Reshape", "Sub", "Mul", "Add", "Div", "Neg", "Not", "Equal", "Where", "Identity",
               "Squeeze", "Expand", "CastLike", "Less", "Greater"}
# An additive mask at least this negative removes a key from the softmax (exp underflows to 0).
MASK_FILL = -1e4


def _mask_source(t: str, producer: dict[str, onnx.NodeProto], int_inputs: set[str], consts: set[str]
                 ) -> tuple[str, list[onnx.NodeProto]] | None:
    """(integer input, chain nodes) when `t` is computed from one integer model input and
    constants only, through the elementwise and unsqueeze nodes a padding mask goes through."""
    chain: list[onnx.NodeProto] = []
    sources: set[str] = set()
    stack, seen = [t], set()
    while stack:
        x = stack.pop()
        if x in seen or x in consts or x == "":
            continue
        seen.add(x)
        if x in int_inputs:
            sources.add(x)
            continue
        p = producer.get(x)
        if p is None or p.op_type not in _MASK_CHAIN:
            return None
        chain.append(p)
        stack.extend(p.input)
    if len(sources) != 1:
        return None
    return sources.pop(), chain


def _eval_chain(model: onnx.ModelProto, chain: list[onnx.NodeProto], src: onnx.ValueInfoProto, out: str,
                value: int, length: int) -> np.ndarray:
    from onnx.reference import ReferenceEvaluator

    needed = {i for n in chain for i in n.input}
    inits = [i for i in model.graph.initializer if i.name in needed]
    consts = [n for n in model.graph.node if n.op_type == "Constant" and n.output[0] in needed]
    dtype = helper.tensor_dtype_to_np_dtype(src.type.tensor_type.elem_type)
    g = helper.make_graph(consts + chain, "mask", [helper.make_tensor_value_info(src.name, src.type.tensor_type.elem_type, [1, length])],
                          [onnx.ValueInfoProto(name=out)], inits)
    m = helper.make_model(g, opset_imports=list(model.opset_import))
    return np.asarray(ReferenceEvaluator(m).run(None, {src.name: np.full((1, length), value, dtype)})[0])


def fuse_key_mask(model: onnx.ModelProto) -> onnx.ModelProto:
    """Add(scores, mask_bias) or Where(mask, scores, fill) feeding a Softmax over the keys, with
    the bias or condition computed from an integer attention_mask input (0 = padding), ->
    one `MaskedSoftmax(scores, attention_mask)` node: the padded keys drop out of the softmax
    exactly (probability 0), which is what the float model computes (exp(-1e4) is 0)."""
    nodes = list(model.graph.node)
    if not any(n.op_type == "Softmax" for n in nodes):
        return model
    inits = {i.name for i in model.graph.initializer}
    int_inputs = {vi.name: vi for vi in model.graph.input if vi.name not in inits
                  and helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type).kind in "iub"}
    if not int_inputs:
        return model
    consts = inits | {o for n in nodes if n.op_type == "Constant" for o in n.output}
    producer = {o: n for n in nodes for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    removed: set[int] = set()
    chain_ids: set[int] = set()
    replacements: dict[int, onnx.NodeProto] = {}
    for sm in nodes:
        if sm.op_type != "Softmax" or next((a.i for a in sm.attribute if a.name == "axis"), -1) != -1:
            continue
        merge = producer.get(sm.input[0])
        if merge is None or merge.op_type not in ("Add", "Where") or len(consumers.get(merge.output[0], [])) != 1:
            continue
        found = None
        for k, t in enumerate(merge.input):
            src = _mask_source(t, producer, set(int_inputs), consts)
            if src is None:
                continue
            vi = int_inputs[src[0]]
            length = vi.type.tensor_type.shape.dim[-1].dim_value
            if len(vi.type.tensor_type.shape.dim) != 2 or length <= 0:
                continue
            order = {id(n): j for j, n in enumerate(nodes)}
            try:
                ordered = sorted(src[1], key=lambda n: order[id(n)])
                on, off = (_eval_chain(model, ordered, vi, t, v, length) for v in (1, 0))
            except Exception:  # not evaluable on its own: not a padding mask we recognise
                continue
            if on.ndim == 0 or on.shape[-1] != length or any(d != 1 for d in on.shape[:-1]):
                continue
            if merge.op_type == "Add" and k in (0, 1):
                if np.all(on == 0) and np.all(off <= MASK_FILL):
                    found = (merge.input[1 - k], src)
            elif merge.op_type == "Where" and k == 0:
                fill = [i for i in merge.input[1:] if i in consts]
                scores = [i for i in merge.input[1:] if i not in consts]
                if len(fill) != 1 or len(scores) != 1:
                    continue
                keep_when_true = merge.input[1] == scores[0]
                if np.all(on.astype(bool) == keep_when_true) and np.all(off.astype(bool) != keep_when_true):
                    fv = _const_arrays(model).get(fill[0])
                    if fv is not None and np.size(fv) == 1 and float(np.reshape(fv, -1)[0]) <= MASK_FILL:
                        found = (scores[0], src)
            if found:
                break
        if not found:
            continue
        scores, (mask_in, chain) = found
        order = {id(n): k for k, n in enumerate(nodes)}
        chain = sorted(chain, key=lambda n: order[id(n)])
        fused = helper.make_node("MaskedSoftmax", [scores, mask_in], [sm.output[0]], name=sm.name or sm.output[0])
        removed.update({id(merge), id(sm)})
        replacements[id(sm)] = fused
        chain_ids.update(id(n) for n in chain)
        log.info("fused a padding mask from %s into the softmax %s", mask_in, sm.name)
    if not replacements:
        return model
    # A mask chain goes when nothing else reads it (several layers share one chain).
    changed = True
    while changed:
        changed = False
        for n in nodes:
            if id(n) in removed or id(n) not in chain_ids:
                continue
            readers = [c for o in n.output for c in consumers.get(o, [])]
            if readers and all(id(c) in removed for c in readers) and not any(o in {x.name for x in model.graph.output} for o in n.output):
                removed.add(id(n))
                changed = True
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    for n in nodes:
        if id(n) in replacements:
            out.graph.node.append(replacements[id(n)])
        elif id(n) not in removed:
            out.graph.node.append(n)
    return out
