// f32 <-> f16 / bf16, round to nearest even (checkpoint export, mixed-precision storage).
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include "common.cuh"

extern "C" __global__ void f32_to_f16(const float* __restrict__ x, __half* __restrict__ y, CvtArgs p) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < p.n; i += blockDim.x * gridDim.x)
        y[i] = __float2half_rn(x[i]);
}

extern "C" __global__ void f16_to_f32(const __half* __restrict__ x, float* __restrict__ y, CvtArgs p) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < p.n; i += blockDim.x * gridDim.x)
        y[i] = __half2float(x[i]);
}

extern "C" __global__ void f32_to_bf16(const float* __restrict__ x, __nv_bfloat16* __restrict__ y, CvtArgs p) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < p.n; i += blockDim.x * gridDim.x)
        y[i] = __float2bfloat16_rn(x[i]);
}

extern "C" __global__ void bf16_to_f32(const __nv_bfloat16* __restrict__ x, float* __restrict__ y, CvtArgs p) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < p.n; i += blockDim.x * gridDim.x)
        y[i] = __bfloat162float(x[i]);
}
