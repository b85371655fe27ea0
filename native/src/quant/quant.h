// Packed low-bit KV formats for repokv's tiered cache (docs/kv-quantization.md).
//
// A QuantSegment holds the keys and values of n tokens of one (layer, KV head) in one format, really packed (codes in
// bytes / bit-planes, scales in fp16), plus the per-segment metadata the format needs. Positions are the store's
// concern (kv_store.h keeps them next to every segment) and are not counted here; neither is the fp16 residual window
// of KIVI (the store keeps the newest tokens in an fp16 segment and transcodes them in whole blocks).
//
// Formats (head dim D, a multiple of 32; onebit also needs D/4 to be a power of two):
//   q8      keys and values per token, blocks of 32 channels: int8 codes + fp16 scale (symmetric, like q8_0)  8.5 / 8.5
//   kivi4   keys per channel in 32-token groups (asym 4-bit, fp16 Δ and min per (group, channel));
//           values per token in 32-channel groups (asym 4-bit, fp16 Δ and min per (token, group))           5.0 / 5.0
//   kivi2   as kivi4 with 2-bit codes                                                                       3.0 / 3.0
//   onebit  keys: the D/4 highest-range channels of the segment at 2-bit asym per channel; the other 3D/4 channels
//           sign-flipped and Walsh–Hadamard-rotated in blocks of D/4 (per segment: or not rotated), centred per (block, channel) and stored as sign
//           bits with an fp16 mean and scale per (block, channel); values ternary γ·{−1,0,+1} (τ = 0.5·mean|x|,
//           γ = mean |x| over the non-zero codes) per (block, channel), packed 5 trits per byte per token.
//           Token blocks of 128. Per segment: a D-bit outlier-channel mask and a flags byte (whether the normal
//           channels are rotated: quantize tries both and keeps the better key reconstruction). Rotation signs are a
//           fixed function of the channel index (no stored bits).                                           1.5 / 1.75 at D=64
//
// Kernels (two per format, the contract of attention.cpp's segment kernels):
//   scores:     S[r * ld + j] = scale * q_r · k̂_j for R query rows (the G query heads of a KV head and/or several
//               tokens) against the first n tokens; each packed block is read once for all R rows; per-channel scales
//               are folded into the query (a = q∘Δ per block), codes are dotted as integers / bit-planes.
//   accumulate: out[r * D + c] += Σ_j P[r * ld + j] * v̂_j[c].
// One portable implementation per kernel is always built (kernels/scalar.cpp); SIMD ones live per instruction set
// under kernels/ and are chosen at run time (kernels/kernels.h).
//
// Files: common.h (fp16 helpers, byte layouts), formats.cpp (this API), q8.cpp, kivi.cpp, onebit.cpp (the quantizers
// and reference dequantizers of each format).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../storage_format.h"

namespace repokv {
namespace quant {

// A packed format is a storage tier (storage_format.h: one enum and one name table); Tier::F16 is no packed format:
// quantize() rejects it, format_bytes() counts it as 2 bytes per element.
using Format = Tier;

// Token block of the per-channel formats (tokens sharing one scale per channel).
int token_block(Format f);
// Whether the format supports head dim D.
bool supports_head_dim(Format f, int head_dim);

// Exact bytes a segment of n tokens takes in format f (keys, values, per-segment metadata), the formula the
// allocation follows byte for byte (f16: 2 bytes per key and value element).
struct ByteCount {
    size_t key = 0, value = 0, meta = 0;
    size_t total() const { return key + value + meta; }
};
ByteCount format_bytes(Format f, int head_dim, int32_t n);
// Bits per element (keys and values together: 2·n·D elements) for n tokens: format_bytes(...).total() * 8 / (2 n D).
double bits_per_element(Format f, int head_dim, int32_t n);
// The same for whole blocks (n → ∞, per-segment metadata excluded): keys, values.
double key_bits_per_element(Format f, int head_dim);
double value_bits_per_element(Format f, int head_dim);

struct QuantSegment {
    Format format = Format::Q8;
    int head_dim = 0;
    int32_t n = 0;
    std::vector<uint8_t> k;     // packed keys (layout per format, see quant.cpp)
    std::vector<uint8_t> v;     // packed values
    std::vector<uint8_t> meta;  // per-segment metadata (onebit: outlier-channel bit mask, D/8 bytes, + a flags byte)

    // Bytes actually allocated (vector capacities).
    size_t bytes_allocated() const { return k.capacity() + v.capacity() + meta.capacity(); }
    ByteCount bytes() const { return {k.capacity(), v.capacity(), meta.capacity()}; }
};

// Quantizes n tokens (K, V: n x head_dim floats, token-major, keys post-RoPE). Throws std::invalid_argument for an
// unsupported head dim. onebit_meta (the D/8 + 1 bytes of a onebit segment's `meta`, optional): use its outlier
// channels and rotation flag instead of choosing them from K (blocks appended to an onebit segment must use its meta).
QuantSegment quantize(Format f, int head_dim, int32_t n, const float *K, const float *V, const uint8_t *onebit_meta = nullptr);
// Appends the tokens of `more` (same format and head dim; onebit: same mask) to seg, which must hold whole token blocks
// (seg.n % token_block == 0): the store transcodes its fp16 residual window block by block. The result is
// byte-identical to quantizing all tokens at once, and its allocation stays exact (capacity == accounted bytes).
void append(QuantSegment &seg, const QuantSegment &more);
// Keeps the first n_keep tokens of seg, losslessly, for the formats whose layout is a prefix in token order (q8:
// per token; kivi: key blocks [meta][rows of the block's tokens], the last block holding only its tokens, values per
// token): the kept bytes are format_bytes(n_keep) and decode exactly as before (a cut block keeps its scales). Returns
// false (seg unchanged) for onebit, whose byte planes depend on the block's token count. The allocation stays exact.
bool truncate(QuantSegment &seg, int32_t n_keep);
// Reference dequantization (tests only): K, V: n x head_dim floats.
void dequantize(const QuantSegment &seg, float *K, float *V);

// Kernels (see above). n <= seg.n; R >= 1; q: R x head_dim; S has R rows of stride ld >= n; P likewise.
void scores(const QuantSegment &seg, int32_t n, const float *q, int R, float scale, float *S, size_t ld);
void accumulate(const QuantSegment &seg, int32_t n, const float *P, size_t ld, int R, float *out);

// Walsh–Hadamard rotation used by onebit keys (exposed for tests): x (D floats) -> the D − D/4 (rotated) normal
// channels, given a onebit segment's meta.
void onebit_rotate_normals(const uint8_t *meta, int head_dim, const float *x, float *out);

}  // namespace quant
}  // namespace repokv
