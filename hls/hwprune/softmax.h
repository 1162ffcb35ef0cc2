// Softmax over the innermost axis (rows of n elements), table based and exact in integers:
//   e_i = exp_table[(max - x_i) binned]  (0 beyond the table range; the max gives exactly 1)
//   s = sum e_i = m * 2^k with m in [1, 2);  1/s = recip_table[m binned] * 2^-k
//   y_i = e_i * (1/s), rounded once into the output type.
#ifndef HWP_SOFTMAX_H
#define HWP_SOFTMAX_H

#include "common.h"

namespace hwp {

// keep[i]: key i takes part (a padding mask clears it; the caller keeps all keys of a row
// whose keys are all padding).
template <class CFG, class in_T, class out_T>
void softmax_row(const in_T x[CFG::n], out_T y[CFG::n], const bool keep[CFG::n],
                 const typename CFG::exp_rom_t exp_table[CFG::n_table],
                 const typename CFG::recip_rom_t recip_table[CFG::n_table]) {
#pragma HLS INLINE
    in_T mx = x[0];
    bool any = false;
SoftmaxMax:
    for (int i = 0; i < CFG::n; i++) {
        if (keep[i] && (!any || x[i] > mx)) mx = x[i];
        any = any || keep[i];
    }
    typename CFG::exp_t e[CFG::n];
    typename CFG::sum_t s = 0;
SoftmaxExp:
    for (int i = 0; i < CFG::n; i++) {
        // -d = max - x >= 0, exact (one more bit, two for an unsigned input); the bin is
        // floor(-d * 2^s), a small integer below the table size inside the range. A padded
        // key's exponential is 0.
        const ap_fixed<in_T::width + 2, in_T::iwidth + 2> neg_d = mx - x[i];
        if (!keep[i] || neg_d >= CFG::range) {
            e[i] = 0;
        } else {
            long long idx = shift_floor<CFG::shift>(raw_bits(neg_d));
            if (idx > CFG::n_table - 1) idx = CFG::n_table - 1;
            e[i] = from_raw<typename CFG::exp_t>(exp_table[idx]);
        }
        s += e[i];
    }
    // Normalise s = m * 2^k: find its leading one (a priority encoder in hardware).
    ap_uint<CFG::sum_bits> sb;
    sb.range(CFG::sum_bits - 1, 0) = s.range(CFG::sum_bits - 1, 0);
    int msb = 0;
SoftmaxMsb:
    for (int b = 0; b < CFG::sum_bits; b++) {
        if (sb[b]) msb = b;
    }
    const long long below = (long long)sb.to_uint64() - (1LL << msb);
    const long long j = msb >= CFG::log_n_table ? (below >> (msb - CFG::log_n_table)) : (below << (CFG::log_n_table - msb));
    const typename CFG::recip_t inv = from_raw<typename CFG::recip_t>(recip_table[j]);
    const int k = msb - CFG::exp_frac;
SoftmaxOut:
    for (int i = 0; i < CFG::n; i++) {
        typename CFG::prod_t p = e[i] * inv;  // exact: enough fraction bits for the shift below
        p = p >> k;
        y[i] = cast<out_T>(p);
    }
}

// Which keys of a padding mask take part (all of them when every key is padding).
template <class CFG, class m_T>
void mask_keys(const m_T m[CFG::n], bool keep[CFG::n]) {
#pragma HLS INLINE
    bool any = false;
    for (int i = 0; i < CFG::n; i++) any = any || (m[i] != 0);
    for (int i = 0; i < CFG::n; i++) keep[i] = !any || (m[i] != 0);
}

template <class CFG, class in_T, class out_T>
void softmax(const in_T x[CFG::size], out_T y[CFG::size], const typename CFG::exp_rom_t exp_table[CFG::n_table],
             const typename CFG::recip_rom_t recip_table[CFG::n_table]) {
    HWP_COUNT_CALL(CFG);
    bool keep[CFG::n];
    for (int i = 0; i < CFG::n; i++) keep[i] = true;
SoftmaxRows:
    for (int r = 0; r < CFG::size / CFG::n; r++) {
        // Unrolled inside the pipelined top, but the rows share the exp/reciprocal tables
        // (ceil(n/2) copies serve one row): count what the estimate charges, a cycle per row.
        HWP_COUNT_CYCLES(CFG, 1);
        softmax_row<CFG, in_T, out_T>(x + r * CFG::n, y + r * CFG::n, keep, exp_table, recip_table);
    }
}

// With a padding mask over the keys (one per sample, shared by every row).
template <class CFG, class in_T, class m_T, class out_T>
void softmax(const in_T x[CFG::size], const m_T m[CFG::n], out_T y[CFG::size],
             const typename CFG::exp_rom_t exp_table[CFG::n_table], const typename CFG::recip_rom_t recip_table[CFG::n_table]) {
    HWP_COUNT_CALL(CFG);
    bool keep[CFG::n];
    mask_keys<CFG, m_T>(m, keep);
SoftmaxMaskedRows:
    for (int r = 0; r < CFG::size / CFG::n; r++) {
        HWP_COUNT_CYCLES(CFG, 1);
        softmax_row<CFG, in_T, out_T>(x + r * CFG::n, y + r * CFG::n, keep, exp_table, recip_table);
    }
}

template <class CFG, class in_T, class out_T>
void softmax(hls::stream<vec<in_T, CFG::n> > &x, hls::stream<vec<out_T, CFG::n> > &y,
             const typename CFG::exp_rom_t exp_table[CFG::n_table], const typename CFG::recip_rom_t recip_table[CFG::n_table]) {
    HWP_COUNT_CALL(CFG);
SoftmaxWords:
    for (int r = 0; r < CFG::size / CFG::n; r++) {
#pragma HLS PIPELINE
        HWP_COUNT_CYCLES(CFG, 1);  // no II given: the target is 1
        vec<in_T, CFG::n> in = x.read();
        HWP_COUNT_READ(CFG);
        vec<out_T, CFG::n> out;
        bool keep[CFG::n];
        for (int i = 0; i < CFG::n; i++) keep[i] = true;
        softmax_row<CFG, in_T, out_T>(in.data, out.data, keep, exp_table, recip_table);
        y.write(out);
        HWP_COUNT_WRITE(CFG);
    }
}

// io_stream with a padding mask: its one word per sample is read with the first row.
template <class CFG, class in_T, class m_T, class out_T>
void softmax(hls::stream<vec<in_T, CFG::n> > &x, hls::stream<vec<m_T, CFG::n> > &m, hls::stream<vec<out_T, CFG::n> > &y,
             const typename CFG::exp_rom_t exp_table[CFG::n_table], const typename CFG::recip_rom_t recip_table[CFG::n_table]) {
    HWP_COUNT_CALL(CFG);
    bool keep[CFG::n];
#pragma HLS ARRAY_PARTITION variable = keep complete
SoftmaxMaskedWords:
    for (int r = 0; r < CFG::size / CFG::n; r++) {
#pragma HLS PIPELINE
        HWP_COUNT_CYCLES(CFG, 1);
        if (r == 0) {
            vec<m_T, CFG::n> mw = m.read();
            HWP_COUNT_READ(CFG);
            mask_keys<CFG, m_T>(mw.data, keep);
        }
        vec<in_T, CFG::n> in = x.read();
        HWP_COUNT_READ(CFG);
        vec<out_T, CFG::n> out;
        softmax_row<CFG, in_T, out_T>(in.data, out.data, keep, exp_table, recip_table);
        y.write(out);
        HWP_COUNT_WRITE(CFG);
    }
}

}  // namespace hwp

#endif
