"""Rewrite a model whose activations carry the batch axis somewhere other than axis 0 into the
equivalent model where every activation is batch-first.

PyTorch's `nn.MultiheadAttention` (inside `nn.TransformerEncoderLayer`) works in (seq, batch,
embed) order: it transposes the batch to axis 1, folds it into the head axis (batch*heads) and
into the rows of the output projection (seq*batch), and transposes it back. hwprune's IR holds
per-sample tensors (no batch axis), so the importer needs the batch at axis 0.

Each activation `T` of the model is described by a `View`: its per-sample axis sizes, the axis
holding the batch and how much of that axis varies faster than the batch (`inner`: an axis of
seq*batch has inner 1, batch*heads has inner heads). The rewritten tensor `C` is `T` with the
batch pulled out to the front (a standalone batch axis disappears from the per-sample shape);
within a sample its elements keep `T`'s row-major order, so a reshape of `T` is a reshape of
`C`, a transpose of `T` a transpose of `C` (often the identity) and so on. Shapes come from
running the model once in onnxruntime at batch 1 and (when the batch is dynamic) batch 2, which
also evaluates every shape sub-graph (Shape/Gather/Concat/... feeding Reshape) for the fixed
per-sample shapes. Nodes whose batch placement cannot be expressed raise the clear error naming
the node and op.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from hwprune.errors import UnsupportedOpError

log = logging.getLogger(__name__)

_UNARY = {"Relu", "Gelu", "Erf", "Tanh", "Sigmoid", "Sqrt", "Neg", "Identity", "Dropout", "Cast", "Exp", "Abs",
          "LeakyRelu", "HardSigmoid", "HardSwish", "Softsign", "Softplus", "Elu", "Selu", "Clip", "Reciprocal",
          "Not", "CastLike", "Quant", "Floor", "Ceil", "Round", "Sign", "PRelu"}
_BROADCAST = {"Add", "Sub", "Mul", "Div", "Pow", "Where", "Sum", "Max", "Min", "Equal", "Less", "Greater", "And", "Or",
              "LessOrEqual", "GreaterOrEqual", "Mod"}
_REDUCE = {"ReduceMean", "ReduceMax", "ReduceSum", "ReduceMin"}


@dataclass(frozen=True)
class View:
    per: tuple[int, ...]  # per-sample size of every axis of T (the batch axis: its size / batch)
    b: int  # the axis of T holding the batch
    inner: int = 1  # the part of per[b] that varies faster than the batch

    @property
    def standalone(self) -> bool:
        return self.per[self.b] == 1

    @property
    def canonical(self) -> bool:
        return self.b == 0 and self.standalone

    def c_axes(self) -> list[int]:
        """T's axes that C keeps, in order (C's axis k+1 is T's axis c_axes()[k])."""
        return [a for a in range(len(self.per)) if not (a == self.b and self.standalone)]

    def c_shape(self) -> tuple[int, ...]:
        return tuple(self.per[a] for a in self.c_axes())

    def c_axis(self, a: int) -> int:
        """C's axis (batch = 0) of T's axis a (not the standalone batch axis)."""
        return 1 + self.c_axes().index(a)

    def c_axis_neg(self, a: int) -> int:
        """The same axis counted from the end (what axis attributes usually say: -1)."""
        return self.c_axis(a) - 1 - len(self.c_axes())

    def lifted(self, rank: int) -> "View":
        k = rank - len(self.per)
        return View((1,) * k + self.per, self.b + k, self.inner)


def needs_batch_rewrite(model: onnx.ModelProto) -> bool:
    """Cheap test: some activation transpose moves axis 0 (weight transposes read initializers)."""
    consts = {i.name for i in model.graph.initializer}
    consts.update(o for n in model.graph.node if n.op_type == "Constant" for o in n.output)
    for n in model.graph.node:
        if n.op_type == "Transpose" and n.input[0] not in consts:
            perm = [a.ints for a in n.attribute if a.name == "perm"]
            if perm and list(perm[0])[0] != 0:
                return True
    return False


def _run_all(model: onnx.ModelProto, batch: int) -> dict[str, np.ndarray] | None:
    """Every tensor's value at this batch size (onnxruntime, all intermediates exposed)."""
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    del m.graph.value_info[:]
    for n in m.graph.node:
        # A fused Gelu is opset 20; only shapes matter here, and it keeps its input's shape.
        # So is hwprune's fused masked softmax (scores, mask).
        if n.op_type in ("Gelu", "MaskedSoftmax") and n.domain in ("", "ai.onnx"):
            n.op_type = "Identity"
            del n.attribute[:]
            del n.input[1:]
    for n in m.graph.node:
        for o in n.output:
            if o and o not in have:
                m.graph.output.append(onnx.ValueInfoProto(name=o))
                have.add(o)
    inits = {i.name for i in m.graph.initializer}
    feeds = {}
    for vi in m.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tt.shape.dim]
        if any(d is None for d in dims[1:]):
            return None
        dims = [batch] + [int(d) for d in dims[1:]]
        dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type)
        feeds[vi.name] = np.zeros(dims, dtype=dtype) if np.issubdtype(dtype, np.integer) else np.full(dims, 0.5, dtype)
    so = ort.SessionOptions()
    so.log_severity_level = 4
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        vals = sess.run(None, feeds)
    except Exception as e:  # the importer's own checks report what is wrong with such a model
        log.info("batch-axis rewrite skipped: onnxruntime cannot run the model (%s)", str(e).splitlines()[0][:120])
        return None
    out = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    out.update(zip(names, (np.asarray(v) for v in vals)))
    out.update(feeds)
    return out


def _attr(node: Any, name: str, default: Any = None) -> Any:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


class _Rewriter:
    def __init__(self, model: onnx.ModelProto, v1: dict[str, np.ndarray], v2: dict[str, np.ndarray] | None) -> None:
        self.model, self.v1, self.v2 = model, v1, v2
        self.views: dict[str, View] = {}
        self.nodes: list[onnx.NodeProto] = []
        self.inits: dict[str, np.ndarray] = {}
        self.moved = False
        self.initializers = {i.name for i in model.graph.initializer}

    # -- helpers ------------------------------------------------------------------------------
    def error(self, node: Any, why: str) -> UnsupportedOpError:
        from hwprune.frontend.onnx_import import source_module

        mod = source_module(node)
        where = f", in module {mod}" if mod and not (node.name or "").startswith("/") else ""
        return UnsupportedOpError(f"node '{node.name or node.output[0]}' ({node.op_type}{where}): {why}")

    def const_name(self, base: str, value: np.ndarray) -> str:
        name = f"{base}__bf{len(self.inits)}"
        self.inits[name] = np.asarray(value)
        return name

    def static_input(self, name: str) -> str:
        """A static value used by an activation node: kept as a constant of its batch-1 value."""
        if name in self.views or name == "" or name in self.initializers:
            return name
        return self.const_name(name, self.v1[name])

    def emit(self, op: str, ins: list[str], outs: list[str], name: str, **at: Any) -> None:
        self.nodes.append(helper.make_node(op, ins, outs, name=name, **at))

    def reshape_c(self, src: str, dst: str, view: View, name: str) -> None:
        self.emit("Reshape", [src, self.const_name(name, np.asarray((-1, *view.c_shape()), np.int64))], [dst], name)

    def batch_axis(self, name: str) -> int | None:
        """The axis whose size differs between batch 1 and batch 2 (None for a static batch)."""
        if self.v2 is None:
            return None
        s1, s2 = np.shape(self.v1[name]), np.shape(self.v2[name])
        diff = [a for a in range(len(s1)) if s1[a] != s2[a]]
        return diff[0] if len(diff) == 1 else None

    def out_view(self, node: Any, out: str, old: View, new_per: tuple[int, ...], b: int | None = None) -> View:
        """The view of a reshaped output: where the batch lands so that every sample keeps its
        elements in row-major order."""
        stride = old.inner * math.prod(old.per[old.b + 1:])
        outer = math.prod(old.per) // stride
        cands = [b] if b is not None else range(len(new_per))
        best = None
        for j in cands:
            suffix = math.prod(new_per[j + 1:])
            if stride % suffix:
                continue
            c = stride // suffix
            if new_per[j] % c or math.prod(new_per[:j]) * (new_per[j] // c) != outer:
                continue
            v = View(tuple(new_per), j, c)
            # With a static batch of 1 several placements are right; prefer a batch of its own,
            # then not the feature (last) axis, then the outermost factor of its axis (what a
            # dynamic export shows: seq x batch*heads).
            rank = (not v.standalone, j == len(new_per) - 1, new_per[j] // c != 1)
            if best is None or rank < best[0]:
                best = (rank, v)
        if best is None:
            raise self.error(node, f"the reshape to {list(new_per)} (per sample) mixes samples of the batch; "
                                   "export the model with the batch kept apart from the other axes")
        return best[1]

    # -- the walk -----------------------------------------------------------------------------
    def run(self) -> onnx.ModelProto | None:
        g = self.model.graph
        inits = {i.name for i in g.initializer}
        static = set(inits)
        for vi in g.input:
            if vi.name not in inits:
                self.views[vi.name] = View((1, *np.shape(self.v1[vi.name])[1:]), 0)
        for node in g.node:
            ins = [i for i in node.input if i]
            if node.op_type in ("Constant", "Shape") or all(i in static for i in ins):
                static.update(node.output)
                continue
            self.rewrite(node)
        for vi in g.output:
            v = self.views.get(vi.name)
            if v is None or not v.canonical:
                return None
        if not self.moved:
            return None
        used = {i for n in self.nodes for i in n.input}
        out = onnx.ModelProto()
        out.CopyFrom(self.model)
        del out.graph.node[:]
        del out.graph.value_info[:]
        keep = [i for i in self.model.graph.initializer if i.name in used]
        del out.graph.initializer[:]
        out.graph.initializer.extend(keep)
        for k, v in self.inits.items():
            if k in used:
                out.graph.initializer.append(numpy_helper.from_array(np.asarray(v), k))
        out.graph.node.extend(self.nodes)
        return out

    def rewrite(self, node: Any) -> None:
        op = node.op_type
        acts = [i for i in node.input if i in self.views]
        if op in _UNARY and node.input[0] in self.views:
            v = self.views[node.input[0]]
            self.nodes.append(self._copy(node, [node.input[0]] + [self.static_input(i) for i in node.input[1:]]))
            self.views[node.output[0]] = v
            return
        if all(self.views[a].canonical for a in acts) and op not in ("Transpose", "Reshape", "Gemm") \
                and not (op in _BROADCAST | {"MatMul"} and self._mixed_rank(node)):
            # Batch-first already: unchanged (its output stays batch-first unless it moves axis 0).
            self.nodes.append(self._copy(node, [i if (i in self.views or i == "") else self.static_input(i) for i in node.input]))
            for o in node.output:
                if o in self.v1:
                    shape = np.shape(self.v1[o])
                    b = self.batch_axis(o)
                    if (b not in (None, 0)) or not shape:
                        raise self.error(node, "this op moves the batch axis; hwprune needs it at axis 0")
                    self.views[o] = View((1, *shape[1:]), 0)
            return
        handler = getattr(self, f"_{op}", None)
        if handler is None:
            raise self.error(node, "hwprune cannot follow the batch axis through this op (it is not at axis 0 here); "
                                   "keep the batch first around it")
        self.moved = True
        handler(node)

    def _mixed_rank(self, node: Any) -> bool:
        ranks = {len(self.views[i].per) for i in node.input if i in self.views}
        return len(ranks) > 1

    def _copy(self, node: Any, inputs: list[str]) -> onnx.NodeProto:
        n = onnx.NodeProto()
        n.CopyFrom(node)
        del n.input[:]
        n.input.extend(inputs)
        return n

    # -- handlers (T-space semantics, C-space nodes) ------------------------------------------
    def _Transpose(self, node: Any) -> None:
        v = self.views[node.input[0]]
        perm = [int(p) for p in _attr(node, "perm", list(range(len(v.per) - 1, -1, -1)))]
        nv = View(tuple(v.per[p] for p in perm), perm.index(v.b), v.inner)
        cperm = [0] + [v.c_axis(perm[a]) for a in nv.c_axes()]
        if cperm == list(range(len(cperm))):
            self.emit("Identity", [node.input[0]], [node.output[0]], node.name)
        else:
            self.emit("Transpose", [node.input[0]], [node.output[0]], node.name, perm=cperm)
        self.views[node.output[0]] = nv

    def _reshape_to(self, node: Any, new_full1: tuple[int, ...]) -> None:
        src, out = node.input[0], node.output[0]
        v = self.views[src]
        b = self.batch_axis(out)
        nv = self.out_view(node, out, v, tuple(int(d) for d in new_full1), b)
        self.reshape_c(src, out, nv, node.name)
        self.views[out] = nv

    def _Reshape(self, node: Any) -> None:
        self._reshape_to(node, np.shape(self.v1[node.output[0]]))

    _Squeeze = _Unsqueeze = _Flatten = _Reshape

    def _Gather(self, node: Any) -> None:
        v = self.views.get(node.input[0])
        if v is None or node.input[1] in self.views:
            raise self.error(node, "a lookup by dynamic indices needs batch-first indices")
        axis = int(_attr(node, "axis", 0)) % len(v.per)
        if axis == v.b:
            raise self.error(node, "gathering along the batch axis mixes samples")
        idx = np.asarray(self.v1[node.input[1]])
        per = list(v.per)
        if idx.ndim == 0:
            del per[axis]
            b = v.b - (1 if axis < v.b else 0)
        elif idx.ndim == 1:
            per[axis] = idx.size
            b = v.b
        else:
            raise self.error(node, "only scalar or 1-D constant indices select along an activation axis")
        self.emit("Gather", [node.input[0], self.const_name(node.name, idx)], [node.output[0]], node.name, axis=v.c_axis(axis))
        self.views[node.output[0]] = View(tuple(per), b, v.inner)

    def _Slice(self, node: Any) -> None:
        v = self.views[node.input[0]]
        rank = len(v.per)
        starts = np.asarray(self.v1[node.input[1]]).reshape(-1)
        axes = (np.asarray(self.v1[node.input[3]]).reshape(-1) if len(node.input) > 3 and node.input[3]
                else np.arange(len(starts)))
        axes = [int(a) % rank for a in axes]
        if v.b in axes:
            raise self.error(node, "slicing the batch axis mixes samples")
        ins = [node.input[0], self.static_input(node.input[1]), self.static_input(node.input[2]),
               self.const_name(node.name, np.asarray([v.c_axis(a) for a in axes], np.int64))]
        if len(node.input) > 4 and node.input[4]:
            ins.append(self.static_input(node.input[4]))
        self.emit("Slice", ins, [node.output[0]], node.name)
        self._follow_shape(node, v)

    def _Split(self, node: Any) -> None:
        v = self.views[node.input[0]]
        axis = int(_attr(node, "axis", 0)) % len(v.per)
        if axis == v.b:
            raise self.error(node, "splitting the batch axis mixes samples")
        ins = [node.input[0]] + [self.static_input(i) for i in node.input[1:]]
        n = self._copy(node, ins)
        for a in n.attribute:
            if a.name == "axis":
                a.i = v.c_axis(axis)
        if not any(a.name == "axis" for a in n.attribute):
            n.attribute.append(helper.make_attribute("axis", v.c_axis(axis)))
        self.nodes.append(n)
        self._follow_shape(node, v)

    def _follow_shape(self, node: Any, v: View) -> None:
        for o in node.output:
            per = list(np.shape(self.v1[o]))
            per[v.b] = v.per[v.b]
            self.views[o] = View(tuple(per), v.b, v.inner)

    def _axis_op(self, node: Any, axis_attr: str = "axis") -> None:
        v = self.views[node.input[0]]
        axis = int(_attr(node, axis_attr, -1)) % len(v.per)
        if node.op_type == "LayerNormalization" and v.b >= axis:
            raise self.error(node, "normalizing over the batch axis mixes samples")
        if axis == v.b:
            raise self.error(node, f"{node.op_type} over the batch axis mixes samples")
        n = self._copy(node, [node.input[0]] + [self.static_input(i) for i in node.input[1:]])
        for a in n.attribute:
            if a.name == axis_attr:
                a.i = v.c_axis_neg(axis)
        if not any(a.name == axis_attr for a in n.attribute):
            n.attribute.append(helper.make_attribute(axis_attr, v.c_axis_neg(axis)))
        self.nodes.append(n)
        self.views[node.output[0]] = v

    _Softmax = _LogSoftmax = _LayerNormalization = _axis_op

    def _reduce(self, node: Any) -> None:
        v = self.views[node.input[0]]
        rank = len(v.per)
        axes = _attr(node, "axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = np.asarray(self.v1[node.input[1]]).reshape(-1).tolist()
        if not axes:
            raise self.error(node, "reducing over every axis mixes samples")
        axes = [int(a) % rank for a in axes]
        if v.b in axes:
            raise self.error(node, "reducing over the batch axis mixes samples")
        keep = int(_attr(node, "keepdims", 1))
        caxes = np.asarray([v.c_axis_neg(a) for a in axes], np.int64)
        n = self._copy(node, [node.input[0]])
        if _attr(node, "axes") is not None:
            for a in n.attribute:
                if a.name == "axes":
                    del a.ints[:]
                    a.ints.extend(int(c) for c in caxes)
        else:
            n.input.append(self.const_name(node.name, caxes))
        self.nodes.append(n)
        per = [1 if a in axes else d for a, d in enumerate(v.per)]
        b = v.b
        if not keep:
            per = [d for a, d in enumerate(v.per) if a not in axes]
            b -= sum(a < v.b for a in axes)
        self.views[node.output[0]] = View(tuple(per), b, v.inner)

    _ReduceMean = _ReduceMax = _ReduceSum = _ReduceMin = _reduce

    def _broadcast(self, node: Any) -> None:
        out = node.output[0]
        rank = np.ndim(self.v1[out])
        acts = [self.views[i].lifted(rank) for i in node.input if i in self.views]
        first = acts[0]
        for w in acts[1:]:
            if (w.b, w.inner, w.standalone) != (first.b, first.inner, first.standalone):
                raise self.error(node, "its inputs hold the batch in different places")
        ins = []
        for i in node.input:
            if i in self.views:
                v = self.views[i]
                if len(v.per) < rank:
                    lifted = node.name + "_" + i + "_lift"
                    self.reshape_c(i, lifted, v.lifted(rank), node.name + "_lift")
                    i = lifted
                ins.append(i)
            elif i == "":
                ins.append(i)
            else:
                k = np.asarray(self.v1[i])
                if k.size == 1:
                    ins.append(self.static_input(i))
                    continue
                k = k.reshape((1,) * (rank - k.ndim) + k.shape)
                if first.standalone:
                    if k.shape[first.b] != 1:
                        raise self.error(node, f"constant '{i}' varies along the batch axis")
                    k = np.squeeze(k, axis=first.b)
                ins.append(self.const_name(i, k[None]))
        self.nodes.append(self._copy(node, ins))
        per = list(np.shape(self.v1[out]))
        per[first.b] = first.per[first.b]
        self.views[out] = View(tuple(per), first.b, first.inner)

    for _op in _BROADCAST:
        locals()[f"_{_op}"] = _broadcast
    del _op

    def _MatMul(self, node: Any) -> None:
        a, b = node.input[0], node.input[1]
        if a not in self.views:
            raise self.error(node, "a constant times an activation with the batch moved is not supported")
        va = self.views[a]
        out = node.output[0]
        if b not in self.views:
            w = np.asarray(self.v1[b])
            if w.ndim != 2 or va.b == len(va.per) - 1:
                raise self.error(node, "the batch axis must not be the contracted axis")
            self.emit("MatMul", [a, self.static_input(b)], [out], node.name)
            self.views[out] = View(va.per[:-1] + (w.shape[1],), va.b, va.inner)
            return
        rank = np.ndim(self.v1[out])
        la, lb = va.lifted(rank), self.views[b].lifted(rank)
        if la.b >= rank - 2 or (la.b, la.inner, la.standalone) != (lb.b, lb.inner, lb.standalone):
            raise self.error(node, "both operands must hold the batch in the same leading axis")
        ins = []
        for i in (a, b):
            v = self.views[i]
            if len(v.per) < rank:
                lifted = node.name + "_" + i + "_lift"
                self.reshape_c(i, lifted, v.lifted(rank), node.name + "_lift")
                i = lifted
            ins.append(i)
        self.emit("MatMul", ins, [out], node.name)
        per = list(np.shape(self.v1[out]))
        per[la.b] = la.per[la.b]
        self.views[out] = View(tuple(per), la.b, la.inner)

    def _Gemm(self, node: Any) -> None:
        a = node.input[0]
        v = self.views[a]
        if v.canonical:
            self.nodes.append(self._copy(node, [a] + [self.static_input(i) for i in node.input[1:]]))
            self.views[node.output[0]] = View((1, int(np.shape(self.v1[node.output[0]])[1])), 0)
            return
        if int(_attr(node, "transA", 0)) or v.b != 0 or node.input[1] in self.views:
            raise self.error(node, "only rows of the batch (transA=0, constant weights) are supported")
        w = np.asarray(self.v1[node.input[1]], dtype=np.float32)
        w = (w.T if int(_attr(node, "transB", 0)) else w) * np.float32(_attr(node, "alpha", 1.0))
        out = node.output[0]
        mm = out + "__mm" if len(node.input) > 2 and node.input[2] else out
        self.emit("MatMul", [a, self.const_name(node.name + "_w", w)], [mm], node.name)
        if mm != out:
            bias = np.asarray(self.v1[node.input[2]], dtype=np.float32) * np.float32(_attr(node, "beta", 1.0))
            if bias.ndim == 2:
                if bias.shape[0] != 1:
                    raise self.error(node, "a bias per row of the batch is not supported")
                bias = bias[0]
            self.emit("Add", [mm, self.const_name(node.name + "_b", bias)], [out], node.name + "_bias")
        self.views[out] = View((v.per[0], w.shape[1]), 0, v.inner)

    def _Concat(self, node: Any) -> None:
        vs = [self.views.get(i) for i in node.input]
        if any(v is None for v in vs):
            raise self.error(node, "concatenating constants to activations with the batch moved is not supported")
        v = vs[0]
        axis = int(_attr(node, "axis")) % len(v.per)
        if axis == v.b or any((w.b, w.inner, w.standalone) != (v.b, v.inner, v.standalone) for w in vs):
            raise self.error(node, "its inputs hold the batch in different places, or it concatenates along it")
        n = self._copy(node, list(node.input))
        for at in n.attribute:
            if at.name == "axis":
                at.i = v.c_axis(axis)
        self.nodes.append(n)
        self._follow_shape(node, v)


def move_batch_first(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` itself when its activations keep the batch first (or it cannot be run), else the
    rewritten equivalent model."""
    if not needs_batch_rewrite(model):
        return model
    v1 = _run_all(model, 1)
    if v1 is None:
        return model
    inputs = [vi for vi in model.graph.input if vi.name not in {i.name for i in model.graph.initializer}]
    dynamic = any(not (d.HasField("dim_value") and d.dim_value > 0) for vi in inputs for d in vi.type.tensor_type.shape.dim[:1])
    v2 = _run_all(model, 2) if dynamic else None
    out = _Rewriter(model, v1, v2).run()
    if out is None:
        return model
    log.info("moved the batch axis first through %d nodes", len(out.graph.node))
    return out
