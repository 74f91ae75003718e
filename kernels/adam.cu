// Fused optimiser updates over a flat buffer (ptr, len): one tensor or every parameter of a
// model packed together, the kernel does not care. PyTorch's formulas.
#include "common.cuh"

// Adam (amsgrad off): bias-corrected moments, eps added after the square root.
extern "C" __global__ void adam_step(float* __restrict__ param, const float* __restrict__ grad,
                                     float* __restrict__ m, float* __restrict__ v, AdamArgs p) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < p.n; i += blockDim.x * gridDim.x) {
        const float g = grad[i] + p.weight_decay * param[i];
        const float mi = p.beta1 * m[i] + (1.0f - p.beta1) * g;
        const float vi = p.beta2 * v[i] + (1.0f - p.beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        const float denom = sqrtf(vi) / p.bias2_sqrt + p.eps;
        param[i] -= p.step_size * mi / denom;
    }
}

// SGD with momentum (dampening 0, no Nesterov); momentum 0 leaves buf untouched.
extern "C" __global__ void sgd_step(float* __restrict__ param, const float* __restrict__ grad,
                                    float* __restrict__ buf, SgdArgs p) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < p.n; i += blockDim.x * gridDim.x) {
        const float g = grad[i] + p.weight_decay * param[i];
        float d = g;
        if (p.momentum != 0.0f) {
            d = p.first_step ? g : p.momentum * buf[i] + g;
            buf[i] = d;
        }
        param[i] -= p.lr * d;
    }
}
