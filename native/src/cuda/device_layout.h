// The device layout of one KV segment (one layer, one KV head, one tier): the CPU's bytes, copied as they are.
// Packed tiers: the QuantSegment's key, value and metadata buffers (quant/layout.h, common.h), then the tokens'
// positions (int32). fp16: keys token-major and values in transposed 8-token blocks, as kv_store.h's Segment holds
// them (the value buffer is whole 8-token blocks, as the CPU allocates it), then the positions.
//
// Plain C++ (no CUDA types): the addon's tests check these counts against the CPU's allocations on machines without a
// GPU (test/native/cuda.test.mjs through the test addon), and the CUDA harness checks its device allocations against
// them (native/test-cuda/).
#pragma once

#include <cstddef>
#include <cstdint>

#include "../quant/layout.h"
#include "../storage_format.h"

namespace repokv {
namespace cuda {

struct SegmentBytes {
    size_t key = 0, value = 0, meta = 0, pos = 0;
    size_t total() const { return key + value + meta + pos; }
};

inline SegmentBytes device_segment_bytes(Tier tier, int D, int32_t n) {
    using namespace quant;
    SegmentBytes b;
    if (n <= 0) return b;
    b.pos = (size_t)n * sizeof(int32_t);
    const size_t kivi_blocks = ((size_t)n + kKiviBlock - 1) / kKiviBlock;
    const size_t ob_blocks = ((size_t)n + kOneBitBlock - 1) / kOneBitBlock;
    switch (tier) {
        case Tier::F16:
            b.key = (size_t)n * D * 2;
            b.value = ((size_t)n + 7) / 8 * 8 * D * 2;
            break;
        case Tier::Q8:
            b.key = b.value = (size_t)n * q8_token_bytes(D);
            break;
        case Tier::Kivi4:
        case Tier::Kivi2: {
            const int bits = tier == Tier::Kivi4 ? 4 : 2;
            b.key = kivi_blocks * kivi_k_block_meta(D) + (size_t)n * kivi_k_token_bytes(D, bits);
            b.value = (size_t)n * kivi_v_token_bytes(D, bits);
            break;
        }
        case Tier::OneBit:
            b.meta = ob_meta_bytes(D);
            b.key = ob_blocks * ob_k_block_meta(D) + (size_t)n * ob_k_token_bytes(D);
            b.value = ob_blocks * ob_v_block_meta(D) + (size_t)n * ob_v_token_bytes(D);
            break;
    }
    return b;
}

}  // namespace cuda
}  // namespace repokv
