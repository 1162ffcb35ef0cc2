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
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from hwprune.backend.project_dir import ProjectDir
from hwprune.board import Board, load_board
from hwprune.errors import HwpruneInputError, ModelLoadError
from hwprune.precision import PrecisionConfig

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # the heavy modules load only on the paths that use them
    import numpy as np
    import onnx

    from hwprune.ir.graph import Graph, IOType

ENGINES = ("float", "fixed", "csim")


def _io(io_type: "str | IOType") -> "IOType":
    from hwprune.ir.graph import IOType

    try:
        return IOType(str(getattr(io_type, "value", io_type)).replace("io_", ""))
    except ValueError:
        raise HwpruneInputError(f"io type {io_type!r} is not one of: parallel, stream") from None


def _model_proto(model: Any, example_input: Any = None) -> "onnx.ModelProto":
    from hwprune.frontend.onnx_import import load_onnx

    if _is_torch_module(model):
        from hwprune.frontend.torch_export import export_torch

        if example_input is None:
            raise HwpruneInputError("a torch module needs example_input (a tensor of one batch) to be exported")
        return export_torch(model, example_input)
    if isinstance(model, (str, Path)) and Path(model).is_dir() and (Path(model) / "model.onnx").is_file():
        # a model directory (hwprune train) or a design directory (hwprune prune --board)
        raise ModelLoadError(f"{model} is a directory; pass its model file: {Path(model) / 'model.onnx'}")
    return load_onnx(model)


def _is_torch_module(model: Any) -> bool:
    # A torch module can only exist once torch has been imported: asking never imports it
    # (that alone took two seconds of every ONNX command).
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


def is_project(path: Any) -> bool:
    """`path` names a project: a project directory or a design directory holding one."""
    return ProjectDir.find(path) is not None


def _project_of(model_or_project: Any) -> ProjectDir | None:
    """The project a model argument names; a directory that is none is refused (saying
    which subdirectory to pass). A model file or object gives None."""
    prj = ProjectDir.find(model_or_project)
    if prj is None and isinstance(model_or_project, (str, Path)) and Path(model_or_project).is_dir():
        raise ModelLoadError(ProjectDir.refusal(model_or_project))
    return prj


def build_graph(model: Any, precision: PrecisionConfig | None = None, io_type: "str | IOType" = "parallel",
                example_input: Any = None, name: str | None = None, embedding_on_ps: bool = False) -> "Graph":
    from hwprune.pipeline import compile_graph

    proto = _model_proto(model, example_input)
    if name is None and isinstance(model, (str, Path)):
        name = Path(model).stem
    return compile_graph(proto, precision, _io(io_type), name=name, embedding_on_ps=embedding_on_ps)


def export(model: Any, out: str | Path, board: str | Board = "pynq-z2", io_type: str = "parallel",
           precision: PrecisionConfig | None = None, clock_mhz: float | None = None, force: bool = False,
           example_input: Any = None, sample_inputs: "Sequence[np.ndarray] | None" = None,
           embedding_on_ps: bool = False, fifo_storage: "Mapping[str, str] | None" = None) -> Path:
    """Write a Vitis HLS project for `model`. Returns the project directory (`fit(project)`
    says whether it fits the board). `embedding_on_ps`: the embedding lookups run on the
    board's ARM side and the accelerator receives the embedded sequence (the manifest
    records it; docs/hardware.md). `fifo_storage` (io_stream): {stream tensor: "srl" | "bram"},
    FIFOs bound to a storage other than the tool's default (passes.fifo.bind_fifo_storage)."""
    return export_graph(model, out, board, io_type, precision, clock_mhz, force, example_input, sample_inputs,
                        embedding_on_ps, fifo_storage)[0]


def export_graph(model: Any, out: str | Path, board: str | Board = "pynq-z2", io_type: str = "parallel",
                 precision: PrecisionConfig | None = None, clock_mhz: float | None = None, force: bool = False,
                 example_input: Any = None, sample_inputs: "Sequence[np.ndarray] | None" = None,
                 embedding_on_ps: bool = False, fifo_storage: "Mapping[str, str] | None" = None) -> "tuple[Path, Graph]":
    """`export`, also returning the compiled graph the project was written from."""
    from hwprune.backend.hls_project import write_project
    from hwprune.fsutil import check_out_dir

    inputs = [model] if isinstance(model, (str, Path)) else []
    check_out_dir(Path(out), force, inputs)
    b = board if isinstance(board, Board) else load_board(board)
    precision = precision or PrecisionConfig()
    proto = _model_proto(model, example_input)
    name = Path(model).stem if isinstance(model, (str, Path)) else None
    from hwprune.pipeline import compile_graph

    g = compile_graph(proto, precision, _io(io_type), name=name, embedding_on_ps=embedding_on_ps)
    if fifo_storage:
        from hwprune.passes.fifo import set_fifo_storage

        set_fifo_storage(g, fifo_storage)
    prj = write_project(g, proto.SerializeToString(), out, b, clock_mhz, precision, force,
                        list(sample_inputs) if sample_inputs is not None else None, inputs=inputs)
    return prj, g


@functools.lru_cache(maxsize=32)
def _project_graph(path: str, stamp: float) -> "Graph":
    from hwprune.ir.graph import IOType
    from hwprune.pipeline import compile_graph

    prj = ProjectDir(path)
    prec = PrecisionConfig.from_dict(prj.precision, where=str(prj.manifest_path))
    g = compile_graph(prj.model_path, prec, IOType(prj.io_type), name=Path(path).name,
                      embedding_on_ps=bool(prj.get("embedding_on_ps", False)))
    declared = prj.get("fifo_depths")
    if declared:  # the depths the project declares (older projects: none recorded)
        from hwprune.passes.fifo import set_fifo_depths
        from hwprune.sim.dataflow import stream_fifos

        known = set(stream_fifos(g))
        stale = sorted(set(declared) - known)
        if stale:
            log.warning("%s declares FIFO depths for streams this version does not build (%s); ignored",
                        path, ", ".join(stale))
        set_fifo_depths(g, depths={t: d for t, d in declared.items() if t in known})
        from hwprune.passes.fifo import set_fifo_storage

        set_fifo_storage(g, {t: impl for t, impl in (prj.get("fifo_impls") or {}).items() if t in known})
    return g


def load_project_graph(project: str | Path) -> "Graph":
    """Rebuild the IR of a project (deterministic from its model and recorded precision).
    A design directory (the output of `hwprune prune --board`) stands for its project."""
    prj = ProjectDir.locate(project)
    p = prj.path.resolve()
    return _project_graph(str(p), prj.manifest_stamp())


def run(model_or_project: Any, inputs: "Sequence[np.ndarray]", engine: str = "fixed",
        precision: PrecisionConfig | None = None, io_type: str = "parallel", example_input: Any = None) -> "list[np.ndarray]":
    """Run a batch (first axis = batch) through `float` (onnxruntime), `fixed` (numpy
    bit-exact reference) or `csim` (the generated C++ compiled with g++). Outputs are in the
    model's own (logical) layout."""
    if engine not in ENGINES:
        raise HwpruneInputError(f"engine {engine!r} is not one of: {', '.join(ENGINES)}")
    import numpy as np

    inputs = [np.asarray(x) for x in inputs]
    prj = _project_of(model_or_project)
    if prj is not None:
        p = prj.path
        g = load_project_graph(p)
        from hwprune.pipeline import check_inputs, run_fixed, run_onnx

        check_inputs(g, inputs)
        if engine == "float":
            return run_onnx(prj.model_path, inputs)
        if engine == "fixed":
            return run_fixed(g, inputs)
        from hwprune.backend.csim import run_csim

        return run_csim(p, inputs)
    from hwprune.pipeline import check_inputs, compile_graph, run_fixed, run_onnx

    # The model is read and compiled once, for the check and every engine.
    proto = _model_proto(model_or_project, example_input)
    name = Path(model_or_project).stem if isinstance(model_or_project, (str, Path)) else None
    g = compile_graph(proto, precision, _io(io_type), name=name)
    check_inputs(g, inputs)
    if engine == "float":
        return run_onnx(proto, inputs)
    if engine == "fixed":
        return run_fixed(g, inputs)
    import tempfile

    from hwprune.backend.csim import run_csim
    from hwprune.backend.hls_project import write_project

    with tempfile.TemporaryDirectory(prefix="hwp_run_") as d:
        prj = write_project(g, proto.SerializeToString(), Path(d) / "prj", load_board("pynq-z2"), None,
                            precision or PrecisionConfig(), bitstream=False)  # thrown away after the run
        return run_csim(prj, inputs)


def estimate(model_or_project: Any, board: str | Board = "pynq-z2", precision: PrecisionConfig | None = None,
             io_type: str = "parallel", clock_mhz: float | None = None, example_input: Any = None,
             shell: bool = True, embedding_on_ps: bool = False) -> Any:
    """Analytical latency/resource estimate (see docs/estimate.md). `shell`: count the
    deployment shell (AXI DMA, SmartConnect, AXI-Stream top) the bitstream project adds.
    `embedding_on_ps` (a model; a project keeps its own choice): the lookups on the host."""
    return _estimate_graph(model_or_project, board, precision, io_type, clock_mhz, example_input, shell,
                           embedding_on_ps)[0]


def _estimate_graph(model_or_project: Any, board: str | Board = "pynq-z2", precision: PrecisionConfig | None = None,
                    io_type: str = "parallel", clock_mhz: float | None = None, example_input: Any = None,
                    shell: bool = True, embedding_on_ps: bool = False) -> "tuple[Any, Graph]":
    from hwprune.sim.estimate import estimate as _estimate

    b = board if isinstance(board, Board) else load_board(board)
    prj = _project_of(model_or_project)
    if prj is not None:
        if embedding_on_ps and not prj.get("embedding_on_ps", False):
            raise HwpruneInputError(f"{prj.path} was exported with the embedding on the accelerator; a project keeps "
                                    "its choice: re-export it with --embedding-on-ps, or estimate its model")
        g = load_project_graph(prj.path)
        clock = clock_mhz or prj.clock_mhz if b.name == prj.board else clock_mhz or b.default_clock_mhz
        return _estimate(g, b, clock, shell=shell), g
    g = build_graph(model_or_project, precision, io_type, example_input, embedding_on_ps=embedding_on_ps)
    return _estimate(g, b, clock_mhz or b.default_clock_mhz, shell=shell), g


def fit(model_or_project: Any, board: str | Board | None = None, headroom: Any = None,
        precision: PrecisionConfig | None = None, io_type: str = "parallel", clock_mhz: float | None = None,
        example_input: Any = None, shell: bool = True, embedding_on_ps: bool = False) -> Any:
    """The fit verdict (hwprune.verdict.Verdict) of a model or project on a board: fits or not
    within the routing headroom, the binding resource and its share, and — when it does not
    fit — the smallest reuse factor that does (or a larger board). A project's own board is
    the default."""
    from hwprune.board import Headroom
    from hwprune.verdict import fit_verdict

    if board is None:
        prj = _project_of(model_or_project)
        if prj is None:
            raise HwpruneInputError("fit() of a model needs a board, e.g. board='pynq-z2'")
        board = prj.board
    est, g = _estimate_graph(model_or_project, board, precision, io_type, clock_mhz, example_input, shell,
                             embedding_on_ps)
    return fit_verdict(est, Headroom.parse(headroom), g)


def simulate(model_or_project: Any, board: str | Board = "pynq-z2", batch: int = 16,
             precision: PrecisionConfig | None = None, io_type: str = "parallel", clock_mhz: float | None = None,
             example_input: Any = None, fifo_depths: Any = None) -> Any:
    """Cycle-approximate simulation of `batch` samples (io_stream: the dataflow processes and
    their FIFOs, sim/dataflow.py; io_parallel: the pipelined top). A project keeps its io type,
    precision and clock; `fifo_depths` (io_stream) overrides the recommended depths: one depth
    for every FIFO, or a {stream tensor: depth} mapping."""
    from hwprune.sim.dataflow import simulate as _simulate

    b = board if isinstance(board, Board) else load_board(board)
    prj = _project_of(model_or_project)
    if prj is not None:
        g = load_project_graph(prj.path)
        clock = clock_mhz or (prj.clock_mhz if b.name == prj.board else b.default_clock_mhz)
        return _simulate(g, b, batch=batch, clock_mhz=clock, fifo_depths=fifo_depths)
    g = build_graph(model_or_project, precision, io_type, example_input)
    return _simulate(g, b, batch=batch, clock_mhz=clock_mhz or b.default_clock_mhz, fifo_depths=fifo_depths)
