// f32 <-> f16 / bf16, round to nearest even (checkpoint export, mixed-precision storage).
// With CUDA's cuda_fp16.h / cuda_bf16.h on the include path (the PyPI runtime wheel, a CUDA
// toolkit; the emulator has its own), their types and intrinsics; without them (a machine
// with only a driver and libnvrtc), the same conversions written out here, so this file
// compiles everywhere NVRTC does.
#if defined(DCGAN_EMU) || __has_include(<cuda_fp16.h>)
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#else
struct __half {
    unsigned short x;
};
struct __nv_bfloat16 {
    unsigned short x;
};
static __device__ __forceinline__ __half __float2half_rn(float f) {
    __half h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h.x) : "f"(f));
    return h;
}
static __device__ __forceinline__ float __half2float(__half h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h.x));
    return f;
}
static __device__ __forceinline__ __nv_bfloat16 __float2bfloat16_rn(float f) {
    unsigned int u = __float_as_uint(f);
    __nv_bfloat16 b;
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        b.x = (unsigned short)((u >> 16) | 0x40u);  // quiet NaN
    } else {
        u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
        b.x = (unsigned short)(u >> 16);
    }
    return b;
}
static __device__ __forceinline__ float __bfloat162float(__nv_bfloat16 b) {
    return __uint_as_float((unsigned int)b.x << 16);
}
#endif
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
