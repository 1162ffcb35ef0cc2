"""One latency composition rule (sim/compose.py) for the estimate, the budget solver and the
simulator's io_parallel path, and the FIFO depths the IR carries (passes/fifo.py) for the HLS
writer, the manifest, the estimate and the simulator.

The rule against an independent count (the issue's "Done when"): on a three-branch design the
generated top's calls, read from its C++ (tests/top_schedule.py), weighted by the host build's
loop counters (-DHWP_COUNT). One g++ build; every other test here builds nothing. The same
comparison over every layer kind, both io types, is in test_simulate.py (slow)."""

from __future__ import annotations

import copy
import itertools
import json
import re

import numpy as np
import pytest

import hwprune
from hwprune.board import load_board
from hwprune.cli import format_estimate
from hwprune.codesign.solver import Limits, _solve, predict
from hwprune.codesign.space import Choice, DesignSpace, Option, Site
from hwprune.errors import ConfigError
from hwprune.ir.graph import IOType
from hwprune.passes.fifo import recommended_depths, set_fifo_depths
from hwprune.precision import LayerPrecision, PrecisionConfig
from hwprune.project import build_graph, load_project_graph
from hwprune.sim.compose import LatencyDag, compose
from hwprune.sim.dataflow import cost_context, simulate, stream_fifos
from hwprune.sim.estimate import estimate
from test_simulate import branches_model, residual_model, textcnn_model

BOARD = load_board("pynq-z2")
CONVS = ("conv_a", "conv_b", "conv_c", "conv_d")
BRANCH_RF = dict(conv_a=4, conv_b=3, conv_c=3, conv_d=3, fc=2)


def _one_option_space(g, costs) -> DesignSpace:
    """A design space over `g` whose sites are its convs, each with the one option `g` has."""
    sites = [Site(n, n, "conv", [Option(Choice(reuse_factor=g.layer(n).reuse_factor), 0.0, costs[n])]) for n in CONVS]
    fixed = {n: c.latency for n, c in costs.items() if n not in CONVS}
    return DesignSpace(sites, dict(dsp=0.0, lut=0.0, ff=0.0, bram18=0.0, uram=0.0), LatencyDag.of(g), fixed,
                       max(c.ii for n, c in costs.items() if n not in CONVS), BOARD, 100.0, "parallel")


def test_one_latency_function_against_the_counted_schedule_of_a_multi_branch_design(tmp_path):
    """io_parallel, three conv branches (a residual add of two computing branches, concatenated
    with a third). The estimate's, the solver's and the simulator's latency and interval are
    `compose` of the layer costs, and against the count:

    * the rule fed the counted cycles per layer is exactly the longest path through the calls
      of the generated top (its C++, not the IR): the dependencies it composes over are the
      top's;
    * its latency is at least that counted longest path and at most the path with 10% and 16
      cycles of pipeline depth per layer; the sum of the layer latencies (what the estimate
      gave before) exceeds that bound, so a summing rule fails here;
    * its interval is within 10% of the slowest layer's counted cycles."""
    from hwprune.backend.csim import count_loops
    from top_schedule import longest_path, top_calls

    samples = 3
    prj = hwprune.export(branches_model(), tmp_path / "prj", board=BOARD, io_type="parallel",
                         precision=PrecisionConfig(layer_name={k: LayerPrecision(reuse_factor=v) for k, v in BRANCH_RF.items()}))
    g = load_project_graph(prj)
    x = np.random.default_rng(5).normal(size=(samples, 4, 8, 8)).astype(np.float32)
    counts = count_loops(prj, [x])
    assert all(c.calls == samples for c in counts.values())
    per = {k: c.cycles / c.calls for k, c in counts.items()}
    layer_of = {c: n[2:] for n, c in g.c_names().items() if n.startswith("L:")}
    calls = top_calls(prj, layer_of)
    assert {c.layer for c in calls} == set(per)
    counted = longest_path(calls, per)
    dag = LatencyDag.of(g)
    assert dag.latency(per) == pytest.approx(counted)

    est = estimate(g, BOARD)
    costs = {l.name: l.cost for l in est.layers}
    rule = compose(g, costs)
    space = _one_option_space(g, costs)
    solver = predict(space, [s.options[0] for s in space.sites])
    sim = simulate(g, BOARD, batch=4)
    figures = {"estimate": (est.latency_cycles, est.ii_cycles), "solver": (solver["latency_cycles"], solver["interval_cycles"]),
               "simulate": (sim.latency_cycles, sim.interval_cycles)}
    assert set(figures.values()) == {(rule.latency, rule.interval)}, figures

    upper = longest_path(calls, {k: 1.1 * v + 16 for k, v in per.items()})
    assert counted <= rule.latency <= upper, (counted, rule.latency, upper)
    summed = sum(c.latency for c in costs.values())
    assert summed > upper, (summed, upper)
    slowest = max(per.values())
    assert abs(rule.interval - slowest) <= 0.1 * slowest, (rule.interval, slowest)


def _paths(dag: LatencyDag) -> list[list[int]]:
    """Every input-to-output path, by brute force (the DAG is small)."""
    succ = {k: [j for j, ps in enumerate(dag.preds) if k in ps] for k in range(len(dag.layers))}
    out = []

    def walk(k: int, path: list[int]) -> None:
        path = path + [k]
        if k in dag.sinks:
            out.append(path)
        for j in succ[k]:
            walk(j, path)

    for k, ps in enumerate(dag.preds):
        if not ps:
            walk(k, [])
    return out


@pytest.mark.parametrize("io", ["parallel", "stream"])
def test_the_rule_is_the_longest_path_and_every_figure_uses_it(io):
    g = build_graph(branches_model(), PrecisionConfig(layer_name={c: LayerPrecision(reuse_factor=r) for c, r in
                                                                  zip(CONVS, (4, 3, 3, 2))}), io)
    est = estimate(g, BOARD)
    lat = {l.name: l.cost.latency for l in est.layers}
    dag = LatencyDag.of(g)
    paths = _paths(dag)
    assert len(paths) >= 3  # three conv branches
    longest = max(sum(lat[dag.layers[k]] for k in p) for p in paths)
    assert est.latency_cycles == longest < sum(lat.values())
    assert est.ii_cycles == max(l.cost.ii for l in est.layers)
    assert sum(lat[n] for n in est.critical_path) == longest and "conv_c" in est.critical_path
    sim = simulate(g, BOARD, batch=5)
    if io == "parallel":  # the same rule, so the same figures: nothing to reconcile
        assert (sim.latency_cycles, sim.interval_cycles) == (est.latency_cycles, est.ii_cycles)
        assert sim.completion_cycles == [est.latency_cycles - 1 + s * est.ii_cycles for s in range(5)]
    else:  # overlapped processes: the simulation is the latency to use, the longest path bounds it here
        assert max(lat.values()) <= sim.latency_cycles <= est.latency_cycles


def test_the_solver_predicts_with_the_rule_the_estimate_uses():
    """A design space over a real three-branch graph (two reuse factors per conv): for every
    choice, the solver's prediction is the estimate of the design built with those reuse
    factors, and CP-SAT's fastest choice is the fastest of them."""
    g0 = build_graph(branches_model(), None, "parallel")
    ctx = cost_context(g0, BOARD)
    est0 = estimate(g0, BOARD)
    sites = []
    for name in CONVS:
        layer = g0.layer(name)
        opts = []
        for rf in (2, 6):
            v = copy.copy(layer)
            v.reuse_factor = rf
            opts.append(Option(Choice(reuse_factor=rf), 0.0, v.cost(ctx)))
        sites.append(Site(name, name, "conv", opts))
    fixed = {l.name: l.cost.latency for l in est0.layers if l.name not in CONVS}
    space = DesignSpace(sites, dict(dsp=0.0, lut=0.0, ff=0.0, bram18=0.0, uram=0.0), LatencyDag.of(g0), fixed,
                        max(l.cost.ii for l in est0.layers if l.name not in CONVS), BOARD, 100.0, "parallel")
    seen = {}
    for combo in itertools.product(*(s.options for s in sites)):
        rfs = {s.layer: o.choice.reuse_factor for s, o in zip(sites, combo)}
        g = build_graph(branches_model(), PrecisionConfig(layer_name={k: LayerPrecision(reuse_factor=v) for k, v in rfs.items()}),
                        "parallel")
        est = estimate(g, BOARD)
        p = predict(space, list(combo))
        assert (p["latency_cycles"], p["interval_cycles"]) == (est.latency_cycles, est.ii_cycles), rfs
        assert p["latency_cycles"] == compose(g, {l.name: l.cost for l in est.layers}).latency
        seen[tuple(rfs.values())] = p["latency_cycles"]
    inf = {k: float("inf") for k in ("dsp", "lut", "ff", "bram18", "uram")}
    best = _solve(space, Limits(None, None, inf), minimize="latency_cycles")
    assert predict(space, best)["latency_cycles"] == min(seen.values())
    # The latency limit is the longest path, not the sum: a limit between the two is met.
    worst = max(seen.values())
    ok = _solve(space, Limits(worst, None, inf))
    assert ok is not None and predict(space, ok)["latency_cycles"] <= worst


def test_estimate_says_which_latency_it_gives():
    for io, words in (("parallel", "simulate reports the same"), ("stream", "upper bound")):
        est = estimate(build_graph(textcnn_model(), None, io), BOARD)
        assert "longest input-to-output path" in est.latency_source and words in est.latency_source
        text = format_estimate(est)
        assert f"longest path ({len(est.critical_path)} layers)" in text, text
        assert est.as_dict()["latency_source"] == est.latency_source and est.as_dict()["critical_path"]


# ---------------------------------------------------------------- FIFO depths in the IR

def _pragmas(prj) -> dict[str, int]:
    top = json.loads((prj / "hwprune_project.json").read_text())["top"]
    text = (prj / "firmware" / f"{top}.cpp").read_text()
    return {k: int(v) for k, v in re.findall(r"#pragma HLS STREAM variable = (\w+) depth = (\d+)", text)}


def test_the_fifo_pass_writes_depths_the_writer_estimate_and_simulator_read(tmp_path):
    g = build_graph(residual_model(), None, "stream")
    assert all(t.fifo_depth is None for t in g.tensors.values())
    rec = recommended_depths(g, BOARD)
    assert set_fifo_depths(g, BOARD) == rec and set(rec) == set(stream_fifos(g))
    assert {t: g.tensor(t).fifo_depth for t in rec} == rec and max(rec.values()) > 2
    assert estimate(g, BOARD).fifo == rec and simulate(g, BOARD, batch=4).fifo_depths == rec

    # A depth the design chooses (far deeper than needed: more block RAM) is what everything then reads.
    deep = max(rec, key=rec.get)
    chosen = set_fifo_depths(g, BOARD, depths={deep: rec[deep] + 1000})
    assert chosen == {**rec, deep: rec[deep] + 1000} and g.tensor(deep).fifo_depth == rec[deep] + 1000
    est = estimate(g, BOARD)
    assert est.fifo == chosen and est.resources.bram18 > estimate(build_graph(residual_model(), None, "stream"), BOARD).resources.bram18
    sim = simulate(g, BOARD, batch=4)
    assert sim.fifo_depths == chosen and sim.recommended_fifo_depths == rec and sim.fifos_sufficient

    from hwprune.backend.hls_project import write_project

    prj = write_project(g, residual_model().SerializeToString(), tmp_path / "prj", BOARD)
    names = g.c_names()
    assert _pragmas(prj) == {names[f"t:{t}"]: d for t, d in chosen.items()}
    assert json.loads((prj / "hwprune_project.json").read_text())["fifo_depths"] == chosen
    back = load_project_graph(prj)  # the project's IR declares the same depths
    assert {t: back.tensor(t).fifo_depth for t in stream_fifos(back)} == chosen
    assert hwprune.estimate(prj, BOARD).fifo == chosen and hwprune.simulate(prj, BOARD, batch=4).fifo_depths == chosen


def test_export_sizes_the_fifos_and_keeps_what_the_ir_declares(tmp_path):
    prj = hwprune.export(residual_model(), tmp_path / "a", board=BOARD, io_type="stream")
    g = build_graph(residual_model(), None, "stream")
    rec = recommended_depths(g, BOARD)
    assert json.loads((prj / "hwprune_project.json").read_text())["fifo_depths"] == rec
    # keep=True (what the writer does) sizes only the FIFOs without a depth.
    first = stream_fifos(g)[0]
    g.tensor(first).fifo_depth = 9
    assert set_fifo_depths(g, BOARD, keep=True) == {**rec, first: 9}
    assert set_fifo_depths(g, BOARD, depths=3) == {t: 3 for t in rec}


def test_fifo_pass_refuses_what_is_not_a_fifo_depth():
    g = build_graph(residual_model(), None, "stream")
    with pytest.raises(ConfigError, match="no FIFO named 'nope'"):
        set_fifo_depths(g, BOARD, depths={"nope": 4})
    with pytest.raises(ConfigError, match="at least 1"):
        set_fifo_depths(g, BOARD, depths=0)
    with pytest.raises(ConfigError, match="at least 1"):
        set_fifo_depths(g, BOARD, depths={stream_fifos(g)[0]: 2.5})
    p = build_graph(residual_model(), None, "parallel")
    assert p.io_type == IOType.PARALLEL and set_fifo_depths(p, BOARD) == {}
    with pytest.raises(ConfigError, match="io_stream"):
        set_fifo_depths(p, BOARD, depths=4)
    prj_free = build_graph(residual_model(), None, "stream")
    assert set_fifo_depths(prj_free, None, depths={}) == {}  # no board: nothing sized, nothing declared
    assert estimate(prj_free, BOARD).fifo == recommended_depths(prj_free, BOARD)  # the estimate falls back


def test_sizing_two_designs_that_differ_only_in_names():
    """The sizing memo is keyed by token patterns, which name no FIFO: a second design with the
    same patterns gets its own tensors' names (a hit once returned the first design's names,
    and every FIFO of the second silently fell back to depth 2)."""
    from onnx import helper

    from conftest import fin, make_model

    rng = np.random.default_rng(2)
    n = helper.make_node
    w = [("w", rng.normal(size=(4, 4, 3, 3)) * 0.2), ("b", np.zeros(4))]
    a = make_model([n("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), n("Add", ["c", "x"], ["y"])],
                   [fin("x", 4, 6, 6)], [fin("y", 4, 6, 6)], w)
    b = make_model([n("Conv", ["inp", "w", "b"], ["conv_out"], pads=[1, 1, 1, 1]), n("Add", ["conv_out", "inp"], ["out"])],
                   [fin("inp", 4, 6, 6)], [fin("out", 4, 6, 6)], w)
    ga, gb = build_graph(a, None, "stream"), build_graph(b, None, "stream")
    da, db = recommended_depths(ga, BOARD), recommended_depths(gb, BOARD)
    assert set(da) == set(stream_fifos(ga)) and set(db) == set(stream_fifos(gb)) and set(da) != set(db)
    assert sorted(da.values()) == sorted(db.values()) and max(db.values()) > 2
    assert set_fifo_depths(gb, BOARD) == db
