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
        ordered = sorted(s.points)
        if s.connect and len(ordered) > 1:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in ordered)
            out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, y in ordered:
            out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4" fill="{color}" class="point">'
                       f'<title>{html.escape(s.name)}: {_fmt(x)}, {_fmt(y)}</title></circle>')
        ly = T + 14 + 16 * i
        out.append(f'<circle cx="{R - 150}" cy="{ly - 4}" r="4" fill="{color}"/>'
                   f'<text x="{R - 140}" y="{ly}">{html.escape(s.name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def bars(rows: Sequence[tuple[str, float]], capacity: float, unit: str, title: str = "") -> str:
    """Horizontal bars (one per row) against a capacity line at 100%."""
    h = MARGIN["top"] + 22 * max(len(rows), 1) + 40
    L, R = 170, WIDTH - 70
    cap = capacity if capacity > 0 else max((v for _, v in rows), default=1.0) or 1.0
    top = max([cap, *(v for _, v in rows)])
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{h}" viewBox="0 0 {WIDTH} {h}" '
           f'font-family="sans-serif" font-size="12" role="img" aria-label="{html.escape(title or unit)}">',
           f'<rect x="0" y="0" width="{WIDTH}" height="{h}" fill="white"/>']
    if title:
        out.append(f'<text x="10" y="18" font-weight="bold">{html.escape(title)}</text>')
    for i, (name, v) in enumerate(rows):
        y = MARGIN["top"] + 22 * i
        w = (R - L) * v / top
        color = "#d62728" if capacity > 0 and v > capacity else "#1f77b4"
        out.append(f'<text x="{L - 6}" y="{y + 13}" text-anchor="end">{html.escape(name[:26])}</text>'
                   f'<rect x="{L}" y="{y}" width="{w:.1f}" height="16" fill="{color}" class="bar">'
                   f'<title>{html.escape(name)}: {_fmt(v)} {html.escape(unit)}</title></rect>'
                   f'<text x="{L + w + 4:.1f}" y="{y + 13}">{_fmt(v)}</text>')
    if capacity > 0:
        cx = L + (R - L) * capacity / top
        yb = MARGIN["top"] + 22 * len(rows)
        out.append(f'<line x1="{cx:.1f}" y1="{MARGIN["top"] - 6}" x2="{cx:.1f}" y2="{yb}" stroke="#333" '
                   f'stroke-dasharray="4 3"/><text x="{cx:.1f}" y="{yb + 16}" text-anchor="middle">'
                   f'capacity {_fmt(capacity)} {html.escape(unit)}</text>')
    out.append("</svg>")
    return "\n".join(out)
