// Merges: elementwise add of two tensors, and concatenation along one axis.
#ifndef HWP_MERGE_H
#define HWP_MERGE_H

#include "common.h"

namespace hwp {

template <class CFG, class a_T, class b_T, class out_T>
void add(const a_T a[CFG::size], const b_T b[CFG::size], out_T y[CFG::size]) {
    HWP_COUNT_CALL(CFG);
    // Fully unrolled inside the pipelined top: no loop sets a schedule, so count what the
    // estimate charges per call (II = 1).
    HWP_COUNT_CYCLES(CFG, 1);
AddLoop:
    for (int e = 0; e < CFG::size; e++) {
#pragma HLS UNROLL
        y[e] = cast<out_T>(a[e] + b[e]);  // exact sum, rounded once into out_T
    }
}

template <class CFG, class a_T, class b_T, class out_T>
void add(hls::stream<vec<a_T, CFG::word> > &a, hls::stream<vec<b_T, CFG::word> > &b,
         hls::stream<vec<out_T, CFG::word> > &y) {
    HWP_COUNT_CALL(CFG);
AddWords:
    for (int w = 0; w < CFG::size / CFG::word; w++) {
#pragma HLS PIPELINE II = 1
        HWP_COUNT_CYCLES(CFG, 1);
        vec<a_T, CFG::word> x0 = a.read();
        vec<b_T, CFG::word> x1 = b.read();
        HWP_COUNT_READ(CFG);
        HWP_COUNT_READ(CFG);
        vec<out_T, CFG::word> out;
        for (int c = 0; c < CFG::word; c++) {
#pragma HLS UNROLL
            out[c] = cast<out_T>(x0[c] + x1[c]);
        }
        y.write(out);
        HWP_COUNT_WRITE(CFG);
    }
}

// The output is `outer` repetitions of (block_a elements of a, then block_b elements of b).
template <class CFG, class a_T, class b_T, class out_T>
void concat(const a_T a[CFG::outer * CFG::block_a], const b_T b[CFG::outer * CFG::block_b],
            out_T y[CFG::outer * (CFG::block_a + CFG::block_b)]) {
    HWP_COUNT_CALL(CFG);
    // Wires inside the pipelined top: count what the estimate charges per call (II = 1).
    HWP_COUNT_CYCLES(CFG, 1);
ConcatOuter:
    for (int o = 0; o < CFG::outer; o++) {
#pragma HLS UNROLL
        for (int e = 0; e < CFG::block_a; e++) y[o * (CFG::block_a + CFG::block_b) + e] = cast<out_T>(a[o * CFG::block_a + e]);
        for (int e = 0; e < CFG::block_b; e++)
            y[o * (CFG::block_a + CFG::block_b) + CFG::block_a + e] = cast<out_T>(b[o * CFG::block_b + e]);
    }
}

template <class CFG, class a_T, class b_T, class out_T>
void concat(hls::stream<vec<a_T, CFG::word_a> > &a, hls::stream<vec<b_T, CFG::word_b> > &b,
            hls::stream<vec<out_T, CFG::word_out> > &y) {
    HWP_COUNT_CALL(CFG);
    if (CFG::word_out == CFG::word_a + CFG::word_b) {
        // Concatenation along the innermost axis: one word from each input per output word.
    ConcatWords:
        for (int o = 0; o < CFG::outer; o++) {
#pragma HLS PIPELINE II = 1
            HWP_COUNT_CYCLES(CFG, 1);
            vec<a_T, CFG::word_a> x0 = a.read();
            vec<b_T, CFG::word_b> x1 = b.read();
            HWP_COUNT_READ(CFG);
            HWP_COUNT_READ(CFG);
            vec<out_T, CFG::word_out> out;
            for (int c = 0; c < CFG::word_a; c++) out[c] = cast<out_T>(x0[c]);
            for (int c = 0; c < CFG::word_b; c++) out[CFG::word_a + c] = cast<out_T>(x1[c]);
            y.write(out);
            HWP_COUNT_WRITE(CFG);
        }
    } else {
        // Along an outer axis: whole blocks of words from each input in turn.
    ConcatBlocks:
        for (int o = 0; o < CFG::outer; o++) {
            for (int w = 0; w < CFG::block_a / CFG::word_a; w++) {
#pragma HLS PIPELINE II = 1
                HWP_COUNT_CYCLES(CFG, 1);
                vec<a_T, CFG::word_a> x0 = a.read();
                HWP_COUNT_READ(CFG);
                vec<out_T, CFG::word_out> out;
                for (int c = 0; c < CFG::word_out; c++) out[c] = cast<out_T>(x0[c]);
                y.write(out);
                HWP_COUNT_WRITE(CFG);
            }
            for (int w = 0; w < CFG::block_b / CFG::word_b; w++) {
#pragma HLS PIPELINE II = 1
                HWP_COUNT_CYCLES(CFG, 1);
                vec<b_T, CFG::word_b> x1 = b.read();
                HWP_COUNT_READ(CFG);
                vec<out_T, CFG::word_out> out;
                for (int c = 0; c < CFG::word_out; c++) out[c] = cast<out_T>(x1[c]);
                y.write(out);
                HWP_COUNT_WRITE(CFG);
            }
        }
    }
}

}  // namespace hwp

#endif
