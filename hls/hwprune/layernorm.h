// LayerNorm over the innermost axis (rows of n elements), exact in integers up to two roundings:
//   S = sum x, Q = sum x^2, D_i = n x_i - S, V = n Q - S^2 + E      (E = n^2 eps on V's grid)
//   V = m 4^k, m in [1, 4): 1/sqrt(V) = inv_table[floor(m N / 4)] 2^-k
//   z_i = D_i / sqrt(V) truncated to z_frac bits;  y_i = z_i gamma_i + beta_i rounded into out_T.
// hwprune/ops/layernorm.py is the bit-exact reference.
#ifndef HWP_LAYERNORM_H
#define HWP_LAYERNORM_H

#include "common.h"

namespace hwp {

// A small exact integer as long long, from either representation of sums_t.
inline long long j_index(long long v) { return v; }
template <int W>
inline long long j_index(const ap_int<W> &v) { return v.to_int64(); }

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
    sums_t v = (sums_t)CFG::n * q - s * s + CFG::eps_raw();
    if (v < 1) v = 1;
    // Leading one of v (a priority encoder in hardware), then v = m * 4^k.
    int msb = 0;
LayerNormMsb:
    for (int b = 0; b < CFG::v_bits - 1; b++) {
        if (((v >> b) & 1) != 0) msb = b;
    }
    const int k = msb / 2;
    const int sh = 2 * k + 2 - CFG::log_n_table;
    const sums_t j = sh >= 0 ? (sums_t)(v >> sh) : (sums_t)(v << (-sh));
    const long long inv = (long long)inv_table[j_index(j)];
LayerNormOut:
    for (int i = 0; i < CFG::n; i++) {
        const sums_t d = (sums_t)CFG::n * raw[i] - s;
        const sums_t zw = (d * (sums_t)inv) >> (CFG::inv_frac + k - CFG::z_frac);  // floor, as the reference
        const long long z = j_index(zw);
        const long long g = (long long)gamma[i];
        const long long b = (long long)beta[i];
        const long long acc = ((z * g) << (CFG::acc_frac - CFG::z_frac - CFG::gamma_frac))
                              + (b << (CFG::acc_frac - CFG::beta_frac));
        y[i] = from_raw<typename CFG::acc_t>(acc);  // one rounding into the output type
    }
}

template <class CFG, class in_T, class out_T>
void layernorm(const in_T x[CFG::size], out_T y[CFG::size], const typename CFG::inv_rom_t inv_table[CFG::n_table],
               const typename CFG::gamma_rom_t gamma[CFG::n], const typename CFG::beta_rom_t beta[CFG::n]) {
    HWP_COUNT_CALL(CFG);
LayerNormRows:
    for (int r = 0; r < CFG::size / CFG::n; r++) {
        // Rows share the table and the parameters: one row per cycle, as the estimate charges.
        HWP_COUNT_CYCLES(CFG, 1);
        layernorm_row<CFG, in_T, out_T>(x + r * CFG::n, y + r * CFG::n, inv_table, gamma, beta);
    }
}

template <class CFG, class in_T, class out_T>
void layernorm(hls::stream<vec<in_T, CFG::n> > &x, hls::stream<vec<out_T, CFG::n> > &y,
               const typename CFG::inv_rom_t inv_table[CFG::n_table], const typename CFG::gamma_rom_t gamma[CFG::n],
               const typename CFG::beta_rom_t beta[CFG::n]) {
    HWP_COUNT_CALL(CFG);
LayerNormWords:
    for (int r = 0; r < CFG::size / CFG::n; r++) {
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
