"""The HTML report of a design: one self-contained page (inline SVG and CSS, no scripts, nothing
fetched) with the metrics and the fit verdict, the per-layer choices, resource bars that add up
to the design's total (every layer, the FIFOs, the top-level control and the deployment shell,
against the board's capacity and the routing headroom), the Pareto front in the axes it is
drawn in, the chosen design and the dense baseline, and the sparsity maps of the pruned weights
shaded by the fraction kept. `hwprune.report.design` assembles it for every design `prune`
writes; the demo adds its budget sweep."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hwprune.report.svg import Series, bars, scatter

MAP_CELLS = 48  # a sparsity map shows at most this many cells per side
KEPT_RGB = (31, 59, 115)  # a cell whose weights are all kept
PRUNED_RGB = (232, 237, 245)  # a cell whose weights are all pruned
RESOURCES = (("lut", "LUT"), ("ff", "FF"), ("bram18", "BRAM18"), ("dsp", "DSP"), ("uram", "URAM"))


@dataclass
class ReportData:
    title: str
    summary: list[tuple[str, str]]  # (what, value) rows of the metrics table
    layers: list[dict[str, Any]]  # report.json "layers" of the chosen design (per-site choices)
    capacity: dict[str, int]  # the board's resources
    latency_budget_cycles: int | None
    front: list[dict[str, Any]] = field(default_factory=list)  # explore points (or the chosen design alone)
    sparsity_maps: list[tuple[str, np.ndarray]] = field(default_factory=list)  # (layer, kept mask (out, in))
    notes: list[str] = field(default_factory=list)
    # Resource bars: rows {name, kind, dsp, lut, ff, bram18, uram} that add up to `totals`.
    breakdown: list[dict[str, Any]] = field(default_factory=list)
    totals: dict[str, float] = field(default_factory=dict)
    headroom: dict[str, float] = field(default_factory=dict)  # shares of the device (hwprune.board.Headroom)
    chosen: dict[str, Any] | None = None  # {label, reason, accuracy, latency_us, max_utilization}
    baseline: dict[str, Any] | None = None  # the dense model as a point {label, accuracy, latency_us, note, ...}
    verdict: str = ""  # the one-line fit verdict
    latency_note: str = ""  # how the per-layer latencies relate to the design's


def _shade(frac: float) -> str:
    """The colour of a cell keeping `frac` of its weights: light (none) to dark (all)."""
    f = min(max(float(frac), 0.0), 1.0)
    r, g, b = (round(p + (k - p) * f) for k, p in zip(KEPT_RGB, PRUNED_RGB))
    return f"#{r:02x}{g:02x}{b:02x}"


def sparsity_map(name: str, kept: np.ndarray) -> str:
    """A grid of one layer's weights, block-pooled to at most MAP_CELLS per side, each cell
    shaded by the fraction of its weights that are kept (light: all pruned, dark: all kept)."""
    kept = np.asarray(kept, dtype=bool)
    rows, cols = kept.shape
    fr, fc = max(1, -(-rows // MAP_CELLS)), max(1, -(-cols // MAP_CELLS))
    pr, pc = -(-rows // fr) * fr, -(-cols // fc) * fc
    padded = np.zeros((pr, pc), dtype=np.float64)
    weight = np.zeros((pr, pc), dtype=np.float64)
    padded[:rows, :cols] = kept
    weight[:rows, :cols] = 1.0
    n = weight.reshape(pr // fr, fr, pc // fc, fc).sum(axis=(1, 3))
    cells = padded.reshape(pr // fr, fr, pc // fc, fc).sum(axis=(1, 3)) / np.maximum(n, 1)
    h, w = cells.shape
    size = max(4, min(10, 360 // max(h, w)))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{max(w * size + 2, 260)}" height="{h * size + 22}" '
           f'class="sparsity-map" role="img" aria-label="sparsity map of {html.escape(name)}">',
           f'<text x="1" y="13" font-family="sans-serif" font-size="12">{html.escape(name)}: '
           f'{100 * (1 - kept.mean()):.0f}% pruned ({rows}x{cols}, cell {fr}x{fc})</text>']
    for i in range(h):
        for j in range(w):
            out.append(f'<rect x="{1 + j * size}" y="{20 + i * size}" width="{size - 1}" height="{size - 1}" '
                       f'fill="{_shade(cells[i, j])}"><title>{100 * cells[i, j]:.0f}% kept</title></rect>')
    out.append("</svg>")
    return "\n".join(out)


def pareto_2d(points: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The feasible points no other feasible point beats on latency and accuracy together (the
    front in the axes of the chart), by increasing latency — so accuracy increases along it."""
    ok = [p for p in points if p.get("feasible")]
    front = [p for p in ok if not any(
        q is not p and q["accuracy"] >= p["accuracy"] and q["latency_us"] <= p["latency_us"]
        and (q["accuracy"] > p["accuracy"] or q["latency_us"] < p["latency_us"]) for q in ok)]
    return sorted(front, key=lambda p: (p["latency_us"], p["accuracy"]))


def front_chart(points: Sequence[dict[str, Any]], chosen: dict[str, Any] | None = None,
                baseline: dict[str, Any] | None = None, title: str = "accuracy vs latency") -> str:
    """Accuracy against latency with the front computed in these two axes (the line rises from
    left to right); every design is labelled with its largest utilization, the third objective;
    the chosen design ringed; the dense baseline a square."""
    ok = [p for p in points if p.get("feasible")]
    front = pareto_2d(ok)
    series = [Series("designs (label: max utilization)", [(p["latency_us"], 100 * p["accuracy"]) for p in ok],
                     labels=[f"{100 * p['max_utilization']:.0f}%" if p.get("max_utilization") is not None else ""
                             for p in ok]),
              Series("Pareto front (latency, accuracy)", [(p["latency_us"], 100 * p["accuracy"]) for p in front],
                     connect=True, color="#d62728")]
    if chosen is not None and chosen.get("latency_us") is not None:
        series.append(Series("chosen design", [(chosen["latency_us"], 100 * chosen["accuracy"])], marker="ring",
                             color="#2ca02c"))
    if baseline is not None and baseline.get("latency_us") is not None:
        series.append(Series("dense baseline", [(baseline["latency_us"], 100 * baseline["accuracy"])], marker="square",
                             color="#ff7f0e", labels=[baseline.get("short", "")]))
    return scatter(series, "latency (us)", "test accuracy (%)", title)


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]], cls: str) -> str:
    th = "".join(f"<th>{html.escape(str(h))}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def _resource_charts(data: ReportData) -> list[str]:
    if not data.breakdown:  # per-site bars only (they need not add up to the design)
        return [bars([(l["module"], float(l.get(k, 0.0))) for l in data.layers], float(data.capacity.get(k, 0)), label,
                     f"{label} per layer vs the board") for k, label in RESOURCES[:4] if k != "ff"]
    charts = []
    for k, label in RESOURCES:
        cap = float(data.capacity.get(k, 0))
        total = float(data.totals.get(k, sum(float(r.get(k, 0.0)) for r in data.breakdown)))
        if total == 0:
            continue  # e.g. no DSP or URAM used
        rows = [(r["name"], float(r.get(k, 0.0))) for r in data.breakdown]
        limit = data.headroom.get(k)
        charts.append(bars(rows, cap, label, f"{label}: every layer, FIFOs, control and shell; they add up to the total",
                           limit=cap * limit if limit is not None else None, total=total))
    return charts


def render(data: ReportData) -> str:
    layer_rows = [(l["module"], l["layer"], l["pattern"] + (f" {100 * l['sparsity']:.0f}%" if l["sparsity"] else ""),
                   l["weight_bits"], l["reuse_factor"], l.get("vocab") or "", l["latency_cycles"], l["ii_cycles"],
                   f"{l['dsp']:.0f}", f"{l['lut']:.0f}", f"{l['bram18']:.1f}") for l in data.layers]
    latency = bars([(l["module"], float(l["latency_cycles"])) for l in data.layers], float(data.latency_budget_cycles or 0),
                   "cycles", "latency of each layer alone (budget line: the design's latency budget)", cap_label="budget")
    charts = [latency, *_resource_charts(data)]
    front2 = {id(p) for p in pareto_2d(data.front)}
    chosen_label = (data.chosen or {}).get("label")
    front_svg = front_chart(data.front, data.chosen, data.baseline) if (data.front or data.baseline) else ""
    front_rows = [(p["label"], f"{p['latency_budget_us']:g}" if p.get("latency_budget_us") is not None else "",
                   "yes" if p.get("feasible") else "no",
                   f"{100 * p['accuracy']:.1f}%" if p.get("feasible") else "", f"{p['latency_us']:.1f}" if p.get("feasible") else "",
                   f"{100 * p['max_utilization']:.0f}%" if p.get("feasible") else "",
                   "yes" if id(p) in front2 else "", "yes" if p.get("pareto") else "",
                   "chosen" if p["label"] == chosen_label else "", p.get("note", "")) for p in data.front]
    if data.baseline is not None:
        b = data.baseline
        front_rows.append((b["label"], "", "yes" if b.get("fits") else "no", f"{100 * b['accuracy']:.1f}%",
                           f"{b['latency_us']:.1f}" if b.get("latency_us") is not None else "",
                           f"{100 * b['max_utilization']:.0f}%" if b.get("max_utilization") is not None else "",
                           "", "", "baseline", b.get("note", "")))
    chosen_html = ""
    if data.chosen is not None:
        chosen_html = (f'<p class="chosen"><b>Chosen design: {html.escape(str(data.chosen["label"]))}.</b> '
                       f'{html.escape(data.chosen.get("reason", ""))}</p>')
    verdict_html = f'<p class="verdict"><b>Fit:</b> {html.escape(data.verdict)}</p>' if data.verdict else ""
    maps = "".join(f'<div class="map">{sparsity_map(n, k)}</div>' for n, k in data.sparsity_maps)
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in data.notes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(data.title)}</title>
<style>
body {{ font-family: sans-serif; margin: 24px; color: #222; max-width: 1400px; }}
h1 {{ font-size: 22px; }} h2 {{ font-size: 17px; margin-top: 28px; }}
table {{ border-collapse: collapse; margin: 8px 0; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; }}
th {{ background: #f0f3f8; }}
.charts {{ display: flex; flex-wrap: wrap; gap: 16px; }}
.map {{ display: inline-block; margin: 6px 12px 6px 0; vertical-align: top; }}
.verdict, .chosen {{ font-size: 14px; }}
</style></head><body>
<h1>{html.escape(data.title)}</h1>
{verdict_html}
{chosen_html}
<h2>Metrics</h2>
{_table(["metric", "value"], data.summary, "metrics")}
<h2>Per-layer choices and cost</h2>
{_table(["module", "IR layer", "pattern", "weight bits", "reuse factor", "vocabulary", "latency", "II", "DSP", "LUT", "BRAM18"], layer_rows, "layers")}
<h2>Latency and resources</h2>
<p>{html.escape(data.latency_note)} Resource bars: every part of the design, the last (grey) bar their total;
dashed black line: the board's capacity; dotted red line: the routing headroom (a bar past it is red).</p>
<div class="charts">{''.join(f'<div class="chart">{c}</div>' for c in charts)}</div>
<h2>Pareto front</h2>
<p>The line joins the designs no other design beats on both latency and accuracy (the two axes drawn);
each design is labelled with its largest resource utilization, the third objective (the table's
"Pareto (3 objectives)" column also weighs it). Ring: the chosen design; square: the dense baseline.</p>
<div class="chart">{front_svg}</div>
{_table(["point", "latency budget (us)", "feasible", "accuracy", "latency (us)", "max utilization", "Pareto (latency, accuracy)", "Pareto (3 objectives)", "", "note"], front_rows, "front")}
<h2>Sparsity maps of the pruned weights</h2>
<p>Each cell is shaded by the fraction of its weights that are kept: light = all pruned, dark = all kept.
Rows are output channels, columns the inputs (input channel x tap).</p>
<div class="maps">{maps or '<p>No layer was pruned.</p>'}</div>
<h2>Notes</h2><ul>{notes}</ul>
</body></html>
"""


def write_report(path: str | Path, data: ReportData) -> Path:
    p = Path(path)
    p.write_text(render(data), encoding="utf-8")
    return p
