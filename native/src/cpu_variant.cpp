#include "cpu_variant.h"

#include <dirent.h>
#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <stdexcept>

namespace repokv {

namespace {
const std::string kPrefix = "libggml-cpu-", kSuffix = ".so";

bool variant_file(const std::string &file, std::string &name) {
    if (file.size() <= kPrefix.size() + kSuffix.size() || file.compare(0, kPrefix.size(), kPrefix) != 0 ||
        file.compare(file.size() - kSuffix.size(), kSuffix.size(), kSuffix) != 0)
        return false;
    name = file.substr(kPrefix.size(), file.size() - kPrefix.size() - kSuffix.size());
    return true;
}

// ggml_backend_score() of a variant library: dlopen is safe for every variant on every x86-64 CPU (ggml's own loader
// opens them all to score them); only calling into an unsupported one would fault.
int score_of(const std::string &path) {
    void *h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) return 0;
    using score_t = int (*)();
    auto score = (score_t)dlsym(h, "ggml_backend_score");
    const int s = score ? score() : 0;
    dlclose(h);
    return s;
}

std::string join(const std::vector<std::string> &v) {
    std::string s;
    for (const std::string &x : v) s += (s.empty() ? "" : ", ") + x;
    return s.empty() ? "none" : s;
}
}  // namespace

std::vector<CpuVariant> cpu_variants(const std::string &bins_dir) {
    std::vector<CpuVariant> out;
    if (DIR *d = opendir(bins_dir.c_str())) {
        while (dirent *e = readdir(d)) {
            std::string name;
            if (variant_file(e->d_name, name)) out.push_back({name, bins_dir + "/" + e->d_name, 0});
        }
        closedir(d);
    }
    std::sort(out.begin(), out.end(), [](const CpuVariant &a, const CpuVariant &b) { return a.name < b.name; });
    for (CpuVariant &v : out) v.score = score_of(v.path);
    return out;
}

std::string cpu_variant_of(ggml_backend_reg_t reg) {
    if (!reg) return "";
    void *fn = ggml_backend_reg_get_proc_address(reg, "ggml_backend_get_features");
    Dl_info info{};
    if (!fn || !dladdr(fn, &info) || !info.dli_fname) return "";
    std::string file = info.dli_fname;
    file = file.substr(file.rfind('/') + 1);
    std::string name;
    return variant_file(file, name) ? name : "";
}

std::string forced_cpu_variant() {
    const char *v = getenv("REPOKV_GGML_CPU_VARIANT");
    return v ? std::string(v) : std::string();
}

ggml_backend_reg_t load_cpu_variant(const std::string &bins_dir, const std::string &name, ggml_backend_reg_t (*load)(const char *)) {
    const std::vector<CpuVariant> all = cpu_variants(bins_dir);
    std::vector<std::string> shipped, runnable;
    const CpuVariant *chosen = nullptr;
    for (const CpuVariant &v : all) {
        shipped.push_back(v.name);
        if (v.score > 0) runnable.push_back(v.name);
        if (v.name == name) chosen = &v;
    }
    const std::string what = "REPOKV_GGML_CPU_VARIANT=" + name + ": ";
    if (!chosen) throw std::runtime_error(what + "no such ggml CPU variant in " + bins_dir + " (shipped: " + join(shipped) + ")");
    if (chosen->score <= 0)
        throw std::runtime_error(what + "this CPU cannot run ggml's '" + name + "' variant (it needs instructions the CPU lacks; this CPU runs: " +
                                 join(runnable) + ")");
    ggml_backend_reg_t reg = load ? load(chosen->path.c_str()) : nullptr;
    if (!reg) throw std::runtime_error(what + "ggml could not load " + chosen->path);
    return reg;
}

}  // namespace repokv
