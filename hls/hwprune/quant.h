// Requantize into the type a QONNX Quant node dictates: one assignment per element (the
// output type's rounding and saturation modes do the work).
#ifndef HWP_QUANT_H
#define HWP_QUANT_H

#include "common.h"

namespace hwp {

template <class CFG, class in_T, class out_T>
void quantize(const in_T x[CFG::size], out_T y[CFG::size]) {
    HWP_COUNT_CALL(CFG);
    // Fully unrolled inside the pipelined top: no loop sets a schedule, so count what the
    // estimate charges per call (II = 1).
    HWP_COUNT_CYCLES(CFG, 1);
QuantizeLoop:
    for (int e = 0; e < CFG::size; e++) {
#pragma HLS UNROLL
        y[e] = cast<out_T>(x[e]);
    }
}

template <class CFG, class in_T, class out_T>
void quantize(hls::stream<vec<in_T, CFG::word> > &x, hls::stream<vec<out_T, CFG::word> > &y) {
    HWP_COUNT_CALL(CFG);
QuantizeWords:
    for (int w = 0; w < CFG::size / CFG::word; w++) {
#pragma HLS PIPELINE II = 1
        HWP_COUNT_CYCLES(CFG, 1);
        vec<in_T, CFG::word> in = x.read();
        HWP_COUNT_READ(CFG);
        vec<out_T, CFG::word> out;
        for (int c = 0; c < CFG::word; c++) out[c] = cast<out_T>(in[c]);
        y.write(out);
        HWP_COUNT_WRITE(CFG);
    }
}

}  // namespace hwp

#endif
