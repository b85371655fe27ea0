// AVX2 + FMA + F16C kernels of fp16 segments and of the softmax (x86-64 only; target attributes per function). They sum
// in the order of the matmul llama.cpp would run, so that policy `full` is bit-identical to it (native/README.md).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "avx2.h"

namespace repokv {
namespace kernels {
namespace avx2 {

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

// The two products reproduce the summation order of ggml's CPU matmul (llamafile's tinyBLAS, which llama.cpp's
// attention uses for f16 K/V): a dot product of length k is 8 lane accumulators, lane l summing the terms l, l+8,
// l+16, ... with fused multiply-adds in order, then the horizontal sum ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7)). With
// the same fp16 roundings this makes policy `full` bit-identical to llama.cpp (flash attention off).

// Horizontal sums of 8 vectors in ggml's order: returns [hsum(A0), ..., hsum(A7)].
__attribute__((target("avx2,fma,f16c"))) inline __m256 hsum8x8(const __m256 *A) {
    // step 1: y_i = a_i + a_{i+4}
    const __m256 y01 = _mm256_add_ps(_mm256_permute2f128_ps(A[0], A[1], 0x20), _mm256_permute2f128_ps(A[0], A[1], 0x31));
    const __m256 y23 = _mm256_add_ps(_mm256_permute2f128_ps(A[2], A[3], 0x20), _mm256_permute2f128_ps(A[2], A[3], 0x31));
    const __m256 y45 = _mm256_add_ps(_mm256_permute2f128_ps(A[4], A[5], 0x20), _mm256_permute2f128_ps(A[4], A[5], 0x31));
    const __m256 y67 = _mm256_add_ps(_mm256_permute2f128_ps(A[6], A[7], 0x20), _mm256_permute2f128_ps(A[6], A[7], 0x31));
    // step 2: z0 = y0 + y2, z1 = y1 + y3
    const __m256 z0123 = _mm256_add_ps(_mm256_shuffle_ps(y01, y23, _MM_SHUFFLE(1, 0, 1, 0)), _mm256_shuffle_ps(y01, y23, _MM_SHUFFLE(3, 2, 3, 2)));
    const __m256 z4567 = _mm256_add_ps(_mm256_shuffle_ps(y45, y67, _MM_SHUFFLE(1, 0, 1, 0)), _mm256_shuffle_ps(y45, y67, _MM_SHUFFLE(3, 2, 3, 2)));
    // step 3: w = z0 + z1 -> lanes [w0, w2, w4, w6 | w1, w3, w5, w7]
    const __m256 w = _mm256_add_ps(_mm256_shuffle_ps(z0123, z4567, _MM_SHUFFLE(2, 0, 2, 0)), _mm256_shuffle_ps(z0123, z4567, _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm256_permutevar8x32_ps(w, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

__attribute__((target("avx2,fma,f16c"))) inline float hsum1(__m256 x) {
    __m128 v = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
    v = _mm_add_ps(v, _mm_movehl_ps(v, v));
    v = _mm_add_ss(v, _mm_movehdup_ps(v));
    return _mm_cvtss_f32(v);
}

// Scores of R query rows (q: R x hd, row-major) against n keys stored token-major (k[t * hd + d]), hd % 8 == 0.
// S[r * ld + j] = scale * q_r . k_j. Writes whole blocks of 8 (callers leave 8 floats of slack per row).
__attribute__((target("avx2,fma,f16c"))) void scores_f16(const uint16_t *k, int32_t n, int hd, const float *q, int R, float scale, float *S, size_t ld) {
    const __m256 vscale = _mm256_set1_ps(scale);
    for (int32_t j0 = 0; j0 < n; j0 += 8) {
        const int jn = std::min<int32_t>(8, n - j0);
        const uint16_t *kb = k + (size_t)j0 * hd;
        for (int r = 0; r < R; r++) {
            const float *qr = q + (size_t)r * hd;
            __m256 acc[8];
            for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_ps();
            if (jn == 8) {
                for (int c = 0; c < hd; c += 8) {
                    const __m256 qv = _mm256_loadu_ps(qr + c);
                    for (int i = 0; i < 8; i++)
                        acc[i] = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(kb + (size_t)i * hd + c))), qv, acc[i]);
                }
            } else {
                for (int c = 0; c < hd; c += 8) {
                    const __m256 qv = _mm256_loadu_ps(qr + c);
                    for (int i = 0; i < jn; i++)
                        acc[i] = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(kb + (size_t)i * hd + c))), qv, acc[i]);
                }
            }
            _mm256_storeu_ps(S + r * ld + j0, _mm256_mul_ps(hsum8x8(acc), vscale));
        }
    }
}

// out[r][d] += sum_j P[r * ld + j] * v_j[d] over n tokens of values stored in transposed blocks of 8 tokens
// (v[(blk * hd + d) * 8 + lane]); R <= 4 rows at a time, hd even. Lanes past n in the last block are zero in the
// store; their P entries are zeroed here (they may belong to another segment).
// Blocks [b0, b1) for RG rows; the accumulators (one 8-lane vector per row and channel) live in acc_mem between
// calls, so the caller can walk the values in chunks that stay in L1 while every row group uses them.
template <int RG>
__attribute__((target("avx2,fma,f16c"))) void accumulate_f16_chunk(const uint16_t *v, int32_t b0, int32_t b1, int hd, const float *const *Pr, float *acc_mem) {
    for (int d = 0; d < hd; d += 2) {
        __m256 acc[RG][2];
        for (int r = 0; r < RG; r++) {
            acc[r][0] = _mm256_load_ps(acc_mem + ((size_t)r * hd + d) * 8);
            acc[r][1] = _mm256_load_ps(acc_mem + ((size_t)r * hd + d + 1) * 8);
        }
        const uint16_t *vd = v + ((size_t)b0 * hd + d) * 8;
        for (int32_t b = b0; b < b1; b++, vd += (size_t)hd * 8) {
            const __m256 v0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)vd));
            const __m256 v1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(vd + 8)));
            for (int r = 0; r < RG; r++) {
                const __m256 p = _mm256_loadu_ps(Pr[r] + (size_t)b * 8);
                acc[r][0] = _mm256_fmadd_ps(v0, p, acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(v1, p, acc[r][1]);
            }
        }
        for (int r = 0; r < RG; r++) {
            _mm256_store_ps(acc_mem + ((size_t)r * hd + d) * 8, acc[r][0]);
            _mm256_store_ps(acc_mem + ((size_t)r * hd + d + 1) * 8, acc[r][1]);
        }
    }
}

// out[r][d] += sum_j P[r * ld + j] * v_j[d] over n tokens of values stored in transposed blocks of 8 tokens
// (v[(blk * hd + d) * 8 + lane]), R <= 8 rows, hd even. The lanes past n in the last block are zero in the store;
// their probabilities are zeroed here (they may belong to another segment).
__attribute__((target("avx2,fma,f16c"))) void accumulate_f16(const uint16_t *v, int32_t n, int hd, const float *P, size_t ld, int R, float *out) {
    const int32_t nblk = (n + 7) / 8;
    const int tail = n % 8;
    thread_local std::vector<float> ptail, acc_store;
    const float *rows[8];
    if (tail) {
        // rows whose last block is partial: a copy of that block with zeros past n
        ptail.assign((size_t)R * 8, 0.0f);
        for (int r = 0; r < R; r++) memcpy(ptail.data() + r * 8, P + r * ld + (size_t)(nblk - 1) * 8, tail * sizeof(float));
    }
    for (int r = 0; r < R; r++) rows[r] = P + r * ld;
    acc_store.assign((size_t)R * hd * 8 + 8, 0.0f);
    float *acc_mem = (float *)(((uintptr_t)acc_store.data() + 31) & ~(uintptr_t)31);
    const int32_t full = tail ? nblk - 1 : nblk;
    constexpr int32_t CH = 32;  // 32 blocks of 8 tokens: 32 KB of values at head dim 128
    auto run = [&](int32_t b0, int32_t b1, const float *const *rp) {
        for (int r0 = 0; r0 < R; r0 += 4) {
            float *am = acc_mem + (size_t)r0 * hd * 8;
            switch (std::min(4, R - r0)) {
                case 1: accumulate_f16_chunk<1>(v, b0, b1, hd, rp + r0, am); break;
                case 2: accumulate_f16_chunk<2>(v, b0, b1, hd, rp + r0, am); break;
                case 3: accumulate_f16_chunk<3>(v, b0, b1, hd, rp + r0, am); break;
                case 4: accumulate_f16_chunk<4>(v, b0, b1, hd, rp + r0, am); break;
            }
        }
    };
    for (int32_t b0 = 0; b0 < full; b0 += CH) run(b0, std::min(full, b0 + CH), rows);
    if (tail) {
        // the partial block: pointers such that row r's block nblk-1 reads its zero-padded copy
        const float *trows[8];
        for (int r = 0; r < R; r++) trows[r] = ptail.data() + r * 8 - (size_t)(nblk - 1) * 8;
        run(nblk - 1, nblk, trows);
    }
    for (int r = 0; r < R; r++)
        for (int d = 0; d < hd; d++) out[r * hd + d] += hsum1(_mm256_load_ps(acc_mem + ((size_t)r * hd + d) * 8));
}

// Single-token batches: llama.cpp's matmul then uses ggml_vec_dot_f16 (tinyBLAS is for prompt batches only), which
// sums with 4 accumulators of 8 lanes over steps of 32 elements, reduces them (x0+x2, x1+x3, x0+x1), then
// ((t0+t1)+(t2+t3)) with t_i = x_i + x_{i+4}; elements past the last whole step are added in double.
__attribute__((target("avx2,fma,f16c"))) inline double reduce_vecdot(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
    __m256 x0 = _mm256_add_ps(a0, a2);
    const __m256 x1 = _mm256_add_ps(a1, a3);
    x0 = _mm256_add_ps(x0, x1);
    const __m128 t0 = _mm_add_ps(_mm256_castps256_ps128(x0), _mm256_extractf128_ps(x0, 1));
    const __m128 t1 = _mm_hadd_ps(t0, t0);
    return (double)_mm_cvtss_f32(_mm_hadd_ps(t1, t1));
}

// The reduction above for 8 vectors at once (x_k = (a0+a2)+(a1+a3) already formed): [r(x_0), ..., r(x_7)].
__attribute__((target("avx2,fma,f16c"))) inline __m256 reduce_vecdot8(const __m256 *X) {
    // t_i = x_i + x_{i+4}, pairs of vectors per 256-bit register
    const __m256 t01 = _mm256_add_ps(_mm256_permute2f128_ps(X[0], X[1], 0x20), _mm256_permute2f128_ps(X[0], X[1], 0x31));
    const __m256 t23 = _mm256_add_ps(_mm256_permute2f128_ps(X[2], X[3], 0x20), _mm256_permute2f128_ps(X[2], X[3], 0x31));
    const __m256 t45 = _mm256_add_ps(_mm256_permute2f128_ps(X[4], X[5], 0x20), _mm256_permute2f128_ps(X[4], X[5], 0x31));
    const __m256 t67 = _mm256_add_ps(_mm256_permute2f128_ps(X[6], X[7], 0x20), _mm256_permute2f128_ps(X[6], X[7], 0x31));
    // u = (t0+t1), (t2+t3): lanes [u^0_0, u^0_1, u^2_0, u^2_1 | u^1_0, u^1_1, u^3_0, u^3_1]
    const __m256 u0123 = _mm256_hadd_ps(t01, t23);
    const __m256 u4567 = _mm256_hadd_ps(t45, t67);
    // w = u_0 + u_1: lanes [w0, w2, w4, w6 | w1, w3, w5, w7]
    const __m256 w = _mm256_hadd_ps(u0123, u4567);
    return _mm256_permutevar8x32_ps(w, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

__attribute__((target("avx2,fma,f16c"))) void scores_f16_single(const uint16_t *k, int32_t n, int hd, const float *q, int R, float scale, float *S, size_t ld) {
    const int np = hd & ~31;
    const __m256 vscale = _mm256_set1_ps(scale);
    for (int32_t j0 = 0; j0 < n; j0 += 8) {
        const int jn = std::min<int32_t>(8, n - j0);
        for (int r = 0; r < R; r++) {
            const float *qr = q + (size_t)r * hd;
            __m256 X[8];
            for (int i = 0; i < 8; i++) X[i] = _mm256_setzero_ps();
            for (int i = 0; i < jn; i++) {
                const uint16_t *kj = k + (size_t)(j0 + i) * hd;
                __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
                for (int c = 0; c < np; c += 32) {
                    a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(kj + c))), _mm256_loadu_ps(qr + c), a0);
                    a1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(kj + c + 8))), _mm256_loadu_ps(qr + c + 8), a1);
                    a2 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(kj + c + 16))), _mm256_loadu_ps(qr + c + 16), a2);
                    a3 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(kj + c + 24))), _mm256_loadu_ps(qr + c + 24), a3);
                }
                X[i] = _mm256_add_ps(_mm256_add_ps(a0, a2), _mm256_add_ps(a1, a3));
            }
            __m256 sums = reduce_vecdot8(X);
            if (np != hd) {
                // elements past the last whole step of 32 are added in double (as ggml does)
                alignas(32) float tmp[8];
                _mm256_store_ps(tmp, sums);
                for (int i = 0; i < jn; i++) {
                    const uint16_t *kj = k + (size_t)(j0 + i) * hd;
                    double sum = tmp[i];
                    for (int c = np; c < hd; c++) sum += (double)(_cvtsh_ss(kj[c]) * qr[c]);
                    tmp[i] = (float)sum;
                }
                sums = _mm256_load_ps(tmp);
            }
            _mm256_storeu_ps(S + r * ld + j0, _mm256_mul_ps(sums, vscale));
        }
    }
}

template <int RG>
__attribute__((target("avx2,fma,f16c"))) void accumulate_f16_vecdot_rows(const uint16_t *v, int32_t nblk, int hd, const float *const *Pr, float *out) {
    // one value channel d at a time for RG rows; accumulator a of ggml's 4 takes the blocks b with b % 4 == a
    for (int d = 0; d < hd; d++) {
        __m256 acc[RG][4];
        for (int r = 0; r < RG; r++) acc[r][0] = acc[r][1] = acc[r][2] = acc[r][3] = _mm256_setzero_ps();
        const uint16_t *vd = v + (size_t)d * 8;
        const size_t bstride = (size_t)hd * 8;
        int32_t b = 0;
        for (; b + 3 < nblk; b += 4) {
            const __m256 v0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(vd + (b + 0) * bstride)));
            const __m256 v1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(vd + (b + 1) * bstride)));
            const __m256 v2 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(vd + (b + 2) * bstride)));
            const __m256 v3 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(vd + (b + 3) * bstride)));
            for (int r = 0; r < RG; r++) {
                const float *p = Pr[r] + (size_t)b * 8;
                acc[r][0] = _mm256_fmadd_ps(v0, _mm256_loadu_ps(p), acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(v1, _mm256_loadu_ps(p + 8), acc[r][1]);
                acc[r][2] = _mm256_fmadd_ps(v2, _mm256_loadu_ps(p + 16), acc[r][2]);
                acc[r][3] = _mm256_fmadd_ps(v3, _mm256_loadu_ps(p + 24), acc[r][3]);
            }
        }
        for (int a = 0; b < nblk; b++, a++) {
            const __m256 vv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(vd + b * bstride)));
            for (int r = 0; r < RG; r++) {
                const __m256 p = _mm256_loadu_ps(Pr[r] + (size_t)b * 8);
                switch (a) {
                    case 0: acc[r][0] = _mm256_fmadd_ps(vv, p, acc[r][0]); break;
                    case 1: acc[r][1] = _mm256_fmadd_ps(vv, p, acc[r][1]); break;
                    default: acc[r][2] = _mm256_fmadd_ps(vv, p, acc[r][2]); break;
                }
            }
        }
        for (int r = 0; r < RG; r++) out[r * hd + d] += (float)reduce_vecdot(acc[r][0], acc[r][1], acc[r][2], acc[r][3]);
    }
}

__attribute__((target("avx2,fma,f16c"))) void accumulate_f16_single(const uint16_t *v, int32_t n, int hd, const float *P, size_t ld, int R, float *out) {
    // llama.cpp's KV row is padded to a multiple of 256 cells with zero probabilities: every step is whole.
    // Probabilities of the lanes past n in the last block are zeroed (they may belong to another segment).
    const int32_t nblk = (n + 7) / 8;
    const int tail = n % 8;
    thread_local std::vector<float> pz;
    const float *rows[8];
    if (tail) {
        pz.assign((size_t)R * nblk * 8, 0.0f);
        for (int r = 0; r < R; r++) {
            memcpy(pz.data() + (size_t)r * nblk * 8, P + r * ld, (size_t)n * sizeof(float));
            rows[r] = pz.data() + (size_t)r * nblk * 8;
        }
    } else {
        for (int r = 0; r < R; r++) rows[r] = P + r * ld;
    }
    for (int r0 = 0; r0 < R; r0 += 3) {
        switch (std::min(3, R - r0)) {
            case 1: accumulate_f16_vecdot_rows<1>(v, nblk, hd, rows + r0, out + r0 * hd); break;
            case 2: accumulate_f16_vecdot_rows<2>(v, nblk, hd, rows + r0, out + r0 * hd); break;
            case 3: accumulate_f16_vecdot_rows<3>(v, nblk, hd, rows + r0, out + r0 * hd); break;
        }
    }
}

// exp(x - max) over n floats in place, returns the sum (double, like ggml)
__attribute__((target("avx2,fma,f16c"))) double exp_sum(float *x, int32_t n, float max) {
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

__attribute__((target("avx2,fma,f16c"))) float max_of(const float *x, int32_t n) {
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

// x[i] = fp16-rounded(x[i] * mul)
__attribute__((target("avx2,fma,f16c"))) void scale_round_f16(float *x, size_t n, float mul) {
    size_t i = 0;
    const __m256 m = _mm256_set1_ps(mul);
    for (; i + 7 < n; i += 8)
        _mm256_storeu_ps(x + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_mul_ps(_mm256_loadu_ps(x + i), m), _MM_FROUND_TO_NEAREST_INT)));
    for (; i < n; i++) x[i] = _cvtsh_ss(_cvtss_sh(x[i] * mul, _MM_FROUND_TO_NEAREST_INT));
}

__attribute__((target("avx2,fma,f16c"))) void to_f16(const float *src, uint16_t *dst, int n, int stride) {
    int i = 0;
    if (stride == 1) {
        for (; i + 7 < n; i += 8)
            _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    }
    for (; i < n; i++) dst[(size_t)i * stride] = _cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT);
}


}  // namespace avx2
}  // namespace kernels
}  // namespace repokv
