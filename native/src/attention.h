// Attention over the KV store (kv_store.h), as ggml custom ops.
//
// Per (KV head, block of <= 8 query rows) work item: every segment of the head writes its scores into one row buffer
// (kernel 1: scores), one masked softmax runs over the union (positions decide causality: key pos <= query pos), then
// every segment accumulates its values (kernel 2: accumulate). A new storage tier adds those two kernels only.
#pragma once

#include <cstdint>
#include <vector>

#include "ggml.h"
#include "kv_store.h"

namespace repokv {

// fp32 -> fp16 (round to nearest even), writing dst[i * stride].
void to_f16_strided(const float *src, uint16_t *dst, int n, int stride);
// Reads token t of a segment back as floats.
void segment_token(const Segment &seg, int32_t t, float *k, float *v);

struct AttnLayerCtx {
    KvStore *store = nullptr;
    int layer = 0;
    int n_head = 0;
    int n_head_kv = 0;
    int head_dim = 0;
    float scale = 1.0f;
    const int32_t *positions = nullptr;  // positions of the batch's tokens
    int n_tokens = 0;
};

// dst: dummy [1]; src0: K [head_dim, n_head_kv, n_tokens] f32 (post-RoPE); src1: V, same shape.
void kv_write_op(ggml_tensor *dst, int ith, int nth, void *userdata);
// dst: [head_dim * n_head, n_tokens] f32; src0: Q [head_dim, n_head, n_tokens] f32 (post-RoPE); src1: the write op.
void attention_op(ggml_tensor *dst, int ith, int nth, void *userdata);

// Whether the AVX2/F16C kernels are in use.
bool attention_simd();

}  // namespace repokv
