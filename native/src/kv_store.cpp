#include "kv_store.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "attention.h"

namespace repokv {

const char *tier_name(Tier t) {
    switch (t) {
        case Tier::F16: return "f16";
    }
    return "?";
}

Segment::Segment(Tier tier_, int head_dim_, int32_t reserve_tokens) : tier(tier_), head_dim(head_dim_) { reserve(reserve_tokens); }

void Segment::reserve(int32_t tokens) {
    const size_t blocks = ((size_t)tokens + 7) / 8;
    pos.reserve(tokens);
    k.reserve((size_t)tokens * head_dim);
    v.reserve(blocks * 8 * head_dim);
}

void Segment::append(const float *kf, const float *vf, int32_t position) {
    k.resize(k.size() + head_dim);
    to_f16_strided(kf, k.data() + (size_t)n * head_dim, head_dim, 1);
    const int32_t lane = n % 8;
    if (lane == 0) v.resize(v.size() + (size_t)8 * head_dim, 0);  // new zeroed block of 8 tokens
    uint16_t *vb = v.data() + (size_t)(n / 8) * 8 * head_dim;
    to_f16_strided(vf, vb + lane, head_dim, 8);
    if (n > 0 && position <= pos.back()) sorted = false;
    pos.push_back(position);
    n++;
}

void Segment::truncate_to(int32_t n_keep) {
    if (n_keep >= n) return;
    if (n_keep < 0) n_keep = 0;
    const size_t blocks = ((size_t)n_keep + 7) / 8;
    v.resize(blocks * 8 * head_dim);
    // zero the lanes of the last partial block that now hold dropped tokens
    if (n_keep % 8) {
        uint16_t *vb = v.data() + (blocks - 1) * 8 * head_dim;
        for (int d = 0; d < head_dim; d++)
            for (int lane = n_keep % 8; lane < 8; lane++) vb[d * 8 + lane] = 0;
    }
    k.resize((size_t)n_keep * head_dim);
    pos.resize(n_keep);
    n = n_keep;
}

size_t Segment::bytes_used() const {
    return (size_t)n * head_dim * 2 /*K*/ + (size_t)n * head_dim * 2 /*V*/ + (size_t)n * sizeof(int32_t);
}

size_t Segment::bytes_reserved() const {
    return k.capacity() * 2 + v.capacity() * 2 + pos.capacity() * sizeof(int32_t);
}

int32_t HeadCache::n_tokens() const {
    int32_t s = 0;
    for (auto &seg : segments) s += seg.n;
    return s;
}

KvStore::KvStore(int n_layer, int n_head_kv, int head_dim, int32_t context_size, int32_t reserve_tokens)
    : n_layer_(n_layer), n_head_kv_(n_head_kv), head_dim_(head_dim), context_size_(context_size) {
    heads_.resize((size_t)n_layer * n_head_kv);
    for (auto &h : heads_) h.segments.emplace_back(Tier::F16, head_dim, reserve_tokens < 0 ? context_size : reserve_tokens);
}

std::unique_ptr<KvStore> KvStore::compact(const KvStore &src, const std::vector<std::vector<int32_t>> &keep, int32_t extra_tokens) {
    const size_t nh = (size_t)src.n_layer_ * src.n_head_kv_;
    if (keep.size() != nh) throw std::invalid_argument("keep lists: one per (layer, KV head) expected");
    auto out = std::make_unique<KvStore>(src.n_layer_, src.n_head_kv_, src.head_dim_, src.context_size_, 0);
    std::vector<float> kf(src.head_dim_), vf(src.head_dim_);
    for (size_t i = 0; i < nh; i++) {
        const HeadCache &from = src.heads_[i];
        std::vector<int32_t> want = keep[i];
        std::sort(want.begin(), want.end());
        want.erase(std::unique(want.begin(), want.end()), want.end());
        Segment &seg = out->heads_[i].segments.back();
        seg.reserve((int32_t)want.size() + std::max<int32_t>(0, extra_tokens));
        // every source segment, merged by position (policy `full` stores are one sorted segment)
        std::vector<std::pair<int32_t, std::pair<int, int32_t>>> where;  // position -> (segment, index)
        for (size_t s = 0; s < from.segments.size(); s++)
            for (int32_t t = 0; t < from.segments[s].n; t++) where.push_back({from.segments[s].pos[t], {(int)s, t}});
        std::sort(where.begin(), where.end());
        size_t w = 0;
        for (int32_t p : want) {
            while (w < where.size() && where[w].first < p) w++;
            if (w == where.size() || where[w].first != p)
                throw std::invalid_argument("keep lists: position " + std::to_string(p) + " is not in the cache");
            segment_token(from.segments[where[w].second.first], where[w].second.second, kf.data(), vf.data());
            seg.append(kf.data(), vf.data(), p);
        }
    }
    return out;
}

void KvStore::truncate(int32_t position) {
    for (auto &h : heads_) {
        for (auto &seg : h.segments) {
            // Segments of policy `full` are in position order; the general case keeps tokens with pos < position.
            int32_t keep = 0;
            if (seg.sorted) {
                keep = (int32_t)(std::lower_bound(seg.pos.begin(), seg.pos.end(), position) - seg.pos.begin());
                seg.truncate_to(keep);
            } else {
                // Compact in place (rare: reordered tiers). Rebuild via float round trip is exact for fp16.
                Segment fresh(seg.tier, seg.head_dim, seg.n);
                std::vector<float> kf(seg.head_dim), vf(seg.head_dim);
                for (int32_t t = 0; t < seg.n; t++) {
                    if (seg.pos[t] >= position) continue;
                    segment_token(seg, t, kf.data(), vf.data());
                    fresh.append(kf.data(), vf.data(), seg.pos[t]);
                }
                seg = std::move(fresh);
            }
        }
    }
}

int32_t KvStore::max_tokens() const {
    int32_t m = 0;
    for (auto &h : heads_) m = std::max(m, h.n_tokens());
    return m;
}

size_t KvStore::bytes_used() const {
    size_t s = 0;
    for (auto &h : heads_)
        for (auto &seg : h.segments) s += seg.bytes_used();
    return s;
}

}  // namespace repokv
