// Dense (fully connected) layer: y = x W + b over the innermost axis of every word.
// Reuse factor RF: each physical multiplier is time-shared over RF weights, so the layer
// instantiates n_mult = ceil(n_in*n_out/RF) multipliers and takes RF cycles per word.
// Weight ROM: w_words = n_mult*RF entries (zero-padded), block-partitioned into w_banks =
// n_mult banks: bank m holds exactly the RF weights multiplier m reads, one per cycle, so the
// reuse loop keeps II = 1 (the banking the estimate costs, hwprune.ops.dense.reuse_banks).
#ifndef HWP_DENSE_H
#define HWP_DENSE_H

#include "common.h"

namespace hwp {

// The biases into the accumulators (the start of every word).
template <class CFG>
void dense_bias(typename CFG::accum_t acc[CFG::n_out], const typename CFG::bias_rom_t b[CFG::n_out]) {
#pragma HLS INLINE
DenseInit:
    for (int o = 0; o < CFG::n_out; o++) {
#pragma HLS UNROLL
        acc[o] = cast<typename CFG::accum_t>(from_raw<typename CFG::bias_t>(b[o]));
    }
}

// Cycle r of the reuse schedule: weight k = i*n_out + o is served by multiplier k / RF in cycle
// k % RF.
template <class CFG, class in_T>
void dense_mac(const in_T x[CFG::n_in], typename CFG::accum_t acc[CFG::n_out],
               const typename CFG::weight_rom_t w[CFG::w_words], int r) {
#pragma HLS INLINE
DenseMult:
    for (int m = 0; m < CFG::n_mult; m++) {
#pragma HLS UNROLL
        const int k = m * CFG::reuse_factor + r;
        if (k < CFG::n_in * CFG::n_out) {
            const int i = k / CFG::n_out;
            const int o = k % CFG::n_out;
            acc[o] += mul<CFG::mult_impl, typename CFG::accum_t>(x[i], from_raw<typename CFG::weight_t>(w[k]));
        }
    }
}

template <class CFG, class in_T, class out_T>
void dense_word(const in_T x[CFG::n_in], out_T y[CFG::n_out],
                const typename CFG::weight_rom_t w[CFG::w_words],
                const typename CFG::bias_rom_t b[CFG::n_out]) {
#pragma HLS INLINE
    // In io_parallel the top function is pipelined and loops unroll: the allocation limit is
    // what makes HLS share n_mult multipliers over the reuse cycles.
    const int mult_limit = CFG::n_mult;
#pragma HLS ALLOCATION operation instances = mul limit = mult_limit
    typename CFG::accum_t acc[CFG::n_out];
#pragma HLS ARRAY_PARTITION variable = acc type = complete
    dense_bias<CFG>(acc, b);
DenseReuse:
    for (int r = 0; r < CFG::reuse_factor; r++) {
#pragma HLS PIPELINE II = 1
        HWP_COUNT_CYCLES(CFG, 1);
        dense_mac<CFG>(x, acc, w, r);
    }
DenseOut:
    for (int o = 0; o < CFG::n_out; o++) {
#pragma HLS UNROLL
        y[o] = cast<out_T>(acc[o]);  // rounding/saturation of out_T applies here
    }
}

// io_parallel: the tensor is an array of n_words words of n_in elements.
template <class CFG, class in_T, class out_T>
void dense_words(const in_T x[CFG::n_words * CFG::n_in], out_T y[CFG::n_words * CFG::n_out],
                 const typename CFG::weight_rom_t w[CFG::w_words],
                 const typename CFG::bias_rom_t b[CFG::n_out]) {
#pragma HLS INLINE
DenseWords:
    for (int t = 0; t < CFG::n_words; t++) {
        dense_word<CFG, in_T, out_T>(x + t * CFG::n_in, y + t * CFG::n_out, w, b);
    }
}

// io_stream: one stream word in, one stream word out.
template <class CFG, class in_T, class out_T>
void dense_words_each(hls::stream<vec<in_T, CFG::n_in> > &x, hls::stream<vec<out_T, CFG::n_out> > &y,
                      const typename CFG::weight_rom_t w[CFG::w_words],
                      const typename CFG::bias_rom_t b[CFG::n_out], output_stage_tag<0>) {
#pragma HLS INLINE
DenseWords:
    for (int t = 0; t < CFG::n_words; t++) {
        vec<in_T, CFG::n_in> in = x.read();
        HWP_COUNT_READ(CFG);
        vec<out_T, CFG::n_out> out;
#pragma HLS ARRAY_PARTITION variable = out.data type = complete
        dense_word<CFG, in_T, out_T>(in.data, out.data, w, b);
        y.write(out);
        HWP_COUNT_WRITE(CFG);
    }
}

// io_stream with a time-shared output stage (CFG::output_stage = 1, hwprune's output_stage
// "shared"): the sums of word t are copied into `done` when word t+1 starts and rounded and
// saturated out_lanes = ceil(n_out / RF) at a time during its RF cycles (output o in cycle
// o / out_lanes), so out_lanes requantizers serve every output instead of n_out; a last pass
// of RF cycles drains the final word ((n_words + 1) * RF cycles a call).
template <class CFG, class in_T, class out_T>
void dense_words_each(hls::stream<vec<in_T, CFG::n_in> > &x, hls::stream<vec<out_T, CFG::n_out> > &y,
                      const typename CFG::weight_rom_t w[CFG::w_words],
                      const typename CFG::bias_rom_t b[CFG::n_out], output_stage_tag<1>) {
#pragma HLS INLINE
    typename CFG::accum_t acc[CFG::n_out], done[CFG::n_out];
#pragma HLS ARRAY_PARTITION variable = acc type = complete
#pragma HLS ARRAY_PARTITION variable = done type = complete
    vec<in_T, CFG::n_in> in;
#pragma HLS ARRAY_PARTITION variable = in.data type = complete
    vec<out_T, CFG::n_out> out;
#pragma HLS ARRAY_PARTITION variable = out.data type = complete
DenseWords:
    for (int t = 0; t <= CFG::n_words; t++) {
        const bool have_word = t < CFG::n_words;
        if (have_word) {
            in = x.read();
            HWP_COUNT_READ(CFG);
        }
    DenseHandOver:
        for (int o = 0; o < CFG::n_out; o++) {
#pragma HLS UNROLL
            done[o] = acc[o];
        }
        dense_bias<CFG>(acc, b);
    DenseReuse:
        for (int r = 0; r < CFG::reuse_factor; r++) {
#pragma HLS PIPELINE II = 1
            HWP_COUNT_CYCLES(CFG, 1);
            if (have_word) dense_mac<CFG>(in.data, acc, w, r);
        DenseOutLanes:
            for (int j = 0; j < CFG::out_lanes; j++) {
#pragma HLS UNROLL
                const int o = r * CFG::out_lanes + j;
                if (t > 0 && o < CFG::n_out) out.data[o] = cast<out_T>(done[o]);  // rounding/saturation
            }
        }
        if (t > 0) {
            y.write(out);
            HWP_COUNT_WRITE(CFG);
        }
    }
}

template <class CFG, class in_T, class out_T>
void dense_words(hls::stream<vec<in_T, CFG::n_in> > &x, hls::stream<vec<out_T, CFG::n_out> > &y,
                 const typename CFG::weight_rom_t w[CFG::w_words],
                 const typename CFG::bias_rom_t b[CFG::n_out]) {
#pragma HLS INLINE
    dense_words_each<CFG, in_T, out_T>(x, y, w, b, output_stage_tag<CFG::output_stage>());
}

// ROM banking (UG1399 array_partition on the layer function's array arguments, as hls4ml's
// dense_resource reshapes its weights): a bank per multiplier; the biases complete (they
// initialise every accumulator in one cycle). X, Y: the input and output (arrays or streams).
template <class CFG, class in_T, class out_T, class X, class Y>
void dense_banked(X &x, Y &y, const typename CFG::weight_rom_t w[CFG::w_words],
                  const typename CFG::bias_rom_t b[CFG::n_out], rom_impl_tag<0>) {
    const int w_banks = CFG::w_banks;
#pragma HLS ARRAY_PARTITION variable = w type = block factor = w_banks dim = 1
#pragma HLS ARRAY_PARTITION variable = b type = complete dim = 1
    HWP_COUNT_CALL(CFG);
    dense_words<CFG, in_T, out_T>(x, y, w, b);
}

// The same, with the weights in block RAM (rom_impl "bram"): w_banks = ceil(n_mult / 2) banks,
// each holding two multipliers' RF weights in a dual-port ROM — both read it every cycle, one
// port each (hwprune.ops.dense.bram_pair_banks).
template <class CFG, class in_T, class out_T, class X, class Y>
void dense_banked(X &x, Y &y, const typename CFG::weight_rom_t w[CFG::w_words],
                  const typename CFG::bias_rom_t b[CFG::n_out], rom_impl_tag<1>) {
    const int w_banks = CFG::w_banks;
#pragma HLS ARRAY_PARTITION variable = w type = block factor = w_banks dim = 1
#pragma HLS BIND_STORAGE variable = w type = rom_2p impl = bram
#pragma HLS ARRAY_PARTITION variable = b type = complete dim = 1
    HWP_COUNT_CALL(CFG);
    dense_words<CFG, in_T, out_T>(x, y, w, b);
}

template <class CFG, class in_T, class out_T>
void dense(const in_T x[CFG::n_words * CFG::n_in], out_T y[CFG::n_words * CFG::n_out],
           const typename CFG::weight_rom_t w[CFG::w_words],
           const typename CFG::bias_rom_t b[CFG::n_out]) {
#pragma HLS INLINE
    dense_banked<CFG, in_T, out_T>(x, y, w, b, rom_impl_tag<CFG::rom_impl>());
}

template <class CFG, class in_T, class out_T>
void dense(hls::stream<vec<in_T, CFG::n_in> > &x, hls::stream<vec<out_T, CFG::n_out> > &y,
           const typename CFG::weight_rom_t w[CFG::w_words],
           const typename CFG::bias_rom_t b[CFG::n_out]) {
#pragma HLS INLINE
    dense_banked<CFG, in_T, out_T>(x, y, w, b, rom_impl_tag<CFG::rom_impl>());
}

}  // namespace hwp

#endif
