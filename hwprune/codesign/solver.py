"""Choose one option per site so the design meets every budget at the least predicted loss:
a multiple-choice knapsack with several capacities (DSP, LUT, FF, BRAM, URAM), a latency
limit (on the longest input-to-output path, the composition rule of sim/compose.py) and an
interval limit, solved exactly with OR-Tools CP-SAT.

When nothing fits, the report names the binding limit: a limit that no choice can meet even
alone (the cheapest option of every site still exceeds it), or else the one whose removal
makes the others feasible, with the best figure reachable for it under the others.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

from hwprune.codesign.budget import RESOURCES, Budget, BudgetError
from hwprune.codesign.space import DesignSpace, Option
from hwprune.sim.compose import design_timing

log = logging.getLogger(__name__)

LOSS_SCALE = 1_000_000  # CP-SAT works on integers: loss in micro-nats
TIME_LIMIT_S = 20.0


@dataclass
class Solution:
    options: list[Option]  # one per site, in site order
    predicted_loss: float
    predicted: dict[str, float]  # latency_cycles (longest path, sim/compose.py), interval_cycles, resources
    limits: dict[str, float] = field(default_factory=dict)


@dataclass
class Limits:
    """What the solver must respect, in cycles and absolute resources (after calibration)."""

    latency: int | None
    interval: int | None
    caps: dict[str, float]

    @classmethod
    def from_budget(cls, budget: Budget, space: DesignSpace, latency_scale: float = 1.0) -> "Limits":
        lat = budget.latency_limit(space.clock_mhz)
        return cls(None if lat is None else int(math.floor(lat * latency_scale)),
                   budget.interval_limit(space.clock_mhz), {k: float(v) for k, v in budget.caps(space.board).items()})


def predict(space: DesignSpace, options: list[Option]) -> dict[str, float]:
    """Whole-design figures of a choice: resources summed; latency and interval by the
    composition rule the estimate and the simulator use (sim/compose.py: the longest path of
    layer latencies, the largest layer II)."""
    out = {k: space.overhead[k] + sum(getattr(o.cost, k) for o in options) for k in RESOURCES}
    latency = {**space.fixed_latency, **{s.layer: o.cost.latency for s, o in zip(space.sites, options)}}
    timing = design_timing(space.dag, latency, [space.fixed_interval, *(o.cost.ii for o in options)])
    out["latency_cycles"], out["interval_cycles"] = timing.latency, timing.interval
    return out


def _finish_times(m: Any, space: DesignSpace, allowed: list[list[Option]], x: list[list[Any]]) -> list[Any]:
    """The longest-path rule of `predict` as linear constraints: a layer finishes at least its
    latency after each layer it depends on (after 0 for a layer reading only graph inputs); the
    finish times of the output layers are then at least the longest path, and a limit on them
    holds exactly when the longest path meets it. Returns the output layers' finish times."""
    site = {s.layer: i for i, s in enumerate(space.sites)}
    top = sum(space.fixed_latency.values()) + sum(max((o.cost.latency for o in opts), default=0) for opts in allowed)
    finish: list[Any] = []
    for k, (name, preds) in enumerate(zip(space.dag.layers, space.dag.preds)):
        i = site.get(name)
        lat = (sum(o.cost.latency * v for o, v in zip(allowed[i], x[i])) if i is not None
               else space.fixed_latency.get(name, 0))
        f = m.NewIntVar(0, max(top, 0), f"finish{k}")
        for p in preds or (None,):
            m.Add(f >= (finish[p] if p is not None else 0) + lat)
        finish.append(f)
    return [finish[k] for k in space.dag.sinks]


def _model(space: DesignSpace, limits: Limits, drop: str | None = None, minimize: str | None = None) -> Any:
    from ortools.sat.python import cp_model

    m = cp_model.CpModel()
    allowed = [[o for o in s.options if limits.interval is None or o.cost.ii <= limits.interval or drop == "interval_cycles"]
               for s in space.sites]
    x = [[m.NewBoolVar(f"s{i}o{j}") for j in range(len(opts))] for i, opts in enumerate(allowed)]
    for xs in x:
        m.AddExactlyOne(xs)
    for k in RESOURCES:
        if k == drop or minimize == k:
            continue
        room = limits.caps[k] - space.overhead[k]
        if math.isinf(room):
            continue
        terms = [(int(math.ceil(getattr(o.cost, k))), v) for opts, xs in zip(allowed, x) for o, v in zip(opts, xs)]
        if any(c for c, _ in terms):
            m.Add(sum(c * v for c, v in terms) <= int(math.floor(room)))
        elif room < 0:  # the part no site controls exceeds the limit by itself
            never = m.NewBoolVar(f"over_{k}")
            m.Add(never == 1)
            m.Add(never == 0)
    bounded = limits.latency is not None and drop != "latency_cycles" and minimize != "latency_cycles"
    ends = _finish_times(m, space, allowed, x) if bounded or minimize == "latency_cycles" else []
    if bounded:
        for f in ends:
            m.Add(f <= limits.latency)
    if minimize is None:
        loss = sum(int(round(o.loss * LOSS_SCALE)) * v for opts, xs in zip(allowed, x) for o, v in zip(opts, xs))
        # Among equally good choices prefer the faster one (a tiny tie-break).
        speed = sum(o.cost.latency * v for opts, xs in zip(allowed, x) for o, v in zip(opts, xs))
        m.Minimize(loss * 1000 + speed)
    elif minimize == "latency_cycles":
        worst = m.NewIntVar(0, 10**12, "latency")
        for f in ends:
            m.Add(f <= worst)
        m.Minimize(worst)
    elif minimize == "interval_cycles":
        worst = m.NewIntVar(0, 10**12, "interval")
        for opts, xs in zip(allowed, x):
            for o, v in zip(opts, xs):
                m.Add(worst >= o.cost.ii).OnlyEnforceIf(v)
        m.Minimize(worst)
    else:
        m.Minimize(sum(int(math.ceil(getattr(o.cost, minimize))) * v for opts, xs in zip(allowed, x) for o, v in zip(opts, xs)))
    return m, allowed, x


def _solve(space: DesignSpace, limits: Limits, drop: str | None = None, minimize: str | None = None,
           seed: int = 0) -> list[Option] | None:
    from ortools.sat.python import cp_model

    m, allowed, x = _model(space, limits, drop, minimize)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = TIME_LIMIT_S
    solver.parameters.random_seed = seed
    solver.parameters.num_workers = 1  # deterministic for a given seed
    status = solver.Solve(m)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    return [opts[next(j for j, v in enumerate(xs) if solver.Value(v))] for opts, xs in zip(allowed, x)]


def solve(space: DesignSpace, budget: Budget, limits: Limits | None = None, seed: int = 0) -> Solution:
    """The least-loss choice meeting every limit (the budget's, or calibrated `limits`), or a
    BudgetError naming the binding one."""
    limits = limits or Limits.from_budget(budget, space)
    chosen = _solve(space, limits, seed=seed)
    if chosen is None:
        raise BudgetError(explain_infeasible(space, limits, budget))
    return Solution(chosen, sum(o.loss for o in chosen), predict(space, chosen),
                    dict(latency_cycles=limits.latency or 0, interval_cycles=limits.interval or 0, **limits.caps))


def _describe(space: DesignSpace, what: str, value: float, limit: float | None, budget: Budget) -> str:
    clock = space.clock_mhz
    cap = space.board.resources.as_dict()
    if what == "latency_cycles":
        # The longest path of layer latencies, in the simulator's terms (io_stream processes overlap).
        value = value * space.latency_ratio
        lim = f"{budget.latency_limit(clock)} cycles ({budget.latency_limit(clock) / clock:g} us)" if limit is not None else ""
        return f"latency: the best reachable is {value:.0f} cycles ({value / clock:.2f} us at {clock:g} MHz), the budget {lim}"
    if what == "interval_cycles":
        return (f"throughput: the best reachable is {clock * 1e6 / max(value, 1):.0f} samples/s (interval {value:.0f} cycles), "
                f"the budget {budget.throughput:g}/s")
    name = "BRAM18" if what == "bram18" else what.upper()
    frac = budget.share(what)
    why = " (the routing headroom; --headroom to change it)" if budget.limit_source(what) == "headroom" else ""
    return (f"{name}: the least reachable is {value:.0f} ({100 * value / max(cap[what], 1):.1f}% of {space.board.name}), "
            f"the limit {limit:.0f} ({100 * frac:.0f}%){why}")


def explain_infeasible(space: DesignSpace, limits: Limits, budget: Budget) -> str:
    """One line: which limit binds and the best figure reachable for it."""
    # Alone: the cheapest option of every site for that limit. Every resource out of reach is
    # named (the first in full), so the user sees all that must change, not one at a time.
    over = []
    for k in RESOURCES:
        least = space.overhead[k] + sum(min(getattr(o.cost, k) for o in s.options) for s in space.sites)
        if least > limits.caps[k]:
            over.append((k, least))
    if over:
        (k, least), rest = over[0], over[1:]
        also = "; also out of reach: " + ", ".join(f"{'BRAM18' if r == 'bram18' else r.upper()} {v:.0f} > {limits.caps[r]:.0f}"
                                                     for r, v in rest) if rest else ""
        return "no design meets the budget; " + _describe(space, k, least, limits.caps[k], budget) + also
    if limits.latency is not None:
        best = _solve(space, Limits(None, None, {k: float("inf") for k in RESOURCES}), minimize="latency_cycles")
        if best is not None:
            lat = predict(space, best)["latency_cycles"]
            if lat > limits.latency:
                return "no design meets the budget; " + _describe(space, "latency_cycles", lat, limits.latency, budget)
    if limits.interval is not None:
        least = max([space.fixed_interval, *(min(o.cost.ii for o in s.options) for s in space.sites)])
        if least > limits.interval:
            return "no design meets the budget; " + _describe(space, "interval_cycles", least, limits.interval, budget)
    # Jointly: the limit whose removal makes the rest feasible, and its best figure under them.
    for what in ("latency_cycles", "interval_cycles", *RESOURCES):
        if what == "latency_cycles" and limits.latency is None or what == "interval_cycles" and limits.interval is None:
            continue
        if _solve(space, limits, drop=what) is not None:
            best = _solve(space, limits, drop=what, minimize=what)
            value = predict(space, best)[what] if best is not None else float("nan")
            limit = {"latency_cycles": limits.latency, "interval_cycles": limits.interval}.get(what, limits.caps.get(what))
            return "no design meets every budget at once; binding: " + _describe(space, what, value, limit, budget)
    return "no design meets the budget: several limits bind together; relax the latency or the resource fractions"
