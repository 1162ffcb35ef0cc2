"""The HTML report renders in headless Chromium: a screenshot shows the bars, the Pareto front,
the sparsity maps and the metrics table (pixels of their colours where they are laid out), and
the rendered DOM holds every element."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from hwprune.report.html import ReportData, render, write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def sample_data() -> ReportData:
    layers = [dict(module=m, layer=f"L{i}", kind=k, pattern=p, sparsity=s, weight_bits=8, reuse_factor=rf, vocab=v,
                   latency_cycles=lat, ii_cycles=lat - 5, dsp=0.0, lut=lut, bram18=b)
              for i, (m, k, p, s, rf, v, lat, lut, b) in enumerate([
                  ("embedding", "embedding", "dense", 0.0, 1, 8000, 50, 0.0, 180.0),
                  ("convs.0", "conv", "block:4x4", 0.75, 64, None, 3000, 12000.0, 8.0),
                  ("convs.1", "conv", "filter", 0.5, 32, None, 2500, 9000.0, 6.0),
                  ("fc", "dense", "dense", 0.0, 24, None, 40, 2100.0, 0.0)])]
    rng = np.random.default_rng(0)
    front = [dict(label=f"latency_{b}us", latency_budget_us=b, feasible=True, accuracy=a, latency_us=l, max_utilization=u,
                  pareto=par, note="") for b, a, l, u, par in [(40, 0.72, 38.0, 0.97, True), (80, 0.75, 77.0, 0.95, True),
                                                                (160, 0.745, 120.0, 0.96, False)]]
    kept = np.repeat(np.repeat(rng.random((16, 36)) < 0.25, 4, axis=0), 4, axis=1)
    return ReportData(title="demo <report> & test", summary=[("accuracy", "75.0%"), ("latency", "77 us")], layers=layers,
                      capacity=dict(dsp=220, lut=53200, ff=106400, bram18=280, uram=0), latency_budget_cycles=8000,
                      front=front, sparsity_maps=[("convs.0", kept)], notes=["estimates, not vendor reports"])


def full_data() -> ReportData:
    """sample_data with what a pruned design's report has: resource rows adding up to the
    total, the headroom, the chosen design and its reason, the dense baseline, a map of a layer
    whose every cell keeps half its weights."""
    d = sample_data()
    rows = [dict(name=l["module"], kind="layer", dsp=l["dsp"], lut=l["lut"], ff=1000.0, bram18=l["bram18"], uram=0.0)
            for l in d.layers]
    rows += [dict(name="other layers (7)", kind="other", dsp=0.0, lut=3000.0, ff=2000.0, bram18=0.0, uram=0.0),
             dict(name="FIFOs (9)", kind="fifo", dsp=0.0, lut=900.0, ff=0.0, bram18=4.0, uram=0.0),
             dict(name="top-level control", kind="top", dsp=0.0, lut=200.0, ff=300.0, bram18=0.0, uram=0.0),
             dict(name="deployment shell", kind="shell", dsp=0.0, lut=4420.0, ff=6640.0, bram18=2.0, uram=0.0)]
    d.breakdown = rows
    d.totals = {k: sum(r[k] for r in rows) for k in ("dsp", "lut", "ff", "bram18", "uram")}
    d.headroom = dict(dsp=0.85, lut=0.8, ff=0.8, bram18=0.85, uram=0.85)
    d.chosen = dict(d.front[1], reason="the sweep point at the demo's latency budget")
    d.baseline = dict(label="dense baseline", accuracy=0.77, latency_us=60.0, max_utilization=1.43, fits=False,
                      note="does not fit", short="does not fit (BRAM 143%)")
    d.verdict = "fits pynq-z2: binding LUT 61.4% (limit 80%)"
    half = np.zeros((96, 96), dtype=bool)
    half[::2, ::2] = half[1::2, 1::2] = True  # every 2x2 cell keeps half of its weights
    d.sparsity_maps = [("convs.0", d.sparsity_maps[0][1]), ("convs.1", half)]
    return d


def test_sparsity_map_is_shaded_by_the_fraction_kept():
    """Issue 13: a cell was dark when any weight in it was kept, so "50% pruned" rendered fully
    dark. Now each cell's shade is its kept fraction."""
    from hwprune.report.html import KEPT_RGB, PRUNED_RGB, _shade, sparsity_map

    half = np.zeros((96, 96), dtype=bool)
    half[::2, ::2] = half[1::2, 1::2] = True
    svg = sparsity_map("convs.1", half)
    fills = set(re.findall(r'<rect [^>]*fill="(#[0-9a-f]{6})"', svg))
    assert fills == {_shade(0.5)} and "50% pruned" in svg
    assert _shade(1.0) == "#%02x%02x%02x" % KEPT_RGB and _shade(0.0) == "#%02x%02x%02x" % PRUNED_RGB
    full = sparsity_map("dense", np.ones((8, 8), dtype=bool))
    assert set(re.findall(r'<rect [^>]*fill="(#[0-9a-f]{6})"', full)) == {_shade(1.0)}


def test_front_is_drawn_in_its_own_axes_and_states_the_third():
    """Issue 13: the front was three-dimensional but drawn on two axes, so a point worse on both
    drawn axes was on the line and the line went down. Now the line is the front of the drawn
    axes (it rises), and utilization labels every point."""
    from hwprune.report.html import front_chart, pareto_2d
    from hwprune.codesign.explore import pareto

    pts = pareto([dict(label="a", feasible=True, accuracy=0.80, latency_us=10.0, max_utilization=0.5),
                  dict(label="b", feasible=True, accuracy=0.70, latency_us=20.0, max_utilization=0.3),
                  dict(label="c", feasible=True, accuracy=0.90, latency_us=30.0, max_utilization=0.6)])
    assert [p["pareto"] for p in pts] == [True, True, True]  # b is on the 3-objective front (utilization)
    assert [p["label"] for p in pareto_2d(pts)] == ["a", "c"]
    svg = front_chart(pts)
    (line,) = re.findall(r'<polyline points="([^"]+)"', svg)
    xy = [tuple(map(float, p.split(","))) for p in line.split()]
    assert len(xy) == 2 and xy[0][0] < xy[1][0] and xy[0][1] > xy[1][1]  # rises left to right (SVG y grows down)
    assert all(f">{u}%</text>" in svg for u in (50, 30, 60)) and "max utilization" in svg


def test_resource_bars_add_up_and_mark_the_choice_and_the_baseline():
    """Issue 13: the per-layer LUT bars added up to ~43.8k of the 53.1k total; nothing said which
    sweep point became the design and why; no dense baseline."""
    d = full_data()
    page = render(d)
    lut_chart = next(c for c in re.findall(r"<svg.*?</svg>", page, re.S) if "LUT: every layer" in c)
    values = [float(v) for v in re.findall(r'class="bar"><title>[^:]*: ([0-9.]+) LUT', lut_chart)]
    (total,) = [float(v) for v in re.findall(r'class="total"><title>total: ([0-9.]+) LUT', lut_chart)]
    assert len(values) == len(d.breakdown) and sum(values) == pytest.approx(total) == pytest.approx(d.totals["lut"])
    assert 'class="headroom"' in lut_chart and "headroom 42560" in lut_chart
    assert "Chosen design: latency_80us." in page and "demo's latency budget" in html.unescape(page)
    assert 'stroke="#2ca02c"' in page and 'fill="#ff7f0e"' in page  # ring on the chosen point, the baseline's square
    assert "does not fit (BRAM 143%)" in page and "Fit:</b> fits pynq-z2" in page


def test_report_is_self_contained_and_escaped():
    page = render(sample_data())
    assert "demo &lt;report&gt; &amp; test" in page and "<script" not in page and "http" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    assert page.count('class="bar"') == 16 and page.count('class="sparsity-map"') == 1
    assert page.count('class="point"') == 5  # three designs and the two on the front


def screenshot(page: Path, png: Path, tmp: Path, height: int = 2600) -> str:
    profile = tmp / "profile"
    env = dict(os.environ, HOME=str(tmp))
    r = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--window-size=1400,{height}",
                        f"--screenshot={png}", page.as_uri()], capture_output=True, text=True, timeout=120, env=env)
    assert png.exists(), r.stderr[-2000:]
    dom = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120, env=env)
    return dom.stdout


def colour_share(img: np.ndarray, rgb: tuple[int, int, int], tol: int = 12) -> float:
    return float(np.mean(np.all(np.abs(img.astype(int) - np.array(rgb)) <= tol, axis=2)))


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(tmp_path):
    from PIL import Image

    page = write_report(tmp_path / "report.html", full_data())
    dom = screenshot(page, tmp_path / "shot.png", tmp_path)
    img = np.asarray(Image.open(tmp_path / "shot.png").convert("RGB"))
    assert img.shape[0] >= 2000 and img.shape[1] >= 1300
    check_fixed_charts(img, dom)


def check_fixed_charts(img: np.ndarray, dom: str) -> None:
    """What a rendered report of a pruned design shows: blue bars and points, grey total bars,
    the chosen design's green ring, kept cells dark and partly kept ones in between."""
    from hwprune.report.html import _shade

    assert colour_share(img, (31, 119, 180)) > 0.002  # bars and front points
    assert colour_share(img, (127, 127, 127)) > 0.0005  # the total bars
    assert colour_share(img, (44, 160, 44)) > 0.00002  # the ring of the chosen design
    assert colour_share(img, (240, 243, 248)) > 0.001  # table header cells
    shades = [tuple(int(_shade(f)[i:i + 2], 16) for i in (1, 3, 5)) for f in (0.25, 0.5, 0.75)]
    assert colour_share(img, (31, 59, 115), tol=4) + sum(colour_share(img, c, tol=4) for c in shades) > 0.001
    assert dom.count('class="total"') >= 3 and dom.count("<tr>") >= 10 and "sparsity-map" in dom
    assert "Chosen design:" in dom and 'class="headroom"' in dom


from test_budget_prune import model_dir  # noqa: E402,F401  (a TextCNN trained on the user's CSV)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_report_of_a_pruned_user_model_renders_with_the_fixed_charts(model_dir, tmp_path, capsys):  # noqa: F811
    """Every design `prune` writes gets report.html (not only the demo's): fit verdict, bars
    adding up to the total with the deployment shell, the design and the dense baseline on the
    front, shaded sparsity maps — rendered in headless Chromium."""
    import json

    from PIL import Image

    from hwprune.cli import main

    out = tmp_path / "design"
    code = main(["prune", str(model_dir), "--board", "pynq-z2", "--latency-us", "30", "--epochs", "0", "--qat-epochs", "0",
                 "--out", str(out)])
    stdout = capsys.readouterr().out
    assert code == 0
    assert stdout.strip().splitlines()[-1].startswith("fit: fits pynq-z2")
    r = json.loads((out / "report.json").read_text())
    v = r["verdict"]
    assert v["fits"] and v["shell"] and all(r["utilization"][k] <= v["headroom"][k] for k in v["headroom"])
    assert r["dense_baseline"]["accuracy"] == r["accuracy_before"]
    page = (out / "report.html").read_text()
    assert "Chosen design: this design." in page and "deployment shell" in page
    dom = screenshot(out / "report.html", tmp_path / "shot.png", tmp_path, height=5000)
    check_fixed_charts(np.asarray(Image.open(tmp_path / "shot.png").convert("RGB")), dom)
