/*
 * retnet.h: the public API of retnet-cl.
 *
 * retnet-cl runs Retentive Network (RetNet) language models on any OpenCL 1.2 device.
 * A program opens an rn_context on one OpenCL device, loads an rn_model from a checkpoint
 * directory (config.json + model.safetensors, torchscale's RetNetDecoder state dict), and
 * runs one or more rn_session objects on it. A session holds the recurrent state of every
 * layer: a prompt is prefilled in the parallel or chunkwise form, which returns one row of
 * logits per position and leaves the state behind, and generation continues one token at a
 * time in the recurrent form.
 *
 * Errors. Every call returns an rn_status. RN_OK is zero, every error is negative and
 * rn_status_str() names it. The context keeps a detailed message of the last error
 * (rn_context_last_error): which file, tensor, shape, OpenCL call and its error name, or the
 * kernel build log. The library never prints, never exits and never aborts on bad input.
 * A call refused for its arguments leaves every object as it was and allocates nothing; a
 * forward pass that fails on the device empties its session (as rn_session_reset).
 *
 * Threads. Every call on a context, its models and its sessions holds that context's lock
 * for its whole duration, so calls from several threads on one context are safe and run one
 * after another (the device queue is shared: there is no parallelism within a context; open
 * one context per thread for that). Different contexts are independent. In particular several
 * sessions of one loaded model may be driven from several threads at once, and each gives the
 * same logits as if the sessions had run one after another. What stays the caller's to order:
 *   - one session is driven by one thread at a time: its position, rn_session_logits (a
 *     pointer into the session, rewritten by the next pass) and rn_session_recent are read
 *     without the lock (rn_session_logits takes it only to read back logits that
 *     rn_session_decode_greedy left on the device);
 *   - freeing an object races with every other use of it: free sessions before their model,
 *     models before their context, and none of them while another thread still uses it;
 *   - a progress callback (rn_model_options, rn_session_set_progress) runs with the lock
 *     held and must not call into the library on the same context (rn_context_cancel is
 *     the exception: it takes no lock).
 * Error messages: the context keeps the message of the most recent failure on it by any
 * thread, and each thread also keeps a copy of its own most recent failure.
 * rn_context_last_error(ctx) returns that thread-own copy when the calling thread's latest
 * failure (on any context) was on `ctx`, so a thread reading it after its own failing call
 * gets its own message even if another thread failed on the context meanwhile; otherwise it
 * returns a snapshot of the context's message. The text lives in a buffer of the calling
 * thread, valid until that thread's next call into the library.
 */
#ifndef RETNET_H
#define RETNET_H

#include <stddef.h>
#include <stdint.h>

#include "rn_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with hidden symbols; what this header declares is its whole ABI. */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

/* The library's version, "MAJOR.MINOR.PATCH"; the shared library's SONAME carries MAJOR. */
const char *rn_version(void);

/* The detailed message of the calling thread's most recent failed call into the library, on
 * any object or none (a tokenizer that would not load, a sampler setting out of range, a
 * context that could not open): "" when it has had none. Valid until the thread's next call. */
const char *rn_last_error(void);

/* ------------------------------------------------------------------------------------------ */
/* Devices and contexts                                                                       */

typedef struct rn_context rn_context;
typedef struct rn_model rn_model;
typedef struct rn_session rn_session;

typedef struct rn_device_info {
    char platform[128];
    char vendor[128];
    char name[128];
    char version[64];        /* CL_DEVICE_OPENCL_C_VERSION */
    char driver[64];
    int is_gpu;              /* 1 for CL_DEVICE_TYPE_GPU */
    uint32_t compute_units;
    uint64_t global_mem_bytes;
    uint64_t max_alloc_bytes;
    uint64_t local_mem_bytes;
    size_t max_work_group;
    int has_fp16;            /* cl_khr_fp16 */
    uint32_t platform_index; /* the P of "P:D" */
    uint32_t device_index;   /* the D of "P:D" */
    int nv_cc_major;         /* NVIDIA compute capability (cl_nv_device_attribute_query), */
    int nv_cc_minor;         /* 0.0 on other devices */
    int matrix_engine;       /* an rn_matrix_engine: the matrix instructions detected */
} rn_device_info;

/* The matrix instructions a device has. Only RN_MATRIX_NV_MMA has kernels yet (cl_kernels/
 * gemm_mma.cl); the others are detected so that their kernels are one more variant, and run the
 * fp32 path until then. */
typedef enum rn_matrix_engine {
    RN_MATRIX_NONE = 0,
    RN_MATRIX_NV_MMA = 1,       /* NVIDIA, compute capability 8.0+: mma.sync (tensor cores) */
    RN_MATRIX_INTEL_DPAS = 2,   /* Intel, cl_intel_subgroup_matrix_multiply_accumulate */
    RN_MATRIX_AMD = 3,          /* AMD CDNA (MFMA) or RDNA 3+ (WMMA) */
} rn_matrix_engine;

/* The precision of the products: the linear layers of prompts and of decoding batches of 5 rows
 * or more, and a prompt's retention products (scores, scores times values, the chunks' shares
 * of the state and the cross term with it). Everything outside the products (norms, decay masks
 * and normalisers, the recurrent state, activations between layers) stays fp32, and the
 * products always accumulate in fp32; a precision says only how their inputs may be rounded to
 * reach a matrix engine.
 *   F32   every product in fp32: the exact path (the default).
 *   F16   products whose weights are stored as F16 run on the matrix engine with their
 *         activations rounded to fp16 once (weights are read as stored); other weight types,
 *         and devices without an engine the library has kernels for, take the fp32 path.
 *   BF16  the same for weights stored as BF16, activations rounded to bf16.
 *   AUTO  the matrix engine where the device has one, in the precision of the stored weights
 *         (F16 or BF16); fp32 elsewhere. On devices without one (CPUs, PoCL) AUTO is F32:
 *         same results, same speed.
 * On the engine, a batch's products are cut into slices of K, and the slices of a residual
 * product are added into the residual stream in no fixed order: two runs of the same step may
 * differ in the last bit. The F32 path adds nothing in an unfixed order. */
typedef enum rn_precision {
    RN_PRECISION_F32 = 0,
    RN_PRECISION_F16 = 1,
    RN_PRECISION_BF16 = 2,
    RN_PRECISION_AUTO = 3,
} rn_precision;

/* Lists the OpenCL devices of every platform. Writes at most `capacity` entries and sets
 * *count to the number of devices present (which may be larger). */
rn_status rn_devices_list(rn_device_info *infos, size_t capacity, size_t *count);

/* A program's compiler options and build log (rn_context_options.build_log). */
typedef void (*rn_build_log_fn)(void *user, const char *options, const char *log);

/* Batches of at least this many rows on the matrix engine take the norms, retention step and
 * argmax built with rn_context_options.batch_work_group. */
#define RN_BATCH_GROUP_ROWS 8

typedef struct rn_context_options {
    const char *device;      /* "P:D", a name substring, or NULL for $RETNET_DEVICE, else the
                                first GPU, else the first device */
    int program_cache;       /* -1 auto (on, except on PoCL which caches itself), 0 off, 1 on */
    const char *cache_dir;   /* NULL: $RETNET_CACHE_DIR, else $XDG_CACHE_HOME/retnet-cl, else
                                ~/.cache/retnet-cl */
    /* Tuning; 0 takes the default. (The retnet command reads them from RETNET_WORK_GROUP and
     * RETNET_PROJECT_MAX_ROWS; the library reads no environment for them.) */
    size_t work_group;        /* work-items of the reducing kernels, a power of two up to 256:
                                 64 on GPUs, 2 elsewhere */
    size_t project_max_rows;  /* products of up to this many input rows take the engine's
                                 project kernel, longer ones an SGEMM: 32; 4 where the small
                                 matrix-engine GEMM takes batches and short prompts (f16/bf16
                                 precision on NVIDIA 8.0+), for rows up to 64 */
    rn_precision precision;   /* of the products: RN_PRECISION_F32 (the default) */
    uint64_t max_allocation;  /* bytes: the largest single buffer the library allocates, when
                                 below the device's own limit (CL_DEVICE_MAX_MEM_ALLOC_SIZE), for
                                 a driver that reports more than it can give or to test how
                                 models are split; 0: the device's limit. A weight matrix
                                 larger than the limit is held in pieces of whole rows. (The
                                 retnet command reads RETNET_MAX_ALLOC_MIB.) */
    const char *build_options; /* OpenCL compiler options added to every program the library
                                 builds, to see what the compiler makes of the kernels (NVIDIA's
                                 -cl-nv-verbose: registers and spills per kernel); such builds
                                 neither read nor write the program cache. NULL: none. (The
                                 retnet command reads RETNET_BUILD_OPTIONS.) */
    rn_build_log_fn build_log; /* with build_options: called with each program's options and
                                 build log once it is built (NULL: none) */
    void *build_log_user;
    int batch_work_group;     /* work-items of the norms, retention step and argmax of batches
                                 of RN_BATCH_GROUP_ROWS rows or more on the matrix engine: N, a
                                 power of two up to 256 (default 256), builds those three
                                 kernels a second time with groups of N where the device has
                                 the engine; 0, the same as every kernel's (work_group). On an H100 groups of 256 made
                                 batches of 8 and 32 faster and a single sequence and the f32
                                 path slower, which keep work_group's (docs/BENCHMARKS.md).
                                 (The retnet command reads RETNET_BATCH_WORK_GROUP.) */
} rn_context_options;

/* Sets `opts` to the defaults described above. */
void rn_context_options_default(rn_context_options *opts);

/* Opens the chosen device. On failure *out is NULL and, when `error_message` is not NULL, up
 * to `error_capacity` bytes of the reason are written there. */
rn_status rn_context_init(rn_context **out, const rn_context_options *opts,
                          char *error_message, size_t error_capacity);
void rn_context_free(rn_context *ctx);

/* Cancellation. rn_context_cancel(ctx, 1) asks the work running on the context, or the next
 * call that checks, to stop; from any thread or a signal handler (it takes no lock and only
 * stores a flag). The flag is the context's, not a session's. A model load checks it between
 * tensors, a prompt between layers (parallel, chunkwise) or tokens (recurrent), a decoding
 * step before it starts; the call returns RN_ERR_CANCELLED and clears the flag. What was
 * cancelled is left as a failure leaves it: no model; a prompt fed in the parallel or chunkwise
 * form leaves the session empty (also one that continued a state), one fed recurrently keeps
 * every token it finished (rn_session_position says how many); a step not taken leaves the
 * session as it was. rn_context_cancel(ctx, 0)
 * withdraws a request that no call has seen yet. */
void rn_context_cancel(rn_context *ctx, int cancel);

/* Profiling by OpenCL events: after rn_context_profile_start every launch on the context is
 * timed; rn_context_profile_drain waits for the device and calls `sink` once per launch since
 * the last drain with the kernel's name, the layer it belonged to (-1 outside the layers) and
 * its device time in seconds. */
typedef void (*rn_profile_sink)(void *user, const char *kernel, int layer, double seconds);
rn_status rn_context_profile_start(rn_context *ctx);
rn_status rn_context_profile_drain(rn_context *ctx, rn_profile_sink sink, void *user);

/* The device's ceilings, measured now: memory bandwidth in GB/s (read + written bytes of a
 * copy kernel) and fp32 GFLOP/s of one large square SGEMM (its size in *sgemm_n), spending
 * about `budget_s` per timed product. Either output may be NULL to skip that measurement. */
rn_status rn_context_ceilings(rn_context *ctx, double budget_s, double *bandwidth_gbps, double *sgemm_gflops,
                              size_t *sgemm_n);

/* The detailed message of the last failed call on this context or its models and sessions
 * (with several threads: see "Threads" above). */
const char *rn_context_last_error(const rn_context *ctx);
/* The device the context runs on. */
const rn_device_info *rn_context_device(const rn_context *ctx);
/* Bytes of device memory this context has allocated, now and at most. */
void rn_context_memory(const rn_context *ctx, uint64_t *current_bytes, uint64_t *peak_bytes);

/* ------------------------------------------------------------------------------------------ */
/* Models                                                                                     */

typedef enum rn_mode {
    RN_MODE_PARALLEL = 0,   /* O(T^2) retention over the whole prompt */
    RN_MODE_CHUNKWISE = 1,  /* parallel inside chunks, recurrent across them */
    RN_MODE_RECURRENT = 2   /* one token at a time */
} rn_mode;

typedef enum rn_activation { RN_ACT_GELU = 0, RN_ACT_SWISH = 1 } rn_activation;

/* How weight matrices are kept on the device. Kernels widen them to fp32 as they read them,
 * so F16 and BF16 need no cl_khr_fp16. RN_WEIGHTS_FILE keeps the checkpoint's precision (F32
 * when its tensors mix precisions). Q8 and Q4 quantize at load time into blocks of 32 weights
 * with an fp16 scale (GGML's Q8_0 and Q4_0 values: 8.5 and 4.5 bits a weight); every matrix,
 * the embedding and output included. A block is 32 consecutive elements of a matrix, rows may
 * be any multiple of 8 long, and each tensor must be whole blocks (true when the embedding
 * dimension is a multiple of 32, as in every published RetNet).
 * Norm weights are always fp32. A checkpoint written by rn_quantize_checkpoint loads in its own
 * scheme without quantizing again (RN_WEIGHTS_FILE, or the same Q8/Q4); any other setting on
 * it is refused with RN_ERR_UNSUPPORTED_CONFIG. */
typedef enum rn_weights {
    RN_WEIGHTS_FILE = 0,
    RN_WEIGHTS_F32 = 1,
    RN_WEIGHTS_F16 = 2,
    RN_WEIGHTS_BF16 = 3,
    RN_WEIGHTS_Q8 = 4,
    RN_WEIGHTS_Q4 = 5
} rn_weights;

/* Progress of long work: while weights are uploaded, the bytes read from the checkpoint so far
 * and in total; while a prompt is fed (rn_session_set_progress), the prompt's tokens done and
 * in total, a layer-by-layer pass counting each layer as its share of the prompt. */
typedef void (*rn_progress_fn)(void *user, uint64_t done, uint64_t total);

typedef struct rn_model_options {
    rn_weights weights;       /* RN_WEIGHTS_FILE */
    rn_progress_fn progress;  /* NULL */
    void *progress_user;
} rn_model_options;

void rn_model_options_default(rn_model_options *opts);

typedef struct rn_model_info {
    const char *family;       /* "torchscale", "syncdoth" or "fla" */
    int64_t embed_dim;        /* D   decoder_embed_dim */
    int64_t value_embed_dim;  /* Dv  decoder_value_embed_dim */
    int64_t heads;            /* H   decoder_retention_heads */
    int64_t ffn_dim;          /* F   decoder_ffn_embed_dim */
    int64_t layers;           /* L   decoder_layers */
    int64_t vocab_size;       /* V */
    int64_t chunk_size;       /* recurrent_chunk_size */
    rn_activation activation;
    double layernorm_eps;
    int scale_embedding;      /* !no_scale_embedding */
    int layernorm_embedding;
    int tied_embeddings;      /* share_decoder_input_output_embed */
    int normalize_before;     /* pre-norm */
    int deepnorm;
    uint64_t parameters;      /* count, tied weights once */
    uint64_t file_bytes;      /* tensor bytes in the checkpoint */
    uint64_t device_bytes;    /* weight bytes on the device */
    const char *file_dtype;   /* "F32", "F16", "BF16", "mixed", or "Q8_0"/"Q4_0" for a quantized
                                 checkpoint (rn_quantize_checkpoint) */
    const char *device_dtype; /* how the weight matrices are stored on the device: "F32", "F16",
                                 "BF16", "Q8_0" or "Q4_0" */
    int64_t kv_heads;         /* key/value heads (grouped when below heads) */
    int64_t key_embed_dim;    /* H * dk */
    int batch_work_group;     /* work-items of the norms, retention step and argmax that batches
                                 of RN_BATCH_GROUP_ROWS rows or more on the matrix engine take
                                 (the second build rn_context_options.batch_work_group asks
                                 for); 0 where batches take every kernel's work-group (no
                                 engine, or the option 0) */
} rn_model_info;

/* Loads a checkpoint directory: config.json and model.safetensors, or the shards listed in
 * model.safetensors.index.json, of any supported family (torchscale, syncdoth/Spiral,
 * flash-linear-attention), validates them against each other and uploads the weights,
 * reading the files through a read-only mapping in bounded pieces. The device memory needed
 * is checked before anything is allocated. `opts` may be NULL for the defaults. Nothing is
 * left allocated when it fails. */
rn_status rn_model_load(rn_context *ctx, const char *dir, const rn_model_options *opts,
                        rn_model **out);
/* A model of the shape a config.json file describes (such as the files in models/presets/), with
 * random weights made on the device from `seed`: for benchmarks and tests of shapes without
 * a checkpoint. Matrices are uniform in +-sqrt(3 / columns), norm weights 1. opts->weights
 * RN_WEIGHTS_FILE means F16 here. */
rn_status rn_model_random(rn_context *ctx, const char *config_path, const rn_model_options *opts,
                          uint64_t seed, rn_model **out);
void rn_model_free(rn_model *model);
rn_status rn_model_info_get(const rn_model *model, rn_model_info *info);

/* Writes a quantized copy of the checkpoint at `model_dir` (any family, sharded or not, F32,
 * F16 or BF16) to `out_dir` (created when missing): model.safetensors with every weight matrix
 * the runtime keeps in the model's weight type (embedding, output, q/k/v/g, out_proj, fc1, gate,
 * fc2) quantized exactly as loading with `weights` would, as two tensors "<name>.qweight" (U8
 * [rows, quant bytes per row]) and "<name>.qscale" (F16 [rows, cols / 32]), other tensors copied
 * unchanged, and __metadata__ {"retnet_cl.quantization": "q8_0" | "q4_0",
 * "retnet_cl.quantization_version": "1"}; plus copies of config.json and the tokenizer's files.
 * rn_model_load reads it back without quantizing again: the same device bytes as loading the
 * original with `weights`. `weights` is RN_WEIGHTS_Q8 or RN_WEIGHTS_Q4. Every file is written to
 * a temporary name and renamed into place, so a failure leaves no partial model; the output
 * directory may not be `model_dir` (RN_ERR_INVALID_ARGUMENT). A matrix whose rows are not whole
 * blocks of 32 (torchscale-2.7b's 4280 columns) is written with both tensors flat ([quant bytes]
 * and [blocks]: its blocks run across rows); one that is not whole blocks at all, and an input
 * that is already quantized, give RN_ERR_UNSUPPORTED_CONFIG. `progress` (NULL: none)
 * gets the input bytes done and in total. No device is needed; a failure's message is
 * rn_last_error(). */
rn_status rn_quantize_checkpoint(const char *model_dir, const char *out_dir, rn_weights weights,
                                 rn_progress_fn progress, void *user);
/* Runs the kernels a session will use once, on a scratch session, so that compilation on first
 * use (drivers that build at the first launch, CLBlast's kernels) happens here and not in the
 * first timed prompt: one decoding step, and a prompt of `prompt_tokens` tokens (0: none)
 * in `mode`. Leaves no session and no memory behind. */
rn_status rn_model_warmup(rn_model *model, size_t prompt_tokens, rn_mode mode);

/* ------------------------------------------------------------------------------------------ */
/* Sessions                                                                                   */

rn_status rn_session_init(rn_model *model, rn_session **out);
void rn_session_free(rn_session *session);
/* Forgets every token: the state is zero and the position 0. */
rn_status rn_session_reset(rn_session *session);
/* The number of tokens the session has consumed. */
uint64_t rn_session_position(const rn_session *session);
/* Calls `fn` (NULL: none) as the session's prompts are fed; see rn_progress_fn. */
rn_status rn_session_set_progress(rn_session *session, rn_progress_fn fn, void *user);

/* Feeds `n` tokens to a session at position 0 in the given form and writes n * vocab_size
 * logits (row-major, one row per position) to `logits` when it is not NULL. `chunk_size` is
 * used by RN_MODE_CHUNKWISE (0: the config's recurrent_chunk_size). RN_MODE_RECURRENT feeds
 * the tokens one by one. Afterwards the session holds the recurrent state and continues with
 * rn_session_decode. A session that already holds P tokens takes RN_MODE_CHUNKWISE or
 * RN_MODE_RECURRENT: the chunkwise form then starts from the session's state, its chunks
 * counted from position P, so that a prompt cut at multiples of the chunk size and fed piece
 * by piece gives what one call with the whole prompt gives (up to rounding); pieces cut
 * elsewhere meet other chunk boundaries, and so differ from it as the forms differ from each
 * other. RN_MODE_PARALLEL starts from an empty state only, as torchscale's does
 * (RN_ERR_INVALID_ARGUMENT otherwise). */
rn_status rn_session_prefill(rn_session *session, const int32_t *tokens, size_t n, rn_mode mode,
                             size_t chunk_size, float *logits);

/* Feeds one token in the recurrent form and writes vocab_size logits when `logits` is not
 * NULL. */
rn_status rn_session_decode(rn_session *session, int32_t token, float *logits);

/* Batched decoding: a batch session holds `batch` rows (1 to 1024), each an independent
 * sequence with its own state, position, recent tokens and last logits; every weight is read
 * once per step for all the rows stepped. A row starts empty; rn_session_copy_row moves a
 * sequence into or out of it (a prompt is prefilled on an ordinary session, then copied in).
 * rn_session_decode_batch steps every row by one token: tokens [batch]; logits [batch, V] or
 * NULL. rn_session_decode_rows steps rows [0, rows) only and leaves the others untouched
 * (continuous batching keeps its running sequences in the first rows). Each row's logits are
 * what rn_session_decode would give its sequence alone (bit for bit where the device runs
 * the same kernels the same way for one row and for several: PoCL does; steps of more rows
 * than rn_context_options.project_max_rows take SGEMM instead and agree to rounding; so do
 * steps on a matrix engine, whose slices of each residual product are added in no fixed order,
 * so that two runs of the same step may differ in the last bit).
 * rn_session_decode_rows refuses 0 rows or more than the batch with RN_ERR_INVALID_ARGUMENT; on
 * an ordinary session it takes rows = 1. A batch session also takes rn_session_reset (every
 * row), rn_session_position (row 0), rn_session_logits (every row's: see there),
 * rn_session_row_position and rn_session_free; the others refuse it with
 * RN_ERR_INVALID_ARGUMENT. */
rn_status rn_session_init_batch(rn_model *model, size_t batch, rn_session **out);
rn_status rn_session_decode_batch(rn_session *session, const int32_t *tokens, float *logits);
rn_status rn_session_decode_rows(rn_session *session, size_t rows, const int32_t *tokens, float *logits);
/* Greedy decoding with the choice made on the device: steps rows [0, rows) by one token as
 * rn_session_decode_rows does (tokens [rows]; an ordinary session takes rows = 1) and writes
 * each row's greedy next token to next[rows]: the largest logit, the lowest id on ties, which is
 * what rn_sampler_sample gives at temperature 0 without a repeat penalty (repeat_penalty 1 or
 * repeat_last_n 0). The step reads back only those ids, one synchronisation, instead of
 * rows * vocab_size logits. A row whose logits hold a NaN or an infinity fails the step with
 * RN_ERR_NUMERIC, as the other steps do; next is written only on success. Positions, recent
 * tokens, refusals, cancellation and failures are those of rn_session_decode_rows.
 * The stepped rows' logits are not read back, but they are not lost: they stay on the device
 * as those rows' last logits until the rows are stepped, reset or overwritten again, and
 * rn_session_logits, rn_session_save (and _buffer), rn_session_copy and rn_session_copy_row
 * read them back when they need them (one read per run of such rows, the first time only), so
 * they never see older logits. Feeding the returned tokens back step after step is a greedy
 * generation that reads no logits at all. */
rn_status rn_session_decode_greedy(rn_session *session, size_t rows, const int32_t *tokens, int32_t *next);
/* `steps` greedy steps of the first `rows` rows: what calling rn_session_decode_greedy `steps`
 * times would do, feeding each step's choices to the next, but with the choices going from step
 * to step on the device and read back once at the end, so that the device does not wait for
 * the host between steps. tokens[rows] is the first step's input; out[steps * rows] gets each
 * step's choices, step i's from out[i * rows]; the last step's are not yet consumed (the
 * session's position moves by `steps`; rows * steps at most INT32_MAX). *done (when not NULL)
 * says how many steps ran. A cancellation (rn_context_cancel) is seen between steps: the steps
 * already queued (up to about 16) finish and stay in the session, out holds their choices, and
 * RN_ERR_CANCELLED is returned. A non-finite logit (RN_ERR_NUMERIC) or a device failure empties the session, as a
 * failed step does. Meant for generation that needs no look at each token before the next
 * (benchmarks, fixed-length greedy runs); EOS checks can be done on `out` afterwards. */
rn_status rn_session_generate_greedy(rn_session *session, size_t rows, const int32_t *tokens, size_t steps,
                                     int32_t *out, size_t *done);
size_t rn_session_batch(const rn_session *session);
/* The tokens row `row` has consumed (0 for a row out of range). */
uint64_t rn_session_row_position(const rn_session *session, size_t row);
/* Makes row `dst_row` of `dst` a copy of row `src_row` of `src` (an ordinary session is row 0):
 * state, position, recent tokens and last logits, on the device. Both sessions belong to the
 * same model; dst and src may be the same batch (two different rows). RN_ERR_INVALID_ARGUMENT
 * for a row out of range or sessions of different models, leaving dst as it was. */
rn_status rn_session_copy_row(rn_session *dst, size_t dst_row, const rn_session *src, size_t src_row);
/* Empties one row of a batch (or an ordinary session's row 0): zero state, position 0, zero
 * logits. RN_ERR_INVALID_ARGUMENT for a row out of range. */
rn_status rn_session_reset_row(rn_session *session, size_t row);

/* The logits after the last token the session consumed (vocab_size floats): what the next
 * token is sampled from, also after rn_session_load; zeros while the session is empty. On a
 * batch session, every row's: [batch, vocab_size], row r from r * vocab_size, kept current by
 * the steps and by rn_session_copy_row (so a caller may pass NULL logits to the steps and
 * sample from here, with no copy of its own). Rows last stepped by rn_session_decode_greedy
 * are read back from the device here, under the context's lock, the first time they are asked
 * for; NULL if that read fails (rn_context_last_error says why; the next call tries again). */
const float *rn_session_logits(const rn_session *session);
/* Copies the last min(capacity, position, 256) tokens consumed, oldest first, and returns how
 * many it wrote: the window a repetition penalty looks at. */
size_t rn_session_recent(const rn_session *session, int32_t *tokens, size_t capacity);

/* ------------------------------------------------------------------------------------------ */
/* Session state: RetNet's whole context is a few MiB whatever its length                      */

/* Writes the session to `path`: every layer's recurrent state, the position, the last
 * logits, the recent tokens and a fingerprint of the model, with a checksum. The file is
 * written beside `path` and renamed over it, so a failure leaves any old file intact. */
rn_status rn_session_save(const rn_session *session, const char *path);
/* Replaces the session's state with the one in `path`. A file of another model (fingerprint
 * or shape), a corrupt or truncated one gives RN_ERR_STATE_FILE and leaves the session as
 * it was. */
rn_status rn_session_load(rn_session *session, const char *path);
/* A new session on the same model holding a copy of `session`'s state. */
rn_status rn_session_copy(const rn_session *session, rn_session **out);
/* The same bytes as rn_session_save's file, in memory: rn_session_state_bytes is their size
 * for this session's model (the same for every session of it), rn_session_save_buffer writes
 * them to `buffer` (RN_ERR_INVALID_ARGUMENT when `capacity` is smaller) and
 * rn_session_load_buffer reads them back with every check rn_session_load makes
 * (RN_ERR_STATE_FILE, the session left as it was). Ordinary sessions only: a batch's row is
 * saved by copying it into one first (rn_session_copy_row); rn_session_state_bytes is 0 for a
 * batch. */
size_t rn_session_state_bytes(const rn_session *session);
rn_status rn_session_save_buffer(const rn_session *session, void *buffer, size_t capacity);
rn_status rn_session_load_buffer(rn_session *session, const void *buffer, size_t size);

/* ------------------------------------------------------------------------------------------ */
/* Tokenizers: Hugging Face tokenizer.json (BPE), no device needed                            */

typedef struct rn_tokenizer rn_tokenizer;

/* Loads dir/tokenizer.json and, when present, dir/tokenizer_config.json (BOS/EOS settings).
 * Errors (rn_last_error names the file and field): RN_ERR_IO, RN_ERR_JSON, RN_ERR_LIMIT,
 * RN_ERR_TOKENIZER for a valid file this runtime cannot use. */
rn_status rn_tokenizer_load(const char *model_dir, rn_tokenizer **out);
void rn_tokenizer_free(rn_tokenizer *tokenizer);
/* Text (len bytes; invalid UTF-8 is repaired to U+FFFD first) to ids in a heap array freed
 * with rn_free (*ids may be NULL when *n is 0). add_special: the BOS/EOS the tokenizer's files
 * ask for. */
rn_status rn_tokenizer_encode(const rn_tokenizer *tokenizer, const char *text, size_t len, int add_special,
                              int32_t **ids, size_t *n);
/* Ids to valid UTF-8, NUL-terminated, in a heap buffer freed with rn_free (*len excludes the
 * NUL). skip_special drops special tokens. An id outside the vocabulary is
 * RN_ERR_INVALID_ARGUMENT. */
rn_status rn_tokenizer_decode(const rn_tokenizer *tokenizer, const int32_t *ids, size_t n, int skip_special,
                              char **text, size_t *len);
int32_t rn_tokenizer_bos(const rn_tokenizer *tokenizer);        /* -1 when none */
int32_t rn_tokenizer_eos(const rn_tokenizer *tokenizer);        /* -1 when none */
size_t rn_tokenizer_vocab_size(const rn_tokenizer *tokenizer);  /* the largest id + 1 */

/* Frees what rn_tokenizer_encode and rn_tokenizer_decode return. */
void rn_free(void *memory);

/* Streaming decoding: push ids as they are generated; each call hands out complete UTF-8 in a
 * buffer owned by the detokenizer, valid until its next call. All the pieces and the flush
 * together are exactly rn_tokenizer_decode of the same ids. A detokenizer reads its tokenizer:
 * free it first. */
typedef struct rn_detokenizer rn_detokenizer;
#define RN_DETOKENIZE_SKIP_SPECIAL 1u  /* drop special tokens */
#define RN_DETOKENIZE_CONTINUE 2u      /* the ids continue a text already shown (a prompt): keep
                                          the leading space a decoder strips at a text's start */
rn_status rn_detokenizer_init(const rn_tokenizer *tokenizer, unsigned flags, rn_detokenizer **out);
rn_status rn_detokenizer_push(rn_detokenizer *detokenizer, int32_t id, const char **bytes, size_t *len);
/* The end of the text: what was held back; the detokenizer then starts a new text. */
rn_status rn_detokenizer_flush(rn_detokenizer *detokenizer, const char **bytes, size_t *len);
void rn_detokenizer_free(rn_detokenizer *detokenizer);

/* ------------------------------------------------------------------------------------------ */
/* Sampling the next token from a row of logits, on the host                                 */

/* In the order they apply (llama.cpp's chain): repeat penalty, temperature (0: greedy, the
 * lowest id on ties, nothing else applies), top-k, softmax, min-p, top-p, one draw. Ties are
 * broken by id, so the surviving set never depends on the order of the work. A draw is a pure
 * function of (seed, position): a session saved and resumed draws what an uninterrupted one
 * draws. */
typedef struct rn_sampling {
    float temperature;     /* 0.8; 0: greedy */
    int32_t top_k;         /* 40; 0: off */
    float top_p;           /* 0.95, in (0, 1]; 1: off */
    float min_p;           /* 0.05, in [0, 1): drop ids with p < min_p * p_max; 0: off */
    float repeat_penalty;  /* 1.1, > 0; 1: off (logit > 0 ? logit / p : logit * p) */
    int32_t repeat_last_n; /* 64: how many of the most recent tokens are penalised */
    uint64_t seed;         /* 0 */
} rn_sampling;

void rn_sampling_default(rn_sampling *sampling);
/* 1 where rn_sampler_sample takes the plain argmax of the logits (temperature 0 without a repeat
 * penalty: repeat_penalty 1 or repeat_last_n 0), the choice rn_session_decode_greedy makes on
 * the device; 0 otherwise and for NULL. */
int rn_sampling_is_argmax(const rn_sampling *sampling);

typedef struct rn_sampler rn_sampler;
/* Checks the settings (RN_ERR_INVALID_ARGUMENT naming the one out of range) and allocates
 * scratch for `vocab` ids (RN_ERR_LIMIT above 2^24). */
rn_status rn_sampler_init(const rn_sampling *sampling, size_t vocab, rn_sampler **out);
void rn_sampler_free(rn_sampler *sampler);
/* The token that follows `position` tokens, from `logits` (vocab floats, not modified);
 * `recent` holds the last n_recent tokens, oldest first (rn_session_recent). RN_ERR_NUMERIC
 * for a NaN or infinite logit. One sampler is used by one thread at a time. */
rn_status rn_sampler_sample(rn_sampler *sampler, const float *logits, const int32_t *recent, size_t n_recent,
                            uint64_t position, int32_t *token);

/* ------------------------------------------------------------------------------------------ */
/* Self-test: every kernel against the plain-C reference, op by op, on the context's device   */

/* Receives the report, one line at a time (no newline). */
typedef void (*rn_text_sink)(void *user, const char *line);
/* Builds the kernels for several head shapes and weight types, runs every op on fixed-seed
 * inputs of awkward shapes and compares each output with the reference (tests/ref.c, double
 * accumulation), sending a table of kernel, shapes, max error, tolerance and pass/FAIL to
 * `sink`. `quick`: small shapes only and no CLBlast (for simulators). *checks and *failures
 * (either may be NULL) count the rows. RN_OK means the run completed, whatever it found. */
rn_status rn_selftest(rn_context *ctx, int quick, rn_text_sink sink, void *user, int *checks, int *failures);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* RETNET_H */
