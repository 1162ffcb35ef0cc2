"""Small self-contained SVG charts (no plotting dependency): a scatter with an optional
connected front, and horizontal bars against a capacity. Text is escaped; sizes are fixed so
the charts embed in HTML reports and render in any browser."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Sequence

WIDTH, HEIGHT = 640, 400
MARGIN = dict(left=70, right=20, top=30, bottom=55)
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")


@dataclass
class Series:
    name: str
    points: Sequence[tuple[float, float]]
    connect: bool = False  # draw a line through the points in x order (a front)
    color: str | None = None
    labels: Sequence[str] | None = None  # a text beside each point (same order as points)
    marker: str = "circle"  # circle | ring (hollow, larger: a marked point) | square | diamond


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1.0
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for m in (1, 2, 5, 10):
        if (hi - lo) / (step * m) <= n:
            step *= m
            break
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 or v == int(v) else f"{v:.3g}"


def scatter(series: Sequence[Series], x_label: str, y_label: str, title: str = "") -> str:
    pts = [p for s in series for p in s.points]
    if not pts:
        pts = [(0.0, 0.0), (1.0, 1.0)]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    padx, pady = (x1 - x0) * 0.08 or 1.0, (y1 - y0) * 0.1 or 0.01
    x0, x1, y0, y1 = x0 - padx, x1 + padx, y0 - pady, y1 + pady
    L, R, T, B = MARGIN["left"], WIDTH - MARGIN["right"], MARGIN["top"], HEIGHT - MARGIN["bottom"]

    def sx(v: float) -> float:
        return L + (v - x0) / (x1 - x0) * (R - L)

    def sy(v: float) -> float:
        return B - (v - y0) / (y1 - y0) * (B - T)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
           f'font-family="sans-serif" font-size="12" role="img" aria-label="{html.escape(title or y_label)}">',
           f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
           f'<line x1="{L}" y1="{B}" x2="{R}" y2="{B}" stroke="#333"/><line x1="{L}" y1="{T}" x2="{L}" y2="{B}" stroke="#333"/>']
    for t in _ticks(x0, x1):
        out.append(f'<line x1="{sx(t):.1f}" y1="{B}" x2="{sx(t):.1f}" y2="{B + 4}" stroke="#333"/>'
                   f'<text x="{sx(t):.1f}" y="{B + 17}" text-anchor="middle">{_fmt(t)}</text>')
    for t in _ticks(y0, y1):
        out.append(f'<line x1="{L - 4}" y1="{sy(t):.1f}" x2="{R}" y2="{sy(t):.1f}" stroke="#eee"/>'
                   f'<text x="{L - 7}" y="{sy(t) + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    out.append(f'<text x="{(L + R) / 2}" y="{HEIGHT - 12}" text-anchor="middle">{html.escape(x_label)}</text>')
    out.append(f'<text x="16" y="{(T + B) / 2}" text-anchor="middle" transform="rotate(-90 16 {(T + B) / 2})">'
               f'{html.escape(y_label)}</text>')
    if title:
        out.append(f'<text x="{L}" y="18" font-weight="bold">{html.escape(title)}</text>')
    for i, s in enumerate(series):
        color = s.color or COLORS[i % len(COLORS)]
        labelled = list(zip(s.points, s.labels)) if s.labels is not None else [(p, "") for p in s.points]
        ordered = sorted(labelled, key=lambda pl: pl[0])
        if s.connect and len(ordered) > 1:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for (x, y), _ in ordered)
            out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for (x, y), label in ordered:
            out.append(_marker(s.marker, sx(x), sy(y), color, f"{s.name}: {_fmt(x)}, {_fmt(y)}" + (f" ({label})" if label else "")))
            if label:  # beside the point, on its left near the right edge
                left = sx(x) > R - 7 * len(label) - 10
                anchor = ' text-anchor="end"' if left else ""
                out.append(f'<text x="{sx(x) + (-8 if left else 8):.1f}" y="{sy(y) - 7:.1f}" font-size="11" fill="#333"'
                           f'{anchor}>{html.escape(label)}</text>')
        ly = T + 14 + 16 * i
        lx = R - 14 - int(6.4 * max(len(x.name) for x in series))
        out.append(_marker(s.marker, lx, ly - 4, color, "", legend=True) +
                   f'<text x="{lx + 10}" y="{ly}">{html.escape(s.name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _marker(kind: str, x: float, y: float, color: str, title: str, legend: bool = False) -> str:
    cls = "" if legend else ' class="point"'
    tip = f"<title>{html.escape(title)}</title>" if title else ""
    if kind == "ring":
        return (f'<circle cx="{x:.1f}" cy="{y:.1f}" r="9" fill="none" stroke="{color}" stroke-width="3"{cls}>{tip}</circle>')
    if kind == "square":
        return f'<rect x="{x - 5:.1f}" y="{y - 5:.1f}" width="10" height="10" fill="{color}"{cls}>{tip}</rect>'
    if kind == "diamond":
        return (f'<polygon points="{x:.1f},{y - 7:.1f} {x + 7:.1f},{y:.1f} {x:.1f},{y + 7:.1f} {x - 7:.1f},{y:.1f}" '
                f'fill="{color}"{cls}>{tip}</polygon>')
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{color}"{cls}>{tip}</circle>'


def bars(rows: Sequence[tuple[str, float]], capacity: float, unit: str, title: str = "", limit: float | None = None,
         total: float | None = None, cap_label: str = "capacity") -> str:
    """Horizontal bars (one per row) against a capacity line at 100% and, when given, a
    `limit` line (the routing headroom). `total`: a last, grey bar for the sum of the rows
    (the chart then shows that the parts add up to it)."""
    shown = list(rows) + ([("total", float(total))] if total is not None else [])
    h = MARGIN["top"] + 22 * max(len(shown), 1) + 40
    L, R = 170, WIDTH - 70
    cap = capacity if capacity > 0 else max((v for _, v in shown), default=1.0) or 1.0
    top = max([cap, *(v for _, v in shown)])
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{h}" viewBox="0 0 {WIDTH} {h}" '
           f'font-family="sans-serif" font-size="12" role="img" aria-label="{html.escape(title or unit)}">',
           f'<rect x="0" y="0" width="{WIDTH}" height="{h}" fill="white"/>']
    if title:
        out.append(f'<text x="10" y="18" font-weight="bold">{html.escape(title)}</text>')
    for i, (name, v) in enumerate(shown):
        y = MARGIN["top"] + 22 * i
        w = (R - L) * v / top
        is_total = total is not None and i == len(shown) - 1
        over = capacity > 0 and v > (limit if limit is not None else capacity)
        color = "#7f7f7f" if is_total and not over else "#d62728" if over else "#1f77b4"
        cls = "total" if is_total else "bar"
        bold = ' font-weight="bold"' if is_total else ""
        out.append(f'<text x="{L - 6}" y="{y + 13}" text-anchor="end"{bold}>'
                   f'{html.escape(name[:26])}</text>'
                   f'<rect x="{L}" y="{y}" width="{w:.1f}" height="16" fill="{color}" class="{cls}">'
                   f'<title>{html.escape(name)}: {_fmt(v)} {html.escape(unit)}</title></rect>'
                   f'<text x="{L + w + 4:.1f}" y="{y + 13}">{_fmt(v)}</text>')
    yb = MARGIN["top"] + 22 * len(shown)
    if capacity > 0:
        cx = L + (R - L) * capacity / top
        out.append(f'<line x1="{cx:.1f}" y1="{MARGIN["top"] - 6}" x2="{cx:.1f}" y2="{yb}" stroke="#333" '
                   f'stroke-dasharray="4 3"/><text x="{cx:.1f}" y="{yb + 16}" text-anchor="middle">'
                   f'{html.escape(cap_label)} {_fmt(capacity)} {html.escape(unit)}</text>')
    if capacity > 0 and limit is not None and limit < capacity:
        lx = L + (R - L) * limit / top
        out.append(f'<line x1="{lx:.1f}" y1="{MARGIN["top"] - 6}" x2="{lx:.1f}" y2="{yb}" stroke="#d62728" '
                   f'stroke-dasharray="2 2" class="headroom"/><text x="{lx:.1f}" y="{yb + 30}" text-anchor="end" '
                   f'fill="#d62728">headroom {_fmt(limit)}</text>')
    out.append("</svg>")
    return "\n".join(out)
