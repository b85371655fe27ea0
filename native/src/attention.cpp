#include "attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/kernels.h"

namespace repokv {

namespace {

// Match llama.cpp's non-flash attention rounding (Q and the softmax probabilities go through fp16 before the
// matmuls with the fp16 K/V cache), so that policy `full` reproduces its logits as closely as possible.
constexpr bool kMatchLlamaRounding = true;

// ---------------------------------------------------------------------------------------------------------------
// tier dispatch: the two kernels every segment format provides (kernels/kernels.h, the table chosen for this CPU)

void segment_scores(const kernels::Kernels &K, const Segment &seg, int32_t n, const float *q, int R, float scale, float *S, size_t ld, bool single) {
    if (seg.tier == Tier::F16) return (single ? K.f16_scores_single : K.f16_scores)(seg.k.data(), n, seg.head_dim, q, R, scale, S, ld);
    // packed kernels (quant/): codes read once per block for all R rows, scales folded into the query
    K.scores[(int)seg.tier](seg.packed, std::min(n, seg.packed.n), q, R, scale, S, ld);
}

void segment_accumulate(const kernels::Kernels &K, const Segment &seg, int32_t n, const float *P, size_t ld, int R, float *out, bool single) {
    if (seg.tier == Tier::F16) return (single ? K.f16_accumulate_single : K.f16_accumulate)(seg.v.data(), n, seg.head_dim, P, ld, R, out);
    K.accumulate[(int)seg.tier](seg.packed, std::min(n, seg.packed.n), P, ld, R, out);
}

struct Scratch {
    std::vector<float> S, q, out, P32;
    std::vector<int32_t> qpos;
};
thread_local Scratch t_scratch;

constexpr int kMaxRows = 8;

}  // namespace

bool attention_simd() { return &kernels::active() != &kernels::scalar(); }

void ScoreCollector::init(int nl, int nh, int32_t c) {
    n_layer = nl;
    n_head_kv = nh;
    cap = c;
    locks.reset(new std::mutex[(size_t)nl * nh]);
}

void ScoreCollector::reset(bool all, int32_t wf, int32_t sf, bool clear) {
    enabled = true;
    all_rows = all && (clear || !all_sum.empty());
    win_from = wf;
    spec_from = sf;
    if (!clear && !win_sum.empty()) return;
    const size_t n = (size_t)n_layer * n_head_kv * cap;
    if (all) all_sum.assign(n, 0.0f); else all_sum.clear();
    win_sum.assign(n, 0.0f);
    win_max.assign(n, 0.0f);
    spec_max.assign(n, 0.0f);
}

void observe_rows(ScoreCollector &obs, int layer, int h, const HeadCache &hc, const int32_t *ne, const float *P, size_t ld, int R,
                  const int32_t *qpos) {
    const size_t base = obs.index(layer, h);
    std::lock_guard<std::mutex> lock(obs.locks[(size_t)layer * obs.n_head_kv + h]);
    for (int r = 0; r < R; r++) {
        const float *Pr = P + (size_t)r * ld;
        const bool spec = qpos[r] >= obs.spec_from;
        const bool win = !spec && qpos[r] >= obs.win_from;
        const bool all = !spec && obs.all_rows;
        if (!spec && !win && !all) continue;
        size_t off = 0;
        for (size_t s = 0; s < hc.segments.size(); s++) {
            const int32_t *pos = hc.segments[s].pos.data();
            const int32_t n = ne[s];
            if (n > 0 && pos[0] >= 0 && pos[n - 1] < obs.cap && pos[n - 1] - pos[0] == n - 1 && hc.segments[s].sorted) {
                // consecutive positions (a master copy's segments): dense loops the compiler vectorizes; the same
                // element-wise operations in the same row order as the general loop below, so the same results
                const float *x = Pr + off;
                const size_t b = base + (size_t)pos[0];
                if (all) {
                    float *a = obs.all_sum.data() + b;
                    for (int32_t j = 0; j < n; j++) a[j] += x[j];
                }
                if (win) {
                    float *ws = obs.win_sum.data() + b, *wm = obs.win_max.data() + b;
                    for (int32_t j = 0; j < n; j++) ws[j] += x[j];
                    for (int32_t j = 0; j < n; j++) wm[j] = std::max(wm[j], x[j]);
                }
                if (spec) {
                    float *sm = obs.spec_max.data() + b;
                    for (int32_t j = 0; j < n; j++) sm[j] = std::max(sm[j], x[j]);
                }
                off += n;
                continue;
            }
            for (int32_t j = 0; j < ne[s]; j++) {
                const int32_t p = pos[j];
                if (p < 0 || p >= obs.cap) continue;
                const float x = Pr[off + j];
                if (all) obs.all_sum[base + p] += x;
                if (win) {
                    obs.win_sum[base + p] += x;
                    obs.win_max[base + p] = std::max(obs.win_max[base + p], x);
                }
                if (spec) obs.spec_max[base + p] = std::max(obs.spec_max[base + p], x);
            }
            off += ne[s];
        }
    }
}

void to_f16_strided(const float *src, uint16_t *dst, int n, int stride) { kernels::active().to_f16(src, dst, n, stride); }

void segment_token(const Segment &seg, int32_t t, float *k, float *v) {
    switch (seg.tier) {
        case Tier::F16: {
            const uint16_t *vb = seg.v.data() + (size_t)(t / 8) * seg.head_dim * 8 + (t % 8);
            for (int d = 0; d < seg.head_dim; d++) {
                k[d] = ggml_fp16_to_fp32(seg.k[(size_t)t * seg.head_dim + d]);
                v[d] = ggml_fp16_to_fp32(vb[d * 8]);
            }
            return;
        }
        case Tier::Q8:
        case Tier::Kivi4:
        case Tier::Kivi2:
        case Tier::OneBit: {
            // Whole-segment dequantization for one token: only compaction of an already compressed store reads a
            // packed token back, which the engine does not do on its hot path.
            std::vector<float> K((size_t)seg.n * seg.head_dim), V((size_t)seg.n * seg.head_dim);
            quant::dequantize(seg.packed, K.data(), V.data());
            memcpy(k, K.data() + (size_t)t * seg.head_dim, seg.head_dim * sizeof(float));
            memcpy(v, V.data() + (size_t)t * seg.head_dim, seg.head_dim * sizeof(float));
            return;
        }
    }
}

void kv_write_op(ggml_tensor *dst, int ith, int nth, void *userdata) {
    auto *c = (AttnLayerCtx *)userdata;
    const ggml_tensor *K = dst->src[0];
    const ggml_tensor *V = dst->src[1];
    for (int h = ith; h < c->n_head_kv; h += nth) {
        Segment &seg = c->store->append_segment(c->layer, h);
        for (int t = 0; t < c->n_tokens; t++) {
            const float *kp = (const float *)((const char *)K->data + h * K->nb[1] + t * K->nb[2]);
            const float *vp = (const float *)((const char *)V->data + h * V->nb[1] + t * V->nb[2]);
            seg.append(kp, vp, c->positions[t]);
        }
    }
}

void attention_op(ggml_tensor *dst, int ith, int nth, void *userdata) {
    auto *c = (AttnLayerCtx *)userdata;
    const ggml_tensor *Q = dst->src[0];
    const int hd = c->head_dim;
    const int G = c->n_head / c->n_head_kv;
    const int T = c->n_tokens;
    const int rows_per_head = T * G;
    const int blocks_per_head = (rows_per_head + kMaxRows - 1) / kMaxRows;
    const int n_items = c->n_head_kv * blocks_per_head;

    Scratch &sc = t_scratch;
    const kernels::Kernels &K = kernels::active();
    sc.q.resize((size_t)kMaxRows * hd);
    sc.out.resize((size_t)kMaxRows * hd);
    sc.qpos.resize(kMaxRows);

    for (int item = ith; item < n_items; item += nth) {
        const int h = item / blocks_per_head;
        const int row0 = (item % blocks_per_head) * kMaxRows;
        const int R = std::min(kMaxRows, rows_per_head - row0);
        const HeadCache &hc = c->store->head(c->layer, h);

        // gather query rows: row = t * G + g -> query head h * G + g of token t
        int32_t max_qpos = std::numeric_limits<int32_t>::min();
        for (int r = 0; r < R; r++) {
            const int row = row0 + r, t = row / G, g = row % G;
            const float *qp = (const float *)((const char *)Q->data + (size_t)(h * G + g) * Q->nb[1] + (size_t)t * Q->nb[2]);
            float *qd = sc.q.data() + r * hd;
            memcpy(qd, qp, hd * sizeof(float));
            if (kMatchLlamaRounding) K.scale_round_f16(qd, hd, 1.0f);
            sc.qpos[r] = c->positions[t];
            max_qpos = std::max(max_qpos, sc.qpos[r]);
        }

        // visible extent of each segment (sorted segments stop at the last key a row can see)
        size_t total = 0;
        int32_t n_eff[16];
        std::vector<int32_t> n_eff_big;
        int32_t *ne = hc.segments.size() <= 16 ? n_eff : (n_eff_big.resize(hc.segments.size()), n_eff_big.data());
        for (size_t s = 0; s < hc.segments.size(); s++) {
            const Segment &seg = hc.segments[s];
            int32_t n = seg.n;
            if (n && seg.sorted && seg.pos[n - 1] > max_qpos) {
                // full segments are position-ordered: binary search the causal limit
                n = (int32_t)(std::upper_bound(seg.pos.begin(), seg.pos.begin() + n, max_qpos) - seg.pos.begin());
            }
            ne[s] = n;
            total += n;
        }
        const size_t ld = total + 8;
        if (sc.S.size() < ld * R) sc.S.resize(ld * R);

        // 1. scores, segment by segment, into one row buffer
        size_t off = 0;
        for (size_t s = 0; s < hc.segments.size(); s++) {
            if (ne[s]) segment_scores(K, hc.segments[s], ne[s], sc.q.data(), R, c->scale, sc.S.data() + off, ld, T == 1);
            off += ne[s];
        }
        // 2. causal mask by position, softmax over the union
        ScoreCollector *obs = c->obs && c->obs->enabled ? c->obs : nullptr;
        bool observe = false;
        if (obs)
            for (int r = 0; r < R; r++)
                if (sc.qpos[r] >= obs->spec_from || sc.qpos[r] >= obs->win_from || obs->all_rows) observe = true;
        if (observe) {
            if (sc.P32.size() < ld * R) sc.P32.resize(ld * R);
            std::fill(sc.P32.begin(), sc.P32.begin() + ld * R, 0.0f);
        }
        for (int r = 0; r < R; r++) {
            float *Sr = sc.S.data() + r * ld;
            off = 0;
            float mx = -INFINITY;
            for (size_t s = 0; s < hc.segments.size(); s++) {
                const Segment &seg = hc.segments[s];
                const int32_t *pos = seg.pos.data();
                if (seg.sorted) {
                    // position-ordered: a visible prefix, then masked keys
                    const int32_t vis = (int32_t)(std::upper_bound(pos, pos + ne[s], sc.qpos[r]) - pos);
                    mx = std::max(mx, K.max(Sr + off, vis));
                    for (int32_t j = vis; j < ne[s]; j++) Sr[off + j] = -INFINITY;
                } else {
                    for (int32_t j = 0; j < ne[s]; j++) {
                        if (pos[j] > sc.qpos[r]) Sr[off + j] = -INFINITY;
                        else mx = std::max(mx, Sr[off + j]);
                    }
                }
                off += ne[s];
            }
            if (mx == -INFINITY) {  // nothing visible (cannot happen for a token that attends to itself)
                memset(Sr, 0, total * sizeof(float));
                continue;
            }
            // ggml sums exp over whole 8-blocks of its (padded) KV row: pad with masked keys (ld leaves the room)
            const size_t total8 = (total + 7) / 8 * 8;
            for (size_t j = total; j < total8; j++) Sr[j] = -INFINITY;
            const double sum = K.exp_sum(Sr, (int32_t)total8, mx);
            const float inv = (float)(1.0 / sum);
            if (observe) {
                // importance scores: the full-row fp32 probabilities (before the fp16 rounding of the V product)
                float *pr = sc.P32.data() + r * ld;
                for (size_t j = 0; j < total; j++) pr[j] = Sr[j] * inv;
            }
            if (kMatchLlamaRounding)
                K.scale_round_f16(Sr, total, inv);
            else
                for (size_t j = 0; j < total; j++) Sr[j] *= inv;
        }
        if (observe) observe_rows(*obs, c->layer, h, hc, ne, sc.P32.data(), ld, R, sc.qpos.data());
        // 3. values, segment by segment
        std::fill(sc.out.begin(), sc.out.begin() + (size_t)R * hd, 0.0f);
        off = 0;
        for (size_t s = 0; s < hc.segments.size(); s++) {
            if (ne[s]) segment_accumulate(K, hc.segments[s], ne[s], sc.S.data() + off, ld, R, sc.out.data(), T == 1);
            off += ne[s];
        }
        // 4. write rows: dst[(head * hd + d) + t * (n_head * hd)]
        for (int r = 0; r < R; r++) {
            const int row = row0 + r, t = row / G, g = row % G;
            float *o = (float *)((char *)dst->data + (size_t)t * dst->nb[1]) + (size_t)(h * G + g) * hd;
            memcpy(o, sc.out.data() + r * hd, hd * sizeof(float));
        }
    }
}

}  // namespace repokv
