"""Uniform baselines for the budget-driven pruner — what a user does with standard tools:
one pattern and sparsity for every layer but the classifier, one reuse factor for the whole
design raised until it fits the board, and (a model whose Embedding reads the input) the
table cut (most frequent ids first) until it fits the BRAM. Sparsity levels are tried from
the lowest up; the first design
that meets the budget (checked with the simulator) is fine-tuned and reported. When none does,
the row says so and gives the best latency reached.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from hwprune.codesign.budget import RESOURCES, Budget

log = logging.getLogger(__name__)

REUSE_FACTORS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
VOCAB_FRACTIONS = (1.0, 0.8, 0.6, 0.4, 0.25, 0.15)


@dataclass
class BaselineRow:
    name: str
    pattern: str
    sparsity: float
    feasible: bool
    accuracy: float | None = None
    latency_cycles: float | None = None
    latency_us: float | None = None
    interval_cycles: float | None = None
    resources: dict[str, int] = field(default_factory=dict)
    reuse_factor: int | None = None
    vocab: int | None = None
    note: str = ""


def _fits(figs: dict[str, float], budget: Budget, board: Any, clock: float) -> list[tuple[str, float, float]]:
    res = {k: int(round(figs[k])) for k in RESOURCES}
    return budget.violations(board, clock, int(figs["latency_cycles"]), int(figs["interval_cycles"]), res)


def uniform_baseline(task: Any, budget: Budget, pattern: str, sparsities: Sequence[float], name: str,
                     board_name: str = "pynq-z2", bits: int = 8, io_type: str = "stream", finetune_epochs: int = 3,
                     qat_epochs: int = 1, seed: int = 0, say: Callable[[str], None] = log.info) -> BaselineRow:
    """The uniform baseline on a task (hwprune.task.Task): for each sparsity from the lowest,
    for each table size (an Embedding reading the input, when the task names an unknown id),
    the smallest uniform reuse factor that fits the board; the first that meets the budget is
    fine-tuned and reported."""
    from hwprune.board import load_board
    from hwprune.codesign.pruner import _figures
    from hwprune.pipeline import compile_graph
    from hwprune.precision import PrecisionConfig
    from hwprune.prune.recipe import Recipe, fit_epochs, fixed_metric, prune_finetune, quantize_finetune
    from hwprune.prune.rows import RemappedTeacher, cut_rows, frequent_rows, input_embeddings
    from hwprune.quantize.qat import QuantConfig, _set_module

    board = load_board(board_name)
    clock = board.default_clock_mhz
    budget.check(board, clock)
    base = task.data()
    dense = task.model.eval()
    tables = input_embeddings(dense) if base.unknown_id is not None else []
    fractions = VOCAB_FRACTIONS if tables else (1.0,)
    quant = QuantConfig(weight_bits=bits, act_bits=bits)
    best_lat: float | None = None
    for s in sparsities:
        quick = Recipe(0, 0, seed=seed)
        for frac in fractions:
            model, data = copy.deepcopy(dense), copy.copy(base)
            rows_kept = model.get_submodule(tables[0]).num_embeddings if tables else None
            teacher: Any = dense
            if frac < 1.0:
                emb = model.get_submodule(tables[0])
                rows_kept = max(len(set(base.keep_ids) | {base.unknown_id}) + 1, int(round(emb.num_embeddings * frac)))
                remap, rows = frequent_rows(base.x[base.train], emb.num_embeddings, rows_kept, base.keep_ids,
                                            base.unknown_id)
                teacher = RemappedTeacher(dense, rows)
                _set_module(model, tables[0], cut_rows(emb, rows))
                data.x = remap[base.x]
            spec = (pattern, s) if s > 0 else None
            student = prune_finetune(model, data, spec, quick, None, say) if spec else model
            _, proto = quantize_finetune(student, data, quant, quick, None, say)
            found = None
            for rf in REUSE_FACTORS:
                g = compile_graph(proto, PrecisionConfig().with_overrides(reuse_factor=rf), io_type)
                figs = _figures(g, board, clock, 16)
                over = _fits(figs, budget, board, clock)
                if not any(k in RESOURCES for k, _, _ in over):  # the smallest RF that fits the board
                    found = (rf, figs, over)
                    break
            if found is None:
                continue  # does not fit at any reuse factor: cut the table further
            rf, figs, over = found
            best_lat = figs["latency_cycles"] if best_lat is None else min(best_lat, figs["latency_cycles"])
            what = f", rows {rows_kept}" if rows_kept is not None else ""
            if over:
                say(f"{name}: sparsity {s:g}{what}, RF {rf}: fits the board but misses "
                    + ", ".join(f"{k} {v:.0f} > {lim:.0f}" for k, v, lim in over))
                break  # a smaller table does not make it faster: try a higher sparsity
            say(f"{name}: sparsity {s:g}{what}, RF {rf} meets the budget; fine-tuning")
            full = Recipe(finetune_epochs, qat_epochs, seed=seed)
            if spec:
                student = prune_finetune(model, data, spec, full, teacher, say)
            else:  # dense: the float model (table cut) fine-tuned like the others
                student = copy.deepcopy(model)
                fit_epochs(student, data, full, finetune_epochs if frac < 1.0 else 0, teacher, say)
            _, proto = quantize_finetune(student, data, quant, full, teacher, say)
            g = compile_graph(proto, PrecisionConfig().with_overrides(reuse_factor=rf), io_type)
            figs = _figures(g, board, clock, 16)
            over = _fits(figs, budget, board, clock)
            acc = fixed_metric(g, data, data.test)
            return BaselineRow(name, pattern, s, not over, acc, figs["latency_cycles"], figs["latency_cycles"] / clock,
                               figs["interval_cycles"], {k: int(round(figs[k])) for k in RESOURCES}, rf, rows_kept,
                               "" if not over else "after fine-tuning: " + ", ".join(f"{k} {v:.0f} > {lim:.0f}" for k, v, lim in over))
    note = (f"no design meets the budget; best latency reached {best_lat / clock:.1f} us" if best_lat is not None
            else "does not fit the board at any reuse factor" + (" and table size" if tables else ""))
    return BaselineRow(name, pattern, sparsities[-1] if sparsities else 0.0, False, note=note)
