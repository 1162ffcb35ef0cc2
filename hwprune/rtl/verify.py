"""`hwprune verify-rtl`: the dense-family layers of a design as RTL engines, simulated with
Verilator (bit-exact against the fixed-point reference; cycles) and synthesized with yosys
(LUT / FF / DSP / BRAM), beside the estimate."""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hwprune.errors import HwpruneInputError


@dataclass
class LayerCheck:
    layer: str
    kind: str
    reuse_factor: int
    multipliers: int
    est_cycles: int
    rtl_cycles: int | None = None
    bit_exact: bool | None = None
    est: dict = field(default_factory=dict)  # lut ff dsp bram18
    yosys: dict = field(default_factory=dict)
    note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def _missing_tools(synth: bool) -> list[str]:
    from hwprune.rtl.verilator import verilator_binary
    from hwprune.sim.calibrate import yosys_binary

    missing = [] if verilator_binary() else ["verilator"]
    if synth and not yosys_binary():
        missing.append("yosys")
    return missing


def require_tools(synth: bool = True) -> None:
    """Exit 2 (HwpruneInputError) naming the missing tools and how to install them."""
    missing = _missing_tools(synth)
    if missing:
        raise HwpruneInputError(f"verify-rtl needs {' and '.join(missing)}, not found on PATH "
                                f"(Debian: apt-get install {' '.join(missing)})")


def verify(g: Any, board: Any, layers: Sequence[str] | None = None, synth: bool = True, seed: int = 0,
           workdir: Path | None = None) -> list[LayerCheck]:
    from hwprune.ops.dense import Dense
    from hwprune.rtl import verilator as vl
    from hwprune.rtl.engine import spec_from_dense, verilog
    from hwprune.sim.calibrate import synthesize
    from hwprune.sim.estimate import estimate

    require_tools(synth)
    dense = [l for l in g.layers if isinstance(l, Dense)]
    if layers:
        names = {l.name for l in dense}
        unknown = [n for n in layers if n not in names]
        if unknown:
            raise HwpruneInputError(f"--layers: no dense layer named {unknown[0]!r}; dense layers: {', '.join(sorted(names)) or 'none'}")
        dense = [l for l in dense if l.name in set(layers)]
    est = {le.name: le.cost for le in estimate(g, board).layers}
    family = "xc7" if board.dsp_kind == "dsp48e1" else "xcup"
    rng = np.random.default_rng(seed)
    checks: list[LayerCheck] = []
    runnable = []
    for layer in dense:
        c = est[layer.name]
        chk = LayerCheck(layer.name, layer.sparsity.pattern if layer.sparsity else "dense", layer.reuse_factor,
                         c.multipliers, int(c.latency),
                         est={"lut": round(c.lut), "ff": round(c.ff), "dsp": c.dsp, "bram18": c.bram18})
        checks.append(chk)
        try:
            spec = spec_from_dense(layer, g, name=f"hwp_l{len(runnable)}")
        except NotImplementedError as e:
            chk.note = str(e)
            continue
        t = g.tensor(layer.inputs[0]).type
        x = rng.integers(t.min_raw, t.max_raw + 1, size=(layer.n_words(g), layer.n_in))
        runnable.append((chk, layer, spec, x))
    tmp = tempfile.TemporaryDirectory(prefix="hwp_verify_") if workdir is None else None
    work = Path(tmp.name) if tmp else workdir
    try:
        if runnable:
            res = vl.run([r[2] for r in runnable], [r[3] for r in runnable], work)
            for (chk, layer, spec, x), r in zip(runnable, res):
                ref = layer.fixed_forward(g, [x])
                chk.bit_exact = bool(np.array_equal(r.outputs, ref) and np.array_equal(r.stalled_outputs, ref))
                chk.rtl_cycles = r.latency
        if synth:
            for chk, layer, spec, x in runnable:
                src = work / f"{spec.name}.v"
                src.write_text(verilog(spec))
                y = synthesize([src], spec.name, family=family, dsp=spec.dsp)
                chk.yosys = {"lut": y.lut, "ff": y.ff, "dsp": y.dsp, "bram18": y.bram18}
    finally:
        if tmp:
            tmp.cleanup()
    return checks


def _ratio(e: float, m: float) -> str:
    if m == 0:
        return "=" if e == 0 else "-"
    return f"{e / m:.2f}"


def format_checks(checks: list[LayerCheck]) -> str:
    head = ["layer", "kernel", "RF", "mult", "cycles est/rtl", "exact", "LUT est/yosys", "FF est/yosys", "DSP est/yosys",
            "BRAM18 est/yosys"]
    rows = []
    for c in checks:
        y = c.yosys
        def pair(k: str) -> str:
            if not y:
                return f"{c.est[k]:g} / -"
            return f"{c.est[k]:g} / {y[k]:g} ({_ratio(c.est[k], y[k])})"
        rows.append([c.layer, c.kind, str(c.reuse_factor), str(c.multipliers),
                     f"{c.est_cycles} / {c.rtl_cycles if c.rtl_cycles is not None else '-'}",
                     {True: "yes", False: "NO", None: "-"}[c.bit_exact], pair("lut"), pair("ff"), pair("dsp"), pair("bram18")])
        if c.note:
            rows[-1][5] = c.note
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)
