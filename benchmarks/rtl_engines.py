"""Estimate vs hardware for the dense and balanced-sparse engines: yosys synth_xilinx (LUT, FF,
DSP, BRAM18) and Verilator (cycles) of the RTL reference (hwprune.rtl), across reuse factors,
sparsities and weight widths. Writes the `rtl` section of docs/benchmarks.md.

    python benchmarks/rtl_engines.py [--jobs 2] [--quick]

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
]
QUICK = CONFIGS[:3]


def model(seed: int = 0):
    rng = np.random.default_rng(seed)
    w = (rng.normal(size=(N_OUT, N_IN)) * 0.3).astype(np.float32)
    b = (rng.normal(size=N_OUT) * 0.1).astype(np.float32)
    g = helper.make_graph([helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1, name="fc")], "m",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", N_IN])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", N_OUT])],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def layer_for(pattern: str, sparsity: float, bits: int, rf: int):
    import hwprune
    from hwprune.fixed import FixedType
    from hwprune.pipeline import compile_graph
    from hwprune.precision import LayerPrecision, PrecisionConfig
    from hwprune.prune.onnx_prune import prune_onnx
    from hwprune.prune.patterns import Pattern

    m = model()
    if pattern != "dense":
        m, _ = prune_onnx(m, Pattern.parse(pattern), sparsity)
    act = FixedType.parse("ap_fixed<8,3,AP_RND_CONV,AP_SAT>")
    prec = PrecisionConfig(model=LayerPrecision(result=act, weight_width=bits, reuse_factor=rf))
    g = compile_graph(m, prec)
    est = hwprune.estimate(m, "pynq-z2", precision=prec)
    return g, g.layer("fc"), next(l.cost for l in est.layers if l.name == "fc")


def key(c) -> str:
    return "|".join(map(str, c))


def synth_one(c) -> dict:
    from hwprune.rtl.engine import spec_from_dense, verilog
    from hwprune.sim.calibrate import synthesize

    g, layer, cost = layer_for(*c)
    spec = spec_from_dense(layer, g, name="hwp_bench")
    d = CACHE.parent / "v"
    d.mkdir(parents=True, exist_ok=True)
    src = d / f"{key(c).replace('|', '_').replace(':', '-')}.v"
    src.write_text(verilog(spec))
    t = time.perf_counter()
    r = synthesize([src], spec.name, dsp=spec.dsp)
    return {"yosys": r.as_dict(), "cells": r.cells, "seconds": round(time.perf_counter() - t, 1)}


def main(argv=None) -> int:
    from hwprune.rtl import verilator as vl
    from hwprune.rtl.engine import Schedule, spec_from_dense
    from hwprune.sim.calibrate import yosys_version

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--doc-only", action="store_true")
    a = ap.parse_args(argv)
    configs = QUICK if a.quick else CONFIGS
    cache = json.loads(CACHE.read_text()) if CACHE.exists() else {}
    t0 = time.perf_counter()
    if not a.doc_only:
        todo = [c for c in configs if "yosys" not in cache.get(key(c), {})]
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
        g, layer, cost = layer_for(*c)
        spec = spec_from_dense(layer, g, name=f"hwp_b{j}")
        t = g.tensor(layer.inputs[0]).type
        x = rng.integers(t.min_raw, t.max_raw + 1, size=(4, N_IN))
        specs.append(spec), xs.append(x), rows.append((c, layer, g, cost, x))
    results = vl.run(specs, xs, CACHE.parent / "vl")
    body = table(rows, results, cache, yosys_version())
    write_section("rtl", body.replace("{minutes}", f"{(time.perf_counter() - t0) / 60:.0f}"))
    print(body)
    return 0


def _r(e: float, m: float) -> str:
    if m == 0:
        return "=" if e == 0 else "—"
    return f"{e / m:.2f}"


def table(rows, results, cache, version) -> str:
    L = ["## Estimate vs yosys and Verilator: dense and balanced-sparse engines", "",
         f"Made by `python benchmarks/rtl_engines.py` on {platform.machine()} ({_cores()} cores). One {N_IN}x{N_OUT} "
         "dense layer (ap_fixed<8,3,AP_RND_CONV,AP_SAT> activations, weights of the given width, exact accumulator) "
         "as the RTL reference engine of `hwprune.rtl` (the schedule of `hls/hwprune/dense.h` / `dense_sparse.h`), "
         f"synthesized with yosys {version} (`synth_xilinx -family xc7`, `-nodsp` when the estimate puts the products "
         "in fabric) and simulated with Verilator on 4 words (outputs equal the fixed-point reference bit for bit in "
         "every row). *est* = `hwprune estimate` (pynq-z2) for the layer; the ratio is est / measured. Cycles: input "
         "word taken to output word taken, for 4 words (= 3 x RF + the estimated latency).", "",
         "| pattern | sparsity | w bits | RF | mult | LUT est | LUT yosys | ratio | FF est | FF yosys | ratio "
         "| DSP est/yosys | BRAM18 est/yosys | cycles est | cycles Verilator | exact |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    worst = {"lut": 1.0, "ff": 1.0}
    exact_all = True
    for (c, layer, g, cost, x), res in zip(rows, results):
        y = cache.get(key(c), {}).get("yosys")
        ref = layer.fixed_forward(g, [x])
        exact = bool(np.array_equal(res.outputs, ref) and np.array_equal(res.stalled_outputs, ref))
        exact_all &= exact
        est_cycles = 3 * layer.reuse_factor + cost.latency
        pat, sp, bits, rf = c
        if y:
            for k, e in (("lut", cost.lut), ("ff", cost.ff)):
                r = e / y[k] if y[k] else 1.0
                worst[k] = max(worst[k], r, 1 / r if r else 1)
        yl = lambda k: f"{y[k]:g}" if y else "—"
        L.append(f"| {pat} | {sp:.0%} | {bits} | {rf} | {cost.multipliers} | {cost.lut:,.0f} | {yl('lut')} | "
                 f"{_r(cost.lut, y['lut']) if y else '—'} | {cost.ff:,.0f} | {yl('ff')} | {_r(cost.ff, y['ff']) if y else '—'} | "
                 f"{cost.dsp:g} / {yl('dsp')} | {cost.bram18:g} / {yl('bram18')} | {est_cycles} | {res.latency} | "
                 f"{'yes' if exact else 'NO'} |")
    L.append("")
    by = {key(c): (cost, cache.get(key(c), {}).get("yosys")) for (c, _, _, cost, _), in zip(rows)}
    dense8, block8 = by.get(key(("dense", 0.0, 8, 8))), by.get(key(("block:4x4", 0.75, 8, 8)))
    L.append("Goals (issue 11):")
    L.append("")
    L.append(f"- every LUT and FF estimate within 20% of yosys: worst LUT ratio {worst['lut']:.2f}, "
             f"worst FF ratio {worst['ff']:.2f} (as max(est/yosys, yosys/est)) — {'met' if max(worst.values()) <= 1.2 else 'not met'}.")
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
