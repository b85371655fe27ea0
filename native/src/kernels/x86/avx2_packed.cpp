// AVX2 + FMA + F16C kernels of the packed formats (x86-64 only; every function carries its target attribute, so the
// file builds without -mavx2 and nothing in it runs unless kernels::active() picked this table).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "../../quant/common.h"
#include "../kernels.h"
#include "avx2.h"

namespace repokv {
namespace kernels {

using namespace quant;

namespace {

#define AVX2 __attribute__((target("avx2,fma,f16c")))

// 8 b-bit codes (channels c..c+7 of a row) as floats: broadcast, per-lane shift, mask
template <int b>
AVX2 inline __m256 codes8_avx2(const uint8_t *row, int c, __m256i sh, __m256i mask) {
    uint32_t w = 0;
    if (b == 4) memcpy(&w, row + c / 2, 4);  // 8 codes of b bits = b bytes
    else {
        uint16_t h;
        memcpy(&h, row + c / 4, 2);
        w = h;
    }
    return _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)w), sh), mask));
}
AVX2 inline float hsum_avx2(__m256 x) {
    __m128 v = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
    v = _mm_add_ps(v, _mm_movehl_ps(v, v));
    v = _mm_add_ss(v, _mm_movehdup_ps(v));
    return _mm_cvtss_f32(v);
}

// q8 scores: per token and group, d_t,g · (q_g · codes), int8 codes widened 8 at a time; rows in chunks of 8
AVX2 void q8_scores_avx2(const uint8_t *k, int32_t n, int D, const float *q, int R, float scale, float *S, size_t ld) {
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

// ---- integer-SIMD helpers (docs/kv-quantization.md "Kernel algebra": the query side quantized to int8, u8×s8 products with maddubs)

// 32-byte aligned scratch of n vectors (std::vector<__m256i> would drop the type's attributes)
struct Vec256 {
    __m256i *v;
    explicit Vec256(size_t n) : v((__m256i *)std::aligned_alloc(32, std::max<size_t>(n, 1) * sizeof(__m256i))) {
        if (!v) throw std::bad_alloc();
    }
    ~Vec256() { std::free(v); }
    Vec256(const Vec256 &) = delete;
    Vec256 &operator=(const Vec256 &) = delete;
    __m256i *data() { return v; }
    __m256i &operator[](size_t i) { return v[i]; }
};

// n fp16 values (n % 8 == 0) -> floats, F16C
AVX2 inline void halves_avx2(const uint8_t *src, int n, float *dst) {
    for (int i = 0; i < n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + 2 * i))));
}
AVX2 inline float hmax_avx2(__m256 x) {
    __m128 v = _mm_max_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
    v = _mm_max_ps(v, _mm_movehl_ps(v, v));
    v = _mm_max_ss(v, _mm_movehdup_ps(v));
    return _mm_cvtss_f32(v);
}
AVX2 inline float dot_avx2(const float *a, const float *b, int n) {  // n % 8 == 0
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
    return hsum_avx2(acc);
}
// Two-level int8 quantization of x (n floats, n % 32 == 0), in order: x ≈ s·(128·hi + lo) with s = max|x| / (127·128),
// hi = round(x / (128 s)) ∈ [−127, 127] and lo = round(x / s − 128·hi) ∈ [−64, 64], so |s·(128 hi + lo) − x| ≤ s/2
// (15 bits where one int8 level would give 7: the error of a one-level int8 query showed in the logits, 8e-3 of the
// largest at kivi4 against 2e-3 allowed). Returns s (0 and all-zero codes for x = 0).
AVX2 inline float quantize_i8x2_avx2(const float *x, int n, int8_t *hi, int8_t *lo) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)));
    const float amax = hmax_avx2(m);
    const __m256 inv = _mm256_set1_ps(amax > 0 ? 127.0f / amax : 0.0f), k128 = _mm256_set1_ps(128.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);  // undoes the lane interleaving of the packs
    for (int i = 0; i < n; i += 32) {
        __m256i h[4], l[4];
        for (int j = 0; j < 4; j++) {
            const __m256 u = _mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * j), inv);
            const __m256 hr = _mm256_round_ps(u, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            h[j] = _mm256_cvtps_epi32(hr);
            l[j] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_sub_ps(u, hr), k128));
        }
        const __m256i bh = _mm256_packs_epi16(_mm256_packs_epi32(h[0], h[1]), _mm256_packs_epi32(h[2], h[3]));
        const __m256i bl = _mm256_packs_epi16(_mm256_packs_epi32(l[0], l[1]), _mm256_packs_epi32(l[2], l[3]));
        _mm256_storeu_si256((__m256i *)(hi + i), _mm256_permutevar8x32_epi32(bh, order));
        _mm256_storeu_si256((__m256i *)(lo + i), _mm256_permutevar8x32_epi32(bl, order));
    }
    return amax / (127.0f * 128.0f);
}
// [hsum(s0), ..., hsum(s3)] of 4 int32 vectors whose lanes hold two tokens' partial sums each (low 128 bits: token
// 2p, high: token 2p + 1): the 8 tokens' sums in order
AVX2 inline __m256i reduce_pairs_avx2(const __m256i *s) {
    const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));  // [t0 t2 t4 t6 | t1 t3 t5 t7]
    return _mm256_permutevar8x32_epi32(h, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// kivi scores, AVX2 integer kernel. Per 32-token block and query row, a = q∘Δ (the block's per-channel scales folded
// into the query) is quantized to two int8 levels (quantize_i8x2_avx2: a ≈ α·(128·hi + lo), α = max|a| / (127·128))
// laid out like the codes: a 16-byte code chunk holds 32 (b = 4) or 64 (b = 2) channels, one weight vector per code
// position in the byte (2 or 4). Tokens go in pairs, one per 128-bit lane: the chunk's codes are unpacked with shifts
// and masks (read once for all rows); maddubs(codes, hi) and maddubs(codes, lo) sum u4/u2 × s8 products into int16,
// madd by 128 and by 1 into int32; score = (bias + α·Σ_c (128 hi_c + lo_c) code_c)·scale, off the float dot product
// by at most (α/2)·Σ_c code_c (the rounding of lo).
template <int b, int nc>
AVX2 void scores_kivi_avx2(const QuantSegment &seg, int32_t n, const float *q, int R, float scale, float *S, size_t ld) {
    constexpr int nd = 8 / b;                                      // codes per byte
    constexpr int per_chunk = 16 * nd;                             // channels per 16-byte chunk
    constexpr int L = 32767 / (nd * 2 * ((1 << b) - 1) * 127);     // chunks an int16 sum holds without overflow
    const int D = seg.head_dim;
    const size_t tb = kivi_k_token_bytes(D, b);
    const int Dp = nc * per_chunk;                                 // nc chunks per row; the last of kivi2 may be 8 bytes
    std::vector<float> dl(D), mn(D), a(Dp, 0.0f), alpha(R), bias(R);
    std::vector<int8_t> aq((size_t)2 * Dp, 0);  // hi, lo
    Vec256 W((size_t)R * 2 * nc * nd), acc((size_t)R * 4);  // per row: nc·nd hi weight vectors, then nc·nd lo
    const __m256i mask = _mm256_set1_epi8((char)((1 << b) - 1)), ones = _mm256_set1_epi16(1), k128 = _mm256_set1_epi16(128);
    const uint8_t *p = seg.k.data();
    alignas(32) float tmp[8];
    for (int32_t t0 = 0; t0 < seg.n && t0 < n; t0 += kKiviBlock) {
        const int nt = std::min<int32_t>(kKiviBlock, seg.n - t0);
        const uint8_t *meta = p, *codes = p + kivi_k_block_meta(D);
        const int lim = std::min<int32_t>(nt, n - t0);
        halves_avx2(meta, D, dl.data());
        halves_avx2(meta + 2 * D, D, mn.data());
        for (int r = 0; r < R; r++) {
            const float *qr = q + (size_t)r * D;
            for (int c = 0; c < D; c += 8) _mm256_storeu_ps(a.data() + c, _mm256_mul_ps(_mm256_loadu_ps(qr + c), _mm256_loadu_ps(dl.data() + c)));
            bias[r] = dot_avx2(qr, mn.data(), D) * scale;
            alpha[r] = quantize_i8x2_avx2(a.data(), Dp, aq.data(), aq.data() + Dp) * scale;
            for (int level = 0; level < 2; level++) {
                for (int j = 0; j < nc; j++) {
                    const int8_t *src = aq.data() + (size_t)level * Dp;
                    __m256i *Wr = W.data() + ((size_t)r * 2 + level) * nc * nd;
                    if (b == 4) {
                        // chunk j: byte k holds channels 32j + 2k (low nibble) and 32j + 2k + 1 (high): even / odd weights
                        const __m256i eo = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15, 0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
                        const __m256i x = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)(src + 32 * j)), eo), _MM_SHUFFLE(3, 1, 2, 0));
                        Wr[2 * j] = _mm256_permute4x64_epi64(x, _MM_SHUFFLE(1, 0, 1, 0));
                        Wr[2 * j + 1] = _mm256_permute4x64_epi64(x, _MM_SHUFFLE(3, 2, 3, 2));
                    } else {
                        // chunk j: byte k holds channels 64j + 4k + i at bits 2i: four weight vectors, one per i
                        const __m256i m4 = _mm256_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15, 0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
                        const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
                        const __m256i A = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)(src + 64 * j)), m4), order);
                        const __m256i B = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)(src + 64 * j + 32)), m4), order);
                        const __m256i lo = _mm256_unpacklo_epi64(A, B), hi = _mm256_unpackhi_epi64(A, B);  // [w0 | w2], [w1 | w3]
                        Wr[4 * j] = _mm256_permute2x128_si256(lo, lo, 0x00);
                        Wr[4 * j + 1] = _mm256_permute2x128_si256(hi, hi, 0x00);
                        Wr[4 * j + 2] = _mm256_permute2x128_si256(lo, lo, 0x11);
                        Wr[4 * j + 3] = _mm256_permute2x128_si256(hi, hi, 0x11);
                    }
                }
            }
        }
        for (int i = 0; i < lim; i += 8) {
            for (int pr = 0; pr < 4; pr++) {
                // tokens i + 2pr and i + 2pr + 1 of the block (past lim: the last token again, its sums unused)
                const uint8_t *ra = codes + (size_t)std::min(i + 2 * pr, lim - 1) * tb, *rb = codes + (size_t)std::min(i + 2 * pr + 1, lim - 1) * tb;
                __m256i cv[nc * nd];
                for (int j = 0; j < nc; j++) {
                    const bool full = (size_t)16 * (j + 1) <= tb;
                    const __m128i xa = full ? _mm_loadu_si128((const __m128i *)(ra + 16 * j)) : _mm_loadl_epi64((const __m128i *)(ra + 16 * j));
                    const __m128i xb = full ? _mm_loadu_si128((const __m128i *)(rb + 16 * j)) : _mm_loadl_epi64((const __m128i *)(rb + 16 * j));
                    const __m256i x = _mm256_inserti128_si256(_mm256_castsi128_si256(xa), xb, 1);
                    for (int d = 0; d < nd; d++) cv[j * nd + d] = _mm256_and_si256(_mm256_srli_epi16(x, b * d), mask);
                }
                for (int r = 0; r < R; r++) {
                    const __m256i *Wh = W.data() + (size_t)r * 2 * nc * nd, *Wl = Wh + nc * nd;
                    __m256i s32 = _mm256_setzero_si256(), sh = s32, sl = s32;
                    for (int j = 0; j < nc; j++) {
                        for (int d = 0; d < nd; d++) {
                            sh = _mm256_add_epi16(sh, _mm256_maddubs_epi16(cv[j * nd + d], Wh[j * nd + d]));
                            sl = _mm256_add_epi16(sl, _mm256_maddubs_epi16(cv[j * nd + d], Wl[j * nd + d]));
                        }
                        if ((j + 1) % L == 0 || j + 1 == nc) {
                            s32 = _mm256_add_epi32(s32, _mm256_add_epi32(_mm256_madd_epi16(sh, k128), _mm256_madd_epi16(sl, ones)));
                            sh = sl = _mm256_setzero_si256();
                        }
                    }
                    acc[(size_t)r * 4 + pr] = s32;
                }
            }
            for (int r = 0; r < R; r++) {
                const __m256 sc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(reduce_pairs_avx2(acc.data() + (size_t)r * 4)), _mm256_set1_ps(alpha[r]), _mm256_set1_ps(bias[r]));
                float *dst = S + (size_t)r * ld + t0 + i;
                if (i + 8 <= lim) _mm256_storeu_ps(dst, sc);
                else {
                    _mm256_store_ps(tmp, sc);
                    memcpy(dst, tmp, (size_t)(lim - i) * sizeof(float));
                }
            }
        }
        p = codes + (size_t)nt * tb;
    }
}

// kivi values of token rows [0, n): out_r += Σ_t p_rt (Δ_t,g code_t + min_t,g). Per group of 32 channels and up to
// 3 rows at a time, the sums over tokens stay in registers (4 vectors per row): each token's values are dequantized
// once (Δ·code + min, shared by the rows; the same rounding as dequantize-then-dot), then 4 FMAs per row.
template <int b>
AVX2 void kivi_accumulate_avx2(const uint8_t *v, int32_t n, size_t tb, int D, const float *P, size_t ld, int R, float *out) {
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
                uint16_t hd, hm;
                memcpy(&hd, meta + 2 * g, 2);
                memcpy(&hm, meta + 2 * NG + 2 * g, 2);
                const __m256 dl = _mm256_set1_ps(_cvtsh_ss(hd)), mn = _mm256_set1_ps(_cvtsh_ss(hm));
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

// 16-entry int8 tables for pshufb, two at a time: lo0/hi0 are table A's entries 0..7 / 8..15 as floats (already in
// units of the table scale, |x| <= 63), lo1/hi1 table B's; stores A's 16 bytes rounded, then B's, at out.
AVX2 inline void store_tables_i8_avx2(__m256 lo0, __m256 hi0, __m256 lo1, __m256 hi1, int8_t *out) {
    const __m256i a = _mm256_packs_epi32(_mm256_cvtps_epi32(lo0), _mm256_cvtps_epi32(hi0));  // [A0-3 A8-11 | A4-7 A12-15]
    const __m256i b = _mm256_packs_epi32(_mm256_cvtps_epi32(lo1), _mm256_cvtps_epi32(hi1));
    const __m256i x = _mm256_packs_epi16(a, b);  // dwords [A0-3 A8-11 B0-3 B8-11 | A4-7 A12-15 B4-7 B12-15]
    _mm256_storeu_si256((__m256i *)out, _mm256_permutevar8x32_epi32(x, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
}
// ... in two int8 levels, x ≈ h + l/64 with h = round(x) ∈ [−63, 63] and l = round(64·(x − h)) ∈ [−32, 32]: the 32
// bytes of h at out, the 32 of l at out + 32 (a lookup is then off by at most 1/128 of a table unit)
AVX2 inline void store_tables_avx2(const __m256 *e, int8_t *out) {
    __m256 h[4], l[4];
    for (int i = 0; i < 4; i++) {
        h[i] = _mm256_round_ps(e[i], _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        l[i] = _mm256_mul_ps(_mm256_sub_ps(e[i], h[i]), _mm256_set1_ps(64.0f));
    }
    store_tables_i8_avx2(h[0], h[1], h[2], h[3], out);
    store_tables_i8_avx2(l[0], l[1], l[2], l[3], out + 32);
}

// onebit keys, AVX2 integer kernel (T-MAC style). Every nibble of a token's key row indexes a 16-entry table: an outlier
// nibble holds two channels' 2-bit codes, T[x] = a_j·((x & 3) − 1.5) + a_{j+1}·((x >> 2) − 1.5) (a = q∘Δ, codes
// centred so the table is symmetric; 1.5·Σa goes to the bias), a sign nibble four rotated normal channels' sign
// bits, T[x] = Σ_i b_i·(2·bit_i − 1) (b = q'∘α). Per block and row the tables are quantized to int8 with one scale
// for the outlier tables and one for the sign tables (β = max |T| / 63, so two lookups add up in int8), and a
// byte plane of 32 tokens is scored with two pshufb (its low- and high-nibble tables: 32 lookups each), one add and
// two maddubs that widen the even / odd tokens into int16 sums; per 32 tokens and row the sums are converted to
// float once: score = (bias + βo·Σ outlier lookups + βn·Σ sign lookups)·scale. Each lookup is off by at most β/2.
constexpr int kOneBitMaxPlanes = 64;  // byte planes per key row the AVX2 kernel handles (D <= 256)
AVX2 void scores_onebit_avx2(const QuantSegment &seg, int32_t n, const float *q, int R, float scale, float *S, size_t ld) {
    const int D = seg.head_dim, Do = ob_do(D), Dn = ob_dn(D);
    const int nbo = Do / 4, nbn = Dn / 8, np = nbo + nbn;  // byte planes: outlier codes, then sign bits
    const OneBitQuery oq = onebit_query(seg, q, R);
    std::vector<float> bm((size_t)4 * D), ao(Do), an(Dn), bias(R), beta_o(R), beta_n(R);
    std::vector<int8_t> T((size_t)R * np * 64);  // per row and plane: low- and high-nibble tables, level h then l
    Vec256 idx((size_t)2 * np);
    alignas(32) uint8_t tail[32 * kOneBitMaxPlanes];
    alignas(32) float tmp[32];
    const __m256 sign = _mm256_set1_ps(-0.0f);
    // entry patterns: x & 3 and x >> 2 centred (outliers), the sign of bit i (normals); entries 0..7, then 8..15
    const __m256 c0 = _mm256_setr_ps(-1.5f, -0.5f, 0.5f, 1.5f, -1.5f, -0.5f, 0.5f, 1.5f);
    const __m256 c1lo = _mm256_setr_ps(-1.5f, -1.5f, -1.5f, -1.5f, -0.5f, -0.5f, -0.5f, -0.5f), c1hi = _mm256_setr_ps(0.5f, 0.5f, 0.5f, 0.5f, 1.5f, 1.5f, 1.5f, 1.5f);
    const __m256 s0 = _mm256_setr_ps(-1, 1, -1, 1, -1, 1, -1, 1), s1 = _mm256_setr_ps(-1, -1, 1, 1, -1, -1, 1, 1), s2 = _mm256_setr_ps(-1, -1, -1, -1, 1, 1, 1, 1);
    const __m256i m4 = _mm256_set1_epi8(15), even = _mm256_set1_epi16(1), odd = _mm256_set1_epi16(256), w64 = _mm256_set1_epi32(64 | 1 << 16);
    const size_t tb = ob_k_token_bytes(D);
    const uint8_t *p = seg.k.data();
    for (int32_t t0 = 0; t0 < seg.n && t0 < n; t0 += kOneBitBlock) {
        const int nt = std::min<int32_t>(kOneBitBlock, seg.n - t0);
        const uint8_t *rows = p + ob_k_block_meta(D);
        const int lim = std::min<int32_t>(nt, n - t0);
        halves_avx2(p, 4 * D, bm.data());  // [Δ x Do][min x Do][μ x Dn][α x Dn]
        const float *dl = bm.data(), *mn = dl + Do, *mu = mn + Do, *al = mu + Dn;
        for (int r = 0; r < R; r++) {
            const float *qo = oq.qo.data() + (size_t)r * Do, *qn = oq.qn.data() + (size_t)r * Dn;
            __m256 mo = _mm256_setzero_ps(), mnn = mo, so = mo;
            for (int j = 0; j < Do; j += 8) {
                const __m256 x = _mm256_mul_ps(_mm256_loadu_ps(qo + j), _mm256_loadu_ps(dl + j));
                _mm256_storeu_ps(ao.data() + j, x);
                so = _mm256_add_ps(so, x);
                const __m256 ax = _mm256_andnot_ps(sign, x);
                mo = _mm256_max_ps(mo, _mm256_hadd_ps(ax, ax));  // |a_2g| + |a_2g+1|
            }
            for (int j = 0; j < Dn; j += 8) {
                const __m256 x = _mm256_mul_ps(_mm256_loadu_ps(qn + j), _mm256_loadu_ps(al + j));
                _mm256_storeu_ps(an.data() + j, x);
                const __m256 h = _mm256_hadd_ps(_mm256_andnot_ps(sign, x), _mm256_setzero_ps());
                mnn = _mm256_max_ps(mnn, _mm256_hadd_ps(h, h));  // Σ_{i<4} |b_4g+i|
            }
            const float bo = 1.5f * hmax_avx2(mo) / 63.0f, bn = hmax_avx2(mnn) / 63.0f;
            const __m256 io = _mm256_set1_ps(bo > 0 ? 1.0f / bo : 0.0f), in = _mm256_set1_ps(bn > 0 ? 1.0f / bn : 0.0f);
            bias[r] = (dot_avx2(qo, mn, Do) + 1.5f * hsum_avx2(so) + dot_avx2(qn, mu, Dn)) * scale;
            beta_o[r] = bo / 64 * scale;  // the sums count table units in 1/64
            beta_n[r] = bn / 64 * scale;
            int8_t *Tr = T.data() + (size_t)r * np * 64;
            for (int k = 0; k < nbo; k++) {  // plane k: channels 4k, 4k+1 (low nibble), 4k+2, 4k+3 (high)
                __m256 e[4];
                for (int h = 0; h < 2; h++) {
                    const __m256 a0 = _mm256_mul_ps(_mm256_set1_ps(ao[4 * k + 2 * h]), io), a1 = _mm256_mul_ps(_mm256_set1_ps(ao[4 * k + 2 * h + 1]), io);
                    const __m256 base = _mm256_mul_ps(a0, c0);
                    e[2 * h] = _mm256_fmadd_ps(a1, c1lo, base);
                    e[2 * h + 1] = _mm256_fmadd_ps(a1, c1hi, base);
                }
                store_tables_avx2(e, Tr + 64 * k);
            }
            for (int k = 0; k < nbn; k++) {  // sign plane k: normals 8k..8k+3 (low nibble), 8k+4..8k+7 (high)
                __m256 e[4];
                for (int h = 0; h < 2; h++) {
                    const float *b4 = an.data() + 8 * k + 4 * h;
                    const __m256 x = _mm256_fmadd_ps(_mm256_set1_ps(b4[2]), s2, _mm256_fmadd_ps(_mm256_set1_ps(b4[1]), s1, _mm256_mul_ps(_mm256_set1_ps(b4[0]), s0)));
                    const __m256 y = _mm256_set1_ps(b4[3]);
                    e[2 * h] = _mm256_mul_ps(_mm256_sub_ps(x, y), in);
                    e[2 * h + 1] = _mm256_mul_ps(_mm256_add_ps(x, y), in);
                }
                store_tables_avx2(e, Tr + 64 * (nbo + k));
            }
        }
        for (int i = 0; i < lim; i += 32) {
            // byte plane k holds byte k of every token (rows[k * nt + i]); a last partial group of 32 is copied out
            const uint8_t *src = rows + i;
            size_t stride = nt;
            if (i + 32 > nt) {
                memset(tail, 0, (size_t)np * 32);
                for (int k = 0; k < np; k++) memcpy(tail + 32 * k, rows + (size_t)k * nt + i, nt - i);
                src = tail, stride = 32;
            }
            for (int k = 0; k < np; k++) {
                const __m256i x = _mm256_loadu_si256((const __m256i *)(src + (size_t)k * stride));
                idx[2 * k] = _mm256_and_si256(x, m4);
                idx[2 * k + 1] = _mm256_and_si256(_mm256_srli_epi16(x, 4), m4);
            }
            for (int r = 0; r < R; r++) {
                const int8_t *Tr = T.data() + (size_t)r * np * 64;
                __m256i tok[2][2], hiq[2][2];  // [outlier, sign] x [even, odd tokens]: int32 sums 64·Σh + Σl
                for (int part = 0; part < 2; part++) {
                    __m256i eh = _mm256_setzero_si256(), oh = eh, el = eh, ol = eh;
                    for (int k = part ? nbo : 0; k < (part ? np : nbo); k++) {
                        const int8_t *t = Tr + 64 * k;
                        const __m256i il = idx[2 * k], ih = idx[2 * k + 1];
                        const __m256i vh = _mm256_add_epi8(_mm256_shuffle_epi8(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)t)), il),
                                                           _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(t + 16))), ih));
                        const __m256i vl = _mm256_add_epi8(_mm256_shuffle_epi8(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(t + 32))), il),
                                                           _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(t + 48))), ih));
                        eh = _mm256_add_epi16(eh, _mm256_maddubs_epi16(even, vh));
                        oh = _mm256_add_epi16(oh, _mm256_maddubs_epi16(odd, vh));
                        el = _mm256_add_epi16(el, _mm256_maddubs_epi16(even, vl));
                        ol = _mm256_add_epi16(ol, _mm256_maddubs_epi16(odd, vl));
                    }
                    // (h, l) pairs -> 64·h + l in int32: [t0 t2 t4 t6 | t16 t18 t20 t22] and [t8 .. t14 | t24 .. t30] (even)
                    tok[part][0] = _mm256_madd_epi16(_mm256_unpacklo_epi16(eh, el), w64);
                    tok[part][1] = _mm256_madd_epi16(_mm256_unpacklo_epi16(oh, ol), w64);
                    hiq[part][0] = _mm256_madd_epi16(_mm256_unpackhi_epi16(eh, el), w64);
                    hiq[part][1] = _mm256_madd_epi16(_mm256_unpackhi_epi16(oh, ol), w64);
                }
                const __m256 vb = _mm256_set1_ps(bias[r]), vo = _mm256_set1_ps(beta_o[r]), vn = _mm256_set1_ps(beta_n[r]);
                float *dst = i + 32 <= lim ? S + (size_t)r * ld + t0 + i : tmp;
                for (int half = 0; half < 2; half++) {  // tokens 0-7 and 16-23, then 8-15 and 24-31
                    const __m256i(*src)[2] = half ? hiq : tok;
                    __m256 f[2];
                    for (int eo = 0; eo < 2; eo++)
                        f[eo] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(src[1][eo]), vn, _mm256_fmadd_ps(_mm256_cvtepi32_ps(src[0][eo]), vo, vb));
                    const __m256 a = _mm256_unpacklo_ps(f[0], f[1]), b = _mm256_unpackhi_ps(f[0], f[1]);  // [t0-3 | t16-19], [t4-7 | t20-23]
                    _mm256_storeu_ps(dst + 8 * half, _mm256_permute2f128_ps(a, b, 0x20));
                    _mm256_storeu_ps(dst + 16 + 8 * half, _mm256_permute2f128_ps(a, b, 0x31));
                }
                if (dst == tmp) memcpy(S + (size_t)r * ld + t0 + i, tmp, (size_t)(lim - i) * sizeof(float));
            }
        }
        p = rows + (size_t)nt * tb;
    }
}

AVX2 inline __m256 i16_f32(__m128i x) { return _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(x)); }

// onebit values, AVX2 integer kernel: Σ_t p_t γ_c σ_tc = γ_c Σ_t p_t σ_tc. Per block and row the probabilities are
// quantized to two u8 levels: u = p / π with π = max_t p_t / 255, h = ⌊u⌋, l = round(255·(u − h)), p ≈ π·(h + l/255)
// (off by at most π/510; negative p count as 0; one level, off by π/2, moved the tiered logits by 3.7e-3 of the
// largest against 2e-3 allowed); token pairs (t, t+1) whose p̂ is 0 in every row are skipped. A pair's code bytes are
// interleaved (16 byte columns of both tokens per vector) and each of the 5 trits of every byte decoded with byte
// arithmetic (TQ1_0's encoding, see trit_byte: z_i = (q ^ 0x80)·3^i mod 256, σ = [z_i > 42] − [z_i < −42]);
// maddubs(h_t | h_t+1, σ) and maddubs(l_t | l_t+1, σ) sum both tokens' products per channel into int16 (exact: at most
// 64 pairs · 2 · 255 per block). Per block the sums are scaled by π·γ_c into a float accumulator kept in trit-major
// order (channel 5k + i at [i][k]), put back in channel order at the end.
template <int nc>  // 16-column chunks of a token's bytes
AVX2 void accumulate_onebit_avx2(const QuantSegment &seg, int32_t n, const float *P, size_t ld, int R, float *out) {
    const int D = seg.head_dim;
    const size_t tb = ob_v_token_bytes(D);
    constexpr int ncol = 16 * nc;
    const uint8_t *p = seg.v.data(), *end = seg.v.data() + seg.v.size();
    constexpr int kPad = kOneBitBlock + 32;
    const int R2 = 2 * R;  // rows of p̂: row r's level h at 2r, level l at 2r + 1
    std::vector<uint8_t> pq((size_t)R2 * kPad);
    std::vector<float> gam(D), gd((size_t)5 * ncol), od((size_t)R * 5 * ncol, 0.0f), pi(R);
    Vec256 acc((size_t)R2 * nc * 5), sig((size_t)kOneBitBlock / 2 * nc * 5);  // sums per p̂ row; a block's decoded pairs
    int pt[kOneBitBlock / 2];
    std::vector<uint8_t> safe((size_t)2 * ncol);
    const __m256i flip = _mm256_set1_epi8((char)0x80), lo_t = _mm256_set1_epi8(-42), hi_t = _mm256_set1_epi8(42);
    for (int32_t t0 = 0; t0 < seg.n && t0 < n; t0 += kOneBitBlock) {
        const int nt = std::min<int32_t>(kOneBitBlock, seg.n - t0);
        const uint8_t *rows = p + ob_v_block_meta(D);
        const int lim = std::min<int32_t>(nt, n - t0);
        // p̂ per row (zero past lim, so a pair's second token may be absent)
        bool any = false;
        for (int r = 0; r < R; r++) {
            const float *Pr = P + (size_t)r * ld + t0;
            uint8_t *qh = pq.data() + (size_t)2 * r * kPad, *ql = qh + kPad;
            __m256 m = _mm256_setzero_ps();
            int i = 0;
            for (; i + 8 <= lim; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(Pr + i));
            float mx = hmax_avx2(m);
            for (; i < lim; i++) mx = std::max(mx, Pr[i]);
            pi[r] = mx / 255.0f;
            const float inv = mx > 0 ? 255.0f / mx : 0.0f;
            any |= mx > 0;
            const __m256 vi = _mm256_set1_ps(inv), k255 = _mm256_set1_ps(255.0f);
            const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
            for (i = 0; i + 32 <= lim; i += 32) {
                __m256i h[4], l[4];
                for (int j = 0; j < 4; j++) {
                    const __m256 u = _mm256_mul_ps(_mm256_max_ps(_mm256_loadu_ps(Pr + i + 8 * j), _mm256_setzero_ps()), vi);
                    const __m256 fh = _mm256_floor_ps(u);
                    h[j] = _mm256_cvtps_epi32(fh);
                    l[j] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_sub_ps(u, fh), k255));
                }
                const __m256i bh = _mm256_packus_epi16(_mm256_packs_epi32(h[0], h[1]), _mm256_packs_epi32(h[2], h[3]));
                const __m256i bl = _mm256_packus_epi16(_mm256_packs_epi32(l[0], l[1]), _mm256_packs_epi32(l[2], l[3]));
                _mm256_storeu_si256((__m256i *)(qh + i), _mm256_permutevar8x32_epi32(bh, order));
                _mm256_storeu_si256((__m256i *)(ql + i), _mm256_permutevar8x32_epi32(bl, order));
            }
            for (; i < lim; i++) {
                const float u = std::max(Pr[i], 0.0f) * inv, fh = std::min(255.0f, std::floor(u));
                qh[i] = (uint8_t)fh;
                ql[i] = (uint8_t)std::min(255L, std::lrint((u - fh) * 255.0f));
            }
            memset(qh + lim, 0, (size_t)(kPad - lim));
            memset(ql + lim, 0, (size_t)(kPad - lim));
        }
        if (!any) {
            p = rows + (size_t)nt * tb;
            continue;
        }
        // pairs (t, t+1) with a non-zero p̂ in some row: bit 2m of the mask for the pair at i + 2m
        int npairs = 0;
        for (int i = 0; i < lim; i += 32) {
            __m256i o = _mm256_setzero_si256();
            for (int r = 0; r < R2; r++) o = _mm256_or_si256(o, _mm256_loadu_si256((const __m256i *)(pq.data() + (size_t)r * kPad + i)));
            for (uint32_t live = ~(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi16(o, _mm256_setzero_si256())) & 0x55555555u; live; live &= live - 1)
                pt[npairs++] = i + __builtin_ctz(live);
        }
        // the pairs' trits, decoded once for all rows (L1-resident: at most 64 pairs · nc · 5 vectors)
        for (int m = 0; m < npairs; m++) {
            const int t = pt[m];
            const uint8_t *ra = rows + (size_t)t * tb, *rb = rows + (size_t)std::min(t + 1, lim - 1) * tb;
            if (rb + ncol > end) {  // the segment's last rows: copy instead of reading past the buffer
                memset(safe.data(), 0, safe.size());
                memcpy(safe.data(), ra, tb);
                memcpy(safe.data() + ncol, rb, tb);
                ra = safe.data(), rb = safe.data() + ncol;
            }
            for (int j = 0; j < nc; j++) {
                const __m128i xa = _mm_loadu_si128((const __m128i *)(ra + 16 * j)), xb = _mm_loadu_si128((const __m128i *)(rb + 16 * j));
                __m256i z = _mm256_xor_si256(_mm256_inserti128_si256(_mm256_castsi128_si256(_mm_unpacklo_epi8(xa, xb)), _mm_unpackhi_epi8(xa, xb), 1), flip);
                for (int d = 0; d < 5; d++) {
                    if (d) z = _mm256_add_epi8(z, _mm256_add_epi8(z, z));
                    sig[((size_t)m * nc + j) * 5 + d] = _mm256_sub_epi8(_mm256_cmpgt_epi8(lo_t, z), _mm256_cmpgt_epi8(z, hi_t));  // σ
                }
            }
        }
        // per p̂ row, the sums over the pairs in registers
        for (int r = 0; r < R2; r++) {
            __m256i a[nc][5];
            for (int j = 0; j < nc; j++)
                for (int d = 0; d < 5; d++) a[j][d] = _mm256_setzero_si256();
            const uint8_t *qr = pq.data() + (size_t)r * kPad;
            for (int m = 0; m < npairs; m++) {
                uint16_t pp;
                memcpy(&pp, qr + pt[m], 2);
                const __m256i p2 = _mm256_set1_epi16((short)pp);
                const __m256i *sm = sig.data() + (size_t)m * nc * 5;
                for (int j = 0; j < nc; j++)
                    for (int d = 0; d < 5; d++) a[j][d] = _mm256_add_epi16(a[j][d], _mm256_maddubs_epi16(p2, sm[j * 5 + d]));
            }
            for (int j = 0; j < nc; j++)
                for (int d = 0; d < 5; d++) acc[((size_t)r * nc + j) * 5 + d] = a[j][d];
        }
        // γ in trit-major order, then per row: od[i][k] += π·γ·Σ
        halves_avx2(p, D, gam.data());
        for (int d = 0; d < 5; d++)
            for (int k = 0; k < ncol; k++) gd[(size_t)d * ncol + k] = 5 * k + d < D ? gam[5 * k + d] : 0.0f;
        for (int r = 0; r < R; r++) {
            const __m256 vp = _mm256_set1_ps(pi[r]), v255 = _mm256_set1_ps(1.0f / 255.0f);
            for (int j = 0; j < nc; j++)
                for (int d = 0; d < 5; d++) {
                    const __m256i ah = acc[((size_t)2 * r * nc + j) * 5 + d], al = acc[((size_t)(2 * r + 1) * nc + j) * 5 + d];
                    const __m256 lo = _mm256_fmadd_ps(i16_f32(_mm256_castsi256_si128(al)), v255, i16_f32(_mm256_castsi256_si128(ah)));
                    const __m256 hi = _mm256_fmadd_ps(i16_f32(_mm256_extracti128_si256(al, 1)), v255, i16_f32(_mm256_extracti128_si256(ah, 1)));
                    const size_t at = (size_t)d * ncol + 16 * j;
                    float *o = od.data() + (size_t)r * 5 * ncol + at;
                    _mm256_storeu_ps(o, _mm256_fmadd_ps(_mm256_mul_ps(lo, vp), _mm256_loadu_ps(gd.data() + at), _mm256_loadu_ps(o)));
                    _mm256_storeu_ps(o + 8, _mm256_fmadd_ps(_mm256_mul_ps(hi, vp), _mm256_loadu_ps(gd.data() + at + 8), _mm256_loadu_ps(o + 8)));
                }
        }
        p = rows + (size_t)nt * tb;
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < D; c++) out[(size_t)r * D + c] += od[(size_t)r * 5 * ncol + (size_t)(c % 5) * ncol + c / 5];
}

// ---- the table's entries: the integer kernels where the head dim fits them, else the portable ones -------------------

void scores_q8(const QuantSegment &seg, int32_t n, const float *q, int R, float scale, float *S, size_t ld) {
    q8_scores_avx2(seg.k.data(), n, seg.head_dim, q, R, scale, S, ld);
}

void scores_kivi(const QuantSegment &seg, int32_t n, const float *q, int R, float scale, float *S, size_t ld) {
    const int D = seg.head_dim, b = code_bits(seg.format);
    // the integer kernel for up to 8 code chunks per token (D <= 256 at 4 bits, 512 at 2 bits)
    const int nc = (D + 16 * 8 / b - 1) / (16 * 8 / b);
    switch (b * 16 + nc) {
#define KIVI_CASE(B, NC) \
    case B * 16 + NC: return scores_kivi_avx2<B, NC>(seg, n, q, R, scale, S, ld);
        KIVI_CASE(4, 1) KIVI_CASE(4, 2) KIVI_CASE(4, 3) KIVI_CASE(4, 4) KIVI_CASE(4, 5) KIVI_CASE(4, 6) KIVI_CASE(4, 7) KIVI_CASE(4, 8)
        KIVI_CASE(2, 1) KIVI_CASE(2, 2) KIVI_CASE(2, 3) KIVI_CASE(2, 4) KIVI_CASE(2, 5) KIVI_CASE(2, 6) KIVI_CASE(2, 7) KIVI_CASE(2, 8)
#undef KIVI_CASE
        default: return scalar().scores[(int)seg.format](seg, n, q, R, scale, S, ld);  // larger heads
    }
}

void accumulate_kivi(const QuantSegment &seg, int32_t n, const float *P, size_t ld, int R, float *out) {
    const int D = seg.head_dim, b = code_bits(seg.format);
    const size_t tb = kivi_v_token_bytes(D, b);
    if (b == 4) return kivi_accumulate_avx2<4>(seg.v.data(), n, tb, D, P, ld, R, out);
    return kivi_accumulate_avx2<2>(seg.v.data(), n, tb, D, P, ld, R, out);
}

void scores_onebit(const QuantSegment &seg, int32_t n, const float *q, int R, float scale, float *S, size_t ld) {
    if ((int)ob_k_token_bytes(seg.head_dim) <= kOneBitMaxPlanes) return scores_onebit_avx2(seg, n, q, R, scale, S, ld);
    return scalar().scores[(int)Tier::OneBit](seg, n, q, R, scale, S, ld);
}

void accumulate_onebit(const QuantSegment &seg, int32_t n, const float *P, size_t ld, int R, float *out) {
    switch ((ob_v_token_bytes(seg.head_dim) + 15) / 16) {  // the integer kernel for up to 4 chunks of 16 code bytes (D <= 320)
        case 1: return accumulate_onebit_avx2<1>(seg, n, P, ld, R, out);
        case 2: return accumulate_onebit_avx2<2>(seg, n, P, ld, R, out);
        case 3: return accumulate_onebit_avx2<3>(seg, n, P, ld, R, out);
        case 4: return accumulate_onebit_avx2<4>(seg, n, P, ld, R, out);
        default: return scalar().accumulate[(int)Tier::OneBit](seg, n, P, ld, R, out);
    }
}

// q8 values have no AVX2 kernel of their own: the portable one (its x86-64-v3 clone) is as fast.
void accumulate_q8(const QuantSegment &seg, int32_t n, const float *P, size_t ld, int R, float *out) {
    scalar().accumulate[(int)Tier::Q8](seg, n, P, ld, R, out);
}

}  // namespace

extern const Kernels kAvx2;
const Kernels kAvx2 = {
    "avx2",
    avx2::scores_f16, avx2::scores_f16_single, avx2::accumulate_f16, avx2::accumulate_f16_single,
    avx2::max_of, avx2::exp_sum, avx2::scale_round_f16, avx2::to_f16,
    {nullptr, scores_q8, scores_kivi, scores_kivi, scores_onebit},
    {nullptr, accumulate_q8, accumulate_kivi, accumulate_kivi, accumulate_onebit},
};

}  // namespace kernels
}  // namespace repokv
