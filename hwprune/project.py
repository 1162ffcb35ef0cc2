"""The Python API: export a model to an HLS project, run it through an engine, estimate it.

    import hwprune
    prj = hwprune.export("model.onnx", "out/", board="pynq-z2", io_type="stream")
    y = hwprune.run(prj, [x], engine="csim")        # or "fixed", "float"
    est = hwprune.estimate("model.onnx", board="pynq-z2")
    sim = hwprune.simulate("model.onnx", board="pynq-z2", batch=16, io_type="stream")

A torch.nn.Module is accepted wherever a model is, with `example_input` (see
`hwprune.frontend.torch_export`).
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnx

from hwprune.board import Board, load_board
from hwprune.errors import HwpruneInputError, ModelLoadError
from hwprune.ir.graph import Graph, IOType
from hwprune.precision import PrecisionConfig

log = logging.getLogger(__name__)

ENGINES = ("float", "fixed", "csim")


def _io(io_type: str | IOType) -> IOType:
    try:
        return IOType(str(getattr(io_type, "value", io_type)).replace("io_", ""))
    except ValueError:
        raise HwpruneInputError(f"io type {io_type!r} is not one of: parallel, stream") from None


def _model_proto(model: Any, example_input: Any = None) -> onnx.ModelProto:
    from hwprune.frontend.onnx_import import load_onnx

    if _is_torch_module(model):
        from hwprune.frontend.torch_export import export_torch

        if example_input is None:
            raise HwpruneInputError("a torch module needs example_input (a tensor of one batch) to be exported")
        return export_torch(model, example_input)
    return load_onnx(model)


def _is_torch_module(model: Any) -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return isinstance(model, torch.nn.Module)


def is_project(path: Any) -> bool:
    return isinstance(path, (str, Path)) and (Path(path) / "hwprune_project.json").is_file()


def build_graph(model: Any, precision: PrecisionConfig | None = None, io_type: str | IOType = "parallel",
                example_input: Any = None, name: str | None = None) -> Graph:
    from hwprune.pipeline import compile_graph

    proto = _model_proto(model, example_input)
    if name is None and isinstance(model, (str, Path)):
        name = Path(model).stem
    return compile_graph(proto, precision, _io(io_type), name=name)


def export(model: Any, out: str | Path, board: str | Board = "pynq-z2", io_type: str = "parallel",
           precision: PrecisionConfig | None = None, clock_mhz: float | None = None, force: bool = False,
           example_input: Any = None, sample_inputs: Sequence[np.ndarray] | None = None) -> Path:
    """Write a Vitis HLS project for `model`. Returns the project directory."""
    from hwprune.backend.hls_project import write_project
    from hwprune.fsutil import check_out_dir

    check_out_dir(Path(out), force)
    b = board if isinstance(board, Board) else load_board(board)
    precision = precision or PrecisionConfig()
    proto = _model_proto(model, example_input)
    name = Path(model).stem if isinstance(model, (str, Path)) else None
    from hwprune.pipeline import compile_graph

    g = compile_graph(proto, precision, _io(io_type), name=name)
    return write_project(g, proto.SerializeToString(), out, b, clock_mhz, precision, force,
                         list(sample_inputs) if sample_inputs is not None else None)


@functools.lru_cache(maxsize=32)
def _project_graph(path: str, stamp: float) -> Graph:
    man = json.loads((Path(path) / "hwprune_project.json").read_text())
    prec = PrecisionConfig.from_dict(man["precision"], where=f"{path}/hwprune_project.json")
    from hwprune.pipeline import compile_graph

    g = compile_graph(Path(path) / man["model"], prec, IOType(man["io_type"]), name=Path(path).name)
    if man.get("fifo_depths"):  # the depths the project declares (older projects: none recorded)
        from hwprune.passes.fifo import set_fifo_depths
        from hwprune.sim.dataflow import stream_fifos

        known = set(stream_fifos(g))
        stale = sorted(set(man["fifo_depths"]) - known)
        if stale:
            log.warning("%s declares FIFO depths for streams this version does not build (%s); ignored",
                        path, ", ".join(stale))
        set_fifo_depths(g, depths={t: d for t, d in man["fifo_depths"].items() if t in known})
    return g


def load_project_graph(project: str | Path) -> Graph:
    """Rebuild the IR of a project (deterministic from its model and recorded precision)."""
    p = Path(project).resolve()
    man = p / "hwprune_project.json"
    if not man.is_file():
        raise ModelLoadError(f"{project} is not an hwprune project (no hwprune_project.json)")
    return _project_graph(str(p), man.stat().st_mtime)


def run(model_or_project: Any, inputs: Sequence[np.ndarray], engine: str = "fixed",
        precision: PrecisionConfig | None = None, io_type: str = "parallel", example_input: Any = None) -> list[np.ndarray]:
    """Run a batch (first axis = batch) through `float` (onnxruntime), `fixed` (numpy
    bit-exact reference) or `csim` (the generated C++ compiled with g++). Outputs are in the
    model's own (logical) layout."""
    if engine not in ENGINES:
        raise HwpruneInputError(f"engine {engine!r} is not one of: {', '.join(ENGINES)}")
    inputs = [np.asarray(x) for x in inputs]
    if is_project(model_or_project):
        p = Path(model_or_project)
        g = load_project_graph(p)
        from hwprune.pipeline import check_inputs, run_fixed, run_onnx

        check_inputs(g, inputs)
        if engine == "float":
            man = json.loads((p / "hwprune_project.json").read_text())
            return run_onnx(p / man["model"], inputs)
        if engine == "fixed":
            return run_fixed(g, inputs)
        from hwprune.backend.csim import run_csim

        return run_csim(p, inputs)
    if isinstance(model_or_project, (str, Path)) and Path(model_or_project).is_dir():
        raise ModelLoadError(f"{model_or_project} is a directory but not an hwprune project (no hwprune_project.json)")
    g = build_graph(model_or_project, precision, io_type, example_input)
    from hwprune.pipeline import check_inputs, run_fixed, run_onnx

    check_inputs(g, inputs)
    if engine == "float":
        return run_onnx(_model_proto(model_or_project, example_input), inputs)
    if engine == "fixed":
        return run_fixed(g, inputs)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="hwp_run_") as d:
        prj = export(model_or_project, Path(d) / "prj", io_type=io_type, precision=precision, example_input=example_input)
        from hwprune.backend.csim import run_csim

        return run_csim(prj, inputs)


def estimate(model_or_project: Any, board: str | Board = "pynq-z2", precision: PrecisionConfig | None = None,
             io_type: str = "parallel", clock_mhz: float | None = None, example_input: Any = None) -> Any:
    """Analytical latency/resource estimate (see docs/estimate.md)."""
    from hwprune.sim.estimate import estimate as _estimate

    b = board if isinstance(board, Board) else load_board(board)
    if is_project(model_or_project):
        man = json.loads((Path(model_or_project) / "hwprune_project.json").read_text())
        g = load_project_graph(model_or_project)
        return _estimate(g, b, clock_mhz or man["clock_mhz"] if b.name == man["board"] else clock_mhz or b.default_clock_mhz)
    g = build_graph(model_or_project, precision, io_type, example_input)
    return _estimate(g, b, clock_mhz or b.default_clock_mhz)


def simulate(model_or_project: Any, board: str | Board = "pynq-z2", batch: int = 16,
             precision: PrecisionConfig | None = None, io_type: str = "parallel", clock_mhz: float | None = None,
             example_input: Any = None, fifo_depths: Any = None) -> Any:
    """Cycle-approximate simulation of `batch` samples (io_stream: the dataflow processes and
    their FIFOs, sim/dataflow.py; io_parallel: the pipelined top). A project keeps its io type,
    precision and clock; `fifo_depths` (io_stream) overrides the recommended depths: one depth
    for every FIFO, or a {stream tensor: depth} mapping."""
    from hwprune.sim.dataflow import simulate as _simulate

    b = board if isinstance(board, Board) else load_board(board)
    if is_project(model_or_project):
        man = json.loads((Path(model_or_project) / "hwprune_project.json").read_text())
        g = load_project_graph(model_or_project)
        clock = clock_mhz or (man["clock_mhz"] if b.name == man["board"] else b.default_clock_mhz)
        return _simulate(g, b, batch=batch, clock_mhz=clock, fifo_depths=fifo_depths)
    if isinstance(model_or_project, (str, Path)) and Path(model_or_project).is_dir():
        raise ModelLoadError(f"{model_or_project} is a directory but not an hwprune project (no hwprune_project.json)")
    g = build_graph(model_or_project, precision, io_type, example_input)
    return _simulate(g, b, batch=batch, clock_mhz=clock_mhz or b.default_clock_mhz, fifo_depths=fifo_depths)
