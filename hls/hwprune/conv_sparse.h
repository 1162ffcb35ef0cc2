// Balanced block-sparse convolution on the window engine. The weights form an
// (out channels) x (taps) matrix, taps in (ic, i, j) order; only the kept br x bc blocks are
// stored (p0), with an index per block (p2): row-balanced banks are groups of br output
// channels, each reading per_bank blocks of bc taps; column-balanced banks are bc-tap columns
// adding into per_bank groups of output channels. Per output pixel only kept blocks cost cycles.
// A pixel (II = RF) reads every kept weight and every index once: both ROMs are cyclically
// partitioned into banks of at most RF words (w_banks = n_mult, idx_banks = ceil(kept blocks / RF);
// hwprune.ops.conv.conv_memories).
#ifndef HWP_CONV_SPARSE_H
#define HWP_CONV_SPARSE_H

#include "window.h"

namespace hwp {

struct conv_sparse_op {
    // ROM banking (UG1399 array_partition on the window engine's array arguments; inlined).
    template <class CFG>
    static void banks(const typename CFG::p0_rom_t w[CFG::n_p0], const typename CFG::p1_rom_t b[CFG::n_p1],
                      const typename CFG::p2_rom_t idx[CFG::n_p2]) {
#pragma HLS INLINE
        const int w_banks = CFG::w_banks;
        const int idx_banks = CFG::idx_banks;
#pragma HLS ARRAY_PARTITION variable = w type = cyclic factor = w_banks dim = 1
#pragma HLS ARRAY_PARTITION variable = idx type = cyclic factor = idx_banks dim = 1
#pragma HLS ARRAY_PARTITION variable = b type = complete dim = 1
    }

    template <class CFG, class SRC, class out_T>
    static void pixel(const SRC &src, int oh, int ow, out_T *y, const typename CFG::p0_rom_t *w,
                      const typename CFG::p1_rom_t *b, const typename CFG::p2_rom_t *idx) {
#pragma HLS INLINE
        const int mult_limit = CFG::n_mult;
#pragma HLS ALLOCATION operation instances = mul limit = mult_limit
        typename CFG::accum_t acc[CFG::chan_out];
#pragma HLS ARRAY_PARTITION variable = acc type = complete
        for (int oc = 0; oc < CFG::chan_out; oc++) acc[oc] = cast<typename CFG::accum_t>(from_raw<typename CFG::bias_t>(b[oc]));
    SparseConvBanks:
        for (int bank = 0; bank < CFG::n_banks; bank++) {
            for (int t = 0; t < CFG::per_bank; t++) {
                const int sel = (int)idx[bank * CFG::per_bank + t];
                const int rb = CFG::column_balanced ? sel : bank;
                const int cb = CFG::column_balanced ? bank : (t / CFG::per_group) * CFG::group + sel;
                for (int j = 0; j < CFG::bc; j++) {
                    const int tap = cb * CFG::bc + j;
                    const int ic = tap / (CFG::kh * CFG::kw);
                    const int ih = oh * CFG::sh - CFG::pt + ((tap / CFG::kw) % CFG::kh) * CFG::dh;
                    const int iw = ow * CFG::sw - CFG::pl + (tap % CFG::kw) * CFG::dw;
                    if (!in_image<CFG>(ih, iw)) continue;  // zero padding adds nothing
                    const typename CFG::data_t v = src.get(ih, iw, ic);
                    for (int i = 0; i < CFG::br; i++) {
                        acc[rb * CFG::br + i] += mul<CFG::mult_impl, typename CFG::accum_t>(
                            v, from_raw<typename CFG::weight_t>(w[((bank * CFG::per_bank + t) * CFG::br + i) * CFG::bc + j]));
                    }
                }
            }
        }
        for (int oc = 0; oc < CFG::chan_out; oc++) y[oc] = cast<out_T>(acc[oc]);
    }
};

}  // namespace hwp

#endif
