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
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from hwprune.codesign.budget import RESOURCES, Budget, BudgetError
from hwprune.codesign.solver import Limits, Solution, predict, solve
from hwprune.codesign.space import Choice, DesignSpace, SpaceConfig, build_space
from hwprune.errors import ConfigError
from hwprune.ir.graph import IOType
from hwprune.quantize.ptq import QUANTIZATIONS, choose_quantization  # noqa: F401 (QUANTIZATIONS: the pruner's API)

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
    # "qat" (Brevitas: calibrated, quantization-aware fine-tuning), "ptq" (post-training: weights
    # rounded per layer, activations at the precision's result type; for models Brevitas cannot
    # wrap, such as LayerNorm/GELU/attention) or "auto" (qat when Brevitas can wrap the model).
    quantization: str = "auto"

    def space_config(self) -> SpaceConfig:
        if self.quantization not in ("qat", "ptq"):
            raise ConfigError(f"quantization {self.quantization!r}: the space needs 'qat' or 'ptq' ('auto' is resolved "
                              "by choose_quantization when the run starts)")
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
        if self.quantization == "ptq":  # activations at the result type; --bits sets the weights
            from hwprune.precision import DEFAULT_RESULT

            abits = DEFAULT_RESULT.width
        sc = SpaceConfig(weight_bits=wbits, act_bits=abits, io_type=self.io_type, quantization=self.quantization)
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
    x: np.ndarray  # the task's inputs as this design reads them (ids mapped when an embedding's rows were cut)
    quantized: Any = None
    float_model: Any = None
    layer_of: dict[str, str] = field(default_factory=dict)  # torch module -> IR layer
    input_map: np.ndarray | None = None  # old id -> the design's id (rows cut), else None


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
    def __init__(self, task: Any, cfg: BudgetConfig, say: Callable[[str], None]) -> None:
        from hwprune.board import load_board
        from hwprune.prune.recipe import Recipe

        self.task, self.cfg, self.say = task, cfg, say
        self.model = task.model.eval()
        self.board = load_board(cfg.board)
        self.clock = cfg.clock_mhz or self.board.default_clock_mhz
        cfg.budget.check(self.board, self.clock)
        self.data = task.data()
        self.quantization, why = choose_quantization(cfg.quantization, self.model, self.data.example())
        if why:
            say(f"quantization: post-training fixed point (QAT cannot wrap the model: {why})")
        # The configuration as this run uses it: "auto" resolved.
        self.cfg = cfg = replace(cfg, quantization=self.quantization)
        self.recipe = Recipe(cfg.finetune_epochs, cfg.qat_epochs, cfg.distill_alpha, seed=cfg.seed)

    # ---------------------------------------------------------------- realization
    def realize(self, sol: Solution, space: DesignSpace, train: bool) -> Realized:
        """Build the model a solution describes; with `train`, the full recipe, else one-shot."""
        from hwprune.pipeline import compile_graph
        from hwprune.precision import LayerPrecision, PrecisionConfig
        from hwprune.prune.recipe import Recipe, prune_finetune, quantize_finetune
        from hwprune.prune.rows import RemappedTeacher, cut_rows, frequent_rows
        from hwprune.quantize.qat import QuantConfig, _set_module, module_map

        model = copy.deepcopy(self.model)
        data = copy.copy(self.data)
        choices = {site.module: o.choice for site, o in zip(space.sites, sol.options) if site.kind != "engine"}
        engines = {site.layer: o.choice for site, o in zip(space.sites, sol.options) if site.kind == "engine"}
        teacher = self.model
        input_map = None
        for site in space.sites:
            if site.kind == "engine":
                continue
            ch = choices[site.module]
            emb = model.get_submodule(site.module)
            if site.kind == "embedding" and ch.vocab is not None and ch.vocab < emb.num_embeddings:
                if input_map is not None:
                    raise ConfigError("only one embedding reading the model input can have its rows cut")
                input_map, rows = frequent_rows(self.data.x[self.data.train], emb.num_embeddings, ch.vocab,
                                                self.data.keep_ids, self.data.unknown_id)
                _set_module(model, site.module, cut_rows(emb, rows))
                data.x = input_map[self.data.x]
                # The teacher keeps the whole table: it reads the student's ids mapped back.
                teacher = RemappedTeacher(self.model, rows)
        spec = {m: (c.pattern, c.sparsity) for m, c in choices.items() if c.pattern != "dense" and c.sparsity > 0}
        recipe = self.recipe if train else Recipe(0, 0, self.recipe.distill_alpha, seed=self.recipe.seed)
        student = prune_finetune(model, data, spec, recipe, teacher if train else None, self.say) if spec else model
        if train and not spec and input_map is not None:
            # Nothing pruned but an embedding's rows cut: the float model adapts to the table
            # (as the uniform baselines do); an unchanged float model is not trained again.
            from hwprune.prune.recipe import fit_epochs

            fit_epochs(student, data, recipe, recipe.finetune_epochs, teacher, self.say)
        layers = {m: (c.weight_bits, None) for m, c in choices.items()}
        quant = QuantConfig(weight_bits=max(c.weight_bits for c in choices.values()),
                            act_bits=int(self.cfg.space_config().act_bits), layers=layers)
        q, proto = quantize_finetune(student, data, quant, recipe, teacher if train else None, self.say,
                                     mode=self.quantization)
        layer_of = {m: l for l, m in module_map(proto).items()}
        missing = [s.module for s in space.sites if s.kind != "engine" and s.module not in layer_of]
        if missing:
            raise ConfigError(f"the realized model has no exported layer for {', '.join(missing)}")
        prec = PrecisionConfig(layer_name={layer_of[s.module]: LayerPrecision(reuse_factor=choices[s.module].reuse_factor,
                                                                              mult_impl=choices[s.module].mult_impl,
                                                                              rom_impl=choices[s.module].rom_impl,
                                                                              output_stage=choices[s.module].output_stage)
                                           for s in space.sites if s.kind not in ("embedding", "engine")})
        for name, ch in engines.items():
            prec.layer_name[name] = LayerPrecision(reuse_factor=ch.reuse_factor, mult_impl=ch.mult_impl, rom_impl=ch.rom_impl,
                                                   output_stage=ch.output_stage)
        g = compile_graph(proto, prec, self.cfg.io_type)
        absent = sorted(set(engines) - {layer.name for layer in g.layers})
        if absent:
            raise ConfigError(f"the realized model has no layer {', '.join(absent)} (the engines of the cost graph)")
        layer_of.update({name: name for name in engines})  # an engine site is its own layer
        if g.io_type == IOType.STREAM:
            # FIFO depths for this design, then FIFOs out of block RAM while BRAM is over its
            # limit and the LUTs allow (the FIFOs are no site of the search: their depths follow
            # the chosen latencies).
            from hwprune.passes.fifo import bind_fifo_storage, set_fifo_depths

            set_fifo_depths(g, self.board)
            bound = bind_fifo_storage(g, self.board, self.cfg.budget.caps(self.board))
            if bound:
                self.say(f"  {len(bound)} FIFOs moved from block RAM to shift registers (BRAM18 over its limit)")
        figs = _figures(g, self.board, self.clock, self.cfg.batch)
        res = {k: int(round(figs[k])) for k in RESOURCES}
        viol = self.cfg.budget.violations(self.board, self.clock, int(figs["latency_cycles"]), int(figs["interval_cycles"]), res)
        return Realized(sol, proto, g, prec, figs, viol, data.x, q, student, layer_of, input_map)

    # ---------------------------------------------------------------- search
    def search(self, space: DesignSpace) -> Realized:
        """Solve, check the quick realization, calibrate, repeat; the best design that passes."""
        budget = self.cfg.budget
        limits = Limits.from_budget(budget, space, latency_scale=0.98 / max(space.latency_ratio, 1e-6))
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


@dataclass
class BudgetResult:
    out: Path
    report: dict[str, Any]


def design_space(task: Any, cfg: BudgetConfig, say: Callable[[str], None] = log.info) -> DesignSpace:
    """The design space of a task under a configuration (every site's options, costs and
    predicted losses). It does not depend on the budget, so a sweep builds it once
    (hwprune.codesign.explore) and hands it to every point."""
    run = _Run(_as_task(task), cfg, say)
    return build_space(run.model, run.data, run.board, run.clock, run.cfg.space_config(), say)


def prune_to_budget(task: Any, cfg: BudgetConfig, out: str | Path, force: bool = False,
                    say: Callable[[str], None] = log.info, space: DesignSpace | None = None) -> BudgetResult:
    """The whole flow on a task (hwprune.task.Task, or a TaskSource to load); writes `out` atomically (nothing is left behind on failure):
    model.onnx (QONNX), project/, report.json and, when an embedding's rows were cut,
    input_map.npy (old id -> the design's id, applied by the host)."""
    from hwprune.backend.project_dir import write_design
    from hwprune.fsutil import check_out_dir
    from hwprune.prune.recipe import fixed_metric, torch_metric

    out = Path(out)
    task = _as_task(task)
    inputs = [p for p in (getattr(task, "path", None), getattr(getattr(task, "data", None), "path", None)) if p]
    check_out_dir(out, force, inputs)  # before hours of work, not after
    t0 = time.perf_counter()
    run = _Run(task, cfg, say)
    say(f"budget on {run.board.name} @ {run.clock:g} MHz: " + ", ".join(f"{k}={v}" for k, v in cfg.budget.as_dict().items()
                                                                      if v is not None and v != 1.0))
    if space is None:
        space = build_space(run.model, run.data, run.board, run.clock, run.cfg.space_config(), say)
    elif space.board.name != run.board.name or space.clock_mhz != run.clock or space.io_type != cfg.io_type:
        raise ConfigError(f"the design space given was built for {space.board.name} @ {space.clock_mhz:g} MHz, "
                          f"{space.io_type}; this run is {run.board.name} @ {run.clock:g} MHz, {cfg.io_type}")
    quick = run.search(space)
    say("fine-tuning the chosen design: " + "; ".join(f"{s.module or s.layer}: {o.choice.label()}"
                                                      for s, o in zip(space.sites, quick.solution.options)))
    final = run.realize(quick.solution, space, train=True)
    if final.violations:
        k, v, lim = final.violations[0]
        raise BudgetError(f"the fine-tuned design misses the budget: {k} {v:.0f} > {lim:.0f} (the quick check passed; "
                          "relax that budget slightly)")
    data = copy.copy(run.data)
    data.x = final.x
    acc_before = torch_metric(run.model, run.data, run.data.test)
    acc_after = fixed_metric(final.graph, data, data.test)
    what = "accuracy" if run.data.metric is None else "metric"
    say(f"{what}: dense float {100 * acc_before:.1f}% -> pruned fixed point {100 * acc_after:.1f}% (test set)")
    reports: list[dict[str, Any]] = []

    def report() -> dict[str, Any]:
        reports.append(_report(task, cfg, run, space, final, acc_before, acc_after, time.perf_counter() - t0))
        return reports[-1]

    def finish(tmp: Path, rep: dict[str, Any]) -> None:
        from hwprune.report.design import finish_design  # fit verdict, dense baseline, report.html

        finish_design(tmp, rep, final.graph, run.board, run.clock, cfg, run.model, run.data.example(), acc_before, say)

    write_design(out, final.proto, run.board, cfg.io_type, final.precision, run.clock, report,
                 sample_inputs=[final.x[data.test[:8]]], force=force,
                 arrays={"input_map": final.input_map} if final.input_map is not None else None, finish=finish,
                 fifo_storage={t.name: t.fifo_impl for t in final.graph.tensors.values() if t.fifo_impl != "auto"})
    report_data = reports[-1]
    say(f"wrote {out} ({time.perf_counter() - t0:.0f} s)")
    return BudgetResult(out, report_data)


def _as_task(task: Any) -> Any:
    from hwprune.task import Task, TaskSource

    if isinstance(task, TaskSource):
        return task.load()
    if not isinstance(task, Task):
        raise ConfigError(f"expected a hwprune.task.Task (or TaskSource), got {type(task).__name__}")
    return task


def _report(task: Any, cfg: BudgetConfig, run: _Run, space: DesignSpace, r: Realized, acc_before: float,
            acc_after: float, seconds: float) -> dict[str, Any]:
    from hwprune.prune.metrics import model_metrics
    from hwprune.sim.estimate import estimate

    est = estimate(r.graph, run.board, run.clock)
    m = model_metrics(r.graph, est)
    layers = []
    costs = {le.name: le.cost for le in est.layers}
    for site, o in zip(space.sites, r.solution.options):
        ir = site.layer if site.kind == "engine" else r.layer_of[site.module]
        c = costs[ir]
        layers.append(dict(module=site.module or ir, layer=ir, kind=site.kind, pattern=o.choice.pattern,  # an engine: its layer
                           sparsity=o.choice.sparsity, weight_bits=o.choice.weight_bits,
                           reuse_factor=o.choice.reuse_factor, mult_impl=o.choice.mult_impl, rom_impl=o.choice.rom_impl,
                           output_stage=o.choice.output_stage,
                           vocab=o.choice.vocab,
                           predicted_loss=o.loss,
                           latency_cycles=c.latency, ii_cycles=c.ii, dsp=c.dsp, lut=c.lut, bram18=c.bram18,
                           macs=c.macs - c.macs_skipped))
    f = r.figures
    return dict(
        task=task.name, source=dict(task.source), board=run.board.name, clock_mhz=run.clock, io_type=cfg.io_type,
        budget=cfg.budget.as_dict(), bits=cfg.bits, seed=cfg.seed, seconds=seconds,
        metric="accuracy" if run.data.metric is None else getattr(run.data.metric, "__name__", "metric"),
        accuracy_before=acc_before, accuracy_after=acc_after,
        latency_cycles=f["latency_cycles"], latency_us=f["latency_cycles"] / run.clock,
        interval_cycles=f["interval_cycles"], throughput_per_s=run.clock * 1e6 / max(f["interval_cycles"], 1),
        timing_source=f["source"], resources={k: int(round(f[k])) for k in RESOURCES},
        utilization={k: f[k] / max(v, 1) for k, v in run.board.resources.as_dict().items()},
        meets_budget=not r.violations, predicted_loss=r.solution.predicted_loss,
        input_map="input_map.npy" if r.input_map is not None else None,
        metrics=m.as_dict(), layers=layers,
    )
