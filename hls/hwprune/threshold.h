// Multi-thresholding (FINN's MultiThreshold): y = number of thresholds t[c][j] with x >= t[c][j].
// The thresholds are integers on the input's grid (ceil(t * 2^frac)), so the comparison is
// exact. The channel is the innermost axis: element e belongs to channel e % n_chan.
#ifndef HWP_THRESHOLD_H
#define HWP_THRESHOLD_H

#include "common.h"

namespace hwp {

template <class CFG, class in_T, class out_T>
inline out_T threshold_one(const in_T &x, const typename CFG::thr_rom_t *t) {
#pragma HLS INLINE
    ap_uint<CFG::count_bits> n = 0;
ThresholdCompare:
    for (int j = 0; j < CFG::n_thr; j++) {
#pragma HLS UNROLL
        if (x >= from_raw<typename CFG::thr_t>(t[j])) n++;
    }
    out_T y = n;
    return y;
}

template <class CFG, class in_T, class out_T>
void threshold(const in_T x[CFG::size], out_T y[CFG::size], const typename CFG::thr_rom_t t[CFG::n_chan * CFG::n_thr]) {
    // Every lane compares against all its channel's thresholds in the same cycle (UG1399
    // array_partition).
#pragma HLS ARRAY_PARTITION variable = t type = complete dim = 1
    HWP_COUNT_CALL(CFG);
    // Fully unrolled inside the pipelined top: no loop sets a schedule, so count what the
    // estimate charges per call (II = 1).
    HWP_COUNT_CYCLES(CFG, 1);
ThresholdLoop:
    for (int e = 0; e < CFG::size; e++) {
#pragma HLS UNROLL
        y[e] = threshold_one<CFG, in_T, out_T>(x[e], t + (e % CFG::n_chan) * CFG::n_thr);
    }
}

template <class CFG, class in_T, class out_T>
void threshold(hls::stream<vec<in_T, CFG::word> > &x, hls::stream<vec<out_T, CFG::word> > &y,
               const typename CFG::thr_rom_t t[CFG::n_chan * CFG::n_thr]) {
    // Every lane compares against all its channel's thresholds in the same cycle (UG1399
    // array_partition).
#pragma HLS ARRAY_PARTITION variable = t type = complete dim = 1
    HWP_COUNT_CALL(CFG);
ThresholdWords:
    for (int w = 0; w < CFG::size / CFG::word; w++) {
#pragma HLS PIPELINE II = 1
        HWP_COUNT_CYCLES(CFG, 1);
        vec<in_T, CFG::word> in = x.read();
        HWP_COUNT_READ(CFG);
        vec<out_T, CFG::word> out;
        for (int c = 0; c < CFG::word; c++) {
#pragma HLS UNROLL
            out[c] = threshold_one<CFG, in_T, out_T>(in[c], t + (c % CFG::n_chan) * CFG::n_thr);
        }
        y.write(out);
        HWP_COUNT_WRITE(CFG);
    }
}

}  // namespace hwp

#endif
