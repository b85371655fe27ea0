// The portable kernels: every target builds them, and they define what the SIMD tables (kernels.h) compute.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "../quant/common.h"
#include "kernels.h"

namespace repokv {
namespace kernels {

using namespace quant;

namespace {

// On x86-64 the packed kernels are compiled twice, for x86-64-v3 (AVX2/FMA, auto-vectorised) and baseline x86-64,
// and the loader picks one (ifunc): the portable path of an AVX2 machine under REPOKV_NATIVE_SCALAR=1.
#if defined(__x86_64__) && defined(__GNUC__)
#define QUANT_KERNEL __attribute__((target_clones("arch=haswell", "default")))
#else
#define QUANT_KERNEL
#endif

// ---- fp16 segments and softmax ----------------------------------------------------------------------------------

inline float round_f16(float x) { return ggml_fp16_to_fp32(ggml_fp32_to_fp16(x)); }
inline float hsum8(const float *a) { return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7])); }

void scores_f16(const uint16_t *k, int32_t n, int hd, const float *q, int R, float scale, float *S, size_t ld) {
    for (int32_t j = 0; j < n; j++) {
        const uint16_t *kj = k + (size_t)j * hd;
        for (int r = 0; r < R; r++) {
            float a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int c = 0; c < hd; c += 8)
                for (int l = 0; l < 8; l++) a[l] = fmaf(ggml_fp16_to_fp32(kj[c + l]), q[r * hd + c + l], a[l]);
            S[r * ld + j] = hsum8(a) * scale;
        }
    }
}

void accumulate_f16(const uint16_t *v, int32_t n, int hd, const float *P, size_t ld, int R, float *out) {
    for (int r = 0; r < R; r++) {
        for (int d = 0; d < hd; d++) {
            float a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int32_t j = 0; j < n; j++)
                a[j % 8] = fmaf(ggml_fp16_to_fp32(v[((size_t)(j / 8) * hd + d) * 8 + j % 8]), P[r * ld + j], a[j % 8]);
            out[r * hd + d] += hsum8(a);
        }
    }
}

float max_of(const float *x, int32_t n) {
    float r = -INFINITY;
    for (int32_t i = 0; i < n; i++) r = std::max(r, x[i]);
    return r;
}

double exp_sum(float *x, int32_t n, float max) {
    double sum = 0;
    for (int32_t i = 0; i < n; i++) sum += (x[i] = expf(x[i] - max));
    return sum;
}

void scale_round_f16(float *x, size_t n, float mul) {
    for (size_t i = 0; i < n; i++) x[i] = round_f16(x[i] * mul);
}

void to_f16(const float *src, uint16_t *dst, int n, int stride) {
    for (int i = 0; i < n; i++) dst[(size_t)i * stride] = ggml_fp32_to_fp16(src[i]);
}

// ---- packed segments --------------------------------------------------------------------------------------------

inline void unpack_codes(const uint8_t *row, int D, int b, float *out) {
    if (b == 4) {
        for (int c = 0; c < D; c += 2) {
            out[c] = (float)(row[c / 2] & 15);
            out[c + 1] = (float)(row[c / 2] >> 4);
        }
    } else {
        for (int c = 0; c < D; c += 4) {
            const uint8_t x = row[c / 4];
            out[c] = (float)(x & 3);
            out[c + 1] = (float)(x >> 2 & 3);
            out[c + 2] = (float)(x >> 4 & 3);
            out[c + 3] = (float)(x >> 6);
        }
    }
}

// 8 lane accumulators (n % 8 == 0), so the compiler vectorises it without reassociating a single sum
inline float dot(const float *a, const float *b, int n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int i = 0; i < n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += a[i + l] * b[i + l];
    return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}


QUANT_KERNEL void scores_q8(const QuantSegment &seg, int32_t n, const float *q, int R, float scale, float *S, size_t ld) {
    const int D = seg.head_dim, NG = D / 32;
    float x[32];
    for (int32_t t = 0; t < n; t++) {
        const uint8_t *row = seg.k.data() + (size_t)t * q8_token_bytes(D);
        float s[8] = {0};
        float *sr = R <= 8 ? s : nullptr;
        std::vector<float> big;
        if (!sr) big.assign(R, 0.0f), sr = big.data();
        for (int g = 0; g < NG; g++) {
            const uint8_t *p = row + g * 34;
            const float d = get_h(p);
            for (int i = 0; i < 32; i++) x[i] = (float)(int8_t)p[2 + i];
            for (int r = 0; r < R; r++) sr[r] += d * dot(q + (size_t)r * D + g * 32, x, 32);
        }
        for (int r = 0; r < R; r++) S[r * ld + t] = sr[r] * scale;
    }
}

QUANT_KERNEL void accumulate_q8(const QuantSegment &seg, int32_t n, const float *P, size_t ld, int R, float *out) {
    const int D = seg.head_dim, NG = D / 32;
    float x[32];
    for (int32_t t = 0; t < n; t++) {
        const uint8_t *row = seg.v.data() + (size_t)t * q8_token_bytes(D);
        for (int g = 0; g < NG; g++) {
            const uint8_t *p = row + g * 34;
            const float d = get_h(p);
            for (int i = 0; i < 32; i++) x[i] = (float)(int8_t)p[2 + i];
            for (int r = 0; r < R; r++) {
                const float w = P[r * ld + t] * d;
                if (w == 0) continue;
                float *o = out + (size_t)r * D + g * 32;
                for (int i = 0; i < 32; i++) o[i] += w * x[i];
            }
        }
    }
}

QUANT_KERNEL void scores_kivi(const QuantSegment &seg, int32_t n, const float *q, int R, float scale, float *S, size_t ld) {
    const int D = seg.head_dim, b = code_bits(seg.format);
    std::vector<float> a((size_t)R * D), bias(R), x(D), dl(D), mn(D);
    const uint8_t *p = seg.k.data();
    const size_t tb = kivi_k_token_bytes(D, b);
    for (int32_t t0 = 0; t0 < seg.n && t0 < n; t0 += kKiviBlock) {
        const int nt = std::min<int32_t>(kKiviBlock, seg.n - t0);
        const uint8_t *meta = p, *codes = p + kivi_k_block_meta(D);
        for (int c = 0; c < D; c++) dl[c] = get_h(meta + 2 * c), mn[c] = get_h(meta + 2 * D + 2 * c);
        // fold the block's per-channel Δ into the query, min into a bias
        for (int r = 0; r < R; r++) {
            const float *qr = q + (size_t)r * D;
            float bs = 0;
            for (int c = 0; c < D; c++) {
                a[(size_t)r * D + c] = qr[c] * dl[c];
                bs += qr[c] * mn[c];
            }
            bias[r] = bs;
        }
        const int lim = std::min<int32_t>(nt, n - t0);
        for (int i = 0; i < lim; i++) {
            unpack_codes(codes + (size_t)i * tb, D, b, x.data());
            for (int r = 0; r < R; r++) S[r * ld + t0 + i] = (bias[r] + dot(a.data() + (size_t)r * D, x.data(), D)) * scale;
        }
        p = codes + (size_t)nt * tb;
    }
}

QUANT_KERNEL void accumulate_kivi(const QuantSegment &seg, int32_t n, const float *P, size_t ld, int R, float *out) {
    const int D = seg.head_dim, b = code_bits(seg.format), NG = D / 32;
    std::vector<float> x(D);
    const size_t tb = kivi_v_token_bytes(D, b);
    for (int32_t t = 0; t < n; t++) {
        const uint8_t *row = seg.v.data() + (size_t)t * tb;
        const uint8_t *meta = row + (size_t)D * b / 8;
        bool any = false;
        for (int r = 0; r < R; r++) any |= P[r * ld + t] != 0;
        if (!any) continue;
        unpack_codes(row, D, b, x.data());
        for (int g = 0; g < NG; g++) {
            const float dl = get_h(meta + 2 * g), mn = get_h(meta + 2 * NG + 2 * g);
            for (int r = 0; r < R; r++) {
                const float p = P[r * ld + t];
                if (p == 0) continue;
                const float w = p * dl, w0 = p * mn;
                float *o = out + (size_t)r * D + g * 32;
                const float *xg = x.data() + g * 32;
                for (int i = 0; i < 32; i++) o[i] += w * xg[i] + w0;
            }
        }
    }
}

inline void build_lut(float *T, const float *lo, const float *hi) {
    for (int h = 0; h < 16; h++)
        for (int l = 0; l < 16; l++) T[h * 16 + l] = lo[l] + hi[h];
}

// The query side of onebit keys, per row: the outlier channels' components (qo, Do per row) and the normal channels

// (ao, Do) and a bias Σ q·min; normals ŷ = μ + α·σ, σ = ±1, give b = q'∘α (an, Dn) and, with
// Σ b_c σ_c = 2 Σ_{bit set} b_c − Σ b_c, a bias Σ q'·μ − Σ b. Returns the whole bias.
// (always inlined: as a call from the x86-64-v3 clone of the kernel it compiled for baseline x86-64 and cost 30 %)
inline __attribute__((always_inline)) float onebit_row_coeffs(const uint8_t *meta, int Do, int Dn, const float *qo, const float *qn, float *ao, float *an) {
    const uint8_t *mmeta = meta + 4 * Do;
    float bias = 0;
    for (int j = 0; j < Do; j++) {
        ao[j] = qo[j] * get_h(meta + 2 * j);
        bias += qo[j] * get_h(meta + 2 * Do + 2 * j);
    }
    float sb = 0;
    for (int j = 0; j < Dn; j++) {
        an[j] = qn[j] * get_h(mmeta + 2 * Dn + 2 * j);
        bias += qn[j] * get_h(mmeta + 2 * j);
        sb += an[j];
    }
    return bias - sb;
}


QUANT_KERNEL void scores_onebit(const QuantSegment &seg, int32_t n, const float *q, int R, float scale, float *S, size_t ld) {
    const int D = seg.head_dim, Do = ob_do(D), Dn = ob_dn(D);
    const int nbo = Do / 4, nbn = Dn / 8;  // bytes per token: outlier codes, sign bits
    const OneBitQuery oq = onebit_query(seg, q, R);
    // per block and row: byte lookup tables (T-MAC style): 256 partial sums per code byte
    std::vector<float> lut((size_t)R * (nbo + nbn) * 256), bias(R), ao(Do), an(Dn);
    const size_t tb = ob_k_token_bytes(D);
    const uint8_t *p = seg.k.data();
    for (int32_t t0 = 0; t0 < seg.n && t0 < n; t0 += kOneBitBlock) {
        const int nt = std::min<int32_t>(kOneBitBlock, seg.n - t0);
        const uint8_t *meta = p, *rows = p + ob_k_block_meta(D);
        const int lim = std::min<int32_t>(nt, n - t0);
        for (int r = 0; r < R; r++) {
            float *L = lut.data() + (size_t)r * (nbo + nbn) * 256;
            bias[r] = onebit_row_coeffs(meta, Do, Dn, oq.qo.data() + (size_t)r * Do, oq.qn.data() + (size_t)r * Dn, ao.data(), an.data());
            // outlier codes, 4 channels × 2 bits per byte x = lo + 16 hi: T[x] = lo-table[lo] + hi-table[hi]
            for (int k = 0; k < nbo; k++) {
                const float *ak = ao.data() + 4 * k;
                float lo[16], hi[16];
                for (int x = 0; x < 16; x++) lo[x] = ak[0] * (x & 3) + ak[1] * (x >> 2), hi[x] = ak[2] * (x & 3) + ak[3] * (x >> 2);
                build_lut(L + (size_t)k * 256, lo, hi);
            }
            // sign bits, 8 channels per byte: T[x] = 2 Σ_{bit i of x} b_i
            for (int k = 0; k < nbn; k++) {
                const float *bk = an.data() + 8 * k;
                float lo[16], hi[16];
                for (int x = 0; x < 16; x++) {
                    lo[x] = 2 * ((x & 1 ? bk[0] : 0) + (x & 2 ? bk[1] : 0) + (x & 4 ? bk[2] : 0) + (x & 8 ? bk[3] : 0));
                    hi[x] = 2 * ((x & 1 ? bk[4] : 0) + (x & 2 ? bk[5] : 0) + (x & 4 ? bk[6] : 0) + (x & 8 ? bk[7] : 0));
                }
                build_lut(L + (size_t)(nbo + k) * 256, lo, hi);
            }
        }
        // tokens: byte plane k of the block holds byte k of every token (rows[k * nt + i])
        for (int i = 0; i < lim; i++)
            for (int r = 0; r < R; r++) {
                const float *L = lut.data() + (size_t)r * (nbo + nbn) * 256;
                float s = bias[r];
                for (int k = 0; k < nbo + nbn; k++) s += L[(size_t)k * 256 + rows[(size_t)k * nt + i]];
                S[r * ld + t0 + i] = s * scale;
            }
        p = rows + (size_t)nt * tb;
    }
}

QUANT_KERNEL void accumulate_onebit(const QuantSegment &seg, int32_t n, const float *P, size_t ld, int R, float *out) {
    const int D = seg.head_dim;
    const size_t tb = ob_v_token_bytes(D);
    std::vector<float> blk((size_t)R * D), x(tb * 5 + 3);
    const uint8_t *p = seg.v.data();
    for (int32_t t0 = 0; t0 < seg.n && t0 < n; t0 += kOneBitBlock) {
        const int nt = std::min<int32_t>(kOneBitBlock, seg.n - t0);
        const uint8_t *meta = p, *rows = p + ob_v_block_meta(D);
        const int lim = std::min<int32_t>(nt, n - t0);
        std::fill(blk.begin(), blk.end(), 0.0f);
        // Σ_t p_t γ_c σ_tc = γ_c Σ_t p_t σ_tc: accumulate the trits, scale once per block
        for (int i = 0; i < lim; i++) {
            bool any = false;
            for (int r = 0; r < R; r++) any |= P[r * ld + t0 + i] != 0;
            if (!any) continue;
            const uint8_t *row = rows + (size_t)i * tb;
            for (size_t k = 0; k < tb; k++) memcpy(x.data() + k * 5, g_tritsf.t[row[k]], 8 * sizeof(float));  // overlapping tails
            for (int r = 0; r < R; r++) {
                const float w = P[r * ld + t0 + i];
                if (w == 0) continue;
                float *b = blk.data() + (size_t)r * D;
                for (int c = 0; c < D; c++) b[c] += w * x[c];
            }
        }
        for (int r = 0; r < R; r++)
            for (int c = 0; c < D; c++) out[(size_t)r * D + c] += get_h(meta + 2 * c) * blk[(size_t)r * D + c];
        p = rows + (size_t)nt * tb;
    }
}

}  // namespace

extern const Kernels kScalar;
const Kernels kScalar = {
    "scalar",
    scores_f16, scores_f16, accumulate_f16, accumulate_f16,
    max_of, exp_sum, scale_round_f16, to_f16,
    {nullptr, scores_q8, scores_kivi, scores_kivi, scores_onebit},
    {nullptr, accumulate_q8, accumulate_kivi, accumulate_kivi, accumulate_onebit},
};

}  // namespace kernels
}  // namespace repokv
