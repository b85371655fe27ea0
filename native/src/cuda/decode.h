// Element decoders of a segment's packed bytes, compiled by nvcc for the CUDA kernels (kernels.cu) and by g++ for
// the test addon, which checks them against the CPU's reference dequantizer on machines without a GPU
// (test/native/cuda.test.mjs): what the device reads out of a layout is verified there even where no kernel runs.
#pragma once

#include <cstdint>
#include <cstring>

#include "../quant/layout.h"
#include "../storage_format.h"

namespace repokv {
namespace cuda {

// A segment's bytes as the kernels address them (device pointers on the GPU, host pointers in tests).
struct SegView {
    int tier, D;
    int32_t n;  // the segment's tokens (its block structure), not a visible count
    const uint8_t *k, *v, *meta;
};

// IEEE half (little-endian, any byte offset: the packed layouts do not align their scales) -> float, exactly.
REPOKV_HD float half_at(const uint8_t *p) {
    const uint32_t h = (uint32_t)p[0] | (uint32_t)p[1] << 8;
    const uint32_t sign = (h & 0x8000u) << 16, e = h >> 10 & 0x1f, m = h & 0x3ff;
    if (e == 0) {
        const float f = (float)m * 5.9604644775390625e-8f;  // subnormal: m · 2^-24, exact in float
        return sign ? -f : f;
    }
    const uint32_t bits = e == 31 ? (sign | 0x7f800000u | m << 13) : (sign | (e + 112) << 23 | m << 13);
#if defined(__CUDA_ARCH__)
    return __uint_as_float(bits);
#else
    float f;
    memcpy(&f, &bits, 4);
    return f;
#endif
}

// Key channel c of token t (f16, q8, kivi; onebit keys are scored in their rotated basis and never decoded alone).
template <int TIER>
REPOKV_HD float key_at(const SegView &s, int32_t t, int c) {
    using namespace quant;
    const int D = s.D;
    if (TIER == (int)Tier::F16) return half_at(s.k + ((size_t)t * D + c) * 2);
    if (TIER == (int)Tier::Q8) {
        const uint8_t *g = s.k + (size_t)t * q8_token_bytes(D) + (c / 32) * 34;
        return half_at(g) * (float)(int8_t)g[2 + c % 32];
    }
    constexpr int bits = TIER == (int)Tier::Kivi4 ? 4 : 2;
    const int32_t t0 = t / kKiviBlock * kKiviBlock;
    const uint8_t *blk = s.k + kivi_k_block_offset(D, bits, t0);
    const uint8_t *row = blk + kivi_k_block_meta(D) + (size_t)(t - t0) * kivi_k_token_bytes(D, bits);
    return half_at(blk + 2 * D + 2 * c) + half_at(blk + 2 * c) * (float)get_code(row, c, bits);
}

// Value channel c of token t, every tier.
template <int TIER>
REPOKV_HD float value_at(const SegView &s, int32_t t, int c) {
    using namespace quant;
    const int D = s.D;
    if (TIER == (int)Tier::F16) return half_at(s.v + (((size_t)(t / 8) * D + c) * 8 + t % 8) * 2);
    if (TIER == (int)Tier::Q8) {
        const uint8_t *g = s.v + (size_t)t * q8_token_bytes(D) + (c / 32) * 34;
        return half_at(g) * (float)(int8_t)g[2 + c % 32];
    }
    if (TIER == (int)Tier::Kivi4 || TIER == (int)Tier::Kivi2) {
        constexpr int bits = TIER == (int)Tier::Kivi4 ? 4 : 2;
        const uint8_t *row = s.v + (size_t)t * kivi_v_token_bytes(D, bits), *meta = row + (size_t)D * bits / 8;
        const int g = c / 32, NG = D / 32;
        return half_at(meta + 2 * NG + 2 * g) + half_at(meta + 2 * g) * (float)get_code(row, c, bits);
    }
    // onebit: γ_c of the token's block times the token's trit
    const int32_t t0 = t / kOneBitBlock * kOneBitBlock;
    const uint8_t *meta = s.v + ob_v_block_offset(D, t0), *rows = meta + ob_v_block_meta(D);
    return half_at(meta + 2 * c) * (float)ob_trit(rows[(size_t)(t - t0) * ob_v_token_bytes(D) + c / 5], c % 5);
}

}  // namespace cuda
}  // namespace repokv
