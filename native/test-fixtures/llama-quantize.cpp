// Fixture tool: quantizes a GGUF model exactly as llama.cpp's `llama-quantize` does, by calling libllama's own
// llama_model_quantize (node-llama-cpp's build of it). So a Q4_K_M fixture has the tensor types a downloaded
// Q4_K_M file has: Q6_K for the output (or the tied embedding) and for attn_v / ffn_down in llama.cpp's
// "use more bits" layers, Q4_K elsewhere, and the fallbacks (Q5_0, Q5_1, Q8_0) for rows that are not a multiple
// of 256 (Qwen2.5-Coder-0.5B's d_model 896).
//
// usage: llama-quantize IN.gguf OUT.gguf Q8_0|Q4_K_M|Q5_K_M|Q6_K|Q4_K_S|Q5_K_S [THREADS]
// Built on demand by real-shapes.mjs (native/build/llama-quantize).
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "llama.h"

static void quiet(enum ggml_log_level level, const char *text, void *) {
    if (level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: llama-quantize IN OUT Q8_0|Q4_K_M|Q5_K_M|Q6_K|Q4_K_S|Q5_K_S [THREADS]\n");
        return 2;
    }
    struct { const char *name; llama_ftype ftype; } types[] = {
        {"Q8_0", LLAMA_FTYPE_MOSTLY_Q8_0},     {"Q4_K_M", LLAMA_FTYPE_MOSTLY_Q4_K_M}, {"Q5_K_M", LLAMA_FTYPE_MOSTLY_Q5_K_M},
        {"Q6_K", LLAMA_FTYPE_MOSTLY_Q6_K},     {"Q4_K_S", LLAMA_FTYPE_MOSTLY_Q4_K_S}, {"Q5_K_S", LLAMA_FTYPE_MOSTLY_Q5_K_S},
    };
    llama_model_quantize_params params = llama_model_quantize_default_params();
    bool found = false;
    for (auto &t : types) {
        if (!strcmp(argv[3], t.name)) {
            params.ftype = t.ftype;
            found = true;
        }
    }
    if (!found) {
        fprintf(stderr, "unknown type %s\n", argv[3]);
        return 2;
    }
    params.nthread = argc > 4 ? atoi(argv[4]) : 1;
    llama_log_set(quiet, nullptr);
    llama_backend_init();
    const uint32_t rc = llama_model_quantize(argv[1], argv[2], &params);
    llama_backend_free();
    if (rc != 0) {
        fprintf(stderr, "llama_model_quantize failed (%u)\n", rc);
        return 1;
    }
    return 0;
}
