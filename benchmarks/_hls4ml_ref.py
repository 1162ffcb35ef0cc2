"""hls4ml 1.3.0 side of the speed benchmark: ONNX -> hls4ml model -> compile() -> predict().

hls4ml needs the torch ONNX graph pre-processed by qonnx (cleanup, channels-last, Gemm to
MatMul) before it converts; those steps are counted in its conversion time. Failures are
returned as text so the benchmark can report them beside the timings.
"""

from __future__ import annotations

import contextlib
import io
import time
import traceback

import numpy as np


def time_hls4ml(onnx_path: str, x: np.ndarray, workdir: str, io_type: str = "io_parallel") -> dict:
    out: dict = {"convert_s": None, "compile_s": None, "predict_s": None, "total_s": 0.0, "y": None, "error": None}
    t0 = time.perf_counter()
    try:
        sink = io.StringIO()
        with contextlib.redirect_stdout(sink):
            import hls4ml
            from qonnx.core.modelwrapper import ModelWrapper
            from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
            from qonnx.transformation.gemm_to_matmul import GemmToMatMul
            from qonnx.util.cleanup import cleanup_model

            model = cleanup_model(ModelWrapper(onnx_path))
            model = model.transform(ConvertToChannelsLastAndClean())
            model = model.transform(GemmToMatMul())
            model = cleanup_model(model)
            config = hls4ml.utils.config_from_onnx_model(model, granularity="name", backend="Vitis",
                                                         default_precision="fixed<16,6>")
            hls_model = hls4ml.converters.convert_from_onnx_model(model, output_dir=workdir, io_type=io_type,
                                                                  backend="Vitis", hls_config=config)
            t1 = time.perf_counter()
            out["convert_s"] = t1 - t0
            hls_model.compile()
            t2 = time.perf_counter()
            out["compile_s"] = t2 - t1
            out["y"] = hls_model.predict(np.ascontiguousarray(x.astype(np.float32 if x.dtype.kind == "f" else x.dtype)))
            out["predict_s"] = time.perf_counter() - t2
    except Exception as e:  # reported, not raised: a failing peer is a benchmark result
        out["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"
        out["trace"] = traceback.format_exc(limit=3)
    out["total_s"] = time.perf_counter() - t0
    return out
