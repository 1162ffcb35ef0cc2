"""Transformer benchmark on the bundled Rotten Tomatoes split: TF-IDF + LR, the TextCNN and the
tiny BERT (dense float, dense 8-bit, head-pruned, balanced-block 75% + 8-bit, the budget-driven
result), accuracy over 3 student seeds on one split (split seed 0, teacher seed 0); latency by
the simulator and resources on pynq-z2 and zcu104 (Zynq UltraScale+); which models hls4ml 1.3
converts. Writes the transformer section of docs/benchmarks.md.

    OMP_NUM_THREADS=2 nice python benchmarks/transformer.py [--seeds 0,1,2] [--epochs 3]

The hardware model is the encoder from the embedded sequence on (word + position rows are
looked up before it: the lookup belongs on the PS — its 13.5k x 96 table is 1.3 MB at 8 bits,
more than the xc7z020's 0.6 MB of BRAM). "8-bit" is hwprune's fixed-point model (weights 8
bits, activations ap_fixed<16,6>; post-training: the QAT path refuses LayerNorm/GELU), its
accuracy computed with the bit-exact numpy reference of the generated C++ on the test split.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _doc import write_section  # noqa: E402

BOARDS = ("pynq-z2", "zcu104")
RFS = (64,)
SPLIT_SEED = 0


def say(msg: str) -> None:
    print(f"[bench] {time.strftime('%H:%M:%S')} {msg}", flush=True)


def tfidf_lr(data, tr, va, te) -> float:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)
    xtr = vec.fit_transform([data.texts[i] for i in tr])
    xva, xte = vec.transform([data.texts[i] for i in va]), vec.transform([data.texts[i] for i in te])
    best = max(((LogisticRegression(C=c, max_iter=2000).fit(xtr, data.labels[tr]), c) for c in (0.5, 1, 2, 4, 8, 16)),
               key=lambda mc: mc[0].score(xva, data.labels[va]))
    return float(best[0].score(xte, data.labels[te]))


def prec8(rf: int):
    from hwprune.precision import PrecisionConfig

    p = PrecisionConfig().with_overrides(reuse_factor=rf)
    return dataclasses.replace(p, model=dataclasses.replace(p.model, weight_width=8))


def export(encoder: torch.nn.Module, example: np.ndarray):
    """ONNX of the encoder with the recorded patterns of its pruned weights (sparse kernel)."""
    from hwprune.frontend.torch_export import export_torch
    from hwprune.quantize.qat import record_sparsity

    proto = export_torch(encoder, torch.from_numpy(example[:1]))
    if getattr(encoder, "hwprune_sparsity", None):
        record_sparsity(encoder, proto)
    return proto


def fixed_accuracy(encoder: torch.nn.Module, emb: np.ndarray, y: np.ndarray) -> float:
    from hwprune.pipeline import compile_graph, run_fixed

    g = compile_graph(export(encoder, emb), prec8(64), "stream")
    out = np.concatenate([run_fixed(g, [emb[i:i + 128]])[0] for i in range(0, len(emb), 128)])
    return float(np.mean(out.argmax(1) == y))


def hardware(encoder: torch.nn.Module, example: np.ndarray) -> dict:
    """Per board: the fastest uniform reuse factor whose design fits (simulated latency,
    estimated resources), else the RF-512 design and what it exceeds."""
    from hwprune.board import load_board
    from hwprune.codesign.baselines import _fits
    from hwprune.codesign.budget import RESOURCES, Budget
    from hwprune.codesign.pruner import _figures
    from hwprune.frontend.torch_export import export_torch
    from hwprune.pipeline import compile_graph

    proto = export(encoder, example)
    out = {}
    for name in BOARDS:
        board = load_board(name)
        row = None
        for rf in RFS:
            g = compile_graph(proto, prec8(rf), "stream")
            figs = _figures(g, board, board.default_clock_mhz, 4)
            over = [k for k, _, _ in _fits(figs, Budget(), board, board.default_clock_mhz) if k in RESOURCES]
            cap = board.resources.as_dict() if hasattr(board.resources, "as_dict") else {}
            row = dict(rf=rf, fits=not over, over=over, latency_us=figs["latency_cycles"] / board.default_clock_mhz,
                       resources={k: int(round(figs[k])) for k in RESOURCES}, capacity=cap)
            if not over:
                break
        out[name] = row
    return out


def floor_breakdown(encoder: torch.nn.Module, example: np.ndarray) -> dict:
    """What the smallest design of this encoder costs by hwprune's estimate: every engine at the
    largest reuse factor it takes (RF 1,024, settled per layer), resources summed by kind of
    part (the FIFOs, the deployment shell, each op kind), on zcu104's DSP kind."""
    from hwprune.board import load_board
    from hwprune.pipeline import compile_graph
    from hwprune.sim.estimate import estimate

    g = compile_graph(export(encoder, example), prec8(1024), "stream")
    board = load_board("zcu104")
    est = estimate(g, board, board.default_clock_mhz)
    ops = {l.name: l.op for l in est.layers}
    # The Dense engines' LUTs by component (hwprune.rtl.cost.engine_cost: the yosys-calibrated model).
    from hwprune.rtl.cost import engine_cost

    dense_parts: dict[str, float] = {}
    for l in g.layers:
        if l.op_type == "Dense" and l.sparsity is None:
            x_t = g.tensor(l.inputs[0]).type
            w, idx = l.engine_matrices()
            c = engine_cost(w, idx, l.reuse_factor, x_t, l.weight_t, l.accum_t, g.tensor(l.output).type, 1.0,
                            l.accum_t.frac - x_t.frac - l.weight_t.frac)
            for k, v in c.parts.items():
                if not k.startswith("ff_"):
                    dense_parts[k] = dense_parts.get(k, 0.0) + v
    parts: dict[str, dict[str, float]] = {}
    for name, kind, r in est.parts():
        key = ops.get(name, kind) if kind == "layer" else kind
        acc = parts.setdefault(key, dict(n=0, dsp=0.0, lut=0.0, ff=0.0, bram18=0.0))
        acc["n"] += 1
        for k in ("dsp", "lut", "ff", "bram18"):
            acc[k] += r[k]
    return dict(parts=parts, total=est.resources.as_dict(), dense_lut=dense_parts)


def floor_text(f) -> str:
    if not isinstance(f, dict):
        return "(not measured)"
    names = {"fifo": "stream FIFOs", "shell": "deployment shell", "top": "top-level control", "Activation": "GELU"}
    rows = sorted(f["parts"].items(), key=lambda kv: -kv[1]["lut"])
    cells = [f"{names.get(k, k)} {v['dsp']:.0f} DSP / {v['lut'] / 1000:.1f}k LUT / {v['bram18']:.0f} BRAM18"
             for k, v in rows if v["lut"] >= 500 or v["dsp"] >= 1 or v["bram18"] >= 1]
    t = f["total"]
    what = {"requant": "output rounding and saturation", "wrom": "weight ROMs (logic)", "control": "control",
            "xmux": "input multiplexers", "tree": "adder trees", "ring": "accumulators", "mult": "multipliers in LUTs"}
    dl = sorted(((k, v) for k, v in f.get("dense_lut", {}).items() if v >= 500), key=lambda kv: -kv[1])
    dense = (" (the Dense LUTs: " + ", ".join(f"{what.get(k, k)} {v / 1000:.0f}k" for k, v in dl) + ")") if dl else ""
    return (f"in all DSP {t['dsp']:,}, LUT {t['lut'] / 1000:.0f}k, FF {t['ff'] / 1000:.0f}k, BRAM18 {t['bram18']:,}: "
            + "; ".join(cells) + dense)


def hls4ml_converts(encoder: torch.nn.Module, example: np.ndarray, work: Path, tag: str) -> str:
    import onnx

    d = work / f"hls4ml_{tag}"
    d.mkdir(parents=True, exist_ok=True)
    onnx.save(export(encoder, example), str(d / "model.onnx"))
    np.save(d / "x.npy", example[:2])
    r = subprocess.run([sys.executable, str(Path(__file__).parent / "_hls4ml_process.py"), str(d / "model.onnx"),
                        str(d / "x.npy"), str(d / "prj"), str(d / "y.npy")], capture_output=True, text=True, timeout=900)
    if r.returncode == 0:
        return "converts and runs (compile + predict)"
    return "fails: " + (r.stderr.strip().splitlines() or ["?"])[-1][:140]


def finetune(model, x, y, tr, va, epochs, seed, masks=None, on_step=None, alpha=0.7):
    from hwprune.text.train_transformer import distillation_loss, label_accuracy
    from hwprune.training import FitConfig, fit

    fc = FitConfig(epochs=epochs, batch_size=32, lr=2e-4, weight_decay=0.0, seed=seed)
    fit(model, x, y, tr, va, fc, masks=masks, on_step=on_step, loss_fn=distillation_loss(alpha, 2.0),
        metric=label_accuracy, progress=lambda m: say("  " + m))


class Chain(torch.nn.Module):
    def __init__(self, embeddings, encoder):
        super().__init__()
        self.embeddings, self.encoder = embeddings, encoder

    def forward(self, ids):
        return self.encoder(self.embeddings(ids))


def transformer_seed(data, seed: int, epochs: int, work: Path, with_hw: bool, save=lambda row: None) -> dict:
    from hwprune.prune.heads import attention_sites, head_importance, prune_heads
    from hwprune.task import model_outputs
    from hwprune.text.train_transformer import TransformerConfig, distillation_targets, train_transformer
    from hwprune.text.distill import teacher_logits

    cfg = TransformerConfig(seed=seed, split_seed=SPLIT_SEED, epochs=epochs)
    t0 = time.time()
    result, splits = train_transformer(data, cfg, progress=True)
    tr, va, te = splits["train"], splits["val"], splits["test"]
    model = result.model.eval()
    x = result.vocab.encode(data.texts, cfg.seq_len)
    teacher = teacher_logits(data.texts, data.labels, tr, va, te, len(data.classes), cfg.teacher_seed)
    y = distillation_targets(data.labels, teacher.logits)
    acc = lambda m: float(np.mean(model_outputs(m, x[te]).argmax(1) == data.labels[te]))  # noqa: E731
    with torch.no_grad():
        emb_te = model.embeddings(torch.from_numpy(x[te])).numpy()
    row: dict = dict(seed=seed, train_s=time.time() - t0, teacher_test=teacher.test_accuracy,
                     metrics={k: result.metrics[k] for k in ("params", "encoder_params", "macs")})
    row["dense_float"] = acc(model)
    save(row)
    say(f"seed {seed}: dense float {100 * row['dense_float']:.1f}%")
    row["dense_8bit"] = fixed_accuracy(model.encoder, emb_te, data.labels[te])
    save(row)
    say(f"seed {seed}: dense 8-bit {100 * row['dense_8bit']:.1f}%")
    hw = {}
    row["hw"] = hw
    if with_hw:
        hw["dense"] = hardware(model.encoder, emb_te)
        save(row)

    # Head pruning: the least important of 3 heads in each layer, then 1 epoch of distillation.
    example = torch.from_numpy(emb_te[:1])
    sites = attention_sites(model.encoder, example)
    drop = {s.name: [int(np.argmin(head_importance(model.encoder, s)))] for s in sites}
    heads = Chain(copy.deepcopy(model.embeddings), prune_heads(model.encoder, example, drop))
    row["heads_oneshot"] = acc(heads)
    finetune(heads, x, y, tr, va, 1, seed)
    heads.eval()
    row["heads_float"] = acc(heads)
    with torch.no_grad():
        emb_h = heads.embeddings(torch.from_numpy(x[te])).numpy()
    row["heads_8bit"] = fixed_accuracy(heads.encoder, emb_h, data.labels[te])
    save(row)
    say(f"seed {seed}: 1 of 3 heads removed per layer: one-shot {100 * row['heads_oneshot']:.1f}%, "
        f"fine-tuned {100 * row['heads_float']:.1f}%, 8-bit {100 * row['heads_8bit']:.1f}%")
    if with_hw:
        hw["heads"] = hardware(heads.encoder, emb_h)

    # Balanced block 75% (block:4x4, every bank keeps the same number of blocks) on Q/K/V/O and
    # FFN, pruned gradually during 2 epochs of distillation; the classifier stays dense.
    from hwprune.prune.recipe import Recipe, prune_finetune
    from hwprune.task import TaskData
    from hwprune.text.train_transformer import distillation_loss, label_accuracy

    task_data = TaskData(x, y, tr, va, te, 32, distillation_loss(0.7, 2.0), label_accuracy)
    linears = {f"encoder.{n}": ("block:4x4", 0.75) for n, mod in model.encoder.named_modules()
               if isinstance(mod, torch.nn.Linear) and n != "classifier"}
    block = prune_finetune(model, task_data, linears, Recipe(finetune_epochs=2, lr=2e-4, seed=seed), None,
                           lambda m: say("  " + m))
    row["block_sparsity"] = float(np.mean([float((dict(block.named_modules())[n].weight == 0).float().mean())
                                           for n in linears]))
    block.eval()
    block.encoder.hwprune_sparsity = {k.removeprefix("encoder."): v for k, v in block.hwprune_sparsity.items()}
    row["block_float"] = acc(block)
    with torch.no_grad():
        emb_b = block.embeddings(torch.from_numpy(x[te])).numpy()
    row["block_8bit"] = fixed_accuracy(block.encoder, emb_b, data.labels[te])
    save(row)
    say(f"seed {seed}: block:4x4 75%: float {100 * row['block_float']:.1f}%, 8-bit {100 * row['block_8bit']:.1f}%")
    if with_hw:
        hw["block"] = hardware(block.encoder, emb_b)
        row["floor"] = floor_breakdown(model.encoder, emb_te[:1])
        row["hls4ml"] = {"transformer (encoder)": hls4ml_converts(model.encoder, emb_te, work, "transformer")}
    # The budget-driven design for every seed (its accuracy is a row of the table, mean ± sd);
    # the hardware figures are the hardware seed's.
    row["budget"] = budget_driven(model.encoder, data, x, model, tr, va, te, y)
    row["hw"] = hw
    return row


def budget_driven(encoder, data, x, model, tr, va, te, y) -> dict:
    """The generic budget-driven pruner on the encoder task (embedded inputs, distillation
    targets), per board with a 1 ms budget: the design it writes, or why none fits."""
    from hwprune.codesign.budget import Budget
    from hwprune.codesign.pruner import BudgetConfig, prune_to_budget
    from hwprune.errors import HwpruneInputError
    from hwprune.task import Task
    from hwprune.text.train_transformer import distillation_loss, label_accuracy

    with torch.no_grad():
        emb = np.concatenate([model.embeddings(torch.from_numpy(x[i:i + 512])).numpy() for i in range(0, len(x), 512)])
    out = {}
    for board in BOARDS:
        task = Task.from_split(copy.deepcopy(encoder), emb, y, tr, va, te, batch_size=32, name="tinybert",
                               loss=distillation_loss(0.7, 2.0), metric=label_accuracy)
        t0 = time.time()
        try:
            with tempfile.TemporaryDirectory() as d:
                r = prune_to_budget(task, BudgetConfig(board=board, budget=Budget(latency_us=1000), finetune_epochs=1),
                                    Path(d) / "design", say=lambda m, b=board: say(f"  budget {b}: " + m)).report
            out[board] = dict(fits=True, accuracy=r["accuracy_after"], latency_us=r["latency_us"], resources=r["resources"],
                              layers=[(l["module"], l["pattern"], l["sparsity"], l["weight_bits"], l["reuse_factor"])
                                      for l in r["layers"]], seconds=time.time() - t0)
        except HwpruneInputError as e:  # no design fits: the search says which resource binds
            out[board] = dict(fits=False, note=str(e).splitlines()[0], seconds=time.time() - t0)
        say(f"budget-driven on {board}: {out[board]}")
    return out


def textcnn_seed(data, seed: int) -> float:
    from hwprune.text.train import TrainConfig, train_textcnn

    result, _ = train_textcnn(data, TrainConfig(seed=seed, split_seed=SPLIT_SEED, epochs=5), progress=False)
    return float(result.metrics["test_accuracy"])


def ms(vals: list[float]) -> str:
    v = [100 * a for a in vals if a is not None]
    if not v:
        return "not measured (out of time)"
    return f"{statistics.mean(v):.1f} ± {statistics.stdev(v):.1f}" if len(v) > 1 else f"{v[0]:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--doc-only", action="store_true", help="write the document from the results so far")
    ap.add_argument("--work", default="build/bench_transformer")
    ap.add_argument("--hardware-seed", type=int, default=0, help="the seed whose models get the hardware figures")
    ap.add_argument("--all-seeds", default="0,1,2",
                    help="the seeds the document reports (several processes may each run some of them)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    from hwprune.text.data import rotten_tomatoes, split

    data = rotten_tomatoes()
    tr, va, te = split(len(data.texts), SPLIT_SEED)
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.doc_only:
        merged: dict = {}
        for f in sorted(work.glob("results_*.json")):
            for k, v in json.loads(f.read_text()).items():
                if k not in merged or (isinstance(merged[k], dict) and merged[k].get("partial")):
                    merged[k] = v
        write_doc(merged, [int(s) for s in args.all_seeds.split(",")], args.epochs)
        return
    mine = work / f"results_{args.seeds.replace(',', '_')}.json"
    results = json.loads(mine.read_text()) if mine.exists() else {}
    if "tfidf" not in results:
        results["tfidf"] = tfidf_lr(data, tr, va, te)
        say(f"TF-IDF + LR {100 * results['tfidf']:.1f}%")
    for s in seeds:
        key = f"transformer_{s}"
        if key not in results:
            def save(row, key=key):
                results[key] = dict(row, partial=True)
                mine.write_text(json.dumps(results, indent=1, default=str))

            results[key] = transformer_seed(data, s, args.epochs, work, with_hw=(s == args.hardware_seed), save=save)
            mine.write_text(json.dumps(results, indent=1, default=str))
    for s in seeds:
        key = f"textcnn_{s}"
        if key not in results:
            results[key] = textcnn_seed(data, s)
            say(f"TextCNN seed {s}: {100 * results[key]:.1f}%")
        mine.write_text(json.dumps(results, indent=1))
    merged: dict = {}
    for f in sorted(work.glob("results_*.json")):
        merged.update(json.loads(f.read_text()))
    wanted = [int(s) for s in args.all_seeds.split(",")]
    if all(f"transformer_{s}" in merged and f"textcnn_{s}" in merged for s in wanted):
        write_doc(merged, wanted, args.epochs)
    else:
        say("other seeds still missing; the document is written by the run that completes them")


def budget_text(b) -> str:
    if not isinstance(b, dict):
        return f"Not measured ({b or 'not run'})."
    parts = []
    for board, r in b.items():
        if r.get("fits"):
            res = r["resources"]
            parts.append(f"{board}: test accuracy {100 * r['accuracy']:.1f}% (fixed point), {r['latency_us']:.0f} µs, "
                         f"DSP {res['dsp']}, LUT {res['lut'] / 1000:.0f}k, BRAM18 {res['bram18']}")
        else:
            parts.append(f"{board}: no design — {r['note']}")
    return "; ".join(parts) + "."


def write_doc(results: dict, seeds: list[int], epochs: int) -> None:
    rows = [results[f"transformer_{s}"] for s in seeds if f"transformer_{s}" in results]
    first = rows[0]
    done = [r["seed"] for r in rows]
    cnn = [results.get(f"textcnn_{s}") for s in seeds]

    def col(key: str) -> str:
        vals = [r[key] for r in rows if key in r]
        return ms(vals) + (f" (seeds {','.join(str(r['seed']) for r in rows if key in r)})" if 0 < len(vals) < len(seeds) else "")
    hw = first.get("hw", {})

    def hwcell(kind: str, board: str) -> str:
        r = hw.get(kind, {}).get(board)
        if not r:
            return "–"
        res = r["resources"]
        txt = (f"RF {r['rf']}: {r['latency_us']:.0f} µs, DSP {res['dsp']}, LUT {res['lut'] / 1000:.0f}k, "
               f"BRAM18 {res['bram18']}")
        return txt + ("" if r["fits"] else f" — **does not fit** ({', '.join(r['over'])} over)")

    def budget_cell(board: str) -> str:
        r = (first.get("budget") or {}).get(board)
        if not r:
            return "–"
        if not r.get("fits"):
            return "no design: " + r["note"].split("; ", 1)[-1].split(" (the routing headroom")[0]
        from hwprune.board import load_board

        cap = load_board(board).resources.as_dict()
        res = r["resources"]
        use = ", ".join(f"{k.upper() if k != 'bram18' else 'BRAM18'} {res[k]:,} ({100 * res[k] / cap[k]:.0f}%)"
                        for k in ("dsp", "lut", "ff", "bram18"))
        return f"{r['latency_us']:.0f} µs (simulator), {use} — fits with headroom"

    def budget_accuracy() -> str:
        vals = [(r["seed"], r["budget"]["zcu104"]["accuracy"]) for r in rows
                if (r.get("budget") or {}).get("zcu104", {}).get("fits")]
        txt = ms([v for _, v in vals]) if vals else "–"
        return txt + (f" (seeds {','.join(str(sd) for sd, _ in vals)}; zcu104 design)" if vals else "")

    table = ["| model | test accuracy % (mean ± sd, seeds " + ",".join(map(str, done)) + ") | pynq-z2 | zcu104 |",
             "|---|---|---|---|",
             f"| TF-IDF 1-2-gram + LR (C on validation; deterministic) | {100 * results['tfidf']:.1f} | – | – |",
             f"| TextCNN (GloVe init, 5 epochs) | {ms(cnn)}{'' if all(c is not None for c in cnn) else ' (seeds ' + ','.join(str(s) for s, c in zip(seeds, cnn) if c is not None) + ')'} | see the budget section | – |",
             f"| teacher: all-MiniLM-L6-v2 fine-tuned (1 epoch, seed 0) | {100 * first['teacher_test']:.1f} | – | – |",
             f"| tiny BERT, dense float | {col('dense_float')} | – | – |",
             f"| tiny BERT, dense 8-bit | {col('dense_8bit')} | {hwcell('dense', 'pynq-z2')} | {hwcell('dense', 'zcu104')} |",
             f"| tiny BERT, 1 of 3 heads removed per layer, one-shot float | {col('heads_oneshot')} | | |",
             f"| tiny BERT, head-pruned + 1 epoch distillation, float | {col('heads_float')} | – | – |",
             f"| tiny BERT, head-pruned, 8-bit | {col('heads_8bit')} | {hwcell('heads', 'pynq-z2')} | {hwcell('heads', 'zcu104')} |",
             f"| tiny BERT, block:4x4 75% (Q/K/V/O + FFN), float | {col('block_float')} | – | – |",
             f"| tiny BERT, block:4x4 75% + 8-bit | {col('block_8bit')} | {hwcell('block', 'pynq-z2')} | {hwcell('block', 'zcu104')} |",
             f"| tiny BERT, budget-driven (1 ms; pattern, sparsity, reuse factor, weight storage, output stage per layer; fixed point) | {budget_accuracy()} | {budget_cell('pynq-z2')} | {budget_cell('zcu104')} |"]
    m = first["metrics"]
    body = f"""## Tiny transformer on Rotten Tomatoes (`benchmarks/transformer.py`)

Bundled Rotten Tomatoes split (split seed 0: 10,202 train / 1,275 validation / 1,275 test). The
tiny BERT: 2 layers, width 96, 3 heads of 32, FFN 384, 48 WordPiece tokens (the teacher's
vocabulary cut to the {(m['params'] - m['encoder_params'] - 48 * 96) // 96:,} pieces of the train split), initialised from
all-MiniLM-L6-v2 (teacher layers 3 and 6, the heads and FFN neurons that write most, one PCA
width projection) and distilled from the fine-tuned teacher's cached logits for {epochs} epochs
(alpha 0.7, T 2). {m['encoder_params']:,} encoder parameters ({m['params']:,} with the table),
{m['macs']:,} MACs per sample. Seeds vary the student (initialisation order, batches, dropout);
the split and the teacher are fixed. "8-bit": hwprune fixed point, weights 8 bits, activations
ap_fixed<16,6>, post-training (accuracy from the bit-exact numpy reference of the C++).

Hardware (seed {seeds[0]}): the encoder from the embedded sequence on (the lookup runs on the PS),
io_stream, one uniform reuse factor for Dense/MatMul (the smallest of {', '.join(map(str, RFS))} whose design
fits the board with headroom, else the RF-{RFS[-1]} design and what it exceeds); latency from the dataflow
simulator at 100 MHz, resources from hwprune's estimate (incl. FIFOs and the deployment shell).

{chr(10).join(table)}

The uniform rows (one reuse factor for every engine, the tool's default storage and a parallel
output stage) do not fit either board. Their smallest design — every engine at the largest
reuse factor it takes, RF 1,024 — needs {floor_text(first.get('floor'))}. pynq-z2 has 220 DSP, 53k LUT, 280 BRAM18;
zcu104 1,728 DSP, 230k LUT, 624 BRAM18 (and a design that fits keeps the routing headroom: 80%
of the LUTs and FFs, 85% of DSP and BRAM). The budget-driven search gets below that floor per
layer: sparsity (down to 87.5%) and reuse factor for every Linear and a reuse factor for every
weightless engine, a Dense's weight banks in dual-port block RAM (`rom_impl: bram`, where that
saves 32+ LUTs per BRAM18), its output rounding shared over the next word (`output_stage:
shared`: ceil(n_out / RF) requantizers instead of n_out), and the FIFOs moved from block RAM to
shift registers while BRAM is over its limit (`bind_fifo_storage`). That fits zcu104; pynq-z2
stays out of reach because of the fully spatial dataflow: each stream word carries a whole token
(96 x 16 bits), so every FIFO between two kernels is 1,536 bits wide (a shallow one 1,536 LUT of
shift registers, a deeper one 43 BRAM18) and each layer has an engine of its own. Narrower stream
words (a token over several words, FINN's folding) and one time-shared encoder-layer engine are
the next steps. Head pruning cuts latency (the attention engine serves fewer heads) and block
pruning the Dense DSPs.

hls4ml 1.3.0 on the tiny BERT encoder (ONNX, after qonnx cleanup): {first.get('hls4ml', {}).get('transformer (encoder)', 'not run')}.
The TextCNN (not re-run here): hls4ml's ONNX handler fails on its 1-D max pooling (measured for the team's brief, 2026-11).

Budget-driven pruner (`prune_to_budget`, 1 ms budget, 1 epoch of distillation, seed {seeds[0]}) on the
encoder task: QAT (Brevitas) cannot wrap LayerNorm/GELU/softmax, so it goes post-training
(weights rounded per layer as the search predicts, activations ap_fixed<16,6>); its sites are
the Linear layers (pattern, sparsity, reuse factor) and the weightless engines (attention
MatMuls, LayerNorms, softmax, GELU, the mean over tokens: reuse factor). {budget_text(first.get('budget'))}

{"Seeds " + ", ".join(map(str, done)) + " of " + ", ".join(map(str, seeds)) + " finished. " if len(done) < len(seeds) else ""}Differences under ~2 points here are noise (one test-set standard error is ~1.2 points; the
student seeds' sd is in the table).

Goals (issue 12): distilled tiny BERT >= 80% test — {col('dense_float')}; pruned + 8-bit within 1.5
points of it — block 75% + 8-bit {col('block_8bit')}, head-pruned 8-bit {col('heads_8bit')};
pynq-z2 at most 1 ms per sample — see the pynq-z2 column (the verdict is the estimate's); the
budget-driven design is the one that fits a board (zcu104), its accuracy against the dense
8-bit model's is the "pruned + 8-bit" comparison too.

Measured on {platform.machine()} {platform.python_version()}, torch {torch.__version__}, shared 2-core CPU,
{time.strftime('%Y-%m-%d')}.
"""
    print(write_section("transformer", body))


if __name__ == "__main__":
    main()
