// Host interface of the CUDA attention kernels over repokv's KV segments (kernels.cu; docs/gpu.md). Plain C++: the
// code that calls it (native/test-cuda/cuda-check.cpp today; the engine's CUDA path later) needs no CUDA headers.
//
// What runs on the device, per KV head and block of R <= 8 query rows (the G query heads of a KV head, and/or tokens):
//   1. scores: per segment, S[r][off + j] = scale · q_r · k̂_j, read from the segment's packed bytes (each tier's
//      scales folded as the CPU kernels fold them: per-channel Δ and min into the query, onebit's rotation applied to
//      the query once per block instead of un-rotating keys);
//   2. per chunk of <= 256 keys inside a segment: mask by position (key pos > query pos: −inf), the chunk's max m and
//      Σ exp(s − m), P = exp(s − m) in place;
//   3. per chunk: o = Σ_j P_j · v̂_j, read from the packed values;
//   4. the log-sum-exp merge of every chunk of every segment: out = Σ_k e^{m_k − M} o_k / Σ_k e^{m_k − M} l_k.
// The result equals one softmax over the union of the head's segments (the CPU path), up to fp32 summation order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../storage_format.h"
#include "device_layout.h"

namespace repokv {
namespace cuda {

constexpr int kMaxRows = 8;      // query rows per call (attention.cpp's block of rows)
constexpr int kMaxHeadDim = 256;  // head dims the kernels take (multiples of 32; onebit: D/4 a power of two)
constexpr int kChunk = 256;      // keys per softmax chunk (a multiple of every tier's token block)

// Number of CUDA devices this process can use; 0 with the reason in *why (no driver, no device, ...).
int device_count(std::string *why);
// "NVIDIA H200 (sm_90, 139 GiB)" for device 0.
std::string device_name();

// A segment's host bytes (the CPU's buffers: quant::QuantSegment's k, v, meta, or an fp16 Segment's k and v).
struct HostSegment {
    Tier tier = Tier::F16;
    int head_dim = 0;
    int32_t n = 0;
    const void *k = nullptr, *v = nullptr, *meta = nullptr;
    size_t k_bytes = 0, v_bytes = 0, meta_bytes = 0;
    const int32_t *pos = nullptr;
};

// One segment in device memory (one allocation: key, value, meta, positions, each 256-byte aligned inside it).
class DeviceSegment {
public:
    DeviceSegment() = default;
    DeviceSegment(const DeviceSegment &) = delete;
    DeviceSegment &operator=(const DeviceSegment &) = delete;
    DeviceSegment(DeviceSegment &&o) noexcept;
    DeviceSegment &operator=(DeviceSegment &&o) noexcept;
    ~DeviceSegment();
    // Copies the segment's bytes; throws std::runtime_error (with the CUDA error) on failure, or when the host buffers'
    // sizes are not device_segment_bytes(tier, head_dim, n).
    static DeviceSegment upload(const HostSegment &h);
    // Bytes of the layout (device_segment_bytes) and of the allocation (the layout plus alignment padding).
    SegmentBytes layout_bytes() const { return bytes_; }
    size_t allocated_bytes() const { return allocated_; }
    Tier tier() const { return tier_; }
    int head_dim() const { return head_dim_; }
    int32_t tokens() const { return n_; }

    // internal (kernels.cu): device pointers
    const uint8_t *k() const { return base_ + k_off_; }
    const uint8_t *v() const { return base_ + v_off_; }
    const uint8_t *meta() const { return base_ + meta_off_; }
    const int32_t *pos() const { return (const int32_t *)(base_ + pos_off_); }

private:
    uint8_t *base_ = nullptr;
    size_t k_off_ = 0, v_off_ = 0, meta_off_ = 0, pos_off_ = 0, allocated_ = 0;
    SegmentBytes bytes_;
    Tier tier_ = Tier::F16;
    int head_dim_ = 0;
    int32_t n_ = 0;
};

// Single-kernel entry points on host arrays (the harness compares each with the CPU's portable kernel): the same
// contract as kernels/kernels.h's PackedScores / PackedAccumulate / F16Scores / F16Accumulate over the first n tokens
// (no mask): S[r * ld + j] = scale · q_r · k̂_j; out[r * D + c] += Σ_j P[r * ld + j] · v̂_j[c]. R <= kMaxRows.
void scores(const DeviceSegment &seg, int32_t n, const float *q, int R, float scale, float *S, size_t ld);
void accumulate(const DeviceSegment &seg, int32_t n, const float *P, size_t ld, int R, float *out);

// Attention of R query rows (q: R x D host floats, qpos: their positions) over a head's segments (1-4 above):
// out (R x D host floats) = softmax over the union of every visible key, times the values. Returns the device time in
// milliseconds of the kernels (events around them), for the harness's bandwidth figures.
float attend(const std::vector<const DeviceSegment *> &segs, const float *q, const int32_t *qpos, int R, float scale, float *out);

}  // namespace cuda
}  // namespace repokv
