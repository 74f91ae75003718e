// Emulator stand-in for CUDA's cuda_bf16.h (round-to-nearest-even, NaN kept quiet).
#pragma once
#include <cstdint>
#include <cstring>

struct __nv_bfloat16 {
    uint16_t bits;
};

inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    __nv_bfloat16 b;
    if ((x & 0x7fffffffu) > 0x7f800000u) {
        b.bits = (uint16_t)((x >> 16) | 0x40u);
        return b;
    }
    x += 0x7fffu + ((x >> 16) & 1u);
    b.bits = (uint16_t)(x >> 16);
    return b;
}

inline float __bfloat162float(__nv_bfloat16 b) {
    const uint32_t x = (uint32_t)b.bits << 16;
    float f;
    std::memcpy(&f, &x, 4);
    return f;
}
