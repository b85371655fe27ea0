// The packed formats' public API (quant.h): the format table (token blocks, head dims, exact bytes), quantize /
// append / truncate / dequantize by format, and the kernels of the table chosen for this CPU (kernels/kernels.h).
#include <stdexcept>

#include "../kernels/kernels.h"
#include "common.h"

namespace repokv {
namespace quant {

int token_block(Format f) {
    switch (f) {
        case Format::Kivi4:
        case Format::Kivi2: return kKiviBlock;
        case Format::OneBit: return kOneBitBlock;
        case Format::F16:
        case Format::Q8: return 1;
    }
    return 1;
}

bool supports_head_dim(Format f, int D) {
    if (f == Format::F16 || D <= 0 || D % 32) return false;
    if (f == Format::OneBit) {
        const int B = D / 4;
        return (B & (B - 1)) == 0;
    }
    return true;
}

ByteCount format_bytes(Format f, int D, int32_t n) {
    ByteCount c;
    const size_t blocks = n > 0 ? ((size_t)n + token_block(f) - 1) / token_block(f) : 0;
    switch (f) {
        case Format::F16:
            c.key = c.value = (size_t)n * D * 2;
            break;
        case Format::Q8:
            c.key = c.value = (size_t)n * q8_token_bytes(D);
            break;
        case Format::Kivi4:
        case Format::Kivi2: {
            const int b = code_bits(f);
            c.key = blocks * kivi_k_block_meta(D) + (size_t)n * kivi_k_token_bytes(D, b);
            c.value = (size_t)n * kivi_v_token_bytes(D, b);
            break;
        }
        case Format::OneBit:
            c.meta = (size_t)D / 8 + 1;
            c.key = blocks * ob_k_block_meta(D) + (size_t)n * ob_k_token_bytes(D);
            c.value = blocks * ob_v_block_meta(D) + (size_t)n * ob_v_token_bytes(D);
            break;
    }
    return c;
}

double bits_per_element(Format f, int D, int32_t n) {
    return n > 0 ? (double)format_bytes(f, D, n).total() * 8.0 / (2.0 * n * D) : 0.0;
}

double key_bits_per_element(Format f, int D) {
    const int B = token_block(f);
    return (double)(format_bytes(f, D, B).key) * 8.0 / ((double)B * D);
}

double value_bits_per_element(Format f, int D) {
    const int B = token_block(f);
    return (double)(format_bytes(f, D, B).value) * 8.0 / ((double)B * D);
}

QuantSegment quantize(Format f, int D, int32_t n, const float *K, const float *V, const uint8_t *onebit_meta) {
    if (!supports_head_dim(f, D)) throw std::invalid_argument(std::string(tier_name(f)) + ": unsupported head dim " + std::to_string(D));
    if (n < 0) throw std::invalid_argument("negative token count");
    QuantSegment s;
    s.format = f;
    s.head_dim = D;
    s.n = n;
    const ByteCount bc = format_bytes(f, D, n);
    // exact allocations: reserve then resize, so capacity() == size() == the accounted bytes
    s.k.reserve(bc.key), s.k.resize(bc.key, 0);
    s.v.reserve(bc.value), s.v.resize(bc.value, 0);
    s.meta.reserve(bc.meta), s.meta.resize(bc.meta, 0);
    switch (f) {
        case Format::Q8: quantize_q8(s, K, V); break;
        case Format::Kivi4:
        case Format::Kivi2: quantize_kivi(s, K, V); break;
        case Format::OneBit: quantize_onebit(s, K, V, onebit_meta); break;
        case Format::F16: break;
    }
    return s;
}

namespace {
void append_exact(std::vector<uint8_t> &a, const std::vector<uint8_t> &b) {
    std::vector<uint8_t> out;
    out.reserve(a.size() + b.size());
    out.insert(out.end(), a.begin(), a.end());
    out.insert(out.end(), b.begin(), b.end());
    a.swap(out);
}
}  // namespace

void append(QuantSegment &seg, const QuantSegment &more) {
    if (more.format != seg.format || more.head_dim != seg.head_dim) throw std::invalid_argument("append: format or head dim differs");
    if (seg.n % token_block(seg.format)) throw std::invalid_argument("append: the segment does not end on a whole token block");
    if (seg.format == Format::OneBit && seg.n > 0 && more.n > 0 && seg.meta != more.meta) throw std::invalid_argument("append: onebit outlier masks or rotation flags differ");
    if (more.n == 0) return;
    if (seg.n == 0) {
        QuantSegment copy(more);  // copy-constructed vectors: capacity == size
        seg = std::move(copy);
        return;
    }
    append_exact(seg.k, more.k);
    append_exact(seg.v, more.v);
    seg.n += more.n;
}

bool truncate(QuantSegment &seg, int32_t n_keep) {
    if (seg.format == Format::OneBit) return false;
    if (n_keep < 0) n_keep = 0;
    if (n_keep >= seg.n) return true;
    const ByteCount bc = format_bytes(seg.format, seg.head_dim, n_keep);
    seg.k = std::vector<uint8_t>(seg.k.begin(), seg.k.begin() + bc.key);  // copy-constructed: capacity == size
    seg.v = std::vector<uint8_t>(seg.v.begin(), seg.v.begin() + bc.value);
    seg.n = n_keep;
    return true;
}


void dequantize(const QuantSegment &seg, float *K, float *V) {
    switch (seg.format) {
        case Format::Q8: return dequantize_q8(seg, K, V);
        case Format::Kivi4:
        case Format::Kivi2: return dequantize_kivi(seg, K, V);
        case Format::OneBit: return dequantize_onebit(seg, K, V);
        case Format::F16: return;
    }
}

void scores(const QuantSegment &seg, int32_t n, const float *q, int R, float scale, float *S, size_t ld) {
    n = std::min(n, seg.n);
    if (n <= 0 || seg.format == Format::F16) return;
    kernels::active().scores[(int)seg.format](seg, n, q, R, scale, S, ld);
}

void accumulate(const QuantSegment &seg, int32_t n, const float *P, size_t ld, int R, float *out) {
    n = std::min(n, seg.n);
    if (n <= 0 || seg.format == Format::F16) return;
    kernels::active().accumulate[(int)seg.format](seg, n, P, ld, R, out);
}

}  // namespace quant
}  // namespace repokv
