// Balanced block-sparse dense layer: only the kept br x bc weight blocks are stored, each with
// a small index; every bank (a row of blocks, or a column when column-balanced) holds exactly
// per_bank blocks, so the work splits evenly over the multipliers and no cycle is spent on a
// pruned block. Row-balanced: block t of bank rb reads inputs from block-column
//   (t / per_group) * group + idx[rb][t];
// column-balanced: block t of bank cb adds into block-row idx[cb][t].
#ifndef HWP_DENSE_SPARSE_H
#define HWP_DENSE_SPARSE_H

#include "common.h"

namespace hwp {

template <class CFG, class in_T, class out_T>
void dense_sparse_word(const in_T x[CFG::n_in], out_T y[CFG::n_out],
                       const typename CFG::weight_rom_t w[CFG::n_banks * CFG::per_bank * CFG::br * CFG::bc],
                       const typename CFG::index_rom_t idx[CFG::n_banks * CFG::per_bank],
                       const typename CFG::bias_rom_t b[CFG::n_out]) {
#pragma HLS INLINE
    const int mult_limit = CFG::n_mult;
#pragma HLS ALLOCATION operation instances = mul limit = mult_limit
    typename CFG::accum_t acc[CFG::n_out];
#pragma HLS ARRAY_PARTITION variable = acc complete
SparseInit:
    for (int o = 0; o < CFG::n_out; o++) {
#pragma HLS UNROLL
        acc[o] = from_raw<typename CFG::bias_t>(b[o]);
    }
SparseBanks:
    for (int bank = 0; bank < CFG::n_banks; bank++) {
    SparseBlocks:
        for (int t = 0; t < CFG::per_bank; t++) {
            const int sel = (int)idx[bank * CFG::per_bank + t];
            const int rb = CFG::column_balanced ? sel : bank;
            const int cb = CFG::column_balanced ? bank : (t / CFG::per_group) * CFG::group + sel;
        SparseRows:
            for (int i = 0; i < CFG::br; i++) {
            SparseCols:
                for (int j = 0; j < CFG::bc; j++) {
                    acc[rb * CFG::br + i] +=
                        x[cb * CFG::bc + j] *
                        from_raw<typename CFG::weight_t>(w[((bank * CFG::per_bank + t) * CFG::br + i) * CFG::bc + j]);
                }
            }
        }
    }
SparseOut:
    for (int o = 0; o < CFG::n_out; o++) {
#pragma HLS UNROLL
        y[o] = acc[o];
    }
}

template <class CFG, class in_T, class out_T>
void dense_sparse(const in_T x[CFG::n_words * CFG::n_in], out_T y[CFG::n_words * CFG::n_out],
                  const typename CFG::weight_rom_t w[CFG::n_banks * CFG::per_bank * CFG::br * CFG::bc],
                  const typename CFG::index_rom_t idx[CFG::n_banks * CFG::per_bank],
                  const typename CFG::bias_rom_t b[CFG::n_out]) {
SparseWords:
    for (int t = 0; t < CFG::n_words; t++) {
        dense_sparse_word<CFG, in_T, out_T>(x + t * CFG::n_in, y + t * CFG::n_out, w, idx, b);
    }
}

template <class CFG, class in_T, class out_T>
void dense_sparse(hls::stream<vec<in_T, CFG::n_in> > &x, hls::stream<vec<out_T, CFG::n_out> > &y,
                  const typename CFG::weight_rom_t w[CFG::n_banks * CFG::per_bank * CFG::br * CFG::bc],
                  const typename CFG::index_rom_t idx[CFG::n_banks * CFG::per_bank],
                  const typename CFG::bias_rom_t b[CFG::n_out]) {
SparseWords:
    for (int t = 0; t < CFG::n_words; t++) {
        vec<in_T, CFG::n_in> in = x.read();
        vec<out_T, CFG::n_out> out;
        dense_sparse_word<CFG, in_T, out_T>(in.data, out.data, w, idx, b);
        y.write(out);
    }
}

}  // namespace hwp

#endif
