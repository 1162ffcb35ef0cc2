"""Budgets a design must meet: fractions of a board's DSP, LUT, FF, BRAM and URAM, a latency
(µs at the design clock, or cycles) and a throughput (samples/s). Contradictory or
meaningless budgets are refused before any work starts.

Every resource limit is also capped by the routing headroom (`hwprune.board.Headroom`:
by default LUT/FF at most 80%, DSP/BRAM/URAM at most 85% of the device), so the budget-driven
pruner never chooses a design Vivado could not place and route; `--headroom` changes it."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from hwprune.board import DEFAULT_HEADROOM, Board, Headroom, resource_label
from hwprune.errors import HwpruneInputError

RESOURCES = ("dsp", "lut", "ff", "bram18", "uram")


class BudgetError(HwpruneInputError):
    """A budget is contradictory, or no design meets it (the message names the binding limit)."""


@dataclass(frozen=True)
class Budget:
    latency_us: float | None = None
    latency_cycles: int | None = None
    throughput: float | None = None  # samples per second
    dsp: float = 1.0  # fractions of the board
    lut: float = 1.0
    ff: float = 1.0
    bram18: float = 1.0
    uram: float = 1.0
    headroom: Headroom = DEFAULT_HEADROOM  # shares of the device a design may use at most

    def share(self, name: str) -> float:
        """The share of the board's `name` a design may use: the budget's fraction, capped by
        the headroom."""
        return min(float(getattr(self, name)), float(getattr(self.headroom, name)))

    def limit_source(self, name: str) -> str:
        """What sets the `name` limit: 'budget' or 'headroom'."""
        return "headroom" if float(getattr(self.headroom, name)) < float(getattr(self, name)) else "budget"

    def describe_limit(self, name: str, board: Board) -> str:
        """'LUT 42560 (80% of pynq-z2, the routing headroom)'."""
        cap = self.caps(board)[name]
        why = "the routing headroom (--headroom)" if self.limit_source(name) == "headroom" else "the budget"
        return f"{resource_label(name)} {cap} ({100 * self.share(name):g}% of {board.name}, {why})"

    def check(self, board: Board, clock_mhz: float) -> None:
        for name in RESOURCES:
            f = getattr(self, name)
            if not (isinstance(f, (int, float)) and 0.0 < f <= 1.0):
                flag = "--bram" if name == "bram18" else f"--{name}"
                raise BudgetError(f"{flag} {f} is a fraction of the {board.name}'s {name.upper()}: give a number in (0, 1]")
        if self.latency_us is not None and not self.latency_us > 0:
            raise BudgetError(f"--latency-us {self.latency_us} must be positive")
        if self.latency_cycles is not None and not self.latency_cycles >= 1:
            raise BudgetError(f"--latency-cycles {self.latency_cycles} must be at least 1")
        if self.latency_us is not None and self.latency_cycles is not None:
            if abs(self.latency_us * clock_mhz - self.latency_cycles) >= 1:
                raise BudgetError(f"--latency-us {self.latency_us:g} is {self.latency_us * clock_mhz:.0f} cycles at "
                                  f"{clock_mhz:g} MHz, not {self.latency_cycles}: give one of the two")
        if self.throughput is not None:
            if not self.throughput > 0:
                raise BudgetError(f"--throughput {self.throughput} must be positive (samples per second)")
            if self.throughput > clock_mhz * 1e6:
                raise BudgetError(f"--throughput {self.throughput:g}/s needs more than one sample per cycle at "
                                  f"{clock_mhz:g} MHz; the fastest design takes one sample per cycle")
        if self.latency_limit(clock_mhz) is None and self.interval_limit(clock_mhz) is None and all(
                getattr(self, n) == 1.0 for n in RESOURCES):
            raise BudgetError("no budget given: set --latency-us, --throughput or a resource fraction (--dsp, --lut, ...)")

    def latency_limit(self, clock_mhz: float) -> int | None:
        """Cycles the latency may take."""
        if self.latency_cycles is not None:
            return int(self.latency_cycles)
        if self.latency_us is not None:
            return int(math.floor(self.latency_us * clock_mhz + 1e-9))
        return None

    def interval_limit(self, clock_mhz: float) -> int | None:
        """Cycles between samples the throughput allows."""
        if self.throughput is None:
            return None
        return max(1, int(math.floor(clock_mhz * 1e6 / self.throughput + 1e-9)))

    def caps(self, board: Board) -> dict[str, int]:
        """Absolute limits: the budget's fraction of the board, capped by the headroom."""
        cap = board.resources.as_dict()
        return {k: int(math.floor(self.share(k) * cap[k] + 1e-9)) for k in RESOURCES}

    def violations(self, board: Board, clock_mhz: float, latency_cycles: int, interval_cycles: int,
                   resources: dict[str, int]) -> list[tuple[str, float, float]]:
        """[(what, value, limit)] of every budget the figures break."""
        out: list[tuple[str, float, float]] = []
        lat = self.latency_limit(clock_mhz)
        if lat is not None and latency_cycles > lat:
            out.append(("latency_cycles", latency_cycles, lat))
        ivl = self.interval_limit(clock_mhz)
        if ivl is not None and interval_cycles > ivl:
            out.append(("interval_cycles", interval_cycles, ivl))
        for k, c in self.caps(board).items():
            if resources.get(k, 0) > c:
                out.append((k, resources[k], c))
        return out

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["headroom"] = self.headroom.as_dict()
        return d
