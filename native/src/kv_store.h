// repokv's own KV cache: per layer, per KV head, a list of segments. A segment holds a set of tokens (their original
// positions, keys post-RoPE, values) in one storage format ("tier"). Attention (attention.h) computes the scores of a
// block of query rows against every segment of a head, takes one softmax over the union, then accumulates values
// segment by segment, so a new tier is a new segment format with two kernels (scores, accumulate) and nothing else in
// attention changes. Policy `full` keeps one fp16 segment per head, in position order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "quant/quant.h"
#include "storage_format.h"

namespace repokv {

// fp16 segment layout (chosen so attention sums in the same order as ggml's matmuls, see attention.cpp):
//  - keys token-major: k[t * head_dim + d]
//  - values in blocks of 8 tokens, transposed inside a block: v[(blk * head_dim + d) * 8 + lane]
// quantized segments (tiers Q8 .. OneBit): `packed` holds keys, values and metadata (quant.h), built once from a set
// of tokens by KvStore::compact; tokens are not appended to them (new tokens go to the head's last, fp16, segment).
//  - pos[t]: the token's original position (RoPE was applied at that position), in every tier
struct Segment {
    Tier tier = Tier::F16;
    int head_dim = 0;
    int32_t n = 0;
    bool sorted = true;  // positions strictly increasing in token order (then attention binary-searches the mask)
    std::vector<int32_t> pos;
    std::vector<uint16_t> k;
    std::vector<uint16_t> v;
    quant::QuantSegment packed;

    Segment(Tier tier, int head_dim, int32_t reserve_tokens);
    // A quantized segment of n tokens (K, V: n x head_dim floats, token-major; positions increasing).
    static Segment quantized(Tier tier, int head_dim, int32_t n, const float *K, const float *V, const int32_t *positions);
    void reserve(int32_t tokens);
    // Appends one token (k, v: head_dim floats each). fp16 segments only.
    void append(const float *k, const float *v, int32_t position);
    // Drops every token at index >= n_keep (tokens are in append order). A quantized segment is re-packed from its
    // dequantized tokens (rare: only a truncation into the compressed part of a store does it).
    void truncate_to(int32_t n_keep);
    // Bytes the segment's tokens occupy (keys + values + format metadata + positions), and what is allocated. For a
    // quantized segment both are the allocation (its buffers are sized exactly, quant::format_bytes + positions).
    size_t bytes_used() const;
    size_t bytes_reserved() const;
    // Of bytes_used(): the positions.
    size_t position_bytes() const { return (size_t)n * sizeof(int32_t); }
};

struct HeadCache {
    std::vector<Segment> segments;
    int32_t n_tokens() const;
};

class KvStore {
public:
    // reserve_tokens: capacity reserved per head (default: context_size).
    KvStore(int n_layer, int n_head_kv, int head_dim, int32_t context_size, int32_t reserve_tokens = -1);
    // A compacted copy: for each (layer, head) `keep[layer * n_head_kv + h]` lists the positions to keep (each must be
    // held by the head; any order, duplicates ignored); they are copied, in position order, into one fp16 segment with
    // room for `extra_tokens` more. Only the kept entries are allocated.
    static std::unique_ptr<KvStore> compact(const KvStore &src, const std::vector<std::vector<int32_t>> &keep, int32_t extra_tokens);
    // A tiered copy: for each (layer, head) and tier, `tiers[tier][layer * n_head_kv + h]` lists positions to keep in
    // that tier (a position in no list is dropped; in two lists, an error). Every non-empty quantized tier becomes one
    // packed segment (quant.h), in position order; the fp16 tier is the head's last segment, with room for
    // `extra_tokens` more (decoding appends there). Missing tiers (tiers.size() < kTierCount) are empty.
    // Every token of src in one fp16 segment per head (packed tiers dequantized): the dense reference that tests
    // compare tiered attention against. Test addon only (defined in test/test_hooks.cpp).
    static std::unique_ptr<KvStore> dequantized(const KvStore &src, int32_t extra_tokens);
    static std::unique_ptr<KvStore> compact_tiered(const KvStore &src, const std::vector<std::vector<std::vector<int32_t>>> &tiers,
                                                   int32_t extra_tokens);

    HeadCache &head(int layer, int h) { return heads_[(size_t)layer * n_head_kv_ + h]; }
    const HeadCache &head(int layer, int h) const { return heads_[(size_t)layer * n_head_kv_ + h]; }
    int n_layer() const { return n_layer_; }
    int n_head_kv() const { return n_head_kv_; }
    int head_dim() const { return head_dim_; }
    int32_t context_size() const { return context_size_; }

    // Policy `full`: the fp16 segment new tokens are appended to.
    Segment &append_segment(int layer, int h) { return head(layer, h).segments.back(); }
    // Removes every token whose position is >= position, in every layer and head.
    void truncate(int32_t position);
    // Staging (compressing policies, docs/kv-policies.md "Staging and the master copy"): in every
    // head, moves the fp16 tokens older than the `recent` newest, except positions < `sinks`, into a packed segment of
    // `tier` (appended to the one staging already made), once at least `min_move` of them are waiting. The fp16
    // segment stays last and is reallocated small, so the memory of the moved tokens is returned.
    // Formats with token blocks (kivi: 32) move whole blocks only; the remainder stays fp16 until a block fills.
    // onebit cannot stage (an error).
    void stage(Tier tier, int32_t sinks, int32_t recent, int32_t min_move);
    // Appends to each head's fp16 segment (its last) the tokens `src` holds at positions >= `from`, in position order
    // (packed tiers of src dequantized). A compressed store takes the tokens just evaluated into its master copy this
    // way when a request changes only the end of the prompt (Session::begin_tail / end_tail).
    void append_from(const KvStore &src, int32_t from);
    // Largest number of tokens held by any head (scratch sizing).
    int32_t max_tokens() const;
    size_t bytes_used() const;

private:
    int n_layer_, n_head_kv_, head_dim_;
    int32_t context_size_;
    std::vector<HeadCache> heads_;
};

}  // namespace repokv
