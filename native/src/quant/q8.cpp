// q8: per token, blocks of 32 channels: int8 codes and an fp16 scale (symmetric, like ggml's q8_0). Layout: common.h.
#include "common.h"

namespace repokv {
namespace quant {

namespace {

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

}  // namespace

void quantize_q8(QuantSegment &s, const float *K, const float *V) {
    quantize_q8_rows(s.head_dim, s.n, K, s.k.data());
    quantize_q8_rows(s.head_dim, s.n, V, s.v.data());
}

void dequantize_q8(const QuantSegment &seg, float *K, float *V) {
    const int D = seg.head_dim;
    const int32_t n = seg.n;
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
}

}  // namespace quant
}  // namespace repokv
