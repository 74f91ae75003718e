// relu, leaky_relu, tanh, sigmoid, sqrt: forward and backward. The backward of relu /
// leaky_relu reads the forward input, tanh / sigmoid / sqrt the forward output
// (Unary::backward_uses_output).
// At x = 0 the relu family takes the left slope, as PyTorch does.
#include "common.cuh"

#define GRID_STRIDE(i, n) \
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += blockDim.x * gridDim.x)

// Logistic function without overflow: e^-|x| never exceeds 1.
static __device__ __forceinline__ float sigmoidf_stable(float x) {
    const float e = expf(-fabsf(x));
    return x >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
}

extern "C" __global__ void relu_fwd(const float* __restrict__ x, float* __restrict__ y, EwArgs p) {
    GRID_STRIDE(i, p.n) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

// `x` may be the forward input or output: for a slope >= 0 both are > 0 at the same places.
extern "C" __global__ void relu_bwd(const float* __restrict__ x, const float* __restrict__ dy,
                                    float* __restrict__ dx, EwArgs p) {
    GRID_STRIDE(i, p.n) dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
}

// alpha = negative slope
extern "C" __global__ void leaky_relu_fwd(const float* __restrict__ x, float* __restrict__ y, EwArgs p) {
    GRID_STRIDE(i, p.n) y[i] = x[i] > 0.0f ? x[i] : p.alpha * x[i];
}

extern "C" __global__ void leaky_relu_bwd(const float* __restrict__ x, const float* __restrict__ dy,
                                          float* __restrict__ dx, EwArgs p) {
    GRID_STRIDE(i, p.n) dx[i] = x[i] > 0.0f ? dy[i] : p.alpha * dy[i];
}

extern "C" __global__ void tanh_fwd(const float* __restrict__ x, float* __restrict__ y, EwArgs p) {
    GRID_STRIDE(i, p.n) y[i] = tanhf(x[i]);
}

extern "C" __global__ void tanh_bwd(const float* __restrict__ y, const float* __restrict__ dy,
                                    float* __restrict__ dx, EwArgs p) {
    GRID_STRIDE(i, p.n) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
}

extern "C" __global__ void sigmoid_fwd(const float* __restrict__ x, float* __restrict__ y, EwArgs p) {
    GRID_STRIDE(i, p.n) y[i] = sigmoidf_stable(x[i]);
}

extern "C" __global__ void sigmoid_bwd(const float* __restrict__ y, const float* __restrict__ dy,
                                       float* __restrict__ dx, EwArgs p) {
    GRID_STRIDE(i, p.n) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
}

// IEEE-rounded square root (sqrtf is, without --use_fast_math), as the CPU's f32::sqrt.
extern "C" __global__ void sqrt_fwd(const float* __restrict__ x, float* __restrict__ y, EwArgs p) {
    GRID_STRIDE(i, p.n) y[i] = sqrtf(x[i]);
}

extern "C" __global__ void sqrt_bwd(const float* __restrict__ y, const float* __restrict__ dy,
                                    float* __restrict__ dx, EwArgs p) {
    GRID_STRIDE(i, p.n) dx[i] = dy[i] / (2.0f * y[i]);
}
