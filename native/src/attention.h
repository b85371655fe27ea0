// Attention over the KV store (kv_store.h), as ggml custom ops.
//
// Per (KV head, block of <= 8 query rows) work item: every segment of the head writes its scores into one row buffer
// (kernel 1: scores), one masked softmax runs over the union (positions decide causality: key pos <= query pos), then
// every segment accumulates its values (kernel 2: accumulate). A new storage tier adds those two kernels only.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "ggml.h"
#include "kv_store.h"

namespace repokv {

// fp32 -> fp16 (round to nearest even), writing dst[i * stride].
void to_f16_strided(const float *src, uint16_t *dst, int n, int stride);
// Reads token t of a segment back as floats.
void segment_token(const Segment &seg, int32_t t, float *k, float *v);

// Importance scores observed during attention (policies: docs/kv-policies.md "Scores"): for chosen query rows, the
// full-row fp32 softmax probabilities of every visible key are folded into per-(layer, KV head, key position)
// accumulators, over the G query heads of the KV head and over the rows:
//  - all_sum:  sum over every row with position < spec_from (H2O column sums), when `all_rows`;
//  - win_sum, win_max: sum / max over rows with position in [win_from, spec_from) (SnapKV observation window);
//  - spec_max: max over rows with position >= spec_from (SpecKV: the last prompt token and the draft tokens).
struct ScoreCollector {
    bool enabled = false;
    bool all_rows = false;
    int32_t win_from = INT32_MAX;
    int32_t spec_from = INT32_MAX;
    int n_layer = 0, n_head_kv = 0;
    int32_t cap = 0;  // positions per (layer, head)
    std::vector<float> all_sum, win_sum, win_max, spec_max;
    std::unique_ptr<std::mutex[]> locks;

    void init(int n_layer, int n_head_kv, int32_t cap);
    // Starts observing; `clear` zeroes the accumulators (else only the row ranges change).
    void reset(bool all_rows, int32_t win_from, int32_t spec_from, bool clear = true);
    size_t index(int layer, int h) const { return ((size_t)layer * n_head_kv + h) * (size_t)cap; }
};

struct AttnLayerCtx {
    KvStore *store = nullptr;
    int layer = 0;
    int n_head = 0;
    int n_head_kv = 0;
    int head_dim = 0;
    float scale = 1.0f;
    const int32_t *positions = nullptr;  // positions of the batch's tokens
    int n_tokens = 0;
    ScoreCollector *obs = nullptr;
};

// dst: dummy [1]; src0: K [head_dim, n_head_kv, n_tokens] f32 (post-RoPE); src1: V, same shape.
void kv_write_op(ggml_tensor *dst, int ith, int nth, void *userdata);
// dst: [head_dim * n_head, n_tokens] f32; src0: Q [head_dim, n_head, n_tokens] f32 (post-RoPE); src1: the write op.
void attention_op(ggml_tensor *dst, int ith, int nth, void *userdata);

// Folds R rows of probabilities (P[r * ld + j], keys of the head's segments back to back, ne[s] visible keys of
// segment s) into the collector for (layer, h); qpos[r]: the rows' positions.
void observe_rows(ScoreCollector &obs, int layer, int h, const HeadCache &hc, const int32_t *ne, const float *P, size_t ld, int R,
                  const int32_t *qpos);

// Whether a SIMD kernel table is in use (kernels/kernels.h: AVX2 on x86-64, NEON on arm64), not the portable one.
bool attention_simd();

}  // namespace repokv
