"""The board catalog: part, resources and default clock of each supported board, read from
the YAML files in `boards/` (installed as `hwprune.boards`)."""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass, field
from importlib import resources as importlib_resources

import yaml

from hwprune.errors import HwpruneInputError


class UnknownBoardError(HwpruneInputError):
    """The board name is not in the catalog."""


@dataclass(frozen=True)
class Resources:
    dsp: int = 0
    lut: int = 0
    ff: int = 0
    bram18: int = 0
    uram: int = 0

    def __add__(self, other: "Resources") -> "Resources":
        return Resources(*(a + b for a, b in zip(self.as_tuple(), other.as_tuple())))

    def scaled(self, f: float) -> "Resources":
        return Resources(*(int(v * f) for v in self.as_tuple()))

    def as_tuple(self) -> tuple[int, int, int, int, int]:
        return (self.dsp, self.lut, self.ff, self.bram18, self.uram)

    def as_dict(self) -> dict[str, int]:
        return dict(dsp=self.dsp, lut=self.lut, ff=self.ff, bram18=self.bram18, uram=self.uram)


@dataclass(frozen=True)
class Board:
    name: str
    part: str
    family: str  # zynq7000 | zynqmp
    ps: str  # ps7 | ps8
    resources: Resources
    default_clock_mhz: float
    dsp_kind: str  # dsp48e1 | dsp48e2
    aliases: tuple[str, ...] = field(default_factory=tuple)
    description: str = ""


@functools.lru_cache(maxsize=1)
def _catalog() -> dict[str, Board]:
    boards: dict[str, Board] = {}
    root = importlib_resources.files("hwprune.boards")
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if not entry.name.endswith(".yaml"):
            continue
        d = yaml.safe_load(entry.read_text())
        boards[d["name"]] = Board(
            name=d["name"], part=d["part"], family=d["family"], ps=d["ps"], resources=Resources(**d["resources"]),
            default_clock_mhz=float(d["default_clock_mhz"]), dsp_kind=d["dsp_kind"],
            aliases=tuple(d.get("aliases") or ()), description=d.get("description", ""),
        )
    return boards


def list_boards() -> list[str]:
    return sorted(_catalog())


def load_board(name: str) -> Board:
    key = str(name).strip().lower()
    cat = _catalog()
    for b in cat.values():
        if key == b.name or key in (a.lower() for a in b.aliases):
            return b
    names = list_boards()
    close = difflib.get_close_matches(key, names + [a for b in cat.values() for a in b.aliases], n=1, cutoff=0.5)
    hint = ""
    if close:
        target = next(b.name for b in cat.values() if close[0] == b.name or close[0] in b.aliases)
        hint = f"did you mean {target}? "
    raise UnknownBoardError(f"unknown board '{name}'; {hint}known boards: {', '.join(names)}")


def utilization(used: Resources, board: Board) -> dict[str, float]:
    cap = board.resources.as_dict()
    return {k: (v / cap[k] if cap[k] else (0.0 if v == 0 else float("inf"))) for k, v in used.as_dict().items()}
