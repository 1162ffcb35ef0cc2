"""The board catalog: part, resources and default clock of each supported board, read from
the YAML files in `boards/` (installed as `hwprune.boards`). A board of your own is a YAML
file in the same format, given by path wherever a board is (`--board ./myboard.yaml`):

    name: my-zu3eg             # a name that is not in the catalog
    part: xczu3eg-sbva484-1-e
    family: zynqmp             # zynq7000 | zynqmp
    ps: ps8                    # ps7 (Zynq-7000) | ps8 (Zynq UltraScale+)
    resources: {lut: 70560, ff: 141120, bram18: 432, uram: 0, dsp: 360}
    default_clock_mhz: 150
    dsp_kind: dsp48e2          # dsp48e1 (7-series) | dsp48e2 (UltraScale+)
    aliases: []                # optional
    description: "..."         # optional

Every key is checked; a mistake is one line naming the file and the key. Projects keep a copy
of their board (`board.yaml`), so later commands find a custom board without the file."""

from __future__ import annotations

import dataclasses
import difflib
import functools
from dataclasses import dataclass, field
from importlib import resources as importlib_resources
from pathlib import Path
from typing import Any

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
    # Vivado board-file pattern (custom boards; the catalog's are in backend/vivado.py).
    board_part: str = ""
    image: str = ""  # the PYNQ image to boot (custom boards)


class BoardFileError(HwpruneInputError):
    """A board YAML file is unreadable or malformed."""


FAMILIES = {"zynq7000": ("ps7", "dsp48e1"), "zynqmp": ("ps8", "dsp48e2")}
_KEYS = {"name", "part", "family", "ps", "resources", "default_clock_mhz", "dsp_kind", "aliases", "description",
         "board_part", "image"}
_RESOURCE_KEYS = ("dsp", "lut", "ff", "bram18", "uram")


def board_from_dict(d: Any, where: str) -> Board:
    """Validate a board description (the YAML's mapping); BoardFileError naming `where` and the key."""
    def bad(msg: str) -> BoardFileError:
        return BoardFileError(f"board file {where}: {msg}")

    if not isinstance(d, dict):
        raise bad("expected a mapping of keys (name, part, family, ps, resources, default_clock_mhz, dsp_kind)")
    unknown = sorted(set(map(str, d)) - _KEYS)
    if unknown:
        raise bad(f"unknown key '{unknown[0]}'; the keys are {', '.join(sorted(_KEYS))}")
    for k in ("name", "part", "family", "ps", "resources", "default_clock_mhz", "dsp_kind"):
        if k not in d or d[k] is None:
            raise bad(f"missing key '{k}'")
    for k in ("name", "part", "family", "ps", "dsp_kind"):
        if not isinstance(d[k], str) or not d[k].strip():
            raise bad(f"'{k}' must be a non-empty string, got {d[k]!r}")
    if d["family"] not in FAMILIES:
        raise bad(f"family '{d['family']}' is not one of: {', '.join(FAMILIES)}")
    ps, dsp_kind = FAMILIES[d["family"]]
    if d["ps"] != ps:
        raise bad(f"ps '{d['ps']}' does not match family {d['family']} (expected {ps})")
    if d["dsp_kind"] not in ("dsp48e1", "dsp48e2"):
        raise bad(f"dsp_kind '{d['dsp_kind']}' is not one of: dsp48e1, dsp48e2")
    res = d["resources"]
    if not isinstance(res, dict):
        raise bad("'resources' must be a mapping: {dsp: N, lut: N, ff: N, bram18: N, uram: N}")
    extra = sorted(set(map(str, res)) - set(_RESOURCE_KEYS))
    if extra:
        raise bad(f"unknown resource '{extra[0]}'; the resources are {', '.join(_RESOURCE_KEYS)} (bram18 = 2 x BRAM36)")
    counts = {}
    for k in _RESOURCE_KEYS:
        v = res.get(k, 0 if k == "uram" else None)
        if v is None:
            raise bad(f"missing resource '{k}'")
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise bad(f"resource '{k}' must be a whole number >= 0, got {v!r}")
        counts[k] = v
    if not counts["lut"] or not counts["ff"]:
        raise bad("resources 'lut' and 'ff' must be positive")
    clock = d["default_clock_mhz"]
    if isinstance(clock, bool) or not isinstance(clock, (int, float)) or not 0 < float(clock) <= 1000:
        raise bad(f"'default_clock_mhz' must be a number in (0, 1000], got {clock!r}")
    aliases = d.get("aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise bad("'aliases' must be a list of names")
    for k in ("description", "board_part", "image"):
        if not isinstance(d.get(k) or "", str):
            raise bad(f"'{k}' must be a string")
    return Board(name=d["name"].strip(), part=d["part"].strip(), family=d["family"], ps=d["ps"],
                 resources=Resources(**counts), default_clock_mhz=float(clock), dsp_kind=d["dsp_kind"],
                 aliases=tuple(aliases), description=d.get("description") or "", board_part=d.get("board_part") or "",
                 image=d.get("image") or "")


def board_to_dict(b: Board) -> dict[str, Any]:
    return dict(name=b.name, part=b.part, family=b.family, ps=b.ps, resources=b.resources.as_dict(),
                default_clock_mhz=b.default_clock_mhz, dsp_kind=b.dsp_kind, aliases=list(b.aliases),
                description=b.description, board_part=b.board_part, image=b.image)


@functools.lru_cache(maxsize=1)
def _catalog() -> dict[str, Board]:
    boards: dict[str, Board] = {}
    root = importlib_resources.files("hwprune.boards")
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if not entry.name.endswith(".yaml"):
            continue
        b = board_from_dict(yaml.safe_load(entry.read_text()), entry.name)
        boards[b.name] = b
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
# Boards loaded from files in this process, by name (so a name recorded in a config finds them).
_custom: dict[str, Board] = {}


def list_boards() -> list[str]:
    return sorted(_catalog())


def _looks_like_path(name: str) -> bool:
    return name.endswith((".yaml", ".yml")) or "/" in name


def load_board_file(path: str | Path) -> Board:
    p = Path(path)
    if not p.is_file():
        raise BoardFileError(f"board file {p} does not exist" + (" (it is a directory)" if p.is_dir() else ""))
    try:
        d = yaml.safe_load(p.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise BoardFileError(f"board file {p} cannot be read: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise BoardFileError(f"board file {p} is not valid YAML{at}: {getattr(e, 'problem', None) or e}") from None
    b = board_from_dict(d, str(p))
    cat = _catalog()
    clash = next((c for c in cat.values() if b.name.lower() == c.name or b.name.lower() in (a.lower() for a in c.aliases)), None)
    if clash is not None and clash != b:
        raise BoardFileError(f"board file {p}: name '{b.name}' is the catalog's {clash.name}; give your board another name")
    _custom[b.name.lower()] = b
    return b


def load_board(name: str | Board) -> Board:
    """A catalog board by name or alias, or a board of your own from a YAML file path."""
    if isinstance(name, Board):
        return name
    text = str(name).strip()
    if _looks_like_path(text):
        return load_board_file(text)
    key = text.lower()
    if key in _custom:
        return _custom[key]
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
    raise UnknownBoardError(f"unknown board '{name}'; {hint}known boards: {', '.join(names)} "
                            "(or the path of a board YAML file of your own, e.g. --board ./myboard.yaml)")


def project_board(project: str | Path, recorded: str) -> Board:
    """The board a project was exported for: the catalog's, else the copy the project keeps."""
    try:
        return load_board(recorded)
    except UnknownBoardError:
        copy = Path(project) / "board.yaml"
        if copy.is_file():
            return load_board_file(copy)
        raise


def utilization(used: Resources, board: Board) -> dict[str, float]:
    cap = board.resources.as_dict()
    return {k: (v / cap[k] if cap[k] else (0.0 if v == 0 else float("inf"))) for k, v in used.as_dict().items()}
