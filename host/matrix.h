/* matrix.h: a weight matrix on the device, in one buffer or, where the device allows less in
 * one allocation than the matrix needs, in pieces of whole rows; and the products, lookups and
 * fills that take one, a launch per piece. Internal to host/.
 *
 * A GLU pair (fc1 and the gate, `halves`) keeps the same rows of both halves in each piece,
 * fc1's first, so that every piece is itself a stacked pair for the project kernel. A matrix in
 * one piece is laid out exactly as before pieces existed: [rows, cols], the halves one after the
 * other. */
#ifndef RN_MATRIX_H
#define RN_MATRIX_H

#include "dtype.h"
#include "ops.h"

typedef struct rn_matrix {
    rt_buffer *pieces;      /* [count] */
    int64_t count;
    int64_t rows, cols;     /* the whole matrix: a GLU pair's rows are both halves */
    int64_t piece_rows;     /* the rows of each piece (of each half), a multiple of the
                               plan's granule; the last piece may hold fewer */
    bool halves;
    const char *what;       /* names it in errors */
} rn_matrix;

/* Plans (allocates nothing) a [rows, cols] matrix stored as `type` in pieces of at most `cap`
 * bytes each, cut on multiples of `granule` rows (of each half): a named error when even one
 * granule is larger than `cap`. `what` must outlive the matrix. */
rn_status rn_matrix_plan(rn_matrix *m, const char *what, int64_t rows, int64_t cols, bool halves, st_dtype type,
                         uint64_t cap, int64_t granule, rn_error *err);

/* The rows piece p holds (of each half), and its bytes as `type`. */
int64_t rn_matrix_held(const rn_matrix *m, int64_t p);
uint64_t rn_matrix_piece_bytes(const rn_matrix *m, st_dtype type, int64_t p);
/* The elements of the largest piece. */
uint64_t rn_matrix_largest_piece(const rn_matrix *m);

/* Allocates the planned pieces (zero-filled), all or none. */
rn_status rn_matrix_alloc(rt_runtime *rt, rn_matrix *m, st_dtype type);
/* Frees the pieces; the plan stays (the matrix can be allocated again). */
void rn_matrix_free(rt_runtime *rt, rn_matrix *m);

/* Rows [row, row + rows) of the whole matrix lie one after the other in `buffer` from its row
 * `at`: the longest such run from `row` that ends by `end`. */
typedef struct rn_run {
    rt_buffer *buffer;
    int64_t at, rows;
} rn_run;
rn_run rn_matrix_run(const rn_matrix *m, int64_t row, int64_t end);

/* rn_op_embed over the pieces of E: x [n, E->cols] = scale * E[tokens]. */
rn_status rn_matrix_embed(rt_runtime *rt, const rn_kernels *k, const rt_buffer *tokens, int64_t n,
                          const rn_matrix *E, float scale, rt_buffer *x);

/* The projection `p` (its W, row0 and held are set here) with every piece of W: through the
 * project kernel, or with `mma` through the small matrix-engine GEMM. Each piece's launch looks
 * ahead to the next piece, the last one's to p.ahead. */
rn_status rn_matrix_project(rt_runtime *rt, const rn_kernels *k, const rn_matrix *W, rn_projection p, bool mma,
                            rt_buffer *partial);

/* y[t, col0 + j] = x [n, in] W^T for W's rows [row0, row0 + out), y with ldy columns: a GEMM per
 * run of rows (rn_op_linear, whose widened copies go through `scratch` as many rows at a time as
 * it holds), or with `mma` on the matrix engine (rn_op_linear_mma: x then holds the activations
 * rounded to half, rn_op_engine_operand; `accumulate`: y = alpha y + x W^T). */
typedef struct rn_linear {
    const rt_buffer *x;
    int64_t n, row0, out;
    rt_buffer *y;
    int64_t ldy, col0;
    bool mma, accumulate;
    float alpha;
} rn_linear;
rn_status rn_matrix_linear(rt_runtime *rt, const rn_kernels *k, const rn_matrix *W, const rn_linear *l,
                           rt_buffer *scratch);

/* Random weights (rn_op_fill_uniform) over the whole matrix: the numbers a matrix in one piece
 * gets, whatever its pieces. */
rn_status rn_matrix_fill(rt_runtime *rt, const rn_kernels *k, rn_matrix *W, uint64_t seed, float scale);

#endif /* RN_MATRIX_H */
