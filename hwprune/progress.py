"""A minimal progress bar for long steps (training epochs, sweeps). It draws on stderr only
when stderr is a terminal (and HWPRUNE_PROGRESS is not 0), so logs, pipes and tests see the
plain line-per-step messages only."""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

WIDTH = 28


class Progress:
    def __init__(self, total: int, desc: str, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self.total, self.desc, self.done = max(int(total), 1), desc, 0
        self.stream = stream or sys.stderr
        if enabled is None:
            enabled = os.environ.get("HWPRUNE_PROGRESS", "1") != "0" and getattr(self.stream, "isatty", lambda: False)()
        self.enabled = enabled
        self.t0 = time.perf_counter()
        self._last = 0.0

    def update(self, n: int = 1) -> None:
        self.done = min(self.done + n, self.total)
        now = time.perf_counter()
        if self.enabled and (now - self._last > 0.1 or self.done == self.total):
            self._last = now
            filled = int(WIDTH * self.done / self.total)
            eta = (now - self.t0) / self.done * (self.total - self.done) if self.done else 0.0
            self.stream.write(f"\r{self.desc} [{'#' * filled}{'.' * (WIDTH - filled)}] {self.done}/{self.total} "
                              f"eta {eta:4.0f} s ")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * (len(self.desc) + WIDTH + 30) + "\r")
            self.stream.flush()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
