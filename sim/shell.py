"""The deployment shell: what a bitstream project (vivado/block_design.tcl, `hwprune build`) adds
to the programmable logic around the HLS IP of the network, so the estimate of a design that is
going onto a board counts it:

* the AXI-Stream top (firmware/<top>_axis.cpp): AXI-Lite control and batch register, the bus
  reader and writer (64-bit beats <-> stream words) and the streams between them and the
  network (sized as hwprune.backend.axis declares them);
* AXI DMA in simple mode (MM2S and S2MM, 64-bit memory and stream sides, burst 16, 26-bit
  length registers, no scatter-gather, no realignment engine);
* two SmartConnects: control (1 slave, 2 masters: the DMA's and the accelerator's AXI-Lite
  registers) and memory (2 slaves: the DMA's read and write masters, 1 master: the PS HP port);
* a processor system reset. The PS7/PS8 itself is hard silicon and costs no PL resources.

The IP figures are approximate (typical post-synthesis utilization of these configurations on
7-series and UltraScale+ parts, rounded up); nothing here ran Vivado. Replace them with your
own `report_utilization -hierarchical` when you have one. docs/estimate.md lists them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hwprune.board import Resources
from hwprune.ir.graph import IOType
from hwprune.sim.resources import fifo_cost

BUS_BITS = 64


@dataclass(frozen=True)
class ShellPart:
    name: str
    resources: Resources
    what: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(name=self.name, what=self.what, **self.resources.as_dict())


# Vivado IP in the block design (vivado/block_design.tcl.j2), per instance.
AXI_DMA = ShellPart("AXI DMA", Resources(lut=1900, ff=3000, bram18=2),
                    "axi_dma 7.1, simple mode, MM2S + S2MM, 64-bit, burst 16 (data-mover FIFOs in one BRAM36)")
SMARTCONNECT_MEM = ShellPart("SmartConnect (memory)", Resources(lut=1700, ff=2400),
                             "smartconnect 1.0, 2 AXI4 slaves (DMA read/write) x 1 master (PS HP), 64-bit")
SMARTCONNECT_CTRL = ShellPart("SmartConnect (control)", Resources(lut=600, ff=900),
                              "smartconnect 1.0, 1 slave (PS GP) x 2 AXI-Lite masters (DMA, accelerator registers)")
PROC_SYS_RESET = ShellPart("processor system reset", Resources(lut=20, ff=40), "proc_sys_reset 5.0")
# The HLS AXI-Stream top around the network: the AXI-Lite adapter and control (ap_ctrl_hs,
# the batch register, about 200 LUT / 300 FF), plus per bus port a 64-bit beat register and
# the field (de)multiplexing of its stream word.
AXIS_CONTROL = Resources(lut=200, ff=300)


def axis_top_cost(g: Any) -> Resources:
    """The AXI-Stream top of a project: control, bus reader and writer, and the streams the
    wrapper declares between them and the network (hwprune.backend.axis.render_axis_files)."""
    from hwprune.backend.hls_project import tensor_type

    lut, ff, bram = float(AXIS_CONTROL.lut), float(AXIS_CONTROL.ff), 0.0
    names = [*g.inputs, *g.outputs]
    n_in = len(g.inputs)
    for k, name in enumerate(names):
        t = g.tensor(name)
        width = tensor_type(t).width
        fields = max(1, BUS_BITS // width)
        word_bits = t.word * width
        # A beat register, the word being (un)packed, and a multiplexer per field position.
        ff += BUS_BITS + word_bits
        lut += 40 + fields * width + min(t.word, fields) * width
        if g.io_type == IOType.PARALLEL:
            # The port is a completely reshaped array (registers) between dataflow processes:
            # a ping-pong pair.
            ff += 2 * t.size * width
            continue
        words = t.size // max(t.word, 1)
        depth = words if (k < n_in - 1 if k < n_in else k > n_in) else 2
        m = fifo_cost(max(depth, 2), word_bits)
        lut += m.lut
        bram += m.bram18
    return Resources(lut=int(round(lut)), ff=int(round(ff)), bram18=int(round(bram + 0.499)))


def shell_parts(g: Any) -> list[ShellPart]:
    """Every part of the deployment shell of graph `g`'s bitstream project."""
    return [ShellPart("AXI-Stream top", axis_top_cost(g), "firmware/<top>_axis.cpp: AXI-Lite control, bus reader/writer"),
            AXI_DMA, SMARTCONNECT_CTRL, SMARTCONNECT_MEM, PROC_SYS_RESET]


def shell_resources(parts: list[ShellPart]) -> Resources:
    total = Resources()
    for p in parts:
        total = total + p.resources
    return total
