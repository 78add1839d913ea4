// retention.cl: multi-scale retention in its three forms, with torchscale's normalisations (the
// recurrent form's step for decoding is retention_step.cl's).
//
// Per head h with gamma = exp(decay[h]), rotated q_t, k_m (k pre-scaled) and v_m, every form
// computes the unnormalised retention R_t = sum_{m<=t} gamma^(t-m) (q_t . k_m) v_m and divides
// it by a positive per-(token, head) scalar that depends on the form (the group norm that
// follows cancels it up to eps, which is why it must match the reference exactly):
//   parallel   sqrt(S_t) * clamp(I_t, 1, 5e4)
//   chunkwise  sqrt(s_c) * max(clamp(I_c, 1), sigma_i)      t = i*C + c
//   recurrent  sqrt(S_t)
// with S_t = sum_{j<=t} gamma^j, I the abs-sum of the normalised scores inside the (chunk or
// whole) window, and sigma_i the clamped column max of the normalised state entering chunk i.
// With `plain` set (fla's checkpoints) there is no scalar at all: o_t = R_t in every form.
//
// The chunkwise form may continue a sequence of P tokens (`has_state`): the stored recurrent
// state is U_0 / sqrt(S_(P-1)) with S_(P-1) in `scale_in` (U_0 itself when plain), so the
// kernels start from U_0 = state * sqrt(scale_in) instead of 0. Chunks are counted from P, so
// chunk 0 then has an incoming state like any later chunk: a cross term and a sigma. Cut at
// multiples of the chunk, a prompt fed piece by piece meets the same chunks, states and
// scalars as the whole prompt in one call; only the state's round trip through U/sqrt(S)
// rounds differently.
//
// Grouped keys and values: query head h reads key/value head h / (H / kv_heads).
// Layouts: q [n, H*RN_DK]; k [n, kv_heads*RN_DK]; v [n, kv_heads*RN_DV]; o [n, H*RN_DV];
// states [H, RN_DK, RN_DV] (key-major, so that work-items of neighbouring value columns read
// neighbouring words).

// S_n = sum_{j=0..n} gamma^j = (1 - gamma^(n+1)) / (1 - gamma). expm1 keeps it accurate when
// gamma is within an ulp of 1 (heads >= 20 have gamma == 1 exactly: S_n = n + 1).
inline float decay_sum(float decay, int n) {
    if (decay == 0.0f) return (float)(n + 1);
    return expm1((float)(n + 1) * decay) / expm1(decay);
}

// Prefix states across the sequence, and the recurrent state it leaves.
//
// One work-item per state entry (h, a, b): global (RN_DK * RN_DV, H). It walks the n tokens
// once: U <- gamma U + k_t[a] v_t[b]. When `record` is set (chunkwise form) it records U
// entering every chunk: chunk_states[i][h][a][b] = sum_{m<iC} gamma^(iC-1-m) k_m v_m.
// At the end it writes the recurrent state U / sqrt(S_(n-1)) (U when plain) and, from item
// (0, 0), the scale S_(n-1) that the recurrent form would have reached by its own recursion.
// With has_state, U and S start from the state and scale_in (S_(P-1)) instead of 0, and the
// indices above count from P. scale_in and scale are different buffers: item (0, 0) writes
// `scale` while others may still read scale_in.
__kernel void retention_scan(__global const float *k, __global const float *v,
                             __global const float *decays,   // [H]
                             int n, int chunk, int record, int kv_heads, int plain,
                             __global float *chunk_states,   // [ceil(n/chunk), H, DK, DV]
                             __global float *state,          // [H, DK, DV]
                             int has_state, __global const float *scale_in,  // [H]
                             __global float *scale) {        // [H]
    const int ab = get_global_id(0);
    const int h = get_global_id(1);
    const int H = get_global_size(1);
    const int kvh = h / (H / kv_heads);
    const int a = ab / RN_DV, b = ab % RN_DV;
    const float gamma = exp(decays[h]);
    const size_t kcol = (size_t)kvh * RN_DK + a, vcol = (size_t)kvh * RN_DV + b;
    const size_t k_width = (size_t)kv_heads * RN_DK, v_width = (size_t)kv_heads * RN_DV;
    float u = 0.0f, s = 0.0f;
    if (has_state) {
        s = scale_in[h];
        u = state[((size_t)h * RN_DK + a) * RN_DV + b];
        if (!plain) u *= sqrt(s);
    }
    for (int t = 0; t < n; t++) {
        if (record && t % chunk == 0)
            chunk_states[(((size_t)(t / chunk) * H + h) * RN_DK + a) * RN_DV + b] = u;
        u = gamma * u + k[(size_t)t * k_width + kcol] * v[(size_t)t * v_width + vcol];
        s = s * gamma + 1.0f;
    }
    state[((size_t)h * RN_DK + a) * RN_DV + b] = plain || s == 0.0f ? u : u / sqrt(s);
    if (ab == 0) scale[h] = s;
}

// sigma_i = max(1, max_b sum_a |U_i[a][b]| / Lambda), Lambda = S_(chunk-1): the scale of the
// state entering chunk i in torchscale's chunkwise loop; sigma_0 = 1 when U_0 = 0 (no state).
// With `bound` set, the column maximum itself (a bound on every |U_i[a][b]|) goes to
// sigma[n_chunks * H + group], for the matrix engine to scale U_i into half's range.
// One work-group per (chunk, head), group index i * H + h: global (RN_WG * n_chunks * H).
__kernel void retention_sigma(__global const float *chunk_states,  // [n_chunks, H, DK, DV]
                              __global const float *decays, int H, int chunk, int bound,
                              __global float *sigma) {               // [n_chunks, H] (x2 with bound)
    __local float scratch[RN_WG];
    const int lid = get_local_id(0);
    const int group = get_group_id(0);
    __global const float *u = chunk_states + (size_t)group * RN_DK * RN_DV;
    float best = 0.0f;
    for (int b = lid; b < RN_DV; b += RN_WG) {
        float column = 0.0f;
        for (int a = 0; a < RN_DK; a++) column += fabs(u[a * RN_DV + b]);
        best = fmax(best, column);
    }
    best = group_max(best, scratch);
    if (lid == 0) sigma[group] = fmax(1.0f, best / decay_sum(decays[group % H], chunk - 1));
    if (lid == 0 && bound) sigma[get_num_groups(0) + group] = best;
}

// Retention output of every token in the parallel or chunkwise form.
//
// One work-group per (token t, head h), group index t * H + h: global (RN_WG * n * H). The
// window is the token's chunk (chunk = n for the parallel form). Work-items take the window's
// keys RN_WG at a time: each scores one key, then each accumulates the value columns it owns
// (b = lid + j * RN_WG). The chunk's incoming state adds the cross term q_t gamma^(c+1) U_i.
//   cap > 0     the parallel form's upper clamp of I (5e4); 0 for chunkwise
//   sigma       [n_chunks, H] from retention_sigma, or unused when chunk >= n
//   has_state   chunk 0 has an incoming state too (chunk_states[0], sigma[0])
__kernel void retention_output(__global const float *q, __global const float *k,
                               __global const float *v, __global const float *decays,
                               __global const float *chunk_states, __global const float *sigma,
                               int H, int kv_heads, int chunk, float cap, int plain, int has_state,
                               __global float *o) {
    __local float q_local[RN_DK];
    __local float scores[RN_WG];
    __local float scratch[RN_WG];
    const int lid = get_local_id(0);
    const int group = get_group_id(0);
    const int t = group / H, h = group % H;
    const int kvh = h / (H / kv_heads);
    const int c = t % chunk, start = t - c, i = t / chunk;
    const float decay = decays[h];
    const size_t k_width = (size_t)kv_heads * RN_DK, v_width = (size_t)kv_heads * RN_DV;

    for (int a = lid; a < RN_DK; a += RN_WG) q_local[a] = q[(size_t)t * H * RN_DK + h * RN_DK + a];
    barrier(CLK_LOCAL_MEM_FENCE);

    float acc[RN_DV_PER_ITEM];
    for (int j = 0; j < RN_DV_PER_ITEM; j++) acc[j] = 0.0f;
    float abs_sum = 0.0f;

    for (int block = start; block <= t; block += RN_WG) {
        const int m = block + lid;
        float score = 0.0f;
        if (m <= t) {
            __global const float *key = k + (size_t)m * k_width + kvh * RN_DK;
            for (int a = 0; a < RN_DK; a++) score += q_local[a] * key[a];
            score *= exp((float)(t - m) * decay);
            abs_sum += fabs(score);
        }
        scores[lid] = score;
        barrier(CLK_LOCAL_MEM_FENCE);
        const int count = min(RN_WG, t - block + 1);
        for (int j = 0; j < RN_DV_PER_ITEM; j++) {
            const int b = lid + j * RN_WG;
            if (b < RN_DV) {
                __global const float *value = v + (size_t)block * v_width + kvh * RN_DV + b;
                float sum = 0.0f;
                for (int r = 0; r < count; r++) sum += scores[r] * value[(size_t)r * v_width];
                acc[j] += sum;
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }

    const float root_s = plain ? 1.0f : sqrt(decay_sum(decay, c));
    float d = fmax(group_sum(abs_sum, scratch) / root_s, 1.0f);
    if (cap > 0.0f) d = fmin(d, cap);
    if (plain) d = 1.0f;
    if (i > 0 || has_state) {
        if (!plain) d = fmax(d, sigma[i * H + h]);
        __global const float *u = chunk_states + ((size_t)i * H + h) * RN_DK * RN_DV;
        const float decay_in = exp((float)(c + 1) * decay);
        for (int j = 0; j < RN_DV_PER_ITEM; j++) {
            const int b = lid + j * RN_WG;
            if (b < RN_DV) {
                float cross = 0.0f;
                for (int a = 0; a < RN_DK; a++) cross += q_local[a] * u[a * RN_DV + b];
                acc[j] += decay_in * cross;
            }
        }
    }
    for (int j = 0; j < RN_DV_PER_ITEM; j++) {
        const int b = lid + j * RN_WG;
        if (b < RN_DV) o[(size_t)t * H * RN_DV + h * RN_DV + b] = acc[j] / (root_s * d);
    }
}

// ---- the parallel and chunkwise forms as batched GEMMs ---------------------------------------
//
// Where CLBlast runs, a prompt's retention is products of whole chunks (host/ops.c,
// rn_op_retention_gemm): per chunk i of length len and head h,
//   S = Q K^T                     scores [len, len]
//   dU = (w K)^T V, w_m = gamma^(end-1-m)    the chunk's contribution to the state after it
//   o = S' V + (decay_in f) (Q U_i)          with S' below
// and these kernels do what lies between the products. The same scalars as retention_output.

// Kw[h][m] = k[m] of h's key/value head times gamma_h^(end - 1 - m), end the end of m's chunk
// (n for the last): the weights that turn a chunk's keys into its share of the state.
// global (RN_DK, n, H). k [n, kv_heads*DK]; Kw [H, n, DK].
__kernel void retention_weigh_keys(__global const float *k, __global const float *decays, int n, int chunk,
                                   int kv_heads, __global float *Kw) {
    const int a = get_global_id(0), m = get_global_id(1), h = get_global_id(2);
    const int H = get_global_size(2);
    const int kvh = h / (H / kv_heads);
    const int end = min((m / chunk + 1) * chunk, n);
    Kw[((size_t)h * n + m) * RN_DK + a] =
        k[(size_t)m * kv_heads * RN_DK + kvh * RN_DK + a] * exp((float)(end - 1 - m) * decays[h]);
}

// The states entering each chunk from the chunks' contributions, and the recurrent state left
// behind: chunk_states[i] holds dU of chunk i - 1 on entry (i >= 1) and U_i on exit, with
// U_(i+1) = gamma^chunk U_i + dU_i; `state` holds dU of the last chunk on entry and
// U_n / sqrt(S_(n-1)) (U_n when plain) on exit; scale[h] = S_(n-1). U_0 = 0, or with has_state
// the continued sequence's state, which chunk_states[0] holds on entry as stored (normalised,
// the host copies it there) with its scale S_(P-1) in scale_in (a buffer other than `scale`);
// S then counts from P too: S_(P+n-1) = S_(P-1) gamma^n + S_(n-1).
// global (RN_DK * RN_DV, H).
__kernel void retention_prefix(__global float *chunk_states, int chunks, int n, int chunk, int plain,
                               __global const float *decays, __global float *state,
                               int has_state, __global const float *scale_in,
                               __global float *scale) {
    const int ab = get_global_id(0), h = get_global_id(1);
    const int H = get_global_size(1);
    const float decay = decays[h];
    const float gamma_chunk = exp((float)chunk * decay);
    const size_t entry = (size_t)RN_DK * RN_DV;
    float u = 0.0f;
    if (has_state) {
        u = chunk_states[(size_t)h * entry + ab];
        if (!plain) u *= sqrt(scale_in[h]);
        chunk_states[(size_t)h * entry + ab] = u;
    } else if (chunks > 1) {
        chunk_states[(size_t)h * entry + ab] = 0.0f;
    }
    for (int i = 1; i < chunks; i++) {
        __global float *slot = chunk_states + ((size_t)i * H + h) * entry + ab;
        u = gamma_chunk * u + *slot;
        *slot = u;
    }
    const int last = n - (chunks - 1) * chunk;
    __global float *out = state + (size_t)h * entry + ab;
    u = exp((float)last * decay) * u + *out;
    const float s = has_state ? scale_in[h] * exp((float)n * decay) + decay_sum(decay, n - 1)
                              : decay_sum(decay, n - 1);
    *out = plain ? u : u / sqrt(s);
    if (ab == 0) scale[h] = s;
}

// Row t of head h's scores: decayed and causally masked, the row's normaliser applied
// (S'[t][m] = S[t][m] gamma^(t-m) / (sqrt(s_c) d), zero for m > t), and the cross term that the
// chunk's incoming state contributes to o, already in o from Q U_i, scaled by
// gamma^(c+1) / (sqrt(s_c) d); zero in the first chunk unless it continues a state
// (has_state). o then receives S' V on top.
// One work-group per (t, h): global (RN_WG * n * H). S [chunks * H, chunk, chunk] (row stride
// chunk); o [n, H*DV].
__kernel void retention_scores(__global float *S, __global const float *decays, __global const float *sigma,
                               int H, int chunk, float cap, int plain, int has_state,
                               __global float *o) {
    __local float scratch[RN_WG];
    const int lid = get_local_id(0);
    const int t = get_group_id(0) / H, h = get_group_id(0) % H;
    const int c = t % chunk, i = t / chunk;
    const float decay = decays[h];
    __global float *row = S + (((size_t)i * H + h) * chunk + c) * chunk;
    float abs_sum = 0.0f;
    for (int m = lid; m < chunk; m += RN_WG) {
        const float s = m <= c ? row[m] * exp((float)(c - m) * decay) : 0.0f;
        abs_sum += fabs(s);
        row[m] = s;
    }
    const float root_s = plain ? 1.0f : sqrt(decay_sum(decay, c));
    float d = fmax(group_sum(abs_sum, scratch) / root_s, 1.0f);
    if (cap > 0.0f) d = fmin(d, cap);
    if (plain) d = 1.0f;
    const int entering = i > 0 || has_state;
    if (entering && !plain) d = fmax(d, sigma[i * H + h]);
    const float f = 1.0f / (root_s * d);
    for (int m = lid; m <= c; m += RN_WG) row[m] *= f;
    __global float *orow = o + (size_t)t * H * RN_DV + h * RN_DV;
    const float g = exp((float)(c + 1) * decay) * f;
    for (int b = lid; b < RN_DV; b += RN_WG) orow[b] = entering ? orow[b] * g : 0.0f;
}
