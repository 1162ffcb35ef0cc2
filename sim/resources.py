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
# A fabric a x b multiplier needs about a*b/2 LUT6 (partial products plus adder tree).
LUT_PER_PARTIAL_PRODUCT = 0.55
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
    # Orient the wider operand on the wider port; tile beyond one slice.
    return float(math.ceil(big / pa) * math.ceil(small / pb)) if big > pa or small > pb else 1.0


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


def lut_per_multiplier(a_bits: int, b_bits: int) -> float:
    return LUT_PER_PARTIAL_PRODUCT * a_bits * b_bits


def lut_per_adder(bits: int) -> float:
    return float(bits)  # one LUT + carry chain per bit


def ff_per_register(bits: int) -> float:
    return float(bits)


def mux_luts(inputs: int, bits: int) -> float:
    """An N:1 multiplexer: a LUT6 selects 4:1 per bit; cascade for wider selections."""
    if inputs <= 1:
        return 0.0
    luts_per_bit = 0
    n = inputs
    while n > 1:
        stage = math.ceil(n / 4)
        luts_per_bit += stage
        n = stage
    return float(luts_per_bit * bits)


# Vitis HLS binds a stream's FIFO to shift registers (SRL) when it is shallow or small
# (config_storage fifo -impl autosrl defaults: depth <= 2 or depth*width <= 1024 bits; UG1399),
# to block RAM otherwise. One SRL32 LUT holds 32 entries of one bit.
FIFO_SRL_MAX_DEPTH = 2
FIFO_SRL_MAX_BITS = 1024
SRL_DEPTH = 32


def fifo_cost(depth: int, width: int) -> MemoryCost:
    """A stream FIFO of `depth` words of `width` bits."""
    if depth <= 0 or width <= 0:
        return MemoryCost()
    if depth <= FIFO_SRL_MAX_DEPTH or depth * width <= FIFO_SRL_MAX_BITS:
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
