"""The primitive sweep: every primitive the cost models compose, synthesized with yosys
`synth_xilinx` for the 7-series and UltraScale+ families.

    python -m hwprune.sim.calibrate.sweep [--jobs 2] [--only mul,rom]

writes the measurements to measured.json beside this file (the data docs/estimate_primitives.md
and tests/test_calibration.py read) and the measured tables into docs/estimate_primitives.md
(between its `measured:begin/end` markers).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from hwprune.sim.calibrate import PRIMITIVES, synthesize, yosys_binary, yosys_version

MEASURED = Path(__file__).with_name("measured.json")


@dataclass(frozen=True)
class Case:
    kind: str  # mul | cmul | dsp | add | acc | mux | rom | fifo | max
    params: tuple[tuple[str, int], ...]
    family: str = "xc7"
    dsp: bool = False

    @property
    def key(self) -> str:
        p = ",".join(f"{k}={v}" for k, v in self.params)
        return f"{self.kind}[{p}]@{self.family}{'+dsp' if self.dsp else ''}"

    @property
    def p(self) -> dict[str, int]:
        return dict(self.params)


def C(kind: str, family: str = "xc7", dsp: bool = False, **params: int) -> Case:
    return Case(kind, tuple(params.items()), family, dsp)


def cases() -> list[Case]:
    out: list[Case] = []
    # Fabric multipliers, signed x signed over both operand widths, a few unsigned / mixed.
    widths = (2, 3, 4, 6, 8, 10, 12, 16)
    for a in widths:
        for b in widths:
            if b <= a:
                out.append(C("mul", A=a, B=b, SA=1, SB=1))
    for a, b in ((18, 18), (18, 8), (5, 5), (7, 7), (9, 9)):
        out.append(C("mul", A=a, B=b, SA=1, SB=1))
    for a, b, sa, sb in ((8, 8, 0, 0), (4, 4, 0, 0), (8, 8, 0, 1), (16, 8, 0, 1), (6, 6, 0, 1), (12, 12, 0, 0)):
        out.append(C("mul", A=a, B=b, SA=sa, SB=sb))
    # Multipliers by a constant (reuse factor 1 folds the weights into the logic).
    for a in (8, 16):
        for c in (0, 1, -1, 2, 3, 5, 7, -7, 37, -37, 85, 109, 127, -128):
            out.append(C("cmul", A=a, B=8, C=c))
    # DSP slices at the ports of DSP48E1 (25x18) and DSP48E2 (27x18).
    for fam, shapes in (("xc7", ((10, 10), (18, 18), (25, 18), (26, 18), (25, 19), (27, 18), (35, 25), (48, 48))),
                        ("xcup", ((10, 10), (27, 18), (28, 18), (27, 19), (35, 25), (48, 48)))):
        for a, b in shapes:
            out.append(C("mul", fam, True, A=a, B=b, SA=1, SB=1))
    for n in (4, 8, 12, 16, 24, 32, 48):
        out.append(C("add", N=n))
    for n in (8, 16, 32):
        out.append(C("acc", N=n))
    for n in (2, 3, 4, 5, 6, 8, 12, 16, 24, 32, 64, 128):
        out.append(C("mux", N=n, W=8))
    for n in (4, 16):
        out.append(C("mux", N=n, W=1))
    for d in (2, 4, 8, 16):
        out.append(C("rom", D=d, W=8, SYNC=1))
    for d in (32, 64, 128, 256, 512, 1024, 2048, 4096):
        for w in (8, 18, 36):
            out.append(C("rom", D=d, W=w, SYNC=1))
    for d in (16, 32, 64, 128, 256):
        for w in (8, 16):
            out.append(C("rom", D=d, W=w, SYNC=0))
    for d in (2, 4, 16, 32, 64):
        for w in (8, 32):
            out.append(C("fifo", D=d, W=w))
    for n in (8, 16, 32):
        out.append(C("max", N=n))
    # UltraScale+: a sample of the fabric primitives (same LUT6 fabric, CARRY8).
    for a, b in ((4, 4), (8, 8), (16, 16)):
        out.append(C("mul", "xcup", A=a, B=b, SA=1, SB=1))
    for n in (16, 32):
        out.append(C("add", "xcup", N=n))
    for n in (4, 16):
        out.append(C("mux", "xcup", N=n, W=8))
    for d, w in ((64, 8), (1024, 18), (4096, 36)):
        out.append(C("rom", "xcup", D=d, W=w, SYNC=1))
    return out


def rom_hex(depth: int, width: int, seed: int = 1) -> str:
    rng = random.Random(seed * 7919 + depth * 31 + width)
    digits = (width + 3) // 4
    return "\n".join(f"{rng.getrandbits(width):0{digits}x}" for _ in range(depth)) + "\n"


def run_case(case: Case) -> dict:
    top = f"hwp_cal_{case.kind if case.kind != 'dsp' else 'mul'}"
    params: dict[str, int | str] = dict(case.params)
    files = None
    if case.kind == "rom":
        files = {"rom.hex": rom_hex(case.p["D"], case.p["W"])}
    t = time.perf_counter()
    r = synthesize([PRIMITIVES], top, params, family=case.family, dsp=case.dsp, files=files)
    return {"key": case.key, "kind": case.kind, "family": case.family, "dsp_mapping": case.dsp, "params": case.p,
            **r.as_dict(), "cells": r.cells, "seconds": round(time.perf_counter() - t, 2)}


def _safe(case: Case) -> dict:
    try:
        return run_case(case)
    except Exception as e:  # one broken case must not stop the sweep
        return {"key": case.key, "error": str(e)[-300:]}


def load() -> dict:
    return json.loads(MEASURED.read_text()) if MEASURED.exists() else {"yosys": None, "results": {}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", default="", help="comma-separated kinds to (re)run")
    ap.add_argument("--rerun", action="store_true", help="synthesize cases already measured")
    ap.add_argument("--doc", action="store_true", help="only rewrite the doc tables from measured.json")
    a = ap.parse_args(argv)
    data = load()
    if not a.doc:
        if yosys_binary() is None:
            print("yosys not found", file=sys.stderr)
            return 2
        version = yosys_version()
        if data.get("yosys") not in (None, version):
            data = {"yosys": version, "results": {}}
        data["yosys"] = version
        only = {k for k in a.only.split(",") if k}
        order = ["mul", "mux", "add", "rom", "fifo", "acc", "max", "cmul"]
        todo = [c for c in cases() if (not only or c.kind in only) and (a.rerun or c.key not in data["results"])]
        todo.sort(key=lambda c: (c.family != "xc7", c.dsp, order.index(c.kind) if c.kind in order else 99))
        print(f"{len(todo)} cases with yosys {version}", file=sys.stderr)
        with ThreadPoolExecutor(max(1, a.jobs)) as pool:
            for i, res in enumerate(pool.map(_safe, todo)):
                if "error" in res:
                    print(f"[{i + 1}/{len(todo)}] {res['key']}: {res['error']}", file=sys.stderr)
                    continue
                data["results"][res["key"]] = res
                print(f"[{i + 1}/{len(todo)}] {res['key']}: lut {res['lut']} ff {res['ff']} dsp {res['dsp']} "
                      f"bram18 {res['bram18']} ({res['seconds']} s)", file=sys.stderr)
                MEASURED.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    from hwprune.sim.calibrate.doc import write_doc

    write_doc(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
