// Elementwise activations. Each op is a functor; one driver applies it over an array
// (io_parallel) or over stream words (io_stream). `p` holds the op's constants: slopes
// (LeakyReLU/PReLU, per channel) or a lookup table (sigmoid, tanh, erf, ELU's negative branch, GELU),
// as CFG::copies identical copies (p[copy][entry]), one per CFG::per_copy lanes: a BRAM18 has two
// read ports. io_stream, reuse_factor > 1: CFG::lanes = ceil(word / reuse_factor) lanes serve a
// word in reuse_factor cycles, element r * lanes + c in cycle r on lane c.
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
void activation(const in_T x[CFG::size], out_T y[CFG::size], const typename CFG::param_rom_t p[CFG::copies][CFG::n_params]) {
    HWP_COUNT_CALL(CFG);
    // Fully unrolled inside the pipelined top: no loop sets a schedule, so count what the
    // estimate charges per call (II = 1). io_parallel has one copy of the constants (copies = 1)
    // and no reuse factor (the generator settles it at 1).
    HWP_COUNT_CYCLES(CFG, 1);
ActivationLoop:
    for (int e = 0; e < CFG::size; e++) {
#pragma HLS UNROLL
        y[e] = OP::template apply<CFG, in_T, out_T>(x[e], e % CFG::word, p[0]);
    }
}

// reuse_factor > 1: each word is read once, held while its lanes take reuse_factor cycles over
// it, and written once complete. The read and the write sit inside the pipelined loop, so the
// nest is perfect and Vitis HLS flattens it into one II = 1 pipeline of words * reuse_factor
// trips (no drain between words).
template <class CFG, class OP, class in_T, class out_T>
void activation_reuse(hls::stream<vec<in_T, CFG::word> > &x, hls::stream<vec<out_T, CFG::word> > &y,
                      const typename CFG::param_rom_t p[CFG::copies][CFG::n_params]) {
#pragma HLS INLINE
    vec<in_T, CFG::word> in;
    vec<out_T, CFG::word> out;
ActivationReuseWords:
    for (int w = 0; w < CFG::size / CFG::word; w++) {
    ActivationReuseCycles:
        for (int r = 0; r < CFG::reuse_factor; r++) {
#pragma HLS PIPELINE II = 1
            HWP_COUNT_CYCLES(CFG, 1);
            if (r == 0) {
                in = x.read();
                HWP_COUNT_READ(CFG);
            }
        ActivationLanes:
            for (int c = 0; c < CFG::lanes; c++) {
#pragma HLS UNROLL
                const int i = r * CFG::lanes + c;
                if (i < CFG::word) out[i] = OP::template apply<CFG, in_T, out_T>(in[i], i, p[c / CFG::per_copy]);
            }
            if (r == CFG::reuse_factor - 1) {
                y.write(out);
                HWP_COUNT_WRITE(CFG);
            }
        }
    }
}

template <class CFG, class OP, class in_T, class out_T>
void activation(hls::stream<vec<in_T, CFG::word> > &x, hls::stream<vec<out_T, CFG::word> > &y,
                const typename CFG::param_rom_t p[CFG::copies][CFG::n_params]) {
    // Each copy its own ROM, so lane c reads copy c / per_copy without sharing a port.
#pragma HLS ARRAY_PARTITION variable = p type = complete dim = 1
    HWP_COUNT_CALL(CFG);
    if (CFG::reuse_factor > 1) {
        activation_reuse<CFG, OP, in_T, out_T>(x, y, p);
        return;
    }
ActivationWords:
    for (int w = 0; w < CFG::size / CFG::word; w++) {
#pragma HLS PIPELINE II = 1
        HWP_COUNT_CYCLES(CFG, 1);
        vec<in_T, CFG::word> in = x.read();
        HWP_COUNT_READ(CFG);
        vec<out_T, CFG::word> out;
        for (int c = 0; c < CFG::word; c++) {
#pragma HLS UNROLL
            out[c] = OP::template apply<CFG, in_T, out_T>(in[c], c, p[c / CFG::per_copy]);
        }
        y.write(out);
        HWP_COUNT_WRITE(CFG);
    }
}

}  // namespace hwp

#endif
