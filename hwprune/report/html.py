"""The demo's HTML report: one self-contained page (inline SVG and CSS, no scripts, nothing
fetched) with the metrics table, per-layer latency and resource bars against the board's
capacity, the Pareto front of the budget sweep, and the sparsity maps of the pruned weights."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hwprune.report.svg import Series, bars, scatter

MAP_CELLS = 48  # a sparsity map shows at most this many cells per side


@dataclass
class ReportData:
    title: str
    summary: list[tuple[str, str]]  # (what, value) rows of the metrics table
    layers: list[dict[str, Any]]  # report.json "layers" of the chosen design
    capacity: dict[str, int]  # the board's resources
    latency_budget_cycles: int | None
    front: list[dict[str, Any]] = field(default_factory=list)  # explore points
    sparsity_maps: list[tuple[str, np.ndarray]] = field(default_factory=list)  # (layer, kept mask (out, in))
    notes: list[str] = field(default_factory=list)


def sparsity_map(name: str, kept: np.ndarray) -> str:
    """A grid of the kept (dark) and pruned (light) weights of one layer, block-pooled to at
    most MAP_CELLS per side (a cell is dark when any weight in it is kept)."""
    rows, cols = kept.shape
    fr, fc = max(1, -(-rows // MAP_CELLS)), max(1, -(-cols // MAP_CELLS))
    pr, pc = -(-rows // fr) * fr, -(-cols // fc) * fc
    padded = np.zeros((pr, pc), dtype=bool)
    padded[:rows, :cols] = kept
    cells = padded.reshape(pr // fr, fr, pc // fc, fc).any(axis=(1, 3))
    h, w = cells.shape
    size = max(4, min(10, 360 // max(h, w)))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w * size + 2}" height="{h * size + 22}" class="sparsity-map" '
           f'role="img" aria-label="sparsity map of {html.escape(name)}">',
           f'<text x="1" y="13" font-family="sans-serif" font-size="12">{html.escape(name)}: '
           f'{100 * (1 - kept.mean()):.0f}% pruned ({rows}x{cols}, cell {fr}x{fc})</text>']
    for i in range(h):
        for j in range(w):
            color = "#1f3b73" if cells[i, j] else "#e8edf5"
            out.append(f'<rect x="{1 + j * size}" y="{20 + i * size}" width="{size - 1}" height="{size - 1}" fill="{color}"/>')
    out.append("</svg>")
    return "\n".join(out)


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]], cls: str) -> str:
    th = "".join(f"<th>{html.escape(str(h))}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def render(data: ReportData) -> str:
    layer_rows = [(l["module"], l["layer"], l["pattern"] + (f" {100 * l['sparsity']:.0f}%" if l["sparsity"] else ""),
                   l["weight_bits"], l["reuse_factor"], l.get("vocab") or "", l["latency_cycles"], l["ii_cycles"],
                   f"{l['dsp']:.0f}", f"{l['lut']:.0f}", f"{l['bram18']:.1f}") for l in data.layers]
    charts = [
        bars([(l["module"], float(l["latency_cycles"])) for l in data.layers], float(data.latency_budget_cycles or 0),
             "cycles", "latency per layer (budget line: the whole design's latency budget)"),
        bars([(l["module"], float(l["lut"])) for l in data.layers], float(data.capacity.get("lut", 0)), "LUT",
             "LUTs per layer vs the board"),
        bars([(l["module"], float(l["bram18"])) for l in data.layers], float(data.capacity.get("bram18", 0)), "BRAM18",
             "BRAM18 per layer vs the board"),
        bars([(l["module"], float(l["dsp"])) for l in data.layers], float(data.capacity.get("dsp", 0)), "DSP",
             "DSPs per layer vs the board"),
    ]
    ok = [p for p in data.front if p.get("feasible")]
    front_svg = scatter([Series("designs", [(p["latency_us"], 100 * p["accuracy"]) for p in ok]),
                         Series("Pareto front", [(p["latency_us"], 100 * p["accuracy"]) for p in ok if p.get("pareto")],
                                connect=True)],
                        "latency (us)", "test accuracy (%)", "accuracy vs latency (budget sweep)") if data.front else ""
    front_rows = [(p["label"], f"{p['latency_budget_us']:g}", "yes" if p.get("feasible") else "no",
                   f"{100 * p['accuracy']:.1f}%" if p.get("feasible") else "", f"{p['latency_us']:.1f}" if p.get("feasible") else "",
                   f"{100 * p['max_utilization']:.0f}%" if p.get("feasible") else "", "yes" if p.get("pareto") else "",
                   p.get("note", "")) for p in data.front]
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
</style></head><body>
<h1>{html.escape(data.title)}</h1>
<h2>Metrics</h2>
{_table(["metric", "value"], data.summary, "metrics")}
<h2>Per-layer choices and cost</h2>
{_table(["module", "IR layer", "pattern", "weight bits", "reuse factor", "vocabulary", "latency", "II", "DSP", "LUT", "BRAM18"], layer_rows, "layers")}
<h2>Latency and resources per layer</h2>
<div class="charts">{''.join(f'<div class="chart">{c}</div>' for c in charts)}</div>
<h2>Pareto front</h2>
<div class="chart">{front_svg}</div>
{_table(["point", "latency budget (us)", "feasible", "accuracy", "latency (us)", "max utilization", "Pareto", "note"], front_rows, "front")}
<h2>Sparsity maps of the pruned weights</h2>
<p>Dark: kept, light: pruned. Rows are output channels, columns the inputs (input channel x tap).</p>
<div class="maps">{maps or '<p>No layer was pruned.</p>'}</div>
<h2>Notes</h2><ul>{notes}</ul>
</body></html>
"""


def write_report(path: str | Path, data: ReportData) -> Path:
    p = Path(path)
    p.write_text(render(data), encoding="utf-8")
    return p
