// The emulator's view of CUDA: kernels/*.cu compile as host C++20 under this header.
//
// Execution model (runtime.cpp): a launch runs its blocks one after another on the calling
// OS thread; inside a block every CUDA thread is a fiber with its own stack, scheduled
// cooperatively in a fixed order (thread 0, 1, 2, ...). A fiber runs until it reaches a
// barrier: __syncthreads() waits for every live thread of the block, a warp shuffle for every
// live lane of its warp. So a missing __syncthreads() makes thread 0 read shared memory that
// threads 1.. have not written yet, and results go wrong deterministically.
//
// With DCGAN_EMU_THREADS defined (the ThreadSanitizer build, tests/emu_tsan.rs), each CUDA
// thread is an OS thread instead and the barriers are std::barrier, so TSan sees real
// concurrency and reports a data race where a barrier is missing.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#define DCGAN_EMU 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#ifdef DCGAN_EMU_THREADS
#define __shared__ static
#else
// Fibers of one launch share the OS thread; launches on other OS threads (parallel tests)
// get their own copy.
#define __shared__ static thread_local
#endif

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};

struct __attribute__((aligned(16))) float4 {
    float x, y, z, w;
};

namespace emu {

struct ThreadIds {
    dim3 thread, block, block_dim, grid_dim;
};

extern thread_local ThreadIds ids __attribute__((tls_model("initial-exec")));

void syncthreads();
// Exchanges 32-bit values within a warp: every live lane publishes `v`, waits for its warp,
// reads lane `src` (its own value when src is outside the warp), and waits again.
uint32_t warp_exchange(uint32_t v, int src);
int lane_id();

// Runs `fn(ctx)` once per CUDA thread of the grid. Returns 0, or non-zero with a message in
// dcgan_emu_last_error() (deadlock: threads waiting at different barriers).
int run_grid_erased(const unsigned* grid, const unsigned* block, void (*fn)(void*), void* ctx);

template <class F>
int run_grid(const unsigned* grid, const unsigned* block, F&& f) {
    using Fn = std::remove_reference_t<F>;
    return run_grid_erased(grid, block, [](void* c) { (*static_cast<Fn*>(c))(); }, &f);
}

template <class T>
inline T shfl_bits(T v, int src) {
    static_assert(sizeof(T) == 4, "the emulator shuffles 32-bit values");
    uint32_t u;
    std::memcpy(&u, &v, 4);
    u = warp_exchange(u, src);
    T r;
    std::memcpy(&r, &u, 4);
    return r;
}

}  // namespace emu

#define threadIdx (emu::ids.thread)
#define blockIdx (emu::ids.block)
#define blockDim (emu::ids.block_dim)
#define gridDim (emu::ids.grid_dim)
#define warpSize 32

inline void __syncthreads() { emu::syncthreads(); }
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

template <class T>
inline T __shfl_down_sync(unsigned, T v, unsigned d, int = 32) {
    return emu::shfl_bits(v, emu::lane_id() + (int)d);
}
template <class T>
inline T __shfl_up_sync(unsigned, T v, unsigned d, int = 32) {
    return emu::shfl_bits(v, emu::lane_id() - (int)d);
}
template <class T>
inline T __shfl_xor_sync(unsigned, T v, int m, int = 32) {
    return emu::shfl_bits(v, emu::lane_id() ^ m);
}
template <class T>
inline T __shfl_sync(unsigned, T v, int src, int = 32) {
    return emu::shfl_bits(v, src & 31);
}

// Atomics: real atomic read-modify-writes, so the OS-thread (TSan) build is race-free too.
inline float atomicAdd(float* p, float v) {
    uint32_t* u = reinterpret_cast<uint32_t*>(p);
    uint32_t old = __atomic_load_n(u, __ATOMIC_RELAXED), next;
    float f;
    do {
        std::memcpy(&f, &old, 4);
        f += v;
        std::memcpy(&next, &f, 4);
    } while (!__atomic_compare_exchange_n(u, &old, next, true, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
    std::memcpy(&f, &old, 4);
    return f;
}
inline int atomicAdd(int* p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline int atomicMax(int* p, int v) {
    int old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (old < v && !__atomic_compare_exchange_n(p, &old, v, true, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
    }
    return old;
}
inline int atomicCAS(int* p, int cmp, int v) {
    __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return cmp;
}

// Math intrinsics the kernels may use.
using std::max;
using std::min;
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
template <class T>
inline T __ldg(const T* p) {
    return *p;
}
