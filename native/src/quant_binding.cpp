// N-API test bindings of the KV quantizers (src/quant/quant.h): addon.quant.{formats, bytes, quantize, info,
// dequantize, scores, accumulate, attention, dumpKv}. Used by test/native/quant*.test.mjs; not part of the typed
// sidecar API. dumpKv runs the target model through a native session and reads the post-RoPE K/V back through the
// public KvStore interface (read-only).
#include <napi.h>

#include <immintrin.h>

#include <cmath>
#include <memory>

#include "ggml-backend.h"

#include "attention.h"
#include "model.h"
#include "quant/quant.h"
#include "session.h"

namespace repokv {

namespace {

using quant::Format;
using quant::QuantSegment;

Format format_arg(const Napi::Value &v) {
    if (!v.IsString()) throw Napi::TypeError::New(v.Env(), "format must be a string");
    Format f;
    if (!quant::parse_format(v.As<Napi::String>().Utf8Value(), f)) throw Napi::TypeError::New(v.Env(), "unknown format " + v.As<Napi::String>().Utf8Value());
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
    for (Format f : {Format::Q8, Format::Kivi4, Format::Kivi2, Format::OneBit}) {
        Napi::Object o = Napi::Object::New(env);
        o.Set("name", quant::format_name(f));
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
    o.Set("format", quant::format_name(s.format));
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

// scores(seg, q (R x D), R, scale[, out]) -> Float32Array R x n (into `out` when given: bench kernels reuses one
// buffer, so that it times the kernel rather than the allocation)
Napi::Value Scores(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    const QuantSegment &s = seg_arg(info[0]);
    auto q = f32_arg(info[1], "q");
    const int R = info[2].As<Napi::Number>().Int32Value();
    const float scale = info[3].As<Napi::Number>().FloatValue();
    if (R < 1 || q.ElementLength() != (size_t)R * s.head_dim) throw Napi::RangeError::New(env, "q must be R x headDim");
    auto S = info.Length() > 4 && !info[4].IsUndefined() ? f32_arg(info[4], "out") : Napi::Float32Array::New(env, (size_t)R * s.n);
    if (S.ElementLength() != (size_t)R * s.n) throw Napi::RangeError::New(env, "out must be R x n");
    quant::scores(s, s.n, q.Data(), R, scale, S.Data(), s.n);
    return S;
}

// accumulate(seg, P (R x n), R) -> Float32Array R x D
Napi::Value Accumulate(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    const QuantSegment &s = seg_arg(info[0]);
    auto P = f32_arg(info[1], "P");
    const int R = info[2].As<Napi::Number>().Int32Value();
    if (R < 1 || P.ElementLength() != (size_t)R * s.n) throw Napi::RangeError::New(env, "P must be R x n");
    auto out = Napi::Float32Array::New(env, (size_t)R * s.head_dim);
    quant::accumulate(s, s.n, P.Data(), s.n, R, out.Data());
    return out;
}

// attention([seg...], q (R x D), R, scale) -> { out: R x D, partials: [{ m, l }] }: partial attention per segment,
// merged by log-sum-exp.
Napi::Value Attention(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!info[0].IsArray()) throw Napi::TypeError::New(env, "segments must be an array");
    auto arr = info[0].As<Napi::Array>();
    auto q = f32_arg(info[1], "q");
    const int R = info[2].As<Napi::Number>().Int32Value();
    const float scale = info[3].As<Napi::Number>().FloatValue();
    if (arr.Length() == 0) throw Napi::RangeError::New(env, "no segments");
    const int D = seg_arg(arr.Get(0u)).head_dim;
    if (R < 1 || q.ElementLength() != (size_t)R * D) throw Napi::RangeError::New(env, "q must be R x headDim");
    quant::Partial total, part;
    total.reset(R, D);
    Napi::Array parts = Napi::Array::New(env, arr.Length());
    for (uint32_t i = 0; i < arr.Length(); i++) {
        const QuantSegment &s = seg_arg(arr.Get(i));
        if (s.head_dim != D) throw Napi::RangeError::New(env, "segments differ in head dim");
        quant::partial_attention(s, q.Data(), R, scale, part);
        Napi::Object po = Napi::Object::New(env);
        auto m = Napi::Float32Array::New(env, R), l = Napi::Float32Array::New(env, R);
        std::copy(part.m.begin(), part.m.end(), m.Data());
        std::copy(part.l.begin(), part.l.end(), l.Data());
        po.Set("m", m);
        po.Set("l", l);
        parts.Set(i, po);
        quant::merge(total, part);
    }
    auto out = Napi::Float32Array::New(env, (size_t)R * D);
    quant::finish(total, out.Data());
    Napi::Object o = Napi::Object::New(env);
    o.Set("out", out);
    o.Set("partials", parts);
    return o;
}

// ---- a plain fp32 forward pass of llama/qwen2 (tests only): real post-RoPE queries for the attention tests --------

__attribute__((target("avx2,fma"))) float dot_avx2(const float *a, const float *b, int n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 15 < n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    }
    alignas(32) float l[8];
    _mm256_store_ps(l, _mm256_add_ps(acc0, acc1));
    float s = ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

float dot(const float *a, const float *b, int n) {
    static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (avx2) return dot_avx2(a, b, n);
    float s = 0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
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

}  // namespace

void register_quant_bindings(Napi::Env env, Napi::Object exports) {
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
    q.Set("attention", Napi::Function::New(env, Attention));
    q.Set("dumpKv", Napi::Function::New(env, DumpKv));
    exports.Set("quant", q);
}

}  // namespace repokv
