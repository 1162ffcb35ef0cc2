"""`hwprune demo`: the whole journey on the bundled default, in a few minutes on 2 cores.

1. train the TextCNN on the Rotten Tomatoes snippets (GloVe-initialised embedding);
2. sweep three latency budgets on pynq-z2 with the budget-driven pruner (pruning, 8-bit
   quantization, per-layer reuse factors and vocabulary chosen to fit) — the Pareto front;
3. take the design at the demo's budget: its Vitis HLS project, checked by C simulation bit for
   bit against the fixed-point reference, and by the cycle-approximate simulator;
4. write the PYNQ deployment package and an HTML report (metrics, per-layer latency and
   resource bars against the board, the front, the sparsity maps of the pruned weights).

    DIR/model/      the trained float model (hwprune train)
    DIR/explore/    the sweep: front.csv/json/svg and every design under points/
    DIR/design/     the chosen design: model.onnx (QONNX), project/, report.json
    DIR/deploy/     the PYNQ package (python deploy/validate.py --sim --input ... runs it here)
    DIR/report.html, DIR/report.json
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

BOARD = "pynq-z2"
BUDGETS_US = (40.0, 80.0, 160.0)  # tight, medium, loose at the board's 100 MHz
DEMO_BUDGET_US = 80.0
TRAIN_EPOCHS = 5


def bundled_model() -> Path:
    """A small text CNN shipped with the package (the speed benchmark's model)."""
    return Path(str(resources.files("hwprune") / "data" / "textcnn_small.onnx"))


def bundled_inputs() -> np.ndarray:
    return np.load(str(resources.files("hwprune") / "data" / "textcnn_small_tokens.npy"))


def _step(msg: str) -> None:
    print(f"[hwprune demo] {msg}", flush=True)


def run_demo(out: Path, force: bool = False, workers: int = 2) -> int:
    import hwprune
    from hwprune.backend.csim import raw_outputs
    from hwprune.backend.deploy import write_package
    from hwprune.codesign.budget import Budget
    from hwprune.codesign.explore import explore
    from hwprune.codesign.pruner import BudgetConfig
    from hwprune.fsutil import atomic_directory
    from hwprune.pipeline import trace_fixed
    from hwprune.project import load_project_graph
    from hwprune.text.data import rotten_tomatoes
    from hwprune.text.train import TrainConfig, save_model_dir, train_textcnn

    t_start = time.perf_counter()
    with atomic_directory(out, force, kind="demo") as tmp:
        _step(f"1/4 training the TextCNN on the bundled Rotten Tomatoes snippets ({TRAIN_EPOCHS} epochs)")
        data = rotten_tomatoes()
        tcfg = TrainConfig(epochs=TRAIN_EPOCHS, seed=0)
        result, splits = train_textcnn(data, tcfg)
        save_model_dir(tmp / "model", result, tcfg, splits, force=True)
        float_acc = result.metrics["test_accuracy"]
        _step(f"    test accuracy {100 * float_acc:.1f}%, {result.metrics['params']:,} parameters")

        _step(f"2/4 budget-driven pruning on {BOARD} at {', '.join(f'{b:g}' for b in BUDGETS_US)} us "
              f"({workers} worker(s); each point prunes, fine-tunes and quantizes)")
        cfg = BudgetConfig(board=BOARD, budget=Budget(latency_us=DEMO_BUDGET_US), bits="8", io_type="stream",
                           finetune_epochs=2, qat_epochs=1, seed=0)
        points = explore(tmp / "model", cfg, list(BUDGETS_US), tmp / "explore", workers=workers, force=True,
                         say=lambda m: _step("    " + m))
        chosen = next((p for p in points if p["latency_budget_us"] == DEMO_BUDGET_US and p["feasible"]), None)
        if chosen is None:
            chosen = max((p for p in points if p["feasible"]), key=lambda p: p["accuracy"], default=None)
        if chosen is None:
            raise RuntimeError("no budget point of the demo could be met; see explore/front.json")
        shutil.copytree(tmp / "explore" / "points" / chosen["label"], tmp / "design")
        design = tmp / "design"
        report = json.loads((design / "report.json").read_text())
        prj = design / "project"

        _step("3/4 checking the design: C simulation (g++) against the bit-exact reference, dataflow simulation")
        from hwprune.text.train import load_model_dir

        md = load_model_dir(tmp / "model")
        g = load_project_graph(prj)
        vocab_ids = _design_ids(md, report, splits["test"][:64])
        t0 = time.perf_counter()
        csim = raw_outputs(prj, [vocab_ids])[0]
        exact = bool(np.array_equal(csim, trace_fixed(g, [vocab_ids]).values[g.outputs[0]]))
        _step(f"    C simulation of {len(vocab_ids)} test texts bit-exact with the fixed-point reference: {exact} "
              f"({time.perf_counter() - t0:.1f} s)")
        sim = hwprune.simulate(prj, BOARD, batch=32) if hasattr(hwprune, "simulate") else None
        if sim is not None:
            _step(f"    simulator: latency {sim.latency_cycles} cycles ({sim.latency_cycles / report['clock_mhz']:.1f} us), "
                  f"interval {sim.interval_cycles} cycles")

        _step("4/4 deployment package and report")
        write_package(prj, BOARD, tmp / "deploy", force=True, recorded_project=out / "design" / "project")
        summary = _summary(report, float_acc, exact, sim)
        from hwprune.report.html import ReportData, write_report

        budget_us = float(chosen["latency_budget_us"])
        data_r = ReportData(
            title=f"hwprune demo: Rotten Tomatoes TextCNN on {BOARD} within {budget_us:g} us",
            summary=summary, layers=report["layers"], capacity=_capacity(BOARD),
            latency_budget_cycles=int(budget_us * report["clock_mhz"]), front=points,
            sparsity_maps=_sparsity_maps(g),
            notes=["Resources and latency are hwprune's analytical estimate and cycle-approximate simulation, not "
                   "vendor reports (no Vivado/Vitis here): see docs/estimate.md.",
                   "Accuracy of the design is the bit-exact fixed-point engine's (= the C simulation) on the test split.",
                   f"Run it without a board: python {out}/deploy/validate.py --sim --input X.npy --output Y.npy"])
        write_report(tmp / "report.html", data_r)
        (tmp / "report.json").write_text(json.dumps(dict(board=BOARD, budget_us=budget_us, chosen=chosen["label"],
                                                         float_accuracy=float_acc, csim_bit_exact=exact,
                                                         summary=dict(summary), front=points), indent=2))
    _step(f"wrote {out}/report.html, {out}/deploy/ and {out}/design/ ({time.perf_counter() - t_start:.0f} s)")
    return 0 if exact and report["meets_budget"] else 1


def _design_ids(md: Any, report: dict[str, Any], idx: np.ndarray) -> np.ndarray:
    """Test texts as token ids of the design's vocabulary (the pruner may have cut it)."""
    from hwprune.codesign.space import vocab_remap

    x, _ = md.encoded()
    emb = next((l for l in report["layers"] if l["kind"] == "embedding"), None)
    if emb is not None and emb.get("vocab") and emb["vocab"] < len(md.vocab):
        texts = md.data.load().texts
        remap, _ = vocab_remap(md.vocab, [texts[i] for i in md.splits["train"]], emb["vocab"])
        x = remap[x]
    return x[idx]


def _capacity(board: str) -> dict[str, int]:
    from hwprune.board import load_board

    return load_board(board).resources.as_dict()


def _summary(r: dict[str, Any], float_acc: float, exact: bool, sim: Any) -> list[tuple[str, str]]:
    res, util = r["resources"], r["utilization"]
    m = r["metrics"]
    rows = [("board", f"{r['board']} @ {r['clock_mhz']:g} MHz ({r['io_type']})"),
            ("latency budget", f"{r['budget']['latency_us']:g} us"),
            ("test accuracy: dense float -> pruned 8-bit", f"{100 * float_acc:.1f}% -> {100 * r['accuracy_after']:.1f}%"),
            ("latency", f"{r['latency_cycles']:.0f} cycles = {r['latency_us']:.1f} us ({r['timing_source']})"),
            ("throughput", f"{r['throughput_per_s']:.0f} samples/s (interval {r['interval_cycles']:.0f} cycles)"),
            ("meets the budget", "yes" if r["meets_budget"] else "no"),
            ("C simulation bit-exact", "yes" if exact else "NO")]
    rows += [(k.upper(), f"{res[k]} ({100 * util.get(k, 0):.1f}%)") for k in ("dsp", "lut", "ff", "bram18", "uram")]
    rows += [("parameters (non-zero)", f"{m['params']:,}"), ("memory (weights + indices)", f"{m['memory_bits'] / 8e3:.0f} kB"),
             ("MACs executed / nominal dense", f"{m['macs']:,} / {m['dense_macs']:,}"),
             ("nominal weight sparsity (compute layers)", f"{100 * m['nominal_sparsity']:.0f}%")]
    if sim is not None and getattr(sim, "fifo_depths", None):
        rows.append(("FIFO depths (simulator)", ", ".join(f"{d}" for d in list(sim.fifo_depths.values())[:12])))
    return rows


def _sparsity_maps(g: Any) -> list[tuple[str, np.ndarray]]:
    from hwprune.ops.conv import Conv
    from hwprune.ops.dense import Dense

    maps = []
    for l in g.layers:
        if isinstance(l, Conv):
            kept = l.weight.reshape(l.c_out, -1) != 0
        elif isinstance(l, Dense):
            kept = l.weight.T != 0
        else:
            continue
        maps.append((l.name, kept))
    return maps
