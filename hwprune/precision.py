"""Fixed-point precision and parallelism configuration: per model, per layer type, per layer
name (most specific wins, field by field). Written in Python or YAML:

```yaml
model:
  result: ap_fixed<16,6,AP_RND_CONV,AP_SAT>   # activations
  weight_width: 16                            # weights: this width, integer bits from max |w|
  reuse_factor: 1
layer_type:
  Softmax: {result: "ap_ufixed<16,0,AP_RND_CONV,AP_SAT>"}
layer_name:
  fc1: {weight: "ap_fixed<8,2,AP_RND_CONV,AP_SAT>", reuse_factor: 4}
  fc2: {accum: "ap_fixed<24,10,AP_RND,AP_SAT>"}   # cap the accumulator (hls4ml's accum_t)
```

Accumulators are by default sized from the types and the actual weights so they cannot
overflow (see docs/fixed_point.md). `accum` caps them on the multiply-accumulate layers (Dense,
Conv): every product and the bias are then assigned to that type and every addition applies
its overflow mode, in the kernel's order — `fixed` computes the same, and the estimate costs
the narrower adders.

Widths: activation (`result`), weight and bias types hold at most 64 bits (tensors travel as
64-bit raw integers); accumulators, exact or capped, at most 1024 (ap_fixed's limit).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hwprune.errors import ConfigError
from hwprune.fixed import MAX_WIDTH, FixedType, FixedTypeError, Overflow, Rounding

DEFAULT_RESULT = FixedType(16, 6, True, Rounding.RND_CONV, Overflow.SAT)
# Tensor, weight and bias types: the host, the testbench and the weight ROMs hold raws as
# 64-bit integers. Accumulators (internal to a layer) may be as wide as ap_fixed goes.
MAX_VALUE_WIDTH = 64


@dataclass(frozen=True)
class LayerPrecision:
    """Settings for one layer; None means "inherit from the less specific level"."""

    result: FixedType | None = None
    weight: FixedType | None = None  # explicit weight type (else auto from weight_width)
    bias: FixedType | None = None
    accum: FixedType | None = None  # cap of the accumulator (Dense, Conv); None: exact, never overflows
    weight_width: int | None = None
    reuse_factor: int | None = None
    table_size: int | None = None  # entries of activation lookup tables (power of two)
    # Where products go: "auto" (DSP when an operand is wider than 9 bits, else LUTs, as Vitis
    # HLS and hls4ml decide), "dsp" or "fabric" (BIND_OP on the multiplications).
    mult_impl: str | None = None
    # Where a Dense layer's weight banks live when it reuses multipliers (RF > 1): "auto" (the
    # tool decides by size: banks of up to 8 kbit become logic, as yosys and Vitis do) or "bram"
    # (block RAM whatever the size: BIND_STORAGE impl=bram — LUTs traded for BRAM18).
    rom_impl: str | None = None
    # A Dense layer's output rounding and saturation in io_stream: "parallel" (every output of a
    # word at once: n_out requantizers) or "shared" (ceil(n_out / RF) requantizers over the next
    # word's RF cycles, plus a drain pass of RF cycles: fewer LUTs, a word later).
    output_stage: str | None = None

    def __post_init__(self) -> None:
        # From code as from a file: a count that is not a positive whole number is refused here,
        # not turned into the default where it is resolved.
        for name in ("weight_width", "reuse_factor", "table_size"):
            v = getattr(self, name)
            if v is not None:
                parse_reuse_factor(v, name)

    def merged_over(self, base: "LayerPrecision") -> "LayerPrecision":
        return LayerPrecision(
            **{f.name: (getattr(self, f.name) if getattr(self, f.name) is not None else getattr(base, f.name))
               for f in dataclasses.fields(self)}
        )


@dataclass(frozen=True)
class ResolvedPrecision:
    result: FixedType
    weight: FixedType | None
    bias: FixedType | None
    weight_width: int
    reuse_factor: int
    table_size: int
    mult_impl: str = "auto"
    accum: FixedType | None = None
    rom_impl: str = "auto"
    output_stage: str = "parallel"


@dataclass(frozen=True)
class PrecisionConfig:
    model: LayerPrecision = LayerPrecision()
    layer_type: dict[str, LayerPrecision] = field(default_factory=dict)
    layer_name: dict[str, LayerPrecision] = field(default_factory=dict)

    def resolve(self, layer_name: str, layer_type: str) -> ResolvedPrecision:
        p = LayerPrecision()
        for level in (self.layer_name.get(layer_name), self.layer_type.get(layer_type), self.model):
            if level is not None:
                p = p.merged_over(level)
        result = p.result or DEFAULT_RESULT
        return ResolvedPrecision(
            result=result,
            weight=p.weight,
            bias=p.bias,
            weight_width=p.weight_width or result.width,
            reuse_factor=p.reuse_factor or 1,
            table_size=p.table_size or 1024,
            mult_impl=p.mult_impl or "auto",
            accum=p.accum,
            rom_impl=p.rom_impl or "auto",
            output_stage=p.output_stage or "parallel",
        )

    def with_overrides(self, result: FixedType | None = None, reuse_factor: int | None = None,
                       mult_impl: str | None = None, rom_impl: str | None = None,
                       output_stage: str | None = None) -> "PrecisionConfig":
        """Command-line --precision/--reuse-factor/--mult-impl/--rom-impl/--output-stage: they set
        the model level."""
        model = dataclasses.replace(
            self.model,
            result=result or self.model.result,
            weight_width=(result.width if result is not None else self.model.weight_width),
            reuse_factor=reuse_factor or self.model.reuse_factor,
            mult_impl=mult_impl or self.model.mult_impl,
            rom_impl=rom_impl or self.model.rom_impl,
            output_stage=output_stage or self.model.output_stage,
        )
        return dataclasses.replace(self, model=model)

    # ------------------------------------------------------------------ parsing

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> "PrecisionConfig":
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping with keys model/layer_type/layer_name")
        unknown = set(data) - {"model", "layer_type", "layer_name"}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: model, layer_type, layer_name")
        model = _layer_from(data.get("model") or {}, f"{where}: model")
        by_type = {str(k): _layer_from(v, f"{where}: layer_type.{k}") for k, v in (data.get("layer_type") or {}).items()}
        by_name = {str(k): _layer_from(v, f"{where}: layer_name.{k}") for k, v in (data.get("layer_name") or {}).items()}
        return cls(model, by_type, by_name)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "PrecisionConfig":
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist; pass a YAML file (see docs/precision.md)")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            line = getattr(getattr(e, "problem_mark", None), "line", None)
            at = f" line {line + 1}" if line is not None else ""
            raise ConfigError(f"config file {p}{at}: not valid YAML ({getattr(e, 'problem', e)})") from None
        return cls.from_dict(data, where=str(p))

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": _layer_to(self.model),
            "layer_type": {k: _layer_to(v) for k, v in self.layer_type.items()},
            "layer_name": {k: _layer_to(v) for k, v in self.layer_name.items()},
        }


def parse_type(text: str, where: str = "precision", max_width: int = MAX_VALUE_WIDTH) -> FixedType:
    """A user's fixed-point type; at most `max_width` bits (64 for values, MAX_WIDTH for accumulators)."""
    try:
        t = FixedType.parse(str(text))
    except FixedTypeError as e:
        raise ConfigError(f"{where}: {e}") from None
    check_width(t, where, max_width)
    return t


def check_width(t: FixedType, where: str, max_width: int = MAX_VALUE_WIDTH) -> None:
    if max_width == MAX_VALUE_WIDTH and t.width == 64 and not t.signed:
        raise ConfigError(f"{where}: {t} is an unsigned 64-bit type; values travel as signed 64-bit raw integers, "
                          f"use ap_ufixed<63,...> or ap_fixed<64,...>")
    if t.width > max_width:
        what = ("activations, weights and biases travel as 64-bit raw integers; a wider accumulator is "
                "set with 'accum'") if max_width == MAX_VALUE_WIDTH else f"ap_fixed goes up to {MAX_WIDTH} bits"
        raise ConfigError(f"{where}: {t} is {t.width} bits wide, more than {max_width} ({what})")


def parse_reuse_factor(value: Any, where: str = "reuse factor") -> int:
    try:
        rf = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {value!r} is not an integer; use a positive whole number such as 1 or 4") from None
    if rf <= 0 or rf != float(value):
        raise ConfigError(f"{where}: {value!r} must be a positive whole number (1 = fully parallel)")
    return rf


def _layer_from(d: Any, where: str) -> LayerPrecision:
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(d).__name__}")
    allowed = {f.name for f in dataclasses.fields(LayerPrecision)}
    unknown = set(d) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    kw: dict[str, Any] = {}
    for k in ("result", "weight", "bias"):
        if d.get(k) is not None:
            kw[k] = parse_type(d[k], f"{where}.{k}")
    if d.get("accum") is not None:
        kw["accum"] = parse_type(d["accum"], f"{where}.accum", MAX_WIDTH)
    if d.get("weight_width") is not None:
        w = parse_reuse_factor(d["weight_width"], f"{where}.weight_width")
        if w > MAX_VALUE_WIDTH:
            raise ConfigError(f"{where}.weight_width: {w} is wider than {MAX_VALUE_WIDTH} bits")
        kw["weight_width"] = w
    if d.get("reuse_factor") is not None:
        kw["reuse_factor"] = parse_reuse_factor(d["reuse_factor"], f"{where}.reuse_factor")
    if d.get("table_size") is not None:
        ts = parse_reuse_factor(d["table_size"], f"{where}.table_size")
        if ts & (ts - 1) or not 16 <= ts <= 65536:
            raise ConfigError(f"{where}.table_size: {ts} must be a power of two between 16 and 65536")
        kw["table_size"] = ts
    if d.get("mult_impl") is not None:
        kw["mult_impl"] = parse_mult_impl(d["mult_impl"], f"{where}.mult_impl")
    if d.get("rom_impl") is not None:
        kw["rom_impl"] = parse_rom_impl(d["rom_impl"], f"{where}.rom_impl")
    if d.get("output_stage") is not None:
        kw["output_stage"] = parse_choice(d["output_stage"], OUTPUT_STAGES, f"{where}.output_stage")
    return LayerPrecision(**kw)


MULT_IMPLS = ("auto", "dsp", "fabric")


def parse_mult_impl(value: Any, where: str = "mult_impl") -> str:
    v = str(value).strip().lower()
    if v not in MULT_IMPLS:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(MULT_IMPLS)}")
    return v


ROM_IMPLS = ("auto", "bram")


OUTPUT_STAGES = ("parallel", "shared")


def parse_rom_impl(value: Any, where: str = "rom_impl") -> str:
    return parse_choice(value, ROM_IMPLS, where)


def parse_choice(value: Any, allowed: tuple[str, ...], where: str) -> str:
    v = str(value).strip().lower()
    if v not in allowed:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(allowed)}")
    return v


def _layer_to(p: LayerPrecision) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(p):
        v = getattr(p, f.name)
        if v is not None:
            out[f.name] = v.cpp() if isinstance(v, FixedType) else v
    return out
