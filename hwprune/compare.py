"""`hwprune compare`: prune, fine-tune and quantize a trained model (any hwprune.task.Task) with
several patterns and levels, and tabulate what each buys on a board — the table a user reads to
choose a pattern.

Rows, in order: the dense float model, the dense fixed-point model (QAT with power-of-two
scales), then one row per pattern and sparsity: pruned during fine-tuning (cubic schedule,
distillation from the dense model), quantization-aware trained with the zeros held, exported
to QONNX and imported. Accuracy of fixed-point rows comes from the bit-exact fixed-point
engine (the C simulation computes the same bits), never from the float model.

Hardware is compared at an equal multiplier budget: the dense fixed-point design takes the
smallest uniform reuse factor whose multipliers fit the board's DSPs and LUTs; every other row
gives each compute layer the smallest reuse factor that uses no more multipliers than that
layer had in the dense design. Cycles then show what the pattern really saves.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from hwprune.errors import ConfigError
from hwprune.prune.metrics import compute_layers
from hwprune.prune.patterns import Pattern, check_sparsity

log = logging.getLogger(__name__)

REUSE_FACTORS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)
FLOAT_RESULT = "ap_fixed<16,6>"  # the hardware the float row is estimated with


@dataclass
class CompareConfig:
    board: str = "pynq-z2"
    patterns: list[str] = field(default_factory=lambda: ["unstructured", "filter", "block:4x4", "block:4x4:col",
                                                         "nm:2:4", "bbs:8"])
    sparsities: list[float] = field(default_factory=lambda: [0.5, 0.75, 0.9])
    bits: int = 8
    finetune_epochs: int = 3
    qat_epochs: int = 1
    distill_alpha: float = 0.5
    importance: str = "magnitude"
    rewind: bool = False
    io_type: str = "stream"
    lr: float = 1e-3
    seed: int = 0
    # Evaluate on at most this many test samples (None: all); for quick runs and tests.
    max_eval: int | None = None
    # Keep only the N most frequent training ids in the table of an Embedding reading the input
    # (a text model's vocabulary) for the fixed-point rows (None: the whole table): it decides
    # whether the table fits in on-chip memory.
    vocab: int | None = None
    # "auto" (QAT where Brevitas can wrap the model, else post-training), "qat" or "ptq"
    # (hwprune.quantize.ptq: weights rounded per layer, activations at the result type).
    quantization: str = "auto"

    def __post_init__(self) -> None:
        for p in self.patterns:
            Pattern.parse(p)  # a clear error for a bad pattern before any training
        self.sparsities = [check_sparsity(s) for s in self.sparsities]
        if self.vocab is not None and self.vocab < 3:
            raise ConfigError(f"--vocab {self.vocab} must keep at least three rows")
        if not 2 <= self.bits <= 16:
            raise ConfigError(f"--bits {self.bits} must be between 2 and 16")
        for name in ("finetune_epochs", "qat_epochs"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name.replace('_', '-')} must be >= 0")

    def rows(self) -> list[tuple[str, float]]:
        """(pattern, sparsity) of every pruned row; a pattern with a fixed sparsity (N:M) once."""
        out: list[tuple[str, float]] = []
        for p in self.patterns:
            fixed = Pattern.parse(p).fixed_sparsity()
            for s in ([fixed] if fixed is not None else self.sparsities):
                if (p, s) not in out:
                    out.append((p, s))
        return out


@dataclass
class CompareRow:
    pattern: str
    sparsity: float
    bits: int
    accuracy: float
    params: int
    memory_bits: int
    macs: int
    latency_cycles: int
    dsp: int
    lut: int
    bram18: int
    # Beyond the table's columns:
    nominal_sparsity: float = 0.0
    nominal_macs: int = 0
    index_bits: int = 0
    compression: float = 1.0
    latency_us: float = 0.0
    ii_cycles: int = 0
    ff: int = 0
    uram: int = 0
    multipliers: int = 0
    fits: bool = False
    reuse_factors: dict[str, int] = field(default_factory=dict)
    torch_accuracy: float | None = None  # the quantized torch model's own accuracy (cross-check)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Study:
    """State shared by the rows: data, the dense teacher, the multiplier budget."""

    def __init__(self, task: Any, cfg: CompareConfig, say: Callable[[str], None]) -> None:
        from hwprune.board import load_board
        from hwprune.prune.recipe import Recipe

        self.task, self.cfg, self.say = task, cfg, say
        self.board = load_board(cfg.board)
        self.data = copy.copy(task.data())
        if cfg.max_eval is not None:
            self.data.test = self.data.test[: cfg.max_eval]
        self.recipe = Recipe(cfg.finetune_epochs, cfg.qat_epochs, cfg.distill_alpha, cfg.importance, cfg.rewind,
                             cfg.lr, cfg.seed)
        self.example = self.data.example()
        self.float_model = task.model.eval()
        from hwprune.quantize.ptq import choose_quantization

        self.quantization, why = choose_quantization(cfg.quantization, self.float_model, self.example)
        if why:
            say(f"quantization: post-training fixed point (QAT cannot wrap the model: {why})")
        self.float_x = self.data.x
        self.model = self.float_model  # the starting point of every row (after cutting an embedding's rows)
        self.budget: list[int] | None = None  # multipliers per compute layer of the dense design
        self.dense_float_bits: int | None = None
        if cfg.vocab is not None:
            self.model, self.data.x = self._fewer_rows(cfg.vocab)
        # The teacher reads the same ids as the students, so it has their table.
        self.teacher = self.model

    def _fewer_rows(self, keep: int) -> tuple[torch.nn.Module, np.ndarray]:
        from hwprune.prune.rows import cut_rows, frequent_rows, input_embeddings
        from hwprune.quantize.qat import _set_module

        tables = input_embeddings(self.float_model)
        if not tables or self.data.unknown_id is None:
            raise ConfigError("--vocab cuts the table of an Embedding that reads the model input (a text model); "
                              "this model has none, or its task names no unknown id for the dropped ones")
        model = copy.deepcopy(self.float_model)
        emb = model.get_submodule(tables[0])
        if keep >= emb.num_embeddings:
            return self.float_model, self.data.x
        remap, rows = frequent_rows(self.data.x[self.data.train], emb.num_embeddings, keep, self.data.keep_ids,
                                    self.data.unknown_id)
        _set_module(model, tables[0], cut_rows(emb, rows))
        x = remap[self.data.x]
        self.say(f"table rows of {tables[0]}: {emb.num_embeddings} -> {len(rows)} "
                 f"(float test accuracy {100 * self.torch_accuracy(self.float_model, self.float_x):.1f}% -> "
                 f"{100 * self.torch_accuracy(model, x):.1f}%)")
        return model.eval(), x

    # -------------------------------------------------------------- training
    def prune(self, pattern: str, sparsity: float) -> torch.nn.Module:
        """A pruned, fine-tuned float copy of the dense model."""
        from hwprune.prune.recipe import prune_finetune

        return prune_finetune(self.model, self.data, (pattern, sparsity), self.recipe, self.teacher, self.say,
                              self.task.rewind_state)

    def quantize(self, model: torch.nn.Module) -> tuple[Any, Any]:
        """QAT copy of a float model with its zeros held, and its QONNX proto."""
        from hwprune.prune.recipe import quantize_finetune
        from hwprune.quantize.qat import QuantConfig

        return quantize_finetune(model, self.data, QuantConfig(weight_bits=self.cfg.bits, act_bits=self.cfg.bits),
                                 self.recipe, self.teacher, self.say, mode=self.quantization)

    # -------------------------------------------------------------- hardware
    def compile(self, proto: Any, result: str | None = None, reuse: dict[str, int] | None = None, uniform: int = 1) -> Any:
        from hwprune.fixed import FixedType
        from hwprune.pipeline import compile_graph
        from hwprune.precision import LayerPrecision, PrecisionConfig

        prec = PrecisionConfig().with_overrides(result=FixedType.parse(result) if result else None, reuse_factor=uniform)
        if reuse:
            prec = PrecisionConfig(prec.model, {}, {k: LayerPrecision(reuse_factor=v) for k, v in reuse.items()})
        return compile_graph(proto, prec, self.cfg.io_type)

    def estimate(self, g: Any) -> Any:
        from hwprune.sim.estimate import estimate

        return estimate(g, self.board)

    def set_budget(self, proto: Any) -> int:
        """The dense fixed-point design's uniform reuse factor: the smallest whose DSPs and LUTs
        fit the board; its per-layer multipliers become every row's budget."""
        cap = self.board.resources
        for rf in REUSE_FACTORS:
            est = self.estimate(self.compile(proto, uniform=rf))
            if est.resources.dsp <= cap.dsp and est.resources.lut <= cap.lut:
                break
        else:
            log.warning("the dense design's DSPs/LUTs exceed %s at every reuse factor up to %d; using %d",
                        self.board.name, rf, rf)
        g = self.compile(proto, uniform=rf)
        costs = {le.name: le.cost for le in self.estimate(g).layers}
        self.budget = [max(costs[l.name].multipliers, 1) for l in compute_layers(g)]
        self.say(f"  multiplier budget: reuse factor {rf} on the dense design -> {sum(self.budget)} multipliers")
        return rf

    def matched_reuse(self, proto: Any, result: str | None = None) -> dict[str, int]:
        """Per compute layer, the smallest reuse factor within that layer's multiplier budget."""
        assert self.budget is not None
        g1 = self.compile(proto, result)
        layers = compute_layers(g1)
        if len(layers) != len(self.budget):
            raise ConfigError(f"the pruned model has {len(layers)} compute layers, the dense one {len(self.budget)}")
        work = {le.name: le.cost.multipliers for le in self.estimate(g1).layers}
        return {l.name: max(1, math.ceil(work[l.name] / b)) for l, b in zip(layers, self.budget)}

    def row(self, pattern: str, sparsity: float, bits: int, proto: Any, accuracy_of: Callable[[Any], float],
            float_model: torch.nn.Module, result: str | None = None, torch_acc: float | None = None,
            t0: float = 0.0) -> CompareRow:
        from hwprune.prune.metrics import model_metrics

        reuse = self.matched_reuse(proto, result)
        g = self.compile(proto, result, reuse)
        est = self.estimate(g)
        m = model_metrics(g, est)
        acc = accuracy_of(g)
        if self.dense_float_bits is None:
            self.dense_float_bits = 32 * m.dense_params
        # Parameters the pruning kept: non-zeros of the float model before quantization (values
        # that round to zero at low precision are still parameters the hardware stores).
        params = int(sum(int(torch.count_nonzero(p)) for p in float_model.parameters()))
        return CompareRow(pattern, sparsity, bits, acc, params, m.memory_bits, m.macs, m.latency_cycles, m.dsp,
                          m.lut, m.bram18, nominal_sparsity=m.nominal_sparsity, nominal_macs=m.nominal_macs,
                          index_bits=m.index_bits, compression=self.dense_float_bits / max(m.memory_bits, 1),
                          latency_us=m.latency_us, ii_cycles=m.ii_cycles, ff=m.ff, uram=m.uram,
                          multipliers=m.multipliers, fits=m.fits, reuse_factors=reuse, torch_accuracy=torch_acc,
                          seconds=time.perf_counter() - t0)

    def fixed_accuracy(self, g: Any) -> float:
        from hwprune.prune.recipe import fixed_metric

        return fixed_metric(g, self.data, self.data.test)

    def torch_accuracy(self, model: torch.nn.Module, x: np.ndarray | None = None) -> float:
        from hwprune.prune.recipe import torch_metric

        return torch_metric(model, self.data, self.data.test, x)


def compare(task: Any, cfg: CompareConfig, progress: Callable[[str], None] | None = None) -> list[CompareRow]:
    """Run the study on a task (hwprune.task.Task, or a TaskSource to load)."""
    from hwprune.frontend.torch_export import export_torch
    from hwprune.task import TaskSource

    say = progress or (lambda m: log.info("%s", m))
    st = _Study(task.load() if isinstance(task, TaskSource) else task, cfg, say)
    rows: list[CompareRow] = []

    t0 = time.perf_counter()
    say("dense float")
    float_proto = export_torch(st.float_model, st.example)
    # The budget comes from the dense fixed-point design, so quantize first.
    qat = st.quantization == "qat"
    say(f"dense {cfg.bits}-bit: " + ("calibration and quantization-aware training" if qat else "post-training rounding"))
    q_dense, dense_proto = st.quantize(st.model)
    rf = st.set_budget(dense_proto)
    float_acc = st.torch_accuracy(st.float_model, st.float_x)
    rows.append(st.row("dense", 0.0, 32, float_proto, lambda g: float_acc, st.float_model, FLOAT_RESULT, float_acc, t0))
    say(f"  accuracy {100 * float_acc:.1f}%")
    rows.append(st.row("dense", 0.0, cfg.bits, dense_proto, st.fixed_accuracy, st.model,
                       torch_acc=st.torch_accuracy(q_dense) if q_dense is not None else None, t0=t0))
    say(f"  accuracy {100 * rows[-1].accuracy:.1f}% (uniform reuse factor {rf})")
    for pattern, s in cfg.rows():
        t0 = time.perf_counter()
        say(f"{pattern} at {100 * s:.0f}% sparsity: pruning during fine-tuning")
        student = st.prune(pattern, s)
        say(f"  {cfg.bits}-bit " + ("quantization-aware training" if qat else "post-training rounding"))
        q, proto = st.quantize(student)
        rows.append(st.row(pattern, s, cfg.bits, proto, st.fixed_accuracy, student,
                           torch_acc=st.torch_accuracy(q) if q is not None else None, t0=t0))
        r = rows[-1]
        say(f"  accuracy {100 * r.accuracy:.1f}%, {r.latency_cycles} cycles, {r.memory_bits / 8e3:.0f} kB "
            f"({time.perf_counter() - t0:.0f} s)")
    return rows


COLUMNS = [("pattern", "{}"), ("sparsity", "{:.0%}"), ("bits", "{}"), ("accuracy", "{:.1%}"), ("params", "{:,}"),
           ("memory_bits", "{:,}"), ("macs", "{:,}"), ("latency_cycles", "{:,}"), ("dsp", "{}"), ("lut", "{:,}"),
           ("bram18", "{}")]


def format_rows(rows: list[CompareRow], markdown: bool = False) -> str:
    """The table: one line per row (plain text, or a Markdown table)."""
    heads = [c for c, _ in COLUMNS] + ["speed-up"]
    base = next((r for r in rows if r.pattern == "dense" and r.bits != 32), rows[0])
    cells = [[fmt.format(getattr(r, c)) for c, fmt in COLUMNS] + [f"{base.latency_cycles / max(r.latency_cycles, 1):.2f}x"]
             for r in rows]
    for r, c in zip(rows, cells):
        if r.bits == 32:
            c[2] = "float"
    if markdown:
        lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
        lines += ["| " + " | ".join(c) + " |" for c in cells]
        return "\n".join(lines)
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(heads, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(c, widths)) for c in cells]
    return "\n".join(lines)
