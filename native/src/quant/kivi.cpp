// kivi4 / kivi2 (KIVI): keys per channel in 32-token groups, values per token in 32-channel groups, asymmetric 4- or
// 2-bit codes with fp16 Δ and min. Layout: common.h.
#include "common.h"

namespace repokv {
namespace quant {

namespace {

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

}  // namespace

void quantize_kivi(QuantSegment &s, const float *K, const float *V) {
    quantize_kivi_keys(s.head_dim, code_bits(s.format), s.n, K, s.k.data());
    quantize_kivi_values(s.head_dim, code_bits(s.format), s.n, V, s.v.data());
}

void dequantize_kivi(const QuantSegment &seg, float *K, float *V) {
    const int D = seg.head_dim;
    const int32_t n = seg.n;
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
}

}  // namespace quant
}  // namespace repokv
