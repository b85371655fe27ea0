// GGUF model loading for the repokv native engine: llama and qwen2 architectures.
// Every check that ggml would otherwise turn into an abort() is done here first and reported as an EngineError.
#pragma once

#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "ggml.h"
#include "ggml-backend.h"
#include "gguf.h"

namespace repokv {

// Errors a caller (JS) should see as exceptions; never abort the process. `code`, when set, is a stable error kind
// (e.g. ERR_GGUF_TRUNCATED) that the binding puts on the JS error's `code`.
struct EngineError : std::runtime_error {
    using std::runtime_error::runtime_error;
    EngineError(const std::string &message, std::string code) : std::runtime_error(message), code(std::move(code)) {}
    std::string code;
};

enum class Arch { Llama, Qwen2 };

struct Hparams {
    Arch arch = Arch::Llama;
    std::string arch_name;
    int64_t n_vocab = 0;
    int64_t n_embd = 0;
    int64_t n_layer = 0;
    int64_t n_head = 0;
    int64_t n_head_kv = 0;
    int64_t n_ff = 0;
    int64_t head_dim = 0;
    int64_t n_rot = 0;
    int64_t n_ctx_train = 0;
    int rope_type = 0;  // GGML_ROPE_TYPE_NORMAL (0) or GGML_ROPE_TYPE_NEOX
    float rope_freq_base = 10000.0f;
    float rope_freq_scale = 1.0f;
    float rms_eps = 1e-5f;
    float kq_scale = 0.0f;
};

struct Layer {
    ggml_tensor *attn_norm = nullptr;
    ggml_tensor *wq = nullptr, *wk = nullptr, *wv = nullptr, *wo = nullptr;
    ggml_tensor *bq = nullptr, *bk = nullptr, *bv = nullptr, *bo = nullptr;
    ggml_tensor *ffn_norm = nullptr;
    ggml_tensor *ffn_gate = nullptr, *ffn_up = nullptr, *ffn_down = nullptr;
};

struct Runtime;

class Model {
public:
    // Loads and validates; throws EngineError naming the problem.
    Model(const std::string &path, int n_threads);
    ~Model();
    Model(const Model &) = delete;
    Model &operator=(const Model &) = delete;

    const Hparams &hparams() const { return hp_; }
    const std::string &path() const { return path_; }
    size_t weight_bytes() const { return weight_bytes_; }
    // Bytes of weights held in the CPU backend's repacked ("extra") buffer type.
    size_t repacked_bytes() const { return repacked_; }
    // Bytes of weight buffers by ggml buffer type name ("CPU", "CPU_REPACK", "AMX", ...), as ggml allocated them.
    const std::vector<std::pair<std::string, size_t>> &weight_buffers() const { return buffer_bytes_; }
    // A weight as the GGUF file stores it, dequantized to fp32 with ggml's to_float. Reads the file, not the backend's
    // copy: the CPU backend may hold a weight in a repacked, CPU-specific layout that only its matmul kernels read.
    // For tests and reference computations, not the forward pass.
    std::vector<float> weight_f32(const ggml_tensor *t) const;
    std::string weight_type_summary() const;

    int n_threads() const { return n_threads_; }
    void set_threads(int n);
    ggml_backend_t backend() const { return backend_; }
    // The CPU backend has one work buffer: graphs of sessions of this model must not run concurrently.
    std::mutex &compute_mutex() const { return compute_mu_; }

    ggml_tensor *tok_embd = nullptr;
    ggml_tensor *output_norm = nullptr;
    ggml_tensor *output = nullptr;  // == tok_embd when tied
    ggml_tensor *rope_freqs = nullptr;
    std::vector<Layer> layers;
    bool tied_output = false;

private:
    std::string path_;
    Hparams hp_;
    void release();

    gguf_context *gguf_ = nullptr;
    ggml_context *ctx_ = nullptr;                 // tensor metadata as read from the file (never allocated)
    std::vector<ggml_context *> weight_ctxs_;     // the weights, one context per buffer type
    std::vector<ggml_backend_buffer_t> bufs_;
    size_t repacked_ = 0;
    std::vector<std::pair<std::string, size_t>> buffer_bytes_;
    uint64_t file_size_ = 0;
    int64_t file_mtime_ns_ = 0;
    mutable std::mutex compute_mu_;
    ggml_backend_t backend_ = nullptr;
    void *threadpool_ = nullptr;
    int n_threads_ = 1;
    size_t weight_bytes_ = 0;
};

// Process-wide ggml runtime: backends loaded from node-llama-cpp's bins folder.
struct Runtime {
    static Runtime &get();
    ggml_backend_dev_t cpu_dev = nullptr;
    ggml_backend_reg_t cpu_reg = nullptr;
    std::string bins_dir;
    // The CPU variant library ggml's CPU backend came from ("haswell" for libggml-cpu-haswell.so), and whether it was
    // forced with REPOKV_GGML_CPU_VARIANT (cpu_variant.h).
    std::string cpu_variant;
    bool cpu_variant_forced = false;
    // Features of the CPU backend variant ggml loaded (e.g. "AVX2" -> "1").
    std::vector<std::pair<std::string, std::string>> cpu_features;
    // Attention sums in the same order as this CPU variant's matmuls (AVX2 with FMA/F16C, no AVX-512): policy
    // `full` then gives logits bit-identical to llama.cpp's (flash attention off).
    bool bit_exact_with_llama = false;
    ggml_backend_t new_cpu_backend(int n_threads, void **threadpool_out);
    void set_threads(ggml_backend_t backend, int n, void **threadpool_inout);
    void free_threadpool(void *tp);

private:
    Runtime();
};

int physical_cores();

}  // namespace repokv
