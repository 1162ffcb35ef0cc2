"""Speed benchmark: export + host build + predict, hwprune vs hls4ml 1.3.0, side by side in one run.

Models: the 16-64-32-32-5 MLP (hls4ml's jet-tagging shape) and the bundled text CNN.
hwprune is timed twice: cold (empty compiler cache: the precompiled header is built too) and
warm (cache present, as for every build after the first on a machine). hls4ml is timed with
`convert_from_onnx_model` + `compile()` + `predict()`. Writes the speed section of
docs/benchmarks.md.

    python benchmarks/speed.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
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
        os.environ["HWPRUNE_CACHE"] = tempfile.mkdtemp(prefix="hwp_cache_", dir=workdir)
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
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
