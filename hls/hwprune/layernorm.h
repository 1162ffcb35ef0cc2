// LayerNorm over the innermost axis (rows of n elements), exact in integers up to two roundings:
//   S = sum x, Q = sum x^2, D_i = n x_i - S, V = n Q - S^2 + E      (E = n^2 eps on V's grid)
//   V = m 4^k, m in [1, 4): 1/sqrt(V) = inv_table[floor(m N / 4)] 2^-k
//   z_i = D_i / sqrt(V) truncated to z_frac bits;  y_i = z_i gamma_i + beta_i rounded into out_T.
// reuse_factor > 1: `lanes` copies of each multiplier serve a row in reuse_factor cycles; the sums
// of row t and the outputs of row t-1 share a step, so a call takes rows + 1 steps.
// hwprune/ops/layernorm.py is the bit-exact reference.
#ifndef HWP_LAYERNORM_H
#define HWP_LAYERNORM_H

#include "common.h"

namespace hwp {

// A small exact integer as long long, from either representation of sums_t.
inline long long j_index(long long v) { return v; }
template <int W>
inline long long j_index(const ap_int<W> &v) { return v.to_int64(); }

// The row's scale from its sums: v = n Q - S^2 + E = m 4^k, inv = inv_table[floor(m N / 4)].
template <class CFG>
void layernorm_scale(typename CFG::sums_t s, typename CFG::sums_t q, const typename CFG::inv_rom_t inv_table[CFG::n_table],
                     long long &inv, int &k) {
#pragma HLS INLINE
    typedef typename CFG::sums_t sums_t;
    sums_t v = (sums_t)CFG::n * q - s * s + CFG::eps_raw();
    if (v < 1) v = 1;
    // Leading one of v (a priority encoder in hardware), then v = m * 4^k.
    int msb = 0;
LayerNormMsb:
    for (int b = 0; b < CFG::v_bits - 1; b++) {
        if (((v >> b) & 1) != 0) msb = b;
    }
    k = msb / 2;
    const int sh = 2 * k + 2 - CFG::log_n_table;
    const sums_t j = sh >= 0 ? (sums_t)(v >> sh) : (sums_t)(v << (-sh));
    inv = (long long)inv_table[j_index(j)];
}

// One output element: z = (n x - S) inv truncated to z_frac bits, y = z gamma + beta rounded once.
template <class CFG, class out_T>
out_T layernorm_element(typename CFG::sums_t raw, typename CFG::sums_t s, long long inv, int k,
                        typename CFG::gamma_rom_t gamma, typename CFG::beta_rom_t beta) {
#pragma HLS INLINE
    typedef typename CFG::sums_t sums_t;
    const sums_t d = (sums_t)CFG::n * raw - s;
    const sums_t zw = (d * (sums_t)inv) >> (CFG::inv_frac + k - CFG::z_frac);  // floor, as the reference
    const long long z = j_index(zw);
    const long long g = (long long)gamma;
    const long long b = (long long)beta;
    const long long acc = ((z * g) << (CFG::acc_frac - CFG::z_frac - CFG::gamma_frac))
                          + (b << (CFG::acc_frac - CFG::beta_frac));
    return from_raw<typename CFG::acc_t>(acc);  // one rounding into the output type
}

template <class CFG, class in_T, class out_T>
void layernorm_row(const in_T x[CFG::n], out_T y[CFG::n], const typename CFG::inv_rom_t inv_table[CFG::n_table],
                   const typename CFG::gamma_rom_t gamma[CFG::n], const typename CFG::beta_rom_t beta[CFG::n]) {
#pragma HLS INLINE
    // S, Q, V, D and D * inv are exact in sums_t: long long up to 62 bits, else ap_int.
    typedef typename CFG::sums_t sums_t;
    sums_t raw[CFG::n];
    sums_t s = 0, q = 0;
LayerNormSums:
    for (int i = 0; i < CFG::n; i++) {
        raw[i] = to_raw(x[i]);
        s += raw[i];
        q += raw[i] * raw[i];
    }
    long long inv;
    int k;
    layernorm_scale<CFG>(s, q, inv_table, inv, k);
LayerNormOut:
    for (int i = 0; i < CFG::n; i++) {
        y[i] = layernorm_element<CFG, out_T>(raw[i], s, inv, k, gamma[i], beta[i]);
    }
}

// The scale of a row whose sums are done, waiting for its output pass (reuse_factor > 1); its
// raw inputs wait in a row buffer beside it.
template <class CFG>
struct layernorm_pending {
    typename CFG::sums_t s;
    long long inv;
    int k;
};

// One step of the time-shared kernel: reuse_factor cycles in which lane m serves elements
// m * reuse_factor + r, accumulating the sums of the incoming row into `cur` and writing the
// outputs of the previous row from `prev`. Each multiplier kind has `lanes` instances.
template <class CFG, class in_T, class out_T>
void layernorm_step(const in_T x[CFG::n], out_T y[CFG::n], bool has_in, bool has_out, typename CFG::sums_t cur_raw[CFG::n],
                    layernorm_pending<CFG> &cur, const typename CFG::sums_t prev_raw[CFG::n],
                    const layernorm_pending<CFG> &prev, const typename CFG::inv_rom_t inv_table[CFG::n_table],
                    const typename CFG::gamma_rom_t gamma[CFG::n], const typename CFG::beta_rom_t beta[CFG::n]) {
#pragma HLS INLINE
    const int mult_limit = 3 * CFG::lanes;
#pragma HLS ALLOCATION operation instances = mul limit = mult_limit
    typedef typename CFG::sums_t sums_t;
    sums_t s = 0, q = 0;
LayerNormReuse:
    for (int r = 0; r < CFG::reuse_factor; r++) {
#pragma HLS PIPELINE II = 1
        HWP_COUNT_CYCLES(CFG, 1);
    LayerNormLanes:
        for (int m = 0; m < CFG::lanes; m++) {
#pragma HLS UNROLL
            const int i = m * CFG::reuse_factor + r;
            if (i < CFG::n) {
                if (has_in) {
                    const sums_t raw = to_raw(x[i]);
                    cur_raw[i] = raw;
                    s += raw;
                    q += raw * raw;
                }
                if (has_out) y[i] = layernorm_element<CFG, out_T>(prev_raw[i], prev.s, prev.inv, prev.k, gamma[i], beta[i]);
            }
        }
    }
    if (has_in) {
        cur.s = s;
        layernorm_scale<CFG>(s, q, inv_table, cur.inv, cur.k);
    }
}

template <class CFG, class in_T, class out_T>
void layernorm(const in_T x[CFG::size], out_T y[CFG::size], const typename CFG::inv_rom_t inv_table[CFG::n_table],
               const typename CFG::gamma_rom_t gamma[CFG::n], const typename CFG::beta_rom_t beta[CFG::n]) {
    // gamma and beta: a bank per lane (complete at reuse_factor 1), as the estimate costs them.
    const int lanes = CFG::lanes;
#pragma HLS ARRAY_PARTITION variable = gamma type = block factor = lanes dim = 1
#pragma HLS ARRAY_PARTITION variable = beta type = block factor = lanes dim = 1
    HWP_COUNT_CALL(CFG);
    const int rows = CFG::size / CFG::n;
    if (CFG::reuse_factor > 1) {
        // Two row buffers, block-partitioned by lane (each lane reads its reuse_factor elements).
        layernorm_pending<CFG> pend[2];
        typename CFG::sums_t raw_even[CFG::n], raw_odd[CFG::n];
#pragma HLS ARRAY_PARTITION variable = raw_even type = block factor = lanes
#pragma HLS ARRAY_PARTITION variable = raw_odd type = block factor = lanes
    LayerNormSteps:
        for (int t = 0; t <= rows; t++) {
            const int in_row = t < rows ? t : 0, out_row = t > 0 ? t - 1 : 0;
            layernorm_step<CFG, in_T, out_T>(x + in_row * CFG::n, y + out_row * CFG::n, t < rows, t > 0,
                                             t & 1 ? raw_odd : raw_even, pend[t & 1], t & 1 ? raw_even : raw_odd,
                                             pend[(t + 1) & 1], inv_table, gamma, beta);
        }
        return;
    }
LayerNormRows:
    for (int r = 0; r < rows; r++) {
        // Rows share the table and the parameters: one row per cycle, as the estimate charges.
        HWP_COUNT_CYCLES(CFG, 1);
        layernorm_row<CFG, in_T, out_T>(x + r * CFG::n, y + r * CFG::n, inv_table, gamma, beta);
    }
}

template <class CFG, class in_T, class out_T>
void layernorm(hls::stream<vec<in_T, CFG::n> > &x, hls::stream<vec<out_T, CFG::n> > &y,
               const typename CFG::inv_rom_t inv_table[CFG::n_table], const typename CFG::gamma_rom_t gamma[CFG::n],
               const typename CFG::beta_rom_t beta[CFG::n]) {
    // gamma and beta: a bank per lane (complete at reuse_factor 1), as the estimate costs them.
    const int lanes = CFG::lanes;
#pragma HLS ARRAY_PARTITION variable = gamma type = block factor = lanes dim = 1
#pragma HLS ARRAY_PARTITION variable = beta type = block factor = lanes dim = 1
    HWP_COUNT_CALL(CFG);
    const int rows = CFG::size / CFG::n;
    if (CFG::reuse_factor > 1) {
        layernorm_pending<CFG> pend[2];
        typename CFG::sums_t raw_even[CFG::n], raw_odd[CFG::n];
#pragma HLS ARRAY_PARTITION variable = raw_even type = block factor = lanes
#pragma HLS ARRAY_PARTITION variable = raw_odd type = block factor = lanes
    LayerNormStreamSteps:
        for (int t = 0; t <= rows; t++) {
            vec<in_T, CFG::n> in;
            vec<out_T, CFG::n> out;
            if (t < rows) {
                in = x.read();
                HWP_COUNT_READ(CFG);
            }
            layernorm_step<CFG, in_T, out_T>(in.data, out.data, t < rows, t > 0, t & 1 ? raw_odd : raw_even, pend[t & 1],
                                             t & 1 ? raw_even : raw_odd, pend[(t + 1) & 1], inv_table, gamma, beta);
            if (t > 0) {
                y.write(out);
                HWP_COUNT_WRITE(CFG);
            }
        }
        return;
    }
LayerNormWords:
    for (int r = 0; r < rows; r++) {
#pragma HLS PIPELINE II = 1
        HWP_COUNT_CYCLES(CFG, 1);
        vec<in_T, CFG::n> in = x.read();
        HWP_COUNT_READ(CFG);
        vec<out_T, CFG::n> out;
        layernorm_row<CFG, in_T, out_T>(in.data, out.data, inv_table, gamma, beta);
        y.write(out);
        HWP_COUNT_WRITE(CFG);
    }
}

}  // namespace hwp

#endif
