"""Budget benchmark: the budget-driven pruner against uniform baselines on pynq-z2, at three
latency budgets, every row checked by the simulator; plus the speed of the estimate and of the
dataflow simulation. Writes the budget section of docs/benchmarks.md.

    python benchmarks/budget.py [--work build/bench] [--budgets 300,120,50]

Rows at each budget (all on the same trained TextCNN, 8-bit, io_stream, the board's 100 MHz):
  hwprune      `hwprune prune MODEL --board pynq-z2 --latency-us L`
  (i)   dense 8-bit: vocabulary cut until the embedding fits, uniform reuse factor raised until
        the design fits the board
  (ii)  uniform unstructured magnitude pruning, the lowest of 50/75/87.5% that meets the budget
  (iii) uniform filter pruning, the lowest of 50/75/87.5/93.75% that meets the budget
A baseline that no setting brings within the budget is listed with the best latency it reached.
Trains the model first unless WORK/model exists (benchmarks/compare_patterns.py makes the same).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _doc import write_section  # noqa: E402

BOARD = "pynq-z2"


def speed(md) -> tuple[float, float, int]:
    """(µs per estimate of one design point, s per dataflow simulation of 100 samples, layers)."""
    import copy

    from hwprune.board import load_board
    from hwprune.pipeline import compile_graph
    from hwprune.quantize.qat import QuantConfig, calibrate, export_qonnx, quantize_model
    from hwprune.sim.dataflow import simulate
    from hwprune.sim.estimate import estimate

    board = load_board(BOARD)
    from hwprune.text.task import text_task

    data = text_task(md).data()
    q = quantize_model(md.model, data.example(), QuantConfig())
    calibrate(q, data.batches(data.train, limit=512))
    g = compile_graph(export_qonnx(q, data.example()), None, "stream")
    n = 200
    t0 = time.perf_counter()
    for _ in range(n):
        estimate(g, board)
    per_est = (time.perf_counter() - t0) / n * 1e6
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        simulate(g, board, batch=100)
        runs.append(time.perf_counter() - t0)
    return per_est, statistics.median(runs), len(g.layers)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="build/bench")
    ap.add_argument("--budgets", default="300,120,50", help="loose, medium, tight latency budgets in us")
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model = work / "model"
    if not (model / "config.json").exists():
        subprocess.run([sys.executable, "-m", "hwprune.cli", "train", "--epochs", "5", "--seed", "0", "--out", str(model),
                        "--force"], check=True)
    from hwprune.codesign.baselines import uniform_baseline
    from hwprune.codesign.budget import Budget
    from hwprune.codesign.pruner import BudgetConfig, prune_to_budget
    from hwprune.text.train import load_model_dir

    from hwprune.text.task import text_task

    md = load_model_dir(model)
    task = text_task(md)  # the text task through the generic co-design
    say = lambda m: print(f"[budget] {m}", flush=True)  # noqa: E731
    budgets = [float(b) for b in args.budgets.split(",")]
    names = ["loose", "medium", "tight"] + [f"#{i}" for i in range(4, 10)]
    rows = []
    t_all = time.perf_counter()
    for label, lat in zip(names, budgets):
        budget = Budget(latency_us=lat)
        t0 = time.perf_counter()
        try:
            res = prune_to_budget(task, BudgetConfig(board=BOARD, budget=budget, finetune_epochs=args.epochs, seed=0),
                                  work / f"hwprune_{lat:g}us", force=True, say=say)
            r = res.report
            choice = "; ".join(f"{l['module']} {l['pattern']}" + (f" {100 * l['sparsity']:.0f}%" if l["sparsity"] else "")
                               + (f" vocab {l['vocab']}" if l.get("vocab") else "") + f" RF {l['reuse_factor']}"
                               for l in r["layers"])
            rows.append(dict(budget=label, latency_budget_us=lat, method="hwprune", feasible=r["meets_budget"],
                             accuracy=r["accuracy_after"], latency_us=r["latency_us"], lut=r["resources"]["lut"],
                             bram18=r["resources"]["bram18"], dsp=r["resources"]["dsp"], source=r["timing_source"],
                             setting=choice, seconds=time.perf_counter() - t0))
        except Exception as e:  # an infeasible budget is a result too
            rows.append(dict(budget=label, latency_budget_us=lat, method="hwprune", feasible=False, setting=str(e)[:160]))
        for name, pattern, grid in (("(i) dense 8-bit", "dense", [0.0]),
                                    ("(ii) unstructured", "unstructured", [0.5, 0.75, 0.875]),
                                    ("(iii) filter", "filter", [0.5, 0.75, 0.875, 0.9375])):
            t0 = time.perf_counter()
            b = uniform_baseline(task, budget, pattern, grid, name, BOARD, finetune_epochs=args.epochs, seed=0, say=say)
            rows.append(dict(budget=label, latency_budget_us=lat, method=name, feasible=b.feasible, accuracy=b.accuracy,
                             latency_us=b.latency_us, lut=b.resources.get("lut"), bram18=b.resources.get("bram18"),
                             dsp=b.resources.get("dsp"), source="simulation",
                             setting=(f"sparsity {100 * b.sparsity:.1f}%, vocab {b.vocab}, RF {b.reuse_factor}"
                                      if b.feasible else b.note), seconds=time.perf_counter() - t0))
        (work / "budget.json").write_text(json.dumps(rows, indent=2))
    per_est, sim_s, n_layers = speed(md)
    minutes = (time.perf_counter() - t_all) / 60

    lines = ["## Budget-driven pruning vs uniform baselines (pynq-z2)", "",
             f"Made by `python benchmarks/budget.py --budgets {args.budgets}` on {platform.machine()} ({os.cpu_count()} cores), "
             f"{minutes:.0f} min; the TextCNN of the compare section (`hwprune train --epochs 5 --seed 0`, dense float test "
             f"accuracy {100 * md.metrics['test_accuracy']:.1f}%), 8-bit, io_stream at 100 MHz, {args.epochs} fine-tuning "
             "epochs + 1 QAT epoch for every pruned row. Latency and interval of every row come from the dataflow "
             "simulator; resources from the estimate. Accuracy: the bit-exact fixed-point engine on the 1,275 test texts.", "",
             "| budget | latency budget (us) | method | meets budget | accuracy | latency (us) | LUT | BRAM18 | DSP | setting |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ok = r["feasible"]
        lines.append(f"| {r['budget']} | {r['latency_budget_us']:g} | {r['method']} | {'yes' if ok else 'no'} | "
                     + (f"{100 * r['accuracy']:.1f}% | {r['latency_us']:.1f} | {r['lut']:,} | {r['bram18']} | {r['dsp']} | "
                        if ok else "— | — | — | — | — | ")
                     + f"{r['setting']} |")
    lines += [""]
    for label, lat in zip(names, budgets):
        here = [r for r in rows if r["budget"] == label and r["feasible"]]
        hw = next((r for r in here if r["method"] == "hwprune"), None)
        dense = next((r for r in here if r["method"].startswith("(i)")), None)
        best_other = max((r["accuracy"] for r in here if r["method"] != "hwprune"), default=None)
        if hw is None:
            lines.append(f"- {label} ({lat:g} us): hwprune found no design.")
            continue
        verdict = "most accurate" if best_other is None or hw["accuracy"] >= best_other else \
            f"NOT the most accurate ({100 * (hw['accuracy'] - best_other):+.1f} points vs the best baseline)"
        vs_dense = ("(i) meets no design at this budget" if dense is None
                    else f"{100 * (hw['accuracy'] - dense['accuracy']):+.1f} points vs (i)")
        lines.append(f"- {label} ({lat:g} us): hwprune {100 * hw['accuracy']:.1f}% — {verdict}; {vs_dense}.")
    lines += ["", f"Speed: the analytic estimate of one design point (the whole {n_layers}-layer TextCNN) takes "
              f"{per_est:.0f} us; the dataflow simulation of it over 100 samples takes {sim_s:.2f} s.", ""]
    print(write_section("budget", "\n".join(lines)))


if __name__ == "__main__":
    main()
