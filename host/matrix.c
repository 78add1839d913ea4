/* matrix.c: weight matrices in pieces of whole rows (matrix.h). */
#include "matrix.h"

#include <stdlib.h>
#include <string.h>

static int64_t half_rows(const rn_matrix *m) {
    return m->halves ? m->rows / 2 : m->rows;
}

rn_status rn_matrix_plan(rn_matrix *m, const char *what, int64_t rows, int64_t cols, bool halves, st_dtype type,
                         uint64_t cap, int64_t granule, rn_error *err) {
    memset(m, 0, sizeof *m);
    m->rows = rows;
    m->cols = cols;
    m->halves = halves;
    m->what = what;
    const int64_t half = half_rows(m), per = halves ? 2 : 1;
    m->piece_rows = half;
    if (rn_storage_bytes(type, (uint64_t)rows * (uint64_t)cols) > cap) {
        /* The largest multiple of the granule whose piece fits: the storage of whole granules
         * is linear in their count (the granule keeps quantized pieces whole blocks). */
        const uint64_t granule_bytes = rn_storage_bytes(type, (uint64_t)(per * granule) * (uint64_t)cols);
        int64_t fit = granule * (int64_t)(cap / granule_bytes);
        if (fit < 1) {
            const int64_t least = granule < half ? granule : half;
            return rn_fail(err, RN_ERR_DEVICE_MEMORY,
                           "the %s (%lld x %lld) cannot be split finely enough: %lld rows%s need %llu bytes in one "
                           "buffer, and the device allows %llu bytes per allocation",
                           what, (long long)rows, (long long)cols, (long long)least, halves ? " of each half" : "",
                           (unsigned long long)rn_storage_bytes(type, (uint64_t)(per * least) * (uint64_t)cols),
                           (unsigned long long)cap);
        }
        if (fit < half) m->piece_rows = fit;
    }
    m->count = (half + m->piece_rows - 1) / m->piece_rows;
    m->pieces = calloc((size_t)m->count, sizeof *m->pieces);
    if (!m->pieces) return rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "no host memory for the pieces of the %s", what);
    return RN_OK;
}

int64_t rn_matrix_held(const rn_matrix *m, int64_t p) {
    const int64_t rest = half_rows(m) - p * m->piece_rows;
    return rest < m->piece_rows ? rest : m->piece_rows;
}

uint64_t rn_matrix_piece_bytes(const rn_matrix *m, st_dtype type, int64_t p) {
    return rn_storage_bytes(type, (uint64_t)((m->halves ? 2 : 1) * rn_matrix_held(m, p)) * (uint64_t)m->cols);
}

uint64_t rn_matrix_largest_piece(const rn_matrix *m) {
    return (uint64_t)((m->halves ? 2 : 1) * m->piece_rows) * (uint64_t)m->cols;
}

rn_status rn_matrix_alloc(rt_runtime *rt, rn_matrix *m, st_dtype type) {
    for (int64_t p = 0; p < m->count; p++) {
        rn_status st = rt_buffer_alloc(rt, (size_t)rn_matrix_piece_bytes(m, type, p), m->what, &m->pieces[p]);
        if (st != RN_OK) {
            for (int64_t q = 0; q < p; q++) rt_buffer_free(rt, &m->pieces[q]);
            return st;
        }
    }
    return RN_OK;
}

void rn_matrix_free(rt_runtime *rt, rn_matrix *m) {
    for (int64_t p = 0; m->pieces && p < m->count; p++) rt_buffer_free(rt, &m->pieces[p]);
    free(m->pieces);
    m->pieces = NULL;
    m->count = 0;
}

rn_run rn_matrix_run(const rn_matrix *m, int64_t row, int64_t end) {
    const int64_t half = half_rows(m), second = row >= half, r = row - second * half;
    const int64_t p = r / m->piece_rows, held = rn_matrix_held(m, p), in = r - p * m->piece_rows;
    /* In one piece the halves follow each other: a run may cross from the first into the second. */
    int64_t rows = m->count == 1 ? m->rows - row : held - in;
    if (rows > end - row) rows = end - row;
    return (rn_run){&m->pieces[p], second * held + in, rows};
}

rn_status rn_matrix_embed(rt_runtime *rt, const rn_kernels *k, const rt_buffer *tokens, int64_t n,
                          const rn_matrix *E, float scale, rt_buffer *x) {
    for (int64_t p = 0; p < E->count; p++) {
        rn_status st = rn_op_embed(rt, k, tokens, n, &E->pieces[p], p * E->piece_rows, rn_matrix_held(E, p), E->cols,
                                   scale, x);
        if (st != RN_OK) return st;
    }
    return RN_OK;
}

rn_status rn_matrix_project(rt_runtime *rt, const rn_kernels *k, const rn_matrix *W, rn_projection p, bool mma,
                            rt_buffer *partial) {
    const rt_buffer *after = p.ahead;  /* what the launch after the last piece reads */
    for (int64_t i = 0; i < W->count; i++) {
        p.W = &W->pieces[i];
        p.ahead = i + 1 < W->count ? &W->pieces[i + 1] : after;
        p.row0 = i * W->piece_rows;
        p.held = rn_matrix_held(W, i);
        rn_status st = mma ? rn_op_project_mma(rt, k, &p, partial) : rn_op_project(rt, k, &p);
        if (st != RN_OK) return st;
    }
    return RN_OK;
}

rn_status rn_matrix_linear(rt_runtime *rt, const rn_kernels *k, const rn_matrix *W, const rn_linear *l,
                           rt_buffer *scratch) {
    const int64_t end = l->row0 + l->out, cols = W->cols;
    /* Half-precision and quantized rows are widened to fp32 for SGEMM: as many at a time as the
     * scratch holds. */
    if (l->accumulate && !l->mma)
        return rn_fail(rt->err, RN_ERR_INVALID_ARGUMENT, "only the matrix engine's product adds to its output");
    const bool widens = !l->mma && k->weights != ST_F32;
    const int64_t step = widens ? (int64_t)((scratch ? scratch->bytes : 0) / ((size_t)cols * sizeof(float))) : end;
    if (step < 1)
        return rn_fail(rt->err, RN_ERR_INVALID_ARGUMENT, "no fp32 scratch for a row of the %s (%lld columns)", W->what,
                       (long long)cols);
    for (int64_t row = l->row0; row < end;) {
        const rn_run run = rn_matrix_run(W, row, end);
        for (int64_t done = 0; done < run.rows;) {
            const int64_t rows = run.rows - done < step ? run.rows - done : step;
            const int64_t col = l->col0 + row - l->row0 + done;
            rn_status st = l->mma ? rn_op_linear_mma(rt, k, l->x, l->n, cols, run.buffer, run.at + done, rows, l->y,
                                                     l->ldy, col, l->accumulate, l->alpha)
                                  : rn_op_linear(rt, k, l->x, l->n, cols, run.buffer, run.at + done, rows, scratch,
                                                 l->y, l->ldy, col);
            if (st != RN_OK) return st;
            done += rows;
        }
        row += run.rows;
    }
    return RN_OK;
}

rn_status rn_matrix_fill(rt_runtime *rt, const rn_kernels *k, rn_matrix *W, uint64_t seed, float scale) {
    for (int64_t row = 0; row < W->rows;) {
        const rn_run run = rn_matrix_run(W, row, W->rows);
        rn_status st = rn_op_fill_uniform(rt, k, run.buffer, (uint64_t)run.rows * (uint64_t)W->cols, seed, scale,
                                          (uint64_t)row * (uint64_t)W->cols, (uint64_t)run.at * (uint64_t)W->cols);
        if (st != RN_OK) return st;
        row += run.rows;
    }
    return RN_OK;
}
