// Attention kernels, one table per instruction set, chosen once at run time from the CPU's features (the layout of
// ggml-cpu: a portable implementation that is always built, and SIMD ones in files of their own that only the matching
// target compiles, with their instructions enabled per function by target attributes).
//
//   scalar.cpp      portable C++, every target; on x86-64 the packed kernels are also cloned for x86-64-v3 by the
//                   compiler (target_clones) and picked by the loader
//   x86/avx2_*.cpp  AVX2 + FMA + F16C (x86-64 only)
//   arm/neon.cpp    NEON (AArch64 only): fp16 segments, softmax, q8 scores; checked under qemu, not yet measured
//
// REPOKV_NATIVE_SCALAR=1 forces the portable table (the engine's path on CPUs without AVX2; the CPU-variant tests set
// it under ggml variants without AVX2). test/native/kernels.test.mjs checks every table against the portable one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "../quant/quant.h"
#include "../storage_format.h"

namespace repokv {
namespace kernels {

// Packed segments (quant/): scores S[r * ld + j] = scale · q_r · k̂_j of R rows against the first n tokens;
// accumulate out[r * D + c] += Σ_j P[r * ld + j] · v̂_j[c].
using PackedScores = void (*)(const quant::QuantSegment &seg, int32_t n, const float *q, int R, float scale, float *S, size_t ld);
using PackedAccumulate = void (*)(const quant::QuantSegment &seg, int32_t n, const float *P, size_t ld, int R, float *out);
// fp16 segments (kv_store.h's layout: keys token-major, values in transposed 8-token blocks), in the summation order
// of the matmul llama.cpp would run (attention.cpp). Score kernels may write up to 7 floats past n in each row (they
// store whole 8-token groups; attention's rows have that slack); R <= 8.
using F16Scores = void (*)(const uint16_t *k, int32_t n, int hd, const float *q, int R, float scale, float *S, size_t ld);
using F16Accumulate = void (*)(const uint16_t *v, int32_t n, int hd, const float *P, size_t ld, int R, float *out);

struct Kernels {
    const char *name;  // "scalar", "avx2", "neon"
    // fp16: prompt batches (tinyBLAS's order) and single tokens (ggml_vec_dot_f16's order)
    F16Scores f16_scores, f16_scores_single;
    F16Accumulate f16_accumulate, f16_accumulate_single;
    // softmax: the maximum of n floats; x ← exp(x − max) in place, returning Σ (double, like ggml); x ← fp16(x · mul)
    float (*max)(const float *x, int32_t n);
    double (*exp_sum)(float *x, int32_t n, float max);
    void (*scale_round_f16)(float *x, size_t n, float mul);
    // dst[i * stride] = fp16(src[i])
    void (*to_f16)(const float *src, uint16_t *dst, int n, int stride);
    // packed formats, by Tier (the F16 entries are null: fp16 segments use the kernels above)
    PackedScores scores[kTierCount];
    PackedAccumulate accumulate[kTierCount];
};

// The portable table (always built).
const Kernels &scalar();
// The tables this build has and this CPU runs, portable first, best last.
std::vector<const Kernels *> available();
// What the engine uses: the best available, or the portable one under REPOKV_NATIVE_SCALAR=1. Chosen once.
const Kernels &active();

}  // namespace kernels
}  // namespace repokv
