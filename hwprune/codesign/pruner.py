"""The budget-driven pruner: "give me a board and a budget; get the most accurate model that
fits, and know its latency and resources before you synthesize".

1. Measure every site's options (hwprune.codesign.space): cost from the layer cost models,
   predicted loss from one-shot sensitivity.
2. Solve for the least-loss choice within the budgets (hwprune.codesign.solver).
3. Realize the choice quickly (one-shot masks, calibrated quantization, no training), compile
   it and check it with the simulator; re-solve while the check fails or leaves much latency
   unused. The solver, the estimate and the simulator's io_parallel path compose latency by
   one rule (sim/compose.py), so in io_parallel the check's latency is the prediction and
   needs no calibration; in io_stream the simulated DATAFLOW processes overlap and stall,
   which the longest path does not model, so there the latency limit is calibrated by the
   measured/predicted ratio.
4. Fine-tune the chosen design (pruning schedule, distillation, QAT), verify it again, write
   the output directory: the pruned quantized model (QONNX), the HLS project, report.json.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from hwprune.codesign.budget import RESOURCES, Budget, BudgetError
from hwprune.codesign.solver import Limits, Solution, predict, solve
from hwprune.codesign.space import Choice, DesignSpace, SpaceConfig, build_space, vocab_remap
from hwprune.errors import ConfigError
from hwprune.prune.metrics import compute_layers

log = logging.getLogger(__name__)

# Re-solve when the verified latency uses less than this share of the budget.
SLACK = 0.85
MAX_ROUNDS = 5


@dataclass
class BudgetConfig:
    board: str = "pynq-z2"
    budget: Budget = field(default_factory=Budget)
    bits: str = "8"  # "auto" (weights 4/6/8 per layer, activations 8) or a number for both
    io_type: str = "stream"
    clock_mhz: float | None = None
    finetune_epochs: int = 3
    qat_epochs: int = 1
    distill_alpha: float = 0.5
    seed: int = 0
    patterns: tuple[str, ...] | None = None  # None: the space's defaults
    sparsities: tuple[float, ...] | None = None
    batch: int = 16  # samples in the verifying simulation

    def space_config(self) -> SpaceConfig:
        if self.bits == "auto":
            wbits, abits = (4, 6, 8), 8
        else:
            try:
                b = int(self.bits)
            except ValueError:
                raise ConfigError(f"--bits {self.bits!r} is not 'auto' or a whole number") from None
            if not 2 <= b <= 16:
                raise ConfigError(f"--bits {b} must be between 2 and 16")
            wbits, abits = (b,), b
        sc = SpaceConfig(weight_bits=wbits, act_bits=abits, io_type=self.io_type)
        if self.patterns is not None:
            sc = replace(sc, patterns=tuple(self.patterns))
        if self.sparsities is not None:
            sc = replace(sc, sparsities=tuple(self.sparsities))
        return sc


@dataclass
class Realized:
    """A chosen design built as a model: its QONNX, IR and the verified figures."""

    solution: Solution
    proto: Any
    graph: Any
    precision: Any
    figures: dict[str, float]  # latency_cycles, interval_cycles (simulated), resources (estimated)
    violations: list[tuple[str, float, float]]
    x: np.ndarray  # token ids in this design's vocabulary
    quantized: Any = None
    float_model: Any = None


def _figures(g: Any, board: Any, clock: float, batch: int) -> dict[str, float]:
    """Resources from the estimate; latency and interval from the cycle-approximate simulation
    (the dataflow simulation in io_stream; in io_parallel the layer models composed by the rule
    the solver predicts with, sim/compose.py)."""
    from hwprune.sim.dataflow import simulate
    from hwprune.sim.estimate import estimate

    est = estimate(g, board, clock)
    out: dict[str, Any] = {k: float(v) for k, v in est.resources.as_dict().items()}
    sim = simulate(g, board, batch=batch, clock_mhz=clock)
    out["latency_cycles"], out["interval_cycles"] = float(sim.latency_cycles), float(sim.interval_cycles)
    out["source"] = "simulation"
    return out


class _Run:
    def __init__(self, md: Any, cfg: BudgetConfig, say: Callable[[str], None]) -> None:
        from hwprune.board import load_board
        from hwprune.prune.recipe import Recipe, TaskData

        self.md, self.cfg, self.say = md, cfg, say
        self.board = load_board(cfg.board)
        self.clock = cfg.clock_mhz or self.board.default_clock_mhz
        cfg.budget.check(self.board, self.clock)
        x, y = md.encoded()
        self.texts = md.data.load().texts
        self.data = TaskData(x, y, md.splits["train"], md.splits["val"], md.splits["test"], md.cfg.seq_len, md.cfg.batch_size)
        self.recipe = Recipe(cfg.finetune_epochs, cfg.qat_epochs, cfg.distill_alpha, seed=cfg.seed)

    # ---------------------------------------------------------------- realization
    def realize(self, sol: Solution, space: DesignSpace, train: bool) -> Realized:
        """Build the model a solution describes; with `train`, the full recipe, else one-shot."""
        from hwprune.pipeline import compile_graph
        from hwprune.precision import LayerPrecision, PrecisionConfig
        from hwprune.prune.recipe import Recipe, prune_finetune, quantize_finetune
        from hwprune.prune.vocab import prune_vocabulary
        from hwprune.quantize.qat import QuantConfig

        model = copy.deepcopy(self.md.model)
        data = copy.copy(self.data)
        choices = {site.module: o.choice for site, o in zip(space.sites, sol.options)}
        teacher = self.md.model
        for site in space.sites:
            ch = choices[site.module]
            if site.kind == "embedding" and ch.vocab is not None and ch.vocab < model.embedding.num_embeddings:
                remap, rows = vocab_remap(self.md.vocab, [self.texts[i] for i in data.train], ch.vocab)
                model.embedding, _ = prune_vocabulary(model.embedding, self.md.vocab,
                                                      [self.texts[i] for i in data.train], ch.vocab)
                data.x = remap[self.data.x]
                # The teacher keeps the whole vocabulary: it reads the student's ids mapped back.
                teacher = _RemappedTeacher(self.md.model, rows)
        spec = {m: (c.pattern, c.sparsity) for m, c in choices.items() if c.pattern != "dense" and c.sparsity > 0}
        recipe = self.recipe if train else Recipe(0, 0, self.recipe.distill_alpha, seed=self.recipe.seed)
        student = prune_finetune(model, data, spec, recipe, teacher if train else None, self.say) if spec else model
        if train and not spec:
            from hwprune.prune.recipe import fit_epochs

            fit_epochs(student, data, recipe, recipe.finetune_epochs, teacher, self.say)
        layers = {m: (c.weight_bits, None) for m, c in choices.items() if m not in ("embedding",)}
        emb_bits = choices.get("embedding", Choice()).weight_bits
        quant = QuantConfig(weight_bits=emb_bits, act_bits=int(self.cfg.space_config().act_bits), layers=layers)
        q, proto = quantize_finetune(student, data, quant, recipe, teacher if train else None, self.say)
        g0 = compile_graph(proto, None, self.cfg.io_type)
        names = [l.name for l in compute_layers(g0)]
        picks = [choices[s.module] for s in space.sites if s.kind != "embedding"]
        if len(names) != len(picks):
            raise ConfigError(f"the realized model has {len(names)} compute layers, the design space {len(picks)}")
        prec = PrecisionConfig(layer_name={n: LayerPrecision(reuse_factor=c.reuse_factor, mult_impl=c.mult_impl)
                                           for n, c in zip(names, picks)})
        g = compile_graph(proto, prec, self.cfg.io_type)
        figs = _figures(g, self.board, self.clock, self.cfg.batch)
        res = {k: int(round(figs[k])) for k in RESOURCES}
        viol = self.cfg.budget.violations(self.board, self.clock, int(figs["latency_cycles"]), int(figs["interval_cycles"]), res)
        return Realized(sol, proto, g, prec, figs, viol, data.x, q, student)

    # ---------------------------------------------------------------- search
    def search(self, space: DesignSpace) -> Realized:
        """Solve, check the quick realization, calibrate, repeat; the best design that passes."""
        budget = self.cfg.budget
        limits = Limits.from_budget(budget, space)
        best: Realized | None = None
        tried: set[tuple] = set()
        for round_ in range(1, MAX_ROUNDS + 1):
            sol = solve(space, budget, limits, seed=self.cfg.seed)
            key = tuple(o.choice for o in sol.options)
            if key in tried:
                break
            tried.add(key)
            r = self.realize(sol, space, train=False)
            pred = sol.predicted
            self.say(f"round {round_}: predicted latency {pred['latency_cycles']:.0f} cycles, loss +{sol.predicted_loss:.4f}; "
                     f"checked ({r.figures['source']}): latency {r.figures['latency_cycles']:.0f}, interval "
                     f"{r.figures['interval_cycles']:.0f}, LUT {r.figures['lut']:.0f}, BRAM18 {r.figures['bram18']:.0f}"
                     + (f"; over: {', '.join(f'{k} {v:.0f} > {lim:.0f}' for k, v, lim in r.violations)}" if r.violations else ""))
            if not r.violations and (best is None or sol.predicted_loss < best.solution.predicted_loss):
                best = r
            limits = self._recalibrate(limits, sol, r, budget, space)
            if limits is None:
                break
        if best is None:
            worst = r.violations[0]
            raise BudgetError(f"no checked design met the budget after {len(tried)} rounds; closest: {worst[0]} "
                              f"{worst[1]:.0f} > {worst[2]:.0f} (relax that budget)")
        return best

    def _recalibrate(self, limits: Limits, sol: Solution, r: Realized, budget: Budget, space: DesignSpace) -> Limits | None:
        """Tighten limits the check broke by the measured overshoot; in io_stream, scale the
        latency limit by the simulated/predicted ratio (and loosen it when the check used far
        less than the budget). None: nothing left to adjust."""
        lat_budget = budget.latency_limit(self.clock)
        new = Limits(limits.latency, limits.interval, dict(limits.caps))
        changed = False
        # io_stream only: the simulator's latency differs from the longest path legitimately
        # (overlapping processes, FIFO stalls); io_parallel's check is the prediction.
        stream = self.cfg.io_type == "stream"
        pred, got = sol.predicted, r.figures
        for k, value, lim in r.violations:
            if k in RESOURCES:
                # The check exceeded the budget by (value - lim): the prediction must stay that far,
                # plus what it under-predicted, below the limit.
                under = max(value - pred[k], 0.0)
                new.caps[k] = min(limits.caps[k] - (value - lim), lim - under) - 1
                changed = True
            elif k == "latency_cycles" and limits.latency is not None:
                if stream:
                    ratio = got["latency_cycles"] / max(pred["latency_cycles"], 1)
                    new.latency = int(lat_budget / max(ratio, 1e-6) * 0.98)
                else:  # the same rule: only the realized layers' costs can differ; tighten by the overshoot
                    new.latency = int(limits.latency - (value - lim) - 1)
                changed = True
            elif k == "interval_cycles" and limits.interval is not None:
                new.interval = int(limits.interval - (value - lim) - 1)
                changed = True
        if stream and not r.violations and lat_budget is not None and got["latency_cycles"] < SLACK * lat_budget:
            ratio = got["latency_cycles"] / max(pred["latency_cycles"], 1)
            loosened = int(lat_budget / max(ratio, 1e-6) * 0.98)
            if loosened > (limits.latency or 0) * 1.05:
                new.latency = loosened
                changed = True
        return new if changed else None


class _RemappedTeacher(torch.nn.Module):
    """The dense teacher (full vocabulary) reading the student's ids of a smaller vocabulary:
    every new id maps back to its token's old id (<pad> and <unk> to theirs)."""

    def __init__(self, teacher: torch.nn.Module, rows: np.ndarray) -> None:
        super().__init__()
        self.teacher = teacher
        self.register_buffer("back", torch.from_numpy(np.asarray(rows, dtype=np.int64)))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.teacher(self.back[ids])


@dataclass
class BudgetResult:
    out: Path
    report: dict[str, Any]


def prune_to_budget(md: Any, cfg: BudgetConfig, out: str | Path, force: bool = False,
                    say: Callable[[str], None] = log.info) -> BudgetResult:
    """The whole flow; writes `out` atomically (nothing is left behind on failure)."""
    import hwprune
    import onnx

    from hwprune.fsutil import atomic_directory, check_out_dir
    from hwprune.prune.recipe import fixed_accuracy, torch_accuracy

    out = Path(out)
    check_out_dir(out, force)  # before hours of work, not after
    t0 = time.perf_counter()
    run = _Run(md, cfg, say)
    say(f"budget on {run.board.name} @ {run.clock:g} MHz: " + ", ".join(f"{k}={v}" for k, v in cfg.budget.as_dict().items()
                                                                      if v is not None and v != 1.0))
    space = build_space(md.model, md.vocab, run.texts, run.data, run.board, run.clock, cfg.space_config(), say)
    quick = run.search(space)
    say("fine-tuning the chosen design: " + "; ".join(f"{s.module}: {o.choice.label()}"
                                                      for s, o in zip(space.sites, quick.solution.options)))
    final = run.realize(quick.solution, space, train=True)
    if final.violations:
        k, v, lim = final.violations[0]
        raise BudgetError(f"the fine-tuned design misses the budget: {k} {v:.0f} > {lim:.0f} (the quick check passed; "
                          "relax that budget slightly)")
    data = copy.copy(run.data)
    data.x = final.x
    acc_before = torch_accuracy(md.model, run.data, run.data.test)
    acc_after = fixed_accuracy(final.graph, data, data.test)
    say(f"accuracy: dense float {100 * acc_before:.1f}% -> pruned fixed point {100 * acc_after:.1f}% (test set)")
    with atomic_directory(out, force) as tmp:
        onnx.save(final.proto, str(tmp / "model.onnx"))
        prj = hwprune.export(final.proto, tmp / "project", board=run.board, io_type=cfg.io_type,
                             precision=final.precision, clock_mhz=run.clock,
                             sample_inputs=[final.x[data.test[:8]]])
        report = _report(md, cfg, run, space, final, acc_before, acc_after, time.perf_counter() - t0)
        (tmp / "report.json").write_text(json.dumps(report, indent=2))
    say(f"wrote {out} ({time.perf_counter() - t0:.0f} s)")
    return BudgetResult(out, report)


def _report(md: Any, cfg: BudgetConfig, run: _Run, space: DesignSpace, r: Realized, acc_before: float,
            acc_after: float, seconds: float) -> dict[str, Any]:
    from hwprune.prune.metrics import model_metrics
    from hwprune.sim.estimate import estimate

    est = estimate(r.graph, run.board, run.clock)
    m = model_metrics(r.graph, est)
    names = [l.name for l in compute_layers(r.graph)]
    layers = []
    costs = {le.name: le.cost for le in est.layers}
    compute_iter = iter(names)
    for site, o in zip(space.sites, r.solution.options):
        ir = next(compute_iter) if site.kind != "embedding" else next(l.name for l in r.graph.layers if l.op_type == "Embedding")
        c = costs[ir]
        layers.append(dict(module=site.module, layer=ir, kind=site.kind, pattern=o.choice.pattern,
                           sparsity=o.choice.sparsity, weight_bits=o.choice.weight_bits,
                           reuse_factor=o.choice.reuse_factor, mult_impl=o.choice.mult_impl, vocab=o.choice.vocab,
                           predicted_loss=o.loss,
                           latency_cycles=c.latency, ii_cycles=c.ii, dsp=c.dsp, lut=c.lut, bram18=c.bram18,
                           macs=c.macs - c.macs_skipped))
    f = r.figures
    return dict(
        board=run.board.name, clock_mhz=run.clock, io_type=cfg.io_type, budget=cfg.budget.as_dict(),
        bits=cfg.bits, seed=cfg.seed, seconds=seconds,
        accuracy_before=acc_before, accuracy_after=acc_after,
        latency_cycles=f["latency_cycles"], latency_us=f["latency_cycles"] / run.clock,
        interval_cycles=f["interval_cycles"], throughput_per_s=run.clock * 1e6 / max(f["interval_cycles"], 1),
        timing_source=f["source"], resources={k: int(round(f[k])) for k in RESOURCES},
        utilization={k: f[k] / max(v, 1) for k, v in run.board.resources.as_dict().items()},
        meets_budget=not r.violations, predicted_loss=r.solution.predicted_loss,
        metrics=m.as_dict(), layers=layers,
    )
