#include <cstdlib>

#include "kernels.h"

namespace repokv {
namespace kernels {

extern const Kernels kScalar;  // scalar.cpp
#if defined(__x86_64__)
extern const Kernels kAvx2;  // x86/avx2_packed.cpp
#endif

const Kernels &scalar() { return kScalar; }

std::vector<const Kernels *> available() {
    std::vector<const Kernels *> out{&kScalar};
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) out.push_back(&kAvx2);
#endif
    return out;
}

const Kernels &active() {
    static const Kernels &chosen = getenv("REPOKV_NATIVE_SCALAR") ? kScalar : *available().back();
    return chosen;
}

}  // namespace kernels
}  // namespace repokv
