// Requantization y = x * m[c] + b[c] (then ReLU when fused), the real multipliers of
// scaled-integer (QONNX/Brevitas) graphs: the exact sum is formed in sum_t and rounded once
// into out_T (its rounding and saturation modes: a fused Quant's). The channel is the
// innermost axis: element e belongs to channel e % n_chan.
#ifndef HWP_RESCALE_H
#define HWP_RESCALE_H

#include "common.h"

namespace hwp {

template <class CFG, class in_T, class out_T>
inline out_T rescale_one(const in_T &x, const typename CFG::scale_rom_t &s, const typename CFG::shift_rom_t &b) {
#pragma HLS INLINE
    typename CFG::sum_t v = x * from_raw<typename CFG::scale_t>(s) + from_raw<typename CFG::shift_t>(b);
    if (CFG::relu && v < 0) v = 0;
    out_T y = v;
    return y;
}

template <class CFG, class in_T, class out_T>
void rescale(const in_T x[CFG::size], out_T y[CFG::size], const typename CFG::scale_rom_t s[CFG::n_chan],
             const typename CFG::shift_rom_t b[CFG::n_chan]) {
    // Every lane reads its channel's constants in the same cycle (UG1399 array_partition).
#pragma HLS ARRAY_PARTITION variable = s type = complete dim = 1
#pragma HLS ARRAY_PARTITION variable = b type = complete dim = 1
    HWP_COUNT_CALL(CFG);
    // Fully unrolled inside the pipelined top: no loop sets a schedule, so count what the
    // estimate charges per call (II = 1).
    HWP_COUNT_CYCLES(CFG, 1);
RescaleLoop:
    for (int e = 0; e < CFG::size; e++) {
#pragma HLS UNROLL
        const int c = e % CFG::n_chan;
        y[e] = rescale_one<CFG, in_T, out_T>(x[e], s[c], b[c]);
    }
}

template <class CFG, class in_T, class out_T>
void rescale(hls::stream<vec<in_T, CFG::word> > &x, hls::stream<vec<out_T, CFG::word> > &y,
             const typename CFG::scale_rom_t s[CFG::n_chan], const typename CFG::shift_rom_t b[CFG::n_chan]) {
#pragma HLS ARRAY_PARTITION variable = s type = complete dim = 1
#pragma HLS ARRAY_PARTITION variable = b type = complete dim = 1
    HWP_COUNT_CALL(CFG);
RescaleWords:
    for (int w = 0; w < CFG::size / CFG::word; w++) {
#pragma HLS PIPELINE II = 1
        HWP_COUNT_CYCLES(CFG, 1);
        vec<in_T, CFG::word> in = x.read();
        HWP_COUNT_READ(CFG);
        vec<out_T, CFG::word> out;
        for (int c = 0; c < CFG::word; c++) {
#pragma HLS UNROLL
            const int ch = c % CFG::n_chan;
            out[c] = rescale_one<CFG, in_T, out_T>(in[c], s[ch], b[ch]);
        }
        y.write(out);
        HWP_COUNT_WRITE(CFG);
    }
}

}  // namespace hwp

#endif
