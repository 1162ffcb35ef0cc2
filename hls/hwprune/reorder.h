// Data movement between layouts: repack (same element order, different stream word size) and
// reorder (a permutation of the elements, e.g. channels-last to channels-first).
#ifndef HWP_REORDER_H
#define HWP_REORDER_H

#include "common.h"

namespace hwp {

// io_stream only (io_parallel aliases the array): words of in_word elements -> out_word.
template <class CFG, class in_T, class out_T>
void repack(hls::stream<vec<in_T, CFG::in_word> > &x, hls::stream<vec<out_T, CFG::out_word> > &y) {
    vec<in_T, CFG::in_word> in;
    vec<out_T, CFG::out_word> out;
    int ii = CFG::in_word, oi = 0;
RepackLoop:
    for (int e = 0; e < CFG::size; e++) {
#pragma HLS PIPELINE II = 1
        if (ii == CFG::in_word) {
            in = x.read();
            ii = 0;
        }
        out[oi] = in[ii];
        ii++;
        oi++;
        if (oi == CFG::out_word) {
            y.write(out);
            oi = 0;
        }
    }
}

// io_parallel: a fixed permutation is only wiring.
template <class CFG, class in_T, class out_T>
void reorder(const in_T x[CFG::size], out_T y[CFG::size], const typename CFG::index_rom_t src[CFG::size]) {
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
    in_T buf[CFG::size];
ReorderFill:
    for (int w = 0; w < CFG::size / CFG::in_word; w++) {
#pragma HLS PIPELINE II = 1
        vec<in_T, CFG::in_word> in = x.read();
        for (int c = 0; c < CFG::in_word; c++) {
#pragma HLS UNROLL
            buf[w * CFG::in_word + c] = in[c];
        }
    }
ReorderEmit:
    for (int w = 0; w < CFG::size / CFG::out_word; w++) {
#pragma HLS PIPELINE II = CFG::out_word
        vec<out_T, CFG::out_word> out;
        for (int c = 0; c < CFG::out_word; c++) {
            out[c] = buf[src[w * CFG::out_word + c]];
        }
        y.write(out);
    }
}

// io_stream: copy every word of one stream into two (a stream has a single reader).
template <class CFG, class in_T, class out_T>
void clone(hls::stream<vec<in_T, CFG::word> > &x, hls::stream<vec<out_T, CFG::word> > &y0,
           hls::stream<vec<out_T, CFG::word> > &y1) {
CloneWords:
    for (int w = 0; w < CFG::size / CFG::word; w++) {
#pragma HLS PIPELINE II = 1
        vec<in_T, CFG::word> in = x.read();
        y0.write(in);
        y1.write(in);
    }
}

}  // namespace hwp

#endif
