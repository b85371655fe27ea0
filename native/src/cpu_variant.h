// ggml's CPU backend variants: node-llama-cpp ships one shared library per x86-64 instruction-set level
// (libggml-cpu-{x64,sse42,sandybridge,ivybridge,piledriver,haswell,skylakex,cannonlake,cascadelake,icelake,cooperlake,
// zen4,alderlake,sapphirerapids}.so) and ggml loads the one whose ggml_backend_score() is highest on this CPU.
//
// REPOKV_GGML_CPU_VARIANT=<name> forces one (tests run the engine under AVX2-only and AVX-512 variants on the same
// machine; the product leaves it unset and gets the best). Used by the addon (model.cpp's Runtime) and by the parity
// reference tool (tools/llama-ref.cpp), so both compute with the same variant.
#pragma once

#include <string>
#include <vector>

#include "ggml-backend.h"

namespace repokv {

struct CpuVariant {
    std::string name;  // "haswell"
    std::string path;  // bins_dir + "/libggml-cpu-haswell.so"
    int score = 0;     // ggml_backend_score(): 0 = this CPU lacks an instruction set the library needs
};

// The variants in `bins_dir`, each scored on this CPU (dlopen + ggml_backend_score, as ggml itself does), by name.
std::vector<CpuVariant> cpu_variants(const std::string &bins_dir);

// The variant name of a loaded CPU backend registry ("haswell"), from the library its functions live in; "" if
// it is not one of the variant libraries (a static or GPU build).
std::string cpu_variant_of(ggml_backend_reg_t reg);

// The value of REPOKV_GGML_CPU_VARIANT, or "" when unset.
std::string forced_cpu_variant();

// Registers libggml-cpu-<name>.so from `bins_dir` with `load` (the registry library's ggml_backend_load) and returns
// its registry. Throws std::runtime_error naming the problem: an unknown name (listing the shipped ones), or a variant
// this CPU cannot run (listing the ones it can).
ggml_backend_reg_t load_cpu_variant(const std::string &bins_dir, const std::string &name, ggml_backend_reg_t (*load)(const char *));

}  // namespace repokv
