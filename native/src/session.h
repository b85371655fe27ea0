// An inference session: the target model's forward pass (ggml graph) with attention over repokv's KV store.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "attention.h"
#include "ggml-alloc.h"
#include "kv_store.h"
#include "model.h"

namespace repokv {

struct SessionTimings {
    double prefill_ms = 0, decode_ms = 0, compress_ms = 0;
    int64_t prefill_tokens = 0, decode_tokens = 0;
};

class Session {
public:
    Session(std::shared_ptr<Model> model, int32_t context_size, int n_batch);
    ~Session();
    Session(const Session &) = delete;
    Session &operator=(const Session &) = delete;

    // Evaluates tokens at positions n_past().. (in micro-batches of n_batch). Keeps the logits of the last token, or
    // of every token when all_logits (row i = prediction after token i).
    void eval(const int32_t *tokens, int n, bool all_logits);
    const std::vector<float> &logits() const { return logits_; }
    int n_logit_rows() const { return n_logit_rows_; }
    int32_t n_past() const { return n_past_; }
    // Drops every token at `position` and after. In compressed mode a position <= the master length
    // drops the compressed store and truncates the master copy (back to uncompressed mode).
    void truncate(int32_t position);

    // Importance observation for the next evaluations (see ScoreCollector); resets the accumulators.
    void observe(bool all_rows, int32_t win_from, int32_t spec_from, bool clear = true);
    void stop_observing() { obs_.enabled = false; }
    // Staging of the master copy (KvStore::stage): after every micro-batch, fp16 tokens older than the newest
    // kStageRecent (sinks excepted) move to `tier` (q8, kivi4 or kivi2; kivi in whole 32-token blocks). F16: off, the
    // default (policy `full` stays bit-exact with llama.cpp). Throws for onebit or a head dim the format lacks.
    void set_staging(Tier tier);
    Tier staging() const { return staging_; }
    static constexpr int32_t kStageSinks = 4, kStageRecent = 256, kStageMinMove = 256;
    const ScoreCollector &observed() const { return obs_; }

    // Compressed mode: attention reads (and new tokens go to) a compacted copy of the master store's entries listed
    // in `keep` (one position list per layer * n_head_kv + head); the master copy is kept for the next request
    // unless `drop_master`.
    void compress(const std::vector<std::vector<int32_t>> &keep, int32_t extra_tokens, const std::string &policy, bool drop_master);
    // The same with storage tiers (KvStore::compact_tiered): tiers[tier][layer * n_head_kv + head] lists positions.
    void compress_tiered(const std::vector<std::vector<std::vector<int32_t>>> &tiers, int32_t extra_tokens, const std::string &policy,
                         bool drop_master);
    // Tests: replaces the compressed store by its dequantized fp16 copy (same tokens, same positions), so that attention
    // over the tiers can be compared with dense attention over what they decode to. Test addon only (defined in
    // test/test_hooks.cpp).
    void dequantize_active();
    // Back to the master copy (drops the compressed store and the tokens evaluated into it).
    void decompress();
    // Prefix reuse in compressed mode, for a request whose prompt differs from the compressed one only near its end:
    // begin_tail(from) cuts the compressed store and the master copy at `from` and sends evaluation to the master copy
    // (the new tokens attend to every token, as in a fresh prefill, and are staged as usual); end_tail() appends the
    // tokens evaluated since to the compressed store's fp16 segment and returns to it. The selection made for the
    // earlier prompt is kept for the tokens before `from`. A truncate() in between drops the compressed store.
    void begin_tail(int32_t from);
    void end_tail();
    bool in_tail() const { return tail_from_ >= 0; }
    bool compressed() const { return (bool)active_; }
    int32_t master_length() const { return master_len_; }
    const std::string &policy() const { return policy_; }

    // The store attention reads: the compressed one in compressed mode, else the master.
    const KvStore &kv() const { return active_ ? *active_ : kv_; }
    const KvStore &master() const { return kv_; }
    const Model &model() const { return *model_; }
    int32_t context_size() const { return context_size_; }
    const SessionTimings &timings() const { return timings_; }

private:
    void eval_ubatch(const int32_t *tokens, int n, bool all_logits, float *out);

    std::shared_ptr<Model> model_;
    int32_t context_size_;
    int n_batch_;
    int32_t n_past_ = 0;
    KvStore kv_;  // the master copy (policy `full`)
    std::unique_ptr<KvStore> active_;
    int32_t master_len_ = 0;
    int32_t tail_from_ = -1;  // begin_tail's position while evaluation goes to the master copy, else -1
    // Whether evaluated tokens go to the master copy (uncompressed, or between begin_tail and end_tail).
    bool writes_master() const { return !active_ || tail_from_ >= 0; }
    std::string policy_ = "full";
    ScoreCollector obs_;
    Tier staging_ = Tier::F16;
    void set_store(KvStore *store);
    std::vector<AttnLayerCtx> layer_ctx_;
    std::vector<int32_t> positions_;
    std::vector<uint8_t> graph_mem_;
    ggml_gallocr_t galloc_ = nullptr;
    bool ops_checked_ = false;
    std::vector<float> logits_;
    int n_logit_rows_ = 0;
    SessionTimings timings_;
};

}  // namespace repokv
