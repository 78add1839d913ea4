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

bool rn_convert(st_dtype from, const void *src, uint64_t count, st_dtype to, void *dst,
                uint64_t *overflow_at) {
    const unsigned char *in = src;
    unsigned char *out = dst;
    bool ok = true;
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
