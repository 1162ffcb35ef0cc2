// Per-channel affine y = x * scale[c] + shift[c] (batch norm at inference, bias adds).
// The channel is the innermost axis: element e belongs to channel e % n_chan.
#ifndef HWP_SCALE_SHIFT_H
#define HWP_SCALE_SHIFT_H

#include "common.h"

namespace hwp {

template <class CFG, class in_T, class out_T>
void scale_shift(const in_T x[CFG::size], out_T y[CFG::size], const typename CFG::scale_rom_t s[CFG::n_chan],
                 const typename CFG::shift_rom_t b[CFG::n_chan]) {
    HWP_COUNT_CALL(CFG);
    // Fully unrolled inside the pipelined top: no loop sets a schedule, so count what the
    // estimate charges per call (II = 1).
    HWP_COUNT_CYCLES(CFG, 1);
ScaleShiftLoop:
    for (int e = 0; e < CFG::size; e++) {
#pragma HLS UNROLL
        const int c = e % CFG::n_chan;
        y[e] = cast<out_T>(x[e] * from_raw<typename CFG::scale_t>(s[c]) + from_raw<typename CFG::shift_t>(b[c]));
    }
}

template <class CFG, class in_T, class out_T>
void scale_shift(hls::stream<vec<in_T, CFG::word> > &x, hls::stream<vec<out_T, CFG::word> > &y,
                 const typename CFG::scale_rom_t s[CFG::n_chan], const typename CFG::shift_rom_t b[CFG::n_chan]) {
    HWP_COUNT_CALL(CFG);
ScaleShiftWords:
    for (int w = 0; w < CFG::size / CFG::word; w++) {
#pragma HLS PIPELINE II = 1
        HWP_COUNT_CYCLES(CFG, 1);
        vec<in_T, CFG::word> in = x.read();
        HWP_COUNT_READ(CFG);
        vec<out_T, CFG::word> out;
        for (int c = 0; c < CFG::word; c++) {
#pragma HLS UNROLL
            const int ch = c % CFG::n_chan;
            out[c] = cast<out_T>(in[c] * from_raw<typename CFG::scale_t>(s[ch]) + from_raw<typename CFG::shift_t>(b[ch]));
        }
        y.write(out);
        HWP_COUNT_WRITE(CFG);
    }
}

}  // namespace hwp

#endif
