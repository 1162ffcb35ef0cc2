"""Whole-design analytical estimate, composed from each layer's own cost model.

Latency and interval follow the one composition rule of sim/compose.py, shared with the budget
solver and the simulator: the latency is the longest input-to-output path of layer latencies
(the generated top runs independent layers side by side: a pipelined region in io_parallel, a
DATAFLOW region in io_stream), the interval the largest layer II.

* io_parallel: that is the design's schedule; the simulator reports the same figures.
* io_stream: processes overlap (a consumer starts on its producer's first word), so the longest
  path is an upper bound the search can optimize, while the cycle-approximate simulation
  (`hwprune simulate`, sim/dataflow.py) is the latency to use. The FIFOs are costed at the
  depths the design declares (Tensor.fifo_depth, written by hwprune.passes.fifo.set_fifo_depths
  — the depths the generated project declares), and those the IR does not declare at the
  simulator's recommended depths (the smallest that lose no throughput or latency).

With `shell=True` (the default: every project carries a bitstream flow) the deployment shell
the bitstream project adds around the IP — AXI-Stream top, AXI DMA, SmartConnects, reset
(sim/shell.py) — is part of the resources; `shell=False` gives the HLS IP alone.
Formulas and sources: docs/estimate.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from hwprune.board import DEFAULT_HEADROOM, Board, Headroom, Resources, utilization
from hwprune.ir.graph import Graph, IOType
from hwprune.ops.base import CostContext, LayerCost
from hwprune.sim.compose import LatencyDag, design_timing


@dataclass
class LayerEstimate:
    name: str
    op: str
    cost: LayerCost

    def as_dict(self) -> dict[str, Any]:
        c = self.cost
        return dict(name=self.name, op=self.op, latency_cycles=c.latency, ii_cycles=c.ii, dsp=c.dsp, lut=c.lut,
                    ff=c.ff, bram18=c.bram18, uram=c.uram, multipliers=c.multipliers, macs=c.macs,
                    weight_sparsity=c.weight_sparsity, macs_skipped=c.macs_skipped, note=c.note)


@dataclass
class DesignEstimate:
    board: str
    clock_mhz: float
    io_type: str
    latency_cycles: int
    ii_cycles: int
    resources: Resources
    layers: list[LayerEstimate] = field(default_factory=list)
    fifo: dict[str, int] = field(default_factory=dict)
    capacity: Resources | None = None
    network: Resources | None = None  # the HLS IP alone (layers, FIFOs, top-level control)
    shell: list[Any] | None = None  # the deployment shell's parts (sim.shell.ShellPart); None: not counted
    fifo_resources: dict[str, float] = field(default_factory=dict)  # what the FIFOs cost together
    top: dict[str, float] = field(default_factory=dict)  # the top function's fixed overhead
    critical_path: list[str] = field(default_factory=list)  # the layers on one longest path
    # Bytes the AXI DMA moves per sample (both directions, whole 64-bit bus words): the
    # accelerator's ports as pynq_driver packs them. With the embedding on the PS the input is
    # the embedded sequence, not the token ids.
    axi_bytes_per_sample: int = 0
    on_ps: list[str] = field(default_factory=list)  # layers the host runs (the embedding on the PS)

    @property
    def latency_us(self) -> float:
        return self.latency_cycles / self.clock_mhz

    @property
    def throughput_per_s(self) -> float:
        return self.clock_mhz * 1e6 / max(self.ii_cycles, 1)

    def fifo_depth(self, tensor: str) -> int:
        return self.fifo.get(tensor, 2)

    def utilization(self) -> dict[str, float]:
        assert self.capacity is not None
        return {k: (v / c if c else (0.0 if v == 0 else float("inf")))
                for (k, v), c in zip(self.resources.as_dict().items(), self.capacity.as_dict().values())}

    def fits(self, headroom: Headroom = DEFAULT_HEADROOM) -> bool:
        """Every resource within its routing headroom (hwprune.board.Headroom)."""
        h = headroom.as_dict()
        return all(u <= h[k] + 1e-12 for k, u in self.utilization().items())

    def fits_device(self) -> bool:
        """Every resource within the device (placing and routing it is another matter)."""
        return all(u <= 1.0 for u in self.utilization().values())

    def parts(self) -> list[tuple[str, str, dict[str, float]]]:
        """(name, kind, resources) rows that add up to `resources` (before rounding): every
        layer ("layer"), the FIFOs ("fifo"), the top function's control ("top") and every
        part of the deployment shell ("shell")."""
        keys = ("dsp", "lut", "ff", "bram18", "uram")
        rows = [(l.name, "layer", {k: float(getattr(l.cost, k)) for k in keys}) for l in self.layers]
        if any(self.fifo_resources.values()):
            rows.append((f"FIFOs ({len(self.fifo)})", "fifo", {k: float(self.fifo_resources.get(k, 0.0)) for k in keys}))
        rows.append(("top-level control", "top", {k: float(self.top.get(k, 0.0)) for k in keys}))
        for p in self.shell or []:
            rows.append((p.name, "shell", {k: float(v) for k, v in p.resources.as_dict().items()}))
        return rows

    def verdict(self, headroom: Headroom = DEFAULT_HEADROOM, graph: Graph | None = None) -> Any:
        """The fit verdict (hwprune.verdict.Verdict); with the graph, a suggestion that fits."""
        from hwprune.verdict import fit_verdict

        return fit_verdict(self, headroom, graph)

    @property
    def latency_source(self) -> str:
        """What `latency_cycles` is (the composition rule, sim/compose.py), and when another
        figure is the one to trust."""
        if self.io_type == IOType.PARALLEL.value:
            return ("the longest input-to-output path of layer latencies: the pipelined top's schedule "
                    "(hwprune simulate reports the same)")
        return ("an upper bound: the longest input-to-output path of layer latencies, as if no DATAFLOW process "
                "overlapped its producer; the processes overlap and may stall on FIFOs, so the latency to trust "
                "is hwprune simulate's (the one prune and the report give)")

    def as_dict(self) -> dict[str, Any]:
        from hwprune.sim.shell import shell_resources

        return dict(
            board=self.board, clock_mhz=self.clock_mhz, io_type=self.io_type,
            latency_cycles=self.latency_cycles, latency_us=self.latency_us, latency_source=self.latency_source,
            critical_path=list(self.critical_path),
            ii_cycles=self.ii_cycles, throughput_per_s=self.throughput_per_s, resources=self.resources.as_dict(),
            utilization=self.utilization(), fits=self.fits(), fits_device=self.fits_device(),
            network_resources=(self.network or self.resources).as_dict(),
            shell=None if self.shell is None else dict(
                resources=shell_resources(self.shell).as_dict(), parts=[p.as_dict() for p in self.shell]),
            layers=[l.as_dict() for l in self.layers],
            axi_bytes_per_sample=self.axi_bytes_per_sample, on_ps=list(self.on_ps),
        )


# Fixed overhead of the top function (control, interface registers), in LUT/FF.
TOP_LUT = 200
TOP_FF = 300


def estimate(g: Graph, board: Board, clock_mhz: float | None = None,
             fifo_depths: Mapping[str, int] | None = None, shell: bool = True) -> DesignEstimate:
    """`fifo_depths` (io_stream): depth per stream tensor (sim.dataflow.stream_fifos); None:
    the depths the IR declares (passes.fifo), and for the FIFOs it does not, the simulator's
    recommended depths (memoised per design, so a search loop pays the sizing once per
    distinct design point). `shell`: count the deployment shell of the bitstream project
    (sim/shell.py)."""
    clock = clock_mhz or board.default_clock_mhz
    ctx = CostContext(graph=g, io_type=g.io_type, dsp_kind=board.dsp_kind, has_uram=board.resources.uram > 0)
    layers = [LayerEstimate(l.name, l.op_type, l.cost(ctx)) for l in g.layers]
    dsp = sum(l.cost.dsp for l in layers)
    lut = TOP_LUT + sum(l.cost.lut for l in layers)
    ff = TOP_FF + sum(l.cost.ff for l in layers)
    bram = sum(l.cost.bram18 for l in layers)
    uram = sum(l.cost.uram for l in layers)
    fifo: dict[str, int] = {}
    fifo_lut = fifo_bram = 0.0
    costs = {l.name: l.cost for l in layers}
    dag = LatencyDag.of(g)
    lat = {n: c.latency for n, c in costs.items()}
    timing = design_timing(dag, lat, (c.ii for c in costs.values()))
    latency, ii = timing.latency, timing.interval
    if g.io_type == IOType.STREAM:
        from hwprune.sim.dataflow import MIN_DEPTH, declared_fifo_depths, recommended_fifo_depths, stream_fifos
        from hwprune.sim.resources import fifo_cost

        if fifo_depths is None:
            fifo_depths = declared_fifo_depths(g)
            if len(fifo_depths) < len(stream_fifos(g)):
                fifo_depths = {**recommended_fifo_depths(g, ctx, costs), **fifo_depths}
        for t in stream_fifos(g):
            fifo[t] = int(fifo_depths.get(t, MIN_DEPTH))

        for t, depth in fifo.items():
            width = (g.tensor(t).type.width if g.tensor(t).type else 16) * g.tensor(t).word
            m = fifo_cost(depth, width, g.tensor(t).fifo_impl)
            bram += m.bram18
            lut += m.lut
            fifo_bram += m.bram18
            fifo_lut += m.lut
    network = Resources(dsp=int(round(dsp)), lut=int(round(lut)), ff=int(round(ff)), bram18=int(round(bram + 0.499)),
                        uram=int(round(uram + 0.499)))
    parts = None
    if shell:
        from hwprune.sim.shell import shell_parts

        parts = shell_parts(g)
        for p in parts:
            r = p.resources
            dsp, lut, ff, bram, uram = dsp + r.dsp, lut + r.lut, ff + r.ff, bram + r.bram18, uram + r.uram
    res = Resources(dsp=int(round(dsp)), lut=int(round(lut)), ff=int(round(ff)), bram18=int(round(bram + 0.499)),
                    uram=int(round(uram + 0.499)))
    path = dag.critical_path(lat)
    from hwprune.backend.axis import accelerator_spec

    bus = accelerator_spec(g, board.name, clock, "")
    return DesignEstimate(board.name, clock, g.io_type.value, int(latency), int(max(ii, 1)), res, layers, fifo,
                          board.resources, network, parts, dict(lut=fifo_lut, bram18=fifo_bram),
                          dict(lut=float(TOP_LUT), ff=float(TOP_FF)), path,
                          axi_bytes_per_sample=8 * (bus.words_in + bus.words_out),
                          on_ps=[l.name for l in g.host_layers])
