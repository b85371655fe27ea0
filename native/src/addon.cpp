// N-API binding of the repokv native engine (see sidecar/src/engine/native.ts for the typed wrapper).
#include <napi.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <memory>

#include <dlfcn.h>

#include "attention.h"
#include "cpu_variant.h"
#include "model.h"
#include "session.h"

using namespace repokv;

#include "kernels/kernels.h"
#include "quant/quant.h"
#include "storage_format.h"

#ifdef REPOKV_TEST_ADDON
// The test addon (native/build/repokv-test.node) is this file compiled with REPOKV_TEST_ADDON plus src/test/*.cpp:
// the product's exports and, for tests only, test/test_bindings.cpp's and NativeSession.dequantizeActive.
namespace repokv { void register_test_bindings(Napi::Env env, Napi::Object exports); }
#endif

namespace {

// A JS Error with the message; an EngineError's kind (e.g. ERR_GGUF_TRUNCATED) goes on its `code`.
Napi::Error js_error(Napi::Env env, const std::exception &e) {
    Napi::Error err = Napi::Error::New(env, e.what());
    if (auto *ee = dynamic_cast<const EngineError *>(&e); ee && !ee->code.empty()) err.Set("code", ee->code);
    return err;
}

int get_int(const Napi::Object &o, const char *key, int def) {
    if (!o.Has(key)) return def;
    Napi::Value v = o.Get(key);
    if (v.IsUndefined() || v.IsNull()) return def;
    if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string(key) + " must be a number");
    return v.As<Napi::Number>().Int32Value();
}

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
public:
    static Napi::FunctionReference ctor;
    static void Init(Napi::Env env, Napi::Object exports) {
        Napi::Function f = DefineClass(env, "NativeModel",
                                       {InstanceMethod("info", &ModelWrap::Info), InstanceMethod("setThreads", &ModelWrap::SetThreads),
                                        InstanceMethod("dispose", &ModelWrap::Dispose)});
        ctor = Napi::Persistent(f);
        exports.Set("NativeModel", f);
    }
    ModelWrap(const Napi::CallbackInfo &info) : Napi::ObjectWrap<ModelWrap>(info) {}

    std::shared_ptr<Model> model;

    std::shared_ptr<Model> get(Napi::Env env) {
        if (!model) throw Napi::Error::New(env, "model is disposed");
        return model;
    }

    Napi::Value Info(const Napi::CallbackInfo &info) {
        auto m = get(info.Env());
        const Hparams &hp = m->hparams();
        Napi::Object o = Napi::Object::New(info.Env());
        o.Set("path", m->path());
        o.Set("architecture", hp.arch_name);
        o.Set("nVocab", (double)hp.n_vocab);
        o.Set("nEmbd", (double)hp.n_embd);
        o.Set("nLayer", (double)hp.n_layer);
        o.Set("nHead", (double)hp.n_head);
        o.Set("nHeadKv", (double)hp.n_head_kv);
        o.Set("headDim", (double)hp.head_dim);
        o.Set("nFf", (double)hp.n_ff);
        o.Set("contextLength", (double)hp.n_ctx_train);
        o.Set("ropeType", hp.rope_type == GGML_ROPE_TYPE_NEOX ? "neox" : "normal");
        o.Set("ropeFreqBase", hp.rope_freq_base);
        o.Set("tiedOutput", m->tied_output);
        o.Set("weightBytes", (double)m->weight_bytes());
        o.Set("repackedBytes", (double)m->repacked_bytes());
        Napi::Object bufs = Napi::Object::New(info.Env());
        for (auto &b : m->weight_buffers()) bufs.Set(b.first, (double)b.second);
        o.Set("weightBuffers", bufs);
        o.Set("weightTypes", m->weight_type_summary());
        o.Set("threads", m->n_threads());
        return o;
    }
    Napi::Value SetThreads(const Napi::CallbackInfo &info) {
        if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(info.Env(), "threads must be a number");
        get(info.Env())->set_threads(info[0].As<Napi::Number>().Int32Value());
        return info.Env().Undefined();
    }
    Napi::Value Dispose(const Napi::CallbackInfo &info) {
        model.reset();
        return info.Env().Undefined();
    }
};
Napi::FunctionReference ModelWrap::ctor;

class SessionWrap : public Napi::ObjectWrap<SessionWrap> {
public:
    static Napi::FunctionReference ctor;
    static void Init(Napi::Env env, Napi::Object exports) {
        Napi::Function f = DefineClass(env, "NativeSession",
                                       {InstanceMethod("evalSync", &SessionWrap::EvalSync), InstanceMethod("evalAsync", &SessionWrap::EvalAsync),
                                        InstanceMethod("logits", &SessionWrap::Logits), InstanceMethod("nPast", &SessionWrap::NPast),
                                        InstanceMethod("truncate", &SessionWrap::Truncate), InstanceMethod("stats", &SessionWrap::Stats),
                                        InstanceMethod("rangeTiers", &SessionWrap::RangeTiers),
                                        InstanceMethod("observe", &SessionWrap::Observe), InstanceMethod("stopObserving", &SessionWrap::StopObserving),
                                        InstanceMethod("scores", &SessionWrap::Scores), InstanceMethod("compress", &SessionWrap::Compress),
                                        InstanceMethod("decompress", &SessionWrap::Decompress),
                                        InstanceMethod("beginTail", &SessionWrap::BeginTail), InstanceMethod("endTail", &SessionWrap::EndTail),
#ifdef REPOKV_TEST_ADDON
                                        InstanceMethod("dequantizeActive", &SessionWrap::DequantizeActive),
#endif
                                        InstanceMethod("setStaging", &SessionWrap::SetStaging),
                                        InstanceMethod("dispose", &SessionWrap::Dispose)});
        ctor = Napi::Persistent(f);
        exports.Set("NativeSession", f);
    }
    SessionWrap(const Napi::CallbackInfo &info) : Napi::ObjectWrap<SessionWrap>(info) {}

    std::shared_ptr<Session> session;
    std::atomic<bool> busy{false};

    Session &get(Napi::Env env) {
        if (!session) throw Napi::Error::New(env, "session is disposed");
        if (busy) throw Napi::Error::New(env, "session is busy (an evaluation is still running)");
        return *session;
    }

    static std::vector<int32_t> tokens_of(const Napi::Value &v) {
        std::vector<int32_t> out;
        if (v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_int32_array) {
            auto a = v.As<Napi::Int32Array>();
            out.assign(a.Data(), a.Data() + a.ElementLength());
        } else if (v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_uint32_array) {
            auto a = v.As<Napi::Uint32Array>();
            for (size_t i = 0; i < a.ElementLength(); i++) {
                // no wrap-around into a valid id: the vocabulary check (Session::eval) must see the real value
                if (a[i] > (uint32_t)INT32_MAX) throw Napi::RangeError::New(v.Env(), "token id " + std::to_string(a[i]) + " is out of range");
                out.push_back((int32_t)a[i]);
            }
        } else if (v.IsArray()) {
            auto a = v.As<Napi::Array>();
            for (uint32_t i = 0; i < a.Length(); i++) {
                Napi::Value e = a.Get(i);
                if (!e.IsNumber()) throw Napi::TypeError::New(v.Env(), "tokens must be numbers");
                const double d = e.As<Napi::Number>().DoubleValue();
                if (!(d == std::floor(d)) || d < INT32_MIN || d > INT32_MAX)
                    throw Napi::RangeError::New(v.Env(), "token id " + e.ToString().Utf8Value() + " is not an integer id");
                out.push_back((int32_t)d);
            }
        } else {
            throw Napi::TypeError::New(v.Env(), "tokens must be an array or Int32Array of token ids");
        }
        return out;
    }

    Napi::Value EvalSync(const Napi::CallbackInfo &info) {
        Session &s = get(info.Env());
        auto tokens = tokens_of(info[0]);
        bool all = info.Length() > 1 && info[1].ToBoolean();
        try {
            s.eval(tokens.data(), (int)tokens.size(), all);
        } catch (const EngineError &e) {
            throw js_error(info.Env(), e);
        }
        return Napi::Number::New(info.Env(), s.n_past());
    }

    class EvalWorker : public Napi::AsyncWorker {
    public:
        EvalWorker(Napi::Env env, SessionWrap *owner, std::vector<int32_t> tokens, bool all)
            : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), owner_(owner), session_(owner->session),
              tokens_(std::move(tokens)), all_(all) {
            owner_->Ref();
        }
        void Execute() override {
            try {
                session_->eval(tokens_.data(), (int)tokens_.size(), all_);
            } catch (const std::exception &e) {
                SetError(e.what());
            }
        }
        void OnOK() override {
            owner_->busy = false;
            owner_->Unref();
            deferred_.Resolve(Napi::Number::New(Env(), session_->n_past()));
        }
        void OnError(const Napi::Error &e) override {
            owner_->busy = false;
            owner_->Unref();
            deferred_.Reject(e.Value());
        }
        Napi::Promise promise() { return deferred_.Promise(); }

    private:
        Napi::Promise::Deferred deferred_;
        SessionWrap *owner_;
        std::shared_ptr<Session> session_;
        std::vector<int32_t> tokens_;
        bool all_;
    };

    Napi::Value EvalAsync(const Napi::CallbackInfo &info) {
        get(info.Env());
        auto tokens = tokens_of(info[0]);
        bool all = info.Length() > 1 && info[1].ToBoolean();
        busy = true;
        auto *w = new EvalWorker(info.Env(), this, std::move(tokens), all);
        Napi::Promise p = w->promise();
        w->Queue();
        return p;
    }

    Napi::Value Logits(const Napi::CallbackInfo &info) {
        Session &s = get(info.Env());
        const auto &l = s.logits();
        if (l.empty()) throw Napi::Error::New(info.Env(), "no logits: evaluate tokens first");
        // logits(row?) -> one row (default: the last); logits("all") -> every row
        const size_t n_vocab = (size_t)s.model().hparams().n_vocab;
        size_t row0 = (size_t)s.n_logit_rows() - 1, rows = 1;
        if (info.Length() > 0 && info[0].IsString() && info[0].As<Napi::String>().Utf8Value() == "all") {
            row0 = 0;
            rows = s.n_logit_rows();
        } else if (info.Length() > 0 && info[0].IsNumber()) {
            int r = info[0].As<Napi::Number>().Int32Value();
            if (r < 0 || r >= s.n_logit_rows()) throw Napi::RangeError::New(info.Env(), "logit row out of range");
            row0 = r;
        }
        auto out = Napi::Float32Array::New(info.Env(), rows * n_vocab);
        memcpy(out.Data(), l.data() + row0 * n_vocab, rows * n_vocab * sizeof(float));
        return out;
    }
    Napi::Value NPast(const Napi::CallbackInfo &info) { return Napi::Number::New(info.Env(), get(info.Env()).n_past()); }
    Napi::Value Truncate(const Napi::CallbackInfo &info) {
        Session &s = get(info.Env());
        if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(info.Env(), "position must be a number");
        s.truncate(info[0].As<Napi::Number>().Int32Value());
        return Napi::Number::New(info.Env(), s.n_past());
    }
    // observe(allRows, winFrom, specFrom, clear = true)
    Napi::Value Observe(const Napi::CallbackInfo &info) {
        Session &s = get(info.Env());
        if (info.Length() < 3 || !info[1].IsNumber() || !info[2].IsNumber()) throw Napi::TypeError::New(info.Env(), "observe(allRows, winFrom, specFrom)");
        s.observe(info[0].ToBoolean(), info[1].As<Napi::Number>().Int32Value(), info[2].As<Napi::Number>().Int32Value(), info.Length() < 4 || info[3].ToBoolean());
        return info.Env().Undefined();
    }
    Napi::Value StopObserving(const Napi::CallbackInfo &info) {
        get(info.Env()).stop_observing();
        return info.Env().Undefined();
    }
    // scores(kind, length) -> Float32Array [layer][head][length]; kind: h2o | snapkv (window sums) | window-max |
    // speckv (max over the window rows and the scoring pass rows)
    Napi::Value Scores(const Napi::CallbackInfo &info) {
        Napi::Env env = info.Env();
        Session &s = get(env);
        if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber()) throw Napi::TypeError::New(env, "scores(kind, length)");
        const std::string kind = info[0].As<Napi::String>().Utf8Value();
        const ScoreCollector &o = s.observed();
        const int32_t m = info[1].As<Napi::Number>().Int32Value();
        if (m < 0 || m > o.cap) throw Napi::RangeError::New(env, "scores: length out of range");
        const std::vector<float> *a = nullptr, *b = nullptr;
        if (kind == "h2o") a = &o.all_sum;
        else if (kind == "snapkv") a = &o.win_sum;
        else if (kind == "window-max") a = &o.win_max;
        else if (kind == "speckv") a = &o.win_max, b = &o.spec_max;
        else throw Napi::TypeError::New(env, "scores: unknown kind " + kind);
        if (a->empty()) throw Napi::Error::New(env, "scores: nothing observed for " + kind);
        const size_t nh = (size_t)o.n_layer * o.n_head_kv;
        auto out = Napi::Float32Array::New(env, nh * m);
        for (size_t i = 0; i < nh; i++)
            for (int32_t p = 0; p < m; p++) {
                float x = (*a)[i * o.cap + p];
                if (b) x = std::max(x, (*b)[i * o.cap + p]);
                out[i * m + p] = x;
            }
        return out;
    }
    // compress(keep, extraTokens, policy, dropMaster): keep is either Int32Array[] (layer * nHeadKv + head: positions
    // kept in fp16) or an object of such lists by tier name ({ f16, q8, kivi4, kivi2, onebit }; absent = none).
    Napi::Value Compress(const Napi::CallbackInfo &info) {
        Napi::Env env = info.Env();
        Session &s = get(env);
        if (info.Length() < 3 || !info[0].IsObject() || !info[1].IsNumber() || !info[2].IsString())
            throw Napi::TypeError::New(env, "compress(keep, extraTokens, policy, dropMaster)");
        auto lists = [&](Napi::Value v) {
            if (!v.IsArray()) throw Napi::TypeError::New(env, "compress: position lists must be an array (one per layer and KV head)");
            auto arr = v.As<Napi::Array>();
            std::vector<std::vector<int32_t>> keep(arr.Length());
            for (uint32_t i = 0; i < arr.Length(); i++) keep[i] = tokens_of(arr.Get(i));
            return keep;
        };
        std::vector<std::vector<std::vector<int32_t>>> tiers(kTierCount);
        if (info[0].IsArray()) {
            tiers[0] = lists(info[0]);
        } else {
            Napi::Object o = info[0].As<Napi::Object>();
            Napi::Array names = o.GetPropertyNames();
            for (uint32_t i = 0; i < names.Length(); i++) {
                const std::string name = names.Get(i).ToString().Utf8Value();
                Tier t;
                if (!parse_tier(name, t)) throw Napi::TypeError::New(env, "compress: unknown tier '" + name + "' (f16, q8, kivi4, kivi2, onebit)");
                tiers[(int)t] = lists(o.Get(name));
            }
        }
        try {
            s.compress_tiered(tiers, info[1].As<Napi::Number>().Int32Value(), info[2].As<Napi::String>().Utf8Value(), info.Length() > 3 && info[3].ToBoolean());
        } catch (const std::exception &e) {
            throw js_error(env, e);
        }
        return Napi::Number::New(env, s.n_past());
    }
    Napi::Value SetStaging(const Napi::CallbackInfo &info) {
        // false / undefined: off; true: q8 (the original meaning); a tier name: that tier
        Napi::Env env = info.Env();
        Tier tier = Tier::F16;
        if (info.Length() > 0 && info[0].IsString()) {
            const std::string name = info[0].As<Napi::String>().Utf8Value();
            if (!parse_tier(name, tier)) throw Napi::TypeError::New(env, "setStaging: unknown tier '" + name + "'");
        } else if (info.Length() > 0 && info[0].ToBoolean()) {
            tier = Tier::Q8;
        }
        try {
            get(env).set_staging(tier);
        } catch (const std::exception &e) {
            throw js_error(env, e);
        }
        return env.Undefined();
    }
#ifdef REPOKV_TEST_ADDON
    Napi::Value DequantizeActive(const Napi::CallbackInfo &info) {
        Session &s = get(info.Env());
        try {
            s.dequantize_active();
        } catch (const std::exception &e) {
            throw js_error(info.Env(), e);
        }
        return info.Env().Undefined();
    }
#endif
    // beginTail(from) / endTail(): Session::begin_tail / end_tail (prefix reuse that keeps the compressed store).
    Napi::Value BeginTail(const Napi::CallbackInfo &info) {
        Napi::Env env = info.Env();
        if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "beginTail(position)");
        Session &s = get(env);
        try {
            s.begin_tail(info[0].As<Napi::Number>().Int32Value());
        } catch (const std::exception &e) {
            throw js_error(env, e);
        }
        return Napi::Number::New(env, s.n_past());
    }
    Napi::Value EndTail(const Napi::CallbackInfo &info) {
        Session &s = get(info.Env());
        try {
            s.end_tail();
        } catch (const std::exception &e) {
            throw js_error(info.Env(), e);
        }
        return Napi::Number::New(info.Env(), s.n_past());
    }
    Napi::Value Decompress(const Napi::CallbackInfo &info) {
        Session &s = get(info.Env());
        s.decompress();
        return Napi::Number::New(info.Env(), s.n_past());
    }
    // rangeTiers(bounds: Int32Array): bounds sorted (non-decreasing), range r = [bounds[r], bounds[r + 1]). Returns a
    // Float64Array of (bounds.length - 1) x kTierCount: cells [r * kTierCount + tier] = number of (layer, KV head,
    // position) entries with the position in range r held in that tier, in the store attention reads (kv()).
    // Positions outside every range are not counted; a dropped position is in no segment, so in no count.
    Napi::Value RangeTiers(const Napi::CallbackInfo &info) {
        Session &s = get(info.Env());
        Napi::Env env = info.Env();
        if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
            throw Napi::TypeError::New(env, "rangeTiers: bounds must be an Int32Array");
        Napi::Int32Array arr = info[0].As<Napi::Int32Array>();
        std::vector<int32_t> bounds(arr.Data(), arr.Data() + arr.ElementLength());
        for (size_t i = 1; i < bounds.size(); i++)
            if (bounds[i] < bounds[i - 1]) throw Napi::RangeError::New(env, "rangeTiers: bounds must be sorted");
        const size_t ranges = bounds.size() < 2 ? 0 : bounds.size() - 1;
        Napi::Float64Array out = Napi::Float64Array::New(env, ranges * kTierCount);
        for (size_t i = 0; i < out.ElementLength(); i++) out[i] = 0;
        if (ranges == 0) return out;
        const KvStore &kv = s.kv();
        std::vector<double> counts(ranges * kTierCount, 0.0);
        for (int l = 0; l < kv.n_layer(); l++) {
            for (int h = 0; h < kv.n_head_kv(); h++) {
                for (const Segment &seg : kv.head(l, h).segments) {
                    const int t = (int)seg.tier;
                    for (int32_t i = 0; i < seg.n; i++) {
                        const int32_t p = seg.pos[(size_t)i];
                        if (p < bounds.front() || p >= bounds.back()) continue;
                        // the last bound <= p: range index (empty ranges are skipped by upper_bound)
                        const size_t r = (size_t)(std::upper_bound(bounds.begin(), bounds.end(), p) - bounds.begin()) - 1;
                        counts[r * kTierCount + t] += 1;
                    }
                }
            }
        }
        for (size_t i = 0; i < counts.size(); i++) out[i] = counts[i];
        return out;
    }

    static size_t store_bytes(const KvStore &kv) { return kv.bytes_used(); }

    Napi::Value Stats(const Napi::CallbackInfo &info) {
        Session &s = get(info.Env());
        Napi::Env env = info.Env();
        const KvStore &kv = s.kv();
        Napi::Object o = Napi::Object::New(env);
        o.Set("policy", s.policy());
        o.Set("compressed", s.compressed());
        o.Set("masterTokens", s.master_length());
        o.Set("masterBytes", (double)s.master().bytes_used());
        o.Set("tokens", s.n_past());
        o.Set("contextSize", s.context_size());
        size_t total = 0, reserved = 0, positions = 0;
        size_t tier_bytes[kTierCount] = {0}, tier_tokens[kTierCount] = {0};
        Napi::Array layers = Napi::Array::New(env, kv.n_layer());
        for (int l = 0; l < kv.n_layer(); l++) {
            Napi::Array heads = Napi::Array::New(env, kv.n_head_kv());
            for (int h = 0; h < kv.n_head_kv(); h++) {
                const HeadCache &hc = kv.head(l, h);
                size_t bytes = 0;
                Napi::Array segs = Napi::Array::New(env, hc.segments.size());
                for (size_t i = 0; i < hc.segments.size(); i++) {
                    const Segment &seg = hc.segments[i];
                    Napi::Object so = Napi::Object::New(env);
                    so.Set("tier", tier_name(seg.tier));
                    so.Set("tokens", seg.n);
                    so.Set("bytes", (double)seg.bytes_used());
                    so.Set("positionBytes", (double)seg.position_bytes());
                    segs.Set((uint32_t)i, so);
                    bytes += seg.bytes_used();
                    reserved += seg.bytes_reserved();
                    positions += seg.position_bytes();
                    tier_bytes[(int)seg.tier] += seg.bytes_used();
                    tier_tokens[(int)seg.tier] += seg.n;
                }
                Napi::Object ho = Napi::Object::New(env);
                ho.Set("tokens", hc.n_tokens());
                ho.Set("bytes", (double)bytes);
                ho.Set("segments", segs);
                heads.Set((uint32_t)h, ho);
                total += bytes;
            }
            Napi::Object lo = Napi::Object::New(env);
            lo.Set("heads", heads);
            layers.Set((uint32_t)l, lo);
        }
        o.Set("layers", layers);
        o.Set("bytes", (double)total);
        o.Set("reservedBytes", (double)reserved);
        o.Set("positionBytes", (double)positions);
        // totals per tier (tiers with no tokens are left out)
        Napi::Object tiers = Napi::Object::New(env);
        for (int t = 0; t < kTierCount; t++) {
            if (!tier_tokens[t]) continue;
            Napi::Object to = Napi::Object::New(env);
            to.Set("tokens", (double)tier_tokens[t]);
            to.Set("bytes", (double)tier_bytes[t]);
            tiers.Set(tier_name((Tier)t), to);
        }
        o.Set("tiers", tiers);
        const SessionTimings &t = s.timings();
        Napi::Object tm = Napi::Object::New(env);
        tm.Set("prefillMs", t.prefill_ms);
        tm.Set("prefillTokens", (double)t.prefill_tokens);
        tm.Set("decodeMs", t.decode_ms);
        tm.Set("decodeTokens", (double)t.decode_tokens);
        tm.Set("compressMs", t.compress_ms);
        o.Set("timings", tm);
        return o;
    }
    Napi::Value Dispose(const Napi::CallbackInfo &info) {
        if (busy) throw Napi::Error::New(info.Env(), "session is busy (an evaluation is still running)");
        session.reset();
        return info.Env().Undefined();
    }
};
Napi::FunctionReference SessionWrap::ctor;

Napi::Value LoadModel(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "loadModel(path, { threads }) needs a path");
    std::string path = info[0].As<Napi::String>().Utf8Value();
    int threads = physical_cores();
    if (info.Length() > 1 && info[1].IsObject()) threads = get_int(info[1].As<Napi::Object>(), "threads", threads);
    if (threads < 1) throw Napi::RangeError::New(env, "threads must be >= 1");
    Napi::Object obj = ModelWrap::ctor.New({});
    try {
        ModelWrap::Unwrap(obj)->model = std::make_shared<Model>(path, threads);
    } catch (const std::exception &e) {
        throw js_error(env, e);
    }
    return obj;
}

// loadModelAsync(path, { threads }) -> Promise<NativeModel>: reads the weights off the main thread.
class LoadWorker : public Napi::AsyncWorker {
public:
    LoadWorker(Napi::Env env, std::string path, int threads)
        : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), path_(std::move(path)), threads_(threads) {}
    void Execute() override {
        try {
            model_ = std::make_shared<Model>(path_, threads_);
        } catch (const EngineError &e) {
            code_ = e.code;
            SetError(e.what());
        } catch (const std::exception &e) {
            SetError(e.what());
        }
    }
    void OnOK() override {
        Napi::Object obj = ModelWrap::ctor.New({});
        ModelWrap::Unwrap(obj)->model = model_;
        deferred_.Resolve(obj);
    }
    void OnError(const Napi::Error &e) override {
        if (!code_.empty()) e.Value().Set("code", code_);
        deferred_.Reject(e.Value());
    }
    Napi::Promise promise() { return deferred_.Promise(); }

private:
    Napi::Promise::Deferred deferred_;
    std::string code_;
    std::string path_;
    int threads_;
    std::shared_ptr<Model> model_;
};

Napi::Value LoadModelAsync(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "loadModelAsync(path, { threads }) needs a path");
    int threads = physical_cores();
    if (info.Length() > 1 && info[1].IsObject()) threads = get_int(info[1].As<Napi::Object>(), "threads", threads);
    if (threads < 1) throw Napi::RangeError::New(env, "threads must be >= 1");
    try {
        Runtime::get();  // load the backends on the main thread
    } catch (const std::exception &e) {
        throw js_error(env, e);
    }
    auto *w = new LoadWorker(env, info[0].As<Napi::String>().Utf8Value(), threads);
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
}

Napi::Value CreateSession(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "createSession(model, options) needs a model");
    ModelWrap *mw = ModelWrap::Unwrap(info[0].As<Napi::Object>());
    auto model = mw->get(env);
    int ctx = 4096, batch = 512;
    if (info.Length() > 1 && info[1].IsObject()) {
        auto o = info[1].As<Napi::Object>();
        ctx = get_int(o, "contextSize", ctx);
        batch = get_int(o, "batchSize", batch);
    }
    if (ctx <= 0) throw Napi::RangeError::New(env, "contextSize must be positive");
    if (batch <= 0) throw Napi::RangeError::New(env, "batchSize must be positive");
    Napi::Object obj = SessionWrap::ctor.New({});
    try {
        SessionWrap::Unwrap(obj)->session = std::make_shared<Session>(model, ctx, batch);
    } catch (const std::exception &e) {
        throw js_error(env, e);
    }
    return obj;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
    ModelWrap::Init(env, exports);
    SessionWrap::Init(env, exports);
    exports.Set("loadModel", Napi::Function::New(env, LoadModel));
    exports.Set("loadModelAsync", Napi::Function::New(env, LoadModelAsync));
    exports.Set("createSession", Napi::Function::New(env, CreateSession));
#ifdef REPOKV_TEST_ADDON
    register_test_bindings(env, exports);
#endif
    // storageFormats: the engine's storage tiers in Tier order (storage_format.h; rangeTiers' columns), the one name
    // table of the JS side: [{ name, packed, tokenBlock }]
    Napi::Array formats = Napi::Array::New(env, kTierCount);
    for (int i = 0; i < kTierCount; i++) {
        Napi::Object o = Napi::Object::New(env);
        o.Set("name", kTiers[i].name);
        o.Set("packed", kTiers[i].packed);
        o.Set("tokenBlock", quant::token_block(kTiers[i].tier));
        formats.Set((uint32_t)i, o);
    }
    exports.Set("storageFormats", formats);
    // formatBytes(name, headDim, n) -> { key, value, meta, total, bitsPerElement }: the exact bytes n tokens of one KV
    // head take in a storage format (quant::format_bytes: what a packed segment allocates; f16: 2 bytes per element);
    // positions (4 bytes per token in every format) are not included
    exports.Set("formatBytes", Napi::Function::New(env, [](const Napi::CallbackInfo &info) {
                    Napi::Env env = info.Env();
                    Tier t;
                    if (info.Length() < 3 || !info[0].IsString() || !info[1].IsNumber() || !info[2].IsNumber())
                        throw Napi::TypeError::New(env, "formatBytes(name, headDim, tokens)");
                    const std::string name = info[0].As<Napi::String>().Utf8Value();
                    if (!parse_tier(name, t)) throw Napi::TypeError::New(env, "formatBytes: unknown storage format '" + name + "'");
                    const int D = info[1].As<Napi::Number>().Int32Value();
                    const int32_t n = info[2].As<Napi::Number>().Int32Value();
                    if (D <= 0 || n < 0) throw Napi::RangeError::New(env, "formatBytes: headDim must be positive and tokens non-negative");
                    if (t != Tier::F16 && !quant::supports_head_dim(t, D))
                        throw Napi::RangeError::New(env, "formatBytes: " + name + " does not support head dim " + std::to_string(D));
                    const quant::ByteCount b = quant::format_bytes(t, D, n);
                    Napi::Object o = Napi::Object::New(env);
                    o.Set("key", (double)b.key);
                    o.Set("value", (double)b.value);
                    o.Set("meta", (double)b.meta);
                    o.Set("total", (double)b.total());
                    o.Set("bitsPerElement", quant::bits_per_element(t, D, n));
                    return o;
                }));
    // cpuVariants() -> [{ name, score }]: ggml's CPU variant libraries next to libggml-base.so, scored on this CPU (0 =
    // cannot run here). Loads no backend (cpu_variant.h).
    exports.Set("cpuVariants", Napi::Function::New(env, [](const Napi::CallbackInfo &info) {
                    Dl_info dl{};
                    std::string dir = ".";
                    if (dladdr((void *)&ggml_init, &dl) && dl.dli_fname) dir = std::string(dl.dli_fname).substr(0, std::string(dl.dli_fname).rfind('/'));
                    Napi::Array a = Napi::Array::New(info.Env());
                    uint32_t i = 0;
                    for (const CpuVariant &v : cpu_variants(dir)) {
                        Napi::Object o = Napi::Object::New(info.Env());
                        o.Set("name", v.name);
                        o.Set("score", v.score);
                        a.Set(i++, o);
                    }
                    return a;
                }));
    exports.Set("physicalCores", Napi::Function::New(env, [](const Napi::CallbackInfo &info) { return Napi::Number::New(info.Env(), physical_cores()); }));
    exports.Set("runtimeInfo", Napi::Function::New(env, [](const Napi::CallbackInfo &info) {
                    Napi::Object o = Napi::Object::New(info.Env());
                    try {
                        o.Set("binsDir", Runtime::get().bins_dir);
                    } catch (const std::exception &e) {
                        throw js_error(info.Env(), e);
                    }
                    o.Set("simd", attention_simd());
                    o.Set("kernels", kernels::active().name);
                    Runtime &rt = Runtime::get();
                    o.Set("bitExactWithLlamaCpp", rt.bit_exact_with_llama);
                    Napi::Object feats = Napi::Object::New(info.Env());
                    for (auto &f : rt.cpu_features) feats.Set(f.first, f.second);
                    o.Set("cpuFeatures", feats);
                    o.Set("cpuVariant", rt.cpu_variant);
                    o.Set("cpuVariantForced", rt.cpu_variant_forced);
                    o.Set("physicalCores", physical_cores());
                    return o;
                }));
    return exports;
}

}  // namespace

NODE_API_MODULE(repokv, Init)
