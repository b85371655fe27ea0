// Parity reference: llama.cpp (node-llama-cpp's own libllama) raw logits for a token prompt, then greedy tokens.
//
// usage: llama-ref MODEL TOKENS_IN OUT [--ctx N] [--threads T] [--greedy G] [--batch B] [--fa]
//   TOKENS_IN: int32 little-endian token ids. OUT: int32 n_vocab, n_prompt, n_greedy; float logits[n_prompt][n_vocab]
//   (row i = prediction after prompt token i); int32 greedy[n_greedy]; float greedy_logits[n_greedy][n_vocab]
//   (row j = the distribution greedy[j] was chosen from, so row 0 equals the last prompt row).
// K/V cache f16, flash attention off unless --fa (the default node-llama-cpp configuration).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <dlfcn.h>

#include <string>

#include "ggml-backend.h"
#include "llama.h"

#include "../src/cpu_variant.h"

static void quiet(enum ggml_log_level level, const char *text, void *) {
    if (level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: llama-ref MODEL TOKENS_IN OUT [--ctx N] [--threads T] [--greedy G] [--batch B] [--fa]\n");
        return 2;
    }
    int n_ctx = 4096, threads = 1, n_greedy = 0, n_batch = 512;
    bool fa = false;
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "--ctx") && i + 1 < argc) n_ctx = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--greedy") && i + 1 < argc) n_greedy = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) n_batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--fa")) fa = true;
    }
    FILE *f = fopen(argv[2], "rb");
    if (!f) { perror("tokens"); return 1; }
    std::vector<llama_token> prompt;
    int32_t t;
    while (fread(&t, 4, 1, f) == 1) prompt.push_back(t);
    fclose(f);
    if (prompt.empty()) { fprintf(stderr, "empty prompt\n"); return 1; }

    llama_log_set(quiet, nullptr);
    llama_backend_init();
    {
        // load the CPU backend from the folder libllama lives in (node-llama-cpp's bins): the variant named by
        // REPOKV_GGML_CPU_VARIANT, as the addon does (src/cpu_variant.h), else the best one for this CPU
        Dl_info info{};
        if (!ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU) && dladdr((void *)&llama_backend_init, &info) && info.dli_fname) {
            std::string dir = info.dli_fname;
            dir = dir.substr(0, dir.rfind('/'));
            const std::string forced = repokv::forced_cpu_variant();
            if (!forced.empty()) {
                try {
                    repokv::load_cpu_variant(dir, forced, ggml_backend_load);
                } catch (const std::exception &e) {
                    fprintf(stderr, "llama-ref: %s\n", e.what());
                    return 1;
                }
            } else {
                ggml_backend_load_all_from_path(dir.c_str());
            }
        }
    }
    llama_model_params mp = llama_model_default_params();
    llama_model *model = llama_model_load_from_file(argv[1], mp);
    if (!model) { fprintf(stderr, "could not load %s\n", argv[1]); return 1; }
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = n_batch;
    cp.n_ubatch = n_batch;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    cp.flash_attn_type = fa ? LLAMA_FLASH_ATTN_TYPE_ENABLED : LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.type_k = GGML_TYPE_F16;
    cp.type_v = GGML_TYPE_F16;
    cp.no_perf = true;
    llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) { fprintf(stderr, "could not create context\n"); return 1; }
    const llama_vocab *vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);

    std::vector<float> prompt_logits((size_t)prompt.size() * n_vocab);
    for (size_t i = 0; i < prompt.size(); i += n_batch) {
        const int m = (int)std::min<size_t>(n_batch, prompt.size() - i);
        llama_batch b = llama_batch_init(m, 0, 1);
        for (int j = 0; j < m; j++) {
            b.token[j] = prompt[i + j];
            b.pos[j] = (llama_pos)(i + j);
            b.n_seq_id[j] = 1;
            b.seq_id[j][0] = 0;
            b.logits[j] = 1;
        }
        b.n_tokens = m;
        if (llama_decode(ctx, b) != 0) { fprintf(stderr, "decode failed\n"); return 1; }
        for (int j = 0; j < m; j++) memcpy(&prompt_logits[(i + j) * n_vocab], llama_get_logits_ith(ctx, j), n_vocab * sizeof(float));
        llama_batch_free(b);
    }
    std::vector<int32_t> greedy;
    std::vector<float> greedy_logits;
    std::vector<float> cur(prompt_logits.end() - n_vocab, prompt_logits.end());
    llama_pos pos = (llama_pos)prompt.size();
    for (int g = 0; g < n_greedy; g++) {
        int best = 0;
        for (int v = 1; v < n_vocab; v++)
            if (cur[v] > cur[best]) best = v;
        greedy.push_back(best);
        greedy_logits.insert(greedy_logits.end(), cur.begin(), cur.end());
        if (g + 1 == n_greedy) break;
        llama_batch b = llama_batch_init(1, 0, 1);
        b.token[0] = best;
        b.pos[0] = pos++;
        b.n_seq_id[0] = 1;
        b.seq_id[0][0] = 0;
        b.logits[0] = 1;
        b.n_tokens = 1;
        if (llama_decode(ctx, b) != 0) { fprintf(stderr, "decode failed\n"); return 1; }
        memcpy(cur.data(), llama_get_logits_ith(ctx, 0), n_vocab * sizeof(float));
        llama_batch_free(b);
    }
    FILE *o = fopen(argv[3], "wb");
    if (!o) { perror("out"); return 1; }
    int32_t hdr[3] = {n_vocab, (int32_t)prompt.size(), (int32_t)greedy.size()};
    fwrite(hdr, 4, 3, o);
    fwrite(prompt_logits.data(), 4, prompt_logits.size(), o);
    fwrite(greedy.data(), 4, greedy.size(), o);
    fwrite(greedy_logits.data(), 4, greedy_logits.size(), o);
    fclose(o);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
