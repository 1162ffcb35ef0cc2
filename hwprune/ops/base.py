"""The contract every op kind fulfils, and the small shared helpers they use.

Each op module in `hwprune.ops` keeps in one place: its ONNX import, its float semantics
(numpy), its bit-exact fixed-point semantics (integers), a bound on |fixed - float|, its
cycle/resource model and its HLS binding (a Jinja2 template beside its kernel header in
`hls/hwprune/`).

Arrays passed to `float_forward`/`fixed_forward` are batches in the *physical* layout of the
tensors: shape ``(batch, *tensor.physical_shape)``. Fixed-point arrays hold raw integers
(int64; an object array of Python ints for types wider than 64 bits, see hwprune.fixed):
value = raw * 2**-type.frac. Exact intermediate values that may need more than 62 bits (the
accumulators of layers with wide operands) take the exact path (`exact_ints`, `exact_matmul`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Callable, NamedTuple, Sequence

import jinja2
import numpy as np

from hwprune.fixed import FixedType, Overflow, Rounding, exact_ints, is_wide, quantize, requantize
from hwprune.ir.graph import Graph, IOType, Layer, Tensor
from hwprune.sim import resources as hw

if TYPE_CHECKING:
    from hwprune.ir.channels import ConstantChannels
    from hwprune.board import Board
    from hwprune.frontend.onnx_import import ImportContext
    from hwprune.precision import PrecisionConfig


@dataclass(frozen=True)
class Memory:
    """One array a kernel keeps on chip, as the layer's cost model charges it and as its HLS
    binding declares it: `words` words of `width` bits (what the project writes, padding
    included) split into `banks` independent banks — the ARRAY_PARTITION / ARRAY_RESHAPE the
    kernel asks for (`partition`: block, cyclic, reshape or complete), so every bank serves the
    reads of one cycle the schedule needs (hls/hwprune/*.h; tests/test_banking.py checks both).

    kind: "rom" (constants in BRAM/URAM/LUTRAM by bank size), "const" (completely partitioned
    constants folded into the logic: weights at RF 1, biases — no memory), "ram" (a buffer
    written at run time, e.g. a line buffer). `copies`: replicated copies (rom_np). `impl`:
    "auto" (by bank size) or "bram" (every bank in block RAM: the kernel's BIND_STORAGE)."""

    array: str  # the C array's role, the suffix of its name: w, b, idx, table, line_buffer
    words: int
    width: int
    banks: int = 1
    partition: str = "block"
    kind: str = "rom"
    copies: int = 1
    impl: str = "auto"

    @property
    def bits(self) -> int:
        """Bits of one copy (what the project writes for a ROM)."""
        return self.words * self.width

    @property
    def bank_words(self) -> int:
        return -(-self.words // max(self.banks, 1))

    def cost(self, allow_uram: bool = False) -> "hw.MemoryCost":
        if self.kind == "const" or self.words <= 0:
            return hw.MemoryCost()
        if self.impl == "bram":
            return hw.MemoryCost(bram18=float(self.banks * hw.bram18_for(self.bank_words, self.width) * self.copies))
        m = hw.memory_cost(self.words, self.width, self.banks, allow_uram=allow_uram)
        return hw.MemoryCost(m.bram18 * self.copies, m.uram * self.copies, m.lut * self.copies)


def memories_cost(mems: "Sequence[Memory]", allow_uram: bool = False) -> "hw.MemoryCost":
    """The summed cost of a layer's memories."""
    b = u = l = 0.0
    for m in mems:
        c = m.cost(allow_uram)
        b, u, l = b + c.bram18, u + c.uram, l + c.lut
    return hw.MemoryCost(b, u, l)


@dataclass
class LayerCost:
    """Estimated cost of one layer for one sample at the design clock."""

    latency: int  # cycles from the first input word to the last output word
    ii: int  # cycles before the layer accepts the next sample
    dsp: float = 0.0
    lut: float = 0.0
    ff: float = 0.0
    bram18: float = 0.0
    uram: float = 0.0
    multipliers: int = 0  # physical multipliers instantiated
    macs: int = 0  # multiply-accumulates per sample (nominal work)
    weight_sparsity: float = 0.0  # fraction of weights that are exactly zero (nominal)
    macs_skipped: int = 0  # multiply-accumulates the kernel's schedule really skips
    note: str = ""
    # The on-chip arrays this cost charges (weights, indices, tables, buffers) and their banking.
    memories: tuple[Memory, ...] = ()


class Step(NamedTuple):
    """`count` consecutive trips of one of a kernel's loops in io_stream, as the dataflow
    simulator (sim/dataflow.py) replays them: each trip reads one word from every input port in
    `reads` (indices into the layer's inputs) when it starts, keeps the process busy `cycles`
    cycles (the loop's II), and writes one word to every output port in `writes` (indices into
    the layer's outputs; a port listed k times gets k words on successive cycles) `latency`
    cycles after it started (the pipeline depth, so the next trip overlaps the write)."""

    count: int
    cycles: int
    reads: tuple[int, ...] = ()
    writes: tuple[int, ...] = ()
    latency: int = 0


@dataclass(frozen=True)
class ProcessModel:
    """The token pattern of one layer's io_stream process for one sample: its loop trips in
    program order (the kernel repeats them for every sample)."""

    steps: tuple[Step, ...]

    def __post_init__(self) -> None:
        for st in self.steps:
            if st.count < 1 or st.cycles < 0 or st.latency < 0 or len(set(st.reads)) != len(st.reads):
                raise ValueError(f"invalid process step {st}")

    @property
    def cycles(self) -> int:
        """Busy cycles per sample (what the kernel's loop counters add up, -DHWP_COUNT)."""
        return sum(st.count * st.cycles for st in self.steps)

    def reads(self, port: int) -> int:
        return sum(st.count for st in self.steps if port in st.reads)

    def writes(self, port: int) -> int:
        return sum(st.count * st.writes.count(port) for st in self.steps)


def process(*steps: Step) -> ProcessModel:
    """A ProcessModel from steps in program order; adjacent identical trips are merged."""
    out: list[Step] = []
    for st in steps:
        if st.count <= 0:
            continue
        if out and out[-1][1:] == st[1:]:
            out[-1] = st._replace(count=out[-1].count + st.count)
        else:
            out.append(st)
    return ProcessModel(tuple(out))


def output_delay(cost: LayerCost) -> int:
    """Cycles a kernel's pipeline adds after a trip's last cycle before its word leaves (the
    cost model's latency beyond its II: adder trees, registers; at least one register)."""
    return max(cost.latency - cost.ii, 1)


@dataclass
class WeightArray:
    """A constant array written to the weights header as raw integers (fast to compile on
    the host; reinterpreted as `type` inside the kernel)."""

    c_name: str
    raw: np.ndarray
    type: FixedType
    # The C array's dimensions when it is not flat (e.g. replicated tables, (copies, entries)):
    # `raw` holds them in row-major order.
    dims: tuple[int, ...] | None = None


@dataclass
class HlsBinding:
    include: str  # kernel header, relative to the hls include root
    config: str  # C++ text: config struct(s) and typedefs for this layer
    call: str  # C++ statement(s) invoking the kernel inside the top function
    weights: list[WeightArray] = field(default_factory=list)


@dataclass
class HlsContext:
    """What a layer needs to render its binding: C names and the graph."""

    graph: Graph
    names: dict[str, str]
    io_type: IOType
    clock_mhz: float

    def var(self, tensor: str) -> str:
        return self.names[f"t:{tensor}"]

    def lname(self, layer: Layer) -> str:
        return self.names[f"L:{layer.name}"]

    def ctype(self, tensor: str) -> str:
        """The C++ element type name of a tensor (a typedef written in parameters.h)."""
        return f"{self.var(tensor)}_t"


@dataclass
class CostContext:
    graph: Graph
    io_type: IOType
    dsp_kind: str
    has_uram: bool = False  # the device has UltraRAM (large tables may go there)
    _words: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def words(self, tensor: str) -> int:
        """Stream words per sample of a tensor (Tensor.words, memoised: the process models
        ask for it inside every io_stream estimate, and numpy's product is slow on tuples)."""
        w = self._words.get(tensor)
        if w is None:
            t = self.graph.tensor(tensor)
            w = self._words[tensor] = math.prod(t.shape) // max(t.word, 1)
        return w


# ---------------------------------------------------------------- templates

@functools.lru_cache(maxsize=None)
def _template_env() -> jinja2.Environment:
    root = resources.files("hwprune.hls") / "hwprune"
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(root)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(template: str, macro: str, **ctx: object) -> str:
    """Render one macro of a kernel's instantiation template (e.g. dense.j2: config/call)."""
    module = _template_env().get_template(template).module
    return str(getattr(module, macro)(**ctx)).strip("\n") + "\n"


# ---------------------------------------------------------------- fixed-point helpers

def int_bits_for(bound: float, signed: bool = True) -> int:
    """Integer bits (incl. sign for signed) so that |value| <= bound never overflows."""
    if bound <= 0:
        return 1 if signed else 0
    return max(int(math.floor(math.log2(bound))) + 1 + (1 if signed else 0), 1 if signed else 0)


def exact_type(int_bits: int, frac: int, signed: bool = True) -> FixedType:
    """A type that holds a value exactly (TRN/WRAP: never rounds or wraps by construction)."""
    return FixedType(int_bits + frac, int_bits, signed, Rounding.TRN, Overflow.WRAP)


def auto_weight_type(values: np.ndarray, width: int, rounding: Rounding = Rounding.RND_CONV) -> FixedType:
    """Choose integer bits from the largest |value| so the given width keeps most resolution
    (the 'auto' precision users expect for weights)."""
    m = float(np.max(np.abs(values))) if values.size else 0.0
    ib = int_bits_for(m) if m > 0 else 1
    # An extreme that rounds up past the range saturates (one lsb of error) rather than
    # costing every weight a fractional bit; values on a 2**-k grid stay exact.
    return FixedType(width, ib, True, rounding, Overflow.SAT)


def cap_fraction(t: FixedType, frac: int) -> FixedType:
    """t with at most `frac` fractional bits (a bias finer than its accumulator would be rounded
    away): same integer bits, or — when that leaves fewer than two bits, the bias lying below
    the accumulator's lsb — the two bits just above it."""
    width = t.integer + frac
    if width >= 2:
        return FixedType(width, t.integer, True, t.rounding, t.overflow)
    return FixedType(2, 2 - frac, True, t.rounding, t.overflow)


def round_error(t: FixedType) -> float:
    """Worst |rounding error| of converting an exact value into type t (overflow excluded)."""
    return t.lsb / 2 if t.rounding not in (Rounding.TRN, Rounding.TRN_ZERO) else t.lsb


def align(raw: np.ndarray, frac_from: int, frac_to: int, bits: int = 0) -> np.ndarray:
    """Exactly rescale raw integers to more fractional bits (`bits`: the result's width, which
    picks the exact representation)."""
    if frac_to < frac_from:
        raise ValueError("align only widens the fraction")
    return exact_ints(raw, bits) << (frac_to - frac_from)


def value_bound(t: FixedType) -> float:
    return max(abs(t.min_value), abs(t.max_value))


def out_of_range(raw: np.ndarray, frac: int, t: FixedType) -> int:
    from hwprune.fixed import overflow_count

    return int(overflow_count(raw, frac, t))


# ---------------------------------------------------------------- op registry

OnnxImporter = Callable[["ImportContext", object], None]
ONNX_IMPORTERS: dict[str, OnnxImporter] = {}


def onnx_op(*op_types: str) -> Callable[[OnnxImporter], OnnxImporter]:
    """Register the ONNX importer of an op kind (kept in the op's own module)."""

    def deco(fn: OnnxImporter) -> OnnxImporter:
        for t in op_types:
            ONNX_IMPORTERS[t] = fn
        return fn

    return deco


class OpMixin:
    """Default behaviour shared by layers; op modules override what differs."""

    def infer_types(self: Layer, g: Graph, prec: "PrecisionConfig") -> None:  # type: ignore[misc]
        raise NotImplementedError

    def float_forward(self, g: Graph, xs: list[np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def fixed_forward(self, g: Graph, xs: list[np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def error_bound(self, g: Graph, xs: list[np.ndarray], errs: list[np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def cost(self, ctx: CostContext) -> LayerCost:
        raise NotImplementedError

    def hls(self, ctx: HlsContext) -> HlsBinding:
        raise NotImplementedError

    def stream_process(self: Layer, ctx: CostContext, cost: LayerCost) -> ProcessModel:  # type: ignore[misc]
        """The layer's io_stream process for the dataflow simulator. Default, derived from the
        cost model, for kernels whose loop reads one word, spends II/words cycles on it and
        writes one word (dense, activations, softmax, quantize, scale-shift); op modules whose
        loops differ override it."""
        words = ctx.words(self.inputs[0]) if len(self.inputs) == 1 else 0
        if len(self.outputs) != 1 or words < 1 or ctx.words(self.output) != words or cost.ii % words:
            raise NotImplementedError(f"{self.op_type} layer '{self.name}' needs its own stream_process")
        per = cost.ii // words
        return process(Step(words, per, (0,), (0,), per - 1 + output_delay(cost)))

    def saturation(self, g: Graph, xs: list[np.ndarray]) -> int:
        """Elements that overflowed the output type on this batch (0 when not tracked)."""
        return 0

    # ------------------------------------------------ dead-channel elimination (passes/dead_channels.py)
    # Run on the logical graph (before layouts). Hooks never mutate unless they say so.
    def constant_output_channels(self, g: Graph) -> "ConstantChannels | None":
        """Output channels this layer fills with a constant whatever its input (zero weights)."""
        return None

    def remove_output_channels(self, g: Graph, cc: "ConstantChannels") -> None:
        """Mutating: drop the channels `constant_output_channels` reported."""
        raise NotImplementedError(f"{type(self).__name__} has no constant output channels to remove")

    def carry_constant_channels(self, g: Graph, port: int, cc: "ConstantChannels") -> "ConstantChannels | None":
        """Where input `port`'s constant positions land in this layer's output, with their values;
        None when this layer mixes them with other positions (the pass then keeps them)."""
        return None

    def remove_carried_channels(self, g: Graph, port: int, cc: "ConstantChannels") -> None:
        """Mutating: drop per-channel parameters of the positions `cc` (of input `port`) that
        `carry_constant_channels` accepted. Tensor shapes are the pass's job."""

    def absorb_constant_inputs(self, g: Graph, port: int, cc: "ConstantChannels") -> bool:
        """Mutating when it returns True: fold the constant inputs into this layer (its bias) and
        stop reading them. False (and no change) when that would not be exact."""
        return False


def quantize_input(x: np.ndarray, t: Tensor) -> np.ndarray:
    """Float batch (physical layout) -> raw integers of the tensor's type."""
    assert t.type is not None
    return quantize(np.asarray(x, dtype=np.float64), t.type)


def requant(raw: np.ndarray, frac: int, t: FixedType) -> np.ndarray:
    raw = np.asarray(raw)
    return requantize(raw if is_wide(raw) else np.asarray(raw, dtype=np.int64), frac, t)


def type_bits(t: FixedType) -> int:
    """Bits of an exact signed integer holding any raw of t (an unsigned type needs one more)."""
    return t.width + (0 if t.signed else 1)


def holds_exactly(acc: FixedType, exact: FixedType) -> bool:
    """Every value of `exact` is a value of `acc` (so assigning it never rounds nor overflows,
    whatever acc's modes)."""
    if acc.frac < exact.frac:
        return False
    lo = exact.min_raw << (acc.frac - exact.frac)
    hi = exact.max_raw << (acc.frac - exact.frac)
    a_lo = -acc.max_raw if acc.overflow == Overflow.SAT_SYM and acc.signed and acc.width > 1 else acc.min_raw
    return a_lo <= lo and hi <= acc.max_raw


def capped_accumulate(products: np.ndarray, prod_frac: int, bias: np.ndarray, bias_frac: int, acc_t: FixedType,
                      order: np.ndarray | None = None, with_overflow: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """What a kernel computes with a user-capped accumulator type (hls4ml's accum_t):

        acc = (acc_t) bias;  for k in order: acc += (acc_t) (x[k] * w[k])

    `products[..., o, k]` are the exact products of output o (prod_frac fractional bits),
    `bias[o]` the raw bias; `order[o]` the order in which the kernel adds output o's products
    (None: k ascending). Each product and the bias are assigned to acc_t (its rounding and
    overflow modes), then every += applies acc_t's overflow mode to an exact sum. Under AP_WRAP
    that is modular arithmetic, so the order does not matter; under the saturating modes it
    does unless no partial sum can leave the range (checked on the data), and the sum is then
    replayed in the kernel's order. Returns acc_t raws and, `with_overflow`, where (per output)
    a cast or a partial sum left acc_t's range."""
    from hwprune.fixed import overflow_mask

    k = products.shape[-1]
    bits = type_bits(acc_t) + max(k, 1).bit_length() + 1
    lo = -acc_t.max_raw if acc_t.overflow == Overflow.SAT_SYM and acc_t.signed and acc_t.width > 1 else acc_t.min_raw

    def cast(raw: np.ndarray, frac: int) -> tuple[np.ndarray, np.ndarray]:
        return exact_ints(requantize(raw, frac, acc_t), bits), overflow_mask(raw, frac, acc_t)

    p, p_over = cast(products, prod_frac)
    a, a_over = cast(np.broadcast_to(bias, products.shape[:-1]), bias_frac)
    over = np.asarray(a_over | p_over.any(axis=-1), dtype=bool)
    limit = min(acc_t.max_raw, -lo)
    if acc_t.overflow == Overflow.WRAP or k == 0 or bool(np.all(abs(a) + abs(p).sum(axis=-1) <= limit)):
        # Modular, or no partial sum can overflow: one exact sum, one overflow check.
        total = a + p.sum(axis=-1)
        over = over | np.asarray((total < lo) | (total > acc_t.max_raw), dtype=bool)
        acc = requantize(total, acc_t.frac, acc_t)
    else:
        if order is not None:
            p = np.take_along_axis(p, np.broadcast_to(order, p.shape), axis=-1)
        acc = a
        for j in range(k):
            s = acc + p[..., j]
            over = over | np.asarray((s < lo) | (s > acc_t.max_raw), dtype=bool)
            acc = exact_ints(requantize(s, acc_t.frac, acc_t), bits)
        acc = requantize(acc, acc_t.frac, acc_t)
    return (acc, over) if with_overflow else acc
