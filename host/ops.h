/*
 * ops.h: one function per kernel (or CLBlast product), the building blocks of a forward pass.
 *
 * The engine chains these; tests/test_ops.c runs each against the plain-C reference. All
 * enqueue on the runtime's in-order queue and return without waiting. Shapes are in elements;
 * layouts are those of tests/ref.h.
 */
#ifndef RN_OPS_H
#define RN_OPS_H

#include "rt.h"
#include "retnet.h"
#include "safetensors.h"

/* The program built for one head shape and one weight storage type, and its kernels. */
typedef struct rn_kernels {
    cl_program program;
    size_t wg;            /* RN_WG: work-items of the reducing kernels */
    int64_t dk, dv;
    int64_t step_split;   /* RN_STEP_SPLIT: parts of the key dimension in retention_step, at
                             most RN_WG (a group holds every part of its columns) */
    int64_t step_vec;     /* RN_STEP_VEC: value columns per work-item there (4 or 1) */
    int64_t step_batch;   /* RN_STEP_BATCH: state rows it loads at a time */
    bool gemm;            /* CLBlast's SGEMM runs here: its kernels need work-groups of 64 */
    int64_t project_rows; /* products of up to this many input rows take the project kernel,
                             longer ones SGEMM (where `gemm`): rn_tuning's */
    st_dtype weights;     /* how weight matrices are stored: read by embed_tokens, project,
                             widen, written by fill_uniform */
    cl_kernel embed_tokens, rms_norm, group_norm_gate, theta_shift, glu, residual, project, widen;
    cl_kernel fill_uniform, retention_weigh_keys, retention_prefix, retention_scores, split_columns;
    cl_kernel retention_scan, retention_sigma, retention_output, retention_step;
    cl_kernel argmax_rows;  /* greedy decoding's choice on the device (argmax.cl) */
    /* The matrix-engine GEMM (gemm_mma.cl) and the rounding of its activations to half
     * (gemm_mma_operand), built when the precision, the device and the weight type allow it
     * (rn_kernels_build); NULL otherwise. */
    cl_kernel gemm_mma, gemm_mma_operand;
    /* Its variant for few rows (gemm_mma_small, split K) and the sum of its slices with the
     * project kernel's epilogue (gemm_mma_reduce); built with gemm_mma, NULL without. */
    cl_kernel gemm_mma_small, gemm_mma_reduce;
    /* The products of a prompt's retention on the engine (gemm_mma_batched, fp32 operands
     * rounded to half as staged): built with gemm_mma, NULL without. */
    cl_kernel gemm_mma_batched;
    bool mma_folds_norm;     /* rn_op_project_mma can take the RMSNorm before the product itself
                                (RN_MS_FOLD_NORM; rn_mma_folds_norm says for which) */
    int64_t mma_rows_from;   /* batches and prompts of this many rows (up to RN_MMA_SMALL_ROWS)
                                take gemm_mma_small where it is built and the model's products
                                fit it; fewer take the project kernel */
    uint32_t compute_units;  /* of the device: how many work-groups fill it */
    bool groups_hand_off;    /* a work-group's fenced writes are seen by the group that counts in
                                after it: stated on NVIDIA (membar.gl), given on CPUs. Decoding's
                                retention_step then applies the group norm (rn_step_norm) and
                                argmax_rows cuts rows into slices; other GPUs keep
                                group_norm_gate's launch and one group per row */
    const char *mma_variant; /* "nvidia-mma f16", "nvidia-mma bf16", "emulated f16", ...: NULL
                                without gemm_mma */
    /* rms_norm, retention_step and argmax_rows built again with wider work-groups
     * (rn_tuning.batch_work_group), for batches on the matrix engine (RN_BATCH_GROUP_ROWS rows
     * or more); its other kernels are NULL. NULL where none is asked for or the device cannot
     * run them. */
    struct rn_kernels *batch;
} rn_kernels;

/* Batches of RN_BATCH_GROUP_ROWS (retnet.h) rows or more on the matrix engine take
 * rn_kernels.batch's norms, retention step and argmax where it is built: in groups of 256 they
 * decoded batches of 8 and 32 6.5 % and 5 % faster on an H100, while the same groups for every
 * kernel made a single sequence 35 % slower (docs/BENCHMARKS.md). */

/* The context's tuning knobs (rn_context_options); 0 takes the default. */
typedef struct rn_tuning {
    size_t work_group;       /* cap on RN_WG: 64 on GPUs, 2 elsewhere */
    int64_t project_rows;    /* rows up to which products take the project kernel: 32 */
    rn_precision precision;  /* of the products (retnet.h) */
    bool mma_emulate;        /* selftest only: build gemm_mma.cl's portable stand-in for the
                                matrix instructions (RN_MMA_EMULATE), to test its tiling and
                                edges on devices without them */
    int batch_work_group;    /* rn_kernels.batch's RN_WG: 0 none, N > 0 N
                                (rn_context_options.batch_work_group) */
} rn_tuning;

/* Compiles the embedded cl_kernels sources for heads of dk key and dv value dimensions and
 * weight matrices stored as `weights` (F32, F16 or BF16). */
rn_status rn_kernels_build(rt_runtime *rt, rn_tuning tuning, int64_t dk, int64_t dv, st_dtype weights,
                           rn_kernels *out);
void rn_kernels_release(rn_kernels *k);

/* What rn_kernels_build compiles, for tests that compile it elsewhere: the preamble of defines it
 * writes for a device (`info`), a tuning, work-groups of wg, heads of dk x dv and weights stored
 * as `weights` (returns snprintf's count: cap or more means it did not fit), and the sources in
 * their order, all or (batch_only) those of rn_kernels.batch (returns how many, at most cap).
 * tests/nvidia_sources.c writes NVIDIA's programs with them. */
int rn_kernels_preamble(const rt_device_info *info, rn_tuning tuning, size_t wg, int64_t dk, int64_t dv,
                        st_dtype weights, char *out, size_t cap);
size_t rn_kernels_sources(bool batch_only, const char **sources, size_t *lengths, size_t cap);

/* How retention runs: query heads, key/value heads (grouped: kv_heads divides heads), and
 * whether torchscale's per-form normalisation applies (plain: fla, none). */
typedef struct rn_retention_shape {
    int64_t heads, kv_heads;
    bool plain;
} rn_retention_shape;

/* x [n, D] = scale * E[tokens] (tokens: n ints on the device, already range-checked; E stored
 * as the kernels' weight type) for the tokens in [row0, row0 + held), the rows E holds; the
 * other rows of x are left as they are. */
rn_status rn_op_embed(rt_runtime *rt, const rn_kernels *k, const rt_buffer *tokens, int64_t n,
                      const rt_buffer *E, int64_t row0, int64_t held, int64_t D, float scale, rt_buffer *x);
/* y [rows, dim] = rmsnorm(x) * w; w NULL: no weight. y may be x. */
rn_status rn_op_rms_norm(rt_runtime *rt, const rn_kernels *k, const rt_buffer *x,
                         const rt_buffer *w, int64_t rows, int64_t dim, float eps, rt_buffer *y);
/* y [n, H*dv] = silu(g) * groupnorm(o) * w; g NULL: no gate; w NULL: no weight. y may be o. */
rn_status rn_op_group_norm_gate(rt_runtime *rt, const rn_kernels *k, const rt_buffer *o,
                                const rt_buffer *g, const rt_buffer *w, int64_t n, int64_t H,
                                float eps, rt_buffer *y);
/* In place on x [n, heads*dk]: scale, then rotate by positions pos0 .. pos0+n-1 (or, when
 * `positions` is not NULL, row t by positions[t]: n ints on the device), in interleaved pairs
 * or (half_split) NeoX's halves. */
rn_status rn_op_theta_shift(rt_runtime *rt, const rn_kernels *k, rt_buffer *x, int64_t n,
                            int64_t heads, const rt_buffer *angle, int64_t pos0,
                            const rt_buffer *positions, float scale, bool half_split);
/* c = act(a) * b over `count` elements. */
rn_status rn_op_glu(rt_runtime *rt, const rn_kernels *k, const rt_buffer *a, const rt_buffer *b,
                    int64_t count, rn_activation act, rt_buffer *c);
/* The greedy choice of each of `rows` rows of logits [rows, V] (V >= 1): choice [rows, 2] ints
 * gets {the index of the row's largest logit, the lowest index among equal ones (the host
 * sampler's choice at temperature 0); the row's lowest column holding a NaN or an infinity, or
 * -1}, from row `first` of choice on. The first is meaningless where the second is not -1.
 * next [rows] ints gets the first alone (0 where it is meaningless): the input of a following
 * greedy step. With `slices` (room for rows * RN_ARGMAX_MAX_PARTS winners and rows counters,
 * zero and left zero) a row may be cut across several work-groups (rn_argmax_parts); NULL
 * keeps one work-group per row. */
#define RN_ARGMAX_DEPTH 8        /* loads of four logits in flight per work-item (argmax.cl) */
#define RN_ARGMAX_MAX_PARTS 64
typedef struct rn_argmax_slices {
    rt_buffer *winners;          /* [rows, parts, 3] ints */
    rt_buffer *done;             /* [rows] ints */
} rn_argmax_slices;
int64_t rn_argmax_parts(const rn_kernels *k, int64_t V, bool has_slices);
rn_status rn_op_argmax(rt_runtime *rt, const rn_kernels *k, const rt_buffer *logits, int64_t rows, int64_t V,
                       rt_buffer *choice, int64_t first, rt_buffer *next, const rn_argmax_slices *slices);
/* x = alpha * x + y over `count` elements. */
rn_status rn_op_residual(rt_runtime *rt, const rn_kernels *k, rt_buffer *x, const rt_buffer *y,
                         int64_t count, float alpha);
/* y[t, col0 + j] = x [n, in] W^T with W the `out` rows of a stored matrix starting at row
 * `row0` ([*, in] in the kernels' weight type), y with ldy columns (col0 + out <= ldy), through
 * CLBlast's SGEMM: for prompts, where the product has enough rows to fill its tiles. A
 * half-precision or quantized W is first widened into `scratch` (at least out * in floats;
 * unused for fp32 weights). */
rn_status rn_op_linear(rt_runtime *rt, const rn_kernels *k, const rt_buffer *x, int64_t n,
                       int64_t in, const rt_buffer *W, int64_t row0, int64_t out,
                       rt_buffer *scratch, rt_buffer *y, int64_t ldy, int64_t col0);

/* Whether rn_op_linear_mma takes a product of `in` input columns: gemm_mma is built and the
 * rows of W are whole 16-byte pieces (in % 8 == 0). */
bool rn_mma_takes(const rn_kernels *k, int64_t in);

/* x_half [count] = x [count] rounded to the weights' half type (to nearest even): the operand
 * of rn_op_linear_mma, made once per product however many products read it. count % 4 == 0;
 * only where gemm_mma is built. */
rn_status rn_op_engine_operand(rt_runtime *rt, const rn_kernels *k, const rt_buffer *x, int64_t count,
                               rt_buffer *x_half);

/* y[t, col0 + j] = x [n, in] W^T (W: `out` rows of a stored F16/BF16 matrix from row `row0`) on
 * the matrix engine: x_half is x already rounded to the weights' half type
 * (rn_op_engine_operand), fp32 accumulation; y has ldy columns (col0 + out <= ldy). With
 * `accumulate`, y = alpha * y + x W^T instead (a residual add). Only where rn_mma_takes(k, in). */
rn_status rn_op_linear_mma(rt_runtime *rt, const rn_kernels *k, const rt_buffer *x_half, int64_t n, int64_t in,
                           const rt_buffer *W, int64_t row0, int64_t out, rt_buffer *y, int64_t ldy, int64_t col0,
                           bool accumulate, float alpha);

/* dst [n, width] = columns col0 .. col0 + width of src [n, stride]. */
rn_status rn_op_split_columns(rt_runtime *rt, const rn_kernels *k, const rt_buffer *src, int64_t n,
                              int64_t stride, int64_t col0, int64_t width, rt_buffer *dst);

/* What the project kernel (matvec.cl) does with W x; see there. */
typedef enum rn_project_mode {
    RN_PROJECT_PLAIN = 0,     /* y[i] = the rows between ends[i-1] and ends[i] */
    RN_PROJECT_RESIDUAL = 1,  /* y[0] = alpha y[0] + W x */
    RN_PROJECT_GLU = 2,       /* y[0] = act(fc1 x) * (gate x), W = [fc1; gate] */
} rn_project_mode;

/* A projection of a few input rows (decoding), reading every weight once. */
typedef struct rn_projection {
    const rt_buffer *W;          /* [rows, cols]; GLU: [2 rows, cols] (but see row0, held) */
    int64_t rows, cols;
    /* W holds only the output rows [row0, row0 + held) (GLU: those of fc1, then the same of the
     * gate), one piece of a matrix (matrix.h); the other outputs are left as they are. row0 even,
     * and a multiple of dk where rows are rotated. held 0: W holds every row. */
    int64_t row0, held;
    const rt_buffer *x;          /* [n, cols] */
    int64_t n;
    bool normalize;              /* RMSNorm x first ... */
    const rt_buffer *norm;       /* ... with this [cols] weight, or none when NULL */
    float eps;
    rn_project_mode mode;
    float alpha;                 /* RESIDUAL */
    rn_activation activation;    /* GLU */
    rt_buffer *y[4];             /* PLAIN: y[i] gets [n, ends[i] - ends[i-1]]; unused ones NULL */
    int64_t ends[3];             /* PLAIN with several outputs: where each one's rows end */
    /* PLAIN: the first `rotated` rows (q's q_rows, then k's; whole heads of dk) leave rotated to
     * position pos0 + row * pos_step, or positions[row] when `positions` ([n] ints) is not NULL,
     * k's scaled by k_scale first; 0: none. */
    int64_t rotated, q_rows, pos0, pos_step;
    const rt_buffer *positions;
    const rt_buffer *angle;      /* [dk] */
    float k_scale;
    bool half_split;
    /* What the launch after this one reads first (the next piece or matrix of weights, or a
     * step's states), or NULL: where RN_PREFETCH_AHEAD is on, this launch's work-groups ask up to
     * RN_PREFETCH_MB MiB of it, from its start, into the device's cache. */
    const rt_buffer *ahead;
} rn_projection;

rn_status rn_op_project(rt_runtime *rt, const rn_kernels *k, const rn_projection *p);

/* gemm_mma_small's tile (cl_kernels/gemm_mma.cl, through every program's preamble): work-groups
 * of 4 warps, each warp RN_MS_NF fragments of 8 columns, RN_MS_MF fragments of 16 rows per
 * work-group, W held in registers RN_MS_KC columns of K at a time; where RN_MS_XK > 0 each
 * work-group stages its slice of x once, so slices are at most RN_MS_XK wide. A build defines all
 * four or none (scripts/build_variants.sh makes such builds for timing; the kernel checks them). */
#ifndef RN_MS_NF
#define RN_MS_NF 4
#define RN_MS_MF 4
#define RN_MS_KC 128
#define RN_MS_XK 0
#endif
#define RN_MS_COLS (4 * 8 * RN_MS_NF)
/* RN_MS_FOLD_NORM 1: rn_op_project_mma folds a projection's RMSNorm into gemm_mma_small (x times
 * the norm's weight as it is staged, the slices' sums of squares beside the partial sums) and its
 * reduction (the scale of each row), instead of the caller's rms_norm launch before it. Off until
 * an NVIDIA call times it (docs/BENCHMARKS.md); scripts/build_variants.sh builds it. */
#ifndef RN_MS_FOLD_NORM
#define RN_MS_FOLD_NORM 0
#endif

/* RN_PREFETCH_AHEAD 1 (2): each work-group of a decoding launch (`project`, gemm_mma_small,
 * retention_step) asks its share of the first RN_PREFETCH_MB MiB of what the next launch reads
 * (rn_projection.ahead: the next product's weights, or after q/k/v/g the step's states) into L2
 * before its own loads (after its sums), on NVIDIA (PTX prefetch.global.L2; a no-op elsewhere),
 * so that the memory left idle while a launch ramps up and drains carries the next launch's
 * first bytes. Off until an NVIDIA call times it (docs/BENCHMARKS.md; the probe
 * tools/probes/launch_chain.c asks the same question on bare products). */
#ifndef RN_PREFETCH_AHEAD
#define RN_PREFETCH_AHEAD 0
#endif
#ifndef RN_PREFETCH_MB
#define RN_PREFETCH_MB 16
#endif

/* Rows up to which gemm_mma_small takes products (one work-group's 64 rows; beyond, gemm_mma's
 * 128 x 128 tiles fill the device). */
#define RN_MMA_SMALL_ROWS 64

/* The same projection on the matrix engine, for n rows up to RN_MMA_SMALL_ROWS (where
 * rn_mma_takes(k, p->cols) and gemm_mma_small is built), with the norm only where
 * rn_mma_folds_norm(k, p) (elsewhere p->normalize must be false: the caller normalizes x first).
 * gemm_mma_small writes its slices of K into `partial`
 * (at least rn_mma_partial_bytes(k, n, p->cols, width) bytes, width = p->rows, or 2 p->rows in
 * GLU mode); gemm_mma_reduce adds them up and applies the epilogue. A residual with alpha 1 is
 * the exception: the slices add into y themselves (atomic adds, in no fixed order, so the last
 * bit of such a sum may differ from run to run) and there is no reduction. */
rn_status rn_op_project_mma(rt_runtime *rt, const rn_kernels *k, const rn_projection *p, rt_buffer *partial);
/* Whether rn_op_project_mma folds p's RMSNorm into the product (a build with RN_MS_FOLD_NORM, a
 * projection with a norm that is not a residual one). */
bool rn_mma_folds_norm(const rn_kernels *k, const rn_projection *p);
uint64_t rn_mma_partial_bytes(const rn_kernels *k, int64_t n, int64_t in, int64_t width);
/* How many slices of K (each `kper` wide) gemm_mma_small cuts a product of `in` columns of x into
 * `width` outputs into: from k->compute_units. */
int64_t rn_mma_slices(const rn_kernels *k, int64_t in, int64_t width, int64_t *kper);

/* w = uniform random in [-scale, scale) from (seed, element index), over `count` elements of a
 * matrix in the kernels' weight type: elements [from, from + count) of the matrix, stored from
 * element `at` of w (whole blocks for the quantized types). */
rn_status rn_op_fill_uniform(rt_runtime *rt, const rn_kernels *k, rt_buffer *w, uint64_t count,
                             uint64_t seed, float scale, uint64_t from, uint64_t at);

/* Scratch the parallel and chunkwise forms need for n tokens: chunk states and sigmas; for the
 * GEMM form also every chunk's scores and the weighted keys. */
typedef struct rn_retention_scratch {
    rt_buffer chunk_states;  /* [n_chunks, H, dk, dv] */
    rt_buffer sigma;         /* [n_chunks, H]; GEMM form: then the states' bounds [n_chunks, H] */
    rt_buffer scores;        /* GEMM form: [n_chunks * H, chunk, chunk] */
    rt_buffer keys;          /* GEMM form: [H, n, dk] */
} rn_retention_scratch;

/* The bytes of each scratch buffer for n tokens in `mode`, by the kernels or (gemm) by
 * batched GEMMs, from an empty state or (has_state, chunkwise only) continuing one. */
typedef struct rn_retention_sizes {
    uint64_t chunk_states, sigma, scores, keys;
} rn_retention_sizes;
rn_retention_sizes rn_retention_scratch_size(rn_mode mode, bool gemm, bool has_state, int64_t n, int64_t chunk,
                                             int64_t H, int64_t dk, int64_t dv);

/* Retention of n tokens in the parallel or chunkwise form: o [n, H*dv] before the group norm,
 * and the recurrent state and scale it leaves behind. From an empty state when scale_in is
 * NULL; otherwise (chunkwise only) continuing the sequence whose recurrent state `state` holds
 * on entry, with its scale S_(P-1) in scale_in [H], a buffer other than `scale`; its chunks are
 * counted from the continued position (retention.cl). */
rn_status rn_op_retention(rt_runtime *rt, const rn_kernels *k, rn_retention_shape shape,
                          rn_mode mode, int64_t chunk, const rt_buffer *q, const rt_buffer *kk,
                          const rt_buffer *v, int64_t n, const rt_buffer *decays,
                          rn_retention_scratch *scratch, rt_buffer *o, rt_buffer *state,
                          const rt_buffer *scale_in, rt_buffer *scale);
/* The same as rn_op_retention through batched GEMMs (scratch sized with gemm set): for prompts
 * on devices where CLBlast runs, whose scores fit the scratch. Where gemm_mma_batched is built
 * the scores, their product with the values and each chunk's share of the state run on the
 * matrix engine (activations rounded to half), and the cross term with the incoming state too,
 * its state scaled by a bound of its entries (they grow with the context beyond half's range). */
rn_status rn_op_retention_gemm(rt_runtime *rt, const rn_kernels *k, rn_retention_shape shape,
                               rn_mode mode, int64_t chunk, const rt_buffer *q, const rt_buffer *kk,
                               const rt_buffer *v, int64_t n, const rt_buffer *decays,
                               rn_retention_scratch *scratch, rt_buffer *o, rt_buffer *state,
                               const rt_buffer *scale_in, rt_buffer *scale);

/* One operand of a batch of products, one per (chunk i, head h): its matrix starts at element
 * base + i chunk_step + h' head_step, h' = h for A and C, the key/value head for B. */
typedef struct rn_chunk_operand {
    size_t base, chunk_step, head_step;
} rn_chunk_operand;

/* A product C = op(A) op(B) (C += with accumulate) of each chunk and head on the matrix engine
 * (gemm_mma_batched: gemm_mma.cl says how). M, N or K 0: the chunk's own length,
 * min(window, n - i window). a_kmajor: A stored [K][M], else [M][K]; b_kmajor: B stored [K][N],
 * else [N][K]. triangle 1: only tiles touching C's lower triangle are written; 2: A is lower
 * triangular (K ends at each tile's last row). b_bound: NULL, or floats from b_bound_at on,
 * [chunks, H], bounding the magnitude of B's entries per product, which may then exceed half's
 * range. */
typedef struct rn_engine_product {
    bool a_kmajor, b_kmajor, accumulate;
    int64_t M, N, K;
    int triangle;
    const rt_buffer *b_bound;
    int64_t b_bound_at;
} rn_engine_product;

/* Those products for chunks [first, last) and H query heads (`group` of them per key/value
 * head), in one launch. Only where k->gemm_mma_batched is built. */
rn_status rn_op_chunk_products_mma(rt_runtime *rt, const rn_kernels *k, rn_engine_product e, const rt_buffer *a,
                                   rn_chunk_operand ao, size_t a_ld, const rt_buffer *b, rn_chunk_operand bo,
                                   size_t b_ld, rt_buffer *c, rn_chunk_operand co, size_t c_ld, int64_t first,
                                   int64_t last, int64_t H, int64_t group, int64_t n, int64_t window);

/* One recurrent step for `batch` independent sequences, sequence b at position positions[b]
 * ([batch] ints on the device): q [batch, H*dk], k and v [batch, kv_heads*d], q and k rotated
 * and k scaled; updates state [batch*H, dk, dv] and writes o [batch, H*dv]. The scales are two
 * slots [batch*H]: sequence b reads slot (pos + 1) & 1 (the scale of pos - 1) and writes slot
 * pos & 1 (retention_step.cl). With `norm`, o leaves through the group norm and gate as
 * rn_op_group_norm_gate would leave it, in the same launch; NULL leaves the retention output.
 * `ahead`: what the launch after it reads first, or NULL (as rn_projection.ahead). */
typedef struct rn_step_norm {
    const rt_buffer *gate, *weight; /* [batch, H*dv] and [dv], or NULL (rn_op_group_norm_gate) */
    float eps;
    rt_buffer *done;                /* [batch*H] ints, zero, and left zero by each launch */
} rn_step_norm;
rn_status rn_op_retention_step(rt_runtime *rt, const rn_kernels *k, rn_retention_shape shape,
                               int64_t batch, const rt_buffer *q,
                               const rt_buffer *kk, const rt_buffer *v, const rt_buffer *decays,
                               const rt_buffer *positions, rt_buffer *state, rt_buffer *scale0,
                               rt_buffer *scale1, rt_buffer *o, const rn_step_norm *norm,
                               const rt_buffer *ahead);

#endif /* RN_OPS_H */
