"""The typed intermediate representation every stage works on.

A `Graph` holds `Tensor`s (per-sample shapes, no batch axis) and `Layer`s in topological
order. Each tensor carries two orders:

* `shape` — the *logical* shape in the source model's order (ONNX: channels first);
* `perm`  — the *physical* order the hardware stores or streams it in:
  ``physical = logical.transpose(perm)``. Convolutions and pools want channels last.

Keeping both explicit is what lets the layout pass prove that a Transpose/Reshape is a no-op
or insert a real data reorder, instead of silently producing a wrong design.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import ClassVar, Iterator

import numpy as np

from hwprune.fixed import FixedType


class IOType(str, Enum):
    """How layers exchange data in the generated design (hls4ml's io_parallel/io_stream)."""

    PARALLEL = "parallel"  # arrays, fully partitioned, latency oriented
    STREAM = "stream"  # hls::stream between DATAFLOW processes, area oriented


class TensorKind(str, Enum):
    FIXED = "fixed"  # fixed-point activations
    INDEX = "index"  # unsigned integer token ids (embedding input)


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    perm: tuple[int, ...] = ()
    type: FixedType | None = None
    kind: TensorKind = TensorKind.FIXED
    # Number of distinct index values (vocabulary size) for INDEX tensors.
    index_range: int = 0
    # Host-side scale of a graph input or output (scaled-integer QONNX graphs): the model's
    # value is scale x the tensor's fixed-point value. The host divides an input by it before
    # converting it to the input's type, and multiplies an output by it (see passes/scales.py).
    scale: float = 1.0
    # io_stream: depth of the FIFO carrying this tensor between two kernels, as the design
    # declares it (written by passes.fifo.set_fifo_depths; read by the HLS writer, the
    # estimate and the simulator). None: not sized yet.
    fifo_depth: int | None = None
    # io_stream: where that FIFO is stored — "auto" (Vitis HLS's default: shift registers when
    # shallow or small, block RAM otherwise), "srl" (shift registers in LUTs whatever the
    # depth) or "bram" (BIND_STORAGE type=fifo impl=...; passes.fifo.bind_fifo_storage).
    fifo_impl: str = "auto"

    def __post_init__(self) -> None:
        self.shape = tuple(int(d) for d in self.shape)
        if not self.perm:
            self.perm = tuple(range(len(self.shape)))
        if sorted(self.perm) != list(range(len(self.shape))):
            raise ValueError(f"tensor {self.name}: perm {self.perm} is not a permutation of its rank")

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)  # math.prod: ~20x faster than numpy on a tuple (hot in cost models)

    @property
    def physical_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[p] for p in self.perm)

    @property
    def word(self) -> int:
        """Elements per stream word in io_stream: the innermost physical axis."""
        return self.physical_shape[-1] if self.shape else 1

    @property
    def words(self) -> int:
        """Stream words per sample in io_stream."""
        return self.size // max(self.word, 1)

    def data_order(self) -> tuple[int, ...]:
        """Physical order of the non-unit logical axes: two layouts with the same data order
        hold the same bytes in the same sequence, whatever size-1 axes they add."""
        return tuple(p for p in self.perm if self.shape[p] != 1)

    def to_physical(self, x: np.ndarray) -> np.ndarray:
        """Batch array in logical order -> physical order (batch axis 0 stays first)."""
        return np.ascontiguousarray(np.transpose(x, (0, *(p + 1 for p in self.perm))))

    def to_logical(self, x: np.ndarray) -> np.ndarray:
        inv = np.argsort(self.perm)
        return np.ascontiguousarray(np.transpose(x, (0, *(int(p) + 1 for p in inv))))


@dataclass
class Layer:
    """Base of every op kind. Subclasses (one module each in `hwprune.ops`) add typed fields
    and implement float/fixed semantics, the cost model and the HLS binding."""

    name: str
    inputs: list[str]
    outputs: list[str]

    op_type: ClassVar[str] = "Layer"
    # True when the layer moves no data in io_parallel (arrays alias): reshapes, no-op transposes.
    aliases_in_parallel: ClassVar[bool] = False

    @property
    def output(self) -> str:
        return self.outputs[0]


_C_IDENT = re.compile(r"[^A-Za-z0-9_]")


def c_identifier(name: str, prefix: str) -> str:
    """A C++/Tcl-safe identifier for a model-derived name: only [A-Za-z0-9_], always starting
    with a fixed prefix, so no node name can inject code, reach a reserved word or a macro."""
    body = _C_IDENT.sub("_", name)[:48]
    return f"{prefix}_{body}" if body else prefix


@dataclass
class Graph:
    name: str
    tensors: dict[str, Tensor] = field(default_factory=dict)
    layers: list[Layer] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    io_type: IOType = IOType.PARALLEL
    # Where the ONNX model came from (for messages) and its opset after upgrade.
    source: str = ""
    # Layers the host (the board's ARM side) runs before the accelerator, in order: their
    # outputs are graph inputs of the accelerator (passes/host_embedding.py).
    host_layers: list[Layer] = field(default_factory=list)

    @property
    def model_inputs(self) -> list[str]:
        """The inputs the user gives: `inputs`, with each one a host layer makes replaced by
        that layer's input."""
        made = {l.output: l.inputs[0] for l in self.host_layers}
        return [made.get(n, n) for n in self.inputs]

    def tensor(self, name: str) -> Tensor:
        return self.tensors[name]

    def producer(self, tensor: str) -> Layer | None:
        for layer in self.layers:
            if tensor in layer.outputs:
                return layer
        return None

    def consumers(self, tensor: str) -> list[Layer]:
        return [layer for layer in self.layers if tensor in layer.inputs]

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def unique_name(self, base: str) -> str:
        taken = set(self.tensors) | {layer.name for layer in self.layers}
        if base not in taken:
            return base
        i = 1
        while f"{base}_{i}" in taken:
            i += 1
        return f"{base}_{i}"

    def replace_tensor_uses(self, old: str, new: str) -> None:
        for layer in self.layers:
            layer.inputs = [new if t == old else t for t in layer.inputs]
        self.outputs = [new if t == old else t for t in self.outputs]

    def remove_layer(self, layer: Layer) -> None:
        """Remove a single-input single-output layer, wiring its consumers to its input."""
        self.layers.remove(layer)
        self.replace_tensor_uses(layer.output, layer.inputs[0])
        if not any(layer.output in l.inputs for l in self.layers) and layer.output not in self.outputs:
            self.tensors.pop(layer.output, None)

    def insert_after(self, anchor: Layer | None, layer: Layer) -> None:
        idx = 0 if anchor is None else self.layers.index(anchor) + 1
        self.layers.insert(idx, layer)

    def toposort(self) -> None:
        ready = set(self.inputs)
        ordered: list[Layer] = []
        pending = list(self.layers)
        while pending:
            progressed = False
            for layer in list(pending):
                if all(t in ready for t in layer.inputs):
                    ordered.append(layer)
                    ready.update(layer.outputs)
                    pending.remove(layer)
                    progressed = True
            if not progressed:
                names = ", ".join(l.name for l in pending)
                raise ValueError(f"graph {self.name} has a cycle or dangling inputs at: {names}")
        self.layers = ordered

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def c_names(self) -> dict[str, str]:
        """Unique sanitized C identifiers for every tensor and layer name."""
        out: dict[str, str] = {}
        used: set[str] = set()
        for kind, names in (("t", list(self.tensors)), ("L", [l.name for l in self.layers])):
            for n in names:
                base = c_identifier(n, kind)
                cand, i = base, 1
                while cand in used:
                    cand, i = f"{base}_{i}", i + 1
                used.add(cand)
                out[f"{kind}:{n}"] = cand
        return out
