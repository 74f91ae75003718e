// Binary cross-entropy on logits, stable form max(x,0) - x t + log(1 + e^-|x|).
// Forward: per-block partial sums here, then reduce.cu's sum_final with scale 1/n.
#include "common.cuh"

extern "C" __global__ void bce_partial(const float* __restrict__ x, const float* __restrict__ t,
                                       float* __restrict__ partial, RedArgs p) {
    __shared__ float scratch[WARPS + 1];
    float acc = 0.0f;
    for (int i = blockIdx.x * BLOCK + threadIdx.x; i < p.n; i += BLOCK * gridDim.x) {
        const float v = x[i];
        acc += fmaxf(v, 0.0f) - v * t[i] + log1pf(expf(-fabsf(v)));
    }
    const float total = block_sum(acc, scratch);
    if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

// dx = (sigmoid(x) - t) * (dloss[0] / n)
extern "C" __global__ void bce_backward(const float* __restrict__ x, const float* __restrict__ t,
                                        const float* __restrict__ dloss, float* __restrict__ dx, RedArgs p) {
    const float scale = dloss[0] / (float)p.n;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < p.n; i += blockDim.x * gridDim.x) {
        const float v = x[i];
        const float e = expf(-fabsf(v));
        const float s = v >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
        dx[i] = (s - t[i]) * scale;
    }
}
