/*
 * half.h - IEEE binary16 (fp16) and bfloat16 conversions to and from float, in portable C.
 *
 * Float -> fp16 and float -> bf16 round to nearest, ties to even (like F16C's _MM_FROUND_TO_
 * NEAREST_INT and ggml); overflow gives +-inf, NaN stays NaN (quiet), subnormals are exact or
 * rounded like any other value. fp16/bf16 -> float is exact.
 * Does not: use F16C or AVX-512 instructions (kernels that want them convert in bulk themselves).
 * Thread-safety: pure functions.
 */
#ifndef SY_HALF_H
#define SY_HALF_H

#include <stdint.h>
#include <string.h>

static inline uint32_t sy_half_f32_bits(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    return x;
}

static inline float sy_half_bits_f32(uint32_t x)
{
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

/* fp16 bits -> float (exact). */
static inline float sy_half_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) /* inf / NaN: keep the payload */
        return sy_half_bits_f32(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) {
        if (mant == 0)
            return sy_half_bits_f32(sign);
        /* subnormal: normalise */
        uint32_t e = 113;
        while (!(mant & 0x400u)) {
            mant <<= 1;
            e--;
        }
        return sy_half_bits_f32(sign | (e << 23) | ((mant & 0x3ffu) << 13));
    }
    return sy_half_bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

/* float -> fp16 bits, round to nearest even. */
static inline uint16_t sy_half_f32_to_f16(float f)
{
    uint32_t x = sy_half_f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) /* NaN: quiet, keep the top payload bits */
        return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    if (ax >= 0x477ff000u) /* >= 65520 (incl. inf) rounds to inf */
        return (uint16_t)(sign | 0x7c00u);
    if (ax >= 0x38800000u) { /* normal fp16 range, >= 2^-14 */
        uint32_t r = ax + 0xfffu + ((ax >> 13) & 1u);
        return (uint16_t)(sign | ((r - (112u << 23)) >> 13));
    }
    /* fp16 subnormal (or zero): units of 2^-24 */
    uint32_t e = ax >> 23;
    if (e < 102) /* below 2^-25: rounds to zero */
        return sign;
    uint32_t m = (ax & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e; /* 14..24 */
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u)))
        q++;
    return (uint16_t)(sign | q);
}

/* bf16 bits -> float (exact). */
static inline float sy_half_bf16_to_f32(uint16_t b)
{
    return sy_half_bits_f32((uint32_t)b << 16);
}

/* float -> bf16 bits, round to nearest even. */
static inline uint16_t sy_half_f32_to_bf16(float f)
{
    uint32_t x = sy_half_f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) /* NaN: quiet */
        return (uint16_t)((x >> 16) | 0x40u);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

#endif
