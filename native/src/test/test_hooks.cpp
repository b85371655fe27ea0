// Engine members that only tests need: compiled into the test addon (native/build/repokv-test.node), never into the
// product addon (native/build.mjs; test/native/product-addon.test.mjs checks that the product lacks them).
#include "../kv_store.h"
#include "../session.h"

namespace repokv {

std::unique_ptr<KvStore> KvStore::dequantized(const KvStore &src, int32_t extra_tokens) {
    std::vector<std::vector<int32_t>> all((size_t)src.n_layer_ * src.n_head_kv_);
    for (size_t i = 0; i < all.size(); i++)
        for (auto &seg : src.heads_[i].segments) all[i].insert(all[i].end(), seg.pos.begin(), seg.pos.end());
    return compact(src, all, extra_tokens);
}

void Session::dequantize_active() {
    if (!active_) throw EngineError("dequantize: the session is not compressed");
    active_ = KvStore::dequantized(*active_, context_size_ - n_past_);
    set_store(active_.get());
}

}  // namespace repokv
