"""From an HLS project to a PYNQ bitstream: the AXI-Stream top (`hwprune.backend.axis`), a
Vivado block design (PS7 or PS8, AXI DMA, SmartConnect, reset, the exported HLS IP),
`build_bitstream.sh`, and `build_bitstream()` behind `hwprune build`, which runs vitis_hls
and vivado when they are installed.

Files added to a project:

    firmware/<top>_axis.h/.cpp   AXI4-Stream + AXI-Lite (batch size) top around the network
    tb/<top>_axis_test.cpp       its testbench (bus words in, bus words and TLAST flags out)
    vivado/block_design.tcl      vivado -mode batch -source vivado/block_design.tcl
    build_bitstream.sh           vitis_hls (axis=1, export=1), then vivado
    bitstream/<top>.bit/.hwh     written by the Vivado run (the names a PYNQ Overlay expects)

The Tcl is written for Vivado/Vitis HLS 2022.1 (the PYNQ v3.0 toolchain), using commands that
UG835/UG1399 document unchanged from 2020.2 on; no vendor tool ran here (see docs/hardware.md).
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from hwprune.board import Board, load_board, project_board
from hwprune.errors import BuildError, HwpruneInputError, ModelLoadError
from hwprune.ir.graph import Graph

log = logging.getLogger("hwprune")

VIVADO_VERSION = "2022.1"
PYNQ_VERSION = "3.0"
BITSTREAM_DIR = "bitstream"
ACCEL_CELL = "hwp_accel"
DMA_CELL = "hwp_dma"
DESIGN = "hwprune_bd"
IP_VENDOR = "hwprune.org"
IP_LIBRARY = "hls"
IP_VERSION = "1.0"
HLS_COMMAND = "vitis_hls -f build_prj.tcl -tclargs csim=0 synth=1 cosim=0 export=1 axis=1"
VIVADO_TCL = "vivado/block_design.tcl"


@dataclass(frozen=True)
class BoardSupport:
    """What the block design and the deployment README need beyond the board catalog."""

    board_part: str  # Vivado board files (a get_board_parts pattern; used when installed)
    image: str  # the PYNQ image to boot the board with


# Board-file VLNVs of the vendors' board repositories (Digilent, TUL, Avnet, AMD); the version
# is left open so whatever revision is installed is used.
BOARD_SUPPORT = {
    "pynq-z1": BoardSupport("www.digilentinc.com:pynq-z1:part0:*", "PYNQ v3.0.1 SD image for PYNQ-Z1 (pynq.io/boards)"),
    "pynq-z2": BoardSupport("tul.com.tw:pynq-z2:part0:*", "PYNQ v3.0.1 SD image for PYNQ-Z2 (pynq.io/boards)"),
    "ultra96-v2": BoardSupport("avnet.com:ultra96v2:part0:*", "PYNQ v3.0.1 SD image for Ultra96-V2 (Avnet, pynq.io/boards)"),
    "kv260": BoardSupport("xilinx.com:kv260_som:part0:*",
                          "Ubuntu 22.04 for Kria + Kria-PYNQ (github.com/Xilinx/Kria-PYNQ, install.sh -b KV260)"),
    "zcu104": BoardSupport("xilinx.com:zcu104:part0:*", "PYNQ v3.0.1 SD image for ZCU104 (pynq.io/boards)"),
    "zcu102": BoardSupport("xilinx.com:zcu102:part0:*",
                           "no official PYNQ image: build one with PYNQ's sdbuild from the ZCU102 BSP"),
}


def board_support(board: Board) -> BoardSupport:
    """The catalog boards' board files and images; a board of your own (a YAML file) may name
    them (`board_part`, `image`), else the block design uses the part alone."""
    if board.name in BOARD_SUPPORT:
        return BOARD_SUPPORT[board.name]
    return BoardSupport(board.board_part, board.image or f"a PYNQ image for {board.name} ({board.part}): build one with "
                        "PYNQ's sdbuild from the board's BSP")


def ip_vlnv(top: str) -> str:
    from hwprune.backend.axis import axis_top

    return f"{IP_VENDOR}:{IP_LIBRARY}:{axis_top(top)}:{IP_VERSION}"


def vivado_command(jobs: int | None = None) -> str:
    cmd = f"vivado -mode batch -nojournal -log build/vivado.log -source {VIVADO_TCL}"
    return cmd if jobs is None else f"{cmd} -tclargs jobs={int(jobs)}"


def render_bitstream_files(g: Graph, env: Any, version: str, board: Board, clock_mhz: float, top: str,
                           ports: Sequence[Any]) -> dict[str, str]:
    """Every file of the bitstream flow, keyed by path relative to the project. `top` is the
    sanitised top-function name (c_identifier), the only model-derived name used."""
    from hwprune.backend.axis import axis_top, render_axis_files

    files = render_axis_files(g, env, version, top, ports)
    sup = board_support(board)
    ctx = dict(version=version, top=top, board=board.name, part=board.part, board_part=sup.board_part,
               clock_mhz=f"{clock_mhz:g}", ip_vlnv=ip_vlnv(top), ip_repo=f"{axis_top(top)}_prj/solution1/impl/ip",
               project_name=f"{top}_vivado", design=DESIGN, out_dir=BITSTREAM_DIR, overlay=top,
               accel_cell=ACCEL_CELL, dma_cell=DMA_CELL, ps=board.ps, addr_width=64 if board.ps == "ps8" else 32,
               ps_label="PS7 M_AXI_GP0" if board.ps == "ps7" else "PS8 M_AXI_HPM0_FPD",
               ps_hp="PS7 S_AXI_HP0" if board.ps == "ps7" else "PS8 S_AXI_HP0_FPD",
               vivado_version=VIVADO_VERSION, pynq_version=PYNQ_VERSION)
    if board.ps not in ("ps7", "ps8"):
        raise HwpruneInputError(f"board {board.name}: unknown processing system {board.ps!r} (expected ps7 or ps8)")
    files[VIVADO_TCL] = env.get_template("vivado/block_design.tcl.j2").render(**ctx)
    files["build_bitstream.sh"] = env.get_template("vivado/build_bitstream.sh.j2").render(
        hls_command=f"{HLS_COMMAND} > build/vitis_hls.log", vivado_command=vivado_command(), **ctx)
    return files


def _manifest(project: Path) -> dict[str, Any]:
    from hwprune.backend.project_dir import ProjectDir

    return ProjectDir.open(project).manifest


def write_bitstream_project(project_dir: str | Path, board: str | Board | None = None) -> list[Path]:
    """(Re)write the bitstream-flow files of an existing project (e.g. one exported before this
    flow existed). The board must be the one the project was exported for."""
    from hwprune.backend.hls_project import Port, _env, hls_names
    from hwprune.ops.base import HlsContext
    from hwprune.project import load_project_graph
    from hwprune import __version__

    from hwprune.backend.project_dir import ProjectDir

    project = ProjectDir.locate(project_dir).path
    man = _manifest(project)
    b = project_board(project, man["board"]) if board is None else board if isinstance(board, Board) else load_board(board)
    if b.name != man["board"]:
        raise HwpruneInputError(f"{project} was exported for {man['board']}, not {b.name}; re-export it with --board {b.name}")
    g = load_project_graph(project)
    names = hls_names(g)
    ctx = HlsContext(graph=g, names=names, io_type=g.io_type, clock_mhz=man["clock_mhz"])
    ports = [Port(ctx.var(n), ctx.ctype(n), g.tensor(n).size, g.tensor(n).word, True) for n in g.inputs]
    ports += [Port(ctx.var(n), ctx.ctype(n), g.tensor(n).size, g.tensor(n).word, False) for n in g.outputs]
    files = render_bitstream_files(g, _env(), __version__, b, float(man["clock_mhz"]), man["top"], ports)
    written = []
    for rel, text in files.items():
        p = project / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.tmp")
        tmp.write_text(text)
        tmp.replace(p)
        written.append(p)
    (project / "build_bitstream.sh").chmod(0o755)
    return written


def bitstream_files(project: str | Path) -> tuple[Path, Path]:
    """Where `hwprune build` puts the bitstream and hardware handoff of a project."""
    project = Path(project)
    top = _manifest(project)["top"]
    return project / BITSTREAM_DIR / f"{top}.bit", project / BITSTREAM_DIR / f"{top}.hwh"


def missing_tools() -> list[str]:
    return [t for t in ("vitis_hls", "vivado") if shutil.which(t) is None]


def build_commands(jobs: int) -> list[list[str]]:
    return [shlex.split(HLS_COMMAND), shlex.split(vivado_command(jobs))]


def build_bitstream(project_dir: str | Path, jobs: int = 2) -> tuple[Path, Path]:
    """Run vitis_hls (export the AXI-Stream IP) and vivado (block design to bitstream) in the
    project. Raises HwpruneInputError if the tools are missing (saying what would run), and
    BuildError if a tool fails (with the log to read). A design directory (`hwprune prune
    --board` output) stands for its project."""
    from hwprune.backend.project_dir import ProjectDir

    project = ProjectDir.locate(project_dir).path
    man = _manifest(project)
    if jobs < 1:
        raise HwpruneInputError(f"--jobs {jobs} must be at least 1")
    if not (project / VIVADO_TCL).is_file():
        write_bitstream_project(project)  # a project exported before the bitstream flow
    cmds = build_commands(jobs)
    missing = missing_tools()
    if missing:
        would = " && ".join(" ".join(shlex.quote(a) for a in c) for c in cmds)
        raise HwpruneInputError(f"{' and '.join(missing)} not found on PATH (source the Xilinx settings64.sh); "
                                f"would run in {project}: {would}")
    (project / "build").mkdir(exist_ok=True)
    for cmd, logname in zip(cmds, ("vitis_hls.log", "vivado_stdout.log")):
        log.info("running %s", " ".join(cmd))
        with open(project / "build" / logname, "w") as out:
            r = subprocess.run(cmd, cwd=project, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy())
        if r.returncode != 0:
            raise BuildError(f"{cmd[0]} failed (exit {r.returncode}) in {project}; see {project / 'build' / logname}")
    bit, hwh = bitstream_files(project)
    for f in (bit, hwh):
        if not f.is_file():
            raise BuildError(f"vivado finished but {f} is missing; see {project / 'build' / 'vivado.log'}")
    log.info("bitstream of %s for %s: %s", man["top"], man["board"], bit)
    return bit, hwh
