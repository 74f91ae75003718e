// Differentiable augmentation (DiffAugment, Zhao et al. 2020): each image shifted by a whole
// number of pixels with zero fill, then a rectangle cut out (set to 0). Both are linear, and
// the backward is the same gather the other way round, so one kernel serves both.
#include "common.cuh"

#define GRID_STRIDE(i, n) \
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += blockDim.x * gridDim.x)

// x, y: [n, c, h, w]. params[6 b ..]: dy, dx, then the cut rectangle's rows [y0, y1) and
// columns [x0, x1) in output coordinates (whole numbers stored as floats).
// forward:  y[b, ch, i, j] = cut(i, j) ? 0 : x[b, ch, i - dy, j - dx]   (0 outside the image)
// backward: y[b, ch, i, j] = cut(i + dy, j + dx) ? 0 : x[b, ch, i + dy, j + dx], x = dL/dout
extern "C" __global__ void translate_cutout(const float* __restrict__ x, const float* __restrict__ params,
                                            float* __restrict__ y, AugmentArgs p) {
    const int plane = p.h * p.w;
    const int total = p.n * p.c * plane;
    GRID_STRIDE(idx, total) {
        const int b = idx / (p.c * plane);
        const int i = (idx / p.w) % p.h, j = idx % p.w;
        const float* q = params + 6 * b;
        const int dy = (int)q[0], dx = (int)q[1];
        // The output pixel, and the input pixel it reads (backward: the reverse).
        const int oi = p.backward ? i + dy : i, oj = p.backward ? j + dx : j;
        const int si = p.backward ? oi : i - dy, sj = p.backward ? oj : j - dx;
        const bool cut = oi >= (int)q[2] && oi < (int)q[3] && oj >= (int)q[4] && oj < (int)q[5];
        const bool inside = si >= 0 && si < p.h && sj >= 0 && sj < p.w;
        y[idx] = (!cut && inside) ? x[idx - i * p.w - j + si * p.w + sj] : 0.0f;
    }
}
