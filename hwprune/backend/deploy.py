"""`hwprune deploy`: a deployment package for a PYNQ board, written all or nothing.

    PKG/hwprune_driver.py   the driver (pynq.Overlay subclass; numpy packing; DMA; PL clock)
    PKG/accelerator.json    port shapes, types, bus packing, registers, clock, overlay names
    PKG/validate.py         outputs, accuracy and agreement on .npy files
    PKG/throughput.py       samples per second (measured; with --sim, the modelled hardware's)
    PKG/README.md           copying and running on the board
    PKG/<top>.bit/.hwh      when the project has been built (`hwprune build`)

On the board the package needs only pynq and numpy. `--sim` (host only) runs the same driver
on the simulated overlay of `hwprune.backend.pynq_sim`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from hwprune import __version__
from hwprune.board import Board, load_board, project_board
from hwprune.errors import HwpruneInputError, ModelLoadError
from hwprune.fsutil import atomic_directory, check_out_dir

DRIVER_NAME = "hwprune_driver.py"


def accelerator_json(project: Path, man: dict[str, Any], board: Board, recorded: Path | None = None) -> dict[str, Any]:
    from hwprune.backend import pynq_driver as drv
    from hwprune.backend.axis import accelerator_spec, axis_top
    from hwprune.backend.vivado import ACCEL_CELL, DMA_CELL, board_support
    from hwprune.project import load_project_graph

    g = load_project_graph(project)
    spec = accelerator_spec(g, board.name, float(man["clock_mhz"]), man["top"])
    top = man["top"]
    return dict(
        format=drv.FORMAT, hwprune_version=__version__, board=board.name, part=board.part, family=board.family,
        ps=board.ps, clock_mhz=float(man["clock_mhz"]), top=top, ip=axis_top(top), io_type=man["io_type"],
        overlay=dict(bitfile=f"{top}.bit", hwh=f"{top}.hwh", accel=ACCEL_CELL, dma=DMA_CELL),
        registers=dict(ctrl=drv.REG_CTRL, batch=drv.REG_BATCH),
        bus=dict(width_bits=drv.BUS_BITS, word_dtype="<u8", tlast="last beat of each batch",
                 packing=("per sample: input ports in order, each from a fresh 64-bit beat; a port's elements in "
                          "physical order (perm) as raw two's-complement fields of `width` bits, beat k holding "
                          "elements k*F..k*F+F-1 (F = fields_per_word), element j in bits [j*width, (j+1)*width), "
                          "little end first, unused bits 0")),
        words_in_per_sample=spec.words_in, words_out_per_sample=spec.words_out,
        inputs=[p.to_dict() for p in spec.inputs], outputs=[p.to_dict() for p in spec.outputs],
        image=board_support(board).image, project_dir=str((recorded or project).resolve()),
    )


def write_package(project_dir: str | Path, board: str | Board | None, out: str | Path, force: bool = False,
                  recorded_project: str | Path | None = None) -> Path:
    """Write the deployment package of `project_dir` for `board` to `out` (atomically).
    `recorded_project`: where the project will live when the package is used, if it is being
    written inside a directory that is moved into place afterwards (the demo). `board`: None
    for the one the project was exported for."""
    from hwprune.backend.hls_project import _env
    from hwprune.backend.vivado import bitstream_files

    project = Path(project_dir)
    man_path = project / "hwprune_project.json"
    if not man_path.is_file():
        raise ModelLoadError(f"{project} is not an hwprune project (no hwprune_project.json); export one with hwprune export")
    man = json.loads(man_path.read_text())
    b = project_board(project, man["board"]) if board is None else board if isinstance(board, Board) else load_board(board)
    if b.name != man["board"]:
        raise HwpruneInputError(f"{project} was exported for {man['board']}, not {b.name}: "
                                f"deploy with --board {man['board']} or re-export with --board {b.name}")
    out = Path(out)
    check_out_dir(out, force, [project])
    if out.resolve() == project.resolve() or project.resolve() in out.resolve().parents:
        raise HwpruneInputError(f"--out {out} is inside the project {project}; choose a directory outside it")
    recorded = Path(recorded_project) if recorded_project is not None else None
    spec = accelerator_json(project, man, b, recorded)
    bit, hwh = bitstream_files(project)
    has_bitstream = bit.is_file() and hwh.is_file()
    ctx = dict(version=__version__, board=b.name, top=man["top"], clock_mhz=f"{float(man['clock_mhz']):g}",
               image=spec["image"], bitfile=spec["overlay"]["bitfile"], hwh=spec["overlay"]["hwh"],
               has_bitstream=has_bitstream, package=out.name, project=spec["project_dir"],
               inputs=spec["inputs"], outputs=spec["outputs"], family=b.family)
    env = _env()
    with atomic_directory(out, force, [project], kind="deploy") as tmp:
        (tmp / "accelerator.json").write_text(json.dumps(spec, indent=2))
        shutil.copyfile(Path(__file__).with_name("pynq_driver.py"), tmp / DRIVER_NAME)
        for name in ("validate.py", "throughput.py", "README.md"):
            text = env.get_template(f"deploy/{name}.j2").render(**ctx)
            (tmp / name).write_text(text)
        for name in ("validate.py", "throughput.py"):
            (tmp / name).chmod(0o755)
        if has_bitstream:
            shutil.copyfile(bit, tmp / spec["overlay"]["bitfile"])
            shutil.copyfile(hwh, tmp / spec["overlay"]["hwh"])
    return out
