// conv2d forward, backward-data and backward-weight as implicit GEMMs: the im2col operand is
// gathered tile by tile into shared memory (common.cuh: tile_product), never materialised.
// conv_transpose2d is conv2d's adjoint (ConvGeom in src/backend/mod.rs), so its forward is
// conv_bwd_data and its backward uses conv_fwd and conv_bwd_weight: no col2im buffer either.
#include "common.cuh"

// Loaders (common.cuh: tile_product): line() does a fixed row's or column's index work once;
// at() the rest for each k.

// A: row-major [rows x cols] matrix, zero outside.
struct DenseLoad {
    const float* p;
    int rows, cols;
    struct Line {
        const float* p;
        bool ok;
    };
    __device__ __forceinline__ Line line(int r) const { return Line{p + (size_t)r * cols, r < rows}; }
    __device__ __forceinline__ float at(const Line& l, int k) const { return l.ok ? l.p[k] : 0.0f; }
};

// B of the forward: the im2col matrix of x, [c_in*kh*kw x n*h_out*w_out], read on the fly.
// A column is one output pixel (image, oy, ox); k is an input tap (ci, ki, kj).
struct Im2colLoad {
    const float* x;
    ConvArgs g;
    struct Line {
        const float* img;  // x of the pixel's image
        int iy0, ix0;      // the input pixel under tap (0, 0)
        bool ok;
    };
    __device__ __forceinline__ Line line(int col) const {
        const int hw = g.h_out * g.w_out, nn = col / hw, pix = col - nn * hw, oy = pix / g.w_out;
        const int ox = pix - oy * g.w_out;
        return Line{x + (size_t)nn * g.c_in * g.h_in * g.w_in, oy * g.stride - g.pad, ox * g.stride - g.pad,
                    col < g.n * hw};
    }
    __device__ __forceinline__ float at(const Line& l, int k) const {
        const int taps = g.kh * g.kw, ci = k / taps, t = k - ci * taps, ki = t / g.kw, kj = t - ki * g.kw;
        const int iy = l.iy0 + ki, ix = l.ix0 + kj;
        if (!l.ok || iy < 0 || iy >= g.h_in || ix < 0 || ix >= g.w_in) return 0.0f;
        return l.img[(ci * g.h_in + iy) * g.w_in + ix];
    }
};

// B of the weight gradient: im2col transposed, [n*h_out*w_out x c_in*kh*kw]. A column is one
// tap (ci, ki, kj); k is an output pixel (image, oy, ox).
struct Im2colTLoad {
    const float* x;
    ConvArgs g;
    struct Line {
        const float* plane;  // x's channel ci of image 0
        int ki, kj;
        bool ok;
    };
    __device__ __forceinline__ Line line(int col) const {
        const int taps = g.kh * g.kw, ci = col / taps, t = col - ci * taps, ki = t / g.kw;
        return Line{x + (size_t)ci * g.h_in * g.w_in, ki - g.pad, t - ki * g.kw - g.pad, col < g.c_in * taps};
    }
    __device__ __forceinline__ float at(const Line& l, int k) const {
        const int hw = g.h_out * g.w_out, nn = k / hw, pix = k - nn * hw, oy = pix / g.w_out;
        const int iy = oy * g.stride + l.ki, ix = (pix - oy * g.w_out) * g.stride + l.kj;
        if (!l.ok || iy < 0 || iy >= g.h_in || ix < 0 || ix >= g.w_in) return 0.0f;
        return l.plane[((size_t)nn * g.c_in * g.h_in + iy) * g.w_in + ix];
    }
};

// A of the weight gradient: dy as [c_out x n*h_out*w_out].
struct DyLoad {
    const float* dy;
    ConvArgs g;
    struct Line {
        const float* plane;  // dy's channel co of image 0
        bool ok;
    };
    __device__ __forceinline__ Line line(int co) const {
        return Line{dy + (size_t)co * g.h_out * g.w_out, co < g.c_out};
    }
    __device__ __forceinline__ float at(const Line& l, int k) const {
        const int hw = g.h_out * g.w_out, nn = k / hw;
        return l.ok ? l.plane[(size_t)nn * g.c_out * hw + (k - nn * hw)] : 0.0f;
    }
};

// y[n, co, oy, ox] = sum w[co, ci, ki, kj] x[n, ci, oy*s+ki-p, ox*s+kj-p]
// GEMM: M = c_out, N = n*h_out*w_out, K = c_in*kh*kw, split over blockIdx.z into g.splits
// slices of K when the tiles alone are too few to fill the GPU (D's last layer: M = 1, K = 8192).
// Slice z writes y[z * n*c_out*h_out*w_out + ...]; reduce.cu's sum_splits adds the slices.
// grid (ceil(N/64), ceil(M/64), splits), block 256.
extern "C" __global__ void __launch_bounds__(BLOCK) conv_fwd(const float* __restrict__ x, const float* __restrict__ w,
                                                     float* __restrict__ y, ConvArgs g) {
    __shared__ __align__(16) float As[TILE_AS];
    __shared__ __align__(16) float Bs[TILE_BS];
    const int K = g.c_in * g.kh * g.kw, hw = g.h_out * g.w_out;
    const int m0 = blockIdx.y * TM, n0 = blockIdx.x * TN;
    int k_begin, k_end;
    split_k_range(K, g.splits, blockIdx.z, &k_begin, &k_end);
    y += (size_t)blockIdx.z * g.n * g.c_out * hw;
    DenseLoad la;
    la.p = w;
    la.rows = g.c_out;
    la.cols = K;
    Im2colLoad lb;
    lb.x = x;
    lb.g = g;
    float acc[4][4];
    tile_product(la, lb, m0, n0, k_begin, k_end, As, Bs, acc);  // empty slice: zeros
    for (int i = 0; i < 4; ++i) {
        const int co = m0 + tile_row(i);
        if (co >= g.c_out) continue;
        for (int j = 0; j < 4; ++j) {
            const int col = n0 + tile_col(j);
            if (col >= g.n * hw) continue;
            const int nn = col / hw, pix = col - nn * hw;
            y[(nn * g.c_out + co) * hw + pix] = acc[i][j];
        }
    }
}

// Backward to the data, split into stride x stride phases (blockIdx.z = ry * stride + rx):
// the input pixels (iy, ix) with (iy + pad) % s == ry and (ix + pad) % s == rx receive
// exactly the taps ki = ry + s*ty, kj = rx + s*tx, so no multiply-add is wasted on the
// zeros a stride-s upsampling would insert. Per phase:
// GEMM M = c_in, N = n * |phase rows| * |phase cols|, K = c_out * ceil(kh/s) * ceil(kw/s).
// A of a phase: w's taps (ki, kj) = (ry + s*ty, rx + s*tx) as [c_in x c_out*tkh*tkw].
struct PhaseW {
    const float* w;
    ConvArgs g;
    int ry, rx, tkh, tkw;
    struct Line {
        const float* ci_taps;  // w[0, ci, 0, 0]
        bool ok;
    };
    __device__ __forceinline__ Line line(int ci) const { return Line{w + (size_t)ci * g.kh * g.kw, ci < g.c_in}; }
    __device__ __forceinline__ float at(const Line& l, int k) const {
        const int taps = tkh * tkw, co = k / taps, t = k - co * taps, ty = t / tkw, tx = t - ty * tkw;
        const int ki = ry + g.stride * ty, kj = rx + g.stride * tx;
        if (!l.ok || ki >= g.kh || kj >= g.kw) return 0.0f;
        return l.ci_taps[((size_t)co * g.c_in * g.kh + ki) * g.kw + kj];
    }
};

// B of a phase: dy under the phase's taps, [c_out*tkh*tkw x n*hy*wx]. A column is one input
// pixel (image, iy, ix) of the phase; tap (ty, tx) of it reads dy at (oyb - ty, oxb - tx).
struct PhaseDy {
    const float* dy;
    ConvArgs g;
    int ry, rx, tkh, tkw, iy0, ix0, hy, wx;
    struct Line {
        const float* img;  // dy of the pixel's image
        int oyb, oxb;      // the output pixel under tap (0, 0): (iy + pad - ry) / s, exact
        bool ok;
    };
    __device__ __forceinline__ Line line(int col) const {
        const int hw = hy * wx, nn = col / hw, pix = col - nn * hw, jy = pix / wx, jx = pix - jy * wx;
        const int iy = iy0 + g.stride * jy, ix = ix0 + g.stride * jx;
        return Line{dy + (size_t)nn * g.c_out * g.h_out * g.w_out, (iy + g.pad - ry) / g.stride,
                    (ix + g.pad - rx) / g.stride, col < g.n * hw};
    }
    __device__ __forceinline__ float at(const Line& l, int k) const {
        const int taps = tkh * tkw, co = k / taps, t = k - co * taps, ty = t / tkw, tx = t - ty * tkw;
        const int oy = l.oyb - ty, ox = l.oxb - tx;
        if (!l.ok || ry + g.stride * ty >= g.kh || rx + g.stride * tx >= g.kw || oy < 0 || ox < 0 ||
            oy >= g.h_out || ox >= g.w_out)
            return 0.0f;
        return l.img[((size_t)co * g.h_out + oy) * g.w_out + ox];
    }
};

// grid (ceil(n * ceil(h_in/s) * ceil(w_in/s) / 64), ceil(c_in/64), s*s), block 256.
extern "C" __global__ void __launch_bounds__(BLOCK) conv_bwd_data(const float* __restrict__ dy, const float* __restrict__ w,
                                                          float* __restrict__ dx, ConvArgs g) {
    __shared__ __align__(16) float As[TILE_AS];
    __shared__ __align__(16) float Bs[TILE_BS];
    const int s = g.stride;
    const int ry = blockIdx.z / s, rx = blockIdx.z - ry * s;
    const int iy0 = ((ry - g.pad) % s + s) % s, ix0 = ((rx - g.pad) % s + s) % s;
    const int hy = iy0 < g.h_in ? (g.h_in - iy0 + s - 1) / s : 0;
    const int wx = ix0 < g.w_in ? (g.w_in - ix0 + s - 1) / s : 0;
    const int N = g.n * hy * wx;
    const int m0 = blockIdx.y * TM, n0 = blockIdx.x * TN;
    if (n0 >= N) return;  // this phase has fewer pixels than the largest one: whole block idle
    const int tkh = (g.kh + s - 1) / s, tkw = (g.kw + s - 1) / s;
    PhaseW la;
    la.w = w;
    la.g = g;
    la.ry = ry;
    la.rx = rx;
    la.tkh = tkh;
    la.tkw = tkw;
    PhaseDy lb;
    lb.dy = dy;
    lb.g = g;
    lb.ry = ry;
    lb.rx = rx;
    lb.tkh = tkh;
    lb.tkw = tkw;
    lb.iy0 = iy0;
    lb.ix0 = ix0;
    lb.hy = hy;
    lb.wx = wx;
    float acc[4][4];
    tile_product(la, lb, m0, n0, 0, g.c_out * tkh * tkw, As, Bs, acc);
    const int hw = hy * wx;
    for (int i = 0; i < 4; ++i) {
        const int ci = m0 + tile_row(i);
        if (ci >= g.c_in) continue;
        for (int j = 0; j < 4; ++j) {
            const int col = n0 + tile_col(j);
            if (col >= N) continue;
            const int nn = col / hw, pix = col - nn * hw, jy = pix / wx, jx = pix - jy * wx;
            const int iy = iy0 + s * jy, ix = ix0 + s * jx;
            dx[((nn * g.c_in + ci) * g.h_in + iy) * g.w_in + ix] = acc[i][j];
        }
    }
}

// Backward to the data for few input channels (an image layer, e.g. a generator's RGB output
// as a ConvTranspose2d), where the GEMM form would fill c_in of a tile's 64 rows: each thread
// computes one input pixel for every channel directly, from the weights staged in shared
// memory a chunk of output channels at a time. The host sends c_in <= NARROW_CI and
// c_in * kh * kw <= NARROW_W_FLOATS. grid (ceil(n * h_in * w_in / BLOCK)), block BLOCK.
#define NARROW_CI 4
#define NARROW_W_FLOATS 6144
extern "C" __global__ void __launch_bounds__(BLOCK) conv_bwd_data_narrow(const float* __restrict__ dy,
                                                                 const float* __restrict__ w,
                                                                 float* __restrict__ dx, ConvArgs g) {
    __shared__ float ws[NARROW_W_FLOATS];
    const int taps = g.kh * g.kw, per_co = g.c_in * taps, co_chunk = NARROW_W_FLOATS / per_co;
    const int hw_in = g.h_in * g.w_in, hw_out = g.h_out * g.w_out;
    const int pix = blockIdx.x * BLOCK + threadIdx.x;
    const bool live = pix < g.n * hw_in;
    const int nn = pix / hw_in, r = pix - nn * hw_in, iy = r / g.w_in, ix = r - iy * g.w_in;
    float acc0 = 0.0f, acc1 = 0.0f, acc2 = 0.0f, acc3 = 0.0f;  // channels 0..3 (NARROW_CI)
    for (int c0 = 0; c0 < g.c_out; c0 += co_chunk) {
        const int cn = min(co_chunk, g.c_out - c0);
        __syncthreads();  // every thread is done with the previous chunk
        for (int i = threadIdx.x; i < cn * per_co; i += BLOCK) ws[i] = w[c0 * per_co + i];
        __syncthreads();
        if (!live) continue;  // no return before the last barrier
        for (int ki = 0; ki < g.kh; ++ki) {
            const int ty = iy + g.pad - ki, oy = ty / g.stride;
            if (ty < 0 || ty - oy * g.stride != 0 || oy >= g.h_out) continue;
            for (int kj = 0; kj < g.kw; ++kj) {
                const int tx = ix + g.pad - kj, ox = tx / g.stride;
                if (tx < 0 || tx - ox * g.stride != 0 || ox >= g.w_out) continue;
                const float* d = dy + (size_t)(nn * g.c_out + c0) * hw_out + oy * g.w_out + ox;
                const float* wk = ws + ki * g.kw + kj;
                for (int co = 0; co < cn; ++co) {
                    const float v = d[(size_t)co * hw_out];
                    const float* wc = wk + co * per_co;
                    acc0 += v * wc[0];
                    if (g.c_in > 1) acc1 += v * wc[taps];
                    if (g.c_in > 2) acc2 += v * wc[2 * taps];
                    if (g.c_in > 3) acc3 += v * wc[3 * taps];
                }
            }
        }
    }
    if (!live) return;
    float* o = dx + (size_t)nn * g.c_in * hw_in + r;
    o[0] = acc0;
    if (g.c_in > 1) o[hw_in] = acc1;
    if (g.c_in > 2) o[2 * hw_in] = acc2;
    if (g.c_in > 3) o[3 * hw_in] = acc3;
}

// dw[co, ci, ki, kj] = sum over (n, oy, ox) of dy[n, co, oy, ox] x[n, ci, oy*s+ki-p, ox*s+kj-p]
// GEMM: M = c_out, N = c_in*kh*kw, K = n*h_out*w_out, split over blockIdx.z into g.splits
// slices of K (the K of a weight gradient is large, M and N small). Slice z writes
// out[z * M * N + ...]; with splits > 1, reduce.cu's sum_splits adds the slices in order.
// grid (ceil(N/64), ceil(M/64), splits), block 256.
extern "C" __global__ void __launch_bounds__(BLOCK) conv_bwd_weight(const float* __restrict__ x, const float* __restrict__ dy,
                                                            float* __restrict__ out, ConvArgs g) {
    __shared__ __align__(16) float As[TILE_AS];
    __shared__ __align__(16) float Bs[TILE_BS];
    const int M = g.c_out, N = g.c_in * g.kh * g.kw, K = g.n * g.h_out * g.w_out;
    int k_begin, k_end;
    split_k_range(K, g.splits, blockIdx.z, &k_begin, &k_end);
    const int m0 = blockIdx.y * TM, n0 = blockIdx.x * TN;
    DyLoad la;
    la.dy = dy;
    la.g = g;
    Im2colTLoad lb;
    lb.x = x;
    lb.g = g;
    float acc[4][4];
    tile_product(la, lb, m0, n0, k_begin, k_end, As, Bs, acc);  // empty slice: zeros
    float* o = out + (size_t)blockIdx.z * M * N;
    for (int i = 0; i < 4; ++i) {
        const int co = m0 + tile_row(i);
        if (co >= M) continue;
        for (int j = 0; j < 4; ++j) {
            const int col = n0 + tile_col(j);
            if (col < N) o[co * N + col] = acc[i][j];
        }
    }
}
