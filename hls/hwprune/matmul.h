// Product of two activations: y[l][m][n] = sum_k a[l][m][k] * bt[l][n][k] (bt: b transposed, so
// both operands are rows of K). Reuse factor RF: ceil(K*N/RF) multipliers serve one row of a in
// RF cycles. hwprune/ops/matmul.py is the bit-exact reference.
#ifndef HWP_MATMUL_H
#define HWP_MATMUL_H

#include "common.h"

namespace hwp {

template <class CFG, class a_T, class b_T, class out_T>
void matmul_row(const a_T a[CFG::k], const b_T bt[CFG::n * CFG::k], out_T y[CFG::n]) {
#pragma HLS INLINE
    const int mult_limit = CFG::n_mult;
#pragma HLS ALLOCATION operation instances = mul limit = mult_limit
    typename CFG::accum_t acc[CFG::n];
#pragma HLS ARRAY_PARTITION variable = acc complete
MatMulInit:
    for (int o = 0; o < CFG::n; o++) {
#pragma HLS UNROLL
        acc[o] = 0;
    }
    // Product p = o*K + i is served by multiplier p % n_mult in cycle p / n_mult: in io_stream bᵀ
    // is banked cyclically by n_mult (bank p % n_mult, address p / n_mult), so every multiplier
    // reads its own bank at one address a cycle — no two products of a cycle share a bank.
MatMulReuse:
    for (int r = 0; r < CFG::reuse_factor; r++) {
#pragma HLS PIPELINE II = 1
        HWP_COUNT_CYCLES(CFG, 1);
    MatMulMult:
        for (int m = 0; m < CFG::n_mult; m++) {
#pragma HLS UNROLL
            const int p = r * CFG::n_mult + m;
            if (p < CFG::k * CFG::n) {
                const int o = p / CFG::k;
                const int i = p % CFG::k;
                acc[o] += mul<CFG::mult_impl, typename CFG::accum_t>(a[i], bt[p]);
            }
        }
    }
MatMulOut:
    for (int o = 0; o < CFG::n; o++) {
#pragma HLS UNROLL
        y[o] = acc[o];  // the one rounding into out_T
    }
}

// io_parallel: a (lead, M, K), bt (lead, N, K), y (lead, M, N) as flat arrays.
template <class CFG, class a_T, class b_T, class out_T>
void matmul(const a_T a[CFG::lead * CFG::m * CFG::k], const b_T bt[CFG::lead * CFG::n * CFG::k],
            out_T y[CFG::lead * CFG::m * CFG::n]) {
    HWP_COUNT_CALL(CFG);
MatMulLead:
    for (int l = 0; l < CFG::lead; l++) {
    MatMulRows:
        for (int r = 0; r < CFG::m; r++) {
            matmul_row<CFG, a_T, b_T, out_T>(a + (l * CFG::m + r) * CFG::k, bt + l * CFG::n * CFG::k,
                                             y + (l * CFG::m + r) * CFG::n);
        }
    }
}

// io_stream: per leading index, N words of bt are stored, then M words of a stream through.
template <class CFG, class a_T, class b_T, class out_T>
void matmul(hls::stream<vec<a_T, CFG::k> > &a, hls::stream<vec<b_T, CFG::k> > &b, hls::stream<vec<out_T, CFG::n> > &y) {
    HWP_COUNT_CALL(CFG);
    b_T bt[CFG::n * CFG::k];
    const int banks = CFG::n_mult;
#pragma HLS ARRAY_PARTITION variable = bt cyclic factor = banks
    vec<b_T, CFG::k> w;  // the word being stored (held while load_steps > 1)
#pragma HLS ARRAY_PARTITION variable = w.data complete
MatMulLead:
    for (int l = 0; l < CFG::lead; l++) {
    MatMulLoad:
        // A word of K elements goes into K different banks: all at once when there are at least
        // K banks, else n_mult elements a cycle over load_steps cycles (one write per bank).
        for (int t = 0; t < CFG::n * CFG::load_steps; t++) {
#pragma HLS PIPELINE II = 1
            HWP_COUNT_CYCLES(CFG, 1);
            const int o = t / CFG::load_steps;
            const int c = t % CFG::load_steps;
            if (c == 0) {
                w = b.read();
                HWP_COUNT_READ(CFG);
            }
            for (int j = 0; j < CFG::load_lanes; j++) {
#pragma HLS UNROLL
                const int i = c * CFG::load_lanes + j;
                if (i < CFG::k) bt[o * CFG::k + i] = w[i];
            }
        }
    MatMulRows:
        for (int r = 0; r < CFG::m; r++) {
            vec<a_T, CFG::k> row = a.read();
            HWP_COUNT_READ(CFG);
            vec<out_T, CFG::n> out;
#pragma HLS ARRAY_PARTITION variable = out.data complete
            matmul_row<CFG, a_T, b_T, out_T>(row.data, bt, out.data);
            y.write(out);
            HWP_COUNT_WRITE(CFG);
        }
    }
}

}  // namespace hwp

#endif
