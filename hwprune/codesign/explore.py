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


def _point(source: Any, cfg: Any, out: str, space: Any = None, say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """One budget point (runs in a worker process or a Ray task; loads its own copy of the task)
    on the sweep's design space (built once by the parent). `say` gets its progress (in a local
    worker: the queue to the parent, see `_worker_init`)."""
    import torch

    torch.set_num_threads(1)
    from hwprune.codesign.pruner import prune_to_budget

    label = Path(out).name
    tell = say if say is not None else _worker_say(label)

    def progress(m: str) -> None:
        if not str(m).startswith("wrote "):  # the sweep reports the point itself (not its temporary path)
            tell(m)

    budget_us = cfg.budget.latency_us
    try:
        res = prune_to_budget(source.load(), cfg, out, force=True, say=progress, space=space)
    except HwpruneInputError as e:  # an infeasible budget is a result of the sweep, not a failure
        return dict(label=label, latency_budget_us=budget_us, feasible=False, note=str(e).splitlines()[0])
    r = res.report
    util = r["utilization"]
    return dict(label=label, latency_budget_us=budget_us, feasible=True, accuracy=r["accuracy_after"],
                latency_us=r["latency_us"], interval_cycles=r["interval_cycles"], **r["resources"],
                max_utilization=max(util[k] for k in ("dsp", "lut", "ff", "bram18") if k in util), note="")


def _design_space(source: Any, cfg: Any, say: Callable[[str], None]) -> Any:
    """The sweep's one design space (options, costs, sensitivities): it does not depend on the
    budget, so the parent measures it once, with the workers' one torch thread (either backend
    then gets the same numbers), and every point searches it."""
    import torch

    from hwprune.codesign.pruner import design_space

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        say("design space: measuring every site's options once for all budget points")
        return design_space(source.load(), cfg, lambda m: say("  " + m))
    finally:
        torch.set_num_threads(threads)


# --------------------------------------------------------------------------- local workers
# A worker sends its progress lines to the parent through a queue as they happen; the parent
# prints them (prefixed with the point's label) and each point's result as soon as it is done.
# Ctrl-C and SIGTERM reach the parent, which stops the workers with SIGTERM: a worker then
# unwinds (its temporary directories are removed) and exits.

_QUEUE: Any = None


class _Stop(BaseException):
    """Raised in a worker by SIGTERM so that its cleanup (finally, context managers) runs."""


def _on_sigterm(signum: int, frame: Any) -> None:
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM kills outright
    raise _Stop()


def _worker_init(queue: Any) -> None:
    import signal

    global _QUEUE
    _QUEUE = queue
    os.environ["HWPRUNE_PROGRESS"] = "0"  # no terminal bars from several workers at once; lines go to the parent
    import warnings

    # An optional-kernel notice brevitas prints on import in every worker, about nothing of the user's.
    warnings.filterwarnings("ignore", message="fast_hadamard_transform package not found")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGTERM, _on_sigterm)


def _worker_say(label: str) -> Callable[[str], None]:
    if _QUEUE is None:
        return lambda m: log.info("%s: %s", label, m)
    return lambda m: _QUEUE.put((label, str(m)))


def _worker_job(fn: Callable[..., dict[str, Any]], job: tuple[Any, ...]) -> dict[str, Any]:
    try:
        return fn(*job)
    except _Stop:
        os._exit(143)  # cleanup has run while _Stop unwound the job


def _run_local(jobs: list[tuple[str, Any, str]], workers: int, on_point: Callable[[dict[str, Any]], None] = lambda p: None,
               on_message: Callable[[str, str], None] = lambda label, m: None,
               fn: Callable[..., dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    fn = fn or _point
    if workers <= 1:
        results = []
        for j in jobs:
            label = Path(j[2]).name
            r = fn(*j, say=lambda m, label=label: on_message(label, m))
            on_point(r)
            results.append(r)
        return results
    import queue as queue_mod
    import threading
    from concurrent.futures import as_completed

    ctx = get_context("spawn")
    q = ctx.Queue()
    stop = threading.Event()

    def relay() -> None:
        while not stop.is_set() or not q.empty():
            try:
                label, m = q.get(timeout=0.05)
            except queue_mod.Empty:
                continue
            except (EOFError, OSError):
                return
            on_message(label, m)

    relay_thread = threading.Thread(target=relay, name="hwprune-explore-progress", daemon=True)
    relay_thread.start()
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init, initargs=(q,))
    try:
        futures = {pool.submit(_worker_job, fn, j): k for k, j in enumerate(jobs)}
        results: list[dict[str, Any] | None] = [None] * len(jobs)
        for fut in as_completed(futures):
            r = fut.result()
            results[futures[fut]] = r
            on_point(r)
        pool.shutdown(wait=True)
    except BaseException:
        _stop_workers(pool)
        raise
    finally:
        stop.set()
        relay_thread.join(timeout=5)
        q.close()
        q.join_thread()
    return [r for r in results if r is not None]


def _stop_workers(pool: ProcessPoolExecutor, timeout_s: float = 20.0) -> None:
    """SIGTERM every worker, give them `timeout_s` to clean up, then kill what is left."""
    import time

    procs = list(getattr(pool, "_processes", {}).values())
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + timeout_s
    for p in procs:
        p.join(max(deadline - time.monotonic(), 0.1))
        if p.is_alive():
            p.kill()
            p.join(1)
    pool.shutdown(wait=False, cancel_futures=True)


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


def _run_ray(jobs: list[tuple[Any, Any, str]], workers: int, on_point: Callable[[dict[str, Any]], None] = lambda p: None,
             on_message: Callable[[str, str], None] = lambda label, m: None) -> list[dict[str, Any]]:
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
        refs = [task.remote(*j) for j in jobs]
        pending, done = list(refs), {}
        while pending:  # each point is reported as soon as it is done
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                done[ref] = ray.get(ref)
                on_point(done[ref])
        return [done[r] for r in refs]
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
    inputs = [p for p in (source.model.split(":")[0], source.weights, source.data) if p]
    with atomic_directory(out, force, inputs, kind="explore") as tmp:
        space = _design_space(source, cfg, say)
        jobs = []
        for lat in latencies_us:
            point_cfg = replace(cfg, budget=replace(cfg.budget, latency_us=float(lat)))
            jobs.append((source, point_cfg, str(tmp / "points" / f"latency_{lat:g}us"), space))
        (tmp / "points").mkdir()
        say(f"{len(jobs)} budget points on the {backend} backend with {workers} worker(s)")
        runner = _run_ray if backend == "ray" else _run_local
        n_done = [0]

        def on_point(p: dict[str, Any]) -> None:
            n_done[0] += 1
            say(f"  [{n_done[0]}/{len(jobs)}] {p['label']} done: " + (
                f"accuracy {100 * p['accuracy']:.1f}%, latency {p['latency_us']:.1f} us, max utilization "
                f"{100 * p['max_utilization']:.0f}%" if p["feasible"] else f"infeasible: {p['note']}"))

        points = pareto(runner(jobs, workers, on_point=on_point, on_message=lambda label, m: say(f"  {label}: {m}")))
        on_front = [p["label"] for p in points if p["pareto"]]
        say(f"Pareto front: {', '.join(on_front) if on_front else 'no feasible point'}")
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
