#include "model.h"

#include "attention.h"
#include "cpu_variant.h"
#include "gguf_check.h"

#include <dlfcn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

namespace repokv {

// ---------------------------------------------------------------------------------------------------------------
// Runtime

// While gguf parses a file, its error lines are captured (and put into our exception) instead of printed.
static thread_local std::string t_captured_log;
static void capture_log(enum ggml_log_level level, const char *text, void *) {
    if (level == GGML_LOG_LEVEL_ERROR && strncmp(text, "load_backend", 12) != 0) {
        t_captured_log += text;
        if (!t_captured_log.empty() && t_captured_log.back() != '\n') t_captured_log += '\n';
    }
    if (getenv("REPOKV_NATIVE_VERBOSE")) fputs(text, stderr);
}

// Routes ggml's log to capture_log for a scope (load-time chatter such as "repack: ..." is not for our users).
struct LogCapture {
    ggml_log_callback prev_cb = nullptr;
    void *prev_ud = nullptr;
    LogCapture() {
        ggml_log_get(&prev_cb, &prev_ud);
        t_captured_log.clear();
        ggml_log_set(capture_log, nullptr);
    }
    ~LogCapture() { ggml_log_set(prev_cb, prev_ud); }
};

Runtime::Runtime() {
    // The bins folder is where libggml-base.so was loaded from (node-llama-cpp's prebuilt binaries).
    Dl_info info{};
    if (dladdr((void *)&ggml_init, &info) && info.dli_fname) {
        std::string p = info.dli_fname;
        auto slash = p.rfind('/');
        bins_dir = slash == std::string::npos ? std::string(".") : p.substr(0, slash);
        if (char *real = realpath(bins_dir.c_str(), nullptr)) {  // the rpath leaves "build/../.." in it
            bins_dir = real;
            free(real);
        }
    }
    // node-llama-cpp may already have loaded the backends in this process (or will later); load only if needed.
    // The backend registry lives in libggml.<variant>.<release>.so, whose name differs between node-llama-cpp's
    // packages (CPU: libggml.v0.4.0.so, CUDA: libggml.cuda.v0.4.0.so, ...). We link only libggml-base.so and use the
    // registry node-llama-cpp already loaded in this process, or else the plain one next to libggml-base.so.
    const std::string tag = REPOKV_LLAMA_TAG;
    void *reg_lib = nullptr;
    for (const char *variant : {"cuda.", "vulkan.", ""}) {
        std::string name = std::string("libggml.") + variant + tag + ".so";
        if ((reg_lib = dlopen(name.c_str(), RTLD_NOW | RTLD_NOLOAD))) break;
    }
    if (!reg_lib) {
        std::string file = bins_dir + "/libggml." + tag + ".so";
        reg_lib = dlopen(file.c_str(), RTLD_NOW | RTLD_GLOBAL);
        if (!reg_lib) throw EngineError("cannot load the ggml backend registry " + file + ": " + dlerror());
    }
    using dev_by_type_t = ggml_backend_dev_t (*)(enum ggml_backend_dev_type);
    using load_all_t = void (*)(const char *);
    using load_t = ggml_backend_reg_t (*)(const char *);
    auto dev_by_type = (dev_by_type_t)dlsym(reg_lib, "ggml_backend_dev_by_type");
    auto load_all = (load_all_t)dlsym(reg_lib, "ggml_backend_load_all_from_path");
    auto load_one = (load_t)dlsym(reg_lib, "ggml_backend_load");
    if (!dev_by_type || !load_all || !load_one)
        throw EngineError("the ggml backend registry library lacks ggml_backend_dev_by_type/ggml_backend_load_all_from_path/ggml_backend_load");
    const std::string forced = forced_cpu_variant();
    cpu_dev = dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    if (!forced.empty()) {
        // REPOKV_GGML_CPU_VARIANT (cpu_variant.h): that library only. If node-llama-cpp already registered another
        // variant in this process, ours is registered next to it and we use its device directly (by_type would
        // return the first one registered).
        cpu_variant_forced = true;
        if (!cpu_dev || cpu_variant_of(ggml_backend_dev_backend_reg(cpu_dev)) != forced) {
            LogCapture quiet;
            ggml_backend_reg_t reg = nullptr;
            try {
                reg = load_cpu_variant(bins_dir, forced, load_one);
            } catch (const std::exception &e) {
                throw EngineError(e.what(), "ERR_CPU_VARIANT");
            }
            cpu_dev = ggml_backend_reg_dev_count(reg) > 0 ? ggml_backend_reg_dev_get(reg, 0) : nullptr;
        }
    } else if (!cpu_dev) {
        LogCapture quiet;  // "load_backend: ..." lines
        load_all(bins_dir.c_str());
        cpu_dev = dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    }
    if (!cpu_dev) throw EngineError("no ggml CPU backend could be loaded from " + bins_dir);
    cpu_reg = ggml_backend_dev_backend_reg(cpu_dev);
    cpu_variant = cpu_variant_of(cpu_reg);
    auto get_features = (ggml_backend_get_features_t)ggml_backend_reg_get_proc_address(cpu_reg, "ggml_backend_get_features");
    bool avx2 = false, fma = false, f16c = false, avx512 = false, llamafile = false;
    if (get_features) {
        for (ggml_backend_feature *f = get_features(cpu_reg); f && f->name; f++) {
            cpu_features.emplace_back(f->name, f->value ? f->value : "");
            const std::string name = f->name;
            const bool on = f->value && std::string(f->value) == "1";
            if (name == "AVX2") avx2 = on;
            else if (name == "FMA") fma = on;
            else if (name == "F16C") f16c = on;
            else if (name == "LLAMAFILE") llamafile = on;
            else if (name.rfind("AVX512", 0) == 0 && on) avx512 = true;
        }
    }
    bit_exact_with_llama = avx2 && fma && f16c && llamafile && !avx512 && attention_simd();
}

Runtime &Runtime::get() {
    static std::mutex mu;
    static Runtime *instance = nullptr;
    std::lock_guard<std::mutex> lock(mu);
    if (!instance) instance = new Runtime();
    return *instance;
}

ggml_backend_t Runtime::new_cpu_backend(int n_threads, void **threadpool_out) {
    ggml_backend_t b = ggml_backend_dev_init(cpu_dev, nullptr);
    if (!b) throw EngineError("could not initialise the ggml CPU backend");
    *threadpool_out = nullptr;
    set_threads(b, n_threads, threadpool_out);
    return b;
}

void Runtime::set_threads(ggml_backend_t backend, int n, void **threadpool_inout) {
    auto fn = (ggml_backend_set_n_threads_t)ggml_backend_reg_get_proc_address(cpu_reg, "ggml_backend_set_n_threads");
    if (fn) fn(backend, n);
    // A persistent thread pool with no polling between graphs (poll level 0: idle workers sleep, which matters when
    // the editor competes for the cores). ggml's default starts n-1 threads for every graph; from a libuv worker
    // thread that made 2-thread decoding an order of magnitude slower (docs/platform-notes.md, "node-llama-cpp").
    // REPOKV_NATIVE_THREADPOOL: a poll level 0-100, or "off" for ggml's default.
    const char *tp_env = getenv("REPOKV_NATIVE_THREADPOOL");
    const bool tp_off = tp_env && strcmp(tp_env, "off") == 0;
    using tp_new_t = ggml_threadpool_t (*)(struct ggml_threadpool_params *);
    using tp_set_t = void (*)(ggml_backend_t, ggml_threadpool_t);
    auto tp_new = (tp_new_t)ggml_backend_reg_get_proc_address(cpu_reg, "ggml_threadpool_new");
    auto tp_set = (tp_set_t)ggml_backend_reg_get_proc_address(cpu_reg, "ggml_backend_cpu_set_threadpool");
    if (tp_set && *threadpool_inout) {
        tp_set(backend, nullptr);
        free_threadpool(*threadpool_inout);
        *threadpool_inout = nullptr;
    }
    if (!tp_off && tp_new && tp_set && n > 1) {
        ggml_threadpool_params params = ggml_threadpool_params_default(n);
        params.poll = tp_env ? (uint32_t)atoi(tp_env) : 0;
        ggml_threadpool_t tp = tp_new(&params);
        if (tp) {
            tp_set(backend, tp);
            *threadpool_inout = tp;
        }
    }
}

void Runtime::free_threadpool(void *tp) {
    using tp_free_t = void (*)(ggml_threadpool_t);
    auto tp_free = (tp_free_t)ggml_backend_reg_get_proc_address(cpu_reg, "ggml_threadpool_free");
    if (tp && tp_free) tp_free((ggml_threadpool_t)tp);
}

int physical_cores() {
    // Count distinct (physical id, core id) pairs; fall back to logical CPUs.
    std::ifstream f("/proc/cpuinfo");
    std::string line;
    std::set<std::pair<int, int>> cores;
    int phys = 0, core = -1;
    while (std::getline(f, line)) {
        if (line.rfind("physical id", 0) == 0) phys = atoi(line.c_str() + line.find(':') + 1);
        else if (line.rfind("core id", 0) == 0) {
            core = atoi(line.c_str() + line.find(':') + 1);
            cores.insert({phys, core});
        }
    }
    if (!cores.empty()) return (int)cores.size();
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

// ---------------------------------------------------------------------------------------------------------------
// GGUF helpers

namespace {

struct Meta {
    gguf_context *g;
    std::string arch;

    int64_t key(const std::string &k) const { return gguf_find_key(g, k.c_str()); }

    bool has(const std::string &k) const { return key(k) >= 0; }

    double number(const std::string &k, bool required, double def) const {
        int64_t id = key(k);
        if (id < 0) {
            if (required) throw EngineError("GGUF metadata key '" + k + "' is missing");
            return def;
        }
        switch (gguf_get_kv_type(g, id)) {
            case GGUF_TYPE_UINT8: return gguf_get_val_u8(g, id);
            case GGUF_TYPE_INT8: return gguf_get_val_i8(g, id);
            case GGUF_TYPE_UINT16: return gguf_get_val_u16(g, id);
            case GGUF_TYPE_INT16: return gguf_get_val_i16(g, id);
            case GGUF_TYPE_UINT32: return gguf_get_val_u32(g, id);
            case GGUF_TYPE_INT32: return gguf_get_val_i32(g, id);
            case GGUF_TYPE_UINT64: return (double)gguf_get_val_u64(g, id);
            case GGUF_TYPE_INT64: return (double)gguf_get_val_i64(g, id);
            case GGUF_TYPE_FLOAT32: return gguf_get_val_f32(g, id);
            case GGUF_TYPE_FLOAT64: return gguf_get_val_f64(g, id);
            case GGUF_TYPE_ARRAY: {
                // llama.cpp accepts per-layer arrays for some counts; we need them uniform.
                enum gguf_type at = gguf_get_arr_type(g, id);
                size_t n = gguf_get_arr_n(g, id);
                if (n == 0) throw EngineError("GGUF metadata key '" + k + "' is an empty array");
                // the element type first: gguf_get_arr_data asserts (aborts) on an array of strings
                if (at != GGUF_TYPE_UINT32 && at != GGUF_TYPE_INT32 && at != GGUF_TYPE_FLOAT32)
                    throw EngineError("GGUF metadata key '" + k + "' has an unsupported array type");
                const void *d = gguf_get_arr_data(g, id);
                auto at_i = [&](size_t i) -> double {
                    switch (at) {
                        case GGUF_TYPE_UINT32: return ((const uint32_t *)d)[i];
                        case GGUF_TYPE_INT32: return ((const int32_t *)d)[i];
                        case GGUF_TYPE_FLOAT32: return ((const float *)d)[i];
                        default: throw EngineError("GGUF metadata key '" + k + "' has an unsupported array type");
                    }
                };
                double v0 = at_i(0);
                for (size_t i = 1; i < n; i++)
                    if (at_i(i) != v0) throw EngineError("GGUF metadata key '" + k + "' varies per layer, which is not supported");
                return v0;
            }
            default: throw EngineError("GGUF metadata key '" + k + "' is not a number");
        }
    }

    int64_t count(const std::string &k, bool required, int64_t def = 0) const {
        double v = number(k, required, (double)def);
        if (!(v >= 0) || v > 1e12 || v != std::floor(v)) throw EngineError("GGUF metadata key '" + k + "' has an invalid value");
        return (int64_t)v;
    }

    std::string str(const std::string &k) const {
        int64_t id = key(k);
        if (id < 0) return "";
        if (gguf_get_kv_type(g, id) != GGUF_TYPE_STRING) throw EngineError("GGUF metadata key '" + k + "' is not a string");
        return gguf_get_val_str(g, id);
    }
};

bool matrix_type_supported(ggml_type t) {
    switch (t) {
        case GGML_TYPE_F32: case GGML_TYPE_F16: case GGML_TYPE_BF16:
        case GGML_TYPE_Q4_0: case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_0: case GGML_TYPE_Q5_1: case GGML_TYPE_Q8_0:
        case GGML_TYPE_Q2_K: case GGML_TYPE_Q3_K: case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K: case GGML_TYPE_Q6_K:
        case GGML_TYPE_IQ4_NL: case GGML_TYPE_IQ4_XS:
            return true;
        default:
            return false;
    }
}

// A name from the file for a message: quoted, printable ASCII, at most 64 characters.
std::string printable(const std::string &s) {
    std::string out = "'";
    for (size_t i = 0; i < s.size() && i < 64; i++) out += (s[i] >= 32 && s[i] < 127) ? s[i] : '?';
    return out + (s.size() > 64 ? "...'" : "'");
}

std::string shape_str(const ggml_tensor *t) {
    std::ostringstream s;
    s << "[";
    for (int i = 0; i < ggml_n_dims(t); i++) s << (i ? ", " : "") << t->ne[i];
    s << "]";
    return s.str();
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// Model

Model::Model(const std::string &path, int n_threads) : path_(path) {
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) throw EngineError("cannot open model file '" + path + "': " + strerror(errno), "ERR_GGUF_IO");
    if (!S_ISREG(st.st_mode)) throw EngineError("model path '" + path + "' is not a regular file", "ERR_GGUF_IO");
    file_mtime_ns_ = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;

    // The whole header, metadata and tensor table are validated against the file before ggml parses them
    // (gguf_check.h): ggml's parser would allocate for unchecked counts or assert on hostile content.
    const GgufCheck chk = gguf_check_file(path);
    if (!chk.ok) {
        std::string code = "ERR_GGUF_" + chk.kind;
        for (char &c : code) c = c == '-' ? '_' : (char)toupper((unsigned char)c);
        if (chk.kind == "io") throw EngineError(chk.message, code);
        if (chk.kind == "magic") throw EngineError("'" + path + "' is not a GGUF file (bad magic)", code);
        if (chk.kind == "truncated" && chk.message.rfind("model file is truncated", 0) == 0) throw EngineError(chk.message, code);
        throw EngineError("'" + path + "' is a corrupt or truncated GGUF file (" + chk.kind + "): " + chk.message, code);
    }
    const uint64_t file_size = chk.file_size;
    file_size_ = file_size;

    Runtime &rt = Runtime::get();

    gguf_init_params params{};
    params.no_alloc = true;
    params.ctx = &ctx_;
    LogCapture capture;  // for the whole load: gguf's errors go into our exceptions, the rest is dropped
    gguf_ = gguf_init_from_file(path.c_str(), params);
    if (!gguf_) {
        std::string why = t_captured_log;
        while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
        for (size_t i = 0; i < why.size(); i++)
            if (why[i] == '\n') why.replace(i, 1, "; ");
        throw EngineError("'" + path + "' is a corrupt or truncated GGUF file (header, metadata or tensor table could not be read)" +
                              (why.empty() ? std::string() : ": " + why),
                          "ERR_GGUF_GGML");
    }

    try {
        Meta m{gguf_, ""};
        m.arch = m.str("general.architecture");
        if (m.arch.empty()) throw EngineError("GGUF metadata key 'general.architecture' is missing");
        const std::string &a = m.arch;
        if (a == "llama") hp_.arch = Arch::Llama;
        else if (a == "qwen2") hp_.arch = Arch::Qwen2;
        else throw EngineError("unsupported model architecture " + printable(a) + " (supported: llama, qwen2)");
        hp_.arch_name = a;

        hp_.n_embd = m.count(a + ".embedding_length", true);
        hp_.n_layer = m.count(a + ".block_count", true);
        hp_.n_head = m.count(a + ".attention.head_count", true);
        hp_.n_head_kv = m.count(a + ".attention.head_count_kv", false, hp_.n_head);
        hp_.n_ff = m.count(a + ".feed_forward_length", true);
        hp_.n_ctx_train = m.count(a + ".context_length", true);
        hp_.rms_eps = (float)m.number(a + ".attention.layer_norm_rms_epsilon", true, 1e-5);
        if (hp_.n_embd <= 0 || hp_.n_layer <= 0 || hp_.n_head <= 0 || hp_.n_head_kv <= 0 || hp_.n_ff <= 0)
            throw EngineError("model hyperparameters are invalid (zero sizes)");
        // Counts that size allocations before any tensor is matched: a layer needs at least 9 tensors, and a
        // context beyond 2^24 tokens is no model's (the KV store would be sized from it).
        if (hp_.n_layer > gguf_get_n_tensors(gguf_) / 9)
            throw EngineError(a + ".block_count " + std::to_string(hp_.n_layer) + " is more layers than the file's " +
                              std::to_string(gguf_get_n_tensors(gguf_)) + " tensors can hold");
        if (hp_.n_ctx_train < 1 || hp_.n_ctx_train > (1 << 24))
            throw EngineError(a + ".context_length " + std::to_string(hp_.n_ctx_train) + " is out of range (1..16777216)");
        if (!std::isfinite(hp_.rms_eps) || hp_.rms_eps < 0)
            throw EngineError(a + ".attention.layer_norm_rms_epsilon is not a finite non-negative number");
        if (hp_.n_head % hp_.n_head_kv != 0)
            throw EngineError("attention.head_count (" + std::to_string(hp_.n_head) + ") is not a multiple of head_count_kv (" + std::to_string(hp_.n_head_kv) + ")");
        hp_.head_dim = m.count(a + ".attention.key_length", false, hp_.n_embd / hp_.n_head);
        int64_t vlen = m.count(a + ".attention.value_length", false, hp_.head_dim);
        if (vlen != hp_.head_dim) throw EngineError("attention.key_length != value_length is not supported");
        if (!m.has(a + ".attention.key_length") && hp_.n_embd % hp_.n_head != 0)
            throw EngineError("embedding_length is not a multiple of head_count");
        if (hp_.head_dim <= 0 || hp_.head_dim % 8 != 0 || hp_.head_dim > 512)
            throw EngineError("head dimension " + std::to_string(hp_.head_dim) + " is not supported (needs a multiple of 8, at most 512)");
        hp_.n_rot = m.count(a + ".rope.dimension_count", false, hp_.head_dim);
        if (hp_.n_rot != hp_.head_dim) throw EngineError("partial RoPE (rope.dimension_count != head dimension) is not supported");
        hp_.rope_freq_base = (float)m.number(a + ".rope.freq_base", false, 10000.0);
        if (!std::isfinite(hp_.rope_freq_base) || hp_.rope_freq_base <= 0) throw EngineError(a + ".rope.freq_base is not a finite positive number");
        std::string scaling = m.str(a + ".rope.scaling.type");
        double factor = m.number(a + ".rope.scaling.factor", false, 0.0);
        if (scaling.empty() || scaling == "none") {
            if (factor != 0.0 && factor != 1.0 && scaling.empty()) hp_.rope_freq_scale = (float)(1.0 / factor);
        } else if (scaling == "linear") {
            if (factor > 0) hp_.rope_freq_scale = (float)(1.0 / factor);
        } else {
            throw EngineError("RoPE scaling type " + printable(scaling) + " is not supported");
        }
        double attn_scale = m.number(a + ".attention.scale", false, 0.0);
        hp_.kq_scale = attn_scale != 0.0 ? (float)attn_scale : 1.0f / std::sqrt((float)hp_.head_dim);
        hp_.rope_type = hp_.arch == Arch::Qwen2 ? GGML_ROPE_TYPE_NEOX : GGML_ROPE_TYPE_NORMAL;

        // ---- tensors: bounds against the file first (a truncated file must not reach ggml) ----
        const size_t data_offset = gguf_get_data_offset(gguf_);
        const int64_t n_tensors = gguf_get_n_tensors(gguf_);
        for (int64_t i = 0; i < n_tensors; i++) {
            const char *name = gguf_get_tensor_name(gguf_, i);
            uint64_t end = (uint64_t)data_offset + gguf_get_tensor_offset(gguf_, i) + gguf_get_tensor_size(gguf_, i);
            if (end > file_size) {
                std::ostringstream s;
                s << "model file is truncated: tensor '" << name << "' ends at byte " << end << " but the file has " << file_size << " bytes";
                throw EngineError(s.str());
            }
        }

        auto get = [&](const std::string &name, bool required) -> ggml_tensor * {
            ggml_tensor *t = ggml_get_tensor(ctx_, name.c_str());
            if (!t && required) throw EngineError("tensor '" + name + "' is missing");
            return t;
        };
        auto expect = [&](ggml_tensor *t, std::initializer_list<int64_t> ne, bool matrix) {
            if (!t) return;
            int i = 0;
            bool ok = true;
            for (int64_t n : ne) ok = ok && t->ne[i++] == n;
            for (; i < GGML_MAX_DIMS; i++) ok = ok && t->ne[i] == 1;
            if (!ok) {
                std::ostringstream s;
                s << "tensor '" << ggml_get_name(t) << "' has shape " << shape_str(t) << ", expected [";
                int j = 0;
                for (int64_t n : ne) s << (j++ ? ", " : "") << n;
                s << "]";
                throw EngineError(s.str());
            }
            if (matrix) {
                if (!matrix_type_supported(t->type))
                    throw EngineError(std::string("tensor '") + ggml_get_name(t) + "' has unsupported type " + ggml_type_name(t->type));
            } else if (t->type != GGML_TYPE_F32) {
                throw EngineError(std::string("tensor '") + ggml_get_name(t) + "' must be F32 (is " + ggml_type_name(t->type) + ")");
            }
        };

        const int64_t E = hp_.n_embd, Q = hp_.n_head * hp_.head_dim, KV = hp_.n_head_kv * hp_.head_dim, F = hp_.n_ff;
        tok_embd = get("token_embd.weight", true);
        hp_.n_vocab = tok_embd->ne[1];
        if (hp_.n_vocab < 1 || hp_.n_vocab > INT32_MAX)
            throw EngineError("token_embd.weight gives a vocabulary of " + std::to_string(hp_.n_vocab) + " tokens (needs 1..2^31-1: token ids are int32)");
        expect(tok_embd, {E, hp_.n_vocab}, true);
        output_norm = get("output_norm.weight", true);
        expect(output_norm, {E}, false);
        output = get("output.weight", false);
        if (output) {
            expect(output, {E, hp_.n_vocab}, true);
        } else {
            output = tok_embd;
            tied_output = true;
        }
        rope_freqs = get("rope_freqs.weight", false);
        expect(rope_freqs, {hp_.head_dim / 2}, false);
        layers.resize(hp_.n_layer);
        for (int64_t il = 0; il < hp_.n_layer; il++) {
            Layer &L = layers[il];
            const std::string p = "blk." + std::to_string(il) + ".";
            L.attn_norm = get(p + "attn_norm.weight", true); expect(L.attn_norm, {E}, false);
            if (get(p + "attn_qkv.weight", false)) throw EngineError("fused QKV tensors (attn_qkv) are not supported");
            L.wq = get(p + "attn_q.weight", true); expect(L.wq, {E, Q}, true);
            L.wk = get(p + "attn_k.weight", true); expect(L.wk, {E, KV}, true);
            L.wv = get(p + "attn_v.weight", true); expect(L.wv, {E, KV}, true);
            L.wo = get(p + "attn_output.weight", true); expect(L.wo, {Q, E}, true);
            bool biases = hp_.arch == Arch::Qwen2;
            L.bq = get(p + "attn_q.bias", biases); expect(L.bq, {Q}, false);
            L.bk = get(p + "attn_k.bias", biases); expect(L.bk, {KV}, false);
            L.bv = get(p + "attn_v.bias", biases); expect(L.bv, {KV}, false);
            L.bo = get(p + "attn_output.bias", false); expect(L.bo, {E}, false);
            L.ffn_norm = get(p + "ffn_norm.weight", true); expect(L.ffn_norm, {E}, false);
            if (get(p + "ffn_gate_inp.weight", false)) throw EngineError("mixture-of-experts models are not supported");
            L.ffn_gate = get(p + "ffn_gate.weight", true); expect(L.ffn_gate, {E, F}, true);
            L.ffn_up = get(p + "ffn_up.weight", true); expect(L.ffn_up, {E, F}, true);
            L.ffn_down = get(p + "ffn_down.weight", true); expect(L.ffn_down, {F, E}, true);
        }
        // Row sizes must be whole quantization blocks (mul_mat and get_rows assert on it).
        for (ggml_tensor *t = ggml_get_first_tensor(ctx_); t; t = ggml_get_next_tensor(ctx_, t)) {
            if (t->ne[0] % ggml_blck_size(t->type) != 0)
                throw EngineError(std::string("tensor '") + ggml_get_name(t) + "' row length is not a multiple of its " + ggml_type_name(t->type) + " block size");
        }

        // ---- buffer types: like llama.cpp, matmul weights the CPU backend can repack for its faster kernels
        // (Q4_0, Q4_K, Q6_K, ... on AVX2) go to its "extra" buffer type; everything else to plain CPU memory ----
        backend_ = rt.new_cpu_backend(n_threads, &threadpool_);
        n_threads_ = n_threads;
        std::vector<ggml_backend_buffer_type_t> extra;
        using get_extra_t = ggml_backend_buffer_type_t *(*)(ggml_backend_dev_t);
        auto get_extra = (get_extra_t)ggml_backend_reg_get_proc_address(rt.cpu_reg, "ggml_backend_dev_get_extra_bufts");
        if (get_extra && !getenv("REPOKV_NATIVE_NO_REPACK"))
            for (ggml_backend_buffer_type_t *p = get_extra(rt.cpu_dev); p && *p; ++p) extra.push_back(*p);
        std::set<ggml_tensor *> matmul;
        for (const Layer &L : layers)
            for (ggml_tensor *w : {L.wq, L.wk, L.wv, L.wo, L.ffn_gate, L.ffn_up, L.ffn_down}) matmul.insert(w);
        if (!tied_output) matmul.insert(output);
        ggml_backend_buffer_type_t cpu_buft = ggml_backend_dev_buffer_type(rt.cpu_dev);
        auto choose = [&](ggml_tensor *w) -> ggml_backend_buffer_type_t {
            if (!matmul.count(w)) return cpu_buft;
            for (ggml_backend_buffer_type_t buft : extra) {
                ggml_init_params tp{ggml_tensor_overhead() * 4, nullptr, true};
                ggml_context *tctx = ggml_init(tp);
                ggml_tensor *b = ggml_new_tensor_2d(tctx, GGML_TYPE_F32, w->ne[0], 512);
                ggml_tensor *op = ggml_mul_mat(tctx, w, b);
                ggml_backend_buffer_t dummy = ggml_backend_buft_alloc_buffer(buft, 0);
                w->buffer = dummy;
                bool ok = dummy && ggml_backend_dev_supports_op(rt.cpu_dev, op);
                w->buffer = nullptr;
                if (dummy) ggml_backend_buffer_free(dummy);
                ggml_free(tctx);
                if (ok) return buft;
            }
            return cpu_buft;
        };
        std::map<ggml_backend_buffer_type_t, ggml_context *> ctxs;
        std::map<ggml_tensor *, ggml_tensor *> moved;
        for (ggml_tensor *t = ggml_get_first_tensor(ctx_); t; t = ggml_get_next_tensor(ctx_, t)) {
            ggml_backend_buffer_type_t buft = choose(t);
            ggml_context *&c = ctxs[buft];
            if (!c) {
                ggml_init_params cp{ggml_tensor_overhead() * (size_t)(n_tensors + 1), nullptr, true};
                c = ggml_init(cp);
                weight_ctxs_.push_back(c);
            }
            ggml_tensor *nt = ggml_dup_tensor(c, t);
            ggml_set_name(nt, ggml_get_name(t));
            moved[t] = nt;
        }
        auto remap = [&](ggml_tensor *&t) {
            if (t) t = moved.at(t);
        };
        remap(tok_embd); remap(output_norm); remap(output); remap(rope_freqs);
        for (Layer &L : layers) {
            for (ggml_tensor **w : {&L.attn_norm, &L.wq, &L.wk, &L.wv, &L.wo, &L.bq, &L.bk, &L.bv, &L.bo, &L.ffn_norm, &L.ffn_gate, &L.ffn_up, &L.ffn_down})
                remap(*w);
        }
        for (auto &kv : ctxs) {
            ggml_backend_buffer_t b = ggml_backend_alloc_ctx_tensors_from_buft(kv.second, kv.first);
            if (!b) throw EngineError("out of memory allocating model weights");
            ggml_backend_buffer_set_usage(b, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
            bufs_.push_back(b);
            if (kv.first != cpu_buft) repacked_ += ggml_backend_buffer_get_size(b);
            buffer_bytes_.emplace_back(ggml_backend_buft_name(kv.first), ggml_backend_buffer_get_size(b));
        }

        // ---- read the weights ----
        FILE *f = fopen(path.c_str(), "rb");
        if (!f) throw EngineError("cannot open model file '" + path + "': " + strerror(errno));
        std::vector<char> staging;
        for (int64_t i = 0; i < n_tensors; i++) {
            const char *name = gguf_get_tensor_name(gguf_, i);
            ggml_tensor *t = moved.at(ggml_get_tensor(ctx_, name));
            const bool host = ggml_backend_buffer_is_host(t->buffer);
            size_t nbytes = ggml_nbytes(t);
            size_t off = data_offset + gguf_get_tensor_offset(gguf_, i);
            void *dst = t->data;
            if (!host) {
                staging.resize(nbytes);
                dst = staging.data();
            }
            if (fseeko(f, (off_t)off, SEEK_SET) != 0 || fread(dst, 1, nbytes, f) != nbytes) {
                fclose(f);
                throw EngineError(std::string("could not read tensor '") + name + "' from the model file (truncated?)");
            }
            if (!host) ggml_backend_tensor_set(t, staging.data(), 0, nbytes);
            weight_bytes_ += nbytes;
        }
        fclose(f);
        if (tok_embd->type != GGML_TYPE_F32 && tok_embd->type != GGML_TYPE_F16 && !matrix_type_supported(tok_embd->type))
            throw EngineError("token embedding type not supported");
    } catch (...) {
        release();
        throw;
    }
}

void Model::release() {
    for (ggml_backend_buffer_t b : bufs_) ggml_backend_buffer_free(b);
    bufs_.clear();
    for (ggml_context *c : weight_ctxs_) ggml_free(c);
    weight_ctxs_.clear();
    if (backend_) ggml_backend_free(backend_);
    if (threadpool_) Runtime::get().free_threadpool(threadpool_);
    threadpool_ = nullptr;
    if (ctx_) ggml_free(ctx_);
    if (gguf_) gguf_free(gguf_);
    backend_ = nullptr;
    ctx_ = nullptr;
    gguf_ = nullptr;
}

Model::~Model() { release(); }

std::vector<float> Model::weight_f32(const ggml_tensor *t) const {
    if (!t) return {};
    const char *name = ggml_get_name(t);
    const int64_t id = gguf_find_tensor(gguf_, name);
    const ggml_tensor *orig = ggml_get_tensor(ctx_, name);  // type and shape as in the file
    if (id < 0 || !orig) throw EngineError(std::string("weight_f32: tensor '") + name + "' is not in the model file");
    const ggml_type_traits *traits = ggml_get_type_traits(orig->type);
    if (orig->type != GGML_TYPE_F32 && !traits->to_float)
        throw EngineError(std::string("weight_f32: ggml has no fp32 conversion for type ") + ggml_type_name(orig->type) + " (tensor '" + name + "')");
    // The file must still be the one that was loaded (the reference would otherwise read other weights).
    struct stat st {};
    if (stat(path_.c_str(), &st) != 0 || (uint64_t)st.st_size != file_size_ ||
        (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec != file_mtime_ns_)
        throw EngineError("model file '" + path_ + "' changed or vanished since it was loaded");
    std::vector<uint8_t> raw(ggml_nbytes(orig));
    FILE *f = fopen(path_.c_str(), "rb");
    if (!f) throw EngineError("cannot open model file '" + path_ + "': " + strerror(errno));
    const uint64_t off = gguf_get_data_offset(gguf_) + gguf_get_tensor_offset(gguf_, id);
    const bool ok = fseeko(f, (off_t)off, SEEK_SET) == 0 && fread(raw.data(), 1, raw.size(), f) == raw.size();
    fclose(f);
    if (!ok) throw EngineError(std::string("could not read tensor '") + name + "' from the model file");
    std::vector<float> out((size_t)ggml_nelements(orig));
    if (orig->type == GGML_TYPE_F32) memcpy(out.data(), raw.data(), out.size() * sizeof(float));
    else traits->to_float(raw.data(), out.data(), (int64_t)out.size());
    return out;
}

void Model::set_threads(int n) {
    if (n < 1) n = 1;
    std::lock_guard<std::mutex> lock(compute_mu_);
    Runtime::get().set_threads(backend_, n, &threadpool_);
    n_threads_ = n;
}

std::string Model::weight_type_summary() const {
    std::map<std::string, int> counts;
    for (ggml_tensor *t = ggml_get_first_tensor(ctx_); t; t = ggml_get_next_tensor(ctx_, t)) counts[ggml_type_name(t->type)]++;
    std::ostringstream s;
    bool first = true;
    for (auto &kv : counts) {
        s << (first ? "" : ",") << kv.first << ":" << kv.second;
        first = false;
    }
    return s.str();
}

}  // namespace repokv
