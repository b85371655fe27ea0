#include "kv_store.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "attention.h"

namespace repokv {

Segment::Segment(Tier tier_, int head_dim_, int32_t reserve_tokens) : tier(tier_), head_dim(head_dim_) {
    if (tier == Tier::F16) reserve(reserve_tokens);
}

Segment Segment::quantized(Tier tier, int head_dim, int32_t n, const float *K, const float *V, const int32_t *positions) {
    Segment seg(tier, head_dim, 0);
    seg.packed = quant::quantize(tier, head_dim, n, K, V);
    seg.n = n;
    seg.pos.assign(positions, positions + n);
    seg.pos.shrink_to_fit();
    for (int32_t t = 1; t < n; t++)
        if (positions[t] <= positions[t - 1]) seg.sorted = false;
    return seg;
}

void Segment::reserve(int32_t tokens) {
    if (tier != Tier::F16) throw std::logic_error("reserve: quantized segments are built whole");
    const size_t blocks = ((size_t)tokens + 7) / 8;
    pos.reserve(tokens);
    k.reserve((size_t)tokens * head_dim);
    v.reserve(blocks * 8 * head_dim);
}

void Segment::append(const float *kf, const float *vf, int32_t position) {
    if (tier != Tier::F16) throw std::logic_error("append: tokens are appended to fp16 segments only");
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
    if (tier != Tier::F16) {
        // q8 and kivi: the packed bytes of the kept tokens are a prefix (a cut kivi block keeps its scales: exact)
        if (quant::truncate(packed, n_keep)) {
            pos.resize(n_keep);
            pos.shrink_to_fit();
            n = n_keep;
            if (n == 0) packed = quant::QuantSegment{};
            return;
        }
        std::vector<float> K((size_t)n * head_dim), V((size_t)n * head_dim);
        quant::dequantize(packed, K.data(), V.data());
        std::vector<int32_t> keep_pos(pos.begin(), pos.begin() + n_keep);
        *this = n_keep ? quantized(tier, head_dim, n_keep, K.data(), V.data(), keep_pos.data()) : Segment(tier, head_dim, 0);
        return;
    }
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
    if (tier != Tier::F16) return packed.bytes_allocated() + pos.capacity() * sizeof(int32_t);
    return (size_t)n * head_dim * 2 /*K*/ + (size_t)n * head_dim * 2 /*V*/ + (size_t)n * sizeof(int32_t);
}

size_t Segment::bytes_reserved() const {
    return k.capacity() * 2 + v.capacity() * 2 + pos.capacity() * sizeof(int32_t) + packed.bytes_allocated();
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

namespace {

// Where each position of a head lives: (position, (segment, index)), sorted by position.
std::vector<std::pair<int32_t, std::pair<int, int32_t>>> locate(const HeadCache &from) {
    std::vector<std::pair<int32_t, std::pair<int, int32_t>>> where;
    for (size_t s = 0; s < from.segments.size(); s++)
        for (int32_t t = 0; t < from.segments[s].n; t++) where.push_back({from.segments[s].pos[t], {(int)s, t}});
    std::sort(where.begin(), where.end());
    return where;
}

// Packed segments of a head dequantized on first use, shared by the gathers of every tier (one dequantization per
// segment and head, not one per tier).
struct Dequantized {
    std::vector<std::vector<float>> k, v;
};

// Reads the tokens at `want` (sorted, unique) of a head as floats (K, V: want.size() x head_dim). A packed segment
// is dequantized once (not token by token) into `dq`.
void gather(const HeadCache &from, const std::vector<std::pair<int32_t, std::pair<int, int32_t>>> &where, const std::vector<int32_t> &want,
            int head_dim, float *K, float *V, Dequantized &dq) {
    auto &dk = dq.k, &dv = dq.v;
    if (dk.size() != from.segments.size()) dk.assign(from.segments.size(), {}), dv.assign(from.segments.size(), {});
    size_t w = 0;
    for (size_t i = 0; i < want.size(); i++) {
        const int32_t p = want[i];
        while (w < where.size() && where[w].first < p) w++;
        if (w == where.size() || where[w].first != p)
            throw std::invalid_argument("keep lists: position " + std::to_string(p) + " is not in the cache");
        const int s = where[w].second.first;
        const int32_t t = where[w].second.second;
        const Segment &seg = from.segments[s];
        if (seg.tier == Tier::F16) {
            segment_token(seg, t, K + i * head_dim, V + i * head_dim);
            continue;
        }
        if (dk[s].empty()) {
            dk[s].resize((size_t)seg.n * head_dim);
            dv[s].resize((size_t)seg.n * head_dim);
            quant::dequantize(seg.packed, dk[s].data(), dv[s].data());
        }
        memcpy(K + i * head_dim, dk[s].data() + (size_t)t * head_dim, head_dim * sizeof(float));
        memcpy(V + i * head_dim, dv[s].data() + (size_t)t * head_dim, head_dim * sizeof(float));
    }
}

std::vector<int32_t> sorted_unique(std::vector<int32_t> v) {
    std::sort(v.begin(), v.end());
    v.erase(std::unique(v.begin(), v.end()), v.end());
    return v;
}

}  // namespace

std::unique_ptr<KvStore> KvStore::compact(const KvStore &src, const std::vector<std::vector<int32_t>> &keep, int32_t extra_tokens) {
    return compact_tiered(src, {keep}, extra_tokens);
}

std::unique_ptr<KvStore> KvStore::compact_tiered(const KvStore &src, const std::vector<std::vector<std::vector<int32_t>>> &tiers,
                                                 int32_t extra_tokens) {
    const size_t nh = (size_t)src.n_layer_ * src.n_head_kv_;
    const int D = src.head_dim_;
    if (tiers.empty() || tiers.size() > (size_t)kTierCount) throw std::invalid_argument("tier lists: 1 to 5 tiers expected");
    for (auto &t : tiers)
        if (!t.empty() && t.size() != nh) throw std::invalid_argument("keep lists: one per (layer, KV head) expected");
    for (size_t t = 1; t < tiers.size(); t++)
        if (!tiers[t].empty() && !quant::supports_head_dim((Tier)t, D))
            throw std::invalid_argument(std::string("tier ") + tier_name((Tier)t) + " does not support head dim " + std::to_string(D));
    auto out = std::make_unique<KvStore>(src.n_layer_, src.n_head_kv_, src.head_dim_, src.context_size_, 0);
    std::vector<float> K, V;
    for (size_t i = 0; i < nh; i++) {
        const HeadCache &from = src.heads_[i];
        const auto where = locate(from);
        HeadCache &to = out->heads_[i];
        Segment fp16 = std::move(to.segments.back());
        to.segments.clear();
        std::vector<int32_t> seen;
        Dequantized dq;
        for (size_t t = 0; t < tiers.size(); t++) {
            if (tiers[t].empty()) continue;
            const std::vector<int32_t> want = sorted_unique(tiers[t][i]);
            seen.insert(seen.end(), want.begin(), want.end());
            K.resize(want.size() * D);
            V.resize(want.size() * D);
            gather(from, where, want, D, K.data(), V.data(), dq);
            if (t == 0) {
                fp16.reserve((int32_t)want.size() + std::max<int32_t>(0, extra_tokens));
                for (size_t j = 0; j < want.size(); j++) fp16.append(K.data() + j * D, V.data() + j * D, want[j]);
            } else if (!want.empty()) {
                to.segments.push_back(Segment::quantized((Tier)t, D, (int32_t)want.size(), K.data(), V.data(), want.data()));
            }
        }
        std::sort(seen.begin(), seen.end());
        if (std::adjacent_find(seen.begin(), seen.end()) != seen.end())
            throw std::invalid_argument("tier lists: a position is listed in two tiers of one head");
        if (tiers[0].empty()) fp16.reserve(std::max<int32_t>(0, extra_tokens));
        // the fp16 segment last: decoding appends to it (append_segment)
        to.segments.push_back(std::move(fp16));
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
                // Compact in place (rare: an fp16 segment appended out of order; quantized segments are built sorted).
                // Rebuild via float round trip is exact for fp16.
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
        // empty packed segments (a truncation before them) go; the fp16 segment stays last
        for (size_t s = 0; s + 1 < h.segments.size();) {
            if (h.segments[s].n == 0) h.segments.erase(h.segments.begin() + s);
            else s++;
        }
    }
}

void KvStore::stage(Tier tier, int32_t sinks, int32_t recent, int32_t min_move) {
    if (tier == Tier::F16) return;
    const quant::Format f = tier;
    const int32_t B = quant::token_block(f);
    if (f == quant::Format::OneBit) throw std::invalid_argument("stage: onebit cannot stage (its blocks carry per-segment metadata)");
    const int D = head_dim_;
    std::vector<float> K, V;
    std::vector<int32_t> pos;
    for (auto &h : heads_) {
        Segment &f16 = h.segments.back();
        if (f16.tier != Tier::F16 || !f16.sorted) continue;
        const int32_t s0 = (int32_t)(std::lower_bound(f16.pos.begin(), f16.pos.end(), sinks) - f16.pos.begin());
        // whole token blocks only (kivi: 32 tokens share a key scale per channel); the rest waits in fp16
        const int32_t moved = std::max<int32_t>(0, f16.n - recent - s0) / B * B;
        if (moved == 0 || moved < std::max<int32_t>(1, min_move)) continue;
        const int32_t s1 = s0 + moved;
        K.resize((size_t)moved * D);
        V.resize((size_t)moved * D);
        pos.assign(f16.pos.begin() + s0, f16.pos.begin() + s1);
        for (int32_t t = s0; t < s1; t++) segment_token(f16, t, K.data() + (size_t)(t - s0) * D, V.data() + (size_t)(t - s0) * D);
        Segment *staged = h.segments.size() >= 2 ? &h.segments[h.segments.size() - 2] : nullptr;
        // appended to the staging segment when it ends on a whole block (a truncation may have cut its last block:
        // then the new blocks start a segment of their own)
        if (staged && staged->tier == tier && staged->sorted && staged->n && staged->n % B == 0 && staged->pos.back() < pos.front()) {
            quant::append(staged->packed, quant::quantize(f, D, moved, K.data(), V.data()));
            staged->pos.insert(staged->pos.end(), pos.begin(), pos.end());
            staged->pos.shrink_to_fit();
            staged->n += moved;
        } else {
            h.segments.insert(h.segments.end() - 1, Segment::quantized(tier, D, moved, K.data(), V.data(), pos.data()));
        }
        // the fp16 segment again: its sinks and recent tokens, in a fresh small allocation
        Segment &old = h.segments.back();
        Segment fresh(Tier::F16, D, old.n - moved + 2 * min_move);
        std::vector<float> kf(D), vf(D);
        for (int32_t t = 0; t < old.n; t++) {
            if (t >= s0 && t < s1) continue;
            segment_token(old, t, kf.data(), vf.data());
            fresh.append(kf.data(), vf.data(), old.pos[t]);
        }
        old = std::move(fresh);
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

void KvStore::append_from(const KvStore &src, int32_t from) {
    if (src.n_layer_ != n_layer_ || src.n_head_kv_ != n_head_kv_ || src.head_dim_ != head_dim_)
        throw std::logic_error("append_from: the stores have different shapes");
    std::vector<float> kf(head_dim_), vf(head_dim_);
    std::vector<std::pair<int32_t, std::pair<size_t, int32_t>>> picked;  // (position, (segment, token))
    for (size_t i = 0; i < heads_.size(); i++) {
        Segment &dst = heads_[i].segments.back();
        if (dst.tier != Tier::F16) throw std::logic_error("append_from: the head's last segment is not fp16");
        const auto &segments = src.heads_[i].segments;
        picked.clear();
        for (size_t s = 0; s < segments.size(); s++)
            for (int32_t t = 0; t < segments[s].n; t++)
                if (segments[s].pos[t] >= from) picked.push_back({segments[s].pos[t], {s, t}});
        std::sort(picked.begin(), picked.end());
        dst.reserve(dst.n + (int32_t)picked.size());
        for (const auto &p : picked) {
            segment_token(segments[p.second.first], p.second.second, kf.data(), vf.data());
            dst.append(kf.data(), vf.data(), p.first);
        }
    }
}

}  // namespace repokv
