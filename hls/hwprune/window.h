// Sliding-window engine shared by convolution and pooling. Tensors are channels-last
// [in_h][in_w][chan] (1-D layers use in_h = 1). A window op (conv, max/avg pool) computes one
// output pixel from a source that returns input elements by (row, col, channel).
//   io_parallel: the source is the input array.
//   io_stream: a line buffer keeps the last `span` = dh*(kh-1)+1 input rows; each output row
//   is emitted as soon as the last input row it needs has arrived, the rows that only need
//   bottom padding after the input ends.
#ifndef HWP_WINDOW_H
#define HWP_WINDOW_H

#include "common.h"

namespace hwp {

template <class CFG, class T>
struct array_source {
    const T *x;
    T get(int ih, int iw, int c) const { return x[(ih * CFG::in_w + iw) * CFG::chan + c]; }
};

template <class CFG, class T>
struct ring_source {
    const T (*rows)[CFG::in_w * CFG::chan];
    T get(int ih, int iw, int c) const { return rows[ih % CFG::span][iw * CFG::chan + c]; }
};

template <class CFG>
inline bool in_image(int ih, int iw) {
    return ih >= 0 && ih < CFG::in_h && iw >= 0 && iw < CFG::in_w;
}

// io_parallel
template <class CFG, class OP, class in_T, class out_T>
void window(const in_T x[CFG::in_h * CFG::in_w * CFG::chan], out_T y[CFG::out_h * CFG::out_w * CFG::chan_out],
            const typename CFG::p0_rom_t p0[CFG::n_p0], const typename CFG::p1_rom_t p1[CFG::n_p1],
            const typename CFG::p2_rom_t p2[CFG::n_p2]) {
    OP::template banks<CFG>(p0, p1, p2);  // the op's ROM partitioning
    HWP_COUNT_CALL(CFG);
    array_source<CFG, in_T> src = {x};
WindowRows:
    for (int oh = 0; oh < CFG::out_h; oh++) {
    WindowCols:
        for (int ow = 0; ow < CFG::out_w; ow++) {
#pragma HLS PIPELINE II = CFG::reuse_factor
            HWP_COUNT_CYCLES(CFG, CFG::reuse_factor);
            OP::template pixel<CFG>(src, oh, ow, y + (oh * CFG::out_w + ow) * CFG::chan_out, p0, p1, p2);
        }
    }
}

// io_stream
template <class CFG, class OP, class in_T, class out_T>
void window(hls::stream<vec<in_T, CFG::chan> > &x, hls::stream<vec<out_T, CFG::chan_out> > &y,
            const typename CFG::p0_rom_t p0[CFG::n_p0], const typename CFG::p1_rom_t p1[CFG::n_p1],
            const typename CFG::p2_rom_t p2[CFG::n_p2]) {
    // static: line buffers can be large; every call refills them before reading.
    static in_T rows[CFG::span][CFG::in_w * CFG::chan];
    OP::template banks<CFG>(p0, p1, p2);  // the op's ROM partitioning
    HWP_COUNT_CALL(CFG);
    ring_source<CFG, in_T> src = {rows};
    int next = 0;
WindowInRows:
    for (int r = 0; r < CFG::in_h + 1; r++) {
        if (r < CFG::in_h) {
        WindowRead:
            for (int c = 0; c < CFG::in_w; c++) {
#pragma HLS PIPELINE II = 1
                HWP_COUNT_CYCLES(CFG, 1);
                vec<in_T, CFG::chan> word = x.read();
                HWP_COUNT_READ(CFG);
                for (int ch = 0; ch < CFG::chan; ch++) rows[r % CFG::span][c * CFG::chan + ch] = word[ch];
            }
        }
    WindowEmit:
        while (next < CFG::out_h) {
            int last = next * CFG::sh - CFG::pt + CFG::dh * (CFG::kh - 1);
            if (last > CFG::in_h - 1) last = CFG::in_h - 1;
            if (r < CFG::in_h && last > r) break;  // needs rows not read yet
            for (int ow = 0; ow < CFG::out_w; ow++) {
#pragma HLS PIPELINE II = CFG::reuse_factor
                HWP_COUNT_CYCLES(CFG, CFG::reuse_factor);
                vec<out_T, CFG::chan_out> out;
                OP::template pixel<CFG>(src, next, ow, out.data, p0, p1, p2);
                y.write(out);
                HWP_COUNT_WRITE(CFG);
            }
            next++;
        }
    }
}

}  // namespace hwp

#endif
