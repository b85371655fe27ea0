// Every kernel table this build and CPU have (native/src/kernels/kernels.h) against the portable one, on random inputs,
// without Node or ggml: cross-compiled for arm64 and run under qemu-aarch64 by native/tools/cross-compile-arm64.mjs (the
// NEON table cannot run in test/native on an x64 machine). On x64 test/native/kernels.test.mjs checks the same with
// the SIMD kernels' exact error bounds; here packed AVX2 kernels (int8 query rounding) get a loose relative tolerance.
//
// Build: g++ -std=c++17 -O2 -I<ggml include> -Inative/src native/tools/kernel-check.cpp native/src/storage_format.cpp
//        native/src/quant/*.cpp native/src/kernels/{dispatch,scalar}.cpp native/src/kernels/<arch>/*.cpp
// Exit status 1 when a table disagrees.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "ggml.h"
#include "kernels/kernels.h"
#include "quant/quant.h"

// ggml's fp16 conversions (libggml-base is not linked here): IEEE half, round to nearest even
#if defined(__aarch64__)
typedef __fp16 half_t;
#else
typedef _Float16 half_t;
#endif
extern "C" {
ggml_fp16_t ggml_fp32_to_fp16(float x) {
    const half_t h = (half_t)x;
    uint16_t u;
    memcpy(&u, &h, 2);
    return u;
}
float ggml_fp16_to_fp32(ggml_fp16_t u) {
    half_t h;
    memcpy(&h, &u, 2);
    return (float)h;
}
}

using namespace repokv;

namespace {

std::mt19937 rng(17);
float gauss() { return std::normal_distribution<float>(0.0f, 1.0f)(rng); }
std::vector<float> randn(size_t n) {
    std::vector<float> v(n);
    for (float &x : v) x = gauss();
    return v;
}
float max_abs(const std::vector<float> &x) {
    float m = 0;
    for (float v : x) m = std::max(m, std::fabs(v));
    return m;
}

int failures = 0, checks = 0;
void expect_close(const std::string &what, const std::vector<float> &ref, const std::vector<float> &got, float rel) {
    checks++;
    const float tol = rel * max_abs(ref) + 1e-30f;
    for (size_t i = 0; i < ref.size(); i++)
        if (!(std::fabs(ref[i] - got[i]) <= tol)) {
            if (failures++ < 20) printf("FAIL %s: [%zu] %g vs %g (tolerance %g)\n", what.c_str(), i, ref[i], got[i], tol);
            return;
        }
}

// fp16 K (token-major) and V (transposed 8-token blocks) of n tokens, as kv_store.h lays them out
void f16_layout(const std::vector<float> &X, int n, int D, std::vector<uint16_t> &k, std::vector<uint16_t> &v) {
    k.assign((size_t)n * D, 0);
    v.assign((size_t)((n + 7) / 8) * D * 8, 0);
    for (int t = 0; t < n; t++)
        for (int d = 0; d < D; d++) {
            k[(size_t)t * D + d] = ggml_fp32_to_fp16(X[(size_t)t * D + d]);
            v[((size_t)(t / 8) * D + d) * 8 + t % 8] = ggml_fp32_to_fp16(X[(size_t)t * D + d]);
        }
}

void check_table(const kernels::Kernels &K) {
    const kernels::Kernels &S = kernels::scalar();
    const std::string name = K.name;
    for (int D : {32, 64, 128})
        for (int n : {1, 13, 200})
            for (int R : {1, 3, 8}) {
                const std::vector<float> X = randn((size_t)n * D), q = randn((size_t)R * D);
                std::vector<float> P((size_t)R * (n + 8));
                for (float &p : P) p = std::uniform_real_distribution<float>(0, 1.0f / n)(rng);
                std::vector<uint16_t> k, v;
                f16_layout(X, n, D, k, v);
                const size_t ld = (size_t)n + 8;
                for (int single = 0; single < 2; single++) {
                    std::vector<float> s0(ld * R), s1(ld * R), o0((size_t)R * D), o1((size_t)R * D);
                    (single ? S.f16_scores_single : S.f16_scores)(k.data(), n, D, q.data(), R, 0.125f, s0.data(), ld);
                    (single ? K.f16_scores_single : K.f16_scores)(k.data(), n, D, q.data(), R, 0.125f, s1.data(), ld);
                    std::vector<float> a, b;
                    for (int r = 0; r < R; r++)
                        for (int j = 0; j < n; j++) a.push_back(s0[r * ld + j]), b.push_back(s1[r * ld + j]);
                    const std::string shape = " D=" + std::to_string(D) + " n=" + std::to_string(n) + " R=" + std::to_string(R) + (single ? " single" : "");
                    expect_close(name + " f16 scores" + shape, a, b, 1e-5f);
                    (single ? S.f16_accumulate_single : S.f16_accumulate)(v.data(), n, D, P.data(), ld, R, o0.data());
                    (single ? K.f16_accumulate_single : K.f16_accumulate)(v.data(), n, D, P.data(), ld, R, o1.data());
                    expect_close(name + " f16 values" + shape, o0, o1, 1e-5f);
                }
            }
    for (int n : {1, 7, 8, 29, 1000}) {
        std::vector<float> x = randn(n);
        for (float &v : x) v *= 4;
        checks++;
        if (S.max(x.data(), n) != K.max(x.data(), n)) failures++, printf("FAIL %s max n=%d\n", name.c_str(), n);
        std::vector<float> e0 = x, e1 = x, r0 = x, r1 = x;
        const float mx = S.max(x.data(), n);
        const double a = S.exp_sum(e0.data(), n, mx), b = K.exp_sum(e1.data(), n, mx);
        checks++;
        if (std::fabs(a - b) > 1e-6 * a) failures++, printf("FAIL %s exp sum n=%d: %g vs %g\n", name.c_str(), n, a, b);
        expect_close(name + " exp n=" + std::to_string(n), e0, e1, 1e-6f);
        S.scale_round_f16(r0.data(), n, 0.37f);
        K.scale_round_f16(r1.data(), n, 0.37f);
        expect_close(name + " fp16 rounding n=" + std::to_string(n), r0, r1, 0.0f);
        std::vector<uint16_t> h0((size_t)n * 2), h1((size_t)n * 2);
        for (int stride : {1, 2}) {
            S.to_f16(x.data(), h0.data(), n, stride);
            K.to_f16(x.data(), h1.data(), n, stride);
            checks++;
            if (h0 != h1) failures++, printf("FAIL %s fp16 conversion n=%d stride=%d\n", name.c_str(), n, stride);
        }
    }
    // packed formats; AVX2's integer kernels round the query side to int8 levels (test/native/kernels.test.mjs bounds them)
    const float packed_rel = name == "avx2" ? 5e-3f : 1e-5f;
    for (Tier f : {Tier::Q8, Tier::Kivi4, Tier::Kivi2, Tier::OneBit})
        for (int D : {64, 128})
            for (int n : {1, 45, 300})
                for (int R : {1, 3, 9}) {
                    const std::vector<float> Kx = randn((size_t)n * D), Vx = randn((size_t)n * D), q = randn((size_t)R * D);
                    std::vector<float> P((size_t)R * n);
                    for (float &p : P) p = std::uniform_real_distribution<float>(0, 1)(rng);
                    const quant::QuantSegment seg = quant::quantize(f, D, n, Kx.data(), Vx.data());
                    std::vector<float> s0((size_t)R * n), s1((size_t)R * n), o0((size_t)R * D), o1((size_t)R * D);
                    S.scores[(int)f](seg, n, q.data(), R, 0.125f, s0.data(), n);
                    K.scores[(int)f](seg, n, q.data(), R, 0.125f, s1.data(), n);
                    S.accumulate[(int)f](seg, n, P.data(), n, R, o0.data());
                    K.accumulate[(int)f](seg, n, P.data(), n, R, o1.data());
                    const std::string shape = std::string(" ") + tier_name(f) + " D=" + std::to_string(D) + " n=" + std::to_string(n) + " R=" + std::to_string(R);
                    expect_close(name + " scores" + shape, s0, s1, packed_rel);
                    expect_close(name + " values" + shape, o0, o1, packed_rel);
                }
}

}  // namespace

int main() {
    std::string names;
    for (const kernels::Kernels *k : kernels::available()) names += std::string(names.empty() ? "" : ", ") + k->name;
    for (const kernels::Kernels *k : kernels::available())
        if (k != &kernels::scalar()) check_table(*k);
    printf("kernel-check: tables %s; %d comparisons against the portable table, %d failed\n", names.c_str(), checks, failures);
    return failures ? 1 : 0;
}
