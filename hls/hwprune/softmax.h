// Softmax over the innermost axis (rows of n elements), table based and exact in integers:
//   e_i = exp_table[(max - x_i) binned]  (0 beyond the table range; the max gives exactly 1)
//   s = sum e_i = m * 2^k with m in [1, 2);  1/s = recip_table[m binned] * 2^-k
//   y_i = e_i * (1/s), rounded once into the output type.
// The exp table comes as CFG::exp_copies identical copies (exp_table[copy][entry]), one per
// CFG::exp_per_copy keys read in the same cycle (a BRAM18 has two read ports).
// io_stream, reuse_factor > 1: CFG::lanes = ceil(n / reuse_factor) lanes serve key
// r * lanes + c in cycle r of a step on lane c, for three rows at once: the max of row t, the
// exponentials and sum of row t-1, the outputs of row t-2; a call takes rows + 2 steps.
#ifndef HWP_SOFTMAX_H
#define HWP_SOFTMAX_H

#include "common.h"

namespace hwp {

// exp(x - mx) from the table: 0 for a padded key and beyond the table range.
template <class CFG, class in_T>
typename CFG::exp_t softmax_exp(const in_T &mx, const in_T &x, bool keep,
                                const typename CFG::exp_rom_t exp_table[CFG::n_table]) {
#pragma HLS INLINE
    // -d = max - x >= 0, exact (one more bit, two for an unsigned input); the bin is
    // floor(-d * 2^s), a small integer below the table size inside the range.
    const ap_fixed<in_T::width + 2, in_T::iwidth + 2> neg_d = mx - x;
    typename CFG::exp_t e;
    if (!keep || neg_d >= CFG::range) {
        e = 0;
    } else {
        long long idx = shift_floor<CFG::shift>(raw_bits(neg_d));
        if (idx > CFG::n_table - 1) idx = CFG::n_table - 1;
        e = from_raw<typename CFG::exp_t>(exp_table[idx]);
    }
    return e;
}

// 1/s = inv * 2^-k for a row's sum s = m * 2^k: its leading one (a priority encoder in
// hardware), then the reciprocal of m from the table.
template <class CFG>
void softmax_recip(const typename CFG::sum_t &s, const typename CFG::recip_rom_t recip_table[CFG::n_table],
                   typename CFG::recip_t &inv, int &k) {
#pragma HLS INLINE
    ap_uint<CFG::sum_bits> sb;
    sb.range(CFG::sum_bits - 1, 0) = s.range(CFG::sum_bits - 1, 0);
    int msb = 0;
SoftmaxMsb:
    for (int b = 0; b < CFG::sum_bits; b++) {
        if (sb[b]) msb = b;
    }
    const long long below = (long long)sb.to_uint64() - (1LL << msb);
    const long long j = msb >= CFG::log_n_table ? (below >> (msb - CFG::log_n_table)) : (below << (CFG::log_n_table - msb));
    inv = from_raw<typename CFG::recip_t>(recip_table[j]);
    k = msb - CFG::exp_frac;
}

// One output: e * (1/s), rounded once into out_T.
template <class CFG, class out_T>
out_T softmax_out(const typename CFG::exp_t &e, const typename CFG::recip_t &inv, int k) {
#pragma HLS INLINE
    typename CFG::prod_t p = e * inv;  // exact: enough fraction bits for the shift below
    p = p >> k;
    return cast<out_T>(p);
}

// keep[i]: key i takes part (a padding mask clears it; the caller keeps all keys of a row
// whose keys are all padding).
template <class CFG, class in_T, class out_T>
void softmax_row(const in_T x[CFG::n], out_T y[CFG::n], const bool keep[CFG::n],
                 const typename CFG::exp_rom_t exp_table[CFG::exp_copies][CFG::n_table],
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
        e[i] = softmax_exp<CFG, in_T>(mx, x[i], keep[i], exp_table[i / CFG::exp_per_copy]);
        s += e[i];
    }
    typename CFG::recip_t inv;
    int k;
    softmax_recip<CFG>(s, recip_table, inv, k);
SoftmaxOut:
    for (int i = 0; i < CFG::n; i++) {
        y[i] = softmax_out<CFG, out_T>(e[i], inv, k);
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
void softmax(const in_T x[CFG::size], out_T y[CFG::size], const typename CFG::exp_rom_t exp_table[CFG::exp_copies][CFG::n_table],
             const typename CFG::recip_rom_t recip_table[CFG::n_table]) {
    HWP_COUNT_CALL(CFG);
    bool keep[CFG::n];
    for (int i = 0; i < CFG::n; i++) keep[i] = true;
SoftmaxRows:
    for (int r = 0; r < CFG::size / CFG::n; r++) {
        // Unrolled inside the pipelined top, but the rows share the exp/reciprocal tables
        // (ceil(n/2) copies serve one row): count what the estimate charges, a cycle per row.
        // io_parallel has one exp table copy and no reuse factor (the generator settles it at 1).
        HWP_COUNT_CYCLES(CFG, 1);
        softmax_row<CFG, in_T, out_T>(x + r * CFG::n, y + r * CFG::n, keep, exp_table, recip_table);
    }
}

// With a padding mask over the keys (one per sample, shared by every row).
template <class CFG, class in_T, class m_T, class out_T>
void softmax(const in_T x[CFG::size], const m_T m[CFG::n], out_T y[CFG::size],
             const typename CFG::exp_rom_t exp_table[CFG::exp_copies][CFG::n_table],
             const typename CFG::recip_rom_t recip_table[CFG::n_table]) {
    HWP_COUNT_CALL(CFG);
    bool keep[CFG::n];
    mask_keys<CFG, m_T>(m, keep);
SoftmaxMaskedRows:
    for (int r = 0; r < CFG::size / CFG::n; r++) {
        HWP_COUNT_CYCLES(CFG, 1);
        softmax_row<CFG, in_T, out_T>(x + r * CFG::n, y + r * CFG::n, keep, exp_table, recip_table);
    }
}

// What the time-shared kernel (reuse_factor > 1) carries from one cycle to the next besides
// the row buffers: the running max of row t, the max of row t-1 (for its exponentials), the
// running sum of row t-1's exponentials and the reciprocal of row t-2's sum (its outputs).
template <class CFG, class in_T>
struct softmax_carry {
    in_T mx, mx_prev;
    bool any;
    typename CFG::sum_t s;
    typename CFG::recip_t inv;
    int k;
};

// Cycle r of step t: lane c serves key i = r * lanes + c of three rows. Each pass reads key i of
// its row before the next pass replaces it (the outputs of row t-2 read e[i] before row t-1's
// exponential overwrites it; row t-1's exponential reads prev[i] before row t's input does), so
// one buffer per kind serves both rows. In the step's last cycle the passes hand their row on.
template <class CFG, class in_T, class out_T>
void softmax_cycle(int r, bool has_in, bool has_exp, bool has_out, const in_T x[CFG::n], const bool keep[CFG::n],
                   out_T y[CFG::n], in_T prev[CFG::n], typename CFG::exp_t e[CFG::n], softmax_carry<CFG, in_T> &st,
                   const typename CFG::exp_rom_t exp_table[CFG::exp_copies][CFG::n_table],
                   const typename CFG::recip_rom_t recip_table[CFG::n_table]) {
#pragma HLS INLINE
SoftmaxLanes:
    for (int c = 0; c < CFG::lanes; c++) {
#pragma HLS UNROLL
        const int i = r * CFG::lanes + c;
        if (i < CFG::n) {
            if (has_out) y[i] = softmax_out<CFG, out_T>(e[i], st.inv, st.k);
            if (has_exp) {
                const typename CFG::exp_t ei = softmax_exp<CFG, in_T>(st.mx_prev, prev[i], keep[i],
                                                                      exp_table[c / CFG::exp_per_copy]);
                e[i] = ei;
                st.s += ei;
            }
            if (has_in) {
                prev[i] = x[i];
                if (keep[i] && (!st.any || x[i] > st.mx)) st.mx = x[i];
                st.any = st.any || keep[i];
            }
        }
    }
    if (r == CFG::reuse_factor - 1) {
        if (has_exp) softmax_recip<CFG>(st.s, recip_table, st.inv, st.k);
        st.mx_prev = st.mx;
        st.s = 0;
        st.any = false;
    }
}

template <class CFG, class in_T>
void softmax_carry_init(softmax_carry<CFG, in_T> &st) {
#pragma HLS INLINE
    st.mx = 0;
    st.mx_prev = 0;
    st.any = false;
    st.s = 0;
    st.inv = 0;
    st.k = 0;
}

// io_stream, reuse_factor > 1. The word of row t is read in the first cycle of step t and held;
// row t-2's output word leaves in the last cycle of step t. Reads and writes sit inside the
// pipelined loop, so the nest is perfect and Vitis HLS flattens it into one II = 1 pipeline of
// (rows + 2) * reuse_factor trips.
template <class CFG, class in_T, class out_T>
void softmax_reuse(hls::stream<vec<in_T, CFG::n> > &x, hls::stream<vec<out_T, CFG::n> > &y,
                   const typename CFG::exp_rom_t exp_table[CFG::exp_copies][CFG::n_table],
                   const typename CFG::recip_rom_t recip_table[CFG::n_table]) {
#pragma HLS INLINE
    const int rows = CFG::size / CFG::n, lanes = CFG::lanes;
    in_T prev[CFG::n];
    typename CFG::exp_t e[CFG::n];
    // A bank per lane: lane c reads and writes keys c, c + lanes, ... (one of them a cycle).
#pragma HLS ARRAY_PARTITION variable = prev type = cyclic factor = lanes
#pragma HLS ARRAY_PARTITION variable = e type = cyclic factor = lanes
    bool keep[CFG::n];
    for (int i = 0; i < CFG::n; i++) keep[i] = true;
    softmax_carry<CFG, in_T> st;
    softmax_carry_init<CFG, in_T>(st);
    vec<in_T, CFG::n> in;
    vec<out_T, CFG::n> out;
SoftmaxReuseSteps:
    for (int t = 0; t < rows + 2; t++) {
    SoftmaxReuseCycles:
        for (int r = 0; r < CFG::reuse_factor; r++) {
#pragma HLS PIPELINE II = 1
            HWP_COUNT_CYCLES(CFG, 1);
            if (r == 0 && t < rows) {
                in = x.read();
                HWP_COUNT_READ(CFG);
            }
            softmax_cycle<CFG, in_T, out_T>(r, t < rows, t >= 1 && t <= rows, t >= 2, in.data, keep, out.data, prev, e, st,
                                            exp_table, recip_table);
            if (r == CFG::reuse_factor - 1 && t >= 2) {
                y.write(out);
                HWP_COUNT_WRITE(CFG);
            }
        }
    }
}

// The same with a padding mask: its one word per sample is read with the first row.
template <class CFG, class in_T, class m_T, class out_T>
void softmax_reuse(hls::stream<vec<in_T, CFG::n> > &x, hls::stream<vec<m_T, CFG::n> > &m,
                   hls::stream<vec<out_T, CFG::n> > &y, const typename CFG::exp_rom_t exp_table[CFG::exp_copies][CFG::n_table],
                   const typename CFG::recip_rom_t recip_table[CFG::n_table]) {
#pragma HLS INLINE
    const int rows = CFG::size / CFG::n, lanes = CFG::lanes;
    in_T prev[CFG::n];
    typename CFG::exp_t e[CFG::n];
#pragma HLS ARRAY_PARTITION variable = prev type = cyclic factor = lanes
#pragma HLS ARRAY_PARTITION variable = e type = cyclic factor = lanes
    bool keep[CFG::n];
#pragma HLS ARRAY_PARTITION variable = keep complete
    softmax_carry<CFG, in_T> st;
    softmax_carry_init<CFG, in_T>(st);
    vec<in_T, CFG::n> in;
    vec<out_T, CFG::n> out;
SoftmaxMaskedReuseSteps:
    for (int t = 0; t < rows + 2; t++) {
    SoftmaxMaskedReuseCycles:
        for (int r = 0; r < CFG::reuse_factor; r++) {
#pragma HLS PIPELINE II = 1
            HWP_COUNT_CYCLES(CFG, 1);
            if (r == 0 && t == 0) {
                vec<m_T, CFG::n> mw = m.read();
                HWP_COUNT_READ(CFG);
                mask_keys<CFG, m_T>(mw.data, keep);
            }
            if (r == 0 && t < rows) {
                in = x.read();
                HWP_COUNT_READ(CFG);
            }
            softmax_cycle<CFG, in_T, out_T>(r, t < rows, t >= 1 && t <= rows, t >= 2, in.data, keep, out.data, prev, e, st,
                                            exp_table, recip_table);
            if (r == CFG::reuse_factor - 1 && t >= 2) {
                y.write(out);
                HWP_COUNT_WRITE(CFG);
            }
        }
    }
}

template <class CFG, class in_T, class out_T>
void softmax(hls::stream<vec<in_T, CFG::n> > &x, hls::stream<vec<out_T, CFG::n> > &y,
             const typename CFG::exp_rom_t exp_table[CFG::exp_copies][CFG::n_table],
             const typename CFG::recip_rom_t recip_table[CFG::n_table]) {
    // Each exp table copy its own ROM, read by exp_per_copy lanes.
#pragma HLS ARRAY_PARTITION variable = exp_table type = complete dim = 1
    HWP_COUNT_CALL(CFG);
    if (CFG::reuse_factor > 1) {
        softmax_reuse<CFG, in_T, out_T>(x, y, exp_table, recip_table);
        return;
    }
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
             const typename CFG::exp_rom_t exp_table[CFG::exp_copies][CFG::n_table],
             const typename CFG::recip_rom_t recip_table[CFG::n_table]) {
#pragma HLS ARRAY_PARTITION variable = exp_table type = complete dim = 1
    HWP_COUNT_CALL(CFG);
    if (CFG::reuse_factor > 1) {
        softmax_reuse<CFG, in_T, m_T, out_T>(x, m, y, exp_table, recip_table);
        return;
    }
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
