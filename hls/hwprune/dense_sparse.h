// Balanced block-sparse dense layer: only the kept br x bc weight blocks are stored, each with
// a small index; every bank (a row of blocks, or a column when column-balanced) holds exactly
// per_bank blocks, so the work splits evenly over the multipliers and no cycle is spent on a
// pruned block. Row-balanced: block t of bank rb reads inputs from block-column
//   (t / per_group) * group + idx[rb][t];
// column-balanced: block t of bank cb adds into block-row idx[cb][t].
// Schedule as dense.h: n_mult = ceil(kept / RF) multipliers, RF cycles per word; row-balanced
// kept weights are served output fastest, as in dense.h.
// ROMs (hwprune.ops.dense.dense_memories): the kept weights, stored in the order they are
// served, padded to n_mult*RF and block-partitioned into a bank per multiplier (w[k] is read by
// multiplier k / RF in cycle k % RF). Block indices: row-balanced, one cycle's multipliers read
// blocks all over the ROM, so it is partitioned completely (idx_banks = idx_words): constants,
// each multiplier's input choice a function of the cycle alone (compile-time block indices);
// column-balanced (block order), idx_banks banks of B = max(1, RF / (br*bc)) indices, so in any
// cycle the multipliers read distinct banks.
#ifndef HWP_DENSE_SPARSE_H
#define HWP_DENSE_SPARSE_H

#include "common.h"

namespace hwp {

// The biases into the accumulators (the start of every word).
template <class CFG>
void dense_sparse_bias(typename CFG::accum_t acc[CFG::n_out], const typename CFG::bias_rom_t b[CFG::n_out]) {
#pragma HLS INLINE
SparseInit:
    for (int o = 0; o < CFG::n_out; o++) {
#pragma HLS UNROLL
        acc[o] = cast<typename CFG::accum_t>(from_raw<typename CFG::bias_t>(b[o]));
    }
}

// Cycle r of the reuse schedule.
// Row-balanced: kept weight k = kk * n_out + o (output fastest, as dense.h; kk runs over the
// per_bank * bc inputs every output keeps) is served by multiplier k / RF in cycle k % RF;
// the multipliers with equal m mod (n_out / gcd(RF, n_out)) then serve one output per
// cycle (the lanes of the RTL reference, hwprune.rtl.engine). Column-balanced: storage order
// ((bank * per_bank + t) * br + i) * bc + j. The accumulators are exact, so the order of
// the products does not change the result.
template <class CFG, class in_T>
void dense_sparse_mac(const in_T x[CFG::n_in], typename CFG::accum_t acc[CFG::n_out],
                      const typename CFG::weight_rom_t w[CFG::w_words],
                      const typename CFG::index_rom_t idx[CFG::idx_words], int r) {
#pragma HLS INLINE
SparseMult:
    for (int m = 0; m < CFG::n_mult; m++) {
#pragma HLS UNROLL
        const int k = m * CFG::reuse_factor + r;
        if (k < CFG::n_kept) {
            int blk, i, j, t, bank;
            if (CFG::column_balanced) {
                blk = k / (CFG::br * CFG::bc);  // bank * per_bank + t
                i = (k / CFG::bc) % CFG::br;
                j = k % CFG::bc;
                bank = blk / CFG::per_bank;
                t = blk % CFG::per_bank;
            } else {
                const int kk = k / CFG::n_out;
                const int o = k % CFG::n_out;
                bank = o / CFG::br;
                i = o % CFG::br;
                t = kk / CFG::bc;
                j = kk % CFG::bc;
                blk = bank * CFG::per_bank + t;
            }
            const int sel = (int)idx[blk];
            const int rb = CFG::column_balanced ? sel : bank;
            const int cb = CFG::column_balanced ? bank : (t / CFG::per_group) * CFG::group + sel;
            acc[rb * CFG::br + i] += mul<CFG::mult_impl, typename CFG::accum_t>(
                x[cb * CFG::bc + j], from_raw<typename CFG::weight_t>(w[k]));
        }
    }
}

template <class CFG, class in_T, class out_T>
void dense_sparse_word(const in_T x[CFG::n_in], out_T y[CFG::n_out],
                       const typename CFG::weight_rom_t w[CFG::w_words],
                       const typename CFG::index_rom_t idx[CFG::idx_words],
                       const typename CFG::bias_rom_t b[CFG::n_out]) {
#pragma HLS INLINE
    // In io_parallel the top function is pipelined and loops unroll: the allocation limit is
    // what makes HLS share n_mult multipliers over the reuse cycles.
    const int mult_limit = CFG::n_mult;
#pragma HLS ALLOCATION operation instances = mul limit = mult_limit
    typename CFG::accum_t acc[CFG::n_out];
#pragma HLS ARRAY_PARTITION variable = acc type = complete
    dense_sparse_bias<CFG>(acc, b);
SparseReuse:
    for (int r = 0; r < CFG::reuse_factor; r++) {
#pragma HLS PIPELINE II = 1
        HWP_COUNT_CYCLES(CFG, 1);
        dense_sparse_mac<CFG>(x, acc, w, idx, r);
    }
SparseOut:
    for (int o = 0; o < CFG::n_out; o++) {
#pragma HLS UNROLL
        y[o] = cast<out_T>(acc[o]);  // rounding/saturation of out_T applies here
    }
}

// io_parallel: the tensor is an array of n_words words of n_in elements.
template <class CFG, class in_T, class out_T>
void dense_sparse_words(const in_T x[CFG::n_words * CFG::n_in], out_T y[CFG::n_words * CFG::n_out],
                        const typename CFG::weight_rom_t w[CFG::w_words],
                        const typename CFG::index_rom_t idx[CFG::idx_words],
                        const typename CFG::bias_rom_t b[CFG::n_out]) {
#pragma HLS INLINE
SparseWords:
    for (int t = 0; t < CFG::n_words; t++) {
        dense_sparse_word<CFG, in_T, out_T>(x + t * CFG::n_in, y + t * CFG::n_out, w, idx, b);
    }
}

// io_stream: one stream word in, one stream word out.
template <class CFG, class in_T, class out_T>
void dense_sparse_words_each(hls::stream<vec<in_T, CFG::n_in> > &x, hls::stream<vec<out_T, CFG::n_out> > &y,
                             const typename CFG::weight_rom_t w[CFG::w_words],
                             const typename CFG::index_rom_t idx[CFG::idx_words],
                             const typename CFG::bias_rom_t b[CFG::n_out], output_stage_tag<0>) {
#pragma HLS INLINE
SparseWords:
    for (int t = 0; t < CFG::n_words; t++) {
        vec<in_T, CFG::n_in> in = x.read();
        HWP_COUNT_READ(CFG);
        vec<out_T, CFG::n_out> out;
#pragma HLS ARRAY_PARTITION variable = out.data type = complete
        dense_sparse_word<CFG, in_T, out_T>(in.data, out.data, w, idx, b);
        y.write(out);
        HWP_COUNT_WRITE(CFG);
    }
}

// io_stream with a time-shared output stage (as dense.h): word t's sums are rounded and
// saturated out_lanes at a time during word t+1's RF cycles; a last pass drains the final word.
template <class CFG, class in_T, class out_T>
void dense_sparse_words_each(hls::stream<vec<in_T, CFG::n_in> > &x, hls::stream<vec<out_T, CFG::n_out> > &y,
                             const typename CFG::weight_rom_t w[CFG::w_words],
                             const typename CFG::index_rom_t idx[CFG::idx_words],
                             const typename CFG::bias_rom_t b[CFG::n_out], output_stage_tag<1>) {
#pragma HLS INLINE
    typename CFG::accum_t acc[CFG::n_out], done[CFG::n_out];
#pragma HLS ARRAY_PARTITION variable = acc type = complete
#pragma HLS ARRAY_PARTITION variable = done type = complete
    vec<in_T, CFG::n_in> in;
#pragma HLS ARRAY_PARTITION variable = in.data type = complete
    vec<out_T, CFG::n_out> out;
#pragma HLS ARRAY_PARTITION variable = out.data type = complete
SparseWords:
    for (int t = 0; t <= CFG::n_words; t++) {
        const bool have_word = t < CFG::n_words;
        if (have_word) {
            in = x.read();
            HWP_COUNT_READ(CFG);
        }
    SparseHandOver:
        for (int o = 0; o < CFG::n_out; o++) {
#pragma HLS UNROLL
            done[o] = acc[o];
        }
        dense_sparse_bias<CFG>(acc, b);
    SparseReuse:
        for (int r = 0; r < CFG::reuse_factor; r++) {
#pragma HLS PIPELINE II = 1
            HWP_COUNT_CYCLES(CFG, 1);
            if (have_word) dense_sparse_mac<CFG>(in.data, acc, w, idx, r);
        SparseOutLanes:
            for (int j = 0; j < CFG::out_lanes; j++) {
#pragma HLS UNROLL
                const int o = r * CFG::out_lanes + j;
                if (t > 0 && o < CFG::n_out) out.data[o] = cast<out_T>(done[o]);  // rounding/saturation
            }
        }
        if (t > 0) {
            y.write(out);
            HWP_COUNT_WRITE(CFG);
        }
    }
}

template <class CFG, class in_T, class out_T>
void dense_sparse_words(hls::stream<vec<in_T, CFG::n_in> > &x, hls::stream<vec<out_T, CFG::n_out> > &y,
                        const typename CFG::weight_rom_t w[CFG::w_words],
                        const typename CFG::index_rom_t idx[CFG::idx_words],
                        const typename CFG::bias_rom_t b[CFG::n_out]) {
#pragma HLS INLINE
    dense_sparse_words_each<CFG, in_T, out_T>(x, y, w, idx, b, output_stage_tag<CFG::output_stage>());
}

// ROM banking (UG1399 array_partition): a weight bank per multiplier, idx_banks index banks,
// the biases complete. X, Y: the input and output (arrays or streams).
template <class CFG, class in_T, class out_T, class X, class Y>
void dense_sparse_banked(X &x, Y &y, const typename CFG::weight_rom_t w[CFG::w_words],
                         const typename CFG::index_rom_t idx[CFG::idx_words],
                         const typename CFG::bias_rom_t b[CFG::n_out], rom_impl_tag<0>) {
    const int w_banks = CFG::w_banks;
    const int idx_banks = CFG::idx_banks;
#pragma HLS ARRAY_PARTITION variable = w type = block factor = w_banks dim = 1
#pragma HLS ARRAY_PARTITION variable = idx type = block factor = idx_banks dim = 1
#pragma HLS ARRAY_PARTITION variable = b type = complete dim = 1
    HWP_COUNT_CALL(CFG);
    dense_sparse_words<CFG, in_T, out_T>(x, y, w, idx, b);
}

// The same, with the weights in block RAM (rom_impl "bram"): w_banks = ceil(n_mult / 2) banks,
// each holding two multipliers' RF weights in a dual-port ROM — both read it every cycle, one
// port each (hwprune.ops.dense.bram_pair_banks).
template <class CFG, class in_T, class out_T, class X, class Y>
void dense_sparse_banked(X &x, Y &y, const typename CFG::weight_rom_t w[CFG::w_words],
                         const typename CFG::index_rom_t idx[CFG::idx_words],
                         const typename CFG::bias_rom_t b[CFG::n_out], rom_impl_tag<1>) {
    const int w_banks = CFG::w_banks;
    const int idx_banks = CFG::idx_banks;
#pragma HLS ARRAY_PARTITION variable = w type = block factor = w_banks dim = 1
#pragma HLS BIND_STORAGE variable = w type = rom_2p impl = bram
#pragma HLS ARRAY_PARTITION variable = idx type = block factor = idx_banks dim = 1
#pragma HLS ARRAY_PARTITION variable = b type = complete dim = 1
    HWP_COUNT_CALL(CFG);
    dense_sparse_words<CFG, in_T, out_T>(x, y, w, idx, b);
}

template <class CFG, class in_T, class out_T>
void dense_sparse(const in_T x[CFG::n_words * CFG::n_in], out_T y[CFG::n_words * CFG::n_out],
                  const typename CFG::weight_rom_t w[CFG::w_words],
                  const typename CFG::index_rom_t idx[CFG::idx_words],
                  const typename CFG::bias_rom_t b[CFG::n_out]) {
#pragma HLS INLINE
    dense_sparse_banked<CFG, in_T, out_T>(x, y, w, idx, b, rom_impl_tag<CFG::rom_impl>());
}

template <class CFG, class in_T, class out_T>
void dense_sparse(hls::stream<vec<in_T, CFG::n_in> > &x, hls::stream<vec<out_T, CFG::n_out> > &y,
                  const typename CFG::weight_rom_t w[CFG::w_words],
                  const typename CFG::index_rom_t idx[CFG::idx_words],
                  const typename CFG::bias_rom_t b[CFG::n_out]) {
#pragma HLS INLINE
    dense_sparse_banked<CFG, in_T, out_T>(x, y, w, idx, b, rom_impl_tag<CFG::rom_impl>());
}

}  // namespace hwp

#endif
