#include <cstdlib>

#include "kernels.h"

namespace repokv {
namespace kernels {

extern const Kernels kScalar;  // scalar.cpp
#if defined(__x86_64__)
extern const Kernels kAvx2;  // x86/avx2_packed.cpp
#endif
#if defined(__aarch64__)
extern const Kernels kNeon;  // arm/neon.cpp
#endif

const Kernels &scalar() { return kScalar; }

std::vector<const Kernels *> available() {
    std::vector<const Kernels *> out{&kScalar};
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) out.push_back(&kAvx2);
#endif
#if defined(__aarch64__)
    out.push_back(&kNeon);  // NEON is part of AArch64's base instruction set
#endif
    return out;
}

const Kernels &active() {
    static const Kernels &chosen = getenv("REPOKV_NATIVE_SCALAR") ? kScalar : *available().back();
    return chosen;
}

}  // namespace kernels
}  // namespace repokv
