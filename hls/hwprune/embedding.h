// Embedding lookup: each token id selects one row of a constant table. The table is reshaped
// into one ROM word per row (UG1399 array_reshape type=cyclic factor=dim: word r holds elements
// r*dim .. r*dim+dim-1), so a lookup is one read of vocab x (dim*width) bits — the memory the
// estimate costs (hwprune.ops.embedding.Embedding.table_memory).
#ifndef HWP_EMBEDDING_H
#define HWP_EMBEDDING_H

#include "common.h"

namespace hwp {

template <class CFG, class in_T, class out_T>
void embedding(const in_T ids[CFG::n_ids], out_T y[CFG::n_ids * CFG::dim],
               const typename CFG::table_rom_t table[CFG::vocab * CFG::dim]) {
    const int row_elems = CFG::dim;
#pragma HLS ARRAY_RESHAPE variable = table type = cyclic factor = row_elems dim = 1
    // Every id reads its row in the same cycle: a multi-port ROM (one replica per read port).
#pragma HLS BIND_STORAGE variable = table type = rom_np
    HWP_COUNT_CALL(CFG);
    // Fully unrolled (one table copy per id) inside the pipelined top: no loop sets a
    // schedule, so count what the estimate charges per call (II = 1).
    HWP_COUNT_CYCLES(CFG, 1);
EmbeddingIds:
    for (int i = 0; i < CFG::n_ids; i++) {
#pragma HLS UNROLL
        const int row = ids[i].to_int();
        for (int d = 0; d < CFG::dim; d++) {
            y[i * CFG::dim + d] = from_raw<out_T>(table[row * CFG::dim + d]);
        }
    }
}

template <class CFG, class in_T, class out_T>
void embedding(hls::stream<vec<in_T, CFG::in_word> > &ids, hls::stream<vec<out_T, CFG::dim> > &y,
               const typename CFG::table_rom_t table[CFG::vocab * CFG::dim]) {
    const int row_elems = CFG::dim;
#pragma HLS ARRAY_RESHAPE variable = table type = cyclic factor = row_elems dim = 1
    HWP_COUNT_CALL(CFG);
EmbeddingWords:
    for (int w = 0; w < CFG::n_ids / CFG::in_word; w++) {
        vec<in_T, CFG::in_word> in = ids.read();
        HWP_COUNT_READ(CFG);
        for (int i = 0; i < CFG::in_word; i++) {
#pragma HLS PIPELINE II = 1
            HWP_COUNT_CYCLES(CFG, 1);
            const int row = in[i].to_int();
            vec<out_T, CFG::dim> out;
            for (int d = 0; d < CFG::dim; d++) {
#pragma HLS UNROLL
                out[d] = from_raw<out_T>(table[row * CFG::dim + d]);
            }
            y.write(out);
            HWP_COUNT_WRITE(CFG);
        }
    }
}

// With position rows (BERT's position + token-type embeddings): position i adds row i,
// exactly, saturating or wrapping into out_T as its type says.
template <class CFG, class in_T, class out_T>
void embedding(const in_T ids[CFG::n_ids], out_T y[CFG::n_ids * CFG::dim],
               const typename CFG::table_rom_t table[CFG::vocab * CFG::dim],
               const typename CFG::table_rom_t pos[CFG::n_ids * CFG::dim]) {
    const int row_elems = CFG::dim;
#pragma HLS ARRAY_RESHAPE variable = table type = cyclic factor = row_elems dim = 1
#pragma HLS BIND_STORAGE variable = table type = rom_np
    HWP_COUNT_CALL(CFG);
    HWP_COUNT_CYCLES(CFG, 1);
EmbeddingPosIds:
    for (int i = 0; i < CFG::n_ids; i++) {
#pragma HLS UNROLL
        const int row = ids[i].to_int();
        for (int d = 0; d < CFG::dim; d++) {
            y[i * CFG::dim + d] = from_raw<out_T>(table[row * CFG::dim + d]) + from_raw<out_T>(pos[i * CFG::dim + d]);
        }
    }
}

template <class CFG, class in_T, class out_T>
void embedding(hls::stream<vec<in_T, CFG::in_word> > &ids, hls::stream<vec<out_T, CFG::dim> > &y,
               const typename CFG::table_rom_t table[CFG::vocab * CFG::dim],
               const typename CFG::table_rom_t pos[CFG::n_ids * CFG::dim]) {
    const int row_elems = CFG::dim;
#pragma HLS ARRAY_RESHAPE variable = table type = cyclic factor = row_elems dim = 1
#pragma HLS ARRAY_RESHAPE variable = pos type = cyclic factor = row_elems dim = 1
    HWP_COUNT_CALL(CFG);
EmbeddingPosWords:
    for (int w = 0; w < CFG::n_ids / CFG::in_word; w++) {
        vec<in_T, CFG::in_word> in = ids.read();
        HWP_COUNT_READ(CFG);
        for (int i = 0; i < CFG::in_word; i++) {
#pragma HLS PIPELINE II = 1
            HWP_COUNT_CYCLES(CFG, 1);
            const int row = in[i].to_int();
            const int at = w * CFG::in_word + i;
            vec<out_T, CFG::dim> out;
            for (int d = 0; d < CFG::dim; d++) {
#pragma HLS UNROLL
                out[d] = from_raw<out_T>(table[row * CFG::dim + d]) + from_raw<out_T>(pos[at * CFG::dim + d]);
            }
            y.write(out);
            HWP_COUNT_WRITE(CFG);
        }
    }
}

}  // namespace hwp

#endif
