"""Resources of the dense / row- and column-balanced sparse engine (hwprune.rtl.engine), counted from its
schedule with the measured primitives of sim/resources.py. The layer cost model of Dense uses
this, so the estimate and the RTL reference describe one circuit.

Vectorized over the (multipliers x RF) schedule table: fast enough for the budget search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from hwprune.fixed import Overflow, Rounding
from hwprune.sim import resources as hw
from hwprune.rtl.engine import tree_depth, tree_widths


ENGINE_CONTROL_LUTS_PER_OUTPUT = 9


@dataclass(frozen=True)
class EngineCost:
    lut: float
    ff: float
    dsp: float
    bram18: float
    uram: float
    multipliers: int  # scheduled (ceil(Kp * N / RF))
    live_multipliers: int  # with a non-zero weight
    depth: int  # cycles beyond RF per word (Schedule.depth)
    parts: dict  # LUT/FF breakdown


@lru_cache(maxsize=4096)
def _tree(n: int, w: int, cap: int) -> tuple[float, float, int]:
    """(adder LUTs, register FFs, levels) of a pipelined adder tree over n values of w bits."""
    from hwprune.rtl.engine import tree_widths

    levels = tree_widths(n, w, cap)
    lut = ff = 0.0
    for lv in range(1, len(levels)):
        prev, cur = levels[lv - 1], levels[lv]
        pairs = len(prev) // 2
        lut += sum(hw.lut_per_adder(cur[j]) for j in range(pairs))
        ff += sum(cur)
    return lut, ff, len(levels) - 1


def _distinct_per_row(a: np.ndarray) -> np.ndarray:
    """Distinct non-negative values in each row (-1 = don't care)."""
    if a.shape[1] == 1:
        return (a[:, 0] >= 0).astype(np.int64)
    s = np.sort(a, axis=1)
    new = np.empty_like(s, dtype=bool)
    new[:, 0] = s[:, 0] >= 0
    new[:, 1:] = (s[:, 1:] != s[:, :-1]) & (s[:, 1:] >= 0)
    return new.sum(axis=1)


def live_width(acc_w: int, acc_frac: int, out_t) -> int:
    if out_t.overflow != Overflow.WRAP:
        return acc_w
    return max(1, min(acc_w, out_t.width + acc_frac - out_t.frac))


def truncated_fraction(a: int, b: int, keep: int) -> float:
    """Share of an a x b multiplier's partial-product bits in its low `keep` result bits."""
    full = a * b
    drop = max(a + b - 1 - keep, 0)  # columns a+b-2 .. keep-1 of the a+b-1 partial-product columns
    cols = [min(c + 1, a, b, a + b - 1 - c) for c in range(a + b - 1)]
    return (full - sum(cols[len(cols) - drop:])) / full if drop else 1.0


def requant_luts(acc_w: int, acc_frac: int, t) -> float:
    """Rounding increment and saturation of one output (TRN + WRAP: wires only)."""
    shift = acc_frac - t.frac
    qw = (max(acc_w, shift + 1) + 2 - shift) if shift > 0 else acc_w - shift
    lut = 0.0
    # The increment and its sticky bits; the two comparisons of the bits above the output's and
    # a 3:1 choice per output bit. In an engine yosys spends 24-25 LUTs per output on
    # RND_CONV + SAT of an 17-18 bit accumulator to 8 bits (this says 26-27; alone, without
    # the ring adder in front of it, the same function takes only 9).
    if shift > 0 and t.rounding != Rounding.TRN:
        lut += hw.lut_per_adder(qw) + (math.ceil(shift / 6) if shift > 2 else 0)
    if t.overflow != Overflow.WRAP:
        lut += math.ceil(max(qw - t.width, 1) / 3) * 2 + t.width
    return lut


def engine_cost(weights: np.ndarray, in_idx: np.ndarray, rf: int, x_t, w_t, acc_t, out_t,
                dsp_each: float, product_shift: int = 0, select_table: bool = False,
                out_idx: np.ndarray | None = None, n_out: int = 0, rom_bram: bool = False,
                shared_output: bool = False) -> EngineCost:
    """weights/in_idx: (Kp, N) raw weights and their inputs (the EngineSpec matrices); or, for
    the column-balanced engine, 1-D in serving order with out_idx (the output of each) and
    n_out. rom_bram: the weight banks in dual-port block RAMs (rom_impl "bram"), whatever their
    size. shared_output: the output stage time-shared over the next word (output_stage
    "shared": dense.h / dense_sparse.h hand the sums over to registers and round ceil(n/RF) a
    cycle)."""
    column = out_idx is not None
    total = weights.size
    n = n_out if column else weights.shape[1]
    n_mult = max(1, math.ceil(total / rf))
    k = np.arange(n_mult * rf).reshape(n_mult, rf)
    valid = k < total
    kc = np.where(valid, k, 0)
    if column:
        w = np.where(valid, weights[kc], 0)
        nz = w != 0
        idx = np.where(nz, in_idx[kc], -1)
        outs = np.where(nz, out_idx[kc], -1)
    else:
        kk, o = kc // n, kc % n
        w = np.where(valid, weights[kk, o], 0)
        nz = w != 0
        idx = np.where(nz, in_idx[kk, o], -1)
    live = nz.any(axis=1)
    n_live = int(live.sum())
    xw, ww, aw, ow = x_t.width, w_t.width, acc_t.width, out_t.width
    # A wrapping output keeps the accumulator's bits up to its own msb: everything above only
    # feeds carries further up, so synthesis removes it (the tree, the ring, product bits).
    aw = live_width(aw, acc_t.frac, out_t)
    pw_full = xw + ww
    pw = max(1, min(pw_full, aw - max(product_shift, 0)))
    parts: dict[str, float] = {}
    # Weight bits that change over a multiplier's RF weights: the others are constants that
    # synthesis folds into the multiplier (RF 2: about half of them).
    wl = w[live]
    if rf > 1:
        if ww >= 64 and wl.dtype != object:  # a 64-bit weight is all of its int64's bits
            wu = wl.astype(np.int64).view(np.uint64)
        else:
            wu = wl & ((1 << ww) - 1)
        diff = np.bitwise_or.reduce(wu ^ wu[:, :1], axis=1)
        varying = np.array([bin(int(d)).count("1") for d in diff], dtype=np.int64)
    else:
        varying = np.zeros(wl.shape[0], dtype=np.int64)
    tree_pw = pw
    # Multipliers.
    if dsp_each:
        parts["mult"] = 0.0
    elif rf == 1:
        parts["mult"] = hw.const_mult_luts(w[nz], xw)
    else:
        eff, cnt = np.unique(np.minimum(varying + 0.5, ww), return_counts=True)
        parts["mult"] = float(sum(hw.lut_per_multiplier(xw, float(b), x_t.signed, True) * truncated_fraction(xw, int(math.ceil(b)), pw) * int(c)
                                  for b, c in zip(eff, cnt)))
    # Input multiplexers, and the decode of their select from the cycle counter. Sparse: the
    # kernels hold the choice as a table of RF words of ceil(log2 c) bits (dense_sparse.h: the
    # constant block indices, the RTL engine: a case over the counter, which yosys turns into a
    # ROM — logic, or block RAM past 8 Kbit). Dense: the input is arithmetic in the counter
    # (dense.h), ceil(log2 c) LUTs.
    cands = _distinct_per_row(idx)[live]
    vals, counts = np.unique(cands, return_counts=True)
    rw = max(1, math.ceil(math.log2(rf))) if rf > 1 else 0
    bram = uram = 0.0
    parts["xmux"] = 0.0
    for c, m in zip(vals, counts):
        if c <= 1:
            sel = hw.MemoryCost()
        elif select_table:
            sel = hw.rom_cost(rf, math.ceil(math.log2(c)))
        else:
            sel = hw.MemoryCost(lut=float(math.ceil(math.log2(c))))
        parts["xmux"] += (hw.mux_luts(int(c), xw) + sel.lut) * int(m)
        bram += sel.bram18 * int(m)
    # Weight ROMs (RF words per multiplier, registered output).
    ff_w = 0.0
    if rf > 1:
        if rom_bram:
            # Two multipliers' banks in one dual-port block RAM (2*RF words; hwprune.ops.dense
            # bram_pair_banks): a pair whose both multipliers are dead is removed with them.
            pairs = int(np.unique(np.flatnonzero(live) // 2).size)
            mem = hw.MemoryCost()
            bram += pairs * hw.bram18_for(2 * rf, ww)
        else:
            mem = hw.rom_cost(rf, ww)
            bram, uram = bram + n_live * mem.bram18, n_live * mem.uram
        parts["wrom"] = n_live * mem.lut
        # Registers of the ROM outputs: only the varying bits, and identical ones merge (with
        # RF words a bit is one of 2**RF - 2 functions of the cycle counter).
        ff_w = 0.0 if (mem.bram18 or rom_bram or dsp_each) else float(min(int(varying.sum()), 2 ** min(rf, 40) - 2))
    else:
        parts["wrom"] = 0.0
    # Lanes: pipelined adder trees, then one ring adder each (column-balanced: no lanes; an
    # accumulator per output adds the gated products of the multipliers that reach it).
    lanes = 1 if column else n // math.gcd(rf, n)
    sizes = np.bincount(np.flatnonzero(live) % lanes, minlength=lanes) if not column else np.zeros(1, dtype=np.int64)
    tree_lut = tree_ff = level1_ff = 0.0
    depth_levels = 0
    if rf == 1:
        # A product by a constant has the constant's significant bits only.
        # (In float: exact below 2**53, and a 64-bit weight's abs or bit count must not wrap.)
        a = np.abs(wl[:, 0].astype(np.float64))
        tz = np.zeros(a.shape, dtype=np.int64)
        odd = a.copy()
        while np.any((odd > 0) & (odd % 2 == 0)):
            even = (odd > 0) & (odd % 2 == 0)
            odd = np.where(even, odd // 2, odd)
            tz += even
        product_bits = np.minimum(xw + np.ceil(np.log2(odd + 1)).astype(np.int64), pw)
        tree_pw = int(round(float(product_bits.mean()))) if product_bits.size else pw
    svals, scounts = np.unique(sizes[sizes > 0], return_counts=True)
    for sz, c in zip(svals, scounts):
        tl, tf, lv = _tree(int(sz), tree_pw, aw)
        level1_ff += (sum(tree_widths(int(sz), tree_pw, aw)[1]) if sz > 1 else 0) * int(c)
        tree_lut += tl * int(c)
        tree_ff += tf * int(c)
        depth_levels = max(depth_levels, lv)
    # The timing counts every scheduled multiplier (Schedule.tree_levels); shallower lanes
    # are delayed to it.
    sched = np.bincount(np.arange(n_mult) % lanes, minlength=lanes)
    depth_levels = 0 if column else max((tree_depth(int(v)) for v in np.unique(sched)), default=0)
    # Delay registers of shallower lanes.
    for sz, c in zip(svals, scounts):
        lv = len(tree_widths(int(sz), tree_pw, aw)) - 1
        if lv < depth_levels:
            tree_ff += (depth_levels - lv) * tree_widths(int(sz), tree_pw, aw)[-1][0] * int(c)
    parts["tree"] = tree_lut
    busy_lanes = int((sizes > 0).sum())
    parts["ring"] = busy_lanes * hw.lut_per_adder(max(aw - max(product_shift, 0), 1))
    ff_rd = 0.0
    if column:
        parts["ring"], parts["osel"] = column_accumulate_luts(outs[live], n, aw, product_shift, rf)
        ff_rd = 2.0 * rw
    # Column-balanced, an output no kept block reaches is its bias: a constant, no hardware.
    n_acc = int(np.unique(outs[outs >= 0]).size) if column else n
    if shared_output and rf > 1:
        # ceil(n / RF) requantizers, each choosing among the hand-over registers of the
        # outputs it serves (output o in cycle o // lanes), and per output the load enable of
        # its output register (a compare of the cycle counter: one LUT).
        out_lanes = -(-n // rf)
        parts["requant"] = out_lanes * requant_luts(aw, acc_t.frac, out_t)
        parts["omux"] = out_lanes * hw.mux_luts(-(-n_acc // out_lanes), aw) + float(n_acc)
    else:
        parts["requant"] = n_acc * requant_luts(aw, acc_t.frac, out_t)
    # Counter, handshakes, stall enable, and per output the ring's load / hold / rotate
    # choice: measured as what remains of yosys's count over the benchmark engines once the
    # parts above are taken away (60-390 LUTs for 16 outputs; 60 for 8).
    parts["control"] = float(rw + 4 + ENGINE_CONTROL_LUTS_PER_OUTPUT * n_acc)
    lut = sum(parts.values())
    used_inputs = np.unique(idx[idx >= 0]).size
    if dsp_each:
        # The product register is the slice's MREG, and its output register takes the first
        # tree level (measured: yosys packs them into the DSP48).
        ff_product = 0.0
        tree_ff -= level1_ff
    elif rf == 1:
        ff_product = float(product_bits.sum())
    else:
        ff_product = float(n_live * pw)
    # Registered selected inputs: one per multiplier with a multiplexer; those reading one
    # fixed input share a register per input.
    single = _distinct_per_row(idx)[live] <= 1
    fixed_inputs = np.unique(idx[live][single].max(axis=1)).size if single.any() else 0
    ff_xs = float((int((~single).sum()) + fixed_inputs) * xw)
    ffp = {"x": float(used_inputs * xw), "xsel": ff_xs, "w": ff_w, "product": ff_product, "tree": tree_ff,
           "ring": float(n_acc * aw), "out": float(n_acc * ow),
           "handover": float(n_acc * aw) if shared_output and rf > 1 else 0.0, "control": float(rw + 2 * (depth_levels + 2) + 2 + ff_rd)}
    parts.update({f"ff_{k}": v for k, v in ffp.items()})
    return EngineCost(lut=lut, ff=sum(ffp.values()), dsp=n_live * dsp_each, bram18=bram, uram=uram,
                      multipliers=n_mult, live_multipliers=n_live, depth=depth_levels + 3, parts=parts)


def column_accumulate_luts(outs: np.ndarray, n: int, aw: int, product_shift: int, rf: int) -> tuple[float, float]:
    """Column-balanced accumulators: (adder LUTs, output-select LUTs). outs: (live multipliers,
    RF) output of each product (-1: none). Output o adds one gated product per multiplier that
    ever reaches it; a multiplier reaching c > 1 outputs decodes its choice from the cycle (a
    table of RF words of ceil(log2 c) bits, as the input select)."""
    width = max(aw - max(product_shift, 0), 1)
    adds = 0
    sel = 0.0
    for row in outs:
        c = np.unique(row[row >= 0]).size
        adds += c
        if c > 1:
            sel += hw.rom_cost(rf, math.ceil(math.log2(c))).lut
    return adds * hw.lut_per_adder(width), sel
