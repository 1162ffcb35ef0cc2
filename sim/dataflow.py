"""Cycle-approximate simulation of an io_stream design over a batch of samples.

Every layer with a kernel is a DATAFLOW process; the tensors between them are FIFOs of finite
depth (a full FIFO stalls its writer, an empty one its reader). A process replays, sample
after sample, the loop trips its kernel executes (`stream_process` in each op module, e.g. the
window engine's alternating row reads and row emits): a trip starts when the previous one has
left its cycles, every word it reads has arrived and every word it writes will find a free
slot, and its words leave `latency` cycles after it starts. Graph inputs deliver a word
whenever asked (a saturating DMA); graph outputs always accept.

Times follow from max-plus recurrences (a trip's start is the max of the times it waits for),
so the order in which processes are advanced does not matter: each process runs until it
needs a time that is not known yet (a word its producer has not written, a slot its consumer
has not freed), and is resumed when that neighbour moves on. A pass in which nobody can move
with processes left unfinished is a deadlock, reported with what each process waits for.

FIFO sizing (`recommended_fifo_depths`): with unbounded FIFOs every event happens as early as
it can, and a deeper FIFO never delays any event; the recommended depths are the smallest
(greedily, per FIFO) for which every sample completes exactly when it does with unbounded
FIFOs, so neither throughput nor latency is lost. Formulas and limits: docs/estimate.md.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from hwprune.board import Board, Resources, load_board
from hwprune.errors import ConfigError, HwpruneInputError
from hwprune.ir.graph import Graph, IOType, Layer
from hwprune.ops.base import CostContext, LayerCost, ProcessModel
from hwprune.sim.compose import LatencyDag, design_timing

log = logging.getLogger(__name__)

UNBOUNDED = 1 << 60
# Samples the FIFO sizing simulates: the first fills the empty pipeline, the others show the
# steady state (a producer running ahead into the next sample). `simulate` re-checks the
# depths at the requested batch and says whether they still match unbounded FIFOs.
SIZING_BATCH = 6
MIN_DEPTH = 2  # Vitis HLS's default stream depth; a 1-deep FIFO halves a 1-word/cycle stream


# ---------------------------------------------------------------- the process network

def _is_alias(layer: Layer, g: Graph) -> bool:
    is_alias = getattr(layer, "is_alias", None)
    return bool(is_alias is not None and is_alias(g, g.io_type))


def stream_roots(g: Graph) -> dict[str, str]:
    """Tensor -> the tensor whose stream carries it: a reshape that only relabels (same word)
    has no kernel, its output is its input's stream (as hls_project.hls_names declares it)."""
    root: dict[str, str] = {}
    for layer in g.layers:
        if _is_alias(layer, g):
            root[layer.output] = root.get(layer.inputs[0], layer.inputs[0])
    return root


def stream_fifos(g: Graph) -> list[str]:
    """The FIFOs the generated top function declares (one `#pragma HLS STREAM` each): every
    stream between two kernels, named by its producer's output tensor. Ports (graph inputs and
    outputs) are AXI streams, not FIFOs."""
    root = stream_roots(g)
    ports = {root.get(t, t) for t in (*g.inputs, *g.outputs)}
    out: list[str] = []
    for layer in g.layers:
        if _is_alias(layer, g):
            continue
        for t in layer.outputs:
            if t not in ports and t not in out:
                out.append(t)
    return out


def declared_fifo_depths(g: Graph) -> dict[str, int]:
    """The FIFO depths the IR declares (Tensor.fifo_depth, written by
    hwprune.passes.fifo.set_fifo_depths), for the FIFOs that have one; empty in io_parallel."""
    if g.io_type != IOType.STREAM:
        return {}
    return {t: int(g.tensor(t).fifo_depth) for t in stream_fifos(g) if g.tensor(t).fifo_depth is not None}


@dataclass(frozen=True)
class Fifo:
    name: str  # the stream's tensor (its producer's output)
    words: int  # per sample
    producer: int  # process index; -1 for a graph input
    consumer: int  # process index; -1 for a graph output (or an unread tensor)


@dataclass(frozen=True)
class Process:
    name: str
    op: str
    model: ProcessModel
    inputs: tuple[int, ...]  # FIFO index per input port
    outputs: tuple[int, ...]  # FIFO index per output port


@dataclass
class Network:
    processes: list[Process]
    fifos: list[Fifo]
    key: tuple = ()
    _ops: list[list[tuple]] | None = field(default=None, repr=False)

    @property
    def internal(self) -> list[int]:
        return [i for i, f in enumerate(self.fifos) if f.producer >= 0 and f.consumer >= 0]

    def ops(self) -> list[list[tuple]]:
        """Per process, its trips for one sample as (cycles, read FIFOs, ((write FIFO, k), ...),
        latency): the k-th word a trip writes to one FIFO leaves k cycles after the first."""
        if self._ops is None:
            out = []
            for p in self.processes:
                trips: list[tuple] = []
                for st in p.model.steps:
                    seen: dict[int, int] = {}
                    writes = []
                    for port in st.writes:
                        f = p.outputs[port]
                        writes.append((f, seen.get(f, 0)))
                        seen[f] = seen.get(f, 0) + 1
                    op = (st.cycles, tuple(p.inputs[i] for i in st.reads), tuple(writes), st.latency)
                    trips.extend([op] * st.count)
                out.append(trips)
            self._ops = out
        return self._ops

    def depth_list(self, depths: Mapping[str, int] | None) -> list[int]:
        """Per FIFO depth; ports and FIFOs without an entry are unbounded (None: all)."""
        if depths is None:
            return [UNBOUNDED] * len(self.fifos)
        out = []
        for f in self.fifos:
            d = depths.get(f.name) if f.producer >= 0 and f.consumer >= 0 else None
            out.append(UNBOUNDED if d is None else int(d))
        return out


def build_network(g: Graph, ctx: CostContext, costs: Mapping[str, LayerCost]) -> Network:
    """The io_stream design as processes (one per kernel, from each op's `stream_process`)
    joined by FIFOs."""
    if g.io_type != IOType.STREAM:
        raise ValueError("build_network needs an io_stream graph")
    root = stream_roots(g)
    index: dict[str, int] = {}
    producer: dict[str, int] = {}
    consumer: dict[str, int] = {}
    processes: list[Process] = []

    def fifo(t: str) -> int:
        r = root.get(t, t)
        if r not in index:
            index[r] = len(index)
        return index[r]

    for layer in g.layers:
        if layer.output in root:
            continue  # an aliasing reshape: no kernel
        model = layer.stream_process(ctx, costs[layer.name])
        k = len(processes)
        ins = tuple(fifo(t) for t in layer.inputs)
        outs = tuple(fifo(t) for t in layer.outputs)
        for port, t in enumerate(layer.inputs):
            r = root.get(t, t)
            n = ctx.words(r)
            if model.reads(port) != n:
                raise AssertionError(f"{layer.name}: its process reads {model.reads(port)} words of {t}, not {n}")
            if r in consumer:
                raise AssertionError(f"stream {r} has two readers ({processes[consumer[r]].name}, {layer.name}): clones missing")
            consumer[r] = k
        for port, t in enumerate(layer.outputs):
            n = ctx.words(t)
            if model.writes(port) != n:
                raise AssertionError(f"{layer.name}: its process writes {model.writes(port)} words of {t}, not {n}")
            producer[t] = k
        processes.append(Process(layer.name, layer.op_type, model, ins, outs))
    names = sorted(index, key=index.__getitem__)
    fifos = [Fifo(n, ctx.words(n), producer.get(n, -1), consumer.get(n, -1)) for n in names]
    key = (tuple((p.model.steps, p.inputs, p.outputs) for p in processes), tuple((f.words, f.producer, f.consumer) for f in fifos))
    return Network(processes, fifos, key)


def cost_context(g: Graph, board: Board) -> CostContext:
    return CostContext(graph=g, io_type=g.io_type, dsp_kind=board.dsp_kind, has_uram=board.resources.uram > 0)


# ---------------------------------------------------------------- the event loop

@dataclass
class Trace:
    """What one simulation run produced (times in cycles from the first input read)."""

    batch: int
    write_times: list[list[int]]  # per FIFO, the cycle each word was written
    read_times: list[list[int]]  # per FIFO, the cycle each word was read
    busy: list[int]
    starved: list[int]
    blocked: list[int]
    done: list[int]  # samples each process completed
    waits: list[tuple[int, int, int] | None]  # unfinished process: (0 data / 1 space, FIFO, its cycle)
    starts: list[list[int]] | None = None  # per process, the start cycle of every trip (when recorded)

    @property
    def deadlocked(self) -> bool:
        return any(d < self.batch for d in self.done)


def run(net: Network, depths: list[int], batch: int, record: bool = False) -> Trace:
    """Simulate `batch` samples with the given FIFO depths (one per FIFO; UNBOUNDED allowed)."""
    ops = net.ops()
    nf, n_proc = len(net.fifos), len(net.processes)
    wt: list[list[int]] = [[] for _ in range(nf)]
    rt: list[list[int]] = [[] for _ in range(nf)]
    source = [f.producer < 0 for f in net.fifos]
    prod = [f.producer for f in net.fifos]
    cons = [f.consumer for f in net.fifos]
    idx, smp, clock = [0] * n_proc, [0] * n_proc, [0] * n_proc
    busy, starved, blocked = [0] * n_proc, [0] * n_proc, [0] * n_proc
    waits: list[tuple[int, int, int] | None] = [None] * n_proc
    starts: list[list[int]] | None = [[] for _ in range(n_proc)] if record else None
    queue = deque(range(n_proc))
    queued = [True] * n_proc
    D = depths
    while queue:
        p = queue.popleft()
        queued[p] = False
        trips = ops[p]
        n = len(trips)
        i, s, t = idx[p], smp[p], clock[p]
        bz, st, bl = busy[p], starved[p], blocked[p]
        rec = starts[p] if starts is not None else None
        wait = None
        while s < batch:
            cyc, reads, writes, lat = trips[i]
            start = t
            for f in reads:
                if source[f]:
                    continue
                wf = wt[f]
                j = len(rt[f])
                if j >= len(wf):
                    wait = (0, f)
                    break
                a = wf[j] + 1  # a word is readable the cycle after it was written
                if a > start:
                    start = a
            if wait is not None:
                break
            ready = start
            for g, k in writes:
                m = len(wt[g]) + k - D[g]
                if m >= 0:
                    rg = rt[g]
                    if m >= len(rg):
                        wait = (1, g)
                        break
                    # The slot of word m (read at rg[m]) is free from the next cycle on; the
                    # trip starts late enough for its word to find it (the pipeline stalls).
                    a = rg[m] + 1 - lat - k
                    if a > start:
                        start = a
            if wait is not None:
                break
            for f in reads:
                rt[f].append(start)
            for g, k in writes:
                wt[g].append(start + lat + k)
            if rec is not None:
                rec.append(start)
            st += ready - t
            bl += start - ready
            bz += cyc
            t = start + cyc
            i += 1
            if i == n:
                i = 0
                s += 1
        moved = (i, s) != (idx[p], smp[p])
        idx[p], smp[p], clock[p] = i, s, t
        busy[p], starved[p], blocked[p] = bz, st, bl
        waits[p] = None if wait is None else (wait[0], wait[1], t)
        if not moved:
            continue  # nothing a neighbour waits for has changed
        proc = net.processes[p]
        for g in proc.outputs:  # readers waiting for these words
            q = cons[g]
            if q >= 0 and not queued[q] and waits[q] is not None and waits[q][0] == 0 and waits[q][1] == g:  # type: ignore[index]
                queued[q] = True
                queue.append(q)
        for f in proc.inputs:  # writers waiting for these slots
            q = prod[f]
            if q >= 0 and not queued[q] and waits[q] is not None and waits[q][0] == 1 and waits[q][1] == f:  # type: ignore[index]
                queued[q] = True
                queue.append(q)
    return Trace(batch, wt, rt, busy, starved, blocked, smp, waits, starts)


def high_water(tr: Trace, f: int) -> int:
    """Most words FIFO f held at once: at each write, the words written so far minus those
    read in earlier cycles."""
    w = tr.write_times[f]
    if not w:
        return 0
    reads = np.searchsorted(np.asarray(tr.read_times[f], dtype=np.int64), np.asarray(w, dtype=np.int64), side="left")
    return int((np.arange(1, len(w) + 1) - reads).max())


def completions(net: Network, tr: Trace) -> list[int | None]:
    """Per sample, the cycle its last output word was written (None: never)."""
    out: list[int | None] = []
    sinks = [k for k, f in enumerate(net.fifos) if f.consumer < 0 and f.producer >= 0]
    for s in range(tr.batch):
        c: int | None = -1
        for k in sinks:
            w = tr.write_times[k]
            need = (s + 1) * net.fifos[k].words
            if len(w) < need:
                c = None
                break
            c = max(c, w[need - 1])  # type: ignore[type-var]
        out.append(c)
    return out


def first_reads(net: Network, tr: Trace) -> list[int | None]:
    """Per sample, the cycle its first input word was read."""
    out: list[int | None] = []
    srcs = [k for k, f in enumerate(net.fifos) if f.producer < 0 and f.consumer >= 0]
    for s in range(tr.batch):
        times = [tr.read_times[k][s * net.fifos[k].words] for k in srcs if len(tr.read_times[k]) > s * net.fifos[k].words]
        out.append(min(times) if times else None)
    return out


# ---------------------------------------------------------------- FIFO sizing

# Keyed by the network's token patterns, which do not name the FIFOs: two designs with the
# same patterns (and different tensor names) share an entry, so it holds depths by FIFO index.
_SIZED: dict[tuple, tuple[tuple[int, int], ...]] = {}
_SIZED_MAX = 256


def recommended_fifo_depths(g: Graph, ctx: CostContext, costs: Mapping[str, LayerCost],
                            batch: int = SIZING_BATCH) -> dict[str, int]:
    """The smallest FIFO depths (per FIFO, greedily) with which every one of `batch` samples
    completes exactly when it does with unbounded FIFOs. Keyed by stream tensor; memoised on
    the design's token patterns, so repeated estimates of one design point are cheap."""
    net = build_network(g, ctx, costs)
    return size_network(net, batch)


def size_network(net: Network, batch: int = SIZING_BATCH) -> dict[str, int]:
    key = (net.key, batch)
    hit = _SIZED.get(key)
    if hit is not None:
        return {net.fifos[f].name: d for f, d in hit}
    internal = net.internal
    ref = run(net, net.depth_list(None), batch, record=True)
    target = completions(net, ref)

    def ok(d: list[int]) -> bool:
        tr = run(net, d, batch)
        return not tr.deadlocked and completions(net, tr) == target

    depth = net.depth_list(None)
    for f in internal:
        depth[f] = MIN_DEPTH
    if internal and not ok(depth):
        # Start from depths that are enough by construction: the occupancy of the latest
        # schedule that still completes every sample on time.
        late = _latest_schedule_depths(net, ref, target)
        for f in internal:
            depth[f] = late[f]
        if not ok(depth):  # cannot happen unless a process model breaks the recurrences
            log.debug("latest-schedule FIFO depths fall short; using the unbounded run's occupancy")
            for f in internal:
                depth[f] = max(MIN_DEPTH, high_water(ref, f))
        # Then shrink each FIFO to the smallest depth that keeps the completions: a deeper
        # FIFO never delays an event, so the test is monotone and bisection finds it. One
        # FIFO's shrinking can let another shrink further: repeat until nothing moves.
        changed = True
        while changed:
            changed = False
            for f in sorted(internal, key=lambda f: -depth[f]):
                if depth[f] <= MIN_DEPTH:
                    continue
                trial = list(depth)
                trial[f] = depth[f] - 1
                if not ok(trial):
                    continue
                lo, hi = MIN_DEPTH, depth[f] - 1
                probe = MIN_DEPTH  # most FIFOs need no more than the minimum: try it first
                while lo < hi:
                    trial[f] = probe
                    if ok(trial):
                        hi = probe
                    else:
                        lo = probe + 1
                    probe = (lo + hi) // 2
                depth[f] = hi
                changed = True
    out = {net.fifos[f].name: depth[f] for f in internal}
    if len(_SIZED) >= _SIZED_MAX:
        _SIZED.clear()
    _SIZED[key] = tuple((f, depth[f]) for f in internal)
    return out


def _latest_schedule_depths(net: Network, ref: Trace, target: list[int | None]) -> list[int]:
    """Depths under which the unbounded run's completions are still met: schedule every trip
    as late as it can go (backwards from each sample's completion, consumers before
    producers) and take each FIFO's occupancy in that schedule. It obeys every constraint
    of the design and these depths, and the simulation computes the earliest schedule, so
    with these depths no sample completes later."""
    ops = net.ops()
    nf = len(net.fifos)
    late_reads: list[list[int]] = [[] for _ in range(nf)]
    late_writes: list[list[int]] = [[] for _ in range(nf)]
    for p in range(len(net.processes) - 1, -1, -1):  # processes are in topological order
        proc = net.processes[p]
        trips, n = ops[p], len(ops[p])
        asap = ref.starts[p]  # type: ignore[index]
        wcount = {f: len(ref.write_times[f]) for f in proc.outputs}
        rcount = {f: len(ref.read_times[f]) for f in proc.inputs}
        lw = {f: [0] * c for f, c in wcount.items()}
        lr = {f: [0] * c for f, c in rcount.items()}
        nxt: int | None = None
        for k in range(len(asap) - 1, -1, -1):
            cyc, reads, writes, lat = trips[k % n]
            dl = None if nxt is None else nxt - cyc
            for g, off in writes:
                if off == 0:
                    wcount[g] -= sum(1 for h, _ in writes if h == g)
            for g, off in writes:
                m = wcount[g] + off
                fifo = net.fifos[g]
                if fifo.consumer >= 0:
                    bound = late_reads[g][m] - 1 - lat - off
                else:
                    bound = target[m // fifo.words] - lat - off  # type: ignore[operator]
                dl = bound if dl is None else min(dl, bound)
            if dl is None:
                dl = asap[k]
            for g, off in writes:
                lw[g][wcount[g] + off] = dl + lat + off
            for f in reads:
                rcount[f] -= 1
                lr[f][rcount[f]] = dl
            nxt = dl
        for f, v in lw.items():
            late_writes[f] = v
        for f, v in lr.items():
            late_reads[f] = v
    depth = [MIN_DEPTH] * nf
    for f in net.internal:
        w = np.asarray(late_writes[f], dtype=np.int64)
        occ = np.arange(1, len(w) + 1) - np.searchsorted(np.asarray(late_reads[f], dtype=np.int64), w, side="left")
        depth[f] = max(MIN_DEPTH, int(occ.max()) if len(occ) else 0)
    return depth


# ---------------------------------------------------------------- results

@dataclass
class LayerSim:
    name: str
    op: str
    latency_cycles: int  # the layer's own cost model (first input to last output, one sample)
    ii_cycles: int
    busy_cycles: int  # over the batch: cycles its loops ran (their IIs summed)
    starved_cycles: int  # waiting for an input word
    blocked_cycles: int  # waiting for room in an output FIFO
    reads: int  # stream words over the batch
    writes: int
    batch: int
    fifos: dict[str, dict[str, int]] = field(default_factory=dict)  # output FIFO -> depth, high_water

    @property
    def busy_per_sample(self) -> float:
        return self.busy_cycles / max(self.batch, 1)

    @property
    def fifo_high_water(self) -> int | None:
        return max((f["high_water"] for f in self.fifos.values()), default=None)

    def as_dict(self) -> dict[str, Any]:
        return dict(name=self.name, op=self.op, latency_cycles=self.latency_cycles, ii_cycles=self.ii_cycles,
                    busy_cycles=self.busy_cycles, busy_per_sample=self.busy_per_sample,
                    starved_cycles=self.starved_cycles, blocked_cycles=self.blocked_cycles,
                    stall_cycles=self.starved_cycles + self.blocked_cycles, reads=self.reads, writes=self.writes,
                    fifo_high_water=self.fifo_high_water, fifos=self.fifos)


@dataclass
class SimResult:
    board: str
    clock_mhz: float
    io_type: str
    batch: int
    latency_cycles: int | None  # first sample, empty pipeline: first input word read to last output word
    interval_cycles: float | None  # steady state: cycles between successive sample completions
    completion_cycles: list[int | None]
    sample_latency_cycles: list[int | None]  # per sample (later ones include waiting in FIFOs)
    resources: Resources
    capacity: Resources
    estimate_latency_cycles: int  # the analytical estimate's: the longest path of layer latencies (sim/compose.py)
    estimate_ii_cycles: int
    layers: list[LayerSim] = field(default_factory=list)
    fifo_depths: dict[str, int] = field(default_factory=dict)  # simulated with
    recommended_fifo_depths: dict[str, int] = field(default_factory=dict)
    fifo_high_water: dict[str, int] = field(default_factory=dict)
    deadlock: list[str] = field(default_factory=list)  # what each stuck process waits for
    # The same batch with unbounded FIFOs: the best these processes can do.
    unbounded_latency_cycles: int | None = None
    unbounded_interval_cycles: float | None = None

    @property
    def latency_us(self) -> float | None:
        return None if self.latency_cycles is None else self.latency_cycles / self.clock_mhz

    @property
    def throughput_per_s(self) -> float | None:
        return None if not self.interval_cycles else self.clock_mhz * 1e6 / self.interval_cycles

    @property
    def fifos_sufficient(self) -> bool:
        """Every sample completed as with unbounded FIFOs."""
        return not self.deadlock and self.latency_cycles == self.unbounded_latency_cycles and \
            self.interval_cycles == self.unbounded_interval_cycles

    def as_dict(self) -> dict[str, Any]:
        return dict(board=self.board, clock_mhz=self.clock_mhz, io_type=self.io_type, batch=self.batch,
                    latency_cycles=self.latency_cycles, latency_us=self.latency_us,
                    interval_cycles=self.interval_cycles, throughput_per_s=self.throughput_per_s,
                    sample_latency_cycles=self.sample_latency_cycles, completion_cycles=self.completion_cycles,
                    estimate_latency_cycles=self.estimate_latency_cycles, estimate_ii_cycles=self.estimate_ii_cycles,
                    unbounded_latency_cycles=self.unbounded_latency_cycles,
                    unbounded_interval_cycles=self.unbounded_interval_cycles, fifos_sufficient=self.fifos_sufficient,
                    resources=self.resources.as_dict(), fifo_depths=self.fifo_depths,
                    recommended_fifo_depths=self.recommended_fifo_depths, fifo_high_water=self.fifo_high_water,
                    deadlock=self.deadlock, layers=[l.as_dict() for l in self.layers])


def _interval(done: list[int | None], fallback: float) -> float | None:
    """Mean cycles between completions over the second half of the batch (the first samples
    fill the pipeline); with one sample nothing is observed: the slowest process's busy cycles."""
    if any(c is None for c in done):
        return None
    n = len(done)
    if n == 1:
        return float(fallback)
    h = n // 2 if n > 2 else 0
    return (done[-1] - done[h]) / (n - 1 - h)  # type: ignore[operator]


def _latencies(done: list[int | None], first: list[int | None]) -> list[int | None]:
    return [None if c is None or f is None else c - f + 1 for c, f in zip(done, first)]


def _depth_overrides(net: Network, fifo_depths: int | Mapping[str, int] | None, rec: dict[str, int]) -> dict[str, int]:
    if fifo_depths is None:
        return dict(rec)
    if isinstance(fifo_depths, int):
        if fifo_depths < 1:
            raise ConfigError(f"FIFO depth {fifo_depths} must be at least 1")
        return {n: fifo_depths for n in rec}
    unknown = sorted(set(fifo_depths) - set(rec))
    if unknown:
        raise ConfigError(f"no FIFO named {unknown[0]!r}; the design's FIFOs are: {', '.join(rec) or 'none'}")
    bad = [n for n, d in fifo_depths.items() if int(d) < 1]
    if bad:
        raise ConfigError(f"FIFO {bad[0]!r}: depth {fifo_depths[bad[0]]} must be at least 1")
    return {**rec, **{n: int(d) for n, d in fifo_depths.items()}}


def simulate(graph: Graph, board: str | Board, batch: int = 16, clock_mhz: float | None = None,
             fifo_depths: int | Mapping[str, int] | None = None) -> SimResult:
    """Simulate `batch` samples through the design. io_stream: the process network with the
    FIFO depths the IR declares (hwprune.passes.fifo), the recommended ones for FIFOs it does
    not, and `fifo_depths` over both (one depth for every FIFO, or some by stream tensor name);
    io_parallel: the pipelined top function, composed by the rule the estimate and the budget
    solver use (sim/compose.py)."""
    from hwprune.sim.estimate import estimate

    b = board if isinstance(board, Board) else load_board(board)
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise HwpruneInputError(f"batch {batch!r} must be a positive whole number of samples")
    batch = int(batch)
    clock = clock_mhz or b.default_clock_mhz
    ctx = cost_context(graph, b)
    if graph.io_type == IOType.PARALLEL:
        # The pipelined top function: no FIFOs, nothing stalls; a sample finishes the longest
        # path of layer latencies after it enters, and one enters every max-II cycles (the one
        # composition rule, sim/compose.py, as the estimate and the solver use it).
        if fifo_depths is not None:
            raise ConfigError("FIFO depths apply to io_stream designs; this one is io_parallel")
        costs = {l.name: l.cost(ctx) for l in graph.layers}
        timing = design_timing(LatencyDag.of(graph), {n: c.latency for n, c in costs.items()}, (c.ii for c in costs.values()))
        est = estimate(graph, b, clock)  # resources
        ii = timing.interval
        done: list[int | None] = [timing.latency - 1 + s * ii for s in range(batch)]
        first: list[int | None] = [s * ii for s in range(batch)]
        kernels = [l for l in graph.layers if not _is_alias(l, graph)]  # reshapes alias their input
        layers = [LayerSim(l.name, l.op_type, costs[l.name].latency, costs[l.name].ii, costs[l.name].ii * batch,
                           0, 0, 0, 0, batch) for l in kernels]
        lat = _latencies(done, first)
        return SimResult(b.name, clock, graph.io_type.value, batch, lat[0], float(ii), done, lat, est.resources,
                         b.resources, est.latency_cycles, est.ii_cycles, layers,
                         unbounded_latency_cycles=lat[0], unbounded_interval_cycles=float(ii))

    costs = {l.name: l.cost(ctx) for l in graph.layers}
    net = build_network(graph, ctx, costs)
    rec = size_network(net)
    # The depths the design declares (the IR's, passes.fifo), the recommended ones where it
    # declares none, and `fifo_depths` over both.
    used = _depth_overrides(net, fifo_depths, {**rec, **declared_fifo_depths(graph)})
    est = estimate(graph, b, clock, fifo_depths=used)
    slowest = max((p.model.cycles for p in net.processes), default=1)

    tr = run(net, net.depth_list(used), batch)
    ref = run(net, net.depth_list(None), batch)
    done = completions(net, tr)
    lat = _latencies(done, first_reads(net, tr))
    ref_done = completions(net, ref)
    ref_lat = _latencies(ref_done, first_reads(net, ref))

    hw = {net.fifos[f].name: high_water(tr, f) for f in net.internal}
    layers = []
    for k, p in enumerate(net.processes):
        c = costs[p.name]
        fifos = {net.fifos[f].name: dict(depth=used[net.fifos[f].name], high_water=hw[net.fifos[f].name])
                 for f in p.outputs if net.fifos[f].name in hw}
        layers.append(LayerSim(p.name, p.op, c.latency, c.ii, tr.busy[k], tr.starved[k], tr.blocked[k],
                               sum(len(tr.read_times[f]) for f in p.inputs),
                               sum(len(tr.write_times[f]) for f in p.outputs), batch, fifos))
    stuck = []
    for k, w in enumerate(tr.waits):
        if w is None or tr.done[k] >= batch:
            continue
        kind, f, t = w
        fifo = net.fifos[f]
        what = (f"writing {fifo.name} (full, depth {used.get(fifo.name)})" if kind == 1
                else f"waiting for a word of {fifo.name}")
        stuck.append(f"{net.processes[k].name}: sample {tr.done[k]}, cycle {t}: {what}")
    if stuck:
        log.warning("the design deadlocks with these FIFO depths: %s", "; ".join(stuck))
    return SimResult(b.name, clock, graph.io_type.value, batch, lat[0], _interval(done, slowest), done, lat,
                     est.resources, b.resources, est.latency_cycles, est.ii_cycles, layers, dict(used), rec, hw, stuck,
                     ref_lat[0], _interval(ref_done, slowest))
