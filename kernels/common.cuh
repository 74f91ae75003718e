// Shared by every kernel file: block sizes, the parameter structs passed by value, and the
// reduction / tiled-product building blocks.
//
// Parameter structs end in `Args`. build.rs parses them (fields of int / unsigned / float) and
// generates the `#[repr(C)]` Rust mirrors, so host and device layouts cannot drift apart.
// NVRTC compiles this as CUDA C++17; the emulator compiles it as C++20 under kernels/emu/shim.h.
#pragma once

#define BLOCK 256          // threads of every 1-D kernel
#define WARPS (BLOCK / 32)
#define MAX_GRID 1024      // grid-stride kernels never launch more blocks than this

// Elementwise: n elements, two scalars, an op code.
struct EwArgs {
    int n;
    int op;
    float alpha;
    float beta;
};

// Per-channel NCHW extents.
struct ChanArgs {
    int n;
    int c;
    int hw;
};

// translate_cutout: NCHW extents, and 1 for the backward gather.
struct AugmentArgs {
    int n;
    int c;
    int h;
    int w;
    int backward;
};

// Reductions: n inputs, `parts` partial sums, a final scale.
struct RedArgs {
    int n;
    int parts;
    float scale;
};

// C[m x n] = op(A)[m x k] op(B)[k x n], row-major.
struct GemmArgs {
    int m;
    int n;
    int k;
    int trans_a;
    int trans_b;
};

// A convolution seen from its own side (see ConvGeom in src/backend/mod.rs); `splits` is the
// split-K factor of the weight gradient.
struct ConvArgs {
    int n;
    int c_in;
    int h_in;
    int w_in;
    int c_out;
    int h_out;
    int w_out;
    int kh;
    int kw;
    int stride;
    int pad;
    int splits;
};

// BatchNorm: extents, eps, and whether backward differentiates through batch statistics.
struct BnArgs {
    int n;
    int c;
    int hw;
    float eps;
    int batch_stats;
};

struct AdamArgs {
    int n;
    float step_size;   // lr / (1 - beta1^t)
    float bias2_sqrt;  // sqrt(1 - beta2^t)
    float beta1;
    float beta2;
    float eps;
    float weight_decay;
};

struct SgdArgs {
    int n;
    float lr;
    float momentum;
    float weight_decay;
    int first_step;
};

struct CvtArgs {
    int n;
};

// ---------------------------------------------------------------------------------------
// Reductions. A block of BLOCK threads sums one value per thread: warp shuffles inside each
// warp, then the warp sums through shared memory. Every thread gets the total.

static __device__ __forceinline__ float warp_sum(float v) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
    return v;
}

// `scratch` holds WARPS + 1 floats of shared memory.
static __device__ __forceinline__ float block_sum(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_sum(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float w = lane < WARPS ? scratch[lane] : 0.0f;
        w = warp_sum(w);
        if (lane == 0) scratch[WARPS] = w;
    }
    __syncthreads();
    const float total = scratch[WARPS];
    __syncthreads();  // scratch may be reused right after
    return total;
}

// Welford triple (count, mean, M2), merged with Chan's formula: one pass gives mean and
// variance without the cancellation of sum / sum-of-squares.
struct Welford {
    float n, mean, m2;
};

static __device__ __forceinline__ Welford welford_merge(Welford a, Welford b) {
    const float n = a.n + b.n;
    if (n == 0.0f) return a;
    const float d = b.mean - a.mean;
    const float fb = b.n / n;
    Welford r;
    r.n = n;
    r.mean = a.mean + d * fb;
    r.m2 = a.m2 + b.m2 + d * d * a.n * fb;
    return r;
}

static __device__ __forceinline__ Welford warp_welford(Welford w) {
    for (int off = 16; off > 0; off >>= 1) {
        Welford o;
        o.n = __shfl_down_sync(0xffffffffu, w.n, off);
        o.mean = __shfl_down_sync(0xffffffffu, w.mean, off);
        o.m2 = __shfl_down_sync(0xffffffffu, w.m2, off);
        w = welford_merge(w, o);
    }
    return w;
}

// `scratch` holds WARPS + 1 Welford triples of shared memory.
static __device__ __forceinline__ Welford block_welford(Welford w, Welford* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    w = warp_welford(w);
    if (lane == 0) scratch[warp] = w;
    __syncthreads();
    if (warp == 0) {
        Welford v;
        if (lane < WARPS) {
            v = scratch[lane];
        } else {
            v.n = 0.0f;
            v.mean = 0.0f;
            v.m2 = 0.0f;
        }
        v = warp_welford(v);
        if (lane == 0) scratch[WARPS] = v;
    }
    __syncthreads();
    const Welford total = scratch[WARPS];
    __syncthreads();
    return total;
}

// ---------------------------------------------------------------------------------------
// The tiled product behind gemm and the implicit-GEMM convolutions: a block computes a
// TM x TN tile of C = A B with BLOCK threads, each owning a 4 x 4 register block of adjacent
// rows and columns (tile_row, tile_col), so each k step reads its 4 + 4 operands from shared
// memory as two 16-byte loads: 3 shared-memory wavefronts a warp for 16 FMAs, where one
// scalar load per operand took 8 and bounded the FMA rate at half the SM's.
// A and B are loaders (below) that return 0 outside the matrix, so the convolutions gather
// their operands on the fly: no im2col / col2im buffer.
//
// Software-pipelined: the next TK slice is gathered into registers while the current one is
// multiplied out of shared memory, so the gathers' latency (index arithmetic and global
// loads) hides behind the FMAs. The slices alternate between two shared buffers, so one
// barrier per slice suffices: a thread storing slice i+1 into the buffer slice i-1 used has
// passed slice i's barrier, which every thread reached after finishing slice i-1.

#define TM 64
#define TN 64
#define TK 16
#define TILE_A_PER_THREAD ((TM * TK) / BLOCK)
#define TILE_B_PER_THREAD ((TK * TN) / BLOCK)
// Row stride of an A slice in shared memory (stored k-major): 16 threads store 16 k's of one
// A row at a time, TM_PAD apart, and TM + 4 spreads those over 8 banks instead of one while
// keeping every k row 16-byte aligned for the float4 reads.
#define TM_PAD (TM + 4)
// Shared floats a kernel declares (16-byte aligned) for tile_product's As and Bs: two slices
// each.
#define TILE_AS (2 * TK * TM_PAD)
#define TILE_BS (2 * TK * TN)

// Row i and column j (< 4) of this thread's register block within the TM x TN tile.
static __device__ __forceinline__ int tile_row(int i) { return (threadIdx.x >> 4) * 4 + i; }
static __device__ __forceinline__ int tile_col(int j) { return (threadIdx.x & 15) * 4 + j; }

// The operands are loaders with a two-step interface, so the index arithmetic of a thread's
// fixed row (of A) or column (of B) runs once per tile, not once per element:
//   typename L::Line line(int i) const;          // row i of A, or column i of B
//   float at(const typename L::Line&, int k) const;  // element k along it, for k < K
// A line outside the matrix must make `at` return 0.
//
// Each thread gathers TILE_A_PER_THREAD elements of A (rows tid / TK + r * BLOCK / TK, the
// same k offset tid % TK) and TILE_B_PER_THREAD of B (one column, tid % TN, since BLOCK is a
// multiple of TN; k offsets tid / TN + r * BLOCK / TN).
static_assert(BLOCK % TN == 0 && BLOCK % TK == 0, "tile_gather's fixed lines");

// This thread's share of the TK slice at k0 (zeros at and past k_end).
template <class LoadA, class LoadB>
static __device__ __forceinline__ void tile_gather(const LoadA& la, const LoadB& lb,
                                                   const typename LoadA::Line rows[TILE_A_PER_THREAD],
                                                   const typename LoadB::Line& col, int k0, int k_end,
                                                   float ra[TILE_A_PER_THREAD], float rb[TILE_B_PER_THREAD]) {
    const int tid = threadIdx.x;
    const int ka = k0 + tid % TK;
#pragma unroll
    for (int r = 0; r < TILE_A_PER_THREAD; ++r) ra[r] = ka < k_end ? la.at(rows[r], ka) : 0.0f;
#pragma unroll
    for (int r = 0; r < TILE_B_PER_THREAD; ++r) {
        const int k = k0 + tid / TN + r * (BLOCK / TN);
        rb[r] = k < k_end ? lb.at(col, k) : 0.0f;
    }
}

// As holds TILE_AS floats, Bs TILE_BS (shared memory).
template <class LoadA, class LoadB>
static __device__ __forceinline__ void tile_product(const LoadA& la, const LoadB& lb, int m0, int n0,
                                                    int k_begin, int k_end, float* As, float* Bs,
                                                    float acc[4][4]) {
    const int tid = threadIdx.x;
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
    typename LoadA::Line rows[TILE_A_PER_THREAD];
#pragma unroll
    for (int r = 0; r < TILE_A_PER_THREAD; ++r) rows[r] = la.line(m0 + tid / TK + r * (BLOCK / TK));
    const typename LoadB::Line col = lb.line(n0 + tid % TN);
    float ra[TILE_A_PER_THREAD], rb[TILE_B_PER_THREAD];
    if (k_begin < k_end) tile_gather(la, lb, rows, col, k_begin, k_end, ra, rb);
    int buf = 0;
    for (int k0 = k_begin; k0 < k_end; k0 += TK) {
        float* as = As + buf * TK * TM_PAD;
        float* bs = Bs + buf * TK * TN;
        // A slice stored k-major (as[kk * TM_PAD + row]), B slice as bs[kk * TN + col].
#pragma unroll
        for (int r = 0; r < TILE_A_PER_THREAD; ++r) as[(tid % TK) * TM_PAD + tid / TK + r * (BLOCK / TK)] = ra[r];
#pragma unroll
        for (int r = 0; r < TILE_B_PER_THREAD; ++r) bs[(tid / TN + r * (BLOCK / TN)) * TN + tid % TN] = rb[r];
        __syncthreads();
        if (k0 + TK < k_end) tile_gather(la, lb, rows, col, k0 + TK, k_end, ra, rb);
#pragma unroll
        for (int kk = 0; kk < TK; ++kk) {
            const float4 a4 = *reinterpret_cast<const float4*>(as + kk * TM_PAD + tile_row(0));
            const float4 b4 = *reinterpret_cast<const float4*>(bs + kk * TN + tile_col(0));
            const float a[4] = {a4.x, a4.y, a4.z, a4.w}, b[4] = {b4.x, b4.y, b4.z, b4.w};
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
        }
        buf ^= 1;
    }
}

// Slice `z` of `splits` equal, TK-aligned slices of [0, K): [*k_begin, *k_end), empty past K.
static __device__ __forceinline__ void split_k_range(int K, int splits, int z, int* k_begin, int* k_end) {
    const int chunk = ((K + splits - 1) / splits + TK - 1) / TK * TK;
    *k_begin = z * chunk;
    *k_end = min(K, *k_begin + chunk);
}
