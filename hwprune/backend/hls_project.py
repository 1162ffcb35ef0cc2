"""IR -> Vitis HLS project directory.

Layout of a project:

    hwprune_project.json   manifest: ports (shape, physical order, types), board, clock, options
                           (read and written only through backend/project_dir.py)
    model.onnx             the source model (the `float` engine and re-imports use it)
    firmware/              <top>.cpp/.h, defines.h, parameters.h, weights/, hwprune/ (kernels)
    tb/<top>_test.cpp      C testbench (raw int64 files in, raw int64 files out)
    tb_data/               sample inputs (and their expected outputs from the fixed reference)
    build_prj.tcl          vitis_hls -f build_prj.tcl -tclargs csim=1 synth=1 cosim=0 export=0
    build_host.sh          g++ host build + run of the C simulation
    firmware/<top>_axis.*, tb/<top>_axis_test.cpp, vivado/, build_bitstream.sh
                           AXI-Stream top and bitstream flow (hwprune.backend.vivado)

Every identifier in generated C++/Tcl comes from `Graph.c_names()` (sanitised); model names
never reach the sources verbatim.
"""

from __future__ import annotations

import functools
import math
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import jinja2
import numpy as np
import yaml

from hwprune import __version__
from hwprune.backend import project_dir
from hwprune.board import Board, board_to_dict
from hwprune.fsutil import atomic_directory, check_out_dir
from hwprune.fixed import FixedType
from hwprune.ir.graph import Graph, IOType, TensorKind, c_identifier
from hwprune.ops.base import HlsBinding, HlsContext, WeightArray
from hwprune.precision import PrecisionConfig

MANIFEST = project_dir.MANIFEST  # written through project_dir.ProjectDir, the manifest's one owner


@functools.lru_cache(maxsize=None)
def _env() -> jinja2.Environment:
    root = resources.files("hwprune.hls") / "templates"
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(root)), undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def kernel_dir() -> Path:
    return Path(str(resources.files("hwprune.hls") / "hwprune"))


@dataclass
class Port:
    var: str
    ctype: str
    size: int
    word: int
    is_input: bool


def index_type(t: Any) -> FixedType:
    bits = max(int(np.ceil(np.log2(max(t.index_range, 2)))), 1)
    return FixedType(bits, bits, False)


def tensor_type(t: Any) -> FixedType:
    if t.kind == TensorKind.INDEX:
        return index_type(t)
    assert t.type is not None, f"tensor {t.name} has no type (types pass not run?)"
    return t.type


def hls_names(g: Graph) -> dict[str, str]:
    """Sanitised names, with aliasing layers (free reshapes) sharing their input's variable."""
    names = g.c_names()
    for layer in g.layers:
        is_alias = getattr(layer, "is_alias", None)
        if is_alias is not None and is_alias(g, g.io_type):
            names[f"t:{layer.output}"] = names[f"t:{layer.inputs[0]}"]
    return names


def render_firmware(g: Graph, board: Board, clock_mhz: float, top: str, bitstream: bool = True) -> dict[str, str]:
    """All generated text files of the project, keyed by relative path. `bitstream=False`
    leaves out the AXI-Stream top, the block design and their build scripts (a throwaway
    project that only runs its C simulation)."""
    names = hls_names(g)
    ctx = HlsContext(graph=g, names=names, io_type=g.io_type, clock_mhz=clock_mhz)
    stream = g.io_type == IOType.STREAM
    from hwprune.passes.fifo import set_fifo_depths
    from hwprune.sim.estimate import estimate  # cost model gives the pipeline II

    # io_stream: every FIFO is declared at the depth the IR gives it; FIFOs without one are
    # sized now by the FIFO pass (the dataflow simulator's smallest depths that lose no
    # throughput or latency) and written into the IR, where the estimate costs them.
    set_fifo_depths(g, board, keep=True)
    est = estimate(g, board, clock_mhz)
    aliased = {f"t:{l.output}" for l in g.layers if names[f"t:{l.output}"] != g.c_names()[f"t:{l.output}"]}

    files: dict[str, str] = {}
    bindings: list[tuple[Any, HlsBinding]] = []
    for layer in g.layers:
        if f"t:{layer.output}" in aliased:
            continue
        bindings.append((layer, layer.hls(ctx)))

    tensors = []
    seen_types: set[str] = set()
    for name, t in g.tensors.items():
        ct = ctx.ctype(name)
        if ct in seen_types:
            continue
        seen_types.add(ct)
        tensors.append(dict(cpp=tensor_type(t).cpp(), ctype=ct, physical=tuple(t.physical_shape)))

    ports = [Port(ctx.var(n), ctx.ctype(n), g.tensor(n).size, g.tensor(n).word, True) for n in g.inputs]
    ports += [Port(ctx.var(n), ctx.ctype(n), g.tensor(n).size, g.tensor(n).word, False) for n in g.outputs]
    port_vars = {p.var for p in ports}
    locals_ = []
    declared: set[str] = set()
    for layer in g.layers:
        for out in layer.outputs:
            v = ctx.var(out)
            if v in port_vars or v in declared:
                continue
            declared.add(v)
            t = g.tensor(out)
            if stream and t.fifo_depth is None:
                raise AssertionError(f"stream {out} is declared but has no FIFO depth (passes.fifo missed it)")
            locals_.append(dict(var=v, ctype=ctx.ctype(out), size=t.size, word=t.word, depth=t.fifo_depth,
                                impl=t.fifo_impl if t.fifo_impl != "auto" else None))

    weight_headers = []
    for _, b in bindings:
        for w in b.weights:
            fname = f"{w.c_name}.h"
            files[f"firmware/weights/{fname}"] = _render_weights(w)
            weight_headers.append(fname)

    common = dict(version=__version__, top=top, stream=stream, ports=ports)
    files[f"firmware/{top}.h"] = _env().get_template("top.h.j2").render(guard=f"HWP_{top.upper()}_H", **common)
    files["firmware/defines.h"] = _env().get_template("defines.h.j2").render(version=__version__, tensors=tensors)
    files["firmware/parameters.h"] = _env().get_template("parameters.h.j2").render(
        version=__version__, includes=sorted({b.include for _, b in bindings}),
        weight_headers=weight_headers, configs=[b.config for _, b in bindings])
    files[f"firmware/{top}.cpp"] = _env().get_template("top.cpp.j2").render(
        model=c_identifier(g.name, "model"), io=g.io_type.value, locals=locals_, ii=max(est.ii_cycles, 1),
        calls=[dict(comment=f"{type(l).__name__} {ctx.lname(l)}", code=b.call.rstrip("\n")) for l, b in bindings],
        **common)
    files[f"tb/{top}_test.cpp"] = _env().get_template("testbench.cpp.j2").render(
        inputs=ports[: len(g.inputs)], outputs=ports[len(g.inputs):], **common)
    files["build_prj.tcl"] = _env().get_template("build_prj.tcl.j2").render(
        version=__version__, top=top, board=board.name, part=board.part, period_ns=f"{1000.0 / clock_mhz:.3f}")
    from hwprune.backend.csim import ap_types_dir, host_compile_command

    files["build_host.sh"] = _env().get_template("build_host.sh.j2").render(
        version=__version__, compile=host_compile_command(top, '"$AP_TYPES"', None), ap_types=_sh_double_quoted(ap_types_dir()))
    if bitstream:
        from hwprune.backend.vivado import render_bitstream_files  # AXI-Stream top, block design, build script

        files.update(render_bitstream_files(g, _env(), __version__, board, clock_mhz, top, ports))
    return files


def _sh_double_quoted(text: str) -> str:
    """Escape a path for use inside a double-quoted sh word."""
    return "".join("\\" + c if c in '\\"$`' else c for c in text)


def _c_int(v: int) -> str:
    """A 64-bit raw as a C++ integer literal (-2**63 has no literal of its own)."""
    return "(-9223372036854775807LL - 1)" if v == -(1 << 63) else str(v)


def _render_weights(w: WeightArray) -> str:
    if w.type.width > 64:  # the types pass refuses these; ROM words are native 64-bit integers
        raise AssertionError(f"{w.c_name}: ROM type {w.type} is wider than 64 bits")
    raw = np.asarray(w.raw, dtype=np.int64).reshape(-1)
    lines = []
    for i in range(0, raw.size, 24):
        lines.append("    " + ",".join(_c_int(int(v)) for v in raw[i:i + 24]) + ",")
    if w.dims is not None and math.prod(w.dims) != raw.size:
        raise AssertionError(f"{w.c_name}: {raw.size} values for dimensions {w.dims}")
    dims = "".join(f"[{d}]" for d in w.dims) if w.dims is not None else f"[{max(raw.size, 1)}]"
    return _env().get_template("weights.h.j2").render(
        version=__version__, type=w.type.cpp(), guard=f"HWP_W_{w.c_name.upper()}_H", bits=w.type.width,
        signed=w.type.signed, name=w.c_name, dims=dims, values="\n".join(lines) if raw.size else "    0")


def manifest(g: Graph, board: Board, clock_mhz: float, top: str, precision: PrecisionConfig) -> dict[str, Any]:
    names = g.c_names()

    def port(n: str) -> dict[str, Any]:
        t = g.tensor(n)
        return dict(name=n, c_name=names[f"t:{n}"], shape=list(t.shape), perm=list(t.perm),
                    type=tensor_type(t).cpp(), kind=t.kind.value, index_range=t.index_range)

    return dict(
        hwprune_version=__version__, top=top, model="model.onnx", io_type=g.io_type.value, board=board.name,
        part=board.part, clock_mhz=clock_mhz, precision=precision.to_dict(),
        inputs=[port(n) for n in g.inputs], outputs=[port(n) for n in g.outputs],
        fifo_depths=_fifo_depths(g),
        # FIFOs bound to a storage other than the tool's default (passes.fifo.bind_fifo_storage).
        fifo_impls={t: g.tensor(t).fifo_impl for t in _fifo_depths(g) if g.tensor(t).fifo_impl != "auto"},
        # The embedding lookups the host does (loading the project re-applies the option).
        embedding_on_ps=bool(g.host_layers),
    )


def _fifo_depths(g: Graph) -> dict[str, int]:
    """The FIFO depths the project declares, by stream tensor (the IR's; loading the project
    puts them back into its IR)."""
    from hwprune.sim.dataflow import declared_fifo_depths

    return declared_fifo_depths(g)


def write_project(g: Graph, model_bytes: bytes, out: str | Path, board: Board, clock_mhz: float | None = None,
                  precision: PrecisionConfig | None = None, force: bool = False,
                  sample_inputs: list[np.ndarray] | None = None, inputs: Sequence[str | Path] = (),
                  bitstream: bool = True) -> Path:
    """Write the project atomically: everything goes to a temporary sibling directory that
    replaces `out` only when complete, so a failure leaves nothing behind. `bitstream=False`:
    without the bitstream flow's files (render_firmware)."""
    out = Path(out)
    check_out_dir(out, force, inputs)
    clock = clock_mhz or board.default_clock_mhz
    top = c_identifier(g.name, "hwp")
    files = render_firmware(g, board, clock, top, bitstream)
    with atomic_directory(out, force, inputs, kind="project") as tmp:
        for rel, text in files.items():
            p = tmp / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        (tmp / "build_host.sh").chmod(0o755)
        if bitstream:
            (tmp / "build_bitstream.sh").chmod(0o755)
        shutil.copytree(kernel_dir(), tmp / "firmware" / "hwprune",
                        ignore=shutil.ignore_patterns("*.j2", "__pycache__"))
        (tmp / "model.onnx").write_bytes(model_bytes)
        project_dir.ProjectDir.write_manifest(tmp, manifest(g, board, clock, top, precision or PrecisionConfig()))
        # The board it was made for (a custom board's file need not outlive the project).
        (tmp / "board.yaml").write_text(yaml.safe_dump(board_to_dict(board), sort_keys=False))
        write_testbench_data(g, sample_inputs if sample_inputs is not None else default_samples(g), tmp / "tb_data")
    return out


DEFAULT_SAMPLES = 4


def default_samples(g: Graph, n: int = DEFAULT_SAMPLES, seed: int = 0) -> list[np.ndarray]:
    """Sample inputs for a project exported without any: token ids over the whole vocabulary,
    values drawn from N(0, 1) within the input type's range (the model's own layout, batch first)."""
    rng = np.random.default_rng(seed)
    out = []
    for name in g.model_inputs:
        t = g.tensor(name)
        if t.kind == TensorKind.INDEX:
            out.append(rng.integers(0, max(int(t.index_range or 2), 1), size=(n, *t.shape), dtype=np.int64))
        else:
            ft = tensor_type(t)
            lo, hi = ft.min_value, ft.max_value
            out.append(np.clip(rng.normal(size=(n, *t.shape)), lo, hi).astype(np.float32))
    return out


def write_testbench_data(g: Graph, samples: list[np.ndarray], tb_dir: Path) -> None:
    """The testbenches' inputs and their golden outputs from the bit-exact fixed-point reference:
    input_<k>.bin / expected_<k>.bin (raw int64, physical order) for tb/<top>_test.cpp and
    axis_in.bin / axis_expected.bin (bus words) for the AXI-Stream testbench."""
    from hwprune.backend.axis import write_axis_expected, write_axis_inputs
    from hwprune.backend.csim import write_inputs
    from hwprune.pipeline import trace_fixed

    tb_dir.mkdir(parents=True, exist_ok=True)
    write_inputs(g, samples, tb_dir)
    write_axis_inputs(g, samples, tb_dir)
    values = trace_fixed(g, samples).values
    raws = [np.asarray(values[o]) for o in g.outputs]
    for k, raw in enumerate(raws):
        np.ascontiguousarray(raw, dtype="<i8").tofile(tb_dir / f"expected_{k}.bin")
    write_axis_expected(g, raws, tb_dir)
