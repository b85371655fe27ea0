#include "session.h"

#include <chrono>
#include <algorithm>
#include <cstring>
#include <string>

namespace repokv {

Session::Session(std::shared_ptr<Model> model, int32_t context_size, int n_batch)
    : model_(std::move(model)),
      context_size_(context_size),
      n_batch_(n_batch),
      kv_((int)model_->hparams().n_layer, (int)model_->hparams().n_head_kv, (int)model_->hparams().head_dim, context_size) {
    const Hparams &hp = model_->hparams();
    if (context_size <= 0) throw EngineError("contextSize must be positive");
    if (n_batch_ <= 0) n_batch_ = 512;
    layer_ctx_.resize(hp.n_layer);
    for (int il = 0; il < hp.n_layer; il++) {
        AttnLayerCtx &c = layer_ctx_[il];
        c.store = &kv_;
        c.layer = il;
        c.n_head = (int)hp.n_head;
        c.n_head_kv = (int)hp.n_head_kv;
        c.head_dim = (int)hp.head_dim;
        c.scale = hp.kq_scale;
        c.obs = &obs_;
    }
    obs_.init((int)hp.n_layer, (int)hp.n_head_kv, context_size);
    const size_t graph_size = 1024 + (size_t)hp.n_layer * 48;
    graph_mem_.resize(ggml_tensor_overhead() * graph_size + ggml_graph_overhead_custom(graph_size, false));
    galloc_ = ggml_gallocr_new(ggml_backend_get_default_buffer_type(model_->backend()));
    if (!galloc_) throw EngineError("could not create the graph allocator");
}

Session::~Session() {
    if (galloc_) ggml_gallocr_free(galloc_);
}

void Session::set_store(KvStore *store) {
    for (auto &c : layer_ctx_) c.store = store;
}

void Session::truncate(int32_t position) {
    if (position < 0) position = 0;
    if (in_tail()) {
        // a prefix reuse left unfinished (e.g. an aborted prefill): the compressed store no longer matches
        tail_from_ = -1;
        decompress();
    }
    if (position >= n_past_) return;
    if (active_ && position > master_len_) {
        active_->truncate(position);
    } else {
        if (active_) decompress();
        if (position < master_len_) kv_.truncate(position);
        master_len_ = std::min(master_len_, position);
    }
    n_past_ = position;
    logits_.clear();
    n_logit_rows_ = 0;
}

void Session::set_staging(Tier tier) {
    if (tier == Tier::OneBit) throw EngineError("staging: onebit cannot stage the master copy (q8, kivi4 or kivi2)");
    if (tier != Tier::F16 && !quant::supports_head_dim(tier, kv_.head_dim()))
        throw EngineError(std::string("staging: ") + tier_name(tier) + " does not support head dim " + std::to_string(kv_.head_dim()));
    staging_ = tier;
}

void Session::observe(bool all_rows, int32_t win_from, int32_t spec_from, bool clear) { obs_.reset(all_rows, win_from, spec_from, clear); }

void Session::compress(const std::vector<std::vector<int32_t>> &keep, int32_t extra_tokens, const std::string &policy, bool drop_master) {
    compress_tiered({keep}, extra_tokens, policy, drop_master);
}

void Session::compress_tiered(const std::vector<std::vector<std::vector<int32_t>>> &tiers, int32_t extra_tokens, const std::string &policy,
                              bool drop_master) {
    auto t0 = std::chrono::steady_clock::now();
    if (active_) decompress();
    if (n_past_ != master_len_) throw EngineError("compress: the session is not at the end of its master copy");
    active_ = KvStore::compact_tiered(kv_, tiers, extra_tokens);
    policy_ = policy;
    set_store(active_.get());
    if (drop_master) {
        // nothing to return to: the master's memory is released (the next request prefills from scratch)
        kv_ = KvStore(kv_.n_layer(), kv_.n_head_kv(), kv_.head_dim(), kv_.context_size(), 0);
        master_len_ = 0;
    }
    timings_.compress_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

void Session::begin_tail(int32_t from) {
    if (!active_) throw EngineError("begin_tail: the session is not compressed");
    if (in_tail()) throw EngineError("begin_tail: a prefix reuse is already under way");
    if (from < 0 || from > master_len_)
        throw EngineError("begin_tail: position " + std::to_string(from) + " is outside the master copy (" + std::to_string(master_len_) + " tokens)");
    active_->truncate(from);
    kv_.truncate(from);
    master_len_ = from;
    n_past_ = from;
    tail_from_ = from;
    set_store(&kv_);
    logits_.clear();
    n_logit_rows_ = 0;
}

void Session::end_tail() {
    if (!in_tail()) throw EngineError("end_tail: begin_tail was not called");
    auto t0 = std::chrono::steady_clock::now();
    active_->append_from(kv_, tail_from_);
    tail_from_ = -1;
    set_store(active_.get());
    n_past_ = master_len_;
    timings_.compress_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

void Session::decompress() {
    tail_from_ = -1;
    if (!active_) return;
    active_.reset();
    set_store(&kv_);
    policy_ = "full";
    n_past_ = master_len_;
    logits_.clear();
    n_logit_rows_ = 0;
}

void Session::eval(const int32_t *tokens, int n, bool all_logits) {
    if (n <= 0) throw EngineError("no tokens to evaluate");
    const int64_t n_vocab = model_->hparams().n_vocab;
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= n_vocab)
            throw EngineError("token id " + std::to_string(tokens[i]) + " is out of range (vocabulary size " + std::to_string(n_vocab) + ")");
    if ((int64_t)n_past_ + n > context_size_)
        throw EngineError("context is full: " + std::to_string(n_past_) + " + " + std::to_string(n) + " tokens exceed contextSize " + std::to_string(context_size_));
    std::lock_guard<std::mutex> lock(model_->compute_mutex());
    auto t0 = std::chrono::steady_clock::now();
    n_logit_rows_ = all_logits ? n : 1;
    logits_.resize((size_t)n_logit_rows_ * n_vocab);
    for (int i = 0; i < n; i += n_batch_) {
        const int m = std::min(n_batch_, n - i);
        const bool last = i + m == n;
        float *out = all_logits ? logits_.data() + (size_t)i * n_vocab : (last ? logits_.data() : nullptr);
        eval_ubatch(tokens + i, m, all_logits, out);
        if (staging_ != Tier::F16 && writes_master()) kv_.stage(staging_, kStageSinks, kStageRecent, kStageMinMove);
    }
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (n == 1) {
        timings_.decode_ms += ms;
        timings_.decode_tokens += 1;
    } else {
        timings_.prefill_ms += ms;
        timings_.prefill_tokens += n;
    }
}

void Session::eval_ubatch(const int32_t *tokens, int n, bool all_logits, float *out) {
    const Model &M = *model_;
    const Hparams &hp = M.hparams();
    const int64_t hd = hp.head_dim;

    ggml_init_params ip{};
    ip.mem_size = graph_mem_.size();
    ip.mem_buffer = graph_mem_.data();
    ip.no_alloc = true;
    ggml_context *ctx = ggml_init(ip);
    if (!ctx) throw EngineError("could not create the graph context");
    struct CtxGuard {
        ggml_context *c;
        ~CtxGuard() { ggml_free(c); }
    } guard{ctx};

    const size_t graph_size = 1024 + (size_t)hp.n_layer * 48;
    ggml_cgraph *gf = ggml_new_graph_custom(ctx, graph_size, false);

    ggml_tensor *inp_tokens = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, n);
    ggml_set_name(inp_tokens, "inp_tokens");
    ggml_set_input(inp_tokens);
    ggml_tensor *inp_pos = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, n);
    ggml_set_name(inp_pos, "inp_pos");
    ggml_set_input(inp_pos);
    ggml_tensor *inp_out = nullptr;
    if (!all_logits && out) {
        inp_out = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, 1);
        ggml_set_name(inp_out, "inp_out_ids");
        ggml_set_input(inp_out);
    }

    positions_.resize(n);
    for (int i = 0; i < n; i++) positions_[i] = n_past_ + i;

    ggml_tensor *inpL = ggml_get_rows(ctx, M.tok_embd, inp_tokens);
    ggml_tensor *last_hidden = nullptr;
    for (int il = 0; il < hp.n_layer; il++) {
        const Layer &L = M.layers[il];
        AttnLayerCtx &lc = layer_ctx_[il];
        lc.positions = positions_.data();
        lc.n_tokens = n;

        ggml_tensor *inpSA = inpL;
        ggml_tensor *cur = ggml_mul(ctx, ggml_rms_norm(ctx, inpL, hp.rms_eps), L.attn_norm);

        ggml_tensor *Q = ggml_mul_mat(ctx, L.wq, cur);
        if (L.bq) Q = ggml_add(ctx, Q, L.bq);
        ggml_tensor *K = ggml_mul_mat(ctx, L.wk, cur);
        if (L.bk) K = ggml_add(ctx, K, L.bk);
        ggml_tensor *V = ggml_mul_mat(ctx, L.wv, cur);
        if (L.bv) V = ggml_add(ctx, V, L.bv);
        Q = ggml_reshape_3d(ctx, Q, hd, hp.n_head, n);
        K = ggml_reshape_3d(ctx, K, hd, hp.n_head_kv, n);
        V = ggml_reshape_3d(ctx, V, hd, hp.n_head_kv, n);
        Q = ggml_rope_ext(ctx, Q, inp_pos, M.rope_freqs, (int)hp.n_rot, hp.rope_type, (int)hp.n_ctx_train, hp.rope_freq_base,
                          hp.rope_freq_scale, 0.0f, 1.0f, 32.0f, 1.0f);
        K = ggml_rope_ext(ctx, K, inp_pos, M.rope_freqs, (int)hp.n_rot, hp.rope_type, (int)hp.n_ctx_train, hp.rope_freq_base,
                          hp.rope_freq_scale, 0.0f, 1.0f, 32.0f, 1.0f);

        // K/V go into our store (post-RoPE, at their positions); attention reads the store.
        ggml_tensor *kv_args[2] = {K, V};
        ggml_tensor *written = ggml_custom_4d(ctx, GGML_TYPE_F32, 1, 1, 1, 1, kv_args, 2, kv_write_op, GGML_N_TASKS_MAX, &lc);
        if (!out && il == hp.n_layer - 1) {
            // No logits from this micro-batch: after the last layer's K/V are stored, nothing else is needed.
            last_hidden = written;
            break;
        }
        ggml_tensor *attn_args[2] = {Q, written};
        cur = ggml_custom_4d(ctx, GGML_TYPE_F32, hd * hp.n_head, n, 1, 1, attn_args, 2, attention_op, GGML_N_TASKS_MAX, &lc);

        cur = ggml_mul_mat(ctx, L.wo, cur);
        if (L.bo) cur = ggml_add(ctx, cur, L.bo);

        if (il == hp.n_layer - 1 && inp_out) {
            cur = ggml_get_rows(ctx, cur, inp_out);
            inpSA = ggml_get_rows(ctx, inpSA, inp_out);
        }
        ggml_tensor *ffn_inp = ggml_add(ctx, cur, inpSA);
        cur = ggml_mul(ctx, ggml_rms_norm(ctx, ffn_inp, hp.rms_eps), L.ffn_norm);
        ggml_tensor *gate = ggml_mul_mat(ctx, L.ffn_gate, cur);
        ggml_tensor *up = ggml_mul_mat(ctx, L.ffn_up, cur);
        cur = ggml_swiglu_split(ctx, gate, up);
        cur = ggml_mul_mat(ctx, L.ffn_down, cur);
        cur = ggml_add(ctx, cur, ffn_inp);
        inpL = cur;
    }
    ggml_tensor *result = nullptr;
    if (out) {
        ggml_tensor *cur = ggml_mul(ctx, ggml_rms_norm(ctx, inpL, hp.rms_eps), M.output_norm);
        result = ggml_mul_mat(ctx, M.output, cur);
        ggml_set_output(result);
        ggml_build_forward_expand(gf, result);
    } else {
        // No logits wanted from this micro-batch: the graph ends at the last layer's KV write.
        ggml_build_forward_expand(gf, last_hidden);
    }

    if (!ops_checked_) {
        for (int i = 0; i < ggml_graph_n_nodes(gf); i++) {
            ggml_tensor *node = ggml_graph_node(gf, i);
            if (!ggml_backend_supports_op(M.backend(), node)) {
                std::string types;
                for (int s = 0; s < GGML_MAX_SRC && node->src[s]; s++) types += std::string(s ? "," : "") + ggml_type_name(node->src[s]->type);
                throw EngineError(std::string("the ggml CPU backend does not support ") + ggml_op_desc(node) + " on " + types);
            }
        }
        ops_checked_ = true;
    }

    if (!ggml_gallocr_alloc_graph(galloc_, gf)) throw EngineError("out of memory allocating the compute graph");
    ggml_backend_tensor_set(inp_tokens, tokens, 0, n * sizeof(int32_t));
    ggml_backend_tensor_set(inp_pos, positions_.data(), 0, n * sizeof(int32_t));
    if (inp_out) {
        int32_t last = n - 1;
        ggml_backend_tensor_set(inp_out, &last, 0, sizeof(int32_t));
    }
    if (ggml_backend_graph_compute(M.backend(), gf) != GGML_STATUS_SUCCESS) {
        // The KV store may hold part of this batch: roll it back.
        (writes_master() ? kv_ : *active_).truncate(n_past_);
        throw EngineError("graph computation failed");
    }
    n_past_ += n;
    if (writes_master()) master_len_ = n_past_;
    if (out) {
        const size_t rows = all_logits ? (size_t)n : 1;
        ggml_backend_tensor_get(result, out, 0, rows * hp.n_vocab * sizeof(float));
    }
}

}  // namespace repokv
