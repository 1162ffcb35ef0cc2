"""Speed benchmark: export + host build + predict, hwprune vs hls4ml 1.3.0, side by side in one run.

Two views, each writing its section of docs/benchmarks.md:

* in process (section "speed"): the 16-64-32-32-5 MLP (hls4ml's jet-tagging shape) and the
  bundled text CNN through the Python APIs. hwprune is timed cold (empty build cache) and warm
  (the precompiled header present); hls4ml with `convert_from_onnx_model` + `compile()` +
  `predict()`.
* whole processes (section "speed-cli"), the way a user runs them: `hwprune run MLP.onnx
  --engine csim` in a fresh process with an empty build cache ($HWPRUNE_CACHE_DIR, cold) and
  again with that cache (warm: the binary is reused), against hls4ml's convert + `compile()`
  + `predict()` in a fresh process (benchmarks/_hls4ml_process.py); plus the CLI's start-up
  (`hwprune --help`, `hwprune run --engine fixed`). Wall time of each process, medians.

    python benchmarks/speed.py [--repeats 3] [--only cli|api]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _doc import write_section  # noqa: E402


def mlp_model() -> tuple[onnx.ModelProto, np.ndarray]:
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 32), torch.nn.ReLU(),
                            torch.nn.Linear(32, 32), torch.nn.ReLU(), torch.nn.Linear(32, 5)).eval()
    x = np.random.default_rng(0).normal(size=(100, 16)).astype(np.float32)
    buf = io.BytesIO()
    torch.onnx.export(m, (torch.from_numpy(x[:1]),), buf, dynamo=False, opset_version=13, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    return onnx.load_from_string(buf.getvalue()), x


def textcnn_model() -> tuple[onnx.ModelProto, np.ndarray]:
    from hwprune.demo import bundled_inputs, bundled_model

    return onnx.load(str(bundled_model())), bundled_inputs()


def time_hwprune(model: onnx.ModelProto, x: np.ndarray, workdir: Path, cold: bool) -> dict:
    import hwprune
    from hwprune.backend import csim

    if cold:
        os.environ["HWPRUNE_CACHE_DIR"] = tempfile.mkdtemp(prefix="hwp_cache_", dir=workdir)
    else:
        csim.wait_for_precompiled_header()  # warm: the machine's compiler cache exists
    t0 = time.perf_counter()
    path = workdir / f"model_{time.perf_counter_ns()}.onnx"
    onnx.save(model, path)
    prj = hwprune.export(path, workdir / f"prj_{time.perf_counter_ns()}", board="pynq-z2")
    t1 = time.perf_counter()
    csim.build(prj)
    t2 = time.perf_counter()
    y = hwprune.run(prj, [x], engine="csim")[0]
    t3 = time.perf_counter()
    return dict(convert_s=t1 - t0, compile_s=t2 - t1, predict_s=t3 - t2, total_s=t3 - t0, y=y)


HERE = Path(__file__).resolve().parent


def _timed(cmd: list[str], env: dict[str, str]) -> dict:
    """Wall and CPU time (user + sys, with the compilers it waited for) of one process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return dict(wall=wall, cpu=cpu, error=None if r.returncode == 0 else (r.stderr.strip().splitlines() or ["?"])[-1])


def _wait_for_background_builds(cache: Path, timeout_s: float = 120.0) -> None:
    """A cold build starts the precompiled header in the background: let it end before the next
    measurement, so that it slows neither tool."""
    deadline = time.time() + timeout_s
    while any(cache.glob("pch/*/.building")) and time.time() < deadline:
        time.sleep(0.1)


def cli_benchmark(repeats: int) -> str:
    """Whole processes, as a user runs them (section "speed-cli")."""
    from hwprune.pipeline import run_onnx

    hw = shutil.which("hwprune", path=str(Path(sys.executable).parent)) or shutil.which("hwprune")
    hw_cmd = [hw] if hw else [sys.executable, "-m", "hwprune.cli"]
    model, x = mlp_model()
    y_ref = run_onnx(model, [x])[0]
    rows: dict[str, list[dict]] = {k: [] for k in ("hwprune run --engine csim, cold cache", "hls4ml compile() + predict()",
                                                   "hwprune run --engine csim, warm cache", "hwprune run --engine fixed",
                                                   "hwprune --help", "g++ -c of a file including only ap_fixed.h")}
    errs: dict[str, float] = {}
    load_before = os.getloadavg()[0]
    # As on a user's machine, Python keeps its compiled bytecode (a shell that sets
    # PYTHONDONTWRITEBYTECODE would recompile hwprune's sources in every process, ~0.1 s;
    # installed packages such as hls4ml have theirs anyway).
    base_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory(prefix="hwp_bench_cli_") as d:
        wd = Path(d)
        mp, xp = wd / "mlp.onnx", wd / "x.npy"
        onnx.save(model, mp)
        np.save(xp, x)
        warm_up = dict(base_env, HWPRUNE_CACHE_DIR=str(wd / "cache_bytecode"))  # writes the bytecode, untimed
        subprocess.run([*hw_cmd, "run", str(mp), "--input", str(xp), "--engine", "csim", "--output", str(wd / "y0.npy")],
                       env=warm_up, capture_output=True)
        _wait_for_background_builds(wd / "cache_bytecode")
        for r in range(repeats):  # interleaved, so machine noise hits every row alike
            cache = wd / f"cache_{r}"
            env = dict(base_env, HWPRUNE_CACHE_DIR=str(cache))
            run = [*hw_cmd, "run", str(mp), "--input", str(xp)]
            rows["hwprune run --engine csim, cold cache"].append(_timed([*run, "--engine", "csim", "--output", str(wd / "y_csim.npy")], env))
            _wait_for_background_builds(cache)
            rows["hwprune run --engine csim, warm cache"].append(_timed([*run, "--engine", "csim", "--output", str(wd / "y_csim.npy")], env))
            rows["hwprune run --engine fixed"].append(_timed([*run, "--engine", "fixed", "--output", str(wd / "y_fixed.npy")], env))
            rows["hwprune --help"].append(_timed([*hw_cmd, "--help"], env))
            from hwprune.backend import csim

            (wd / "ap_only.cpp").write_text('#include "ap_fixed.h"\n')
            rows["g++ -c of a file including only ap_fixed.h"].append(_timed(
                [csim.cxx(), *csim.CXXFLAGS, f"-I{csim.ap_types_dir()}", "-c", str(wd / "ap_only.cpp"), "-o", str(wd / "ap_only.o")], env))
            rows["hls4ml compile() + predict()"].append(
                _timed([sys.executable, str(HERE / "_hls4ml_process.py"), str(mp), str(xp), str(wd / f"hls4ml_{r}"),
                        str(wd / "y_hls4ml.npy")], dict(base_env)))
        for name, f in (("hwprune run --engine csim, cold cache", "y_csim.npy"), ("hls4ml compile() + predict()", "y_hls4ml.npy"),
                        ("hwprune run --engine fixed", "y_fixed.npy")):
            if (wd / f).exists():
                errs[name] = float(np.max(np.abs(np.load(wd / f).reshape(y_ref.shape) - y_ref)))
    errs["hwprune run --engine csim, warm cache"] = errs.get("hwprune run --engine csim, cold cache", float("nan"))
    med = {k: (statistics.median(t["wall"] for t in v), statistics.median(t["cpu"] for t in v),
               next((t["error"] for t in v if t["error"]), None), min(t["wall"] for t in v)) for k, v in rows.items()}
    hls = med["hls4ml compile() + predict()"][0]
    lines = ["## Speed, whole processes: the CLI as a user runs it (MLP 16-64-32-32-5, 100 samples)", "",
             f"Measured by `python benchmarks/speed.py --repeats {repeats}` on {platform.machine()} ({os.cpu_count()} cores; "
             f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after), "
             "medians of interleaved runs, each a fresh process. Cold cache = an empty `$HWPRUNE_CACHE_DIR` (nothing "
             "compiled before: g++ builds the C simulation); warm = the same design run again (the build cache returns "
             "the binary; also the case for a second export of an unchanged design into another directory). hls4ml has "
             "no build cache: every fresh process converts and compiles. CPU = user + system time of the process and "
             "the compilers it waited for. Python's bytecode is kept between processes (written by one untimed run "
             "first), as on a user's machine.", "",
             "| process | wall s | best wall s | CPU s | vs hls4ml (wall) | max abs error vs onnxruntime | note |",
             "|---|---|---|---|---|---|---|"]
    for k, (wall, cpu, err, best) in med.items():
        ratio = f"{wall / hls:.2f}x" if k != "hls4ml compile() + predict()" else ""
        e = f"{errs[k]:.2e}" if k in errs else ""
        lines.append(f"| `{k}` | {wall:.2f} | {best:.2f} | {cpu:.2f} | {ratio} | {e} | {(err or '')[:80].replace('|', '/')} |")
    cold, warm = med["hwprune run --engine csim, cold cache"][0], med["hwprune run --engine csim, warm cache"][0]
    parse = med["g++ -c of a file including only ap_fixed.h"][0]
    lines += ["", f"Goal (issue 10): `hwprune run --engine csim` with a cold cache at most 0.25x of hls4ml's fresh process: "
              f"{cold / hls:.2f}x — {'met' if cold <= 0.25 * hls else 'not met'}. With the build cache warm (a design "
              f"run or exported before, in any directory) it is {warm / hls:.2f}x. A cold run costs at least about the warm "
              f"run plus one g++ parse of ap_fixed.h, {(warm + parse) / hls:.2f}x of hls4ml here, whatever the design; "
              "the rest of the cold time is compiling the design's kernels (two translation units side by side, "
              "then a link).",
              "",
              f"What stands in the way: g++. The cold run's CPU beyond the warm run's, "
              f"{med['hwprune run --engine csim, cold cache'][1] - med['hwprune run --engine csim, warm cache'][1]:.2f} s, "
              "is the compiler's: both translation units (the design with its kernels, and the testbench) parse "
              "ap_fixed.h and instantiate their fixed-point types at -O1, then link. Python's whole share is the warm "
              "run. The levers left: a precompiled header (it exists, but a cold cache holds none by definition: it "
              "is built in the background after the first build), and a testbench that does not include ap_fixed.h "
              "(raw integers across a C interface in the design's unit: ~40% of the compiler's CPU, though not its wall "
              "time on an idle 2-core machine, where the two units compile side by side). -O0 takes ~12% less compiler CPU "
              "but the binary runs ~15x slower (0.3 s for these 100 samples), so it gains nothing here. Medians on a "
              "loaded machine spread widely: see the best-of column and the load average above."]
    return write_section("speed-cli", "\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", choices=["cli", "api"], help="run one of the two benchmarks")
    args = ap.parse_args()
    if args.only != "api":
        print(cli_benchmark(args.repeats))
    if args.only == "cli":
        return
    from _hls4ml_ref import time_hls4ml

    from hwprune.pipeline import run_onnx

    import hwprune

    rows = []
    for name, make in (("MLP 16-64-32-32-5", mlp_model), ("text CNN (bundled)", textcnn_model)):
        model, x = make()
        y_ref = run_onnx(model, [x])[0]
        res: dict[str, list[dict]] = {"hwprune cold": [], "hwprune warm": [], "hls4ml": []}
        with tempfile.TemporaryDirectory(prefix="hwp_bench_") as d:
            wd = Path(d)
            for r in range(args.repeats):
                # Interleave the tools so machine noise hits both alike.
                res["hwprune cold"].append(time_hwprune(model, x, wd, cold=True))
                res["hwprune warm"].append(time_hwprune(model, x, wd, cold=False))
                p = wd / f"h_{r}.onnx"
                onnx.save(model, p)
                res["hls4ml"].append(time_hls4ml(str(p), x, str(wd / f"hls4ml_{r}")))
        for tool, runs in res.items():
            err = next((r.get("error") for r in runs if r.get("error")), None)
            ys = [r.get("y") for r in runs if r.get("y") is not None]
            acc = "" if not ys else f"{np.max(np.abs(np.asarray(ys[0]).reshape(y_ref.shape) - y_ref)):.2e}"
            rows.append(dict(model=name, tool=tool, total=statistics.median(r["total_s"] for r in runs),
                             compile=statistics.median(r.get("compile_s") or 0 for r in runs),
                             error=err, max_err=acc))
    hls = {r["model"]: r["total"] for r in rows if r["tool"] == "hls4ml" and not r["error"]}
    lines = ["## Speed: export + host build + predict (100 samples)", "",
             f"Measured by `python benchmarks/speed.py --repeats {args.repeats}` on {platform.machine()} "
             f"({os.cpu_count()} cores), medians, tools interleaved in one run. "
             "hwprune cold = empty compiler cache (the precompiled header is then built in the background, not waited for); warm = cache present.", "",
             "| model | tool | total s | of which g++ s | vs hls4ml | max abs error vs onnxruntime | note |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = f"{r['total'] / hls[r['model']]:.2f}x" if r["model"] in hls and r["tool"] != "hls4ml" else ""
        note = (r["error"] or "")[:80].replace("|", "/")
        lines.append(f"| {r['model']} | {r['tool']} | {r['total']:.2f} | {r['compile']:.2f} | {ratio} | {r['max_err']} | {note} |")
    print(write_section("speed", "\n".join(lines)))


if __name__ == "__main__":
    main()
