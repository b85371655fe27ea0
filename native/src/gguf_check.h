// A bounded pre-parser for GGUF files: validates the header, the key-value section and the tensor table against the
// file's size before ggml's gguf_init_from_file sees the file.
//
// Why: ggml's parser trusts counts it has not yet checked against what follows (it allocates for them, compares every
// key and tensor name with every earlier one, and asserts on states a hostile file can reach), and a model file is user
// input. This pass reads the file once, in bounded steps, and allocates at most a few bytes per entry actually present
// in the file. Every failure names its kind (for the fuzz report and for users) and the offset where it was found.
#pragma once

#include <cstdint>
#include <string>

namespace repokv {

// Limits far above any model the engine runs (Qwen2.5-Coder 7B: 36 keys, a 151,936-token vocabulary, 339 tensors, an
// 8 KB chat template) and far below what would exhaust memory or time. ggml compares every key and every tensor name
// with all earlier ones: 65,536 of either took 9-12 s to parse on the development machine; 4,096 keys and 8,192
// tensors (a llama of 600+ layers) take well under a second.
struct GgufLimits {
    uint64_t max_kv = 1u << 12;               // key-value pairs
    uint64_t max_tensors = 1u << 13;          // tensor infos
    uint64_t max_key_length = 1u << 16;       // bytes of a key
    uint64_t max_string_length = 1u << 26;    // bytes of one string value (64 MiB)
    uint64_t max_array_length = 1u << 26;     // elements of one array
};

struct GgufCheck {
    bool ok = false;
    // On failure: one of "io", "magic", "version", "header", "truncated", "count", "key", "duplicate-key",
    // "value-type", "string-length", "array-length", "alignment", "tensor-name", "duplicate-tensor", "tensor-dims",
    // "tensor-type", "tensor-size", "tensor-offset".
    std::string kind;
    std::string message;  // one line, naming the entry and the byte offset
    // On success: what was read.
    uint32_t version = 0;
    uint64_t n_kv = 0, n_tensors = 0;
    uint64_t alignment = 32;
    uint64_t data_offset = 0;  // first byte of the tensor data
    uint64_t data_size = 0;    // bytes of tensor data the table describes (padded)
    uint64_t file_size = 0;
};

// Reads `path` through its tensor table. Never throws for bad content (only for std::bad_alloc of small buffers).
GgufCheck gguf_check_file(const std::string &path, const GgufLimits &limits = GgufLimits());

}  // namespace repokv
