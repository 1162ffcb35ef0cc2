// Elementwise activations. Each op is a functor; one driver applies it over an array
// (io_parallel) or over stream words (io_stream). `p` holds the op's constants: slopes
// (LeakyReLU/PReLU, per channel) or a lookup table (sigmoid, tanh, erf, ELU's negative branch, GELU).
#ifndef HWP_ACTIVATION_H
#define HWP_ACTIVATION_H

#include "common.h"

namespace hwp {

// Table index idx = clamp(floor((x - lo) * 2^s), 0, n-1), exact for any input type: beyond
// [lo, hi) a comparison decides, inside it floor(raw * 2^-shift) - lo_bin (shift = frac - s,
// lo_bin = lo * 2^s) is a small integer.
template <class CFG, class in_T>
inline int table_index(const in_T &x) {
#pragma HLS INLINE
    if (x < CFG::lo) return 0;
    if (x >= CFG::hi) return CFG::n_table - 1;
    long long idx = shift_floor<CFG::shift>(raw_bits(x)) - CFG::lo_bin;
    if (idx < 0) idx = 0;
    if (idx > CFG::n_table - 1) idx = CFG::n_table - 1;
    return (int)idx;
}

struct relu_op {
    template <class CFG, class in_T, class out_T>
    static out_T apply(const in_T &x, int, const typename CFG::param_rom_t *) {
#pragma HLS INLINE
        out_T y;
        if (x > 0)
            y = cast<out_T>(x);
        else
            y = from_raw<out_T>(0);  // exact 0 (assigning an int rounds: see cast)
        return y;
    }
};

struct prelu_op {  // also LeakyReLU (one slope)
    template <class CFG, class in_T, class out_T>
    static out_T apply(const in_T &x, int c, const typename CFG::param_rom_t *p) {
#pragma HLS INLINE
        out_T y;
        if (x >= 0)
            y = cast<out_T>(x);
        else
            y = cast<out_T>(x * from_raw<typename CFG::param_t>(p[c % CFG::n_chan]));
        return y;
    }
};

struct table_op {  // sigmoid, tanh: the table already holds output-type values
    template <class CFG, class in_T, class out_T>
    static out_T apply(const in_T &x, int, const typename CFG::param_rom_t *p) {
#pragma HLS INLINE
        return from_raw<out_T>(p[table_index<CFG>(x)]);
    }
};

struct elu_op {  // identity for x >= 0, table for the negative branch
    template <class CFG, class in_T, class out_T>
    static out_T apply(const in_T &x, int, const typename CFG::param_rom_t *p) {
#pragma HLS INLINE
        out_T y;
        if (x >= 0)
            y = cast<out_T>(x);
        else
            y = from_raw<out_T>(p[table_index<CFG>(x)]);
        return y;
    }
};

struct gelu_op {  // table below the top of its range, identity from there on (GELU(x) -> x)
    template <class CFG, class in_T, class out_T>
    static out_T apply(const in_T &x, int, const typename CFG::param_rom_t *p) {
#pragma HLS INLINE
        out_T y;
        if (x >= CFG::hi)  // the bin past the table: floor((x - lo) * 2^s) >= n_table
            y = cast<out_T>(x);
        else
            y = from_raw<out_T>(p[table_index<CFG>(x)]);
        return y;
    }
};

template <class CFG, class OP, class in_T, class out_T>
void activation(const in_T x[CFG::size], out_T y[CFG::size], const typename CFG::param_rom_t p[CFG::n_params]) {
    HWP_COUNT_CALL(CFG);
    // Fully unrolled inside the pipelined top: no loop sets a schedule, so count what the
    // estimate charges per call (II = 1).
    HWP_COUNT_CYCLES(CFG, 1);
ActivationLoop:
    for (int e = 0; e < CFG::size; e++) {
#pragma HLS UNROLL
        y[e] = OP::template apply<CFG, in_T, out_T>(x[e], e % CFG::word, p);
    }
}

template <class CFG, class OP, class in_T, class out_T>
void activation(hls::stream<vec<in_T, CFG::word> > &x, hls::stream<vec<out_T, CFG::word> > &y,
                const typename CFG::param_rom_t p[CFG::n_params]) {
    HWP_COUNT_CALL(CFG);
ActivationWords:
    for (int w = 0; w < CFG::size / CFG::word; w++) {
#pragma HLS PIPELINE II = 1
        HWP_COUNT_CYCLES(CFG, 1);
        vec<in_T, CFG::word> in = x.read();
        HWP_COUNT_READ(CFG);
        vec<out_T, CFG::word> out;
        for (int c = 0; c < CFG::word; c++) {
#pragma HLS UNROLL
            out[c] = OP::template apply<CFG, in_T, out_T>(in[c], c, p);
        }
        y.write(out);
        HWP_COUNT_WRITE(CFG);
    }
}

}  // namespace hwp

#endif
