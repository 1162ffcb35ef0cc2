"""The AXI4-Stream top of a project: `firmware/<top>_axis.cpp` wraps the generated network
with one 64-bit input and one 64-bit output AXI4-Stream (TLAST on the last beat of a batch)
and a batch size over AXI-Lite, for an AXI DMA in simple mode. The bus packing is described
in `hwprune.backend.pynq_driver` (which packs and unpacks on the board).

On the host the wrapper and its testbench (`tb/<top>_axis_test.cpp`) compile with g++ through
the C simulation's build machinery (`csim.build_units`), so the packing of the driver, the
wrapper's unpack, the network and the wrapper's pack can be checked together, bit for bit.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hwprune.backend import pynq_driver as drv
from hwprune.errors import BuildError, ModelLoadError
from hwprune.ir.graph import Graph, IOType, TensorKind

AXIS_SUFFIX = "_axis"
BUS_BITS = drv.BUS_BITS


def axis_top(top: str) -> str:
    return f"{top}{AXIS_SUFFIX}"


def port_spec(g: Graph, name: str) -> drv.PortSpec:
    from hwprune.backend.hls_project import tensor_type

    t = g.tensor(name)
    ft = tensor_type(t)
    return drv.PortSpec(name=name, shape=tuple(t.shape), perm=tuple(t.perm),
                        kind="index" if t.kind == TensorKind.INDEX else "fixed", ctype=ft.cpp(), width=ft.width,
                        frac=ft.frac, signed=ft.signed, rounding=ft.rounding.value, overflow=ft.overflow.value,
                        index_range=int(t.index_range or 0), scale=float(t.scale))


def accelerator_spec(g: Graph, board: str, clock_mhz: float, top: str) -> drv.AcceleratorSpec:
    return drv.AcceleratorSpec(inputs=[port_spec(g, n) for n in g.inputs], outputs=[port_spec(g, n) for n in g.outputs],
                               clock_mhz=float(clock_mhz), board=board, top=top)


def render_axis_files(g: Graph, env: Any, version: str, top: str, ports: Sequence[Any]) -> dict[str, str]:
    """The wrapper's header, source and testbench. `ports` are the network's top-level ports
    (hls_project.Port: sanitised variable and type names)."""
    spec = accelerator_spec(g, "", 1.0, top)
    specs = [*spec.inputs, *spec.outputs]
    n_in = len(spec.inputs)
    rows = []
    for k, (p, s) in enumerate(zip(ports, specs)):
        words = p.size // max(p.word, 1)
        if p.is_input:
            # The reader fills the network's input streams one after the other: every stream but
            # the last must hold a whole sample, or a network reading them interleaved deadlocks.
            depth = words if k < n_in - 1 else 2
        else:
            # The writer drains the output streams in order: every one but the first must.
            depth = words if k > n_in else 2
        rows.append(dict(var=p.var, ctype=p.ctype, size=p.size, word=p.word, width=s.width, fields=s.fields_per_word,
                         beats=s.words, depth=max(depth, 2), is_input=p.is_input, last=(k == len(specs) - 1)))
    common = dict(version=version, top=top, axis=axis_top(top), stream=g.io_type == IOType.STREAM, bus=BUS_BITS,
                  inputs=rows[:n_in], outputs=rows[n_in:], ports=rows, guard=f"HWP_{axis_top(top).upper()}_H",
                  words_in=spec.words_in, words_out=spec.words_out)
    return {
        f"firmware/{axis_top(top)}.h": env.get_template("axis_top.h.j2").render(**common),
        f"firmware/{axis_top(top)}.cpp": env.get_template("axis_top.cpp.j2").render(**common),
        f"tb/{axis_top(top)}_test.cpp": env.get_template("axis_test.cpp.j2").render(**common),
    }


def write_axis_inputs(g: Graph, inputs: Sequence[np.ndarray], out_dir: Path) -> None:
    """tb_data/axis_in.bin: the sample inputs as bus words, for the AXI-Stream testbench."""
    from hwprune.pipeline import accelerator_inputs_raw

    spec = accelerator_spec(g, "", 1.0, "")
    raws = [r.reshape(r.shape[0], -1) for r in accelerator_inputs_raw(g, list(inputs))]
    np.ascontiguousarray(drv.pack_raw(spec, raws), dtype="<u8").tofile(out_dir / "axis_in.bin")


def write_axis_expected(g: Graph, raw_outputs: Sequence[np.ndarray], out_dir: Path) -> None:
    """tb_data/axis_expected.bin: the golden outputs (raw, physical) as the wrapper's bus words."""
    spec = accelerator_spec(g, "", 1.0, "")
    parts = [drv.pack_words(np.asarray(r).reshape(np.asarray(r).shape[0], -1), p.width)
             for r, p in zip(raw_outputs, spec.outputs)]
    np.ascontiguousarray(np.concatenate(parts, axis=1), dtype="<u8").tofile(out_dir / "axis_expected.bin")


def _top(project: Path) -> str:
    from hwprune.backend.project_dir import ProjectDir

    return ProjectDir.open(project).top


def build_axis(project: str | Path) -> Path:
    """Compile the network, the AXI-Stream wrapper and its testbench on the host (cached)."""
    from hwprune.backend.csim import build_units

    project = Path(project)
    top = _top(project)
    if not (project / "firmware" / f"{axis_top(top)}.cpp").is_file():
        raise ModelLoadError(f"{project} has no AXI-Stream wrapper (firmware/{axis_top(top)}.cpp): "
                             "re-export it with this hwprune")
    units = [(f"firmware/{top}.cpp", "build/axis_network.o"), (f"firmware/{axis_top(top)}.cpp", "build/axis_wrapper.o"),
             (f"tb/{axis_top(top)}_test.cpp", "build/axis_testbench.o")]
    return build_units(project, units, "csim_axis")


def run_axis(project: str | Path, words: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Feed bus words (uint64, TLAST on the last) to the wrapper with `batch` in its register;
    returns the output words and their TLAST flags, as the C simulation produced them."""
    binary = build_axis(project)
    with tempfile.TemporaryDirectory(prefix="hwp_axis_") as d:
        dd = Path(d)
        np.ascontiguousarray(words, dtype="<u8").reshape(-1).tofile(dd / "axis_in.bin")
        r = subprocess.run([str(binary.resolve()), str(dd), str(int(batch)), "--no-check"], capture_output=True, text=True)
        if r.returncode != 0:
            raise BuildError(f"the AXI-Stream C simulation of {project} failed (exit {r.returncode}): {r.stderr[-2000:]}")
        out = np.fromfile(dd / "axis_out.bin", dtype="<u8")
        last = np.fromfile(dd / "axis_last.bin", dtype=np.uint8)
    return out, last
