// Packed KV formats and their attention kernels (see quant.h and docs/kv-quantization.md).
//
// Byte layouts (D = head dim, b = code bits, all fp16 values little-endian, read with memcpy: no alignment assumed):
//   q8      K and V alike, per token: D/32 groups of [fp16 scale d][32 x int8 code], x̂ = d·code, d = max|x|/127.
//   kivi-b  K: blocks of 32 tokens: [fp16 Δ x D][fp16 min x D] then, per token of the block, D·b/8 bytes of codes
//             (channel c in byte c·b/8, bits (c·b) % 8 ...), x̂ = min + Δ·code. The last block holds only its tokens.
//           V: per token: [D·b/8 bytes of codes][fp16 Δ x D/32][fp16 min x D/32] (groups of 32 channels).
//   onebit  meta: D/8 bytes, bit c set = channel c is an outlier (D/4 of them, the highest max−min over the segment),
//             then a flags byte: bit 0 = the normal channels are rotated (chosen per segment by key reconstruction error).
//           K: blocks of 128 tokens: [fp16 Δ x Do][fp16 min x Do][fp16 μ x Dn][fp16 α x Dn] (Do = D/4, Dn = 3D/4), then
//             a token's row is [Do/4 bytes: 2-bit outlier codes][Dn/8 bytes: sign bits of the rotated normal channels],
//             stored as byte planes: byte k of token i of a block of nt tokens at [k * nt + i].
//             Normal channels (ascending channel order) are, if the flag says so, multiplied by fixed signs and
//             Walsh–Hadamard-transformed in blocks of D/4 (orthonormal); ŷ = μ + α·(bit ? +1 : −1) (two-level Lloyd: μ ± α are the means of the
//             values above / below the block mean).
//           V: blocks of 128 tokens: [fp16 γ x D], then per token ceil(D/5) bytes, 5 trits per byte (base 3,
//             channel c in byte c/5, digit c%5, trit t ∈ {0,1,2} meaning t−1), x̂ = γ_c·(t−1).
#include "quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <stdexcept>

#include <immintrin.h>

#include "ggml.h"

namespace repokv {
namespace quant {

namespace {

constexpr float kF16Max = 65504.0f;

inline uint16_t to_h(float x) { return ggml_fp32_to_fp16(std::max(-kF16Max, std::min(kF16Max, x))); }
// IEEE half -> float, exact, inline (ggml_fp16_to_fp32 is a call into libggml-base, too slow for per-block scales in
// the kernels): normals by shifting the exponent and rescaling, subnormals by a magic-number subtraction (the
// well-known branch-free conversion of the FP16 library, as ggml's own CPU code does).
inline float bits_f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
inline uint32_t f_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
inline float from_h(uint16_t h) {
    const uint32_t w = (uint32_t)h << 16;
    const uint32_t sign = w & 0x80000000u;
    const uint32_t two_w = w + w;
    const float normalized = bits_f((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
    const float denormalized = bits_f((two_w >> 17) | (126u << 23)) - 0.5f;
    return bits_f(sign | (two_w < (1u << 27) ? f_bits(denormalized) : f_bits(normalized)));
}
inline float round_h(float x) { return from_h(to_h(x)); }
inline void put_h(uint8_t *p, float x) {
    const uint16_t h = to_h(x);
    memcpy(p, &h, 2);
}
inline float get_h(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return from_h(h);
}

constexpr int kKiviBlock = 32;
constexpr int kOneBitBlock = 128;

int code_bits(Format f) { return f == Format::Kivi4 ? 4 : 2; }

// ---- byte accounting ----------------------------------------------------------------------------------------------

size_t q8_token_bytes(int D) { return (size_t)(D / 32) * 34; }
size_t kivi_k_block_meta(int D) { return (size_t)4 * D; }
size_t kivi_k_token_bytes(int D, int b) { return (size_t)D * b / 8; }
size_t kivi_v_token_bytes(int D, int b) { return (size_t)D * b / 8 + (size_t)(D / 32) * 4; }
int ob_do(int D) { return D / 4; }
int ob_dn(int D) { return D - D / 4; }
size_t ob_k_block_meta(int D) { return (size_t)4 * D; }
size_t ob_k_token_bytes(int D) { return (size_t)ob_do(D) / 4 + (size_t)ob_dn(D) / 8; }
size_t ob_v_block_meta(int D) { return (size_t)2 * D; }
size_t ob_v_token_bytes(int D) { return (size_t)(D + 4) / 5; }

// ---- onebit rotation ----------------------------------------------------------------------------------------------

inline float fixed_sign(int i) {
    const uint32_t h = (uint32_t)(i + 1) * 2654435761u;
    return (h >> 15) & 1 ? -1.0f : 1.0f;
}

void fwht(float *x, int n) {
    for (int len = 1; len < n; len <<= 1)
        for (int i = 0; i < n; i += len << 1)
            for (int j = i; j < i + len; j++) {
                const float a = x[j], b = x[j + len];
                x[j] = a + b;
                x[j + len] = a - b;
            }
    const float s = 1.0f / std::sqrt((float)n);
    for (int i = 0; i < n; i++) x[i] *= s;
}

void split_channels(const uint8_t *mask, int D, int *outl, int *norm) {
    int o = 0, m = 0;
    for (int c = 0; c < D; c++) {
        if (mask[c / 8] >> (c % 8) & 1) outl[o++] = c;
        else norm[m++] = c;
    }
}

// onebit segment metadata: D/8 bytes of outlier mask, then a flags byte (bit 0: the normal channels are rotated)
inline bool ob_rotated(const uint8_t *meta, int D) { return meta[D / 8] & 1; }

// the (rotated, if rot) normal channels of x
void rotate_normals(const int *norm, int D, bool rot, const float *x, float *y) {
    const int Dn = ob_dn(D), B = D / 4;
    for (int i = 0; i < Dn; i++) y[i] = rot ? x[norm[i]] * fixed_sign(i) : x[norm[i]];
    if (rot)
        for (int b0 = 0; b0 < Dn; b0 += B) fwht(y + b0, B);
}

void unrotate_normals(const int *norm, int D, bool rot, const float *y, float *x) {
    const int Dn = ob_dn(D), B = D / 4;
    std::vector<float> t(y, y + Dn);
    if (rot)
        for (int b0 = 0; b0 < Dn; b0 += B) fwht(t.data() + b0, B);  // normalised WHT is its own inverse
    for (int i = 0; i < Dn; i++) x[norm[i]] = rot ? t[i] * fixed_sign(i) : t[i];
}

// base-3 decoding table: byte -> 5 trits (as −1, 0, +1)
struct TritTable {
    int8_t t[256][5];
    TritTable() {
        for (int b = 0; b < 256; b++) {
            int x = b;
            for (int i = 0; i < 5; i++) {
                t[b][i] = (int8_t)(b < 243 ? x % 3 - 1 : 0);
                x /= 3;
            }
        }
    }
};
const TritTable g_trits;
// the same as floats, 8 per byte (5 used), so a token row decodes with one 8-float copy per byte
struct TritTableF {
    alignas(32) float t[256][8];
    TritTableF() {
        for (int b = 0; b < 256; b++)
            for (int i = 0; i < 8; i++) t[b][i] = i < 5 ? (float)g_trits.t[b][i] : 0.0f;
    }
};
const TritTableF g_tritsf;

// ---- asymmetric b-bit quantization of one group ----------------------------------------------------------------------

// Δ and min (fp16-rounded) of values x[i * stride], i < n.
void asym_params(const float *x, int n, size_t stride, int b, float &delta, float &mn) {
    float lo = std::numeric_limits<float>::infinity(), hi = -lo;
    for (int i = 0; i < n; i++) {
        lo = std::min(lo, x[i * stride]);
        hi = std::max(hi, x[i * stride]);
    }
    if (n == 0) lo = hi = 0;
    mn = round_h(lo);
    delta = round_h((hi - mn) / (float)((1 << b) - 1));
    // ε guard: a constant group (or a range below fp16 resolution) gets Δ = 0 and code 0 everywhere (x̂ = min):
    // no division by zero (asym_code tests Δ), unlike the released KIVI code
    if (!(delta > 0)) delta = 0;
}
inline int asym_code(float x, float delta, float mn, int b) {
    if (delta == 0) return 0;
    const int q = (int)std::lrint((x - mn) / delta);
    return std::max(0, std::min((1 << b) - 1, q));
}

void put_code(uint8_t *row, int c, int b, int code) { row[c * b / 8] |= (uint8_t)(code << ((c * b) % 8)); }
inline int get_code(const uint8_t *row, int c, int b) { return row[c * b / 8] >> ((c * b) % 8) & ((1 << b) - 1); }

// ---- quantizers ---------------------------------------------------------------------------------------------------

void quantize_q8_rows(int D, int32_t n, const float *X, uint8_t *out) {
    for (int32_t t = 0; t < n; t++) {
        const float *x = X + (size_t)t * D;
        uint8_t *row = out + (size_t)t * q8_token_bytes(D);
        for (int g = 0; g < D / 32; g++) {
            float amax = 0;
            for (int i = 0; i < 32; i++) amax = std::max(amax, std::fabs(x[g * 32 + i]));
            const float d = round_h(amax / 127.0f);
            uint8_t *p = row + g * 34;
            put_h(p, d);
            const float id = d > 0 ? 1.0f / d : 0.0f;
            for (int i = 0; i < 32; i++) {
                const int q = std::max(-127, std::min(127, (int)std::lrint(x[g * 32 + i] * id)));
                p[2 + i] = (uint8_t)(int8_t)q;
            }
        }
    }
}

void quantize_kivi_keys(int D, int b, int32_t n, const float *K, uint8_t *out) {
    uint8_t *p = out;
    for (int32_t t0 = 0; t0 < n; t0 += kKiviBlock) {
        const int nt = std::min<int32_t>(kKiviBlock, n - t0);
        uint8_t *meta = p;
        uint8_t *codes = p + kivi_k_block_meta(D);
        std::vector<float> dl(D), mn(D);
        for (int c = 0; c < D; c++) {
            asym_params(K + (size_t)t0 * D + c, nt, D, b, dl[c], mn[c]);
            put_h(meta + 2 * c, dl[c]);
            put_h(meta + 2 * D + 2 * c, mn[c]);
        }
        for (int i = 0; i < nt; i++) {
            uint8_t *row = codes + (size_t)i * kivi_k_token_bytes(D, b);
            const float *x = K + (size_t)(t0 + i) * D;
            for (int c = 0; c < D; c++) put_code(row, c, b, asym_code(x[c], dl[c], mn[c], b));
        }
        p = codes + (size_t)nt * kivi_k_token_bytes(D, b);
    }
}

void quantize_kivi_values(int D, int b, int32_t n, const float *V, uint8_t *out) {
    for (int32_t t = 0; t < n; t++) {
        const float *x = V + (size_t)t * D;
        uint8_t *row = out + (size_t)t * kivi_v_token_bytes(D, b);
        uint8_t *meta = row + (size_t)D * b / 8;
        for (int g = 0; g < D / 32; g++) {
            float dl, mn;
            asym_params(x + g * 32, 32, 1, b, dl, mn);
            put_h(meta + 2 * g, dl);
            put_h(meta + 2 * (D / 32) + 2 * g, mn);
            for (int i = 0; i < 32; i++) put_code(row, g * 32 + i, b, asym_code(x[g * 32 + i], dl, mn, b));
        }
    }
}

void onebit_mask_of(int D, int32_t n, const float *K, uint8_t *mask) {
    std::vector<float> range(D);
    for (int c = 0; c < D; c++) {
        float lo = std::numeric_limits<float>::infinity(), hi = -lo;
        for (int32_t t = 0; t < n; t++) {
            lo = std::min(lo, K[(size_t)t * D + c]);
            hi = std::max(hi, K[(size_t)t * D + c]);
        }
        range[c] = n ? hi - lo : 0;
    }
    std::vector<int> idx(D);
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return range[a] > range[b]; });
    memset(mask, 0, D / 8);
    for (int i = 0; i < ob_do(D); i++) mask[idx[i] / 8] |= (uint8_t)(1 << (idx[i] % 8));
}

void quantize_onebit_keys(int D, int32_t n, const float *K, const uint8_t *mask, uint8_t *out) {
    const int Do = ob_do(D), Dn = ob_dn(D);
    const bool rot = ob_rotated(mask, D);
    std::vector<int> outl(Do), norm(Dn);
    split_channels(mask, D, outl.data(), norm.data());
    std::vector<float> Y((size_t)kOneBitBlock * Dn), Xo((size_t)kOneBitBlock * Do);
    uint8_t *p = out;
    for (int32_t t0 = 0; t0 < n; t0 += kOneBitBlock) {
        const int nt = std::min<int32_t>(kOneBitBlock, n - t0);
        for (int i = 0; i < nt; i++) {
            const float *x = K + (size_t)(t0 + i) * D;
            rotate_normals(norm.data(), D, rot, x, Y.data() + (size_t)i * Dn);
            for (int j = 0; j < Do; j++) Xo[(size_t)i * Do + j] = x[outl[j]];
        }
        uint8_t *meta = p;
        uint8_t *rows = p + ob_k_block_meta(D);
        const size_t tb = ob_k_token_bytes(D);
        memset(rows, 0, (size_t)nt * tb);
        for (int j = 0; j < Do; j++) {
            float dl, mn;
            asym_params(Xo.data() + j, nt, Do, 2, dl, mn);
            put_h(meta + 2 * j, dl);
            put_h(meta + 2 * Do + 2 * j, mn);
            for (int i = 0; i < nt; i++) rows[(size_t)(j / 4) * nt + i] |= (uint8_t)(asym_code(Xo[(size_t)i * Do + j], dl, mn, 2) << (2 * (j % 4)));
        }
        uint8_t *mmeta = meta + 4 * Do;
        for (int j = 0; j < Dn; j++) {
            // two-level Lloyd step around the mean: levels = means of the values above / below it
            double mean = 0;
            for (int i = 0; i < nt; i++) mean += Y[(size_t)i * Dn + j];
            mean /= nt;
            double hi = 0, lo = 0;
            int nh = 0, nl = 0;
            for (int i = 0; i < nt; i++) {
                const float y = Y[(size_t)i * Dn + j];
                if (y >= mean) hi += y, nh++;
                else lo += y, nl++;
            }
            const double chi = nh ? hi / nh : mean, clo = nl ? lo / nl : mean;
            const float mu = round_h((float)((chi + clo) / 2)), al = round_h((float)((chi - clo) / 2));
            put_h(mmeta + 2 * j, mu);
            put_h(mmeta + 2 * Dn + 2 * j, al);
            for (int i = 0; i < nt; i++)
                if (Y[(size_t)i * Dn + j] >= mu) rows[(size_t)(Do / 4 + j / 8) * nt + i] |= (uint8_t)(1 << (j % 8));
        }
        p = rows + (size_t)nt * tb;
    }
}

void quantize_onebit_values(int D, int32_t n, const float *V, uint8_t *out) {
    uint8_t *p = out;
    const size_t tb = ob_v_token_bytes(D);
    static const int pow3[5] = {1, 3, 9, 27, 81};
    for (int32_t t0 = 0; t0 < n; t0 += kOneBitBlock) {
        const int nt = std::min<int32_t>(kOneBitBlock, n - t0);
        uint8_t *meta = p;
        uint8_t *rows = p + ob_v_block_meta(D);
        memset(rows, 0, (size_t)nt * tb);
        for (int c = 0; c < D; c++) {
            double sa = 0;
            for (int i = 0; i < nt; i++) sa += std::fabs(V[(size_t)(t0 + i) * D + c]);
            const float tau = (float)(0.5 * sa / nt);
            double snz = 0;
            int nnz = 0;
            for (int i = 0; i < nt; i++) {
                const float x = V[(size_t)(t0 + i) * D + c];
                if (std::fabs(x) > tau) snz += std::fabs(x), nnz++;
            }
            const float gamma = round_h(nnz ? (float)(snz / nnz) : 0.0f);  // least-squares scale of the chosen codes
            put_h(meta + 2 * c, gamma);
            for (int i = 0; i < nt; i++) {
                const float x = V[(size_t)(t0 + i) * D + c];
                const int trit = std::fabs(x) > tau ? (x > 0 ? 2 : 0) : 1;
                rows[(size_t)i * tb + c / 5] += (uint8_t)(trit * pow3[c % 5]);
            }
        }
        p = rows + (size_t)nt * tb;
    }
}

// ---- kernels ------------------------------------------------------------------------------------------------------

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

// The hot kernels are compiled twice, for x86-64-v3 (AVX2/FMA) and baseline x86-64, chosen at load time (ifunc).
#define QUANT_KERNEL __attribute__((target_clones("arch=haswell", "default")))

// REPOKV_NATIVE_SCALAR=1 forces the portable kernels (as in attention.cpp; test/native/quant-scalar.test.mjs)
const bool g_avx2 = !getenv("REPOKV_NATIVE_SCALAR") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");

// 8 b-bit codes (channels c..c+7 of a row) as floats: broadcast, per-lane shift, mask
template <int b>
__attribute__((target("avx2,fma"))) inline __m256 codes8_avx2(const uint8_t *row, int c, __m256i sh, __m256i mask) {
    uint32_t w = 0;
    if (b == 4) memcpy(&w, row + c / 2, 4);  // 8 codes of b bits = b bytes
    else {
        uint16_t h;
        memcpy(&h, row + c / 4, 2);
        w = h;
    }
    return _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)w), sh), mask));
}
__attribute__((target("avx2,fma"))) inline float hsum_avx2(__m256 x) {
    __m128 v = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
    v = _mm_add_ps(v, _mm_movehl_ps(v, v));
    v = _mm_add_ss(v, _mm_movehdup_ps(v));
    return _mm_cvtss_f32(v);
}

// q8 scores: per token and group, d_t,g · (q_g · codes), int8 codes widened 8 at a time; rows in chunks of 8
__attribute__((target("avx2,fma"))) void q8_scores_avx2(const uint8_t *k, int32_t n, int D, const float *q, int R, float scale, float *S, size_t ld) {
    const int NG = D / 32;
    const size_t tb = (size_t)NG * 34;
    for (int r0 = 0; r0 < R; r0 += 8) {
        const int rn = std::min(8, R - r0);
        for (int32_t t = 0; t < n; t++) {
            const uint8_t *row = k + (size_t)t * tb;
            __m256 tot[8];
            for (int r = 0; r < rn; r++) tot[r] = _mm256_setzero_ps();
            for (int g = 0; g < NG; g++) {
                const uint8_t *p = row + g * 34;
                const __m256 d = _mm256_set1_ps(get_h(p));
                __m256 x[4];
                for (int j = 0; j < 4; j++) {
                    int64_t b8;
                    memcpy(&b8, p + 2 + 8 * j, 8);
                    x[j] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_cvtsi64_si128(b8))), d);
                }
                for (int r = 0; r < rn; r++) {
                    const float *qr = q + (size_t)(r0 + r) * D + g * 32;
                    __m256 acc = tot[r];
                    for (int j = 0; j < 4; j++) acc = _mm256_fmadd_ps(x[j], _mm256_loadu_ps(qr + 8 * j), acc);
                    tot[r] = acc;
                }
            }
            for (int r = 0; r < rn; r++) S[(size_t)(r0 + r) * ld + t] = hsum_avx2(tot[r]) * scale;
        }
    }
}

QUANT_KERNEL void scores_q8(const QuantSegment &seg, int32_t n, const float *q, int R, float scale, float *S, size_t ld) {
    const int D = seg.head_dim, NG = D / 32;
    if (g_avx2) return q8_scores_avx2(seg.k.data(), n, D, q, R, scale, S, ld);
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


// kivi scores of tokens [0, lim) of a block: S[r * ld + i] = (bias_r + a_r · codes_i) * scale, rows in chunks of 8
template <int b>
__attribute__((target("avx2,fma"))) void kivi_scores_avx2(const uint8_t *codes, int lim, size_t tb, int D, const float *a, const float *bias, int R, float scale,
                                                        float *S, size_t ld) {
    const __m256i sh = b == 4 ? _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28) : _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
    const __m256i mask = _mm256_set1_epi32((1 << b) - 1);
    for (int r0 = 0; r0 < R; r0 += 8) {
        const int rn = std::min(8, R - r0);
        for (int i = 0; i < lim; i++) {
            const uint8_t *row = codes + (size_t)i * tb;
            __m256 acc[8];
            for (int r = 0; r < rn; r++) acc[r] = _mm256_setzero_ps();
            for (int c = 0; c < D; c += 8) {
                const __m256 x = codes8_avx2<b>(row, c, sh, mask);
                for (int r = 0; r < rn; r++) acc[r] = _mm256_fmadd_ps(x, _mm256_loadu_ps(a + (size_t)(r0 + r) * D + c), acc[r]);
            }
            for (int r = 0; r < rn; r++) S[(size_t)(r0 + r) * ld + i] = (bias[r0 + r] + hsum_avx2(acc[r])) * scale;
        }
    }
}

// kivi values of token rows [0, n): out_r += Σ_t p_rt (Δ_t,g code_t + min_t,g). Per group of 32 channels and up to
// 3 rows at a time, the sums over tokens stay in registers (4 vectors per row): each token's values are dequantized
// once (Δ·code + min, shared by the rows; the same rounding as dequantize-then-dot), then 4 FMAs per row.
template <int b>
__attribute__((target("avx2,fma"))) void kivi_accumulate_avx2(const uint8_t *v, int32_t n, size_t tb, int D, const float *P, size_t ld, int R, float *out) {
    const __m256i sh = b == 4 ? _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28) : _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
    const __m256i mask = _mm256_set1_epi32((1 << b) - 1);
    const int NG = D / 32;
    for (int r0 = 0; r0 < R; r0 += 3) {
        const int rn = std::min(3, R - r0);
        for (int g = 0; g < NG; g++) {
            __m256 acc[3][4];
            for (int r = 0; r < 3; r++)
                for (int j = 0; j < 4; j++) acc[r][j] = _mm256_setzero_ps();
            for (int32_t t = 0; t < n; t++) {
                const uint8_t *row = v + (size_t)t * tb;
                const uint8_t *meta = row + (size_t)D * b / 8;
                const __m256 dl = _mm256_set1_ps(get_h(meta + 2 * g)), mn = _mm256_set1_ps(get_h(meta + 2 * NG + 2 * g));
                __m256 x[4];
                for (int j = 0; j < 4; j++) x[j] = _mm256_fmadd_ps(codes8_avx2<b>(row, g * 32 + 8 * j, sh, mask), dl, mn);
                for (int r = 0; r < rn; r++) {
                    const __m256 p = _mm256_set1_ps(P[(size_t)(r0 + r) * ld + t]);
                    for (int j = 0; j < 4; j++) acc[r][j] = _mm256_fmadd_ps(x[j], p, acc[r][j]);
                }
            }
            for (int r = 0; r < rn; r++) {
                float *o = out + (size_t)(r0 + r) * D + g * 32;
                for (int j = 0; j < 4; j++) _mm256_storeu_ps(o + 8 * j, _mm256_add_ps(_mm256_loadu_ps(o + 8 * j), acc[r][j]));
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
        if (g_avx2) {
            if (b == 4) kivi_scores_avx2<4>(codes, lim, tb, D, a.data(), bias.data(), R, scale, S + t0, ld);
            else kivi_scores_avx2<2>(codes, lim, tb, D, a.data(), bias.data(), R, scale, S + t0, ld);
        } else {
            for (int i = 0; i < lim; i++) {
                unpack_codes(codes + (size_t)i * tb, D, b, x.data());
                for (int r = 0; r < R; r++) S[r * ld + t0 + i] = (bias[r] + dot(a.data() + (size_t)r * D, x.data(), D)) * scale;
            }
        }
        p = codes + (size_t)nt * tb;
    }
}

QUANT_KERNEL void accumulate_kivi(const QuantSegment &seg, int32_t n, const float *P, size_t ld, int R, float *out) {
    const int D = seg.head_dim, b = code_bits(seg.format), NG = D / 32;
    std::vector<float> x(D);
    const size_t tb = kivi_v_token_bytes(D, b);
    if (g_avx2 && b == 4) return kivi_accumulate_avx2<4>(seg.v.data(), n, tb, D, P, ld, R, out);
    if (g_avx2) return kivi_accumulate_avx2<2>(seg.v.data(), n, tb, D, P, ld, R, out);
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
// rotated like the keys (qn, Dn per row): rotating q once replaces un-rotating every key.
struct OneBitQuery {
    std::vector<float> qo, qn;
};
OneBitQuery onebit_query(const QuantSegment &seg, const float *q, int R) {
    const int D = seg.head_dim, Do = ob_do(D), Dn = ob_dn(D);
    std::vector<int> outl(Do), norm(Dn);
    split_channels(seg.meta.data(), D, outl.data(), norm.data());
    OneBitQuery oq{std::vector<float>((size_t)R * Do), std::vector<float>((size_t)R * Dn)};
    for (int r = 0; r < R; r++) {
        const float *qr = q + (size_t)r * D;
        for (int j = 0; j < Do; j++) oq.qo[(size_t)r * Do + j] = qr[outl[j]];
        rotate_normals(norm.data(), D, ob_rotated(seg.meta.data(), D), qr, oq.qn.data() + (size_t)r * Dn);
    }
    return oq;
}

// One row's coefficients for one key block (meta: the block's scales): outliers k̂ = min + Δ·code give a = q∘Δ
// (ao, Do) and a bias Σ q·min; normals ŷ = μ + α·σ, σ = ±1, give b = q'∘α (an, Dn) and, with
// Σ b_c σ_c = 2 Σ_{bit set} b_c − Σ b_c, a bias Σ q'·μ − Σ b. Returns the whole bias.
// (always inlined: as a call from the AVX2 kernel it compiled for baseline x86-64 and cost 30 % of that kernel)
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

// Word w (bytes 4w..4w+3 of planes first.., at most `count` planes) of 8 tokens (i..i+7) of a onebit key block, one
// token per 32-bit lane: byte plane k holds byte k of every token.
__attribute__((target("avx2,fma"))) inline __m256i onebit_word8(const uint8_t *rows, int nt, int i, int first, int count, int w) {
    __m256i x = _mm256_setzero_si256();
    for (int b = 0; b < 4 && 4 * w + b < count; b++) {
        const __m256i plane = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(rows + (size_t)(first + 4 * w + b) * nt + i)));
        x = _mm256_or_si256(x, _mm256_sll_epi32(plane, _mm_cvtsi32_si128(8 * b)));
    }
    return x;
}

// onebit keys, AVX2: per block and row, small float tables indexed by an outlier channel's 2-bit code (4 entries) or
// by a 3-bit chunk of the sign bits (8 entries: the signed sum of 3 channels' q'·α), looked up for 8 tokens at once
// with one vpermps each. The same sum as the dequantized dot product, in another order; tables cost (D/4·4 + D/4·8)
// floats per block and row instead of 256 per code byte, and no gathers.
__attribute__((target("avx2,fma"))) void scores_onebit_avx2(const QuantSegment &seg, int32_t n, const float *q, int R, float scale, float *S, size_t ld) {
    const int D = seg.head_dim, Do = ob_do(D), Dn = ob_dn(D);
    const int nbo = Do / 4, nbn = Dn / 8;
    const int nu = Dn / 3;        // 3-bit chunks of the normals' sign bits (Dn = 3D/4)
    const int ntab = Do + nu;     // tables per row
    const int wo = (nbo + 3) / 4, wn = (nbn + 3) / 4;  // 32-bit words per token: outlier codes, sign bits
    const OneBitQuery oq = onebit_query(seg, q, R);
    std::vector<float> T((size_t)R * ntab * 8), bias(R), ao(Do), a(Dn);
    __m256i idx[128];
    if (ntab > 128 || wo + wn > 16) throw std::invalid_argument("onebit: head dim too large for the AVX2 kernel");
    const size_t tb = ob_k_token_bytes(D);
    const uint8_t *p = seg.k.data();
    for (int32_t t0 = 0; t0 < seg.n && t0 < n; t0 += kOneBitBlock) {
        const int nt = std::min<int32_t>(kOneBitBlock, seg.n - t0);
        const uint8_t *meta = p, *rows = p + ob_k_block_meta(D);
        const int lim = std::min<int32_t>(nt, n - t0);
        for (int r = 0; r < R; r++) {
            float *Tr = T.data() + (size_t)r * ntab * 8;
            bias[r] = onebit_row_coeffs(meta, Do, Dn, oq.qo.data() + (size_t)r * Do, oq.qn.data() + (size_t)r * Dn, ao.data(), a.data());
            // outlier j: a 4-entry table over its 2-bit code; a 3-bit chunk u of sign bits: an 8-entry table
            for (int j = 0; j < Do; j++) {
                const float e[8] = {0, ao[j], 2 * ao[j], 3 * ao[j], 0, 0, 0, 0};
                memcpy(Tr + (size_t)j * 8, e, sizeof e);
            }
            for (int u = 0; u < nu; u++) {
                const float *b3 = a.data() + 3 * u;
                for (int x = 0; x < 8; x++) Tr[(size_t)(Do + u) * 8 + x] = 2 * ((x & 1 ? b3[0] : 0) + (x & 2 ? b3[1] : 0) + (x & 4 ? b3[2] : 0));
            }
        }
        int i = 0;
        for (; i + 8 <= lim; i += 8) {
            // byte plane k holds byte k of every token: 8 tokens' bytes into 32-bit lanes, 4 planes to a word
            __m256i W[16];
            for (int w = 0; w < wo; w++) W[w] = onebit_word8(rows, nt, i, 0, nbo, w);
            for (int w = 0; w < wn; w++) W[wo + w] = onebit_word8(rows, nt, i, nbo, nbn, w);
            const __m256i m3 = _mm256_set1_epi32(3), m7 = _mm256_set1_epi32(7);
            for (int j = 0; j < Do; j++) idx[j] = _mm256_and_si256(_mm256_srl_epi32(W[j / 16], _mm_cvtsi32_si128(2 * (j % 16))), m3);
            for (int u = 0; u < nu; u++) {
                const int bit = 3 * u, w = bit / 32, sh = bit % 32;
                __m256i v = _mm256_srl_epi32(W[wo + w], _mm_cvtsi32_si128(sh));
                if (sh > 29 && w + 1 < wn) v = _mm256_or_si256(v, _mm256_sll_epi32(W[wo + w + 1], _mm_cvtsi32_si128(32 - sh)));
                idx[Do + u] = _mm256_and_si256(v, m7);
            }
            for (int r = 0; r < R; r++) {
                const float *Tr = T.data() + (size_t)r * ntab * 8;
                __m256 acc0 = _mm256_set1_ps(bias[r]), acc1 = _mm256_setzero_ps(), acc2 = acc1, acc3 = acc1;
                int t = 0;
                for (; t + 3 < ntab; t += 4) {
                    acc0 = _mm256_add_ps(acc0, _mm256_permutevar8x32_ps(_mm256_loadu_ps(Tr + (size_t)t * 8), idx[t]));
                    acc1 = _mm256_add_ps(acc1, _mm256_permutevar8x32_ps(_mm256_loadu_ps(Tr + (size_t)(t + 1) * 8), idx[t + 1]));
                    acc2 = _mm256_add_ps(acc2, _mm256_permutevar8x32_ps(_mm256_loadu_ps(Tr + (size_t)(t + 2) * 8), idx[t + 2]));
                    acc3 = _mm256_add_ps(acc3, _mm256_permutevar8x32_ps(_mm256_loadu_ps(Tr + (size_t)(t + 3) * 8), idx[t + 3]));
                }
                for (; t < ntab; t++) acc0 = _mm256_add_ps(acc0, _mm256_permutevar8x32_ps(_mm256_loadu_ps(Tr + (size_t)t * 8), idx[t]));
                const __m256 sum = _mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3));
                _mm256_storeu_ps(S + (size_t)r * ld + t0 + i, _mm256_mul_ps(sum, _mm256_set1_ps(scale)));
            }
        }
        for (; i < lim; i++)  // the block's last < 8 tokens, one at a time from the same tables
            for (int r = 0; r < R; r++) {
                const float *Tr = T.data() + (size_t)r * ntab * 8;
                float s = bias[r];
                for (int j = 0; j < Do; j++) s += Tr[(size_t)j * 8 + ((rows[(size_t)(j / 4) * nt + i] >> (2 * (j % 4))) & 3)];
                for (int u = 0; u < nu; u++) {
                    int x = 0;
                    for (int b = 0; b < 3; b++) {
                        const int c = 3 * u + b;
                        x |= ((rows[(size_t)(nbo + c / 8) * nt + i] >> (c % 8)) & 1) << b;
                    }
                    s += Tr[(size_t)(Do + u) * 8 + x];
                }
                S[(size_t)r * ld + t0 + i] = s * scale;
            }
        p = rows + (size_t)nt * tb;
    }
}

// onebit values, AVX2: Σ_t p_t γ_c σ_tc = γ_c Σ_t p_t σ_tc. Per code byte column k (channels 5k..5k+4) the rows
// accumulate p_t · trits(byte) over the block's tokens in registers, the trits read as 8 floats (5 used) from a table;
// γ is applied once per block. No per-token unpacking into memory (overlapping stores stall store forwarding).
__attribute__((target("avx2,fma"))) void accumulate_onebit_avx2(const QuantSegment &seg, int32_t n, const float *P, size_t ld, int R, float *out) {
    const int D = seg.head_dim;
    const size_t tb = ob_v_token_bytes(D);
    const uint8_t *p = seg.v.data();
    alignas(32) float lanes[8];
    int32_t live[kOneBitBlock];
    for (int32_t t0 = 0; t0 < seg.n && t0 < n; t0 += kOneBitBlock) {
        const int nt = std::min<int32_t>(kOneBitBlock, seg.n - t0);
        const uint8_t *meta = p, *rows = p + ob_v_block_meta(D);
        const int lim = std::min<int32_t>(nt, n - t0);
        for (int r0 = 0; r0 < R; r0 += 8) {
            const int rn = std::min(8, R - r0);
            const float *Pb = P + (size_t)r0 * ld + t0;
            // tokens some row gives a non-zero probability (attention rounds probabilities to fp16, so far keys are
            // exactly 0 and skipping them changes nothing)
            int nl = 0;
            for (int i = 0; i < lim; i++) {
                bool any = false;
                for (int r = 0; r < rn; r++) any |= Pb[(size_t)r * ld + i] != 0.0f;
                if (any) live[nl++] = i;
            }
            if (nl == 0) continue;
            for (size_t k = 0; k < tb; k++) {
                // two accumulators per row (alternate tokens): the FMA chains are latency-bound otherwise
                __m256 acc[8], acc2[8];
                for (int r = 0; r < rn; r++) acc[r] = acc2[r] = _mm256_setzero_ps();
                const uint8_t *col = rows + k;
                int j = 0;
                for (; j + 1 < nl; j += 2) {
                    const int i = live[j], i2 = live[j + 1];
                    const __m256 t = _mm256_load_ps(g_tritsf.t[col[(size_t)i * tb]]);
                    const __m256 u = _mm256_load_ps(g_tritsf.t[col[(size_t)i2 * tb]]);
                    for (int r = 0; r < rn; r++) {
                        acc[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(Pb + (size_t)r * ld + i), t, acc[r]);
                        acc2[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(Pb + (size_t)r * ld + i2), u, acc2[r]);
                    }
                }
                if (j < nl) {
                    const int i = live[j];
                    const __m256 t = _mm256_load_ps(g_tritsf.t[col[(size_t)i * tb]]);
                    for (int r = 0; r < rn; r++) acc[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(Pb + (size_t)r * ld + i), t, acc[r]);
                }
                for (int r = 0; r < rn; r++) {
                    _mm256_store_ps(lanes, _mm256_add_ps(acc[r], acc2[r]));
                    float *o = out + (size_t)(r0 + r) * D;
                    for (int j = 0; j < 5 && 5 * (int)k + j < D; j++) o[5 * k + j] += get_h(meta + 2 * (5 * k + j)) * lanes[j];
                }
            }
        }
        p = rows + (size_t)nt * tb;
    }
}

QUANT_KERNEL void scores_onebit(const QuantSegment &seg, int32_t n, const float *q, int R, float scale, float *S, size_t ld) {
    if (g_avx2) return scores_onebit_avx2(seg, n, q, R, scale, S, ld);
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
    if (g_avx2) return accumulate_onebit_avx2(seg, n, P, ld, R, out);
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

void dequantize_onebit_keys(int D, int32_t n, const uint8_t *meta_seg, const uint8_t *kbuf, float *K) {
    const int Do = ob_do(D), Dn = ob_dn(D);
    std::vector<int> outl(Do), norm(Dn);
    split_channels(meta_seg, D, outl.data(), norm.data());
    std::vector<float> y(Dn);
    const size_t tb = ob_k_token_bytes(D);
    const uint8_t *p = kbuf;
    for (int32_t t0 = 0; t0 < n; t0 += kOneBitBlock) {
        const int nt = std::min<int32_t>(kOneBitBlock, n - t0);
        const uint8_t *meta = p, *rows = p + ob_k_block_meta(D), *mmeta = meta + 4 * Do;
        for (int i = 0; i < nt; i++) {
            float *k = K + (size_t)(t0 + i) * D;
            for (int j = 0; j < Do; j++) k[outl[j]] = get_h(meta + 2 * Do + 2 * j) + get_h(meta + 2 * j) * (float)(rows[(size_t)(j / 4) * nt + i] >> (2 * (j % 4)) & 3);
            for (int j = 0; j < Dn; j++) {
                const bool bit = rows[(size_t)(Do / 4 + j / 8) * nt + i] >> (j % 8) & 1;
                y[j] = get_h(mmeta + 2 * j) + get_h(mmeta + 2 * Dn + 2 * j) * (bit ? 1.0f : -1.0f);
            }
            unrotate_normals(norm.data(), D, ob_rotated(meta_seg, D), y.data(), k);
        }
        p = rows + (size_t)nt * tb;
    }
}

}  // namespace

// ---- public API -----------------------------------------------------------------------------------------------------

const char *format_name(Format f) {
    switch (f) {
        case Format::Q8: return "q8";
        case Format::Kivi4: return "kivi4";
        case Format::Kivi2: return "kivi2";
        case Format::OneBit: return "onebit";
    }
    return "?";
}

bool parse_format(const std::string &name, Format &out) {
    for (Format f : {Format::Q8, Format::Kivi4, Format::Kivi2, Format::OneBit})
        if (name == format_name(f)) return out = f, true;
    return false;
}

int token_block(Format f) {
    switch (f) {
        case Format::Q8: return 1;
        case Format::Kivi4:
        case Format::Kivi2: return kKiviBlock;
        case Format::OneBit: return kOneBitBlock;
    }
    return 1;
}

bool supports_head_dim(Format f, int D) {
    if (D <= 0 || D % 32) return false;
    if (f == Format::OneBit) {
        const int B = D / 4;
        return (B & (B - 1)) == 0;
    }
    return true;
}

ByteCount format_bytes(Format f, int D, int32_t n) {
    ByteCount c;
    const size_t blocks = n > 0 ? ((size_t)n + token_block(f) - 1) / token_block(f) : 0;
    switch (f) {
        case Format::Q8:
            c.key = c.value = (size_t)n * q8_token_bytes(D);
            break;
        case Format::Kivi4:
        case Format::Kivi2: {
            const int b = code_bits(f);
            c.key = blocks * kivi_k_block_meta(D) + (size_t)n * kivi_k_token_bytes(D, b);
            c.value = (size_t)n * kivi_v_token_bytes(D, b);
            break;
        }
        case Format::OneBit:
            c.meta = (size_t)D / 8 + 1;
            c.key = blocks * ob_k_block_meta(D) + (size_t)n * ob_k_token_bytes(D);
            c.value = blocks * ob_v_block_meta(D) + (size_t)n * ob_v_token_bytes(D);
            break;
    }
    return c;
}

double bits_per_element(Format f, int D, int32_t n) {
    return n > 0 ? (double)format_bytes(f, D, n).total() * 8.0 / (2.0 * n * D) : 0.0;
}

double key_bits_per_element(Format f, int D) {
    const int B = token_block(f);
    return (double)(format_bytes(f, D, B).key) * 8.0 / ((double)B * D);
}

double value_bits_per_element(Format f, int D) {
    const int B = token_block(f);
    return (double)(format_bytes(f, D, B).value) * 8.0 / ((double)B * D);
}

QuantSegment quantize(Format f, int D, int32_t n, const float *K, const float *V, const uint8_t *onebit_meta) {
    if (!supports_head_dim(f, D)) throw std::invalid_argument(std::string(format_name(f)) + ": unsupported head dim " + std::to_string(D));
    if (n < 0) throw std::invalid_argument("negative token count");
    QuantSegment s;
    s.format = f;
    s.head_dim = D;
    s.n = n;
    const ByteCount bc = format_bytes(f, D, n);
    // exact allocations: reserve then resize, so capacity() == size() == the accounted bytes
    s.k.reserve(bc.key), s.k.resize(bc.key, 0);
    s.v.reserve(bc.value), s.v.resize(bc.value, 0);
    s.meta.reserve(bc.meta), s.meta.resize(bc.meta, 0);
    switch (f) {
        case Format::Q8:
            quantize_q8_rows(D, n, K, s.k.data());
            quantize_q8_rows(D, n, V, s.v.data());
            break;
        case Format::Kivi4:
        case Format::Kivi2:
            quantize_kivi_keys(D, code_bits(f), n, K, s.k.data());
            quantize_kivi_values(D, code_bits(f), n, V, s.v.data());
            break;
        case Format::OneBit:
            if (onebit_meta) {
                memcpy(s.meta.data(), onebit_meta, bc.meta);
                quantize_onebit_keys(D, n, K, s.meta.data(), s.k.data());
            } else {
                // outlier channels from the data; rotate the normal channels or not, whichever reconstructs the
                // keys better (the flag is part of the segment's metadata)
                onebit_mask_of(D, n, K, s.meta.data());
                double err[2];
                std::vector<uint8_t> kb[2] = {std::vector<uint8_t>(bc.key, 0), std::vector<uint8_t>(bc.key, 0)};
                std::vector<float> Kd((size_t)n * D);
                for (int rot = 0; rot < 2; rot++) {
                    s.meta[D / 8] = (uint8_t)rot;
                    quantize_onebit_keys(D, n, K, s.meta.data(), kb[rot].data());
                    dequantize_onebit_keys(D, n, s.meta.data(), kb[rot].data(), Kd.data());
                    err[rot] = 0;
                    for (size_t i = 0; i < Kd.size(); i++) err[rot] += (double)(Kd[i] - K[i]) * (Kd[i] - K[i]);
                }
                const int best = err[1] <= err[0] ? 1 : 0;
                s.meta[D / 8] = (uint8_t)best;
                memcpy(s.k.data(), kb[best].data(), bc.key);
            }
            quantize_onebit_values(D, n, V, s.v.data());
            break;
    }
    return s;
}

namespace {
void append_exact(std::vector<uint8_t> &a, const std::vector<uint8_t> &b) {
    std::vector<uint8_t> out;
    out.reserve(a.size() + b.size());
    out.insert(out.end(), a.begin(), a.end());
    out.insert(out.end(), b.begin(), b.end());
    a.swap(out);
}
}  // namespace

void append(QuantSegment &seg, const QuantSegment &more) {
    if (more.format != seg.format || more.head_dim != seg.head_dim) throw std::invalid_argument("append: format or head dim differs");
    if (seg.n % token_block(seg.format)) throw std::invalid_argument("append: the segment does not end on a whole token block");
    if (seg.format == Format::OneBit && seg.n > 0 && more.n > 0 && seg.meta != more.meta) throw std::invalid_argument("append: onebit outlier masks or rotation flags differ");
    if (more.n == 0) return;
    if (seg.n == 0) {
        QuantSegment copy(more);  // copy-constructed vectors: capacity == size
        seg = std::move(copy);
        return;
    }
    append_exact(seg.k, more.k);
    append_exact(seg.v, more.v);
    seg.n += more.n;
}

void dequantize(const QuantSegment &seg, float *K, float *V) {
    const int D = seg.head_dim;
    const int32_t n = seg.n;
    switch (seg.format) {
        case Format::Q8:
            for (int pass = 0; pass < 2; pass++) {
                const uint8_t *src = pass ? seg.v.data() : seg.k.data();
                float *dst = pass ? V : K;
                for (int32_t t = 0; t < n; t++)
                    for (int g = 0; g < D / 32; g++) {
                        const uint8_t *p = src + (size_t)t * q8_token_bytes(D) + g * 34;
                        const float d = get_h(p);
                        for (int i = 0; i < 32; i++) dst[(size_t)t * D + g * 32 + i] = d * (float)(int8_t)p[2 + i];
                    }
            }
            return;
        case Format::Kivi4:
        case Format::Kivi2: {
            const int b = code_bits(seg.format);
            const uint8_t *p = seg.k.data();
            for (int32_t t0 = 0; t0 < n; t0 += kKiviBlock) {
                const int nt = std::min<int32_t>(kKiviBlock, n - t0);
                const uint8_t *codes = p + kivi_k_block_meta(D);
                for (int i = 0; i < nt; i++)
                    for (int c = 0; c < D; c++)
                        K[(size_t)(t0 + i) * D + c] = get_h(p + 2 * D + 2 * c) + get_h(p + 2 * c) * (float)get_code(codes + (size_t)i * kivi_k_token_bytes(D, b), c, b);
                p = codes + (size_t)nt * kivi_k_token_bytes(D, b);
            }
            for (int32_t t = 0; t < n; t++) {
                const uint8_t *row = seg.v.data() + (size_t)t * kivi_v_token_bytes(D, b);
                const uint8_t *meta = row + (size_t)D * b / 8;
                for (int c = 0; c < D; c++)
                    V[(size_t)t * D + c] = get_h(meta + 2 * (D / 32) + 2 * (c / 32)) + get_h(meta + 2 * (c / 32)) * (float)get_code(row, c, b);
            }
            return;
        }
        case Format::OneBit: {
            dequantize_onebit_keys(D, n, seg.meta.data(), seg.k.data(), K);
            const uint8_t *p;
            const size_t vb = ob_v_token_bytes(D);
            p = seg.v.data();
            for (int32_t t0 = 0; t0 < n; t0 += kOneBitBlock) {
                const int nt = std::min<int32_t>(kOneBitBlock, n - t0);
                const uint8_t *meta = p, *rows = p + ob_v_block_meta(D);
                for (int i = 0; i < nt; i++)
                    for (int c = 0; c < D; c++) V[(size_t)(t0 + i) * D + c] = get_h(meta + 2 * c) * (float)g_trits.t[rows[(size_t)i * vb + c / 5]][c % 5];
                p = rows + (size_t)nt * vb;
            }
            return;
        }
    }
}

void scores(const QuantSegment &seg, int32_t n, const float *q, int R, float scale, float *S, size_t ld) {
    n = std::min(n, seg.n);
    if (n <= 0) return;
    switch (seg.format) {
        case Format::Q8: return scores_q8(seg, n, q, R, scale, S, ld);
        case Format::Kivi4:
        case Format::Kivi2: return scores_kivi(seg, n, q, R, scale, S, ld);
        case Format::OneBit: return scores_onebit(seg, n, q, R, scale, S, ld);
    }
}

void accumulate(const QuantSegment &seg, int32_t n, const float *P, size_t ld, int R, float *out) {
    n = std::min(n, seg.n);
    if (n <= 0) return;
    switch (seg.format) {
        case Format::Q8: return accumulate_q8(seg, n, P, ld, R, out);
        case Format::Kivi4:
        case Format::Kivi2: return accumulate_kivi(seg, n, P, ld, R, out);
        case Format::OneBit: return accumulate_onebit(seg, n, P, ld, R, out);
    }
}

void Partial::reset(int R_, int D) {
    R = R_;
    head_dim = D;
    m.assign(R, -std::numeric_limits<float>::infinity());
    l.assign(R, 0.0f);
    acc.assign((size_t)R * D, 0.0f);
}

void partial_attention(const QuantSegment &seg, const float *q, int R, float scale, Partial &out, const uint8_t *mask) {
    const int D = seg.head_dim;
    const int32_t n = seg.n;
    out.reset(R, D);
    if (n == 0) return;
    std::vector<float> S((size_t)R * n);
    scores(seg, n, q, R, scale, S.data(), n);
    for (int r = 0; r < R; r++) {
        float *Sr = S.data() + (size_t)r * n;
        float mx = -std::numeric_limits<float>::infinity();
        for (int32_t j = 0; j < n; j++) {
            if (mask && !mask[(size_t)r * n + j]) Sr[j] = -std::numeric_limits<float>::infinity();
            else mx = std::max(mx, Sr[j]);
        }
        double l = 0;
        for (int32_t j = 0; j < n; j++) {
            Sr[j] = mx == -std::numeric_limits<float>::infinity() ? 0.0f : std::exp(Sr[j] - mx);
            l += Sr[j];
        }
        out.m[r] = mx;
        out.l[r] = (float)l;
    }
    accumulate(seg, n, S.data(), n, R, out.acc.data());
}

void merge(Partial &a, const Partial &b) {
    const int D = a.head_dim;
    for (int r = 0; r < a.R; r++) {
        if (b.m[r] == -std::numeric_limits<float>::infinity()) continue;
        if (a.m[r] == -std::numeric_limits<float>::infinity()) {
            a.m[r] = b.m[r];
            a.l[r] = b.l[r];
            std::copy(b.acc.begin() + (size_t)r * D, b.acc.begin() + (size_t)(r + 1) * D, a.acc.begin() + (size_t)r * D);
            continue;
        }
        const float m = std::max(a.m[r], b.m[r]);
        const float ea = std::exp(a.m[r] - m), eb = std::exp(b.m[r] - m);
        a.l[r] = a.l[r] * ea + b.l[r] * eb;
        for (int c = 0; c < D; c++) a.acc[(size_t)r * D + c] = a.acc[(size_t)r * D + c] * ea + b.acc[(size_t)r * D + c] * eb;
        a.m[r] = m;
    }
}

void finish(const Partial &p, float *out) {
    const int D = p.head_dim;
    for (int r = 0; r < p.R; r++)
        for (int c = 0; c < D; c++) out[(size_t)r * D + c] = p.l[r] > 0 ? p.acc[(size_t)r * D + c] / p.l[r] : 0.0f;
}

void onebit_rotate_normals(const uint8_t *meta, int D, const float *x, float *out) {
    std::vector<int> outl(ob_do(D)), norm(ob_dn(D));
    split_channels(meta, D, outl.data(), norm.data());
    rotate_normals(norm.data(), D, ob_rotated(meta, D), x, out);
}

}  // namespace quant
}  // namespace repokv
