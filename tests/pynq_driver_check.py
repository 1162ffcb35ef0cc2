"""Runs INSIDE a virtualenv holding the real pynq package (never hwprune's own environment:
pynq pins an old protobuf that breaks onnx). Used by tests/test_pynq_real.py.

    python pynq_driver_check.py PKG_DIR CASE.npz DMA_PARAMETERS.json

It loads the deployment package's driver (hwprune_driver.py, which imports pynq) and checks,
against the installed pynq:

1. every pynq name and signature the driver uses (pynq.Overlay, pynq.allocate, pynq.Clocks
   .fclk0_mhz, the DMA channels' transfer/wait/idle/error/transferred, the buffers'
   flush/invalidate/freebuffer, DefaultIP.read/write);
2. the board path end to end on a fake board: a `pynq.Device` with the REGISTER_RW capability
   (pynq routes every MMIO access of its own drivers to it) that models the Zynq SLCR clock
   registers, the AXI DMA in simple mode, the accelerator's AXI-Lite registers and a DDR that
   only sees what the CPU flushed (buffers are not coherent, as on the board). The driver's
   `HwpruneOverlay` runs with pynq's real `allocate`, `Clocks`, `DefaultIP` and `DMA` (built
   from the DMA configuration of the generated block design); only `Overlay.__init__` (which
   needs a bitstream's .hwh and a board to download it to) is replaced, after checking that the
   driver's call binds to its real signature. The fake accelerator answers with the words the
   project's AXI-Stream C simulation produced for the same input words.

Prints one JSON line: {"pynq": version, "checks": {name: "ok" | error}}; exit 1 if any failed.
"""

from __future__ import annotations

import ctypes
import importlib
import inspect
import json
import sys
import traceback
import warnings
from pathlib import Path

import numpy as np

ACCEL_BASE, DMA_BASE, SLCR_BASE = 0x43C0_0000, 0x4040_0000, 0xF800_0000
RANGE = 0x1_0000
AP_START, AP_DONE, AP_IDLE = 0x1, 0x2, 0x4


def main() -> int:
    pkg, case_path, params_path = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    warnings.simplefilter("ignore")
    import pynq
    import pynq.buffer
    import pynq.lib.dma  # the DMA driver pynq binds to xilinx.com:ip:axi_dma:7.1
    import pynq.ps

    checks: dict[str, str] = {}

    def check(name, fn):
        try:
            fn()
            checks[name] = "ok"
        except Exception as e:  # reported, every check runs
            checks[name] = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=4)}"

    sys.path.insert(0, str(pkg))
    drv = importlib.import_module("hwprune_driver")
    case = np.load(case_path)
    params = json.loads(params_path.read_text())
    Fake = fake_device_class(pynq)

    def names_exist():
        assert drv._pynq is pynq, "the driver did not import the installed pynq"
        for name in ("Overlay", "allocate", "Clocks", "DefaultIP", "Device"):
            assert hasattr(pynq, name), f"pynq.{name} is missing"
        assert issubclass(drv.HwpruneOverlay, pynq.Overlay)
        assert "xilinx.com:ip:axi_dma:7.1" in pynq.lib.dma.DMA.bindto

    def signatures():
        inspect.signature(pynq.Overlay.__init__).bind(object(), "design.bit")  # super().__init__(str(bit), **kwargs)
        inspect.signature(pynq.allocate).bind(shape=(8,), dtype=np.uint64)
        prop = getattr(type(pynq.Clocks), "fclk0_mhz", None)
        assert isinstance(prop, property) and prop.fget and prop.fset, "pynq.Clocks.fclk0_mhz is not a settable property"
        ch = pynq.lib.dma._SDMAChannel
        inspect.signature(ch.transfer).bind(object(), object())
        inspect.signature(ch.wait).bind(object())
        for attr in ("idle", "error"):
            assert isinstance(getattr(ch, attr), property), f"DMA channel .{attr} is not a property"
        buf = pynq.buffer.PynqBuffer
        for m in ("flush", "invalidate", "freebuffer"):
            inspect.signature(getattr(buf, m)).bind(object())
        inspect.signature(pynq.DefaultIP.read).bind(object(), 0x10)
        inspect.signature(pynq.DefaultIP.write).bind(object(), 0x10, 5)

    check("names", names_exist)
    check("signatures", signatures)

    def board_path():
        dev = Fake(case)
        pynq.Device.active_device = dev  # pynq.allocate(), MMIO and Clocks use it
        if hasattr(pynq.Clocks, "set_device"):
            pynq.Clocks.set_device(dev)
        pynq.ps.CPU_ARCH = "armv7l"  # pynq 3.0 picks the clock registers by the CPU it runs on
        ip = pynq.DefaultIP(dict(phys_addr=ACCEL_BASE, addr_range=RANGE, device=dev, interrupts={}, gpio={}))
        dma = pynq.lib.dma.DMA(dict(phys_addr=DMA_BASE, addr_range=RANGE, device=dev, interrupts={}, gpio={},
                                    parameters=params))
        assert type(dma.sendchannel).__name__ == "_SDMAChannel" and type(dma.recvchannel).__name__ == "_SDMAChannel", \
            "the block design's DMA is to be in simple mode"
        spec = drv.AcceleratorSpec.load(pkg)
        accel_cell, dma_cell = spec.overlay["accel"], spec.overlay["dma"]
        assert abs(float(pynq.Clocks.fclk0_mhz) - 50.0) < 1e-6, "the fake board starts at 50 MHz"
        real_init = pynq.Overlay.__init__
        calls = []

        def fake_init(self, *args, **kwargs):
            inspect.signature(real_init).bind(self, *args, **kwargs)
            calls.append(args)
            setattr(self, accel_cell, ip)
            setattr(self, dma_cell, dma)

        pynq.Overlay.__init__ = fake_init
        try:
            ov = drv.HwpruneOverlay(str(pkg), max_batch=int(case["max_batch"]))
        finally:
            pynq.Overlay.__init__ = real_init
        assert calls and calls[0][0] == str(pkg / spec.overlay["bitfile"]), calls
        want_mhz = spec.clock_mhz
        assert abs(float(pynq.Clocks.fclk0_mhz) - want_mhz) < 1e-6, (pynq.Clocks.fclk0_mhz, want_mhz)
        assert ov.accelerator.clock_mhz is not None and abs(ov.accelerator.clock_mhz - want_mhz) < 1e-6
        xs = [case[f"x{k}"] for k in range(int(case["n_inputs"]))]
        ys = ov.run(xs)
        for k, y in enumerate(ys):
            np.testing.assert_array_equal(y, case[f"y{k}"], err_msg=f"output {k} differs from the C simulation")
        raws = ov.accelerator.run_raw([case[f"raw_in{k}"] for k in range(int(case["n_inputs"]))])
        for k, r in enumerate(raws):
            np.testing.assert_array_equal(r, case[f"raw_out{k}"], err_msg=f"raw output {k} differs")
        if len(xs) == 1 and len(ys) == 1:
            np.testing.assert_array_equal(ov.predict(xs[0]), case["y0"])
        n = xs[0].shape[0]
        chunks = -(-n // int(case["max_batch"]))
        assert dev.batches == 2 * chunks + (chunks if len(xs) == 1 and len(ys) == 1 else 0), dev.batches
        assert dev.flushes >= dev.batches and dev.invalidates >= dev.batches, (dev.flushes, dev.invalidates)
        ov.accelerator.close()

    check("board path on a fake device", board_path)
    print(json.dumps(dict(pynq=pynq.__version__, checks=checks)))
    return 0 if all(v == "ok" for v in checks.values()) else 1


def fake_device_class(pynq):
    class FakeBoard(pynq.Device):
        """A pynq-z2 as pynq's drivers see it, register by register."""

        def __init__(self, case):
            super().__init__("fake-pynq-z2")
            self.capabilities = {"REGISTER_RW": True}
            self.arch = "armv7l"
            self.regs: dict[int, int] = {}
            # 50 MHz reference, IO PLL 1000 MHz; FCLK0 left at 50 MHz (not the design's): the driver must set it.
            slcr = {0x100: 26 << 12, 0x104: 21 << 12, 0x108: 20 << 12, 0x120: 2 << 8,
                    0x170: (2 << 20) | (10 << 8), 0x180: (2 << 20) | (5 << 8), 0x190: (2 << 20) | (5 << 8),
                    0x1A0: (2 << 20) | (5 << 8)}
            for off, v in slcr.items():
                self.regs[SLCR_BASE + off] = v
            self.regs[DMA_BASE + 0x04] = 0x1  # MM2S halted
            self.regs[DMA_BASE + 0x34] = 0x1  # S2MM halted
            self.ddr: dict[int, np.ndarray] = {}  # physical address -> what the memory holds
            self.next_phys = 0x1000_0000
            self.words_in = case["words_in"].astype(np.uint64)
            self.words_out = case["words_out"].astype(np.uint64)
            self.mm2s = self.s2mm = None
            self.started = self.done = False
            self.batches = self.flushes = self.invalidates = 0

        # ---- memory: buffers are not coherent; the DDR sees only what was flushed
        def allocate(self, shape, dtype, **kwargs):
            buf = pynq.buffer.PynqBuffer(shape, dtype, device=self, device_address=self.next_phys, bo=self.next_phys,
                                         coherent=False)
            self.ddr[self.next_phys] = np.full(buf.nbytes, 0xA5, dtype=np.uint8)  # garbage until flushed
            self.next_phys += (buf.nbytes + 0xFFF) & ~0xFFF
            return buf

        def flush(self, bo, offset, vaddr, nbytes):
            self.flushes += 1
            ctypes.memmove(self.ddr[bo].ctypes.data + offset, vaddr, nbytes)

        def invalidate(self, bo, offset, vaddr, nbytes):
            self.invalidates += 1
            ctypes.memmove(vaddr, self.ddr[bo].ctypes.data + offset, nbytes)

        def _mem(self, addr, nbytes):
            for base, mem in self.ddr.items():
                if base <= addr and addr + nbytes <= base + mem.size:
                    return mem[addr - base: addr - base + nbytes]
            raise RuntimeError(f"DMA access outside any allocated buffer: 0x{addr:x}+{nbytes}")

        # ---- registers (pynq.MMIO calls these for REGISTER_RW devices)
        def read_registers(self, address, length):
            if address == ACCEL_BASE:
                v = (0 if self.started else AP_IDLE) | (AP_DONE if self.done else 0)
                self.done = False  # clear on read
            else:
                v = self.regs.get(address, 0)
            return int(v).to_bytes(length, "little")

        def write_registers(self, address, data):
            v = int.from_bytes(bytes(data), "little")
            self.regs[address] = v
            off = address - DMA_BASE
            if off in (0x00, 0x30):  # DMACR: run/stop -> DMASR halted bit
                sr = DMA_BASE + off + 0x04
                self.regs[sr] = (self.regs.get(sr, 0) & ~0x1) | (0 if v & 1 else 1)
            elif off == 0x28:  # MM2S_LENGTH starts the read of memory
                self.mm2s = (self.regs.get(DMA_BASE + 0x18, 0) | (self.regs.get(DMA_BASE + 0x1C, 0) << 32), v)
                self.regs[DMA_BASE + 0x04] &= ~0x2
            elif off == 0x58:  # S2MM_LENGTH arms the write to memory
                self.s2mm = (self.regs.get(DMA_BASE + 0x48, 0) | (self.regs.get(DMA_BASE + 0x4C, 0) << 32), v)
                self.regs[DMA_BASE + 0x34] &= ~0x2
            elif address == ACCEL_BASE and v & AP_START:
                self.started = True
            self._step()

        def _step(self):
            """With the accelerator started and both transfers armed: run the batch on the words
            in memory, as the hardware would."""
            if not (self.started and self.mm2s and self.s2mm):
                return
            n = self.regs.get(ACCEL_BASE + 0x10, 0)
            (src, nin), (dst, nout) = self.mm2s, self.s2mm
            wi, wo = self.words_in.shape[1], self.words_out.shape[1]
            if nin != n * wi * 8:
                raise RuntimeError(f"MM2S length {nin} bytes for a batch of {n} ({wi} words per sample)")
            words = self._mem(src, nin).view(np.uint64).reshape(n, wi)
            out = np.empty((n, wo), dtype=np.uint64)
            for i, row in enumerate(words):
                hit = np.flatnonzero(np.all(self.words_in == row, axis=1))
                if hit.size == 0:
                    raise RuntimeError(f"sample {i} of the batch is not an input of the case (stale cache or bad packing?)")
                out[i] = self.words_out[hit[0]]
            if nout < out.nbytes:
                raise RuntimeError(f"S2MM buffer of {nout} bytes for {out.nbytes} bytes of output")
            self._mem(dst, out.nbytes)[:] = out.view(np.uint8).reshape(-1)
            self.regs[DMA_BASE + 0x58] = out.nbytes  # bytes actually received (TLAST on the last beat)
            self.regs[DMA_BASE + 0x04] |= 0x2  # idle
            self.regs[DMA_BASE + 0x34] |= 0x2
            self.mm2s = self.s2mm = None
            self.started, self.done = False, True
            self.batches += 1

    return FakeBoard


if __name__ == "__main__":
    sys.exit(main())
