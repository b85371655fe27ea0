// The byte layouts of the packed formats as plain functions both compilers build: g++ for the CPU kernels
// (common.h includes this file) and nvcc for the CUDA kernels (../cuda/), so a segment's bytes mean the same on
// either side and a device copy of a segment is its CPU bytes, unchanged. The layouts themselves are described in
// common.h. Nothing here may use the standard library beyond integer types: it is compiled as device code too.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__CUDACC__)
#define REPOKV_HD __host__ __device__ __forceinline__
#else
#define REPOKV_HD inline
#endif

namespace repokv {
namespace quant {

constexpr int kKiviBlock = 32;     // tokens per kivi key block (one Δ and min per channel)
constexpr int kOneBitBlock = 128;  // tokens per onebit block (keys and values)

// ---- byte accounting ----------------------------------------------------------------------------------------------

REPOKV_HD size_t q8_token_bytes(int D) { return (size_t)(D / 32) * 34; }
REPOKV_HD size_t kivi_k_block_meta(int D) { return (size_t)4 * D; }
REPOKV_HD size_t kivi_k_token_bytes(int D, int b) { return (size_t)D * b / 8; }
REPOKV_HD size_t kivi_v_token_bytes(int D, int b) { return (size_t)D * b / 8 + (size_t)(D / 32) * 4; }
REPOKV_HD int ob_do(int D) { return D / 4; }
REPOKV_HD int ob_dn(int D) { return D - D / 4; }
REPOKV_HD size_t ob_k_block_meta(int D) { return (size_t)4 * D; }
REPOKV_HD size_t ob_k_token_bytes(int D) { return (size_t)ob_do(D) / 4 + (size_t)ob_dn(D) / 8; }
REPOKV_HD size_t ob_v_block_meta(int D) { return (size_t)2 * D; }
REPOKV_HD size_t ob_v_token_bytes(int D) { return (size_t)(D + 4) / 5; }
REPOKV_HD size_t ob_meta_bytes(int D) { return (size_t)D / 8 + 1; }  // outlier mask + flags byte

// Where token i's block starts in a kivi key buffer, and its code row (blocks: [meta][rows of the block's tokens]).
REPOKV_HD size_t kivi_k_block_offset(int D, int b, int32_t t0) { return (size_t)(t0 / kKiviBlock) * (kivi_k_block_meta(D) + (size_t)kKiviBlock * kivi_k_token_bytes(D, b)); }
// Where a onebit block starts (keys or values): whole blocks of kOneBitBlock tokens before it.
REPOKV_HD size_t ob_k_block_offset(int D, int32_t t0) { return (size_t)(t0 / kOneBitBlock) * (ob_k_block_meta(D) + (size_t)kOneBitBlock * ob_k_token_bytes(D)); }
REPOKV_HD size_t ob_v_block_offset(int D, int32_t t0) { return (size_t)(t0 / kOneBitBlock) * (ob_v_block_meta(D) + (size_t)kOneBitBlock * ob_v_token_bytes(D)); }

// b-bit code of channel c in a packed row (channel c in byte c·b/8, bits (c·b) % 8 ...)
REPOKV_HD int get_code(const uint8_t *row, int c, int b) { return row[c * b / 8] >> ((c * b) % 8) & ((1 << b) - 1); }

// onebit's fixed rotation signs: a function of the normal channel's index (no stored bits)
REPOKV_HD float ob_fixed_sign(int i) {
    const uint32_t h = (uint32_t)(i + 1) * 2654435761u;
    return (h >> 15) & 1 ? -1.0f : 1.0f;
}

// Trit i (0..4) of a onebit value byte, as −1, 0 or +1 (TQ1_0's encoding, common.h trit_byte):
// y_0 = byte, t_i = ⌊3·y_i / 256⌋ − 1, y_{i+1} = 3·y_i mod 256.
REPOKV_HD int ob_trit(uint8_t byte, int i) {
    int y = byte;
    for (int k = 0; k < i; k++) y = 3 * y & 255;
    return (3 * y >> 8) - 1;
}

}  // namespace quant
}  // namespace repokv
