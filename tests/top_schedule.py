"""The data dependencies of a generated top function, read from its C++ (not from the IR), and
the longest path through them: the independent side of the latency tests.

Every kernel call in `firmware/<top>.cpp` follows a `// <Op> <C name>` comment; the tensor
variables it touches are the `t_*` identifiers among its arguments that the top declares. A
variable is read by a call when an earlier call wrote it (or it is an input port), and written
by the first call that touches it otherwise — the top calls its kernels in an order where every
variable is written before it is read. Weighted by the `-DHWP_COUNT` loop counters, the longest
path through these calls is what the schedule the top expresses takes when independent calls
run side by side.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

_CALL = re.compile(r"^[ \t]*// \w+ (L_\w+)\n(.*?)(?=^[ \t]*// \w+ L_\w+\n|^}[ \t]*$)", re.M | re.S)


@dataclass(frozen=True)
class Call:
    layer: str  # IR layer name
    reads: frozenset[str]
    writes: frozenset[str]


def top_calls(project: Path, layer_of_c_name: Mapping[str, str]) -> list[Call]:
    """The kernel calls of a project's top function in program order."""
    man = json.loads((project / "hwprune_project.json").read_text())
    src = (project / "firmware" / f"{man['top']}.cpp").read_text()
    declared = (set(re.findall(r"\b(t_\w+)\[\d+\]", src)) | set(re.findall(r"&\s*(t_\w+)", src))
                | set(re.findall(r"\b(t_\w+)\(\"", src)))
    written = {p["c_name"] for p in man["inputs"]}
    calls = []
    for lname, code in _CALL.findall(src):
        args = " ".join(re.findall(r">\s*\(([^;]*)\)\s*;", code))
        touched = [v for v in re.findall(r"\bt_\w+", args) if v in declared]
        reads = frozenset(v for v in touched if v in written)
        writes = frozenset(v for v in touched if v not in written)
        written |= writes
        calls.append(Call(layer_of_c_name[lname], reads, writes))
    return calls


def longest_path(calls: list[Call], weight: Mapping[str, float]) -> float:
    """Finish time of the last call when each starts as soon as the calls writing its inputs
    have finished and takes `weight[layer]` cycles."""
    ready: dict[str, float] = {}
    end = 0.0
    for c in calls:
        done = max((ready.get(v, 0.0) for v in c.reads), default=0.0) + weight[c.layer]
        for v in c.writes:
            ready[v] = done
        end = max(end, done)
    return end
