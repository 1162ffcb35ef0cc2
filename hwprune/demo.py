"""`hwprune demo`: the main job on the bundled default — a small text CNN (embedding ->
Conv1d -> ReLU -> max over time -> Linear) — exported for pynq-z2, estimated, and checked by
C simulation against the bit-exact reference and the float model."""

from __future__ import annotations

import json
import logging
import shutil
import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hwprune.errors import OutputDirError

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from hwprune.precision import PrecisionConfig

BOARD = "pynq-z2"


def bundled_model() -> Path:
    return Path(str(resources.files("hwprune") / "data" / "textcnn_small.onnx"))


def bundled_inputs() -> np.ndarray:
    return np.load(str(resources.files("hwprune") / "data" / "textcnn_small_tokens.npy"))


def _step(msg: str) -> None:
    print(f"[hwprune demo] {msg}", flush=True)


REUSE_FACTORS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128)


def fitting_precision(model: Path, io_type: str) -> "PrecisionConfig":
    """The smallest reuse factor whose estimate fits the board (most parallel design that fits)."""
    import hwprune
    from hwprune.precision import PrecisionConfig

    for rf in REUSE_FACTORS:
        prec = PrecisionConfig().with_overrides(reuse_factor=rf)
        est = hwprune.estimate(model, board=BOARD, precision=prec, io_type=io_type)
        u = est.utilization()
        _step(f"reuse factor {rf:3d}: DSP {100 * u['dsp']:6.1f}%  LUT {100 * u['lut']:5.1f}%  "
              f"latency {est.latency_us:.2f} us -> {'fits' if est.fits() else 'does not fit'}")
        if est.fits():
            return prec
    raise RuntimeError("the bundled model does not fit the board at any reuse factor")


def run_demo(out: Path, force: bool = False, io_type: str = "stream") -> int:
    import hwprune
    from hwprune.backend.csim import raw_outputs
    from hwprune.cli import format_estimate
    from hwprune.pipeline import error_bounds, trace_fixed

    if out.exists() and any(out.iterdir()) and not force:
        raise OutputDirError(f"--out {out} exists and is not empty; choose another directory or pass --force")
    if out.exists():
        shutil.rmtree(out)
    model, x = bundled_model(), bundled_inputs()
    _step(f"model {model.name}: token ids {x.shape[1:]} per sample, {x.shape[0]} samples; board {BOARD}")
    prec = fitting_precision(model, io_type)
    t0 = time.perf_counter()
    prj = hwprune.export(model, out / "project", board=BOARD, io_type=io_type, precision=prec, sample_inputs=[x])
    _step(f"exported the Vitis HLS project to {prj} ({time.perf_counter() - t0:.1f} s)")
    est = hwprune.estimate(prj, board=BOARD)
    _step("estimate:\n" + format_estimate(est))
    t0 = time.perf_counter()
    from hwprune.project import load_project_graph

    g = load_project_graph(prj)
    csim = raw_outputs(prj, [x])[0]
    t_csim = time.perf_counter() - t0
    ref = trace_fixed(g, [x]).values[g.outputs[0]]
    exact = bool(np.array_equal(csim, ref))
    y_fixed = hwprune.run(prj, [x], engine="fixed")[0]
    y_float = hwprune.run(prj, [x], engine="float")[0]
    bound = error_bounds(g, [x])[0]
    err = float(np.max(np.abs(y_fixed - y_float)))
    agree = float(np.mean(np.argmax(y_fixed, -1) == np.argmax(y_float, -1)))
    _step(f"C simulation (g++, {t_csim:.1f} s): bit-exact with the fixed-point reference: {exact}")
    _step(f"fixed vs float: max |error| {err:.2e} (bound implied by the types {float(np.max(bound)):.2e}); "
          f"argmax agreement {100 * agree:.1f}%")
    report = dict(model=model.name, board=BOARD, project=str(prj), csim_bit_exact=exact,
                  max_abs_error_vs_float=err, error_bound=float(np.max(bound)), argmax_agreement=agree,
                  estimate=est.as_dict())
    (out / "report.json").write_text(json.dumps(report, indent=2))
    _step(f"wrote {out / 'report.json'}")
    return 0 if exact and err <= float(np.max(bound)) + 1e-9 else 1
