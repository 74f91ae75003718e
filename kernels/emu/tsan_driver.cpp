// ThreadSanitizer driver: every kernel of kernels/*.cu launched once on small inputs through
// the build.rs trampolines, with the emulator in OS-thread mode (DCGAN_EMU_THREADS: one
// std::thread per CUDA thread, std::barrier for __syncthreads and warp shuffles). Built and
// run by tests/emu_tsan.rs with g++ -std=c++20 -fsanitize=thread; a missing barrier shows up
// as a TSan data-race report. Prints "launched NAME" per kernel and a few sanity checks.
#include "shim.h"
#include "common.cuh"
#include "emu_entries.h"

#include <cstdio>
#include <cstdlib>
#include <vector>

extern "C" const char* dcgan_emu_last_error();

using Entry = int (*)(void**, const unsigned*, const unsigned*);

template <class... A>
static void launch(const char* name, Entry fn, unsigned gx, unsigned gy, unsigned gz, A... a) {
    void* args[] = {static_cast<void*>(&a)...};
    const unsigned grid[3] = {gx, gy, gz}, block[3] = {BLOCK, 1, 1};
    if (fn(args, grid, block) != 0) {
        std::fprintf(stderr, "%s failed: %s\n", name, dcgan_emu_last_error());
        std::exit(2);
    }
    std::printf("launched %s\n", name);
}
#define LAUNCH(k, ...) launch(#k, emu_##k, __VA_ARGS__)

static std::vector<float> data(size_t n, float scale = 1.0f, unsigned seed = 1) {
    std::vector<float> v(n);
    for (size_t i = 0; i < n; ++i) {
        seed = seed * 1664525u + 1013904223u;
        v[i] = scale * ((float)(seed >> 8) / 16777216.0f * 2.0f - 1.0f);
    }
    return v;
}

static void check(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "check failed: %s\n", what);
        std::exit(3);
    }
}

int main() {
    const int n = 600;  // 2 blocks of 256: the grid-stride loops take a second turn
    auto a = data(n, 1.0f, 1), b = data(n, 1.0f, 2);
    std::vector<float> y(n), z(n);
    EwArgs ew{n, 0, 0.5f, 0.25f};
    LAUNCH(ew_binary, 2, 1, 1, a.data(), b.data(), y.data(), ew);
    check(y[7] == a[7] + b[7], "ew_binary");
    LAUNCH(ew_affine, 2, 1, 1, a.data(), y.data(), ew);
    LAUNCH(ew_axpby, 2, 1, 1, a.data(), y.data(), ew);
    LAUNCH(ew_fill, 2, 1, 1, y.data(), ew);
    LAUNCH(ew_broadcast_scalar, 2, 1, 1, a.data(), y.data(), ew);
    ChanArgs ch{3, 4, 50};
    LAUNCH(ew_add_channels, 2, 1, 1, a.data(), b.data(), y.data(), ch);
    LAUNCH(relu_fwd, 2, 1, 1, a.data(), y.data(), ew);
    LAUNCH(relu_bwd, 2, 1, 1, a.data(), b.data(), z.data(), ew);
    LAUNCH(leaky_relu_fwd, 2, 1, 1, a.data(), y.data(), ew);
    LAUNCH(leaky_relu_bwd, 2, 1, 1, a.data(), b.data(), z.data(), ew);
    LAUNCH(tanh_fwd, 2, 1, 1, a.data(), y.data(), ew);
    LAUNCH(tanh_bwd, 2, 1, 1, y.data(), b.data(), z.data(), ew);
    LAUNCH(sigmoid_fwd, 2, 1, 1, a.data(), y.data(), ew);
    LAUNCH(sigmoid_bwd, 2, 1, 1, y.data(), b.data(), z.data(), ew);
    LAUNCH(sqrt_fwd, 2, 1, 1, b.data(), y.data(), ew);
    LAUNCH(sqrt_bwd, 2, 1, 1, y.data(), b.data(), z.data(), ew);
    // Augmentation: 2 images of 3 x 10 x 10, shifted and cut, forward and backward.
    std::vector<float> aug{2, -3, 1, 6, 0, 4, -1, 0, 0, 0, 0, 0};
    AugmentArgs ag{2, 3, 10, 10, 0};
    LAUNCH(translate_cutout, 2, 1, 1, a.data(), aug.data(), y.data(), ag);
    check(y[0] == 0.0f && y[7 * 10 + 5] == a[5 * 10 + 8] && y[2 * 10 + 3] == 0.0f, "translate_cutout");
    ag.backward = 1;
    LAUNCH(translate_cutout, 2, 1, 1, y.data(), aug.data(), z.data(), ag);

    // Reductions: two stages, and per channel.
    std::vector<float> partial(2), out(4);
    RedArgs red{n, 2, 1.0f};
    LAUNCH(sum_partial, 2, 1, 1, a.data(), partial.data(), red);
    LAUNCH(sum_final, 1, 1, 1, partial.data(), out.data(), red);
    double want = 0;
    for (float v : a) want += v;
    check(std::abs(out[0] - want) < 1e-3, "sum");
    LAUNCH(sum_channels, 4, 1, 1, a.data(), out.data(), ch);
    std::vector<float> splits = data(3 * 40, 1.0f, 3), summed(40);
    RedArgs sp{40, 3, 1.0f};
    LAUNCH(sum_splits, 1, 1, 1, splits.data(), summed.data(), sp);
    auto t = data(n, 1.0f, 4);
    for (auto& v : t) v = v > 0 ? 1.0f : 0.0f;
    LAUNCH(bce_partial, 2, 1, 1, a.data(), t.data(), partial.data(), red);
    std::vector<float> dloss{0.5f};
    LAUNCH(bce_backward, 2, 1, 1, a.data(), t.data(), dloss.data(), z.data(), red);

    // gemm across tile edges: 70 x 65 x 33, 2 x 2 blocks.
    const int m = 70, nn = 65, k = 33;
    auto ga = data(m * k, 1.0f, 5), gb = data(k * nn, 1.0f, 6);
    std::vector<float> gc(m * nn);
    GemmArgs gp{m, nn, k, 0, 0};
    LAUNCH(gemm_f32, 2, 2, 1, ga.data(), gb.data(), gc.data(), gp);
    double c00 = 0;
    for (int i = 0; i < k; ++i) c00 += (double)ga[69 * k + i] * gb[i * nn + 64];
    check(std::abs(gc[69 * nn + 64] - c00) < 1e-4, "gemm corner");

    // Convolutions: the DCGAN layer shape (k4 s2 p1), split-K forward and weight gradient.
    ConvArgs g{2, 3, 8, 8, 4, 4, 4, 4, 4, 2, 1, 2};
    auto x = data(2 * 3 * 8 * 8, 1.0f, 7), w = data(4 * 3 * 16, 1.0f, 8), dy = data(2 * 4 * 16, 1.0f, 9);
    std::vector<float> cy(2 * 2 * 4 * 16), dx(x.size()), ws(2 * 4 * 48);
    LAUNCH(conv_fwd, 1, 1, 2, x.data(), w.data(), cy.data(), g);
    LAUNCH(conv_bwd_data, 1, 1, 4, dy.data(), w.data(), dx.data(), g);
    LAUNCH(conv_bwd_data_narrow, 1, 1, 1, dy.data(), w.data(), dx.data(), g);
    LAUNCH(conv_bwd_weight, 1, 1, 2, x.data(), dy.data(), ws.data(), g);

    // BatchNorm: 3 channels of 2 x 200 (more elements per channel than threads).
    BnArgs bn{2, 3, 200, 1e-5f, 1};
    auto bx = data(2 * 3 * 200, 2.0f, 10), bdy = data(bx.size(), 1.0f, 11);
    std::vector<float> gamma{1.0f, 0.9f, 1.1f}, beta{0.0f, 0.1f, -0.1f}, mean(3), var(3), by(bx.size()), bdx(bx.size()),
        dg(3), db(3);
    LAUNCH(bn_forward_train, 3, 1, 1, bx.data(), gamma.data(), beta.data(), by.data(), mean.data(), var.data(), bn);
    LAUNCH(bn_forward_eval, 2, 1, 1, bx.data(), gamma.data(), beta.data(), mean.data(), var.data(), by.data(), bn);
    LAUNCH(bn_backward, 3, 1, 1, bx.data(), bdy.data(), gamma.data(), mean.data(), var.data(), bdx.data(), dg.data(),
           db.data(), bn);

    // Optimisers and conversions.
    std::vector<float> mom(n), vel(n);
    AdamArgs ad{n, 4e-4f, 0.0447f, 0.5f, 0.999f, 1e-8f, 0.0f};
    LAUNCH(adam_step, 2, 1, 1, y.data(), a.data(), mom.data(), vel.data(), ad);
    SgdArgs sg{n, 0.1f, 0.9f, 0.0f, 1};
    LAUNCH(sgd_step, 2, 1, 1, y.data(), a.data(), mom.data(), sg);
    std::vector<uint16_t> h(n);
    CvtArgs cv{n};
    LAUNCH(f32_to_f16, 2, 1, 1, a.data(), h.data(), cv);
    LAUNCH(f16_to_f32, 2, 1, 1, h.data(), z.data(), cv);
    LAUNCH(f32_to_bf16, 2, 1, 1, a.data(), h.data(), cv);
    LAUNCH(bf16_to_f32, 2, 1, 1, h.data(), z.data(), cv);
    std::printf("tsan driver: done\n");
    return 0;
}
