"""`hwprune deploy`: a deployment package for a PYNQ board, written all or nothing.

    PKG/hwprune_driver.py   the driver (pynq.Overlay subclass; numpy packing; DMA; PL clock)
    PKG/accelerator.json    port shapes, types, bus packing, registers, clock, overlay names
    PKG/validate.py         outputs, accuracy and agreement on .npy files
    PKG/throughput.py       samples per second (measured; with --sim, the modelled hardware's)
    PKG/README.md           copying and running on the board
    PKG/<top>.bit/.hwh      when the project has been built (`hwprune build`)
    PKG/text.json           a text model: tokenizer, the design's vocabulary, remap from the original's
    PKG/x.npy, PKG/y.npy    sample inputs (in the design's ids) and their labels
PKG/embedding_<k>_*.npy the embedding tables, raw integers, when the lookup runs on the ARM side

text.json, x.npy and y.npy come from the design directory that holds the project (the pruner's
DIR/ beside DIR/project; `hwprune demo` writes them) or from `write_package(text=, samples=)`.

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
    from hwprune.backend.axis import accelerator_spec, axis_top, port_spec
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
        host_embeddings=[dict(port=layer.output, ids=port_spec(g, layer.inputs[0]).to_dict(), table=f"embedding_{k}_table.npy",
                              position=f"embedding_{k}_position.npy" if layer.position is not None else None)
                         for k, layer in enumerate(g.host_layers)],
    )


def host_tables(g: Any) -> dict[str, Any]:
    """The .npy files of the host's lookups (accelerator.json's host_embeddings): raw
    integers of the accelerator input's type, the position rows in the ids' physical order."""
    out = {}
    for k, layer in enumerate(g.host_layers):
        out[f"embedding_{k}_table.npy"] = layer.raw_table(g)
        if layer.position is not None:
            out[f"embedding_{k}_position.npy"] = layer.raw_position(g)
    return out


DESIGN_EXTRAS = ("text.json", "x.npy", "y.npy", "texts.txt")


def write_package(project_dir: str | Path, board: str | Board | None, out: str | Path, force: bool = False,
                  recorded_project: str | Path | None = None, text: dict[str, Any] | None = None,
                  samples: tuple[Any, Any] | None = None) -> Path:
    """Write the deployment package of `project_dir` for `board` to `out` (atomically).
    `recorded_project`: where the project will live when the package is used, if it is being
    written inside a directory that is moved into place afterwards (the demo). `board`: None
    for the one the project was exported for. `text`: the text.json of a text model; `samples`:
    (x, y) sample inputs and labels. By default both are taken from the design directory
    holding the project, when it has them."""
    from hwprune.backend.hls_project import _env
    from hwprune.backend.project_dir import ProjectDir
    from hwprune.backend.vivado import bitstream_files

    prj = ProjectDir.locate(project_dir)
    project = prj.path
    man = prj.manifest
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
               inputs=[next((h["ids"] for h in spec["host_embeddings"] if h["port"] == p["name"]), p)
                       for p in spec["inputs"]],
               outputs=spec["outputs"], family=b.family, host_embeddings=spec["host_embeddings"],
               has_text=text is not None or (project.resolve().parent / "text.json").is_file(),
               has_samples=samples is not None or (project.resolve().parent / "x.npy").is_file())
    env = _env()
    with atomic_directory(out, force, [project], kind="deploy") as tmp:
        (tmp / "accelerator.json").write_text(json.dumps(spec, indent=2))
        if spec["host_embeddings"]:
            import numpy as np

            from hwprune.project import load_project_graph

            for name, table in host_tables(load_project_graph(project)).items():
                np.save(tmp / name, table)
        shutil.copyfile(Path(__file__).with_name("pynq_driver.py"), tmp / DRIVER_NAME)
        for name in ("validate.py", "throughput.py", "README.md"):
            (tmp / name).write_text(env.get_template(f"deploy/{name}.j2").render(**ctx))
        for name in ("validate.py", "throughput.py"):
            (tmp / name).chmod(0o755)
        if has_bitstream:
            shutil.copyfile(bit, tmp / spec["overlay"]["bitfile"])
            shutil.copyfile(hwh, tmp / spec["overlay"]["hwh"])
        design = project.resolve().parent
        if text is not None:
            (tmp / "text.json").write_text(json.dumps(text))
        if samples is not None:
            import numpy as np

            np.save(tmp / "x.npy", np.asarray(samples[0]))
            np.save(tmp / "y.npy", np.asarray(samples[1]))
        for name in DESIGN_EXTRAS:
            if not (tmp / name).exists() and (design / name).is_file():
                shutil.copyfile(design / name, tmp / name)
    return out
