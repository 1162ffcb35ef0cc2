"""The budget-driven pruner: budgets are checked, the solver is exact (against brute force) and
names the binding limit when nothing fits, and `hwprune prune MODEL_DIR --board ...` writes a
design that meets its budget, with a bit-exact project and a report."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from hwprune.board import load_board
from hwprune.cli import main
from hwprune.codesign.budget import Budget, BudgetError
from hwprune.codesign.solver import predict, solve
from hwprune.codesign.space import Choice, DesignSpace, Option, Site
from hwprune.ops.base import LayerCost
from hwprune.sim.compose import LatencyDag

BOARD = load_board("pynq-z2")


def toy_space(seed: int = 0) -> DesignSpace:
    """Three sites, a handful of options each, random but fixed costs and losses; two branches
    that join: L0 -> A -> L1 -> C and L0 -> B -> L2 -> C (A, B, C fixed layers)."""
    rng = np.random.default_rng(seed)
    sites = []
    for s in range(3):
        opts = []
        for j in range(6):
            lat = int(rng.integers(100, 2000))
            opts.append(Option(Choice("block:4x4", 0.25 * (j % 4), 8, j + 1), float(rng.uniform(0, 0.05)),
                               LayerCost(latency=lat, ii=lat - 10, dsp=float(rng.integers(0, 60)), lut=float(rng.integers(1000, 15000)),
                                         ff=1000.0, bram18=float(rng.integers(0, 40)))))
        sites.append(Site(f"m{s}", f"L{s}", "conv", opts))
    overhead = dict(dsp=10.0, lut=5000.0, ff=3000.0, bram18=20.0, uram=0.0)
    dag = LatencyDag(("L0", "A", "B", "L1", "L2", "C"), ((), (0,), (0,), (1,), (2,), (3, 4)), (5,))
    return DesignSpace(sites, overhead, dag, dict(A=50, B=80, C=5), 40, BOARD, 100.0, "stream")


def brute_force(space: DesignSpace, budget: Budget):
    best = None
    for combo in itertools.product(*(s.options for s in space.sites)):
        p = predict(space, list(combo))
        res = {k: int(np.ceil(p[k])) for k in ("dsp", "lut", "ff", "bram18", "uram")}
        if budget.violations(BOARD, 100.0, p["latency_cycles"], p["interval_cycles"], res):
            continue
        loss = sum(o.loss for o in combo)
        if best is None or loss < best[0] - 1e-9:
            best = (loss, combo)
    return best


@pytest.mark.parametrize("budget", [Budget(latency_us=25), Budget(latency_us=40, lut=0.5), Budget(dsp=0.3, bram18=0.2),
                                    Budget(throughput=80_000, lut=0.6)])
def test_solver_is_exact(budget):
    space = toy_space()
    ref = brute_force(space, budget)
    if ref is None:
        with pytest.raises(BudgetError):
            solve(space, budget)
        return
    sol = solve(space, budget)
    assert sol.predicted_loss == pytest.approx(ref[0], abs=2e-6)
    p = sol.predicted
    assert not budget.violations(BOARD, 100.0, p["latency_cycles"], p["interval_cycles"],
                                 {k: int(np.ceil(p[k])) for k in ("dsp", "lut", "ff", "bram18", "uram")})


def test_infeasible_budget_names_the_binding_limit():
    space = toy_space()
    least_lut = space.overhead["lut"] + sum(min(o.cost.lut for o in s.options) for s in space.sites)
    with pytest.raises(BudgetError, match=r"LUT: the least reachable is %d" % least_lut):
        solve(space, Budget(lut=(least_lut - 1) / BOARD.resources.lut))
    # Two resources out of reach: both are named, the first in full, in one line.
    least_ff = space.overhead["ff"] + sum(min(o.cost.ff for o in s.options) for s in space.sites)
    with pytest.raises(BudgetError, match=r"LUT: the least reachable is %d.*; also out of reach: FF %d > %d$"
                       % (least_lut, least_ff, int((least_ff - 1) // 1))) as e:
        solve(space, Budget(lut=(least_lut - 1) / BOARD.resources.lut, ff=(least_ff - 1) / BOARD.resources.ff))
    assert "\n" not in str(e.value)
    fastest = min(predict(space, list(c))["latency_cycles"] for c in itertools.product(*(s.options for s in space.sites)))
    with pytest.raises(BudgetError, match=r"latency: the best reachable is %d cycles" % fastest):
        solve(space, Budget(latency_cycles=fastest - 1))


@pytest.mark.parametrize("kwargs,msg", [(dict(lut=1.5), "fraction"), (dict(dsp=0.0), "fraction"),
                                        (dict(latency_us=-1), "positive"), (dict(throughput=2e8), "one sample per cycle"),
                                        (dict(latency_us=10, latency_cycles=5), "give one of the two"), (dict(), "no budget")])
def test_contradictory_budgets_are_refused(kwargs, msg):
    with pytest.raises(BudgetError, match=msg):
        Budget(**kwargs).check(BOARD, 100.0)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from test_text import synthetic_csv

    d = tmp_path_factory.mktemp("bud")
    csv = synthetic_csv(d / "d.csv", n=600)
    assert main(["train", "--data", str(csv), "--text-column", "review", "--label-column", "sentiment", "--epochs", "3",
                 "--seq-len", "12", "--embeddings", "random", "--out", str(d / "model")]) == 0
    return d / "model"


@pytest.mark.slow
def test_budget_prune_end_to_end(model_dir, tmp_path, capsys):
    import hwprune
    from hwprune.backend.csim import raw_outputs
    from hwprune.pipeline import trace_fixed
    from hwprune.project import load_project_graph

    out = tmp_path / "design"
    code = main(["prune", str(model_dir), "--board", "pynq-z2", "--latency-us", "30", "--lut", "0.9", "--epochs", "1",
                 "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    r = json.loads((out / "report.json").read_text())
    assert r["meets_budget"] and r["latency_cycles"] <= 3000 and r["resources"]["lut"] <= 0.9 * 53200
    assert r["accuracy_after"] > 0.75 and {l["module"] for l in r["layers"]} == {"embedding", "convs.0", "convs.1", "convs.2", "fc"}
    assert any(l["pattern"] != "dense" for l in r["layers"])  # this budget needs pruning
    prj = out / "project"
    ids = np.random.default_rng(0).integers(0, 20, size=(4, 12))
    g = load_project_graph(prj)
    np.testing.assert_array_equal(raw_outputs(prj, [ids])[0], trace_fixed(g, [ids]).values[g.outputs[0]])
    est = hwprune.estimate(prj, "pynq-z2")
    assert est.resources.lut == r["resources"]["lut"]
    # The budget (--lut 0.9) is capped by the routing headroom (LUT 80%); the shell is counted.
    assert r["resources"]["lut"] <= 0.8 * 53200 and r["verdict"]["fits"] and est.shell is not None
    assert (out / "report.html").is_file() and capsys.readouterr().out.strip().splitlines()[-1].startswith("fit: fits")
    # The other commands take the design directory itself (its project is out/project).
    np.save(tmp_path / "ids.npy", ids)
    for args in (["estimate", out, "--board", "pynq-z2"], ["simulate", out, "--board", "pynq-z2", "--batch", "2"],
                 ["run", out, "--engine", "csim", "--input", tmp_path / "ids.npy", "--output", tmp_path / "y.npy"],
                 ["deploy", out, "--board", "pynq-z2", "--out", tmp_path / "pkg"]):
        assert main([str(a) for a in args]) == 0, capsys.readouterr().err
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), hwprune.run(prj, [ids], engine="csim")[0])


@pytest.mark.slow  # trains the model_dir fixture (~30 s) and runs the pruner
def test_impossible_budget_exits_2_and_writes_nothing(model_dir, tmp_path, capsys):
    out = tmp_path / "never"
    code = main(["prune", str(model_dir), "--board", "pynq-z2", "--lut", "0.05", "--epochs", "0", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "LUT" in err and "least reachable" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    code = main(["prune", str(model_dir), "--board", "pynq-z2", "--latency-cycles", "20", "--epochs", "0", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "latency: the best reachable is" in err and not out.exists()


@pytest.mark.slow
def test_explore_local_and_ray_give_the_same_front(model_dir, tmp_path, capsys):
    pytest.importorskip("ray")
    fronts = {}
    # One budget point per backend: the sweep over several points and the front's writer are
    # tested with the local backend (test_own_model, the demo); here ray must reproduce local.
    for backend, workers in (("local", 1), ("ray", 1)):
        out = tmp_path / backend
        code = main(["explore", str(model_dir), "--board", "pynq-z2", "--latency-us", "40", "--epochs", "0",
                     "--qat-epochs", "0", "--backend", backend, "--workers", str(workers), "--out", str(out)])
        assert code == 0, capsys.readouterr().err
        data = json.loads((out / "front.json").read_text())
        assert data["backend"] == backend
        fronts[backend] = [{k: p.get(k) for k in ("label", "feasible", "accuracy", "latency_us", "lut", "bram18", "pareto")}
                           for p in data["points"]]
        svg = (out / "front.svg").read_text()
        assert svg.startswith("<svg") and svg.count('class="point"') >= 1
        assert (out / "front.csv").read_text().splitlines()[0].startswith("label,latency_budget_us")
        assert (out / "points" / "latency_40us" / "report.json").exists()
    assert fronts["local"] == fronts["ray"]
    assert any(p["pareto"] for p in fronts["local"])
    assert all(p["latency_us"] <= 40 for p in fronts["local"] if p["label"] == "latency_40us")


def test_pareto_front_marks_undominated_points():
    from hwprune.codesign.explore import pareto

    pts = [dict(feasible=True, accuracy=0.8, latency_us=10, max_utilization=0.5),
           dict(feasible=True, accuracy=0.7, latency_us=20, max_utilization=0.6),  # dominated by the first
           dict(feasible=True, accuracy=0.9, latency_us=30, max_utilization=0.5),
           dict(feasible=False)]
    assert [p["pareto"] for p in pareto(pts)] == [True, False, True, False]


@pytest.mark.slow  # ~50 s per io type
@pytest.mark.parametrize("io", ["stream", "parallel"])
def test_predicted_site_costs_equal_the_realized_design(model_dir, io):
    """The solver's per-site costs (from variants of the dense IR) are what the built design
    costs, layer by layer, also when weight bits differ per layer (bits auto); its latency and
    interval are the realized design's estimate (one composition rule, sim/compose.py), and in
    io_parallel also the pruner's check (the simulator): nothing to calibrate there."""
    from hwprune.codesign.pruner import BudgetConfig, _Run
    from hwprune.prune.metrics import compute_layers
    from hwprune.codesign.space import build_space
    from hwprune.sim.estimate import estimate
    from hwprune.text.task import text_task
    from hwprune.text.train import load_model_dir

    task = text_task(load_model_dir(model_dir))
    cfg = BudgetConfig(budget=Budget(latency_us=30), bits="auto", finetune_epochs=0, qat_epochs=0, io_type=io)
    run = _Run(task, cfg, lambda m: None)
    space = build_space(task.model, run.data, run.board, run.clock, run.cfg.space_config(), lambda m: None)
    sol = solve(space, cfg.budget)
    r = run.realize(sol, space, train=False)
    costs = {le.name: le.cost for le in estimate(r.graph, run.board).layers}
    assert [s.module for s in space.sites] == ["embedding", "convs.0", "convs.1", "convs.2", "fc"]
    assert len(compute_layers(r.graph)) == 4
    for site, o in zip(space.sites, sol.options):
        real = costs[r.layer_of[site.module]]
        assert real.dsp == o.cost.dsp and real.multipliers == o.cost.multipliers and real.ii == o.cost.ii
        assert real.lut == pytest.approx(o.cost.lut, rel=0.02) and real.bram18 == pytest.approx(o.cost.bram18, abs=1)
    assert {o.choice.weight_bits for o in sol.options} <= {4, 6, 8}
    est = estimate(r.graph, run.board)
    assert est.resources.lut == pytest.approx(sol.predicted["lut"], rel=0.05)
    assert (sol.predicted["latency_cycles"], sol.predicted["interval_cycles"]) == (est.latency_cycles, est.ii_cycles)
    if io == "parallel":
        assert (r.figures["latency_cycles"], r.figures["interval_cycles"]) == (est.latency_cycles, est.ii_cycles)
