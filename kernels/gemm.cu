// C[m x n] = op(A) op(B), row-major, op = transpose when the flag is set. 64 x 64 tiles of C
// per block of 256 threads, 16-deep k slices staged in shared memory, a 4 x 4 register block
// per thread (common.cuh: tile_product).
#include "common.cuh"

// A rows x cols operand stored row-major with leading dimension ld, or its transpose stored
// row-major (trans != 0), as a tile_product loader (common.cuh): its lines are rows
// (along = 0, the A side) or columns (along = 1, the B side); zero outside.
struct MatLoad {
    const float* p;
    int rows, cols, ld, trans, along;
    struct Line {
        const float* p;
        int step;  // between consecutive k
        bool ok;
    };
    __device__ __forceinline__ Line line(int i) const {
        // Element (r, c) is at r * rs + c * cs.
        const int rs = trans ? 1 : ld, cs = trans ? ld : 1;
        return along ? Line{p + (size_t)i * cs, rs, i < cols} : Line{p + (size_t)i * rs, cs, i < rows};
    }
    __device__ __forceinline__ float at(const Line& l, int k) const { return l.ok ? l.p[(size_t)k * l.step] : 0.0f; }
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
    la.along = 0;
    MatLoad lb;
    lb.p = b;
    lb.rows = p.k;
    lb.cols = p.n;
    lb.ld = p.trans_b ? p.k : p.n;
    lb.trans = p.trans_b;
    lb.along = 1;
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
