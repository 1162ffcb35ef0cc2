// Pooling: max / average windows on the window engine, and global (all positions) pooling.
// Average = exact sum * reciprocal of the window count (a small ROM indexed by the count).
// Global mean in io_stream with reuse_factor > 1: lanes = ceil(chan / reuse_factor) multipliers
// emit the means over reuse_factor cycles after the last word (hwprune/ops/pool.py GlobalPool).
#ifndef HWP_POOL_H
#define HWP_POOL_H

#include "window.h"

namespace hwp {

struct maxpool_op {
    // The reciprocal table (avg) is tiny: the tool's default storage serves one read per pixel.
    template <class CFG>
    static void banks(const typename CFG::p0_rom_t[CFG::n_p0], const typename CFG::p1_rom_t[CFG::n_p1],
                      const typename CFG::p2_rom_t[CFG::n_p2]) {
#pragma HLS INLINE
    }

    template <class CFG, class SRC, class out_T>
    static void pixel(const SRC &src, int oh, int ow, out_T *y, const typename CFG::p0_rom_t *,
                      const typename CFG::p1_rom_t *, const typename CFG::p2_rom_t *) {
#pragma HLS INLINE
    MaxPoolChan:
        for (int c = 0; c < CFG::chan; c++) {
            typename CFG::data_t best = from_raw<typename CFG::data_t>(0);
            bool any = false;
            for (int i = 0; i < CFG::kh; i++) {
                for (int j = 0; j < CFG::kw; j++) {
                    const int ih = oh * CFG::sh - CFG::pt + i * CFG::dh;
                    const int iw = ow * CFG::sw - CFG::pl + j * CFG::dw;
                    if (!in_image<CFG>(ih, iw)) continue;  // padding never wins a max
                    const typename CFG::data_t v = src.get(ih, iw, c);
                    if (!any || v > best) best = v;
                    any = true;
                }
            }
            y[c] = cast<out_T>(best);
        }
    }
};

struct avgpool_op {
    // The reciprocal table (avg) is tiny: the tool's default storage serves one read per pixel.
    template <class CFG>
    static void banks(const typename CFG::p0_rom_t[CFG::n_p0], const typename CFG::p1_rom_t[CFG::n_p1],
                      const typename CFG::p2_rom_t[CFG::n_p2]) {
#pragma HLS INLINE
    }

    template <class CFG, class SRC, class out_T>
    static void pixel(const SRC &src, int oh, int ow, out_T *y, const typename CFG::p0_rom_t *recip,
                      const typename CFG::p1_rom_t *, const typename CFG::p2_rom_t *) {
#pragma HLS INLINE
        const int hs = oh * CFG::sh - CFG::pt, ws = ow * CFG::sw - CFG::pl;
        int count = 0;
        if (CFG::include_pad) {
            const int he = hs + CFG::kh < CFG::in_h + CFG::pb ? hs + CFG::kh : CFG::in_h + CFG::pb;
            const int we = ws + CFG::kw < CFG::in_w + CFG::pr ? ws + CFG::kw : CFG::in_w + CFG::pr;
            count = (he - hs) * (we - ws);
        } else {
            for (int i = 0; i < CFG::kh; i++)
                for (int j = 0; j < CFG::kw; j++) count += in_image<CFG>(hs + i, ws + j) ? 1 : 0;
        }
        const typename CFG::recip_t r = from_raw<typename CFG::recip_t>(recip[count]);
    AvgPoolChan:
        for (int c = 0; c < CFG::chan; c++) {
            typename CFG::sum_t sum = from_raw<typename CFG::sum_t>(0);
            for (int i = 0; i < CFG::kh; i++) {
                for (int j = 0; j < CFG::kw; j++) {
                    if (in_image<CFG>(hs + i, ws + j)) sum += src.get(hs + i, ws + j, c);
                }
            }
            y[c] = cast<out_T>(sum * r);  // exact product, one rounding into out_T
        }
    }
};

// Global pooling over n positions of chan channels.
template <class CFG, class in_T, class out_T>
void global_pool(const in_T x[CFG::n * CFG::chan], out_T y[CFG::chan], const typename CFG::recip_rom_t r[1]) {
    HWP_COUNT_CALL(CFG);
    // Fully unrolled (a reduction tree per channel) inside the pipelined top: no loop sets a
    // schedule, so count what the estimate charges per call (II = 1).
    HWP_COUNT_CYCLES(CFG, 1);
GlobalChan:
    for (int c = 0; c < CFG::chan; c++) {
#pragma HLS UNROLL
        typename CFG::sum_t acc = x[c];
        for (int p = 1; p < CFG::n; p++) {
            if (CFG::is_max) {
                if (x[p * CFG::chan + c] > acc) acc = x[p * CFG::chan + c];
            } else {
                acc += x[p * CFG::chan + c];
            }
        }
        if (CFG::is_max)
            y[c] = cast<out_T>(acc);
        else
            y[c] = cast<out_T>(acc * from_raw<typename CFG::recip_t>(r[0]));
    }
}

template <class CFG, class in_T, class out_T>
void global_pool(hls::stream<vec<in_T, CFG::chan> > &x, hls::stream<vec<out_T, CFG::out_word> > &y,
                 const typename CFG::recip_rom_t r[1]) {
    HWP_COUNT_CALL(CFG);
    typename CFG::sum_t acc[CFG::chan];
#pragma HLS ARRAY_PARTITION variable = acc complete
GlobalWords:
    for (int p = 0; p < CFG::n; p++) {
#pragma HLS PIPELINE II = 1
        HWP_COUNT_CYCLES(CFG, 1);
        vec<in_T, CFG::chan> w = x.read();
        HWP_COUNT_READ(CFG);
        for (int c = 0; c < CFG::chan; c++) {
            if (p == 0)
                acc[c] = w[c];
            else if (CFG::is_max) {
                if (w[c] > acc[c]) acc[c] = w[c];
            } else
                acc[c] += w[c];
        }
    }
    // The output is one word of chan values (or chan words of one value when the channel
    // axis is not innermost — only for a unit-sized trailing axis).
    vec<out_T, CFG::out_word> out;
    if (!CFG::is_max && CFG::reuse_factor > 1) {
        // The means time-shared: lanes multipliers by the reciprocal, lane m serving channels
        // m * reuse_factor + t in cycle t (as layernorm_step); the results wait in registers.
        const int mult_limit = CFG::lanes;
#pragma HLS ALLOCATION operation instances = mul limit = mult_limit
        const typename CFG::recip_t recip = from_raw<typename CFG::recip_t>(r[0]);
        out_T res[CFG::chan];
#pragma HLS ARRAY_PARTITION variable = res complete
    GlobalMeanReuse:
        for (int t = 0; t < CFG::reuse_factor; t++) {
#pragma HLS PIPELINE II = 1
            HWP_COUNT_CYCLES(CFG, 1);
        GlobalMeanLanes:
            for (int m = 0; m < CFG::lanes; m++) {
#pragma HLS UNROLL
                const int c = m * CFG::reuse_factor + t;
                if (c < CFG::chan) res[c] = cast<out_T>(acc[c] * recip);  // exact product, one rounding
            }
        }
        for (int c = 0; c < CFG::chan; c++) {
            out[c % CFG::out_word] = res[c];
            if (c % CFG::out_word == CFG::out_word - 1) {
                y.write(out);
                HWP_COUNT_WRITE(CFG);
            }
        }
        return;
    }
    for (int c = 0; c < CFG::chan; c++) {
        out_T v;
        if (CFG::is_max)
            v = cast<out_T>(acc[c]);
        else
            v = cast<out_T>(acc[c] * from_raw<typename CFG::recip_t>(r[0]));
        out[c % CFG::out_word] = v;
        if (c % CFG::out_word == CFG::out_word - 1) {
            y.write(out);
            HWP_COUNT_WRITE(CFG);
        }
    }
}

}  // namespace hwp

#endif
