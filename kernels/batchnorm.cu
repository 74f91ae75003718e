// BatchNorm2d over (n, hw) per channel, PyTorch's conventions (biased variance to normalise,
// eps inside the square root). Training forward and backward run one block per channel:
// one pass reduces (Welford for mean and variance, Σdy and Σdy·x̂ for the backward), the
// same block then writes the channel's outputs.
#include "common.cuh"

// x[n, c, hw] for the j-th element of channel c (j over n*hw).
static __device__ __forceinline__ int chan_index(int j, int c, const BnArgs& p) {
    const int nn = j / p.hw, i = j - nn * p.hw;
    return (nn * p.c + c) * p.hw + i;
}

// grid c, block 256. Writes y and the batch mean / biased variance.
extern "C" __global__ void bn_forward_train(const float* __restrict__ x, const float* __restrict__ gamma,
                                            const float* __restrict__ beta, float* __restrict__ y,
                                            float* __restrict__ mean, float* __restrict__ var, BnArgs p) {
    __shared__ Welford scratch[WARPS + 1];
    const int c = blockIdx.x, m = p.n * p.hw;
    Welford w;
    w.n = 0.0f;
    w.mean = 0.0f;
    w.m2 = 0.0f;
    for (int j = threadIdx.x; j < m; j += BLOCK) {
        const float v = x[chan_index(j, c, p)];
        w.n += 1.0f;
        const float d = v - w.mean;
        w.mean += d / w.n;
        w.m2 += d * (v - w.mean);
    }
    const Welford t = block_welford(w, scratch);
    const float mu = t.mean, sigma2 = t.m2 / t.n;
    const float invstd = 1.0f / sqrtf(sigma2 + p.eps);
    const float scale = gamma[c] * invstd, shift = beta[c] - mu * scale;
    for (int j = threadIdx.x; j < m; j += BLOCK) {
        const int idx = chan_index(j, c, p);
        y[idx] = x[idx] * scale + shift;
    }
    if (threadIdx.x == 0) {
        mean[c] = mu;
        var[c] = sigma2;
    }
}

// Eval mode: normalise with given statistics. Grid-stride over all elements.
extern "C" __global__ void bn_forward_eval(const float* __restrict__ x, const float* __restrict__ gamma,
                                           const float* __restrict__ beta, const float* __restrict__ mean,
                                           const float* __restrict__ var, float* __restrict__ y, BnArgs p) {
    const int total = p.n * p.c * p.hw;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += blockDim.x * gridDim.x) {
        const int c = (i / p.hw) % p.c;
        const float scale = gamma[c] * (1.0f / sqrtf(var[c] + p.eps));
        y[i] = x[i] * scale + (beta[c] - mean[c] * scale);
    }
}

// grid c, block 256. dgamma = Σ dy·x̂, dbeta = Σ dy; with batch statistics
// dx = gamma·invstd · (dy − Σdy/M − x̂·Σ(dy·x̂)/M), else dx = gamma·invstd·dy.
extern "C" __global__ void bn_backward(const float* __restrict__ x, const float* __restrict__ dy,
                                       const float* __restrict__ gamma, const float* __restrict__ mean,
                                       const float* __restrict__ var, float* __restrict__ dx,
                                       float* __restrict__ dgamma, float* __restrict__ dbeta, BnArgs p) {
    __shared__ float scratch[WARPS + 1];
    const int c = blockIdx.x, m = p.n * p.hw;
    const float mu = mean[c], invstd = 1.0f / sqrtf(var[c] + p.eps);
    float sd = 0.0f, sdx = 0.0f;
    for (int j = threadIdx.x; j < m; j += BLOCK) {
        const int idx = chan_index(j, c, p);
        const float g = dy[idx];
        sd += g;
        sdx += g * (x[idx] - mu) * invstd;
    }
    sd = block_sum(sd, scratch);
    sdx = block_sum(sdx, scratch);
    const float k = gamma[c] * invstd;
    const float fm = (float)m;
    const float mean_dy = sd / fm, mean_dy_xhat = sdx / fm;
    for (int j = threadIdx.x; j < m; j += BLOCK) {
        const int idx = chan_index(j, c, p);
        if (p.batch_stats) {
            const float xhat = (x[idx] - mu) * invstd;
            dx[idx] = k * (dy[idx] - mean_dy - xhat * mean_dy_xhat);
        } else {
            dx[idx] = k * dy[idx];
        }
    }
    if (threadIdx.x == 0) {
        dgamma[c] = sdx;
        dbeta[c] = sd;
    }
}
