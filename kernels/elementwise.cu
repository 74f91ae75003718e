// Elementwise arithmetic: grid-stride loops, one element per thread per step.
#include "common.cuh"

#define GRID_STRIDE(i, n) \
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += blockDim.x * gridDim.x)

// y = a op b; op: 0 add, 1 sub, 2 mul, 3 div.
extern "C" __global__ void ew_binary(const float* __restrict__ a, const float* __restrict__ b,
                                     float* __restrict__ y, EwArgs p) {
    GRID_STRIDE(i, p.n) {
        const float u = a[i], v = b[i];
        y[i] = p.op == 0 ? u + v : (p.op == 1 ? u - v : (p.op == 2 ? u * v : u / v));
    }
}

// y = alpha * x + beta
extern "C" __global__ void ew_affine(const float* __restrict__ x, float* __restrict__ y, EwArgs p) {
    GRID_STRIDE(i, p.n) y[i] = p.alpha * x[i] + p.beta;
}

// y = alpha * x + beta * y, in place
extern "C" __global__ void ew_axpby(const float* __restrict__ x, float* __restrict__ y, EwArgs p) {
    GRID_STRIDE(i, p.n) y[i] = p.alpha * x[i] + p.beta * y[i];
}

// y = alpha
extern "C" __global__ void ew_fill(float* __restrict__ y, EwArgs p) {
    GRID_STRIDE(i, p.n) y[i] = p.alpha;
}

// y = alpha * s[0]
extern "C" __global__ void ew_broadcast_scalar(const float* __restrict__ s, float* __restrict__ y, EwArgs p) {
    const float v = s[0] * p.alpha;
    GRID_STRIDE(i, p.n) y[i] = v;
}

// y[n, c, hw] = x[n, c, hw] + bias[c]
extern "C" __global__ void ew_add_channels(const float* __restrict__ x, const float* __restrict__ bias,
                                           float* __restrict__ y, ChanArgs p) {
    const int total = p.n * p.c * p.hw;
    GRID_STRIDE(i, total) y[i] = x[i] + bias[(i / p.hw) % p.c];
}
