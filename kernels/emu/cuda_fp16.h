// Emulator stand-in for CUDA's cuda_fp16.h: the storage type and the conversions convert.cu
// uses, round-to-nearest-even like the device.
#pragma once
#include <cstdint>
#include <cstring>

struct __half {
    uint16_t bits;
};

inline __half __float2half_rn(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t abs = x & 0x7fffffffu;
    __half h;
    if (abs >= 0x7f800000u) {  // inf / nan
        h.bits = (uint16_t)(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
        return h;
    }
    if (abs >= 0x477ff000u) {  // rounds to >= 65520: overflow to inf
        h.bits = (uint16_t)(sign | 0x7c00u);
        return h;
    }
    if (abs < 0x38800000u) {  // subnormal half (or zero): |f| < 2^-14
        if (abs < 0x33000000u) {  // < 2^-25: rounds to zero
            h.bits = (uint16_t)sign;
            return h;
        }
        const uint32_t e = abs >> 23;
        const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
        const uint32_t shift = 126u - e;  // 14 - (e - 127) - 1 + 10 ... aligns to 2^-24 units
        uint32_t q = mant >> shift;
        const uint32_t rem = mant & ((1u << shift) - 1u), half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (q & 1u))) ++q;
        h.bits = (uint16_t)(sign | q);
        return h;
    }
    // normal: rebias exponent 127 -> 15, round the 13 dropped bits to nearest even
    uint32_t v = abs - 0x38000000u;
    const uint32_t rem = v & 0x1fffu;
    v >>= 13;
    if (rem > 0x1000u || (rem == 0x1000u && (v & 1u))) ++v;
    h.bits = (uint16_t)(sign | v);
    return h;
}

inline float __half2float(__half h) {
    const uint32_t sign = (uint32_t)(h.bits & 0x8000u) << 16;
    uint32_t e = (h.bits >> 10) & 0x1fu, m = h.bits & 0x3ffu, x;
    if (e == 0x1fu) {
        x = sign | 0x7f800000u | (m << 13);
    } else if (e == 0) {
        if (m == 0) {
            x = sign;
        } else {  // subnormal: normalise
            int k = -1;
            do {
                m <<= 1;
                ++k;
            } while (!(m & 0x400u));
            x = sign | ((uint32_t)(112 - k) << 23) | ((m & 0x3ffu) << 13);
        }
    } else {
        x = sign | ((e + 112u) << 23) | (m << 13);
    }
    float f;
    std::memcpy(&f, &x, 4);
    return f;
}
