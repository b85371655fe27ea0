// The CUDA kernels (native/src/cuda/) against the CPU's portable kernels (native/src/kernels/scalar.cpp) on random
// packed segments quantized by the CPU's own quantizers (native/src/quant/): every tier's score and value kernel,
// the device bytes of every segment against the CPU's allocation, and whole-head attention (LSE merge over several
// tiers, causal mask by position) against the CPU's one softmax over the union. Built by `node native/build.mjs
// --cuda` into native/build/cuda/cuda-check; run by test/native/cuda.test.mjs and bench/gpu-check.sh.
//
// Usage: cuda-check [--bench] [--quick] [--seed N]
// Prints one JSON object. Exit status: 0 all within tolerance, 1 a difference over tolerance or a CUDA error,
// 77 no usable CUDA device (the JSON says why; the tests report SKIPPED).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "ggml.h"

#include "../src/cuda/attention_cuda.h"
#include "../src/kernels/kernels.h"
#include "../src/quant/quant.h"

using namespace repokv;

namespace {

constexpr double kTolerance = 2e-5;  // max |cpu − gpu| relative to max |cpu| (fp32 sums in another order)

std::mt19937 rng;
bool quick = false;  // --quick: fewer and smaller cases (the CPU emulation runs a thread per CUDA thread)

std::vector<float> randn(size_t n, float sd = 1.0f) {
    std::normal_distribution<float> d(0.0f, sd);
    std::vector<float> x(n);
    for (auto &v : x) v = d(rng);
    return x;
}

// keys with a few wide channels (what onebit's outlier channels are for) and a per-channel offset (what kivi's min is for)
std::vector<float> keys(int32_t n, int D) {
    std::vector<float> K = randn((size_t)n * D), off = randn(D, 2.0f);
    for (int32_t t = 0; t < n; t++)
        for (int c = 0; c < D; c++) K[(size_t)t * D + c] = K[(size_t)t * D + c] * (c % 7 == 0 ? 6.0f : 1.0f) + off[c];
    return K;
}

// A segment on both sides: the CPU's bytes (fp16 layout of kv_store.h, or a QuantSegment) and its device copy.
struct Both {
    Tier tier;
    int D;
    int32_t n;
    std::vector<uint16_t> k16, v16;
    quant::QuantSegment packed;
    std::vector<int32_t> pos;
    cuda::DeviceSegment dev;
    size_t cpu_bytes = 0;  // the CPU's allocation: buffers + positions

    Both(Tier t, int D_, int32_t n_, const float *K, const float *V, std::vector<int32_t> p) : tier(t), D(D_), n(n_), pos(std::move(p)) {
        cuda::HostSegment h;
        h.tier = t, h.head_dim = D, h.n = n, h.pos = pos.data();
        if (t == Tier::F16) {
            k16.resize((size_t)n * D);
            v16.assign(((size_t)n + 7) / 8 * 8 * D, 0);
            for (int32_t j = 0; j < n; j++)
                for (int c = 0; c < D; c++) {
                    k16[(size_t)j * D + c] = ggml_fp32_to_fp16(K[(size_t)j * D + c]);
                    v16[((size_t)(j / 8) * D + c) * 8 + j % 8] = ggml_fp32_to_fp16(V[(size_t)j * D + c]);
                }
            h.k = k16.data(), h.k_bytes = k16.size() * 2, h.v = v16.data(), h.v_bytes = v16.size() * 2;
            cpu_bytes = k16.capacity() * 2 + v16.capacity() * 2;
        } else {
            packed = quant::quantize(t, D, n, K, V);
            h.k = packed.k.data(), h.k_bytes = packed.k.size(), h.v = packed.v.data(), h.v_bytes = packed.v.size();
            h.meta = packed.meta.data(), h.meta_bytes = packed.meta.size();
            cpu_bytes = packed.bytes_allocated();
        }
        cpu_bytes += pos.size() * sizeof(int32_t);
        dev = cuda::DeviceSegment::upload(h);
    }
    void cpu_scores(const float *q, int R, float scale, float *S, size_t ld) const {
        const auto &K = kernels::scalar();
        if (tier == Tier::F16) K.f16_scores(k16.data(), n, D, q, R, scale, S, ld);
        else K.scores[(int)tier](packed, n, q, R, scale, S, ld);
    }
    void cpu_accumulate(const float *P, size_t ld, int R, float *out) const {
        const auto &K = kernels::scalar();
        if (tier == Tier::F16) K.f16_accumulate(v16.data(), n, D, P, ld, R, out);
        else K.accumulate[(int)tier](packed, n, P, ld, R, out);
    }
};

struct Diff {
    double max_abs = 0, max_ref = 0;
    void add(double ref, double got) {
        max_abs = std::max(max_abs, std::fabs(ref - got));
        max_ref = std::max(max_ref, std::fabs(ref));
    }
    double rel() const { return max_abs / std::max(max_ref, 1e-30); }
};

std::ostringstream checks;
int n_checks = 0, n_failed = 0;

void report(const char *kernel, const char *tier, int D, int32_t n, int R, const Diff &d, const char *extra = "") {
    const bool ok = d.rel() <= kTolerance;
    n_checks++;
    if (!ok) n_failed++;
    char line[512];
    snprintf(line, sizeof line, "%s{\"kernel\":\"%s\",\"tier\":\"%s\",\"headDim\":%d,\"tokens\":%d,\"rows\":%d,\"maxAbsDiff\":%.3g,\"maxAbsRef\":%.3g,\"relDiff\":%.3g,\"ok\":%s%s}",
             n_checks > 1 ? ",\n  " : "\n  ", kernel, tier, D, n, R, d.max_abs, d.max_ref, d.rel(), ok ? "true" : "false", extra);
    checks << line;
}

std::vector<int32_t> iota_pos(int32_t n, int32_t from = 0) {
    std::vector<int32_t> p(n);
    for (int32_t i = 0; i < n; i++) p[i] = from + i;
    return p;
}

void kernel_checks() {
    for (int D : {64, 128}) {
        for (int t = 0; t < kTierCount; t++) {
            const Tier tier = (Tier)t;
            for (int32_t n : quick ? std::vector<int32_t>{1, 77, 300} : std::vector<int32_t>{1, 77, 300, 1000}) {
                const std::vector<float> K = keys(n, D), V = randn((size_t)n * D);
                Both seg(tier, D, n, K.data(), V.data(), iota_pos(n));
                {
                    // the device holds exactly the CPU's bytes (device_layout.h): layout = CPU allocation
                    Diff d;
                    d.add((double)seg.cpu_bytes, (double)seg.dev.layout_bytes().total());
                    char extra[96];
                    snprintf(extra, sizeof extra, ",\"cpuBytes\":%zu,\"deviceBytes\":%zu", seg.cpu_bytes, seg.dev.layout_bytes().total());
                    report("bytes", tier_name(tier), D, n, 0, d, extra);
                }
                for (int R : quick ? std::vector<int>{1, 8} : std::vector<int>{1, 7, 8}) {
                    const size_t ld = n + 8;
                    const std::vector<float> q = randn((size_t)R * D);
                    const float scale = 1.0f / std::sqrt((float)D);
                    std::vector<float> Sc(R * ld, 0.0f), Sg(R * ld, 0.0f);
                    seg.cpu_scores(q.data(), R, scale, Sc.data(), ld);
                    cuda::scores(seg.dev, n, q.data(), R, scale, Sg.data(), ld);
                    Diff ds;
                    for (int r = 0; r < R; r++)
                        for (int32_t j = 0; j < n; j++) ds.add(Sc[r * ld + j], Sg[r * ld + j]);
                    report("scores", tier_name(tier), D, n, R, ds);

                    std::vector<float> P(R * ld, 0.0f);
                    std::uniform_real_distribution<float> u(0.0f, 1.0f);
                    for (auto &p : P) p = u(rng) < 0.2f ? 0.0f : u(rng);  // some exact zeros: the CPU skips those tokens
                    std::vector<float> oc = randn((size_t)R * D), og = oc;
                    seg.cpu_accumulate(P.data(), ld, R, oc.data());
                    cuda::accumulate(seg.dev, n, P.data(), ld, R, og.data());
                    Diff da;
                    for (size_t i = 0; i < oc.size(); i++) da.add(oc[i], og[i]);
                    report("accumulate", tier_name(tier), D, n, R, da);
                }
            }
        }
    }
}

// A head as the tiered cache holds it: f16 sinks, packed tiers over spread positions, an f16 recent window last.
struct Head {
    std::vector<Both *> segs;
    int32_t total = 0;
    ~Head() {
        for (auto *s : segs) delete s;
    }
};

void make_head(Head &h, int D, const std::vector<std::pair<Tier, int32_t>> &layout) {
    int32_t N = 0;
    for (auto &l : layout) N += l.second;
    // positions: sinks first, recent window last, the packed tiers interleaved in between (as a selection leaves them)
    std::vector<int32_t> middle;
    const int32_t first = layout.front().second, last = layout.back().second;
    for (int32_t p = first; p < N - last; p++) middle.push_back(p);
    std::shuffle(middle.begin(), middle.end(), rng);
    size_t mi = 0;
    for (size_t s = 0; s < layout.size(); s++) {
        const auto [tier, n] = layout[s];
        std::vector<int32_t> pos;
        if (s == 0) pos = iota_pos(n);
        else if (s + 1 == layout.size()) pos = iota_pos(n, N - last);
        else {
            pos.assign(middle.begin() + mi, middle.begin() + mi + n);
            mi += n;
            std::sort(pos.begin(), pos.end());
        }
        const std::vector<float> K = keys(n, D), V = randn((size_t)n * D);
        h.segs.push_back(new Both(tier, D, n, K.data(), V.data(), pos));
    }
    h.total = N;
}

// The CPU's attention over the head (attention.cpp without the fp16 roundings): scores of every segment into one
// row, mask by position, one softmax over the union (sum in double), then every segment's values.
void cpu_attend(const Head &h, const float *q, const int32_t *qpos, int R, float scale, float *out) {
    const int D = h.segs[0]->D;
    const size_t ld = h.total + 8;
    std::vector<float> S(R * ld, 0.0f);
    size_t off = 0;
    for (auto *s : h.segs) {
        s->cpu_scores(q, R, scale, S.data() + off, ld);
        off += s->n;
    }
    for (int r = 0; r < R; r++) {
        float *Sr = S.data() + r * ld;
        off = 0;
        float mx = -INFINITY;
        for (auto *s : h.segs) {
            for (int32_t j = 0; j < s->n; j++) {
                if (s->pos[j] > qpos[r]) Sr[off + j] = -INFINITY;
                else mx = std::max(mx, Sr[off + j]);
            }
            off += s->n;
        }
        double sum = 0;
        for (int32_t j = 0; j < h.total; j++) sum += (Sr[j] = std::exp(Sr[j] - mx));
        for (int32_t j = 0; j < h.total; j++) Sr[j] = (float)(Sr[j] / sum);
    }
    std::fill(out, out + (size_t)R * D, 0.0f);
    off = 0;
    for (auto *s : h.segs) {
        s->cpu_accumulate(S.data() + off, ld, R, out);
        off += s->n;
    }
}

void attention_checks() {
    const int D = 128;
    // mixed precision; the other tiers; policy full (quick: fewer tokens, still several chunks and blocks per tier)
    const int32_t k = quick ? 4 : 1;
    const std::vector<std::vector<std::pair<Tier, int32_t>>> layouts = {
        {{Tier::F16, 4}, {Tier::Kivi4, 700 / k}, {Tier::OneBit, 900 / k}, {Tier::F16, 64}},
        {{Tier::F16, 4}, {Tier::Q8, 513 / k}, {Tier::Kivi2, 333 / k}, {Tier::F16, 40}},
        {{Tier::F16, 1200 / k}},
    };
    for (size_t li = 0; li < layouts.size(); li++) {
        Head h;
        make_head(h, D, layouts[li]);
        for (int R : {7, 8}) {
            const std::vector<float> q = randn((size_t)R * D);
            std::vector<int32_t> qpos(R, h.total - 1);  // decode: every key visible
            if (R == 8)
                for (int r = 0; r < R; r++) qpos[r] = h.total / 2 + r * 37;  // prefill rows: later keys masked
            std::vector<const cuda::DeviceSegment *> dsegs;
            for (auto *s : h.segs) dsegs.push_back(&s->dev);
            std::vector<float> oc((size_t)R * D), og((size_t)R * D);
            const float scale = 1.0f / std::sqrt((float)D);
            cpu_attend(h, q.data(), qpos.data(), R, scale, oc.data());
            cuda::attend(dsegs, q.data(), qpos.data(), R, scale, og.data());
            Diff d;
            for (size_t i = 0; i < oc.size(); i++) d.add(oc[i], og[i]);
            std::string tiers;
            for (auto &l : layouts[li]) tiers += std::string(tiers.empty() ? "" : "+") + tier_name(l.first);
            report(R == 8 ? "attention-masked" : "attention", tiers.c_str(), D, h.total, R, d);
        }
    }
}

// Device time of whole-head decode attention (7 rows: Qwen2.5-Coder-7B's 28 query heads over 4 KV heads) over one
// head of n tokens in each tier, and the bytes it reads: a kernel figure, not the engine's decode speed.
std::string bench() {
    std::ostringstream o;
    const int D = 128, R = 7;
    bool firstRow = true;
    for (int32_t n : {32768, 131072}) {
        for (int t = 0; t < kTierCount; t++) {
            const Tier tier = (Tier)t;
            const std::vector<float> K = keys(n, D), V = randn((size_t)n * D);
            Both seg(tier, D, n, K.data(), V.data(), iota_pos(n));
            const std::vector<float> q = randn((size_t)R * D);
            std::vector<int32_t> qpos(R, n - 1);
            std::vector<float> out((size_t)R * D);
            std::vector<float> ms;
            for (int i = 0; i < 12; i++) ms.push_back(cuda::attend({&seg.dev}, q.data(), qpos.data(), R, 1.0f / std::sqrt((float)D), out.data()));
            ms.erase(ms.begin(), ms.begin() + 2);  // warm-up
            std::sort(ms.begin(), ms.end());
            const double med = ms[ms.size() / 2];
            const size_t bytes = seg.dev.layout_bytes().total();
            char line[256];
            snprintf(line, sizeof line, "%s{\"tier\":\"%s\",\"tokens\":%d,\"headDim\":%d,\"rows\":%d,\"deviceBytes\":%zu,\"medianMs\":%.4f,\"GBps\":%.1f}", firstRow ? "\n  " : ",\n  ",
                     tier_name(tier), n, D, R, bytes, med, bytes / (med * 1e-3) / 1e9);
            o << line;
            firstRow = false;
        }
    }
    return o.str();
}

}  // namespace

int main(int argc, char **argv) {
    bool do_bench = false;
    unsigned seed = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--bench")) do_bench = true;
        else if (!strcmp(argv[i], "--quick")) quick = true;
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = (unsigned)atoi(argv[++i]);
    }
    rng.seed(seed);
    std::string why;
    if (cuda::device_count(&why) == 0) {
        printf("{\"skipped\":true,\"reason\":\"%s\"}\n", why.c_str());
        return 77;
    }
    try {
        kernel_checks();
        attention_checks();
        const std::string b = do_bench ? bench() : "";
        printf("{\"device\":\"%s\",\"tolerance\":%g,\"checks\":[%s\n],\"failed\":%d,\"ok\":%s%s%s%s}\n", cuda::device_name().c_str(), kTolerance, checks.str().c_str(), n_failed,
               n_failed ? "false" : "true", do_bench ? ",\"bench\":[" : "", b.c_str(), do_bench ? "\n]" : "");
    } catch (const std::exception &e) {
        printf("{\"error\":\"%s\",\"checks\":[%s\n],\"ok\":false}\n", e.what(), checks.str().c_str());
        return 1;
    }
    return n_failed ? 1 : 0;
}
