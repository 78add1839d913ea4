/* dtype.c: F32 / F16 / BF16 conversions. Sources are little-endian file bytes; results are
 * values in host order. */
#include "dtype.h"

#include <math.h>
#include <string.h>

float rn_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ffu;
    uint32_t bits;
    if (exponent == 0x1f) {
        bits = sign | 0x7f800000u | (mantissa << 13);  /* inf, NaN */
    } else if (exponent != 0) {
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    } else if (mantissa == 0) {
        bits = sign;
    } else {
        /* Subnormal: mantissa * 2^-24, exact in fp32. */
        float f = (float)mantissa * 0x1p-24f;
        memcpy(&bits, &f, sizeof bits);
        bits |= sign;
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

float rn_bf16_to_float(uint16_t b) {
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

uint16_t rn_float_to_half(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    uint16_t sign = (uint16_t)((bits >> 16) & 0x8000u);
    uint32_t abs = bits & 0x7fffffffu;
    if (abs >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0));
    if (abs >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  /* rounds past 65504 */
    if (abs < 0x38800000u) {
        /* Below the smallest normal half: round |f| / 2^-24 to an integer, ties to even. */
        float scaled;
        memcpy(&scaled, &abs, sizeof scaled);
        scaled *= 0x1p24f;
        return (uint16_t)(sign | (uint16_t)rintf(scaled));
    }
    uint32_t mantissa = abs & 0x7fffffu, exponent = (abs >> 23) - 112;
    uint32_t half = (exponent << 10) | (mantissa >> 13);
    uint32_t rest = mantissa & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) half++;  /* may carry into exponent */
    return (uint16_t)(sign | half);
}

uint16_t rn_float_to_bf16(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x40u);  /* quiet NaN */
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return (uint16_t)(bits >> 16);
}

/* Element i of little-endian file data, assembled byte by byte: any alignment, any host. */
static float load(st_dtype dtype, const unsigned char *p, uint64_t i) {
    if (dtype == ST_U8) return (float)p[i];   /* widened as integers (st_to_f32 of quants) */
    if (dtype == ST_F32) {
        p += 4 * i;
        uint32_t bits = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        float f;
        memcpy(&f, &bits, sizeof f);
        return f;
    }
    p += 2 * i;
    uint16_t h = (uint16_t)(p[0] | p[1] << 8);
    return dtype == ST_F16 ? rn_half_to_float(h) : rn_bf16_to_float(h);
}

unsigned rn_block_elements(st_dtype dtype) {
    return dtype == ST_Q8_0 || dtype == ST_Q4_0 ? 32u : 1u;
}

unsigned rn_block_bytes(st_dtype dtype) {
    return dtype == ST_Q8_0 ? 34u : dtype == ST_Q4_0 ? 18u : st_dtype_size(dtype);
}

uint64_t rn_storage_bytes(st_dtype dtype, uint64_t elements) {
    return elements / rn_block_elements(dtype) * rn_block_bytes(dtype);
}

uint64_t rn_storage_elements(st_dtype dtype, uint64_t bytes) {
    return bytes / rn_block_bytes(dtype) * rn_block_elements(dtype);
}

uint64_t rn_quant_bytes(st_dtype dtype, uint64_t elements) {
    return dtype == ST_Q8_0 ? elements : dtype == ST_Q4_0 ? elements / 2 : rn_storage_bytes(dtype, elements);
}

bool rn_quantize_block(st_dtype to, const float *x, uint16_t *d_out, unsigned char *q) {
    float amax = 0.0f, extreme = 0.0f;
    for (int i = 0; i < 32; i++)
        if (fabsf(x[i]) > amax) amax = fabsf(x[i]), extreme = x[i];
    /* The scale as the device will read it: rounded to fp16 first, then divided by. */
    const uint16_t dh = rn_float_to_half(to == ST_Q8_0 ? amax / 127.0f : extreme / -8.0f);
    const float d = rn_half_to_float(dh), inv = d != 0.0f && isfinite(d) ? 1.0f / d : 0.0f;
    *d_out = dh;
    if (to == ST_Q8_0) {
        for (int i = 0; i < 32; i++) {
            float v = roundf(x[i] * inv);
            v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
            q[i] = (unsigned char)(signed char)v;
        }
    } else {
        for (int k = 0; k < 16; k++) {
            int lo = (int)roundf(x[2 * k] * inv) + 8, hi = (int)roundf(x[2 * k + 1] * inv) + 8;
            lo = lo < 0 ? 0 : lo > 15 ? 15 : lo;
            hi = hi < 0 ? 0 : hi > 15 ? 15 : hi;
            q[k] = (unsigned char)(lo | hi << 4);
        }
    }
    return isfinite(d) || !isfinite(amax);
}

void rn_dequantize_block(st_dtype from, uint16_t dh, const unsigned char *q, float *x) {
    const float d = rn_half_to_float(dh);
    for (int i = 0; i < 32; i++) {
        if (from == ST_Q8_0) x[i] = d * (float)(signed char)q[i];
        else x[i] = d * (float)(((q[i / 2] >> (4 * (i & 1))) & 15) - 8);
    }
}

static void put_half(unsigned char *p, uint16_t h) {
    p[0] = (unsigned char)(h & 0xffu);
    p[1] = (unsigned char)(h >> 8);
}

bool rn_convert(st_dtype from, const void *src, uint64_t count, st_dtype to, void *dst,
                uint64_t *overflow_at) {
    const unsigned char *in = src;
    unsigned char *out = dst;
    bool ok = true;
    const uint64_t blocks = count / 32;
    if (from == ST_Q8_0 || from == ST_Q4_0) {  /* to F32 only: what the tests read back */
        const unsigned char *scales = in + rn_quant_bytes(from, count);
        const unsigned qbytes = from == ST_Q8_0 ? 32u : 16u;
        for (uint64_t b = 0; b < blocks; b++) {
            float block[32];
            rn_dequantize_block(from, (uint16_t)(scales[2 * b] | scales[2 * b + 1] << 8), in + b * qbytes, block);
            memcpy(out + b * 32 * sizeof(float), block, sizeof block);
        }
        return true;
    }
    if (to == ST_Q8_0 || to == ST_Q4_0) {
        unsigned char *scales = out + rn_quant_bytes(to, count);
        const unsigned qbytes = to == ST_Q8_0 ? 32u : 16u;
        float block[32];
        for (uint64_t b = 0; b < blocks; b++) {
            uint16_t d;
            for (int i = 0; i < 32; i++) block[i] = load(from, in, b * 32 + (uint64_t)i);
            if (!rn_quantize_block(to, block, &d, out + b * qbytes) && ok) {
                ok = false;
                if (overflow_at) *overflow_at = b * 32;
            }
            put_half(scales + 2 * b, d);
        }
        return ok;
    }
    for (uint64_t i = 0; i < count; i++) {
        float f = load(from, in, i);
        if (to == ST_F32) {
            memcpy(out + 4 * i, &f, 4);
            continue;
        }
        uint16_t h = to == ST_F16 ? rn_float_to_half(f) : rn_float_to_bf16(f);
        memcpy(out + 2 * i, &h, 2);
        if (ok && isfinite(f) && (h & 0x7fffu) == (to == ST_F16 ? 0x7c00u : 0x7f80u)) {
            ok = false;
            if (overflow_at) *overflow_at = i;
        }
    }
    return ok;
}

const char *st_dtype_name(st_dtype dtype) {
    switch (dtype) {
    case ST_F32: return "F32";
    case ST_F16: return "F16";
    case ST_BF16: return "BF16";
    case ST_Q8_0: return "Q8_0";
    case ST_Q4_0: return "Q4_0";
    case ST_U8: return "U8";
    }
    return "?";
}

unsigned st_dtype_size(st_dtype dtype) {
    return dtype == ST_F32 ? 4u : dtype == ST_F16 || dtype == ST_BF16 ? 2u : dtype == ST_U8 ? 1u : 0u;
}

bool st_dtype_is_float(st_dtype dtype) {
    return dtype == ST_F32 || dtype == ST_F16 || dtype == ST_BF16;
}
