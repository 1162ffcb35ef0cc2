"""Give every tensor and layer its fixed-point types from the precision configuration.

Widths: tensors and the constants stored in ROMs (weights, biases, slopes, scales, tables)
hold at most 64 bits, signed (63 unsigned) — the host, the testbench and the ROM words carry
them as 64-bit raw integers. Accumulators may be as wide as ap_fixed goes (MAX_WIDTH; so may
the exact tensors `keep_exact_before_quantize` gives a QONNX chain later). Anything else is a
clear ConfigError naming the layer, never an internal error.
"""

from __future__ import annotations

from hwprune.errors import ConfigError
from hwprune.fixed import MAX_WIDTH, FixedType, FixedTypeError
from hwprune.ir.graph import Graph, TensorKind
from hwprune.precision import PrecisionConfig, check_width

# Layer attributes holding the type of a constant stored in a ROM.
_ROM_TYPES = ("weight_t", "bias_t", "scale_t", "shift_t", "coef_t")


def assign_types(g: Graph, prec: PrecisionConfig) -> Graph:
    for name in g.inputs:
        t = g.tensor(name)
        if t.kind == TensorKind.FIXED:
            t.type = prec.resolve(name, "Input").result
            check_width(t.type, f"input '{name}'")
    for layer in g.layers:
        try:
            layer.infer_types(g, prec)
        except FixedTypeError as e:
            raise ConfigError(f"layer '{layer.name}' ({layer.op_type}): {e}") from None
        where = f"layer '{layer.name}' ({layer.op_type})"
        for attr in _ROM_TYPES:
            t = getattr(layer, attr, None)
            if isinstance(t, FixedType):
                check_width(t, f"{where} {attr.removesuffix('_t')} type")
        for out in layer.outputs:
            t = g.tensor(out).type
            if t is not None:
                check_width(t, f"{where} output '{out}'")
        acc = getattr(layer, "accum_t", None)
        if isinstance(acc, FixedType) and acc.width > MAX_WIDTH:  # pragma: no cover - FixedType refuses these
            raise ConfigError(f"{where}: accumulator {acc} is wider than {MAX_WIDTH} bits")
    return g
