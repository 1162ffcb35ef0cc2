// Data movement between layouts: repack (same element order, different stream word size) and
// reorder (a permutation of the elements, e.g. channels-last to channels-first).
#ifndef HWP_REORDER_H
#define HWP_REORDER_H

#include "common.h"

namespace hwp {

// io_stream only (io_parallel aliases the array): words of in_word elements -> out_word.
// One word per cycle: each trip reads an input word when fewer than out_word elements wait
// and writes an output word when out_word are there (the leftover shifts down), so the loop
// takes max(words in, words out) trips and holds at most in_word + out_word - 1 elements.
template <class CFG, class in_T, class out_T>
void repack(hls::stream<vec<in_T, CFG::in_word> > &x, hls::stream<vec<out_T, CFG::out_word> > &y) {
    const int words_in = CFG::size / CFG::in_word, words_out = CFG::size / CFG::out_word;
    in_T buf[CFG::in_word + CFG::out_word];
#pragma HLS ARRAY_PARTITION variable = buf complete
    int have = 0;
    HWP_COUNT_CALL(CFG);
RepackWords:
    for (int t = 0; t < (words_in > words_out ? words_in : words_out); t++) {
#pragma HLS PIPELINE II = 1
        HWP_COUNT_CYCLES(CFG, 1);
        if (have < CFG::out_word) {
            vec<in_T, CFG::in_word> in = x.read();
            HWP_COUNT_READ(CFG);
            for (int c = 0; c < CFG::in_word; c++) buf[have + c] = in[c];
            have += CFG::in_word;
        }
        if (have >= CFG::out_word) {
            vec<out_T, CFG::out_word> out;
            for (int c = 0; c < CFG::out_word; c++) out[c] = buf[c];
            y.write(out);
            HWP_COUNT_WRITE(CFG);
            // What is left is fewer than in_word elements.
            for (int c = 0; c < CFG::in_word; c++) buf[c] = buf[c + CFG::out_word];
            have -= CFG::out_word;
        }
    }
}

// io_parallel: a fixed permutation is only wiring.
template <class CFG, class in_T, class out_T>
void reorder(const in_T x[CFG::size], out_T y[CFG::size], const typename CFG::index_rom_t src[CFG::size]) {
    HWP_COUNT_CALL(CFG);
    // Wires inside the pipelined top: count what the estimate charges per call (II = 1).
    HWP_COUNT_CYCLES(CFG, 1);
ReorderLoop:
    for (int e = 0; e < CFG::size; e++) {
#pragma HLS UNROLL
        y[e] = x[src[e]];
    }
}

// io_stream: buffer the whole tensor, then emit it in the new order.
template <class CFG, class in_T, class out_T>
void reorder(hls::stream<vec<in_T, CFG::in_word> > &x, hls::stream<vec<out_T, CFG::out_word> > &y,
             const typename CFG::index_rom_t src[CFG::size]) {
    HWP_COUNT_CALL(CFG);
    in_T buf[CFG::size];
ReorderFill:
    for (int w = 0; w < CFG::size / CFG::in_word; w++) {
#pragma HLS PIPELINE II = 1
        HWP_COUNT_CYCLES(CFG, 1);
        vec<in_T, CFG::in_word> in = x.read();
        HWP_COUNT_READ(CFG);
        for (int c = 0; c < CFG::in_word; c++) {
#pragma HLS UNROLL
            buf[w * CFG::in_word + c] = in[c];
        }
    }
ReorderEmit:
    for (int w = 0; w < CFG::size / CFG::out_word; w++) {
#pragma HLS PIPELINE II = CFG::out_word
        HWP_COUNT_CYCLES(CFG, CFG::out_word);
        vec<out_T, CFG::out_word> out;
        for (int c = 0; c < CFG::out_word; c++) {
            out[c] = buf[src[w * CFG::out_word + c]];
        }
        y.write(out);
        HWP_COUNT_WRITE(CFG);
    }
}

// io_parallel: a slice selects elements (src: the input index of each output element): wiring.
template <class CFG, class in_T, class out_T>
void slice(const in_T x[CFG::in_size], out_T y[CFG::out_size], const typename CFG::index_rom_t src[CFG::out_size]) {
    HWP_COUNT_CALL(CFG);
    HWP_COUNT_CYCLES(CFG, 1);
SliceLoop:
    for (int e = 0; e < CFG::out_size; e++) {
#pragma HLS UNROLL
        y[e] = x[src[e]];
    }
}

// io_stream: a slice passes on the kept words (keep[w]), each cut to out_word elements from
// `offset` (slicing the innermost axis) or whole (slicing an outer axis); no buffer.
template <class CFG, class in_T, class out_T>
void slice(hls::stream<vec<in_T, CFG::in_word> > &x, hls::stream<vec<out_T, CFG::out_word> > &y,
           const typename CFG::index_rom_t keep[CFG::in_size / CFG::in_word]) {
    HWP_COUNT_CALL(CFG);
SliceWords:
    for (int w = 0; w < CFG::in_size / CFG::in_word; w++) {
#pragma HLS PIPELINE II = 1
        HWP_COUNT_CYCLES(CFG, 1);
        vec<in_T, CFG::in_word> in = x.read();
        HWP_COUNT_READ(CFG);
        if (keep[w]) {
            vec<out_T, CFG::out_word> out;
            for (int c = 0; c < CFG::out_word; c++) {
#pragma HLS UNROLL
                out[c] = in[CFG::offset + c];
            }
            y.write(out);
            HWP_COUNT_WRITE(CFG);
        }
    }
}

// io_stream: copy every word of one stream into two (a stream has a single reader).
template <class CFG, class in_T, class out_T>
void clone(hls::stream<vec<in_T, CFG::word> > &x, hls::stream<vec<out_T, CFG::word> > &y0,
           hls::stream<vec<out_T, CFG::word> > &y1) {
    HWP_COUNT_CALL(CFG);
CloneWords:
    for (int w = 0; w < CFG::size / CFG::word; w++) {
#pragma HLS PIPELINE II = 1
        HWP_COUNT_CYCLES(CFG, 1);
        vec<in_T, CFG::word> in = x.read();
        HWP_COUNT_READ(CFG);
        y0.write(in);
        y1.write(in);
        HWP_COUNT_WRITE(CFG);
        HWP_COUNT_WRITE(CFG);
    }
}

}  // namespace hwp

#endif
