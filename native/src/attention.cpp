#include "attention.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace repokv {

namespace {

// Match llama.cpp's non-flash attention rounding (Q and the softmax probabilities go through fp16 before the
// matmuls with the fp16 K/V cache), so that policy `full` reproduces its logits as closely as possible.
constexpr bool kMatchLlamaRounding = true;

const bool g_simd = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
// Experimental: reproduce the summation order of llama.cpp's matmuls (tinyBLAS: 8 lane accumulators, then a fixed
// horizontal-sum tree) in attention too. Scalar, slow; for parity investigations (REPOKV_NATIVE_EXACT=1).
const bool g_exact = getenv("REPOKV_NATIVE_EXACT") != nullptr;

inline float hsum8(const float *a) { return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7])); }

void scores_f16_exact(const uint16_t *kt, int32_t n, int hd, const float *q, int R, float scale, float *S, size_t ld) {
    for (int32_t j = 0; j < n; j++) {
        const uint16_t *kb = kt + (size_t)(j / 8) * hd * 8 + (j % 8);
        for (int r = 0; r < R; r++) {
            float a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int c = 0; c < hd; c += 8)
                for (int l = 0; l < 8; l++) a[l] = fmaf(q[r * hd + c + l], ggml_fp16_to_fp32(kb[(c + l) * 8]), a[l]);
            S[r * ld + j] = hsum8(a) * scale;
        }
    }
}

void accumulate_f16_exact(const uint16_t *v, int32_t n, int hd, const float *P, size_t ld, int R, float *out) {
    for (int r = 0; r < R; r++) {
        for (int d = 0; d < hd; d++) {
            float a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int32_t j = 0; j < n; j++) a[j % 8] = fmaf(P[r * ld + j], ggml_fp16_to_fp32(v[(size_t)j * hd + d]), a[j % 8]);
            out[r * hd + d] += hsum8(a);
        }
    }
}

inline float round_f16(float x) { return ggml_fp16_to_fp32(ggml_fp32_to_fp16(x)); }

// ---------------------------------------------------------------------------------------------------------------
// AVX2 kernels

__attribute__((target("avx2,fma,f16c"))) inline __m256 v_expf(__m256 x) {
    // ggml's ggml_v_expf (MIT), so that softmax matches ggml's
    const __m256 r = _mm256_set1_ps(0x1.8p23f);
    const __m256 z = _mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), r);
    const __m256 n = _mm256_sub_ps(z, r);
    const __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.7f7d1cp-20f), _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e4p-1f), x));
    const __m256i e = _mm256_slli_epi32(_mm256_castps_si256(z), 23);
    const __m256 k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_castps_si256(_mm256_set1_ps(1))));
    const __m256i c = _mm256_castps_si256(_mm256_cmp_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.f), n), _mm256_set1_ps(126), _CMP_GT_OQ));
    const __m256 u = _mm256_mul_ps(b, b);
    const __m256 j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b, _mm256_set1_ps(0x1.573e2ep-5f)), u,
                        _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b, _mm256_set1_ps(0x1.fffdb6p-2f))),
        u, _mm256_mul_ps(_mm256_set1_ps(0x1.ffffecp-1f), b));
    if (!_mm256_movemask_ps(_mm256_castsi256_ps(c))) return _mm256_fmadd_ps(j, k, k);
    const __m256i g = _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ)), _mm256_set1_epi32(0x82000000u));
    const __m256 s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f000000u)));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
    const __m256i d = _mm256_castps_si256(_mm256_cmp_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.f), n), _mm256_set1_ps(192), _CMP_GT_OQ));
    return _mm256_or_ps(_mm256_and_ps(_mm256_castsi256_ps(d), _mm256_mul_ps(s1, s1)),
                        _mm256_andnot_ps(_mm256_castsi256_ps(d),
                                         _mm256_or_ps(_mm256_and_ps(_mm256_castsi256_ps(c), _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1)),
                                                      _mm256_andnot_ps(_mm256_castsi256_ps(c), _mm256_fmadd_ps(k, j, k)))));
}

// Scores of R query rows (q: R x hd, row-major) against n keys of an fp16 segment (8-token transposed blocks).
// S[r * ld + j] = scale * q_r . k_j. Writes whole blocks of 8 (callers leave 8 floats of slack per row).
template <int R>
__attribute__((target("avx2,fma,f16c"))) void scores_f16_avx2(const uint16_t *kt, int32_t n, int hd, const float *q, float scale, float *S, size_t ld) {
    const int32_t nblk = (n + 7) / 8;
    const __m256 vscale = _mm256_set1_ps(scale);
    for (int32_t b = 0; b < nblk; b++) {
        const uint16_t *kb = kt + (size_t)b * hd * 8;
        __m256 acc[R];
        for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
        for (int d = 0; d < hd; d++) {
            const __m256 kv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(kb + d * 8)));
            for (int r = 0; r < R; r++) acc[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(q + r * hd + d), kv, acc[r]);
        }
        for (int r = 0; r < R; r++) _mm256_storeu_ps(S + r * ld + (size_t)b * 8, _mm256_mul_ps(acc[r], vscale));
    }
}

// out[r][:] += sum_j P[r * ld + j] * v_j for R <= 4 rows, hd a multiple of 16.
template <int R>
__attribute__((target("avx2,fma,f16c"))) void accumulate_f16_avx2(const uint16_t *v, int32_t n, int hd, const float *P, size_t ld, float *out) {
    for (int c = 0; c < hd; c += 16) {
        __m256 acc0[R], acc1[R];
        for (int r = 0; r < R; r++) {
            acc0[r] = _mm256_loadu_ps(out + r * hd + c);
            acc1[r] = _mm256_loadu_ps(out + r * hd + c + 8);
        }
        const uint16_t *vp = v + c;
        for (int32_t j = 0; j < n; j++, vp += hd) {
            const __m256 v0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)vp));
            const __m256 v1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(vp + 8)));
            for (int r = 0; r < R; r++) {
                const __m256 p = _mm256_broadcast_ss(P + r * ld + j);
                acc0[r] = _mm256_fmadd_ps(p, v0, acc0[r]);
                acc1[r] = _mm256_fmadd_ps(p, v1, acc1[r]);
            }
        }
        for (int r = 0; r < R; r++) {
            _mm256_storeu_ps(out + r * hd + c, acc0[r]);
            _mm256_storeu_ps(out + r * hd + c + 8, acc1[r]);
        }
    }
}

// exp(x - max) over n floats in place, returns the sum (double, like ggml)
__attribute__((target("avx2,fma,f16c"))) double exp_sum_avx2(float *x, int32_t n, float max) {
    double sum = 0;
    int32_t i = 0;
    const __m256 vmax = _mm256_set1_ps(max);
    for (; i + 7 < n; i += 8) {
        __m256 val = v_expf(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmax));
        _mm256_storeu_ps(x + i, val);
        __m128 val2 = _mm_add_ps(_mm256_extractf128_ps(val, 1), _mm256_castps256_ps128(val));
        val2 = _mm_add_ps(val2, _mm_movehl_ps(val2, val2));
        val2 = _mm_add_ss(val2, _mm_movehdup_ps(val2));
        sum += (double)_mm_cvtss_f32(val2);
    }
    for (; i < n; i++) {
        float e = expf(x[i] - max);
        x[i] = e;
        sum += e;
    }
    return sum;
}

__attribute__((target("avx2,fma,f16c"))) float max_avx2(const float *x, int32_t n) {
    __m256 m = _mm256_set1_ps(-INFINITY);
    int32_t i = 0;
    for (; i + 7 < n; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, m);
    float r = lanes[0];
    for (int k = 1; k < 8; k++) r = std::max(r, lanes[k]);
    for (; i < n; i++) r = std::max(r, x[i]);
    return r;
}

float max_scalar(const float *x, int32_t n) {
    float r = -INFINITY;
    for (int32_t i = 0; i < n; i++) r = std::max(r, x[i]);
    return r;
}

// x[i] = fp16-rounded(x[i] * mul)
__attribute__((target("avx2,fma,f16c"))) void scale_round_f16_avx2(float *x, size_t n, float mul) {
    size_t i = 0;
    const __m256 m = _mm256_set1_ps(mul);
    for (; i + 7 < n; i += 8)
        _mm256_storeu_ps(x + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_mul_ps(_mm256_loadu_ps(x + i), m), _MM_FROUND_TO_NEAREST_INT)));
    for (; i < n; i++) x[i] = _cvtsh_ss(_cvtss_sh(x[i] * mul, _MM_FROUND_TO_NEAREST_INT));
}

__attribute__((target("avx2,fma,f16c"))) void to_f16_avx2(const float *src, uint16_t *dst, int n, int stride) {
    int i = 0;
    if (stride == 1) {
        for (; i + 7 < n; i += 8)
            _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    }
    for (; i < n; i++) dst[(size_t)i * stride] = _cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT);
}

// ---------------------------------------------------------------------------------------------------------------
// scalar fallbacks

void scores_f16_scalar(const uint16_t *kt, int32_t n, int hd, const float *q, int R, float scale, float *S, size_t ld) {
    for (int32_t j = 0; j < n; j++) {
        const uint16_t *kb = kt + (size_t)(j / 8) * hd * 8 + (j % 8);
        for (int r = 0; r < R; r++) {
            float s = 0;
            for (int d = 0; d < hd; d++) s += q[r * hd + d] * ggml_fp16_to_fp32(kb[d * 8]);
            S[r * ld + j] = s * scale;
        }
    }
}

void accumulate_f16_scalar(const uint16_t *v, int32_t n, int hd, const float *P, size_t ld, int R, float *out) {
    for (int32_t j = 0; j < n; j++) {
        for (int d = 0; d < hd; d++) {
            float vv = ggml_fp16_to_fp32(v[(size_t)j * hd + d]);
            for (int r = 0; r < R; r++) out[r * hd + d] += P[r * ld + j] * vv;
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// tier dispatch: the two kernels every segment format provides

void segment_scores(const Segment &seg, int32_t n, const float *q, int R, float scale, float *S, size_t ld) {
    switch (seg.tier) {
        case Tier::F16:
            if (g_exact) return scores_f16_exact(seg.k.data(), n, seg.head_dim, q, R, scale, S, ld);
            if (g_simd) {
                switch (R) {
                    case 1: scores_f16_avx2<1>(seg.k.data(), n, seg.head_dim, q, scale, S, ld); return;
                    case 2: scores_f16_avx2<2>(seg.k.data(), n, seg.head_dim, q, scale, S, ld); return;
                    case 3: scores_f16_avx2<3>(seg.k.data(), n, seg.head_dim, q, scale, S, ld); return;
                    case 4: scores_f16_avx2<4>(seg.k.data(), n, seg.head_dim, q, scale, S, ld); return;
                    case 5: scores_f16_avx2<5>(seg.k.data(), n, seg.head_dim, q, scale, S, ld); return;
                    case 6: scores_f16_avx2<6>(seg.k.data(), n, seg.head_dim, q, scale, S, ld); return;
                    case 7: scores_f16_avx2<7>(seg.k.data(), n, seg.head_dim, q, scale, S, ld); return;
                    case 8: scores_f16_avx2<8>(seg.k.data(), n, seg.head_dim, q, scale, S, ld); return;
                }
            }
            scores_f16_scalar(seg.k.data(), n, seg.head_dim, q, R, scale, S, ld);
            return;
    }
}

void segment_accumulate(const Segment &seg, int32_t n, const float *P, size_t ld, int R, float *out) {
    switch (seg.tier) {
        case Tier::F16:
            if (g_exact) return accumulate_f16_exact(seg.v.data(), n, seg.head_dim, P, ld, R, out);
            if (g_simd && seg.head_dim % 16 == 0) {
                // Blocks of tokens so the block's values stay in L1 while every row group and channel chunk uses them.
                constexpr int32_t JB = 128;
                for (int32_t j0 = 0; j0 < n; j0 += JB) {
                    const int32_t jn = std::min(JB, n - j0);
                    const uint16_t *vb = seg.v.data() + (size_t)j0 * seg.head_dim;
                    for (int r0 = 0; r0 < R; r0 += 4) {
                        const int rr = std::min(4, R - r0);
                        const float *Pr = P + r0 * ld + j0;
                        float *o = out + r0 * seg.head_dim;
                        switch (rr) {
                            case 1: accumulate_f16_avx2<1>(vb, jn, seg.head_dim, Pr, ld, o); break;
                            case 2: accumulate_f16_avx2<2>(vb, jn, seg.head_dim, Pr, ld, o); break;
                            case 3: accumulate_f16_avx2<3>(vb, jn, seg.head_dim, Pr, ld, o); break;
                            case 4: accumulate_f16_avx2<4>(vb, jn, seg.head_dim, Pr, ld, o); break;
                        }
                    }
                }
                return;
            }
            accumulate_f16_scalar(seg.v.data(), n, seg.head_dim, P, ld, R, out);
            return;
    }
}

struct Scratch {
    std::vector<float> S, q, out;
    std::vector<int32_t> qpos;
};
thread_local Scratch t_scratch;

constexpr int kMaxRows = 8;

}  // namespace

bool attention_simd() { return g_simd; }

void to_f16_strided(const float *src, uint16_t *dst, int n, int stride) {
    if (g_simd) return to_f16_avx2(src, dst, n, stride);
    for (int i = 0; i < n; i++) dst[(size_t)i * stride] = ggml_fp32_to_fp16(src[i]);
}

void segment_token(const Segment &seg, int32_t t, float *k, float *v) {
    switch (seg.tier) {
        case Tier::F16: {
            const uint16_t *kb = seg.k.data() + (size_t)(t / 8) * seg.head_dim * 8 + (t % 8);
            for (int d = 0; d < seg.head_dim; d++) {
                k[d] = ggml_fp16_to_fp32(kb[d * 8]);
                v[d] = ggml_fp16_to_fp32(seg.v[(size_t)t * seg.head_dim + d]);
            }
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
            if (kMatchLlamaRounding && g_simd) {
                memcpy(qd, qp, hd * sizeof(float));
                scale_round_f16_avx2(qd, hd, 1.0f);
            } else if (kMatchLlamaRounding)
                for (int d = 0; d < hd; d++) qd[d] = round_f16(qp[d]);
            else
                memcpy(qd, qp, hd * sizeof(float));
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
            if (ne[s]) segment_scores(hc.segments[s], ne[s], sc.q.data(), R, c->scale, sc.S.data() + off, ld);
            off += ne[s];
        }
        // 2. causal mask by position, softmax over the union
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
                    mx = std::max(mx, g_simd ? max_avx2(Sr + off, vis) : max_scalar(Sr + off, vis));
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
            double sum;
            if (g_exact && g_simd) {
                // ggml sums exp over whole 8-blocks of its (padded) KV row: pad with masked keys
                const size_t total8 = (total + 7) / 8 * 8;
                for (size_t j = total; j < total8; j++) Sr[j] = -INFINITY;
                sum = exp_sum_avx2(Sr, (int32_t)total8, mx);
            } else if (g_simd) sum = exp_sum_avx2(Sr, (int32_t)total, mx);
            else {
                sum = 0;
                for (size_t j = 0; j < total; j++) sum += (Sr[j] = expf(Sr[j] - mx));
            }
            const float inv = (float)(1.0 / sum);
            if (kMatchLlamaRounding && g_simd)
                scale_round_f16_avx2(Sr, total, inv);
            else if (kMatchLlamaRounding)
                for (size_t j = 0; j < total; j++) Sr[j] = round_f16(Sr[j] * inv);
            else
                for (size_t j = 0; j < total; j++) Sr[j] *= inv;
        }
        // 3. values, segment by segment
        std::fill(sc.out.begin(), sc.out.begin() + (size_t)R * hd, 0.0f);
        off = 0;
        for (size_t s = 0; s < hc.segments.size(); s++) {
            if (ne[s]) segment_accumulate(hc.segments[s], ne[s], sc.S.data() + off, ld, R, sc.out.data());
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
