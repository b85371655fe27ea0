// The fp16 and softmax kernels of the AVX2 table (avx2_f16.cpp), for avx2_packed.cpp's table. x86-64 only.
#pragma once

#include <cstddef>
#include <cstdint>

namespace repokv {
namespace kernels {
namespace avx2 {

void scores_f16(const uint16_t *k, int32_t n, int hd, const float *q, int R, float scale, float *S, size_t ld);
void scores_f16_single(const uint16_t *k, int32_t n, int hd, const float *q, int R, float scale, float *S, size_t ld);
void accumulate_f16(const uint16_t *v, int32_t n, int hd, const float *P, size_t ld, int R, float *out);
void accumulate_f16_single(const uint16_t *v, int32_t n, int hd, const float *P, size_t ld, int R, float *out);
float max_of(const float *x, int32_t n);
double exp_sum(float *x, int32_t n, float max);
void scale_round_f16(float *x, size_t n, float mul);
void to_f16(const float *src, uint16_t *dst, int n, int stride);

}  // namespace avx2
}  // namespace kernels
}  // namespace repokv
