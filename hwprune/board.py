"""The board catalog: part, resources and default clock of each supported board, read from
the YAML files in `boards/` (installed as `hwprune.boards`)."""

from __future__ import annotations

import dataclasses
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


RESOURCE_NAMES = ("dsp", "lut", "ff", "bram18", "uram")
_LABELS = dict(dsp="DSP", lut="LUT", ff="FF", bram18="BRAM", uram="URAM")


class HeadroomError(HwpruneInputError):
    """A --headroom value does not parse or is out of range."""


@dataclass(frozen=True)
class Headroom:
    """The share of each device resource a design may use and still be placed and routed at
    the board clock. A netlist that fills the device leaves the router no room: Vivado's
    UltraFast methodology (UG949, "Design Closure") treats high utilization as the first timing
    risk, and designs much above ~80% of the LUTs rarely close at the clock they were built for.
    Defaults: LUT and FF at most 80% of the device (the fabric the router also needs); DSP,
    block RAM and UltraRAM at most 85% (hard-block columns: a little room so the placer keeps
    their neighbours close). `Headroom.parse` reads --headroom; docs/estimate.md explains."""

    dsp: float = 0.85
    lut: float = 0.80
    ff: float = 0.80
    bram18: float = 0.85
    uram: float = 0.85

    def __post_init__(self) -> None:
        for k in RESOURCE_NAMES:
            v = getattr(self, k)
            if not (isinstance(v, (int, float)) and 0.0 < float(v) <= 1.0):
                raise HeadroomError(f"--headroom {k}={v}: a share of the device in (0, 1], e.g. {k}=0.85")

    @classmethod
    def parse(cls, text: "str | float | Headroom | None") -> "Headroom":
        """'0.9' (every resource), 'lut=0.85,ff=0.9' (the rest keep their defaults), 'none'
        (the whole device), or None / '' / 'default'."""
        if isinstance(text, Headroom):
            return text
        if text is None:
            return cls()
        if isinstance(text, (int, float)):
            return cls(*(float(text),) * len(RESOURCE_NAMES))
        t = str(text).strip().lower()
        if t in ("", "default"):
            return cls()
        if t in ("none", "off", "1", "1.0"):
            return cls(*(1.0,) * len(RESOURCE_NAMES))
        example = "e.g. 0.85, lut=0.85,ff=0.9 or none"
        try:
            return cls(*(float(t),) * len(RESOURCE_NAMES))
        except ValueError:
            pass
        values = {}
        aliases = {"bram": "bram18", "bram18": "bram18", "dsp": "dsp", "lut": "lut", "ff": "ff", "uram": "uram"}
        for part in t.split(","):
            if "=" not in part:
                raise HeadroomError(f"--headroom {text!r}: expected resource=share pairs, {example}")
            k, v = (x.strip() for x in part.split("=", 1))
            if k not in aliases:
                raise HeadroomError(f"--headroom {text!r}: unknown resource {k!r} (dsp, lut, ff, bram, uram)")
            try:
                values[aliases[k]] = float(v)
            except ValueError:
                raise HeadroomError(f"--headroom {text!r}: {v!r} is not a number, {example}") from None
        return dataclasses.replace(cls(), **values)

    def as_dict(self) -> dict[str, float]:
        return {k: float(getattr(self, k)) for k in RESOURCE_NAMES}

    def rule(self) -> str:
        """'LUT/FF <= 80%, DSP/BRAM/URAM <= 85% of the device' (resources grouped by share)."""
        groups: dict[float, list[str]] = {}
        for k in RESOURCE_NAMES:
            groups.setdefault(float(getattr(self, k)), []).append(_LABELS[k])
        if len(groups) == 1 and 1.0 in groups:
            return "no headroom: up to 100% of the device"
        parts = [f"{'/'.join(names)} <= {100 * v:g}%" for v, names in sorted(groups.items())]
        return ", ".join(parts) + " of the device"


DEFAULT_HEADROOM = Headroom()


def resource_label(k: str) -> str:
    return _LABELS.get(k, k.upper())


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
