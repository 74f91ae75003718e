//! The convolution fast paths of the CPU backend, each against naive f64 loops in all three
//! directions (forward, backward-data, backward-weight): the phase-split col2im of
//! k4 s2 p1 (the forward of every DCGAN ConvTranspose2d) on DCGAN and odd shapes, the plain
//! gemm of a 1×1-output convolution (G's first, D's last layer), the col2im fallback, the
//! channel-block tasks of backward-weight, the Winograd forward and backward-weight, and
//! batches that span several image groups with a ragged last group.

#[macro_use]
mod common;
use common::reference::{conv_directions, conv_geom as geom};
use common::{assert_close, cpu_bits_with_threads, random, to_f32};
use dcgan::Rng;
use dcgan::backend::cpu::MatmulPrecision;
use dcgan::backend::{Backend, ConvGeom, Device, Storage};

fn check(g: ConvGeom, seed: u64) {
    let mut rng = Rng::new(seed);
    let (x, w, dy) = (random(g.x_len(), &mut rng), random(g.w_len(), &mut rng), random(g.y_len(), &mut rng));
    let (y, dx, dw) = conv_directions(&g, &x, &w, &dy);
    let be = Device::Cpu.backend();
    let up = |v: &[f64]| Storage::Cpu(to_f32(v));
    let what = format!("{g:?}");
    assert_close(
        &be.download(&be.conv2d_forward(&up(&x), &up(&w), &g)),
        &y,
        1e-4,
        &format!("forward {what}"),
    );
    assert_close(
        &be.download(&be.conv2d_backward_data(&up(&dy), &up(&w), &g)),
        &dx,
        1e-4,
        &format!("backward-data {what}"),
    );
    assert_close(
        &be.download(&be.conv2d_backward_weight(&up(&x), &up(&dy), &g)),
        &dw,
        1e-4,
        &format!("backward-weight {what}"),
    );
}

#[test]
fn phase_decomposed_backward_data_dcgan_shapes() {
    // x twice y, k4 s2 p1: the phase-split col2im.
    check(geom(3, 16, (8, 8), 32, 4, 2, 1), 1); // 4×4 -> 8×8 ConvTranspose
    check(geom(2, 32, (16, 16), 16, 4, 2, 1), 2);
    check(geom(40, 16, (8, 8), 8, 4, 2, 1), 3); // 40·16 columns: several groups, ragged last
}

#[test]
fn phase_decomposed_backward_data_odd_shapes() {
    check(geom(2, 3, (8, 8), 16, 4, 2, 1), 7); // RGB side of the DCGAN
    check(geom(1, 16, (2, 2), 3, 4, 2, 1), 4); // 1×1 dy
    check(geom(2, 17, (6, 10), 5, 4, 2, 1), 5); // non-square, odd channels
    check(geom(3, 16, (4, 14), 7, 4, 2, 1), 6);
    check(geom(2, 5, (8, 16), 3, 4, 2, 1), 17); // 4×8 dy: 16-pixel chunks span two rows
}

#[test]
fn winograd_shapes() {
    // k4 s2 p1, x twice y, 16 or more input channels, 1024 or more output pixels: forward
    // (and, from 8×8 outputs, backward-weight) by F(2×2, 2×2) (CPUs with AVX-512; elsewhere
    // these run the im2col path against the same reference).
    check(geom(64, 80, (8, 8), 20, 4, 2, 1), 23); // two channel blocks (64 + 16): M accumulates
    check(geom(64, 16, (8, 8), 460, 4, 2, 1), 28); // U 9 × 468 rows, over one 4096-row gemm block
    check(geom(1, 16, (64, 64), 16, 4, 2, 1), 24); // 16 tiles a row: one row per vector
    check(geom(1, 16, (128, 128), 16, 4, 2, 1), 25); // 32 tiles a row: neighbours across vectors
    check(geom(260, 16, (4, 4), 16, 4, 2, 1), 26); // one tile an image, groups of 65: a ragged vector
    check(geom(43, 16, (12, 8), 17, 4, 2, 1), 27); // 3 tile rows of 2: vectors span images
    // Backward-weight too from 8×8 outputs: groups of 8 images, a ragged last one, two
    // channel blocks.
    check(geom(20, 40, (16, 16), 24, 4, 2, 1), 29);
}

#[test]
fn col2im_fallbacks() {
    check(geom(2, 16, (7, 7), 4, 4, 2, 1), 8); // odd input: x not exactly twice y
    check(geom(2, 16, (9, 9), 4, 3, 2, 1), 9); // k3
    check(geom(3, 5, (5, 6), 4, 3, 1, 1), 10); // stride 1
    check(geom(2, 4, (7, 7), 3, 5, 3, 2), 11); // stride 3
    check(geom(70, 4, (4, 4), 6, 3, 1, 0), 12); // several groups of tiny planes
    check(geom(6, 40, (6, 6), 4, 3, 1, 1), 20); // k3: col made in bands of 28 channels
}

#[test]
fn backward_weight_by_channel_blocks() {
    // c_in ≥ 32: a task per channel block (one per thread, at least two: 17 + 16 channels),
    // 28-image groups with a ragged last one.
    check(geom(30, 33, (16, 16), 4, 4, 2, 1), 18);
    check(geom(9, 33, (32, 32), 4, 4, 2, 1), 15); // 256-pixel dy planes: a gemm per image
    check(geom(2, 64, (8, 8), 5, 4, 2, 1), 16); // one group
    // c_in < 32: four tasks over quarters of the batch, a gemm per 256-pixel image.
    check(geom(6, 3, (32, 32), 8, 4, 2, 1), 19);
    // Groups of small dy planes packed straight into the gemm's A panels, c_out over several
    // panels with a ragged last one: 16-pixel planes (the 12×32 kernel), and the RGB layer's
    // 64-pixel ones (its 48 taps take the 24×16 kernel).
    check(geom(20, 32, (8, 8), 30, 4, 2, 1), 21);
    check(geom(12, 3, (16, 16), 40, 4, 2, 1), 22);
}

#[test]
fn dense_one_by_one_output() {
    check(geom(5, 24, (4, 4), 7, 4, 1, 0), 13); // D's last layer, G's first (as its adjoint)
    check(geom(1, 3, (3, 5), 2, 3, 1, 0).with_kw(5), 14);
}

trait WithKw {
    fn with_kw(self, kw: usize) -> Self;
}
impl WithKw for ConvGeom {
    fn with_kw(mut self, kw: usize) -> Self {
        self.kw = kw;
        self.w_out = (self.w_in + 2 * self.pad - kw) / self.stride + 1;
        self
    }
}

/// The bits of what `op` computes on the CPU backend with `threads` rayon threads, in f32.
fn bits_with_threads(threads: usize, op: impl Fn(&dyn Backend) -> Storage + Sync) -> Vec<u32> {
    cpu_bits_with_threads(threads, MatmulPrecision::F32, op)
}

/// Backward-weight splits its channels into one block per thread: the split must change no
/// bits. Odd channel counts (ragged blocks), 4×4, 8×8 and 16×16 dy planes (image groups), a
/// k3 convolution (col not prepacked), and the batch-quarter path below 32 channels.
#[test]
fn backward_weight_bits_do_not_depend_on_the_thread_count() {
    for (i, g) in [
        geom(30, 33, (16, 16), 8, 4, 2, 1),
        geom(9, 64, (8, 8), 12, 4, 2, 1),
        geom(20, 40, (32, 32), 4, 4, 2, 1),
        geom(4, 40, (6, 6), 5, 3, 1, 1), // k3: row-major col, the gemm packs it
        geom(6, 3, (32, 32), 8, 4, 2, 1),
    ]
    .into_iter()
    .enumerate()
    {
        let mut rng = Rng::new(40 + i as u64);
        let (x, dy) = (random(g.x_len(), &mut rng), random(g.y_len(), &mut rng));
        let (x, dy) = (Storage::Cpu(to_f32(&x)), Storage::Cpu(to_f32(&dy)));
        let dw = |threads: usize| bits_with_threads(threads, |be| be.conv2d_backward_weight(&x, &dy, &g));
        let want = dw(1);
        for threads in [2, 3, 5] {
            assert!(dw(threads) == want, "{g:?}: dw differs with {threads} threads");
        }
    }
}

#[test]
fn forward_and_backward_data_bits_do_not_depend_on_the_thread_count() {
    // The Winograd forward (several image groups, a ragged last one, two channel blocks), and
    // the im2col forward and backward-data.
    for (i, g) in [
        geom(70, 80, (8, 8), 12, 4, 2, 1),
        geom(5, 16, (32, 32), 20, 4, 2, 1),
        geom(6, 3, (32, 32), 8, 4, 2, 1),
    ]
    .into_iter()
    .enumerate()
    {
        let mut rng = Rng::new(50 + i as u64);
        let (x, w, dy) =
            (random(g.x_len(), &mut rng), random(g.w_len(), &mut rng), random(g.y_len(), &mut rng));
        let (x, w, dy) = (Storage::Cpu(to_f32(&x)), Storage::Cpu(to_f32(&w)), Storage::Cpu(to_f32(&dy)));
        let run = |threads: usize| {
            (
                bits_with_threads(threads, |be| be.conv2d_forward(&x, &w, &g)),
                bits_with_threads(threads, |be| be.conv2d_backward_data(&dy, &w, &g)),
            )
        };
        let want = run(1);
        for threads in [2, 3, 5] {
            let got = run(threads);
            assert!(got.0 == want.0, "{g:?}: y differs with {threads} threads");
            assert!(got.1 == want.1, "{g:?}: dx differs with {threads} threads");
        }
    }
}
