// N-API bindings for tests only, in the test addon (native/build/repokv-test.node, never shipped; native/build.mjs):
//   addon.quant.{formats, bytes, quantize, append, truncate, info, dequantize, rotateNormals, scores, accumulate,
//                kernelSets, f16Scores, f16Accumulate, softmaxKernels, dumpKv, deviceBytes,
//                deviceDecode}: the KV quantizers (src/quant/) and the
//                kernel tables (src/kernels/), each table callable by name so tests compare SIMD with portable;
//   addon.scoreAttention: one layer's attention op with importance observation on given queries and keys;
//   NativeSession.dequantizeActive (addon.cpp under REPOKV_TEST_ADDON).
// dumpKv runs the target model through a native session and reads the post-RoPE K/V back through the public KvStore
// interface (read-only).
#include <napi.h>

#include <climits>
#include <cmath>
#include <cstring>
#include <memory>

#include "ggml-backend.h"

#include "../attention.h"
#include "../cuda/decode.h"
#include "../cuda/device_layout.h"
#include "../kernels/kernels.h"
#include "../model.h"
#include "../quant/quant.h"
#include "../session.h"

namespace repokv {

namespace {

using quant::Format;
using quant::QuantSegment;

Format format_arg(const Napi::Value &v) {
    if (!v.IsString()) throw Napi::TypeError::New(v.Env(), "format must be a string");
    Format f;
    if (!parse_tier(v.As<Napi::String>().Utf8Value(), f) || f == Tier::F16) throw Napi::TypeError::New(v.Env(), "unknown format " + v.As<Napi::String>().Utf8Value());
    return f;
}

Napi::Float32Array f32_arg(const Napi::Value &v, const char *what) {
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
        throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a Float32Array");
    return v.As<Napi::Float32Array>();
}

QuantSegment &seg_arg(const Napi::Value &v) {
    if (!v.IsExternal()) throw Napi::TypeError::New(v.Env(), "expected a quantized segment (from quant.quantize)");
    return *v.As<Napi::External<QuantSegment>>().Data();
}

Napi::Object bytes_obj(Napi::Env env, const quant::ByteCount &b) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("key", (double)b.key);
    o.Set("value", (double)b.value);
    o.Set("meta", (double)b.meta);
    o.Set("total", (double)b.total());
    return o;
}

Napi::Value Formats(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    const int D = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 64;
    Napi::Array a = Napi::Array::New(env);
    uint32_t i = 0;
    for (const TierInfo &t : kTiers) {
        if (!t.packed) continue;
        const Format f = t.tier;
        Napi::Object o = Napi::Object::New(env);
        o.Set("name", t.name);
        o.Set("tokenBlock", quant::token_block(f));
        o.Set("supported", quant::supports_head_dim(f, D));
        if (quant::supports_head_dim(f, D)) {
            o.Set("keyBits", quant::key_bits_per_element(f, D));
            o.Set("valueBits", quant::value_bits_per_element(f, D));
        }
        a.Set(i++, o);
    }
    return a;
}

// bytes(format, headDim, n) -> { key, value, meta, total, bitsPerElement }
Napi::Value Bytes(const Napi::CallbackInfo &info) {
    const Format f = format_arg(info[0]);
    const int D = info[1].As<Napi::Number>().Int32Value();
    const int32_t n = info[2].As<Napi::Number>().Int32Value();
    Napi::Object o = bytes_obj(info.Env(), quant::format_bytes(f, D, n));
    o.Set("bitsPerElement", quant::bits_per_element(f, D, n));
    return o;
}

// quantize(format, headDim, K, V, { maskOf }) -> External segment (K, V: n x headDim, token-major); maskOf: a onebit
// segment whose outlier channels to use
Napi::Value Quantize(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    const Format f = format_arg(info[0]);
    const int D = info[1].As<Napi::Number>().Int32Value();
    auto K = f32_arg(info[2], "K"), V = f32_arg(info[3], "V");
    if (D <= 0 || K.ElementLength() % D || K.ElementLength() != V.ElementLength()) throw Napi::RangeError::New(env, "K and V must be n x headDim");
    const int32_t n = (int32_t)(K.ElementLength() / D);
    const uint8_t *mask = nullptr;
    if (info.Length() > 4 && info[4].IsObject() && info[4].As<Napi::Object>().Has("maskOf")) {
        const QuantSegment &other = seg_arg(info[4].As<Napi::Object>().Get("maskOf"));
        if (other.format != Format::OneBit || other.head_dim != D) throw Napi::TypeError::New(env, "maskOf must be a onebit segment of the same head dim");
        mask = other.meta.data();
    }
    try {
        auto *seg = new QuantSegment(quant::quantize(f, D, n, K.Data(), V.Data(), mask));
        return Napi::External<QuantSegment>::New(env, seg, [](Napi::Env, QuantSegment *s) { delete s; });
    } catch (const std::exception &e) {
        throw Napi::Error::New(env, e.what());
    }
}

// append(seg, more): seg += more (whole blocks, see quant.h)
Napi::Value Append(const Napi::CallbackInfo &info) {
    QuantSegment &s = seg_arg(info[0]);
    try {
        quant::append(s, seg_arg(info[1]));
    } catch (const std::exception &e) {
        throw Napi::Error::New(info.Env(), e.what());
    }
    return info.Env().Undefined();
}

// truncate(seg, nKeep) -> whether the format truncates in place, losslessly (q8, kivi; onebit: false, seg unchanged)
Napi::Value Truncate(const Napi::CallbackInfo &info) {
    QuantSegment &s = seg_arg(info[0]);
    return Napi::Boolean::New(info.Env(), quant::truncate(s, info[1].As<Napi::Number>().Int32Value()));
}

Napi::Value Info(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    const QuantSegment &s = seg_arg(info[0]);
    Napi::Object o = Napi::Object::New(env);
    o.Set("format", tier_name(s.format));
    o.Set("tokens", s.n);
    o.Set("headDim", s.head_dim);
    o.Set("allocated", bytes_obj(env, s.bytes()));
    o.Set("accounted", bytes_obj(env, quant::format_bytes(s.format, s.head_dim, s.n)));
    o.Set("bitsPerElement", quant::bits_per_element(s.format, s.head_dim, s.n));
    if (s.format == Format::OneBit) {
        Napi::Array outl = Napi::Array::New(env);
        uint32_t j = 0;
        for (int c = 0; c < s.head_dim; c++)
            if (s.meta[c / 8] >> (c % 8) & 1) outl.Set(j++, c);
        o.Set("outlierChannels", outl);
        o.Set("rotated", (bool)(s.meta[s.head_dim / 8] & 1));
    }
    return o;
}

// rotateNormals(onebit seg, x (n x D)) -> n x (D − D/4): the normal channels in the basis the segment stores them
// (sign flips and Walsh–Hadamard transform if its flag says so), for tests that reason about the stored codes
Napi::Value RotateNormals(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    const QuantSegment &s = seg_arg(info[0]);
    auto x = f32_arg(info[1], "x");
    const int D = s.head_dim, Dn = D - D / 4;
    if (s.format != Format::OneBit) throw Napi::TypeError::New(env, "rotateNormals needs a onebit segment");
    if (x.ElementLength() % D) throw Napi::RangeError::New(env, "x must be n x headDim");
    const size_t n = x.ElementLength() / D;
    auto out = Napi::Float32Array::New(env, n * Dn);
    for (size_t t = 0; t < n; t++) quant::onebit_rotate_normals(s.meta.data(), D, x.Data() + t * D, out.Data() + t * Dn);
    return out;
}

Napi::Value Dequantize(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    const QuantSegment &s = seg_arg(info[0]);
    auto K = Napi::Float32Array::New(env, (size_t)s.n * s.head_dim), V = Napi::Float32Array::New(env, (size_t)s.n * s.head_dim);
    quant::dequantize(s, K.Data(), V.Data());
    Napi::Object o = Napi::Object::New(env);
    o.Set("k", K);
    o.Set("v", V);
    return o;
}

// The kernel table named `v` (kernels.h: "scalar", "avx2", ...), or the engine's when undefined; an error when this
// build or CPU lacks it.
const kernels::Kernels &kernels_arg(const Napi::Value &v) {
    if (v.IsUndefined()) return kernels::active();
    const std::string name = v.ToString().Utf8Value();
    for (const kernels::Kernels *k : kernels::available())
        if (name == k->name) return *k;
    throw Napi::Error::New(v.Env(), "kernel table '" + name + "' is not available on this CPU");
}

// kernelSets() -> the names of the kernel tables this build has and this CPU runs, portable first; active: the engine's
Napi::Value KernelSets(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    Napi::Array a = Napi::Array::New(env);
    uint32_t i = 0;
    for (const kernels::Kernels *k : kernels::available()) a.Set(i++, k->name);
    Napi::Object o = Napi::Object::New(env);
    o.Set("available", a);
    o.Set("active", kernels::active().name);
    return o;
}

// scores(seg, q (R x D), R, scale[, out[, kernels]]) -> Float32Array R x n (into `out` when given: bench kernels reuses
// one buffer, so that it times the kernel rather than the allocation); `kernels`: a table name (kernelSets)
Napi::Value Scores(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    const QuantSegment &s = seg_arg(info[0]);
    auto q = f32_arg(info[1], "q");
    const int R = info[2].As<Napi::Number>().Int32Value();
    const float scale = info[3].As<Napi::Number>().FloatValue();
    if (R < 1 || q.ElementLength() != (size_t)R * s.head_dim) throw Napi::RangeError::New(env, "q must be R x headDim");
    auto S = info.Length() > 4 && !info[4].IsUndefined() ? f32_arg(info[4], "out") : Napi::Float32Array::New(env, (size_t)R * s.n);
    if (S.ElementLength() != (size_t)R * s.n) throw Napi::RangeError::New(env, "out must be R x n");
    if (s.n > 0) kernels_arg(info[5]).scores[(int)s.format](s, s.n, q.Data(), R, scale, S.Data(), s.n);
    return S;
}

// accumulate(seg, P (R x n), R[, kernels]) -> Float32Array R x D
Napi::Value Accumulate(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    const QuantSegment &s = seg_arg(info[0]);
    auto P = f32_arg(info[1], "P");
    const int R = info[2].As<Napi::Number>().Int32Value();
    if (R < 1 || P.ElementLength() != (size_t)R * s.n) throw Napi::RangeError::New(env, "P must be R x n");
    auto out = Napi::Float32Array::New(env, (size_t)R * s.head_dim);
    if (s.n > 0) kernels_arg(info[3]).accumulate[(int)s.format](s, s.n, P.Data(), s.n, R, out.Data());
    return out;
}

// An fp16 segment of n tokens (K, V: n x D floats) in the store's layout, positions 0..n-1.
Segment f16_segment(Napi::Env env, const Napi::Float32Array &K, const Napi::Float32Array &V, int D) {
    if (D <= 0 || D % 8 || K.ElementLength() % D || V.ElementLength() != K.ElementLength()) throw Napi::RangeError::New(env, "K and V must be n x headDim, headDim a multiple of 8");
    const int32_t n = (int32_t)(K.ElementLength() / D);
    Segment seg(Tier::F16, D, n);
    for (int32_t t = 0; t < n; t++) seg.append(K.Data() + (size_t)t * D, V.Data() + (size_t)t * D, t);
    return seg;
}

// f16Scores(kernels, K (n x D), D, q (R x D), R, scale, single) -> Float32Array R x n: a table's fp16 score kernel
// (single: the decode-order variant)
Napi::Value F16Scores(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    const kernels::Kernels &k = kernels_arg(info[0]);
    auto K = f32_arg(info[1], "K");
    const int D = info[2].As<Napi::Number>().Int32Value();
    auto q = f32_arg(info[3], "q");
    const int R = info[4].As<Napi::Number>().Int32Value();
    const float scale = info[5].As<Napi::Number>().FloatValue();
    const bool single = info[6].ToBoolean();
    if (R < 1 || q.ElementLength() != (size_t)R * D) throw Napi::RangeError::New(env, "q must be R x headDim");
    const Segment seg = f16_segment(env, K, K, D);
    // rows of stride n + 8: the kernels may write up to 7 floats past n (kernels.h)
    const size_t ld = (size_t)seg.n + 8;
    std::vector<float> buf(ld * R);
    if (seg.n > 0) (single ? k.f16_scores_single : k.f16_scores)(seg.k.data(), seg.n, D, q.Data(), R, scale, buf.data(), ld);
    auto S = Napi::Float32Array::New(env, (size_t)R * seg.n);
    for (int r = 0; r < R; r++) memcpy(S.Data() + (size_t)r * seg.n, buf.data() + r * ld, (size_t)seg.n * sizeof(float));
    return S;
}

// f16Accumulate(kernels, V (n x D), D, P (R x n), R, single) -> Float32Array R x D
Napi::Value F16Accumulate(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    const kernels::Kernels &k = kernels_arg(info[0]);
    auto V = f32_arg(info[1], "V");
    const int D = info[2].As<Napi::Number>().Int32Value();
    auto P = f32_arg(info[3], "P");
    const int R = info[4].As<Napi::Number>().Int32Value();
    const bool single = info[5].ToBoolean();
    const Segment seg = f16_segment(env, V, V, D);
    if (R < 1 || P.ElementLength() != (size_t)R * seg.n) throw Napi::RangeError::New(env, "P must be R x n");
    auto out = Napi::Float32Array::New(env, (size_t)R * D);
    if (seg.n > 0) (single ? k.f16_accumulate_single : k.f16_accumulate)(seg.v.data(), seg.n, D, P.Data(), seg.n, R, out.Data());
    return out;
}

// softmaxKernels(kernels, x, mul) -> { max, sum, exp: exp(x − max), round: fp16(x · mul), f16: fp16 bits of x }
Napi::Value SoftmaxKernels(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    const kernels::Kernels &k = kernels_arg(info[0]);
    auto x = f32_arg(info[1], "x");
    const float mul = info[2].As<Napi::Number>().FloatValue();
    const int32_t n = (int32_t)x.ElementLength();
    Napi::Object o = Napi::Object::New(env);
    const float mx = k.max(x.Data(), n);
    o.Set("max", mx);
    auto e = Napi::Float32Array::New(env, n), r = Napi::Float32Array::New(env, n);
    memcpy(e.Data(), x.Data(), (size_t)n * 4);
    memcpy(r.Data(), x.Data(), (size_t)n * 4);
    o.Set("sum", k.exp_sum(e.Data(), n, mx));
    k.scale_round_f16(r.Data(), (size_t)n, mul);
    auto h = Napi::Uint16Array::New(env, n);
    k.to_f16(x.Data(), h.Data(), n, 1);
    o.Set("exp", e);
    o.Set("round", r);
    o.Set("f16", h);
    return o;
}

// ---- a plain fp32 forward pass of llama/qwen2 (tests only): real post-RoPE queries for the attention tests --------

// 16 lane accumulators with fused multiply-adds, summed ((l0+l4)+(l1+l5))+((l2+l6)+(l3+l7)); on x86-64 also cloned
// for x86-64-v3, where the compiler vectorises it
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("arch=haswell", "default")))
#endif
float dot(const float *a, const float *b, int n) {
    float acc0[8] = {0, 0, 0, 0, 0, 0, 0, 0}, acc1[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int i = 0;
    for (; i + 15 < n; i += 16)
        for (int l = 0; l < 8; l++) {
            acc0[l] = std::fma(a[i + l], b[i + l], acc0[l]);
            acc1[l] = std::fma(a[i + 8 + l], b[i + 8 + l], acc1[l]);
        }
    float l[8];
    for (int k = 0; k < 8; k++) l[k] = acc0[k] + acc1[k];
    float s = ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

// y[o] = W[o] . x (+ b[o]); W: out x in, row-major (ggml's [in, out])
void matvec(const std::vector<float> &W, const std::vector<float> &b, const float *x, int in, int out, float *y) {
    for (int o = 0; o < out; o++) y[o] = dot(W.data() + (size_t)o * in, x, in) + (b.empty() ? 0.0f : b[o]);
}

void rms_norm(const float *x, const std::vector<float> &w, int n, float eps, float *y) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    const float r = 1.0f / std::sqrt((float)(ss / n) + eps);
    for (int i = 0; i < n; i++) y[i] = x[i] * r * w[i];
}

void rope(float *x, int n_head, int D, int n_rot, int pos, const Hparams &hp, const std::vector<float> &factors) {
    for (int h = 0; h < n_head; h++) {
        float *v = x + (size_t)h * D;
        for (int i = 0; i < n_rot / 2; i++) {
            float theta = (float)pos * hp.rope_freq_scale * std::pow(hp.rope_freq_base, -2.0f * i / n_rot);
            if (!factors.empty()) theta /= factors[i];
            const float c = std::cos(theta), s = std::sin(theta);
            const int a = hp.rope_type == GGML_ROPE_TYPE_NEOX ? i : 2 * i, b = hp.rope_type == GGML_ROPE_TYPE_NEOX ? i + n_rot / 2 : 2 * i + 1;
            const float x0 = v[a], x1 = v[b];
            v[a] = x0 * c - x1 * s;
            v[b] = x0 * s + x1 * c;
        }
    }
}

// Q and K (post-RoPE) of every layer: q[layer]: n x n_head x D, k[layer]: n x n_head_kv x D.
void reference_qk(const Model &m, const int32_t *tokens, int n, std::vector<std::vector<float>> &Qs, std::vector<std::vector<float>> &Ks) {
    const Hparams &hp = m.hparams();
    const int E = (int)hp.n_embd, H = (int)hp.n_head, HK = (int)hp.n_head_kv, D = (int)hp.head_dim, F = (int)hp.n_ff, G = H / HK;
    const float scale = hp.kq_scale != 0 ? hp.kq_scale : 1.0f / std::sqrt((float)D);
    const std::vector<float> emb = m.weight_f32(m.tok_embd), factors = m.weight_f32(m.rope_freqs);
    std::vector<float> X((size_t)n * E);
    for (int t = 0; t < n; t++) memcpy(X.data() + (size_t)t * E, emb.data() + (size_t)tokens[t] * E, E * 4);
    std::vector<float> xn(E), q((size_t)n * H * D), k((size_t)n * HK * D), v((size_t)n * HK * D), att(H * D), o(E), g(F), u(F), p(n);
    Qs.assign(hp.n_layer, {});
    Ks.assign(hp.n_layer, {});
    for (int l = 0; l < hp.n_layer; l++) {
        const Layer &L = m.layers[l];
        // weights as the file stores them (model.h: the backend's copy may be repacked for its CPU variant)
        const auto an = m.weight_f32(L.attn_norm), wq = m.weight_f32(L.wq), wk = m.weight_f32(L.wk), wv = m.weight_f32(L.wv), wo = m.weight_f32(L.wo);
        const auto bq = m.weight_f32(L.bq), bk = m.weight_f32(L.bk), bv = m.weight_f32(L.bv), bo = m.weight_f32(L.bo);
        const auto fn = m.weight_f32(L.ffn_norm), wg = m.weight_f32(L.ffn_gate), wu = m.weight_f32(L.ffn_up), wd = m.weight_f32(L.ffn_down);
        for (int t = 0; t < n; t++) {
            rms_norm(X.data() + (size_t)t * E, an, E, hp.rms_eps, xn.data());
            matvec(wq, bq, xn.data(), E, H * D, q.data() + (size_t)t * H * D);
            matvec(wk, bk, xn.data(), E, HK * D, k.data() + (size_t)t * HK * D);
            matvec(wv, bv, xn.data(), E, HK * D, v.data() + (size_t)t * HK * D);
            rope(q.data() + (size_t)t * H * D, H, D, (int)hp.n_rot, t, hp, factors);
            rope(k.data() + (size_t)t * HK * D, HK, D, (int)hp.n_rot, t, hp, factors);
        }
        Qs[l] = q;
        Ks[l] = k;
        for (int t = 0; t < n; t++) {
            for (int h = 0; h < H; h++) {
                const float *qh = q.data() + ((size_t)t * H + h) * D;
                float mx = -INFINITY;
                for (int j = 0; j <= t; j++) mx = std::max(mx, p[j] = dot(qh, k.data() + ((size_t)j * HK + h / G) * D, D) * scale);
                double sum = 0;
                for (int j = 0; j <= t; j++) sum += (p[j] = std::exp(p[j] - mx));
                float *a = att.data() + (size_t)h * D;
                std::fill(a, a + D, 0.0f);
                for (int j = 0; j <= t; j++) {
                    const float w = (float)(p[j] / sum);
                    const float *vj = v.data() + ((size_t)j * HK + h / G) * D;
                    for (int c = 0; c < D; c++) a[c] += w * vj[c];
                }
            }
            matvec(wo, bo, att.data(), H * D, E, o.data());
            float *x = X.data() + (size_t)t * E;
            for (int i = 0; i < E; i++) x[i] += o[i];
            rms_norm(x, fn, E, hp.rms_eps, xn.data());
            matvec(wg, {}, xn.data(), E, F, g.data());
            matvec(wu, {}, xn.data(), E, F, u.data());
            for (int i = 0; i < F; i++) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
            matvec(wd, {}, g.data(), F, E, o.data());
            for (int i = 0; i < E; i++) x[i] += o[i];
        }
    }
}

// dumpKv(modelPath, tokens Int32Array, { threads, queries }) -> { nLayer, nHeadKv, nHead, headDim, tokens,
// k: Float32Array[layer * nHeadKv + head] (tokens x headDim, the engine's fp16 store), v: likewise,
// with queries: q[layer] (tokens x nHead x headDim) and kRef[layer] (tokens x nHeadKv x headDim) from an fp32
// reference forward pass }
Napi::Value DumpKv(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!info[0].IsString()) throw Napi::TypeError::New(env, "dumpKv(modelPath, tokens) needs a path");
    if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) throw Napi::TypeError::New(env, "tokens must be an Int32Array");
    auto toks = info[1].As<Napi::Int32Array>();
    int threads = 1;
    if (info.Length() > 2 && info[2].IsObject() && info[2].As<Napi::Object>().Has("threads")) threads = info[2].As<Napi::Object>().Get("threads").As<Napi::Number>().Int32Value();
    try {
        auto model = std::make_shared<Model>(info[0].As<Napi::String>().Utf8Value(), threads);
        Session session(model, (int32_t)toks.ElementLength() + 8, 512);
        session.eval(toks.Data(), (int)toks.ElementLength(), false);
        const KvStore &kv = session.kv();
        const int D = kv.head_dim();
        Napi::Array ks = Napi::Array::New(env), vs = Napi::Array::New(env);
        std::vector<float> kt(D), vt(D);
        for (int l = 0; l < kv.n_layer(); l++)
            for (int h = 0; h < kv.n_head_kv(); h++) {
                const HeadCache &hc = kv.head(l, h);
                const int32_t n = hc.n_tokens();
                auto K = Napi::Float32Array::New(env, (size_t)n * D), V = Napi::Float32Array::New(env, (size_t)n * D);
                for (const Segment &seg : hc.segments)
                    for (int32_t t = 0; t < seg.n; t++) {
                        segment_token(seg, t, kt.data(), vt.data());
                        const int32_t p = seg.pos[t];
                        if (p < 0 || p >= n) continue;
                        std::copy(kt.begin(), kt.end(), K.Data() + (size_t)p * D);
                        std::copy(vt.begin(), vt.end(), V.Data() + (size_t)p * D);
                    }
                ks.Set((uint32_t)(l * kv.n_head_kv() + h), K);
                vs.Set((uint32_t)(l * kv.n_head_kv() + h), V);
            }
        Napi::Object o = Napi::Object::New(env);
        if (info.Length() > 2 && info[2].IsObject() && info[2].As<Napi::Object>().Get("queries").ToBoolean()) {
            // real post-RoPE queries from an fp32 reference forward pass (and its keys, to check it against the engine)
            std::vector<std::vector<float>> Qs, Ks;
            reference_qk(*model, toks.Data(), (int)toks.ElementLength(), Qs, Ks);
            Napi::Array qa = Napi::Array::New(env), ka = Napi::Array::New(env);
            for (size_t l = 0; l < Qs.size(); l++) {
                auto qf = Napi::Float32Array::New(env, Qs[l].size()), kf = Napi::Float32Array::New(env, Ks[l].size());
                std::copy(Qs[l].begin(), Qs[l].end(), qf.Data());
                std::copy(Ks[l].begin(), Ks[l].end(), kf.Data());
                qa.Set((uint32_t)l, qf);
                ka.Set((uint32_t)l, kf);
            }
            o.Set("q", qa);
            o.Set("kRef", ka);
        }
        o.Set("nLayer", kv.n_layer());
        o.Set("nHeadKv", kv.n_head_kv());
        o.Set("nHead", model->hparams().n_head);
        o.Set("headDim", D);
        o.Set("tokens", (double)toks.ElementLength());
        o.Set("k", ks);
        o.Set("v", vs);
        return o;
    } catch (const std::exception &e) {
        throw Napi::Error::New(env, e.what());
    }
}

int get_int(const Napi::Object &o, const char *key, int def) {
    if (!o.Has(key)) return def;
    Napi::Value v = o.Get(key);
    if (v.IsUndefined() || v.IsNull()) return def;
    if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string(key) + " must be a number");
    return v.As<Napi::Number>().Int32Value();
}

std::vector<int32_t> positions_of(const Napi::Value &v) {
    if (v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_int32_array) {
        auto a = v.As<Napi::Int32Array>();
        return std::vector<int32_t>(a.Data(), a.Data() + a.ElementLength());
    }
    if (!v.IsArray()) throw Napi::TypeError::New(v.Env(), "positions must be an array or Int32Array");
    auto a = v.As<Napi::Array>();
    std::vector<int32_t> out;
    for (uint32_t i = 0; i < a.Length(); i++) out.push_back(a.Get(i).As<Napi::Number>().Int32Value());
    return out;
}

// scoreAttention({ q, k, nHead, nHeadKv, headDim, qPos, kPos, allRows, winFrom, specFrom }): runs the attention op
// of one layer on given post-RoPE queries (q: [rows][nHead][headDim]) and keys (k: [keys][nHeadKv][headDim], values
// zero) with importance observation on, and returns the collector's accumulators ([head][maxPos + 1] each). For tests
// of the scoring pass against a dense computation.
Napi::Value ScoreAttention(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "scoreAttention(options)");
    auto o = info[0].As<Napi::Object>();
    const int hq = get_int(o, "nHead", 1), hkv = get_int(o, "nHeadKv", 1), d = get_int(o, "headDim", 8);
    if (hq % hkv || d % 8) throw Napi::RangeError::New(env, "nHead must be a multiple of nHeadKv and headDim of 8");
    auto q = o.Get("q").As<Napi::Float32Array>();
    auto k = o.Get("k").As<Napi::Float32Array>();
    auto qpos = positions_of(o.Get("qPos"));
    auto kpos = positions_of(o.Get("kPos"));
    const int nq = (int)qpos.size(), nk = (int)kpos.size();
    if (q.ElementLength() != (size_t)nq * hq * d || k.ElementLength() != (size_t)nk * hkv * d) throw Napi::RangeError::New(env, "q/k sizes");
    int32_t cap = 1;
    for (int32_t p : kpos) cap = std::max(cap, p + 1);
    KvStore store(1, hkv, d, cap);
    std::vector<float> zeros(d, 0.0f);
    for (int h = 0; h < hkv; h++)
        for (int t = 0; t < nk; t++) store.append_segment(0, h).append(k.Data() + ((size_t)t * hkv + h) * d, zeros.data(), kpos[t]);
    ScoreCollector obs;
    obs.init(1, hkv, cap);
    obs.reset(o.Has("allRows") && o.Get("allRows").ToBoolean(), get_int(o, "winFrom", INT32_MAX), get_int(o, "specFrom", INT32_MAX));
    AttnLayerCtx c;
    c.store = &store;
    c.layer = 0;
    c.n_head = hq;
    c.n_head_kv = hkv;
    c.head_dim = d;
    c.scale = 1.0f / std::sqrt((float)d);
    c.positions = qpos.data();
    c.n_tokens = nq;
    c.obs = &obs;
    ggml_tensor Q{}, dst{};
    std::vector<float> out((size_t)nq * hq * d);
    Q.data = q.Data();
    Q.nb[0] = 4;
    Q.nb[1] = (size_t)d * 4;
    Q.nb[2] = (size_t)hq * d * 4;
    dst.data = out.data();
    dst.nb[0] = 4;
    dst.nb[1] = (size_t)hq * d * 4;
    dst.src[0] = &Q;
    attention_op(&dst, 0, 1, &c);
    Napi::Object r = Napi::Object::New(env);
    auto put = [&](const char *name, const std::vector<float> &v) {
        auto a = Napi::Float32Array::New(env, v.size());
        std::copy(v.begin(), v.end(), a.Data());
        r.Set(name, a);
    };
    put("allSum", obs.all_sum);
    put("winSum", obs.win_sum);
    put("winMax", obs.win_max);
    put("specMax", obs.spec_max);
    r.Set("length", cap);
    return r;
}

// deviceBytes(format, headDim, tokens): the bytes of one segment's device layout (cuda/device_layout.h: key, value,
// meta, pos, total), for f16 too; test/native/cuda.test.mjs checks them against the CPU's allocations without a GPU.
Napi::Value DeviceBytes(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    Tier t;
    if (info.Length() < 3 || !info[0].IsString() || !parse_tier(info[0].As<Napi::String>().Utf8Value(), t) || !info[1].IsNumber() || !info[2].IsNumber())
        throw Napi::TypeError::New(env, "deviceBytes(format, headDim, tokens)");
    const cuda::SegmentBytes b = cuda::device_segment_bytes(t, info[1].As<Napi::Number>().Int32Value(), info[2].As<Napi::Number>().Int32Value());
    Napi::Object o = Napi::Object::New(env);
    o.Set("key", (double)b.key);
    o.Set("value", (double)b.value);
    o.Set("meta", (double)b.meta);
    o.Set("pos", (double)b.pos);
    o.Set("total", (double)b.total());
    return o;
}

// deviceDecode(segment, 'k' | 'v'): a packed segment's keys or values (n x D floats) decoded element by element with
// the CUDA kernels' own decoders (cuda/decode.h) on the CPU, for comparison with quant.dequantize. onebit keys have
// no element decoder (the kernels score them in the rotated basis): an error.
Napi::Value DeviceDecode(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    const QuantSegment &s = seg_arg(info[0]);
    const bool keys = info.Length() > 1 && info[1].IsString() && info[1].As<Napi::String>().Utf8Value() == "k";
    if (keys && s.format == Format::OneBit) throw Napi::Error::New(env, "onebit keys have no element decoder");
    const cuda::SegView v{(int)s.format, s.head_dim, s.n, s.k.data(), s.v.data(), s.meta.data()};
    Napi::Float32Array out = Napi::Float32Array::New(env, (size_t)s.n * s.head_dim);
    float *o = out.Data();
    for (int32_t t = 0; t < s.n; t++)
        for (int c = 0; c < s.head_dim; c++) {
            float x = 0;
            switch (s.format) {
                case Format::Q8: x = keys ? cuda::key_at<(int)Tier::Q8>(v, t, c) : cuda::value_at<(int)Tier::Q8>(v, t, c); break;
                case Format::Kivi4: x = keys ? cuda::key_at<(int)Tier::Kivi4>(v, t, c) : cuda::value_at<(int)Tier::Kivi4>(v, t, c); break;
                case Format::Kivi2: x = keys ? cuda::key_at<(int)Tier::Kivi2>(v, t, c) : cuda::value_at<(int)Tier::Kivi2>(v, t, c); break;
                case Format::OneBit: x = cuda::value_at<(int)Tier::OneBit>(v, t, c); break;
                case Format::F16: break;
            }
            o[(size_t)t * s.head_dim + c] = x;
        }
    return out;
}

}  // namespace

void register_test_bindings(Napi::Env env, Napi::Object exports) {
    Napi::Object q = Napi::Object::New(env);
    q.Set("formats", Napi::Function::New(env, Formats));
    q.Set("bytes", Napi::Function::New(env, Bytes));
    q.Set("quantize", Napi::Function::New(env, Quantize));
    q.Set("append", Napi::Function::New(env, Append));
    q.Set("truncate", Napi::Function::New(env, Truncate));
    q.Set("info", Napi::Function::New(env, Info));
    q.Set("dequantize", Napi::Function::New(env, Dequantize));
    q.Set("rotateNormals", Napi::Function::New(env, RotateNormals));
    q.Set("scores", Napi::Function::New(env, Scores));
    q.Set("accumulate", Napi::Function::New(env, Accumulate));
    q.Set("kernelSets", Napi::Function::New(env, KernelSets));
    q.Set("f16Scores", Napi::Function::New(env, F16Scores));
    q.Set("f16Accumulate", Napi::Function::New(env, F16Accumulate));
    q.Set("softmaxKernels", Napi::Function::New(env, SoftmaxKernels));
    q.Set("dumpKv", Napi::Function::New(env, DumpKv));
    q.Set("deviceBytes", Napi::Function::New(env, DeviceBytes));
    q.Set("deviceDecode", Napi::Function::New(env, DeviceDecode));
    exports.Set("quant", q);
    exports.Set("scoreAttention", Napi::Function::New(env, ScoreAttention));
}

}  // namespace repokv
