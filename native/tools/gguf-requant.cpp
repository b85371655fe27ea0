// Test-fixture tool: re-quantizes the 2-D weight matrices of a GGUF with ggml's own quantizers (libggml-base), so the
// engine's tests cover K-quants that the JS fixture writer does not encode.
//
// usage: gguf-requant IN OUT MODE    MODE: Q4_K | Q6_K | Q4_K_M (Q6_K for attn_v, ffn_down and output, Q4_K otherwise)
// Rows whose length is not a multiple of the type's block size are left as they are.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "ggml.h"
#include "gguf.h"

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: gguf-requant IN OUT Q4_K|Q6_K|Q4_K_M\n");
        return 2;
    }
    const std::string mode = argv[3];
    ggml_context *src_ctx = nullptr;
    gguf_init_params p{};
    p.no_alloc = false;
    p.ctx = &src_ctx;
    gguf_context *in = gguf_init_from_file(argv[1], p);
    if (!in) {
        fprintf(stderr, "cannot read %s\n", argv[1]);
        return 1;
    }
    gguf_context *out = gguf_init_empty();
    gguf_set_kv(out, in);
    const int64_t n = gguf_get_n_tensors(in);
    size_t bytes = 0;
    for (int64_t i = 0; i < n; i++) bytes += ggml_nbytes(ggml_get_tensor(src_ctx, gguf_get_tensor_name(in, i))) * 2 + 1024;
    ggml_init_params ip{bytes + ggml_tensor_overhead() * (n + 1), nullptr, false};
    ggml_context *dst_ctx = ggml_init(ip);
    for (int64_t i = 0; i < n; i++) {
        const char *name = gguf_get_tensor_name(in, i);
        ggml_tensor *t = ggml_get_tensor(src_ctx, name);
        const std::string s = name;
        ggml_type type = t->type;
        const bool matrix = ggml_n_dims(t) == 2 && (t->type == GGML_TYPE_F32 || t->type == GGML_TYPE_F16);
        if (matrix) {
            if (mode == "Q4_K") type = GGML_TYPE_Q4_K;
            else if (mode == "Q6_K") type = GGML_TYPE_Q6_K;
            else {
                const bool high = s.find("attn_v") != std::string::npos || s.find("ffn_down") != std::string::npos || s == "output.weight";
                type = high ? GGML_TYPE_Q6_K : GGML_TYPE_Q4_K;
            }
            if (t->ne[0] % ggml_blck_size(type) != 0) type = t->type;
        }
        ggml_tensor *d = ggml_new_tensor(dst_ctx, type, ggml_n_dims(t), t->ne);
        ggml_set_name(d, name);
        if (type == t->type) {
            memcpy(d->data, t->data, ggml_nbytes(t));
        } else {
            std::vector<float> f(ggml_nelements(t));
            if (t->type == GGML_TYPE_F16) ggml_fp16_to_fp32_row((const ggml_fp16_t *)t->data, f.data(), f.size());
            else memcpy(f.data(), t->data, f.size() * 4);
            ggml_quantize_chunk(type, f.data(), d->data, 0, t->ne[1], t->ne[0], nullptr);
        }
        gguf_add_tensor(out, d);
    }
    if (!gguf_write_to_file(out, argv[2], false)) {
        fprintf(stderr, "cannot write %s\n", argv[2]);
        return 1;
    }
    gguf_free(out);
    gguf_free(in);
    ggml_free(dst_ctx);
    ggml_free(src_ctx);
    return 0;
}
