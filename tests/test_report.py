"""The HTML report renders in headless Chromium: a screenshot shows the bars, the Pareto front,
the sparsity maps and the metrics table (pixels of their colours where they are laid out), and
the rendered DOM holds every element."""

from __future__ import annotations

import os
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


def test_report_is_self_contained_and_escaped():
    page = render(sample_data())
    assert "demo &lt;report&gt; &amp; test" in page and "<script" not in page and "http" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    assert page.count('class="bar"') == 16 and page.count('class="sparsity-map"') == 1
    assert page.count('class="point"') == 5  # three designs and the two on the front


def screenshot(page: Path, png: Path, tmp: Path) -> str:
    profile = tmp / "profile"
    env = dict(os.environ, HOME=str(tmp))
    r = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--window-size=1400,2600",
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

    page = write_report(tmp_path / "report.html", sample_data())
    dom = screenshot(page, tmp_path / "shot.png", tmp_path)
    img = np.asarray(Image.open(tmp_path / "shot.png").convert("RGB"))
    assert img.shape[0] >= 2000 and img.shape[1] >= 1300
    assert colour_share(img, (31, 119, 180)) > 0.002  # bars and front points
    assert colour_share(img, (31, 59, 115)) > 0.001  # kept cells of the sparsity map
    assert colour_share(img, (240, 243, 248)) > 0.001  # table header cells
    assert dom.count('class="bar"') == 16 and dom.count("<tr>") >= 10 and "sparsity-map" in dom
