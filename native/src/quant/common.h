// Shared by the packed formats (q8.cpp, kivi.cpp, onebit.cpp, formats.cpp) and their kernels (../kernels/): fp16
// helpers, the byte layouts, the asymmetric b-bit quantizer of one group and the onebit channel helpers.
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
//           V: blocks of 128 tokens: [fp16 γ x D], then per token ceil(D/5) bytes, 5 trits per byte (channel c in
//             byte c/5, trit t_{c%5} ∈ {0,1,2} meaning t−1; the byte is ⌈256·Σ_i t_i 3^(4−i) / 243⌉, TQ1_0's encoding,
//             see trit_byte), x̂ = γ_c·(t−1).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "ggml.h"
#include "layout.h"
#include "quant.h"

namespace repokv {
namespace quant {

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

inline int code_bits(Format f) { return f == Format::Kivi4 ? 4 : 2; }

// byte accounting and block offsets: layout.h (shared with the CUDA kernels)

// ---- onebit channels (onebit.cpp) -----------------------------------------------------------------------------------

// outl: the D/4 outlier channels of a onebit segment's mask, ascending; norm: the other 3D/4
void split_channels(const uint8_t *mask, int D, int *outl, int *norm);
// onebit segment metadata: D/8 bytes of outlier mask, then a flags byte (bit 0: the normal channels are rotated)
inline bool ob_rotated(const uint8_t *meta, int D) { return meta[D / 8] & 1; }
// the (rotated, if rot) normal channels of x
void rotate_normals(const int *norm, int D, bool rot, const float *x, float *y);

// The query side of onebit keys, per row: the outlier channels' components (qo, Do per row) and the normal channels
// rotated like the keys (qn, Dn per row): rotating q once replaces un-rotating every key.
struct OneBitQuery {
    std::vector<float> qo, qn;
};
OneBitQuery onebit_query(const QuantSegment &seg, const float *q, int R);

// Ternary bytes, 5 trits each, encoded as in ggml's TQ1_0 so that SIMD code can decode them with byte arithmetic:
// the trits t_0..t_4 ∈ {0, 1, 2} of channels 5k..5k+4 form v = Σ_i t_i·3^(4−i) ∈ [0, 242], stored as q = ⌈v·256/243⌉;
// then t_i = ⌊3·y_i / 256⌋ with y_i = q·3^i mod 256 (exact for every v, checked by the tests through dequantize).
inline uint8_t trit_byte(int v) { return (uint8_t)((v * 256 + 242) / 243); }
// decoding table: byte -> 5 trits (as −1, 0, +1), by the rule above (also for the 13 byte values no v produces)
struct TritTable {
    int8_t t[256][5];
    TritTable() {
        for (int b = 0; b < 256; b++)
            for (int i = 0; i < 5; i++) t[b][i] = (int8_t)ob_trit((uint8_t)b, i);  // layout.h: shared with the CUDA kernels
    }
};
extern const TritTable g_trits;
// the same as floats, 8 per byte (5 used), so a token row decodes with one 8-float copy per byte
struct TritTableF {
    alignas(32) float t[256][8];
    TritTableF() {
        for (int b = 0; b < 256; b++)
            for (int i = 0; i < 8; i++) t[b][i] = i < 5 ? (float)g_trits.t[b][i] : 0.0f;
    }
};
extern const TritTableF g_tritsf;

// ---- asymmetric b-bit quantization of one group ----------------------------------------------------------------------

// Δ and min (fp16-rounded) of values x[i * stride], i < n.
inline void asym_params(const float *x, int n, size_t stride, int b, float &delta, float &mn) {
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

inline void put_code(uint8_t *row, int c, int b, int code) { row[c * b / 8] |= (uint8_t)(code << ((c * b) % 8)); }

// ---- the formats: quantizer and reference dequantizer of each (q8.cpp, kivi.cpp, onebit.cpp) -------------------------

// s: format, head dim, n set and buffers allocated (zeroed) to format_bytes; fill them from K, V (n x D, token-major).
void quantize_q8(QuantSegment &s, const float *K, const float *V);
void quantize_kivi(QuantSegment &s, const float *K, const float *V);
void quantize_onebit(QuantSegment &s, const float *K, const float *V, const uint8_t *onebit_meta);
void dequantize_q8(const QuantSegment &s, float *K, float *V);
void dequantize_kivi(const QuantSegment &s, float *K, float *V);
void dequantize_onebit(const QuantSegment &s, float *K, float *V);

}  // namespace quant
}  // namespace repokv
