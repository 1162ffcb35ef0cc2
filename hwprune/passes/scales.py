"""Move the real multipliers of scaled-integer graphs (QONNX with non-power-of-two or
per-channel scales, FINN's Mul/MultiThreshold graphs) to where they are exact or cheapest.

The import writes every scale as an explicit `Rescale` (hwprune/ops/rescale.py) with exact
rational parameters: a quantizer with scale s is Rescale(1/s) -> Quantize(integer codes) ->
Rescale(s), a Dense/Conv with scaled weights keeps the integer codes and is followed by a
Rescale(s_w) holding its bias. Every rewrite below is an identity in real arithmetic, so the
IR's float semantics stays QONNX's exact semantics; the fixed-point words are chosen later
(Rescale.infer_types). Rewrites, repeated until none applies:

* compose: two adjacent affines (Rescale, ScaleShift) become one Rescale;
* down: a positive multiplier without offset passes ReLU, pooling and layout moves (they
  commute with it) to a consumer that absorbs it exactly: a Rescale/ScaleShift (compose), a
  Dense/Conv (the multiplier moves behind the accumulator: x*s @ W = s * (x @ W); an offset c
  becomes c @ W), a Threshold (thresholds t/s, t-c), or a graph output (the host multiplies:
  Tensor.scale);
* up: a positive multiplier without offset in front of a Quantize passes ReLU/pooling/layout
  moves up to a Rescale/ScaleShift (compose), to right behind a Dense/Conv (its
  requantization), or to a graph input read only by the Quantize (the host divides, exactly as
  QONNX does, and sends the integer codes);
* identity: a Rescale with multiplier 1 and offset 0 disappears.

Then a Rescale followed by a ReLU and/or a Quantize absorbs them (one rounding of the exact
x*m + b into the Quant's type, as in QONNX). What is left is a requantization that really
needs a multiplier; its cost is in the estimate.
"""

from __future__ import annotations

import logging
from fractions import Fraction

import numpy as np

from hwprune.ir.graph import Graph, Layer, Tensor
from hwprune.ops.rescale import Rescale, frac_array

log = logging.getLogger(__name__)


def lower_scales(g: Graph) -> Graph:
    """Only scaled-integer graphs (a Rescale or a Threshold from the import) change. In them a
    ScaleShift (Mul/Div/Sub/Add by a constant, a batch norm) becomes the equivalent Rescale
    first: folded into a Dense/Conv it would turn integer codes into fractions that the
    precision configuration then rounds, while as a Rescale it composes exactly."""
    from hwprune.ops.batchnorm import ScaleShift
    from hwprune.ops.threshold import Threshold

    if not any(isinstance(l, (Rescale, Threshold)) for l in g.layers):
        return g
    for layer in [l for l in g.layers if isinstance(l, ScaleShift)]:
        _as_rescale(g, layer)
    for _ in range(10 * len(g.layers) + 10):
        if not _step(g):
            break
    _fuse(g)
    return g


def _step(g: Graph) -> bool:
    for r in [l for l in g.layers if isinstance(l, Rescale)]:
        if r not in g.layers:
            continue
        if _drop_identity(g, r) or _compose(g, r) or _down(g, r) or _up(g, r) or _fan_out(g, r):
            return True
    return False


# ---------------------------------------------------------------- helpers

def _reader(g: Graph, t: str) -> Layer | None:
    """The only reader of t (None if several, none, or t is a graph output)."""
    rs = g.consumers(t)
    return rs[0] if len(rs) == 1 and t not in g.outputs else None


def _pure(r: Rescale) -> bool:
    """A positive multiplier, no offset, nothing fused: commutes with ReLU and pooling."""
    return not r.fused and all(v == 0 for v in r.shift) and all(v > 0 for v in r.scale)


def _commutes(layer: Layer, r: Rescale) -> bool:
    """layer(x * s + c) == layer(x) * s + c for the unfused rescale r with positive s: ReLUs
    only without an offset, max pooling with one (max(s*x + c) = s*max(x) + c), other pooling
    only without."""
    from hwprune.ops.activation import Activation
    from hwprune.ops.layout import Reshape
    from hwprune.ops.pool import GlobalPool, Pool

    offset = any(v != 0 for v in r.shift)
    if isinstance(layer, Activation):
        return not offset and layer.kind in ("relu", "leaky_relu", "prelu")
    if isinstance(layer, (Pool, GlobalPool)):
        if offset and layer.kind != "max":
            return False
        return not r.per_channel or r.axis == 0  # channels first: logical axis 0
    if isinstance(layer, Reshape):
        return not r.per_channel
    return False


def _unlink(g: Graph, r: Layer) -> bool:
    """Remove a one-input layer, its readers reading its input. A graph output keeps its name
    (the producer of the input writes it) when that is possible; False when it is not."""
    x, y = r.inputs[0], r.output
    if y in g.outputs:
        p = g.producer(x)
        if p is None or x in g.outputs or len(g.consumers(x)) != 1:
            return False
        g.layers.remove(r)
        p.outputs = [y if o == x else o for o in p.outputs]
        g.tensors[y] = Tensor(y, g.tensor(x).shape, g.tensor(x).perm, g.tensor(x).type, g.tensor(x).kind,
                              g.tensor(x).index_range, scale=g.tensor(y).scale)
        del g.tensors[x]
        return True
    g.remove_layer(r)
    return True


def _as_rescale(g: Graph, layer: Layer) -> Rescale | None:
    """A Rescale, or a ScaleShift turned into the equivalent Rescale in place; else None."""
    from hwprune.ops.batchnorm import ScaleShift

    if isinstance(layer, Rescale):
        return layer
    if isinstance(layer, ScaleShift):
        r = Rescale(layer.name, list(layer.inputs), list(layer.outputs), axis=layer.axis,
                    scale=frac_array(layer.scale), shift=frac_array(layer.shift))
        g.layers[g.layers.index(layer)] = r
        return r
    return None


def _axes_agree(a: Rescale, b: Rescale) -> bool:
    return not (a.per_channel and b.per_channel) or a.axis == b.axis


def _adopt_axis(dst: Rescale, src: Rescale) -> None:
    if src.per_channel and not dst.per_channel:
        dst.axis = src.axis


def _rescale_after(g: Graph, layer: Layer, scale: list[Fraction], shift: np.ndarray, axis: int) -> None:
    """The output of `layer` (a Dense/Conv) is multiplied by `scale` and offset by `shift`
    (per output channel): compose into the Rescale reading it, or insert one."""
    nxt = _reader(g, layer.output)
    r2 = _as_rescale(g, nxt) if nxt is not None else None
    if r2 is not None and (not r2.per_channel or r2.axis == axis or (len(scale) == 1 and np.all(shift == shift.flat[0]))):
        if len(shift) > 1 and not r2.per_channel:
            r2.axis = axis
        r2.compose_after(frac_array(scale), frac_array(shift))
        return
    out = layer.output
    acc = g.unique_name(f"{out}__acc")
    t = g.tensor(out)
    g.tensors[acc] = Tensor(acc, t.shape, t.perm, None, t.kind)
    layer.outputs = [acc if o == out else o for o in layer.outputs]
    r = Rescale(g.unique_name(f"{layer.name}_scale"), [acc], [out], axis=axis, scale=frac_array(scale),
                shift=frac_array(shift))
    r.set_params(r.scale, r.shift)
    g.layers.insert(g.layers.index(layer) + 1, r)


def _bias_fractions(layer: Layer) -> np.ndarray:
    return frac_array(np.asarray(layer.bias, dtype=np.float64).reshape(-1))


def _into_dense(g: Graph, r: Rescale, d: Layer) -> bool:
    """Dense(x*a + c) = (x @ W) * a + (c @ W + bias) for a scalar a; c scalar or per input
    feature (the Dense's contraction axis)."""
    if r.scale.size != 1 or (r.shift.size > 1 and r.axis != g.tensor(r.inputs[0]).rank - 1):
        return False
    w = d.weight
    shift = _bias_fractions(d)
    shift = np.broadcast_to(shift, (d.n_out,)) if shift.size == 1 else shift
    if any(v != 0 for v in r.shift):
        c = np.broadcast_to(r.shift, (d.n_in,)) if r.shift.size == 1 else r.shift
        wf = [[Fraction(float(v)) for v in row] for row in w]
        shift = frac_array([shift[n] + sum(c[k] * wf[k][n] for k in range(d.n_in)) for n in range(d.n_out)])
    d.inputs = [r.inputs[0] if i == r.output else i for i in d.inputs]
    g.layers.remove(r)
    g.tensors.pop(r.output, None)
    d.bias = np.zeros(d.n_out)
    d.bias_hint = None
    _rescale_after(g, d, [r.scale[0]], shift, g.tensor(d.output).rank - 1)
    return True


def _into_conv(g: Graph, r: Rescale, cv: Layer) -> bool:
    """Conv(x*a) = Conv(x) * a for a scalar a; an offset c only without padding (a padded
    border would see 0, not c): it adds c * sum of each output channel's weights."""
    if r.scale.size != 1:
        return False
    w = cv.win
    padded = any((w.pt, w.pl, w.pb, w.pr))
    has_shift = any(v != 0 for v in r.shift)
    if has_shift and (padded or r.shift.size > 1 and r.axis != 0):
        return False
    shift = _bias_fractions(cv)
    shift = np.broadcast_to(shift, (cv.c_out,)) if shift.size == 1 else shift
    if has_shift:
        c = np.broadcast_to(r.shift, (cv.c_in,)) if r.shift.size == 1 else r.shift
        cg = cv.c_in // cv.groups
        og = cv.c_out // cv.groups
        vals = []
        for oc in range(cv.c_out):
            grp = oc // og
            wsum = cv.weight[oc].reshape(cg, -1)
            vals.append(shift[oc] + sum(c[grp * cg + ic] * Fraction(float(v)) for ic in range(cg) for v in wsum[ic]))
        shift = frac_array(vals)
    cv.inputs = [r.inputs[0] if i == r.output else i for i in cv.inputs]
    g.layers.remove(r)
    g.tensors.pop(r.output, None)
    cv.bias = np.zeros(cv.c_out)
    cv.bias_hint = None
    _rescale_after(g, cv, [r.scale[0]], shift, 0)
    return True


# ---------------------------------------------------------------- rewrites

def _drop_identity(g: Graph, r: Rescale) -> bool:
    if r.fused or any(v != 1 for v in r.scale) or any(v != 0 for v in r.shift):
        return False
    return _unlink(g, r)


def _compose(g: Graph, r: Rescale) -> bool:
    """r followed by an affine, or an affine (ScaleShift/unfused Rescale) followed by r; or r
    straight into a Dense/Conv/Threshold that absorbs its offset too."""
    from hwprune.ops.conv import Conv
    from hwprune.ops.dense import Dense
    from hwprune.ops.threshold import Threshold

    nxt = _reader(g, r.output)
    if nxt is not None and not r.fused:
        if isinstance(nxt, Threshold):
            return nxt.absorb_input_affine(g, r)
        # A Dense/Conv's own requantization stays behind it: moving it on would feed the next
        # Dense/Conv a wide accumulator instead of a narrow tensor.
        behind_mac = isinstance(g.producer(r.inputs[0]), (Dense, Conv))
        if isinstance(nxt, Dense) and nxt.inputs[0] == r.output and not behind_mac:
            return _into_dense(g, r, nxt)
        if isinstance(nxt, Conv) and nxt.inputs[0] == r.output and not behind_mac:
            return _into_conv(g, r, nxt)
        r2 = _as_rescale(g, nxt)
        if r2 is not None and _axes_agree(r, r2):
            _adopt_axis(r2, r)
            r2.compose_after(r.scale, r.shift)
            r2.inputs = [r.inputs[0]]
            g.layers.remove(r)
            g.tensors.pop(r.output, None)
            return True
    prev = g.producer(r.inputs[0])
    if prev is not None and _reader(g, r.inputs[0]) is r:
        from hwprune.ops.batchnorm import ScaleShift

        if isinstance(prev, ScaleShift) or (isinstance(prev, Rescale) and not prev.out_quant and not prev.relu):
            p = _as_rescale(g, prev)
            assert p is not None
            if _axes_agree(p, r):
                _adopt_axis(r, p)
                r.compose_after(p.scale, p.shift)
                r.inputs = [p.inputs[0]]
                g.layers.remove(p)
                g.tensors.pop(p.output, None)
                return True
    return False


def _absorbs(g: Graph, layer: Layer, r: Rescale, t: str) -> bool:
    """Whether `layer`, reading tensor t, can take the unfused rescale r in front of it."""
    from hwprune.ops.batchnorm import ScaleShift
    from hwprune.ops.conv import Conv
    from hwprune.ops.dense import Dense
    from hwprune.ops.threshold import Threshold

    if isinstance(layer, (Rescale, ScaleShift)):
        return True
    if isinstance(layer, Threshold):
        return all(v > 0 for v in r.scale) and (not r.per_channel or r.axis == layer.axis)
    if isinstance(layer, (Dense, Conv)):
        return layer.inputs[0] == t and r.scale.size == 1 and (_pure(r) or isinstance(layer, Dense))
    return False


def _fan_out(g: Graph, r: Rescale) -> bool:
    """A rescale read by several layers that all absorb it (a dequantized code feeding two
    branches) becomes one copy per reader, each then absorbed exactly."""
    from hwprune.ops.conv import Conv
    from hwprune.ops.dense import Dense

    readers = g.consumers(r.output)
    if r.fused or len(readers) < 2 or r.output in g.outputs or isinstance(g.producer(r.inputs[0]), (Dense, Conv)):
        return False
    if not all(_absorbs(g, l, r, r.output) and l.inputs.count(r.output) == 1 for l in readers):
        return False
    src = g.tensor(r.output)
    at = g.layers.index(r)
    for k, layer in enumerate(readers):
        name = g.unique_name(f"{r.output}__b{k}")
        g.tensors[name] = Tensor(name, src.shape, src.perm, None, src.kind)
        layer.inputs = [name if i == r.output else i for i in layer.inputs]
        copy = Rescale(g.unique_name(f"{r.name}_b{k}"), [r.inputs[0]], [name], axis=r.axis, scale=r.scale, shift=r.shift)
        g.layers.insert(at + 1 + k, copy)
    g.layers.remove(r)
    g.tensors.pop(r.output, None)
    return True


def _down(g: Graph, r: Rescale) -> bool:
    """A rescale with positive multipliers (and an offset: a MultiThreshold's out_bias) not
    right behind a Dense/Conv (there it is that layer's requantization) passes commuting
    layers to an absorber; a pure one reaching a graph output goes to the host."""
    from hwprune.ops.conv import Conv
    from hwprune.ops.dense import Dense
    from hwprune.ops.threshold import Threshold

    if r.fused or not all(v > 0 for v in r.scale):
        return False
    offset = any(v != 0 for v in r.shift)
    p = g.producer(r.inputs[0])
    if isinstance(p, (Dense, Conv)) and _reader(g, r.inputs[0]) is r:
        return False
    t = r.output
    while True:
        if t in g.outputs and len(g.consumers(t)) == 0:
            # The host multiplies (one scalar per graph output).
            if r.per_channel or offset:
                return False
            if t == r.output:
                if not _unlink(g, r):
                    return False
            else:
                g.remove_layer(r)
            g.tensor(t).scale *= float(r.scale[0])
            return True
        nxt = _reader(g, t)
        if nxt is None:
            return False
        if _commutes(nxt, r) and len(nxt.inputs) == 1:
            t = nxt.output
            continue
        break
    if t == r.output:
        return False  # an adjacent absorber is _compose's business
    target = nxt
    padded = isinstance(target, Conv) and any((target.win.pt, target.win.pl, target.win.pb, target.win.pr))
    ok = isinstance(target, (Rescale, Threshold)) or type(target).__name__ == "ScaleShift" or (
        isinstance(target, (Dense, Conv)) and target.inputs[0] == t and not r.per_channel and not (offset and padded))
    if not ok:
        return False
    # Move r to just before the absorber (the layers in between commute with it).
    _relocate(g, r, t)
    return _compose(g, r)


def _up(g: Graph, r: Rescale) -> bool:
    """A pure rescale in front of a Quantize passes commuting layers up to an absorber."""
    from hwprune.ops.batchnorm import ScaleShift
    from hwprune.ops.conv import Conv
    from hwprune.ops.dense import Dense
    from hwprune.ops.quant import Quantize
    from hwprune.ir.graph import TensorKind

    if not _pure(r) or not isinstance(_reader(g, r.output), Quantize):
        return False
    t = r.inputs[0]
    moved = False
    while True:
        if t in g.outputs or len(g.consumers(t)) != 1:
            return False
        p = g.producer(t)
        if p is None:
            ti = g.tensor(t)
            if t in g.inputs and not moved and ti.kind == TensorKind.FIXED and not r.per_channel:
                g.remove_layer(r)
                ti.scale /= float(r.scale[0])
                return True
            return False
        if isinstance(p, ScaleShift) or (isinstance(p, Rescale) and not p.fused):
            if not moved:
                return False  # adjacent: _compose
            _relocate(g, r, t)
            return _compose(g, r)
        if isinstance(p, (Dense, Conv)):
            if not moved or (r.per_channel and r.axis != (0 if isinstance(p, Conv) else g.tensor(t).rank - 1)):
                return False
            _relocate(g, r, t)
            return True
        if _commutes(p, r) and len(p.inputs) == 1:
            t = p.inputs[0]
            moved = True
            continue
        return False


def _relocate(g: Graph, r: Rescale, t: str) -> None:
    """Move r (reading x, writing y) across commuting layers to read tensor t and write a fresh
    tensor that t's reader then reads; r's old readers read x."""
    x, y = r.inputs[0], r.output
    reader = _reader(g, t)
    assert reader is not None
    for layer in g.layers:
        layer.inputs = [x if i == y else i for i in layer.inputs]
    g.tensors.pop(y, None)
    new = g.unique_name(f"{t}__scaled")
    src = g.tensor(t)
    g.tensors[new] = Tensor(new, src.shape, src.perm, None, src.kind)
    reader.inputs = [new if i == t else i for i in reader.inputs]
    r.inputs, r.outputs = [t], [new]
    g.layers.remove(r)
    g.layers.insert(g.layers.index(reader), r)
    g.toposort()


def _fuse(g: Graph) -> None:
    """[ReLU ->] Rescale -> ReLU -> Quantize (each optional; a ReLU in front only of a
    positive multiplier without offset) becomes one Rescale."""
    from hwprune.ops.activation import Activation
    from hwprune.ops.quant import Quantize

    for r in [l for l in g.layers if isinstance(l, Rescale)]:
        prev = g.producer(r.inputs[0])
        if (isinstance(prev, Activation) and prev.kind == "relu" and _pure(r) and _reader(g, r.inputs[0]) is r):
            # relu(x) * s = relu(x * s) for s > 0: the ReLU moves into the Rescale.
            g.tensors.pop(r.inputs[0], None)
            r.inputs = [prev.inputs[0]]
            g.layers.remove(prev)
            r.relu = True
        nxt = _reader(g, r.output)
        if isinstance(nxt, Activation) and nxt.kind == "relu" and r.out_quant is None and not r.relu:
            r.relu = True
            g.tensors.pop(r.output, None)
            r.outputs = [nxt.output]
            g.layers.remove(nxt)
            nxt = _reader(g, r.output)
        if isinstance(nxt, Quantize) and r.out_quant is None:
            r.out_quant = nxt.type
            g.tensors.pop(r.output, None)
            r.outputs = [nxt.output]
            g.layers.remove(nxt)
