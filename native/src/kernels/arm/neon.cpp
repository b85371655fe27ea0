// NEON kernels (AArch64 only, where NEON, FMA and fp16 conversions are part of the base instruction set): fp16 segments,
// the softmax helpers and q8 scores in float; the other packed formats use the portable kernels. Checked against the
// portable table by native/tools/kernel-check.cpp (cross-compiled and run under qemu-aarch64 by
// native/tools/cross-compile-arm64.mjs); not measured on arm64 hardware.
#include <arm_neon.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "../../quant/common.h"
#include "../kernels.h"

namespace repokv {
namespace kernels {

using namespace quant;

namespace {

// 8 fp16 values -> two float vectors
inline void halves8(const uint16_t *p, float32x4_t &lo, float32x4_t &hi) {
    const float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(p));
    lo = vcvt_f32_f16(vget_low_f16(h));
    hi = vcvt_high_f32_f16(h);
}

// fp16 keys (token-major): each key row is converted once, then dotted with every query row
void scores_f16(const uint16_t *k, int32_t n, int hd, const float *q, int R, float scale, float *S, size_t ld) {
    thread_local std::vector<float> kf;
    kf.resize(hd);
    for (int32_t j = 0; j < n; j++) {
        const uint16_t *kj = k + (size_t)j * hd;
        for (int c = 0; c < hd; c += 8) {
            float32x4_t lo, hi;
            halves8(kj + c, lo, hi);
            vst1q_f32(kf.data() + c, lo);
            vst1q_f32(kf.data() + c + 4, hi);
        }
        for (int r = 0; r < R; r++) {
            const float *qr = q + (size_t)r * hd;
            float32x4_t a0 = vdupq_n_f32(0), a1 = a0;
            for (int c = 0; c < hd; c += 8) {
                a0 = vfmaq_f32(a0, vld1q_f32(kf.data() + c), vld1q_f32(qr + c));
                a1 = vfmaq_f32(a1, vld1q_f32(kf.data() + c + 4), vld1q_f32(qr + c + 4));
            }
            S[(size_t)r * ld + j] = vaddvq_f32(vaddq_f32(a0, a1)) * scale;
        }
    }
}

// fp16 values in transposed 8-token blocks (v[(blk * hd + d) * 8 + lane]): per row, a 4-lane accumulator per channel
// over the blocks (sequential reads of v), reduced once at the end; probabilities past n are zero (they may belong to
// the next segment)
void accumulate_f16(const uint16_t *v, int32_t n, int hd, const float *P, size_t ld, int R, float *out) {
    const int32_t nblk = (n + 7) / 8;
    thread_local std::vector<float> acc;
    acc.assign((size_t)R * hd * 4, 0.0f);
    for (int32_t b = 0; b < nblk; b++) {
        float32x4_t p0[8], p1[8];
        for (int r = 0; r < R; r++) {
            float pr[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int l = 0; l < 8 && b * 8 + l < n; l++) pr[l] = P[(size_t)r * ld + b * 8 + l];
            p0[r] = vld1q_f32(pr);
            p1[r] = vld1q_f32(pr + 4);
        }
        const uint16_t *vb = v + (size_t)b * hd * 8;
        for (int d = 0; d < hd; d++) {
            float32x4_t lo, hi;
            halves8(vb + (size_t)d * 8, lo, hi);
            for (int r = 0; r < R; r++) {
                float *a = acc.data() + ((size_t)r * hd + d) * 4;
                vst1q_f32(a, vfmaq_f32(vfmaq_f32(vld1q_f32(a), lo, p0[r]), hi, p1[r]));
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int d = 0; d < hd; d++) out[(size_t)r * hd + d] += vaddvq_f32(vld1q_f32(acc.data() + ((size_t)r * hd + d) * 4));
}

float max_of(const float *x, int32_t n) {
    float32x4_t m = vdupq_n_f32(-INFINITY);
    int32_t i = 0;
    for (; i + 3 < n; i += 4) m = vmaxq_f32(m, vld1q_f32(x + i));
    float r = vmaxvq_f32(m);
    for (; i < n; i++) r = std::max(r, x[i]);
    return r;
}

double exp_sum(float *x, int32_t n, float max) { return scalar().exp_sum(x, n, max); }

void scale_round_f16(float *x, size_t n, float mul) {
    const float32x4_t m = vdupq_n_f32(mul);
    size_t i = 0;
    for (; i + 3 < n; i += 4) vst1q_f32(x + i, vcvt_f32_f16(vcvt_f16_f32(vmulq_f32(vld1q_f32(x + i), m))));
    if (i < n) scalar().scale_round_f16(x + i, n - i, mul);
}

void to_f16(const float *src, uint16_t *dst, int n, int stride) {
    int i = 0;
    if (stride == 1)
        for (; i + 3 < n; i += 4) vst1_u16(dst + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(src + i))));
    if (i < n) scalar().to_f16(src + i, dst + (size_t)i * stride, n - i, stride);
}

// q8 keys: per token and group of 32, d · (q_g · codes), the codes widened to float once for all rows
void scores_q8(const QuantSegment &seg, int32_t n, const float *q, int R, float scale, float *S, size_t ld) {
    const int D = seg.head_dim, NG = D / 32;
    const size_t tb = q8_token_bytes(D);
    float sr[8];
    for (int r0 = 0; r0 < R; r0 += 8) {
        const int rn = std::min(8, R - r0);
        for (int32_t t = 0; t < n; t++) {
            const uint8_t *row = seg.k.data() + (size_t)t * tb;
            for (int r = 0; r < rn; r++) sr[r] = 0;
            for (int g = 0; g < NG; g++) {
                const uint8_t *p = row + g * 34;
                const float d = get_h(p);
                float32x4_t x[8];
                for (int h = 0; h < 2; h++) {
                    const int8x16_t c = vld1q_s8((const int8_t *)(p + 2 + 16 * h));
                    const int16x8_t lo = vmovl_s8(vget_low_s8(c)), hi = vmovl_high_s8(c);
                    x[4 * h] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo)));
                    x[4 * h + 1] = vcvtq_f32_s32(vmovl_high_s16(lo));
                    x[4 * h + 2] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi)));
                    x[4 * h + 3] = vcvtq_f32_s32(vmovl_high_s16(hi));
                }
                for (int r = 0; r < rn; r++) {
                    const float *qr = q + (size_t)(r0 + r) * D + g * 32;
                    float32x4_t a = vmulq_f32(x[0], vld1q_f32(qr));
                    for (int i = 1; i < 8; i++) a = vfmaq_f32(a, x[i], vld1q_f32(qr + 4 * i));
                    sr[r] += d * vaddvq_f32(a);
                }
            }
            for (int r = 0; r < rn; r++) S[(size_t)(r0 + r) * ld + t] = sr[r] * scale;
        }
    }
}

// the portable kernels, for the entries without a NEON one (a constant table cannot copy scalar()'s pointers)
void accumulate_q8(const QuantSegment &s, int32_t n, const float *P, size_t ld, int R, float *out) { scalar().accumulate[(int)Tier::Q8](s, n, P, ld, R, out); }
void scores_kivi(const QuantSegment &s, int32_t n, const float *q, int R, float scale, float *S, size_t ld) { scalar().scores[(int)s.format](s, n, q, R, scale, S, ld); }
void accumulate_kivi(const QuantSegment &s, int32_t n, const float *P, size_t ld, int R, float *out) { scalar().accumulate[(int)s.format](s, n, P, ld, R, out); }
void scores_onebit(const QuantSegment &s, int32_t n, const float *q, int R, float scale, float *S, size_t ld) { scalar().scores[(int)Tier::OneBit](s, n, q, R, scale, S, ld); }
void accumulate_onebit(const QuantSegment &s, int32_t n, const float *P, size_t ld, int R, float *out) { scalar().accumulate[(int)Tier::OneBit](s, n, P, ld, R, out); }

}  // namespace

extern const Kernels kNeon;
const Kernels kNeon = {
    "neon",
    scores_f16, scores_f16, accumulate_f16, accumulate_f16,
    max_of, exp_sum, scale_round_f16, to_f16,
    {nullptr, scores_q8, scores_kivi, scores_kivi, scores_onebit},
    {nullptr, accumulate_q8, accumulate_kivi, accumulate_kivi, accumulate_onebit},
};

}  // namespace kernels
}  // namespace repokv
