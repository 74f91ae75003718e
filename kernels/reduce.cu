// Reductions in two deterministic stages: per-block partial sums (grid-stride, shuffles +
// shared memory), then one block sums the partials in order. No atomics, so the result is
// the same on every run.
#include "common.cuh"

// partial[blockIdx.x] = sum of this block's grid-stride share of x.
extern "C" __global__ void sum_partial(const float* __restrict__ x, float* __restrict__ partial, RedArgs p) {
    __shared__ float scratch[WARPS + 1];
    float acc = 0.0f;
    for (int i = blockIdx.x * BLOCK + threadIdx.x; i < p.n; i += BLOCK * gridDim.x) acc += x[i];
    const float total = block_sum(acc, scratch);
    if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

// out[0] = scale * sum(partial[0..parts]); one block.
extern "C" __global__ void sum_final(const float* __restrict__ partial, float* __restrict__ out, RedArgs p) {
    __shared__ float scratch[WARPS + 1];
    float acc = 0.0f;
    for (int i = threadIdx.x; i < p.parts; i += BLOCK) acc += partial[i];
    const float total = block_sum(acc, scratch);
    if (threadIdx.x == 0) out[0] = total * p.scale;
}

// out[c] = sum over (n, hw) of x[n, c, hw]; one block per channel.
extern "C" __global__ void sum_channels(const float* __restrict__ x, float* __restrict__ out, ChanArgs p) {
    __shared__ float scratch[WARPS + 1];
    const int c = blockIdx.x;
    const int m = p.n * p.hw;
    float acc = 0.0f;
    for (int j = threadIdx.x; j < m; j += BLOCK) {
        const int nn = j / p.hw, i = j - nn * p.hw;
        acc += x[(nn * p.c + c) * p.hw + i];
    }
    const float total = block_sum(acc, scratch);
    if (threadIdx.x == 0) out[c] = total;
}

// out[i] = sum over s of parts[s * n + i], s in order (split-K results of the weight
// gradient; p.parts = number of splits).
extern "C" __global__ void sum_splits(const float* __restrict__ parts, float* __restrict__ out, RedArgs p) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < p.n; i += blockDim.x * gridDim.x) {
        float acc = 0.0f;
        for (int s = 0; s < p.parts; ++s) acc += parts[s * p.n + i];
        out[i] = acc;
    }
}
