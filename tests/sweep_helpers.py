"""Light stand-ins for a budget point, importable by the sweep's spawned workers (no torch)."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class FakeBudget:
    latency_us: float | None = None


@dataclass(frozen=True)
class FakeConfig:
    budget: FakeBudget = field(default_factory=FakeBudget)


def timed_point(model_dir: str, cfg: FakeConfig, out: str, space=None, say=None) -> dict:
    """Sleeps latency_us / 10 seconds, saying so on the way."""
    from hwprune.codesign.explore import _worker_say

    say = say or _worker_say(Path(out).name)
    say("started")
    time.sleep(cfg.budget.latency_us / 10)
    say("half way")
    time.sleep(cfg.budget.latency_us / 10)
    return dict(label=Path(out).name, latency_budget_us=cfg.budget.latency_us, feasible=True, accuracy=0.5,
                latency_us=cfg.budget.latency_us, interval_cycles=1, dsp=0, lut=0, ff=0, bram18=0, uram=0,
                max_utilization=0.1, note="")


def stuck_point(model_dir: str, cfg: FakeConfig, out: str, space=None, say=None) -> dict:
    """Holds a temporary directory (as the QONNX export does) and a half-written output until stopped."""
    model_dir = getattr(model_dir, "model", model_dir)  # explore passes a hwprune.task.TaskSource
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "partial.txt").write_text("x")
    with tempfile.TemporaryDirectory(prefix="hwprune_qonnx_") as d:
        (Path(d) / "model.onnx").write_text("x")
        (Path(model_dir) / f"ready_{os.getpid()}").write_text(d)
        while True:
            time.sleep(0.05)
