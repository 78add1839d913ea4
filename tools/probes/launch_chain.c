/*
 * launch_chain: what a dependent launch costs, and whether one launch whose work-groups wait for
 * each other can stream a decoding step's weights without it.
 *
 * A batch-1 decoding step of torchscale-1.3b is 96 matrix-vector products (24 layers of q/k/v/g,
 * out_proj, fc1 with its gate, fc2) of about 2.4 GB of fp16 weights, each product's input the
 * previous one's output. retnet-cl launches one kernel per product (with the retention step
 * between): on an H100 a step fits about 6.6 us per launch plus the bytes at 2.75 TB/s
 * (docs/BENCHMARKS.md), and torch.compile with CUDA graphs is level with it. This program runs
 * the same chain of products (no retention, norms or activations: only the weights and the
 * dependencies) four ways and prints each one's time per step:
 *
 *   launches   one launch per product on an in-order queue (what the library does);
 *   ordered    one launch for the whole chain: a work-group of product p first loads its rows
 *              of W into registers, then waits until every group of product p - 1 has counted
 *              itself done, then reads x and finishes. Groups take their work in group-id order,
 *              which assumes that a GPU starts groups in that order (NVIDIA's do; OpenCL does not
 *              promise it, so a device that does not could hang: the wait gives up after
 *              RN_SPINS polls and writes NaN);
 *   tickets    the same, each group taking its work from an atomic counter instead, so a group
 *              only ever waits for groups that have started: safe on any device whose started
 *              groups keep running (GPUs, PoCL), at the price of one atomic per group;
 *   late       ordered, but W loaded only after the wait: what the early loads are worth;
 *   prefetch   a launch per product, whose work-groups first ask the next product's weights into
 *              L2 (PTX prefetch.global.L2, each group its share of whole lines; elsewhere OpenCL's
 *              prefetch()), so that the next launch's first loads hit L2: whether the memory
 *              left idle while a launch ramps up and drains can carry the next one's weights;
 *   pf-end     the same, each group asking after its own sums instead of before its loads;
 *   empty      one launch per product of one work-group that returns at once: the bare cost
 *              of a launch on an in-order queue.
 *
 * The results of all but `empty` must be bit for bit equal (the same sums in the same order),
 * also in a last step whose outputs are set to NaN first, so that a product that read its input
 * too early shows; the program checks it and fails otherwise. Weights are filled on the device
 * (a hash of the index).
 *
 * Usage: launch_chain [--layers N] [--reps N] [--modes list] [--sleep NS] [--prefetch-mb MB]
 * (defaults 24, 20, all seven, 0, 0; on a device that is not a GPU `launches`, `tickets` and
 * `empty`, and 2 layers). --sleep has the waiting groups sleep NS nanoseconds between polls
 * (NVIDIA's nanosleep; elsewhere none). --prefetch-mb caps what a launch asks for to the next
 * product's first MB MiB of W (0: all of it; L2 holds 50 MB on an H100, q/k/v/g is 45 MB).
 */
#define CL_TARGET_OPENCL_VERSION 120
#define _POSIX_C_SOURCE 200809L
#include <CL/cl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *kernel_source =
    "#define WG 64\n"
    "#define MAXV 8  /* uint4 loads per row per work-item: K <= 8 * 8 * WG */\n"
    "#ifdef NV\n"
    "inline void fence_device(void) { asm volatile(\"membar.gl;\" ::: \"memory\"); }\n"
    "#define PREFETCH_L2(p) asm volatile(\"prefetch.global.L2 [%0];\" :: \"l\"(p))\n"
    "/* x was written in this launch by other compute units: read it from L2, not a stale L1 line */\n"
    "/* Polls *count until it reaches target, giving up after two seconds; SLEEP_NS > 0 sleeps that\n"
    " * long between polls (thousands of groups polling one word keep its L2 slice busy). */\n"
    "inline void spin_until(__global volatile uint *count, uint target) {\n"
    "    ulong start, now;\n"
    "    asm volatile(\"mov.u64 %0, %%globaltimer;\" : \"=l\"(start));\n"
    "    do {\n"
    "        if (SLEEP_NS > 0) asm volatile(\"nanosleep.u32 %0;\" :: \"r\"((uint)SLEEP_NS));\n"
    "        asm volatile(\"mov.u64 %0, %%globaltimer;\" : \"=l\"(now));\n"
    "    } while (*count < target && now - start < 2000000000ul);\n"
    "}\n"
    "inline float4 load_x4(__global const float *p) {\n"
    "    float a, b, c, d;\n"
    "    asm volatile(\"ld.global.cg.v4.f32 {%0, %1, %2, %3}, [%4];\" : \"=f\"(a), \"=f\"(b), \"=f\"(c), \"=f\"(d) : \"l\"(p));\n"
    "    return (float4)(a, b, c, d);\n"
    "}\n"
    "#else\n"
    "inline void fence_device(void) { mem_fence(CLK_GLOBAL_MEM_FENCE); }\n"
    "#define PREFETCH_L2(p) prefetch(p, 1)\n"
    "inline float4 load_x4(__global const float *p) { return vload4(0, p); }\n"
    "inline void spin_until(__global volatile uint *count, uint target) {\n"
    "    for (uint spins = 0; *count < target && spins < (1u << 30); spins++) {}\n"
    "}\n"
    "#endif\n"
    "/* This group's share of whole 128-byte lines of [base, base + bytes), asked into L2. */\n"
    "inline void prefetch_share(__global const uchar *base, ulong bytes, uint group, uint groups, int lid) {\n"
    "    const ulong lines = bytes / 128, from = lines * group / groups, to = lines * (group + 1) / groups;\n"
    "    for (ulong l = from + (ulong)lid; l < to; l += WG) PREFETCH_L2(base + 128 * l);\n"
    "}\n"
    "inline float dot8(float8 a, float8 b) { return dot(a.lo, b.lo) + dot(a.hi, b.hi); }\n"
    "inline float8 halves8(uint4 w) { return vload_half8(0, (const __private half *)&w); }\n"
    "\n"
    "/* W[i] = a * (uniform in [-1, 1)) from a hash of first + i. */\n"
    "__kernel void fill(__global half *w, ulong first, float a) {\n"
    "    ulong i = first + get_global_id(0);\n"
    "    uint h = (uint)(i ^ (i >> 32)) * 2654435761u;\n"
    "    h ^= h >> 15; h *= 2246822519u; h ^= h >> 13;\n"
    "    vstore_half(a * ((float)(h >> 8) * (2.0f / 16777216.0f) - 1.0f), 0, w + i);\n"
    "}\n"
    "\n"
    "/* plan[6 p ..]: W's first half, x's and y's first float, K, N, units before product p.\n"
    " * mode 0: the products [first, first + count), one launch each (count 1); 1: all of them in\n"
    " * group order; 2: by tickets; +4: W loaded after the wait; +16 (+32): before its own loads\n"
    " * (after its sums) each group asks its share of the next product's first pf_bytes of W into\n"
    " * L2, from byte pf_first. sync[0] the tickets, sync[1 + p] product p's groups done, both\n"
    " * counting on across launches (gen: launches before). */\n"
    "__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))\n"
    "void chain(__global const uint4 *W, __global float *act, __global const long *plan, int first,\n"
    "           int count, int mode, uint gen, uint total, __global volatile uint *sync, ulong pf_first,\n"
    "           ulong pf_bytes) {\n"
    "    __local uint ticket, ready;\n"
    "    __local float sums[2 * WG];\n"
    "    if (mode & 8) return;\n"
    "    const int lid = get_local_id(0), how = mode & 3, late = mode & 4;\n"
    "    uint unit = get_group_id(0);\n"
    "    if (how == 2) {\n"
    "        if (lid == 0) ticket = atomic_inc(&sync[0]) - gen * total;\n"
    "        barrier(CLK_LOCAL_MEM_FENCE);\n"
    "        unit = ticket;\n"
    "    }\n"
    "    if (how == 0) unit += (uint)plan[6 * first + 5];\n"
    "    __global const uchar *next = (__global const uchar *)W + pf_first;\n"
    "    if (mode & 16) prefetch_share(next, pf_bytes, get_group_id(0), get_num_groups(0), lid);\n"
    "    int p = first;\n"
    "    while (p + 1 < first + count && (uint)plan[6 * (p + 1) + 5] <= unit) p++;\n"
    "    __global const long *e = plan + 6 * p;\n"
    "    const int K = (int)e[3], N = (int)e[4], u = (int)(unit - (uint)e[5]);\n"
    "    const int r0 = 2 * u, r1 = min(2 * u + 1, N - 1), vec = K / 8;\n"
    "    __global const uint4 *w0 = W + e[0] / 8 + (long)r0 * vec, *w1 = W + e[0] / 8 + (long)r1 * vec;\n"
    "    uint4 wr[2][MAXV];\n"
    "    if (!late) {\n"
    "#pragma unroll\n"
    "        for (int i = 0; i < MAXV; i++) {\n"
    "            const int c = lid + i * WG;\n"
    "            wr[0][i] = c < vec ? w0[c] : (uint4)(0u);\n"
    "            wr[1][i] = c < vec ? w1[c] : (uint4)(0u);\n"
    "        }\n"
    "    }\n"
    "    int ok = 1;\n"
    "    if (how != 0 && p > 0) {\n"
    "        if (lid == 0) {\n"
    "            const uint target = (gen + 1) * (uint)(plan[6 * p + 5] - plan[6 * (p - 1) + 5]);\n"
    "            spin_until(&sync[p], target);\n"
    "            ready = sync[p] >= target;\n"
    "            fence_device();\n"
    "        }\n"
    "        barrier(CLK_GLOBAL_MEM_FENCE | CLK_LOCAL_MEM_FENCE);\n"
    "        ok = ready;\n"
    "    }\n"
    "    __global const float *x = act + e[1];\n"
    "    float d0 = 0.0f, d1 = 0.0f;\n"
    "#pragma unroll\n"
    "    for (int i = 0; i < MAXV; i++) {\n"
    "        const int c = lid + i * WG;\n"
    "        if (c < vec) {\n"
    "            const float8 xv = (float8)(load_x4(x + 8 * c), load_x4(x + 8 * c + 4));\n"
    "            d0 += dot8(halves8(late ? w0[c] : wr[0][i]), xv);\n"
    "            d1 += dot8(halves8(late ? w1[c] : wr[1][i]), xv);\n"
    "        }\n"
    "    }\n"
    "    sums[lid] = d0;\n"
    "    sums[WG + lid] = d1;\n"
    "    barrier(CLK_LOCAL_MEM_FENCE);\n"
    "    for (int s = WG / 2; s > 0; s >>= 1) {\n"
    "        if (lid < s) { sums[lid] += sums[lid + s]; sums[WG + lid] += sums[WG + lid + s]; }\n"
    "        barrier(CLK_LOCAL_MEM_FENCE);\n"
    "    }\n"
    "    if (mode & 32) prefetch_share(next, pf_bytes, get_group_id(0), get_num_groups(0), lid);\n"
    "    if (lid == 0) {\n"
    "        __global float *y = act + e[2];\n"
    "        y[r0] = ok ? sums[0] : NAN;\n"
    "        if (2 * u + 1 < N) y[r1] = ok ? sums[WG] : NAN;\n"
    "        if (how != 0) {\n"
    "            fence_device();  /* y before the count */\n"
    "            atomic_inc(&sync[1 + p]);\n"
    "        }\n"
    "    }\n"
    "}\n";

#define CHECK(call)                                                                      \
    do {                                                                                 \
        cl_int e_ = (call);                                                              \
        if (e_ != CL_SUCCESS) {                                                          \
            fprintf(stderr, "launch_chain: %s failed: OpenCL error %d (line %d)\n", #call, e_, __LINE__); \
            exit(1);                                                                     \
        }                                                                                \
    } while (0)

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

enum { MODE_LAUNCHES, MODE_ORDERED, MODE_TICKETS, MODE_LATE, MODE_PREFETCH, MODE_PREFETCH_END, MODE_EMPTY, MODES };
static const char *const mode_names[MODES] = {"launches", "ordered", "tickets", "late", "prefetch", "pf-end", "empty"};
static const int mode_bits[MODES] = {0, 1, 2, 1 | 4, 16, 32, 8};

/* One decoding step's products in mode m (gen: steps run before in this mode); in the prefetch
 * modes each product asks for at most pf_cap bytes of the next one's W (the step's last, of the
 * first's: the next step's). */
static void run_step(cl_command_queue queue, cl_kernel chain, int m, cl_uint gen, int products, const cl_long *plan,
                     cl_long units, cl_mem W, cl_mem act, cl_mem plan_buf, cl_mem sync, cl_ulong pf_cap) {
    const cl_uint total = (cl_uint)units;
    const int bits = mode_bits[m];
    const int each = m == MODE_LAUNCHES || m == MODE_EMPTY || m == MODE_PREFETCH || m == MODE_PREFETCH_END;
    for (int p = 0; p < (each ? products : 1); p++) {
        const int first = each ? p : 0, count = each ? 1 : products;
        const size_t groups = m == MODE_EMPTY ? 1 : each ? (size_t)(plan[6 * p + 4] + 1) / 2 : (size_t)units;
        const size_t global = 64 * groups, local = 64;
        CHECK(clSetKernelArg(chain, 0, sizeof W, &W));
        CHECK(clSetKernelArg(chain, 1, sizeof act, &act));
        CHECK(clSetKernelArg(chain, 2, sizeof plan_buf, &plan_buf));
        CHECK(clSetKernelArg(chain, 3, sizeof first, &first));
        CHECK(clSetKernelArg(chain, 4, sizeof count, &count));
        CHECK(clSetKernelArg(chain, 5, sizeof bits, &bits));
        CHECK(clSetKernelArg(chain, 6, sizeof gen, &gen));
        CHECK(clSetKernelArg(chain, 7, sizeof total, &total));
        CHECK(clSetKernelArg(chain, 8, sizeof sync, &sync));
        const cl_long *next = plan + 6 * ((p + 1) % products);
        const cl_ulong pf_first = 2 * (cl_ulong)next[0], next_bytes = 2 * (cl_ulong)(next[3] * next[4]);
        const cl_ulong pf_bytes = next_bytes < pf_cap ? next_bytes : pf_cap;
        CHECK(clSetKernelArg(chain, 9, sizeof pf_first, &pf_first));
        CHECK(clSetKernelArg(chain, 10, sizeof pf_bytes, &pf_bytes));
        CHECK(clEnqueueNDRangeKernel(queue, chain, 1, NULL, &global, &local, 0, NULL, NULL));
    }
}

/* One layer of torchscale-1.3b's products, N x K: q/k/v/g stacked, out_proj, fc1 and its gate
 * stacked, fc2. */
static const int layer_shapes[4][2] = {{11008, 2048}, {2048, 3456}, {6912, 2048}, {2048, 3456}};

int main(int argc, char **argv) {
    int layers = -1, reps = 20, sleep_ns = 0, prefetch_mb = 0;
    const char *modes = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--layers") && i + 1 < argc) layers = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--modes") && i + 1 < argc) modes = argv[++i];
        else if (!strcmp(argv[i], "--sleep") && i + 1 < argc) sleep_ns = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--prefetch-mb") && i + 1 < argc) prefetch_mb = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: launch_chain [--layers N] [--reps N] [--sleep NS] [--prefetch-mb MB]\n"
                            "                    [--modes launches,ordered,tickets,late,prefetch,pf-end,empty]\n");
            return 2;
        }
    }
    cl_platform_id platforms[8];
    cl_uint np = 0;
    CHECK(clGetPlatformIDs(8, platforms, &np));
    cl_device_id dev = NULL;
    for (cl_uint i = 0; i < np && !dev; i++)
        if (clGetDeviceIDs(platforms[i], CL_DEVICE_TYPE_GPU, 1, &dev, NULL) != CL_SUCCESS) dev = NULL;
    const int gpu = dev != NULL;
    if (!dev) CHECK(clGetDeviceIDs(platforms[0], CL_DEVICE_TYPE_DEFAULT, 1, &dev, NULL));
    if (layers < 1) layers = gpu ? 24 : 2;
    if (!modes) modes = gpu ? "launches,ordered,tickets,late,prefetch,pf-end,empty" : "launches,tickets,empty";
    if (reps < 1 || layers > 64 || sleep_ns < 0 || sleep_ns > 1000000 || prefetch_mb < 0 || prefetch_mb > 4096) {
        fprintf(stderr, "launch_chain: --reps at least 1, --layers 1 to 64, --sleep 0 to 1000000, --prefetch-mb 0 to 4096\n");
        return 2;
    }
    const cl_ulong pf_cap = prefetch_mb ? (cl_ulong)prefetch_mb << 20 : ~(cl_ulong)0;
    char name[256] = "", vendor[256] = "";
    clGetDeviceInfo(dev, CL_DEVICE_NAME, sizeof name, name, NULL);
    clGetDeviceInfo(dev, CL_DEVICE_VENDOR, sizeof vendor, vendor, NULL);
    const int nvidia = strstr(vendor, "NVIDIA") != NULL;
    cl_int err;
    cl_context ctx = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
    CHECK(err);
    cl_command_queue queue = clCreateCommandQueue(ctx, dev, 0, &err);
    CHECK(err);
    cl_program program = clCreateProgramWithSource(ctx, 1, &kernel_source, NULL, &err);
    CHECK(err);
    char options[64];
    snprintf(options, sizeof options, "%s-DSLEEP_NS=%d", nvidia ? "-DNV " : "", sleep_ns);
    if (clBuildProgram(program, 1, &dev, options, NULL, NULL) != CL_SUCCESS) {
        char log[8192] = "";
        clGetProgramBuildInfo(program, dev, CL_PROGRAM_BUILD_LOG, sizeof log, log, NULL);
        fprintf(stderr, "launch_chain: build failed:\n%s\n", log);
        return 1;
    }
    cl_kernel fill = clCreateKernel(program, "fill", &err);
    CHECK(err);
    cl_kernel chain = clCreateKernel(program, "chain", &err);
    CHECK(err);

    /* The plan: per product W's first half, x's and y's first float, K, N, units before it. */
    const int products = 4 * layers;
    cl_long *plan = calloc((size_t)products * 6, sizeof *plan);
    cl_long w_halves = 0, act_floats = 4096, units = 0, x_at = 0;
    for (int p = 0; p < products; p++) {
        const int N = layer_shapes[p % 4][0], K = layer_shapes[p % 4][1];
        cl_long *e = plan + 6 * p;
        e[0] = w_halves, e[1] = x_at, e[2] = act_floats, e[3] = K, e[4] = N, e[5] = units;
        x_at = act_floats;  /* the next product reads the first K of this one's output */
        w_halves += (cl_long)N * K, act_floats += N, units += (N + 1) / 2;
    }
    const double weight_gb = (double)w_halves * 2 / 1e9;
    printf("device: %s (%s)\nchain: %d layers, %d products, %.2f GB of fp16 weights, %lld work-groups of 64\n",
           name, vendor, layers, products, weight_gb, (long long)units);

    cl_mem W = clCreateBuffer(ctx, CL_MEM_READ_WRITE, (size_t)w_halves * 2, NULL, &err);
    CHECK(err);
    cl_mem act = clCreateBuffer(ctx, CL_MEM_READ_WRITE, (size_t)act_floats * sizeof(float), NULL, &err);
    CHECK(err);
    cl_mem plan_buf = clCreateBuffer(ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, (size_t)products * 6 * sizeof *plan,
                                     plan, &err);
    CHECK(err);
    cl_mem sync = clCreateBuffer(ctx, CL_MEM_READ_WRITE, (size_t)(products + 1) * sizeof(cl_uint), NULL, &err);
    CHECK(err);
    for (int p = 0; p < products; p++) {  /* entries about 1 / sqrt(K / 3): outputs stay near x's size */
        const cl_ulong first = (cl_ulong)plan[6 * p];
        const float a = sqrtf(3.0f / (float)plan[6 * p + 3]);
        const size_t count = (size_t)(plan[6 * p + 3] * plan[6 * p + 4]);
        CHECK(clSetKernelArg(fill, 0, sizeof W, &W));
        CHECK(clSetKernelArg(fill, 1, sizeof first, &first));
        CHECK(clSetKernelArg(fill, 2, sizeof a, &a));
        CHECK(clEnqueueNDRangeKernel(queue, fill, 1, NULL, &count, NULL, 0, NULL, NULL));
    }
    float *x0 = malloc(4096 * sizeof *x0), *reference = NULL, *result = malloc((size_t)act_floats * sizeof *result);
    for (int i = 0; i < 4096; i++) x0[i] = (float)((i * 7919) % 2001 - 1000) / 1000.0f;
    CHECK(clEnqueueWriteBuffer(queue, act, CL_TRUE, 0, 4096 * sizeof *x0, x0, 0, NULL, NULL));

    int failed = 0;
    double launches_ms = 0.0;
    for (int m = 0; m < MODES; m++) {
        if (!strstr(modes, mode_names[m])) continue;
        const cl_uint zero = 0;
        CHECK(clEnqueueFillBuffer(queue, sync, &zero, sizeof zero, 0, (size_t)(products + 1) * sizeof(cl_uint), 0,
                                  NULL, NULL));
        CHECK(clFinish(queue));
        double t0 = 0.0;
        for (int r = 0; r < reps + 2; r++) {  /* two steps of warm-up */
            if (r == 2) {
                CHECK(clFinish(queue));
                t0 = now_s();
            }
            run_step(queue, chain, m, (cl_uint)r, products, plan, units, W, act, plan_buf, sync, pf_cap);
        }
        CHECK(clFinish(queue));
        const double ms = (now_s() - t0) / reps * 1e3;
        if (m == MODE_EMPTY) {
            /* The host's share: the same launches enqueued without waiting for them. */
            const double e0 = now_s();
            run_step(queue, chain, m, (cl_uint)(reps + 2), products, plan, units, W, act, plan_buf, sync, pf_cap);
            const double enqueue_us = (now_s() - e0) * 1e6 / products;
            CHECK(clFinish(queue));
            printf("%-9s %8.3f ms a step  %6.2f us a launch (%.2f us of it enqueueing on the host)\n", mode_names[m],
                   ms, ms * 1e3 / products, enqueue_us);
            continue;
        }
        /* One more step into outputs set to NaN first: a product that read its input before the
         * one before it had written it would leave NaN or a different value. */
        const float nan_pattern = NAN;
        CHECK(clEnqueueFillBuffer(queue, act, &nan_pattern, sizeof nan_pattern, 4096 * sizeof(float),
                                  (size_t)(act_floats - 4096) * sizeof(float), 0, NULL, NULL));
        run_step(queue, chain, m, (cl_uint)(reps + 2), products, plan, units, W, act, plan_buf, sync, pf_cap);
        CHECK(clEnqueueReadBuffer(queue, act, CL_TRUE, 0, (size_t)act_floats * sizeof *result, result, 0, NULL, NULL));
        /* Every output of every product against the first mode's: the same sums, so equal bits. */
        size_t differ = 0, nonfinite = 0;
        for (cl_long i = 4096; i < act_floats; i++) {
            if (!isfinite(result[i])) nonfinite++;
            if (reference && memcmp(&result[i], &reference[i], sizeof *result)) differ++;
        }
        if (!reference) {
            reference = malloc((size_t)act_floats * sizeof *reference);
            memcpy(reference, result, (size_t)act_floats * sizeof *reference);
        }
        if (m == MODE_LAUNCHES) launches_ms = ms;
        printf("%-9s %8.3f ms a step  %7.0f GB/s of weights  %6.2f us a product", mode_names[m], ms,
               weight_gb / (ms * 1e-3), ms * 1e3 / products);
        if (launches_ms > 0.0 && m != MODE_LAUNCHES) printf("  %.2fx launches", launches_ms / ms);
        printf("%s", differ || nonfinite ? "" : "  (outputs equal)\n");
        if (differ || nonfinite) {
            printf("  FAIL: %zu outputs differ from the first mode's, %zu not finite\n", differ, nonfinite);
            failed = 1;
        }
    }
    free(plan), free(x0), free(reference), free(result);
    clReleaseMemObject(W), clReleaseMemObject(act), clReleaseMemObject(plan_buf), clReleaseMemObject(sync);
    clReleaseKernel(fill), clReleaseKernel(chain), clReleaseProgram(program);
    clReleaseCommandQueue(queue), clReleaseContext(ctx);
    return failed;
}
