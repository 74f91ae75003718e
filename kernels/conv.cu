// conv2d forward, backward-data and backward-weight as implicit GEMMs: the im2col operand is
// gathered tile by tile into shared memory (common.cuh: tile_product), never materialised.
// conv_transpose2d is conv2d's adjoint (ConvGeom in src/backend/mod.rs), so its forward is
// conv_bwd_data and its backward uses conv_fwd and conv_bwd_weight: no col2im buffer either.
#include "common.cuh"

// Row-major [rows x cols] matrix, zero outside.
struct DenseLoad {
    const float* p;
    int rows, cols;
    __device__ __forceinline__ float operator()(int r, int c) const {
        return (r < rows && c < cols) ? p[r * cols + c] : 0.0f;
    }
};

// The im2col matrix of x, [c_in*kh*kw x n*h_out*w_out], read on the fly.
struct Im2colLoad {
    const float* x;
    ConvArgs g;
    __device__ __forceinline__ float at(int k, int col) const {
        const int taps = g.kh * g.kw, hw = g.h_out * g.w_out;
        if (col >= g.n * hw || k >= g.c_in * taps) return 0.0f;
        const int ci = k / taps, t = k - ci * taps, ki = t / g.kw, kj = t - ki * g.kw;
        const int nn = col / hw, pix = col - nn * hw, oy = pix / g.w_out, ox = pix - oy * g.w_out;
        const int iy = oy * g.stride + ki - g.pad, ix = ox * g.stride + kj - g.pad;
        if (iy < 0 || iy >= g.h_in || ix < 0 || ix >= g.w_in) return 0.0f;
        return x[((nn * g.c_in + ci) * g.h_in + iy) * g.w_in + ix];
    }
    __device__ __forceinline__ float operator()(int k, int col) const { return at(k, col); }
};

// Im2col transposed: rows are output pixels, columns the (ci, ki, kj) taps.
struct Im2colTLoad {
    Im2colLoad inner;
    __device__ __forceinline__ float operator()(int col, int k) const { return inner.at(k, col); }
};

// dy as [c_out x n*h_out*w_out] (A of the weight gradient).
struct DyLoad {
    const float* dy;
    ConvArgs g;
    __device__ __forceinline__ float operator()(int co, int k) const {
        const int hw = g.h_out * g.w_out;
        if (co >= g.c_out || k >= g.n * hw) return 0.0f;
        const int nn = k / hw, pix = k - nn * hw;
        return dy[(nn * g.c_out + co) * hw + pix];
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
struct PhaseW {
    const float* w;
    ConvArgs g;
    int ry, rx, tkh, tkw;
    __device__ __forceinline__ float operator()(int ci, int k) const {
        const int taps = tkh * tkw;
        if (ci >= g.c_in || k >= g.c_out * taps) return 0.0f;
        const int co = k / taps, t = k - co * taps, ty = t / tkw, tx = t - ty * tkw;
        const int ki = ry + g.stride * ty, kj = rx + g.stride * tx;
        if (ki >= g.kh || kj >= g.kw) return 0.0f;
        return w[((co * g.c_in + ci) * g.kh + ki) * g.kw + kj];
    }
};

struct PhaseDy {
    const float* dy;
    ConvArgs g;
    int ry, rx, tkh, tkw, iy0, ix0, hy, wx;
    __device__ __forceinline__ float operator()(int k, int col) const {
        const int taps = tkh * tkw, hw = hy * wx;
        if (col >= g.n * hw || k >= g.c_out * taps) return 0.0f;
        const int co = k / taps, t = k - co * taps, ty = t / tkw, tx = t - ty * tkw;
        const int ki = ry + g.stride * ty, kj = rx + g.stride * tx;
        if (ki >= g.kh || kj >= g.kw) return 0.0f;
        const int nn = col / hw, pix = col - nn * hw, jy = pix / wx, jx = pix - jy * wx;
        const int iy = iy0 + g.stride * jy, ix = ix0 + g.stride * jx;
        const int oy = (iy + g.pad - ki) / g.stride, ox = (ix + g.pad - kj) / g.stride;
        if (iy + g.pad - ki < 0 || ix + g.pad - kj < 0 || oy >= g.h_out || ox >= g.w_out) return 0.0f;
        return dy[((nn * g.c_out + co) * g.h_out + oy) * g.w_out + ox];
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
    lb.inner.x = x;
    lb.inner.g = g;
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
