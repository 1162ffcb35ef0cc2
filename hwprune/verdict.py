"""The fit verdict: does a design fit its board with room to route, and if not, what would.

One line, printed wherever a design is written (`hwprune export`, `prune`, `deploy`, `build`)
and carried by `--json`:

    fit: does not fit pynq-z2: DSP 4189.1% (limit 85%), also LUT 615.6%, FF 321.6% — more than
    the device has; headroom LUT/FF <= 80%, DSP/BRAM/URAM <= 85% of the device; deployment shell
    counted (AXI DMA, SmartConnect, AXI-Stream top: 4,756 LUT); try --reuse-factor 256 (fits:
    binding LUT 47%, latency ~2.66 us by the estimate)

The shares are the estimate's (hwprune.sim.estimate) against the board's capacity; the limit of
each resource is its routing headroom (hwprune.board.Headroom). The binding resource is the one
closest to (or furthest over) its limit. A design that does not fit gets a suggestion: the
smallest uniform reuse factor that fits, else a larger board that fits, else the budget-driven
pruner.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from hwprune.board import DEFAULT_HEADROOM, RESOURCE_NAMES, Headroom, list_boards, load_board, resource_label

REUSE_FACTORS = tuple(2 ** k for k in range(1, 17))  # 2 .. 65536


@dataclass
class Verdict:
    board: str
    fits: bool  # every resource within its headroom
    fits_device: bool  # every resource within the device
    binding: str  # the resource closest to / furthest over its limit
    share: float  # its share of the device
    limit: float  # its headroom share
    shares: dict[str, float]
    headroom: dict[str, float]
    rule: str
    over: list[str] = field(default_factory=list)  # resources over their headroom
    shell: bool = True  # the deployment shell is counted
    shell_lut: int = 0
    suggestion: str = ""
    reuse_factor: int | None = None  # smallest uniform reuse factor that fits (when it helps)
    larger_board: str | None = None

    @property
    def message(self) -> str:
        def pct(v: float) -> str:
            return "inf" if math.isinf(v) else f"{100 * v:.1f}%"

        name = resource_label(self.binding)
        if self.fits:
            head = (f"fits {self.board}: binding {name} {pct(self.share)} (limit {100 * self.limit:g}%)")
        else:
            also = [f"{resource_label(k)} {pct(self.shares[k])}" for k in self.over if k != self.binding]
            head = (f"does not fit {self.board}: {name} {pct(self.share)} (limit {100 * self.limit:g}%)"
                    + (f", also {', '.join(also)}" if also else "")
                    + ("" if self.fits_device else " — more than the device has"))
        shell = (f"deployment shell counted (AXI DMA, SmartConnect, AXI-Stream top: {self.shell_lut:,} LUT)" if self.shell
                 else "HLS IP only: the deployment shell (AXI DMA, SmartConnect, AXI-Stream top) is not counted")
        parts = [head, f"headroom {self.rule}", shell]
        if self.suggestion:
            parts.append(self.suggestion)
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["message"] = self.message
        return d


def _shares(est: Any) -> dict[str, float]:
    return {k: float(v) for k, v in est.utilization().items()}


def _judge(shares: dict[str, float], headroom: dict[str, float]) -> tuple[str, list[str]]:
    """(binding resource, resources over their headroom)."""
    ratio = {k: shares[k] / headroom[k] for k in RESOURCE_NAMES}
    binding = max(RESOURCE_NAMES, key=lambda k: (ratio[k], k == "lut"))
    over = sorted((k for k in RESOURCE_NAMES if ratio[k] > 1.0 + 1e-12), key=lambda k: -ratio[k])
    return binding, over


def fit_verdict(est: Any, headroom: Headroom = DEFAULT_HEADROOM, graph: Any = None, suggest: bool = True) -> Verdict:
    """The verdict of an estimate (hwprune.sim.estimate.DesignEstimate). With the `graph` it
    was computed from, a design that does not fit gets a suggestion."""
    from hwprune.sim.shell import shell_resources

    h = headroom.as_dict()
    shares = _shares(est)
    binding, over = _judge(shares, h)
    v = Verdict(board=est.board, fits=not over, fits_device=all(s <= 1.0 for s in shares.values()), binding=binding,
                share=shares[binding], limit=h[binding], shares=shares, headroom=h, rule=headroom.rule(), over=over,
                shell=est.shell is not None, shell_lut=shell_resources(est.shell).lut if est.shell else 0)
    if not v.fits and suggest and graph is not None:
        _suggest(v, est, headroom, graph)
    return v


def _reestimate(g: Any, board: Any, est: Any) -> Any:
    from hwprune.sim.estimate import estimate

    return estimate(g, board, est.clock_mhz if board.name == est.board else board.default_clock_mhz,
                    fifo_depths=dict(est.fifo), shell=est.shell is not None)


def _suggest(v: Verdict, est: Any, headroom: Headroom, g: Any) -> None:
    """The smallest uniform reuse factor that fits; else a larger board; else pruning."""
    from hwprune.prune.metrics import compute_layers

    board = load_board(est.board)
    h = headroom.as_dict()
    compute = compute_layers(g)
    current = max((l.reuse_factor for l in compute), default=1)
    work = max((l.n_in * l.n_out if type(l).__name__ == "Dense" else l.c_out * l.taps for l in compute), default=1)
    best_share = None
    if compute:
        for rf in (r for r in REUSE_FACTORS if r > current and r // 2 < work):
            saved = [l.reuse_factor for l in compute]
            try:  # the cost models read the layer's reuse factor: set it, estimate, restore
                for l in compute:
                    l.reuse_factor = rf
                e2 = _reestimate(g, board, est)
            finally:
                for l, r in zip(compute, saved):
                    l.reuse_factor = r
            shares = _shares(e2)
            binding, over = _judge(shares, h)
            best_share = (rf, binding, shares[binding])
            if not over:
                v.reuse_factor = rf
                us = e2.latency_cycles / e2.clock_mhz
                v.suggestion = (f"try --reuse-factor {rf} (fits: binding {resource_label(binding)} "
                                f"{100 * shares[binding]:.0f}%, latency ~{us:.4g} us by the estimate)")
                return
    # No reuse factor helps (memory binds, or nothing to share): a larger board?
    mine = board.resources.as_dict()
    for name in sorted(list_boards(), key=lambda n: load_board(n).resources.lut):
        b = load_board(name)
        cap = b.resources.as_dict()
        if name == board.name or all(cap[k] <= mine[k] for k in RESOURCE_NAMES):
            continue
        e2 = _reestimate(g, b, est)
        if e2.fits(headroom):
            shares = _shares(e2)
            binding, _ = _judge(shares, h)
            v.larger_board = name
            v.suggestion = (("no reuse factor fits " + board.name + " (" + _why(best_share) + "); " if compute else "")
                            + f"it fits {name} (binding {resource_label(binding)} {100 * shares[binding]:.0f}%), "
                            f"or prune it to a budget: hwprune prune MODEL --board {board.name} --latency-us ...")
            return
    v.suggestion = (("no reuse factor fits (" + _why(best_share) + ")" if compute else "nothing to share")
                    + f"; no catalog board fits it either: prune and quantize it (hwprune prune MODEL --board "
                    f"{board.name} --latency-us ...)")


def _why(best: tuple[int, str, float] | None) -> str:
    if best is None:
        return "the layers are already fully shared"
    rf, binding, share = best
    return f"at RF {rf} {resource_label(binding)} is still at {100 * share:.0f}%"
