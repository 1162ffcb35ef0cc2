"""The measured tables of docs/estimate_primitives.md, from measured.json, beside the model."""

from __future__ import annotations

from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "estimate_primitives.md"
if not DOC.parent.exists():  # installed package: the doc is not there
    DOC = Path("docs") / "estimate_primitives.md"

BEGIN, END = "<!-- measured:begin -->", "<!-- measured:end -->"


def _rows(data: dict, kind: str, family: str = "xc7", dsp: bool = False) -> list[dict]:
    out = [r for r in data["results"].values() if r["kind"] == kind and r["family"] == family and r["dsp_mapping"] == dsp]
    return sorted(out, key=lambda r: tuple(r["params"].values()))


def _ratio(model: float, measured: float) -> str:
    if measured == 0:
        return "exact" if model == 0 else f"{model:g} vs 0"
    return f"{model / measured:.2f}"


def tables(data: dict) -> str:
    from hwprune.sim import resources as hw

    L: list[str] = [f"Measured with yosys {data.get('yosys')} (`synth_xilinx -family xc7 -noiopad`, `-nodsp` for fabric "
                    "products) by `python -m hwprune.sim.calibrate.sweep`; raw cell counts in "
                    "`sim/calibrate/measured.json`. LUT = LUT1..LUT6 + LUT sites of distributed RAM/SRL; "
                    "MUXF7/MUXF8 and CARRY4 are not counted (Vivado reports them apart). *model* is `sim/resources.py`.",
                    ""]
    # Multipliers.
    mul = _rows(data, "mul")
    if mul:
        widths = sorted({r["params"]["A"] for r in mul if r["params"]["SA"] and r["params"]["SB"]})
        bs = sorted({r["params"]["B"] for r in mul if r["params"]["SA"] and r["params"]["SB"]})
        L += ["### Fabric multipliers (signed a x b): LUTs, yosys / model", "",
              "| a \\ b | " + " | ".join(map(str, bs)) + " |", "|---|" + "---|" * len(bs)]
        ss = {(r["params"]["A"], r["params"]["B"]): r["lut"] for r in mul if r["params"]["SA"] and r["params"]["SB"]}
        for a in widths:
            cells = []
            for b in bs:
                v = ss.get((a, b))
                cells.append("" if v is None else f"{v} / {hw.lut_per_multiplier(a, b):.0f}")
            L.append(f"| {a} | " + " | ".join(cells) + " |")
        L.append("")
        us = [r for r in mul if not (r["params"]["SA"] and r["params"]["SB"])]
        if us:
            L += ["Unsigned operands (a unsigned, b signed unless both marked u):", "",
                  "| product | yosys LUT | model | ratio |", "|---|---|---|---|"]
            for r in us:
                p = r["params"]
                m = hw.lut_per_multiplier(p["A"], p["B"], bool(p["SA"]), bool(p["SB"]))
                name = f"{p['A']}{'' if p['SA'] else 'u'} x {p['B']}{'' if p['SB'] else 'u'}"
                L.append(f"| {name} | {r['lut']} | {m:.0f} | {_ratio(m, r['lut'])} |")
            L.append("")
    cm = _rows(data, "cmul")
    if cm:
        L += ["### Multiplication by a constant (reuse factor 1): LUTs", "",
              "| x bits | constant | bits of its odd part | yosys | model |", "|---|---|---|---|---|"]
        for r in cm:
            p = r["params"]
            c = p["C"] if p["C"] < 2 ** 31 else p["C"] - 2 ** 32
            L.append(f"| {p['A']} | {c} | {hw.odd_width(c)} | {r['lut']} | {hw.lut_per_const_multiplier(c, p['A']):.0f} |")
        L.append("")
    dsp = [r for fam in ("xc7", "xcup") for r in _rows(data, "mul", fam, True)]
    if dsp:
        L += ["### DSP slices per product (signed a x b)", "",
              "| family | a x b | yosys DSP | model | yosys LUT |", "|---|---|---|---|---|"]
        for r in dsp:
            p = r["params"]
            kind = "dsp48e1" if r["family"] == "xc7" else "dsp48e2"
            m = hw.multiplier_dsps(p["A"], p["B"], kind, "dsp")
            L.append(f"| {r['family']} | {p['A']} x {p['B']} | {r['dsp']} | {m:g} | {r['lut']} |")
        L.append("")
    for kind, title, model in (("add", "Adders (n bits)", lambda p: hw.lut_per_adder(p["N"])),
                               ("acc", "Accumulators (n bits, registered, with a clear: 2 LUTs per bit)", lambda p: 2 * hw.lut_per_adder(p["N"])),
                               ("max", "max(a, b) of n-bit signed values", lambda p: hw.lut_per_max(p["N"]))):
        rows = _rows(data, kind)
        if rows:
            L += [f"### {title}", "", "| n | yosys LUT | model | yosys FF |", "|---|---|---|---|"]
            for r in rows:
                L.append(f"| {r['params']['N']} | {r['lut']} | {model(r['params']):.0f} | {r['ff']} |")
            L.append("")
    mux = _rows(data, "mux")
    if mux:
        L += ["### N:1 multiplexers of w bits", "", "| N | w | yosys LUT | model | ratio |", "|---|---|---|---|---|"]
        for r in mux:
            p = r["params"]
            m = hw.mux_luts(p["N"], p["W"])
            L.append(f"| {p['N']} | {p['W']} | {r['lut']} | {m:.0f} | {_ratio(m, r['lut'])} |")
        L.append("")
    rom = _rows(data, "rom")
    if rom:
        L += ["### ROMs (depth x width, random contents)", "",
              "| depth x width | read | yosys LUT | yosys FF | yosys BRAM18 | model LUT | model BRAM18 |", "|---|---|---|---|---|---|---|"]
        for r in rom:
            p = r["params"]
            m = hw.rom_cost(p["D"], p["W"])
            L.append(f"| {p['D']} x {p['W']} | {'registered' if p['SYNC'] else 'async'} | {r['lut']} | {r['ff']} | {r['bram18']} "
                     f"| {m.lut:.0f} | {m.bram18:g} |")
        L.append("")
    fifo = _rows(data, "fifo")
    if fifo:
        L += ["### Shift-register FIFOs (depth x width, valid/ready)", "",
              "| depth x width | yosys LUT | yosys FF | model LUT (SRL) |", "|---|---|---|---|"]
        for r in fifo:
            p = r["params"]
            m = hw.fifo_cost(p["D"], p["W"])
            L.append(f"| {p['D']} x {p['W']} | {r['lut']} | {r['ff']} | {m.lut:.0f} |")
        L.append("")
    us = [r for kind in ("mul", "add", "mux", "rom") for r in _rows(data, kind, "xcup")]
    if us:
        L += ["### UltraScale+ (`-family xcup`) sample", "", "| primitive | yosys LUT | yosys FF | yosys BRAM18 | same on xc7 |",
              "|---|---|---|---|---|"]
        for r in us:
            twin = data["results"].get(r["key"].replace("@xcup", "@xc7"))
            L.append(f"| {r['key'].split('@')[0]} | {r['lut']} | {r['ff']} | {r['bram18']} | {twin['lut'] if twin else ''} |")
        L.append("")
    return "\n".join(L)


def write_doc(data: dict, doc: Path = DOC) -> None:
    text = doc.read_text() if doc.exists() else "# Cost primitives\n"
    body = f"{BEGIN}\n{tables(data).strip()}\n\n{END}"
    if BEGIN in text:
        pre, rest = text.split(BEGIN, 1)
        text = pre + body + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n## Measured\n\n" + body + "\n"
    doc.write_text(text)
