// A CPU emulation of the little of CUDA that kernels.cu uses, so that its kernels run on machines without a GPU:
// g++ compiles kernels.cu with REPOKV_CUDA_EMU (native/build.mjs --cuda-emu) and the harness (test-cuda/cuda-check)
// runs them against the CPU kernels. A launch runs the grid's blocks one after the other; a block's threads are real
// threads, __syncthreads is a barrier over them, and a warp shuffle is an exchange through a per-warp buffer between
// two barriers over its 32 lanes. __shared__ arrays are function statics: one set per kernel, reused block after block
// (a block ends with a barrier before the next starts).
//
// What it checks: the kernels' indexing, arithmetic, reductions, shared-memory use between barriers, the softmax
// chunks and the merge. What it cannot: nvcc's code generation, the GPU's memory model and scheduling, speed.
#pragma once

#include <barrier>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace repokv {
namespace cuda_emu {

struct Warp {
    float v[32];
    std::barrier<> sync{32};
};
struct Block {
    std::barrier<> sync;
    std::vector<std::unique_ptr<Warp>> warps;
    explicit Block(unsigned n) : sync((std::ptrdiff_t)n) {
        for (unsigned w = 0; w < (n + 31) / 32; w++) warps.push_back(std::make_unique<Warp>());
    }
};

inline thread_local Block *t_block = nullptr;

}  // namespace cuda_emu
}  // namespace repokv

inline thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

inline void __syncthreads() { repokv::cuda_emu::t_block->sync.arrive_and_wait(); }

inline float __shfl_xor_sync(unsigned, float x, int mask) {
    using namespace repokv::cuda_emu;
    Warp &w = *t_block->warps[threadIdx.x / 32];
    const unsigned lane = threadIdx.x % 32;
    w.v[lane] = x;
    w.sync.arrive_and_wait();
    const float y = w.v[lane ^ (unsigned)mask];
    w.sync.arrive_and_wait();
    return y;
}

inline int min(int a, int b) { return a < b ? a : b; }

namespace repokv {
namespace cuda_emu {

// Runs body() for every thread of every block: blocks in order (x fastest), a block's threads concurrently.
inline void launch(dim3 grid, dim3 block, const std::function<void()> &body) {
    const unsigned n = block.x;
    Block b(n);
    std::vector<std::thread> threads;
    threads.reserve(n);
    for (unsigned t = 0; t < n; t++)
        threads.emplace_back([&, t] {
            t_block = &b;
            threadIdx = dim3(t);
            blockDim = block;
            gridDim = grid;
            for (unsigned y = 0; y < grid.y; y++)
                for (unsigned x = 0; x < grid.x; x++) {
                    blockIdx = dim3(x, y);
                    body();
                    b.sync.arrive_and_wait();  // the block's shared arrays are free for the next block
                }
        });
    for (auto &th : threads) th.join();
}

}  // namespace cuda_emu
}  // namespace repokv

#define REPOKV_LAUNCH(kernel, grid, block, stream, ...) \
    ::repokv::cuda_emu::launch(dim3(grid), dim3(block), [&] { kernel(__VA_ARGS__); })

// ---- the runtime API, on host memory --------------------------------------------------------------------------------

typedef int cudaError_t;
constexpr cudaError_t cudaSuccess = 0;
constexpr cudaError_t cudaErrorMemoryAllocation = 2;
typedef void *cudaStream_t;
enum cudaMemcpyKind { cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2 };
inline const char *cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : "out of memory (emulation)"; }
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaGetDeviceCount(int *n) {
    *n = 1;
    return cudaSuccess;
}
struct cudaDeviceProp {
    char name[256];
    int major, minor;
    size_t totalGlobalMem;
};
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int) {
    strcpy(p->name, "CPU emulation of the CUDA kernels");
    p->major = 0, p->minor = 0, p->totalGlobalMem = 0;
    return cudaSuccess;
}
inline cudaError_t cudaMalloc(void **p, size_t n) {
    *p = std::calloc(1, n ? n : 1);
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
inline cudaError_t cudaFree(void *p) {
    std::free(p);
    return cudaSuccess;
}
inline cudaError_t cudaMemcpy(void *d, const void *s, size_t n, cudaMemcpyKind) {
    memcpy(d, s, n);
    return cudaSuccess;
}
typedef std::chrono::steady_clock::time_point *cudaEvent_t;
inline cudaError_t cudaEventCreate(cudaEvent_t *e) {
    *e = new std::chrono::steady_clock::time_point();
    return cudaSuccess;
}
inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t = nullptr) {
    *e = std::chrono::steady_clock::now();
    return cudaSuccess;
}
inline cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
inline cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) {
    *ms = std::chrono::duration<float, std::milli>(*b - *a).count();
    return cudaSuccess;
}
inline cudaError_t cudaEventDestroy(cudaEvent_t e) {
    delete e;
    return cudaSuccess;
}
