"""Project directories: the one owner of the project manifest (`hwprune_project.json`) and of
finding the project in a directory a user names.

    prj = ProjectDir.locate("design/")     # a project, or a design directory holding one
    prj.path, prj.top, prj.board, prj.clock_mhz, prj.manifest
    ProjectDir.write_manifest(directory, data)

Directories the commands accept (`estimate`, `simulate`, `run`, `build`, `deploy`):

* a project written by `hwprune export` (it holds the manifest);
* a design directory written by `hwprune prune MODEL --board ...` (or a point of `explore`),
  whose project is its `project/` subdirectory.

Any other directory is refused with the subdirectories that do hold projects, if any.
Nothing here imports more than the standard library: every command calls it first.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Callable, Sequence

from hwprune.errors import ModelLoadError

MANIFEST = "hwprune_project.json"
# A design directory (prune, explore points, the demo's design/): the model, its project and
# the report (`write_design`).
DESIGN_PROJECT = "project"
DESIGN_MODEL = "model.onnx"
DESIGN_REPORT = "report.json"
_SEARCH_DEPTH = 3
_MAX_LISTED = 4


@functools.lru_cache(maxsize=64)
def _read_manifest(path: str, stamp: tuple[int, int]) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ModelLoadError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}); re-export the project") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} is not an hwprune project manifest; re-export the project")
    return data


class ProjectDir:
    """A directory holding an exported project (its manifest is present)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"ProjectDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # ------------------------------------------------------------------ finding one

    @staticmethod
    def is_project(path: Any) -> bool:
        """`path` (a str or Path) is a project directory itself."""
        return isinstance(path, (str, Path)) and (Path(path) / MANIFEST).is_file()

    @classmethod
    def find(cls, path: Any) -> "ProjectDir | None":
        """The project `path` names — the directory itself or the project of a design
        directory — or None when `path` is no such directory."""
        if not isinstance(path, (str, Path)):
            return None
        p = Path(path)
        if (p / MANIFEST).is_file():
            return cls(p)
        if (p / DESIGN_PROJECT / MANIFEST).is_file():
            return cls(p / DESIGN_PROJECT)
        return None

    @classmethod
    def locate(cls, path: str | Path, what: str = "a project directory") -> "ProjectDir":
        """Like `find`, but a directory that holds no project raises ModelLoadError saying
        which subdirectory to pass (or how to make a project)."""
        found = cls.find(path)
        if found is not None:
            return found
        raise ModelLoadError(cls.refusal(path, what))

    @classmethod
    def open(cls, path: str | Path) -> "ProjectDir":
        """The project at exactly `path` (internal callers that were handed a project)."""
        if not cls.is_project(path):
            raise ModelLoadError(cls.refusal(path, "a project directory"))
        return cls(path)

    @staticmethod
    def refusal(path: str | Path, what: str = "a project directory") -> str:
        """Why `path` is not a project, and what to pass instead."""
        p = Path(path)
        if not p.exists():
            return f"{p} does not exist; give {what} (written by hwprune export or hwprune prune --board)"
        if not p.is_dir():
            return f"{p} is a file, not {what} (written by hwprune export or hwprune prune --board)"
        inner = _projects_below(p)
        if inner:
            shown = ", ".join(str(q) for q in inner[:_MAX_LISTED]) + (", ..." if len(inner) > _MAX_LISTED else "")
            one = "the project inside it" if len(inner) == 1 else "one of the projects inside it"
            return f"{p} is a directory but not an hwprune project (no {MANIFEST}); pass {one}: {shown}"
        if (p / "model.onnx").is_file():
            return (f"{p} is a directory but not an hwprune project (no {MANIFEST}); it holds a model: pass "
                    f"{p / 'model.onnx'}, or export a project with hwprune export {p / 'model.onnx'} --board BOARD --out DIR")
        return f"{p} is a directory but not an hwprune project (no {MANIFEST}); export one with hwprune export"

    # ------------------------------------------------------------------ the manifest

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def manifest(self) -> dict[str, Any]:
        """The manifest (read once per change of the file)."""
        p = self.manifest_path
        try:
            st = p.stat()
        except FileNotFoundError:
            raise ModelLoadError(self.refusal(self.path)) from None
        return _read_manifest(str(p.resolve()), (st.st_mtime_ns, st.st_size))

    def manifest_stamp(self) -> float:
        return self.manifest_path.stat().st_mtime

    def get(self, key: str, default: Any = None) -> Any:
        return self.manifest.get(key, default)

    def _field(self, key: str) -> Any:
        try:
            return self.manifest[key]
        except KeyError:
            raise ModelLoadError(f"{self.manifest_path} lacks '{key}'; re-export the project with this hwprune") from None

    @property
    def top(self) -> str:
        return str(self._field("top"))

    @property
    def board(self) -> str:
        return str(self._field("board"))

    @property
    def clock_mhz(self) -> float:
        return float(self._field("clock_mhz"))

    @property
    def io_type(self) -> str:
        return str(self._field("io_type"))

    @property
    def model_path(self) -> Path:
        return self.path / str(self._field("model"))

    @property
    def precision(self) -> dict[str, Any]:
        return dict(self._field("precision"))

    @staticmethod
    def write_manifest(directory: str | Path, data: dict[str, Any]) -> Path:
        p = Path(directory) / MANIFEST
        p.write_text(json.dumps(data, indent=2))
        return p


def write_design(out: str | Path, proto: Any, board: Any, io_type: str, precision: Any, clock_mhz: float | None,
                 report: "dict[str, Any] | Callable[[], dict[str, Any]]", sample_inputs: Sequence[Any] | None = None,
                 force: bool = False, arrays: "dict[str, Any] | None" = None,
                 finish: "Callable[[Path, dict[str, Any]], None] | None" = None,
                 fifo_storage: "dict[str, str] | None" = None) -> Path:
    """Write a design directory (what `hwprune prune --board` and `explore` produce), all or
    nothing: out/model.onnx (the model), out/project/ (its HLS project), out/report.json, and
    `arrays` as out/NAME.npy (e.g. input_map). `report` may be a function, called once the
    project is written; `finish(tmp_dir, report)` may add to the report and the directory
    (the fit verdict, report.html) before report.json is written."""
    import onnx

    from hwprune.fsutil import atomic_directory
    from hwprune.project import export

    out = Path(out)
    with atomic_directory(out, force) as tmp:
        onnx.save(proto, str(tmp / DESIGN_MODEL))
        export(proto, tmp / DESIGN_PROJECT, board=board, io_type=io_type, precision=precision, clock_mhz=clock_mhz,
               sample_inputs=sample_inputs, fifo_storage=fifo_storage)
        for name, value in (arrays or {}).items():
            import numpy as np

            np.save(tmp / f"{name}.npy", value)
        data = report() if callable(report) else report
        if finish is not None:
            finish(tmp, data)
        (tmp / DESIGN_REPORT).write_text(json.dumps(data, indent=2))
    return out


def _projects_below(root: Path) -> list[Path]:
    """Project directories under `root` (a few levels down), shortest paths first."""
    found: list[Path] = []
    frontier = [root]
    for _ in range(_SEARCH_DEPTH):
        nxt = []
        for d in frontier:
            try:
                children = sorted(c for c in d.iterdir() if c.is_dir() and not c.name.startswith("."))
            except OSError:
                continue
            for c in children:
                if (c / MANIFEST).is_file():
                    found.append(c)
                else:
                    nxt.append(c)
        frontier = nxt
        if len(found) > _MAX_LISTED:
            break
    return found
