// CUDA attention over repokv's KV segments: score and value kernels for every tier, reading the CPU's packed bytes
// (quant/layout.h), and the log-sum-exp merge over chunks of the head's segments (attention_cuda.h). Compiled by
// native/build.mjs only with --cuda (or REPOKV_CUDA=1) and nvcc present; nothing of the addon depends on it yet.
//
// Threads: scores of row-major tiers (f16, q8, kivi) use a warp per key (lanes over channels: coalesced reads of the
// token's row); onebit keys are stored in byte planes (byte k of every token of a block together), so a thread per key
// reads them coalesced. Values: a thread per channel walks a chunk's tokens, with the chunk's probabilities in shared
// memory. Per-block scales are folded into the query in shared memory once per key block, as the CPU kernels fold them.
#if defined(REPOKV_CUDA_EMU)
#include "cuda_emu.h"  // g++ on the CPU: native/build.mjs --cuda-emu (what it checks: cuda_emu.h)
#else
#include <cuda_runtime.h>
#define REPOKV_LAUNCH(kernel, grid, block, stream, ...) kernel<<<grid, block, 0, stream>>>(__VA_ARGS__)
#endif

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>

#include "../quant/layout.h"
#include "attention_cuda.h"
#include "decode.h"

namespace repokv {
namespace cuda {

namespace {

using namespace quant;

void check(cudaError_t e, const char *what) {
    if (e != cudaSuccess) throw std::runtime_error(std::string("CUDA ") + what + ": " + cudaGetErrorString(e));
}

// A segment as the kernels see it: its bytes (decode.h) and its tokens' positions.
struct Seg : SegView {
    const int32_t *pos;
};

Seg seg_of(const DeviceSegment &s) { return {{(int)s.tier(), s.head_dim(), s.tokens(), s.k(), s.v(), s.meta()}, s.pos()}; }

__device__ __forceinline__ float h2f(const uint8_t *p) { return half_at(p); }

__device__ __forceinline__ float warp_sum(float x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

// ---- scores ----------------------------------------------------------------------------------------------------

// fp16 keys token-major, q8 rows, kivi code rows: one warp per key, lanes over channels. Block: 8 warps; the query
// rows in shared memory. kivi: the CUDA block covers one 32-token key block and folds its Δ (a = q∘Δ) and min
// (m = q∘min) into the query first.
template <int TIER>
__global__ void scores_rows(Seg s, int32_t n, const float *__restrict__ q, int R, float scale, float *__restrict__ S, size_t ld) {
    __shared__ float qa[kMaxRows * kMaxHeadDim];  // q, or q∘Δ for kivi
    __shared__ float qm[kMaxRows * kMaxHeadDim];  // kivi: q∘min
    const int D = s.D, lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    constexpr bool kivi = TIER == (int)Tier::Kivi4 || TIER == (int)Tier::Kivi2;
    constexpr int bits = TIER == (int)Tier::Kivi4 ? 4 : 2;
    int32_t j0, j1;
    const uint8_t *codes = nullptr;
    if (kivi) {
        j0 = blockIdx.x * kKiviBlock;
        const uint8_t *blk = s.k + kivi_k_block_offset(D, bits, j0);
        codes = blk + kivi_k_block_meta(D);
        for (int i = threadIdx.x; i < R * D; i += blockDim.x) {
            const int c = i % D;
            qa[i] = q[i] * h2f(blk + 2 * c);
            qm[i] = q[i] * h2f(blk + 2 * D + 2 * c);
        }
        j1 = min(n, j0 + kKiviBlock);
    } else {
        for (int i = threadIdx.x; i < R * D; i += blockDim.x) qa[i] = q[i];
        j0 = blockIdx.x * 32;  // 32 keys per CUDA block, 4 per warp
        j1 = min(n, j0 + 32);
    }
    __syncthreads();
    for (int32_t j = j0 + warp; j < j1; j += nwarps) {
        float acc[kMaxRows];
#pragma unroll
        for (int r = 0; r < kMaxRows; r++) acc[r] = 0;
        if (!kivi) {
            // f16 and q8: the key's channels decoded as decode.h does (checked against the CPU in test/native/cuda.test.mjs)
            for (int c = lane; c < D; c += 32) {
                const float x = key_at<TIER>(s, j, c);
#pragma unroll
                for (int r = 0; r < kMaxRows; r++)
                    if (r < R) acc[r] = fmaf(x, qa[r * D + c], acc[r]);
            }
        } else {
            const uint8_t *row = codes + (size_t)(j - j0) * kivi_k_token_bytes(D, bits);
            for (int c = lane; c < D; c += 32) {
                const float code = (float)get_code(row, c, bits);
#pragma unroll
                for (int r = 0; r < kMaxRows; r++)
                    if (r < R) acc[r] += fmaf(code, qa[r * D + c], qm[r * D + c]);
            }
        }
#pragma unroll
        for (int r = 0; r < kMaxRows; r++) {
            if (r >= R) break;
            const float t = warp_sum(acc[r]);
            if (lane == 0) S[r * ld + j] = t * scale;
        }
    }
}

// onebit keys: a CUDA block per 128-token block, a thread per key. The query is split into the segment's outlier
// channels (qo) and its normal channels, sign-flipped and Walsh–Hadamard-rotated like the keys (qn: rotating q once
// replaces un-rotating every key, as quant::onebit_query does on the CPU); then per (row, channel) the block's scales
// are folded: outliers k̂ = min + Δ·code, normals ŷ = μ + α·σ (σ = ±1).
__global__ void scores_onebit(Seg s, int32_t n, const float *__restrict__ q, int R, float scale, float *__restrict__ S, size_t ld) {
    constexpr int kMaxDo = kMaxHeadDim / 4, kMaxDn = kMaxHeadDim - kMaxDo;
    __shared__ int outl[kMaxDo], norm[kMaxDn];
    __shared__ float qo[kMaxRows * kMaxDo], qn[kMaxRows * kMaxDn];
    __shared__ float ao[kMaxRows * kMaxDo], mo[kMaxRows * kMaxDo], an[kMaxRows * kMaxDn], mn[kMaxRows * kMaxDn];
    const int D = s.D, Do = ob_do(D), Dn = ob_dn(D), B = D / 4;
    const bool rot = s.meta[D / 8] & 1;
    if (threadIdx.x == 0) {
        int o = 0, m = 0;
        for (int c = 0; c < D; c++) {
            if (s.meta[c / 8] >> (c % 8) & 1) outl[o++] = c;
            else norm[m++] = c;
        }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < R * Do; i += blockDim.x) qo[i] = q[(i / Do) * D + outl[i % Do]];
    for (int i = threadIdx.x; i < R * Dn; i += blockDim.x) {
        const int r = i / Dn, c = i % Dn;
        qn[i] = rot ? q[r * D + norm[c]] * ob_fixed_sign(c) : q[r * D + norm[c]];
    }
    __syncthreads();
    if (rot && (int)threadIdx.x < R * (Dn / B)) {
        // orthonormal Walsh–Hadamard transform of one block of B channels of one row, in the CPU's order (onebit.cpp fwht)
        float *x = qn + (threadIdx.x / (Dn / B)) * Dn + (threadIdx.x % (Dn / B)) * B;
        for (int len = 1; len < B; len <<= 1)
            for (int i = 0; i < B; i += len << 1)
                for (int j = i; j < i + len; j++) {
                    const float a = x[j], b = x[j + len];
                    x[j] = a + b;
                    x[j + len] = a - b;
                }
        const float sc = 1.0f / sqrtf((float)B);
        for (int i = 0; i < B; i++) x[i] *= sc;
    }
    __syncthreads();
    const int32_t t0 = blockIdx.x * kOneBitBlock;
    const int nt = min(kOneBitBlock, s.n - t0);
    const uint8_t *meta = s.k + ob_k_block_offset(D, t0), *mmeta = meta + 4 * Do, *rows = meta + ob_k_block_meta(D);
    for (int i = threadIdx.x; i < R * Do; i += blockDim.x) {
        const int c = i % Do;
        ao[i] = qo[i] * h2f(meta + 2 * c);
        mo[i] = qo[i] * h2f(meta + 2 * Do + 2 * c);
    }
    for (int i = threadIdx.x; i < R * Dn; i += blockDim.x) {
        const int c = i % Dn;
        an[i] = qn[i] * h2f(mmeta + 2 * Dn + 2 * c);
        mn[i] = qn[i] * h2f(mmeta + 2 * c);
    }
    __syncthreads();
    const int i = threadIdx.x;
    if (i >= nt || t0 + i >= n) return;
    float acc[kMaxRows];
#pragma unroll
    for (int r = 0; r < kMaxRows; r++) acc[r] = 0;
    for (int kb = 0; kb < Do / 4; kb++) {
        const uint8_t x = rows[(size_t)kb * nt + i];
#pragma unroll
        for (int l = 0; l < 4; l++) {
            const float code = (float)(x >> (2 * l) & 3);
            const int c = 4 * kb + l;
#pragma unroll
            for (int r = 0; r < kMaxRows; r++)
                if (r < R) acc[r] += fmaf(code, ao[r * Do + c], mo[r * Do + c]);
        }
    }
    for (int kb = 0; kb < Dn / 8; kb++) {
        const uint8_t x = rows[(size_t)(Do / 4 + kb) * nt + i];
#pragma unroll
        for (int l = 0; l < 8; l++) {
            const float sg = x >> l & 1 ? 1.0f : -1.0f;
            const int c = 8 * kb + l;
#pragma unroll
            for (int r = 0; r < kMaxRows; r++)
                if (r < R) acc[r] += fmaf(sg, an[r * Dn + c], mn[r * Dn + c]);
        }
    }
#pragma unroll
    for (int r = 0; r < kMaxRows; r++)
        if (r < R) S[r * ld + t0 + i] = acc[r] * scale;
}

void launch_scores(const Seg &s, int32_t n, const float *q, int R, float scale, float *S, size_t ld, cudaStream_t st) {
    if (n <= 0) return;
    switch ((Tier)s.tier) {
        case Tier::F16: REPOKV_LAUNCH(scores_rows<(int)Tier::F16>, (n + 31) / 32, 256, st, s, n, q, R, scale, S, ld); break;
        case Tier::Q8: REPOKV_LAUNCH(scores_rows<(int)Tier::Q8>, (n + 31) / 32, 256, st, s, n, q, R, scale, S, ld); break;
        case Tier::Kivi4: REPOKV_LAUNCH(scores_rows<(int)Tier::Kivi4>, (n + kKiviBlock - 1) / kKiviBlock, 256, st, s, n, q, R, scale, S, ld); break;
        case Tier::Kivi2: REPOKV_LAUNCH(scores_rows<(int)Tier::Kivi2>, (n + kKiviBlock - 1) / kKiviBlock, 256, st, s, n, q, R, scale, S, ld); break;
        case Tier::OneBit: REPOKV_LAUNCH(scores_onebit, (n + kOneBitBlock - 1) / kOneBitBlock, kOneBitBlock, st, s, n, q, R, scale, S, ld); break;
    }
    check(cudaGetLastError(), "scores launch");
}

// ---- values ------------------------------------------------------------------------------------------------------

// part[chunk][r][c] (+)= Σ_{t in chunk} P[r * ld + t] · v̂_t[c] for tokens [from, to) of the segment, chunks of kChunk
// starting at `from`; a thread per channel (blockDim.x = D). add: accumulate into part instead of storing.
template <int TIER>
__global__ void values(Seg s, int32_t from, int32_t to, const float *__restrict__ P, size_t ld, int R, float *__restrict__ part, bool add) {
    __shared__ float p[kMaxRows * kChunk];
    const int32_t t0 = from + blockIdx.x * kChunk, t1 = min(to, t0 + kChunk);
    for (int i = threadIdx.x; i < R * kChunk; i += blockDim.x) {
        const int r = i / kChunk, j = i % kChunk;
        p[i] = t0 + j < t1 ? P[r * ld + t0 + j] : 0.0f;
    }
    __syncthreads();
    const int c = threadIdx.x;
    float acc[kMaxRows];
#pragma unroll
    for (int r = 0; r < kMaxRows; r++) acc[r] = 0;
    for (int32_t t = t0; t < t1; t++) {
        const float x = value_at<TIER>(s, t, c);
#pragma unroll
        for (int r = 0; r < kMaxRows; r++)
            if (r < R) acc[r] = fmaf(p[r * kChunk + (t - t0)], x, acc[r]);
    }
    float *o = part + (size_t)blockIdx.x * R * s.D;
#pragma unroll
    for (int r = 0; r < kMaxRows; r++)
        if (r < R) o[r * s.D + c] = add ? o[r * s.D + c] + acc[r] : acc[r];
}

void launch_values(const Seg &s, int32_t from, int32_t to, const float *P, size_t ld, int R, float *part, bool add, cudaStream_t st) {
    if (to <= from) return;
    const int grid = (to - from + kChunk - 1) / kChunk;
    switch ((Tier)s.tier) {
        case Tier::F16: REPOKV_LAUNCH(values<(int)Tier::F16>, grid, s.D, st, s, from, to, P, ld, R, part, add); break;
        case Tier::Q8: REPOKV_LAUNCH(values<(int)Tier::Q8>, grid, s.D, st, s, from, to, P, ld, R, part, add); break;
        case Tier::Kivi4: REPOKV_LAUNCH(values<(int)Tier::Kivi4>, grid, s.D, st, s, from, to, P, ld, R, part, add); break;
        case Tier::Kivi2: REPOKV_LAUNCH(values<(int)Tier::Kivi2>, grid, s.D, st, s, from, to, P, ld, R, part, add); break;
        case Tier::OneBit: REPOKV_LAUNCH(values<(int)Tier::OneBit>, grid, s.D, st, s, from, to, P, ld, R, part, add); break;
    }
    check(cudaGetLastError(), "values launch");
}

// out[r][c] += Σ_k part[k][r][c] (the single-kernel accumulate: chunk partials summed in chunk order)
__global__ void sum_parts(const float *part, int nparts, int R, int D, float *out) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= R * D) return;
    float a = 0;
    for (int k = 0; k < nparts; k++) a += part[(size_t)k * R * D + i];
    out[i] += a;
}

// ---- softmax chunks and the log-sum-exp merge ----------------------------------------------------------------------

// One CUDA block per (chunk, row) of a segment's keys [0, n_vis): mask keys after the row's position, m = max,
// P = exp(s − m) in place, l = Σ P. Writes m and l at chunk index `chunk0 + blockIdx.x` of the row.
__global__ void chunk_softmax(const int32_t *__restrict__ pos, int32_t n_vis, float *__restrict__ S, size_t ld, const int32_t *__restrict__ qpos, int chunk0,
                              int nchunks_total, float *__restrict__ m_out, float *__restrict__ l_out) {
    __shared__ float red[32];
    const int r = blockIdx.y;
    const int32_t t0 = blockIdx.x * kChunk, t1 = min(n_vis, t0 + kChunk);
    float *Sr = S + (size_t)r * ld;
    const int32_t qp = qpos[r];
    const int t = t0 + threadIdx.x;  // blockDim.x == kChunk
    float x = -INFINITY;
    if (t < t1) {
        x = pos[t] > qp ? -INFINITY : Sr[t];
        Sr[t] = x;
    }
    // block max
    float m = x;
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = m;
    __syncthreads();
    if (threadIdx.x < 32) {
        m = threadIdx.x < (blockDim.x >> 5) ? red[threadIdx.x] : -INFINITY;
        for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        if (threadIdx.x == 0) red[0] = m;
    }
    __syncthreads();
    m = red[0];
    __syncthreads();
    const float e = (t < t1 && m != -INFINITY) ? expf(x - m) : 0.0f;
    if (t < t1) Sr[t] = e;
    float l = warp_sum(e);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = l;
    __syncthreads();
    if (threadIdx.x == 0) {
        float a = 0;
        for (int w = 0; w < (int)(blockDim.x >> 5); w++) a += red[w];
        m_out[(size_t)r * nchunks_total + chunk0 + blockIdx.x] = m;
        l_out[(size_t)r * nchunks_total + chunk0 + blockIdx.x] = a;
    }
}

// out[r][c] = Σ_k e^{m_k − M} o_k[r][c] / Σ_k e^{m_k − M} l_k, M = max_k m_k (grid: R rows, block: D channels).
__global__ void lse_merge(const float *__restrict__ part, const float *__restrict__ m_in, const float *__restrict__ l_in, int nchunks, int R, int D,
                          float *__restrict__ out) {
    const int r = blockIdx.x, c = threadIdx.x;
    const float *m = m_in + (size_t)r * nchunks, *l = l_in + (size_t)r * nchunks;
    float M = -INFINITY;
    for (int k = 0; k < nchunks; k++) M = fmaxf(M, m[k]);
    if (M == -INFINITY) {  // nothing visible
        out[r * D + c] = 0;
        return;
    }
    float num = 0, den = 0;
    for (int k = 0; k < nchunks; k++) {
        if (m[k] == -INFINITY) continue;
        const float w = expf(m[k] - M);
        num = fmaf(w, part[((size_t)k * R + r) * D + c], num);
        den = fmaf(w, l[k], den);
    }
    out[r * D + c] = num / den;
}

// Device scratch, grown as needed (one per process: the harness and a future engine call from one thread per device).
struct Scratch {
    void *p = nullptr;
    size_t bytes = 0;
    void *get(size_t want) {
        if (want <= bytes) return p;
        if (p) cudaFree(p);
        p = nullptr;
        bytes = 0;
        check(cudaMalloc(&p, want), "scratch allocation");
        bytes = want;
        return p;
    }
};
Scratch g_scratch;

size_t align256(size_t x) { return (x + 255) / 256 * 256; }

}  // namespace

// ---- host API ------------------------------------------------------------------------------------------------------

int device_count(std::string *why) {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        if (why) *why = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(e);
        cudaGetLastError();
        return 0;
    }
    if (n == 0 && why) *why = "no CUDA device";
    return n;
}

std::string device_name() {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) return "unknown";
    return std::string(p.name) + " (sm_" + std::to_string(p.major) + std::to_string(p.minor) + ", " + std::to_string((p.totalGlobalMem + (1ull << 29)) >> 30) + " GiB)";
}

DeviceSegment::DeviceSegment(DeviceSegment &&o) noexcept { *this = std::move(o); }
DeviceSegment &DeviceSegment::operator=(DeviceSegment &&o) noexcept {
    if (this != &o) {
        if (base_) cudaFree(base_);
        base_ = o.base_, k_off_ = o.k_off_, v_off_ = o.v_off_, meta_off_ = o.meta_off_, pos_off_ = o.pos_off_, allocated_ = o.allocated_;
        bytes_ = o.bytes_, tier_ = o.tier_, head_dim_ = o.head_dim_, n_ = o.n_;
        o.base_ = nullptr;
        o.allocated_ = 0;
    }
    return *this;
}
DeviceSegment::~DeviceSegment() {
    if (base_) cudaFree(base_);
}

DeviceSegment DeviceSegment::upload(const HostSegment &h) {
    const SegmentBytes want = device_segment_bytes(h.tier, h.head_dim, h.n);
    if (h.head_dim <= 0 || h.head_dim % 32 || h.head_dim > kMaxHeadDim) throw std::runtime_error("CUDA kernels: unsupported head dim " + std::to_string(h.head_dim));
    if (h.k_bytes != want.key || h.v_bytes != want.value || h.meta_bytes != want.meta)
        throw std::runtime_error(std::string("CUDA upload: ") + tier_name(h.tier) + " segment of " + std::to_string(h.n) + " tokens has " + std::to_string(h.k_bytes) + "/" +
                                 std::to_string(h.v_bytes) + "/" + std::to_string(h.meta_bytes) + " key/value/meta bytes, the layout says " + std::to_string(want.key) +
                                 "/" + std::to_string(want.value) + "/" + std::to_string(want.meta));
    DeviceSegment d;
    d.tier_ = h.tier, d.head_dim_ = h.head_dim, d.n_ = h.n, d.bytes_ = want;
    d.k_off_ = 0;
    d.v_off_ = align256(want.key);
    d.meta_off_ = d.v_off_ + align256(want.value);
    d.pos_off_ = d.meta_off_ + align256(want.meta);
    d.allocated_ = d.pos_off_ + align256(want.pos);
    if (h.n == 0) return d;
    check(cudaMalloc((void **)&d.base_, d.allocated_), "segment allocation");
    check(cudaMemcpy(d.base_ + d.k_off_, h.k, want.key, cudaMemcpyHostToDevice), "upload");
    check(cudaMemcpy(d.base_ + d.v_off_, h.v, want.value, cudaMemcpyHostToDevice), "upload");
    if (want.meta) check(cudaMemcpy(d.base_ + d.meta_off_, h.meta, want.meta, cudaMemcpyHostToDevice), "upload");
    check(cudaMemcpy(d.base_ + d.pos_off_, h.pos, want.pos, cudaMemcpyHostToDevice), "upload");
    return d;
}

void scores(const DeviceSegment &seg, int32_t n, const float *q, int R, float scale, float *S, size_t ld) {
    n = std::min(n, seg.tokens());
    if (n <= 0) return;
    if (R < 1 || R > kMaxRows) throw std::runtime_error("CUDA scores: R must be 1-8");
    const int D = seg.head_dim();
    const size_t qb = (size_t)R * D * sizeof(float), sb = (size_t)R * ld * sizeof(float);
    char *w = (char *)g_scratch.get(align256(qb) + sb);
    float *dq = (float *)w, *dS = (float *)(w + align256(qb));
    check(cudaMemcpy(dq, q, qb, cudaMemcpyHostToDevice), "copy q");
    check(cudaMemcpy(dS, S, sb, cudaMemcpyHostToDevice), "copy S");
    launch_scores(seg_of(seg), n, dq, R, scale, dS, ld, 0);
    check(cudaMemcpy(S, dS, sb, cudaMemcpyDeviceToHost), "copy S back");
}

void accumulate(const DeviceSegment &seg, int32_t n, const float *P, size_t ld, int R, float *out) {
    n = std::min(n, seg.tokens());
    if (n <= 0) return;
    if (R < 1 || R > kMaxRows) throw std::runtime_error("CUDA accumulate: R must be 1-8");
    const int D = seg.head_dim();
    const int nparts = (n + kChunk - 1) / kChunk;
    const size_t pb = (size_t)R * ld * sizeof(float), ob = (size_t)R * D * sizeof(float), partb = (size_t)nparts * ob;
    char *w = (char *)g_scratch.get(align256(pb) + align256(ob) + partb);
    float *dP = (float *)w, *dout = (float *)(w + align256(pb)), *dpart = (float *)(w + align256(pb) + align256(ob));
    check(cudaMemcpy(dP, P, pb, cudaMemcpyHostToDevice), "copy P");
    check(cudaMemcpy(dout, out, ob, cudaMemcpyHostToDevice), "copy out");
    launch_values(seg_of(seg), 0, n, dP, ld, R, dpart, false, 0);
    REPOKV_LAUNCH(sum_parts, (R * D + 255) / 256, 256, 0, dpart, nparts, R, D, dout);
    check(cudaGetLastError(), "sum launch");
    check(cudaMemcpy(out, dout, ob, cudaMemcpyDeviceToHost), "copy out back");
}

float attend(const std::vector<const DeviceSegment *> &segs, const float *q, const int32_t *qpos, int R, float scale, float *out) {
    if (R < 1 || R > kMaxRows) throw std::runtime_error("CUDA attend: R must be 1-8");
    if (segs.empty()) throw std::runtime_error("CUDA attend: no segments");
    const int D = segs[0]->head_dim();
    size_t total = 0;
    int nchunks = 0;
    for (const DeviceSegment *s : segs) {
        if (s->head_dim() != D) throw std::runtime_error("CUDA attend: segments of one head differ in head dim");
        total += s->tokens();
        nchunks += (s->tokens() + kChunk - 1) / kChunk;
    }
    const size_t ld = total;
    const size_t qb = align256((size_t)R * D * 4), posb = align256((size_t)R * 4), Sb = align256((size_t)R * ld * 4), mlb = align256((size_t)R * nchunks * 4),
                 partb = align256((size_t)nchunks * R * D * 4), ob = (size_t)R * D * 4;
    char *w = (char *)g_scratch.get(qb + posb + Sb + 2 * mlb + partb + ob);
    float *dq = (float *)w;
    int32_t *dqpos = (int32_t *)(w + qb);
    float *dS = (float *)(w + qb + posb), *dm = (float *)(w + qb + posb + Sb), *dl = (float *)(w + qb + posb + Sb + mlb),
          *dpart = (float *)(w + qb + posb + Sb + 2 * mlb), *dout = (float *)(w + qb + posb + Sb + 2 * mlb + partb);
    check(cudaMemcpy(dq, q, (size_t)R * D * 4, cudaMemcpyHostToDevice), "copy q");
    check(cudaMemcpy(dqpos, qpos, (size_t)R * 4, cudaMemcpyHostToDevice), "copy positions");
    cudaEvent_t e0, e1;
    check(cudaEventCreate(&e0), "event");
    check(cudaEventCreate(&e1), "event");
    check(cudaEventRecord(e0), "event");
    size_t off = 0;
    int chunk0 = 0;
    for (const DeviceSegment *ds : segs) {
        const Seg s = seg_of(*ds);
        if (s.n == 0) continue;
        const int nc = (s.n + kChunk - 1) / kChunk;
        launch_scores(s, s.n, dq, R, scale, dS + off, ld, 0);
        REPOKV_LAUNCH(chunk_softmax, dim3(nc, R), kChunk, 0, s.pos, s.n, dS + off, ld, dqpos, chunk0, nchunks, dm, dl);
        check(cudaGetLastError(), "softmax launch");
        launch_values(s, 0, s.n, dS + off, ld, R, dpart + (size_t)chunk0 * R * D, false, 0);
        off += s.n;
        chunk0 += nc;
    }
    REPOKV_LAUNCH(lse_merge, R, D, 0, dpart, dm, dl, nchunks, R, D, dout);
    check(cudaGetLastError(), "merge launch");
    check(cudaEventRecord(e1), "event");
    check(cudaEventSynchronize(e1), "attention kernels");
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    check(cudaMemcpy(out, dout, ob, cudaMemcpyDeviceToHost), "copy out back");
    return ms;
}

}  // namespace cuda
}  // namespace repokv
