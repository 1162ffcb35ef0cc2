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
    DIR/design/     the chosen design: model.onnx (QONNX), project/, report.json, report.html,
                    text.json (its vocabulary and the remap from model/vocab.json), x.npy, y.npy, texts.txt
    DIR/deploy/     the PYNQ package (python deploy/validate.py --sim --text deploy/texts.txt runs it here)
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
    from hwprune.board import load_board

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
        if chosen["latency_budget_us"] == DEMO_BUDGET_US:
            reason = (f"the sweep point at the demo's latency budget ({DEMO_BUDGET_US:g} us); within it, the pruner's "
                      "least-predicted-loss design that met the budget and the routing headroom")
        else:
            reason = (f"the demo's {DEMO_BUDGET_US:g} us budget could not be met, so the most accurate feasible point "
                      "of the sweep")
        shutil.copytree(tmp / "explore" / "points" / chosen["label"], tmp / "design")
        design = tmp / "design"
        report = json.loads((design / "report.json").read_text())
        prj = design / "project"

        _step("3/4 checking the design: C simulation (g++) against the bit-exact reference, dataflow simulation")
        from hwprune.text.train import load_model_dir

        md = load_model_dir(tmp / "model")
        g = load_project_graph(prj)
        text = text_spec(md, design, g.tensor(g.inputs[0]).index_range)
        if len(text["tokens"]) != g.tensor(g.inputs[0]).index_range:
            raise RuntimeError(f"the design reads {g.tensor(g.inputs[0]).index_range} token ids, its vocabulary has "
                               f"{len(text['tokens'])}")
        vocab_ids = _design_ids(md, design, splits["test"][:64])
        # The design's vocabulary, its remap from the trained model's and sample texts ship with
        # design/ (and deploy/, which copies them): the package takes raw text or the original ids.
        (design / "text.json").write_text(json.dumps(text))
        np.save(design / "x.npy", vocab_ids)
        x_all, y_all = md.encoded()
        np.save(design / "y.npy", y_all[splits["test"][:64]])
        texts_all = md.data.load().texts
        (design / "texts.txt").write_text("".join(" ".join(texts_all[i].split()) + "\n" for i in splits["test"][:64]),
                                          encoding="utf-8")
        t0 = time.perf_counter()
        csim = raw_outputs(prj, [vocab_ids])[0]
        exact = bool(np.array_equal(csim, trace_fixed(g, [vocab_ids]).values[g.outputs[0]]))
        _step(f"    C simulation of {len(vocab_ids)} test texts bit-exact with the fixed-point reference: {exact} "
              f"({time.perf_counter() - t0:.1f} s)")
        sim = hwprune.simulate(prj, BOARD, batch=32) if hasattr(hwprune, "simulate") else None
        if sim is not None:
            _step(f"    simulator: latency {sim.latency_cycles} cycles ({sim.latency_cycles / report['clock_mhz']:.1f} us), "
                  f"interval {sim.interval_cycles} cycles")

        if report.get("verdict"):
            _step(f"    fit: {report['verdict']['message']}")

        _step("4/4 deployment package and report")
        write_package(prj, BOARD, tmp / "deploy", force=True, recorded_project=out / "design" / "project")
        from hwprune.board import DEFAULT_HEADROOM
        from hwprune.report.design import design_report
        from hwprune.report.html import write_report
        from hwprune.sim.estimate import estimate

        budget_us = float(chosen["latency_budget_us"])
        extra = [("C simulation bit-exact", "yes" if exact else "NO")]
        if sim is not None and getattr(sim, "fifo_depths", None):
            extra.append(("FIFO depths (simulator)", ", ".join(f"{d}" for d in list(sim.fifo_depths.values())[:12])))
        data_r = design_report(
            report, g, estimate(g, load_board(BOARD), report["clock_mhz"]), DEFAULT_HEADROOM,
            title=f"hwprune demo: Rotten Tomatoes TextCNN on {BOARD} within {budget_us:g} us", front=points,
            chosen=dict(chosen, reason=reason), baseline=report.get("dense_baseline"), extra=extra,
            notes=[f"Run it without a board: python {out}/deploy/validate.py --sim --input {out}/deploy/x.npy "
                   f"--labels {out}/deploy/y.npy --output Y.npy, or --text {out}/deploy/texts.txt for raw text."])
        summary = data_r.summary
        write_report(tmp / "report.html", data_r)
        (tmp / "report.json").write_text(json.dumps(dict(board=BOARD, budget_us=budget_us, chosen=chosen["label"],
                                                         chosen_reason=reason, float_accuracy=float_acc,
                                                         csim_bit_exact=exact, summary=dict(summary), front=points,
                                                         dense_baseline=report.get("dense_baseline"),
                                                         verdict=report.get("verdict")), indent=2))
    _step(f"wrote {out}/report.html, {out}/deploy/ and {out}/design/ ({time.perf_counter() - t_start:.0f} s)")
    return 0 if exact and report["meets_budget"] else 1


def _design_ids(md: Any, design: Path, idx: np.ndarray) -> np.ndarray:
    """Test texts as token ids of the design's vocabulary (the pruner may have cut it: then the
    design holds the id map, input_map.npy)."""
    x, _ = md.encoded()
    if (design / "input_map.npy").is_file():
        x = np.load(design / "input_map.npy")[x]
    return x[idx]


def text_spec(md: Any, design: Path, n_ids: int) -> dict[str, Any]:
    """text.json of the design: the tokenizer, the design's vocabulary in id order, the remap
    from the trained model's ids (None when the vocabulary was not cut: the pruner then wrote no
    input_map.npy) and the classes — what the deployment package needs to take raw text or the
    original ids (hwprune.backend.pynq_driver.TextEncoder reads it)."""
    from hwprune.backend.pynq_driver import TEXT_FORMAT
    from hwprune.text.data import _TOKEN, PAD, UNK

    data = md.data.load()
    tokens, remap = list(md.vocab.tokens), None
    if (design / "input_map.npy").is_file():
        m = np.load(design / "input_map.npy")
        kept: list[str | None] = [None] * n_ids
        for old, new in enumerate(m):  # old ids in order: the unknown token claims its own slot first
            if kept[int(new)] is None:
                kept[int(new)] = md.vocab.tokens[old]
        tokens, remap = [t if t is not None else "" for t in kept], [int(v) for v in m]
    return dict(format=TEXT_FORMAT, tokenizer=dict(pattern=_TOKEN.pattern, lowercase=True), seq_len=int(md.cfg.seq_len),
                pad_id=PAD, unk_id=UNK, tokens=tokens, remap=remap, original_vocab_size=len(md.vocab),
                classes=list(data.classes))
