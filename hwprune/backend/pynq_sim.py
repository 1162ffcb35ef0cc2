"""A simulated PYNQ overlay for the deployment driver: the same `Accelerator` code runs
against simulated pynq objects (IP registers, DMA channels, `allocate`, `Clocks`) whose device
side executes the project's AXI-Stream C simulation (`hwprune.backend.axis.run_axis`).

It models what a driver can get wrong on the board:
* buffers have a CPU view and a device view; only flush() (CPU -> DDR) and invalidate()
  (DDR -> CPU) move data between them, so a missing cache operation sends or reads stale data;
* the accelerator consumes exactly batch x words-per-sample input words and its TLAST ends the
  receive transfer: a wrong batch register or buffer size leaves a DMA channel busy forever
  (the driver's timeout fires), a receive buffer shorter than the packet raises the DMA error;
* ap_start, ap_idle and the clear-on-read ap_done follow the Vitis HLS control register.

Timing is reported, not simulated cycle by cycle: `hwprune.simulate` when this hwprune has it,
plus the bus beats of the AXI-Stream wrapper.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any

import numpy as np

from hwprune.backend import pynq_driver as drv
from hwprune.errors import HwpruneInputError

log = logging.getLogger("hwprune")

_addresses = itertools.count(0x1000_0000, 0x10_0000)


class SimBuffer(np.ndarray):
    """A `pynq.allocate` buffer: this array is the CPU's cached view, `ddr` is the DDR memory the DMA sees."""

    ddr: np.ndarray
    physical_address: int

    def __new__(cls, shape: Any, dtype: Any = np.uint32) -> "SimBuffer":
        obj = np.zeros(shape, dtype=dtype).view(cls)
        obj.ddr = np.zeros(shape, dtype=dtype)
        obj.physical_address = next(_addresses)
        return obj

    def __array_finalize__(self, obj: Any) -> None:
        if obj is not None and not hasattr(self, "ddr"):
            self.ddr = getattr(obj, "ddr", None)  # views share the parent's memory model
            self.physical_address = getattr(obj, "physical_address", 0)

    def flush(self) -> None:
        self.ddr[...] = np.asarray(self)

    def invalidate(self) -> None:
        np.asarray(self)[...] = self.ddr

    def freebuffer(self) -> None:
        """Nothing to return to the CMA pool in a simulation."""


def sim_allocate(shape: Any, dtype: Any = np.uint32, **_: Any) -> SimBuffer:
    return SimBuffer(shape, dtype)


class SimClocks:
    """pynq.Clocks: the PL clock the driver sets (read back as set)."""

    def __init__(self, initial_mhz: float = 100.0) -> None:
        self.fclk0_mhz = float(initial_mhz)


class SimChannel:
    """One channel of pynq's simple-mode DMA driver (_SDMAChannel)."""

    def __init__(self, system: "SimulatedOverlay", receive: bool) -> None:
        self._sys = system
        self.receive = receive
        self.buffer: SimBuffer | None = None
        self.nbytes = 0
        self.done = False
        self.error = False
        self.transferred = 0
        self.running = True

    def transfer(self, array: SimBuffer, start: int = 0, nbytes: int = 0) -> None:
        if self.buffer is not None and not self.done:
            raise RuntimeError("DMA channel not idle")
        if not isinstance(array, SimBuffer):
            raise RuntimeError("DMA transfers need a buffer from allocate()")
        nbytes = nbytes or array.nbytes - start
        if nbytes > drv.DMA_MAX_BYTES:
            raise ValueError(f"Transfer size is {nbytes} bytes, which exceeds the maximum DMA buffer size {drv.DMA_MAX_BYTES}.")
        self.buffer, self.nbytes, self.done, self.error, self.transferred = array, nbytes, False, False, 0
        self._sys.step()

    @property
    def idle(self) -> bool:
        self._sys.step()
        return self.buffer is not None and self.done

    def wait(self) -> None:
        if not self.idle:
            raise RuntimeError("the simulated DMA transfer never completes: the accelerator waits for words")
        if self.receive and self.buffer is not None:
            self.buffer.invalidate()  # as pynq's wait() does on the receive side


class SimDMA:
    def __init__(self, system: "SimulatedOverlay") -> None:
        self.sendchannel = SimChannel(system, receive=False)
        self.recvchannel = SimChannel(system, receive=True)


class SimIP:
    """The accelerator's AXI-Lite registers (Vitis HLS ap_ctrl_hs map)."""

    def __init__(self, system: "SimulatedOverlay", registers: dict[str, int]) -> None:
        self._sys = system
        self._ctrl, self._batch_off = registers["ctrl"], registers["batch"]
        self.batch = 0
        self.started = False
        self.done = False

    def write(self, offset: int, value: int) -> None:
        if offset == self._batch_off:
            self.batch = int(value) & 0xFFFFFFFF
        elif offset == self._ctrl:
            if value & drv.AP_START and not self.started:
                self.started, self.done = True, False
                self._sys.step()
        else:
            raise RuntimeError(f"no register at offset {offset:#x} (control {self._ctrl:#x}, batch {self._batch_off:#x})")

    def read(self, offset: int) -> int:
        if offset == self._batch_off:
            return self.batch
        if offset != self._ctrl:
            raise RuntimeError(f"no register at offset {offset:#x}")
        self._sys.step()
        value = (drv.AP_START if self.started else drv.AP_IDLE) | (0x2 if self.done else 0)
        self.done = False  # ap_done clears on read
        return value


class SimulatedOverlay:
    """What `pynq.Overlay` gives the driver, for `--sim`: ip, dma, allocate, clocks."""

    def __init__(self, spec: drv.AcceleratorSpec, project: str | Path) -> None:
        from hwprune.backend.axis import build_axis
        from hwprune.backend.project_dir import ProjectDir

        self.spec = spec
        found = ProjectDir.find(project)
        if found is None:
            raise HwpruneInputError(f"--project: {ProjectDir.refusal(project)}")
        self.project = found.path
        build_axis(self.project)  # compile before any timing starts
        self.ip = SimIP(self, spec.registers)
        self.dma = SimDMA(self)
        self.allocate = sim_allocate
        self.clocks = SimClocks()
        self.batches = 0
        self.samples = 0
        self.timing = modelled_timing(self.project, spec)

    def step(self) -> None:
        """Advance the device: with the accelerator started and both transfers queued, run
        the batch the registers describe on exactly the words it would read."""
        ip, send, recv = self.ip, self.dma.sendchannel, self.dma.recvchannel
        if not ip.started or send.buffer is None or send.done or recv.buffer is None or recv.done or recv.error:
            return
        from hwprune.backend.axis import run_axis

        n = ip.batch
        need = n * self.spec.words_in
        sent = send.buffer.ddr.reshape(-1).view(np.uint64)[: send.nbytes // 8]
        if n < 1 or len(sent) < need:
            send.done, send.transferred = True, send.nbytes  # all sent; the accelerator waits for more
            return
        out, last = run_axis(self.project, sent[:need], n)
        # The words past what the batch reads stay in the MM2S stream: that channel never idles.
        send.done, send.transferred = len(sent) == need, need * 8
        ends = np.flatnonzero(last)
        packet = out[: ends[0] + 1] if ends.size else out
        capacity = recv.nbytes // 8
        if len(packet) > capacity:
            recv.error = True  # S2MM: a packet longer than the transfer length is an internal error
        else:
            recv.buffer.ddr.reshape(-1).view(np.uint64)[: len(packet)] = packet
            recv.done, recv.transferred = bool(ends.size), len(packet) * 8
        ip.started, ip.done = False, True
        self.batches += 1
        self.samples += n

    def batch_cycles(self, n: int) -> float:
        t = self.timing
        return t["latency_cycles"] + max(n - 1, 0) * t["interval_cycles"]


def modelled_timing(project: Path, spec: drv.AcceleratorSpec) -> dict[str, Any]:
    """Latency and interval of one sample through the AXI-Stream top: the network's (from the
    cycle-approximate simulator, hwprune.simulate) with the bus beats around it (one 64-bit beat
    per cycle in, one out)."""
    import hwprune

    r = hwprune.simulate(project, spec.board, batch=4)
    latency, interval = r.latency_cycles, r.interval_cycles
    return dict(source="hwprune.simulate", clock_mhz=spec.clock_mhz, network_latency_cycles=int(latency),
                network_interval_cycles=float(interval), words_in=spec.words_in, words_out=spec.words_out,
                latency_cycles=int(latency) + spec.words_in + spec.words_out,
                interval_cycles=float(max(interval, spec.words_in, spec.words_out, 1)))
