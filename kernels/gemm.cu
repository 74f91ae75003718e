// C[m x n] = op(A) op(B), row-major, op = transpose when the flag is set. 64 x 64 tiles of C
// per block of 256 threads, 16-deep k slices staged in shared memory, a 4 x 4 register block
// per thread (common.cuh: tile_product).
#include "common.cuh"

// (r, c) of a rows x cols operand stored row-major with leading dimension ld, or its
// transpose stored row-major (trans != 0); zero outside.
struct MatLoad {
    const float* p;
    int rows, cols, ld, trans;
    __device__ __forceinline__ float operator()(int r, int c) const {
        if (r >= rows || c >= cols) return 0.0f;
        return trans ? p[c * ld + r] : p[r * ld + c];
    }
};

// grid (ceil(n / 64), ceil(m / 64)), block 256
extern "C" __global__ void __launch_bounds__(BLOCK) gemm_f32(const float* __restrict__ a, const float* __restrict__ b,
                                                     float* __restrict__ c, GemmArgs p) {
    __shared__ __align__(16) float As[TILE_AS];
    __shared__ __align__(16) float Bs[TILE_BS];
    const int m0 = blockIdx.y * TM, n0 = blockIdx.x * TN;
    MatLoad la;
    la.p = a;
    la.rows = p.m;
    la.cols = p.k;
    la.ld = p.trans_a ? p.m : p.k;
    la.trans = p.trans_a;
    MatLoad lb;
    lb.p = b;
    lb.rows = p.k;
    lb.cols = p.n;
    lb.ld = p.trans_b ? p.k : p.n;
    lb.trans = p.trans_b;
    float acc[4][4];
    tile_product(la, lb, m0, n0, 0, p.k, As, Bs, acc);
    for (int i = 0; i < 4; ++i) {
        const int r = m0 + tile_row(i);
        if (r >= p.m) continue;
        for (int j = 0; j < 4; ++j) {
            const int col = n0 + tile_col(j);
            if (col < p.n) c[r * p.n + col] = acc[i][j];
        }
    }
}
