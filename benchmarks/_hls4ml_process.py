"""hls4ml in a fresh process, as a user runs it: python _hls4ml_process.py MODEL.onnx X.npy WORKDIR Y.npy

Imports hls4ml and qonnx, converts the model, compile()s and predict()s (benchmarks/_hls4ml_ref.py);
saves the prediction to Y.npy. Exit 1 if hls4ml failed (its error on stderr)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _hls4ml_ref import time_hls4ml  # noqa: E402

if __name__ == "__main__":
    model, x, workdir, y = sys.argv[1:5]
    res = time_hls4ml(model, np.load(x), workdir)
    if res["error"]:
        print(res["error"], file=sys.stderr)
        sys.exit(1)
    np.save(y, np.asarray(res["y"]))
