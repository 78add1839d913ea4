/*
 * nvidia_sources DIR: writes the OpenCL programs that rn_kernels_build would compile on an NVIDIA
 * GPU with the matrix engine (compute capability 9.0, as an H100), preamble and sources, one file
 * per program, DIR/NAME.cl, and prints a line per file: its name, then the PTX instructions
 * its compiled form must hold. tests/nvidia_compile.sh compiles them with clang's NVPTX target:
 * the kernels' NVIDIA-only code (inline PTX, the matrix engine's fragments, the look-ahead)
 * is compiled by no other test here, since PoCL builds the portable paths only.
 *
 * The programs: every weight type at `auto` with 1.3B's heads (256 x 432) and groups of 64
 * (the half types take the matrix engine), groups of 32 and of 256 (the batch set's files
 * only), and heads too small for the step's 4-wide columns. Build options of host/ops.h (the
 * small GEMM's tile, the look-ahead) are this program's own: the test builds it once per
 * variant of host/ops.c.
 */
#include <stdio.h>
#include <string.h>

#include "engine.h"

typedef struct program {
    const char *name;
    st_dtype weights;
    size_t wg;
    int64_t dk, dv;
    bool batch_only;
} program;

static int write_program(const char *dir, const program *p) {
    const rt_device_info nvidia = {.is_gpu = 1, .nv_cc_major = 9, .nv_cc_minor = 0,
                                   .matrix_engine = RT_MATRIX_NV_MMA};
    /* The batch set is built without the engine (host/ops.c, build_batch_set). */
    const rn_tuning tuning = {.precision = p->batch_only ? RN_PRECISION_F32 : RN_PRECISION_AUTO};
    char preamble[4096];
    const int used = rn_kernels_preamble(&nvidia, tuning, p->wg, p->dk, p->dv, p->weights, preamble, sizeof preamble);
    if (used < 0 || (size_t)used >= sizeof preamble) {
        fprintf(stderr, "nvidia_sources: %s: the preamble does not fit\n", p->name);
        return 1;
    }
    const char *sources[32];
    size_t lengths[32];
    const size_t n = rn_kernels_sources(p->batch_only, sources, lengths, 32);
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.cl", dir, p->name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        return 1;
    }
    fputs(preamble, f);
    for (size_t i = 0; i < n; i++) fwrite(sources[i], 1, lengths[i], f);
    if (fclose(f) != 0) {
        perror(path);
        return 1;
    }
    /* What the PTX must hold: the device-wide fence of every program on NVIDIA; where the group
     * is whole warps, their shuffles; in the half types' programs the matrix engine's products, its
 * operands' loads (ldmatrix, cp.async) and the residual's atomic adds;
     * the look-ahead's prefetch where the preamble asks for it (host/ops.h's RN_PREFETCH_AHEAD). */
    const bool mma = !p->batch_only && (p->weights == ST_F16 || p->weights == ST_BF16);
    const char *ahead = strstr(preamble, "#define RN_PREFETCH_AHEAD ");
    const bool looks_ahead = ahead && ahead[strlen("#define RN_PREFETCH_AHEAD ")] != '0';
    printf("%s membar.gl%s%s%s\n", p->name, p->wg % 32 == 0 ? " shfl.sync.bfly" : "", mma ? " mma.sync ldmatrix cp.async red.global.add" : "",
           looks_ahead ? " prefetch.global.L2" : "");
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: nvidia_sources DIR\n");
        return 2;
    }
    const program programs[] = {
        {"f16", ST_F16, 64, 256, 432, false},
        {"bf16", ST_BF16, 64, 256, 432, false},
        {"f32", ST_F32, 64, 256, 432, false},
        {"q8_0", ST_Q8_0, 64, 256, 432, false},
        {"q4_0", ST_Q4_0, 64, 256, 432, false},
        {"f16_wg32", ST_F16, 32, 256, 432, false},
        {"f16_batch_wg256", ST_F16, 256, 256, 432, true},
        {"f16_small_heads", ST_F16, 64, 16, 6, false},
    };
    for (size_t i = 0; i < sizeof programs / sizeof programs[0]; i++)
        if (write_program(argv[1], &programs[i])) return 1;
    return 0;
}
