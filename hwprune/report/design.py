"""The report of a design the budget-driven pruner writes (`hwprune prune ... --board`,
`hwprune explore` points, the demo): DIR/report.html beside report.json, from the design's graph
and estimate. Everything it shows adds up: the resource bars are every layer, the FIFOs, the
top-level control and the deployment shell (the estimate's parts); the chosen design is marked
with why it was chosen; the dense model is a point of its own."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hwprune.report.html import ReportData, write_report

log = logging.getLogger(__name__)

PRUNE_REASON = ("the budget-driven pruner's choice: of the designs the solver proposed, the one with the least "
                "predicted loss (divergence from the dense model) that met every budget and the routing headroom "
                "when checked with the estimate and the cycle-approximate simulator; then fine-tuned and checked again")
SITE_KINDS = ("Dense", "Conv", "Embedding")


def breakdown(est: Any, names: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Resource rows adding up to the estimate's total: the named layers (IR layer -> label,
    e.g. the pruner's sites; default: every Dense/Conv/Embedding), one row for all other layers
    (pools, activations, quantizers, layout), the FIFOs, the top-level control, the shell."""
    keys = ("dsp", "lut", "ff", "bram18", "uram")
    ops = {l.name: l.op for l in est.layers}
    if names is None:
        names = {l.name: l.name for l in est.layers if l.op in SITE_KINDS}
    rows: list[dict[str, Any]] = []
    other = dict.fromkeys(keys, 0.0)
    other_ops: Counter = Counter()
    shell = dict.fromkeys(keys, 0.0)
    for name, kind, r in est.parts():
        if kind == "layer" and name in names:
            rows.append(dict(name=names[name], kind="layer", **r))
        elif kind == "layer":
            other_ops[ops.get(name, "?")] += 1
            for k in keys:
                other[k] += r[k]
        elif kind == "shell":
            for k in keys:
                shell[k] += r[k]
        else:
            rows.append(dict(name=name, kind=kind, **r))
    if other_ops:
        n = sum(other_ops.values())
        rows.append(dict(name=f"other layers ({n})", kind="other", ops=dict(other_ops), **other))
    if est.shell is not None:
        rows.append(dict(name="deployment shell", kind="shell", parts=[p.name for p in est.shell], **shell))
    return rows


def sparsity_maps(g: Any) -> list[tuple[str, np.ndarray]]:
    """(layer, kept mask) of every pruned Dense/Conv layer (outputs x inputs)."""
    from hwprune.ops.conv import Conv
    from hwprune.ops.dense import Dense

    maps = []
    for l in g.layers:
        if isinstance(l, Conv):
            kept = l.weight.reshape(l.c_out, -1) != 0
        elif isinstance(l, Dense):
            kept = l.weight.T != 0
        else:
            continue
        if not kept.all():
            maps.append((l.name, kept))
    return maps


def dense_baseline(model: Any, board: Any, clock_mhz: float, io_type: str, bits: int, headroom: Any,
                   accuracy: float, label: str = "dense baseline") -> dict[str, Any]:
    """The unpruned model as a point: its float accuracy, and its latency (simulated) and
    utilization at the smallest uniform reuse factor that fits the board within the headroom
    at `bits`-bit weights and activations (every other choice as the pruner's: io type, shell).
    When none fits, the point is the least-resource reuse factor tried, marked as not fitting."""
    from hwprune.fixed import FixedType, Overflow, Rounding
    from hwprune.pipeline import compile_graph
    from hwprune.precision import PrecisionConfig
    from hwprune.prune.metrics import compute_layers
    from hwprune.sim.dataflow import simulate
    from hwprune.sim.estimate import estimate
    from hwprune.verdict import fit_verdict

    t = FixedType(bits, max(1, bits // 2), True, Rounding.RND_CONV, Overflow.SAT)
    g = compile_graph(model, PrecisionConfig().with_overrides(result=t), io_type)
    compute = compute_layers(g)
    work = max((l.n_in * l.n_out if type(l).__name__ == "Dense" else l.c_out * l.taps for l in compute), default=1)
    est0 = estimate(g, board, clock_mhz)
    best = memory_only = None
    rf = 1
    while True:
        for l in compute:
            l.reuse_factor = rf
        est = estimate(g, board, clock_mhz, fifo_depths=dict(est0.fifo))
        v = fit_verdict(est, headroom, suggest=False)
        util = max(est.utilization()[k] for k in ("dsp", "lut", "ff", "bram18"))
        if best is None or util < best[1] or v.fits:
            best = (rf, util, v)
        if memory_only is None and not v.fits and set(v.over) <= {"bram18", "uram"}:
            memory_only = (rf, util, v)  # the first RF where only memory (which RF cannot fix) is over
        if v.fits or rf >= work:
            break
        rf *= 2
    rf, util, v = best if best[2].fits or memory_only is None else memory_only
    for l in compute:
        l.reuse_factor = rf
    sim = simulate(g, board, batch=2, clock_mhz=clock_mhz)
    lat_us = sim.latency_cycles / clock_mhz
    if v.fits:
        note = f"{bits}-bit, uniform reuse factor {rf} (the smallest that fits); float accuracy"
        short = f"RF {rf}"
    else:
        note = (f"does not fit {board.name} at any uniform reuse factor ({v.message.split(';')[0]}); "
                f"shown at RF {rf}, the smallest at which only memory is over; float accuracy")
        short = f"does not fit ({v.binding.upper()} {100 * v.share:.0f}%)"
    return dict(label=label, feasible=False, fits=v.fits, accuracy=float(accuracy), latency_us=lat_us,
                reuse_factor=rf, max_utilization=util, note=note, short=short)


def summary_rows(report: dict[str, Any], est: Any, verdict: Any, extra: Sequence[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    res, util = report["resources"], report["utilization"]
    head = verdict.headroom
    m = report.get("metrics", {})
    budget = report.get("budget", {})
    rows = [("board", f"{report['board']} @ {report['clock_mhz']:g} MHz ({report['io_type']})")]
    if budget.get("latency_us") is not None:
        rows.append(("latency budget", f"{budget['latency_us']:g} us"))
    rows += [("test accuracy: dense float -> pruned fixed point",
              f"{100 * report['accuracy_before']:.1f}% -> {100 * report['accuracy_after']:.1f}%"),
             ("latency", f"{report['latency_cycles']:.0f} cycles = {report['latency_us']:.1f} us ({report['timing_source']})"),
             ("throughput", f"{report['throughput_per_s']:.0f} samples/s (interval {report['interval_cycles']:.0f} cycles)"),
             ("meets the budget (and the routing headroom)", "yes" if report["meets_budget"] else "no"),
             ("fit", verdict.message.split(";")[0]),
             ("deployment shell (AXI DMA, SmartConnect, AXI-Stream top)",
              "counted in the resources" if verdict.shell else "NOT counted (HLS IP only)")]
    rows += list(extra)
    for k, label in (("dsp", "DSP"), ("lut", "LUT"), ("ff", "FF"), ("bram18", "BRAM18"), ("uram", "URAM")):
        u = util.get(k, 0.0)
        flag = f" — OVER the {100 * head[k]:g}% routing headroom" if u > head[k] + 1e-12 else f" (headroom {100 * head[k]:g}%)"
        rows.append((label, f"{res[k]} ({100 * u:.1f}%){flag}"))
    if m:
        rows += [("parameters (non-zero)", f"{m['params']:,}"), ("memory (weights + indices)", f"{m['memory_bits'] / 8e3:.0f} kB"),
                 ("MACs executed / nominal dense", f"{m['macs']:,} / {m['dense_macs']:,}"),
                 ("nominal weight sparsity (compute layers)", f"{100 * m['nominal_sparsity']:.0f}%")]
    return rows


def design_point(report: dict[str, Any], label: str) -> dict[str, Any]:
    """The design as a front point (explore's keys)."""
    util = report["utilization"]
    return dict(label=label, latency_budget_us=report.get("budget", {}).get("latency_us"), feasible=True,
                accuracy=report["accuracy_after"], latency_us=report["latency_us"],
                max_utilization=max(util[k] for k in ("dsp", "lut", "ff", "bram18") if k in util), note="")


def design_report(report: dict[str, Any], graph: Any, est: Any, headroom: Any, title: str | None = None,
                  front: Sequence[dict[str, Any]] | None = None, chosen: dict[str, Any] | None = None,
                  baseline: dict[str, Any] | None = None, notes: Sequence[str] = (),
                  extra: Sequence[tuple[str, str]] = ()) -> ReportData:
    """The report of a pruned design: `report` is its report.json, `graph`/`est` the compiled
    design and its estimate. `front`: sweep points (default: the design alone); `chosen`: the
    point the design is, with the reason it was chosen."""
    from hwprune.board import load_board
    from hwprune.verdict import fit_verdict

    board = load_board(report["board"])
    verdict = fit_verdict(est, headroom, graph)
    names = {l["layer"]: l["module"] for l in report.get("layers", [])}
    if chosen is None:
        chosen = dict(design_point(report, "this design"), reason=PRUNE_REASON)
    pts = list(front) if front is not None else [dict(chosen)]
    clock = report["clock_mhz"]
    lat_budget = report.get("budget", {}).get("latency_us")
    if title is None:
        title = f"hwprune: design for {report['board']}" + (f" within {lat_budget:g} us" if lat_budget else "")
    return ReportData(
        title=title,
        summary=summary_rows(report, est, verdict, extra), layers=report.get("layers", []),
        capacity=board.resources.as_dict(), latency_budget_cycles=int(lat_budget * clock) if lat_budget else None,
        front=pts, sparsity_maps=sparsity_maps(graph),
        notes=[*notes,
               "Resources and latency are hwprune's analytical estimate and cycle-approximate simulation, not vendor "
               "reports (no Vivado/Vitis here): see docs/estimate.md.",
               "Accuracy of the design is the bit-exact fixed-point engine's (= the C simulation) on the test split; "
               "the dense baseline's is the float model's."],
        breakdown=breakdown(est, names), totals={k: float(v) for k, v in est.resources.as_dict().items()},
        headroom=verdict.headroom, chosen=chosen, baseline=baseline, verdict=verdict.message,
        latency_note=(f"Latency bars: each layer alone; in io_stream the layers overlap, so the design's latency "
                      f"({report['latency_cycles']:.0f} cycles, {report['timing_source']}) is not their sum."
                      if report.get("io_type") == "stream" else "Latency bars: each layer alone; io_parallel adds them."))


def write_design_report(path: str | Path, report: dict[str, Any], graph: Any, est: Any, headroom: Any,
                        **kwargs: Any) -> Path:
    return write_report(path, design_report(report, graph, est, headroom, **kwargs))


def finish_design(out: Path, report: dict[str, Any], graph: Any, board: Any, clock_mhz: float, cfg: Any,
                  float_model: Any, example: Any, accuracy_before: float, say: Any = log.info) -> None:
    """What the budget-driven pruner adds to a design directory beside report.json: the fit
    verdict and the dense baseline (into `report`), and report.html."""
    from hwprune.sim.estimate import estimate

    headroom = cfg.budget.headroom
    est = estimate(graph, board, clock_mhz)
    report["verdict"] = est.verdict(headroom, graph).as_dict()
    try:
        from hwprune.frontend.torch_export import export_torch

        bits = int(cfg.bits) if str(cfg.bits).isdigit() else 8
        report["dense_baseline"] = dense_baseline(export_torch(float_model, example), board, clock_mhz, cfg.io_type, bits,
                                                  headroom, accuracy_before)
    except Exception as e:  # the baseline is context for the report, never a reason to lose the design
        log.warning("no dense baseline for the report: %s: %s", type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        report["dense_baseline"] = None
    write_design_report(out / "report.html", report, graph, est, headroom, baseline=report["dense_baseline"])
    say(f"report: {out.name}/report.html")
