"""Speed of the numpy fixed-point reference: the common (<= 62-bit, int64) path before and after
the wide-precision work, and what the exact (object, Python-integer) path costs.

Every ONNX pytorch-converted conformance case hwprune supports is compiled and traced
(`hwprune.pipeline.trace_fixed`: the reference `fixed` and the bit-exactness tests run) at
ap_fixed<18,8> by two trees side by side in one run — a baseline git ref (default `main`,
exported with `git archive`) and this checkout — in fresh processes, alternating, `--repeats`
times; the best (minimum) of each. The checkout is also timed at ap_fixed<32,16> (accumulators past 64 bits: the
exact path) and ap_fixed<16,6>. Writes the "fixed-path" section of docs/benchmarks.md.

    python benchmarks/fixed_path.py [--base main] [--repeats 3] [--trace-repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _doc import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

WORKER = r"""
import json, os, sys, time, warnings
warnings.simplefilter("ignore")
from pathlib import Path
import numpy as np, onnx
from onnx import numpy_helper
from hwprune.errors import HwpruneInputError
from hwprune.fixed import FixedType
from hwprune.pipeline import compile_graph, trace_fixed
from hwprune.precision import PrecisionConfig

data = Path(os.path.dirname(onnx.__file__)) / "backend" / "test" / "data" / "pytorch-converted"
precision, cases, reps = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
prec = PrecisionConfig().with_overrides(result=FixedType.parse(precision))
ok, compile_s, trace_s = [], 0.0, 0.0
for case in cases:
    d = data / case
    x = numpy_helper.to_array(onnx.load_tensor(str(d / "test_data_set_0" / "input_0.pb")))
    t = time.perf_counter()
    try:
        g = compile_graph(d / "model.onnx", prec, "parallel")
    except HwpruneInputError:
        continue
    compile_s += time.perf_counter() - t
    trace_fixed(g, [x])  # warm caches (tables, quantized weights)
    t = time.perf_counter()
    for _ in range(reps):
        trace_fixed(g, [x])
    trace_s += (time.perf_counter() - t) / reps
    ok.append(case)
print(json.dumps({"cases": ok, "compile_s": compile_s, "trace_s": trace_s}))
"""


LARGE = r"""
import json, sys, time
import numpy as np
from onnx import helper
sys.path.insert(0, sys.argv[2])
from conftest import fin, make_model
from hwprune.fixed import FixedType
from hwprune.pipeline import compile_graph, trace_fixed
from hwprune.precision import PrecisionConfig

rng = np.random.default_rng(0)
m = make_model([helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)], [fin("x", 256)], [fin("y", 256)],
               [("w", rng.normal(size=(256, 256)) / 16), ("b", rng.normal(size=256) * 0.1)])
x = rng.uniform(-1, 1, size=(64, 256)).astype(np.float32)
g = compile_graph(m, PrecisionConfig().with_overrides(result=FixedType.parse(sys.argv[1])))
trace_fixed(g, [x])
t = time.perf_counter()
for _ in range(5):
    trace_fixed(g, [x])
print(json.dumps({"s": (time.perf_counter() - t) / 5, "acc": g.layers[0].accum_t.width}))
"""


def _large(precision: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", LARGE, precision, str(ROOT / "tests")], env=env, capture_output=True,
                         text=True, check=True, cwd=tempfile.gettempdir())
    return json.loads(out.stdout.strip().splitlines()[-1])


def _cases() -> list[str]:
    import onnx

    data = Path(os.path.dirname(onnx.__file__)) / "backend" / "test" / "data" / "pytorch-converted"
    return sorted(p.name for p in data.iterdir() if p.is_dir())


def _run(tree: Path, precision: str, cases: list[str], reps: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", WORKER, precision, json.dumps(cases), str(reps)], env=env,
                         capture_output=True, text=True, check=True, cwd=tempfile.gettempdir())
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="main")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--trace-repeats", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        base.mkdir()
        archive = subprocess.run(["git", "archive", args.base], cwd=ROOT, capture_output=True, check=True).stdout
        tar = Path(tmp) / "base.tar"
        tar.write_bytes(archive)
        with tarfile.open(tar) as t:
            t.extractall(base, filter="data")
        commit = subprocess.run(["git", "rev-parse", "--short", args.base], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        here = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        # The cases both trees import at ap_fixed<18,8>.
        cases = _run(base, "ap_fixed<18,8,AP_RND_CONV,AP_SAT>", _cases(), 1)["cases"]
        cases = _run(ROOT, "ap_fixed<18,8,AP_RND_CONV,AP_SAT>", cases, 1)["cases"]
        runs: dict[str, list[dict]] = {"base": [], "here": [], "here32": [], "here16": []}
        for _ in range(args.repeats):
            runs["base"].append(_run(base, "ap_fixed<18,8,AP_RND_CONV,AP_SAT>", cases, args.trace_repeats))
            runs["here"].append(_run(ROOT, "ap_fixed<18,8,AP_RND_CONV,AP_SAT>", cases, args.trace_repeats))
            runs["here32"].append(_run(ROOT, "ap_fixed<32,16>", cases, args.trace_repeats))
            runs["here16"].append(_run(ROOT, "ap_fixed<16,6>", cases, args.trace_repeats))
    med = {k: (min(r["trace_s"] for r in v), min(r["compile_s"] for r in v),
               len(v[0]["cases"])) for k, v in runs.items()}
    load = os.getloadavg()[0]
    rows = [("`main`-side tree " + commit + ", ap_fixed<18,8>", "base"), (f"this tree {here}, ap_fixed<18,8>", "here"),
            (f"this tree {here}, ap_fixed<32,16> (exact path)", "here32"), (f"this tree {here}, ap_fixed<16,6>", "here16")]
    lines = [
        "## Fixed-point reference speed: the int64 path and the exact wide path",
        "",
        f"`python benchmarks/fixed_path.py` — the {med['base'][2]} supported pytorch-converted conformance cases, "
        f"compiled and traced (`trace_fixed`, io_parallel, the samples of each case's data set) in fresh processes, "
        f"trees alternating, best of {args.repeats} runs of {args.trace_repeats} traces each (the minimum: the least disturbed by other load); "
        f"load average {load:.1f} on {os.cpu_count()} cores while it ran (a shared machine: compare the rows, "
        f"measured side by side, not the absolute times).",
        "",
        "| tree, precision | cases | trace (s, all cases) | ratio to base | compile (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, key in rows:
        tr, co, n = med[key]
        lines.append(f"| {label} | {n} | {tr:.3f} | {tr / med['base'][0]:.2f}x | {co:.2f} |")
    large = {p: [_large(p) for _ in range(args.repeats)] for p in
             ("ap_fixed<18,8,AP_RND_CONV,AP_SAT>", "ap_fixed<32,16>", "ap_fixed<64,32>")}
    ref = min(r["s"] for r in large["ap_fixed<18,8,AP_RND_CONV,AP_SAT>"])
    lines += ["", "One Dense 256x256 layer, a batch of 64 (this tree; best of "
              f"{args.repeats} processes of 5 traces): the exact path's cost where the arrays are large.", "",
              "| precision | accumulator bits | trace (ms) | ratio |", "|---|---:|---:|---:|"]
    for p, rs in large.items():
        t = min(r["s"] for r in rs)
        lines.append(f"| {p} | {rs[0]['acc']} | {t * 1e3:.1f} | {t / ref:.1f}x |")
    section = write_section("fixed-path", "\n".join(lines))
    print(section)


if __name__ == "__main__":
    main()
