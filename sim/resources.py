"""Primitive FPGA costs that the per-op cost models compose (reasoning and sources in
docs/estimate_primitives.md). All figures are for one instance at the design clock."""

from __future__ import annotations

import math
from dataclasses import dataclass

# Vitis HLS maps a product to fabric when both operands are narrow; hls4ml's resource model
# makes the same call at 10 bits (below: LUTs, at or above: DSP). UG1399 "Arithmetic".
FABRIC_MULT_MAX_BITS = 9
# Signed multiplier port widths of one DSP slice (UG479 DSP48E1: 25x18; UG579 DSP48E2: 27x18).
DSP_PORTS = {"dsp48e1": (25, 18), "dsp48e2": (27, 18)}
DSP_PIECE_BITS = 17
# Fabric multipliers, measured (docs/estimate_primitives.md, yosys 0.23 `synth_xilinx -nodsp`,
# hwprune.sim.calibrate): LUTs of a signed a x b product, a >= b, on this grid of widths;
# bilinear in between, scaled by a*b beyond the grid.
MULT_LUT_GRID = (2, 3, 4, 6, 8, 10, 12, 16)
MULT_LUTS = {
    (2, 2): 5, (3, 2): 7, (3, 3): 9, (4, 2): 9, (4, 3): 12, (4, 4): 26,
    (6, 2): 13, (6, 3): 23, (6, 4): 42, (6, 6): 83,
    (8, 2): 17, (8, 3): 35, (8, 4): 61, (8, 6): 103, (8, 8): 166,
    (10, 2): 21, (10, 3): 47, (10, 4): 79, (10, 6): 123, (10, 8): 196, (10, 10): 254,
    (12, 2): 25, (12, 3): 59, (12, 4): 97, (12, 6): 143, (12, 8): 240, (12, 10): 300, (12, 12): 345,
    (16, 2): 33, (16, 3): 83, (16, 4): 133, (16, 6): 183, (16, 8): 310, (16, 10): 393, (16, 12): 452, (16, 16): 631,
}
# An unsigned operand saves the sign handling: measured 0.78-0.92 of the signed product with
# one unsigned operand, 0.69-0.85 with two.
UNSIGNED_MULT_FACTOR = {0: 1.0, 1: 0.82, 2: 0.78}
# Kept for callers that scale by partial products (the measured 8x8 is 2.6 LUTs per a*b).
LUT_PER_PARTIAL_PRODUCT = 166 / 64
# BRAM18 configurations usable as simple dual port ROM/RAM (depth, width): UG473/UG573.
BRAM18_SHAPES = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))
# Vitis HLS keeps small arrays in LUTRAM/registers (config_storage default threshold ~1 Kbit).
LUTRAM_MAX_BITS = 1024
LUTRAM_BITS_PER_LUT = 64  # a LUT6 as 64x1 distributed ROM
# One URAM block: 4K x 72 bits (UG573).
URAM_DEPTH, URAM_WIDTH = 4096, 72
URAM_MIN_BITS = 128 * 1024  # only large memories go to URAM


@dataclass(frozen=True)
class MemoryCost:
    bram18: float = 0.0
    uram: float = 0.0
    lut: float = 0.0


def dsps_per_multiplier(a_bits: int, b_bits: int, dsp_kind: str, a_signed: bool = True, b_signed: bool = True) -> float:
    if max(a_bits, b_bits) <= FABRIC_MULT_MAX_BITS:
        return 0.0
    pa, pb = DSP_PORTS.get(dsp_kind, DSP_PORTS["dsp48e1"])
    # An unsigned operand needs one more bit on the signed ports.
    a = a_bits + (0 if a_signed else 1)
    b = b_bits + (0 if b_signed else 1)
    big, small = max(a, b), min(a, b)
    # The wider operand on the wider port; an operand beyond its port is cut into 17-bit
    # unsigned pieces (+ the signed top), one slice per pair of pieces: measured with yosys
    # (26x18: 2, 35x25: 4, 48x48: 9 on both families).
    na = 1 if big <= pa else math.ceil((big - 1) / DSP_PIECE_BITS)
    nb = 1 if small <= pb else math.ceil((small - 1) / DSP_PIECE_BITS)
    return float(na * nb)


MULT_IMPL_CODES = {"auto": 0, "dsp": 1, "fabric": 2}  # CFG::mult_impl in the kernels


def multiplier_dsps(a_bits: int, b_bits: int, dsp_kind: str, impl: str = "auto") -> float:
    """DSP slices of one multiplier under a binding choice: "auto" follows the tool's width
    rule (dsps_per_multiplier), "dsp" forces slices even for narrow operands (BIND_OP
    impl=dsp; one slice covers an 8x8 product), "fabric" forces LUTs."""
    if impl == "fabric":
        return 0.0
    if impl == "dsp":
        return max(1.0, dsps_per_multiplier(max(a_bits, FABRIC_MULT_MAX_BITS + 1), b_bits, dsp_kind))
    return dsps_per_multiplier(a_bits, b_bits, dsp_kind)


def _grid_pos(v: float) -> tuple[int, int, float]:
    g = MULT_LUT_GRID
    v = min(max(v, g[0]), g[-1])
    for lo, hi in zip(g, g[1:]):
        if v <= hi:
            return lo, hi, (v - lo) / (hi - lo)
    return g[-1], g[-1], 0.0


def _mult_table(a: int, b: int) -> float:
    a, b = max(a, b), min(a, b)
    return float(MULT_LUTS[(a, b)] if (a, b) in MULT_LUTS else MULT_LUTS[(b, a)])


def lut_per_multiplier(a_bits: int, b_bits: int, a_signed: bool = True, b_signed: bool = True) -> float:
    """LUTs of a fabric a x b multiplier (the measured table, interpolated)."""
    a, b = max(float(a_bits), 1.0), max(float(b_bits), 1.0)  # fractional: an average width
    if min(a, b) <= 1:
        return float(max(a, b))  # a 1-bit operand: AND gates
    ca, cb = min(a, MULT_LUT_GRID[-1]), min(b, MULT_LUT_GRID[-1])
    a0, a1, fa = _grid_pos(ca)
    b0, b1, fb = _grid_pos(cb)
    v = ((1 - fa) * (1 - fb) * _mult_table(a0, b0) + fa * (1 - fb) * _mult_table(a1, b0)
         + (1 - fa) * fb * _mult_table(a0, b1) + fa * fb * _mult_table(a1, b1))
    v *= (a * b) / (ca * cb)
    return v * UNSIGNED_MULT_FACTOR[(not a_signed) + (not b_signed)]


def odd_width(value: int) -> int:
    """Bits of the odd part of |value| (0 for zero; 1 for powers of two)."""
    v = abs(int(value))
    if v == 0:
        return 0
    while not v & 1:
        v >>= 1
    return v.bit_length()


# x (8 or 16 bits) times a constant whose odd part has e bits, measured (yosys does not
# recode constants: 127 costs as much as 109): LUTs by e.
CONST_MULT_LUTS = {8: {1: 0.0, 2: 14.0, 3: 14.5, 6: 32.5, 7: 33.7}, 16: {1: 0.0, 2: 30.0, 3: 30.5, 6: 102.5, 7: 104.0}}


def _const_lut(a: int, e: int) -> float:
    t = CONST_MULT_LUTS[a]
    if e in t:
        return t[e]
    if e > 7:
        return t[7] * e / 7
    lo = max(k for k in t if k < e)
    hi = min(k for k in t if k > e)
    return t[lo] + (t[hi] - t[lo]) * (e - lo) / (hi - lo)


def lut_per_const_multiplier(value: int, x_bits: int) -> float:
    """x (x_bits wide) times a constant (reuse factor 1 folds the weights into the logic):
    zero and powers of two cost nothing; otherwise the measured table by the width of the
    constant's odd part, interpolated between 8- and 16-bit x and scaled beyond."""
    e = odd_width(value)
    if e <= 1:
        return 0.0
    a = max(int(x_bits), 1)
    if a <= 8:
        return _const_lut(8, e) * a / 8
    if a >= 16:
        return _const_lut(16, e) * a / 16
    f = (a - 8) / 8
    return (1 - f) * _const_lut(8, e) + f * _const_lut(16, e)


def lut_per_adder(bits: int) -> float:
    return float(bits)  # one LUT + carry chain per bit (measured: exactly n for 4..48 bits)


def ff_per_register(bits: int) -> float:
    return float(bits)


def const_mult_luts(weights, x_bits: int) -> float:
    """Total LUTs of x times each of `weights` (raw integers), RF = 1."""
    import numpy as np

    w = np.asarray(weights).reshape(-1)
    vals, counts = np.unique(w[w != 0], return_counts=True)
    return float(sum(lut_per_const_multiplier(int(v), x_bits) * int(c) for v, c in zip(vals, counts)))


# N:1 multiplexers, measured LUTs per bit at powers of two (a LUT6 is a 4:1 mux, MUXF7/F8
# combine them up to 16:1; beyond, yosys cascades): N in between costs as the next power of two.
MUX_LUTS_PER_BIT = {2: 1.0, 4: 1.0, 8: 3.0, 16: 5.75, 32: 12.9, 64: 25.5, 128: 57.6}


def mux_luts(inputs: int, bits: int) -> float:
    """An N:1 multiplexer of `bits`-bit words."""
    if inputs <= 1 or bits <= 0:
        return 0.0
    p = 1 << (int(inputs) - 1).bit_length()
    per_bit = MUX_LUTS_PER_BIT[p] if p in MUX_LUTS_PER_BIT else MUX_LUTS_PER_BIT[128] * p / 128
    return float(per_bit * bits)


# Vitis HLS binds a stream's FIFO to shift registers (SRL) when it is shallow or small
# (config_storage fifo -impl autosrl defaults: depth <= 2 or depth*width <= 1024 bits; UG1399),
# to block RAM otherwise. One SRL32 LUT holds 32 entries of one bit.
FIFO_SRL_MAX_DEPTH = 2
FIFO_SRL_MAX_BITS = 1024
SRL_DEPTH = 32


FIFO_IMPLS = ("auto", "srl", "bram")


def fifo_cost(depth: int, width: int, impl: str = "auto") -> MemoryCost:
    """A stream FIFO of `depth` words of `width` bits, stored as Vitis HLS decides ("auto") or
    as bound: "srl" (shift registers, one SRL32 LUT per bit and 32 entries), "bram"."""
    if depth <= 0 or width <= 0:
        return MemoryCost()
    if impl not in FIFO_IMPLS:
        raise ValueError(f"FIFO storage {impl!r} is not one of {', '.join(FIFO_IMPLS)}")
    srl = depth <= FIFO_SRL_MAX_DEPTH or depth * width <= FIFO_SRL_MAX_BITS
    if impl == "srl" or (impl == "auto" and srl):
        return MemoryCost(lut=float(math.ceil(depth / SRL_DEPTH) * width))
    return MemoryCost(bram18=float(bram18_for(depth, width)))


def bram18_for(depth: int, width: int) -> int:
    best = None
    for d, w in BRAM18_SHAPES:
        n = math.ceil(depth / d) * math.ceil(width / w)
        best = n if best is None else min(best, n)
    return int(best or 0)


def memory_cost(depth: int, width: int, partitions: int = 1, allow_uram: bool = False) -> MemoryCost:
    """`partitions` independent banks together holding depth x width bits."""
    if depth <= 0 or width <= 0:
        return MemoryCost()
    partitions = max(1, partitions)
    bank_depth = math.ceil(depth / partitions)
    bank_bits = bank_depth * width
    if bank_bits <= LUTRAM_MAX_BITS:
        return MemoryCost(lut=partitions * math.ceil(bank_bits / LUTRAM_BITS_PER_LUT))
    if allow_uram and bank_bits >= URAM_MIN_BITS:
        n = math.ceil(bank_depth / URAM_DEPTH) * math.ceil(width / URAM_WIDTH)
        return MemoryCost(uram=float(partitions * n))
    return MemoryCost(bram18=float(partitions * bram18_for(bank_depth, width)))


def rom_cost(depth: int, width: int) -> MemoryCost:
    """A ROM of depth x width with a registered output (a weight bank of the dense engines).
    Measured with yosys (docs/estimate_primitives.md): up to ROM_LUT_MAX_BITS it is logic,
    ROM_LUTS_PER_BIT LUT6 per output bit by depth (MUXF7/F8 join deeper ones); beyond, the
    cheapest BRAM18 shape."""
    if depth <= 0 or width <= 0:
        return MemoryCost()
    if depth * width <= ROM_LUT_MAX_BITS:
        d = 1 << (int(depth) - 1).bit_length()
        per_bit = ROM_LUTS_PER_BIT[d] if d in ROM_LUTS_PER_BIT else ROM_LUTS_PER_BIT[1024] * d / 1024
        return MemoryCost(lut=float(width * per_bit))
    return MemoryCost(bram18=float(bram18_for(depth, width)))


# Measured (random contents, registered output): a bit of a 2-word ROM is a constant or the
# address; 64 words fill one LUT6; 1024x8 is still logic, 2048x8 and 512x18 one BRAM18.
ROM_LUT_MAX_BITS = 8192
ROM_LUTS_PER_BIT = {1: 0.0, 2: 0.0, 4: 0.125, 8: 0.875, 16: 1.0, 32: 1.0, 64: 1.0, 128: 2.0, 256: 4.0, 512: 9.0,
                    1024: 21.625}


def lut_per_max(bits: int) -> float:
    """max(a, b): a comparator and a 2:1 multiplexer per bit (measured 14, 28, 54 LUTs at 8,
    16, 32 bits)."""
    return float(round(1.75 * bits))
