"""PYNQ driver of an hwprune accelerator: an AXI DMA (simple mode) feeding the AXI4-Stream
top of the generated network, controlled over AXI-Lite.

This file is shipped verbatim into every deployment package (`hwprune deploy`) as
`hwprune_driver.py`. On the board it needs only numpy and pynq; it never imports hwprune.
On a host, `open_accelerator(..., sim=True)` runs the same code against a simulated overlay
(`hwprune.backend.pynq_sim`), which executes the project's C simulation.

Bus packing (also described in accelerator.json, "bus"):

* every AXI4-Stream beat (bus word) is 64 bits; a sample is the sequence of its input ports
  (output ports), each port starting on a fresh beat;
* a port's elements, in the tensor's physical order (the order in accelerator.json's `perm`),
  are cut into raw two's-complement fields of the element width W: beat k of a port holds
  elements k*F .. k*F+F-1 with F = 64 // W, element j of the beat in bits [j*W, j*W+W) —
  the little end first; the bits above F*W and the fields past the port's last element are 0;
* a batch is its samples back to back; the accelerator reads the batch size from its AXI-Lite
  register and raises TLAST on the last beat of the batch only, so one DMA receive completes
  per batch.

The pynq objects (IP register access, DMA channels, `allocate`, `Clocks`) are passed to
`Accelerator`, so the simulated overlay exercises every line of the board path.

With the embedding on the ARM side (`hwprune export --embedding-on-ps`), accelerator.json's
`host_embeddings` names, per accelerator input, the token-id input it is looked up from and the
.npy tables (raw integers) beside it: `run` takes the token ids, looks them up here in numpy
and adds the position rows with the accelerator type's overflow mode, as the kernel would.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

try:  # only on the board
    import pynq as _pynq
except ImportError:  # pragma: no cover - the host has no pynq (it breaks onnx there)
    _pynq = None

log = logging.getLogger("hwprune_driver")

SPEC_FILE = "accelerator.json"
FORMAT = "hwprune-accelerator/1"
BUS_BITS = 64
# Vitis HLS s_axilite register map of `void top(..., int batch)` with `port=return`:
# 0x00 control (bit 0 ap_start, 1 ap_done (clear on read), 2 ap_idle, 3 ap_ready), 0x10 batch.
REG_CTRL = 0x00
REG_BATCH = 0x10
AP_START = 0x1
AP_IDLE = 0x4
# The block design sets the DMA's buffer length register to 26 bits (c_sg_length_width).
DMA_MAX_BYTES = (1 << 26) - 1
DEFAULT_MAX_BATCH = 4096
_EXACT_BITS = 53  # float64 holds every raw of up to 53 bits exactly


class DriverError(Exception):
    """Base of the driver's errors."""


class InputError(DriverError, ValueError):
    """Inputs of the wrong shape, dtype or range; the message says what is expected."""


class AcceleratorError(DriverError, RuntimeError):
    """The hardware (or the simulated overlay) misbehaved."""


class AcceleratorTimeout(AcceleratorError, TimeoutError):
    """A DMA transfer or the accelerator did not finish in time."""


@dataclass(frozen=True)
class PortSpec:
    """One input or output of the network as it crosses the bus."""

    name: str
    shape: tuple[int, ...]  # logical shape of one sample (the model's own layout)
    perm: tuple[int, ...]  # physical axis order: physical axis i is logical axis perm[i]
    kind: str  # "fixed" (fixed-point values) or "index" (unsigned token ids)
    ctype: str  # the C++ element type, for messages
    width: int
    frac: int  # value = raw * 2**-frac (times `scale`)
    signed: bool
    rounding: str = "AP_TRN"
    overflow: str = "AP_WRAP"
    index_range: int = 0
    # Scaled-integer (QONNX) ports: the model's value is scale * raw * 2**-frac. Inputs are
    # divided by it in float32 (as QONNX's Quant does) before conversion; outputs multiplied.
    scale: float = 1.0

    @property
    def size(self) -> int:
        return int(math.prod(self.shape))

    @property
    def physical_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[p] for p in self.perm)

    @property
    def fields_per_word(self) -> int:
        return BUS_BITS // self.width

    @property
    def words(self) -> int:
        """Bus words per sample."""
        return -(-self.size // self.fields_per_word)

    @property
    def min_raw(self) -> int:
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def max_raw(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PortSpec":
        return cls(name=str(d["name"]), shape=tuple(int(v) for v in d["shape"]), perm=tuple(int(v) for v in d["perm"]),
                   kind=str(d["kind"]), ctype=str(d["type"]), width=int(d["width"]), frac=int(d["frac"]),
                   signed=bool(d["signed"]), rounding=str(d.get("rounding", "AP_TRN")),
                   overflow=str(d.get("overflow", "AP_WRAP")), index_range=int(d.get("index_range", 0)),
                   scale=float(d.get("scale", 1.0)))

    def to_dict(self) -> dict[str, Any]:
        return dict(name=self.name, shape=list(self.shape), perm=list(self.perm), physical_shape=list(self.physical_shape),
                    kind=self.kind, type=self.ctype, width=self.width, frac=self.frac, signed=self.signed,
                    rounding=self.rounding, overflow=self.overflow, index_range=self.index_range,
                    scale=self.scale, fields_per_word=self.fields_per_word, words_per_sample=self.words)


@dataclass
class AcceleratorSpec:
    """accelerator.json: what the driver needs to talk to the bitstream."""

    inputs: list[PortSpec]
    outputs: list[PortSpec]
    clock_mhz: float
    board: str = ""
    top: str = ""
    overlay: dict[str, str] = field(default_factory=dict)  # bitfile, hwh, accel and dma cell names
    registers: dict[str, int] = field(default_factory=lambda: dict(ctrl=REG_CTRL, batch=REG_BATCH))
    extra: dict[str, Any] = field(default_factory=dict)  # everything else in the file
    # Per accelerator input the host looks up (the embedding on the ARM side), by port name.
    host: dict[str, "HostEmbedding"] = field(default_factory=dict)

    @property
    def model_inputs(self) -> list[PortSpec]:
        """The inputs `run` takes: the token ids where the host does the lookup."""
        return [self.host[p.name].ids if p.name in self.host else p for p in self.inputs]

    @property
    def words_in(self) -> int:
        return sum(p.words for p in self.inputs)

    @property
    def words_out(self) -> int:
        return sum(p.words for p in self.outputs)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AcceleratorSpec":
        if d.get("format") != FORMAT:
            raise DriverError(f"not an hwprune accelerator description (format {d.get('format')!r}, expected {FORMAT!r})")
        bus = d.get("bus", {})
        if int(bus.get("width_bits", BUS_BITS)) != BUS_BITS:
            raise DriverError(f"this driver packs {BUS_BITS}-bit bus words; accelerator.json says {bus.get('width_bits')}")
        known = {"inputs", "outputs", "clock_mhz", "board", "top", "overlay", "registers"}
        return cls(inputs=[PortSpec.from_dict(p) for p in d["inputs"]], outputs=[PortSpec.from_dict(p) for p in d["outputs"]],
                   clock_mhz=float(d["clock_mhz"]), board=str(d.get("board", "")), top=str(d.get("top", "")),
                   overlay=dict(d.get("overlay", {})),
                   registers={k: int(v) for k, v in d.get("registers", dict(ctrl=REG_CTRL, batch=REG_BATCH)).items()},
                   extra={k: v for k, v in d.items() if k not in known})

    @classmethod
    def load(cls, path: str | Path) -> "AcceleratorSpec":
        p = Path(path)
        if p.is_dir():
            p = p / SPEC_FILE
        try:
            d = json.loads(p.read_text())
        except FileNotFoundError:
            raise DriverError(f"{p} not found: run from the deployment package written by `hwprune deploy`") from None
        except json.JSONDecodeError as e:
            raise DriverError(f"{p} is not valid JSON ({e})") from None
        spec = cls.from_dict(d)
        for h in d.get("host_embeddings", []):
            spec.host[str(h["port"])] = HostEmbedding.load(h, p.parent, spec)
        return spec


@dataclass
class HostEmbedding:
    """A token (+ position) lookup done here instead of on the accelerator: token ids of port
    `ids` -> raw integers of accelerator input `port` (physical order)."""

    ids: PortSpec
    port: PortSpec
    table: np.ndarray  # (vocab, dim) raw integers of the port's type
    position: np.ndarray | None  # (ids physical shape..., dim) raw integers, or None

    @classmethod
    def load(cls, d: dict[str, Any], directory: Path, spec: AcceleratorSpec) -> "HostEmbedding":
        port = next((q for q in spec.inputs if q.name == d["port"]), None)
        if port is None:
            raise DriverError(f"accelerator.json: host embedding for unknown input {d['port']!r}")

        def table(name: str) -> np.ndarray:
            try:
                return np.load(directory / name).astype(np.int64)
            except (OSError, ValueError) as e:
                raise DriverError(f"{directory / name}: cannot read the embedding table ({e}); "
                                  "re-run hwprune deploy") from None

        pos = d.get("position")
        return cls(ids=PortSpec.from_dict(d["ids"]), port=port, table=table(d["table"]),
                   position=table(pos) if pos else None)

    def lookup_raw(self, x: np.ndarray) -> np.ndarray:
        """Checked token ids (n, *ids.shape) -> (n, port.size) raw integers."""
        ids = input_raw(x, self.ids).reshape((x.shape[0], *self.ids.physical_shape))
        y = self.table[ids]
        if self.position is not None:
            # The kernel adds in a wider type and converts into the port's type: its overflow
            # mode (saturation by default) decides what a sum out of range becomes.
            acc = (y + self.position[None]).astype(np.float64)
            y = quantize(np.ldexp(acc, -self.port.frac), replace(self.port, scale=1.0))
        return y.reshape(x.shape[0], -1)


# ---------------------------------------------------------------- values <-> raw integers

def quantize(x: np.ndarray, port: PortSpec) -> np.ndarray:
    """Model of the C++ `T v = (double)x;` for the port's ap_fixed type T (its rounding and
    overflow modes): raw int64 mantissas. Exact for types of up to 53 bits and finite x."""
    if port.width > _EXACT_BITS:
        raise InputError(f"input '{port.name}' has type {port.ctype}, wider than {_EXACT_BITS} bits: "
                         "pass raw integers to Accelerator.run_raw")
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise InputError(f"input '{port.name}' holds NaN or infinite values")
    if port.scale != 1.0:
        x = (x.astype(np.float32) / np.float32(port.scale)).astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        s = np.ldexp(x, port.frac)  # scaling by a power of two is exact (barring overflow)
        fl = np.floor(s)
        f = s - fl  # exact: the fraction below the new lsb
        mode = port.rounding
        if mode == "AP_TRN":
            r = fl
        elif mode == "AP_TRN_ZERO":
            r = fl + ((s < 0) & (f > 0))
        elif mode == "AP_RND":
            r = fl + (f >= 0.5)
        elif mode == "AP_RND_ZERO":
            r = fl + ((f > 0.5) | ((f == 0.5) & (s < 0)))
        elif mode == "AP_RND_MIN_INF":
            r = fl + (f > 0.5)
        elif mode == "AP_RND_INF":
            r = fl + ((f > 0.5) | ((f == 0.5) & (s > 0)))
        elif mode == "AP_RND_CONV":
            r = fl + ((f > 0.5) | ((f == 0.5) & (np.fmod(fl, 2) != 0)))
        else:
            raise DriverError(f"input '{port.name}': unknown rounding mode {mode!r}")
        w = port.width
        if port.overflow == "AP_WRAP":
            span = float(1 << w)
            m = np.fmod(np.where(np.isfinite(r), r, 0.0), span)  # fmod is exact; a value beyond 2**1024 wraps to 0
            m = np.where(m < 0, m + span, m)
            if port.signed:
                m = np.where(m >= span / 2, m - span, m)
            return m.astype(np.int64)
        hi = float(port.max_raw)
        lo = float(-port.max_raw if port.overflow == "AP_SAT_SYM" and port.signed and w > 1 else port.min_raw)
        if port.overflow == "AP_SAT_ZERO":
            return np.where((r < lo) | (r > hi), 0.0, r).astype(np.int64)
        if port.overflow in ("AP_SAT", "AP_SAT_SYM"):
            return np.clip(r, lo, hi).astype(np.int64)
    raise DriverError(f"input '{port.name}': unknown overflow mode {port.overflow!r}")


def to_float(raw: np.ndarray, port: PortSpec) -> np.ndarray:
    a = np.asarray(raw)
    if not port.signed and port.width == 64:
        a = a.astype(np.int64).view(np.uint64)  # 64-bit unsigned raws travel as their bit pattern
    y = np.ldexp(a.astype(np.float64), -port.frac)
    return y * port.scale if port.scale != 1.0 else y


def pack_words(raw: np.ndarray, width: int) -> np.ndarray:
    """(n, size) raw integers -> (n, words) uint64 bus words (see the module docstring)."""
    raw = np.ascontiguousarray(raw, dtype=np.int64)
    n, size = raw.shape
    k = BUS_BITS // width
    words = -(-size // k)
    mask = np.uint64((1 << width) - 1) if width < 64 else np.uint64(0xFFFFFFFFFFFFFFFF)
    fields = np.zeros((n, words * k), dtype=np.uint64)
    fields[:, :size] = raw.view(np.uint64) & mask  # two's complement: the low W bits
    shifts = np.arange(k, dtype=np.uint64) * np.uint64(width)
    return np.bitwise_or.reduce(fields.reshape(n, words, k) << shifts, axis=2)


def unpack_words(words: np.ndarray, size: int, width: int, signed: bool) -> np.ndarray:
    """(n, words) uint64 bus words -> (n, size) raw int64 (sign-extended when `signed`)."""
    words = np.ascontiguousarray(words, dtype=np.uint64)
    n = words.shape[0]
    k = BUS_BITS // width
    mask = np.uint64((1 << width) - 1) if width < 64 else np.uint64(0xFFFFFFFFFFFFFFFF)
    shifts = np.arange(k, dtype=np.uint64) * np.uint64(width)
    fields = ((words[:, :, None] >> shifts) & mask).reshape(n, -1)[:, :size]
    if width == 64:
        return np.ascontiguousarray(fields).view(np.int64)
    v = fields.astype(np.int64)
    if signed:
        v = np.where(v >= (1 << (width - 1)), v - (1 << width), v)
    return v


def check_input(x: Any, port: PortSpec) -> np.ndarray:
    """The batch array for `port`, or InputError saying what is wrong with it."""
    x = np.asarray(x)
    want = ", ".join(map(str, port.shape))
    if x.dtype == object or x.dtype.kind not in "biuf":
        raise InputError(f"input '{port.name}': expected a numeric array, got dtype {x.dtype}")
    if x.ndim == len(port.shape) and len(port.shape) > 0 and tuple(x.shape) == port.shape:
        raise InputError(f"input '{port.name}': got shape {x.shape}, which lacks the batch axis; use shape (N, {want})")
    if x.ndim != len(port.shape) + 1 or tuple(x.shape[1:]) != port.shape:
        raise InputError(f"input '{port.name}': got shape {x.shape}; expected (N, {want}) with the batch first")
    if x.dtype.kind == "b":
        raise InputError(f"input '{port.name}': got a boolean array; expected numbers")
    if port.kind == "index":
        if x.dtype.kind not in "iu":
            raise InputError(f"input '{port.name}' holds token ids: expected an integer array, got {x.dtype}")
        if x.size and (x.min() < 0 or x.max() >= port.index_range):
            raise InputError(f"input '{port.name}': token ids must lie in [0, {port.index_range}); "
                             f"got [{x.min()}, {x.max()}]")
    return x


def input_raw(x: np.ndarray, port: PortSpec) -> np.ndarray:
    """A checked logical batch -> (n, size) raw integers in physical order."""
    phys = np.transpose(x, (0, *(p + 1 for p in port.perm))).reshape(x.shape[0], -1)
    if port.kind == "index":
        return phys.astype(np.int64)
    return quantize(phys, port)


def pack_inputs(spec: AcceleratorSpec, inputs: Sequence[Any]) -> np.ndarray:
    """Logical input batches -> (n, words_in) uint64 bus words."""
    ports = spec.model_inputs
    if len(inputs) != len(ports):
        raise InputError(f"the accelerator has {len(ports)} input(s) "
                         f"({', '.join(p.name for p in ports)}); got {len(inputs)} array(s)")
    xs = [check_input(x, p) for x, p in zip(inputs, ports)]
    n = xs[0].shape[0]
    for x, p in zip(xs, ports):
        if x.shape[0] != n:
            raise InputError(f"input '{p.name}' has {x.shape[0]} samples, input '{ports[0].name}' {n}")
    return pack_raw(spec, [spec.host[p.name].lookup_raw(x) if p.name in spec.host else input_raw(x, q)
                           for x, p, q in zip(xs, spec.inputs, ports)])


def pack_raw(spec: AcceleratorSpec, raws: Sequence[np.ndarray]) -> np.ndarray:
    """Raw (n, size) integers per input port (physical order) -> (n, words_in) bus words."""
    parts = []
    for r, p in zip(raws, spec.inputs):
        r = np.asarray(r).reshape(np.asarray(r).shape[0], -1)
        if r.shape[1] != p.size:
            raise InputError(f"input '{p.name}': {r.shape[1]} raw values per sample, expected {p.size}")
        if r.size and (r.min() < p.min_raw or r.max() > p.max_raw) and p.width < 64:
            raise InputError(f"input '{p.name}': raw values must lie in [{p.min_raw}, {p.max_raw}] for {p.ctype}")
        parts.append(pack_words(r, p.width))
    return np.concatenate(parts, axis=1) if parts else np.zeros((0, 0), np.uint64)


def unpack_outputs(spec: AcceleratorSpec, words: np.ndarray) -> list[np.ndarray]:
    """(n, words_out) bus words -> raw outputs, each (n, *physical_shape) int64."""
    out, at = [], 0
    n = words.shape[0]
    for p in spec.outputs:
        raw = unpack_words(words[:, at:at + p.words], p.size, p.width, p.signed)
        out.append(raw.reshape((n, *p.physical_shape)))
        at += p.words
    return out


def outputs_to_logical(spec: AcceleratorSpec, raws: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Raw physical outputs -> float values in the model's own layout."""
    ys = []
    for raw, p in zip(raws, spec.outputs):
        inv = np.argsort(p.perm)
        ys.append(np.ascontiguousarray(np.transpose(to_float(raw, p), (0, *(int(i) + 1 for i in inv)))))
    return ys


# ---------------------------------------------------------------- the accelerator

class Accelerator:
    """Runs batches through the accelerator.

    ip: the HLS IP's register access (`read(offset)`, `write(offset, value)`: pynq's DefaultIP);
    dma: an object with `sendchannel` / `recvchannel` (pynq.lib.dma.DMA);
    allocate: `allocate(shape=..., dtype=...)` returning buffers with flush()/invalidate()
    (pynq.allocate); clocks: an object with a settable `fclk0_mhz` (pynq.Clocks) or None.
    """

    def __init__(self, spec: AcceleratorSpec, ip: Any, dma: Any, allocate: Callable[..., Any], clocks: Any = None,
                 timeout_s: float = 10.0, max_batch: int | None = None, set_clock: bool = True) -> None:
        self.spec = spec
        self.ip = ip
        self.dma = dma
        self._allocate = allocate
        self.timeout_s = float(timeout_s)
        words_max = DMA_MAX_BYTES // 8
        limit = min(words_max // max(spec.words_in, 1), words_max // max(spec.words_out, 1))
        self.max_batch = max(1, min(limit, int(max_batch or DEFAULT_MAX_BATCH)))
        self._buffers: dict[int, tuple[Any, Any]] = {}
        self.last_transfer_s = 0.0  # DMA + compute time of the last run (all its chunks)
        self.clock_mhz = self._set_clock(clocks) if set_clock else None

    def _set_clock(self, clocks: Any) -> float | None:
        """The PL clock must be the design's: left at the image's default (100 MHz on most
        PYNQ images) the accelerator runs slower, or faster than its timing closed for."""
        want = self.spec.clock_mhz
        if clocks is None:
            log.warning("no clock control given: the PL clock stays where the image left it (design: %.3f MHz)", want)
            return None
        clocks.fclk0_mhz = want
        actual = float(clocks.fclk0_mhz)
        if abs(actual - want) > 0.01 * want:
            log.warning("the PL clock reads back %.3f MHz; the design was built for %.3f MHz", actual, want)
        else:
            log.info("PL clock fclk0 = %.3f MHz (design %.3f MHz)", actual, want)
        return actual

    def run(self, inputs: Sequence[Any]) -> list[np.ndarray]:
        """Logical input batches (batch first) -> logical float outputs, like `hwprune run`."""
        words = pack_inputs(self.spec, list(inputs))
        return outputs_to_logical(self.spec, unpack_outputs(self.spec, self.transfer_words(words)))

    def run_raw(self, raws: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Raw physical-order integers per input -> raw physical outputs (bit-exact checks)."""
        return unpack_outputs(self.spec, self.transfer_words(pack_raw(self.spec, raws)))

    def predict(self, x: Any) -> np.ndarray:
        """One-input, one-output convenience: the output batch for input batch x."""
        if len(self.spec.inputs) != 1 or len(self.spec.outputs) != 1:
            raise InputError("predict() is for one input and one output; use run([x0, x1, ...])")
        return self.run([x])[0]

    def transfer_words(self, words: np.ndarray) -> np.ndarray:
        """(n, words_in) bus words -> (n, words_out), in chunks of at most max_batch samples."""
        words = np.ascontiguousarray(words, dtype=np.uint64)
        if words.ndim != 2 or words.shape[1] != self.spec.words_in:
            raise InputError(f"expected (N, {self.spec.words_in}) bus words, got shape {words.shape}")
        n = words.shape[0]
        out = np.empty((n, self.spec.words_out), dtype=np.uint64)
        self.last_transfer_s = 0.0
        for start in range(0, n, self.max_batch):
            stop = min(n, start + self.max_batch)
            out[start:stop] = self._transfer_chunk(words[start:stop])
        return out

    def _buffers_for(self, n: int) -> tuple[Any, Any]:
        if n not in self._buffers:
            # Keep the full-size pair and the latest partial one: batches end with a short chunk.
            for k in [k for k in self._buffers if k != self.max_batch]:
                self._free(self._buffers.pop(k))
            self._buffers[n] = (self._allocate(shape=(n * self.spec.words_in,), dtype=np.uint64),
                                self._allocate(shape=(n * self.spec.words_out,), dtype=np.uint64))
        return self._buffers[n]

    @staticmethod
    def _free(pair: tuple[Any, Any]) -> None:
        for b in pair:
            free = getattr(b, "freebuffer", None)
            if free is not None:
                free()

    def close(self) -> None:
        for pair in self._buffers.values():
            self._free(pair)
        self._buffers.clear()

    def _transfer_chunk(self, words: np.ndarray) -> np.ndarray:
        n = words.shape[0]
        inbuf, outbuf = self._buffers_for(n)
        inbuf[:] = words.reshape(-1)
        inbuf.flush()  # the DMA reads DDR, not the CPU cache
        regs = self.spec.registers
        self._wait_ip_idle("before the batch")
        t0 = time.perf_counter()
        self.ip.write(regs["batch"], n)
        self.ip.write(regs["ctrl"], AP_START)
        self.dma.recvchannel.transfer(outbuf)
        self.dma.sendchannel.transfer(inbuf)
        self._wait_channel(self.dma.sendchannel, "send (MM2S)", n)
        self._wait_channel(self.dma.recvchannel, "receive (S2MM)", n)
        self.last_transfer_s += time.perf_counter() - t0
        outbuf.invalidate()  # drop stale cache lines before reading what the DMA wrote
        expected = n * self.spec.words_out * 8
        got = getattr(self.dma.recvchannel, "transferred", expected)
        if got != expected:
            raise AcceleratorError(f"the accelerator returned {got} bytes for {n} samples, expected {expected}: "
                                   "does the bitstream match accelerator.json?")
        self._wait_ip_idle("after the batch")
        return np.array(outbuf, dtype=np.uint64, copy=True).reshape(n, self.spec.words_out)

    def _deadline_loop(self) -> Any:
        """Yields until the timeout; spins first (MMIO reads are cheap), then sleeps briefly."""
        deadline = time.monotonic() + self.timeout_s
        spins = 0
        while time.monotonic() < deadline:
            yield
            spins += 1
            if spins > 1000:
                time.sleep(1e-4)

    def _wait_channel(self, ch: Any, what: str, n: int) -> None:
        for _ in self._deadline_loop():
            if getattr(ch, "error", False):
                raise AcceleratorError(f"DMA {what} reports an error after {n} samples were queued "
                                       "(bus error or a packet longer than the buffer)")
            if ch.idle:
                ch.wait()  # pynq's own completion checks (and the receive-side invalidate)
                return
        raise AcceleratorTimeout(
            f"DMA {what} did not complete within {self.timeout_s:g} s for a batch of {n}: the accelerator is not "
            f"running or consumed/produced a different number of words than accelerator.json says "
            f"({self.spec.words_in} in, {self.spec.words_out} out per sample); reload the overlay")

    def _wait_ip_idle(self, when: str) -> None:
        ctrl = self.spec.registers["ctrl"]
        for _ in self._deadline_loop():
            if self.ip.read(ctrl) & AP_IDLE:
                return
        raise AcceleratorTimeout(f"the accelerator is still busy {when} after {self.timeout_s:g} s; reload the overlay")


if _pynq is not None:  # pragma: no cover - exercised on the board

    class HwpruneOverlay(_pynq.Overlay):
        """The accelerator's overlay: downloads the bitstream, sets the PL clock to the design's
        and runs batches (`run`, `predict`)."""

        def __init__(self, package_dir: str | Path | None = None, bitfile: str | Path | None = None,
                     timeout_s: float = 10.0, max_batch: int | None = None, **kwargs: Any) -> None:
            pkg = Path(package_dir) if package_dir is not None else Path(__file__).resolve().parent
            spec = AcceleratorSpec.load(pkg)
            bit = Path(bitfile) if bitfile is not None else pkg / spec.overlay.get("bitfile", "")
            if not bit.is_file() or not bit.with_suffix(".hwh").is_file():
                raise DriverError(f"{bit} and its .hwh are needed beside each other: build them with "
                                  "`hwprune build` and deploy again, or pass bitfile=")
            super().__init__(str(bit), **kwargs)
            self._package = str(pkg)
            ip = getattr(self, spec.overlay.get("accel", "hwp_accel"))
            dma = getattr(self, spec.overlay.get("dma", "hwp_dma"))
            self.accelerator = Accelerator(spec, ip, dma, _pynq.allocate, _pynq.Clocks, timeout_s, max_batch)

        def run(self, inputs: Sequence[Any]) -> list[np.ndarray]:
            return self.accelerator.run(inputs)

        def predict(self, x: Any) -> np.ndarray:
            return self.accelerator.predict(x)

        def predict_text(self, texts: Sequence[str]) -> np.ndarray:
            """Raw texts (the package's text.json tokenizes them) -> the output batch."""
            enc = TextEncoder.load(Path(self._package))
            if enc is None:
                raise DriverError("this design does not read text (no text.json in the package)")
            return self.accelerator.predict(enc.encode(texts))


def open_accelerator(package_dir: str | Path | None = None, sim: bool = False, project: str | Path | None = None,
                     timeout_s: float = 10.0, max_batch: int | None = None) -> tuple[Accelerator, Any]:
    """(accelerator, overlay). On the board the overlay is a HwpruneOverlay; with `sim`, the
    host's simulated overlay running the project's C simulation (needs hwprune)."""
    pkg = Path(package_dir) if package_dir is not None else Path(__file__).resolve().parent
    spec = AcceleratorSpec.load(pkg)
    if sim:
        try:
            from hwprune.backend.pynq_sim import SimulatedOverlay
        except ImportError:
            raise DriverError("--sim runs the project's C simulation and needs hwprune on this machine; "
                              "on the board, run without --sim") from None
        prj = project if project is not None else spec.extra.get("project_dir")
        if not prj:
            raise DriverError("no project directory for the simulation: pass --project DIR")
        ov = SimulatedOverlay(spec, prj)
        return Accelerator(spec, ov.ip, ov.dma, ov.allocate, ov.clocks, timeout_s, max_batch), ov
    if _pynq is None:
        raise DriverError("pynq is not installed here: run on the board's PYNQ image, or pass --sim on a host with hwprune")
    ov = HwpruneOverlay(pkg, timeout_s=timeout_s, max_batch=max_batch)  # pragma: no cover - board only
    return ov.accelerator, ov  # pragma: no cover


# ---------------------------------------------------------------- text inputs

TEXT_FILE = "text.json"
TEXT_FORMAT = "hwprune-text/1"


class TextEncoder:
    """Raw text, or token ids of the original model's vocabulary, -> token ids of the design
    (text.json in the package: the tokenizer, the design's vocabulary in id order and the remap
    from the original vocabulary). A design whose vocabulary was cut by the pruner keeps only
    its most frequent tokens; every other token reads <unk>."""

    def __init__(self, d: dict[str, Any]) -> None:
        import re

        if d.get("format") != TEXT_FORMAT:
            raise DriverError(f"not an hwprune text description (format {d.get('format')!r}, expected {TEXT_FORMAT!r})")
        self.tokens: list[str] = list(d["tokens"])
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self.pattern = re.compile(d["tokenizer"]["pattern"])
        self.lowercase = bool(d["tokenizer"].get("lowercase", True))
        self.seq_len = int(d["seq_len"])
        self.pad_id, self.unk_id = int(d["pad_id"]), int(d["unk_id"])
        self.remap = np.asarray(d["remap"], dtype=np.int64) if d.get("remap") is not None else None
        self.classes: list[str] = list(d.get("classes") or [])

    @classmethod
    def load(cls, package_dir: str | Path) -> "TextEncoder | None":
        """The package's encoder, or None when the design does not read text."""
        p = Path(package_dir) / TEXT_FILE
        if not p.is_file():
            return None
        try:
            return cls(json.loads(p.read_text()))
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise DriverError(f"{p} is not a valid text description ({type(e).__name__}: {e})") from None

    @property
    def original_vocab_size(self) -> int:
        return int(self.remap.size) if self.remap is not None else len(self.tokens)

    def tokenize(self, text: str) -> list[str]:
        return self.pattern.findall(text.lower() if self.lowercase else text)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(N, seq_len) int64 design ids: tokens truncated or padded with <pad>."""
        if isinstance(texts, str):
            texts = [texts]
        out = np.full((len(texts), self.seq_len), self.pad_id, dtype=np.int64)
        for r, text in enumerate(texts):
            ids = [self.index.get(t, self.unk_id) for t in self.tokenize(str(text))][: self.seq_len]
            out[r, : len(ids)] = ids
        return out

    def from_original(self, ids: Any) -> np.ndarray:
        """Ids of the original model's vocabulary (its vocab.json) -> the design's ids."""
        x = np.asarray(ids)
        if x.dtype.kind not in "iu":
            raise InputError(f"original token ids must be integers, got {x.dtype}")
        if self.remap is None:
            return x.astype(np.int64)
        if x.size and (x.min() < 0 or x.max() >= self.remap.size):
            raise InputError(f"original token ids must lie in [0, {self.remap.size}) (the original vocabulary); "
                             f"got [{x.min()}, {x.max()}]")
        return self.remap[x.astype(np.int64)]

    def label(self, index: int) -> str:
        return self.classes[index] if 0 <= index < len(self.classes) else str(index)


def read_texts(path: str) -> list[str]:
    """One text per line of a UTF-8 file ('-': standard input); empty lines are skipped."""
    if path == "-":
        lines = sys.stdin.read().splitlines()
    else:
        p = Path(path)
        if not p.is_file():
            raise InputError(f"--text file {p} does not exist")
        lines = p.read_text(encoding="utf-8").splitlines()
    texts = [t for t in (l.strip() for l in lines) if t]
    if not texts:
        raise InputError(f"--text {path}: no text (one per line)")
    return texts


# ---------------------------------------------------------------- helpers of validate.py / throughput.py

def add_common_args(ap: Any) -> None:
    ap.add_argument("--sim", action="store_true",
                    help="host only: run on the simulated overlay (the project's C simulation; needs hwprune)")
    ap.add_argument("--project", help="with --sim: the hwprune project (default: the one the package was made from)")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a DMA transfer (default 10)")
    ap.add_argument("--max-batch", type=int, default=None,
                    help=f"samples per DMA transfer (default {DEFAULT_MAX_BATCH}, capped by the DMA length register)")
    ap.add_argument("-v", "--verbose", action="store_true", help="log the clock setting and transfers")


def load_npy(path: str, what: str) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} file {p} does not exist")
    try:
        return np.load(p, allow_pickle=False)
    except Exception:
        raise InputError(f"{what} file {p} is not a .npy array (save it with numpy.save)") from None


def cli_main(prog: str, main: Callable[[], int]) -> int:
    """Run a package script: bad input or a failing accelerator is one line on stderr, exit 2."""
    try:
        return main()
    except (DriverError, OSError) as e:
        print(f"{prog}: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    except Exception as e:
        errors = sys.modules.get("hwprune.errors")  # loaded only under --sim, on the host
        if errors is not None and isinstance(e, errors.HwpruneInputError):
            print(f"{prog}: error: {str(e).splitlines()[0]}", file=sys.stderr)
            return 2
        raise
