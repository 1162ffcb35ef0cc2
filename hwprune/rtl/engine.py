"""The RTL reference of the dense and balanced block-sparse engines (row- and column-balanced),
generated from an IR Dense layer, and the schedule both it and the cost model read.

Schedule (hls/hwprune/dense.h, dense_sparse.h): the layer is a matrix of Kp x N weights, Kp
inputs per output (dense: Kp = n_in; row-balanced sparse: Kp = per_bank * bc kept inputs, each
output with its own compile-time input list). Weight k = kk * N + o (output fastest) is served
by multiplier m = k // RF in cycle r = k % RF of a word; n_mult = ceil(Kp * N / RF).

Hardware (`verilog`): per multiplier a ROM of its RF weights (RF = 1: a constant, and
zero weights generate nothing), an input multiplexer over the inputs it reads in its RF cycles,
a product register. Multipliers m with equal m mod (N / gcd(RF, N)) form a *lane*: in every
cycle they all serve the same output, so a lane sums its products in a pipelined adder tree,
and the lane's sum always lands in the same slot of a ring of N accumulators that rotates by
one position per cycle (output o sits in slot (o - s) mod N at step s). No multiplexer on the
accumulator side: that is what the output-fastest order buys. At the end of a word the ring
holds output o in slot (o - RF) mod N; the outputs are rounded and saturated into the output
register and the ring reloads the biases. Stream: valid/ready on both sides; a word is taken
every RF cycles; latency = RF + tree depth + 1 cycles (`Schedule.depth`).

Column-balanced sparse (dense_sparse.h, column_balanced): the kept weights are served in block
order, k = ((bank * per_bank + t) * br + i) * bc + j, multiplier k // RF in cycle k % RF; weight
k reads input bank * bc + j and adds into output idx[bank][t] * br + i. Which output a product
goes to is then a table of the cycle (compile-time block indices), so there are no lanes: every
output has its own exact accumulator, adding in each cycle the products of the multipliers whose
table says that output in that cycle (the others are gated to zero). Latency RF + 3: operand
registers, products, accumulators, output register.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from hwprune.fixed import FixedType, Overflow, Rounding


@dataclass
class EngineSpec:
    """Everything the engine needs: raw integer weights in the (kk, o) matrix and the input
    each of them multiplies."""

    name: str  # a Verilog identifier
    n_in: int
    x_t: FixedType
    w_t: FixedType
    acc_t: FixedType
    out_t: FixedType
    weights: np.ndarray  # (Kp, N) raw weights
    in_idx: np.ndarray  # (Kp, N) input index of each weight
    bias: np.ndarray  # (N,) raw, at acc_t.frac
    rf: int
    dsp: bool = False  # map products to DSP slices (else fabric)
    kind: str = "dense"
    # Column-balanced: weights, in_idx and out_idx are 1-D, in the order they are served
    # (weight k: multiplier k // RF, cycle k % RF); None for the (Kp, N) output-fastest engines.
    out_idx: np.ndarray | None = None
    rom_bram: bool = False  # weight banks in dual-port block RAMs, two multipliers each (rom_impl "bram")
    # The output stage shared over the next word (output_stage "shared", as dense.h): the sums
    # go to hand-over registers and ceil(n_out / RF) requantizers round them over RF cycles.
    shared_output: bool = False

    @property
    def column(self) -> bool:
        return self.out_idx is not None

    @property
    def kp(self) -> int:
        return int(self.weights.shape[0])

    @property
    def n_out(self) -> int:
        return int(self.bias.shape[0]) if self.column else int(self.weights.shape[1])

    @property
    def served(self) -> int:
        """Weights served per word (padding excluded)."""
        return int(self.weights.size)

    @property
    def product_shift(self) -> int:
        """Left shift of a product (x.frac + w.frac) onto the accumulator's grid."""
        return self.acc_t.frac - (self.x_t.frac + self.w_t.frac)


@dataclass
class Schedule:
    spec: EngineSpec

    @cached_property
    def n_mult(self) -> int:
        return max(1, math.ceil(self.spec.served / self.spec.rf))

    @cached_property
    def lanes(self) -> int:
        n = self.spec.n_out
        return n // math.gcd(self.spec.rf, n)

    @cached_property
    def table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(n_mult, RF) arrays: weight (0 where padded), input index (-1 padded), valid."""
        s = self.spec
        rf, n = s.rf, s.n_out
        k = np.arange(self.n_mult * rf).reshape(self.n_mult, rf)
        valid = k < s.served
        if s.column:
            kc = np.where(valid, k, 0)
            w = np.where(valid, s.weights[kc], 0).astype(np.int64)
            return w, np.where(w != 0, s.in_idx[kc], -1).astype(np.int64), valid
        kc = np.where(valid, k, 0)
        kk, o = kc // n, kc % n
        w = np.where(valid, s.weights[kk, o], 0).astype(np.int64)
        idx = np.where(valid & (w != 0), s.in_idx[kk, o], -1).astype(np.int64)
        return w, idx, valid

    @cached_property
    def out_table(self) -> np.ndarray:
        """Column-balanced: (n_mult, RF) output each product adds into (-1: a zero weight)."""
        s = self.spec
        k = np.arange(self.n_mult * s.rf).reshape(self.n_mult, s.rf)
        w = self.table[0]
        return np.where(w != 0, s.out_idx[np.where(k < s.served, k, 0)], -1).astype(np.int64)

    @cached_property
    def out_candidates(self) -> list[list[int]]:
        """Column-balanced, per live multiplier: the distinct outputs its products go to."""
        return [sorted(set(int(o) for o in self.out_table[m] if o >= 0)) for m in self.live]

    @cached_property
    def live(self) -> np.ndarray:
        """Multipliers with at least one non-zero weight (the others generate nothing)."""
        return np.flatnonzero((self.table[0] != 0).any(axis=1))

    @cached_property
    def candidates(self) -> list[list[int]]:
        """Per live multiplier: the distinct inputs its input multiplexer chooses among."""
        idx = self.table[1]
        return [sorted(set(int(i) for i in idx[m] if i >= 0)) for m in self.live]

    @cached_property
    def lane_members(self) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in range(self.lanes)]
        for m in self.live:
            out[int(m) % self.lanes].append(int(m))
        return out

    def slot(self, lane: int) -> int:
        return (lane * self.spec.rf) % self.spec.n_out

    @cached_property
    def tree_levels(self) -> int:
        """Depth of the deepest lane's tree, counting every scheduled multiplier (a lane whose
        zero-weight multipliers were left out is delayed to it): the timing does not depend
        on the weight values. Column-balanced: none (an accumulator per output)."""
        if self.spec.column:
            return 0
        sizes = np.bincount(np.arange(self.n_mult) % self.lanes, minlength=self.lanes)
        return max((tree_depth(int(n)) for n in sizes), default=0)

    @property
    def depth(self) -> int:
        """Edges from taking the last input word to taking its output word, beyond the RF cycles:
        the operand registers, the product register, the tree levels, the ring and the
        output register."""
        return self.tree_levels + 3

    @cached_property
    def used_inputs(self) -> list[int]:
        return sorted({i for c in self.candidates for i in c})


def tree_depth(n: int) -> int:
    return int(math.ceil(math.log2(n))) if n > 1 else 0


def tree_widths(n: int, w: int, cap: int) -> list[list[int]]:
    """Register widths per level of the pipelined adder tree over n values of w bits:
    level 0 is the inputs; a pair adds into w+1 bits (at most cap), an odd one passes."""
    levels = [[w] * n]
    while len(levels[-1]) > 1:
        prev = levels[-1]
        nxt = [min(max(prev[i], prev[i + 1]) + 1, cap) for i in range(0, len(prev) - 1, 2)]
        if len(prev) % 2:
            nxt.append(prev[-1])
        levels.append(nxt)
    return levels


# ---------------------------------------------------------------------- from the IR

def spec_from_dense(layer, graph, name: str | None = None) -> EngineSpec:
    """The engine of a Dense layer (dense, row-balanced sparse: block, bbs, nm, or column-balanced block)."""
    from hwprune.ir.graph import c_identifier
    from hwprune.sim import resources as hw

    x_t = graph.tensor(layer.inputs[0]).type
    out_t = graph.tensor(layer.output).type
    w, b = layer._raw_weights()
    acc_t = layer.accum_t
    if getattr(layer, "capped", False) or acc_t.width > 62:
        # The engine accumulates exactly, in the layer's exact accumulator; a user's capped one
        # rounds and wraps per product (hwprune.ops.dense), which it does not model.
        raise NotImplementedError(f"the RTL reference covers exact accumulators of at most 62 bits, not {acc_t.cpp()}"
                                  + (" (capped by the precision config)" if getattr(layer, "capped", False) else ""))
    bias = np.asarray(b, dtype=np.int64) << (acc_t.frac - layer.bias_t.frac)
    sp = layer.sparsity
    n_in, n_out = layer.n_in, layer.n_out
    if sp is None:
        weights = np.asarray(w, dtype=np.int64)  # (K, N)
        in_idx = np.broadcast_to(np.arange(n_in)[:, None], (n_in, n_out)).copy()
        kind = "dense"
    else:
        kind = sp.pattern
        if sp.column_balanced:
            weights, in_idx, out_idx = column_balanced_order(sp, np.asarray(w, dtype=np.int64).T)
        else:
            weights, in_idx = row_balanced_matrix(sp, np.asarray(w, dtype=np.int64).T)
    dsp = hw.multiplier_dsps(x_t.width, layer.weight_t.width, "dsp48e1", getattr(layer, "mult_impl", "auto")) > 0
    return EngineSpec(name or c_identifier(layer.name, "hwp_dense"), n_in, x_t, layer.weight_t, acc_t, out_t,
                      weights, in_idx, bias, int(layer.reuse_factor), dsp, kind,
                      out_idx if sp is not None and sp.column_balanced else None,
                      bool(getattr(layer, "rom_in_bram", False)),
                      bool(layer.shares_output(graph)) if hasattr(layer, "shares_output") else False)


def column_balanced_order(sp, m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The kept weights of a column-balanced pattern in dense_sparse.h's storage (= serving)
    order, ((bank * per_bank + t) * br + i) * bc + j, with the input (bank * bc + j) and the
    output (idx[bank, t] * br + i) of each, from the (outputs, inputs) matrix m."""
    blocks, idx = sp.gather(m)  # (banks, per_bank, br, bc), (banks, per_bank)
    banks, per_bank, br, bc = blocks.shape
    shape = blocks.shape
    bank = np.arange(banks)[:, None, None, None]
    i = np.arange(br)[None, None, :, None]
    j = np.arange(bc)[None, None, None, :]
    inputs = np.broadcast_to(bank * bc + j, shape)
    outputs = np.broadcast_to(idx[:, :, None, None] * br + i, shape)
    return (blocks.reshape(-1).astype(np.int64), inputs.reshape(-1).astype(np.int64),
            outputs.reshape(-1).astype(np.int64))


def row_balanced_matrix(sp, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (Kp, N) kept weights and their inputs of a row-balanced pattern, from the
    (outputs, inputs) matrix m: output o of bank o // br reads, in kept-block order t and
    column j, input ((t // per_group) * group + idx[bank, t]) * bc + j."""
    blocks, idx = sp.gather(m)  # (banks, per_bank, br, bc), (banks, per_bank)
    banks, per_bank, br, bc = blocks.shape
    n = banks * br
    kp = per_bank * bc
    t = np.arange(per_bank)
    cb = (t // sp.per_group)[None, :] * sp.group + idx  # (banks, per_bank)
    inputs = cb[:, :, None] * bc + np.arange(bc)[None, None, :]  # (banks, per_bank, bc)
    weights = blocks.transpose(1, 3, 0, 2).reshape(kp, n)  # [t, j, bank, i] -> (kk, o)
    in_idx = np.repeat(inputs.transpose(1, 2, 0).reshape(kp, banks), br, axis=1)
    return weights.astype(np.int64), in_idx.astype(np.int64)


def reference(spec: EngineSpec, x: np.ndarray) -> np.ndarray:
    """What the engine computes, in numpy: (words, n_in) raw inputs -> (words, N) raw outputs."""
    from hwprune.fixed import requantize

    x = np.asarray(x, dtype=np.int64)
    acc = np.zeros((x.shape[0], spec.n_out), dtype=np.int64)
    if spec.column:
        for k in range(spec.served):
            acc[:, spec.out_idx[k]] += x[:, spec.in_idx[k]] * spec.weights[k]
    else:
        for kk in range(spec.kp):
            acc += x[:, spec.in_idx[kk]] * spec.weights[kk][None, :]
    acc = (acc << spec.product_shift) + spec.bias[None, :]
    return requantize(acc, spec.acc_t.frac, spec.out_t)


# ---------------------------------------------------------------------- Verilog

def _sv(value: int, width: int) -> str:
    """A signed Verilog literal of `width` bits (the two's-complement pattern: "-2'sd2" would
    be -(-2) in two bits)."""
    if not -(1 << (width - 1)) <= value < (1 << (width - 1)):
        raise ValueError(f"{value} does not fit {width} signed bits")
    return f"{width}'sh{value & ((1 << width) - 1):x}"


def requant_verilog(fn: str, acc_w: int, acc_frac: int, t: FixedType) -> str:
    """A Verilog function assigning an exact signed accumulator to type t (ap_fixed rounding,
    then overflow), as hwprune.fixed.requantize does."""
    shift = acc_frac - t.frac
    ow = t.width
    L = [f"    function [{ow - 1}:0] {fn};", f"        input signed [{acc_w - 1}:0] a;"]
    body: list[str] = []
    if shift > 0:
        e = max(acc_w, shift + 1) + 1  # a sign-extended so that every bit below is there
        qw = e - shift + 1
        L += [f"        reg signed [{e - 1}:0] ae;", f"        reg signed [{qw - 1}:0] q;", "        reg inc, half, rest, neg;"]
        body += [f"        ae = a;", f"        neg = ae[{e - 1}];", f"        q = ae >>> {shift};",
                 f"        half = ae[{shift - 1}];", f"        rest = {f'|ae[{shift - 2}:0]' if shift >= 2 else chr(49) + chr(39) + 'b0'};"]
        inc = {
            Rounding.TRN: "1'b0",
            Rounding.TRN_ZERO: "neg & (half | rest)",
            Rounding.RND: "half",
            Rounding.RND_MIN_INF: "half & rest",
            Rounding.RND_ZERO: "half & (rest | neg)",
            Rounding.RND_INF: "half & (rest | ~neg)",
            Rounding.RND_CONV: "half & (rest | q[0])",
        }[t.rounding]
        body += [f"        inc = {inc};", f"        q = q + $signed({{1'b0, inc}});"]
    else:
        qw = acc_w - shift
        L.append(f"        reg signed [{qw - 1}:0] q;")
        body.append(f"        q = a <<< {-shift};" if shift < 0 else "        q = a;")
    if t.overflow == Overflow.WRAP:
        body.append(f"        {fn} = q[{ow - 1}:0];")
    else:
        sym = t.overflow == Overflow.SAT_SYM and t.signed and t.width > 1
        lo, hi = t.min_raw, t.max_raw
        low = lo + 1 if sym else lo
        lw = max(qw, ow) + 66
        over, under = f"(q > {_sv(hi, lw)})", f"(q < {_sv(low, lw)})"
        if t.overflow == Overflow.SAT_ZERO:
            body.append(f"        {fn} = ({over} || {under}) ? {ow}'d0 : q[{ow - 1}:0];")
        else:
            mn = (-hi if sym else lo) & ((1 << ow) - 1)
            body.append(f"        {fn} = {over} ? {ow}'d{hi} : {under} ? {ow}'d{mn} : q[{ow - 1}:0];")
    return "\n".join(L + ["        begin"] + ["    " + b for b in body] + ["        end", "    endfunction"])


def verilog(spec: EngineSpec) -> str:
    """The engine as one Verilog module named spec.name."""
    s = Schedule(spec)
    rf, n, K = spec.rf, spec.n_out, spec.n_in
    xw, ww, aw, ow = spec.x_t.width, spec.w_t.width, spec.acc_t.width, spec.out_t.width
    pw = xw + ww
    w_tab, idx_tab, _ = s.table
    rw = max(1, math.ceil(math.log2(rf))) if rf > 1 else 1
    xs = "$signed({1'b0, %s})" if not spec.x_t.signed else "$signed(%s)"
    T = s.tree_levels
    L: list[str] = []
    a = L.append
    a(f"// Generated by hwprune.rtl.engine: {spec.kind} engine, {K} inputs x {n} outputs, RF {rf},")
    a(f"// {s.n_mult} multipliers ({len(s.live)} with non-zero weights), {s.lanes} lanes, tree depth {T}.")
    a(f"module {spec.name} (")
    a("    input clk, input rst,")
    a(f"    input in_valid, output in_ready, input [{K * xw - 1}:0] in_data,")
    a(f"    output reg out_valid, input out_ready, output reg [{n * ow - 1}:0] out_data);")
    a(requant_verilog("requant", aw, spec.acc_t.frac, spec.out_t))
    a("    wire en = !out_valid || out_ready;")
    a("    reg busy;")
    a(f"    reg [{rw - 1}:0] r;")
    a(f"    wire last = r == {rw}'d{rf - 1};")
    a("    assign in_ready = en && (!busy || last);")
    a("    wire take = in_valid && in_ready;")
    a(f"    wire [{rw - 1}:0] r_next = (busy && !last) ? r + {rw}'d1 : {rw}'d0;")
    a(f"    reg [{K * xw - 1}:0] x;")
    a("    always @(posedge clk) begin")
    a("        if (rst) begin busy <= 1'b0; r <= 0; end")
    a("        else if (en) begin")
    a("            if (take) x <= in_data;")
    a("            busy <= take ? 1'b1 : (busy && !last);")
    a("            r <= r_next;")
    a("        end")
    a("    end")
    # Pipeline valid / last bits: stage 0 = product registers, stages 1..T = tree levels.
    # Stage 0: operand registers (selected input, weight); 1: products; 2..T+1: tree levels.
    a(f"    reg [{T + 1}:0] v, vl;")
    a("    always @(posedge clk) begin")
    a("        if (rst) begin v <= 0; vl <= 0; end")
    a("        else if (en) begin")
    a(f"            v <= {{v[{T}:0], busy}}; vl <= {{vl[{T}:0], busy && last}};")
    a("        end")
    a("    end")
    # Multipliers.
    for j, m in enumerate(s.live):
        m = int(m)
        cands = s.candidates[j]
        c = len(cands)
        sel_of_r = [cands.index(int(i)) if i >= 0 else 0 for i in idx_tab[m]]
        if c == 1:
            a(f"    wire [{xw - 1}:0] xs{m} = x[{cands[0] * xw + xw - 1}:{cands[0] * xw}];")
        else:
            sb = max(1, math.ceil(math.log2(c)))
            if spec.kind == "dense":
                # Dense: the input index (m*RF + r) // N grows with r (dense.h computes it), so the
                # select counts the thresholds r has passed: comparators, not a table.
                n_o = spec.n_out
                firsts = [next(r for r in range(rf) if (m * rf + r) // n_o >= cand) for cand in cands[1:]]
                terms = " + ".join(f"(r >= {rw}'d{t})" for t in firsts)
                a(f"    wire [{sb - 1}:0] sel{m} = {sb}'d0 + {terms};")
            else:
                # Sparse: the kept blocks' inputs are a table of the cycle (the constant block
                # indices of dense_sparse.h).
                a(f"    reg [{sb - 1}:0] sel{m};")
                a("    always @* begin")
                a("        case (r)")
                for r, sv in enumerate(sel_of_r):
                    a(f"            {rw}'d{r}: sel{m} = {sb}'d{sv};")
                a(f"            default: sel{m} = {sb}'d0;")
                a("        endcase")
                a("    end")
            a(f"    reg [{xw - 1}:0] xs{m};")
            a("    always @* begin")
            a(f"        case (sel{m})")
            for ci, i in enumerate(cands):
                a(f"            {sb}'d{ci}: xs{m} = x[{i * xw + xw - 1}:{i * xw}];")
            a(f"            default: xs{m} = x[{cands[0] * xw + xw - 1}:{cands[0] * xw}];")
            a("        endcase")
            a("    end")
        if rf == 1:
            wexpr = _sv(int(w_tab[m, 0]), ww)
        elif spec.rom_bram:
            # Multipliers 2q and 2q+1 share one dual-port block RAM ROM of 2*RF words
            # (hwprune.ops.dense.bram_pair_banks): each reads its half through its own port.
            q = m // 2
            if m % 2 == 0 or (m - 1) not in s.live:
                a(f'    (* rom_style = "block" *) reg signed [{ww - 1}:0] wrom_pair{q} [0:{2 * rf - 1}];')
                a("    initial begin")
                for half in (0, 1):
                    mm = 2 * q + half
                    for r in range(rf):
                        v = int(w_tab[mm, r]) if mm < w_tab.shape[0] else 0
                        a(f"        wrom_pair{q}[{half * rf + r}] = {_sv(v, ww)};")
                a("    end")
            a(f"    reg signed [{ww - 1}:0] w{m};")
            a(f"    always @(posedge clk) if (en) w{m} <= wrom_pair{q}[{(m % 2) * rf} + r];")
            wexpr = f"w{m}"
        else:
            a(f"    reg signed [{ww - 1}:0] wrom{m} [0:{rf - 1}];")
            a("    initial begin")
            for r in range(rf):
                a(f"        wrom{m}[{r}] = {_sv(int(w_tab[m, r]), ww)};")
            a("    end")
            a(f"    reg signed [{ww - 1}:0] w{m};")
            a(f"    always @(posedge clk) if (en) w{m} <= wrom{m}[r];")
            wexpr = f"w{m}"
        a(f"    reg signed [{pw - 1}:0] p{m};")
        # The selected input is registered: a multiplexer merged into the multiplier's
        # partial products costs far more than the multiplexer alone.
        a(f"    reg [{xw - 1}:0] xr{m};")
        a(f"    always @(posedge clk) if (en) xr{m} <= xs{m};")
        a(f"    always @(posedge clk) if (en) p{m} <= {xs % f'xr{m}'} * {wexpr};")
    sh = spec.product_shift
    # Lane adder trees.
    lane_sum: dict[int, tuple[str, int]] = {}
    for q, members in enumerate([] if spec.column else s.lane_members):
        if not members:
            continue
        levels = tree_widths(len(members), pw, aw)
        names = [f"p{m}" for m in members]
        widths = levels[0]
        for lv in range(1, len(levels)):
            nxt, nw = [], levels[lv]
            for j in range(0, len(names) - 1, 2):
                nm = f"t{q}_{lv}_{j // 2}"
                a(f"    reg signed [{nw[j // 2] - 1}:0] {nm};")
                a(f"    always @(posedge clk) if (en) {nm} <= {names[j]} + {names[j + 1]};")
                nxt.append(nm)
            if len(names) % 2:
                nm = f"t{q}_{lv}_{len(nxt)}"
                a(f"    reg signed [{nw[-1] - 1}:0] {nm};")
                a(f"    always @(posedge clk) if (en) {nm} <= {names[-1]};")
                nxt.append(nm)
            names, widths = nxt, nw
        # Lanes shallower than the deepest one: delay registers.
        name, width = names[0], widths[0]
        for d in range(len(levels) - 1, T):
            nm = f"t{q}_d{d}"
            a(f"    reg signed [{width - 1}:0] {nm};")
            a(f"    always @(posedge clk) if (en) {nm} <= {name};")
            name = nm
        lane_sum[s.slot(q)] = (name, width)
    # The accumulator ring (column-balanced: the accumulators, in place).
    a(f"    reg signed [{aw - 1}:0] ring [0:{n - 1}];")
    a(f"    wire signed [{aw - 1}:0] nxt [0:{n - 1}];")
    if spec.column:
        _column_accumulators(a, spec, s, rw, pw)
    for p in ([] if spec.column else range(n)):
        src = (p + 1) % n
        if src in lane_sum:
            nm, wd = lane_sum[src]
            term = f"$signed({nm})" if sh == 0 else f"$signed({{{nm}, {sh}'b0}})"
            a(f"    assign nxt[{p}] = ring[{src}] + {term};")
        else:
            a(f"    assign nxt[{p}] = ring[{src}];")
    shared = spec.shared_output and rf > 1
    out_of = [p if spec.column else (p + rf) % n for p in range(n)]  # the output ring slot p holds at the end
    if shared:
        # Hand-over registers (by output) and out_lanes requantizers, lane j serving output
        # oc * lanes + j in cycle oc of the RF cycles after the word's sums are complete.
        lanes = -(-n // rf)
        for o in range(n):
            a(f"    reg signed [{aw - 1}:0] hand_o{o};")
        a("    reg ob;")
        a(f"    reg [{rw - 1}:0] oc;")
        for j in range(lanes):
            a(f"    reg signed [{aw - 1}:0] osel_q{j};")
            a("    always @* begin")
            a("        case (oc)")
            for c in range(-(-n // lanes)):
                if c * lanes + j < n:
                    a(f"            {rw}'d{c}: osel_q{j} = hand_o{c * lanes + j};")
            a(f"            default: osel_q{j} = {aw}'sd0;")
            a("        endcase")
            a("    end")
            a(f"    wire [{ow - 1}:0] oq{j} = requant(osel_q{j});")
    a("    integer i;")
    a("    always @(posedge clk) begin")
    a("        if (rst) begin")
    a("            out_valid <= 1'b0;")
    if shared:
        a("            ob <= 1'b0; oc <= 0;")
    for p in range(n):
        a(f"            ring[{p}] <= {_sv(int(spec.bias[p]), aw)};")
    a("        end else if (en) begin")
    a("            if (out_ready) out_valid <= 1'b0;")
    if shared:
        a("            if (ob) begin")
        for o in range(n):
            a(f"                if (oc == {rw}'d{o // lanes}) out_data[{o * ow + ow - 1}:{o * ow}] <= oq{o % lanes};")
        a(f"                if (oc == {rw}'d{rf - 1}) begin ob <= 1'b0; out_valid <= 1'b1; end")
        a(f"                oc <= oc + {rw}'d1;")
        a("            end")
    a(f"            if (v[{T + 1}]) begin")
    a(f"                if (vl[{T + 1}]) begin")
    for p in range(n):
        a(f"                    ring[{p}] <= {_sv(int(spec.bias[p]), aw)};")
    if shared:
        for p in range(n):
            a(f"                    hand_o{out_of[p]} <= nxt[{p}];")
        a(f"                    ob <= 1'b1; oc <= {rw}'d0;")
    else:
        for p in range(n):
            o = out_of[p]
            a(f"                    out_data[{o * ow + ow - 1}:{o * ow}] <= requant(nxt[{p}]);")
        a("                    out_valid <= 1'b1;")
    a("                end else begin")
    for p in range(n):
        a(f"                    ring[{p}] <= nxt[{p}];")
    a("                end")
    a("            end")
    a("        end")
    a("    end")
    a("endmodule")
    return "\n".join(L) + "\n"


def _column_accumulators(a, spec: EngineSpec, s: Schedule, rw: int, pw: int) -> None:
    """Column-balanced: nxt[o] = ring[o] + the products that go to output o in this cycle. The
    cycle counter is delayed by the operand and product registers so that the output table is
    read for the cycle the products were selected in."""
    n, aw, sh = spec.n_out, spec.acc_t.width, spec.product_shift
    a(f"    reg [{rw - 1}:0] rd0, rd1;")
    a("    always @(posedge clk) if (en) begin rd0 <= r; rd1 <= rd0; end")
    terms: list[list[str]] = [[] for _ in range(n)]
    for j, m in enumerate(s.live):
        m = int(m)
        outs = s.out_candidates[j]
        pm = f"p{m}" if sh == 0 else f"{{p{m}, {sh}'b0}}"
        pmw = pw + max(sh, 0)
        if len(outs) == 1:
            terms[outs[0]].append(f"$signed({pm})")
            continue
        sb = max(1, math.ceil(math.log2(len(outs))))
        a(f"    reg [{sb - 1}:0] osel{m};")
        a("    always @* begin")
        a("        case (rd1)")
        for r, o in enumerate(s.out_table[m]):
            a(f"            {rw}'d{r}: osel{m} = {sb}'d{outs.index(int(o)) if o >= 0 else 0};")
        a(f"            default: osel{m} = {sb}'d0;")
        a("        endcase")
        a("    end")
        for c, o in enumerate(outs):
            g = f"g{m}_{o}"
            a(f"    wire signed [{pmw - 1}:0] {g} = (osel{m} == {sb}'d{c}) ? $signed({pm}) : {pmw}'sd0;")
            terms[o].append(g)
    for o in range(n):
        a(f"    assign nxt[{o}] = " + " + ".join([f"ring[{o}]"] + terms[o]) + ";")
