"""`hwprune explore`: sweep budgets with the budget-driven pruner and write the accuracy -
latency - resource Pareto front (CSV, JSON, SVG).

Every budget point is an independent job, run in a local process pool (default) or as tasks on
a Ray cluster (`--backend ray`, `pip install ray`; `RAY_ADDRESS` selects a cluster, else a
local instance starts) — that is how a sweep grows past one machine. A job pins torch to one
thread, so the same seed gives the same design on either backend.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable

from hwprune.errors import ConfigError, HwpruneInputError

log = logging.getLogger(__name__)

BACKENDS = ("local", "ray")
FRONT_KEYS = ("label", "latency_budget_us", "feasible", "accuracy", "latency_us", "interval_cycles", "dsp", "lut", "ff",
              "bram18", "uram", "max_utilization", "pareto", "note")


def _point(source: Any, cfg: Any, out: str) -> dict[str, Any]:
    """One budget point (runs in a worker process or a Ray task; loads its own copy of the task)."""
    import torch

    torch.set_num_threads(1)
    from hwprune.codesign.pruner import prune_to_budget

    budget_us = cfg.budget.latency_us
    try:
        res = prune_to_budget(source.load(), cfg, out, force=True, say=lambda m: log.info("%s", m))
    except HwpruneInputError as e:  # an infeasible budget is a result of the sweep, not a failure
        return dict(label=Path(out).name, latency_budget_us=budget_us, feasible=False, note=str(e).splitlines()[0])
    r = res.report
    util = r["utilization"]
    return dict(label=Path(out).name, latency_budget_us=budget_us, feasible=True, accuracy=r["accuracy_after"],
                latency_us=r["latency_us"], interval_cycles=r["interval_cycles"], **r["resources"],
                max_utilization=max(util[k] for k in ("dsp", "lut", "ff", "bram18") if k in util), note="")


def pareto(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mark the points no other point beats on accuracy, latency and utilization at once (three
    objectives; front.svg draws the front of the first two and labels the third)."""
    ok = [p for p in points if p.get("feasible")]
    for p in points:
        p["pareto"] = False
    for p in ok:
        p["pareto"] = not any(
            q is not p and q["accuracy"] >= p["accuracy"] and q["latency_us"] <= p["latency_us"]
            and q["max_utilization"] <= p["max_utilization"]
            and (q["accuracy"] > p["accuracy"] or q["latency_us"] < p["latency_us"] or q["max_utilization"] < p["max_utilization"])
            for q in ok)
    return points


def _run_local(jobs: list[tuple[Any, Any, str]], workers: int) -> list[dict[str, Any]]:
    if workers <= 1:
        return [_point(*j) for j in jobs]
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        return list(pool.map(_point, *zip(*jobs)))


def _run_ray(jobs: list[tuple[Any, Any, str]], workers: int) -> list[dict[str, Any]]:
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend ray needs Ray: pip install 'ray>=2.9' (or use --backend local)") from None
    started = False
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=max(workers, 1), **kwargs)
        started = True
    try:
        task = ray.remote(num_cpus=1)(_point)
        return list(ray.get([task.remote(*j) for j in jobs]))
    finally:
        if started:
            ray.shutdown()


def explore(source: Any, cfg: Any, latencies_us: list[float], out: str | Path, backend: str = "local",
            workers: int = 1, force: bool = False, say: Callable[[str], None] = log.info) -> list[dict[str, Any]]:
    """Run the budget-driven pruner at every latency budget (other budgets as in `cfg`) on the
    task a hwprune.task.TaskSource describes (a path: a model directory of `hwprune train`)."""
    from hwprune.fsutil import atomic_directory
    from hwprune.task import TaskSource

    if not isinstance(source, TaskSource):
        source = TaskSource(str(source))

    if backend not in BACKENDS:
        raise ConfigError(f"--backend {backend!r} is not one of: {', '.join(BACKENDS)}")
    if not latencies_us:
        raise ConfigError("--latency-us needs at least one budget, e.g. 200,400,800")
    if workers < 1:
        raise ConfigError(f"--workers {workers} must be at least 1")
    with atomic_directory(out, force) as tmp:
        jobs = []
        for lat in latencies_us:
            point_cfg = replace(cfg, budget=replace(cfg.budget, latency_us=float(lat)))
            jobs.append((source, point_cfg, str(tmp / "points" / f"latency_{lat:g}us")))
        (tmp / "points").mkdir()
        say(f"{len(jobs)} budget points on the {backend} backend with {workers} worker(s)")
        runner = _run_ray if backend == "ray" else _run_local
        points = pareto(runner(jobs, workers))
        for p in points:
            say(f"  {p['label']}: " + (f"accuracy {100 * p['accuracy']:.1f}%, latency {p['latency_us']:.1f} us, "
                                       f"max utilization {100 * p['max_utilization']:.0f}%" + (" (Pareto)" if p["pareto"] else "")
                                       if p["feasible"] else f"infeasible: {p['note']}"))
        write_front(points, tmp, backend)
    return points


def write_front(points: list[dict[str, Any]], out: Path, backend: str) -> None:
    from hwprune.report.html import front_chart

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(FRONT_KEYS), extrasaction="ignore")
    w.writeheader()
    for p in points:
        w.writerow({k: p.get(k, "") for k in FRONT_KEYS})
    (out / "front.csv").write_text(buf.getvalue())
    (out / "front.json").write_text(json.dumps(dict(backend=backend, points=points), indent=2))
    # The line is the front in the chart's own two axes; utilization, the third objective of the
    # "pareto" column, labels every point.
    (out / "front.svg").write_text(front_chart(points, title="accuracy vs latency (labels: max utilization)"))
