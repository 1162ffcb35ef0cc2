"""Estimate vs hardware for the dense and balanced-sparse engines: yosys synth_xilinx (LUT, FF,
DSP, BRAM18) and Verilator (cycles) of the RTL reference (hwprune.rtl), across reuse factors,
sparsities and weight widths. Writes the `rtl` section of docs/benchmarks.md.

    python benchmarks/rtl_engines.py [--jobs 2] [--quick] [--only TEXT]

--only measures just the rows whose configuration contains TEXT (e.g. ":col") and prints their
table without rewriting docs/benchmarks.md.

Measurements are cached in build/bench/rtl_engines.json (delete it to re-measure).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from onnx import helper, numpy_helper, TensorProto

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _doc import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "build" / "bench" / "rtl_engines.json"

N_IN, N_OUT = 16, 16
# (pattern, sparsity, weight bits, reuse factor)
CONFIGS = [
    ("dense", 0.0, 8, 8), ("block:4x4", 0.75, 8, 8), ("block:4x4", 0.75, 8, 4), ("dense", 0.0, 8, 16),
    ("dense", 0.0, 4, 16), ("dense", 0.0, 16, 16), ("block:4x4", 0.75, 8, 16), ("block:4x4", 0.75, 4, 4),
    ("block:4x4", 0.75, 16, 4), ("block:4x4", 0.5, 8, 8), ("bbs:8", 0.75, 8, 4), ("nm:2:4", 0.5, 8, 8),
    ("dense", 0.0, 8, 32), ("block:4x4", 0.75, 8, 2), ("dense", 0.0, 8, 1),
    # Column-balanced (a bank is a block-column; its blocks add into the rows their indices say).
    ("block:4x4:col", 0.75, 8, 4), ("block:4x4:col", 0.75, 8, 8), ("block:4x4:col", 0.5, 8, 4),
    ("block:4x4:col", 0.5, 8, 8),
]
QUICK = CONFIGS[:3]
# Other shapes and types, not used to fit anything: (n_in, n_out, pattern, sparsity, x type,
# output type, weight bits, RF).
HOLDOUT = [
    (24, 10, "dense", 0.0, "ap_fixed<6,2>", "ap_fixed<10,4>", 6, 5),
    (16, 12, "bbs:4", 0.5, "ap_ufixed<8,2>", "ap_fixed<12,5,AP_RND,AP_SAT>", 8, 3),
    (12, 8, "block:2x2", 0.75, "ap_fixed<10,4>", "ap_fixed<16,6>", 10, 2),
    (32, 4, "nm:2:4", 0.5, "ap_fixed<8,3,AP_RND_CONV,AP_SAT>", "ap_fixed<8,3,AP_RND_CONV,AP_SAT>", 4, 8),
    # Banks past 8 Kbit: block RAM (2048 x 8 fabric weights; 1024 x 16 DSP weights, kept blocks).
    (64, 32, "dense", 0.0, "ap_fixed<8,3,AP_RND_CONV,AP_SAT>", "ap_fixed<8,3,AP_RND_CONV,AP_SAT>", 8, 2048),
    (64, 64, "block:4x4", 0.75, "ap_fixed<8,3,AP_RND_CONV,AP_SAT>", "ap_fixed<8,3,AP_RND_CONV,AP_SAT>", 16, 1024),
]


def model(seed: int = 0, n_in: int = N_IN, n_out: int = N_OUT):
    rng = np.random.default_rng(seed)
    w = (rng.normal(size=(n_out, n_in)) * 0.3).astype(np.float32)
    b = (rng.normal(size=n_out) * 0.1).astype(np.float32)
    g = helper.make_graph([helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1, name="fc")], "m",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n_in])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", n_out])],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def layer_for(pattern: str, sparsity: float, bits: int, rf: int, n_in: int = N_IN, n_out: int = N_OUT,
              x_type: str = "ap_fixed<8,3,AP_RND_CONV,AP_SAT>", out_type: str | None = None):
    import hwprune
    from hwprune.fixed import FixedType
    from hwprune.pipeline import compile_graph
    from hwprune.precision import LayerPrecision, PrecisionConfig
    from hwprune.prune.onnx_prune import prune_onnx
    from hwprune.prune.patterns import Pattern

    m = model(0, n_in, n_out)
    if pattern != "dense":
        m, _ = prune_onnx(m, Pattern.parse(pattern), sparsity)
    act = FixedType.parse(x_type)
    prec = PrecisionConfig(model=LayerPrecision(result=act, weight_width=bits, reuse_factor=rf),
                           layer_name={"fc": LayerPrecision(result=FixedType.parse(out_type or x_type))})
    g = compile_graph(m, prec)
    est = hwprune.estimate(m, "pynq-z2", precision=prec)
    return g, g.layer("fc"), next(l.cost for l in est.layers if l.name == "fc")


def key(c) -> str:
    return "|".join(map(str, c))


def layer_of(c):
    if len(c) == 4:
        return layer_for(*c)
    n_in, n_out, pattern, sparsity, xt, ot, bits, rf = c
    return layer_for(pattern, sparsity, bits, rf, n_in, n_out, xt, ot)


def verilog_sha(c) -> str:
    import hashlib

    from hwprune.rtl.engine import spec_from_dense, verilog

    g, layer, _ = layer_of(c)
    return hashlib.sha256(verilog(spec_from_dense(layer, g, name="hwp_bench")).encode()).hexdigest()[:16]


def synth_one(c) -> dict:
    from hwprune.rtl.engine import spec_from_dense, verilog
    from hwprune.sim.calibrate import synthesize

    g, layer, cost = layer_of(c)
    spec = spec_from_dense(layer, g, name="hwp_bench")
    d = CACHE.parent / "v"
    d.mkdir(parents=True, exist_ok=True)
    src = d / f"{key(c).replace('|', '_').replace(':', '-')}.v"
    src.write_text(verilog(spec))
    t = time.perf_counter()
    r = synthesize([src], spec.name, dsp=spec.dsp)
    return {"yosys": r.as_dict(), "cells": r.cells, "seconds": round(time.perf_counter() - t, 1),
            "verilog_sha": verilog_sha(c)}


def main(argv=None) -> int:
    from hwprune.rtl import verilator as vl
    from hwprune.rtl.engine import Schedule, spec_from_dense
    from hwprune.sim.calibrate import yosys_version

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--doc-only", action="store_true")
    ap.add_argument("--only", help="only the rows whose configuration contains this text; prints, does not write the doc")
    a = ap.parse_args(argv)
    configs = QUICK if a.quick else CONFIGS + HOLDOUT
    if a.only:
        configs = [c for c in configs if a.only in key(c)]
    cache = json.loads(CACHE.read_text()) if CACHE.exists() else {}
    t0 = time.perf_counter()
    if not a.doc_only:
        # A cached synthesis counts only for the very Verilog it was run on.
        todo = [c for c in configs if cache.get(key(c), {}).get("verilog_sha") != verilog_sha(c)]
        with ThreadPoolExecutor(a.jobs) as pool:
            for c, res in zip(todo, pool.map(synth_one, todo)):
                cache.setdefault(key(c), {}).update(res)
                CACHE.parent.mkdir(parents=True, exist_ok=True)
                CACHE.write_text(json.dumps(cache, indent=1))
                print(c, res["yosys"], res["seconds"], "s", file=sys.stderr)
    # Cycles: one Verilator build for all, 4 words each; estimates are recomputed every run.
    specs, xs, rows = [], [], []
    rng = np.random.default_rng(0)
    for j, c in enumerate(configs):
        g, layer, cost = layer_of(c)
        spec = spec_from_dense(layer, g, name=f"hwp_b{j}")
        t = g.tensor(layer.inputs[0]).type
        x = rng.integers(t.min_raw, t.max_raw + 1, size=(4, layer.n_in))
        specs.append(spec), xs.append(x), rows.append((c, layer, g, cost, x))
    results = vl.run(specs, xs, CACHE.parent / "vl")
    body = table(rows, results, cache, yosys_version())
    if not a.only:
        write_section("rtl", body.replace("{minutes}", f"{(time.perf_counter() - t0) / 60:.0f}"))
    print(body)
    return 0


def _r(e: float, m: float) -> str:
    if m == 0:
        return "=" if e == 0 else "—"
    return f"{e / m:.2f}"


def table(rows, results, cache, version) -> str:
    L = ["## Estimate vs yosys and Verilator: dense and balanced-sparse engines", "",
         f"Made by `python benchmarks/rtl_engines.py` on {platform.machine()} ({_cores()} cores), {{minutes}} min. "
         "Each layer runs as the RTL reference engine of `hwprune.rtl` (the schedule of `hls/hwprune/dense.h` / "
         f"`dense_sparse.h`), synthesized with yosys {version} (`synth_xilinx -family xc7`, `-nodsp` when the estimate "
         "puts the products in fabric) and simulated with Verilator on 4 words, streaming and with random stalls "
         "(*exact*: both equal the fixed-point reference bit for bit). *est* = `hwprune estimate` (pynq-z2) for the "
         "layer; ratio = est / yosys. Cycles: first input word taken to last output word taken for the 4 words "
         "(3 x RF + the estimated latency).", "",
         f"Main sweep: one {N_IN}x{N_OUT} layer, ap_fixed<8,3,AP_RND_CONV,AP_SAT> in and out, weights of the given "
         "width, exact accumulator. The engine's fitted constants (per-output control, requantization) come from "
         "these rows; the second table has shapes and types they were not fitted on.", ""]
    head = ("| LUT est | LUT yosys | ratio | FF est | FF yosys | ratio | DSP est/yosys | BRAM18 est/yosys "
            "| cycles est | cycles Verilator | exact |")
    main = [(r, res) for r, res in zip(rows, results) if len(r[0]) == 4]
    hold = [(r, res) for r, res in zip(rows, results) if len(r[0]) != 4]
    worst = {"lut": 1.0, "ff": 1.0}
    exact_all = True
    hard_exact = True

    def cells(c, layer, g, cost, x, res):
        nonlocal exact_all, hard_exact
        y = cache.get(key(c), {}).get("yosys")
        if y:
            hard_exact &= cost.dsp == y["dsp"] and cost.bram18 == y["bram18"]
        ref = layer.fixed_forward(g, [x])
        exact = bool(np.array_equal(res.outputs, ref) and np.array_equal(res.stalled_outputs, ref))
        exact_all &= exact
        est_cycles = 3 * layer.reuse_factor + cost.latency
        yl = lambda k: f"{y[k]:,}" if y else "—"
        return y, (f"{cost.lut:,.0f} | {yl('lut')} | {_r(cost.lut, y['lut']) if y else '—'} | {cost.ff:,.0f} | {yl('ff')} | "
                   f"{_r(cost.ff, y['ff']) if y else '—'} | {cost.dsp:g} / {y['dsp'] if y else '—'} | "
                   f"{cost.bram18:g} / {y['bram18'] if y else '—'} | {est_cycles} | {res.latency} | {'yes' if exact else 'NO'} |")

    L += ["| pattern | sparsity | w bits | RF | mult " + head, "|---|---|---|---|---" + "|---" * 11 + "|"]
    for (c, layer, g, cost, x), res in main:
        y, tail = cells(c, layer, g, cost, x, res)
        if y:
            for k, e in (("lut", cost.lut), ("ff", cost.ff)):
                r = e / y[k] if y[k] else 1.0
                worst[k] = max(worst[k], r, 1 / r if r else 1)
        pat, sp, bits, rf = c
        L.append(f"| {pat} | {sp:.0%} | {bits} | {rf} | {cost.multipliers} | {tail}")
    L.append("")
    hold_worst = {"lut": 1.0, "ff": 1.0}
    if hold:
        L += ["Other shapes and types (not fitted on):", "",
              "| shape | pattern | in -> out types | w bits | RF | mult " + head, "|---|---|---|---|---|---" + "|---" * 11 + "|"]
        for (c, layer, g, cost, x), res in hold:
            y, tail = cells(c, layer, g, cost, x, res)
            if y:
                for k, e in (("lut", cost.lut), ("ff", cost.ff)):
                    r = e / y[k] if y[k] else 1.0
                    hold_worst[k] = max(hold_worst[k], r, 1 / r if r else 1)
            n_in, n_out, pat, sp, xt, ot, bits, rf = c
            L.append(f"| {n_in}x{n_out} | {pat}{f' {sp:.0%}' if sp else ''} | {xt} -> {ot} | {bits} | {rf} | {cost.multipliers} | {tail}")
        L.append("")
    by = {key(c): (cost, cache.get(key(c), {}).get("yosys")) for (c, _, _, cost, _), _ in main}
    dense8, block8 = by.get(key(("dense", 0.0, 8, 8))), by.get(key(("block:4x4", 0.75, 8, 8)))
    L += ["Goals (issue 11):", ""]
    L.append(f"- every LUT and FF estimate within 20% of yosys: worst ratio in the main sweep LUT {worst['lut']:.2f}, "
             f"FF {worst['ff']:.2f} (max of est/yosys and yosys/est) — {'met' if max(worst.values()) <= 1.2 else 'not met'}; "
             f"on the other shapes LUT {hold_worst['lut']:.2f}, FF {hold_worst['ff']:.2f}"
             f"{'' if max(hold_worst.values()) <= 1.2 else ' (not met there)'}. DSP and BRAM18 "
             f"{'exact in every row — met' if hard_exact else 'NOT exact in every row'}.")
    L.append(f"- cycles: Verilator = estimate in every row, outputs bit-exact — {'met' if exact_all else 'NOT met'}.")
    if dense8 and block8 and dense8[1] and block8[1]:
        L.append(f"- block 4x4 at 75% vs dense, both RF 8, 8-bit: {block8[1]['lut']:,} vs {dense8[1]['lut']:,} LUTs by yosys "
                 f"({dense8[1]['lut'] / block8[1]['lut']:.1f}x fewer) — {'met' if block8[1]['lut'] < dense8[1]['lut'] else 'not met'}.")
    return "\n".join(L)


def _cores() -> int:
    import os

    return os.cpu_count() or 1


if __name__ == "__main__":
    sys.exit(main())
