// Convolution (1-D and 2-D, stride, padding, dilation, groups) on the window engine.
// Per output pixel: chan_out dot products of kh*kw*chan/groups terms; with reuse factor RF the
// multipliers are shared over RF cycles. Weights: w[((oc*kh + i)*kw + j)*in_per_group + ic].
// A pixel (a pipeline iteration of II = RF) reads every weight once: the ROM is cyclically
// partitioned into w_banks = n_mult banks of at most RF words, so each bank is read at most
// once per cycle (the banking the estimate costs, hwprune.ops.conv.conv_memories).
#ifndef HWP_CONV_H
#define HWP_CONV_H

#include "window.h"

namespace hwp {

struct conv_op {
    // ROM banking (UG1399 array_partition on the window engine's array arguments; inlined).
    template <class CFG>
    static void banks(const typename CFG::p0_rom_t w[CFG::n_p0], const typename CFG::p1_rom_t b[CFG::n_p1],
                      const typename CFG::p2_rom_t[CFG::n_p2]) {
#pragma HLS INLINE
        const int w_banks = CFG::w_banks;
#pragma HLS ARRAY_PARTITION variable = w type = cyclic factor = w_banks dim = 1
#pragma HLS ARRAY_PARTITION variable = b type = complete dim = 1
    }

    template <class CFG, class SRC, class out_T>
    static void pixel(const SRC &src, int oh, int ow, out_T *y, const typename CFG::p0_rom_t *w,
                      const typename CFG::p1_rom_t *b, const typename CFG::p2_rom_t *) {
#pragma HLS INLINE
        const int mult_limit = CFG::n_mult;
#pragma HLS ALLOCATION operation instances = mul limit = mult_limit
    ConvOut:
        for (int oc = 0; oc < CFG::chan_out; oc++) {
            const int g = oc / CFG::out_per_group;
            typename CFG::accum_t acc = cast<typename CFG::accum_t>(from_raw<typename CFG::bias_t>(b[oc]));
        ConvKh:
            for (int i = 0; i < CFG::kh; i++) {
            ConvKw:
                for (int j = 0; j < CFG::kw; j++) {
                    const int ih = oh * CFG::sh - CFG::pt + i * CFG::dh;
                    const int iw = ow * CFG::sw - CFG::pl + j * CFG::dw;
                    if (!in_image<CFG>(ih, iw)) continue;  // zero padding adds nothing
                ConvIn:
                    for (int ic = 0; ic < CFG::in_per_group; ic++) {
                        acc += mul<CFG::mult_impl, typename CFG::accum_t>(
                            src.get(ih, iw, g * CFG::in_per_group + ic),
                            from_raw<typename CFG::weight_t>(w[((oc * CFG::kh + i) * CFG::kw + j) * CFG::in_per_group + ic]));
                    }
                }
            }
            y[oc] = cast<out_T>(acc);
        }
    }
};

}  // namespace hwp

#endif
